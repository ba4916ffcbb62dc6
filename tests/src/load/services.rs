//! The services under load: either the three service binaries (`settle-invoices`,
//! `settle-payments`, `settle-credit-notes`) started here from the load tool's own target folder on
//! loopback ports, each on a fresh database of the chosen backend, or services already running at
//! given URLs. Started ones have their idle resident memory read from `/proc` before any load.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use settle_platform::db::Backend;
use settle_platform::testing::TestDatabase;
use tokio::process::{Child, Command};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::process::free_addr;

/// The internal key the started services share.
const INTERNAL_KEY: &str = "sk_internal_settle_load";
/// How long a service may take to migrate its database and answer health.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between healthy and reading idle memory, for start-up allocations to settle.
const SETTLE_TIME: Duration = Duration::from_millis(500);

/// The binaries, in start order (invoices calls payments; credit notes calls both).
pub const BINARIES: [&str; 3] = ["settle-payments", "settle-invoices", "settle-credit-notes"];

/// Where the services are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub invoices: String,
    pub payments: String,
    pub credit_notes: String,
}

/// One started service process.
pub struct ServiceProcess {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
    pub log: PathBuf,
}

impl ServiceProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `VmRSS` of the process now, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_field("VmRSS:")
    }

    /// `VmHWM`: the most resident memory it has had, KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_field("VmHWM:")
    }

    fn status_field(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status_kib(&status, field)
    }
}

/// Reads a `Name:   1234 kB` line of `/proc/<pid>/status`.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Memory of one started service, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub service: &'static str,
    pub idle_rss_kib: u64,
    pub peak_rss_kib: Option<u64>,
}

/// Three started services and their databases; the processes are killed and the databases dropped
/// when this is dropped.
pub struct StartedServices {
    pub processes: Vec<ServiceProcess>,
    pub idle: Vec<Memory>,
    pub endpoints: Endpoints,
    /// The invoices database, for seeding the growth scenario.
    pub invoices_database_url: String,
    // Declared last: dropped after the processes are killed.
    _databases: Vec<TestDatabase>,
}

/// Starts the three services from `bin_dir` on fresh databases.
pub async fn start(
    bin_dir: &Path,
    backend: Backend,
    postgres_url: &str,
    db_connections: u32,
    (api_key, account): (&str, &str),
    log_dir: &Path,
) -> anyhow::Result<StartedServices> {
    let missing: Vec<&str> = BINARIES.iter().copied().filter(|b| !bin_dir.join(b).is_file()).collect();
    if !missing.is_empty() {
        let profile = if bin_dir.ends_with("release") { "--release " } else { "" };
        bail!(
            "{} not found in {}: build them next to settle-load with `cargo build {profile}--workspace --bins`",
            missing.join(", "),
            bin_dir.display()
        );
    }
    let mut databases = Vec::new();
    for _ in BINARIES {
        let database = match backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => TestDatabase::postgres_at(postgres_url)
                .await
                .with_context(|| format!("cannot create a database on {postgres_url}"))?,
        };
        databases.push(database);
    }
    let addrs: Vec<SocketAddr> = BINARIES.iter().map(|_| free_addr()).collect();
    let (payments, invoices, credit_notes) = (addrs[0], addrs[1], addrs[2]);
    let mut processes = Vec::new();
    for ((name, addr), database) in BINARIES.into_iter().zip(&addrs).zip(&databases) {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(bin_dir.join(name))
            .env("SETTLE_LISTEN_ADDR", addr.to_string())
            .env("DATABASE_URL", database.url())
            .env("SETTLE_DATABASE_MAX_CONNECTIONS", db_connections.to_string())
            .env("SETTLE_API_KEYS", format!("{api_key}={account}"))
            .env("SETTLE_INTERNAL_KEY", INTERNAL_KEY)
            .env("SETTLE_PAYMENTS_URL", format!("http://{payments}"))
            .env("SETTLE_INVOICES_URL", format!("http://{invoices}"))
            .env("SETTLE_INSTANCE_ID", format!("load-{name}"))
            .env("SETTLE_LOG_FORMAT", "text")
            .env("RUST_LOG", std::env::var("SETTLE_LOAD_SERVICE_LOG").unwrap_or_else(|_| "warn".into()))
            // Measured as deployed without a collector: no exporter, no metrics endpoint.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("SETTLE_METRICS_ADDR")
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        processes.push(ServiceProcess { name, addr: *addr, child, log });
    }
    for process in &mut processes {
        wait_healthy(process).await?;
    }
    tokio::time::sleep(SETTLE_TIME).await;
    let idle = processes
        .iter()
        .map(|p| Memory { service: p.name, idle_rss_kib: p.rss_kib().unwrap_or(0), peak_rss_kib: None })
        .collect();
    Ok(StartedServices {
        processes,
        idle,
        endpoints: Endpoints {
            invoices: format!("http://{invoices}"),
            payments: format!("http://{payments}"),
            credit_notes: format!("http://{credit_notes}"),
        },
        invoices_database_url: databases[1].url().to_owned(),
        _databases: databases,
    })
}

impl StartedServices {
    /// Idle memory with the peak reached so far.
    pub fn memory(&self) -> Vec<Memory> {
        self.idle
            .iter()
            .zip(&self.processes)
            .map(|(idle, process)| Memory { peak_rss_kib: process.peak_rss_kib(), ..idle.clone() })
            .collect()
    }

    /// Services that have exited (they should all still be running after a phase).
    pub fn exited(&mut self) -> Vec<String> {
        self.processes
            .iter_mut()
            .filter_map(|p| match p.child.try_wait() {
                Ok(Some(status)) => Some(format!("{} exited ({status}); see {}", p.name, p.log.display())),
                _ => None,
            })
            .collect()
    }
}

async fn wait_healthy(process: &mut ServiceProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("http://{}", process.addr);
    loop {
        if let Ok(Some(status)) = process.child.try_wait() {
            bail!("{} exited at start ({status}); see {}", process.name, process.log.display());
        }
        if let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone())
            && let Ok(channel) = endpoint.connect_timeout(Duration::from_millis(200)).connect().await
        {
            let serving = HealthClient::new(channel)
                .check(HealthCheckRequest { service: String::new() })
                .await
                .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
            if serving {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("{} not healthy within {START_TIMEOUT:?}; see {}", process.name, process.log.display());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields_of_proc_status() {
        let status = "Name:\tsettle-invoices\nVmHWM:\t   24012 kB\nVmRSS:\t   18432 kB\nThreads:\t4\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(18_432));
        assert_eq!(status_kib(status, "VmHWM:"), Some(24_012));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
