//! The machine's ceilings, measured in the same run as the workload: a tiny gRPC service of the
//! tool's own (`settle.load.v1.Ceiling`, messages written by hand with prost) that does nothing
//! (`Noop`), runs `SELECT 1` on a pool (`SelectOne`), or runs one transaction shaped like the attach
//! saga's apply step (`AttachShaped`: lock a row FOR UPDATE, insert a row, update the locked row,
//! commit). It uses the same database driver and pool as the services (the platform's `Db`), runs on
//! its own two-thread runtime as a service process would, and is called through the same kind of
//! HTTP/2 channel, concurrency and metadata as the workload, so every ratio compares like with like.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use settle_platform::db::{Backend, Db, PoolSettings};
use settle_platform::ids::IdPrefix;
use tonic::body::Body;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The ceiling service's full name (the route prefix).
const SERVICE: &str = "settle.load.v1.Ceiling";
const NOOP: &str = "/settle.load.v1.Ceiling/Noop";
const SELECT_ONE: &str = "/settle.load.v1.Ceiling/SelectOne";
const ATTACH_SHAPED: &str = "/settle.load.v1.Ceiling/AttachShaped";

/// Rows the attach-shaped transaction locks, one per request in turn, so concurrent requests lock
/// different rows (the uncontended case, as in the workload).
pub const ROWS: u32 = 4096;
/// Size of the locked row's document, about an invoice's stored document.
const ROW_DOCUMENT_BYTES: usize = 768;
/// Size of the inserted row's document, about an invoice payment's.
const LOG_DOCUMENT_BYTES: usize = 384;

/// `AttachShaped`'s request: which row to lock.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ShapedRequest {
    #[prost(uint32, tag = "1")]
    pub row: u32,
}

/// The ceiling service, serving on its own runtime until dropped.
pub struct CeilingServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl CeilingServer {
    /// Creates the tables on `database_url`, then serves on a loopback port.
    pub async fn start(database_url: &str, max_connections: u32) -> anyhow::Result<CeilingServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ceiling")
            .enable_all()
            .build()?;
        let url = database_url.to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let listener = listener.into_std()?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let setup = async {
                let db = Db::connect(&url, &PoolSettings { max_connections, ..Default::default() }).await?;
                create_tables(&db).await?;
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                anyhow::Ok((db, listener))
            };
            let (db, listener) = match setup.await {
                Ok(ready) => ready,
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            // Accepted as the services accept (platform server.rs): Nagle off.
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let _ = tonic::transport::Server::builder()
                .add_service(CeilingService { db })
                .serve_with_incoming(incoming)
                .await;
        });
        ready_rx.await??;
        Ok(CeilingServer { addr, runtime: Some(runtime) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for CeilingServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropped from async code: a blocking shutdown would panic there.
            runtime.shutdown_background();
        }
    }
}

async fn create_tables(db: &Db) -> anyhow::Result<()> {
    let backend = db.backend();
    let blob = backend.pick("BYTEA", "BLOB");
    let statements = [
        format!(
            "CREATE TABLE ceiling_rows (id BIGINT PRIMARY KEY, amount_paid BIGINT NOT NULL, document {blob} NOT NULL)"
        ),
        format!(
            "CREATE TABLE ceiling_log (id TEXT PRIMARY KEY, row_id BIGINT NOT NULL, amount BIGINT NOT NULL, \
             created BIGINT NOT NULL, document {blob} NOT NULL)"
        ),
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(db.pool()).await?;
    }
    let mut tx = db.begin().await?;
    for id in 0..i64::from(ROWS) {
        sqlx::query("INSERT INTO ceiling_rows (id, amount_paid, document) VALUES ($1, 0, $2)")
            .bind(id)
            .bind(vec![7u8; ROW_DOCUMENT_BYTES])
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    if backend == Backend::Postgres {
        sqlx::query("ANALYZE ceiling_rows").execute(db.pool()).await?;
    }
    Ok(())
}

async fn select_one(db: &Db) -> Result<(), Status> {
    sqlx::query("SELECT 1").fetch_one(db.pool()).await.map_err(internal)?;
    Ok(())
}

/// The attach apply step's shape: one write transaction that locks the row it changes.
async fn attach_shaped(db: &Db, row: u32) -> Result<(), Status> {
    let id = i64::from(row % ROWS);
    let lock = db.backend().pick(
        "SELECT amount_paid, document FROM ceiling_rows WHERE id = $1 FOR UPDATE",
        "SELECT amount_paid, document FROM ceiling_rows WHERE id = $1",
    );
    let mut tx = db.begin().await.map_err(internal)?;
    let (amount_paid, mut document): (i64, Vec<u8>) =
        sqlx::query_as(lock).bind(id).fetch_one(&mut *tx).await.map_err(internal)?;
    sqlx::query(
        "INSERT INTO ceiling_log (id, row_id, amount, created, document) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(IdPrefix::InvoicePayment.generate())
    .bind(id)
    .bind(100_i64)
    .bind(0_i64)
    .bind(vec![5u8; LOG_DOCUMENT_BYTES])
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    // Rewrite the document as a service rewrites the invoice it changed.
    if let Some(first) = document.first_mut() {
        *first = first.wrapping_add(1);
    }
    sqlx::query("UPDATE ceiling_rows SET amount_paid = $2, document = $3 WHERE id = $1")
        .bind(id)
        .bind(amount_paid + 100)
        .bind(document)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)
}

fn internal(error: sqlx::Error) -> Status {
    Status::internal(error.to_string())
}

/// The service, routed by path as generated servers are.
#[derive(Clone)]
struct CeilingService {
    db: Db,
}

impl tonic::server::NamedService for CeilingService {
    const NAME: &'static str = SERVICE;
}

impl tower::Service<http::Request<Body>> for CeilingService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let db = self.db.clone();
        Box::pin(async move {
            let response = match request.uri().path() {
                NOOP => {
                    let handler = tower::service_fn(|_: Request<()>| async { Ok(Response::new(())) });
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default()).unary(handler, request).await
                }
                SELECT_ONE => {
                    let handler = tower::service_fn(|_: Request<()>| {
                        let db = db.clone();
                        async move { select_one(&db).await.map(Response::new) }
                    });
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default()).unary(handler, request).await
                }
                ATTACH_SHAPED => {
                    let handler = tower::service_fn(|shaped: Request<ShapedRequest>| {
                        let db = db.clone();
                        async move { attach_shaped(&db, shaped.into_inner().row).await.map(Response::new) }
                    });
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default()).unary(handler, request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

/// A client of the ceiling service, sending the same metadata as the workload's requests.
#[derive(Clone)]
pub struct CeilingClient {
    grpc: tonic::client::Grpc<Channel>,
    authorization: AsciiMetadataValue,
}

impl CeilingClient {
    pub fn new(channel: Channel, api_key: &str) -> anyhow::Result<CeilingClient> {
        Ok(CeilingClient {
            grpc: tonic::client::Grpc::new(channel),
            authorization: format!("Bearer {api_key}").parse()?,
        })
    }

    pub async fn noop(&mut self) -> Result<(), Status> {
        self.call::<(), ()>(NOOP, ()).await
    }

    pub async fn select_one(&mut self) -> Result<(), Status> {
        self.call::<(), ()>(SELECT_ONE, ()).await
    }

    pub async fn attach_shaped(&mut self, row: u32) -> Result<(), Status> {
        self.call::<ShapedRequest, ()>(ATTACH_SHAPED, ShapedRequest { row }).await
    }

    async fn call<Req, Resp>(&mut self, path: &'static str, message: Req) -> Result<(), Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let mut request = Request::new(message);
        request.metadata_mut().insert("authorization", self.authorization.clone());
        request.metadata_mut().insert("baggage", MetadataValue::from_static("synthetic_request=true"));
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        self.grpc.unary(request, PathAndQuery::from_static(path), codec).await.map(drop)
    }
}
