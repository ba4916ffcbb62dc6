//! Building and running the payments service; `main` and the tests go through the same path.

use std::net::SocketAddr;

use settle_platform::config::PlatformConfig;
use settle_platform::server::ServerError;
use settle_platform::startup::{Foundation, StartupError};
use settle_proto::settle::payments::v1::payment_attachment_service_server::PaymentAttachmentServiceServer;
use settle_proto::settle::payments::v1::payment_intent_service_server::PaymentIntentServiceServer;
use settle_proto::settle::payments::v1::payment_record_service_server::PaymentRecordServiceServer;
use settle_proto::settle::payments::v1::refund_claim_service_server::RefundClaimServiceServer;
use settle_proto::settle::payments::v1::refund_service_server::RefundServiceServer;
use settle_proto::settle::payments::v1::test_helper_service_server::TestHelperServiceServer;
use tokio_util::sync::CancellationToken;

use crate::grpc::RefundClaimsApi;
use crate::grpc::{
    AppState, AttachmentsApi, PaymentIntentsApi, PaymentRecordsApi, RefundsApi, TestHelpersApi,
};

/// A built payments service, bound and migrated, ready to serve.
pub struct Application {
    foundation: Foundation,
}

impl Application {
    /// Binds the listener, connects and migrates the database, and mounts the services.
    pub async fn build(config: PlatformConfig, shutdown: CancellationToken) -> Result<Self, StartupError> {
        let foundation = Foundation::start("payments", &config, &[&crate::MIGRATIONS], shutdown).await?;
        let state = AppState::new(foundation.db().clone(), foundation.hub().clone());
        let foundation = foundation
            .add_service(settle_platform::bounded_server!(PaymentIntentServiceServer::new(
                PaymentIntentsApi::new(state.clone())
            )))
            .add_service(settle_platform::bounded_server!(PaymentRecordServiceServer::new(
                PaymentRecordsApi::new(state.clone())
            )))
            .add_service(settle_platform::bounded_server!(RefundServiceServer::new(RefundsApi::new(
                state.clone()
            ))))
            .add_service(settle_platform::bounded_server!(TestHelperServiceServer::new(TestHelpersApi::new(
                state.clone()
            ))))
            // Saga-facing: only settle's own services (the internal key) may call it.
            .add_internal_service(settle_platform::bounded_server!(PaymentAttachmentServiceServer::new(
                AttachmentsApi::new(state.clone())
            )))
            .add_internal_service(settle_platform::bounded_server!(RefundClaimServiceServer::new(
                RefundClaimsApi::new(state)
            )));
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
