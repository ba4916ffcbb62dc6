//! How refund-claim refusals reach clients. Fields are named relative to one claim (`claims[i]`
//! or `new_refund`); the handler nests them with [`ApiError::nested_in`]. The `match` is
//! exhaustive: a new variant must be given a code and a reason here.

use settle_platform::ApiError;
use settle_proto::common::v1::ErrorReason;

use crate::domain::refund_claim::ClaimError;

impl From<ClaimError> for ApiError {
    fn from(error: ClaimError) -> Self {
        let message = error.to_string();
        match error {
            ClaimError::AmountNotPositive => {
                ApiError::invalid_param("amount_refunded", ErrorReason::ParameterInvalidInteger, message)
            }
            ClaimError::NotAttached { .. } => {
                ApiError::failed_precondition(ErrorReason::PaymentNotAttached, message)
            }
            ClaimError::CurrencyMismatch { .. } => {
                ApiError::failed_precondition(ErrorReason::CurrencyMismatch, message)
            }
            // A refund that did not succeed refunded nothing, so any amount exceeds what it can link.
            ClaimError::NotSucceeded { .. } => {
                ApiError::failed_precondition(ErrorReason::RefundExceedsRefundable, message.clone())
                    .with_violation("refund", message)
            }
            ClaimError::FullyClaimed { .. } | ClaimError::ExceedsUnclaimed { .. } => {
                ApiError::failed_precondition(ErrorReason::RefundExceedsRefundable, message.clone())
                    .with_violation("amount_refunded", message)
            }
            // Giving back more than is claimed means the stored claims and refunds disagree.
            ClaimError::OverRelease { .. } => {
                ApiError::internal("Stored refund claims are inconsistent", &error)
            }
        }
    }
}
