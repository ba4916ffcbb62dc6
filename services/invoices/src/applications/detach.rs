//! The detach saga (design: "Detach runs the other way round"): the invoice stops counting the
//! payment first — its invoice payment canceled, the invoice's amounts recomputed, a paid invoice
//! reopened with `auto_advance=false`, `invoice_payment.detached` — in the same transaction that
//! records the saga; only then does payments release the attachment.
//!
//! ```text
//! [unapply, recorded with the saga] ──▶ release ──▶ done
//! ```
//!
//! The payments event consumer uses the same path when a counted payment is canceled.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_platform::db::Tx;
use settle_platform::outbox::EventOrigin;
use settle_platform::time::now_unix;
use settle_proto::settle::invoices::v1 as pb;
use settle_saga::store as saga_store;
use settle_saga::{Ending, Fence, NewSaga, Saga, SagaKind, SagaRunner, StepFailure, Transition};

use super::effects::{self, Effects};
use super::{Context, decode, encode, internal_failure};
use crate::model::ModelError;
use crate::store::StoreError;

pub const KIND: &str = "detach_payment";

/// The detach saga's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachData {
    pub payment: String,
    pub invoice: String,
    pub invoice_payment: String,
    /// The saga id payments keys the attachment being released by (the attach saga's).
    pub attach_key: String,
}

/// Why unapplying could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum UnapplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl UnapplyError {
    /// The API's answer: a database hiccup is worth a retry (UNAVAILABLE), a duplicate saga
    /// record means the same request is running (ABORTED), anything else is internal.
    pub fn into_api(self, context: &str) -> settle_platform::ApiError {
        use settle_platform::ApiError;
        match self {
            UnapplyError::Database(error) if settle_platform::db::is_unique_violation(&error) => {
                ApiError::new(
                    tonic::Code::Aborted,
                    settle_proto::common::v1::ErrorReason::SagaInProgress,
                    "A request with this idempotency key is in progress; retry it later.",
                )
            }
            UnapplyError::Database(error) => error.into(),
            UnapplyError::Store(error) => error.into(),
            other @ UnapplyError::Model(_) => ApiError::internal(context, &other),
        }
    }
}

/// Unapplies `invoice_payment` from the locked invoice `doc`, writes the invoice, the canceled
/// invoice payment and their events, and records the detach saga that will release the attachment —
/// all in `tx`. The saga is then the caller's to drive (it holds the lease).
#[allow(clippy::too_many_arguments)]
pub async fn unapply_and_record(
    tx: &mut Tx,
    ctx: &Context,
    runner: &SagaRunner,
    origin: &EventOrigin,
    saga_id: String,
    doc: &mut pb::Invoice,
    invoice_payment: &mut pb::InvoicePayment,
    attach_key: String,
    payment: String,
    detached: bool,
) -> Result<(Saga, Fence, Effects), UnapplyError> {
    let effects = effects::unapply(doc, invoice_payment, now_unix(), detached)?;
    effects::persist(tx, ctx.db.backend(), origin, doc, Some((invoice_payment, None)), &effects).await?;
    let data = DetachData {
        payment: payment.clone(),
        invoice: doc.id.clone(),
        invoice_payment: invoice_payment.id.clone(),
        attach_key,
    };
    let mut subjects = BTreeMap::from([
        ("invoice".to_owned(), doc.id.clone()),
        ("invoice_payment".to_owned(), invoice_payment.id.clone()),
    ]);
    subjects.insert(
        if payment.starts_with("pr_") { "payment_record" } else { "payment_intent" }.to_owned(),
        payment,
    );
    let saga = NewSaga {
        id: saga_id,
        scope: origin.scope.clone(),
        kind: KIND,
        step: "release",
        data: encode(&data),
        subjects,
        idempotency_key: origin.idempotency_key.clone(),
        result: Some(prost::Message::encode_to_vec(&*doc)),
    };
    let (saga, fence) = saga_store::insert(tx, &saga, runner.holder(), runner.lease_until()).await?;
    Ok((saga, fence, effects))
}

/// The detach saga kind.
pub struct DetachSaga {
    pub ctx: Arc<Context>,
}

#[tonic::async_trait]
impl SagaKind for DetachSaga {
    fn name(&self) -> &'static str {
        KIND
    }

    async fn step(&self, saga: &Saga, _fence: &Fence) -> Result<Transition, StepFailure> {
        let data: DetachData = decode(saga)?;
        match saga.step.as_str() {
            "release" => {
                super::attach::release(&self.ctx, saga, &data.payment, &data.attach_key).await?;
                Ok(Transition::Finished(Ending::Succeeded))
            }
            other => Ok(Transition::Finished(Ending::Failed(internal_failure(format!(
                "unknown detach step {other}"
            ))))),
        }
    }
}
