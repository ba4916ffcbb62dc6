//! Scenarios as sequences of phases. A phase prepares its inputs (untimed), warms up (not
//! recorded), then runs its mix for `--count` requests or `--duration`. Every scenario measures the
//! ceilings under the same load first, and its figures are divided by those.
//!
//! - `uncontended`: each operation alone (capacity figures, judged against the budgets), then the mix;
//!   requests in flight touch different invoices and customers.
//! - `hot-customer`: the same on one customer.
//! - `hot-invoice`: 64 concurrent attaches spread over invoices, then onto one invoice.
//! - `growth`: the growth mix at each data-set size (10³ → 10⁶ invoices, seeded in bulk).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::budget::{self, CEILING_BUDGETS, Check, Metric};
use super::driver::{self, Load};
use super::mix::Mix;
use super::ops::{Clients, Op};
use super::prepare::{Preparer, Targeting};
use super::report;
use super::seed::{Seeded, Seeder};
use super::stats::{OpSummary, Percentiles, Recorder};
use crate::rng::Rng;

/// The scenarios, in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    Uncontended,
    HotInvoice,
    HotCustomer,
    Growth,
    All,
}

impl ScenarioName {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioName::Uncontended => "uncontended",
            ScenarioName::HotInvoice => "hot-invoice",
            ScenarioName::HotCustomer => "hot-customer",
            ScenarioName::Growth => "growth",
            ScenarioName::All => "all",
        }
    }

    /// `all` expanded, duplicates dropped, in the canonical order.
    pub fn expand(names: &[ScenarioName]) -> Vec<ScenarioName> {
        use ScenarioName::*;
        [Uncontended, HotInvoice, HotCustomer, Growth]
            .into_iter()
            .filter(|s| names.contains(s) || names.contains(&All))
            .collect()
    }
}

/// How much each phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    Count(usize),
    Duration(#[serde(with = "seconds")] Duration),
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// What every phase of the run shares.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub scenarios: Vec<ScenarioName>,
    pub load: Load,
    /// Concurrent attaches of the hot-invoice scenario.
    pub hot_concurrency: usize,
    pub amount: Amount,
    /// Requests run before each phase's measurement, not recorded.
    pub warmup: usize,
    /// Most inputs prepared for one phase round.
    pub max_ops: usize,
    #[serde(serialize_with = "as_text")]
    pub mix: Mix,
    #[serde(serialize_with = "as_text")]
    pub growth_mix: Mix,
    /// Operations run alone (capacity figures).
    pub solo: Vec<Op>,
    pub sizes: Vec<u64>,
}

fn as_text<S: serde::Serializer>(mix: &Mix, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mix.to_string())
}

/// What a phase was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    Ceiling,
    Solo,
    Mix,
    Size,
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub name: String,
    pub kind: PhaseKind,
    pub mix: String,
    pub load: Load,
    pub targeting: Targeting,
    /// Growth: invoices in the database while it ran.
    pub size: Option<u64>,
    /// Timed seconds (warm-up and preparation excluded).
    pub seconds: f64,
    pub ops: Vec<OpSummary>,
    /// Open loop: how late requests started against their schedule.
    pub start_lag: Option<Percentiles>,
    /// Latency percentile spectrum per operation: (percentile, µs).
    pub spectrum: Vec<(Op, Vec<(f64, u64)>)>,
}

impl PhaseResult {
    pub fn op(&self, op: Op) -> Option<&OpSummary> {
        self.ops.iter().find(|s| s.op == op)
    }

    pub fn errors(&self) -> u64 {
        self.ops.iter().map(|s| s.errors).sum()
    }
}

/// One scenario's phases and budget checks.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: ScenarioName,
    pub phases: Vec<PhaseResult>,
    pub checks: Vec<Check>,
}

impl ScenarioResult {
    /// The ceiling phase of `op` under `load` (every scenario measures its own or reuses the run's).
    pub fn ceiling(&self, op: Op, load: &Load) -> Option<&OpSummary> {
        self.phases.iter().filter(|p| p.kind == PhaseKind::Ceiling && p.load == *load).find_map(|p| p.op(op))
    }
}

/// Runs scenarios against one set of services.
pub struct Runner {
    settings: Settings,
    clients: Clients,
    run_id: String,
    rng: Rng,
    /// Ceilings measured so far, per load.
    ceilings: Vec<PhaseResult>,
    invoices_database_url: Option<String>,
    account: String,
}

impl Runner {
    pub fn new(
        settings: Settings,
        clients: Clients,
        run_id: String,
        rng: Rng,
        invoices_database_url: Option<String>,
        account: String,
    ) -> Runner {
        Runner { settings, clients, run_id, rng, ceilings: Vec::new(), invoices_database_url, account }
    }

    pub async fn run(&mut self, scenario: ScenarioName) -> anyhow::Result<ScenarioResult> {
        report::scenario_header(scenario);
        let result = match scenario {
            ScenarioName::Uncontended => self.capacity(scenario, Targeting::Spread, true).await,
            ScenarioName::HotCustomer => self.capacity(scenario, Targeting::HotCustomer, false).await,
            ScenarioName::HotInvoice => self.hot_invoice().await,
            ScenarioName::Growth => self.growth().await,
            ScenarioName::All => anyhow::bail!("`all` is expanded before running"),
        };
        result.with_context(|| format!("scenario {}", scenario.name()))
    }

    fn preparer(&mut self, targeting: Targeting, width: usize) -> Preparer {
        let rng = self.rng.split();
        Preparer::new(self.clients.clone(), targeting, &self.run_id, width, rng)
    }

    /// Ceilings under `load`, measured once per run and load.
    async fn ceilings(&mut self, load: Load) -> anyhow::Result<Vec<PhaseResult>> {
        if !self.ceilings.iter().any(|p| p.load == load) {
            let mut preparer = self.preparer(Targeting::Spread, load.width());
            for op in [Op::Noop, Op::SelectOne, Op::AttachShaped] {
                let phase = self
                    .phase(
                        format!("ceiling {}", op.name()),
                        PhaseKind::Ceiling,
                        &Mix::solo(op),
                        load,
                        &mut preparer,
                        None,
                    )
                    .await?;
                self.ceilings.push(phase);
            }
        }
        Ok(self.ceilings.iter().filter(|p| p.load == load).cloned().collect())
    }

    /// Ceilings, each operation alone, then the mix. With `judge`, the budgets against the
    /// ceilings are checked.
    async fn capacity(
        &mut self,
        scenario: ScenarioName,
        targeting: Targeting,
        judge: bool,
    ) -> anyhow::Result<ScenarioResult> {
        let load = self.settings.load;
        let mut phases = self.ceilings(load).await?;
        let mut preparer = self.preparer(targeting, load.width());
        for op in self.settings.solo.clone() {
            let phase = self
                .phase(
                    format!("{} alone", op.name()),
                    PhaseKind::Solo,
                    &Mix::solo(op),
                    load,
                    &mut preparer,
                    None,
                )
                .await?;
            phases.push(phase);
        }
        let mix = self.settings.mix.clone();
        phases.push(self.phase("mix".to_owned(), PhaseKind::Mix, &mix, load, &mut preparer, None).await?);
        let mut result = ScenarioResult { scenario, phases, checks: Vec::new() };
        if judge {
            result.checks = ceiling_checks(&result, &load);
        }
        report::checks(&result.checks);
        Ok(result)
    }

    /// Attaches spread over invoices, then onto one invoice, at the hot concurrency.
    async fn hot_invoice(&mut self) -> anyhow::Result<ScenarioResult> {
        let load = match self.settings.load {
            Load::Closed { .. } => Load::Closed { concurrency: self.settings.hot_concurrency },
            open => open,
        };
        let mut phases = self.ceilings(load).await?;
        let attach = Mix::solo(Op::Attach);
        let mut spread = self.preparer(Targeting::Spread, load.width());
        phases.push(
            self.phase("attach, spread".into(), PhaseKind::Solo, &attach, load, &mut spread, None).await?,
        );
        let mut hot = self.preparer(Targeting::HotInvoice, load.width());
        phases.push(
            self.phase("attach, one invoice".into(), PhaseKind::Solo, &attach, load, &mut hot, None).await?,
        );
        let throughput = |phase: &PhaseResult| phase.op(Op::Attach).map_or(0.0, |s| s.throughput);
        let (spread, hot) = (&phases[phases.len() - 2], &phases[phases.len() - 1]);
        let mut checks = Vec::new();
        if matches!(load, Load::Closed { .. }) {
            checks.push(Check::new(
                format!("attach throughput, one invoice / spread ({} in flight)", load.width()),
                budget::ratio(throughput(hot), throughput(spread)),
                budget::HOT_INVOICE,
            ));
        }
        report::checks(&checks);
        Ok(ScenarioResult { scenario: ScenarioName::HotInvoice, phases, checks })
    }

    /// The growth mix at each data-set size.
    async fn growth(&mut self) -> anyhow::Result<ScenarioResult> {
        let load = self.settings.load;
        let url = self.invoices_database_url.clone().context(
            "the growth scenario seeds the invoices database: start the services here, or give --invoices-database-url",
        )?;
        let mut phases = self.ceilings(load).await?;
        let mut seeder = Seeder::new(&url, &self.account, &self.clients, &self.run_id).await?;
        let mut preparer = self.preparer(Targeting::Spread, load.width());
        let mix = self.settings.growth_mix.clone();
        for size in self.settings.sizes.clone() {
            let took = seeder.grow_to(size).await?;
            let rows = seeder.count().await?;
            report::note(&format!(
                "seeded {} invoices ({rows} in the database) in {:.1} s",
                seeder.seeded().len(),
                took.as_secs_f64()
            ));
            let mut phase = self
                .phase(
                    format!("{size} invoices"),
                    PhaseKind::Size,
                    &mix,
                    load,
                    &mut preparer,
                    Some(seeder.seeded()),
                )
                .await?;
            phase.size = Some(u64::try_from(rows).unwrap_or(size));
            phases.push(phase);
        }
        let checks = growth_checks(&phases);
        report::growth_table(&phases);
        report::checks(&checks);
        Ok(ScenarioResult { scenario: ScenarioName::Growth, phases, checks })
    }

    /// One phase: warm-up, then the measured rounds.
    async fn phase(
        &mut self,
        name: String,
        kind: PhaseKind,
        mix: &Mix,
        load: Load,
        preparer: &mut Preparer,
        seeded: Option<&Seeded>,
    ) -> anyhow::Result<PhaseResult> {
        let settings = &self.settings;
        let mut plan_rng = self.rng.split();
        let mut schedule_rng = self.rng.split();
        let ceiling_clients = self.clients.clone();

        // Warm-up: same inputs and load, thrown away; it also tells how many inputs a duration needs.
        let warm = Arc::new(Recorder::default());
        let mut rate_estimate = None;
        if settings.warmup > 0 {
            let plan = mix.plan(settings.warmup, &mut plan_rng);
            let inputs = Arc::new(preparer.inputs(&plan, seeded).await?);
            let follow = report::follow(&name, "warm-up", inputs.len(), &warm);
            let timing = driver::drive(inputs, load, &ceiling_clients, &warm, None, &mut schedule_rng).await;
            drop(follow);
            rate_estimate = Some(timing.executed as f64 / timing.elapsed.as_secs_f64().max(1e-3));
        }

        let recorder = Arc::new(Recorder::default());
        let mut timed = Duration::ZERO;
        let rounds = match settings.amount {
            Amount::Count(_) => 1,
            Amount::Duration(_) => 4,
        };
        for round in 0..rounds {
            let (n, stop_at_after) = match settings.amount {
                Amount::Count(n) => (n, None),
                Amount::Duration(total) => {
                    let remaining = total.saturating_sub(timed);
                    if remaining < total / 50 || (round > 0 && remaining < Duration::from_millis(500)) {
                        break;
                    }
                    let rate = match load {
                        Load::Open { rate, .. } => rate,
                        // Closed loop: the warm-up's rate with room to spare; a short round is topped up.
                        Load::Closed { concurrency } => {
                            rate_estimate.unwrap_or(1000.0) * 1.25
                                + concurrency as f64 / remaining.as_secs_f64()
                        }
                    };
                    ((rate * remaining.as_secs_f64()).ceil() as usize + load.width(), Some(remaining))
                }
            };
            let n = n.clamp(1, settings.max_ops);
            let plan = mix.plan(n, &mut plan_rng);
            let inputs = Arc::new(preparer.inputs(&plan, seeded).await?);
            let follow = report::follow(&name, "measuring", inputs.len(), &recorder);
            let stop_at = stop_at_after.map(|after| Instant::now() + after);
            let timing =
                driver::drive(inputs, load, &ceiling_clients, &recorder, stop_at, &mut schedule_rng).await;
            drop(follow);
            timed += timing.elapsed;
            if timing.executed > 0 {
                rate_estimate = Some(timing.executed as f64 / timing.elapsed.as_secs_f64().max(1e-3));
            }
        }
        let ops = recorder.summarize(timed);
        let spectrum = ops.iter().map(|s| (s.op, recorder.spectrum(s.op))).collect();
        let phase = PhaseResult {
            name,
            kind,
            mix: mix.to_string(),
            load,
            targeting: preparer.targeting(),
            size: None,
            seconds: timed.as_secs_f64(),
            ops,
            start_lag: recorder.start_lag(),
            spectrum,
        };
        let ceilings: Vec<PhaseResult> = self.ceilings.iter().filter(|p| p.load == load).cloned().collect();
        report::phase(&phase, &ceilings);
        Ok(phase)
    }
}

/// The guide's budgets for operations run alone, against the ceilings under the same load.
/// Throughput budgets need a closed loop (an open loop runs at the rate it is given).
pub fn ceiling_checks(result: &ScenarioResult, load: &Load) -> Vec<Check> {
    let mut checks = Vec::new();
    for budget in CEILING_BUDGETS {
        let solo = result
            .phases
            .iter()
            .filter(|p| p.kind == PhaseKind::Solo && p.load == *load)
            .find_map(|p| p.op(budget.op));
        let (Some(solo), Some(ceiling)) = (solo, result.ceiling(budget.ceiling, load)) else { continue };
        let (value, reference) = match budget.metric {
            Metric::Throughput if matches!(load, Load::Open { .. }) => continue,
            Metric::Throughput => (solo.throughput, ceiling.throughput),
            Metric::P99 => (solo.latency.p99_us as f64, ceiling.latency.p99_us as f64),
        };
        let metric = match budget.metric {
            Metric::Throughput => "throughput",
            Metric::P99 => "p99",
        };
        checks.push(Check::new(
            format!("{} {metric} / {}", budget.op.name(), budget.ceiling.name()),
            budget::ratio(value, reference),
            budget.bound,
        ));
    }
    checks
}

/// p99 of each operation at every size against the smallest size.
pub fn growth_checks(phases: &[PhaseResult]) -> Vec<Check> {
    let sizes: Vec<&PhaseResult> = phases.iter().filter(|p| p.kind == PhaseKind::Size).collect();
    let Some(first) = sizes.first() else { return Vec::new() };
    let mut checks = Vec::new();
    for base in &first.ops {
        for phase in &sizes[1..] {
            if let Some(at) = phase.op(base.op) {
                checks.push(Check::new(
                    format!(
                        "{} p99 at {} / at {} invoices",
                        base.op.name(),
                        phase.size.unwrap_or(0),
                        first.size.unwrap_or(0)
                    ),
                    budget::ratio(at.latency.p99_us as f64, base.latency.p99_us as f64),
                    budget::GROWTH_P99,
                ));
            }
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::budget::Verdict;
    use crate::load::stats::OpSummary;
    use hdrhistogram::Histogram;

    fn summary(op: Op, throughput_ops: u64, p99_ms: u64) -> OpSummary {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        histogram.record_n(p99_ms * 1000, throughput_ops).unwrap();
        OpSummary::of(op, &histogram, 0, 0, Vec::new(), Duration::from_secs(1))
    }

    fn phase(kind: PhaseKind, size: Option<u64>, ops: Vec<OpSummary>) -> PhaseResult {
        PhaseResult {
            name: "p".into(),
            kind,
            mix: String::new(),
            load: Load::Closed { concurrency: 16 },
            targeting: Targeting::Spread,
            size,
            seconds: 1.0,
            ops,
            start_lag: None,
            spectrum: Vec::new(),
        }
    }

    #[test]
    fn expands_all_in_canonical_order_without_duplicates() {
        use ScenarioName::*;
        assert_eq!(ScenarioName::expand(&[Growth, Uncontended, Growth]), vec![Uncontended, Growth]);
        assert_eq!(ScenarioName::expand(&[All]), vec![Uncontended, HotInvoice, HotCustomer, Growth]);
    }

    #[test]
    fn judges_solo_operations_against_the_ceilings_of_the_same_load() {
        let load = Load::Closed { concurrency: 16 };
        let result = ScenarioResult {
            scenario: ScenarioName::Uncontended,
            phases: vec![
                phase(PhaseKind::Ceiling, None, vec![summary(Op::AttachShaped, 1000, 10)]),
                phase(PhaseKind::Solo, None, vec![summary(Op::Attach, 400, 25)]),
                phase(PhaseKind::Solo, None, vec![summary(Op::Detach, 200, 40)]),
            ],
            checks: Vec::new(),
        };
        let checks = ceiling_checks(&result, &load);
        let find = |what: &str| checks.iter().find(|c| c.what == what).unwrap();
        assert_eq!(find("attach throughput / attach_shaped").verdict, Verdict::Pass);
        assert_eq!(find("attach p99 / attach_shaped").verdict, Verdict::Pass);
        assert_eq!(find("detach throughput / attach_shaped").verdict, Verdict::Short);
        assert_eq!(find("detach p99 / attach_shaped").verdict, Verdict::Short);
        assert!(checks.iter().all(|c| !c.what.starts_with("read")), "no read phase, no read check");
        assert!(ceiling_checks(&result, &Load::Closed { concurrency: 64 }).is_empty());
    }

    #[test]
    fn growth_compares_every_size_with_the_smallest() {
        let phases = vec![
            phase(PhaseKind::Ceiling, None, vec![summary(Op::Noop, 10, 1)]),
            phase(PhaseKind::Size, Some(1_000), vec![summary(Op::Read, 10, 10)]),
            phase(PhaseKind::Size, Some(10_000), vec![summary(Op::Read, 10, 12)]),
            phase(PhaseKind::Size, Some(100_000), vec![summary(Op::Read, 10, 14)]),
        ];
        let checks = growth_checks(&phases);
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].verdict, Verdict::Pass);
        assert_eq!(checks[1].verdict, Verdict::Short);
        assert_eq!(checks[1].what, "read p99 at 100000 / at 1000 invoices");
    }
}
