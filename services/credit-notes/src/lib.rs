//! settle's credit-notes service. This first version serves its events, health and reflection;
//! the credit-note API and its saga arrive with their own issue.

pub mod config;
pub mod startup;

/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50053;

/// The credit-notes service's tables (none of its own yet; the platform's are always applied).
pub static MIGRATIONS: settle_platform::db::Migrations =
    settle_platform::db::Migrations::none("credit-notes");
