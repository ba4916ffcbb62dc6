//! The three settle services as real processes (`settle-node`), each on its own fresh database,
//! wired to each other, with short saga leases so that a crashed orchestrator's sagas are resumed
//! within a second. Crash tests restart one node with a fault point armed, make it crash there,
//! restart it clean and check that the stores agree.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use settle_platform::auth::{DEV_ACCOUNT, DEV_API_KEY};
use settle_platform::db::Backend;
use settle_platform::testing::TestDatabase;
use settle_testkit::{INTERNAL_KEY, LIVE_API_KEY, OTHER_ACCOUNT, OTHER_API_KEY};
use tonic::transport::Channel;

use crate::process::{Node, Service, free_addr};

/// How long a node may take to start and answer health.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A saga lease short enough that recovery after a crash is quick, long enough to drive a saga.
const SAGA_LEASE_MILLIS: &str = "400";

/// How the nodes reach each other (and what else is in their environment): fixed listen addresses (so a proxy can be put in front before
/// they start) and, per (caller, callee), the address the caller dials instead of the callee's own.
#[derive(Default)]
pub struct Topology {
    pub invoices: Option<SocketAddr>,
    pub payments: Option<SocketAddr>,
    #[allow(clippy::type_complexity)]
    pub route: Option<Box<dyn Fn(Service, Service) -> Option<SocketAddr> + Send + Sync>>,
    /// Variables added to each node's environment (telemetry endpoints, a metrics address…).
    #[allow(clippy::type_complexity)]
    pub env: Option<Box<dyn Fn(Service) -> BTreeMap<String, String> + Send + Sync>>,
}

/// Three running nodes and their databases.
pub struct Cluster {
    pub invoices: Node,
    pub payments: Node,
    pub credit_notes: Node,
    databases: Vec<TestDatabase>,
}

impl Cluster {
    /// Starts the three nodes of `binary` (the `settle-node` executable) on `backend`; `None` for
    /// PostgreSQL when `DATABASE_URL` is unset.
    pub async fn start(binary: PathBuf, backend: Backend) -> Option<Cluster> {
        Cluster::start_with(binary, backend, &Topology::default()).await
    }

    /// Like [`Cluster::start`], with the peers reached through `topology` (e.g. fault proxies).
    pub async fn start_with(binary: PathBuf, backend: Backend, topology: &Topology) -> Option<Cluster> {
        let payments_db = TestDatabase::new(backend).await?;
        let invoices_db = TestDatabase::new(backend).await?;
        let credit_notes_db = TestDatabase::new(backend).await?;
        let invoices_addr = topology.invoices.unwrap_or_else(free_addr);
        let payments_addr = topology.payments.unwrap_or_else(free_addr);
        let credit_notes_addr = free_addr();
        let peer = |service: Service, callee: Service, addr: SocketAddr| {
            topology.route.as_ref().and_then(|route| route(service, callee)).unwrap_or(addr)
        };
        let env = |db: &TestDatabase, service: Service| {
            let mut env = BTreeMap::from([
                ("DATABASE_URL".to_owned(), db.url().to_owned()),
                (
                    "SETTLE_API_KEYS".to_owned(),
                    format!(
                        "{DEV_API_KEY}={DEV_ACCOUNT},{LIVE_API_KEY}={DEV_ACCOUNT},{OTHER_API_KEY}={OTHER_ACCOUNT}"
                    ),
                ),
                ("SETTLE_INTERNAL_KEY".to_owned(), INTERNAL_KEY.to_owned()),
                (
                    "SETTLE_INVOICES_URL".to_owned(),
                    format!("http://{}", peer(service, Service::Invoices, invoices_addr)),
                ),
                (
                    "SETTLE_PAYMENTS_URL".to_owned(),
                    format!("http://{}", peer(service, Service::Payments, payments_addr)),
                ),
                ("SETTLE_SAGA_LEASE_MILLIS".to_owned(), SAGA_LEASE_MILLIS.to_owned()),
                ("SETTLE_SAGA_RECOVERY_INTERVAL_MILLIS".to_owned(), "50".to_owned()),
                ("SETTLE_SHUTDOWN_GRACE_SECONDS".to_owned(), "1".to_owned()),
                ("SETTLE_DATABASE_MAX_CONNECTIONS".to_owned(), "4".to_owned()),
            ]);
            if let Some(extra) = &topology.env {
                env.extend(extra(service));
            }
            env
        };
        let mut cluster = Cluster {
            payments: Node::new(
                binary.clone(),
                Service::Payments,
                payments_addr,
                env(&payments_db, Service::Payments),
            ),
            invoices: Node::new(
                binary.clone(),
                Service::Invoices,
                invoices_addr,
                env(&invoices_db, Service::Invoices),
            ),
            credit_notes: Node::new(
                binary,
                Service::CreditNotes,
                credit_notes_addr,
                env(&credit_notes_db, Service::CreditNotes),
            ),
            databases: vec![payments_db, invoices_db, credit_notes_db],
        };
        for service in [Service::Payments, Service::Invoices, Service::CreditNotes] {
            cluster.node(service).start(None);
        }
        for service in [Service::Payments, Service::Invoices, Service::CreditNotes] {
            cluster.node(service).wait_healthy(START_TIMEOUT).await;
        }
        Some(cluster)
    }

    /// The database `service` uses (its URL names it).
    pub fn database(&self, service: Service) -> &TestDatabase {
        match service {
            Service::Payments => &self.databases[0],
            Service::Invoices => &self.databases[1],
            Service::CreditNotes => &self.databases[2],
        }
    }

    pub fn node(&mut self, service: Service) -> &mut Node {
        match service {
            Service::Invoices => &mut self.invoices,
            Service::Payments => &mut self.payments,
            Service::CreditNotes => &mut self.credit_notes,
        }
    }

    pub fn addr(&self, service: Service) -> SocketAddr {
        match service {
            Service::Invoices => self.invoices.addr,
            Service::Payments => self.payments.addr,
            Service::CreditNotes => self.credit_notes.addr,
        }
    }

    /// A lazily connecting channel to `service`; it reconnects by itself after a restart.
    pub fn channel(&self, service: Service) -> Channel {
        settle_testkit::channel(self.addr(service))
    }

    /// Kills `service` (SIGKILL) and starts it again with `failpoints` armed, healthy.
    pub async fn restart(&mut self, service: Service, failpoints: Option<&str>) {
        let node = self.node(service);
        node.kill().await;
        node.start(failpoints);
        node.wait_healthy(START_TIMEOUT).await;
    }

    /// Stops every node gracefully (SIGTERM: they drain, and flush their spans).
    pub async fn stop_all(&mut self) {
        for service in [Service::CreditNotes, Service::Invoices, Service::Payments] {
            self.node(service).stop().await;
        }
    }

    /// Waits for `service` to crash at an armed fault point; false if it was still running after
    /// `timeout` (the point was not reached).
    pub async fn crashed(&mut self, service: Service, timeout: Duration) -> bool {
        self.node(service).wait_exit(timeout).await.is_some()
    }
}

/// Repeats `attempt` until it gives `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
