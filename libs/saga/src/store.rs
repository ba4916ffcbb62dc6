//! SQL for the `sagas` table.

use std::collections::BTreeMap;
use std::sync::Arc;

use settle_platform::Scope;
use settle_platform::db::{Db, DbBool, Tx};
use settle_platform::pagination::{Page, PageRequest, RangeColumn, push_range};
use settle_platform::sql::SqlBuilder;
use settle_platform::time::now_unix;

use crate::record::{Fence, NewSaga, Saga, SagaFailure, SagaState};

/// A local step's write found that this replica no longer holds the saga's lease.
#[derive(Debug, thiserror::Error)]
pub enum AdvanceError {
    #[error("the saga's lease was taken over by another replica")]
    Fenced,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Unix milliseconds, the unit of leases.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(sqlx::FromRow)]
struct SagaRow {
    id: String,
    account_id: String,
    #[sqlx(try_from = "DbBool")]
    livemode: bool,
    kind: String,
    state: String,
    step: String,
    data: Vec<u8>,
    subjects: String,
    idempotency_key: Option<String>,
    result: Option<Vec<u8>>,
    error_code: Option<i32>,
    error_reason: Option<String>,
    error_message: Option<String>,
    attempts: i32,
    last_error: Option<String>,
    lease_holder: Option<String>,
    lease_expires_at: i64,
    lease_version: i64,
    traceparent: Option<String>,
    created: i64,
    updated: i64,
    completed_at: Option<i64>,
}

impl From<SagaRow> for Saga {
    fn from(row: SagaRow) -> Saga {
        let failure = row.error_code.map(|code| SagaFailure {
            code: tonic::Code::from_i32(code),
            reason: row.error_reason.unwrap_or_default(),
            message: row.error_message.unwrap_or_default(),
        });
        Saga {
            id: row.id,
            scope: Scope::new(row.account_id, row.livemode),
            kind: row.kind,
            // The CHECK constraint admits only the four states.
            state: SagaState::parse(&row.state).unwrap_or(SagaState::Running),
            step: row.step,
            data: row.data,
            subjects: serde_json::from_str(&row.subjects).unwrap_or_default(),
            idempotency_key: row.idempotency_key,
            result: row.result,
            failure,
            attempts: row.attempts,
            last_error: row.last_error,
            lease_holder: row.lease_holder,
            lease_expires_at: row.lease_expires_at,
            lease_version: row.lease_version,
            traceparent: row.traceparent,
            created: row.created,
            updated: row.updated,
            completed_at: row.completed_at,
        }
    }
}

macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT id, account_id, livemode, kind, state, step, data, subjects, idempotency_key, \
             result, error_code, error_reason, error_message, attempts, last_error, lease_holder, \
             lease_expires_at, lease_version, traceparent, created, updated, completed_at FROM sagas ",
            $rest
        )
    };
}

/// Records a new saga, held by `holder` until `lease_until` (ms), inside the caller's transaction
/// (the one that performs the saga's first local step). A unique violation means a saga with the
/// same id (the same idempotency key) exists.
/// How a saga marks its idempotency key in `idempotency_keys` (`saga:attach_payment`).
const SAGA_METHOD_PREFIX: &str = "saga:";

/// What an idempotency key sent to a saga-driven method was used for before.
#[derive(Debug)]
pub enum KeyUse {
    /// Nothing: the request is fresh.
    Unused,
    /// The saga the key started (the caller checks it is the same request).
    Saga(Box<Saga>),
    /// A method the idempotency table serves used it: the key belongs to another request.
    OtherMethod,
}

/// What `key` (the request's, `saga_id` derived from it) was used for within the key lifetime. A
/// key is one request whichever method first used it, so a key the idempotency table holds for a
/// non-saga method must be refused by a saga-driven one, as Stripe does.
pub async fn key_use(db: &Db, scope: &Scope, saga_id: &str, key: &str) -> Result<KeyUse, sqlx::Error> {
    if let Some(saga) = get(db, scope, saga_id).await? {
        return Ok(KeyUse::Saga(Box::new(saga)));
    }
    let other: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(1 AS BIGINT) FROM idempotency_keys \
         WHERE account_id = $1 AND livemode = $2 AND key = $3 AND created >= $4 AND method NOT LIKE 'saga:%'",
    )
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(key)
    .bind(now_unix() - settle_platform::idempotency::KEY_TTL_SECONDS)
    .fetch_optional(db.pool())
    .await?;
    Ok(if other.is_some() { KeyUse::OtherMethod } else { KeyUse::Unused })
}

pub async fn insert(
    tx: &mut Tx,
    saga: &NewSaga,
    holder: &Arc<str>,
    lease_until: i64,
) -> Result<(Saga, Fence), sqlx::Error> {
    let now = now_unix();
    let traceparent = settle_platform::telemetry::current_traceparent();
    let subjects = serde_json::to_string(&saga.subjects).unwrap_or_else(|_| "{}".to_owned());
    sqlx::query(
        "INSERT INTO sagas (id, account_id, livemode, kind, state, step, data, subjects, idempotency_key, \
           lease_holder, lease_expires_at, lease_version, traceparent, created, updated, result) \
         VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9, $10, 1, $11, $12, $12, $13)",
    )
    .bind(saga.id.as_str())
    .bind(saga.scope.account())
    .bind(saga.scope.livemode())
    .bind(saga.kind)
    .bind(saga.step)
    .bind(saga.data.clone())
    .bind(subjects)
    .bind(saga.idempotency_key.as_deref())
    .bind(&**holder)
    .bind(lease_until)
    .bind(traceparent.as_deref())
    .bind(now)
    .bind(saga.result.clone())
    .execute(&mut **tx)
    .await?;
    // A saga a request started under its idempotency key (its id derives from the key) takes the
    // key for the methods the idempotency table serves too: a key is one request, whichever
    // method first used it (see [`key_use`]). Sagas that merely carry the key of
    // the request behind them (one per payment of a voided invoice, say) do not.
    if let Some(key) = &saga.idempotency_key
        && saga.id == crate::saga_id_for(&saga.scope, Some(key))
    {
        sqlx::query(
            "INSERT INTO idempotency_keys (account_id, livemode, key, method, fingerprint, response, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, livemode, key) DO NOTHING",
        )
        .bind(saga.scope.account())
        .bind(saga.scope.livemode())
        .bind(key.as_str())
        .bind(format!("{SAGA_METHOD_PREFIX}{}", saga.kind))
        .bind(saga.id.as_bytes().to_vec())
        .bind(Vec::<u8>::new())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    let record = Saga {
        id: saga.id.clone(),
        scope: saga.scope.clone(),
        kind: saga.kind.to_owned(),
        state: SagaState::Running,
        step: saga.step.to_owned(),
        data: saga.data.clone(),
        subjects: saga.subjects.clone(),
        idempotency_key: saga.idempotency_key.clone(),
        result: saga.result.clone(),
        failure: None,
        attempts: 0,
        last_error: None,
        lease_holder: Some(holder.to_string()),
        lease_expires_at: lease_until,
        lease_version: 1,
        traceparent,
        created: now,
        updated: now,
        completed_at: None,
    };
    let fence = Fence { saga_id: saga.id.clone(), holder: holder.clone(), version: 1 };
    Ok((record, fence))
}

/// Moves the saga to `step` (with `data`, `state` and, once decided, the operation's `result`)
/// inside the caller's transaction — the one that performed the local step. Fails with
/// [`AdvanceError::Fenced`] if the lease was taken over; the caller then rolls back.
pub async fn advance(
    tx: &mut Tx,
    fence: &Fence,
    step: &str,
    data: &[u8],
    state: SagaState,
    result: Option<&[u8]>,
) -> Result<(), AdvanceError> {
    let done = sqlx::query(
        "UPDATE sagas SET step = $4, data = $5, state = $6, result = COALESCE($7, result), updated = $8 \
         WHERE id = $1 AND lease_holder = $2 AND lease_version = $3",
    )
    .bind(fence.saga_id.as_str())
    .bind(&*fence.holder)
    .bind(fence.version)
    .bind(step)
    .bind(data.to_vec())
    .bind(state.as_str())
    .bind(result.map(<[u8]>::to_vec))
    .bind(now_unix())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 { Err(AdvanceError::Fenced) } else { Ok(()) }
}

/// Ends sagas as succeeded, in one transaction. Sagas whose lease was taken over meanwhile are left
/// to the replica that holds them.
pub async fn finish_succeeded(db: &Db, fences: &[Fence]) -> Result<(), sqlx::Error> {
    let now = now_unix();
    let mut tx = db.begin().await?;
    for fence in fences {
        sqlx::query(
            "UPDATE sagas SET state = 'succeeded', completed_at = $4, updated = $4, lease_holder = NULL \
             WHERE id = $1 AND lease_holder = $2 AND lease_version = $3",
        )
        .bind(fence.saga_id.as_str())
        .bind(&*fence.holder)
        .bind(fence.version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Ends a saga as failed with `failure` (after any compensation). Returns false when fenced.
pub async fn finish_failed(
    db: &Db,
    fence: &Fence,
    step: &str,
    data: &[u8],
    failure: &SagaFailure,
) -> Result<bool, sqlx::Error> {
    let now = now_unix();
    let done = sqlx::query(
        "UPDATE sagas SET state = 'failed', step = $4, data = $5, error_code = $6, error_reason = $7, \
           error_message = $8, completed_at = $9, updated = $9, lease_holder = NULL \
         WHERE id = $1 AND lease_holder = $2 AND lease_version = $3",
    )
    .bind(fence.saga_id.as_str())
    .bind(&*fence.holder)
    .bind(fence.version)
    .bind(step)
    .bind(data.to_vec())
    .bind(failure.code as i32)
    .bind(failure.reason.as_str())
    .bind(failure.message.as_str())
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Hands a saga to the recovery loop: it becomes due again at `due` (ms). Returns false when fenced.
pub async fn postpone(
    db: &Db,
    fence: &Fence,
    step: &str,
    data: &[u8],
    state: SagaState,
    due: i64,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sagas SET step = $4, data = $5, state = $6, lease_expires_at = $7, last_error = $8, updated = $9 \
         WHERE id = $1 AND lease_holder = $2 AND lease_version = $3",
    )
    .bind(fence.saga_id.as_str())
    .bind(&*fence.holder)
    .bind(fence.version)
    .bind(step)
    .bind(data.to_vec())
    .bind(state.as_str())
    .bind(due)
    .bind(error)
    .bind(now_unix())
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Claims up to `limit` live sagas whose lease expired, for `holder` until `lease_until` (ms). Each
/// claim bumps the lease version (fencing out the previous holder) and the attempt count.
/// PostgreSQL skips rows another replica is claiming; SQLite has one writer.
pub async fn claim_due(
    db: &Db,
    holder: &str,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Saga>, sqlx::Error> {
    // Claim in one UPDATE, then read the claimed rows back in the same transaction.
    let claim = db.backend().pick(
        "UPDATE sagas SET lease_holder = $1, lease_expires_at = $2, lease_version = lease_version + 1, \
           attempts = attempts + 1, updated = $5 \
         WHERE id IN (SELECT id FROM sagas WHERE state IN ('running', 'compensating') \
           AND lease_expires_at < $3 ORDER BY lease_expires_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
         RETURNING id",
        "UPDATE sagas SET lease_holder = $1, lease_expires_at = $2, lease_version = lease_version + 1, \
           attempts = attempts + 1, updated = $5 \
         WHERE id IN (SELECT id FROM sagas WHERE state IN ('running', 'compensating') \
           AND lease_expires_at < $3 ORDER BY lease_expires_at LIMIT $4) \
         RETURNING id",
    );
    let now = now_millis();
    let mut tx = db.begin().await?;
    let ids: Vec<String> = sqlx::query_scalar(claim)
        .bind(holder)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .bind(now_unix())
        .fetch_all(&mut *tx)
        .await?;
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let row: SagaRow = sqlx::query_as(select!("WHERE id = $1")).bind(id).fetch_one(&mut *tx).await?;
        claimed.push(Saga::from(row));
    }
    tx.commit().await?;
    Ok(claimed)
}

/// The id of a live (running or compensating) saga of `kind` on exactly `subjects`, if any — for an
/// orchestrator that allows one such saga at a time (served by the `sagas_live_subjects` index).
/// Subjects are compared as [`insert`] stores them (a sorted map serialized to JSON).
pub async fn live_on<'e, E>(
    executor: E,
    scope: &Scope,
    kind: &str,
    subjects: &BTreeMap<String, String>,
) -> Result<Option<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let subjects = serde_json::to_string(subjects).unwrap_or_else(|_| "{}".to_owned());
    sqlx::query_scalar(
        "SELECT id FROM sagas WHERE account_id = $1 AND livemode = $4 AND kind = $2 AND subjects = $3 \
         AND state IN ('running', 'compensating') LIMIT 1",
    )
    .bind(scope.account())
    .bind(kind)
    .bind(subjects)
    .bind(scope.livemode())
    .fetch_optional(executor)
    .await
}

/// One saga of the scope.
pub async fn get(db: &Db, scope: &Scope, id: &str) -> Result<Option<Saga>, sqlx::Error> {
    let row: Option<SagaRow> = sqlx::query_as(select!("WHERE account_id = $1 AND livemode = $3 AND id = $2"))
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(Saga::from))
}

/// Filters of `ListSagas`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<SagaState>,
    pub kind: Option<String>,
    pub stuck: Option<bool>,
    pub created: Option<settle_proto::common::v1::RangeFilter>,
}

/// A page of the scope's sagas, newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<Saga>, sqlx::Error> {
    let mut query = SqlBuilder::scoped(select!("WHERE "), scope);
    if let Some(state) = filter.state {
        query.filter(" AND state = ", state.as_str().to_owned());
    }
    if let Some(kind) = &filter.kind {
        query.filter(" AND kind = ", kind.clone());
    }
    match filter.stuck {
        Some(true) => {
            query
                .push(" AND state IN ('running', 'compensating')")
                .filter(" AND lease_expires_at < ", now_millis());
        }
        Some(false) => {
            query
                .push(" AND NOT (state IN ('running', 'compensating')")
                .filter(" AND lease_expires_at < ", now_millis())
                .push(")");
        }
        None => {}
    }
    push_range(&mut query, RangeColumn::Created, filter.created.as_ref());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<SagaRow, _>(db.pool()).await?;
    Ok(page.finish(rows).map(Saga::from))
}

/// Per kind, how many live sagas have an expired lease or a due retry (nobody is driving them),
/// and the oldest such moment (ms).
pub async fn stuck_summary(db: &Db) -> Result<Vec<(String, i64, Option<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, COUNT(*), CAST(MIN(lease_expires_at) AS BIGINT) FROM sagas \
         WHERE state IN ('running', 'compensating') AND lease_expires_at < $1 GROUP BY kind",
    )
    .bind(now_millis())
    .fetch_all(db.pool())
    .await
}
