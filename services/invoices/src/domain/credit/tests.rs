use proptest::prelude::*;

use super::*;
use crate::domain::amounts::{AmountInputs, InvoiceAmounts, LineAmount, compute};

fn a(value: i64) -> Amount {
    Amount::new(value)
}

fn request(amount: i64, credit: i64, refund: i64, oob: i64) -> CreditRequest {
    CreditRequest::parse(amount, credit, refund, oob).unwrap()
}

fn room(total: i64, remaining: i64, credited: i64, reserved_pre: i64) -> InvoiceRoom {
    InvoiceRoom {
        total: a(total),
        amount_remaining: a(remaining),
        credited: a(credited),
        reserved_pre_payment: a(reserved_pre),
    }
}

fn split(pre: i64, post: i64) -> Split {
    Split { pre_payment: a(pre), post_payment: a(post) }
}

#[test]
fn on_an_unpaid_invoice_the_credit_is_all_pre_payment() {
    assert_eq!(reserve(&request(400, 0, 0, 0), &room(1_000, 1_000, 0, 0)), Ok(split(400, 0)));
}

#[test]
fn on_a_partly_paid_invoice_what_exceeds_the_remainder_is_post_payment() {
    // 1 000 invoice, 700 paid: 300 can reduce what remains, the other 200 must go somewhere.
    assert_eq!(reserve(&request(500, 150, 50, 0), &room(1_000, 300, 0, 0)), Ok(split(300, 200)));
    assert_eq!(
        reserve(&request(500, 0, 0, 0), &room(1_000, 300, 0, 0)),
        Err(CreditError::AmountsMismatch { amount: 500, pre_payment: 300, post_payment: 200, parts: 0 })
    );
}

#[test]
fn on_a_paid_invoice_the_credit_is_all_post_payment() {
    assert_eq!(reserve(&request(250, 0, 200, 50), &room(1_000, 0, 0, 0)), Ok(split(0, 250)));
}

#[test]
fn other_reserved_credits_hold_their_pre_payment_part() {
    // 600 remains, 500 of it held by a reserved credit: a new credit may take only 100 of it.
    assert_eq!(reserve(&request(300, 200, 0, 0), &room(1_000, 600, 500, 500)), Ok(split(100, 200)));
    // Held beyond what remains (a payment came in meanwhile): nothing is left, never below zero.
    assert_eq!(reserve(&request(100, 100, 0, 0), &room(1_000, 200, 500, 500)), Ok(split(0, 100)));
}

#[test]
fn non_void_credits_stay_within_the_total() {
    assert_eq!(reserve(&request(400, 0, 0, 0), &room(1_000, 1_000, 600, 0)), Ok(split(400, 0)));
    let error = reserve(&request(401, 0, 0, 0), &room(1_000, 1_000, 600, 0)).unwrap_err();
    assert_eq!(
        error,
        CreditError::ExceedsInvoice { amount: 401, credited: 600, would_be: 1_001, total: 1_000 }
    );
    assert!(error.to_string().contains("beyond its total of 1000"), "{error}");
    // A negative or zero total takes no credit note at all.
    assert!(matches!(
        reserve(&request(1, 1, 0, 0), &room(0, 0, 0, 0)),
        Err(CreditError::ExceedsInvoice { .. })
    ));
}

#[test]
fn the_request_must_have_a_positive_amount_and_no_negative_part() {
    assert_eq!(CreditRequest::parse(0, 0, 0, 0), Err(CreditError::AmountNotPositive { value: 0 }));
    assert_eq!(CreditRequest::parse(-5, 0, 0, 0), Err(CreditError::AmountNotPositive { value: -5 }));
    assert_eq!(
        CreditRequest::parse(10, 0, -1, 0),
        Err(CreditError::PartNegative { field: "refund_amount", value: -1 })
    );
    assert_eq!(
        CreditRequest::parse(10, -2, 0, 0),
        Err(CreditError::PartNegative { field: "credit_amount", value: -2 })
    );
    assert_eq!(
        CreditRequest::parse(10, 0, 0, -3),
        Err(CreditError::PartNegative { field: "out_of_band_amount", value: -3 })
    );
    let huge = CreditRequest::parse(10, i64::MAX, 1, 0).unwrap();
    assert!(matches!(huge.post_payment_parts(), Err(CreditError::Overflow(_))));
}

#[test]
fn only_finalized_invoices_that_are_not_void_take_credit() {
    for status in [InvoiceStatus::Open, InvoiceStatus::Paid, InvoiceStatus::Uncollectible] {
        assert_eq!(check_creditable("in_1", status), Ok(()));
    }
    for status in [InvoiceStatus::Draft, InvoiceStatus::Void] {
        assert_eq!(
            check_creditable("in_1", status),
            Err(CreditError::InvoiceNotCreditable { invoice: "in_1".into(), status })
        );
    }
}

#[test]
fn steps_change_once_and_repeat_after() {
    use CreditStatus::*;
    assert_eq!(apply_step(Reserved), Ok(Step::Change));
    assert_eq!(apply_step(Applied), Ok(Step::Repeat));
    assert_eq!(apply_step(Reversed), Ok(Step::Repeat));
    assert_eq!(apply_step(Released), Err(CreditError::Released));

    assert_eq!(release_step(Reserved), Ok(Step::Change));
    assert_eq!(release_step(Released), Ok(Step::Repeat));
    assert_eq!(release_step(Applied), Err(CreditError::NotReleasable { status: Applied }));
    assert_eq!(release_step(Reversed), Err(CreditError::NotReleasable { status: Reversed }));

    assert_eq!(reverse_step(Applied, None, "saga_v"), Ok(Step::Change));
    assert_eq!(reverse_step(Reversed, Some("saga_v"), "saga_v"), Ok(Step::Repeat));
    assert_eq!(
        reverse_step(Reversed, Some("saga_v"), "saga_w"),
        Err(CreditError::ReversedByOther { saga: "saga_v".into() })
    );
    assert_eq!(reverse_step(Reserved, None, "saga_v"), Err(CreditError::NotApplied { status: Reserved }));
    assert_eq!(reverse_step(Released, None, "saga_v"), Err(CreditError::NotApplied { status: Released }));
}

#[test]
fn a_reversal_needs_the_balance_to_still_hold_the_credit() {
    assert_eq!(check_balance_holds(a(-500), a(500)), Ok(()));
    assert_eq!(check_balance_holds(a(-800), a(500)), Ok(()));
    assert_eq!(
        check_balance_holds(a(-499), a(500)),
        Err(CreditError::BalanceInsufficient { balance: -499, needed: 500 })
    );
    assert!(check_balance_holds(a(100), a(500)).is_err());
    assert_eq!(check_balance_holds(a(100), Amount::ZERO), Ok(()), "nothing to take back");
}

#[test]
fn totals_move_by_the_split_and_never_below_zero() {
    let totals = CreditNoteTotals { pre_payment: a(100), post_payment: a(50) };
    let applied = totals.with_applied(split(300, 200)).unwrap();
    assert_eq!(applied, CreditNoteTotals { pre_payment: a(400), post_payment: a(250) });
    assert_eq!(applied.with_reversed(split(300, 200)), Ok(totals));
    assert_eq!(
        totals.with_reversed(split(101, 0)),
        Err(CreditError::TotalsInconsistent { pre_payment: 100, post_payment: 50 })
    );
}

#[test]
fn indices_follow_the_highest_live_one() {
    assert_eq!(next_index(0), Ok(1));
    assert_eq!(next_index(2), Ok(3));
    assert!(next_index(i64::from(i32::MAX)).is_err());
}

#[test]
fn statuses_round_trip_and_only_live_ones_count() {
    for status in CreditStatus::ALL {
        assert_eq!(CreditStatus::parse(status.as_str()), Some(status));
    }
    let counted: Vec<_> = CreditStatus::ALL.into_iter().filter(|s| s.counts_toward_total()).collect();
    assert_eq!(counted, [CreditStatus::Reserved, CreditStatus::Applied]);
}

// === properties ===

/// A finalized invoice of `total` with a starting balance, `paid` of it paid, and earlier
/// credit-note totals.
fn inputs(total: i64, balance: i64, paid: i64, totals: CreditNoteTotals) -> AmountInputs {
    AmountInputs {
        lines: vec![LineAmount { amount: a(total), ..Default::default() }],
        starting_balance: a(balance),
        balance_applied: true,
        pre_payment_credit_notes: totals.pre_payment,
        post_payment_credit_notes: totals.post_payment,
        paid_by_payments: a(paid),
        ..Default::default()
    }
}

fn with_totals(mut inputs: AmountInputs, totals: CreditNoteTotals) -> InvoiceAmounts {
    inputs.pre_payment_credit_notes = totals.pre_payment;
    inputs.post_payment_credit_notes = totals.post_payment;
    compute(&inputs).unwrap()
}

/// The request whose parts match the split `reserve` will compute, with the post-payment part
/// divided between the balance credit and a refund by `credit_share` (percent).
fn matching_request(amount: i64, room: &InvoiceRoom, credit_share: i64) -> CreditRequest {
    let pre = amount.min(room.pre_payment_room().unwrap().get());
    let post = amount - pre;
    let credit = post * credit_share / 100;
    request(amount, credit, post - credit, 0)
}

proptest! {
    /// Applying a credit moves the invoice's amounts exactly by its pre-payment part and never
    /// overpays it; reversing it then restores every amount field as it was.
    #[test]
    fn apply_then_reverse_leaves_every_amount_as_it_was(
        total in 1i64..2_000_000,
        balance in -3_000_000i64..1_000_000,
        paid_share in 0i64..=100,
        earlier_pre_share in 0i64..=100,
        earlier_post_share in 0i64..100,
        amount_share in 1i64..=100,
        credit_share in 0i64..=100,
    ) {
        let fresh = compute(&inputs(total, balance, 0, CreditNoteTotals::default())).unwrap();
        // Earlier notes took part of what was due; payments took part of the rest.
        let earlier_pre = fresh.amount_due.get().min(total) * earlier_pre_share / 100;
        let earlier = CreditNoteTotals {
            pre_payment: a(earlier_pre),
            post_payment: a((total - earlier_pre) * earlier_post_share / 100),
        };
        let before_payment = compute(&inputs(total, balance, 0, earlier)).unwrap();
        let paid = before_payment.amount_remaining.get() * paid_share / 100;
        let base = inputs(total, balance, paid, earlier);
        let before = compute(&base).unwrap();
        let credited = earlier.pre_payment.checked_add(earlier.post_payment).unwrap();
        prop_assume!(credited.get() < total);

        let room = InvoiceRoom { total: a(total), amount_remaining: before.amount_remaining, credited, reserved_pre_payment: Amount::ZERO };
        let amount = ((total - credited.get()) * amount_share / 100).max(1);
        let request = matching_request(amount, &room, credit_share);
        let split = reserve(&request, &room).unwrap();
        prop_assert_eq!(split.pre_payment.checked_add(split.post_payment).unwrap(), request.amount);

        let totals = CreditNoteTotals { pre_payment: before.pre_payment_credit_notes_amount, post_payment: before.post_payment_credit_notes_amount };
        let applied = with_totals(base.clone(), totals.with_applied(split).unwrap());
        prop_assert_eq!(applied.amount_remaining.get(), before.amount_remaining.get() - split.pre_payment.get());
        prop_assert_eq!(applied.amount_due.get(), before.amount_due.get() - split.pre_payment.get());
        prop_assert_eq!(applied.amount_overpaid, before.amount_overpaid, "a credit never overpays the invoice");
        prop_assert_eq!(applied.post_payment_credit_notes_amount.get(), before.post_payment_credit_notes_amount.get() + split.post_payment.get());

        let reversed = with_totals(base, totals.with_applied(split).unwrap().with_reversed(split).unwrap());
        prop_assert_eq!(reversed, before);
    }

    /// Whatever order credits are reserved, applied, released and reversed in, and payments come in
    /// (guarded like attach: never beyond what remains less reserved pre-payment parts), the
    /// invoice's non-void credits stay within its total, its credit-note totals are exactly its
    /// applied credits, and nothing is ever overpaid.
    #[test]
    fn non_void_credits_never_exceed_the_total(
        total in 1i64..100_000,
        ops in proptest::collection::vec((0u8..5, 0i64..120_000, 0usize..16, 0i64..=100, any::<bool>()), 1..40),
    ) {
        let mut credits: Vec<(CreditStatus, Split, i64)> = Vec::new();
        let mut paid = 0i64;
        let mut totals = CreditNoteTotals::default();
        for (kind, amount, index, credit_share, mismatch) in ops {
            let now = compute(&inputs(total, 0, paid, totals)).unwrap();
            let credited: i64 = credits.iter().filter(|c| c.0.counts_toward_total()).map(|c| c.2).sum();
            let reserved_pre: i64 = credits.iter().filter(|c| c.0 == CreditStatus::Reserved).map(|c| c.1.pre_payment.get()).sum();
            let room = InvoiceRoom { total: a(total), amount_remaining: now.amount_remaining, credited: a(credited), reserved_pre_payment: a(reserved_pre) };
            let index = if credits.is_empty() { 0 } else { index % credits.len() };
            match kind {
                0 => {
                    let amount = amount.max(1);
                    let mut request = matching_request(amount, &room, credit_share);
                    if mismatch {
                        request.out_of_band_amount = a(1);
                    }
                    match reserve(&request, &room) {
                        Ok(split) => {
                            prop_assert!(!mismatch && credited + amount <= total);
                            credits.push((CreditStatus::Reserved, split, amount));
                        }
                        Err(CreditError::ExceedsInvoice { .. }) => prop_assert!(credited + amount > total),
                        Err(CreditError::AmountsMismatch { .. }) => prop_assert!(mismatch),
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                1 if !credits.is_empty() => {
                    let credit = &mut credits[index];
                    if apply_step(credit.0) == Ok(Step::Change) {
                        totals = totals.with_applied(credit.1).unwrap();
                        credit.0 = CreditStatus::Applied;
                    }
                }
                2 if !credits.is_empty() => {
                    let credit = &mut credits[index];
                    if release_step(credit.0) == Ok(Step::Change) {
                        credit.0 = CreditStatus::Released;
                    }
                }
                3 if !credits.is_empty() => {
                    let credit = &mut credits[index];
                    if reverse_step(credit.0, None, "saga_v") == Ok(Step::Change) {
                        totals = totals.with_reversed(credit.1).unwrap();
                        credit.0 = CreditStatus::Reversed;
                    }
                }
                _ => {
                    // A payment, no larger than what remains once reserved credits take their part.
                    paid += amount.min(room.pre_payment_room().unwrap().get());
                }
            }
            let after = compute(&inputs(total, 0, paid, totals)).unwrap();
            let non_void: i64 = credits.iter().filter(|c| c.0.counts_toward_total()).map(|c| c.2).sum();
            prop_assert!(non_void <= total, "{non_void} credited of {total}");
            let applied_pre: i64 = credits.iter().filter(|c| c.0 == CreditStatus::Applied).map(|c| c.1.pre_payment.get()).sum();
            let applied_post: i64 = credits.iter().filter(|c| c.0 == CreditStatus::Applied).map(|c| c.1.post_payment.get()).sum();
            prop_assert_eq!((totals.pre_payment.get(), totals.post_payment.get()), (applied_pre, applied_post));
            prop_assert!(after.amount_overpaid.is_zero(), "overpaid by {}", after.amount_overpaid);
            let reserved_pre: i64 = credits.iter().filter(|c| c.0 == CreditStatus::Reserved).map(|c| c.1.pre_payment.get()).sum();
            prop_assert!(after.amount_remaining.get() >= reserved_pre, "reserved credits keep their room");
        }
    }
}
