//! Credit-note logic: no gRPC, no SQL.
//!
//! - [`lines`]: what each line credits, and its share of the invoice line's taxes;
//! - [`totals`]: the note's amounts, the invoice's limit and the pre/post split;
//! - [`refunds`]: how much each linked refund counts for, and which payment a new refund refunds;
//! - [`note`]: statuses, voidability and numbering.

pub mod error;
pub mod lines;
pub mod note;
pub mod refunds;
pub mod totals;
