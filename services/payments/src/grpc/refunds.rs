//! `RefundService`: Stripe's Refunds API for payment intents.

use std::collections::BTreeMap;

use settle_money::Amount;
use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::db::{Backend, Tx};
use settle_platform::idempotency::{self, Claim};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::{self, EventOrigin};
use settle_platform::pagination::PageRequest;
use settle_platform::time::now_unix;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::refund_service_server::RefundService;
use tonic::{Request, Response, Status};

use super::AppState;
use super::params;
use crate::domain::refund::{self, RefundError, RefundRequest, RefundTarget};
use crate::model::intent_from_document;
use crate::model::refund::{RefundExtras, reason_from_pb, refund_document};
use crate::store::payment_intents::{self as intents, AddRefunded};
use crate::store::refunds::{self as store, ListFilter};

const CREATE: &str = "/settle.payments.v1.RefundService/CreateRefund";
const UPDATE: &str = "/settle.payments.v1.RefundService/UpdateRefund";

/// The handlers of `RefundService`.
#[derive(Clone, Debug)]
pub struct RefundsApi {
    state: AppState,
}

impl RefundsApi {
    pub fn new(state: AppState) -> Self {
        RefundsApi { state }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::Refund, id, "id")
}

fn intent_not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::PaymentIntent, id, "payment_intent")
}

/// A create request with everything checked that can be checked without reading the payment.
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub request: RefundRequest,
    pub instructions_email: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl NewRefund {
    /// Stripe's parameters, with the ones settle cannot honour refused as the proto documents.
    pub fn parse(req: &pb::CreateRefundRequest) -> Result<NewRefund, ApiError> {
        validate::unsupported(
            "refund_application_fee",
            req.refund_application_fee == Some(true),
            "settle has no Connect application fees",
        )?;
        validate::unsupported(
            "reverse_transfer",
            req.reverse_transfer == Some(true),
            "settle has no Connect transfers",
        )?;
        validate::unsupported(
            "origin",
            req.origin.is_some_and(|o| o != pb::RefundOrigin::Unspecified as i32),
            "customer balances live in the invoices service, where credit notes credit them",
        )?;
        validate::unsupported(
            "customer",
            req.customer.as_deref().is_some_and(|c| !c.is_empty()),
            "refunds from a customer balance (origin=customer_balance) are made with credit notes",
        )?;
        let currency = req
            .currency
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| params::currency("currency", c))
            .transpose()?;
        let instructions_email = params::non_empty(req.instructions_email.as_ref());
        if let Some(email) = &instructions_email {
            validate::email("instructions_email", email)?;
        }
        validate::metadata("metadata", &req.metadata)?;
        let reason = match req.reason {
            None | Some(0) => None,
            Some(value) => Some(reason_from_pb(value).ok_or(RefundError::ReasonNotRequestable)?),
        };
        let target = RefundTarget::parse(req.payment_intent.as_deref(), req.charge.as_deref())?;
        // A malformed id is treated like an unknown one, as everywhere else.
        if let Some(id) = target.payment_intent()
            && !IdPrefix::PaymentIntent.matches(id)
        {
            return Err(intent_not_found(id));
        }
        if let Some(charge) = target.charge()
            && !IdPrefix::Charge.matches(charge)
        {
            return Err(RefundError::UnknownCharge(charge.to_owned()).into());
        }
        Ok(NewRefund {
            request: RefundRequest::new(target, req.amount, reason, currency)?,
            instructions_email,
            metadata: req.metadata.clone(),
        })
    }
}

/// Refunds a payment intent inside the caller's transaction: locks the intent row, checks the
/// refund against what is left, adds it to the intent's refunded total, inserts the refund and its
/// `refund.created` event. The caller records its idempotent response and commits (and then tells
/// the event hub). Anything that must refund as part of a larger change can call this in its own
/// transaction.
pub async fn refund_in(
    tx: &mut Tx,
    backend: Backend,
    origin: &EventOrigin,
    new: NewRefund,
) -> Result<pb::Refund, ApiError> {
    let scope = &origin.scope;
    let intent_id = match &new.request.target {
        RefundTarget::PaymentIntent(id) | RefundTarget::Both { payment_intent: id, .. } => id.clone(),
        RefundTarget::Charge(charge) => intents::find_id_by_charge(tx, scope, charge)
            .await?
            .ok_or_else(|| RefundError::UnknownCharge(charge.clone()))?,
    };
    let intent_doc = intents::find_for_update(tx, backend, scope, &intent_id)
        .await?
        .ok_or_else(|| intent_not_found(&intent_id))?;
    let intent = intent_from_document(&intent_doc)?;
    let refunded =
        intents::amount_refunded(tx, scope, &intent_id).await?.ok_or_else(|| intent_not_found(&intent_id))?;
    let (refund, _) =
        refund::create(IdPrefix::Refund.generate(), &intent, Amount::new(refunded), &new.request)?;
    match intents::add_refunded(tx, scope, &intent_id, refund.amount.get()).await? {
        AddRefunded::Added => {}
        // Only reachable if the row lock failed us: the CHECK constraint caught it.
        AddRefunded::OverReceived => {
            return Err(RefundError::AmountTooLarge {
                requested: refund.amount.get(),
                remaining: refund::refundable(&intent, Amount::new(refunded)).get(),
                currency: intent.currency,
            }
            .into());
        }
        AddRefunded::NoSuchIntent => return Err(intent_not_found(&intent_id)),
    }
    let doc = refund_document(
        &refund,
        &intent_doc,
        RefundExtras {
            created: now_unix(),
            instructions_email: new.instructions_email,
            metadata: new.metadata,
        },
    );
    store::insert(tx, scope, &doc).await?;
    outbox::append(tx, backend, origin, "refund.created", &doc.id, &doc, None).await?;
    Ok(doc)
}

/// `previous_attributes` of a metadata change: the old value of every key that changed (`null` for
/// keys that are new), as Stripe's `*.updated` events show them.
fn previous_metadata(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> serde_json::Value {
    let changed: serde_json::Map<String, serde_json::Value> = before
        .keys()
        .chain(after.keys())
        .filter(|key| before.get(*key) != after.get(*key))
        .map(|key| {
            let old = before.get(key).map_or(serde_json::Value::Null, |v| v.clone().into());
            (key.clone(), old)
        })
        .collect();
    serde_json::json!({ "metadata": changed })
}

impl RefundsApi {
    async fn create(
        &self,
        ctx: &RequestContext,
        req: pb::CreateRefundRequest,
    ) -> Result<pb::Refund, ApiError> {
        let new = NewRefund::parse(&req)?;
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, CREATE, &req).await? {
            Claim::Replay(stored) => return Ok(stored),
            Claim::Fresh(pending) => pending,
        };
        let doc = refund_in(&mut tx, state.db.backend(), &EventOrigin::from(ctx), new).await?;
        pending.record(&mut tx, &doc).await?;
        tx.commit().await?;
        state.hub.committed();
        Ok(doc)
    }

    async fn get(&self, ctx: &RequestContext, req: pb::GetRefundRequest) -> Result<pb::Refund, ApiError> {
        if !IdPrefix::Refund.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        store::find(&self.state.db, ctx.scope(), &req.id).await?.ok_or_else(|| not_found(&req.id))
    }

    async fn update(
        &self,
        ctx: &RequestContext,
        req: pb::UpdateRefundRequest,
    ) -> Result<pb::Refund, ApiError> {
        if !IdPrefix::Refund.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        validate::metadata("metadata", &req.metadata)?;
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, UPDATE, &req).await? {
            Claim::Replay(stored) => return Ok(stored),
            Claim::Fresh(pending) => pending,
        };
        let mut doc = store::find_for_update(&mut tx, state.db.backend(), ctx.scope(), &req.id)
            .await?
            .ok_or_else(|| not_found(&req.id))?;
        let before = doc.metadata.clone();
        validate::merge_metadata(&mut doc.metadata, &req.metadata);
        // The merged set must still be within Stripe's limits (50 keys).
        validate::metadata("metadata", &doc.metadata)?;
        let changed = doc.metadata != before;
        // Like Stripe, an update that changes nothing emits no event.
        if changed {
            store::update_metadata(&mut tx, ctx.scope(), &doc).await?;
            outbox::append(
                &mut tx,
                state.db.backend(),
                &EventOrigin::from(ctx),
                "refund.updated",
                &doc.id,
                &doc,
                Some(&previous_metadata(&before, &doc.metadata)),
            )
            .await?;
        }
        pending.record(&mut tx, &doc).await?;
        tx.commit().await?;
        if changed {
            state.hub.committed();
        }
        Ok(doc)
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListRefundsRequest,
    ) -> Result<pb::ListRefundsResponse, ApiError> {
        let id_filter =
            |field: &str, value: Option<&String>, kind: IdPrefix| match value.filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(id) if kind.matches(id) => Ok(Some(id.clone())),
                Some(_) => Err(ApiError::invalid_param(
                    field,
                    ErrorReason::ParameterInvalid,
                    format!("Invalid {field}: expected the id of a {} ({kind}…).", kind.object_name()),
                )),
            };
        let filter = ListFilter {
            payment_intent: id_filter(
                "payment_intent",
                req.payment_intent.as_ref(),
                IdPrefix::PaymentIntent,
            )?,
            charge: id_filter("charge", req.charge.as_ref(), IdPrefix::Charge)?,
            created: req.created,
        };
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::Refund,
        )?;
        let page = store::list(&self.state.db, ctx.scope(), &filter, &page).await?;
        Ok(pb::ListRefundsResponse { data: page.data, has_more: page.has_more })
    }
}

#[tonic::async_trait]
impl RefundService for RefundsApi {
    async fn create_refund(
        &self,
        request: Request<pb::CreateRefundRequest>,
    ) -> Result<Response<pb::Refund>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.create(&ctx, request.into_inner()).await?))
    }

    async fn get_refund(
        &self,
        request: Request<pb::GetRefundRequest>,
    ) -> Result<Response<pb::Refund>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn update_refund(
        &self,
        request: Request<pb::UpdateRefundRequest>,
    ) -> Result<Response<pb::Refund>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.update(&ctx, request.into_inner()).await?))
    }

    async fn list_refunds(
        &self,
        request: Request<pb::ListRefundsRequest>,
    ) -> Result<Response<pb::ListRefundsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::CreateRefundRequest {
        pb::CreateRefundRequest { payment_intent: Some("pi_123".into()), ..Default::default() }
    }

    fn refused_field(req: pb::CreateRefundRequest) -> (String, String) {
        let error = NewRefund::parse(&req).unwrap_err();
        (error.field_violations[0].0.clone(), error.reason_code())
    }

    #[test]
    fn parameters_settle_cannot_honour_are_refused_by_name() {
        let cases = [
            (
                pb::CreateRefundRequest { refund_application_fee: Some(true), ..request() },
                "refund_application_fee",
            ),
            (pb::CreateRefundRequest { reverse_transfer: Some(true), ..request() }, "reverse_transfer"),
            (
                pb::CreateRefundRequest {
                    origin: Some(pb::RefundOrigin::CustomerBalance as i32),
                    ..request()
                },
                "origin",
            ),
            (pb::CreateRefundRequest { customer: Some("cus_1".into()), ..request() }, "customer"),
        ];
        for (req, field) in cases {
            assert_eq!(refused_field(req), (field.to_owned(), "parameter_invalid".to_owned()));
        }
        let falsy = pb::CreateRefundRequest {
            refund_application_fee: Some(false),
            reverse_transfer: Some(false),
            customer: Some(String::new()),
            ..request()
        };
        assert!(NewRefund::parse(&falsy).is_ok());
    }

    #[test]
    fn ids_email_currency_and_reason_are_checked() {
        let malformed_intent = pb::CreateRefundRequest { payment_intent: Some("in_1".into()), ..request() };
        let error = NewRefund::parse(&malformed_intent).unwrap_err();
        assert_eq!(error.code, tonic::Code::NotFound);
        assert_eq!(
            refused_field(pb::CreateRefundRequest { charge: Some("py_1".into()), ..request() }),
            ("charge".to_owned(), "parameter_invalid".to_owned())
        );
        assert_eq!(
            refused_field(pb::CreateRefundRequest { instructions_email: Some("nope".into()), ..request() }).0,
            "instructions_email"
        );
        assert_eq!(
            refused_field(pb::CreateRefundRequest { currency: Some("xx".into()), ..request() }),
            ("currency".to_owned(), "invalid_currency".to_owned())
        );
        assert_eq!(
            refused_field(pb::CreateRefundRequest {
                reason: Some(pb::RefundReason::ExpiredUncapturedCharge as i32),
                ..request()
            }),
            ("reason".to_owned(), "parameter_invalid".to_owned())
        );
        assert_eq!(
            refused_field(pb::CreateRefundRequest { amount: Some(0), ..request() }),
            ("amount".to_owned(), "parameter_invalid_integer".to_owned())
        );
        assert_eq!(
            refused_field(pb::CreateRefundRequest::default()),
            ("payment_intent".to_owned(), "parameter_missing".to_owned())
        );
    }

    #[test]
    fn previous_attributes_name_each_changed_key() {
        let before: BTreeMap<_, _> =
            [("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())].into();
        let after: BTreeMap<_, _> =
            [("b".to_owned(), "3".to_owned()), ("c".to_owned(), "4".to_owned())].into();
        assert_eq!(
            previous_metadata(&before, &after),
            serde_json::json!({ "metadata": { "a": "1", "b": "2", "c": null } })
        );
    }
}
