//! The payments service's configuration: the platform's settings only (see
//! [`settle_platform::config`]), defaulting to port 50052 and `sqlite://data/payments.db`.

use settle_platform::config::{self, ConfigError, PlatformConfig, PlatformDefaults};

/// Reads the configuration from the environment.
pub fn load() -> Result<PlatformConfig, ConfigError> {
    config::load(PlatformDefaults::for_service("payments", crate::DEFAULT_PORT))
}
