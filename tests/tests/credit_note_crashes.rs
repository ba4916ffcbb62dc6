//! Crash tests for the credit-note sagas: for every step of issuing (and of its compensation) and
//! of voiding (and of its refusal), crash the orchestrator (credit-notes) there — and, separately,
//! the participants (invoices' ledger, payments' refund claims) at their commits — restart it, let
//! the client repeat its request with the same idempotency key, and check that the saga ended and
//! the three stores agree: the note, the invoice's credit-note totals and amounts, the customer's
//! balance, the refunds and their claims tell the same story, and nothing happened twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::time::Duration;

use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::db::Backend;
use settle_platform::time::now_unix;
use settle_proto::common::v1::saga_service_client::SagaServiceClient;
use settle_proto::common::v1::{ListSagasRequest, SagaKind, SagaState};
use settle_proto::settle::creditnotes::v1 as cn;
use settle_proto::settle::creditnotes::v1::credit_note_service_client::CreditNoteServiceClient;
use settle_proto::settle::invoices::v1 as inv;
use settle_proto::settle::invoices::v1::customer_balance_service_client::CustomerBalanceServiceClient;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_proto::settle::payments::v1 as pay;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_proto::settle::payments::v1::payment_record_service_client::PaymentRecordServiceClient;
use settle_proto::settle::payments::v1::refund_claim_service_client::RefundClaimServiceClient;
use settle_proto::settle::payments::v1::refund_service_client::RefundServiceClient;
use settle_testkit::{authorized, idempotent, internal};
use settle_tests::cluster::{Cluster, eventually};
use settle_tests::process::Service;
use tonic::Code;

const TOTAL: i64 = 10_000;
const BY_INTENT: i64 = 3_000;
const BY_RECORD: i64 = 2_000;
const RECORD_REFUND: i64 = 1_000;

/// What a case exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A mixed note on a partially paid invoice: pre 5000, post 2000 settled by a new refund of the
    /// intent (500), the record's reported refund (1000) and a balance credit (500).
    Issue,
    /// The same note, refused by payments at the claim (the record's refund is already claimed),
    /// so the saga compensates: the claims and the reserved credit are released, the note fails.
    IssueRefused,
    /// Voiding a post-payment note that credited the customer's balance.
    Void,
    /// Voiding a note whose balance credit was spent: refused by the ledger, the note unmarked.
    VoidRefused,
}

fn points(op: Op) -> Vec<(Service, &'static str)> {
    let (notes, invoices, payments): (Vec<&str>, Vec<&str>, Vec<&str>) = match op {
        Op::Issue => (
            vec![
                "creditnotes.issue.after_record",
                "creditnotes.issue.before_reserve",
                "creditnotes.issue.after_reserve",
                "creditnotes.issue.before_claim",
                "creditnotes.issue.after_claim",
                "creditnotes.issue.before_apply",
                "creditnotes.issue.after_apply",
                "creditnotes.issue.before_issue",
                "creditnotes.issue.after_issue",
            ],
            vec![
                "invoices.credit_reserve.before_commit",
                "invoices.credit_reserve.after_commit",
                "invoices.credit_apply.after_commit",
            ],
            vec!["payments.claim_refunds.before_commit", "payments.claim_refunds.after_commit"],
        ),
        Op::IssueRefused => (
            vec![
                "creditnotes.issue.before_claim",
                "creditnotes.issue.before_release_claims",
                "creditnotes.issue.after_release_claims",
                "creditnotes.issue.before_release_credit",
                "creditnotes.issue.after_release_credit",
                "creditnotes.issue.before_abandon",
            ],
            vec!["invoices.credit_release.after_commit"],
            vec!["payments.release_refund_claims.after_commit"],
        ),
        Op::Void => (
            vec![
                "creditnotes.void.after_record",
                "creditnotes.void.before_reverse",
                "creditnotes.void.after_reverse",
                "creditnotes.void.before_void",
                "creditnotes.void.after_void",
            ],
            vec!["invoices.credit_reverse.after_commit"],
            vec![],
        ),
        Op::VoidRefused => (
            vec![
                "creditnotes.void.after_record",
                "creditnotes.void.before_reverse",
                "creditnotes.void.before_unmark",
            ],
            vec![],
            vec![],
        ),
    };
    notes
        .into_iter()
        .map(|p| (Service::CreditNotes, p))
        .chain(invoices.into_iter().map(|p| (Service::Invoices, p)))
        .chain(payments.into_iter().map(|p| (Service::Payments, p)))
        .collect()
}

#[derive(Clone)]
struct Api {
    notes: CreditNoteServiceClient<tonic::transport::Channel>,
    sagas: SagaServiceClient<tonic::transport::Channel>,
    invoices: InvoiceServiceClient<tonic::transport::Channel>,
    balances: CustomerBalanceServiceClient<tonic::transport::Channel>,
    intents: PaymentIntentServiceClient<tonic::transport::Channel>,
    records: PaymentRecordServiceClient<tonic::transport::Channel>,
    refunds: RefundServiceClient<tonic::transport::Channel>,
    claims: RefundClaimServiceClient<tonic::transport::Channel>,
}

impl Api {
    fn new(cluster: &Cluster) -> Api {
        let notes = cluster.channel(Service::CreditNotes);
        let invoices = cluster.channel(Service::Invoices);
        let payments = cluster.channel(Service::Payments);
        Api {
            notes: CreditNoteServiceClient::new(notes.clone()),
            sagas: SagaServiceClient::new(notes),
            invoices: InvoiceServiceClient::new(invoices.clone()),
            balances: CustomerBalanceServiceClient::new(invoices),
            intents: PaymentIntentServiceClient::new(payments.clone()),
            records: PaymentRecordServiceClient::new(payments.clone()),
            refunds: RefundServiceClient::new(payments.clone()),
            claims: RefundClaimServiceClient::new(payments),
        }
    }

    async fn invoice(&self, id: &str) -> inv::Invoice {
        let request = inv::GetInvoiceRequest { id: id.to_owned(), expand: vec![] };
        self.invoices.clone().get_invoice(authorized(request)).await.unwrap().into_inner()
    }

    /// An open invoice of TOTAL for `customer`.
    async fn open_invoice(&self, customer: &str) -> String {
        let mut invoices = self.invoices.clone();
        let draft = inv::CreateInvoiceRequest {
            customer: Some(customer.to_owned()),
            currency: Some("usd".to_owned()),
            ..Default::default()
        };
        let draft = invoices.create_invoice(authorized(draft)).await.unwrap().into_inner();
        let lines = inv::AddLinesRequest {
            id: draft.id.clone(),
            lines: vec![inv::InvoiceLineParams { amount: Some(TOTAL), ..Default::default() }],
            ..Default::default()
        };
        invoices.add_lines(authorized(lines)).await.unwrap();
        let finalize = inv::FinalizeInvoiceRequest { id: draft.id.clone(), ..Default::default() };
        invoices.finalize_invoice(authorized(finalize)).await.unwrap().into_inner().id
    }

    async fn attach(&self, invoice: &str, payment: inv::attach_payment_request::Payment) {
        let request =
            inv::AttachPaymentRequest { id: invoice.to_owned(), payment: Some(payment), expand: vec![] };
        self.invoices.clone().attach_payment(authorized(request)).await.unwrap();
    }

    /// A succeeded intent of `amount` for `customer`, attached to `invoice`.
    async fn pay_by_intent(&self, invoice: &str, customer: &str, amount: i64) -> String {
        let request = pay::CreatePaymentIntentRequest {
            amount,
            currency: "usd".into(),
            customer: Some(customer.into()),
            payment_method: Some("pm_card_visa".into()),
            confirm: Some(true),
            ..Default::default()
        };
        let intent =
            self.intents.clone().create_payment_intent(authorized(request)).await.unwrap().into_inner();
        self.attach(invoice, inv::attach_payment_request::Payment::PaymentIntent(intent.id.clone())).await;
        intent.id
    }

    /// A guaranteed record of `amount` for `customer`, attached to `invoice`, with a refund of
    /// RECORD_REFUND reported under `reference`.
    async fn pay_by_record(&self, invoice: &str, customer: &str, amount: i64, reference: &str) -> String {
        let request = pay::ReportPaymentRequest {
            amount_requested: Some(pay::PaymentRecordAmount { currency: "usd".into(), value: amount }),
            customer_details: Some(pay::PaymentRecordCustomerDetails {
                customer: Some(customer.to_owned()),
                ..Default::default()
            }),
            initiated_at: now_unix() - 60,
            payment_method_details: Some(pay::PaymentRecordPaymentMethodDetailsParams {
                custom: Some(pay::PaymentRecordCustomPaymentMethodDetails {
                    display_name: "Check".into(),
                    r#type: None,
                }),
                r#type: Some(pay::PaymentRecordPaymentMethodDetailsType::Custom as i32),
                ..Default::default()
            }),
            outcome: Some(pay::ReportPaymentOutcome::Guaranteed as i32),
            guaranteed: Some(pay::PaymentRecordGuaranteedParams { guaranteed_at: now_unix() - 30 }),
            ..Default::default()
        };
        let record = self.records.clone().report_payment(authorized(request)).await.unwrap().into_inner();
        self.attach(invoice, inv::attach_payment_request::Payment::PaymentRecord(record.id.clone())).await;
        let refund = pay::ReportRefundRequest {
            id: record.id.clone(),
            amount: Some(pay::PaymentRecordAmount { currency: "usd".into(), value: RECORD_REFUND }),
            outcome: pay::ReportRefundOutcome::Refunded as i32,
            processor_details: Some(pay::PaymentRecordRefundProcessorDetailsParams {
                custom: Some(pay::PaymentRecordRefundCustomProcessorDetailsParams {
                    refund_reference: reference.into(),
                }),
                r#type: pay::PaymentRecordProcessorType::Custom as i32,
            }),
            refunded: Some(pay::PaymentRecordRefundedParams { refunded_at: now_unix() }),
            ..Default::default()
        };
        self.records.clone().report_refund(authorized(refund)).await.unwrap();
        record.id
    }

    async fn balance(&self, customer: &str) -> i64 {
        let request = inv::GetCustomerBalanceRequest {
            customer: customer.to_owned(),
            currency: Some("usd".to_owned()),
        };
        self.balances.clone().get_customer_balance(authorized(request)).await.unwrap().into_inner().balance
    }

    async fn refunds_of(&self, intent: &str) -> Vec<pay::Refund> {
        let request = pay::ListRefundsRequest {
            payment_intent: Some(intent.to_owned()),
            limit: Some(100),
            ..Default::default()
        };
        self.refunds.clone().list_refunds(authorized(request)).await.unwrap().into_inner().data
    }

    async fn notes_of(&self, invoice: &str) -> Vec<cn::CreditNote> {
        let request = cn::ListCreditNotesRequest {
            invoice: Some(invoice.to_owned()),
            limit: Some(100),
            ..Default::default()
        };
        self.notes.clone().list_credit_notes(authorized(request)).await.unwrap().into_inner().data
    }

    async fn sagas(&self, kind: SagaKind) -> Vec<settle_proto::common::v1::Saga> {
        let request = ListSagasRequest { kind: Some(kind as i32), limit: Some(100), ..Default::default() };
        self.sagas.clone().list_sagas(authorized(request)).await.unwrap().into_inner().data
    }

    async fn live_sagas(&self) -> Vec<settle_proto::common::v1::Saga> {
        let request = ListSagasRequest { limit: Some(100), ..Default::default() };
        let all = self.sagas.clone().list_sagas(authorized(request)).await.unwrap().into_inner().data;
        all.into_iter()
            .filter(|s| s.state != SagaState::Succeeded as i32 && s.state != SagaState::Failed as i32)
            .collect()
    }

    async fn claims(&self, saga_id: &str) -> Option<pay::RefundClaims> {
        let request = pay::GetRefundClaimsRequest { saga_id: saga_id.to_owned() };
        match self.claims.clone().get_refund_claims(internal(request, DEV_ACCOUNT)).await {
            Ok(response) => Some(response.into_inner()),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("GetRefundClaims: {status:?}"),
        }
    }
}

/// One case and its fixtures.
#[derive(Clone)]
struct Case {
    op: Op,
    customer: String,
    invoice: String,
    intent: String,
    record: String,
    reference: String,
    /// The note to void (void cases).
    note: Option<String>,
}

fn mixed_note(case: &Case) -> cn::CreateCreditNoteRequest {
    cn::CreateCreditNoteRequest {
        invoice: case.invoice.clone(),
        amount: Some(7_000),
        refund_amount: Some(500),
        credit_amount: Some(500),
        refunds: vec![cn::CreditNoteRefundParams {
            r#type: Some(cn::CreditNoteRefundType::PaymentRecordRefund as i32),
            payment_record_refund: Some(cn::CreditNotePaymentRecordRefund {
                payment_record: case.record.clone(),
                refund_group: case.reference.clone(),
            }),
            amount_refunded: Some(RECORD_REFUND),
            ..Default::default()
        }],
        ..Default::default()
    }
}

impl Case {
    async fn prepare(api: &Api, op: Op, n: usize) -> Case {
        let customer = format!("cus_cncrash{n}");
        let invoice = api.open_invoice(&customer).await;
        let reference = format!("ref-{n}");
        let (intent, record) = match op {
            Op::Issue | Op::IssueRefused => {
                let intent = api.pay_by_intent(&invoice, &customer, BY_INTENT).await;
                let record = api.pay_by_record(&invoice, &customer, BY_RECORD, &reference).await;
                (intent, record)
            }
            Op::Void | Op::VoidRefused => {
                (api.pay_by_intent(&invoice, &customer, TOTAL).await, String::new())
            }
        };
        let mut case = Case { op, customer, invoice, intent, record, reference, note: None };
        match op {
            Op::Void | Op::VoidRefused => {
                let request = cn::CreateCreditNoteRequest {
                    invoice: case.invoice.clone(),
                    amount: Some(2_000),
                    credit_amount: Some(2_000),
                    ..Default::default()
                };
                let note =
                    api.notes.clone().create_credit_note(authorized(request)).await.unwrap().into_inner();
                case.note = Some(note.id);
                if op == Op::VoidRefused {
                    // The credit is spent on the customer's next invoice.
                    api.open_invoice(&case.customer).await;
                    assert_eq!(api.balance(&case.customer).await, 0);
                }
            }
            Op::IssueRefused => {
                // Something else already claimed the record's refund whole: payments refuses the
                // note's claim although credit-notes saw nothing linking it.
                let request = pay::ClaimRefundsRequest {
                    saga_id: settle_platform::ids::IdPrefix::Saga.generate(),
                    credit_note: settle_platform::ids::IdPrefix::CreditNote.generate(),
                    invoice: case.invoice.clone(),
                    currency: "usd".into(),
                    claims: vec![pay::RefundClaimParams {
                        r#type: pay::RefundClaimType::PaymentRecordRefund as i32,
                        refund: None,
                        payment_record_refund: Some(pay::PaymentRecordRefundReference {
                            payment_record: case.record.clone(),
                            refund_group: case.reference.clone(),
                        }),
                        amount_refunded: None,
                    }],
                    new_refund: None,
                };
                api.claims.clone().claim_refunds(internal(request, DEV_ACCOUNT)).await.unwrap();
            }
            Op::Issue => {}
        }
        case
    }

    async fn run(&self, api: &Api, key: &str) -> Result<cn::CreditNote, tonic::Status> {
        let mut notes = api.notes.clone();
        let result = match self.op {
            Op::Issue | Op::IssueRefused => notes.create_credit_note(idempotent(mixed_note(self), key)).await,
            Op::Void | Op::VoidRefused => {
                let request = cn::VoidCreditNoteRequest { id: self.note.clone().unwrap() };
                notes.void_credit_note(idempotent(request, key)).await
            }
        };
        result.map(tonic::Response::into_inner)
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

/// The stores agree on what the case's request ended in.
async fn check_agreement(api: &Api, case: &Case, answer: &Result<cn::CreditNote, tonic::Status>, at: &str) {
    let op = case.op;
    let invoice = api.invoice(&case.invoice).await;
    let notes = api.notes_of(&case.invoice).await;
    let balance = api.balance(&case.customer).await;
    let refunds = api.refunds_of(&case.intent).await;
    let issue_sagas = api.sagas(SagaKind::IssueCreditNote).await;
    match op {
        Op::Issue => {
            let note = answer.as_ref().unwrap_or_else(|e| panic!("{op:?} at {at}: {e:?}"));
            assert_eq!(notes.len(), 1, "{op:?} at {at}: one note");
            assert_eq!(&notes[0], note, "{op:?} at {at}: the answer is the stored note");
            assert_eq!((note.pre_payment_amount, note.post_payment_amount), (5_000, 2_000), "{op:?} at {at}");
            assert_eq!(note.r#type, cn::CreditNoteType::Mixed as i32);
            assert_eq!(note.refunds.len(), 2, "{op:?} at {at}: {:?}", note.refunds);
            assert_eq!(
                (invoice.pre_payment_credit_notes_amount, invoice.post_payment_credit_notes_amount),
                (5_000, 2_000),
                "{op:?} at {at}"
            );
            assert_eq!(
                (invoice.amount_paid, invoice.amount_remaining),
                (BY_INTENT + BY_RECORD, 0),
                "{op:?} at {at}"
            );
            assert_eq!(invoice.status, Some(inv::InvoiceStatus::Paid as i32), "{op:?} at {at}");
            assert_eq!(balance, -500, "{op:?} at {at}: the balance credit, once");
            assert_eq!(refunds.len(), 1, "{op:?} at {at}: one new refund: {refunds:?}");
            assert_eq!(refunds[0].amount, 500);
            let entry = note
                .refunds
                .iter()
                .find(|r| r.r#type == Some(cn::CreditNoteRefundType::Refund as i32))
                .unwrap();
            assert_eq!(entry.refund, refunds[0].id);
            let saga = issue_sagas.iter().find(|s| s.subjects.get("credit_note") == Some(&note.id)).unwrap();
            let claims = api.claims(&saga.id).await.expect("the saga's claims");
            assert_eq!(claims.status, pay::RefundClaimsStatus::Claimed as i32, "{op:?} at {at}");
            assert_eq!(claims.claims.iter().map(|c| c.amount_refunded).sum::<i64>(), RECORD_REFUND + 500);
        }
        Op::IssueRefused => {
            let refused = answer.as_ref().expect_err("the note is refused");
            assert_eq!(
                settle_testkit::reason(refused),
                "refund_exceeds_refundable",
                "{op:?} at {at}: {refused:?}"
            );
            assert!(notes.is_empty(), "{op:?} at {at}: no note");
            assert_eq!(
                (invoice.pre_payment_credit_notes_amount, invoice.post_payment_credit_notes_amount),
                (0, 0)
            );
            assert_eq!(
                (invoice.amount_remaining, balance),
                (TOTAL - BY_INTENT - BY_RECORD, 0),
                "{op:?} at {at}"
            );
            assert!(refunds.is_empty(), "{op:?} at {at}: no refund was made: {refunds:?}");
            let saga = issue_sagas.iter().find(|s| s.idempotency_key.is_some()).unwrap();
            if let Some(claims) = api.claims(&saga.id).await {
                assert_eq!(claims.status, pay::RefundClaimsStatus::Released as i32, "{op:?} at {at}");
            }
            // The released credit leaves the invoice's room whole: the same amounts settled another
            // way are issued.
            let retry = cn::CreateCreditNoteRequest {
                refunds: vec![],
                out_of_band_amount: Some(RECORD_REFUND),
                ..mixed_note(case)
            };
            let issued = api.notes.clone().create_credit_note(authorized(retry)).await;
            assert!(issued.is_ok(), "{op:?} at {at}: {issued:?}");
        }
        Op::Void => {
            let note = answer.as_ref().unwrap_or_else(|e| panic!("{op:?} at {at}: {e:?}"));
            assert_eq!(note.status, cn::CreditNoteStatus::Void as i32, "{op:?} at {at}");
            assert_eq!(notes[0].status, cn::CreditNoteStatus::Void as i32);
            assert_eq!(invoice.post_payment_credit_notes_amount, 0, "{op:?} at {at}");
            assert_eq!(invoice.status, Some(inv::InvoiceStatus::Paid as i32));
            assert_eq!(balance, 0, "{op:?} at {at}: the credit taken back once");
        }
        Op::VoidRefused => {
            let refused = answer.as_ref().expect_err("the void is refused");
            assert_eq!(
                settle_testkit::reason(refused),
                "credit_note_not_voidable",
                "{op:?} at {at}: {refused:?}"
            );
            assert_eq!(notes[0].status, cn::CreditNoteStatus::Issued as i32, "{op:?} at {at}");
            assert_eq!(invoice.post_payment_credit_notes_amount, 2_000, "{op:?} at {at}");
            assert_eq!(balance, 0, "{op:?} at {at}");
            // The note is no longer being voided: a new void is refused for the same reason, not
            // because one is in progress.
            let again = api
                .notes
                .clone()
                .void_credit_note(authorized(cn::VoidCreditNoteRequest { id: notes[0].id.clone() }))
                .await
                .unwrap_err();
            assert_eq!(
                settle_testkit::reason(&again),
                "credit_note_not_voidable",
                "{op:?} at {at}: {again:?}"
            );
        }
    }
}

async fn crash_and_recover(cluster: &mut Cluster, op: Op, victim: Service, point: &str, n: usize) {
    let api = Api::new(cluster);
    let case = Case::prepare(&api, op, n).await;
    let key = format!("cn-crash-{n}");

    cluster.restart(victim, Some(&format!("{point}=return(crash)"))).await;
    let first = {
        let (api, case, key) = (api.clone(), case.clone(), key.clone());
        tokio::spawn(async move { case.run(&api, &key).await })
    };
    if !cluster.crashed(victim, Duration::from_secs(15)).await {
        let answer = tokio::time::timeout(Duration::from_secs(5), first).await;
        panic!("{op:?}: {point} was never reached; the request answered {answer:?}");
    }
    cluster.restart(victim, None).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), first).await;

    // The client repeats the request with the same key until it has the outcome.
    let answer = eventually(Duration::from_secs(30), || async {
        match case.run(&api, &key).await {
            Err(status) if worth_repeating(&status) => None,
            outcome => Some(outcome),
        }
    })
    .await
    .unwrap_or_else(|| panic!("{op:?} crashed at {point}: no outcome within 30 s"));
    let live =
        eventually(Duration::from_secs(30), || async { api.live_sagas().await.is_empty().then_some(()) })
            .await;
    assert!(live.is_some(), "{op:?} crashed at {point}: sagas still live: {:?}", api.live_sagas().await);
    check_agreement(&api, &case, &answer, point).await;
}

async fn crash_every_step(op: Op, backend: Backend) {
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_settle-node"));
    let Some(mut cluster) = Cluster::start(binary, backend).await else { return };
    let started = std::time::Instant::now();
    let cases = points(op);
    for (n, (victim, point)) in cases.iter().enumerate() {
        crash_and_recover(&mut cluster, op, *victim, point, n).await;
    }
    let orchestrator = cases.iter().filter(|(v, _)| *v == Service::CreditNotes).count();
    println!(
        "{op:?} on {}: {} step × crash combinations ({orchestrator} credit-notes, {} invoices/payments) recovered in {:.1?}",
        backend.name(),
        cases.len(),
        cases.len() - orchestrator,
        started.elapsed()
    );
}

settle_platform::backend_tests! {
    issuing_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::Issue, database.backend()).await;
    };
    a_refused_issue_compensates_through_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::IssueRefused, database.backend()).await;
    };
    voiding_survives_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::Void, database.backend()).await;
    };
    a_refused_void_unmarks_through_a_crash_at_every_step => |database: settle_platform::testing::TestDatabase| async move {
        crash_every_step(Op::VoidRefused, database.backend()).await;
    };
}
