//! The invoices service's configuration: the platform's settings (port 50051,
//! `sqlite://data/invoices.db` by default) and where the payments service is.

use serde::{Deserialize, Serialize};
use settle_platform::config::{self, ConfigError, PlatformConfig, PlatformDefaults};

/// Everything the invoices service reads from the environment.
#[derive(Debug, Clone)]
pub struct InvoicesConfig {
    pub platform: PlatformConfig,
    pub peers: Peers,
    /// The saga runner's lease and recovery interval.
    pub sagas: settle_saga::SagaConfig,
}

/// Addresses of the services invoices calls.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Peers {
    /// `SETTLE_PAYMENTS_URL`: the payments service (default `http://127.0.0.1:50052`).
    pub payments_url: String,
}

impl Default for Peers {
    fn default() -> Self {
        Peers { payments_url: "http://127.0.0.1:50052".to_owned() }
    }
}

impl AsRef<PlatformConfig> for InvoicesConfig {
    fn as_ref(&self) -> &PlatformConfig {
        &self.platform
    }
}

/// Reads the configuration from the environment.
pub fn load() -> Result<InvoicesConfig, ConfigError> {
    Ok(InvoicesConfig {
        platform: config::load(PlatformDefaults::for_service("invoices", crate::DEFAULT_PORT))?,
        peers: config::load(Peers::default())?,
        sagas: config::load(settle_saga::SagaConfig::default())?,
    })
}
