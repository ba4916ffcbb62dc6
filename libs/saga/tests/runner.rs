//! The saga driver on SQLite and PostgreSQL: inline runs, retries handed to recovery, takeover after
//! a crash, fencing of the replica that lost its lease, failures recorded for replay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use settle_platform::backend_tests;
use settle_platform::client::Backoff;
use settle_platform::db::{Db, Migrations};
use settle_platform::testing::TestDatabase;
use settle_saga::store::{self, now_millis};
use settle_saga::{
    Ending, Fence, NewSaga, Outcome, RunnerSettings, Saga, SagaFailure, SagaKind, SagaRunner, SagaState,
    StepFailure, Transition,
};
use sqlx::migrate::Migrator;
use tokio::sync::Semaphore;

static TEST_POSTGRES: Migrator = sqlx::migrate!("tests/migrations/postgres");
static TEST_SQLITE: Migrator = sqlx::migrate!("tests/migrations/sqlite");
static LEDGER: Migrations = Migrations::new("ledger", &TEST_POSTGRES, &TEST_SQLITE);

/// remote "call" (fails `failures` times, counts calls) → local "book" (writes the ledger and
/// advances, fenced) → remote "notify" → done. A data byte of 1 makes "book" refuse.
struct Demo {
    db: Db,
    calls: AtomicU32,
    failures: AtomicU32,
}

#[tonic::async_trait]
impl SagaKind for Demo {
    fn name(&self) -> &'static str {
        "attach_payment"
    }

    async fn step(&self, saga: &Saga, fence: &Fence) -> Result<Transition, StepFailure> {
        match saga.step.as_str() {
            "call" => {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if self.failures.load(Ordering::SeqCst) > 0 {
                    self.failures.fetch_sub(1, Ordering::SeqCst);
                    return Err(StepFailure::Retry("peer unavailable".into()));
                }
                Ok(Transition::Next { step: "book", data: saga.data.clone(), state: SagaState::Running })
            }
            "book" => {
                if saga.data == [1] {
                    return Ok(Transition::Finished(Ending::Failed(SagaFailure {
                        code: tonic::Code::FailedPrecondition,
                        reason: "invoice_not_open".into(),
                        message: "no".into(),
                    })));
                }
                let mut tx = self.db.begin().await.map_err(|e| StepFailure::Retry(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO ledger (saga_id, amount) VALUES ($1, 100) ON CONFLICT (saga_id) DO NOTHING",
                )
                .bind(saga.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| StepFailure::Retry(e.to_string()))?;
                store::advance(&mut tx, fence, "notify", &saga.data, SagaState::Running, Some(b"result"))
                    .await?;
                tx.commit().await.map_err(|e| StepFailure::Retry(e.to_string()))?;
                Ok(Transition::Committed {
                    step: "notify",
                    data: saga.data.clone(),
                    state: SagaState::Running,
                    result: Some(b"result".to_vec()),
                })
            }
            "notify" => Ok(Transition::Finished(Ending::Succeeded)),
            other => Err(StepFailure::Retry(format!("unknown step {other}"))),
        }
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        lease: Duration::from_secs(30),
        inline_attempts: 2,
        backoff: Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
            jitter: 0.0,
            max_attempts: 2,
        },
        recovery_interval: Duration::from_millis(20),
        recovery_batch: 8,
    }
}

async fn setup(database: &TestDatabase, failures: u32) -> (Db, Arc<Demo>, SagaRunner) {
    let db = database.connect(&[&settle_saga::MIGRATIONS, &LEDGER]).await.unwrap();
    let demo =
        Arc::new(Demo { db: db.clone(), calls: AtomicU32::new(0), failures: AtomicU32::new(failures) });
    let runner = SagaRunner::new(db.clone(), "test", settings(), vec![demo.clone()]);
    (db, demo, runner)
}

async fn record(
    runner: &SagaRunner,
    data: Vec<u8>,
    holder: Option<&Arc<str>>,
    lease_until: i64,
) -> (Saga, Fence) {
    let saga = NewSaga {
        id: settle_platform::ids::IdPrefix::Saga.generate(),
        scope: settle_platform::Scope::test("acct_a"),
        kind: "attach_payment",
        step: "call",
        data,
        subjects: BTreeMap::from([("invoice".to_owned(), "in_1".to_owned())]),
        idempotency_key: None,
        result: None,
    };
    let mut tx = runner.db().begin().await.unwrap();
    let recorded =
        store::insert(&mut tx, &saga, holder.unwrap_or(runner.holder()), lease_until).await.unwrap();
    tx.commit().await.unwrap();
    recorded
}

async fn ledger_rows(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM ledger").fetch_one(db.pool()).await.unwrap()
}

backend_tests! {
    an_inline_drive_runs_every_step_and_records_success => |database: TestDatabase| async move {
        let (db, demo, runner) = setup(&database, 0).await;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let background = runner.spawn_background(shutdown.clone());
        let (saga, fence) = record(&runner, vec![0], None, runner.lease_until()).await;
        let Outcome::Succeeded(done) = runner.drive(saga.clone(), fence).await else { panic!("succeeds") };
        assert_eq!(done.result.as_deref(), Some(&b"result"[..]));
        assert_eq!(demo.calls.load(Ordering::SeqCst), 1);
        shutdown.cancel();
        background.await.unwrap();
        let stored = store::get(&db, &settle_platform::Scope::test("acct_a"), &saga.id).await.unwrap().unwrap();
        assert_eq!((stored.state, stored.step.as_str()), (SagaState::Succeeded, "notify"));
        assert!(stored.completed_at.is_some());
        assert_eq!(ledger_rows(&db).await, 1);
    };

    a_failing_dependency_hands_the_saga_to_recovery => |database: TestDatabase| async move {
        let (db, demo, runner) = setup(&database, 5).await;
        let (saga, fence) = record(&runner, vec![0], None, runner.lease_until()).await;
        let Outcome::Pending(pending) = runner.drive(saga.clone(), fence).await else { panic!("pending") };
        assert_eq!(pending.last_error.as_deref(), Some("peer unavailable"));
        let stored = store::get(&db, &settle_platform::Scope::test("acct_a"), &saga.id).await.unwrap().unwrap();
        assert_eq!(stored.state, SagaState::Running);
        assert!(stored.lease_expires_at <= now_millis() + 1_000, "due again soon, not after the full lease");
        // Recovery resumes it once due; the peer recovers after three more failures.
        let permits = Arc::new(Semaphore::new(8));
        for _ in 0..200 {
            runner.recover_once(&permits).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            if ledger_rows(&db).await == 1 && store::get(&db, &settle_platform::Scope::test("acct_a"), &saga.id).await.unwrap().unwrap().step == "notify" {
                break;
            }
        }
        assert_eq!(ledger_rows(&db).await, 1);
        assert!(demo.calls.load(Ordering::SeqCst) >= 6);
    };

    a_crashed_replicas_saga_is_taken_over_and_the_old_holder_is_fenced_out => |database: TestDatabase| async move {
        let (db, _demo, runner) = setup(&database, 0).await;
        let dead: Arc<str> = "dead-replica".into();
        // Recorded by a replica that crashed: its lease has expired.
        let (saga, old_fence) = record(&runner, vec![0], Some(&dead), now_millis() - 1).await;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let background = runner.spawn_background(shutdown.clone());
        let mut finished = false;
        for _ in 0..500 {
            let stored = store::get(&db, &settle_platform::Scope::test("acct_a"), &saga.id).await.unwrap().unwrap();
            if stored.state == SagaState::Succeeded { finished = true; break; }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        background.await.unwrap();
        assert!(finished, "the recovery loop finished the saga");
        assert_eq!(ledger_rows(&db).await, 1);
        // The crashed replica, had it come back, cannot write any more.
        let mut tx = db.begin().await.unwrap();
        let fenced = store::advance(&mut tx, &old_fence, "notify", &[0], SagaState::Running, None).await;
        assert!(matches!(fenced, Err(store::AdvanceError::Fenced)));
    };

    a_refused_saga_records_its_failure_for_replay => |database: TestDatabase| async move {
        let (db, _demo, runner) = setup(&database, 0).await;
        let (saga, fence) = record(&runner, vec![1], None, runner.lease_until()).await;
        let Outcome::Failed(failed) = runner.drive(saga.clone(), fence).await else { panic!("fails") };
        assert_eq!(failed.failure.as_ref().unwrap().reason, "invoice_not_open");
        let stored = store::get(&db, &settle_platform::Scope::test("acct_a"), &saga.id).await.unwrap().unwrap();
        assert_eq!(stored.state, SagaState::Failed);
        assert_eq!(stored.failure.unwrap().code, tonic::Code::FailedPrecondition);
        assert_eq!(ledger_rows(&db).await, 0);
        let failed_only = store::list(&db, &settle_platform::Scope::test("acct_a"), &store::ListFilter { state: Some(SagaState::Failed), ..Default::default() },
            &settle_platform::pagination::PageRequest::parse(None, None, None, settle_platform::ids::IdPrefix::Saga).unwrap()).await.unwrap();
        assert_eq!(failed_only.data.len(), 1);
    };

    concurrent_recovery_passes_claim_each_saga_once => |database: TestDatabase| async move {
        let (db, demo, _runner) = setup(&database, 0).await;
        let a = SagaRunner::new(db.clone(), "a", settings(), vec![demo.clone()]);
        let b = SagaRunner::new(db.clone(), "b", settings(), vec![demo.clone()]);
        let dead: Arc<str> = "dead".into();
        for _ in 0..20 {
            record(&a, vec![0], Some(&dead), now_millis() - 1).await;
        }
        let (pa, pb) = (Arc::new(Semaphore::new(20)), Arc::new(Semaphore::new(20)));
        let (ca, cb) = tokio::join!(a.recover_once(&pa), b.recover_once(&pb));
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        println!("{}: two replicas claimed {ca} and {cb} of 20 expired sagas", database.backend().name());
        assert_eq!(ca + cb, 20, "every saga claimed exactly once");
    };
}
