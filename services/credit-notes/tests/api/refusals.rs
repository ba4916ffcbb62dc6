//! Bad input: every refusal is precise (code, reason, field), Preview refuses exactly like Create,
//! and nothing changes in any of the three stores.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::creditnotes::v1 as cn;
use settle_proto::settle::invoices::v1 as inv;
use settle_testkit::{OTHER_API_KEY, authorized, reason, violated_fields, with_key};
use tonic::Code;

use crate::helpers::{
    TestApp, credit_amount, credit_quantity, link_record_refund, link_refund, note, spawn, units,
};

/// Create and Preview both refuse `request` with `code`, `reason` and (when given) a violation of
/// `field`; the stores are as they were.
async fn refused(
    app: &TestApp,
    invoice: &str,
    customer: &str,
    request: cn::CreateCreditNoteRequest,
    code: Code,
    why: &str,
    field: Option<&str>,
) {
    let before = app.snapshot(invoice, customer).await;
    let preview = app.preview(request.clone()).await.unwrap_err();
    let create = app.create(request).await.unwrap_err();
    for status in [&preview, &create] {
        assert_eq!((status.code(), reason(status).as_str()), (code, why), "{}", status.message());
        if let Some(field) = field {
            assert!(
                violated_fields(status).iter().any(|f| f == field),
                "{field} not in {:?}",
                violated_fields(status)
            );
        }
    }
    assert_eq!(preview.message(), create.message());
    println!("refused {why}: {}", create.message());
    assert_eq!(app.snapshot(invoice, customer).await, before);
}

backend_tests! {
    amounts_that_do_not_add_up_are_refused => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, lines) = app.open_invoice("cus_sum", &[units(1_000, 2)]).await;
        // `amount` is not the lines' total.
        let mismatch = cn::CreateCreditNoteRequest { lines: vec![credit_quantity(&lines[0].id, 1)], ..note(&invoice.id, 999) };
        refused(&app, &invoice.id, "cus_sum", mismatch, Code::InvalidArgument, "credit_note_amounts_mismatch", Some("amount")).await;
        // Nothing is paid: there is no post-payment part for a refund or credit to settle.
        let settled = cn::CreateCreditNoteRequest { credit_amount: Some(500), ..note(&invoice.id, 500) };
        refused(&app, &invoice.id, "cus_sum", settled, Code::InvalidArgument, "credit_note_amounts_mismatch", Some("credit_amount")).await;
        // Paid: the post-payment part must be settled exactly.
        app.pay_with_intent(&invoice.id, "cus_sum", 2_000).await;
        let unsettled = note(&invoice.id, 500);
        refused(&app, &invoice.id, "cus_sum", unsettled, Code::InvalidArgument, "credit_note_amounts_mismatch", Some("refund_amount")).await;
        let over = cn::CreateCreditNoteRequest { credit_amount: Some(300), out_of_band_amount: Some(300), ..note(&invoice.id, 500) };
        refused(&app, &invoice.id, "cus_sum", over, Code::InvalidArgument, "credit_note_amounts_mismatch", None).await;
    };

    lines_of_another_invoice_and_over_crediting_are_refused => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, lines) = app.open_invoice("cus_lines", &[units(1_000, 3), units(200, 1)]).await;
        let (_, others) = app.open_invoice("cus_lines", &[units(700, 1)]).await;
        let foreign = cn::CreateCreditNoteRequest { amount: None, lines: vec![credit_quantity(&others[0].id, 1)], ..note(&invoice.id, 1) };
        refused(&app, &invoice.id, "cus_lines", foreign, Code::InvalidArgument, "parameter_invalid", Some("lines[0][invoice_line_item]")).await;
        let unknown = cn::CreateCreditNoteRequest { amount: None, lines: vec![credit_quantity("il_nope", 1)], ..note(&invoice.id, 1) };
        refused(&app, &invoice.id, "cus_lines", unknown, Code::InvalidArgument, "parameter_invalid", Some("lines[0][invoice_line_item]")).await;
        let units_over = cn::CreateCreditNoteRequest { amount: None, lines: vec![credit_quantity(&lines[0].id, 4)], ..note(&invoice.id, 1) };
        refused(&app, &invoice.id, "cus_lines", units_over, Code::InvalidArgument, "credit_note_exceeds_invoice", Some("lines[0][quantity]")).await;
        let amount_over = cn::CreateCreditNoteRequest { amount: None, lines: vec![credit_amount(&lines[1].id, 201)], ..note(&invoice.id, 1) };
        refused(&app, &invoice.id, "cus_lines", amount_over, Code::InvalidArgument, "credit_note_exceeds_invoice", Some("lines[0][amount]")).await;
        let twice = cn::CreateCreditNoteRequest {
            amount: None,
            lines: vec![credit_amount(&lines[1].id, 150), credit_amount(&lines[1].id, 100)],
            ..note(&invoice.id, 1)
        };
        refused(&app, &invoice.id, "cus_lines", twice, Code::InvalidArgument, "credit_note_exceeds_invoice", Some("lines[1][amount]")).await;
        let whole = note(&invoice.id, invoice.total + 1);
        refused(&app, &invoice.id, "cus_lines", whole, Code::InvalidArgument, "credit_note_exceeds_invoice", Some("amount")).await;
        let no_shipping = cn::CreateCreditNoteRequest {
            amount: None,
            shipping_cost: Some(cn::CreditNoteShippingCostParams { shipping_rate: Some("shr_123".into()) }),
            ..note(&invoice.id, 1)
        };
        refused(&app, &invoice.id, "cus_lines", no_shipping, Code::InvalidArgument, "parameter_invalid", Some("shipping_cost[shipping_rate]")).await;
    };

    refunds_larger_than_refundable_are_refused => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let (invoice, _) = app.open_invoice("cus_refund", &[units(1_000, 5)]).await;
        let intent = app.pay_with_intent(&invoice.id, "cus_refund", 3_000).await;
        let record = app.pay_with_record(&invoice.id, "cus_refund", 2_000).await;
        let refund = app.refund(&intent.id, 1_000).await;
        app.report_refund(&record.id, "chk-1", 500).await;
        // More than the refund refunded.
        let linked = cn::CreateCreditNoteRequest { refunds: vec![link_refund(&refund.id, Some(1_001))], ..note(&invoice.id, 1_001) };
        refused(&app, &invoice.id, "cus_refund", linked, Code::InvalidArgument, "refund_exceeds_refundable", Some("refunds[0][amount_refunded]")).await;
        let reported = cn::CreateCreditNoteRequest { refunds: vec![link_record_refund(&record.id, "chk-1", Some(501))], ..note(&invoice.id, 501) };
        refused(&app, &invoice.id, "cus_refund", reported, Code::InvalidArgument, "refund_exceeds_refundable", Some("refunds[0][amount_refunded]")).await;
        // A new refund larger than what any one payment can still refund (3000 − 1000 on the intent;
        // the record cannot be refunded through settle).
        let new = cn::CreateCreditNoteRequest { refund_amount: Some(2_001), ..note(&invoice.id, 2_001) };
        refused(&app, &invoice.id, "cus_refund", new, Code::InvalidArgument, "refund_exceeds_refundable", Some("refund_amount")).await;
        // Unknown refunds, records and refund groups.
        let missing = cn::CreateCreditNoteRequest { refunds: vec![link_refund("re_nope", None)], ..note(&invoice.id, 100) };
        refused(&app, &invoice.id, "cus_refund", missing, Code::NotFound, "resource_missing", Some("refunds[0][refund]")).await;
        let group = cn::CreateCreditNoteRequest { refunds: vec![link_record_refund(&record.id, "chk-9", None)], ..note(&invoice.id, 100) };
        refused(&app, &invoice.id, "cus_refund", group, Code::NotFound, "resource_missing", Some("refunds[0][payment_record_refund][refund_group]")).await;
        // A refund of a payment of another invoice.
        let (other, _) = app.open_invoice("cus_refund", &[units(1_000, 1)]).await;
        let elsewhere = app.pay_with_intent(&other.id, "cus_refund", 1_000).await;
        let foreign = app.refund(&elsewhere.id, 100).await;
        let foreign = cn::CreateCreditNoteRequest { refunds: vec![link_refund(&foreign.id, None)], ..note(&invoice.id, 100) };
        refused(&app, &invoice.id, "cus_refund", foreign, Code::FailedPrecondition, "payment_not_attached", Some("refunds[0][refund]")).await;
    };

    draft_void_unknown_and_foreign_invoices_are_refused => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let draft = app
            .invoices
            .clone()
            .create_invoice(authorized(inv::CreateInvoiceRequest {
                customer: Some("cus_state".into()),
                currency: Some("usd".into()),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        refused(&app, &draft.id, "cus_state", note(&draft.id, 100), Code::FailedPrecondition, "state_unsupported", Some("invoice")).await;
        let (voided, _) = app.open_invoice("cus_state", &[units(500, 1)]).await;
        app.invoices.clone().void_invoice(authorized(inv::VoidInvoiceRequest { id: voided.id.clone(), ..Default::default() })).await.unwrap();
        refused(&app, &voided.id, "cus_state", note(&voided.id, 100), Code::FailedPrecondition, "state_unsupported", Some("invoice")).await;
        let missing = app.create(note("in_nope", 100)).await.unwrap_err();
        assert_eq!((missing.code(), reason(&missing).as_str()), (Code::NotFound, "resource_missing"));
        // Another account's invoice does not exist for this one.
        let (open, _) = app.open_invoice("cus_state", &[units(500, 1)]).await;
        let foreign = app
            .notes
            .clone()
            .create_credit_note(with_key(note(&open.id, 100), OTHER_API_KEY))
            .await
            .unwrap_err();
        assert_eq!((foreign.code(), reason(&foreign).as_str()), (Code::NotFound, "resource_missing"));
        // Malformed parameters never reach the other services.
        let bad = cn::CreateCreditNoteRequest { amount: Some(0), ..note(&open.id, 0) };
        refused(&app, &open.id, "cus_state", bad, Code::InvalidArgument, "parameter_invalid_integer", Some("amount")).await;
        // Unknown notes.
        let unknown = app.get_note("cn_nope").await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        let unknown = app.void("cn_nope").await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
    };
}
