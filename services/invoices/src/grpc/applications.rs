//! Placeholder for the lead's payment-application code (the attach and detach sagas, PayInvoice with a
//! payment method, and the invoice's default PaymentIntent), which replaces this file when the
//! branches merge. It exists so this branch builds; it never lands on main as is.

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;

use super::AppState;

fn lead_part() -> ApiError {
    ApiError::new(tonic::Code::Unimplemented, ErrorReason::InternalError, "lead's part")
}

/// `AttachPayment`.
pub async fn attach_payment(
    _state: &AppState,
    _ctx: &RequestContext,
    _req: pb::AttachPaymentRequest,
) -> Result<pb::Invoice, ApiError> {
    Err(lead_part())
}

/// `DetachPayment`.
pub async fn detach_payment(
    _state: &AppState,
    _ctx: &RequestContext,
    _req: pb::DetachPaymentRequest,
) -> Result<pb::Invoice, ApiError> {
    Err(lead_part())
}

/// `PayInvoice` without `paid_out_of_band`.
pub async fn pay_invoice(
    _state: &AppState,
    _ctx: &RequestContext,
    _req: pb::PayInvoiceRequest,
) -> Result<pb::Invoice, ApiError> {
    Err(lead_part())
}

/// The expanded `confirmation_secret`: the client secret of the invoice's default PaymentIntent (the
/// one PayInvoice creates) while it can still be confirmed. Without the lead's PayInvoice there is
/// none.
pub async fn confirmation_secret(
    _state: &AppState,
    _ctx: &RequestContext,
    _invoice: &pb::Invoice,
) -> Result<Option<pb::InvoiceConfirmationSecret>, ApiError> {
    Ok(None)
}
