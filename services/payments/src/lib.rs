//! settle's payments service: the payments the invoices side can count.
//!
//! - [`domain`]: the payment-intent state machine and test payment methods (pure);
//! - [`model`]: how a domain object and its stored Stripe-shaped document relate;
//! - [`store`]: SQL for each table, taking the caller's transaction;
//! - [`grpc`]: the gRPC handlers and the one error mapping;
//! - [`startup`]: building and running the service.

pub mod config;
pub mod domain;
pub mod grpc;
pub mod model;
pub mod startup;
pub mod store;

use sqlx::migrate::Migrator;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// The payments service's tables.
pub static MIGRATIONS: settle_platform::db::Migrations =
    settle_platform::db::Migrations::new("payments", &POSTGRES, &SQLITE);

/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50052;
