//! gRPC handlers: they translate requests into domain commands and store calls, and errors into
//! statuses (once, in [`error`]).

pub mod attachments;
pub mod error;
pub mod error_payment_records;
pub mod error_refund_claims;
pub mod error_refunds;
pub mod params;
pub mod payment_intents;
pub mod payment_records;
pub mod refund_claims;
pub mod refunds;
pub mod test_helpers;

pub use attachments::AttachmentsApi;
pub use payment_intents::PaymentIntentsApi;
pub use payment_records::PaymentRecordsApi;
pub use refund_claims::RefundClaimsApi;
pub use refunds::RefundsApi;
pub use test_helpers::TestHelpersApi;

use settle_platform::db::Db;
use settle_platform::outbox::EventHub;

/// What every handler of the payments service shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub hub: EventHub,
}

impl AppState {
    pub fn new(db: Db, hub: EventHub) -> Self {
        AppState { db, hub }
    }
}
