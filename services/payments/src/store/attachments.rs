//! The `payment_attachments` table. "At most one live attachment per payment" is the partial
//! unique index `payment_attachments_active`, not a check in code.

use settle_platform::Scope;
use settle_platform::db::Tx;

use super::StoreError;
use crate::domain::attachment::{AttachmentStatus, PaymentKind};

/// One attachment as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttachmentRow {
    pub id: String,
    pub payment: String,
    pub payment_type: String,
    pub invoice: String,
    pub saga_id: String,
    pub status: String,
    pub customer: String,
    pub currency: String,
    pub created: i64,
    pub updated: i64,
}

impl AttachmentRow {
    pub fn status(&self) -> Option<AttachmentStatus> {
        AttachmentStatus::parse(&self.status)
    }

    pub fn kind(&self) -> Option<PaymentKind> {
        PaymentKind::parse(&self.payment_type)
    }
}

/// `SELECT <every column> … WHERE account_id = $1` followed by `$filter` (a literal).
macro_rules! select {
    ($filter:literal) => {
        concat!(
            "SELECT id, payment, payment_type, invoice, saga_id, status, customer, currency, created, \
             updated FROM payment_attachments WHERE account_id = $1 AND livemode = $2",
            $filter
        )
    };
}

/// The attachment saga `saga_id` made (or released) on `payment`.
pub async fn find_by_saga(
    tx: &mut Tx,
    scope: &Scope,
    saga_id: &str,
    payment: &str,
) -> Result<Option<AttachmentRow>, StoreError> {
    Ok(sqlx::query_as(select!(" AND saga_id = $3 AND payment = $4"))
        .bind(scope.account())
        .bind(scope.livemode())
        .bind(saga_id)
        .bind(payment)
        .fetch_optional(&mut **tx)
        .await?)
}

/// In one round trip, what a reservation by saga `saga_id` must know of `payment`: the attachment that
/// saga made (or released) on it, and the payment's live attachment (reserved or confirmed), if any.
pub async fn find_for_reserve(
    tx: &mut Tx,
    scope: &Scope,
    saga_id: &str,
    payment: &str,
) -> Result<(Option<AttachmentRow>, Option<AttachmentRow>), StoreError> {
    let rows: Vec<AttachmentRow> =
        sqlx::query_as(select!(" AND payment = $3 AND (saga_id = $4 OR status <> 'released')"))
            .bind(scope.account())
            .bind(scope.livemode())
            .bind(payment)
            .bind(saga_id)
            .fetch_all(&mut **tx)
            .await?;
    let mut by_saga = None;
    let mut active = None;
    for row in rows {
        if row.saga_id == saga_id {
            by_saga = Some(row);
        } else if row.status != AttachmentStatus::Released.as_str() {
            active = Some(row);
        }
    }
    Ok((by_saga, active))
}

/// The payment's live (reserved or confirmed) attachment.
pub async fn find_active<'e, E>(
    executor: E,
    scope: &Scope,
    payment: &str,
) -> Result<Option<AttachmentRow>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_as(select!(" AND payment = $3 AND status <> 'released'"))
        .bind(scope.account())
        .bind(scope.livemode())
        .bind(payment)
        .fetch_optional(executor)
        .await?)
}

/// Inserts an attachment. A unique violation means the payment already has a live attachment
/// (or the saga already has a row for it); the caller turns that into the right error.
pub async fn insert(tx: &mut Tx, scope: &Scope, row: &AttachmentRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_attachments (id, account_id, livemode, payment, payment_type, invoice, \
           saga_id, status, customer, currency, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(row.id.as_str())
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(row.payment.as_str())
    .bind(row.payment_type.as_str())
    .bind(row.invoice.as_str())
    .bind(row.saga_id.as_str())
    .bind(row.status.as_str())
    .bind(row.customer.as_str())
    .bind(row.currency.as_str())
    .bind(row.created)
    .bind(row.updated)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves an attachment to `status`.
pub async fn set_status(
    tx: &mut Tx,
    scope: &Scope,
    id: &str,
    status: AttachmentStatus,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE payment_attachments SET status = $3, updated = $4 WHERE account_id = $1 AND livemode = $5 AND id = $2")
        .bind(scope.account())
        .bind(id)
        .bind(status.as_str())
        .bind(now)
        .bind(scope.livemode()).execute(&mut **tx)
        .await?;
    Ok(())
}
