//! How the credit-note ledger's refusals reach clients (`CreditNoteLedgerService`). The `match` is
//! exhaustive: a new variant must be given a code and a reason here.

use settle_platform::ApiError;
use settle_proto::common::v1::ErrorReason;

use crate::domain::credit::CreditError;

impl From<CreditError> for ApiError {
    fn from(error: CreditError) -> Self {
        let message = error.to_string();
        let precondition = |reason| ApiError::failed_precondition(reason, message.clone());
        match error {
            CreditError::AmountNotPositive { .. } => {
                ApiError::invalid_param("amount", ErrorReason::ParameterInvalidInteger, message)
            }
            CreditError::PartNegative { field, .. } => {
                ApiError::invalid_param(field, ErrorReason::ParameterInvalidInteger, message)
            }
            CreditError::Overflow(_) => {
                ApiError::invalid_param("amount", ErrorReason::AmountTooLarge, message)
            }
            CreditError::InvoiceNotCreditable { .. } => {
                precondition(ErrorReason::StateUnsupported).with_violation("invoice", message.clone())
            }
            CreditError::ExceedsInvoice { .. } => {
                precondition(ErrorReason::CreditNoteExceedsInvoice).with_violation("amount", message.clone())
            }
            CreditError::AmountsMismatch { .. } => precondition(ErrorReason::CreditNoteAmountsMismatch),
            CreditError::Released | CreditError::NotReleasable { .. } | CreditError::NotApplied { .. } => {
                precondition(ErrorReason::StateUnsupported)
            }
            CreditError::ReversedByOther { .. } => precondition(ErrorReason::CreditNoteNotVoidable),
            CreditError::BalanceInsufficient { .. } => precondition(ErrorReason::BalanceInsufficient),
            // Reversing more than the invoice's totals hold means the stored credits and invoice disagree.
            CreditError::TotalsInconsistent { .. } => {
                ApiError::internal("Stored invoice credits are inconsistent", &error)
            }
        }
    }
}
