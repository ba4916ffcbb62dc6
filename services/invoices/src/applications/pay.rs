//! The pay saga: charging what an invoice owes with a PaymentIntent attached as the invoice's
//! default payment. Three modes:
//!
//! - `charge` (PayInvoice with a payment method): creates and confirms a new PaymentIntent for what
//!   the invoice still owes, then attaches it with the attach steps;
//! - `prepare` (finalizing a `charge_automatically` invoice, as Stripe does): creates the
//!   PaymentIntent unconfirmed and attaches it as an `open` invoice payment, so the invoice has a
//!   `confirmation_secret` for the customer to pay it;
//! - `confirm_default` (PayInvoice while that default payment is open for the amount still owed):
//!   confirms the existing PaymentIntent with the payment method and counts it if it succeeded.
//!
//! Intents are created and confirmed under idempotency keys derived from the saga, so a repeated
//! step never charges twice. A declined payment records the attempt on the invoice
//! (`invoice.payment_failed`) and fails the call with the decline.
//!
//! ```text
//! charge/prepare: create_intent ─▶ reserve ─▶ apply ─▶ confirm (─▶ sync) ─▶ record_success ─▶ done
//!                      │declined      │refused   │refused
//!                      ▼              ▼          ▼
//!                 record_decline    failed     release ─▶ failed
//! confirm_default: confirm_intent (─▶ sync) ─▶ record_success ─▶ done
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_platform::time::now_unix;
use settle_proto::settle::payments::v1 as payments_pb;
use settle_saga::store as saga_store;
use settle_saga::{Ending, Fence, Saga, SagaFailure, SagaKind, SagaState, StepFailure, Transition};

use super::attach::{self, Leg};
use super::{Context, PaymentKind, StoredRefusal, db_retry, decode, encode, internal_failure, origin};
use crate::peers::{is_definitive, retry};
use crate::store::invoices;

pub const KIND: &str = "pay_invoice";

/// The subjects of an invoice's pay sagas (PayInvoice's and finalization's): the invoice alone, so
/// its live pay sagas are found by them (one charge at a time).
pub fn subjects(invoice: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("invoice".to_owned(), invoice.to_owned())])
}

/// What the pay saga does (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayMode {
    #[default]
    Charge,
    Prepare,
    ConfirmDefault,
}

/// The pay saga's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayData {
    #[serde(default)]
    pub mode: PayMode,
    /// The payment method to charge (`prepare`: the invoice's default one, if any).
    pub payment_method: Option<String>,
    pub amount: i64,
    pub description: String,
    pub off_session: Option<bool>,
    /// The intent once created (`confirm_default`: from the start).
    #[serde(default)]
    pub intent: Option<String>,
    pub leg: Leg,
    #[serde(default)]
    pub refusal: Option<StoredRefusal>,
}

/// The pay saga kind.
pub struct PaySaga {
    pub ctx: Arc<Context>,
}

async fn create_intent(
    ctx: &Context,
    saga: &Saga,
    data: &PayData,
) -> Result<Result<payments_pb::PaymentIntent, StoredRefusal>, StepFailure> {
    settle_platform::faults::hit("invoices.pay.before_create_intent").await;
    let request = payments_pb::CreatePaymentIntentRequest {
        amount: data.amount,
        currency: data.leg.currency.clone(),
        customer: Some(data.leg.customer.clone()),
        payment_method: data.payment_method.clone(),
        confirm: Some(data.mode == PayMode::Charge),
        description: Some(data.description.clone()),
        metadata: [("invoice".to_owned(), data.leg.invoice.clone())].into(),
        ..Default::default()
    };
    let mut request = ctx.payments.request(&saga.scope, request);
    if let Ok(key) = format!("settle-pay-{}", saga.id).parse() {
        request.metadata_mut().insert("idempotency-key", key);
    }
    let mut client = ctx.payments.intents.clone();
    match client.create_payment_intent(request).await {
        Ok(response) => {
            settle_platform::faults::hit("invoices.pay.after_create_intent").await;
            Ok(Ok(response.into_inner()))
        }
        Err(status) if is_definitive(&status) => Ok(Err(StoredRefusal::from_status(&status))),
        Err(status) => Err(retry("CreatePaymentIntent", &status)),
    }
}

/// Remote (`confirm_default`): confirms the invoice's default PaymentIntent with the payment method.
async fn confirm_intent(
    ctx: &Context,
    saga: &Saga,
    data: &PayData,
) -> Result<Result<payments_pb::PaymentIntent, StoredRefusal>, StepFailure> {
    settle_platform::faults::hit("invoices.pay.before_confirm_intent").await;
    let request = payments_pb::ConfirmPaymentIntentRequest {
        id: data.intent.clone().unwrap_or_default(),
        payment_method: data.payment_method.clone(),
        ..Default::default()
    };
    let mut request = ctx.payments.request(&saga.scope, request);
    if let Ok(key) = format!("settle-pay-{}", saga.id).parse() {
        request.metadata_mut().insert("idempotency-key", key);
    }
    let mut client = ctx.payments.intents.clone();
    match client.confirm_payment_intent(request).await {
        Ok(response) => {
            settle_platform::faults::hit("invoices.pay.after_confirm_intent").await;
            Ok(Ok(response.into_inner()))
        }
        Err(status) if is_definitive(&status) => {
            let mut refusal = StoredRefusal::from_status(&status);
            if refusal.reason == "payment_intent_unexpected_state" {
                // The customer's payment got under way (or ended) since the request checked it.
                refusal.reason = "state_unsupported".to_owned();
                refusal.message = format!(
                    "The invoice's PaymentIntent {} can no longer be confirmed: {}",
                    data.intent.as_deref().unwrap_or_default(),
                    status.message()
                );
            }
            Ok(Err(refusal))
        }
        Err(status) => Err(retry("ConfirmPaymentIntent", &status)),
    }
}

fn declined(intent: &payments_pb::PaymentIntent) -> bool {
    intent.status == payments_pb::PaymentIntentStatus::RequiresPaymentMethod as i32
        && intent.last_payment_error.is_some()
}

/// Local: counts the attempt on the invoice (`attempted`, `attempt_count`) and, for a decline,
/// writes `invoice.payment_failed`.
async fn record_attempt(
    ctx: &Context,
    saga: &Saga,
    fence: &Fence,
    data: &PayData,
    declined: bool,
    next: (&'static str, SagaState),
) -> Result<Transition, StepFailure> {
    let backend = ctx.db.backend();
    let mut tx = ctx.db.begin().await.map_err(db_retry)?;
    let mut result = None;
    if let Some(mut doc) =
        invoices::find_for_update(&mut tx, backend, &saga.scope, &data.leg.invoice).await.map_err(db_retry)?
    {
        doc.attempted = true;
        doc.attempt_count += 1;
        invoices::update(&mut tx, &saga.scope, &doc).await.map_err(db_retry)?;
        if declined {
            settle_platform::outbox::append(
                &mut tx,
                backend,
                &origin(saga),
                "invoice.payment_failed",
                &doc.id,
                &doc,
                None,
            )
            .await
            .map_err(db_retry)?;
        }
        result = Some(prost::Message::encode_to_vec(&doc));
    }
    let (step, state) = next;
    let encoded = encode(data);
    saga_store::advance(&mut tx, fence, step, &encoded, state, result.as_deref()).await?;
    tx.commit().await.map_err(db_retry)?;
    if declined {
        ctx.hub.committed();
    }
    Ok(Transition::Committed { step, data: encoded, state, result })
}

fn decline_failure(intent: &payments_pb::PaymentIntent) -> StoredRefusal {
    let error = intent.last_payment_error.clone().unwrap_or_default();
    let reason = match error.decline_code.as_deref() {
        Some("insufficient_funds") => "insufficient_funds",
        _ => "card_declined",
    };
    StoredRefusal {
        code: tonic::Code::FailedPrecondition as i32,
        reason: reason.to_owned(),
        message: error.message.unwrap_or_else(|| "The payment was declined.".to_owned()),
    }
}

#[tonic::async_trait]
impl SagaKind for PaySaga {
    fn name(&self) -> &'static str {
        KIND
    }

    /// PayInvoice refuses while a pay saga of the invoice is live (one charge at a time), reading the
    /// log: a success still waiting in the batch would refuse the next PayInvoice for nothing.
    fn records_success_at_once(&self) -> bool {
        true
    }

    async fn step(&self, saga: &Saga, fence: &Fence) -> Result<Transition, StepFailure> {
        let ctx = &self.ctx;
        let mut data: PayData = decode(saga)?;
        let key = saga.id.clone();
        let intent = data.intent.clone().unwrap_or_default();
        match saga.step.as_str() {
            "create_intent" => match create_intent(ctx, saga, &data).await? {
                Ok(pi) => {
                    data.intent = Some(pi.id.clone());
                    if declined(&pi) {
                        data.refusal = Some(decline_failure(&pi));
                        Ok(Transition::Next {
                            step: "record_decline",
                            data: encode(&data),
                            state: SagaState::Compensating,
                        })
                    } else {
                        Ok(Transition::Next {
                            step: "reserve",
                            data: encode(&data),
                            state: SagaState::Running,
                        })
                    }
                }
                Err(refusal) => Ok(Transition::Finished(Ending::Failed(refusal.failure()))),
            },
            "confirm_intent" => match confirm_intent(ctx, saga, &data).await? {
                Ok(pi) if declined(&pi) => {
                    data.refusal = Some(decline_failure(&pi));
                    Ok(Transition::Next {
                        step: "record_decline",
                        data: encode(&data),
                        state: SagaState::Compensating,
                    })
                }
                Ok(pi) => {
                    let succeeded = pi.status == payments_pb::PaymentIntentStatus::Succeeded as i32;
                    data.leg.reserved = Some(attach::Reserved {
                        customer: pi.customer.clone().unwrap_or_default(),
                        currency: pi.currency.clone(),
                        amount: pi.amount_received,
                        succeeded,
                    });
                    let step = if succeeded { "sync" } else { "record_success" };
                    Ok(Transition::Next { step, data: encode(&data), state: SagaState::Running })
                }
                Err(refusal) => Ok(Transition::Finished(Ending::Failed(refusal.failure()))),
            },
            "record_decline" => {
                record_attempt(ctx, saga, fence, &data, true, ("declined", SagaState::Compensating)).await
            }
            "declined" => Ok(Transition::Finished(Ending::Failed(failure(&data)))),
            "reserve" => match attach::reserve(ctx, saga, &key, &intent, &data.leg).await? {
                Ok(reserved) => {
                    data.leg.reserved = Some(reserved);
                    Ok(Transition::Next { step: "apply", data: encode(&data), state: SagaState::Running })
                }
                Err(refusal) => Ok(Transition::Finished(Ending::Failed(refusal.failure()))),
            },
            "apply" => {
                let applied = ("confirm", SagaState::Running, encode(&data));
                let refused_data = data.clone();
                attach::apply(
                    ctx,
                    saga,
                    fence,
                    &key,
                    &intent,
                    PaymentKind::PaymentIntent,
                    &data.leg,
                    applied,
                    move |refusal| {
                        let mut data = refused_data;
                        data.refusal = Some(refusal);
                        ("release", SagaState::Compensating, encode(&data))
                    },
                )
                .await
            }
            "confirm" => match attach::confirm(ctx, saga, &key, &intent).await? {
                Some(current)
                    if current.succeeded && !data.leg.reserved.as_ref().is_some_and(|r| r.succeeded) =>
                {
                    data.leg.reserved = Some(current);
                    Ok(Transition::Next { step: "sync", data: encode(&data), state: SagaState::Running })
                }
                _ => Ok(Transition::Next {
                    step: "record_success",
                    data: encode(&data),
                    state: SagaState::Running,
                }),
            },
            "sync" => {
                let Some(current) = data.leg.reserved.clone() else {
                    return Ok(Transition::Next {
                        step: "record_success",
                        data: encode(&data),
                        state: SagaState::Running,
                    });
                };
                attach::sync(
                    ctx,
                    saga,
                    fence,
                    &data.leg,
                    &current,
                    ("record_success", SagaState::Running, encode(&data)),
                )
                .await
            }
            "record_success" if data.mode == PayMode::Prepare => {
                // Nothing was attempted: the customer pays later with the confirmation secret.
                Ok(Transition::Next { step: "done", data: encode(&data), state: SagaState::Running })
            }
            "record_success" => {
                record_attempt(ctx, saga, fence, &data, false, ("done", SagaState::Running)).await
            }
            "done" => Ok(Transition::Finished(Ending::Succeeded)),
            "release" => {
                attach::release(ctx, saga, &intent, &key).await?;
                Ok(Transition::Finished(Ending::Failed(failure(&data))))
            }
            other => Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
                "unknown pay step {other} at {}",
                now_unix()
            ))))),
        }
    }
}

fn failure(data: &PayData) -> SagaFailure {
    data.refusal.as_ref().map_or_else(|| internal_failure("refused without a reason"), StoredRefusal::failure)
}
