//! Unit and property tests of the Payment Record rules.

use super::*;
use proptest::prelude::*;

fn usd() -> Currency {
    Currency::parse("usd").unwrap()
}

fn report(outcome: Option<ReportedOutcome>) -> (PaymentRecord, Vec<RecordEvent>) {
    PaymentRecord::report(
        "pr_1".into(),
        "par_1".into(),
        NewPayment {
            currency: usd(),
            amount: 10_000,
            customer: Some("cus_1".into()),
            initiated_at: 100,
            outcome,
        },
    )
    .unwrap()
}

fn refund(reference: &str, amount: Option<i64>) -> NewRefund {
    NewRefund {
        reference: reference.into(),
        amount: amount.map(|a| (usd(), a)),
        initiated_at: None,
        refunded_at: Some(300),
    }
}

#[test]
fn a_pending_report_counts_but_has_nothing_guaranteed() {
    let (record, events) = report(None);
    assert_eq!(events, [RecordEvent::Created]);
    assert!(record.can_count());
    let amounts = record.amounts().unwrap();
    assert_eq!(amounts.amount, Amount::new(10_000));
    assert_eq!(amounts.amount_requested, Amount::new(10_000));
    assert_eq!(amounts.amount_guaranteed, Amount::ZERO);
    assert_eq!(amounts.amount_failed, Amount::ZERO);
    assert_eq!(record.customer(), Some("cus_1"));
}

#[test]
fn a_terminal_report_emits_its_outcome_after_created() {
    let (record, events) = report(Some(ReportedOutcome::Guaranteed { at: 150 }));
    assert_eq!(events, [RecordEvent::Created, RecordEvent::PaymentAttemptGuaranteed]);
    assert_eq!(record.latest().state, AttemptState::Guaranteed { at: 150 });
    let amounts = record.amounts().unwrap();
    assert_eq!(amounts.amount_guaranteed, Amount::new(10_000));
    assert_eq!(amounts.amount_authorized, Amount::new(10_000));
    let (failed, events) = report(Some(ReportedOutcome::Failed { at: 150 }));
    assert_eq!(events, [RecordEvent::Created, RecordEvent::PaymentAttemptFailed]);
    assert!(!failed.can_count());
}

#[test]
fn requested_amounts_must_be_positive_and_at_most_eight_digits() {
    assert_eq!(check_amount(0), Err(RecordError::AmountNotPositive));
    assert_eq!(check_amount(-1), Err(RecordError::AmountNotPositive));
    assert_eq!(check_amount(MAX_AMOUNT + 1), Err(RecordError::AmountTooLarge));
    assert_eq!(check_amount(1), Ok(Amount::new(1)));
}

#[test]
fn outcomes_apply_only_to_a_pending_latest_attempt() {
    let (mut record, _) = report(None);
    assert_eq!(record.report_failed(200).unwrap(), [RecordEvent::PaymentAttemptFailed]);
    let before = record.clone();
    for refused in [
        record.clone().report_guaranteed(201),
        record.clone().report_canceled(201),
        record.clone().report_failed(201),
    ] {
        assert!(matches!(refused, Err(RecordError::UnexpectedState { outcome: Outcome::Failed, .. })));
    }
    assert_eq!(record, before);
}

#[test]
fn a_new_attempt_needs_every_earlier_one_ended_unsuccessfully() {
    let (mut record, _) = report(None);
    assert!(record.report_attempt("par_2".into(), 110, None).is_err());
    record.report_canceled(120).unwrap();
    assert_eq!(record.report_attempt("par_2".into(), 130, None).unwrap(), [RecordEvent::Updated]);
    assert!(record.can_count());
    record.report_failed(140).unwrap();
    assert_eq!(
        record.report_attempt("par_3".into(), 150, Some(ReportedOutcome::Guaranteed { at: 160 })).unwrap(),
        [RecordEvent::Updated, RecordEvent::PaymentAttemptGuaranteed]
    );
    let amounts = record.amounts().unwrap();
    assert_eq!(amounts.amount_canceled, Amount::new(10_000));
    assert_eq!(amounts.amount_failed, Amount::new(10_000));
    assert_eq!(amounts.amount_guaranteed, Amount::new(10_000));
    assert_eq!(record.latest().id, "par_3");
    assert!(record.report_attempt("par_4".into(), 170, None).is_err());
    let first = record.earlier_attempts[0].clone();
    assert_eq!(record.attempt_amounts(&first).unwrap().amount_canceled, Amount::new(10_000));
    assert_eq!(record.attempt_amounts(&first).unwrap().amount_guaranteed, Amount::ZERO);
}

#[test]
fn refunds_stay_within_the_guaranteed_amount() {
    let (mut pending, _) = report(None);
    assert!(matches!(pending.report_refund(refund("r0", None), 1), Err(RecordError::UnexpectedState { .. })));
    let (mut record, _) = report(Some(ReportedOutcome::Guaranteed { at: 150 }));
    assert_eq!(record.report_refund(refund("r1", Some(4_000)), 1).unwrap(), [RecordEvent::Refunded]);
    assert_eq!(
        record.report_refund(refund("r2", Some(6_001)), 2),
        Err(RecordError::RefundTooLarge { requested: 6_001, refundable: 6_000 })
    );
    assert_eq!(
        record.report_refund(refund("r1", Some(1)), 2),
        Err(RecordError::RefundReferenceInUse("r1".into()))
    );
    assert_eq!(record.report_refund(refund("r2", Some(0)), 2), Err(RecordError::RefundNotPositive));
    let eur = NewRefund { amount: Some((Currency::parse("eur").unwrap(), 1)), ..refund("r2", None) };
    assert!(matches!(record.report_refund(eur, 2), Err(RecordError::RefundCurrencyMismatch { .. })));
    record.report_refund(refund("r3", None), 3).unwrap();
    assert_eq!(record.refunds[1].amount, Amount::new(6_000));
    assert_eq!(record.amounts().unwrap().amount_refunded, Amount::new(10_000));
    assert_eq!(record.report_refund(refund("r4", None), 4), Err(RecordError::AlreadyRefunded));
    let latest = record.latest().clone();
    assert_eq!(record.attempt_amounts(&latest).unwrap().amount_refunded, Amount::new(10_000));
    assert!(record.can_count(), "a refunded record still counts");
}

#[test]
fn the_summary_says_whether_the_record_can_pay() {
    let (mut record, _) = report(None);
    let summary = record.summary().unwrap();
    assert_eq!(summary.customer.as_deref(), Some("cus_1"));
    assert_eq!(summary.amount, Amount::new(10_000));
    assert!(summary.can_count());
    record.report_canceled(200).unwrap();
    assert!(!record.summary().unwrap().can_count());
    assert_eq!(record.report_informational(Some(None)), [RecordEvent::Updated]);
    assert_eq!(record.summary().unwrap().customer, None);
}

#[derive(Debug, Clone)]
enum Action {
    Attempt(Option<bool>),
    Guaranteed,
    Failed,
    Canceled,
    Refund(u8, Option<i64>),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        proptest::option::of(any::<bool>()).prop_map(Action::Attempt),
        Just(Action::Guaranteed),
        Just(Action::Failed),
        Just(Action::Canceled),
        (0u8..4, proptest::option::of(-10i64..12_000)).prop_map(|(r, a)| Action::Refund(r, a)),
    ]
}

proptest! {
    /// Whatever is reported, the buckets stay non-negative and consistent, refunds never pass
    /// the guaranteed amount, only the latest attempt is ever not ended, and a refused report
    /// changes nothing.
    #[test]
    fn amounts_stay_consistent(
        amount in 1i64..=10_000,
        first in proptest::option::of(any::<bool>()),
        actions in proptest::collection::vec(action(), 0..16),
    ) {
        let outcome = |guaranteed: Option<bool>, at: i64| guaranteed.map(|g| {
            if g { ReportedOutcome::Guaranteed { at } } else { ReportedOutcome::Failed { at } }
        });
        let (mut record, _) = PaymentRecord::report("pr_p".into(), "par_0".into(), NewPayment {
            currency: usd(), amount, customer: None, initiated_at: 1, outcome: outcome(first, 1),
        }).unwrap();
        for (i, action) in actions.into_iter().enumerate() {
            let at = i as i64 + 2;
            let before = record.clone();
            let result = match action {
                Action::Attempt(o) => record.report_attempt(format!("par_{}", i + 1), at, outcome(o, at)),
                Action::Guaranteed => record.report_guaranteed(at),
                Action::Failed => record.report_failed(at),
                Action::Canceled => record.report_canceled(at),
                Action::Refund(r, a) => record.report_refund(NewRefund {
                    reference: format!("ref_{r}"),
                    amount: a.map(|a| (usd(), a)),
                    initiated_at: None,
                    refunded_at: None,
                }, at),
            };
            match result {
                Err(_) => prop_assert_eq!(&record, &before, "a refused report changed the record"),
                Ok(events) => prop_assert!(!events.is_empty()),
            }
            let amounts = record.amounts().unwrap();
            for bucket in [amounts.amount, amounts.amount_authorized, amounts.amount_canceled,
                           amounts.amount_failed, amounts.amount_guaranteed, amounts.amount_refunded,
                           amounts.amount_requested] {
                prop_assert!(bucket.get() >= 0);
            }
            prop_assert!(amounts.amount_refunded <= amounts.amount_guaranteed);
            prop_assert!(amounts.amount_guaranteed <= amounts.amount);
            prop_assert_eq!(amounts.amount_authorized, amounts.amount_guaranteed);
            prop_assert_eq!(amounts.amount, amounts.amount_requested);
            prop_assert!(record.earlier_attempts.iter().all(|a| matches!(
                a.state.outcome(), Outcome::Failed | Outcome::Canceled
            )), "only the latest attempt may be pending or guaranteed");
            prop_assert_eq!(
                amounts.amount_failed.get() + amounts.amount_canceled.get() + amounts.amount_guaranteed.get()
                    + if record.latest().state == AttemptState::Pending { amount } else { 0 },
                amount * record.attempts().count() as i64,
                "every attempt is in exactly one bucket"
            );
            let mut references: Vec<&str> = record.refunds.iter().map(|r| r.reference.as_str()).collect();
            references.sort_unstable();
            references.dedup();
            prop_assert_eq!(references.len(), record.refunds.len(), "refund references are unique");
            prop_assert_eq!(record.can_count(), record.latest().state.outcome().can_count());
        }
    }
}
