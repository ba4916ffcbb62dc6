//! Request parameters → domain values and document fields, with Stripe's validation. Every check
//! runs before any store is touched, so a refused request changes nothing.

use settle_money::Currency;
use settle_platform::ApiError;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::payments::v1 as pb;

use crate::domain::payment_intent::CaptureMethod;
use crate::domain::payment_method::MethodType;
use crate::model::capture_method_from_pb;

/// A lowercase ISO currency settle supports.
pub fn currency(field: &str, value: &str) -> Result<Currency, ApiError> {
    if value.is_empty() {
        return Err(ApiError::missing_param(field));
    }
    Currency::parse(value)
        .map_err(|e| ApiError::invalid_param(field, ErrorReason::InvalidCurrency, e.to_string()))
}

/// An optional enum field that must hold a known, non-zero value.
pub fn known_enum<T>(
    field: &str,
    value: Option<i32>,
    parse: impl Fn(i32) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            parse(v).ok_or_else(|| {
                ApiError::invalid_param(field, ErrorReason::ParameterInvalid, format!("Invalid {field}: {v}"))
            })
        })
        .transpose()
}

pub fn capture_method(field: &str, value: Option<i32>) -> Result<Option<CaptureMethod>, ApiError> {
    known_enum(field, value, capture_method_from_pb)
}

/// `payment_method_types`: settle's methods are `card` and `us_bank_account`.
pub fn method_types(field: &str, values: &[String]) -> Result<Vec<MethodType>, ApiError> {
    if values.is_empty() {
        return Ok(vec![MethodType::Card, MethodType::UsBankAccount]);
    }
    let mut types = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let method = MethodType::parse(value).ok_or_else(|| {
            ApiError::invalid_param(
                &format!("{field}[{i}]"),
                ErrorReason::PaymentIntentInvalidParameter,
                format!("The payment method type {value:?} is invalid or not available in settle; use card or us_bank_account."),
            )
        })?;
        if !types.contains(&method) {
            types.push(method);
        }
    }
    Ok(types)
}

/// A customer id, if one is sent (empty = none).
pub fn customer(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(c) => validate::customer_id(field, c).map(|()| Some(c.to_owned())),
    }
}

/// The payment method a request names, directly or through `payment_method_data`.
pub fn payment_method(
    id: Option<&str>,
    data: Option<&pb::PaymentIntentPaymentMethodDataParams>,
) -> Result<Option<String>, ApiError> {
    match (id.filter(|s| !s.is_empty()), data) {
        (Some(_), Some(_)) => Err(ApiError::exclusive_params("payment_method", "payment_method_data")),
        (Some(id), None) => Ok(Some(id.to_owned())),
        (None, Some(data)) => {
            if data.r#type == pb::PaymentMethodType::UsBankAccount as i32 {
                // An inline bank account behaves like the test bank account.
                Ok(Some("pm_us_bank_account".to_owned()))
            } else {
                Err(ApiError::invalid_param(
                    "payment_method_data[type]",
                    ErrorReason::PaymentIntentInvalidParameter,
                    "settle creates inline payment methods of type us_bank_account only; pass a test payment method id such as pm_card_visa instead.",
                ))
            }
        }
        (None, None) => Ok(None),
    }
}

/// The descriptive fields shared by create and update, checked.
pub struct Descriptive<'a> {
    pub description: Option<&'a str>,
    pub receipt_email: Option<&'a str>,
    pub statement_descriptor: Option<&'a str>,
    pub statement_descriptor_suffix: Option<&'a str>,
    pub metadata: &'a std::collections::BTreeMap<String, String>,
}

impl Descriptive<'_> {
    pub fn check(&self) -> Result<(), ApiError> {
        validate::max_len("description", self.description, 1000)?;
        if let Some(email) = self.receipt_email.filter(|e| !e.is_empty()) {
            validate::email("receipt_email", email)?;
        }
        if let Some(d) = self.statement_descriptor.filter(|d| !d.is_empty()) {
            validate::statement_descriptor("statement_descriptor", d, 22)?;
        }
        if let Some(d) = self.statement_descriptor_suffix.filter(|d| !d.is_empty()) {
            validate::statement_descriptor("statement_descriptor_suffix", d, 22)?;
        }
        validate::metadata("metadata", self.metadata)
    }
}

/// `""` unsets an optional string.
pub fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

/// Shipping needs an address and a name (Stripe's rule); an empty message unsets it.
pub fn shipping(
    value: Option<&settle_proto::common::v1::Shipping>,
) -> Result<Option<settle_proto::common::v1::Shipping>, ApiError> {
    match value {
        None => Ok(None),
        Some(s) if *s == settle_proto::common::v1::Shipping::default() => Ok(None),
        Some(s) if s.address.is_none() => Err(ApiError::missing_param("shipping[address]")),
        Some(s) if s.name.as_deref().is_none_or(str::is_empty) => {
            Err(ApiError::missing_param("shipping[name]"))
        }
        Some(s) => Ok(Some(s.clone())),
    }
}

/// Rejects Connect and other parameters whose semantics settle does not have.
pub fn unsupported_connect(
    application_fee_amount: Option<i64>,
    on_behalf_of: Option<&str>,
    transfer_data: Option<&pb::PaymentIntentTransferData>,
    confirmation_token: Option<&str>,
    payment_method_configuration: Option<&str>,
) -> Result<(), ApiError> {
    validate::unsupported(
        "application_fee_amount",
        application_fee_amount.is_some(),
        "settle has no Connect platform fees",
    )?;
    validate::unsupported(
        "on_behalf_of",
        on_behalf_of.is_some_and(|v| !v.is_empty()),
        "settle has no connected accounts",
    )?;
    validate::unsupported(
        "transfer_data",
        transfer_data.is_some_and(|t| *t != pb::PaymentIntentTransferData::default()),
        "settle has no connected accounts",
    )?;
    validate::unsupported(
        "confirmation_token",
        confirmation_token.is_some_and(|v| !v.is_empty()),
        "settle has no ConfirmationTokens",
    )?;
    validate::unsupported(
        "payment_method_configuration",
        payment_method_configuration.is_some_and(|v| !v.is_empty()),
        "settle has no payment method configurations",
    )
}

/// `payment_method_options` parameters → the object's options; each method's options replace the
/// stored ones for that method.
pub fn merge_method_options(
    current: Option<pb::PaymentIntentPaymentMethodOptions>,
    params: Option<&pb::PaymentIntentPaymentMethodOptionsParams>,
) -> Result<Option<pb::PaymentIntentPaymentMethodOptions>, ApiError> {
    let Some(params) = params else {
        return Ok(current);
    };
    let mut options = current.unwrap_or_default();
    if let Some(card) = &params.card {
        validate::unsupported(
            "payment_method_options[card][three_d_secure]",
            card.three_d_secure.is_some(),
            "settle does not take externally authenticated 3D Secure results",
        )?;
        options.card = Some(pb::PaymentIntentCardOptions {
            capture_method: card.capture_method,
            installments: card.installments.as_ref().map(|i| pb::PaymentIntentCardInstallments {
                available_plans: Vec::new(),
                enabled: i.enabled.unwrap_or(false),
                plan: i.plan,
            }),
            mandate_options: card.mandate_options.clone(),
            network: card.network,
            request_extended_authorization: card.request_extended_authorization,
            request_incremental_authorization: card.request_incremental_authorization,
            request_multicapture: card.request_multicapture,
            request_overcapture: card.request_overcapture,
            request_three_d_secure: card.request_three_d_secure,
            require_cvc_recollection: card.require_cvc_recollection,
            setup_future_usage: card.setup_future_usage,
            statement_descriptor_suffix_kana: card.statement_descriptor_suffix_kana.clone(),
            statement_descriptor_suffix_kanji: card.statement_descriptor_suffix_kanji.clone(),
        });
    }
    if let Some(bank) = &params.us_bank_account {
        options.us_bank_account = Some(pb::PaymentIntentUsBankAccountOptions {
            financial_connections: bank.financial_connections.clone(),
            mandate_options: bank.mandate_options,
            setup_future_usage: bank.setup_future_usage,
            target_date: bank.target_date.clone(),
            transaction_purpose: bank.transaction_purpose,
            verification_method: bank.verification_method,
        });
    }
    Ok(Some(options))
}

/// `amount_details` parameters → the object (line items get ids); an empty message unsets it.
pub fn amount_details(
    intent_id: &str,
    params: Option<&pb::PaymentIntentAmountDetailsParams>,
) -> Result<Option<pb::PaymentIntentAmountDetails>, ApiError> {
    let Some(params) = params else {
        return Ok(None);
    };
    if *params == pb::PaymentIntentAmountDetailsParams::default() {
        return Ok(None);
    }
    let mut line_items = Vec::with_capacity(params.line_items.len());
    for (i, item) in params.line_items.iter().enumerate() {
        if item.product_name.is_empty() {
            return Err(ApiError::missing_param(&format!("amount_details[line_items][{i}][product_name]")));
        }
        if item.quantity < 1 {
            return Err(ApiError::invalid_param(
                &format!("amount_details[line_items][{i}][quantity]"),
                ErrorReason::ParameterInvalidInteger,
                "This value must be greater than or equal to 1.",
            ));
        }
        line_items.push(pb::PaymentIntentAmountDetailsLineItem {
            discount_amount: item.discount_amount,
            id: format!("uli_{}_{i}", intent_id.trim_start_matches("pi_")),
            object: "payment_intent_amount_details_line_item".to_owned(),
            payment_method_options: item.payment_method_options.clone(),
            product_code: item.product_code.clone(),
            product_name: item.product_name.clone(),
            quantity: item.quantity,
            tax: item.tax,
            unit_cost: item.unit_cost,
            unit_of_measure: item.unit_of_measure.clone(),
        });
    }
    Ok(Some(pb::PaymentIntentAmountDetails {
        discount_amount: params.discount_amount,
        error: None,
        line_items: Some(pb::PaymentIntentAmountDetailsLineItemList {
            data: line_items,
            has_more: false,
            object: "list".to_owned(),
            url: format!("/v1/payment_intents/{intent_id}/amount_details_line_items"),
        }),
        shipping: params.shipping.clone(),
        tax: params.tax,
        tip: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_must_be_supported_lowercase() {
        assert_eq!(currency("currency", "usd").unwrap().as_str(), "usd");
        let e = currency("currency", "xx").unwrap_err();
        assert_eq!(e.reason_code(), "invalid_currency");
        assert_eq!(currency("currency", "").unwrap_err().reason_code(), "parameter_missing");
    }

    #[test]
    fn method_types_default_and_validate() {
        assert_eq!(method_types("payment_method_types", &[]).unwrap().len(), 2);
        let e = method_types("payment_method_types", &["card".into(), "ideal".into()]).unwrap_err();
        assert_eq!(e.field_violations[0].0, "payment_method_types[1]");
    }

    #[test]
    fn payment_method_and_data_are_exclusive() {
        let data = pb::PaymentIntentPaymentMethodDataParams {
            r#type: pb::PaymentMethodType::UsBankAccount as i32,
            ..Default::default()
        };
        assert_eq!(payment_method(None, Some(&data)).unwrap().as_deref(), Some("pm_us_bank_account"));
        assert!(payment_method(Some("pm_card_visa"), Some(&data)).is_err());
    }

    #[test]
    fn shipping_needs_address_and_name() {
        let mut s = settle_proto::common::v1::Shipping { name: Some("A".into()), ..Default::default() };
        assert_eq!(shipping(Some(&s)).unwrap_err().field_violations[0].0, "shipping[address]");
        s.address = Some(Default::default());
        assert!(shipping(Some(&s)).unwrap().is_some());
        assert!(shipping(Some(&Default::default())).unwrap().is_none());
    }
}
