//! The public (and, where a check needs it, internal) gRPC API of a running suite, as the crash
//! tests, the chaos tool and the load tool call it: one place that knows how to make an open
//! invoice, a succeeded payment, or page through everything an account has.

use settle_platform::auth::{DEV_ACCOUNT, DEV_API_KEY};
use settle_proto::common::v1::saga_service_client::SagaServiceClient;
use settle_proto::common::v1::{ListSagasRequest, Saga, SagaState};
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::events::v1::{Event, ListEventsRequest};
use settle_proto::settle::creditnotes::v1 as cnpb;
use settle_proto::settle::creditnotes::v1::credit_note_service_client::CreditNoteServiceClient;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::customer_balance_service_client::CustomerBalanceServiceClient;
use settle_proto::settle::invoices::v1::invoice_payment_service_client::InvoicePaymentServiceClient;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_proto::settle::payments::v1 as ppb;
use settle_proto::settle::payments::v1::payment_attachment_service_client::PaymentAttachmentServiceClient;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_proto::settle::payments::v1::payment_record_service_client::PaymentRecordServiceClient;
use settle_proto::settle::payments::v1::refund_service_client::RefundServiceClient;
use settle_proto::settle::payments::v1::test_helper_service_client::TestHelperServiceClient;
use settle_testkit::{internal_in, with_key};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// A page size for reading everything.
const PAGE: i32 = 100;

/// Clients of the three services, for the development account.
#[derive(Clone)]
pub struct Api {
    pub invoices: InvoiceServiceClient<Channel>,
    pub invoice_payments: InvoicePaymentServiceClient<Channel>,
    pub balances: CustomerBalanceServiceClient<Channel>,
    pub invoice_sagas: SagaServiceClient<Channel>,
    pub invoice_events: EventServiceClient<Channel>,
    pub intents: PaymentIntentServiceClient<Channel>,
    pub records: PaymentRecordServiceClient<Channel>,
    pub attachments: PaymentAttachmentServiceClient<Channel>,
    pub test_helpers: TestHelperServiceClient<Channel>,
    pub refunds: RefundServiceClient<Channel>,
    pub payment_events: EventServiceClient<Channel>,
    /// Set with [`Api::with_credit_notes`].
    pub credit_notes: Option<CreditNoteServiceClient<Channel>>,
    pub credit_note_events: Option<EventServiceClient<Channel>>,
    /// The API key every call carries (the development test key unless [`Api::with_key`]).
    key: &'static str,
}

impl Api {
    pub fn new(invoices: Channel, payments: Channel) -> Api {
        Api {
            invoices: InvoiceServiceClient::new(invoices.clone()),
            invoice_payments: InvoicePaymentServiceClient::new(invoices.clone()),
            balances: CustomerBalanceServiceClient::new(invoices.clone()),
            invoice_sagas: SagaServiceClient::new(invoices.clone()),
            invoice_events: EventServiceClient::new(invoices),
            intents: PaymentIntentServiceClient::new(payments.clone()),
            records: PaymentRecordServiceClient::new(payments.clone()),
            attachments: PaymentAttachmentServiceClient::new(payments.clone()),
            test_helpers: TestHelperServiceClient::new(payments.clone()),
            refunds: RefundServiceClient::new(payments.clone()),
            payment_events: EventServiceClient::new(payments),
            credit_notes: None,
            credit_note_events: None,
            key: DEV_API_KEY,
        }
    }

    /// The same clients, calling with `key` (another account's, or a live key of the same
    /// account) instead of the development test key.
    pub fn with_key(mut self, key: &'static str) -> Api {
        self.key = key;
        self
    }

    /// Whether the key is a live-mode key.
    pub fn livemode(&self) -> bool {
        self.key.starts_with("sk_live_")
    }

    /// `message` authorized with the API's key.
    fn authorized<T>(&self, message: T) -> Request<T> {
        with_key(message, self.key)
    }

    /// `message` authorized with the API's key, with an idempotency key when one is given.
    fn keyed<T>(&self, message: T, idempotency_key: Option<&str>) -> Request<T> {
        let mut request = self.authorized(message);
        if let Some(key) = idempotency_key {
            request.metadata_mut().insert(
                "idempotency-key",
                key.parse().unwrap_or_else(|_| panic!("invalid idempotency key {key:?}")),
            );
        }
        request
    }

    /// Adds the credit-notes service.
    pub fn with_credit_notes(mut self, credit_notes: Channel) -> Api {
        self.credit_notes = Some(CreditNoteServiceClient::new(credit_notes.clone()));
        self.credit_note_events = Some(EventServiceClient::new(credit_notes));
        self
    }

    fn credit_note_client(&self) -> Result<CreditNoteServiceClient<Channel>, Status> {
        self.credit_notes.clone().ok_or_else(|| Status::failed_precondition("no credit-notes channel"))
    }

    /// Issues a credit note of `amount` on `invoice`, refunding `refund_amount` of it and crediting
    /// `credit_amount` to the customer's balance (the rest reduces what the invoice still owes).
    pub async fn credit_note(
        &self,
        invoice: &str,
        amount: i64,
        refund_amount: i64,
        credit_amount: i64,
        key: Option<&str>,
    ) -> Result<cnpb::CreditNote, Status> {
        let request = cnpb::CreateCreditNoteRequest {
            invoice: invoice.to_owned(),
            amount: Some(amount),
            refund_amount: (refund_amount > 0).then_some(refund_amount),
            credit_amount: (credit_amount > 0).then_some(credit_amount),
            ..Default::default()
        };
        Ok(self.credit_note_client()?.create_credit_note(self.keyed(request, key)).await?.into_inner())
    }

    pub async fn void_credit_note(&self, id: &str, key: Option<&str>) -> Result<cnpb::CreditNote, Status> {
        let request = cnpb::VoidCreditNoteRequest { id: id.to_owned() };
        Ok(self.credit_note_client()?.void_credit_note(self.keyed(request, key)).await?.into_inner())
    }

    /// Every credit note of `invoice`.
    pub async fn credit_notes_of(&self, invoice: &str) -> Result<Vec<cnpb::CreditNote>, Status> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let request = cnpb::ListCreditNotesRequest {
                invoice: Some(invoice.to_owned()),
                limit: Some(PAGE),
                starting_after: after.clone(),
                ..Default::default()
            };
            let page =
                self.credit_note_client()?.list_credit_notes(self.authorized(request)).await?.into_inner();
            after = page.data.last().map(|n| n.id.clone());
            all.extend(page.data);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    /// A draft of `total` in usd for `customer`, `charge_automatically` (which gets a default
    /// PaymentIntent at finalization) or `send_invoice` (due in 30 days).
    pub async fn draft(&self, customer: &str, total: i64, automatic: bool) -> Result<pb::Invoice, Status> {
        let mut invoices = self.invoices.clone();
        let method = if automatic {
            pb::InvoiceCollectionMethod::ChargeAutomatically
        } else {
            pb::InvoiceCollectionMethod::SendInvoice
        };
        let draft = pb::CreateInvoiceRequest {
            customer: Some(customer.to_owned()),
            currency: Some("usd".to_owned()),
            collection_method: Some(method as i32),
            days_until_due: (!automatic).then_some(30),
            ..Default::default()
        };
        let draft = invoices.create_invoice(self.authorized(draft)).await?.into_inner();
        let lines = pb::AddLinesRequest {
            id: draft.id.clone(),
            lines: vec![pb::InvoiceLineParams { amount: Some(total), ..Default::default() }],
            ..Default::default()
        };
        Ok(invoices.add_lines(self.authorized(lines)).await?.into_inner())
    }

    pub async fn finalize(&self, invoice: &str, key: Option<&str>) -> Result<pb::Invoice, Status> {
        let request = pb::FinalizeInvoiceRequest { id: invoice.to_owned(), ..Default::default() };
        Ok(self.invoices.clone().finalize_invoice(self.keyed(request, key)).await?.into_inner())
    }

    /// A PaymentIntent of `amount` in usd for `customer`, confirmed with `payment_method` if given
    /// (`pm_card_visa` succeeds, `pm_us_bank_account` stays processing).
    pub async fn intent(
        &self,
        customer: &str,
        amount: i64,
        payment_method: Option<&str>,
    ) -> Result<ppb::PaymentIntent, Status> {
        let request = ppb::CreatePaymentIntentRequest {
            amount,
            currency: "usd".into(),
            customer: Some(customer.into()),
            payment_method: payment_method.map(str::to_owned),
            confirm: payment_method.map(|_| true),
            ..Default::default()
        };
        Ok(self.intents.clone().create_payment_intent(self.authorized(request)).await?.into_inner())
    }

    /// A Payment Record of `amount` in usd for `customer`, reported as paid outside settle by check
    /// (`guaranteed`), or as a pending attempt.
    pub async fn record(
        &self,
        customer: &str,
        amount: i64,
        guaranteed: bool,
    ) -> Result<ppb::PaymentRecord, Status> {
        let now = settle_platform::time::now_unix();
        let request = ppb::ReportPaymentRequest {
            amount_requested: Some(ppb::PaymentRecordAmount { currency: "usd".into(), value: amount }),
            customer_details: Some(ppb::PaymentRecordCustomerDetails {
                customer: Some(customer.to_owned()),
                ..Default::default()
            }),
            initiated_at: now - 60,
            payment_method_details: Some(ppb::PaymentRecordPaymentMethodDetailsParams {
                custom: Some(ppb::PaymentRecordCustomPaymentMethodDetails {
                    display_name: "Check".into(),
                    r#type: None,
                }),
                r#type: Some(ppb::PaymentRecordPaymentMethodDetailsType::Custom as i32),
                ..Default::default()
            }),
            outcome: guaranteed.then_some(ppb::ReportPaymentOutcome::Guaranteed as i32),
            guaranteed: guaranteed.then_some(ppb::PaymentRecordGuaranteedParams { guaranteed_at: now - 30 }),
            ..Default::default()
        };
        Ok(self.records.clone().report_payment(self.authorized(request)).await?.into_inner())
    }

    /// Attaches Payment Record `record` to `invoice`.
    pub async fn attach_record(
        &self,
        invoice: &str,
        record: &str,
        key: Option<&str>,
    ) -> Result<pb::Invoice, Status> {
        let request = pb::AttachPaymentRequest {
            id: invoice.to_owned(),
            payment: Some(pb::attach_payment_request::Payment::PaymentRecord(record.to_owned())),
            expand: vec![],
        };
        Ok(self.invoices.clone().attach_payment(self.keyed(request, key)).await?.into_inner())
    }

    /// Ends a `processing` PaymentIntent (a bank debit) as succeeded or failed.
    pub async fn settle(&self, intent: &str, succeeded: bool) -> Result<ppb::PaymentIntent, Status> {
        let outcome =
            if succeeded { ppb::SettlementOutcome::Succeeded } else { ppb::SettlementOutcome::Failed };
        let request = ppb::SettlePaymentIntentRequest {
            id: intent.to_owned(),
            outcome: outcome as i32,
            ..Default::default()
        };
        Ok(self.test_helpers.clone().settle_payment_intent(self.authorized(request)).await?.into_inner())
    }

    /// Every refund of `intent`.
    pub async fn refunds_of(&self, intent: &str) -> Result<Vec<ppb::Refund>, Status> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let request = ppb::ListRefundsRequest {
                payment_intent: Some(intent.to_owned()),
                limit: Some(PAGE),
                starting_after: after.clone(),
                ..Default::default()
            };
            let page = self.refunds.clone().list_refunds(self.authorized(request)).await?.into_inner();
            after = page.data.last().map(|r| r.id.clone());
            all.extend(page.data);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    pub async fn attach(
        &self,
        invoice: &str,
        payment: &str,
        key: Option<&str>,
    ) -> Result<pb::Invoice, Status> {
        let request = pb::AttachPaymentRequest {
            id: invoice.to_owned(),
            payment: Some(pb::attach_payment_request::Payment::PaymentIntent(payment.to_owned())),
            expand: vec![],
        };
        Ok(self.invoices.clone().attach_payment(self.keyed(request, key)).await?.into_inner())
    }

    pub async fn detach(
        &self,
        invoice: &str,
        payment: &str,
        key: Option<&str>,
    ) -> Result<pb::Invoice, Status> {
        let request = pb::DetachPaymentRequest {
            id: invoice.to_owned(),
            payment: Some(pb::detach_payment_request::Payment::PaymentIntent(payment.to_owned())),
            expand: vec![],
        };
        Ok(self.invoices.clone().detach_payment(self.keyed(request, key)).await?.into_inner())
    }

    /// Moves `payment` from the invoice that counts it to `invoice`.
    pub async fn reapply(
        &self,
        invoice: &str,
        payment: &str,
        key: Option<&str>,
    ) -> Result<pb::Invoice, Status> {
        let request = pb::ReapplyPaymentRequest {
            id: invoice.to_owned(),
            payment: Some(pb::reapply_payment_request::Payment::PaymentIntent(payment.to_owned())),
            expand: vec![],
        };
        Ok(self.invoices.clone().reapply_payment(self.keyed(request, key)).await?.into_inner())
    }

    /// PayInvoice with `pm_card_visa`.
    pub async fn pay(&self, invoice: &str, key: Option<&str>) -> Result<pb::Invoice, Status> {
        self.pay_with(invoice, Some("pm_card_visa"), key).await
    }

    /// PayInvoice with `payment_method` (or, without one, the invoice's default payment method).
    pub async fn pay_with(
        &self,
        invoice: &str,
        payment_method: Option<&str>,
        key: Option<&str>,
    ) -> Result<pb::Invoice, Status> {
        let request = pb::PayInvoiceRequest {
            id: invoice.to_owned(),
            payment_method: payment_method.map(str::to_owned),
            ..Default::default()
        };
        Ok(self.invoices.clone().pay_invoice(self.keyed(request, key)).await?.into_inner())
    }

    pub async fn pay_out_of_band(&self, invoice: &str, key: Option<&str>) -> Result<pb::Invoice, Status> {
        let request = pb::PayInvoiceRequest {
            id: invoice.to_owned(),
            paid_out_of_band: Some(true),
            ..Default::default()
        };
        Ok(self.invoices.clone().pay_invoice(self.keyed(request, key)).await?.into_inner())
    }

    pub async fn void(&self, invoice: &str, key: Option<&str>) -> Result<pb::Invoice, Status> {
        let request = pb::VoidInvoiceRequest { id: invoice.to_owned(), ..Default::default() };
        Ok(self.invoices.clone().void_invoice(self.keyed(request, key)).await?.into_inner())
    }

    pub async fn invoice(&self, id: &str) -> Result<pb::Invoice, Status> {
        let request = pb::GetInvoiceRequest { id: id.to_owned(), ..Default::default() };
        Ok(self.invoices.clone().get_invoice(self.authorized(request)).await?.into_inner())
    }

    /// The invoice with its `confirmation_secret` expanded.
    pub async fn invoice_with_secret(&self, id: &str) -> Result<pb::Invoice, Status> {
        let request =
            pb::GetInvoiceRequest { id: id.to_owned(), expand: vec!["confirmation_secret".to_owned()] };
        Ok(self.invoices.clone().get_invoice(self.authorized(request)).await?.into_inner())
    }

    /// Every invoice payment of `invoice`, all statuses.
    pub async fn invoice_payments(&self, invoice: &str) -> Result<Vec<pb::InvoicePayment>, Status> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let request = pb::ListInvoicePaymentsRequest {
                invoice: Some(invoice.to_owned()),
                limit: Some(PAGE),
                starting_after: after.clone(),
                ..Default::default()
            };
            let page = self
                .invoice_payments
                .clone()
                .list_invoice_payments(self.authorized(request))
                .await?
                .into_inner();
            after = page.data.last().map(|p| p.id.clone());
            all.extend(page.data);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    /// Every balance transaction of `customer`, oldest first.
    pub async fn balance_transactions(
        &self,
        customer: &str,
    ) -> Result<Vec<pb::CustomerBalanceTransaction>, Status> {
        let mut all: Vec<pb::CustomerBalanceTransaction> = Vec::new();
        let mut after = None;
        loop {
            let request = pb::ListBalanceTransactionsRequest {
                customer: customer.to_owned(),
                limit: Some(PAGE),
                starting_after: after.clone(),
                ..Default::default()
            };
            let page =
                self.balances.clone().list_balance_transactions(self.authorized(request)).await?.into_inner();
            after = page.data.last().map(|t| t.id.clone());
            all.extend(page.data);
            if !page.has_more {
                all.reverse();
                return Ok(all);
            }
        }
    }

    /// The customer's balance in usd.
    pub async fn balance(&self, customer: &str) -> Result<i64, Status> {
        let request =
            pb::GetCustomerBalanceRequest { customer: customer.to_owned(), currency: Some("usd".to_owned()) };
        Ok(self.balances.clone().get_customer_balance(self.authorized(request)).await?.into_inner().balance)
    }

    /// Every invoice of the account.
    pub async fn all_invoices(&self) -> Result<Vec<pb::Invoice>, Status> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let request = pb::ListInvoicesRequest {
                limit: Some(PAGE),
                starting_after: after.clone(),
                ..Default::default()
            };
            let page = self.invoices.clone().list_invoices(self.authorized(request)).await?.into_inner();
            after = page.data.last().map(|i| i.id.clone());
            all.extend(page.data);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    /// Every PaymentIntent of the account (of `customer` if given).
    pub async fn all_intents(&self, customer: Option<&str>) -> Result<Vec<ppb::PaymentIntent>, Status> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let request = ppb::ListPaymentIntentsRequest {
                customer: customer.map(str::to_owned),
                limit: Some(PAGE),
                starting_after: after.clone(),
                ..Default::default()
            };
            let page =
                self.intents.clone().list_payment_intents(self.authorized(request)).await?.into_inner();
            after = page.data.last().map(|i| i.id.clone());
            all.extend(page.data);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    /// The payment's live (reserved or confirmed) attachment in payments.
    pub async fn attachment(&self, payment: &str) -> Result<Option<ppb::Attachment>, Status> {
        let request = ppb::GetAttachmentRequest { payment: payment.to_owned() };
        match self
            .attachments
            .clone()
            .get_attachment(internal_in(request, DEV_ACCOUNT, self.livemode()))
            .await
        {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// The invoices service's sagas that have not ended.
    pub async fn live_sagas(&self) -> Result<Vec<Saga>, Status> {
        let mut live = Vec::new();
        for state in [SagaState::Running, SagaState::Compensating] {
            let request =
                ListSagasRequest { state: Some(state as i32), limit: Some(PAGE), ..Default::default() };
            live.extend(
                self.invoice_sagas.clone().list_sagas(self.authorized(request)).await?.into_inner().data,
            );
        }
        Ok(live)
    }

    /// The types of every event of the account on one service's outbox, oldest first.
    pub async fn event_types(client: &EventServiceClient<Channel>) -> Result<Vec<String>, Status> {
        Ok(Api::all_events(client).await?.into_iter().map(|e| e.r#type).collect())
    }

    /// Every event of the development account's test mode on one service's outbox, oldest first.
    pub async fn all_events(client: &EventServiceClient<Channel>) -> Result<Vec<Event>, Status> {
        Api::events_with_key(client, DEV_API_KEY).await
    }

    /// Every event the API's key sees on one service's outbox, oldest first.
    pub async fn events(&self, client: &EventServiceClient<Channel>) -> Result<Vec<Event>, Status> {
        Api::events_with_key(client, self.key).await
    }

    async fn events_with_key(client: &EventServiceClient<Channel>, key: &str) -> Result<Vec<Event>, Status> {
        let mut all: Vec<Event> = Vec::new();
        let mut after = None;
        loop {
            let request =
                ListEventsRequest { limit: Some(PAGE), starting_after: after.clone(), ..Default::default() };
            let page = client.clone().list_events(with_key(request, key)).await?.into_inner();
            after = page.data.last().map(|e| e.id.clone());
            all.extend(page.data);
            if !page.has_more {
                all.reverse();
                return Ok(all);
            }
        }
    }
}
