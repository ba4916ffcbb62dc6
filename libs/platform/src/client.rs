//! Calling another settle service: a lazily connected channel with connect and per-call deadlines,
//! requests that carry the internal key, the account and the trace context, and retries with
//! jittered exponential backoff for the failures that are safe to retry. Clients built on a peer's
//! channel are wrapped in [`crate::bounded_client!`], so they accept the responses (up to
//! [`crate::limits::MAX_RESPONSE_BYTES`]) the servers are allowed to send. The internal key is
//! accepted only on the peers' internal services and [`crate::auth::INTERNAL_PUBLIC_METHODS`]: a new
//! call on a peer's public method goes on that list.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::auth::{ACCOUNT_HEADER, LIVEMODE_HEADER};
use crate::scope::Scope;

/// Deadlines for calls to a peer.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings { connect_timeout: Duration::from_secs(2), request_timeout: Duration::from_secs(10) }
    }
}

/// A channel to another settle service plus the internal key to call it with.
#[derive(Clone, Debug)]
pub struct Peer {
    channel: Channel,
    authorization: AsciiMetadataValue,
}

/// A peer address or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("invalid peer address {url:?}")]
    Address {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the internal key contains characters that cannot be sent as metadata")]
    Key,
}

impl Peer {
    /// A channel that connects on first use (and reconnects after failures).
    pub fn connect_lazy(url: &str, internal_key: &str, settings: &PeerSettings) -> Result<Peer, PeerError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|source| PeerError::Address { url: url.to_owned(), source })?
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let authorization = format!("Bearer {internal_key}").parse().map_err(|_| PeerError::Key)?;
        Ok(Peer { channel: endpoint.connect_lazy(), authorization })
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Wraps `message` for a call made on behalf of `scope` (an account in one mode), in the
    /// current trace.
    pub fn request<T>(&self, scope: &Scope, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("authorization", self.authorization.clone());
        if let Ok(account) = scope.account().parse() {
            metadata.insert(ACCOUNT_HEADER, account);
        }
        metadata.insert(
            LIVEMODE_HEADER,
            AsciiMetadataValue::from_static(if scope.livemode() { "true" } else { "false" }),
        );
        inject_trace_context(metadata);
        request
    }
}

fn inject_trace_context(metadata: &mut MetadataMap) {
    let mut headers = http::HeaderMap::new();
    crate::telemetry::inject_current_context(&mut headers);
    for (name, value) in &headers {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::AsciiMetadataKey::from_bytes(name.as_str().as_bytes()),
            AsciiMetadataValue::try_from(value.as_bytes()),
        ) {
            metadata.insert(key, value);
        }
    }
}

/// Jittered exponential backoff: attempt n waits `min(max, base · 2ⁿ)` scaled by a random factor in
/// `[1 − jitter, 1]`, so retries from many callers spread out instead of arriving together.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay (default 50 ms).
    pub base: Duration,
    /// Longest delay (default 2 s).
    pub max: Duration,
    /// Fraction of each delay that is randomised (default 0.5).
    pub jitter: f64,
    /// Attempts in all, the first included (default 5).
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(50), max: Duration::from_secs(2), jitter: 0.5, max_attempts: 5 }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max);
        let mut byte = [0u8; 1];
        let _ = getrandom::fill(&mut byte);
        let scale = 1.0 - self.jitter.clamp(0.0, 1.0) * (f64::from(byte[0]) / 255.0);
        capped.mul_f64(scale)
    }
}

/// Whether a failed call may be repeated: the peer was unreachable or overloaded. Saga steps are
/// idempotent, so a repeat after an unknown outcome is safe for them.
pub fn is_retryable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::ResourceExhausted | Code::Aborted)
}

/// Runs `call` until it succeeds, fails with a non-retryable status, or attempts run out.
pub async fn with_retries<T, F, Fut>(backoff: &Backoff, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status) if is_retryable(&status) && attempt < backoff.max_attempts => {
                let delay = backoff.delay(attempt);
                tracing::debug!(code = ?status.code(), attempt, ?delay, "retrying call");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(status) => return Err(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_grow_and_are_capped() {
        let b = Backoff { jitter: 0.0, ..Backoff::default() };
        assert_eq!(b.delay(1), Duration::from_millis(50));
        assert_eq!(b.delay(2), Duration::from_millis(100));
        assert_eq!(b.delay(10), Duration::from_secs(2));
        let jittered = Backoff::default().delay(3);
        assert!(jittered <= Duration::from_millis(200) && jittered >= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_unavailable_then_gives_up() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Status> = with_retries(&Backoff::default(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::unavailable("down")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_caller_errors() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Status> = with_retries(&Backoff::default(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::invalid_argument("bad")) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
