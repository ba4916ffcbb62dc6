//! Stripe's idempotency keys, stored with the change they guard.
//!
//! A mutating handler opens its transaction, [`claim`]s the key, does its work, then
//! [`Pending::record`]s the response in the same transaction. So the key exists exactly when its
//! effect does: a crash before commit leaves neither, and a retry runs afresh. For 24 hours:
//! - the same key with the same request replays the stored response;
//! - the same key with a different request (method or parameters) is `INVALID_ARGUMENT` /
//!   `idempotency_error`;
//! - while the first request with the key is still running, `ABORTED` / `idempotency_key_in_use`.
//!
//! Keys are per (account, livemode): a key used in test mode is unused in live mode (Stripe).
//!
//! On PostgreSQL "still running" is an advisory transaction lock on a hash of (scope, key), taken
//! without waiting in the same round trip as the lookup; the primary key is the backstop if two
//! claims slip past each other. SQLite serializes writers, so a second request simply waits and
//! replays.

use prost::Message;
use settle_proto::common::v1::ErrorReason;
use sha2::{Digest, Sha256};
use sqlx::Row;
use tonic::Code;

use crate::context::{IDEMPOTENCY_HEADER, RequestContext};
use crate::db::{Backend, Tx};
use crate::error::ApiError;
use crate::scope::Scope;
use crate::time::now_unix;

/// How long a key is remembered (Stripe: 24 hours).
pub const KEY_TTL_SECONDS: i64 = 24 * 60 * 60;

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Claim<T> {
    /// Nobody used the key (or no key was sent): do the work, then record the response.
    Fresh(Pending),
    /// The key was used before with this request: answer with the stored response.
    Replay(T),
}

/// A claimed key whose response is still to be recorded.
#[derive(Debug)]
#[must_use = "record the response so a retry replays it"]
pub struct Pending {
    claimed: Option<ClaimedKey>,
}

#[derive(Debug)]
struct ClaimedKey {
    scope: Scope,
    key: String,
    method: &'static str,
    fingerprint: Vec<u8>,
}

/// Claims the request's idempotency key (if it has one) inside `tx`.
///
/// `method` is the full gRPC method (`/settle.payments.v1.PaymentIntentService/CreatePaymentIntent`);
/// together with the encoded request it forms the fingerprint a replay must match.
pub async fn claim<T: Message + Default>(
    tx: &mut Tx,
    backend: Backend,
    ctx: &RequestContext,
    method: &'static str,
    request: &impl Message,
) -> Result<Claim<T>, ApiError> {
    let Some(key) = &ctx.idempotency_key else {
        return Ok(Claim::Fresh(Pending { claimed: None }));
    };
    let fingerprint = fingerprint(method, request);
    let cutoff = now_unix() - KEY_TTL_SECONDS;
    let (locked, stored) = match backend {
        Backend::Postgres => {
            let row = sqlx::query(
                "SELECT l.locked, k.method, k.fingerprint, k.response \
                 FROM (SELECT pg_try_advisory_xact_lock($1) AS locked) AS l \
                 LEFT JOIN idempotency_keys AS k \
                   ON k.account_id = $2 AND k.livemode = $5 AND k.key = $3 AND k.created >= $4",
            )
            .bind(lock_key(ctx.scope(), key))
            .bind(ctx.account())
            .bind(key.as_str())
            .bind(cutoff)
            .bind(ctx.livemode())
            .fetch_one(&mut **tx)
            .await?;
            let locked: bool = row.try_get(0)?;
            let method: Option<String> = row.try_get(1)?;
            let stored = match method {
                Some(method) => Some((method, row.try_get::<Vec<u8>, _>(2)?, row.try_get::<Vec<u8>, _>(3)?)),
                None => None,
            };
            (locked, stored)
        }
        Backend::Sqlite => {
            let row = sqlx::query(
                "SELECT method, fingerprint, response FROM idempotency_keys \
                 WHERE account_id = $1 AND livemode = $4 AND key = $2 AND created >= $3",
            )
            .bind(ctx.account())
            .bind(key.as_str())
            .bind(cutoff)
            .bind(ctx.livemode())
            .fetch_optional(&mut **tx)
            .await?;
            let stored = match row {
                Some(row) => Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
                None => None,
            };
            (true, stored)
        }
    };
    match stored {
        Some((stored_method, stored_fingerprint, response)) => {
            if stored_method != method || stored_fingerprint != fingerprint {
                return Err(mismatch(key));
            }
            let replay = T::decode(response.as_slice())
                .map_err(|e| ApiError::internal("Could not decode the stored idempotent response", &e))?;
            tracing::debug!(idempotency_key = %key, "replaying stored response");
            crate::metrics::idempotent_replays().add(1, &[opentelemetry::KeyValue::new("method", method)]);
            Ok(Claim::Replay(replay))
        }
        None if !locked => Err(in_use(key)),
        None => Ok(Claim::Fresh(Pending {
            claimed: Some(ClaimedKey { scope: ctx.scope().clone(), key: key.clone(), method, fingerprint }),
        })),
    }
}

/// Read-only look at the request's idempotency key, for a handler that must answer a replay before
/// an irreversible side effect it does ahead of its transaction: the stored response when the key
/// was used with this request, `idempotency_error` when with another, `None` when it is unused (or
/// no key was sent). The handler still [`claim`]s the key in its transaction.
pub async fn replayed<'e, T, E>(
    executor: E,
    ctx: &RequestContext,
    method: &'static str,
    request: &impl Message,
) -> Result<Option<T>, ApiError>
where
    T: Message + Default,
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let Some(key) = &ctx.idempotency_key else { return Ok(None) };
    let row = sqlx::query(
        "SELECT method, fingerprint, response FROM idempotency_keys \
         WHERE account_id = $1 AND livemode = $4 AND key = $2 AND created >= $3",
    )
    .bind(ctx.account())
    .bind(key.as_str())
    .bind(now_unix() - KEY_TTL_SECONDS)
    .bind(ctx.livemode())
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (stored_method, stored_fingerprint, response): (String, Vec<u8>, Vec<u8>) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if stored_method != method || stored_fingerprint != fingerprint(method, request) {
        return Err(mismatch(key));
    }
    T::decode(response.as_slice())
        .map(Some)
        .map_err(|e| ApiError::internal("Could not decode the stored idempotent response", &e))
}

impl Pending {
    /// Stores `response` under the claimed key, in the caller's transaction.
    pub async fn record(self, tx: &mut Tx, response: &impl Message) -> Result<(), ApiError> {
        let Some(claimed) = self.claimed else {
            return Ok(());
        };
        let response = response.encode_to_vec();
        if response.len() > crate::outbox::MAX_OBJECT_BYTES {
            let too_large = crate::outbox::ObjectTooLarge { size: response.len() };
            return Err(sqlx::Error::Encode(Box::new(too_large)).into());
        }
        let now = now_unix();
        // An expired row with the same key is overwritten; a live one means a concurrent request
        // with the key committed first, and this one must not take effect.
        let result = sqlx::query(
            "INSERT INTO idempotency_keys (account_id, livemode, key, method, fingerprint, response, created) \
             VALUES ($1, $8, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id, livemode, key) DO UPDATE SET method = excluded.method, \
               fingerprint = excluded.fingerprint, response = excluded.response, \
               created = excluded.created \
             WHERE idempotency_keys.created < $7",
        )
        .bind(claimed.scope.account())
        .bind(claimed.key.as_str())
        .bind(claimed.method)
        .bind(claimed.fingerprint)
        .bind(response)
        .bind(now)
        .bind(now - KEY_TTL_SECONDS)
        .bind(claimed.scope.livemode())
        .execute(&mut **tx)
        .await?;
        if result.rows_affected() == 0 {
            return Err(in_use(&claimed.key));
        }
        Ok(())
    }
}

/// Deletes keys older than the TTL; returns how many went.
pub async fn purge_expired(db: &crate::db::Db) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM idempotency_keys WHERE created < $1")
        .bind(now_unix() - KEY_TTL_SECONDS)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected())
}

fn fingerprint(method: &str, request: &impl Message) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0u8]);
    hasher.update(request.encode_to_vec());
    hasher.finalize().to_vec()
}

fn lock_key(scope: &Scope, key: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(scope.account())
        .chain_update([0u8, u8::from(scope.livemode())])
        .chain_update(key)
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

fn mismatch(key: &str) -> ApiError {
    ApiError::invalid_param(
        IDEMPOTENCY_HEADER,
        ErrorReason::IdempotencyError,
        format!(
            "Keys for idempotent requests can only be used with the same parameters they were first \
             used with. Try using a key other than '{key}' if you meant to execute a different request."
        ),
    )
}

fn in_use(key: &str) -> ApiError {
    ApiError::new(
        Code::Aborted,
        ErrorReason::IdempotencyKeyInUse,
        format!(
            "There is currently another in-progress request using this idempotency key ('{key}'). \
             Retry this request later."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_method_and_parameters() {
        let a = prost_types::Duration { seconds: 1, nanos: 0 };
        let b = prost_types::Duration { seconds: 2, nanos: 0 };
        assert_eq!(fingerprint("/m", &a), fingerprint("/m", &a));
        assert_ne!(fingerprint("/m", &a), fingerprint("/m", &b));
        assert_ne!(fingerprint("/m", &a), fingerprint("/n", &a));
    }

    #[test]
    fn lock_key_separates_accounts_and_modes() {
        let (a, b, ab) = (Scope::test("acct_a"), Scope::test("acct_b"), Scope::test("acct_ab"));
        assert_ne!(lock_key(&a, "k"), lock_key(&b, "k"));
        assert_ne!(lock_key(&a, "bk"), lock_key(&ab, "k"));
        assert_ne!(lock_key(&a, "k"), lock_key(&Scope::new("acct_a", true), "k"));
    }
}
