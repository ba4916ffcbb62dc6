//! Bearer-key authentication: `authorization: Bearer <key>` → the [`Principal`] the call acts for.
//!
//! API keys map to accounts (`SETTLE_API_KEYS="sk_test_…=acct_…,…"`); `sk_live_` keys act in live
//! mode, all others in test mode. One internal key (`SETTLE_INTERNAL_KEY`) lets settle's own services
//! act for the account and mode named in the `settle-account` / `settle-livemode` metadata: saga steps
//! and their recovery loops need that, and only that key may call the saga-facing services. The
//! internal key is scoped: besides those services it is accepted only on the public methods in
//! [`INTERNAL_PUBLIC_METHODS`], the ones settle's services call on each other. With an API key the
//! two headers are ignored: the key alone decides the account and mode.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::HeaderMap;
use settle_proto::common::v1::ErrorReason;
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::error::ApiError;
use crate::ids::IdPrefix;
use crate::scope::Scope;

/// Metadata naming the account an internal call acts for.
pub const ACCOUNT_HEADER: &str = "settle-account";
/// Metadata carrying the livemode of an internal call: exactly `true` or `false`.
pub const LIVEMODE_HEADER: &str = "settle-livemode";

/// The public methods the internal key may call, each because a settle service calls it on a peer
/// (`peers.rs`, the invoices event consumer) on behalf of an account. Everything else public answers
/// PERMISSION_DENIED to the internal key, so a leaked internal key cannot act as any account on the
/// whole API.
pub const INTERNAL_PUBLIC_METHODS: &[&str] = &[
    // invoices → payments: PayInvoice, the default payment of charge_automatically invoices,
    // rendering `confirmation_secret`, and attach checks.
    "/settle.payments.v1.PaymentIntentService/CreatePaymentIntent",
    "/settle.payments.v1.PaymentIntentService/ConfirmPaymentIntent",
    "/settle.payments.v1.PaymentIntentService/CancelPaymentIntent",
    "/settle.payments.v1.PaymentIntentService/GetPaymentIntent",
    // invoices' consumer follows every account's payment events (`all_accounts`).
    "/settle.events.v1.EventService/StreamEvents",
    "/settle.events.v1.EventService/ListEvents",
    // invoices' RetryQuarantinedEvent reads the quarantined event again.
    "/settle.events.v1.EventService/GetEvent",
    // credit-notes → payments: the refunds and payments a note is computed from.
    "/settle.payments.v1.RefundService/GetRefund",
    "/settle.payments.v1.RefundService/ListRefunds",
    "/settle.payments.v1.PaymentRecordService/GetPaymentRecord",
    // credit-notes → invoices: the invoice, its lines and its payments.
    "/settle.invoices.v1.InvoiceService/GetInvoice",
    "/settle.invoices.v1.InvoiceService/ListInvoiceLines",
    "/settle.invoices.v1.InvoicePaymentService/ListInvoicePayments",
];

/// The development key accepted when no `SETTLE_API_KEYS` are configured.
pub const DEV_API_KEY: &str = "sk_test_settle_dev";
/// The account the development key acts for.
pub const DEV_ACCOUNT: &str = "acct_settledev";
/// The internal key used between services when none is configured (development only).
pub const DEV_INTERNAL_KEY: &str = "sk_internal_settle_dev";

/// Who a call acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    scope: Scope,
    internal: bool,
}

impl Principal {
    /// A principal for `account` (tests and internal tooling).
    pub fn new(account: &str, livemode: bool, internal: bool) -> Self {
        Principal { scope: Scope::new(account, livemode), internal }
    }

    /// The (account, mode) every row the call reads or writes must belong to.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The account (`acct_…`) of the scope.
    pub fn account(&self) -> &str {
        self.scope.account()
    }

    pub fn livemode(&self) -> bool {
        self.scope.livemode()
    }

    /// Whether the call came from another settle service with the internal key.
    pub fn is_internal(&self) -> bool {
        self.internal
    }
}

/// Why a call could not be authenticated or authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("You did not provide an API key. Send `authorization: Bearer <key>` metadata.")]
    Missing,
    #[error("Invalid API key provided.")]
    Invalid,
    #[error("Internal calls must name the account in `settle-account` metadata (acct_…).")]
    MissingAccount,
    #[error("Internal calls must send `settle-livemode` metadata `true` or `false`.")]
    InvalidLivemode,
    #[error("This method is only for settle's own services.")]
    InternalOnly,
    #[error("The internal key may not call this method.")]
    InternalNotAllowed,
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let (code, reason) = match error {
            AuthError::Missing => (Code::Unauthenticated, ErrorReason::ApiKeyMissing),
            AuthError::Invalid => (Code::Unauthenticated, ErrorReason::ApiKeyInvalid),
            AuthError::MissingAccount => (Code::Unauthenticated, ErrorReason::ParameterMissing),
            AuthError::InvalidLivemode => (Code::Unauthenticated, ErrorReason::ParameterInvalid),
            AuthError::InternalOnly | AuthError::InternalNotAllowed => {
                (Code::PermissionDenied, ErrorReason::PermissionDenied)
            }
        };
        ApiError::new(code, reason, error.to_string())
    }
}

/// A malformed `SETTLE_API_KEYS` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SETTLE_API_KEYS entry {entry:?}: {problem}")]
pub struct KeysConfigError {
    entry: String,
    problem: &'static str,
}

/// The configured keys.
#[derive(Clone)]
pub struct ApiKeys {
    keys: HashMap<String, Principal>,
    internal_key: Option<String>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("ApiKeys")
            .field("keys", &self.keys.len())
            .field("internal_key", &self.internal_key.is_some())
            .finish()
    }
}

impl ApiKeys {
    /// Parses `key=acct_id` pairs separated by commas, plus the optional internal key.
    pub fn parse(spec: &str, internal_key: Option<&str>) -> Result<Self, KeysConfigError> {
        let mut keys = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let problem = |problem| KeysConfigError { entry: redact(entry), problem };
            let (key, account) = entry.split_once('=').ok_or_else(|| problem("expected key=acct_id"))?;
            let (key, account) = (key.trim(), account.trim());
            if key.len() < 8 {
                return Err(problem("keys must be at least 8 characters"));
            }
            if !IdPrefix::Account.matches(account) {
                return Err(problem("the account must look like acct_…"));
            }
            let livemode = key.starts_with("sk_live_");
            if keys.insert(key.to_owned(), Principal::new(account, livemode, false)).is_some() {
                return Err(problem("the same key is listed twice"));
            }
        }
        let internal_key = internal_key.map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned);
        if let Some(internal) = &internal_key
            && keys.contains_key(internal)
        {
            return Err(KeysConfigError {
                entry: redact(internal),
                problem: "the internal key must differ from every API key",
            });
        }
        Ok(ApiKeys { keys, internal_key })
    }

    /// The development configuration: one test key and the development internal key (the
    /// services get it through [`crate::config::PlatformConfig::api_keys`], which parses it).
    #[cfg(test)]
    fn development() -> Self {
        match ApiKeys::parse(&format!("{DEV_API_KEY}={DEV_ACCOUNT}"), Some(DEV_INTERNAL_KEY)) {
            Ok(keys) => keys,
            Err(error) => panic!("the development keys do not parse: {error}"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn internal_key(&self) -> Option<&str> {
        self.internal_key.as_deref()
    }

    /// Resolves the caller from request headers.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let value = headers.get(http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Invalid)?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Invalid)?
            .trim();
        if let Some(principal) = self.keys.get(key) {
            return Ok(principal.clone());
        }
        match &self.internal_key {
            Some(internal) if constant_time_eq(internal.as_bytes(), key.as_bytes()) => {
                let account = headers
                    .get(ACCOUNT_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .filter(|a| IdPrefix::Account.matches(a))
                    .ok_or(AuthError::MissingAccount)?;
                // A missing or odd value is refused rather than read as test mode.
                let livemode = match headers.get(LIVEMODE_HEADER).map(http::HeaderValue::as_bytes) {
                    Some(b"true") => true,
                    Some(b"false") => false,
                    _ => return Err(AuthError::InvalidLivemode),
                };
                Ok(Principal::new(account, livemode, true))
            }
            _ => Err(AuthError::Invalid),
        }
    }
}

fn redact(secret: &str) -> String {
    let visible: String = secret.chars().take(8).collect();
    format!("{visible}…")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Paths that need no key: health checks (probes) and reflection (tooling).
fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// Authenticates every call except health and reflection, puts the [`Principal`] in the request
/// extensions, and refuses API keys on the saga-facing services.
#[derive(Clone)]
pub struct AuthLayer {
    state: Arc<AuthState>,
}

struct AuthState {
    keys: ApiKeys,
    /// Path prefixes (`/settle.payments.v1.PaymentAttachmentService/`) only the internal key may call.
    internal_paths: Vec<String>,
}

impl AuthLayer {
    pub fn new(keys: ApiKeys, internal_services: &[&str]) -> Self {
        let internal_paths = internal_services.iter().map(|s| format!("/{s}/")).collect();
        AuthLayer { state: Arc::new(AuthState { keys, internal_paths }) }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated { inner, state: self.state.clone() }
    }
}

/// The service [`AuthLayer`] wraps.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    state: Arc<AuthState>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authenticated<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        if is_public(path) {
            return Either::Left(self.inner.call(request));
        }
        let internal_only = self.state.internal_paths.iter().any(|p| path.starts_with(p.as_str()));
        let outcome = self
            .state
            .keys
            .authenticate(request.headers())
            .and_then(|principal| authorize(principal, path, internal_only));
        match outcome {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Either::Left(self.inner.call(request))
            }
            Err(error) => {
                tracing::debug!(%error, path, "refused call");
                let status: Status = ApiError::from(error).into();
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

/// Whether `principal` may call `path`: API keys everything but the internal-only services, the
/// internal key those services and [`INTERNAL_PUBLIC_METHODS`].
fn authorize(principal: Principal, path: &str, internal_only: bool) -> Result<Principal, AuthError> {
    match (principal.is_internal(), internal_only) {
        (false, true) => Err(AuthError::InternalOnly),
        (false, false) | (true, true) => Ok(principal),
        (true, false) if INTERNAL_PUBLIC_METHODS.contains(&path) => Ok(principal),
        (true, false) => Err(AuthError::InternalNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn parses_keys_and_derives_livemode() {
        let keys = ApiKeys::parse("sk_test_aaaa=acct_one, sk_live_bbbb=acct_two", None).unwrap();
        let test = keys.authenticate(&headers(&[("authorization", "Bearer sk_test_aaaa")])).unwrap();
        assert_eq!(test.account(), "acct_one");
        assert!(!test.livemode());
        let live = keys.authenticate(&headers(&[("authorization", "Bearer sk_live_bbbb")])).unwrap();
        assert_eq!(live.account(), "acct_two");
        assert!(live.livemode());
    }

    #[test]
    fn rejects_malformed_key_config() {
        assert!(ApiKeys::parse("sk_test_aaaa", None).is_err());
        assert!(ApiKeys::parse("short=acct_one", None).is_err());
        assert!(ApiKeys::parse("sk_test_aaaa=nope", None).is_err());
        assert!(ApiKeys::parse("sk_test_aaaa=acct_a,sk_test_aaaa=acct_b", None).is_err());
        assert!(ApiKeys::parse("sk_test_aaaa=acct_a", Some("sk_test_aaaa")).is_err());
    }

    #[test]
    fn missing_and_unknown_keys_are_refused() {
        let keys = ApiKeys::development();
        assert_eq!(keys.authenticate(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(
            keys.authenticate(&headers(&[("authorization", "Bearer sk_test_wrong")])),
            Err(AuthError::Invalid)
        );
        assert_eq!(keys.authenticate(&headers(&[("authorization", "Basic abc")])), Err(AuthError::Invalid));
    }

    #[test]
    fn internal_key_acts_for_the_named_account() {
        let keys = ApiKeys::development();
        let principal = keys
            .authenticate(&headers(&[
                ("authorization", "Bearer sk_internal_settle_dev"),
                ("settle-account", "acct_xyz"),
                ("settle-livemode", "true"),
            ]))
            .unwrap();
        assert!(principal.is_internal());
        assert_eq!(principal.account(), "acct_xyz");
        assert!(principal.livemode());
        assert_eq!(
            keys.authenticate(&headers(&[("authorization", "Bearer sk_internal_settle_dev")])),
            Err(AuthError::MissingAccount)
        );
    }

    #[test]
    fn internal_calls_need_an_exact_livemode() {
        let keys = ApiKeys::development();
        let call = |livemode: Option<&str>| {
            let mut pairs =
                vec![("authorization", "Bearer sk_internal_settle_dev"), ("settle-account", "acct_xyz")];
            if let Some(value) = livemode {
                pairs.push(("settle-livemode", value));
            }
            keys.authenticate(&headers(&pairs)).map(|p| p.livemode())
        };
        assert_eq!(call(Some("false")), Ok(false));
        assert_eq!(call(Some("true")), Ok(true));
        for odd in [None, Some(""), Some("TRUE"), Some("1"), Some("yes"), Some("true ")] {
            assert_eq!(call(odd), Err(AuthError::InvalidLivemode), "{odd:?}");
        }
    }

    #[test]
    fn api_keys_ignore_forged_account_and_mode_headers() {
        let keys = ApiKeys::parse("sk_test_aaaa=acct_one", Some("sk_internal_zzzz")).unwrap();
        let principal = keys
            .authenticate(&headers(&[
                ("authorization", "Bearer sk_test_aaaa"),
                ("settle-account", "acct_victim"),
                ("settle-livemode", "true"),
            ]))
            .unwrap();
        assert_eq!(principal.scope(), &Scope::new("acct_one", false));
        assert!(!principal.is_internal());
    }

    #[test]
    fn the_internal_key_is_scoped_to_internal_services_and_the_allow_list() {
        let internal = Principal::new("acct_x", false, true);
        let api = Principal::new("acct_x", false, false);
        let attach = "/settle.payments.v1.PaymentAttachmentService/ReserveAttachment";
        assert!(authorize(internal.clone(), attach, true).is_ok());
        assert_eq!(authorize(api.clone(), attach, true), Err(AuthError::InternalOnly));
        let allowed = "/settle.payments.v1.PaymentIntentService/GetPaymentIntent";
        assert!(authorize(internal.clone(), allowed, false).is_ok());
        for refused in [
            "/settle.payments.v1.PaymentIntentService/ListPaymentIntents",
            "/settle.payments.v1.RefundService/CreateRefund",
            "/settle.payments.v1.TestHelperService/SettlePaymentIntent",
            "/settle.invoices.v1.InvoiceService/VoidInvoice",
            // A prefix of an allowed path is not the allowed path.
            "/settle.payments.v1.PaymentIntentService/GetPaymentIntentX",
        ] {
            assert_eq!(
                authorize(internal.clone(), refused, false),
                Err(AuthError::InternalNotAllowed),
                "{refused}"
            );
            assert!(authorize(api.clone(), refused, false).is_ok());
        }
        let status: Status = ApiError::from(AuthError::InternalNotAllowed).into();
        assert_eq!(status.code(), Code::PermissionDenied);
    }

    #[test]
    fn key_config_errors_do_not_leak_the_whole_key() {
        let err = ApiKeys::parse("sk_test_supersecretvalue=bad", None).unwrap_err();
        assert!(!err.to_string().contains("supersecretvalue"));
    }
}
