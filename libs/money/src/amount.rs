//! Integer minor-unit amounts with checked arithmetic.

use std::fmt;

/// A signed count of a currency's minor unit. Arithmetic is checked: overflow is an error, never a
/// wrap or a panic. Negative amounts are legal (a customer balance credit, a negative invoice item);
/// callers that need a positive amount say so with [`Amount::positive`].
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

/// An amount that could not be formed or computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("amount must be greater than zero, got {0}")]
    NotPositive(i64),
    #[error("amount must not be negative, got {0}")]
    Negative(i64),
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// Wraps a minor-unit count.
    pub const fn new(minor_units: i64) -> Self {
        Amount(minor_units)
    }

    /// A strictly positive amount (a payment, a refund, a capture).
    pub fn positive(minor_units: i64) -> Result<Self, AmountError> {
        if minor_units > 0 { Ok(Amount(minor_units)) } else { Err(AmountError::NotPositive(minor_units)) }
    }

    /// A zero or positive amount.
    pub fn non_negative(minor_units: i64) -> Result<Self, AmountError> {
        if minor_units >= 0 { Ok(Amount(minor_units)) } else { Err(AmountError::Negative(minor_units)) }
    }

    /// The raw minor-unit count, for storage and the wire.
    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        self.0.checked_add(other.0).map(Amount).ok_or(AmountError::Overflow)
    }

    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountError> {
        self.0.checked_sub(other.0).map(Amount).ok_or(AmountError::Overflow)
    }

    pub fn checked_mul(self, factor: i64) -> Result<Amount, AmountError> {
        self.0.checked_mul(factor).map(Amount).ok_or(AmountError::Overflow)
    }

    pub fn checked_neg(self) -> Result<Amount, AmountError> {
        self.0.checked_neg().map(Amount).ok_or(AmountError::Overflow)
    }

    /// Sums amounts, failing on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(amounts: I) -> Result<Amount, AmountError> {
        amounts.into_iter().try_fold(Amount::ZERO, Amount::checked_add)
    }

    /// `max(0, self)`.
    pub fn clamp_non_negative(self) -> Amount {
        Amount(self.0.max(0))
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positive_rejects_zero_and_negative() {
        assert_eq!(Amount::positive(0), Err(AmountError::NotPositive(0)));
        assert_eq!(Amount::positive(-5), Err(AmountError::NotPositive(-5)));
        assert_eq!(Amount::positive(1).map(Amount::get), Ok(1));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(Amount::new(i64::MAX).checked_add(Amount::new(1)), Err(AmountError::Overflow));
        assert_eq!(Amount::new(i64::MIN).checked_sub(Amount::new(1)), Err(AmountError::Overflow));
        assert_eq!(Amount::new(i64::MIN).checked_neg(), Err(AmountError::Overflow));
        assert_eq!(Amount::new(i64::MAX).checked_mul(2), Err(AmountError::Overflow));
    }

    proptest! {
        #[test]
        fn add_then_sub_round_trips(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let sum = Amount::new(a).checked_add(Amount::new(b)).unwrap();
            prop_assert_eq!(sum.checked_sub(Amount::new(b)).unwrap(), Amount::new(a));
        }

        #[test]
        fn checked_sum_matches_i128_sum(values in proptest::collection::vec(any::<i64>(), 0..8)) {
            let exact: i128 = values.iter().map(|v| i128::from(*v)).sum();
            let checked = Amount::checked_sum(values.iter().copied().map(Amount::new));
            match i64::try_from(exact) {
                // A partial sum may overflow even when the total fits; checked_sum then errs, never lies.
                Ok(total) => prop_assert!(checked.map_or(true, |a| a.get() == total)),
                Err(_) => prop_assert!(checked.is_err()),
            }
        }

        #[test]
        fn clamp_is_never_negative(v in any::<i64>()) {
            let clamped = Amount::new(v).clamp_non_negative();
            prop_assert!(clamped.get() >= 0);
            prop_assert!(clamped.get() == v || v < 0);
        }
    }
}
