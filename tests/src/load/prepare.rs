//! The untimed set-up of each operation: everything an input needs is created through the API
//! before the clock starts (open invoices with room for the payments planned onto them, succeeded
//! PaymentIntents, attachments to detach or move), so a timed attach is only the attach.
//!
//! Targeting decides what the inputs share: `Spread` gives requests in flight different invoices
//! and customers (uncontended), `HotCustomer` puts everything on one customer, `HotInvoice` puts
//! every payment onto one invoice.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::ceiling;
use super::ops::{Clients, Input, Op, PAYMENT_AMOUNT};
use super::progress;
use super::seed::Seeded;
use crate::rng::Rng;

/// What inputs share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Targeting {
    Spread,
    HotCustomer,
    HotInvoice,
}

/// Payments (or credit notes) each invoice gets when they are spread.
const PAYMENTS_PER_INVOICE: usize = 8;
/// The total of an invoice created to be paid, read or listed.
const INVOICE_TOTAL: i64 = 10_000;
/// Customers whose invoices are listed, and the invoices each gets (a full page of 10).
const LIST_CUSTOMERS: usize = 16;
const INVOICES_PER_LIST_CUSTOMER: usize = 10;

/// Invoices to read and customers to list, created once per preparer.
struct Catalog {
    invoices: Vec<Arc<str>>,
    customers: Vec<Arc<str>>,
}

/// Prepares inputs for plans of one targeting.
pub struct Preparer {
    clients: Clients,
    targeting: Targeting,
    customers: Vec<Arc<str>>,
    /// Parallel set-up calls.
    parallelism: usize,
    catalog: OnceCell<Catalog>,
    rng: Rng,
}

impl Targeting {
    pub fn name(self) -> &'static str {
        match self {
            Targeting::Spread => "spread",
            Targeting::HotCustomer => "one customer",
            Targeting::HotInvoice => "one invoice",
        }
    }
}

impl Preparer {
    /// `run_id` keeps this run's customers apart from any other run's on the same services;
    /// `width` is the most requests the phases will have in flight.
    pub fn new(clients: Clients, targeting: Targeting, run_id: &str, width: usize, rng: Rng) -> Preparer {
        let customers = match targeting {
            Targeting::Spread => {
                (0..(4 * width).max(64)).map(|k| Arc::from(format!("cus_{run_id}_{k}"))).collect()
            }
            Targeting::HotCustomer => vec![Arc::from(format!("cus_{run_id}_hot"))],
            Targeting::HotInvoice => vec![Arc::from(format!("cus_{run_id}_hotinvoice"))],
        };
        Preparer {
            clients,
            targeting,
            customers,
            parallelism: width.clamp(8, 64),
            catalog: OnceCell::new(),
            rng,
        }
    }

    pub fn targeting(&self) -> Targeting {
        self.targeting
    }

    /// The inputs of `plan`, in its order. With `seeded` (growth), reads and lists go to the seeded
    /// data set.
    pub async fn inputs(&mut self, plan: &[Op], seeded: Option<&Seeded>) -> anyhow::Result<Vec<Input>> {
        let mut per_op: Vec<VecDeque<Input>> = (0..Op::COUNT).map(|_| VecDeque::new()).collect();
        for op in Op::all() {
            let count = plan.iter().filter(|o| **o == op).count();
            if count > 0 {
                let inputs = self
                    .prepare(op, count, seeded)
                    .await
                    .with_context(|| format!("preparing {}", op.name()))?;
                per_op[op.index()] = inputs.into();
            }
        }
        Ok(plan.iter().filter_map(|op| per_op[op.index()].pop_front()).collect())
    }

    fn customer(&self, i: usize) -> Arc<str> {
        self.customers[i % self.customers.len()].clone()
    }

    /// How many invoices `count` payments (or credit notes) are spread over: one when the invoice
    /// is hot; else a few per invoice, as invoices paid in parts have, and never so few invoices
    /// that requests in flight share one.
    fn width(&self, count: usize) -> usize {
        match self.targeting {
            Targeting::HotInvoice => 1,
            _ => count.div_ceil(PAYMENTS_PER_INVOICE).max(count.min(2 * self.parallelism)).max(1),
        }
    }

    async fn prepare(&mut self, op: Op, count: usize, seeded: Option<&Seeded>) -> anyhow::Result<Vec<Input>> {
        Ok(match op {
            Op::Noop => vec![Input::Noop; count],
            Op::SelectOne => vec![Input::SelectOne; count],
            // Consecutive rows: requests in flight lock different rows.
            Op::AttachShaped => {
                (0..count).map(|i| Input::AttachShaped { row: (i as u32) % ceiling::ROWS }).collect()
            }
            Op::Create => (0..count).map(|i| Input::Create { customer: self.customer(i) }).collect(),
            Op::CreateFinalize => (0..count)
                .map(|i| Input::CreateFinalize { customer: self.customer(i), amount: INVOICE_TOTAL })
                .collect(),
            Op::Intent => (0..count).map(|i| Input::Intent { customer: self.customer(i) }).collect(),
            Op::Attach => {
                let (invoices, intents) = self.payments_onto_invoices(count, false, "attach").await?;
                intents
                    .into_iter()
                    .enumerate()
                    .map(|(i, intent)| Input::Attach {
                        invoice: invoices[i % invoices.len()].clone(),
                        intent,
                    })
                    .collect()
            }
            Op::Detach => {
                let (invoices, intents) = self.payments_onto_invoices(count, true, "detach").await?;
                intents
                    .into_iter()
                    .enumerate()
                    .map(|(i, intent)| Input::Detach {
                        invoice: invoices[i % invoices.len()].clone(),
                        intent,
                    })
                    .collect()
            }
            Op::Reapply => {
                let (_, intents) = self.payments_onto_invoices(count, true, "reapply (from)").await?;
                // Targets with room for the payments moved onto them, of the same customers.
                let targets = self.invoices_with_room(count, "reapply (to)").await?;
                intents
                    .into_iter()
                    .enumerate()
                    .map(|(i, intent)| Input::Reapply {
                        invoice: targets[i % targets.len()].0.clone(),
                        intent,
                    })
                    .collect()
            }
            Op::Pay => {
                let invoices = self.open_invoices(count, "pay").await?;
                invoices.into_iter().map(|invoice| Input::Pay { invoice }).collect()
            }
            Op::Read => match seeded {
                Some(seeded) => (0..count)
                    .map(|_| Input::Read { invoice: seeded.random_invoice(&mut self.rng) })
                    .collect(),
                None => {
                    let len = self.catalog().await?.invoices.len();
                    let picks: Vec<usize> = (0..count).map(|_| self.rng.index(len)).collect();
                    let catalog = self.catalog().await?;
                    picks.into_iter().map(|k| Input::Read { invoice: catalog.invoices[k].clone() }).collect()
                }
            },
            Op::List => match seeded {
                Some(seeded) => (0..count)
                    .map(|_| Input::List { customer: seeded.random_customer(&mut self.rng) })
                    .collect(),
                None => {
                    let catalog = self.catalog().await?;
                    (0..count)
                        .map(|i| Input::List {
                            customer: catalog.customers[i % catalog.customers.len()].clone(),
                        })
                        .collect()
                }
            },
            Op::CreditNote => {
                let invoices = self.paid_invoices(count, "credit_note").await?;
                (0..count)
                    .map(|i| Input::CreditNote {
                        invoice: invoices[i % invoices.len()].clone(),
                        amount: PAYMENT_AMOUNT,
                    })
                    .collect()
            }
        })
    }

    /// Invoices paid in full by one PaymentIntent each, that take `count` credit notes of
    /// `PAYMENT_AMOUNT` (each refunded) spread round-robin over them: every note fits what is left
    /// to credit and to refund.
    async fn paid_invoices(&self, count: usize, label: &str) -> anyhow::Result<Vec<Arc<str>>> {
        let width = self.width(count);
        let clients = self.clients.clone();
        let customers = self.customers.clone();
        parallel(width, self.parallelism, &format!("{label}: paid invoices"), |j| {
            let total = (count - j).div_ceil(width) as i64 * PAYMENT_AMOUNT;
            let (mut clients, customer) = (clients.clone(), customers[j % customers.len()].clone());
            async move {
                let invoice = clients.create_open_invoice(&customer, total).await?;
                let intent = clients.succeeded_intent(&customer, total).await?;
                clients.attach(&invoice.id, &intent.id).await.result.context("paying beforehand")?;
                Ok(Arc::from(invoice.id))
            }
        })
        .await
    }

    /// The read and list catalog, created on first use.
    async fn catalog(&self) -> anyhow::Result<&Catalog> {
        self.catalog
            .get_or_try_init(|| async {
                let customers: Vec<Arc<str>> =
                    (0..LIST_CUSTOMERS.min(self.customers.len())).map(|k| self.customer(k)).collect();
                let count = customers.len() * INVOICES_PER_LIST_CUSTOMER;
                let clients = self.clients.clone();
                let owners = customers.clone();
                let invoices =
                    parallel(count, self.parallelism, "catalog: invoices", |i| {
                        let (mut clients, customer) = (clients.clone(), owners[i % owners.len()].clone());
                        async move {
                            Ok(Arc::from(clients.create_open_invoice(&customer, INVOICE_TOTAL).await?.id))
                        }
                    })
                    .await?;
                anyhow::Ok(Catalog { invoices, customers })
            })
            .await
    }

    /// `count` open invoices of `INVOICE_TOTAL`, one per input.
    async fn open_invoices(&self, count: usize, label: &str) -> anyhow::Result<Vec<Arc<str>>> {
        let clients = self.clients.clone();
        let customers = self.customers.clone();
        parallel(count, self.parallelism, &format!("{label}: invoices"), |i| {
            let (mut clients, customer) = (clients.clone(), customers[i % customers.len()].clone());
            async move { Ok(Arc::from(clients.create_open_invoice(&customer, INVOICE_TOTAL).await?.id)) }
        })
        .await
    }

    /// Open invoices (with their customers) that take `count` payments spread round-robin over them,
    /// with one payment's worth of room to spare, so none becomes paid.
    async fn invoices_with_room(
        &self,
        count: usize,
        label: &str,
    ) -> anyhow::Result<Vec<(Arc<str>, Arc<str>)>> {
        let width = self.width(count);
        let clients = self.clients.clone();
        let customers = self.customers.clone();
        parallel(width, self.parallelism, &format!("{label}: invoices"), |j| {
            let payments = (count - j).div_ceil(width) as i64;
            let (mut clients, customer) = (clients.clone(), customers[j % customers.len()].clone());
            async move {
                let invoice = clients.create_open_invoice(&customer, (payments + 1) * PAYMENT_AMOUNT).await?;
                Ok((Arc::from(invoice.id), customer))
            }
        })
        .await
    }

    /// Invoices with room and one succeeded PaymentIntent per input (the i-th for invoice i mod
    /// width's customer), attached to that invoice when `attached`.
    async fn payments_onto_invoices(
        &self,
        count: usize,
        attached: bool,
        label: &str,
    ) -> anyhow::Result<(Vec<Arc<str>>, Vec<Arc<str>>)> {
        let invoices = self.invoices_with_room(count, label).await?;
        let width = invoices.len();
        let clients = self.clients.clone();
        let shared = Arc::new(invoices);
        let targets = shared.clone();
        let intents = parallel(count, self.parallelism, &format!("{label}: payments"), |i| {
            let mut clients = clients.clone();
            let (invoice, customer) = targets[i % width].clone();
            async move {
                let intent: Arc<str> =
                    Arc::from(clients.succeeded_intent(&customer, PAYMENT_AMOUNT).await?.id);
                if attached {
                    clients.attach(&invoice, &intent).await.result.context("attaching beforehand")?;
                }
                Ok(intent)
            }
        })
        .await?;
        Ok((shared.iter().map(|(invoice, _)| invoice.clone()).collect(), intents))
    }
}

/// Runs `task(0..n)` with at most `parallelism` at once behind a progress bar; results in index
/// order, the first error ends it.
pub async fn parallel<T, F, Fut>(n: usize, parallelism: usize, label: &str, task: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let bar = progress::bar(n as u64, label.to_owned());
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut running = futures::stream::iter(0..n)
        .map(|i| {
            let work = task(i);
            async move { (i, work.await) }
        })
        .buffer_unordered(parallelism.max(1));
    while let Some((i, result)) = running.next().await {
        results[i] = Some(result.with_context(|| format!("{label} #{i}"))?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(results.into_iter().flatten().collect())
}
