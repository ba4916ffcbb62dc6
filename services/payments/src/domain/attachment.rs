//! Which invoice a payment is attached to, and whether it may be. A payment (intent or record)
//! counts toward at most one invoice at a time, whole. The attach saga reserves the payment here
//! before any invoice counts it, and detach releases it only after the invoice stopped counting it,
//! so every intermediate state errs on the safe side. Pure: the store enforces "one active
//! attachment per payment" with a unique index; this module decides what a reservation requires.

use settle_money::{Amount, Currency};

/// The kind of payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentKind {
    PaymentIntent,
    PaymentRecord,
}

impl PaymentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentKind::PaymentIntent => "payment_intent",
            PaymentKind::PaymentRecord => "payment_record",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "payment_intent" => Some(PaymentKind::PaymentIntent),
            "payment_record" => Some(PaymentKind::PaymentRecord),
            _ => None,
        }
    }
}

/// A payment's own state as an invoice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Not final yet: an invoice payment for it stays `open`.
    Pending,
    /// Paid: the invoice counts it.
    Succeeded,
    /// The latest attempt failed.
    Failed,
    /// Canceled for good.
    Canceled,
}

impl PaymentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentOutcome::Pending => "pending",
            PaymentOutcome::Succeeded => "succeeded",
            PaymentOutcome::Failed => "failed",
            PaymentOutcome::Canceled => "canceled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(PaymentOutcome::Pending),
            "succeeded" => Some(PaymentOutcome::Succeeded),
            "failed" => Some(PaymentOutcome::Failed),
            "canceled" => Some(PaymentOutcome::Canceled),
            _ => None,
        }
    }

    /// Whether a payment in this state may be attached (it still can, or already did, pay).
    pub fn can_count(self) -> bool {
        matches!(self, PaymentOutcome::Pending | PaymentOutcome::Succeeded)
    }
}

/// What an invoice needs to know about a payment, read from the payment under its row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSnapshot {
    pub kind: PaymentKind,
    pub customer: Option<String>,
    pub currency: Currency,
    /// What it contributes: the amount received (guaranteed) once it succeeded, else the amount
    /// it is for.
    pub amount: Amount,
    pub outcome: PaymentOutcome,
}

/// Where an attachment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentStatus {
    Reserved,
    Confirmed,
    Released,
}

impl AttachmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentStatus::Reserved => "reserved",
            AttachmentStatus::Confirmed => "confirmed",
            AttachmentStatus::Released => "released",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "reserved" => Some(AttachmentStatus::Reserved),
            "confirmed" => Some(AttachmentStatus::Confirmed),
            "released" => Some(AttachmentStatus::Released),
            _ => None,
        }
    }
}

/// Why a reservation or transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error("The payment belongs to {actual}, not to the invoice's customer {expected}.")]
    CustomerMismatch { expected: String, actual: String },
    #[error(
        "The payment has no customer; only a payment of the invoice's customer {expected} can be attached."
    )]
    NoCustomer { expected: String },
    #[error("The payment is in {actual}, the invoice in {expected}.")]
    CurrencyMismatch { expected: Currency, actual: Currency },
    #[error("The payment is {} and cannot pay an invoice.", .outcome.as_str())]
    CannotCount { outcome: PaymentOutcome },
    #[error("The payment is already attached to invoice {invoice}.")]
    AlreadyAttached { invoice: String },
    #[error("The attachment of saga {saga_id} was released and cannot be confirmed.")]
    Released { saga_id: String },
}

/// Checks that `payment` may be reserved for an invoice of `customer` in `currency`.
pub fn check_reservation(
    payment: &PaymentSnapshot,
    customer: &str,
    currency: Currency,
) -> Result<(), AttachmentError> {
    match payment.customer.as_deref() {
        None => {
            return Err(AttachmentError::NoCustomer { expected: customer.to_owned() });
        }
        Some(actual) if actual != customer => {
            return Err(AttachmentError::CustomerMismatch {
                expected: customer.to_owned(),
                actual: actual.to_owned(),
            });
        }
        Some(_) => {}
    }
    if payment.currency != currency {
        return Err(AttachmentError::CurrencyMismatch { expected: currency, actual: payment.currency });
    }
    if !payment.outcome.can_count() {
        return Err(AttachmentError::CannotCount { outcome: payment.outcome });
    }
    Ok(())
}

/// The status after a confirm: reserved → confirmed; confirmed stays; released is refused.
pub fn confirm(status: AttachmentStatus, saga_id: &str) -> Result<AttachmentStatus, AttachmentError> {
    match status {
        AttachmentStatus::Reserved | AttachmentStatus::Confirmed => Ok(AttachmentStatus::Confirmed),
        AttachmentStatus::Released => Err(AttachmentError::Released { saga_id: saga_id.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(outcome: PaymentOutcome) -> PaymentSnapshot {
        PaymentSnapshot {
            kind: PaymentKind::PaymentIntent,
            customer: Some("cus_a".into()),
            currency: Currency::parse("usd").unwrap(),
            amount: Amount::new(1_000),
            outcome,
        }
    }

    #[test]
    fn reservation_requires_same_customer_currency_and_a_payment_that_can_count() {
        let usd = Currency::parse("usd").unwrap();
        assert!(check_reservation(&snapshot(PaymentOutcome::Pending), "cus_a", usd).is_ok());
        assert!(check_reservation(&snapshot(PaymentOutcome::Succeeded), "cus_a", usd).is_ok());
        assert!(matches!(
            check_reservation(&snapshot(PaymentOutcome::Pending), "cus_b", usd),
            Err(AttachmentError::CustomerMismatch { .. })
        ));
        assert!(matches!(
            check_reservation(&snapshot(PaymentOutcome::Pending), "cus_a", Currency::parse("eur").unwrap()),
            Err(AttachmentError::CurrencyMismatch { .. })
        ));
        for outcome in [PaymentOutcome::Failed, PaymentOutcome::Canceled] {
            assert_eq!(
                check_reservation(&snapshot(outcome), "cus_a", usd),
                Err(AttachmentError::CannotCount { outcome })
            );
        }
        let mut anonymous = snapshot(PaymentOutcome::Pending);
        anonymous.customer = None;
        assert!(matches!(
            check_reservation(&anonymous, "cus_a", usd),
            Err(AttachmentError::NoCustomer { .. })
        ));
    }

    #[test]
    fn confirm_is_idempotent_and_refused_after_release() {
        assert_eq!(confirm(AttachmentStatus::Reserved, "s"), Ok(AttachmentStatus::Confirmed));
        assert_eq!(confirm(AttachmentStatus::Confirmed, "s"), Ok(AttachmentStatus::Confirmed));
        assert!(confirm(AttachmentStatus::Released, "s").is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in [AttachmentStatus::Reserved, AttachmentStatus::Confirmed, AttachmentStatus::Released] {
            assert_eq!(AttachmentStatus::parse(s.as_str()), Some(s));
        }
        for o in [
            PaymentOutcome::Pending,
            PaymentOutcome::Succeeded,
            PaymentOutcome::Failed,
            PaymentOutcome::Canceled,
        ] {
            assert_eq!(PaymentOutcome::parse(o.as_str()), Some(o));
        }
        for k in [PaymentKind::PaymentIntent, PaymentKind::PaymentRecord] {
            assert_eq!(PaymentKind::parse(k.as_str()), Some(k));
        }
    }
}
