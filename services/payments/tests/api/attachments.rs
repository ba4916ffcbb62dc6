//! PaymentAttachmentService: the payments side of the attach and detach sagas.

use std::collections::HashMap;

use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::backend_tests;
use settle_platform::ids::IdPrefix;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::payment_attachment_service_client::PaymentAttachmentServiceClient;
use settle_testkit::{authorized, internal, reason, violated_fields};
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{TestApp, confirmed, create, spawn};

fn client(app: &TestApp) -> PaymentAttachmentServiceClient<Channel> {
    PaymentAttachmentServiceClient::new(app.server.channel())
}

fn reserve(payment: &str, saga: &str) -> pb::ReserveAttachmentRequest {
    pb::ReserveAttachmentRequest {
        payment: payment.to_owned(),
        invoice: "in_0000000000000000000001".to_owned(),
        customer: "cus_test".to_owned(),
        currency: "usd".to_owned(),
        saga_id: saga.to_owned(),
    }
}

fn saga() -> String {
    IdPrefix::Saga.generate()
}

fn status(a: &pb::Attachment) -> pb::AttachmentStatus {
    pb::AttachmentStatus::try_from(a.status).unwrap()
}

backend_tests! {
    only_settles_own_services_may_call_it => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let refused = client(&app).reserve_attachment(authorized(reserve(&intent.id, &saga()))).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(reason(&refused), "permission_denied");
    };

    reserve_confirm_release_and_reattach => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let first = saga();
        let reserved = client(&app).reserve_attachment(internal(reserve(&intent.id, &first), DEV_ACCOUNT)).await.unwrap().into_inner();
        assert!(reserved.id.starts_with("patt_"));
        assert_eq!(status(&reserved), pb::AttachmentStatus::Reserved);
        assert_eq!(reserved.amount, 2_000);
        assert_eq!(reserved.payment_status, pb::PaymentOutcome::Succeeded as i32);
        assert_eq!(reserved.payment_type, pb::PaymentType::PaymentIntent as i32);

        // Every step may run twice.
        let again = client(&app).reserve_attachment(internal(reserve(&intent.id, &first), DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(again.id, reserved.id);
        let confirm = pb::ConfirmAttachmentRequest { payment: intent.id.clone(), saga_id: first.clone() };
        let confirmed_once = client(&app).confirm_attachment(internal(confirm.clone(), DEV_ACCOUNT)).await.unwrap().into_inner();
        let confirmed_twice = client(&app).confirm_attachment(internal(confirm, DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(status(&confirmed_once), pb::AttachmentStatus::Confirmed);
        assert_eq!(confirmed_once.id, confirmed_twice.id);
        let current = client(&app).get_attachment(internal(pb::GetAttachmentRequest { payment: intent.id.clone() }, DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!((current.id.as_str(), current.saga_id.as_str()), (reserved.id.as_str(), first.as_str()));

        // Another saga cannot take it while it is attached.
        let taken = client(&app).reserve_attachment(internal(reserve(&intent.id, &saga()), DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!(taken.code(), Code::FailedPrecondition);
        assert_eq!(reason(&taken), "payment_already_attached");
        assert_eq!(violated_fields(&taken), ["payment"]);

        // Detach: release; then the payment may be attached again.
        let release = pb::ReleaseAttachmentRequest { payment: intent.id.clone(), saga_id: first.clone() };
        let released = client(&app).release_attachment(internal(release.clone(), DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(status(&released), pb::AttachmentStatus::Released);
        assert_eq!(client(&app).release_attachment(internal(release, DEV_ACCOUNT)).await.unwrap().into_inner().id, released.id);
        let gone = client(&app).get_attachment(internal(pb::GetAttachmentRequest { payment: intent.id.clone() }, DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!((gone.code(), reason(&gone).as_str()), (Code::NotFound, "payment_not_attached"));
        let refused_confirm = client(&app).confirm_attachment(internal(pb::ConfirmAttachmentRequest { payment: intent.id.clone(), saga_id: first.clone() }, DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!(reason(&refused_confirm), "payment_not_attached");
        let second = client(&app).reserve_attachment(internal(reserve(&intent.id, &saga()), DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(status(&second), pb::AttachmentStatus::Reserved);
    };

    a_release_before_the_reserve_wins => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let late = saga();
        let placeholder = client(&app).release_attachment(internal(pb::ReleaseAttachmentRequest { payment: intent.id.clone(), saga_id: late.clone() }, DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(status(&placeholder), pb::AttachmentStatus::Released);
        assert_eq!((placeholder.invoice.as_str(), placeholder.amount), ("", 0));
        let reserve_late = client(&app).reserve_attachment(internal(reserve(&intent.id, &late), DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(status(&reserve_late), pb::AttachmentStatus::Released, "the late reserve reserves nothing");
        assert!(client(&app).get_attachment(internal(pb::GetAttachmentRequest { payment: intent.id.clone() }, DEV_ACCOUNT)).await.is_err());
    };

    reservation_checks_customer_currency_and_state => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let paid = app.create(confirmed(2_000, "pm_card_visa")).await;
        let mut other_customer = reserve(&paid.id, &saga());
        other_customer.customer = "cus_other".into();
        let e = client(&app).reserve_attachment(internal(other_customer, DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!((e.code(), reason(&e).as_str()), (Code::FailedPrecondition, "customer_mismatch"));
        let mut other_currency = reserve(&paid.id, &saga());
        other_currency.currency = "eur".into();
        let e = client(&app).reserve_attachment(internal(other_currency, DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!(reason(&e), "currency_mismatch");

        let declined = app.create(confirmed(2_000, "pm_card_chargeDeclined")).await;
        let e = client(&app).reserve_attachment(internal(reserve(&declined.id, &saga()), DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!(reason(&e), "payment_not_countable");
        let canceled = app.create(create(2_000)).await;
        app.intents.clone().cancel_payment_intent(authorized(pb::CancelPaymentIntentRequest { id: canceled.id.clone(), cancellation_reason: None })).await.unwrap();
        let e = client(&app).reserve_attachment(internal(reserve(&canceled.id, &saga()), DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!(reason(&e), "payment_not_countable");

        let pending = app.create(confirmed(2_000, "pm_us_bank_account")).await;
        let reserved = client(&app).reserve_attachment(internal(reserve(&pending.id, &saga()), DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(reserved.payment_status, pb::PaymentOutcome::Pending as i32);

        let missing = client(&app).reserve_attachment(internal(reserve("pi_0000000000000000000000", &saga()), DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!((missing.code(), reason(&missing).as_str()), (Code::NotFound, "resource_missing"));
        let theirs = client(&app).reserve_attachment(internal(reserve(&paid.id, &saga()), settle_testkit::OTHER_ACCOUNT)).await.unwrap_err();
        assert_eq!(theirs.code(), Code::NotFound, "another account's payment does not exist");
        let bad_saga = client(&app).reserve_attachment(internal(reserve(&paid.id, "nope"), DEV_ACCOUNT)).await.unwrap_err();
        assert_eq!(violated_fields(&bad_saga), ["saga_id"]);
        assert!(client(&app).get_attachment(internal(pb::GetAttachmentRequest { payment: paid.id.clone() }, DEV_ACCOUNT)).await.is_err(), "refused reservations left nothing");
    };

    an_attached_intents_money_fields_are_frozen => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = app.create(create(2_000)).await;
        client(&app).reserve_attachment(internal(reserve(&intent.id, &saga()), DEV_ACCOUNT)).await.unwrap();
        let e = app.intents.clone().update_payment_intent(authorized(pb::UpdatePaymentIntentRequest { id: intent.id.clone(), amount: Some(3_000), ..Default::default() })).await.unwrap_err();
        assert_eq!((e.code(), reason(&e).as_str()), (Code::FailedPrecondition, "payment_already_attached"));
        assert_eq!(violated_fields(&e), ["amount"]);
        let described = app.intents.clone().update_payment_intent(authorized(pb::UpdatePaymentIntentRequest { id: intent.id.clone(), description: Some("fine".into()), ..Default::default() })).await.unwrap().into_inner();
        assert_eq!((described.amount, described.description.as_deref()), (2_000, Some("fine")));
    };

    concurrent_reservations_of_one_payment_let_exactly_one_win => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let intent = app.create(confirmed(2_000, "pm_card_visa")).await;
        let calls = (0..64).map(|i| {
            let mut client = client(&app);
            let mut request = reserve(&intent.id, &saga());
            request.invoice = format!("in_{i:022}");
            tokio::spawn(async move { client.reserve_attachment(internal(request, DEV_ACCOUNT)).await })
        });
        let mut outcomes = HashMap::<String, usize>::new();
        let mut winners = Vec::new();
        for result in futures::future::join_all(calls).await {
            match result.unwrap() {
                Ok(attachment) => { winners.push(attachment.into_inner().invoice); *outcomes.entry("reserved".into()).or_default() += 1; }
                Err(status) => *outcomes.entry(reason(&status)).or_default() += 1,
            }
        }
        println!("{backend}: 64 concurrent ReserveAttachment of one payment to 64 invoices → {outcomes:?}");
        assert_eq!(winners.len(), 1, "exactly one reservation wins");
        assert_eq!(outcomes.get("payment_already_attached"), Some(&63));
        let current = client(&app).get_attachment(internal(pb::GetAttachmentRequest { payment: intent.id.clone() }, DEV_ACCOUNT)).await.unwrap().into_inner();
        assert_eq!(current.invoice, winners[0]);
    };
}

mod payment_records {
    //! Payment Records attach like intents: a guaranteed record counts at once, a pending one
    //! counts when guaranteed, a failed one cannot be attached, and an attached record's customer
    //! is frozen.

    use super::*;
    use crate::payment_records::{guaranteed, report};
    use settle_proto::settle::payments::v1::payment_record_service_client::PaymentRecordServiceClient;

    fn records(app: &TestApp) -> PaymentRecordServiceClient<Channel> {
        PaymentRecordServiceClient::new(app.server.channel())
    }

    backend_tests! {
        records_attach_by_their_latest_attempt => |database: TestDatabase| async move {
            let app = spawn(database).await;
            let paid = records(&app).report_payment(authorized(guaranteed(2_500))).await.unwrap().into_inner();
            let reserved = client(&app).reserve_attachment(internal(reserve(&paid.id, &saga()), DEV_ACCOUNT)).await.unwrap().into_inner();
            assert_eq!(reserved.payment_type, pb::PaymentType::PaymentRecord as i32);
            assert_eq!((reserved.amount, reserved.payment_status), (2_500, pb::PaymentOutcome::Succeeded as i32));

            let pending = records(&app).report_payment(authorized(report(1_000))).await.unwrap().into_inner();
            let reserved = client(&app).reserve_attachment(internal(reserve(&pending.id, &saga()), DEV_ACCOUNT)).await.unwrap().into_inner();
            assert_eq!(reserved.payment_status, pb::PaymentOutcome::Pending as i32);

            let failing = records(&app).report_payment(authorized(report(1_000))).await.unwrap().into_inner();
            records(&app).report_payment_attempt_failed(authorized(pb::ReportPaymentAttemptFailedRequest {
                id: failing.id.clone(), failed_at: settle_platform::time::now_unix(), ..Default::default()
            })).await.unwrap();
            let refused = client(&app).reserve_attachment(internal(reserve(&failing.id, &saga()), DEV_ACCOUNT)).await.unwrap_err();
            assert_eq!(reason(&refused), "payment_not_countable");
        };

        an_attached_records_customer_is_frozen => |database: TestDatabase| async move {
            let app = spawn(database).await;
            let record = records(&app).report_payment(authorized(guaranteed(2_500))).await.unwrap().into_inner();
            client(&app).reserve_attachment(internal(reserve(&record.id, &saga()), DEV_ACCOUNT)).await.unwrap();
            let change = pb::ReportPaymentAttemptInformationalRequest {
                id: record.id.clone(),
                customer_details: Some(pb::PaymentRecordCustomerDetails { customer: Some("cus_other".into()), ..Default::default() }),
                ..Default::default()
            };
            let refused = records(&app).report_payment_attempt_informational(authorized(change)).await.unwrap_err();
            assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "payment_already_attached"));
            let described = records(&app).report_payment_attempt_informational(authorized(pb::ReportPaymentAttemptInformationalRequest {
                id: record.id.clone(), description: Some("fine".into()), ..Default::default()
            })).await.unwrap().into_inner();
            assert_eq!(described.description.as_deref(), Some("fine"));
        };
    }
}
