//! Probes of who a call acts for: test and live mode kept apart (objects, lists, events, sagas,
//! idempotency keys, test helpers), forged `settle-account` / `settle-livemode` headers ignored with
//! a normal key, and the credit-note preview of an invoice with many payments (bounded fan-out).

use std::time::Duration;

use settle_platform::auth::{ACCOUNT_HEADER, DEV_API_KEY, LIVEMODE_HEADER};
use settle_proto::common::v1::ListSagasRequest;
use settle_proto::common::v1::saga_service_client::SagaServiceClient;
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::settle::creditnotes::v1 as cnpb;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use settle_testkit::{LIVE_API_KEY, OTHER_ACCOUNT, OTHER_API_KEY};
use tonic::Code;
use tonic::metadata::MetadataValue;

use super::{Probe, ProbeEnv};
use crate::api::Api;

fn api(env: &ProbeEnv<'_>, key: &'static str) -> Api {
    Api::new(env.channels.invoices.clone(), env.channels.payments.clone())
        .with_credit_notes(env.channels.credit_notes.clone())
        .with_key(key)
}

/// Runs an [`Api`] helper as one probe call.
async fn via<T>(
    probe: &mut Probe,
    rpc: &str,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Option<Result<T, tonic::Status>> {
    probe.call(rpc, async { call.await.map(tonic::Response::new) }).await
}

/// A live invoice and a live processing bank debit attached to it are invisible to the test key,
/// cannot be settled with either key, and leave the invoice unpaid; events, sagas and idempotency
/// keys stay per mode.
pub async fn modes(env: &ProbeEnv<'_>, p: &mut Probe) {
    let (live, test) = (api(env, LIVE_API_KEY), api(env, DEV_API_KEY));
    let customer = format!("cus_probe_modes_{}", env.seed);
    let Some(draft) = via(p, "InvoiceService/CreateInvoice", live.draft(&customer, 5_000, false)).await
    else {
        return;
    };
    let Some(draft) = p.expect_ok("InvoiceService/CreateInvoice", Some(draft), "a live draft") else {
        return;
    };
    let invoice = draft.id;
    let finalized = via(p, "InvoiceService/FinalizeInvoice", live.finalize(&invoice, None)).await;
    p.expect_ok("InvoiceService/FinalizeInvoice", finalized, "finalizing the live invoice");
    let intent = via(
        p,
        "PaymentIntentService/CreatePaymentIntent",
        live.intent(&customer, 5_000, Some("pm_us_bank_account")),
    )
    .await;
    let Some(intent) = p.expect_ok("PaymentIntentService/CreatePaymentIntent", intent, "a live bank debit")
    else {
        return;
    };
    let attached = via(p, "InvoiceService/AttachPayment", live.attach(&invoice, &intent.id, None)).await;
    p.expect_ok("InvoiceService/AttachPayment", attached, "attaching the live debit to the live invoice");
    let live_ids = [invoice.clone(), intent.id.clone()];

    // The test key does not see them.
    let got = via(p, "InvoiceService/GetInvoice", test.invoice(&invoice)).await;
    p.expect_refused(
        "InvoiceService/GetInvoice",
        &got,
        &[Code::NotFound],
        "a live invoice read with the test key",
    );
    let request =
        p.request(ppb::GetPaymentIntentRequest { id: intent.id.clone(), ..Default::default() }, DEV_API_KEY);
    let got = p
        .call("PaymentIntentService/GetPaymentIntent", test.intents.clone().get_payment_intent(request))
        .await;
    p.expect_refused(
        "PaymentIntentService/GetPaymentIntent",
        &got,
        &[Code::NotFound],
        "a live intent read with the test key",
    );
    if let Some(Ok(listed)) = via(p, "InvoiceService/ListInvoices", test.all_invoices()).await
        && listed.iter().any(|i| i.id == invoice)
    {
        p.fail("the test key lists a live invoice", "InvoiceService/ListInvoices", "OK", &invoice);
    }
    if let Some(Ok(listed)) =
        via(p, "PaymentIntentService/ListPaymentIntents", test.all_intents(Some(&customer))).await
        && listed.iter().any(|i| i.id == intent.id)
    {
        p.fail(
            "the test key lists a live intent",
            "PaymentIntentService/ListPaymentIntents",
            "OK",
            &intent.id,
        );
    }
    let search = ppb::SearchPaymentIntentsRequest {
        query: format!("customer:'{customer}'"),
        limit: Some(100),
        ..Default::default()
    };
    let request = p.request(search, DEV_API_KEY);
    let found = p
        .call(
            "PaymentIntentService/SearchPaymentIntents",
            test.intents.clone().search_payment_intents(request),
        )
        .await;
    if let Some(Ok(found)) = found
        && found.data.iter().any(|i| i.id == intent.id)
    {
        p.fail(
            "the test key finds a live intent",
            "PaymentIntentService/SearchPaymentIntents",
            "OK",
            &intent.id,
        );
    }

    // The test helper refuses the live debit with either key.
    let settle = |key| {
        p.request(
            ppb::SettlePaymentIntentRequest {
                id: intent.id.clone(),
                outcome: ppb::SettlementOutcome::Succeeded as i32,
                ..Default::default()
            },
            key,
        )
    };
    let (with_test, with_live) = (settle(DEV_API_KEY), settle(LIVE_API_KEY));
    let rpc = "TestHelperService/SettlePaymentIntent";
    let answer = p.call(rpc, test.test_helpers.clone().settle_payment_intent(with_test)).await;
    p.expect_refused(rpc, &answer, &[Code::NotFound], "the test key settling a live debit");
    let answer = p.call(rpc, live.test_helpers.clone().settle_payment_intent(with_live)).await;
    p.expect_refused(rpc, &answer, &[Code::PermissionDenied], "the live key calling a test helper");

    // The live invoice stays unpaid (give the event consumer time to act on a wrongful settlement).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    if let Some(Ok(now)) = via(p, "InvoiceService/GetInvoice", live.invoice(&invoice)).await
        && now.status == Some(pb::InvoiceStatus::Paid as i32)
    {
        p.fail(
            "a live invoice was paid by a refused settlement",
            "InvoiceService/GetInvoice",
            "OK",
            &invoice,
        );
    }

    // Events and sagas listed with the test key show none of the live objects.
    for (name, channel) in [
        ("invoices", &env.channels.invoices),
        ("payments", &env.channels.payments),
        ("credit-notes", &env.channels.credit_notes),
    ] {
        let events = EventServiceClient::new(channel.clone());
        if let Some(Ok(events)) = via(p, "EventService/ListEvents", Api::all_events(&events)).await
            && let Some(event) =
                events.iter().find(|e| live_ids.iter().any(|id| format!("{e:?}").contains(id.as_str())))
        {
            let shown = format!("{} {} on {name}", event.r#type, event.object_id);
            p.fail("the test key lists an event of a live object", "EventService/ListEvents", "OK", &shown);
        }
    }
    for channel in [&env.channels.invoices, &env.channels.credit_notes] {
        let request = p.request(ListSagasRequest { limit: Some(100), ..Default::default() }, DEV_API_KEY);
        let sagas = p
            .call("SagaService/ListSagas", SagaServiceClient::new(channel.clone()).list_sagas(request))
            .await;
        if let Some(Ok(sagas)) = sagas
            && let Some(saga) =
                sagas.data.iter().find(|s| live_ids.iter().any(|id| format!("{s:?}").contains(id.as_str())))
        {
            p.fail("the test key lists a saga of a live object", "SagaService/ListSagas", "OK", &saga.id);
        }
    }

    // One idempotency key, once per mode: two objects, each of its own mode.
    let key = format!("probe-modes-{}", env.seed);
    let mut made = Vec::new();
    for (scope_key, livemode) in [(DEV_API_KEY, false), (LIVE_API_KEY, true)] {
        let body = ppb::CreatePaymentIntentRequest {
            amount: 700,
            currency: "usd".into(),
            customer: Some(customer.clone()),
            ..Default::default()
        };
        let mut request = p.request(body, scope_key);
        request
            .metadata_mut()
            .insert("idempotency-key", key.parse().unwrap_or(MetadataValue::from_static("probe")));
        let rpc = "PaymentIntentService/CreatePaymentIntent";
        let answer = p.call(rpc, test.intents.clone().create_payment_intent(request)).await;
        if let Some(made_now) = p.expect_ok(rpc, answer, "an intent under a key the other mode used") {
            if made_now.livemode != livemode {
                p.fail("an idempotency key replayed the other mode's object", rpc, "OK", &made_now.id);
            }
            made.push(made_now.id);
        }
    }
    if made.len() == 2 && made[0] == made[1] {
        p.fail(
            "one idempotency key gave one object for both modes",
            "PaymentIntentService/CreatePaymentIntent",
            "OK",
            &made[0],
        );
    }
}

/// With a normal key, `settle-account` / `settle-livemode` headers never change the account or
/// the mode: what is created lands in the key's own scope (or the call is refused).
pub async fn forged_metadata(env: &ProbeEnv<'_>, p: &mut Probe) {
    let forgeries: [(&'static str, &str, &str); 3] = [
        (DEV_API_KEY, OTHER_ACCOUNT, "true"),
        (DEV_API_KEY, settle_platform::auth::DEV_ACCOUNT, "true"),
        (OTHER_API_KEY, settle_platform::auth::DEV_ACCOUNT, "false"),
    ];
    for (n, (key, account, livemode)) in forgeries.into_iter().enumerate() {
        let customer = format!("cus_probe_forged_{}_{n}", env.seed);
        let body = pb::CreateInvoiceRequest {
            customer: Some(customer.clone()),
            currency: Some("usd".into()),
            ..Default::default()
        };
        let mut request = p.request(body, key);
        if let (Ok(account), Ok(livemode)) = (account.parse(), livemode.parse()) {
            request.metadata_mut().insert(ACCOUNT_HEADER, account);
            request.metadata_mut().insert(LIVEMODE_HEADER, livemode);
        }
        let rpc = "InvoiceService/CreateInvoice";
        let own = api(env, key);
        let Some(Ok(invoice)) = p.call(rpc, own.invoices.clone().create_invoice(request)).await else {
            continue; // refused: nothing was created anywhere
        };
        let shown = format!("{} with {account}/{livemode} headers", invoice.id);
        if invoice.livemode {
            p.fail("a forged settle-livemode header switched the mode", rpc, "OK", &shown);
        }
        let found = via(p, "InvoiceService/GetInvoice", own.invoice(&invoice.id)).await;
        p.expect_ok("InvoiceService/GetInvoice", found, "the key reading what it just created");
        for other in [DEV_API_KEY, LIVE_API_KEY, OTHER_API_KEY].into_iter().filter(|k| *k != key) {
            let seen = via(p, "InvoiceService/GetInvoice", api(env, other).invoice(&invoice.id)).await;
            if let Some(Ok(_)) = seen {
                p.fail(
                    format!("an invoice made under forged headers is visible to {other}"),
                    rpc,
                    "OK",
                    &shown,
                );
            }
        }
    }
}

/// A credit-note preview of an invoice with many small attached payments answers in time.
pub async fn fan_out(env: &ProbeEnv<'_>, p: &mut Probe) {
    let test = api(env, DEV_API_KEY);
    let payments: i64 = if env.ci { 20 } else { 30 };
    let customer = format!("cus_probe_fanout_{}", env.seed);
    let draft =
        via(p, "InvoiceService/CreateInvoice", test.draft(&customer, payments * 100 + 1_000, false)).await;
    let Some(draft) = p.expect_ok("InvoiceService/CreateInvoice", draft, "a draft") else { return };
    let finalized = via(p, "InvoiceService/FinalizeInvoice", test.finalize(&draft.id, None)).await;
    if p.expect_ok("InvoiceService/FinalizeInvoice", finalized, "finalizing").is_none() {
        return;
    }
    let mut attached = 0;
    for _ in 0..payments {
        let intent = via(
            p,
            "PaymentIntentService/CreatePaymentIntent",
            test.intent(&customer, 100, Some("pm_card_visa")),
        )
        .await;
        let Some(intent) = p.expect_ok("PaymentIntentService/CreatePaymentIntent", intent, "a card payment")
        else {
            continue;
        };
        let done = via(p, "InvoiceService/AttachPayment", test.attach(&draft.id, &intent.id, None)).await;
        if p.expect_ok("InvoiceService/AttachPayment", done, "attaching a small payment").is_some() {
            attached += 1;
        }
    }
    let Some(mut notes) = test.credit_notes.clone() else { return };
    let now = via(p, "InvoiceService/GetInvoice", test.invoice(&draft.id)).await;
    let remaining = p
        .expect_ok("InvoiceService/GetInvoice", now, "reading the invoice")
        .map_or(0, |i| i.amount_remaining);
    // The second note exceeds what is still owed, so its refund is taken from the paid part: the
    // preview looks through the invoice's payments for one that can refund it.
    for (amount, refund) in [(500.min(remaining), None), (remaining + 100, Some(100))] {
        let preview = cnpb::PreviewCreditNoteRequest {
            invoice: draft.id.clone(),
            amount: Some(amount),
            refund_amount: refund,
            ..Default::default()
        };
        let request = p.request(preview, DEV_API_KEY);
        let rpc = "CreditNoteService/PreviewCreditNote";
        let answer = p.call(rpc, notes.preview_credit_note(request)).await;
        p.expect_ok(rpc, answer, &format!("the preview of an invoice with {attached} payments"));
    }
}
