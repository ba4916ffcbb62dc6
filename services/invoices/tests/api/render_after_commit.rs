//! No peer call under a write lock: an invoice change that expands `confirmation_secret` commits
//! first and asks payments for the secret afterwards, so a slow payments service cannot hold the
//! invoice's row lock (on SQLite the whole database's writer lock) while other writes wait.

use std::time::Duration;

use settle_invoices::config::Peers;
use settle_invoices::store::invoice_payments;
use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::backend_tests;
use settle_platform::db::Db;
use settle_platform::ids::IdPrefix;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_testkit::authorized;

use crate::helpers::{TestApp, draft, spawn_with_payments};

/// A payments address that accepts connections and never answers, until `release` is cancelled:
/// then it hangs up (so the waiting calls end now rather than at their deadline).
async fn black_hole(release: tokio_util::sync::CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                () = release.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => held.push(socket),
                    Err(_) => return,
                },
            }
        }
    });
    format!("http://{addr}")
}

/// Gives `invoice` an open default PaymentIntent, as finalization would, so expanding its
/// `confirmation_secret` asks payments.
async fn give_default_payment(app: &TestApp, invoice: &pb::Invoice) {
    let db: Db = app.db().await;
    let doc = pb::InvoicePayment {
        id: IdPrefix::InvoicePayment.generate(),
        invoice: invoice.id.clone(),
        currency: invoice.currency.clone(),
        amount_requested: invoice.amount_remaining,
        status: pb::InvoicePaymentStatus::Open as i32,
        is_default: true,
        object: "invoice_payment".into(),
        payment: Some(pb::InvoicePaymentAssociatedPayment {
            r#type: pb::InvoicePaymentPaymentType::PaymentIntent as i32,
            payment_intent: Some(IdPrefix::PaymentIntent.generate()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut tx = db.begin().await.unwrap();
    invoice_payments::insert(
        &mut tx,
        &settle_platform::Scope::test(DEV_ACCOUNT),
        &IdPrefix::Saga.generate(),
        &doc,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    db.close().await;
}

backend_tests! {
    a_slow_payments_service_holds_no_lock_while_the_confirmation_secret_is_rendered => |database: TestDatabase| async move {
        let release = tokio_util::sync::CancellationToken::new();
        let app = spawn_with_payments(database, Peers { payments_url: black_hole(release.clone()).await }).await;
        // Sent, not charged: finalizing it asks payments for nothing.
        let mut sent = draft("cus_slow");
        sent.collection_method = Some(pb::InvoiceCollectionMethod::SendInvoice as i32);
        sent.days_until_due = Some(30);
        let sent = app.create(sent).await;
        app.add_lines(&sent.id, vec![crate::helpers::line(1_000)]).await;
        let open = app.finalize(&sent.id).await;
        give_default_payment(&app, &open).await;

        // An update expanding the secret: payments will not answer it for a long while.
        let mut update = pb::UpdateInvoiceRequest { id: open.id.clone(), ..Default::default() };
        update.metadata.insert("note".into(), "slow".into());
        update.expand = vec!["confirmation_secret".into()];
        let mut client = app.invoices.clone();
        let slow = tokio::spawn(async move { client.update_invoice(authorized(update)).await });

        // Its change commits before payments is asked …
        let committed = eventually(|| async {
            let now = app.get(&open.id).await;
            now.metadata.contains_key("note")
        })
        .await;
        assert!(committed, "the update committed while payments was still silent");
        // … so another write goes through while the update still waits for payments.
        let other = tokio::time::timeout(Duration::from_secs(30), app.create(draft("cus_other"))).await;
        assert!(other.is_ok(), "a concurrent write was blocked by the waiting update");
        assert!(!slow.is_finished(), "the update was still waiting for payments");

        // The committed change is the answer, without the secret payments could not give.
        release.cancel();
        let answered = slow.await.unwrap().expect("the committed update answers").into_inner();
        assert_eq!((answered.metadata.get("note").map(String::as_str), answered.confirmation_secret), (Some("slow"), None));
    };
}

/// Polls `check` until it holds, for at most 30 s.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
