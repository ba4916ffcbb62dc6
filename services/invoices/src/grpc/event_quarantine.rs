//! `EventQuarantineService`: the payments events the consumer could not apply, scoped to the
//! caller's (account, livemode), and retrying one.

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::ids::IdPrefix;
use settle_platform::pagination::PageRequest;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::event_quarantine_service_server::EventQuarantineService;
use tonic::{Request, Response, Status};

use super::AppState;
use crate::store::quarantined_events;

/// The handlers of `EventQuarantineService`.
#[derive(Clone, Debug)]
pub struct EventQuarantineApi {
    state: AppState,
}

impl EventQuarantineApi {
    pub fn new(state: AppState) -> Self {
        EventQuarantineApi { state }
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListQuarantinedEventsRequest,
    ) -> Result<pb::ListQuarantinedEventsResponse, ApiError> {
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::Event,
        )?;
        let status = match req.status.map(pb::QuarantineStatus::try_from) {
            None => None,
            Some(Ok(status @ (pb::QuarantineStatus::Quarantined | pb::QuarantineStatus::Resolved))) => {
                Some(status)
            }
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "status",
                    ErrorReason::ParameterInvalid,
                    "status must be quarantined or resolved.",
                ));
            }
        };
        let page = quarantined_events::list(&self.state.db, ctx.scope(), status, &page).await?;
        Ok(pb::ListQuarantinedEventsResponse { data: page.data, has_more: page.has_more })
    }
}

#[tonic::async_trait]
impl EventQuarantineService for EventQuarantineApi {
    async fn list_quarantined_events(
        &self,
        request: Request<pb::ListQuarantinedEventsRequest>,
    ) -> Result<Response<pb::ListQuarantinedEventsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn retry_quarantined_event(
        &self,
        request: Request<pb::RetryQuarantinedEventRequest>,
    ) -> Result<Response<pb::QuarantinedEvent>, Status> {
        let ctx = RequestContext::of(&request)?;
        let id = request.into_inner().id;
        let state = &self.state;
        let event =
            crate::consumer::quarantine::retry(&state.applications, &state.runner, ctx.scope(), &id).await?;
        Ok(Response::new(event))
    }
}
