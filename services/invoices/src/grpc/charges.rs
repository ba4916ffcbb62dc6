//! The parameters invoice items and invoice lines share — amount, price data, quantity, period,
//! manual tax amounts — checked Stripe's way, each refusal naming its field (`lines[2][quantity]`).

use prost::Message;
use settle_money::Amount;
use settle_platform::ApiError;
use settle_platform::Scope;
use settle_platform::db::Tx;
use settle_platform::ids::IdPrefix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use sha2::{Digest, Sha256};

use crate::domain::charge::{Charge, ChargeError, Decimal, DecimalError, MAX_AMOUNT};
use crate::store::tax_rates;

/// Most manual tax amounts a line may have.
const MAX_TAX_AMOUNTS: usize = 20;

/// `{prefix}[{name}]`, or `name` at the top level.
pub fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}[{name}]") }
}

pub fn decimal(field: &str, value: &str) -> Result<Decimal, ApiError> {
    Decimal::parse(value).map_err(|error| {
        let reason = match error {
            DecimalError::TooLarge => ErrorReason::AmountTooLarge,
            DecimalError::Malformed | DecimalError::TooPrecise => ErrorReason::ParameterInvalid,
        };
        ApiError::invalid_param(field, reason, format!("Invalid {field}: {error}."))
    })
}

/// `quantity` or `quantity_decimal` (not both), if given.
pub fn quantity(
    prefix: &str,
    quantity: Option<i64>,
    quantity_decimal: Option<&str>,
) -> Result<Option<Decimal>, ApiError> {
    match (quantity, quantity_decimal) {
        (Some(_), Some(_)) => {
            Err(ApiError::exclusive_params(&field(prefix, "quantity"), &field(prefix, "quantity_decimal")))
        }
        (Some(q), None) => Decimal::from_int(q).map(Some).map_err(|_| {
            ApiError::invalid_param(
                &field(prefix, "quantity"),
                ErrorReason::ParameterInvalidInteger,
                "quantity must be a non-negative integer.",
            )
        }),
        (None, Some(q)) => decimal(&field(prefix, "quantity_decimal"), q).map(Some),
        (None, None) => Ok(None),
    }
}

/// A fixed `amount`, within settle's bounds.
pub fn amount(prefix: &str, value: i64) -> Result<Amount, ApiError> {
    if value.unsigned_abs() > MAX_AMOUNT.unsigned_abs() {
        return Err(ApiError::invalid_param(
            &field(prefix, "amount"),
            ErrorReason::AmountTooLarge,
            format!("amount must be between -{MAX_AMOUNT} and {MAX_AMOUNT}."),
        ));
    }
    Ok(Amount::new(value))
}

/// A charge refused as a whole: the parameter it concerns is `amount` or `quantity`.
pub fn charge_error(prefix: &str, error: ChargeError) -> ApiError {
    let message = error.to_string();
    match error {
        ChargeError::QuantityWithFixedAmount => {
            ApiError::invalid_param(&field(prefix, "quantity"), ErrorReason::ParameterInvalid, message)
        }
        ChargeError::AmountTooLarge => {
            ApiError::invalid_param(&field(prefix, "amount"), ErrorReason::AmountTooLarge, message)
        }
    }
}

/// Neither of the ways to price a new item was given.
pub fn missing_price(prefix: &str, options: &[&str]) -> ApiError {
    let names: Vec<String> = options.iter().map(|o| field(prefix, o)).collect();
    let message = format!("Missing required param: one of {}.", names.join(", "));
    ApiError {
        code: tonic::Code::InvalidArgument,
        reason: ErrorReason::ParameterMissing,
        field_violations: names.into_iter().map(|n| (n, message.clone())).collect(),
        message,
    }
}

/// `pricing.price` names a price object, which settle does not have.
pub fn reject_pricing(prefix: &str, pricing: Option<&pb::PricingParams>) -> Result<(), ApiError> {
    validate::unsupported(
        &format!("{}[price]", field(prefix, "pricing")),
        pricing.and_then(|p| p.price.as_deref()).is_some_and(|p| !p.is_empty()),
        "settle has no price catalogue; use price_data",
    )
}

/// A unit amount from `unit_amount` or `unit_amount_decimal` (exactly one).
fn unit_amount(
    prefix: &str,
    unit_amount: Option<i64>,
    unit_amount_decimal: Option<&str>,
) -> Result<Decimal, ApiError> {
    match (unit_amount, unit_amount_decimal) {
        (Some(_), Some(_)) => Err(ApiError::exclusive_params(
            &field(prefix, "unit_amount"),
            &field(prefix, "unit_amount_decimal"),
        )),
        (Some(unit), None) => Decimal::from_int(unit).map_err(|_| {
            ApiError::invalid_param(
                &field(prefix, "unit_amount"),
                ErrorReason::ParameterInvalidInteger,
                "unit_amount must be a non-negative integer.",
            )
        }),
        (None, Some(unit)) => decimal(&field(prefix, "unit_amount_decimal"), unit),
        (None, None) => Err(missing_price(prefix, &["unit_amount", "unit_amount_decimal"])),
    }
}

/// An inline price: its unit amount and the `price_details` it is shown with.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceData {
    pub unit: Decimal,
    pub details: pb::PricingPriceDetails,
}

fn price_currency(prefix: &str, value: &str, currency: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::missing_param(&field(prefix, "currency")));
    }
    if value != currency {
        return Err(ApiError::invalid_param(
            &field(prefix, "currency"),
            ErrorReason::CurrencyMismatch,
            format!("The price's currency must be the item's ({currency})."),
        ));
    }
    Ok(())
}

/// A line's `price_data` (`product` or `product_data`).
pub fn line_price_data(
    prefix: &str,
    params: &pb::InvoiceLinePriceDataParams,
    currency: &str,
) -> Result<PriceData, ApiError> {
    let prefix = field(prefix, "price_data");
    price_currency(&prefix, &params.currency, currency)?;
    let product = match (params.product.as_deref().filter(|p| !p.is_empty()), &params.product_data) {
        (Some(_), Some(_)) => {
            return Err(ApiError::exclusive_params(
                &field(&prefix, "product"),
                &field(&prefix, "product_data"),
            ));
        }
        (Some(product), None) => product.to_owned(),
        (None, Some(data)) => {
            let data_field = field(&prefix, "product_data");
            if data.name.is_empty() {
                return Err(ApiError::missing_param(&field(&data_field, "name")));
            }
            validate::max_len(&field(&data_field, "description"), data.description.as_deref(), 40_000)?;
            validate::max_len(&field(&data_field, "unit_label"), data.unit_label.as_deref(), 12)?;
            if data.images.len() > 8 {
                return Err(ApiError::invalid_param(
                    &field(&data_field, "images"),
                    ErrorReason::ParameterInvalid,
                    "A product can have at most 8 images.",
                ));
            }
            validate::metadata(&field(&data_field, "metadata"), &data.metadata)?;
            IdPrefix::Product.generate()
        }
        (None, None) => return Err(missing_price(&prefix, &["product", "product_data"])),
    };
    let unit = unit_amount(&prefix, params.unit_amount, params.unit_amount_decimal.as_deref())?;
    Ok(PriceData { unit, details: pb::PricingPriceDetails { price: IdPrefix::Price.generate(), product } })
}

/// An invoice item's `price_data` (`product` required).
pub fn item_price_data(
    params: &pb::InvoiceItemPriceDataParams,
    currency: &str,
) -> Result<PriceData, ApiError> {
    let prefix = "price_data";
    price_currency(prefix, &params.currency, currency)?;
    if params.product.is_empty() {
        return Err(ApiError::missing_param(&field(prefix, "product")));
    }
    let unit = unit_amount(prefix, params.unit_amount, params.unit_amount_decimal.as_deref())?;
    Ok(PriceData {
        unit,
        details: pb::PricingPriceDetails {
            price: IdPrefix::Price.generate(),
            product: params.product.clone(),
        },
    })
}

/// A `period` parameter: both ends, `end` not before `start`.
pub fn period(prefix: &str, value: Option<&pb::Period>) -> Result<Option<pb::Period>, ApiError> {
    let Some(period) = value else { return Ok(None) };
    let name = field(prefix, "period");
    if period.start < 1 {
        return Err(ApiError::missing_param(&field(&name, "start")));
    }
    if period.end < 1 {
        return Err(ApiError::missing_param(&field(&name, "end")));
    }
    if period.end < period.start {
        return Err(ApiError::invalid_param(
            &field(&name, "end"),
            ErrorReason::ParameterInvalid,
            "The period's end must not be before its start.",
        ));
    }
    Ok(Some(*period))
}

/// Checks manual `tax_amounts` (before anything is written).
pub fn check_tax_amounts(prefix: &str, amounts: &[pb::TaxAmountParams]) -> Result<(), ApiError> {
    let list = field(prefix, "tax_amounts");
    if amounts.len() > MAX_TAX_AMOUNTS {
        return Err(ApiError::invalid_param(
            &list,
            ErrorReason::ParameterInvalid,
            format!("A line can have at most {MAX_TAX_AMOUNTS} tax amounts."),
        ));
    }
    for (i, tax) in amounts.iter().enumerate() {
        let item = format!("{list}[{i}]");
        for (name, value) in [("amount", tax.amount), ("taxable_amount", tax.taxable_amount)] {
            if value.unsigned_abs() > MAX_AMOUNT.unsigned_abs() {
                return Err(ApiError::invalid_param(
                    &field(&item, name),
                    ErrorReason::AmountTooLarge,
                    format!("{name} must be between -{MAX_AMOUNT} and {MAX_AMOUNT}."),
                ));
            }
        }
        if tax.taxability_reason == Some(pb::TaxabilityReason::NotAvailable as i32)
            || tax.taxability_reason.is_some_and(|r| pb::TaxabilityReason::try_from(r).is_err())
        {
            return Err(ApiError::invalid_param(
                &field(&item, "taxability_reason"),
                ErrorReason::ParameterInvalid,
                "Invalid taxability_reason (not_available cannot be set).",
            ));
        }
        let rate = tax
            .tax_rate_data
            .as_ref()
            .ok_or_else(|| ApiError::missing_param(&field(&item, "tax_rate_data")))?;
        let rate_field = field(&item, "tax_rate_data");
        if rate.display_name.is_empty() {
            return Err(ApiError::missing_param(&field(&rate_field, "display_name")));
        }
        validate::max_len(&field(&rate_field, "display_name"), Some(&rate.display_name), 100)?;
        validate::max_len(&field(&rate_field, "jurisdiction"), rate.jurisdiction.as_deref(), 200)?;
        if !(rate.percentage.is_finite() && (0.0..=100.0).contains(&rate.percentage)) {
            return Err(ApiError::invalid_param(
                &field(&rate_field, "percentage"),
                ErrorReason::ParameterInvalid,
                "percentage must be between 0 and 100.",
            ));
        }
        if rate
            .country
            .as_deref()
            .is_some_and(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(ApiError::invalid_param(
                &field(&rate_field, "country"),
                ErrorReason::ParameterInvalid,
                "country must be a two-letter ISO code.",
            ));
        }
    }
    Ok(())
}

/// The line's `taxes` for checked `tax_amounts`, recording each inline rate (`txr_…`, one per distinct
/// rate data within the account).
pub async fn taxes(
    tx: &mut Tx,
    scope: &Scope,
    amounts: &[pb::TaxAmountParams],
) -> Result<Vec<pb::Tax>, ApiError> {
    let mut taxes = Vec::with_capacity(amounts.len());
    for tax in amounts {
        let data = tax.tax_rate_data.clone().unwrap_or_default();
        let fingerprint: String =
            Sha256::digest(data.encode_to_vec()).iter().map(|b| format!("{b:02x}")).collect();
        let rate = tax_rates::id_for(tx, scope, &fingerprint).await?;
        let behavior = if data.inclusive { pb::TaxBehavior::Inclusive } else { pb::TaxBehavior::Exclusive };
        taxes.push(pb::Tax {
            amount: tax.amount,
            tax_behavior: behavior as i32,
            tax_rate_details: Some(pb::TaxRateDetails { tax_rate: rate }),
            taxability_reason: tax.taxability_reason.unwrap_or_default(),
            taxable_amount: Some(tax.taxable_amount),
            r#type: pb::TaxType::TaxRateDetails as i32,
        });
    }
    Ok(taxes)
}

/// Applies a charge change to `current`, naming the field a refusal concerns.
pub fn change_charge(
    prefix: &str,
    current: Charge,
    amount: Option<Amount>,
    unit: Option<Decimal>,
    quantity: Option<Decimal>,
) -> Result<Charge, ApiError> {
    current.change(amount, unit, quantity).map_err(|e| charge_error(prefix, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_one_of_two_parameters_and_name_their_field() {
        assert_eq!(quantity("lines[0]", Some(3), None).unwrap(), Some(Decimal::from_int(3).unwrap()));
        assert_eq!(quantity("", Some(-1), None).unwrap_err().field_violations[0].0, "quantity");
        assert_eq!(
            quantity("lines[1]", None, Some("1.2.3")).unwrap_err().field_violations[0].0,
            "lines[1][quantity_decimal]"
        );
        assert_eq!(quantity("", Some(1), Some("1")).unwrap_err().reason_code(), "parameters_exclusive");
    }

    #[test]
    fn line_price_data_needs_a_product_a_unit_amount_and_the_invoice_currency() {
        let mut params = pb::InvoiceLinePriceDataParams {
            currency: "usd".into(),
            product: Some("prod_1".into()),
            unit_amount_decimal: Some("12.5".into()),
            ..Default::default()
        };
        let price = line_price_data("lines[0]", &params, "usd").unwrap();
        assert_eq!((price.unit.to_string(), price.details.product.as_str()), ("12.5".to_owned(), "prod_1"));
        assert!(price.details.price.starts_with("price_"));
        assert_eq!(
            line_price_data("lines[0]", &params, "eur").unwrap_err().field_violations[0].0,
            "lines[0][price_data][currency]"
        );
        params.unit_amount = Some(5);
        assert_eq!(
            line_price_data("lines[0]", &params, "usd").unwrap_err().reason_code(),
            "parameters_exclusive"
        );
        params.unit_amount_decimal = None;
        params.product = None;
        assert_eq!(
            line_price_data("lines[0]", &params, "usd").unwrap_err().reason_code(),
            "parameter_missing"
        );
        params.product_data = Some(pb::ProductDataParams { name: "Widget".into(), ..Default::default() });
        assert!(line_price_data("lines[0]", &params, "usd").unwrap().details.product.starts_with("prod_"));
    }

    #[test]
    fn tax_amounts_need_rate_data_and_a_sane_percentage() {
        let good = pb::TaxAmountParams {
            amount: 190,
            taxable_amount: 1_000,
            tax_rate_data: Some(pb::TaxRateDataParams {
                display_name: "VAT".into(),
                percentage: 19.0,
                ..Default::default()
            }),
            taxability_reason: None,
        };
        assert!(check_tax_amounts("lines[0]", std::slice::from_ref(&good)).is_ok());
        let mut bad = good.clone();
        bad.tax_rate_data.as_mut().unwrap().percentage = 150.0;
        assert_eq!(
            check_tax_amounts("lines[0]", &[good.clone(), bad]).unwrap_err().field_violations[0].0,
            "lines[0][tax_amounts][1][tax_rate_data][percentage]"
        );
        let none = pb::TaxAmountParams { tax_rate_data: None, ..good.clone() };
        assert_eq!(
            check_tax_amounts("", &[none]).unwrap_err().field_violations[0].0,
            "tax_amounts[0][tax_rate_data]"
        );
        assert!(check_tax_amounts("", &vec![good; 21]).is_err());
    }

    #[test]
    fn periods_need_both_ends_in_order() {
        assert!(period("", Some(&pb::Period { start: 10, end: 20 })).is_ok());
        assert_eq!(
            period("", Some(&pb::Period { start: 20, end: 10 })).unwrap_err().field_violations[0].0,
            "period[end]"
        );
        assert_eq!(
            period("lines[0]", Some(&pb::Period { start: 0, end: 10 })).unwrap_err().field_violations[0].0,
            "lines[0][period][start]"
        );
    }
}
