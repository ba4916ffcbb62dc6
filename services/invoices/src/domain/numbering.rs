//! Invoice numbers, as Stripe assigns them at finalization: the customer's invoice prefix, `-`, and
//! the customer's invoice sequence padded to 4 digits (`C9E0C52C-0001`).
//!
//! settle does not own customers, so it derives a customer's prefix once, from the account and
//! customer ids (8 upper-case hexadecimal characters), and keeps it with the customer's sequence. A
//! prefix already taken by another customer of the account is derived again with the next `attempt`.

use sha2::{Digest, Sha256};

/// Longest invoice number Stripe accepts.
pub const MAX_NUMBER_LEN: usize = 26;

/// The `attempt`-th candidate prefix of a customer.
pub fn customer_prefix(account: &str, customer: &str, attempt: u32) -> String {
    let digest = Sha256::new()
        .chain_update(account)
        .chain_update([0u8])
        .chain_update(customer)
        .chain_update(attempt.to_be_bytes())
        .finalize();
    digest.iter().take(4).map(|b| format!("{b:02X}")).collect()
}

/// The invoice number for position `sequence` (from 1) of a customer's invoices.
pub fn invoice_number(prefix: &str, sequence: i64) -> String {
    format!("{prefix}-{sequence:04}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_look_like_stripes() {
        let prefix = customer_prefix("acct_1", "cus_1", 0);
        assert_eq!(prefix.len(), 8);
        assert!(prefix.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        assert_eq!(invoice_number(&prefix, 1), format!("{prefix}-0001"));
        assert_eq!(invoice_number("ABCDEF12", 12_345), "ABCDEF12-12345");
    }

    #[test]
    fn a_prefix_is_stable_per_customer_and_attempt() {
        assert_eq!(customer_prefix("acct_1", "cus_1", 0), customer_prefix("acct_1", "cus_1", 0));
        assert_ne!(customer_prefix("acct_1", "cus_1", 0), customer_prefix("acct_1", "cus_1", 1));
        assert_ne!(customer_prefix("acct_1", "cus_1", 0), customer_prefix("acct_2", "cus_1", 0));
        assert_ne!(customer_prefix("acct_1", "cus_1", 0), customer_prefix("acct_1cus_", "1", 0));
    }

    proptest! {
        /// Distinct sequences give distinct numbers, and every number fits Stripe's 26 characters.
        #[test]
        fn numbers_are_unique_per_sequence_and_short(a in 1i64..10_000_000_000_000_000, b in 1i64..10_000_000_000_000_000) {
            let prefix = customer_prefix("acct_1", "cus_1", 0);
            prop_assert!(invoice_number(&prefix, a).len() <= MAX_NUMBER_LEN);
            prop_assert_eq!(invoice_number(&prefix, a) == invoice_number(&prefix, b), a == b);
        }
    }
}
