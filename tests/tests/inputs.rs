//! Hostile input end to end, on both backends: documented limits of nested parameters, NUL
//! characters, over-long strings and unbounded echoes are refused with INVALID_ARGUMENT naming the
//! parameter, and the refused call changes nothing (lists and events as before).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use settle_testkit::{authorized, reason, violated_fields};
use settle_tests::Suite;
use settle_tests::api::Api;
use tonic::Code;

fn api(suite: &Suite) -> Api {
    Api::new(suite.invoices.channel(), suite.payments.channel())
        .with_credit_notes(suite.credit_notes.channel())
}

fn item(name: String) -> ppb::PaymentIntentAmountDetailsLineItemParams {
    ppb::PaymentIntentAmountDetailsLineItemParams {
        product_name: name,
        quantity: 1,
        unit_cost: 1,
        ..Default::default()
    }
}

fn intent_with(items: Vec<ppb::PaymentIntentAmountDetailsLineItemParams>) -> ppb::CreatePaymentIntentRequest {
    let amount = i64::try_from(items.len()).unwrap().max(50);
    ppb::CreatePaymentIntentRequest {
        amount,
        currency: "usd".into(),
        amount_details: Some(ppb::PaymentIntentAmountDetailsParams {
            line_items: items,
            enforce_arithmetic_validation: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What a refused call must leave as it was.
async fn snapshot(api: &Api) -> (usize, usize, usize, usize) {
    (
        api.all_intents(None).await.unwrap().len(),
        api.all_invoices().await.unwrap().len(),
        Api::all_events(&api.payment_events).await.unwrap().len(),
        Api::all_events(&api.invoice_events).await.unwrap().len(),
    )
}

backend_tests! {
    documented_nested_limits_nul_and_long_text_are_refused_and_change_nothing => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let api = api(&suite);
        let before = snapshot(&api).await;
        let refusals: Vec<(ppb::CreatePaymentIntentRequest, &str)> = vec![
            (intent_with((0..201).map(|_| item("a".into())).collect()), "amount_details[line_items]"),
            (intent_with(vec![item("n".repeat(1025))]), "amount_details[line_items][0][product_name]"),
            (intent_with(vec![item("a".into()), item("nul\0".into())]), "amount_details[line_items][1][product_name]"),
            (ppb::CreatePaymentIntentRequest { description: Some("d".repeat(1001)), ..intent_with(vec![]) }, "description"),
            (ppb::CreatePaymentIntentRequest { customer: Some(format!("cus_{}", "x".repeat(6000))), ..intent_with(vec![]) }, "customer"),
        ];
        for (request, field) in refusals {
            let status = api.intents.clone().create_payment_intent(authorized(request)).await.unwrap_err();
            assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, "parameter_invalid"), "{field}: {status:?}");
            assert_eq!(violated_fields(&status), [field.to_owned()]);
            assert!(status.message().len() <= 500, "{field}: the message is bounded");
        }
        // NUL in an invoice's text (PostgreSQL cannot store it: this was INTERNAL).
        let draft = pb::CreateInvoiceRequest {
            customer: Some("cus_nul".into()),
            description: Some("memo\0".into()),
            ..Default::default()
        };
        let status = api.invoices.clone().create_invoice(authorized(draft)).await.unwrap_err();
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["description".to_owned()]));
        // An id of any length is not echoed whole.
        let get = pb::GetInvoiceRequest { id: format!("in_{}", "z".repeat(4000)), ..Default::default() };
        let status = api.invoices.clone().get_invoice(authorized(get)).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().len() < 200, "{}", status.message().len());
        assert_eq!(snapshot(&api).await, before, "a refused call changed something");

        // At the documented limits the request is served, and its object and event stay bounded.
        let full = intent_with((0..200).map(|i| item(format!("{i:04}{}", "p".repeat(1020)))).collect());
        let intent = api.intents.clone().create_payment_intent(authorized(full)).await.unwrap().into_inner();
        assert_eq!(intent.amount_details.unwrap().line_items.unwrap().data.len(), 200);
        // (Events are listed once the sequencer has numbered them.)
        let mut listed = 0;
        for _ in 0..100 {
            listed = Api::all_events(&api.payment_events).await.unwrap().len();
            if listed > before.2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(listed, before.2 + 1);
    };
}
