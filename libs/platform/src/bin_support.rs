//! The `main` of every service binary: load config (exit 64 with one clear line if it is bad),
//! `--dump-config`, telemetry, signal handling, build, serve. `--migrate-only` builds the service
//! (which applies its migrations) and exits without serving: the Kubernetes init container runs it
//! so a new version's schema is in place before any pod of it serves.

use std::fmt::Debug;
use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, PlatformConfig};
use crate::telemetry::{self, LogSink};

/// Runs a service binary. `load` reads its configuration, `run` builds and serves it until the
/// token is cancelled.
pub async fn run_service<C, L, R, F, E>(name: &str, load: L, run: R) -> ExitCode
where
    C: Debug + AsRef<PlatformConfig>,
    L: FnOnce() -> Result<C, ConfigError>,
    R: FnOnce(C, CancellationToken) -> F,
    F: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    // Keys are checked with the rest of the configuration: a service without them must not start.
    let config = match load().and_then(|loaded| loaded.as_ref().api_keys().map(|_| loaded)) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{name}: invalid configuration: {error}");
            return ExitCode::from(64);
        }
    };
    if std::env::args().any(|arg| arg == "--dump-config") {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    let log_format = config.as_ref().log_format;
    let _telemetry = match telemetry::init(name, LogSink::Stdout, log_format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{name}: {error}");
            return ExitCode::from(70);
        }
    };
    crate::faults::setup();
    if config.as_ref().development_mode() {
        tracing::warn!(
            listen_addr = %config.as_ref().listen_addr,
            "DEVELOPMENT MODE (SETTLE_DEVELOPMENT=true, no SETTLE_API_KEYS): the public development keys \
             are accepted; never run this way where others can reach it"
        );
    }
    let shutdown = CancellationToken::new();
    if std::env::args().any(|arg| arg == "--migrate-only") {
        // Already cancelled: the service migrates while it builds, then stops at once.
        shutdown.cancel();
        tracing::info!("--migrate-only: applying migrations and exiting");
    } else {
        crate::shutdown::cancel_on_signal(shutdown.clone());
        if let Some(addr) = config.as_ref().metrics_addr {
            // Metrics are for looking at the service, not part of it: a taken port is a warning.
            if let Err(error) = crate::metrics::serve(addr, shutdown.clone()).await {
                tracing::warn!(%addr, %error, "metrics endpoint unavailable");
            }
        }
    }
    match run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %crate::error::ErrorChain(&error), "{name} failed");
            eprintln!("{name}: {}", crate::error::ErrorChain(&error));
            ExitCode::FAILURE
        }
    }
}
