//! `settle.common.v1.SagaService`: a read-only view of the saga log for operators.

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::db::Db;
use settle_platform::ids::IdPrefix;
use settle_platform::pagination::PageRequest;
use settle_proto::common::v1 as pb;
use settle_proto::common::v1::ErrorReason;
use settle_proto::common::v1::saga_service_server::SagaService;
use tonic::{Request, Response, Status};

use crate::record::{Saga, SagaState};
use crate::store::{self, ListFilter};

/// Serves an orchestrator's saga log.
#[derive(Clone, Debug)]
pub struct SagaLogService {
    db: Db,
}

impl SagaLogService {
    pub fn new(db: Db) -> Self {
        SagaLogService { db }
    }
}

fn kind_to_pb(kind: &str) -> pb::SagaKind {
    pb::SagaKind::from_str_name(&format!("SAGA_KIND_{}", kind.to_ascii_uppercase()))
        .unwrap_or(pb::SagaKind::Unspecified)
}

fn kind_from_pb(kind: pb::SagaKind) -> Option<String> {
    kind.as_str_name().strip_prefix("SAGA_KIND_").filter(|k| *k != "UNSPECIFIED").map(str::to_ascii_lowercase)
}

fn state_to_pb(state: SagaState) -> pb::SagaState {
    match state {
        SagaState::Running => pb::SagaState::Running,
        SagaState::Compensating => pb::SagaState::Compensating,
        SagaState::Succeeded => pb::SagaState::Succeeded,
        SagaState::Failed => pb::SagaState::Failed,
    }
}

fn state_from_pb(state: pb::SagaState) -> Option<SagaState> {
    match state {
        pb::SagaState::Unspecified => None,
        pb::SagaState::Running => Some(SagaState::Running),
        pb::SagaState::Compensating => Some(SagaState::Compensating),
        pb::SagaState::Succeeded => Some(SagaState::Succeeded),
        pb::SagaState::Failed => Some(SagaState::Failed),
    }
}

/// Renders a saga for the API (lease times in seconds, like every other timestamp).
/// What a client is told of a step's last error: its kind (`database`, `peer unavailable`), never
/// the database's or a peer's own text, which can name hosts, tables and other tenants' values
/// (the full text is in the service's log, under the saga's id).
fn public_error(error: &str) -> String {
    let kind = error.split(':').next().unwrap_or_default().trim();
    let plain = !kind.is_empty()
        && kind.len() <= 40
        && kind.chars().all(|c| c.is_ascii_alphanumeric() || " _-".contains(c));
    if plain { kind.to_owned() } else { "step failed".to_owned() }
}

/// The replica holding a lease, as an opaque tag: enough to tell replicas apart, without
/// publishing pod or host names.
fn public_holder(holder: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(holder.as_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("replica_{tag}")
}

/// How a saga ended, as a client may see it: its reason and refusal message, bounded; an
/// internal failure says only that.
fn public_failure(failure: &crate::record::SagaFailure) -> String {
    if failure.reason == settle_platform::error::reason_code(ErrorReason::InternalError) {
        return format!("{}: see the service log", failure.reason);
    }
    let message: String = failure.message.chars().take(300).collect();
    format!("{}: {message}", failure.reason)
}

pub fn render(saga: &Saga) -> pb::Saga {
    let live = !saga.state.is_terminal();
    pb::Saga {
        id: saga.id.clone(),
        object: "saga".to_owned(),
        kind: kind_to_pb(&saga.kind) as i32,
        state: state_to_pb(saga.state) as i32,
        step: saga.step.clone(),
        attempts: saga.attempts,
        last_error: saga
            .last_error
            .as_deref()
            .map(public_error)
            .or_else(|| saga.failure.as_ref().map(public_failure)),
        lease_holder: if live { saga.lease_holder.as_deref().map(public_holder) } else { None },
        lease_expires_at: live.then_some(saga.lease_expires_at / 1000),
        subjects: saga.subjects.clone().into_iter().collect(),
        idempotency_key: saga.idempotency_key.clone(),
        created: saga.created,
        updated: saga.updated,
        completed_at: saga.completed_at,
    }
}

#[tonic::async_trait]
impl SagaService for SagaLogService {
    async fn get_saga(&self, request: Request<pb::GetSagaRequest>) -> Result<Response<pb::Saga>, Status> {
        let ctx = RequestContext::of(&request)?;
        let id = request.into_inner().id;
        let not_found = || ApiError::not_found(IdPrefix::Saga, &id, "id");
        if !IdPrefix::Saga.matches(&id) {
            return Err(not_found().into());
        }
        let saga =
            store::get(&self.db, ctx.scope(), &id).await.map_err(ApiError::from)?.ok_or_else(not_found)?;
        Ok(Response::new(render(&saga)))
    }

    async fn list_sagas(
        &self,
        request: Request<pb::ListSagasRequest>,
    ) -> Result<Response<pb::ListSagasResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        let params = request.into_inner();
        let invalid = |field: &str| {
            ApiError::invalid_param(field, ErrorReason::ParameterInvalid, format!("Invalid {field}."))
        };
        let state = match params.state {
            None => None,
            Some(value) => Some(
                pb::SagaState::try_from(value)
                    .ok()
                    .and_then(state_from_pb)
                    .ok_or_else(|| invalid("state"))?,
            ),
        };
        let kind = match params.kind {
            None => None,
            Some(value) => Some(
                pb::SagaKind::try_from(value).ok().and_then(kind_from_pb).ok_or_else(|| invalid("kind"))?,
            ),
        };
        let page = PageRequest::parse(
            params.limit,
            params.starting_after.as_deref(),
            params.ending_before.as_deref(),
            IdPrefix::Saga,
        )?;
        let filter = ListFilter { state, kind, stuck: params.stuck, created: params.created };
        let page = store::list(&self.db, ctx.scope(), &filter, &page).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListSagasResponse {
            data: page.data.iter().map(render).collect(),
            has_more: page.has_more,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_proto_enum() {
        assert_eq!(kind_to_pb("attach_payment"), pb::SagaKind::AttachPayment);
        assert_eq!(kind_from_pb(pb::SagaKind::IssueCreditNote).as_deref(), Some("issue_credit_note"));
        assert_eq!(kind_to_pb("nonsense"), pb::SagaKind::Unspecified);
    }

    #[test]
    fn errors_and_holders_are_shown_without_internal_detail() {
        assert_eq!(public_error("peer unavailable"), "peer unavailable");
        assert_eq!(
            public_error(
                "database: error returned from database: relation \"sagas\" does not exist at db-7.internal"
            ),
            "database"
        );
        assert_eq!(public_error("\"quoted\" host-name.internal:5432 refused"), "step failed");
        let holder = public_holder("invoices-7d9f8-pod-xk2:4f1c");
        assert!(holder.starts_with("replica_") && !holder.contains("pod"), "{holder}");
        assert_eq!(holder, public_holder("invoices-7d9f8-pod-xk2:4f1c"));
        let internal = crate::record::SagaFailure {
            code: tonic::Code::Internal,
            reason: "internal_error".into(),
            message: "saga data unreadable: expected value at line 1".into(),
        };
        assert_eq!(public_failure(&internal), "internal_error: see the service log");
        let refused = crate::record::SagaFailure {
            code: tonic::Code::FailedPrecondition,
            reason: "invoice_not_open".into(),
            message: "x".repeat(10_000),
        };
        assert!(public_failure(&refused).len() < 400);
    }
}
