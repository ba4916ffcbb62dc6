//! Crash tests for the payment-application sagas: for every step of attach, detach, reapply and pay,
//! crash the orchestrator (invoices) there — and, separately, the participant (payments) at each
//! of its commits — restart it, let the client repeat its request with the same idempotency key,
//! and check that the saga ended and both stores agree: the payment's attachment in payments and
//! the invoice payments and amounts in invoices tell the same story, the payment counts once, and
//! PayInvoice charged once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::time::Duration;

use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::db::Backend;
use settle_proto::common::v1::saga_service_client::SagaServiceClient;
use settle_proto::common::v1::{ListSagasRequest, SagaState};
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::invoice_payment_service_client::InvoicePaymentServiceClient;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_proto::settle::payments::v1 as ppb;
use settle_proto::settle::payments::v1::payment_attachment_service_client::PaymentAttachmentServiceClient;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_testkit::{authorized, idempotent, internal};
use settle_tests::cluster::{Cluster, eventually};
use settle_tests::process::Service;
use tonic::Code;
use tonic::transport::Channel;

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

#[derive(Clone)]
struct Api {
    invoices: InvoiceServiceClient<Channel>,
    invoice_payments: InvoicePaymentServiceClient<Channel>,
    sagas: SagaServiceClient<Channel>,
    intents: PaymentIntentServiceClient<Channel>,
    attachments: PaymentAttachmentServiceClient<Channel>,
}

impl Api {
    fn new(cluster: &Cluster) -> Api {
        let invoices = cluster.channel(Service::Invoices);
        let payments = cluster.channel(Service::Payments);
        Api {
            invoices: InvoiceServiceClient::new(invoices.clone()),
            invoice_payments: InvoicePaymentServiceClient::new(invoices.clone()),
            sagas: SagaServiceClient::new(invoices),
            intents: PaymentIntentServiceClient::new(payments.clone()),
            attachments: PaymentAttachmentServiceClient::new(payments),
        }
    }

    /// An invoice of `total` for `customer`, finalized (open) unless `finalize` is false;
    /// `charge_automatically` (which gets a default PaymentIntent at finalization) or `send_invoice`.
    async fn invoice_of(&self, customer: &str, total: i64, automatic: bool, finalize: bool) -> String {
        let mut invoices = self.invoices.clone();
        let method = if automatic {
            pb::InvoiceCollectionMethod::ChargeAutomatically
        } else {
            pb::InvoiceCollectionMethod::SendInvoice
        };
        let draft = pb::CreateInvoiceRequest {
            customer: Some(customer.to_owned()),
            currency: Some("usd".to_owned()),
            collection_method: Some(method as i32),
            days_until_due: (!automatic).then_some(30),
            ..Default::default()
        };
        let draft = invoices.create_invoice(authorized(draft)).await.unwrap().into_inner();
        let lines = pb::AddLinesRequest {
            id: draft.id.clone(),
            lines: vec![pb::InvoiceLineParams { amount: Some(total), ..Default::default() }],
            ..Default::default()
        };
        invoices.add_lines(authorized(lines)).await.unwrap();
        if !finalize {
            return draft.id;
        }
        let finalize = pb::FinalizeInvoiceRequest { id: draft.id.clone(), ..Default::default() };
        let open = invoices.finalize_invoice(authorized(finalize)).await.unwrap().into_inner();
        assert_eq!(open.amount_remaining, total);
        open.id
    }

    /// A PaymentIntent of `amount` for `customer` that has succeeded.
    async fn succeeded_intent(&self, customer: &str, amount: i64) -> String {
        let request = ppb::CreatePaymentIntentRequest {
            amount,
            currency: "usd".into(),
            customer: Some(customer.into()),
            payment_method: Some("pm_card_visa".into()),
            confirm: Some(true),
            ..Default::default()
        };
        let intent =
            self.intents.clone().create_payment_intent(authorized(request)).await.unwrap().into_inner();
        assert_eq!(intent.status, ppb::PaymentIntentStatus::Succeeded as i32);
        intent.id
    }

    async fn attach(&self, invoice: &str, payment: &str, key: &str) -> Result<pb::Invoice, tonic::Status> {
        let request = pb::AttachPaymentRequest {
            id: invoice.to_owned(),
            payment: Some(pb::attach_payment_request::Payment::PaymentIntent(payment.to_owned())),
            expand: vec![],
        };
        self.invoices.clone().attach_payment(idempotent(request, key)).await.map(|r| r.into_inner())
    }

    /// Runs `op` once under idempotency key `key`.
    async fn run(&self, case: &Case, key: &str) -> Result<pb::Invoice, tonic::Status> {
        let mut invoices = self.invoices.clone();
        let result = match case.op {
            Op::Attach => return self.attach(&case.invoice, case.payment(), key).await,
            Op::Detach => {
                let request = pb::DetachPaymentRequest {
                    id: case.invoice.clone(),
                    payment: Some(pb::detach_payment_request::Payment::PaymentIntent(
                        case.payment().to_owned(),
                    )),
                    expand: vec![],
                };
                invoices.detach_payment(idempotent(request, key)).await
            }
            Op::Reapply => {
                let request = pb::ReapplyPaymentRequest {
                    id: case.other_invoice.clone().unwrap(),
                    payment: Some(pb::reapply_payment_request::Payment::PaymentIntent(
                        case.payment().to_owned(),
                    )),
                    expand: vec![],
                };
                invoices.reapply_payment(idempotent(request, key)).await
            }
            Op::Pay | Op::PayDefault => {
                let request = pb::PayInvoiceRequest {
                    id: case.invoice.clone(),
                    payment_method: Some("pm_card_visa".to_owned()),
                    ..Default::default()
                };
                invoices.pay_invoice(idempotent(request, key)).await
            }
            Op::Finalize => {
                let request = pb::FinalizeInvoiceRequest { id: case.invoice.clone(), ..Default::default() };
                invoices.finalize_invoice(idempotent(request, key)).await
            }
            Op::Void => {
                let request = pb::VoidInvoiceRequest { id: case.invoice.clone(), ..Default::default() };
                invoices.void_invoice(idempotent(request, key)).await
            }
        };
        result.map(|r| r.into_inner())
    }

    async fn invoice(&self, id: &str) -> pb::Invoice {
        let request = pb::GetInvoiceRequest { id: id.to_owned(), ..Default::default() };
        self.invoices.clone().get_invoice(authorized(request)).await.unwrap().into_inner()
    }

    /// The invoice's invoice payments, all statuses.
    async fn invoice_payments(&self, invoice: &str) -> Vec<pb::InvoicePayment> {
        let request = pb::ListInvoicePaymentsRequest {
            invoice: Some(invoice.to_owned()),
            limit: Some(100),
            ..Default::default()
        };
        self.invoice_payments
            .clone()
            .list_invoice_payments(authorized(request))
            .await
            .unwrap()
            .into_inner()
            .data
    }

    /// The payment's live (reserved or confirmed) attachment in payments.
    async fn attachment(&self, payment: &str) -> Option<ppb::Attachment> {
        let request = ppb::GetAttachmentRequest { payment: payment.to_owned() };
        match self.attachments.clone().get_attachment(internal(request, DEV_ACCOUNT)).await {
            Ok(response) => Some(response.into_inner()),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("GetAttachment: {status:?}"),
        }
    }

    /// The sagas not yet ended.
    async fn live_sagas(&self) -> Vec<settle_proto::common::v1::Saga> {
        let response = self
            .sagas
            .clone()
            .list_sagas(authorized(ListSagasRequest { limit: Some(100), ..Default::default() }))
            .await
            .unwrap()
            .into_inner();
        response
            .data
            .into_iter()
            .filter(|s| s.state != SagaState::Succeeded as i32 && s.state != SagaState::Failed as i32)
            .collect()
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
        let invoice = api.invoice_of(&customer, INVOICE_TOTAL, automatic, op != Op::Finalize).await;
        let other_invoice = if op == Op::Reapply {
            Some(api.invoice_of(&customer, INVOICE_TOTAL, automatic, true).await)
        } else {
            None
        };
        let payment = if matches!(op, Op::Attach | Op::Detach | Op::Reapply) {
            Some(api.succeeded_intent(&customer, PAYMENT).await)
        } else {
            None
        };
        let case = Case { op, customer, invoice, other_invoice, payment };
        if matches!(op, Op::Detach | Op::Reapply) {
            api.attach(&case.invoice, case.payment(), &format!("setup-{n}")).await.unwrap();
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

/// Whether the client should repeat its request: the first attempt's answer was lost, or the
/// saga is still being finished.
fn worth_repeating(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Aborted | Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

async fn crash_and_recover(cluster: &mut Cluster, op: Op, victim: Service, point: &str, n: usize) {
    let api = Api::new(cluster);
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
        tokio::spawn(async move { api.run(&case, &case_key).await })
    };
    if !cluster.crashed(victim, Duration::from_secs(15)).await {
        let answer = tokio::time::timeout(Duration::from_secs(5), first).await;
        panic!("{op:?}: {point} was never reached; the request answered {answer:?}");
    }
    cluster.restart(victim, None).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), first).await;

    // The client repeats the request with the same key until it has the outcome.
    let answer = eventually(Duration::from_secs(30), || async {
        match api.run(&case, &key).await {
            Ok(invoice) => Some(invoice),
            Err(status) if worth_repeating(&status) => None,
            Err(status) => panic!("{op:?} crashed at {point}: the repeat failed: {status:?}"),
        }
    })
    .await
    .unwrap_or_else(|| panic!("{op:?} crashed at {point}: no outcome within 30 s"));

    let live = eventually(Duration::from_secs(30), || async {
        let live = api.live_sagas().await;
        live.is_empty().then_some(())
    })
    .await;
    assert!(live.is_some(), "{op:?} crashed at {point}: sagas still live: {:?}", api.live_sagas().await);

    // Both stores agree.
    let (counted_on, amounts) = case.expected();
    let mut live_payments = Vec::new();
    for (invoice, amount_paid) in &amounts {
        let doc = api.invoice(invoice).await;
        assert_eq!(doc.amount_paid, *amount_paid, "{op:?} crashed at {point}: amount_paid of {invoice}");
        if op != Op::Void {
            assert_eq!(doc.amount_remaining, INVOICE_TOTAL - amount_paid, "{op:?} crashed at {point}");
        }
        let payments = api.invoice_payments(invoice).await;
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
            let attachment = api.attachment(case.payment()).await;
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
            let request = ppb::ListPaymentIntentsRequest {
                customer: Some(case.customer.clone()),
                ..Default::default()
            };
            let intents = api
                .intents
                .clone()
                .list_payment_intents(authorized(request))
                .await
                .unwrap()
                .into_inner()
                .data;
            assert_eq!(intents.len(), 1, "{op:?} crashed at {point}: {} PaymentIntents", intents.len());
            let intent = &intents[0];
            let attachment = api.attachment(&intent.id).await;
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
                api.invoice(&case.invoice).await.status,
                Some(expected_status as i32),
                "{op:?} at {point}"
            );
            if op == Op::Finalize {
                let request = pb::GetInvoiceRequest {
                    id: case.invoice.clone(),
                    expand: vec!["confirmation_secret".to_owned()],
                };
                let doc = api.invoices.clone().get_invoice(authorized(request)).await.unwrap().into_inner();
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
