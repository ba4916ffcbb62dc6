//! The void saga (kind `void_credit_note`). The request checks the note can be voided (issued, no
//! refund that moved money, no other void running) and marks it as being voided in the transaction
//! that records the saga; then:
//!
//! ```text
//! reverse ──▶ void (local: status void, `credit_note.voided`) ──▶ done
//!   │refused (the balance no longer holds the credit, …)
//!   ▼
//! unmark (local: no longer being voided) ──▶ failed
//! ```
//!
//! Invoices reverses exactly what issuing applied: the pre-payment part returns to the invoice's
//! `amount_remaining` (a paid invoice reopens) and the balance credit is taken back.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_platform::faults;
use settle_platform::outbox;
use settle_platform::time::now_unix;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::creditnotes::v1 as pb;
use settle_proto::settle::invoices::v1 as inv;
use settle_saga::store as saga_store;
use settle_saga::{Ending, Fence, Saga, SagaKind, SagaState, StepFailure, Transition};
use tonic::Code;

use super::{Context, StoredRefusal, db_retry, decode, encode, internal_failure, origin, record};
use crate::domain::note::NoteStatus;
use crate::peers::{is_definitive, reason_of, retry};
use crate::store::credit_notes as store;

pub const KIND: &str = "void_credit_note";

/// The void saga's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidData {
    pub credit_note: String,
    pub invoice: String,
    #[serde(default)]
    pub refusal: Option<StoredRefusal>,
}

/// How the ledger's refusal reaches the client: a balance that no longer holds the credit is the
/// note being not voidable, said plainly.
fn refusal_of(status: &tonic::Status, data: &VoidData) -> StoredRefusal {
    match reason_of(status).as_str() {
        "balance_insufficient" => StoredRefusal::new(
            Code::FailedPrecondition,
            ErrorReason::CreditNoteNotVoidable,
            format!(
                "Credit note {} cannot be voided: the customer's balance no longer holds the credit it gave (it was applied to a later invoice). {}",
                data.credit_note,
                status.message()
            ),
        ),
        "credit_note_not_voidable" => StoredRefusal::new(
            Code::FailedPrecondition,
            ErrorReason::CreditNoteNotVoidable,
            format!("Credit note {} cannot be voided: {}", data.credit_note, status.message()),
        ),
        _ => StoredRefusal::from_status(status),
    }
}

/// Remote: invoices reverses the note's applied credit.
async fn reverse(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    mut data: VoidData,
) -> Result<Transition, StepFailure> {
    faults::hit("creditnotes.void.before_reverse").await;
    let request =
        inv::ReverseInvoiceCreditRequest { saga_id: saga.id.clone(), credit_note: data.credit_note.clone() };
    let invoices = &ctx.peers.invoices;
    match invoices.ledger.clone().reverse_invoice_credit(invoices.request(&saga.scope, request)).await {
        Ok(_) => {
            faults::hit("creditnotes.void.after_reverse").await;
            Ok(Transition::Next { step: "void", data: encode(&data), state: SagaState::Running })
        }
        Err(status) if is_definitive(&status) => {
            data.refusal = Some(refusal_of(&status, &data));
            record(&ctx.db, fence, "unmark", encode(&data), SagaState::Compensating).await
        }
        Err(status) => Err(retry("ReverseInvoiceCredit", &status)),
    }
}

/// Local: the note is void, with `credit_note.voided`, in the transaction that ends the saga.
async fn void(ctx: &Context, saga: &Saga, fence: &Fence, data: &VoidData) -> Result<Transition, StepFailure> {
    faults::hit("creditnotes.void.before_void").await;
    let backend = ctx.db.backend();
    let mut tx = ctx.db.begin().await.map_err(db_retry)?;
    let Some(stored) =
        store::find_for_update(&mut tx, backend, &saga.scope, &data.credit_note).await.map_err(db_retry)?
    else {
        return Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
            "credit note {} disappeared",
            data.credit_note
        )))));
    };
    if stored.status != NoteStatus::Issued || stored.void_saga_id.as_deref() != Some(saga.id.as_str()) {
        return Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
            "credit note {} is not being voided by this saga",
            data.credit_note
        )))));
    }
    let mut doc = stored.document.clone();
    doc.status = pb::CreditNoteStatus::Void as i32;
    doc.voided_at = Some(now_unix());
    let result = prost::Message::encode_to_vec(&doc);
    saga_store::advance(&mut tx, fence, "done", &saga.data, SagaState::Running, Some(&result)).await?;
    store::mark_void(&mut tx, &saga.scope, &stored, &doc).await.map_err(db_retry)?;
    outbox::append(&mut tx, backend, &origin(saga), "credit_note.voided", &doc.id, &doc, None)
        .await
        .map_err(db_retry)?;
    tx.commit().await.map_err(db_retry)?;
    ctx.hub.committed();
    faults::hit("creditnotes.void.after_void").await;
    Ok(Transition::Committed {
        step: "done",
        data: saga.data.clone(),
        state: SagaState::Running,
        result: Some(result),
    })
}

/// Local (compensation): the note is no longer being voided.
async fn unmark(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    data: &VoidData,
) -> Result<Transition, StepFailure> {
    faults::hit("creditnotes.void.before_unmark").await;
    let backend = ctx.db.backend();
    let mut tx = ctx.db.begin().await.map_err(db_retry)?;
    saga_store::advance(&mut tx, fence, "failed", &saga.data, SagaState::Compensating, None).await?;
    if let Some(stored) =
        store::find_for_update(&mut tx, backend, &saga.scope, &data.credit_note).await.map_err(db_retry)?
        && stored.void_saga_id.as_deref() == Some(saga.id.as_str())
    {
        store::set_voiding(&mut tx, &saga.scope, &data.credit_note, None).await.map_err(db_retry)?;
    }
    tx.commit().await.map_err(db_retry)?;
    Ok(Transition::Committed {
        step: "failed",
        data: saga.data.clone(),
        state: SagaState::Compensating,
        result: None,
    })
}

/// The void saga kind.
pub struct VoidSaga {
    pub ctx: Arc<Context>,
}

#[tonic::async_trait]
impl SagaKind for VoidSaga {
    fn name(&self) -> &'static str {
        KIND
    }

    async fn step(&self, saga: &Saga, fence: &Fence) -> Result<Transition, StepFailure> {
        let ctx = &self.ctx;
        let data: VoidData = decode(saga)?;
        match saga.step.as_str() {
            "reverse" => reverse(ctx, saga, fence, data).await,
            "void" => void(ctx, saga, fence, &data).await,
            "done" => Ok(Transition::Finished(Ending::Succeeded)),
            "unmark" => unmark(ctx, saga, fence, &data).await,
            "failed" => {
                let failure = data
                    .refusal
                    .as_ref()
                    .map_or_else(|| internal_failure("compensated without a reason"), StoredRefusal::failure);
                Ok(Transition::Finished(Ending::Failed(failure)))
            }
            other => Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
                "unknown void step {other}"
            ))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn refused(reason: &str) -> tonic::Status {
        let details = ErrorDetails::with_error_info(reason, "settle", std::collections::HashMap::new());
        tonic::Status::with_error_details(Code::FailedPrecondition, "no", details)
    }

    #[test]
    fn an_insufficient_balance_means_the_note_is_not_voidable() {
        let data = VoidData { credit_note: "cn_1".into(), invoice: "in_1".into(), refusal: None };
        let refusal = refusal_of(&refused("balance_insufficient"), &data);
        assert_eq!(refusal.reason, "credit_note_not_voidable");
        assert!(refusal.message.contains("balance"));
        assert_eq!(refusal_of(&refused("state_unsupported"), &data).reason, "state_unsupported");
    }
}
