//! The payments service binary: configuration from the environment, then serve until SIGTERM.

use std::process::ExitCode;

use settle_payments::startup::Application;
use settle_platform::startup::StartupError;

#[tokio::main]
async fn main() -> ExitCode {
    settle_platform::bin_support::run_service(
        "settle-payments",
        settle_payments::config::load,
        |config, shutdown| async move {
            let app = Application::build(config, shutdown).await?;
            app.run_until_stopped().await.map_err(StartupError::from)
        },
    )
    .await
}
