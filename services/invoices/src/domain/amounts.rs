//! Every amount field of an invoice, computed in one place from what the invoice is made of.
//! Stripe's definitions (reference §1.1), with settle's decisions where Stripe is silent:
//!
//! ```text
//! subtotal                 = Σ line amounts (inclusive tax is inside them)
//! subtotal_excluding_tax   = subtotal − inclusive tax
//! total                    = subtotal + exclusive tax + shipping
//! total_excluding_tax      = total − all tax
//! net                      = total + starting_balance        (a credit balance is negative)
//! ending_balance           = min(0, net)                      (credit left, incl. a negative total)
//! applied_balance          = starting_balance − ending_balance
//! amount_due               = max(0, total + applied_balance) − pre_payment_credit_notes_amount
//! amount_paid              = Σ paid invoice payments + paid out of band
//! amount_remaining         = max(0, amount_due − amount_paid)
//! amount_overpaid          = max(0, amount_paid − amount_due)
//! ```
//!
//! A pre-payment credit note may only take what is still unpaid ([`InvoiceAmounts::prepayment_room`]),
//! so `amount_due` never drops below `amount_paid` because of one.

use settle_money::{Amount, AmountError};

/// One line's contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineAmount {
    /// The line's amount (may be negative: a discount line or a credit).
    pub amount: Amount,
    /// Tax included in `amount`.
    pub inclusive_tax: Amount,
    /// Tax added on top of `amount`.
    pub exclusive_tax: Amount,
}

/// What an invoice's amounts are computed from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AmountInputs {
    pub lines: Vec<LineAmount>,
    /// The shipping cost's total.
    pub shipping: Amount,
    /// The customer's balance when the invoice was finalized (its current balance while a draft).
    pub starting_balance: Amount,
    /// Whether the balance has been applied (from finalization on).
    pub balance_applied: bool,
    pub pre_payment_credit_notes: Amount,
    pub post_payment_credit_notes: Amount,
    /// Σ `amount_paid` of the invoice's `paid` invoice payments.
    pub paid_by_payments: Amount,
    /// Marked paid outside settle (`pay` with `paid_out_of_band`).
    pub paid_out_of_band: Amount,
}

/// Every computed amount field of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InvoiceAmounts {
    pub subtotal: Amount,
    pub subtotal_excluding_tax: Amount,
    pub total: Amount,
    pub total_excluding_tax: Amount,
    pub amount_shipping: Amount,
    pub starting_balance: Amount,
    /// `None` until the invoice is finalized.
    pub ending_balance: Option<Amount>,
    pub applied_balance: Amount,
    pub amount_due: Amount,
    pub amount_paid: Amount,
    pub amount_paid_off_stripe: Amount,
    pub amount_remaining: Amount,
    pub amount_overpaid: Amount,
    pub pre_payment_credit_notes_amount: Amount,
    pub post_payment_credit_notes_amount: Amount,
}

/// Computes every amount of an invoice. Fails only on overflow (a sum beyond `i64`).
pub fn compute(inputs: &AmountInputs) -> Result<InvoiceAmounts, AmountError> {
    let subtotal = Amount::checked_sum(inputs.lines.iter().map(|l| l.amount))?;
    let inclusive = Amount::checked_sum(inputs.lines.iter().map(|l| l.inclusive_tax))?;
    let exclusive = Amount::checked_sum(inputs.lines.iter().map(|l| l.exclusive_tax))?;
    let total = subtotal.checked_add(exclusive)?.checked_add(inputs.shipping)?;
    let total_excluding_tax = total.checked_sub(exclusive)?.checked_sub(inclusive)?;
    let (ending_balance, applied_balance) = if inputs.balance_applied {
        let net = total.checked_add(inputs.starting_balance)?;
        let ending = Amount::new(net.get().min(0));
        (Some(ending), inputs.starting_balance.checked_sub(ending)?)
    } else {
        (None, Amount::ZERO)
    };
    let due_before_notes = total.checked_add(applied_balance)?.clamp_non_negative();
    let amount_due = due_before_notes.checked_sub(inputs.pre_payment_credit_notes)?.clamp_non_negative();
    let amount_paid = inputs.paid_by_payments.checked_add(inputs.paid_out_of_band)?;
    Ok(InvoiceAmounts {
        subtotal,
        subtotal_excluding_tax: subtotal.checked_sub(inclusive)?,
        total,
        total_excluding_tax,
        amount_shipping: inputs.shipping,
        starting_balance: inputs.starting_balance,
        ending_balance,
        applied_balance,
        amount_due,
        amount_paid,
        amount_paid_off_stripe: inputs.paid_out_of_band,
        amount_remaining: amount_due.checked_sub(amount_paid)?.clamp_non_negative(),
        amount_overpaid: amount_paid.checked_sub(amount_due)?.clamp_non_negative(),
        pre_payment_credit_notes_amount: inputs.pre_payment_credit_notes,
        post_payment_credit_notes_amount: inputs.post_payment_credit_notes,
    })
}

impl InvoiceAmounts {
    /// How much a new pre-payment credit note may take: what is due and not yet paid.
    pub fn prepayment_room(&self) -> Amount {
        self.amount_remaining
    }

    /// Whether nothing is left to pay.
    pub fn is_settled(&self) -> bool {
        self.amount_remaining.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(amount: i64) -> LineAmount {
        LineAmount { amount: Amount::new(amount), ..Default::default() }
    }

    fn finalized(lines: &[i64], balance: i64) -> AmountInputs {
        AmountInputs {
            lines: lines.iter().copied().map(line).collect(),
            starting_balance: Amount::new(balance),
            balance_applied: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_simple_invoice() {
        let a = compute(&finalized(&[1_000, 500], 0)).unwrap();
        assert_eq!(
            (a.subtotal.get(), a.total.get(), a.amount_due.get(), a.amount_remaining.get()),
            (1_500, 1_500, 1_500, 1_500)
        );
        assert_eq!(a.ending_balance, Some(Amount::ZERO));
    }

    #[test]
    fn a_credit_balance_is_used_up_to_the_total() {
        let a = compute(&finalized(&[1_000], -300)).unwrap();
        assert_eq!(
            (a.amount_due.get(), a.applied_balance.get(), a.ending_balance.map(Amount::get)),
            (700, -300, Some(0))
        );
        let big = compute(&finalized(&[1_000], -5_000)).unwrap();
        assert_eq!(
            (big.amount_due.get(), big.applied_balance.get(), big.ending_balance.map(Amount::get)),
            (0, -1_000, Some(-4_000))
        );
    }

    #[test]
    fn a_debit_balance_is_added_and_a_negative_total_becomes_credit() {
        let owed = compute(&finalized(&[1_000], 250)).unwrap();
        assert_eq!((owed.amount_due.get(), owed.ending_balance.map(Amount::get)), (1_250, Some(0)));
        let negative = compute(&finalized(&[-400], 0)).unwrap();
        assert_eq!((negative.amount_due.get(), negative.ending_balance.map(Amount::get)), (0, Some(-400)));
    }

    #[test]
    fn taxes_and_shipping() {
        let inputs = AmountInputs {
            lines: vec![
                LineAmount {
                    amount: Amount::new(1_000),
                    inclusive_tax: Amount::new(100),
                    exclusive_tax: Amount::ZERO,
                },
                LineAmount {
                    amount: Amount::new(500),
                    inclusive_tax: Amount::ZERO,
                    exclusive_tax: Amount::new(50),
                },
            ],
            shipping: Amount::new(200),
            balance_applied: true,
            ..Default::default()
        };
        let a = compute(&inputs).unwrap();
        assert_eq!(
            (a.subtotal.get(), a.subtotal_excluding_tax.get(), a.total.get(), a.total_excluding_tax.get()),
            (1_500, 1_400, 1_750, 1_600)
        );
        assert_eq!(a.amount_shipping.get(), 200);
    }

    #[test]
    fn payments_pre_payment_notes_and_overpayment() {
        let mut inputs = finalized(&[1_000], 0);
        inputs.paid_by_payments = Amount::new(400);
        let partly = compute(&inputs).unwrap();
        assert_eq!((partly.amount_remaining.get(), partly.prepayment_room().get()), (600, 600));
        inputs.pre_payment_credit_notes = Amount::new(600);
        let settled = compute(&inputs).unwrap();
        assert_eq!((settled.amount_due.get(), settled.amount_remaining.get()), (400, 0));
        assert!(settled.is_settled());
        inputs.paid_by_payments = Amount::new(700);
        let over = compute(&inputs).unwrap();
        assert_eq!(over.amount_overpaid.get(), 300);
    }

    #[test]
    fn a_draft_applies_no_balance() {
        let mut draft = finalized(&[1_000], -300);
        draft.balance_applied = false;
        let a = compute(&draft).unwrap();
        assert_eq!((a.amount_due.get(), a.ending_balance), (1_000, None));
        assert_eq!(a.starting_balance.get(), -300);
    }

    proptest! {
        /// The identities Stripe's fields obey, for any invoice.
        #[test]
        fn amounts_obey_stripes_identities(
            lines in proptest::collection::vec((-100_000i64..1_000_000, 0i64..50_000, 0i64..50_000), 0..8),
            shipping in 0i64..10_000,
            balance in -2_000_000i64..2_000_000,
            paid in 0i64..3_000_000,
            oob in 0i64..100_000,
            notes_fraction in 0u32..=100,
        ) {
            let mut inputs = AmountInputs {
                lines: lines.iter().map(|&(a, i, e)| LineAmount { amount: Amount::new(a), inclusive_tax: Amount::new(i.min(a.max(0))), exclusive_tax: Amount::new(e) }).collect(),
                shipping: Amount::new(shipping),
                starting_balance: Amount::new(balance),
                balance_applied: true,
                ..Default::default()
            };
            // A pre-payment note can only take what was unpaid when it was issued.
            let before = compute(&inputs).unwrap();
            inputs.pre_payment_credit_notes = Amount::new(before.amount_due.get() * i64::from(notes_fraction) / 100);
            inputs.paid_by_payments = Amount::new(paid);
            inputs.paid_out_of_band = Amount::new(oob);
            let a = compute(&inputs).unwrap();
            prop_assert!(a.amount_due.get() >= 0 && a.amount_remaining.get() >= 0 && a.amount_overpaid.get() >= 0);
            prop_assert_eq!(a.amount_remaining.get() - a.amount_overpaid.get(), a.amount_due.get() - a.amount_paid.get());
            prop_assert!(a.amount_remaining.is_zero() || a.amount_overpaid.is_zero());
            prop_assert_eq!(a.amount_paid.get(), paid + oob);
            let ending = a.ending_balance.unwrap();
            prop_assert!(ending.get() <= 0, "a finalized invoice leaves no debit on the balance");
            prop_assert_eq!(a.starting_balance.get() - a.applied_balance.get(), ending.get());
            prop_assert_eq!(a.amount_due.get() + a.pre_payment_credit_notes_amount.get(), (a.total.get() + a.applied_balance.get()).max(0));
            prop_assert_eq!(a.total_excluding_tax.get() + lines.iter().map(|&(x, i, e)| i.min(x.max(0)) + e).sum::<i64>(), a.total.get());
        }
    }
}
