//! Sagas: operations that change more than one store (attach a payment to an invoice, issue a
//! credit note) as a sequence of steps, each idempotent on the saga id, recorded in a durable log in
//! the orchestrating service's database.
//!
//! - A request records its saga in the same transaction as its first local step ([`store::insert`])
//!   and drives it inline ([`SagaRunner::drive`]) for low latency: no polling on the hot path.
//! - Remote steps are not persisted on their own: the saga's stored step only moves forward inside
//!   the next local step's transaction ([`store::advance`], fenced by the lease), so after a crash the
//!   recovery loop repeats the remote steps since the last local one — safe because each is
//!   idempotent on the saga id.
//! - A replica drives a saga only while it holds its lease; the recovery loop of any replica claims
//!   sagas whose lease expired (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and resumes them, with
//!   backoff between attempts. A replica that lost its lease is fenced out of every local write.
//! - What each kind does at each step is the kind's business ([`SagaKind`]); this crate only
//!   records, drives, retries and recovers.

mod metrics;
pub mod record;
pub mod runner;
pub mod service;
pub mod store;

pub use record::{Fence, NewSaga, Saga, SagaFailure, SagaState};
pub use runner::{
    Ending, Outcome, RunnerSettings, SagaConfig, SagaKind, SagaRunner, StepFailure, Transition,
};

use settle_platform::Scope;
use sqlx::migrate::Migrator;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// The saga log's table, for services that orchestrate sagas (history kept apart from theirs).
pub static MIGRATIONS: settle_platform::db::Migrations =
    settle_platform::db::Migrations::new("saga", &POSTGRES, &SQLITE)
        .with_history_table("_settle_saga_migrations");

/// A saga id derived from the request's idempotency key, so a retried request finds the saga the
/// first attempt started; a random one without a key. Keys are per mode, so the same key in test
/// and live mode names two sagas. (Live ids keep the derivation they had before keys were per mode,
/// so a live saga in flight across the upgrade is still found by its retry.)
pub fn saga_id_for(scope: &Scope, idempotency_key: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match idempotency_key {
        None => settle_platform::ids::IdPrefix::Saga.generate(),
        Some(key) => {
            let mut hasher = Sha256::new().chain_update(scope.account()).chain_update([0u8]);
            if !scope.livemode() {
                hasher.update(b"test\0");
            }
            let digest = hasher.chain_update(key).finalize();
            let mut value = 0u128;
            for byte in &digest[..16] {
                value = (value << 8) | u128::from(*byte);
            }
            const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
            let mut body = [b'0'; 22];
            for digit in body.iter_mut().rev() {
                *digit = ALPHABET[(value % 62) as usize];
                value /= 62;
            }
            format!("saga_k{}", String::from_utf8_lossy(&body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_saga_ids_are_stable_per_scope_and_key() {
        let (a_test, b_test, a_live) =
            (Scope::test("acct_a"), Scope::test("acct_b"), Scope::new("acct_a", true));
        let a = saga_id_for(&a_test, Some("k"));
        assert_eq!(a, saga_id_for(&a_test, Some("k")));
        assert_ne!(a, saga_id_for(&b_test, Some("k")));
        assert_ne!(a, saga_id_for(&a_test, Some("k2")));
        assert_ne!(a, saga_id_for(&a_live, Some("k")));
        assert!(settle_platform::ids::IdPrefix::Saga.matches(&a));
        assert_ne!(saga_id_for(&a_test, None), saga_id_for(&a_test, None));
        // Live ids are what they were before keys were per mode.
        assert_eq!(saga_id_for(&a_live, Some("k")), "saga_k4NnDX2TESDYPjrB7cD6Evc");
    }
}
