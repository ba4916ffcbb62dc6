//! What settle's tests share: a service configuration on port 0 over a [`TestDatabase`], a
//! background server that stops when the test ends, and requests carrying the development key.
//!
//! ```text
//! let db = TestDatabase::new(backend).await?;
//! let app = Application::build(testkit::config(&db), testkit::token()).await?;
//! let server = testkit::spawn(app.local_addr(), app.run_until_stopped());
//! let mut client = PaymentIntentServiceClient::new(server.channel());
//! client.create_payment_intent(testkit::authorized(request)).await?;
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use settle_platform::auth::DEV_API_KEY;
use settle_platform::config::{PlatformConfig, PlatformDefaults};
use settle_platform::telemetry::LogFormat;
use settle_platform::testing::TestDatabase;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

pub use settle_platform::testing;

/// A second account's key, for tenancy tests.
pub const OTHER_API_KEY: &str = "sk_test_other_account";
/// The account [`OTHER_API_KEY`] acts for.
pub const OTHER_ACCOUNT: &str = "acct_other";
/// A live-mode key of the development account, for mode-separation tests: the account's live
/// data, which its test key never sees.
pub const LIVE_API_KEY: &str = "sk_live_settle_tests";
/// The internal key test services share.
pub const INTERNAL_KEY: &str = "sk_internal_test_key";

/// A platform configuration for tests: loopback port 0, the given database, the development key
/// plus [`OTHER_API_KEY`], and [`INTERNAL_KEY`].
pub fn config(database: &TestDatabase) -> PlatformConfig {
    settle_platform::telemetry::init_for_tests();
    PlatformConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: SecretString::from(database.url().to_owned()),
        database_max_connections: 8,
        api_keys: Some(SecretString::from(format!(
            "{DEV_API_KEY}={account},{LIVE_API_KEY}={account},{OTHER_API_KEY}={OTHER_ACCOUNT}",
            account = settle_platform::auth::DEV_ACCOUNT
        ))),
        internal_key: Some(SecretString::from(INTERNAL_KEY.to_owned())),
        development: false,
        shutdown_grace_seconds: 5,
        log_format: LogFormat::Text,
        instance_id: "test".to_owned(),
        metrics_addr: None,
        ..defaults()
    }
}

fn defaults() -> PlatformConfig {
    match PlatformConfig::from_defaults(PlatformDefaults::for_service("test", 0)) {
        Ok(config) => config,
        Err(error) => panic!("the platform defaults do not load: {error}"),
    }
}

/// A fresh shutdown token.
pub fn token() -> CancellationToken {
    CancellationToken::new()
}

/// A server running in the background for the length of a test.
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// Runs `serve` (an application's `run_until_stopped`) in the background. The listener is already
/// bound, so clients can connect at once; no sleeping or polling is needed.
pub fn spawn<F, E>(addr: SocketAddr, shutdown: CancellationToken, serve: F) -> RunningServer
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let task = tokio::spawn(async move {
        if let Err(error) = serve.await {
            eprintln!("test server failed: {error}");
        }
    });
    RunningServer { addr, shutdown, task: Some(task) }
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A channel to the server (connects lazily).
    pub fn channel(&self) -> Channel {
        channel(self.addr)
    }

    /// Asks the server to drain and waits until it has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A lazily connected channel to `addr`.
pub fn channel(addr: SocketAddr) -> Channel {
    match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(endpoint) => endpoint.connect_timeout(Duration::from_secs(5)).connect_lazy(),
        Err(error) => panic!("invalid test address {addr}: {error}"),
    }
}

/// Wraps `message` with the development key.
pub fn authorized<T>(message: T) -> Request<T> {
    with_key(message, DEV_API_KEY)
}

/// Wraps `message` with the development key and an idempotency key.
pub fn idempotent<T>(message: T, idempotency_key: &str) -> Request<T> {
    let mut request = authorized(message);
    request.metadata_mut().insert(
        "idempotency-key",
        idempotency_key.parse().unwrap_or_else(|_| panic!("invalid idempotency key {idempotency_key:?}")),
    );
    request
}

/// Wraps `message` as one settle service calling another for `account` in test mode (the
/// internal key).
pub fn internal<T>(message: T, account: &str) -> Request<T> {
    internal_in(message, account, false)
}

/// Wraps `message` as one settle service calling another for `account` in the given mode.
pub fn internal_in<T>(message: T, account: &str, livemode: bool) -> Request<T> {
    let mut request = with_key(message, INTERNAL_KEY);
    request.metadata_mut().insert(
        settle_platform::auth::ACCOUNT_HEADER,
        account.parse().unwrap_or_else(|_| panic!("invalid account {account:?}")),
    );
    request.metadata_mut().insert(
        settle_platform::auth::LIVEMODE_HEADER,
        tonic::metadata::MetadataValue::from_static(if livemode { "true" } else { "false" }),
    );
    request
}

/// Wraps `message` with an arbitrary bearer key.
pub fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().unwrap_or_else(|_| panic!("invalid key {key:?}")),
    );
    request
}

/// The `ErrorInfo.reason` of a failed call (`resource_missing`, …), or "" when it has none.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
}

/// The fields named by a failed call's `BadRequest` violations.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
