//! The PaymentIntent state machine (Stripe's): what each action may do from each status, and the
//! amounts it leaves behind. Pure: no I/O, no protobuf; ids and clocks come in as arguments.
//!
//! ```text
//! requires_payment_method ──(payment method set)──▶ requires_confirmation ──confirm──▶
//!     card succeeds        ──▶ succeeded            (capture_method automatic[_async])
//!                          ──▶ requires_capture ──capture──▶ succeeded   (capture_method manual)
//!     card declined        ──▶ requires_payment_method + last_payment_error
//!     us_bank_account      ──▶ processing ──settled──▶ succeeded | requires_payment_method
//! any status but succeeded/canceled ──cancel──▶ canceled
//! ```

use settle_money::{Amount, Currency};

use super::attachment::PaymentOutcome;
use super::payment_method::{AttemptOutcome, MethodType, TestPaymentMethod};

/// Stripe's largest amount for a payment: eight digits.
pub const MAX_AMOUNT: i64 = 99_999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::RequiresPaymentMethod => "requires_payment_method",
            Status::RequiresConfirmation => "requires_confirmation",
            Status::RequiresAction => "requires_action",
            Status::Processing => "processing",
            Status::RequiresCapture => "requires_capture",
            Status::Canceled => "canceled",
            Status::Succeeded => "succeeded",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        [
            Status::RequiresPaymentMethod,
            Status::RequiresConfirmation,
            Status::RequiresAction,
            Status::Processing,
            Status::RequiresCapture,
            Status::Canceled,
            Status::Succeeded,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    /// Statuses in which the amount, currency, customer and payment method may still change.
    fn is_before_confirmation(self) -> bool {
        matches!(self, Status::RequiresPaymentMethod | Status::RequiresConfirmation | Status::RequiresAction)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMethod {
    Automatic,
    AutomaticAsync,
    Manual,
}

impl CaptureMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::AutomaticAsync => "automatic_async",
            CaptureMethod::Manual => "manual",
        }
    }

    pub fn parse(value: &str) -> Option<CaptureMethod> {
        match value {
            "automatic" => Some(CaptureMethod::Automatic),
            "automatic_async" => Some(CaptureMethod::AutomaticAsync),
            "manual" => Some(CaptureMethod::Manual),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancellationReason {
    Abandoned,
    Automatic,
    Duplicate,
    Expired,
    FailedInvoice,
    Fraudulent,
    RequestedByCustomer,
    VoidInvoice,
}

impl CancellationReason {
    /// Whether a caller may give this reason (the others are set by the platform).
    pub fn is_requestable(self) -> bool {
        matches!(
            self,
            CancellationReason::Abandoned
                | CancellationReason::Duplicate
                | CancellationReason::Fraudulent
                | CancellationReason::RequestedByCustomer
        )
    }
}

/// Stripe's `last_payment_error` of a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentError {
    pub code: String,
    pub decline_code: Option<String>,
    pub message: String,
    pub payment_method: Option<String>,
    pub payment_method_type: Option<String>,
}

/// What happened, as Stripe's event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentEvent {
    Created,
    Processing,
    AmountCapturableUpdated,
    Succeeded,
    PaymentFailed,
    Canceled,
}

impl IntentEvent {
    pub fn event_type(self) -> &'static str {
        match self {
            IntentEvent::Created => "payment_intent.created",
            IntentEvent::Processing => "payment_intent.processing",
            IntentEvent::AmountCapturableUpdated => "payment_intent.amount_capturable_updated",
            IntentEvent::Succeeded => "payment_intent.succeeded",
            IntentEvent::PaymentFailed => "payment_intent.payment_failed",
            IntentEvent::Canceled => "payment_intent.canceled",
        }
    }
}

/// Why an action was refused. Nothing changed when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("This value must be greater than or equal to 1.")]
    AmountNotPositive,
    #[error("Amount must be at least {minimum} {currency} minor units.")]
    AmountTooSmall { minimum: i64, currency: Currency },
    #[error("Amount must be no more than {MAX_AMOUNT} minor units.")]
    AmountTooLarge,
    #[error("No such PaymentMethod: '{0}'")]
    UnknownPaymentMethod(String),
    #[error("The PaymentMethod's type ({method_type}) is not in payment_method_types.")]
    PaymentMethodTypeNotAllowed { method_type: &'static str },
    #[error("You cannot confirm this PaymentIntent because it's missing a payment method.")]
    MissingPaymentMethod,
    #[error("The us_bank_account payment method does not support capture_method=manual.")]
    ManualCaptureUnsupported,
    #[error("You cannot {action} this PaymentIntent because it has a status of {}.", .status.as_str())]
    UnexpectedState { action: &'static str, status: Status },
    #[error("The amount to capture must be greater than or equal to 1.")]
    CaptureNotPositive,
    #[error("The amount to capture ({requested}) exceeds the amount capturable ({capturable}).")]
    CaptureTooLarge { requested: i64, capturable: i64 },
    #[error(
        "The cancellation reason must be one of abandoned, duplicate, fraudulent, requested_by_customer."
    )]
    CancellationReasonNotRequestable,
}

/// A new intent's parameters, already parsed.
#[derive(Debug, Clone)]
pub struct NewIntent {
    pub amount: i64,
    pub currency: Currency,
    pub capture_method: CaptureMethod,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    pub payment_method_types: Vec<MethodType>,
}

/// A PaymentIntent's money and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    pub amount: Amount,
    pub currency: Currency,
    pub status: Status,
    pub capture_method: CaptureMethod,
    pub amount_capturable: Amount,
    pub amount_received: Amount,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    pub payment_method_types: Vec<MethodType>,
    pub cancellation_reason: Option<CancellationReason>,
    pub canceled_at: Option<i64>,
    pub last_payment_error: Option<PaymentError>,
    /// The charge of the latest attempt (`ch_…`).
    pub latest_charge: Option<String>,
}

/// Checks an amount against Stripe's limits for `currency`.
pub fn check_amount(amount: i64, currency: Currency) -> Result<Amount, IntentError> {
    if amount < 1 {
        return Err(IntentError::AmountNotPositive);
    }
    if amount < currency.minimum_charge() {
        return Err(IntentError::AmountTooSmall { minimum: currency.minimum_charge(), currency });
    }
    if amount > MAX_AMOUNT {
        return Err(IntentError::AmountTooLarge);
    }
    Ok(Amount::new(amount))
}

impl PaymentIntent {
    /// A new intent: `requires_confirmation` when a payment method is given, else
    /// `requires_payment_method`.
    pub fn create(id: String, new: NewIntent) -> Result<(PaymentIntent, Vec<IntentEvent>), IntentError> {
        let amount = check_amount(new.amount, new.currency)?;
        let mut intent = PaymentIntent {
            id,
            amount,
            currency: new.currency,
            status: Status::RequiresPaymentMethod,
            capture_method: new.capture_method,
            amount_capturable: Amount::ZERO,
            amount_received: Amount::ZERO,
            customer: new.customer,
            payment_method: None,
            payment_method_types: new.payment_method_types,
            cancellation_reason: None,
            canceled_at: None,
            last_payment_error: None,
            latest_charge: None,
        };
        if let Some(method) = new.payment_method {
            intent.set_payment_method(&method)?;
        }
        Ok((intent, vec![IntentEvent::Created]))
    }

    fn require(&self, action: &'static str, allowed: bool) -> Result<(), IntentError> {
        if allowed { Ok(()) } else { Err(IntentError::UnexpectedState { action, status: self.status }) }
    }

    fn lookup_method(&self, id: &str) -> Result<&'static TestPaymentMethod, IntentError> {
        let method =
            TestPaymentMethod::find(id).ok_or_else(|| IntentError::UnknownPaymentMethod(id.to_owned()))?;
        if !self.payment_method_types.contains(&method.method_type) {
            return Err(IntentError::PaymentMethodTypeNotAllowed {
                method_type: method.method_type.as_str(),
            });
        }
        Ok(method)
    }

    /// Sets (or, with `""`, clears) the payment method before confirmation.
    pub fn set_payment_method(&mut self, id: &str) -> Result<(), IntentError> {
        self.require("update the payment method of", self.status.is_before_confirmation())?;
        if id.is_empty() {
            self.payment_method = None;
            self.status = Status::RequiresPaymentMethod;
        } else {
            self.lookup_method(id)?;
            self.payment_method = Some(id.to_owned());
            self.status = Status::RequiresConfirmation;
        }
        Ok(())
    }

    /// Changes the amount before confirmation.
    pub fn set_amount(&mut self, amount: i64) -> Result<(), IntentError> {
        self.require("update the amount of", self.status.is_before_confirmation())?;
        self.amount = check_amount(amount, self.currency)?;
        Ok(())
    }

    /// Changes the currency before confirmation (the amount must suit the new currency).
    pub fn set_currency(&mut self, currency: Currency) -> Result<(), IntentError> {
        self.require("update the currency of", self.status.is_before_confirmation())?;
        check_amount(self.amount.get(), currency)?;
        self.currency = currency;
        Ok(())
    }

    /// Sets or clears the customer before confirmation.
    pub fn set_customer(&mut self, customer: Option<String>) -> Result<(), IntentError> {
        self.require("update the customer of", self.status.is_before_confirmation())?;
        self.customer = customer;
        Ok(())
    }

    /// Changes how the payment will be captured, before confirmation.
    pub fn set_capture_method(&mut self, capture_method: CaptureMethod) -> Result<(), IntentError> {
        self.require("update the capture method of", self.status.is_before_confirmation())?;
        self.capture_method = capture_method;
        Ok(())
    }

    /// Changes which payment-method types may be used, before confirmation.
    pub fn set_payment_method_types(&mut self, types: Vec<MethodType>) -> Result<(), IntentError> {
        self.require("update the payment method types of", self.status.is_before_confirmation())?;
        self.payment_method_types = types;
        if let Some(method) = self.payment_method.clone() {
            self.lookup_method(&method)?;
        }
        Ok(())
    }

    /// Attempts the payment with the current (or given) payment method. `charge_id` names the
    /// attempt's charge. A decline is not an error: the intent returns to `requires_payment_method`
    /// with `last_payment_error`, as Stripe's does.
    pub fn confirm(
        &mut self,
        payment_method: Option<&str>,
        charge_id: String,
    ) -> Result<Vec<IntentEvent>, IntentError> {
        self.require("confirm", self.status.is_before_confirmation())?;
        let method_id = match payment_method {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => self.payment_method.clone().ok_or(IntentError::MissingPaymentMethod)?,
        };
        let method = self.lookup_method(&method_id)?;
        if method.method_type == MethodType::UsBankAccount && self.capture_method == CaptureMethod::Manual {
            return Err(IntentError::ManualCaptureUnsupported);
        }
        self.payment_method = Some(method_id);
        self.latest_charge = Some(charge_id);
        self.last_payment_error = None;
        Ok(match method.outcome {
            AttemptOutcome::Succeeds => self.authorized(),
            AttemptOutcome::Pending => {
                self.status = Status::Processing;
                vec![IntentEvent::Processing]
            }
            AttemptOutcome::Declined { decline_code, message } => self.fail(PaymentError {
                code: "card_declined".to_owned(),
                decline_code: Some(decline_code.to_owned()),
                message: message.to_owned(),
                payment_method: Some(method.id.to_owned()),
                payment_method_type: Some(method.method_type.as_str().to_owned()),
            }),
        })
    }

    /// The funds are secured: captured at once, or held for a manual capture.
    fn authorized(&mut self) -> Vec<IntentEvent> {
        if self.capture_method == CaptureMethod::Manual {
            self.status = Status::RequiresCapture;
            self.amount_capturable = self.amount;
            vec![IntentEvent::AmountCapturableUpdated]
        } else {
            self.status = Status::Succeeded;
            self.amount_received = self.amount;
            vec![IntentEvent::Succeeded]
        }
    }

    fn fail(&mut self, error: PaymentError) -> Vec<IntentEvent> {
        self.status = Status::RequiresPaymentMethod;
        self.payment_method = None;
        self.last_payment_error = Some(error);
        vec![IntentEvent::PaymentFailed]
    }

    /// Ends a `processing` bank debit (the test helper stands in for the bank).
    pub fn settle(&mut self, outcome: Result<(), PaymentError>) -> Result<Vec<IntentEvent>, IntentError> {
        self.require("settle", self.status == Status::Processing)?;
        Ok(match outcome {
            Ok(()) => self.authorized(),
            Err(error) => self.fail(error),
        })
    }

    /// Captures `amount_to_capture` (default: all) of a `requires_capture` intent; the rest is
    /// released.
    pub fn capture(&mut self, amount_to_capture: Option<i64>) -> Result<Vec<IntentEvent>, IntentError> {
        self.require("capture", self.status == Status::RequiresCapture)?;
        let capturable = self.amount_capturable;
        let amount = match amount_to_capture {
            None => capturable,
            Some(requested) if requested < 1 => return Err(IntentError::CaptureNotPositive),
            Some(requested) if requested > capturable.get() => {
                return Err(IntentError::CaptureTooLarge { requested, capturable: capturable.get() });
            }
            Some(requested) => Amount::new(requested),
        };
        self.amount_received = amount;
        self.amount_capturable = Amount::ZERO;
        self.status = Status::Succeeded;
        Ok(vec![IntentEvent::Succeeded])
    }

    /// Cancels the intent; a held authorization is released. Only settle's own services
    /// (`by_platform`) may give the reasons Stripe sets itself (`void_invoice`, `failed_invoice`, …).
    pub fn cancel(
        &mut self,
        reason: Option<CancellationReason>,
        by_platform: bool,
        now: i64,
    ) -> Result<Vec<IntentEvent>, IntentError> {
        self.require("cancel", !matches!(self.status, Status::Succeeded | Status::Canceled))?;
        if !by_platform && reason.is_some_and(|r| !r.is_requestable()) {
            return Err(IntentError::CancellationReasonNotRequestable);
        }
        self.status = Status::Canceled;
        self.amount_capturable = Amount::ZERO;
        self.cancellation_reason = reason;
        self.canceled_at = Some(now);
        Ok(vec![IntentEvent::Canceled])
    }

    /// The intent's state as an invoice sees it: failed means the latest attempt was declined and
    /// nothing has been received.
    pub fn outcome(&self) -> PaymentOutcome {
        match self.status {
            Status::Succeeded => PaymentOutcome::Succeeded,
            Status::Canceled => PaymentOutcome::Canceled,
            Status::RequiresPaymentMethod if self.last_payment_error.is_some() => PaymentOutcome::Failed,
            _ => PaymentOutcome::Pending,
        }
    }

    /// What the intent can contribute to an invoice: what it received once succeeded, else its
    /// amount.
    pub fn contribution(&self) -> Amount {
        if self.status == Status::Succeeded { self.amount_received } else { self.amount }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("usd").unwrap()
    }

    fn new_intent(payment_method: Option<&str>, capture_method: CaptureMethod) -> PaymentIntent {
        PaymentIntent::create(
            "pi_1".into(),
            NewIntent {
                amount: 2_000,
                currency: usd(),
                capture_method,
                customer: Some("cus_1".into()),
                payment_method: payment_method.map(str::to_owned),
                payment_method_types: vec![MethodType::Card, MethodType::UsBankAccount],
            },
        )
        .unwrap()
        .0
    }

    #[test]
    fn create_without_method_requires_one() {
        let intent = new_intent(None, CaptureMethod::Automatic);
        assert_eq!(intent.status, Status::RequiresPaymentMethod);
        let with_method = new_intent(Some("pm_card_visa"), CaptureMethod::Automatic);
        assert_eq!(with_method.status, Status::RequiresConfirmation);
    }

    #[test]
    fn amounts_are_checked_against_stripe_limits() {
        assert_eq!(check_amount(0, usd()), Err(IntentError::AmountNotPositive));
        assert!(matches!(check_amount(49, usd()), Err(IntentError::AmountTooSmall { minimum: 50, .. })));
        assert_eq!(check_amount(100_000_000, usd()), Err(IntentError::AmountTooLarge));
        assert_eq!(check_amount(50, usd()), Ok(Amount::new(50)));
    }

    #[test]
    fn card_confirmation_succeeds_and_receives_the_amount() {
        let mut intent = new_intent(Some("pm_card_visa"), CaptureMethod::Automatic);
        let events = intent.confirm(None, "ch_1".into()).unwrap();
        assert_eq!(events, vec![IntentEvent::Succeeded]);
        assert_eq!(intent.status, Status::Succeeded);
        assert_eq!(intent.amount_received, Amount::new(2_000));
        assert_eq!(intent.latest_charge.as_deref(), Some("ch_1"));
    }

    #[test]
    fn manual_capture_holds_then_captures_part() {
        let mut intent = new_intent(Some("pm_card_visa"), CaptureMethod::Manual);
        assert_eq!(intent.confirm(None, "ch_1".into()).unwrap(), vec![IntentEvent::AmountCapturableUpdated]);
        assert_eq!(intent.amount_capturable, Amount::new(2_000));
        assert!(matches!(intent.capture(Some(2_001)), Err(IntentError::CaptureTooLarge { .. })));
        assert_eq!(intent.capture(Some(1_500)).unwrap(), vec![IntentEvent::Succeeded]);
        assert_eq!(intent.amount_received, Amount::new(1_500));
        assert_eq!(intent.amount_capturable, Amount::ZERO);
    }

    #[test]
    fn a_decline_returns_to_requires_payment_method_with_the_error() {
        let mut intent =
            new_intent(Some("pm_card_chargeDeclinedInsufficientFunds"), CaptureMethod::Automatic);
        assert_eq!(intent.confirm(None, "ch_1".into()).unwrap(), vec![IntentEvent::PaymentFailed]);
        assert_eq!(intent.status, Status::RequiresPaymentMethod);
        assert_eq!(intent.payment_method, None);
        let error = intent.last_payment_error.clone().unwrap();
        assert_eq!(error.code, "card_declined");
        assert_eq!(error.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(
            intent.confirm(Some("pm_card_visa"), "ch_2".into()).unwrap(),
            vec![IntentEvent::Succeeded]
        );
        assert_eq!(intent.last_payment_error, None);
    }

    #[test]
    fn bank_debits_stay_processing_until_settled() {
        let mut intent = new_intent(Some("pm_us_bank_account"), CaptureMethod::Automatic);
        assert_eq!(intent.confirm(None, "ch_1".into()).unwrap(), vec![IntentEvent::Processing]);
        assert_eq!(intent.status, Status::Processing);
        assert!(intent.confirm(None, "ch_2".into()).is_err());
        assert_eq!(intent.settle(Ok(())).unwrap(), vec![IntentEvent::Succeeded]);
        assert_eq!(intent.amount_received, Amount::new(2_000));
        let mut manual = new_intent(Some("pm_us_bank_account"), CaptureMethod::Manual);
        assert_eq!(manual.confirm(None, "ch_3".into()), Err(IntentError::ManualCaptureUnsupported));
        assert_eq!(manual.status, Status::RequiresConfirmation, "a refused confirm changes nothing");
    }

    #[test]
    fn terminal_intents_refuse_changes() {
        let mut intent = new_intent(Some("pm_card_visa"), CaptureMethod::Automatic);
        intent.confirm(None, "ch_1".into()).unwrap();
        assert!(matches!(intent.cancel(None, false, 1), Err(IntentError::UnexpectedState { .. })));
        assert!(intent.set_amount(5_000).is_err());
        let mut canceled = new_intent(None, CaptureMethod::Automatic);
        canceled.cancel(Some(CancellationReason::Duplicate), false, 7).unwrap();
        assert_eq!(canceled.canceled_at, Some(7));
        assert!(canceled.confirm(Some("pm_card_visa"), "ch".into()).is_err());
        assert_eq!(canceled.outcome(), PaymentOutcome::Canceled);
    }

    #[test]
    fn callers_cannot_give_platform_cancellation_reasons() {
        let mut intent = new_intent(None, CaptureMethod::Automatic);
        assert_eq!(
            intent.cancel(Some(CancellationReason::VoidInvoice), false, 1),
            Err(IntentError::CancellationReasonNotRequestable)
        );
        assert_eq!(intent.status, Status::RequiresPaymentMethod);
        intent.cancel(Some(CancellationReason::VoidInvoice), true, 2).unwrap();
        assert_eq!(intent.cancellation_reason, Some(CancellationReason::VoidInvoice));
    }

    #[derive(Debug, Clone)]
    enum Action {
        SetMethod(usize),
        Confirm(Option<usize>),
        Capture(Option<i64>),
        Cancel,
        Settle(bool),
        SetAmount(i64),
    }

    const METHODS: [&str; 5] =
        ["pm_card_visa", "pm_card_chargeDeclined", "pm_us_bank_account", "pm_card_mastercard", "pm_nope"];

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            (0..METHODS.len()).prop_map(Action::SetMethod),
            proptest::option::of(0..METHODS.len()).prop_map(Action::Confirm),
            proptest::option::of(-10i64..5_000).prop_map(Action::Capture),
            Just(Action::Cancel),
            any::<bool>().prop_map(Action::Settle),
            (-10i64..200_000_000).prop_map(Action::SetAmount),
        ]
    }

    proptest! {
        /// Whatever callers do, the amounts stay consistent with the status, a refused action
        /// changes nothing, and terminal statuses are final.
        #[test]
        fn amounts_and_statuses_stay_consistent(
            manual in any::<bool>(),
            actions in proptest::collection::vec(action(), 0..12),
        ) {
            let capture = if manual { CaptureMethod::Manual } else { CaptureMethod::Automatic };
            let mut intent = new_intent(None, capture);
            for (i, action) in actions.into_iter().enumerate() {
                let before = intent.clone();
                let result = match action {
                    Action::SetMethod(m) => intent.set_payment_method(METHODS[m]).map(|()| vec![]),
                    Action::Confirm(m) => intent.confirm(m.map(|m| METHODS[m]), format!("ch_{i}")),
                    Action::Capture(a) => intent.capture(a),
                    Action::Cancel => intent.cancel(None, false, i as i64),
                    Action::Settle(ok) => intent.settle(if ok { Ok(()) } else {
                        Err(PaymentError { code: "x".into(), decline_code: None, message: "x".into(), payment_method: None, payment_method_type: None })
                    }),
                    Action::SetAmount(a) => intent.set_amount(a).map(|()| vec![]),
                };
                if result.is_err() {
                    prop_assert_eq!(&intent, &before, "a refused action changed the intent");
                }
                if matches!(before.status, Status::Succeeded | Status::Canceled) {
                    prop_assert_eq!(intent.status, before.status, "terminal statuses are final");
                }
                prop_assert!(intent.amount_received <= intent.amount);
                prop_assert!(intent.amount_capturable <= intent.amount);
                prop_assert!(intent.amount_capturable.get() >= 0 && intent.amount_received.get() >= 0);
                match intent.status {
                    Status::Succeeded => prop_assert!(intent.amount_received.is_positive() && intent.amount_capturable.is_zero()),
                    Status::RequiresCapture => prop_assert!(intent.amount_capturable == intent.amount && intent.amount_received.is_zero()),
                    Status::Canceled => prop_assert!(intent.amount_capturable.is_zero() && intent.amount_received.is_zero()),
                    _ => prop_assert!(intent.amount_received.is_zero() && intent.amount_capturable.is_zero()),
                }
                prop_assert_eq!(
                    intent.status == Status::RequiresConfirmation,
                    intent.payment_method.is_some() && intent.status.is_before_confirmation(),
                );
            }
        }
    }
}
