//! How refund refusals reach clients. The `match` is exhaustive: a new variant must be given a
//! code and a reason here.

use settle_platform::ApiError;
use settle_proto::common::v1::ErrorReason;
use tonic::Code;

use crate::domain::refund::RefundError;

impl From<RefundError> for ApiError {
    fn from(error: RefundError) -> Self {
        let message = error.to_string();
        match error {
            RefundError::MissingTarget => ApiError {
                code: Code::InvalidArgument,
                reason: ErrorReason::ParameterMissing,
                field_violations: vec![
                    ("payment_intent".to_owned(), message.clone()),
                    ("charge".to_owned(), message.clone()),
                ],
                message,
            },
            RefundError::UnknownCharge(_) | RefundError::ChargeMismatch { .. } => {
                ApiError::invalid_param("charge", ErrorReason::ParameterInvalid, message)
            }
            RefundError::NotRefundable { .. } => {
                ApiError::failed_precondition(ErrorReason::ChargeNotRefundable, message)
            }
            RefundError::AlreadyRefunded { .. } => {
                ApiError::failed_precondition(ErrorReason::ChargeAlreadyRefunded, message)
            }
            RefundError::AmountNotPositive => {
                ApiError::invalid_param("amount", ErrorReason::ParameterInvalidInteger, message)
            }
            RefundError::AmountTooLarge { .. } => {
                ApiError::invalid_param("amount", ErrorReason::AmountTooLarge, message)
            }
            RefundError::ReasonNotRequestable => {
                ApiError::invalid_param("reason", ErrorReason::ParameterInvalid, message)
            }
            RefundError::CurrencyMismatch { .. } => {
                ApiError::invalid_param("currency", ErrorReason::CurrencyMismatch, message)
            }
        }
    }
}
