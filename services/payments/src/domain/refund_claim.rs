//! Refund claims: which refunds a credit note links, and for how much. A refund (a Refund of a
//! payment intent, or a refund reported on a payment record) may be linked by any number of credit
//! notes, but never for more than it refunded in all. Each credit-notes issue saga claims what its
//! note links, all or nothing, and gives it back when the note is not issued or is voided.
//!
//! ```text
//! refund of A, claimed C (0 ≤ C ≤ A), of a payment attached to invoice I, in currency K
//!   claim(a) for I in K   1 ≤ a ≤ A − C  ──▶ C := C + a
//!   claim()  for I in K   A − C ≥ 1      ──▶ C := A            (the default: all that is unclaimed)
//!   release(a)            a ≤ C          ──▶ C := C − a
//! ```
//!
//! Pure: the store reads each refund under its row lock, and a CHECK on the claimed column backs
//! up these rules.

use settle_money::{Amount, Currency};

use super::refund::RefundStatus;

/// The kind of a claimed refund (Stripe's `credit_note_refund.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundKind {
    /// A Refund object (`re_…`) of a payment intent.
    Refund,
    /// A refund reported on a payment record, named by the record and its refund reference.
    PaymentRecordRefund,
}

impl RefundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundKind::Refund => "refund",
            RefundKind::PaymentRecordRefund => "payment_record_refund",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "refund" => Some(RefundKind::Refund),
            "payment_record_refund" => Some(RefundKind::PaymentRecordRefund),
            _ => None,
        }
    }
}

/// Whether a saga's claims hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsStatus {
    Claimed,
    /// Given back; terminal.
    Released,
}

impl ClaimsStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimsStatus::Claimed => "claimed",
            ClaimsStatus::Released => "released",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "claimed" => Some(ClaimsStatus::Claimed),
            "released" => Some(ClaimsStatus::Released),
            _ => None,
        }
    }
}

/// Why a claim or release was refused. Nothing changed when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("The amount to link must be a positive integer (in minor units).")]
    AmountNotPositive,
    #[error("Payment {payment} is not attached to invoice {invoice}.")]
    NotAttached { payment: String, invoice: String },
    /// `subject` names the refund or payment: `Refund re_…`, `Payment pi_…`.
    #[error("{subject} is in {actual}, the invoice in {expected}.")]
    CurrencyMismatch { subject: String, expected: Currency, actual: Currency },
    #[error("Refund {refund} is {} and refunded nothing that can be linked.", .status.as_str())]
    NotSucceeded { refund: String, status: RefundStatus },
    #[error("Refund {refund} is already linked to credit notes for all it refunded ({amount}).")]
    FullyClaimed { refund: String, amount: i64 },
    #[error(
        "Refund {refund} has {unclaimed} (of {amount}) left to link to a credit note; {requested} was requested."
    )]
    ExceedsUnclaimed { refund: String, requested: i64, unclaimed: i64, amount: i64 },
    #[error("Refund {refund} has {claimed} linked, so {requested} cannot be given back.")]
    OverRelease { refund: String, requested: i64, claimed: i64 },
}

/// The amount a claim asks for, checked before anything is read: positive when given; `None`
/// means all that is unclaimed.
pub fn requested_amount(value: Option<i64>) -> Result<Option<Amount>, ClaimError> {
    match value {
        None => Ok(None),
        Some(v) => Amount::positive(v).map(Some).map_err(|_| ClaimError::AmountNotPositive),
    }
}

/// The credit note's side of a claim: the invoice it credits and that invoice's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimScope<'a> {
    pub invoice: &'a str,
    pub currency: Currency,
}

impl ClaimScope<'_> {
    /// Checks that `payment`, attached (confirmed) to `attached_to`, pays this invoice.
    pub fn check_attached(&self, payment: &str, attached_to: Option<&str>) -> Result<(), ClaimError> {
        if attached_to == Some(self.invoice) {
            Ok(())
        } else {
            Err(ClaimError::NotAttached { payment: payment.to_owned(), invoice: self.invoice.to_owned() })
        }
    }

    /// Checks that a new refund of `payment` (in `currency`, attached to `attached_to`) may be
    /// linked to this invoice's credit note. What it may refund is the refund rules' business.
    pub fn check_new_refund(
        &self,
        payment: &str,
        attached_to: Option<&str>,
        currency: Currency,
    ) -> Result<(), ClaimError> {
        self.check_attached(payment, attached_to)?;
        if currency != self.currency {
            return Err(ClaimError::CurrencyMismatch {
                subject: format!("Payment {payment}"),
                expected: self.currency,
                actual: currency,
            });
        }
        Ok(())
    }
}

/// One refund as the claim rules see it, read under its row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimableRefund {
    /// How messages name it: `re_…`, or `pr_… refund group …`.
    pub name: String,
    /// The refunded payment (`pi_…` or `pr_…`).
    pub payment: String,
    /// The invoice the payment is attached (confirmed) to, if any.
    pub attached_to: Option<String>,
    pub currency: Currency,
    /// A reported payment-record refund is always `succeeded`: it was reported as refunded.
    pub status: RefundStatus,
    /// What it refunded.
    pub amount: Amount,
    /// What credit notes link of it now; always within `0..=amount`.
    pub amount_claimed: Amount,
}

impl ClaimableRefund {
    /// What may still be linked.
    pub fn unclaimed(&self) -> Amount {
        self.amount.checked_sub(self.amount_claimed).map_or(Amount::ZERO, Amount::clamp_non_negative)
    }

    /// Links `requested` (default: all that is unclaimed) to a credit note of `scope`. Returns the
    /// amount claimed; on a refusal nothing changes.
    pub fn claim(&mut self, scope: &ClaimScope<'_>, requested: Option<Amount>) -> Result<Amount, ClaimError> {
        scope.check_attached(&self.payment, self.attached_to.as_deref())?;
        if self.currency != scope.currency {
            return Err(ClaimError::CurrencyMismatch {
                subject: format!("Refund {}", self.name),
                expected: scope.currency,
                actual: self.currency,
            });
        }
        if self.status != RefundStatus::Succeeded {
            return Err(ClaimError::NotSucceeded { refund: self.name.clone(), status: self.status });
        }
        let unclaimed = self.unclaimed();
        let amount = match requested {
            Some(amount) if !amount.is_positive() => return Err(ClaimError::AmountNotPositive),
            Some(amount) if amount > unclaimed => {
                return Err(ClaimError::ExceedsUnclaimed {
                    refund: self.name.clone(),
                    requested: amount.get(),
                    unclaimed: unclaimed.get(),
                    amount: self.amount.get(),
                });
            }
            Some(amount) => amount,
            None if unclaimed.is_zero() => {
                return Err(ClaimError::FullyClaimed {
                    refund: self.name.clone(),
                    amount: self.amount.get(),
                });
            }
            None => unclaimed,
        };
        // Cannot overflow: amount ≤ unclaimed = amount − claimed.
        self.amount_claimed =
            self.amount_claimed.checked_add(amount).map_err(|_| ClaimError::ExceedsUnclaimed {
                refund: self.name.clone(),
                requested: amount.get(),
                unclaimed: unclaimed.get(),
                amount: self.amount.get(),
            })?;
        Ok(amount)
    }

    /// Gives back `amount` of an earlier claim. Refused (changing nothing) when more is given back
    /// than is claimed, which only a damaged row can cause.
    pub fn release(&mut self, amount: Amount) -> Result<(), ClaimError> {
        let over = || ClaimError::OverRelease {
            refund: self.name.clone(),
            requested: amount.get(),
            claimed: self.amount_claimed.get(),
        };
        if amount.is_negative() || amount > self.amount_claimed {
            return Err(over());
        }
        self.amount_claimed = self.amount_claimed.checked_sub(amount).map_err(|_| over())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
