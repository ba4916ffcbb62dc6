//! The `payment_records`, `payment_attempt_records` and `payment_record_refunds` tables: stored
//! documents plus the columns lists and the money constraints read.

use prost::Message;
use settle_platform::Scope;
use settle_platform::db::{Backend, Db, Tx};
use settle_platform::pagination::{Page, PageRequest};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::payments::v1 as pb;

use super::StoreError;
use crate::model::payment_record::outcome_from_pb;

#[derive(sqlx::FromRow)]
struct DocumentRow {
    document: Vec<u8>,
}

fn decode<M: Message + Default>(rows: Vec<DocumentRow>) -> Result<Vec<M>, StoreError> {
    rows.into_iter().map(|r| M::decode(r.document.as_slice()).map_err(StoreError::from)).collect()
}

fn value(amount: Option<&pb::PaymentRecordAmount>) -> i64 {
    amount.map_or(0, |a| a.value)
}

fn outcome_name(outcome: i32) -> &'static str {
    outcome_from_pb(outcome).map_or("unknown", |o| o.as_str())
}

fn metadata_json(doc: &pb::PaymentRecord) -> String {
    serde_json::to_string(&doc.metadata).unwrap_or_else(|_| "{}".to_owned())
}

fn customer(doc: &pb::PaymentRecord) -> Option<&str> {
    doc.customer_details.as_ref().and_then(|d| d.customer.as_deref())
}

/// Inserts a new record (before its first attempt).
pub async fn insert(tx: &mut Tx, scope: &Scope, doc: &pb::PaymentRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO payment_records (id, account_id, livemode, customer, currency, amount, \
           latest_outcome, amount_guaranteed, amount_refunded, metadata, created, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(doc.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(customer(doc))
    .bind(doc.amount.as_ref().map_or("", |a| a.currency.as_str()))
    .bind(value(doc.amount.as_ref()))
    .bind(outcome_name(doc.latest_payment_attempt_outcome))
    .bind(value(doc.amount_guaranteed.as_ref()))
    .bind(value(doc.amount_refunded.as_ref()))
    .bind(metadata_json(doc))
    .bind(doc.created)
    .bind(doc.encode_to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes back a changed record (read with [`find_for_update`] in the same transaction). The
/// amount and currency never change.
pub async fn update(tx: &mut Tx, scope: &Scope, doc: &pb::PaymentRecord) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE payment_records SET customer = $3, latest_outcome = $4, amount_guaranteed = $5, \
           amount_refunded = $6, metadata = $7, document = $8 \
         WHERE account_id = $1 AND livemode = $9 AND id = $2",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(customer(doc))
    .bind(outcome_name(doc.latest_payment_attempt_outcome))
    .bind(value(doc.amount_guaranteed.as_ref()))
    .bind(value(doc.amount_refunded.as_ref()))
    .bind(metadata_json(doc))
    .bind(doc.encode_to_vec())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reads one record of the account.
pub async fn find(db: &Db, scope: &Scope, id: &str) -> Result<Option<pb::PaymentRecord>, StoreError> {
    let row: Option<DocumentRow> = sqlx::query_as(
        "SELECT document FROM payment_records WHERE account_id = $1 AND livemode = $3 AND id = $2",
    )
    .bind(scope.account())
    .bind(id)
    .bind(scope.livemode())
    .fetch_optional(db.pool())
    .await?;
    Ok(decode(row.into_iter().collect())?.pop())
}

/// Reads one record and locks it until the transaction ends (SQLite's write transaction already
/// excludes other writers). Every change to a record or its attempts and refunds holds this lock.
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    id: &str,
) -> Result<Option<pb::PaymentRecord>, StoreError> {
    let sql = backend.pick(
        "SELECT document FROM payment_records WHERE account_id = $1 AND livemode = $3 AND id = $2 FOR UPDATE",
        "SELECT document FROM payment_records WHERE account_id = $1 AND livemode = $3 AND id = $2",
    );
    let row: Option<DocumentRow> = sqlx::query_as(sql)
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(decode(row.into_iter().collect())?.pop())
}

/// Filters of `ListPaymentRecords` (both strict).
#[derive(Debug, Default)]
pub struct ListFilter {
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

/// One page of the account's records, newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<pb::PaymentRecord>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM payment_records WHERE ", scope);
    if let Some(after) = filter.created_after {
        query.filter(" AND created > ", after);
    }
    if let Some(before) = filter.created_before {
        query.filter(" AND created < ", before);
    }
    page.push_sql(&mut query);
    let rows = query.fetch_all::<DocumentRow, _>(db.pool()).await?;
    Ok(page.finish(decode(rows)?))
}

// === attempts ===

/// Inserts a new attempt of a record.
pub async fn insert_attempt(
    tx: &mut Tx,
    scope: &Scope,
    doc: &pb::PaymentAttemptRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO payment_attempt_records (id, account_id, livemode, payment_record, outcome, \
           created, document) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(doc.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(doc.payment_record.as_deref().unwrap_or_default())
    .bind(outcome_name(doc.outcome))
    .bind(doc.created)
    .bind(doc.encode_to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes back a changed attempt (its record is locked by the caller).
pub async fn update_attempt(
    tx: &mut Tx,
    scope: &Scope,
    doc: &pb::PaymentAttemptRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE payment_attempt_records SET outcome = $3, document = $4 \
         WHERE account_id = $1 AND livemode = $5 AND id = $2",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(outcome_name(doc.outcome))
    .bind(doc.encode_to_vec())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Every attempt of a record, oldest first, inside the caller's transaction (which holds the
/// record's lock).
pub async fn attempts_of(
    tx: &mut Tx,
    scope: &Scope,
    payment_record: &str,
) -> Result<Vec<pb::PaymentAttemptRecord>, StoreError> {
    let rows: Vec<DocumentRow> = sqlx::query_as(
        "SELECT document FROM payment_attempt_records \
         WHERE account_id = $1 AND livemode = $3 AND payment_record = $2 ORDER BY id",
    )
    .bind(scope.account())
    .bind(payment_record)
    .bind(scope.livemode())
    .fetch_all(&mut **tx)
    .await?;
    decode(rows)
}

/// Reads one attempt of the account.
pub async fn find_attempt(
    db: &Db,
    scope: &Scope,
    id: &str,
) -> Result<Option<pb::PaymentAttemptRecord>, StoreError> {
    let row: Option<DocumentRow> = sqlx::query_as(
        "SELECT document FROM payment_attempt_records WHERE account_id = $1 AND livemode = $3 AND id = $2",
    )
    .bind(scope.account())
    .bind(id)
    .bind(scope.livemode())
    .fetch_optional(db.pool())
    .await?;
    Ok(decode(row.into_iter().collect())?.pop())
}

/// One page of a record's attempts, newest first.
pub async fn list_attempts(
    db: &Db,
    scope: &Scope,
    payment_record: &str,
    page: &PageRequest,
) -> Result<Page<pb::PaymentAttemptRecord>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM payment_attempt_records WHERE ", scope);
    query.filter(" AND payment_record = ", payment_record.to_owned());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<DocumentRow, _>(db.pool()).await?;
    Ok(page.finish(decode(rows)?))
}

// === refunds ===

/// Records a reported refund. Returns `false`, changing nothing, when the account already used
/// the reference (the unique constraint decides, so two racing reports cannot both take it).
pub async fn insert_refund(
    tx: &mut Tx,
    scope: &Scope,
    payment_record: &str,
    refund: &pb::PaymentRecordReportedRefund,
) -> Result<bool, StoreError> {
    let amount = refund.amount.as_ref();
    let result = sqlx::query(
        "INSERT INTO payment_record_refunds (account_id, livemode, refund_reference, payment_record, \
           payment_attempt_record, amount, currency, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (account_id, livemode, refund_reference) DO NOTHING",
    )
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(refund.refund_reference.as_str())
    .bind(payment_record)
    .bind(refund.payment_attempt_record.as_str())
    .bind(value(amount))
    .bind(amount.map_or("", |a| a.currency.as_str()))
    .bind(refund.created)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}
