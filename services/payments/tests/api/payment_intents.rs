//! PaymentIntentService over gRPC.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::PaymentIntentStatus as S;
use settle_testkit::{authorized, reason, violated_fields};
use tonic::Code;

use crate::helpers::{confirmed, create, spawn, status};

backend_tests! {
    create_returns_a_stripe_shaped_intent => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = create(2_000);
        request.description = Some("Order 42".into());
        request.metadata.insert("order_id".into(), "42".into());
        let intent = app.create(request).await;
        assert!(intent.id.starts_with("pi_"));
        assert_eq!(intent.object, "payment_intent");
        assert_eq!(status(&intent), S::RequiresPaymentMethod);
        assert_eq!((intent.amount, intent.amount_received, intent.amount_capturable), (2_000, 0, 0));
        assert_eq!(intent.currency, "usd");
        assert_eq!(intent.customer.as_deref(), Some("cus_test"));
        assert_eq!(intent.description.as_deref(), Some("Order 42"));
        assert_eq!(intent.metadata["order_id"], "42");
        assert!(intent.client_secret.as_deref().unwrap().starts_with(&format!("{}_secret_", intent.id)));
        assert!(!intent.livemode);
        let fetched = app.intents.clone().get_payment_intent(authorized(pb::GetPaymentIntentRequest { id: intent.id.clone(), client_secret: None })).await.unwrap().into_inner();
        assert_eq!(fetched, intent);
        let events = app.first_events(1).await;
        assert_eq!(events[0].r#type, "payment_intent.created");
        assert_eq!(events[0].object_id, intent.id);
    };

    confirming_with_a_visa_card_succeeds => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        assert_eq!(status(&intent), S::Succeeded);
        assert_eq!(intent.amount_received, 2_000);
        assert!(intent.latest_charge.as_deref().unwrap().starts_with("ch_"));
        let types: Vec<String> = app.first_events(2).await.into_iter().map(|e| e.r#type).collect();
        assert_eq!(types, ["payment_intent.created", "payment_intent.succeeded"]);
    };

    a_declined_card_returns_the_intent_with_the_error => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_chargeDeclinedInsufficientFunds")).await;
        assert_eq!(status(&intent), S::RequiresPaymentMethod);
        let error = intent.last_payment_error.clone().unwrap();
        assert_eq!(error.code.as_deref(), Some("card_declined"));
        assert_eq!(error.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(intent.payment_method, None);
        // Retry with a good card.
        let retried = app.intents.clone().confirm_payment_intent(authorized(pb::ConfirmPaymentIntentRequest {
            id: intent.id.clone(), payment_method: Some("pm_card_visa".into()), ..Default::default()
        })).await.unwrap().into_inner();
        assert_eq!(status(&retried), S::Succeeded);
        assert_eq!(retried.last_payment_error, None);
        let types: Vec<String> = app.first_events(3).await.into_iter().map(|e| e.r#type).collect();
        assert_eq!(types, ["payment_intent.created", "payment_intent.payment_failed", "payment_intent.succeeded"]);
    };

    a_bank_debit_stays_processing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(5_000, "pm_us_bank_account")).await;
        assert_eq!(status(&intent), S::Processing);
        assert_eq!(intent.amount_received, 0);
        let error = app.intents.clone().capture_payment_intent(authorized(pb::CapturePaymentIntentRequest {
            id: intent.id.clone(), ..Default::default()
        })).await.unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition);
        assert_eq!(reason(&error), "payment_intent_unexpected_state");
    };

    manual_capture_holds_then_captures_part => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = confirmed(3_000, "pm_card_visa");
        request.capture_method = Some(pb::PaymentIntentCaptureMethod::Manual as i32);
        let intent = app.create(request).await;
        assert_eq!(status(&intent), S::RequiresCapture);
        assert_eq!(intent.amount_capturable, 3_000);

        let too_much = app.intents.clone().capture_payment_intent(authorized(pb::CapturePaymentIntentRequest {
            id: intent.id.clone(), amount_to_capture: Some(3_001), ..Default::default()
        })).await.unwrap_err();
        assert_eq!(too_much.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&too_much), ["amount_to_capture"]);

        let captured = app.intents.clone().capture_payment_intent(authorized(pb::CapturePaymentIntentRequest {
            id: intent.id.clone(), amount_to_capture: Some(2_500), ..Default::default()
        })).await.unwrap().into_inner();
        assert_eq!(status(&captured), S::Succeeded);
        assert_eq!((captured.amount_received, captured.amount_capturable), (2_500, 0));
        let types: Vec<String> = app.first_events(3).await.into_iter().map(|e| e.r#type).collect();
        assert_eq!(types, ["payment_intent.created", "payment_intent.amount_capturable_updated", "payment_intent.succeeded"]);
    };

    cancel_is_allowed_until_the_payment_succeeds => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(create(1_000)).await;
        let canceled = app.intents.clone().cancel_payment_intent(authorized(pb::CancelPaymentIntentRequest {
            id: intent.id.clone(),
            cancellation_reason: Some(pb::PaymentIntentCancellationReason::RequestedByCustomer as i32),
        })).await.unwrap().into_inner();
        assert_eq!(status(&canceled), S::Canceled);
        assert!(canceled.canceled_at.is_some());
        let again = app.intents.clone().cancel_payment_intent(authorized(pb::CancelPaymentIntentRequest {
            id: intent.id.clone(), cancellation_reason: None,
        })).await.unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition);

        let paid = app.create(confirmed(1_000, "pm_card_visa")).await;
        let refused = app.intents.clone().cancel_payment_intent(authorized(pb::CancelPaymentIntentRequest {
            id: paid.id.clone(), cancellation_reason: None,
        })).await.unwrap_err();
        assert_eq!(reason(&refused), "payment_intent_unexpected_state");
        let void_reason = app.intents.clone().cancel_payment_intent(authorized(pb::CancelPaymentIntentRequest {
            id: app.create(create(1_000)).await.id,
            cancellation_reason: Some(pb::PaymentIntentCancellationReason::VoidInvoice as i32),
        })).await.unwrap_err();
        assert_eq!(violated_fields(&void_reason), ["cancellation_reason"]);
    };

    update_changes_what_the_status_allows => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = create(1_000);
        request.metadata.insert("keep".into(), "1".into());
        request.metadata.insert("drop".into(), "2".into());
        let intent = app.create(request).await;
        let mut update = pb::UpdatePaymentIntentRequest {
            id: intent.id.clone(),
            amount: Some(1_500),
            payment_method: Some("pm_card_visa".into()),
            description: Some("updated".into()),
            ..Default::default()
        };
        update.metadata.insert("drop".into(), String::new());
        update.metadata.insert("new".into(), "3".into());
        let updated = app.intents.clone().update_payment_intent(authorized(update)).await.unwrap().into_inner();
        assert_eq!(updated.amount, 1_500);
        assert_eq!(status(&updated), S::RequiresConfirmation);
        assert_eq!(updated.description.as_deref(), Some("updated"));
        assert_eq!(updated.metadata.keys().collect::<Vec<_>>(), ["keep", "new"]);

        let paid = app.intents.clone().confirm_payment_intent(authorized(pb::ConfirmPaymentIntentRequest {
            id: intent.id.clone(), ..Default::default()
        })).await.unwrap().into_inner();
        assert_eq!(status(&paid), S::Succeeded);
        let refused = app.intents.clone().update_payment_intent(authorized(pb::UpdatePaymentIntentRequest {
            id: intent.id.clone(), amount: Some(9_999), description: Some("ignored".into()), ..Default::default()
        })).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        let unchanged = app.intents.clone().get_payment_intent(authorized(pb::GetPaymentIntentRequest { id: intent.id.clone(), client_secret: None })).await.unwrap().into_inner();
        assert_eq!(unchanged, paid, "a refused update changes nothing");
    };

    bad_input_is_refused_with_the_field_and_changes_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let cases: Vec<(pb::CreatePaymentIntentRequest, Code, &str, &str)> = vec![
            (create(0), Code::InvalidArgument, "parameter_invalid_integer", "amount"),
            (create(-5), Code::InvalidArgument, "parameter_invalid_integer", "amount"),
            (create(49), Code::InvalidArgument, "amount_too_small", "amount"),
            (create(100_000_000), Code::InvalidArgument, "amount_too_large", "amount"),
            (pb::CreatePaymentIntentRequest { currency: "xx".into(), ..create(1_000) }, Code::InvalidArgument, "invalid_currency", "currency"),
            (pb::CreatePaymentIntentRequest { currency: "USD".into(), ..create(1_000) }, Code::InvalidArgument, "invalid_currency", "currency"),
            (pb::CreatePaymentIntentRequest { currency: String::new(), ..create(1_000) }, Code::InvalidArgument, "parameter_missing", "currency"),
            (pb::CreatePaymentIntentRequest { customer: Some("acct_x".into()), ..create(1_000) }, Code::InvalidArgument, "parameter_invalid", "customer"),
            (confirmed(1_000, "pm_card_unknown"), Code::NotFound, "resource_missing", "payment_method"),
            (pb::CreatePaymentIntentRequest { description: Some("x".repeat(1_001)), ..create(1_000) }, Code::InvalidArgument, "parameter_invalid", "description"),
            (pb::CreatePaymentIntentRequest { return_url: Some("https://x".into()), ..create(1_000) }, Code::InvalidArgument, "parameter_invalid", "return_url"),
            (pb::CreatePaymentIntentRequest { application_fee_amount: Some(10), ..create(1_000) }, Code::InvalidArgument, "parameter_invalid", "application_fee_amount"),
            (pb::CreatePaymentIntentRequest { payment_method_types: vec!["ideal".into()], ..create(1_000) }, Code::InvalidArgument, "payment_intent_invalid_parameter", "payment_method_types[0]"),
            (pb::CreatePaymentIntentRequest { confirm: Some(true), ..create(1_000) }, Code::FailedPrecondition, "payment_intent_unexpected_state", "payment_method"),
            (pb::CreatePaymentIntentRequest { receipt_email: Some("not-an-email".into()), ..create(1_000) }, Code::InvalidArgument, "parameter_invalid", "receipt_email"),
        ];
        for (request, code, expected_reason, field) in cases {
            let label = format!("{request:?}");
            let error = app.intents.clone().create_payment_intent(authorized(request)).await.unwrap_err();
            assert_eq!(error.code(), code, "{label}");
            assert_eq!(reason(&error), expected_reason, "{label}");
            assert_eq!(violated_fields(&error), [field], "{label}");
        }
        let mut metadata = create(1_000);
        metadata.metadata.insert("k".repeat(41), "v".into());
        let error = app.intents.clone().create_payment_intent(authorized(metadata)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert_eq!(app.count().await, 0, "no refused request created anything");
    };

    unknown_and_malformed_ids_are_not_found => |database: TestDatabase| async move {
        let app = spawn(database).await;
        for id in ["pi_0000000000000000000000", "in_123", "", "pi_bad id"] {
            let error = app.intents.clone().get_payment_intent(authorized(pb::GetPaymentIntentRequest { id: id.into(), client_secret: None })).await.unwrap_err();
            assert_eq!(error.code(), Code::NotFound, "{id}");
            assert_eq!(reason(&error), "resource_missing");
        }
        let intent = app.create(create(1_000)).await;
        let error = app.intents.clone().get_payment_intent(authorized(pb::GetPaymentIntentRequest {
            id: intent.id.clone(), client_secret: Some("pi_x_secret_wrong".into()),
        })).await.unwrap_err();
        assert_eq!(violated_fields(&error), ["client_secret"]);
    };

    lists_page_newest_first_with_stripe_cursors => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut ids = Vec::new();
        for i in 0..25 {
            let mut request = create(1_000 + i);
            if i % 5 == 0 { request.customer = Some("cus_special".into()); }
            ids.push(app.create(request).await.id);
        }
        ids.reverse(); // newest first
        let list = |request: pb::ListPaymentIntentsRequest| {
            let mut client = app.intents.clone();
            async move { client.list_payment_intents(authorized(request)).await.map(|r| r.into_inner()) }
        };
        let first = list(pb::ListPaymentIntentsRequest::default()).await.unwrap();
        assert_eq!(first.data.iter().map(|i| &i.id).collect::<Vec<_>>(), ids[..10].iter().collect::<Vec<_>>());
        assert!(first.has_more);
        let second = list(pb::ListPaymentIntentsRequest { starting_after: Some(ids[9].clone()), limit: Some(10), ..Default::default() }).await.unwrap();
        assert_eq!(second.data[0].id, ids[10]);
        let last = list(pb::ListPaymentIntentsRequest { starting_after: Some(ids[19].clone()), limit: Some(10), ..Default::default() }).await.unwrap();
        assert_eq!(last.data.len(), 5);
        assert!(!last.has_more);
        let back = list(pb::ListPaymentIntentsRequest { ending_before: Some(ids[10].clone()), limit: Some(3), ..Default::default() }).await.unwrap();
        assert_eq!(back.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), ids[7..10].to_vec());
        assert!(back.has_more);
        let special = list(pb::ListPaymentIntentsRequest { customer: Some("cus_special".into()), limit: Some(100), ..Default::default() }).await.unwrap();
        assert_eq!(special.data.len(), 5);
        let future = list(pb::ListPaymentIntentsRequest {
            created: Some(settle_proto::common::v1::RangeFilter { gt: Some(i64::from(u32::MAX)), ..Default::default() }),
            ..Default::default()
        }).await.unwrap();
        assert!(future.data.is_empty());
        let bad = list(pb::ListPaymentIntentsRequest { limit: Some(101), ..Default::default() }).await.unwrap_err();
        assert_eq!(violated_fields(&bad), ["limit"]);
        let both = list(pb::ListPaymentIntentsRequest { starting_after: Some(ids[0].clone()), ending_before: Some(ids[1].clone()), ..Default::default() }).await.unwrap_err();
        assert_eq!(reason(&both), "parameters_exclusive");
    };

    search_understands_stripes_query_language => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut tagged = confirmed(5_000, "pm_card_visa");
        tagged.metadata.insert("order_id".into(), "6735".into());
        let tagged = app.create(tagged).await;
        app.create(create(700)).await;
        app.create(confirmed(900, "pm_card_visa")).await;
        let search = |query: &str, limit: Option<i32>, page: Option<String>| {
            let mut client = app.intents.clone();
            let request = pb::SearchPaymentIntentsRequest { query: query.to_owned(), limit, page };
            async move { client.search_payment_intents(authorized(request)).await.map(|r| r.into_inner()) }
        };
        let hit = search("status:'succeeded' AND metadata['order_id']:'6735'", None, None).await.unwrap();
        assert_eq!(hit.data.iter().map(|i| &i.id).collect::<Vec<_>>(), [&tagged.id]);
        assert_eq!(hit.total_count, 1);
        let big = search("amount>=900", None, None).await.unwrap();
        assert_eq!(big.total_count, 2);
        let either = search("amount<800 OR metadata['order_id']:'6735'", None, None).await.unwrap();
        assert_eq!(either.total_count, 2);
        let not = search("-status:'succeeded'", None, None).await.unwrap();
        assert_eq!(not.total_count, 1);
        let paged = search("amount>0", Some(2), None).await.unwrap();
        assert!(paged.has_more);
        let rest = search("amount>0", Some(2), paged.next_page.clone()).await.unwrap();
        assert_eq!(rest.data.len(), 1);
        assert!(!rest.has_more);
        for bad in ["status:succeeded", "colour:'red'", "amount>1 AND status:'x' OR amount<2", ""] {
            let error = search(bad, None, None).await.unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}");
            assert_eq!(violated_fields(&error), ["query"], "{bad:?}");
        }
    };
}
