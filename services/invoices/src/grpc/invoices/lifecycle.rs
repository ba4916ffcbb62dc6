//! Status changes of an invoice: finalize, void, mark uncollectible, and pay out of band. Each runs on
//! a locked invoice ([`InvoiceOp`]); finalization is also a step of PayInvoice on a draft.

use settle_money::Amount;
use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;

use super::op::{InvoiceEvent, InvoiceOp};
use crate::domain::balance::{self as ledger, TransactionType};
use crate::domain::invoice::{InvoiceStatus, Settlement, settle};
use crate::grpc::AppState;
use crate::model::{self, recompute, set_status};
use crate::store::balance::{self, Posting};
use crate::store::invoice_credits;
use crate::store::{StoreError, invoice_numbers, invoice_payments};

/// Days a `send_invoice` invoice finalized without a due date has to be paid (Stripe's default
/// `days_until_due` invoice setting).
const DEFAULT_DAYS_UNTIL_DUE: i64 = 30;

fn state_unsupported(message: impl Into<String>) -> ApiError {
    ApiError::failed_precondition(ErrorReason::StateUnsupported, message)
}

fn transitions(doc: &mut pb::Invoice) -> &mut pb::InvoiceStatusTransitions {
    doc.status_transitions.get_or_insert_with(Default::default)
}

/// Posts a balance transaction for the invoice and writes its settle event.
async fn post_balance(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    amount: Amount,
    kind: TransactionType,
) -> Result<(), ApiError> {
    if amount.is_zero() {
        return Ok(());
    }
    let posting = Posting {
        scope: ctx.scope(),
        customer: &op.doc.customer,
        currency: &op.doc.currency,
        amount: amount.get(),
        kind,
        invoice: Some(&op.doc.id),
        credit_note: None,
        description: None,
        metadata: Default::default(),
    };
    let transaction = balance::post(&mut op.tx, state.db.backend(), &posting).await?;
    op.append(state, ctx, "customer_balance_transaction.created", &transaction.id, &transaction).await
}

/// Marks the invoice paid if nothing is left to pay (`invoice.paid`).
fn settle_status(op: &mut InvoiceOp, now: i64) -> Result<(), ApiError> {
    let amounts = recompute(&mut op.doc)?;
    let (status, settlement) = settle(op.status()?, &amounts);
    if settlement == Settlement::BecamePaid {
        set_status(&mut op.doc, status);
        transitions(&mut op.doc).paid_at = Some(now);
        op.emit(InvoiceEvent::Paid);
    }
    Ok(())
}

/// Finalizes the locked draft: number, status `open`, the customer's balance applied (an
/// `applied_to_invoice` transaction of `ending_balance − starting_balance`), due date, and `paid` at
/// once when nothing is due. FAILED_PRECONDITION `state_unsupported` when it is not a draft.
pub(crate) async fn finalize(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    now: i64,
) -> Result<(), ApiError> {
    let status = op.status()?;
    if status != InvoiceStatus::Draft {
        return Err(state_unsupported(format!(
            "This invoice is already finalized (it is {}); only a draft can be finalized.",
            status.as_str()
        )));
    }
    let (scope, backend) = (ctx.scope(), state.db.backend());
    if op.doc.number.is_none() {
        op.doc.number = Some(invoice_numbers::next(&mut op.tx, backend, scope, &op.doc.customer).await?);
    }
    // Locked until commit: the balance applied is the balance the posting below moves.
    op.doc.starting_balance =
        balance::lock(&mut op.tx, backend, scope, &op.doc.customer, &op.doc.currency).await?;
    set_status(&mut op.doc, InvoiceStatus::Open);
    transitions(&mut op.doc).finalized_at = Some(now);
    op.doc.effective_at.get_or_insert(now);
    op.doc.automatically_finalizes_at = None;
    op.doc.last_finalization_error = None;
    if op.doc.collection_method == pb::InvoiceCollectionMethod::SendInvoice as i32
        && op.doc.due_date.is_none()
    {
        op.doc.due_date = Some(now + DEFAULT_DAYS_UNTIL_DUE * 24 * 60 * 60);
    }
    let amounts = recompute(&mut op.doc)?;
    let applied = ledger::applied_at_finalization(&amounts).map_err(StoreError::from)?;
    post_balance(op, state, ctx, applied, TransactionType::AppliedToInvoice).await?;
    op.emit(InvoiceEvent::Finalized);
    settle_status(op, now)
}

/// What an invoice carries besides its amounts that voiding it would have to undo: invoice payments
/// that count or may count, and credit notes issued or being issued (a reserved credit, which no
/// amount shows yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attached {
    pub payments: bool,
    pub credits: bool,
}

/// Whether `doc` may be voided: open or uncollectible, nothing paid, no payments applied, no credit
/// notes. Pure, so a request checks it on the invoice it read before doing anything irreversible
/// (cancelling the default PaymentIntent), and [`void`] again under the row lock.
pub(crate) fn check_void(doc: &pb::Invoice, attached: Attached) -> Result<(), ApiError> {
    match model::status(doc)? {
        InvoiceStatus::Open | InvoiceStatus::Uncollectible => {}
        InvoiceStatus::Draft => {
            return Err(state_unsupported("A draft invoice cannot be voided; delete it instead."));
        }
        status => {
            return Err(state_unsupported(format!(
                "This invoice is {} and cannot be voided.",
                status.as_str()
            )));
        }
    }
    if doc.amount_paid > 0 || attached.payments {
        return Err(state_unsupported("This invoice has payments applied; detach them before voiding it."));
    }
    if doc.pre_payment_credit_notes_amount > 0 || doc.post_payment_credit_notes_amount > 0 {
        return Err(state_unsupported("This invoice has credit notes; void them before voiding it."));
    }
    if attached.credits {
        return Err(state_unsupported(
            "This invoice has credit notes that are issued or being issued; void them, or let their issue finish, before voiding it.",
        ));
    }
    Ok(())
}

/// Voids the locked invoice, returning the balance finalization applied (`unapplied_from_invoice`).
pub(crate) async fn void(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    now: i64,
) -> Result<(), ApiError> {
    let attached = Attached {
        payments: invoice_payments::has_live(&mut op.tx, ctx.scope(), &op.doc.id).await?,
        credits: invoice_credits::has_live(&mut *op.tx, ctx.scope(), &op.doc.id).await?,
    };
    check_void(&op.doc, attached)?;
    let amounts = recompute(&mut op.doc)?;
    let returned = ledger::returned_at_void(&amounts).map_err(StoreError::from)?;
    post_balance(op, state, ctx, returned, TransactionType::UnappliedFromInvoice).await?;
    set_status(&mut op.doc, InvoiceStatus::Void);
    transitions(&mut op.doc).voided_at = Some(now);
    op.emit(InvoiceEvent::Voided);
    Ok(())
}

/// Marks the locked `open` invoice uncollectible.
pub(crate) fn mark_uncollectible(op: &mut InvoiceOp, now: i64) -> Result<(), ApiError> {
    let status = op.status()?;
    if status != InvoiceStatus::Open {
        return Err(state_unsupported(format!(
            "Only an open invoice can be marked uncollectible; this one is {}.",
            status.as_str()
        )));
    }
    set_status(&mut op.doc, InvoiceStatus::Uncollectible);
    transitions(&mut op.doc).marked_uncollectible_at = Some(now);
    op.emit(InvoiceEvent::MarkedUncollectible);
    Ok(())
}

/// Checks PayInvoice's parameters for `paid_out_of_band=true`: no payment is made, so the payment
/// parameters do not apply.
pub(crate) fn check_pay_out_of_band(req: &pb::PayInvoiceRequest) -> Result<(), ApiError> {
    validate::unsupported("forgive", req.forgive == Some(true), "settle has no payment sources to forgive")?;
    validate::unsupported(
        "source",
        req.source.as_deref().is_some_and(|s| !s.is_empty()),
        "settle has no payment sources",
    )?;
    for (field, given) in [
        ("payment_method", req.payment_method.as_deref().is_some_and(|p| !p.is_empty())),
        ("mandate", req.mandate.as_deref().is_some_and(|m| !m.is_empty())),
    ] {
        if given {
            return Err(ApiError::exclusive_params(field, "paid_out_of_band"));
        }
    }
    Ok(())
}

/// Whether `doc` may be marked paid out of band: a draft (finalized first), an open or an
/// uncollectible invoice; FAILED_PRECONDITION `invoice_not_open` for a paid or void one. Pure, for the
/// same reason as [`check_void`].
pub(crate) fn check_out_of_band(doc: &pb::Invoice) -> Result<(), ApiError> {
    match model::status(doc)? {
        InvoiceStatus::Draft | InvoiceStatus::Open | InvoiceStatus::Uncollectible => Ok(()),
        status @ (InvoiceStatus::Paid | InvoiceStatus::Void) => Err(ApiError::failed_precondition(
            ErrorReason::InvoiceNotOpen,
            format!("This invoice is {} and cannot be paid.", status.as_str()),
        )),
    }
}

/// Marks what remains to pay as paid outside settle (`amount_paid_off_stripe`); a draft is finalized
/// first. FAILED_PRECONDITION `invoice_not_open` for a paid or void invoice, `state_unsupported` while
/// the invoice's default payment is still processing.
pub(crate) async fn pay_out_of_band(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    now: i64,
) -> Result<(), ApiError> {
    check_out_of_band(&op.doc)?;
    if op.status()? == InvoiceStatus::Draft {
        finalize(op, state, ctx, now).await?;
    }
    if op.status()? == InvoiceStatus::Paid {
        // Finalizing left nothing to pay.
        return Ok(());
    }
    if invoice_payments::has_open_default(&mut op.tx, ctx.scope(), &op.doc.id).await? {
        return Err(state_unsupported(
            "This invoice's default payment is still processing; wait for it to settle.",
        ));
    }
    let remaining = Amount::new(op.doc.amount_remaining);
    let add =
        |value: i64| Amount::new(value).checked_add(remaining).map(Amount::get).map_err(StoreError::from);
    op.doc.amount_paid_off_stripe = add(op.doc.amount_paid_off_stripe)?;
    op.doc.amount_paid = add(op.doc.amount_paid)?;
    settle_status(op, now)
}
