//! `InvoicePaymentService`: Stripe's `/v1/invoice_payments` (retrieve and list).

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::ids::IdPrefix;
use settle_platform::pagination::PageRequest;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::invoice_payment_service_server::InvoicePaymentService;
use tonic::{Request, Response, Status};

use super::AppState;
use crate::store::invoice_payments::{self as store, ListFilter};

/// The handlers of `InvoicePaymentService`.
#[derive(Clone, Debug)]
pub struct InvoicePaymentsApi {
    state: AppState,
}

impl InvoicePaymentsApi {
    pub fn new(state: AppState) -> Self {
        InvoicePaymentsApi { state }
    }

    async fn get(&self, ctx: &RequestContext, id: &str) -> Result<pb::InvoicePayment, ApiError> {
        let not_found = || ApiError::not_found(IdPrefix::InvoicePayment, id, "id");
        if !IdPrefix::InvoicePayment.matches(id) {
            return Err(not_found());
        }
        store::find(self.state.db.pool(), ctx.scope(), id).await?.ok_or_else(not_found)
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListInvoicePaymentsRequest,
    ) -> Result<pb::ListInvoicePaymentsResponse, ApiError> {
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::InvoicePayment,
        )?;
        let invalid = |field: &str, message: &str| {
            ApiError::invalid_param(field, ErrorReason::ParameterInvalid, message)
        };
        if let Some(invoice) = req.invoice.as_deref()
            && !IdPrefix::Invoice.matches(invoice)
        {
            return Err(invalid("invoice", "Invalid invoice: expected in_…"));
        }
        let status = match req.status.map(pb::InvoicePaymentStatus::try_from) {
            None => None,
            Some(Ok(pb::InvoicePaymentStatus::Open)) => Some("open"),
            Some(Ok(pb::InvoicePaymentStatus::Paid)) => Some("paid"),
            Some(Ok(pb::InvoicePaymentStatus::Canceled)) => Some("canceled"),
            Some(_) => return Err(invalid("status", "status must be one of open, paid, canceled.")),
        };
        let payment = match req.payment.as_ref() {
            None => None,
            Some(filter) => Some(payment_filter(filter)?),
        };
        let filter = ListFilter { invoice: req.invoice.clone(), status, payment, created: req.created };
        let page = store::list(&self.state.db, ctx.scope(), &filter, &page).await?;
        Ok(pb::ListInvoicePaymentsResponse { data: page.data, has_more: page.has_more })
    }
}

/// Stripe's `payment[type]`, `payment[payment_intent]`, `payment[payment_record]` filter.
fn payment_filter(filter: &pb::InvoicePaymentPaymentParams) -> Result<String, ApiError> {
    let kind = pb::InvoicePaymentPaymentType::try_from(filter.r#type)
        .unwrap_or(pb::InvoicePaymentPaymentType::Unspecified);
    let (field, id, prefix) = match kind {
        pb::InvoicePaymentPaymentType::PaymentIntent => {
            ("payment[payment_intent]", filter.payment_intent.as_deref(), IdPrefix::PaymentIntent)
        }
        pb::InvoicePaymentPaymentType::PaymentRecord => {
            ("payment[payment_record]", filter.payment_record.as_deref(), IdPrefix::PaymentRecord)
        }
        pb::InvoicePaymentPaymentType::Unspecified => return Err(ApiError::missing_param("payment[type]")),
        pb::InvoicePaymentPaymentType::Charge => {
            return Err(ApiError::invalid_param(
                "payment[type]",
                ErrorReason::ParameterInvalid,
                "payment[type] must be payment_intent or payment_record.",
            ));
        }
    };
    let other_given = match kind {
        pb::InvoicePaymentPaymentType::PaymentIntent => filter.payment_record.is_some(),
        _ => filter.payment_intent.is_some(),
    };
    if other_given {
        return Err(ApiError::exclusive_params("payment[payment_intent]", "payment[payment_record]"));
    }
    let id = id.ok_or_else(|| ApiError::missing_param(field))?;
    if !prefix.matches(id) {
        return Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            format!("Invalid {field}: expected {prefix}…"),
        ));
    }
    Ok(id.to_owned())
}

#[tonic::async_trait]
impl InvoicePaymentService for InvoicePaymentsApi {
    async fn get_invoice_payment(
        &self,
        request: Request<pb::GetInvoicePaymentRequest>,
    ) -> Result<Response<pb::InvoicePayment>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, &request.into_inner().id).await?))
    }

    async fn list_invoice_payments(
        &self,
        request: Request<pb::ListInvoicePaymentsRequest>,
    ) -> Result<Response<pb::ListInvoicePaymentsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }
}
