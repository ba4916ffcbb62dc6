//! Races on the credit-note ledger: many credit notes at once on one invoice, concurrent repeats of
//! one saga's steps, and credit notes racing a void of their invoice. Each prints what it saw.

use std::collections::{BTreeMap, BTreeSet};

use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_testkit::{authorized, internal, reason};
use tonic::Code;

use super::{
    CUSTOMER, amounts, apply, assert_refused, credit_status, ledger, open_invoice, pay_partly, reservation,
    saga,
};
use crate::helpers::{spawn, status};

backend_tests! {
    sixty_four_concurrent_reserves_never_credit_beyond_the_total => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[10_000]).await;
        pay_partly(&app, &invoice.id, 4_000).await;
        // 64 credits of 250 or 500 (24 000 in all) on a 10 000 invoice with 6 000 unpaid. Even calls ask
        // for a pre-payment credit, odd ones for a balance credit, which fits once nothing unpaid is
        // left: the amounts divide both 6 000 and 4 000, so the invoice can be credited exactly in full.
        let requests: Vec<_> = (0..64i64)
            .map(|i| {
                let amount = if i % 4 < 2 { 500 } else { 250 };
                if i % 2 == 0 { reservation(&invoice.id, amount, 0, 0, 0) } else { reservation(&invoice.id, amount, amount, 0, 0) }
            })
            .collect();
        let calls: Vec<_> = requests
            .iter()
            .map(|req| {
                let mut client = ledger(&app);
                let req = req.clone();
                tokio::spawn(async move { client.reserve_invoice_credit(internal(req, DEV_ACCOUNT)).await })
            })
            .collect();
        let mut reserved = Vec::new();
        let mut refusals = BTreeMap::<String, usize>::new();
        for result in futures::future::join_all(calls).await {
            match result.unwrap() {
                Ok(credit) => reserved.push(credit.into_inner()),
                Err(status) => {
                    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                    *refusals.entry(reason(&status)).or_default() += 1;
                }
            }
        }
        let credited: i64 = reserved.iter().map(|c| c.amount).sum();
        let pre: i64 = reserved.iter().map(|c| c.pre_payment_amount).sum();
        let post: i64 = reserved.iter().map(|c| c.post_payment_amount).sum();
        let mut indices: Vec<i32> = reserved.iter().map(|c| c.credit_note_index).collect();
        indices.sort_unstable();
        println!(
            "64 concurrent reserves on a 10000 invoice (6000 unpaid): {} reserved for {credited} ({pre} pre-payment, {post} post-payment), refused {refusals:?}",
            reserved.len()
        );
        assert!(credited <= 10_000, "non-void credits {credited} exceed the total");
        assert!(pre <= 6_000, "pre-payment parts {pre} exceed what was unpaid");
        assert_eq!(indices, (1..=i32::try_from(reserved.len()).unwrap()).collect::<Vec<_>>(), "numbered 1..n, no gaps or twins");
        assert!(!reserved.is_empty() && !refusals.is_empty());

        // Applying them all at once lands exactly their sums on the invoice and the balance.
        let applies: Vec<_> = reserved
            .iter()
            .map(|c| {
                let mut client = ledger(&app);
                let req = pb::ApplyInvoiceCreditRequest { saga_id: c.saga_id.clone() };
                tokio::spawn(async move { client.apply_invoice_credit(internal(req, DEV_ACCOUNT)).await })
            })
            .collect();
        for result in futures::future::join_all(applies).await {
            result.unwrap().expect("every reserved credit applies");
        }
        let after = app.get(&invoice.id).await;
        let balance_credit: i64 = reserved.iter().map(|c| c.credit_amount).sum();
        println!("after applying them: invoice {:?}, balance {}", amounts(&after), app.balance(CUSTOMER).await);
        assert_eq!(amounts(&after), (10_000 - pre, 4_000, 6_000 - pre, 0, pre, post));
        assert_eq!(app.balance(CUSTOMER).await, -balance_credit);
        assert_eq!(status(&after), if pre == 6_000 { pb::InvoiceStatus::Paid } else { pb::InvoiceStatus::Open });
    };

    concurrent_repeats_of_a_step_act_once => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let other = open_invoice(&app, CUSTOMER, &[1_000]).await;
        let req = reservation(&invoice.id, 400, 0, 0, 0);
        // Eight repeats of one saga's reserve, four of them (wrongly) naming another invoice.
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let mut client = ledger(&app);
                let mut req = req.clone();
                if i % 2 == 1 {
                    req.invoice = other.id.clone();
                }
                tokio::spawn(async move { client.reserve_invoice_credit(internal(req, DEV_ACCOUNT)).await })
            })
            .collect();
        let mut winners = BTreeSet::new();
        let mut misuse = 0;
        for result in futures::future::join_all(calls).await {
            match result.unwrap() {
                Ok(credit) => {
                    winners.insert(credit.into_inner().invoice);
                }
                Err(status) => {
                    assert_eq!(reason(&status), "idempotency_error", "{status:?}");
                    misuse += 1;
                }
            }
        }
        println!("8 concurrent repeats of one reserve: credits on {winners:?}, {misuse} refused as misuse");
        assert_eq!(winners.len(), 1, "one credit, on one invoice");
        assert_eq!(misuse, 4);

        let saga_id = req.saga_id.clone();
        let winner = winners.into_iter().next().unwrap();
        let applies: Vec<_> = (0..8)
            .map(|_| {
                let mut client = ledger(&app);
                let req = pb::ApplyInvoiceCreditRequest { saga_id: saga_id.clone() };
                tokio::spawn(async move { client.apply_invoice_credit(internal(req, DEV_ACCOUNT)).await })
            })
            .collect();
        for result in futures::future::join_all(applies).await {
            assert_eq!(credit_status(&result.unwrap().unwrap().into_inner()), pb::InvoiceCreditStatus::Applied);
        }
        assert_eq!(amounts(&app.get(&winner).await), (600, 0, 600, 0, 400, 0), "applied once");
        let void_saga = saga();
        let reverses: Vec<_> = (0..8)
            .map(|_| {
                let mut client = ledger(&app);
                let req = pb::ReverseInvoiceCreditRequest { saga_id: void_saga.clone(), credit_note: req.credit_note.clone() };
                tokio::spawn(async move { client.reverse_invoice_credit(internal(req, DEV_ACCOUNT)).await })
            })
            .collect();
        for result in futures::future::join_all(reverses).await {
            assert_eq!(credit_status(&result.unwrap().unwrap().into_inner()), pb::InvoiceCreditStatus::Reversed);
        }
        assert_eq!(amounts(&app.get(&winner).await), (1_000, 0, 1_000, 0, 0, 0), "reversed once");
    };

    a_credit_note_racing_a_void_of_its_invoice_leaves_one_consistent_outcome => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut outcomes = BTreeMap::<&str, usize>::new();
        for round in 0..12 {
            let invoice = open_invoice(&app, CUSTOMER, &[1_000]).await;
            let req = reservation(&invoice.id, 400, 0, 0, 0);
            let issuing = {
                let mut client = ledger(&app);
                let req = req.clone();
                tokio::spawn(async move {
                    client.reserve_invoice_credit(internal(req.clone(), DEV_ACCOUNT)).await?;
                    let apply = pb::ApplyInvoiceCreditRequest { saga_id: req.saga_id.clone() };
                    client.apply_invoice_credit(internal(apply, DEV_ACCOUNT)).await
                })
            };
            let voiding = {
                let mut invoices = app.invoices.clone();
                let id = invoice.id.clone();
                tokio::spawn(async move {
                    if round % 2 == 1 {
                        tokio::task::yield_now().await;
                    }
                    invoices.void_invoice(authorized(pb::VoidInvoiceRequest { id, ..Default::default() })).await
                })
            };
            let (issued, voided) = (issuing.await.unwrap(), voiding.await.unwrap());
            let doc = app.get(&invoice.id).await;
            match (issued, voided) {
                (Ok(credit), Err(refusal)) => {
                    assert_eq!(credit_status(&credit.into_inner()), pb::InvoiceCreditStatus::Applied);
                    assert_eq!(reason(&refusal), "state_unsupported");
                    assert_eq!((status(&doc), amounts(&doc)), (pb::InvoiceStatus::Open, (600, 0, 600, 0, 400, 0)));
                    *outcomes.entry("credit issued, void refused").or_default() += 1;
                }
                (Err(refusal), Ok(_)) => {
                    assert_eq!(reason(&refusal), "state_unsupported", "{refusal:?}");
                    assert_eq!((status(&doc), amounts(&doc)), (pb::InvoiceStatus::Void, (1_000, 0, 1_000, 0, 0, 0)));
                    assert_refused(apply(&app, &req.saga_id).await, Code::NotFound, "resource_missing");
                    *outcomes.entry("invoice voided, credit refused").or_default() += 1;
                }
                (issued, voided) => panic!("round {round}: inconsistent outcome {issued:?} / {voided:?}"),
            }
        }
        println!("12 credit notes racing a void of their invoice: {outcomes:?}");
    };
}
