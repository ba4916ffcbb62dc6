//! What applying, paying and unapplying a payment does to an invoice, in one place: the guards of
//! Stripe's payment-application guide, the invoice payment's status, the invoice's amounts and
//! status, and the events Stripe emits for each. Callers hold the invoice's row lock and write the
//! result in one transaction with [`persist`].

use settle_money::{Amount, Currency};
use settle_platform::db::Tx;
use settle_platform::outbox::{self, EventOrigin};
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use tonic::Code;

use crate::domain::amounts::InvoiceAmounts;
use crate::domain::balance::TransactionType;
use crate::domain::invoice::{self, Settlement};
use crate::model::lines::EMBEDDED_LINES;
use crate::model::{self, ModelError};
use crate::store::{balance, invoice_lines, invoice_payments, invoices};

/// Why an invoice refused a payment: answered to the caller as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub reason: ErrorReason,
    pub message: String,
    pub field: Option<&'static str>,
}

impl Refusal {
    fn precondition(reason: ErrorReason, field: Option<&'static str>, message: String) -> Self {
        Refusal { code: Code::FailedPrecondition, reason, message, field }
    }
}

/// What the invoice needs to know about a payment to apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFacts {
    pub customer: String,
    pub currency: String,
    /// What the payment contributes (received or guaranteed once succeeded, else its amount).
    pub amount: Amount,
    pub succeeded: bool,
}

/// The guards of the payment-application guide: the invoice takes payments, the same customer and
/// currency, and the whole payment no larger than what is still unpaid.
pub fn guard(doc: &pb::Invoice, payment: &PaymentFacts) -> Result<(), Refusal> {
    let status = model::status(doc)
        .map_err(|e| Refusal::precondition(ErrorReason::InternalError, None, e.to_string()))?;
    if !status.takes_payments() {
        return Err(Refusal::precondition(
            ErrorReason::InvoiceNotOpen,
            Some("id"),
            format!(
                "Invoice {} is {}; payments can only be applied to open or uncollectible invoices.",
                doc.id,
                status.as_str()
            ),
        ));
    }
    if payment.customer != doc.customer {
        return Err(Refusal::precondition(
            ErrorReason::CustomerMismatch,
            None,
            format!("The payment belongs to {}, the invoice to {}.", payment.customer, doc.customer),
        ));
    }
    if payment.currency != doc.currency {
        return Err(Refusal::precondition(
            ErrorReason::CurrencyMismatch,
            None,
            format!("The payment is in {}, the invoice in {}.", payment.currency, doc.currency),
        ));
    }
    if payment.amount.get() > doc.amount_remaining {
        return Err(Refusal::precondition(
            ErrorReason::AmountTooLarge,
            None,
            format!(
                "The payment of {} is larger than the invoice's unpaid amount of {}; a payment is applied whole.",
                money(payment.amount.get(), &doc.currency),
                money(doc.amount_remaining, &doc.currency)
            ),
        ));
    }
    Ok(())
}

/// The amount guard once more, with what credit notes being issued have reserved of the unpaid
/// amount (the pre-payment parts of the invoice's reserved credits, `reserved_credits`) taken out:
/// when they are applied they take that part, so a payment may only take the rest.
pub fn guard_reserved_credits(
    doc: &pb::Invoice,
    payment: &PaymentFacts,
    reserved_credits: i64,
) -> Result<(), Refusal> {
    let room = doc.amount_remaining.saturating_sub(reserved_credits).max(0);
    if reserved_credits > 0 && payment.amount.get() > room {
        return Err(Refusal::precondition(
            ErrorReason::AmountTooLarge,
            None,
            format!(
                "The payment of {} is larger than the invoice's unpaid amount of {} less the {} that credit notes being issued will take; a payment is applied whole.",
                money(payment.amount.get(), &doc.currency),
                money(doc.amount_remaining, &doc.currency),
                money(reserved_credits, &doc.currency)
            ),
        ));
    }
    Ok(())
}

/// `12.34 USD` for messages.
fn money(minor: i64, currency: &str) -> String {
    let exponent = Currency::parse(currency).map_or(2, Currency::exponent);
    let upper = currency.to_ascii_uppercase();
    if exponent == 0 {
        return format!("{minor} {upper}");
    }
    let scale = 10i64.pow(u32::from(exponent));
    format!(
        "{}{}.{:0width$} {upper}",
        if minor < 0 { "-" } else { "" },
        (minor / scale).abs(),
        (minor % scale).abs(),
        width = usize::from(exponent)
    )
}

/// An event to write with the change.
#[derive(Debug, Clone)]
pub enum Event {
    Invoice { kind: &'static str, previous: Option<serde_json::Value> },
    InvoicePayment { kind: &'static str, payment: Box<pb::InvoicePayment> },
}

/// The result of a money change, to persist with [`persist`].
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<Event>,
    /// Change of the invoice's overpayment, to credit (positive) or take back from (negative) the
    /// customer's balance as `invoice_overpaid`.
    pub overpayment_credit: Amount,
}

fn previous_attributes(before: &pb::Invoice, after: &pb::Invoice) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let mut put = |name: &str, old: i64, new: i64| {
        if old != new {
            map.insert(name.to_owned(), old.into());
        }
    };
    put("amount_paid", before.amount_paid, after.amount_paid);
    put("amount_remaining", before.amount_remaining, after.amount_remaining);
    put("amount_overpaid", before.amount_overpaid, after.amount_overpaid);
    if before.status != after.status {
        let name = model::status_from_pb(before.status).map_or("draft", |s| s.as_str());
        map.insert("status".to_owned(), name.into());
    }
    if before.auto_advance != after.auto_advance {
        map.insert("auto_advance".to_owned(), before.auto_advance.into());
    }
    serde_json::Value::Object(map)
}

/// Recomputes after `delta` more (or less) was paid by invoice payments, moves the status, and
/// collects Stripe's invoice events for it.
fn money_changed(
    doc: &mut pb::Invoice,
    delta: Amount,
    now: i64,
    effects: &mut Effects,
) -> Result<InvoiceAmounts, ModelError> {
    let before = doc.clone();
    let amounts = model::add_paid_by_payments(doc, delta)?;
    let status = model::status(doc)?;
    let (next, settlement) = invoice::settle(status, &amounts);
    model::set_status(doc, next);
    let transitions = doc.status_transitions.get_or_insert_with(Default::default);
    match settlement {
        Settlement::BecamePaid => transitions.paid_at = Some(now),
        Settlement::Reopened => {
            // Stripe: unapplying a payment from a paid invoice reopens it with auto_advance off.
            transitions.paid_at = None;
            doc.auto_advance = false;
        }
        Settlement::Unchanged => {}
    }
    if delta.is_positive() {
        effects.events.push(Event::Invoice { kind: "invoice.payment_succeeded", previous: None });
    }
    if before.amount_paid != doc.amount_paid || before.status != doc.status {
        effects.events.push(Event::Invoice {
            kind: "invoice.updated",
            previous: Some(previous_attributes(&before, doc)),
        });
    }
    if settlement == Settlement::BecamePaid {
        effects.events.push(Event::Invoice { kind: "invoice.paid", previous: None });
    }
    if doc.amount_overpaid > before.amount_overpaid {
        effects.events.push(Event::Invoice { kind: "invoice.overpaid", previous: None });
    }
    effects.overpayment_credit = Amount::new(doc.amount_overpaid - before.amount_overpaid);
    Ok(amounts)
}

/// A new invoice payment for `payment` on `doc`: `paid` (and counted) when the payment already
/// succeeded, else `open` until it does.
pub fn apply(
    doc: &mut pb::Invoice,
    mut invoice_payment: pb::InvoicePayment,
    payment: &PaymentFacts,
    now: i64,
) -> Result<(pb::InvoicePayment, Effects), ModelError> {
    let mut effects = Effects::default();
    if payment.succeeded {
        invoice_payment.status = pb::InvoicePaymentStatus::Paid as i32;
        invoice_payment.amount_paid = Some(payment.amount.get());
        invoice_payment.status_transitions.get_or_insert_with(Default::default).paid_at = Some(now);
        money_changed(doc, payment.amount, now, &mut effects)?;
        effects.events.insert(
            0,
            Event::InvoicePayment {
                kind: "invoice_payment.paid",
                payment: Box::new(invoice_payment.clone()),
            },
        );
    } else {
        invoice_payment.status = pb::InvoicePaymentStatus::Open as i32;
    }
    Ok((invoice_payment, effects))
}

/// An `open` invoice payment whose payment succeeded: it counts now, for what the payment finally
/// brought in (a capture may take less than the intent's amount).
pub fn mark_paid(
    doc: &mut pb::Invoice,
    invoice_payment: &mut pb::InvoicePayment,
    amount: Amount,
    now: i64,
) -> Result<Effects, ModelError> {
    let mut effects = Effects::default();
    invoice_payment.status = pb::InvoicePaymentStatus::Paid as i32;
    invoice_payment.amount_paid = Some(amount.get());
    invoice_payment.status_transitions.get_or_insert_with(Default::default).paid_at = Some(now);
    money_changed(doc, amount, now, &mut effects)?;
    effects.events.insert(
        0,
        Event::InvoicePayment { kind: "invoice_payment.paid", payment: Box::new(invoice_payment.clone()) },
    );
    Ok(effects)
}

/// The invoice stops counting the payment (detach, or the payment was canceled): the invoice payment
/// is canceled, a paid one's amount leaves `amount_paid`, and a paid invoice reopens.
pub fn unapply(
    doc: &mut pb::Invoice,
    invoice_payment: &mut pb::InvoicePayment,
    now: i64,
    detached: bool,
) -> Result<Effects, ModelError> {
    let mut effects = Effects::default();
    let counted = if invoice_payment.status == pb::InvoicePaymentStatus::Paid as i32 {
        Amount::new(invoice_payment.amount_paid.unwrap_or(0))
    } else {
        Amount::ZERO
    };
    invoice_payment.status = pb::InvoicePaymentStatus::Canceled as i32;
    invoice_payment.status_transitions.get_or_insert_with(Default::default).canceled_at = Some(now);
    if !counted.is_zero() {
        money_changed(doc, Amount::new(-counted.get()), now, &mut effects)?;
    }
    if detached {
        effects.events.insert(
            0,
            Event::InvoicePayment {
                kind: "invoice_payment.detached",
                payment: Box::new(invoice_payment.clone()),
            },
        );
    }
    Ok(effects)
}

/// Writes the invoice, the invoice payment (new or changed) and the events in the caller's
/// transaction. Returns whether events were written (to wake the outbox sequencer after commit).
pub async fn persist(
    tx: &mut Tx,
    backend: settle_platform::db::Backend,
    origin: &EventOrigin,
    doc: &pb::Invoice,
    invoice_payment: Option<(&pb::InvoicePayment, Option<&str>)>,
    effects: &Effects,
) -> Result<bool, crate::store::StoreError> {
    invoices::update(tx, &origin.scope, doc).await?;
    if let Some((payment, new_with_saga)) = invoice_payment {
        match new_with_saga {
            Some(saga_id) => invoice_payments::insert(tx, &origin.scope, saga_id, payment).await?,
            None => invoice_payments::update(tx, &origin.scope, payment).await?,
        }
    }
    let mut wrote_events = !effects.events.is_empty();
    if !effects.overpayment_credit.is_zero() {
        // Stripe credits what was overpaid to the customer's balance; a detach takes it back.
        let credited = effects.overpayment_credit.is_positive();
        let transaction = balance::post(
            tx,
            backend,
            &balance::Posting {
                scope: &origin.scope,
                customer: &doc.customer,
                currency: &doc.currency,
                amount: -effects.overpayment_credit.get(),
                kind: TransactionType::InvoiceOverpaid,
                invoice: Some(&doc.id),
                credit_note: None,
                description: Some(if credited {
                    "Overpayment of the invoice credited to the customer's balance"
                } else {
                    "Overpayment credit taken back: a payment left the invoice"
                }),
                metadata: Default::default(),
            },
        )
        .await?;
        outbox::append(
            tx,
            backend,
            origin,
            "customer_balance_transaction.created",
            &transaction.id,
            &transaction,
            None,
        )
        .await?;
        wrote_events = true;
    }
    // Invoice events carry the invoice as the API shows it, with its first lines.
    let mut rendered: Option<pb::Invoice> = None;
    for event in &effects.events {
        match event {
            Event::Invoice { kind, previous } => {
                if rendered.is_none() {
                    let (data, has_more) =
                        invoice_lines::first(&mut **tx, &origin.scope, &doc.id, EMBEDDED_LINES).await?;
                    let mut with_lines = doc.clone();
                    with_lines.lines = Some(pb::InvoiceLineItemList {
                        data,
                        has_more,
                        object: "list".to_owned(),
                        url: format!("/v1/invoices/{}/lines", doc.id),
                    });
                    rendered = Some(with_lines);
                }
                let shown = rendered.as_ref().unwrap_or(doc);
                outbox::append(tx, backend, origin, kind, &doc.id, shown, previous.as_ref()).await?;
            }
            Event::InvoicePayment { kind, payment } => {
                outbox::append(tx, backend, origin, kind, &payment.id, payment.as_ref(), None).await?;
            }
        }
    }
    Ok(wrote_events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::invoice::InvoiceStatus;

    fn open_invoice(total: i64) -> pb::Invoice {
        let mut doc = pb::Invoice {
            id: "in_1".into(),
            customer: "cus_a".into(),
            currency: "usd".into(),
            subtotal: total,
            ..Default::default()
        };
        model::set_status(&mut doc, InvoiceStatus::Open);
        model::recompute(&mut doc).unwrap();
        doc
    }

    fn facts(amount: i64, succeeded: bool) -> PaymentFacts {
        PaymentFacts {
            customer: "cus_a".into(),
            currency: "usd".into(),
            amount: Amount::new(amount),
            succeeded,
        }
    }

    fn new_payment() -> pb::InvoicePayment {
        pb::InvoicePayment { id: "inpay_1".into(), amount_requested: 0, ..Default::default() }
    }

    #[test]
    fn guards_refuse_with_the_reason() {
        let doc = open_invoice(1_000);
        assert!(guard(&doc, &facts(1_000, true)).is_ok());
        assert_eq!(guard(&doc, &facts(1_001, true)).unwrap_err().reason, ErrorReason::AmountTooLarge);
        let mut other = facts(10, true);
        other.customer = "cus_b".into();
        assert_eq!(guard(&doc, &other).unwrap_err().reason, ErrorReason::CustomerMismatch);
        other = facts(10, true);
        other.currency = "eur".into();
        assert_eq!(guard(&doc, &other).unwrap_err().reason, ErrorReason::CurrencyMismatch);
        let mut paid = doc.clone();
        model::set_status(&mut paid, InvoiceStatus::Paid);
        assert_eq!(guard(&paid, &facts(10, true)).unwrap_err().reason, ErrorReason::InvoiceNotOpen);
    }

    #[test]
    fn credits_being_issued_keep_their_part_of_what_remains() {
        let doc = open_invoice(1_000);
        assert!(guard_reserved_credits(&doc, &facts(1_000, true), 0).is_ok());
        assert!(guard_reserved_credits(&doc, &facts(400, false), 600).is_ok());
        let refusal = guard_reserved_credits(&doc, &facts(401, true), 600).unwrap_err();
        assert_eq!((refusal.code, refusal.reason), (Code::FailedPrecondition, ErrorReason::AmountTooLarge));
        assert!(refusal.message.contains("less the 6.00 USD"), "{}", refusal.message);
        assert!(guard_reserved_credits(&doc, &facts(1, true), 1_500).is_err(), "nothing is left");
    }

    #[test]
    fn a_succeeded_payment_counts_at_once_and_pays_the_invoice() {
        let mut doc = open_invoice(1_000);
        let (payment, effects) = apply(&mut doc, new_payment(), &facts(1_000, true), 7).unwrap();
        assert_eq!(
            (payment.status, payment.amount_paid),
            (pb::InvoicePaymentStatus::Paid as i32, Some(1_000))
        );
        assert_eq!(model::status(&doc).unwrap(), InvoiceStatus::Paid);
        assert_eq!(doc.status_transitions.unwrap().paid_at, Some(7));
        let kinds: Vec<&str> = effects
            .events
            .iter()
            .map(|e| match e {
                Event::Invoice { kind, .. } | Event::InvoicePayment { kind, .. } => *kind,
            })
            .collect();
        assert_eq!(
            kinds,
            ["invoice_payment.paid", "invoice.payment_succeeded", "invoice.updated", "invoice.paid"]
        );
    }

    #[test]
    fn pending_payments_wait_then_can_overpay() {
        let mut doc = open_invoice(1_000);
        let (mut first, effects) = apply(&mut doc, new_payment(), &facts(800, false), 1).unwrap();
        assert!(effects.events.is_empty());
        let (mut second, _) = apply(&mut doc, new_payment(), &facts(800, false), 1).unwrap();
        assert_eq!(doc.amount_remaining, 1_000, "pending payments do not count yet");
        mark_paid(&mut doc, &mut first, Amount::new(800), 2).unwrap();
        let effects = mark_paid(&mut doc, &mut second, Amount::new(800), 3).unwrap();
        assert_eq!((doc.amount_paid, doc.amount_remaining, doc.amount_overpaid), (1_600, 0, 600));
        assert_eq!(effects.overpayment_credit, Amount::new(600));
        assert!(effects.events.iter().any(|e| matches!(e, Event::Invoice { kind: "invoice.overpaid", .. })));
    }

    #[test]
    fn unapplying_a_payment_reopens_a_paid_invoice_without_auto_advance() {
        let mut doc = open_invoice(1_000);
        doc.auto_advance = true;
        let (mut payment, _) = apply(&mut doc, new_payment(), &facts(1_000, true), 1).unwrap();
        let effects = unapply(&mut doc, &mut payment, 2, true).unwrap();
        assert_eq!(model::status(&doc).unwrap(), InvoiceStatus::Open);
        assert!(!doc.auto_advance);
        assert_eq!((doc.amount_paid, doc.amount_remaining), (0, 1_000));
        assert_eq!(payment.status, pb::InvoicePaymentStatus::Canceled as i32);
        assert!(matches!(effects.events[0], Event::InvoicePayment { kind: "invoice_payment.detached", .. }));
    }

    #[test]
    fn money_renders_in_major_units() {
        assert_eq!(money(1_234, "usd"), "12.34 USD");
        assert_eq!(money(500, "jpy"), "500 JPY");
    }
}
