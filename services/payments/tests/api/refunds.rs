//! RefundService over gRPC.

use settle_payments::store::payment_intents::{self as intents_store, AddRefunded};
use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::backend_tests;
use settle_platform::db::{Db, PoolSettings};
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1 as ev;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::refund_service_client::RefundServiceClient;
use settle_proto::settle::payments::v1::test_helper_service_client::TestHelperServiceClient;
use settle_testkit::{OTHER_API_KEY, authorized, idempotent, reason, violated_fields, with_key};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestApp, confirmed, create, spawn};

fn refunds(app: &TestApp) -> RefundServiceClient<Channel> {
    RefundServiceClient::new(app.server.channel())
}

fn of_intent(id: &str, amount: Option<i64>) -> pb::CreateRefundRequest {
    pb::CreateRefundRequest { payment_intent: Some(id.to_owned()), amount, ..Default::default() }
}

async fn refund(app: &TestApp, request: pb::CreateRefundRequest) -> Result<pb::Refund, Status> {
    refunds(app).create_refund(authorized(request)).await.map(|r| r.into_inner())
}

async fn list(app: &TestApp, request: pb::ListRefundsRequest) -> Result<pb::ListRefundsResponse, Status> {
    refunds(app).list_refunds(authorized(request)).await.map(|r| r.into_inner())
}

async fn all_of_intent(app: &TestApp, id: &str) -> Vec<pb::Refund> {
    list(
        app,
        pb::ListRefundsRequest {
            payment_intent: Some(id.to_owned()),
            limit: Some(100),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .data
}

/// The intent's `amount_refunded` column, read straight from the database.
async fn amount_refunded(app: &TestApp, id: &str) -> i64 {
    let db = Db::connect(app.database.url(), &PoolSettings::default()).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let refunded = intents_store::amount_refunded(&mut tx, &settle_platform::Scope::test(DEV_ACCOUNT), id)
        .await
        .unwrap()
        .unwrap();
    tx.rollback().await.unwrap();
    db.close().await;
    refunded
}

async fn get_intent(app: &TestApp, id: &str) -> pb::PaymentIntent {
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

/// The first `n` events of `event_type`, oldest first, from `StreamEvents` (which waits for the
/// outbox to number them). To show that no other event of the type was written, tests write a
/// known last event and check it is the `n`th.
async fn events_of_type(app: &TestApp, event_type: &str, n: usize) -> Vec<ev::Event> {
    let mut stream = app
        .events
        .clone()
        .stream_events(authorized(ev::StreamEventsRequest {
            cursor: None,
            types: vec![event_type.to_owned()],
            all_accounts: false,
        }))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("events arrive within 10 s")
            .unwrap()
            .unwrap();
        out.push(next.event.unwrap());
    }
    out
}

fn payload(event: &ev::Event) -> pb::Refund {
    event.data.as_ref().unwrap().object.as_ref().unwrap().to_msg().unwrap()
}

fn status(refund: &pb::Refund) -> pb::RefundStatus {
    pb::RefundStatus::try_from(refund.status.unwrap()).unwrap()
}

backend_tests! {
    several_partial_refunds_add_up_to_the_whole_payment => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(10_000, "pm_card_visa")).await;
        let charge = intent.latest_charge.clone().unwrap();

        let mut first = of_intent(&intent.id, Some(3_000));
        first.reason = Some(pb::RefundReason::RequestedByCustomer as i32);
        first.metadata.insert("ticket".into(), "T-1".into());
        let first = refund(&app, first).await.unwrap();
        assert!(first.id.starts_with("re_"), "{}", first.id);
        assert_eq!(first.object, "refund");
        assert_eq!((first.amount, first.currency.as_str()), (3_000, "usd"));
        assert_eq!(status(&first), pb::RefundStatus::Succeeded);
        assert_eq!(first.payment_intent.as_deref(), Some(intent.id.as_str()));
        assert_eq!(first.charge.as_deref(), Some(charge.as_str()));
        assert_eq!(first.customer.as_deref(), Some("cus_test"));
        assert_eq!(first.payment_method.as_deref(), Some("pm_card_visa"));
        assert_eq!(first.reason, Some(pb::RefundReason::RequestedByCustomer as i32));
        assert_eq!(first.metadata["ticket"], "T-1");
        assert_eq!(first.destination_details.as_ref().unwrap().r#type, "card");
        assert!(first.created > 0);

        // By charge alone, then by both naming the same payment; the last takes what is left.
        let second = refund(&app, pb::CreateRefundRequest { charge: Some(charge.clone()), amount: Some(2_000), ..Default::default() }).await.unwrap();
        assert_eq!(second.payment_intent.as_deref(), Some(intent.id.as_str()));
        let rest = refund(&app, pb::CreateRefundRequest { charge: Some(charge.clone()), ..of_intent(&intent.id, None) }).await.unwrap();
        assert_eq!(rest.amount, 5_000);
        assert_eq!(amount_refunded(&app, &intent.id).await, 10_000);

        let done = refund(&app, of_intent(&intent.id, Some(1))).await.unwrap_err();
        assert_eq!(done.code(), Code::FailedPrecondition);
        assert_eq!(reason(&done), "charge_already_refunded");
        assert_eq!(done.message(), format!("Charge {charge} has already been refunded."));

        let got = refunds(&app).get_refund(authorized(pb::GetRefundRequest { id: first.id.clone() })).await.unwrap().into_inner();
        assert_eq!(got, first);
        assert_eq!(get_intent(&app, &intent.id).await, intent, "Stripe's intent does not change when refunded");
        let created = events_of_type(&app, "refund.created", 3).await;
        assert_eq!(created.iter().map(payload).collect::<Vec<_>>(), [first, second, rest]);
    };

    a_refund_without_an_amount_refunds_everything => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(4_200, "pm_card_visa")).await;
        let full = refund(&app, of_intent(&intent.id, None)).await.unwrap();
        assert_eq!(full.amount, 4_200);
        assert_eq!(amount_refunded(&app, &intent.id).await, 4_200);
        let again = refund(&app, of_intent(&intent.id, None)).await.unwrap_err();
        assert_eq!(reason(&again), "charge_already_refunded");
        assert_eq!(all_of_intent(&app, &intent.id).await.len(), 1);
    };

    more_than_is_left_is_amount_too_large_and_changes_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(10_000, "pm_card_visa")).await;
        let too_much = refund(&app, of_intent(&intent.id, Some(10_001))).await.unwrap_err();
        assert_eq!(too_much.code(), Code::InvalidArgument);
        assert_eq!(reason(&too_much), "amount_too_large");
        assert_eq!(violated_fields(&too_much), ["amount"]);
        assert_eq!(too_much.message(), "Refund amount (100.01 USD) is greater than unrefunded amount on charge (100.00 USD).");
        refund(&app, of_intent(&intent.id, Some(4_000))).await.unwrap();
        let over = refund(&app, of_intent(&intent.id, Some(6_001))).await.unwrap_err();
        assert_eq!(reason(&over), "amount_too_large");
        assert_eq!(amount_refunded(&app, &intent.id).await, 4_000);
        assert_eq!(all_of_intent(&app, &intent.id).await.len(), 1);
        assert_eq!(refund(&app, of_intent(&intent.id, Some(6_000))).await.unwrap().amount, 6_000);
    };

    only_a_succeeded_payment_can_be_refunded => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let unpaid = app.create(create(1_000)).await;
        let declined = app.create(confirmed(1_000, "pm_card_chargeDeclined")).await;
        let processing = app.create(confirmed(1_000, "pm_us_bank_account")).await;
        let mut manual = confirmed(1_000, "pm_card_visa");
        manual.capture_method = Some(pb::PaymentIntentCaptureMethod::Manual as i32);
        let held = app.create(manual).await;
        let canceled = app.create(create(1_000)).await;
        app.intents.clone().cancel_payment_intent(authorized(pb::CancelPaymentIntentRequest { id: canceled.id.clone(), cancellation_reason: None })).await.unwrap();
        for (intent, status) in [(&unpaid, "requires_payment_method"), (&declined, "requires_payment_method"), (&processing, "processing"), (&held, "requires_capture"), (&canceled, "canceled")] {
            let error = refund(&app, of_intent(&intent.id, None)).await.unwrap_err();
            assert_eq!(error.code(), Code::FailedPrecondition, "{status}");
            assert_eq!(reason(&error), "charge_not_refundable", "{status}");
            assert_eq!(error.message(), format!("This PaymentIntent ({}) does not have a successful charge to refund: its status is {status}.", intent.id));
        }
        // Once the bank debit settles, it can be refunded.
        TestHelperServiceClient::new(app.server.channel()).settle_payment_intent(authorized(pb::SettlePaymentIntentRequest {
            id: processing.id.clone(), outcome: pb::SettlementOutcome::Succeeded as i32, ..Default::default()
        })).await.unwrap();
        let settled = refund(&app, of_intent(&processing.id, None)).await.unwrap();
        assert_eq!(settled.amount, 1_000);
        assert_eq!(settled.destination_details, None, "Stripe mirrors no destination for bank debits");
        assert_eq!(list(&app, pb::ListRefundsRequest::default()).await.unwrap().data.len(), 1);
    };

    lists_filter_by_payment_and_page_newest_first => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let a = app.create(confirmed(10_000, "pm_card_visa")).await;
        let b = app.create(confirmed(10_000, "pm_card_visa")).await;
        let mut ids_a = Vec::new();
        let mut all = Vec::new();
        for i in 0..12 {
            let intent = if i % 3 == 2 { &b } else { &a };
            let id = refund(&app, of_intent(&intent.id, Some(100 + i))).await.unwrap().id;
            if intent.id == a.id { ids_a.push(id.clone()); }
            all.push(id);
        }
        all.reverse();
        ids_a.reverse();
        let ids = |page: &pb::ListRefundsResponse| page.data.iter().map(|r| r.id.clone()).collect::<Vec<_>>();

        let first = list(&app, pb::ListRefundsRequest::default()).await.unwrap();
        assert_eq!(ids(&first), all[..10].to_vec());
        assert!(first.has_more);
        let next = list(&app, pb::ListRefundsRequest { starting_after: Some(all[9].clone()), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&next), all[10..].to_vec());
        assert!(!next.has_more);
        let back = list(&app, pb::ListRefundsRequest { ending_before: Some(all[5].clone()), limit: Some(3), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&back), all[2..5].to_vec());
        assert!(back.has_more);

        let of_a = list(&app, pb::ListRefundsRequest { payment_intent: Some(a.id.clone()), limit: Some(5), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&of_a), ids_a[..5].to_vec());
        assert!(of_a.has_more);
        let by_charge = list(&app, pb::ListRefundsRequest { charge: Some(b.latest_charge.clone().unwrap()), limit: Some(100), ..Default::default() }).await.unwrap();
        assert_eq!(by_charge.data.len(), 4);
        assert!(by_charge.data.iter().all(|r| r.payment_intent.as_deref() == Some(b.id.as_str())));
        let both = list(&app, pb::ListRefundsRequest { charge: b.latest_charge.clone(), payment_intent: Some(a.id.clone()), ..Default::default() }).await.unwrap();
        assert!(both.data.is_empty());

        let range = |created: settle_proto::common::v1::RangeFilter| pb::ListRefundsRequest { created: Some(created), limit: Some(100), ..Default::default() };
        let now = first.data[0].created;
        let recent = list(&app, range(settle_proto::common::v1::RangeFilter { gte: Some(now - 3_600), lte: Some(now + 3_600), ..Default::default() })).await.unwrap();
        assert_eq!(recent.data.len(), 12);
        let future = list(&app, range(settle_proto::common::v1::RangeFilter { gt: Some(now + 3_600), ..Default::default() })).await.unwrap();
        assert!(future.data.is_empty());

        for (request, field) in [
            (pb::ListRefundsRequest { limit: Some(0), ..Default::default() }, "limit"),
            (pb::ListRefundsRequest { payment_intent: Some("ch_1".into()), ..Default::default() }, "payment_intent"),
            (pb::ListRefundsRequest { charge: Some(a.id.clone()), ..Default::default() }, "charge"),
            (pb::ListRefundsRequest { starting_after: Some(a.id.clone()), ..Default::default() }, "starting_after"),
        ] {
            let error = list(&app, request).await.unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{field}");
            assert_eq!(violated_fields(&error), [field]);
        }
    };

    update_changes_metadata_only_and_emits_refund_updated => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let mut request = of_intent(&intent.id, Some(500));
        request.metadata.insert("keep".into(), "1".into());
        request.metadata.insert("drop".into(), "2".into());
        let original = refund(&app, request).await.unwrap();

        let mut update = pb::UpdateRefundRequest { id: original.id.clone(), ..Default::default() };
        update.metadata.insert("drop".into(), String::new());
        update.metadata.insert("new".into(), "3".into());
        let updated = refunds(&app).update_refund(authorized(update)).await.unwrap().into_inner();
        assert_eq!(updated.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(), [("keep", "1"), ("new", "3")]);
        assert_eq!(pb::Refund { metadata: original.metadata.clone(), ..updated.clone() }, original, "only metadata changes");

        let events = events_of_type(&app, "refund.updated", 1).await;
        assert_eq!(payload(&events[0]), updated);
        let data = events[0].data.as_ref().unwrap();
        let previous = data.previous_attributes.as_ref().unwrap();
        let metadata = match &previous.fields["metadata"].kind {
            Some(prost_types::value::Kind::StructValue(s)) => s.clone(),
            other => panic!("metadata is not an object: {other:?}"),
        };
        assert!(matches!(&metadata.fields["drop"].kind, Some(prost_types::value::Kind::StringValue(v)) if v == "2"));
        assert!(matches!(metadata.fields["new"].kind, Some(prost_types::value::Kind::NullValue(_))));
        assert!(!metadata.fields.contains_key("keep"));

        // Nothing to change: the refund comes back as it is and no event is written.
        let same = refunds(&app).update_refund(authorized(pb::UpdateRefundRequest { id: original.id.clone(), ..Default::default() })).await.unwrap().into_inner();
        assert_eq!(same, updated);
        let mut unchanged_value = pb::UpdateRefundRequest { id: original.id.clone(), ..Default::default() };
        unchanged_value.metadata.insert("keep".into(), "1".into());
        refunds(&app).update_refund(authorized(unchanged_value)).await.unwrap();
        let mut last = pb::UpdateRefundRequest { id: original.id.clone(), ..Default::default() };
        last.metadata.insert("last".into(), "4".into());
        let last = refunds(&app).update_refund(authorized(last)).await.unwrap().into_inner();
        let events = events_of_type(&app, "refund.updated", 2).await;
        assert_eq!(payload(&events[1]), last, "the updates that changed nothing wrote no event");

        let mut too_many = pb::UpdateRefundRequest { id: original.id.clone(), ..Default::default() };
        for i in 0..48 { too_many.metadata.insert(format!("k{i}"), "v".into()); }
        let error = refunds(&app).update_refund(authorized(too_many)).await.unwrap_err();
        assert_eq!(violated_fields(&error), ["metadata"], "50 keys at most after the merge (3 + 48)");
        let mut bad_key = pb::UpdateRefundRequest { id: original.id.clone(), ..Default::default() };
        bad_key.metadata.insert("a[b]".into(), "v".into());
        assert_eq!(violated_fields(&refunds(&app).update_refund(authorized(bad_key)).await.unwrap_err()), ["metadata[a[b]]"]);
        let unchanged = refunds(&app).get_refund(authorized(pb::GetRefundRequest { id: original.id.clone() })).await.unwrap().into_inner();
        assert_eq!(unchanged, last, "refused updates change nothing");
    };

    another_accounts_refunds_and_payments_do_not_exist => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let mine = refund(&app, of_intent(&intent.id, Some(500))).await.unwrap();
        let mut client = refunds(&app);
        let get = client.get_refund(with_key(pb::GetRefundRequest { id: mine.id.clone() }, OTHER_API_KEY)).await.unwrap_err();
        assert_eq!((get.code(), reason(&get)), (Code::NotFound, "resource_missing".to_owned()));
        let mut update = pb::UpdateRefundRequest { id: mine.id.clone(), ..Default::default() };
        update.metadata.insert("x".into(), "y".into());
        let update = client.update_refund(with_key(update, OTHER_API_KEY)).await.unwrap_err();
        assert_eq!(update.code(), Code::NotFound);
        let create = client.create_refund(with_key(of_intent(&intent.id, Some(100)), OTHER_API_KEY)).await.unwrap_err();
        assert_eq!(create.code(), Code::NotFound);
        assert_eq!(violated_fields(&create), ["payment_intent"]);
        let by_charge = client.create_refund(with_key(pb::CreateRefundRequest { charge: intent.latest_charge.clone(), ..Default::default() }, OTHER_API_KEY)).await.unwrap_err();
        assert_eq!((by_charge.code(), violated_fields(&by_charge)), (Code::InvalidArgument, vec!["charge".to_owned()]));
        let listed = client.list_refunds(with_key(pb::ListRefundsRequest { payment_intent: Some(intent.id.clone()), ..Default::default() }, OTHER_API_KEY)).await.unwrap().into_inner();
        assert!(listed.data.is_empty());
        assert_eq!(amount_refunded(&app, &intent.id).await, 500);
        for id in ["re_0000000000000000000000", "pi_123", "", "re_bad id"] {
            let error = client.get_refund(authorized(pb::GetRefundRequest { id: id.into() })).await.unwrap_err();
            assert_eq!(error.code(), Code::NotFound, "{id:?}");
        }
    };

    bad_input_is_refused_precisely_and_changes_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let other = app.create(confirmed(2_000, "pm_card_visa")).await;
        let base = || of_intent(&intent.id, Some(100));
        let mut bad_metadata = base();
        bad_metadata.metadata.insert("k".repeat(41), "v".into());
        let long_key = format!("metadata[{}]", "k".repeat(41));
        let cases: Vec<(pb::CreateRefundRequest, Code, &str, Vec<&str>)> = vec![
            (pb::CreateRefundRequest::default(), Code::InvalidArgument, "parameter_missing", vec!["payment_intent", "charge"]),
            (pb::CreateRefundRequest { amount: Some(0), ..base() }, Code::InvalidArgument, "parameter_invalid_integer", vec!["amount"]),
            (pb::CreateRefundRequest { amount: Some(-5), ..base() }, Code::InvalidArgument, "parameter_invalid_integer", vec!["amount"]),
            (pb::CreateRefundRequest { reason: Some(pb::RefundReason::ExpiredUncapturedCharge as i32), ..base() }, Code::InvalidArgument, "parameter_invalid", vec!["reason"]),
            (pb::CreateRefundRequest { reason: Some(42), ..base() }, Code::InvalidArgument, "parameter_invalid", vec!["reason"]),
            (pb::CreateRefundRequest { currency: Some("eur".into()), ..base() }, Code::InvalidArgument, "currency_mismatch", vec!["currency"]),
            (pb::CreateRefundRequest { currency: Some("USD".into()), ..base() }, Code::InvalidArgument, "invalid_currency", vec!["currency"]),
            (pb::CreateRefundRequest { customer: Some("cus_test".into()), ..base() }, Code::InvalidArgument, "parameter_invalid", vec!["customer"]),
            (pb::CreateRefundRequest { origin: Some(pb::RefundOrigin::CustomerBalance as i32), ..base() }, Code::InvalidArgument, "parameter_invalid", vec!["origin"]),
            (pb::CreateRefundRequest { refund_application_fee: Some(true), ..base() }, Code::InvalidArgument, "parameter_invalid", vec!["refund_application_fee"]),
            (pb::CreateRefundRequest { reverse_transfer: Some(true), ..base() }, Code::InvalidArgument, "parameter_invalid", vec!["reverse_transfer"]),
            (pb::CreateRefundRequest { instructions_email: Some("not-an-email".into()), ..base() }, Code::InvalidArgument, "parameter_invalid", vec!["instructions_email"]),
            (pb::CreateRefundRequest { charge: other.latest_charge.clone(), ..base() }, Code::InvalidArgument, "parameter_invalid", vec!["charge"]),
            (pb::CreateRefundRequest { charge: Some("ch_0000000000000000000000".into()), ..Default::default() }, Code::InvalidArgument, "parameter_invalid", vec!["charge"]),
            (pb::CreateRefundRequest { charge: Some("py_123".into()), ..Default::default() }, Code::InvalidArgument, "parameter_invalid", vec!["charge"]),
            (of_intent("pi_0000000000000000000000", None), Code::NotFound, "resource_missing", vec!["payment_intent"]),
            (of_intent("in_123", None), Code::NotFound, "resource_missing", vec!["payment_intent"]),
            (bad_metadata, Code::InvalidArgument, "parameter_invalid", vec![long_key.as_str()]),
        ];
        for (request, code, expected_reason, fields) in cases {
            let label = format!("{request:?}");
            let error = refund(&app, request).await.unwrap_err();
            assert_eq!(error.code(), code, "{label}");
            assert_eq!(reason(&error), expected_reason, "{label}");
            assert_eq!(violated_fields(&error), fields, "{label}");
        }
        assert!(list(&app, pb::ListRefundsRequest::default()).await.unwrap().data.is_empty());
        assert_eq!(amount_refunded(&app, &intent.id).await, 0);
        // What the proto allows: a matching currency, an instructions e-mail, falsy Connect flags.
        let fine = refund(&app, pb::CreateRefundRequest {
            currency: Some("usd".into()), instructions_email: Some("a@b.co".into()),
            refund_application_fee: Some(false), reverse_transfer: Some(false), ..base()
        }).await.unwrap();
        assert_eq!(fine.instructions_email.as_deref(), Some("a@b.co"));
        let created = events_of_type(&app, "refund.created", 1).await;
        assert_eq!(payload(&created[0]), fine, "no refused request wrote an event");
    };

    the_same_idempotency_key_replays_the_refund => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let mut client = refunds(&app);
        let first = client.create_refund(idempotent(of_intent(&intent.id, Some(2_000)), "refund-1")).await.unwrap().into_inner();
        // Replayed, not refused as already refunded.
        let again = client.create_refund(idempotent(of_intent(&intent.id, Some(2_000)), "refund-1")).await.unwrap().into_inner();
        assert_eq!(first, again);
        assert_eq!(all_of_intent(&app, &intent.id).await.len(), 1);
        assert_eq!(amount_refunded(&app, &intent.id).await, 2_000);
        let different = client.create_refund(idempotent(of_intent(&intent.id, Some(1_000)), "refund-1")).await.unwrap_err();
        assert_eq!(reason(&different), "idempotency_error");

        let mut update = pb::UpdateRefundRequest { id: first.id.clone(), ..Default::default() };
        update.metadata.insert("n".into(), "1".into());
        let updated = client.update_refund(idempotent(update.clone(), "update-1")).await.unwrap().into_inner();
        let replayed = client.update_refund(idempotent(update, "update-1")).await.unwrap().into_inner();
        assert_eq!(updated, replayed);
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let marker = refund(&app, of_intent(&intent.id, None)).await.unwrap();
        let created = events_of_type(&app, "refund.created", 2).await;
        assert_eq!((payload(&created[0]), payload(&created[1])), (first, marker.clone()), "the replay wrote no event");
        let mut last = pb::UpdateRefundRequest { id: marker.id.clone(), ..Default::default() };
        last.metadata.insert("n".into(), "2".into());
        let last = client.update_refund(authorized(last)).await.unwrap().into_inner();
        let events = events_of_type(&app, "refund.updated", 2).await;
        assert_eq!((payload(&events[0]), payload(&events[1])), (updated, last));
    };

    concurrent_refunds_never_refund_more_than_was_received => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let intent = app.create(confirmed(10_000, "pm_card_visa")).await;
        let calls = (0..64).map(|_| {
            let mut client = refunds(&app);
            let request = of_intent(&intent.id, Some(300));
            tokio::spawn(async move { client.create_refund(authorized(request)).await })
        });
        let (mut succeeded, mut too_large) = (0_i64, 0);
        for result in futures::future::join_all(calls).await {
            match result.unwrap() {
                Ok(refund) => {
                    assert_eq!(refund.into_inner().amount, 300);
                    succeeded += 1;
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                    assert_eq!(reason(&status), "amount_too_large", "{status:?}");
                    too_large += 1;
                }
            }
        }
        let refunded = amount_refunded(&app, &intent.id).await;
        let listed: i64 = all_of_intent(&app, &intent.id).await.iter().map(|r| r.amount).sum();
        println!("{backend}: 64 concurrent refunds of 300 on an intent of 10000 → {succeeded} succeeded, {too_large} amount_too_large; amount_refunded = {refunded}, listed refunds sum to {listed}");
        assert!(refunded <= 10_000);
        assert_eq!(succeeded * 300, refunded);
        assert_eq!(listed, refunded);
        assert_eq!(succeeded, 33, "every refund that fits is made");
        // What is left (100) is refunded last, so its event must be the 34th.
        let marker = refund(&app, of_intent(&intent.id, None)).await.unwrap();
        assert_eq!(marker.amount, 10_000 - refunded);
        let created = events_of_type(&app, "refund.created", 34).await;
        assert_eq!(payload(&created[33]), marker, "one event per refund made");
    };

    the_database_refuses_a_refunded_total_above_what_was_received => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(1_000, "pm_card_visa")).await;
        let db = Db::connect(app.database.url(), &PoolSettings::default()).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        assert_eq!(intents_store::add_refunded(&mut tx, &settle_platform::Scope::test(DEV_ACCOUNT), &intent.id, 1_001).await.unwrap(), AddRefunded::OverReceived);
        drop(tx);
        let mut tx = db.begin().await.unwrap();
        assert_eq!(intents_store::add_refunded(&mut tx, &settle_platform::Scope::test(DEV_ACCOUNT), "pi_missing", 1).await.unwrap(), AddRefunded::NoSuchIntent);
        assert_eq!(intents_store::add_refunded(&mut tx, &settle_platform::Scope::test(DEV_ACCOUNT), &intent.id, 1_000).await.unwrap(), AddRefunded::Added);
        tx.commit().await.unwrap();
        db.close().await;
        assert_eq!(amount_refunded(&app, &intent.id).await, 1_000);
    };
}
