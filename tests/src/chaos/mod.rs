//! The chaos run: the three services as processes with fault proxies between them, a workload of
//! clients, and a seeded schedule of faults — network delays, resets and blackholes, processes
//! killed at random moments, crashes and stalls at the code's fault points, PostgreSQL connections
//! terminated. Then the faults stop, the suite must settle within 30 s, and the invariant checker
//! reads both stores over the API. The seed replays the same fault schedule.

pub mod invariants;
pub mod proxy;
pub use crate::rng;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use settle_platform::db::Backend;
use tokio_util::sync::CancellationToken;

use self::proxy::{FaultProxy, NetworkFaults};
use self::rng::Rng;
use self::workload::{Tally, Worker};
use crate::api::Api;
use crate::cluster::{Cluster, Topology};
use crate::process::{Service, free_addr};

/// Every fault point of the sagas (see tests/tests/crashes.rs and credit_note_crashes.rs for
/// what each guards).
pub const FAULT_POINTS: &[(Service, &str)] = &[
    (Service::Invoices, "invoices.attach.after_record"),
    (Service::Invoices, "invoices.attach.before_reserve"),
    (Service::Invoices, "invoices.attach.after_reserve"),
    (Service::Invoices, "invoices.attach.before_apply"),
    (Service::Invoices, "invoices.attach.after_apply"),
    (Service::Invoices, "invoices.attach.before_confirm"),
    (Service::Invoices, "invoices.attach.after_confirm"),
    (Service::Invoices, "invoices.release.before_release"),
    (Service::Invoices, "invoices.release.after_release"),
    (Service::Invoices, "invoices.detach.after_unapply"),
    (Service::Invoices, "invoices.reapply.after_unapply"),
    (Service::Invoices, "invoices.pay.after_record"),
    (Service::Invoices, "invoices.pay.before_create_intent"),
    (Service::Invoices, "invoices.pay.after_create_intent"),
    (Service::Invoices, "invoices.pay.before_confirm_intent"),
    (Service::Invoices, "invoices.pay.after_confirm_intent"),
    (Service::Invoices, "invoices.finalize.after_commit"),
    (Service::Invoices, "invoices.default.after_cancel"),
    (Service::Invoices, "invoices.credit_reserve.before_commit"),
    (Service::Invoices, "invoices.credit_reserve.after_commit"),
    (Service::Invoices, "invoices.credit_apply.after_commit"),
    (Service::Invoices, "invoices.credit_release.after_commit"),
    (Service::Invoices, "invoices.credit_reverse.after_commit"),
    (Service::Payments, "payments.reserve.before_commit"),
    (Service::Payments, "payments.reserve.after_commit"),
    (Service::Payments, "payments.confirm.before_commit"),
    (Service::Payments, "payments.confirm.after_commit"),
    (Service::Payments, "payments.release.before_commit"),
    (Service::Payments, "payments.release.after_commit"),
    (Service::Payments, "payments.create_intent.after_commit"),
    (Service::Payments, "payments.intent_change.after_commit"),
    (Service::Payments, "payments.claim_refunds.before_commit"),
    (Service::Payments, "payments.claim_refunds.after_commit"),
    (Service::CreditNotes, "creditnotes.issue.after_record"),
    (Service::CreditNotes, "creditnotes.issue.before_reserve"),
    (Service::CreditNotes, "creditnotes.issue.after_reserve"),
    (Service::CreditNotes, "creditnotes.issue.before_claim"),
    (Service::CreditNotes, "creditnotes.issue.after_claim"),
    (Service::CreditNotes, "creditnotes.issue.before_apply"),
    (Service::CreditNotes, "creditnotes.issue.after_apply"),
    (Service::CreditNotes, "creditnotes.issue.before_issue"),
    (Service::CreditNotes, "creditnotes.issue.after_issue"),
    (Service::CreditNotes, "creditnotes.issue.before_release_claims"),
    (Service::CreditNotes, "creditnotes.issue.after_release_claims"),
    (Service::CreditNotes, "creditnotes.issue.before_release_credit"),
    (Service::CreditNotes, "creditnotes.issue.after_release_credit"),
    (Service::CreditNotes, "creditnotes.issue.before_abandon"),
    (Service::CreditNotes, "creditnotes.void.after_record"),
    (Service::CreditNotes, "creditnotes.void.before_reverse"),
    (Service::CreditNotes, "creditnotes.void.after_reverse"),
    (Service::CreditNotes, "creditnotes.void.before_void"),
    (Service::CreditNotes, "creditnotes.void.after_void"),
    (Service::CreditNotes, "creditnotes.void.before_unmark"),
];

/// What a run does.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    pub backend: Backend,
    /// How long faults are injected while the workload runs.
    pub duration: Duration,
    pub workers: usize,
    pub network: NetworkFaults,
    /// Mean seconds between process kills (0: none).
    pub kill_every: f64,
    /// Probability that a fault point crashes its process, per pass, while armed.
    pub crash_probability: f64,
    /// Probability that a fault point stalls (sleeps up to 200 ms), per pass, while armed.
    pub stall_probability: f64,
    /// Mean seconds between PostgreSQL connection terminations (0: none; PostgreSQL only).
    pub db_restart_every: f64,
}

impl ChaosConfig {
    pub fn new(seed: u64, backend: Backend) -> ChaosConfig {
        ChaosConfig {
            seed,
            backend,
            duration: Duration::from_secs(120),
            workers: 8,
            network: NetworkFaults::default(),
            kill_every: 6.0,
            crash_probability: 0.01,
            stall_probability: 0.05,
            db_restart_every: 5.0,
        }
    }
}

/// Faults injected, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub by_kind: BTreeMap<&'static str, u64>,
}

impl FaultCounts {
    fn add(&mut self, kind: &'static str, n: u64) {
        *self.by_kind.entry(kind).or_default() += n;
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }
}

/// What a run measured.
pub struct Summary {
    pub faults: FaultCounts,
    pub tally: Tally,
    pub report: invariants::Report,
    /// How long the suite took to settle after the last fault.
    pub settled_in: Duration,
}

/// The `FAILPOINTS` plan a restarted node of `service` gets: every point of that service may
/// crash it or stall.
fn fault_plan(service: Service, config: &ChaosConfig) -> String {
    FAULT_POINTS
        .iter()
        .filter(|(s, _)| *s == service)
        .map(|(_, point)| {
            format!(
                "{point}={}%crash->{}%sleep(200)",
                (config.crash_probability * 100.0).min(100.0),
                (config.stall_probability * 100.0).min(100.0)
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Runs the whole thing with `binary` (settle-node). Errors are the harness's own (a service that
/// never starts), not violations.
pub async fn run(config: &ChaosConfig, binary: PathBuf) -> Result<Summary, String> {
    let mut rng = Rng::new(config.seed);
    let shutdown = CancellationToken::new();
    let (invoices_addr, payments_addr) = (free_addr(), free_addr());
    let start_proxy = |name: &'static str, upstream, stream: u64| {
        FaultProxy::start(name, upstream, config.seed ^ stream, config.network, shutdown.clone())
    };
    let invoices_to_payments =
        start_proxy("invoices→payments", payments_addr, 1).await.map_err(|e| e.to_string())?;
    let credit_notes_to_invoices =
        start_proxy("credit-notes→invoices", invoices_addr, 2).await.map_err(|e| e.to_string())?;
    let credit_notes_to_payments =
        start_proxy("credit-notes→payments", payments_addr, 3).await.map_err(|e| e.to_string())?;
    let proxies =
        [invoices_to_payments.clone(), credit_notes_to_invoices.clone(), credit_notes_to_payments.clone()];
    let routes = [
        (Service::Invoices, Service::Payments, invoices_to_payments.addr()),
        (Service::CreditNotes, Service::Invoices, credit_notes_to_invoices.addr()),
        (Service::CreditNotes, Service::Payments, credit_notes_to_payments.addr()),
    ];
    let topology = Topology {
        invoices: Some(invoices_addr),
        payments: Some(payments_addr),
        route: Some(Box::new(move |caller, callee| {
            routes.iter().find(|(a, b, _)| *a == caller && *b == callee).map(|(_, _, addr)| *addr)
        })),
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(binary, config.backend, &topology)
        .await
        .ok_or_else(|| "the backend is not available (DATABASE_URL unset?)".to_owned())?;
    let api = Api::new(cluster.channel(Service::Invoices), cluster.channel(Service::Payments))
        .with_credit_notes(cluster.channel(Service::CreditNotes));

    let started = Instant::now();
    let deadline = started + config.duration;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers: Vec<_> = (0..config.workers)
        .map(|i| tokio::spawn(Worker::new(i, api.clone(), config.seed).run(deadline, tally.clone())))
        .collect();

    let mut faults = FaultCounts::default();
    let mut incarnation = 0u64;
    let next_in = |rng: &mut Rng, mean: f64| {
        // Exponential gaps: faults at random moments, `mean` seconds apart on average.
        Duration::from_secs_f64(-mean * (1.0 - rng.unit()).ln())
    };
    let mut next_kill =
        (config.kill_every > 0.0).then(|| Instant::now() + next_in(&mut rng, config.kill_every));
    let mut next_db = (config.db_restart_every > 0.0 && config.backend == Backend::Postgres)
        .then(|| Instant::now() + next_in(&mut rng, config.db_restart_every));
    let services = [Service::Invoices, Service::Payments, Service::CreditNotes];
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for service in services {
            let node = cluster.node(service);
            if !node.running() {
                // A fault point crashed it: count it and bring it back, armed again.
                faults.add("fault-point crashes", 1);
                incarnation += 1;
                restart_armed(&mut cluster, service, config, incarnation).await;
            }
        }
        if next_kill.is_some_and(|at| Instant::now() >= at) {
            let service = services[rng.weighted(&[2, 2, 1])];
            faults.add("process kills", 1);
            cluster.node(service).kill().await;
            tokio::time::sleep(Duration::from_millis(rng.between(0, 300))).await;
            incarnation += 1;
            restart_armed(&mut cluster, service, config, incarnation).await;
            next_kill = Some(Instant::now() + next_in(&mut rng, config.kill_every));
        }
        if next_db.is_some_and(|at| Instant::now() >= at) {
            let service = services[rng.weighted(&[2, 2, 1])];
            let terminated = terminate_connections(&cluster, service).await;
            faults.add("database connections terminated", terminated);
            next_db = Some(Instant::now() + next_in(&mut rng, config.db_restart_every));
        }
    }

    // The faults stop; every node restarts clean; clients finish what they started.
    for proxy in &proxies {
        proxy.set_enabled(false);
    }
    let last_fault = Instant::now();
    for service in [Service::Invoices, Service::Payments, Service::CreditNotes] {
        let node = cluster.node(service);
        node.set_env("FAILPOINTS", None);
        if !node.running() {
            faults.add("fault-point crashes", 1);
        }
        cluster.restart(service, None).await;
    }
    for worker in workers {
        let _ = worker.await;
    }
    for proxy in &proxies {
        let counts = proxy.counts();
        faults.add("network delays", counts.delays.load(Ordering::Relaxed));
        faults.add("connection resets", counts.resets.load(Ordering::Relaxed));
        faults.add("blackholes", counts.blackholes.load(Ordering::Relaxed));
    }

    // Quiet: within 30 s every saga ends and the stores agree.
    let mut report;
    loop {
        let sagas = api.live_sagas().await.map_err(|s| format!("listing sagas: {s}"))?;
        report = invariants::check(&api).await.map_err(|s| format!("checking invariants: {s}"))?;
        if !sagas.is_empty() {
            report.violations.push(format!(
                "{} sagas not ended {:.0?} after the last fault: {:?}",
                sagas.len(),
                last_fault.elapsed(),
                sagas.iter().take(5).map(|s| (&s.id, &s.step, &s.last_error)).collect::<Vec<_>>()
            ));
        }
        if report.violations.is_empty() || last_fault.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled_in = last_fault.elapsed();
    shutdown.cancel();
    for service in [Service::Invoices, Service::Payments, Service::CreditNotes] {
        cluster.node(service).stop().await;
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Summary { faults, tally, report, settled_in })
}

async fn restart_armed(cluster: &mut Cluster, service: Service, config: &ChaosConfig, incarnation: u64) {
    let node = cluster.node(service);
    node.set_env("SETTLE_FAULT_SEED", Some(&(config.seed ^ incarnation).to_string()));
    let plan = fault_plan(service, config);
    node.kill().await;
    node.start(Some(&plan));
    // A node armed with a plan may crash again while starting up; the loop restarts it then.
    node.try_wait_healthy(Duration::from_secs(30)).await;
}

/// Terminates every connection of `service`'s PostgreSQL database, as a database restart or
/// failover does; returns how many there were.
async fn terminate_connections(cluster: &Cluster, service: Service) -> u64 {
    let url = cluster.database(service).url().to_owned();
    let Some((admin, name)) = url.rsplit_once('/') else { return 0 };
    let name = name.split('?').next().unwrap_or(name).to_owned();
    let Ok(mut connection) =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{admin}/postgres")).await
    else {
        return 0;
    };
    let terminated: Result<Vec<bool>, _> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .fetch_all(&mut connection)
    .await;
    terminated.map_or(0, |t| t.iter().filter(|ok| **ok).count() as u64)
}
