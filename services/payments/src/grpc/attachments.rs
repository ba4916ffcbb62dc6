//! `PaymentAttachmentService`: the payments side of the attach and detach sagas. Only settle's own
//! services may call it (the server mounts it as internal). Every call is idempotent on `saga_id`.

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::db::{Tx, is_unique_violation};
use settle_platform::ids::IdPrefix;
use settle_platform::time::now_unix;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::payment_attachment_service_server::PaymentAttachmentService;
use tonic::{Code, Request, Response, Status};

use super::AppState;
use crate::domain::attachment::{
    self, AttachmentError, AttachmentStatus, PaymentKind, PaymentOutcome, PaymentSnapshot,
};
use crate::model::intent_from_document;
use crate::model::payment_record::summary_from_document;
use crate::store::attachments::{self as store, AttachmentRow};
use crate::store::{payment_intents, payment_records};

/// The handlers of `PaymentAttachmentService`.
#[derive(Clone, Debug)]
pub struct AttachmentsApi {
    state: AppState,
}

impl AttachmentsApi {
    pub fn new(state: AppState) -> Self {
        AttachmentsApi { state }
    }
}

fn payment_kind(payment: &str) -> Result<PaymentKind, ApiError> {
    if IdPrefix::PaymentIntent.matches(payment) {
        Ok(PaymentKind::PaymentIntent)
    } else if IdPrefix::PaymentRecord.matches(payment) {
        Ok(PaymentKind::PaymentRecord)
    } else {
        Err(ApiError::invalid_param(
            "payment",
            ErrorReason::ParameterInvalid,
            format!(
                "Invalid payment {payment:?}: expected a payment intent (pi_…) or payment record (pr_…) id."
            ),
        ))
    }
}

fn saga_id(value: &str) -> Result<&str, ApiError> {
    if IdPrefix::Saga.matches(value) {
        Ok(value)
    } else {
        Err(ApiError::invalid_param(
            "saga_id",
            ErrorReason::ParameterInvalid,
            "Invalid saga_id: expected saga_…",
        ))
    }
}

fn payment_missing(payment: &str, kind: PaymentKind) -> ApiError {
    let prefix = match kind {
        PaymentKind::PaymentIntent => IdPrefix::PaymentIntent,
        PaymentKind::PaymentRecord => IdPrefix::PaymentRecord,
    };
    ApiError::not_found(prefix, payment, "payment")
}

/// Reads the payment under its row lock: who it belongs to, its currency, what it contributes and
/// its state. Locking it serializes reservations with changes to the payment itself.
pub(crate) async fn lock_payment(
    tx: &mut Tx,
    state: &AppState,
    ctx: &RequestContext,
    payment: &str,
    kind: PaymentKind,
) -> Result<PaymentSnapshot, ApiError> {
    match kind {
        PaymentKind::PaymentIntent => {
            let doc = payment_intents::find_for_update(tx, state.db.backend(), ctx.scope(), payment)
                .await?
                .ok_or_else(|| payment_missing(payment, kind))?;
            let intent = intent_from_document(&doc)?;
            Ok(PaymentSnapshot {
                kind,
                customer: intent.customer.clone(),
                currency: intent.currency,
                amount: intent.contribution(),
                outcome: intent.outcome(),
            })
        }
        PaymentKind::PaymentRecord => {
            let doc = payment_records::find_for_update(tx, state.db.backend(), ctx.scope(), payment)
                .await?
                .ok_or_else(|| payment_missing(payment, kind))?;
            let record = summary_from_document(&doc)
                .map_err(|e| ApiError::internal("A stored payment record could not be read", &e))?;
            Ok(PaymentSnapshot {
                kind,
                customer: record.customer.clone(),
                currency: record.currency,
                amount: record.contribution(),
                outcome: record.outcome(),
            })
        }
    }
}

fn render(row: &AttachmentRow, payment: Option<&PaymentSnapshot>) -> pb::Attachment {
    let status = match row.status() {
        Some(AttachmentStatus::Reserved) => pb::AttachmentStatus::Reserved,
        Some(AttachmentStatus::Confirmed) => pb::AttachmentStatus::Confirmed,
        Some(AttachmentStatus::Released) => pb::AttachmentStatus::Released,
        None => pb::AttachmentStatus::Unspecified,
    };
    let payment_type = match row.kind() {
        Some(PaymentKind::PaymentIntent) => pb::PaymentType::PaymentIntent,
        Some(PaymentKind::PaymentRecord) => pb::PaymentType::PaymentRecord,
        None => pb::PaymentType::Unspecified,
    };
    let outcome = payment.map(|p| match p.outcome {
        PaymentOutcome::Pending => pb::PaymentOutcome::Pending,
        PaymentOutcome::Succeeded => pb::PaymentOutcome::Succeeded,
        PaymentOutcome::Failed => pb::PaymentOutcome::Failed,
        PaymentOutcome::Canceled => pb::PaymentOutcome::Canceled,
    });
    pb::Attachment {
        id: row.id.clone(),
        object: "payment_attachment".to_owned(),
        payment: row.payment.clone(),
        payment_type: payment_type as i32,
        invoice: row.invoice.clone(),
        saga_id: row.saga_id.clone(),
        status: status as i32,
        customer: row.customer.clone(),
        currency: row.currency.clone(),
        // A release placeholder was never reserved: it carries nothing.
        amount: if row.invoice.is_empty() { 0 } else { payment.map_or(0, |p| p.amount.get()) },
        payment_status: outcome.unwrap_or(pb::PaymentOutcome::Unspecified) as i32,
        created: row.created,
        updated: row.updated,
    }
}

impl AttachmentsApi {
    async fn reserve(
        &self,
        ctx: &RequestContext,
        req: pb::ReserveAttachmentRequest,
    ) -> Result<pb::Attachment, ApiError> {
        let kind = payment_kind(&req.payment)?;
        let saga = saga_id(&req.saga_id)?;
        if !IdPrefix::Invoice.matches(&req.invoice) {
            return Err(ApiError::invalid_param(
                "invoice",
                ErrorReason::ParameterInvalid,
                "Invalid invoice: expected in_…",
            ));
        }
        settle_platform::validate::customer_id("customer", &req.customer)?;
        let currency = super::params::currency("currency", &req.currency)?;

        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let snapshot = lock_payment(&mut tx, state, ctx, &req.payment, kind).await?;
        let (by_saga, active) = store::find_for_reserve(&mut tx, ctx.scope(), saga, &req.payment).await?;
        if let Some(existing) = by_saga {
            // A repeated step: answer with what that saga has, whatever it is now.
            tx.commit().await?;
            return Ok(render(&existing, Some(&snapshot)));
        }
        attachment::check_reservation(&snapshot, &req.customer, currency)?;
        if let Some(active) = active {
            return Err(AttachmentError::AlreadyAttached { invoice: active.invoice }.into());
        }
        let now = now_unix();
        let row = AttachmentRow {
            id: IdPrefix::Attachment.generate(),
            payment: req.payment.clone(),
            payment_type: kind.as_str().to_owned(),
            invoice: req.invoice.clone(),
            saga_id: saga.to_owned(),
            status: AttachmentStatus::Reserved.as_str().to_owned(),
            customer: req.customer.clone(),
            currency: currency.as_str().to_owned(),
            created: now,
            updated: now,
        };
        if let Err(error) = store::insert(&mut tx, ctx.scope(), &row).await {
            // The payment row lock makes this unreachable for a payment whose row exists; the unique
            // index is the backstop all the same.
            return Err(if is_unique_violation(&error) {
                AttachmentError::AlreadyAttached { invoice: String::from("another invoice") }.into()
            } else {
                error.into()
            });
        }
        settle_platform::faults::hit("payments.reserve.before_commit").await;
        tx.commit().await?;
        settle_platform::faults::hit("payments.reserve.after_commit").await;
        tracing::debug!(payment = %row.payment, invoice = %row.invoice, saga_id = %row.saga_id, "payment reserved");
        Ok(render(&row, Some(&snapshot)))
    }

    async fn confirm(
        &self,
        ctx: &RequestContext,
        req: pb::ConfirmAttachmentRequest,
    ) -> Result<pb::Attachment, ApiError> {
        let kind = payment_kind(&req.payment)?;
        let saga = saga_id(&req.saga_id)?;
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let snapshot = lock_payment(&mut tx, state, ctx, &req.payment, kind).await?;
        let mut row =
            store::find_by_saga(&mut tx, ctx.scope(), saga, &req.payment).await?.ok_or_else(|| {
                ApiError::new(
                    Code::NotFound,
                    ErrorReason::PaymentNotAttached,
                    format!("Saga {saga} holds no attachment of {}.", req.payment),
                )
            })?;
        let current = row.status().ok_or_else(|| {
            ApiError::internal(
                "Unknown attachment status",
                &AttachmentError::Released { saga_id: saga.to_owned() },
            )
        })?;
        let next = attachment::confirm(current, saga)?;
        if next != current {
            row.updated = now_unix();
            store::set_status(&mut tx, ctx.scope(), &row.id, next, row.updated).await?;
            row.status = next.as_str().to_owned();
        }
        settle_platform::faults::hit("payments.confirm.before_commit").await;
        tx.commit().await?;
        settle_platform::faults::hit("payments.confirm.after_commit").await;
        Ok(render(&row, Some(&snapshot)))
    }

    async fn release(
        &self,
        ctx: &RequestContext,
        req: pb::ReleaseAttachmentRequest,
    ) -> Result<pb::Attachment, ApiError> {
        let kind = payment_kind(&req.payment)?;
        let saga = saga_id(&req.saga_id)?;
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let snapshot = lock_payment(&mut tx, state, ctx, &req.payment, kind).await?;
        let now = now_unix();
        let row = match store::find_by_saga(&mut tx, ctx.scope(), saga, &req.payment).await? {
            Some(mut row) => {
                if row.status() != Some(AttachmentStatus::Released) {
                    store::set_status(&mut tx, ctx.scope(), &row.id, AttachmentStatus::Released, now).await?;
                    row.status = AttachmentStatus::Released.as_str().to_owned();
                    row.updated = now;
                }
                row
            }
            None => {
                // The saga's reserve has not run (or failed): leave a released placeholder so a late
                // reserve of this saga finds it and reserves nothing.
                let row = AttachmentRow {
                    id: IdPrefix::Attachment.generate(),
                    payment: req.payment.clone(),
                    payment_type: kind.as_str().to_owned(),
                    invoice: String::new(),
                    saga_id: saga.to_owned(),
                    status: AttachmentStatus::Released.as_str().to_owned(),
                    customer: String::new(),
                    currency: String::new(),
                    created: now,
                    updated: now,
                };
                store::insert(&mut tx, ctx.scope(), &row).await?;
                row
            }
        };
        settle_platform::faults::hit("payments.release.before_commit").await;
        tx.commit().await?;
        settle_platform::faults::hit("payments.release.after_commit").await;
        tracing::debug!(payment = %row.payment, saga_id = %row.saga_id, "payment released");
        Ok(render(&row, Some(&snapshot)))
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        req: pb::GetAttachmentRequest,
    ) -> Result<pb::Attachment, ApiError> {
        let kind = payment_kind(&req.payment)?;
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let snapshot = lock_payment(&mut tx, state, ctx, &req.payment, kind).await?;
        let row = store::find_active(&mut *tx, ctx.scope(), &req.payment).await?;
        tx.commit().await?;
        let row = row.ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                ErrorReason::PaymentNotAttached,
                format!("{} is not attached to an invoice.", req.payment),
            )
        })?;
        Ok(render(&row, Some(&snapshot)))
    }
}

impl From<AttachmentError> for ApiError {
    fn from(error: AttachmentError) -> Self {
        let message = error.to_string();
        match error {
            AttachmentError::CustomerMismatch { .. } | AttachmentError::NoCustomer { .. } => {
                ApiError::failed_precondition(ErrorReason::CustomerMismatch, message.clone())
                    .with_violation("customer", message)
            }
            AttachmentError::CurrencyMismatch { .. } => {
                ApiError::failed_precondition(ErrorReason::CurrencyMismatch, message.clone())
                    .with_violation("currency", message)
            }
            AttachmentError::CannotCount { .. } => {
                ApiError::failed_precondition(ErrorReason::PaymentNotCountable, message.clone())
                    .with_violation("payment", message)
            }
            AttachmentError::AlreadyAttached { .. } => {
                ApiError::failed_precondition(ErrorReason::PaymentAlreadyAttached, message.clone())
                    .with_violation("payment", message)
            }
            AttachmentError::Released { .. } => {
                ApiError::failed_precondition(ErrorReason::PaymentNotAttached, message)
            }
        }
    }
}

#[tonic::async_trait]
impl PaymentAttachmentService for AttachmentsApi {
    async fn reserve_attachment(
        &self,
        request: Request<pb::ReserveAttachmentRequest>,
    ) -> Result<Response<pb::Attachment>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.reserve(&ctx, request.into_inner()).await?))
    }

    async fn confirm_attachment(
        &self,
        request: Request<pb::ConfirmAttachmentRequest>,
    ) -> Result<Response<pb::Attachment>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.confirm(&ctx, request.into_inner()).await?))
    }

    async fn release_attachment(
        &self,
        request: Request<pb::ReleaseAttachmentRequest>,
    ) -> Result<Response<pb::Attachment>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.release(&ctx, request.into_inner()).await?))
    }

    async fn get_attachment(
        &self,
        request: Request<pb::GetAttachmentRequest>,
    ) -> Result<Response<pb::Attachment>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }
}
