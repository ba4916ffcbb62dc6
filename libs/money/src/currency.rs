//! ISO 4217 currencies as Stripe accepts them: three lowercase letters.

use std::fmt;

/// A currency settle accepts: an index into the table of supported ISO 4217 codes, so it is `Copy`,
/// one byte wide and cannot hold an unsupported code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(u8);

/// Why a currency code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error(
        "Invalid currency: {0:?}. Use a three-letter ISO currency code, in lowercase, that settle supports (e.g. usd, eur, jpy)."
    )]
    Unsupported(String),
}

/// (code, minor-unit exponent, minimum charge in minor units) for every currency Stripe settles.
/// The minimum is Stripe's documented minimum charge where it publishes one, else 1 minor unit.
const CURRENCIES: &[(&str, u8, i64)] = &[
    ("aed", 2, 200),
    ("afn", 2, 1),
    ("all", 2, 1),
    ("amd", 2, 1),
    ("ang", 2, 1),
    ("aoa", 2, 1),
    ("ars", 2, 1),
    ("aud", 2, 50),
    ("awg", 2, 1),
    ("azn", 2, 1),
    ("bam", 2, 1),
    ("bbd", 2, 1),
    ("bdt", 2, 1),
    ("bgn", 2, 100),
    ("bhd", 3, 1),
    ("bif", 0, 1),
    ("bmd", 2, 1),
    ("bnd", 2, 1),
    ("bob", 2, 1),
    ("brl", 2, 50),
    ("bsd", 2, 1),
    ("bwp", 2, 1),
    ("byn", 2, 1),
    ("bzd", 2, 1),
    ("cad", 2, 50),
    ("cdf", 2, 1),
    ("chf", 2, 50),
    ("clp", 0, 1),
    ("cny", 2, 1),
    ("cop", 2, 1),
    ("crc", 2, 1),
    ("cve", 2, 1),
    ("czk", 2, 1500),
    ("djf", 0, 1),
    ("dkk", 2, 250),
    ("dop", 2, 1),
    ("dzd", 2, 1),
    ("egp", 2, 1),
    ("etb", 2, 1),
    ("eur", 2, 50),
    ("fjd", 2, 1),
    ("fkp", 2, 1),
    ("gbp", 2, 30),
    ("gel", 2, 1),
    ("gip", 2, 1),
    ("gmd", 2, 1),
    ("gnf", 0, 1),
    ("gtq", 2, 1),
    ("gyd", 2, 1),
    ("hkd", 2, 400),
    ("hnl", 2, 1),
    ("htg", 2, 1),
    ("huf", 2, 17500),
    ("idr", 2, 1),
    ("ils", 2, 1),
    ("inr", 2, 50),
    ("isk", 0, 1),
    ("jmd", 2, 1),
    ("jod", 3, 1),
    ("jpy", 0, 50),
    ("kes", 2, 1),
    ("kgs", 2, 1),
    ("khr", 2, 1),
    ("kmf", 0, 1),
    ("krw", 0, 1),
    ("kwd", 3, 1),
    ("kyd", 2, 1),
    ("kzt", 2, 1),
    ("lak", 2, 1),
    ("lbp", 2, 1),
    ("lkr", 2, 1),
    ("lrd", 2, 1),
    ("lsl", 2, 1),
    ("mad", 2, 1),
    ("mdl", 2, 1),
    ("mga", 0, 1),
    ("mkd", 2, 1),
    ("mmk", 2, 1),
    ("mnt", 2, 1),
    ("mop", 2, 1),
    ("mur", 2, 1),
    ("mvr", 2, 1),
    ("mwk", 2, 1),
    ("mxn", 2, 1000),
    ("myr", 2, 200),
    ("mzn", 2, 1),
    ("nad", 2, 1),
    ("ngn", 2, 1),
    ("nio", 2, 1),
    ("nok", 2, 300),
    ("npr", 2, 1),
    ("nzd", 2, 50),
    ("omr", 3, 1),
    ("pab", 2, 1),
    ("pen", 2, 1),
    ("pgk", 2, 1),
    ("php", 2, 1),
    ("pkr", 2, 1),
    ("pln", 2, 200),
    ("pyg", 0, 1),
    ("qar", 2, 1),
    ("ron", 2, 200),
    ("rsd", 2, 1),
    ("rub", 2, 1),
    ("rwf", 0, 1),
    ("sar", 2, 1),
    ("sbd", 2, 1),
    ("scr", 2, 1),
    ("sek", 2, 300),
    ("sgd", 2, 50),
    ("shp", 2, 1),
    ("sle", 2, 1),
    ("sos", 2, 1),
    ("srd", 2, 1),
    ("std", 2, 1),
    ("szl", 2, 1),
    ("thb", 2, 1000),
    ("tjs", 2, 1),
    ("tnd", 3, 1),
    ("top", 2, 1),
    ("try", 2, 1),
    ("ttd", 2, 1),
    ("twd", 2, 1),
    ("tzs", 2, 1),
    ("uah", 2, 1),
    ("ugx", 0, 1),
    ("usd", 2, 50),
    ("uyu", 2, 1),
    ("uzs", 2, 1),
    ("vnd", 0, 1),
    ("vuv", 0, 1),
    ("wst", 2, 1),
    ("xaf", 0, 1),
    ("xcd", 2, 1),
    ("xof", 0, 1),
    ("xpf", 0, 1),
    ("yer", 2, 1),
    ("zar", 2, 1),
    ("zmw", 2, 1),
];

impl Currency {
    /// Parses a lowercase three-letter code that settle supports.
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        CURRENCIES
            .binary_search_by(|(c, _, _)| c.cmp(&code))
            .ok()
            .and_then(|index| u8::try_from(index).ok())
            .map(Currency)
            .ok_or_else(|| CurrencyError::Unsupported(code.to_owned()))
    }

    fn row(self) -> &'static (&'static str, u8, i64) {
        &CURRENCIES[usize::from(self.0)]
    }

    /// The lowercase ISO code, e.g. `usd`.
    pub fn as_str(self) -> &'static str {
        self.row().0
    }

    /// Digits after the decimal point: 2 for `usd`, 0 for `jpy`, 3 for `kwd`.
    pub fn exponent(self) -> u8 {
        self.row().1
    }

    /// The smallest amount Stripe lets a payment charge in this currency, in minor units.
    pub fn minimum_charge(self) -> i64 {
        self.row().2
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl std::str::FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn parses_supported_lowercase_codes() {
        let usd = Currency::parse("usd").unwrap();
        assert_eq!(usd.as_str(), "usd");
        assert_eq!(usd.exponent(), 2);
        assert_eq!(usd.minimum_charge(), 50);
        assert_eq!(Currency::parse("jpy").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("kwd").unwrap().exponent(), 3);
    }

    #[test]
    fn rejects_unknown_uppercase_and_malformed_codes() {
        for bad in ["xx", "USD", "usdd", "", "zzz", "us"] {
            assert!(Currency::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn table_fits_the_one_byte_index() {
        assert!(CURRENCIES.len() <= usize::from(u8::MAX));
    }
}
