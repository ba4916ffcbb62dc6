//! Configuration shared by every service, read from the environment. Storage defaults work out of the
//! box (embedded SQLite in `./data`); keys do not: a service without `SETTLE_API_KEYS` refuses to
//! start unless `SETTLE_DEVELOPMENT=true` says it may use the public development keys (and then it
//! binds loopback unless `SETTLE_LISTEN_ADDR` says otherwise). A service loads [`PlatformConfig`] and,
//! with the same [`load`], its own settings (peer addresses) as a second struct; `serde(flatten)` is
//! avoided because it loses the name of the setting in error messages.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SETTLE_LISTEN_ADDR` | `0.0.0.0:<service port>` (development: `127.0.0.1`) | gRPC listen address |
//! | `DATABASE_URL` | `sqlite://data/<service>.db` | `postgres://…` or `sqlite:…` |
//! | `SETTLE_DATABASE_MAX_CONNECTIONS` | 16 | PostgreSQL pool size |
//! | `SETTLE_API_KEYS` | required | `key=acct_…` pairs, comma separated |
//! | `SETTLE_INTERNAL_KEY` | required with `SETTLE_API_KEYS` | key settle's services use with each other |
//! | `SETTLE_DEVELOPMENT` | `false` | `true`: without `SETTLE_API_KEYS`, use the public development keys |
//! | `SETTLE_SHUTDOWN_GRACE_SECONDS` | 20 | drain deadline after SIGTERM |
//! | `SETTLE_LOG_FORMAT` | `text` | `text` or `json` |
//! | `SETTLE_INSTANCE_ID` | host name | this replica's name in saga leases |
//! | `SETTLE_REQUEST_TIMEOUT_MILLIS` | 30000 | a call not answered by then ends CANCELLED |
//! | `SETTLE_MAX_CONCURRENT_REQUESTS` | 512 | calls in flight; past it RESOURCE_EXHAUSTED at once |
//! | `SETTLE_MAX_CONCURRENT_STREAMS` | 256 | HTTP/2 streams per connection |
//! | `SETTLE_HTTP2_KEEPALIVE_INTERVAL_SECONDS`, `…_TIMEOUT_SECONDS` | 30, 20 | HTTP/2 pings |
//! | `SETTLE_TCP_KEEPALIVE_SECONDS` | 60 | TCP keepalive |
//! | `SETTLE_EVENT_STREAMS_PER_ACCOUNT`, `SETTLE_EVENT_STREAMS_TOTAL` | 16, 512 | `StreamEvents` caps |

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::{ApiKeys, DEV_ACCOUNT, DEV_API_KEY, DEV_INTERNAL_KEY, KeysConfigError};
use crate::telemetry::LogFormat;

/// Settings every settle service has.
#[derive(Debug, Clone, Deserialize)]
pub struct PlatformConfig {
    /// Address the gRPC server listens on (port 0 picks a free port).
    pub listen_addr: SocketAddr,
    /// `postgres://…` for production, `sqlite:…` for the embedded default.
    pub database_url: SecretString,
    /// Size of the PostgreSQL connection pool.
    pub database_max_connections: u32,
    /// `key=acct_…` pairs; required unless [`PlatformConfig::development`] is set.
    pub api_keys: Option<SecretString>,
    /// The key settle's services use to call each other; required with `api_keys`.
    pub internal_key: Option<SecretString>,
    /// Without `api_keys`, run with the public development keys instead of refusing to start.
    #[serde(default)]
    pub development: bool,
    /// How long in-flight calls may take to finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// This replica's name (saga leases, logs).
    pub instance_id: String,
    /// Where `/metrics` is served (Prometheus text format); unset serves no metrics endpoint.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// Request timeouts, concurrency, keepalive and stream caps (see [`ServerLimits`]).
    #[serde(default = "default_request_timeout_millis")]
    pub request_timeout_millis: u64,
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    #[serde(default = "default_http2_keepalive_interval_seconds")]
    pub http2_keepalive_interval_seconds: u64,
    #[serde(default = "default_http2_keepalive_timeout_seconds")]
    pub http2_keepalive_timeout_seconds: u64,
    #[serde(default = "default_tcp_keepalive_seconds")]
    pub tcp_keepalive_seconds: u64,
    #[serde(default = "default_event_streams_per_account")]
    pub event_streams_per_account: usize,
    #[serde(default = "default_event_streams_total")]
    pub event_streams_total: usize,
}

const fn default_request_timeout_millis() -> u64 {
    30_000
}
const fn default_max_concurrent_requests() -> usize {
    512
}
const fn default_max_concurrent_streams() -> u32 {
    256
}
const fn default_http2_keepalive_interval_seconds() -> u64 {
    30
}
const fn default_http2_keepalive_timeout_seconds() -> u64 {
    20
}
const fn default_tcp_keepalive_seconds() -> u64 {
    60
}
const fn default_event_streams_per_account() -> usize {
    16
}
const fn default_event_streams_total() -> usize {
    512
}

/// The server's protective limits, from [`PlatformConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Longest a call may take before it is answered CANCELLED (a shorter `grpc-timeout` wins).
    pub request_timeout: Duration,
    /// Calls in flight across all connections; past it calls are refused RESOURCE_EXHAUSTED at once.
    pub max_concurrent_requests: usize,
    /// HTTP/2 streams one connection may have open.
    pub max_concurrent_streams: u32,
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    pub tcp_keepalive: Duration,
    /// Open `StreamEvents` calls per (account, mode) and in all.
    pub event_streams_per_scope: usize,
    pub event_streams_total: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            request_timeout: Duration::from_millis(default_request_timeout_millis()),
            max_concurrent_requests: default_max_concurrent_requests(),
            max_concurrent_streams: default_max_concurrent_streams(),
            http2_keepalive_interval: Duration::from_secs(default_http2_keepalive_interval_seconds()),
            http2_keepalive_timeout: Duration::from_secs(default_http2_keepalive_timeout_seconds()),
            tcp_keepalive: Duration::from_secs(default_tcp_keepalive_seconds()),
            event_streams_per_scope: default_event_streams_per_account(),
            event_streams_total: default_event_streams_total(),
        }
    }
}

/// Defaults a service passes to [`load`]; everything not listed falls back to the platform default.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformDefaults {
    pub listen_addr: SocketAddr,
    pub database_url: String,
    pub database_max_connections: u32,
    pub shutdown_grace_seconds: u64,
    pub log_format: LogFormat,
    pub instance_id: String,
}

impl PlatformDefaults {
    /// Defaults for a service called `name` (e.g. `payments`) listening on `port`.
    pub fn for_service(name: &str, port: u16) -> Self {
        PlatformDefaults {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], port)),
            database_url: format!("sqlite://data/{name}.db"),
            database_max_connections: 16,
            shutdown_grace_seconds: 20,
            log_format: LogFormat::Text,
            instance_id: default_instance_id(),
        }
    }
}

fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("local-{}", std::process::id()))
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", describe(.0))]
    Invalid(Box<figment::Error>),
    #[error(transparent)]
    Keys(#[from] KeysConfigError),
    #[error("SETTLE_INTERNAL_KEY must be set when SETTLE_API_KEYS is")]
    MissingInternalKey,
    #[error(
        "SETTLE_API_KEYS is not set: set it and SETTLE_INTERNAL_KEY, or set SETTLE_DEVELOPMENT=true \
         to run with the public development keys"
    )]
    MissingApiKeys,
}

/// Names the offending setting and where it came from, e.g. `listen_addr (SETTLE_LISTEN_ADDR): invalid
/// socket address syntax`.
fn describe(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| m.name.to_string());
            match (key.is_empty(), source) {
                (true, _) => e.kind.to_string(),
                (false, Some(source)) => format!("{key} (from {source}): {}", e.kind),
                (false, None) => format!("{key}: {}", e.kind),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads the configuration `C` from `SETTLE_*` variables (and `DATABASE_URL`) over `defaults`;
/// `C` picks the keys it knows and ignores the rest.
pub fn load<C: DeserializeOwned>(defaults: impl Serialize) -> Result<C, ConfigError> {
    let figment = Figment::from(Serialized::defaults(defaults))
        .merge(Env::prefixed("SETTLE_"))
        .merge(Env::raw().only(&["DATABASE_URL"]));
    development_loopback(figment).extract().map_err(|e| ConfigError::Invalid(Box::new(e)))
}

/// In development mode the default listen address moves to loopback: the development keys are
/// public, so they must not be reachable from the network unless an address is asked for.
fn development_loopback(figment: Figment) -> Figment {
    let development = figment.extract_inner::<bool>("development").unwrap_or(false);
    let address_given = Figment::from(Env::prefixed("SETTLE_")).contains("listen_addr");
    match figment.extract_inner::<SocketAddr>("listen_addr") {
        Ok(addr) if development && !address_given => {
            let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port());
            figment.merge(Serialized::default("listen_addr", loopback))
        }
        _ => figment,
    }
}

impl AsRef<PlatformConfig> for PlatformConfig {
    fn as_ref(&self) -> &PlatformConfig {
        self
    }
}

impl PlatformConfig {
    /// The configured keys; the development keys only when none are configured and
    /// [`PlatformConfig::development`] allows it. Every path goes through [`ApiKeys::parse`], so an
    /// internal key equal to an API key is refused whatever the mode.
    pub fn api_keys(&self) -> Result<ApiKeys, ConfigError> {
        let internal =
            self.internal_key.as_ref().map(ExposeSecret::expose_secret).filter(|k| !k.trim().is_empty());
        match self.api_keys.as_ref().map(ExposeSecret::expose_secret).filter(|s| !s.trim().is_empty()) {
            Some(spec) => {
                let internal = internal.ok_or(ConfigError::MissingInternalKey)?;
                Ok(ApiKeys::parse(spec, Some(internal))?)
            }
            None if self.development => {
                let spec = format!("{DEV_API_KEY}={DEV_ACCOUNT}");
                Ok(ApiKeys::parse(&spec, Some(internal.unwrap_or(DEV_INTERNAL_KEY)))?)
            }
            None => Err(ConfigError::MissingApiKeys),
        }
    }

    /// Whether the service runs with the public development keys.
    pub fn development_mode(&self) -> bool {
        self.development && self.api_keys.as_ref().is_none_or(|s| s.expose_secret().trim().is_empty())
    }

    /// The server's protective limits.
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            request_timeout: Duration::from_millis(self.request_timeout_millis.max(1)),
            max_concurrent_requests: self.max_concurrent_requests.max(1),
            max_concurrent_streams: self.max_concurrent_streams.max(1),
            http2_keepalive_interval: Duration::from_secs(self.http2_keepalive_interval_seconds.max(1)),
            http2_keepalive_timeout: Duration::from_secs(self.http2_keepalive_timeout_seconds.max(1)),
            tcp_keepalive: Duration::from_secs(self.tcp_keepalive_seconds.max(1)),
            event_streams_per_scope: self.event_streams_per_account.max(1),
            event_streams_total: self.event_streams_total.max(1),
        }
    }

    /// A configuration from `defaults` alone (no environment), for launchers and tests that then
    /// set what they need.
    pub fn from_defaults(defaults: PlatformDefaults) -> Result<PlatformConfig, ConfigError> {
        Figment::from(Serialized::defaults(defaults)).extract().map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    pub fn pool_settings(&self) -> crate::db::PoolSettings {
        crate::db::PoolSettings {
            max_connections: self.database_max_connections.max(1),
            ..Default::default()
        }
    }
}

#[cfg(test)]
// figment's Jail fixes the closures' error type to its own (large) error.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Peers {
        payments_url: String,
    }

    #[derive(Serialize)]
    struct PeerDefaults {
        payments_url: &'static str,
    }

    #[test]
    fn defaults_work_and_env_overrides_them() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let defaults = || PlatformDefaults::for_service("invoices", 50051);
            let peers = || PeerDefaults { payments_url: "http://127.0.0.1:50052" };
            let config: PlatformConfig = load(defaults()).map_err(|e| e.to_string())?;
            assert_eq!(config.listen_addr.port(), 50051);
            assert_eq!(config.database_url.expose_secret(), "sqlite://data/invoices.db");
            assert!(!config.development_mode());
            assert_eq!(config.limits(), ServerLimits::default());

            jail.set_env("SETTLE_LISTEN_ADDR", "127.0.0.1:6000");
            jail.set_env("DATABASE_URL", "postgres://localhost/x");
            jail.set_env("SETTLE_PAYMENTS_URL", "http://payments:50052");
            jail.set_env("SETTLE_API_KEYS", "sk_test_12345678=acct_a");
            jail.set_env("SETTLE_INTERNAL_KEY", "sk_internal_abcdefgh");
            let config: PlatformConfig = load(defaults()).map_err(|e| e.to_string())?;
            let peers: Peers = load(peers()).map_err(|e| e.to_string())?;
            assert_eq!(config.listen_addr.port(), 6000);
            assert_eq!(config.database_url.expose_secret(), "postgres://localhost/x");
            assert_eq!(peers.payments_url, "http://payments:50052");
            assert!(!config.development_mode());
            assert!(config.api_keys().is_ok());
            Ok(())
        });
    }

    fn service_config() -> Result<PlatformConfig, String> {
        load(PlatformDefaults::for_service("payments", 50052)).map_err(|e| e.to_string())
    }

    #[test]
    fn without_keys_a_service_refuses_to_start() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let config = service_config()?;
            assert!(matches!(config.api_keys(), Err(ConfigError::MissingApiKeys)));
            let message = ConfigError::MissingApiKeys.to_string();
            assert!(message.contains("SETTLE_API_KEYS") && message.contains("SETTLE_DEVELOPMENT=true"));
            // An internal key alone is not enough either.
            jail.set_env("SETTLE_INTERNAL_KEY", "sk_internal_abcdefgh");
            assert!(matches!(service_config()?.api_keys(), Err(ConfigError::MissingApiKeys)));
            Ok(())
        });
    }

    #[test]
    fn api_keys_need_the_internal_key() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("SETTLE_API_KEYS", "sk_test_12345678=acct_a");
            assert!(matches!(service_config()?.api_keys(), Err(ConfigError::MissingInternalKey)));
            jail.set_env("SETTLE_INTERNAL_KEY", "  ");
            assert!(matches!(service_config()?.api_keys(), Err(ConfigError::MissingInternalKey)));
            Ok(())
        });
    }

    #[test]
    fn the_development_flag_uses_the_development_keys_on_loopback() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("SETTLE_DEVELOPMENT", "true");
            let config = service_config()?;
            assert!(config.development_mode());
            assert_eq!(config.listen_addr, SocketAddr::from(([127, 0, 0, 1], 50052)));
            let keys = config.api_keys().map_err(|e| e.to_string())?;
            assert_eq!(keys.internal_key(), Some(DEV_INTERNAL_KEY));

            // An address asked for is kept, even a public one.
            jail.set_env("SETTLE_LISTEN_ADDR", "0.0.0.0:7000");
            assert_eq!(service_config()?.listen_addr, SocketAddr::from(([0, 0, 0, 0], 7000)));

            // Real keys win over the flag.
            jail.set_env("SETTLE_API_KEYS", "sk_test_12345678=acct_a");
            jail.set_env("SETTLE_INTERNAL_KEY", "sk_internal_abcdefgh");
            let config = service_config()?;
            assert!(!config.development_mode());
            assert_eq!(
                config.api_keys().map_err(|e| e.to_string())?.internal_key(),
                Some("sk_internal_abcdefgh")
            );
            Ok(())
        });
    }

    #[test]
    fn the_internal_key_never_equals_an_api_key_in_any_mode() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("SETTLE_API_KEYS", "sk_test_12345678=acct_a");
            jail.set_env("SETTLE_INTERNAL_KEY", "sk_test_12345678");
            assert!(matches!(service_config()?.api_keys(), Err(ConfigError::Keys(_))));

            jail.clear_env();
            jail.set_env("SETTLE_DEVELOPMENT", "true");
            jail.set_env("SETTLE_INTERNAL_KEY", DEV_API_KEY);
            assert!(matches!(service_config()?.api_keys(), Err(ConfigError::Keys(_))));
            Ok(())
        });
    }

    #[test]
    fn limits_are_configurable() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("SETTLE_REQUEST_TIMEOUT_MILLIS", "1500");
            jail.set_env("SETTLE_MAX_CONCURRENT_REQUESTS", "7");
            jail.set_env("SETTLE_EVENT_STREAMS_PER_ACCOUNT", "2");
            let limits = service_config()?.limits();
            assert_eq!(limits.request_timeout, Duration::from_millis(1500));
            assert_eq!(limits.max_concurrent_requests, 7);
            assert_eq!(limits.event_streams_per_scope, 2);
            assert_eq!(limits.event_streams_total, ServerLimits::default().event_streams_total);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_setting_and_its_source() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("SETTLE_LISTEN_ADDR", "not an address");
            let result: Result<PlatformConfig, _> = load(PlatformDefaults::for_service("invoices", 50051));
            let message = result.unwrap_err().to_string();
            assert!(message.contains("listen_addr") && message.contains("SETTLE_"), "{message}");
            Ok(())
        });
    }
}
