//! Metrics after a workload, end to end: a three-node cluster, each node serving `/metrics` on
//! its own port (SETTLE_METRICS_ADDR); a crash at a fault point so a saga is resumed by recovery,
//! then attaches (one refused by payments, one on a missing invoice) and a detach; then every
//! node's scrape must show the saga and RPC metrics with the counts of the calls made, and
//! plausible pool, outbox and consumer figures.
//!
//! SQLite only: the metrics are recorded above the store, which the other tests cover on both.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use settle_platform::db::Backend;
use settle_proto::settle::invoices::v1 as pb;
use settle_testkit::idempotent;
use settle_tests::api::Api;
use settle_tests::cluster::{Cluster, Topology, eventually};
use settle_tests::process::{Service, free_addr};
use settle_tests::scrape::{Metrics, scrape};
use tonic::Code;

const RPC_COUNT: &str = "rpc_server_duration_milliseconds_count";
const RPC_SUM: &str = "rpc_server_duration_milliseconds_sum";
const STEP_COUNT: &str = "settle_saga_step_duration_milliseconds_count";
const STEP_SUM: &str = "settle_saga_step_duration_milliseconds_sum";
const FINISHED: &str = "settle_sagas_finished_total";
const STUCK: &str = "settle_sagas_stuck";

/// `(labels, expected value)` of one series.
type Expected = Vec<(&'static str, Vec<(&'static str, String)>, f64)>;

fn rpc(method: &'static str, code: Code, count: f64) -> (&'static str, Vec<(&'static str, String)>, f64) {
    (
        RPC_COUNT,
        vec![("rpc_method", method.to_owned()), ("rpc_grpc_status_code", (code as i32).to_string())],
        count,
    )
}

fn step(
    kind: &'static str,
    step: &'static str,
    outcome: &'static str,
    count: f64,
) -> (&'static str, Vec<(&'static str, String)>, f64) {
    (
        STEP_COUNT,
        vec![("kind", kind.to_owned()), ("step", step.to_owned()), ("outcome", outcome.to_owned())],
        count,
    )
}

fn finished(
    kind: &'static str,
    state: &'static str,
    count: f64,
) -> (&'static str, Vec<(&'static str, String)>, f64) {
    (FINISHED, vec![("kind", kind.to_owned()), ("state", state.to_owned())], count)
}

fn value(metrics: &Metrics, name: &str, labels: &[(&'static str, String)]) -> Option<f64> {
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    metrics.get(name, &labels)
}

/// Scrapes `addr` until every expected series has its value (the last RPC of a call is recorded
/// when its response body ends, a moment after the client has it), for at most 10 s; returns the
/// last scrape and what still differed.
async fn scrape_until(addr: SocketAddr, expected: &Expected) -> (Metrics, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape(addr).await;
        let wrong: Vec<String> = expected
            .iter()
            .filter_map(|(name, labels, want)| {
                let got = value(&metrics, name, labels);
                (got != Some(*want)).then(|| format!("{name}{labels:?}: expected {want}, got {got:?}"))
            })
            .collect();
        if wrong.is_empty() || Instant::now() >= deadline {
            return (metrics, wrong);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mean of a histogram, in its unit, from its `_sum` and `_count` over the samples with `labels`.
fn mean(metrics: &Metrics, sum: &str, count: &str, labels: &[(&str, &str)]) -> f64 {
    metrics.sum(sum, labels) / metrics.sum(count, labels).max(1.0)
}

/// A finalized (open) invoice of `total` for `customer`.
async fn open_invoice(api: &Api, customer: &str, total: i64) -> pb::Invoice {
    let draft = api.draft(customer, total, false).await.unwrap();
    api.finalize(&draft.id, None).await.unwrap()
}

#[tokio::test]
async fn after_a_workload_every_node_reports_its_saga_rpc_pool_and_outbox_metrics() {
    let metrics_addrs: BTreeMap<&str, SocketAddr> =
        [("invoices", free_addr()), ("payments", free_addr()), ("credit-notes", free_addr())].into();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_settle-node"));
    let addrs = metrics_addrs.clone();
    let topology = Topology {
        env: Some(Box::new(move |service| {
            BTreeMap::from([("SETTLE_METRICS_ADDR".to_owned(), addrs[service.arg()].to_string())])
        })),
        ..Default::default()
    };
    let mut cluster =
        Cluster::start_with(binary, Backend::Sqlite, &topology).await.expect("a SQLite cluster");
    let api = Api::new(cluster.channel(Service::Invoices), cluster.channel(Service::Payments));

    // 1. A crash: invoices dies right after payments reserved; the restarted node's recovery
    //    resumes the saga, and the client's repeat gets its outcome.
    let crashed_invoice = open_invoice(&api, "cus_metrics0", 10_000).await;
    let crashed_intent = api.intent("cus_metrics0", 1_000, Some("pm_card_visa")).await.unwrap();
    cluster.restart(Service::Invoices, Some("invoices.attach.after_reserve=return(crash)")).await;
    let first = {
        let (api, invoice, intent) = (api.clone(), crashed_invoice.id.clone(), crashed_intent.id.clone());
        tokio::spawn(async move { api.attach(&invoice, &intent, Some("metrics-crash")).await })
    };
    assert!(cluster.crashed(Service::Invoices, Duration::from_secs(15)).await, "the fault point was reached");
    assert!(first.await.unwrap().is_err());
    // From here on the invoices node is one process: its counters count what follows.
    cluster.restart(Service::Invoices, None).await;
    let ended = eventually(Duration::from_secs(30), || async {
        api.live_sagas().await.ok()?.is_empty().then_some(())
    });
    assert!(ended.await.is_some(), "recovery finished the saga");
    let repeated = api.attach(&crashed_invoice.id, &crashed_intent.id, Some("metrics-crash")).await;
    assert_eq!(repeated.unwrap().amount_paid, 1_000);

    // 2. Three attaches, a detach, one refused by payments (another customer's payment) and one
    //    on an invoice that does not exist.
    let mut invoices = Vec::new();
    for n in 1..=3 {
        let customer = format!("cus_metrics{n}");
        let invoice = open_invoice(&api, &customer, 10_000).await;
        let intent = api.intent(&customer, 2_000, Some("pm_card_visa")).await.unwrap();
        let attached = api.attach(&invoice.id, &intent.id, Some(&format!("metrics-{n}"))).await;
        assert_eq!(attached.unwrap().amount_paid, 2_000);
        invoices.push((invoice.id, intent.id));
    }
    let (detached_invoice, detached_intent) = &invoices[0];
    let detach = pb::DetachPaymentRequest {
        id: detached_invoice.clone(),
        payment: Some(pb::detach_payment_request::Payment::PaymentIntent(detached_intent.clone())),
        expand: vec![],
    };
    let detached = api.invoices.clone().detach_payment(idempotent(detach, "metrics-detach")).await;
    assert_eq!(detached.unwrap().into_inner().amount_paid, 0);
    let stranger = api.intent("cus_stranger", 500, Some("pm_card_visa")).await.unwrap();
    let refused = api.attach(&invoices[1].0, &stranger.id, Some("metrics-refused")).await.unwrap_err();
    let refused_code = refused.code();
    assert_ne!(refused_code, Code::Ok);
    let missing = api.attach("in_missing", &stranger.id, Some("metrics-missing")).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    println!("payments refused the stranger's payment with {refused_code:?}");

    // 3. What the nodes report. Invoices counts since its restart; payments since the start.
    let attach_kind = "attach_payment";
    let invoices_expected: Expected = vec![
        rpc("AttachPayment", Code::Ok, 4.0),
        rpc("AttachPayment", refused_code, 1.0),
        rpc("AttachPayment", Code::NotFound, 1.0),
        rpc("DetachPayment", Code::Ok, 1.0),
        // The resumed saga repeated the interrupted reserve; the refused one ended at reserve.
        step(attach_kind, "reserve", "next", 4.0),
        step(attach_kind, "reserve", "finished", 1.0),
        step(attach_kind, "apply", "committed", 4.0),
        step(attach_kind, "confirm", "finished", 4.0),
        step("detach_payment", "release", "finished", 1.0),
        finished(attach_kind, "succeeded", 4.0),
        finished(attach_kind, "failed", 1.0),
        finished("detach_payment", "succeeded", 1.0),
    ];
    let payments_expected: Expected = vec![
        // Five intents in this test (one refused attach included), all succeeded at once.
        rpc("CreatePaymentIntent", Code::Ok, 5.0),
        // The crashed saga's reserve, its repeat by recovery, three more, and the refusal.
        rpc("ReserveAttachment", Code::Ok, 5.0),
        rpc("ReserveAttachment", refused_code, 1.0),
        rpc("ConfirmAttachment", Code::Ok, 4.0),
        rpc("ReleaseAttachment", Code::Ok, 1.0),
    ];
    let (invoices_metrics, wrong) = scrape_until(metrics_addrs["invoices"], &invoices_expected).await;
    assert!(wrong.is_empty(), "invoices: {wrong:#?}\n{}", invoices_metrics.text);
    let (payments_metrics, wrong) = scrape_until(metrics_addrs["payments"], &payments_expected).await;
    assert!(wrong.is_empty(), "payments: {wrong:#?}\n{}", payments_metrics.text);
    let credit_notes_metrics = scrape(metrics_addrs["credit-notes"]).await;

    // Latencies are plausible: positive, and well under the peers' 10 s deadline on loopback.
    for (node, metrics) in [("invoices", &invoices_metrics), ("payments", &payments_metrics)] {
        let rpc_mean = mean(metrics, RPC_SUM, RPC_COUNT, &[]);
        println!("{node}: mean RPC {rpc_mean:.2} ms over {} calls", metrics.sum(RPC_COUNT, &[]));
        assert!(rpc_mean > 0.0 && rpc_mean < 5_000.0, "{node}: mean RPC latency {rpc_mean} ms");
        assert!(!metrics.text.contains("grpc.health"), "{node}: health checks stay out of the RPC metrics");
    }
    let step_mean = mean(&invoices_metrics, STEP_SUM, STEP_COUNT, &[("kind", attach_kind)]);
    println!("invoices: mean attach step {step_mean:.2} ms");
    assert!(step_mean > 0.0 && step_mean < 5_000.0, "mean saga step {step_mean} ms");

    // The stuck gauge exists per kind; at most the crashed saga was waiting when it was measured
    // (at the restarted node's start, then every 10 s).
    for kind in [attach_kind, "detach_payment", "reapply_payment", "pay_invoice"] {
        let stuck = invoices_metrics.get(STUCK, &[("kind", kind)]);
        assert!(stuck.is_some_and(|n| (0.0..=1.0).contains(&n)), "{STUCK}{{kind={kind}}} = {stuck:?}");
    }

    // Pool and outbox gauges of each node's own service.
    for (service, metrics) in [
        ("invoices", &invoices_metrics),
        ("payments", &payments_metrics),
        ("credit-notes", &credit_notes_metrics),
    ] {
        let idle = metrics.get("settle_db_pool_connections", &[("service", service), ("state", "idle")]);
        let in_use = metrics.get("settle_db_pool_connections", &[("service", service), ("state", "in_use")]);
        let (Some(idle), Some(in_use)) = (idle, in_use) else {
            panic!("{service}: no pool gauge\n{}", metrics.text)
        };
        // SETTLE_DATABASE_MAX_CONNECTIONS is 4 in the cluster; an idle node has opened at least one.
        assert!(
            idle >= 0.0 && in_use >= 0.0 && (1.0..=4.0).contains(&(idle + in_use)),
            "{service}: {idle} idle, {in_use} in use"
        );
        assert!(
            metrics.get("settle_outbox_sequenced", &[("service", service)]).is_some(),
            "{service}: no outbox gauge"
        );
    }
    // payments wrote an event per intent created and per attachment change at least.
    let payments_events =
        payments_metrics.get("settle_outbox_sequenced", &[("service", "payments")]).unwrap();
    assert!(payments_events >= 5.0, "payments sequenced {payments_events} events");
    let invoices_events =
        invoices_metrics.get("settle_outbox_sequenced", &[("service", "invoices")]).unwrap();
    assert!(invoices_events >= 8.0, "invoices sequenced {invoices_events} events");
    // (The consumer-delay histogram stays empty here: the restarted invoices node may only follow
    // payments' stream once the crashed process' 15 s lease on it has expired.)
    println!("outbox: payments sequenced {payments_events} events, invoices {invoices_events}");
    cluster.stop_all().await;
}
