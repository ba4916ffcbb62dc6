//! The `refund_claims` and `refund_claim_items` tables, and the `amount_claimed` column of the
//! refunds they claim (`refunds`, `payment_record_refunds`). "Never linked for more than it
//! refunded" is the column's CHECK, behind the claim rules applied under the refund's row lock.

use settle_platform::Scope;
use settle_platform::db::{Backend, DbBool, Tx};

use super::StoreError;
use crate::domain::refund_claim::{ClaimsStatus, RefundKind};

/// Which refund a claim names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefundKey {
    /// A Refund (`re_…`).
    Refund(String),
    /// A refund reported on a payment record, by its `refund_reference` (the `refund_group`).
    RecordRefund { payment_record: String, refund_group: String },
}

impl RefundKey {
    pub fn kind(&self) -> RefundKind {
        match self {
            RefundKey::Refund(_) => RefundKind::Refund,
            RefundKey::RecordRefund { .. } => RefundKind::PaymentRecordRefund,
        }
    }

    /// How messages name it.
    pub fn name(&self) -> String {
        match self {
            RefundKey::Refund(id) => id.clone(),
            RefundKey::RecordRefund { payment_record, refund_group } => {
                format!("{payment_record} (refund group {refund_group:?})")
            }
        }
    }
}

/// A saga's claims as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimsRow {
    pub saga_id: String,
    /// Empty on a release placeholder.
    pub credit_note: String,
    /// Empty on a release placeholder.
    pub invoice: String,
    pub status: String,
    pub created: i64,
    pub updated: i64,
}

impl ClaimsRow {
    pub fn status(&self) -> Option<ClaimsStatus> {
        ClaimsStatus::parse(&self.status)
    }
}

/// One claimed refund as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ItemRow {
    /// Position in the saga's claims.
    pub ordinal: i64,
    pub refund_type: String,
    pub refund: Option<String>,
    pub payment_record: Option<String>,
    pub refund_group: Option<String>,
    /// The refunded payment (`pi_…` or `pr_…`).
    pub payment: String,
    pub amount: i64,
    pub currency: String,
    #[sqlx(try_from = "DbBool")]
    pub created_by_claim: bool,
}

impl ItemRow {
    pub fn new(ordinal: usize, key: &RefundKey, payment: &str, amount: i64, currency: &str) -> Self {
        let (refund, payment_record, refund_group) = match key {
            RefundKey::Refund(id) => (Some(id.clone()), None, None),
            RefundKey::RecordRefund { payment_record, refund_group } => {
                (None, Some(payment_record.clone()), Some(refund_group.clone()))
            }
        };
        ItemRow {
            ordinal: i64::try_from(ordinal).unwrap_or(i64::MAX),
            refund_type: key.kind().as_str().to_owned(),
            refund,
            payment_record,
            refund_group,
            payment: payment.to_owned(),
            amount,
            currency: currency.to_owned(),
            created_by_claim: false,
        }
    }

    /// The refund it claims; `None` only for a damaged row.
    pub fn key(&self) -> Option<RefundKey> {
        match RefundKind::parse(&self.refund_type)? {
            RefundKind::Refund => self.refund.clone().map(RefundKey::Refund),
            RefundKind::PaymentRecordRefund => Some(RefundKey::RecordRefund {
                payment_record: self.payment_record.clone()?,
                refund_group: self.refund_group.clone()?,
            }),
        }
    }
}

macro_rules! select_claims {
    ($suffix:literal) => {
        concat!(
            "SELECT saga_id, credit_note, invoice, status, created, updated FROM refund_claims \
             WHERE account_id = $1 AND livemode = $3 AND saga_id = $2",
            $suffix
        )
    };
}

/// Records a saga's claims row unless the saga already has one. Returns whether it was inserted;
/// `false` means the saga ran before (on PostgreSQL a concurrent insert of the same saga is waited
/// for, so the row it made is visible to the caller's next statement).
pub async fn insert_if_absent(tx: &mut Tx, scope: &Scope, row: &ClaimsRow) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO refund_claims (account_id, saga_id, credit_note, invoice, status, created, updated, livemode) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (account_id, saga_id) DO NOTHING",
    )
    .bind(scope.account())
    .bind(row.saga_id.as_str())
    .bind(row.credit_note.as_str())
    .bind(row.invoice.as_str())
    .bind(row.status.as_str())
    .bind(row.created)
    .bind(row.updated)
    .bind(scope.livemode()).execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The saga's claims row.
pub async fn find<'e, E>(executor: E, scope: &Scope, saga_id: &str) -> Result<Option<ClaimsRow>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_as(select_claims!(""))
        .bind(scope.account())
        .bind(saga_id)
        .bind(scope.livemode())
        .fetch_optional(executor)
        .await?)
}

/// The saga's claims row, locked until the transaction ends.
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    saga_id: &str,
) -> Result<Option<ClaimsRow>, StoreError> {
    let sql = backend.pick(select_claims!(" FOR UPDATE"), select_claims!(""));
    Ok(sqlx::query_as(sql)
        .bind(scope.account())
        .bind(saga_id)
        .bind(scope.livemode())
        .fetch_optional(&mut **tx)
        .await?)
}

/// Moves the saga's claims to `status`.
pub async fn set_status(
    tx: &mut Tx,
    scope: &Scope,
    saga_id: &str,
    status: ClaimsStatus,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE refund_claims SET status = $3, updated = $4 WHERE account_id = $1 AND livemode = $5 AND saga_id = $2")
        .bind(scope.account())
        .bind(saga_id)
        .bind(status.as_str())
        .bind(now)
        .bind(scope.livemode()).execute(&mut **tx)
        .await?;
    Ok(())
}

/// The saga's claimed refunds, in order.
pub async fn items<'e, E>(executor: E, scope: &Scope, saga_id: &str) -> Result<Vec<ItemRow>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_as(
        "SELECT ordinal, refund_type, refund, payment_record, refund_group, payment, amount, currency, \
           created_by_claim \
         FROM refund_claim_items WHERE account_id = $1 AND livemode = $3 AND saga_id = $2 ORDER BY ordinal",
    )
    .bind(scope.account())
    .bind(saga_id)
    .bind(scope.livemode())
    .fetch_all(executor)
    .await?)
}

/// Records one claimed refund of the saga.
pub async fn insert_item(
    tx: &mut Tx,
    scope: &Scope,
    saga_id: &str,
    item: &ItemRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refund_claim_items (account_id, livemode, saga_id, ordinal, refund_type, refund, \
           payment_record, refund_group, payment, amount, currency, created_by_claim) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(saga_id)
    .bind(item.ordinal)
    .bind(item.refund_type.as_str())
    .bind(item.refund.as_deref())
    .bind(item.payment_record.as_deref())
    .bind(item.refund_group.as_deref())
    .bind(item.payment.as_str())
    .bind(item.amount)
    .bind(item.currency.as_str())
    .bind(item.created_by_claim)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// === the refunds' claimed amounts ===

/// A refund's money, as read under its row lock.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LockedRefund {
    /// The refunded payment (`pi_…` or `pr_…`).
    pub payment: String,
    /// A Refund's status; a reported payment-record refund has none (it was reported refunded).
    #[sqlx(default)]
    pub status: Option<String>,
    pub amount: i64,
    pub amount_claimed: i64,
    pub currency: String,
}

/// The payment a refund refunds, without locking anything (it never changes), or `None` when the
/// account has no such refund. Callers lock the payment before the refund.
pub async fn payment_of(tx: &mut Tx, scope: &Scope, key: &RefundKey) -> Result<Option<String>, StoreError> {
    let query = match key {
        RefundKey::Refund(id) => sqlx::query_scalar(
            "SELECT payment_intent FROM refunds WHERE account_id = $1 AND livemode = $3 AND id = $2",
        )
        .bind(scope.account())
        .bind(id.as_str()),
        RefundKey::RecordRefund { payment_record, refund_group } => sqlx::query_scalar(
            "SELECT payment_record FROM payment_record_refunds \
             WHERE account_id = $1 AND livemode = $4 AND payment_record = $2 AND refund_reference = $3",
        )
        .bind(scope.account())
        .bind(payment_record.as_str())
        .bind(refund_group.as_str()),
    };
    Ok(query.bind(scope.livemode()).fetch_optional(&mut **tx).await?)
}

/// Reads a refund's money and locks its row until the transaction ends (SQLite's write
/// transaction already excludes other writers).
pub async fn lock(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    key: &RefundKey,
) -> Result<Option<LockedRefund>, StoreError> {
    let query = match key {
        RefundKey::Refund(id) => sqlx::query_as(backend.pick(
            "SELECT payment_intent AS payment, status, amount, amount_claimed, currency FROM refunds \
             WHERE account_id = $1 AND livemode = $3 AND id = $2 FOR UPDATE",
            "SELECT payment_intent AS payment, status, amount, amount_claimed, currency FROM refunds \
             WHERE account_id = $1 AND livemode = $3 AND id = $2",
        ))
        .bind(scope.account())
        .bind(id.as_str()),
        RefundKey::RecordRefund { payment_record, refund_group } => sqlx::query_as(backend.pick(
            "SELECT payment_record AS payment, amount, amount_claimed, currency \
             FROM payment_record_refunds \
             WHERE account_id = $1 AND livemode = $4 AND payment_record = $2 AND refund_reference = $3 FOR UPDATE",
            "SELECT payment_record AS payment, amount, amount_claimed, currency \
             FROM payment_record_refunds \
             WHERE account_id = $1 AND livemode = $4 AND payment_record = $2 AND refund_reference = $3",
        ))
        .bind(scope.account())
        .bind(payment_record.as_str())
        .bind(refund_group.as_str()),
    };
    Ok(query.bind(scope.livemode()).fetch_optional(&mut **tx).await?)
}

/// What became of [`add_claimed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddClaimed {
    Added,
    /// The database refused: the claimed amount would leave `0..=amount`. On PostgreSQL the
    /// transaction is aborted and must be dropped.
    OutOfRange,
    NoSuchRefund,
}

/// Adds `delta` (negative to give back) to a refund's claimed amount. The CHECK constraint is the
/// backstop behind the caller's own check, made under the refund's row lock.
pub async fn add_claimed(
    tx: &mut Tx,
    scope: &Scope,
    key: &RefundKey,
    delta: i64,
) -> Result<AddClaimed, StoreError> {
    let query = match key {
        RefundKey::Refund(id) => sqlx::query(
            "UPDATE refunds SET amount_claimed = amount_claimed + $3 WHERE account_id = $1 AND livemode = $4 AND id = $2",
        )
        .bind(scope.account())
        .bind(id.as_str())
        .bind(delta),
        RefundKey::RecordRefund { payment_record, refund_group } => sqlx::query(
            "UPDATE payment_record_refunds SET amount_claimed = amount_claimed + $4 \
             WHERE account_id = $1 AND livemode = $5 AND payment_record = $2 AND refund_reference = $3",
        )
        .bind(scope.account())
        .bind(payment_record.as_str())
        .bind(refund_group.as_str())
        .bind(delta),
    };
    match query.bind(scope.livemode()).execute(&mut **tx).await {
        Ok(done) if done.rows_affected() == 0 => Ok(AddClaimed::NoSuchRefund),
        Ok(_) => Ok(AddClaimed::Added),
        Err(sqlx::Error::Database(error)) if error.is_check_violation() => Ok(AddClaimed::OutOfRange),
        Err(error) => Err(error.into()),
    }
}
