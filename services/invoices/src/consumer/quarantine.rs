//! Quarantine: an event the consumer cannot apply is recorded, counted, and stepped over, in the
//! transaction that moves the cursor; [`retry`] applies one again on request.

use std::sync::{Arc, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use settle_platform::time::now_unix;
use settle_platform::{ApiError, Scope};
use settle_proto::common::v1::ErrorReason;
use settle_proto::events::v1 as ev;
use settle_proto::settle::invoices::v1 as pb;
use settle_saga::SagaRunner;
use tonic::Code;

use super::apply::{ApplyError, Finish, apply_event};
use super::{PRODUCER, TYPES, save_cursor};
use crate::applications::Context;
use crate::store::quarantined_events::{self, NewQuarantine};

/// `settle_consumer_quarantined_events_total`, by `source`, `type` (one of the followed types, or
/// `other`) and `reason`: every label takes a handful of values.
fn quarantined_counter() -> &'static Counter<u64> {
    static C: OnceLock<Counter<u64>> = OnceLock::new();
    C.get_or_init(|| {
        settle_platform::metrics::meter()
            .u64_counter("settle.consumer.quarantined_events")
            .with_description("Events a consumer could not apply and quarantined")
            .build()
    })
}

fn count(event_type: &str, reason: pb::QuarantineReason) {
    let event_type = TYPES.iter().find(|t| **t == event_type).copied().unwrap_or("other");
    quarantined_counter().add(
        1,
        &[
            KeyValue::new("source", PRODUCER),
            KeyValue::new("type", event_type),
            KeyValue::new("reason", quarantined_events::reason_code(reason)),
        ],
    );
}

/// Records `event` as quarantined and moves the cursor past it, in one transaction. Returns
/// `false` if this replica lost the stream meanwhile (nothing written).
pub async fn quarantine(
    ctx: &Arc<Context>,
    holder: &str,
    event: &ev::Event,
    cursor: &str,
    reason: pb::QuarantineReason,
    error: &str,
    attempts: u32,
) -> Result<bool, sqlx::Error> {
    let mut tx = ctx.db.begin().await?;
    let new = quarantined_events::record(
        &mut *tx,
        &NewQuarantine {
            source: PRODUCER,
            event_id: &event.id,
            account: event.account.as_deref().unwrap_or_default(),
            livemode: event.livemode,
            event_type: &event.r#type,
            object_id: &event.object_id,
            cursor,
            reason,
            error,
            attempts: i64::from(attempts),
            now: now_unix(),
        },
    )
    .await?;
    if !save_cursor(&mut *tx, holder, cursor).await? {
        return Ok(false);
    }
    tx.commit().await?;
    if new {
        count(&event.r#type, reason);
    }
    tracing::warn!(
        event = %event.id,
        r#type = %quarantined_events::bounded(&event.r#type, 64),
        reason = %quarantined_events::reason_code(reason),
        %error,
        "quarantined a payments event the consumer cannot apply"
    );
    Ok(true)
}

/// Applies the scope's quarantined event `id` again, read anew from payments; resolves it when
/// that succeeds or nothing is left to apply.
pub async fn retry(
    ctx: &Arc<Context>,
    runner: &SagaRunner,
    scope: &Scope,
    id: &str,
) -> Result<pb::QuarantinedEvent, ApiError> {
    let not_found = || ApiError::not_found(settle_platform::ids::IdPrefix::Event, id, "id");
    if !settle_platform::ids::IdPrefix::Event.matches(id) {
        return Err(not_found());
    }
    let row = quarantined_events::find(ctx.db.pool(), scope, id).await?.ok_or_else(not_found)?;
    if row.status == pb::QuarantineStatus::Resolved as i32 {
        return Ok(row);
    }
    let request = ev::GetEventRequest { id: id.to_owned() };
    let event = match ctx.payments.events.clone().get_event(ctx.payments.request(scope, request)).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::NotFound => {
            return Err(still_failing(
                ctx,
                scope,
                id,
                pb::QuarantineReason::ObjectMissing,
                "payments no longer keeps the event",
            )
            .await);
        }
        Err(status) => {
            return Err(ApiError::new(
                Code::Unavailable,
                ErrorReason::DependencyUnavailable,
                format!("The payments service could not give the event ({:?}); retry later.", status.code()),
            ));
        }
    };
    match apply_event(ctx, runner, &event, Finish::Resolve).await {
        Ok(true) => {}
        // Nothing left to apply (the invoice payment moved on meanwhile): resolved as well.
        Ok(false) => quarantined_events::resolve(ctx.db.pool(), scope, id, now_unix()).await?,
        Err(ApplyError::Permanent { reason, error }) => {
            return Err(still_failing(ctx, scope, id, reason, &error).await);
        }
        Err(ApplyError::Transient(error)) => return Err(error.into()),
        Err(ApplyError::LeaseLost) => {
            return Err(ApiError::new(Code::Unavailable, ErrorReason::DependencyUnavailable, "Retry later."));
        }
    }
    quarantined_events::find(ctx.db.pool(), scope, id).await?.ok_or_else(not_found)
}

/// Records one more failed attempt and answers FAILED_PRECONDITION.
async fn still_failing(
    ctx: &Arc<Context>,
    scope: &Scope,
    id: &str,
    reason: pb::QuarantineReason,
    error: &str,
) -> ApiError {
    if let Err(error) =
        quarantined_events::failed_again(ctx.db.pool(), scope, id, reason, error, now_unix()).await
    {
        return error.into();
    }
    ApiError::failed_precondition(
        ErrorReason::StateUnsupported,
        format!("The event still cannot be applied ({}).", quarantined_events::reason_code(reason)),
    )
}
