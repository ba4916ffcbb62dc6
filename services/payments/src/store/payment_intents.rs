//! The `payment_intents` table: the stored document plus the columns lists and search read.

use prost::Message;
use settle_platform::Scope;
use settle_platform::db::{Backend, Db, Tx};
use settle_platform::pagination::{Page, PageRequest, RangeColumn, push_range};
use settle_platform::search::{Field, FieldKind, Query};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::payments::v1 as pb;

use super::StoreError;
use crate::model::status_from_pb;

/// Fields `SearchPaymentIntents` accepts (Stripe's), and the columns they read.
pub const SEARCH_FIELDS: &[Field] = &[
    Field { name: "amount", kind: FieldKind::Number, column: "amount" },
    Field { name: "created", kind: FieldKind::Number, column: "created" },
    Field { name: "currency", kind: FieldKind::Text, column: "currency" },
    Field { name: "customer", kind: FieldKind::Text, column: "customer" },
    Field { name: "status", kind: FieldKind::Text, column: "status" },
];

#[derive(sqlx::FromRow)]
struct DocumentRow {
    document: Vec<u8>,
}

fn decode(rows: Vec<DocumentRow>) -> Result<Vec<pb::PaymentIntent>, StoreError> {
    rows.into_iter()
        .map(|r| pb::PaymentIntent::decode(r.document.as_slice()).map_err(StoreError::from))
        .collect()
}

fn status_name(doc: &pb::PaymentIntent) -> &'static str {
    status_from_pb(doc.status).map_or("unknown", |s| s.as_str())
}

fn metadata_json(doc: &pb::PaymentIntent) -> String {
    serde_json::to_string(&doc.metadata).unwrap_or_else(|_| "{}".to_owned())
}

/// Inserts a new intent.
pub async fn insert(tx: &mut Tx, scope: &Scope, doc: &pb::PaymentIntent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO payment_intents (id, account_id, livemode, status, amount, amount_capturable, \
           amount_received, currency, customer, metadata, created, document, latest_charge) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(doc.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(status_name(doc))
    .bind(doc.amount)
    .bind(doc.amount_capturable)
    .bind(doc.amount_received)
    .bind(doc.currency.as_str())
    .bind(doc.customer.as_deref())
    .bind(metadata_json(doc))
    .bind(doc.created)
    .bind(doc.encode_to_vec())
    .bind(doc.latest_charge.as_deref())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes back a changed intent (read with [`find_for_update`] in the same transaction).
pub async fn update(tx: &mut Tx, scope: &Scope, doc: &pb::PaymentIntent) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE payment_intents SET status = $3, amount = $4, amount_capturable = $5, \
           amount_received = $6, currency = $7, customer = $8, metadata = $9, document = $10, \
           latest_charge = $11 \
         WHERE account_id = $1 AND livemode = $12 AND id = $2",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(status_name(doc))
    .bind(doc.amount)
    .bind(doc.amount_capturable)
    .bind(doc.amount_received)
    .bind(doc.currency.as_str())
    .bind(doc.customer.as_deref())
    .bind(metadata_json(doc))
    .bind(doc.encode_to_vec())
    .bind(doc.latest_charge.as_deref())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reads one intent of the account.
pub async fn find(db: &Db, scope: &Scope, id: &str) -> Result<Option<pb::PaymentIntent>, StoreError> {
    let row: Option<DocumentRow> = sqlx::query_as(
        "SELECT document FROM payment_intents WHERE account_id = $1 AND livemode = $3 AND id = $2",
    )
    .bind(scope.account())
    .bind(id)
    .bind(scope.livemode())
    .fetch_optional(db.pool())
    .await?;
    Ok(decode(row.into_iter().collect())?.pop())
}

/// Reads one intent and locks it until the transaction ends (SQLite's write transaction already
/// excludes other writers).
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    id: &str,
) -> Result<Option<pb::PaymentIntent>, StoreError> {
    let sql = backend.pick(
        "SELECT document FROM payment_intents WHERE account_id = $1 AND livemode = $3 AND id = $2 FOR UPDATE",
        "SELECT document FROM payment_intents WHERE account_id = $1 AND livemode = $3 AND id = $2",
    );
    let row: Option<DocumentRow> = sqlx::query_as(sql)
        .bind(scope.account())
        .bind(id)
        .bind(scope.livemode())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(decode(row.into_iter().collect())?.pop())
}

/// Filters of `ListPaymentIntents`.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub customer: Option<String>,
    pub created: Option<settle_proto::common::v1::RangeFilter>,
}

/// One page of the account's intents, newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<pb::PaymentIntent>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM payment_intents WHERE ", scope);
    if let Some(customer) = &filter.customer {
        query.filter(" AND customer = ", customer.clone());
    }
    push_range(&mut query, RangeColumn::Created, filter.created.as_ref());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<DocumentRow, _>(db.pool()).await?;
    Ok(page.finish(decode(rows)?))
}

/// One page of the account's intents matching a search query, newest first, and how many match
/// in all.
pub async fn search(
    db: &Db,
    scope: &Scope,
    query: &Query,
    after: Option<&str>,
    limit: u32,
) -> Result<(Page<pb::PaymentIntent>, i64), StoreError> {
    let mut rows_sql = SqlBuilder::scoped("SELECT document FROM payment_intents WHERE ", scope);
    query.push_sql(&mut rows_sql, db.backend());
    if let Some(after) = after {
        rows_sql.filter(" AND id < ", after.to_owned());
    }
    rows_sql.push(" ORDER BY id DESC LIMIT ").bind(i64::from(limit) + 1);
    let mut rows = decode(rows_sql.fetch_all::<DocumentRow, _>(db.pool()).await?)?;

    let mut count_sql = SqlBuilder::scoped("SELECT COUNT(*) FROM payment_intents WHERE ", scope);
    query.push_sql(&mut count_sql, db.backend());
    let total: i64 = count_sql.fetch_scalar(db.pool()).await?;

    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((Page { data: rows, has_more }, total))
}

/// What refunds have taken back from an intent so far (`None`: no such intent). Read it after
/// [`find_for_update`] in the same transaction, so it cannot change before the caller writes.
pub async fn amount_refunded(tx: &mut Tx, scope: &Scope, id: &str) -> Result<Option<i64>, StoreError> {
    let refunded: Option<i64> = sqlx::query_scalar(
        "SELECT amount_refunded FROM payment_intents WHERE account_id = $1 AND livemode = $3 AND id = $2",
    )
    .bind(scope.account())
    .bind(id)
    .bind(scope.livemode())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(refunded)
}

/// What became of [`add_refunded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddRefunded {
    Added,
    /// The database refused: the total would exceed `amount_received`. On PostgreSQL the
    /// transaction is aborted and must be dropped.
    OverReceived,
    NoSuchIntent,
}

/// Adds a refund's amount to the intent's refunded total. The CHECK constraint on the column is a
/// backstop behind the caller's own check, which runs under the intent's row lock.
pub async fn add_refunded(
    tx: &mut Tx,
    scope: &Scope,
    id: &str,
    amount: i64,
) -> Result<AddRefunded, StoreError> {
    let result = sqlx::query(
        "UPDATE payment_intents SET amount_refunded = amount_refunded + $3 \
         WHERE account_id = $1 AND livemode = $4 AND id = $2",
    )
    .bind(scope.account())
    .bind(id)
    .bind(amount)
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await;
    match result {
        Ok(done) if done.rows_affected() == 0 => Ok(AddRefunded::NoSuchIntent),
        Ok(_) => Ok(AddRefunded::Added),
        Err(sqlx::Error::Database(error)) if error.is_check_violation() => Ok(AddRefunded::OverReceived),
        Err(error) => Err(error.into()),
    }
}

/// The id of the account's intent whose latest charge is `charge` (`ch_…`).
pub async fn find_id_by_charge(
    tx: &mut Tx,
    scope: &Scope,
    charge: &str,
) -> Result<Option<String>, StoreError> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM payment_intents WHERE account_id = $1 AND livemode = $3 AND latest_charge = $2",
    )
    .bind(scope.account())
    .bind(charge)
    .bind(scope.livemode())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(id)
}
