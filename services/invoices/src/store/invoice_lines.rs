//! The `invoice_lines` table: the lines of each invoice, in id (creation) order.

use prost::Message;
use settle_platform::Scope;
use settle_platform::db::{Db, Tx};
use settle_platform::pagination::{Page, PageRequest};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::invoices::v1 as pb;

use super::StoreError;
use crate::model::lines::item_of;

#[derive(sqlx::FromRow)]
struct Row {
    document: Vec<u8>,
}

fn decode(rows: Vec<Row>) -> Result<Vec<pb::InvoiceLineItem>, StoreError> {
    rows.into_iter()
        .map(|r| pb::InvoiceLineItem::decode(r.document.as_slice()).map_err(StoreError::from))
        .collect()
}

/// Inserts a new line.
pub async fn insert(tx: &mut Tx, scope: &Scope, doc: &pb::InvoiceLineItem) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO invoice_lines (id, account_id, livemode, invoice, invoice_item, amount, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(doc.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(doc.invoice.as_deref().unwrap_or_default())
    .bind(item_of(doc).unwrap_or_default())
    .bind(doc.amount)
    .bind(doc.encode_to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes back a changed line.
pub async fn update(tx: &mut Tx, scope: &Scope, doc: &pb::InvoiceLineItem) -> Result<(), StoreError> {
    sqlx::query("UPDATE invoice_lines SET amount = $3, document = $4 WHERE account_id = $1 AND livemode = $5 AND id = $2")
        .bind(scope.account())
        .bind(doc.id.as_str())
        .bind(doc.amount)
        .bind(doc.encode_to_vec())
        .bind(scope.livemode()).execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes one line.
pub async fn delete(tx: &mut Tx, scope: &Scope, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM invoice_lines WHERE account_id = $1 AND livemode = $3 AND id = $2")
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes every line of an invoice.
pub async fn delete_for_invoice(tx: &mut Tx, scope: &Scope, invoice: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM invoice_lines WHERE account_id = $1 AND livemode = $3 AND invoice = $2")
        .bind(scope.account())
        .bind(invoice)
        .bind(scope.livemode())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Every line of an invoice, in line order (at most 250).
pub async fn all(tx: &mut Tx, scope: &Scope, invoice: &str) -> Result<Vec<pb::InvoiceLineItem>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM invoice_lines WHERE account_id = $1 AND livemode = $3 AND invoice = $2 ORDER BY id",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode()).fetch_all(&mut **tx)
    .await?;
    decode(rows)
}

/// The line showing `item`, if it is on an invoice.
pub async fn for_item(
    tx: &mut Tx,
    scope: &Scope,
    item: &str,
) -> Result<Option<pb::InvoiceLineItem>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM invoice_lines WHERE account_id = $1 AND livemode = $3 AND invoice_item = $2",
    )
    .bind(scope.account())
    .bind(item)
    .bind(scope.livemode())
    .fetch_all(&mut **tx)
    .await?;
    Ok(decode(rows)?.pop())
}

/// The first `limit` lines of an invoice and whether it has more, for the invoice's `lines` list.
pub async fn first<'e, E>(
    executor: E,
    scope: &Scope,
    invoice: &str,
    limit: i64,
) -> Result<(Vec<pb::InvoiceLineItem>, bool), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM invoice_lines WHERE account_id = $1 AND livemode = $4 AND invoice = $2 ORDER BY id LIMIT $3",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(limit + 1)
    .bind(scope.livemode()).fetch_all(executor)
    .await?;
    let mut data = decode(rows)?;
    let has_more = data.len() as i64 > limit;
    data.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((data, has_more))
}

/// A page of an invoice's lines, in line order.
pub async fn page(
    db: &Db,
    scope: &Scope,
    invoice: &str,
    page: &PageRequest,
) -> Result<Page<pb::InvoiceLineItem>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM invoice_lines WHERE ", scope);
    query.filter(" AND invoice = ", invoice.to_owned());
    page.push_sql_oldest_first(&mut query);
    let rows = query.fetch_all::<Row, _>(db.pool()).await?;
    Ok(page.finish(decode(rows)?))
}

/// Lines per multi-row statement of [`insert_many`] (6 parameters each).
const INSERT_MANY_CHUNK: usize = 1_000;

/// Inserts new lines, many rows per statement, with exactly the columns [`insert`] writes: for bulk
/// loads (the load tool's seeding).
pub async fn insert_many(tx: &mut Tx, scope: &Scope, docs: &[pb::InvoiceLineItem]) -> Result<(), StoreError> {
    for chunk in docs.chunks(INSERT_MANY_CHUNK) {
        let mut query = SqlBuilder::new(
            "INSERT INTO invoice_lines (id, account_id, livemode, invoice, invoice_item, amount, document) VALUES ",
        );
        for (i, doc) in chunk.iter().enumerate() {
            query.push(if i == 0 { "(" } else { ", (" });
            query.bind(doc.id.clone()).push(", ").bind(scope.account().to_owned());
            query.push(", ").bind(scope.livemode());
            query.push(", ").bind(doc.invoice.clone().unwrap_or_default());
            query.push(", ").bind(item_of(doc).unwrap_or_default().to_owned());
            query.push(", ").bind(doc.amount).push(", ").bind(doc.encode_to_vec()).push(")");
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
