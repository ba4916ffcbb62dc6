//! The invoice's default payment, as Stripe has it: finalizing a `charge_automatically` invoice
//! creates a PaymentIntent for the amount due and attaches it as an `open` invoice payment
//! (`is_default`), whose client secret is the invoice's `confirmation_secret`. Voiding the invoice or
//! marking it paid out of band cancels that PaymentIntent first, then retires the invoice payment.
//!
//! Order, erring on the safe side like the other sagas: the PaymentIntent is canceled in payments
//! before the invoice stops counting it, so the customer can never pay an intent no invoice
//! expects; if the process dies in between, the `payment_intent.canceled` event retires it.

use settle_platform::ApiError;
use settle_platform::Scope;
use settle_platform::db::Tx;
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::EventOrigin;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as payments_pb;
use settle_saga::store as saga_store;
use settle_saga::{Fence, NewSaga, Saga, SagaRunner};
use tonic::Code;

use super::attach::Leg;
use super::pay::{self, PayData, PayMode};
use super::{Context, detach, encode};
use crate::domain::invoice::InvoiceStatus;
use crate::model;
use crate::store::invoice_payments;

/// Whether finalizing `doc` gives it a default PaymentIntent: a `charge_automatically` invoice that
/// is open with something to pay.
pub fn wanted(doc: &pb::Invoice) -> bool {
    doc.collection_method != pb::InvoiceCollectionMethod::SendInvoice as i32
        && doc.amount_remaining > 0
        && model::status(doc).is_ok_and(|s| s == InvoiceStatus::Open)
}

/// Records, in the finalizing transaction, the saga that creates the default PaymentIntent and
/// attaches it; the caller drives it once committed.
pub async fn record_prepare(
    tx: &mut Tx,
    runner: &SagaRunner,
    origin: &EventOrigin,
    doc: &pb::Invoice,
) -> Result<(Saga, Fence), sqlx::Error> {
    let data = PayData {
        mode: PayMode::Prepare,
        payment_method: doc.default_payment_method.clone().filter(|m| !m.is_empty()),
        amount: doc.amount_remaining,
        description: format!("Payment for invoice {}", doc.number.clone().unwrap_or_else(|| doc.id.clone())),
        off_session: None,
        intent: None,
        leg: Leg {
            invoice: doc.id.clone(),
            invoice_payment: IdPrefix::InvoicePayment.generate(),
            customer: doc.customer.clone(),
            currency: doc.currency.clone(),
            is_default: true,
            reserved: None,
        },
        refusal: None,
    };
    let new = NewSaga {
        id: IdPrefix::Saga.generate(),
        scope: origin.scope.clone(),
        kind: pay::KIND,
        step: "create_intent",
        data: encode(&data),
        subjects: pay::subjects(&doc.id),
        idempotency_key: None,
        result: None,
    };
    saga_store::insert(tx, &new, runner.holder(), runner.lease_until()).await
}

/// The PaymentIntent of the invoice's open default payment, if it has one.
pub async fn open_default_intent(
    ctx: &Context,
    scope: &Scope,
    invoice: &str,
) -> Result<Option<(pb::InvoicePayment, String)>, ApiError> {
    let found = invoice_payments::open_default(ctx.db.pool(), scope, invoice).await?;
    Ok(found.and_then(|p| {
        let intent = p.payment.as_ref().and_then(|a| a.payment_intent.clone())?;
        Some((p, intent))
    }))
}

/// Cancels the invoice's open default PaymentIntent in payments (reason `void_invoice`), before a
/// change that stops the invoice expecting it. Returns the canceled intent. Refused with
/// FAILED_PRECONDITION when the customer's payment already went through or is processing: the
/// invoice is about to count it.
pub async fn cancel_open_default(
    ctx: &Context,
    scope: &Scope,
    invoice: &str,
) -> Result<Option<String>, ApiError> {
    let Some((_, intent)) = open_default_intent(ctx, scope, invoice).await? else { return Ok(None) };
    let request = payments_pb::CancelPaymentIntentRequest {
        id: intent.clone(),
        cancellation_reason: Some(payments_pb::PaymentIntentCancellationReason::VoidInvoice as i32),
    };
    let unavailable = |status: tonic::Status| {
        ApiError::new(
            Code::Unavailable,
            ErrorReason::DependencyUnavailable,
            format!("The payments service could not cancel {intent}: {}", status.message()),
        )
    };
    let mut client = ctx.payments.intents.clone();
    match client.cancel_payment_intent(ctx.payments.request(scope, request)).await {
        Ok(_) => {}
        Err(status) if status.code() == Code::FailedPrecondition => {
            // Canceled by an earlier attempt whose answer was lost is as good as canceled now.
            let request = payments_pb::GetPaymentIntentRequest { id: intent.clone(), ..Default::default() };
            let current = client
                .get_payment_intent(ctx.payments.request(scope, request))
                .await
                .map_err(unavailable)?
                .into_inner();
            if current.status != payments_pb::PaymentIntentStatus::Canceled as i32 {
                return Err(ApiError::failed_precondition(
                    ErrorReason::StateUnsupported,
                    format!(
                        "The invoice's payment {intent} is processing or has succeeded, so it can no longer be canceled: {}",
                        status.message()
                    ),
                ));
            }
        }
        Err(status) if crate::peers::is_definitive(&status) => {
            return Err(ApiError::internal(
                "payments refused to cancel the invoice's PaymentIntent",
                &std::io::Error::other(status.message().to_owned()),
            ));
        }
        Err(status) => return Err(unavailable(status)),
    }
    settle_platform::faults::hit("invoices.default.after_cancel").await;
    Ok(Some(intent))
}

/// In the caller's transaction, with invoice `doc` locked: cancels the open default invoice payment
/// of the already canceled intent `canceled` and records the saga that releases its attachment
/// (the caller drives it once committed). Nothing when the invoice payment is no longer open (the
/// cancellation event got there first).
pub async fn retire(
    tx: &mut Tx,
    ctx: &Context,
    runner: &SagaRunner,
    origin: &EventOrigin,
    doc: &mut pb::Invoice,
    canceled: &str,
) -> Result<Option<(Saga, Fence)>, ApiError> {
    let Some((mut invoice_payment, attach_key)) =
        invoice_payments::find_live_by_payment(&mut **tx, &origin.scope, canceled).await?
    else {
        return Ok(None);
    };
    if invoice_payment.invoice != doc.id || invoice_payment.status != pb::InvoicePaymentStatus::Open as i32 {
        return Ok(None);
    }
    // The release is the invoice's own housekeeping, not the caller's idempotent request.
    let origin = EventOrigin { idempotency_key: None, ..origin.clone() };
    let (saga, fence, _) = detach::unapply_and_record(
        tx,
        ctx,
        runner,
        &origin,
        IdPrefix::Saga.generate(),
        doc,
        &mut invoice_payment,
        attach_key,
        canceled.to_owned(),
        false,
    )
    .await
    .map_err(|e| e.into_api("The invoice's default payment could not be retired"))?;
    Ok(Some((saga, fence)))
}
