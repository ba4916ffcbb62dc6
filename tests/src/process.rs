//! settle services as real processes (the `settle-node` binary, fault points compiled in), for the
//! crash and chaos tests: start with an environment, wait until healthy, kill with SIGKILL, see a
//! fault point crash one, restart. Everything is async: a test blocking its runtime would keep
//! its own connections from closing, and a node's graceful drain would wait for them.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Which service a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Invoices,
    Payments,
    CreditNotes,
}

impl Service {
    pub fn arg(self) -> &'static str {
        match self {
            Service::Invoices => "invoices",
            Service::Payments => "payments",
            Service::CreditNotes => "credit-notes",
        }
    }
}

/// The `settle-node` binary beside the running tool (`settle-chaos`, `settle-fuzz`), or why it
/// cannot be used, for the tool to print.
pub fn sibling_node() -> Result<PathBuf, String> {
    let node = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("settle-node")))
        .ok_or_else(|| "cannot locate settle-node".to_owned())?;
    if !node.exists() {
        return Err(format!(
            "{} is missing; build it with `cargo build -p settle-tests --bins`",
            node.display()
        ));
    }
    Ok(node)
}

/// A free loopback port (bound, then released for the node to take).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("no free port: {e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("no local address: {e}"))
}

/// One service process.
pub struct Node {
    pub service: Service,
    pub addr: SocketAddr,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    child: Option<Child>,
}

impl Node {
    /// A node for `service` on `addr` with `env` (DATABASE_URL, keys, peers…); not started yet.
    pub fn new(
        binary: PathBuf,
        service: Service,
        addr: SocketAddr,
        mut env: BTreeMap<String, String>,
    ) -> Node {
        env.insert("SETTLE_LISTEN_ADDR".into(), addr.to_string());
        env.entry("RUST_LOG".into()).or_insert_with(|| "warn".into());
        Node { service, addr, binary, env, child: None }
    }

    /// Sets (or with `None` removes) a variable of the node's environment for its next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.env.insert(key.to_owned(), value.to_owned()),
            None => self.env.remove(key),
        };
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts the process, with `failpoints` armed (`name=actions;…`) if given.
    pub fn start(&mut self, failpoints: Option<&str>) {
        let mut command = Command::new(&self.binary);
        command
            .arg(self.service.arg())
            .envs(&self.env)
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("TEST_LOG").is_none() {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        if let Some(plan) = failpoints {
            command.env("FAILPOINTS", plan);
        }
        self.child = Some(command.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.service)));
    }

    /// Waits until the node answers health SERVING (or fails after `timeout`).
    pub async fn wait_healthy(&self, timeout: Duration) {
        assert!(self.try_wait_healthy(timeout).await, "{:?} not healthy within {timeout:?}", self.service);
    }

    /// Waits until the node answers health SERVING; false if it did not within `timeout`.
    pub async fn try_wait_healthy(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}", self.addr);
        loop {
            if let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone())
                && let Ok(channel) = endpoint.connect_timeout(Duration::from_millis(200)).connect().await
            {
                let serving = HealthClient::new(channel)
                    .check(HealthCheckRequest { service: String::new() })
                    .await
                    .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
                if serving {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL: no draining, no flushing.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Waits (bounded) for the process to exit on its own — a fault point crashed it.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Graceful stop (SIGTERM) and wait; returns how the process ended.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(pid) = child.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        child.wait().await.ok()
    }
}
