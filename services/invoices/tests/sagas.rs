//! The payment-application sagas against a real payments service over gRPC, on SQLite and
//! PostgreSQL: attach (succeeded and pending payments, refusals and compensation), detach, reapply,
//! the payments event consumer, idempotent retries, and races.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use settle_invoices::applications::{
    Context, attach::AttachSaga, detach::DetachSaga, pay::PaySaga, reapply::ReapplySaga,
};
use settle_invoices::domain::invoice::InvoiceStatus;
use settle_invoices::grpc::{AppState, applications as rpc};
use settle_invoices::model;
use settle_invoices::peers::Payments;
use settle_invoices::store::{invoice_payments, invoices};
use settle_platform::auth::{DEV_ACCOUNT, Principal};
use settle_platform::backend_tests;
use settle_platform::context::RequestContext;
use settle_platform::ids::IdPrefix;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::attach_payment_request::Payment as AttachTarget;
use settle_proto::settle::invoices::v1::detach_payment_request::Payment as DetachTarget;
use settle_proto::settle::payments::v1 as ppb;
use settle_proto::settle::payments::v1::payment_attachment_service_client::PaymentAttachmentServiceClient;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_proto::settle::payments::v1::test_helper_service_client::TestHelperServiceClient;
use settle_saga::{RunnerSettings, SagaKind, SagaRunner};
use settle_testkit::{RunningServer, authorized, internal};
use tokio_util::sync::CancellationToken;

/// A payments service (real, over gRPC) and the invoices side of the sagas on its own database.
struct Harness {
    payments: RunningServer,
    state: AppState,
    shutdown: CancellationToken,
    _databases: (TestDatabase, TestDatabase),
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn harness(database: TestDatabase) -> Harness {
    let backend = database.backend();
    let payments_db = TestDatabase::new(backend).await.unwrap();
    let shutdown = settle_testkit::token();
    let app =
        settle_payments::startup::Application::build(settle_testkit::config(&payments_db), shutdown.clone())
            .await
            .unwrap();
    let payments = settle_testkit::spawn(app.local_addr(), shutdown.clone(), app.run_until_stopped());

    let db = database.connect(&[&settle_invoices::MIGRATIONS, &settle_saga::MIGRATIONS]).await.unwrap();
    let hub = settle_platform::outbox::EventHub::new();
    tokio::spawn(settle_platform::outbox::run_sequencer(db.clone(), hub.clone(), shutdown.clone()));
    let peer =
        Payments::connect(&format!("http://{}", payments.addr()), settle_testkit::INTERNAL_KEY).unwrap();
    let ctx = Context::new(db.clone(), hub.clone(), peer);
    let kinds: Vec<Arc<dyn SagaKind>> = vec![
        Arc::new(AttachSaga { ctx: ctx.clone() }),
        Arc::new(DetachSaga { ctx: ctx.clone() }),
        Arc::new(ReapplySaga { ctx: ctx.clone() }),
        Arc::new(PaySaga { ctx: ctx.clone() }),
    ];
    let settings = RunnerSettings { recovery_interval: Duration::from_millis(50), ..Default::default() };
    let runner = SagaRunner::new(db.clone(), "test", settings, kinds);
    runner.spawn_background(shutdown.clone());
    tokio::spawn(settle_invoices::consumer::run(ctx.clone(), runner.clone(), shutdown.clone()));
    Harness {
        payments,
        state: AppState { db, hub, applications: ctx, runner },
        shutdown,
        _databases: (database, payments_db),
    }
}

fn ctx(key: Option<&str>) -> RequestContext {
    RequestContext {
        principal: Principal::new(DEV_ACCOUNT, false, false),
        idempotency_key: key.map(str::to_owned),
        request_id: None,
    }
}

impl Harness {
    /// An open invoice of `total` cents for `customer`, written straight to the store (the
    /// InvoiceService that creates and finalizes invoices is tested on its own).
    async fn open_invoice(&self, customer: &str, total: i64) -> pb::Invoice {
        let mut doc = pb::Invoice {
            id: IdPrefix::Invoice.generate(),
            object: "invoice".into(),
            customer: customer.into(),
            currency: "usd".into(),
            subtotal: total,
            auto_advance: true,
            created: settle_platform::time::now_unix(),
            ..Default::default()
        };
        model::set_status(&mut doc, InvoiceStatus::Open);
        model::recompute(&mut doc).unwrap();
        let mut tx = self.state.db.begin().await.unwrap();
        invoices::insert(&mut tx, &settle_platform::Scope::test(DEV_ACCOUNT), &doc).await.unwrap();
        tx.commit().await.unwrap();
        doc
    }

    async fn invoice(&self, id: &str) -> pb::Invoice {
        invoices::find(self.state.db.pool(), &settle_platform::Scope::test(DEV_ACCOUNT), id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn intent(&self, amount: i64, customer: &str, payment_method: Option<&str>) -> ppb::PaymentIntent {
        let request = ppb::CreatePaymentIntentRequest {
            amount,
            currency: "usd".into(),
            customer: Some(customer.into()),
            payment_method: payment_method.map(str::to_owned),
            confirm: payment_method.map(|_| true),
            ..Default::default()
        };
        PaymentIntentServiceClient::new(self.payments.channel())
            .create_payment_intent(authorized(request))
            .await
            .unwrap()
            .into_inner()
    }

    async fn attach(
        &self,
        invoice: &str,
        payment: &str,
        key: Option<&str>,
    ) -> Result<pb::Invoice, settle_platform::ApiError> {
        let req = pb::AttachPaymentRequest {
            id: invoice.into(),
            payment: Some(AttachTarget::PaymentIntent(payment.into())),
            expand: vec![],
        };
        rpc::attach_payment(&self.state, &ctx(key), req).await
    }

    async fn attachment(&self, payment: &str) -> Option<ppb::Attachment> {
        PaymentAttachmentServiceClient::new(self.payments.channel())
            .get_attachment(internal(ppb::GetAttachmentRequest { payment: payment.into() }, DEV_ACCOUNT))
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits (bounded) for the background parts — sagas finishing, the event consumer — to get
    /// the invoice to `amount_paid`.
    async fn await_paid(&self, invoice: &str, amount_paid: i64) -> pb::Invoice {
        for _ in 0..500 {
            let doc = self.invoice(invoice).await;
            if doc.amount_paid == amount_paid {
                return doc;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("invoice {invoice} never reached amount_paid {amount_paid}");
    }
}

fn status(doc: &pb::Invoice) -> InvoiceStatus {
    model::status(doc).unwrap()
}

backend_tests! {
    attaching_a_succeeded_payment_pays_the_invoice => |database: TestDatabase| async move {
        let h = harness(database).await;
        let invoice = h.open_invoice("cus_a", 2_000).await;
        let pi = h.intent(2_000, "cus_a", Some("pm_card_visa")).await;
        let paid = h.attach(&invoice.id, &pi.id, None).await.unwrap();
        assert_eq!((status(&paid), paid.amount_paid, paid.amount_remaining), (InvoiceStatus::Paid, 2_000, 0));
        let (invoice_payment, _) = invoice_payments::find_live_by_payment(h.state.db.pool(), &settle_platform::Scope::test(DEV_ACCOUNT), &pi.id).await.unwrap().unwrap();
        assert_eq!((invoice_payment.status, invoice_payment.amount_paid), (pb::InvoicePaymentStatus::Paid as i32, Some(2_000)));
        let attachment = h.attachment(&pi.id).await.unwrap();
        assert_eq!((attachment.invoice.as_str(), attachment.status), (invoice.id.as_str(), ppb::AttachmentStatus::Confirmed as i32));
    };

    partial_payments_add_up_and_a_pending_one_counts_when_it_succeeds => |database: TestDatabase| async move {
        let h = harness(database).await;
        let invoice = h.open_invoice("cus_a", 3_000).await;
        let card = h.intent(1_000, "cus_a", Some("pm_card_visa")).await;
        let bank = h.intent(2_000, "cus_a", Some("pm_us_bank_account")).await;
        let after_card = h.attach(&invoice.id, &card.id, None).await.unwrap();
        assert_eq!((status(&after_card), after_card.amount_paid, after_card.amount_remaining), (InvoiceStatus::Open, 1_000, 2_000));
        let after_bank = h.attach(&invoice.id, &bank.id, None).await.unwrap();
        assert_eq!((after_bank.amount_paid, after_bank.amount_remaining), (1_000, 2_000), "a pending payment does not count yet");
        TestHelperServiceClient::new(h.payments.channel())
            .settle_payment_intent(authorized(ppb::SettlePaymentIntentRequest { id: bank.id.clone(), outcome: ppb::SettlementOutcome::Succeeded as i32, ..Default::default() }))
            .await
            .unwrap();
        let settled = h.await_paid(&invoice.id, 3_000).await;
        assert_eq!((status(&settled), settled.amount_remaining), (InvoiceStatus::Paid, 0));
    };

    several_pending_payments_that_all_succeed_overpay_the_invoice => |database: TestDatabase| async move {
        let h = harness(database).await;
        let invoice = h.open_invoice("cus_a", 1_000).await;
        let first = h.intent(800, "cus_a", Some("pm_us_bank_account")).await;
        let second = h.intent(800, "cus_a", Some("pm_us_bank_account")).await;
        h.attach(&invoice.id, &first.id, None).await.unwrap();
        h.attach(&invoice.id, &second.id, None).await.unwrap();
        for pi in [&first, &second] {
            TestHelperServiceClient::new(h.payments.channel())
                .settle_payment_intent(authorized(ppb::SettlePaymentIntentRequest { id: pi.id.clone(), outcome: ppb::SettlementOutcome::Succeeded as i32, ..Default::default() }))
                .await
                .unwrap();
        }
        let overpaid = h.await_paid(&invoice.id, 1_600).await;
        assert_eq!((status(&overpaid), overpaid.amount_overpaid, overpaid.amount_remaining), (InvoiceStatus::Paid, 600, 0));
    };

    a_refused_payment_is_released_and_changes_nothing => |database: TestDatabase| async move {
        let h = harness(database).await;
        let invoice = h.open_invoice("cus_a", 1_000).await;
        let too_big = h.intent(1_500, "cus_a", Some("pm_card_visa")).await;
        let error = h.attach(&invoice.id, &too_big.id, None).await.unwrap_err();
        assert_eq!(error.reason_code(), "amount_too_large");
        assert_eq!(h.invoice(&invoice.id).await, invoice, "the invoice is unchanged");
        assert!(h.attachment(&too_big.id).await.is_none(), "payments released the reservation");
        let other_customer = h.intent(500, "cus_b", Some("pm_card_visa")).await;
        let error = h.attach(&invoice.id, &other_customer.id, None).await.unwrap_err();
        assert_eq!(error.reason_code(), "customer_mismatch");
        let missing = h.attach(&invoice.id, "pi_0000000000000000000000", None).await.unwrap_err();
        assert_eq!(missing.reason_code(), "resource_missing");
        assert!(invoice_payments::find_live_by_payment(h.state.db.pool(), &settle_platform::Scope::test(DEV_ACCOUNT), &too_big.id).await.unwrap().is_none());
    };

    detaching_reopens_a_paid_invoice_and_frees_the_payment => |database: TestDatabase| async move {
        let h = harness(database).await;
        let invoice = h.open_invoice("cus_a", 2_000).await;
        let pi = h.intent(2_000, "cus_a", Some("pm_card_visa")).await;
        h.attach(&invoice.id, &pi.id, None).await.unwrap();
        let req = pb::DetachPaymentRequest { id: invoice.id.clone(), payment: Some(DetachTarget::PaymentIntent(pi.id.clone())), expand: vec![] };
        let reopened = rpc::detach_payment(&h.state, &ctx(None), req.clone()).await.unwrap();
        assert_eq!((status(&reopened), reopened.amount_paid, reopened.amount_remaining, reopened.auto_advance), (InvoiceStatus::Open, 0, 2_000, false));
        assert!(h.attachment(&pi.id).await.is_none(), "payments released the attachment");
        let again = rpc::detach_payment(&h.state, &ctx(None), req).await.unwrap_err();
        assert_eq!(again.reason_code(), "payment_not_attached");
        // The freed payment can pay another invoice.
        let other = h.open_invoice("cus_a", 2_000).await;
        assert_eq!(status(&h.attach(&other.id, &pi.id, None).await.unwrap()), InvoiceStatus::Paid);
    };

    reapply_moves_a_payment_and_falls_back_when_the_target_refuses => |database: TestDatabase| async move {
        let h = harness(database).await;
        let source = h.open_invoice("cus_a", 2_000).await;
        let target = h.open_invoice("cus_a", 2_000).await;
        let pi = h.intent(2_000, "cus_a", Some("pm_card_visa")).await;
        h.attach(&source.id, &pi.id, None).await.unwrap();
        let moved = rpc::reapply_payment(&h.state, &ctx(None), pb::ReapplyPaymentRequest {
            id: target.id.clone(), payment: Some(settle_proto::settle::invoices::v1::reapply_payment_request::Payment::PaymentIntent(pi.id.clone())), expand: vec![],
        }).await.unwrap();
        assert_eq!((moved.id.as_str(), status(&moved)), (target.id.as_str(), InvoiceStatus::Paid));
        let source_now = h.invoice(&source.id).await;
        assert_eq!((status(&source_now), source_now.amount_paid), (InvoiceStatus::Open, 0));
        assert_eq!(h.attachment(&pi.id).await.unwrap().invoice, target.id);

        // A target that cannot take it: refused up front, nothing moves.
        let small = h.open_invoice("cus_a", 100).await;
        let refused = rpc::reapply_payment(&h.state, &ctx(None), pb::ReapplyPaymentRequest {
            id: small.id.clone(), payment: Some(settle_proto::settle::invoices::v1::reapply_payment_request::Payment::PaymentIntent(pi.id.clone())), expand: vec![],
        }).await.unwrap_err();
        assert_eq!(refused.reason_code(), "amount_too_large");
        assert_eq!(h.attachment(&pi.id).await.unwrap().invoice, target.id);
        assert_eq!(status(&h.invoice(&target.id).await), InvoiceStatus::Paid);
    };

    a_retried_attach_with_the_same_key_answers_the_first_outcome => |database: TestDatabase| async move {
        let h = harness(database).await;
        let invoice = h.open_invoice("cus_a", 2_000).await;
        let pi = h.intent(2_000, "cus_a", Some("pm_card_visa")).await;
        let first = h.attach(&invoice.id, &pi.id, Some("attach-1")).await.unwrap();
        let replay = h.attach(&invoice.id, &pi.id, Some("attach-1")).await.unwrap();
        assert_eq!(first, replay);
        let other = h.open_invoice("cus_a", 2_000).await;
        let misuse = h.attach(&other.id, &pi.id, Some("attach-1")).await.unwrap_err();
        assert_eq!(misuse.reason_code(), "idempotency_error");
        let refused = h.attach(&other.id, &pi.id, Some("attach-2")).await.unwrap_err();
        assert_eq!(refused.reason_code(), "payment_already_attached");
        let replayed_refusal = h.attach(&other.id, &pi.id, Some("attach-2")).await;
        assert!(replayed_refusal.is_err());
    };

    concurrent_attaches_of_one_payment_make_one_invoice_payment => |database: TestDatabase| async move {
        let h = Arc::new(harness(database).await);
        let backend = h.state.db.backend().name();
        let pi = h.intent(1_000, "cus_a", Some("pm_card_visa")).await;
        let mut invoices_ids = Vec::new();
        for _ in 0..64 {
            invoices_ids.push(h.open_invoice("cus_a", 1_000).await.id);
        }
        let calls = invoices_ids.iter().map(|invoice| {
            let (h, invoice, payment) = (h.clone(), invoice.clone(), pi.id.clone());
            tokio::spawn(async move { h.attach(&invoice, &payment, None).await.map(|doc| doc.id) })
        });
        let mut outcomes: HashMap<String, usize> = HashMap::new();
        for result in futures::future::join_all(calls).await {
            let key = match result.unwrap() { Ok(_) => "attached".to_owned(), Err(e) => e.reason_code() };
            *outcomes.entry(key).or_default() += 1;
        }
        println!("{backend}: 64 concurrent attaches of one payment to 64 invoices → {outcomes:?}");
        assert_eq!(outcomes.get("attached"), Some(&1));
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoice_payments WHERE status <> 'canceled'").fetch_one(h.state.db.pool()).await.unwrap();
        assert_eq!(live, 1, "one invoice payment");
        let paid: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices WHERE status = 'paid'").fetch_one(h.state.db.pool()).await.unwrap();
        assert_eq!(paid, 1, "one invoice paid");
    };

    concurrent_payments_to_one_invoice_never_pay_more_than_the_guard_allows => |database: TestDatabase| async move {
        let h = Arc::new(harness(database).await);
        let backend = h.state.db.backend().name();
        let invoice = h.open_invoice("cus_a", 10_000).await;
        let mut intents = Vec::new();
        for _ in 0..64 {
            intents.push(h.intent(300, "cus_a", Some("pm_card_visa")).await.id);
        }
        let calls = intents.iter().map(|pi| {
            let (h, invoice, pi) = (h.clone(), invoice.id.clone(), pi.clone());
            tokio::spawn(async move { h.attach(&invoice, &pi, None).await })
        });
        let mut outcomes: HashMap<String, usize> = HashMap::new();
        for result in futures::future::join_all(calls).await {
            let key = match result.unwrap() { Ok(_) => "attached".to_owned(), Err(e) => e.reason_code() };
            *outcomes.entry(key).or_default() += 1;
        }
        let doc = h.invoice(&invoice.id).await;
        println!("{backend}: 64 concurrent attaches of 300 to one invoice of 10000 → {outcomes:?}; amount_paid {}", doc.amount_paid);
        assert!(doc.amount_paid <= 10_000);
        assert_eq!(doc.amount_paid, 300 * i64::try_from(outcomes.get("attached").copied().unwrap_or(0)).unwrap());
        assert_eq!(outcomes.get("attached"), Some(&33));
        // Every refused payment was released in payments.
        let mut released = 0;
        for pi in &intents {
            if h.attachment(pi).await.is_none() { released += 1; }
        }
        assert_eq!(released, 31);
    };

    attach_racing_detach_ends_consistent => |database: TestDatabase| async move {
        let h = Arc::new(harness(database).await);
        for _ in 0..8 {
            let invoice = h.open_invoice("cus_a", 1_000).await;
            let pi = h.intent(1_000, "cus_a", Some("pm_card_visa")).await;
            let attach = { let (h, i, p) = (h.clone(), invoice.id.clone(), pi.id.clone()); tokio::spawn(async move { h.attach(&i, &p, None).await }) };
            let detach = {
                let (h, i, p) = (h.clone(), invoice.id.clone(), pi.id.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    rpc::detach_payment(&h.state, &ctx(None), pb::DetachPaymentRequest { id: i, payment: Some(DetachTarget::PaymentIntent(p)), expand: vec![] }).await
                })
            };
            let _ = attach.await.unwrap();
            let _ = detach.await.unwrap();
            // Let the sagas finish, then the stores must agree.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let counted = invoice_payments::find_live_by_payment(h.state.db.pool(), &settle_platform::Scope::test(DEV_ACCOUNT), &pi.id).await.unwrap();
            let attached = h.attachment(&pi.id).await;
            let doc = h.invoice(&invoice.id).await;
            match counted {
                Some((ip, _)) => {
                    assert_eq!(attached.map(|a| a.invoice), Some(invoice.id.clone()), "counted ⇒ attached to that invoice");
                    assert_eq!(doc.amount_paid, ip.amount_paid.unwrap_or(0));
                }
                None => {
                    assert!(attached.is_none(), "not counted ⇒ not attached");
                    assert_eq!(doc.amount_paid, 0);
                }
            }
        }
    };

    a_payment_may_only_take_what_credit_notes_being_issued_leave_of_the_invoice => |database: TestDatabase| async move {
        use settle_invoices::grpc::CreditLedgerApi;
        use settle_proto::settle::invoices::v1::credit_note_ledger_service_server::CreditNoteLedgerService;
        let h = harness(database).await;
        let invoice = h.open_invoice("cus_a", 1_000).await;
        // A credit note of 600 is being issued: its credit is reserved, not yet applied.
        let ledger = CreditLedgerApi::new(h.state.clone());
        let saga_id = IdPrefix::Saga.generate();
        let mut reserve = tonic::Request::new(pb::ReserveInvoiceCreditRequest {
            saga_id: saga_id.clone(),
            invoice: invoice.id.clone(),
            credit_note: IdPrefix::CreditNote.generate(),
            amount: 600,
            ..Default::default()
        });
        reserve.extensions_mut().insert(Principal::new(DEV_ACCOUNT, false, true));
        let credit = ledger.reserve_invoice_credit(reserve).await.unwrap().into_inner();
        assert_eq!(credit.pre_payment_amount, 600);

        let too_big = h.intent(500, "cus_a", Some("pm_card_visa")).await;
        let error = h.attach(&invoice.id, &too_big.id, None).await.unwrap_err();
        assert_eq!(error.reason_code(), "amount_too_large");
        assert!(error.message.contains("credit notes being issued"), "{}", error.message);
        assert_eq!(h.invoice(&invoice.id).await, invoice, "the invoice is unchanged");
        assert!(h.attachment(&too_big.id).await.is_none(), "payments released the reservation");

        let fits = h.intent(400, "cus_a", Some("pm_card_visa")).await;
        let paid = h.attach(&invoice.id, &fits.id, None).await.unwrap();
        assert_eq!((paid.amount_paid, paid.amount_remaining), (400, 600));
        let mut apply = tonic::Request::new(pb::ApplyInvoiceCreditRequest { saga_id });
        apply.extensions_mut().insert(Principal::new(DEV_ACCOUNT, false, true));
        ledger.apply_invoice_credit(apply).await.unwrap();
        let settled = h.invoice(&invoice.id).await;
        assert_eq!(
            (status(&settled), settled.amount_due, settled.amount_remaining, settled.amount_overpaid),
            (InvoiceStatus::Paid, 400, 0, 0),
            "the credit took what it reserved and nothing was overpaid"
        );
    };
}
