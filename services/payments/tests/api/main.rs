//! End-to-end tests of the payments service over gRPC, on SQLite and PostgreSQL.

// Test code: a panic is a clear failure, so unwrap and expect are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attachments;
mod helpers;
mod payment_intents;
mod payment_records;
mod platform;
mod refund_claims;
mod refunds;
mod test_helper;
