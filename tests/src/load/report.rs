//! What the tool prints (stdout: one table per phase as it ends, then the budgets) and writes to
//! the results folder (`summary.json` and the latency plots). Every figure is shown with its ratio
//! to the ceiling of its kind measured under the same load in the same run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;

use super::budget::{self, Check, Verdict};
use super::ops::{Kind, Op};
use super::progress::{self, Follow};
use super::scenario::{PhaseKind, PhaseResult, ScenarioName, ScenarioResult, Settings};
use super::services::Memory;
use super::stats::{OpSummary, Recorder};
use super::svg::{self, Chart, Series};

pub fn scenario_header(scenario: ScenarioName) {
    println!("\n=== scenario {} ===", scenario.name());
}

pub fn note(text: &str) {
    println!("  {text}");
}

/// A progress bar following `recorder` while a phase stage runs.
pub fn follow(phase: &str, stage: &str, len: usize, recorder: &Arc<Recorder>) -> Follow {
    progress::follow(progress::bar(len as u64, format!("{phase}: {stage}")), recorder.clone())
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn percent(ratio: f64) -> String {
    if ratio.is_finite() { format!("{:.1} %", ratio * 100.0) } else { "—".to_owned() }
}

fn times(ratio: f64) -> String {
    if ratio.is_finite() { format!("{ratio:.2}×") } else { "—".to_owned() }
}

fn ceiling_of(ceilings: &[PhaseResult], op: Op) -> Option<&OpSummary> {
    ceilings.iter().find_map(|p| p.op(op))
}

/// One operation's figures divided by one ceiling's.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub op: Op,
    pub ceiling: Op,
    pub throughput: f64,
    pub p99: f64,
}

fn ratio(summary: &OpSummary, ceiling: &OpSummary) -> Ratio {
    Ratio {
        op: summary.op,
        ceiling: ceiling.op,
        throughput: budget::ratio(summary.throughput, ceiling.throughput),
        p99: budget::ratio(summary.latency.p99_us as f64, ceiling.latency.p99_us as f64),
    }
}

/// Prints a finished phase.
pub fn phase(phase: &PhaseResult, ceilings: &[PhaseResult]) {
    let size = phase.size.map(|s| format!(" · {s} invoices")).unwrap_or_default();
    println!(
        "\n  {} · {} · {} · {:.1} s timed{size}",
        phase.name,
        phase.load.describe(),
        phase.targeting.name(),
        phase.seconds
    );
    println!(
        "    {:<16} {:>8} {:>5} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8}   {:>8} {:>7}  vs",
        "op", "ok", "err", "retry", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "ops/s÷", "p99÷"
    );
    let total: f64 = phase.ops.iter().map(|s| s.throughput).sum();
    for summary in &phase.ops {
        let reference = summary.op.ceiling();
        let (thr, p99) = match ceiling_of(ceilings, reference) {
            Some(ceiling) if summary.op.spec().kind != Kind::Ceiling => {
                let r = ratio(summary, ceiling);
                (percent(r.throughput), times(r.p99))
            }
            _ => ("".to_owned(), "".to_owned()),
        };
        let vs = if thr.is_empty() { "" } else { reference.name() };
        let l = &summary.latency;
        println!(
            "    {:<16} {:>8} {:>5} {:>6} {:>9.1} {:>8} {:>8} {:>8} {:>8}   {:>8} {:>7}  {vs}",
            summary.op.name(),
            summary.ok,
            summary.errors,
            summary.retries,
            summary.throughput,
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.max_us),
            thr,
            p99
        );
    }
    if phase.ops.len() > 1 {
        let shaped = ceiling_of(ceilings, Op::AttachShaped).map(|c| budget::ratio(total, c.throughput));
        println!(
            "    {:<16} {:>31.1}{}",
            "all",
            total,
            shaped.map(|r| format!("   ({} of attach_shaped)", percent(r))).unwrap_or_default()
        );
    }
    if let Some(lag) = &phase.start_lag {
        println!(
            "    started late against the schedule: p50 {} ms, p99 {} ms, max {} ms (counted in the latencies)",
            ms(lag.p50_us),
            ms(lag.p99_us),
            ms(lag.max_us)
        );
    }
    for summary in phase.ops.iter().filter(|s| s.errors > 0) {
        for error in &summary.errors_by_reason {
            println!(
                "    ERROR {}: {} {} × {}",
                summary.op.name(),
                error.code,
                if error.reason.is_empty() { "(no reason)" } else { &error.reason },
                error.count
            );
        }
    }
}

pub fn checks(checks: &[Check]) {
    if checks.is_empty() {
        return;
    }
    println!("\n  budgets:");
    for check in checks {
        let value = match check.bound {
            budget::Bound::AtMost(_) => times(check.ratio),
            _ => percent(check.ratio),
        };
        println!("    {:<56} {:>9}   {:<8} {}", check.what, value, check.budget, check.verdict);
    }
}

/// p99 per operation and size, the growth scenario's table.
pub fn growth_table(phases: &[PhaseResult]) {
    let sizes: Vec<&PhaseResult> = phases.iter().filter(|p| p.kind == PhaseKind::Size).collect();
    let Some(first) = sizes.first() else { return };
    println!("\n  p99 (ms) by invoices in the database:");
    print!("    {:<16}", "op");
    for phase in &sizes {
        print!(" {:>10}", phase.size.unwrap_or(0));
    }
    println!();
    for base in &first.ops {
        print!("    {:<16}", base.op.name());
        for phase in &sizes {
            print!(" {:>10}", phase.op(base.op).map(|s| ms(s.latency.p99_us)).unwrap_or_default());
        }
        println!();
    }
}

/// Idle memory of the started services against the budget.
pub fn memory_checks(memory: &[Memory]) -> Vec<Check> {
    memory
        .iter()
        .map(|m| {
            let mut check = Check::new(
                format!("{} idle RSS {:.1} MiB", m.service, m.idle_rss_kib as f64 / 1024.0),
                budget::ratio(m.idle_rss_kib as f64, budget::IDLE_RSS_KIB as f64),
                budget::Bound::AtMost(1.0),
            );
            check.budget = "≤ 30 MiB".to_owned();
            check
        })
        .collect()
}

pub fn memory(memory: &[Memory]) {
    for m in memory {
        println!(
            "  {:<20} idle RSS {:>6.1} MiB (budget 30 MiB: {}){}",
            m.service,
            m.idle_rss_kib as f64 / 1024.0,
            budget::Bound::AtMost(1.0).judge(m.idle_rss_kib as f64 / budget::IDLE_RSS_KIB as f64),
            m.peak_rss_kib.map(|p| format!(", peak {:.1} MiB", p as f64 / 1024.0)).unwrap_or_default()
        );
    }
}

/// Everything one backend's run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BackendRun {
    pub backend: &'static str,
    /// Started services' memory (absent when targeting running services).
    pub services: Vec<Memory>,
    pub scenarios: Vec<ScenarioResult>,
    /// Ratios of every operation of every phase to every ceiling under the same load.
    pub ratios: Vec<PhaseRatios>,
    pub checks: Vec<Check>,
    pub failed_requests: u64,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseRatios {
    pub scenario: ScenarioName,
    pub phase: String,
    pub ratios: Vec<Ratio>,
}

impl BackendRun {
    pub fn new(
        backend: &'static str,
        services: Vec<Memory>,
        scenarios: Vec<ScenarioResult>,
        error: Option<String>,
    ) -> Self {
        let mut ratios = Vec::new();
        for scenario in &scenarios {
            for phase in &scenario.phases {
                let mut phase_ratios = Vec::new();
                for summary in &phase.ops {
                    for ceiling in [Op::Noop, Op::SelectOne, Op::AttachShaped] {
                        if let Some(c) = scenario.ceiling(ceiling, &phase.load) {
                            phase_ratios.push(ratio(summary, c));
                        }
                    }
                }
                ratios.push(PhaseRatios {
                    scenario: scenario.scenario,
                    phase: phase.name.clone(),
                    ratios: phase_ratios,
                });
            }
        }
        let mut checks = memory_checks(&services);
        checks.extend(scenarios.iter().flat_map(|s| s.checks.iter().cloned()));
        let failed_requests = scenarios.iter().flat_map(|s| &s.phases).map(PhaseResult::errors).sum();
        BackendRun { backend, services, scenarios, ratios, checks, failed_requests, error }
    }
}

/// The JSON summary.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub tool: &'static str,
    pub started_at: String,
    pub seed: u64,
    pub command: Vec<String>,
    pub cores: usize,
    pub settings: &'a Settings,
    pub runs: &'a [BackendRun],
}

/// Prints the closing summary of every backend.
pub fn closing(runs: &[BackendRun]) {
    for run in runs {
        println!("\n=== summary: {} ===", run.backend);
        memory(&run.services);
        let passed = run.checks.iter().filter(|c| c.verdict == Verdict::Pass).count();
        println!("  budgets: {passed} PASS, {} SHORT", run.checks.len() - passed);
        for check in run.checks.iter().filter(|c| c.verdict == Verdict::Short) {
            println!("    SHORT {} ({} for {})", check.what, display_ratio(check), check.budget);
        }
        match run.failed_requests {
            0 => println!("  failed requests: none"),
            n => println!("  failed requests: {n} (listed with ERROR above)"),
        }
        if let Some(error) = &run.error {
            println!("  stopped early: {error}");
        }
    }
}

fn display_ratio(check: &Check) -> String {
    match check.bound {
        budget::Bound::AtMost(_) => times(check.ratio),
        _ => percent(check.ratio),
    }
}

/// Writes `summary.json` and the plots into `out`; returns the files written.
pub fn write(out: &Path, summary: &Summary<'_>) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    let json = out.join("summary.json");
    std::fs::write(&json, serde_json::to_vec_pretty(summary)?)?;
    written.push(json);
    for run in summary.runs {
        for scenario in &run.scenarios {
            for (suffix, chart) in charts(run.backend, scenario) {
                let path =
                    out.join(format!("latency-{}-{}{suffix}.svg", run.backend, scenario.scenario.name()));
                std::fs::write(&path, svg::render(&chart))?;
                written.push(path);
            }
        }
    }
    Ok(written)
}

/// x position of percentile p on the spectrum's log axis: 1 / (1 − p), with 100 % drawn at 99.999.
fn spectrum_x(percentile: f64) -> f64 {
    1.0 / (1.0 - (percentile / 100.0).min(0.99999))
}

fn spectrum_ticks() -> Vec<(f64, String)> {
    [(0.0, "0%"), (90.0, "90%"), (99.0, "99%"), (99.9, "99.9%"), (99.99, "99.99%"), (100.0, "max")]
        .into_iter()
        .map(|(p, label)| (spectrum_x(p), label.to_owned()))
        .collect()
}

fn spectrum_series(label: String, spectrum: &[(f64, u64)], dashed: bool) -> Series {
    Series {
        label,
        points: spectrum.iter().map(|(p, us)| (spectrum_x(*p), *us as f64 / 1000.0)).collect(),
        dashed,
    }
}

/// The charts of one scenario: latency spectra of the operations alone (and of the mix), with the
/// ceilings dashed; for growth, p99 against the data-set size.
fn charts(backend: &str, scenario: &ScenarioResult) -> Vec<(&'static str, Chart)> {
    let ceilings: Vec<Series> = scenario
        .phases
        .iter()
        .filter(|p| p.kind == PhaseKind::Ceiling)
        .flat_map(|p| {
            p.spectrum.iter().map(move |(op, s)| spectrum_series(format!("{} (ceiling)", op.name()), s, true))
        })
        .collect();
    let chart = |title: String, series: Vec<Series>| Chart {
        title,
        x_label: "percentile".into(),
        y_label: "latency (ms)".into(),
        x_ticks: spectrum_ticks(),
        series,
    };
    let mut charts = Vec::new();
    let solo: Vec<Series> = scenario
        .phases
        .iter()
        .filter(|p| p.kind == PhaseKind::Solo)
        .flat_map(|p| p.spectrum.iter().map(move |(_, s)| spectrum_series(p.name.clone(), s, false)))
        .chain(ceilings.iter().map(|s| Series {
            label: s.label.clone(),
            points: s.points.clone(),
            dashed: true,
        }))
        .collect();
    if solo.len() > ceilings.len() {
        charts.push((
            "",
            chart(format!("{backend} · {}: latency by percentile", scenario.scenario.name()), solo),
        ));
    }
    for phase in scenario.phases.iter().filter(|p| p.kind == PhaseKind::Mix) {
        let series = phase
            .spectrum
            .iter()
            .map(|(op, s)| spectrum_series(op.name().to_owned(), s, false))
            .chain(ceilings.iter().map(|s| Series {
                label: s.label.clone(),
                points: s.points.clone(),
                dashed: true,
            }))
            .collect();
        charts.push((
            "-mix",
            chart(
                format!("{backend} · {}: the mix, latency by percentile", scenario.scenario.name()),
                series,
            ),
        ));
    }
    let sizes: Vec<&PhaseResult> = scenario.phases.iter().filter(|p| p.kind == PhaseKind::Size).collect();
    if let Some(first) = sizes.first() {
        let series = first
            .ops
            .iter()
            .map(|base| Series {
                label: format!("{} p99", base.op.name()),
                points: sizes
                    .iter()
                    .filter_map(|p| Some((p.size? as f64, p.op(base.op)?.latency.p99_us as f64 / 1000.0)))
                    .collect(),
                dashed: false,
            })
            .collect();
        let ticks = sizes.iter().filter_map(|p| p.size).map(|s| (s as f64, s.to_string())).collect();
        charts.push((
            "-p99",
            Chart {
                title: format!("{backend} · growth: p99 by invoices in the database"),
                x_label: "invoices".into(),
                y_label: "p99 latency (ms)".into(),
                x_ticks: ticks,
                series,
            },
        ));
    }
    charts
}
