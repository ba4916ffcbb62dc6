//! `settle.events.v1.EventService`, served by every service over its own outbox.
//!
//! Bounded for hostile or careless callers: open streams are capped per (account, mode) and in all
//! (RESOURCE_EXHAUSTED past either), a stream reads only rows numbered since its last read (a type
//! filter that matches nothing still moves its cursor, so it never re-scans the outbox), and a page
//! of events stops before it would pass [`MAX_PAGE_BYTES`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use settle_proto::common::v1::ErrorReason;
use settle_proto::events::v1::event_service_server::EventService;
use settle_proto::events::v1::{
    Event, EventData, EventRequest, GetEventRequest, ListEventsRequest, ListEventsResponse,
    StreamEventsRequest, StreamEventsResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::config::ServerLimits;
use crate::context::RequestContext;
use crate::db::Db;
use crate::error::ApiError;
use crate::ids::IdPrefix;
use crate::limits::MAX_PAGE_BYTES;
use crate::outbox::EventHub;
use crate::pagination::{RangeColumn, push_range};
use crate::scope::Scope;
use crate::sql::SqlBuilder;

/// The API version events render objects with.
pub const API_VERSION: &str = "2025-10-29.clover";

/// Events fetched per stream read.
const STREAM_BATCH: i64 = 100;
/// How often a stream re-reads when nothing was signalled (commits numbered by another replica).
const STREAM_POLL: Duration = Duration::from_millis(250);

macro_rules! select_events {
    ($where:literal) => {
        concat!(
            "SELECT seq, id, account_id, type, object_id, object_sequence, data_type_url, data, \
             previous_attributes, request_id, idempotency_key, traceparent, livemode, created \
             FROM outbox_events WHERE ",
            $where
        )
    };
}

/// One scope's events: `SqlBuilder::scoped(SCOPED, scope)`, filters follow with ` AND …`.
const SCOPED: &str = select_events!("");
/// Every account's events (for settle's own services); filters follow with ` AND …`.
const ALL_ACCOUNTS: &str = select_events!("seq IS NOT NULL");

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: Option<i64>,
    id: String,
    account_id: String,
    r#type: String,
    object_id: String,
    object_sequence: i64,
    data_type_url: String,
    data: Vec<u8>,
    previous_attributes: Option<String>,
    request_id: Option<String>,
    idempotency_key: Option<String>,
    traceparent: Option<String>,
    #[sqlx(try_from = "crate::db::DbBool")]
    livemode: bool,
    created: i64,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Event {
        let previous_attributes = row
            .previous_attributes
            .as_deref()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .and_then(|value| match json_to_proto(value).kind {
                Some(prost_types::value::Kind::StructValue(s)) => Some(s),
                _ => None,
            });
        Event {
            id: row.id,
            object: "event".to_owned(),
            account: Some(row.account_id),
            api_version: Some(API_VERSION.to_owned()),
            context: None,
            created: row.created,
            data: Some(EventData {
                object: Some(prost_types::Any { type_url: row.data_type_url, value: row.data }),
                previous_attributes,
            }),
            livemode: row.livemode,
            pending_webhooks: 0,
            request: (row.request_id.is_some() || row.idempotency_key.is_some())
                .then_some(EventRequest { id: row.request_id, idempotency_key: row.idempotency_key }),
            r#type: row.r#type,
            object_id: row.object_id,
            object_sequence: row.object_sequence,
            traceparent: row.traceparent,
        }
    }
}

fn json_to_proto(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.into_iter().map(json_to_proto).collect() })
        }
        serde_json::Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map.into_iter().map(|(k, v)| (k, json_to_proto(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A validated event type filter: exact types and `prefix.*` wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TypeFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl TypeFilter {
    fn parse(field: &str, patterns: &[String]) -> Result<Self, ApiError> {
        if patterns.len() > 20 {
            return Err(ApiError::invalid_param(field, ErrorReason::ParameterInvalid, "At most 20 types."));
        }
        let mut filter = TypeFilter::default();
        for pattern in patterns {
            let valid = !pattern.is_empty()
                && pattern.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.' || c == '*');
            match pattern.strip_suffix('*') {
                Some(prefix) if valid && !prefix.contains('*') => filter.prefixes.push(prefix.to_owned()),
                None if valid && !pattern.contains('*') => filter.exact.push(pattern.clone()),
                _ => {
                    return Err(ApiError::invalid_param(
                        field,
                        ErrorReason::ParameterInvalid,
                        format!("Invalid event type {pattern:?}: use e.g. `invoice.paid` or `invoice.*`."),
                    ));
                }
            }
        }
        Ok(filter)
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// What [`Self::push_sql`] selects, for tests of the patterns.
    #[cfg(test)]
    fn matches(&self, event_type: &str) -> bool {
        self.is_empty()
            || self.exact.iter().any(|t| t == event_type)
            || self.prefixes.iter().any(|p| event_type.starts_with(p.as_str()))
    }

    fn push_sql(&self, query: &mut SqlBuilder) {
        if self.is_empty() {
            return;
        }
        query.push(" AND (1 = 0");
        if !self.exact.is_empty() {
            query.in_list(" OR type IN ", self.exact.iter().cloned());
        }
        for prefix in &self.prefixes {
            // `_` and `%` in a prefix are LIKE wildcards; event types use `_`, so escape it.
            let escaped = prefix.replace('_', "\\_");
            query.filter(" OR type LIKE ", format!("{escaped}%")).push(" ESCAPE '\\'");
        }
        query.push(")");
    }
}

/// Open streams per scope (`None`: an all-accounts stream of settle's own services) and in all.
#[derive(Debug)]
struct StreamCaps {
    per_scope: usize,
    total: usize,
    open: Mutex<(usize, HashMap<Option<Scope>, usize>)>,
}

/// One open stream's place under the caps, given back when the stream ends.
struct StreamSlot {
    caps: Arc<StreamCaps>,
    scope: Option<Scope>,
}

impl StreamCaps {
    fn new(per_scope: usize, total: usize) -> Arc<Self> {
        Arc::new(StreamCaps { per_scope: per_scope.max(1), total: total.max(1), open: Mutex::default() })
    }

    /// A slot for a stream of `scope`, or `None` when a cap is reached.
    fn acquire(self: &Arc<Self>, scope: Option<Scope>) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, per_scope) = &mut *open;
        let mine = per_scope.entry(scope.clone()).or_default();
        if *total >= self.total || *mine >= self.per_scope {
            if *mine == 0 {
                per_scope.remove(&scope);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(StreamSlot { caps: self.clone(), scope })
    }

    fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, per_scope) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(mine) = per_scope.get_mut(&self.scope) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                per_scope.remove(&self.scope);
            }
        }
    }
}

/// Serves the events in one service's outbox.
#[derive(Clone)]
pub struct EventsService {
    db: Db,
    hub: EventHub,
    shutdown: CancellationToken,
    caps: Arc<StreamCaps>,
    scans: Arc<AtomicU64>,
}

impl EventsService {
    /// A service with the default stream caps ([`ServerLimits::default`]).
    pub fn new(db: Db, hub: EventHub, shutdown: CancellationToken) -> Self {
        let limits = ServerLimits::default();
        EventsService {
            db,
            hub,
            shutdown,
            caps: StreamCaps::new(limits.event_streams_per_scope, limits.event_streams_total),
            scans: Arc::default(),
        }
    }

    /// Caps open streams as `limits` say.
    pub fn with_stream_caps(mut self, limits: &ServerLimits) -> Self {
        self.caps = StreamCaps::new(limits.event_streams_per_scope, limits.event_streams_total);
        self
    }

    /// How many outbox reads the streams of this service have made (for tests and diagnostics).
    pub fn stream_scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        self.caps.open()
    }
}

/// Keeps the newest-first `events` of a page within [`MAX_PAGE_BYTES`] (at least one event), dropping
/// from the end farthest from the cursor: the oldest when paging forward (`from_newest`), the newest
/// when paging back. Returns whether any were dropped.
fn cap_page(events: &mut Vec<Event>, from_newest: bool) -> bool {
    use prost::Message;
    let mut total = 0usize;
    let mut keep = 0usize;
    let sizes: Vec<usize> = events.iter().map(Message::encoded_len).collect();
    let order: Box<dyn Iterator<Item = &usize>> =
        if from_newest { Box::new(sizes.iter()) } else { Box::new(sizes.iter().rev()) };
    for size in order {
        // A few bytes of framing per repeated entry.
        total = total.saturating_add(size + 8);
        if keep > 0 && total > MAX_PAGE_BYTES {
            break;
        }
        keep += 1;
    }
    let dropped = keep < events.len();
    if from_newest {
        events.truncate(keep);
    } else {
        events.drain(..events.len() - keep);
    }
    dropped
}

/// One read of a stream: the events after `cursor`, up to `high`, that pass `filter`, and the
/// cursor to read on from. A read that returns fewer than a batch has seen everything up to
/// `high`, so the cursor moves there even when the filter matched nothing.
async fn read_stream_batch(
    db: &Db,
    scope: Option<&Scope>,
    filter: &TypeFilter,
    cursor: i64,
    high: i64,
) -> Result<(Vec<EventRow>, i64), sqlx::Error> {
    let mut query = match scope {
        Some(scope) => SqlBuilder::scoped(SCOPED, scope),
        None => SqlBuilder::new(ALL_ACCOUNTS),
    };
    query.filter(" AND seq > ", cursor).filter(" AND seq <= ", high);
    filter.push_sql(&mut query);
    query.push(" ORDER BY seq ASC LIMIT ").bind(STREAM_BATCH);
    let rows = query.fetch_all::<EventRow, _>(db.pool()).await?;
    let next = if rows.len() as i64 == STREAM_BATCH {
        rows.last().and_then(|row| row.seq).unwrap_or(high)
    } else {
        high
    };
    Ok((rows, next))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for EventsService {
    async fn get_event(&self, request: Request<GetEventRequest>) -> Result<Response<Event>, Status> {
        let ctx = RequestContext::of(&request)?;
        let id = request.into_inner().id;
        let not_found = || ApiError::not_found(IdPrefix::Event, &id, "id");
        if !IdPrefix::Event.matches(&id) {
            return Err(not_found().into());
        }
        let mut query = SqlBuilder::scoped(SCOPED, ctx.scope());
        query.filter(" AND id = ", id.clone());
        let row = query
            .fetch_all::<EventRow, _>(self.db.pool())
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .next()
            .ok_or_else(not_found)?;
        Ok(Response::new(row.into()))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        let params = request.into_inner();
        let patterns: Vec<String> = match (&params.r#type, params.types.is_empty()) {
            (Some(_), false) => return Err(ApiError::exclusive_params("type", "types").into()),
            (Some(t), true) => vec![t.clone()],
            (None, _) => params.types.clone(),
        };
        let field = if params.r#type.is_some() { "type" } else { "types" };
        let filter = TypeFilter::parse(field, &patterns)?;
        let page = crate::pagination::PageRequest::parse(
            params.limit,
            params.starting_after.as_deref(),
            params.ending_before.as_deref(),
            IdPrefix::Event,
        )?;

        // Events page by commit order (`seq`), so a cursor id is first turned into its seq.
        let cursor_seq = match &page.cursor {
            crate::pagination::Cursor::First => None,
            crate::pagination::Cursor::After(id) | crate::pagination::Cursor::Before(id) => {
                let seq: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT seq FROM outbox_events WHERE account_id = $1 AND livemode = $3 AND id = $2",
                )
                .bind(ctx.account())
                .bind(id.as_str())
                .bind(ctx.livemode())
                .fetch_optional(self.db.pool())
                .await
                .map_err(ApiError::from)?;
                let field = if matches!(page.cursor, crate::pagination::Cursor::After(_)) {
                    "starting_after"
                } else {
                    "ending_before"
                };
                Some(seq.flatten().ok_or_else(|| ApiError::not_found(IdPrefix::Event, id, field))?)
            }
        };
        let mut query = SqlBuilder::scoped(SCOPED, ctx.scope());
        query.push(" AND seq IS NOT NULL");
        filter.push_sql(&mut query);
        push_range(&mut query, RangeColumn::Created, params.created.as_ref());
        match (&page.cursor, cursor_seq) {
            (crate::pagination::Cursor::After(_), Some(seq)) => {
                query.filter(" AND seq < ", seq).push(" ORDER BY seq DESC LIMIT ");
            }
            (crate::pagination::Cursor::Before(_), Some(seq)) => {
                query.filter(" AND seq > ", seq).push(" ORDER BY seq ASC LIMIT ");
            }
            _ => {
                query.push(" ORDER BY seq DESC LIMIT ");
            }
        }
        query.bind(i64::from(page.limit) + 1);
        let rows = query.fetch_all::<EventRow, _>(self.db.pool()).await.map_err(ApiError::from)?;
        let backwards = matches!(page.cursor, crate::pagination::Cursor::Before(_));
        let page = page.finish(rows);
        let mut data: Vec<Event> = page.data.into_iter().map(Event::from).collect();
        let cut = cap_page(&mut data, !backwards);
        Ok(Response::new(ListEventsResponse { data, has_more: page.has_more || cut }))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let ctx = RequestContext::of(&request)?;
        let params = request.into_inner();
        let filter = TypeFilter::parse("types", &params.types)?;
        let mut cursor = match params.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => c.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
                ApiError::invalid_param(
                    "cursor",
                    ErrorReason::ParameterInvalid,
                    "Invalid cursor: pass back a `cursor` this stream returned.",
                )
            })?,
        };
        // Another settle service may follow every account's events (invoices follows payments).
        let scope = if params.all_accounts {
            if !ctx.principal.is_internal() {
                return Err(ApiError::new(
                    tonic::Code::PermissionDenied,
                    ErrorReason::PermissionDenied,
                    "all_accounts is only for settle's own services.",
                )
                .into());
            }
            None
        } else {
            Some(ctx.scope().clone())
        };
        let Some(slot) = self.caps.acquire(scope.clone()) else {
            crate::metrics::event_streams_refused().add(1, &[]);
            return Err(ApiError::new(
                tonic::Code::ResourceExhausted,
                ErrorReason::RateLimit,
                "Too many open event streams; close one or retry later.",
            )
            .into());
        };
        let (sender, receiver) = mpsc::channel(STREAM_BATCH as usize);
        let db = self.db.clone();
        let mut sequenced = self.hub.subscribe();
        let shutdown = self.shutdown.clone();
        let scans = self.scans.clone();
        tokio::spawn(async move {
            let _slot = slot; // the stream's place under the caps, until this task ends
            loop {
                // Only rows numbered since the last read are read: when nothing new was numbered
                // (or the filter matched nothing last time) the stream just waits.
                let high = match crate::outbox::max_seq(&db).await {
                    Ok(high) => high,
                    Err(error) => {
                        let _ = sender.send(Err(ApiError::from(error).into())).await;
                        return;
                    }
                };
                if high > cursor {
                    scans.fetch_add(1, Ordering::Relaxed);
                    let (rows, next) =
                        match read_stream_batch(&db, scope.as_ref(), &filter, cursor, high).await {
                            Ok(read) => read,
                            Err(error) => {
                                let _ = sender.send(Err(ApiError::from(error).into())).await;
                                return;
                            }
                        };
                    for row in rows {
                        let Some(seq) = row.seq else { continue };
                        let message =
                            StreamEventsResponse { event: Some(row.into()), cursor: seq.to_string() };
                        if sender.send(Ok(message)).await.is_err() {
                            return; // the client went away
                        }
                    }
                    cursor = next;
                    if cursor < high {
                        continue; // a full batch: read on at once
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = sender.closed() => return,
                    _ = sequenced.changed() => {}
                    () = tokio::time::sleep(STREAM_POLL) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filter_matches_exact_and_wildcards() {
        let filter =
            TypeFilter::parse("types", &["invoice.paid".to_owned(), "payment_intent.*".to_owned()]).unwrap();
        assert!(filter.matches("invoice.paid"));
        assert!(filter.matches("payment_intent.succeeded"));
        assert!(!filter.matches("invoice.voided"));
        assert!(TypeFilter::default().matches("anything"));
    }

    #[test]
    fn type_filter_rejects_bad_patterns() {
        for bad in ["", "Invoice.paid", "in*voice.paid", "*.paid x"] {
            assert!(TypeFilter::parse("type", &[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_caps_count_per_scope_and_in_all() {
        let caps = StreamCaps::new(2, 3);
        let a = Some(Scope::test("acct_a"));
        let a_live = Some(Scope::new("acct_a", true));
        let first = caps.acquire(a.clone()).unwrap();
        let _second = caps.acquire(a.clone()).unwrap();
        assert!(caps.acquire(a.clone()).is_none(), "per-scope cap");
        // The other mode of the same account is another scope.
        let _live = caps.acquire(a_live.clone()).unwrap();
        assert!(caps.acquire(None).is_none(), "global cap");
        assert_eq!(caps.open(), 3);
        drop(first);
        assert_eq!(caps.open(), 2);
        let _again = caps.acquire(a).unwrap();
        assert!(caps.acquire(Some(Scope::test("acct_b"))).is_none());
    }

    #[test]
    fn pages_stop_before_the_size_limit_from_the_far_end() {
        let event = |id: &str, bytes: usize| Event {
            id: id.to_owned(),
            data: Some(EventData {
                object: Some(prost_types::Any { type_url: String::new(), value: vec![0; bytes] }),
                previous_attributes: None,
            }),
            ..Event::default()
        };
        let big = MAX_PAGE_BYTES / 3;
        let page = || vec![event("newest", big), event("b", big), event("c", big), event("oldest", big)];
        let mut forward = page();
        assert!(cap_page(&mut forward, true));
        assert_eq!(forward.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["newest", "b"]);
        let mut back = page();
        assert!(cap_page(&mut back, false));
        assert_eq!(back.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["c", "oldest"]);
        // One event larger than the page still goes out alone, so paging never gets stuck.
        let mut huge = vec![event("huge", MAX_PAGE_BYTES + 1), event("next", 1)];
        assert!(cap_page(&mut huge, true));
        assert_eq!(huge.len(), 1);
        let mut small = vec![event("a", 10), event("b", 10)];
        assert!(!cap_page(&mut small, true));
        assert_eq!(small.len(), 2);
    }

    #[test]
    fn previous_attributes_become_a_struct() {
        let value = json_to_proto(serde_json::json!({"status": "open", "amount": 5, "tags": ["a"]}));
        let Some(prost_types::value::Kind::StructValue(s)) = value.kind else { panic!("struct") };
        assert_eq!(s.fields.len(), 3);
    }
}
