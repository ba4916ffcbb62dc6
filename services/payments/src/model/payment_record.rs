//! A payment record is stored as its Stripe-shaped document (`settle.payments.v1.PaymentRecord`)
//! and each attempt as its own (`PaymentAttemptRecord`), plus projected columns. The domain owns the
//! money and state fields; this module reads them out of the documents and writes them back,
//! leaving the descriptive fields (customer details, payment method, shipping…) as the handlers set
//! them.
//!
//! [`summary_from_document`] reads what applying a record to an invoice needs (customer, currency,
//! amount, whether it can count) from the record's document alone.

use settle_money::{Amount, Currency};
use settle_proto::settle::payments::v1 as pb;

use crate::domain::payment_record::{
    Amounts, Attempt, AttemptState, Outcome, PaymentRecord, RecordSummary, ReportedRefund,
};

/// A stored document that does not describe a valid record (a bug or a damaged row).
#[derive(Debug, thiserror::Error)]
#[error("stored payment record {id} is invalid: {problem}")]
pub struct CorruptRecord {
    pub id: String,
    pub problem: &'static str,
}

pub fn outcome_to_pb(outcome: Outcome) -> pb::PaymentAttemptRecordOutcome {
    match outcome {
        Outcome::Pending => pb::PaymentAttemptRecordOutcome::Pending,
        Outcome::Guaranteed => pb::PaymentAttemptRecordOutcome::Guaranteed,
        Outcome::Failed => pb::PaymentAttemptRecordOutcome::Failed,
        Outcome::Canceled => pb::PaymentAttemptRecordOutcome::Canceled,
    }
}

pub fn outcome_from_pb(value: i32) -> Option<Outcome> {
    match pb::PaymentAttemptRecordOutcome::try_from(value).ok()? {
        pb::PaymentAttemptRecordOutcome::Unspecified => None,
        pb::PaymentAttemptRecordOutcome::Pending => Some(Outcome::Pending),
        pb::PaymentAttemptRecordOutcome::Guaranteed => Some(Outcome::Guaranteed),
        pb::PaymentAttemptRecordOutcome::Failed => Some(Outcome::Failed),
        pb::PaymentAttemptRecordOutcome::Canceled => Some(Outcome::Canceled),
    }
}

fn amount_to_pb(currency: Currency, amount: Amount) -> Option<pb::PaymentRecordAmount> {
    Some(pb::PaymentRecordAmount { currency: currency.as_str().to_owned(), value: amount.get() })
}

fn customer_of(details: Option<&pb::PaymentRecordCustomerDetails>) -> Option<String> {
    details.and_then(|d| d.customer.clone())
}

/// Reads the amount and currency of a stored `{currency, value}`.
fn stored_amount(
    id: &str,
    amount: Option<&pb::PaymentRecordAmount>,
    problem: &'static str,
) -> Result<(Currency, Amount), CorruptRecord> {
    let corrupt = || CorruptRecord { id: id.to_owned(), problem };
    let amount = amount.ok_or_else(corrupt)?;
    let currency = Currency::parse(&amount.currency).map_err(|_| corrupt())?;
    Ok((currency, Amount::new(amount.value)))
}

/// What the invoices side needs of a record, from its stored document alone.
pub fn summary_from_document(doc: &pb::PaymentRecord) -> Result<RecordSummary, CorruptRecord> {
    let (currency, amount) = stored_amount(&doc.id, doc.amount.as_ref(), "amount")?;
    let (_, amount_guaranteed) = stored_amount(&doc.id, doc.amount_guaranteed.as_ref(), "amount_guaranteed")?;
    let (_, amount_refunded) = stored_amount(&doc.id, doc.amount_refunded.as_ref(), "amount_refunded")?;
    Ok(RecordSummary {
        id: doc.id.clone(),
        customer: customer_of(doc.customer_details.as_ref()),
        currency,
        amount,
        latest_outcome: outcome_from_pb(doc.latest_payment_attempt_outcome)
            .ok_or_else(|| CorruptRecord { id: doc.id.clone(), problem: "latest_payment_attempt_outcome" })?,
        amount_guaranteed,
        amount_refunded,
    })
}

fn attempt_from_document(doc: &pb::PaymentAttemptRecord) -> Result<Attempt, CorruptRecord> {
    let corrupt = |problem| CorruptRecord { id: doc.id.clone(), problem };
    let at = |time: Option<i64>, problem| time.ok_or_else(|| corrupt(problem));
    let state = match outcome_from_pb(doc.outcome).ok_or_else(|| corrupt("outcome"))? {
        Outcome::Pending => AttemptState::Pending,
        Outcome::Guaranteed => AttemptState::Guaranteed { at: at(doc.guaranteed_at, "guaranteed_at")? },
        Outcome::Failed => AttemptState::Failed { at: at(doc.failed_at, "failed_at")? },
        Outcome::Canceled => AttemptState::Canceled { at: at(doc.canceled_at, "canceled_at")? },
    };
    Ok(Attempt { id: doc.id.clone(), initiated_at: doc.initiated_at, state })
}

/// Reads the domain state out of a record's document and its attempts' (in any order).
pub fn record_from_documents(
    doc: &pb::PaymentRecord,
    attempts: &[pb::PaymentAttemptRecord],
) -> Result<PaymentRecord, CorruptRecord> {
    let corrupt = |problem| CorruptRecord { id: doc.id.clone(), problem };
    let (currency, amount_requested) =
        stored_amount(&doc.id, doc.amount_requested.as_ref(), "amount_requested")?;
    let mut attempts = attempts.iter().map(attempt_from_document).collect::<Result<Vec<_>, _>>()?;
    // Attempt ids sort by creation time.
    attempts.sort_by(|a, b| a.id.cmp(&b.id));
    let latest_attempt = attempts.pop().ok_or_else(|| corrupt("attempts"))?;
    if doc.latest_payment_attempt_record.as_deref() != Some(latest_attempt.id.as_str()) {
        return Err(corrupt("latest_payment_attempt_record"));
    }
    let refunds = doc
        .reported_refunds
        .iter()
        .map(|r| {
            let (refund_currency, amount) = stored_amount(&doc.id, r.amount.as_ref(), "reported_refunds")?;
            if refund_currency != currency {
                return Err(corrupt("reported_refunds"));
            }
            Ok(ReportedRefund {
                reference: r.refund_reference.clone(),
                amount,
                attempt: r.payment_attempt_record.clone(),
                initiated_at: r.initiated_at,
                refunded_at: r.refunded_at,
                created: r.created,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PaymentRecord {
        id: doc.id.clone(),
        currency,
        amount_requested,
        customer: customer_of(doc.customer_details.as_ref()),
        earlier_attempts: attempts,
        latest_attempt,
        refunds,
    })
}

fn set_customer(details: &mut Option<pb::PaymentRecordCustomerDetails>, customer: Option<&String>) {
    match (details.as_mut(), customer) {
        (Some(details), customer) => details.customer = customer.cloned(),
        (None, Some(customer)) => {
            *details = Some(pb::PaymentRecordCustomerDetails {
                customer: Some(customer.clone()),
                ..Default::default()
            });
        }
        (None, None) => {}
    }
}

/// The amount fields of a document, in Stripe's order.
struct AmountFields<'a> {
    amount: &'a mut Option<pb::PaymentRecordAmount>,
    amount_authorized: &'a mut Option<pb::PaymentRecordAmount>,
    amount_canceled: &'a mut Option<pb::PaymentRecordAmount>,
    amount_failed: &'a mut Option<pb::PaymentRecordAmount>,
    amount_guaranteed: &'a mut Option<pb::PaymentRecordAmount>,
    amount_refunded: &'a mut Option<pb::PaymentRecordAmount>,
    amount_requested: &'a mut Option<pb::PaymentRecordAmount>,
}

impl AmountFields<'_> {
    fn write(self, currency: Currency, amounts: &Amounts) {
        *self.amount = amount_to_pb(currency, amounts.amount);
        *self.amount_authorized = amount_to_pb(currency, amounts.amount_authorized);
        *self.amount_canceled = amount_to_pb(currency, amounts.amount_canceled);
        *self.amount_failed = amount_to_pb(currency, amounts.amount_failed);
        *self.amount_guaranteed = amount_to_pb(currency, amounts.amount_guaranteed);
        *self.amount_refunded = amount_to_pb(currency, amounts.amount_refunded);
        *self.amount_requested = amount_to_pb(currency, amounts.amount_requested);
    }
}

/// Writes the domain state into the record's document. `amounts` are the record's (computed by the
/// caller, which reports an overflow).
pub fn render_record(record: &PaymentRecord, amounts: &Amounts, doc: &mut pb::PaymentRecord) {
    doc.id.clone_from(&record.id);
    doc.object = "payment_record".to_owned();
    AmountFields {
        amount: &mut doc.amount,
        amount_authorized: &mut doc.amount_authorized,
        amount_canceled: &mut doc.amount_canceled,
        amount_failed: &mut doc.amount_failed,
        amount_guaranteed: &mut doc.amount_guaranteed,
        amount_refunded: &mut doc.amount_refunded,
        amount_requested: &mut doc.amount_requested,
    }
    .write(record.currency, amounts);
    set_customer(&mut doc.customer_details, record.customer.as_ref());
    doc.latest_payment_attempt_record = Some(record.latest().id.clone());
    doc.latest_payment_attempt_outcome = outcome_to_pb(record.latest().state.outcome()) as i32;
    doc.reported_by = pb::PaymentRecordReportedBy::Self_ as i32;
    // Refund metadata is descriptive: keep what the document has for each reference.
    let mut previous = std::mem::take(&mut doc.reported_refunds);
    doc.reported_refunds = record
        .refunds
        .iter()
        .map(|refund| {
            let metadata = previous
                .iter_mut()
                .find(|p| p.refund_reference == refund.reference)
                .map(|p| std::mem::take(&mut p.metadata))
                .unwrap_or_default();
            pb::PaymentRecordReportedRefund {
                refund_reference: refund.reference.clone(),
                amount: amount_to_pb(record.currency, refund.amount),
                payment_attempt_record: refund.attempt.clone(),
                initiated_at: refund.initiated_at,
                refunded_at: refund.refunded_at,
                metadata,
                created: refund.created,
            }
        })
        .collect();
}

/// Writes one attempt's domain state into its document.
pub fn render_attempt(
    record: &PaymentRecord,
    attempt: &Attempt,
    amounts: &Amounts,
    doc: &mut pb::PaymentAttemptRecord,
) {
    doc.id.clone_from(&attempt.id);
    doc.object = "payment_attempt_record".to_owned();
    doc.payment_record = Some(record.id.clone());
    AmountFields {
        amount: &mut doc.amount,
        amount_authorized: &mut doc.amount_authorized,
        amount_canceled: &mut doc.amount_canceled,
        amount_failed: &mut doc.amount_failed,
        amount_guaranteed: &mut doc.amount_guaranteed,
        amount_refunded: &mut doc.amount_refunded,
        amount_requested: &mut doc.amount_requested,
    }
    .write(record.currency, amounts);
    doc.reported_by = pb::PaymentRecordReportedBy::Self_ as i32;
    doc.outcome = outcome_to_pb(attempt.state.outcome()) as i32;
    doc.initiated_at = attempt.initiated_at;
    let (guaranteed_at, failed_at, canceled_at) = match attempt.state {
        AttemptState::Pending => (None, None, None),
        AttemptState::Guaranteed { at } => (Some(at), None, None),
        AttemptState::Failed { at } => (None, Some(at), None),
        AttemptState::Canceled { at } => (None, None, Some(at)),
    };
    doc.guaranteed_at = guaranteed_at;
    doc.failed_at = failed_at;
    doc.canceled_at = canceled_at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::payment_record::{NewPayment, NewRefund, ReportedOutcome};

    fn render(record: &PaymentRecord) -> (pb::PaymentRecord, Vec<pb::PaymentAttemptRecord>) {
        let mut doc = pb::PaymentRecord::default();
        render_record(record, &record.amounts().unwrap(), &mut doc);
        let attempts = record
            .attempts()
            .map(|attempt| {
                let mut a = pb::PaymentAttemptRecord::default();
                render_attempt(record, attempt, &record.attempt_amounts(attempt).unwrap(), &mut a);
                a
            })
            .collect();
        (doc, attempts)
    }

    #[test]
    fn rendering_then_reading_round_trips_the_domain_state() {
        let (mut record, _) = PaymentRecord::report(
            "pr_1".into(),
            "par_1".into(),
            NewPayment {
                currency: Currency::parse("eur").unwrap(),
                amount: 5_000,
                customer: Some("cus_1".into()),
                initiated_at: 10,
                outcome: Some(ReportedOutcome::Failed { at: 11 }),
            },
        )
        .unwrap();
        record.report_attempt("par_2".into(), 12, None).unwrap();
        record.report_guaranteed(13).unwrap();
        record
            .report_refund(
                NewRefund {
                    reference: "r1".into(),
                    amount: Some((record.currency, 1_000)),
                    initiated_at: Some(14),
                    refunded_at: None,
                },
                15,
            )
            .unwrap();
        let (doc, mut attempts) = render(&record);
        attempts.reverse();
        assert_eq!(record_from_documents(&doc, &attempts).unwrap(), record);
        assert_eq!(doc.amount_failed.as_ref().unwrap().value, 5_000);
        assert_eq!(doc.amount_refunded.as_ref().unwrap().value, 1_000);
        assert_eq!(attempts[0].guaranteed_at, Some(13));
        assert_eq!(attempts[0].amount_refunded.as_ref().unwrap().value, 1_000);
        assert_eq!(attempts[1].failed_at, Some(11));
        assert_eq!(summary_from_document(&doc).unwrap(), record.summary().unwrap());
    }

    #[test]
    fn a_document_without_its_latest_attempt_is_corrupt() {
        let (record, _) = PaymentRecord::report(
            "pr_1".into(),
            "par_1".into(),
            NewPayment {
                currency: Currency::parse("usd").unwrap(),
                amount: 5_000,
                customer: None,
                initiated_at: 10,
                outcome: None,
            },
        )
        .unwrap();
        let (doc, _) = render(&record);
        assert_eq!(record_from_documents(&doc, &[]).unwrap_err().problem, "attempts");
        let mut blank = doc.clone();
        blank.latest_payment_attempt_outcome = 0;
        assert!(summary_from_document(&blank).is_err());
        assert!(summary_from_document(&doc).unwrap().can_count());
    }

    #[test]
    fn every_outcome_maps_both_ways() {
        for outcome in [Outcome::Pending, Outcome::Guaranteed, Outcome::Failed, Outcome::Canceled] {
            assert_eq!(outcome_from_pb(outcome_to_pb(outcome) as i32), Some(outcome));
        }
    }
}
