//! Lists and searches over the `invoices` table (its reads and writes are in [`super::invoices`]).

use settle_platform::Scope;
use settle_platform::db::Db;
use settle_platform::pagination::{Page, PageRequest, RangeColumn, push_range};
use settle_platform::search::{Field, FieldKind, Query};
use settle_platform::sql::SqlBuilder;
use settle_proto::settle::invoices::v1 as pb;

use super::StoreError;
use super::invoices::decode_all;

/// Fields `SearchInvoices` accepts (Stripe's for invoices) and what they read. settle never sets a
/// receipt number, a finalization error or a subscription, so those read as empty text; `number` of
/// a draft is empty too, so `-number:'…'` keeps drafts as Stripe does.
pub const SEARCH_FIELDS: &[Field] = &[
    Field { name: "created", kind: FieldKind::Number, column: "created" },
    Field { name: "currency", kind: FieldKind::Text, column: "currency" },
    Field { name: "customer", kind: FieldKind::Text, column: "customer" },
    Field { name: "last_finalization_error_code", kind: FieldKind::Text, column: "''" },
    Field { name: "number", kind: FieldKind::Text, column: "COALESCE(number, '')" },
    Field { name: "receipt_number", kind: FieldKind::Text, column: "''" },
    Field { name: "status", kind: FieldKind::Text, column: "status" },
    Field { name: "subscription", kind: FieldKind::Text, column: "''" },
    Field { name: "total", kind: FieldKind::Number, column: "total" },
];

#[derive(sqlx::FromRow)]
struct Row {
    document: Vec<u8>,
}

/// Filters of `ListInvoices`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub customer: Option<String>,
    pub status: Option<&'static str>,
    pub collection_method: Option<&'static str>,
    pub created: Option<settle_proto::common::v1::RangeFilter>,
    pub due_date: Option<settle_proto::common::v1::RangeFilter>,
}

/// A page of the account's invoices, newest first.
pub async fn list(
    db: &Db,
    scope: &Scope,
    filter: &ListFilter,
    page: &PageRequest,
) -> Result<Page<pb::Invoice>, StoreError> {
    let mut query = SqlBuilder::scoped("SELECT document FROM invoices WHERE ", scope);
    if let Some(customer) = &filter.customer {
        query.filter(" AND customer = ", customer.clone());
    }
    if let Some(status) = filter.status {
        query.filter(" AND status = ", status.to_owned());
    }
    if let Some(method) = filter.collection_method {
        query.filter(" AND collection_method = ", method.to_owned());
    }
    push_range(&mut query, RangeColumn::Created, filter.created.as_ref());
    push_range(&mut query, RangeColumn::DueDate, filter.due_date.as_ref());
    page.push_sql(&mut query);
    let rows = query.fetch_all::<Row, _>(db.pool()).await?;
    Ok(page.finish(decode_all(rows.into_iter().map(|r| r.document).collect())?))
}

/// A page of the account's invoices matching a search query, newest first, and how many match in
/// all.
pub async fn search(
    db: &Db,
    scope: &Scope,
    query: &Query,
    after: Option<&str>,
    limit: u32,
) -> Result<(Page<pb::Invoice>, i64), StoreError> {
    let mut rows_sql = SqlBuilder::scoped("SELECT document FROM invoices WHERE ", scope);
    query.push_sql(&mut rows_sql, db.backend());
    if let Some(after) = after {
        rows_sql.filter(" AND id < ", after.to_owned());
    }
    rows_sql.push(" ORDER BY id DESC LIMIT ").bind(i64::from(limit) + 1);
    let rows = rows_sql.fetch_all::<Row, _>(db.pool()).await?;
    let mut data = decode_all(rows.into_iter().map(|r| r.document).collect())?;

    let mut count_sql = SqlBuilder::scoped("SELECT COUNT(*) FROM invoices WHERE ", scope);
    query.push_sql(&mut count_sql, db.backend());
    let total: i64 = count_sql.fetch_scalar(db.pool()).await?;

    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    Ok((Page { data, has_more }, total))
}
