//! gRPC handlers: they translate requests into domain commands and store calls, and errors into
//! statuses.

pub mod applications;
pub mod charges;
pub mod credit_ledger;
pub mod customer_balance;
pub mod error_credit_ledger;
pub mod error_invoices;
pub mod event_quarantine;
pub mod invoice_items;
pub mod invoice_payments;
pub mod invoices;

pub use credit_ledger::CreditLedgerApi;
pub use customer_balance::CustomerBalanceApi;
pub use event_quarantine::EventQuarantineApi;
pub use invoice_items::InvoiceItemsApi;
pub use invoice_payments::InvoicePaymentsApi;
pub use invoices::InvoicesApi;

use std::sync::Arc;

use settle_platform::db::Db;
use settle_platform::outbox::EventHub;
use settle_saga::SagaRunner;

/// What every handler of the invoices service shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub hub: EventHub,
    /// The payment-application sagas' context (the payments service's clients).
    pub applications: Arc<crate::applications::Context>,
    pub runner: SagaRunner,
}
