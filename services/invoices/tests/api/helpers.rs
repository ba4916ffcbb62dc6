use prost::Name;
use settle_invoices::config::{InvoicesConfig, Peers};
use settle_invoices::startup::Application;
use settle_platform::db::{Db, PoolSettings};
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1 as ev;
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::customer_balance_service_client::CustomerBalanceServiceClient;
use settle_proto::settle::invoices::v1::invoice_item_service_client::InvoiceItemServiceClient;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_testkit::{RunningServer, authorized};
use tonic::transport::Channel;

/// An invoices service on a fresh database, with clients.
pub struct TestApp {
    /// Held so the server runs until the test ends.
    #[allow(dead_code, reason = "held for its Drop, which stops the server")]
    pub server: RunningServer,
    pub invoices: InvoiceServiceClient<Channel>,
    pub items: InvoiceItemServiceClient<Channel>,
    pub balances: CustomerBalanceServiceClient<Channel>,
    pub events: EventServiceClient<Channel>,
    pub database: TestDatabase,
}

pub async fn spawn(database: TestDatabase) -> TestApp {
    spawn_with_payments(database, Peers::default()).await
}

/// Like [`spawn`], with the payments service at `peers`.
pub async fn spawn_with_payments(database: TestDatabase, peers: Peers) -> TestApp {
    let shutdown = settle_testkit::token();
    let config =
        InvoicesConfig { platform: settle_testkit::config(&database), peers, sagas: Default::default() };
    let app = Application::build(config, shutdown.clone()).await.expect("invoices service starts");
    let server = settle_testkit::spawn(app.local_addr(), shutdown, app.run_until_stopped());
    TestApp {
        invoices: InvoiceServiceClient::new(server.channel()),
        items: InvoiceItemServiceClient::new(server.channel()),
        balances: CustomerBalanceServiceClient::new(server.channel()),
        events: EventServiceClient::new(server.channel()),
        server,
        database,
    }
}

/// A draft request for `customer` in usd.
pub fn draft(customer: &str) -> pb::CreateInvoiceRequest {
    pb::CreateInvoiceRequest {
        customer: Some(customer.to_owned()),
        currency: Some("usd".to_owned()),
        ..Default::default()
    }
}

/// A new line of `amount` cents.
pub fn line(amount: i64) -> pb::InvoiceLineParams {
    pb::InvoiceLineParams { amount: Some(amount), ..Default::default() }
}

/// A pending item request of `amount` cents in usd for `customer`.
pub fn item(customer: &str, amount: i64) -> pb::CreateInvoiceItemRequest {
    pb::CreateInvoiceItemRequest {
        customer: Some(customer.to_owned()),
        currency: Some("usd".to_owned()),
        amount: Some(amount),
        ..Default::default()
    }
}

pub fn status(invoice: &pb::Invoice) -> pb::InvoiceStatus {
    pb::InvoiceStatus::try_from(invoice.status.expect("status")).expect("known status")
}

/// The object an event carries.
pub fn payload<T: prost::Message + Name + Default>(event: &ev::Event) -> T {
    event.data.as_ref().unwrap().object.as_ref().unwrap().to_msg().unwrap()
}

/// The keys of an event's `previous_attributes`.
pub fn previous_keys(event: &ev::Event) -> Vec<String> {
    let previous = event.data.as_ref().unwrap().previous_attributes.as_ref();
    previous.map(|p| p.fields.keys().cloned().collect()).unwrap_or_default()
}

/// A number in an event's `previous_attributes`.
pub fn previous_number(event: &ev::Event, key: &str) -> f64 {
    let previous = event.data.as_ref().unwrap().previous_attributes.as_ref().unwrap();
    match &previous.fields[key].kind {
        Some(prost_types::value::Kind::NumberValue(n)) => *n,
        other => panic!("{key} is not a number: {other:?}"),
    }
}

impl TestApp {
    pub async fn create(&self, request: pb::CreateInvoiceRequest) -> pb::Invoice {
        self.invoices.clone().create_invoice(authorized(request)).await.expect("create succeeds").into_inner()
    }

    /// A draft for `customer` with one line per amount.
    pub async fn draft_with(&self, customer: &str, amounts: &[i64]) -> pb::Invoice {
        let invoice = self.create(draft(customer)).await;
        if amounts.is_empty() {
            return invoice;
        }
        self.add_lines(&invoice.id, amounts.iter().copied().map(line).collect()).await
    }

    pub async fn add_lines(&self, id: &str, lines: Vec<pb::InvoiceLineParams>) -> pb::Invoice {
        self.invoices
            .clone()
            .add_lines(authorized(pb::AddLinesRequest { id: id.to_owned(), lines, ..Default::default() }))
            .await
            .expect("add_lines succeeds")
            .into_inner()
    }

    pub async fn finalize(&self, id: &str) -> pb::Invoice {
        self.invoices
            .clone()
            .finalize_invoice(authorized(pb::FinalizeInvoiceRequest {
                id: id.to_owned(),
                ..Default::default()
            }))
            .await
            .expect("finalize succeeds")
            .into_inner()
    }

    pub async fn get(&self, id: &str) -> pb::Invoice {
        self.invoices
            .clone()
            .get_invoice(authorized(pb::GetInvoiceRequest { id: id.to_owned(), expand: Vec::new() }))
            .await
            .expect("get succeeds")
            .into_inner()
    }

    pub async fn create_item(&self, request: pb::CreateInvoiceItemRequest) -> pb::InvoiceItem {
        self.items.clone().create_invoice_item(authorized(request)).await.expect("item created").into_inner()
    }

    pub async fn get_item(&self, id: &str) -> Result<pb::InvoiceItem, tonic::Status> {
        self.items
            .clone()
            .get_invoice_item(authorized(pb::GetInvoiceItemRequest { id: id.to_owned() }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Posts an adjustment of `amount` cents in usd to `customer`'s balance.
    pub async fn adjust(&self, customer: &str, amount: i64) -> pb::CustomerBalanceTransaction {
        self.balances
            .clone()
            .create_balance_transaction(authorized(pb::CreateBalanceTransactionRequest {
                customer: customer.to_owned(),
                amount,
                currency: "usd".to_owned(),
                ..Default::default()
            }))
            .await
            .expect("adjustment posted")
            .into_inner()
    }

    /// `customer`'s balance in usd.
    pub async fn balance(&self, customer: &str) -> i64 {
        self.balances
            .clone()
            .get_customer_balance(authorized(pb::GetCustomerBalanceRequest {
                customer: customer.to_owned(),
                currency: Some("usd".to_owned()),
            }))
            .await
            .expect("balance read")
            .into_inner()
            .balance
    }

    /// Every balance transaction of `customer`, newest first.
    pub async fn transactions(&self, customer: &str) -> Vec<pb::CustomerBalanceTransaction> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .balances
                .clone()
                .list_balance_transactions(authorized(pb::ListBalanceTransactionsRequest {
                    customer: customer.to_owned(),
                    limit: Some(100),
                    starting_after: after.clone(),
                    ..Default::default()
                }))
                .await
                .expect("list succeeds")
                .into_inner();
            all.extend(page.data);
            if !page.has_more {
                return all;
            }
            after = all.last().map(|t| t.id.clone());
        }
    }

    /// Every invoice of the account, newest first.
    pub async fn all_invoices(&self) -> Vec<pb::Invoice> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .invoices
                .clone()
                .list_invoices(authorized(pb::ListInvoicesRequest {
                    limit: Some(100),
                    starting_after: after.clone(),
                    ..Default::default()
                }))
                .await
                .expect("list succeeds")
                .into_inner();
            all.extend(page.data);
            if !page.has_more {
                return all;
            }
            after = all.last().map(|i| i.id.clone());
        }
    }

    /// The first `n` events of `event_type`, in commit order.
    pub async fn events_of_type(&self, event_type: &str, n: usize) -> Vec<ev::Event> {
        let mut stream = self
            .events
            .clone()
            .stream_events(authorized(ev::StreamEventsRequest {
                cursor: None,
                types: vec![event_type.to_owned()],
                ..Default::default()
            }))
            .await
            .expect("stream starts")
            .into_inner();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
                .await
                .unwrap_or_else(|_| panic!("{n} {event_type} events arrive within 10 s (got {})", out.len()))
                .expect("stream healthy")
                .expect("stream open");
            out.push(next.event.expect("event"));
        }
        out
    }

    /// How many events of `event_type` have been committed so far (read from the outbox itself, so
    /// events the sequencer has not numbered yet count too).
    pub async fn count_events(&self, event_type: &str) -> i64 {
        let db = self.db().await;
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM outbox_events WHERE type = $1")
            .bind(event_type)
            .fetch_one(db.pool())
            .await
            .expect("outbox readable");
        db.close().await;
        count
    }

    /// A second pool on the service's database, for reading what the API does not show.
    pub async fn db(&self) -> Db {
        Db::connect(self.database.url(), &PoolSettings::default()).await.expect("database reachable")
    }
}
