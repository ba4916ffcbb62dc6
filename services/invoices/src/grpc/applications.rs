//! The RPCs that move payments onto and off invoices — AttachPayment, DetachPayment,
//! ReapplyPayment and PayInvoice with a payment method — each recording its saga and driving it
//! inline. A request with an idempotency key derives its saga id from the key, so a retry finds the
//! saga its first attempt started and answers with its outcome.

use std::collections::BTreeMap;

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::db::is_unique_violation;
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::EventOrigin;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::attach_payment_request::Payment as AttachTarget;
use settle_proto::settle::invoices::v1::detach_payment_request::Payment as DetachTarget;
use settle_proto::settle::invoices::v1::reapply_payment_request::Payment as ReapplyTarget;
use settle_saga::store::{self as saga_store, KeyUse};
use settle_saga::{NewSaga, Outcome, Saga, SagaState, saga_id_for};
use tonic::Code;

use super::AppState;
use super::invoices::lifecycle;
use super::invoices::op::{self, Expand, InvoiceOp};
use crate::applications::attach::{AttachData, Leg};
use crate::applications::default_payment;
use crate::applications::effects::{self, PaymentFacts};
use crate::applications::pay::{PayData, PayMode};
use crate::applications::reapply::ReapplyData;
use crate::applications::{PaymentKind, attach, detach, encode, pay, reapply};
use crate::domain::invoice::InvoiceStatus;
use crate::model;
use crate::store::{invoice_payments, invoices};

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::Invoice, id, "id")
}

/// Checks an id names an object of `kind` (else it cannot exist: `resource_missing`).
fn check_id(id: &str, kind: IdPrefix, field: &str) -> Result<(), ApiError> {
    if kind.matches(id) { Ok(()) } else { Err(ApiError::not_found(kind, id, field)) }
}

fn payment_of(kind: PaymentKind, id: String) -> Result<(PaymentKind, String), ApiError> {
    let (prefix, field) = match kind {
        PaymentKind::PaymentIntent => (IdPrefix::PaymentIntent, "payment_intent"),
        PaymentKind::PaymentRecord => (IdPrefix::PaymentRecord, "payment_record"),
    };
    check_id(&id, prefix, field)?;
    Ok((kind, id))
}

fn subjects(invoice: &str, kind: PaymentKind, payment: &str) -> BTreeMap<String, String> {
    let field = match kind {
        PaymentKind::PaymentIntent => "payment_intent",
        PaymentKind::PaymentRecord => "payment_record",
    };
    BTreeMap::from([("invoice".to_owned(), invoice.to_owned()), (field.to_owned(), payment.to_owned())])
}

/// Answers with what a saga ended in (its stored result or its failure).
fn answer(saga: &Saga) -> Result<pb::Invoice, ApiError> {
    match saga.state {
        SagaState::Failed => {
            let failure =
                saga.failure.clone().unwrap_or_else(|| crate::applications::internal_failure("failed"));
            let reason =
                ErrorReason::from_str_name(&format!("ERROR_REASON_{}", failure.reason.to_ascii_uppercase()))
                    .unwrap_or(ErrorReason::StateUnsupported);
            Err(ApiError::new(failure.code, reason, failure.message))
        }
        _ => match saga.result.as_deref() {
            Some(bytes) => prost::Message::decode(bytes)
                .map_err(|e| ApiError::internal("A stored result could not be read", &e)),
            None => Err(in_progress(saga)),
        },
    }
}

fn in_progress(saga: &Saga) -> ApiError {
    ApiError::new(
        Code::Aborted,
        ErrorReason::SagaInProgress,
        format!(
            "The operation ({}) is still in progress; retry with the same idempotency key to get its outcome.",
            saga.id
        ),
    )
}

/// What a drive left for the caller.
fn respond(outcome: Outcome) -> Result<pb::Invoice, ApiError> {
    match outcome {
        Outcome::Succeeded(saga) | Outcome::Failed(saga) => answer(&saga),
        // The step is waiting for payments; the saga finishes in the background.
        Outcome::Pending(saga) => match saga.result.as_deref() {
            Some(_) if saga.state == SagaState::Running => answer(&saga),
            _ => Err(ApiError::new(
                Code::Unavailable,
                ErrorReason::DependencyUnavailable,
                format!(
                    "The payments service did not answer; the operation ({}) will finish on its own. Retry with the same idempotency key to get its outcome.",
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

/// The invoice a saga answered with, as the API returns it (lines, expansions).
async fn finish(
    state: &AppState,
    ctx: &RequestContext,
    answer: Result<pb::Invoice, ApiError>,
    expand: Expand,
) -> Result<pb::Invoice, ApiError> {
    let doc = answer?;
    let mut conn = state.db.pool().acquire().await?;
    op::respond(state, ctx, &mut conn, doc, expand).await
}

/// The expanded `confirmation_secret`: the client secret of the invoice's default PaymentIntent
/// (the one PayInvoice created) while it still waits for the customer (a payment method, a
/// confirmation or an action such as 3-D Secure); none otherwise.
pub async fn confirmation_secret(
    state: &AppState,
    ctx: &RequestContext,
    invoice: &pb::Invoice,
) -> Result<Option<pb::InvoiceConfirmationSecret>, ApiError> {
    use settle_proto::settle::payments::v1 as payments_pb;
    let Some(default) = invoice_payments::open_default(state.db.pool(), ctx.scope(), &invoice.id).await?
    else {
        return Ok(None);
    };
    let Some(intent) = default.payment.and_then(|p| p.payment_intent) else { return Ok(None) };
    let payments = &state.applications.payments;
    let request = payments_pb::GetPaymentIntentRequest { id: intent, ..Default::default() };
    let intent = payments
        .intents
        .clone()
        .get_payment_intent(payments.request(ctx.scope(), request))
        .await
        .map_err(|status| {
            ApiError::new(
                Code::Unavailable,
                ErrorReason::DependencyUnavailable,
                format!(
                    "The payments service could not give the invoice's PaymentIntent: {}",
                    status.message()
                ),
            )
        })?
        .into_inner();
    use payments_pb::PaymentIntentStatus as S;
    let waiting = [S::RequiresPaymentMethod, S::RequiresConfirmation, S::RequiresAction]
        .iter()
        .any(|s| *s as i32 == intent.status);
    Ok(waiting.then(|| pb::InvoiceConfirmationSecret {
        client_secret: intent.client_secret.unwrap_or_default(),
        r#type: "payment_intent".to_owned(),
    }))
}

/// The saga a previous attempt of this request (same idempotency key) started, if any. A saga of
/// another operation under the same key is an idempotency error.
async fn previous(
    state: &AppState,
    ctx: &RequestContext,
    saga_id: &str,
    kind: &str,
    subjects: &BTreeMap<String, String>,
) -> Result<Option<Saga>, ApiError> {
    let Some(key) = &ctx.idempotency_key else {
        return Ok(None);
    };
    let mismatch = || {
        ApiError::invalid_param(
            "idempotency-key",
            ErrorReason::IdempotencyError,
            "Keys for idempotent requests can only be used with the same parameters they were first used with.",
        )
    };
    match saga_store::key_use(&state.db, ctx.scope(), saga_id, key).await? {
        KeyUse::Unused => Ok(None),
        KeyUse::OtherMethod => Err(mismatch()),
        KeyUse::Saga(saga)
            if saga.kind != kind || subjects.iter().any(|(k, v)| saga.subjects.get(k) != Some(v)) =>
        {
            Err(mismatch())
        }
        KeyUse::Saga(saga) => Ok(Some(*saga)),
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

/// AttachPayment: attaches a PaymentIntent or a Payment Record to an open invoice.
pub async fn attach_payment(
    state: &AppState,
    ctx: &RequestContext,
    req: pb::AttachPaymentRequest,
) -> Result<pb::Invoice, ApiError> {
    let expand = Expand::parse(&req.expand, "")?;
    let answer = attach_payment_saga(state, ctx, req).await;
    finish(state, ctx, answer, expand).await
}

async fn attach_payment_saga(
    state: &AppState,
    ctx: &RequestContext,
    req: pb::AttachPaymentRequest,
) -> Result<pb::Invoice, ApiError> {
    check_id(&req.id, IdPrefix::Invoice, "id")?;
    let (kind, payment) = match req.payment {
        Some(AttachTarget::PaymentIntent(id)) => payment_of(PaymentKind::PaymentIntent, id)?,
        Some(AttachTarget::PaymentRecord(id)) => payment_of(PaymentKind::PaymentRecord, id)?,
        None => {
            return Err(ApiError::missing_param("payment_intent")
                .with_violation("payment_record", "Give exactly one of payment_intent and payment_record."));
        }
    };
    let subjects = subjects(&req.id, kind, &payment);
    let saga_id = saga_id_for(ctx.scope(), ctx.idempotency_key.as_deref());
    if let Some(saga) = previous(state, ctx, &saga_id, attach::KIND, &subjects).await? {
        return answer(&saga);
    }

    let db = &state.db;
    let mut tx = db.begin().await?;
    let doc = invoices::find(&mut *tx, ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))?;
    let status = model::status(&doc).map_err(|e| ApiError::internal("An invoice could not be read", &e))?;
    if !status.takes_payments() {
        return Err(invoice_not_open(&doc.id, status));
    }
    if let Some((counted, _)) =
        invoice_payments::find_live_by_payment(&mut *tx, ctx.scope(), &payment).await?
    {
        return Err(ApiError::failed_precondition(
            ErrorReason::PaymentAlreadyAttached,
            format!("{payment} is already applied to invoice {}.", counted.invoice),
        )
        .with_violation(
            if kind == PaymentKind::PaymentIntent { "payment_intent" } else { "payment_record" },
            "The payment is already attached.",
        ));
    }
    let data = AttachData {
        payment: payment.clone(),
        kind,
        leg: Leg {
            invoice: doc.id.clone(),
            invoice_payment: IdPrefix::InvoicePayment.generate(),
            customer: doc.customer.clone(),
            currency: doc.currency.clone(),
            is_default: false,
            reserved: None,
        },
        refusal: None,
    };
    let new = NewSaga {
        id: saga_id,
        scope: ctx.scope().clone(),
        kind: attach::KIND,
        step: "reserve",
        data: encode(&data),
        subjects,
        idempotency_key: ctx.idempotency_key.clone(),
        result: None,
    };
    let (saga, fence) = saga_store::insert(&mut tx, &new, state.runner.holder(), state.runner.lease_until())
        .await
        .map_err(recorded_twice)?;
    tx.commit().await?;
    settle_platform::faults::hit("invoices.attach.after_record").await;
    respond(state.runner.drive(saga, fence).await)
}

fn invoice_not_open(id: &str, status: InvoiceStatus) -> ApiError {
    ApiError::failed_precondition(
        ErrorReason::InvoiceNotOpen,
        format!(
            "Invoice {id} is {}; payments can only be applied to open or uncollectible invoices.",
            status.as_str()
        ),
    )
    .with_violation("id", "The invoice does not take payments.")
}

/// The invoice payment on invoice `invoice` that counts `payment` (or that is `invoice_payment`).
async fn counted_on(
    tx: &mut settle_platform::db::Tx,
    ctx: &RequestContext,
    invoice: &str,
    target: &DetachTarget,
) -> Result<(pb::InvoicePayment, String, String), ApiError> {
    let payment = match target {
        DetachTarget::PaymentIntent(id) => {
            check_id(id, IdPrefix::PaymentIntent, "payment_intent")?;
            id.clone()
        }
        DetachTarget::PaymentRecord(id) => {
            check_id(id, IdPrefix::PaymentRecord, "payment_record")?;
            id.clone()
        }
        DetachTarget::InvoicePayment(id) => {
            check_id(id, IdPrefix::InvoicePayment, "invoice_payment")?;
            let found = invoice_payments::find(&mut **tx, ctx.scope(), id)
                .await?
                .ok_or_else(|| ApiError::not_found(IdPrefix::InvoicePayment, id, "invoice_payment"))?;
            invoice_payments::payment_of(&found).1.to_owned()
        }
    };
    match invoice_payments::find_live_by_payment(&mut **tx, ctx.scope(), &payment).await? {
        Some((invoice_payment, attach_key)) if invoice_payment.invoice == invoice => {
            Ok((invoice_payment, attach_key, payment))
        }
        _ => Err(ApiError::failed_precondition(
            ErrorReason::PaymentNotAttached,
            format!("{payment} is not applied to invoice {invoice}."),
        )),
    }
}

/// DetachPayment: the invoice stops counting a payment, then payments releases it.
pub async fn detach_payment(
    state: &AppState,
    ctx: &RequestContext,
    req: pb::DetachPaymentRequest,
) -> Result<pb::Invoice, ApiError> {
    let expand = Expand::parse(&req.expand, "")?;
    let answer = detach_payment_saga(state, ctx, req).await;
    finish(state, ctx, answer, expand).await
}

async fn detach_payment_saga(
    state: &AppState,
    ctx: &RequestContext,
    req: pb::DetachPaymentRequest,
) -> Result<pb::Invoice, ApiError> {
    check_id(&req.id, IdPrefix::Invoice, "id")?;
    let Some(target) = req.payment else {
        return Err(ApiError::missing_param("payment_intent").with_violation(
            "invoice_payment",
            "Give one of payment_intent, payment_record, invoice_payment.",
        ));
    };
    let key_subjects = BTreeMap::from([("invoice".to_owned(), req.id.clone())]);
    let saga_id = saga_id_for(ctx.scope(), ctx.idempotency_key.as_deref());
    if let Some(saga) = previous(state, ctx, &saga_id, detach::KIND, &key_subjects).await? {
        return answer(&saga);
    }
    let db = &state.db;
    let mut tx = db.begin().await?;
    let mut doc = invoices::find_for_update(&mut tx, db.backend(), ctx.scope(), &req.id)
        .await?
        .ok_or_else(|| not_found(&req.id))?;
    let status = model::status(&doc).map_err(|e| ApiError::internal("An invoice could not be read", &e))?;
    if matches!(status, InvoiceStatus::Draft | InvoiceStatus::Void) {
        return Err(ApiError::failed_precondition(
            ErrorReason::StateUnsupported,
            format!("Invoice {} is {}; nothing can be detached from it.", doc.id, status.as_str()),
        ));
    }
    let (mut invoice_payment, attach_key, payment) = counted_on(&mut tx, ctx, &doc.id, &target).await?;
    let origin = EventOrigin::from(ctx);
    let (saga, fence, effects) = detach::unapply_and_record(
        &mut tx,
        &state.applications,
        &state.runner,
        &origin,
        saga_id,
        &mut doc,
        &mut invoice_payment,
        attach_key,
        payment,
        true,
    )
    .await
    .map_err(|e| e.into_api("The payment could not be detached"))?;
    tx.commit().await?;
    if !effects.events.is_empty() {
        state.hub.committed();
    }
    settle_platform::faults::hit("invoices.detach.after_unapply").await;
    respond(state.runner.drive(saga, fence).await)
}

/// ReapplyPayment: moves a payment from the invoice that counts it onto this one.
pub async fn reapply_payment(
    state: &AppState,
    ctx: &RequestContext,
    req: pb::ReapplyPaymentRequest,
) -> Result<pb::Invoice, ApiError> {
    let expand = Expand::parse(&req.expand, "")?;
    let answer = reapply_payment_saga(state, ctx, req).await;
    finish(state, ctx, answer, expand).await
}

async fn reapply_payment_saga(
    state: &AppState,
    ctx: &RequestContext,
    req: pb::ReapplyPaymentRequest,
) -> Result<pb::Invoice, ApiError> {
    check_id(&req.id, IdPrefix::Invoice, "id")?;
    let (kind, payment) = match req.payment {
        Some(ReapplyTarget::PaymentIntent(id)) => payment_of(PaymentKind::PaymentIntent, id)?,
        Some(ReapplyTarget::PaymentRecord(id)) => payment_of(PaymentKind::PaymentRecord, id)?,
        None => {
            return Err(ApiError::missing_param("payment_intent")
                .with_violation("payment_record", "Give exactly one of payment_intent and payment_record."));
        }
    };
    let subjects = subjects(&req.id, kind, &payment);
    let saga_id = saga_id_for(ctx.scope(), ctx.idempotency_key.as_deref());
    if let Some(saga) = previous(state, ctx, &saga_id, reapply::KIND, &subjects).await? {
        return answer(&saga);
    }
    let db = &state.db;
    let mut tx = db.begin().await?;
    let (mut counted, source_key) =
        invoice_payments::find_live_by_payment(&mut *tx, ctx.scope(), &payment).await?.ok_or_else(|| {
            ApiError::failed_precondition(
                ErrorReason::PaymentNotAttached,
                format!("{payment} is not applied to any invoice; attach it instead."),
            )
        })?;
    if counted.invoice == req.id {
        return Err(ApiError::failed_precondition(
            ErrorReason::PaymentAlreadyAttached,
            format!("{payment} is already applied to invoice {}.", req.id),
        ));
    }
    let target = invoices::find(&mut *tx, ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))?;
    // Refuse up front what the target would refuse, so nothing moves for a request that cannot succeed.
    let facts = PaymentFacts {
        customer: target.customer.clone(),
        currency: counted.currency.clone(),
        amount: settle_money::Amount::new(counted.amount_paid.unwrap_or(counted.amount_requested)),
        succeeded: counted.status == pb::InvoicePaymentStatus::Paid as i32,
    };
    let mut source = invoices::find_for_update(&mut tx, db.backend(), ctx.scope(), &counted.invoice)
        .await?
        .ok_or_else(|| not_found(&counted.invoice))?;
    let source_facts = PaymentFacts { customer: source.customer.clone(), ..facts.clone() };
    effects::guard(&target, &source_facts).map_err(refusal_error)?;
    let _ = facts;
    let data = ReapplyData {
        payment: payment.clone(),
        kind,
        source_key,
        source: Leg {
            invoice: source.id.clone(),
            invoice_payment: IdPrefix::InvoicePayment.generate(),
            customer: source.customer.clone(),
            currency: source.currency.clone(),
            is_default: false,
            reserved: None,
        },
        target: Leg {
            invoice: target.id.clone(),
            invoice_payment: IdPrefix::InvoicePayment.generate(),
            customer: target.customer.clone(),
            currency: target.currency.clone(),
            is_default: false,
            reserved: None,
        },
        refusal: None,
    };
    let origin = EventOrigin::from(ctx);
    let unapplied = effects::unapply(&mut source, &mut counted, settle_platform::time::now_unix(), true)
        .map_err(|e| ApiError::internal("The payment could not be detached", &e))?;
    effects::persist(&mut tx, db.backend(), &origin, &source, Some((&counted, None)), &unapplied).await?;
    let mut subjects = subjects;
    subjects.insert("from_invoice".to_owned(), source.id.clone());
    let new = NewSaga {
        id: saga_id,
        scope: ctx.scope().clone(),
        kind: reapply::KIND,
        step: "release_source",
        data: encode(&data),
        subjects,
        idempotency_key: ctx.idempotency_key.clone(),
        result: None,
    };
    let (saga, fence) = saga_store::insert(&mut tx, &new, state.runner.holder(), state.runner.lease_until())
        .await
        .map_err(recorded_twice)?;
    tx.commit().await?;
    state.hub.committed();
    settle_platform::faults::hit("invoices.reapply.after_unapply").await;
    respond(state.runner.drive(saga, fence).await)
}

fn refusal_error(refusal: effects::Refusal) -> ApiError {
    let error = ApiError::new(refusal.code, refusal.reason, refusal.message.clone());
    match refusal.field {
        Some(field) => error.with_violation(field, refusal.message),
        None => error,
    }
}

/// What PayInvoice charges: what the invoice owes and with which payment method.
struct Payable {
    owed: i64,
    payment_method: String,
}

/// PayInvoice's refusals on invoice `doc` as read (pure but for the reads of credits being issued
/// and of live pay sagas): an invoice that takes no payments, nothing left to pay, no payment
/// method, or another charge of the invoice still under way — one charge at a time, so two
/// concurrent requests never take the customer's money twice. A draft is checked for what it owes
/// once finalized.
async fn check_payable(
    conn: &mut sqlx::AnyConnection,
    ctx: &RequestContext,
    req: &pb::PayInvoiceRequest,
    doc: &pb::Invoice,
) -> Result<Payable, ApiError> {
    let status = model::status(doc).map_err(|e| ApiError::internal("An invoice could not be read", &e))?;
    let draft = status == InvoiceStatus::Draft;
    if !draft && !status.takes_payments() {
        return Err(invoice_not_open(&doc.id, status));
    }
    // Credit notes being issued will take their pre-payment part off what is owed.
    let owed = doc.amount_remaining
        - crate::store::invoice_credits::reserved_pre_payment(&mut *conn, ctx.scope(), &doc.id).await?;
    if !draft && owed <= 0 {
        return Err(ApiError::failed_precondition(
            ErrorReason::InvoiceNotOpen,
            format!("Invoice {} has nothing left to pay.", doc.id),
        ));
    }
    let payment_method = req
        .payment_method
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| doc.default_payment_method.clone().filter(|m| !m.is_empty()))
        .ok_or_else(|| ApiError::missing_param("payment_method"))?;
    if let Some(live) =
        saga_store::live_on(&mut *conn, ctx.scope(), pay::KIND, &pay::subjects(&doc.id)).await?
    {
        return Err(ApiError::failed_precondition(
            ErrorReason::StateUnsupported,
            format!(
                "Invoice {} is already being paid ({live}); retry once that payment has finished.",
                doc.id
            ),
        ));
    }
    Ok(Payable { owed, payment_method })
}

/// Refuses to confirm the invoice's default PaymentIntent once the customer's payment is under way
/// or over (`processing`, `succeeded`, …): FAILED_PRECONDITION `state_unsupported` naming it.
async fn check_confirmable(state: &AppState, ctx: &RequestContext, intent: &str) -> Result<(), ApiError> {
    use payments_pb::PaymentIntentStatus as S;
    use settle_proto::settle::payments::v1 as payments_pb;
    let payments = &state.applications.payments;
    let request = payments_pb::GetPaymentIntentRequest { id: intent.to_owned(), ..Default::default() };
    let current = payments
        .intents
        .clone()
        .get_payment_intent(payments.request(ctx.scope(), request))
        .await
        .map_err(|status| {
            ApiError::new(
                Code::Unavailable,
                ErrorReason::DependencyUnavailable,
                format!("The payments service could not give {intent}: {}", status.message()),
            )
        })?
        .into_inner();
    let waiting = [S::RequiresPaymentMethod, S::RequiresConfirmation, S::RequiresAction];
    if waiting.iter().any(|s| *s as i32 == current.status) {
        return Ok(());
    }
    let status = S::try_from(current.status).map_or("unknown", |s| s.as_str_name());
    Err(ApiError::failed_precondition(
        ErrorReason::StateUnsupported,
        format!(
            "The invoice's PaymentIntent {intent} can no longer be confirmed (it is {}); wait for it to settle.",
            status.trim_start_matches("PAYMENT_INTENT_STATUS_").to_ascii_lowercase()
        ),
    ))
}

/// PayInvoice with a payment method (or the invoice's default): charges what the invoice still
/// owes with a new PaymentIntent and attaches it as the invoice's default payment.
pub async fn pay_invoice(
    state: &AppState,
    ctx: &RequestContext,
    req: pb::PayInvoiceRequest,
) -> Result<pb::Invoice, ApiError> {
    let expand = Expand::parse(&req.expand, "")?;
    let answer = pay_invoice_saga(state, ctx, req).await;
    finish(state, ctx, answer, expand).await
}

async fn pay_invoice_saga(
    state: &AppState,
    ctx: &RequestContext,
    req: pb::PayInvoiceRequest,
) -> Result<pb::Invoice, ApiError> {
    check_id(&req.id, IdPrefix::Invoice, "id")?;
    settle_platform::validate::unsupported(
        "source",
        req.source.as_deref().is_some_and(|s| !s.is_empty()),
        "pass a payment_method",
    )?;
    settle_platform::validate::unsupported(
        "forgive",
        req.forgive == Some(true),
        "settle charges the whole amount remaining",
    )?;
    let key_subjects = pay::subjects(&req.id);
    let saga_id = saga_id_for(ctx.scope(), ctx.idempotency_key.as_deref());
    if let Some(saga) = previous(state, ctx, &saga_id, pay::KIND, &key_subjects).await? {
        return answer(&saga);
    }
    // Refuse what the request would be refused for before touching the default PaymentIntent: a
    // refused request must leave it payable (its confirmation secret alive).
    let current =
        invoices::find(state.db.pool(), ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))?;
    {
        let mut conn = state.db.pool().acquire().await?;
        check_payable(&mut conn, ctx, &req, &current).await?;
    }
    // A default payment left open for another amount (payments were applied since finalization) is
    // canceled first and replaced by a charge of what is owed now; one open for what is owed is
    // confirmed, which payments does only while it still waits for the customer.
    let mut stale = None;
    if let Some((default, intent)) =
        default_payment::open_default_intent(&state.applications, ctx.scope(), &req.id).await?
    {
        if current.amount_remaining != default.amount_requested {
            stale = default_payment::cancel_open_default(&state.applications, ctx.scope(), &req.id).await?;
        } else {
            check_confirmable(state, ctx, &intent).await?;
        }
    }
    let db = &state.db;
    let mut tx = db.begin().await?;
    let mut doc = invoices::find_for_update(&mut tx, db.backend(), ctx.scope(), &req.id)
        .await?
        .ok_or_else(|| not_found(&req.id))?;
    let status = model::status(&doc).map_err(|e| ApiError::internal("An invoice could not be read", &e))?;
    let mut wrote_events = false;
    if status == InvoiceStatus::Draft {
        // Stripe finalizes a draft before paying it; here in the same transaction as the saga.
        let mut op = InvoiceOp::within(tx, doc);
        lifecycle::finalize(&mut op, state, ctx, settle_platform::time::now_unix()).await?;
        (tx, doc, wrote_events) = op.into_tx(state, ctx).await?;
        if doc.amount_remaining <= 0 {
            // Nothing was due after the customer's balance: finalizing paid it.
            tx.commit().await?;
            state.hub.committed();
            return Ok(doc);
        }
    }
    // Again under the row lock: another PayInvoice on this invoice records its saga in a transaction
    // holding the same lock, so of two concurrent ones the second sees the first's live saga.
    let Payable { owed, payment_method } = check_payable(&mut tx, ctx, &req, &doc).await?;
    let origin = EventOrigin::from(ctx);
    let retired = match &stale {
        Some(intent) => {
            default_payment::retire(&mut tx, &state.applications, &state.runner, &origin, &mut doc, intent)
                .await?
        }
        None => None,
    };
    let mut data = PayData {
        mode: PayMode::Charge,
        payment_method: Some(payment_method),
        amount: owed,
        description: format!("Payment for invoice {}", doc.number.clone().unwrap_or_else(|| doc.id.clone())),
        off_session: req.off_session,
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
    let mut first_step = "create_intent";
    if let Some(default) = invoice_payments::open_default(&mut *tx, ctx.scope(), &doc.id).await? {
        // The default payment finalization prepared is open for what is owed: confirm it.
        let intent = default.payment.as_ref().and_then(|p| p.payment_intent.clone());
        if default.amount_requested == owed && intent.is_some() {
            data.mode = PayMode::ConfirmDefault;
            data.intent = intent;
            data.leg.invoice_payment = default.id.clone();
            first_step = "confirm_intent";
        } else {
            return Err(ApiError::failed_precondition(
                ErrorReason::StateUnsupported,
                format!("Invoice {}'s default payment changed meanwhile; retry the request.", doc.id),
            ));
        }
    }
    let new = NewSaga {
        id: saga_id,
        scope: ctx.scope().clone(),
        kind: pay::KIND,
        step: first_step,
        data: encode(&data),
        subjects: key_subjects,
        idempotency_key: ctx.idempotency_key.clone(),
        result: None,
    };
    let (saga, fence) = saga_store::insert(&mut tx, &new, state.runner.holder(), state.runner.lease_until())
        .await
        .map_err(recorded_twice)?;
    tx.commit().await?;
    if wrote_events || retired.is_some() {
        state.hub.committed();
    }
    if let Some((release, release_fence)) = retired {
        let runner = state.runner.clone();
        // In the request's trace: the release's call to payments carries it.
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            runner.drive(release, release_fence).await
        }));
    }
    settle_platform::faults::hit("invoices.pay.after_record").await;
    respond(state.runner.drive(saga, fence).await)
}
