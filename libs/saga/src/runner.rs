//! Driving sagas: inline right after a request records one, and in the background for sagas whose
//! lease expired (a crashed replica, a dependency that was down).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use settle_platform::client::Backoff;
use settle_platform::db::Db;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::record::{Fence, Saga, SagaFailure, SagaState};
use crate::store::{self, now_millis};

/// What one saga kind does at each of its steps.
#[tonic::async_trait]
pub trait SagaKind: Send + Sync + 'static {
    /// The name stored in the saga log (`attach_payment`, …).
    fn name(&self) -> &'static str;

    /// Performs the saga's current step (`saga.step`) once. A remote step calls another service
    /// (idempotently, keyed by the saga id) and returns [`Transition::Next`]; a local step writes
    /// its effect and the saga's next step in one transaction ([`crate::store::advance`] with
    /// `fence`) and returns [`Transition::Committed`].
    async fn step(&self, saga: &Saga, fence: &Fence) -> Result<Transition, StepFailure>;

    /// Whether this kind's success is written before [`SagaRunner::drive`] returns, rather than in
    /// the next batch. Needed by a kind whose orchestrator reads "is one of these still live?" from
    /// the log (one charge of an invoice at a time): a batched success would still read as live.
    fn records_success_at_once(&self) -> bool {
        false
    }
}

/// What a step did.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A remote step is done; carry on with `step`. Nothing is persisted: after a crash the saga
    /// repeats this step, which is idempotent.
    Next { step: &'static str, data: Vec<u8>, state: SagaState },
    /// A local step committed its effect together with the saga's move to `step` (and, when the
    /// step decided the operation's answer, its encoded `result`).
    Committed { step: &'static str, data: Vec<u8>, state: SagaState, result: Option<Vec<u8>> },
    /// The saga is over.
    Finished(Ending),
}

/// How a saga ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Its answer was stored by the step that decided it.
    Succeeded,
    /// Refused (after compensating whatever had been done), with the error to answer.
    Failed(SagaFailure),
}

/// A step that did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepFailure {
    /// A dependency was unavailable or a transaction hit a transient error: try again later.
    Retry(String),
    /// Another replica took over the saga's lease: stop driving it.
    Fenced,
}

impl From<store::AdvanceError> for StepFailure {
    fn from(error: store::AdvanceError) -> Self {
        match error {
            store::AdvanceError::Fenced => StepFailure::Fenced,
            store::AdvanceError::Database(e) => StepFailure::Retry(format!("database: {e}")),
        }
    }
}

/// Where a drive left the saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Saga),
    Failed(Saga),
    /// Still running; the recovery loop takes it from here (after `saga.last_error`).
    Pending(Saga),
    /// Another replica holds it now.
    LostLease,
}

/// How often the recovery loop measures the backlog of undriven sagas for the metrics.
const BACKLOG_INTERVAL: Duration = Duration::from_secs(10);

/// Timings of the driver.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// How long a replica owns a saga it drives before others may take it over.
    pub lease: Duration,
    /// Attempts of a failing step while a request waits, before the recovery loop takes over.
    pub inline_attempts: u32,
    /// Delays between attempts (inline and in recovery).
    pub backoff: Backoff,
    /// How often the recovery loop looks for sagas whose lease expired.
    pub recovery_interval: Duration,
    /// Sagas claimed per recovery pass, and driven at once.
    pub recovery_batch: i64,
}

/// The runner's settings a deployment may change: `SETTLE_SAGA_LEASE_MILLIS` (how long a replica owns
/// a saga it drives; after a crash, how long until another resumes it) and
/// `SETTLE_SAGA_RECOVERY_INTERVAL_MILLIS` (how often the recovery loop looks for such sagas).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct SagaConfig {
    pub saga_lease_millis: u64,
    pub saga_recovery_interval_millis: u64,
}

impl Default for SagaConfig {
    fn default() -> Self {
        let defaults = RunnerSettings::default();
        SagaConfig {
            saga_lease_millis: u64::try_from(defaults.lease.as_millis()).unwrap_or(30_000),
            saga_recovery_interval_millis: u64::try_from(defaults.recovery_interval.as_millis())
                .unwrap_or(1_000),
        }
    }
}

impl From<&SagaConfig> for RunnerSettings {
    fn from(config: &SagaConfig) -> Self {
        RunnerSettings {
            // A lease shorter than a few round trips would be lost while driving.
            lease: Duration::from_millis(config.saga_lease_millis.max(100)),
            recovery_interval: Duration::from_millis(config.saga_recovery_interval_millis.max(10)),
            ..RunnerSettings::default()
        }
    }
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            lease: Duration::from_secs(30),
            inline_attempts: 3,
            backoff: Backoff {
                base: Duration::from_millis(50),
                max: Duration::from_secs(5),
                jitter: 0.5,
                max_attempts: 3,
            },
            recovery_interval: Duration::from_secs(1),
            recovery_batch: 32,
        }
    }
}

/// Drives the sagas of one service replica.
#[derive(Clone)]
pub struct SagaRunner {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    holder: Arc<str>,
    settings: RunnerSettings,
    kinds: HashMap<&'static str, Arc<dyn SagaKind>>,
    completions: mpsc::Sender<Fence>,
    completion_queue: std::sync::Mutex<Option<mpsc::Receiver<Fence>>>,
}

impl std::fmt::Debug for SagaRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaRunner").field("holder", &self.inner.holder).finish()
    }
}

impl SagaRunner {
    /// A runner for `kinds`, identifying this replica as `instance` in leases.
    pub fn new(db: Db, instance: &str, settings: RunnerSettings, kinds: Vec<Arc<dyn SagaKind>>) -> Self {
        let (completions, queue) = mpsc::channel(4096);
        // The holder is unique per process start, so a restarted replica never mistakes an old
        // lease for its own.
        let holder: Arc<str> =
            format!("{instance}/{}", settle_platform::ids::IdPrefix::Request.generate()).into();
        SagaRunner {
            inner: Arc::new(Inner {
                db,
                holder,
                settings,
                kinds: kinds.into_iter().map(|k| (k.name(), k)).collect(),
                completions,
                completion_queue: std::sync::Mutex::new(Some(queue)),
            }),
        }
    }

    /// This replica's lease holder name.
    pub fn holder(&self) -> &Arc<str> {
        &self.inner.holder
    }

    /// When a lease taken now expires (ms).
    pub fn lease_until(&self) -> i64 {
        now_millis() + i64::try_from(self.inner.settings.lease.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Drives `saga` (whose lease `fence` this replica holds) until it ends, must wait for a
    /// dependency, or is taken over.
    pub async fn drive(&self, mut saga: Saga, fence: Fence) -> Outcome {
        let inner = &self.inner;
        let Some(kind) = inner.kinds.get(saga.kind.as_str()).cloned() else {
            tracing::error!(saga_id = %saga.id, kind = %saga.kind, "no driver for this saga kind; leaving it for a replica that has one");
            let due = now_millis() + 60_000;
            let _ = store::postpone(
                &inner.db,
                &fence,
                &saga.step,
                &saga.data,
                saga.state,
                due,
                "unknown saga kind",
            )
            .await;
            return Outcome::Pending(saga);
        };
        let mut failures = 0u32;
        loop {
            let step_name = saga.step.clone();
            let started = std::time::Instant::now();
            let result = kind.step(&saga, &fence).instrument(tracing::debug_span!("saga.step", saga.id = %saga.id, saga.kind = %saga.kind, saga.step = %step_name)).await;
            let step_outcome = match &result {
                Ok(Transition::Next { .. }) => "next",
                Ok(Transition::Committed { .. }) => "committed",
                Ok(Transition::Finished(_)) => "finished",
                Err(StepFailure::Retry(_)) => "retry",
                Err(StepFailure::Fenced) => "fenced",
            };
            crate::metrics::step(
                kind.name(),
                &step_name,
                step_outcome,
                started.elapsed().as_secs_f64() * 1000.0,
            );
            match result {
                Ok(Transition::Next { step, data, state }) => {
                    saga.step = step.to_owned();
                    saga.data = data;
                    saga.state = state;
                    failures = 0;
                }
                Ok(Transition::Committed { step, data, state, result }) => {
                    saga.step = step.to_owned();
                    saga.data = data;
                    saga.state = state;
                    if result.is_some() {
                        saga.result = result;
                    }
                    failures = 0;
                }
                Ok(Transition::Finished(Ending::Succeeded)) => {
                    saga.state = SagaState::Succeeded;
                    // Recording success can wait and be batched: if it is lost, recovery repeats the
                    // last (idempotent) steps and records it then.
                    let batched =
                        !kind.records_success_at_once() && inner.completions.try_send(fence.clone()).is_ok();
                    if !batched
                        && let Err(error) =
                            store::finish_succeeded(&inner.db, std::slice::from_ref(&fence)).await
                    {
                        tracing::warn!(%error, saga_id = %saga.id, "could not record saga success; recovery will");
                    }
                    crate::metrics::finished(kind.name(), "succeeded");
                    return Outcome::Succeeded(saga);
                }
                Ok(Transition::Finished(Ending::Failed(failure))) => {
                    match store::finish_failed(&inner.db, &fence, &saga.step, &saga.data, &failure).await {
                        Ok(true) => {}
                        Ok(false) => return Outcome::LostLease,
                        Err(error) => {
                            tracing::warn!(%error, saga_id = %saga.id, "could not record saga failure; recovery will repeat it");
                            saga.last_error = Some(error.to_string());
                            return Outcome::Pending(saga);
                        }
                    }
                    crate::metrics::finished(kind.name(), "failed");
                    saga.state = SagaState::Failed;
                    saga.failure = Some(failure);
                    return Outcome::Failed(saga);
                }
                Err(StepFailure::Fenced) => {
                    tracing::info!(saga_id = %saga.id, "saga taken over by another replica");
                    return Outcome::LostLease;
                }
                Err(StepFailure::Retry(error)) => {
                    failures += 1;
                    tracing::debug!(saga_id = %saga.id, step = %saga.step, %error, failures, "saga step failed; retrying");
                    if failures < inner.settings.inline_attempts {
                        tokio::time::sleep(inner.settings.backoff.delay(failures)).await;
                        continue;
                    }
                    let attempts = u32::try_from(saga.attempts.max(0)).unwrap_or(0) + 1;
                    let delay = inner.settings.backoff.delay(attempts);
                    let due = now_millis() + i64::try_from(delay.as_millis()).unwrap_or(0);
                    match store::postpone(&inner.db, &fence, &saga.step, &saga.data, saga.state, due, &error)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => return Outcome::LostLease,
                        Err(db_error) => {
                            tracing::warn!(%db_error, saga_id = %saga.id, "could not postpone saga; its lease will expire")
                        }
                    }
                    tracing::warn!(saga_id = %saga.id, step = %saga.step, %error, "saga waiting for a dependency; recovery will resume it");
                    saga.last_error = Some(error);
                    return Outcome::Pending(saga);
                }
            }
        }
    }

    /// Starts the recovery loop and the completion writer; both stop when `shutdown` is cancelled
    /// (the writer after recording what is queued). Await the handle to know they have.
    pub fn spawn_background(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let queue = self.inner.completion_queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let writer = queue
            .map(|queue| tokio::spawn(write_completions(self.inner.db.clone(), queue, shutdown.clone())));
        let runner = self.clone();
        tokio::spawn(async move {
            runner.recover_until(shutdown).await;
            if let Some(writer) = writer {
                let _ = writer.await;
            }
        })
    }

    /// Claims and drives sagas whose lease expired, until shutdown.
    async fn recover_until(&self, shutdown: CancellationToken) {
        let settings = &self.inner.settings;
        let permits = Arc::new(Semaphore::new(usize::try_from(settings.recovery_batch).unwrap_or(32)));
        let mut kinds: Vec<&'static str> = self.inner.kinds.keys().copied().collect();
        kinds.sort_unstable();
        let mut backlog_measured: Option<std::time::Instant> = None;
        loop {
            // Measured before claiming, so the gauge shows what was waiting, not what is left.
            if backlog_measured.is_none_or(|at| at.elapsed() >= BACKLOG_INTERVAL) {
                backlog_measured = Some(std::time::Instant::now());
                match store::stuck_summary(&self.inner.db).await {
                    Ok(rows) => crate::metrics::set_backlog(&kinds, rows),
                    Err(error) => tracing::debug!(%error, "could not measure the saga backlog"),
                }
            }
            let claimed = match self.recover_once(&permits).await {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, "saga recovery pass failed");
                    0
                }
            };
            // A full batch means more may be waiting: go again at once.
            let pause = if claimed as i64 >= settings.recovery_batch {
                Duration::ZERO
            } else {
                settings.recovery_interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One recovery pass: claims due sagas (as many as there are free driving slots) and drives
    /// each in its own task. Returns how many it claimed.
    pub async fn recover_once(&self, permits: &Arc<Semaphore>) -> Result<usize, sqlx::Error> {
        let free = i64::try_from(permits.available_permits()).unwrap_or(0);
        if free == 0 {
            return Ok(0);
        }
        let claimed = store::claim_due(&self.inner.db, &self.inner.holder, self.lease_until(), free).await?;
        let count = claimed.len();
        for saga in claimed {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let fence = Fence {
                saga_id: saga.id.clone(),
                holder: self.inner.holder.clone(),
                version: saga.lease_version,
            };
            let span = tracing::info_span!("saga.recover", saga.id = %saga.id, saga.kind = %saga.kind, saga.step = %saga.step, saga.attempts = saga.attempts);
            // A trace of its own (the original request is long over), linked to the request's.
            settle_platform::telemetry::link_to_trace(&span, saga.traceparent.as_deref());
            let runner = self.clone();
            tokio::spawn(
                async move {
                    tracing::info!("resuming saga");
                    let outcome = runner.drive(saga, fence).await;
                    tracing::info!(outcome = outcome_name(&outcome), "saga drive ended");
                    drop(permit);
                }
                .instrument(span),
            );
        }
        Ok(count)
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded(_) => "succeeded",
        Outcome::Failed(_) => "failed",
        Outcome::Pending(_) => "pending",
        Outcome::LostLease => "lost_lease",
    }
}

/// Writes batched saga successes until shutdown, then flushes what is queued.
async fn write_completions(db: Db, mut queue: mpsc::Receiver<Fence>, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(128);
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => None,
            fence = queue.recv() => fence,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < 128 {
            match queue.try_recv() {
                Ok(fence) => batch.push(fence),
                Err(_) => break,
            }
        }
        if let Err(error) = store::finish_succeeded(&db, &batch).await {
            tracing::warn!(%error, sagas = batch.len(), "could not record saga successes; recovery will");
        }
        batch.clear();
    }
    // Shutdown: record what is already queued.
    queue.close();
    while let Ok(fence) = queue.try_recv() {
        batch.push(fence);
    }
    if !batch.is_empty()
        && let Err(error) = store::finish_succeeded(&db, &batch).await
    {
        tracing::warn!(%error, sagas = batch.len(), "could not record saga successes at shutdown; recovery will");
    }
}
