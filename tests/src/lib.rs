//! The whole settle suite in one test process: invoices, payments and credit-notes on ephemeral
//! loopback ports, each on its own fresh database of the chosen backend, wired to each other.
//!
//! ```text
//! let suite = Suite::start(Backend::Sqlite).await.expect("suite");
//! let payments = PaymentIntentServiceClient::new(suite.payments.channel());
//! ```

pub mod api;
pub mod chaos;
pub mod cluster;
pub mod fuzz;
pub mod load;
pub mod otlp;
pub mod process;
pub mod rng;
pub mod scrape;

use settle_platform::db::Backend;
use settle_platform::testing::TestDatabase;
use settle_testkit::RunningServer;

/// Three running services and their databases; everything stops when it is dropped.
pub struct Suite {
    pub invoices: RunningServer,
    pub payments: RunningServer,
    pub credit_notes: RunningServer,
    /// payments', invoices' and credit-notes' databases, in that order.
    databases: Vec<TestDatabase>,
}

impl Suite {
    /// The payments service's database, for tests that plant what its API would refuse.
    pub fn payments_database(&self) -> &TestDatabase {
        &self.databases[0]
    }

    /// Starts the suite on `backend`; `None` for PostgreSQL when `DATABASE_URL` is unset.
    pub async fn start(backend: Backend) -> Option<Suite> {
        let payments_db = TestDatabase::new(backend).await?;
        let invoices_db = TestDatabase::new(backend).await?;
        let credit_notes_db = TestDatabase::new(backend).await?;

        let shutdown = settle_testkit::token();
        let payments = settle_payments::startup::Application::build(
            settle_testkit::config(&payments_db),
            shutdown.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("payments starts: {e}"));
        let payments = settle_testkit::spawn(payments.local_addr(), shutdown, payments.run_until_stopped());

        let shutdown = settle_testkit::token();
        let invoices = settle_invoices::startup::Application::build(
            settle_invoices::config::InvoicesConfig {
                platform: settle_testkit::config(&invoices_db),
                peers: settle_invoices::config::Peers { payments_url: format!("http://{}", payments.addr()) },
                sagas: Default::default(),
            },
            shutdown.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("invoices starts: {e}"));
        let invoices = settle_testkit::spawn(invoices.local_addr(), shutdown, invoices.run_until_stopped());

        let shutdown = settle_testkit::token();
        let credit_notes = settle_credit_notes::startup::Application::build(
            settle_credit_notes::config::CreditNotesConfig {
                platform: settle_testkit::config(&credit_notes_db),
                peers: settle_credit_notes::config::Peers {
                    invoices_url: format!("http://{}", invoices.addr()),
                    payments_url: format!("http://{}", payments.addr()),
                },
                sagas: Default::default(),
            },
            shutdown.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("credit-notes starts: {e}"));
        let credit_notes =
            settle_testkit::spawn(credit_notes.local_addr(), shutdown, credit_notes.run_until_stopped());

        Some(Suite {
            invoices,
            payments,
            credit_notes,
            databases: vec![payments_db, invoices_db, credit_notes_db],
        })
    }
}
