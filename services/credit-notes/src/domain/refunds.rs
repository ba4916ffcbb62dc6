//! The refunds a credit note settles its post-payment part with.
//!
//! - `refunds[]` links existing refunds: each for `amount_refunded`, by default all of the refund
//!   that the invoice's other non-void notes do not already link, and never more than that.
//! - `refund_amount` creates a new refund. Stripe refunds "the invoice's charge"; an invoice may now
//!   have several payments, and Stripe's text does not say which one. settle refunds the most
//!   recently paid PaymentIntent of the invoice whose refundable remainder (`amount_received` less
//!   its refunds) covers the whole amount — one refund, never split over payments — and refuses
//!   when none does. Payment records are refunded outside settle, then linked with `refunds[]`.

use settle_money::Amount;

use super::error::CreditError;

/// How much of a refund the note links: `requested`, or by default all that is not yet linked.
/// `index` is the entry's position in `refunds[]`, for errors.
pub fn link_amount(
    index: usize,
    refunded: Amount,
    already_linked: Amount,
    requested: Option<Amount>,
) -> Result<Amount, CreditError> {
    let available =
        refunded.checked_sub(already_linked).map_err(|_| CreditError::Overflow)?.clamp_non_negative();
    match requested {
        None if available.is_positive() => Ok(available),
        None => Err(CreditError::RefundFullyLinked { index }),
        Some(amount) if amount > available => {
            Err(CreditError::RefundExceedsRefundable { index, requested: amount, available })
        }
        Some(amount) => Ok(amount),
    }
}

/// A PaymentIntent of the invoice that `refund_amount` could refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundablePayment {
    pub payment_intent: String,
    /// When its invoice payment was paid (unix seconds).
    pub paid_at: i64,
    /// `amount_received` less what its refunds already took.
    pub refundable: Amount,
}

/// The payment a new refund of `amount` is made on: the most recently paid one that covers it
/// whole (ties: the later id, i.e. the more recently created).
pub fn choose_refund_payment(candidates: &[RefundablePayment], amount: Amount) -> Result<&str, CreditError> {
    candidates
        .iter()
        .filter(|c| c.refundable >= amount)
        .max_by(|a, b| (a.paid_at, &a.payment_intent).cmp(&(b.paid_at, &b.payment_intent)))
        .map(|c| c.payment_intent.as_str())
        .ok_or_else(|| CreditError::NoRefundablePayment {
            amount,
            largest: candidates
                .iter()
                .map(|c| c.refundable)
                .max()
                .unwrap_or(Amount::ZERO)
                .clamp_non_negative(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payment(id: &str, paid_at: i64, refundable: i64) -> RefundablePayment {
        RefundablePayment { payment_intent: id.into(), paid_at, refundable: Amount::new(refundable) }
    }

    #[test]
    fn links_default_to_what_is_left_of_the_refund() {
        assert_eq!(link_amount(0, Amount::new(500), Amount::new(200), None), Ok(Amount::new(300)));
        assert_eq!(
            link_amount(0, Amount::new(500), Amount::new(500), None),
            Err(CreditError::RefundFullyLinked { index: 0 })
        );
        assert_eq!(
            link_amount(1, Amount::new(500), Amount::ZERO, Some(Amount::new(500))),
            Ok(Amount::new(500))
        );
        assert!(matches!(
            link_amount(2, Amount::new(500), Amount::new(100), Some(Amount::new(401))),
            Err(CreditError::RefundExceedsRefundable { index: 2, available, .. }) if available == Amount::new(400)
        ));
    }

    #[test]
    fn a_new_refund_goes_to_the_latest_payment_that_covers_it() {
        let payments = [payment("pi_a", 10, 5_000), payment("pi_b", 20, 1_000), payment("pi_c", 15, 2_000)];
        assert_eq!(choose_refund_payment(&payments, Amount::new(800)), Ok("pi_b"));
        assert_eq!(choose_refund_payment(&payments, Amount::new(1_500)), Ok("pi_c"));
        assert_eq!(choose_refund_payment(&payments, Amount::new(5_000)), Ok("pi_a"));
        assert!(matches!(
            choose_refund_payment(&payments, Amount::new(5_001)),
            Err(CreditError::NoRefundablePayment { largest, .. }) if largest == Amount::new(5_000)
        ));
        assert!(choose_refund_payment(&[], Amount::new(1)).is_err());
    }

    proptest! {
        #[test]
        fn the_chosen_payment_always_covers_the_refund(
            refundables in proptest::collection::vec((0i64..100, 0i64..10_000), 0..8),
            amount in 1i64..10_000,
        ) {
            let payments: Vec<_> = refundables.iter().enumerate().map(|(i, (at, r))| payment(&format!("pi_{i}"), *at, *r)).collect();
            match choose_refund_payment(&payments, Amount::new(amount)) {
                Ok(id) => {
                    let chosen = payments.iter().find(|p| p.payment_intent == id).unwrap();
                    prop_assert!(chosen.refundable.get() >= amount);
                    prop_assert!(payments.iter().filter(|p| p.refundable.get() >= amount).all(|p| p.paid_at <= chosen.paid_at));
                }
                Err(_) => prop_assert!(payments.iter().all(|p| p.refundable.get() < amount)),
            }
        }

        #[test]
        fn links_never_exceed_the_refund(refunded in 0i64..10_000, linked in 0i64..10_000, requested in proptest::option::of(1i64..10_000)) {
            if let Ok(amount) = link_amount(0, Amount::new(refunded), Amount::new(linked), requested.map(Amount::new)) {
                prop_assert!(amount.is_positive());
                prop_assert!(linked + amount.get() <= refunded);
            }
        }
    }
}
