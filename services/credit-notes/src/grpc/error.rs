//! The one mapping from credit-note refusals to API errors (and so to gRPC statuses). The `match`es
//! are exhaustive: a new variant must be given a code and a reason here.

use settle_platform::ApiError;
use settle_proto::common::v1::ErrorReason;
use tonic::Code;

use crate::domain::error::{CreditError, VoidRefusal};

impl From<CreditError> for ApiError {
    fn from(error: CreditError) -> Self {
        let message = error.to_string();
        let invalid =
            |field: String, reason: ErrorReason| ApiError::invalid_param(&field, reason, message.clone());
        match error {
            CreditError::LineNotOnInvoice { index, .. } => {
                invalid(format!("lines[{index}][invoice_line_item]"), ErrorReason::ParameterInvalid)
            }
            CreditError::LineNotCreditable { index, .. } => {
                invalid(format!("lines[{index}][invoice_line_item]"), ErrorReason::ParameterInvalid)
            }
            CreditError::LineAmountNotPositive { index } => {
                invalid(format!("lines[{index}]"), ErrorReason::ParameterInvalid)
            }
            CreditError::LineAmountTooLarge { index } => {
                invalid(format!("lines[{index}]"), ErrorReason::AmountTooLarge)
            }
            CreditError::QuantityOfFixedLine { index, .. } => {
                invalid(format!("lines[{index}][quantity]"), ErrorReason::ParameterInvalid)
            }
            CreditError::QuantityExceedsLine { index, .. } => {
                invalid(format!("lines[{index}][quantity]"), ErrorReason::CreditNoteExceedsInvoice)
            }
            CreditError::LineOverCredited { index, by_quantity, .. } => invalid(
                format!("lines[{index}][{}]", if by_quantity { "quantity" } else { "amount" }),
                ErrorReason::CreditNoteExceedsInvoice,
            ),
            CreditError::TotalNotPositive => {
                invalid("amount".to_owned(), ErrorReason::ParameterInvalidInteger)
            }
            CreditError::AmountMismatch { .. } => {
                invalid("amount".to_owned(), ErrorReason::CreditNoteAmountsMismatch)
            }
            CreditError::ExceedsInvoice { .. } => invalid(
                "amount".to_owned(),
                ErrorReason::CreditNoteExceedsInvoice,
            )
            .with_violation("lines", "The credit note would exceed what the invoice can still be credited."),
            CreditError::PostPaymentMismatch { .. } => {
                let mut error = invalid("refund_amount".to_owned(), ErrorReason::CreditNoteAmountsMismatch);
                for field in ["refunds", "credit_amount", "out_of_band_amount"] {
                    error =
                        error.with_violation(field, "Together these must settle the post-payment amount.");
                }
                error
            }
            CreditError::RefundFullyLinked { index } => {
                invalid(format!("refunds[{index}]"), ErrorReason::RefundExceedsRefundable)
            }
            CreditError::RefundExceedsRefundable { index, .. } => {
                invalid(format!("refunds[{index}][amount_refunded]"), ErrorReason::RefundExceedsRefundable)
            }
            CreditError::NoRefundablePayment { .. } => {
                invalid("refund_amount".to_owned(), ErrorReason::RefundExceedsRefundable)
            }
            CreditError::ShippingAlreadyCredited => {
                invalid("shipping_cost".to_owned(), ErrorReason::CreditNoteExceedsInvoice)
            }
            CreditError::Overflow => invalid("amount".to_owned(), ErrorReason::AmountTooLarge),
        }
    }
}

impl From<VoidRefusal> for ApiError {
    fn from(refusal: VoidRefusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            VoidRefusal::AlreadyVoid | VoidRefusal::RefundsMovedMoney { .. } => {
                ApiError::failed_precondition(ErrorReason::CreditNoteNotVoidable, message)
                    .with_violation("id", "The credit note cannot be voided.")
            }
            // Only reachable for a note clients cannot see yet.
            VoidRefusal::NotIssued => ApiError {
                code: Code::NotFound,
                reason: ErrorReason::ResourceMissing,
                message,
                field_violations: vec![("id".to_owned(), "No such credit_note".to_owned())],
            },
            VoidRefusal::InProgress => ApiError::new(Code::Aborted, ErrorReason::SagaInProgress, message),
        }
    }
}
