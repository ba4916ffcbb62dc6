//! The issue saga (kind `issue_credit_note`; design: "Issue a credit note"). The request records
//! the saga together with the pending note (one transaction); then:
//!
//! ```text
//! reserve ──▶ claim ──▶ apply ──▶ issue (local) ──▶ done
//!   │refused   │refused   │refused (and no refund was created)
//!   ▼          ▼          ▼
//! abandon ◀── release_credit ◀── release_claims        (each refusal recorded first)
//!   (local: the note fails) ──▶ failed
//! ```
//!
//! `claim` is skipped when the note has no refunds. A refund that `claim` created cannot be undone
//! (settle's refunds complete at once), so once one exists the saga only goes forward: a refused
//! `apply` is then retried rather than compensated (and shows as stuck in `SagaService`). Transient
//! failures (UNAVAILABLE, DEADLINE_EXCEEDED, …) are retried, inline and then by recovery.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_platform::faults;
use settle_platform::outbox;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::creditnotes::v1 as pb;
use settle_proto::settle::invoices::v1 as inv;
use settle_proto::settle::payments::v1 as pay;
use settle_saga::store as saga_store;
use settle_saga::{Ending, Fence, Saga, SagaKind, SagaState, StepFailure, Transition};
use tonic::Code;

use super::{Context, StoredRefusal, db_retry, decode, encode, internal_failure, origin, record};
use crate::domain::note::{self, NoteStatus};
use crate::domain::totals::{NoteType, Split};
use crate::draft::NewRefund;
use crate::model;
use crate::peers::{is_definitive, retry};
use crate::store::credit_notes as store;

pub const KIND: &str = "issue_credit_note";

/// One existing refund the note links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// `re_…`, for a Refund.
    #[serde(default)]
    pub refund: Option<String>,
    /// `pr_…` and the refund group, for a payment record's refund.
    #[serde(default)]
    pub payment_record: Option<String>,
    #[serde(default)]
    pub refund_group: Option<String>,
    pub amount: i64,
}

/// What the invoices ledger answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub pre_payment_amount: i64,
    pub post_payment_amount: i64,
    pub credit_note_index: i32,
    pub invoice_number: Option<String>,
    pub customer_balance_transaction: Option<String>,
}

/// A refund the claim step linked or created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    pub claim: Claim,
    pub created_by_claim: bool,
}

/// The issue saga's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueData {
    pub credit_note: String,
    pub invoice: String,
    pub currency: String,
    pub total: i64,
    pub credit_amount: i64,
    /// The new refund plus the linked ones.
    pub refund_amount: i64,
    pub out_of_band_amount: i64,
    pub claims: Vec<Claim>,
    #[serde(default)]
    pub new_refund: Option<NewRefund>,
    /// The note's `reason`, for the new refund's.
    #[serde(default)]
    pub reason: Option<i32>,
    /// Fingerprint of the create request: a retry with the same idempotency key must match it.
    pub fingerprint: String,
    #[serde(default)]
    pub ledger: Option<Ledger>,
    #[serde(default)]
    pub claimed: Option<Vec<Claimed>>,
    #[serde(default)]
    pub refusal: Option<StoredRefusal>,
}

impl IssueData {
    fn has_refunds(&self) -> bool {
        !self.claims.is_empty() || self.new_refund.is_some()
    }

    fn created_a_refund(&self) -> bool {
        self.claimed.as_ref().is_some_and(|c| c.iter().any(|c| c.created_by_claim))
    }
}

fn ledger_of(credit: &inv::InvoiceCredit) -> Ledger {
    Ledger {
        pre_payment_amount: credit.pre_payment_amount,
        post_payment_amount: credit.post_payment_amount,
        credit_note_index: credit.credit_note_index,
        invoice_number: credit.invoice_number.clone(),
        customer_balance_transaction: credit.customer_balance_transaction.clone(),
    }
}

fn refund_reason(reason: Option<i32>) -> Option<i32> {
    let reason = pb::CreditNoteReason::try_from(reason?).ok()?;
    Some(match reason {
        pb::CreditNoteReason::Unspecified => return None,
        pb::CreditNoteReason::Duplicate => pay::RefundReason::Duplicate,
        pb::CreditNoteReason::Fraudulent => pay::RefundReason::Fraudulent,
        pb::CreditNoteReason::OrderChange | pb::CreditNoteReason::ProductUnsatisfactory => {
            pay::RefundReason::RequestedByCustomer
        }
    } as i32)
}

/// Enters compensation at `step`, recording the refusal first.
async fn refuse(
    ctx: &Context,
    fence: &Fence,
    mut data: IssueData,
    refusal: StoredRefusal,
    step: &'static str,
) -> Result<Transition, StepFailure> {
    tracing::info!(credit_note = %data.credit_note, reason = %refusal.reason, "credit note refused; compensating");
    data.refusal = Some(refusal);
    record(&ctx.db, fence, step, encode(&data), SagaState::Compensating).await
}

/// Remote: reserves the credit on the invoice (under the invoice's row lock there).
async fn reserve(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    mut data: IssueData,
) -> Result<Transition, StepFailure> {
    faults::hit("creditnotes.issue.before_reserve").await;
    let request = inv::ReserveInvoiceCreditRequest {
        saga_id: saga.id.clone(),
        invoice: data.invoice.clone(),
        credit_note: data.credit_note.clone(),
        amount: data.total,
        credit_amount: data.credit_amount,
        refund_amount: data.refund_amount,
        out_of_band_amount: data.out_of_band_amount,
    };
    let invoices = &ctx.peers.invoices;
    match invoices.ledger.clone().reserve_invoice_credit(invoices.request(&saga.scope, request)).await {
        Ok(response) => {
            faults::hit("creditnotes.issue.after_reserve").await;
            let credit = response.into_inner();
            if credit.status != inv::InvoiceCreditStatus::Reserved as i32
                && credit.status != inv::InvoiceCreditStatus::Applied as i32
            {
                let refusal = StoredRefusal::new(
                    Code::FailedPrecondition,
                    ErrorReason::StateUnsupported,
                    format!("The credit of {} was released before it could be applied.", data.credit_note),
                );
                return refuse(ctx, fence, data, refusal, "abandon").await;
            }
            data.ledger = Some(ledger_of(&credit));
            let next = if data.has_refunds() { "claim" } else { "apply" };
            Ok(Transition::Next { step: next, data: encode(&data), state: SagaState::Running })
        }
        // Nothing was reserved: only the note itself is left to abandon.
        Err(status) if is_definitive(&status) => {
            refuse(ctx, fence, data, StoredRefusal::from_status(&status), "abandon").await
        }
        Err(status) => Err(retry("ReserveInvoiceCredit", &status)),
    }
}

/// Remote: claims the linked refunds and creates the new one, all or nothing.
async fn claim(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    mut data: IssueData,
) -> Result<Transition, StepFailure> {
    faults::hit("creditnotes.issue.before_claim").await;
    let request = pay::ClaimRefundsRequest {
        saga_id: saga.id.clone(),
        credit_note: data.credit_note.clone(),
        invoice: data.invoice.clone(),
        currency: data.currency.clone(),
        claims: data
            .claims
            .iter()
            .map(|c| pay::RefundClaimParams {
                r#type: if c.refund.is_some() {
                    pay::RefundClaimType::Refund as i32
                } else {
                    pay::RefundClaimType::PaymentRecordRefund as i32
                },
                refund: c.refund.clone(),
                payment_record_refund: c.payment_record.as_ref().map(|record| {
                    pay::PaymentRecordRefundReference {
                        payment_record: record.clone(),
                        refund_group: c.refund_group.clone().unwrap_or_default(),
                    }
                }),
                amount_refunded: Some(c.amount),
            })
            .collect(),
        new_refund: data.new_refund.as_ref().map(|new| pay::NewRefundParams {
            payment: new.payment_intent.clone(),
            amount: new.amount,
            reason: refund_reason(data.reason),
            metadata: [("credit_note".to_owned(), data.credit_note.clone())].into(),
        }),
    };
    let payments = &ctx.peers.payments;
    match payments.claims.clone().claim_refunds(payments.request(&saga.scope, request)).await {
        Ok(response) => {
            faults::hit("creditnotes.issue.after_claim").await;
            let claims = response.into_inner();
            if claims.status != pay::RefundClaimsStatus::Claimed as i32 {
                let refusal = StoredRefusal::new(
                    Code::FailedPrecondition,
                    ErrorReason::StateUnsupported,
                    format!(
                        "The refunds of {} were released before they could be claimed.",
                        data.credit_note
                    ),
                );
                return refuse(ctx, fence, data, refusal, "release_credit").await;
            }
            data.claimed = Some(
                claims
                    .claims
                    .iter()
                    .map(|c| {
                        let record = c.payment_record_refund.as_ref();
                        Claimed {
                            claim: Claim {
                                refund: (c.r#type == pay::RefundClaimType::Refund as i32)
                                    .then(|| c.refund.clone()),
                                payment_record: record.map(|r| r.payment_record.clone()),
                                refund_group: record.map(|r| r.refund_group.clone()),
                                amount: c.amount_refunded,
                            },
                            created_by_claim: c.created_by_claim,
                        }
                    })
                    .collect(),
            );
            Ok(Transition::Next { step: "apply", data: encode(&data), state: SagaState::Running })
        }
        // Claims are all or nothing: nothing is claimed, and the release records a placeholder so
        // a late repeat of the claim claims nothing either.
        Err(status) if is_definitive(&status) => {
            refuse(ctx, fence, data, StoredRefusal::from_status(&status), "release_claims").await
        }
        Err(status) => Err(retry("ClaimRefunds", &status)),
    }
}

/// Remote: applies the reserved credit to the invoice (and the customer balance).
async fn apply(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    mut data: IssueData,
) -> Result<Transition, StepFailure> {
    faults::hit("creditnotes.issue.before_apply").await;
    let request = inv::ApplyInvoiceCreditRequest { saga_id: saga.id.clone() };
    let invoices = &ctx.peers.invoices;
    match invoices.ledger.clone().apply_invoice_credit(invoices.request(&saga.scope, request)).await {
        Ok(response) => {
            faults::hit("creditnotes.issue.after_apply").await;
            let credit = response.into_inner();
            data.ledger = Some(ledger_of(&credit));
            Ok(Transition::Next { step: "issue", data: encode(&data), state: SagaState::Running })
        }
        Err(status) if is_definitive(&status) && !data.created_a_refund() => {
            refuse(ctx, fence, data, StoredRefusal::from_status(&status), "release_claims").await
        }
        Err(status) => {
            if is_definitive(&status) {
                tracing::error!(saga_id = %saga.id, code = ?status.code(), message = status.message(),
                    "the invoice refused a credit whose refund already exists; retrying");
            }
            Err(retry("ApplyInvoiceCredit", &status))
        }
    }
}

/// Local: the note is issued — its number, the ledger's split, its refunds and balance transaction —
/// with `credit_note.created`, in the transaction that moves the saga to `done`.
async fn issue(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    data: &IssueData,
) -> Result<Transition, StepFailure> {
    faults::hit("creditnotes.issue.before_issue").await;
    let Some(ledger) = data.ledger.clone() else {
        return Err(StepFailure::Retry("issue before the credit was applied".into()));
    };
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
    if stored.status != NoteStatus::Pending {
        return Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
            "credit note {} is {}, not pending",
            data.credit_note,
            stored.status.as_str()
        )))));
    }
    let mut doc = stored.document;
    doc.number =
        note::number(ledger.invoice_number.as_deref(), &data.invoice, i64::from(ledger.credit_note_index));
    let pre = settle_money::Amount::new(ledger.pre_payment_amount);
    let post = settle_money::Amount::new(ledger.post_payment_amount);
    model::write_split(
        &mut doc,
        &Split { pre_payment: pre, post_payment: post, note_type: NoteType::of(pre, post) },
    );
    doc.customer_balance_transaction = ledger.customer_balance_transaction.clone();
    doc.status = pb::CreditNoteStatus::Issued as i32;
    let mut created = Vec::new();
    if let Some(claimed) = &data.claimed {
        doc.refunds = claimed.iter().map(|c| refund_entry(&c.claim)).collect();
        created = claimed.iter().filter(|c| c.created_by_claim).map(|c| refund_entry(&c.claim)).collect();
    }
    let result = prost::Message::encode_to_vec(&doc);
    // The fence first: a replica that lost the lease writes nothing.
    saga_store::advance(&mut tx, fence, "done", &saga.data, SagaState::Running, Some(&result)).await?;
    store::mark_issued(&mut tx, &saga.scope, &doc, &created, data.claims.len()).await.map_err(db_retry)?;
    outbox::append(&mut tx, backend, &origin(saga), "credit_note.created", &doc.id, &doc, None)
        .await
        .map_err(db_retry)?;
    tx.commit().await.map_err(db_retry)?;
    ctx.hub.committed();
    faults::hit("creditnotes.issue.after_issue").await;
    Ok(Transition::Committed {
        step: "done",
        data: saga.data.clone(),
        state: SagaState::Running,
        result: Some(result),
    })
}

/// A claimed refund as the note's `refunds[]` shows it.
fn refund_entry(claim: &Claim) -> pb::CreditNoteRefund {
    match (&claim.refund, &claim.payment_record) {
        (Some(refund), _) => pb::CreditNoteRefund {
            amount_refunded: claim.amount,
            payment_record_refund: None,
            refund: refund.clone(),
            r#type: Some(pb::CreditNoteRefundType::Refund as i32),
        },
        (None, record) => pb::CreditNoteRefund {
            amount_refunded: claim.amount,
            payment_record_refund: Some(pb::CreditNotePaymentRecordRefund {
                payment_record: record.clone().unwrap_or_default(),
                refund_group: claim.refund_group.clone().unwrap_or_default(),
            }),
            refund: String::new(),
            r#type: Some(pb::CreditNoteRefundType::PaymentRecordRefund as i32),
        },
    }
}

/// Remote (compensation): gives the claimed amounts back (a created refund stays, unclaimed).
async fn release_claims(ctx: &Context, saga: &Saga) -> Result<(), StepFailure> {
    faults::hit("creditnotes.issue.before_release_claims").await;
    let request = pay::ReleaseRefundClaimsRequest { saga_id: saga.id.clone() };
    let payments = &ctx.peers.payments;
    match payments.claims.clone().release_refund_claims(payments.request(&saga.scope, request)).await {
        Ok(_) => {
            faults::hit("creditnotes.issue.after_release_claims").await;
            Ok(())
        }
        // A release must happen: every failure, even a refusal, is retried until it goes through.
        Err(status) => Err(retry("ReleaseRefundClaims", &status)),
    }
}

/// Remote (compensation): the reserved credit stops counting on the invoice.
async fn release_credit(ctx: &Context, saga: &Saga) -> Result<(), StepFailure> {
    faults::hit("creditnotes.issue.before_release_credit").await;
    let request = inv::ReleaseInvoiceCreditRequest { saga_id: saga.id.clone() };
    let invoices = &ctx.peers.invoices;
    match invoices.ledger.clone().release_invoice_credit(invoices.request(&saga.scope, request)).await {
        Ok(_) => {
            faults::hit("creditnotes.issue.after_release_credit").await;
            Ok(())
        }
        // Nothing was reserved under this saga.
        Err(status) if status.code() == Code::NotFound => Ok(()),
        Err(status) => Err(retry("ReleaseInvoiceCredit", &status)),
    }
}

/// Local (compensation): the pending note fails and stops counting toward the invoice.
async fn abandon(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    data: &IssueData,
) -> Result<Transition, StepFailure> {
    faults::hit("creditnotes.issue.before_abandon").await;
    let backend = ctx.db.backend();
    let mut tx = ctx.db.begin().await.map_err(db_retry)?;
    saga_store::advance(&mut tx, fence, "failed", &saga.data, SagaState::Compensating, None).await?;
    if let Some(stored) =
        store::find_for_update(&mut tx, backend, &saga.scope, &data.credit_note).await.map_err(db_retry)?
    {
        store::mark_failed(&mut tx, &saga.scope, &stored).await.map_err(db_retry)?;
    }
    tx.commit().await.map_err(db_retry)?;
    Ok(Transition::Committed {
        step: "failed",
        data: saga.data.clone(),
        state: SagaState::Compensating,
        result: None,
    })
}

/// The issue saga kind.
pub struct IssueSaga {
    pub ctx: Arc<Context>,
}

#[tonic::async_trait]
impl SagaKind for IssueSaga {
    fn name(&self) -> &'static str {
        KIND
    }

    async fn step(&self, saga: &Saga, fence: &Fence) -> Result<Transition, StepFailure> {
        let ctx = &self.ctx;
        let data: IssueData = decode(saga)?;
        match saga.step.as_str() {
            "reserve" => reserve(ctx, saga, fence, data).await,
            "claim" => claim(ctx, saga, fence, data).await,
            "apply" => apply(ctx, saga, fence, data).await,
            "issue" => issue(ctx, saga, fence, &data).await,
            "done" => Ok(Transition::Finished(Ending::Succeeded)),
            "release_claims" => {
                release_claims(ctx, saga).await?;
                Ok(Transition::Next {
                    step: "release_credit",
                    data: saga.data.clone(),
                    state: SagaState::Compensating,
                })
            }
            "release_credit" => {
                release_credit(ctx, saga).await?;
                Ok(Transition::Next {
                    step: "abandon",
                    data: saga.data.clone(),
                    state: SagaState::Compensating,
                })
            }
            "abandon" => abandon(ctx, saga, fence, &data).await,
            "failed" => {
                let failure = data
                    .refusal
                    .as_ref()
                    .map_or_else(|| internal_failure("compensated without a reason"), StoredRefusal::failure);
                Ok(Transition::Finished(Ending::Failed(failure)))
            }
            other => Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
                "unknown issue step {other}"
            ))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_reasons_follow_the_notes() {
        assert_eq!(
            refund_reason(Some(pb::CreditNoteReason::Duplicate as i32)),
            Some(pay::RefundReason::Duplicate as i32)
        );
        assert_eq!(
            refund_reason(Some(pb::CreditNoteReason::OrderChange as i32)),
            Some(pay::RefundReason::RequestedByCustomer as i32)
        );
        assert_eq!(refund_reason(None), None);
    }

    #[test]
    fn claimed_refunds_render_as_the_notes_refunds() {
        let record = refund_entry(&Claim {
            refund: None,
            payment_record: Some("pr_1".into()),
            refund_group: Some("g".into()),
            amount: 5,
        });
        assert_eq!(record.r#type, Some(pb::CreditNoteRefundType::PaymentRecordRefund as i32));
        assert_eq!(record.refund, "");
        let refund = refund_entry(&Claim {
            refund: Some("re_1".into()),
            payment_record: None,
            refund_group: None,
            amount: 5,
        });
        assert_eq!((refund.refund.as_str(), refund.amount_refunded), ("re_1", 5));
    }
}
