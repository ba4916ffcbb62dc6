//! An in-process OTLP/gRPC trace receiver for end-to-end trace tests: settle nodes export to it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`), the test reads the spans back and checks one operation's trace.
//!
//! ```text
//! let collector = Collector::start().await;
//! let cluster = Cluster::start_with(binary, backend, |_| collector.env()).await?;
//! let trace = TraceId::new();
//! client.attach_payment(trace.inject(idempotent(request, "k"))).await?;
//! let seen = collector.trace_with(&trace, &[("settle-invoices", "AttachPayment"), ("settle-payments", "ReserveAttachment")]).await;
//! seen.assert_rooted_at_client(&trace);
//! ```
//!
//! The test picks the trace id itself (a client `traceparent`), so it finds its operation's trace
//! among everything else the nodes export.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::sync::oneshot;

/// How long a test waits for spans to arrive (nodes export every `OTEL_BSP_SCHEDULE_DELAY`).
pub const SPAN_TIMEOUT: Duration = Duration::from_secs(20);

/// An attribute value as exported.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    Other,
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::Other => write!(f, "…"),
        }
    }
}

/// One exported span, with the `service.name` of the process that exported it.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub kind: SpanKind,
    pub attributes: BTreeMap<String, Value>,
    /// (trace id, span id) of each linked span.
    pub links: Vec<(String, String)>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// Whether this is the server span of RPC `method` (any service) in process `service`.
    pub fn is_server_rpc(&self, service: &str, method: &str) -> bool {
        self.service == service
            && self.kind == SpanKind::Server
            && self.str_attr("rpc.method") == Some(method)
    }

    /// Asserts the gRPC semantic-convention attributes of a server span that answered `code`.
    pub fn assert_grpc_server(&self, code: i64) {
        assert_eq!(self.kind, SpanKind::Server, "{self:?}");
        assert_eq!(self.str_attr("rpc.system"), Some("grpc"), "{self:?}");
        let service = self.str_attr("rpc.service").unwrap_or_default();
        let method = self.str_attr("rpc.method").unwrap_or_default();
        assert!(service.starts_with("settle.") && !method.is_empty(), "{self:?}");
        assert_eq!(self.name, format!("{service}/{method}"), "span name is {{rpc.service}}/{{rpc.method}}");
        assert_eq!(self.int_attr("rpc.grpc.status_code"), Some(code), "{self:?}");
    }

    fn line(&self) -> String {
        let mut out = format!("{} [{}] {:?} {}", self.name, self.service, self.kind, &self.span_id);
        if let (Some(kind), Some(step)) = (self.str_attr("saga.kind"), self.str_attr("saga.step")) {
            let _ = write!(out, " {kind}.{step}");
        }
        if let Some(code) = self.int_attr("rpc.grpc.status_code") {
            let _ = write!(out, " status={code}");
        }
        for (trace, span) in &self.links {
            let _ = write!(out, " link→{trace}/{span}");
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn value(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::Int(*i),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
        _ => Value::Other,
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, Value> {
    list.iter().map(|kv| (kv.key.clone(), value(kv.value.as_ref()))).collect()
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
            let service = match resource.get("service.name") {
                Some(Value::Str(name)) => name.clone(),
                _ => String::new(),
            };
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(Span {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    attributes: attributes(&span.attributes),
                    links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                    status_code: span.status.map_or(0, |s| s.code),
                });
            }
        }
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// The receiver, serving on a loopback port until dropped.
pub struct Collector {
    addr: SocketAddr,
    receiver: Receiver,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Collector {
    /// Starts receiving on 127.0.0.1 (a free port).
    pub async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("collector cannot bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("collector address: {e}"));
        let receiver = Receiver::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Collector { addr, receiver, stop: Some(stop) }
    }

    /// The environment that makes a node export here, quickly (spans leave every 50 ms).
    pub fn env(&self) -> BTreeMap<String, String> {
        self.env_with_delay(Duration::from_millis(50))
    }

    /// The same with the batch processor's schedule delay set to `delay`.
    pub fn env_with_delay(&self, delay: Duration) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), format!("http://{}", self.addr)),
            ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), delay.as_millis().to_string()),
        ])
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.receiver.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (at most [`SPAN_TIMEOUT`]) until `found` finds something in the spans received.
    pub async fn wait_for<T>(&self, what: &str, mut found: impl FnMut(&[Span]) -> Option<T>) -> T {
        let deadline = Instant::now() + SPAN_TIMEOUT;
        loop {
            let spans = self.spans();
            if let Some(value) = found(&spans) {
                return value;
            }
            if Instant::now() >= deadline {
                panic!("{what}: not received within {SPAN_TIMEOUT:?}; received:\n{}", describe_all(&spans));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The trace `trace_id` once it holds a server span of each `(service.name, rpc.method)`.
    pub async fn trace_with(&self, trace_id: &str, server_spans: &[(&str, &str)]) -> Trace {
        self.wait_for(&format!("trace {trace_id} with {server_spans:?}"), |spans| {
            let trace = Trace::of(trace_id, spans);
            server_spans
                .iter()
                .all(|(service, method)| trace.server_span(service, method).is_some())
                .then_some(trace)
        })
        .await
    }

    /// Waits for and checks the trace of one operation the test started in `client`: its root is
    /// the server span of `root` (`(service.name, rpc.method)`), a child of the client's span; every
    /// RPC in `crossed` has a server span below it; all of them answered OK and carry the gRPC
    /// semantic-convention attributes. Prints the trace and returns it.
    pub async fn assert_one_trace(
        &self,
        client: &ClientTrace,
        root: (&str, &str),
        crossed: &[(&str, &str)],
    ) -> Trace {
        let all: Vec<(&str, &str)> = std::iter::once(root).chain(crossed.iter().copied()).collect();
        let trace = self.trace_with(&client.trace_id, &all).await;
        println!("{}", trace.describe());
        let top = trace.assert_rooted_at_client(client);
        assert!(top.is_server_rpc(root.0, root.1), "the root is {root:?}\n{}", trace.describe());
        top.assert_grpc_server(0);
        for (service, method) in crossed {
            let span = trace.expect_server_span(service, method);
            span.assert_grpc_server(0);
            assert!(
                trace.descends_from(span, top),
                "{method} in {service} is below {root:?}\n{}",
                trace.describe()
            );
        }
        trace
    }

    /// The first span (of any trace) that `matches`, once received.
    pub async fn span(&self, what: &str, matches: impl Fn(&Span) -> bool) -> Span {
        self.wait_for(what, |spans| spans.iter().find(|s| matches(s)).cloned()).await
    }
}

fn describe_all(spans: &[Span]) -> String {
    let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    traces.into_iter().map(|t| Trace::of(t, spans).describe()).collect::<Vec<_>>().join("\n")
}

/// A trace id the test client starts its call in (sent as `traceparent`), to find that call's
/// trace among all the spans received.
#[derive(Debug, Clone)]
pub struct ClientTrace {
    pub trace_id: String,
    /// The (never exported) client span the first server span is a child of.
    pub span_id: String,
}

impl Default for ClientTrace {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientTrace {
    /// A fresh random trace id.
    pub fn new() -> ClientTrace {
        use std::hash::{BuildHasher, Hasher};
        let random = |salt: u64| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(salt);
            hasher.write_u128(std::time::SystemTime::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
            hasher.finish()
        };
        ClientTrace {
            trace_id: format!("{:016x}{:016x}", random(1), random(2)),
            span_id: format!("{:016x}", random(3) | 1),
        }
    }

    /// `request`, sent as part of this trace (sampled).
    pub fn inject<T>(&self, mut request: tonic::Request<T>) -> tonic::Request<T> {
        let traceparent = format!("00-{}-{}-01", self.trace_id, self.span_id);
        if let Ok(value) = traceparent.parse() {
            request.metadata_mut().insert("traceparent", value);
        }
        request
    }
}

/// The spans of one trace.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<Span>,
}

impl Trace {
    pub fn of(trace_id: &str, spans: &[Span]) -> Trace {
        Trace {
            trace_id: trace_id.to_owned(),
            spans: spans.iter().filter(|s| s.trace_id == trace_id).cloned().collect(),
        }
    }

    /// The first server span of RPC `method` in process `service`.
    pub fn server_span(&self, service: &str, method: &str) -> Option<&Span> {
        self.spans.iter().find(|s| s.is_server_rpc(service, method))
    }

    /// Like [`Trace::server_span`], failing with the whole trace when there is none.
    pub fn expect_server_span(&self, service: &str, method: &str) -> &Span {
        self.server_span(service, method)
            .unwrap_or_else(|| panic!("no {method} server span from {service} in\n{}", self.describe()))
    }

    pub fn span(&self, span_id: &str) -> Option<&Span> {
        self.spans.iter().find(|s| s.span_id == span_id)
    }

    /// The process names that exported spans of this trace.
    pub fn services(&self) -> BTreeSet<&str> {
        self.spans.iter().map(|s| s.service.as_str()).collect()
    }

    /// Whether `ancestor` is `span`'s parent, grandparent, … (following exported spans only).
    pub fn descends_from(&self, span: &Span, ancestor: &Span) -> bool {
        let mut current = span;
        for _ in 0..64 {
            if current.parent_span_id == ancestor.span_id {
                return true;
            }
            match self.span(&current.parent_span_id) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
        false
    }

    /// Asserts the trace is one tree: every span's parent is a span of the trace, except the root's,
    /// which is `client`'s span; returns the root.
    pub fn assert_rooted_at_client(&self, client: &ClientTrace) -> &Span {
        let roots: Vec<&Span> =
            self.spans.iter().filter(|s| self.span(&s.parent_span_id).is_none()).collect();
        assert_eq!(roots.len(), 1, "one root in\n{}", self.describe());
        assert_eq!(
            roots[0].parent_span_id,
            client.span_id,
            "the root continues the client's trace\n{}",
            self.describe()
        );
        roots[0]
    }

    /// The trace as an indented tree (for failures and the test output).
    pub fn describe(&self) -> String {
        let mut out = format!("trace {} ({} spans)\n", self.trace_id, self.spans.len());
        let mut children: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
        for span in &self.spans {
            let parent =
                if self.span(&span.parent_span_id).is_some() { span.parent_span_id.as_str() } else { "" };
            children.entry(parent).or_default().push(span);
        }
        fn walk(out: &mut String, children: &BTreeMap<&str, Vec<&Span>>, parent: &str, depth: usize) {
            for span in children.get(parent).into_iter().flatten() {
                let _ = writeln!(out, "{}{}", "  ".repeat(depth + 1), span.line());
                if depth < 32 {
                    walk(out, children, &span.span_id, depth + 1);
                }
            }
        }
        walk(&mut out, &children, "", 0);
        out
    }
}
