//! CreateInvoice and UpdateInvoice parameters → the invoice document, with Stripe's validation. A
//! refused parameter is INVALID_ARGUMENT naming it, and the handler has changed nothing yet (updates
//! run inside the invoice's transaction, which a refusal rolls back).

use std::collections::BTreeMap;

use settle_money::Currency;
use settle_platform::ApiError;
use settle_platform::validate;
use settle_proto::common::v1::{ErrorReason, Shipping};
use settle_proto::settle::invoices::v1 as pb;

use crate::domain::charge::MAX_AMOUNT;
use crate::domain::invoice::InvoiceStatus;
use crate::domain::numbering::MAX_NUMBER_LEN;

/// Stripe's limit on `automatically_finalizes_at`: five years ahead.
const FIVE_YEARS: i64 = 5 * 365 * 24 * 60 * 60;
const DAY: i64 = 24 * 60 * 60;
/// Longest `days_until_due` settle accepts (ten years).
const MAX_DAYS_UNTIL_DUE: i64 = 3_650;

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(field, ErrorReason::ParameterInvalid, message)
}

/// A lowercase ISO currency settle supports.
pub fn currency(field: &str, value: Option<&str>) -> Result<Currency, ApiError> {
    match value {
        None | Some("") => Err(ApiError::missing_param(field)),
        Some(value) => Currency::parse(value)
            .map_err(|e| ApiError::invalid_param(field, ErrorReason::InvalidCurrency, e.to_string())),
    }
}

/// A required customer id (`cus_…`).
pub fn customer(field: &str, value: Option<&str>) -> Result<String, ApiError> {
    match value {
        None | Some("") => Err(ApiError::missing_param(field)),
        Some(value) => validate::customer_id(field, value).map(|()| value.to_owned()),
    }
}

/// Metadata of a new object: checked, and entries with an empty value not stored.
pub fn new_metadata(
    field: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    validate::metadata(field, metadata)?;
    Ok(metadata.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Merges a metadata update into `current` and checks the result.
pub fn merge_metadata(
    field: &str,
    current: &mut BTreeMap<String, String>,
    update: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    validate::metadata(field, update)?;
    validate::merge_metadata(current, update);
    validate::metadata(field, current)
}

/// `""` unsets an optional string.
pub fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn collection_method(value: Option<i32>) -> Result<Option<pb::InvoiceCollectionMethod>, ApiError> {
    match value.map(pb::InvoiceCollectionMethod::try_from) {
        None => Ok(None),
        Some(Ok(pb::InvoiceCollectionMethod::Unspecified) | Err(_)) => Err(invalid(
            "collection_method",
            "collection_method must be charge_automatically or send_invoice.",
        )),
        Some(Ok(method)) => Ok(Some(method)),
    }
}

fn custom_fields(
    field: &str,
    fields: &[pb::InvoiceCustomField],
) -> Result<Vec<pb::InvoiceCustomField>, ApiError> {
    if fields.len() > 4 {
        return Err(invalid(field, "An invoice can have at most 4 custom fields."));
    }
    for (i, f) in fields.iter().enumerate() {
        for (name, value, max) in [("name", &f.name, 40), ("value", &f.value, 140)] {
            let path = format!("{field}[{i}][{name}]");
            if value.is_empty() {
                return Err(ApiError::missing_param(&path));
            }
            validate::max_len(&path, Some(value), max)?;
        }
    }
    Ok(fields.to_vec())
}

/// `issuer` and `automatic_tax.liability`: settle knows only the account itself (`type=self`).
fn account_reference(
    field: &str,
    value: &pb::ConnectAccountReference,
) -> Result<pb::ConnectAccountReference, ApiError> {
    match pb::ConnectAccountReferenceType::try_from(value.r#type) {
        Ok(pb::ConnectAccountReferenceType::Self_) if value.account.as_deref().is_none_or(str::is_empty) => {
            Ok(pb::ConnectAccountReference { account: None, r#type: value.r#type })
        }
        Ok(pb::ConnectAccountReferenceType::Self_) => Err(invalid(
            &format!("{field}[account]"),
            "settle has no connected accounts: account can only be given with type=account, which settle refuses.",
        )),
        Ok(pb::ConnectAccountReferenceType::Account) => {
            Err(invalid(&format!("{field}[type]"), "settle has no connected accounts: type must be self."))
        }
        Ok(pb::ConnectAccountReferenceType::Unspecified) | Err(_) => {
            Err(ApiError::missing_param(&format!("{field}[type]")))
        }
    }
}

fn automatic_tax(params: &pb::InvoiceAutomaticTaxParams) -> Result<pb::InvoiceAutomaticTax, ApiError> {
    validate::unsupported("automatic_tax[enabled]", params.enabled, "settle has no automatic tax")?;
    Ok(pb::InvoiceAutomaticTax {
        enabled: false,
        liability: params
            .liability
            .as_ref()
            .map(|l| account_reference("automatic_tax[liability]", l))
            .transpose()?,
        ..Default::default()
    })
}

fn payment_settings(
    params: &pb::InvoicePaymentSettingsParams,
) -> Result<pb::InvoicePaymentSettings, ApiError> {
    for (i, value) in params.payment_method_types.iter().enumerate() {
        if !matches!(pb::InvoicePaymentSettingsPaymentMethodType::try_from(*value), Ok(t) if t != pb::InvoicePaymentSettingsPaymentMethodType::Unspecified)
        {
            return Err(invalid(
                &format!("payment_settings[payment_method_types][{i}]"),
                "Unknown payment method type.",
            ));
        }
    }
    let options = params.payment_method_options.as_ref().map(|o| pb::InvoicePaymentMethodOptions {
        acss_debit: o.acss_debit,
        bancontact: o.bancontact,
        card: o.card.as_ref().map(|c| pb::InvoicePaymentMethodOptionsCard {
            installments: c.installments.as_ref().map(|i| pb::InvoiceInstallmentsCard { enabled: i.enabled }),
            request_three_d_secure: c.request_three_d_secure,
        }),
        customer_balance: o.customer_balance.clone(),
        konbini: o.konbini,
        payto: o.payto.as_ref().map(|p| pb::InvoicePaymentMethodOptionsPayto {
            mandate_options: p.mandate_options.as_ref().map(|m| pb::InvoiceMandateOptionsPayto {
                amount: m.amount,
                // Stripe's parameter has no amount type: it sets `maximum`.
                amount_type: Some(pb::InvoiceMandateAmountType::Maximum as i32),
                purpose: m.purpose,
            }),
        }),
        pix: o.pix,
        sepa_debit: o.sepa_debit,
        upi: o.upi.clone(),
        us_bank_account: o.us_bank_account.clone(),
    });
    Ok(pb::InvoicePaymentSettings {
        default_mandate: params.default_mandate.as_deref().and_then(non_empty),
        payment_method_options: options,
        payment_method_types: params.payment_method_types.clone(),
    })
}

fn rendering(params: &pb::InvoiceRendering) -> Result<pb::InvoiceRendering, ApiError> {
    if let Some(version) = params.template_version
        && version < 1
    {
        return Err(ApiError::invalid_param(
            "rendering[template_version]",
            ErrorReason::ParameterInvalidInteger,
            "template_version must be a positive integer.",
        ));
    }
    validate::max_len("rendering[template]", params.template.as_deref(), 255)?;
    Ok(params.clone())
}

/// `shipping_cost` → the invoice's shipping cost (`None`: an empty message, which unsets it).
fn shipping_cost(
    params: &pb::InvoiceShippingCostParams,
    currency: &str,
) -> Result<Option<pb::InvoiceShippingCost>, ApiError> {
    if *params == pb::InvoiceShippingCostParams::default() {
        return Ok(None);
    }
    validate::unsupported(
        "shipping_cost[shipping_rate]",
        params.shipping_rate.as_deref().is_some_and(|r| !r.is_empty()),
        "settle has no shipping rate objects; pass shipping_rate_data",
    )?;
    let data = params
        .shipping_rate_data
        .as_ref()
        .ok_or_else(|| ApiError::missing_param("shipping_cost[shipping_rate_data]"))?;
    let field = "shipping_cost[shipping_rate_data]";
    if data.display_name.is_empty() {
        return Err(ApiError::missing_param(&format!("{field}[display_name]")));
    }
    validate::max_len(&format!("{field}[display_name]"), Some(&data.display_name), 100)?;
    validate::metadata(&format!("{field}[metadata]"), &data.metadata)?;
    if let Some(kind) = data.r#type
        && kind != pb::ShippingRateType::FixedAmount as i32
    {
        return Err(invalid(&format!("{field}[type]"), "type must be fixed_amount."));
    }
    let fixed = data
        .fixed_amount
        .as_ref()
        .ok_or_else(|| ApiError::missing_param(&format!("{field}[fixed_amount]")))?;
    if fixed.currency.is_empty() {
        return Err(ApiError::missing_param(&format!("{field}[fixed_amount][currency]")));
    }
    if fixed.currency != currency {
        return Err(ApiError::invalid_param(
            &format!("{field}[fixed_amount][currency]"),
            ErrorReason::CurrencyMismatch,
            format!("The shipping rate's currency must be the invoice's ({currency})."),
        ));
    }
    if !(0..=MAX_AMOUNT).contains(&fixed.amount) {
        return Err(ApiError::invalid_param(
            &format!("{field}[fixed_amount][amount]"),
            ErrorReason::ParameterInvalidInteger,
            format!("The shipping amount must be between 0 and {MAX_AMOUNT}."),
        ));
    }
    Ok(Some(pb::InvoiceShippingCost {
        amount_subtotal: fixed.amount,
        amount_tax: 0,
        amount_total: fixed.amount,
        shipping_rate: Some(settle_platform::ids::IdPrefix::ShippingRate.generate()),
        taxes: Vec::new(),
    }))
}

/// `shipping_details` (`None`: an empty message, which unsets it).
fn shipping_details(params: &pb::InvoiceShippingDetailsParams) -> Result<Option<Shipping>, ApiError> {
    if *params == pb::InvoiceShippingDetailsParams::default() {
        return Ok(None);
    }
    let address =
        params.address.clone().ok_or_else(|| ApiError::missing_param("shipping_details[address]"))?;
    if params.name.is_empty() {
        return Err(ApiError::missing_param("shipping_details[name]"));
    }
    Ok(Some(Shipping {
        address: Some(address),
        name: Some(params.name.clone()),
        phone: params.phone.as_deref().and_then(non_empty),
        ..Default::default()
    }))
}

fn number(value: &str) -> Result<Option<String>, ApiError> {
    validate::max_len("number", Some(value), MAX_NUMBER_LEN)?;
    Ok(non_empty(value))
}

fn default_payment_method(value: &str) -> Result<Option<String>, ApiError> {
    match value {
        "" => Ok(None),
        pm if pm.len() > 3 && pm.starts_with("pm_") && pm.len() <= 255 => Ok(Some(pm.to_owned())),
        _ => Err(invalid("default_payment_method", "Invalid default_payment_method: expected pm_…")),
    }
}

fn statement_descriptor(value: &str) -> Result<Option<String>, ApiError> {
    if !value.is_empty() {
        validate::statement_descriptor("statement_descriptor", value, 22)?;
    }
    Ok(non_empty(value))
}

fn future_time(field: &str, value: i64, now: i64, max_ahead: i64) -> Result<i64, ApiError> {
    if value <= now || value > now + max_ahead {
        return Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalidInteger,
            format!("{field} must be a time in the future, at most {} days ahead.", max_ahead / DAY),
        ));
    }
    Ok(value)
}

fn positive_time(field: &str, value: i64) -> Result<i64, ApiError> {
    if value < 1 {
        return Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalidInteger,
            format!("{field} must be a positive unix timestamp."),
        ));
    }
    Ok(value)
}

/// Applies `due_date` / `days_until_due` Stripe's way: only for `send_invoice`, one of the two;
/// `days_until_due` counts from the invoice's creation.
fn due_date(
    doc: &mut pb::Invoice,
    due_date: Option<i64>,
    days_until_due: Option<i64>,
    now: i64,
) -> Result<(), ApiError> {
    let send_invoice = doc.collection_method == pb::InvoiceCollectionMethod::SendInvoice as i32;
    if !send_invoice {
        for (field, given) in [("due_date", due_date.is_some()), ("days_until_due", days_until_due.is_some())]
        {
            if given {
                return Err(invalid(
                    field,
                    format!("{field} can only be set when collection_method is send_invoice."),
                ));
            }
        }
        doc.due_date = None;
        return Ok(());
    }
    match (due_date, days_until_due) {
        (Some(_), Some(_)) => Err(ApiError::exclusive_params("due_date", "days_until_due")),
        (Some(date), None) => {
            doc.due_date = Some(future_time("due_date", date, now - 1, 10 * FIVE_YEARS)?);
            Ok(())
        }
        (None, Some(days)) => {
            if !(0..=MAX_DAYS_UNTIL_DUE).contains(&days) {
                return Err(ApiError::invalid_param(
                    "days_until_due",
                    ErrorReason::ParameterInvalidInteger,
                    format!("days_until_due must be between 0 and {MAX_DAYS_UNTIL_DUE}."),
                ));
            }
            doc.due_date = Some(doc.created + days * DAY);
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// Rejects the create parameters settle cannot honour.
fn unsupported_on_create(req: &pb::CreateInvoiceRequest) -> Result<(), ApiError> {
    let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    validate::unsupported(
        "application_fee_amount",
        req.application_fee_amount.is_some(),
        "settle has no Connect fees",
    )?;
    validate::unsupported(
        "customer_account",
        present(&req.customer_account),
        "identify the customer by customer",
    )?;
    validate::unsupported("default_source", present(&req.default_source), "settle has no payment sources")?;
    validate::unsupported(
        "default_tax_rates",
        !req.default_tax_rates.is_empty(),
        "settle has no tax rate objects",
    )?;
    validate::unsupported("discounts", !req.discounts.is_empty(), "settle has no discounts")?;
    validate::unsupported(
        "from_invoice",
        req.from_invoice.as_ref().is_some_and(|f| *f != pb::InvoiceFromInvoice::default()),
        "settle has no invoice revisions",
    )?;
    validate::unsupported("on_behalf_of", present(&req.on_behalf_of), "settle has no connected accounts")?;
    validate::unsupported("subscription", present(&req.subscription), "settle has no subscriptions")?;
    validate::unsupported(
        "transfer_data",
        req.transfer_data.as_ref().is_some_and(|t| *t != pb::InvoiceTransferDataParams::default()),
        "settle has no connected accounts",
    )
}

/// A new draft invoice from CreateInvoice's parameters (amounts still to be computed), and whether
/// the customer's pending items are to be pulled in.
pub fn new_invoice(
    req: &pb::CreateInvoiceRequest,
    id: String,
    livemode: bool,
    now: i64,
) -> Result<(pb::Invoice, bool), ApiError> {
    unsupported_on_create(req)?;
    let customer = customer("customer", req.customer.as_deref())?;
    let currency = currency("currency", req.currency.as_deref())?;
    let include =
        match req.pending_invoice_items_behavior.map(pb::InvoicePendingInvoiceItemsBehavior::try_from) {
            None | Some(Ok(pb::InvoicePendingInvoiceItemsBehavior::Exclude)) => false,
            Some(Ok(pb::InvoicePendingInvoiceItemsBehavior::Include)) => true,
            Some(_) => {
                return Err(invalid(
                    "pending_invoice_items_behavior",
                    "pending_invoice_items_behavior must be exclude or include.",
                ));
            }
        };
    validate::max_len("description", req.description.as_deref(), 1_500)?;
    validate::max_len("footer", req.footer.as_deref(), 5_000)?;
    for (i, tax_id) in req.account_tax_ids.iter().enumerate() {
        if tax_id.is_empty() {
            return Err(ApiError::missing_param(&format!("account_tax_ids[{i}]")));
        }
    }
    let mut doc = pb::Invoice {
        account_tax_ids: req.account_tax_ids.clone(),
        auto_advance: req.auto_advance.unwrap_or(false),
        automatic_tax: Some(match &req.automatic_tax {
            Some(params) => automatic_tax(params)?,
            None => pb::InvoiceAutomaticTax::default(),
        }),
        automatically_finalizes_at: req
            .automatically_finalizes_at
            .map(|t| future_time("automatically_finalizes_at", t, now, FIVE_YEARS))
            .transpose()?,
        billing_reason: Some(pb::InvoiceBillingReason::Manual as i32),
        collection_method: collection_method(req.collection_method)?
            .unwrap_or(pb::InvoiceCollectionMethod::ChargeAutomatically) as i32,
        created: now,
        currency: currency.as_str().to_owned(),
        custom_fields: custom_fields("custom_fields", &req.custom_fields)?,
        customer,
        default_payment_method: req
            .default_payment_method
            .as_deref()
            .map(default_payment_method)
            .transpose()?
            .flatten(),
        description: req.description.as_deref().and_then(non_empty),
        effective_at: req.effective_at.map(|t| positive_time("effective_at", t)).transpose()?,
        footer: req.footer.as_deref().and_then(non_empty),
        id,
        issuer: Some(match &req.issuer {
            Some(issuer) => account_reference("issuer", issuer)?,
            None => pb::ConnectAccountReference {
                account: None,
                r#type: pb::ConnectAccountReferenceType::Self_ as i32,
            },
        }),
        livemode,
        metadata: new_metadata("metadata", &req.metadata)?,
        number: req.number.as_deref().map(number).transpose()?.flatten(),
        object: "invoice".to_owned(),
        payment_settings: Some(match &req.payment_settings {
            Some(params) => payment_settings(params)?,
            None => pb::InvoicePaymentSettings::default(),
        }),
        period_end: now,
        period_start: now,
        rendering: req.rendering.as_ref().map(rendering).transpose()?,
        shipping_cost: req
            .shipping_cost
            .as_ref()
            .map(|s| shipping_cost(s, currency.as_str()))
            .transpose()?
            .flatten(),
        shipping_details: req.shipping_details.as_ref().map(shipping_details).transpose()?.flatten(),
        statement_descriptor: req
            .statement_descriptor
            .as_deref()
            .map(statement_descriptor)
            .transpose()?
            .flatten(),
        status_transitions: Some(pb::InvoiceStatusTransitions::default()),
        webhooks_delivered_at: Some(now),
        ..Default::default()
    };
    due_date(&mut doc, req.due_date, req.days_until_due, now)?;
    doc.amount_shipping = doc.shipping_cost.as_ref().map_or(0, |c| c.amount_total);
    crate::model::set_status(&mut doc, InvoiceStatus::Draft);
    Ok((doc, include))
}

/// The UpdateInvoice fields only a draft takes (Stripe: monetary values and `collection_method`
/// cannot change once finalized).
fn draft_only_fields(req: &pb::UpdateInvoiceRequest) -> impl Iterator<Item = &'static str> {
    [
        ("account_tax_ids", req.account_tax_ids.is_some()),
        ("automatic_tax", req.automatic_tax.is_some()),
        ("automatically_finalizes_at", req.automatically_finalizes_at.is_some()),
        ("collection_method", req.collection_method.is_some()),
        ("days_until_due", req.days_until_due.is_some()),
        ("default_tax_rates", req.default_tax_rates.is_some()),
        ("discounts", req.discounts.is_some()),
        ("due_date", req.due_date.is_some()),
        ("effective_at", req.effective_at.is_some()),
        ("issuer", req.issuer.is_some()),
        ("number", req.number.is_some()),
        ("shipping_cost", req.shipping_cost.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
}

/// The fields other than `metadata` that UpdateInvoice sets (a void invoice takes none of them).
fn non_metadata_fields(req: &pb::UpdateInvoiceRequest) -> impl Iterator<Item = &'static str> {
    [
        ("application_fee_amount", req.application_fee_amount.is_some()),
        ("auto_advance", req.auto_advance.is_some()),
        ("custom_fields", req.custom_fields.is_some()),
        ("default_payment_method", req.default_payment_method.is_some()),
        ("default_source", req.default_source.is_some()),
        ("description", req.description.is_some()),
        ("footer", req.footer.is_some()),
        ("on_behalf_of", req.on_behalf_of.is_some()),
        ("payment_settings", req.payment_settings.is_some()),
        ("rendering", req.rendering.is_some()),
        ("shipping_details", req.shipping_details.is_some()),
        ("statement_descriptor", req.statement_descriptor.is_some()),
        ("transfer_data", req.transfer_data.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .chain(draft_only_fields(req))
}

/// Checks UpdateInvoice's parameters that do not depend on the invoice.
pub fn check_update(req: &pb::UpdateInvoiceRequest) -> Result<(), ApiError> {
    let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    validate::unsupported(
        "application_fee_amount",
        req.application_fee_amount.is_some(),
        "settle has no Connect fees",
    )?;
    validate::unsupported("default_source", present(&req.default_source), "settle has no payment sources")?;
    validate::unsupported(
        "default_tax_rates",
        req.default_tax_rates.as_ref().is_some_and(|l| !l.values.is_empty()),
        "settle has no tax rate objects",
    )?;
    validate::unsupported(
        "discounts",
        req.discounts.as_ref().is_some_and(|l| !l.values.is_empty()),
        "settle has no discounts",
    )?;
    validate::unsupported("on_behalf_of", present(&req.on_behalf_of), "settle has no connected accounts")?;
    validate::unsupported(
        "transfer_data",
        req.transfer_data.as_ref().is_some_and(|t| *t != pb::InvoiceTransferDataParams::default()),
        "settle has no connected accounts",
    )?;
    validate::max_len("description", req.description.as_deref(), 1_500)?;
    validate::max_len("footer", req.footer.as_deref(), 5_000)?;
    validate::metadata("metadata", &req.metadata)?;
    if let Some(ids) = &req.account_tax_ids
        && let Some(i) = ids.values.iter().position(String::is_empty)
    {
        return Err(ApiError::missing_param(&format!("account_tax_ids[{i}]")));
    }
    collection_method(req.collection_method)?;
    Ok(())
}

/// Refuses what the invoice's status does not allow.
pub fn check_update_status(req: &pb::UpdateInvoiceRequest, status: InvoiceStatus) -> Result<(), ApiError> {
    let refuse = |field: &str, why: &str| {
        Err(ApiError::failed_precondition(
            ErrorReason::InvoiceNotEditable,
            format!("This invoice is {}: {field} {why}.", status.as_str()),
        )
        .with_violation(field, why))
    };
    match status {
        InvoiceStatus::Draft => Ok(()),
        InvoiceStatus::Void => match non_metadata_fields(req).next() {
            Some(field) => refuse(field, "cannot change on a void invoice, which takes only metadata"),
            None => Ok(()),
        },
        _ => match draft_only_fields(req).next() {
            Some(field) => refuse(field, "can only change while the invoice is a draft"),
            None => Ok(()),
        },
    }
}

/// Applies UpdateInvoice to the (locked) invoice; the caller recomputes the amounts.
pub fn apply_update(doc: &mut pb::Invoice, req: &pb::UpdateInvoiceRequest, now: i64) -> Result<(), ApiError> {
    if let Some(ids) = &req.account_tax_ids {
        doc.account_tax_ids.clone_from(&ids.values);
    }
    if let Some(auto) = req.auto_advance {
        doc.auto_advance = auto;
    }
    if let Some(params) = &req.automatic_tax {
        doc.automatic_tax = Some(automatic_tax(params)?);
    }
    if let Some(at) = req.automatically_finalizes_at {
        doc.automatically_finalizes_at = if at == 0 {
            None
        } else {
            Some(future_time("automatically_finalizes_at", at, now, FIVE_YEARS)?)
        };
    }
    if let Some(method) = collection_method(req.collection_method)? {
        doc.collection_method = method as i32;
    }
    if req.collection_method.is_some() || req.due_date.is_some() || req.days_until_due.is_some() {
        due_date(doc, req.due_date, req.days_until_due, now)?;
    }
    if let Some(fields) = &req.custom_fields {
        doc.custom_fields = custom_fields("custom_fields", &fields.values)?;
    }
    if let Some(pm) = &req.default_payment_method {
        doc.default_payment_method = default_payment_method(pm)?;
    }
    if req.default_tax_rates.is_some() {
        doc.default_tax_rates.clear();
    }
    if let Some(description) = &req.description {
        doc.description = non_empty(description);
    }
    if req.discounts.is_some() {
        doc.discounts.clear();
    }
    if let Some(at) = req.effective_at {
        doc.effective_at = if at == 0 { None } else { Some(positive_time("effective_at", at)?) };
    }
    if let Some(footer) = &req.footer {
        doc.footer = non_empty(footer);
    }
    if let Some(issuer) = &req.issuer {
        doc.issuer = Some(account_reference("issuer", issuer)?);
    }
    if let Some(value) = &req.number {
        doc.number = number(value)?;
    }
    if let Some(params) = &req.payment_settings {
        doc.payment_settings = Some(payment_settings(params)?);
    }
    if let Some(params) = &req.rendering {
        doc.rendering = Some(rendering(params)?);
    }
    if let Some(params) = &req.shipping_cost {
        doc.shipping_cost = shipping_cost(params, &doc.currency)?;
        doc.amount_shipping = doc.shipping_cost.as_ref().map_or(0, |c| c.amount_total);
    }
    if let Some(params) = &req.shipping_details {
        doc.shipping_details = shipping_details(params)?;
    }
    if let Some(value) = &req.statement_descriptor {
        doc.statement_descriptor = statement_descriptor(value)?;
    }
    merge_metadata("metadata", &mut doc.metadata, &req.metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create() -> pb::CreateInvoiceRequest {
        pb::CreateInvoiceRequest {
            customer: Some("cus_1".into()),
            currency: Some("usd".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_invoice_is_a_manual_draft_issued_by_self() {
        let (doc, include) = new_invoice(&create(), "in_1".into(), false, 1_000).unwrap();
        assert!(!include);
        assert_eq!(doc.status, Some(pb::InvoiceStatus::Draft as i32));
        assert_eq!(doc.collection_method, pb::InvoiceCollectionMethod::ChargeAutomatically as i32);
        assert_eq!(doc.issuer.unwrap().r#type, pb::ConnectAccountReferenceType::Self_ as i32);
        assert_eq!(
            (doc.period_start, doc.period_end, doc.webhooks_delivered_at),
            (1_000, 1_000, Some(1_000))
        );
    }

    #[test]
    fn due_dates_need_send_invoice_and_one_of_two_parameters() {
        let mut req = create();
        req.days_until_due = Some(30);
        assert_eq!(
            new_invoice(&req, "in_1".into(), false, 1_000).unwrap_err().field_violations[0].0,
            "days_until_due"
        );
        req.collection_method = Some(pb::InvoiceCollectionMethod::SendInvoice as i32);
        assert_eq!(
            new_invoice(&req, "in_1".into(), false, 1_000).unwrap().0.due_date,
            Some(1_000 + 30 * DAY)
        );
        req.due_date = Some(5_000);
        assert_eq!(
            new_invoice(&req, "in_1".into(), false, 1_000).unwrap_err().reason_code(),
            "parameters_exclusive"
        );
    }

    #[test]
    fn unsupported_features_are_refused_by_name() {
        for (req, field) in [
            (pb::CreateInvoiceRequest { subscription: Some("sub_1".into()), ..create() }, "subscription"),
            (
                pb::CreateInvoiceRequest { default_tax_rates: vec!["txr_1".into()], ..create() },
                "default_tax_rates",
            ),
            (
                pb::CreateInvoiceRequest {
                    automatic_tax: Some(pb::InvoiceAutomaticTaxParams { enabled: true, liability: None }),
                    ..create()
                },
                "automatic_tax[enabled]",
            ),
            (pb::CreateInvoiceRequest { customer: None, ..create() }, "customer"),
            (pb::CreateInvoiceRequest { currency: Some("xyz".into()), ..create() }, "currency"),
            (pb::CreateInvoiceRequest { number: Some("N".repeat(27)), ..create() }, "number"),
        ] {
            let error = new_invoice(&req, "in_1".into(), false, 1_000).unwrap_err();
            assert_eq!(error.field_violations[0].0, field);
        }
    }

    #[test]
    fn shipping_needs_a_fixed_amount_in_the_invoices_currency() {
        let mut params = pb::InvoiceShippingCostParams {
            shipping_rate_data: Some(pb::InvoiceShippingRateDataParams {
                display_name: "Ground".into(),
                fixed_amount: Some(pb::ShippingRateFixedAmountParams {
                    amount: 500,
                    currency: "usd".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cost = shipping_cost(&params, "usd").unwrap().unwrap();
        assert_eq!((cost.amount_total, cost.amount_tax), (500, 0));
        assert!(cost.shipping_rate.unwrap().starts_with("shr_"));
        assert_eq!(shipping_cost(&params, "eur").unwrap_err().reason_code(), "currency_mismatch");
        params.shipping_rate_data.as_mut().unwrap().fixed_amount = None;
        assert_eq!(
            shipping_cost(&params, "usd").unwrap_err().field_violations[0].0,
            "shipping_cost[shipping_rate_data][fixed_amount]"
        );
        assert_eq!(shipping_cost(&Default::default(), "usd").unwrap(), None);
    }

    #[test]
    fn finalized_invoices_refuse_draft_only_fields_and_void_ones_all_but_metadata() {
        let number = pb::UpdateInvoiceRequest { number: Some("X-1".into()), ..Default::default() };
        let error = check_update_status(&number, InvoiceStatus::Open).unwrap_err();
        assert_eq!(
            (error.reason_code().as_str(), error.field_violations[0].0.as_str()),
            ("invoice_not_editable", "number")
        );
        let memo = pb::UpdateInvoiceRequest { description: Some("memo".into()), ..Default::default() };
        assert!(check_update_status(&memo, InvoiceStatus::Paid).is_ok());
        assert!(check_update_status(&memo, InvoiceStatus::Void).is_err());
        let mut metadata = pb::UpdateInvoiceRequest::default();
        metadata.metadata.insert("k".into(), "v".into());
        assert!(check_update_status(&metadata, InvoiceStatus::Void).is_ok());
    }
}
