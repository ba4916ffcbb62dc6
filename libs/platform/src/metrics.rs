//! OpenTelemetry metrics, exposed in Prometheus' text format on their own port (`/metrics`), so a
//! scrape never competes with the gRPC port. One registry per process: the all-in-one launcher's
//! three services share it and tell themselves apart by labels (`rpc_service`, `service`).
//!
//! What settle records (instrument names as Prometheus renders them):
//! - `rpc_server_duration_milliseconds` (histogram; `rpc_service`, `rpc_method`,
//!   `rpc_grpc_status_code`): rate, errors and latency per method;
//! - `settle_saga_step_duration_milliseconds` (histogram by `kind`, `step`, `outcome`),
//!   `settle_sagas_finished` (by `kind`, `state`), `settle_sagas_stuck` and
//!   `settle_sagas_stuck_age_seconds` (by `kind`: live sagas nobody is driving, measured every 10 s);
//! - `settle_outbox_sequenced` (by `service`): events published; its rate is the event rate;
//! - `settle_consumer_delay_seconds` (histogram by `consumer`): how old events are when a consumer
//!   reads them (event `created` has one-second resolution);
//! - `settle_db_pool_connections` (`state` = in_use | idle, `service`);
//! - `settle_idempotent_replays`; `settle_shed_requests` (refused at the concurrency limit);
//!   `settle_event_streams_refused` (refused at a `StreamEvents` cap).
//!
//! Method labels are bounded: a path the server does not serve is labelled `unknown`
//! (see [`crate::trace_layer::KnownMethods`]).

use std::net::SocketAddr;
use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, ObservableGauge};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio_util::sync::CancellationToken;

struct Registry {
    registry: prometheus::Registry,
    meter: Meter,
    _provider: SdkMeterProvider,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| {
        let registry = prometheus::Registry::new();
        let (provider, meter) =
            match opentelemetry_prometheus::exporter().with_registry(registry.clone()).build() {
                Ok(exporter) => {
                    let provider = SdkMeterProvider::builder().with_reader(exporter).build();
                    let meter = provider.meter("settle");
                    (provider, meter)
                }
                Err(error) => {
                    // Without an exporter the instruments still work; they are just not exported.
                    tracing::warn!(%error, "metrics exporter unavailable");
                    let provider = SdkMeterProvider::builder().build();
                    let meter = provider.meter("settle");
                    (provider, meter)
                }
            };
        Registry { registry, meter, _provider: provider }
    })
}

/// The meter every settle instrument is created from.
pub fn meter() -> &'static Meter {
    &registry().meter
}

/// The current metrics in Prometheus' text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry().registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// RPC latency, recorded by the per-RPC layer.
pub fn rpc_duration() -> &'static Histogram<f64> {
    static H: OnceLock<Histogram<f64>> = OnceLock::new();
    H.get_or_init(|| {
        meter()
            .f64_histogram("rpc.server.duration")
            .with_unit("ms")
            .with_description("Duration of inbound RPCs, by service, method and gRPC status code")
            .with_boundaries(vec![
                0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ])
            .build()
    })
}

/// How old an event (`created`, unix seconds) is as the consumer `consumer` reads it.
pub fn consumer_delay(consumer: &'static str, created: i64) {
    static H: OnceLock<Histogram<f64>> = OnceLock::new();
    let histogram = H.get_or_init(|| {
        meter()
            .f64_histogram("settle.consumer.delay")
            .with_unit("s")
            .with_description("Age of events when a consumer reads them")
            .with_boundaries(vec![1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0])
            .build()
    });
    let age = (crate::time::now_unix() - created).max(0) as f64;
    histogram.record(age, &[KeyValue::new("consumer", consumer)]);
}

/// Idempotent requests answered from a stored response.
pub fn idempotent_replays() -> &'static Counter<u64> {
    static C: OnceLock<Counter<u64>> = OnceLock::new();
    C.get_or_init(|| {
        meter()
            .u64_counter("settle.idempotent_replays")
            .with_description("Requests answered from a stored idempotent response")
            .build()
    })
}

/// Requests refused at once because the server was at its concurrency limit.
pub fn shed_requests() -> &'static Counter<u64> {
    static C: OnceLock<Counter<u64>> = OnceLock::new();
    C.get_or_init(|| {
        meter()
            .u64_counter("settle.shed_requests")
            .with_description("Requests refused RESOURCE_EXHAUSTED at the concurrency limit")
            .build()
    })
}

/// `StreamEvents` calls refused because a stream cap was reached.
pub fn event_streams_refused() -> &'static Counter<u64> {
    static C: OnceLock<Counter<u64>> = OnceLock::new();
    C.get_or_init(|| {
        meter()
            .u64_counter("settle.event_streams_refused")
            .with_description("StreamEvents calls refused RESOURCE_EXHAUSTED at a stream cap")
            .build()
    })
}

/// What the per-service gauges read: the service's pool and its outbox.
struct Watched {
    db: crate::db::Db,
    hub: crate::outbox::EventHub,
}

static WATCHED: OnceLock<std::sync::Mutex<std::collections::BTreeMap<&'static str, Watched>>> =
    OnceLock::new();

fn watched() -> &'static std::sync::Mutex<std::collections::BTreeMap<&'static str, Watched>> {
    WATCHED.get_or_init(Default::default)
}

/// Adds the gauges of the service `name` (its pool's connections, its outbox's highest sequence
/// number). A later call for the same name replaces the earlier one.
pub fn watch_service(name: &'static str, db: crate::db::Db, hub: crate::outbox::EventHub) {
    static GAUGES: OnceLock<(ObservableGauge<i64>, ObservableGauge<i64>)> = OnceLock::new();
    GAUGES.get_or_init(|| {
        let pool = meter()
            .i64_observable_gauge("settle.db.pool.connections")
            .with_description("Database connections of a service's pool, by state (in_use, idle)")
            .with_callback(|observer| {
                let services = watched().lock().unwrap_or_else(|p| p.into_inner());
                for (service, watched) in services.iter() {
                    let pool = watched.db.pool();
                    let idle = i64::try_from(pool.num_idle()).unwrap_or(0);
                    let size = i64::from(pool.size());
                    observer.observe(
                        (size - idle).max(0),
                        &[KeyValue::new("service", *service), KeyValue::new("state", "in_use")],
                    );
                    observer
                        .observe(idle, &[KeyValue::new("service", *service), KeyValue::new("state", "idle")]);
                }
            })
            .build();
        let sequenced = meter()
            .i64_observable_gauge("settle.outbox.sequenced")
            .with_description(
                "Highest sequence number a service's outbox has given an event (events published)",
            )
            .with_callback(|observer| {
                let services = watched().lock().unwrap_or_else(|p| p.into_inner());
                for (service, watched) in services.iter() {
                    observer.observe(watched.hub.sequenced(), &[KeyValue::new("service", *service)]);
                }
            })
            .build();
        (pool, sequenced)
    });
    watched().lock().unwrap_or_else(|p| p.into_inner()).insert(name, Watched { db, hub });
}

/// Serves `/metrics` on `addr` until `shutdown`; returns the bound address.
pub async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving metrics at /metrics");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            tokio::spawn(async move {
                let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                    if request.uri().path() == "/metrics" {
                        http::Response::builder()
                            .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(render())))
                    } else {
                        http::Response::builder()
                            .status(http::StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found\n")))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_render_in_prometheus_text() {
        rpc_duration().record(3.0, &[opentelemetry::KeyValue::new("rpc.method", "Probe")]);
        let text = render();
        assert!(text.contains("rpc_server_duration"), "{text}");
        assert!(text.contains("rpc_method=\"Probe\""), "{text}");
    }
}
