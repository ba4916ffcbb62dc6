//! Charges (fixed amounts, or decimal unit amounts × quantities) live in `settle_money`, shared with
//! credit notes.

pub use settle_money::charge::*;
