//! `TestHelperService`: drives payments that wait on the outside world (a bank debit settling), in
//! test mode only.

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::test_helper_service_server::TestHelperService;
use tonic::{Code, Request, Response, Status};

use super::AppState;
use super::payment_intents::mutate_intent;
use crate::domain::payment_intent::PaymentError;
use crate::domain::payment_method::TestPaymentMethod;

const SETTLE: &str = "/settle.payments.v1.TestHelperService/SettlePaymentIntent";

/// `last_payment_error.code` of a failed settlement when the caller gives none.
const DEFAULT_FAILURE_CODE: &str = "payment_intent_payment_attempt_failed";
const DEFAULT_FAILURE_MESSAGE: &str = "The payment failed: the bank debit was returned.";

/// The handlers of `TestHelperService`.
#[derive(Clone, Debug)]
pub struct TestHelpersApi {
    state: AppState,
}

impl TestHelpersApi {
    pub fn new(state: AppState) -> Self {
        TestHelpersApi { state }
    }
}

/// How the caller wants the debit to end; the failure's code and message, if it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settlement {
    Succeeded,
    Failed { code: String, message: String },
}

fn parse_settlement(req: &pb::SettlePaymentIntentRequest) -> Result<Settlement, ApiError> {
    let code = req.failure_code.as_deref().filter(|c| !c.is_empty());
    let message = req.failure_message.as_deref().filter(|m| !m.is_empty());
    validate::max_len("failure_code", code, 255)?;
    validate::max_len("failure_message", message, 5_000)?;
    match pb::SettlementOutcome::try_from(req.outcome) {
        Ok(pb::SettlementOutcome::Succeeded) => {
            for (field, present) in [("failure_code", code.is_some()), ("failure_message", message.is_some())]
            {
                if present {
                    return Err(ApiError::invalid_param(
                        field,
                        ErrorReason::ParameterInvalid,
                        format!("{field} can only be used with outcome=failed."),
                    ));
                }
            }
            Ok(Settlement::Succeeded)
        }
        Ok(pb::SettlementOutcome::Failed) => Ok(Settlement::Failed {
            code: code.unwrap_or(DEFAULT_FAILURE_CODE).to_owned(),
            message: message.unwrap_or(DEFAULT_FAILURE_MESSAGE).to_owned(),
        }),
        Ok(pb::SettlementOutcome::Unspecified) => Err(ApiError::missing_param("outcome")),
        Err(_) => Err(ApiError::invalid_param(
            "outcome",
            ErrorReason::ParameterInvalid,
            format!("Invalid outcome: {}; must be succeeded or failed.", req.outcome),
        )),
    }
}

impl TestHelpersApi {
    async fn settle(
        &self,
        ctx: &RequestContext,
        req: pb::SettlePaymentIntentRequest,
    ) -> Result<pb::PaymentIntent, ApiError> {
        // Settling stands in for the bank; with real money only the bank may do that.
        if ctx.livemode() {
            return Err(ApiError::new(
                Code::PermissionDenied,
                ErrorReason::PermissionDenied,
                "Test helpers can only be used with a test mode key.",
            ));
        }
        let settlement = parse_settlement(&req)?;
        let id = req.id.clone();
        mutate_intent(&self.state, ctx, SETTLE, &req, &id, None, |intent, _doc| {
            let outcome = match settlement {
                Settlement::Succeeded => Ok(()),
                Settlement::Failed { code, message } => Err(PaymentError {
                    code,
                    decline_code: None,
                    message,
                    payment_method: intent.payment_method.clone(),
                    payment_method_type: intent
                        .payment_method
                        .as_deref()
                        .and_then(TestPaymentMethod::find)
                        .map(|m| m.method_type.as_str().to_owned()),
                }),
            };
            Ok(intent.settle(outcome)?)
        })
        .await
    }
}

#[tonic::async_trait]
impl TestHelperService for TestHelpersApi {
    async fn settle_payment_intent(
        &self,
        request: Request<pb::SettlePaymentIntentRequest>,
    ) -> Result<Response<pb::PaymentIntent>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.settle(&ctx, request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(outcome: pb::SettlementOutcome) -> pb::SettlePaymentIntentRequest {
        pb::SettlePaymentIntentRequest { id: "pi_1".into(), outcome: outcome as i32, ..Default::default() }
    }

    #[test]
    fn a_failure_gets_stripes_default_code_unless_given_one() {
        assert_eq!(
            parse_settlement(&request(pb::SettlementOutcome::Failed)).unwrap(),
            Settlement::Failed { code: DEFAULT_FAILURE_CODE.into(), message: DEFAULT_FAILURE_MESSAGE.into() }
        );
        let custom = pb::SettlePaymentIntentRequest {
            failure_code: Some("insufficient_funds".into()),
            failure_message: Some("No money.".into()),
            ..request(pb::SettlementOutcome::Failed)
        };
        assert_eq!(
            parse_settlement(&custom).unwrap(),
            Settlement::Failed { code: "insufficient_funds".into(), message: "No money.".into() }
        );
    }

    #[test]
    fn the_outcome_is_required_and_failure_fields_need_a_failure() {
        let missing = parse_settlement(&request(pb::SettlementOutcome::Unspecified)).unwrap_err();
        assert_eq!(missing.field_violations[0].0, "outcome");
        assert_eq!(missing.reason_code(), "parameter_missing");
        let unknown = pb::SettlePaymentIntentRequest { outcome: 9, ..request(pb::SettlementOutcome::Failed) };
        assert_eq!(parse_settlement(&unknown).unwrap_err().field_violations[0].0, "outcome");
        let mixed = pb::SettlePaymentIntentRequest {
            failure_code: Some("x".into()),
            ..request(pb::SettlementOutcome::Succeeded)
        };
        assert_eq!(parse_settlement(&mixed).unwrap_err().field_violations[0].0, "failure_code");
    }
}
