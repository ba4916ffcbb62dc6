//! `cargo run`: the three settle services in one process, on 50051 (invoices), 50052 (payments)
//! and 50053 (credit-notes), each with its own SQLite file in `./data`. Prints how to call them;
//! Ctrl-C drains and stops all three.
//!
//! | variable | default |
//! |---|---|
//! | `SETTLE_DATA_DIR` | `data` |
//! | `SETTLE_HOST` | `127.0.0.1` |
//! | `SETTLE_INVOICES_PORT`, `SETTLE_PAYMENTS_PORT`, `SETTLE_CREDIT_NOTES_PORT` | 50051, 50052, 50053 |
//! | `SETTLE_METRICS_ADDR` | `127.0.0.1:9464` (`/metrics`) |
//! | `SETTLE_API_KEYS`, `SETTLE_INTERNAL_KEY` | the development keys (the launcher alone defaults to them) |
//! | `SETTLE_LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | as for each service |

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use settle_platform::auth::{DEV_ACCOUNT, DEV_API_KEY};
use settle_platform::config::{self, ConfigError, PlatformConfig, PlatformDefaults};
use settle_platform::startup::StartupError;
use settle_platform::telemetry::LogFormat;
use tokio_util::sync::CancellationToken;

/// The launcher's settings.
#[derive(Debug, Deserialize)]
struct Launcher {
    data_dir: PathBuf,
    host: IpAddr,
    invoices_port: u16,
    payments_port: u16,
    credit_notes_port: u16,
    api_keys: Option<SecretString>,
    internal_key: Option<SecretString>,
    log_format: LogFormat,
    shutdown_grace_seconds: u64,
    /// One `/metrics` endpoint for all three services (they share the process' registry).
    metrics_addr: Option<SocketAddr>,
}

#[derive(Serialize)]
struct Defaults {
    data_dir: &'static str,
    host: &'static str,
    invoices_port: u16,
    payments_port: u16,
    credit_notes_port: u16,
    log_format: LogFormat,
    shutdown_grace_seconds: u64,
    metrics_addr: &'static str,
}

/// What `run_service` needs to know about the launcher's configuration.
#[derive(Debug)]
struct Loaded {
    launcher: Launcher,
    /// The payments service's platform config (carries the shared log format).
    template: PlatformConfig,
}

impl AsRef<PlatformConfig> for Loaded {
    fn as_ref(&self) -> &PlatformConfig {
        &self.template
    }
}

impl Launcher {
    /// Whether no keys are configured: the launcher alone then runs with the development keys.
    fn development(&self) -> bool {
        self.api_keys.as_ref().is_none_or(|k| k.expose_secret().trim().is_empty())
    }

    fn service(&self, name: &str, port: u16) -> Result<PlatformConfig, ConfigError> {
        let database = self.data_dir.join(format!("{name}.db"));
        Ok(PlatformConfig {
            listen_addr: SocketAddr::new(self.host, port),
            database_url: SecretString::from(format!("sqlite://{}", database.display())),
            database_max_connections: 4,
            api_keys: self.api_keys.clone(),
            internal_key: self.internal_key.clone(),
            development: self.development(),
            shutdown_grace_seconds: self.shutdown_grace_seconds,
            log_format: self.log_format,
            instance_id: format!("settle-{}", std::process::id()),
            metrics_addr: self.metrics_addr,
            ..PlatformConfig::from_defaults(PlatformDefaults::for_service(name, port))?
        })
    }
}

fn load() -> Result<Loaded, ConfigError> {
    let launcher: Launcher = config::load(Defaults {
        data_dir: "data",
        host: "127.0.0.1",
        invoices_port: settle_invoices::DEFAULT_PORT,
        payments_port: settle_payments::DEFAULT_PORT,
        credit_notes_port: settle_credit_notes::DEFAULT_PORT,
        log_format: LogFormat::Text,
        shutdown_grace_seconds: 10,
        metrics_addr: "127.0.0.1:9464",
    })?;
    let template = launcher.service("payments", launcher.payments_port)?;
    Ok(Loaded { launcher, template })
}

#[derive(Debug, thiserror::Error)]
enum LaunchError {
    #[error("the {service} service could not start")]
    Start {
        service: &'static str,
        #[source]
        source: StartupError,
    },
    #[error("the {service} service failed")]
    Serve {
        service: &'static str,
        #[source]
        source: settle_platform::server::ServerError,
    },
}

async fn run(loaded: Loaded, shutdown: CancellationToken) -> Result<(), LaunchError> {
    let l = &loaded.launcher;
    let start = |service: &'static str| move |source| LaunchError::Start { service, source };
    let config_error =
        |service: &'static str| move |e: ConfigError| LaunchError::Start { service, source: e.into() };
    let payments = settle_payments::startup::Application::build(
        l.service("payments", l.payments_port).map_err(config_error("payments"))?,
        shutdown.clone(),
    )
    .await
    .map_err(start("payments"))?;
    // Peers are addressed where they actually listen (a port of 0 picks a free one).
    let payments_url = format!("http://{}", payments.local_addr());
    let invoices = settle_invoices::startup::Application::build(
        settle_invoices::config::InvoicesConfig {
            platform: l.service("invoices", l.invoices_port).map_err(config_error("invoices"))?,
            peers: settle_invoices::config::Peers { payments_url: payments_url.clone() },
            sagas: Default::default(),
        },
        shutdown.clone(),
    )
    .await
    .map_err(start("invoices"))?;
    let credit_notes = settle_credit_notes::startup::Application::build(
        settle_credit_notes::config::CreditNotesConfig {
            platform: l.service("credit-notes", l.credit_notes_port).map_err(config_error("credit-notes"))?,
            peers: settle_credit_notes::config::Peers {
                invoices_url: format!("http://{}", invoices.local_addr()),
                payments_url,
            },
            sagas: Default::default(),
        },
        shutdown.clone(),
    )
    .await
    .map_err(start("credit-notes"))?;

    print_banner(l, invoices.local_addr(), payments.local_addr(), credit_notes.local_addr());

    let serve = |service: &'static str| move |source| LaunchError::Serve { service, source };
    let (i, p, c) = tokio::join!(
        invoices.run_until_stopped(),
        payments.run_until_stopped(),
        credit_notes.run_until_stopped()
    );
    i.map_err(serve("invoices"))?;
    p.map_err(serve("payments"))?;
    c.map_err(serve("credit-notes"))?;
    Ok(())
}

fn print_banner(l: &Launcher, invoices: SocketAddr, payments: SocketAddr, credit_notes: SocketAddr) {
    let development = l.development();
    let key = if development { DEV_API_KEY } else { "<one of SETTLE_API_KEYS>" };
    println!();
    println!("settle is running (data in {}/):", l.data_dir.display());
    println!("  invoices      {invoices}");
    println!("  payments      {payments}");
    println!("  credit-notes  {credit_notes}");
    if development {
        println!();
        println!(
            "DEVELOPMENT KEYS: {DEV_API_KEY}  (account {DEV_ACCOUNT}); the keys are public, so this is \
             for your machine only: set SETTLE_API_KEYS and SETTLE_INTERNAL_KEY for real keys"
        );
    }
    println!();
    println!("Try it:");
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {key}' -H 'idempotency-key: first-payment' \\\n    \
         -d '{{\"amount\": 2000, \"currency\": \"usd\", \"customer\": \"cus_demo\", \"payment_method\": \"pm_card_visa\", \"confirm\": true}}' \\\n    \
         {payments} settle.payments.v1.PaymentIntentService/CreatePaymentIntent"
    );
    println!("  grpcurl -plaintext {payments} list");
    println!();
    println!("Ctrl-C stops all three.");
}

#[tokio::main]
async fn main() -> ExitCode {
    settle_platform::bin_support::run_service("settle", load, run).await
}
