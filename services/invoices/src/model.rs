//! An invoice is stored as its Stripe-shaped document (`settle.invoices.v1.Invoice`, without its
//! `lines` and `payments` lists, which live in their own tables) plus projected columns. This module
//! reads the domain's view (status, amount inputs) out of a document and writes the computed
//! amounts back, so every code path recomputes the amount fields the same way.

pub mod balance;
pub mod credit;
pub mod lines;

use settle_money::{Amount, AmountError};
use settle_proto::settle::invoices::v1 as pb;

use crate::domain::amounts::{self, AmountInputs, InvoiceAmounts, LineAmount};
use crate::domain::invoice::InvoiceStatus;

/// A stored document that does not describe a valid invoice (a bug or a damaged row).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("stored invoice {id} has no valid status")]
    Status { id: String },
    #[error("invoice {id}: amount arithmetic overflowed")]
    Overflow { id: String, source: AmountError },
}

pub fn status_to_pb(status: InvoiceStatus) -> pb::InvoiceStatus {
    match status {
        InvoiceStatus::Draft => pb::InvoiceStatus::Draft,
        InvoiceStatus::Open => pb::InvoiceStatus::Open,
        InvoiceStatus::Paid => pb::InvoiceStatus::Paid,
        InvoiceStatus::Uncollectible => pb::InvoiceStatus::Uncollectible,
        InvoiceStatus::Void => pb::InvoiceStatus::Void,
    }
}

pub fn status_from_pb(value: Option<i32>) -> Option<InvoiceStatus> {
    Some(match pb::InvoiceStatus::try_from(value?).ok()? {
        pb::InvoiceStatus::Unspecified => return None,
        pb::InvoiceStatus::Draft => InvoiceStatus::Draft,
        pb::InvoiceStatus::Open => InvoiceStatus::Open,
        pb::InvoiceStatus::Paid => InvoiceStatus::Paid,
        pb::InvoiceStatus::Uncollectible => InvoiceStatus::Uncollectible,
        pb::InvoiceStatus::Void => InvoiceStatus::Void,
    })
}

/// The invoice's status.
pub fn status(doc: &pb::Invoice) -> Result<InvoiceStatus, ModelError> {
    status_from_pb(doc.status).ok_or_else(|| ModelError::Status { id: doc.id.clone() })
}

pub fn set_status(doc: &mut pb::Invoice, status: InvoiceStatus) {
    doc.status = Some(status_to_pb(status) as i32);
}

/// The inputs of the amount computation, as the document holds them: the lines' aggregate
/// (`subtotal` and `total_taxes`, kept current whenever lines change), shipping, the balance, credit
/// notes and what was paid.
pub fn amount_inputs(doc: &pb::Invoice) -> AmountInputs {
    let tax = |behavior: pb::TaxBehavior| {
        Amount::new(
            doc.total_taxes.iter().filter(|t| t.tax_behavior == behavior as i32).map(|t| t.amount).sum(),
        )
    };
    let finalized = status_from_pb(doc.status).is_some_and(|s| s != InvoiceStatus::Draft);
    AmountInputs {
        lines: vec![LineAmount {
            amount: Amount::new(doc.subtotal),
            inclusive_tax: tax(pb::TaxBehavior::Inclusive),
            exclusive_tax: tax(pb::TaxBehavior::Exclusive),
        }],
        shipping: Amount::new(doc.amount_shipping),
        starting_balance: Amount::new(doc.starting_balance),
        balance_applied: finalized,
        pre_payment_credit_notes: Amount::new(doc.pre_payment_credit_notes_amount),
        post_payment_credit_notes: Amount::new(doc.post_payment_credit_notes_amount),
        paid_by_payments: Amount::new(doc.amount_paid - doc.amount_paid_off_stripe),
        paid_out_of_band: Amount::new(doc.amount_paid_off_stripe),
    }
}

/// Writes computed amounts into the document.
pub fn apply_amounts(doc: &mut pb::Invoice, a: &InvoiceAmounts) {
    doc.subtotal = a.subtotal.get();
    doc.subtotal_excluding_tax = Some(a.subtotal_excluding_tax.get());
    doc.total = a.total.get();
    doc.total_excluding_tax = Some(a.total_excluding_tax.get());
    doc.amount_shipping = a.amount_shipping.get();
    doc.starting_balance = a.starting_balance.get();
    doc.ending_balance = a.ending_balance.map(Amount::get);
    doc.amount_due = a.amount_due.get();
    doc.amount_paid = a.amount_paid.get();
    doc.amount_paid_off_stripe = a.amount_paid_off_stripe.get();
    doc.amount_remaining = a.amount_remaining.get();
    doc.amount_overpaid = a.amount_overpaid.get();
    doc.pre_payment_credit_notes_amount = a.pre_payment_credit_notes_amount.get();
    doc.post_payment_credit_notes_amount = a.post_payment_credit_notes_amount.get();
}

/// Recomputes every amount field from the document's inputs, writes them back and returns them.
pub fn recompute(doc: &mut pb::Invoice) -> Result<InvoiceAmounts, ModelError> {
    let computed = amounts::compute(&amount_inputs(doc))
        .map_err(|source| ModelError::Overflow { id: doc.id.clone(), source })?;
    apply_amounts(doc, &computed);
    Ok(computed)
}

/// Adds `delta` (negative to take away) to what paid invoice payments contributed, and recomputes.
pub fn add_paid_by_payments(doc: &mut pb::Invoice, delta: Amount) -> Result<InvoiceAmounts, ModelError> {
    doc.amount_paid = Amount::new(doc.amount_paid)
        .checked_add(delta)
        .map_err(|source| ModelError::Overflow { id: doc.id.clone(), source })?
        .get();
    recompute(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recompute_round_trips_through_the_document() {
        let mut doc =
            pb::Invoice { id: "in_1".into(), subtotal: 1_000, starting_balance: -200, ..Default::default() };
        set_status(&mut doc, InvoiceStatus::Open);
        let first = recompute(&mut doc).unwrap();
        assert_eq!((doc.amount_due, doc.ending_balance), (800, Some(0)));
        assert_eq!(recompute(&mut doc).unwrap(), first, "recomputing is stable");
        let paid = add_paid_by_payments(&mut doc, Amount::new(800)).unwrap();
        assert!(paid.is_settled());
        assert_eq!((doc.amount_paid, doc.amount_remaining), (800, 0));
    }

    #[test]
    fn a_draft_shows_the_balance_without_applying_it() {
        let mut doc =
            pb::Invoice { id: "in_1".into(), subtotal: 1_000, starting_balance: -200, ..Default::default() };
        set_status(&mut doc, InvoiceStatus::Draft);
        recompute(&mut doc).unwrap();
        assert_eq!((doc.amount_due, doc.ending_balance), (1_000, None));
    }
}
