//! PaymentRecordService over gRPC.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_platform::time::now_unix;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::PaymentAttemptRecordOutcome as O;
use settle_proto::settle::payments::v1::payment_record_service_client::PaymentRecordServiceClient;
use settle_testkit::{OTHER_API_KEY, authorized, idempotent, reason, violated_fields, with_key};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestApp, spawn};

fn client(app: &TestApp) -> PaymentRecordServiceClient<Channel> {
    PaymentRecordServiceClient::new(app.server.channel())
}

fn money(value: i64) -> Option<pb::PaymentRecordAmount> {
    Some(pb::PaymentRecordAmount { currency: "usd".into(), value })
}

fn value(amount: &Option<pb::PaymentRecordAmount>) -> i64 {
    amount.as_ref().map_or(-1, |a| a.value)
}

/// The seven buckets of a record or attempt: amount, authorized, canceled, failed, guaranteed,
/// refunded, requested.
fn buckets(r: &pb::PaymentRecord) -> [i64; 7] {
    [
        value(&r.amount),
        value(&r.amount_authorized),
        value(&r.amount_canceled),
        value(&r.amount_failed),
        value(&r.amount_guaranteed),
        value(&r.amount_refunded),
        value(&r.amount_requested),
    ]
}

fn check_details() -> Option<pb::PaymentRecordPaymentMethodDetailsParams> {
    Some(pb::PaymentRecordPaymentMethodDetailsParams {
        custom: Some(pb::PaymentRecordCustomPaymentMethodDetails {
            display_name: "Check".into(),
            r#type: None,
        }),
        r#type: Some(pb::PaymentRecordPaymentMethodDetailsType::Custom as i32),
        ..Default::default()
    })
}

/// A valid pending report of `amount` cents in usd for `cus_test`.
pub(crate) fn report(amount: i64) -> pb::ReportPaymentRequest {
    pb::ReportPaymentRequest {
        amount_requested: money(amount),
        customer_details: Some(pb::PaymentRecordCustomerDetails {
            customer: Some("cus_test".into()),
            ..Default::default()
        }),
        initiated_at: now_unix() - 60,
        payment_method_details: check_details(),
        ..Default::default()
    }
}

pub(crate) fn guaranteed(amount: i64) -> pb::ReportPaymentRequest {
    pb::ReportPaymentRequest {
        outcome: Some(pb::ReportPaymentOutcome::Guaranteed as i32),
        guaranteed: Some(pb::PaymentRecordGuaranteedParams { guaranteed_at: now_unix() - 30 }),
        ..report(amount)
    }
}

pub(crate) fn refund(id: &str, reference: &str, amount: Option<i64>) -> pb::ReportRefundRequest {
    pb::ReportRefundRequest {
        id: id.into(),
        amount: amount.and_then(money),
        outcome: pb::ReportRefundOutcome::Refunded as i32,
        processor_details: Some(pb::PaymentRecordRefundProcessorDetailsParams {
            custom: Some(pb::PaymentRecordRefundCustomProcessorDetailsParams {
                refund_reference: reference.into(),
            }),
            r#type: pb::PaymentRecordProcessorType::Custom as i32,
        }),
        refunded: Some(pb::PaymentRecordRefundedParams { refunded_at: now_unix() }),
        ..Default::default()
    }
}

fn attempt(id: &str) -> pb::ReportPaymentAttemptRequest {
    pb::ReportPaymentAttemptRequest { id: id.into(), initiated_at: now_unix(), ..Default::default() }
}

fn outcome(record: &pb::PaymentRecord) -> O {
    O::try_from(record.latest_payment_attempt_outcome).unwrap()
}

async fn create(app: &TestApp, request: pb::ReportPaymentRequest) -> pb::PaymentRecord {
    client(app).report_payment(authorized(request)).await.expect("report succeeds").into_inner()
}

async fn get(app: &TestApp, id: &str) -> pb::PaymentRecord {
    client(app)
        .get_payment_record(authorized(pb::GetPaymentRecordRequest { id: id.into() }))
        .await
        .expect("get succeeds")
        .into_inner()
}

async fn canceled(app: &TestApp, id: &str) -> Result<pb::PaymentRecord, Status> {
    client(app)
        .report_payment_attempt_canceled(authorized(pb::ReportPaymentAttemptCanceledRequest {
            id: id.into(),
            canceled_at: now_unix(),
            metadata: Default::default(),
        }))
        .await
        .map(|r| r.into_inner())
}

async fn failed(app: &TestApp, id: &str) -> Result<pb::PaymentRecord, Status> {
    client(app)
        .report_payment_attempt_failed(authorized(pb::ReportPaymentAttemptFailedRequest {
            id: id.into(),
            failed_at: now_unix(),
            metadata: Default::default(),
        }))
        .await
        .map(|r| r.into_inner())
}

async fn guarantee(app: &TestApp, id: &str) -> Result<pb::PaymentRecord, Status> {
    client(app)
        .report_payment_attempt_guaranteed(authorized(pb::ReportPaymentAttemptGuaranteedRequest {
            id: id.into(),
            guaranteed_at: now_unix(),
            metadata: Default::default(),
        }))
        .await
        .map(|r| r.into_inner())
}

async fn count(app: &TestApp) -> usize {
    let mut total = 0;
    let mut after = None;
    loop {
        let page = client(app)
            .list_payment_records(authorized(pb::ListPaymentRecordsRequest {
                limit: Some(100),
                starting_after: after.clone(),
                ..Default::default()
            }))
            .await
            .expect("list succeeds")
            .into_inner();
        total += page.data.len();
        if !page.has_more {
            return total;
        }
        after = page.data.last().map(|r| r.id.clone());
    }
}

async fn event_types(app: &TestApp, n: usize) -> Vec<String> {
    app.first_events(n).await.into_iter().map(|e| e.r#type).collect()
}

backend_tests! {
    report_payment_returns_a_stripe_shaped_pending_record => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = report(12_500);
        request.description = Some("Wire 42".into());
        request.metadata.insert("order".into(), "42".into());
        request.metadata.insert("ignored".into(), String::new());
        request.customer_presence = Some(pb::PaymentRecordCustomerPresence::OffSession as i32);
        request.processor_details = Some(pb::PaymentRecordProcessorDetails {
            custom: Some(pb::PaymentRecordCustomProcessorDetails { payment_reference: Some("chk-881".into()) }),
            r#type: pb::PaymentRecordProcessorType::Custom as i32,
        });
        let record = create(&app, request).await;
        assert!(record.id.starts_with("pr_"), "{}", record.id);
        assert_eq!(record.object, "payment_record");
        assert_eq!(buckets(&record), [12_500, 0, 0, 0, 0, 0, 12_500]);
        assert_eq!(record.amount.as_ref().unwrap().currency, "usd");
        assert_eq!(outcome(&record), O::Pending);
        assert_eq!(record.customer_details.as_ref().unwrap().customer.as_deref(), Some("cus_test"));
        assert_eq!(record.description.as_deref(), Some("Wire 42"));
        assert_eq!(record.metadata.keys().collect::<Vec<_>>(), ["order"]);
        assert_eq!(record.reported_by, pb::PaymentRecordReportedBy::Self_ as i32);
        assert_eq!(record.payment_method_details.as_ref().unwrap().r#type, "custom");
        assert_eq!(record.processor_details.as_ref().unwrap().custom.as_ref().unwrap().payment_reference.as_deref(), Some("chk-881"));
        assert!(!record.livemode);
        assert_eq!(get(&app, &record.id).await, record);

        let attempt_id = record.latest_payment_attempt_record.clone().unwrap();
        assert!(attempt_id.starts_with("par_"));
        let attempt = client(&app).get_payment_attempt_record(authorized(pb::GetPaymentAttemptRecordRequest { id: attempt_id.clone() })).await.unwrap().into_inner();
        assert_eq!(attempt.object, "payment_attempt_record");
        assert_eq!(attempt.payment_record.as_deref(), Some(record.id.as_str()));
        assert_eq!(O::try_from(attempt.outcome).unwrap(), O::Pending);
        assert_eq!(value(&attempt.amount_requested), 12_500);
        assert_eq!(attempt.metadata, record.metadata);
        assert!(attempt.initiated_at > 0 && attempt.guaranteed_at.is_none());
        assert_eq!(event_types(&app, 1).await, ["payment_record.created"]);
        let event = &app.first_events(1).await[0];
        assert_eq!(event.object_id, record.id);
        let payload: pb::PaymentRecord = event.data.as_ref().unwrap().object.as_ref().unwrap().to_msg().unwrap();
        assert_eq!(payload, record);
    };

    a_terminal_report_emits_its_outcome => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let record = create(&app, guaranteed(5_000)).await;
        assert_eq!(outcome(&record), O::Guaranteed);
        assert_eq!(buckets(&record), [5_000, 5_000, 0, 0, 5_000, 0, 5_000]);
        let failed_report = pb::ReportPaymentRequest {
            outcome: Some(pb::ReportPaymentOutcome::Failed as i32),
            failed: Some(pb::PaymentRecordFailedParams { failed_at: now_unix() }),
            ..report(700)
        };
        let failed_record = create(&app, failed_report).await;
        assert_eq!(outcome(&failed_record), O::Failed);
        assert_eq!(buckets(&failed_record), [700, 0, 0, 700, 0, 0, 700]);
        assert_eq!(event_types(&app, 4).await, [
            "payment_record.created", "payment_record.payment_attempt_guaranteed",
            "payment_record.created", "payment_record.payment_attempt_failed",
        ]);
    };

    attempts_follow_stripes_rules => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let record = create(&app, report(3_000)).await;
        let id = record.id.clone();
        let first_attempt = record.latest_payment_attempt_record.clone().unwrap();

        // A pending attempt blocks a new one.
        let refused = client(&app).report_payment_attempt(authorized(attempt(&id))).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(reason(&refused), "payment_record_unexpected_state");

        let mut cancel = pb::ReportPaymentAttemptCanceledRequest { id: id.clone(), canceled_at: now_unix(), metadata: Default::default() };
        cancel.metadata.insert("why".into(), "stopped".into());
        let after_cancel = client(&app).report_payment_attempt_canceled(authorized(cancel)).await.unwrap().into_inner();
        assert_eq!(outcome(&after_cancel), O::Canceled);
        assert_eq!(buckets(&after_cancel), [3_000, 0, 3_000, 0, 0, 0, 3_000]);
        assert_eq!(after_cancel.metadata["why"], "stopped");
        for refused in [failed(&app, &id).await, guarantee(&app, &id).await, canceled(&app, &id).await] {
            assert_eq!(reason(&refused.unwrap_err()), "payment_record_unexpected_state");
        }

        let mut second = attempt(&id);
        second.description = Some("second try".into());
        second.metadata.insert("try".into(), "2".into());
        let retried = client(&app).report_payment_attempt(authorized(second)).await.unwrap().into_inner();
        let second_attempt = retried.latest_payment_attempt_record.clone().unwrap();
        assert_ne!(second_attempt, first_attempt);
        assert_eq!(outcome(&retried), O::Pending);
        assert_eq!(retried.metadata["try"], "2");
        let failed_record = failed(&app, &id).await.unwrap();
        assert_eq!(buckets(&failed_record), [3_000, 0, 3_000, 3_000, 0, 0, 3_000]);

        let third = pb::ReportPaymentAttemptRequest {
            outcome: Some(pb::ReportPaymentOutcome::Guaranteed as i32),
            guaranteed: Some(pb::PaymentRecordGuaranteedParams { guaranteed_at: now_unix() }),
            ..attempt(&id)
        };
        let paid = client(&app).report_payment_attempt(authorized(third)).await.unwrap().into_inner();
        assert_eq!(outcome(&paid), O::Guaranteed);
        assert_eq!(buckets(&paid), [3_000, 3_000, 3_000, 3_000, 3_000, 0, 3_000]);
        let after_paid = client(&app).report_payment_attempt(authorized(attempt(&id))).await.unwrap_err();
        assert_eq!(reason(&after_paid), "payment_record_unexpected_state");
        assert_eq!(reason(&failed(&app, &id).await.unwrap_err()), "payment_record_unexpected_state");
        assert_eq!(get(&app, &id).await, paid, "refused reports change nothing");

        // The attempts, newest first, each with its own amounts and outcome.
        let list = |request: pb::ListPaymentAttemptRecordsRequest| {
            let mut c = client(&app);
            async move { c.list_payment_attempt_records(authorized(request)).await.map(|r| r.into_inner()) }
        };
        let all = list(pb::ListPaymentAttemptRecordsRequest { payment_record: id.clone(), ..Default::default() }).await.unwrap();
        let outcomes: Vec<O> = all.data.iter().map(|a| O::try_from(a.outcome).unwrap()).collect();
        assert_eq!(outcomes, [O::Guaranteed, O::Failed, O::Canceled]);
        assert_eq!(all.data[0].id, paid.latest_payment_attempt_record.clone().unwrap());
        assert_eq!(all.data[1].description.as_deref(), Some("second try"));
        assert_eq!(all.data[1].metadata["try"], "2");
        assert!(all.data[2].canceled_at.is_some() && all.data[2].metadata["why"] == "stopped");
        assert_eq!([value(&all.data[2].amount_canceled), value(&all.data[2].amount_failed)], [3_000, 0]);
        assert_eq!(value(&all.data[0].amount_guaranteed), 3_000);
        let page = list(pb::ListPaymentAttemptRecordsRequest { payment_record: id.clone(), limit: Some(2), ..Default::default() }).await.unwrap();
        assert!(page.has_more);
        let rest = list(pb::ListPaymentAttemptRecordsRequest { payment_record: id.clone(), starting_after: Some(page.data[1].id.clone()), ..Default::default() }).await.unwrap();
        assert_eq!(rest.data.iter().map(|a| &a.id).collect::<Vec<_>>(), [&first_attempt]);
        let back = list(pb::ListPaymentAttemptRecordsRequest { payment_record: id.clone(), ending_before: Some(first_attempt.clone()), limit: Some(1), ..Default::default() }).await.unwrap();
        assert_eq!(back.data[0].id, second_attempt);
        let missing = list(pb::ListPaymentAttemptRecordsRequest::default()).await.unwrap_err();
        assert_eq!((reason(&missing), violated_fields(&missing)), ("parameter_missing".into(), vec!["payment_record".to_owned()]));
        let unknown = list(pb::ListPaymentAttemptRecordsRequest { payment_record: "pr_0000000000000000000000".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);

        assert_eq!(event_types(&app, 6).await, [
            "payment_record.created", "payment_record.payment_attempt_canceled",
            "payment_record.updated", "payment_record.payment_attempt_failed",
            "payment_record.updated", "payment_record.payment_attempt_guaranteed",
        ]);
    };

    refunds_stay_within_the_guaranteed_amount => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let pending = create(&app, report(1_000)).await;
        let refused = client(&app).report_refund(authorized(refund(&pending.id, "r-pending", None))).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused)), (Code::FailedPrecondition, "payment_record_unexpected_state".into()));

        let record = create(&app, guaranteed(10_000)).await;
        let id = record.id.clone();
        let mut first = refund(&id, "rf-1", Some(4_000));
        first.metadata.insert("reason".into(), "damaged".into());
        first.initiated_at = Some(now_unix() - 5);
        let after = client(&app).report_refund(authorized(first)).await.unwrap().into_inner();
        assert_eq!(buckets(&after), [10_000, 10_000, 0, 0, 10_000, 4_000, 10_000]);
        assert_eq!(after.reported_refunds.len(), 1);
        let reported = &after.reported_refunds[0];
        assert_eq!((reported.refund_reference.as_str(), value(&reported.amount)), ("rf-1", 4_000));
        assert_eq!(reported.payment_attempt_record, record.latest_payment_attempt_record.clone().unwrap());
        assert_eq!(reported.metadata["reason"], "damaged");
        assert!(reported.initiated_at.is_some() && reported.refunded_at.is_some());

        let too_much = client(&app).report_refund(authorized(refund(&id, "rf-2", Some(6_001)))).await.unwrap_err();
        assert_eq!((too_much.code(), reason(&too_much)), (Code::InvalidArgument, "amount_too_large".into()));
        assert_eq!(violated_fields(&too_much), ["amount[value]"]);
        let same_reference = client(&app).report_refund(authorized(refund(&id, "rf-1", Some(1)))).await.unwrap_err();
        assert_eq!((same_reference.code(), reason(&same_reference)), (Code::AlreadyExists, "refund_reference_in_use".into()));
        assert_eq!(violated_fields(&same_reference), ["processor_details[custom][refund_reference]"]);
        let other = create(&app, guaranteed(500)).await;
        let reused_elsewhere = client(&app).report_refund(authorized(refund(&other.id, "rf-1", None))).await.unwrap_err();
        assert_eq!((reused_elsewhere.code(), reason(&reused_elsewhere)), (Code::AlreadyExists, "refund_reference_in_use".into()));
        assert_eq!(get(&app, &other.id).await, other, "the database refused the reused reference and nothing changed");
        let mut euros = refund(&id, "rf-3", Some(10));
        euros.amount.as_mut().unwrap().currency = "eur".into();
        let mismatch = client(&app).report_refund(authorized(euros)).await.unwrap_err();
        assert_eq!((reason(&mismatch), violated_fields(&mismatch)), ("currency_mismatch".into(), vec!["amount[currency]".to_owned()]));
        assert_eq!(get(&app, &id).await, after, "refused refunds change nothing");

        // Without an amount, the rest is refunded.
        let rest = client(&app).report_refund(authorized(refund(&id, "rf-4", None))).await.unwrap().into_inner();
        assert_eq!(value(&rest.amount_refunded), 10_000);
        assert_eq!(value(&rest.reported_refunds[1].amount), 6_000);
        let nothing_left = client(&app).report_refund(authorized(refund(&id, "rf-5", None))).await.unwrap_err();
        assert_eq!((nothing_left.code(), reason(&nothing_left)), (Code::FailedPrecondition, "charge_already_refunded".into()));
        let attempt = client(&app).get_payment_attempt_record(authorized(pb::GetPaymentAttemptRecordRequest {
            id: rest.latest_payment_attempt_record.clone().unwrap(),
        })).await.unwrap().into_inner();
        assert_eq!(value(&attempt.amount_refunded), 10_000);
        let types = event_types(&app, 7).await;
        assert_eq!(types.iter().filter(|t| *t == "payment_record.refunded").count(), 2, "{types:?}");
    };

    informational_reports_update_details => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = report(2_000);
        request.description = Some("old".into());
        request.metadata.insert("keep".into(), "1".into());
        request.metadata.insert("drop".into(), "2".into());
        request.shipping_details = Some(pb::PaymentRecordShippingDetails { name: Some("Ann".into()), ..Default::default() });
        let record = create(&app, request).await;
        let mut update = pb::ReportPaymentAttemptInformationalRequest {
            id: record.id.clone(),
            customer_details: Some(pb::PaymentRecordCustomerDetails {
                customer: Some("cus_other".into()),
                email: Some("ann@example.com".into()),
                ..Default::default()
            }),
            description: Some(String::new()),
            shipping_details: Some(Default::default()),
            ..Default::default()
        };
        update.metadata.insert("drop".into(), String::new());
        update.metadata.insert("new".into(), "3".into());
        let updated = client(&app).report_payment_attempt_informational(authorized(update)).await.unwrap().into_inner();
        assert_eq!(updated.customer_details.as_ref().unwrap().customer.as_deref(), Some("cus_other"));
        assert_eq!(updated.customer_details.as_ref().unwrap().email.as_deref(), Some("ann@example.com"));
        assert_eq!(updated.description, None);
        assert_eq!(updated.shipping_details, None);
        assert_eq!(updated.metadata.keys().collect::<Vec<_>>(), ["keep", "new"]);
        assert_eq!(buckets(&updated), buckets(&record));

        let bad = client(&app).report_payment_attempt_informational(authorized(pb::ReportPaymentAttemptInformationalRequest {
            id: record.id.clone(),
            customer_details: Some(pb::PaymentRecordCustomerDetails { customer: Some("acct_1".into()), ..Default::default() }),
            ..Default::default()
        })).await.unwrap_err();
        assert_eq!(violated_fields(&bad), ["customer_details[customer]"]);
        assert_eq!(get(&app, &record.id).await, updated);
        assert_eq!(event_types(&app, 2).await, ["payment_record.created", "payment_record.updated"]);
    };

    lists_page_newest_first_with_created_bounds => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut records = Vec::new();
        for i in 0..12 {
            records.push(create(&app, report(1_000 + i)).await);
        }
        records.reverse(); // newest first
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let list = |request: pb::ListPaymentRecordsRequest| {
            let mut c = client(&app);
            async move { c.list_payment_records(authorized(request)).await.map(|r| r.into_inner()) }
        };
        let first = list(pb::ListPaymentRecordsRequest::default()).await.unwrap();
        assert_eq!(first.data.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids[..10].to_vec());
        assert!(first.has_more);
        let second = list(pb::ListPaymentRecordsRequest { starting_after: Some(ids[9].clone()), ..Default::default() }).await.unwrap();
        assert_eq!(second.data.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids[10..].to_vec());
        assert!(!second.has_more);
        let back = list(pb::ListPaymentRecordsRequest { ending_before: Some(ids[5].clone()), limit: Some(2), ..Default::default() }).await.unwrap();
        assert_eq!(back.data.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids[3..5].to_vec());

        let oldest = records.iter().map(|r| r.created).min().unwrap();
        let newest = records.iter().map(|r| r.created).max().unwrap();
        let bounded = |after: Option<i64>, before: Option<i64>| list(pb::ListPaymentRecordsRequest { created_after: after, created_before: before, limit: Some(100), ..Default::default() });
        assert_eq!(bounded(Some(oldest - 1), None).await.unwrap().data.len(), 12);
        assert!(bounded(Some(newest), None).await.unwrap().data.is_empty(), "created_after is strict");
        assert!(bounded(None, Some(oldest)).await.unwrap().data.is_empty(), "created_before is strict");
        assert_eq!(bounded(None, Some(newest + 1)).await.unwrap().data.len(), 12);
        let expected_between = records.iter().filter(|r| r.created > oldest - 1 && r.created < newest + 1).count();
        assert_eq!(bounded(Some(oldest - 1), Some(newest + 1)).await.unwrap().data.len(), expected_between);

        let bad_limit = list(pb::ListPaymentRecordsRequest { limit: Some(0), ..Default::default() }).await.unwrap_err();
        assert_eq!(violated_fields(&bad_limit), ["limit"]);
        let bad_cursor = list(pb::ListPaymentRecordsRequest { starting_after: Some("pi_123".into()), ..Default::default() }).await.unwrap_err();
        assert_eq!(violated_fields(&bad_cursor), ["starting_after"]);
    };

    another_accounts_records_do_not_exist => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mine = create(&app, guaranteed(1_000)).await;
        let other = |message| with_key(message, OTHER_API_KEY);
        let mut c = client(&app);
        let errors = vec![
            c.get_payment_record(other(pb::GetPaymentRecordRequest { id: mine.id.clone() })).await.unwrap_err(),
            c.report_payment_attempt_failed(with_key(pb::ReportPaymentAttemptFailedRequest { id: mine.id.clone(), failed_at: now_unix(), metadata: Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
            c.report_refund(with_key(refund(&mine.id, "theirs", None), OTHER_API_KEY)).await.unwrap_err(),
            c.report_payment_attempt_informational(with_key(pb::ReportPaymentAttemptInformationalRequest { id: mine.id.clone(), ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
            c.get_payment_attempt_record(with_key(pb::GetPaymentAttemptRecordRequest { id: mine.latest_payment_attempt_record.clone().unwrap() }, OTHER_API_KEY)).await.unwrap_err(),
            c.list_payment_attempt_records(with_key(pb::ListPaymentAttemptRecordsRequest { payment_record: mine.id.clone(), ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
        ];
        for error in errors {
            assert_eq!((error.code(), reason(&error)), (Code::NotFound, "resource_missing".into()), "{error:?}");
        }
        let listed = c.list_payment_records(with_key(pb::ListPaymentRecordsRequest::default(), OTHER_API_KEY)).await.unwrap().into_inner();
        assert!(listed.data.is_empty());
        assert_eq!(get(&app, &mine.id).await, mine);
        for id in ["pr_0000000000000000000000", "pi_123", "", "pr_bad id"] {
            let error = c.get_payment_record(authorized(pb::GetPaymentRecordRequest { id: id.into() })).await.unwrap_err();
            assert_eq!(error.code(), Code::NotFound, "{id}");
        }
    };

    bad_reports_are_refused_with_the_field_and_change_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let future = now_unix() + 3_600;
        let cases: Vec<(pb::ReportPaymentRequest, &str, &str)> = vec![
            (pb::ReportPaymentRequest { amount_requested: None, ..report(1_000) }, "parameter_missing", "amount_requested"),
            (report(0), "parameter_invalid_integer", "amount_requested[value]"),
            (report(-5), "parameter_invalid_integer", "amount_requested[value]"),
            (report(100_000_000), "amount_too_large", "amount_requested[value]"),
            (pb::ReportPaymentRequest { amount_requested: Some(pb::PaymentRecordAmount { currency: "xx".into(), value: 100 }), ..report(1_000) }, "invalid_currency", "amount_requested[currency]"),
            (pb::ReportPaymentRequest { amount_requested: Some(pb::PaymentRecordAmount { currency: String::new(), value: 100 }), ..report(1_000) }, "parameter_missing", "amount_requested[currency]"),
            (pb::ReportPaymentRequest { initiated_at: 0, ..report(1_000) }, "parameter_missing", "initiated_at"),
            (pb::ReportPaymentRequest { initiated_at: future, ..report(1_000) }, "parameter_invalid", "initiated_at"),
            (pb::ReportPaymentRequest { payment_method_details: None, ..report(1_000) }, "parameter_missing", "payment_method_details"),
            (pb::ReportPaymentRequest { payment_method_details: Some(pb::PaymentRecordPaymentMethodDetailsParams { r#type: Some(9), ..check_details().unwrap() }), ..report(1_000) }, "parameter_invalid", "payment_method_details[type]"),
            (pb::ReportPaymentRequest { outcome: Some(pb::ReportPaymentOutcome::Guaranteed as i32), ..report(1_000) }, "parameter_missing", "guaranteed"),
            (pb::ReportPaymentRequest { guaranteed: Some(pb::PaymentRecordGuaranteedParams { guaranteed_at: future }), ..guaranteed(1_000) }, "parameter_invalid", "guaranteed[guaranteed_at]"),
            (pb::ReportPaymentRequest { failed: Some(pb::PaymentRecordFailedParams { failed_at: 1 }), ..report(1_000) }, "parameter_invalid", "failed"),
            (pb::ReportPaymentRequest { customer_details: Some(pb::PaymentRecordCustomerDetails { customer: Some("acct_1".into()), ..Default::default() }), ..report(1_000) }, "parameter_invalid", "customer_details[customer]"),
            (pb::ReportPaymentRequest { description: Some("x".repeat(5_001)), ..report(1_000) }, "parameter_invalid", "description"),
            (pb::ReportPaymentRequest { processor_details: Some(pb::PaymentRecordProcessorDetails { custom: None, r#type: pb::PaymentRecordProcessorType::Custom as i32 }), ..report(1_000) }, "parameter_missing", "processor_details[custom][payment_reference]"),
        ];
        for (request, expected_reason, field) in cases {
            let label = format!("{request:?}");
            let error = client(&app).report_payment(authorized(request)).await.unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{label}");
            assert_eq!(reason(&error), expected_reason, "{label}");
            assert_eq!(violated_fields(&error), [field], "{label}");
        }
        let mut too_many = report(1_000);
        too_many.metadata.insert("k".repeat(41), "v".into());
        let error = client(&app).report_payment(authorized(too_many)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert_eq!(count(&app).await, 0, "no refused report created anything");

        // Bad reports on an existing record leave it as it was.
        let record = create(&app, guaranteed(1_000)).await;
        let mut c = client(&app);
        let errors = vec![
            (c.report_payment_attempt_canceled(authorized(pb::ReportPaymentAttemptCanceledRequest { id: record.id.clone(), canceled_at: 0, metadata: Default::default() })).await.unwrap_err(), "canceled_at"),
            (c.report_payment_attempt_guaranteed(authorized(pb::ReportPaymentAttemptGuaranteedRequest { id: record.id.clone(), guaranteed_at: future, metadata: Default::default() })).await.unwrap_err(), "guaranteed_at"),
            (c.report_refund(authorized(pb::ReportRefundRequest { outcome: 0, ..refund(&record.id, "r", None) })).await.unwrap_err(), "outcome"),
            (c.report_refund(authorized(pb::ReportRefundRequest { processor_details: None, ..refund(&record.id, "r", None) })).await.unwrap_err(), "processor_details"),
            (c.report_refund(authorized(refund(&record.id, "", None))).await.unwrap_err(), "processor_details[custom][refund_reference]"),
            (c.report_refund(authorized(refund(&record.id, "r", Some(0)))).await.unwrap_err(), "amount[value]"),
            (c.report_refund(authorized(pb::ReportRefundRequest { refunded: Some(pb::PaymentRecordRefundedParams { refunded_at: future }), ..refund(&record.id, "r", None) })).await.unwrap_err(), "refunded[refunded_at]"),
        ];
        for (error, field) in errors {
            assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
            assert_eq!(violated_fields(&error), [field], "{error:?}");
        }
        assert_eq!(get(&app, &record.id).await, record);
    };

    report_payment_replays_with_the_same_idempotency_key => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let request = guaranteed(4_200);
        let first = client(&app).report_payment(idempotent(request.clone(), "wire-7")).await.unwrap().into_inner();
        let again = client(&app).report_payment(idempotent(request.clone(), "wire-7")).await.unwrap().into_inner();
        assert_eq!(first, again);
        assert_eq!(count(&app).await, 1);
        let different = client(&app).report_payment(idempotent(guaranteed(4_300), "wire-7")).await.unwrap_err();
        assert_eq!(reason(&different), "idempotency_error");
        // A replayed refund is not refused as a reused reference.
        let refund_request = refund(&first.id, "rf-idem", Some(100));
        let refunded = client(&app).report_refund(idempotent(refund_request.clone(), "refund-1")).await.unwrap().into_inner();
        let replayed = client(&app).report_refund(idempotent(refund_request, "refund-1")).await.unwrap().into_inner();
        assert_eq!(refunded, replayed);
        assert_eq!(value(&get(&app, &first.id).await.amount_refunded), 100);
        assert_eq!(count(&app).await, 1);
    };

    concurrent_refunds_never_refund_more_than_was_guaranteed => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let record = create(&app, guaranteed(10_000)).await;
        let calls = (0..8).map(|i| {
            let mut c = client(&app);
            let request = refund(&record.id, &format!("race-{i}"), Some(3_000));
            tokio::spawn(async move { c.report_refund(authorized(request)).await })
        });
        let (mut ok, mut too_large) = (0, 0);
        for result in futures::future::join_all(calls).await {
            match result.unwrap() {
                Ok(_) => ok += 1,
                Err(status) => {
                    assert_eq!(reason(&status), "amount_too_large", "{status:?}");
                    too_large += 1;
                }
            }
        }
        let after = get(&app, &record.id).await;
        println!("{backend}: 8 concurrent refunds of 3000 on 10000 → {ok} accepted, {too_large} refused; amount_refunded = {}", value(&after.amount_refunded));
        assert_eq!(ok, 3);
        assert_eq!(value(&after.amount_refunded), 9_000);
        assert_eq!(after.reported_refunds.len(), 3);

        // One reference raced on many records: the database lets exactly one report take it.
        let mut others = Vec::new();
        for _ in 0..6 {
            others.push(create(&app, guaranteed(500)).await.id);
        }
        let calls = others.iter().map(|id| {
            let mut c = client(&app);
            let request = refund(id, "shared-ref", None);
            tokio::spawn(async move { c.report_refund(authorized(request)).await })
        });
        let mut taken = 0;
        for result in futures::future::join_all(calls).await {
            match result.unwrap() {
                Ok(_) => taken += 1,
                Err(status) => assert_eq!((status.code(), reason(&status)), (Code::AlreadyExists, "refund_reference_in_use".into())),
            }
        }
        let mut refunded = 0;
        for id in &others {
            refunded += value(&get(&app, id).await.amount_refunded);
        }
        println!("{backend}: one refund reference raced on 6 records → {taken} accepted, {refunded} refunded in all");
        assert_eq!(taken, 1);
        assert_eq!(refunded, 500);
    };

    the_database_itself_refuses_over_refunds_and_reused_references => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let record = create(&app, guaranteed(1_000)).await;
        let refunded = client(&app).report_refund(authorized(refund(&record.id, "db-ref", Some(400)))).await.unwrap().into_inner();
        let db = app.database.connect(&[&settle_payments::MIGRATIONS]).await.unwrap();
        let over = sqlx::query("UPDATE payment_records SET amount_refunded = amount_guaranteed + 1 WHERE id = $1")
            .bind(record.id.as_str())
            .execute(db.pool())
            .await;
        assert!(over.is_err(), "the CHECK keeps amount_refunded within amount_guaranteed");
        let reused = sqlx::query(
            "INSERT INTO payment_record_refunds (account_id, livemode, refund_reference, payment_record, \
               payment_attempt_record, amount, currency, created) \
             SELECT account_id, livemode, refund_reference, payment_record, payment_attempt_record, 1, currency, created \
             FROM payment_record_refunds WHERE refund_reference = 'db-ref'",
        )
        .execute(db.pool())
        .await
        .unwrap_err();
        assert!(settle_platform::db::is_unique_violation(&reused), "{reused:?}");
        assert_eq!(get(&app, &record.id).await, refunded);
    };
}
