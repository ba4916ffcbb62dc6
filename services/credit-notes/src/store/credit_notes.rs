//! The `credit_notes`, `credit_note_lines`, `credit_note_refunds` and `credit_note_invoices`
//! tables. A new note of an invoice is written while holding the invoice's `credit_note_invoices`
//! row ([`lock_invoice`]), which serializes the notes of one invoice and whose CHECK keeps their
//! credited total within the invoice's.

use std::collections::BTreeMap;

use prost::Message;
use settle_money::Amount;
use settle_platform::Scope;
use settle_platform::db::{Backend, Db, Tx};
use settle_platform::pagination::{Page, PageRequest, RangeColumn, push_range};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::creditnotes::v1 as pb;
use sqlx::{Any, AnyConnection, Executor};

use super::StoreError;
use crate::domain::note::NoteStatus;
use crate::domain::totals::NoteType;

/// A stored note with the columns the handlers and sagas read beside its document.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNote {
    pub document: pb::CreditNote,
    pub status: NoteStatus,
    pub invoice: String,
    pub total: Amount,
    pub issue_saga_id: String,
    pub void_saga_id: Option<String>,
    /// The amounts of the refunds the note created or links.
    pub refunds: Vec<Amount>,
}

#[derive(sqlx::FromRow)]
struct NoteRow {
    status: String,
    invoice: String,
    total: i64,
    issue_saga_id: String,
    void_saga_id: Option<String>,
    document: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    document: Vec<u8>,
}

impl NoteRow {
    fn into_note(self, refunds: Vec<Amount>) -> Result<StoredNote, StoreError> {
        let status = NoteStatus::parse(&self.status).ok_or(StoreError::Corrupt("credit note status"))?;
        Ok(StoredNote {
            document: pb::CreditNote::decode(self.document.as_slice())?,
            status,
            invoice: self.invoice,
            total: Amount::new(self.total),
            issue_saga_id: self.issue_saga_id,
            void_saga_id: self.void_saga_id,
            refunds,
        })
    }
}

const NOTE_COLUMNS: &str =
    "SELECT status, invoice, total, issue_saga_id, void_saga_id, document FROM credit_notes ";

/// What the invoice's counted notes (pending and issued) already take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credited {
    /// Σ totals.
    pub total: Amount,
    /// Per invoice line: Σ credited amounts.
    pub lines: BTreeMap<String, Amount>,
    /// Whether one of them credits the shipping.
    pub shipping: bool,
    /// Per refund key (`re_…`, `pr_…/<refund_group>`): Σ linked amounts.
    pub refunds: BTreeMap<String, Amount>,
    /// Notes issued or that may be (pending, issued, void), for the next number.
    pub notes: i64,
}

/// The key a linked refund is counted under.
pub fn refund_key(refund: &pb::CreditNoteRefund) -> String {
    match &refund.payment_record_refund {
        Some(record) if !record.payment_record.is_empty() => {
            format!("{}/{}", record.payment_record, record.refund_group)
        }
        _ => refund.refund.clone(),
    }
}

/// Reads what the invoice's counted notes take. Inside a transaction that holds the invoice's row
/// ([`lock_invoice`]) the answer stays true until commit.
pub async fn credited(
    conn: &mut AnyConnection,
    scope: &Scope,
    invoice: &str,
) -> Result<Credited, StoreError> {
    let (total, shipping, notes): (i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN status IN ('pending', 'issued') THEN total ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN status IN ('pending', 'issued') AND amount_shipping > 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN status <> 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM credit_notes WHERE account_id = $1 AND livemode = $3 AND invoice = $2",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode())
    .fetch_one(&mut *conn)
    .await?;
    let lines: Vec<(String, i64)> = sqlx::query_as(
        "SELECT l.invoice_line_item, CAST(SUM(l.amount) AS BIGINT) FROM credit_note_lines l \
         JOIN credit_notes n ON n.id = l.credit_note \
         WHERE n.account_id = $1 AND n.livemode = $3 AND n.invoice = $2 AND n.status IN ('pending', 'issued') \
           AND l.invoice_line_item IS NOT NULL \
         GROUP BY l.invoice_line_item",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode())
    .fetch_all(&mut *conn)
    .await?;
    let refunds: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.refund_key, CAST(SUM(r.amount) AS BIGINT) FROM credit_note_refunds r \
         JOIN credit_notes n ON n.id = r.credit_note \
         WHERE n.account_id = $1 AND n.livemode = $3 AND n.invoice = $2 AND n.status IN ('pending', 'issued') \
         GROUP BY r.refund_key",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(scope.livemode())
    .fetch_all(&mut *conn)
    .await?;
    Ok(Credited {
        total: Amount::new(total),
        lines: lines.into_iter().map(|(k, v)| (k, Amount::new(v))).collect(),
        shipping: shipping > 0,
        refunds: refunds.into_iter().map(|(k, v)| (k, Amount::new(v))).collect(),
        notes,
    })
}

/// Takes the invoice's row (creating it the first time), so the notes of one invoice are written
/// one at a time. SQLite's write transaction already excludes other writers.
pub async fn lock_invoice(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    invoice: &str,
    invoice_total: Amount,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO credit_note_invoices (account_id, livemode, invoice, invoice_total, credited, notes) \
         VALUES ($1, $2, $3, $4, 0, 0) ON CONFLICT (account_id, livemode, invoice) DO NOTHING",
    )
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(invoice)
    .bind(invoice_total.get())
    .execute(&mut **tx)
    .await?;
    let sql = backend.pick(
        "SELECT invoice FROM credit_note_invoices WHERE account_id = $1 AND livemode = $2 AND invoice = $3 FOR UPDATE",
        "SELECT invoice FROM credit_note_invoices WHERE account_id = $1 AND livemode = $2 AND invoice = $3",
    );
    sqlx::query(sql).bind(scope.account()).bind(scope.livemode()).bind(invoice).fetch_one(&mut **tx).await?;
    Ok(())
}

/// Changes the invoice's credited total (and note count). `false` when the CHECK refused it: the
/// notes would exceed the invoice's total.
async fn add_credited(
    tx: &mut Tx,
    scope: &Scope,
    invoice: &str,
    amount: i64,
    notes: i64,
) -> Result<bool, StoreError> {
    match sqlx::query(
        "UPDATE credit_note_invoices SET credited = credited + $3, notes = notes + $4 \
         WHERE account_id = $1 AND livemode = $5 AND invoice = $2",
    )
    .bind(scope.account())
    .bind(invoice)
    .bind(amount)
    .bind(notes)
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await
    {
        Ok(done) => Ok(done.rows_affected() == 1),
        Err(sqlx::Error::Database(e)) if e.is_check_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A pending note to record.
#[derive(Debug, Clone)]
pub struct NewNote<'a> {
    pub scope: &'a Scope,
    pub document: &'a pb::CreditNote,
    /// Every line, in order (the document embeds only the first page).
    pub lines: &'a [pb::CreditNoteLineItem],
    pub credit_amount: Amount,
    pub refund_amount: Amount,
    pub linked_refunds_amount: Amount,
    pub issue_saga_id: &'a str,
}

/// How recording a pending note went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Recorded,
    /// The invoice's CHECK refused it: it would exceed the invoice's total.
    ExceedsInvoice,
}

/// Records a pending note, its lines and its linked refunds, and counts it toward the invoice
/// (whose row the caller holds).
pub async fn insert_pending(tx: &mut Tx, note: &NewNote<'_>) -> Result<Recorded, StoreError> {
    let doc = note.document;
    if !add_credited(tx, note.scope, &doc.invoice, doc.total, 1).await? {
        return Ok(Recorded::ExceedsInvoice);
    }
    sqlx::query(
        "INSERT INTO credit_notes (id, account_id, livemode, invoice, customer, customer_account, currency, \
           status, type, number, total, pre_payment_amount, post_payment_amount, credit_amount, \
           refund_amount, linked_refunds_amount, out_of_band_amount, amount_shipping, issue_saga_id, \
           created, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, NULL, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(doc.id.as_str())
    .bind(note.scope.account())
    .bind(note.scope.livemode())
    .bind(doc.invoice.as_str())
    .bind(doc.customer.as_str())
    .bind(doc.customer_account.as_deref())
    .bind(doc.currency.as_str())
    .bind(type_name(doc))
    .bind(doc.total)
    .bind(doc.pre_payment_amount)
    .bind(doc.post_payment_amount)
    .bind(note.credit_amount.get())
    .bind(note.refund_amount.get())
    .bind(note.linked_refunds_amount.get())
    .bind(doc.out_of_band_amount.unwrap_or(0))
    .bind(doc.amount_shipping)
    .bind(note.issue_saga_id)
    .bind(doc.created)
    .bind(doc.encode_to_vec())
    .execute(&mut **tx)
    .await?;
    for line in note.lines {
        sqlx::query(
            "INSERT INTO credit_note_lines (id, account_id, livemode, credit_note, invoice_line_item, amount, document) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(line.id.as_str())
        .bind(note.scope.account())
        .bind(note.scope.livemode())
        .bind(doc.id.as_str())
        .bind(line.invoice_line_item.as_deref())
        .bind(line.amount)
        .bind(line.encode_to_vec())
        .execute(&mut **tx)
        .await?;
    }
    insert_refunds(tx, note.scope, &doc.id, 0, &doc.refunds, false).await?;
    Ok(Recorded::Recorded)
}

async fn insert_refunds(
    tx: &mut Tx,
    scope: &Scope,
    credit_note: &str,
    first_position: usize,
    refunds: &[pb::CreditNoteRefund],
    created_by_note: bool,
) -> Result<(), StoreError> {
    for (i, refund) in refunds.iter().enumerate() {
        sqlx::query(
            "INSERT INTO credit_note_refunds (account_id, livemode, credit_note, position, refund_key, amount, created_by_note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(scope.account())
        .bind(scope.livemode())
        .bind(credit_note)
        .bind(i64::try_from(first_position + i).unwrap_or(i64::MAX))
        .bind(refund_key(refund))
        .bind(refund.amount_refunded)
        .bind(created_by_note)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn type_name(doc: &pb::CreditNote) -> &'static str {
    crate::model::note_type_from_pb(doc.r#type).unwrap_or(NoteType::PrePayment).as_str()
}

async fn refunds_of<'e, E>(executor: E, scope: &Scope, id: &str) -> Result<Vec<Amount>, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let amounts: Vec<i64> = sqlx::query_scalar(
        "SELECT amount FROM credit_note_refunds WHERE account_id = $1 AND livemode = $2 AND credit_note = $3 \
         ORDER BY position",
    )
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(id)
    .fetch_all(executor)
    .await?;
    Ok(amounts.into_iter().map(Amount::new).collect())
}

/// One note of the account, whatever its status.
pub async fn find(db: &Db, scope: &Scope, id: &str) -> Result<Option<StoredNote>, StoreError> {
    let row: Option<NoteRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{NOTE_COLUMNS}WHERE account_id = $1 AND livemode = $2 AND id = $3"
    )))
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(row) => Ok(Some(row.into_note(refunds_of(db.pool(), scope, id).await?)?)),
        None => Ok(None),
    }
}

/// One note, locked until the transaction ends.
pub async fn find_for_update(
    tx: &mut Tx,
    backend: Backend,
    scope: &Scope,
    id: &str,
) -> Result<Option<StoredNote>, StoreError> {
    let sql = match backend {
        Backend::Postgres => {
            format!("{NOTE_COLUMNS}WHERE account_id = $1 AND livemode = $2 AND id = $3 FOR UPDATE")
        }
        Backend::Sqlite => format!("{NOTE_COLUMNS}WHERE account_id = $1 AND livemode = $2 AND id = $3"),
    };
    let row: Option<NoteRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(scope.account())
        .bind(scope.livemode())
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    match row {
        Some(row) => Ok(Some(row.into_note(refunds_of(&mut **tx, scope, id).await?)?)),
        None => Ok(None),
    }
}

/// Issues a pending note: its final document (number, split, refunds) and the refund it created.
pub async fn mark_issued(
    tx: &mut Tx,
    scope: &Scope,
    doc: &pb::CreditNote,
    created_refunds: &[pb::CreditNoteRefund],
    linked_count: usize,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE credit_notes SET status = 'issued', number = $3, type = $4, pre_payment_amount = $5, \
           post_payment_amount = $6, document = $7 \
         WHERE account_id = $1 AND livemode = $8 AND id = $2 AND status = 'pending'",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(doc.number.as_str())
    .bind(type_name(doc))
    .bind(doc.pre_payment_amount)
    .bind(doc.post_payment_amount)
    .bind(doc.encode_to_vec())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Corrupt("credit note to issue is not pending"));
    }
    insert_refunds(tx, scope, &doc.id, linked_count, created_refunds, true).await
}

/// A pending note whose saga was refused: it stops counting.
pub async fn mark_failed(tx: &mut Tx, scope: &Scope, note: &StoredNote) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE credit_notes SET status = 'failed' \
         WHERE account_id = $1 AND livemode = $2 AND id = $3 AND status = 'pending'",
    )
    .bind(scope.account())
    .bind(scope.livemode())
    .bind(note.document.id.as_str())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 1 {
        add_credited(tx, scope, &note.invoice, -note.total.get(), -1).await?;
    }
    Ok(())
}

/// Records (or clears, with `None`) the void saga working on an issued note.
pub async fn set_voiding(tx: &mut Tx, scope: &Scope, id: &str, saga: Option<&str>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE credit_notes SET void_saga_id = $3 \
         WHERE account_id = $1 AND livemode = $4 AND id = $2 AND status = 'issued'",
    )
    .bind(scope.account())
    .bind(id)
    .bind(saga)
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Voids an issued note (its document already says so): it stops counting toward the invoice.
pub async fn mark_void(
    tx: &mut Tx,
    scope: &Scope,
    note: &StoredNote,
    doc: &pb::CreditNote,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE credit_notes SET status = 'void', void_saga_id = NULL, voided_at = $3, document = $4 \
         WHERE account_id = $1 AND livemode = $5 AND id = $2 AND status = 'issued'",
    )
    .bind(scope.account())
    .bind(doc.id.as_str())
    .bind(doc.voided_at.unwrap_or_default())
    .bind(doc.encode_to_vec())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 1 {
        // The note's total leaves the invoice's credited total; its number stays taken.
        add_credited(tx, scope, &note.invoice, -note.total.get(), 0).await?;
    }
    Ok(())
}

/// Writes back a note whose memo or metadata changed.
pub async fn update_document(tx: &mut Tx, scope: &Scope, doc: &pb::CreditNote) -> Result<(), StoreError> {
    sqlx::query("UPDATE credit_notes SET document = $3 WHERE account_id = $1 AND livemode = $4 AND id = $2")
        .bind(scope.account())
        .bind(doc.id.as_str())
        .bind(doc.encode_to_vec())
        .bind(scope.livemode())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Filters of `ListCreditNotes`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub created: Option<settle_proto::common::v1::RangeFilter>,
    pub customer: Option<String>,
    pub customer_account: Option<String>,
    pub invoice: Option<String>,
}

/// A page of the account's visible notes, newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<pb::CreditNote>, StoreError> {
    let mut query = SqlBuilder::scoped(
        "SELECT document FROM credit_notes WHERE status IN ('issued', 'void') AND ",
        scope,
    );
    if let Some(customer) = &filter.customer {
        query.filter(" AND customer = ", customer.clone());
    }
    if let Some(customer_account) = &filter.customer_account {
        query.filter(" AND customer_account = ", customer_account.clone());
    }
    if let Some(invoice) = &filter.invoice {
        query.filter(" AND invoice = ", invoice.clone());
    }
    push_range(&mut query, RangeColumn::Created, filter.created.as_ref());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<DocumentRow, _>(db.pool()).await?;
    let docs = rows
        .into_iter()
        .map(|r| pb::CreditNote::decode(r.document.as_slice()).map_err(StoreError::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(docs))
}

/// A page of a note's lines, in the note's order.
pub async fn lines(
    db: &Db,
    scope: &Scope,
    credit_note: &str,
    page: &PageRequest,
) -> Result<Page<pb::CreditNoteLineItem>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM credit_note_lines WHERE ", scope);
    query.filter(" AND credit_note = ", credit_note.to_owned());
    page.push_sql_oldest_first(&mut query);
    let rows = query.fetch_all::<DocumentRow, _>(db.pool()).await?;
    let docs = rows
        .into_iter()
        .map(|r| pb::CreditNoteLineItem::decode(r.document.as_slice()).map_err(StoreError::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(docs))
}
