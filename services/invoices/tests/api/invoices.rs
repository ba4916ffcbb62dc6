//! InvoiceService over gRPC: drafts, updates, finalization with numbers and the customer balance,
//! void, mark uncollectible, pay out of band, delete, list, search, tenancy, bad input, idempotency
//! and the numbering race.

use std::collections::BTreeMap;

use settle_invoices::store::invoice_payments;
use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::InvoiceStatus as S;
use settle_testkit::{OTHER_API_KEY, authorized, idempotent, reason, violated_fields, with_key};
use tonic::Code;

use crate::helpers::{TestApp, draft, item, line, payload, previous_keys, previous_number, spawn, status};

fn update(id: &str) -> pb::UpdateInvoiceRequest {
    pb::UpdateInvoiceRequest { id: id.to_owned(), ..Default::default() }
}

fn shipping(amount: i64, currency: &str) -> pb::InvoiceShippingCostParams {
    pb::InvoiceShippingCostParams {
        shipping_rate_data: Some(pb::InvoiceShippingRateDataParams {
            display_name: "Ground".into(),
            fixed_amount: Some(pb::ShippingRateFixedAmountParams {
                amount,
                currency: currency.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn void(app: &TestApp, id: &str) -> Result<pb::Invoice, tonic::Status> {
    app.invoices
        .clone()
        .void_invoice(authorized(pb::VoidInvoiceRequest { id: id.to_owned(), expand: Vec::new() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn pay_out_of_band(app: &TestApp, id: &str) -> Result<pb::Invoice, tonic::Status> {
    app.invoices
        .clone()
        .pay_invoice(authorized(pb::PayInvoiceRequest {
            id: id.to_owned(),
            paid_out_of_band: Some(true),
            ..Default::default()
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// Records an invoice payment directly in the store, as the lead's attach saga would.
async fn record_invoice_payment(
    app: &TestApp,
    invoice: &pb::Invoice,
    status: pb::InvoicePaymentStatus,
) -> String {
    let db = app.db().await;
    let id = settle_platform::ids::IdPrefix::InvoicePayment.generate();
    let doc = pb::InvoicePayment {
        id: id.clone(),
        invoice: invoice.id.clone(),
        currency: invoice.currency.clone(),
        amount_requested: 100,
        status: status as i32,
        object: "invoice_payment".into(),
        payment: Some(pb::InvoicePaymentAssociatedPayment {
            r#type: pb::InvoicePaymentPaymentType::PaymentIntent as i32,
            payment_intent: Some(settle_platform::ids::IdPrefix::PaymentIntent.generate()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut tx = db.begin().await.unwrap();
    invoice_payments::insert(
        &mut tx,
        &settle_platform::Scope::test(DEV_ACCOUNT),
        &settle_platform::ids::IdPrefix::Saga.generate(),
        &doc,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    db.close().await;
    id
}

backend_tests! {
    create_returns_a_stripe_shaped_draft => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = draft("cus_a");
        request.description = Some("Consulting".into());
        request.metadata.insert("order".into(), "42".into());
        request.metadata.insert("empty".into(), String::new());
        let invoice = app.create(request).await;
        assert!(invoice.id.starts_with("in_"), "{}", invoice.id);
        assert_eq!(invoice.object, "invoice");
        assert_eq!(status(&invoice), S::Draft);
        assert_eq!((invoice.customer.as_str(), invoice.currency.as_str()), ("cus_a", "usd"));
        assert_eq!((invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_remaining), (0, 0, 0, 0));
        assert_eq!((invoice.number.clone(), invoice.ending_balance), (None, None));
        assert_eq!(invoice.collection_method, pb::InvoiceCollectionMethod::ChargeAutomatically as i32);
        assert_eq!(invoice.billing_reason, Some(pb::InvoiceBillingReason::Manual as i32));
        assert_eq!(invoice.issuer.as_ref().unwrap().r#type, pb::ConnectAccountReferenceType::Self_ as i32);
        assert!(!invoice.auto_advance);
        assert_eq!(invoice.metadata, BTreeMap::from([("order".to_owned(), "42".to_owned())]));
        assert_eq!((invoice.period_start, invoice.period_end), (invoice.created, invoice.created));
        assert_eq!(invoice.webhooks_delivered_at, Some(invoice.created));
        let lines = invoice.lines.clone().unwrap();
        assert_eq!((lines.object.as_str(), lines.data.len(), lines.has_more), ("list", 0, false));
        assert_eq!(lines.url, format!("/v1/invoices/{}/lines", invoice.id));
        assert_eq!(app.get(&invoice.id).await, invoice);
        let created = app.events_of_type("invoice.created", 1).await;
        assert_eq!(payload::<pb::Invoice>(&created[0]), invoice);
    };

    a_drafts_starting_balance_is_the_customers_current_balance => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.draft_with("cus_a", &[1_000]).await;
        assert_eq!((invoice.starting_balance, invoice.amount_due), (0, 1_000));
        app.adjust("cus_a", -300).await;
        let read = app.get(&invoice.id).await;
        assert_eq!((read.starting_balance, read.amount_due, read.ending_balance), (-300, 1_000, None));
    };

    create_with_pending_items_pulls_them_in_as_lines => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let first = app.create_item(item("cus_a", 1_000)).await;
        let second = app.create_item(item("cus_a", -250)).await;
        let euros = app.create_item(pb::CreateInvoiceItemRequest { currency: Some("eur".into()), ..item("cus_a", 700) }).await;
        let other = app.create_item(item("cus_b", 900)).await;
        let mut request = draft("cus_a");
        request.pending_invoice_items_behavior = Some(pb::InvoicePendingInvoiceItemsBehavior::Include as i32);
        let invoice = app.create(request.clone()).await;
        let lines = invoice.lines.clone().unwrap().data;
        let items: Vec<&str> = lines.iter().map(|l| l.parent.as_ref().unwrap().invoice_item_details.as_ref().unwrap().invoice_item.as_str()).collect();
        assert_eq!(items, [first.id.as_str(), second.id.as_str()]);
        assert_eq!(lines.iter().map(|l| l.amount).collect::<Vec<_>>(), [1_000, -250]);
        assert_eq!((invoice.subtotal, invoice.total, invoice.amount_due), (750, 750, 750));
        assert_eq!(app.get_item(&first.id).await.unwrap().invoice.as_deref(), Some(invoice.id.as_str()));
        assert_eq!(app.get_item(&euros.id).await.unwrap().invoice, None, "another currency stays pending");
        assert_eq!(app.get_item(&other.id).await.unwrap().invoice, None, "another customer's stays pending");

        let nothing_left = app.invoices.clone().create_invoice(authorized(request)).await.unwrap_err();
        assert_eq!(nothing_left.code(), Code::FailedPrecondition);
        assert_eq!(reason(&nothing_left), "invoice_no_customer_line_items");
        assert_eq!(app.all_invoices().await.len(), 1, "the refused create made nothing");
    };

    update_changes_a_draft_and_emits_what_changed => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = draft("cus_a");
        request.metadata.insert("keep".into(), "1".into());
        request.metadata.insert("drop".into(), "2".into());
        let invoice = app.create(request).await;
        let invoice = app.add_lines(&invoice.id, vec![line(1_000)]).await;

        let mut change = update(&invoice.id);
        change.description = Some("Memo".into());
        change.shipping_cost = Some(shipping(500, "usd"));
        change.collection_method = Some(pb::InvoiceCollectionMethod::SendInvoice as i32);
        change.days_until_due = Some(14);
        change.metadata.insert("drop".into(), String::new());
        change.metadata.insert("new".into(), "3".into());
        let updated = app.invoices.clone().update_invoice(authorized(change)).await.unwrap().into_inner();
        assert_eq!(updated.description.as_deref(), Some("Memo"));
        assert_eq!((updated.amount_shipping, updated.subtotal, updated.total, updated.amount_due), (500, 1_000, 1_500, 1_500));
        let cost = updated.shipping_cost.clone().unwrap();
        assert_eq!((cost.amount_subtotal, cost.amount_total, cost.amount_tax), (500, 500, 0));
        assert!(cost.shipping_rate.unwrap().starts_with("shr_"));
        assert_eq!(updated.due_date, Some(invoice.created + 14 * 86_400));
        assert_eq!(updated.metadata.keys().collect::<Vec<_>>(), ["keep", "new"]);

        // add_lines wrote one invoice.updated; this update the second.
        let events = app.events_of_type("invoice.updated", 2).await;
        assert_eq!(payload::<pb::Invoice>(&events[1]), updated);
        let keys = previous_keys(&events[1]);
        for key in ["amount_due", "amount_shipping", "collection_method", "description", "due_date", "metadata", "shipping_cost", "total"] {
            assert!(keys.contains(&key.to_owned()), "{key} missing from {keys:?}");
        }
        assert!(!keys.contains(&"subtotal".to_owned()), "unchanged fields are not listed: {keys:?}");
        assert_eq!(previous_number(&events[1], "total"), 1_000.0);

        // Unsetting shipping takes it off the total; an update that changes nothing writes no event.
        let mut unset = update(&invoice.id);
        unset.shipping_cost = Some(pb::InvoiceShippingCostParams::default());
        let unset = app.invoices.clone().update_invoice(authorized(unset)).await.unwrap().into_inner();
        assert_eq!((unset.amount_shipping, unset.total, unset.shipping_cost.clone()), (0, 1_000, None));
        let same = app.invoices.clone().update_invoice(authorized(update(&invoice.id))).await.unwrap().into_inner();
        assert_eq!(same, unset);
        assert_eq!(app.count_events("invoice.updated").await, 3);
    };

    a_finalized_invoice_takes_only_what_stripe_allows => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.draft_with("cus_a", &[1_000]).await;
        let open = app.finalize(&invoice.id).await;
        for change in [
            pb::UpdateInvoiceRequest { number: Some("X-1".into()), ..update(&open.id) },
            pb::UpdateInvoiceRequest { shipping_cost: Some(shipping(100, "usd")), ..update(&open.id) },
            pb::UpdateInvoiceRequest { collection_method: Some(pb::InvoiceCollectionMethod::SendInvoice as i32), ..update(&open.id) },
        ] {
            let error = app.invoices.clone().update_invoice(authorized(change)).await.unwrap_err();
            assert_eq!((error.code(), reason(&error).as_str()), (Code::FailedPrecondition, "invoice_not_editable"));
        }
        let memo = app.invoices.clone().update_invoice(authorized(pb::UpdateInvoiceRequest {
            description: Some("Thanks".into()), footer: Some("Footer".into()), ..update(&open.id)
        })).await.unwrap().into_inner();
        assert_eq!((memo.description.as_deref(), memo.footer.as_deref(), memo.total), (Some("Thanks"), Some("Footer"), 1_000));

        let voided = void(&app, &open.id).await.unwrap();
        let refused = app.invoices.clone().update_invoice(authorized(pb::UpdateInvoiceRequest {
            description: Some("Again".into()), ..update(&open.id)
        })).await.unwrap_err();
        assert_eq!(reason(&refused), "invoice_not_editable");
        assert_eq!(violated_fields(&refused), ["description"]);
        let mut tag = update(&open.id);
        tag.metadata.insert("archived".into(), "yes".into());
        let tagged = app.invoices.clone().update_invoice(authorized(tag)).await.unwrap().into_inner();
        assert_eq!(tagged.metadata["archived"], "yes");
        assert_eq!(status(&tagged), S::Void);
        assert_eq!(tagged.total, voided.total);
    };

    finalize_numbers_the_invoice_and_applies_the_customers_balance => |database: TestDatabase| async move {
        let app = spawn(database).await;
        app.adjust("cus_a", -300).await;
        let invoice = app.draft_with("cus_a", &[1_000]).await;
        let open = app.finalize(&invoice.id).await;
        assert_eq!(status(&open), S::Open);
        let number = open.number.clone().unwrap();
        let (prefix, sequence) = number.split_once('-').unwrap();
        assert_eq!((prefix.len(), sequence), (8, "0001"));
        assert!(prefix.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()), "{number}");
        assert_eq!((open.starting_balance, open.ending_balance), (-300, Some(0)));
        assert_eq!((open.total, open.amount_due, open.amount_remaining, open.amount_paid), (1_000, 700, 700, 0));
        let finalized_at = open.status_transitions.unwrap().finalized_at.unwrap();
        assert_eq!(open.effective_at, Some(finalized_at));
        assert_eq!(app.balance("cus_a").await, 0);
        let ledger = app.transactions("cus_a").await;
        assert_eq!(ledger.len(), 2);
        assert_eq!((ledger[0].amount, ledger[0].ending_balance), (300, 0));
        assert_eq!(ledger[0].r#type, pb::CustomerBalanceTransactionType::AppliedToInvoice as i32);
        assert_eq!(ledger[0].invoice.as_deref(), Some(open.id.as_str()));
        let finalized = app.events_of_type("invoice.finalized", 1).await;
        assert_eq!(payload::<pb::Invoice>(&finalized[0]), open);
        assert_eq!(payload::<pb::CustomerBalanceTransaction>(&app.events_of_type("customer_balance_transaction.created", 2).await[1]), ledger[0]);

        // The customer's next invoice takes the next number; another customer has its own prefix.
        let second = app.finalize(&app.draft_with("cus_a", &[500]).await.id).await;
        assert_eq!(second.number.unwrap(), format!("{prefix}-0002"));
        assert_eq!((second.starting_balance, second.amount_due), (0, 500));
        let other = app.finalize(&app.draft_with("cus_b", &[500]).await.id).await;
        assert!(other.number.unwrap().ends_with("-0001"));

        let again = app.invoices.clone().finalize_invoice(authorized(pb::FinalizeInvoiceRequest { id: open.id.clone(), ..Default::default() })).await.unwrap_err();
        assert_eq!((again.code(), reason(&again).as_str()), (Code::FailedPrecondition, "state_unsupported"));
    };

    a_credit_covering_the_total_pays_the_invoice_at_finalization => |database: TestDatabase| async move {
        let app = spawn(database).await;
        app.adjust("cus_a", -5_000).await;
        let invoice = app.draft_with("cus_a", &[1_000]).await;
        let paid = app.finalize(&invoice.id).await;
        assert_eq!(status(&paid), S::Paid);
        assert_eq!((paid.starting_balance, paid.ending_balance, paid.amount_due, paid.amount_remaining), (-5_000, Some(-4_000), 0, 0));
        let transitions = paid.status_transitions.unwrap();
        assert_eq!(transitions.paid_at, transitions.finalized_at);
        assert_eq!(app.balance("cus_a").await, -4_000);
        assert_eq!(payload::<pb::Invoice>(&app.events_of_type("invoice.paid", 1).await[0]), paid);

        // A negative invoice credits the customer; an owed balance is billed.
        let credit = app.finalize(&app.draft_with("cus_b", &[-400]).await.id).await;
        assert_eq!((status(&credit), credit.amount_due, credit.ending_balance), (S::Paid, 0, Some(-400)));
        assert_eq!(app.balance("cus_b").await, -400);
        app.adjust("cus_c", 250).await;
        let owed = app.finalize(&app.draft_with("cus_c", &[1_000]).await.id).await;
        assert_eq!((owed.amount_due, owed.ending_balance, app.balance("cus_c").await), (1_250, Some(0), 0));
        // An empty invoice is paid at once too.
        let empty = app.finalize(&app.draft_with("cus_d", &[]).await.id).await;
        assert_eq!((status(&empty), empty.amount_due), (S::Paid, 0));
    };

    send_invoice_invoices_get_a_due_date_at_finalization => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = draft("cus_a");
        request.collection_method = Some(pb::InvoiceCollectionMethod::SendInvoice as i32);
        let invoice = app.create(request).await;
        assert_eq!(invoice.due_date, None);
        let open = app.finalize(&app.add_lines(&invoice.id, vec![line(100)]).await.id).await;
        let finalized_at = open.status_transitions.unwrap().finalized_at.unwrap();
        assert_eq!(open.due_date, Some(finalized_at + 30 * 86_400));
    };

    void_returns_the_balance_the_invoice_applied => |database: TestDatabase| async move {
        let app = spawn(database).await;
        app.adjust("cus_a", -300).await;
        let open = app.finalize(&app.draft_with("cus_a", &[1_000]).await.id).await;
        assert_eq!(app.balance("cus_a").await, 0);
        let voided = void(&app, &open.id).await.unwrap();
        assert_eq!(status(&voided), S::Void);
        assert!(voided.status_transitions.unwrap().voided_at.is_some());
        assert_eq!(app.balance("cus_a").await, -300);
        let ledger = app.transactions("cus_a").await;
        assert_eq!((ledger[0].amount, ledger[0].ending_balance), (-300, -300));
        assert_eq!(ledger[0].r#type, pb::CustomerBalanceTransactionType::UnappliedFromInvoice as i32);
        assert_eq!(payload::<pb::Invoice>(&app.events_of_type("invoice.voided", 1).await[0]), voided);

        for target in [voided.id.clone(), app.draft_with("cus_a", &[100]).await.id, app.finalize(&app.draft_with("cus_b", &[0]).await.id).await.id] {
            let refused = void(&app, &target).await.unwrap_err();
            assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "state_unsupported"), "{target}");
        }
        // Payments applied (or pending) keep an invoice from being voided.
        let pending = app.finalize(&app.draft_with("cus_a", &[800]).await.id).await;
        record_invoice_payment(&app, &pending, pb::InvoicePaymentStatus::Open).await;
        let refused = void(&app, &pending.id).await.unwrap_err();
        assert_eq!(reason(&refused), "state_unsupported");
        assert_eq!(status(&app.get(&pending.id).await), S::Open);
    };

    mark_uncollectible_then_pay_out_of_band => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let open = app.finalize(&app.draft_with("cus_a", &[1_000, 500]).await.id).await;
        let mark = |id: String| {
            let mut client = app.invoices.clone();
            async move { client.mark_invoice_uncollectible(authorized(pb::MarkInvoiceUncollectibleRequest { id, expand: Vec::new() })).await }
        };
        let bad_debt = mark(open.id.clone()).await.unwrap().into_inner();
        assert_eq!(status(&bad_debt), S::Uncollectible);
        assert!(bad_debt.status_transitions.unwrap().marked_uncollectible_at.is_some());
        assert_eq!(reason(&mark(open.id.clone()).await.unwrap_err()), "state_unsupported");
        assert_eq!(payload::<pb::Invoice>(&app.events_of_type("invoice.marked_uncollectible", 1).await[0]), bad_debt);

        let paid = pay_out_of_band(&app, &open.id).await.unwrap();
        assert_eq!(status(&paid), S::Paid);
        assert_eq!((paid.amount_paid, paid.amount_paid_off_stripe, paid.amount_remaining, paid.amount_overpaid), (1_500, 1_500, 0, 0));
        assert!(paid.status_transitions.unwrap().paid_at.is_some());
        assert_eq!(payload::<pb::Invoice>(&app.events_of_type("invoice.paid", 1).await[0]), paid);
        let again = pay_out_of_band(&app, &open.id).await.unwrap_err();
        assert_eq!((again.code(), reason(&again).as_str()), (Code::FailedPrecondition, "invoice_not_open"));

        // A draft is finalized first, in the same call.
        let draft = app.draft_with("cus_a", &[700]).await;
        let paid = pay_out_of_band(&app, &draft.id).await.unwrap();
        assert_eq!((status(&paid), paid.amount_paid_off_stripe), (S::Paid, 700));
        assert!(paid.number.unwrap().ends_with("-0002"));
        let mixed = app.invoices.clone().pay_invoice(authorized(pb::PayInvoiceRequest {
            id: app.finalize(&app.draft_with("cus_a", &[300]).await.id).await.id,
            paid_out_of_band: Some(true),
            payment_method: Some("pm_card_visa".into()),
            ..Default::default()
        })).await.unwrap_err();
        assert_eq!(reason(&mixed), "parameters_exclusive");
    };

    delete_removes_a_draft_with_its_items => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let pending = app.create_item(item("cus_a", 400)).await;
        let mut request = draft("cus_a");
        request.pending_invoice_items_behavior = Some(pb::InvoicePendingInvoiceItemsBehavior::Include as i32);
        let invoice = app.create(request).await;
        let invoice = app.add_lines(&invoice.id, vec![line(600)]).await;
        let added = invoice.lines.clone().unwrap().data[1].parent.clone().unwrap().invoice_item_details.unwrap().invoice_item;
        let deleted = app.invoices.clone().delete_invoice(authorized(pb::DeleteInvoiceRequest { id: invoice.id.clone() })).await.unwrap().into_inner();
        assert_eq!(deleted, pb::DeletedInvoice { deleted: true, id: invoice.id.clone(), object: "invoice".into() });
        let gone = app.invoices.clone().get_invoice(authorized(pb::GetInvoiceRequest { id: invoice.id.clone(), expand: Vec::new() })).await.unwrap_err();
        assert_eq!((gone.code(), reason(&gone).as_str()), (Code::NotFound, "resource_missing"));
        for id in [&pending.id, &added] {
            assert_eq!(app.get_item(id).await.unwrap_err().code(), Code::NotFound);
        }
        assert_eq!(payload::<pb::Invoice>(&app.events_of_type("invoice.deleted", 1).await[0]), invoice);
        assert_eq!(app.events_of_type("invoiceitem.deleted", 2).await.len(), 2);

        let open = app.finalize(&app.draft_with("cus_a", &[100]).await.id).await;
        let refused = app.invoices.clone().delete_invoice(authorized(pb::DeleteInvoiceRequest { id: open.id.clone() })).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "state_unsupported"));
    };

    list_filters_and_pages_newest_first => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut made = Vec::new();
        for i in 0..7 {
            made.push(app.draft_with(if i % 2 == 0 { "cus_a" } else { "cus_b" }, &[100 * (i + 1)]).await);
        }
        for invoice in &made[..3] {
            app.finalize(&invoice.id).await;
        }
        let mut send = draft("cus_a");
        send.collection_method = Some(pb::InvoiceCollectionMethod::SendInvoice as i32);
        send.due_date = Some(settle_platform::time::now_unix() + 86_400);
        made.push(app.create(send).await);
        let list = |request: pb::ListInvoicesRequest| {
            let mut client = app.invoices.clone();
            async move { client.list_invoices(authorized(request)).await.map(tonic::Response::into_inner) }
        };
        let ids = |page: &pb::ListInvoicesResponse| page.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        let newest_first: Vec<String> = made.iter().rev().map(|i| i.id.clone()).collect();

        let first = list(pb::ListInvoicesRequest { limit: Some(3), ..Default::default() }).await.unwrap();
        assert_eq!((ids(&first), first.has_more), (newest_first[..3].to_vec(), true));
        assert_eq!(first.data[1].lines.as_ref().unwrap().data.len(), 1, "listed invoices embed their lines");
        let next = list(pb::ListInvoicesRequest { limit: Some(3), starting_after: Some(newest_first[2].clone()), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&next), newest_first[3..6].to_vec());
        let back = list(pb::ListInvoicesRequest { limit: Some(2), ending_before: Some(newest_first[3].clone()), ..Default::default() }).await.unwrap();
        assert_eq!((ids(&back), back.has_more), (newest_first[1..3].to_vec(), true));

        let customer_a = list(pb::ListInvoicesRequest { customer: Some("cus_a".into()), ..Default::default() }).await.unwrap();
        assert_eq!(customer_a.data.len(), 5);
        let open = list(pb::ListInvoicesRequest { status: Some(S::Open as i32), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&open), made[..3].iter().rev().map(|i| i.id.clone()).collect::<Vec<_>>());
        let send_only = list(pb::ListInvoicesRequest { collection_method: Some(pb::InvoiceCollectionMethod::SendInvoice as i32), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&send_only), [made[7].id.as_str()]);
        let due = list(pb::ListInvoicesRequest { due_date: Some(settle_proto::common::v1::RangeFilter { gt: Some(0), ..Default::default() }), ..Default::default() }).await.unwrap();
        assert_eq!(due.data.len(), 1);
        let created = list(pb::ListInvoicesRequest { created: Some(settle_proto::common::v1::RangeFilter { lt: Some(made[0].created), ..Default::default() }), ..Default::default() }).await.unwrap();
        assert!(created.data.is_empty());
        let expanded = list(pb::ListInvoicesRequest { limit: Some(1), expand: vec!["data.payments".into()], ..Default::default() }).await.unwrap();
        assert_eq!(expanded.data[0].payments.as_ref().unwrap().object, "list");

        for (request, field) in [
            (pb::ListInvoicesRequest { limit: Some(0), ..Default::default() }, "limit"),
            (pb::ListInvoicesRequest { status: Some(42), ..Default::default() }, "status"),
            (pb::ListInvoicesRequest { subscription: Some("sub_1".into()), ..Default::default() }, "subscription"),
            (pb::ListInvoicesRequest { customer: Some("acct_1".into()), ..Default::default() }, "customer"),
            (pb::ListInvoicesRequest { expand: vec!["payments".into()], ..Default::default() }, "expand[0]"),
            (pb::ListInvoicesRequest { starting_after: Some("ii_x".into()), ..Default::default() }, "starting_after"),
        ] {
            let error = list(request).await.unwrap_err();
            assert_eq!((error.code(), violated_fields(&error)), (Code::InvalidArgument, vec![field.to_owned()]));
        }
    };

    search_finds_invoices_by_stripes_fields => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut tagged = draft("cus_a");
        tagged.metadata.insert("project".into(), "apollo".into());
        let a = app.create(tagged).await;
        let a = app.add_lines(&a.id, vec![line(2_500)]).await;
        let a = app.finalize(&a.id).await;
        let b = app.finalize(&app.draft_with("cus_b", &[900]).await.id).await;
        let c = app.draft_with("cus_a", &[100]).await;
        let search = |query: &str, limit: Option<i32>, page: Option<String>| {
            let mut client = app.invoices.clone();
            let request = pb::SearchInvoicesRequest { query: query.to_owned(), limit, page, expand: Vec::new() };
            async move { client.search_invoices(authorized(request)).await.map(tonic::Response::into_inner) }
        };
        let ids = |r: &pb::SearchInvoicesResponse| r.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&search("status:'open' AND customer:'cus_a'", None, None).await.unwrap()), [a.id.as_str()]);
        assert_eq!(ids(&search("total>=1000", None, None).await.unwrap()), [a.id.as_str()]);
        assert_eq!(ids(&search("metadata['project']:'apollo'", None, None).await.unwrap()), [a.id.as_str()]);
        assert_eq!(ids(&search(&format!("number:'{}'", b.number.clone().unwrap()), None, None).await.unwrap()), [b.id.as_str()]);
        assert_eq!(ids(&search("-status:'draft'", None, None).await.unwrap()), [b.id.clone(), a.id.clone()]);
        assert_eq!(ids(&search("status:'draft' OR total<1000", None, None).await.unwrap()), [c.id.clone(), b.id.clone()]);
        let prefix = &a.number.clone().unwrap()[..8];
        assert_eq!(ids(&search(&format!("number~'{prefix}'"), None, None).await.unwrap()), [a.id.as_str()]);
        assert!(search("receipt_number:'R-1'", None, None).await.unwrap().data.is_empty());

        let first = search("currency:'usd'", Some(2), None).await.unwrap();
        assert_eq!((ids(&first), first.has_more, first.total_count), (vec![c.id.clone(), b.id.clone()], true, Some(3)));
        let rest = search("currency:'usd'", Some(2), first.next_page.clone()).await.unwrap();
        assert_eq!((ids(&rest), rest.has_more, rest.next_page), (vec![a.id.clone()], false, None));

        for query in ["color:'red'", "total:'big'", "status:open", "number~'ab'", ""] {
            let error = search(query, None, None).await.unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{query}");
            assert_eq!(violated_fields(&error), ["query"], "{query}");
        }
        assert_eq!(reason(&search("color:'red'", None, None).await.unwrap_err()), "search_query_invalid");
    };

    expand_shows_the_invoices_payments => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let open = app.finalize(&app.draft_with("cus_a", &[1_000]).await.id).await;
        let payment = record_invoice_payment(&app, &open, pb::InvoicePaymentStatus::Open).await;
        let get = |expand: Vec<String>| {
            let mut client = app.invoices.clone();
            let id = open.id.clone();
            async move { client.get_invoice(authorized(pb::GetInvoiceRequest { id, expand })).await.map(tonic::Response::into_inner) }
        };
        let plain = get(Vec::new()).await.unwrap();
        assert_eq!((plain.payments.clone(), plain.confirmation_secret.clone()), (None, None));
        let expanded = get(vec!["payments".into(), "confirmation_secret".into()]).await.unwrap();
        let payments = expanded.payments.clone().unwrap();
        assert_eq!((payments.object.as_str(), payments.data.len(), payments.has_more), ("list", 1, false));
        assert_eq!(payments.data[0].id, payment);
        assert_eq!(payments.url, format!("/v1/invoice_payments?invoice={}", open.id));
        assert_eq!(pb::Invoice { payments: None, ..expanded }, plain, "expansion changes nothing else");
        let error = get(vec!["lines".into()]).await.unwrap_err();
        assert_eq!((error.code(), violated_fields(&error)), (Code::InvalidArgument, vec!["expand[0]".to_owned()]));
    };

    another_accounts_invoices_are_not_found => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mine = app.draft_with("cus_a", &[1_000]).await;
        let line_id = mine.lines.clone().unwrap().data[0].id.clone();
        let mut c = app.invoices.clone();
        let errors = vec![
            c.get_invoice(with_key(pb::GetInvoiceRequest { id: mine.id.clone(), expand: Vec::new() }, OTHER_API_KEY)).await.unwrap_err(),
            c.update_invoice(with_key(pb::UpdateInvoiceRequest { description: Some("x".into()), ..update(&mine.id) }, OTHER_API_KEY)).await.unwrap_err(),
            c.finalize_invoice(with_key(pb::FinalizeInvoiceRequest { id: mine.id.clone(), ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
            c.void_invoice(with_key(pb::VoidInvoiceRequest { id: mine.id.clone(), expand: Vec::new() }, OTHER_API_KEY)).await.unwrap_err(),
            c.delete_invoice(with_key(pb::DeleteInvoiceRequest { id: mine.id.clone() }, OTHER_API_KEY)).await.unwrap_err(),
            c.pay_invoice(with_key(pb::PayInvoiceRequest { id: mine.id.clone(), paid_out_of_band: Some(true), ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
            c.mark_invoice_uncollectible(with_key(pb::MarkInvoiceUncollectibleRequest { id: mine.id.clone(), expand: Vec::new() }, OTHER_API_KEY)).await.unwrap_err(),
            c.add_lines(with_key(pb::AddLinesRequest { id: mine.id.clone(), lines: vec![line(1)], ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
            c.remove_lines(with_key(pb::RemoveLinesRequest { id: mine.id.clone(), lines: vec![pb::InvoiceLineRemoveParams { id: line_id.clone(), behavior: 1 }], ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
            c.list_invoice_lines(with_key(pb::ListInvoiceLinesRequest { id: mine.id.clone(), ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
        ];
        for error in errors {
            assert_eq!((error.code(), reason(&error).as_str()), (Code::NotFound, "resource_missing"), "{error:?}");
        }
        let listed = c.list_invoices(with_key(pb::ListInvoicesRequest::default(), OTHER_API_KEY)).await.unwrap().into_inner();
        assert!(listed.data.is_empty());
        let found = c.search_invoices(with_key(pb::SearchInvoicesRequest { query: "customer:'cus_a'".into(), ..Default::default() }, OTHER_API_KEY)).await.unwrap().into_inner();
        assert_eq!(found.total_count, Some(0));
        assert_eq!(app.get(&mine.id).await, mine, "nothing changed");
    };

    bad_input_names_the_field_and_changes_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let existing = app.draft_with("cus_a", &[1_000]).await;
        let bad_creates = [
            (pb::CreateInvoiceRequest { currency: Some("xyz".into()), ..draft("cus_a") }, "currency", "invalid_currency"),
            (pb::CreateInvoiceRequest { customer: Some("nope".into()), ..draft("cus_a") }, "customer", "parameter_invalid"),
            (pb::CreateInvoiceRequest { currency: None, ..draft("cus_a") }, "currency", "parameter_missing"),
            (pb::CreateInvoiceRequest { days_until_due: Some(30), ..draft("cus_a") }, "days_until_due", "parameter_invalid"),
            (pb::CreateInvoiceRequest { subscription: Some("sub_1".into()), ..draft("cus_a") }, "subscription", "parameter_invalid"),
            (pb::CreateInvoiceRequest { shipping_cost: Some(shipping(100, "eur")), ..draft("cus_a") }, "shipping_cost[shipping_rate_data][fixed_amount][currency]", "currency_mismatch"),
            (pb::CreateInvoiceRequest { statement_descriptor: Some("<bad>".into()), ..draft("cus_a") }, "statement_descriptor", "parameter_invalid"),
            (pb::CreateInvoiceRequest { custom_fields: vec![Default::default(); 5], ..draft("cus_a") }, "custom_fields", "parameter_invalid"),
            (pb::CreateInvoiceRequest { expand: vec!["customer".into()], ..draft("cus_a") }, "expand[0]", "parameter_invalid"),
        ];
        for (request, field, why) in bad_creates {
            let error = app.invoices.clone().create_invoice(authorized(request)).await.unwrap_err();
            assert_eq!((error.code(), violated_fields(&error), reason(&error)), (Code::InvalidArgument, vec![field.to_owned()], why.to_owned()));
        }
        let bad_updates = [
            (pb::UpdateInvoiceRequest { shipping_cost: Some(shipping(100, "eur")), description: Some("changed".into()), ..update(&existing.id) }, "shipping_cost[shipping_rate_data][fixed_amount][currency]"),
            (pb::UpdateInvoiceRequest { default_tax_rates: Some(pb::StringListParams { values: vec!["txr_1".into()] }), ..update(&existing.id) }, "default_tax_rates"),
            (pb::UpdateInvoiceRequest { due_date: Some(1), ..update(&existing.id) }, "due_date"),
            (pb::UpdateInvoiceRequest { number: Some("N".repeat(27)), ..update(&existing.id) }, "number"),
        ];
        for (request, field) in bad_updates {
            let error = app.invoices.clone().update_invoice(authorized(request)).await.unwrap_err();
            assert_eq!((error.code(), violated_fields(&error)), (Code::InvalidArgument, vec![field.to_owned()]));
        }
        // A number another invoice already has.
        let numbered = app.finalize(&app.draft_with("cus_b", &[10]).await.id).await;
        let taken = app.invoices.clone().update_invoice(authorized(pb::UpdateInvoiceRequest { number: numbered.number.clone(), ..update(&existing.id) })).await.unwrap_err();
        assert_eq!(violated_fields(&taken), ["number"]);
        assert_eq!(app.get(&existing.id).await, existing, "the refused updates changed nothing");
        assert_eq!(app.all_invoices().await.len(), 2);
        assert_eq!(app.count_events("invoice.updated").await, 2, "only the two add_lines of the setup");
    };

    mutations_replay_under_an_idempotency_key => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut client = app.invoices.clone();
        let first = client.create_invoice(idempotent(draft("cus_a"), "create-1")).await.unwrap().into_inner();
        let replay = client.create_invoice(idempotent(draft("cus_a"), "create-1")).await.unwrap().into_inner();
        assert_eq!(first, replay);
        assert_eq!(app.all_invoices().await.len(), 1);
        let different = client.create_invoice(idempotent(draft("cus_b"), "create-1")).await.unwrap_err();
        assert_eq!((different.code(), reason(&different).as_str()), (Code::InvalidArgument, "idempotency_error"));

        let add = pb::AddLinesRequest { id: first.id.clone(), lines: vec![line(700)], ..Default::default() };
        let added = client.add_lines(idempotent(add.clone(), "add-1")).await.unwrap().into_inner();
        assert_eq!(client.add_lines(idempotent(add, "add-1")).await.unwrap().into_inner(), added);
        assert_eq!(app.get(&first.id).await.lines.unwrap().data.len(), 1, "the line was added once");

        let finalize = pb::FinalizeInvoiceRequest { id: first.id.clone(), ..Default::default() };
        let open = client.finalize_invoice(idempotent(finalize.clone(), "fin-1")).await.unwrap().into_inner();
        assert_eq!(client.finalize_invoice(idempotent(finalize, "fin-1")).await.unwrap().into_inner(), open);
        let pay = pb::PayInvoiceRequest { id: first.id.clone(), paid_out_of_band: Some(true), ..Default::default() };
        let paid = client.pay_invoice(idempotent(pay.clone(), "pay-1")).await.unwrap().into_inner();
        assert_eq!(client.pay_invoice(idempotent(pay, "pay-1")).await.unwrap().into_inner(), paid);
        assert_eq!((app.count_events("invoice.finalized").await, app.count_events("invoice.paid").await), (1, 1));
        assert_eq!(app.count_events("invoice.created").await, 1);
    };

    concurrent_finalizations_never_reuse_a_number => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let mut drafts = Vec::new();
        for i in 0..32 {
            drafts.push(app.draft_with(if i % 4 == 3 { "cus_b" } else { "cus_a" }, &[100 + i]).await);
        }
        let calls = drafts.iter().map(|invoice| {
            let mut client = app.invoices.clone();
            let request = pb::FinalizeInvoiceRequest { id: invoice.id.clone(), ..Default::default() };
            tokio::spawn(async move { client.finalize_invoice(authorized(request)).await })
        });
        let mut numbers: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for result in futures::future::join_all(calls).await {
            let invoice = result.unwrap().expect("every finalization succeeds").into_inner();
            let number = invoice.number.unwrap();
            let (prefix, sequence) = number.split_once('-').unwrap();
            numbers.entry(format!("{}:{prefix}", invoice.customer)).or_default().push(sequence.parse().unwrap());
        }
        println!("{backend}: 32 concurrent finalizations of 2 customers' invoices → sequences per customer {numbers:?}");
        assert_eq!(numbers.len(), 2, "one prefix per customer");
        for sequences in numbers.values_mut() {
            sequences.sort_unstable();
            let expected: Vec<u32> = (1..=sequences.len() as u32).collect();
            assert_eq!(*sequences, expected, "each number once, no gaps");
        }
        assert_eq!(app.count_events("invoice.finalized").await, 32);
    };
}
