//! Building and running the credit-notes service; `main` and the tests go through the same path.

use std::net::SocketAddr;

use settle_platform::server::ServerError;
use settle_platform::startup::{Foundation, StartupError};
use tokio_util::sync::CancellationToken;

use crate::config::CreditNotesConfig;

/// A built credit-notes service, bound and migrated, ready to serve.
pub struct Application {
    foundation: Foundation,
}

impl Application {
    /// Binds the listener, connects and migrates the database, and mounts the services.
    pub async fn build(config: CreditNotesConfig, shutdown: CancellationToken) -> Result<Self, StartupError> {
        let foundation =
            Foundation::start("credit-notes", &config.platform, &[&crate::MIGRATIONS], shutdown).await?;
        Ok(Application { foundation })
    }

    /// The bound address (tests bind port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.foundation.local_addr()
    }

    /// Serves until the shutdown token is cancelled, then drains.
    pub async fn run_until_stopped(self) -> Result<(), ServerError> {
        self.foundation.serve().await
    }
}
