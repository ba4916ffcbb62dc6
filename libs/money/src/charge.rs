//! A charge: a fixed amount, or a unit amount times a quantity, as invoice items, invoice lines and
//! credit note lines have them.
//!
//! What an invoice item (and so its line) charges: a fixed `amount`, or a unit amount times a
//! quantity. Unit amounts and quantities are non-negative decimals with at most 12 decimal places
//! (Stripe's `unit_amount_decimal`, `quantity_decimal`); their product is rounded half away from zero
//! to the currency's minor unit.
//!
//! settle's decisions where Stripe is silent: a fixed amount covers the whole item, so it takes no
//! quantity other than 1 (a negative charge can only be a fixed amount, since prices are never
//! negative); and an item's amount stays within ±[`MAX_AMOUNT`], so an invoice of 250 items cannot
//! overflow.

use std::fmt;

use crate::Amount;

/// Decimal places a decimal amount or quantity may have.
pub const DECIMAL_PLACES: u32 = 12;
const SCALE: i128 = 10_i128.pow(DECIMAL_PLACES);
/// Largest magnitude of an item's amount, in minor units.
pub const MAX_AMOUNT: i64 = 999_999_999_999;
/// Largest decimal accepted (integer part), keeping products within `i128`.
const MAX_INTEGER_PART: i128 = 1_000_000_000_000_000;

/// A non-negative decimal with at most 12 decimal places.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(i128);

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("it must be a non-negative decimal number such as 12.5")]
    Malformed,
    #[error("it can have at most 12 decimal places")]
    TooPrecise,
    #[error("it is too large")]
    TooLarge,
}

impl Decimal {
    pub const ZERO: Decimal = Decimal(0);
    pub const ONE: Decimal = Decimal(SCALE);

    /// A whole, non-negative number.
    pub fn from_int(value: i64) -> Result<Self, DecimalError> {
        if value < 0 {
            return Err(DecimalError::Malformed);
        }
        if i128::from(value) >= MAX_INTEGER_PART {
            return Err(DecimalError::TooLarge);
        }
        Ok(Decimal(i128::from(value) * SCALE))
    }

    /// Parses `12`, `12.5` or `0.000000000001`; no sign, exponent or spaces.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (text.contains('.') && frac.is_empty()) {
            return Err(DecimalError::Malformed);
        }
        if frac.len() > DECIMAL_PLACES as usize {
            return Err(DecimalError::TooPrecise);
        }
        let int = int.trim_start_matches('0');
        if int.len() > 16 {
            return Err(DecimalError::TooLarge);
        }
        let whole: i128 =
            if int.is_empty() { 0 } else { int.parse().map_err(|_| DecimalError::Malformed)? };
        if whole >= MAX_INTEGER_PART {
            return Err(DecimalError::TooLarge);
        }
        let mut fraction: i128 =
            if frac.is_empty() { 0 } else { frac.parse().map_err(|_| DecimalError::Malformed)? };
        for _ in frac.len()..DECIMAL_PLACES as usize {
            fraction *= 10;
        }
        Ok(Decimal(whole * SCALE + fraction))
    }

    /// The whole part, any fraction truncated (Stripe's `quantity` next to `quantity_decimal`).
    pub fn truncate(self) -> i64 {
        // Parsing bounds the integer part far below i64::MAX.
        i64::try_from(self.0 / SCALE).unwrap_or(i64::MAX)
    }

    /// An integer amount of minor units as a decimal, for `unit_amount`.
    pub fn is_whole(self) -> bool {
        self.0 % SCALE == 0
    }
}

impl fmt::Display for Decimal {
    /// The shortest form: `3`, `12.5`, `0.000000000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / SCALE, self.0 % SCALE);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:012}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// How an item is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing {
    /// `amount`: the whole charge (may be negative: a credit).
    Fixed(Amount),
    /// `unit_amount(_decimal)`: charged per unit.
    PerUnit(Decimal),
}

/// What an item charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub pricing: Pricing,
    pub quantity: Decimal,
}

/// Why a charge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    #[error("An amount is the item's whole charge: it takes no quantity other than 1.")]
    QuantityWithFixedAmount,
    #[error("The item's amount must be between -999999999999 and 999999999999.")]
    AmountTooLarge,
}

impl Charge {
    /// A fixed charge of `amount` (quantity 1).
    pub fn fixed(amount: Amount, quantity: Option<Decimal>) -> Result<Charge, ChargeError> {
        Charge { pricing: Pricing::Fixed(amount), quantity: quantity.unwrap_or(Decimal::ONE) }.checked()
    }

    /// `quantity` (default 1) units at `unit`.
    pub fn per_unit(unit: Decimal, quantity: Option<Decimal>) -> Result<Charge, ChargeError> {
        Charge { pricing: Pricing::PerUnit(unit), quantity: quantity.unwrap_or(Decimal::ONE) }.checked()
    }

    fn checked(self) -> Result<Charge, ChargeError> {
        if matches!(self.pricing, Pricing::Fixed(_)) && self.quantity != Decimal::ONE {
            return Err(ChargeError::QuantityWithFixedAmount);
        }
        self.amount().map(|_| self)
    }

    /// The charge in minor units: the fixed amount, or quantity × unit rounded half away from zero.
    pub fn amount(&self) -> Result<Amount, ChargeError> {
        let amount = match self.pricing {
            Pricing::Fixed(amount) => amount.get(),
            Pricing::PerUnit(unit) => {
                let product = unit.0.checked_mul(self.quantity.0).ok_or(ChargeError::AmountTooLarge)?;
                let scale = SCALE * SCALE;
                // Both factors are non-negative, so rounding half up is half away from zero.
                let rounded = (product / scale) + i128::from(product % scale >= scale / 2);
                i64::try_from(rounded).map_err(|_| ChargeError::AmountTooLarge)?
            }
        };
        if amount.unsigned_abs() > MAX_AMOUNT.unsigned_abs() {
            return Err(ChargeError::AmountTooLarge);
        }
        Ok(Amount::new(amount))
    }

    /// The unit amount, as Stripe's `pricing.unit_amount_decimal` shows it (`None` for a fixed
    /// amount: prices are never negative, so a fixed charge has no price).
    pub fn unit_amount(&self) -> Option<Decimal> {
        match self.pricing {
            Pricing::PerUnit(unit) => Some(unit),
            Pricing::Fixed(_) => None,
        }
    }

    /// Applies an update: a new fixed amount, a new unit amount, and/or a new quantity (the unit
    /// amount and the quantity are kept when not given).
    pub fn change(
        self,
        amount: Option<Amount>,
        unit: Option<Decimal>,
        quantity: Option<Decimal>,
    ) -> Result<Charge, ChargeError> {
        match (amount, unit) {
            (Some(amount), _) => Charge::fixed(amount, quantity),
            (None, Some(unit)) => Charge::per_unit(unit, quantity.or(Some(self.quantity))),
            (None, None) => Charge { quantity: quantity.unwrap_or(self.quantity), ..self }.checked(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    #[test]
    fn parses_and_prints_the_shortest_form() {
        for (text, shown) in
            [("3", "3"), ("12.50", "12.5"), ("0.000000000001", "0.000000000001"), ("007", "7")]
        {
            assert_eq!(d(text).to_string(), shown);
        }
        for bad in ["", ".5", "5.", "-1", "1e3", " 1", "1.2.3", "+1"] {
            assert_eq!(Decimal::parse(bad), Err(DecimalError::Malformed), "{bad:?}");
        }
        assert_eq!(Decimal::parse("1.0000000000001"), Err(DecimalError::TooPrecise));
        assert_eq!(Decimal::parse("99999999999999999"), Err(DecimalError::TooLarge));
        assert_eq!(d("12.9").truncate(), 12);
    }

    #[test]
    fn unit_amounts_times_quantities_round_half_away_from_zero() {
        let charge =
            |unit: &str, qty: &str| Charge::per_unit(d(unit), Some(d(qty))).unwrap().amount().unwrap().get();
        assert_eq!(charge("250", "3"), 750);
        assert_eq!(charge("0.5", "1"), 1);
        assert_eq!(charge("0.49", "1"), 0);
        assert_eq!(charge("33.333333333333", "3"), 100);
        assert_eq!(charge("1.25", "2.5"), 3);
        assert_eq!(charge("100", "0"), 0);
    }

    #[test]
    fn a_fixed_amount_takes_no_quantity_and_may_be_negative() {
        let credit = Charge::fixed(Amount::new(-500), None).unwrap();
        assert_eq!((credit.amount().unwrap().get(), credit.unit_amount()), (-500, None));
        assert_eq!(Charge::fixed(Amount::new(500), Some(d("2"))), Err(ChargeError::QuantityWithFixedAmount));
        assert_eq!(Charge::fixed(Amount::new(MAX_AMOUNT + 1), None), Err(ChargeError::AmountTooLarge));
        assert_eq!(Charge::per_unit(d("999999999999"), Some(d("2"))), Err(ChargeError::AmountTooLarge));
    }

    #[test]
    fn changes_keep_what_is_not_given() {
        let item = Charge::per_unit(d("200"), Some(d("3"))).unwrap();
        let more = item.change(None, None, Some(d("5"))).unwrap();
        assert_eq!(more.amount().unwrap().get(), 1_000);
        let repriced = more.change(None, Some(d("10")), None).unwrap();
        assert_eq!(repriced.amount().unwrap().get(), 50);
        let fixed = repriced.change(Some(Amount::new(-30)), None, None).unwrap();
        assert_eq!((fixed.amount().unwrap().get(), fixed.quantity), (-30, Decimal::ONE));
        assert_eq!(fixed.change(None, None, Some(d("2"))), Err(ChargeError::QuantityWithFixedAmount));
    }

    proptest! {
        #[test]
        fn printing_then_parsing_round_trips(whole in 0i64..1_000_000_000, frac in 0i64..1_000_000_000_000) {
            let value = Decimal(i128::from(whole) * SCALE + i128::from(frac));
            prop_assert_eq!(Decimal::parse(&value.to_string()), Ok(value));
        }

        #[test]
        fn whole_units_multiply_exactly(unit in 0i64..1_000_000, qty in 0i64..100_000) {
            let charge = Charge::per_unit(Decimal::from_int(unit).unwrap(), Some(Decimal::from_int(qty).unwrap())).unwrap();
            prop_assert_eq!(charge.amount().unwrap().get(), unit * qty);
        }

        #[test]
        fn decimal_amounts_are_within_half_a_unit(unit_millis in 0i64..100_000_000, qty in 0i64..10_000) {
            let unit = Decimal::parse(&format!("{}.{:03}", unit_millis / 1000, unit_millis % 1000)).unwrap();
            let amount = Charge::per_unit(unit, Some(Decimal::from_int(qty).unwrap())).unwrap().amount().unwrap().get();
            let exact_millis = i128::from(unit_millis) * i128::from(qty);
            prop_assert!((i128::from(amount) * 1000 - exact_millis).abs() <= 500);
            // More units never cost less.
            let next = Charge::per_unit(unit, Some(Decimal::from_int(qty + 1).unwrap())).unwrap().amount().unwrap().get();
            prop_assert!(next >= amount);
        }
    }
}
