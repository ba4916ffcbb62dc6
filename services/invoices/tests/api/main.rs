//! End-to-end tests of the invoices service over gRPC, on SQLite and PostgreSQL.

// Test code: a panic is a clear failure, so unwrap and expect are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod credit_ledger;
mod customer_balance;
mod helpers;
mod invoice_items;
mod invoices;
mod lines;
mod render_after_commit;
