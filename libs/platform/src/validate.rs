//! Parameter checks every service applies the same way, with Stripe's limits and messages. Each
//! returns an [`ApiError`] naming the field, so a handler can `?` them before touching any store.

use std::collections::BTreeMap;

use settle_proto::common::v1::ErrorReason;

use crate::error::{ApiError, shown};
use crate::ids::IdPrefix;

/// Stripe's metadata limits: 50 keys, keys up to 40 characters, values up to 500, no `[` or `]`.
pub fn metadata(field: &str, metadata: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if metadata.len() > 50 {
        return Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            "You can specify up to 50 keys, with key names up to 40 characters long and values up to 500 characters long.",
        ));
    }
    for (key, value) in metadata {
        // Stripe names the key; a long one is shown cut.
        let name = format!("{field}[{}]", shown(key));
        if key.is_empty() || key.chars().count() > 40 || key.contains(['[', ']']) {
            return Err(ApiError::invalid_param(
                &name,
                ErrorReason::ParameterInvalid,
                "Metadata keys must be 1 to 40 characters long and may not contain square brackets.",
            ));
        }
        if value.chars().count() > 500 {
            return Err(ApiError::invalid_param(
                &name,
                ErrorReason::ParameterInvalid,
                "Metadata values can have up to 500 characters.",
            ));
        }
    }
    Ok(())
}

/// Applies a metadata update Stripe's way: a key with a value sets it, an empty value removes it.
pub fn merge_metadata(current: &mut BTreeMap<String, String>, update: &BTreeMap<String, String>) {
    for (key, value) in update {
        if value.is_empty() {
            current.remove(key);
        } else {
            current.insert(key.clone(), value.clone());
        }
    }
}

/// A string no longer than `max` characters.
pub fn max_len(field: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            format!("Invalid string: {field} must be at most {max} characters long."),
        )),
        _ => Ok(()),
    }
}

/// An upstream customer id (`cus_…`); settle does not own customers, so only the shape is checked.
pub fn customer_id(field: &str, value: &str) -> Result<(), ApiError> {
    let body = value.strip_prefix("cus_").unwrap_or_default();
    if body.is_empty() || body.len() > 64 || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            format!("Invalid customer id {:?}: expected cus_…", shown(value)),
        ));
    }
    Ok(())
}

/// An id parameter that must be shaped like an id of `kind` (`saga_…`, `in_…`): a malformed one
/// is `parameter_invalid`. (Where an unknown object is looked up, a malformed id is instead treated
/// like a missing one, `resource_missing`.)
pub fn id(field: &str, value: &str, kind: IdPrefix) -> Result<(), ApiError> {
    if kind.matches(value) {
        Ok(())
    } else if value.is_empty() {
        Err(ApiError::missing_param(field))
    } else {
        Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            format!(
                "Invalid {field} {:?}: expected the id of a {} ({kind}…).",
                shown(value),
                kind.object_name()
            ),
        ))
    }
}

/// A plausible e-mail address (one `@`, something on both sides, no spaces).
pub fn email(field: &str, value: &str) -> Result<(), ApiError> {
    let plausible = value.len() <= 800
        && !value.contains(char::is_whitespace)
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if plausible {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            format!("Invalid email address: {}", shown(value)),
        ))
    }
}

/// Stripe's statement descriptor rules: at most `max` characters, at least one letter, none of
/// `< > \ ' " *`.
pub fn statement_descriptor(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        ApiError::invalid_param(field, ErrorReason::ParameterInvalid, format!("Invalid {field}: {why}"))
    };
    if value.chars().count() > max {
        return Err(invalid(&format!("it must be at most {max} characters long")));
    }
    if !value.chars().any(char::is_alphabetic) {
        return Err(invalid("it must contain at least one letter"));
    }
    if value.contains(['<', '>', '\\', '\'', '"', '*']) {
        return Err(invalid("it cannot contain any of <, >, \\, ', \" or *"));
    }
    Ok(())
}

/// A unix time (seconds) of something that already happened: positive and not after `now`.
pub fn past_unix_time(field: &str, value: i64, now: i64) -> Result<(), ApiError> {
    if value < 1 {
        return Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalidInteger,
            format!("Invalid {field}: it must be a positive unix timestamp (seconds)."),
        ));
    }
    if value > now {
        return Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            format!("Invalid {field}: it cannot be in the future."),
        ));
    }
    Ok(())
}

/// Rejects a parameter settle cannot honour (Connect fields and the like).
pub fn unsupported(field: &str, present: bool, what: &str) -> Result<(), ApiError> {
    if present {
        Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            format!("settle does not support {field}: {what}."),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_limits() {
        let mut m = BTreeMap::new();
        m.insert("order".to_owned(), "1".to_owned());
        assert!(metadata("metadata", &m).is_ok());
        m.insert("k".repeat(41), "v".to_owned());
        assert_eq!(
            metadata("metadata", &m).unwrap_err().field_violations[0].0,
            format!("metadata[{}]", "k".repeat(41))
        );
        // A key too long to be one is shown cut, never whole.
        let huge: BTreeMap<_, _> = [("k".repeat(10_000), String::new())].into();
        let name = metadata("metadata", &huge).unwrap_err().field_violations[0].0.clone();
        assert!(name.len() < 100, "{name}");
        let many: BTreeMap<_, _> = (0..51).map(|i| (i.to_string(), String::new())).collect();
        assert!(metadata("metadata", &many).is_err());
    }

    #[test]
    fn merge_sets_and_removes() {
        let mut current: BTreeMap<_, _> = [("a".to_owned(), "1".to_owned())].into();
        let update: BTreeMap<_, _> =
            [("a".to_owned(), String::new()), ("b".to_owned(), "2".to_owned())].into();
        merge_metadata(&mut current, &update);
        assert_eq!(current, [("b".to_owned(), "2".to_owned())].into());
    }

    #[test]
    fn past_unix_times_are_positive_and_not_in_the_future() {
        assert!(past_unix_time("at", 100, 100).is_ok());
        let future = past_unix_time("at", 101, 100).unwrap_err();
        assert_eq!(future.reason_code(), "parameter_invalid");
        assert_eq!(future.field_violations[0].0, "at");
        for bad in [0, -5] {
            assert_eq!(
                past_unix_time("at", bad, 100).unwrap_err().reason_code(),
                "parameter_invalid_integer"
            );
        }
    }

    #[test]
    fn descriptors_emails_and_customers() {
        assert!(statement_descriptor("statement_descriptor", "SETTLE SHOP", 22).is_ok());
        assert!(statement_descriptor("statement_descriptor", "12345", 22).is_err());
        assert!(statement_descriptor("statement_descriptor", "A*B", 22).is_err());
        assert!(email("receipt_email", "a@b.co").is_ok());
        assert!(email("receipt_email", "nope").is_err());
        assert!(customer_id("customer", "cus_123").is_ok());
        assert!(customer_id("customer", "acct_1").is_err());
        assert!(customer_id("customer", "cus_").is_err());
    }

    #[test]
    fn ids_must_have_the_kinds_prefix() {
        assert!(id("invoice", "in_123", IdPrefix::Invoice).is_ok());
        let wrong = id("invoice", "pi_123", IdPrefix::Invoice).unwrap_err();
        assert_eq!(
            (wrong.reason_code().as_str(), wrong.field_violations[0].0.as_str()),
            ("parameter_invalid", "invoice")
        );
        assert_eq!(id("saga_id", "", IdPrefix::Saga).unwrap_err().reason_code(), "parameter_missing");
    }
}
