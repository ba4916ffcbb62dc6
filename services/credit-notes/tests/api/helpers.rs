//! The whole suite in-process for the credit-notes tests: payments, invoices and credit-notes on
//! loopback port 0, each on its own fresh database of the test's backend, wired to each other (the
//! pattern of `settle-tests`' `Suite`), with clients and builders for invoices and payments.

use settle_platform::testing::TestDatabase;
use settle_platform::time::now_unix;
use settle_proto::common::v1::saga_service_client::SagaServiceClient;
use settle_proto::events::v1 as ev;
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::settle::creditnotes::v1 as cn;
use settle_proto::settle::creditnotes::v1::credit_note_service_client::CreditNoteServiceClient;
use settle_proto::settle::invoices::v1 as inv;
use settle_proto::settle::invoices::v1::customer_balance_service_client::CustomerBalanceServiceClient;
use settle_proto::settle::invoices::v1::invoice_payment_service_client::InvoicePaymentServiceClient;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_proto::settle::payments::v1 as pay;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_proto::settle::payments::v1::payment_record_service_client::PaymentRecordServiceClient;
use settle_proto::settle::payments::v1::refund_service_client::RefundServiceClient;
use settle_testkit::{RunningServer, authorized};
use tonic::transport::Channel;

/// The three services and their clients.
pub struct TestApp {
    pub invoices: InvoiceServiceClient<Channel>,
    pub invoice_payments: InvoicePaymentServiceClient<Channel>,
    pub balances: CustomerBalanceServiceClient<Channel>,
    pub intents: PaymentIntentServiceClient<Channel>,
    pub records: PaymentRecordServiceClient<Channel>,
    pub refunds: RefundServiceClient<Channel>,
    pub notes: CreditNoteServiceClient<Channel>,
    pub note_events: EventServiceClient<Channel>,
    pub sagas: SagaServiceClient<Channel>,
    /// Kept so the services and their databases live as long as the test.
    _servers: Vec<RunningServer>,
    _databases: Vec<TestDatabase>,
}

/// Starts payments, invoices and credit-notes (credit-notes on `database`).
pub async fn spawn(database: TestDatabase) -> TestApp {
    let backend = database.backend();
    let payments_db = TestDatabase::new(backend).await.expect("payments database");
    let invoices_db = TestDatabase::new(backend).await.expect("invoices database");

    let shutdown = settle_testkit::token();
    let payments =
        settle_payments::startup::Application::build(settle_testkit::config(&payments_db), shutdown.clone())
            .await
            .expect("payments starts");
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
    .expect("invoices starts");
    let invoices = settle_testkit::spawn(invoices.local_addr(), shutdown, invoices.run_until_stopped());

    let shutdown = settle_testkit::token();
    let notes = settle_credit_notes::startup::Application::build(
        settle_credit_notes::config::CreditNotesConfig {
            platform: settle_testkit::config(&database),
            peers: settle_credit_notes::config::Peers {
                invoices_url: format!("http://{}", invoices.addr()),
                payments_url: format!("http://{}", payments.addr()),
            },
            sagas: Default::default(),
        },
        shutdown.clone(),
    )
    .await
    .expect("credit-notes starts");
    let notes = settle_testkit::spawn(notes.local_addr(), shutdown, notes.run_until_stopped());

    TestApp {
        invoices: InvoiceServiceClient::new(invoices.channel()),
        invoice_payments: InvoicePaymentServiceClient::new(invoices.channel()),
        balances: CustomerBalanceServiceClient::new(invoices.channel()),
        intents: PaymentIntentServiceClient::new(payments.channel()),
        records: PaymentRecordServiceClient::new(payments.channel()),
        refunds: RefundServiceClient::new(payments.channel()),
        notes: CreditNoteServiceClient::new(notes.channel()),
        note_events: EventServiceClient::new(notes.channel()),
        sagas: SagaServiceClient::new(notes.channel()),
        _servers: vec![payments, invoices, notes],
        _databases: vec![database, payments_db, invoices_db],
    }
}

/// One line of a test invoice.
#[derive(Debug, Clone)]
pub struct Line {
    pub unit_amount: i64,
    pub quantity: i64,
    /// An exclusive tax on the line, in minor units.
    pub tax: i64,
}

/// `quantity` units at `unit_amount`, untaxed.
pub fn units(unit_amount: i64, quantity: i64) -> Line {
    Line { unit_amount, quantity, tax: 0 }
}

/// A line of `amount`, untaxed.
pub fn amount(amount: i64) -> Line {
    units(amount, 1)
}

fn line_params(line: &Line) -> inv::InvoiceLineParams {
    inv::InvoiceLineParams {
        price_data: Some(inv::InvoiceLinePriceDataParams {
            currency: "usd".into(),
            product_data: Some(inv::ProductDataParams { name: "Seat".into(), ..Default::default() }),
            unit_amount: Some(line.unit_amount),
            ..Default::default()
        }),
        quantity: Some(line.quantity),
        tax_amounts: if line.tax > 0 {
            vec![inv::TaxAmountParams {
                amount: line.tax,
                tax_rate_data: Some(inv::TaxRateDataParams {
                    display_name: "VAT".into(),
                    inclusive: false,
                    percentage: 10.0,
                    ..Default::default()
                }),
                taxability_reason: None,
                taxable_amount: line.unit_amount * line.quantity,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// A credit note line crediting `quantity` units of invoice line `line`.
pub fn credit_quantity(line: &str, quantity: i64) -> cn::CreditNoteLineParams {
    cn::CreditNoteLineParams {
        r#type: cn::CreditNoteLineItemType::InvoiceLineItem as i32,
        invoice_line_item: Some(line.to_owned()),
        quantity: Some(quantity),
        ..Default::default()
    }
}

/// A credit note line crediting `amount` of invoice line `line`.
pub fn credit_amount(line: &str, amount: i64) -> cn::CreditNoteLineParams {
    cn::CreditNoteLineParams {
        r#type: cn::CreditNoteLineItemType::InvoiceLineItem as i32,
        invoice_line_item: Some(line.to_owned()),
        amount: Some(amount),
        ..Default::default()
    }
}

/// A create request for invoice `invoice` crediting `amount` (one custom line).
pub fn note(invoice: &str, amount: i64) -> cn::CreateCreditNoteRequest {
    cn::CreateCreditNoteRequest { invoice: invoice.to_owned(), amount: Some(amount), ..Default::default() }
}

/// A `refunds[]` entry linking Refund `refund`.
pub fn link_refund(refund: &str, amount: Option<i64>) -> cn::CreditNoteRefundParams {
    cn::CreditNoteRefundParams {
        refund: Some(refund.to_owned()),
        amount_refunded: amount,
        ..Default::default()
    }
}

/// A `refunds[]` entry linking the refund `group` reported on record `record`.
pub fn link_record_refund(record: &str, group: &str, amount: Option<i64>) -> cn::CreditNoteRefundParams {
    cn::CreditNoteRefundParams {
        r#type: Some(cn::CreditNoteRefundType::PaymentRecordRefund as i32),
        payment_record_refund: Some(cn::CreditNotePaymentRecordRefund {
            payment_record: record.to_owned(),
            refund_group: group.to_owned(),
        }),
        amount_refunded: amount,
        ..Default::default()
    }
}

/// What the three stores say about an invoice and its customer, to compare before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub invoice: inv::Invoice,
    pub invoice_payments: Vec<inv::InvoicePayment>,
    pub balance: i64,
    pub refunds: Vec<pay::Refund>,
    pub notes: Vec<cn::CreditNote>,
}

impl TestApp {
    /// A finalized (open) invoice for `customer` with `lines`, and its lines.
    pub async fn open_invoice(
        &self,
        customer: &str,
        lines: &[Line],
    ) -> (inv::Invoice, Vec<inv::InvoiceLineItem>) {
        self.open_invoice_with(customer, lines, None).await
    }

    /// Like [`Self::open_invoice`], with a shipping cost of `shipping`.
    pub async fn open_invoice_with(
        &self,
        customer: &str,
        lines: &[Line],
        shipping: Option<i64>,
    ) -> (inv::Invoice, Vec<inv::InvoiceLineItem>) {
        let draft = self
            .invoices
            .clone()
            .create_invoice(authorized(inv::CreateInvoiceRequest {
                customer: Some(customer.to_owned()),
                currency: Some("usd".to_owned()),
                shipping_cost: shipping.map(|amount| inv::InvoiceShippingCostParams {
                    shipping_rate: None,
                    shipping_rate_data: Some(inv::InvoiceShippingRateDataParams {
                        display_name: "Ground".into(),
                        fixed_amount: Some(inv::ShippingRateFixedAmountParams {
                            amount,
                            currency: "usd".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }))
            .await
            .expect("draft created")
            .into_inner();
        self.invoices
            .clone()
            .add_lines(authorized(inv::AddLinesRequest {
                id: draft.id.clone(),
                lines: lines.iter().map(line_params).collect(),
                ..Default::default()
            }))
            .await
            .expect("lines added");
        let invoice = self
            .invoices
            .clone()
            .finalize_invoice(authorized(inv::FinalizeInvoiceRequest {
                id: draft.id.clone(),
                ..Default::default()
            }))
            .await
            .expect("finalized")
            .into_inner();
        let lines = self.invoice_lines(&invoice.id).await;
        (invoice, lines)
    }

    pub async fn invoice_lines(&self, id: &str) -> Vec<inv::InvoiceLineItem> {
        self.invoices
            .clone()
            .list_invoice_lines(authorized(inv::ListInvoiceLinesRequest {
                id: id.to_owned(),
                limit: Some(100),
                ..Default::default()
            }))
            .await
            .expect("lines listed")
            .into_inner()
            .data
    }

    pub async fn invoice(&self, id: &str) -> inv::Invoice {
        self.invoices
            .clone()
            .get_invoice(authorized(inv::GetInvoiceRequest { id: id.to_owned(), expand: Vec::new() }))
            .await
            .expect("invoice read")
            .into_inner()
    }

    /// A succeeded PaymentIntent of `amount` for `customer`, attached to `invoice`.
    pub async fn pay_with_intent(&self, invoice: &str, customer: &str, amount: i64) -> pay::PaymentIntent {
        let intent = self
            .intents
            .clone()
            .create_payment_intent(authorized(pay::CreatePaymentIntentRequest {
                amount,
                currency: "usd".into(),
                customer: Some(customer.to_owned()),
                payment_method: Some("pm_card_visa".into()),
                confirm: Some(true),
                ..Default::default()
            }))
            .await
            .expect("intent created")
            .into_inner();
        self.attach(invoice, inv::attach_payment_request::Payment::PaymentIntent(intent.id.clone())).await;
        intent
    }

    /// A guaranteed payment record of `amount` for `customer`, attached to `invoice`.
    pub async fn pay_with_record(&self, invoice: &str, customer: &str, amount: i64) -> pay::PaymentRecord {
        let record = self
            .records
            .clone()
            .report_payment(authorized(pay::ReportPaymentRequest {
                amount_requested: Some(pay::PaymentRecordAmount { currency: "usd".into(), value: amount }),
                customer_details: Some(pay::PaymentRecordCustomerDetails {
                    customer: Some(customer.to_owned()),
                    ..Default::default()
                }),
                initiated_at: now_unix() - 60,
                payment_method_details: Some(pay::PaymentRecordPaymentMethodDetailsParams {
                    custom: Some(pay::PaymentRecordCustomPaymentMethodDetails {
                        display_name: "Check".into(),
                        r#type: None,
                    }),
                    r#type: Some(pay::PaymentRecordPaymentMethodDetailsType::Custom as i32),
                    ..Default::default()
                }),
                outcome: Some(pay::ReportPaymentOutcome::Guaranteed as i32),
                guaranteed: Some(pay::PaymentRecordGuaranteedParams { guaranteed_at: now_unix() - 30 }),
                ..Default::default()
            }))
            .await
            .expect("record reported")
            .into_inner();
        self.attach(invoice, inv::attach_payment_request::Payment::PaymentRecord(record.id.clone())).await;
        record
    }

    pub async fn attach(&self, invoice: &str, payment: inv::attach_payment_request::Payment) -> inv::Invoice {
        self.invoices
            .clone()
            .attach_payment(authorized(inv::AttachPaymentRequest {
                id: invoice.to_owned(),
                payment: Some(payment),
                expand: Vec::new(),
            }))
            .await
            .expect("payment attached")
            .into_inner()
    }

    /// Reports a refund of `amount` on `record` under `reference`.
    pub async fn report_refund(&self, record: &str, reference: &str, amount: i64) -> pay::PaymentRecord {
        self.records
            .clone()
            .report_refund(authorized(pay::ReportRefundRequest {
                id: record.to_owned(),
                amount: Some(pay::PaymentRecordAmount { currency: "usd".into(), value: amount }),
                outcome: pay::ReportRefundOutcome::Refunded as i32,
                processor_details: Some(pay::PaymentRecordRefundProcessorDetailsParams {
                    custom: Some(pay::PaymentRecordRefundCustomProcessorDetailsParams {
                        refund_reference: reference.into(),
                    }),
                    r#type: pay::PaymentRecordProcessorType::Custom as i32,
                }),
                refunded: Some(pay::PaymentRecordRefundedParams { refunded_at: now_unix() }),
                ..Default::default()
            }))
            .await
            .expect("refund reported")
            .into_inner()
    }

    /// A refund of `amount` of `intent`, made directly (not by a credit note).
    pub async fn refund(&self, intent: &str, amount: i64) -> pay::Refund {
        self.refunds
            .clone()
            .create_refund(authorized(pay::CreateRefundRequest {
                payment_intent: Some(intent.to_owned()),
                amount: Some(amount),
                ..Default::default()
            }))
            .await
            .expect("refund created")
            .into_inner()
    }

    pub async fn create(
        &self,
        request: cn::CreateCreditNoteRequest,
    ) -> Result<cn::CreditNote, tonic::Status> {
        self.notes.clone().create_credit_note(authorized(request)).await.map(tonic::Response::into_inner)
    }

    pub async fn preview(
        &self,
        request: cn::CreateCreditNoteRequest,
    ) -> Result<cn::CreditNote, tonic::Status> {
        let preview = preview_of(&request);
        self.notes.clone().preview_credit_note(authorized(preview)).await.map(tonic::Response::into_inner)
    }

    pub async fn void(&self, id: &str) -> Result<cn::CreditNote, tonic::Status> {
        self.notes
            .clone()
            .void_credit_note(authorized(cn::VoidCreditNoteRequest { id: id.to_owned() }))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn get_note(&self, id: &str) -> Result<cn::CreditNote, tonic::Status> {
        self.notes
            .clone()
            .get_credit_note(authorized(cn::GetCreditNoteRequest { id: id.to_owned() }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every credit note of `invoice`, newest first.
    pub async fn notes_of(&self, invoice: &str) -> Vec<cn::CreditNote> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .notes
                .clone()
                .list_credit_notes(authorized(cn::ListCreditNotesRequest {
                    invoice: Some(invoice.to_owned()),
                    limit: Some(100),
                    starting_after: after.clone(),
                    ..Default::default()
                }))
                .await
                .expect("notes listed")
                .into_inner();
            out.extend(page.data);
            if !page.has_more {
                return out;
            }
            after = out.last().map(|n| n.id.clone());
        }
    }

    /// The customer's balance in usd (negative is a credit).
    pub async fn balance(&self, customer: &str) -> i64 {
        self.balances
            .clone()
            .get_customer_balance(authorized(inv::GetCustomerBalanceRequest {
                customer: customer.to_owned(),
                currency: Some("usd".to_owned()),
            }))
            .await
            .expect("balance read")
            .into_inner()
            .balance
    }

    pub async fn payments_of(&self, invoice: &str) -> Vec<inv::InvoicePayment> {
        self.invoice_payments
            .clone()
            .list_invoice_payments(authorized(inv::ListInvoicePaymentsRequest {
                invoice: Some(invoice.to_owned()),
                limit: Some(100),
                ..Default::default()
            }))
            .await
            .expect("invoice payments listed")
            .into_inner()
            .data
    }

    /// Every refund of the account, newest first.
    pub async fn all_refunds(&self) -> Vec<pay::Refund> {
        self.refunds
            .clone()
            .list_refunds(authorized(pay::ListRefundsRequest { limit: Some(100), ..Default::default() }))
            .await
            .expect("refunds listed")
            .into_inner()
            .data
    }

    /// What the three stores hold about `invoice` and `customer` now.
    pub async fn snapshot(&self, invoice: &str, customer: &str) -> Snapshot {
        Snapshot {
            invoice: self.invoice(invoice).await,
            invoice_payments: self.payments_of(invoice).await,
            balance: self.balance(customer).await,
            refunds: self.all_refunds().await,
            notes: self.notes_of(invoice).await,
        }
    }

    /// The events of `event_type` the credit-notes service has written so far (waits for `n`).
    pub async fn note_events(&self, event_type: &str, n: usize) -> Vec<ev::Event> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let events = self
                .note_events
                .clone()
                .list_events(authorized(ev::ListEventsRequest {
                    r#type: Some(event_type.to_owned()),
                    limit: Some(100),
                    ..Default::default()
                }))
                .await
                .expect("events listed")
                .into_inner()
                .data;
            if events.len() >= n || std::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The preview request with the same parameters as `request`.
pub fn preview_of(request: &cn::CreateCreditNoteRequest) -> cn::PreviewCreditNoteRequest {
    prost::Message::decode(prost::Message::encode_to_vec(request).as_slice()).expect("same fields")
}

/// A created note as a preview shows it: ids, times, number and the new refund's entry aside.
pub fn comparable(note: &cn::CreditNote) -> cn::CreditNote {
    let mut note = note.clone();
    note.id.clear();
    note.number.clear();
    note.created = 0;
    note.effective_at = None;
    note.customer_balance_transaction = None;
    if let Some(lines) = note.lines.as_mut() {
        lines.url.clear();
        for line in &mut lines.data {
            line.id.clear();
        }
    }
    note
}
