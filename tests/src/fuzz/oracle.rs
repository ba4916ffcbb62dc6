//! What the fuzzer checks besides status codes: the newest event of every (service, scope) before
//! and after a mutating call, a digest of lists and balances, and the processes' health.

use std::time::Duration;

use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::events::v1::{Event, ListEventsRequest};
use settle_proto::settle::creditnotes::v1 as cnpb;
use settle_proto::settle::creditnotes::v1::credit_note_service_client::CreditNoteServiceClient;
use settle_testkit::with_key;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::harvest::Scope;
use crate::api::Api;
use crate::process::Service;

pub const SERVICES: [Service; 3] = [Service::Invoices, Service::Payments, Service::CreditNotes];

/// How long one check call may take.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// Channels to the three services.
#[derive(Clone)]
pub struct Channels {
    pub invoices: Channel,
    pub payments: Channel,
    pub credit_notes: Channel,
}

impl Channels {
    pub fn of(&self, service: Service) -> &Channel {
        match service {
            Service::Invoices => &self.invoices,
            Service::Payments => &self.payments,
            Service::CreditNotes => &self.credit_notes,
        }
    }
}

/// The newest event id of each (scope, service), in `Scope::ALL` × `SERVICES` order.
pub type Snapshot = Vec<Option<String>>;

async fn events(channel: &Channel, scope: Scope, limit: i32) -> Result<Vec<Event>, Status> {
    let mut client = EventServiceClient::new(channel.clone());
    let mut request = with_key(ListEventsRequest { limit: Some(limit), ..Default::default() }, scope.key());
    request.set_timeout(CHECK_DEADLINE);
    Ok(client.list_events(request).await?.into_inner().data)
}

/// The newest event of every (scope, service); a failed read is `Err` (and is itself reported).
pub async fn snapshot(channels: &Channels) -> Result<Snapshot, Status> {
    let reads = Scope::ALL
        .iter()
        .flat_map(|scope| SERVICES.iter().map(move |service| (*scope, *service)))
        .map(|(scope, service)| async move {
            events(channels.of(service), scope, 1).await.map(|e| e.into_iter().next().map(|e| e.id))
        });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// The (scope, service) pairs whose newest event moved between two snapshots.
pub fn moved(before: &Snapshot, after: &Snapshot) -> Vec<(Scope, Service)> {
    let pairs = Scope::ALL.iter().flat_map(|scope| SERVICES.iter().map(move |service| (*scope, *service)));
    pairs.zip(before.iter().zip(after)).filter(|(_, (b, a))| b != a).map(|(pair, _)| pair).collect()
}

/// The events of (scope, service) newer than `since` (newest first, at most 100).
pub async fn events_since(
    channels: &Channels,
    scope: Scope,
    service: Service,
    since: Option<&str>,
) -> Result<Vec<Event>, Status> {
    let mut newer = events(channels.of(service), scope, 100).await?;
    if let Some(position) = newer.iter().position(|e| Some(e.id.as_str()) == since) {
        newer.truncate(position);
    }
    Ok(newer)
}

/// Waits (at most `limit`) until no new event appears for 100 ms: the event consumer and sagas
/// have caught up with what earlier calls started.
pub async fn quiesce(channels: &Channels, limit: Duration) -> Option<Snapshot> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = snapshot(channels).await.ok()?;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = snapshot(channels).await.ok()?;
        if now == last || tokio::time::Instant::now() >= deadline {
            return Some(now);
        }
        last = now;
    }
}

/// Lists (first pages, newest first) and customer balances of every scope, as text: two equal
/// digests mean nothing visible changed.
pub async fn digest(channels: &Channels) -> Result<String, Status> {
    let mut out = String::new();
    for scope in Scope::ALL {
        let api = Api::new(channels.invoices.clone(), channels.payments.clone())
            .with_credit_notes(channels.credit_notes.clone())
            .with_key(scope.key());
        let invoices = api.all_invoices().await?;
        let intents = api.all_intents(None).await?;
        let mut credit_notes = CreditNoteServiceClient::new(channels.credit_notes.clone());
        let notes = credit_notes
            .list_credit_notes(with_key(
                cnpb::ListCreditNotesRequest { limit: Some(100), ..Default::default() },
                scope.key(),
            ))
            .await?
            .into_inner()
            .data;
        out.push_str(&format!(
            "{scope:?} invoices {invoices:?}\nintents {intents:?}\ncredit notes {notes:?}\n"
        ));
        for n in 0..3 {
            let customer = format!("cus_fuzz_{}_{n}", scope.name().replace('-', "_"));
            match api.balance(&customer).await {
                Ok(balance) => out.push_str(&format!("{customer} {balance}\n")),
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => return Err(status),
            }
        }
    }
    Ok(out)
}

/// Whether `channel`'s server answers health SERVING within a few seconds.
pub async fn healthy(channel: &Channel) -> bool {
    let mut client = HealthClient::new(channel.clone());
    let check = client.check(HealthCheckRequest { service: String::new() });
    matches!(
        tokio::time::timeout(Duration::from_secs(5), check).await,
        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
    )
}

/// Codes that are never a proper answer to a client's request: a bug, a hang or a dead process.
pub fn is_violation_code(code: Code) -> bool {
    matches!(
        code,
        Code::Internal
            | Code::Unknown
            | Code::DataLoss
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unimplemented
            | Code::Unavailable
    )
}

/// Error text longer than this echoes input (the issue asks for bounded messages).
pub const MAX_MESSAGE: usize = 1_024;

/// Error text that exposes internals a client should never see.
const INTERNAL_TEXT: &[&str] =
    &["sqlx", "SQLSTATE", "error returned from database", "panicked", "unwrap()", "pool timed out"];

/// What is wrong with a refusal's text, if anything.
pub fn bad_error_text(status: &Status) -> Option<String> {
    let message = status.message();
    if message.contains("h2 protocol error") {
        // The client could not even read the answer's headers: the server's error text (which
        // travels in a header) was larger than HTTP/2 header limits, i.e. it echoed the input.
        return Some("error answer too large for its headers (echoes input?)".to_owned());
    }
    if message.len() > MAX_MESSAGE {
        return Some(format!("error message of {} bytes", message.len()));
    }
    if status.details().len() > 16 * 1024 {
        return Some(format!("error details of {} bytes", status.details().len()));
    }
    INTERNAL_TEXT.iter().find(|t| message.contains(*t)).map(|t| format!("error text exposes internals ({t})"))
}

/// A status message cut for a report line.
pub fn short(message: &str) -> String {
    let one_line: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).take(120).collect();
    if message.chars().count() > 120 { format!("{one_line}…") } else { one_line }
}
