//! The `refunds` table: the stored document plus the columns the list filters read.

use prost::Message;
use settle_platform::Scope;
use settle_platform::db::{Backend, Db, Tx};
use settle_platform::pagination::{Page, PageRequest, RangeColumn, push_range};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::payments::v1 as pb;

use super::StoreError;
use crate::model::refund::{reason_from_pb, status_from_pb};

#[derive(sqlx::FromRow)]
struct DocumentRow {
    document: Vec<u8>,
}

fn decode(rows: Vec<DocumentRow>) -> Result<Vec<pb::Refund>, StoreError> {
    rows.into_iter().map(|r| pb::Refund::decode(r.document.as_slice()).map_err(StoreError::from)).collect()
}

fn metadata_json(doc: &pb::Refund) -> String {
    serde_json::to_string(&doc.metadata).unwrap_or_else(|_| "{}".to_owned())
}

/// Inserts a new refund (Stripe's refund object has no `livemode`: the scope gives it).
pub async fn insert(tx: &mut Tx, scope: &Scope, doc: &pb::Refund) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refunds (id, account_id, livemode, payment_intent, charge, status, amount, \
           currency, reason, metadata, created, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(doc.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(doc.payment_intent.as_deref())
    .bind(doc.charge.as_deref())
    .bind(doc.status.and_then(status_from_pb).map_or("unknown", |s| s.as_str()))
    .bind(doc.amount)
    .bind(doc.currency.as_str())
    .bind(doc.reason.and_then(reason_from_pb).map(|r| r.as_str()))
    .bind(metadata_json(doc))
    .bind(doc.created)
    .bind(doc.encode_to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes back a refund whose metadata changed (read with [`find_for_update`] in the same
/// transaction); nothing else about a refund changes.
pub async fn update_metadata(tx: &mut Tx, scope: &Scope, doc: &pb::Refund) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refunds SET metadata = $3, document = $4 WHERE account_id = $1 AND livemode = $5 AND id = $2",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(metadata_json(doc))
    .bind(doc.encode_to_vec())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reads one refund of the account.
pub async fn find(db: &Db, scope: &Scope, id: &str) -> Result<Option<pb::Refund>, StoreError> {
    let row: Option<DocumentRow> =
        sqlx::query_as("SELECT document FROM refunds WHERE account_id = $1 AND livemode = $3 AND id = $2")
            .bind(scope.account())
            .bind(id)
            .bind(scope.livemode())
            .fetch_optional(db.pool())
            .await?;
    Ok(decode(row.into_iter().collect())?.pop())
}

/// Reads one refund and locks it until the transaction ends (SQLite's write transaction already
/// excludes other writers).
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    id: &str,
) -> Result<Option<pb::Refund>, StoreError> {
    let sql = backend.pick(
        "SELECT document FROM refunds WHERE account_id = $1 AND livemode = $3 AND id = $2 FOR UPDATE",
        "SELECT document FROM refunds WHERE account_id = $1 AND livemode = $3 AND id = $2",
    );
    let row: Option<DocumentRow> = sqlx::query_as(sql)
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(decode(row.into_iter().collect())?.pop())
}

/// Filters of `ListRefunds`.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    pub created: Option<settle_proto::common::v1::RangeFilter>,
}

/// One page of the account's refunds, newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<pb::Refund>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM refunds WHERE ", scope);
    if let Some(payment_intent) = &filter.payment_intent {
        query.filter(" AND payment_intent = ", payment_intent.clone());
    }
    if let Some(charge) = &filter.charge {
        query.filter(" AND charge = ", charge.clone());
    }
    push_range(&mut query, RangeColumn::Created, filter.created.as_ref());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<DocumentRow, _>(db.pool()).await?;
    Ok(page.finish(decode(rows)?))
}
