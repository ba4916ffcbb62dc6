//! `CreditNoteLedgerService`: the invoices side of the credit-notes issue and void sagas (reserve,
//! apply, release and reverse the credit a credit note gives its invoice). Only settle's own
//! services may call it (the server mounts it as internal).
//!
//! Every step runs in one transaction under the invoice's row lock, with its outbox events. Reserve,
//! Apply and Release are idempotent on the issue saga's id, the primary key of the credit's row;
//! Reverse on the void saga's id, recorded on the credit it reversed. A repeat answers with the
//! credit as it is now and changes nothing; a twin running at the same time waits for the invoice's
//! lock and then finds the credit its twin wrote (or, for a Reserve naming another invoice, loses
//! the insert on the primary key).
//!
//! Lock order: the invoice row, then the credit row, then the customer's balance ledger.

use settle_money::Amount;
use settle_platform::ApiError;
use settle_platform::Scope;
use settle_platform::context::RequestContext;
use settle_platform::db::Tx;
use settle_platform::ids::IdPrefix;
use settle_platform::time::now_unix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::credit_note_ledger_service_server::CreditNoteLedgerService;
use tonic::{Code, Request, Response, Status};

use super::AppState;
use super::invoices::op::{InvoiceEvent, InvoiceOp};
use crate::domain::balance::TransactionType;
use crate::domain::credit::{self, CreditError, CreditRequest, CreditStatus, InvoiceRoom, Step};
use crate::domain::invoice::{self, Settlement};
use crate::model::{self, credit as credit_model};
use crate::store::balance::{self, Posting};
use crate::store::invoice_credits::{self as store, StoredCredit};
use crate::store::invoices;

/// The handlers of `CreditNoteLedgerService`.
#[derive(Clone, Debug)]
pub struct CreditLedgerApi {
    state: AppState,
}

impl CreditLedgerApi {
    pub fn new(state: AppState) -> Self {
        CreditLedgerApi { state }
    }
}

fn saga_missing(saga_id: &str) -> ApiError {
    ApiError::new(
        Code::NotFound,
        ErrorReason::ResourceMissing,
        format!("Saga {saga_id} has no invoice credit."),
    )
    .with_violation("saga_id", "No invoice credit")
}

/// Stored credits that cannot be read back, or that name an invoice that is gone (a bug or a
/// damaged row).
#[derive(Debug, thiserror::Error)]
#[error("stored invoice credit is invalid: {0}")]
struct Corrupt(String);

fn corrupt(problem: String) -> ApiError {
    ApiError::internal("A stored invoice credit could not be read", &Corrupt(problem))
}

fn status_of(credit: &pb::InvoiceCredit) -> Result<CreditStatus, ApiError> {
    credit_model::status(credit)
        .ok_or_else(|| corrupt(format!("saga {} has no valid status", credit.saga_id)))
}

/// A repeated ReserveInvoiceCredit must ask for exactly what the first one did.
fn check_same_request(stored: &StoredCredit, req: &pb::ReserveInvoiceCreditRequest) -> Result<(), ApiError> {
    let c = &stored.credit;
    let same = c.invoice == req.invoice
        && c.credit_note == req.credit_note
        && c.amount == req.amount
        && c.credit_amount == req.credit_amount
        && stored.refund_amount == req.refund_amount
        && stored.out_of_band_amount == req.out_of_band_amount;
    if same {
        return Ok(());
    }
    Err(ApiError::invalid_param(
        "saga_id",
        ErrorReason::IdempotencyError,
        format!(
            "Saga {} already reserved a credit with other parameters (credit note {}, invoice {}, amount {}, \
             credit_amount {}, refund_amount {}, out_of_band_amount {}).",
            c.saga_id,
            c.credit_note,
            c.invoice,
            c.amount,
            c.credit_amount,
            stored.refund_amount,
            stored.out_of_band_amount
        ),
    ))
}

/// The answer to a Reserve that found its credit note's credit already recorded: the credit itself
/// for a repeat of the saga that recorded it, a refusal for any other saga.
fn answer_taken(
    existing: StoredCredit,
    req: &pb::ReserveInvoiceCreditRequest,
) -> Result<pb::InvoiceCredit, ApiError> {
    if existing.credit.saga_id == req.saga_id {
        check_same_request(&existing, req)?;
        return Ok(existing.credit);
    }
    Err(ApiError::failed_precondition(
        ErrorReason::StateUnsupported,
        format!(
            "Credit note {} already has a credit, reserved by saga {}; a credit note has one.",
            req.credit_note, existing.credit.saga_id
        ),
    )
    .with_violation("credit_note", "This credit note already has a credit"))
}

/// Locks the credit's invoice, first, as every writer of an invoice's money does; the caller then
/// reads the credit again under that lock.
async fn lock_invoice(
    tx: &mut Tx,
    state: &AppState,
    scope: &Scope,
    credit: &pb::InvoiceCredit,
) -> Result<pb::Invoice, ApiError> {
    invoices::find_for_update(tx, state.db.backend(), scope, &credit.invoice).await?.ok_or_else(|| {
        corrupt(format!("saga {} names invoice {}, which is gone", credit.saga_id, credit.invoice))
    })
}

/// Posts a balance transaction for the credit's invoice and writes its event; returns its id.
async fn post(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    amount: Amount,
    kind: TransactionType,
    credit_note: &str,
    description: &str,
) -> Result<String, ApiError> {
    let posting = Posting {
        scope: ctx.scope(),
        customer: &op.doc.customer,
        currency: &op.doc.currency,
        amount: amount.get(),
        kind,
        invoice: Some(&op.doc.id),
        credit_note: Some(credit_note),
        description: Some(description),
        metadata: Default::default(),
    };
    let transaction = balance::post(&mut op.tx, state.db.backend(), &posting).await?;
    op.append(state, ctx, "customer_balance_transaction.created", &transaction.id, &transaction).await?;
    Ok(transaction.id)
}

/// Writes the credit-note totals into the invoice, recomputes its amounts, moves its status (paid
/// when nothing is left to pay, open again when a paid invoice owes money again) and collects its
/// events. Returns by how much `amount_overpaid` changed.
fn change_totals(op: &mut InvoiceOp, totals: credit::CreditNoteTotals, now: i64) -> Result<Amount, ApiError> {
    let overpaid_before = Amount::new(op.doc.amount_overpaid);
    let amounts = credit_model::set_totals(&mut op.doc, totals)?;
    let (status, settlement) = invoice::settle(op.status()?, &amounts);
    model::set_status(&mut op.doc, status);
    let transitions = op.doc.status_transitions.get_or_insert_with(Default::default);
    match settlement {
        Settlement::BecamePaid => transitions.paid_at = Some(now),
        // Unlike a detached payment, a voided credit note leaves auto_advance as it was: no payment
        // was taken away, the invoice simply owes again.
        Settlement::Reopened => transitions.paid_at = None,
        Settlement::Unchanged => {}
    }
    op.emit(InvoiceEvent::Updated);
    if settlement == Settlement::BecamePaid {
        op.emit(InvoiceEvent::Paid);
    }
    let overpaid = amounts.amount_overpaid.checked_sub(overpaid_before).map_err(CreditError::from)?;
    if overpaid.is_positive() {
        op.emit(InvoiceEvent::Overpaid);
    }
    Ok(overpaid)
}

impl CreditLedgerApi {
    async fn reserve(
        &self,
        ctx: &RequestContext,
        req: pb::ReserveInvoiceCreditRequest,
    ) -> Result<pb::InvoiceCredit, ApiError> {
        validate::id("saga_id", &req.saga_id, IdPrefix::Saga)?;
        validate::id("invoice", &req.invoice, IdPrefix::Invoice)?;
        validate::id("credit_note", &req.credit_note, IdPrefix::CreditNote)?;
        let request =
            CreditRequest::parse(req.amount, req.credit_amount, req.refund_amount, req.out_of_band_amount)?;
        let state = &self.state;
        let scope = ctx.scope();
        // A repeat answers with the credit as it is now, whatever became of it since.
        if let Some(stored) = store::find(state.db.pool(), scope, &req.saga_id).await? {
            check_same_request(&stored, &req)?;
            return Ok(stored.credit);
        }
        let mut tx = state.db.begin().await?;
        let doc = invoices::find_for_update(&mut tx, state.db.backend(), scope, &req.invoice)
            .await?
            .ok_or_else(|| ApiError::not_found(IdPrefix::Invoice, &req.invoice, "invoice"))?;
        // A twin of this call may have committed while this one waited for the lock.
        if let Some(stored) = store::find(&mut *tx, scope, &req.saga_id).await? {
            check_same_request(&stored, &req)?;
            return Ok(stored.credit);
        }
        // (A twin that named another invoice shows here by its credit note.)
        if let Some(existing) = store::find_by_credit_note(&mut *tx, scope, &req.credit_note).await? {
            return answer_taken(existing, &req);
        }
        credit::check_creditable(&doc.id, model::status(&doc)?)?;
        let summary = store::summary(&mut *tx, scope, &doc.id).await?;
        let room = InvoiceRoom {
            total: Amount::new(doc.total),
            amount_remaining: Amount::new(doc.amount_remaining),
            credited: Amount::new(summary.credited),
            reserved_pre_payment: Amount::new(summary.reserved_pre_payment),
        };
        let split = credit::reserve(&request, &room)?;
        let now = now_unix();
        let stored = StoredCredit {
            credit: pb::InvoiceCredit {
                saga_id: req.saga_id.clone(),
                invoice: doc.id.clone(),
                credit_note: req.credit_note.clone(),
                status: credit_model::status_to_pb(CreditStatus::Reserved) as i32,
                amount: request.amount.get(),
                pre_payment_amount: split.pre_payment.get(),
                post_payment_amount: split.post_payment.get(),
                credit_amount: request.credit_amount.get(),
                customer: doc.customer.clone(),
                currency: doc.currency.clone(),
                invoice_number: doc.number.clone(),
                credit_note_index: credit::next_index(summary.highest_index)?,
                customer_balance_transaction: None,
                created: now,
                updated: now,
                reversal_saga_id: None,
                reversal_customer_balance_transaction: None,
            },
            refund_amount: request.refund_amount.get(),
            out_of_band_amount: request.out_of_band_amount.get(),
        };
        if !store::insert_if_absent(&mut tx, scope, &stored).await? {
            // A twin naming another invoice took the saga's key first (the primary key decides),
            // or one for another saga took the credit note.
            drop(tx);
            if let Some(existing) = store::find(state.db.pool(), scope, &req.saga_id).await? {
                check_same_request(&existing, &req)?;
                return Ok(existing.credit);
            }
            return match store::find_by_credit_note(state.db.pool(), scope, &req.credit_note).await? {
                Some(existing) => answer_taken(existing, &req),
                None => Err(corrupt(format!("saga {}: the credit could not be recorded", req.saga_id))),
            };
        }
        settle_platform::faults::hit("invoices.credit_reserve.before_commit").await;
        tx.commit().await?;
        settle_platform::faults::hit("invoices.credit_reserve.after_commit").await;
        tracing::debug!(saga_id = %req.saga_id, invoice = %doc.id, pre = split.pre_payment.get(), post = split.post_payment.get(), "invoice credit reserved");
        Ok(stored.credit)
    }

    async fn apply(
        &self,
        ctx: &RequestContext,
        req: pb::ApplyInvoiceCreditRequest,
    ) -> Result<pb::InvoiceCredit, ApiError> {
        validate::id("saga_id", &req.saga_id, IdPrefix::Saga)?;
        let state = &self.state;
        let scope = ctx.scope();
        let found = store::find(state.db.pool(), scope, &req.saga_id)
            .await?
            .ok_or_else(|| saga_missing(&req.saga_id))?;
        let mut tx = state.db.begin().await?;
        let doc = lock_invoice(&mut tx, state, scope, &found.credit).await?;
        let mut credit = store::find_for_update(&mut tx, state.db.backend(), scope, &req.saga_id)
            .await?
            .ok_or_else(|| saga_missing(&req.saga_id))?
            .credit;
        if credit::apply_step(status_of(&credit)?)? == Step::Repeat {
            return Ok(credit);
        }
        let now = now_unix();
        let mut op = InvoiceOp::within(tx, doc);
        let totals = credit_model::totals(&op.doc).with_applied(credit_model::split(&credit))?;
        let overpaid = change_totals(&mut op, totals, now)?;
        let credit_note = credit.credit_note.clone();
        if credit.credit_amount > 0 {
            let description = format!("Credit note {credit_note} credited to the customer's balance");
            let amount = Amount::new(-credit.credit_amount);
            let id =
                post(&mut op, state, ctx, amount, TransactionType::CreditNote, &credit_note, &description)
                    .await?;
            credit.customer_balance_transaction = Some(id);
        }
        if overpaid.is_positive() {
            // The invoice was paid in the meantime (a pending payment succeeded): what its customer
            // paid beyond what is now due is credited like any overpayment.
            let description =
                format!("Overpayment after credit note {credit_note}, credited to the customer's balance");
            let amount = overpaid.checked_neg().map_err(CreditError::from)?;
            post(&mut op, state, ctx, amount, TransactionType::InvoiceOverpaid, &credit_note, &description)
                .await?;
        }
        credit_model::set_status(&mut credit, CreditStatus::Applied, now);
        store::update(&mut op.tx, scope, &credit).await?;
        op.commit_with(state, ctx, &credit).await?;
        settle_platform::faults::hit("invoices.credit_apply.after_commit").await;
        tracing::debug!(saga_id = %req.saga_id, invoice = %credit.invoice, "invoice credit applied");
        Ok(credit)
    }

    async fn release(
        &self,
        ctx: &RequestContext,
        req: pb::ReleaseInvoiceCreditRequest,
    ) -> Result<pb::InvoiceCredit, ApiError> {
        validate::id("saga_id", &req.saga_id, IdPrefix::Saga)?;
        let state = &self.state;
        let scope = ctx.scope();
        let found = store::find(state.db.pool(), scope, &req.saga_id)
            .await?
            .ok_or_else(|| saga_missing(&req.saga_id))?;
        let mut tx = state.db.begin().await?;
        lock_invoice(&mut tx, state, scope, &found.credit).await?;
        let mut credit = store::find_for_update(&mut tx, state.db.backend(), scope, &req.saga_id)
            .await?
            .ok_or_else(|| saga_missing(&req.saga_id))?
            .credit;
        if credit::release_step(status_of(&credit)?)? == Step::Repeat {
            return Ok(credit);
        }
        // It only stops counting: the invoice's amounts never showed a reserved credit.
        credit_model::set_status(&mut credit, CreditStatus::Released, now_unix());
        store::update(&mut tx, scope, &credit).await?;
        tx.commit().await?;
        settle_platform::faults::hit("invoices.credit_release.after_commit").await;
        tracing::debug!(saga_id = %req.saga_id, invoice = %credit.invoice, "invoice credit released");
        Ok(credit)
    }

    async fn reverse(
        &self,
        ctx: &RequestContext,
        req: pb::ReverseInvoiceCreditRequest,
    ) -> Result<pb::InvoiceCredit, ApiError> {
        validate::id("saga_id", &req.saga_id, IdPrefix::Saga)?;
        validate::id("credit_note", &req.credit_note, IdPrefix::CreditNote)?;
        let state = &self.state;
        let scope = ctx.scope();
        // A void saga voids one credit note.
        if let Some(done) = store::find_by_reversal(state.db.pool(), scope, &req.saga_id).await?
            && done.credit.credit_note != req.credit_note
        {
            return Err(ApiError::invalid_param(
                "saga_id",
                ErrorReason::IdempotencyError,
                format!(
                    "Saga {} already reversed the credit of credit note {}.",
                    req.saga_id, done.credit.credit_note
                ),
            ));
        }
        let credit_missing = || {
            ApiError::new(
                Code::NotFound,
                ErrorReason::ResourceMissing,
                format!("Credit note {} has no invoice credit.", req.credit_note),
            )
            .with_violation("credit_note", "No invoice credit")
        };
        let found = store::find_by_credit_note(state.db.pool(), scope, &req.credit_note)
            .await?
            .ok_or_else(credit_missing)?;
        let mut tx = state.db.begin().await?;
        let doc = lock_invoice(&mut tx, state, scope, &found.credit).await?;
        let mut credit =
            store::find_by_credit_note_for_update(&mut tx, state.db.backend(), scope, &req.credit_note)
                .await?
                .ok_or_else(credit_missing)?
                .credit;
        let step =
            credit::reverse_step(status_of(&credit)?, credit.reversal_saga_id.as_deref(), &req.saga_id)?;
        if step == Step::Repeat {
            return Ok(credit);
        }
        let now = now_unix();
        let mut op = InvoiceOp::within(tx, doc);
        let totals = credit_model::totals(&op.doc).with_reversed(credit_model::split(&credit))?;
        let overpaid = change_totals(&mut op, totals, now)?;
        // What the balance gives back: the credit, and any overpayment credit the apply caused.
        let overpayment_back = overpaid.checked_neg().map_err(CreditError::from)?.clamp_non_negative();
        let take_back =
            Amount::new(credit.credit_amount).checked_add(overpayment_back).map_err(CreditError::from)?;
        if take_back.is_positive() {
            // Locked until commit, so the balance checked is the balance the postings move.
            let held =
                balance::lock(&mut op.tx, state.db.backend(), scope, &op.doc.customer, &op.doc.currency)
                    .await?;
            credit::check_balance_holds(Amount::new(held), take_back)?;
        }
        let credit_note = credit.credit_note.clone();
        if credit.credit_amount > 0 {
            let description = format!("Credit note {credit_note} voided: its balance credit taken back");
            let amount = Amount::new(credit.credit_amount);
            let id =
                post(&mut op, state, ctx, amount, TransactionType::CreditNote, &credit_note, &description)
                    .await?;
            credit.reversal_customer_balance_transaction = Some(id);
        }
        if overpayment_back.is_positive() {
            let description = format!("Overpayment credit taken back: credit note {credit_note} was voided");
            post(
                &mut op,
                state,
                ctx,
                overpayment_back,
                TransactionType::InvoiceOverpaid,
                &credit_note,
                &description,
            )
            .await?;
        }
        credit_model::set_status(&mut credit, CreditStatus::Reversed, now);
        credit.reversal_saga_id = Some(req.saga_id.clone());
        store::update(&mut op.tx, scope, &credit).await?;
        op.commit_with(state, ctx, &credit).await?;
        settle_platform::faults::hit("invoices.credit_reverse.after_commit").await;
        tracing::debug!(saga_id = %req.saga_id, credit_note = %credit.credit_note, "invoice credit reversed");
        Ok(credit)
    }
}

#[tonic::async_trait]
impl CreditNoteLedgerService for CreditLedgerApi {
    async fn reserve_invoice_credit(
        &self,
        request: Request<pb::ReserveInvoiceCreditRequest>,
    ) -> Result<Response<pb::InvoiceCredit>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.reserve(&ctx, request.into_inner()).await?))
    }

    async fn apply_invoice_credit(
        &self,
        request: Request<pb::ApplyInvoiceCreditRequest>,
    ) -> Result<Response<pb::InvoiceCredit>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.apply(&ctx, request.into_inner()).await?))
    }

    async fn release_invoice_credit(
        &self,
        request: Request<pb::ReleaseInvoiceCreditRequest>,
    ) -> Result<Response<pb::InvoiceCredit>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.release(&ctx, request.into_inner()).await?))
    }

    async fn reverse_invoice_credit(
        &self,
        request: Request<pb::ReverseInvoiceCreditRequest>,
    ) -> Result<Response<pb::InvoiceCredit>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.reverse(&ctx, request.into_inner()).await?))
    }
}
