//! Follows the payments service's event stream and applies what concerns invoices: a pending
//! payment that succeeds (an intent's `payment_intent.succeeded`, a record's
//! `payment_record.payment_attempt_guaranteed`) makes its `open` invoice payment `paid`; a canceled
//! intent's invoice payment is canceled and its attachment released (a detach saga).
//!
//! Each event is applied in the same transaction that advances the stored cursor, so a redelivered
//! event has no second effect (and every effect is conditional on the invoice payment's state
//! anyway). Events that concern no invoice only move the cursor, which is written at most every
//! [`CURSOR_FLUSH`]. One replica at a time follows the stream: it leases the cursor row.
//!
//! An event that cannot be applied must not stall every tenant behind it. A transient failure (the
//! database unavailable, a conflict) is retried with backoff at the same cursor; a permanent one
//! (its object cannot be decoded, the change cannot be made) is quarantined at once: recorded in
//! `quarantined_events`, counted, and the cursor moves past it in the same transaction
//! ([`quarantine`]). After [`MAX_TRANSIENT_ATTEMPTS`] transient failures of the same event in a row
//! it is quarantined too: the quarantine record itself needs the database, so it is only written
//! once the database answers again, and an event that keeps failing while it does answer is the
//! event's problem, not the database's.

pub mod apply;
pub mod quarantine;

use std::sync::Arc;
use std::time::Duration;

use settle_platform::Scope;
use settle_platform::client::Backoff;
use settle_platform::db::Db;
use settle_platform::time::now_unix;
use settle_proto::events::v1 as ev;
use settle_proto::settle::invoices::v1 as pb;
use settle_saga::{SagaRunner, store::now_millis};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::applications::Context;
use apply::{ApplyError, Finish, apply_event};

/// The producer name of the payments stream in `event_cursors`.
const PRODUCER: &str = "payments";
/// The event types that concern invoices.
const TYPES: [&str; 3] =
    ["payment_intent.succeeded", "payment_intent.canceled", "payment_record.payment_attempt_guaranteed"];
/// How long a replica holds the stream before another may take it over.
const LEASE: Duration = Duration::from_secs(5);
/// Longest a cursor that moved only over unrelated events stays unwritten.
const CURSOR_FLUSH: Duration = Duration::from_millis(500);
/// The internal calls of the consumer act for no particular account.
const SYSTEM_ACCOUNT: &str = "acct_settlesystem";
/// Transient failures of one event in a row after which it is quarantined: with the backoff below
/// (0.1 s doubling to 5 s) about 25 s, long enough to ride out a database failover or a burst of
/// serialization conflicts, short enough that other tenants' events wait less than half a minute.
pub const MAX_TRANSIENT_ATTEMPTS: u32 = 10;

/// The event that failed last, and how many times in a row it failed transiently.
#[derive(Debug, Default)]
struct Failing {
    event_id: String,
    attempts: u32,
}

impl Failing {
    /// Counts one more transient failure of `event_id`; returns the failures in a row.
    fn failed(&mut self, event_id: &str) -> u32 {
        if self.event_id != event_id {
            self.event_id = event_id.to_owned();
            self.attempts = 0;
        }
        self.attempts += 1;
        self.attempts
    }

    /// `event_id` was applied or quarantined. Only that event clears the count: after a restart the
    /// stream first redelivers the events before the failing one, and those succeeding says
    /// nothing about it.
    fn passed(&mut self, event_id: &str) {
        if self.event_id == event_id {
            *self = Failing::default();
        }
    }
}

/// Follows the payments stream until shutdown.
pub async fn run(ctx: Arc<Context>, runner: SagaRunner, shutdown: CancellationToken) {
    let holder = runner.holder().to_string();
    let backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(5),
        jitter: 0.5,
        max_attempts: u32::MAX,
    };
    let mut failures = 0u32;
    let mut failing = Failing::default();
    loop {
        // `follow` stops by itself on shutdown, after saving the cursor.
        let result = follow(&ctx, &runner, &holder, &shutdown, &mut failing).await;
        if shutdown.is_cancelled() {
            // Hand the stream over at once rather than when the lease runs out.
            if let Err(error) = release(&ctx.db, &holder).await {
                tracing::debug!(%error, "could not release the payments stream lease");
            }
            return;
        }
        match result {
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
                tracing::debug!(%error, failures, "payments event stream interrupted");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(if failures == 0 { LEASE / 3 } else { backoff.delay(failures) }) => {}
        }
    }
}

/// Gives up the lease on the cursor row (graceful shutdown), so another replica or the next
/// start of this one follows the stream without waiting for the lease to expire.
async fn release(db: &Db, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE event_cursors SET lease_expires_at = 0 WHERE producer = $1 AND holder = $2")
        .bind(PRODUCER)
        .bind(holder)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Takes (or renews) the lease on the cursor row; returns the cursor, or `None` if another replica
/// holds the stream.
async fn lease(db: &Db, holder: &str) -> Result<Option<String>, sqlx::Error> {
    let now = now_millis();
    let until = now + i64::try_from(LEASE.as_millis()).unwrap_or(15_000);
    sqlx::query(
        "INSERT INTO event_cursors (producer, cursor, holder, lease_expires_at, updated) VALUES ($1, '', $2, $3, $4) \
         ON CONFLICT (producer) DO NOTHING",
    )
    .bind(PRODUCER)
    .bind(holder)
    .bind(until)
    .bind(now_unix())
    .execute(db.pool())
    .await?;
    let cursor: Option<String> = sqlx::query_scalar(
        "UPDATE event_cursors SET holder = $2, lease_expires_at = $3 \
         WHERE producer = $1 AND (holder = $2 OR lease_expires_at < $4) RETURNING cursor",
    )
    .bind(PRODUCER)
    .bind(holder)
    .bind(until)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(cursor)
}

/// Writes the cursor (and renews the lease) if this replica still holds the stream.
pub(crate) async fn save_cursor<'e, E>(executor: E, holder: &str, cursor: &str) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let until = now_millis() + i64::try_from(LEASE.as_millis()).unwrap_or(15_000);
    let done = sqlx::query(
        "UPDATE event_cursors SET cursor = $3, lease_expires_at = $4, updated = $5 WHERE producer = $1 AND holder = $2",
    )
    .bind(PRODUCER)
    .bind(holder)
    .bind(cursor)
    .bind(until)
    .bind(now_unix())
    .execute(executor)
    .await?;
    Ok(done.rows_affected() > 0)
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("payments stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error("lease lost")]
    LeaseLost,
}

async fn follow(
    ctx: &Arc<Context>,
    runner: &SagaRunner,
    holder: &str,
    shutdown: &CancellationToken,
    failing: &mut Failing,
) -> Result<(), FollowError> {
    let Some(mut cursor) = lease(&ctx.db, holder).await? else {
        return Ok(()); // another replica follows the stream
    };
    let request = ev::StreamEventsRequest {
        cursor: (!cursor.is_empty()).then(|| cursor.clone()),
        types: TYPES.iter().map(|t| (*t).to_owned()).collect(),
        all_accounts: true,
    };
    let mut stream = ctx
        .payments
        .events
        .clone()
        .stream_events(ctx.payments.request(&Scope::test(SYSTEM_ACCOUNT), request))
        .await?
        .into_inner();
    let mut unsaved = false;
    let mut renew = tokio::time::interval(CURSOR_FLUSH);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = renew.tick() => {
                if !save_cursor(ctx.db.pool(), holder, &cursor).await? {
                    return Err(FollowError::LeaseLost);
                }
                unsaved = false;
            }
            message = stream.message() => {
                let Some(message) = message? else { break };
                let Some(event) = message.event else { continue };
                settle_platform::metrics::consumer_delay("invoices.payments_events", event.created);
                let span = event_span(&event);
                let finish = Finish::Cursor { holder, cursor: &message.cursor };
                let applied = match apply_event(ctx, runner, &event, finish).instrument(span.clone()).await {
                    Ok(applied) => applied,
                    Err(ApplyError::LeaseLost) => return Err(FollowError::LeaseLost),
                    Err(ApplyError::Permanent { reason, error }) => {
                        set_aside(ctx, holder, &event, &message.cursor, reason, &error, 1).instrument(span).await?
                    }
                    Err(ApplyError::Transient(error)) => {
                        let attempts = failing.failed(&event.id);
                        if attempts < MAX_TRANSIENT_ATTEMPTS {
                            return Err(FollowError::Database(error));
                        }
                        let reason = pb::QuarantineReason::RetriesExhausted;
                        let error = format!("{attempts} transient failures in a row, the last: {error}");
                        set_aside(ctx, holder, &event, &message.cursor, reason, &error, attempts)
                            .instrument(span)
                            .await?
                    }
                };
                failing.passed(&event.id);
                cursor = message.cursor;
                unsaved = !applied;
            }
        }
    }
    if unsaved {
        save_cursor(ctx.db.pool(), holder, &cursor).await?;
    }
    Ok(())
}

/// The span an event is applied under: it continues the trace of the transaction that wrote the
/// event (one event, one cause), so what invoices does about a payment shows in that payment's
/// trace, and the invoice events it writes carry the same trace onwards.
fn event_span(event: &ev::Event) -> tracing::Span {
    let span = tracing::info_span!(
        "process",
        otel.name = format!("process {}", event.r#type),
        otel.kind = "consumer",
        messaging.system = "settle",
        messaging.operation.type = "process",
        messaging.destination.name = PRODUCER,
        messaging.message.id = %event.id,
        settle.event.type = %event.r#type,
    );
    settle_platform::telemetry::continue_trace(&span, event.traceparent.as_deref());
    span
}

/// Quarantines `event` and moves the cursor past it; `true` (the cursor is written).
async fn set_aside(
    ctx: &Arc<Context>,
    holder: &str,
    event: &ev::Event,
    cursor: &str,
    reason: pb::QuarantineReason,
    error: &str,
    attempts: u32,
) -> Result<bool, FollowError> {
    if !quarantine::quarantine(ctx, holder, event, cursor, reason, error, attempts).await? {
        return Err(FollowError::LeaseLost);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_are_counted_per_event() {
        let mut failing = Failing::default();
        assert_eq!((failing.failed("evt_a"), failing.failed("evt_a")), (1, 2));
        // Redelivered events before it succeed between its attempts: the count goes on.
        failing.passed("evt_0");
        assert_eq!(failing.failed("evt_a"), 3);
        failing.passed("evt_a");
        assert_eq!(failing.failed("evt_a"), 1, "once passed it starts over");
        assert_eq!(failing.failed("evt_b"), 1, "another event starts over");
    }
}
