//! Applying payments to invoices and taking them off again, as sagas across the invoices and
//! payments stores (design: "The saga"). Every step is idempotent on the saga id and every
//! intermediate state errs on the safe side: a payment is reserved in payments before any invoice
//! counts it, and an invoice stops counting it before payments frees it.
//!
//! - [`attach`]: reserve → apply (local) → confirm (→ sync), compensated by release;
//! - [`detach`]: unapply (local, with the saga record) → release;
//! - [`reapply`]: unapply from the source (local) → release → then attach to the target, and if the
//!   target refuses, attach back to the source;
//! - [`effects`]: what each of these does to an invoice, with the events Stripe emits.

pub mod attach;
pub mod default_payment;
pub mod detach;
pub mod effects;
pub mod pay;
pub mod reapply;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_platform::db::Db;
use settle_platform::outbox::{EventHub, EventOrigin};
use settle_proto::common::v1::ErrorReason;
use settle_saga::{Saga, SagaFailure, StepFailure};

use crate::peers::Payments;

/// What the sagas of the invoices service share.
#[derive(Clone, Debug)]
pub struct Context {
    pub db: Db,
    pub hub: EventHub,
    pub payments: Payments,
}

impl Context {
    pub fn new(db: Db, hub: EventHub, payments: Payments) -> Arc<Context> {
        Arc::new(Context { db, hub, payments })
    }
}

/// Which kind of payment a saga moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    PaymentIntent,
    PaymentRecord,
}

impl PaymentKind {
    pub fn of(payment: &str) -> Option<PaymentKind> {
        if payment.starts_with("pi_") {
            Some(PaymentKind::PaymentIntent)
        } else if payment.starts_with("pr_") {
            Some(PaymentKind::PaymentRecord)
        } else {
            None
        }
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
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic_types::StatusExt;
        let reason = status
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_else(|| "payments_refused".to_owned());
        StoredRefusal { code: status.code() as i32, reason, message: status.message().to_owned() }
    }

    pub fn from_refusal(refusal: &effects::Refusal) -> Self {
        StoredRefusal {
            code: refusal.code as i32,
            reason: settle_platform::error::reason_code(refusal.reason),
            message: refusal.message.clone(),
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

/// The failure a saga ends with when a stored document is unreadable (a bug): reported, not retried
/// forever.
pub fn internal_failure(message: impl std::fmt::Display) -> SagaFailure {
    SagaFailure {
        code: tonic::Code::Internal,
        reason: settle_platform::error::reason_code(ErrorReason::InternalError),
        message: format!("{message}"),
    }
}
