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

use sqlx::migrate::Migrator;

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// The saga log's table, for services that orchestrate sagas (history kept apart from theirs).
pub static MIGRATIONS: settle_platform::db::Migrations =
    settle_platform::db::Migrations::new("saga", &POSTGRES, &SQLITE)
        .with_history_table("_settle_saga_migrations");

/// A saga id derived from the request's idempotency key, so a retried request finds the saga the
/// first attempt started; a random one without a key.
pub fn saga_id_for(account: &str, idempotency_key: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match idempotency_key {
        None => settle_platform::ids::IdPrefix::Saga.generate(),
        Some(key) => {
            let digest = Sha256::new().chain_update(account).chain_update([0u8]).chain_update(key).finalize();
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
    fn keyed_saga_ids_are_stable_per_account_and_key() {
        let a = saga_id_for("acct_a", Some("k"));
        assert_eq!(a, saga_id_for("acct_a", Some("k")));
        assert_ne!(a, saga_id_for("acct_b", Some("k")));
        assert_ne!(a, saga_id_for("acct_a", Some("k2")));
        assert!(settle_platform::ids::IdPrefix::Saga.matches(&a));
        assert_ne!(saga_id_for("acct_a", None), saga_id_for("acct_a", None));
    }
}
