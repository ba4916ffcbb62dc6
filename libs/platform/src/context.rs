//! What a handler knows about the call it serves: who it acts for, its idempotency key and its id.

use std::sync::Arc;

use settle_proto::common::v1::ErrorReason;
use tonic::Request;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::scope::Scope;

/// Metadata carrying Stripe's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest idempotency key accepted (Stripe's limit).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The id of one API request (`req_…`), set by the trace layer; it is the trace id when tracing
/// exports, so a log line, a span and an event's `request.id` all name the same call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

/// The authenticated context of one call.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub principal: Principal,
    pub idempotency_key: Option<String>,
    pub request_id: Option<Arc<str>>,
}

impl RequestContext {
    /// Reads the context the platform layers attached to `request`, after holding the message to
    /// the contracts' limits ([`crate::request_limits`]): every handler starts here, so no request
    /// reaches a store with a NUL character, an over-long string or too many entries.
    pub fn of<T: prost::Message + prost::Name>(request: &Request<T>) -> Result<Self, ApiError> {
        crate::request_limits::check(request.get_ref())?;
        Self::of_unchecked(request)
    }

    /// Reads the context without checking the message (for messages outside the contracts).
    pub fn of_unchecked<T>(request: &Request<T>) -> Result<Self, ApiError> {
        let principal = request.extensions().get::<Principal>().cloned().ok_or_else(|| {
            // Only reachable if a service is mounted without the auth layer: a wiring bug.
            ApiError::new(tonic::Code::Unauthenticated, ErrorReason::ApiKeyMissing, "Not authenticated.")
        })?;
        let idempotency_key = match request.metadata().get(IDEMPOTENCY_HEADER) {
            None => None,
            Some(value) => Some(parse_idempotency_key(value.to_str().ok())?),
        };
        let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
        Ok(RequestContext { principal, idempotency_key, request_id })
    }

    /// The (account, mode) the call acts in: what every store query is scoped by.
    pub fn scope(&self) -> &Scope {
        self.principal.scope()
    }

    pub fn account(&self) -> &str {
        self.principal.account()
    }

    pub fn livemode(&self) -> bool {
        self.principal.livemode()
    }
}

fn parse_idempotency_key(value: Option<&str>) -> Result<String, ApiError> {
    let invalid =
        |message: &str| ApiError::invalid_param(IDEMPOTENCY_HEADER, ErrorReason::IdempotencyError, message);
    let key = value.ok_or_else(|| invalid("The idempotency key must be printable ASCII."))?.trim();
    if key.is_empty() {
        return Err(invalid("The idempotency key must not be empty."));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(invalid("The idempotency key must be at most 255 characters."));
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_principal_and_idempotency_key() {
        let mut request = Request::new(());
        request.extensions_mut().insert(Principal::new("acct_a", false, false));
        request.metadata_mut().insert(IDEMPOTENCY_HEADER, "key-1".parse().unwrap());
        let ctx = RequestContext::of_unchecked(&request).unwrap();
        assert_eq!(ctx.account(), "acct_a");
        assert_eq!(ctx.idempotency_key.as_deref(), Some("key-1"));
    }

    #[test]
    fn rejects_overlong_and_empty_keys() {
        assert!(parse_idempotency_key(Some(&"k".repeat(256))).is_err());
        assert!(parse_idempotency_key(Some("  ")).is_err());
        assert!(parse_idempotency_key(None).is_err());
        assert_eq!(parse_idempotency_key(Some(" abc ")).unwrap(), "abc");
    }

    #[test]
    fn unauthenticated_requests_have_no_context() {
        let request = Request::new(());
        assert!(RequestContext::of_unchecked(&request).is_err());
    }
}
