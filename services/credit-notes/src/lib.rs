//! settle's credit-notes service: credit notes and their lines, preview, and the sagas that issue
//! and void them across the invoices and payments stores.
//!
//! - [`domain`]: a note's amounts, split, limits, statuses and number (pure);
//! - [`model`]: the stored Stripe-shaped documents;
//! - [`store`]: SQL per table, taking the caller's transaction;
//! - [`peers`]: the invoices and payments services as this one calls them;
//! - [`grpc`]: `CreditNoteService` and the one error mapping;
//! - [`sagas`]: issuing and voiding, step by step.

pub mod config;
pub mod domain;
pub mod startup;

/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50053;

/// The credit-notes service's tables (none of its own yet; the platform's are always applied).
pub static MIGRATIONS: settle_platform::db::Migrations =
    settle_platform::db::Migrations::none("credit-notes");
