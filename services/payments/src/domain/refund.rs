//! Refunds of payment intents (Stripe's Refunds API): which payment a request names, whether it may
//! be refunded and for how much. Pure: no I/O, no protobuf; the amount already refunded and the
//! refund's id come in as arguments.
//!
//! ```text
//! succeeded intent, amount_received R, already refunded F (0 ≤ F ≤ R)
//!   refund(a)    1 ≤ a ≤ R − F  ──▶ refund of a (succeeded at once), F := F + a
//!   refund()                     ──▶ refund of R − F
//!   F = R                        ──▶ charge_already_refunded
//! any other status               ──▶ charge_not_refundable
//! ```

use std::fmt;

use settle_money::{Amount, Currency};

use super::payment_intent::{PaymentIntent, Status};

/// Why a refund was made. Callers may give only the first three; Stripe sets the last itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundReason {
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
    ExpiredUncapturedCharge,
}

impl RefundReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::Duplicate => "duplicate",
            RefundReason::Fraudulent => "fraudulent",
            RefundReason::RequestedByCustomer => "requested_by_customer",
            RefundReason::ExpiredUncapturedCharge => "expired_uncaptured_charge",
        }
    }

    /// Whether `POST /v1/refunds` accepts this reason.
    pub fn is_requestable(self) -> bool {
        !matches!(self, RefundReason::ExpiredUncapturedCharge)
    }
}

/// Stripe's documented refund statuses. settle's test payment methods refund at once, so refunds
/// are created `succeeded`; the others exist to read Stripe-shaped documents faithfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    Pending,
    RequiresAction,
    Succeeded,
    Failed,
    Canceled,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::RequiresAction => "requires_action",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
            RefundStatus::Canceled => "canceled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(RefundStatus::Pending),
            "requires_action" => Some(RefundStatus::RequiresAction),
            "succeeded" => Some(RefundStatus::Succeeded),
            "failed" => Some(RefundStatus::Failed),
            "canceled" => Some(RefundStatus::Canceled),
            _ => None,
        }
    }
}

/// Why a refund was refused. Nothing changed when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    #[error("One of the following params should be provided for this request: payment_intent or charge.")]
    MissingTarget,
    #[error("No such charge: '{0}'")]
    UnknownCharge(String),
    #[error("The charge {charge} is not the charge of PaymentIntent {payment_intent} (its latest_charge is {latest}).", latest = .latest.as_deref().unwrap_or("null"))]
    ChargeMismatch { charge: String, payment_intent: String, latest: Option<String> },
    #[error("This PaymentIntent ({payment_intent}) does not have a successful charge to refund: its status is {}.", .status.as_str())]
    NotRefundable { payment_intent: String, status: Status },
    #[error("Charge {charge} has already been refunded.")]
    AlreadyRefunded { charge: String },
    #[error("This value must be greater than or equal to 1.")]
    AmountNotPositive,
    #[error("Refund amount ({}) is greater than unrefunded amount on charge ({}).", Major(*.requested, *.currency), Major(*.remaining, *.currency))]
    AmountTooLarge { requested: i64, remaining: i64, currency: Currency },
    #[error("Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer.")]
    ReasonNotRequestable,
    #[error("The currency ({requested}) must be the currency of the payment being refunded ({expected}).")]
    CurrencyMismatch { requested: Currency, expected: Currency },
}

/// Which payment a create request names: `payment_intent`, `charge` (the intent's
/// `latest_charge`), or both naming the same payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundTarget {
    PaymentIntent(String),
    Charge(String),
    Both { payment_intent: String, charge: String },
}

impl RefundTarget {
    /// At least one of the two is needed; `""` counts as absent.
    pub fn parse(payment_intent: Option<&str>, charge: Option<&str>) -> Result<RefundTarget, RefundError> {
        let non_empty = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_owned);
        match (non_empty(payment_intent), non_empty(charge)) {
            (Some(payment_intent), Some(charge)) => Ok(RefundTarget::Both { payment_intent, charge }),
            (Some(id), None) => Ok(RefundTarget::PaymentIntent(id)),
            (None, Some(charge)) => Ok(RefundTarget::Charge(charge)),
            (None, None) => Err(RefundError::MissingTarget),
        }
    }

    /// The charge the request names, if it names one.
    pub fn charge(&self) -> Option<&str> {
        match self {
            RefundTarget::PaymentIntent(_) => None,
            RefundTarget::Charge(charge) | RefundTarget::Both { charge, .. } => Some(charge),
        }
    }

    /// The payment intent the request names directly, if it names one.
    pub fn payment_intent(&self) -> Option<&str> {
        match self {
            RefundTarget::Charge(_) => None,
            RefundTarget::PaymentIntent(id) | RefundTarget::Both { payment_intent: id, .. } => Some(id),
        }
    }
}

/// A create request's money parameters, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub target: RefundTarget,
    /// Default: all that is left to refund.
    pub amount: Option<i64>,
    pub reason: Option<RefundReason>,
    /// Must equal the intent's currency when given.
    pub currency: Option<Currency>,
}

impl RefundRequest {
    /// Checks what can be checked without the payment: a positive amount, a reason callers may
    /// give.
    pub fn new(
        target: RefundTarget,
        amount: Option<i64>,
        reason: Option<RefundReason>,
        currency: Option<Currency>,
    ) -> Result<RefundRequest, RefundError> {
        if amount.is_some_and(|a| a < 1) {
            return Err(RefundError::AmountNotPositive);
        }
        if reason.is_some_and(|r| !r.is_requestable()) {
            return Err(RefundError::ReasonNotRequestable);
        }
        Ok(RefundRequest { target, amount, reason, currency })
    }
}

/// A refund as created: its money and what it refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub payment_intent: String,
    pub charge: Option<String>,
    pub amount: Amount,
    pub currency: Currency,
    pub reason: Option<RefundReason>,
    pub status: RefundStatus,
}

/// What is left to refund of `intent` when `refunded` was already refunded.
pub fn refundable(intent: &PaymentIntent, refunded: Amount) -> Amount {
    intent.amount_received.checked_sub(refunded).map_or(Amount::ZERO, Amount::clamp_non_negative)
}

/// Refunds `intent`, of which `refunded` was already refunded. Returns the refund and the intent's
/// new refunded total, which never exceeds `amount_received`.
pub fn create(
    id: String,
    intent: &PaymentIntent,
    refunded: Amount,
    request: &RefundRequest,
) -> Result<(Refund, Amount), RefundError> {
    if let Some(charge) = request.target.charge()
        && intent.latest_charge.as_deref() != Some(charge)
    {
        return Err(RefundError::ChargeMismatch {
            charge: charge.to_owned(),
            payment_intent: intent.id.clone(),
            latest: intent.latest_charge.clone(),
        });
    }
    if intent.status != Status::Succeeded {
        return Err(RefundError::NotRefundable { payment_intent: intent.id.clone(), status: intent.status });
    }
    if let Some(requested) = request.currency
        && requested != intent.currency
    {
        return Err(RefundError::CurrencyMismatch { requested, expected: intent.currency });
    }
    let remaining = refundable(intent, refunded);
    if remaining.is_zero() {
        return Err(RefundError::AlreadyRefunded {
            charge: intent.latest_charge.clone().unwrap_or_else(|| intent.id.clone()),
        });
    }
    let amount = match request.amount {
        None => remaining,
        Some(requested) if requested < 1 => return Err(RefundError::AmountNotPositive),
        Some(requested) if requested > remaining.get() => {
            return Err(RefundError::AmountTooLarge {
                requested,
                remaining: remaining.get(),
                currency: intent.currency,
            });
        }
        Some(requested) => Amount::new(requested),
    };
    // Cannot overflow: amount ≤ remaining = received − refunded.
    let total = refunded.checked_add(amount).map_err(|_| RefundError::AmountTooLarge {
        requested: amount.get(),
        remaining: remaining.get(),
        currency: intent.currency,
    })?;
    Ok((
        Refund {
            id,
            payment_intent: intent.id.clone(),
            charge: intent.latest_charge.clone(),
            amount,
            currency: intent.currency,
            reason: request.reason,
            status: RefundStatus::Succeeded,
        },
        total,
    ))
}

/// An amount in major units for messages: `3.00 USD`.
struct Major(i64, Currency);

impl fmt::Display for Major {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Major(minor, currency) = *self;
        let code = currency.as_str().to_ascii_uppercase();
        let exponent = u32::from(currency.exponent());
        if exponent == 0 {
            return write!(f, "{minor} {code}");
        }
        let scale = 10_u64.pow(exponent);
        let sign = if minor < 0 { "-" } else { "" };
        let (whole, fraction) = (minor.unsigned_abs() / scale, minor.unsigned_abs() % scale);
        write!(f, "{sign}{whole}.{fraction:0width$} {code}", width = exponent as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::payment_intent::{CaptureMethod, NewIntent};
    use crate::domain::payment_method::MethodType;
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("usd").unwrap()
    }

    fn intent(payment_method: &str, amount: i64) -> PaymentIntent {
        let (mut intent, _) = PaymentIntent::create(
            "pi_1".into(),
            NewIntent {
                amount,
                currency: usd(),
                capture_method: CaptureMethod::Automatic,
                customer: Some("cus_1".into()),
                payment_method: Some(payment_method.into()),
                payment_method_types: vec![MethodType::Card, MethodType::UsBankAccount],
            },
        )
        .unwrap();
        intent.confirm(None, "ch_1".into()).unwrap();
        intent
    }

    fn paid(amount: i64) -> PaymentIntent {
        intent("pm_card_visa", amount)
    }

    fn request(amount: Option<i64>) -> RefundRequest {
        RefundRequest::new(RefundTarget::PaymentIntent("pi_1".into()), amount, None, None).unwrap()
    }

    #[test]
    fn the_default_amount_is_what_is_left() {
        let intent = paid(10_000);
        let (refund, total) = create("re_1".into(), &intent, Amount::new(2_500), &request(None)).unwrap();
        assert_eq!(refund.amount, Amount::new(7_500));
        assert_eq!(total, Amount::new(10_000));
        assert_eq!(refund.status, RefundStatus::Succeeded);
        assert_eq!(refund.charge.as_deref(), Some("ch_1"));
        assert_eq!(refund.currency, usd());
    }

    #[test]
    fn partial_refunds_add_up_to_the_received_amount() {
        let intent = paid(1_000);
        let (_, total) = create("re_1".into(), &intent, Amount::ZERO, &request(Some(400))).unwrap();
        let (_, total) = create("re_2".into(), &intent, total, &request(Some(600))).unwrap();
        assert_eq!(total, Amount::new(1_000));
        assert_eq!(
            create("re_3".into(), &intent, total, &request(Some(1))),
            Err(RefundError::AlreadyRefunded { charge: "ch_1".into() })
        );
    }

    #[test]
    fn more_than_is_left_is_amount_too_large() {
        let intent = paid(1_000);
        let error = create("re_1".into(), &intent, Amount::new(900), &request(Some(101))).unwrap_err();
        assert_eq!(error, RefundError::AmountTooLarge { requested: 101, remaining: 100, currency: usd() });
        assert_eq!(
            error.to_string(),
            "Refund amount (1.01 USD) is greater than unrefunded amount on charge (1.00 USD)."
        );
    }

    #[test]
    fn only_succeeded_intents_are_refundable() {
        let processing = intent("pm_us_bank_account", 1_000);
        assert!(matches!(
            create("re_1".into(), &processing, Amount::ZERO, &request(None)),
            Err(RefundError::NotRefundable { status: Status::Processing, .. })
        ));
        let declined = intent("pm_card_chargeDeclined", 1_000);
        let error = create("re_1".into(), &declined, Amount::ZERO, &request(None)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "This PaymentIntent (pi_1) does not have a successful charge to refund: its status is requires_payment_method."
        );
    }

    #[test]
    fn amounts_and_reasons_are_checked_before_the_payment_is_read() {
        let target = || RefundTarget::PaymentIntent("pi_1".into());
        for bad in [0, -1, i64::MIN] {
            assert_eq!(
                RefundRequest::new(target(), Some(bad), None, None),
                Err(RefundError::AmountNotPositive)
            );
        }
        assert_eq!(
            RefundRequest::new(target(), None, Some(RefundReason::ExpiredUncapturedCharge), None),
            Err(RefundError::ReasonNotRequestable)
        );
        for reason in [RefundReason::Duplicate, RefundReason::Fraudulent, RefundReason::RequestedByCustomer] {
            assert!(RefundRequest::new(target(), None, Some(reason), None).is_ok());
        }
    }

    #[test]
    fn payment_intent_or_charge_is_needed_and_they_must_agree() {
        assert_eq!(RefundTarget::parse(None, Some("")), Err(RefundError::MissingTarget));
        assert_eq!(RefundTarget::parse(Some("pi_1"), None), Ok(RefundTarget::PaymentIntent("pi_1".into())));
        let intent = paid(1_000);
        let by_charge =
            RefundRequest::new(RefundTarget::parse(None, Some("ch_1")).unwrap(), None, None, None).unwrap();
        assert!(create("re_1".into(), &intent, Amount::ZERO, &by_charge).is_ok());
        let other = RefundRequest::new(
            RefundTarget::parse(Some("pi_1"), Some("ch_other")).unwrap(),
            None,
            None,
            None,
        )
        .unwrap();
        assert!(matches!(
            create("re_1".into(), &intent, Amount::ZERO, &other),
            Err(RefundError::ChargeMismatch { .. })
        ));
    }

    #[test]
    fn a_currency_must_be_the_payments() {
        let intent = paid(1_000);
        let eur = Currency::parse("eur").unwrap();
        let mut req = request(None);
        req.currency = Some(eur);
        assert_eq!(
            create("re_1".into(), &intent, Amount::ZERO, &req),
            Err(RefundError::CurrencyMismatch { requested: eur, expected: usd() })
        );
        req.currency = Some(usd());
        assert!(create("re_1".into(), &intent, Amount::ZERO, &req).is_ok());
    }

    #[test]
    fn status_names_round_trip() {
        for status in [
            RefundStatus::Pending,
            RefundStatus::RequiresAction,
            RefundStatus::Succeeded,
            RefundStatus::Failed,
            RefundStatus::Canceled,
        ] {
            assert_eq!(RefundStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RefundStatus::parse("unknown"), None);
    }

    #[test]
    fn major_units_follow_the_currency_exponent() {
        assert_eq!(Major(5, usd()).to_string(), "0.05 USD");
        assert_eq!(Major(1_234, Currency::parse("jpy").unwrap()).to_string(), "1234 JPY");
    }

    proptest! {
        /// Whatever sequence of refunds callers ask for, the refunded total never exceeds what was
        /// received, a refused refund changes nothing, and an accepted one adds exactly its amount.
        #[test]
        fn refunds_never_exceed_what_was_received(
            received in 50i64..1_000_000,
            requests in proptest::collection::vec(proptest::option::of(-100i64..400_000), 0..30),
        ) {
            let intent = paid(received);
            let mut refunded = Amount::ZERO;
            let mut sum = 0i64;
            for (i, amount) in requests.into_iter().enumerate() {
                let result = RefundRequest::new(RefundTarget::PaymentIntent("pi_1".into()), amount, None, None)
                    .and_then(|req| create(format!("re_{i}"), &intent, refunded, &req));
                match result {
                    Ok((refund, total)) => {
                        prop_assert!(refund.amount.is_positive());
                        prop_assert_eq!(total.get(), refunded.get() + refund.amount.get());
                        if amount.is_none() {
                            prop_assert_eq!(total, intent.amount_received, "a default refund takes all that is left");
                        }
                        sum += refund.amount.get();
                        refunded = total;
                    }
                    Err(RefundError::AlreadyRefunded { .. }) => prop_assert_eq!(refunded, intent.amount_received),
                    Err(RefundError::AmountTooLarge { requested, remaining, .. }) => {
                        prop_assert_eq!(remaining, received - refunded.get());
                        prop_assert!(requested > remaining);
                    }
                    Err(RefundError::AmountNotPositive) => prop_assert!(amount.is_some_and(|a| a < 1)),
                    Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                }
                prop_assert!(refunded <= intent.amount_received);
                prop_assert_eq!(sum, refunded.get());
            }
        }
    }
}
