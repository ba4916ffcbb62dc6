//! Refusals end to end, on SQLite and PostgreSQL, with the three real services: every bad input of
//! AttachPayment, DetachPayment, ReapplyPayment and PayInvoice answers its exact code, reason and
//! (where the service names one) field, and leaves both stores as they were — invoices, invoice
//! payments, intents, attachments, event counts and live sagas, read over the API before and after.
//! Also: a refused void / out-of-band payment / PayInvoice leaves the invoice's default
//! PaymentIntent payable, and concurrent PayInvoice calls charge the customer once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::future::Future;
use std::time::Duration;

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use settle_testkit::{authorized, reason, violated_fields};
use settle_tests::Suite;
use settle_tests::api::Api;
use tonic::{Code, Status};

const TOTAL: i64 = 10_000;

fn api(suite: &Suite) -> Api {
    Api::new(suite.invoices.channel(), suite.payments.channel())
        .with_credit_notes(suite.credit_notes.channel())
}

/// An open invoice of `total` in usd for `customer`.
async fn open(api: &Api, customer: &str, total: i64, automatic: bool) -> pb::Invoice {
    let draft = api.draft(customer, total, automatic).await.unwrap();
    api.finalize(&draft.id, None).await.unwrap()
}

/// A PaymentIntent in `currency`, confirmed with `payment_method` if given.
async fn intent_in(
    api: &Api,
    customer: &str,
    amount: i64,
    currency: &str,
    pm: Option<&str>,
) -> ppb::PaymentIntent {
    let request = ppb::CreatePaymentIntentRequest {
        amount,
        currency: currency.into(),
        customer: Some(customer.into()),
        payment_method: pm.map(str::to_owned),
        confirm: pm.map(|_| true),
        ..Default::default()
    };
    api.intents.clone().create_payment_intent(authorized(request)).await.unwrap().into_inner()
}

async fn get_intent(api: &Api, id: &str) -> ppb::PaymentIntent {
    let request = ppb::GetPaymentIntentRequest { id: id.to_owned(), ..Default::default() };
    api.intents.clone().get_payment_intent(authorized(request)).await.unwrap().into_inner()
}

/// Everything a refusal must leave alone, as the API shows it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    invoices: Vec<pb::Invoice>,
    invoice_payments: Vec<pb::InvoicePayment>,
    intents: Vec<ppb::PaymentIntent>,
    attachments: Vec<Option<ppb::Attachment>>,
    invoice_events: usize,
    payment_events: usize,
    live_sagas: Vec<String>,
}

async fn snapshot(api: &Api, records: &[&str]) -> Snapshot {
    let invoices = api.all_invoices().await.unwrap();
    let mut invoice_payments = Vec::new();
    for invoice in &invoices {
        invoice_payments.extend(api.invoice_payments(&invoice.id).await.unwrap());
    }
    let intents = api.all_intents(None).await.unwrap();
    let mut attachments = Vec::new();
    for payment in intents.iter().map(|i| i.id.as_str()).chain(records.iter().copied()) {
        attachments.push(api.attachment(payment).await.unwrap());
    }
    let mut live_sagas: Vec<String> = api.live_sagas().await.unwrap().into_iter().map(|s| s.id).collect();
    live_sagas.sort();
    Snapshot {
        invoices,
        invoice_payments,
        intents,
        attachments,
        invoice_events: Api::all_events(&api.invoice_events).await.unwrap().len(),
        payment_events: Api::all_events(&api.payment_events).await.unwrap().len(),
        live_sagas,
    }
}

/// A snapshot once nothing moves any more (events are sequenced and sagas finish after commit).
async fn settled(api: &Api, records: &[&str]) -> Snapshot {
    let mut last = snapshot(api, records).await;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let next = snapshot(api, records).await;
        if next == last {
            return next;
        }
        last = next;
    }
    panic!("the stores did not settle: {last:#?}");
}

/// Runs `call`, which must be refused with `code` and `expected` (naming `field`, if given), and
/// checks that both stores are exactly as before it.
async fn refused<T: std::fmt::Debug>(
    api: &Api,
    records: &[&str],
    what: &str,
    call: impl Future<Output = Result<T, Status>>,
    code: Code,
    expected: &str,
    field: Option<&str>,
) -> Status {
    let before = settled(api, records).await;
    let status = call.await.expect_err(what);
    assert_eq!((status.code(), reason(&status).as_str()), (code, expected), "{what}: {}", status.message());
    if let Some(field) = field {
        assert!(violated_fields(&status).iter().any(|f| f == field), "{what}: no {field} in {status:?}");
    }
    let after = settled(api, records).await;
    assert_eq!(before, after, "{what} changed the stores");
    status
}

/// The invoice's default invoice payment and its PaymentIntent.
async fn default_of(api: &Api, invoice: &str) -> (pb::InvoicePayment, ppb::PaymentIntent) {
    let payment = api.invoice_payments(invoice).await.unwrap().into_iter().find(|p| p.is_default).unwrap();
    let intent = payment.payment.as_ref().and_then(|p| p.payment_intent.clone()).unwrap();
    let intent = get_intent(api, &intent).await;
    (payment, intent)
}

/// The invoice's default PaymentIntent is still waiting for the customer: open invoice payment,
/// intent `requires_payment_method`, confirmation secret its client secret.
async fn assert_default_payable(api: &Api, invoice: &str, intent: &str) {
    let (payment, current) = default_of(api, invoice).await;
    assert_eq!(current.id, intent);
    assert_eq!(payment.status, pb::InvoicePaymentStatus::Open as i32);
    assert_eq!(current.status, ppb::PaymentIntentStatus::RequiresPaymentMethod as i32);
    let secret =
        api.invoice_with_secret(invoice).await.unwrap().confirmation_secret.expect("confirmation_secret");
    assert_eq!(Some(secret.client_secret), current.client_secret);
    assert_eq!(api.invoice(invoice).await.unwrap().status, Some(pb::InvoiceStatus::Open as i32));
}

backend_tests! {
    attach_refusals_change_nothing => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let invoice = open(&api, "cus_a", TOTAL, false).await;
        let other = open(&api, "cus_a", TOTAL, false).await;
        let foreign = open(&api, "cus_b", TOTAL, false).await;
        let paid = open(&api, "cus_a", 1_000, false).await;
        let draft = api.draft("cus_a", TOTAL, false).await.unwrap();
        let voided = open(&api, "cus_a", TOTAL, false).await;
        api.void(&voided.id, None).await.unwrap();
        let card = api.intent("cus_a", 1_000, Some("pm_card_visa")).await.unwrap();
        api.attach(&paid.id, &card.id, None).await.unwrap();
        let applied = api.intent("cus_a", 2_000, Some("pm_card_visa")).await.unwrap();
        api.attach(&other.id, &applied.id, None).await.unwrap();
        let free = api.intent("cus_a", 3_000, Some("pm_card_visa")).await.unwrap();
        let too_big = api.intent("cus_a", TOTAL + 1, Some("pm_card_visa")).await.unwrap();
        let euros = intent_in(&api, "cus_a", 1_000, "eur", Some("pm_card_visa")).await;
        let unconfirmed = api.intent("cus_a", 1_000, None).await.unwrap();
        let canceled = api.intent("cus_a", 1_000, None).await.unwrap();
        let cancel = ppb::CancelPaymentIntentRequest { id: canceled.id.clone(), cancellation_reason: None };
        api.intents.clone().cancel_payment_intent(authorized(cancel)).await.unwrap();
        let declined = api.intent("cus_a", 1_000, Some("pm_card_chargeDeclined")).await.unwrap();
        let record = api.record("cus_b", 1_000, true).await.unwrap();
        let records = [record.id.as_str()];

        let nf = Code::NotFound;
        let fp = Code::FailedPrecondition;
        refused(&api, &records, "unknown invoice", api.attach("in_doesnotexist", &free.id, None), nf, "resource_missing", Some("id")).await;
        refused(&api, &records, "malformed invoice id", api.attach("inv_123", &free.id, None), nf, "resource_missing", Some("id")).await;
        refused(&api, &records, "unknown intent", api.attach(&invoice.id, "pi_doesnotexist", None), nf, "resource_missing", None).await;
        refused(&api, &records, "malformed intent id", api.attach(&invoice.id, "ch_123", None), nf, "resource_missing", Some("payment_intent")).await;
        refused(&api, &records, "unknown record", api.attach_record(&invoice.id, "pr_doesnotexist", None), nf, "resource_missing", None).await;
        refused(&api, &records, "malformed record id", api.attach_record(&invoice.id, "py_123", None), nf, "resource_missing", Some("payment_record")).await;
        let mut client = api.invoices.clone();
        let missing = client.attach_payment(authorized(pb::AttachPaymentRequest { id: invoice.id.clone(), payment: None, expand: vec![] }));
        refused(&api, &records, "no payment", missing, Code::InvalidArgument, "parameter_missing", Some("payment_intent")).await;
        refused(&api, &records, "another customer's invoice", api.attach(&foreign.id, &free.id, None), fp, "customer_mismatch", None).await;
        refused(&api, &records, "another customer's record", api.attach_record(&invoice.id, &record.id, None), fp, "customer_mismatch", None).await;
        refused(&api, &records, "another currency", api.attach(&invoice.id, &euros.id, None), fp, "currency_mismatch", None).await;
        refused(&api, &records, "a draft", api.attach(&draft.id, &free.id, None), fp, "invoice_not_open", Some("id")).await;
        refused(&api, &records, "a void invoice", api.attach(&voided.id, &free.id, None), fp, "invoice_not_open", Some("id")).await;
        refused(&api, &records, "a paid invoice", api.attach(&paid.id, &free.id, None), fp, "invoice_not_open", Some("id")).await;
        refused(&api, &records, "attached elsewhere", api.attach(&invoice.id, &applied.id, None), fp, "payment_already_attached", Some("payment_intent")).await;
        refused(&api, &records, "attached here already", api.attach(&other.id, &applied.id, None), fp, "payment_already_attached", Some("payment_intent")).await;
        refused(&api, &records, "more than is unpaid", api.attach(&invoice.id, &too_big.id, None), fp, "amount_too_large", None).await;
        refused(&api, &records, "canceled", api.attach(&invoice.id, &canceled.id, None), fp, "payment_not_countable", None).await;
        refused(&api, &records, "declined", api.attach(&invoice.id, &declined.id, None), fp, "payment_not_countable", None).await;

        // An uncollectible invoice still takes payments, and a payment not yet succeeded (still to
        // be confirmed, or processing) is applied as an open invoice payment that counts once it
        // succeeds (Stripe: "when the PaymentIntent reaches succeeded").
        let uncollectible = open(&api, "cus_a", TOTAL, false).await;
        api.invoices.clone().mark_invoice_uncollectible(authorized(pb::MarkInvoiceUncollectibleRequest { id: uncollectible.id.clone(), ..Default::default() })).await.unwrap();
        let taken = api.attach(&uncollectible.id, &free.id, None).await.unwrap();
        assert_eq!(taken.amount_paid, 3_000);
        let pending = api.intent("cus_a", 1_000, Some("pm_us_bank_account")).await.unwrap();
        let applied_pending = api.attach(&invoice.id, &pending.id, None).await.unwrap();
        assert_eq!(applied_pending.amount_paid, 0);
        let with_unconfirmed = api.attach(&invoice.id, &unconfirmed.id, None).await.unwrap();
        assert_eq!(with_unconfirmed.amount_paid, 0);
        let open_payments = api.invoice_payments(&invoice.id).await.unwrap();
        assert_eq!(open_payments.len(), 2);
        assert!(open_payments.iter().all(|p| p.status == pb::InvoicePaymentStatus::Open as i32));
    };

    detach_and_reapply_refusals_change_nothing => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let source = open(&api, "cus_a", TOTAL, false).await;
        let target = open(&api, "cus_a", TOTAL, false).await;
        let small = open(&api, "cus_a", 1_000, false).await;
        let foreign = open(&api, "cus_b", TOTAL, false).await;
        let draft = api.draft("cus_a", TOTAL, false).await.unwrap();
        let voided = open(&api, "cus_a", TOTAL, false).await;
        api.void(&voided.id, None).await.unwrap();
        let applied = api.intent("cus_a", 4_000, Some("pm_card_visa")).await.unwrap();
        api.attach(&source.id, &applied.id, None).await.unwrap();
        let free = api.intent("cus_a", 3_000, Some("pm_card_visa")).await.unwrap();
        let filler = api.intent("cus_a", 1_000, Some("pm_card_visa")).await.unwrap();
        let paid = open(&api, "cus_a", 1_000, false).await;
        api.attach(&paid.id, &filler.id, None).await.unwrap();
        let records: [&str; 0] = [];
        let nf = Code::NotFound;
        let fp = Code::FailedPrecondition;

        // DetachPayment
        refused(&api, &records, "detach: unknown invoice", api.detach("in_doesnotexist", &applied.id, None), nf, "resource_missing", Some("id")).await;
        refused(&api, &records, "detach: malformed invoice id", api.detach("applied", &applied.id, None), nf, "resource_missing", Some("id")).await;
        refused(&api, &records, "detach: malformed intent id", api.detach(&source.id, "pay_1", None), nf, "resource_missing", Some("payment_intent")).await;
        refused(&api, &records, "detach: unknown intent", api.detach(&source.id, "pi_doesnotexist", None), fp, "payment_not_attached", None).await;
        refused(&api, &records, "detach: not attached", api.detach(&source.id, &free.id, None), fp, "payment_not_attached", None).await;
        refused(&api, &records, "detach: attached to another invoice", api.detach(&target.id, &applied.id, None), fp, "payment_not_attached", None).await;
        refused(&api, &records, "detach: a draft", api.detach(&draft.id, &applied.id, None), fp, "state_unsupported", None).await;
        refused(&api, &records, "detach: a void invoice", api.detach(&voided.id, &applied.id, None), fp, "state_unsupported", None).await;
        let mut client = api.invoices.clone();
        let by_invoice_payment = client.detach_payment(authorized(pb::DetachPaymentRequest {
            id: source.id.clone(),
            payment: Some(pb::detach_payment_request::Payment::InvoicePayment("inpay_doesnotexist".into())),
            expand: vec![],
        }));
        refused(&api, &records, "detach: unknown invoice payment", by_invoice_payment, nf, "resource_missing", Some("invoice_payment")).await;

        // ReapplyPayment
        refused(&api, &records, "reapply: unknown target", api.reapply("in_doesnotexist", &applied.id, None), nf, "resource_missing", Some("id")).await;
        refused(&api, &records, "reapply: malformed intent id", api.reapply(&target.id, "pm_card_visa", None), nf, "resource_missing", Some("payment_intent")).await;
        refused(&api, &records, "reapply: not attached", api.reapply(&target.id, &free.id, None), fp, "payment_not_attached", None).await;
        refused(&api, &records, "reapply: onto the same invoice", api.reapply(&source.id, &applied.id, None), fp, "payment_already_attached", None).await;
        refused(&api, &records, "reapply: another customer", api.reapply(&foreign.id, &applied.id, None), fp, "customer_mismatch", None).await;
        refused(&api, &records, "reapply: a draft", api.reapply(&draft.id, &applied.id, None), fp, "invoice_not_open", Some("id")).await;
        refused(&api, &records, "reapply: a void invoice", api.reapply(&voided.id, &applied.id, None), fp, "invoice_not_open", Some("id")).await;
        refused(&api, &records, "reapply: a paid invoice", api.reapply(&paid.id, &applied.id, None), fp, "invoice_not_open", Some("id")).await;
        refused(&api, &records, "reapply: more than is unpaid", api.reapply(&small.id, &applied.id, None), fp, "amount_too_large", None).await;

        // The payment is still where it was, counted once.
        let source_now = api.invoice(&source.id).await.unwrap();
        assert_eq!((source_now.amount_paid, source_now.amount_remaining), (4_000, 6_000));
        assert_eq!(api.attachment(&applied.id).await.unwrap().unwrap().invoice, source.id);
    };

    pay_refusals_change_nothing => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let voided = open(&api, "cus_a", TOTAL, false).await;
        api.void(&voided.id, None).await.unwrap();
        let paid = open(&api, "cus_a", TOTAL, false).await;
        api.pay(&paid.id, None).await.unwrap();
        let invoice = open(&api, "cus_a", TOTAL, false).await;
        let records: [&str; 0] = [];
        let nf = Code::NotFound;
        let fp = Code::FailedPrecondition;
        refused(&api, &records, "pay: unknown invoice", api.pay("in_doesnotexist", None), nf, "resource_missing", Some("id")).await;
        refused(&api, &records, "pay: malformed invoice id", api.pay("cus_a", None), nf, "resource_missing", Some("id")).await;
        refused(&api, &records, "pay: a void invoice", api.pay(&voided.id, None), fp, "invoice_not_open", Some("id")).await;
        refused(&api, &records, "pay: a paid invoice", api.pay(&paid.id, None), fp, "invoice_not_open", Some("id")).await;
        refused(&api, &records, "pay: no payment method", api.pay_with(&invoice.id, None, None), Code::InvalidArgument, "parameter_missing", Some("payment_method")).await;
        refused(&api, &records, "pay out of band: a paid invoice", api.pay_out_of_band(&paid.id, None), fp, "invoice_not_open", None).await;
        refused(&api, &records, "pay out of band: a void invoice", api.pay_out_of_band(&voided.id, None), fp, "invoice_not_open", None).await;
        let mut client = api.invoices.clone();
        let both = client.pay_invoice(authorized(pb::PayInvoiceRequest { id: invoice.id.clone(), paid_out_of_band: Some(true), payment_method: Some("pm_card_visa".into()), ..Default::default() }));
        refused(&api, &records, "pay out of band with a payment method", both, Code::InvalidArgument, "parameters_exclusive", Some("payment_method")).await;
        let intents = api.all_intents(Some("cus_a")).await.unwrap();
        assert_eq!(intents.len(), 1, "only the paid invoice's charge: {intents:?}");
    };

    refusals_leave_the_default_payment_intent_payable => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let invoice = open(&api, "cus_a", TOTAL, true).await;
        let (_, default) = default_of(&api, &invoice.id).await;
        assert_default_payable(&api, &invoice.id, &default.id).await;

        // A key used for another request: refused before anything is canceled.
        let elsewhere = open(&api, "cus_a", TOTAL, false).await;
        api.void(&elsewhere.id, Some("key-1")).await.unwrap();
        let status = api.void(&invoice.id, Some("key-1")).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, "idempotency_error"));
        assert_default_payable(&api, &invoice.id, &default.id).await;
        let status = api.pay_out_of_band(&invoice.id, Some("key-1")).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, "idempotency_error"));
        assert_default_payable(&api, &invoice.id, &default.id).await;
        // The replay of the void answers the stored response and cancels nothing either.
        let replayed = api.void(&elsewhere.id, Some("key-1")).await.unwrap();
        assert_eq!(replayed.status, Some(pb::InvoiceStatus::Void as i32));

        // A payment applied: void refused; the default (now for more than is owed) stays open.
        let part = api.intent("cus_a", 4_000, Some("pm_card_visa")).await.unwrap();
        api.attach(&invoice.id, &part.id, None).await.unwrap();
        let status = api.void(&invoice.id, None).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::FailedPrecondition, "state_unsupported"), "{}", status.message());
        assert_default_payable(&api, &invoice.id, &default.id).await;

        // PayInvoice with nothing to pay with: refused before the stale default is replaced.
        let status = api.pay_with(&invoice.id, None, None).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, "parameter_missing"));
        assert_default_payable(&api, &invoice.id, &default.id).await;

        // A credit note: void refused, the default still payable.
        let credited = open(&api, "cus_c", TOTAL, true).await;
        let (_, credited_default) = default_of(&api, &credited.id).await;
        api.credit_note(&credited.id, 1_000, 0, 0, None).await.unwrap();
        let status = api.void(&credited.id, None).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::FailedPrecondition, "state_unsupported"), "{}", status.message());
        let (payment, current) = default_of(&api, &credited.id).await;
        assert_eq!(current.id, credited_default.id);
        assert_eq!(payment.status, pb::InvoicePaymentStatus::Open as i32);
        assert_eq!(current.status, ppb::PaymentIntentStatus::RequiresPaymentMethod as i32);

        // What is not refused still cancels it: voiding an invoice with only its default payment.
        let plain = open(&api, "cus_d", TOTAL, true).await;
        let (_, plain_default) = default_of(&api, &plain.id).await;
        let voided = api.void(&plain.id, None).await.unwrap();
        assert_eq!(voided.status, Some(pb::InvoiceStatus::Void as i32));
        assert_eq!(get_intent(&api, &plain_default.id).await.status, ppb::PaymentIntentStatus::Canceled as i32);
    };

    pay_refuses_to_confirm_a_default_payment_already_processing => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let invoice = open(&api, "cus_a", TOTAL, true).await;
        let (_, default) = default_of(&api, &invoice.id).await;
        // The customer pays the confirmation secret with a bank debit: processing.
        let confirm = ppb::ConfirmPaymentIntentRequest { id: default.id.clone(), payment_method: Some("pm_us_bank_account".into()), ..Default::default() };
        let processing = api.intents.clone().confirm_payment_intent(authorized(confirm)).await.unwrap().into_inner();
        assert_eq!(processing.status, ppb::PaymentIntentStatus::Processing as i32);
        let before = settled(&api, &[]).await;
        let status = api.pay(&invoice.id, None).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::FailedPrecondition, "state_unsupported"), "{}", status.message());
        assert!(status.message().contains(&default.id), "{}", status.message());
        assert_eq!(settled(&api, &[]).await, before);
        // It settles and pays the invoice.
        api.settle(&default.id, true).await.unwrap();
        let paid = settle_tests::cluster::eventually(Duration::from_secs(10), || async {
            let doc = api.invoice(&invoice.id).await.unwrap();
            (doc.status == Some(pb::InvoiceStatus::Paid as i32)).then_some(doc)
        }).await.expect("paid once the debit settles");
        assert_eq!(paid.amount_paid, TOTAL);
    };

    concurrent_pay_invoice_calls_charge_once => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        for (customer, automatic) in [("cus_send", false), ("cus_auto", true)] {
            let invoice = open(&api, customer, TOTAL, automatic).await;
            let calls = (0..16).map(|i| {
                let api = api.clone();
                let id = invoice.id.clone();
                tokio::spawn(async move { api.pay(&id, Some(&format!("pay-{id}-{i}"))).await })
            });
            let mut succeeded = 0;
            for call in calls.collect::<Vec<_>>() {
                match call.await.unwrap() {
                    Ok(doc) => {
                        succeeded += 1;
                        assert_eq!(doc.status, Some(pb::InvoiceStatus::Paid as i32));
                    }
                    Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{customer}: {status:?}"),
                }
            }
            assert_eq!(succeeded, 1, "{customer}: exactly one PayInvoice succeeds");
            let charged: Vec<_> = api.all_intents(Some(customer)).await.unwrap().into_iter()
                .filter(|i| i.status == ppb::PaymentIntentStatus::Succeeded as i32).collect();
            assert_eq!(charged.len(), 1, "{customer}: charged once: {charged:?}");
            assert_eq!(charged[0].amount_received, TOTAL);
            let doc = api.invoice(&invoice.id).await.unwrap();
            assert_eq!((doc.amount_paid, doc.amount_remaining), (TOTAL, 0), "{customer}");
            assert!(settle_tests::cluster::eventually(Duration::from_secs(10), || async {
                api.live_sagas().await.unwrap().is_empty().then_some(())
            }).await.is_some(), "{customer}: every saga ended");
        }
    };
}
