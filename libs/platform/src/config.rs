//! Configuration shared by every service, read from the environment with defaults that work out of
//! the box (embedded SQLite in `./data`, the development key). A service loads [`PlatformConfig`] and,
//! with the same [`load`], its own settings (peer addresses) as a second struct; `serde(flatten)` is
//! avoided because it loses the name of the setting in error messages.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SETTLE_LISTEN_ADDR` | `0.0.0.0:<service port>` | gRPC listen address |
//! | `DATABASE_URL` | `sqlite://data/<service>.db` | `postgres://…` or `sqlite:…` |
//! | `SETTLE_DATABASE_MAX_CONNECTIONS` | 16 | PostgreSQL pool size |
//! | `SETTLE_API_KEYS` | development key | `key=acct_…` pairs, comma separated |
//! | `SETTLE_INTERNAL_KEY` | development internal key | key settle's services use with each other |
//! | `SETTLE_SHUTDOWN_GRACE_SECONDS` | 20 | drain deadline after SIGTERM |
//! | `SETTLE_LOG_FORMAT` | `text` | `text` or `json` |
//! | `SETTLE_INSTANCE_ID` | host name | this replica's name in saga leases |

use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::{ApiKeys, KeysConfigError};
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
    /// `key=acct_…` pairs; unset means development mode with the printed development key.
    pub api_keys: Option<SecretString>,
    /// The key settle's services use to call each other.
    pub internal_key: Option<SecretString>,
    /// How long in-flight calls may take to finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// This replica's name (saga leases, logs).
    pub instance_id: String,
    /// Where `/metrics` is served (Prometheus text format); unset serves no metrics endpoint.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
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
    Figment::from(Serialized::defaults(defaults))
        .merge(Env::prefixed("SETTLE_"))
        .merge(Env::raw().only(&["DATABASE_URL"]))
        .extract()
        .map_err(|e| ConfigError::Invalid(Box::new(e)))
}

impl AsRef<PlatformConfig> for PlatformConfig {
    fn as_ref(&self) -> &PlatformConfig {
        self
    }
}

impl PlatformConfig {
    /// The API keys, or the development keys when none are configured.
    pub fn api_keys(&self) -> Result<ApiKeys, ConfigError> {
        match &self.api_keys {
            Some(spec) if !spec.expose_secret().trim().is_empty() => {
                let internal = self.internal_key.as_ref().map(ExposeSecret::expose_secret);
                let keys = ApiKeys::parse(spec.expose_secret(), internal)?;
                Ok(keys)
            }
            _ => Ok(ApiKeys::development()),
        }
    }

    /// Whether no keys are configured, so the development key is accepted.
    pub fn development_mode(&self) -> bool {
        self.api_keys.as_ref().is_none_or(|s| s.expose_secret().trim().is_empty())
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
            assert!(config.development_mode());

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
