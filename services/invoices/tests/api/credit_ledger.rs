//! CreditNoteLedgerService over gRPC (the invoices side of credit notes), on SQLite and PostgreSQL:
//! reserve, apply, release and reverse on open, partially paid, paid and uncollectible invoices with
//! the exact amounts after each step, every refusal, idempotent repeats, the internal-only mount,
//! the invoice rules credit notes change (void, the attach guard's room), and races.

use settle_invoices::applications::effects::{self, PaymentFacts};
use settle_money::Amount;
use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::backend_tests;
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::EventOrigin;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::credit_note_ledger_service_client::CreditNoteLedgerServiceClient;
use settle_testkit::{OTHER_ACCOUNT, authorized, internal, reason, violated_fields};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestApp, payload, previous_keys, spawn, status};

mod races;

const CUSTOMER: &str = "cus_credit";

fn ledger(app: &TestApp) -> CreditNoteLedgerServiceClient<Channel> {
    CreditNoteLedgerServiceClient::new(app.server.channel())
}

fn saga() -> String {
    IdPrefix::Saga.generate()
}

fn credit_note() -> String {
    IdPrefix::CreditNote.generate()
}

/// A reservation of `amount` on `invoice` for a new credit note, with its post-payment parts.
fn reservation(
    invoice: &str,
    amount: i64,
    credit: i64,
    refund: i64,
    oob: i64,
) -> pb::ReserveInvoiceCreditRequest {
    pb::ReserveInvoiceCreditRequest {
        saga_id: saga(),
        invoice: invoice.to_owned(),
        credit_note: credit_note(),
        amount,
        credit_amount: credit,
        refund_amount: refund,
        out_of_band_amount: oob,
    }
}

async fn reserve(app: &TestApp, req: &pb::ReserveInvoiceCreditRequest) -> Result<pb::InvoiceCredit, Status> {
    ledger(app)
        .reserve_invoice_credit(internal(req.clone(), DEV_ACCOUNT))
        .await
        .map(tonic::Response::into_inner)
}

async fn apply(app: &TestApp, saga_id: &str) -> Result<pb::InvoiceCredit, Status> {
    let req = pb::ApplyInvoiceCreditRequest { saga_id: saga_id.to_owned() };
    ledger(app).apply_invoice_credit(internal(req, DEV_ACCOUNT)).await.map(tonic::Response::into_inner)
}

async fn release(app: &TestApp, saga_id: &str) -> Result<pb::InvoiceCredit, Status> {
    let req = pb::ReleaseInvoiceCreditRequest { saga_id: saga_id.to_owned() };
    ledger(app).release_invoice_credit(internal(req, DEV_ACCOUNT)).await.map(tonic::Response::into_inner)
}

async fn reverse(app: &TestApp, saga_id: &str, credit_note: &str) -> Result<pb::InvoiceCredit, Status> {
    let req =
        pb::ReverseInvoiceCreditRequest { saga_id: saga_id.to_owned(), credit_note: credit_note.to_owned() };
    ledger(app).reverse_invoice_credit(internal(req, DEV_ACCOUNT)).await.map(tonic::Response::into_inner)
}

/// Reserves and applies; returns the applied credit.
async fn issue(app: &TestApp, req: &pb::ReserveInvoiceCreditRequest) -> pb::InvoiceCredit {
    reserve(app, req).await.expect("reserved");
    apply(app, &req.saga_id).await.expect("applied")
}

fn credit_status(credit: &pb::InvoiceCredit) -> pb::InvoiceCreditStatus {
    pb::InvoiceCreditStatus::try_from(credit.status).unwrap()
}

fn assert_refused(result: Result<pb::InvoiceCredit, Status>, code: Code, expected_reason: &str) -> Status {
    let status = result.expect_err("refused");
    assert_eq!((status.code(), reason(&status).as_str()), (code, expected_reason), "{status:?}");
    status
}

/// (amount_due, amount_paid, amount_remaining, amount_overpaid, pre_payment_credit_notes_amount,
/// post_payment_credit_notes_amount).
fn amounts(invoice: &pb::Invoice) -> (i64, i64, i64, i64, i64, i64) {
    (
        invoice.amount_due,
        invoice.amount_paid,
        invoice.amount_remaining,
        invoice.amount_overpaid,
        invoice.pre_payment_credit_notes_amount,
        invoice.post_payment_credit_notes_amount,
    )
}

/// A finalized (open) invoice for `customer` with one line per amount.
async fn open_invoice(app: &TestApp, customer: &str, lines: &[i64]) -> pb::Invoice {
    let draft = app.draft_with(customer, lines).await;
    app.finalize(&draft.id).await
}

/// Pays the invoice out of band (PayInvoice with `paid_out_of_band`).
async fn pay_out_of_band(app: &TestApp, id: &str) -> pb::Invoice {
    let req = pb::PayInvoiceRequest { id: id.to_owned(), paid_out_of_band: Some(true), ..Default::default() };
    app.invoices.clone().pay_invoice(authorized(req)).await.expect("paid out of band").into_inner()
}

/// Counts a succeeded payment of `amount` on the invoice the way the attach saga's apply step does
/// (an invoice payment written under the invoice's lock, with its events), without a payments service.
async fn pay_partly(app: &TestApp, invoice: &str, amount: i64) -> pb::Invoice {
    let db = app.db().await;
    let mut tx = db.begin().await.unwrap();
    let mut doc = settle_invoices::store::invoices::find_for_update(
        &mut tx,
        db.backend(),
        &settle_platform::Scope::test(DEV_ACCOUNT),
        invoice,
    )
    .await
    .unwrap()
    .unwrap();
    let now = settle_platform::time::now_unix();
    let payment = pb::InvoicePayment {
        id: IdPrefix::InvoicePayment.generate(),
        object: "invoice_payment".into(),
        invoice: invoice.to_owned(),
        currency: doc.currency.clone(),
        amount_requested: amount,
        created: now,
        payment: Some(pb::InvoicePaymentAssociatedPayment {
            payment_intent: Some(IdPrefix::PaymentIntent.generate()),
            r#type: pb::InvoicePaymentPaymentType::PaymentIntent as i32,
            ..Default::default()
        }),
        status_transitions: Some(Default::default()),
        ..Default::default()
    };
    let facts = PaymentFacts {
        customer: doc.customer.clone(),
        currency: doc.currency.clone(),
        amount: Amount::new(amount),
        succeeded: true,
    };
    let (payment, changes) = effects::apply(&mut doc, payment, &facts, now).unwrap();
    let origin = EventOrigin {
        scope: settle_platform::Scope::test(DEV_ACCOUNT),
        request_id: None,
        idempotency_key: None,
    };
    let saga_id = saga();
    effects::persist(&mut tx, db.backend(), &origin, &doc, Some((&payment, Some(&saga_id))), &changes)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    db.close().await;
    doc
}

/// How many events of any type have been committed.
async fn count_all_events(app: &TestApp) -> i64 {
    let db = app.db().await;
    let count = sqlx::query_scalar("SELECT COUNT(*) FROM outbox_events").fetch_one(db.pool()).await.unwrap();
    db.close().await;
    count
}

/// The usd `credit_note` balance transactions of the customer, oldest first: (amount, credit note).
async fn credit_note_postings(app: &TestApp, customer: &str) -> Vec<(i64, Option<String>)> {
    let mut all: Vec<_> = app
        .transactions(customer)
        .await
        .into_iter()
        .filter(|t| t.r#type == pb::CustomerBalanceTransactionType::CreditNote as i32)
        .map(|t| (t.amount, t.credit_note))
        .collect();
    all.reverse();
    all
}

backend_tests! {
    a_credit_on_an_unpaid_invoice_reduces_what_is_due_and_can_pay_it => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[600, 400]).await;
        assert_eq!(amounts(&invoice), (1_000, 0, 1_000, 0, 0, 0));

        let first = reservation(&invoice.id, 400, 0, 0, 0);
        let reserved = reserve(&app, &first).await.unwrap();
        assert_eq!(credit_status(&reserved), pb::InvoiceCreditStatus::Reserved);
        assert_eq!((reserved.amount, reserved.pre_payment_amount, reserved.post_payment_amount), (400, 400, 0));
        assert_eq!((reserved.credit_note_index, reserved.invoice_number.clone()), (1, invoice.number.clone()));
        assert_eq!((reserved.customer.as_str(), reserved.currency.as_str()), (CUSTOMER, "usd"));
        assert_eq!(reserved.customer_balance_transaction, None);
        assert_eq!(amounts(&app.get(&invoice.id).await), (1_000, 0, 1_000, 0, 0, 0), "a reservation changes no amount");
        let updates_before = app.count_events("invoice.updated").await;
        let events_before = count_all_events(&app).await;

        assert_eq!(count_all_events(&app).await, events_before, "a reservation emits nothing");
        let applied = apply(&app, &first.saga_id).await.unwrap();
        assert_eq!(credit_status(&applied), pb::InvoiceCreditStatus::Applied);
        assert!(applied.updated >= applied.created);
        let after_first = app.get(&invoice.id).await;
        assert_eq!(amounts(&after_first), (600, 0, 600, 0, 400, 0));
        assert_eq!(status(&after_first), pb::InvoiceStatus::Open);
        let n = usize::try_from(updates_before).unwrap() + 1;
        let updated = app.events_of_type("invoice.updated", n).await.pop().unwrap();
        let mut keys = previous_keys(&updated);
        keys.sort();
        assert_eq!(keys, ["amount_due", "amount_remaining", "pre_payment_credit_notes_amount"]);
        let shown: pb::Invoice = payload(&updated);
        assert_eq!(amounts(&shown), (600, 0, 600, 0, 400, 0));
        assert_eq!(shown.lines.as_ref().map(|l| l.data.len()), Some(2), "events carry the invoice with its lines");

        // The rest of the invoice: it is settled by credit notes alone and becomes paid.
        let second = reservation(&invoice.id, 600, 0, 0, 0);
        let issued = issue(&app, &second).await;
        assert_eq!((issued.pre_payment_amount, issued.post_payment_amount, issued.credit_note_index), (600, 0, 2));
        let paid = app.get(&invoice.id).await;
        assert_eq!(amounts(&paid), (0, 0, 0, 0, 1_000, 0));
        assert_eq!(status(&paid), pb::InvoiceStatus::Paid);
        assert!(paid.status_transitions.as_ref().unwrap().paid_at.is_some());
        let paid_event = app.events_of_type("invoice.paid", 1).await.remove(0);
        assert_eq!(status(&payload::<pb::Invoice>(&paid_event)), pb::InvoiceStatus::Paid);
        assert_eq!(app.count_events("customer_balance_transaction.created").await, 0, "no balance credit was asked for");

        // Voiding the second note reopens the invoice for what it credited.
        let reversal = saga();
        let reversed = reverse(&app, &reversal, &second.credit_note).await.unwrap();
        assert_eq!(credit_status(&reversed), pb::InvoiceCreditStatus::Reversed);
        assert_eq!(reversed.reversal_saga_id.as_deref(), Some(reversal.as_str()));
        let reopened = app.get(&invoice.id).await;
        assert_eq!(amounts(&reopened), (600, 0, 600, 0, 400, 0));
        assert_eq!(status(&reopened), pb::InvoiceStatus::Open);
        assert_eq!(reopened.status_transitions.as_ref().unwrap().paid_at, None);
        assert_eq!(reopened.auto_advance, invoice.auto_advance, "a voided credit note leaves auto_advance alone");
    };

    a_credit_on_a_partly_paid_invoice_splits_into_pre_and_post_payment_parts => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let partly = pay_partly(&app, &invoice.id, 700).await;
        assert_eq!(amounts(&partly), (1_000, 700, 300, 0, 0, 0));

        // 300 is still unpaid: that much reduces it, the other 200 is refunded (50) and credited (150).
        let req = reservation(&invoice.id, 500, 150, 50, 0);
        let reserved = reserve(&app, &req).await.unwrap();
        assert_eq!((reserved.pre_payment_amount, reserved.post_payment_amount, reserved.credit_amount), (300, 200, 150));
        let applied = apply(&app, &req.saga_id).await.unwrap();
        let paid = app.get(&invoice.id).await;
        assert_eq!(amounts(&paid), (700, 700, 0, 0, 300, 200));
        assert_eq!(status(&paid), pb::InvoiceStatus::Paid);
        assert_eq!(app.balance(CUSTOMER).await, -150, "the credit_amount is credited to the balance");
        assert_eq!(credit_note_postings(&app, CUSTOMER).await, [(-150, Some(req.credit_note.clone()))]);
        let transaction = applied.customer_balance_transaction.clone().expect("the credit's balance transaction");
        let created = app.events_of_type("customer_balance_transaction.created", 1).await.remove(0);
        assert_eq!(payload::<pb::CustomerBalanceTransaction>(&created).id, transaction);

        let reversed = reverse(&app, &saga(), &req.credit_note).await.unwrap();
        let reopened = app.get(&invoice.id).await;
        assert_eq!(amounts(&reopened), (1_000, 700, 300, 0, 0, 0));
        assert_eq!(status(&reopened), pb::InvoiceStatus::Open);
        assert_eq!(app.balance(CUSTOMER).await, 0);
        assert_eq!(
            credit_note_postings(&app, CUSTOMER).await,
            [(-150, Some(req.credit_note.clone())), (150, Some(req.credit_note.clone()))]
        );
        assert!(reversed.reversal_customer_balance_transaction.is_some());
        assert_eq!(reversed.customer_balance_transaction, Some(transaction), "the first posting stays recorded");
    };

    a_credit_on_a_paid_invoice_is_all_post_payment_and_its_reversal_needs_the_balance => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[800]).await;
        let paid = pay_out_of_band(&app, &invoice.id).await;
        assert_eq!(amounts(&paid), (800, 800, 0, 0, 0, 0));

        let req = reservation(&invoice.id, 250, 200, 0, 50);
        let reserved = reserve(&app, &req).await.unwrap();
        assert_eq!((reserved.pre_payment_amount, reserved.post_payment_amount), (0, 250));
        apply(&app, &req.saga_id).await.unwrap();
        let credited = app.get(&invoice.id).await;
        assert_eq!(amounts(&credited), (800, 800, 0, 0, 0, 250));
        assert_eq!(status(&credited), pb::InvoiceStatus::Paid);
        assert_eq!(app.balance(CUSTOMER).await, -200);
        assert_eq!(app.count_events("invoice.paid").await, 1, "only PayInvoice paid it");

        // The customer spent part of the credit: voiding the note would leave them owing, refused.
        app.adjust(CUSTOMER, 100).await;
        let void_saga = saga();
        let refused = assert_refused(reverse(&app, &void_saga, &req.credit_note).await, Code::FailedPrecondition, "balance_insufficient");
        assert!(refused.message().contains("-100"), "{}", refused.message());
        assert_eq!(amounts(&app.get(&invoice.id).await), (800, 800, 0, 0, 0, 250), "nothing changed");
        assert_eq!(app.balance(CUSTOMER).await, -100);
        assert_eq!(credit_note_postings(&app, CUSTOMER).await.len(), 1);

        // With the credit back on the balance the reversal goes through.
        app.adjust(CUSTOMER, -100).await;
        let reversed = reverse(&app, &void_saga, &req.credit_note).await.unwrap();
        assert_eq!(credit_status(&reversed), pb::InvoiceCreditStatus::Reversed);
        assert_eq!(amounts(&app.get(&invoice.id).await), (800, 800, 0, 0, 0, 0));
        assert_eq!(app.balance(CUSTOMER).await, 0);
    };

    every_step_is_idempotent_on_its_saga => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        pay_partly(&app, &invoice.id, 900).await;
        let req = reservation(&invoice.id, 300, 200, 0, 0);
        let first = reserve(&app, &req).await.unwrap();
        assert_eq!(reserve(&app, &req).await.unwrap(), first, "a repeated reserve returns the credit");

        let mut different = req.clone();
        different.amount = 301;
        different.out_of_band_amount = 1;
        let status = assert_refused(reserve(&app, &different).await, Code::InvalidArgument, "idempotency_error");
        assert_eq!(violated_fields(&status), ["saga_id"]);

        let updates_before = app.count_events("invoice.updated").await;
        let applied = apply(&app, &req.saga_id).await.unwrap();
        assert_eq!(apply(&app, &req.saga_id).await.unwrap(), applied, "a repeated apply changes nothing");
        assert_eq!(reserve(&app, &req).await.unwrap(), applied, "a late repeat of reserve shows the credit as it is");
        assert_eq!(app.balance(CUSTOMER).await, -200, "credited once");
        assert_eq!(amounts(&app.get(&invoice.id).await), (900, 900, 0, 0, 100, 200));
        assert_eq!(app.count_events("invoice.updated").await, updates_before + 1);
        assert_eq!(app.count_events("invoice.paid").await, 1);
        assert_eq!(app.count_events("customer_balance_transaction.created").await, 1);

        let void_saga = saga();
        let reversed = reverse(&app, &void_saga, &req.credit_note).await.unwrap();
        assert_eq!(reverse(&app, &void_saga, &req.credit_note).await.unwrap(), reversed);
        assert_eq!(apply(&app, &req.saga_id).await.unwrap(), reversed, "apply repeated after the void");
        assert_eq!(app.balance(CUSTOMER).await, 0, "taken back once");
        assert_eq!(amounts(&app.get(&invoice.id).await), (1_000, 900, 100, 0, 0, 0));
        assert_eq!(app.count_events("customer_balance_transaction.created").await, 2);

        let other = reservation(&invoice.id, 50, 0, 0, 0);
        let reserved = reserve(&app, &other).await.unwrap();
        let released = release(&app, &other.saga_id).await.unwrap();
        assert_eq!(credit_status(&released), pb::InvoiceCreditStatus::Released);
        assert_eq!((released.saga_id.as_str(), released.amount), (reserved.saga_id.as_str(), 50));
        assert_eq!(release(&app, &other.saga_id).await.unwrap(), released, "a repeated release changes nothing");
        assert_eq!(reserve(&app, &other).await.unwrap(), released, "nor does a late reserve revive it");
    };

    saga_facing_calls_need_the_internal_key => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let req = reservation(&invoice.id, 100, 0, 0, 0);
        let status = ledger(&app).reserve_invoice_credit(authorized(req.clone())).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::PermissionDenied, "permission_denied"));
        let status = ledger(&app)
            .apply_invoice_credit(authorized(pb::ApplyInvoiceCreditRequest { saga_id: req.saga_id.clone() }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_refused(apply(&app, &req.saga_id).await, Code::NotFound, "resource_missing");
        // Internal calls act for the account they name: another account's invoice does not exist.
        let other = ledger(&app).reserve_invoice_credit(internal(req.clone(), OTHER_ACCOUNT)).await.unwrap_err();
        assert_eq!((other.code(), reason(&other).as_str()), (Code::NotFound, "resource_missing"));
        assert_eq!(violated_fields(&other), ["invoice"]);
    };

    an_invoice_with_credit_notes_issued_or_being_issued_cannot_be_voided => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let void = |id: String| {
            let invoices = app.invoices.clone();
            async move {
                invoices.clone().void_invoice(authorized(pb::VoidInvoiceRequest { id, ..Default::default() })).await
            }
        };
        let reserved = reservation(&invoice.id, 300, 0, 0, 0);
        reserve(&app, &reserved).await.unwrap();
        let refused = void(invoice.id.clone()).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "state_unsupported"));
        assert!(refused.message().contains("credit notes that are issued or being issued"), "{}", refused.message());

        apply(&app, &reserved.saga_id).await.unwrap();
        let refused = void(invoice.id.clone()).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "state_unsupported"));
        assert_eq!(status(&app.get(&invoice.id).await), pb::InvoiceStatus::Open);

        let released = reservation(&invoice.id, 100, 0, 0, 0);
        reserve(&app, &released).await.unwrap();
        release(&app, &released.saga_id).await.unwrap();
        reverse(&app, &saga(), &reserved.credit_note).await.unwrap();
        let voided = void(invoice.id.clone()).await.unwrap().into_inner();
        assert_eq!(status(&voided), pb::InvoiceStatus::Void, "released and reversed credits no longer hold it");
        assert_refused(
            reserve(&app, &reservation(&invoice.id, 100, 0, 0, 0)).await,
            Code::FailedPrecondition,
            "state_unsupported",
        );
    };

    bad_parameters_are_refused_naming_the_field_and_change_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let good = reservation(&invoice.id, 100, 0, 0, 0);
        let cases: Vec<(&str, pb::ReserveInvoiceCreditRequest, &str)> = vec![
            ("saga_id", pb::ReserveInvoiceCreditRequest { saga_id: String::new(), ..good.clone() }, "parameter_missing"),
            ("saga_id", pb::ReserveInvoiceCreditRequest { saga_id: "in_123".into(), ..good.clone() }, "parameter_invalid"),
            ("invoice", pb::ReserveInvoiceCreditRequest { invoice: "cn_123".into(), ..good.clone() }, "parameter_invalid"),
            ("credit_note", pb::ReserveInvoiceCreditRequest { credit_note: String::new(), ..good.clone() }, "parameter_missing"),
            ("amount", pb::ReserveInvoiceCreditRequest { amount: 0, ..good.clone() }, "parameter_invalid_integer"),
            ("amount", pb::ReserveInvoiceCreditRequest { amount: -100, ..good.clone() }, "parameter_invalid_integer"),
            ("credit_amount", pb::ReserveInvoiceCreditRequest { credit_amount: -1, ..good.clone() }, "parameter_invalid_integer"),
            ("refund_amount", pb::ReserveInvoiceCreditRequest { refund_amount: -1, ..good.clone() }, "parameter_invalid_integer"),
            ("out_of_band_amount", pb::ReserveInvoiceCreditRequest { out_of_band_amount: -1, ..good.clone() }, "parameter_invalid_integer"),
            ("amount", pb::ReserveInvoiceCreditRequest { credit_amount: i64::MAX, refund_amount: 1, ..good.clone() }, "amount_too_large"),
        ];
        for (field, req, expected) in cases {
            let status = assert_refused(reserve(&app, &req).await, Code::InvalidArgument, expected);
            assert_eq!(violated_fields(&status), [field], "{req:?}");
        }
        for saga_id in ["", "saga"] {
            let status = apply(&app, saga_id).await.unwrap_err();
            assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["saga_id".to_owned()]));
            assert_eq!(release(&app, saga_id).await.unwrap_err().code(), Code::InvalidArgument);
        }
        let status = reverse(&app, &saga(), "in_123").await.unwrap_err();
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["credit_note".to_owned()]));
        assert_eq!(app.get(&invoice.id).await, invoice, "nothing changed");
        assert_eq!(reserve(&app, &good).await.unwrap().credit_note_index, 1, "and no refused call counted");
    };

    every_refusal_says_why_and_changes_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let draft = app.draft_with(CUSTOMER, &[1_000]).await;
        let status = assert_refused(reserve(&app, &reservation(&draft.id, 100, 0, 0, 0)).await, Code::FailedPrecondition, "state_unsupported");
        assert!(status.message().contains("is draft"), "{}", status.message());
        assert_refused(reserve(&app, &reservation("in_missing", 100, 0, 0, 0)).await, Code::NotFound, "resource_missing");

        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let first = reservation(&invoice.id, 700, 0, 0, 0);
        issue(&app, &first).await;
        let before = app.get(&invoice.id).await;
        // 700 is credited: 301 more would take the notes beyond the total.
        let status = assert_refused(reserve(&app, &reservation(&invoice.id, 301, 0, 0, 0)).await, Code::FailedPrecondition, "credit_note_exceeds_invoice");
        assert!(status.message().contains("beyond its total of 1000"), "{}", status.message());
        // 300 remain unpaid, so a credit of 300 is all pre-payment: a balance credit does not fit.
        let status = assert_refused(reserve(&app, &reservation(&invoice.id, 300, 100, 0, 0)).await, Code::FailedPrecondition, "credit_note_amounts_mismatch");
        assert!(status.message().contains("post-payment amount is 0"), "{}", status.message());
        // A second credit for the same credit note, under another saga.
        let twin = pb::ReserveInvoiceCreditRequest { saga_id: saga(), ..first.clone() };
        let status = assert_refused(reserve(&app, &twin).await, Code::FailedPrecondition, "state_unsupported");
        assert_eq!(violated_fields(&status), ["credit_note"]);

        assert_refused(apply(&app, &saga()).await, Code::NotFound, "resource_missing");
        assert_refused(release(&app, &saga()).await, Code::NotFound, "resource_missing");
        let status = assert_refused(reverse(&app, &saga(), &credit_note()).await, Code::NotFound, "resource_missing");
        assert_eq!(violated_fields(&status), ["credit_note"]);
        assert_refused(release(&app, &first.saga_id).await, Code::FailedPrecondition, "state_unsupported");

        let pending = reservation(&invoice.id, 200, 0, 0, 0);
        reserve(&app, &pending).await.unwrap();
        assert_refused(reverse(&app, &saga(), &pending.credit_note).await, Code::FailedPrecondition, "state_unsupported");
        release(&app, &pending.saga_id).await.unwrap();
        assert_refused(apply(&app, &pending.saga_id).await, Code::FailedPrecondition, "state_unsupported");
        assert_refused(reverse(&app, &saga(), &pending.credit_note).await, Code::FailedPrecondition, "state_unsupported");

        let void_saga = saga();
        reverse(&app, &void_saga, &first.credit_note).await.unwrap();
        let status = assert_refused(reverse(&app, &saga(), &first.credit_note).await, Code::FailedPrecondition, "credit_note_not_voidable");
        assert!(status.message().contains(&void_saga), "{}", status.message());
        // A void saga voids one note: the same saga naming another is a misuse of its key.
        let other = reservation(&invoice.id, 100, 0, 0, 0);
        issue(&app, &other).await;
        let status = assert_refused(reverse(&app, &void_saga, &other.credit_note).await, Code::InvalidArgument, "idempotency_error");
        assert_eq!(violated_fields(&status), ["saga_id"]);
        let after = app.get(&invoice.id).await;
        assert_eq!(amounts(&after), (900, 0, 900, 0, 100, 0));
        assert_eq!(amounts(&before), (300, 0, 300, 0, 700, 0));
    };

    credit_notes_are_numbered_by_the_invoice_s_live_credits => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let a = reservation(&invoice.id, 100, 0, 0, 0);
        let b = reservation(&invoice.id, 100, 0, 0, 0);
        assert_eq!(reserve(&app, &a).await.unwrap().credit_note_index, 1);
        assert_eq!(reserve(&app, &b).await.unwrap().credit_note_index, 2);
        // The last one released: its number is free again.
        release(&app, &b.saga_id).await.unwrap();
        let c = reservation(&invoice.id, 100, 0, 0, 0);
        assert_eq!(reserve(&app, &c).await.unwrap().credit_note_index, 2);
        // An earlier one released while a later one lives: numbers go on after the highest.
        release(&app, &a.saga_id).await.unwrap();
        let d = reservation(&invoice.id, 100, 0, 0, 0);
        assert_eq!(reserve(&app, &d).await.unwrap().credit_note_index, 3);
        // A voided (reversed) credit note keeps its number.
        apply(&app, &d.saga_id).await.unwrap();
        reverse(&app, &saga(), &d.credit_note).await.unwrap();
        let e = reservation(&invoice.id, 100, 0, 0, 0);
        assert_eq!(reserve(&app, &e).await.unwrap().credit_note_index, 4);
        let other = open_invoice(&app, CUSTOMER, &[500]).await;
        let first_of_other = reserve(&app, &reservation(&other.id, 100, 0, 0, 0)).await.unwrap();
        assert_eq!((first_of_other.credit_note_index, first_of_other.invoice_number), (1, other.number.clone()));
    };

    an_uncollectible_invoice_credited_in_full_is_paid => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        pay_partly(&app, &invoice.id, 250).await;
        app.invoices
            .clone()
            .mark_invoice_uncollectible(authorized(pb::MarkInvoiceUncollectibleRequest { id: invoice.id.clone(), ..Default::default() }))
            .await
            .unwrap();
        let req = reservation(&invoice.id, 750, 0, 0, 0);
        assert_eq!(issue(&app, &req).await.pre_payment_amount, 750);
        let paid = app.get(&invoice.id).await;
        assert_eq!((status(&paid), amounts(&paid)), (pb::InvoiceStatus::Paid, (250, 250, 0, 0, 750, 0)));
        assert!(paid.status_transitions.as_ref().unwrap().paid_at.is_some());
        reverse(&app, &saga(), &req.credit_note).await.unwrap();
        let reopened = app.get(&invoice.id).await;
        assert_eq!((status(&reopened), amounts(&reopened)), (pb::InvoiceStatus::Open, (1_000, 250, 750, 0, 0, 0)));
    };

    a_credit_applied_after_the_invoice_was_paid_meanwhile_credits_the_overpayment => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let req = reservation(&invoice.id, 600, 0, 0, 0);
        assert_eq!(reserve(&app, &req).await.unwrap().pre_payment_amount, 600);
        // A payment that was pending before the credit was reserved succeeds for the whole invoice.
        let paid = pay_partly(&app, &invoice.id, 1_000).await;
        assert_eq!((status(&paid), amounts(&paid)), (pb::InvoiceStatus::Paid, (1_000, 1_000, 0, 0, 0, 0)));
        let overpaid_events = app.count_events("invoice.overpaid").await;

        apply(&app, &req.saga_id).await.unwrap();
        let credited = app.get(&invoice.id).await;
        assert_eq!(amounts(&credited), (400, 1_000, 0, 600, 600, 0));
        assert_eq!(app.balance(CUSTOMER).await, -600, "what the customer paid beyond what is due is credited");
        assert_eq!(app.count_events("invoice.overpaid").await, overpaid_events + 1);
        let overpayments: Vec<i64> = app
            .transactions(CUSTOMER)
            .await
            .iter()
            .filter(|t| t.r#type == pb::CustomerBalanceTransactionType::InvoiceOverpaid as i32)
            .map(|t| t.amount)
            .collect();
        assert_eq!(overpayments, [-600]);

        // Voiding it takes the overpayment credit back, so the balance must still hold it.
        app.adjust(CUSTOMER, 1).await;
        let void_saga = saga();
        assert_refused(reverse(&app, &void_saga, &req.credit_note).await, Code::FailedPrecondition, "balance_insufficient");
        app.adjust(CUSTOMER, -1).await;
        reverse(&app, &void_saga, &req.credit_note).await.unwrap();
        let back = app.get(&invoice.id).await;
        assert_eq!((status(&back), amounts(&back)), (pb::InvoiceStatus::Paid, (1_000, 1_000, 0, 0, 0, 0)));
        assert_eq!(app.balance(CUSTOMER).await, 0);
    };

    the_database_refuses_credits_whose_amounts_do_not_add_up => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let db = app.db().await;
        let insert = |amount: i64, pre: i64, post: i64, credit: i64, status: &'static str| {
            sqlx::query(
                "INSERT INTO invoice_credits (account_id, livemode, saga_id, invoice, credit_note, status, amount, \
                   pre_payment_amount, post_payment_amount, credit_amount, refund_amount, out_of_band_amount, \
                   customer, currency, credit_note_index, created, updated, document) \
                 VALUES ($1, FALSE, $2, 'in_x', $3, $4, $5, $6, $7, $8, 0, 0, 'cus_x', 'usd', 1, 0, 0, $9)",
            )
            .bind(DEV_ACCOUNT)
            .bind(saga())
            .bind(credit_note())
            .bind(status)
            .bind(amount)
            .bind(pre)
            .bind(post)
            .bind(credit)
            .bind(Vec::<u8>::new())
        };
        insert(100, 60, 40, 40, "reserved").execute(db.pool()).await.expect("a consistent credit is stored");
        for (amount, pre, post, credit, status) in [
            (100, 60, 30, 30, "reserved"),
            (100, 100, 0, 10, "reserved"),
            (0, 0, 0, 0, "reserved"),
            (100, -10, 110, 110, "reserved"),
            (100, 100, 0, 0, "pending"),
            (100, 0, 100, 100, "applied"),
        ] {
            let error = insert(amount, pre, post, credit, status).execute(db.pool()).await.unwrap_err();
            assert!(error.as_database_error().is_some_and(|e| e.is_check_violation()), "{error}");
        }
        db.close().await;
    };
}
