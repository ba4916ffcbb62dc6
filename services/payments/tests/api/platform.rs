//! The platform layers as a client sees them: keys, tenancy, idempotency, events, health,
//! reflection and graceful shutdown.

use std::collections::HashSet;

use settle_platform::auth::{ACCOUNT_HEADER, DEV_ACCOUNT, LIVEMODE_HEADER};
use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1 as ev;
use settle_proto::settle::payments::v1 as pb;
use settle_testkit::{
    OTHER_API_KEY, authorized, idempotent, internal, internal_in, reason, violated_fields, with_key,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{confirmed, create, spawn};

backend_tests! {
    a_request_over_one_mebibyte_is_refused_with_a_status => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let huge = pb::CreatePaymentIntentRequest {
            description: Some("x".repeat(settle_platform::limits::MAX_REQUEST_BYTES)),
            ..create(1_000)
        };
        let refused = app.intents.clone().max_encoding_message_size(usize::MAX).create_payment_intent(authorized(huge)).await.unwrap_err();
        assert!(matches!(refused.code(), Code::OutOfRange | Code::ResourceExhausted), "{refused:?}");
        assert_eq!(app.count().await, 0);
        app.create(create(1_000)).await; // the server carries on
    };

    forged_account_and_mode_headers_do_not_change_what_an_api_key_acts_for => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut forged = with_key(create(1_000), OTHER_API_KEY);
        forged.metadata_mut().insert(ACCOUNT_HEADER, DEV_ACCOUNT.parse().unwrap());
        forged.metadata_mut().insert(LIVEMODE_HEADER, "true".parse().unwrap());
        let intent = app.intents.clone().create_payment_intent(forged).await.unwrap().into_inner();
        assert!(!intent.livemode, "a test key stays in test mode");
        let get = |key| with_key(pb::GetPaymentIntentRequest { id: intent.id.clone(), client_secret: None }, key);
        assert!(app.intents.clone().get_payment_intent(get(OTHER_API_KEY)).await.is_ok(), "the key's own account");
        let dev = app.intents.clone().get_payment_intent(get(settle_platform::auth::DEV_API_KEY)).await.unwrap_err();
        assert_eq!(dev.code(), Code::NotFound, "not the account the header named");
    };

    the_internal_key_reaches_only_what_services_call_on_each_other => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(create(1_000)).await;
        let get = || pb::GetPaymentIntentRequest { id: intent.id.clone(), client_secret: None };
        let fetched = app.intents.clone().get_payment_intent(internal(get(), DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(fetched.id, intent.id);
        // The same call in live mode does not see the test object.
        let live = app.intents.clone().get_payment_intent(internal_in(get(), DEV_ACCOUNT, true)).await.unwrap_err();
        assert_eq!(live.code(), Code::NotFound);
        // Public methods no service calls on another are refused to it.
        let listed = app.intents.clone().list_payment_intents(internal(pb::ListPaymentIntentsRequest::default(), DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!((listed.code(), reason(&listed)), (Code::PermissionDenied, "permission_denied".to_owned()));
        let mut refunds = settle_proto::settle::payments::v1::refund_service_client::RefundServiceClient::new(app.server.channel());
        let refund = refunds.create_refund(internal(pb::CreateRefundRequest { payment_intent: Some(intent.id.clone()), ..Default::default() }, DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!(refund.code(), Code::PermissionDenied);
        // An internal call must say its mode exactly.
        let mut vague = internal(get(), DEV_ACCOUNT);
        vague.metadata_mut().insert(LIVEMODE_HEADER, "yes".parse().unwrap());
        let vague = app.intents.clone().get_payment_intent(vague).await.unwrap_err();
        assert_eq!(vague.code(), Code::Unauthenticated);
    };

    calls_without_a_valid_key_are_refused_and_change_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let missing = app.intents.clone().create_payment_intent(tonic::Request::new(create(1_000))).await.unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated);
        assert_eq!(reason(&missing), "api_key_missing");
        let wrong = app.intents.clone().create_payment_intent(with_key(create(1_000), "sk_test_nope_nope")).await.unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
        assert_eq!(reason(&wrong), "api_key_invalid");
        assert_eq!(app.count().await, 0);
    };

    another_accounts_objects_do_not_exist => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mine = app.create(create(1_000)).await;
        let theirs = app.intents.clone().get_payment_intent(with_key(pb::GetPaymentIntentRequest { id: mine.id.clone(), client_secret: None }, OTHER_API_KEY)).await.unwrap_err();
        assert_eq!(theirs.code(), Code::NotFound);
        assert_eq!(reason(&theirs), "resource_missing");
        let cancel = app.intents.clone().cancel_payment_intent(with_key(pb::CancelPaymentIntentRequest { id: mine.id.clone(), cancellation_reason: None }, OTHER_API_KEY)).await.unwrap_err();
        assert_eq!(cancel.code(), Code::NotFound);
        let listed = app.intents.clone().list_payment_intents(with_key(pb::ListPaymentIntentsRequest::default(), OTHER_API_KEY)).await.unwrap().into_inner();
        assert!(listed.data.is_empty());
        let events = app.events.clone().list_events(with_key(ev::ListEventsRequest::default(), OTHER_API_KEY)).await.unwrap().into_inner();
        assert!(events.data.is_empty());
        let still = app.intents.clone().get_payment_intent(authorized(pb::GetPaymentIntentRequest { id: mine.id, client_secret: None })).await.unwrap().into_inner();
        assert_eq!(settle_proto::settle::payments::v1::PaymentIntentStatus::try_from(still.status).unwrap(), pb::PaymentIntentStatus::RequiresPaymentMethod);
    };

    the_same_idempotency_key_replays_the_first_response => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let first = app.intents.clone().create_payment_intent(idempotent(confirmed(2_000, "pm_card_visa"), "order-1")).await.unwrap().into_inner();
        let again = app.intents.clone().create_payment_intent(idempotent(confirmed(2_000, "pm_card_visa"), "order-1")).await.unwrap().into_inner();
        assert_eq!(first, again);
        assert_eq!(app.count().await, 1);
        let other = app.intents.clone().create_payment_intent(idempotent(confirmed(3_000, "pm_card_visa"), "order-1")).await.unwrap_err();
        assert_eq!(other.code(), Code::InvalidArgument);
        assert_eq!(reason(&other), "idempotency_error");
        assert_eq!(violated_fields(&other), ["idempotency-key"]);
        assert_eq!(app.count().await, 1);
        // Keys are per account: the other account's call with the same key is its own.
        let theirs = app.intents.clone().create_payment_intent({
            let mut r = with_key(confirmed(2_000, "pm_card_visa"), OTHER_API_KEY);
            r.metadata_mut().insert("idempotency-key", "order-1".parse().unwrap());
            r
        }).await.unwrap().into_inner();
        assert_ne!(theirs.id, first.id);
        // A replayed mutation returns the stored result too.
        let intent = app.create(create(1_000)).await;
        let cancel = || pb::CancelPaymentIntentRequest { id: intent.id.clone(), cancellation_reason: None };
        let canceled = app.intents.clone().cancel_payment_intent(idempotent(cancel(), "cancel-1")).await.unwrap().into_inner();
        let replayed = app.intents.clone().cancel_payment_intent(idempotent(cancel(), "cancel-1")).await.unwrap().into_inner();
        assert_eq!(canceled, replayed, "a retried cancel is not refused as already canceled");
    };

    many_concurrent_creates_with_one_key_make_one_intent => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let calls = (0..64).map(|_| {
            let mut client = app.intents.clone();
            tokio::spawn(async move { client.create_payment_intent(idempotent(confirmed(2_000, "pm_card_visa"), "race")).await })
        });
        let mut ids = HashSet::new();
        let mut in_use = 0;
        for result in futures::future::join_all(calls).await {
            match result.unwrap() {
                Ok(intent) => { ids.insert(intent.into_inner().id); }
                Err(status) => {
                    assert_eq!(status.code(), Code::Aborted, "{status:?}");
                    assert_eq!(reason(&status), "idempotency_key_in_use");
                    in_use += 1;
                }
            }
        }
        println!("{backend}: 64 concurrent CreatePaymentIntent with one key → {} distinct intent(s), {} told in use", ids.len(), in_use);
        assert_eq!(ids.len(), 1);
        assert_eq!(app.count().await, 1);
        let events = app.first_events(2).await;
        assert_eq!(events.iter().filter(|e| e.r#type == "payment_intent.created").count(), 1);
    };

    events_stream_in_commit_order_and_resume_from_a_cursor => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let a = app.create(confirmed(1_000, "pm_card_visa")).await; // created, succeeded
        let b = app.create(create(1_000)).await; // created
        let first = app.stream_events(None, 3).await;
        let seen: Vec<(String, String, i64)> = first.iter().map(|(e, _)| (e.r#type.clone(), e.object_id.clone(), e.object_sequence)).collect();
        assert_eq!(seen, vec![
            ("payment_intent.created".into(), a.id.clone(), 1),
            ("payment_intent.succeeded".into(), a.id.clone(), 2),
            ("payment_intent.created".into(), b.id.clone(), 1),
        ]);
        let payload: pb::PaymentIntent = first[1].0.data.as_ref().unwrap().object.as_ref().unwrap().to_msg().unwrap();
        assert_eq!(payload.id, a.id);
        // Resume after the second event; then the stream follows new commits.
        let cursor = first[1].1.clone();
        let follower = {
            let app_events = app.events.clone();
            tokio::spawn(async move {
                let mut stream = app_events.clone().stream_events(authorized(ev::StreamEventsRequest { cursor: Some(cursor), types: vec![], all_accounts: false })).await.unwrap().into_inner();
                let mut out = Vec::new();
                while out.len() < 2 {
                    let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
                    out.push(next.event.unwrap());
                }
                out
            })
        };
        let c = app.intents.clone().cancel_payment_intent(authorized(pb::CancelPaymentIntentRequest { id: b.id.clone(), cancellation_reason: None })).await.unwrap().into_inner();
        let resumed = follower.await.unwrap();
        assert_eq!(resumed[0].object_id, b.id);
        assert_eq!(resumed[0].r#type, "payment_intent.created");
        assert_eq!((resumed[1].r#type.as_str(), resumed[1].object_sequence), ("payment_intent.canceled", 2));
        assert_eq!(c.id, b.id);

        // List, filter and get.
        let listed = app.events.clone().list_events(authorized(ev::ListEventsRequest { r#type: Some("payment_intent.created".into()), ..Default::default() })).await.unwrap().into_inner();
        assert_eq!(listed.data.len(), 2);
        assert!(listed.data[0].created >= listed.data[1].created);
        let wildcard = app.events.clone().list_events(authorized(ev::ListEventsRequest { types: vec!["payment_intent.*".into()], limit: Some(2), ..Default::default() })).await.unwrap().into_inner();
        assert_eq!(wildcard.data.len(), 2);
        assert!(wildcard.has_more);
        let got = app.events.clone().get_event(authorized(ev::GetEventRequest { id: listed.data[0].id.clone() })).await.unwrap().into_inner();
        assert_eq!(got.id, listed.data[0].id);
        assert_eq!(got.object, "event");
        let bad_cursor = app.events.clone().stream_events(authorized(ev::StreamEventsRequest { cursor: Some("nope".into()), types: vec![], all_accounts: false })).await.unwrap_err();
        assert_eq!(violated_fields(&bad_cursor), ["cursor"]);
    };

    health_and_reflection_need_no_key_and_list_the_services => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut health = HealthClient::new(app.server.channel());
        for service in ["", "settle.payments.v1.PaymentIntentService", "settle.events.v1.EventService", "settle.liveness"] {
            let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
        }
        let services = list_services_v1(app.server.channel()).await;
        assert!(services.contains(&"settle.payments.v1.PaymentIntentService".to_owned()), "{services:?}");
        assert!(services.contains(&"grpc.health.v1.Health".to_owned()));
        assert!(!services.iter().any(|s| s.starts_with("settle.invoices")), "only what this server serves");
        let alpha = list_services_v1alpha(app.server.channel()).await;
        assert!(alpha.contains(&"settle.payments.v1.PaymentIntentService".to_owned()), "{alpha:?}");
    };

    shutdown_turns_health_not_serving_and_ends_streams => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut watch = HealthClient::new(app.server.channel()).watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
        let mut events = app.events.clone().stream_events(authorized(ev::StreamEventsRequest::default())).await.unwrap().into_inner();
        let server = app.server;
        let stopping = tokio::spawn(server.stop());
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), watch.message()).await.expect("health changes before the drain ends");
        assert_eq!(next.unwrap().unwrap().status, ServingStatus::NotServing as i32);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), events.message()).await.expect("event stream ends on shutdown");
        assert!(matches!(ended, Ok(None) | Err(_)));
        tokio::time::timeout(std::time::Duration::from_secs(10), stopping).await.expect("server stops within the grace period").unwrap();
    };
}

async fn list_services_v1(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    match responses.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection response {other:?}"),
    }
}

async fn list_services_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    match responses.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection response {other:?}"),
    }
}
