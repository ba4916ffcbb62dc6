//! Store tests of the bulk inserts (`insert_many`), on SQLite and PostgreSQL: a row written in bulk
//! is the row `insert` writes.

// Test code: a panic is a clear failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use prost::Message;
use settle_invoices::store::{invoice_items, invoice_lines, invoices};
use settle_platform::backend_tests;
use settle_platform::db::Db;
use settle_platform::ids::IdPrefix;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;

const ACCOUNT: &str = "acct_store";

async fn connect(database: &TestDatabase) -> Db {
    database.connect(&[&settle_invoices::MIGRATIONS, &settle_saga::MIGRATIONS]).await.expect("migrated")
}

fn invoice(id: &str, number: &str) -> pb::Invoice {
    pb::Invoice {
        id: id.to_owned(),
        object: "invoice".into(),
        customer: "cus_store".into(),
        currency: "usd".into(),
        status: Some(pb::InvoiceStatus::Open as i32),
        collection_method: pb::InvoiceCollectionMethod::SendInvoice as i32,
        number: Some(number.to_owned()),
        due_date: Some(1_800_000_000),
        total: 4_500,
        amount_due: 4_500,
        amount_paid: 1_000,
        amount_remaining: 3_500,
        metadata: BTreeMap::from([("order".to_owned(), "42".to_owned())]),
        created: 1_700_000_000,
        // Lists live in their own tables: neither insert stores them.
        lines: Some(pb::InvoiceLineItemList { has_more: true, ..Default::default() }),
        ..Default::default()
    }
}

/// Every projected column of an invoice row but its id and number, and its document.
async fn invoice_row(db: &Db, id: &str) -> (Vec<i64>, Vec<String>, pb::Invoice) {
    let (livemode, due_date, total, amount_due, amount_paid, amount_remaining, created): (i64, i64, i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT CAST(livemode AS INTEGER), due_date, total, amount_due, amount_paid, amount_remaining, created \
             FROM invoices WHERE id = $1",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    let (account, customer, currency, status, method, metadata, document): (String, String, String, String, String, String, Vec<u8>) =
        sqlx::query_as(
            "SELECT account_id, customer, currency, status, collection_method, metadata, document FROM invoices WHERE id = $1",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    (
        vec![livemode, due_date, total, amount_due, amount_paid, amount_remaining, created],
        vec![account, customer, currency, status, method, metadata],
        pb::Invoice::decode(document.as_slice()).unwrap(),
    )
}

backend_tests! {
    bulk_inserted_invoices_items_and_lines_read_back_as_inserted_ones => |database: TestDatabase| async move {
        let db = connect(&database).await;
        let (one, many) = (IdPrefix::Invoice.generate(), IdPrefix::Invoice.generate());
        let mut tx = db.begin().await.unwrap();
        invoices::insert(&mut tx, &settle_platform::Scope::test(ACCOUNT), &invoice(&one, "ABC-0001")).await.unwrap();
        invoices::insert_many(&mut tx, &settle_platform::Scope::test(ACCOUNT), &[invoice(&many, "ABC-0002")]).await.unwrap();
        let item = |id: &str, invoice: &str| pb::InvoiceItem {
            id: id.to_owned(),
            customer: "cus_store".into(),
            currency: "usd".into(),
            invoice: Some(invoice.to_owned()),
            amount: 4_500,
            date: 1_700_000_000,
            ..Default::default()
        };
        let line = |id: &str, invoice: &str, item: &str| pb::InvoiceLineItem {
            id: id.to_owned(),
            invoice: Some(invoice.to_owned()),
            amount: 4_500,
            parent: Some(pb::InvoiceLineItemParent {
                invoice_item_details: Some(pb::InvoiceLineItemInvoiceItemParent {
                    invoice_item: item.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (item_one, item_many) = (IdPrefix::InvoiceItem.generate(), IdPrefix::InvoiceItem.generate());
        invoice_items::insert(&mut tx, &settle_platform::Scope::test(ACCOUNT), &item(&item_one, &one)).await.unwrap();
        invoice_items::insert_many(&mut tx, &settle_platform::Scope::test(ACCOUNT), &[item(&item_many, &many)]).await.unwrap();
        let (line_one, line_many) = (IdPrefix::InvoiceLine.generate(), IdPrefix::InvoiceLine.generate());
        invoice_lines::insert(&mut tx, &settle_platform::Scope::test(ACCOUNT), &line(&line_one, &one, &item_one)).await.unwrap();
        invoice_lines::insert_many(&mut tx, &settle_platform::Scope::test(ACCOUNT), &[line(&line_many, &many, &item_many)]).await.unwrap();
        tx.commit().await.unwrap();

        let (numbers_one, texts_one, mut doc_one) = invoice_row(&db, &one).await;
        let (numbers_many, texts_many, doc_many) = invoice_row(&db, &many).await;
        assert_eq!((numbers_one, texts_one), (numbers_many, texts_many));
        assert!(doc_many.lines.is_none(), "lists are not stored in the document");
        (doc_one.id, doc_one.number) = (doc_many.id.clone(), doc_many.number.clone());
        assert_eq!(doc_one, doc_many);
        assert_eq!(invoices::find(db.pool(), &settle_platform::Scope::test(ACCOUNT), &many).await.unwrap(), Some(doc_many));

        let found = invoice_items::find(db.pool(), &settle_platform::Scope::test(ACCOUNT), &item_many).await.unwrap().unwrap();
        assert_eq!(found.invoice.as_deref(), Some(many.as_str()));
        let (lines, _) = invoice_lines::first(db.pool(), &settle_platform::Scope::test(ACCOUNT), &many, 10).await.unwrap();
        assert_eq!(lines.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), vec![line_many.as_str()]);
        let per_item: i64 =
            sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM invoice_lines WHERE invoice_item = $1")
                .bind(item_many.as_str())
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(per_item, 1, "the projected item column is written");
    };
}

backend_tests! {
    quarantined_events_are_recorded_once_counted_per_attempt_scoped_and_resolved => |database: TestDatabase| async move {
        use settle_invoices::store::quarantined_events::{self as quarantine, NewQuarantine};
        use settle_platform::pagination::PageRequest;
        let db = connect(&database).await;
        let scope = settle_platform::Scope::test(ACCOUNT);
        let first: &'static str = Box::leak(IdPrefix::Event.generate().into_boxed_str());
        let long_error = format!("bad\0{}", "x".repeat(5_000));
        let new = |event_id: &'static str, account: &'static str, livemode: bool| NewQuarantine {
            source: "payments",
            event_id,
            account,
            livemode,
            event_type: "payment_intent.succeeded",
            object_id: "pi_q",
            cursor: "41",
            reason: pb::QuarantineReason::ObjectUndecodable,
            error: "",
            attempts: 1,
            now: 1_700_000_000,
        };

        // First sight: a new row, its error bounded and without NUL.
        let mut record = new(first, ACCOUNT, false);
        record.error = &long_error;
        assert!(quarantine::record(db.pool(), &record).await.unwrap());
        // Seen again (a redelivery after a crash): the same row, attempts added up.
        let mut again = new(first, ACCOUNT, false);
        again.attempts = 3;
        again.reason = pb::QuarantineReason::RetriesExhausted;
        again.now = 1_700_000_100;
        assert!(!quarantine::record(db.pool(), &again).await.unwrap());
        // Another mode's and another account's events are theirs.
        let live: &'static str = Box::leak(IdPrefix::Event.generate().into_boxed_str());
        assert!(quarantine::record(db.pool(), &new(live, ACCOUNT, true)).await.unwrap());
        let other: &'static str = Box::leak(IdPrefix::Event.generate().into_boxed_str());
        assert!(quarantine::record(db.pool(), &new(other, "acct_someone_else", false)).await.unwrap());

        let row = quarantine::find(db.pool(), &scope, first).await.unwrap().expect("recorded");
        assert_eq!((row.attempts, row.created, row.last_attempt_at), (4, 1_700_000_000, 1_700_000_100));
        assert_eq!(row.reason, pb::QuarantineReason::RetriesExhausted as i32);
        assert_eq!(row.error, "");
        assert_eq!(row.status, pb::QuarantineStatus::Quarantined as i32);
        assert!(quarantine::find(db.pool(), &scope, live).await.unwrap().is_none(), "live row, test scope");
        assert!(quarantine::find(db.pool(), &scope, other).await.unwrap().is_none(), "another account's row");

        let second: &'static str = Box::leak(IdPrefix::Event.generate().into_boxed_str());
        let mut bounded = new(second, ACCOUNT, false);
        bounded.error = &long_error;
        assert!(quarantine::record(db.pool(), &bounded).await.unwrap());
        let row = quarantine::find(db.pool(), &scope, second).await.unwrap().unwrap();
        assert_eq!(row.error.chars().count(), quarantine::MAX_ERROR_CHARS);
        assert!(!row.error.contains('\0'));

        // Lists page newest first within the scope, and filter by status.
        let page = PageRequest::parse(Some(1), None, None, IdPrefix::Event).unwrap();
        let listed = quarantine::list(&db, &scope, None, &page).await.unwrap();
        assert_eq!((listed.data.len(), listed.has_more, listed.data[0].id.as_str()), (1, true, second));
        let next = PageRequest::parse(Some(10), Some(second), None, IdPrefix::Event).unwrap();
        let listed = quarantine::list(&db, &scope, None, &next).await.unwrap();
        assert_eq!(listed.data.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec![first]);
        assert!(!listed.has_more);

        quarantine::failed_again(db.pool(), &scope, first, pb::QuarantineReason::ApplyFailed, "still", 1_700_000_200).await.unwrap();
        quarantine::resolve(db.pool(), &scope, second, 1_700_000_300).await.unwrap();
        let all = PageRequest::parse(None, None, None, IdPrefix::Event).unwrap();
        let resolved = quarantine::list(&db, &scope, Some(pb::QuarantineStatus::Resolved), &all).await.unwrap();
        assert_eq!(resolved.data.len(), 1);
        assert_eq!((resolved.data[0].id.as_str(), resolved.data[0].resolved_at), (second, Some(1_700_000_300)));
        let open = quarantine::list(&db, &scope, Some(pb::QuarantineStatus::Quarantined), &all).await.unwrap();
        assert_eq!(open.data.len(), 1);
        assert_eq!((open.data[0].attempts, open.data[0].error.as_str()), (5, "still"));
        assert_eq!(open.data[0].reason, pb::QuarantineReason::ApplyFailed as i32);
    };
}
