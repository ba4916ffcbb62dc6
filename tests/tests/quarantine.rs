//! The invoices consumer survives a payments event it cannot apply, on both backends: the event is
//! quarantined (listed to its own account only, counted in the metric), the stream moves on so
//! other accounts' invoices are still marked paid by their payments' events, and a retry once the
//! event is readable applies it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::time::Duration;

use prost::Message;
use settle_platform::backend_tests;
use settle_platform::db::{Db, PoolSettings};
use settle_platform::ids::IdPrefix;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::event_quarantine_service_client::EventQuarantineServiceClient;
use settle_proto::settle::payments::v1 as ppb;
use settle_testkit::{OTHER_API_KEY, reason, with_key};
use settle_tests::Suite;
use settle_tests::api::Api;
use settle_tests::cluster::eventually;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

/// An open invoice of `total` for `customer` with a processing bank debit attached for all of it.
async fn pending(api: &Api, customer: &str, total: i64) -> (pb::Invoice, ppb::PaymentIntent) {
    let draft = api.draft(customer, total, false).await.unwrap();
    let invoice = api.finalize(&draft.id, None).await.unwrap();
    let intent = api.intent(customer, total, Some("pm_us_bank_account")).await.unwrap();
    assert_eq!(intent.status, ppb::PaymentIntentStatus::Processing as i32);
    let invoice = api.attach(&invoice.id, &intent.id, None).await.unwrap();
    assert_eq!(invoice.amount_paid, 0);
    (invoice, intent)
}

async fn quarantined(
    client: &EventQuarantineServiceClient<tonic::transport::Channel>,
    key: &'static str,
) -> Vec<pb::QuarantinedEvent> {
    let request = pb::ListQuarantinedEventsRequest { limit: Some(100), ..Default::default() };
    client.clone().list_quarantined_events(with_key(request, key)).await.unwrap().into_inner().data
}

backend_tests! {
    an_event_the_consumer_cannot_apply_is_quarantined_and_the_stream_moves_on => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = Api::new(suite.invoices.channel(), suite.payments.channel());
        let other = api.clone().with_key(OTHER_API_KEY);
        let quarantine = EventQuarantineServiceClient::new(suite.invoices.channel());

        // Another account's pending payment gets a `payment_intent.succeeded` whose object is
        // garbage: an event that can never be applied.
        let (poisoned_invoice, poisoned_intent) = pending(&other, "cus_poison", 3_000).await;
        let payments_db = Db::connect(suite.payments_database().url(), &PoolSettings::default()).await.unwrap();
        let poison = IdPrefix::Event.generate();
        sqlx::query(
            "INSERT INTO outbox_events (id, account_id, type, object_id, object_sequence, data_type_url, data, livemode, created) \
             VALUES ($1, $2, 'payment_intent.succeeded', $3, 1000000, 'type.googleapis.com/settle.payments.v1.PaymentIntent', $4, $5, $6)",
        )
        .bind(poison.as_str())
        .bind(settle_testkit::OTHER_ACCOUNT)
        .bind(poisoned_intent.id.as_str())
        .bind(vec![0xffu8, 0xff, 0xff, 0xff, 0x0f])
        .bind(false)
        .bind(settle_platform::time::now_unix())
        .execute(payments_db.pool())
        .await
        .unwrap();
        // Numbered before the healthy event below, so the consumer meets it first.
        eventually(WAIT, || async {
            let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM outbox_events WHERE id = $1")
                .bind(poison.as_str())
                .fetch_one(payments_db.pool())
                .await
                .unwrap();
            seq
        })
        .await
        .expect("the poison event is sequenced");

        // The development account's bank debit succeeds after it: its invoice is still marked paid.
        let (invoice, intent) = pending(&api, "cus_healthy", 2_000).await;
        api.settle(&intent.id, true).await.unwrap();
        let paid = eventually(WAIT, || async {
            let now = api.invoice(&invoice.id).await.unwrap();
            (now.status == Some(pb::InvoiceStatus::Paid as i32)).then_some(now)
        })
        .await
        .expect("the healthy invoice is marked paid past the poison event");
        assert_eq!(paid.amount_paid, 2_000);

        // The poison event is recorded, for its own account only, and counted.
        let listed = quarantined(&quarantine, OTHER_API_KEY).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        let event = &listed[0];
        assert_eq!((event.id.as_str(), event.source.as_str(), event.r#type.as_str()), (poison.as_str(), "payments", "payment_intent.succeeded"));
        assert_eq!((event.object_id.as_str(), event.livemode, event.attempts), (poisoned_intent.id.as_str(), false, 1));
        assert_eq!(event.reason, pb::QuarantineReason::ObjectUndecodable as i32);
        assert_eq!(event.status, pb::QuarantineStatus::Quarantined as i32);
        assert!(!event.error.is_empty() && event.error.chars().count() <= 200);
        assert!(quarantined(&quarantine, settle_platform::auth::DEV_API_KEY).await.is_empty(), "another account's quarantine is invisible");
        let metrics = settle_platform::metrics::render();
        assert!(
            metrics.lines().any(|l| l.starts_with("settle_consumer_quarantined_events_total{")
                && l.contains("reason=\"object_undecodable\"")
                && l.contains("type=\"payment_intent.succeeded\"")),
            "metric missing:\n{metrics}"
        );
        assert_eq!(other.invoice(&poisoned_invoice.id).await.unwrap().amount_paid, 0);

        // A retry while the event is still unreadable is refused and counted as an attempt.
        let retry = |id: &str| {
            let request = pb::RetryQuarantinedEventRequest { id: id.to_owned() };
            let mut client = quarantine.clone();
            async move { client.retry_quarantined_event(with_key(request, OTHER_API_KEY)).await.map(|r| r.into_inner()) }
        };
        let refused = retry(&poison).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused)), (Code::FailedPrecondition, "state_unsupported".to_owned()));
        assert_eq!(quarantined(&quarantine, OTHER_API_KEY).await[0].attempts, 2);
        // Other accounts cannot retry it.
        let request = pb::RetryQuarantinedEventRequest { id: poison.clone() };
        let missing = quarantine.clone().retry_quarantined_event(with_key(request, settle_platform::auth::DEV_API_KEY)).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);

        // Once the event reads back (here: repaired in place), a retry applies it and resolves it.
        let mut succeeded = poisoned_intent.clone();
        succeeded.status = ppb::PaymentIntentStatus::Succeeded as i32;
        succeeded.amount_received = 3_000;
        sqlx::query("UPDATE outbox_events SET data = $1 WHERE id = $2")
            .bind(succeeded.encode_to_vec())
            .bind(poison.as_str())
            .execute(payments_db.pool())
            .await
            .unwrap();
        let resolved = retry(&poison).await.unwrap();
        assert_eq!(resolved.status, pb::QuarantineStatus::Resolved as i32);
        assert!(resolved.resolved_at.is_some());
        let now = other.invoice(&poisoned_invoice.id).await.unwrap();
        assert_eq!((now.status, now.amount_paid), (Some(pb::InvoiceStatus::Paid as i32), 3_000));
        // Retrying a resolved event changes nothing.
        assert_eq!(retry(&poison).await.unwrap(), resolved);
        payments_db.close().await;
    };
}
