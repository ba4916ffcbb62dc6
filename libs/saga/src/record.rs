//! A saga as the driver and the kinds see it.

use settle_platform::Scope;
use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::Code;

/// Lifecycle: `running` → `succeeded`, or `running` → `compensating` → `failed` (a saga whose first
/// step is refused fails without compensating).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaState {
    Running,
    Compensating,
    Succeeded,
    Failed,
}

impl SagaState {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Compensating => "compensating",
            SagaState::Succeeded => "succeeded",
            SagaState::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "running" => Some(SagaState::Running),
            "compensating" => Some(SagaState::Compensating),
            "succeeded" => Some(SagaState::Succeeded),
            "failed" => Some(SagaState::Failed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, SagaState::Succeeded | SagaState::Failed)
    }
}

/// Why a saga failed, kept so a retried request gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaFailure {
    pub code: Code,
    /// The `ErrorInfo.reason` (`invoice_not_open`, …).
    pub reason: String,
    pub message: String,
}

/// A saga to record.
#[derive(Debug, Clone)]
pub struct NewSaga {
    pub id: String,
    /// The (account, mode) the saga acts in; every step it takes is scoped by it.
    pub scope: Scope,
    pub kind: &'static str,
    /// The first step to run.
    pub step: &'static str,
    /// The kind's own state, encoded as the kind likes.
    pub data: Vec<u8>,
    /// Ids of the objects the saga works on, by Stripe field name (shown by SagaService).
    pub subjects: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    /// The operation's answer when the first local step (recorded with the saga) already decides it.
    pub result: Option<Vec<u8>>,
}

/// A recorded saga.
#[derive(Debug, Clone, PartialEq)]
pub struct Saga {
    pub id: String,
    /// The (account, mode) the saga acts in; every step it takes is scoped by it.
    pub scope: Scope,
    pub kind: String,
    pub state: SagaState,
    pub step: String,
    pub data: Vec<u8>,
    pub subjects: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    /// The encoded response the operation answered with (set by the step that decided it).
    pub result: Option<Vec<u8>>,
    pub failure: Option<SagaFailure>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub lease_holder: Option<String>,
    /// Unix milliseconds.
    pub lease_expires_at: i64,
    pub lease_version: i64,
    /// The W3C trace context of the request that started the saga.
    pub traceparent: Option<String>,
    pub created: i64,
    pub updated: i64,
    pub completed_at: Option<i64>,
}

/// Proof that this replica holds a saga's lease. Local steps pass it to [`crate::store::advance`]
/// so that a replica whose lease was taken over cannot write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub saga_id: String,
    pub holder: Arc<str>,
    pub version: i64,
}
