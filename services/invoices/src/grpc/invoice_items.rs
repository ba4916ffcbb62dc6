//! `InvoiceItemService`: Stripe's `/v1/invoiceitems`. A pending item changes on its own; an item on a
//! draft changes with its line and the draft's amounts, under the draft's lock (taken before the
//! item's, as every path here does).

use settle_money::Amount;
use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::db::Tx;
use settle_platform::idempotency::{self, Claim, Pending};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::{self, EventOrigin};
use settle_platform::pagination::PageRequest;
use settle_platform::time::now_unix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::invoice_item_service_server::InvoiceItemService;
use tonic::{Request, Response, Status};

use super::AppState;
use super::charges::{self, PriceData};
use super::invoices::lines::{check_line_count, require_draft};
use super::invoices::op::{Begun, InvoiceEvent, InvoiceOp};
use super::invoices::params::{currency, customer, merge_metadata, new_metadata, non_empty};
use crate::domain::charge::{Charge, Decimal};
use crate::model::lines::{self as model_lines, ItemFields, ItemOwner, charge_of, line_for};
use crate::store::invoice_items::{self as store, ListFilter};
use crate::store::invoice_lines;

const CREATE: &str = "/settle.invoices.v1.InvoiceItemService/CreateInvoiceItem";
const UPDATE: &str = "/settle.invoices.v1.InvoiceItemService/UpdateInvoiceItem";
const DELETE: &str = "/settle.invoices.v1.InvoiceItemService/DeleteInvoiceItem";

/// How often an update or delete re-reads an item that moved between invoices while it waited.
const MOVED_RETRIES: usize = 3;

/// The handlers of `InvoiceItemService`.
#[derive(Clone, Debug)]
pub struct InvoiceItemsApi {
    state: AppState,
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::InvoiceItem, id, "id")
}

fn kept_moving(id: &str) -> ApiError {
    ApiError::new(
        tonic::Code::Aborted,
        ErrorReason::StateUnsupported,
        format!("The invoice item {id} kept moving between invoices while this request waited; retry it."),
    )
}

/// How an item's charge is given: `amount`, `price_data` or `unit_amount_decimal` (at most one).
#[derive(Debug, Clone, Default)]
struct Pricing {
    amount: Option<Amount>,
    price_data: Option<pb::InvoiceItemPriceDataParams>,
    unit_amount_decimal: Option<Decimal>,
    quantity: Option<Decimal>,
}

impl Pricing {
    fn parse(
        amount: Option<i64>,
        price_data: Option<&pb::InvoiceItemPriceDataParams>,
        unit_amount_decimal: Option<&str>,
        quantity: (Option<i64>, Option<&str>),
        pricing: Option<&pb::PricingParams>,
    ) -> Result<Pricing, ApiError> {
        charges::reject_pricing("", pricing)?;
        let given: Vec<&str> = [
            ("amount", amount.is_some()),
            ("price_data", price_data.is_some()),
            ("unit_amount_decimal", unit_amount_decimal.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        if let [first, second, ..] = given.as_slice() {
            return Err(ApiError::exclusive_params(first, second));
        }
        Ok(Pricing {
            amount: amount.map(|a| charges::amount("", a)).transpose()?,
            price_data: price_data.cloned(),
            unit_amount_decimal: unit_amount_decimal
                .map(|u| charges::decimal("unit_amount_decimal", u))
                .transpose()?,
            quantity: charges::quantity("", quantity.0, quantity.1)?,
        })
    }

    fn price(&self, currency: &str) -> Result<Option<PriceData>, ApiError> {
        self.price_data.as_ref().map(|p| charges::item_price_data(p, currency)).transpose()
    }

    /// A new item's charge.
    fn new_charge(&self, currency: &str) -> Result<(Charge, Option<pb::PricingPriceDetails>), ApiError> {
        let error = |e| charges::charge_error("", e);
        match (self.amount, self.price(currency)?, self.unit_amount_decimal) {
            (Some(amount), _, _) => Ok((Charge::fixed(amount, self.quantity).map_err(error)?, None)),
            (None, Some(price), _) => {
                Ok((Charge::per_unit(price.unit, self.quantity).map_err(error)?, Some(price.details)))
            }
            (None, None, Some(unit)) => Ok((Charge::per_unit(unit, self.quantity).map_err(error)?, None)),
            (None, None, None) => {
                Err(charges::missing_price("", &["amount", "price_data", "unit_amount_decimal"]))
            }
        }
    }

    /// Applies the change to an existing item.
    fn apply(&self, item: &mut pb::InvoiceItem) -> Result<(), ApiError> {
        let price = self.price(&item.currency)?;
        if self.amount.is_none()
            && price.is_none()
            && self.unit_amount_decimal.is_none()
            && self.quantity.is_none()
        {
            return Ok(());
        }
        let unit = price.as_ref().map(|p| p.unit).or(self.unit_amount_decimal);
        let charge = charges::change_charge("", charge_of(item)?, self.amount, unit, self.quantity)?;
        let details = match (&price, self.amount, self.unit_amount_decimal) {
            (Some(price), _, _) => Some(price.details.clone()),
            (None, None, None) => item.pricing.as_ref().and_then(|p| p.price_details.clone()),
            _ => None,
        };
        model_lines::write_charge(item, &charge, details)?;
        Ok(())
    }
}

fn reject_unsupported(discounts: bool, tax_rates: bool) -> Result<(), ApiError> {
    validate::unsupported("discounts", discounts, "settle has no discounts")?;
    validate::unsupported("tax_rates", tax_rates, "settle has no tax rate objects")
}

/// Opens a transaction with the idempotency key claimed, for a change that touches no invoice.
async fn begin_plain<T: prost::Message + Default, M: prost::Message>(
    state: &AppState,
    ctx: &RequestContext,
    method: &'static str,
    request: &M,
) -> Result<Result<(Tx, Pending), T>, ApiError> {
    let mut tx = state.db.begin().await?;
    Ok(match idempotency::claim(&mut tx, state.db.backend(), ctx, method, request).await? {
        Claim::Replay(stored) => Err(stored),
        Claim::Fresh(pending) => Ok((tx, pending)),
    })
}

/// Commits a change that touches no invoice, with `response` recorded under the key.
async fn commit_plain<R: prost::Message>(
    state: &AppState,
    mut tx: Tx,
    pending: Pending,
    response: &R,
    wrote_events: bool,
) -> Result<(), ApiError> {
    pending.record(&mut tx, response).await?;
    tx.commit().await?;
    if wrote_events {
        state.hub.committed();
    }
    Ok(())
}

impl InvoiceItemsApi {
    pub fn new(state: AppState) -> Self {
        InvoiceItemsApi { state }
    }

    async fn create(
        &self,
        ctx: &RequestContext,
        req: pb::CreateInvoiceItemRequest,
    ) -> Result<pb::InvoiceItem, ApiError> {
        validate::unsupported(
            "customer_account",
            req.customer_account.as_deref().is_some_and(|c| !c.is_empty()),
            "identify the customer by customer",
        )?;
        validate::unsupported(
            "subscription",
            req.subscription.as_deref().is_some_and(|s| !s.is_empty()),
            "settle has no subscriptions",
        )?;
        reject_unsupported(!req.discounts.is_empty(), !req.tax_rates.is_empty())?;
        let customer = customer("customer", req.customer.as_deref())?;
        let requested_currency = match req.currency.as_deref() {
            None | Some("") => None,
            Some(c) => Some(currency("currency", Some(c))?),
        };
        let pricing = Pricing::parse(
            req.amount,
            req.price_data.as_ref(),
            req.unit_amount_decimal.as_deref(),
            (req.quantity, req.quantity_decimal.as_deref()),
            req.pricing.as_ref(),
        )?;
        validate::max_len("description", req.description.as_deref(), 5_000)?;
        let fields = ItemFields {
            description: req.description.as_deref().and_then(non_empty),
            discountable: req.discountable,
            metadata: new_metadata("metadata", &req.metadata)?,
            period: charges::period("", req.period.as_ref())?,
        };
        let now = now_unix();
        let state = &self.state;
        let Some(invoice) = req.invoice.as_deref().filter(|i| !i.is_empty()) else {
            let currency = requested_currency.ok_or_else(|| ApiError::missing_param("currency"))?;
            let (charge, details) = pricing.new_charge(currency.as_str())?;
            let owner = ItemOwner {
                customer: &customer,
                currency: currency.as_str(),
                livemode: ctx.livemode(),
                invoice: None,
            };
            let item = model_lines::new_item(
                IdPrefix::InvoiceItem.generate(),
                &owner,
                now,
                &charge,
                details,
                fields,
            )?;
            let (mut tx, pending) = match begin_plain(state, ctx, CREATE, &req).await? {
                Ok(begun) => begun,
                Err(stored) => return Ok(stored),
            };
            store::insert(&mut tx, ctx.scope(), &item).await?;
            let origin = EventOrigin::from(ctx);
            outbox::append(
                &mut tx,
                state.db.backend(),
                &origin,
                "invoiceitem.created",
                &item.id,
                &item,
                None,
            )
            .await?;
            commit_plain(state, tx, pending, &item, true).await?;
            return Ok(item);
        };
        let mut op = match InvoiceOp::begin(state, ctx, CREATE, &req, invoice, "invoice").await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(op) => op,
        };
        require_draft(op.status()?)?;
        if op.doc.customer != customer {
            return Err(ApiError::failed_precondition(
                ErrorReason::CustomerMismatch,
                format!("Invoice {invoice} belongs to customer {}, not {customer}.", op.doc.customer),
            )
            .with_violation("customer", "The invoice's customer differs."));
        }
        if let Some(currency) = requested_currency
            && currency.as_str() != op.doc.currency
        {
            return Err(ApiError::failed_precondition(
                ErrorReason::CurrencyMismatch,
                format!("Invoice {invoice} is in {}, not {currency}.", op.doc.currency),
            )
            .with_violation("currency", "The invoice's currency differs."));
        }
        let mut lines = invoice_lines::all(&mut op.tx, ctx.scope(), invoice).await?;
        check_line_count("invoice", lines.len() + 1)?;
        let (charge, details) = pricing.new_charge(&op.doc.currency)?;
        let owner = ItemOwner {
            customer: &customer,
            currency: &op.doc.currency,
            livemode: op.doc.livemode,
            invoice: Some(invoice),
        };
        let item =
            model_lines::new_item(IdPrefix::InvoiceItem.generate(), &owner, now, &charge, details, fields)?;
        store::insert(&mut op.tx, ctx.scope(), &item).await?;
        op.append(state, ctx, "invoiceitem.created", &item.id, &item).await?;
        let line = line_for(&item, &IdPrefix::InvoiceLine.generate(), Vec::new());
        invoice_lines::insert(&mut op.tx, ctx.scope(), &line).await?;
        lines.push(line);
        model_lines::apply_lines(&mut op.doc, &lines)?;
        op.emit(InvoiceEvent::Updated);
        op.commit_with(state, ctx, &item).await?;
        Ok(item)
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        req: pb::GetInvoiceItemRequest,
    ) -> Result<pb::InvoiceItem, ApiError> {
        if !IdPrefix::InvoiceItem.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        store::find(self.state.db.pool(), ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))
    }

    async fn update(
        &self,
        ctx: &RequestContext,
        req: pb::UpdateInvoiceItemRequest,
    ) -> Result<pb::InvoiceItem, ApiError> {
        if !IdPrefix::InvoiceItem.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        reject_unsupported(
            req.discounts.as_ref().is_some_and(|d| !d.values.is_empty()),
            req.tax_rates.as_ref().is_some_and(|t| !t.values.is_empty()),
        )?;
        let pricing = Pricing::parse(
            req.amount,
            req.price_data.as_ref(),
            req.unit_amount_decimal.as_deref(),
            (req.quantity, req.quantity_decimal.as_deref()),
            req.pricing.as_ref(),
        )?;
        validate::max_len("description", req.description.as_deref(), 5_000)?;
        validate::metadata("metadata", &req.metadata)?;
        let period = charges::period("", req.period.as_ref())?;
        let change = |item: &mut pb::InvoiceItem| -> Result<(), ApiError> {
            pricing.apply(item)?;
            if let Some(description) = &req.description {
                item.description = non_empty(description);
            }
            if let Some(discountable) = req.discountable {
                item.discountable = discountable;
                model_lines::refresh_net_amount(item);
            }
            merge_metadata("metadata", &mut item.metadata, &req.metadata)?;
            if period.is_some() {
                item.period = period;
            }
            Ok(())
        };
        let (state, scope) = (&self.state, ctx.scope());
        for _ in 0..MOVED_RETRIES {
            let seen =
                store::find(state.db.pool(), scope, &req.id).await?.ok_or_else(|| not_found(&req.id))?;
            let Some(invoice) = seen.invoice else {
                let (mut tx, pending) = match begin_plain(state, ctx, UPDATE, &req).await? {
                    Ok(begun) => begun,
                    Err(stored) => return Ok(stored),
                };
                let mut item = store::find_for_update(&mut tx, state.db.backend(), scope, &req.id)
                    .await?
                    .ok_or_else(|| not_found(&req.id))?;
                if item.invoice.is_some() {
                    continue;
                }
                change(&mut item)?;
                store::update(&mut tx, scope, &item).await?;
                commit_plain(state, tx, pending, &item, false).await?;
                return Ok(item);
            };
            let mut op = match InvoiceOp::begin(state, ctx, UPDATE, &req, &invoice, "id").await? {
                Begun::Replay(stored) => return Ok(stored),
                Begun::Fresh(op) => op,
            };
            let mut item = store::find_for_update(&mut op.tx, state.db.backend(), scope, &req.id)
                .await?
                .ok_or_else(|| not_found(&req.id))?;
            if item.invoice.as_deref() != Some(&invoice) {
                continue;
            }
            require_draft(op.status()?)?;
            change(&mut item)?;
            store::update(&mut op.tx, scope, &item).await?;
            let mut lines = invoice_lines::all(&mut op.tx, scope, &invoice).await?;
            if let Some(line) = lines.iter_mut().find(|l| model_lines::item_of(l) == Some(item.id.as_str())) {
                *line = line_for(&item, &line.id, std::mem::take(&mut line.taxes));
                invoice_lines::update(&mut op.tx, scope, line).await?;
            }
            model_lines::apply_lines(&mut op.doc, &lines)?;
            op.emit(InvoiceEvent::Updated);
            op.commit_with(state, ctx, &item).await?;
            return Ok(item);
        }
        Err(kept_moving(&req.id))
    }

    async fn delete(
        &self,
        ctx: &RequestContext,
        req: pb::DeleteInvoiceItemRequest,
    ) -> Result<pb::DeletedInvoiceItem, ApiError> {
        if !IdPrefix::InvoiceItem.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        let deleted =
            pb::DeletedInvoiceItem { deleted: true, id: req.id.clone(), object: "invoiceitem".to_owned() };
        let (state, scope) = (&self.state, ctx.scope());
        for _ in 0..MOVED_RETRIES {
            let seen =
                store::find(state.db.pool(), scope, &req.id).await?.ok_or_else(|| not_found(&req.id))?;
            let Some(invoice) = seen.invoice else {
                let (mut tx, pending) = match begin_plain(state, ctx, DELETE, &req).await? {
                    Ok(begun) => begun,
                    Err(stored) => return Ok(stored),
                };
                let item = store::find_for_update(&mut tx, state.db.backend(), scope, &req.id)
                    .await?
                    .ok_or_else(|| not_found(&req.id))?;
                if item.invoice.is_some() {
                    continue;
                }
                store::delete(&mut tx, scope, &item.id).await?;
                let origin = EventOrigin::from(ctx);
                outbox::append(
                    &mut tx,
                    state.db.backend(),
                    &origin,
                    "invoiceitem.deleted",
                    &item.id,
                    &item,
                    None,
                )
                .await?;
                commit_plain(state, tx, pending, &deleted, true).await?;
                return Ok(deleted);
            };
            let mut op = match InvoiceOp::begin(state, ctx, DELETE, &req, &invoice, "id").await? {
                Begun::Replay(stored) => return Ok(stored),
                Begun::Fresh(op) => op,
            };
            let item = store::find_for_update(&mut op.tx, state.db.backend(), scope, &req.id)
                .await?
                .ok_or_else(|| not_found(&req.id))?;
            if item.invoice.as_deref() != Some(&invoice) {
                continue;
            }
            require_draft(op.status()?)?;
            let mut lines = invoice_lines::all(&mut op.tx, scope, &invoice).await?;
            if let Some(at) = lines.iter().position(|l| model_lines::item_of(l) == Some(item.id.as_str())) {
                invoice_lines::delete(&mut op.tx, scope, &lines.remove(at).id).await?;
            }
            store::delete(&mut op.tx, scope, &item.id).await?;
            op.append(state, ctx, "invoiceitem.deleted", &item.id, &item).await?;
            model_lines::apply_lines(&mut op.doc, &lines)?;
            op.emit(InvoiceEvent::Updated);
            op.commit_with(state, ctx, &deleted).await?;
            return Ok(deleted);
        }
        Err(kept_moving(&req.id))
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListInvoiceItemsRequest,
    ) -> Result<pb::ListInvoiceItemsResponse, ApiError> {
        validate::unsupported(
            "customer_account",
            req.customer_account.as_deref().is_some_and(|c| !c.is_empty()),
            "filter by customer instead",
        )?;
        let customer = match req.customer.as_deref() {
            None | Some("") => None,
            Some(c) => Some(customer("customer", Some(c))?),
        };
        let invoice = match req.invoice.as_deref() {
            None | Some("") => None,
            Some(i) if IdPrefix::Invoice.matches(i) => Some(i.to_owned()),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "invoice",
                    ErrorReason::ParameterInvalid,
                    "Invalid invoice: expected in_…",
                ));
            }
        };
        if invoice.is_some() && req.pending == Some(true) {
            return Err(ApiError::exclusive_params("invoice", "pending"));
        }
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::InvoiceItem,
        )?;
        let filter = ListFilter { customer, invoice, pending: req.pending, created: req.created };
        let page = store::list(&self.state.db, ctx.scope(), &filter, &page).await?;
        Ok(pb::ListInvoiceItemsResponse { data: page.data, has_more: page.has_more })
    }
}

#[tonic::async_trait]
impl InvoiceItemService for InvoiceItemsApi {
    async fn create_invoice_item(
        &self,
        request: Request<pb::CreateInvoiceItemRequest>,
    ) -> Result<Response<pb::InvoiceItem>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.create(&ctx, request.into_inner()).await?))
    }

    async fn get_invoice_item(
        &self,
        request: Request<pb::GetInvoiceItemRequest>,
    ) -> Result<Response<pb::InvoiceItem>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn update_invoice_item(
        &self,
        request: Request<pb::UpdateInvoiceItemRequest>,
    ) -> Result<Response<pb::InvoiceItem>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.update(&ctx, request.into_inner()).await?))
    }

    async fn delete_invoice_item(
        &self,
        request: Request<pb::DeleteInvoiceItemRequest>,
    ) -> Result<Response<pb::DeletedInvoiceItem>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.delete(&ctx, request.into_inner()).await?))
    }

    async fn list_invoice_items(
        &self,
        request: Request<pb::ListInvoiceItemsRequest>,
    ) -> Result<Response<pb::ListInvoiceItemsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }
}
