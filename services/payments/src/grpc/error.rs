//! The one mapping from payments domain errors to API errors (and so to gRPC statuses). The
//! `match` is exhaustive: a new variant must be given a code and a reason here.

use settle_platform::ApiError;
use settle_proto::common::v1::ErrorReason;
use tonic::Code;

use crate::domain::payment_intent::IntentError;
use crate::model::CorruptDocument;

impl From<IntentError> for ApiError {
    fn from(error: IntentError) -> Self {
        let message = error.to_string();
        match error {
            IntentError::AmountNotPositive => {
                ApiError::invalid_param("amount", ErrorReason::ParameterInvalidInteger, message)
            }
            IntentError::AmountTooSmall { .. } => {
                ApiError::invalid_param("amount", ErrorReason::AmountTooSmall, message)
            }
            IntentError::AmountTooLarge => {
                ApiError::invalid_param("amount", ErrorReason::AmountTooLarge, message)
            }
            IntentError::UnknownPaymentMethod(_) => ApiError {
                code: Code::NotFound,
                reason: ErrorReason::ResourceMissing,
                field_violations: vec![("payment_method".to_owned(), message.clone())],
                message,
            },
            IntentError::PaymentMethodTypeNotAllowed { .. } => {
                ApiError::invalid_param("payment_method", ErrorReason::PaymentIntentInvalidParameter, message)
            }
            IntentError::MissingPaymentMethod => {
                ApiError::failed_precondition(ErrorReason::PaymentIntentUnexpectedState, message)
                    .with_violation("payment_method", "A payment method is required to confirm.")
            }
            IntentError::ManualCaptureUnsupported => {
                ApiError::invalid_param("capture_method", ErrorReason::PaymentIntentInvalidParameter, message)
            }
            IntentError::UnexpectedState { .. } => {
                ApiError::failed_precondition(ErrorReason::PaymentIntentUnexpectedState, message)
            }
            IntentError::CaptureNotPositive => {
                ApiError::invalid_param("amount_to_capture", ErrorReason::ParameterInvalidInteger, message)
            }
            IntentError::CaptureTooLarge { .. } => {
                ApiError::invalid_param("amount_to_capture", ErrorReason::AmountTooLarge, message)
            }
            IntentError::CancellationReasonNotRequestable => {
                ApiError::invalid_param("cancellation_reason", ErrorReason::ParameterInvalid, message)
            }
        }
    }
}

impl From<CorruptDocument> for ApiError {
    fn from(error: CorruptDocument) -> Self {
        ApiError::internal("A stored payment intent could not be read", &error)
    }
}
