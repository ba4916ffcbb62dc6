//! An invoice's status machine (Stripe's), and how money changes move it.
//!
//! ```text
//! draft ──finalize──▶ open ──(nothing left to pay)──▶ paid
//!   │                  │  ▲                           │
//! delete               │  └──(a payment detached)─────┘
//!                      ├──mark_uncollectible──▶ uncollectible ──(paid)──▶ paid
//!                      └──void──▶ void ◀──void── uncollectible
//! ```

use super::amounts::InvoiceAmounts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Uncollectible,
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Uncollectible => "uncollectible",
            InvoiceStatus::Void => "void",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            InvoiceStatus::Draft,
            InvoiceStatus::Open,
            InvoiceStatus::Paid,
            InvoiceStatus::Uncollectible,
            InvoiceStatus::Void,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    /// Whether a payment may be applied to an invoice in this status (the payment-application
    /// guide: open, or uncollectible, which can still be paid).
    pub fn takes_payments(self) -> bool {
        matches!(self, InvoiceStatus::Open | InvoiceStatus::Uncollectible)
    }

    /// Whether the invoice's lines and money fields can still change.
    pub fn is_editable(self) -> bool {
        self == InvoiceStatus::Draft
    }
}

/// What a money change (a payment paid or detached, a credit note) does to the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The status stays as it is.
    Unchanged,
    /// Nothing is left to pay: the invoice becomes `paid` (`invoice.paid`).
    BecamePaid,
    /// A paid invoice owes money again (a payment was detached): it reopens, and Stripe's rule for
    /// unapplied payments sets `auto_advance=false` so nothing collects it automatically.
    Reopened,
}

/// Decides the status after the invoice's amounts changed.
pub fn settle(status: InvoiceStatus, amounts: &InvoiceAmounts) -> (InvoiceStatus, Settlement) {
    match status {
        InvoiceStatus::Open | InvoiceStatus::Uncollectible if amounts.is_settled() => {
            (InvoiceStatus::Paid, Settlement::BecamePaid)
        }
        InvoiceStatus::Paid if !amounts.is_settled() => (InvoiceStatus::Open, Settlement::Reopened),
        other => (other, Settlement::Unchanged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_money::Amount;

    fn amounts(remaining: i64) -> InvoiceAmounts {
        InvoiceAmounts { amount_remaining: Amount::new(remaining), ..Default::default() }
    }

    #[test]
    fn paying_everything_pays_the_invoice() {
        assert_eq!(settle(InvoiceStatus::Open, &amounts(0)), (InvoiceStatus::Paid, Settlement::BecamePaid));
        assert_eq!(
            settle(InvoiceStatus::Uncollectible, &amounts(0)),
            (InvoiceStatus::Paid, Settlement::BecamePaid)
        );
        assert_eq!(settle(InvoiceStatus::Open, &amounts(1)), (InvoiceStatus::Open, Settlement::Unchanged));
    }

    #[test]
    fn a_detached_payment_reopens_a_paid_invoice() {
        assert_eq!(settle(InvoiceStatus::Paid, &amounts(500)), (InvoiceStatus::Open, Settlement::Reopened));
        assert_eq!(settle(InvoiceStatus::Paid, &amounts(0)), (InvoiceStatus::Paid, Settlement::Unchanged));
    }

    #[test]
    fn drafts_and_void_invoices_are_not_moved_by_money() {
        for status in [InvoiceStatus::Draft, InvoiceStatus::Void] {
            assert_eq!(settle(status, &amounts(0)).1, Settlement::Unchanged);
            assert!(!status.takes_payments());
        }
        assert!(InvoiceStatus::Open.takes_payments() && InvoiceStatus::Uncollectible.takes_payments());
        assert!(!InvoiceStatus::Paid.takes_payments());
    }

    #[test]
    fn names_round_trip() {
        for s in [
            InvoiceStatus::Draft,
            InvoiceStatus::Open,
            InvoiceStatus::Paid,
            InvoiceStatus::Uncollectible,
            InvoiceStatus::Void,
        ] {
            assert_eq!(InvoiceStatus::parse(s.as_str()), Some(s));
        }
    }
}
