//! The API fuzzer: the three services as real processes on one backend, every RPC of every service
//! driven over real gRPC with generated hostile requests, and after every call the checks — no
//! `INTERNAL` / `UNKNOWN`, no hang past the deadline, a refused call changed nothing (events,
//! lists, balances), no object of another account or of the other mode in an answer, the
//! processes still healthy. Seeded: request `i` of seed `s` is generated from `(s, i)` and what
//! the run learned before it, so the same seed replays the same sequence of requests.

pub mod generate;
pub mod harvest;
pub mod oracle;
pub mod probes;
pub mod schema;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};
use settle_platform::db::Backend;

use self::generate::{Caller, Case, Flavor, Generator};
use self::harvest::{Harvest, PastCall, Scope};
use self::oracle::{Channels, SERVICES};
use self::schema::Method;
use self::wire::Answer;
use crate::cluster::{Cluster, Topology};
use crate::process::{Service, free_addr};

/// What a run does.
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    pub seed: u64,
    pub backend: Backend,
    pub requests: u64,
    /// Every call's deadline; no answer by then is a hang.
    pub deadline: Duration,
    /// Health of every process is checked this often (in requests), and at the end.
    pub health_every: u64,
    /// Every this many mutating calls, lists and balances are compared too (not only events).
    pub digest_every: u64,
    /// The probes to run after the generated requests: `None` none, an empty list all.
    pub probes: Option<Vec<String>>,
    /// A CI-sized run (lighter probes).
    pub ci: bool,
}

impl FuzzConfig {
    pub fn new(seed: u64, backend: Backend) -> FuzzConfig {
        FuzzConfig {
            seed,
            backend,
            requests: 10_000,
            deadline: Duration::from_secs(10),
            health_every: 100,
            digest_every: 10,
            probes: Some(Vec::new()),
            ci: false,
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone)]
pub struct Violation {
    pub index: u64,
    pub rpc: String,
    pub flavor: Flavor,
    /// What rule: `INTERNAL`, `hang`, `refused call wrote events` …
    pub class: String,
    pub code: String,
    pub message: String,
    /// The probe that found it (`None`: a generated request or a health check).
    pub probe: Option<&'static str>,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Summary {
    pub requests: u64,
    pub refused: u64,
    pub succeeded: u64,
    pub violations: Vec<Violation>,
    /// Per method: (succeeded, refused, violations).
    pub per_method: BTreeMap<String, (u64, u64, u64)>,
    /// Per flavor: (requests, refused, violations).
    pub per_flavor: BTreeMap<&'static str, (u64, u64, u64)>,
    /// Refusal codes seen.
    pub codes: BTreeMap<String, u64>,
    /// Methods in the descriptor set that no running service serves.
    pub unserved: Vec<String>,
    /// The methods covered, with the services that serve them.
    pub covered: Vec<(String, Vec<Service>)>,
    /// Events that appeared around a refused call but were not its own (the event consumer's).
    pub background_events: u64,
    /// Digest changes around a refused call while other events also appeared (not decidable).
    pub inconclusive: u64,
    pub digests_compared: u64,
    pub health_checks: u64,
    /// The probes that ran, with what each did (their findings are in `violations`).
    pub probes: Vec<probes::Probe>,
    pub elapsed: Duration,
}

struct Runner<'a> {
    config: &'a FuzzConfig,
    methods: &'a [Method],
    channels: Channels,
    harvest: Harvest,
    summary: Summary,
    mutating_seen: u64,
}

/// Runs the fuzzer with `binary` (settle-node). Errors are the harness's own (a service that never
/// starts), not violations.
pub async fn run(config: &FuzzConfig, binary: PathBuf) -> Result<Summary, String> {
    let started = Instant::now();
    // Each node serves /metrics on a port of its own, for the metric-label probe.
    let metrics: Vec<(Service, SocketAddr)> = SERVICES.iter().map(|s| (*s, free_addr())).collect();
    let metrics_env = metrics.clone();
    let topology = Topology {
        env: Some(Box::new(move |service| {
            metrics_env
                .iter()
                .filter(|(s, _)| *s == service)
                .map(|(_, addr)| ("SETTLE_METRICS_ADDR".to_owned(), addr.to_string()))
                .collect()
        })),
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(binary.clone(), config.backend, &topology)
        .await
        .ok_or_else(|| "the backend is not available (DATABASE_URL unset?)".to_owned())?;
    let pool = DescriptorPool::decode(settle_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("descriptor set: {e}"))?;
    let mut served = Vec::new();
    for service in SERVICES {
        let names = schema::served_services(cluster.channel(service))
            .await
            .map_err(|e| format!("reflection on {service:?}: {e}"))?;
        served.push((service, names));
    }
    let methods = schema::catalog(&pool, &served);
    let channels = Channels {
        invoices: cluster.channel(Service::Invoices),
        payments: cluster.channel(Service::Payments),
        credit_notes: cluster.channel(Service::CreditNotes),
    };
    let mut runner = Runner {
        config,
        methods: &methods,
        channels,
        harvest: Harvest::default(),
        summary: Summary::default(),
        mutating_seen: 0,
    };
    for method in &methods {
        if method.nodes.is_empty() {
            runner.summary.unserved.push(method.path.clone());
        } else {
            runner.summary.covered.push((method.short(), method.nodes.clone()));
        }
    }
    let generator = Generator::new(&methods, config.seed);
    let mut index = 0;
    while runner.summary.requests < config.requests {
        let case = generator.case(index, &runner.harvest);
        runner.execute(&case).await;
        index += 1;
        if index.is_multiple_of(config.health_every) {
            runner.health(&mut cluster, index).await;
        }
    }
    if let Some(selected) = &config.probes {
        let env = probes::ProbeEnv {
            channels: &runner.channels,
            methods: &methods,
            backend: config.backend,
            binary,
            addrs: SERVICES.iter().map(|s| (*s, cluster.addr(*s))).collect(),
            metrics,
            deadline: config.deadline,
            seed: config.seed,
            ci: config.ci,
        };
        let done = probes::run(&env, selected).await;
        for probe in done {
            runner.absorb_probe(probe, index);
        }
    }
    runner.health(&mut cluster, index).await;
    for service in SERVICES {
        cluster.node(service).stop().await;
    }
    let mut summary = runner.summary;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

impl Runner<'_> {
    fn violation(&mut self, case: &Case, class: impl Into<String>, code: &str, message: &str) {
        let method = &self.methods[case.method];
        let rpc = method.short();
        self.summary.per_method.entry(rpc.clone()).or_default().2 += 1;
        self.summary.per_flavor.entry(case.flavor.name()).or_default().2 += 1;
        self.summary.violations.push(Violation {
            index: case.index,
            rpc,
            flavor: case.flavor,
            class: class.into(),
            code: code.to_owned(),
            message: oracle::short(message),
            probe: None,
        });
    }

    /// Counts a probe's calls in the run's figures and its findings as violations.
    fn absorb_probe(&mut self, mut probe: probes::Probe, index: u64) {
        let name = probe.name;
        self.summary.requests += probe.requests;
        self.summary.refused += probe.refused;
        self.summary.succeeded += probe.succeeded;
        for code in &probe.codes {
            *self.summary.codes.entry(format!("{code:?}")).or_default() += 1;
        }
        for finding in std::mem::take(&mut probe.findings) {
            self.summary.violations.push(Violation {
                index,
                rpc: finding.rpc,
                flavor: Flavor::Valid,
                class: format!("probe {name}: {}", finding.what),
                code: finding.code,
                message: finding.message,
                probe: Some(name),
            });
        }
        self.summary.probes.push(probe);
    }

    fn metadata(&self, case: &Case) -> tonic::metadata::MetadataMap {
        let mut entries = Vec::new();
        match &case.caller {
            Caller::Key(scope) => {
                entries.push(("authorization".to_owned(), format!("Bearer {}", scope.key())))
            }
            Caller::Unauthenticated(Some(value)) => entries.push(("authorization".to_owned(), value.clone())),
            Caller::Unauthenticated(None) => {}
        }
        if let Some(key) = &case.idempotency_key {
            entries.push(("idempotency-key".to_owned(), key.clone()));
        }
        entries.push(("traceparent".to_owned(), traceparent(self.config.seed, case.index)));
        entries.extend(case.metadata.iter().cloned());
        wire::metadata(&entries).0
    }

    async fn execute(&mut self, case: &Case) {
        let method = self.methods[case.method].clone();
        let node = method.nodes[case.node.min(method.nodes.len() - 1)];
        if method.server_streaming {
            return self.execute_streams(case, &method, node).await;
        }
        self.summary.requests += 1;
        self.summary.per_flavor.entry(case.flavor.name()).or_default().0 += 1;
        let mutating = method.mutating;
        let mut digest_before = None;
        let mut before = None;
        if mutating {
            self.mutating_seen += 1;
            if self.mutating_seen.is_multiple_of(self.config.digest_every) {
                // Compare lists only on a settled system: what earlier calls started has finished.
                let _ = oracle::quiesce(&self.channels, Duration::from_secs(2)).await;
                digest_before = oracle::digest(&self.channels).await.ok();
            }
            before = oracle::snapshot(&self.channels).await.ok();
        }
        let channel = self.channels.of(node).clone();
        let answer =
            wire::unary(&channel, &method.path, case.body.clone(), self.metadata(case), self.config.deadline)
                .await;
        match answer {
            Answer::Hung => {
                self.violation(case, "hang (no answer within the deadline)", "-", "");
            }
            Answer::Ok(body) => {
                self.summary.succeeded += 1;
                self.summary.per_method.entry(method.short()).or_default().0 += 1;
                self.check_success(case, &method, &body);
            }
            Answer::Err(status) => {
                if oracle::is_violation_code(status.code()) {
                    self.violation(
                        case,
                        format!("{:?}", status.code()).to_uppercase(),
                        &format!("{:?}", status.code()),
                        status.message(),
                    );
                } else {
                    self.summary.refused += 1;
                    self.summary.per_method.entry(method.short()).or_default().1 += 1;
                    self.summary.per_flavor.entry(case.flavor.name()).or_default().1 += 1;
                    *self.summary.codes.entry(format!("{:?}", status.code())).or_default() += 1;
                    if let Some(problem) = oracle::bad_error_text(&status) {
                        self.violation(case, problem, &format!("{:?}", status.code()), status.message());
                    }
                }
                if mutating {
                    self.check_refusal_changed_nothing(case, before.as_ref(), digest_before).await;
                }
            }
        }
    }

    /// The rules for an answer that succeeded.
    fn check_success(&mut self, case: &Case, method: &Method, body: &[u8]) {
        let Ok(message) = DynamicMessage::decode(method.output.clone(), body) else {
            return self.violation(case, "answer does not decode as its type", "OK", "");
        };
        let scope = match &case.caller {
            Caller::Key(scope) => *scope,
            Caller::Unauthenticated(value) => {
                let shown = value
                    .as_deref()
                    .map_or("(none)".to_owned(), |v| oracle::short(v).chars().take(40).collect());
                return self.violation(
                    case,
                    "accepted without a valid API key",
                    "OK",
                    &format!("authorization {shown}"),
                );
            }
        };
        if method.internal {
            self.violation(case, "internal service served to an API key", "OK", scope.key());
        }
        if method.test_only && scope.livemode() {
            self.violation(case, "test helper served to a live key", "OK", "");
        }
        self.check_isolation(case, scope, &message);
        if let Some(first) = &case.replay_of {
            let same = DynamicMessage::decode(method.output.clone(), first.as_slice())
                .is_ok_and(|first| first == message);
            if !same {
                self.violation(case, "idempotent replay answered differently", "OK", "");
            }
        }
        if case.conflicts_with_success {
            self.violation(case, "idempotency key reused with another request was accepted", "OK", "");
        }
        self.harvest.absorb(scope, &message);
        if method.mutating
            && let Some(key) = &case.idempotency_key
            && case.replay_of.is_none()
            && !case.conflicts_with_success
            && case.flavor != Flavor::BadIdempotencyKey
        {
            self.harvest.remember(PastCall {
                scope,
                method: case.method,
                body: case.body.clone(),
                idempotency_key: key.clone(),
                answer: Some(body.to_vec()),
            });
        }
    }

    /// No object of another owner, and none of the other mode, in an answer to `scope`.
    fn check_isolation(&mut self, case: &Case, scope: Scope, message: &DynamicMessage) {
        for (type_name, id, livemode) in harvest::objects(message) {
            if let Some(owner) = self.harvest.owner.get(&id).copied()
                && owner != scope
            {
                let short_type = type_name.rsplit('.').next().unwrap_or(&type_name).to_owned();
                self.violation(
                    case,
                    format!("{} object in an answer to {}", owner.name(), scope.name()),
                    "OK",
                    &format!("{short_type} {id}"),
                );
                return;
            }
            if let Some(livemode) = livemode
                && livemode != scope.livemode()
            {
                self.violation(
                    case,
                    format!("livemode={livemode} object in an answer to {}", scope.name()),
                    "OK",
                    &id,
                );
                return;
            }
        }
        // Events name their account: another account's event must never reach this one.
        if message.descriptor().full_name() == "settle.events.v1.Event"
            && let Some(account) =
                message.get_field_by_name("account").and_then(|v| v.as_str().map(str::to_owned))
            && !account.is_empty()
            && account != scope.account()
        {
            self.violation(case, format!("event of {account} in an answer to {}", scope.name()), "OK", "");
        }
    }

    /// A refused mutating call wrote no event of its own anywhere and, when a digest was taken,
    /// changed no list or balance.
    async fn check_refusal_changed_nothing(
        &mut self,
        case: &Case,
        before: Option<&oracle::Snapshot>,
        digest_before: Option<String>,
    ) {
        let Some(before) = before else { return };
        let mut after = oracle::snapshot(&self.channels).await;
        if after.is_err() {
            // A connection the refused call's answer broke is re-established once.
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = oracle::snapshot(&self.channels).await;
        }
        let Ok(after) = after else {
            return self.violation(case, "event listing failed after a refused call", "-", "");
        };
        let moved = oracle::moved(before, &after);
        let trace_request = format!("req_{}", trace_id(self.config.seed, case.index));
        let mut own = 0;
        for (scope, service) in &moved {
            let position = Scope::ALL.iter().position(|s| s == scope).unwrap_or(0) * SERVICES.len()
                + SERVICES.iter().position(|s| s == service).unwrap_or(0);
            let since = before.get(position).cloned().flatten();
            let Ok(events) = oracle::events_since(&self.channels, *scope, *service, since.as_deref()).await
            else {
                continue;
            };
            for event in events {
                let request = event.request.unwrap_or_default();
                let by_trace = request.id.as_deref() == Some(trace_request.as_str());
                let by_key = case.idempotency_key.is_some()
                    && request.idempotency_key == case.idempotency_key
                    && !matches!(case.flavor, Flavor::IdempotencyReplay | Flavor::IdempotencyConflict);
                if by_trace || by_key {
                    own += 1;
                    let message =
                        format!("{} {} on {:?} ({})", event.r#type, event.object_id, service, scope.name());
                    self.violation(case, "refused call wrote an event", "-", &message);
                } else {
                    self.summary.background_events += 1;
                }
            }
        }
        if let Some(digest_before) = digest_before {
            self.summary.digests_compared += 1;
            match oracle::digest(&self.channels).await {
                Ok(digest_after) if digest_after != digest_before => {
                    if moved.is_empty() {
                        self.violation(
                            case,
                            "refused call changed lists or balances without an event",
                            "-",
                            "",
                        );
                    } else if own == 0 {
                        self.summary.inconclusive += 1;
                    }
                }
                Ok(_) => {}
                Err(status) => self.violation(
                    case,
                    "digest reads failed after a refused call",
                    &format!("{:?}", status.code()),
                    status.message(),
                ),
            }
        }
    }

    /// Opens `case.streams` (at least one) streams at once, reads each briefly, drops them.
    async fn execute_streams(&mut self, case: &Case, method: &Method, node: Service) {
        let count = case.streams.max(1);
        let channel = self.channels.of(node).clone();
        let read_for = Duration::from_millis(if count > 1 { 300 } else { 150 });
        let opens = (0..count).map(|_| {
            wire::stream(
                &channel,
                &method.path,
                case.body.clone(),
                self.metadata(case),
                self.config.deadline,
                read_for,
                5,
            )
        });
        let answers = futures::future::join_all(opens).await;
        for answer in answers {
            self.summary.requests += 1;
            self.summary.per_flavor.entry(case.flavor.name()).or_default().0 += 1;
            let ended = match answer.opened {
                Answer::Hung => {
                    self.violation(case, "hang (stream did not open within the deadline)", "-", "");
                    continue;
                }
                Answer::Err(status) => Some(status),
                Answer::Ok(_) => answer.ended,
            };
            match ended {
                Some(status) if oracle::is_violation_code(status.code()) => {
                    self.violation(
                        case,
                        format!("{:?}", status.code()).to_uppercase(),
                        &format!("{:?}", status.code()),
                        status.message(),
                    );
                }
                Some(status) => {
                    self.summary.refused += 1;
                    self.summary.per_method.entry(method.short()).or_default().1 += 1;
                    self.summary.per_flavor.entry(case.flavor.name()).or_default().1 += 1;
                    *self.summary.codes.entry(format!("{:?}", status.code())).or_default() += 1;
                    if let Some(problem) = oracle::bad_error_text(&status) {
                        self.violation(case, problem, &format!("{:?}", status.code()), status.message());
                    }
                }
                None => {
                    self.summary.succeeded += 1;
                    self.summary.per_method.entry(method.short()).or_default().0 += 1;
                    if let Caller::Unauthenticated(_) = case.caller {
                        self.violation(case, "stream opened without a valid API key", "OK", "");
                    }
                    for body in &answer.messages {
                        let Ok(message) = DynamicMessage::decode(method.output.clone(), body.as_slice())
                        else {
                            self.violation(case, "stream message does not decode as its type", "OK", "");
                            continue;
                        };
                        if let Caller::Key(scope) = case.caller {
                            self.check_isolation(case, scope, &message);
                            for (_, value) in message.fields() {
                                if let Some(event) = value.as_message() {
                                    self.check_isolation(case, scope, event);
                                }
                            }
                            self.harvest.absorb(scope, &message);
                        }
                    }
                }
            }
        }
    }

    /// Every process still runs and answers health; one that died is reported and restarted, so
    /// the run goes on.
    async fn health(&mut self, cluster: &mut Cluster, index: u64) {
        self.summary.health_checks += 1;
        for service in SERVICES {
            let running = cluster.node(service).running();
            let serving = running && oracle::healthy(self.channels.of(service)).await;
            if !serving {
                let rpc = format!("{service:?} process");
                self.summary.violations.push(Violation {
                    index: index.saturating_sub(1),
                    rpc,
                    flavor: Flavor::Plausible,
                    class: if running { "not healthy".into() } else { "process exited".into() },
                    code: "-".into(),
                    message: format!("checked after request {index}"),
                    probe: None,
                });
                cluster.restart(service, None).await;
            }
        }
    }
}

/// The W3C trace id of request `index`: the services record `req_<trace id>` as the request id of
/// every event a call writes, so an event is traced back to the call that wrote it.
pub fn trace_id(seed: u64, index: u64) -> String {
    format!("{:016x}{:016x}", seed | 1, index + 1)
}

fn traceparent(seed: u64, index: u64) -> String {
    format!("00-{}-{:016x}-01", trace_id(seed, index), index + 1)
}

/// Violations grouped by (class, rpc, code): count and the first request index.
pub fn grouped(violations: &[Violation]) -> Vec<((String, String, String), usize, &Violation)> {
    let mut groups: BTreeMap<(String, String, String), (usize, &Violation)> = BTreeMap::new();
    for v in violations {
        let entry = groups.entry((v.class.clone(), v.rpc.clone(), v.code.clone())).or_insert((0, v));
        entry.0 += 1;
    }
    groups.into_iter().map(|(k, (n, v))| (k, n, v)).collect()
}

/// Violation counts by class.
pub fn by_class(violations: &[Violation]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in violations {
        *out.entry(v.class.clone()).or_default() += 1;
    }
    out
}

/// Rpcs with at least one violation, for the report.
pub fn violating_rpcs(violations: &[Violation]) -> BTreeSet<String> {
    violations.iter().map(|v| v.rpc.clone()).collect()
}
