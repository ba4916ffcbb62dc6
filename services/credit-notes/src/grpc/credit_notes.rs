//! `CreditNoteService`. Create and Void record their saga and drive it inline; a request with an
//! idempotency key derives its saga id from the key, so a retry finds the saga its first attempt
//! started and answers with its outcome. Preview and PreviewLines run Create's computation
//! ([`crate::draft`]) and change nothing.

use std::collections::BTreeMap;

use settle_money::Amount;
use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::db::is_unique_violation;
use settle_platform::idempotency::{self, Claim};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::{self, EventOrigin};
use settle_platform::pagination::{Cursor, PageRequest};
use settle_platform::time::now_unix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::creditnotes::v1 as pb;
use settle_proto::settle::creditnotes::v1::credit_note_service_server::CreditNoteService;
use settle_saga::store::{self as saga_store, KeyUse};
use settle_saga::{NewSaga, Outcome, Saga, SagaState, saga_id_for};
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Response, Status};

use super::AppState;
use super::params::NoteParams;
use crate::domain::error::CreditError;
use crate::domain::note::{VoidCheck, check_voidable};
use crate::draft::{self, Draft, Ids};
use crate::sagas::issue::{self, Claim as IssueClaim, IssueData};
use crate::sagas::void::{self, VoidData};
use crate::sagas::{decode, encode};
use crate::store::credit_notes::{self as store, ListFilter, NewNote, Recorded};

const CREATE: &str = "/settle.creditnotes.v1.CreditNoteService/CreateCreditNote";
const UPDATE: &str = "/settle.creditnotes.v1.CreditNoteService/UpdateCreditNote";

/// The handlers of `CreditNoteService`.
#[derive(Clone, Debug)]
pub struct CreditNotesApi {
    state: AppState,
}

impl CreditNotesApi {
    pub fn new(state: AppState) -> Self {
        CreditNotesApi { state }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::CreditNote, id, "id")
}

/// The fingerprint a retried create must match (the create parameters, as sent).
fn fingerprint(req: &pb::CreateCreditNoteRequest) -> String {
    let digest = Sha256::new()
        .chain_update(CREATE)
        .chain_update([0u8])
        .chain_update(prost::Message::encode_to_vec(req))
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Preview and PreviewLines requests carry the create parameters as fields 1–13 with the same
/// numbers and types, so they decode as a create request (the paging fields are dropped).
fn as_create<M: prost::Message>(request: &M) -> Result<pb::CreateCreditNoteRequest, ApiError> {
    <pb::CreateCreditNoteRequest as prost::Message>::decode(request.encode_to_vec().as_slice())
        .map_err(|e| ApiError::internal("A preview request could not be read", &e))
}

fn idempotency_mismatch() -> ApiError {
    ApiError::invalid_param(
        settle_platform::context::IDEMPOTENCY_HEADER,
        ErrorReason::IdempotencyError,
        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
    )
}

/// Answers with what a saga ended in (its stored result or its failure).
fn answer(saga: &Saga) -> Result<pb::CreditNote, ApiError> {
    match saga.state {
        SagaState::Failed => {
            let failure = saga.failure.clone().unwrap_or_else(|| crate::sagas::internal_failure("failed"));
            let reason =
                ErrorReason::from_str_name(&format!("ERROR_REASON_{}", failure.reason.to_ascii_uppercase()))
                    .unwrap_or(ErrorReason::StateUnsupported);
            Err(ApiError::new(failure.code, reason, failure.message))
        }
        _ => match saga.result.as_deref() {
            Some(bytes) => prost::Message::decode(bytes)
                .map_err(|e| ApiError::internal("A stored result could not be read", &e)),
            None => Err(ApiError::new(
                Code::Aborted,
                ErrorReason::SagaInProgress,
                format!(
                    "The operation ({}) is still in progress; retry with the same idempotency key to get its outcome.",
                    saga.id
                ),
            )),
        },
    }
}

/// What a drive left for the caller.
fn respond(outcome: Outcome) -> Result<pb::CreditNote, ApiError> {
    match outcome {
        Outcome::Succeeded(saga) | Outcome::Failed(saga) => answer(&saga),
        Outcome::Pending(saga) => match saga.result.as_deref() {
            Some(_) if saga.state == SagaState::Running => answer(&saga),
            _ => Err(ApiError::new(
                Code::Unavailable,
                ErrorReason::DependencyUnavailable,
                format!(
                    "The invoices or payments service did not answer; the operation ({}) will finish on its own. Retry with the same idempotency key to get its outcome.",
                    saga.id
                ),
            )),
        },
        Outcome::LostLease => Err(ApiError::new(
            Code::Aborted,
            ErrorReason::SagaInProgress,
            "The operation is being finished by another replica; retry with the same idempotency key.",
        )),
    }
}

fn recorded_twice(error: sqlx::Error) -> ApiError {
    if is_unique_violation(&error) {
        ApiError::new(
            Code::Aborted,
            ErrorReason::SagaInProgress,
            "A request with this idempotency key is in progress; retry it later.",
        )
    } else {
        error.into()
    }
}

/// The saga a previous attempt of this request (same idempotency key) started, if any. `same`
/// says whether it was started by the same request; another operation under the key is an
/// idempotency error.
async fn previous(
    state: &AppState,
    ctx: &RequestContext,
    saga_id: &str,
    kind: &str,
    same: impl FnOnce(&Saga) -> bool,
) -> Result<Option<Saga>, ApiError> {
    let Some(key) = &ctx.idempotency_key else {
        return Ok(None);
    };
    match saga_store::key_use(&state.db, ctx.scope(), saga_id, key).await? {
        KeyUse::Unused => Ok(None),
        KeyUse::Saga(saga) if saga.kind == kind && same(&saga) => Ok(Some(*saga)),
        KeyUse::Saga(_) | KeyUse::OtherMethod => Err(idempotency_mismatch()),
    }
}

impl CreditNotesApi {
    /// The note `params` would issue now, for a preview.
    async fn preview_draft(
        &self,
        ctx: &RequestContext,
        req: &pb::CreateCreditNoteRequest,
    ) -> Result<Draft, ApiError> {
        let params = NoteParams::parse(req)?;
        let scope = ctx.scope();
        let facts = draft::gather(&self.state.peers, scope, &params).await?;
        let mut conn = self.state.db.pool().acquire().await?;
        let credited = store::credited(&mut conn, scope, &params.invoice).await?;
        Ok(draft::compute(&params, &facts, &credited, &Ids::preview(scope, req), scope, now_unix())?)
    }

    async fn create(
        &self,
        ctx: &RequestContext,
        req: pb::CreateCreditNoteRequest,
    ) -> Result<pb::CreditNote, ApiError> {
        let params = NoteParams::parse(&req)?;
        let state = &self.state;
        let fingerprint = fingerprint(&req);
        let saga_id = saga_id_for(ctx.scope(), ctx.idempotency_key.as_deref());
        let same = |saga: &Saga| decode::<IssueData>(saga).is_ok_and(|d| d.fingerprint == fingerprint);
        if let Some(saga) = previous(state, ctx, &saga_id, issue::KIND, same).await? {
            return answer(&saga);
        }
        let scope = ctx.scope();
        let facts = draft::gather(&state.peers, scope, &params).await?;

        let (db, backend) = (&state.db, state.db.backend());
        let mut tx = db.begin().await?;
        // The invoice's notes are checked and recorded one at a time.
        store::lock_invoice(&mut tx, backend, scope, &params.invoice, Amount::new(facts.invoice.total))
            .await?;
        let credited = store::credited(&mut tx, scope, &params.invoice).await?;
        let draft = draft::compute(&params, &facts, &credited, &Ids::Fresh, scope, now_unix())?;
        let doc = &draft.document;
        let settlement = &draft.settlement;
        let new = NewNote {
            scope,
            document: doc,
            lines: &draft.lines,
            credit_amount: settlement.credit,
            refund_amount: settlement.new_refund,
            linked_refunds_amount: settlement.linked_refunds,
            issue_saga_id: &saga_id,
        };
        if store::insert_pending(&mut tx, &new).await? == Recorded::ExceedsInvoice {
            // The CHECK behind the computation's own check.
            return Err(CreditError::ExceedsInvoice {
                total: Amount::new(doc.total),
                already_credited: credited.total,
                invoice_total: Amount::new(facts.invoice.total),
                available: Amount::new(facts.invoice.total)
                    .checked_sub(credited.total)
                    .unwrap_or(Amount::ZERO),
            }
            .into());
        }
        let refunds = settlement.refunds().map_err(ApiError::from)?;
        let data = IssueData {
            credit_note: doc.id.clone(),
            invoice: doc.invoice.clone(),
            currency: doc.currency.clone(),
            total: doc.total,
            credit_amount: settlement.credit.get(),
            refund_amount: refunds.get(),
            out_of_band_amount: settlement.out_of_band.get(),
            claims: doc
                .refunds
                .iter()
                .map(|r| {
                    let record = r.payment_record_refund.as_ref();
                    IssueClaim {
                        refund: record.is_none().then(|| r.refund.clone()),
                        payment_record: record.map(|p| p.payment_record.clone()),
                        refund_group: record.map(|p| p.refund_group.clone()),
                        amount: r.amount_refunded,
                    }
                })
                .collect(),
            new_refund: draft.new_refund.clone(),
            reason: doc.reason,
            fingerprint,
            ledger: None,
            claimed: None,
            refusal: None,
        };
        let saga = NewSaga {
            id: saga_id,
            scope: scope.clone(),
            kind: issue::KIND,
            step: "reserve",
            data: encode(&data),
            subjects: BTreeMap::from([
                ("invoice".to_owned(), doc.invoice.clone()),
                ("credit_note".to_owned(), doc.id.clone()),
            ]),
            idempotency_key: ctx.idempotency_key.clone(),
            result: None,
        };
        let (saga, fence) =
            saga_store::insert(&mut tx, &saga, state.runner.holder(), state.runner.lease_until())
                .await
                .map_err(recorded_twice)?;
        tx.commit().await?;
        settle_platform::faults::hit("creditnotes.issue.after_record").await;
        respond(state.runner.drive(saga, fence).await)
    }

    async fn get(&self, ctx: &RequestContext, id: &str) -> Result<pb::CreditNote, ApiError> {
        if !IdPrefix::CreditNote.matches(id) {
            return Err(not_found(id));
        }
        match store::find(&self.state.db, ctx.scope(), id).await? {
            Some(note) if note.status.is_visible() => Ok(note.document),
            _ => Err(not_found(id)),
        }
    }

    async fn update(
        &self,
        ctx: &RequestContext,
        req: pb::UpdateCreditNoteRequest,
    ) -> Result<pb::CreditNote, ApiError> {
        if !IdPrefix::CreditNote.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        validate::max_len("memo", req.memo.as_deref(), 5000)?;
        validate::metadata("metadata", &req.metadata)?;
        let state = &self.state;
        let backend = state.db.backend();
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, backend, ctx, UPDATE, &req).await? {
            Claim::Replay(stored) => return Ok(stored),
            Claim::Fresh(pending) => pending,
        };
        let note = store::find_for_update(&mut tx, backend, ctx.scope(), &req.id)
            .await?
            .filter(|n| n.status.is_visible())
            .ok_or_else(|| not_found(&req.id))?;
        let before = note.document;
        let mut doc = before.clone();
        if let Some(memo) = &req.memo {
            doc.memo = (!memo.is_empty()).then(|| memo.clone());
        }
        validate::merge_metadata(&mut doc.metadata, &req.metadata);
        validate::metadata("metadata", &doc.metadata)?;
        let previous = settle_platform::proto_json::previous_attributes(&before, &doc);
        // Like Stripe, an update that changes nothing emits no event.
        if let Some(previous) = &previous {
            store::update_document(&mut tx, ctx.scope(), &doc).await?;
            outbox::append(
                &mut tx,
                backend,
                &EventOrigin::from(ctx),
                "credit_note.updated",
                &doc.id,
                &doc,
                Some(previous),
            )
            .await?;
        }
        pending.record(&mut tx, &doc).await?;
        tx.commit().await?;
        if previous.is_some() {
            state.hub.committed();
        }
        Ok(doc)
    }

    async fn void(
        &self,
        ctx: &RequestContext,
        req: pb::VoidCreditNoteRequest,
    ) -> Result<pb::CreditNote, ApiError> {
        if !IdPrefix::CreditNote.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        let state = &self.state;
        let saga_id = saga_id_for(ctx.scope(), ctx.idempotency_key.as_deref());
        let same = |saga: &Saga| saga.subjects.get("credit_note") == Some(&req.id);
        if let Some(saga) = previous(state, ctx, &saga_id, void::KIND, same).await? {
            return answer(&saga);
        }
        let backend = state.db.backend();
        let mut tx = state.db.begin().await?;
        let note = store::find_for_update(&mut tx, backend, ctx.scope(), &req.id)
            .await?
            .filter(|n| n.status.is_visible())
            .ok_or_else(|| not_found(&req.id))?;
        check_voidable(&VoidCheck {
            status: note.status,
            voiding: note.void_saga_id.is_some(),
            refunds: &note.refunds,
        })
        .map_err(|refusal| {
            ApiError::from(refusal).with_violation("id", format!("Credit note {}.", req.id))
        })?;
        store::set_voiding(&mut tx, ctx.scope(), &req.id, Some(&saga_id)).await?;
        let data = VoidData { credit_note: req.id.clone(), invoice: note.invoice.clone(), refusal: None };
        let saga = NewSaga {
            id: saga_id,
            scope: ctx.scope().clone(),
            kind: void::KIND,
            step: "reverse",
            data: encode(&data),
            subjects: BTreeMap::from([
                ("invoice".to_owned(), note.invoice.clone()),
                ("credit_note".to_owned(), req.id.clone()),
            ]),
            idempotency_key: ctx.idempotency_key.clone(),
            result: None,
        };
        let (saga, fence) =
            saga_store::insert(&mut tx, &saga, state.runner.holder(), state.runner.lease_until())
                .await
                .map_err(recorded_twice)?;
        tx.commit().await?;
        settle_platform::faults::hit("creditnotes.void.after_record").await;
        respond(state.runner.drive(saga, fence).await)
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListCreditNotesRequest,
    ) -> Result<pb::ListCreditNotesResponse, ApiError> {
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        let invoice = non_empty(req.invoice);
        if let Some(invoice) = &invoice {
            validate::id("invoice", invoice, IdPrefix::Invoice)?;
        }
        let customer = non_empty(req.customer);
        if let Some(customer) = &customer {
            validate::customer_id("customer", customer)?;
        }
        let filter = ListFilter {
            created: req.created,
            customer,
            customer_account: non_empty(req.customer_account),
            invoice,
        };
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::CreditNote,
        )?;
        let page = store::list(&self.state.db, ctx.scope(), &filter, &page).await?;
        Ok(pb::ListCreditNotesResponse { data: page.data, has_more: page.has_more })
    }

    async fn list_lines(
        &self,
        ctx: &RequestContext,
        req: pb::ListCreditNoteLinesRequest,
    ) -> Result<pb::ListCreditNoteLinesResponse, ApiError> {
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::CreditNoteLine,
        )?;
        self.get(ctx, &req.id).await?;
        let page = store::lines(&self.state.db, ctx.scope(), &req.id, &page).await?;
        Ok(pb::ListCreditNoteLinesResponse { data: page.data, has_more: page.has_more })
    }

    async fn preview_lines(
        &self,
        ctx: &RequestContext,
        req: pb::PreviewCreditNoteLinesRequest,
    ) -> Result<pb::PreviewCreditNoteLinesResponse, ApiError> {
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::CreditNoteLine,
        )?;
        let draft = self.preview_draft(ctx, &as_create(&req)?).await?;
        let (data, has_more) = page_of(&draft.lines, &page)?;
        Ok(pb::PreviewCreditNoteLinesResponse { data, has_more })
    }
}

/// A page of a preview's lines (kept in memory, in the note's order).
fn page_of(
    lines: &[pb::CreditNoteLineItem],
    page: &PageRequest,
) -> Result<(Vec<pb::CreditNoteLineItem>, bool), ApiError> {
    let limit = page.limit as usize;
    let position = |field: &str, id: &str| {
        lines.iter().position(|l| l.id == id).ok_or_else(|| {
            ApiError::invalid_param(
                field,
                ErrorReason::ParameterInvalid,
                format!("{id} is not a line of this preview."),
            )
        })
    };
    Ok(match &page.cursor {
        Cursor::First => (lines.iter().take(limit).cloned().collect(), lines.len() > limit),
        Cursor::After(id) => {
            let start = position("starting_after", id)? + 1;
            (lines[start..].iter().take(limit).cloned().collect(), lines.len() > start + limit)
        }
        Cursor::Before(id) => {
            let end = position("ending_before", id)?;
            let start = end.saturating_sub(limit);
            (lines[start..end].to_vec(), start > 0)
        }
    })
}

#[tonic::async_trait]
impl CreditNoteService for CreditNotesApi {
    async fn create_credit_note(
        &self,
        request: Request<pb::CreateCreditNoteRequest>,
    ) -> Result<Response<pb::CreditNote>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.create(&ctx, request.into_inner()).await?))
    }

    async fn preview_credit_note(
        &self,
        request: Request<pb::PreviewCreditNoteRequest>,
    ) -> Result<Response<pb::CreditNote>, Status> {
        let ctx = RequestContext::of(&request)?;
        let req = as_create(request.get_ref())?;
        Ok(Response::new(self.preview_draft(&ctx, &req).await?.document))
    }

    async fn preview_credit_note_lines(
        &self,
        request: Request<pb::PreviewCreditNoteLinesRequest>,
    ) -> Result<Response<pb::PreviewCreditNoteLinesResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.preview_lines(&ctx, request.into_inner()).await?))
    }

    async fn get_credit_note(
        &self,
        request: Request<pb::GetCreditNoteRequest>,
    ) -> Result<Response<pb::CreditNote>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, &request.get_ref().id).await?))
    }

    async fn update_credit_note(
        &self,
        request: Request<pb::UpdateCreditNoteRequest>,
    ) -> Result<Response<pb::CreditNote>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.update(&ctx, request.into_inner()).await?))
    }

    async fn void_credit_note(
        &self,
        request: Request<pb::VoidCreditNoteRequest>,
    ) -> Result<Response<pb::CreditNote>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.void(&ctx, request.into_inner()).await?))
    }

    async fn list_credit_notes(
        &self,
        request: Request<pb::ListCreditNotesRequest>,
    ) -> Result<Response<pb::ListCreditNotesResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn list_credit_note_lines(
        &self,
        request: Request<pb::ListCreditNoteLinesRequest>,
    ) -> Result<Response<pb::ListCreditNoteLinesResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list_lines(&ctx, request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<pb::CreditNoteLineItem> {
        (0..n).map(|i| pb::CreditNoteLineItem { id: format!("cnli_{i}"), ..Default::default() }).collect()
    }

    fn ids(page: &[pb::CreditNoteLineItem]) -> Vec<&str> {
        page.iter().map(|l| l.id.as_str()).collect()
    }

    #[test]
    fn preview_lines_page_in_both_directions() {
        let all = lines(5);
        let first = PageRequest { limit: 2, cursor: Cursor::First };
        let (page, more) = page_of(&all, &first).unwrap();
        assert_eq!((ids(&page), more), (vec!["cnli_0", "cnli_1"], true));
        let after = PageRequest { limit: 2, cursor: Cursor::After("cnli_3".into()) };
        let (page, more) = page_of(&all, &after).unwrap();
        assert_eq!((ids(&page), more), (vec!["cnli_4"], false));
        let before = PageRequest { limit: 2, cursor: Cursor::Before("cnli_3".into()) };
        let (page, more) = page_of(&all, &before).unwrap();
        assert_eq!((ids(&page), more), (vec!["cnli_1", "cnli_2"], true));
        let unknown = PageRequest { limit: 2, cursor: Cursor::After("cnli_9".into()) };
        assert_eq!(page_of(&all, &unknown).unwrap_err().field_violations[0].0, "starting_after");
    }

    #[test]
    fn preview_requests_read_as_create_requests() {
        let preview = pb::PreviewCreditNoteLinesRequest {
            invoice: "in_1".into(),
            amount: Some(5),
            memo: Some("m".into()),
            limit: Some(3),
            ..Default::default()
        };
        let create = as_create(&preview).unwrap();
        assert_eq!(
            create,
            pb::CreateCreditNoteRequest {
                invoice: "in_1".into(),
                amount: Some(5),
                memo: Some("m".into()),
                ..Default::default()
            }
        );
    }
}
