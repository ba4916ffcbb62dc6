//! Money as settle handles it: an [`Amount`] is an `i64` count of a [`Currency`]'s minor unit (cents
//! for `usd`, yen for `jpy`), and every arithmetic step is checked. Conversions to other formats
//! happen only at the edges.

mod amount;
pub mod charge;
mod currency;

pub use amount::{Amount, AmountError};
pub use currency::{Currency, CurrencyError};
