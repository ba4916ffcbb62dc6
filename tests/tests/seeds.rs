//! The seeds (`shared/seeds/000`–`004`, Stripe's changelogs and guides) replayed as stories over
//! gRPC against the three real services, on SQLite and PostgreSQL, asserting the field values and
//! the events Stripe's text promises:
//! - 000 (2025-10-29.clover): Payment Records for payments made outside settle, attached to invoices;
//! - 001 (2025-05-28.basil): several PaymentIntents attached to one invoice;
//! - 002 (2025-03-31.basil): partial payments, overpayment (`amount_overpaid`, `invoice.overpaid`, the
//!   excess to the customer's balance), out-of-band payments in `amount_paid`, `confirmation_secret`;
//! - 003 (payment application): apply, unapply (reopens with `auto_advance=false`,
//!   `invoice_payment.detached`), reapply to another invoice;
//! - 004 (credit notes): preview, create against a partially paid invoice (pre/post split, `mixed`),
//!   void.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::time::Duration;

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::creditnotes::v1 as cnpb;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use settle_testkit::authorized;
use settle_tests::Suite;
use settle_tests::api::Api;
use settle_tests::cluster::eventually;

const TOTAL: i64 = 10_000;
const PAID: i32 = pb::InvoicePaymentStatus::Paid as i32;
const OPEN: i32 = pb::InvoicePaymentStatus::Open as i32;
const CANCELED: i32 = pb::InvoicePaymentStatus::Canceled as i32;

/// The invoice events a story follows (the rest — created, updated, items — are bookkeeping).
const STORY_EVENTS: &[&str] = &[
    "invoice.finalized",
    "invoice.paid",
    "invoice.overpaid",
    "invoice.voided",
    "invoice_payment.paid",
    "invoice_payment.detached",
];

fn api(suite: &Suite) -> Api {
    Api::new(suite.invoices.channel(), suite.payments.channel())
        .with_credit_notes(suite.credit_notes.channel())
}

async fn open(api: &Api, customer: &str, total: i64, automatic: bool) -> pb::Invoice {
    let draft = api.draft(customer, total, automatic).await.unwrap();
    api.finalize(&draft.id, None).await.unwrap()
}

fn status(doc: &pb::Invoice) -> pb::InvoiceStatus {
    pb::InvoiceStatus::try_from(doc.status.unwrap_or_default()).unwrap()
}

/// (status, amount_paid, amount_remaining, amount_overpaid) of an invoice.
fn amounts(doc: &pb::Invoice) -> (pb::InvoiceStatus, i64, i64, i64) {
    (status(doc), doc.amount_paid, doc.amount_remaining, doc.amount_overpaid)
}

/// (payment id, status, amount_paid) of each invoice payment, by payment id (several are made
/// within one second, so creation order is not observable).
async fn payments_of(api: &Api, invoice: &str) -> Vec<(String, i32, Option<i64>)> {
    let mut all: Vec<_> = api
        .invoice_payments(invoice)
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            let payment = p.payment.unwrap_or_default();
            (payment.payment_intent.or(payment.payment_record).unwrap_or_default(), p.status, p.amount_paid)
        })
        .collect();
    all.sort();
    all
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

/// The story's invoice events, in commit order, once `expected` many have been sequenced.
async fn story_events(api: &Api, expected: usize) -> Vec<String> {
    let read = || async {
        Api::event_types(&api.invoice_events)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| STORY_EVENTS.contains(&t.as_str()))
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(10), || async {
        let events = read().await;
        (events.len() >= expected).then_some(events)
    })
    .await
    .unwrap_or_else(|| panic!("fewer than {expected} story events"))
}

async fn invoice_when(api: &Api, id: &str, done: impl Fn(&pb::Invoice) -> bool) -> pb::Invoice {
    eventually(Duration::from_secs(10), || async {
        let doc = api.invoice(id).await.unwrap();
        done(&doc).then_some(doc)
    })
    .await
    .unwrap_or_else(|| panic!("{id} did not get there"))
}

backend_tests! {
    seed_000_payment_records_pay_invoices_in_part => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let invoice = open(&api, "cus_a", TOTAL, false).await;
        assert_eq!(amounts(&invoice), (pb::InvoiceStatus::Open, 0, TOTAL, 0));

        // A check for 30.00, reported as a Payment Record and attached: a partial payment.
        let check = api.record("cus_a", 3_000, true).await.unwrap();
        let after_check = api.attach_record(&invoice.id, &check.id, Some("attach-check")).await.unwrap();
        assert_eq!(amounts(&after_check), (pb::InvoiceStatus::Open, 3_000, 7_000, 0));
        let listed = api.invoice_payments(&invoice.id).await.unwrap();
        assert_eq!(listed.len(), 1);
        let payment = listed[0].payment.clone().unwrap();
        assert_eq!(payment.r#type, pb::InvoicePaymentPaymentType::PaymentRecord as i32);
        assert_eq!(payment.payment_record.as_deref(), Some(check.id.as_str()));
        assert_eq!(payment.payment_intent, None);
        assert_eq!((listed[0].status, listed[0].amount_paid, listed[0].amount_requested), (PAID, Some(3_000), 3_000));
        // Stripe's list filter: payment[type]=payment_record, payment[payment_record]=…
        let filter = pb::ListInvoicePaymentsRequest {
            payment: Some(pb::InvoicePaymentPaymentParams {
                payment_record: Some(check.id.clone()),
                r#type: pb::InvoicePaymentPaymentType::PaymentRecord as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let found = api.invoice_payments.clone().list_invoice_payments(authorized(filter)).await.unwrap().into_inner();
        assert_eq!(found.data.iter().map(|p| p.invoice.as_str()).collect::<Vec<_>>(), [invoice.id.as_str()]);
        assert_eq!(api.attachment(&check.id).await.unwrap().unwrap().invoice, invoice.id);

        // The same key replays; a record cannot count twice.
        let replay = api.attach_record(&invoice.id, &check.id, Some("attach-check")).await.unwrap();
        assert_eq!(amounts(&replay), amounts(&after_check));

        // A wire transfer for the rest, and a card payment on top of nothing left: paid.
        let wire = api.record("cus_a", 7_000, true).await.unwrap();
        let paid = api.attach_record(&invoice.id, &wire.id, None).await.unwrap();
        assert_eq!(amounts(&paid), (pb::InvoiceStatus::Paid, TOTAL, 0, 0));
        assert!(paid.status_transitions.unwrap_or_default().paid_at.is_some());
        assert_eq!(payments_of(&api, &invoice.id).await, sorted(vec![
            (check.id.clone(), PAID, Some(3_000)),
            (wire.id.clone(), PAID, Some(7_000)),
        ]));
        assert_eq!(story_events(&api, 4).await, ["invoice.finalized", "invoice_payment.paid", "invoice_payment.paid", "invoice.paid"]);
        // No money moved through settle: no PaymentIntent.
        assert!(api.all_intents(Some("cus_a")).await.unwrap().is_empty());
    };

    seed_001_several_payment_intents_pay_one_invoice => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let invoice = open(&api, "cus_a", TOTAL, false).await;
        let mut intents = Vec::new();
        let mut seen = Vec::new();
        for (amount, expected) in [
            (2_500, (pb::InvoiceStatus::Open, 2_500, 7_500, 0)),
            (2_500, (pb::InvoiceStatus::Open, 5_000, 5_000, 0)),
            (5_000, (pb::InvoiceStatus::Paid, TOTAL, 0, 0)),
        ] {
            let intent = api.intent("cus_a", amount, Some("pm_card_visa")).await.unwrap();
            let doc = api.attach(&invoice.id, &intent.id, None).await.unwrap();
            seen.push(amounts(&doc));
            assert_eq!(amounts(&doc), expected);
            intents.push(intent);
        }
        // Expanded payments on the invoice, as `expand[]=payments` gives them.
        let request = pb::GetInvoiceRequest { id: invoice.id.clone(), expand: vec!["payments".into()] };
        let expanded = api.invoices.clone().get_invoice(authorized(request)).await.unwrap().into_inner();
        let listed = expanded.payments.unwrap();
        assert_eq!(listed.data.len(), 3);
        assert!(listed.data.iter().all(|p| p.status == PAID && p.payment.as_ref().unwrap().r#type == pb::InvoicePaymentPaymentType::PaymentIntent as i32));
        assert_eq!(listed.data.iter().map(|p| p.amount_paid.unwrap()).sum::<i64>(), TOTAL);
        // Each intent is attached to this invoice in payments.
        for intent in &intents {
            assert_eq!(api.attachment(&intent.id).await.unwrap().unwrap().invoice, invoice.id);
        }
        assert_eq!(story_events(&api, 5).await, [
            "invoice.finalized", "invoice_payment.paid", "invoice_payment.paid", "invoice_payment.paid", "invoice.paid",
        ]);
    };

    seed_002_partial_payments_and_overpayment => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let invoice = open(&api, "cus_a", TOTAL, false).await;
        // Two bank debits of 60.00, both applied while processing: they count only once settled.
        let first = api.intent("cus_a", 6_000, Some("pm_us_bank_account")).await.unwrap();
        let second = api.intent("cus_a", 6_000, Some("pm_us_bank_account")).await.unwrap();
        assert_eq!(first.status, ppb::PaymentIntentStatus::Processing as i32);
        api.attach(&invoice.id, &first.id, None).await.unwrap();
        let both = api.attach(&invoice.id, &second.id, None).await.unwrap();
        assert_eq!(amounts(&both), (pb::InvoiceStatus::Open, 0, TOTAL, 0));
        assert_eq!(payments_of(&api, &invoice.id).await.iter().map(|p| p.1).collect::<Vec<_>>(), [OPEN, OPEN]);

        api.settle(&first.id, true).await.unwrap();
        let partly = invoice_when(&api, &invoice.id, |d| d.amount_paid == 6_000).await;
        assert_eq!(amounts(&partly), (pb::InvoiceStatus::Open, 6_000, 4_000, 0));
        api.settle(&second.id, true).await.unwrap();
        let over = invoice_when(&api, &invoice.id, |d| d.amount_paid == 12_000).await;
        assert_eq!(amounts(&over), (pb::InvoiceStatus::Paid, 12_000, 0, 2_000));
        assert_eq!(payments_of(&api, &invoice.id).await.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>(), [(PAID, Some(6_000)), (PAID, Some(6_000))]);
        // The excess is the customer's credit.
        assert_eq!(api.balance("cus_a").await.unwrap(), -2_000);
        let credited: Vec<_> = api.balance_transactions("cus_a").await.unwrap().into_iter()
            .filter(|t| t.r#type == pb::CustomerBalanceTransactionType::InvoiceOverpaid as i32).collect();
        assert_eq!(credited.len(), 1);
        assert_eq!((credited[0].amount, credited[0].invoice.as_deref()), (-2_000, Some(invoice.id.as_str())));
        assert_eq!(story_events(&api, 5).await, [
            "invoice.finalized", "invoice_payment.paid", "invoice_payment.paid", "invoice.paid", "invoice.overpaid",
        ]);

        // amount_paid reflects out-of-band payments.
        let offline = open(&api, "cus_b", 5_000, false).await;
        let marked = api.pay_out_of_band(&offline.id, None).await.unwrap();
        assert_eq!(amounts(&marked), (pb::InvoiceStatus::Paid, 5_000, 0, 0));
        assert_eq!(marked.amount_paid_off_stripe, 5_000);

        // confirmation_secret: the client secret of a charge_automatically invoice's PaymentIntent.
        let automatic = open(&api, "cus_c", 3_000, true).await;
        let with_secret = api.invoice_with_secret(&automatic.id).await.unwrap();
        let secret = with_secret.confirmation_secret.expect("confirmation_secret");
        assert_eq!(secret.r#type, "payment_intent");
        let intents = api.all_intents(Some("cus_c")).await.unwrap();
        assert_eq!(intents.len(), 1);
        assert_eq!((intents[0].amount, intents[0].client_secret.clone()), (3_000, Some(secret.client_secret)));
        assert_eq!(api.invoice(&automatic.id).await.unwrap().confirmation_secret, None, "only when expanded");
    };

    seed_003_apply_unapply_reapply => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        // Finalized with automatic collection on, so reopening visibly turns it off.
        let draft = api.draft("cus_a", TOTAL, false).await.unwrap();
        let finalize = pb::FinalizeInvoiceRequest { id: draft.id.clone(), auto_advance: Some(true), ..Default::default() };
        let invoice = api.invoices.clone().finalize_invoice(authorized(finalize)).await.unwrap().into_inner();
        assert!(invoice.auto_advance);
        let other = open(&api, "cus_a", 6_000, false).await;
        let first = api.intent("cus_a", 4_000, Some("pm_card_visa")).await.unwrap();
        let second = api.intent("cus_a", 6_000, Some("pm_card_visa")).await.unwrap();
        api.attach(&invoice.id, &first.id, None).await.unwrap();
        let paid = api.attach(&invoice.id, &second.id, None).await.unwrap();
        assert_eq!(amounts(&paid), (pb::InvoiceStatus::Paid, TOTAL, 0, 0));
        assert!(paid.auto_advance);

        // Unapply: the paid invoice reopens with automatic collection off.
        let reopened = api.detach(&invoice.id, &second.id, Some("unapply")).await.unwrap();
        assert_eq!(amounts(&reopened), (pb::InvoiceStatus::Open, 4_000, 6_000, 0));
        assert!(!reopened.auto_advance, "reopened invoices have auto_advance=false");
        assert_eq!(payments_of(&api, &invoice.id).await, sorted(vec![
            (first.id.clone(), PAID, Some(4_000)),
            (second.id.clone(), CANCELED, Some(6_000)),
        ]));
        assert_eq!(api.attachment(&second.id).await.unwrap(), None, "unapplied: free in payments");
        // The invoice_payment.detached events of the last 30 days find the unapplied payment.
        let request = settle_proto::events::v1::ListEventsRequest { r#type: Some("invoice_payment.detached".into()), ..Default::default() };
        let detached = api.invoice_events.clone().list_events(authorized(request)).await.unwrap().into_inner().data;
        assert_eq!(detached.len(), 1);

        // Apply the unapplied payment to another invoice, then reapply it back.
        let other_paid = api.attach(&other.id, &second.id, None).await.unwrap();
        assert_eq!(amounts(&other_paid), (pb::InvoiceStatus::Paid, 6_000, 0, 0));
        let back = api.reapply(&invoice.id, &second.id, None).await.unwrap();
        assert_eq!(amounts(&back), (pb::InvoiceStatus::Paid, TOTAL, 0, 0));
        let left = api.invoice(&other.id).await.unwrap();
        assert_eq!(amounts(&left), (pb::InvoiceStatus::Open, 0, 6_000, 0));
        assert!(!left.auto_advance);
        assert_eq!(api.attachment(&second.id).await.unwrap().unwrap().invoice, invoice.id);
        assert_eq!(payments_of(&api, &other.id).await, vec![(second.id.clone(), CANCELED, Some(6_000))]);
        // Never counted twice, never lost: 100.00 paid in all.
        let total_paid: i64 = api.all_invoices().await.unwrap().iter().map(|d| d.amount_paid).sum();
        assert_eq!(total_paid, TOTAL);
        assert_eq!(story_events(&api, 11).await, [
            "invoice.finalized", "invoice.finalized",
            "invoice_payment.paid", "invoice_payment.paid", "invoice.paid",
            "invoice_payment.detached",
            "invoice_payment.paid", "invoice.paid",
            "invoice_payment.detached",
            "invoice_payment.paid", "invoice.paid",
        ][..]);
    };

    seed_004_credit_notes_on_a_partially_paid_invoice => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let notes = api.credit_notes.clone().unwrap();
        let invoice = open(&api, "cus_a", TOTAL, false).await;
        let card = api.intent("cus_a", 4_000, Some("pm_card_visa")).await.unwrap();
        api.attach(&invoice.id, &card.id, None).await.unwrap();

        // Preview: 70.00, of which 60.00 takes what is still owed and 10.00 goes back to the card.
        let params = cnpb::PreviewCreditNoteRequest { invoice: invoice.id.clone(), amount: Some(7_000), refund_amount: Some(1_000), ..Default::default() };
        let preview = notes.clone().preview_credit_note(authorized(params)).await.unwrap().into_inner();
        assert_eq!((preview.amount, preview.pre_payment_amount, preview.post_payment_amount), (7_000, 6_000, 1_000));
        assert_eq!(preview.r#type, cnpb::CreditNoteType::Mixed as i32);
        assert!(api.credit_notes_of(&invoice.id).await.unwrap().is_empty(), "a preview creates nothing");
        assert_eq!(amounts(&api.invoice(&invoice.id).await.unwrap()), (pb::InvoiceStatus::Open, 4_000, 6_000, 0));

        let note = api.credit_note(&invoice.id, 7_000, 1_000, 0, None).await.unwrap();
        assert_eq!((note.amount, note.pre_payment_amount, note.post_payment_amount), (7_000, 6_000, 1_000));
        assert_eq!(note.r#type, cnpb::CreditNoteType::Mixed as i32);
        assert_eq!(note.status, cnpb::CreditNoteStatus::Issued as i32);
        assert_eq!(note.number, format!("{}-CN-01", invoice.number.clone().unwrap()));
        let credited = api.invoice(&invoice.id).await.unwrap();
        assert_eq!(amounts(&credited), (pb::InvoiceStatus::Paid, 4_000, 0, 0));
        assert_eq!((credited.pre_payment_credit_notes_amount, credited.post_payment_credit_notes_amount), (6_000, 1_000));
        let refunds = api.refunds_of(&card.id).await.unwrap();
        assert_eq!(refunds.iter().map(|r| r.amount).collect::<Vec<_>>(), [1_000]);

        // A pre-payment note on an unpaid invoice, voided: the invoice owes the total again.
        let unpaid = open(&api, "cus_a", TOTAL, false).await;
        let pre = api.credit_note(&unpaid.id, 2_500, 0, 0, None).await.unwrap();
        assert_eq!((pre.r#type, pre.pre_payment_amount, pre.post_payment_amount), (cnpb::CreditNoteType::PrePayment as i32, 2_500, 0));
        assert_eq!(amounts(&api.invoice(&unpaid.id).await.unwrap()), (pb::InvoiceStatus::Open, 0, 7_500, 0));
        let voided = api.void_credit_note(&pre.id, None).await.unwrap();
        assert_eq!(voided.status, cnpb::CreditNoteStatus::Void as i32);
        assert!(voided.voided_at.is_some());
        let restored = api.invoice(&unpaid.id).await.unwrap();
        assert_eq!(amounts(&restored), (pb::InvoiceStatus::Open, 0, TOTAL, 0));
        assert_eq!(restored.pre_payment_credit_notes_amount, 0);

        // A post-payment note credited to the customer's balance on the paid invoice.
        let post = api.credit_note(&invoice.id, 2_000, 0, 2_000, None).await.unwrap();
        assert_eq!((post.r#type, post.pre_payment_amount, post.post_payment_amount), (cnpb::CreditNoteType::PostPayment as i32, 0, 2_000));
        assert_eq!(api.balance("cus_a").await.unwrap(), -2_000);
        // The notes never exceed the invoice total.
        let status = api.credit_note(&invoice.id, 1_001, 0, 1_001, None).await.unwrap_err();
        assert_eq!(settle_testkit::reason(&status), "credit_note_exceeds_invoice", "{}", status.message());
        let events = eventually(Duration::from_secs(10), || async {
            let types = Api::event_types(api.credit_note_events.as_ref().unwrap()).await.unwrap();
            (types.len() >= 4).then_some(types)
        })
        .await
        .expect("credit-note events");
        assert_eq!(events, ["credit_note.created", "credit_note.created", "credit_note.voided", "credit_note.created"]);
    };
}
