//! The one mapping from Payment Record errors to API errors. The `match` is exhaustive: a new
//! variant must be given a code and a reason here.

use settle_platform::ApiError;
use settle_proto::common::v1::ErrorReason;
use tonic::Code;

use crate::domain::payment_record::RecordError;
use crate::model::payment_record::CorruptRecord;

/// The `report_refund` parameter naming the refund reference.
pub const REFUND_REFERENCE_FIELD: &str = "processor_details[custom][refund_reference]";

/// A refund reference already used in the account (on this record or another).
pub fn refund_reference_in_use(message: String) -> ApiError {
    ApiError {
        code: Code::AlreadyExists,
        reason: ErrorReason::RefundReferenceInUse,
        field_violations: vec![(REFUND_REFERENCE_FIELD.to_owned(), message.clone())],
        message,
    }
}

impl From<RecordError> for ApiError {
    fn from(error: RecordError) -> Self {
        let message = error.to_string();
        match error {
            RecordError::AmountNotPositive => ApiError::invalid_param(
                "amount_requested[value]",
                ErrorReason::ParameterInvalidInteger,
                message,
            ),
            RecordError::AmountTooLarge => {
                ApiError::invalid_param("amount_requested[value]", ErrorReason::AmountTooLarge, message)
            }
            RecordError::UnexpectedState { .. } => {
                ApiError::failed_precondition(ErrorReason::PaymentRecordUnexpectedState, message)
            }
            RecordError::RefundNotPositive => {
                ApiError::invalid_param("amount[value]", ErrorReason::ParameterInvalidInteger, message)
            }
            RecordError::RefundCurrencyMismatch { .. } => {
                ApiError::invalid_param("amount[currency]", ErrorReason::CurrencyMismatch, message)
            }
            RecordError::RefundTooLarge { .. } => {
                ApiError::invalid_param("amount[value]", ErrorReason::AmountTooLarge, message)
            }
            RecordError::AlreadyRefunded => {
                ApiError::failed_precondition(ErrorReason::ChargeAlreadyRefunded, message)
            }
            RecordError::RefundReferenceInUse(_) => refund_reference_in_use(message),
            // Only reachable with an absurd number of attempts: the record cannot take more.
            RecordError::Overflow => ApiError::failed_precondition(ErrorReason::AmountTooLarge, message),
        }
    }
}

impl From<CorruptRecord> for ApiError {
    fn from(error: CorruptRecord) -> Self {
        ApiError::internal("A stored payment record could not be read", &error)
    }
}
