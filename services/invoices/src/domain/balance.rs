//! A customer's balance ledger (per currency) and what invoices post to it. A negative balance is a
//! credit for the customer's next invoice, a positive one is owed and added to it. Every change is a
//! transaction whose `ending_balance` is the ledger's balance after it.
//!
//! Finalization applies the balance (the formulas are in [`super::amounts`]): it posts
//! `ending_balance − starting_balance` (`applied_to_invoice`; the negative of the applied balance),
//! and voiding the invoice posts the opposite (`unapplied_from_invoice`), so the ledger is back where
//! it would be without the invoice.

use settle_money::{Amount, AmountError};

use super::amounts::InvoiceAmounts;

/// Stripe's `customer_balance_transaction.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionType {
    Adjustment,
    AppliedToInvoice,
    CheckoutSessionSubscriptionPayment,
    CheckoutSessionSubscriptionPaymentCanceled,
    CreditNote,
    Initial,
    InvoiceOverpaid,
    InvoiceTooLarge,
    InvoiceTooSmall,
    Migration,
    UnappliedFromInvoice,
    UnspentReceiverCredit,
}

impl TransactionType {
    pub const ALL: [TransactionType; 12] = [
        TransactionType::Adjustment,
        TransactionType::AppliedToInvoice,
        TransactionType::CheckoutSessionSubscriptionPayment,
        TransactionType::CheckoutSessionSubscriptionPaymentCanceled,
        TransactionType::CreditNote,
        TransactionType::Initial,
        TransactionType::InvoiceOverpaid,
        TransactionType::InvoiceTooLarge,
        TransactionType::InvoiceTooSmall,
        TransactionType::Migration,
        TransactionType::UnappliedFromInvoice,
        TransactionType::UnspentReceiverCredit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransactionType::Adjustment => "adjustment",
            TransactionType::AppliedToInvoice => "applied_to_invoice",
            TransactionType::CheckoutSessionSubscriptionPayment => "checkout_session_subscription_payment",
            TransactionType::CheckoutSessionSubscriptionPaymentCanceled => {
                "checkout_session_subscription_payment_canceled"
            }
            TransactionType::CreditNote => "credit_note",
            TransactionType::Initial => "initial",
            TransactionType::InvoiceOverpaid => "invoice_overpaid",
            TransactionType::InvoiceTooLarge => "invoice_too_large",
            TransactionType::InvoiceTooSmall => "invoice_too_small",
            TransactionType::Migration => "migration",
            TransactionType::UnappliedFromInvoice => "unapplied_from_invoice",
            TransactionType::UnspentReceiverCredit => "unspent_receiver_credit",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

/// The ledger's balance after posting `amount` to `balance`.
pub fn post(balance: Amount, amount: Amount) -> Result<Amount, AmountError> {
    balance.checked_add(amount)
}

/// What finalizing an invoice with these amounts posts to the ledger (`applied_to_invoice`): the
/// ledger moves from `starting_balance` to `ending_balance`. Zero when nothing is applied.
pub fn applied_at_finalization(amounts: &InvoiceAmounts) -> Result<Amount, AmountError> {
    let ending = amounts.ending_balance.unwrap_or(amounts.starting_balance);
    ending.checked_sub(amounts.starting_balance)
}

/// What voiding the invoice posts (`unapplied_from_invoice`): the opposite of what finalization
/// posted.
pub fn returned_at_void(amounts: &InvoiceAmounts) -> Result<Amount, AmountError> {
    applied_at_finalization(amounts)?.checked_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::amounts::{AmountInputs, LineAmount, compute};
    use proptest::prelude::*;

    fn finalized(total: i64, balance: i64) -> InvoiceAmounts {
        compute(&AmountInputs {
            lines: vec![LineAmount { amount: Amount::new(total), ..Default::default() }],
            starting_balance: Amount::new(balance),
            balance_applied: true,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn a_credit_is_used_up_to_the_total() {
        let a = finalized(1_000, -300);
        assert_eq!(applied_at_finalization(&a).unwrap().get(), 300, "the ledger goes from -300 to 0");
        assert_eq!(returned_at_void(&a).unwrap().get(), -300);
        let big = finalized(1_000, -5_000);
        assert_eq!(applied_at_finalization(&big).unwrap().get(), 1_000);
    }

    #[test]
    fn an_owed_balance_is_billed_and_a_negative_invoice_becomes_credit() {
        assert_eq!(applied_at_finalization(&finalized(1_000, 250)).unwrap().get(), -250);
        assert_eq!(applied_at_finalization(&finalized(-400, 0)).unwrap().get(), -400);
        assert_eq!(applied_at_finalization(&finalized(1_000, 0)).unwrap().get(), 0);
    }

    #[test]
    fn every_type_has_stripes_name() {
        for t in TransactionType::ALL {
            assert_eq!(TransactionType::parse(t.as_str()), Some(t));
        }
    }

    proptest! {
        /// After finalization the ledger holds the invoice's `ending_balance`; after a void it is
        /// back at `starting_balance`; and what was posted is the negative of the applied balance.
        #[test]
        fn finalize_then_void_returns_the_ledger_to_its_start(total in -1_000_000i64..1_000_000, balance in -2_000_000i64..2_000_000) {
            let a = finalized(total, balance);
            let posted = applied_at_finalization(&a).unwrap();
            let after = post(Amount::new(balance), posted).unwrap();
            prop_assert_eq!(Some(after), a.ending_balance);
            prop_assert_eq!(posted.get(), -a.applied_balance.get());
            prop_assert_eq!(post(after, returned_at_void(&a).unwrap()).unwrap().get(), balance);
            prop_assert!(after.get() <= 0, "finalization leaves no debit behind");
        }
    }
}
