//! The server limits over real gRPC: a slow handler hits the request timeout, a flood past the
//! concurrency limit is refused RESOURCE_EXHAUSTED at once while health still answers, a request
//! over 1 MiB is refused with a status, `StreamEvents` caps, a type filter that matches nothing does
//! not re-scan the outbox, and method labels stay bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use secrecy::SecretString;
use settle_platform::auth::{DEV_ACCOUNT, DEV_API_KEY};
use settle_platform::backend_tests;
use settle_platform::config::{PlatformConfig, PlatformDefaults};
use settle_platform::db::{Db, Migrations};
use settle_platform::events::EventsService;
use settle_platform::outbox::{self, EventHub, EventOrigin};
use settle_platform::startup::Foundation;
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1 as ev;
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::events::v1::event_service_server::EventServiceServer;
use sqlx::migrate::Migrator;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

static TEST_POSTGRES: Migrator = sqlx::migrate!("tests/migrations/postgres");
static TEST_SQLITE: Migrator = sqlx::migrate!("tests/migrations/sqlite");
static MIGRATIONS: Migrations = Migrations::new("platform-tests", &TEST_POSTGRES, &TEST_SQLITE);

const WAIT: &str = "/settle.test.v1.SlowService/Wait";

/// A handwritten gRPC service whose `Wait` method holds until released (or forever).
#[derive(Clone)]
struct SlowService {
    entered: Arc<Semaphore>,
    release: Arc<Notify>,
}

impl NamedService for SlowService {
    const NAME: &'static str = "settle.test.v1.SlowService";
}

struct Wait(SlowService);

impl tonic::server::UnaryService<()> for Wait {
    type Response = ();
    type Future = BoxFuture<'static, Result<Response<()>, Status>>;

    fn call(&mut self, _request: Request<()>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            service.entered.add_permits(1);
            service.release.notified().await;
            Ok(Response::new(()))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for SlowService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Wait(service), request).await)
        })
    }
}

fn config(database: &TestDatabase) -> PlatformConfig {
    settle_platform::telemetry::init_for_tests();
    PlatformConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: SecretString::from(database.url().to_owned()),
        development: true,
        ..PlatformConfig::from_defaults(PlatformDefaults::for_service("platform-tests", 0)).unwrap()
    }
}

struct Running {
    addr: SocketAddr,
    slow: SlowService,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.slow.release.notify_waiters();
        self.shutdown.cancel();
    }
}

fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy()
}

/// Calls `Wait` on a connection of its own.
async fn call_wait(addr: SocketAddr, timeout: Option<Duration>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel(addr));
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = authorized(());
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    let path = http::uri::PathAndQuery::from_static(WAIT);
    grpc.unary(request, path, tonic_prost::ProstCodec::<(), ()>::default()).await.map(Response::into_inner)
}

impl Running {
    fn channel(&self) -> Channel {
        channel(self.addr)
    }

    async fn wait(&self, timeout: Option<Duration>) -> Result<(), Status> {
        call_wait(self.addr, timeout).await
    }
}

fn authorized<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {DEV_API_KEY}").parse().unwrap());
    request
}

async fn start(config: PlatformConfig) -> Running {
    let shutdown = CancellationToken::new();
    let foundation =
        Foundation::start("platform-tests", &config, &[&MIGRATIONS], shutdown.clone()).await.unwrap();
    let slow = SlowService { entered: Arc::new(Semaphore::new(0)), release: Arc::new(Notify::new()) };
    let foundation = foundation.add_service(slow.clone());
    let addr = foundation.local_addr();
    tokio::spawn(foundation.serve());
    Running { addr, slow, shutdown }
}

async fn healthy(running: &Running) -> bool {
    let mut health = HealthClient::new(running.channel());
    let answer = health.check(HealthCheckRequest { service: String::new() }).await;
    answer.is_ok_and(|r| r.into_inner().status == 1)
}

async fn append(db: &Db, account: &str, kind: &str, count: usize) {
    let origin =
        EventOrigin { scope: settle_platform::Scope::test(account), request_id: None, idempotency_key: None };
    let mut tx = db.begin().await.unwrap();
    for i in 0..count {
        let object = format!("wid_{i}");
        let data = ev::GetEventRequest { id: "x".repeat(10) };
        outbox::append(&mut tx, db.backend(), &origin, kind, &object, &data, None).await.unwrap();
    }
    tx.commit().await.unwrap();
    while outbox::sequence_batch(db).await.unwrap().is_some() {}
}

backend_tests! {
    a_slow_handler_hits_the_request_timeout => |database: TestDatabase| async move {
        let running = start(PlatformConfig { request_timeout_millis: 300, ..config(&database) }).await;
        let started = Instant::now();
        let status = running.wait(None).await.unwrap_err();
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "answered, not hung");

        // The client's own (shorter) deadline is honoured too: DEADLINE_EXCEEDED or CANCELLED.
        let running = start(config(&database)).await;
        let status = running.wait(Some(Duration::from_millis(200))).await.unwrap_err();
        assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
        assert!(healthy(&running).await);
    };

    a_flood_past_the_concurrency_limit_is_shed_at_once_and_probes_still_answer => |database: TestDatabase| async move {
        let running = start(PlatformConfig { max_concurrent_requests: 2, ..config(&database) }).await;
        let holders: Vec<_> = (0..2).map(|_| tokio::spawn(call_wait(running.addr, None))).collect();
        // Both calls are inside the handler: the server is at its limit.
        let _entered = running.slow.entered.acquire_many(2).await.unwrap();

        let started = Instant::now();
        let mut shed = 0;
        for _ in 0..20 {
            let status = running.wait(None).await.unwrap_err();
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert_eq!(status_reason(&status), "rate_limit");
            shed += 1;
        }
        assert_eq!(shed, 20);
        assert!(started.elapsed() < Duration::from_secs(20), "refused at once, not queued");
        assert!(healthy(&running).await, "health answers while saturated");

        running.slow.release.notify_waiters();
        for holder in holders {
            // notify_waiters wakes only who already waits: both holders do (they were counted in).
            holder.await.unwrap().unwrap();
        }
    };

    a_request_over_one_mebibyte_is_refused_with_a_status => |database: TestDatabase| async move {
        let running = start(config(&database)).await;
        let mut events = EventServiceClient::new(running.channel()).max_encoding_message_size(64 * 1024 * 1024);
        let huge = ev::GetEventRequest { id: "x".repeat(settle_platform::limits::MAX_REQUEST_BYTES + 1) };
        let status = events.get_event(authorized(huge)).await.unwrap_err();
        assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
        // The connection and the server are fine afterwards.
        let missing = events.get_event(authorized(ev::GetEventRequest { id: "evt_nope".into() })).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    };

    event_streams_are_capped_per_account_and_in_all => |database: TestDatabase| async move {
        let running = start(PlatformConfig {
            event_streams_per_account: 1,
            event_streams_total: 2,
            api_keys: Some(SecretString::from(format!("{DEV_API_KEY}={DEV_ACCOUNT},sk_test_second=acct_second,sk_test_third=acct_third"))),
            internal_key: Some(SecretString::from("sk_internal_limits".to_owned())),
            development: false,
            ..config(&database)
        }).await;
        let mut events = EventServiceClient::new(running.channel());
        let open = |key: &'static str| {
            let mut events = events.clone();
            async move {
                let mut request = Request::new(ev::StreamEventsRequest::default());
                request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
                events.stream_events(request).await.map(Response::into_inner)
            }
        };
        let first = open(DEV_API_KEY).await.unwrap();
        let again = open(DEV_API_KEY).await.unwrap_err();
        assert_eq!((again.code(), status_reason(&again)), (Code::ResourceExhausted, "rate_limit".to_owned()));
        let _second = open("sk_test_second").await.unwrap();
        let third = open("sk_test_third").await.unwrap_err();
        assert_eq!(third.code(), Code::ResourceExhausted, "global cap");

        // Closing a stream gives its place back (once the server notices the client left).
        drop(first);
        let mut reopened = None;
        for _ in 0..100 {
            match open(DEV_API_KEY).await {
                Ok(stream) => { reopened = Some(stream); break; }
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(reopened.is_some(), "the closed stream's place is reused");
        let _ = events.list_events(authorized(ev::ListEventsRequest::default())).await.unwrap();
    };

    a_type_filter_that_matches_nothing_moves_the_stream_on_without_rescanning => |database: TestDatabase| async move {
        let db = database.connect(&[&MIGRATIONS]).await.unwrap();
        let shutdown = CancellationToken::new();
        let hub = EventHub::new();
        let service = EventsService::new(db.clone(), hub, shutdown.clone());
        let server = settle_platform::server::Server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = server.local_addr();
        let server = server.add_service(settle_platform::bounded_server!(EventServiceServer::new(service.clone())));
        let keys = settle_platform::auth::ApiKeys::parse(&format!("{DEV_API_KEY}={DEV_ACCOUNT}"), Some("sk_internal_x1")).unwrap();
        tokio::spawn(server.serve(keys, shutdown.clone(), Duration::from_secs(1)));

        // 250 events the filter does not match: more than two batches.
        append(&db, DEV_ACCOUNT, "widget.updated", 250).await;
        let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        let mut stream = EventServiceClient::new(channel)
            .stream_events(authorized(ev::StreamEventsRequest { types: vec!["widget.paid".into()], ..Default::default() }))
            .await
            .unwrap()
            .into_inner();
        // One matching event after them: the stream reaches it only by moving past the others.
        append(&db, DEV_ACCOUNT, "widget.paid", 1).await;
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(message.event.unwrap().r#type, "widget.paid");
        assert_eq!(message.cursor, "251");
        // The filter goes to SQL and each read covers everything numbered so far: at most one read
        // before the matching event was numbered and one after (the poll between them reads
        // nothing, as nothing new was numbered).
        let scans = service.stream_scans();
        assert!((1..=2).contains(&scans), "{scans} reads");
        // Idle polls read nothing either.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(service.stream_scans(), scans);
        assert_eq!(service.open_streams(), 1);
        shutdown.cancel();
    };

    unknown_paths_are_labelled_unknown_in_metrics => |database: TestDatabase| async move {
        let running = start(config(&database)).await;
        let mut grpc = tonic::client::Grpc::new(running.channel());
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/random.Service9f3a/Method77b");
        let status = grpc
            .unary(authorized(()), path, tonic_prost::ProstCodec::<(), ()>::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
        let text = settle_platform::metrics::render();
        assert!(!text.contains("Service9f3a") && !text.contains("Method77b"), "{text}");
        assert!(text.contains("rpc_method=\"unknown\""), "{text}");
    };
}

fn status_reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}
