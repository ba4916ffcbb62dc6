//! The wall every row lives behind: one account's data in one mode.
//!
//! Stripe keeps test and live data apart: an object made with a test key does not exist for a live
//! key of the same account (`NOT_FOUND`), lists, searches and events see only their mode, and an
//! idempotency key used in one mode is unused in the other. So every store query, idempotency key,
//! saga and event is scoped by `(account_id, livemode)`, never by the account alone; the store APIs
//! take a [`Scope`] rather than an account id so that a query without the mode cannot be written by
//! accident.

use std::fmt;
use std::sync::Arc;

/// An account (`acct_…`) in test or live mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    account: Arc<str>,
    livemode: bool,
}

impl Scope {
    pub fn new(account: impl Into<Arc<str>>, livemode: bool) -> Self {
        Scope { account: account.into(), livemode }
    }

    /// A test-mode scope (tests, tooling).
    pub fn test(account: &str) -> Self {
        Scope::new(account, false)
    }

    /// The account every row of the scope belongs to.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Whether the scope is live-mode data.
    pub fn livemode(&self) -> bool {
        self.livemode
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, if self.livemode { "live" } else { "test" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_of_one_account_are_different_scopes() {
        assert_ne!(Scope::new("acct_a", true), Scope::new("acct_a", false));
        assert_eq!(Scope::test("acct_a").to_string(), "acct_a/test");
        assert_eq!(Scope::new("acct_a", true).to_string(), "acct_a/live");
    }
}
