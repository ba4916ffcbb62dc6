//! `quarantined_events`: the events of another service's stream that the consumer could not apply.
//! A row is written in the transaction that moves the stream's cursor past its event, so an event
//! is either applied, or recorded here, never silently skipped.

use settle_platform::Scope;
use settle_platform::db::Db;
use settle_platform::pagination::{Page, PageRequest};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::invoices::v1 as pb;

/// Longest error text kept (and shown): errors can quote what they failed on, of any length.
pub const MAX_ERROR_CHARS: usize = 200;
/// Longest id or type kept from an event: they come from another service's rows.
const MAX_FIELD_CHARS: usize = 255;

/// One event to quarantine.
#[derive(Debug, Clone)]
pub struct NewQuarantine<'a> {
    pub source: &'a str,
    pub event_id: &'a str,
    /// The event's account (empty when it names none: recorded, but no caller sees it).
    pub account: &'a str,
    pub livemode: bool,
    pub event_type: &'a str,
    pub object_id: &'a str,
    pub cursor: &'a str,
    pub reason: pb::QuarantineReason,
    pub error: &'a str,
    /// How many failed attempts this record stands for.
    pub attempts: i64,
    pub now: i64,
}

/// `text` cut to `max` characters, without NUL (PostgreSQL's TEXT cannot hold it).
pub fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| *c != '\0').take(max).collect()
}

/// The reason as stored and labelled (the enum's lower-cased suffix).
pub fn reason_code(reason: pb::QuarantineReason) -> String {
    reason.as_str_name().trim_start_matches("QUARANTINE_REASON_").to_ascii_lowercase()
}

fn reason_from_code(code: &str) -> pb::QuarantineReason {
    pb::QuarantineReason::from_str_name(&format!("QUARANTINE_REASON_{}", code.to_ascii_uppercase()))
        .unwrap_or(pb::QuarantineReason::Unspecified)
}

/// Records the event (or, if it is already recorded, adds the attempts and the latest reason and
/// makes it quarantined again). Returns whether the row is new.
pub async fn record<'e, E>(executor: E, q: &NewQuarantine<'_>) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let attempts: i64 = sqlx::query_scalar(
        "INSERT INTO quarantined_events (source, event_id, account_id, livemode, type, object_id, stream_cursor, \
         reason, error, attempts, first_seen, last_attempt, resolved_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, NULL) \
         ON CONFLICT (source, event_id) DO UPDATE SET reason = excluded.reason, error = excluded.error, \
         attempts = quarantined_events.attempts + excluded.attempts, last_attempt = excluded.last_attempt, \
         stream_cursor = excluded.stream_cursor, resolved_at = NULL \
         RETURNING attempts",
    )
    .bind(bounded(q.source, MAX_FIELD_CHARS))
    .bind(bounded(q.event_id, MAX_FIELD_CHARS))
    .bind(bounded(q.account, MAX_FIELD_CHARS))
    .bind(q.livemode)
    .bind(bounded(q.event_type, MAX_FIELD_CHARS))
    .bind(bounded(q.object_id, MAX_FIELD_CHARS))
    .bind(bounded(q.cursor, MAX_FIELD_CHARS))
    .bind(reason_code(q.reason))
    .bind(bounded(q.error, MAX_ERROR_CHARS))
    .bind(q.attempts.max(1))
    .bind(q.now)
    .fetch_one(executor)
    .await?;
    Ok(attempts == q.attempts.max(1))
}

/// A retry failed again: one more attempt, with its reason and error.
pub async fn failed_again<'e, E>(
    executor: E,
    scope: &Scope,
    event_id: &str,
    reason: pb::QuarantineReason,
    error: &str,
    now: i64,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "UPDATE quarantined_events SET attempts = attempts + 1, reason = $4, error = $5, last_attempt = $6 \
         WHERE account_id = $1 AND livemode = $2 AND event_id = $3",
    )
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(event_id)
    .bind(reason_code(reason))
    .bind(bounded(error, MAX_ERROR_CHARS))
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

/// A retry applied the event (or found nothing left to apply).
pub async fn resolve<'e, E>(executor: E, scope: &Scope, event_id: &str, now: i64) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "UPDATE quarantined_events SET resolved_at = $4 \
         WHERE account_id = $1 AND livemode = $2 AND event_id = $3 AND resolved_at IS NULL",
    )
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(event_id)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    source: String,
    event_id: String,
    #[sqlx(try_from = "settle_platform::db::DbBool")]
    livemode: bool,
    r#type: String,
    object_id: String,
    reason: String,
    error: String,
    attempts: i64,
    first_seen: i64,
    last_attempt: i64,
    resolved_at: Option<i64>,
}

impl From<Row> for pb::QuarantinedEvent {
    fn from(row: Row) -> Self {
        let status = if row.resolved_at.is_some() {
            pb::QuarantineStatus::Resolved
        } else {
            pb::QuarantineStatus::Quarantined
        };
        pb::QuarantinedEvent {
            id: row.event_id,
            object: "quarantined_event".to_owned(),
            source: row.source,
            r#type: row.r#type,
            object_id: row.object_id,
            livemode: row.livemode,
            reason: reason_from_code(&row.reason) as i32,
            error: row.error,
            attempts: row.attempts,
            created: row.first_seen,
            last_attempt_at: row.last_attempt,
            status: status as i32,
            resolved_at: row.resolved_at,
        }
    }
}

/// The scope's quarantined event `event_id`.
pub async fn find<'e, E>(
    executor: E,
    scope: &Scope,
    event_id: &str,
) -> Result<Option<pb::QuarantinedEvent>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut query = SqlBuilder::scoped(SELECT_SCOPED, scope);
    query.filter(" AND event_id = ", event_id.to_owned()).push(" ORDER BY source LIMIT 1");
    Ok(query.fetch_all::<Row, _>(executor).await?.into_iter().next().map(Into::into))
}

/// Every column of a row; the scope's condition follows.
const SELECT_SCOPED: &str = "SELECT source, event_id, livemode, type, object_id, reason, error, attempts, first_seen, \
     last_attempt, resolved_at FROM quarantined_events WHERE ";

/// A page of the scope's quarantined events, newest first, optionally only those in `status`.
pub async fn list(
    db: &Db,
    scope: &Scope,
    status: Option<pb::QuarantineStatus>,
    page: &PageRequest,
) -> Result<Page<pb::QuarantinedEvent>, sqlx::Error> {
    let mut query = SqlBuilder::scoped(SELECT_SCOPED, scope);
    match status {
        Some(pb::QuarantineStatus::Quarantined) => {
            query.push(" AND resolved_at IS NULL");
        }
        Some(pb::QuarantineStatus::Resolved) => {
            query.push(" AND resolved_at IS NOT NULL");
        }
        Some(pb::QuarantineStatus::Unspecified) | None => {}
    }
    // The page helper orders by `id`; here the event id is the row's id.
    match &page.cursor {
        settle_platform::pagination::Cursor::First => {
            query.push(" ORDER BY event_id DESC LIMIT ");
        }
        settle_platform::pagination::Cursor::After(id) => {
            query.filter(" AND event_id < ", id.clone()).push(" ORDER BY event_id DESC LIMIT ");
        }
        settle_platform::pagination::Cursor::Before(id) => {
            query.filter(" AND event_id > ", id.clone()).push(" ORDER BY event_id ASC LIMIT ");
        }
    }
    query.bind(i64::from(page.limit) + 1);
    let rows = query.fetch_all::<Row, _>(db.pool()).await?;
    Ok(page.finish(rows).map(Into::into))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_text_drops_nul_and_stops_at_the_limit() {
        assert_eq!(bounded("a\0b", 10), "ab");
        assert_eq!(bounded(&"é".repeat(500), MAX_ERROR_CHARS).chars().count(), MAX_ERROR_CHARS);
    }

    #[test]
    fn reasons_round_trip_through_their_codes() {
        for reason in [pb::QuarantineReason::ObjectUndecodable, pb::QuarantineReason::RetriesExhausted] {
            assert_eq!(reason_from_code(&reason_code(reason)), reason);
        }
        assert_eq!(reason_code(pb::QuarantineReason::ObjectMissing), "object_missing");
    }
}
