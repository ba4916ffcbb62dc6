use settle_payments::startup::Application;
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_testkit::RunningServer;
use tonic::transport::Channel;

/// A payments service on a fresh database, with clients.
pub struct TestApp {
    pub server: RunningServer,
    pub intents: PaymentIntentServiceClient<Channel>,
    pub events: EventServiceClient<Channel>,
    pub database: TestDatabase,
}

pub async fn spawn(database: TestDatabase) -> TestApp {
    let shutdown = settle_testkit::token();
    let app = Application::build(settle_testkit::config(&database), shutdown.clone())
        .await
        .expect("payments service starts");
    let server = settle_testkit::spawn(app.local_addr(), shutdown, app.run_until_stopped());
    TestApp {
        intents: PaymentIntentServiceClient::new(server.channel()),
        events: EventServiceClient::new(server.channel()),
        server,
        database,
    }
}

/// A valid create request for `amount` cents in usd.
pub fn create(amount: i64) -> pb::CreatePaymentIntentRequest {
    pb::CreatePaymentIntentRequest {
        amount,
        currency: "usd".to_owned(),
        customer: Some("cus_test".to_owned()),
        ..Default::default()
    }
}

pub fn confirmed(amount: i64, payment_method: &str) -> pb::CreatePaymentIntentRequest {
    pb::CreatePaymentIntentRequest {
        payment_method: Some(payment_method.to_owned()),
        confirm: Some(true),
        ..create(amount)
    }
}

impl TestApp {
    pub async fn create(&self, request: pb::CreatePaymentIntentRequest) -> pb::PaymentIntent {
        self.intents
            .clone()
            .create_payment_intent(settle_testkit::authorized(request))
            .await
            .expect("create succeeds")
            .into_inner()
    }

    pub async fn count(&self) -> usize {
        let mut total = 0;
        let mut after = None;
        loop {
            let page = self
                .intents
                .clone()
                .list_payment_intents(settle_testkit::authorized(pb::ListPaymentIntentsRequest {
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
            after = page.data.last().map(|i| i.id.clone());
        }
    }

    /// The first `n` events of the account in commit order, read from `StreamEvents` (which waits
    /// for the outbox to number them).
    pub async fn first_events(&self, n: usize) -> Vec<settle_proto::events::v1::Event> {
        self.stream_events(None, n).await.into_iter().map(|(event, _)| event).collect()
    }

    /// `n` events (with their cursors) after `cursor`, from `StreamEvents`.
    pub async fn stream_events(
        &self,
        cursor: Option<String>,
        n: usize,
    ) -> Vec<(settle_proto::events::v1::Event, String)> {
        let mut stream = self
            .events
            .clone()
            .stream_events(settle_testkit::authorized(settle_proto::events::v1::StreamEventsRequest {
                cursor,
                types: Vec::new(),
                all_accounts: false,
            }))
            .await
            .expect("stream starts")
            .into_inner();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
                .await
                .expect("events arrive within 10 s")
                .expect("stream healthy")
                .expect("stream open");
            out.push((next.event.expect("event"), next.cursor));
        }
        out
    }
}

pub fn status(intent: &pb::PaymentIntent) -> pb::PaymentIntentStatus {
    pb::PaymentIntentStatus::try_from(intent.status).expect("known status")
}
