//! AddLines, UpdateLines and RemoveLines: changes to a draft's lines, each line backed by an invoice
//! item. Every request is all or none (one transaction under the invoice's lock); the invoice's
//! aggregate and amounts are recomputed from all its lines afterwards.

use std::collections::BTreeMap;

use settle_money::Amount;
use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::ids::IdPrefix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;

use super::op::{InvoiceEvent, InvoiceOp};
use super::params::{merge_metadata, new_metadata, non_empty};
use crate::domain::charge::{Charge, Decimal};
use crate::domain::invoice::InvoiceStatus;
use crate::grpc::AppState;
use crate::grpc::charges::{self, PriceData, field};
use crate::model::lines::{self as model_lines, ItemFields, ItemOwner, MAX_LINES, charge_of, line_for};
use crate::store::{invoice_items, invoice_lines};

/// Refuses line changes unless the invoice is a draft.
pub(crate) fn require_draft(status: InvoiceStatus) -> Result<(), ApiError> {
    if status == InvoiceStatus::Draft {
        Ok(())
    } else {
        Err(ApiError::failed_precondition(
            ErrorReason::InvoiceNotEditable,
            format!("This invoice is {}: only a draft's lines and items can change.", status.as_str()),
        ))
    }
}

/// Refuses more lines than an invoice may have.
pub(crate) fn check_line_count(field_name: &str, count: usize) -> Result<(), ApiError> {
    if count > MAX_LINES {
        return Err(ApiError::invalid_param(
            field_name,
            ErrorReason::ParameterInvalid,
            format!("An invoice can have at most {MAX_LINES} lines (this would make {count})."),
        ));
    }
    Ok(())
}

fn reject_lists(prefix: &str, discounts: bool, tax_rates: bool) -> Result<(), ApiError> {
    validate::unsupported(&field(prefix, "discounts"), discounts, "settle has no discounts")?;
    validate::unsupported(
        &field(prefix, "tax_rates"),
        tax_rates,
        "settle has no tax rate objects; use tax_amounts",
    )
}

/// The charge-related parameters of one line, parsed.
struct ChargeParams {
    amount: Option<Amount>,
    price: Option<PriceData>,
    quantity: Option<Decimal>,
}

impl ChargeParams {
    fn parse(
        prefix: &str,
        amount: Option<i64>,
        price_data: Option<&pb::InvoiceLinePriceDataParams>,
        quantity: (Option<i64>, Option<&str>),
        currency: &str,
    ) -> Result<ChargeParams, ApiError> {
        if amount.is_some() && price_data.is_some() {
            return Err(ApiError::exclusive_params(&field(prefix, "amount"), &field(prefix, "price_data")));
        }
        Ok(ChargeParams {
            amount: amount.map(|a| charges::amount(prefix, a)).transpose()?,
            price: price_data.map(|p| charges::line_price_data(prefix, p, currency)).transpose()?,
            quantity: charges::quantity(prefix, quantity.0, quantity.1)?,
        })
    }

    fn given(&self) -> bool {
        self.amount.is_some() || self.price.is_some() || self.quantity.is_some()
    }

    /// A new item's charge.
    fn new_charge(&self, prefix: &str) -> Result<(Charge, Option<pb::PricingPriceDetails>), ApiError> {
        match (&self.amount, &self.price) {
            (Some(amount), _) => Ok((
                Charge::fixed(*amount, self.quantity).map_err(|e| charges::charge_error(prefix, e))?,
                None,
            )),
            (None, Some(price)) => Ok((
                Charge::per_unit(price.unit, self.quantity).map_err(|e| charges::charge_error(prefix, e))?,
                Some(price.details.clone()),
            )),
            (None, None) => Err(charges::missing_price(prefix, &["amount", "price_data"])),
        }
    }

    /// Applies the change to an existing item.
    fn apply(&self, prefix: &str, item: &mut pb::InvoiceItem) -> Result<(), ApiError> {
        if !self.given() {
            return Ok(());
        }
        let current = charge_of(item)?;
        let charge = charges::change_charge(
            prefix,
            current,
            self.amount,
            self.price.as_ref().map(|p| p.unit),
            self.quantity,
        )?;
        let details = match (&self.price, &self.amount) {
            (Some(price), _) => Some(price.details.clone()),
            (None, Some(_)) => None,
            (None, None) => item.pricing.as_ref().and_then(|p| p.price_details.clone()),
        };
        model_lines::write_charge(item, &charge, details)?;
        Ok(())
    }
}

/// Applies the descriptive fields shared by a line and its item.
fn apply_fields(
    prefix: &str,
    item: &mut pb::InvoiceItem,
    description: Option<&str>,
    discountable: Option<bool>,
    metadata: &BTreeMap<String, String>,
    period: Option<pb::Period>,
) -> Result<(), ApiError> {
    if let Some(description) = description {
        item.description = non_empty(description);
    }
    if let Some(discountable) = discountable {
        item.discountable = discountable;
        model_lines::refresh_net_amount(item);
    }
    merge_metadata(&field(prefix, "metadata"), &mut item.metadata, metadata)?;
    if period.is_some() {
        item.period = period;
    }
    Ok(())
}

/// Adds the lines of AddLines to the locked draft.
pub(crate) async fn add_lines(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    req: &pb::AddLinesRequest,
    now: i64,
) -> Result<(), ApiError> {
    require_draft(op.status()?)?;
    let scope = ctx.scope();
    let mut lines = invoice_lines::all(&mut op.tx, scope, &op.doc.id).await?;
    check_line_count("lines", lines.len() + req.lines.len())?;
    for (i, params) in req.lines.iter().enumerate() {
        let prefix = format!("lines[{i}]");
        reject_lists(&prefix, !params.discounts.is_empty(), !params.tax_rates.is_empty())?;
        charges::reject_pricing(&prefix, params.pricing.as_ref())?;
        charges::check_tax_amounts(&prefix, &params.tax_amounts)?;
        validate::max_len(&field(&prefix, "description"), params.description.as_deref(), 5_000)?;
        let period = charges::period(&prefix, params.period.as_ref())?;
        let charge = ChargeParams::parse(
            &prefix,
            params.amount,
            params.price_data.as_ref(),
            (params.quantity, params.quantity_decimal.as_deref()),
            &op.doc.currency,
        )?;
        let item = match params.invoice_item.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => {
                let item_field = field(&prefix, "invoice_item");
                let mut item = pending_item(op, state, ctx, id, &item_field).await?;
                charge.apply(&prefix, &mut item)?;
                apply_fields(
                    &prefix,
                    &mut item,
                    params.description.as_deref(),
                    params.discountable,
                    &params.metadata,
                    period,
                )?;
                item.invoice = Some(op.doc.id.clone());
                invoice_items::update(&mut op.tx, scope, &item).await?;
                item
            }
            None => {
                let (new_charge, details) = charge.new_charge(&prefix)?;
                let owner = ItemOwner {
                    customer: &op.doc.customer,
                    currency: &op.doc.currency,
                    livemode: op.doc.livemode,
                    invoice: Some(&op.doc.id),
                };
                let fields = ItemFields {
                    description: params.description.as_deref().and_then(non_empty),
                    discountable: params.discountable,
                    metadata: new_metadata(&field(&prefix, "metadata"), &params.metadata)?,
                    period,
                };
                let item = model_lines::new_item(
                    IdPrefix::InvoiceItem.generate(),
                    &owner,
                    now,
                    &new_charge,
                    details,
                    fields,
                )?;
                invoice_items::insert(&mut op.tx, scope, &item).await?;
                op.append(state, ctx, "invoiceitem.created", &item.id, &item).await?;
                item
            }
        };
        let taxes = charges::taxes(&mut op.tx, scope, &params.tax_amounts).await?;
        let line = line_for(&item, &IdPrefix::InvoiceLine.generate(), taxes);
        invoice_lines::insert(&mut op.tx, scope, &line).await?;
        lines.push(line);
    }
    finish(op, &lines, &req.invoice_metadata)
}

/// Reads and locks the pending item `id` for the locked invoice: it must be the invoice's customer's,
/// in its currency, and on no invoice.
async fn pending_item(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    item_field: &str,
) -> Result<pb::InvoiceItem, ApiError> {
    let missing = || ApiError::not_found(IdPrefix::InvoiceItem, id, item_field);
    if !IdPrefix::InvoiceItem.matches(id) {
        return Err(missing());
    }
    let item = invoice_items::find_for_update(&mut op.tx, state.db.backend(), ctx.scope(), id)
        .await?
        .ok_or_else(missing)?;
    let refuse = |reason, message: String| {
        Err(ApiError::failed_precondition(reason, message.clone()).with_violation(item_field, message))
    };
    if let Some(invoice) = &item.invoice {
        return refuse(
            ErrorReason::StateUnsupported,
            format!(
                "The invoice item {id} is already on invoice {invoice}; only a pending item can be added."
            ),
        );
    }
    if item.customer != op.doc.customer {
        return refuse(
            ErrorReason::CustomerMismatch,
            format!("The invoice item {id} belongs to customer {}, not the invoice's.", item.customer),
        );
    }
    if item.currency != op.doc.currency {
        return refuse(
            ErrorReason::CurrencyMismatch,
            format!("The invoice item {id} is in {}, the invoice in {}.", item.currency, op.doc.currency),
        );
    }
    Ok(item)
}

/// Merges `invoice_metadata`, makes the invoice's aggregate that of `lines` and emits `invoice.updated`.
fn finish(
    op: &mut InvoiceOp,
    lines: &[pb::InvoiceLineItem],
    invoice_metadata: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    merge_metadata("invoice_metadata", &mut op.doc.metadata, invoice_metadata)?;
    model_lines::apply_lines(&mut op.doc, lines)?;
    op.emit(InvoiceEvent::Updated);
    Ok(())
}

/// The position of line `id` among the invoice's lines, or NOT_FOUND naming `id_field`.
fn find_line(lines: &[pb::InvoiceLineItem], id: &str, id_field: &str) -> Result<usize, ApiError> {
    lines
        .iter()
        .position(|l| l.id == id)
        .ok_or_else(|| ApiError::not_found(IdPrefix::InvoiceLine, id, id_field))
}

/// Applies UpdateLines to the locked draft.
pub(crate) async fn update_lines(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    req: &pb::UpdateLinesRequest,
) -> Result<(), ApiError> {
    require_draft(op.status()?)?;
    let scope = ctx.scope();
    let mut lines = invoice_lines::all(&mut op.tx, scope, &op.doc.id).await?;
    for (i, params) in req.lines.iter().enumerate() {
        let prefix = format!("lines[{i}]");
        reject_lists(
            &prefix,
            params.discounts.as_ref().is_some_and(|d| !d.values.is_empty()),
            params.tax_rates.as_ref().is_some_and(|t| !t.values.is_empty()),
        )?;
        charges::reject_pricing(&prefix, params.pricing.as_ref())?;
        if let Some(taxes) = &params.tax_amounts {
            charges::check_tax_amounts(&prefix, &taxes.values)?;
        }
        validate::max_len(&field(&prefix, "description"), params.description.as_deref(), 5_000)?;
        let period = charges::period(&prefix, params.period.as_ref())?;
        let charge = ChargeParams::parse(
            &prefix,
            params.amount,
            params.price_data.as_ref(),
            (params.quantity, params.quantity_decimal.as_deref()),
            &op.doc.currency,
        )?;
        if params.id.is_empty() {
            return Err(ApiError::missing_param(&field(&prefix, "id")));
        }
        let at = find_line(&lines, &params.id, &field(&prefix, "id"))?;
        let item_id = model_lines::item_of(&lines[at]).unwrap_or_default().to_owned();
        let mut item = invoice_items::find_for_update(&mut op.tx, state.db.backend(), scope, &item_id)
            .await?
            .ok_or_else(|| ApiError::not_found(IdPrefix::InvoiceItem, &item_id, &field(&prefix, "id")))?;
        charge.apply(&prefix, &mut item)?;
        apply_fields(
            &prefix,
            &mut item,
            params.description.as_deref(),
            params.discountable,
            &params.metadata,
            period,
        )?;
        invoice_items::update(&mut op.tx, scope, &item).await?;
        let taxes = match &params.tax_amounts {
            Some(taxes) => charges::taxes(&mut op.tx, scope, &taxes.values).await?,
            None => std::mem::take(&mut lines[at].taxes),
        };
        lines[at] = line_for(&item, &params.id, taxes);
        invoice_lines::update(&mut op.tx, scope, &lines[at]).await?;
    }
    finish(op, &lines, &req.invoice_metadata)
}

/// Applies RemoveLines to the locked draft: `delete` deletes the line's item, `unassign` makes it
/// pending again.
pub(crate) async fn remove_lines(
    op: &mut InvoiceOp,
    state: &AppState,
    ctx: &RequestContext,
    req: &pb::RemoveLinesRequest,
) -> Result<(), ApiError> {
    require_draft(op.status()?)?;
    let scope = ctx.scope();
    let mut lines = invoice_lines::all(&mut op.tx, scope, &op.doc.id).await?;
    for (i, params) in req.lines.iter().enumerate() {
        let prefix = format!("lines[{i}]");
        let delete = match pb::InvoiceLineRemoveBehavior::try_from(params.behavior) {
            Ok(pb::InvoiceLineRemoveBehavior::Delete) => true,
            Ok(pb::InvoiceLineRemoveBehavior::Unassign) => false,
            _ => return Err(ApiError::missing_param(&field(&prefix, "behavior"))),
        };
        if params.id.is_empty() {
            return Err(ApiError::missing_param(&field(&prefix, "id")));
        }
        let line = lines.remove(find_line(&lines, &params.id, &field(&prefix, "id"))?);
        invoice_lines::delete(&mut op.tx, scope, &line.id).await?;
        let item_id = model_lines::item_of(&line).unwrap_or_default();
        let Some(mut item) =
            invoice_items::find_for_update(&mut op.tx, state.db.backend(), scope, item_id).await?
        else {
            continue;
        };
        if delete {
            invoice_items::delete(&mut op.tx, scope, &item.id).await?;
            op.append(state, ctx, "invoiceitem.deleted", &item.id, &item).await?;
        } else {
            item.invoice = None;
            invoice_items::update(&mut op.tx, scope, &item).await?;
        }
    }
    finish(op, &lines, &req.invoice_metadata)
}
