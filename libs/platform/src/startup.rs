//! What every service does at start, in one place: bind the listener first (a port clash fails
//! fast), resolve the keys, connect and migrate the database, start the outbox sequencer and the
//! housekeeping task, mount `EventService`, and after shutdown close the pool.
//!
//! ```text
//! let foundation = Foundation::start("payments", &config, &MIGRATIONS, shutdown).await?;
//! let foundation = foundation.add_service(PaymentIntentServiceServer::new(api));
//! foundation.serve().await?;
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use settle_proto::events::v1::event_service_server::EventServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

use crate::auth::ApiKeys;
use crate::config::{ConfigError, PlatformConfig};
use crate::db::{Db, DbError, Migrations};
use crate::events::EventsService;
use crate::outbox::{self, EventHub};
use crate::server::{Server, ServerError};

/// How often expired idempotency keys and events are purged.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(600);

/// A failure before the service could serve.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Peer(#[from] crate::client::PeerError),
}

/// A service's shared machinery, ready to have the service's own gRPC services added.
pub struct Foundation {
    name: &'static str,
    server: Server,
    keys: ApiKeys,
    db: Db,
    hub: EventHub,
    shutdown: CancellationToken,
    grace: Duration,
}

impl Foundation {
    /// Binds, connects, migrates and starts the background tasks of the service `name`.
    pub async fn start(
        name: &'static str,
        config: &PlatformConfig,
        migrations: &[&Migrations],
        shutdown: CancellationToken,
    ) -> Result<Foundation, StartupError> {
        let server = Server::bind(config.listen_addr).await?.with_limits(config.limits());
        let keys = config.api_keys()?;
        let db = Db::connect(config.database_url.expose_secret(), &config.pool_settings()).await?;
        db.migrate(migrations).await?;
        tracing::info!(service = name, backend = db.backend().name(), "database ready");

        let hub = EventHub::new();
        tokio::spawn(outbox::run_sequencer(db.clone(), hub.clone(), shutdown.clone()));
        tokio::spawn(housekeeping(db.clone(), shutdown.clone()));
        crate::metrics::watch_service(name, db.clone(), hub.clone());

        let readiness_db = db.clone();
        let server = server
            .with_readiness(Arc::new(move || {
                let db = readiness_db.clone();
                Box::pin(async move { db.ping().await.is_ok() })
            }))
            .add_service(crate::bounded_server!(EventServiceServer::new(
                EventsService::new(db.clone(), hub.clone(), shutdown.clone())
                    .with_stream_caps(&config.limits())
            )));
        Ok(Foundation { name, server, keys, db, hub, shutdown, grace: config.shutdown_grace() })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn hub(&self) -> &EventHub {
        &self.hub
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn keys(&self) -> &ApiKeys {
        &self.keys
    }

    /// Mounts a service any authenticated caller may use.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.server = self.server.add_service(service);
        self
    }

    /// Mounts a service only settle's own services may call.
    pub fn add_internal_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.server = self.server.add_internal_service(service);
        self
    }

    /// Serves until shutdown, drains, then closes the database pool.
    pub async fn serve(self) -> Result<(), ServerError> {
        let result = self.server.serve(self.keys, self.shutdown.clone(), self.grace).await;
        self.shutdown.cancel();
        self.db.close().await;
        tracing::info!(service = self.name, "stopped");
        result
    }
}

async fn housekeeping(db: Db, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(HOUSEKEEPING_INTERVAL) => {}
        }
        match crate::idempotency::purge_expired(&db).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "expired idempotency keys removed"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not purge idempotency keys"),
        }
        match outbox::purge_expired(&db).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "events past retention removed"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not purge old events"),
        }
    }
}
