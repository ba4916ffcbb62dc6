//! settle's invoices service. This first version serves its events, health and reflection; the
//! invoice, invoice-payment, customer-balance and saga APIs arrive with their own issue.

pub mod config;
pub mod domain;
pub mod startup;

/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50051;

/// The invoices service's tables (none of its own yet; the platform's are always applied).
pub static MIGRATIONS: settle_platform::db::Migrations =
    settle_platform::db::Migrations::none("invoices");
