//! settle's invoices service: invoices and their lines, invoice items, invoice payments, customer
//! credit balances, and the saga that applies payments to invoices.
//!
//! - [`domain`]: amounts and the status machine (pure);
//! - [`model`]: how the stored Stripe-shaped document and the domain relate;
//! - [`store`]: SQL per table, taking the caller's transaction.

pub mod applications;
pub mod config;
pub mod consumer;
pub mod domain;
pub mod grpc;
pub mod model;
pub mod peers;
pub mod startup;
pub mod store;

/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50051;

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The invoices service's tables, and the saga log it orchestrates with.
pub static MIGRATIONS: settle_platform::db::Migrations =
    settle_platform::db::Migrations::new("invoices", &POSTGRES, &SQLITE);
