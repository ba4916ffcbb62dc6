//! Traces across services, end to end: three `settle-node` processes export OTLP/gRPC to a
//! receiver in this test, and the test reads back what one operation produced.
//!
//! - one AttachPayment is ONE trace, with the server spans of invoices and payments it crossed;
//! - a saga resumed by recovery after a crash runs in a new trace linked to the original one;
//! - applying a payments event in invoices continues the trace of the transaction that wrote it;
//! - a node flushes the spans it holds when it stops gracefully.
//!
//! The nodes log at `warn` (the process harness' default): what is traced does not follow the log
//! level.
//!
//! SQLite only: propagation does not depend on the store, and the saga and event paths these
//! follow are covered on both backends by the crash and end-to-end tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use settle_platform::db::Backend;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use settle_testkit::{authorized, idempotent};
use settle_tests::api::Api;
use settle_tests::cluster::{Cluster, Topology, eventually};
use settle_tests::otlp::{ClientTrace, Collector, Trace};
use settle_tests::process::{Node, Service, free_addr};

const INVOICES: &str = "settle-invoices";
const PAYMENTS: &str = "settle-payments";
const CREDIT_NOTES: &str = "settle-credit-notes";

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_settle-node"))
}

async fn traced_cluster(collector: &Collector) -> (Cluster, Api) {
    let env = collector.env();
    let topology = Topology { env: Some(Box::new(move |_| env.clone())), ..Default::default() };
    let cluster = Cluster::start_with(binary(), Backend::Sqlite, &topology).await.expect("a SQLite cluster");
    let api = Api::new(cluster.channel(Service::Invoices), cluster.channel(Service::Payments));
    (cluster, api)
}

/// A finalized (open) invoice of `total` for `customer`.
async fn open_invoice(api: &Api, customer: &str, total: i64) -> pb::Invoice {
    let draft = api.draft(customer, total, false).await.unwrap();
    api.finalize(&draft.id, None).await.unwrap()
}

fn attach_request(invoice: &str, payment_intent: &str) -> pb::AttachPaymentRequest {
    pb::AttachPaymentRequest {
        id: invoice.to_owned(),
        payment: Some(pb::attach_payment_request::Payment::PaymentIntent(payment_intent.to_owned())),
        expand: vec![],
    }
}

#[tokio::test]
async fn one_attach_is_one_trace_across_invoices_and_payments() {
    let collector = Collector::start().await;
    let (mut cluster, api) = traced_cluster(&collector).await;
    let invoice = open_invoice(&api, "cus_trace", 10_000).await;
    let intent = api.intent("cus_trace", 4_000, Some("pm_card_visa")).await.unwrap();

    let client = ClientTrace::new();
    let request = client.inject(idempotent(attach_request(&invoice.id, &intent.id), "trace-attach"));
    let attached = api.invoices.clone().attach_payment(request).await.unwrap().into_inner();
    assert_eq!(attached.amount_paid, 4_000);

    let trace = collector
        .assert_one_trace(
            &client,
            (INVOICES, "AttachPayment"),
            &[(PAYMENTS, "ReserveAttachment"), (PAYMENTS, "ConfirmAttachment")],
        )
        .await;
    assert_eq!(trace.services(), [INVOICES, PAYMENTS].into(), "service.name per process");
    let root = trace.expect_server_span(INVOICES, "AttachPayment");
    assert_eq!(root.str_attr("rpc.service"), Some("settle.invoices.v1.InvoiceService"));
    for (method, step) in [("ReserveAttachment", "reserve"), ("ConfirmAttachment", "confirm")] {
        let call = trace.expect_server_span(PAYMENTS, method);
        assert_eq!(call.str_attr("rpc.service"), Some("settle.payments.v1.PaymentAttachmentService"));
        // The payments span's parent is the invoices saga step that made the call.
        let parent = trace.span(&call.parent_span_id).expect("the caller's span is in the trace");
        assert_eq!(parent.service, INVOICES, "{}", trace.describe());
        assert_eq!(parent.name, "saga.step", "{}", trace.describe());
        assert_eq!(parent.str_attr("saga.kind"), Some("attach_payment"));
        assert_eq!(parent.str_attr("saga.step"), Some(step));
        assert_eq!(trace.span(&parent.parent_span_id).map(|s| &s.span_id), Some(&root.span_id));
    }
    cluster.stop_all().await;
}

#[tokio::test]
async fn a_saga_resumed_after_a_crash_links_to_its_original_trace() {
    let collector = Collector::start().await;
    let (mut cluster, api) = traced_cluster(&collector).await;
    let invoice = open_invoice(&api, "cus_trace_crash", 10_000).await;
    let intent = api.intent("cus_trace_crash", 4_000, Some("pm_card_visa")).await.unwrap();

    // Invoices crashes right after payments reserved the payment; recovery resumes the saga.
    cluster.restart(Service::Invoices, Some("invoices.attach.after_reserve=return(crash)")).await;
    let client = ClientTrace::new();
    let attach = attach_request(&invoice.id, &intent.id);
    let first = {
        let (mut invoices, request) =
            (api.invoices.clone(), client.inject(idempotent(attach.clone(), "trace-crash")));
        tokio::spawn(async move { invoices.attach_payment(request).await })
    };
    assert!(cluster.crashed(Service::Invoices, Duration::from_secs(15)).await, "the fault point was reached");
    assert!(first.await.unwrap().is_err(), "the crashed call did not answer");
    cluster.restart(Service::Invoices, None).await;
    let ended = eventually(Duration::from_secs(30), || async {
        api.live_sagas().await.ok()?.is_empty().then_some(())
    });
    assert!(ended.await.is_some(), "recovery finished the saga");

    // The original trace reached payments before the crash.
    let reserved = collector
        .span("the original ReserveAttachment", |s| {
            s.trace_id == client.trace_id && s.is_server_rpc(PAYMENTS, "ReserveAttachment")
        })
        .await;
    reserved.assert_grpc_server(0);
    // The resumed saga: a new trace whose root links to the request that started the saga.
    let resumed = collector
        .span("the saga.recover span", |s| {
            s.service == INVOICES
                && s.name == "saga.recover"
                && s.links.iter().any(|(trace, _)| *trace == client.trace_id)
        })
        .await;
    assert_ne!(resumed.trace_id, client.trace_id, "recovery runs in a trace of its own");
    assert_eq!(resumed.str_attr("saga.kind"), Some("attach_payment"));
    assert_eq!(resumed.str_attr("saga.step"), Some("reserve"), "it resumes at the step that was interrupted");
    let recovery = collector
        .trace_with(&resumed.trace_id, &[(PAYMENTS, "ReserveAttachment"), (PAYMENTS, "ConfirmAttachment")])
        .await;
    println!(
        "original: {}\nrecovery: {}",
        Trace::of(&client.trace_id, &collector.spans()).describe(),
        recovery.describe()
    );
    for method in ["ReserveAttachment", "ConfirmAttachment"] {
        let call = recovery.expect_server_span(PAYMENTS, method);
        call.assert_grpc_server(0);
        assert!(recovery.descends_from(call, &resumed), "{method} runs under the resumed saga");
    }

    // The client's repeat gets the outcome.
    let again =
        api.invoices.clone().attach_payment(idempotent(attach, "trace-crash")).await.unwrap().into_inner();
    assert_eq!(again.amount_paid, 4_000);
    cluster.stop_all().await;
}

#[tokio::test]
async fn applying_a_payments_event_continues_the_trace_that_wrote_it() {
    let collector = Collector::start().await;
    let (mut cluster, api) = traced_cluster(&collector).await;
    let invoice = open_invoice(&api, "cus_trace_event", 5_000).await;
    // A bank debit stays processing: attached, its invoice payment is open until it settles.
    let intent = api.intent("cus_trace_event", 5_000, Some("pm_us_bank_account")).await.unwrap();
    let attached = api.attach(&invoice.id, &intent.id, Some("trace-event")).await;
    assert_eq!(attached.unwrap().amount_paid, 0);

    let client = ClientTrace::new();
    let settle = ppb::SettlePaymentIntentRequest {
        id: intent.id.clone(),
        outcome: ppb::SettlementOutcome::Succeeded as i32,
        ..Default::default()
    };
    api.test_helpers.clone().settle_payment_intent(client.inject(authorized(settle))).await.unwrap();
    let paid = eventually(Duration::from_secs(20), || async {
        let doc = api.invoice(&invoice.id).await.ok()?;
        (doc.status == Some(pb::InvoiceStatus::Paid as i32)).then_some(doc)
    })
    .await
    .expect("invoices applied payment_intent.succeeded");
    assert_eq!(paid.amount_paid, 5_000);

    let applied = collector
        .span("invoices processing payment_intent.succeeded", |s| {
            s.trace_id == client.trace_id && s.service == INVOICES && s.kind == SpanKind::Consumer
        })
        .await;
    let trace = Trace::of(&client.trace_id, &collector.spans());
    println!("{}", trace.describe());
    trace.assert_rooted_at_client(&client);
    let settled = trace.expect_server_span(PAYMENTS, "SettlePaymentIntent");
    settled.assert_grpc_server(0);
    assert!(trace.descends_from(&applied, settled), "the event's processing continues the settle trace");
    assert_eq!(applied.name, "process payment_intent.succeeded");
    assert_eq!(applied.str_attr("messaging.operation.type"), Some("process"));
    assert_eq!(applied.str_attr("messaging.destination.name"), Some("payments"));
    assert!(applied.str_attr("messaging.message.id").is_some_and(|id| id.starts_with("evt_")));

    // And onwards: the invoice events invoices wrote while applying it carry the same trace.
    let events = Api::all_events(&api.invoice_events).await.unwrap();
    let in_trace: Vec<&str> = events
        .iter()
        .filter(|e| e.traceparent.as_deref().is_some_and(|t| t.contains(&client.trace_id)))
        .map(|e| e.r#type.as_str())
        .collect();
    println!("invoice events in the settle trace: {in_trace:?}");
    assert!(in_trace.contains(&"invoice.paid"), "{in_trace:?}");
    cluster.stop_all().await;
}

#[tokio::test]
async fn a_node_flushes_its_spans_when_it_stops_gracefully() {
    use settle_proto::settle::payments::v1::CreatePaymentIntentRequest;
    use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;

    let collector = Collector::start().await;
    let database = settle_platform::testing::TestDatabase::sqlite();
    // Spans would only leave after a minute: what arrives came with the flush at shutdown.
    let mut env = collector.env_with_delay(Duration::from_secs(60));
    env.insert("DATABASE_URL".to_owned(), database.url().to_owned());
    env.insert("SETTLE_DEVELOPMENT".to_owned(), "true".to_owned());
    let mut payments = Node::new(binary(), Service::Payments, free_addr(), env);
    payments.start(None);
    payments.wait_healthy(Duration::from_secs(30)).await;

    let client = ClientTrace::new();
    let create = CreatePaymentIntentRequest { amount: 1200, currency: "usd".into(), ..Default::default() };
    PaymentIntentServiceClient::new(settle_testkit::channel(payments.addr))
        .create_payment_intent(client.inject(authorized(create)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(collector.spans().iter().all(|s| s.trace_id != client.trace_id), "not exported before the stop");

    let status = payments.stop().await.expect("the node ran");
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    let span = collector.span("the CreatePaymentIntent span", |s| s.trace_id == client.trace_id).await;
    assert!(span.is_server_rpc(PAYMENTS, "CreatePaymentIntent"), "{span:?}");
    span.assert_grpc_server(0);
}

#[tokio::test]
async fn a_credit_note_with_a_refund_is_one_trace_across_the_three_services() {
    let collector = Collector::start().await;
    let (mut cluster, api) = traced_cluster(&collector).await;
    let api = api.with_credit_notes(cluster.channel(Service::CreditNotes));
    let invoice = open_invoice(&api, "cus_trace_cn", 10_000).await;
    let paid = api.pay(&invoice.id, Some("trace-cn-pay")).await.unwrap();
    assert_eq!(paid.amount_paid, 10_000);

    // 3 000 back: 2 000 refunded to the card, 1 000 credited to the customer's balance.
    let client = ClientTrace::new();
    let request = settle_proto::settle::creditnotes::v1::CreateCreditNoteRequest {
        invoice: invoice.id.clone(),
        amount: Some(3_000),
        refund_amount: Some(2_000),
        credit_amount: Some(1_000),
        ..Default::default()
    };
    let note = api
        .credit_notes
        .clone()
        .unwrap()
        .create_credit_note(client.inject(idempotent(request, "trace-credit-note")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(note.post_payment_amount, 3_000);

    let trace = collector
        .assert_one_trace(
            &client,
            (CREDIT_NOTES, "CreateCreditNote"),
            &[
                (INVOICES, "ReserveInvoiceCredit"),
                (PAYMENTS, "ClaimRefunds"),
                (INVOICES, "ApplyInvoiceCredit"),
            ],
        )
        .await;
    assert_eq!(trace.services(), [CREDIT_NOTES, INVOICES, PAYMENTS].into(), "{}", trace.describe());
    cluster.stop_all().await;
}
