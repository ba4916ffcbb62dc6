//! Preview and PreviewLines: the note Create would issue, computed the same way, changing nothing.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::creditnotes::v1 as cn;
use settle_testkit::authorized;

use crate::helpers::{Line, amount, credit_quantity, note, spawn, units};

backend_tests! {
    a_preview_shows_the_note_with_its_taxes_and_changes_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, lines) = app
            .open_invoice_with("cus_preview", &[Line { unit_amount: 1_000, quantity: 3, tax: 300 }, amount(500)], Some(700))
            .await;
        assert_eq!(invoice.total, 3_000 + 300 + 500 + 700);
        let before = app.snapshot(&invoice.id, "cus_preview").await;

        let request = cn::CreateCreditNoteRequest {
            lines: vec![credit_quantity(&lines[0].id, 1)],
            shipping_cost: Some(cn::CreditNoteShippingCostParams {
                shipping_rate: invoice.shipping_cost.as_ref().and_then(|s| s.shipping_rate.clone()),
            }),
            memo: Some("Sorry".into()),
            metadata: [("order".to_owned(), "42".to_owned())].into(),
            reason: Some(cn::CreditNoteReason::OrderChange as i32),
            ..note(&invoice.id, 1_000 + 100 + 700)
        };
        let preview = app.preview(request.clone()).await.unwrap();
        println!("preview: total {} pre {} post {} type {}", preview.total, preview.pre_payment_amount, preview.post_payment_amount, preview.r#type);
        assert_eq!(preview.object, "credit_note");
        assert_eq!((preview.subtotal, preview.total, preview.amount, preview.amount_shipping), (1_000, 1_800, 1_800, 700));
        assert_eq!((preview.subtotal_excluding_tax, preview.total_excluding_tax), (Some(1_000), Some(1_700)));
        assert_eq!((preview.pre_payment_amount, preview.post_payment_amount), (1_800, 0));
        assert_eq!(preview.r#type, cn::CreditNoteType::PrePayment as i32);
        assert_eq!(preview.status, cn::CreditNoteStatus::Issued as i32);
        assert_eq!(preview.number, format!("{}-CN-01", invoice.number.clone().unwrap()));
        assert_eq!((preview.customer.as_str(), preview.currency.as_str()), ("cus_preview", "usd"));
        assert_eq!(preview.total_taxes.len(), 1);
        assert_eq!(preview.total_taxes[0].amount, 100);
        let shown = preview.lines.clone().unwrap();
        assert_eq!((shown.data.len(), shown.url.as_str()), (1, "/v1/credit_notes/preview/lines"));
        let line = &shown.data[0];
        assert_eq!((line.amount, line.quantity, line.unit_amount), (1_000, Some(1), Some(1_000)));
        assert_eq!(line.invoice_line_item.as_deref(), Some(lines[0].id.as_str()));
        assert_eq!(line.taxes[0].amount, 100);
        assert_eq!(preview.shipping_cost.as_ref().unwrap().amount_total, 700);
        assert_eq!(preview.memo.as_deref(), Some("Sorry"));

        // The same preview again is the same note; nothing anywhere changed.
        let again = app.preview(request).await.unwrap();
        assert_eq!(again.lines, preview.lines);
        assert_eq!(app.snapshot(&invoice.id, "cus_preview").await, before);
    };

    preview_lines_page_through_the_previewed_lines => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, _) = app.open_invoice("cus_lines", &[units(100, 50)]).await;
        let custom = |i: i64| cn::CreditNoteLineParams {
            r#type: cn::CreditNoteLineItemType::CustomLineItem as i32,
            unit_amount: Some(10 + i),
            description: Some(format!("Goodwill {i}")),
            ..Default::default()
        };
        let request = cn::PreviewCreditNoteLinesRequest {
            invoice: invoice.id.clone(),
            lines: (0..12).map(custom).collect(),
            limit: Some(5),
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = app
                .notes
                .clone()
                .preview_credit_note_lines(authorized(cn::PreviewCreditNoteLinesRequest { starting_after: after.clone(), ..request.clone() }))
                .await
                .unwrap()
                .into_inner();
            seen.extend(page.data.iter().map(|l| l.description.clone().unwrap()));
            after = page.data.last().map(|l| l.id.clone());
            if !page.has_more {
                break;
            }
        }
        println!("paged {} preview lines", seen.len());
        assert_eq!(seen, (0..12).map(|i| format!("Goodwill {i}")).collect::<Vec<_>>());
        // The embedded list holds the first ten.
        let preview = app.notes.clone().preview_credit_note(authorized(cn::PreviewCreditNoteRequest {
            invoice: invoice.id.clone(),
            lines: (0..12).map(custom).collect(),
            ..Default::default()
        })).await.unwrap().into_inner();
        let embedded = preview.lines.unwrap();
        assert_eq!((embedded.data.len(), embedded.has_more), (10, true));
        assert_eq!(preview.total, (0..12).map(|i| 10 + i).sum::<i64>());
    };
}

backend_tests! {
    refunds_consider_at_most_a_hundred_invoice_payments => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, _) = app.open_invoice("cus_many", &[amount(10_100)]).await;
        // Finalizing it gave the invoice its open default payment: with 99 more it is at the cap.
        assert_eq!(app.payments_of(&invoice.id).await.len(), 1);
        for _ in 0..99 {
            app.pay_with_intent(&invoice.id, "cus_many", 100).await;
        }
        let mut request = note(&invoice.id, 300);
        request.refund_amount = Some(100);
        let preview = app.preview(request).await.expect("a hundred payments are considered");
        assert_eq!((preview.pre_payment_amount, preview.post_payment_amount), (200, 100));

        // One more and the invoice is over the cap: refused, clearly, by preview and create alike.
        app.pay_with_intent(&invoice.id, "cus_many", 100).await;
        let mut request = note(&invoice.id, 100);
        request.refund_amount = Some(100);
        for refused in [app.preview(request.clone()).await.unwrap_err(), app.create(request).await.unwrap_err()] {
            assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
            assert_eq!(settle_testkit::reason(&refused), "state_unsupported");
            assert!(refused.message().contains("more than 100"), "{}", refused.message());
        }
        assert!(app.notes_of(&invoice.id).await.is_empty());
        assert!(app.all_refunds().await.is_empty());
    };
}
