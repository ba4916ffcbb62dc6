//! The operation table: every operation the tool can time, what it is compared with, and how one
//! prepared input is executed. Preparing inputs (the untimed set-up: invoices to attach to,
//! PaymentIntents to attach) is in [`super::prepare`].
//!
//! Adding an operation is a variant of [`Op`], a row of [`OPS`], an [`Input`] variant with its arm
//! in [`Clients::execute`], and its arm in `prepare::inputs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use settle_proto::settle::creditnotes::v1 as cpb;
use settle_proto::settle::creditnotes::v1::credit_note_service_client::CreditNoteServiceClient;
use settle_proto::settle::invoices::v1 as ipb;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_proto::settle::payments::v1 as ppb;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::ceiling::CeilingClient;

/// Every operation, ceilings first. The discriminant indexes per-operation arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Noop,
    SelectOne,
    AttachShaped,
    Create,
    CreateFinalize,
    Intent,
    Attach,
    Detach,
    Reapply,
    Pay,
    Read,
    List,
    CreditNote,
}

/// What kind of work an operation is; decides which ceiling its figures are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A ceiling of this machine, served by the tool's own tiny service.
    Ceiling,
    /// Writes: compared with the attach-shaped transaction.
    Write,
    /// Reads: compared with `SELECT 1`.
    Read,
}

/// One row of the operation table.
#[derive(Debug)]
pub struct OpSpec {
    pub op: Op,
    /// The name in `--mix`, the output and the JSON summary.
    pub name: &'static str,
    pub kind: Kind,
    /// What one timed operation is, for `--help` and docs/benchmarks.md.
    pub what: &'static str,
}

/// The operation table, in [`Op`] order.
pub const OPS: &[OpSpec] = &[
    OpSpec {
        op: Op::Noop,
        name: "noop",
        kind: Kind::Ceiling,
        what: "ceiling: an empty gRPC call to the tool's own service",
    },
    OpSpec {
        op: Op::SelectOne,
        name: "select_one",
        kind: Kind::Ceiling,
        what: "ceiling: a gRPC call running `SELECT 1` on a pool",
    },
    OpSpec {
        op: Op::AttachShaped,
        name: "attach_shaped",
        kind: Kind::Ceiling,
        what: "ceiling: a gRPC call running one transaction shaped like attach's apply step \
               (lock a row FOR UPDATE, insert a row, update the locked row, commit)",
    },
    OpSpec {
        op: Op::Create,
        name: "create",
        kind: Kind::Write,
        what: "CreateInvoice (a draft): one transaction",
    },
    OpSpec {
        op: Op::CreateFinalize,
        name: "create_finalize",
        kind: Kind::Write,
        what: "CreateInvoice + AddLines + FinalizeInvoice (send_invoice): three calls",
    },
    OpSpec {
        op: Op::Intent,
        name: "intent",
        kind: Kind::Write,
        what: "CreatePaymentIntent confirmed with a test card: one transaction in payments",
    },
    OpSpec {
        op: Op::Attach,
        name: "attach",
        kind: Kind::Write,
        what: "AttachPayment of a succeeded PaymentIntent (created beforehand): the attach saga",
    },
    OpSpec {
        op: Op::Detach,
        name: "detach",
        kind: Kind::Write,
        what: "DetachPayment of an attached PaymentIntent: the detach saga",
    },
    OpSpec {
        op: Op::Reapply,
        name: "reapply",
        kind: Kind::Write,
        what: "ReapplyPayment: detach from one invoice and attach to another, one saga",
    },
    OpSpec {
        op: Op::Pay,
        name: "pay",
        kind: Kind::Write,
        what: "PayInvoice of an open invoice with a test card: a new PaymentIntent, confirmed and attached",
    },
    OpSpec { op: Op::Read, name: "read", kind: Kind::Read, what: "GetInvoice" },
    OpSpec {
        op: Op::List,
        name: "list",
        kind: Kind::Read,
        what: "ListInvoices of one customer, a page of 10",
    },
    OpSpec {
        op: Op::CreditNote,
        name: "credit_note",
        kind: Kind::Write,
        what: "CreateCreditNote with a refund on a paid invoice: the credit-note saga (skipped when the \
               credit-notes service does not serve it)",
    },
];

impl Op {
    /// How many operations there are (the length of per-operation arrays).
    pub const COUNT: usize = OPS.len();

    pub fn spec(self) -> &'static OpSpec {
        &OPS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(name: &str) -> Option<Op> {
        OPS.iter().find(|spec| spec.name == name).map(|spec| spec.op)
    }

    pub fn all() -> impl Iterator<Item = Op> {
        OPS.iter().map(|spec| spec.op)
    }

    /// The operations of the workload (everything but the ceilings).
    pub fn workload() -> impl Iterator<Item = Op> {
        Op::all().filter(|op| op.spec().kind != Kind::Ceiling)
    }

    /// The ceiling this operation's figures are divided by.
    pub fn ceiling(self) -> Op {
        match self.spec().kind {
            Kind::Ceiling => self,
            Kind::Write => Op::AttachShaped,
            Kind::Read => Op::SelectOne,
        }
    }
}

/// One prepared operation: everything it needs exists already, so only the call itself is timed.
#[derive(Debug, Clone)]
pub enum Input {
    Noop,
    SelectOne,
    AttachShaped {
        row: u32,
    },
    Create {
        customer: Arc<str>,
    },
    CreateFinalize {
        customer: Arc<str>,
        amount: i64,
    },
    Intent {
        customer: Arc<str>,
    },
    Attach {
        invoice: Arc<str>,
        intent: Arc<str>,
    },
    Detach {
        invoice: Arc<str>,
        intent: Arc<str>,
    },
    /// Moves `intent` (attached elsewhere) onto `invoice`.
    Reapply {
        invoice: Arc<str>,
        intent: Arc<str>,
    },
    Pay {
        invoice: Arc<str>,
    },
    Read {
        invoice: Arc<str>,
    },
    List {
        customer: Arc<str>,
    },
    /// A post-payment credit note of `amount` on a paid invoice, refunded as much.
    CreditNote {
        invoice: Arc<str>,
        amount: i64,
    },
}

impl Input {
    pub fn op(&self) -> Op {
        match self {
            Input::Noop => Op::Noop,
            Input::SelectOne => Op::SelectOne,
            Input::AttachShaped { .. } => Op::AttachShaped,
            Input::Create { .. } => Op::Create,
            Input::CreateFinalize { .. } => Op::CreateFinalize,
            Input::Intent { .. } => Op::Intent,
            Input::Attach { .. } => Op::Attach,
            Input::Detach { .. } => Op::Detach,
            Input::Reapply { .. } => Op::Reapply,
            Input::Pay { .. } => Op::Pay,
            Input::Read { .. } => Op::Read,
            Input::List { .. } => Op::List,
            Input::CreditNote { .. } => Op::CreditNote,
        }
    }
}

/// The amount of every PaymentIntent the workload attaches (USD minor units; above the minimum
/// charge).
pub const PAYMENT_AMOUNT: i64 = 100;
/// The currency of everything the workload creates.
pub const CURRENCY: &str = "usd";
/// The test card that succeeds.
pub const CARD: &str = "pm_card_visa";

/// How one execution ended.
pub struct Outcome {
    pub result: Result<(), Status>,
    /// Repeats with the same idempotency key while a saga could not finish yet.
    pub retries: u32,
}

/// How often a saga call is repeated with the same idempotency key while it answers
/// `saga_in_progress` or `dependency_unavailable` (the contract says: repeat).
const SAGA_ATTEMPTS: u32 = 8;

/// The clients of one worker: cheap clones over the shared HTTP/2 channels.
#[derive(Clone)]
pub struct Clients {
    invoices: InvoiceServiceClient<Channel>,
    intents: PaymentIntentServiceClient<Channel>,
    credit_notes: CreditNoteServiceClient<Channel>,
    ceiling: Option<CeilingClient>,
    /// `Bearer <key>`, parsed once.
    authorization: AsciiMetadataValue,
    /// Idempotency keys are `<prefix><n>`, unique per run.
    key_prefix: Arc<str>,
    next_key: Arc<AtomicU64>,
}

impl Clients {
    pub fn new(
        invoices: Channel,
        payments: Channel,
        credit_notes: Channel,
        ceiling: Option<CeilingClient>,
        api_key: &str,
        run_id: &str,
    ) -> anyhow::Result<Clients> {
        Ok(Clients {
            invoices: InvoiceServiceClient::new(invoices),
            intents: PaymentIntentServiceClient::new(payments),
            credit_notes: CreditNoteServiceClient::new(credit_notes),
            ceiling,
            authorization: format!("Bearer {api_key}").parse()?,
            key_prefix: Arc::from(format!("load-{run_id}-")),
            next_key: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The same clients with the ceiling service's client (measured on the same terms).
    pub fn with_ceiling(&self, ceiling: CeilingClient) -> Clients {
        Clients { ceiling: Some(ceiling), ..self.clone() }
    }

    pub fn invoices(&self) -> InvoiceServiceClient<Channel> {
        self.invoices.clone()
    }

    pub fn intents(&self) -> PaymentIntentServiceClient<Channel> {
        self.intents.clone()
    }

    /// A fresh idempotency key.
    pub fn key(&self) -> String {
        let n = self.next_key.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", self.key_prefix)
    }

    /// `message` with the API key, the synthetic-traffic baggage and, for a mutation, its
    /// idempotency key.
    pub fn request<T>(&self, message: T, idempotency_key: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("authorization", self.authorization.clone());
        // Services and dashboards can tell test traffic apart (operations notes §8).
        metadata.insert("baggage", MetadataValue::from_static("synthetic_request=true"));
        if let Some(key) = idempotency_key.and_then(|k| AsciiMetadataValue::try_from(k).ok()) {
            metadata.insert("idempotency-key", key);
        }
        request
    }

    /// Executes one prepared input.
    pub async fn execute(&mut self, input: &Input) -> Outcome {
        let once = |result: Result<(), Status>| Outcome { result, retries: 0 };
        match input {
            Input::Noop => once(match self.ceiling() {
                Ok(ceiling) => ceiling.noop().await,
                Err(status) => Err(status),
            }),
            Input::SelectOne => once(match self.ceiling() {
                Ok(ceiling) => ceiling.select_one().await,
                Err(status) => Err(status),
            }),
            Input::AttachShaped { row } => once(match self.ceiling() {
                Ok(ceiling) => ceiling.attach_shaped(*row).await,
                Err(status) => Err(status),
            }),
            Input::Create { customer } => {
                let key = self.key();
                once(self.create_draft(customer, &key).await.map(drop))
            }
            Input::CreateFinalize { customer, amount } => {
                once(self.create_open_invoice(customer, *amount).await.map(drop))
            }
            Input::Intent { customer } => {
                once(self.succeeded_intent(customer, PAYMENT_AMOUNT).await.map(drop))
            }
            Input::Attach { invoice, intent } => self.attach(invoice, intent).await,
            Input::Detach { invoice, intent } => {
                let request = ipb::DetachPaymentRequest {
                    id: invoice.to_string(),
                    payment: Some(ipb::detach_payment_request::Payment::PaymentIntent(intent.to_string())),
                    expand: Vec::new(),
                };
                let invoices = self.invoices.clone();
                self.saga(request, |request| {
                    let mut client = invoices.clone();
                    async move { client.detach_payment(request).await.map(drop) }
                })
                .await
            }
            Input::Reapply { invoice, intent } => {
                let request = ipb::ReapplyPaymentRequest {
                    id: invoice.to_string(),
                    payment: Some(ipb::reapply_payment_request::Payment::PaymentIntent(intent.to_string())),
                    expand: Vec::new(),
                };
                let invoices = self.invoices.clone();
                self.saga(request, |request| {
                    let mut client = invoices.clone();
                    async move { client.reapply_payment(request).await.map(drop) }
                })
                .await
            }
            Input::Pay { invoice } => {
                let request = ipb::PayInvoiceRequest {
                    id: invoice.to_string(),
                    payment_method: Some(CARD.to_owned()),
                    ..Default::default()
                };
                let invoices = self.invoices.clone();
                self.saga(request, |request| {
                    let mut client = invoices.clone();
                    async move { client.pay_invoice(request).await.map(drop) }
                })
                .await
            }
            Input::Read { invoice } => {
                let request = ipb::GetInvoiceRequest { id: invoice.to_string(), expand: Vec::new() };
                once(self.invoices.get_invoice(self.request(request, None)).await.map(drop))
            }
            Input::List { customer } => {
                let request = ipb::ListInvoicesRequest {
                    customer: Some(customer.to_string()),
                    limit: Some(10),
                    ..Default::default()
                };
                once(self.invoices.list_invoices(self.request(request, None)).await.map(drop))
            }
            Input::CreditNote { invoice, amount } => {
                let request = cpb::CreateCreditNoteRequest {
                    invoice: invoice.to_string(),
                    amount: Some(*amount),
                    refund_amount: Some(*amount),
                    reason: Some(cpb::CreditNoteReason::ProductUnsatisfactory as i32),
                    ..Default::default()
                };
                let credit_notes = self.credit_notes.clone();
                self.saga(request, |request| {
                    let mut client = credit_notes.clone();
                    async move { client.create_credit_note(request).await.map(drop) }
                })
                .await
            }
        }
    }

    /// Whether the credit-notes service serves the credit-note API (it arrives with its own issue;
    /// until then the credit-note operation is skipped, not failed).
    pub async fn serves_credit_notes(&self) -> bool {
        let request = cpb::ListCreditNotesRequest { limit: Some(1), ..Default::default() };
        let answer = self.credit_notes.clone().list_credit_notes(self.request(request, None)).await;
        !matches!(answer, Err(status) if status.code() == Code::Unimplemented)
    }

    fn ceiling(&mut self) -> Result<&mut CeilingClient, Status> {
        // Ceiling inputs exist only in phases run with `with_ceiling`.
        self.ceiling.as_mut().ok_or_else(|| Status::failed_precondition("no ceiling service in this phase"))
    }

    /// Attaches a PaymentIntent to an invoice (the timed attach, and set-up for detach/reapply).
    pub async fn attach(&mut self, invoice: &str, intent: &str) -> Outcome {
        let request = ipb::AttachPaymentRequest {
            id: invoice.to_owned(),
            payment: Some(ipb::attach_payment_request::Payment::PaymentIntent(intent.to_owned())),
            expand: Vec::new(),
        };
        let invoices = self.invoices.clone();
        self.saga(request, |request| {
            let mut client = invoices.clone();
            async move { client.attach_payment(request).await.map(drop) }
        })
        .await
    }

    /// Runs a saga call under one idempotency key, repeating it while the saga cannot finish yet.
    async fn saga<T, F, Fut>(&mut self, message: T, call: F) -> Outcome
    where
        T: Clone,
        F: Fn(Request<T>) -> Fut,
        Fut: Future<Output = Result<(), Status>>,
    {
        let key = self.key();
        let mut retries = 0;
        loop {
            let result = call(self.request(message.clone(), Some(&key))).await;
            match result {
                Err(status) if retries + 1 < SAGA_ATTEMPTS && saga_unfinished(&status) => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(10 << retries.min(4))).await;
                }
                result => return Outcome { result, retries },
            }
        }
    }

    /// A draft invoice (send_invoice, due in 30 days) for `customer`.
    pub async fn create_draft(&mut self, customer: &str, key: &str) -> Result<ipb::Invoice, Status> {
        let request = ipb::CreateInvoiceRequest {
            customer: Some(customer.to_owned()),
            currency: Some(CURRENCY.to_owned()),
            collection_method: Some(ipb::InvoiceCollectionMethod::SendInvoice as i32),
            days_until_due: Some(30),
            description: Some("settle-load".to_owned()),
            ..Default::default()
        };
        Ok(self.invoices.create_invoice(self.request(request, Some(key))).await?.into_inner())
    }

    /// An open invoice of `total` for `customer`: create, one line, finalize.
    pub async fn create_open_invoice(&mut self, customer: &str, total: i64) -> Result<ipb::Invoice, Status> {
        let key = self.key();
        let draft = self.create_draft(customer, &key).await?;
        let lines = ipb::AddLinesRequest {
            id: draft.id.clone(),
            lines: vec![ipb::InvoiceLineParams {
                amount: Some(total),
                description: Some("Load test services".to_owned()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let key_lines = format!("{key}-lines");
        self.invoices.add_lines(self.request(lines, Some(&key_lines))).await?;
        let finalize = ipb::FinalizeInvoiceRequest { id: draft.id, ..Default::default() };
        let key_finalize = format!("{key}-finalize");
        Ok(self.invoices.finalize_invoice(self.request(finalize, Some(&key_finalize))).await?.into_inner())
    }

    /// A PaymentIntent of `amount` for `customer`, confirmed with the succeeding test card.
    pub async fn succeeded_intent(
        &mut self,
        customer: &str,
        amount: i64,
    ) -> Result<ppb::PaymentIntent, Status> {
        let request = ppb::CreatePaymentIntentRequest {
            amount,
            currency: CURRENCY.to_owned(),
            customer: Some(customer.to_owned()),
            payment_method: Some(CARD.to_owned()),
            confirm: Some(true),
            ..Default::default()
        };
        let key = self.key();
        Ok(self.intents.create_payment_intent(self.request(request, Some(&key))).await?.into_inner())
    }
}

/// Whether a saga call answered "not finished yet, repeat with the same key".
fn saga_unfinished(status: &Status) -> bool {
    match status.code() {
        Code::Aborted => settle_testkit::reason(status) == "saga_in_progress",
        Code::Unavailable => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_op_order_with_unique_names() {
        for (i, spec) in OPS.iter().enumerate() {
            assert_eq!(spec.op as usize, i, "{} is out of order", spec.name);
            assert_eq!(Op::parse(spec.name), Some(spec.op));
        }
        assert_eq!(Op::parse("nope"), None);
    }

    #[test]
    fn writes_compare_with_the_attach_shaped_transaction_and_reads_with_select_one() {
        assert_eq!(Op::Attach.ceiling(), Op::AttachShaped);
        assert_eq!(Op::Read.ceiling(), Op::SelectOne);
        assert_eq!(Op::Noop.ceiling(), Op::Noop);
        assert!(Op::workload().all(|op| op.spec().kind != Kind::Ceiling));
    }
}
