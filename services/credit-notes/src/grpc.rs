//! gRPC handlers: they translate requests into the draft computation, store calls and sagas, and
//! errors into statuses (once, in [`error`]).

pub mod credit_notes;
pub mod error;
pub mod params;

pub use credit_notes::CreditNotesApi;

use settle_platform::db::Db;
use settle_platform::outbox::EventHub;
use settle_saga::SagaRunner;

use crate::peers::Peers;

/// What every handler of the credit-notes service shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub hub: EventHub,
    pub peers: Peers,
    pub runner: SagaRunner,
}
