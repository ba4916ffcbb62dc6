//! One span per RPC, following OpenTelemetry's gRPC conventions (`rpc.system`, `rpc.service`,
//! `rpc.method`, `rpc.grpc.status_code`), continuing the caller's W3C trace context, and giving the
//! request its id. The span stays open until the response body (and its trailers) is finished, so
//! it records the final gRPC status even for streams; the same moment records the RPC's duration in
//! the `rpc.server.duration` metric (health and reflection calls are left out of it). Only methods the
//! server serves are named in spans and metric labels; any other path (a caller sending random
//! paths, authenticated or not) is labelled `unknown`, so labels stay a bounded set.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;

use crate::context::RequestId;
use crate::ids::IdPrefix;
use crate::telemetry::{adopt_remote_parent, current_trace_id};

/// The label of every path the server does not serve.
pub const UNKNOWN: &str = "unknown";

/// The method paths (`/settle.payments.v1.RefundService/GetRefund`) a server serves, read from the
/// descriptor sets of its services.
#[derive(Debug, Clone, Default)]
pub struct KnownMethods {
    paths: HashSet<String>,
}

impl KnownMethods {
    /// Every method of the services named (`settle.payments.v1.RefundService`, `grpc.health.v1.Health`).
    pub fn for_services(services: &[&str]) -> Self {
        use prost::Message;
        let mut paths = HashSet::new();
        for encoded in [
            settle_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else { continue };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let name = format!("{package}.{}", service.name.unwrap_or_default());
                    if !services.contains(&name.as_str()) {
                        continue;
                    }
                    for method in service.method {
                        paths.insert(format!("/{name}/{}", method.name.unwrap_or_default()));
                    }
                }
            }
        }
        KnownMethods { paths }
    }

    /// `(service, method)` of `path` if it is served, else `("unknown", "unknown")`.
    pub fn labels<'p>(&self, path: &'p str) -> (&'p str, &'p str) {
        if self.paths.contains(path) {
            let trimmed = path.trim_start_matches('/');
            trimmed.split_once('/').unwrap_or((trimmed, ""))
        } else {
            (UNKNOWN, UNKNOWN)
        }
    }
}

/// Adds the per-RPC span; outermost layer of every settle server.
#[derive(Clone, Debug, Default)]
pub struct GrpcTraceLayer {
    known: Arc<KnownMethods>,
}

impl GrpcTraceLayer {
    /// A layer that names the methods in `known` and labels every other path `unknown`.
    pub fn new(known: KnownMethods) -> Self {
        GrpcTraceLayer { known: Arc::new(known) }
    }
}

impl<S> Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace { inner, known: self.known.clone() }
    }
}

/// The service [`GrpcTraceLayer`] wraps.
#[derive(Clone, Debug)]
pub struct GrpcTrace<S> {
    inner: S,
    known: Arc<KnownMethods>,
}

fn rpc_span(service: &str, method: &str) -> Span {
    let name = format!("{service}/{method}");
    let trimmed = name.as_str();
    // Probes and tooling would drown the real traffic; they get debug-level spans.
    if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
        tracing::debug_span!(
            "grpc",
            otel.name = trimmed,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
        )
    } else {
        tracing::info_span!(
            "grpc",
            otel.name = trimmed,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
        )
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let known = self.known.clone();
        let path = request.uri().path().to_owned();
        let (service, method) = known.labels(&path);
        let span = rpc_span(service, method);
        adopt_remote_parent(&span, request.headers());
        let request_id: Arc<str> = span
            .in_scope(current_trace_id)
            .map(|trace| format!("req_{trace}"))
            .unwrap_or_else(|| IdPrefix::Request.generate())
            .into();
        span.record("request_id", &*request_id);
        request.extensions_mut().insert(RequestId(request_id));
        let timing = RpcTiming::for_labels(service, method);
        let inner = span.in_scope(|| self.inner.call(request));
        TracedFuture { inner, span: Some(span), timing }
    }
}

pin_project! {
    /// Polls the inner response future inside the RPC span.
    pub struct TracedFuture<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
        timing: Option<RpcTiming>,
    }
}

impl<F, ResBody, E> Future for TracedFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<TracedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let span = this.span.take().unwrap_or_else(Span::none);
        let polled = span.in_scope(|| this.inner.poll(cx));
        match polled {
            Poll::Pending => {
                *this.span = Some(span);
                Poll::Pending
            }
            Poll::Ready(Ok(response)) => {
                let mut timing = this.timing.take();
                // A trailers-only response (every error a handler returns) has the status here.
                if let Some(code) = grpc_status(response.headers()) {
                    record_status(&span, code);
                    if let Some(timing) = timing.as_mut() {
                        timing.code = Some(code);
                    }
                }
                Poll::Ready(Ok(response.map(|inner| TracedBody { inner, span, timing })))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    }
}

pin_project! {
    /// The response body, carrying the RPC span until the last frame.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        span: Span,
        timing: Option<RpcTiming>,
    }

    impl<B> PinnedDrop for TracedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(timing) = this.project().timing.take() {
                timing.record();
            }
        }
    }
}

/// When an RPC started and how it ended, for `rpc.server.duration`.
pub struct RpcTiming {
    start: std::time::Instant,
    service: String,
    method: String,
    code: Option<i32>,
}

impl RpcTiming {
    fn for_labels(service: &str, method: &str) -> Option<RpcTiming> {
        if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
            return None;
        }
        Some(RpcTiming {
            start: std::time::Instant::now(),
            service: service.to_owned(),
            method: method.to_owned(),
            code: None,
        })
    }

    fn record(self) {
        use opentelemetry::KeyValue;
        let millis = self.start.elapsed().as_secs_f64() * 1000.0;
        // No status means the body ended without trailers: the client went away (CANCELLED).
        let code = self.code.unwrap_or(1);
        crate::metrics::rpc_duration().record(
            millis,
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.service),
                KeyValue::new("rpc.method", self.method),
                KeyValue::new("rpc.grpc.status_code", i64::from(code)),
            ],
        );
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(code) = frame.trailers_ref().and_then(grpc_status)
        {
            record_status(this.span, code);
            if let Some(timing) = this.timing.as_mut() {
                timing.code = Some(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

fn record_status(span: &Span, code: i32) {
    span.record("rpc.grpc.status_code", code);
    // Server spans are errors for codes that mean the server failed, per the OTel conventions.
    let server_fault = matches!(code, 2 | 4 | 12 | 13 | 14 | 15);
    if server_fault {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_named() {
        let known = KnownMethods::for_services(&["settle.events.v1.EventService", "grpc.health.v1.Health"]);
        assert_eq!(
            known.labels("/settle.events.v1.EventService/StreamEvents"),
            ("settle.events.v1.EventService", "StreamEvents")
        );
        assert_eq!(known.labels("/grpc.health.v1.Health/Check"), ("grpc.health.v1.Health", "Check"));
        for other in [
            "/settle.events.v1.EventService/NoSuchMethod",
            "/settle.payments.v1.RefundService/GetRefund", // real, but not served here
            "/x/y",
            "/",
            "",
            "/settle.events.v1.EventService/StreamEvents/extra",
        ] {
            assert_eq!(known.labels(other), (UNKNOWN, UNKNOWN), "{other}");
        }
    }
}
