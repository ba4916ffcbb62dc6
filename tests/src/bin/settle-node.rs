//! One settle service as its own process, built with the fault points compiled in: the crash and
//! chaos tests start, kill and restart these. `settle-node <invoices|payments|credit-notes>`, the
//! same environment as the service binaries (plus `FAILPOINTS`).

use std::process::ExitCode;

use settle_platform::startup::StartupError;

#[tokio::main]
async fn main() -> ExitCode {
    let service = std::env::args().nth(1).unwrap_or_default();
    match service.as_str() {
        "payments" => {
            settle_platform::bin_support::run_service(
                "settle-payments",
                settle_payments::config::load,
                |config, shutdown| async move {
                    let app = settle_payments::startup::Application::build(config, shutdown).await?;
                    app.run_until_stopped().await.map_err(StartupError::from)
                },
            )
            .await
        }
        "invoices" => {
            settle_platform::bin_support::run_service(
                "settle-invoices",
                settle_invoices::config::load,
                |config, shutdown| async move {
                    let app = settle_invoices::startup::Application::build(config, shutdown).await?;
                    app.run_until_stopped().await.map_err(StartupError::from)
                },
            )
            .await
        }
        "credit-notes" => {
            settle_platform::bin_support::run_service(
                "settle-credit-notes",
                settle_credit_notes::config::load,
                |config, shutdown| async move {
                    let app = settle_credit_notes::startup::Application::build(config, shutdown).await?;
                    app.run_until_stopped().await.map_err(StartupError::from)
                },
            )
            .await
        }
        other => {
            eprintln!("usage: settle-node <invoices|payments|credit-notes> (got {other:?})");
            ExitCode::from(64)
        }
    }
}
