//! Test and live mode are separate data, end to end on both backends: a test key and a live key of
//! the same account each see only their own mode's objects, lists, events and sagas; idempotency
//! keys are per mode; a saga cannot reach across modes; and the test helpers refuse live keys and
//! live objects (the hole where a test key marked a live processing bank debit succeeded).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::common::v1::ListSagasRequest;
use settle_proto::common::v1::saga_service_client::SagaServiceClient;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use settle_testkit::{LIVE_API_KEY, reason, with_key};
use settle_tests::Suite;
use settle_tests::api::Api;
use tonic::Code;

fn apis(suite: &Suite) -> (Api, Api) {
    let test = Api::new(suite.invoices.channel(), suite.payments.channel())
        .with_credit_notes(suite.credit_notes.channel());
    let live = test.clone().with_key(LIVE_API_KEY);
    (test, live)
}

async fn open(api: &Api, customer: &str, total: i64) -> pb::Invoice {
    let draft = api.draft(customer, total, false).await.unwrap();
    api.finalize(&draft.id, None).await.unwrap()
}

backend_tests! {
    objects_of_one_mode_do_not_exist_in_the_other => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let (test, live) = apis(&suite);
        let live_invoice = open(&live, "cus_modes", 5_000).await;
        assert!(live_invoice.livemode);
        let live_intent = live.intent("cus_modes", 4_000, Some("pm_card_visa")).await.unwrap();
        assert!(live_intent.livemode);
        let live_note = live.credit_note(&live_invoice.id, 1_000, 0, 0, None).await.unwrap();
        assert!(live_note.livemode);
        let test_invoice = open(&test, "cus_modes", 7_000).await;
        assert!(!test_invoice.livemode);

        // Reads by id: NOT_FOUND in the other mode, both directions.
        let missing = test.invoice(&live_invoice.id).await.unwrap_err();
        assert_eq!((missing.code(), reason(&missing)), (Code::NotFound, "resource_missing".to_owned()));
        assert_eq!(live.invoice(&test_invoice.id).await.unwrap_err().code(), Code::NotFound);
        let get_intent = ppb::GetPaymentIntentRequest { id: live_intent.id.clone(), ..Default::default() };
        assert_eq!(test.intents.clone().get_payment_intent(with_key(get_intent, settle_platform::auth::DEV_API_KEY)).await.unwrap_err().code(), Code::NotFound);
        assert!(test.credit_notes_of(&live_invoice.id).await.unwrap().is_empty());

        // Lists and events: each key sees its own mode only.
        let test_ids: Vec<String> = test.all_invoices().await.unwrap().into_iter().map(|i| i.id).collect();
        let live_ids: Vec<String> = live.all_invoices().await.unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(test_ids, std::slice::from_ref(&test_invoice.id));
        assert_eq!(live_ids, std::slice::from_ref(&live_invoice.id));
        assert!(test.all_intents(None).await.unwrap().is_empty());
        assert_eq!(live.all_intents(None).await.unwrap().len(), 1);
        for (client_test, client_live) in [
            (&test.invoice_events, &live.invoice_events),
            (&test.payment_events, &live.payment_events),
            (test.credit_note_events.as_ref().unwrap(), live.credit_note_events.as_ref().unwrap()),
        ] {
            let test_events = test.events(client_test).await.unwrap();
            let live_events = live.events(client_live).await.unwrap();
            assert!(test_events.iter().all(|e| !e.livemode), "a test key saw a live event");
            assert!(!live_events.is_empty() && live_events.iter().all(|e| e.livemode), "a live key saw a test event");
            let id = live_events[0].id.clone();
            let get = settle_proto::events::v1::GetEventRequest { id };
            let refused = client_test.clone().get_event(with_key(get, settle_platform::auth::DEV_API_KEY)).await.unwrap_err();
            assert_eq!(refused.code(), Code::NotFound);
        }

        // A saga cannot reach across modes: a test invoice cannot take a live payment.
        let events_before = test.events(&test.invoice_events).await.unwrap().len();
        let refused = test.attach(&test_invoice.id, &live_intent.id, None).await.unwrap_err();
        assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
        assert_eq!(test.invoice(&test_invoice.id).await.unwrap(), test_invoice);
        assert_eq!(live.attachment(&live_intent.id).await.unwrap(), None);
        assert_eq!(test.events(&test.invoice_events).await.unwrap().len(), events_before);
        // … and in its own mode it can.
        let paid = live.attach(&live_invoice.id, &live_intent.id, None).await.unwrap();
        assert_eq!(paid.amount_remaining, 0);
        let sagas = |key| {
            let mut client = SagaServiceClient::new(suite.invoices.channel());
            async move {
                client.list_sagas(with_key(ListSagasRequest { limit: Some(100), ..Default::default() }, key)).await.unwrap().into_inner().data
            }
        };
        let names = |sagas: Vec<settle_proto::common::v1::Saga>, subject: &str| -> Vec<String> {
            sagas.into_iter().filter_map(|s| s.subjects.get(subject).cloned()).collect()
        };
        // (The refused attach may have left a failed test-mode saga naming the live id.)
        let test_sagas = names(sagas(settle_platform::auth::DEV_API_KEY).await, "invoice");
        assert!(test_sagas.iter().all(|invoice| *invoice == test_invoice.id), "a test key saw a live saga");
        assert_eq!(names(sagas(LIVE_API_KEY).await, "invoice"), std::slice::from_ref(&live_invoice.id));
    };

    idempotency_keys_are_per_mode => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let (test, live) = apis(&suite);
        let create = |amount: i64| ppb::CreatePaymentIntentRequest { amount, currency: "usd".into(), ..Default::default() };
        let keyed = |request, key: &'static str| {
            let mut request = with_key(request, key);
            request.metadata_mut().insert("idempotency-key", "same-key".parse().unwrap());
            request
        };
        let in_test = test.intents.clone().create_payment_intent(keyed(create(100), settle_platform::auth::DEV_API_KEY)).await.unwrap().into_inner();
        // The same key with other parameters in live mode is a fresh request, not a mismatch…
        let in_live = live.intents.clone().create_payment_intent(keyed(create(500), LIVE_API_KEY)).await.unwrap().into_inner();
        assert_ne!(in_test.id, in_live.id);
        assert_eq!((in_test.amount, in_test.livemode, in_live.amount, in_live.livemode), (100, false, 500, true));
        // … and each mode's retry replays its own first answer.
        let again = live.intents.clone().create_payment_intent(keyed(create(500), LIVE_API_KEY)).await.unwrap().into_inner();
        assert_eq!(again, in_live);
        let mismatch = test.intents.clone().create_payment_intent(keyed(create(500), settle_platform::auth::DEV_API_KEY)).await.unwrap_err();
        assert_eq!(reason(&mismatch), "idempotency_error");

        // Sagas keyed alike in both modes are two sagas.
        let test_invoice = open(&test, "cus_keys", 1_000).await;
        let live_invoice = open(&live, "cus_keys", 1_000).await;
        let test_pay = test.intent("cus_keys", 1_000, Some("pm_card_visa")).await.unwrap();
        let live_pay = live.intent("cus_keys", 1_000, Some("pm_card_visa")).await.unwrap();
        let a = test.attach(&test_invoice.id, &test_pay.id, Some("attach-1")).await.unwrap();
        let b = live.attach(&live_invoice.id, &live_pay.id, Some("attach-1")).await.unwrap();
        // A key is one request whichever method first used it: a saga-driven method refuses a key
        // a table-served method used, and the other way round.
        let update = |id: &str, key: &'static str| {
            let mut request = with_key(
                pb::UpdateInvoiceRequest { id: id.to_owned(), description: Some("d".into()), ..Default::default() },
                settle_platform::auth::DEV_API_KEY,
            );
            request.metadata_mut().insert("idempotency-key", key.parse().unwrap());
            request
        };
        let other = open(&test, "cus_keys", 1_000).await;
        let other_pay = test.intent("cus_keys", 1_000, Some("pm_card_visa")).await.unwrap();
        test.invoices.clone().update_invoice(update(&other.id, "cross-1")).await.unwrap();
        let refused = test.attach(&other.id, &other_pay.id, Some("cross-1")).await.unwrap_err();
        assert_eq!(reason(&refused), "idempotency_error");
        let refused = test.invoices.clone().update_invoice(update(&other.id, "attach-1")).await.unwrap_err();
        assert_eq!(reason(&refused), "idempotency_error");

        let paid = Some(pb::InvoiceStatus::Paid as i32);
        assert_eq!((a.id, a.status, b.id, b.status), (test_invoice.id, paid, live_invoice.id, paid));
    };

    test_helpers_refuse_live_keys_and_live_objects => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        let (test, live) = apis(&suite);
        let live_invoice = open(&live, "cus_bank", 2_000).await;
        let processing = live.intent("cus_bank", 2_000, Some("pm_us_bank_account")).await.unwrap();
        assert_eq!(processing.status, ppb::PaymentIntentStatus::Processing as i32);
        live.attach(&live_invoice.id, &processing.id, None).await.unwrap();

        let refused = live.settle(&processing.id, true).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused)), (Code::PermissionDenied, "permission_denied".to_owned()));
        let missing = test.settle(&processing.id, true).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);

        let still = live.all_intents(None).await.unwrap();
        assert_eq!(still.len(), 1);
        assert_eq!(still[0].status, ppb::PaymentIntentStatus::Processing as i32);
        let invoice = live.invoice(&live_invoice.id).await.unwrap();
        assert_eq!((invoice.status, invoice.amount_paid), (Some(pb::InvoiceStatus::Open as i32), 0));
    };
}
