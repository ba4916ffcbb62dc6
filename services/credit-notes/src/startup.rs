//! Building and running the credit-notes service; `main` and the tests go through the same path.

use std::net::SocketAddr;
use std::sync::Arc;

use settle_platform::config::ConfigError;
use settle_platform::server::ServerError;
use settle_platform::startup::{Foundation, StartupError};
use settle_proto::common::v1::saga_service_server::SagaServiceServer;
use settle_proto::settle::creditnotes::v1::credit_note_service_server::CreditNoteServiceServer;
use settle_saga::service::SagaLogService;
use settle_saga::{RunnerSettings, SagaKind, SagaRunner};
use tokio_util::sync::CancellationToken;

use crate::config::CreditNotesConfig;
use crate::grpc::{AppState, CreditNotesApi};
use crate::peers::Peers;
use crate::sagas::{Context, issue::IssueSaga, void::VoidSaga};

/// A built credit-notes service, bound and migrated, ready to serve.
pub struct Application {
    foundation: Foundation,
}

impl Application {
    /// Binds the listener, connects and migrates the database, starts the saga recovery loop, and
    /// mounts the services.
    pub async fn build(config: CreditNotesConfig, shutdown: CancellationToken) -> Result<Self, StartupError> {
        let foundation = Foundation::start(
            "credit-notes",
            &config.platform,
            &[&crate::MIGRATIONS, &settle_saga::MIGRATIONS],
            shutdown.clone(),
        )
        .await?;
        let internal_key =
            foundation.keys().internal_key().ok_or(ConfigError::MissingInternalKey)?.to_owned();
        let peers = Peers::connect(&config.peers.invoices_url, &config.peers.payments_url, &internal_key)?;
        let db = foundation.db().clone();
        let sagas = Context::new(db.clone(), foundation.hub().clone(), peers.clone());
        let kinds: Vec<Arc<dyn SagaKind>> =
            vec![Arc::new(IssueSaga { ctx: sagas.clone() }), Arc::new(VoidSaga { ctx: sagas.clone() })];
        let runner = SagaRunner::new(
            db.clone(),
            &config.platform.instance_id,
            RunnerSettings::from(&config.sagas),
            kinds,
        );
        runner.spawn_background(shutdown);

        let state = AppState { db: db.clone(), hub: foundation.hub().clone(), peers, runner };
        let foundation = foundation
            .add_service(settle_platform::bounded_server!(CreditNoteServiceServer::new(CreditNotesApi::new(
                state
            ))))
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
