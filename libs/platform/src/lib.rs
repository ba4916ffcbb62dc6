//! What every settle service binary shares, used in the same few lines by each:
//!
//! - [`config`]: environment configuration with working defaults;
//! - [`telemetry`] and [`trace_layer`]: logs, OpenTelemetry traces, W3C propagation, a span per RPC;
//! - [`server`]: bind, health (`grpc.health.v1`), reflection (v1 and v1alpha), graceful drain;
//!   [`limits`]: message sizes, request timeout, concurrency gate, keepalive;
//! - [`auth`], [`context`] and [`scope`]: bearer keys → (account, livemode), request context;
//! - [`idempotency`]: Stripe's idempotency keys, stored with the change they guard;
//! - [`ids`], [`pagination`], [`error`]: Stripe-style ids, cursor paging, the error → status mapping;
//! - [`db`], [`sql`]: PostgreSQL or SQLite chosen by URL, migrations at start, dynamic queries;
//! - [`outbox`] and [`events`]: the transactional outbox and `EventService`; [`proto_json`]: messages as
//!   Stripe-style JSON, for events' `previous_attributes`;
//! - [`client`]: calling another settle service (internal key, deadlines, retries);
//! - [`shutdown`]: SIGTERM/SIGINT handling; [`testing`]: throwaway databases for tests.

pub mod auth;
pub mod bin_support;
pub mod client;
pub mod config;
pub mod context;
pub mod db;
pub mod error;
pub mod events;
pub mod faults;
pub mod idempotency;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod pagination;
pub mod proto_json;
pub mod request_limits;
pub mod scope;
pub mod search;
pub mod server;
pub mod shutdown;
pub mod sql;
pub mod startup;
pub mod telemetry;
pub mod testing;
pub mod time;
pub mod trace_layer;
pub mod validate;

pub use error::ApiError;
pub use scope::Scope;
