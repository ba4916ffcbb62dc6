//! AddLines, UpdateLines, RemoveLines and ListInvoiceLines over gRPC.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_testkit::{authorized, reason, violated_fields};
use tonic::Code;

use crate::helpers::{TestApp, item, line, payload, previous_keys, spawn};

fn tax(
    name: &str,
    percentage: f64,
    inclusive: bool,
    amount: i64,
    taxable_amount: i64,
) -> pb::TaxAmountParams {
    pb::TaxAmountParams {
        amount,
        taxable_amount,
        tax_rate_data: Some(pb::TaxRateDataParams {
            display_name: name.into(),
            percentage,
            inclusive,
            ..Default::default()
        }),
        taxability_reason: None,
    }
}

fn priced(
    unit_amount: Option<i64>,
    unit_amount_decimal: Option<&str>,
    product: Option<&str>,
) -> pb::InvoiceLinePriceDataParams {
    pb::InvoiceLinePriceDataParams {
        currency: "usd".into(),
        product: product.map(str::to_owned),
        product_data: product
            .is_none()
            .then(|| pb::ProductDataParams { name: "Widget".into(), ..Default::default() }),
        unit_amount,
        unit_amount_decimal: unit_amount_decimal.map(str::to_owned),
        ..Default::default()
    }
}

fn item_of(line: &pb::InvoiceLineItem) -> String {
    line.parent.clone().unwrap().invoice_item_details.unwrap().invoice_item
}

fn rate_of(tax: &pb::Tax) -> String {
    tax.tax_rate_details.clone().unwrap().tax_rate
}

async fn update_lines(
    app: &TestApp,
    id: &str,
    lines: Vec<pb::InvoiceLineUpdateParams>,
) -> Result<pb::Invoice, tonic::Status> {
    app.invoices
        .clone()
        .update_lines(authorized(pb::UpdateLinesRequest { id: id.to_owned(), lines, ..Default::default() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn remove_lines(
    app: &TestApp,
    id: &str,
    lines: Vec<(String, pb::InvoiceLineRemoveBehavior)>,
) -> Result<pb::Invoice, tonic::Status> {
    let lines =
        lines.into_iter().map(|(id, b)| pb::InvoiceLineRemoveParams { id, behavior: b as i32 }).collect();
    app.invoices
        .clone()
        .remove_lines(authorized(pb::RemoveLinesRequest { id: id.to_owned(), lines, ..Default::default() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn try_add(
    app: &TestApp,
    id: &str,
    lines: Vec<pb::InvoiceLineParams>,
) -> Result<pb::Invoice, tonic::Status> {
    app.invoices
        .clone()
        .add_lines(authorized(pb::AddLinesRequest { id: id.to_owned(), lines, ..Default::default() }))
        .await
        .map(tonic::Response::into_inner)
}

backend_tests! {
    add_lines_prices_quantities_and_taxes => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.create(crate::helpers::draft("cus_a")).await;
        let invoice = app.add_lines(&invoice.id, vec![
            pb::InvoiceLineParams { tax_amounts: vec![tax("VAT", 10.0, false, 100, 1_000)], ..line(1_000) },
            pb::InvoiceLineParams {
                price_data: Some(priced(Some(250), None, None)),
                quantity_decimal: Some("1.5".into()),
                tax_amounts: vec![tax("GST", 5.0, true, 18, 357)],
                ..Default::default()
            },
            pb::InvoiceLineParams {
                price_data: Some(priced(None, Some("12.5"), Some("prod_x"))),
                quantity: Some(3),
                tax_amounts: vec![tax("VAT", 10.0, false, 4, 38)],
                ..Default::default()
            },
            pb::InvoiceLineParams { description: Some("Goodwill".into()), ..line(-200) },
        ]).await;
        let lines = invoice.lines.clone().unwrap().data;
        assert_eq!(lines.iter().map(|l| l.amount).collect::<Vec<_>>(), [1_000, 375, 38, -200]);
        assert_eq!(lines.iter().map(|l| l.subtotal).collect::<Vec<_>>(), [1_000, 375, 38, -200]);
        assert_eq!((invoice.subtotal, invoice.subtotal_excluding_tax, invoice.total, invoice.total_excluding_tax), (1_213, Some(1_195), 1_317, Some(1_195)));
        assert_eq!((invoice.amount_due, invoice.amount_remaining), (1_317, 1_317));

        assert_eq!((lines[0].quantity, lines[0].pricing.clone()), (Some(1), None));
        assert!(lines[0].discountable && !lines[3].discountable, "negative lines are not discountable by default");
        let widget = lines[1].pricing.clone().unwrap();
        assert_eq!((lines[1].quantity, lines[1].quantity_decimal.as_deref()), (Some(1), Some("1.5")));
        assert_eq!(widget.unit_amount_decimal.as_deref(), Some("250"));
        let details = widget.price_details.unwrap();
        assert!(details.price.starts_with("price_") && details.product.starts_with("prod_"), "{details:?}");
        assert_eq!(lines[2].pricing.clone().unwrap().price_details.unwrap().product, "prod_x");
        assert_eq!(lines[3].description.as_deref(), Some("Goodwill"));
        for l in &lines {
            assert_eq!((l.object.as_str(), l.invoice.as_deref(), l.currency.as_str()), ("line_item", Some(invoice.id.as_str()), "usd"));
            assert!(l.id.starts_with("il_"));
        }

        // Identical rate data is one inline rate; the invoice sums per rate and behaviour.
        let vat = rate_of(&lines[0].taxes[0]);
        assert!(vat.starts_with("txr_"));
        assert_eq!(rate_of(&lines[2].taxes[0]), vat);
        assert_ne!(rate_of(&lines[1].taxes[0]), vat);
        assert_eq!(lines[1].taxes[0].tax_behavior, pb::TaxBehavior::Inclusive as i32);
        let total_vat = invoice.total_taxes.iter().find(|t| rate_of(t) == vat).unwrap();
        assert_eq!((total_vat.amount, total_vat.taxable_amount, total_vat.tax_behavior), (104, Some(1_038), pb::TaxBehavior::Exclusive as i32));
        assert_eq!(invoice.total_taxes.len(), 2);

        // Every line is an invoice item on the invoice.
        for l in &lines {
            let backing = app.get_item(&item_of(l)).await.unwrap();
            assert_eq!((backing.amount, backing.invoice.as_deref()), (l.amount, Some(invoice.id.as_str())));
        }
        let created = app.events_of_type("invoiceitem.created", 4).await;
        assert_eq!(payload::<pb::InvoiceItem>(&created[1]).id, item_of(&lines[1]));
        let updated = app.events_of_type("invoice.updated", 1).await;
        assert_eq!(payload::<pb::Invoice>(&updated[0]), invoice);
        let keys = previous_keys(&updated[0]);
        for key in ["lines", "subtotal", "total", "total_taxes", "amount_due"] {
            assert!(keys.contains(&key.to_owned()), "{key} missing from {keys:?}");
        }
    };

    update_lines_changes_the_line_and_its_item => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.create(crate::helpers::draft("cus_a")).await;
        let invoice = app.add_lines(&invoice.id, vec![
            pb::InvoiceLineParams { tax_amounts: vec![tax("VAT", 10.0, false, 100, 1_000)], ..line(1_000) },
            pb::InvoiceLineParams { price_data: Some(priced(Some(250), None, None)), quantity: Some(2), ..Default::default() },
        ]).await;
        let lines = invoice.lines.clone().unwrap().data;
        assert_eq!((invoice.subtotal, invoice.total), (1_500, 1_600));
        let (first, second) = (lines[0].id.clone(), lines[1].id.clone());

        let mut describe = pb::InvoiceLineUpdateParams {
            id: first.clone(),
            description: Some("Consulting".into()),
            tax_amounts: Some(pb::TaxAmountListParams { values: Vec::new() }),
            ..Default::default()
        };
        describe.metadata.insert("po".into(), "77".into());
        let more = pb::InvoiceLineUpdateParams { id: second.clone(), quantity: Some(4), ..Default::default() };
        let updated = update_lines(&app, &invoice.id, vec![describe, more]).await.unwrap();
        let lines = updated.lines.clone().unwrap().data;
        assert_eq!((lines[0].description.as_deref(), lines[0].metadata["po"].as_str(), lines[0].taxes.len()), (Some("Consulting"), "77", 0));
        assert_eq!((lines[1].amount, lines[1].quantity), (1_000, Some(4)));
        assert_eq!((updated.subtotal, updated.total, updated.total_taxes.len()), (2_000, 2_000, 0));
        let backing = app.get_item(&item_of(&lines[0])).await.unwrap();
        assert_eq!((backing.description.as_deref(), backing.metadata["po"].as_str()), (Some("Consulting"), "77"));
        assert_eq!(app.get_item(&item_of(&lines[1])).await.unwrap().amount, 1_000);

        // From a fixed amount to a price, and back; the line keeps its id.
        let repriced = update_lines(&app, &invoice.id, vec![
            pb::InvoiceLineUpdateParams { id: first.clone(), price_data: Some(priced(Some(300), None, Some("prod_y"))), quantity: Some(2), ..Default::default() },
            pb::InvoiceLineUpdateParams { id: second.clone(), amount: Some(50), ..Default::default() },
        ]).await.unwrap();
        let lines = repriced.lines.clone().unwrap().data;
        assert_eq!((lines[0].id.as_str(), lines[0].amount, lines[0].quantity), (first.as_str(), 600, Some(2)));
        assert_eq!((lines[1].amount, lines[1].quantity, lines[1].pricing.clone()), (50, Some(1), None));
        assert_eq!(repriced.subtotal, 650);

        // A fixed amount takes no quantity; an unknown line is not found. Neither changes anything.
        let refused = update_lines(&app, &invoice.id, vec![
            pb::InvoiceLineUpdateParams { id: first.clone(), quantity: Some(3), ..Default::default() },
            pb::InvoiceLineUpdateParams { id: second.clone(), quantity: Some(2), ..Default::default() },
        ]).await.unwrap_err();
        assert_eq!((refused.code(), violated_fields(&refused)), (Code::InvalidArgument, vec!["lines[1][quantity]".to_owned()]));
        let missing = update_lines(&app, &invoice.id, vec![pb::InvoiceLineUpdateParams { id: "il_missing".into(), ..Default::default() }]).await.unwrap_err();
        assert_eq!((missing.code(), violated_fields(&missing)), (Code::NotFound, vec!["lines[0][id]".to_owned()]));
        assert_eq!(app.get(&invoice.id).await, repriced);

        // invoice_metadata is merged into the invoice.
        let mut request = pb::UpdateLinesRequest { id: invoice.id.clone(), lines: vec![pb::InvoiceLineUpdateParams { id: first.clone(), ..Default::default() }], ..Default::default() };
        request.invoice_metadata.insert("batch".into(), "7".into());
        let tagged = app.invoices.clone().update_lines(authorized(request)).await.unwrap().into_inner();
        assert_eq!(tagged.metadata["batch"], "7");
    };

    remove_lines_deletes_or_unassigns_their_items => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.draft_with("cus_a", &[1_000, 500]).await;
        let lines = invoice.lines.clone().unwrap().data;
        let (deleted_item, unassigned_item) = (item_of(&lines[0]), item_of(&lines[1]));
        let missing = remove_lines(&app, &invoice.id, vec![("il_missing".into(), pb::InvoiceLineRemoveBehavior::Delete)]).await.unwrap_err();
        assert_eq!((missing.code(), violated_fields(&missing)), (Code::NotFound, vec!["lines[0][id]".to_owned()]));
        let no_behavior = remove_lines(&app, &invoice.id, vec![(lines[0].id.clone(), pb::InvoiceLineRemoveBehavior::Unspecified)]).await.unwrap_err();
        assert_eq!((reason(&no_behavior), violated_fields(&no_behavior)), ("parameter_missing".to_owned(), vec!["lines[0][behavior]".to_owned()]));

        let emptied = remove_lines(&app, &invoice.id, vec![
            (lines[0].id.clone(), pb::InvoiceLineRemoveBehavior::Delete),
            (lines[1].id.clone(), pb::InvoiceLineRemoveBehavior::Unassign),
        ]).await.unwrap();
        assert_eq!((emptied.lines.clone().unwrap().data.len(), emptied.subtotal, emptied.total), (0, 0, 0));
        assert_eq!(app.get_item(&deleted_item).await.unwrap_err().code(), Code::NotFound);
        assert_eq!(app.get_item(&unassigned_item).await.unwrap().invoice, None, "unassigned items are pending again");
        assert_eq!(payload::<pb::InvoiceItem>(&app.events_of_type("invoiceitem.deleted", 1).await[0]).id, deleted_item);

        // The pending item can go on another draft, changed on the way.
        let other = app.create(crate::helpers::draft("cus_a")).await;
        let moved = app.add_lines(&other.id, vec![pb::InvoiceLineParams {
            invoice_item: Some(unassigned_item.clone()),
            description: Some("Moved".into()),
            ..Default::default()
        }]).await;
        let line = &moved.lines.clone().unwrap().data[0];
        assert_eq!((line.amount, line.description.as_deref(), item_of(line)), (500, Some("Moved"), unassigned_item.clone()));
        assert_eq!(app.get_item(&unassigned_item).await.unwrap().invoice.as_deref(), Some(other.id.as_str()));
    };

    a_pending_item_joins_only_a_draft_of_its_customer_and_currency => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.create(crate::helpers::draft("cus_a")).await;
        let theirs = app.create_item(item("cus_b", 100)).await;
        let euros = app.create_item(pb::CreateInvoiceItemRequest { currency: Some("eur".into()), ..item("cus_a", 100) }).await;
        let elsewhere = app.draft_with("cus_a", &[100]).await.lines.unwrap().data[0].clone();
        for (id, code, why) in [
            (theirs.id.clone(), Code::FailedPrecondition, "customer_mismatch"),
            (euros.id.clone(), Code::FailedPrecondition, "currency_mismatch"),
            (item_of(&elsewhere), Code::FailedPrecondition, "state_unsupported"),
            ("ii_missing".to_owned(), Code::NotFound, "resource_missing"),
        ] {
            let error = try_add(&app, &invoice.id, vec![pb::InvoiceLineParams { invoice_item: Some(id), ..Default::default() }]).await.unwrap_err();
            assert_eq!((error.code(), reason(&error).as_str()), (code, why));
            assert_eq!(violated_fields(&error), ["lines[0][invoice_item]"]);
        }
        assert_eq!(app.get(&invoice.id).await, invoice, "nothing was added");
    };

    only_a_drafts_lines_change => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let open = app.finalize(&app.draft_with("cus_a", &[1_000]).await.id).await;
        let first = open.lines.clone().unwrap().data[0].id.clone();
        let errors = [
            try_add(&app, &open.id, vec![line(1)]).await.unwrap_err(),
            update_lines(&app, &open.id, vec![pb::InvoiceLineUpdateParams { id: first.clone(), amount: Some(5), ..Default::default() }]).await.unwrap_err(),
            remove_lines(&app, &open.id, vec![(first.clone(), pb::InvoiceLineRemoveBehavior::Delete)]).await.unwrap_err(),
        ];
        for error in errors {
            assert_eq!((error.code(), reason(&error).as_str()), (Code::FailedPrecondition, "invoice_not_editable"));
        }
        assert_eq!(app.get(&open.id).await, open);
    };

    list_invoice_lines_pages_in_line_order => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let amounts: Vec<i64> = (1..=25).collect();
        let invoice = app.draft_with("cus_a", &amounts).await;
        let embedded = invoice.lines.clone().unwrap();
        assert_eq!((embedded.data.iter().map(|l| l.amount).collect::<Vec<_>>(), embedded.has_more), ((1..=10).collect::<Vec<_>>(), true));
        let list = |starting_after: Option<String>, ending_before: Option<String>, limit: Option<i32>| {
            let mut client = app.invoices.clone();
            let request = pb::ListInvoiceLinesRequest { id: invoice.id.clone(), limit, starting_after, ending_before };
            async move { client.list_invoice_lines(authorized(request)).await.map(tonic::Response::into_inner) }
        };
        let amounts_of = |page: &pb::ListInvoiceLinesResponse| page.data.iter().map(|l| l.amount).collect::<Vec<_>>();
        let first = list(None, None, None).await.unwrap();
        assert_eq!((amounts_of(&first), first.has_more), ((1..=10).collect::<Vec<_>>(), true));
        let second = list(first.data.last().map(|l| l.id.clone()), None, None).await.unwrap();
        assert_eq!((amounts_of(&second), second.has_more), ((11..=20).collect::<Vec<_>>(), true));
        let last = list(second.data.last().map(|l| l.id.clone()), None, None).await.unwrap();
        assert_eq!((amounts_of(&last), last.has_more), ((21..=25).collect::<Vec<_>>(), false));
        let back = list(None, Some(second.data[0].id.clone()), Some(5)).await.unwrap();
        assert_eq!((amounts_of(&back), back.has_more), ((6..=10).collect::<Vec<_>>(), true));

        let missing = app.invoices.clone().list_invoice_lines(authorized(pb::ListInvoiceLinesRequest { id: "in_missing".into(), ..Default::default() })).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let bad = list(Some(invoice.id.clone()), None, None).await.unwrap_err();
        assert_eq!(violated_fields(&bad), ["starting_after"]);
    };

    an_invoice_takes_at_most_250_lines => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.create(crate::helpers::draft("cus_a")).await;
        let invoice = app.add_lines(&invoice.id, (0..249).map(|_| line(1)).collect()).await;
        assert_eq!(invoice.subtotal, 249);
        let error = try_add(&app, &invoice.id, vec![line(1), line(1)]).await.unwrap_err();
        assert_eq!((error.code(), violated_fields(&error)), (Code::InvalidArgument, vec!["lines".to_owned()]));
        assert_eq!(app.get(&invoice.id).await.subtotal, 249);
        assert_eq!(app.add_lines(&invoice.id, vec![line(1)]).await.subtotal, 250);
        let error = app.items.clone().create_invoice_item(authorized(pb::CreateInvoiceItemRequest {
            invoice: Some(invoice.id.clone()), ..item("cus_a", 1)
        })).await.unwrap_err();
        assert_eq!(violated_fields(&error), ["invoice"]);
    };

    bad_lines_name_the_field_and_change_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let invoice = app.draft_with("cus_a", &[100]).await;
        let cases: Vec<(pb::InvoiceLineParams, &str, &str)> = vec![
            (pb::InvoiceLineParams { quantity_decimal: Some("1.2.3".into()), price_data: Some(priced(Some(1), None, None)), ..Default::default() }, "lines[1][quantity_decimal]", "parameter_invalid"),
            (pb::InvoiceLineParams { price_data: Some(priced(Some(1), None, None)), ..line(5) }, "lines[1][amount]", "parameters_exclusive"),
            (pb::InvoiceLineParams::default(), "lines[1][amount]", "parameter_missing"),
            (pb::InvoiceLineParams { tax_rates: vec!["txr_1".into()], ..line(5) }, "lines[1][tax_rates]", "parameter_invalid"),
            (pb::InvoiceLineParams { price_data: Some(pb::InvoiceLinePriceDataParams { currency: "eur".into(), ..priced(Some(1), None, None) }), ..Default::default() }, "lines[1][price_data][currency]", "currency_mismatch"),
            (pb::InvoiceLineParams { pricing: Some(pb::PricingParams { price: Some("price_1".into()) }), ..line(5) }, "lines[1][pricing][price]", "parameter_invalid"),
            (line(1_000_000_000_000), "lines[1][amount]", "amount_too_large"),
            (pb::InvoiceLineParams { tax_amounts: vec![tax("VAT", 150.0, false, 1, 1)], ..line(5) }, "lines[1][tax_amounts][0][tax_rate_data][percentage]", "parameter_invalid"),
            (pb::InvoiceLineParams { quantity: Some(2), ..line(5) }, "lines[1][quantity]", "parameter_invalid"),
            (pb::InvoiceLineParams { period: Some(pb::Period { start: 20, end: 10 }), ..line(5) }, "lines[1][period][end]", "parameter_invalid"),
        ];
        for (bad, field, why) in cases {
            let error = try_add(&app, &invoice.id, vec![line(7), bad]).await.unwrap_err();
            assert_eq!((error.code(), violated_fields(&error)[0].as_str(), reason(&error).as_str()), (Code::InvalidArgument, field, why));
        }
        let empty = try_add(&app, &invoice.id, Vec::new()).await.unwrap_err();
        assert_eq!((violated_fields(&empty), reason(&empty)), (vec!["lines".to_owned()], "parameter_missing".to_owned()));
        assert_eq!(app.get(&invoice.id).await, invoice, "the valid first line of each refused call was not added either");
        assert_eq!(app.count_events("invoiceitem.created").await, 1);
    };

    concurrent_pulls_put_each_pending_item_on_one_invoice => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let mut pending = Vec::new();
        for amount in 1..=10 {
            pending.push(app.create_item(item("cus_a", amount)).await.id);
        }
        // Eight invoices created at once, each asking for the customer's pending items.
        let creations = (0..8).map(|_| {
            let mut client = app.invoices.clone();
            let mut request = crate::helpers::draft("cus_a");
            request.pending_invoice_items_behavior = Some(pb::InvoicePendingInvoiceItemsBehavior::Include as i32);
            tokio::spawn(async move { client.create_invoice(authorized(request)).await })
        });
        let (mut pulled, mut nothing_left) = (Vec::new(), 0);
        for result in futures::future::join_all(creations).await {
            match result.unwrap() {
                Ok(invoice) => pulled.push(invoice.into_inner()),
                Err(status) => {
                    assert_eq!(reason(&status), "invoice_no_customer_line_items", "{status:?}");
                    nothing_left += 1;
                }
            }
        }
        let lines: usize = pulled.iter().map(|i| i.lines.as_ref().unwrap().data.len()).sum();
        println!("{backend}: 8 concurrent creations pulling 10 pending items → {} invoices with {lines} lines, {nothing_left} found nothing", pulled.len());
        assert_eq!((pulled.len(), lines, nothing_left), (1, 10, 7));
        assert_eq!(pulled[0].subtotal, 55);

        // Eight drafts adding the same pending item at once: one gets it.
        let contested = app.create_item(item("cus_a", 100)).await.id;
        let mut drafts = Vec::new();
        for _ in 0..8 {
            drafts.push(app.create(crate::helpers::draft("cus_a")).await.id);
        }
        let adds = drafts.iter().map(|id| {
            let mut client = app.invoices.clone();
            let request = pb::AddLinesRequest {
                id: id.clone(),
                lines: vec![pb::InvoiceLineParams { invoice_item: Some(contested.clone()), ..Default::default() }],
                ..Default::default()
            };
            tokio::spawn(async move { client.add_lines(authorized(request)).await })
        });
        let mut winners = Vec::new();
        for result in futures::future::join_all(adds).await {
            match result.unwrap() {
                Ok(invoice) => winners.push(invoice.into_inner().id),
                Err(status) => assert_eq!(reason(&status), "state_unsupported", "{status:?}"),
            }
        }
        println!("{backend}: 8 concurrent add_lines of one pending item → {} succeeded", winners.len());
        assert_eq!(winners.len(), 1);
        assert_eq!(app.get_item(&contested).await.unwrap().invoice.as_deref(), Some(winners[0].as_str()));
        let mut total_lines = 0;
        for id in &drafts {
            total_lines += app.get(id).await.lines.unwrap().data.len();
        }
        assert_eq!(total_lines, 1);
    };
}

backend_tests! {
    creating_an_invoice_counts_pending_items_and_refuses_more_than_the_line_cap => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut ids = Vec::new();
        for i in 1..=251 {
            ids.push(app.create_item(item("cus_many", 100 + i)).await.id);
        }
        let include = || {
            let mut request = crate::helpers::draft("cus_many");
            request.pending_invoice_items_behavior = Some(pb::InvoicePendingInvoiceItemsBehavior::Include as i32);
            request
        };
        let refused = app.invoices.clone().create_invoice(authorized(include())).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["pending_invoice_items_behavior"]);
        assert!(refused.message().contains("more than 250"), "{}", refused.message());
        // Refused whole: no invoice, every item still pending.
        assert!(app.all_invoices().await.is_empty());
        for id in [&ids[0], &ids[250]] {
            assert_eq!(app.get_item(id).await.unwrap().invoice, None);
        }

        // At the cap the invoice takes them all.
        app.items.clone().delete_invoice_item(authorized(pb::DeleteInvoiceItemRequest { id: ids[0].clone() })).await.unwrap();
        let invoice = app.create(include()).await;
        assert_eq!(invoice.total, (2..=251).map(|i| 100 + i).sum::<i64>());
        assert_eq!(app.get_item(&ids[250]).await.unwrap().invoice.as_deref(), Some(invoice.id.as_str()));
    };
}
