//! The `invoice_payments` table. "A payment counts toward at most one invoice" is the partial
//! unique index `invoice_payments_live`, here as in payments.

use prost::Message;
use settle_platform::Scope;
use settle_platform::db::{Db, Tx};
use settle_platform::pagination::{Page, PageRequest, RangeColumn, push_range};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::invoices::v1 as pb;

use super::StoreError;

#[derive(sqlx::FromRow)]
struct Row {
    document: Vec<u8>,
}

fn decode(rows: Vec<Row>) -> Result<Vec<pb::InvoicePayment>, StoreError> {
    rows.into_iter()
        .map(|r| pb::InvoicePayment::decode(r.document.as_slice()).map_err(StoreError::from))
        .collect()
}

fn status_name(doc: &pb::InvoicePayment) -> &'static str {
    match pb::InvoicePaymentStatus::try_from(doc.status) {
        Ok(pb::InvoicePaymentStatus::Paid) => "paid",
        Ok(pb::InvoicePaymentStatus::Canceled) => "canceled",
        _ => "open",
    }
}

/// The payment an invoice payment is for: (`payment_intent` | `payment_record`, id).
pub fn payment_of(doc: &pb::InvoicePayment) -> (&'static str, &str) {
    let payment = doc.payment.as_ref();
    match payment.map(|p| p.r#type) {
        Some(t) if t == pb::InvoicePaymentPaymentType::PaymentRecord as i32 => {
            ("payment_record", payment.and_then(|p| p.payment_record.as_deref()).unwrap_or_default())
        }
        _ => ("payment_intent", payment.and_then(|p| p.payment_intent.as_deref()).unwrap_or_default()),
    }
}

/// Inserts an invoice payment made by attach saga `saga_id`.
pub async fn insert(
    tx: &mut Tx,
    scope: &Scope,
    saga_id: &str,
    doc: &pb::InvoicePayment,
) -> Result<(), sqlx::Error> {
    let (payment_type, payment) = payment_of(doc);
    sqlx::query(
        "INSERT INTO invoice_payments (id, account_id, livemode, invoice, payment_type, payment, status, \
           amount_requested, amount_paid, currency, is_default, saga_id, created, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(doc.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(doc.invoice.as_str())
    .bind(payment_type)
    .bind(payment)
    .bind(status_name(doc))
    .bind(doc.amount_requested)
    .bind(doc.amount_paid)
    .bind(doc.currency.as_str())
    .bind(doc.is_default)
    .bind(saga_id)
    .bind(doc.created)
    .bind(doc.encode_to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes back a changed invoice payment (status, amount paid).
pub async fn update(tx: &mut Tx, scope: &Scope, doc: &pb::InvoicePayment) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE invoice_payments SET status = $3, amount_paid = $4, document = $5 WHERE account_id = $1 AND livemode = $6 AND id = $2",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(status_name(doc))
    .bind(doc.amount_paid)
    .bind(doc.encode_to_vec())
    .bind(scope.livemode()).execute(&mut **tx)
    .await?;
    Ok(())
}

/// One invoice payment of the account.
pub async fn find<'e, E>(
    executor: E,
    scope: &Scope,
    id: &str,
) -> Result<Option<pb::InvoicePayment>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM invoice_payments WHERE account_id = $1 AND livemode = $3 AND id = $2",
    )
    .bind(scope.account())
    .bind(id)
    .bind(scope.livemode())
    .fetch_all(executor)
    .await?;
    Ok(decode(rows)?.pop())
}

/// The invoice payment (open or paid) that counts `payment`, if any, with its attach saga id.
pub async fn find_live_by_payment<'e, E>(
    executor: E,
    scope: &Scope,
    payment: &str,
) -> Result<Option<(pb::InvoicePayment, String)>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<(Vec<u8>, String)> = sqlx::query_as(
        "SELECT document, saga_id FROM invoice_payments WHERE account_id = $1 AND livemode = $3 AND payment = $2 AND status <> 'canceled'",
    )
    .bind(scope.account())
    .bind(payment)
    .bind(scope.livemode()).fetch_optional(executor)
    .await?;
    match row {
        None => Ok(None),
        Some((document, saga_id)) => Ok(Some((pb::InvoicePayment::decode(document.as_slice())?, saga_id))),
    }
}

/// The invoice payment attach saga `saga_id` created, if it got that far.
pub async fn find_by_saga(
    tx: &mut Tx,
    scope: &Scope,
    saga_id: &str,
) -> Result<Option<pb::InvoicePayment>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM invoice_payments WHERE account_id = $1 AND livemode = $3 AND saga_id = $2",
    )
    .bind(scope.account())
    .bind(saga_id)
    .bind(scope.livemode())
    .fetch_all(&mut **tx)
    .await?;
    Ok(decode(rows)?.pop())
}

/// The attach saga of an invoice payment.
pub async fn saga_of(tx: &mut Tx, scope: &Scope, id: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT saga_id FROM invoice_payments WHERE account_id = $1 AND livemode = $3 AND id = $2",
    )
    .bind(scope.account())
    .bind(id)
    .bind(scope.livemode())
    .fetch_optional(&mut **tx)
    .await?)
}

/// Filters of `ListInvoicePayments`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub invoice: Option<String>,
    pub status: Option<&'static str>,
    pub payment: Option<String>,
    pub created: Option<settle_proto::common::v1::RangeFilter>,
}

/// A page of the account's invoice payments, newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<pb::InvoicePayment>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM invoice_payments WHERE ", scope);
    if let Some(invoice) = &filter.invoice {
        query.filter(" AND invoice = ", invoice.clone());
    }
    if let Some(status) = filter.status {
        query.filter(" AND status = ", status.to_owned());
    }
    if let Some(payment) = &filter.payment {
        query.filter(" AND payment = ", payment.clone());
    }
    push_range(&mut query, RangeColumn::Created, filter.created.as_ref());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<Row, _>(db.pool()).await?;
    Ok(page.finish(decode(rows)?))
}

/// The invoice's payments, newest first (at most `limit`, and whether there are more), for the
/// invoice's expandable `payments` list.
pub async fn for_invoice<'e, E>(
    executor: E,
    scope: &Scope,
    invoice: &str,
    limit: i64,
) -> Result<(Vec<pb::InvoicePayment>, bool), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM invoice_payments WHERE account_id = $1 AND livemode = $4 AND invoice = $2 ORDER BY id DESC LIMIT $3",
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

/// Whether the invoice has any invoice payment that still counts or may count (open or paid).
pub async fn has_live(tx: &mut Tx, scope: &Scope, invoice: &str) -> Result<bool, StoreError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invoice_payments WHERE account_id = $1 AND livemode = $3 AND invoice = $2 AND status <> 'canceled'",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode()).fetch_one(&mut **tx)
    .await?;
    Ok(count > 0)
}

/// Whether the invoice has an invoice payment that counts or may count other than its open default
/// one (which voiding or paying out of band retires rather than refuses).
pub async fn has_live_besides_open_default<'e, E>(
    executor: E,
    scope: &Scope,
    invoice: &str,
) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invoice_payments WHERE account_id = $1 AND livemode = $4 AND invoice = $2 \
         AND status <> 'canceled' AND NOT (status = 'open' AND is_default = $3)",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(true)
    .bind(scope.livemode())
    .fetch_one(executor)
    .await?;
    Ok(count > 0)
}

/// Whether the invoice's default invoice payment (the one PayInvoice made) is still `open`.
/// The invoice's open default invoice payment (the one PayInvoice created), if any.
pub async fn open_default<'e, E>(
    executor: E,
    scope: &Scope,
    invoice: &str,
) -> Result<Option<pb::InvoicePayment>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<Row> = sqlx::query_as(
        "SELECT document FROM invoice_payments \
         WHERE account_id = $1 AND livemode = $4 AND invoice = $2 AND status = 'open' AND is_default = $3 LIMIT 1",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(true)
    .bind(scope.livemode()).fetch_optional(executor)
    .await?;
    row.map(|r| pb::InvoicePayment::decode(r.document.as_slice()).map_err(StoreError::from)).transpose()
}

pub async fn has_open_default(tx: &mut Tx, scope: &Scope, invoice: &str) -> Result<bool, StoreError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invoice_payments WHERE account_id = $1 AND livemode = $4 AND invoice = $2 AND status = 'open' AND is_default = $3",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(true)
    .bind(scope.livemode()).fetch_one(&mut **tx)
    .await?;
    Ok(count > 0)
}
