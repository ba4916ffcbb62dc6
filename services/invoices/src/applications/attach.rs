//! The attach saga (design: "Attach"): reserve the payment in payments, apply it to the invoice
//! under the invoice's row lock, confirm the reservation. If the invoice refuses it at apply time,
//! the reservation is released. The [`Leg`] steps are shared with the reapply saga.
//!
//! ```text
//! reserve ──▶ apply ──▶ confirm ──▶ done
//!   │refused    │refused     └─(payment succeeded meanwhile)─▶ sync ──▶ done
//!   ▼           ▼
//! failed     release ──▶ failed (with the invoice's reason)
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_money::Amount;
use settle_platform::time::now_unix;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as payments_pb;
use settle_saga::store as saga_store;
use settle_saga::{Ending, Fence, Saga, SagaKind, SagaState, StepFailure, Transition};

use super::effects::{self, PaymentFacts};
use super::{Context, PaymentKind, StoredRefusal, db_retry, decode, encode, internal_failure, origin};
use crate::peers::{is_definitive, retry};
use crate::store::invoice_credits;
use crate::store::{invoice_payments, invoices};

/// What payments told us about the payment when it reserved or confirmed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    pub customer: String,
    pub currency: String,
    pub amount: i64,
    pub succeeded: bool,
}

/// Applying one payment to one invoice: the part of a saga that attach and reapply share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub invoice: String,
    /// The invoice payment this leg creates (its id is chosen when the saga is recorded, so a
    /// repeated step cannot create two).
    pub invoice_payment: String,
    /// The invoice's customer and currency, checked by payments at reservation.
    pub customer: String,
    pub currency: String,
    pub is_default: bool,
    #[serde(default)]
    pub reserved: Option<Reserved>,
}

/// The attach saga's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachData {
    pub payment: String,
    pub kind: PaymentKind,
    pub leg: Leg,
    #[serde(default)]
    pub refusal: Option<StoredRefusal>,
}

fn reserved_from(attachment: &payments_pb::Attachment) -> Reserved {
    Reserved {
        customer: attachment.customer.clone(),
        currency: attachment.currency.clone(),
        amount: attachment.amount,
        succeeded: attachment.payment_status == payments_pb::PaymentOutcome::Succeeded as i32,
    }
}

/// Remote: reserves the payment for the leg's invoice under `key` (the saga id payments keys the
/// attachment by). `Ok(Err(_))` is payments' definitive refusal.
pub async fn reserve(
    ctx: &Context,
    saga: &Saga,
    key: &str,
    payment: &str,
    leg: &Leg,
) -> Result<Result<Reserved, StoredRefusal>, StepFailure> {
    settle_platform::faults::hit("invoices.attach.before_reserve").await;
    let request = payments_pb::ReserveAttachmentRequest {
        payment: payment.to_owned(),
        invoice: leg.invoice.clone(),
        customer: leg.customer.clone(),
        currency: leg.currency.clone(),
        saga_id: key.to_owned(),
    };
    let mut client = ctx.payments.attachments.clone();
    match client.reserve_attachment(ctx.payments.request(&saga.scope, request)).await {
        Ok(response) => {
            settle_platform::faults::hit("invoices.attach.after_reserve").await;
            let attachment = response.into_inner();
            if attachment.status == payments_pb::AttachmentStatus::Released as i32 {
                // Only this saga's own release can have come first; nothing is reserved.
                return Ok(Err(StoredRefusal {
                    code: tonic::Code::FailedPrecondition as i32,
                    reason: "payment_not_attached".to_owned(),
                    message: format!("{payment} was released before it could be applied."),
                }));
            }
            Ok(Ok(reserved_from(&attachment)))
        }
        Err(status) if is_definitive(&status) => Ok(Err(StoredRefusal::from_status(&status))),
        Err(status) => Err(retry("ReserveAttachment", &status)),
    }
}

/// Local: under the invoice's row lock, checks the guards again and applies the payment; commits
/// the invoice payment, the invoice's new amounts, their events and the saga's move to `applied` (or,
/// refused, to `refused`) in one transaction.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    key: &str,
    payment: &str,
    kind: PaymentKind,
    leg: &Leg,
    applied: (&'static str, SagaState, Vec<u8>),
    refused: impl FnOnce(StoredRefusal) -> (&'static str, SagaState, Vec<u8>),
) -> Result<Transition, StepFailure> {
    settle_platform::faults::hit("invoices.attach.before_apply").await;
    let Some(reserved) = leg.reserved.clone() else {
        return Err(StepFailure::Retry("apply before reserve".into()));
    };
    let backend = ctx.db.backend();
    let mut tx = ctx.db.begin().await.map_err(db_retry)?;
    let Some(mut doc) =
        invoices::find_for_update(&mut tx, backend, &saga.scope, &leg.invoice).await.map_err(db_retry)?
    else {
        return Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
            "invoice {} disappeared",
            leg.invoice
        )))));
    };
    let facts = PaymentFacts {
        customer: reserved.customer.clone(),
        currency: reserved.currency.clone(),
        amount: Amount::new(reserved.amount),
        succeeded: reserved.succeeded,
    };
    if let Err(refusal) = effects::guard(&doc, &facts) {
        let stored = StoredRefusal::from_refusal(&refusal);
        let (step, state, data) = refused(stored);
        saga_store::advance(&mut tx, fence, step, &data, state, None).await?;
        tx.commit().await.map_err(db_retry)?;
        return Ok(Transition::Committed { step, data, state, result: None });
    }
    // Credit notes being issued hold their pre-payment parts of what remains unpaid (read under the
    // same lock, which every credit-note step takes too): the payment may only take the rest.
    let reserved_credits =
        invoice_credits::reserved_pre_payment(&mut *tx, &saga.scope, &leg.invoice).await.map_err(db_retry)?;
    if let Err(refusal) = effects::guard_reserved_credits(&doc, &facts, reserved_credits) {
        let stored = StoredRefusal::from_refusal(&refusal);
        let (step, state, data) = refused(stored);
        saga_store::advance(&mut tx, fence, step, &data, state, None).await?;
        tx.commit().await.map_err(db_retry)?;
        return Ok(Transition::Committed { step, data, state, result: None });
    }
    let now = now_unix();
    let invoice_payment = pb::InvoicePayment {
        amount_paid: None,
        amount_requested: reserved.amount,
        created: now,
        currency: doc.currency.clone(),
        id: leg.invoice_payment.clone(),
        invoice: doc.id.clone(),
        is_default: leg.is_default,
        livemode: saga.scope.livemode(),
        object: "invoice_payment".to_owned(),
        payment: Some(pb::InvoicePaymentAssociatedPayment {
            charge: None,
            payment_intent: (kind == PaymentKind::PaymentIntent).then(|| payment.to_owned()),
            payment_record: (kind == PaymentKind::PaymentRecord).then(|| payment.to_owned()),
            r#type: match kind {
                PaymentKind::PaymentIntent => pb::InvoicePaymentPaymentType::PaymentIntent as i32,
                PaymentKind::PaymentRecord => pb::InvoicePaymentPaymentType::PaymentRecord as i32,
            },
        }),
        status: pb::InvoicePaymentStatus::Open as i32,
        status_transitions: Some(Default::default()),
    };
    let (invoice_payment, effects) = match effects::apply(&mut doc, invoice_payment, &facts, now) {
        Ok(applied) => applied,
        Err(error) => return Ok(Transition::Finished(Ending::Failed(internal_failure(error)))),
    };
    let origin = origin(saga);
    let wrote_events =
        effects::persist(&mut tx, backend, &origin, &doc, Some((&invoice_payment, Some(key))), &effects)
            .await
            .map_err(db_retry)?;
    let (step, state, data) = applied;
    let result = prost::Message::encode_to_vec(&doc);
    saga_store::advance(&mut tx, fence, step, &data, state, Some(&result)).await?;
    tx.commit().await.map_err(db_retry)?;
    if wrote_events {
        ctx.hub.committed();
    }
    settle_platform::faults::hit("invoices.attach.after_apply").await;
    Ok(Transition::Committed { step, data, state, result: Some(result) })
}

/// Remote: confirms the reservation. Returns the payment's state now (it may have succeeded since
/// the reservation), or `None` when the attachment was released meanwhile (a detach ran).
pub async fn confirm(
    ctx: &Context,
    saga: &Saga,
    key: &str,
    payment: &str,
) -> Result<Option<Reserved>, StepFailure> {
    settle_platform::faults::hit("invoices.attach.before_confirm").await;
    let request =
        payments_pb::ConfirmAttachmentRequest { payment: payment.to_owned(), saga_id: key.to_owned() };
    let mut client = ctx.payments.attachments.clone();
    match client.confirm_attachment(ctx.payments.request(&saga.scope, request)).await {
        Ok(response) => {
            settle_platform::faults::hit("invoices.attach.after_confirm").await;
            Ok(Some(reserved_from(&response.into_inner())))
        }
        Err(status) if status.code() == tonic::Code::FailedPrecondition => Ok(None),
        Err(status) => Err(retry("ConfirmAttachment", &status)),
    }
}

/// Local: if the payment succeeded after the invoice payment was created `open`, counts it now.
/// (Its `payment_intent.succeeded` event may have been handled before the invoice payment existed.)
pub async fn sync(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    leg: &Leg,
    current: &Reserved,
    next: (&'static str, SagaState, Vec<u8>),
) -> Result<Transition, StepFailure> {
    let backend = ctx.db.backend();
    let mut tx = ctx.db.begin().await.map_err(db_retry)?;
    let mut doc =
        invoices::find_for_update(&mut tx, backend, &saga.scope, &leg.invoice).await.map_err(db_retry)?;
    let mut invoice_payment =
        invoice_payments::find(&mut *tx, &saga.scope, &leg.invoice_payment).await.map_err(db_retry)?;
    let mut wrote_events = false;
    if let (Some(doc), Some(payment)) = (doc.as_mut(), invoice_payment.as_mut())
        && payment.status == pb::InvoicePaymentStatus::Open as i32
        && current.succeeded
    {
        let effects = match effects::mark_paid(doc, payment, Amount::new(current.amount), now_unix()) {
            Ok(effects) => effects,
            Err(error) => return Ok(Transition::Finished(Ending::Failed(internal_failure(error)))),
        };
        wrote_events =
            effects::persist(&mut tx, backend, &origin(saga), doc, Some((payment, None)), &effects)
                .await
                .map_err(db_retry)?;
    }
    let (step, state, data) = next;
    let result = doc.as_ref().map(prost::Message::encode_to_vec);
    saga_store::advance(&mut tx, fence, step, &data, state, result.as_deref()).await?;
    tx.commit().await.map_err(db_retry)?;
    if wrote_events {
        ctx.hub.committed();
    }
    Ok(Transition::Committed { step, data, state, result })
}

/// Remote: releases the attachment saga `attach_saga` holds on the payment (idempotent; leaves a
/// placeholder if that saga never reserved it).
pub async fn release(
    ctx: &Context,
    saga: &Saga,
    payment: &str,
    attach_saga: &str,
) -> Result<(), StepFailure> {
    settle_platform::faults::hit("invoices.release.before_release").await;
    let request = payments_pb::ReleaseAttachmentRequest {
        payment: payment.to_owned(),
        saga_id: attach_saga.to_owned(),
    };
    let mut client = ctx.payments.attachments.clone();
    match client.release_attachment(ctx.payments.request(&saga.scope, request)).await {
        Ok(_) => {
            settle_platform::faults::hit("invoices.release.after_release").await;
            Ok(())
        }
        // A release must happen: every failure, even a refusal, is retried until it goes through.
        Err(status) => Err(retry("ReleaseAttachment", &status)),
    }
}

/// The attach saga kind.
pub struct AttachSaga {
    pub ctx: Arc<Context>,
}

pub const KIND: &str = "attach_payment";

#[tonic::async_trait]
impl SagaKind for AttachSaga {
    fn name(&self) -> &'static str {
        KIND
    }

    async fn step(&self, saga: &Saga, fence: &Fence) -> Result<Transition, StepFailure> {
        let ctx = &self.ctx;
        let mut data: AttachData = decode(saga)?;
        match saga.step.as_str() {
            "reserve" => match reserve(ctx, saga, &saga.id, &data.payment, &data.leg).await? {
                Ok(reserved) => {
                    data.leg.reserved = Some(reserved);
                    Ok(Transition::Next { step: "apply", data: encode(&data), state: SagaState::Running })
                }
                Err(refusal) => Ok(Transition::Finished(Ending::Failed(refusal.failure()))),
            },
            "apply" => {
                let applied = ("confirm", SagaState::Running, encode(&data));
                let refused_data = data.clone();
                apply(
                    ctx,
                    saga,
                    fence,
                    &saga.id,
                    &data.payment,
                    data.kind,
                    &data.leg,
                    applied,
                    move |refusal| {
                        let mut data = refused_data;
                        data.refusal = Some(refusal);
                        ("release", SagaState::Compensating, encode(&data))
                    },
                )
                .await
            }
            "confirm" => match confirm(ctx, saga, &saga.id, &data.payment).await? {
                Some(current)
                    if current.succeeded && !data.leg.reserved.as_ref().is_some_and(|r| r.succeeded) =>
                {
                    data.leg.reserved = Some(current);
                    Ok(Transition::Next { step: "sync", data: encode(&data), state: SagaState::Running })
                }
                _ => Ok(Transition::Finished(Ending::Succeeded)),
            },
            "sync" => {
                let Some(current) = data.leg.reserved.clone() else {
                    return Ok(Transition::Finished(Ending::Succeeded));
                };
                sync(ctx, saga, fence, &data.leg, &current, ("done", SagaState::Running, encode(&data))).await
            }
            "done" => Ok(Transition::Finished(Ending::Succeeded)),
            "release" => {
                release(ctx, saga, &data.payment, &saga.id).await?;
                let failure = data
                    .refusal
                    .as_ref()
                    .map_or_else(|| internal_failure("compensated without a reason"), StoredRefusal::failure);
                Ok(Transition::Finished(Ending::Failed(failure)))
            }
            other => Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
                "unknown attach step {other}"
            ))))),
        }
    }
}
