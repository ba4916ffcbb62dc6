//! Applying one payments event to invoices, and sorting its failures into those worth retrying at
//! the same cursor and those that will never succeed (the event is quarantined).

use std::sync::Arc;

use prost::Message;
use settle_money::Amount;
use settle_platform::Scope;
use settle_platform::outbox::EventOrigin;
use settle_platform::time::now_unix;
use settle_proto::events::v1 as ev;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as payments_pb;
use settle_saga::SagaRunner;
use tracing::Instrument;

use crate::applications::detach::UnapplyError;
use crate::applications::{Context, detach, effects};
use crate::model::ModelError;
use crate::store::{StoreError, invoice_payments, invoices, quarantined_events};

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Worth another try at the same cursor: the database was unavailable or a transaction
    /// conflicted.
    #[error("database: {0}")]
    Transient(sqlx::Error),
    /// This replica no longer holds the stream; not the event's fault.
    #[error("lease lost")]
    LeaseLost,
    /// Will never succeed as it is: the event is quarantined.
    #[error("{error}")]
    Permanent { reason: pb::QuarantineReason, error: String },
}

impl ApplyError {
    fn permanent(reason: pb::QuarantineReason, error: impl std::fmt::Display) -> ApplyError {
        ApplyError::Permanent { reason, error: error.to_string() }
    }
}

impl From<sqlx::Error> for ApplyError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // A stored value that cannot be read stays unreadable.
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                ApplyError::permanent(pb::QuarantineReason::StoredObjectUnreadable, error)
            }
            other => ApplyError::Transient(other),
        }
    }
}

impl From<StoreError> for ApplyError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(error) => error.into(),
            StoreError::Decode(error) => {
                ApplyError::permanent(pb::QuarantineReason::StoredObjectUnreadable, error)
            }
            StoreError::Overflow(error) => ApplyError::permanent(pb::QuarantineReason::ApplyFailed, error),
        }
    }
}

impl From<ModelError> for ApplyError {
    fn from(error: ModelError) -> Self {
        ApplyError::permanent(pb::QuarantineReason::ApplyFailed, error)
    }
}

impl From<UnapplyError> for ApplyError {
    fn from(error: UnapplyError) -> Self {
        match error {
            UnapplyError::Store(error) => error.into(),
            UnapplyError::Model(error) => error.into(),
            UnapplyError::Database(error) => error.into(),
        }
    }
}

/// What an event means for invoices.
#[derive(Debug, PartialEq)]
pub enum Meaning {
    /// The payment succeeded: its open invoice payment counts, for this amount.
    Succeeded { payment: String, amount: i64 },
    /// The intent was canceled: its open invoice payment is canceled and the attachment released.
    Canceled { payment: String },
    /// Nothing invoices follows.
    Nothing,
}

/// What `event` asks of invoices; an event of a type invoices follows whose object is missing or
/// unreadable is a permanent failure (it used to be skipped without a trace).
pub fn meaning(event: &ev::Event) -> Result<Meaning, ApplyError> {
    use pb::QuarantineReason as R;
    let object = || {
        event
            .data
            .as_ref()
            .and_then(|d| d.object.as_ref())
            .ok_or_else(|| ApplyError::permanent(R::ObjectMissing, "the event carries no object"))
    };
    match event.r#type.as_str() {
        "payment_intent.succeeded" => {
            let pi = payments_pb::PaymentIntent::decode(object()?.value.as_slice())
                .map_err(|e| ApplyError::permanent(R::ObjectUndecodable, format!("PaymentIntent: {e}")))?;
            check_object_id(event, &pi.id)?;
            Ok(Meaning::Succeeded { payment: pi.id, amount: pi.amount_received })
        }
        "payment_intent.canceled" => Ok(Meaning::Canceled { payment: event.object_id.clone() }),
        "payment_record.payment_attempt_guaranteed" => {
            let record = payments_pb::PaymentRecord::decode(object()?.value.as_slice())
                .map_err(|e| ApplyError::permanent(R::ObjectUndecodable, format!("PaymentRecord: {e}")))?;
            check_object_id(event, &record.id)?;
            Ok(Meaning::Succeeded {
                payment: record.id,
                amount: record.amount_guaranteed.map_or(0, |a| a.value),
            })
        }
        _ => Ok(Meaning::Nothing),
    }
}

/// An object whose id is not the event's (garbage that happened to decode) is not applied.
fn check_object_id(event: &ev::Event, id: &str) -> Result<(), ApplyError> {
    if id.is_empty() || id != event.object_id {
        return Err(ApplyError::permanent(
            pb::QuarantineReason::ObjectUndecodable,
            "the event's object is not the object it names",
        ));
    }
    Ok(())
}

/// What the transaction that applies an event also records.
pub enum Finish<'a> {
    /// The stream's cursor moves past the event (the consumer).
    Cursor { holder: &'a str, cursor: &'a str },
    /// The quarantined event is resolved (a retry).
    Resolve,
}

/// Applies one event; returns whether it changed anything (and so wrote `finish` with it). When it
/// changes nothing, `finish` is the caller's to write.
pub async fn apply_event(
    ctx: &Arc<Context>,
    runner: &SagaRunner,
    event: &ev::Event,
    finish: Finish<'_>,
) -> Result<bool, ApplyError> {
    let meaning = meaning(event)?;
    if meaning == Meaning::Nothing {
        return Ok(false);
    }
    let Some(account) = event.account.as_deref().filter(|a| !a.is_empty()) else {
        return Err(ApplyError::permanent(
            pb::QuarantineReason::AccountMissing,
            "the event names no account",
        ));
    };
    // The event's own mode: a live payment's event only ever touches live invoices.
    let scope = Scope::new(account, event.livemode);
    let (payment, succeeded_amount) = match meaning {
        Meaning::Succeeded { payment, amount } => (payment, Some(amount)),
        Meaning::Canceled { payment } => (payment, None),
        Meaning::Nothing => return Ok(false),
    };
    // Most payments are not on an invoice: a cheap read decides.
    let Some((found, _)) = invoice_payments::find_live_by_payment(ctx.db.pool(), &scope, &payment).await?
    else {
        return Ok(false);
    };
    if found.status != pb::InvoicePaymentStatus::Open as i32 {
        return Ok(false);
    }
    let backend = ctx.db.backend();
    let origin = EventOrigin { scope: scope.clone(), request_id: None, idempotency_key: None };
    let mut tx = ctx.db.begin().await?;
    let Some(mut doc) = invoices::find_for_update(&mut tx, backend, &scope, &found.invoice).await? else {
        return Ok(false);
    };
    // Re-read under the invoice's lock: a saga may have changed it since.
    let Some((mut invoice_payment, attach_key)) =
        invoice_payments::find_live_by_payment(&mut *tx, &scope, &payment).await?
    else {
        return Ok(false);
    };
    if invoice_payment.status != pb::InvoicePaymentStatus::Open as i32 || invoice_payment.invoice != doc.id {
        return Ok(false);
    }
    let mut detach_saga = None;
    let wrote_events = match succeeded_amount {
        Some(amount) => {
            let effects =
                effects::mark_paid(&mut doc, &mut invoice_payment, Amount::new(amount), now_unix())?;
            effects::persist(&mut tx, backend, &origin, &doc, Some((&invoice_payment, None)), &effects)
                .await?
        }
        None => {
            let saga_id = settle_platform::ids::IdPrefix::Saga.generate();
            let (saga, fence, effects) = detach::unapply_and_record(
                &mut tx,
                ctx,
                runner,
                &origin,
                saga_id,
                &mut doc,
                &mut invoice_payment,
                attach_key,
                payment.clone(),
                false,
            )
            .await?;
            detach_saga = Some((saga, fence));
            !effects.events.is_empty()
        }
    };
    match finish {
        Finish::Cursor { holder, cursor } => {
            if !super::save_cursor(&mut *tx, holder, cursor).await? {
                return Err(ApplyError::LeaseLost);
            }
        }
        Finish::Resolve => quarantined_events::resolve(&mut *tx, &scope, &event.id, now_unix()).await?,
    }
    tx.commit().await?;
    if wrote_events {
        ctx.hub.committed();
    }
    if let Some((saga, fence)) = detach_saga {
        let runner = runner.clone();
        tokio::spawn(
            async move {
                runner.drive(saga, fence).await;
            }
            .in_current_span(),
        );
    }
    tracing::debug!(payment = %payment, invoice = %doc.id, event = %event.r#type, "applied payments event");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, object_id: &str, value: Vec<u8>) -> ev::Event {
        ev::Event {
            id: "evt_test".into(),
            r#type: event_type.into(),
            object_id: object_id.into(),
            account: Some("acct_a".into()),
            data: Some(ev::EventData {
                object: Some(prost_types::Any { type_url: String::new(), value }),
                previous_attributes: None,
            }),
            ..Default::default()
        }
    }

    fn reason(result: Result<Meaning, ApplyError>) -> pb::QuarantineReason {
        match result {
            Err(ApplyError::Permanent { reason, .. }) => reason,
            other => panic!("expected a permanent failure, got {other:?}"),
        }
    }

    #[test]
    fn a_succeeded_intent_means_its_amount_received() {
        let pi = payments_pb::PaymentIntent { id: "pi_1".into(), amount_received: 700, ..Default::default() };
        let meaning = meaning(&event("payment_intent.succeeded", "pi_1", pi.encode_to_vec())).unwrap();
        assert_eq!(meaning, Meaning::Succeeded { payment: "pi_1".into(), amount: 700 });
    }

    #[test]
    fn an_undecodable_or_missing_object_is_permanent() {
        let garbage = vec![0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            reason(meaning(&event("payment_intent.succeeded", "pi_1", garbage))),
            pb::QuarantineReason::ObjectUndecodable
        );
        let mut bare = event("payment_record.payment_attempt_guaranteed", "pr_1", Vec::new());
        bare.data = None;
        assert_eq!(reason(meaning(&bare)), pb::QuarantineReason::ObjectMissing);
        // An object that decodes but is another object than the event names.
        let other = payments_pb::PaymentIntent { id: "pi_2".into(), ..Default::default() };
        assert_eq!(
            reason(meaning(&event("payment_intent.succeeded", "pi_1", other.encode_to_vec()))),
            pb::QuarantineReason::ObjectUndecodable
        );
    }

    #[test]
    fn other_types_mean_nothing_and_database_errors_are_transient() {
        assert_eq!(meaning(&event("payment_intent.created", "pi_1", vec![0xff])).unwrap(), Meaning::Nothing);
        assert!(matches!(ApplyError::from(sqlx::Error::PoolTimedOut), ApplyError::Transient(_)));
        assert!(matches!(
            ApplyError::from(StoreError::Decode(
                payments_pb::PaymentIntent::decode(&[0xffu8][..]).unwrap_err()
            )),
            ApplyError::Permanent { reason: pb::QuarantineReason::StoredObjectUnreadable, .. }
        ));
    }
}
