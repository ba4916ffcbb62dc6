//! Invoice credits between the domain ([`crate::domain::credit`]) and the documents: the credit's
//! status and split as `settle.invoices.v1.InvoiceCredit` holds them, and the invoice's credit-note
//! totals as the invoice document holds them.

use settle_money::Amount;
use settle_proto::settle::invoices::v1 as pb;

use super::{ModelError, recompute};
use crate::domain::amounts::InvoiceAmounts;
use crate::domain::credit::{CreditNoteTotals, CreditStatus, Split};

pub fn status_to_pb(status: CreditStatus) -> pb::InvoiceCreditStatus {
    match status {
        CreditStatus::Reserved => pb::InvoiceCreditStatus::Reserved,
        CreditStatus::Applied => pb::InvoiceCreditStatus::Applied,
        CreditStatus::Released => pb::InvoiceCreditStatus::Released,
        CreditStatus::Reversed => pb::InvoiceCreditStatus::Reversed,
    }
}

/// The credit's status; `None` only for a damaged document.
pub fn status(credit: &pb::InvoiceCredit) -> Option<CreditStatus> {
    Some(match pb::InvoiceCreditStatus::try_from(credit.status).ok()? {
        pb::InvoiceCreditStatus::Unspecified => return None,
        pb::InvoiceCreditStatus::Reserved => CreditStatus::Reserved,
        pb::InvoiceCreditStatus::Applied => CreditStatus::Applied,
        pb::InvoiceCreditStatus::Released => CreditStatus::Released,
        pb::InvoiceCreditStatus::Reversed => CreditStatus::Reversed,
    })
}

pub fn set_status(credit: &mut pb::InvoiceCredit, status: CreditStatus, now: i64) {
    credit.status = status_to_pb(status) as i32;
    credit.updated = now;
}

/// The credit's split into its pre- and post-payment parts.
pub fn split(credit: &pb::InvoiceCredit) -> Split {
    Split {
        pre_payment: Amount::new(credit.pre_payment_amount),
        post_payment: Amount::new(credit.post_payment_amount),
    }
}

/// The invoice's `pre_payment_credit_notes_amount` and `post_payment_credit_notes_amount`.
pub fn totals(doc: &pb::Invoice) -> CreditNoteTotals {
    CreditNoteTotals {
        pre_payment: Amount::new(doc.pre_payment_credit_notes_amount),
        post_payment: Amount::new(doc.post_payment_credit_notes_amount),
    }
}

/// Writes new credit-note totals into the invoice and recomputes every amount from them.
pub fn set_totals(doc: &mut pb::Invoice, totals: CreditNoteTotals) -> Result<InvoiceAmounts, ModelError> {
    doc.pre_payment_credit_notes_amount = totals.pre_payment.get();
    doc.post_payment_credit_notes_amount = totals.post_payment.get();
    recompute(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::invoice::InvoiceStatus;

    #[test]
    fn statuses_map_both_ways() {
        for s in CreditStatus::ALL {
            let credit = pb::InvoiceCredit { status: status_to_pb(s) as i32, ..Default::default() };
            assert_eq!(status(&credit), Some(s));
        }
        assert_eq!(status(&pb::InvoiceCredit::default()), None);
    }

    #[test]
    fn new_totals_move_amount_due_and_remaining() {
        let mut doc = pb::Invoice { id: "in_1".into(), subtotal: 1_000, ..Default::default() };
        super::super::set_status(&mut doc, InvoiceStatus::Open);
        recompute(&mut doc).unwrap();
        let applied =
            totals(&doc).with_applied(Split { pre_payment: Amount::new(300), post_payment: Amount::new(50) });
        set_totals(&mut doc, applied.unwrap()).unwrap();
        assert_eq!(
            (
                doc.amount_due,
                doc.amount_remaining,
                doc.pre_payment_credit_notes_amount,
                doc.post_payment_credit_notes_amount
            ),
            (700, 700, 300, 50)
        );
    }
}
