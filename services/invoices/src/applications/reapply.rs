//! The reapply saga: moves a payment from the invoice that counts it to another one. The source
//! stops counting it (recorded with the saga, as in detach), payments releases the old attachment,
//! then the attach steps run for the target. If the target refuses, the payment is attached back to
//! the source (under a second attachment key, since payments keys attachments by saga) and the saga
//! fails with the target's reason; money is never counted twice, and at worst (the source refuses it
//! back too) the payment is left unapplied, which the saga's failure reports.
//!
//! ```text
//! [unapply source] ─▶ release_source ─▶ reserve ─▶ apply ─▶ confirm (─▶ sync) ─▶ done
//!                                        │refused   │refused
//!                                        │          ▼
//!                                        │        release_target
//!                                        ▼          ▼
//!                               reattach_reserve ─▶ reattach_apply ─▶ reattach_confirm ─▶ failed
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_saga::{Ending, Fence, Saga, SagaKind, SagaState, StepFailure, Transition};

use super::attach::{self, Leg};
use super::{Context, PaymentKind, StoredRefusal, decode, encode, internal_failure};

pub const KIND: &str = "reapply_payment";

/// The reapply saga's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapplyData {
    pub payment: String,
    pub kind: PaymentKind,
    /// The attachment key of the source's attach saga (released first).
    pub source_key: String,
    pub source: Leg,
    pub target: Leg,
    #[serde(default)]
    pub refusal: Option<StoredRefusal>,
}

/// The key the payment is attached back to the source under.
fn reattach_key(saga: &Saga) -> String {
    format!("{}R", saga.id)
}

/// The reapply saga kind.
pub struct ReapplySaga {
    pub ctx: Arc<Context>,
}

impl ReapplyData {
    fn refused(mut self, refusal: StoredRefusal, step: &'static str) -> Transition {
        self.refusal = Some(refusal);
        Transition::Next { step, data: encode(&self), state: SagaState::Compensating }
    }

    fn failure(&self) -> settle_saga::SagaFailure {
        self.refusal
            .as_ref()
            .map_or_else(|| internal_failure("compensated without a reason"), StoredRefusal::failure)
    }
}

#[tonic::async_trait]
impl SagaKind for ReapplySaga {
    fn name(&self) -> &'static str {
        KIND
    }

    async fn step(&self, saga: &Saga, fence: &Fence) -> Result<Transition, StepFailure> {
        let ctx = &self.ctx;
        let mut data: ReapplyData = decode(saga)?;
        let key = saga.id.clone();
        let back = reattach_key(saga);
        match saga.step.as_str() {
            "release_source" => {
                attach::release(ctx, saga, &data.payment, &data.source_key).await?;
                Ok(Transition::Next { step: "reserve", data: encode(&data), state: SagaState::Running })
            }
            "reserve" => match attach::reserve(ctx, saga, &key, &data.payment, &data.target).await? {
                Ok(reserved) => {
                    data.target.reserved = Some(reserved);
                    Ok(Transition::Next { step: "apply", data: encode(&data), state: SagaState::Running })
                }
                Err(refusal) => Ok(data.refused(refusal, "reattach_reserve")),
            },
            "apply" => {
                let applied = ("confirm", SagaState::Running, encode(&data));
                let refused_data = data.clone();
                attach::apply(
                    ctx,
                    saga,
                    fence,
                    &key,
                    &data.payment,
                    data.kind,
                    &data.target,
                    applied,
                    move |refusal| {
                        let mut data = refused_data;
                        data.refusal = Some(refusal);
                        ("release_target", SagaState::Compensating, encode(&data))
                    },
                )
                .await
            }
            "confirm" => match attach::confirm(ctx, saga, &key, &data.payment).await? {
                Some(current)
                    if current.succeeded && !data.target.reserved.as_ref().is_some_and(|r| r.succeeded) =>
                {
                    data.target.reserved = Some(current);
                    Ok(Transition::Next { step: "sync", data: encode(&data), state: SagaState::Running })
                }
                _ => Ok(Transition::Finished(Ending::Succeeded)),
            },
            "sync" => {
                let Some(current) = data.target.reserved.clone() else {
                    return Ok(Transition::Finished(Ending::Succeeded));
                };
                attach::sync(
                    ctx,
                    saga,
                    fence,
                    &data.target,
                    &current,
                    ("done", SagaState::Running, encode(&data)),
                )
                .await
            }
            "done" => Ok(Transition::Finished(Ending::Succeeded)),
            "release_target" => {
                attach::release(ctx, saga, &data.payment, &key).await?;
                Ok(Transition::Next {
                    step: "reattach_reserve",
                    data: encode(&data),
                    state: SagaState::Compensating,
                })
            }
            "reattach_reserve" => match attach::reserve(ctx, saga, &back, &data.payment, &data.source).await?
            {
                Ok(reserved) => {
                    data.source.reserved = Some(reserved);
                    Ok(Transition::Next {
                        step: "reattach_apply",
                        data: encode(&data),
                        state: SagaState::Compensating,
                    })
                }
                Err(refusal) => {
                    tracing::error!(saga_id = %saga.id, payment = %data.payment, reason = %refusal.reason, "reapply could not attach the payment back to its source; it is left unapplied");
                    Ok(Transition::Finished(Ending::Failed(data.failure())))
                }
            },
            "reattach_apply" => {
                let applied = ("reattach_confirm", SagaState::Compensating, encode(&data));
                let refused_data = data.clone();
                let saga_id = saga.id.clone();
                attach::apply(ctx, saga, fence, &back, &data.payment, data.kind, &data.source, applied, move |refusal| {
                    tracing::error!(saga_id = %saga_id, reason = %refusal.reason, "the source refused the payment back; releasing it unapplied");
                    ("reattach_release", SagaState::Compensating, encode(&refused_data))
                })
                .await
            }
            "reattach_confirm" => {
                attach::confirm(ctx, saga, &back, &data.payment).await?;
                Ok(Transition::Finished(Ending::Failed(data.failure())))
            }
            "reattach_release" => {
                attach::release(ctx, saga, &data.payment, &back).await?;
                Ok(Transition::Finished(Ending::Failed(data.failure())))
            }
            other => Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
                "unknown reapply step {other}"
            ))))),
        }
    }
}
