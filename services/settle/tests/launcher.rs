//! The README's first command, as a newcomer runs it: the launcher starts all three services with
//! SQLite in a data folder, prints the endpoints and the development key, serves real calls, and
//! stops cleanly on Ctrl-C (SIGINT).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn the_launcher_serves_all_three_services_and_stops_on_ctrl_c() {
    let data = std::env::temp_dir().join(format!("settle-launcher-test-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        .env("SETTLE_DATA_DIR", &data)
        .env("SETTLE_INVOICES_PORT", "0")
        .env("SETTLE_PAYMENTS_PORT", "0")
        .env("SETTLE_CREDIT_NOTES_PORT", "0")
        .env_remove("SETTLE_API_KEYS")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("launcher starts");

    // Read the banner until the "Try it" section: the endpoints and the key are printed first.
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let banner =
        tokio::time::timeout(Duration::from_secs(60), banner).await.expect("banner within 60 s").unwrap();
    let address = |service: &str| -> String {
        let line = banner
            .iter()
            .find(|l| l.trim_start().starts_with(service))
            .unwrap_or_else(|| panic!("{service} in {banner:?}"));
        format!("http://{}", line.split_whitespace().last().unwrap())
    };
    assert!(banner.iter().any(|l| l.contains("sk_test_settle_dev")), "prints the development key");
    assert!(banner.iter().any(|l| l.contains("DEVELOPMENT KEYS")), "says it runs with them: {banner:?}");
    assert!(banner.iter().any(|l| l.contains("grpcurl")), "prints a grpcurl call");

    for service in ["invoices", "payments", "credit-notes"] {
        let channel =
            tonic::transport::Endpoint::from_shared(address(service)).unwrap().connect().await.unwrap();
        let health =
            HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.unwrap();
        assert_eq!(
            health.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    let channel =
        tonic::transport::Endpoint::from_shared(address("payments")).unwrap().connect().await.unwrap();
    let mut request = tonic::Request::new(pb::CreatePaymentIntentRequest {
        amount: 2_000,
        currency: "usd".into(),
        customer: Some("cus_demo".into()),
        payment_method: Some("pm_card_visa".into()),
        confirm: Some(true),
        ..Default::default()
    });
    request.metadata_mut().insert("authorization", "Bearer sk_test_settle_dev".parse().unwrap());
    let intent =
        PaymentIntentServiceClient::new(channel).create_payment_intent(request).await.unwrap().into_inner();
    assert!(intent.id.starts_with("pi_"));

    for db in ["invoices.db", "payments.db", "credit-notes.db"] {
        assert!(data.join(db).exists(), "{db} created in the data folder");
    }

    // Ctrl-C: drain and exit 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exits cleanly: {status:?}");
    let _ = std::fs::remove_dir_all(&data);
}
