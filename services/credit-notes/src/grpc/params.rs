//! The create parameters (fields 1–13, shared by Create, Preview and PreviewLines) → what the note
//! needs, checked before anything is read or written. Errors name the field as Stripe does
//! (`lines[1][quantity]`, `refunds[0][payment_record_refund][refund_group]`).

use std::collections::BTreeMap;

use settle_invoices::domain::charge::Decimal;
use settle_money::Amount;
use settle_platform::ApiError;
use settle_platform::ids::IdPrefix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::creditnotes::v1 as pb;

use crate::domain::lines::{LinePart, LineRequest};

/// Stripe's limit on `memo` and `description`.
const MAX_TEXT: usize = 5000;
/// The most lines a note may have (an invoice has at most 250).
pub const MAX_LINES: usize = 250;
/// The most refunds a note may link.
pub const MAX_REFUNDS: usize = 100;

/// One checked `lines[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineParams {
    pub request: LineRequest,
    /// Entries with an empty value left out.
    pub metadata: BTreeMap<String, String>,
}

/// Which existing refund a `refunds[]` entry links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRef {
    Refund(String),
    PaymentRecordRefund { payment_record: String, refund_group: String },
}

/// One checked `refunds[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundParams {
    pub refund: RefundRef,
    /// `None`: all the refund's unlinked amount.
    pub amount_refunded: Option<Amount>,
}

/// A checked create (or preview) request.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteParams {
    pub invoice: String,
    pub amount: Option<Amount>,
    pub credit_amount: Amount,
    pub refund_amount: Amount,
    pub out_of_band_amount: Option<Amount>,
    pub effective_at: Option<i64>,
    pub memo: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub reason: Option<pb::CreditNoteReason>,
    pub lines: Vec<LineParams>,
    pub refunds: Vec<RefundParams>,
    pub shipping_rate: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(field, ErrorReason::ParameterInvalid, message)
}

fn only_with(field: &str, kind: &str) -> ApiError {
    invalid(field, format!("{field} can only be given when type is {kind}."))
}

/// An optional amount parameter that must be a positive integer.
fn positive(field: &str, value: Option<i64>) -> Result<Option<Amount>, ApiError> {
    match value {
        Some(v) if v <= 0 => Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalidInteger,
            format!("Invalid {field}: it must be a positive integer (in minor units)."),
        )),
        other => Ok(other.map(Amount::new)),
    }
}

/// An optional amount parameter that must not be negative.
fn non_negative(field: &str, value: Option<i64>) -> Result<Option<Amount>, ApiError> {
    match value {
        Some(v) if v < 0 => Err(ApiError::invalid_param(
            field,
            ErrorReason::ParameterInvalidInteger,
            format!("Invalid {field}: it cannot be negative."),
        )),
        other => Ok(other.map(Amount::new)),
    }
}

/// Stripe drops metadata entries whose value is empty.
fn stored_metadata(
    field: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    validate::metadata(field, metadata)?;
    Ok(metadata.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect())
}

impl NoteParams {
    pub fn parse(req: &pb::CreateCreditNoteRequest) -> Result<NoteParams, ApiError> {
        if req.invoice.is_empty() {
            return Err(ApiError::missing_param("invoice"));
        }
        // A malformed id cannot name an invoice: treated like an unknown one.
        if !IdPrefix::Invoice.matches(&req.invoice) {
            return Err(ApiError::not_found(IdPrefix::Invoice, &req.invoice, "invoice"));
        }
        let amount = positive("amount", req.amount)?;
        let credit_amount = non_negative("credit_amount", req.credit_amount)?.unwrap_or(Amount::ZERO);
        let refund_amount = non_negative("refund_amount", req.refund_amount)?.unwrap_or(Amount::ZERO);
        let out_of_band_amount = non_negative("out_of_band_amount", req.out_of_band_amount)?;
        let effective_at = match req.effective_at {
            Some(at) if at < 1 => {
                return Err(ApiError::invalid_param(
                    "effective_at",
                    ErrorReason::ParameterInvalidInteger,
                    "Invalid effective_at: it must be a positive unix timestamp (seconds).",
                ));
            }
            other => other,
        };
        match req.email_type.map(pb::CreditNoteEmailType::try_from) {
            None | Some(Ok(_)) => {}
            Some(Err(_)) => {
                return Err(invalid("email_type", "Invalid email_type: expected credit_note or none."));
            }
        }
        let reason = match req.reason.map(pb::CreditNoteReason::try_from) {
            None | Some(Ok(pb::CreditNoteReason::Unspecified)) => None,
            Some(Ok(reason)) => Some(reason),
            Some(Err(_)) => {
                return Err(invalid(
                    "reason",
                    "Invalid reason: expected duplicate, fraudulent, order_change or product_unsatisfactory.",
                ));
            }
        };
        validate::max_len("memo", req.memo.as_deref(), MAX_TEXT)?;
        let metadata = stored_metadata("metadata", &req.metadata)?;
        if req.lines.len() > MAX_LINES {
            return Err(invalid("lines", format!("A credit note can have at most {MAX_LINES} lines.")));
        }
        let lines = req
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| LineParams::parse(line).map_err(|e| e.nested_in(&format!("lines[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        if req.refunds.len() > MAX_REFUNDS {
            return Err(invalid("refunds", format!("A credit note can link at most {MAX_REFUNDS} refunds.")));
        }
        let refunds = req
            .refunds
            .iter()
            .enumerate()
            .map(|(i, refund)| RefundParams::parse(refund).map_err(|e| e.nested_in(&format!("refunds[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let shipping_rate = match &req.shipping_cost {
            None => None,
            Some(shipping) => {
                let rate = shipping
                    .shipping_rate
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| ApiError::missing_param("shipping_cost[shipping_rate]"))?;
                if !IdPrefix::ShippingRate.matches(rate) {
                    return Err(ApiError::not_found(
                        IdPrefix::ShippingRate,
                        rate,
                        "shipping_cost[shipping_rate]",
                    ));
                }
                Some(rate.to_owned())
            }
        };
        if amount.is_none() && lines.is_empty() && shipping_rate.is_none() {
            return Err(ApiError::missing_param("amount")
                .with_violation("lines", "Give one of amount, lines or shipping_cost.")
                .with_violation("shipping_cost", "Give one of amount, lines or shipping_cost."));
        }
        Ok(NoteParams {
            invoice: req.invoice.clone(),
            amount,
            credit_amount,
            refund_amount,
            out_of_band_amount,
            effective_at,
            memo: req.memo.clone().filter(|m| !m.is_empty()),
            metadata,
            reason,
            lines,
            refunds,
            shipping_rate,
        })
    }

    /// The lines the note credits: the given ones, or for a bare `amount` one untaxed custom line
    /// of that amount.
    pub fn line_requests(&self) -> Vec<LineParams> {
        match (self.lines.is_empty(), self.shipping_rate.is_none(), self.amount) {
            (true, true, Some(amount)) => vec![LineParams {
                request: LineRequest::Custom {
                    quantity: 1,
                    unit_amount: Decimal::from_int(amount.get()).unwrap_or(Decimal::ZERO),
                    description: None,
                },
                metadata: BTreeMap::new(),
            }],
            _ => self.lines.clone(),
        }
    }
}

impl LineParams {
    fn parse(line: &pb::CreditNoteLineParams) -> Result<LineParams, ApiError> {
        if !line.tax_amounts.is_empty() {
            return Err(invalid(
                "tax_amounts",
                "settle has no tax rates: tax_amounts can only be empty. An invoice line's taxes are credited in proportion.",
            ));
        }
        if !line.tax_rates.is_empty() {
            return Err(invalid("tax_rates", "settle has no tax rates: tax_rates can only be empty."));
        }
        validate::max_len("description", line.description.as_deref(), MAX_TEXT)?;
        let metadata = stored_metadata("metadata", &line.metadata)?;
        let quantity = match line.quantity {
            Some(q) if q <= 0 => {
                return Err(ApiError::invalid_param(
                    "quantity",
                    ErrorReason::ParameterInvalidInteger,
                    "Invalid quantity: it must be a positive integer.",
                ));
            }
            other => other,
        };
        let request = match pb::CreditNoteLineItemType::try_from(line.r#type) {
            Ok(pb::CreditNoteLineItemType::Unspecified) => return Err(ApiError::missing_param("type")),
            Ok(pb::CreditNoteLineItemType::InvoiceLineItem) => {
                for (field, given) in [
                    ("description", line.description.is_some()),
                    ("unit_amount", line.unit_amount.is_some()),
                    ("unit_amount_decimal", line.unit_amount_decimal.is_some()),
                ] {
                    if given {
                        return Err(only_with(field, "custom_line_item"));
                    }
                }
                let id = line
                    .invoice_line_item
                    .as_deref()
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| ApiError::missing_param("invoice_line_item"))?;
                if !IdPrefix::InvoiceLine.matches(id) {
                    return Err(ApiError::not_found(IdPrefix::InvoiceLine, id, "invoice_line_item"));
                }
                let part = match (positive("amount", line.amount)?, quantity) {
                    (Some(_), Some(_)) => return Err(ApiError::exclusive_params("amount", "quantity")),
                    (Some(amount), None) => LinePart::Amount(amount),
                    (None, Some(quantity)) => LinePart::Quantity(quantity),
                    (None, None) => {
                        return Err(ApiError::missing_param("amount")
                            .with_violation("quantity", "Give the amount or the quantity to credit."));
                    }
                };
                LineRequest::InvoiceLine { line: id.to_owned(), part }
            }
            Ok(pb::CreditNoteLineItemType::CustomLineItem) => {
                if line.invoice_line_item.is_some() {
                    return Err(only_with("invoice_line_item", "invoice_line_item"));
                }
                if line.amount.is_some() {
                    return Err(only_with("amount", "invoice_line_item"));
                }
                let unit_amount = match (line.unit_amount, line.unit_amount_decimal.as_deref()) {
                    (Some(_), Some(_)) => {
                        return Err(ApiError::exclusive_params("unit_amount", "unit_amount_decimal"));
                    }
                    (Some(unit), None) => Decimal::from_int(unit).map_err(|e| {
                        ApiError::invalid_param(
                            "unit_amount",
                            ErrorReason::ParameterInvalidInteger,
                            format!("Invalid unit_amount: {e}."),
                        )
                    })?,
                    (None, Some(text)) => Decimal::parse(text).map_err(|e| {
                        invalid("unit_amount_decimal", format!("Invalid unit_amount_decimal: {e}."))
                    })?,
                    (None, None) => {
                        return Err(ApiError::missing_param("unit_amount").with_violation(
                            "unit_amount_decimal",
                            "Give unit_amount or unit_amount_decimal.",
                        ));
                    }
                };
                LineRequest::Custom {
                    quantity: quantity.unwrap_or(1),
                    unit_amount,
                    description: line.description.clone().filter(|d| !d.is_empty()),
                }
            }
            Err(_) => {
                return Err(invalid("type", "Invalid type: expected invoice_line_item or custom_line_item."));
            }
        };
        Ok(LineParams { request, metadata })
    }
}

impl RefundParams {
    fn parse(params: &pb::CreditNoteRefundParams) -> Result<RefundParams, ApiError> {
        let amount_refunded = positive("amount_refunded", params.amount_refunded)?;
        let refund = params.refund.as_deref().filter(|r| !r.is_empty());
        let kind = params.r#type.map(pb::CreditNoteRefundType::try_from);
        let refund = match kind {
            None | Some(Ok(pb::CreditNoteRefundType::Unspecified | pb::CreditNoteRefundType::Refund)) => {
                if params.payment_record_refund.is_some() {
                    return Err(only_with("payment_record_refund", "payment_record_refund"));
                }
                let id = refund.ok_or_else(|| ApiError::missing_param("refund"))?;
                if !IdPrefix::Refund.matches(id) {
                    return Err(ApiError::not_found(IdPrefix::Refund, id, "refund"));
                }
                RefundRef::Refund(id.to_owned())
            }
            Some(Ok(pb::CreditNoteRefundType::PaymentRecordRefund)) => {
                if refund.is_some() {
                    return Err(only_with("refund", "refund"));
                }
                let reference = params
                    .payment_record_refund
                    .as_ref()
                    .ok_or_else(|| ApiError::missing_param("payment_record_refund"))?;
                if reference.payment_record.is_empty() {
                    return Err(ApiError::missing_param("payment_record_refund[payment_record]"));
                }
                if !IdPrefix::PaymentRecord.matches(&reference.payment_record) {
                    return Err(ApiError::not_found(
                        IdPrefix::PaymentRecord,
                        &reference.payment_record,
                        "payment_record_refund[payment_record]",
                    ));
                }
                if reference.refund_group.is_empty() {
                    return Err(ApiError::missing_param("payment_record_refund[refund_group]"));
                }
                RefundRef::PaymentRecordRefund {
                    payment_record: reference.payment_record.clone(),
                    refund_group: reference.refund_group.clone(),
                }
            }
            Some(Err(_)) => {
                return Err(invalid("type", "Invalid type: expected refund or payment_record_refund."));
            }
        };
        Ok(RefundParams { refund, amount_refunded })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::CreateCreditNoteRequest {
        pb::CreateCreditNoteRequest { invoice: "in_1".into(), amount: Some(100), ..Default::default() }
    }

    fn refused(req: pb::CreateCreditNoteRequest) -> (String, String) {
        let error = NoteParams::parse(&req).unwrap_err();
        (error.field_violations.first().map(|v| v.0.clone()).unwrap_or_default(), error.reason_code())
    }

    fn invoice_line(params: pb::CreditNoteLineParams) -> pb::CreateCreditNoteRequest {
        pb::CreateCreditNoteRequest {
            amount: None,
            lines: vec![pb::CreditNoteLineParams {
                r#type: pb::CreditNoteLineItemType::InvoiceLineItem as i32,
                invoice_line_item: Some("il_1".into()),
                ..params
            }],
            ..request()
        }
    }

    #[test]
    fn a_bare_amount_is_one_custom_line() {
        let params = NoteParams::parse(&request()).unwrap();
        let lines = params.line_requests();
        assert_eq!(lines.len(), 1);
        assert!(
            matches!(&lines[0].request, LineRequest::Custom { quantity: 1, unit_amount, .. } if unit_amount.to_string() == "100")
        );
    }

    #[test]
    fn something_to_credit_is_required() {
        assert_eq!(
            refused(pb::CreateCreditNoteRequest { amount: None, ..request() }),
            ("amount".into(), "parameter_missing".into())
        );
        assert_eq!(
            refused(pb::CreateCreditNoteRequest { invoice: String::new(), ..request() }),
            ("invoice".into(), "parameter_missing".into())
        );
        let error = NoteParams::parse(&pb::CreateCreditNoteRequest { invoice: "pi_1".into(), ..request() })
            .unwrap_err();
        assert_eq!(error.code, tonic::Code::NotFound);
    }

    #[test]
    fn amounts_must_be_sane() {
        assert_eq!(refused(pb::CreateCreditNoteRequest { amount: Some(0), ..request() }).0, "amount");
        assert_eq!(
            refused(pb::CreateCreditNoteRequest { credit_amount: Some(-1), ..request() }).0,
            "credit_amount"
        );
        assert_eq!(
            refused(pb::CreateCreditNoteRequest { refund_amount: Some(-1), ..request() }).0,
            "refund_amount"
        );
        assert_eq!(
            refused(pb::CreateCreditNoteRequest { out_of_band_amount: Some(-1), ..request() }).0,
            "out_of_band_amount"
        );
        assert_eq!(
            refused(pb::CreateCreditNoteRequest { effective_at: Some(0), ..request() }).0,
            "effective_at"
        );
        assert_eq!(refused(pb::CreateCreditNoteRequest { reason: Some(99), ..request() }).0, "reason");
        assert_eq!(refused(pb::CreateCreditNoteRequest { email_type: Some(9), ..request() }).0, "email_type");
        assert_eq!(
            refused(pb::CreateCreditNoteRequest { memo: Some("m".repeat(5001)), ..request() }).0,
            "memo"
        );
    }

    #[test]
    fn invoice_lines_take_an_amount_or_a_quantity() {
        let both = invoice_line(pb::CreditNoteLineParams {
            amount: Some(1),
            quantity: Some(1),
            ..Default::default()
        });
        assert_eq!(refused(both), ("lines[0][amount]".into(), "parameters_exclusive".into()));
        let neither = invoice_line(pb::CreditNoteLineParams::default());
        assert_eq!(refused(neither), ("lines[0][amount]".into(), "parameter_missing".into()));
        let described = invoice_line(pb::CreditNoteLineParams {
            quantity: Some(1),
            description: Some("x".into()),
            ..Default::default()
        });
        assert_eq!(refused(described).0, "lines[0][description]");
        let taxed = invoice_line(pb::CreditNoteLineParams {
            quantity: Some(1),
            tax_rates: vec!["txr_1".into()],
            ..Default::default()
        });
        assert_eq!(refused(taxed).0, "lines[0][tax_rates]");
        let ok = invoice_line(pb::CreditNoteLineParams { quantity: Some(2), ..Default::default() });
        assert!(NoteParams::parse(&ok).is_ok());
    }

    #[test]
    fn custom_lines_take_one_unit_amount() {
        let custom = |unit: Option<i64>, decimal: Option<&str>| pb::CreateCreditNoteRequest {
            amount: None,
            lines: vec![pb::CreditNoteLineParams {
                r#type: pb::CreditNoteLineItemType::CustomLineItem as i32,
                unit_amount: unit,
                unit_amount_decimal: decimal.map(str::to_owned),
                ..Default::default()
            }],
            ..request()
        };
        assert_eq!(refused(custom(Some(1), Some("1"))).1, "parameters_exclusive");
        assert_eq!(refused(custom(None, None)).0, "lines[0][unit_amount]");
        assert_eq!(refused(custom(None, Some("1.0000000000001"))).0, "lines[0][unit_amount_decimal]");
        assert!(NoteParams::parse(&custom(None, Some("12.5"))).is_ok());
        let untyped =
            pb::CreateCreditNoteRequest { lines: vec![pb::CreditNoteLineParams::default()], ..request() };
        assert_eq!(refused(untyped), ("lines[0][type]".into(), "parameter_missing".into()));
    }

    #[test]
    fn refunds_name_a_refund_or_a_record_refund() {
        let with = |refund: pb::CreditNoteRefundParams| pb::CreateCreditNoteRequest {
            refunds: vec![refund],
            ..request()
        };
        assert_eq!(refused(with(pb::CreditNoteRefundParams::default())).0, "refunds[0][refund]");
        let record = pb::CreditNoteRefundParams {
            r#type: Some(pb::CreditNoteRefundType::PaymentRecordRefund as i32),
            payment_record_refund: Some(pb::CreditNotePaymentRecordRefund {
                payment_record: "pr_1".into(),
                refund_group: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(refused(with(record.clone())).0, "refunds[0][payment_record_refund][refund_group]");
        let mut good = record;
        if let Some(r) = good.payment_record_refund.as_mut() {
            r.refund_group = "grp".into();
        }
        assert!(NoteParams::parse(&with(good)).is_ok());
        let zero = pb::CreditNoteRefundParams {
            refund: Some("re_1".into()),
            amount_refunded: Some(0),
            ..Default::default()
        };
        assert_eq!(refused(with(zero)).0, "refunds[0][amount_refunded]");
    }

    #[test]
    fn empty_metadata_values_are_not_stored() {
        let req = pb::CreateCreditNoteRequest {
            metadata: [("a".to_owned(), "1".to_owned()), ("b".to_owned(), String::new())].into(),
            ..request()
        };
        assert_eq!(NoteParams::parse(&req).unwrap().metadata, [("a".to_owned(), "1".to_owned())].into());
    }
}
