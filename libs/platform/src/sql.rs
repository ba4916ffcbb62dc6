//! A small builder for queries whose filters depend on the request (lists, searches). It numbers
//! `$n` placeholders as it binds, which both backends accept; values are always bound, never
//! spliced into the SQL text.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, AssertSqlSafe, Encode, FromRow, Type};

/// SQL text plus its bound arguments.
#[derive(Default)]
pub struct SqlBuilder {
    sql: String,
    args: AnyArguments,
    count: usize,
    bind_error: Option<sqlx::error::BoxDynError>,
}

impl SqlBuilder {
    pub fn new(sql: &'static str) -> Self {
        SqlBuilder { sql: sql.to_owned(), ..Default::default() }
    }

    /// Starts `sql` (ending in `WHERE `) with the scope's condition,
    /// `account_id = $1 AND livemode = $2`; further filters follow with ` AND …`.
    pub fn scoped(sql: &'static str, scope: &crate::scope::Scope) -> Self {
        let mut builder = SqlBuilder::new(sql);
        builder.scope("", scope);
        builder
    }

    /// Appends `{table}account_id = $n AND {table}livemode = $m` (`table` is `""` or an alias with
    /// its dot, `"i."`).
    pub fn scope(&mut self, table: &'static str, scope: &crate::scope::Scope) -> &mut Self {
        self.push(table).push("account_id = ").bind(scope.account().to_owned());
        self.push(" AND ").push(table).push("livemode = ").bind(scope.livemode())
    }

    /// Appends literal SQL (only ever `'static` text written in this codebase).
    pub fn push(&mut self, sql: &'static str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a `$n` placeholder bound to `value`.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.count += 1;
        self.sql.push('$');
        self.sql.push_str(&self.count.to_string());
        if let Err(error) = self.args.add(value) {
            self.bind_error.get_or_insert(error);
        }
        self
    }

    /// Appends `sql`, then a placeholder bound to `value`: `builder.filter(" AND customer = ", c)`.
    pub fn filter<T>(&mut self, sql: &'static str, value: T) -> &mut Self
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.push(sql).bind(value)
    }

    /// Appends `sql` followed by `($a, $b, …)` for `values`.
    pub fn in_list<T, I>(&mut self, sql: &'static str, values: I) -> &mut Self
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
        I: IntoIterator<Item = T>,
    {
        self.push(sql).push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }

    /// The SQL text so far (tests and logs).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Runs the query and maps every row.
    pub async fn fetch_all<'e, O, E>(self, executor: E) -> Result<Vec<O>, sqlx::Error>
    where
        O: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
        E: sqlx::Executor<'e, Database = Any>,
    {
        if let Some(error) = self.bind_error {
            return Err(sqlx::Error::Encode(error));
        }
        sqlx::query_as_with::<Any, O, AnyArguments>(AssertSqlSafe(self.sql), self.args)
            .fetch_all(executor)
            .await
    }

    /// Runs a statement that returns no rows (a multi-row insert); returns the rows affected.
    pub async fn execute<'e, E>(self, executor: E) -> Result<u64, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        if let Some(error) = self.bind_error {
            return Err(sqlx::Error::Encode(error));
        }
        let done = sqlx::query_with::<Any, AnyArguments>(AssertSqlSafe(self.sql), self.args)
            .execute(executor)
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs a query returning one scalar (a count).
    pub async fn fetch_scalar<'e, O, E>(self, executor: E) -> Result<O, sqlx::Error>
    where
        O: for<'r> sqlx::Decode<'r, Any> + Type<Any> + Send + Unpin,
        E: sqlx::Executor<'e, Database = Any>,
    {
        if let Some(error) = self.bind_error {
            return Err(sqlx::Error::Encode(error));
        }
        sqlx::query_scalar_with::<Any, O, AnyArguments>(AssertSqlSafe(self.sql), self.args)
            .fetch_one(executor)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        let mut q = SqlBuilder::new("SELECT * FROM t WHERE account_id = ");
        q.bind("acct_a".to_owned())
            .filter(" AND customer = ", "cus_1".to_owned())
            .in_list(" AND status IN ", ["a".to_owned(), "b".to_owned()]);
        assert_eq!(q.sql(), "SELECT * FROM t WHERE account_id = $1 AND customer = $2 AND status IN ($3, $4)");
    }
}
