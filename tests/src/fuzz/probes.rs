//! Probes: deterministic scenarios, one per hole of issue 12, that the random flavors reach only by
//! luck or not at all (a live bank debit settled with a test key, a poison event stalling the
//! consumer, a node started without keys …). Each runs once per run, after the generated requests,
//! counts its calls in the run's requests and reports what it finds under its own class
//! (`probe <name>: …`). `--probes a,b` runs only those; `--requests 0 --probes a` replays one.

mod inputs;
mod modes;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use settle_platform::db::Backend;
use tonic::{Code, Request, Status};

use super::oracle::{self, Channels};
use super::schema::Method;
use crate::process::Service;

/// Every probe, in the order they run: the ones that load the services hard run last.
pub const ALL: &[&str] = &[
    "modes",
    "forged-metadata",
    "nul-text",
    "error-text",
    "poison-event",
    "fan-out",
    "oversized",
    "metric-labels",
    "streams",
    "overload",
    "fail-closed",
];

/// What the probes may use.
pub struct ProbeEnv<'a> {
    pub channels: &'a Channels,
    pub methods: &'a [Method],
    pub backend: Backend,
    /// The `settle-node` binary, to start a node of its own (fail closed).
    pub binary: PathBuf,
    /// Each node's gRPC address (for connections of a probe's own).
    pub addrs: Vec<(Service, SocketAddr)>,
    /// Each node's `/metrics` address.
    pub metrics: Vec<(Service, SocketAddr)>,
    pub deadline: Duration,
    pub seed: u64,
    /// The CI-sized run: fewer streams, payments and concurrent calls.
    pub ci: bool,
}

/// One broken rule a probe found.
#[derive(Debug, Clone)]
pub struct Finding {
    pub what: String,
    pub rpc: String,
    pub code: String,
    pub message: String,
}

/// What one probe did and found.
#[derive(Debug)]
pub struct Probe {
    pub name: &'static str,
    pub requests: u64,
    pub refused: u64,
    pub succeeded: u64,
    pub codes: Vec<Code>,
    pub findings: Vec<Finding>,
    /// What the probe saw besides findings (counts, an exit message), for the report.
    pub notes: Vec<String>,
    pub elapsed: Duration,
    deadline: Duration,
}

impl Probe {
    fn new(name: &'static str, deadline: Duration) -> Probe {
        Probe {
            name,
            requests: 0,
            refused: 0,
            succeeded: 0,
            codes: vec![],
            findings: vec![],
            notes: vec![],
            elapsed: Duration::ZERO,
            deadline,
        }
    }

    /// Records a broken rule.
    pub fn fail(&mut self, what: impl Into<String>, rpc: &str, code: &str, message: &str) {
        self.findings.push(Finding {
            what: what.into(),
            rpc: rpc.to_owned(),
            code: code.to_owned(),
            message: oracle::short(message),
        });
    }

    /// `message` with `key` and the probe's deadline.
    pub fn request<T>(&self, message: T, key: &str) -> Request<T> {
        let mut request = settle_testkit::with_key(message, key);
        request.set_timeout(self.deadline);
        request
    }

    /// One call, counted and bounded by the deadline: a hang, `INTERNAL` / `UNKNOWN` (any code that
    /// is never a proper answer) or an error text that is too long or exposes internals is recorded
    /// as a finding. `None` when it hung.
    pub async fn call<T>(
        &mut self,
        rpc: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Option<Result<T, Status>> {
        self.requests += 1;
        match tokio::time::timeout(self.deadline + Duration::from_secs(1), call).await {
            Err(_) => {
                self.fail("hang (no answer within the deadline)", rpc, "-", "");
                None
            }
            Ok(Ok(response)) => {
                self.succeeded += 1;
                Some(Ok(response.into_inner()))
            }
            Ok(Err(status)) => {
                self.judge_refusal(rpc, &status);
                Some(Err(status))
            }
        }
    }

    /// Counts a refusal and checks its code and text.
    pub fn judge_refusal(&mut self, rpc: &str, status: &Status) {
        if oracle::is_violation_code(status.code()) {
            self.fail(format!("{:?}", status.code()).to_uppercase(), rpc, &code(status), status.message());
        } else {
            self.refused += 1;
            self.codes.push(status.code());
            if let Some(problem) = oracle::bad_error_text(status) {
                self.fail(problem, rpc, &code(status), status.message());
            }
        }
    }

    /// The call must have been refused with one of `codes`; `what` says what was expected.
    pub fn expect_refused<T: std::fmt::Debug>(
        &mut self,
        rpc: &str,
        answer: &Option<Result<T, Status>>,
        codes: &[Code],
        what: &str,
    ) {
        match answer {
            None => {}
            Some(Ok(_)) => self.fail(format!("{what}: it succeeded"), rpc, "OK", ""),
            Some(Err(status)) if codes.contains(&status.code()) => {}
            Some(Err(status)) if oracle::is_violation_code(status.code()) => {} // already a finding
            Some(Err(status)) => {
                self.fail(format!("{what}: refused with another code"), rpc, &code(status), status.message())
            }
        }
    }

    /// The value of a call that must succeed; a refusal is a finding (`what` says what failed).
    pub fn expect_ok<T>(&mut self, rpc: &str, answer: Option<Result<T, Status>>, what: &str) -> Option<T> {
        match answer {
            Some(Ok(value)) => Some(value),
            Some(Err(status)) => {
                if !oracle::is_violation_code(status.code()) {
                    self.fail(format!("{what} was refused"), rpc, &code(&status), status.message());
                }
                None
            }
            None => None,
        }
    }
}

/// A status code as the reports spell it.
pub fn code(status: &Status) -> String {
    format!("{:?}", status.code())
}

/// Runs the probes named in `selected` (all of [`ALL`] when empty), in [`ALL`]'s order.
pub async fn run(env: &ProbeEnv<'_>, selected: &[String]) -> Vec<Probe> {
    let mut probes = Vec::new();
    for &name in ALL {
        if !selected.is_empty() && !selected.iter().any(|s| s == name) {
            continue;
        }
        let mut probe = Probe::new(name, env.deadline);
        let started = std::time::Instant::now();
        match name {
            "modes" => modes::modes(env, &mut probe).await,
            "forged-metadata" => modes::forged_metadata(env, &mut probe).await,
            "nul-text" => inputs::nul_text(env, &mut probe).await,
            "error-text" => inputs::error_text(env, &mut probe).await,
            "poison-event" => inputs::poison_event(env, &mut probe).await,
            "fan-out" => modes::fan_out(env, &mut probe).await,
            "oversized" => inputs::oversized(env, &mut probe).await,
            "metric-labels" => server::metric_labels(env, &mut probe).await,
            "streams" => server::streams(env, &mut probe).await,
            "overload" => server::overload(env, &mut probe).await,
            "fail-closed" => server::fail_closed(env, &mut probe).await,
            _ => {}
        }
        probe.elapsed = started.elapsed();
        // Every probe leaves the services healthy, or that is what it found.
        for service in oracle::SERVICES {
            if !oracle::healthy(env.channels.of(service)).await {
                probe.fail(
                    "a service is not healthy after the probe",
                    &format!("{service:?} process"),
                    "-",
                    "",
                );
            }
        }
        probes.push(probe);
    }
    probes
}

/// Names in `list` (comma separated) that are no probe.
pub fn unknown(list: &[String]) -> Vec<String> {
    list.iter().filter(|name| !ALL.contains(&name.as_str())).cloned().collect()
}
