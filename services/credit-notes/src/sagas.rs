//! Issuing and voiding credit notes as sagas across the three stores (design: "The saga"). Every
//! remote step is idempotent on the saga id, so after a crash the recovery loop repeats the remote
//! steps since the last local one; a definitive refusal is recorded (a local commit) before any
//! compensation, so a crash while compensating resumes the compensation, not the refused step.
//!
//! - [`issue`]: reserve the credit on the invoice → claim (and create) the refunds → apply the
//!   credit → mark the note issued; compensated by releasing the claims and the reservation;
//! - [`void`]: reverse the applied credit → mark the note void; a refusal unmarks the note.

pub mod issue;
pub mod void;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_platform::db::Db;
use settle_platform::outbox::{EventHub, EventOrigin};
use settle_proto::common::v1::ErrorReason;
use settle_saga::store as saga_store;
use settle_saga::{Fence, Saga, SagaFailure, SagaState, StepFailure, Transition};

use crate::peers::{Peers, reason_of};

/// What the sagas of the credit-notes service share.
#[derive(Clone, Debug)]
pub struct Context {
    pub db: Db,
    pub hub: EventHub,
    pub peers: Peers,
}

impl Context {
    pub fn new(db: Db, hub: EventHub, peers: Peers) -> Arc<Context> {
        Arc::new(Context { db, hub, peers })
    }
}

/// A refusal kept in saga data until the saga ends with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRefusal {
    pub code: i32,
    pub reason: String,
    pub message: String,
}

impl StoredRefusal {
    /// A peer's definitive refusal, passed through as the peer gave it.
    pub fn from_status(status: &tonic::Status) -> Self {
        let reason = reason_of(status);
        StoredRefusal {
            code: status.code() as i32,
            reason: if reason.is_empty() { "state_unsupported".to_owned() } else { reason },
            message: status.message().to_owned(),
        }
    }

    pub fn new(code: tonic::Code, reason: ErrorReason, message: impl Into<String>) -> Self {
        StoredRefusal {
            code: code as i32,
            reason: settle_platform::error::reason_code(reason),
            message: message.into(),
        }
    }

    pub fn failure(&self) -> SagaFailure {
        SagaFailure {
            code: tonic::Code::from_i32(self.code),
            reason: self.reason.clone(),
            message: self.message.clone(),
        }
    }
}

/// The origin of the events a saga's local steps write: the account and the idempotency key of the
/// request that started it.
pub fn origin(saga: &Saga) -> EventOrigin {
    EventOrigin { scope: saga.scope.clone(), request_id: None, idempotency_key: saga.idempotency_key.clone() }
}

/// Saga data is JSON: readable in the log, and tolerant of fields added later.
pub fn decode<T: for<'de> Deserialize<'de>>(saga: &Saga) -> Result<T, StepFailure> {
    serde_json::from_slice(&saga.data).map_err(|e| StepFailure::Retry(format!("saga data unreadable: {e}")))
}

pub fn encode<T: Serialize>(data: &T) -> Vec<u8> {
    serde_json::to_vec(data).unwrap_or_default()
}

/// A local step's database failure: retried.
pub fn db_retry(error: impl std::fmt::Display) -> StepFailure {
    StepFailure::Retry(format!("database: {error}"))
}

/// The failure a saga ends with when something that cannot happen did (a bug): reported, not
/// retried forever.
pub fn internal_failure(message: impl std::fmt::Display) -> SagaFailure {
    SagaFailure {
        code: tonic::Code::Internal,
        reason: settle_platform::error::reason_code(ErrorReason::InternalError),
        message: format!("{message}"),
    }
}

/// Records a decision — the saga moves to `step` with `data` — in a transaction of its own, so a
/// crash after it resumes from `step` (used to enter compensation with the refusal kept).
pub async fn record(
    db: &Db,
    fence: &Fence,
    step: &'static str,
    data: Vec<u8>,
    state: SagaState,
) -> Result<Transition, StepFailure> {
    let mut tx = db.begin().await.map_err(db_retry)?;
    saga_store::advance(&mut tx, fence, step, &data, state, None).await?;
    tx.commit().await.map_err(db_retry)?;
    Ok(Transition::Committed { step, data, state, result: None })
}
