//! The chaos workload: workers that apply, move, remove and pay payments on invoices the way a
//! client would — every mutating request under an idempotency key, repeated with the same key
//! until it has a definitive answer — while faults are injected. Each worker has its own customer,
//! so what it believes about its invoices can be checked afterwards, but the invariants are read
//! from the stores, not from this belief.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use settle_proto::settle::payments::v1 as ppb;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::rng::Rng;
use crate::api::Api;

/// Total of every invoice the workload makes.
pub const INVOICE_TOTAL: i64 = 10_000;
/// How long a client keeps repeating one request before giving up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// The operations, with their weights in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// A succeeded card payment attached to an open send_invoice invoice.
    Attach,
    /// A processing bank debit attached, then settled (mostly succeeding) — the event consumer's path.
    AttachPending,
    Detach,
    Reapply,
    /// PayInvoice on a send_invoice invoice: a new PaymentIntent.
    Pay,
    /// Finalizing a charge_automatically invoice: its default PaymentIntent.
    Finalize,
    /// PayInvoice confirming that default PaymentIntent.
    PayDefault,
    Void,
    PayOutOfBand,
    /// A credit note on an invoice with payments: the pre-payment part reduces what is owed, the
    /// rest is refunded to the card or credited to the balance.
    CreditNote,
    VoidCreditNote,
}

impl Operation {
    pub const ALL: [Operation; 11] = [
        Operation::Attach,
        Operation::AttachPending,
        Operation::Detach,
        Operation::Reapply,
        Operation::Pay,
        Operation::Finalize,
        Operation::PayDefault,
        Operation::Void,
        Operation::PayOutOfBand,
        Operation::CreditNote,
        Operation::VoidCreditNote,
    ];
    const WEIGHTS: [u32; 11] = [8, 3, 3, 2, 2, 3, 2, 1, 1, 3, 1];
}

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Done,
    /// A definitive refusal (e.g. `amount_too_large`): as good an answer as success.
    Refused(String),
    /// No definitive answer within the time a client waits.
    GaveUp,
    /// Setting up the operation failed (e.g. its service was down); nothing was attempted.
    NotAttempted,
    /// INTERNAL: a bug or an unmapped error, reported.
    Internal(String),
}

/// Counts of operations by kind and outcome.
#[derive(Debug, Default)]
pub struct Tally {
    pub counts: BTreeMap<(Operation, Outcome), u64>,
    pub internal_messages: Vec<String>,
}

impl Tally {
    pub fn attempted(&self) -> u64 {
        self.counts.iter().filter(|((_, o), _)| *o != Outcome::NotAttempted).map(|(_, n)| n).sum()
    }
}

/// What a worker believes about its own objects.
#[derive(Default)]
struct Book {
    /// Open send_invoice invoices it may attach to.
    open: Vec<String>,
    /// (payment, invoice) pairs it attached.
    attached: Vec<(String, String)>,
    /// charge_automatically invoices with an open default PaymentIntent.
    with_default: Vec<String>,
    /// Credit notes it issued.
    notes: Vec<String>,
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_else(|| format!("{:?}", status.code()).to_lowercase())
}

/// Repeats `call` (the same request, same idempotency key) until a definitive answer.
async fn until_answered<T, F, Fut>(mut call: F) -> Result<T, Outcome>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status) => match status.code() {
                Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::AlreadyExists => {
                    return Err(Outcome::Refused(reason(&status)));
                }
                Code::Internal => return Err(Outcome::Internal(status.message().to_owned())),
                _ if started.elapsed() > GIVE_UP_AFTER => return Err(Outcome::GaveUp),
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            },
        }
    }
}

/// One client of the suite.
pub struct Worker {
    pub index: usize,
    api: Api,
    rng: Rng,
    book: Book,
    requests: u64,
}

impl Worker {
    pub fn new(index: usize, api: Api, seed: u64) -> Worker {
        Worker { index, api, rng: Rng::fork(seed, 1_000 + index as u64), book: Book::default(), requests: 0 }
    }

    fn customer(&self) -> String {
        format!("cus_chaos{}", self.index)
    }

    fn key(&mut self) -> String {
        self.requests += 1;
        format!("chaos-w{}-{}", self.index, self.requests)
    }

    /// Runs operations until `deadline`, recording outcomes in `tally`.
    pub async fn run(mut self, deadline: Instant, tally: Arc<Mutex<Tally>>) {
        while Instant::now() < deadline {
            let operation = Operation::ALL[self.rng.weighted(&Operation::WEIGHTS)];
            let outcome = match self.step(operation).await {
                Ok(()) => Outcome::Done,
                Err(outcome) => outcome,
            };
            let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
            if let Outcome::Internal(message) = &outcome
                && tally.internal_messages.len() < 20
            {
                tally.internal_messages.push(format!("{operation:?}: {message}"));
            }
            let outcome = match outcome {
                Outcome::Internal(_) => Outcome::Internal(String::new()),
                other => other,
            };
            *tally.counts.entry((operation, outcome)).or_default() += 1;
        }
    }

    async fn open_invoice(&mut self, automatic: bool) -> Result<String, Outcome> {
        let customer = self.customer();
        let api = self.api.clone();
        // A draft made twice by a repeated request is harmless: it is never finalized.
        let draft = until_answered(|| api.draft(&customer, INVOICE_TOTAL, automatic))
            .await
            .map_err(|_| Outcome::NotAttempted)?;
        let key = self.key();
        let open = until_answered(|| api.finalize(&draft.id, Some(&key)))
            .await
            .map_err(|_| Outcome::NotAttempted)?;
        Ok(open.id)
    }

    async fn intent(&mut self, payment_method: &str) -> Result<ppb::PaymentIntent, Outcome> {
        let customer = self.customer();
        let amount = i64::try_from(self.rng.between(5, 40)).unwrap_or(10) * 100;
        let api = self.api.clone();
        until_answered(|| api.intent(&customer, amount, Some(payment_method)))
            .await
            .map_err(|_| Outcome::NotAttempted)
    }

    async fn some_open_invoice(&mut self) -> Result<String, Outcome> {
        if self.book.open.len() < 3 || self.rng.chance(0.2) {
            let invoice = self.open_invoice(false).await?;
            self.book.open.push(invoice);
        }
        let i = self.rng.between(0, self.book.open.len() as u64 - 1) as usize;
        Ok(self.book.open[i].clone())
    }

    fn take_attached(&mut self) -> Option<(String, String)> {
        if self.book.attached.is_empty() {
            return None;
        }
        let i = self.rng.between(0, self.book.attached.len() as u64 - 1) as usize;
        Some(self.book.attached.swap_remove(i))
    }

    async fn step(&mut self, operation: Operation) -> Result<(), Outcome> {
        let api = self.api.clone();
        match operation {
            Operation::Attach | Operation::AttachPending => {
                let invoice = self.some_open_invoice().await?;
                let pending = operation == Operation::AttachPending;
                let intent = self.intent(if pending { "pm_us_bank_account" } else { "pm_card_visa" }).await?;
                let key = self.key();
                until_answered(|| api.attach(&invoice, &intent.id, Some(&key))).await?;
                self.book.attached.push((intent.id.clone(), invoice));
                if pending {
                    let succeeded = self.rng.chance(0.8);
                    until_answered(|| api.settle(&intent.id, succeeded)).await?;
                }
                Ok(())
            }
            Operation::Detach => {
                let Some((payment, invoice)) = self.take_attached() else {
                    return Err(Outcome::NotAttempted);
                };
                let key = self.key();
                until_answered(|| api.detach(&invoice, &payment, Some(&key))).await.map(|_| ())
            }
            Operation::Reapply => {
                let Some((payment, from)) = self.take_attached() else { return Err(Outcome::NotAttempted) };
                let target = self.some_open_invoice().await?;
                let key = self.key();
                let moved = until_answered(|| api.reapply(&target, &payment, Some(&key))).await;
                self.book.attached.push((payment, if moved.is_ok() { target } else { from }));
                moved.map(|_| ())
            }
            Operation::Pay => {
                let invoice = self.open_invoice(false).await?;
                let key = self.key();
                until_answered(|| api.pay(&invoice, Some(&key))).await.map(|_| ())
            }
            Operation::Finalize => {
                let customer = self.customer();
                let draft = until_answered(|| api.draft(&customer, INVOICE_TOTAL, true))
                    .await
                    .map_err(|_| Outcome::NotAttempted)?;
                let key = self.key();
                until_answered(|| api.finalize(&draft.id, Some(&key))).await?;
                self.book.with_default.push(draft.id);
                Ok(())
            }
            Operation::CreditNote => {
                let Some((_, invoice)) = self.book.attached.last().cloned() else {
                    return Err(Outcome::NotAttempted);
                };
                let current =
                    until_answered(|| api.invoice(&invoice)).await.map_err(|_| Outcome::NotAttempted)?;
                let amount = i64::try_from(self.rng.between(1, 20)).unwrap_or(1) * 100;
                // What the invoice still owes is credited first; the rest goes back to the customer.
                let post = (amount - current.amount_remaining).max(0);
                let (refund, credit) = if self.rng.chance(0.5) { (post, 0) } else { (0, post) };
                let key = self.key();
                let note =
                    until_answered(|| api.credit_note(&invoice, amount, refund, credit, Some(&key))).await?;
                self.book.notes.push(note.id);
                Ok(())
            }
            Operation::VoidCreditNote => {
                let Some(note) = self.book.notes.pop() else { return Err(Outcome::NotAttempted) };
                let key = self.key();
                until_answered(|| api.void_credit_note(&note, Some(&key))).await.map(|_| ())
            }
            Operation::PayDefault | Operation::Void | Operation::PayOutOfBand => {
                let Some(invoice) = self.book.with_default.pop() else { return Err(Outcome::NotAttempted) };
                let key = self.key();
                let answer = match operation {
                    Operation::PayDefault => until_answered(|| api.pay(&invoice, Some(&key))).await,
                    Operation::Void => until_answered(|| api.void(&invoice, Some(&key))).await,
                    _ => until_answered(|| api.pay_out_of_band(&invoice, Some(&key))).await,
                };
                answer.map(|_| ())
            }
        }
    }
}
