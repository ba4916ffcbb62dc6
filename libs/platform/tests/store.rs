//! Store tests of the platform's tables — idempotency keys and the outbox — on SQLite and PostgreSQL.

// Test code: a panic is a clear failure, so unwrap and expect are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use settle_platform::auth::Principal;
use settle_platform::backend_tests;
use settle_platform::context::RequestContext;
use settle_platform::db::{Backend, Db, Migrations};
use settle_platform::idempotency::{self, Claim};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::{self, EventOrigin};
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1::GetEventRequest;
use sqlx::migrate::Migrator;
use tonic::Code;

static TEST_POSTGRES: Migrator = sqlx::migrate!("tests/migrations/postgres");
static TEST_SQLITE: Migrator = sqlx::migrate!("tests/migrations/sqlite");
static MIGRATIONS: Migrations = Migrations::new("platform-tests", &TEST_POSTGRES, &TEST_SQLITE);

const METHOD: &str = "/settle.test.v1.WidgetService/CreateWidget";

/// The request and response messages of the tests' pretend `CreateWidget`.
fn request(name: &str) -> GetEventRequest {
    GetEventRequest { id: name.to_owned() }
}

fn ctx(account: &str, key: Option<&str>) -> RequestContext {
    RequestContext {
        principal: Principal::new(account, false, false),
        idempotency_key: key.map(str::to_owned),
        request_id: None,
    }
}

async fn connect(database: &TestDatabase) -> Db {
    database.connect(&[&MIGRATIONS]).await.expect("migrated test database")
}

/// The pretend handler: claim, insert a widget, record the response, commit.
async fn create_widget(
    db: &Db,
    ctx: &RequestContext,
    name: &str,
) -> Result<String, settle_platform::ApiError> {
    let mut tx = db.begin().await?;
    let pending =
        match idempotency::claim::<GetEventRequest>(&mut tx, db.backend(), ctx, METHOD, &request(name))
            .await?
        {
            Claim::Replay(response) => return Ok(response.id),
            Claim::Fresh(pending) => pending,
        };
    let id = IdPrefix::Invoice.generate();
    sqlx::query("INSERT INTO widgets (id, account_id, name) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(ctx.account())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    pending.record(&mut tx, &GetEventRequest { id: id.clone() }).await?;
    tx.commit().await?;
    Ok(id)
}

async fn widget_count(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM widgets").fetch_one(db.pool()).await.unwrap()
}

backend_tests! {
    a_built_multi_row_insert_executes => |database: TestDatabase| async move {
        let db = connect(&database).await;
        let mut insert = settle_platform::sql::SqlBuilder::new("INSERT INTO widgets (id, account_id, name) VALUES ");
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            insert.push(if i == 0 { "(" } else { ", (" });
            insert.bind(IdPrefix::Invoice.generate()).push(", ").bind("acct_a".to_owned()).push(", ").bind(name.to_owned());
            insert.push(")");
        }
        assert_eq!(insert.execute(db.pool()).await.unwrap(), 3);
        assert_eq!(widget_count(&db).await, 3);
    };

    same_key_and_request_replays_the_first_response => |database: TestDatabase| async move {
        let db = connect(&database).await;
        let first = create_widget(&db, &ctx("acct_a", Some("k1")), "w").await.unwrap();
        let second = create_widget(&db, &ctx("acct_a", Some("k1")), "w").await.unwrap();
        assert_eq!(first, second);
        assert_eq!(widget_count(&db).await, 1);
    };

    same_key_with_other_parameters_is_an_idempotency_error => |database: TestDatabase| async move {
        let db = connect(&database).await;
        create_widget(&db, &ctx("acct_a", Some("k1")), "w").await.unwrap();
        let error = create_widget(&db, &ctx("acct_a", Some("k1")), "other").await.unwrap_err();
        assert_eq!(error.code, Code::InvalidArgument);
        assert_eq!(error.reason_code(), "idempotency_error");
        assert_eq!(widget_count(&db).await, 1, "the refused request changed nothing");
    };

    keys_are_scoped_to_the_account => |database: TestDatabase| async move {
        let db = connect(&database).await;
        let a = create_widget(&db, &ctx("acct_a", Some("k1")), "w").await.unwrap();
        let b = create_widget(&db, &ctx("acct_b", Some("k1")), "w").await.unwrap();
        assert_ne!(a, b);
        assert_eq!(widget_count(&db).await, 2);
    };

    requests_without_a_key_always_run => |database: TestDatabase| async move {
        let db = connect(&database).await;
        create_widget(&db, &ctx("acct_a", None), "w").await.unwrap();
        create_widget(&db, &ctx("acct_a", None), "w").await.unwrap();
        assert_eq!(widget_count(&db).await, 2);
    };

    expired_keys_are_forgotten => |database: TestDatabase| async move {
        let db = connect(&database).await;
        create_widget(&db, &ctx("acct_a", Some("k1")), "w").await.unwrap();
        sqlx::query("UPDATE idempotency_keys SET created = created - $1")
            .bind(idempotency::KEY_TTL_SECONDS + 1)
            .execute(db.pool())
            .await
            .unwrap();
        let again = create_widget(&db, &ctx("acct_a", Some("k1")), "other").await.unwrap();
        assert_eq!(widget_count(&db).await, 2, "an expired key no longer guards");
        assert_eq!(create_widget(&db, &ctx("acct_a", Some("k1")), "other").await.unwrap(), again);
        assert_eq!(idempotency::purge_expired(&db).await.unwrap(), 0);
    };

    a_rolled_back_request_leaves_no_key => |database: TestDatabase| async move {
        let db = connect(&database).await;
        let context = ctx("acct_a", Some("k1"));
        let mut tx = db.begin().await.unwrap();
        let claim = idempotency::claim::<GetEventRequest>(&mut tx, db.backend(), &context, METHOD, &request("w")).await.unwrap();
        assert!(matches!(claim, Claim::Fresh(_)));
        tx.rollback().await.unwrap();
        create_widget(&db, &context, "w").await.unwrap();
        assert_eq!(widget_count(&db).await, 1);
    };

    many_concurrent_calls_with_one_key_have_one_effect => |database: TestDatabase| async move {
        let db = connect(&database).await;
        let context = Arc::new(ctx("acct_a", Some("race")));
        let calls = (0..64).map(|_| {
            let (db, context) = (db.clone(), context.clone());
            tokio::spawn(async move { create_widget(&db, &context, "w").await })
        });
        let results = futures::future::join_all(calls).await;
        let mut ids = HashMap::<String, usize>::new();
        let mut in_use = 0;
        for result in results {
            match result.unwrap() {
                Ok(id) => *ids.entry(id).or_default() += 1,
                Err(e) if e.code == Code::Aborted => {
                    assert_eq!(e.reason_code(), "idempotency_key_in_use");
                    in_use += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        println!("{}: 64 concurrent calls with one key → {} ok (all the same id: {}), {} in use, {} widget(s)",
            database.backend().name(), ids.values().sum::<usize>(), ids.len() == 1, in_use, widget_count(&db).await);
        assert_eq!(ids.len(), 1, "every successful call saw the same object");
        assert_eq!(widget_count(&db).await, 1, "exactly one effect");
    };

    outbox_events_are_numbered_per_object_and_in_commit_order => |database: TestDatabase| async move {
        let db = connect(&database).await;
        let origin = EventOrigin { scope: settle_platform::Scope::test("acct_a"), ..Default::default() };
        for i in 0..3 {
            let mut tx = db.begin().await.unwrap();
            outbox::append(&mut tx, db.backend(), &origin, "widget.updated", "wid_1", &request(&i.to_string()), None).await.unwrap();
            outbox::append(&mut tx, db.backend(), &origin, "widget.updated", "wid_2", &request(&i.to_string()), None).await.unwrap();
            tx.commit().await.unwrap();
        }
        // A rolled-back change leaves no event.
        let mut tx = db.begin().await.unwrap();
        outbox::append(&mut tx, db.backend(), &origin, "widget.updated", "wid_1", &request("gone"), None).await.unwrap();
        tx.rollback().await.unwrap();

        assert_eq!(outbox::sequence_batch(&db).await.unwrap().map(|(_, n)| n), Some(6));
        assert_eq!(outbox::sequence_batch(&db).await.unwrap(), None, "nothing left to number");
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT seq, object_id, object_sequence FROM outbox_events ORDER BY seq")
            .fetch_all(db.pool()).await.unwrap();
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6], "dense and increasing");
        for object in ["wid_1", "wid_2"] {
            let per_object: Vec<i64> = rows.iter().filter(|r| r.1 == object).map(|r| r.2).collect();
            assert_eq!(per_object, vec![1, 2, 3], "{object} numbered 1, 2, 3 in stream order");
        }
    };

    an_object_too_large_for_an_event_is_refused_not_stored => |database: TestDatabase| async move {
        let db = connect(&database).await;
        let origin = EventOrigin { scope: settle_platform::Scope::test("acct_a"), ..Default::default() };
        let mut tx = db.begin().await.unwrap();
        let huge = request(&"x".repeat(outbox::MAX_OBJECT_BYTES + 1));
        let error = outbox::append(&mut tx, db.backend(), &origin, "widget.created", "wid_huge", &huge, None).await.unwrap_err();
        let refusal = settle_platform::ApiError::from(error);
        assert_eq!((refusal.code, refusal.reason_code().as_str()), (Code::InvalidArgument, "parameter_invalid"));
        assert!(refusal.message.len() < 200);
        tx.rollback().await.unwrap();
        let fits = request(&"x".repeat(outbox::MAX_OBJECT_BYTES - 16));
        let mut tx = db.begin().await.unwrap();
        outbox::append(&mut tx, db.backend(), &origin, "widget.created", "wid_fits", &fits, None).await.unwrap();
        tx.commit().await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox_events").fetch_one(db.pool()).await.unwrap();
        assert_eq!(count, 1);
    };
}

/// PostgreSQL only: a transaction that inserted first but commits last is numbered last, because
/// the sequencer numbers rows as they become visible. (SQLite has one writer, so the situation
/// cannot arise there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_sequence_follows_commit_order_not_insert_order() {
    let Some(database) = TestDatabase::new(Backend::Postgres).await else {
        return;
    };
    let db = connect(&database).await;
    let origin = EventOrigin { scope: settle_platform::Scope::test("acct_a"), ..Default::default() };
    let mut early = db.begin().await.unwrap();
    outbox::append(&mut early, db.backend(), &origin, "widget.created", "wid_early", &request("early"), None)
        .await
        .unwrap();
    let mut late = db.begin().await.unwrap();
    outbox::append(&mut late, db.backend(), &origin, "widget.created", "wid_late", &request("late"), None)
        .await
        .unwrap();
    late.commit().await.unwrap();
    outbox::sequence_batch(&db).await.unwrap();
    early.commit().await.unwrap();
    outbox::sequence_batch(&db).await.unwrap();
    let order: Vec<String> = sqlx::query_scalar("SELECT object_id FROM outbox_events ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(order, vec!["wid_late", "wid_early"]);
}

/// PostgreSQL only: while one request holds a key, a concurrent one with the same key is told the
/// key is in use instead of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_flight_is_reported_in_use() {
    let Some(database) = TestDatabase::new(Backend::Postgres).await else {
        return;
    };
    let db = connect(&database).await;
    let context = ctx("acct_a", Some("slow"));
    let mut first = db.begin().await.unwrap();
    let claim =
        idempotency::claim::<GetEventRequest>(&mut first, db.backend(), &context, METHOD, &request("w"))
            .await
            .unwrap();
    assert!(matches!(claim, Claim::Fresh(_)));
    let error = create_widget(&db, &context, "w").await.unwrap_err();
    assert_eq!(error.code, Code::Aborted);
    assert_eq!(error.reason_code(), "idempotency_key_in_use");
    first.rollback().await.unwrap();
    assert!(create_widget(&db, &context, "w").await.is_ok(), "usable once the first gave up");
}

#[test]
fn request_messages_encode_deterministically() {
    assert_eq!(request("a").encode_to_vec(), request("a").encode_to_vec());
}
