//! `PaymentIntentService`: Stripe's PaymentIntents API.

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::db::Tx;
use settle_platform::idempotency::{self, Claim};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::{self, EventOrigin};
use settle_platform::pagination::PageRequest;
use settle_platform::search;
use settle_platform::time::now_unix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::payment_intent_service_server::PaymentIntentService;
use tonic::{Request, Response, Status};

use super::AppState;
use super::params::{self, Descriptive};
use crate::domain::payment_intent::{IntentEvent, NewIntent, PaymentIntent};
use crate::model::{cancellation_reason_from_pb, intent_from_document, render_intent};
use crate::store::attachments;
use crate::store::payment_intents::{self as store, ListFilter, SEARCH_FIELDS};

const CREATE: &str = "/settle.payments.v1.PaymentIntentService/CreatePaymentIntent";
const UPDATE: &str = "/settle.payments.v1.PaymentIntentService/UpdatePaymentIntent";
const CONFIRM: &str = "/settle.payments.v1.PaymentIntentService/ConfirmPaymentIntent";
const CAPTURE: &str = "/settle.payments.v1.PaymentIntentService/CapturePaymentIntent";
const CANCEL: &str = "/settle.payments.v1.PaymentIntentService/CancelPaymentIntent";

/// The handlers of `PaymentIntentService`.
#[derive(Clone, Debug)]
pub struct PaymentIntentsApi {
    state: AppState,
}

impl PaymentIntentsApi {
    pub fn new(state: AppState) -> Self {
        PaymentIntentsApi { state }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::PaymentIntent, id, "id")
}

/// Appends one outbox event per domain event, each carrying the intent as it now is.
async fn append_events(
    tx: &mut Tx,
    state: &AppState,
    ctx: &RequestContext,
    doc: &pb::PaymentIntent,
    events: &[IntentEvent],
) -> Result<(), ApiError> {
    let origin = EventOrigin::from(ctx);
    for event in events {
        outbox::append(tx, state.db.backend(), &origin, event.event_type(), &doc.id, doc, None).await?;
    }
    Ok(())
}

/// Parameters that only make sense while confirming.
fn confirm_only_params(req: &pb::CreatePaymentIntentRequest) -> Option<&'static str> {
    [
        ("error_on_requires_action", req.error_on_requires_action.is_some()),
        ("mandate", req.mandate.is_some()),
        ("mandate_data", req.mandate_data.is_some()),
        ("off_session", req.off_session.is_some()),
        ("radar_options", req.radar_options.is_some()),
        ("return_url", req.return_url.is_some()),
        ("use_stripe_sdk", req.use_stripe_sdk.is_some()),
    ]
    .into_iter()
    .find_map(|(name, present)| present.then_some(name))
}

/// Loads the intent under a row lock, lets `change` alter it, stores it with its events and the
/// idempotent response, all in one transaction. Every RPC that changes an intent goes through here
/// (the test helpers' settlement too).
pub(crate) async fn mutate_intent<M, F>(
    state: &AppState,
    ctx: &RequestContext,
    method: &'static str,
    request: &M,
    id: &str,
    refuse_if_attached: Option<&'static str>,
    change: F,
) -> Result<pb::PaymentIntent, ApiError>
where
    M: prost::Message,
    F: FnOnce(&mut PaymentIntent, &mut pb::PaymentIntent) -> Result<Vec<IntentEvent>, ApiError>,
{
    if !IdPrefix::PaymentIntent.matches(id) {
        return Err(not_found(id));
    }
    let mut tx = state.db.begin().await?;
    let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, method, request).await? {
        Claim::Replay(stored) => return Ok(stored),
        Claim::Fresh(pending) => pending,
    };
    let mut doc = store::find_for_update(&mut tx, state.db.backend(), ctx.scope(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(field) = refuse_if_attached {
        // The intent's row lock serializes this with ReserveAttachment, which locks it too.
        if let Some(attachment) = attachments::find_active(&mut *tx, ctx.scope(), id).await? {
            return Err(ApiError::failed_precondition(
                ErrorReason::PaymentAlreadyAttached,
                format!(
                    "This PaymentIntent is attached to invoice {}; its {field} cannot change until it is detached.",
                    attachment.invoice
                ),
            )
            .with_violation(field, "The payment is attached to an invoice."));
        }
    }
    let mut intent = intent_from_document(&doc)?;
    let events = change(&mut intent, &mut doc)?;
    render_intent(&intent, &mut doc);
    store::update(&mut tx, ctx.scope(), &doc).await?;
    append_events(&mut tx, state, ctx, &doc, &events).await?;
    pending.record(&mut tx, &doc).await?;
    tx.commit().await?;
    settle_platform::faults::hit("payments.intent_change.after_commit").await;
    if !events.is_empty() {
        state.hub.committed();
    }
    Ok(doc)
}

impl PaymentIntentsApi {
    async fn create(
        &self,
        ctx: &RequestContext,
        req: pb::CreatePaymentIntentRequest,
    ) -> Result<pb::PaymentIntent, ApiError> {
        params::unsupported_connect(
            req.application_fee_amount,
            req.on_behalf_of.as_deref(),
            req.transfer_data.as_ref(),
            req.confirmation_token.as_deref(),
            req.payment_method_configuration.as_deref(),
        )?;
        let confirm = req.confirm.unwrap_or(false);
        if !confirm && let Some(name) = confirm_only_params(&req) {
            return Err(ApiError::invalid_param(
                name,
                ErrorReason::ParameterInvalid,
                format!("{name} can only be used with confirm=true."),
            ));
        }
        let currency = params::currency("currency", &req.currency)?;
        let capture_method = params::capture_method("capture_method", req.capture_method)?
            .unwrap_or(crate::domain::payment_intent::CaptureMethod::Automatic);
        let customer = params::customer("customer", req.customer.as_deref())?;
        let payment_method =
            params::payment_method(req.payment_method.as_deref(), req.payment_method_data.as_ref())?;
        let payment_method_types = params::method_types("payment_method_types", &req.payment_method_types)?;
        Descriptive {
            description: req.description.as_deref(),
            receipt_email: req.receipt_email.as_deref(),
            statement_descriptor: req.statement_descriptor.as_deref(),
            statement_descriptor_suffix: req.statement_descriptor_suffix.as_deref(),
            metadata: &req.metadata,
        }
        .check()?;
        let shipping = params::shipping(req.shipping.as_ref())?;

        let id = IdPrefix::PaymentIntent.generate();
        let (mut intent, mut events) = PaymentIntent::create(
            id.clone(),
            NewIntent {
                amount: req.amount,
                currency,
                capture_method,
                customer,
                payment_method,
                payment_method_types,
            },
        )?;
        if confirm {
            events.extend(intent.confirm(None, IdPrefix::Charge.generate())?);
        }
        let mut doc = pb::PaymentIntent {
            amount_details: params::amount_details(&id, req.amount_details.as_ref())?,
            automatic_payment_methods: req.automatic_payment_methods,
            client_secret: Some(IdPrefix::client_secret(&id)),
            confirmation_method: req
                .confirmation_method
                .unwrap_or(pb::PaymentIntentConfirmationMethod::Automatic as i32),
            created: now_unix(),
            customer_account: params::non_empty(req.customer_account.as_ref()),
            description: params::non_empty(req.description.as_ref()),
            excluded_payment_method_types: req.excluded_payment_method_types.clone(),
            hooks: req.hooks.clone(),
            livemode: ctx.livemode(),
            metadata: req.metadata.clone(),
            payment_details: req.payment_details.clone(),
            payment_method_options: params::merge_method_options(None, req.payment_method_options.as_ref())?,
            receipt_email: params::non_empty(req.receipt_email.as_ref()),
            setup_future_usage: req.setup_future_usage,
            shipping,
            statement_descriptor: params::non_empty(req.statement_descriptor.as_ref()),
            statement_descriptor_suffix: params::non_empty(req.statement_descriptor_suffix.as_ref()),
            transfer_group: params::non_empty(req.transfer_group.as_ref()),
            ..Default::default()
        };
        render_intent(&intent, &mut doc);

        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, CREATE, &req).await? {
            Claim::Replay(stored) => return Ok(stored),
            Claim::Fresh(pending) => pending,
        };
        store::insert(&mut tx, ctx.scope(), &doc).await?;
        append_events(&mut tx, state, ctx, &doc, &events).await?;
        pending.record(&mut tx, &doc).await?;
        tx.commit().await?;
        settle_platform::faults::hit("payments.create_intent.after_commit").await;
        state.hub.committed();
        Ok(doc)
    }

    /// Loads the intent under a row lock, lets `change` alter it, stores it with its events and the
    /// idempotent response, all in one transaction.
    async fn mutate<M, F>(
        &self,
        ctx: &RequestContext,
        method: &'static str,
        request: &M,
        id: &str,
        refuse_if_attached: Option<&'static str>,
        change: F,
    ) -> Result<pb::PaymentIntent, ApiError>
    where
        M: prost::Message,
        F: FnOnce(&mut PaymentIntent, &mut pb::PaymentIntent) -> Result<Vec<IntentEvent>, ApiError>,
    {
        mutate_intent(&self.state, ctx, method, request, id, refuse_if_attached, change).await
    }

    async fn update(
        &self,
        ctx: &RequestContext,
        req: pb::UpdatePaymentIntentRequest,
    ) -> Result<pb::PaymentIntent, ApiError> {
        params::unsupported_connect(
            req.application_fee_amount,
            None,
            req.transfer_data.as_ref(),
            None,
            req.payment_method_configuration.as_deref(),
        )?;
        let currency = req.currency.as_deref().map(|c| params::currency("currency", c)).transpose()?;
        let capture_method = params::capture_method("capture_method", req.capture_method)?;
        let customer = req.customer.as_deref().map(|c| params::customer("customer", Some(c))).transpose()?;
        let payment_method =
            params::payment_method(req.payment_method.as_deref(), req.payment_method_data.as_ref())?
                .or_else(|| req.payment_method.as_ref().filter(|p| p.is_empty()).cloned());
        let method_types = if req.payment_method_types.is_empty() {
            None
        } else {
            Some(params::method_types("payment_method_types", &req.payment_method_types)?)
        };
        Descriptive {
            description: req.description.as_deref(),
            receipt_email: req.receipt_email.as_deref(),
            statement_descriptor: req.statement_descriptor.as_deref(),
            statement_descriptor_suffix: req.statement_descriptor_suffix.as_deref(),
            metadata: &req.metadata,
        }
        .check()?;
        let shipping = req.shipping.as_ref().map(|s| params::shipping(Some(s))).transpose()?;
        let id = req.id.clone();

        // What an attached invoice counted must not change under it.
        let money_field = if req.amount.is_some() {
            Some("amount")
        } else if req.currency.is_some() {
            Some("currency")
        } else if req.customer.is_some() {
            Some("customer")
        } else {
            None
        };
        self.mutate(ctx, UPDATE, &req, &id, money_field, |intent, doc| {
            // Money and method fields first: they may be refused by the intent's status.
            if let Some(currency) = currency {
                intent.set_currency(currency)?;
            }
            if let Some(amount) = req.amount {
                intent.set_amount(amount)?;
            }
            if let Some(customer) = customer {
                intent.set_customer(customer)?;
            }
            if let Some(capture_method) = capture_method {
                intent.set_capture_method(capture_method)?;
            }
            if let Some(types) = method_types {
                intent.set_payment_method_types(types)?;
            }
            if let Some(method) = &payment_method {
                intent.set_payment_method(method)?;
            }
            if let Some(details) = &req.amount_details {
                doc.amount_details = params::amount_details(&doc.id, Some(details))?;
            }
            if let Some(description) = &req.description {
                doc.description = params::non_empty(Some(description));
            }
            if let Some(email) = &req.receipt_email {
                doc.receipt_email = params::non_empty(Some(email));
            }
            if let Some(d) = &req.statement_descriptor {
                doc.statement_descriptor = params::non_empty(Some(d));
            }
            if let Some(d) = &req.statement_descriptor_suffix {
                doc.statement_descriptor_suffix = params::non_empty(Some(d));
            }
            if let Some(group) = &req.transfer_group {
                doc.transfer_group = params::non_empty(Some(group));
            }
            if let Some(account) = &req.customer_account {
                doc.customer_account = params::non_empty(Some(account));
            }
            if let Some(shipping) = shipping {
                doc.shipping = shipping;
            }
            if let Some(usage) = req.setup_future_usage {
                doc.setup_future_usage = (usage != 0).then_some(usage);
            }
            if let Some(excluded) = &req.excluded_payment_method_types {
                doc.excluded_payment_method_types.clone_from(&excluded.values);
            }
            if req.hooks.is_some() {
                doc.hooks.clone_from(&req.hooks);
            }
            if req.payment_details.is_some() {
                doc.payment_details.clone_from(&req.payment_details);
            }
            doc.payment_method_options = params::merge_method_options(
                doc.payment_method_options.take(),
                req.payment_method_options.as_ref(),
            )?;
            validate::merge_metadata(&mut doc.metadata, &req.metadata);
            validate::metadata("metadata", &doc.metadata)?;
            Ok(Vec::new())
        })
        .await
    }

    async fn confirm(
        &self,
        ctx: &RequestContext,
        req: pb::ConfirmPaymentIntentRequest,
    ) -> Result<pb::PaymentIntent, ApiError> {
        validate::unsupported(
            "confirmation_token",
            req.confirmation_token.as_deref().is_some_and(|t| !t.is_empty()),
            "settle has no ConfirmationTokens",
        )?;
        let capture_method = params::capture_method("capture_method", req.capture_method)?;
        let payment_method =
            params::payment_method(req.payment_method.as_deref(), req.payment_method_data.as_ref())?;
        let method_types = if req.payment_method_types.is_empty() {
            None
        } else {
            Some(params::method_types("payment_method_types", &req.payment_method_types)?)
        };
        if let Some(email) = req.receipt_email.as_deref().filter(|e| !e.is_empty()) {
            validate::email("receipt_email", email)?;
        }
        let shipping = req.shipping.as_ref().map(|s| params::shipping(Some(s))).transpose()?;
        let id = req.id.clone();
        self.mutate(ctx, CONFIRM, &req, &id, None, |intent, doc| {
            if let Some(secret) = req.client_secret.as_deref() {
                check_client_secret(doc, secret)?;
            }
            if let Some(amount) = req.amount_to_confirm
                && amount != intent.amount.get()
            {
                return Err(ApiError::invalid_param(
                    "amount_to_confirm",
                    ErrorReason::PaymentIntentInvalidParameter,
                    "settle has no partial authorizations: amount_to_confirm must equal the intent's amount.",
                ));
            }
            if let Some(capture_method) = capture_method {
                intent.set_capture_method(capture_method)?;
            }
            if let Some(types) = method_types {
                intent.set_payment_method_types(types)?;
            }
            if let Some(details) = &req.amount_details {
                doc.amount_details = params::amount_details(&doc.id, Some(details))?;
            }
            if let Some(email) = &req.receipt_email {
                doc.receipt_email = params::non_empty(Some(email));
            }
            if let Some(shipping) = shipping {
                doc.shipping = shipping;
            }
            if let Some(usage) = req.setup_future_usage {
                doc.setup_future_usage = (usage != 0).then_some(usage);
            }
            if let Some(excluded) = &req.excluded_payment_method_types {
                doc.excluded_payment_method_types.clone_from(&excluded.values);
            }
            if req.hooks.is_some() {
                doc.hooks.clone_from(&req.hooks);
            }
            if req.payment_details.is_some() {
                doc.payment_details.clone_from(&req.payment_details);
            }
            doc.payment_method_options = params::merge_method_options(
                doc.payment_method_options.take(),
                req.payment_method_options.as_ref(),
            )?;
            Ok(intent.confirm(payment_method.as_deref(), IdPrefix::Charge.generate())?)
        })
        .await
    }

    async fn capture(
        &self,
        ctx: &RequestContext,
        req: pb::CapturePaymentIntentRequest,
    ) -> Result<pb::PaymentIntent, ApiError> {
        params::unsupported_connect(
            req.application_fee_amount,
            None,
            req.transfer_data.as_ref(),
            None,
            None,
        )?;
        validate::unsupported(
            "final_capture",
            req.final_capture == Some(false),
            "settle has no multicapture",
        )?;
        validate::max_len("statement_descriptor", req.statement_descriptor.as_deref(), 22)?;
        validate::max_len("statement_descriptor_suffix", req.statement_descriptor_suffix.as_deref(), 22)?;
        validate::metadata("metadata", &req.metadata)?;
        let id = req.id.clone();
        self.mutate(ctx, CAPTURE, &req, &id, None, |intent, doc| {
            let events = intent.capture(req.amount_to_capture)?;
            if let Some(details) = &req.amount_details {
                doc.amount_details = params::amount_details(&doc.id, Some(details))?;
            }
            if let Some(d) = &req.statement_descriptor {
                doc.statement_descriptor = params::non_empty(Some(d));
            }
            if let Some(d) = &req.statement_descriptor_suffix {
                doc.statement_descriptor_suffix = params::non_empty(Some(d));
            }
            if req.hooks.is_some() {
                doc.hooks.clone_from(&req.hooks);
            }
            if req.payment_details.is_some() {
                doc.payment_details.clone_from(&req.payment_details);
            }
            validate::merge_metadata(&mut doc.metadata, &req.metadata);
            Ok(events)
        })
        .await
    }

    async fn cancel(
        &self,
        ctx: &RequestContext,
        req: pb::CancelPaymentIntentRequest,
    ) -> Result<pb::PaymentIntent, ApiError> {
        let reason = match req.cancellation_reason {
            None | Some(0) => None,
            Some(value) => Some(cancellation_reason_from_pb(value).ok_or_else(|| {
                ApiError::invalid_param(
                    "cancellation_reason",
                    ErrorReason::ParameterInvalid,
                    "Invalid cancellation_reason.",
                )
            })?),
        };
        let id = req.id.clone();
        let now = now_unix();
        let by_platform = ctx.principal.is_internal();
        self.mutate(ctx, CANCEL, &req, &id, None, |intent, _doc| {
            Ok(intent.cancel(reason, by_platform, now)?)
        })
        .await
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        req: pb::GetPaymentIntentRequest,
    ) -> Result<pb::PaymentIntent, ApiError> {
        if !IdPrefix::PaymentIntent.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        let doc =
            store::find(&self.state.db, ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))?;
        if let Some(secret) = req.client_secret.as_deref() {
            check_client_secret(&doc, secret)?;
        }
        Ok(doc)
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListPaymentIntentsRequest,
    ) -> Result<pb::ListPaymentIntentsResponse, ApiError> {
        validate::unsupported(
            "customer_account",
            req.customer_account.as_deref().is_some_and(|c| !c.is_empty()),
            "filter by customer instead",
        )?;
        let customer = params::customer("customer", req.customer.as_deref())?;
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::PaymentIntent,
        )?;
        let filter = ListFilter { customer, created: req.created };
        let page = store::list(&self.state.db, ctx.scope(), &filter, &page).await?;
        Ok(pb::ListPaymentIntentsResponse { data: page.data, has_more: page.has_more })
    }

    async fn search(
        &self,
        ctx: &RequestContext,
        req: pb::SearchPaymentIntentsRequest,
    ) -> Result<pb::SearchPaymentIntentsResponse, ApiError> {
        let query = search::parse(&req.query, SEARCH_FIELDS)?;
        let limit = PageRequest::parse(req.limit, None, None, IdPrefix::PaymentIntent)?.limit;
        let after = match req.page.as_deref().filter(|p| !p.is_empty()) {
            Some(page) if IdPrefix::PaymentIntent.matches(page) => Some(page),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "page",
                    ErrorReason::ParameterInvalid,
                    "Invalid page: pass a next_page value from an earlier search.",
                ));
            }
            None => None,
        };
        let (page, total) = store::search(&self.state.db, ctx.scope(), &query, after, limit).await?;
        let next_page = if page.has_more { page.data.last().map(|last| last.id.clone()) } else { None };
        Ok(pb::SearchPaymentIntentsResponse {
            data: page.data,
            has_more: page.has_more,
            next_page,
            total_count: total,
        })
    }
}

fn check_client_secret(doc: &pb::PaymentIntent, secret: &str) -> Result<(), ApiError> {
    if doc.client_secret.as_deref() == Some(secret) {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "client_secret",
            ErrorReason::ParameterInvalid,
            "The client_secret provided does not match the client_secret associated with the PaymentIntent.",
        ))
    }
}

#[tonic::async_trait]
impl PaymentIntentService for PaymentIntentsApi {
    async fn create_payment_intent(
        &self,
        request: Request<pb::CreatePaymentIntentRequest>,
    ) -> Result<Response<pb::PaymentIntent>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.create(&ctx, request.into_inner()).await?))
    }

    async fn get_payment_intent(
        &self,
        request: Request<pb::GetPaymentIntentRequest>,
    ) -> Result<Response<pb::PaymentIntent>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn update_payment_intent(
        &self,
        request: Request<pb::UpdatePaymentIntentRequest>,
    ) -> Result<Response<pb::PaymentIntent>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.update(&ctx, request.into_inner()).await?))
    }

    async fn confirm_payment_intent(
        &self,
        request: Request<pb::ConfirmPaymentIntentRequest>,
    ) -> Result<Response<pb::PaymentIntent>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.confirm(&ctx, request.into_inner()).await?))
    }

    async fn capture_payment_intent(
        &self,
        request: Request<pb::CapturePaymentIntentRequest>,
    ) -> Result<Response<pb::PaymentIntent>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.capture(&ctx, request.into_inner()).await?))
    }

    async fn cancel_payment_intent(
        &self,
        request: Request<pb::CancelPaymentIntentRequest>,
    ) -> Result<Response<pb::PaymentIntent>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.cancel(&ctx, request.into_inner()).await?))
    }

    async fn list_payment_intents(
        &self,
        request: Request<pb::ListPaymentIntentsRequest>,
    ) -> Result<Response<pb::ListPaymentIntentsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn search_payment_intents(
        &self,
        request: Request<pb::SearchPaymentIntentsRequest>,
    ) -> Result<Response<pb::SearchPaymentIntentsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.search(&ctx, request.into_inner()).await?))
    }
}
