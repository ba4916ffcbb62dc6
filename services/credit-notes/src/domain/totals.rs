//! A credit note's amounts and how they settle (reference §5.1, §5.4; design "Money rules"):
//!
//! ```text
//! subtotal               = Σ line amounts               (inclusive tax is inside them)
//! subtotal_excluding_tax = subtotal − inclusive tax
//! total  (= amount)      = subtotal + exclusive tax + shipping
//! total_excluding_tax    = total − all tax
//! pre_payment_amount     = min(total, invoice.amount_remaining)
//! post_payment_amount    = total − pre_payment_amount
//!                        = refund_amount + Σ refunds[].amount_refunded + credit_amount + out_of_band_amount
//! type                   = pre_payment | post_payment | mixed (both parts non-zero)
//! Σ totals of the invoice's non-void credit notes ≤ invoice.total
//! ```
//!
//! The invoice's shipping cost is credited whole, once. The numbers are the same ones invoices
//! computes for the invoice itself (`settle_invoices::domain::amounts`), so a note that credits a
//! whole invoice credits exactly its total.

use settle_money::Amount;

use super::error::CreditError;
use super::lines::CreditedLine;

/// The shipping cost a note credits (the invoice's, whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShippingCredit {
    pub amount_subtotal: Amount,
    pub amount_tax: Amount,
    pub amount_total: Amount,
}

/// A note's amount fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub subtotal: Amount,
    pub subtotal_excluding_tax: Amount,
    pub total: Amount,
    pub total_excluding_tax: Amount,
    pub amount_shipping: Amount,
}

/// Computes the note's amounts from its lines and shipping. The total must be positive.
pub fn totals(lines: &[CreditedLine], shipping: Option<ShippingCredit>) -> Result<Totals, CreditError> {
    let overflow = |_| CreditError::Overflow;
    let subtotal = Amount::checked_sum(lines.iter().map(|l| l.amount)).map_err(overflow)?;
    let mut inclusive = Amount::ZERO;
    let mut exclusive = Amount::ZERO;
    for line in lines {
        inclusive = inclusive.checked_add(line.inclusive_tax()?).map_err(overflow)?;
        exclusive = exclusive.checked_add(line.exclusive_tax()?).map_err(overflow)?;
    }
    let shipping = shipping.unwrap_or_default();
    let total = subtotal
        .checked_add(exclusive)
        .and_then(|t| t.checked_add(shipping.amount_total))
        .map_err(overflow)?;
    if !total.is_positive() {
        return Err(CreditError::TotalNotPositive);
    }
    let total_excluding_tax = total
        .checked_sub(exclusive)
        .and_then(|t| t.checked_sub(inclusive))
        .and_then(|t| t.checked_sub(shipping.amount_tax))
        .map_err(overflow)?;
    Ok(Totals {
        subtotal,
        subtotal_excluding_tax: subtotal.checked_sub(inclusive).map_err(overflow)?,
        total,
        total_excluding_tax,
        amount_shipping: shipping.amount_total,
    })
}

/// `amount`, when given next to lines or shipping, must be their total.
pub fn check_amount(amount: Option<Amount>, total: Amount) -> Result<(), CreditError> {
    match amount {
        Some(amount) if amount != total => Err(CreditError::AmountMismatch { amount, total }),
        _ => Ok(()),
    }
}

/// The invoice's non-void credit notes, this one included, stay within its total.
pub fn check_within_invoice(
    invoice_total: Amount,
    already_credited: Amount,
    total: Amount,
) -> Result<(), CreditError> {
    let after = already_credited.checked_add(total).map_err(|_| CreditError::Overflow)?;
    if after > invoice_total {
        return Err(CreditError::ExceedsInvoice {
            total,
            already_credited,
            invoice_total,
            available: invoice_total
                .checked_sub(already_credited)
                .map_err(|_| CreditError::Overflow)?
                .clamp_non_negative(),
        });
    }
    Ok(())
}

/// How the post-payment part is settled (the create parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settlement {
    /// `refund_amount`: a new refund.
    pub new_refund: Amount,
    /// Σ `refunds[].amount_refunded`: existing refunds linked.
    pub linked_refunds: Amount,
    /// `credit_amount`: credited to the customer balance.
    pub credit: Amount,
    /// `out_of_band_amount`.
    pub out_of_band: Amount,
}

impl Settlement {
    /// Everything refunded: the new refund plus the linked ones.
    pub fn refunds(&self) -> Result<Amount, CreditError> {
        self.new_refund.checked_add(self.linked_refunds).map_err(|_| CreditError::Overflow)
    }

    /// The post-payment part this settles.
    pub fn covered(&self) -> Result<Amount, CreditError> {
        self.refunds()?
            .checked_add(self.credit)
            .and_then(|a| a.checked_add(self.out_of_band))
            .map_err(|_| CreditError::Overflow)
    }
}

/// Stripe's `credit_note.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteType {
    PrePayment,
    PostPayment,
    Mixed,
}

impl NoteType {
    /// The type of a note with these parts (a note has a positive total, so one is non-zero).
    pub fn of(pre_payment: Amount, post_payment: Amount) -> NoteType {
        match (pre_payment.is_positive(), post_payment.is_positive()) {
            (true, true) => NoteType::Mixed,
            (false, true) => NoteType::PostPayment,
            _ => NoteType::PrePayment,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NoteType::PrePayment => "pre_payment",
            NoteType::PostPayment => "post_payment",
            NoteType::Mixed => "mixed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pre_payment" => Some(NoteType::PrePayment),
            "post_payment" => Some(NoteType::PostPayment),
            "mixed" => Some(NoteType::Mixed),
            _ => None,
        }
    }
}

/// The pre/post split of a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub pre_payment: Amount,
    pub post_payment: Amount,
    pub note_type: NoteType,
}

/// Splits `total` against what the invoice still has to be paid, and checks the settlement
/// covers the post-payment part exactly.
pub fn split(total: Amount, amount_remaining: Amount, settlement: &Settlement) -> Result<Split, CreditError> {
    let pre_payment = total.min(amount_remaining.clamp_non_negative());
    let post_payment = total.checked_sub(pre_payment).map_err(|_| CreditError::Overflow)?;
    let covered = settlement.covered()?;
    if covered != post_payment {
        return Err(CreditError::PostPaymentMismatch { total, pre_payment, post_payment, covered });
    }
    Ok(Split { pre_payment, post_payment, note_type: NoteType::of(pre_payment, post_payment) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lines::{LineTax, TaxBehavior};
    use proptest::prelude::*;
    use settle_invoices::domain::charge::Decimal;

    fn line(amount: i64, exclusive: i64, inclusive: i64) -> CreditedLine {
        let tax = |amount, behavior| LineTax {
            amount: Amount::new(amount),
            behavior,
            rate: "txr_1".into(),
            taxability_reason: 0,
            taxable_amount: None,
        };
        CreditedLine {
            invoice_line_item: None,
            amount: Amount::new(amount),
            quantity: 1,
            unit_amount: Some(Amount::new(amount)),
            unit_amount_decimal: Decimal::from_int(amount).unwrap(),
            description: None,
            taxes: vec![tax(exclusive, TaxBehavior::Exclusive), tax(inclusive, TaxBehavior::Inclusive)],
        }
    }

    fn settlement(new_refund: i64, linked: i64, credit: i64, out_of_band: i64) -> Settlement {
        Settlement {
            new_refund: Amount::new(new_refund),
            linked_refunds: Amount::new(linked),
            credit: Amount::new(credit),
            out_of_band: Amount::new(out_of_band),
        }
    }

    #[test]
    fn totals_add_exclusive_tax_and_shipping() {
        let shipping = ShippingCredit {
            amount_subtotal: Amount::new(500),
            amount_tax: Amount::ZERO,
            amount_total: Amount::new(500),
        };
        let t = totals(&[line(1_000, 100, 0), line(2_000, 0, 300)], Some(shipping)).unwrap();
        assert_eq!(t.subtotal, Amount::new(3_000));
        assert_eq!(t.subtotal_excluding_tax, Amount::new(2_700));
        assert_eq!(t.total, Amount::new(3_600));
        assert_eq!(t.total_excluding_tax, Amount::new(3_200));
        assert_eq!(t.amount_shipping, Amount::new(500));
        assert_eq!(totals(&[], None), Err(CreditError::TotalNotPositive));
    }

    #[test]
    fn the_split_takes_what_remains_first() {
        let unpaid = split(Amount::new(1_000), Amount::new(5_000), &Settlement::default()).unwrap();
        assert_eq!((unpaid.pre_payment.get(), unpaid.post_payment.get()), (1_000, 0));
        assert_eq!(unpaid.note_type, NoteType::PrePayment);
        let paid = split(Amount::new(1_000), Amount::ZERO, &settlement(400, 0, 600, 0)).unwrap();
        assert_eq!(paid.note_type, NoteType::PostPayment);
        let partly = split(Amount::new(1_000), Amount::new(300), &settlement(200, 300, 100, 100)).unwrap();
        assert_eq!(
            (partly.pre_payment.get(), partly.post_payment.get(), partly.note_type),
            (300, 700, NoteType::Mixed)
        );
        assert!(matches!(
            split(Amount::new(1_000), Amount::new(300), &settlement(0, 0, 600, 0)),
            Err(CreditError::PostPaymentMismatch { covered, .. }) if covered == Amount::new(600)
        ));
        // Nothing to settle on an unpaid invoice: a refund would be a mismatch.
        assert!(split(Amount::new(1_000), Amount::new(5_000), &settlement(1, 0, 0, 0)).is_err());
    }

    #[test]
    fn notes_stay_within_the_invoice() {
        assert!(check_within_invoice(Amount::new(1_000), Amount::new(600), Amount::new(400)).is_ok());
        assert!(matches!(
            check_within_invoice(Amount::new(1_000), Amount::new(600), Amount::new(401)),
            Err(CreditError::ExceedsInvoice { available, .. }) if available == Amount::new(400)
        ));
        assert!(check_amount(Some(Amount::new(5)), Amount::new(5)).is_ok());
        assert!(check_amount(Some(Amount::new(5)), Amount::new(6)).is_err());
        assert!(check_amount(None, Amount::new(6)).is_ok());
    }

    proptest! {
        /// pre + post is the total, neither is negative, pre never exceeds what remained, and the
        /// type says which parts are non-zero.
        #[test]
        fn split_invariants(total in 1i64..10_000_000, remaining in -1_000i64..10_000_000, parts in (0i64..5, 0i64..5, 0i64..5)) {
            let pre = total.min(remaining.max(0));
            let post = total - pre;
            // Spread post over the settlement channels somehow.
            let (a, b, c) = parts;
            let weights = a + b + c + 1;
            let refund = post * a / weights;
            let credit = post * b / weights;
            let linked = post * c / weights;
            let out_of_band = post - refund - credit - linked;
            let s = split(Amount::new(total), Amount::new(remaining), &settlement(refund, linked, credit, out_of_band)).unwrap();
            prop_assert_eq!(s.pre_payment.get() + s.post_payment.get(), total);
            prop_assert!(s.pre_payment.get() >= 0 && s.post_payment.get() >= 0);
            prop_assert!(s.pre_payment.get() <= remaining.max(0));
            prop_assert_eq!(s.note_type == NoteType::Mixed, s.pre_payment.is_positive() && s.post_payment.is_positive());
            prop_assert_eq!(s.note_type == NoteType::PostPayment, !s.pre_payment.is_positive());
            // Any other settlement is refused.
            prop_assert!(split(Amount::new(total), Amount::new(remaining), &settlement(refund, linked, credit, out_of_band + 1)).is_err());
        }

        /// However many notes are tried one after another, the accepted ones stay within the total.
        #[test]
        fn accepted_notes_never_exceed_the_invoice(invoice_total in 1i64..1_000_000, notes in proptest::collection::vec(1i64..500_000, 1..30)) {
            let mut credited = Amount::ZERO;
            for note in notes {
                if check_within_invoice(Amount::new(invoice_total), credited, Amount::new(note)).is_ok() {
                    credited = credited.checked_add(Amount::new(note)).unwrap();
                }
                prop_assert!(credited.get() <= invoice_total);
            }
        }
    }
}
