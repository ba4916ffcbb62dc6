//! The process harness itself: nodes start, answer health, die on SIGKILL and come back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::collections::BTreeMap;
use std::time::Duration;

use settle_platform::testing::TestDatabase;
use settle_tests::process::{Node, Service, free_addr};
use settle_tests::scrape::scrape;

#[tokio::test]
async fn nodes_start_die_and_restart() {
    let payments_db = TestDatabase::sqlite();
    let invoices_db = TestDatabase::sqlite();
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_settle-node"));
    let payments_addr = free_addr();
    let env = |db: &TestDatabase| {
        BTreeMap::from([
            ("DATABASE_URL".to_owned(), db.url().to_owned()),
            ("SETTLE_PAYMENTS_URL".to_owned(), format!("http://{payments_addr}")),
            ("SETTLE_DEVELOPMENT".to_owned(), "true".to_owned()),
        ])
    };
    let mut payments = Node::new(binary.clone(), Service::Payments, payments_addr, env(&payments_db));
    let mut invoices = Node::new(binary, Service::Invoices, free_addr(), env(&invoices_db));
    payments.start(None);
    invoices.start(None);
    payments.wait_healthy(Duration::from_secs(30)).await;
    invoices.wait_healthy(Duration::from_secs(30)).await;
    payments.kill().await;
    assert!(!payments.running());
    payments.start(None);
    payments.wait_healthy(Duration::from_secs(30)).await;
    let started = std::time::Instant::now();
    invoices.stop().await;
    let invoices_stopped = started.elapsed();
    payments.stop().await;
    let payments_stopped = started.elapsed() - invoices_stopped;
    println!("graceful stops: invoices {invoices_stopped:?}, payments {payments_stopped:?}");
    assert!(payments_stopped < Duration::from_secs(10), "no connection of ours held the drain");
}

#[tokio::test]
async fn a_node_serves_prometheus_metrics_of_its_rpcs_pool_and_outbox() {
    use settle_proto::settle::payments::v1::CreatePaymentIntentRequest;
    use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;

    let database = TestDatabase::sqlite();
    let metrics_addr = free_addr();
    let env = BTreeMap::from([
        ("DATABASE_URL".to_owned(), database.url().to_owned()),
        ("SETTLE_METRICS_ADDR".to_owned(), metrics_addr.to_string()),
        ("SETTLE_DEVELOPMENT".to_owned(), "true".to_owned()),
    ]);
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_settle-node"));
    let mut payments = Node::new(binary, Service::Payments, free_addr(), env);
    payments.start(None);
    payments.wait_healthy(Duration::from_secs(30)).await;

    // The node runs with the development key (SETTLE_DEVELOPMENT, no SETTLE_API_KEYS), which the
    // testkit also sends.
    let mut client = PaymentIntentServiceClient::new(settle_testkit::channel(payments.addr));
    let create = CreatePaymentIntentRequest { amount: 1200, currency: "usd".into(), ..Default::default() };
    for _ in 0..3 {
        client
            .create_payment_intent(settle_testkit::idempotent(create.clone(), "metrics-once"))
            .await
            .unwrap();
    }
    let refused = client
        .create_payment_intent(settle_testkit::authorized(CreatePaymentIntentRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // The outbox gauge is read at scrape time; give the sequencer its moment.
    let mut metrics = scrape(metrics_addr).await;
    for _ in 0..50 {
        if metrics.get("settle_outbox_sequenced", &[("service", "payments")]).unwrap_or(0.0) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = scrape(metrics_addr).await;
    }
    let text = &metrics.text;
    let count = |code: &str| {
        metrics.get(
            "rpc_server_duration_milliseconds_count",
            &[("rpc_method", "CreatePaymentIntent"), ("rpc_grpc_status_code", code)],
        )
    };
    assert_eq!(count("0"), Some(3.0), "{text}");
    assert_eq!(count("3"), Some(1.0), "{text}");
    assert_eq!(metrics.get("settle_idempotent_replays_total", &[]), Some(2.0), "{text}");
    assert_eq!(metrics.get("settle_outbox_sequenced", &[("service", "payments")]), Some(1.0), "{text}");
    assert!(
        metrics.get("settle_db_pool_connections", &[("service", "payments"), ("state", "idle")]).is_some(),
        "{text}"
    );
    assert!(!text.contains("grpc.health"), "health checks stay out of the RPC metrics");
    payments.stop().await;
}

#[tokio::test]
async fn a_node_without_keys_refuses_to_start() {
    let database = TestDatabase::sqlite();
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_settle-node"));
    for service in [Service::Payments, Service::Invoices, Service::CreditNotes] {
        let output = tokio::process::Command::new(&binary)
            .arg(service.arg())
            .env("DATABASE_URL", database.url())
            .env("SETTLE_LISTEN_ADDR", free_addr().to_string())
            .env_remove("SETTLE_API_KEYS")
            .env_remove("SETTLE_INTERNAL_KEY")
            .env_remove("SETTLE_DEVELOPMENT")
            .stdin(std::process::Stdio::null())
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{service:?}: {stderr}");
        assert!(stderr.contains("SETTLE_API_KEYS is not set"), "{service:?}: {stderr}");
        assert!(stderr.contains("SETTLE_DEVELOPMENT=true"), "{service:?}: {stderr}");
    }
}
