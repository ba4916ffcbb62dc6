use proptest::prelude::*;

use super::*;

fn usd() -> Currency {
    Currency::parse("usd").unwrap()
}

const INVOICE: &str = "in_1";

fn scope() -> ClaimScope<'static> {
    ClaimScope { invoice: INVOICE, currency: usd() }
}

fn refund(amount: i64, claimed: i64) -> ClaimableRefund {
    ClaimableRefund {
        name: "re_1".into(),
        payment: "pi_1".into(),
        attached_to: Some(INVOICE.into()),
        currency: usd(),
        status: RefundStatus::Succeeded,
        amount: Amount::new(amount),
        amount_claimed: Amount::new(claimed),
    }
}

fn some(amount: i64) -> Option<Amount> {
    Some(Amount::new(amount))
}

#[test]
fn the_default_claims_all_that_is_unclaimed() {
    let mut r = refund(1_000, 300);
    assert_eq!(r.claim(&scope(), None), Ok(Amount::new(700)));
    assert_eq!(r.amount_claimed, Amount::new(1_000));
    assert_eq!(
        r.claim(&scope(), None),
        Err(ClaimError::FullyClaimed { refund: "re_1".into(), amount: 1_000 })
    );
}

#[test]
fn partial_claims_add_up_to_the_refund_and_no_further() {
    let mut r = refund(1_000, 0);
    assert_eq!(r.claim(&scope(), some(400)), Ok(Amount::new(400)));
    assert_eq!(r.claim(&scope(), some(600)), Ok(Amount::new(600)));
    let before = r.clone();
    assert_eq!(
        r.claim(&scope(), some(1)),
        Err(ClaimError::ExceedsUnclaimed {
            refund: "re_1".into(),
            requested: 1,
            unclaimed: 0,
            amount: 1_000
        })
    );
    assert_eq!(r, before, "a refused claim changes nothing");
}

#[test]
fn more_than_is_unclaimed_is_refused_with_what_is_left() {
    let mut r = refund(1_000, 900);
    let error = r.claim(&scope(), some(101)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Refund re_1 has 100 (of 1000) left to link to a credit note; 101 was requested."
    );
    assert_eq!(r.amount_claimed, Amount::new(900));
}

#[test]
fn the_refunded_payment_must_be_attached_to_the_invoice() {
    for attached_to in [None, Some("in_other".to_owned())] {
        let mut r = ClaimableRefund { attached_to, ..refund(1_000, 0) };
        assert_eq!(
            r.claim(&scope(), None),
            Err(ClaimError::NotAttached { payment: "pi_1".into(), invoice: INVOICE.into() })
        );
    }
    assert!(scope().check_attached("pi_1", Some(INVOICE)).is_ok());
}

#[test]
fn the_refund_must_be_in_the_invoices_currency() {
    let eur = Currency::parse("eur").unwrap();
    let mut r = ClaimableRefund { currency: eur, ..refund(1_000, 0) };
    assert_eq!(
        r.claim(&scope(), None),
        Err(ClaimError::CurrencyMismatch { subject: "Refund re_1".into(), expected: usd(), actual: eur })
    );
    assert_eq!(
        r.claim(&scope(), None).unwrap_err().to_string(),
        "Refund re_1 is in eur, the invoice in usd."
    );
}

#[test]
fn a_new_refund_must_be_of_a_payment_attached_to_the_invoice_in_its_currency() {
    assert_eq!(scope().check_new_refund("pi_1", Some(INVOICE), usd()), Ok(()));
    assert!(matches!(
        scope().check_new_refund("pi_1", Some("in_other"), usd()),
        Err(ClaimError::NotAttached { .. })
    ));
    let eur = Currency::parse("eur").unwrap();
    assert_eq!(
        scope().check_new_refund("pi_1", Some(INVOICE), eur),
        Err(ClaimError::CurrencyMismatch { subject: "Payment pi_1".into(), expected: usd(), actual: eur })
    );
}

#[test]
fn only_a_succeeded_refund_can_be_linked() {
    for status in
        [RefundStatus::Pending, RefundStatus::RequiresAction, RefundStatus::Failed, RefundStatus::Canceled]
    {
        let mut r = ClaimableRefund { status, ..refund(1_000, 0) };
        assert_eq!(r.claim(&scope(), None), Err(ClaimError::NotSucceeded { refund: "re_1".into(), status }));
    }
}

#[test]
fn amounts_must_be_positive() {
    assert_eq!(requested_amount(None), Ok(None));
    assert_eq!(requested_amount(Some(5)), Ok(some(5)));
    for bad in [0, -1, i64::MIN] {
        assert_eq!(requested_amount(Some(bad)), Err(ClaimError::AmountNotPositive));
        assert_eq!(refund(1_000, 0).claim(&scope(), some(bad)), Err(ClaimError::AmountNotPositive));
    }
}

#[test]
fn a_release_gives_back_at_most_what_is_claimed() {
    let mut r = refund(1_000, 600);
    assert_eq!(r.release(Amount::new(200)), Ok(()));
    assert_eq!(r.amount_claimed, Amount::new(400));
    assert_eq!(
        r.release(Amount::new(401)),
        Err(ClaimError::OverRelease { refund: "re_1".into(), requested: 401, claimed: 400 })
    );
    assert!(r.release(Amount::new(-1)).is_err());
    assert_eq!(r.amount_claimed, Amount::new(400));
}

#[test]
fn names_round_trip() {
    for k in [RefundKind::Refund, RefundKind::PaymentRecordRefund] {
        assert_eq!(RefundKind::parse(k.as_str()), Some(k));
    }
    for s in [ClaimsStatus::Claimed, ClaimsStatus::Released] {
        assert_eq!(ClaimsStatus::parse(s.as_str()), Some(s));
    }
    assert_eq!(RefundKind::parse("charge"), None);
}

#[derive(Debug, Clone)]
enum Op {
    /// A claim of this amount (`None`: the default).
    Claim(Option<i64>),
    /// Releases the live claim at this index (modulo the number of live claims).
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::option::of(-50i64..1_500).prop_map(Op::Claim),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

proptest! {
    /// Whatever sequence of claims and releases sagas make, the claimed amount stays within
    /// `0..=amount`, always equals the sum of the claims that hold, a refused claim changes
    /// nothing, and a default claim takes exactly what was left.
    #[test]
    fn claims_and_releases_never_leave_the_claimed_amount_out_of_range(
        amount in 1i64..5_000,
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let mut r = refund(amount, 0);
        let mut live: Vec<Amount> = Vec::new();
        for op in ops {
            let before = r.clone();
            match op {
                Op::Claim(requested) => {
                    match requested_amount(requested).and_then(|req| r.claim(&scope(), req)) {
                        Ok(claimed) => {
                            prop_assert!(claimed.is_positive());
                            if requested.is_none() {
                                prop_assert_eq!(claimed, before.unclaimed());
                            }
                            live.push(claimed);
                        }
                        Err(ClaimError::AmountNotPositive) => prop_assert!(requested.is_some_and(|a| a < 1)),
                        Err(ClaimError::FullyClaimed { .. }) => prop_assert!(before.unclaimed().is_zero()),
                        Err(ClaimError::ExceedsUnclaimed { requested, unclaimed, .. }) => {
                            prop_assert_eq!(unclaimed, before.unclaimed().get());
                            prop_assert!(requested > unclaimed);
                        }
                        Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                    }
                }
                Op::Release(index) if !live.is_empty() => {
                    let released = live.swap_remove(index % live.len());
                    prop_assert_eq!(r.release(released), Ok(()));
                }
                Op::Release(_) => {}
            }
            if r.amount_claimed == before.amount_claimed {
                prop_assert_eq!(&r, &before, "an operation that claimed nothing changed nothing");
            }
            prop_assert!(!r.amount_claimed.is_negative());
            prop_assert!(r.amount_claimed <= r.amount);
            prop_assert_eq!(r.amount_claimed, Amount::checked_sum(live.iter().copied()).unwrap());
        }
    }
}
