//! Serving a settle service: bind first (port clashes fail fast), mount the service with health
//! and reflection behind the trace, concurrency-gate and auth layers, with the configured
//! [`ServerLimits`] (request timeout, HTTP/2 and TCP keepalive, streams per connection), serve until
//! shutdown, then drain.
//!
//! ```text
//! let server = Server::bind(config.listen_addr).await?;        // bind before slow work
//! let server = server.add_service(PaymentIntentServiceServer::new(handler));
//! server.serve(keys, shutdown, grace).await?;
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::ServiceBuilder;

use crate::auth::{ApiKeys, AuthLayer};
use crate::config::ServerLimits;
use crate::limits::ConcurrencyGateLayer;
use crate::trace_layer::{GrpcTraceLayer, KnownMethods};

/// Health service name that only reflects the process (Kubernetes liveness): it never turns
/// NOT_SERVING because a dependency is down, so a database outage does not restart every pod.
pub const LIVENESS_SERVICE: &str = "settle.liveness";

/// A readiness check run every few seconds; the overall health (`""`) follows its answer.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

const READINESS_INTERVAL: Duration = Duration::from_secs(5);

/// Failures starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// The largest request header block accepted (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`): room for
/// every header a client legitimately sends, many times over.
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// A bound listener and the services to serve on it.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    internal_services: Vec<&'static str>,
    health: HealthReporter,
    readiness: Option<ReadinessCheck>,
    limits: ServerLimits,
}

/// Services every server has besides its own: their methods are known to the trace layer too.
const STANDARD_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

impl Server {
    /// Binds `addr` now, so a port clash fails before any slow start-up work.
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        Ok(Server {
            listener,
            local_addr,
            routes,
            service_names: Vec::new(),
            internal_services: Vec::new(),
            health,
            readiness: None,
            limits: ServerLimits::default(),
        })
    }

    /// Serves with `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The health reporter, for services that flip their own status.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
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
        self.routes.add_service(service);
        self.service_names.push(S::NAME);
        self
    }

    /// Mounts a service only settle's own services (the internal key) may call.
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
        self.internal_services.push(S::NAME);
        self.add_service(service)
    }

    /// Makes overall health (and Kubernetes readiness) follow `check`, e.g. a database ping.
    pub fn with_readiness(mut self, check: ReadinessCheck) -> Self {
        self.readiness = Some(check);
        self
    }

    /// Serves until `shutdown` is cancelled, then turns health NOT_SERVING, stops accepting, and
    /// gives in-flight calls up to `grace` to finish.
    pub async fn serve(
        self,
        keys: ApiKeys,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            local_addr,
            mut routes,
            service_names,
            internal_services,
            health,
            readiness,
            limits,
        } = self;

        routes.add_service(reflection(&service_names).build_v1()?);
        routes.add_service(reflection(&service_names).build_v1alpha()?);

        for name in &service_names {
            health.set_service_status(name, ServingStatus::Serving).await;
        }
        health.set_service_status(LIVENESS_SERVICE, ServingStatus::Serving).await;
        if let Some(check) = readiness {
            tokio::spawn(follow_readiness(health.clone(), check, shutdown.clone()));
        }

        let known: Vec<&str> = service_names.iter().copied().chain(STANDARD_SERVICES).collect();
        // Shed before authenticating: an overloaded server should spend nothing on a refused call.
        let layers = ServiceBuilder::new()
            .layer(GrpcTraceLayer::new(KnownMethods::for_services(&known)))
            .layer(ConcurrencyGateLayer::new(limits.max_concurrent_requests))
            .layer(AuthLayer::new(keys, &internal_services));
        let incoming =
            TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(limits.tcp_keepalive));
        tracing::info!(%local_addr, services = ?service_names, "serving");

        let draining = {
            let health = health.clone();
            let shutdown = shutdown.clone();
            let names = service_names.clone();
            async move {
                shutdown.cancelled().await;
                health.set_service_status("", ServingStatus::NotServing).await;
                for name in &names {
                    health.set_service_status(name, ServingStatus::NotServing).await;
                }
                tracing::info!(%local_addr, "stopped accepting; draining in-flight calls");
            }
        };
        // The timeout answers CANCELLED (tonic's mapping) and honours a shorter `grpc-timeout`;
        // a stream's timeout ends when it starts streaming, not after it.
        let serve = tonic::transport::Server::builder()
            .timeout(limits.request_timeout)
            .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
            .max_concurrent_streams(Some(limits.max_concurrent_streams))
            // hyper's 16 KiB default answers a large header block with a bare HTTP 431, which gRPC
            // clients read as UNKNOWN; with room for long keys the auth layer answers instead.
            .http2_max_header_list_size(Some(MAX_HEADER_LIST_BYTES))
            .layer(layers)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, draining);
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => result?,
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(%local_addr, ?grace, "drain deadline passed; closing remaining calls");
            }
        }
        tracing::info!(%local_addr, "server stopped");
        Ok(())
    }
}

/// Reflection lists only what this server serves, though the descriptor set holds every package.
fn reflection(service_names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(settle_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc.ErrorInfo / BadRequest, so tools can decode error details.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection");
    for name in service_names {
        builder = builder.with_service_name(*name);
    }
    builder
}

async fn follow_readiness(health: HealthReporter, check: ReadinessCheck, shutdown: CancellationToken) {
    let mut ready = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(READINESS_INTERVAL) => {}
        }
        let now_ready = check().await;
        if shutdown.is_cancelled() {
            return;
        }
        if now_ready != ready {
            ready = now_ready;
            let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            tracing::warn!(ready, "readiness changed");
            health.set_service_status("", status).await;
        }
    }
}
