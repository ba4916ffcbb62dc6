//! Customer balance ledgers (`customer_balances`, one row per account, mode, customer and currency) and
//! their transactions (`customer_balance_transactions`). Every posting locks the ledger's row, so the
//! postings of one ledger are applied one at a time and each transaction's `ending_balance` follows
//! from the one before: [`post`] is the only way a balance changes, for any caller (finalization,
//! voiding, adjustments, and the lead's overpayment and credit-note steps).

use std::collections::BTreeMap;

use prost::Message;
use settle_money::Amount;
use settle_platform::Scope;
use settle_platform::db::{Backend, Db, Tx};
use settle_platform::ids::IdPrefix;
use settle_platform::pagination::{Page, PageRequest, RangeColumn, push_range};
use settle_platform::sql::SqlBuilder;
use settle_platform::time::now_unix;
use settle_proto::settle::invoices::v1 as pb;

use super::StoreError;
use crate::domain::balance::{self, TransactionType};
use crate::model::balance::type_to_pb;

/// One change to a customer's balance.
#[derive(Debug, Clone)]
pub struct Posting<'a> {
    pub scope: &'a Scope,
    pub customer: &'a str,
    pub currency: &'a str,
    /// Negative credits the customer, positive is owed by the customer.
    pub amount: i64,
    pub kind: TransactionType,
    pub invoice: Option<&'a str>,
    pub credit_note: Option<&'a str>,
    pub description: Option<&'a str>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    document: Vec<u8>,
}

fn decode(rows: Vec<Row>) -> Result<Vec<pb::CustomerBalanceTransaction>, StoreError> {
    rows.into_iter()
        .map(|r| pb::CustomerBalanceTransaction::decode(r.document.as_slice()).map_err(StoreError::from))
        .collect()
}

/// Creates the ledger if needed, locks it until the transaction ends, and returns its balance and
/// how many transactions it has.
async fn lock_ledger(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    customer: &str,
    currency: &str,
) -> Result<(i64, i64), StoreError> {
    sqlx::query(
        "INSERT INTO customer_balances (account_id, livemode, customer, currency, balance, transactions, updated) \
         VALUES ($1, $5, $2, $3, 0, 0, $4) ON CONFLICT (account_id, livemode, customer, currency) DO NOTHING",
    )
    .bind(scope.account())
    .bind(customer)
    .bind(currency)
    .bind(now_unix())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    let sql = backend.pick(
        "SELECT balance, transactions FROM customer_balances \
         WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND currency = $3 FOR UPDATE",
        "SELECT balance, transactions FROM customer_balances \
         WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND currency = $3",
    );
    Ok(sqlx::query_as(sql)
        .bind(scope.account())
        .bind(customer)
        .bind(currency)
        .bind(scope.livemode())
        .fetch_one(&mut **tx)
        .await?)
}

/// The ledger's balance, locked until the transaction ends: what a caller reads here stays true
/// until it commits (finalization reads the balance it then applies).
pub async fn lock(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    customer: &str,
    currency: &str,
) -> Result<i64, StoreError> {
    Ok(lock_ledger(tx, backend, scope, customer, currency).await?.0)
}

/// Posts one transaction inside the caller's transaction: locks the ledger, moves its balance by
/// `posting.amount` and records the transaction with the resulting `ending_balance`.
pub async fn post(
    tx: &mut Tx,
    backend: Backend,
    posting: &Posting<'_>,
) -> Result<pb::CustomerBalanceTransaction, StoreError> {
    let (balance, count) =
        lock_ledger(tx, backend, posting.scope, posting.customer, posting.currency).await?;
    let ending = balance::post(Amount::new(balance), Amount::new(posting.amount))?.get();
    let sequence = count + 1;
    let now = now_unix();
    // Generated under the ledger's lock, so within a process ids follow the ledger's order.
    let doc = pb::CustomerBalanceTransaction {
        amount: posting.amount,
        checkout_session: None,
        created: now,
        credit_note: posting.credit_note.map(str::to_owned),
        currency: posting.currency.to_owned(),
        customer: posting.customer.to_owned(),
        customer_account: None,
        description: posting.description.map(str::to_owned),
        ending_balance: ending,
        id: IdPrefix::BalanceTransaction.generate(),
        invoice: posting.invoice.map(str::to_owned),
        livemode: posting.scope.livemode(),
        metadata: posting.metadata.clone(),
        object: "customer_balance_transaction".to_owned(),
        r#type: type_to_pb(posting.kind) as i32,
    };
    sqlx::query(
        "UPDATE customer_balances SET balance = $4, transactions = $5, updated = $6 \
         WHERE account_id = $1 AND livemode = $7 AND customer = $2 AND currency = $3",
    )
    .bind(posting.scope.account())
    .bind(posting.customer)
    .bind(posting.currency)
    .bind(ending)
    .bind(sequence)
    .bind(now)
    .bind(posting.scope.livemode())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO customer_balance_transactions (id, account_id, livemode, customer, currency, sequence, \
           type, invoice, credit_note, amount, ending_balance, created, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(doc.id.as_str())
    .bind(posting.scope.account())
    .bind(posting.scope.livemode())
    .bind(posting.customer)
    .bind(posting.currency)
    .bind(sequence)
    .bind(posting.kind.as_str())
    .bind(posting.invoice)
    .bind(posting.credit_note)
    .bind(posting.amount)
    .bind(ending)
    .bind(now)
    .bind(doc.encode_to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(doc)
}

/// The customer's balance in `currency` (0 for a ledger that does not exist yet). Unlocked: inside a
/// transaction that must rely on it, use [`lock`].
pub async fn current<'e, E>(
    executor: E,
    scope: &Scope,
    customer: &str,
    currency: &str,
) -> Result<i64, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let balance: Option<i64> = sqlx::query_scalar(
        "SELECT balance FROM customer_balances WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND currency = $3",
    )
    .bind(scope.account())
    .bind(customer)
    .bind(currency)
    .bind(scope.livemode()).fetch_optional(executor)
    .await?;
    Ok(balance.unwrap_or(0))
}

/// Every ledger of the customer: (currency, balance), by currency.
pub async fn ledgers(db: &Db, scope: &Scope, customer: &str) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT currency, balance FROM customer_balances WHERE account_id = $1 AND livemode = $3 AND customer = $2 ORDER BY currency",
    )
    .bind(scope.account())
    .bind(customer)
    .bind(scope.livemode()).fetch_all(db.pool())
    .await?)
}

/// One transaction of the customer.
pub async fn find<'e, E>(
    executor: E,
    scope: &Scope,
    customer: &str,
    id: &str,
) -> Result<Option<pb::CustomerBalanceTransaction>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT document FROM customer_balance_transactions WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND id = $3",
    )
    .bind(scope.account())
    .bind(customer)
    .bind(id)
    .bind(scope.livemode()).fetch_all(executor)
    .await?;
    Ok(decode(rows)?.pop())
}

/// One transaction of the customer, locked until the transaction ends.
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    customer: &str,
    id: &str,
) -> Result<Option<pb::CustomerBalanceTransaction>, StoreError> {
    let sql = backend.pick(
        "SELECT document FROM customer_balance_transactions \
         WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND id = $3 FOR UPDATE",
        "SELECT document FROM customer_balance_transactions WHERE account_id = $1 AND livemode = $4 AND customer = $2 AND id = $3",
    );
    let rows: Vec<Row> = sqlx::query_as(sql)
        .bind(scope.account())
        .bind(customer)
        .bind(id)
        .bind(scope.livemode())
        .fetch_all(&mut **tx)
        .await?;
    Ok(decode(rows)?.pop())
}

/// Writes back a transaction's description and metadata (the only mutable fields).
pub async fn update_document(
    tx: &mut Tx,
    scope: &Scope,
    doc: &pb::CustomerBalanceTransaction,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE customer_balance_transactions SET document = $3 WHERE account_id = $1 AND livemode = $4 AND id = $2")
        .bind(scope.account())
        .bind(doc.id.as_str())
        .bind(doc.encode_to_vec())
        .bind(scope.livemode()).execute(&mut **tx)
        .await?;
    Ok(())
}

/// Filters of `ListBalanceTransactions`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub invoice: Option<String>,
    pub created: Option<settle_proto::common::v1::RangeFilter>,
}

/// A page of the customer's transactions (every currency), newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    customer: &str,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<pb::CustomerBalanceTransaction>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM customer_balance_transactions WHERE ", scope);
    query.filter(" AND customer = ", customer.to_owned());
    if let Some(invoice) = &filter.invoice {
        query.filter(" AND invoice = ", invoice.clone());
    }
    push_range(&mut query, RangeColumn::Created, filter.created.as_ref());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<Row, _>(db.pool()).await?;
    Ok(page.finish(decode(rows)?))
}
