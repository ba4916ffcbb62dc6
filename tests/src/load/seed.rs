//! Bulk seeding for the growth scenario. Creating 10⁶ invoices through the API would take hours,
//! so a few template invoices are made through the API (real documents: lines, invoice items,
//! numbers, amounts, finalization) and read back with the invoices crate's store functions; then
//! copies with fresh ids, numbers and customers are written with the store's bulk inserts
//! (`insert_many`: the same projections as `insert`, many rows per statement) straight into the
//! invoices database, so every projected column and document is what the service would have written.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use settle_invoices::domain::numbering::{customer_prefix, invoice_number};
use settle_invoices::store::{invoice_items, invoice_lines, invoices};
use settle_platform::Scope;
use settle_platform::db::{Backend, Db, PoolSettings};
use settle_platform::ids::IdPrefix;
use settle_proto::settle::invoices::v1 as pb;

use super::ops::Clients;
use super::progress;
use crate::rng::Rng;

/// Invoices of a seeded customer: a listed customer always has full pages.
const INVOICES_PER_CUSTOMER: u64 = 100;
/// Invoices written per transaction.
const BATCH: usize = 2_000;

/// Fixed-width ids packed in one buffer: 10⁶ invoice ids take 25 MB, not the 60 MB of `String`s.
#[derive(Debug, Default)]
pub struct IdTable {
    width: usize,
    bytes: String,
}

impl IdTable {
    pub fn push(&mut self, id: &str) -> anyhow::Result<()> {
        if self.width == 0 {
            self.width = id.len();
        }
        if id.len() != self.width || self.width == 0 {
            bail!("id {id:?} is not {} bytes long like the others", self.width);
        }
        self.bytes.push_str(id);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.bytes.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        self.bytes.get(i * self.width..(i + 1) * self.width)
    }
}

/// The seeded data set so far.
#[derive(Debug, Default)]
pub struct Seeded {
    invoices: IdTable,
    customers: Vec<Arc<str>>,
}

impl Seeded {
    pub fn len(&self) -> usize {
        self.invoices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.invoices.is_empty()
    }

    /// A uniformly drawn seeded invoice.
    pub fn random_invoice(&self, rng: &mut Rng) -> Arc<str> {
        Arc::from(self.invoices.get(rng.index(self.invoices.len().max(1))).unwrap_or_default())
    }

    /// A uniformly drawn seeded customer (each has `INVOICES_PER_CUSTOMER` invoices).
    pub fn random_customer(&self, rng: &mut Rng) -> Arc<str> {
        let pick = rng.index(self.customers.len().max(1));
        self.customers.get(pick).cloned().unwrap_or_else(|| Arc::from("cus_none"))
    }
}

/// A template invoice as stored: the document, and each line with its invoice item.
struct Template {
    invoice: pb::Invoice,
    lines: Vec<(pb::InvoiceLineItem, pb::InvoiceItem)>,
}

/// Grows the invoices database of one run.
pub struct Seeder {
    db: Db,
    /// The account and mode the API key acts in: the seeded invoices are its.
    scope: Scope,
    templates: Vec<Template>,
    seeded: Seeded,
    used_prefixes: HashSet<String>,
    run_id: String,
}

impl Seeder {
    /// Makes the templates through the API and reads them back from `database_url`.
    pub async fn new(
        database_url: &str,
        account: &str,
        clients: &Clients,
        run_id: &str,
    ) -> anyhow::Result<Seeder> {
        let db = Db::connect(database_url, &PoolSettings { max_connections: 4, ..Default::default() })
            .await
            .context("connecting to the invoices database")?;
        // The load tool's keys are test keys.
        let scope = Scope::test(account);
        let customer = format!("cus_{run_id}_template");
        let mut templates = Vec::new();
        // Shapes: open with one, two and three lines, and a paid one (out of band) with two.
        for (lines, paid) in [(1, false), (2, false), (3, false), (2, true)] {
            let id = template_invoice(clients, &customer, lines, paid).await?;
            templates.push(read_template(&db, &scope, &id).await?);
        }
        Ok(Seeder {
            db,
            scope,
            templates,
            seeded: Seeded::default(),
            used_prefixes: HashSet::new(),
            run_id: run_id.into(),
        })
    }

    pub fn seeded(&self) -> &Seeded {
        &self.seeded
    }

    /// Seeds until `size` invoices exist; returns how long writing took.
    pub async fn grow_to(&mut self, size: u64) -> anyhow::Result<Duration> {
        let from = self.seeded.len() as u64;
        if size <= from {
            return Ok(Duration::ZERO);
        }
        let started = Instant::now();
        let added = size - from;
        let customers = added.div_ceil(INVOICES_PER_CUSTOMER).max(1);
        let mut prefixes = Vec::new();
        for k in 0..customers {
            let customer = format!("cus_{}_seed{}", self.run_id, self.seeded.customers.len() as u64 + k);
            prefixes.push((Arc::<str>::from(customer.as_str()), self.free_prefix(&customer)?));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let bar = progress::bar(added, format!("seeding to {size}"));
        // SQLite has one writer; PostgreSQL takes a few transactions at once.
        let writers = match self.db.backend() {
            Backend::Postgres => 2,
            Backend::Sqlite => 1,
        };
        let batches: Vec<(u64, u64)> =
            (0..added).step_by(BATCH).map(|start| (start, (start + BATCH as u64).min(added))).collect();
        let (db, scope, templates, prefixes) = (&self.db, &self.scope, &self.templates, &prefixes);
        let mut writing = futures::stream::iter(batches)
            .map(|(start, end)| async move {
                let copies: Vec<Template> = (start..end)
                    .map(|j| {
                        let (customer, prefix) = &prefixes[(j % customers) as usize];
                        let sequence = (j / customers + 1) as i64;
                        let template = &templates[(j % templates.len() as u64) as usize];
                        // Spread over the past year, newest last, as a real account's history.
                        let created = now - (added - j) as i64 * (31_536_000 / added.max(1) as i64).max(1);
                        copy(template, customer, invoice_number(prefix, sequence), created)
                    })
                    .collect();
                let items: Vec<pb::InvoiceItem> =
                    copies.iter().flat_map(|c| c.lines.iter().map(|(_, item)| item.clone())).collect();
                let lines: Vec<pb::InvoiceLineItem> =
                    copies.iter().flat_map(|c| c.lines.iter().map(|(line, _)| line.clone())).collect();
                let invoices: Vec<pb::Invoice> = copies.into_iter().map(|c| c.invoice).collect();
                let mut tx = db.begin().await?;
                invoice_items::insert_many(&mut tx, scope, &items).await?;
                invoice_lines::insert_many(&mut tx, scope, &lines).await?;
                invoices::insert_many(&mut tx, scope, &invoices).await?;
                let ids: Vec<String> = invoices.into_iter().map(|i| i.id).collect();
                tx.commit().await?;
                anyhow::Ok(ids)
            })
            .buffered(writers);
        while let Some(ids) = writing.next().await {
            let ids = ids.context("writing seeded invoices")?;
            bar.inc(ids.len() as u64);
            for id in ids {
                self.seeded.invoices.push(&id)?;
            }
        }
        drop(writing);
        bar.finish_and_clear();
        self.seeded.customers.extend(prefixes.iter().map(|(customer, _)| customer.clone()));
        // What autovacuum would do after a bulk load: current statistics for the planner.
        sqlx::query("ANALYZE").execute(self.db.pool()).await.context("ANALYZE after seeding")?;
        Ok(started.elapsed())
    }

    /// Invoices in the database now (seeded plus whatever the workload created).
    pub async fn count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM invoices")
            .fetch_one(self.db.pool())
            .await?)
    }

    /// The customer's invoice prefix, derived as the service derives it, skipping prefixes another
    /// seeded customer holds (as the service skips taken ones).
    fn free_prefix(&mut self, customer: &str) -> anyhow::Result<String> {
        for attempt in 0..16 {
            let prefix = customer_prefix(self.scope.account(), customer, attempt);
            if self.used_prefixes.insert(prefix.clone()) {
                return Ok(prefix);
            }
        }
        bail!("no free invoice prefix for {customer}")
    }
}

/// A copy of `template` for `customer`: new ids for the invoice, its items and lines, and every
/// reference between them rewritten.
fn copy(template: &Template, customer: &Arc<str>, number: String, created: i64) -> Template {
    let mut invoice = template.invoice.clone();
    let old_id = std::mem::replace(&mut invoice.id, IdPrefix::Invoice.generate());
    invoice.customer = customer.to_string();
    invoice.number = Some(number);
    invoice.created = created;
    for url in [&mut invoice.hosted_invoice_url, &mut invoice.invoice_pdf].into_iter().flatten() {
        *url = url.replace(&old_id, &invoice.id);
    }
    let lines = template
        .lines
        .iter()
        .map(|(line, item)| {
            let mut item = item.clone();
            item.id = IdPrefix::InvoiceItem.generate();
            item.invoice = Some(invoice.id.clone());
            item.customer = customer.to_string();
            item.date = created;
            let mut line = line.clone();
            line.id = IdPrefix::InvoiceLine.generate();
            line.invoice = Some(invoice.id.clone());
            if let Some(parent) = line.parent.as_mut().and_then(|p| p.invoice_item_details.as_mut()) {
                parent.invoice_item = item.id.clone();
            }
            (line, item)
        })
        .collect();
    Template { invoice, lines }
}

/// One template invoice made through the API: `lines` lines, finalized, paid out of band if `paid`.
async fn template_invoice(
    clients: &Clients,
    customer: &str,
    lines: usize,
    paid: bool,
) -> anyhow::Result<String> {
    let mut own = clients.clone();
    let key = own.key();
    let draft = own.create_draft(customer, &key).await?.id;
    let mut api = own.invoices();
    let params = (0..lines)
        .map(|i| pb::InvoiceLineParams {
            amount: Some(1_500 * (i as i64 + 1)),
            description: Some(format!("Seeded service line {}", i + 1)),
            ..Default::default()
        })
        .collect();
    let add = pb::AddLinesRequest { id: draft.clone(), lines: params, ..Default::default() };
    api.add_lines(clients.request(add, Some(&clients.key()))).await?;
    let finalize = pb::FinalizeInvoiceRequest { id: draft.clone(), ..Default::default() };
    api.finalize_invoice(clients.request(finalize, Some(&clients.key()))).await?;
    if paid {
        let pay =
            pb::PayInvoiceRequest { id: draft.clone(), paid_out_of_band: Some(true), ..Default::default() };
        api.pay_invoice(clients.request(pay, Some(&clients.key()))).await?;
    }
    Ok(draft)
}

async fn read_template(db: &Db, scope: &Scope, id: &str) -> anyhow::Result<Template> {
    let invoice = invoices::find(db.pool(), scope, id).await?.context("template invoice not stored")?;
    let (lines, _) = invoice_lines::first(db.pool(), scope, id, 100).await?;
    let mut with_items = Vec::new();
    for line in lines {
        let item_id = line
            .parent
            .as_ref()
            .and_then(|p| p.invoice_item_details.as_ref())
            .map(|d| d.invoice_item.clone())
            .context("template line without its invoice item")?;
        let item =
            invoice_items::find(db.pool(), scope, &item_id).await?.context("template item not stored")?;
        with_items.push((line, item));
    }
    Ok(Template { invoice, lines: with_items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_table_packs_fixed_width_ids() {
        let mut table = IdTable::default();
        assert!(table.is_empty());
        table.push("in_aaaa").unwrap();
        table.push("in_bbbb").unwrap();
        assert_eq!(
            (table.len(), table.get(0), table.get(1), table.get(2)),
            (2, Some("in_aaaa"), Some("in_bbbb"), None)
        );
        assert!(table.push("in_ccccc").is_err(), "a longer id would corrupt the table");
    }

    #[test]
    fn a_copy_has_new_ids_and_consistent_references() {
        let item = pb::InvoiceItem {
            id: "ii_old".into(),
            invoice: Some("in_old".into()),
            customer: "cus_a".into(),
            ..Default::default()
        };
        let line = pb::InvoiceLineItem {
            id: "il_old".into(),
            invoice: Some("in_old".into()),
            parent: Some(pb::InvoiceLineItemParent {
                invoice_item_details: Some(pb::InvoiceLineItemInvoiceItemParent {
                    invoice_item: "ii_old".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let template = Template {
            invoice: pb::Invoice {
                id: "in_old".into(),
                customer: "cus_a".into(),
                hosted_invoice_url: Some("https://example.test/i/in_old".into()),
                ..Default::default()
            },
            lines: vec![(line, item)],
        };
        let copy = copy(&template, &Arc::from("cus_b"), "ABCD1234-0007".into(), 42);
        let invoice = &copy.invoice;
        assert!(invoice.id.starts_with("in_") && invoice.id != "in_old");
        assert_eq!(
            (invoice.customer.as_str(), invoice.number.as_deref(), invoice.created),
            ("cus_b", Some("ABCD1234-0007"), 42)
        );
        assert_eq!(
            invoice.hosted_invoice_url.as_deref(),
            Some(format!("https://example.test/i/{}", invoice.id).as_str())
        );
        let (line, item) = &copy.lines[0];
        assert_eq!(item.invoice.as_deref(), Some(invoice.id.as_str()));
        assert_eq!(item.customer, "cus_b");
        assert_eq!(line.invoice.as_deref(), Some(invoice.id.as_str()));
        assert_eq!(
            line.parent.as_ref().unwrap().invoice_item_details.as_ref().unwrap().invoice_item,
            item.id
        );
        assert_ne!(line.id, "il_old");
    }
}
