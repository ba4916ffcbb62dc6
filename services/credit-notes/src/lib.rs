//! settle's credit-notes service: credit notes and their lines, preview, and the sagas that issue
//! and void them across the invoices and payments stores.
//!
//! - [`domain`]: a note's amounts, split, limits, statuses and number (pure);
//! - [`model`]: the stored Stripe-shaped documents;
//! - [`draft`]: the note a set of create parameters would issue (Create and Preview share it);
//! - [`store`]: SQL per table, taking the caller's transaction;
//! - [`peers`]: the invoices and payments services as this one calls them;
//! - [`grpc`]: `CreditNoteService` and the one error mapping;
//! - [`sagas`]: issuing and voiding, step by step.

pub mod config;
pub mod domain;
pub mod draft;
pub mod grpc;
pub mod model;
pub mod peers;
pub mod sagas;
pub mod startup;
pub mod store;

/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50053;

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The credit-notes service's tables (the saga log's are applied beside them at startup).
pub static MIGRATIONS: settle_platform::db::Migrations =
    settle_platform::db::Migrations::new("credit-notes", &POSTGRES, &SQLITE);
