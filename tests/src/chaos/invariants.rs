//! The money invariants, read from the stores over the API after the faults stopped and the suite
//! went quiet. Every finding is a violation: the chaos run fails on any.

use std::collections::{BTreeMap, BTreeSet};

use settle_proto::events::v1::Event;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use tonic::Status;

use crate::api::Api;

/// What the checker looked at, and what it found.
#[derive(Debug, Default)]
pub struct Report {
    pub invoices: usize,
    pub invoice_payments: usize,
    pub intents: usize,
    pub credit_notes: usize,
    pub events: usize,
    pub violations: Vec<String>,
}

fn intent_of(payment: &pb::InvoicePayment) -> Option<&str> {
    payment.payment.as_ref().and_then(|p| p.payment_intent.as_deref())
}

fn live(payment: &pb::InvoicePayment) -> bool {
    payment.status != pb::InvoicePaymentStatus::Canceled as i32
}

/// Reads everything of the account and checks it.
pub async fn check(api: &Api) -> Result<Report, Status> {
    let mut report = Report::default();
    let mut violations = Vec::new();

    // Invoices: amount_paid is what their paid invoice payments (and out-of-band) brought in.
    let invoices = api.all_invoices().await?;
    report.invoices = invoices.len();
    let mut live_by_payment: BTreeMap<String, Vec<pb::InvoicePayment>> = BTreeMap::new();
    let mut overpaid_by_customer: BTreeMap<String, i64> = BTreeMap::new();
    for invoice in &invoices {
        let payments = api.invoice_payments(&invoice.id).await?;
        report.invoice_payments += payments.len();
        let paid: i64 = payments
            .iter()
            .filter(|p| p.status == pb::InvoicePaymentStatus::Paid as i32)
            .map(|p| p.amount_paid.unwrap_or(0))
            .sum();
        if invoice.amount_paid != paid + invoice.amount_paid_off_stripe {
            violations.push(format!(
                "{}: amount_paid {} but its paid invoice payments sum to {} (+{} out of band)",
                invoice.id, invoice.amount_paid, paid, invoice.amount_paid_off_stripe
            ));
        }
        let remaining = (invoice.amount_due - invoice.amount_paid).max(0);
        let overpaid = (invoice.amount_paid - invoice.amount_due).max(0);
        let status = invoice.status.unwrap_or_default();
        let finalized = status == pb::InvoiceStatus::Open as i32 || status == pb::InvoiceStatus::Paid as i32;
        if finalized && (invoice.amount_remaining != remaining || invoice.amount_overpaid != overpaid) {
            violations.push(format!(
                "{}: amount_remaining {} / amount_overpaid {} do not follow from amount_due {} and amount_paid {}",
                invoice.id, invoice.amount_remaining, invoice.amount_overpaid, invoice.amount_due, invoice.amount_paid
            ));
        }
        if status == pb::InvoiceStatus::Paid as i32 && invoice.amount_remaining != 0 {
            violations.push(format!("{}: paid with {} remaining", invoice.id, invoice.amount_remaining));
        }
        if status == pb::InvoiceStatus::Open as i32 && invoice.amount_remaining == 0 {
            violations.push(format!("{}: open with nothing remaining", invoice.id));
        }
        if status == pb::InvoiceStatus::Void as i32 && payments.iter().any(live) {
            violations.push(format!("{}: void but still counts a payment", invoice.id));
        }
        if api.credit_notes.is_some() {
            let notes = api.credit_notes_of(&invoice.id).await?;
            report.credit_notes += notes.len();
            let issued: Vec<_> = notes
                .iter()
                .filter(|n| {
                    n.status == settle_proto::settle::creditnotes::v1::CreditNoteStatus::Issued as i32
                })
                .collect();
            let total: i64 = issued.iter().map(|n| n.total).sum();
            let pre: i64 = issued.iter().map(|n| n.pre_payment_amount).sum();
            let post: i64 = issued.iter().map(|n| n.post_payment_amount).sum();
            if total > invoice.total {
                violations.push(format!(
                    "{}: credit notes total {total} over the invoice total {}",
                    invoice.id, invoice.total
                ));
            }
            if pre != invoice.pre_payment_credit_notes_amount
                || post != invoice.post_payment_credit_notes_amount
            {
                violations.push(format!(
                    "{}: issued notes credit {pre} pre / {post} post, the invoice counts {} / {}",
                    invoice.id,
                    invoice.pre_payment_credit_notes_amount,
                    invoice.post_payment_credit_notes_amount
                ));
            }
        }
        *overpaid_by_customer.entry(invoice.customer.clone()).or_default() += invoice.amount_overpaid;
        for payment in payments.into_iter().filter(live) {
            if let Some(intent) = intent_of(&payment) {
                live_by_payment.entry(intent.to_owned()).or_default().push(payment);
            }
        }
    }

    // Payments: each is counted by at most one invoice, and payments' attachment says the same.
    let intents = api.all_intents(None).await?;
    report.intents = intents.len();
    let known: BTreeSet<&str> = intents.iter().map(|i| i.id.as_str()).collect();
    for payment in live_by_payment.keys() {
        if !known.contains(payment.as_str()) {
            violations.push(format!("{payment}: counted by an invoice but unknown to payments"));
        }
    }
    for intent in &intents {
        let counted = live_by_payment.get(&intent.id).map(Vec::as_slice).unwrap_or_default();
        if counted.len() > 1 {
            let on: Vec<&str> = counted.iter().map(|p| p.invoice.as_str()).collect();
            violations.push(format!("{}: counted {} times, on {on:?}", intent.id, counted.len()));
        }
        let attachment = api.attachment(&intent.id).await?;
        match (&attachment, counted.first()) {
            (Some(a), _) if a.status != ppb::AttachmentStatus::Confirmed as i32 => {
                let status = ppb::AttachmentStatus::try_from(a.status).map_or("unknown", |s| s.as_str_name());
                violations.push(format!("{}: attachment still {status} after the run", intent.id));
            }
            (Some(a), Some(p)) if a.invoice != p.invoice => violations.push(format!(
                "{}: payments attaches it to {}, invoices counts it on {}",
                intent.id, a.invoice, p.invoice
            )),
            (Some(a), None) => {
                violations.push(format!(
                    "{}: attached to {} in payments, counted by no invoice",
                    intent.id, a.invoice
                ));
            }
            (None, Some(p)) => {
                violations
                    .push(format!("{}: counted on {} but not attached in payments", intent.id, p.invoice));
            }
            _ => {}
        }
        let succeeded = intent.status == ppb::PaymentIntentStatus::Succeeded as i32;
        for p in counted {
            let paid = p.status == pb::InvoicePaymentStatus::Paid as i32;
            if paid != succeeded {
                violations.push(format!(
                    "{}: payment {} but its invoice payment {} is {}",
                    intent.id,
                    if succeeded { "succeeded" } else { "not succeeded" },
                    p.id,
                    if paid { "paid" } else { "open" }
                ));
            }
            if paid && p.amount_paid != Some(intent.amount_received) {
                violations.push(format!(
                    "{}: received {} but {} counts {:?}",
                    intent.id, intent.amount_received, p.id, p.amount_paid
                ));
            }
        }
        let refunds = api.refunds_of(&intent.id).await?;
        let refunded: i64 = refunds
            .iter()
            .filter(|r| {
                let status = r.status.unwrap_or_default();
                status == ppb::RefundStatus::Succeeded as i32 || status == ppb::RefundStatus::Pending as i32
            })
            .map(|r| r.amount)
            .sum();
        if refunded > intent.amount_received {
            violations
                .push(format!("{}: refunded {refunded} of {} received", intent.id, intent.amount_received));
        }
    }

    // Customer balances: the ledger adds up, and what overpayments credited is what invoices show.
    for (customer, overpaid) in &overpaid_by_customer {
        let transactions = api.balance_transactions(customer).await?;
        let mut balance = 0i64;
        let mut credited = 0i64;
        for transaction in &transactions {
            balance += transaction.amount;
            if transaction.ending_balance != balance {
                violations.push(format!(
                    "{customer}: balance transaction {} ends at {} but the ledger adds up to {balance}",
                    transaction.id, transaction.ending_balance
                ));
                balance = transaction.ending_balance;
            }
            if transaction.r#type == pb::CustomerBalanceTransactionType::InvoiceOverpaid as i32 {
                credited -= transaction.amount;
            }
        }
        let current = api.balance(customer).await?;
        if current != balance {
            violations.push(format!("{customer}: balance {current}, ledger {balance}"));
        }
        if credited != *overpaid {
            violations
                .push(format!("{customer}: overpayments credited {credited}, invoices overpaid {overpaid}"));
        }
    }

    // Outboxes: no object's event history has a gap, and money moves left their events.
    let invoice_events = Api::all_events(&api.invoice_events).await?;
    let payment_events = Api::all_events(&api.payment_events).await?;
    let credit_note_events = match &api.credit_note_events {
        Some(client) => Api::all_events(client).await?,
        None => Vec::new(),
    };
    report.events = invoice_events.len() + payment_events.len() + credit_note_events.len();
    for (service, events) in
        [("invoices", &invoice_events), ("payments", &payment_events), ("credit-notes", &credit_note_events)]
    {
        violations.extend(sequence_gaps(service, events));
    }
    let has_event = |events: &[Event], kind: &str, object: &str| {
        events.iter().any(|e| e.r#type == kind && e.object_id == object)
    };
    for intent in intents.iter().filter(|i| i.status == ppb::PaymentIntentStatus::Succeeded as i32) {
        if !has_event(&payment_events, "payment_intent.succeeded", &intent.id) {
            violations.push(format!("{}: succeeded without a payment_intent.succeeded event", intent.id));
        }
    }
    for invoice in invoices.iter().filter(|i| i.status == Some(pb::InvoiceStatus::Paid as i32)) {
        if !has_event(&invoice_events, "invoice.paid", &invoice.id) {
            violations.push(format!("{}: paid without an invoice.paid event", invoice.id));
        }
    }

    report.violations = violations;
    Ok(report)
}

/// Per object, its events' `object_sequence` must run 1, 2, 3, … with nothing missing or repeated.
fn sequence_gaps(service: &str, events: &[Event]) -> Vec<String> {
    let mut by_object: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for event in events {
        by_object.entry(event.object_id.as_str()).or_default().push(event.object_sequence);
    }
    by_object
        .into_iter()
        .filter_map(|(object, mut sequences)| {
            sequences.sort_unstable();
            let expected: Vec<i64> = (1..=sequences.len() as i64).collect();
            (sequences != expected)
                .then(|| format!("{service}: events of {object} have sequences {sequences:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(object: &str, sequence: i64) -> Event {
        Event { object_id: object.into(), object_sequence: sequence, ..Default::default() }
    }

    #[test]
    fn a_missing_or_repeated_event_is_a_gap() {
        let whole = [event("in_1", 2), event("in_1", 1), event("pi_1", 1)];
        assert!(sequence_gaps("x", &whole).is_empty());
        assert_eq!(sequence_gaps("x", &[event("in_1", 1), event("in_1", 3)]).len(), 1);
        assert_eq!(sequence_gaps("x", &[event("in_1", 1), event("in_1", 1)]).len(), 1);
    }
}
