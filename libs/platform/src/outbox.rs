//! The transactional outbox: events written in the same transaction as the change they describe,
//! then numbered in commit order by a sequencer so readers can page and stream them with a cursor.
//!
//! Ordering. `position` is assigned at insert; `object_sequence` per object under a row lock held to
//! commit, so two events of one object are numbered, positioned and committed in the same order.
//! The sequencer repeatedly takes the committed rows that have no `seq` yet, in `position` order,
//! and numbers them after the highest `seq`: a row gets its number only once it is visible, so `seq`
//! order is commit order (to within one sequencer pass, and exactly for each object), dense, and
//! final — a reader that has passed `seq = n` never misses a row numbered later.
//!
//! Delivery is at least once: consumers store the cursor of the last event they processed.

use std::sync::Arc;
use std::time::Duration;

use prost::{Message, Name};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::context::RequestContext;
use crate::db::{Backend, Db, Tx};
use crate::ids::IdPrefix;
use crate::scope::Scope;
use crate::time::now_unix;

/// How long events are kept (Stripe: 30 days).
pub const RETENTION_SECONDS: i64 = 30 * 24 * 60 * 60;
/// Rows numbered per sequencer pass.
const BATCH: i64 = 500;
/// Upper bound on how long a commit in another replica waits to be numbered.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Pause between passes, so a busy service numbers events in batches instead of one by one.
const COALESCE_INTERVAL: Duration = Duration::from_millis(2);
/// PostgreSQL advisory lock that lets one replica at a time run a sequencer pass.
const SEQUENCER_LOCK: i64 = 0x5e77_1e00_0000_0001;

/// Connects writers, the sequencer and stream readers of one service.
#[derive(Clone, Debug)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    committed: Notify,
    sequenced: watch::Sender<i64>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    pub fn new() -> Self {
        EventHub { inner: Arc::new(HubInner { committed: Notify::new(), sequenced: watch::channel(0).0 }) }
    }

    /// Tells the sequencer that a transaction with events committed.
    pub fn committed(&self) {
        self.inner.committed.notify_one();
    }

    /// The highest sequence number known to this process.
    pub fn sequenced(&self) -> i64 {
        *self.inner.sequenced.borrow()
    }

    /// Watches the highest sequence number assigned in this process.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.inner.sequenced.subscribe()
    }
}

/// Request details copied into every event the request causes.
#[derive(Debug, Clone, Default)]
pub struct EventOrigin {
    /// The (account, mode) the events belong to.
    pub scope: Scope,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

impl From<&RequestContext> for EventOrigin {
    fn from(ctx: &RequestContext) -> Self {
        EventOrigin {
            scope: ctx.scope().clone(),
            request_id: ctx.request_id.as_deref().map(str::to_owned),
            idempotency_key: ctx.idempotency_key.clone(),
        }
    }
}

/// The largest object an event may carry (encoded). Request limits keep every object far below
/// it; this is the backstop that keeps any event readable by every consumer (their clients decode
/// responses of many times this size), so one oversized object can never stall a stream.
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// An object too large to be stored or sent as an event: the change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the object would be {size} bytes, more than the {MAX_OBJECT_BYTES} an object may have")]
pub struct ObjectTooLarge {
    pub size: usize,
}

/// Appends one event to the outbox inside `tx`. Returns the event id (`evt_…`). An object larger
/// than [`MAX_OBJECT_BYTES`] is refused with [`ObjectTooLarge`] (as `sqlx::Error::Encode`), and
/// the caller's transaction must not commit.
///
/// `object` is the object as it is after the change; `previous_attributes` (for `*.updated`) holds
/// the changed fields' old values. The caller commits `tx` and then calls [`EventHub::committed`].
pub async fn append<M: Message + Name>(
    tx: &mut Tx,
    backend: Backend,
    origin: &EventOrigin,
    event_type: &str,
    object_id: &str,
    object: &M,
    previous_attributes: Option<&serde_json::Value>,
) -> Result<String, sqlx::Error> {
    let data = object.encode_to_vec();
    let previous = previous_attributes.map(serde_json::Value::to_string);
    let size = data.len() + previous.as_ref().map_or(0, String::len);
    if size > MAX_OBJECT_BYTES {
        return Err(sqlx::Error::Encode(Box::new(ObjectTooLarge { size })));
    }
    let id = IdPrefix::Event.generate();
    let traceparent = crate::telemetry::current_traceparent();
    let insert = match backend {
        // One round trip: number the event within its object and insert it.
        Backend::Postgres => sqlx::query(
            "WITH s AS ( \
               INSERT INTO outbox_object_sequences (object_id, last_sequence) VALUES ($4, 1) \
               ON CONFLICT (object_id) DO UPDATE \
                 SET last_sequence = outbox_object_sequences.last_sequence + 1 \
               RETURNING last_sequence) \
             INSERT INTO outbox_events (id, account_id, type, object_id, object_sequence, \
               data_type_url, data, previous_attributes, request_id, idempotency_key, traceparent, \
               livemode, created) \
             SELECT $1, $2, $3, $4, s.last_sequence, $5, $6, $7, $8, $9, $10, $11, $12 FROM s",
        ),
        // SQLite has one writer at a time, so a read of the counter inside the insert is safe.
        Backend::Sqlite => {
            sqlx::query(
                "INSERT INTO outbox_object_sequences (object_id, last_sequence) VALUES ($1, 1) \
                 ON CONFLICT (object_id) DO UPDATE SET last_sequence = last_sequence + 1",
            )
            .bind(object_id)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO outbox_events (id, account_id, type, object_id, object_sequence, \
                   data_type_url, data, previous_attributes, request_id, idempotency_key, \
                   traceparent, livemode, created) \
                 VALUES ($1, $2, $3, $4, \
                   (SELECT last_sequence FROM outbox_object_sequences WHERE object_id = $4), \
                   $5, $6, $7, $8, $9, $10, $11, $12)",
            )
        }
    };
    insert
        .bind(id.as_str())
        .bind(origin.scope.account())
        .bind(event_type)
        .bind(object_id)
        .bind(M::type_url())
        .bind(data)
        .bind(previous)
        .bind(origin.request_id.as_deref())
        .bind(origin.idempotency_key.as_deref())
        .bind(traceparent)
        .bind(origin.scope.livemode())
        .bind(now_unix())
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Numbers committed events until shutdown. One per service process; replicas coordinate through
/// an advisory lock, so running several is safe.
pub async fn run_sequencer(db: Db, hub: EventHub, shutdown: CancellationToken) {
    match max_seq(&db).await {
        Ok(max) => {
            hub.inner.sequenced.send_replace(max);
        }
        Err(error) => tracing::warn!(%error, "outbox sequencer could not read the highest seq"),
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = hub.inner.committed.notified() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        loop {
            match sequence_batch(&db).await {
                Ok(Some((last, numbered))) => {
                    hub.inner.sequenced.send_if_modified(|current| {
                        let changed = last > *current;
                        *current = (*current).max(last);
                        changed
                    });
                    if numbered < BATCH {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "outbox sequencer pass failed; retrying");
                    tokio::time::sleep(POLL_INTERVAL).await;
                    break;
                }
            }
        }
        tokio::time::sleep(COALESCE_INTERVAL).await;
    }
}

/// The highest assigned sequence number (0 when none).
pub async fn max_seq(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM outbox_events")
        .fetch_one(db.pool())
        .await
}

/// One pass: numbers up to [`BATCH`] committed, unnumbered events. Returns the last number given
/// and how many were numbered, or `None` when there was nothing to do (or another replica holds the
/// sequencer lock).
pub async fn sequence_batch(db: &Db) -> Result<Option<(i64, i64)>, sqlx::Error> {
    const NUMBER: &str = "UPDATE outbox_events AS e SET seq = n.new_seq \
        FROM (SELECT b.position, m.max_seq + ROW_NUMBER() OVER (ORDER BY b.position) AS new_seq \
              FROM (SELECT position FROM outbox_events WHERE seq IS NULL \
                    ORDER BY position LIMIT $1) AS b \
              CROSS JOIN (SELECT COALESCE(MAX(seq), 0) AS max_seq FROM outbox_events) AS m) AS n \
        WHERE e.position = n.position AND e.seq IS NULL \
        RETURNING seq";
    let mut tx = db.begin().await?;
    if db.backend() == Backend::Postgres {
        // Taken before the numbering statement, whose fresh snapshot then sees every earlier pass.
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(None);
        }
    }
    let numbered: Vec<i64> = sqlx::query_scalar(NUMBER).bind(BATCH).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(numbered.iter().max().map(|last| (*last, numbered.len() as i64)))
}

/// Deletes numbered events older than the retention period; returns how many went.
pub async fn purge_expired(db: &Db) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM outbox_events WHERE created < $1 AND seq IS NOT NULL")
        .bind(now_unix() - RETENTION_SECONDS)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected())
}
