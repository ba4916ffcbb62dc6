//! InvoiceItemService over gRPC: pending items, items on a draft, updates, deletes, lists, tenancy,
//! bad input and idempotency.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_testkit::{OTHER_API_KEY, authorized, idempotent, reason, violated_fields, with_key};
use tonic::Code;

use crate::helpers::{TestApp, item, payload, spawn};

async fn try_create(
    app: &TestApp,
    request: pb::CreateInvoiceItemRequest,
) -> Result<pb::InvoiceItem, tonic::Status> {
    app.items.clone().create_invoice_item(authorized(request)).await.map(tonic::Response::into_inner)
}

async fn update(
    app: &TestApp,
    request: pb::UpdateInvoiceItemRequest,
) -> Result<pb::InvoiceItem, tonic::Status> {
    app.items.clone().update_invoice_item(authorized(request)).await.map(tonic::Response::into_inner)
}

async fn delete(app: &TestApp, id: &str) -> Result<pb::DeletedInvoiceItem, tonic::Status> {
    app.items
        .clone()
        .delete_invoice_item(authorized(pb::DeleteInvoiceItemRequest { id: id.to_owned() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn list(
    app: &TestApp,
    request: pb::ListInvoiceItemsRequest,
) -> Result<pb::ListInvoiceItemsResponse, tonic::Status> {
    app.items.clone().list_invoice_items(authorized(request)).await.map(tonic::Response::into_inner)
}

fn on(invoice: &str, amount: i64) -> pb::CreateInvoiceItemRequest {
    pb::CreateInvoiceItemRequest {
        invoice: Some(invoice.to_owned()),
        currency: None,
        ..item("cus_a", amount)
    }
}

backend_tests! {
    pending_items_are_priced_three_ways => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = item("cus_a", -500);
        request.description = Some("Credit".into());
        request.metadata.insert("reason".into(), "goodwill".into());
        request.metadata.insert("skip".into(), String::new());
        let credit = app.create_item(request).await;
        assert!(credit.id.starts_with("ii_"));
        assert_eq!((credit.object.as_str(), credit.amount, credit.quantity, credit.quantity_decimal.as_str()), ("invoiceitem", -500, 1, "1"));
        assert_eq!((credit.discountable, credit.net_amount, credit.pricing.clone(), credit.invoice.clone()), (false, Some(-500), None, None));
        assert_eq!(credit.period, Some(pb::Period { start: credit.date, end: credit.date }));
        assert_eq!(credit.metadata.len(), 1);

        let decimal = app.create_item(pb::CreateInvoiceItemRequest {
            amount: None, unit_amount_decimal: Some("0.5".into()), quantity: Some(7), ..item("cus_a", 0)
        }).await;
        assert_eq!((decimal.amount, decimal.quantity), (4, 7));
        let pricing = decimal.pricing.clone().unwrap();
        assert_eq!((pricing.unit_amount_decimal.as_deref(), pricing.price_details), (Some("0.5"), None));

        let priced = app.create_item(pb::CreateInvoiceItemRequest {
            amount: None,
            price_data: Some(pb::InvoiceItemPriceDataParams { currency: "usd".into(), product: "prod_p".into(), unit_amount: Some(1_999), ..Default::default() }),
            quantity: Some(2),
            period: Some(pb::Period { start: 1_700_000_000, end: 1_702_592_000 }),
            ..item("cus_a", 0)
        }).await;
        assert_eq!((priced.amount, priced.discountable, priced.net_amount), (3_998, true, None));
        let details = priced.pricing.clone().unwrap().price_details.unwrap();
        assert_eq!(details.product, "prod_p");
        assert!(details.price.starts_with("price_"));
        assert_eq!(priced.period, Some(pb::Period { start: 1_700_000_000, end: 1_702_592_000 }));

        assert_eq!(app.get_item(&priced.id).await.unwrap(), priced);
        let created = app.events_of_type("invoiceitem.created", 3).await;
        assert_eq!(created.iter().map(payload::<pb::InvoiceItem>).collect::<Vec<_>>(), [credit, decimal, priced]);
    };

    an_item_created_on_a_draft_becomes_a_line => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.draft_with("cus_a", &[1_000]).await;
        let added = app.create_item(on(&invoice.id, 300)).await;
        assert_eq!((added.invoice.as_deref(), added.currency.as_str()), (Some(invoice.id.as_str()), "usd"));
        let read = app.get(&invoice.id).await;
        let lines = read.lines.clone().unwrap().data;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].parent.clone().unwrap().invoice_item_details.unwrap().invoice_item, added.id);
        assert_eq!((read.subtotal, read.total, read.amount_due), (1_300, 1_300, 1_300));
        assert_eq!(payload::<pb::Invoice>(&app.events_of_type("invoice.updated", 2).await[1]), read);

        let open = app.finalize(&app.draft_with("cus_a", &[1]).await.id).await;
        let cases = [
            (pb::CreateInvoiceItemRequest { customer: Some("cus_b".into()), ..on(&invoice.id, 1) }, Code::FailedPrecondition, "customer_mismatch", "customer"),
            (pb::CreateInvoiceItemRequest { currency: Some("eur".into()), ..on(&invoice.id, 1) }, Code::FailedPrecondition, "currency_mismatch", "currency"),
            (on(&open.id, 1), Code::FailedPrecondition, "invoice_not_editable", ""),
            (on("in_missing", 1), Code::NotFound, "resource_missing", "invoice"),
        ];
        for (request, code, why, field) in cases {
            let error = try_create(&app, request).await.unwrap_err();
            assert_eq!((error.code(), reason(&error).as_str()), (code, why));
            if !field.is_empty() {
                assert_eq!(violated_fields(&error), [field]);
            }
        }
        assert_eq!(app.get(&invoice.id).await, read, "the refused items changed nothing");
    };

    updating_an_item_updates_its_line_and_draft => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let pending = app.create_item(pb::CreateInvoiceItemRequest { description: Some("Old".into()), ..item("cus_a", 100) }).await;
        let mut change = pb::UpdateInvoiceItemRequest { id: pending.id.clone(), amount: Some(150), description: Some(String::new()), ..Default::default() };
        change.metadata.insert("k".into(), "v".into());
        let changed = update(&app, change).await.unwrap();
        assert_eq!((changed.amount, changed.description.clone(), changed.metadata["k"].as_str()), (150, None, "v"));

        let invoice = app.draft_with("cus_a", &[]).await;
        let on_draft = app.create_item(on(&invoice.id, 1_000)).await;
        let repriced = update(&app, pb::UpdateInvoiceItemRequest {
            id: on_draft.id.clone(), unit_amount_decimal: Some("250".into()), quantity: Some(3), ..Default::default()
        }).await.unwrap();
        assert_eq!((repriced.amount, repriced.quantity), (750, 3));
        let read = app.get(&invoice.id).await;
        assert_eq!((read.lines.clone().unwrap().data[0].amount, read.subtotal, read.amount_due), (750, 750, 750));

        let fixed = app.finalize(&invoice.id).await;
        let refused = update(&app, pb::UpdateInvoiceItemRequest { id: on_draft.id.clone(), amount: Some(1), ..Default::default() }).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "invoice_not_editable"));
        assert_eq!(app.get(&fixed.id).await, fixed);
        assert_eq!(app.get_item(&on_draft.id).await.unwrap(), repriced);
        let missing = update(&app, pb::UpdateInvoiceItemRequest { id: "ii_missing".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    };

    deleting_an_item_removes_its_line => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let pending = app.create_item(item("cus_a", 100)).await;
        let deleted = delete(&app, &pending.id).await.unwrap();
        assert_eq!(deleted, pb::DeletedInvoiceItem { deleted: true, id: pending.id.clone(), object: "invoiceitem".into() });
        assert_eq!(app.get_item(&pending.id).await.unwrap_err().code(), Code::NotFound);
        assert_eq!(payload::<pb::InvoiceItem>(&app.events_of_type("invoiceitem.deleted", 1).await[0]), pending);

        let invoice = app.draft_with("cus_a", &[1_000, 200]).await;
        let second = invoice.lines.clone().unwrap().data[1].parent.clone().unwrap().invoice_item_details.unwrap().invoice_item;
        delete(&app, &second).await.unwrap();
        let read = app.get(&invoice.id).await;
        assert_eq!((read.lines.clone().unwrap().data.len(), read.subtotal), (1, 1_000));

        let open = app.finalize(&invoice.id).await;
        let first = open.lines.clone().unwrap().data[0].parent.clone().unwrap().invoice_item_details.unwrap().invoice_item;
        let refused = delete(&app, &first).await.unwrap_err();
        assert_eq!(reason(&refused), "invoice_not_editable");
        assert!(app.get_item(&first).await.is_ok());
    };

    list_filters_items => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let a1 = app.create_item(item("cus_a", 1)).await;
        let b1 = app.create_item(item("cus_b", 2)).await;
        let invoice = app.draft_with("cus_a", &[3]).await;
        let on_invoice = invoice.lines.clone().unwrap().data[0].parent.clone().unwrap().invoice_item_details.unwrap().invoice_item;
        let a2 = app.create_item(item("cus_a", 4)).await;
        let ids = |page: pb::ListInvoiceItemsResponse| page.data.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(list(&app, Default::default()).await.unwrap()), [a2.id.clone(), on_invoice.clone(), b1.id.clone(), a1.id.clone()]);
        assert_eq!(ids(list(&app, pb::ListInvoiceItemsRequest { customer: Some("cus_a".into()), ..Default::default() }).await.unwrap()), [a2.id.clone(), on_invoice.clone(), a1.id.clone()]);
        assert_eq!(ids(list(&app, pb::ListInvoiceItemsRequest { pending: Some(true), customer: Some("cus_a".into()), ..Default::default() }).await.unwrap()), [a2.id.clone(), a1.id.clone()]);
        assert_eq!(ids(list(&app, pb::ListInvoiceItemsRequest { pending: Some(false), ..Default::default() }).await.unwrap()), [on_invoice.as_str()]);
        assert_eq!(ids(list(&app, pb::ListInvoiceItemsRequest { invoice: Some(invoice.id.clone()), ..Default::default() }).await.unwrap()), [on_invoice.as_str()]);
        let page = list(&app, pb::ListInvoiceItemsRequest { limit: Some(2), starting_after: Some(on_invoice.clone()), ..Default::default() }).await.unwrap();
        assert_eq!((page.has_more, ids(page)), (false, vec![b1.id.clone(), a1.id.clone()]));
        let exclusive = list(&app, pb::ListInvoiceItemsRequest { invoice: Some(invoice.id.clone()), pending: Some(true), ..Default::default() }).await.unwrap_err();
        assert_eq!(reason(&exclusive), "parameters_exclusive");
        let bad = list(&app, pb::ListInvoiceItemsRequest { invoice: Some("ii_1".into()), ..Default::default() }).await.unwrap_err();
        assert_eq!(violated_fields(&bad), ["invoice"]);
    };

    bad_items_name_the_field_and_create_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let cases: Vec<(pb::CreateInvoiceItemRequest, &str, &str)> = vec![
            (pb::CreateInvoiceItemRequest { unit_amount_decimal: Some("1".into()), ..item("cus_a", 5) }, "amount", "parameters_exclusive"),
            (pb::CreateInvoiceItemRequest { amount: None, ..item("cus_a", 0) }, "amount", "parameter_missing"),
            (pb::CreateInvoiceItemRequest { quantity: Some(-1), ..item("cus_a", 5) }, "quantity", "parameter_invalid_integer"),
            (pb::CreateInvoiceItemRequest { quantity: Some(2), ..item("cus_a", 5) }, "quantity", "parameter_invalid"),
            (pb::CreateInvoiceItemRequest { tax_rates: vec!["txr_1".into()], ..item("cus_a", 5) }, "tax_rates", "parameter_invalid"),
            (pb::CreateInvoiceItemRequest { customer: None, ..item("cus_a", 5) }, "customer", "parameter_missing"),
            (pb::CreateInvoiceItemRequest { currency: Some("usdx".into()), ..item("cus_a", 5) }, "currency", "invalid_currency"),
            (pb::CreateInvoiceItemRequest { currency: None, ..item("cus_a", 5) }, "currency", "parameter_missing"),
            (pb::CreateInvoiceItemRequest {
                amount: None,
                price_data: Some(pb::InvoiceItemPriceDataParams { currency: "eur".into(), product: "prod_1".into(), unit_amount: Some(1), ..Default::default() }),
                ..item("cus_a", 0)
            }, "price_data[currency]", "currency_mismatch"),
            (pb::CreateInvoiceItemRequest {
                amount: None,
                price_data: Some(pb::InvoiceItemPriceDataParams { currency: "usd".into(), product: String::new(), unit_amount: Some(1), ..Default::default() }),
                ..item("cus_a", 0)
            }, "price_data[product]", "parameter_missing"),
            (pb::CreateInvoiceItemRequest { pricing: Some(pb::PricingParams { price: Some("price_1".into()) }), ..item("cus_a", 5) }, "pricing[price]", "parameter_invalid"),
            (pb::CreateInvoiceItemRequest { subscription: Some("sub_1".into()), ..item("cus_a", 5) }, "subscription", "parameter_invalid"),
        ];
        for (request, field, why) in cases {
            let error = try_create(&app, request).await.unwrap_err();
            assert_eq!((error.code(), violated_fields(&error)[0].as_str(), reason(&error).as_str()), (Code::InvalidArgument, field, why));
        }
        assert!(list(&app, Default::default()).await.unwrap().data.is_empty());
        assert_eq!(app.count_events("invoiceitem.created").await, 0);
    };

    another_accounts_items_are_not_found_and_creates_replay => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut client = app.items.clone();
        let mine = client.create_invoice_item(idempotent(item("cus_a", 100), "item-1")).await.unwrap().into_inner();
        assert_eq!(client.create_invoice_item(idempotent(item("cus_a", 100), "item-1")).await.unwrap().into_inner(), mine);
        assert_eq!(list(&app, Default::default()).await.unwrap().data.len(), 1);
        let mismatch = client.create_invoice_item(idempotent(item("cus_a", 101), "item-1")).await.unwrap_err();
        assert_eq!(reason(&mismatch), "idempotency_error");

        let errors = [
            client.get_invoice_item(with_key(pb::GetInvoiceItemRequest { id: mine.id.clone() }, OTHER_API_KEY)).await.unwrap_err(),
            client.update_invoice_item(with_key(pb::UpdateInvoiceItemRequest { id: mine.id.clone(), amount: Some(1), ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
            client.delete_invoice_item(with_key(pb::DeleteInvoiceItemRequest { id: mine.id.clone() }, OTHER_API_KEY)).await.unwrap_err(),
        ];
        for error in errors {
            assert_eq!((error.code(), reason(&error).as_str()), (Code::NotFound, "resource_missing"));
        }
        let theirs = client.list_invoice_items(with_key(pb::ListInvoiceItemsRequest::default(), OTHER_API_KEY)).await.unwrap().into_inner();
        assert!(theirs.data.is_empty());
        // An item cannot be put on another account's draft either.
        let invoice = app.create(crate::helpers::draft("cus_a")).await;
        let other = client.create_invoice_item(with_key(on(&invoice.id, 1), OTHER_API_KEY)).await.unwrap_err();
        assert_eq!((other.code(), violated_fields(&other)), (Code::NotFound, vec!["invoice".to_owned()]));
        assert_eq!(app.get_item(&mine.id).await.unwrap(), mine);
    };
}
