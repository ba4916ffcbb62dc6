//! End-to-end tests of the credit-notes service with invoices and payments running beside it, over
//! gRPC, on SQLite and PostgreSQL.

// Test code: a panic is a clear failure, so unwrap and expect are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod issue;
mod preview;
mod races;
mod refusals;
