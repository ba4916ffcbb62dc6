//! The invoices service binary: configuration from the environment, then serve until SIGTERM.

use std::process::ExitCode;

use settle_invoices::startup::Application;
use settle_platform::startup::StartupError;

#[tokio::main]
async fn main() -> ExitCode {
    settle_platform::bin_support::run_service(
        "settle-invoices",
        settle_invoices::config::load,
        |config, shutdown| async move {
            let app = Application::build(config, shutdown).await?;
            app.run_until_stopped().await.map_err(StartupError::from)
        },
    )
    .await
}
