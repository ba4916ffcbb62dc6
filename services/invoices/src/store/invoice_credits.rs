//! The `invoice_credits` table: the credit each credit note gives its invoice, one row per issue
//! saga. Callers change a credit only while holding its invoice's row lock
//! ([`super::invoices::find_for_update`]), so what [`summary`] and [`reserved_pre_payment`] read
//! under that lock stays true until they commit. Lock order: the invoice row, then the credit row,
//! then the customer's balance ledger.

use prost::Message;
use settle_platform::Scope;
use settle_platform::db::{Backend, Tx};
use settle_proto::settle::invoices::v1 as pb;

use super::StoreError;
use crate::model::credit::status;

/// A credit as stored: its document and the request parts the document does not show.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCredit {
    pub credit: pb::InvoiceCredit,
    /// ReserveInvoiceCredit's `refund_amount`.
    pub refund_amount: i64,
    /// ReserveInvoiceCredit's `out_of_band_amount`.
    pub out_of_band_amount: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    document: Vec<u8>,
    refund_amount: i64,
    out_of_band_amount: i64,
}

fn decode(row: Option<Row>) -> Result<Option<StoredCredit>, StoreError> {
    row.map(|row| {
        Ok(StoredCredit {
            credit: pb::InvoiceCredit::decode(row.document.as_slice())?,
            refund_amount: row.refund_amount,
            out_of_band_amount: row.out_of_band_amount,
        })
    })
    .transpose()
}

fn status_name(credit: &pb::InvoiceCredit) -> &'static str {
    // A document without a status cannot be written: the CHECK on `status` refuses ''.
    status(credit).map_or("", |s| s.as_str())
}

macro_rules! select {
    ($where:literal, $suffix:literal) => {
        concat!(
            "SELECT document, refund_amount, out_of_band_amount FROM invoice_credits WHERE account_id = $1 AND livemode = $3 AND ",
            $where,
            " = $2",
            $suffix
        )
    };
}

/// Records a new credit unless its saga already has one or its credit note already has one.
/// Returns whether it was inserted; `false` means one of the two exists (on PostgreSQL a concurrent
/// insert of either is waited for, so the caller's next statement sees the row it made).
pub async fn insert_if_absent(tx: &mut Tx, scope: &Scope, stored: &StoredCredit) -> Result<bool, StoreError> {
    let c = &stored.credit;
    let done = sqlx::query(
        "INSERT INTO invoice_credits (account_id, saga_id, invoice, credit_note, status, amount, \
           pre_payment_amount, post_payment_amount, credit_amount, refund_amount, out_of_band_amount, \
           customer, currency, credit_note_index, customer_balance_transaction, reversal_saga_id, \
           reversal_customer_balance_transaction, created, updated, document, livemode) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
         ON CONFLICT DO NOTHING",
    )
    .bind(scope.account())
    .bind(c.saga_id.as_str())
    .bind(c.invoice.as_str())
    .bind(c.credit_note.as_str())
    .bind(status_name(c))
    .bind(c.amount)
    .bind(c.pre_payment_amount)
    .bind(c.post_payment_amount)
    .bind(c.credit_amount)
    .bind(stored.refund_amount)
    .bind(stored.out_of_band_amount)
    .bind(c.customer.as_str())
    .bind(c.currency.as_str())
    .bind(i64::from(c.credit_note_index))
    .bind(c.customer_balance_transaction.as_deref())
    .bind(c.reversal_saga_id.as_deref())
    .bind(c.reversal_customer_balance_transaction.as_deref())
    .bind(c.created)
    .bind(c.updated)
    .bind(c.encode_to_vec())
    .bind(scope.livemode()).execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Writes back a credit's new status and what came with it (read in the same transaction, under
/// its invoice's lock). The amounts never change after the reservation.
pub async fn update(tx: &mut Tx, scope: &Scope, credit: &pb::InvoiceCredit) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE invoice_credits SET status = $3, customer_balance_transaction = $4, reversal_saga_id = $5, \
           reversal_customer_balance_transaction = $6, updated = $7, document = $8 \
         WHERE account_id = $1 AND livemode = $9 AND saga_id = $2",
    )
    .bind(scope.account())
    .bind(credit.saga_id.as_str())
    .bind(status_name(credit))
    .bind(credit.customer_balance_transaction.as_deref())
    .bind(credit.reversal_saga_id.as_deref())
    .bind(credit.reversal_customer_balance_transaction.as_deref())
    .bind(credit.updated)
    .bind(credit.encode_to_vec())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The credit an issue saga reserved.
pub async fn find<'e, E>(
    executor: E,
    scope: &Scope,
    saga_id: &str,
) -> Result<Option<StoredCredit>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    decode(
        sqlx::query_as(select!("saga_id", ""))
            .bind(scope.account())
            .bind(saga_id)
            .bind(scope.livemode())
            .fetch_optional(executor)
            .await?,
    )
}

/// The credit an issue saga reserved, locked until the transaction ends (the caller holds its
/// invoice's lock already).
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    saga_id: &str,
) -> Result<Option<StoredCredit>, StoreError> {
    let sql = backend.pick(select!("saga_id", " FOR UPDATE"), select!("saga_id", ""));
    decode(
        sqlx::query_as(sql)
            .bind(scope.account())
            .bind(saga_id)
            .bind(scope.livemode())
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// The credit of a credit note.
pub async fn find_by_credit_note<'e, E>(
    executor: E,
    scope: &Scope,
    credit_note: &str,
) -> Result<Option<StoredCredit>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let query = sqlx::query_as(select!("credit_note", ""))
        .bind(scope.account())
        .bind(credit_note)
        .bind(scope.livemode());
    decode(query.fetch_optional(executor).await?)
}

/// The credit of a credit note, locked until the transaction ends (the caller holds its invoice's
/// lock already).
pub async fn find_by_credit_note_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    credit_note: &str,
) -> Result<Option<StoredCredit>, StoreError> {
    let sql = backend.pick(select!("credit_note", " FOR UPDATE"), select!("credit_note", ""));
    decode(
        sqlx::query_as(sql)
            .bind(scope.account())
            .bind(credit_note)
            .bind(scope.livemode())
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// The credit a void saga reversed.
pub async fn find_by_reversal<'e, E>(
    executor: E,
    scope: &Scope,
    reversal_saga_id: &str,
) -> Result<Option<StoredCredit>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let query = sqlx::query_as(select!("reversal_saga_id", ""))
        .bind(scope.account())
        .bind(reversal_saga_id)
        .bind(scope.livemode());
    decode(query.fetch_optional(executor).await?)
}

/// What an invoice's credits add up to, for a new reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct CreditSummary {
    /// Σ `amount` of the reserved and applied credits (the non-void credit notes).
    pub credited: i64,
    /// Σ `pre_payment_amount` of the reserved credits.
    pub reserved_pre_payment: i64,
    /// The highest `credit_note_index` of the credits that are not released (0 when none).
    pub highest_index: i64,
}

/// The invoice's credits, summed. Read it under the invoice's row lock.
pub async fn summary<'e, E>(executor: E, scope: &Scope, invoice: &str) -> Result<CreditSummary, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_as(
        "SELECT \
           CAST(COALESCE(SUM(CASE WHEN status IN ('reserved', 'applied') THEN amount ELSE 0 END), 0) AS BIGINT) \
             AS credited, \
           CAST(COALESCE(SUM(CASE WHEN status = 'reserved' THEN pre_payment_amount ELSE 0 END), 0) AS BIGINT) \
             AS reserved_pre_payment, \
           CAST(COALESCE(MAX(CASE WHEN status <> 'released' THEN credit_note_index END), 0) AS BIGINT) \
             AS highest_index \
         FROM invoice_credits WHERE account_id = $1 AND livemode = $3 AND invoice = $2",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode()).fetch_one(executor)
    .await?)
}

/// Σ `pre_payment_amount` of the invoice's reserved (not yet applied) credits: the part of
/// `amount_remaining` that credit notes being issued will take. Read it under the invoice's row lock.
pub async fn reserved_pre_payment<'e, E>(executor: E, scope: &Scope, invoice: &str) -> Result<i64, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(pre_payment_amount), 0) AS BIGINT) FROM invoice_credits \
         WHERE account_id = $1 AND livemode = $3 AND invoice = $2 AND status = 'reserved'",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode())
    .fetch_one(executor)
    .await?)
}

/// Whether the invoice has credits that are reserved or applied (credit notes being issued or
/// issued and not voided).
pub async fn has_live<'e, E>(executor: E, scope: &Scope, invoice: &str) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invoice_credits \
         WHERE account_id = $1 AND livemode = $3 AND invoice = $2 AND status IN ('reserved', 'applied')",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode())
    .fetch_one(executor)
    .await?;
    Ok(count > 0)
}
