//! gRPC handlers: they translate requests into domain commands and store calls, and errors into
//! statuses.

pub mod invoice_payments;

pub use invoice_payments::InvoicePaymentsApi;

use settle_platform::db::Db;
use settle_platform::outbox::EventHub;

/// What every handler of the invoices service shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub hub: EventHub,
}
