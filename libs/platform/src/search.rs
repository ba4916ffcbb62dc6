//! Stripe's search query language, as `SearchPaymentIntents` and `SearchInvoices` accept it:
//!
//! ```text
//! status:'succeeded' AND metadata['order_id']:'6735' AND amount>=1000 AND -customer:'cus_x'
//! ```
//!
//! Clauses are `field:value` (equality), `field~'value'` (substring of a text field, at least 3
//! characters, case-sensitive), `field>n`, `field<n`, `field>=n`, `field<=n`, `field=n` (numbers), a
//! leading `-` negates, and clauses combine with `AND` or with `OR` (one of them per
//! query, as in Stripe), at most 10. Strings are quoted with `'` or `"`; `null` matches a missing
//! metadata key. The parser is pure; [`Query::push_sql`] turns a parsed query into bound SQL.

use settle_proto::common::v1::ErrorReason;

use crate::db::Backend;
use crate::error::ApiError;
use crate::sql::SqlBuilder;

/// Most clauses a query may have (Stripe's limit).
pub const MAX_CLAUSES: usize = 10;
/// Shortest value a substring (`~`) clause takes (Stripe's limit).
pub const MIN_SUBSTRING_LEN: usize = 3;

/// What values a searchable field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Compared with `:` only.
    Text,
    /// Compared with `:`, `=`, `>`, `<`, `>=`, `<=`.
    Number,
}

/// A searchable field: its Stripe name, kind, and the SQL column it reads.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
    pub column: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connective {
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    /// `~`: the text contains the value.
    Contains,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(i64),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Field(Field),
    Metadata(String),
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub negated: bool,
    pub target: Target,
    pub op: Op,
    pub value: Value,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub connective: Connective,
    pub clauses: Vec<Clause>,
}

fn invalid(message: String) -> ApiError {
    ApiError::invalid_param("query", ErrorReason::SearchQueryInvalid, message)
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.input[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.input[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.input.len()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.input[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> &'a str {
        let start = self.pos;
        while self.input[self.pos..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    fn quoted(&mut self) -> Result<String, ApiError> {
        let quote = match self.input[self.pos..].chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => {
                return Err(invalid(format!("Expected a quoted string at position {}.", self.pos)));
            }
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.input[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(invalid("Unterminated string in the query.".to_owned()))
    }
}

/// Parses `input` against the searchable `fields` of a resource.
pub fn parse(input: &str, fields: &[Field]) -> Result<Query, ApiError> {
    let mut lexer = Lexer { input, pos: 0 };
    if lexer.at_end() {
        return Err(ApiError::missing_param("query"));
    }
    let mut clauses = Vec::new();
    let mut connective = None;
    loop {
        lexer.skip_ws();
        clauses.push(parse_clause(&mut lexer, fields)?);
        if lexer.at_end() {
            break;
        }
        let word = lexer.ident();
        let next = match word {
            "AND" => Connective::And,
            "OR" => Connective::Or,
            "" => {
                return Err(invalid(format!("Unexpected character at position {}.", lexer.pos)));
            }
            other => return Err(invalid(format!("Expected AND or OR, found {other:?}."))),
        };
        if connective.is_some_and(|c| c != next) {
            return Err(invalid("A query cannot combine AND and OR.".to_owned()));
        }
        connective = Some(next);
        if clauses.len() == MAX_CLAUSES {
            return Err(invalid(format!("A query can have at most {MAX_CLAUSES} clauses.")));
        }
    }
    Ok(Query { connective: connective.unwrap_or(Connective::And), clauses })
}

fn parse_clause(lexer: &mut Lexer<'_>, fields: &[Field]) -> Result<Clause, ApiError> {
    let negated = lexer.eat("-");
    let name = lexer.ident();
    let target = if name == "metadata" {
        if !lexer.eat("[") {
            return Err(invalid("Write metadata fields as metadata['key'].".to_owned()));
        }
        let key = lexer.quoted()?;
        if !lexer.eat("]") {
            return Err(invalid("Write metadata fields as metadata['key'].".to_owned()));
        }
        Target::Metadata(key)
    } else {
        let field = fields.iter().find(|f| f.name == name).ok_or_else(|| {
            let known: Vec<&str> = fields.iter().map(|f| f.name).chain(["metadata['key']"]).collect();
            invalid(format!("Field {name:?} is not searchable; use one of {}.", known.join(", ")))
        })?;
        Target::Field(*field)
    };
    let op = if lexer.eat(">=") {
        Op::Gte
    } else if lexer.eat("<=") {
        Op::Lte
    } else if lexer.eat(">") {
        Op::Gt
    } else if lexer.eat("<") {
        Op::Lt
    } else if lexer.eat(":") || lexer.eat("=") {
        Op::Eq
    } else if lexer.eat("~") {
        Op::Contains
    } else {
        return Err(invalid(format!("Expected :, ~, =, >, <, >= or <= after {name:?}.")));
    };
    let value = if lexer.input[lexer.pos..].starts_with(['\'', '"']) {
        Value::Text(lexer.quoted()?)
    } else {
        let word = lexer.ident();
        if word == "null" {
            Value::Null
        } else if let Ok(n) = word.parse::<i64>() {
            Value::Number(n)
        } else if word.is_empty() {
            return Err(invalid(format!("Missing value for {name:?}.")));
        } else {
            return Err(invalid(format!("Quote the string value {word:?}.")));
        }
    };
    let kind = match &target {
        Target::Field(field) => field.kind,
        Target::Metadata(_) => FieldKind::Text,
    };
    if let (Op::Contains, Value::Text(text)) = (op, &value)
        && text.chars().count() < MIN_SUBSTRING_LEN
    {
        return Err(invalid(format!(
            "A substring (~) value must be at least {MIN_SUBSTRING_LEN} characters long."
        )));
    }
    let valid = match (kind, op, &value) {
        (FieldKind::Text, Op::Eq | Op::Contains, Value::Text(_)) => true,
        (FieldKind::Text, Op::Eq, Value::Null) => matches!(target, Target::Metadata(_)),
        (FieldKind::Number, _, Value::Number(_)) => true,
        _ => false,
    };
    if !valid {
        return Err(invalid(format!(
            "Invalid comparison for {name:?}: text fields take :'value', number fields a number."
        )));
    }
    Ok(Clause { negated, target, op, value })
}

impl Query {
    /// Appends ` AND (…)` for the query to `sql`, with every value bound. Metadata is the JSON text
    /// column `metadata`.
    pub fn push_sql(&self, sql: &mut SqlBuilder, backend: Backend) {
        sql.push(" AND (");
        for (i, clause) in self.clauses.iter().enumerate() {
            if i > 0 {
                sql.push(match self.connective {
                    Connective::And => " AND ",
                    Connective::Or => " OR ",
                });
            }
            if clause.negated {
                sql.push("NOT ");
            }
            sql.push("(");
            match (&clause.target, &clause.value) {
                // Substring: case-sensitive on both backends, and no LIKE escaping to get wrong.
                (Target::Field(field), Value::Text(text)) if clause.op == Op::Contains => {
                    sql.push(backend.pick("strpos(", "instr("))
                        .push(field.column)
                        .push(", ")
                        .bind(text.clone())
                        .push(") > 0");
                }
                (Target::Metadata(key), Value::Text(text)) if clause.op == Op::Contains => {
                    sql.push(backend.pick("strpos(", "instr("));
                    push_metadata_value(sql, backend, key);
                    sql.push(", ").bind(text.clone()).push(") > 0");
                }
                (Target::Field(field), _) => {
                    sql.push(field.column).push(match clause.op {
                        Op::Eq | Op::Contains => " = ",
                        Op::Gt => " > ",
                        Op::Gte => " >= ",
                        Op::Lt => " < ",
                        Op::Lte => " <= ",
                    });
                    match &clause.value {
                        Value::Text(t) => sql.bind(t.clone()),
                        Value::Number(n) => sql.bind(*n),
                        Value::Null => sql.push("NULL"),
                    };
                }
                (Target::Metadata(key), _) => {
                    push_metadata_value(sql, backend, key);
                    match &clause.value {
                        Value::Null => sql.push(" IS NULL"),
                        Value::Text(t) => sql.push(" = ").bind(t.clone()),
                        Value::Number(n) => sql.push(" = ").bind(n.to_string()),
                    };
                }
            }
            sql.push(")");
        }
        sql.push(")");
    }
}

/// The metadata value under `key`, as SQL text (the JSON text column `metadata`).
fn push_metadata_value(sql: &mut SqlBuilder, backend: Backend, key: &str) {
    match backend {
        Backend::Postgres => sql.push("(metadata::jsonb ->> ").bind(key.to_owned()).push(")"),
        Backend::Sqlite => {
            let path = format!("$.\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""));
            sql.push("json_extract(metadata, ").bind(path).push(")")
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[Field] = &[
        Field { name: "status", kind: FieldKind::Text, column: "status" },
        Field { name: "amount", kind: FieldKind::Number, column: "amount" },
        Field { name: "customer", kind: FieldKind::Text, column: "customer" },
    ];

    #[test]
    fn parses_clauses_with_and() {
        let q = parse("status:'succeeded' AND amount>=1000 AND metadata['order']:\"6735\"", FIELDS).unwrap();
        assert_eq!(q.connective, Connective::And);
        assert_eq!(q.clauses.len(), 3);
        assert_eq!(q.clauses[1].op, Op::Gte);
        assert_eq!(q.clauses[2].target, Target::Metadata("order".into()));
    }

    #[test]
    fn parses_or_and_negation() {
        let q = parse("-customer:'cus_a' OR status:'canceled'", FIELDS).unwrap();
        assert_eq!(q.connective, Connective::Or);
        assert!(q.clauses[0].negated);
    }

    #[test]
    fn rejects_malformed_queries() {
        for bad in [
            "",
            "status:succeeded",
            "status:'a' AND amount>1 OR status:'b'",
            "color:'red'",
            "amount:'big'",
            "status>3",
            "status:'unterminated",
            "metadata[order]:'x'",
            "status:'a' status:'b'",
            "customer:null",
            "customer~'ab'",
            "amount~'100'",
        ] {
            let error = parse(bad, FIELDS).unwrap_err();
            assert_eq!(error.field_violations[0].0, "query", "{bad:?}");
        }
        let eleven = ["amount>1"; 11].join(" AND ");
        assert!(parse(&eleven, FIELDS).is_err());
    }

    #[test]
    fn substring_clauses_build_strpos_or_instr() {
        let q = parse("customer~'cus_a' AND -metadata['k']~\"abc\"", FIELDS).unwrap();
        assert_eq!(q.clauses[0].op, Op::Contains);
        let mut pg = SqlBuilder::new("SELECT 1 WHERE account_id = ");
        pg.bind("a".to_owned());
        q.push_sql(&mut pg, Backend::Postgres);
        assert_eq!(
            pg.sql(),
            "SELECT 1 WHERE account_id = $1 AND ((strpos(customer, $2) > 0) AND NOT (strpos((metadata::jsonb ->> $3), $4) > 0))"
        );
        let mut lite = SqlBuilder::new("SELECT 1 WHERE account_id = ");
        lite.bind("a".to_owned());
        q.push_sql(&mut lite, Backend::Sqlite);
        assert_eq!(
            lite.sql(),
            "SELECT 1 WHERE account_id = $1 AND ((instr(customer, $2) > 0) AND NOT (instr(json_extract(metadata, $3), $4) > 0))"
        );
    }

    #[test]
    fn builds_bound_sql() {
        let q = parse("status:'succeeded' OR metadata['k']:null", FIELDS).unwrap();
        let mut sql = SqlBuilder::new("SELECT 1 WHERE account_id = ");
        sql.bind("a".to_owned());
        q.push_sql(&mut sql, Backend::Postgres);
        assert_eq!(
            sql.sql(),
            "SELECT 1 WHERE account_id = $1 AND ((status = $2) OR ((metadata::jsonb ->> $3) IS NULL))"
        );
    }
}
