//! The credit-notes service's configuration: the platform's settings (port 50053,
//! `sqlite://data/credit-notes.db` by default) and where invoices and payments are.

use serde::{Deserialize, Serialize};
use settle_platform::config::{self, ConfigError, PlatformConfig, PlatformDefaults};

/// Everything the credit-notes service reads from the environment.
#[derive(Debug, Clone)]
pub struct CreditNotesConfig {
    pub platform: PlatformConfig,
    pub peers: Peers,
    /// The saga runner's lease and recovery interval.
    pub sagas: settle_saga::SagaConfig,
}

/// Addresses of the services credit-notes calls.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Peers {
    /// `SETTLE_INVOICES_URL`: the invoices service (default `http://127.0.0.1:50051`).
    pub invoices_url: String,
    /// `SETTLE_PAYMENTS_URL`: the payments service (default `http://127.0.0.1:50052`).
    pub payments_url: String,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            invoices_url: "http://127.0.0.1:50051".to_owned(),
            payments_url: "http://127.0.0.1:50052".to_owned(),
        }
    }
}

impl AsRef<PlatformConfig> for CreditNotesConfig {
    fn as_ref(&self) -> &PlatformConfig {
        &self.platform
    }
}

/// Reads the configuration from the environment.
pub fn load() -> Result<CreditNotesConfig, ConfigError> {
    Ok(CreditNotesConfig {
        platform: config::load(PlatformDefaults::for_service("credit-notes", crate::DEFAULT_PORT))?,
        peers: config::load(Peers::default())?,
        sagas: config::load(settle_saga::SagaConfig::default())?,
    })
}
