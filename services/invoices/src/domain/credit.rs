//! The credit a credit note gives its invoice (`CreditNoteLedgerService`), as pure rules. The
//! credit-notes service issues a note as a saga; invoices reserves the credit, applies it, and may
//! release it (compensation) or reverse it (the note is voided):
//!
//! ```text
//! reserve ──▶ reserved ──apply──▶ applied ──reverse──▶ reversed
//!                │
//!             release──▶ released
//! ```
//!
//! At reservation, under the invoice's row lock (design: "The saga"; reference §5.4):
//!
//! ```text
//! Σ amount of reserved and applied credits + amount ≤ total          (non-void notes within the total)
//! pre  = min(amount, max(0, amount_remaining − other reserved pre))  (never below zero remaining)
//! post = amount − pre = refund_amount + credit_amount + out_of_band_amount
//! ```
//!
//! Applying adds `pre`/`post` to the invoice's `pre_payment_credit_notes_amount` /
//! `post_payment_credit_notes_amount` (the amounts follow from [`super::amounts`]); reversing
//! subtracts them again, so apply then reverse leaves every amount as it was.

use settle_money::{Amount, AmountError};

use super::invoice::InvoiceStatus;

/// Where a credit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreditStatus {
    /// Counts toward the invoice's credit-note limit; the invoice's amounts do not show it yet.
    Reserved,
    /// In the invoice's amounts and the customer's balance: the credit note is issued.
    Applied,
    /// Given back before it was applied; counts for nothing.
    Released,
    /// Taken back after it was applied (the credit note was voided); counts for nothing.
    Reversed,
}

impl CreditStatus {
    pub const ALL: [CreditStatus; 4] =
        [CreditStatus::Reserved, CreditStatus::Applied, CreditStatus::Released, CreditStatus::Reversed];

    pub fn as_str(self) -> &'static str {
        match self {
            CreditStatus::Reserved => "reserved",
            CreditStatus::Applied => "applied",
            CreditStatus::Released => "released",
            CreditStatus::Reversed => "reversed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether the credit belongs to a non-void credit note (it counts toward the invoice's total).
    pub fn counts_toward_total(self) -> bool {
        matches!(self, CreditStatus::Reserved | CreditStatus::Applied)
    }
}

/// Why a credit step was refused. Nothing changed when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("The credit note's amount must be a positive integer (in minor units); got {value}.")]
    AmountNotPositive { value: i64 },
    #[error("{field} must not be negative; got {value}.")]
    PartNegative { field: &'static str, value: i64 },
    #[error("Invoice {invoice} is {}; credit notes can only be issued for open, paid or uncollectible invoices.", .status.as_str())]
    InvoiceNotCreditable { invoice: String, status: InvoiceStatus },
    #[error(
        "The credit note's amount of {amount} would take the invoice's credit notes to {would_be}, beyond its total of {total} ({credited} is already credited)."
    )]
    ExceedsInvoice { amount: i64, credited: i64, would_be: i64, total: i64 },
    #[error(
        "The credit note's post-payment amount is {post_payment} (of {amount}, {pre_payment} reduces the amount remaining), but refund_amount + credit_amount + out_of_band_amount is {parts}."
    )]
    AmountsMismatch { amount: i64, pre_payment: i64, post_payment: i64, parts: i64 },
    #[error("The credit was released; it cannot be applied.")]
    Released,
    #[error("The credit is {}; only a reserved credit can be released (reverse an applied one).", .status.as_str())]
    NotReleasable { status: CreditStatus },
    #[error("The credit note's credit is {}; only an applied credit can be reversed.", .status.as_str())]
    NotApplied { status: CreditStatus },
    #[error("The credit note's credit was already reversed by saga {saga}.")]
    ReversedByOther { saga: String },
    #[error(
        "The customer's balance ({balance}) no longer holds the credit of {needed} to take back: a credit balance must be at most -{needed}."
    )]
    BalanceInsufficient { balance: i64, needed: i64 },
    #[error("The amounts are too large for settle to hold.")]
    Overflow(#[from] AmountError),
    #[error(
        "The invoice's credit-note totals ({pre_payment} pre-payment, {post_payment} post-payment) do not hold the credit being reversed."
    )]
    TotalsInconsistent { pre_payment: i64, post_payment: i64 },
}

/// What a credit note asks of its invoice: ReserveInvoiceCredit's amounts, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditRequest {
    /// The credit note's total; positive.
    pub amount: Amount,
    /// The part credited to the customer balance.
    pub credit_amount: Amount,
    /// The part refunded (a new refund plus the linked ones).
    pub refund_amount: Amount,
    /// The part credited outside settle.
    pub out_of_band_amount: Amount,
}

impl CreditRequest {
    pub fn parse(
        amount: i64,
        credit_amount: i64,
        refund_amount: i64,
        out_of_band_amount: i64,
    ) -> Result<Self, CreditError> {
        let part = |field: &'static str, value: i64| {
            Amount::non_negative(value).map_err(|_| CreditError::PartNegative { field, value })
        };
        Ok(CreditRequest {
            amount: Amount::positive(amount).map_err(|_| CreditError::AmountNotPositive { value: amount })?,
            credit_amount: part("credit_amount", credit_amount)?,
            refund_amount: part("refund_amount", refund_amount)?,
            out_of_band_amount: part("out_of_band_amount", out_of_band_amount)?,
        })
    }

    /// `refund_amount + credit_amount + out_of_band_amount`: what the post-payment part must be.
    pub fn post_payment_parts(&self) -> Result<Amount, CreditError> {
        Ok(self.refund_amount.checked_add(self.credit_amount)?.checked_add(self.out_of_band_amount)?)
    }
}

/// The invoice as a reservation sees it, read under the invoice's row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InvoiceRoom {
    pub total: Amount,
    pub amount_remaining: Amount,
    /// Σ `amount` of the invoice's reserved and applied credits (its non-void credit notes).
    pub credited: Amount,
    /// Σ `pre_payment_amount` of the invoice's reserved, not yet applied, credits: what they will
    /// take of `amount_remaining` when applied.
    pub reserved_pre_payment: Amount,
}

impl InvoiceRoom {
    /// What a new pre-payment part may take: what remains unpaid less what reserved credits hold.
    pub fn pre_payment_room(&self) -> Result<Amount, CreditError> {
        Ok(self.amount_remaining.checked_sub(self.reserved_pre_payment)?.clamp_non_negative())
    }
}

/// How a credit divides into the part that reduces what is due and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Split {
    pub pre_payment: Amount,
    pub post_payment: Amount,
}

/// Only finalized invoices that are not void take credit notes (reference §5.4).
pub fn check_creditable(invoice: &str, status: InvoiceStatus) -> Result<(), CreditError> {
    match status {
        InvoiceStatus::Open | InvoiceStatus::Paid | InvoiceStatus::Uncollectible => Ok(()),
        InvoiceStatus::Draft | InvoiceStatus::Void => {
            Err(CreditError::InvoiceNotCreditable { invoice: invoice.to_owned(), status })
        }
    }
}

/// Reserves `request` on an invoice with `room`: checks the total and computes the split.
pub fn reserve(request: &CreditRequest, room: &InvoiceRoom) -> Result<Split, CreditError> {
    let would_be = room.credited.checked_add(request.amount)?;
    if would_be > room.total {
        return Err(CreditError::ExceedsInvoice {
            amount: request.amount.get(),
            credited: room.credited.get(),
            would_be: would_be.get(),
            total: room.total.get(),
        });
    }
    let pre_payment = request.amount.min(room.pre_payment_room()?);
    let post_payment = request.amount.checked_sub(pre_payment)?;
    let parts = request.post_payment_parts()?;
    if post_payment != parts {
        return Err(CreditError::AmountsMismatch {
            amount: request.amount.get(),
            pre_payment: pre_payment.get(),
            post_payment: post_payment.get(),
            parts: parts.get(),
        });
    }
    Ok(Split { pre_payment, post_payment })
}

/// The invoice's `pre_payment_credit_notes_amount` and `post_payment_credit_notes_amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreditNoteTotals {
    pub pre_payment: Amount,
    pub post_payment: Amount,
}

impl CreditNoteTotals {
    /// The totals once `split` is applied.
    pub fn with_applied(self, split: Split) -> Result<Self, CreditError> {
        Ok(CreditNoteTotals {
            pre_payment: self.pre_payment.checked_add(split.pre_payment)?,
            post_payment: self.post_payment.checked_add(split.post_payment)?,
        })
    }

    /// The totals once `split`, applied earlier, is reversed. Refused when the totals do not hold
    /// it (only a damaged row can cause that).
    pub fn with_reversed(self, split: Split) -> Result<Self, CreditError> {
        let inconsistent = || CreditError::TotalsInconsistent {
            pre_payment: self.pre_payment.get(),
            post_payment: self.post_payment.get(),
        };
        let pre_payment = self.pre_payment.checked_sub(split.pre_payment)?;
        let post_payment = self.post_payment.checked_sub(split.post_payment)?;
        if pre_payment.is_negative() || post_payment.is_negative() {
            return Err(inconsistent());
        }
        Ok(CreditNoteTotals { pre_payment, post_payment })
    }
}

/// What a step does to a credit: change it, or nothing (a repeat of a step that already ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Change,
    Repeat,
}

/// ApplyInvoiceCredit on a credit in `status`. An applied credit stays applied until reversed, so a
/// repeat finds it applied or reversed.
pub fn apply_step(status: CreditStatus) -> Result<Step, CreditError> {
    match status {
        CreditStatus::Reserved => Ok(Step::Change),
        CreditStatus::Applied | CreditStatus::Reversed => Ok(Step::Repeat),
        CreditStatus::Released => Err(CreditError::Released),
    }
}

/// ReleaseInvoiceCredit on a credit in `status`.
pub fn release_step(status: CreditStatus) -> Result<Step, CreditError> {
    match status {
        CreditStatus::Reserved => Ok(Step::Change),
        CreditStatus::Released => Ok(Step::Repeat),
        CreditStatus::Applied | CreditStatus::Reversed => Err(CreditError::NotReleasable { status }),
    }
}

/// ReverseInvoiceCredit by void saga `saga` on a credit in `status`, reversed earlier by
/// `reversed_by` (if it was).
pub fn reverse_step(
    status: CreditStatus,
    reversed_by: Option<&str>,
    saga: &str,
) -> Result<Step, CreditError> {
    match status {
        CreditStatus::Applied => Ok(Step::Change),
        CreditStatus::Reversed if reversed_by == Some(saga) => Ok(Step::Repeat),
        CreditStatus::Reversed => {
            Err(CreditError::ReversedByOther { saga: reversed_by.unwrap_or_default().to_owned() })
        }
        CreditStatus::Reserved | CreditStatus::Released => Err(CreditError::NotApplied { status }),
    }
}

/// Checks that a customer balance of `balance` (negative is a credit) still holds `take_back`, the
/// credit a reversal takes back: it must stay a credit or reach zero, never become owed because of it.
pub fn check_balance_holds(balance: Amount, take_back: Amount) -> Result<(), CreditError> {
    if take_back.is_positive() && balance > take_back.checked_neg()? {
        return Err(CreditError::BalanceInsufficient { balance: balance.get(), needed: take_back.get() });
    }
    Ok(())
}

/// The index of a new credit note of an invoice whose credits that are not released have indices up
/// to `highest` (0 when it has none). One more than the highest rather than one more than their
/// count: when an earlier credit is released while a later one lives on, a count would hand the later
/// one's index out again.
pub fn next_index(highest: i64) -> Result<i32, CreditError> {
    highest
        .checked_add(1)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or(CreditError::Overflow(AmountError::Overflow))
}

#[cfg(test)]
mod tests;
