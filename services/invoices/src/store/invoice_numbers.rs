//! The `invoice_number_sequences` table: each customer's invoice prefix and last sequence number.

use settle_platform::Scope;
use settle_platform::db::{Backend, Tx};

use super::StoreError;
use crate::domain::numbering::{customer_prefix, invoice_number};

/// Prefix derivations tried before giving up (each collides only with a prefix another customer of
/// the account already holds, one chance in 2^32 per customer).
const PREFIX_ATTEMPTS: u32 = 16;

/// The customer's next invoice number, inside the finalizing transaction: the customer's sequence row
/// stays locked until it commits, so concurrent finalizations take consecutive numbers. A number
/// already used (set by hand on another invoice) is skipped.
pub async fn next(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    customer: &str,
) -> Result<String, StoreError> {
    let lock = backend.pick(
        "SELECT prefix, last_sequence FROM invoice_number_sequences WHERE account_id = $1 AND livemode = $3 AND customer = $2 FOR UPDATE",
        "SELECT prefix, last_sequence FROM invoice_number_sequences WHERE account_id = $1 AND livemode = $3 AND customer = $2",
    );
    let mut row: Option<(String, i64)> = None;
    for attempt in 0..PREFIX_ATTEMPTS {
        // Does nothing when the customer has a row already, or when another customer holds the prefix.
        sqlx::query(
            "INSERT INTO invoice_number_sequences (account_id, livemode, customer, prefix, last_sequence) \
             VALUES ($1, $4, $2, $3, 0) ON CONFLICT DO NOTHING",
        )
        .bind(scope.account())
        .bind(customer)
        .bind(customer_prefix(scope.account(), customer, attempt))
        .bind(scope.livemode())
        .execute(&mut **tx)
        .await?;
        row = sqlx::query_as(lock)
            .bind(scope.account())
            .bind(customer)
            .bind(scope.livemode())
            .fetch_optional(&mut **tx)
            .await?;
        if row.is_some() {
            break;
        }
    }
    let Some((prefix, mut sequence)) = row else {
        return Err(StoreError::Database(sqlx::Error::Protocol(format!(
            "no free invoice prefix for customer {customer} after {PREFIX_ATTEMPTS} attempts"
        ))));
    };
    let number = loop {
        sequence += 1;
        let number = invoice_number(&prefix, sequence);
        let taken: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM invoices WHERE account_id = $1 AND livemode = $3 AND number = $2",
        )
        .bind(scope.account())
        .bind(number.as_str())
        .bind(scope.livemode())
        .fetch_one(&mut **tx)
        .await?;
        if taken == 0 {
            break number;
        }
    };
    sqlx::query(
        "UPDATE invoice_number_sequences SET last_sequence = $3 WHERE account_id = $1 AND livemode = $4 AND customer = $2",
    )
    .bind(scope.account())
    .bind(customer)
    .bind(sequence)
    .bind(scope.livemode()).execute(&mut **tx)
    .await?;
    Ok(number)
}

/// Whether another invoice of the account already has `number`.
pub async fn taken(tx: &mut Tx, scope: &Scope, number: &str, except: &str) -> Result<bool, StoreError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invoices WHERE account_id = $1 AND livemode = $4 AND number = $2 AND id <> $3",
    )
    .bind(scope.account())
    .bind(number)
    .bind(except)
    .bind(scope.livemode())
    .fetch_one(&mut **tx)
    .await?;
    Ok(count > 0)
}
