//! Building and running the invoices service; `main` and the tests go through the same path.

use std::net::SocketAddr;

use settle_platform::server::ServerError;
use settle_platform::startup::{Foundation, StartupError};
use settle_proto::settle::invoices::v1::customer_balance_service_server::CustomerBalanceServiceServer;
use settle_proto::settle::invoices::v1::invoice_item_service_server::InvoiceItemServiceServer;
use settle_proto::settle::invoices::v1::invoice_payment_service_server::InvoicePaymentServiceServer;
use settle_proto::settle::invoices::v1::invoice_service_server::InvoiceServiceServer;
use tokio_util::sync::CancellationToken;

use crate::config::InvoicesConfig;
use crate::grpc::{AppState, InvoicePaymentsApi};
use crate::grpc::{CustomerBalanceApi, InvoiceItemsApi, InvoicesApi};

/// A built invoices service, bound and migrated, ready to serve.
pub struct Application {
    foundation: Foundation,
}

impl Application {
    /// Binds the listener, connects and migrates the database, and mounts the services.
    pub async fn build(config: InvoicesConfig, shutdown: CancellationToken) -> Result<Self, StartupError> {
        let foundation =
            Foundation::start("invoices", &config.platform, &[&crate::MIGRATIONS], shutdown).await?;
        let state = AppState { db: foundation.db().clone(), hub: foundation.hub().clone() };
        let foundation = foundation
            .add_service(InvoiceServiceServer::new(InvoicesApi::new(state.clone())))
            .add_service(InvoiceItemServiceServer::new(InvoiceItemsApi::new(state.clone())))
            .add_service(CustomerBalanceServiceServer::new(CustomerBalanceApi::new(state.clone())));
        let foundation =
            foundation.add_service(InvoicePaymentServiceServer::new(InvoicePaymentsApi::new(state)));
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
