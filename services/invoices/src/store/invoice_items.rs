//! The `invoice_items` table: pending items (`invoice` NULL) and items on an invoice.

use prost::Message;
use settle_platform::Scope;
use settle_platform::db::{Backend, Db, Tx};
use settle_platform::pagination::{Page, PageRequest, RangeColumn, push_range};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::invoices::v1 as pb;

use super::StoreError;

#[derive(sqlx::FromRow)]
struct Row {
    document: Vec<u8>,
}

fn decode(rows: Vec<Row>) -> Result<Vec<pb::InvoiceItem>, StoreError> {
    rows.into_iter()
        .map(|r| pb::InvoiceItem::decode(r.document.as_slice()).map_err(StoreError::from))
        .collect()
}

/// Inserts a new item.
pub async fn insert(tx: &mut Tx, scope: &Scope, doc: &pb::InvoiceItem) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO invoice_items (id, account_id, livemode, customer, currency, invoice, amount, created, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(doc.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(doc.customer.as_str())
    .bind(doc.currency.as_str())
    .bind(doc.invoice.as_deref())
    .bind(doc.amount)
    .bind(doc.date)
    .bind(doc.encode_to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes back a changed item (its invoice, amount and document).
pub async fn update(tx: &mut Tx, scope: &Scope, doc: &pb::InvoiceItem) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE invoice_items SET invoice = $3, amount = $4, document = $5 WHERE account_id = $1 AND livemode = $6 AND id = $2",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(doc.invoice.as_deref())
    .bind(doc.amount)
    .bind(doc.encode_to_vec())
    .bind(scope.livemode()).execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes an item.
pub async fn delete(tx: &mut Tx, scope: &Scope, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM invoice_items WHERE account_id = $1 AND livemode = $3 AND id = $2")
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Reads one item of the account.
pub async fn find<'e, E>(executor: E, scope: &Scope, id: &str) -> Result<Option<pb::InvoiceItem>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM invoice_items WHERE account_id = $1 AND livemode = $3 AND id = $2",
    )
    .bind(scope.account())
    .bind(id)
    .bind(scope.livemode())
    .fetch_all(executor)
    .await?;
    Ok(decode(rows)?.pop())
}

/// Reads one item and locks it until the transaction ends. Callers lock the item's invoice first
/// (if it has one), so locks are always taken invoice → item.
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    id: &str,
) -> Result<Option<pb::InvoiceItem>, StoreError> {
    let sql = backend.pick(
        "SELECT document FROM invoice_items WHERE account_id = $1 AND livemode = $3 AND id = $2 FOR UPDATE",
        "SELECT document FROM invoice_items WHERE account_id = $1 AND livemode = $3 AND id = $2",
    );
    let rows: Vec<Row> = sqlx::query_as(sql)
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .fetch_all(&mut **tx)
        .await?;
    Ok(decode(rows)?.pop())
}

/// How many pending items (no invoice yet) the customer has in `currency`, counting no further than
/// `cap`: a cheap check, taking no locks, before any are locked.
pub async fn count_pending<'e, E>(
    executor: E,
    scope: &Scope,
    customer: &str,
    currency: &str,
    cap: i64,
) -> Result<i64, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let count: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT 1 AS one FROM invoice_items \
           WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND currency = $3 AND invoice IS NULL \
           LIMIT $5) AS capped",
    )
    .bind(scope.account())
    .bind(customer)
    .bind(currency)
    .bind(scope.livemode())
    .bind(cap)
    .fetch_one(executor)
    .await?;
    Ok(count)
}

/// The customer's pending items in `currency`, oldest first, at most `limit` of them, locked: an
/// item is pulled into one invoice only (PostgreSQL re-checks `invoice IS NULL` after waiting for a
/// concurrent puller).
pub async fn pending_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    customer: &str,
    currency: &str,
    limit: i64,
) -> Result<Vec<pb::InvoiceItem>, StoreError> {
    let sql = backend.pick(
        "SELECT document FROM invoice_items WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND currency = $3 \
           AND invoice IS NULL ORDER BY id LIMIT $5 FOR UPDATE",
        "SELECT document FROM invoice_items WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND currency = $3 \
           AND invoice IS NULL ORDER BY id LIMIT $5",
    );
    let rows: Vec<Row> = sqlx::query_as(sql)
        .bind(scope.account())
        .bind(customer)
        .bind(currency)
        .bind(scope.livemode())
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    decode(rows)
}

/// The items on an invoice, oldest first.
pub async fn on_invoice(
    tx: &mut Tx,
    scope: &Scope,
    invoice: &str,
) -> Result<Vec<pb::InvoiceItem>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM invoice_items WHERE account_id = $1 AND livemode = $3 AND invoice = $2 ORDER BY id",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode()).fetch_all(&mut **tx)
    .await?;
    decode(rows)
}

/// Filters of `ListInvoiceItems`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub customer: Option<String>,
    pub invoice: Option<String>,
    /// `Some(true)`: pending only; `Some(false)`: on an invoice only.
    pub pending: Option<bool>,
    pub created: Option<settle_proto::common::v1::RangeFilter>,
}

/// A page of the account's items, newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<pb::InvoiceItem>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM invoice_items WHERE ", scope);
    if let Some(customer) = &filter.customer {
        query.filter(" AND customer = ", customer.clone());
    }
    if let Some(invoice) = &filter.invoice {
        query.filter(" AND invoice = ", invoice.clone());
    }
    match filter.pending {
        Some(true) => {
            query.push(" AND invoice IS NULL");
        }
        Some(false) => {
            query.push(" AND invoice IS NOT NULL");
        }
        None => {}
    }
    push_range(&mut query, RangeColumn::Created, filter.created.as_ref());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<Row, _>(db.pool()).await?;
    Ok(page.finish(decode(rows)?))
}

/// Items per multi-row statement of [`insert_many`] (9 parameters each).
const INSERT_MANY_CHUNK: usize = 1_000;

/// Inserts new items, many rows per statement, with exactly the columns [`insert`] writes: for bulk
/// loads (the load tool's seeding).
pub async fn insert_many(tx: &mut Tx, scope: &Scope, docs: &[pb::InvoiceItem]) -> Result<(), StoreError> {
    for chunk in docs.chunks(INSERT_MANY_CHUNK) {
        let mut query = SqlBuilder::new(
            "INSERT INTO invoice_items (id, account_id, livemode, customer, currency, invoice, amount, created, document) \
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
            query.push(", ").bind(doc.invoice.clone()).push(", ").bind(doc.amount).push(", ").bind(doc.date);
            query.push(", ").bind(doc.encode_to_vec()).push(")");
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
