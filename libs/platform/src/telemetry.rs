//! Logging and tracing: a `tracing` subscriber that writes to a sink the caller chooses (stdout in
//! binaries, nothing in tests unless `TEST_LOG` is set), plus OpenTelemetry trace export over OTLP/gRPC
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace-context propagation everywhere.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What becomes a span in the exported traces: every RPC and the sagas' steps (debug-level spans
/// of `settle_saga`, so a trace shows which step made which call), not health checks, not the
/// libraries' internals.
const TRACE_FILTER: &str = "info,settle_saga=debug,sqlx=warn,h2=warn,tower=warn,hyper=warn";

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSink {
    Stdout,
    /// Nothing is written (tests, unless `TEST_LOG` is set).
    Discard,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Keeps the trace exporter alive; flushes it (bounded) when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("could not flush traces: {error}");
        }
    }
}

/// Errors setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("could not build the OTLP span exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber and propagator. `service_name` becomes the OTel `service.name`
/// unless `OTEL_SERVICE_NAME` overrides it. Call once per process, inside a Tokio runtime.
pub fn init(service_name: &str, sink: LogSink, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Each layer has its own filter: `RUST_LOG=warn` quiets the logs without emptying the traces.
    let log_filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn,hyper=warn"))
    };

    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => Some(tracer_provider(service_name)?),
        _ => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("settle"))
            .with_filter(EnvFilter::new(TRACE_FILTER))
    });
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }

    let registry = tracing_subscriber::registry().with(otel_layer);
    let result = match (sink, format) {
        (LogSink::Discard, _) => registry.try_init(),
        (LogSink::Stdout, LogFormat::Text) => registry
            .with(tracing_subscriber::fmt::layer().with_target(false).with_filter(log_filter()))
            .try_init(),
        (LogSink::Stdout, LogFormat::Json) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_filter(log_filter()),
            )
            .try_init(),
    };
    result.map_err(TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// For tests: logs to stdout when `TEST_LOG` is set, otherwise discards; safe to call many times.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let sink = if std::env::var_os("TEST_LOG").is_some() { LogSink::Stdout } else { LogSink::Discard };
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let registry = tracing_subscriber::registry().with(filter);
        let _ = match sink {
            LogSink::Stdout => registry.with(tracing_subscriber::fmt::layer().with_test_writer()).try_init(),
            LogSink::Discard => registry.try_init(),
        };
    });
}

fn tracer_provider(service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    // The endpoint, headers and timeout come from the standard OTEL_EXPORTER_OTLP_* variables.
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().build().map_err(TelemetryError::Exporter)?;
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new("service.namespace", "settle"))
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// The W3C `traceparent` of the current span, if tracing is exporting.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = TraceParentCarrier(None);
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.0
}

struct TraceParentCarrier(Option<String>);

impl Injector for TraceParentCarrier {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

impl Extractor for TraceParentCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        if key == "traceparent" { self.0.as_deref() } else { None }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Reads propagation fields from HTTP/2 headers (gRPC metadata).
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes propagation fields into HTTP/2 headers (gRPC metadata).
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// Makes the current span a child of the trace context in `headers` (if any).
pub fn adopt_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The remote span a stored W3C `traceparent` (an event's, a saga's) names, if it is well formed.
pub fn parse_traceparent(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    let carrier = TraceParentCarrier(Some(traceparent.to_owned()));
    let context = TraceContextPropagator::new().extract(&carrier);
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Continues the trace that wrote `traceparent` in `span`: for work done on behalf of exactly one
/// earlier operation, such as applying the one event it wrote.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(remote) = traceparent.and_then(parse_traceparent) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// Links `span`, in a trace of its own, to the operation `traceparent` names: for work that resumes
/// an earlier operation much later (a saga recovered after a crash).
pub fn link_to_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(remote) = traceparent.and_then(parse_traceparent) {
        span.add_link(remote);
    }
}

/// Copies the current span's trace context into outgoing `headers`.
pub fn inject_current_context(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(headers));
        });
    }
}

/// The trace id of the current span, if tracing is exporting.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A subscriber that builds OpenTelemetry contexts (no exporter), for the current thread only.
    fn with_otel<R>(f: impl FnOnce() -> R) -> R {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn a_server_span_continues_the_callers_trace() {
        with_otel(|| {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", TRACEPARENT.parse().unwrap());
            let span = tracing::info_span!("rpc");
            adopt_remote_parent(&span, &headers);
            let trace_id = span.in_scope(current_trace_id);
            assert_eq!(trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        });
    }

    #[test]
    fn outgoing_calls_carry_the_current_trace() {
        with_otel(|| {
            let mut incoming = http::HeaderMap::new();
            incoming.insert("traceparent", TRACEPARENT.parse().unwrap());
            let span = tracing::info_span!("rpc");
            adopt_remote_parent(&span, &incoming);
            let mut outgoing = http::HeaderMap::new();
            span.in_scope(|| inject_current_context(&mut outgoing));
            let sent = outgoing.get("traceparent").unwrap().to_str().unwrap().to_owned();
            assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{sent}");
            assert_ne!(sent, TRACEPARENT, "the child span is the new parent");
            assert_eq!(span.in_scope(current_traceparent).as_deref(), Some(sent.as_str()));
        });
    }

    /// Runs `f` with spans exported to memory; returns what `f` returned and the finished spans.
    fn exported<R>(f: impl FnOnce() -> R) -> (R, Vec<opentelemetry_sdk::trace::SpanData>) {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let result = tracing::subscriber::with_default(subscriber, f);
        let _ = provider.force_flush();
        (result, exporter.get_finished_spans().unwrap())
    }

    #[test]
    fn stored_traceparents_parse_only_when_well_formed() {
        let remote = parse_traceparent(TRACEPARENT).unwrap();
        assert_eq!(remote.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(remote.span_id().to_string(), "00f067aa0ba902b7");
        assert!(remote.is_remote());
        for bad in ["", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn work_for_one_stored_operation_continues_its_trace() {
        let (trace_id, spans) = exported(|| {
            let span = tracing::info_span!("process");
            continue_trace(&span, Some(TRACEPARENT));
            span.in_scope(current_trace_id)
        });
        assert_eq!(trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(spans[0].parent_span_is_remote);
    }

    #[test]
    fn resumed_work_starts_a_trace_linked_to_the_stored_one() {
        let (trace_id, spans) = exported(|| {
            let span = tracing::info_span!("resume");
            link_to_trace(&span, Some(TRACEPARENT));
            link_to_trace(&span, Some("not a traceparent"));
            span.in_scope(current_trace_id)
        });
        assert_ne!(trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let links: Vec<_> = spans[0].links.iter().map(|l| l.span_context.clone()).collect();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[0].trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(links[0].span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn without_a_trace_nothing_is_propagated() {
        let mut outgoing = http::HeaderMap::new();
        inject_current_context(&mut outgoing);
        assert!(outgoing.is_empty());
        assert_eq!(current_traceparent(), None);
    }
}
