//! Building and running the invoices service; `main` and the tests go through the same path.

use std::net::SocketAddr;
use std::sync::Arc;

use settle_platform::config::ConfigError;
use settle_platform::server::ServerError;
use settle_platform::startup::{Foundation, StartupError};
use settle_proto::common::v1::saga_service_server::SagaServiceServer;
use settle_proto::settle::invoices::v1::credit_note_ledger_service_server::CreditNoteLedgerServiceServer;
use settle_proto::settle::invoices::v1::customer_balance_service_server::CustomerBalanceServiceServer;
use settle_proto::settle::invoices::v1::event_quarantine_service_server::EventQuarantineServiceServer;
use settle_proto::settle::invoices::v1::invoice_item_service_server::InvoiceItemServiceServer;
use settle_proto::settle::invoices::v1::invoice_payment_service_server::InvoicePaymentServiceServer;
use settle_proto::settle::invoices::v1::invoice_service_server::InvoiceServiceServer;
use settle_saga::service::SagaLogService;
use settle_saga::{RunnerSettings, SagaKind, SagaRunner};
use tokio_util::sync::CancellationToken;

use crate::applications::{self, attach::AttachSaga, detach::DetachSaga, pay::PaySaga, reapply::ReapplySaga};
use crate::config::InvoicesConfig;
use crate::grpc::CreditLedgerApi;
use crate::grpc::{AppState, InvoicePaymentsApi};
use crate::grpc::{CustomerBalanceApi, EventQuarantineApi, InvoiceItemsApi, InvoicesApi};
use crate::peers::Payments;

/// A built invoices service, bound and migrated, ready to serve.
pub struct Application {
    foundation: Foundation,
}

impl Application {
    /// Binds the listener, connects and migrates the database, starts the saga recovery loop and
    /// the payments event consumer, and mounts the services.
    pub async fn build(config: InvoicesConfig, shutdown: CancellationToken) -> Result<Self, StartupError> {
        let foundation = Foundation::start(
            "invoices",
            &config.platform,
            &[&crate::MIGRATIONS, &settle_saga::MIGRATIONS],
            shutdown.clone(),
        )
        .await?;
        let internal_key =
            foundation.keys().internal_key().ok_or(ConfigError::MissingInternalKey)?.to_owned();
        let payments = Payments::connect(&config.peers.payments_url, &internal_key)?;
        let db = foundation.db().clone();
        let ctx = applications::Context::new(db.clone(), foundation.hub().clone(), payments);
        let kinds: Vec<Arc<dyn SagaKind>> = vec![
            Arc::new(AttachSaga { ctx: ctx.clone() }),
            Arc::new(DetachSaga { ctx: ctx.clone() }),
            Arc::new(ReapplySaga { ctx: ctx.clone() }),
            Arc::new(PaySaga { ctx: ctx.clone() }),
        ];
        let runner = SagaRunner::new(
            db.clone(),
            &config.platform.instance_id,
            RunnerSettings::from(&config.sagas),
            kinds,
        );
        runner.spawn_background(shutdown.clone());
        tokio::spawn(crate::consumer::run(ctx.clone(), runner.clone(), shutdown));

        let state = AppState { db: db.clone(), hub: foundation.hub().clone(), applications: ctx, runner };
        let foundation = foundation
            .add_service(settle_platform::bounded_server!(InvoiceServiceServer::new(InvoicesApi::new(
                state.clone()
            ))))
            .add_service(settle_platform::bounded_server!(InvoiceItemServiceServer::new(
                InvoiceItemsApi::new(state.clone())
            )))
            .add_service(settle_platform::bounded_server!(CustomerBalanceServiceServer::new(
                CustomerBalanceApi::new(state.clone())
            )))
            // Saga-facing: only the credit-notes service (the internal key) may call it.
            .add_internal_service(settle_platform::bounded_server!(CreditNoteLedgerServiceServer::new(
                CreditLedgerApi::new(state.clone())
            )))
            .add_service(settle_platform::bounded_server!(InvoicePaymentServiceServer::new(
                InvoicePaymentsApi::new(state.clone())
            )))
            .add_service(settle_platform::bounded_server!(EventQuarantineServiceServer::new(
                EventQuarantineApi::new(state)
            )))
            .add_service(settle_platform::bounded_server!(SagaServiceServer::new(SagaLogService::new(db))));
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
