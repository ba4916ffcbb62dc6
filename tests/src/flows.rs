//! The calls the cross-service scenarios make, over a [`Cluster`]'s channels: open invoices,
//! PaymentIntents in a given state, attach and detach, settle a processing payment, watch sagas.
//! Fixture calls panic on failure; the calls under test return their `Result`.

use std::time::Duration;

use settle_proto::common::v1::saga_service_client::SagaServiceClient;
use settle_proto::common::v1::{ListSagasRequest, SagaState};
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::events::v1::{Event, ListEventsRequest};
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_proto::settle::payments::v1 as ppb;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_proto::settle::payments::v1::test_helper_service_client::TestHelperServiceClient;
use settle_testkit::authorized;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::cluster::{Cluster, eventually};
use crate::process::Service;

/// Clients of the invoices and payments nodes (they reconnect by themselves after a restart).
#[derive(Clone)]
pub struct Flows {
    pub invoices: InvoiceServiceClient<Channel>,
    pub invoice_events: EventServiceClient<Channel>,
    pub sagas: SagaServiceClient<Channel>,
    pub intents: PaymentIntentServiceClient<Channel>,
    pub test_helpers: TestHelperServiceClient<Channel>,
}

impl Flows {
    pub fn new(cluster: &Cluster) -> Flows {
        let invoices = cluster.channel(Service::Invoices);
        let payments = cluster.channel(Service::Payments);
        Flows {
            invoices: InvoiceServiceClient::new(invoices.clone()),
            invoice_events: EventServiceClient::new(invoices.clone()),
            sagas: SagaServiceClient::new(invoices),
            intents: PaymentIntentServiceClient::new(payments.clone()),
            test_helpers: TestHelperServiceClient::new(payments),
        }
    }

    /// A finalized (open) `send_invoice` invoice of `total` cents (USD) for `customer`.
    pub async fn open_invoice(&self, customer: &str, total: i64) -> pb::Invoice {
        let mut invoices = self.invoices.clone();
        let draft = pb::CreateInvoiceRequest {
            customer: Some(customer.to_owned()),
            currency: Some("usd".to_owned()),
            collection_method: Some(pb::InvoiceCollectionMethod::SendInvoice as i32),
            days_until_due: Some(30),
            ..Default::default()
        };
        let draft = invoices
            .create_invoice(authorized(draft))
            .await
            .unwrap_or_else(|s| panic!("CreateInvoice: {s:?}"))
            .into_inner();
        let lines = pb::AddLinesRequest {
            id: draft.id.clone(),
            lines: vec![pb::InvoiceLineParams { amount: Some(total), ..Default::default() }],
            ..Default::default()
        };
        invoices.add_lines(authorized(lines)).await.unwrap_or_else(|s| panic!("AddLines: {s:?}"));
        let finalize = pb::FinalizeInvoiceRequest { id: draft.id, ..Default::default() };
        invoices
            .finalize_invoice(authorized(finalize))
            .await
            .unwrap_or_else(|s| panic!("FinalizeInvoice: {s:?}"))
            .into_inner()
    }

    /// A confirmed PaymentIntent of `amount` for `customer` with `payment_method`
    /// (`pm_card_visa` succeeds, `pm_us_bank_account` stays processing).
    pub async fn intent(&self, customer: &str, amount: i64, payment_method: &str) -> ppb::PaymentIntent {
        let request = ppb::CreatePaymentIntentRequest {
            amount,
            currency: "usd".into(),
            customer: Some(customer.into()),
            payment_method: Some(payment_method.into()),
            confirm: Some(true),
            ..Default::default()
        };
        self.intents
            .clone()
            .create_payment_intent(authorized(request))
            .await
            .unwrap_or_else(|s| panic!("CreatePaymentIntent: {s:?}"))
            .into_inner()
    }

    /// The AttachPayment request for `payment_intent` on `invoice`.
    pub fn attach_request(invoice: &str, payment_intent: &str) -> pb::AttachPaymentRequest {
        pb::AttachPaymentRequest {
            id: invoice.to_owned(),
            payment: Some(pb::attach_payment_request::Payment::PaymentIntent(payment_intent.to_owned())),
            expand: vec![],
        }
    }

    pub async fn attach(&self, request: Request<pb::AttachPaymentRequest>) -> Result<pb::Invoice, Status> {
        self.invoices.clone().attach_payment(request).await.map(|r| r.into_inner())
    }

    pub async fn detach(&self, request: Request<pb::DetachPaymentRequest>) -> Result<pb::Invoice, Status> {
        self.invoices.clone().detach_payment(request).await.map(|r| r.into_inner())
    }

    /// Settles a processing PaymentIntent as succeeded.
    pub async fn settle(
        &self,
        request: Request<ppb::SettlePaymentIntentRequest>,
    ) -> Result<ppb::PaymentIntent, Status> {
        self.test_helpers.clone().settle_payment_intent(request).await.map(|r| r.into_inner())
    }

    pub fn settle_request(payment_intent: &str) -> ppb::SettlePaymentIntentRequest {
        ppb::SettlePaymentIntentRequest {
            id: payment_intent.to_owned(),
            outcome: ppb::SettlementOutcome::Succeeded as i32,
            ..Default::default()
        }
    }

    pub async fn invoice(&self, id: &str) -> pb::Invoice {
        let request = pb::GetInvoiceRequest { id: id.to_owned(), ..Default::default() };
        self.invoices
            .clone()
            .get_invoice(authorized(request))
            .await
            .unwrap_or_else(|s| panic!("GetInvoice: {s:?}"))
            .into_inner()
    }

    /// The invoices service's most recent events (up to 100).
    pub async fn invoice_events(&self) -> Vec<Event> {
        let request = ListEventsRequest { limit: Some(100), ..Default::default() };
        self.invoice_events
            .clone()
            .list_events(authorized(request))
            .await
            .unwrap_or_else(|s| panic!("ListEvents: {s:?}"))
            .into_inner()
            .data
    }

    /// Waits (at most `timeout`) until the invoices service has no saga left that has not ended;
    /// false if some are still live then.
    pub async fn sagas_ended(&self, timeout: Duration) -> bool {
        eventually(timeout, || async {
            let request = ListSagasRequest { limit: Some(100), ..Default::default() };
            let sagas = self.sagas.clone().list_sagas(authorized(request)).await.ok()?.into_inner().data;
            sagas
                .iter()
                .all(|s| s.state == SagaState::Succeeded as i32 || s.state == SagaState::Failed as i32)
                .then_some(())
        })
        .await
        .is_some()
    }
}
