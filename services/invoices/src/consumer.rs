//! Follows the payments service's event stream and applies what concerns invoices: a pending
//! payment that succeeds (an intent's `payment_intent.succeeded`, a record's
//! `payment_record.payment_attempt_guaranteed`) makes its `open` invoice payment `paid`; a canceled
//! intent's invoice payment is canceled and its attachment released (a detach saga).
//!
//! Each event is applied in the same transaction that advances the stored cursor, so a redelivered
//! event has no second effect (and every effect is conditional on the invoice payment's state
//! anyway). Events that concern no invoice only move the cursor, which is written at most every
//! [`CURSOR_FLUSH`]. One replica at a time follows the stream: it leases the cursor row.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use settle_money::Amount;
use settle_platform::Scope;
use settle_platform::client::Backoff;
use settle_platform::db::Db;
use settle_platform::outbox::EventOrigin;
use settle_platform::time::now_unix;
use settle_proto::events::v1 as ev;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as payments_pb;
use settle_saga::{SagaRunner, store::now_millis};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::applications::{Context, detach, effects};
use crate::store::{invoice_payments, invoices};

/// The producer name of the payments stream in `event_cursors`.
const PRODUCER: &str = "payments";
/// The event types that concern invoices.
const TYPES: [&str; 3] =
    ["payment_intent.succeeded", "payment_intent.canceled", "payment_record.payment_attempt_guaranteed"];
/// How long a replica holds the stream before another may take it over.
const LEASE: Duration = Duration::from_secs(5);
/// Longest a cursor that moved only over unrelated events stays unwritten.
const CURSOR_FLUSH: Duration = Duration::from_millis(500);
/// The internal calls of the consumer act for no particular account.
const SYSTEM_ACCOUNT: &str = "acct_settlesystem";

/// Follows the payments stream until shutdown.
pub async fn run(ctx: Arc<Context>, runner: SagaRunner, shutdown: CancellationToken) {
    let holder = runner.holder().to_string();
    let backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(5),
        jitter: 0.5,
        max_attempts: u32::MAX,
    };
    let mut failures = 0u32;
    loop {
        // `follow` stops by itself on shutdown, after saving the cursor.
        let result = follow(&ctx, &runner, &holder, &shutdown).await;
        if shutdown.is_cancelled() {
            // Hand the stream over at once rather than when the lease runs out.
            if let Err(error) = release(&ctx.db, &holder).await {
                tracing::debug!(%error, "could not release the payments stream lease");
            }
            return;
        }
        match result {
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
                tracing::debug!(%error, failures, "payments event stream interrupted");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(if failures == 0 { LEASE / 3 } else { backoff.delay(failures) }) => {}
        }
    }
}

/// Gives up the lease on the cursor row (graceful shutdown), so another replica or the next
/// start of this one follows the stream without waiting for the lease to expire.
async fn release(db: &Db, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE event_cursors SET lease_expires_at = 0 WHERE producer = $1 AND holder = $2")
        .bind(PRODUCER)
        .bind(holder)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Takes (or renews) the lease on the cursor row; returns the cursor, or `None` if another replica
/// holds the stream.
async fn lease(db: &Db, holder: &str) -> Result<Option<String>, sqlx::Error> {
    let now = now_millis();
    let until = now + i64::try_from(LEASE.as_millis()).unwrap_or(15_000);
    sqlx::query(
        "INSERT INTO event_cursors (producer, cursor, holder, lease_expires_at, updated) VALUES ($1, '', $2, $3, $4) \
         ON CONFLICT (producer) DO NOTHING",
    )
    .bind(PRODUCER)
    .bind(holder)
    .bind(until)
    .bind(now_unix())
    .execute(db.pool())
    .await?;
    let cursor: Option<String> = sqlx::query_scalar(
        "UPDATE event_cursors SET holder = $2, lease_expires_at = $3 \
         WHERE producer = $1 AND (holder = $2 OR lease_expires_at < $4) RETURNING cursor",
    )
    .bind(PRODUCER)
    .bind(holder)
    .bind(until)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(cursor)
}

/// Writes the cursor (and renews the lease) if this replica still holds the stream.
async fn save_cursor<'e, E>(executor: E, holder: &str, cursor: &str) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let until = now_millis() + i64::try_from(LEASE.as_millis()).unwrap_or(15_000);
    let done = sqlx::query(
        "UPDATE event_cursors SET cursor = $3, lease_expires_at = $4, updated = $5 WHERE producer = $1 AND holder = $2",
    )
    .bind(PRODUCER)
    .bind(holder)
    .bind(cursor)
    .bind(until)
    .bind(now_unix())
    .execute(executor)
    .await?;
    Ok(done.rows_affected() > 0)
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("payments stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("lease lost")]
    LeaseLost,
    #[error("{0}")]
    Other(String),
}

async fn follow(
    ctx: &Arc<Context>,
    runner: &SagaRunner,
    holder: &str,
    shutdown: &CancellationToken,
) -> Result<(), FollowError> {
    let Some(mut cursor) = lease(&ctx.db, holder).await? else {
        return Ok(()); // another replica follows the stream
    };
    let request = ev::StreamEventsRequest {
        cursor: (!cursor.is_empty()).then(|| cursor.clone()),
        types: TYPES.iter().map(|t| (*t).to_owned()).collect(),
        all_accounts: true,
    };
    let mut stream = ctx
        .payments
        .events
        .clone()
        .stream_events(ctx.payments.request(&Scope::test(SYSTEM_ACCOUNT), request))
        .await?
        .into_inner();
    let mut unsaved = false;
    let mut renew = tokio::time::interval(CURSOR_FLUSH);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = renew.tick() => {
                if !save_cursor(ctx.db.pool(), holder, &cursor).await? {
                    return Err(FollowError::LeaseLost);
                }
                unsaved = false;
            }
            message = stream.message() => {
                let Some(message) = message? else { break };
                let Some(event) = message.event else { continue };
                settle_platform::metrics::consumer_delay("invoices.payments_events", event.created);
                let span = event_span(&event);
                let applied =
                    apply_event(ctx, runner, holder, &event, &message.cursor).instrument(span).await?;
                cursor = message.cursor;
                unsaved = !applied;
            }
        }
    }
    if unsaved {
        save_cursor(ctx.db.pool(), holder, &cursor).await?;
    }
    Ok(())
}

/// The span an event is applied under: it continues the trace of the transaction that wrote the
/// event (one event, one cause), so what invoices does about a payment shows in that payment's
/// trace, and the invoice events it writes carry the same trace onwards.
fn event_span(event: &ev::Event) -> tracing::Span {
    let span = tracing::info_span!(
        "process",
        otel.name = format!("process {}", event.r#type),
        otel.kind = "consumer",
        messaging.system = "settle",
        messaging.operation.type = "process",
        messaging.destination.name = PRODUCER,
        messaging.message.id = %event.id,
        settle.event.type = %event.r#type,
    );
    settle_platform::telemetry::continue_trace(&span, event.traceparent.as_deref());
    span
}

/// What an event means for invoices.
enum Meaning {
    /// The payment succeeded: its open invoice payment counts, for this amount.
    Succeeded {
        payment: String,
        amount: i64,
    },
    /// The intent was canceled: its open invoice payment is canceled and the attachment released.
    Canceled {
        payment: String,
    },
    Nothing,
}

fn meaning(event: &ev::Event) -> Meaning {
    let Some(object) = event.data.as_ref().and_then(|d| d.object.as_ref()) else { return Meaning::Nothing };
    match event.r#type.as_str() {
        "payment_intent.succeeded" => match payments_pb::PaymentIntent::decode(object.value.as_slice()) {
            Ok(pi) => Meaning::Succeeded { payment: pi.id, amount: pi.amount_received },
            Err(_) => Meaning::Nothing,
        },
        "payment_intent.canceled" => Meaning::Canceled { payment: event.object_id.clone() },
        "payment_record.payment_attempt_guaranteed" => {
            match payments_pb::PaymentRecord::decode(object.value.as_slice()) {
                Ok(record) => Meaning::Succeeded {
                    payment: record.id,
                    amount: record.amount_guaranteed.map_or(0, |a| a.value),
                },
                Err(_) => Meaning::Nothing,
            }
        }
        _ => Meaning::Nothing,
    }
}

/// Applies one event; returns whether it changed anything (and so wrote the cursor with it).
async fn apply_event(
    ctx: &Arc<Context>,
    runner: &SagaRunner,
    holder: &str,
    event: &ev::Event,
    cursor: &str,
) -> Result<bool, FollowError> {
    let Some(account) = event.account.as_deref() else { return Ok(false) };
    // The event's own mode: a live payment's event only ever touches live invoices.
    let scope = Scope::new(account, event.livemode);
    let (payment, succeeded_amount) = match meaning(event) {
        Meaning::Succeeded { payment, amount } => (payment, Some(amount)),
        Meaning::Canceled { payment } => (payment, None),
        Meaning::Nothing => return Ok(false),
    };
    // Most payments are not on an invoice: a cheap read decides.
    let Some((found, _)) = invoice_payments::find_live_by_payment(ctx.db.pool(), &scope, &payment).await?
    else {
        return Ok(false);
    };
    if found.status != pb::InvoicePaymentStatus::Open as i32 {
        return Ok(false);
    }
    let backend = ctx.db.backend();
    let origin = EventOrigin { scope: scope.clone(), request_id: None, idempotency_key: None };
    let mut tx = ctx.db.begin().await?;
    let Some(mut doc) = invoices::find_for_update(&mut tx, backend, &scope, &found.invoice).await? else {
        return Ok(false);
    };
    // Re-read under the invoice's lock: a saga may have changed it since.
    let Some((mut invoice_payment, attach_key)) =
        invoice_payments::find_live_by_payment(&mut *tx, &scope, &payment).await?
    else {
        return Ok(false);
    };
    if invoice_payment.status != pb::InvoicePaymentStatus::Open as i32 || invoice_payment.invoice != doc.id {
        return Ok(false);
    }
    let mut detach_saga = None;
    let wrote_events = match succeeded_amount {
        Some(amount) => {
            let effects = effects::mark_paid(&mut doc, &mut invoice_payment, Amount::new(amount), now_unix())
                .map_err(|e| FollowError::Other(e.to_string()))?;
            effects::persist(&mut tx, backend, &origin, &doc, Some((&invoice_payment, None)), &effects)
                .await?
        }
        None => {
            let saga_id = settle_platform::ids::IdPrefix::Saga.generate();
            let (saga, fence, effects) = detach::unapply_and_record(
                &mut tx,
                ctx,
                runner,
                &origin,
                saga_id,
                &mut doc,
                &mut invoice_payment,
                attach_key,
                payment.clone(),
                false,
            )
            .await
            .map_err(|e| FollowError::Other(e.to_string()))?;
            detach_saga = Some((saga, fence));
            !effects.events.is_empty()
        }
    };
    if !save_cursor(&mut *tx, holder, cursor).await? {
        return Err(FollowError::LeaseLost);
    }
    tx.commit().await?;
    if wrote_events {
        ctx.hub.committed();
    }
    if let Some((saga, fence)) = detach_saga {
        let runner = runner.clone();
        tokio::spawn(
            async move {
                runner.drive(saga, fence).await;
            }
            .in_current_span(),
        );
    }
    tracing::debug!(payment = %payment, invoice = %doc.id, event = %event.r#type, "applied payments event");
    Ok(true)
}
