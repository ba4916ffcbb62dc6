//! Issuing each type of credit note across the three services, and voiding it where settle allows.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::creditnotes::v1 as cn;
use settle_proto::settle::invoices::v1 as inv;
use settle_testkit::{authorized, reason};
use tonic::Code;

use crate::helpers::{
    Line, comparable, credit_quantity, link_record_refund, link_refund, note, spawn, units,
};

fn status(invoice: &inv::Invoice) -> inv::InvoiceStatus {
    inv::InvoiceStatus::try_from(invoice.status.unwrap()).unwrap()
}

backend_tests! {
    a_pre_payment_note_reduces_what_an_open_invoice_owes_and_voiding_gives_it_back => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, lines) = app.open_invoice("cus_pre", &[Line { unit_amount: 1_000, quantity: 3, tax: 300 }]).await;
        assert_eq!((invoice.total, invoice.amount_remaining), (3_300, 3_300));
        let request = cn::CreateCreditNoteRequest {
            amount: None,
            lines: vec![credit_quantity(&lines[0].id, 1)],
            memo: Some("One seat less".into()),
            ..note(&invoice.id, 0)
        };
        let preview = app.preview(request.clone()).await.unwrap();
        let created = app.create(request).await.unwrap();
        println!("issued {} {}: total {} pre {} post {}", created.id, created.number, created.total, created.pre_payment_amount, created.post_payment_amount);
        assert_eq!(comparable(&created), comparable(&preview));
        assert_eq!(created.number, preview.number);
        assert_eq!(created.number, format!("{}-CN-01", invoice.number.clone().unwrap()));
        assert_eq!((created.total, created.pre_payment_amount, created.post_payment_amount), (1_100, 1_100, 0));
        assert_eq!(created.r#type, cn::CreditNoteType::PrePayment as i32);
        assert_eq!(created.status, cn::CreditNoteStatus::Issued as i32);
        assert_eq!(created.customer_balance_transaction, None);
        assert_eq!(app.get_note(&created.id).await.unwrap(), created);

        let after = app.invoice(&invoice.id).await;
        assert_eq!((after.pre_payment_credit_notes_amount, after.post_payment_credit_notes_amount), (1_100, 0));
        assert_eq!((after.amount_due, after.amount_remaining, status(&after)), (2_200, 2_200, inv::InvoiceStatus::Open));
        let events = app.note_events("credit_note.created", 1).await;
        assert_eq!(events.len(), 1);

        // A second note is numbered after the first.
        let second = app.create(note(&invoice.id, 200)).await.unwrap();
        assert_eq!(second.number, format!("{}-CN-02", invoice.number.clone().unwrap()));

        let voided = app.void(&created.id).await.unwrap();
        assert_eq!(voided.status, cn::CreditNoteStatus::Void as i32);
        assert!(voided.voided_at.is_some());
        let restored = app.invoice(&invoice.id).await;
        assert_eq!((restored.pre_payment_credit_notes_amount, restored.amount_remaining), (200, 3_100));
        assert_eq!(app.note_events("credit_note.voided", 1).await.len(), 1);
        assert_eq!(app.get_note(&created.id).await.unwrap().status, cn::CreditNoteStatus::Void as i32);

        // Voiding twice is refused, and changes nothing.
        let before = app.snapshot(&invoice.id, "cus_pre").await;
        let again = app.void(&created.id).await.unwrap_err();
        assert_eq!((again.code(), reason(&again).as_str()), (Code::FailedPrecondition, "credit_note_not_voidable"));
        assert_eq!(app.snapshot(&invoice.id, "cus_pre").await, before);

        // The voided note keeps its number; the next one takes the third.
        let third = app.create(note(&invoice.id, 300)).await.unwrap();
        assert_eq!(third.number, format!("{}-CN-03", invoice.number.clone().unwrap()));
        // The voided note no longer counts, but the others do: the whole line (with its tax) is too much.
        let rest = app.create(cn::CreateCreditNoteRequest { amount: None, lines: vec![credit_quantity(&lines[0].id, 3)], ..note(&invoice.id, 0) }).await;
        let refused = rest.unwrap_err();
        assert_eq!(reason(&refused), "credit_note_exceeds_invoice");
        let notes = app.notes_of(&invoice.id).await;
        assert_eq!(notes.len(), 3);
    };

    a_pre_payment_note_can_settle_an_open_invoice => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, _) = app.open_invoice("cus_settle", &[units(2_500, 2)]).await;
        app.pay_with_intent(&invoice.id, "cus_settle", 1_000).await;
        let created = app.create(note(&invoice.id, 4_000)).await.unwrap();
        assert_eq!((created.pre_payment_amount, created.post_payment_amount), (4_000, 0));
        let paid = app.invoice(&invoice.id).await;
        assert_eq!((paid.amount_remaining, status(&paid)), (0, inv::InvoiceStatus::Paid));
        // Voiding it reopens the invoice.
        app.void(&created.id).await.unwrap();
        let reopened = app.invoice(&invoice.id).await;
        assert_eq!((reopened.amount_remaining, status(&reopened)), (4_000, inv::InvoiceStatus::Open));
    };

    a_post_payment_note_refunds_a_paid_invoice_and_cannot_be_voided => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, lines) = app.open_invoice("cus_post", &[units(1_000, 5)]).await;
        let intent = app.pay_with_intent(&invoice.id, "cus_post", 5_000).await;
        assert_eq!(status(&app.invoice(&invoice.id).await), inv::InvoiceStatus::Paid);
        let request = cn::CreateCreditNoteRequest {
            amount: None,
            lines: vec![credit_quantity(&lines[0].id, 2)],
            refund_amount: Some(2_000),
            reason: Some(cn::CreditNoteReason::ProductUnsatisfactory as i32),
            ..note(&invoice.id, 0)
        };
        let preview = app.preview(request.clone()).await.unwrap();
        assert!(preview.refunds.is_empty(), "a preview creates no refund");
        let created = app.create(request).await.unwrap();
        println!("issued {}: refunds {:?}", created.id, created.refunds);
        assert_eq!(created.r#type, cn::CreditNoteType::PostPayment as i32);
        assert_eq!((created.pre_payment_amount, created.post_payment_amount), (0, 2_000));
        assert_eq!(created.refunds.len(), 1);
        let entry = &created.refunds[0];
        assert_eq!((entry.amount_refunded, entry.r#type), (2_000, Some(cn::CreditNoteRefundType::Refund as i32)));
        let mut without_refunds = comparable(&created);
        without_refunds.refunds.clear();
        assert_eq!(without_refunds, comparable(&preview));
        let refunds = app.all_refunds().await;
        assert_eq!(refunds.len(), 1);
        assert_eq!((refunds[0].id.as_str(), refunds[0].amount), (entry.refund.as_str(), 2_000));
        assert_eq!(refunds[0].payment_intent.as_deref(), Some(intent.id.as_str()));
        let after = app.invoice(&invoice.id).await;
        assert_eq!((after.post_payment_credit_notes_amount, after.amount_paid, status(&after)), (2_000, 5_000, inv::InvoiceStatus::Paid));

        let before = app.snapshot(&invoice.id, "cus_post").await;
        let refused = app.void(&created.id).await.unwrap_err();
        println!("void refused: {}", refused.message());
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "credit_note_not_voidable"));
        assert_eq!(app.snapshot(&invoice.id, "cus_post").await, before);
    };

    a_mixed_note_splits_across_an_intent_refund_and_a_record_refund => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, _) = app.open_invoice("cus_mixed", &[units(2_500, 4)]).await;
        let intent = app.pay_with_intent(&invoice.id, "cus_mixed", 3_000).await;
        let record = app.pay_with_record(&invoice.id, "cus_mixed", 2_000).await;
        app.report_refund(&record.id, "chk-77", 2_000).await;
        let partly = app.invoice(&invoice.id).await;
        assert_eq!((partly.amount_paid, partly.amount_remaining, status(&partly)), (5_000, 5_000, inv::InvoiceStatus::Open));

        let request = cn::CreateCreditNoteRequest {
            refund_amount: Some(1_000),
            refunds: vec![link_record_refund(&record.id, "chk-77", None)],
            ..note(&invoice.id, 8_000)
        };
        let preview = app.preview(request.clone()).await.unwrap();
        let created = app.create(request).await.unwrap();
        println!("mixed {}: pre {} post {} refunds {:?}", created.id, created.pre_payment_amount, created.post_payment_amount, created.refunds);
        assert_eq!(created.r#type, cn::CreditNoteType::Mixed as i32);
        assert_eq!((created.pre_payment_amount, created.post_payment_amount), (5_000, 3_000));
        assert_eq!(preview.refunds.len(), 1);
        assert_eq!(created.refunds.len(), 2);
        let by_type = |t: cn::CreditNoteRefundType| created.refunds.iter().find(|r| r.r#type == Some(t as i32)).unwrap();
        let record_entry = by_type(cn::CreditNoteRefundType::PaymentRecordRefund);
        assert_eq!(record_entry.amount_refunded, 2_000);
        assert_eq!(record_entry.payment_record_refund.as_ref().unwrap().refund_group, "chk-77");
        let intent_entry = by_type(cn::CreditNoteRefundType::Refund);
        assert_eq!(intent_entry.amount_refunded, 1_000);
        let refunds = app.all_refunds().await;
        assert_eq!(refunds[0].payment_intent.as_deref(), Some(intent.id.as_str()));

        let after = app.invoice(&invoice.id).await;
        println!("invoice after: due {} paid {} remaining {} status {:?}", after.amount_due, after.amount_paid, after.amount_remaining, status(&after));
        assert_eq!((after.pre_payment_credit_notes_amount, after.post_payment_credit_notes_amount), (5_000, 3_000));
        assert_eq!((after.amount_remaining, status(&after)), (0, inv::InvoiceStatus::Paid));

        // The reported refund is now linked for all it refunded.
        let again = app.create(cn::CreateCreditNoteRequest {
            refunds: vec![link_record_refund(&record.id, "chk-77", None)],
            ..note(&invoice.id, 1)
        }).await.unwrap_err();
        assert_eq!(reason(&again), "refund_exceeds_refundable");
        let refused = app.void(&created.id).await.unwrap_err();
        assert_eq!(reason(&refused), "credit_note_not_voidable");
    };

    existing_refunds_are_linked_for_what_is_left_of_them => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, _) = app.open_invoice("cus_link", &[units(5_000, 1)]).await;
        let intent = app.pay_with_intent(&invoice.id, "cus_link", 5_000).await;
        let refund = app.refund(&intent.id, 1_200).await;
        let first = app
            .create(cn::CreateCreditNoteRequest { refunds: vec![link_refund(&refund.id, Some(1_000))], ..note(&invoice.id, 1_000) })
            .await
            .unwrap();
        assert_eq!(first.refunds.len(), 1);
        assert_eq!((first.refunds[0].refund.as_str(), first.refunds[0].amount_refunded), (refund.id.as_str(), 1_000));
        // By default a link takes what other notes left of the refund.
        let second = app
            .create(cn::CreateCreditNoteRequest { refunds: vec![link_refund(&refund.id, None)], ..note(&invoice.id, 200) })
            .await
            .unwrap();
        assert_eq!(second.refunds[0].amount_refunded, 200);
        let third = app
            .create(cn::CreateCreditNoteRequest { refunds: vec![link_refund(&refund.id, None)], ..note(&invoice.id, 1) })
            .await
            .unwrap_err();
        assert_eq!(reason(&third), "refund_exceeds_refundable");
        // No refund was made by linking: still the one.
        assert_eq!(app.all_refunds().await.len(), 1);
        let after = app.invoice(&invoice.id).await;
        assert_eq!(after.post_payment_credit_notes_amount, 1_200);
        assert_eq!(reason(&app.void(&first.id).await.unwrap_err()), "credit_note_not_voidable");
    };

    a_balance_credit_is_applied_to_the_next_invoice => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, _) = app.open_invoice("cus_balance", &[units(4_000, 1)]).await;
        app.pay_with_intent(&invoice.id, "cus_balance", 4_000).await;
        let created = app.create(cn::CreateCreditNoteRequest { credit_amount: Some(1_500), ..note(&invoice.id, 1_500) }).await.unwrap();
        assert_eq!(created.r#type, cn::CreditNoteType::PostPayment as i32);
        let transaction = created.customer_balance_transaction.clone().expect("a balance transaction");
        assert!(transaction.starts_with("cbtxn_"));
        assert_eq!(app.balance("cus_balance").await, -1_500);

        let (next, _) = app.open_invoice("cus_balance", &[units(3_000, 1)]).await;
        println!("next invoice: starting balance {} due {}", next.starting_balance, next.amount_due);
        assert_eq!((next.starting_balance, next.amount_due), (-1_500, 1_500));
        assert_eq!(app.balance("cus_balance").await, 0);

        // The credit is spent: the note can no longer be voided.
        let before = app.snapshot(&invoice.id, "cus_balance").await;
        let refused = app.void(&created.id).await.unwrap_err();
        println!("void refused: {}", refused.message());
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "credit_note_not_voidable"));
        assert_eq!(app.snapshot(&invoice.id, "cus_balance").await, before);
        assert_eq!(app.get_note(&created.id).await.unwrap().status, cn::CreditNoteStatus::Issued as i32);

        // While the balance holds it, voiding takes it back.
        let (other, _) = app.open_invoice("cus_balance2", &[units(1_000, 1)]).await;
        app.pay_with_intent(&other.id, "cus_balance2", 1_000).await;
        let kept = app
            .create(cn::CreateCreditNoteRequest { credit_amount: Some(600), out_of_band_amount: Some(400), ..note(&other.id, 1_000) })
            .await
            .unwrap();
        assert_eq!((kept.out_of_band_amount, app.balance("cus_balance2").await), (Some(400), -600));
        app.void(&kept.id).await.unwrap();
        assert_eq!(app.balance("cus_balance2").await, 0);
        let restored = app.invoice(&other.id).await;
        assert_eq!((restored.post_payment_credit_notes_amount, status(&restored)), (0, inv::InvoiceStatus::Paid));
    };

    creates_voids_and_updates_honour_idempotency_keys => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, _) = app.open_invoice("cus_keys", &[units(1_000, 4)]).await;
        let create = |key: &str, amount: i64| {
            let mut notes = app.notes.clone();
            let request = settle_testkit::idempotent(note(&invoice.id, amount), key);
            async move { notes.create_credit_note(request).await.map(tonic::Response::into_inner) }
        };
        let first = create("note-1", 500).await.unwrap();
        let replay = create("note-1", 500).await.unwrap();
        assert_eq!(first, replay);
        assert_eq!(app.notes_of(&invoice.id).await.len(), 1);
        let other = create("note-1", 600).await.unwrap_err();
        assert_eq!((other.code(), reason(&other).as_str()), (Code::InvalidArgument, "idempotency_error"));

        let update = |key: &str, memo: &str| {
            let mut notes = app.notes.clone();
            let request = settle_testkit::idempotent(
                cn::UpdateCreditNoteRequest { id: first.id.clone(), memo: Some(memo.into()), metadata: [("k".to_owned(), "v".to_owned())].into() },
                key,
            );
            async move { notes.update_credit_note(request).await.map(tonic::Response::into_inner) }
        };
        let updated = update("update-1", "Thanks").await.unwrap();
        assert_eq!((updated.memo.as_deref(), updated.metadata.get("k").map(String::as_str)), (Some("Thanks"), Some("v")));
        assert_eq!(update("update-1", "Thanks").await.unwrap(), updated);
        let events = app.note_events("credit_note.updated", 1).await;
        assert_eq!(events.len(), 1);
        let previous = events[0].data.as_ref().unwrap().previous_attributes.as_ref().unwrap();
        let mut keys: Vec<_> = previous.fields.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["memo", "metadata"]);
        // An update that changes nothing emits nothing.
        update("update-2", "Thanks").await.unwrap();
        assert_eq!(app.note_events("credit_note.updated", 2).await.len(), 1);
        // Clearing the memo.
        let cleared = app.notes.clone().update_credit_note(authorized(cn::UpdateCreditNoteRequest { id: first.id.clone(), memo: Some(String::new()), ..Default::default() })).await.unwrap().into_inner();
        assert_eq!(cleared.memo, None);

        let void = |key: &str| {
            let mut notes = app.notes.clone();
            let request = settle_testkit::idempotent(cn::VoidCreditNoteRequest { id: first.id.clone() }, key);
            async move { notes.void_credit_note(request).await.map(tonic::Response::into_inner) }
        };
        let voided = void("void-1").await.unwrap();
        assert_eq!(void("void-1").await.unwrap(), voided);
        let twice = void("void-2").await.unwrap_err();
        assert_eq!(reason(&twice), "credit_note_not_voidable");
        // A key used for a create cannot void.
        let mixed = void("note-1").await.unwrap_err();
        assert_eq!(reason(&mixed), "idempotency_error");
    };

    notes_are_listed_by_invoice_customer_and_time => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (a, _) = app.open_invoice("cus_list_a", &[units(1_000, 10)]).await;
        let (b, _) = app.open_invoice("cus_list_b", &[units(1_000, 10)]).await;
        let mut made = Vec::new();
        for i in 0..4 {
            made.push(app.create(note(&a.id, 100 + i)).await.unwrap());
        }
        let on_b = app.create(note(&b.id, 100)).await.unwrap();
        assert_eq!(app.notes_of(&a.id).await.iter().map(|n| n.id.clone()).collect::<Vec<_>>(), made.iter().rev().map(|n| n.id.clone()).collect::<Vec<_>>());
        let list = |req: cn::ListCreditNotesRequest| {
            let mut notes = app.notes.clone();
            async move { notes.list_credit_notes(authorized(req)).await.unwrap().into_inner() }
        };
        let by_customer = list(cn::ListCreditNotesRequest { customer: Some("cus_list_b".into()), ..Default::default() }).await;
        assert_eq!(by_customer.data.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), [on_b.id.as_str()]);
        let page = list(cn::ListCreditNotesRequest { limit: Some(2), ..Default::default() }).await;
        assert_eq!((page.data.len(), page.has_more), (2, true));
        let next = list(cn::ListCreditNotesRequest { limit: Some(2), starting_after: Some(page.data[1].id.clone()), ..Default::default() }).await;
        assert_eq!((next.data.len(), next.has_more), (2, true));
        let back = list(cn::ListCreditNotesRequest { limit: Some(2), ending_before: Some(next.data[0].id.clone()), ..Default::default() }).await;
        assert_eq!(back.data, page.data);
        let future = list(cn::ListCreditNotesRequest {
            created: Some(settle_proto::common::v1::RangeFilter { gt: Some(settle_platform::time::now_unix() + 100), ..Default::default() }),
            ..Default::default()
        })
        .await;
        assert!(future.data.is_empty());
        // Lines of a note, and another account sees none of it.
        let lines = app.notes.clone().list_credit_note_lines(authorized(cn::ListCreditNoteLinesRequest { id: made[0].id.clone(), ..Default::default() })).await.unwrap().into_inner();
        assert_eq!(lines.data, made[0].lines.clone().unwrap().data);
        let foreign = app.notes.clone().get_credit_note(settle_testkit::with_key(cn::GetCreditNoteRequest { id: made[0].id.clone() }, settle_testkit::OTHER_API_KEY)).await.unwrap_err();
        assert_eq!(foreign.code(), Code::NotFound);
        let bad = app.notes.clone().list_credit_notes(authorized(cn::ListCreditNotesRequest { invoice: Some("pi_1".into()), ..Default::default() })).await.unwrap_err();
        assert_eq!(reason(&bad), "parameter_invalid");
    };
}
