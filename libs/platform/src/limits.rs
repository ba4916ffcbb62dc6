//! The server's protective limits: message sizes shared by servers and the peer clients (so the two
//! cannot disagree), and a global concurrency gate that sheds load at once instead of queueing.
//!
//! ```text
//! foundation.add_service(bounded_server!(RefundServiceServer::new(api)));
//! let client = bounded_client!(RefundServiceClient::new(channel));
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use settle_proto::common::v1::ErrorReason;
use tokio::sync::Semaphore;
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::error::ApiError;

/// Largest request message a server decodes (and a client encodes).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest response message a server encodes (and a client decodes).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// What a page of events may add up to, well under [`MAX_RESPONSE_BYTES`].
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// A generated tonic server with settle's message limits: requests up to [`MAX_REQUEST_BYTES`]
/// decoded, responses up to [`MAX_RESPONSE_BYTES`] encoded.
#[macro_export]
macro_rules! bounded_server {
    ($server:expr) => {
        $server
            .max_decoding_message_size($crate::limits::MAX_REQUEST_BYTES)
            .max_encoding_message_size($crate::limits::MAX_RESPONSE_BYTES)
    };
}

/// A generated tonic client with settle's message limits, the mirror of [`bounded_server!`].
#[macro_export]
macro_rules! bounded_client {
    ($client:expr) => {
        $client
            .max_decoding_message_size($crate::limits::MAX_RESPONSE_BYTES)
            .max_encoding_message_size($crate::limits::MAX_REQUEST_BYTES)
    };
}

/// Paths the gate never sheds: probes must keep answering while the service is saturated, or an
/// overloaded pod would be restarted (and its load moved to the next one).
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// At most `limit` calls in flight across all connections; one more is answered RESOURCE_EXHAUSTED
/// (`rate_limit`) at once. A semaphore's `try_acquire` rather than tower's `ConcurrencyLimit` +
/// `LoadShed`: those refuse in `poll_ready`, before the path is known (so probes would be shed too),
/// and their `Overloaded` error is not a gRPC status.
#[derive(Clone, Debug)]
pub struct ConcurrencyGateLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyGateLayer {
    pub fn new(limit: usize) -> Self {
        ConcurrencyGateLayer { permits: Arc::new(Semaphore::new(limit.max(1))) }
    }
}

impl<S> Layer<S> for ConcurrencyGateLayer {
    type Service = ConcurrencyGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyGate { inner, permits: self.permits.clone() }
    }
}

/// The service [`ConcurrencyGateLayer`] wraps.
#[derive(Clone, Debug)]
pub struct ConcurrencyGate<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

/// The answer of a shed call.
pub fn overloaded() -> Status {
    ApiError::new(
        Code::ResourceExhausted,
        ErrorReason::RateLimit,
        "The service is handling too many requests; retry with backoff.",
    )
    .into()
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ConcurrencyGate<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if exempt(request.uri().path()) {
            return self.inner.call(request).boxed();
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let call = self.inner.call(request);
                // Held until the handler answers (for a stream: until it starts streaming).
                async move {
                    let response = call.await;
                    drop(permit);
                    response
                }
                .boxed()
            }
            Err(_) => {
                crate::metrics::shed_requests().add(1, &[]);
                let response = overloaded().into_http();
                futures::future::ready(Ok(response)).boxed()
            }
        }
    }
}
