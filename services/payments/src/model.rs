//! A payment intent is stored as its Stripe-shaped document (`settle.payments.v1.PaymentIntent`)
//! plus projected columns. The domain owns the money and state fields; this module reads them out
//! of a document and writes them back, leaving the descriptive fields (description, shipping,
//! options…) as the handlers set them.

pub mod payment_record;
pub mod refund;

use settle_money::{Amount, Currency};
use settle_proto::common::v1::{ApiError as PbApiError, ApiErrorType};
use settle_proto::settle::payments::v1 as pb;

use crate::domain::payment_intent::{CancellationReason, CaptureMethod, PaymentError, PaymentIntent, Status};
use crate::domain::payment_method::MethodType;

/// A stored document that does not describe a valid intent (a bug or a damaged row).
#[derive(Debug, thiserror::Error)]
#[error("stored payment intent {id} is invalid: {problem}")]
pub struct CorruptDocument {
    pub id: String,
    pub problem: &'static str,
}

pub fn status_to_pb(status: Status) -> pb::PaymentIntentStatus {
    match status {
        Status::RequiresPaymentMethod => pb::PaymentIntentStatus::RequiresPaymentMethod,
        Status::RequiresConfirmation => pb::PaymentIntentStatus::RequiresConfirmation,
        Status::RequiresAction => pb::PaymentIntentStatus::RequiresAction,
        Status::Processing => pb::PaymentIntentStatus::Processing,
        Status::RequiresCapture => pb::PaymentIntentStatus::RequiresCapture,
        Status::Canceled => pb::PaymentIntentStatus::Canceled,
        Status::Succeeded => pb::PaymentIntentStatus::Succeeded,
    }
}

pub fn status_from_pb(value: i32) -> Option<Status> {
    Some(match pb::PaymentIntentStatus::try_from(value).ok()? {
        pb::PaymentIntentStatus::Unspecified => return None,
        pb::PaymentIntentStatus::RequiresPaymentMethod => Status::RequiresPaymentMethod,
        pb::PaymentIntentStatus::RequiresConfirmation => Status::RequiresConfirmation,
        pb::PaymentIntentStatus::RequiresAction => Status::RequiresAction,
        pb::PaymentIntentStatus::Processing => Status::Processing,
        pb::PaymentIntentStatus::RequiresCapture => Status::RequiresCapture,
        pb::PaymentIntentStatus::Canceled => Status::Canceled,
        pb::PaymentIntentStatus::Succeeded => Status::Succeeded,
    })
}

pub fn capture_method_to_pb(method: CaptureMethod) -> pb::PaymentIntentCaptureMethod {
    match method {
        CaptureMethod::Automatic => pb::PaymentIntentCaptureMethod::Automatic,
        CaptureMethod::AutomaticAsync => pb::PaymentIntentCaptureMethod::AutomaticAsync,
        CaptureMethod::Manual => pb::PaymentIntentCaptureMethod::Manual,
    }
}

pub fn capture_method_from_pb(value: i32) -> Option<CaptureMethod> {
    match pb::PaymentIntentCaptureMethod::try_from(value).ok()? {
        pb::PaymentIntentCaptureMethod::Unspecified => None,
        pb::PaymentIntentCaptureMethod::Automatic => Some(CaptureMethod::Automatic),
        pb::PaymentIntentCaptureMethod::AutomaticAsync => Some(CaptureMethod::AutomaticAsync),
        pb::PaymentIntentCaptureMethod::Manual => Some(CaptureMethod::Manual),
    }
}

pub fn cancellation_reason_to_pb(reason: CancellationReason) -> pb::PaymentIntentCancellationReason {
    match reason {
        CancellationReason::Abandoned => pb::PaymentIntentCancellationReason::Abandoned,
        CancellationReason::Automatic => pb::PaymentIntentCancellationReason::Automatic,
        CancellationReason::Duplicate => pb::PaymentIntentCancellationReason::Duplicate,
        CancellationReason::Expired => pb::PaymentIntentCancellationReason::Expired,
        CancellationReason::FailedInvoice => pb::PaymentIntentCancellationReason::FailedInvoice,
        CancellationReason::Fraudulent => pb::PaymentIntentCancellationReason::Fraudulent,
        CancellationReason::RequestedByCustomer => pb::PaymentIntentCancellationReason::RequestedByCustomer,
        CancellationReason::VoidInvoice => pb::PaymentIntentCancellationReason::VoidInvoice,
    }
}

pub fn cancellation_reason_from_pb(value: i32) -> Option<CancellationReason> {
    Some(match pb::PaymentIntentCancellationReason::try_from(value).ok()? {
        pb::PaymentIntentCancellationReason::Unspecified => return None,
        pb::PaymentIntentCancellationReason::Abandoned => CancellationReason::Abandoned,
        pb::PaymentIntentCancellationReason::Automatic => CancellationReason::Automatic,
        pb::PaymentIntentCancellationReason::Duplicate => CancellationReason::Duplicate,
        pb::PaymentIntentCancellationReason::Expired => CancellationReason::Expired,
        pb::PaymentIntentCancellationReason::FailedInvoice => CancellationReason::FailedInvoice,
        pb::PaymentIntentCancellationReason::Fraudulent => CancellationReason::Fraudulent,
        pb::PaymentIntentCancellationReason::RequestedByCustomer => CancellationReason::RequestedByCustomer,
        pb::PaymentIntentCancellationReason::VoidInvoice => CancellationReason::VoidInvoice,
    })
}

pub fn method_type_from_pb(value: i32) -> Option<MethodType> {
    match pb::PaymentMethodType::try_from(value).ok()? {
        pb::PaymentMethodType::Card => Some(MethodType::Card),
        pb::PaymentMethodType::UsBankAccount => Some(MethodType::UsBankAccount),
        _ => None,
    }
}

fn error_to_pb(error: &PaymentError) -> PbApiError {
    PbApiError {
        code: Some(error.code.clone()),
        decline_code: error.decline_code.clone(),
        message: Some(error.message.clone()),
        payment_method: error.payment_method.clone(),
        payment_method_type: error.payment_method_type.clone(),
        doc_url: Some(format!("https://docs.stripe.com/error-codes/{}", error.code.replace('_', "-"))),
        r#type: ApiErrorType::CardError as i32,
        ..Default::default()
    }
}

fn error_from_pb(error: &PbApiError) -> PaymentError {
    PaymentError {
        code: error.code.clone().unwrap_or_default(),
        decline_code: error.decline_code.clone(),
        message: error.message.clone().unwrap_or_default(),
        payment_method: error.payment_method.clone(),
        payment_method_type: error.payment_method_type.clone(),
    }
}

/// Reads the domain state out of a stored document.
pub fn intent_from_document(doc: &pb::PaymentIntent) -> Result<PaymentIntent, CorruptDocument> {
    let corrupt = |problem| CorruptDocument { id: doc.id.clone(), problem };
    Ok(PaymentIntent {
        id: doc.id.clone(),
        amount: Amount::new(doc.amount),
        currency: Currency::parse(&doc.currency).map_err(|_| corrupt("currency"))?,
        status: status_from_pb(doc.status).ok_or_else(|| corrupt("status"))?,
        capture_method: capture_method_from_pb(doc.capture_method)
            .ok_or_else(|| corrupt("capture_method"))?,
        amount_capturable: Amount::new(doc.amount_capturable),
        amount_received: Amount::new(doc.amount_received),
        customer: doc.customer.clone(),
        payment_method: doc.payment_method.clone(),
        payment_method_types: doc
            .payment_method_types
            .iter()
            .map(|t| MethodType::parse(t).ok_or_else(|| corrupt("payment_method_types")))
            .collect::<Result<_, _>>()?,
        cancellation_reason: doc.cancellation_reason.and_then(cancellation_reason_from_pb),
        canceled_at: doc.canceled_at,
        last_payment_error: doc.last_payment_error.as_ref().map(error_from_pb),
        latest_charge: doc.latest_charge.clone(),
    })
}

/// Writes the domain state into the document.
pub fn render_intent(intent: &PaymentIntent, doc: &mut pb::PaymentIntent) {
    doc.id.clone_from(&intent.id);
    doc.object = "payment_intent".to_owned();
    doc.amount = intent.amount.get();
    doc.amount_capturable = intent.amount_capturable.get();
    doc.amount_received = intent.amount_received.get();
    doc.currency = intent.currency.as_str().to_owned();
    doc.status = status_to_pb(intent.status) as i32;
    doc.capture_method = capture_method_to_pb(intent.capture_method) as i32;
    doc.customer.clone_from(&intent.customer);
    doc.payment_method.clone_from(&intent.payment_method);
    doc.payment_method_types = intent.payment_method_types.iter().map(|t| t.as_str().to_owned()).collect();
    doc.cancellation_reason = intent.cancellation_reason.map(|r| cancellation_reason_to_pb(r) as i32);
    doc.canceled_at = intent.canceled_at;
    doc.last_payment_error = intent.last_payment_error.as_ref().map(error_to_pb);
    doc.latest_charge.clone_from(&intent.latest_charge);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::payment_intent::NewIntent;

    #[test]
    fn rendering_then_reading_round_trips_the_domain_state() {
        let (mut intent, _) = PaymentIntent::create(
            "pi_1".into(),
            NewIntent {
                amount: 1_000,
                currency: Currency::parse("eur").unwrap(),
                capture_method: CaptureMethod::Manual,
                customer: Some("cus_1".into()),
                payment_method: Some("pm_card_chargeDeclined".into()),
                payment_method_types: vec![MethodType::Card],
            },
        )
        .unwrap();
        intent.confirm(None, "ch_1".into()).unwrap();
        let mut doc = pb::PaymentIntent::default();
        render_intent(&intent, &mut doc);
        assert_eq!(intent_from_document(&doc).unwrap(), intent);
        assert_eq!(doc.last_payment_error.unwrap().r#type, ApiErrorType::CardError as i32);
    }

    #[test]
    fn every_status_maps_both_ways() {
        for status in [
            Status::RequiresPaymentMethod,
            Status::RequiresConfirmation,
            Status::RequiresAction,
            Status::Processing,
            Status::RequiresCapture,
            Status::Canceled,
            Status::Succeeded,
        ] {
            assert_eq!(status_from_pb(status_to_pb(status) as i32), Some(status));
        }
    }
}
