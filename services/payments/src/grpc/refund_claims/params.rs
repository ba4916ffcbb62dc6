//! `ClaimRefunds` parameters → what the claim needs, checked before any store is touched, so a
//! refused request changes nothing. Errors name the field as the request does
//! (`claims[1][amount_refunded]`, `new_refund[amount]`).

use settle_money::{Amount, Currency};
use settle_platform::ApiError;
use settle_platform::ids::IdPrefix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::payments::v1 as pb;

use crate::domain::refund::{RefundRequest, RefundTarget};
use crate::domain::refund_claim;
use crate::grpc::params;
use crate::grpc::refunds::NewRefund;
use crate::model::refund::reason_from_pb;
use crate::store::refund_claims::RefundKey;

/// One existing refund to claim.
#[derive(Debug, Clone)]
pub struct ClaimParams {
    pub key: RefundKey,
    /// `None`: all that is unclaimed.
    pub requested: Option<Amount>,
}

/// The new refund to create and claim whole.
#[derive(Debug, Clone)]
pub struct NewRefundParams {
    /// The payment intent (`pi_…`) to refund.
    pub payment: String,
    pub refund: NewRefund,
}

/// A checked `ClaimRefundsRequest`.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub saga_id: String,
    pub credit_note: String,
    pub invoice: String,
    pub currency: Currency,
    pub claims: Vec<ClaimParams>,
    pub new_refund: Option<NewRefundParams>,
}

impl ClaimRequest {
    pub fn parse(req: &pb::ClaimRefundsRequest) -> Result<Self, ApiError> {
        validate::id("saga_id", &req.saga_id, IdPrefix::Saga)?;
        validate::id("credit_note", &req.credit_note, IdPrefix::CreditNote)?;
        validate::id("invoice", &req.invoice, IdPrefix::Invoice)?;
        let currency = params::currency("currency", &req.currency)?;
        let claims = req
            .claims
            .iter()
            .enumerate()
            .map(|(i, claim)| ClaimParams::parse(claim).map_err(|e| e.nested_in(&format!("claims[{i}]"))))
            .collect::<Result<_, _>>()?;
        let new_refund = req
            .new_refund
            .as_ref()
            .map(|new| NewRefundParams::parse(new).map_err(|e| e.nested_in("new_refund")))
            .transpose()?;
        Ok(ClaimRequest {
            saga_id: req.saga_id.clone(),
            credit_note: req.credit_note.clone(),
            invoice: req.invoice.clone(),
            currency,
            claims,
            new_refund,
        })
    }
}

fn only_with(field: &str, kind: &str) -> ApiError {
    ApiError::invalid_param(
        field,
        ErrorReason::ParameterInvalid,
        format!("{field} can only be given when type is {kind}."),
    )
}

impl ClaimParams {
    fn parse(params: &pb::RefundClaimParams) -> Result<Self, ApiError> {
        let refund = params.refund.as_deref().filter(|r| !r.is_empty());
        let key = match pb::RefundClaimType::try_from(params.r#type) {
            // As in a credit note's `refunds[]`, no type means a Refund.
            Ok(pb::RefundClaimType::Unspecified | pb::RefundClaimType::Refund) => {
                if params.payment_record_refund.is_some() {
                    return Err(only_with("payment_record_refund", "payment_record_refund"));
                }
                let id = refund.ok_or_else(|| ApiError::missing_param("refund"))?;
                validate::id("refund", id, IdPrefix::Refund)?;
                RefundKey::Refund(id.to_owned())
            }
            Ok(pb::RefundClaimType::PaymentRecordRefund) => {
                if refund.is_some() {
                    return Err(only_with("refund", "refund"));
                }
                let reference = params
                    .payment_record_refund
                    .as_ref()
                    .ok_or_else(|| ApiError::missing_param("payment_record_refund"))?;
                validate::id(
                    "payment_record_refund[payment_record]",
                    &reference.payment_record,
                    IdPrefix::PaymentRecord,
                )?;
                if reference.refund_group.is_empty() {
                    return Err(ApiError::missing_param("payment_record_refund[refund_group]"));
                }
                RefundKey::RecordRefund {
                    payment_record: reference.payment_record.clone(),
                    refund_group: reference.refund_group.clone(),
                }
            }
            Err(_) => {
                return Err(ApiError::invalid_param(
                    "type",
                    ErrorReason::ParameterInvalid,
                    format!("Invalid type {}: expected refund or payment_record_refund.", params.r#type),
                ));
            }
        };
        let requested = refund_claim::requested_amount(params.amount_refunded)?;
        Ok(ClaimParams { key, requested })
    }
}

impl NewRefundParams {
    fn parse(params: &pb::NewRefundParams) -> Result<Self, ApiError> {
        if IdPrefix::PaymentRecord.matches(&params.payment) {
            return Err(ApiError::invalid_param(
                "payment",
                ErrorReason::ParameterInvalid,
                "A payment record cannot be refunded through settle: report its refund with \
                 PaymentRecordService.ReportRefund and claim it as a payment_record_refund.",
            ));
        }
        validate::id("payment", &params.payment, IdPrefix::PaymentIntent)?;
        validate::metadata("metadata", &params.metadata)?;
        let reason = params::known_enum("reason", params.reason.filter(|r| *r != 0), reason_from_pb)?;
        let request = RefundRequest::new(
            RefundTarget::PaymentIntent(params.payment.clone()),
            Some(params.amount),
            reason,
            None,
        )?;
        Ok(NewRefundParams {
            payment: params.payment.clone(),
            refund: NewRefund { request, instructions_email: None, metadata: params.metadata.clone() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::ClaimRefundsRequest {
        pb::ClaimRefundsRequest {
            saga_id: "saga_1".into(),
            credit_note: "cn_1".into(),
            invoice: "in_1".into(),
            currency: "usd".into(),
            claims: vec![pb::RefundClaimParams {
                r#type: pb::RefundClaimType::Refund as i32,
                refund: Some("re_1".into()),
                ..Default::default()
            }],
            new_refund: Some(pb::NewRefundParams {
                payment: "pi_1".into(),
                amount: 500,
                ..Default::default()
            }),
        }
    }

    fn refused(req: pb::ClaimRefundsRequest) -> (String, String) {
        let error = ClaimRequest::parse(&req).unwrap_err();
        assert_eq!(error.code, tonic::Code::InvalidArgument, "{error}");
        (error.reason_code(), error.field_violations[0].0.clone())
    }

    fn with_claim(claim: pb::RefundClaimParams) -> pb::ClaimRefundsRequest {
        pb::ClaimRefundsRequest { claims: vec![claim], ..request() }
    }

    fn record_claim(payment_record: &str, refund_group: &str) -> pb::RefundClaimParams {
        pb::RefundClaimParams {
            r#type: pb::RefundClaimType::PaymentRecordRefund as i32,
            payment_record_refund: Some(pb::PaymentRecordRefundReference {
                payment_record: payment_record.into(),
                refund_group: refund_group.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_request_parses_with_default_amounts() {
        let parsed = ClaimRequest::parse(&request()).unwrap();
        assert_eq!(parsed.claims[0].key, RefundKey::Refund("re_1".into()));
        assert_eq!(parsed.claims[0].requested, None);
        assert_eq!(parsed.new_refund.unwrap().refund.request.amount, Some(500));
        let untyped = with_claim(pb::RefundClaimParams { refund: Some("re_2".into()), ..Default::default() });
        assert_eq!(ClaimRequest::parse(&untyped).unwrap().claims[0].key, RefundKey::Refund("re_2".into()));
        let record = ClaimRequest::parse(&with_claim(record_claim("pr_1", "rf-1"))).unwrap();
        assert_eq!(
            record.claims[0].key,
            RefundKey::RecordRefund { payment_record: "pr_1".into(), refund_group: "rf-1".into() }
        );
    }

    #[test]
    fn ids_and_currency_are_checked() {
        let cases = [
            (pb::ClaimRefundsRequest { saga_id: "nope".into(), ..request() }, "saga_id"),
            (pb::ClaimRefundsRequest { credit_note: "in_1".into(), ..request() }, "credit_note"),
            (pb::ClaimRefundsRequest { invoice: "cn_1".into(), ..request() }, "invoice"),
            (pb::ClaimRefundsRequest { currency: "xx".into(), ..request() }, "currency"),
        ];
        for (req, field) in cases {
            assert_eq!(refused(req).1, field);
        }
    }

    #[test]
    fn each_claim_names_one_refund_of_its_type() {
        let cases = [
            (with_claim(pb::RefundClaimParams::default()), "parameter_missing", "claims[0][refund]"),
            (
                with_claim(pb::RefundClaimParams { refund: Some("pi_1".into()), ..Default::default() }),
                "parameter_invalid",
                "claims[0][refund]",
            ),
            (
                with_claim(pb::RefundClaimParams {
                    r#type: 9,
                    refund: Some("re_1".into()),
                    ..Default::default()
                }),
                "parameter_invalid",
                "claims[0][type]",
            ),
            (
                with_claim(pb::RefundClaimParams {
                    refund: Some("re_1".into()),
                    ..record_claim("pr_1", "g")
                }),
                "parameter_invalid",
                "claims[0][refund]",
            ),
            (
                with_claim(pb::RefundClaimParams {
                    r#type: pb::RefundClaimType::Refund as i32,
                    refund: Some("re_1".into()),
                    ..record_claim("pr_1", "g")
                }),
                "parameter_invalid",
                "claims[0][payment_record_refund]",
            ),
            (
                with_claim(pb::RefundClaimParams {
                    payment_record_refund: None,
                    ..record_claim("pr_1", "g")
                }),
                "parameter_missing",
                "claims[0][payment_record_refund]",
            ),
            (
                with_claim(record_claim("pi_1", "g")),
                "parameter_invalid",
                "claims[0][payment_record_refund][payment_record]",
            ),
            (
                with_claim(record_claim("pr_1", "")),
                "parameter_missing",
                "claims[0][payment_record_refund][refund_group]",
            ),
            (
                with_claim(pb::RefundClaimParams {
                    refund: Some("re_1".into()),
                    amount_refunded: Some(0),
                    ..Default::default()
                }),
                "parameter_invalid_integer",
                "claims[0][amount_refunded]",
            ),
        ];
        for (req, reason, field) in cases {
            assert_eq!(refused(req), (reason.to_owned(), field.to_owned()));
        }
    }

    #[test]
    fn a_new_refund_is_of_a_payment_intent_with_a_positive_amount() {
        let new = |payment: &str, amount: i64| pb::ClaimRefundsRequest {
            new_refund: Some(pb::NewRefundParams { payment: payment.into(), amount, ..Default::default() }),
            ..request()
        };
        let record = ClaimRequest::parse(&new("pr_1", 500)).unwrap_err();
        assert_eq!(
            (record.reason_code().as_str(), record.field_violations[0].0.as_str()),
            ("parameter_invalid", "new_refund[payment]")
        );
        assert!(record.message.contains("ReportRefund"), "{}", record.message);
        assert_eq!(refused(new("in_1", 500)), ("parameter_invalid".into(), "new_refund[payment]".into()));
        assert_eq!(
            refused(new("pi_1", 0)),
            ("parameter_invalid_integer".into(), "new_refund[amount]".into())
        );
        let mut bad_reason = new("pi_1", 500);
        if let Some(n) = bad_reason.new_refund.as_mut() {
            n.reason = Some(pb::RefundReason::ExpiredUncapturedCharge as i32);
        }
        assert_eq!(refused(bad_reason), ("parameter_invalid".into(), "new_refund[reason]".into()));
        let mut bad_metadata = new("pi_1", 500);
        if let Some(n) = bad_metadata.new_refund.as_mut() {
            n.metadata.insert("k[0]".into(), "v".into());
        }
        assert_eq!(refused(bad_metadata).1, "new_refund[metadata][k[0]]");
    }
}
