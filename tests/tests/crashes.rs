//! Crash tests for the payment-application sagas: for every step of attach, detach, reapply and pay,
//! crash the orchestrator (invoices) there — and, separately, the participant (payments) at each
//! of its commits — restart it, let the client repeat its request with the same idempotency key,
//! and check that the saga ended and both stores agree: the payment's attachment in payments and
//! the invoice payments and amounts in invoices tell the same story, the payment counts once, and
//! PayInvoice charged once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::time::Duration;

use settle_platform::db::Backend;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use settle_tests::api::Api;
use settle_tests::cluster::{Cluster, eventually};
use settle_tests::process::Service;
use tonic::Code;

const INVOICE_TOTAL: i64 = 10_000;
const PAYMENT: i64 = 4_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Attach,
    Detach,
    Reapply,
    /// PayInvoice on a send_invoice invoice: a new PaymentIntent, confirmed and attached.
    Pay,
    /// PayInvoice on a charge_automatically invoice: confirms the default PaymentIntent.
    PayDefault,
    /// Finalizing a charge_automatically invoice: its default PaymentIntent, attached open.
    Finalize,
    /// Voiding a charge_automatically invoice: its default PaymentIntent canceled and released.
    Void,
}

/// The orchestrator's fault points (invoices) and the participant's (payments) each operation
/// passes, in step order.
fn points(op: Op) -> Vec<(Service, &'static str)> {
    let attach_steps = [
        "invoices.attach.before_reserve",
        "invoices.attach.after_reserve",
        "invoices.attach.before_apply",
        "invoices.attach.after_apply",
        "invoices.attach.before_confirm",
        "invoices.attach.after_confirm",
    ];
    let attach_remote = [
        "payments.reserve.before_commit",
        "payments.reserve.after_commit",
        "payments.confirm.before_commit",
        "payments.confirm.after_commit",
    ];
    let release_steps = ["invoices.release.before_release", "invoices.release.after_release"];
    let release_remote = ["payments.release.before_commit", "payments.release.after_commit"];
    let (invoices, payments): (Vec<&str>, Vec<&str>) = match op {
        Op::Attach => (
            ["invoices.attach.after_record"].into_iter().chain(attach_steps).collect(),
            attach_remote.to_vec(),
        ),
        Op::Detach => (
            ["invoices.detach.after_unapply"].into_iter().chain(release_steps).collect(),
            release_remote.to_vec(),
        ),
        Op::Reapply => (
            ["invoices.reapply.after_unapply"].into_iter().chain(release_steps).chain(attach_steps).collect(),
            release_remote.into_iter().chain(attach_remote).collect(),
        ),
        Op::Pay => (
            [
                "invoices.pay.after_record",
                "invoices.pay.before_create_intent",
                "invoices.pay.after_create_intent",
            ]
            .into_iter()
            .chain(attach_steps)
            .collect(),
            ["payments.create_intent.after_commit"].into_iter().chain(attach_remote).collect(),
        ),
        Op::PayDefault => (
            vec![
                "invoices.pay.after_record",
                "invoices.pay.before_confirm_intent",
                "invoices.pay.after_confirm_intent",
            ],
            vec!["payments.intent_change.after_commit"],
        ),
        Op::Finalize => (
            [
                "invoices.finalize.after_commit",
                "invoices.pay.before_create_intent",
                "invoices.pay.after_create_intent",
            ]
            .into_iter()
            .chain(attach_steps)
            .collect(),
            ["payments.create_intent.after_commit"].into_iter().chain(attach_remote).collect(),
        ),
        Op::Void => (
            ["invoices.default.after_cancel"].into_iter().chain(release_steps).collect(),
            ["payments.intent_change.after_commit"].into_iter().chain(release_remote).collect(),
        ),
    };
    invoices
        .into_iter()
        .map(|p| (Service::Invoices, p))
        .chain(payments.into_iter().map(|p| (Service::Payments, p)))
        .collect()
}

fn api(cluster: &Cluster) -> Api {
    Api::new(cluster.channel(Service::Invoices), cluster.channel(Service::Payments))
}

/// An invoice of `total` for `customer`, finalized (open) unless `finalize` is false.
async fn invoice_of(api: &Api, customer: &str, total: i64, automatic: bool, finalize: bool) -> String {
    let draft = api.draft(customer, total, automatic).await.unwrap();
    if !finalize {
        return draft.id;
    }
    let open = api.finalize(&draft.id, None).await.unwrap();
    assert_eq!(open.amount_remaining, total);
    open.id
}

/// Runs the case's operation once under idempotency key `key`.
async fn run(api: &Api, case: &Case, key: &str) -> Result<pb::Invoice, tonic::Status> {
    let key = Some(key);
    match case.op {
        Op::Attach => api.attach(&case.invoice, case.payment(), key).await,
        Op::Detach => api.detach(&case.invoice, case.payment(), key).await,
        Op::Reapply => api.reapply(case.other_invoice.as_deref().unwrap(), case.payment(), key).await,
        Op::Pay | Op::PayDefault => api.pay(&case.invoice, key).await,
        Op::Finalize => api.finalize(&case.invoice, key).await,
        Op::Void => api.void(&case.invoice, key).await,
    }
}

/// One operation under test, with its fixtures.
struct Case {
    op: Op,
    customer: String,
    invoice: String,
    other_invoice: Option<String>,
    payment: Option<String>,
}

impl Case {
    fn payment(&self) -> &str {
        self.payment.as_deref().unwrap()
    }

    async fn prepare(api: &Api, op: Op, n: usize) -> Case {
        let customer = format!("cus_crash{n}");
        let automatic = matches!(op, Op::PayDefault | Op::Finalize | Op::Void);
        let invoice = invoice_of(api, &customer, INVOICE_TOTAL, automatic, op != Op::Finalize).await;
        let other_invoice = if op == Op::Reapply {
            Some(invoice_of(api, &customer, INVOICE_TOTAL, automatic, true).await)
        } else {
            None
        };
        let payment = if matches!(op, Op::Attach | Op::Detach | Op::Reapply) {
            Some(succeeded_intent(api, &customer).await)
        } else {
            None
        };
        let case = Case { op, customer, invoice, other_invoice, payment };
        if matches!(op, Op::Detach | Op::Reapply) {
            api.attach(&case.invoice, case.payment(), Some(&format!("setup-{n}"))).await.unwrap();
        }
        case
    }

    /// Where the payment must end: (invoice that counts it, amount_paid of each invoice).
    fn expected(&self) -> (Option<&str>, Vec<(&str, i64)>) {
        match self.op {
            Op::Attach => (Some(&self.invoice), vec![(&self.invoice, PAYMENT)]),
            Op::Detach => (None, vec![(&self.invoice, 0)]),
            Op::Reapply => {
                let target = self.other_invoice.as_deref().unwrap();
                (Some(target), vec![(&self.invoice, 0), (target, PAYMENT)])
            }
            Op::Pay | Op::PayDefault => (Some(&self.invoice), vec![(&self.invoice, INVOICE_TOTAL)]),
            Op::Finalize | Op::Void => (None, vec![(&self.invoice, 0)]),
        }
    }
}

/// A PaymentIntent of [`PAYMENT`] for `customer` that has succeeded.
async fn succeeded_intent(api: &Api, customer: &str) -> String {
    let intent = api.intent(customer, PAYMENT, Some("pm_card_visa")).await.unwrap();
    assert_eq!(intent.status, ppb::PaymentIntentStatus::Succeeded as i32);
    intent.id
}

/// Whether the client should repeat its request: the first attempt's answer was lost, or the
/// saga is still being finished.
fn worth_repeating(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Aborted | Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

async fn crash_and_recover(cluster: &mut Cluster, op: Op, victim: Service, point: &str, n: usize) {
    let api = api(cluster);
    let case = Case::prepare(&api, op, n).await;
    let key = format!("crash-{n}");

    cluster.restart(victim, Some(&format!("{point}=return(crash)"))).await;
    let first = {
        let api = api.clone();
        let case_key = key.clone();
        let case = Case {
            op: case.op,
            customer: case.customer.clone(),
            invoice: case.invoice.clone(),
            other_invoice: case.other_invoice.clone(),
            payment: case.payment.clone(),
        };
        tokio::spawn(async move { run(&api, &case, &case_key).await })
    };
    if !cluster.crashed(victim, Duration::from_secs(15)).await {
        let answer = tokio::time::timeout(Duration::from_secs(5), first).await;
        panic!("{op:?}: {point} was never reached; the request answered {answer:?}");
    }
    cluster.restart(victim, None).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), first).await;

    // The client repeats the request with the same key until it has the outcome.
    let answer = eventually(Duration::from_secs(30), || async {
        match run(&api, &case, &key).await {
            Ok(invoice) => Some(invoice),
            Err(status) if worth_repeating(&status) => None,
            Err(status) => panic!("{op:?} crashed at {point}: the repeat failed: {status:?}"),
        }
    })
    .await
    .unwrap_or_else(|| panic!("{op:?} crashed at {point}: no outcome within 30 s"));

    let live = eventually(Duration::from_secs(30), || async {
        let live = api.live_sagas().await.unwrap();
        live.is_empty().then_some(())
    })
    .await;
    assert!(live.is_some(), "{op:?} crashed at {point}: sagas still live: {:?}", api.live_sagas().await);

    // Both stores agree.
    let (counted_on, amounts) = case.expected();
    let mut live_payments = Vec::new();
    for (invoice, amount_paid) in &amounts {
        let doc = api.invoice(invoice).await.unwrap();
        assert_eq!(doc.amount_paid, *amount_paid, "{op:?} crashed at {point}: amount_paid of {invoice}");
        if op != Op::Void {
            assert_eq!(doc.amount_remaining, INVOICE_TOTAL - amount_paid, "{op:?} crashed at {point}");
        }
        let payments = api.invoice_payments(invoice).await.unwrap();
        let paid: i64 = payments
            .iter()
            .filter(|p| p.status == pb::InvoicePaymentStatus::Paid as i32)
            .map(|p| p.amount_paid.unwrap_or(0))
            .sum();
        assert_eq!(paid, doc.amount_paid, "{op:?} crashed at {point}: invoice payments and amount_paid");
        live_payments
            .extend(payments.into_iter().filter(|p| p.status != pb::InvoicePaymentStatus::Canceled as i32));
    }
    let counted = |p: &pb::InvoicePayment| p.payment.as_ref().and_then(|a| a.payment_intent.clone());
    match op {
        Op::Attach | Op::Detach | Op::Reapply => {
            let attachment = api.attachment(case.payment()).await.unwrap();
            match counted_on {
                Some(invoice) => {
                    let attachment =
                        attachment.unwrap_or_else(|| panic!("{op:?} crashed at {point}: not attached"));
                    assert_eq!(attachment.invoice, invoice, "{op:?} crashed at {point}");
                    assert_eq!(
                        attachment.status,
                        ppb::AttachmentStatus::Confirmed as i32,
                        "{op:?} at {point}"
                    );
                    assert_eq!(live_payments.len(), 1, "{op:?} crashed at {point}: {live_payments:?}");
                    assert_eq!(live_payments[0].invoice, invoice);
                }
                None => {
                    assert!(
                        attachment.is_none(),
                        "{op:?} crashed at {point}: still attached: {attachment:?}"
                    );
                    assert!(live_payments.is_empty(), "{op:?} crashed at {point}: {live_payments:?}");
                }
            }
        }
        Op::Pay | Op::PayDefault | Op::Finalize | Op::Void => {
            // One PaymentIntent for the invoice, whatever was repeated: charged (or prepared) once.
            let intents = api.all_intents(Some(&case.customer)).await.unwrap();
            assert_eq!(intents.len(), 1, "{op:?} crashed at {point}: {} PaymentIntents", intents.len());
            let intent = &intents[0];
            let attachment = api.attachment(&intent.id).await.unwrap();
            let (status, attached) = match op {
                Op::Pay | Op::PayDefault => (ppb::PaymentIntentStatus::Succeeded, true),
                Op::Finalize => (ppb::PaymentIntentStatus::RequiresPaymentMethod, true),
                _ => (ppb::PaymentIntentStatus::Canceled, false),
            };
            assert_eq!(intent.status, status as i32, "{op:?} crashed at {point}: {intent:?}");
            if attached {
                let attachment = attachment
                    .unwrap_or_else(|| panic!("{op:?} crashed at {point}: the intent is not attached"));
                assert_eq!(attachment.invoice, case.invoice);
                assert_eq!(attachment.status, ppb::AttachmentStatus::Confirmed as i32, "{op:?} at {point}");
                assert_eq!(live_payments.len(), 1, "{op:?} crashed at {point}: {live_payments:?}");
                assert!(live_payments[0].is_default);
                assert_eq!(counted(&live_payments[0]).as_deref(), Some(intent.id.as_str()));
            } else {
                assert!(attachment.is_none(), "{op:?} crashed at {point}: still attached: {attachment:?}");
                assert!(live_payments.is_empty(), "{op:?} crashed at {point}: {live_payments:?}");
            }
            let expected_status = match op {
                Op::Pay | Op::PayDefault => pb::InvoiceStatus::Paid,
                Op::Finalize => pb::InvoiceStatus::Open,
                _ => pb::InvoiceStatus::Void,
            };
            assert_eq!(
                api.invoice(&case.invoice).await.unwrap().status,
                Some(expected_status as i32),
                "{op:?} at {point}"
            );
            if op == Op::Finalize {
                let doc = api.invoice_with_secret(&case.invoice).await.unwrap();
                let secret = doc.confirmation_secret.expect("a confirmation secret");
                assert_eq!(Some(secret.client_secret), intent.client_secret);
            }
        }
    }
    assert_eq!(
        answer.amount_paid,
        amounts.last().map_or(0, |(_, paid)| *paid),
        "{op:?} at {point}: the answer"
    );
}

async fn crash_every_step(op: Op, backend: Backend) {
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_settle-node"));
    let Some(mut cluster) = Cluster::start(binary, backend).await else { return };
    let started = std::time::Instant::now();
    let cases = points(op);
    for (n, (victim, point)) in cases.iter().enumerate() {
        crash_and_recover(&mut cluster, op, *victim, point, n).await;
    }
    let orchestrator = cases.iter().filter(|(v, _)| *v == Service::Invoices).count();
    println!(
        "{op:?} on {}: {} step × crash combinations ({orchestrator} orchestrator, {} payments) recovered in {:.1?}",
        backend.name(),
        cases.len(),
        cases.len() - orchestrator,
        started.elapsed()
    );
}

settle_platform::backend_tests! {
    attach_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::Attach, database.backend()).await;
    };
    detach_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::Detach, database.backend()).await;
    };
    reapply_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::Reapply, database.backend()).await;
    };
    pay_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::Pay, database.backend()).await;
    };
    pay_with_the_default_intent_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::PayDefault, database.backend()).await;
    };
    finalize_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::Finalize, database.backend()).await;
    };
    void_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::Void, database.backend()).await;
    };
}
