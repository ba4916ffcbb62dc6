//! Unix-second timestamps, the unit of every settle (and Stripe) time field.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
