//! The one mapping from settle errors to gRPC statuses.
//!
//! Every error a client sees is an [`ApiError`]: a gRPC code, a machine-readable
//! [`ErrorReason`] (sent as a `google.rpc.ErrorInfo` with domain `settle` and the reason in lower
//! snake case), a human message and, for bad parameters, `google.rpc.BadRequest` field violations.
//! Services define their own `thiserror` enums and convert each variant into an `ApiError` with an
//! exhaustive `match`, so adding a variant forces a decision about its code and reason.

use std::error::Error as StdError;
use std::fmt;

use settle_proto::common::v1::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::ids::IdPrefix;

/// The `ErrorInfo.domain` of every settle error.
pub const ERROR_DOMAIN: &str = "settle";

/// An error as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: Code,
    pub reason: ErrorReason,
    pub message: String,
    /// `(field, description)` pairs, Stripe parameter names (`lines[0].amount`).
    pub field_violations: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(code: Code, reason: ErrorReason, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), field_violations: Vec::new() }
    }

    /// A bad request parameter: INVALID_ARGUMENT naming the field.
    pub fn invalid_param(field: &str, reason: ErrorReason, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            code: Code::InvalidArgument,
            reason,
            field_violations: vec![(field.to_owned(), message.clone())],
            message,
        }
    }

    /// A required parameter was not sent (Stripe's `parameter_missing`).
    pub fn missing_param(field: &str) -> Self {
        Self::invalid_param(field, ErrorReason::ParameterMissing, format!("Missing required param: {field}."))
    }

    /// Two parameters that exclude each other were both sent.
    pub fn exclusive_params(a: &str, b: &str) -> Self {
        let message = format!("You may only specify one of these parameters: {a}, {b}.");
        ApiError {
            code: Code::InvalidArgument,
            reason: ErrorReason::ParametersExclusive,
            field_violations: vec![(a.to_owned(), message.clone()), (b.to_owned(), message.clone())],
            message,
        }
    }

    /// An object that does not exist for this account (another account's object included).
    pub fn not_found(kind: IdPrefix, id: &str, field: &str) -> Self {
        ApiError {
            code: Code::NotFound,
            reason: ErrorReason::ResourceMissing,
            message: format!("No such {}: '{}'", kind.object_name(), shown(id)),
            field_violations: vec![(field.to_owned(), format!("No such {}", kind.object_name()))],
        }
    }

    /// The object's state does not allow the operation.
    pub fn failed_precondition(reason: ErrorReason, message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, reason, message)
    }

    /// Something unexpected: logs the whole `source()` chain and tells the client only that it
    /// failed, with the request's trace id to find the log line.
    pub fn internal(context: &str, error: &(dyn StdError + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(error), "{context}");
        Self::new(
            Code::Internal,
            ErrorReason::InternalError,
            format!("{context}. The server logged the details; please retry or contact support."),
        )
    }

    /// A dependency (database, another service) could not be reached; safe to retry.
    pub fn unavailable(context: &str, error: &(dyn StdError + 'static)) -> Self {
        tracing::warn!(error = %ErrorChain(error), "{context}");
        Self::new(Code::Unavailable, ErrorReason::DependencyUnavailable, format!("{context}; please retry."))
    }

    /// Adds a field violation.
    pub fn with_violation(mut self, field: &str, description: impl Into<String>) -> Self {
        self.field_violations.push((field.to_owned(), description.into()));
        self
    }

    /// Names the violated fields as parameters of `parent`, for errors of a nested object checked on
    /// its own: `amount` becomes `parent[amount]`, `amount[value]` becomes `parent[amount][value]`.
    /// An error that names no field is about `parent` as a whole and names it.
    pub fn nested_in(mut self, parent: &str) -> Self {
        if self.field_violations.is_empty() {
            let description = self.message.clone();
            return self.with_violation(parent, description);
        }
        for (field, _) in &mut self.field_violations {
            let (head, rest) = field.split_at(field.find('[').unwrap_or(field.len()));
            *field = format!("{parent}[{head}]{rest}");
        }
        self
    }

    /// The reason as clients see it: `resource_missing` for `ERROR_REASON_RESOURCE_MISSING`.
    pub fn reason_code(&self) -> String {
        reason_code(self.reason)
    }
}

/// `ERROR_REASON_RESOURCE_MISSING` → `resource_missing`.
pub fn reason_code(reason: ErrorReason) -> String {
    reason.as_str_name().trim_start_matches("ERROR_REASON_").to_ascii_lowercase()
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.code, self.reason_code(), self.message)
    }
}

impl StdError for ApiError {}

/// The longest error message a client is sent, and the longest field name or description.
pub const MAX_MESSAGE_CHARS: usize = 500;
const MAX_FIELD_CHARS: usize = 200;

/// Longest client input an error message quotes.
const MAX_SHOWN_CHARS: usize = 64;

/// `value` as an error message may quote it: control characters replaced, and cut after
/// [`MAX_SHOWN_CHARS`] characters, so no message echoes unbounded or unprintable input.
pub fn shown(value: &str) -> String {
    let mut out: String =
        value.chars().take(MAX_SHOWN_CHARS).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if value.chars().nth(MAX_SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// `text` cut to `max` characters (the last one an ellipsis).
fn bounded(text: String, max: usize) -> String {
    if text.len() <= max || text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The one mapping of errors to gRPC statuses: code, message, `ErrorInfo` with the reason and
/// `BadRequest` with the fields. Every text is bounded, whatever a handler put in it.
impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let mut details = ErrorDetails::with_error_info(
            error.reason_code(),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        if !error.field_violations.is_empty() {
            details.set_bad_request(
                error
                    .field_violations
                    .into_iter()
                    .take(16)
                    .map(|(field, description)| {
                        tonic_types::FieldViolation::new(
                            bounded(field, MAX_FIELD_CHARS),
                            bounded(description, MAX_MESSAGE_CHARS),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
        }
        Status::with_error_details(error.code, bounded(error.message, MAX_MESSAGE_CHARS), details)
    }
}

/// Any database error on a request path: a pool timeout or lost connection is UNAVAILABLE (retry),
/// anything else INTERNAL.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Encode(inner) = &error
            && let Some(too_large) = inner.downcast_ref::<crate::outbox::ObjectTooLarge>()
        {
            return ApiError::invalid_param(
                "request",
                ErrorReason::ParameterInvalid,
                format!(
                    "The object would be larger than the {} KiB an object may have ({} KiB); send fewer or shorter values.",
                    crate::outbox::MAX_OBJECT_BYTES / 1024,
                    too_large.size / 1024
                ),
            );
        }
        if is_transient(&error) {
            ApiError::unavailable("The database is unavailable", &error)
        } else {
            ApiError::internal("A database operation failed", &error)
        }
    }
}

/// Whether a database error says nothing about the request, only that this attempt could not
/// run: a lost or refused connection, the server shutting down, a serialization failure or
/// deadlock (PostgreSQL SQLSTATE classes 08, 40, 57P), a busy or locked SQLite database. The
/// transaction was rolled back, so the caller may retry.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("40")
                || code.starts_with("57P")
                // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
                || code.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
        }),
        _ => false,
    }
}

/// Formats an error with its whole `source()` chain on one line.
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_error_info_and_bad_request() {
        let status: Status = ApiError::invalid_param(
            "amount",
            ErrorReason::AmountTooSmall,
            "Amount must be at least 50 cents",
        )
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "amount_too_small");
        assert_eq!(info.domain, "settle");
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "amount");
    }

    #[test]
    fn not_found_names_the_object_kind() {
        let e = ApiError::not_found(IdPrefix::PaymentIntent, "pi_123", "id");
        assert_eq!(e.code, Code::NotFound);
        assert_eq!(e.reason_code(), "resource_missing");
        assert_eq!(e.message, "No such payment_intent: 'pi_123'");
    }

    #[test]
    fn no_error_text_echoes_unbounded_or_unprintable_input() {
        let hostile = format!("pi_{}\0\n", "a".repeat(100_000));
        let e = ApiError::not_found(IdPrefix::PaymentIntent, &hostile, "id");
        assert!(e.message.chars().count() < 120 && !e.message.contains(['\0', '\n']), "{}", e.message);
        let status: Status =
            ApiError::invalid_param(&"f".repeat(10_000), ErrorReason::ParameterInvalid, "m".repeat(10_000))
                .into();
        assert!(status.message().chars().count() <= MAX_MESSAGE_CHARS);
        let details = tonic_types::StatusExt::get_error_details(&status);
        let violations = details.bad_request().map(|b| b.field_violations.clone()).unwrap_or_default();
        assert!(violations.iter().all(|v| v.field.chars().count() <= 200 && v.description.chars().count() <= MAX_MESSAGE_CHARS));
    }

    #[test]
    fn nested_errors_name_fields_under_their_parent() {
        let error = ApiError::invalid_param("amount", ErrorReason::AmountTooLarge, "too large")
            .with_violation("amount[value]", "also")
            .nested_in("claims[2]");
        let fields: Vec<&str> = error.field_violations.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["claims[2][amount]", "claims[2][amount][value]"]);
        assert_eq!(error.message, "too large");
        let whole = ApiError::failed_precondition(ErrorReason::PaymentNotAttached, "not attached")
            .nested_in("claims[0]");
        assert_eq!(whole.field_violations, [("claims[0]".to_owned(), "not attached".to_owned())]);
    }

    #[test]
    fn every_reason_has_a_lower_snake_code() {
        for value in 0..200 {
            if let Ok(reason) = ErrorReason::try_from(value) {
                let code = reason_code(reason);
                assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
            }
        }
    }
}
