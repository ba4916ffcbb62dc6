//! Payment Record request parameters → domain values and document fields, with Stripe's
//! validation. Every check runs before any store is touched, so a refused request changes nothing.

use settle_money::Currency;
use settle_platform::ApiError;
use settle_platform::validate;
use settle_proto::common::v1::{Address, ErrorReason};
use settle_proto::settle::payments::v1 as pb;

use crate::domain::payment_record::ReportedOutcome;
use crate::grpc::params;

/// Stripe's limit on the record's free-text parameters.
const MAX_TEXT: usize = 5000;

/// A required `{currency, value}`: the currency is checked here, the value by the domain.
pub fn amount(field: &str, value: Option<&pb::PaymentRecordAmount>) -> Result<(Currency, i64), ApiError> {
    let amount = value.ok_or_else(|| ApiError::missing_param(field))?;
    let currency = params::currency(&format!("{field}[currency]"), &amount.currency)?;
    Ok((currency, amount.value))
}

/// A required unix time of a past event (proto3 sends an absent one as 0).
pub fn required_time(field: &str, value: i64, now: i64) -> Result<i64, ApiError> {
    if value == 0 {
        return Err(ApiError::missing_param(field));
    }
    validate::past_unix_time(field, value, now)?;
    Ok(value)
}

/// An optional unix time of a past event.
pub fn optional_time(field: &str, value: Option<i64>, now: i64) -> Result<Option<i64>, ApiError> {
    value.map(|v| validate::past_unix_time(field, v, now).map(|()| v)).transpose()
}

fn report_outcome_from_pb(value: i32) -> Option<pb::ReportPaymentOutcome> {
    pb::ReportPaymentOutcome::try_from(value).ok().filter(|o| *o != pb::ReportPaymentOutcome::Unspecified)
}

fn only_with(field: &str, outcome: &str) -> ApiError {
    ApiError::invalid_param(
        field,
        ErrorReason::ParameterInvalid,
        format!("{field} can only be used with outcome={outcome}."),
    )
}

/// `outcome` with its `failed` / `guaranteed` details: absent reports a pending attempt.
pub fn outcome(
    outcome: Option<i32>,
    failed: Option<&pb::PaymentRecordFailedParams>,
    guaranteed: Option<&pb::PaymentRecordGuaranteedParams>,
    now: i64,
) -> Result<Option<ReportedOutcome>, ApiError> {
    match params::known_enum("outcome", outcome, report_outcome_from_pb)? {
        None => {
            if failed.is_some() {
                return Err(only_with("failed", "failed"));
            }
            if guaranteed.is_some() {
                return Err(only_with("guaranteed", "guaranteed"));
            }
            Ok(None)
        }
        Some(pb::ReportPaymentOutcome::Failed) => {
            if guaranteed.is_some() {
                return Err(only_with("guaranteed", "guaranteed"));
            }
            let failed = failed.ok_or_else(|| ApiError::missing_param("failed"))?;
            let at = required_time("failed[failed_at]", failed.failed_at, now)?;
            Ok(Some(ReportedOutcome::Failed { at }))
        }
        Some(pb::ReportPaymentOutcome::Guaranteed) => {
            if failed.is_some() {
                return Err(only_with("failed", "failed"));
            }
            let guaranteed = guaranteed.ok_or_else(|| ApiError::missing_param("guaranteed"))?;
            let at = required_time("guaranteed[guaranteed_at]", guaranteed.guaranteed_at, now)?;
            Ok(Some(ReportedOutcome::Guaranteed { at }))
        }
        // Filtered out by `report_outcome_from_pb`.
        Some(pb::ReportPaymentOutcome::Unspecified) => Ok(None),
    }
}

fn text(field: &str, value: Option<&String>) -> Result<(), ApiError> {
    validate::max_len(field, value.map(String::as_str), MAX_TEXT)
}

fn address(field: &str, value: Option<&Address>) -> Result<(), ApiError> {
    let Some(a) = value else { return Ok(()) };
    for (name, part) in [
        ("city", &a.city),
        ("country", &a.country),
        ("line1", &a.line1),
        ("line2", &a.line2),
        ("postal_code", &a.postal_code),
        ("state", &a.state),
    ] {
        text(&format!("{field}[{name}]"), part.as_ref())?;
    }
    Ok(())
}

fn email(field: &str, value: Option<&String>) -> Result<(), ApiError> {
    match value.filter(|e| !e.is_empty()) {
        Some(e) => validate::email(field, e),
        None => Ok(()),
    }
}

/// `customer_details`: the customer must look like `cus_…`; an empty message means none.
pub fn customer_details(
    value: Option<&pb::PaymentRecordCustomerDetails>,
) -> Result<Option<pb::PaymentRecordCustomerDetails>, ApiError> {
    let Some(details) = value else {
        return Ok(None);
    };
    let customer = params::customer("customer_details[customer]", details.customer.as_deref())?;
    email("customer_details[email]", details.email.as_ref())?;
    text("customer_details[name]", details.name.as_ref())?;
    text("customer_details[phone]", details.phone.as_ref())?;
    let details = pb::PaymentRecordCustomerDetails {
        customer,
        email: params::non_empty(details.email.as_ref()),
        name: params::non_empty(details.name.as_ref()),
        phone: params::non_empty(details.phone.as_ref()),
    };
    Ok((details != pb::PaymentRecordCustomerDetails::default()).then_some(details))
}

/// `shipping_details`: an empty message means none (Stripe's `""`).
pub fn shipping_details(
    value: Option<&pb::PaymentRecordShippingDetails>,
) -> Result<Option<pb::PaymentRecordShippingDetails>, ApiError> {
    let Some(shipping) = value else {
        return Ok(None);
    };
    address("shipping_details[address]", shipping.address.as_ref())?;
    text("shipping_details[name]", shipping.name.as_ref())?;
    text("shipping_details[phone]", shipping.phone.as_ref())?;
    Ok((*shipping != pb::PaymentRecordShippingDetails::default()).then(|| shipping.clone()))
}

pub fn customer_presence(value: Option<i32>) -> Result<Option<i32>, ApiError> {
    params::known_enum("customer_presence", value, |v| {
        pb::PaymentRecordCustomerPresence::try_from(v)
            .ok()
            .filter(|p| *p != pb::PaymentRecordCustomerPresence::Unspecified)
    })
    .map(|p| p.map(|p| p as i32))
}

pub fn description(value: Option<&String>) -> Result<(), ApiError> {
    text("description", value)
}

/// `payment_method_details` of a report: self-reported payments are of type `custom`, described by
/// `custom.display_name`.
pub fn payment_method_details(
    value: Option<&pb::PaymentRecordPaymentMethodDetailsParams>,
) -> Result<pb::PaymentRecordPaymentMethodDetails, ApiError> {
    const FIELD: &str = "payment_method_details";
    let details = value.ok_or_else(|| ApiError::missing_param(FIELD))?;
    match details.r#type {
        None => return Err(ApiError::missing_param("payment_method_details[type]")),
        Some(t) if t == pb::PaymentRecordPaymentMethodDetailsType::Custom as i32 => {}
        Some(t) => {
            return Err(ApiError::invalid_param(
                "payment_method_details[type]",
                ErrorReason::ParameterInvalid,
                format!(
                    "Invalid payment_method_details[type] ({t}): self-reported payments must be of type custom."
                ),
            ));
        }
    }
    let custom =
        details.custom.as_ref().ok_or_else(|| ApiError::missing_param("payment_method_details[custom]"))?;
    if custom.display_name.is_empty() {
        return Err(ApiError::missing_param("payment_method_details[custom][display_name]"));
    }
    text("payment_method_details[custom][display_name]", Some(&custom.display_name))?;
    if let Some(t) = custom.r#type.as_deref().filter(|t| !t.is_empty())
        && !valid_id(t, "cpmt_")
    {
        return Err(ApiError::invalid_param(
            "payment_method_details[custom][type]",
            ErrorReason::ParameterInvalid,
            format!("Invalid custom payment method type {t:?}: expected cpmt_…"),
        ));
    }
    if let Some(pm) = details.payment_method.as_deref().filter(|p| !p.is_empty())
        && !valid_id(pm, "pm_")
    {
        return Err(ApiError::invalid_param(
            "payment_method_details[payment_method]",
            ErrorReason::ParameterInvalid,
            format!("Invalid payment method {pm:?}: expected pm_…"),
        ));
    }
    if let Some(billing) = &details.billing_details {
        address("payment_method_details[billing_details][address]", billing.address.as_ref())?;
        email("payment_method_details[billing_details][email]", billing.email.as_ref())?;
        text("payment_method_details[billing_details][name]", billing.name.as_ref())?;
        text("payment_method_details[billing_details][phone]", billing.phone.as_ref())?;
    }
    Ok(pb::PaymentRecordPaymentMethodDetails {
        billing_details: details.billing_details.clone(),
        custom: Some(pb::PaymentRecordCustomPaymentMethodDetails {
            display_name: custom.display_name.clone(),
            r#type: params::non_empty(custom.r#type.as_ref()),
        }),
        payment_method: params::non_empty(details.payment_method.as_ref()),
        r#type: "custom".to_owned(),
        ..Default::default()
    })
}

/// An id of an object settle does not own: the prefix and a plausible body.
fn valid_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|body| {
        !body.is_empty() && body.len() <= 255 && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

fn custom_processor(value: i32, field: &str) -> Result<(), ApiError> {
    if value == pb::PaymentRecordProcessorType::Unspecified as i32 {
        Err(ApiError::missing_param(field))
    } else if value == pb::PaymentRecordProcessorType::Custom as i32 {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalid,
            format!("Invalid {field}: the only processor type is custom."),
        ))
    }
}

/// `report_payment.processor_details`: `type` = `custom` and `custom.payment_reference` when sent;
/// a custom processor without a reference otherwise (Stripe's object always has one).
pub fn processor_details(
    value: Option<&pb::PaymentRecordProcessorDetails>,
) -> Result<pb::PaymentRecordProcessorDetails, ApiError> {
    let Some(details) = value else {
        return Ok(pb::PaymentRecordProcessorDetails {
            custom: Some(pb::PaymentRecordCustomProcessorDetails { payment_reference: None }),
            r#type: pb::PaymentRecordProcessorType::Custom as i32,
        });
    };
    custom_processor(details.r#type, "processor_details[type]")?;
    let reference = details
        .custom
        .as_ref()
        .and_then(|c| c.payment_reference.as_ref())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::missing_param("processor_details[custom][payment_reference]"))?;
    text("processor_details[custom][payment_reference]", Some(reference))?;
    Ok(details.clone())
}

/// `report_refund.processor_details`: returns the refund reference.
pub fn refund_reference(
    value: Option<&pb::PaymentRecordRefundProcessorDetailsParams>,
) -> Result<String, ApiError> {
    let details = value.ok_or_else(|| ApiError::missing_param("processor_details"))?;
    custom_processor(details.r#type, "processor_details[type]")?;
    const FIELD: &str = "processor_details[custom][refund_reference]";
    let reference = details
        .custom
        .as_ref()
        .map(|c| c.refund_reference.clone())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::missing_param(FIELD))?;
    text(FIELD, Some(&reference))?;
    Ok(reference)
}

/// `report_refund.outcome`: required, and only `refunded` exists.
pub fn refund_outcome(value: i32) -> Result<(), ApiError> {
    match pb::ReportRefundOutcome::try_from(value) {
        Ok(pb::ReportRefundOutcome::Refunded) => Ok(()),
        Ok(pb::ReportRefundOutcome::Unspecified) => Err(ApiError::missing_param("outcome")),
        Err(_) => Err(ApiError::invalid_param(
            "outcome",
            ErrorReason::ParameterInvalid,
            format!("Invalid outcome ({value}): the only refund outcome is refunded."),
        )),
    }
}

pub fn metadata(value: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    validate::metadata("metadata", value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom_details() -> pb::PaymentRecordPaymentMethodDetailsParams {
        pb::PaymentRecordPaymentMethodDetailsParams {
            custom: Some(pb::PaymentRecordCustomPaymentMethodDetails {
                display_name: "Check".into(),
                r#type: None,
            }),
            r#type: Some(pb::PaymentRecordPaymentMethodDetailsType::Custom as i32),
            ..Default::default()
        }
    }

    fn field(error: ApiError) -> (String, String) {
        (error.reason_code(), error.field_violations[0].0.clone())
    }

    #[test]
    fn payment_method_details_must_be_custom_with_a_display_name() {
        let details = payment_method_details(Some(&custom_details())).unwrap();
        assert_eq!(details.r#type, "custom");
        let cases = [
            (
                pb::PaymentRecordPaymentMethodDetailsParams { r#type: None, ..custom_details() },
                "payment_method_details[type]",
            ),
            (
                pb::PaymentRecordPaymentMethodDetailsParams { r#type: Some(7), ..custom_details() },
                "payment_method_details[type]",
            ),
            (
                pb::PaymentRecordPaymentMethodDetailsParams { custom: None, ..custom_details() },
                "payment_method_details[custom]",
            ),
            (
                pb::PaymentRecordPaymentMethodDetailsParams {
                    payment_method: Some("card_1".into()),
                    ..custom_details()
                },
                "payment_method_details[payment_method]",
            ),
        ];
        for (params, expected) in cases {
            assert_eq!(field(payment_method_details(Some(&params)).unwrap_err()).1, expected);
        }
        assert_eq!(
            field(payment_method_details(None).unwrap_err()),
            ("parameter_missing".into(), "payment_method_details".into())
        );
    }

    #[test]
    fn outcomes_need_their_details_and_only_theirs() {
        let failed = pb::PaymentRecordFailedParams { failed_at: 5 };
        let guaranteed = pb::PaymentRecordGuaranteedParams { guaranteed_at: 6 };
        assert_eq!(outcome(None, None, None, 10).unwrap(), None);
        assert_eq!(
            outcome(Some(2), None, Some(&guaranteed), 10).unwrap(),
            Some(ReportedOutcome::Guaranteed { at: 6 })
        );
        assert_eq!(
            field(outcome(Some(1), None, None, 10).unwrap_err()),
            ("parameter_missing".into(), "failed".into())
        );
        assert_eq!(field(outcome(None, Some(&failed), None, 10).unwrap_err()).1, "failed");
        assert_eq!(
            field(outcome(Some(1), Some(&failed), Some(&guaranteed), 10).unwrap_err()).1,
            "guaranteed"
        );
        assert_eq!(
            field(outcome(Some(1), Some(&failed), None, 4).unwrap_err()),
            ("parameter_invalid".into(), "failed[failed_at]".into())
        );
        assert_eq!(field(outcome(Some(0), None, None, 10).unwrap_err()).1, "outcome");
    }

    #[test]
    fn refunds_need_a_custom_processor_with_a_reference() {
        let params = |t: i32, reference: &str| pb::PaymentRecordRefundProcessorDetailsParams {
            custom: Some(pb::PaymentRecordRefundCustomProcessorDetailsParams {
                refund_reference: reference.into(),
            }),
            r#type: t,
        };
        assert_eq!(refund_reference(Some(&params(1, "r-1"))).unwrap(), "r-1");
        assert_eq!(
            field(refund_reference(Some(&params(1, ""))).unwrap_err()).1,
            "processor_details[custom][refund_reference]"
        );
        assert_eq!(field(refund_reference(Some(&params(0, "r"))).unwrap_err()).1, "processor_details[type]");
        assert_eq!(field(refund_reference(None).unwrap_err()).1, "processor_details");
        assert!(refund_outcome(1).is_ok());
        assert_eq!(field(refund_outcome(0).unwrap_err()).0, "parameter_missing");
    }

    #[test]
    fn empty_details_mean_none() {
        assert_eq!(customer_details(Some(&Default::default())).unwrap(), None);
        assert_eq!(shipping_details(Some(&Default::default())).unwrap(), None);
        let bad = pb::PaymentRecordCustomerDetails { customer: Some("acct_1".into()), ..Default::default() };
        assert_eq!(field(customer_details(Some(&bad)).unwrap_err()).1, "customer_details[customer]");
    }
}
