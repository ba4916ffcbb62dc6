//! Stripe's cursor paging: `limit` (1–100, default 10), `starting_after` (next page) and
//! `ending_before` (previous page), newest first. Ids sort by creation time (see [`crate::ids`]), so
//! a page is an index range scan on `(account_id, id)`.

use settle_proto::common::v1::{ErrorReason, RangeFilter};

use crate::error::ApiError;
use crate::ids::IdPrefix;
use crate::sql::SqlBuilder;

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// The newest objects.
    First,
    /// Objects older than this id.
    After(String),
    /// Objects newer than this id (returned newest first).
    Before(String),
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Cursor,
}

impl PageRequest {
    /// Validates Stripe's paging parameters; cursors must be ids of `kind`.
    pub fn parse(
        limit: Option<i32>,
        starting_after: Option<&str>,
        ending_before: Option<&str>,
        kind: IdPrefix,
    ) -> Result<Self, ApiError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT as i32).contains(&l) => l as u32,
            Some(l) => {
                return Err(ApiError::invalid_param(
                    "limit",
                    ErrorReason::ParameterInvalidInteger,
                    format!("This value must be between 1 and 100 (it currently is {l})."),
                ));
            }
        };
        let check = |field: &str, id: &str| -> Result<String, ApiError> {
            if kind.matches(id) {
                Ok(id.to_owned())
            } else {
                Err(ApiError::invalid_param(
                    field,
                    ErrorReason::ParameterInvalid,
                    format!("Invalid {field}: expected the id of a {} ({kind}…).", kind.object_name()),
                ))
            }
        };
        let cursor = match (non_empty(starting_after), non_empty(ending_before)) {
            (Some(_), Some(_)) => {
                return Err(ApiError::exclusive_params("starting_after", "ending_before"));
            }
            (Some(after), None) => Cursor::After(check("starting_after", after)?),
            (None, Some(before)) => Cursor::Before(check("ending_before", before)?),
            (None, None) => Cursor::First,
        };
        Ok(PageRequest { limit, cursor })
    }

    /// Appends the cursor condition, order and limit (one extra row, to learn `has_more`) for a table
    /// whose id column is `id`.
    pub fn push_sql(&self, query: &mut SqlBuilder) {
        match &self.cursor {
            Cursor::First => {
                query.push(" ORDER BY id DESC LIMIT ");
            }
            Cursor::After(id) => {
                query.filter(" AND id < ", id.clone()).push(" ORDER BY id DESC LIMIT ");
            }
            Cursor::Before(id) => {
                query.filter(" AND id > ", id.clone()).push(" ORDER BY id ASC LIMIT ");
            }
        }
        query.bind(i64::from(self.limit) + 1);
    }

    /// Like [`Self::push_sql`], for lists kept in creation order, oldest first (an invoice's lines):
    /// `starting_after` pages forward to newer rows, `ending_before` back to older ones. [`Self::finish`]
    /// then returns the page oldest first.
    pub fn push_sql_oldest_first(&self, query: &mut SqlBuilder) {
        match &self.cursor {
            Cursor::First => {
                query.push(" ORDER BY id ASC LIMIT ");
            }
            Cursor::After(id) => {
                query.filter(" AND id > ", id.clone()).push(" ORDER BY id ASC LIMIT ");
            }
            Cursor::Before(id) => {
                query.filter(" AND id < ", id.clone()).push(" ORDER BY id DESC LIMIT ");
            }
        }
        query.bind(i64::from(self.limit) + 1);
    }

    /// Turns the fetched rows (up to `limit + 1`, in query order) into a page in list order (newest
    /// first after [`Self::push_sql`], oldest first after [`Self::push_sql_oldest_first`]).
    pub fn finish<T>(&self, mut rows: Vec<T>) -> Page<T> {
        let has_more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        if matches!(self.cursor, Cursor::Before(_)) {
            rows.reverse();
        }
        Page { data: rows, has_more }
    }
}

/// Stripe treats an empty cursor like an absent one.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { data: self.data.into_iter().map(f).collect(), has_more: self.has_more }
    }
}

/// Appends a `created` range filter (`created[gt]=…` etc.) on `column`.
pub fn push_range(query: &mut SqlBuilder, column: RangeColumn, range: Option<&RangeFilter>) {
    let Some(range) = range else { return };
    let (gt, gte, lt, lte) = column.operators();
    if let Some(v) = range.gt {
        query.filter(gt, v);
    }
    if let Some(v) = range.gte {
        query.filter(gte, v);
    }
    if let Some(v) = range.lt {
        query.filter(lt, v);
    }
    if let Some(v) = range.lte {
        query.filter(lte, v);
    }
}

/// Columns a range filter can apply to (SQL text must be static).
#[derive(Debug, Clone, Copy)]
pub enum RangeColumn {
    Created,
    DueDate,
}

impl RangeColumn {
    fn operators(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            RangeColumn::Created => {
                (" AND created > ", " AND created >= ", " AND created < ", " AND created <= ")
            }
            RangeColumn::DueDate => {
                (" AND due_date > ", " AND due_date >= ", " AND due_date < ", " AND due_date <= ")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_ten_newest() {
        let page = PageRequest::parse(None, None, None, IdPrefix::PaymentIntent).unwrap();
        assert_eq!(page, PageRequest { limit: 10, cursor: Cursor::First });
    }

    #[test]
    fn limit_must_be_between_one_and_a_hundred() {
        for bad in [0, -1, 101] {
            let err = PageRequest::parse(Some(bad), None, None, IdPrefix::PaymentIntent).unwrap_err();
            assert_eq!(err.field_violations[0].0, "limit");
        }
        assert!(PageRequest::parse(Some(100), None, None, IdPrefix::PaymentIntent).is_ok());
    }

    #[test]
    fn cursors_are_exclusive_and_typed() {
        let err = PageRequest::parse(None, Some("pi_a"), Some("pi_b"), IdPrefix::PaymentIntent).unwrap_err();
        assert_eq!(err.reason_code(), "parameters_exclusive");
        let err = PageRequest::parse(None, Some("in_a"), None, IdPrefix::PaymentIntent).unwrap_err();
        assert_eq!(err.field_violations[0].0, "starting_after");
    }

    #[test]
    fn finish_trims_the_probe_row_and_reverses_backward_pages() {
        let forward = PageRequest { limit: 2, cursor: Cursor::First };
        assert_eq!(forward.finish(vec![3, 2, 1]), Page { data: vec![3, 2], has_more: true });
        let backward = PageRequest { limit: 2, cursor: Cursor::Before("x".into()) };
        assert_eq!(backward.finish(vec![4, 5]), Page { data: vec![5, 4], has_more: false });
    }

    #[test]
    fn sql_for_each_cursor() {
        let mut q = SqlBuilder::new("SELECT * FROM t WHERE account_id = ");
        q.bind("a".to_owned());
        PageRequest { limit: 5, cursor: Cursor::After("pi_x".into()) }.push_sql(&mut q);
        assert_eq!(q.sql(), "SELECT * FROM t WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3");
    }

    #[test]
    fn oldest_first_pages_forward_to_newer_rows() {
        let mut q = SqlBuilder::new("SELECT * FROM t WHERE account_id = ");
        q.bind("a".to_owned());
        let after = PageRequest { limit: 2, cursor: Cursor::After("il_b".into()) };
        after.push_sql_oldest_first(&mut q);
        assert_eq!(q.sql(), "SELECT * FROM t WHERE account_id = $1 AND id > $2 ORDER BY id ASC LIMIT $3");
        assert_eq!(after.finish(vec![3, 4, 5]), Page { data: vec![3, 4], has_more: true });
        let mut q = SqlBuilder::new("SELECT * FROM t WHERE account_id = ");
        q.bind("a".to_owned());
        let before = PageRequest { limit: 2, cursor: Cursor::Before("il_e".into()) };
        before.push_sql_oldest_first(&mut q);
        assert_eq!(q.sql(), "SELECT * FROM t WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3");
        // Fetched newest first just before the cursor, returned oldest first.
        assert_eq!(before.finish(vec![4, 3, 2]), Page { data: vec![3, 4], has_more: true });
    }
}
