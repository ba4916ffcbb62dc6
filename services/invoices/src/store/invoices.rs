//! The `invoices` table: the stored document plus the columns lists, search and constraints read.

use prost::Message;
use settle_platform::Scope;
use settle_platform::db::{Backend, Db, Tx};
use settle_proto::settle::invoices::v1 as pb;

use super::StoreError;
use crate::model::status_from_pb;

#[derive(sqlx::FromRow)]
struct DocumentRow {
    document: Vec<u8>,
}

/// Decodes stored documents.
pub(crate) fn decode_all(rows: Vec<Vec<u8>>) -> Result<Vec<pb::Invoice>, StoreError> {
    rows.into_iter().map(|bytes| pb::Invoice::decode(bytes.as_slice()).map_err(StoreError::from)).collect()
}

fn status_name(doc: &pb::Invoice) -> &'static str {
    status_from_pb(doc.status).map_or("draft", |s| s.as_str())
}

fn collection_method_name(doc: &pb::Invoice) -> &'static str {
    match pb::InvoiceCollectionMethod::try_from(doc.collection_method) {
        Ok(pb::InvoiceCollectionMethod::SendInvoice) => "send_invoice",
        _ => "charge_automatically",
    }
}

fn metadata_json(doc: &pb::Invoice) -> String {
    serde_json::to_string(&doc.metadata).unwrap_or_else(|_| "{}".to_owned())
}

/// The stored form: lists live in their own tables.
fn stored(doc: &pb::Invoice) -> Vec<u8> {
    let mut copy = doc.clone();
    copy.lines = None;
    copy.payments = None;
    copy.confirmation_secret = None;
    copy.encode_to_vec()
}

/// Inserts a new invoice.
pub async fn insert(tx: &mut Tx, scope: &Scope, doc: &pb::Invoice) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO invoices (id, account_id, livemode, customer, currency, status, collection_method, \
           number, due_date, total, amount_due, amount_paid, amount_remaining, metadata, created, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(doc.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(doc.customer.as_str())
    .bind(doc.currency.as_str())
    .bind(status_name(doc))
    .bind(collection_method_name(doc))
    .bind(doc.number.as_deref())
    .bind(doc.due_date)
    .bind(doc.total)
    .bind(doc.amount_due)
    .bind(doc.amount_paid)
    .bind(doc.amount_remaining)
    .bind(metadata_json(doc))
    .bind(doc.created)
    .bind(stored(doc))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes back a changed invoice (read with [`find_for_update`] in the same transaction).
pub async fn update(tx: &mut Tx, scope: &Scope, doc: &pb::Invoice) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE invoices SET status = $3, collection_method = $4, number = $5, due_date = $6, total = $7, \
           amount_due = $8, amount_paid = $9, amount_remaining = $10, metadata = $11, document = $12 \
         WHERE account_id = $1 AND livemode = $13 AND id = $2",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(status_name(doc))
    .bind(collection_method_name(doc))
    .bind(doc.number.as_deref())
    .bind(doc.due_date)
    .bind(doc.total)
    .bind(doc.amount_due)
    .bind(doc.amount_paid)
    .bind(doc.amount_remaining)
    .bind(metadata_json(doc))
    .bind(stored(doc))
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a draft (the caller checked it is one).
pub async fn delete(tx: &mut Tx, scope: &Scope, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM invoices WHERE account_id = $1 AND livemode = $3 AND id = $2")
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Reads one invoice of the account.
pub async fn find<'e, E>(executor: E, scope: &Scope, id: &str) -> Result<Option<pb::Invoice>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<DocumentRow> =
        sqlx::query_as("SELECT document FROM invoices WHERE account_id = $1 AND livemode = $3 AND id = $2")
            .bind(scope.account())
            .bind(id)
            .bind(scope.livemode())
            .fetch_optional(executor)
            .await?;
    Ok(decode_all(row.into_iter().map(|r| r.document).collect())?.pop())
}

/// Reads one invoice and locks it until the transaction ends: every change to an invoice's money
/// happens under this lock.
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    id: &str,
) -> Result<Option<pb::Invoice>, StoreError> {
    let sql = backend.pick(
        "SELECT document FROM invoices WHERE account_id = $1 AND livemode = $3 AND id = $2 FOR UPDATE",
        "SELECT document FROM invoices WHERE account_id = $1 AND livemode = $3 AND id = $2",
    );
    let row: Option<DocumentRow> = sqlx::query_as(sql)
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(decode_all(row.into_iter().map(|r| r.document).collect())?.pop())
}

/// Reads invoices by id (any order), for rendering lists.
pub async fn find_many(db: &Db, scope: &Scope, ids: &[String]) -> Result<Vec<pb::Invoice>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = settle_platform::sql::SqlBuilder::scoped("SELECT document FROM invoices WHERE ", scope);
    query.in_list(" AND id IN ", ids.iter().cloned());
    let rows = query.fetch_all::<DocumentRow, _>(db.pool()).await?;
    decode_all(rows.into_iter().map(|r| r.document).collect())
}

/// Invoices per multi-row statement of [`insert_many`] (16 parameters each; PostgreSQL takes 65,535
/// parameters, SQLite 32,766).
const INSERT_MANY_CHUNK: usize = 500;

/// Inserts new invoices, many rows per statement, with exactly the columns [`insert`] writes: for
/// bulk loads (the load tool seeds 10⁶ invoices with it).
pub async fn insert_many(tx: &mut Tx, scope: &Scope, docs: &[pb::Invoice]) -> Result<(), StoreError> {
    for chunk in docs.chunks(INSERT_MANY_CHUNK) {
        let mut query = settle_platform::sql::SqlBuilder::new(
            "INSERT INTO invoices (id, account_id, livemode, customer, currency, status, collection_method, \
               number, due_date, total, amount_due, amount_paid, amount_remaining, metadata, created, document) \
             VALUES ",
        );
        for (i, doc) in chunk.iter().enumerate() {
            query.push(if i == 0 { "(" } else { ", (" });
            query
                .bind(doc.id.clone())
                .push(", ")
                .bind(scope.account().to_owned())
                .push(", ")
                .bind(scope.livemode());
            query.push(", ").bind(doc.customer.clone()).push(", ").bind(doc.currency.clone());
            query
                .push(", ")
                .bind(status_name(doc).to_owned())
                .push(", ")
                .bind(collection_method_name(doc).to_owned());
            query
                .push(", ")
                .bind(doc.number.clone())
                .push(", ")
                .bind(doc.due_date)
                .push(", ")
                .bind(doc.total);
            query.push(", ").bind(doc.amount_due).push(", ").bind(doc.amount_paid);
            query.push(", ").bind(doc.amount_remaining).push(", ").bind(metadata_json(doc));
            query.push(", ").bind(doc.created).push(", ").bind(stored(doc)).push(")");
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
