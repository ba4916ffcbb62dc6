//! The process harness itself: nodes start, answer health, die on SIGKILL and come back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::collections::BTreeMap;
use std::time::Duration;

use settle_platform::testing::TestDatabase;
use settle_tests::process::{Node, Service, free_addr};

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
