//! `PaymentRecordService`: Stripe's Payment Records API. Every report is one transaction that
//! locks the record's row, changes the record and its attempts, and writes the events and the
//! idempotent response.

pub mod params;

use std::collections::BTreeMap;

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::db::Tx;
use settle_platform::idempotency::{self, Claim};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::{self, EventOrigin};
use settle_platform::pagination::PageRequest;
use settle_platform::time::now_unix;
use settle_platform::validate;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::payment_record_service_server::PaymentRecordService;
use tonic::{Request, Response, Status};

use self::params as rp;
use super::AppState;
use super::error_payment_records::refund_reference_in_use;
use super::params::non_empty;
use crate::domain::payment_record::{NewPayment, NewRefund, PaymentRecord, RecordEvent};
use crate::model::payment_record::{record_from_documents, render_attempt, render_record};
use crate::store::attachments;
use crate::store::payment_records::{self as store, ListFilter};

const REPORT_PAYMENT: &str = "/settle.payments.v1.PaymentRecordService/ReportPayment";
const REPORT_ATTEMPT: &str = "/settle.payments.v1.PaymentRecordService/ReportPaymentAttempt";
const REPORT_CANCELED: &str = "/settle.payments.v1.PaymentRecordService/ReportPaymentAttemptCanceled";
const REPORT_FAILED: &str = "/settle.payments.v1.PaymentRecordService/ReportPaymentAttemptFailed";
const REPORT_GUARANTEED: &str = "/settle.payments.v1.PaymentRecordService/ReportPaymentAttemptGuaranteed";
const REPORT_INFORMATIONAL: &str =
    "/settle.payments.v1.PaymentRecordService/ReportPaymentAttemptInformational";
const REPORT_REFUND: &str = "/settle.payments.v1.PaymentRecordService/ReportRefund";

/// The handlers of `PaymentRecordService`.
#[derive(Clone, Debug)]
pub struct PaymentRecordsApi {
    state: AppState,
}

impl PaymentRecordsApi {
    pub fn new(state: AppState) -> Self {
        PaymentRecordsApi { state }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::PaymentRecord, id, "id")
}

/// Metadata as sent on a new object: empty values set nothing.
fn new_metadata(update: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    validate::merge_metadata(&mut metadata, update);
    metadata
}

/// A record read under its row lock: the domain state and the documents it renders into.
struct Loaded {
    record: PaymentRecord,
    doc: pb::PaymentRecord,
    /// One document per attempt, in the order of `record.attempts()` (oldest first).
    attempts: Vec<pb::PaymentAttemptRecord>,
}

impl Loaded {
    /// Writes the domain state into every document.
    fn render(&mut self) -> Result<(), ApiError> {
        render_record(&self.record, &self.record.amounts()?, &mut self.doc);
        let attempts = self.record.attempts().collect::<Vec<_>>();
        if attempts.len() != self.attempts.len() {
            return Err(ApiError::internal(
                "A payment record's attempts could not be written",
                &crate::model::payment_record::CorruptRecord {
                    id: self.record.id.clone(),
                    problem: "attempt documents",
                },
            ));
        }
        for (attempt, doc) in attempts.into_iter().zip(self.attempts.iter_mut()) {
            render_attempt(&self.record, attempt, &self.record.attempt_amounts(attempt)?, doc);
        }
        Ok(())
    }

    /// Merges request metadata into the record and its latest attempt, then checks the limits.
    fn merge_metadata(&mut self, update: &BTreeMap<String, String>) -> Result<(), ApiError> {
        validate::merge_metadata(&mut self.doc.metadata, update);
        validate::metadata("metadata", &self.doc.metadata)?;
        if let Some(latest) = self.attempts.last_mut() {
            validate::merge_metadata(&mut latest.metadata, update);
            validate::metadata("metadata", &latest.metadata)?;
        }
        Ok(())
    }
}

/// What a report did besides changing the loaded record.
struct Change {
    events: Vec<RecordEvent>,
    /// A reported refund to record: its reference and the metadata sent with it.
    refund: Option<(String, BTreeMap<String, String>)>,
}

impl From<Vec<RecordEvent>> for Change {
    fn from(events: Vec<RecordEvent>) -> Self {
        Change { events, refund: None }
    }
}

/// Appends one outbox event per domain event, each carrying the record as it now is.
async fn append_events(
    tx: &mut Tx,
    state: &AppState,
    ctx: &RequestContext,
    doc: &pb::PaymentRecord,
    events: &[RecordEvent],
) -> Result<(), ApiError> {
    let origin = EventOrigin::from(ctx);
    for event in events {
        outbox::append(tx, state.db.backend(), &origin, event.event_type(), &doc.id, doc, None).await?;
    }
    Ok(())
}

impl PaymentRecordsApi {
    async fn report_payment(
        &self,
        ctx: &RequestContext,
        req: pb::ReportPaymentRequest,
    ) -> Result<pb::PaymentRecord, ApiError> {
        let now = now_unix();
        let (currency, amount) = rp::amount("amount_requested", req.amount_requested.as_ref())?;
        let initiated_at = rp::required_time("initiated_at", req.initiated_at, now)?;
        let payment_method_details = rp::payment_method_details(req.payment_method_details.as_ref())?;
        let outcome = rp::outcome(req.outcome, req.failed.as_ref(), req.guaranteed.as_ref(), now)?;
        let processor_details = rp::processor_details(req.processor_details.as_ref())?;
        let customer_details = rp::customer_details(req.customer_details.as_ref())?;
        let customer_presence = rp::customer_presence(req.customer_presence)?;
        rp::description(req.description.as_ref())?;
        let shipping_details = rp::shipping_details(req.shipping_details.as_ref())?;
        rp::metadata(&req.metadata)?;

        let (record, events) = PaymentRecord::report(
            IdPrefix::PaymentRecord.generate(),
            IdPrefix::PaymentAttemptRecord.generate(),
            NewPayment {
                currency,
                amount,
                customer: customer_details.as_ref().and_then(|d| d.customer.clone()),
                initiated_at,
                outcome,
            },
        )?;
        let doc = pb::PaymentRecord {
            created: now,
            customer_details,
            customer_presence,
            description: non_empty(req.description.as_ref()),
            livemode: ctx.livemode(),
            metadata: new_metadata(&req.metadata),
            payment_method_details: Some(payment_method_details),
            processor_details: Some(processor_details),
            shipping_details,
            ..Default::default()
        };
        let attempt = first_attempt(&doc);
        let mut loaded = Loaded { record, doc, attempts: vec![attempt] };
        loaded.render()?;

        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, REPORT_PAYMENT, &req).await?
        {
            Claim::Replay(stored) => return Ok(stored),
            Claim::Fresh(pending) => pending,
        };
        store::insert(&mut tx, ctx.scope(), &loaded.doc).await?;
        for attempt in &loaded.attempts {
            store::insert_attempt(&mut tx, ctx.scope(), attempt).await?;
        }
        append_events(&mut tx, state, ctx, &loaded.doc, &events).await?;
        pending.record(&mut tx, &loaded.doc).await?;
        tx.commit().await?;
        state.hub.committed();
        Ok(loaded.doc)
    }

    /// Loads the record under a row lock with its attempts, lets `change` alter them, and stores
    /// everything with the events and the idempotent response, in one transaction.
    async fn mutate<M, F>(
        &self,
        ctx: &RequestContext,
        method: &'static str,
        request: &M,
        id: &str,
        change: F,
    ) -> Result<pb::PaymentRecord, ApiError>
    where
        M: prost::Message,
        F: FnOnce(&mut Loaded) -> Result<Change, ApiError>,
    {
        if !IdPrefix::PaymentRecord.matches(id) {
            return Err(not_found(id));
        }
        let state = &self.state;
        let scope = ctx.scope();
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, method, request).await? {
            Claim::Replay(stored) => return Ok(stored),
            Claim::Fresh(pending) => pending,
        };
        let doc = store::find_for_update(&mut tx, state.db.backend(), scope, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let stored = store::attempts_of(&mut tx, scope, id).await?;
        let record = record_from_documents(&doc, &stored)?;
        let customer_before = doc.customer_details.as_ref().and_then(|d| d.customer.clone());
        let mut loaded = Loaded { record, doc, attempts: stored.clone() };
        let change = change(&mut loaded)?;
        loaded.render()?;
        let customer_after = loaded.doc.customer_details.as_ref().and_then(|d| d.customer.clone());
        if customer_after != customer_before {
            // An attached invoice counted this record for its customer; the record's row lock
            // serializes this check with ReserveAttachment, which locks it too.
            if let Some(attachment) = attachments::find_active(&mut *tx, scope, id).await? {
                return Err(ApiError::failed_precondition(
                    settle_proto::common::v1::ErrorReason::PaymentAlreadyAttached,
                    format!(
                        "This payment record is attached to invoice {}; its customer cannot change until it is detached.",
                        attachment.invoice
                    ),
                )
                .with_violation("customer_details[customer]", "The payment is attached to an invoice."));
            }
        }

        if let Some((reference, metadata)) = change.refund {
            let Some(refund) =
                loaded.doc.reported_refunds.iter_mut().find(|r| r.refund_reference == reference)
            else {
                return Err(ApiError::internal(
                    "A reported refund could not be recorded",
                    &crate::model::payment_record::CorruptRecord {
                        id: id.to_owned(),
                        problem: "reported_refunds",
                    },
                ));
            };
            refund.metadata = metadata;
            if !store::insert_refund(&mut tx, scope, id, refund).await? {
                return Err(refund_reference_in_use(format!(
                    "The refund reference '{reference}' is already in use."
                )));
            }
        }
        for (i, attempt) in loaded.attempts.iter().enumerate() {
            match stored.get(i) {
                None => store::insert_attempt(&mut tx, scope, attempt).await?,
                Some(before) if before != attempt => {
                    store::update_attempt(&mut tx, scope, attempt).await?;
                }
                Some(_) => {}
            }
        }
        store::update(&mut tx, scope, &loaded.doc).await?;
        append_events(&mut tx, state, ctx, &loaded.doc, &change.events).await?;
        pending.record(&mut tx, &loaded.doc).await?;
        tx.commit().await?;
        if !change.events.is_empty() {
            state.hub.committed();
        }
        Ok(loaded.doc)
    }

    async fn report_attempt(
        &self,
        ctx: &RequestContext,
        req: pb::ReportPaymentAttemptRequest,
    ) -> Result<pb::PaymentRecord, ApiError> {
        let now = now_unix();
        let initiated_at = rp::required_time("initiated_at", req.initiated_at, now)?;
        let outcome = rp::outcome(req.outcome, req.failed.as_ref(), req.guaranteed.as_ref(), now)?;
        let payment_method_details =
            req.payment_method_details.as_ref().map(|m| rp::payment_method_details(Some(m))).transpose()?;
        rp::description(req.description.as_ref())?;
        let shipping_details =
            req.shipping_details.as_ref().map(|s| rp::shipping_details(Some(s))).transpose()?;
        rp::metadata(&req.metadata)?;
        let id = req.id.clone();
        self.mutate(ctx, REPORT_ATTEMPT, &req, &id, |loaded| {
            let attempt_id = IdPrefix::PaymentAttemptRecord.generate();
            let events = loaded.record.report_attempt(attempt_id, initiated_at, outcome)?;
            // The record shows its latest attempt's payment method; description and shipping
            // belong to the attempt, defaulting to the record's.
            if let Some(details) = payment_method_details {
                loaded.doc.payment_method_details = Some(details);
            }
            let previous = loaded.attempts.last();
            let mut attempt = first_attempt(&loaded.doc);
            attempt.created = now;
            attempt.processor_details =
                previous.and_then(|p| p.processor_details.clone()).or(attempt.processor_details);
            if let Some(description) = &req.description {
                attempt.description = non_empty(Some(description));
            }
            if let Some(shipping) = shipping_details {
                attempt.shipping_details = shipping;
            }
            attempt.metadata = BTreeMap::new();
            loaded.attempts.push(attempt);
            loaded.merge_metadata(&req.metadata)?;
            Ok(events.into())
        })
        .await
    }

    async fn report_outcome(
        &self,
        ctx: &RequestContext,
        method: &'static str,
        request: &impl prost::Message,
        id: &str,
        metadata: &BTreeMap<String, String>,
        report: impl FnOnce(&mut PaymentRecord) -> Result<Vec<RecordEvent>, ApiError>,
    ) -> Result<pb::PaymentRecord, ApiError> {
        rp::metadata(metadata)?;
        self.mutate(ctx, method, request, id, |loaded| {
            let events = report(&mut loaded.record)?;
            loaded.merge_metadata(metadata)?;
            Ok(events.into())
        })
        .await
    }

    async fn report_informational(
        &self,
        ctx: &RequestContext,
        req: pb::ReportPaymentAttemptInformationalRequest,
    ) -> Result<pb::PaymentRecord, ApiError> {
        let customer_details =
            req.customer_details.as_ref().map(|c| rp::customer_details(Some(c))).transpose()?;
        rp::description(req.description.as_ref())?;
        let shipping_details =
            req.shipping_details.as_ref().map(|s| rp::shipping_details(Some(s))).transpose()?;
        rp::metadata(&req.metadata)?;
        let id = req.id.clone();
        self.mutate(ctx, REPORT_INFORMATIONAL, &req, &id, |loaded| {
            let customer =
                customer_details.as_ref().map(|details| details.as_ref().and_then(|d| d.customer.clone()));
            let events = loaded.record.report_informational(customer);
            if let Some(details) = customer_details {
                loaded.doc.customer_details = details;
            }
            if let Some(description) = &req.description {
                loaded.doc.description = non_empty(Some(description));
            }
            if let Some(shipping) = shipping_details {
                loaded.doc.shipping_details = shipping;
            }
            loaded.merge_metadata(&req.metadata)?;
            Ok(events.into())
        })
        .await
    }

    async fn report_refund(
        &self,
        ctx: &RequestContext,
        req: pb::ReportRefundRequest,
    ) -> Result<pb::PaymentRecord, ApiError> {
        let now = now_unix();
        rp::refund_outcome(req.outcome)?;
        let reference = rp::refund_reference(req.processor_details.as_ref())?;
        let amount = req.amount.as_ref().map(|a| rp::amount("amount", Some(a))).transpose()?;
        let initiated_at = rp::optional_time("initiated_at", req.initiated_at, now)?;
        let refunded_at = req
            .refunded
            .as_ref()
            .map(|r| rp::required_time("refunded[refunded_at]", r.refunded_at, now))
            .transpose()?;
        rp::metadata(&req.metadata)?;
        let id = req.id.clone();
        self.mutate(ctx, REPORT_REFUND, &req, &id, |loaded| {
            let events = loaded.record.report_refund(
                NewRefund { reference: reference.clone(), amount, initiated_at, refunded_at },
                now,
            )?;
            loaded.merge_metadata(&req.metadata)?;
            Ok(Change { events, refund: Some((reference, new_metadata(&req.metadata))) })
        })
        .await
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        req: pb::GetPaymentRecordRequest,
    ) -> Result<pb::PaymentRecord, ApiError> {
        if !IdPrefix::PaymentRecord.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        store::find(&self.state.db, ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListPaymentRecordsRequest,
    ) -> Result<pb::ListPaymentRecordsResponse, ApiError> {
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::PaymentRecord,
        )?;
        let filter = ListFilter { created_after: req.created_after, created_before: req.created_before };
        let page = store::list(&self.state.db, ctx.scope(), &filter, &page).await?;
        Ok(pb::ListPaymentRecordsResponse { data: page.data, has_more: page.has_more })
    }

    async fn get_attempt(
        &self,
        ctx: &RequestContext,
        req: pb::GetPaymentAttemptRecordRequest,
    ) -> Result<pb::PaymentAttemptRecord, ApiError> {
        let missing = || ApiError::not_found(IdPrefix::PaymentAttemptRecord, &req.id, "id");
        if !IdPrefix::PaymentAttemptRecord.matches(&req.id) {
            return Err(missing());
        }
        store::find_attempt(&self.state.db, ctx.scope(), &req.id).await?.ok_or_else(missing)
    }

    async fn list_attempts(
        &self,
        ctx: &RequestContext,
        req: pb::ListPaymentAttemptRecordsRequest,
    ) -> Result<pb::ListPaymentAttemptRecordsResponse, ApiError> {
        const FIELD: &str = "payment_record";
        if req.payment_record.is_empty() {
            return Err(ApiError::missing_param(FIELD));
        }
        let missing = || ApiError::not_found(IdPrefix::PaymentRecord, &req.payment_record, FIELD);
        if !IdPrefix::PaymentRecord.matches(&req.payment_record) {
            return Err(missing());
        }
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::PaymentAttemptRecord,
        )?;
        let db = &self.state.db;
        if store::find(db, ctx.scope(), &req.payment_record).await?.is_none() {
            return Err(missing());
        }
        let page = store::list_attempts(db, ctx.scope(), &req.payment_record, &page).await?;
        Ok(pb::ListPaymentAttemptRecordsResponse { data: page.data, has_more: page.has_more })
    }
}

/// A new attempt's document, its descriptive fields copied from the record (the domain fields are
/// rendered later).
fn first_attempt(doc: &pb::PaymentRecord) -> pb::PaymentAttemptRecord {
    pb::PaymentAttemptRecord {
        created: doc.created,
        customer_details: doc.customer_details.clone(),
        customer_presence: doc.customer_presence,
        description: doc.description.clone(),
        livemode: doc.livemode,
        metadata: doc.metadata.clone(),
        payment_method_details: doc.payment_method_details.clone(),
        processor_details: doc.processor_details.clone(),
        shipping_details: doc.shipping_details.clone(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl PaymentRecordService for PaymentRecordsApi {
    async fn report_payment(
        &self,
        request: Request<pb::ReportPaymentRequest>,
    ) -> Result<Response<pb::PaymentRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.report_payment(&ctx, request.into_inner()).await?))
    }

    async fn report_payment_attempt(
        &self,
        request: Request<pb::ReportPaymentAttemptRequest>,
    ) -> Result<Response<pb::PaymentRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.report_attempt(&ctx, request.into_inner()).await?))
    }

    async fn report_payment_attempt_canceled(
        &self,
        request: Request<pb::ReportPaymentAttemptCanceledRequest>,
    ) -> Result<Response<pb::PaymentRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        let req = request.into_inner();
        let at = rp::required_time("canceled_at", req.canceled_at, now_unix())?;
        let record = self
            .report_outcome(&ctx, REPORT_CANCELED, &req, &req.id, &req.metadata, |r| {
                Ok(r.report_canceled(at)?)
            })
            .await?;
        Ok(Response::new(record))
    }

    async fn report_payment_attempt_failed(
        &self,
        request: Request<pb::ReportPaymentAttemptFailedRequest>,
    ) -> Result<Response<pb::PaymentRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        let req = request.into_inner();
        let at = rp::required_time("failed_at", req.failed_at, now_unix())?;
        let record = self
            .report_outcome(&ctx, REPORT_FAILED, &req, &req.id, &req.metadata, |r| Ok(r.report_failed(at)?))
            .await?;
        Ok(Response::new(record))
    }

    async fn report_payment_attempt_guaranteed(
        &self,
        request: Request<pb::ReportPaymentAttemptGuaranteedRequest>,
    ) -> Result<Response<pb::PaymentRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        let req = request.into_inner();
        let at = rp::required_time("guaranteed_at", req.guaranteed_at, now_unix())?;
        let record = self
            .report_outcome(&ctx, REPORT_GUARANTEED, &req, &req.id, &req.metadata, |r| {
                Ok(r.report_guaranteed(at)?)
            })
            .await?;
        Ok(Response::new(record))
    }

    async fn report_payment_attempt_informational(
        &self,
        request: Request<pb::ReportPaymentAttemptInformationalRequest>,
    ) -> Result<Response<pb::PaymentRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.report_informational(&ctx, request.into_inner()).await?))
    }

    async fn report_refund(
        &self,
        request: Request<pb::ReportRefundRequest>,
    ) -> Result<Response<pb::PaymentRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.report_refund(&ctx, request.into_inner()).await?))
    }

    async fn get_payment_record(
        &self,
        request: Request<pb::GetPaymentRecordRequest>,
    ) -> Result<Response<pb::PaymentRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn list_payment_records(
        &self,
        request: Request<pb::ListPaymentRecordsRequest>,
    ) -> Result<Response<pb::ListPaymentRecordsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn get_payment_attempt_record(
        &self,
        request: Request<pb::GetPaymentAttemptRecordRequest>,
    ) -> Result<Response<pb::PaymentAttemptRecord>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get_attempt(&ctx, request.into_inner()).await?))
    }

    async fn list_payment_attempt_records(
        &self,
        request: Request<pb::ListPaymentAttemptRecordsRequest>,
    ) -> Result<Response<pb::ListPaymentAttemptRecordsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list_attempts(&ctx, request.into_inner()).await?))
    }
}
