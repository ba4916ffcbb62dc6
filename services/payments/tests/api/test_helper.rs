//! TestHelperService over gRPC: settling bank debits.

use settle_platform::auth::{ACCOUNT_HEADER, DEV_ACCOUNT, LIVEMODE_HEADER};
use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::PaymentIntentStatus as S;
use settle_proto::settle::payments::v1::test_helper_service_client::TestHelperServiceClient;
use settle_testkit::{
    INTERNAL_KEY, LIVE_API_KEY, OTHER_API_KEY, authorized, idempotent, reason, violated_fields, with_key,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{TestApp, confirmed, create, spawn, status};

fn helpers(app: &TestApp) -> TestHelperServiceClient<Channel> {
    TestHelperServiceClient::new(app.server.channel())
}

fn settle(id: &str, outcome: pb::SettlementOutcome) -> pb::SettlePaymentIntentRequest {
    pb::SettlePaymentIntentRequest { id: id.to_owned(), outcome: outcome as i32, ..Default::default() }
}

async fn get(app: &TestApp, id: &str) -> pb::PaymentIntent {
    app.intents
        .clone()
        .get_payment_intent(authorized(pb::GetPaymentIntentRequest {
            id: id.to_owned(),
            client_secret: None,
        }))
        .await
        .unwrap()
        .into_inner()
}

backend_tests! {
    a_settled_debit_succeeds_and_receives_the_amount => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(5_000, "pm_us_bank_account")).await;
        assert_eq!(status(&intent), S::Processing);
        let settled = helpers(&app).settle_payment_intent(authorized(settle(&intent.id, pb::SettlementOutcome::Succeeded))).await.unwrap().into_inner();
        assert_eq!(status(&settled), S::Succeeded);
        assert_eq!(settled.amount_received, 5_000);
        assert_eq!(settled.latest_charge, intent.latest_charge);
        assert_eq!(get(&app, &intent.id).await, settled);
        let events = app.first_events(3).await;
        let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
        assert_eq!(types, ["payment_intent.created", "payment_intent.processing", "payment_intent.succeeded"]);
        let payload: pb::PaymentIntent = events[2].data.as_ref().unwrap().object.as_ref().unwrap().to_msg().unwrap();
        assert_eq!(payload, settled);
    };

    a_failed_debit_returns_to_requires_payment_method_with_the_error => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(5_000, "pm_us_bank_account")).await;
        let failed = helpers(&app).settle_payment_intent(authorized(settle(&intent.id, pb::SettlementOutcome::Failed))).await.unwrap().into_inner();
        assert_eq!(status(&failed), S::RequiresPaymentMethod);
        assert_eq!(failed.amount_received, 0);
        assert_eq!(failed.payment_method, None);
        let error = failed.last_payment_error.clone().unwrap();
        assert_eq!(error.code.as_deref(), Some("payment_intent_payment_attempt_failed"));
        assert_eq!(error.payment_method.as_deref(), Some("pm_us_bank_account"));
        assert_eq!(error.payment_method_type.as_deref(), Some("us_bank_account"));
        let types: Vec<String> = app.first_events(3).await.into_iter().map(|e| e.r#type).collect();
        assert_eq!(types, ["payment_intent.created", "payment_intent.processing", "payment_intent.payment_failed"]);

        // Confirmed again and failed with the caller's own code and message.
        let retried = app.intents.clone().confirm_payment_intent(authorized(pb::ConfirmPaymentIntentRequest {
            id: intent.id.clone(), payment_method: Some("pm_us_bank_account".into()), ..Default::default()
        })).await.unwrap().into_inner();
        assert_eq!(status(&retried), S::Processing);
        assert_eq!(retried.last_payment_error, None);
        let custom = helpers(&app).settle_payment_intent(authorized(pb::SettlePaymentIntentRequest {
            failure_code: Some("insufficient_funds".into()),
            failure_message: Some("The account has insufficient funds.".into()),
            ..settle(&intent.id, pb::SettlementOutcome::Failed)
        })).await.unwrap().into_inner();
        let error = custom.last_payment_error.unwrap();
        assert_eq!(error.code.as_deref(), Some("insufficient_funds"));
        assert_eq!(error.message.as_deref(), Some("The account has insufficient funds."));
    };

    only_a_processing_intent_can_be_settled => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let paid = app.create(confirmed(1_000, "pm_card_visa")).await;
        let unpaid = app.create(create(1_000)).await;
        for intent in [&paid, &unpaid] {
            for outcome in [pb::SettlementOutcome::Succeeded, pb::SettlementOutcome::Failed] {
                let error = helpers(&app).settle_payment_intent(authorized(settle(&intent.id, outcome))).await.unwrap_err();
                assert_eq!(error.code(), Code::FailedPrecondition);
                assert_eq!(reason(&error), "payment_intent_unexpected_state");
            }
            assert_eq!(&get(&app, &intent.id).await, intent, "a refused settlement changes nothing");
        }
        let processing = app.create(confirmed(1_000, "pm_us_bank_account")).await;
        helpers(&app).settle_payment_intent(authorized(settle(&processing.id, pb::SettlementOutcome::Succeeded))).await.unwrap();
        let twice = helpers(&app).settle_payment_intent(authorized(settle(&processing.id, pb::SettlementOutcome::Failed))).await.unwrap_err();
        assert_eq!(twice.message(), "You cannot settle this PaymentIntent because it has a status of succeeded.");

        let missing = helpers(&app).settle_payment_intent(authorized(settle(&processing.id, pb::SettlementOutcome::Unspecified))).await.unwrap_err();
        assert_eq!((missing.code(), reason(&missing), violated_fields(&missing)), (Code::InvalidArgument, "parameter_missing".to_owned(), vec!["outcome".to_owned()]));
        let mixed = helpers(&app).settle_payment_intent(authorized(pb::SettlePaymentIntentRequest {
            failure_code: Some("x".into()), ..settle(&processing.id, pb::SettlementOutcome::Succeeded)
        })).await.unwrap_err();
        assert_eq!(violated_fields(&mixed), ["failure_code"]);
        for id in ["pi_0000000000000000000000", "re_123", ""] {
            let error = helpers(&app).settle_payment_intent(authorized(settle(id, pb::SettlementOutcome::Succeeded))).await.unwrap_err();
            assert_eq!(error.code(), Code::NotFound, "{id:?}");
        }
    };

    live_mode_and_other_accounts_cannot_settle => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(1_000, "pm_us_bank_account")).await;
        let live = with_key(settle(&intent.id, pb::SettlementOutcome::Succeeded), LIVE_API_KEY);
        let refused = helpers(&app).settle_payment_intent(live).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(reason(&refused), "permission_denied");
        // The internal key is not for test helpers at all, whatever mode it names.
        let mut internal = with_key(settle(&intent.id, pb::SettlementOutcome::Succeeded), INTERNAL_KEY);
        internal.metadata_mut().insert(ACCOUNT_HEADER, DEV_ACCOUNT.parse().unwrap());
        internal.metadata_mut().insert(LIVEMODE_HEADER, "false".parse().unwrap());
        let refused = helpers(&app).settle_payment_intent(internal).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused)), (Code::PermissionDenied, "permission_denied".to_owned()));
        let theirs = helpers(&app).settle_payment_intent(with_key(settle(&intent.id, pb::SettlementOutcome::Succeeded), OTHER_API_KEY)).await.unwrap_err();
        assert_eq!(theirs.code(), Code::NotFound);
        assert_eq!(get(&app, &intent.id).await, intent);
    };

    a_retried_settlement_replays_the_first_response => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(1_000, "pm_us_bank_account")).await;
        let request = settle(&intent.id, pb::SettlementOutcome::Succeeded);
        let first = helpers(&app).settle_payment_intent(idempotent(request.clone(), "settle-1")).await.unwrap().into_inner();
        let again = helpers(&app).settle_payment_intent(idempotent(request, "settle-1")).await.unwrap().into_inner();
        assert_eq!(first, again, "a retry is not refused as already settled");
        let other = helpers(&app).settle_payment_intent(idempotent(settle(&intent.id, pb::SettlementOutcome::Failed), "settle-1")).await.unwrap_err();
        assert_eq!(reason(&other), "idempotency_error");
        let succeeded = app.first_events(3).await.into_iter().filter(|e| e.r#type == "payment_intent.succeeded").count();
        assert_eq!(succeeded, 1);
    };
}
