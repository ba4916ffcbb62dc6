//! `InvoiceService`: Stripe's `/v1/invoices`. Every change runs as an [`InvoiceOp`]: one transaction
//! that claims the idempotency key, locks the invoice, and commits the invoice with its events and
//! the idempotent response. AttachPayment, DetachPayment and PayInvoice with a payment are the
//! payment-application code's ([`super::applications`]).

pub(crate) mod lifecycle;
pub(crate) mod lines;
pub(crate) mod op;
pub(crate) mod params;

use settle_platform::ApiError;
use settle_platform::Scope;
use settle_platform::context::RequestContext;
use settle_platform::idempotency::{self, Claim};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::EventOrigin;
use settle_platform::pagination::PageRequest;
use settle_platform::search;
use settle_platform::time::now_unix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::invoice_service_server::InvoiceService;
use tonic::{Request, Response, Status};

use self::op::{Begun, Expand, InvoiceEvent, InvoiceOp, not_found, respond, with_confirmation_secret};
use super::AppState;
use super::applications;
use crate::applications::default_payment;
use crate::domain::invoice::InvoiceStatus;
use crate::model::lines::{MAX_LINES, apply_lines, line_for};
use crate::model::status_from_pb;
use crate::store::invoice_lists::{self, ListFilter, SEARCH_FIELDS};
use crate::store::{
    invoice_credits, invoice_items, invoice_lines, invoice_numbers, invoice_payments, invoices,
};

const CREATE: &str = "/settle.invoices.v1.InvoiceService/CreateInvoice";
const UPDATE: &str = "/settle.invoices.v1.InvoiceService/UpdateInvoice";
const DELETE: &str = "/settle.invoices.v1.InvoiceService/DeleteInvoice";
const FINALIZE: &str = "/settle.invoices.v1.InvoiceService/FinalizeInvoice";
const PAY: &str = "/settle.invoices.v1.InvoiceService/PayInvoice";
const VOID: &str = "/settle.invoices.v1.InvoiceService/VoidInvoice";
const MARK_UNCOLLECTIBLE: &str = "/settle.invoices.v1.InvoiceService/MarkInvoiceUncollectible";
const ADD_LINES: &str = "/settle.invoices.v1.InvoiceService/AddLines";
const UPDATE_LINES: &str = "/settle.invoices.v1.InvoiceService/UpdateLines";
const REMOVE_LINES: &str = "/settle.invoices.v1.InvoiceService/RemoveLines";

/// What a change that cancels the default PaymentIntent found before taking the invoice's lock.
enum Ahead {
    /// The idempotency key's stored response.
    Replay(Box<pb::Invoice>),
    /// Go ahead; the default PaymentIntent canceled, if the invoice had one open.
    Proceed(Option<String>),
}

/// The handlers of `InvoiceService`.
#[derive(Clone, Debug)]
pub struct InvoicesApi {
    state: AppState,
}

/// Refuses a number another invoice of the account already has (settle keeps numbers unique).
async fn check_number_free(op: &mut InvoiceOp, scope: &Scope) -> Result<(), ApiError> {
    if let Some(number) = op.doc.number.clone()
        && invoice_numbers::taken(&mut op.tx, scope, &number, &op.doc.id).await?
    {
        return Err(ApiError::invalid_param(
            "number",
            ErrorReason::ParameterInvalid,
            format!("Another invoice already has the number {number}."),
        ));
    }
    Ok(())
}

fn nothing_pending(customer: &str, currency: &str) -> ApiError {
    ApiError::failed_precondition(
        ErrorReason::InvoiceNoCustomerLineItems,
        format!("Nothing to invoice for customer {customer}: it has no pending invoice items in {currency}."),
    )
}

fn too_many_pending() -> ApiError {
    ApiError::invalid_param(
        "pending_invoice_items_behavior",
        ErrorReason::ParameterInvalid,
        format!(
            "The customer has more than {MAX_LINES} pending items; an invoice takes at most {MAX_LINES}."
        ),
    )
}

fn require_lines<T>(lines: &[T]) -> Result<(), ApiError> {
    if lines.is_empty() { Err(ApiError::missing_param("lines")) } else { Ok(()) }
}

impl InvoicesApi {
    pub fn new(state: AppState) -> Self {
        InvoicesApi { state }
    }

    /// Runs `change` on invoice `id` as one [`InvoiceOp`] and returns the invoice with `expand`.
    async fn mutate<M, F>(
        &self,
        ctx: &RequestContext,
        method: &'static str,
        request: &M,
        id: &str,
        expand: Expand,
        change: F,
    ) -> Result<pb::Invoice, ApiError>
    where
        M: prost::Message,
        F: AsyncFnOnce(&mut InvoiceOp) -> Result<(), ApiError>,
    {
        let mut op = match InvoiceOp::begin(&self.state, ctx, method, request, id, "id").await? {
            Begun::Replay(stored) => {
                return Ok(with_confirmation_secret(&self.state, ctx, stored, expand).await);
            }
            Begun::Fresh(op) => op,
        };
        change(&mut op).await?;
        op.commit(&self.state, ctx, expand).await
    }

    async fn create(
        &self,
        ctx: &RequestContext,
        req: pb::CreateInvoiceRequest,
    ) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        let now = now_unix();
        let (doc, include) = params::new_invoice(&req, IdPrefix::Invoice.generate(), ctx.livemode(), now)?;
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, CREATE, &req).await? {
            Claim::Replay(stored) => return Ok(with_confirmation_secret(state, ctx, stored, expand).await),
            Claim::Fresh(pending) => pending,
        };
        let mut op = InvoiceOp::creating(tx, pending, doc);
        check_number_free(&mut op, ctx.scope()).await?;
        let mut lines = Vec::new();
        if include {
            // Count before locking: a customer with thousands of pending items is refused without
            // a lock taken on any of them, and at most the cap plus one are ever locked.
            let (customer, currency) = (op.doc.customer.clone(), op.doc.currency.clone());
            let over_cap = MAX_LINES as i64 + 1;
            let pending =
                invoice_items::count_pending(&mut *op.tx, ctx.scope(), &customer, &currency, over_cap)
                    .await?;
            if pending == 0 {
                return Err(nothing_pending(&customer, &currency));
            }
            if pending > MAX_LINES as i64 {
                return Err(too_many_pending());
            }
            let items = invoice_items::pending_for_update(
                &mut op.tx,
                state.db.backend(),
                ctx.scope(),
                &customer,
                &currency,
                over_cap,
            )
            .await?;
            // Again as locked: items may have come or gone since the count.
            if items.is_empty() {
                return Err(nothing_pending(&customer, &currency));
            }
            if items.len() > MAX_LINES {
                return Err(too_many_pending());
            }
            for mut item in items {
                item.invoice = Some(op.doc.id.clone());
                invoice_items::update(&mut op.tx, ctx.scope(), &item).await?;
                let line = line_for(&item, &IdPrefix::InvoiceLine.generate(), Vec::new());
                invoice_lines::insert(&mut op.tx, ctx.scope(), &line).await?;
                lines.push(line);
            }
        }
        apply_lines(&mut op.doc, &lines)?;
        op.commit(state, ctx, expand).await
    }

    async fn get(&self, ctx: &RequestContext, req: pb::GetInvoiceRequest) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        if !IdPrefix::Invoice.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        let mut conn = self.state.db.pool().acquire().await?;
        let doc =
            invoices::find(&mut *conn, ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))?;
        respond(&self.state, ctx, &mut conn, doc, expand).await
    }

    async fn update(
        &self,
        ctx: &RequestContext,
        req: pb::UpdateInvoiceRequest,
    ) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        params::check_update(&req)?;
        let now = now_unix();
        let scope = ctx.scope();
        self.mutate(ctx, UPDATE, &req, &req.id, expand, async |op: &mut InvoiceOp| {
            params::check_update_status(&req, op.status()?)?;
            params::apply_update(&mut op.doc, &req, now)?;
            check_number_free(op, scope).await?;
            crate::model::recompute(&mut op.doc)?;
            op.emit(InvoiceEvent::Updated);
            Ok(())
        })
        .await
    }

    async fn delete(
        &self,
        ctx: &RequestContext,
        req: pb::DeleteInvoiceRequest,
    ) -> Result<pb::DeletedInvoice, ApiError> {
        let state = &self.state;
        let mut op = match InvoiceOp::begin(state, ctx, DELETE, &req, &req.id, "id").await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(op) => op,
        };
        let status = op.status()?;
        if status != InvoiceStatus::Draft {
            return Err(ApiError::failed_precondition(
                ErrorReason::StateUnsupported,
                format!(
                    "This invoice is {}: only a draft can be deleted (void it instead).",
                    status.as_str()
                ),
            ));
        }
        // Stripe deletes a draft's invoice items with it.
        for item in invoice_items::on_invoice(&mut op.tx, ctx.scope(), &req.id).await? {
            invoice_items::delete(&mut op.tx, ctx.scope(), &item.id).await?;
            op.append(state, ctx, "invoiceitem.deleted", &item.id, &item).await?;
        }
        op.commit_deleted(state, ctx).await
    }

    async fn finalize(
        &self,
        ctx: &RequestContext,
        req: pb::FinalizeInvoiceRequest,
    ) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        let now = now_unix();
        let state = &self.state;
        let mut op = match InvoiceOp::begin(state, ctx, FINALIZE, &req, &req.id, "id").await? {
            Begun::Replay(stored) => return Ok(with_confirmation_secret(state, ctx, stored, expand).await),
            Begun::Fresh(op) => op,
        };
        if let Some(auto) = req.auto_advance {
            op.doc.auto_advance = auto;
        }
        lifecycle::finalize(&mut op, state, ctx, now).await?;
        // Stripe creates a charge_automatically invoice's PaymentIntent while finalizing it.
        let prepared = if default_payment::wanted(&op.doc) {
            let origin = EventOrigin::from(ctx);
            Some(default_payment::record_prepare(&mut op.tx, &state.runner, &origin, &op.doc).await?)
        } else {
            None
        };
        // With a default payment to prepare, the answer is rendered again once it is; the secret
        // is fetched then, not twice.
        let first = if prepared.is_some() { Expand { confirmation_secret: false, ..expand } } else { expand };
        let response = op.commit(state, ctx, first).await?;
        let Some((saga, fence)) = prepared else { return Ok(response) };
        settle_platform::faults::hit("invoices.finalize.after_commit").await;
        // Inline for the confirmation secret; if payments cannot answer now, recovery finishes it.
        let _ = state.runner.drive(saga, fence).await;
        if !expand.confirmation_secret && !expand.payments {
            return Ok(response);
        }
        let mut conn = state.db.pool().acquire().await?;
        let doc =
            invoices::find(&mut *conn, ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))?;
        respond(state, ctx, &mut conn, doc, expand).await
    }

    async fn pay(&self, ctx: &RequestContext, req: pb::PayInvoiceRequest) -> Result<pb::Invoice, ApiError> {
        if req.paid_out_of_band != Some(true) {
            return applications::pay_invoice(&self.state, ctx, req).await;
        }
        let expand = Expand::parse(&req.expand, "")?;
        lifecycle::check_pay_out_of_band(&req)?;
        let now = now_unix();
        let state = &self.state;
        let canceled = match self
            .cancel_default_unless_refused(ctx, PAY, &req, &req.id, |doc, _| {
                lifecycle::check_out_of_band(doc)
            })
            .await?
        {
            Ahead::Replay(stored) => return Ok(with_confirmation_secret(state, ctx, *stored, expand).await),
            Ahead::Proceed(canceled) => canceled,
        };
        let mut op = match InvoiceOp::begin(state, ctx, PAY, &req, &req.id, "id").await? {
            Begun::Replay(stored) => return Ok(with_confirmation_secret(state, ctx, stored, expand).await),
            Begun::Fresh(op) => op,
        };
        let retired = self.retire_default(&mut op, ctx, canceled.as_deref()).await?;
        lifecycle::pay_out_of_band(&mut op, state, ctx, now).await?;
        let response = op.commit(state, ctx, expand).await?;
        self.release_retired(retired).await;
        Ok(response)
    }

    async fn void(&self, ctx: &RequestContext, req: pb::VoidInvoiceRequest) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        let now = now_unix();
        let state = &self.state;
        let canceled = match self
            .cancel_default_unless_refused(ctx, VOID, &req, &req.id, lifecycle::check_void)
            .await?
        {
            Ahead::Replay(stored) => return Ok(with_confirmation_secret(state, ctx, *stored, expand).await),
            Ahead::Proceed(canceled) => canceled,
        };
        let mut op = match InvoiceOp::begin(state, ctx, VOID, &req, &req.id, "id").await? {
            Begun::Replay(stored) => return Ok(with_confirmation_secret(state, ctx, stored, expand).await),
            Begun::Fresh(op) => op,
        };
        let retired = self.retire_default(&mut op, ctx, canceled.as_deref()).await?;
        lifecycle::void(&mut op, state, ctx, now).await?;
        let response = op.commit(state, ctx, expand).await?;
        self.release_retired(retired).await;
        Ok(response)
    }

    /// Before a change that stops the invoice expecting its default PaymentIntent (void, paid out of
    /// band): answers a replay of the idempotency key and refuses what `check` refuses on the invoice
    /// as it is now — read without locking it, the default payment aside — and only then cancels the
    /// PaymentIntent in payments, so a refused request leaves it payable. The change itself checks
    /// again under the row lock.
    async fn cancel_default_unless_refused<M: prost::Message>(
        &self,
        ctx: &RequestContext,
        method: &'static str,
        request: &M,
        id: &str,
        check: impl FnOnce(&pb::Invoice, lifecycle::Attached) -> Result<(), ApiError>,
    ) -> Result<Ahead, ApiError> {
        if !IdPrefix::Invoice.matches(id) {
            return Err(not_found(id));
        }
        let scope = ctx.scope();
        {
            let mut conn = self.state.db.pool().acquire().await?;
            if let Some(stored) = idempotency::replayed(&mut *conn, ctx, method, request).await? {
                return Ok(Ahead::Replay(Box::new(stored)));
            }
            let doc = invoices::find(&mut *conn, scope, id).await?.ok_or_else(|| not_found(id))?;
            let attached = lifecycle::Attached {
                payments: invoice_payments::has_live_besides_open_default(&mut *conn, scope, id).await?,
                credits: invoice_credits::has_live(&mut *conn, scope, id).await?,
            };
            check(&doc, attached)?;
        }
        default_payment::cancel_open_default(&self.state.applications, scope, id).await.map(Ahead::Proceed)
    }

    /// Retires the invoice payment of the default PaymentIntent `canceled` in the operation's
    /// transaction; the returned saga releases its attachment once committed.
    async fn retire_default(
        &self,
        op: &mut InvoiceOp,
        ctx: &RequestContext,
        canceled: Option<&str>,
    ) -> Result<Option<(settle_saga::Saga, settle_saga::Fence)>, ApiError> {
        let Some(canceled) = canceled else { return Ok(None) };
        let state = &self.state;
        let origin = EventOrigin::from(ctx);
        default_payment::retire(
            &mut op.tx,
            &state.applications,
            &state.runner,
            &origin,
            &mut op.doc,
            canceled,
        )
        .await
    }

    async fn release_retired(&self, retired: Option<(settle_saga::Saga, settle_saga::Fence)>) {
        if let Some((saga, fence)) = retired {
            // The invoice no longer counts the payment; payments' release may finish in recovery.
            let _ = self.state.runner.drive(saga, fence).await;
        }
    }

    async fn mark_uncollectible(
        &self,
        ctx: &RequestContext,
        req: pb::MarkInvoiceUncollectibleRequest,
    ) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        let now = now_unix();
        self.mutate(ctx, MARK_UNCOLLECTIBLE, &req, &req.id, expand, async |op: &mut InvoiceOp| {
            lifecycle::mark_uncollectible(op, now)
        })
        .await
    }

    async fn add_lines(
        &self,
        ctx: &RequestContext,
        req: pb::AddLinesRequest,
    ) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        require_lines(&req.lines)?;
        let now = now_unix();
        let state = &self.state;
        self.mutate(ctx, ADD_LINES, &req, &req.id, expand, async |op: &mut InvoiceOp| {
            lines::add_lines(op, state, ctx, &req, now).await
        })
        .await
    }

    async fn update_lines(
        &self,
        ctx: &RequestContext,
        req: pb::UpdateLinesRequest,
    ) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        require_lines(&req.lines)?;
        let state = &self.state;
        self.mutate(ctx, UPDATE_LINES, &req, &req.id, expand, async |op: &mut InvoiceOp| {
            lines::update_lines(op, state, ctx, &req).await
        })
        .await
    }

    async fn remove_lines(
        &self,
        ctx: &RequestContext,
        req: pb::RemoveLinesRequest,
    ) -> Result<pb::Invoice, ApiError> {
        let expand = Expand::parse(&req.expand, "")?;
        require_lines(&req.lines)?;
        let state = &self.state;
        self.mutate(ctx, REMOVE_LINES, &req, &req.id, expand, async |op: &mut InvoiceOp| {
            lines::remove_lines(op, state, ctx, &req).await
        })
        .await
    }

    async fn list_lines(
        &self,
        ctx: &RequestContext,
        req: pb::ListInvoiceLinesRequest,
    ) -> Result<pb::ListInvoiceLinesResponse, ApiError> {
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::InvoiceLine,
        )?;
        if !IdPrefix::Invoice.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        let db = &self.state.db;
        invoices::find(db.pool(), ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))?;
        let page = invoice_lines::page(db, ctx.scope(), &req.id, &page).await?;
        Ok(pb::ListInvoiceLinesResponse { data: page.data, has_more: page.has_more })
    }

    /// Renders listed or found invoices as the API returns them.
    async fn respond_all(
        &self,
        ctx: &RequestContext,
        docs: Vec<pb::Invoice>,
        expand: Expand,
    ) -> Result<Vec<pb::Invoice>, ApiError> {
        let mut conn = self.state.db.pool().acquire().await?;
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            out.push(respond(&self.state, ctx, &mut conn, doc, expand).await?);
        }
        Ok(out)
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListInvoicesRequest,
    ) -> Result<pb::ListInvoicesResponse, ApiError> {
        let expand = Expand::parse(&req.expand, "data.")?;
        validate::unsupported(
            "customer_account",
            req.customer_account.as_deref().is_some_and(|c| !c.is_empty()),
            "filter by customer instead",
        )?;
        validate::unsupported(
            "subscription",
            req.subscription.as_deref().is_some_and(|s| !s.is_empty()),
            "settle has no subscriptions",
        )?;
        let customer = match req.customer.as_deref() {
            None | Some("") => None,
            Some(c) => Some(params::customer("customer", Some(c))?),
        };
        let status = match req.status {
            None => None,
            Some(value) => Some(status_from_pb(Some(value)).map(InvoiceStatus::as_str).ok_or_else(|| {
                ApiError::invalid_param(
                    "status",
                    ErrorReason::ParameterInvalid,
                    "status must be draft, open, paid, uncollectible or void.",
                )
            })?),
        };
        let collection_method = match req.collection_method.map(pb::InvoiceCollectionMethod::try_from) {
            None => None,
            Some(Ok(pb::InvoiceCollectionMethod::ChargeAutomatically)) => Some("charge_automatically"),
            Some(Ok(pb::InvoiceCollectionMethod::SendInvoice)) => Some("send_invoice"),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "collection_method",
                    ErrorReason::ParameterInvalid,
                    "collection_method must be charge_automatically or send_invoice.",
                ));
            }
        };
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::Invoice,
        )?;
        let filter =
            ListFilter { customer, status, collection_method, created: req.created, due_date: req.due_date };
        let page = invoice_lists::list(&self.state.db, ctx.scope(), &filter, &page).await?;
        Ok(pb::ListInvoicesResponse {
            data: self.respond_all(ctx, page.data, expand).await?,
            has_more: page.has_more,
        })
    }

    async fn search(
        &self,
        ctx: &RequestContext,
        req: pb::SearchInvoicesRequest,
    ) -> Result<pb::SearchInvoicesResponse, ApiError> {
        let expand = Expand::parse(&req.expand, "data.")?;
        let query = search::parse(&req.query, SEARCH_FIELDS)?;
        let limit = PageRequest::parse(req.limit, None, None, IdPrefix::Invoice)?.limit;
        let after = match req.page.as_deref().filter(|p| !p.is_empty()) {
            Some(page) if IdPrefix::Invoice.matches(page) => Some(page),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "page",
                    ErrorReason::ParameterInvalid,
                    "Invalid page: pass a next_page value from an earlier search.",
                ));
            }
            None => None,
        };
        let (page, total) = invoice_lists::search(&self.state.db, ctx.scope(), &query, after, limit).await?;
        let next_page = if page.has_more { page.data.last().map(|last| last.id.clone()) } else { None };
        Ok(pb::SearchInvoicesResponse {
            data: self.respond_all(ctx, page.data, expand).await?,
            has_more: page.has_more,
            next_page,
            total_count: Some(total),
        })
    }
}

#[tonic::async_trait]
impl InvoiceService for InvoicesApi {
    async fn create_invoice(
        &self,
        request: Request<pb::CreateInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.create(&ctx, request.into_inner()).await?))
    }

    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn update_invoice(
        &self,
        request: Request<pb::UpdateInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.update(&ctx, request.into_inner()).await?))
    }

    async fn delete_invoice(
        &self,
        request: Request<pb::DeleteInvoiceRequest>,
    ) -> Result<Response<pb::DeletedInvoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.delete(&ctx, request.into_inner()).await?))
    }

    async fn finalize_invoice(
        &self,
        request: Request<pb::FinalizeInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.finalize(&ctx, request.into_inner()).await?))
    }

    async fn pay_invoice(
        &self,
        request: Request<pb::PayInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.pay(&ctx, request.into_inner()).await?))
    }

    async fn void_invoice(
        &self,
        request: Request<pb::VoidInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.void(&ctx, request.into_inner()).await?))
    }

    async fn mark_invoice_uncollectible(
        &self,
        request: Request<pb::MarkInvoiceUncollectibleRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.mark_uncollectible(&ctx, request.into_inner()).await?))
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn search_invoices(
        &self,
        request: Request<pb::SearchInvoicesRequest>,
    ) -> Result<Response<pb::SearchInvoicesResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.search(&ctx, request.into_inner()).await?))
    }

    async fn add_lines(
        &self,
        request: Request<pb::AddLinesRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(InvoicesApi::add_lines(self, &ctx, request.into_inner()).await?))
    }

    async fn update_lines(
        &self,
        request: Request<pb::UpdateLinesRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(InvoicesApi::update_lines(self, &ctx, request.into_inner()).await?))
    }

    async fn remove_lines(
        &self,
        request: Request<pb::RemoveLinesRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(InvoicesApi::remove_lines(self, &ctx, request.into_inner()).await?))
    }

    async fn list_invoice_lines(
        &self,
        request: Request<pb::ListInvoiceLinesRequest>,
    ) -> Result<Response<pb::ListInvoiceLinesResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list_lines(&ctx, request.into_inner()).await?))
    }

    async fn attach_payment(
        &self,
        request: Request<pb::AttachPaymentRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(applications::attach_payment(&self.state, &ctx, request.into_inner()).await?))
    }

    async fn detach_payment(
        &self,
        request: Request<pb::DetachPaymentRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(applications::detach_payment(&self.state, &ctx, request.into_inner()).await?))
    }

    async fn reapply_payment(
        &self,
        request: Request<pb::ReapplyPaymentRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(applications::reapply_payment(&self.state, &ctx, request.into_inner()).await?))
    }
}
