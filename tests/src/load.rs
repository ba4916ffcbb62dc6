//! `settle-load`: the load tool. It starts the three services (or targets running ones), measures
//! the machine's ceilings in the same run with a tiny service of its own, drives a seeded, weighted
//! mix of invoicing flows closed- or open-loop, and reports HDR percentiles, throughput and errors
//! per operation, each figure also as a ratio to the ceilings next to the developers' guide budget.
//! See docs/benchmarks.md.
//!
//! - [`ops`]: the operation table and how each operation is executed;
//! - [`prepare`]: the untimed set-up of each operation's inputs; [`seed`]: bulk seeding (growth);
//! - [`driver`]: closed- and open-loop execution; [`schedule`]: open-loop arrival times;
//! - [`scenario`]: phases and scenarios; [`ceiling`]: the ceiling service;
//! - [`stats`], [`budget`], [`report`], [`svg`]: figures, verdicts, output.

pub mod budget;
pub mod ceiling;
pub mod cli;
pub mod driver;
pub mod mix;
pub mod ops;
pub mod prepare;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod seed;
pub mod services;
pub mod stats;
pub mod svg;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use settle_platform::db::Backend;
use settle_platform::testing::TestDatabase;
use tonic::transport::{Channel, Endpoint};

use self::budget::budgeted_ops;
use self::ceiling::{CeilingClient, CeilingServer};
use self::cli::{Args, BackendArg};
use self::driver::Load;
use self::ops::{Clients, Op};
use self::report::BackendRun;
use self::scenario::{Amount, Runner, ScenarioName, Settings};
use self::services::Endpoints;
use crate::rng::Rng;

/// CI-sized phases: enough requests to pass every path, short enough for two backends in a couple
/// of minutes with debug binaries.
const CI_COUNT: usize = 40;
const CI_WARMUP: usize = 8;
const CI_CONCURRENCY: usize = 8;
const CI_HOT_CONCURRENCY: usize = 32;
const CI_SIZES: [u64; 2] = [1_000, 4_000];

/// Runs the tool; returns the exit status: 0 when every request succeeded, 1 when some failed, 2
/// when a backend's run could not be carried out.
pub async fn run(args: Args) -> anyhow::Result<u8> {
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seed = args.seed.unwrap_or_else(|| {
        // A fresh seed per run, printed so the run can be replayed.
        let mut mixer = Rng::new(started.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32));
        mixer.next_u64() >> 1
    });
    let mut rng = Rng::new(seed);
    let settings = settings(&args)?;
    let exe = std::env::current_exe().context("cannot find settle-load's own path")?;
    let bin_dir = exe.parent().context("settle-load has no folder")?.to_path_buf();
    let out = args.out.clone().unwrap_or_else(|| {
        let target = bin_dir.parent().unwrap_or(&bin_dir);
        target.join("load-results").join(cli::timestamp(started.as_secs()))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let backends =
        if args.ci { vec![Backend::Sqlite, Backend::Postgres] } else { vec![backend(args.backend)] };
    let postgres_url = args
        .postgres_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres")))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());

    println!("settle-load · seed {seed} (replay with --seed {seed}) · results in {}", out.display());
    println!(
        "  {} · {} · {} · warm-up {} requests · {} cores",
        settings.load.describe(),
        match settings.amount {
            Amount::Count(n) => format!("{n} requests per phase"),
            Amount::Duration(d) => format!("{:.0} s per phase", d.as_secs_f64()),
        },
        settings.mix,
        settings.warmup,
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    let mut runs = Vec::new();
    for backend in backends {
        let run_id = format!("{:08x}", rng.next_u64() as u32);
        let backend_rng = rng.split();
        let context = RunContext {
            args: &args,
            settings: &settings,
            bin_dir: &bin_dir,
            out: &out,
            postgres_url: &postgres_url,
        };
        runs.push(run_backend(&context, backend, run_id, backend_rng).await);
    }

    report::closing(&runs);
    let command: Vec<String> = std::env::args().collect();
    let summary = report::Summary {
        tool: "settle-load",
        started_at: cli::timestamp(started.as_secs()),
        seed,
        command,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        settings: &settings,
        runs: &runs,
    };
    let written = report::write(&out, &summary)?;
    println!(
        "\n  written: {}",
        written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(if runs.iter().any(|r| r.error.is_some()) {
        2
    } else if runs.iter().any(|r| r.failed_requests > 0) {
        1
    } else {
        0
    })
}

struct RunContext<'a> {
    args: &'a Args,
    settings: &'a Settings,
    bin_dir: &'a Path,
    out: &'a Path,
    postgres_url: &'a str,
}

fn backend(arg: BackendArg) -> Backend {
    match arg {
        BackendArg::Postgres => Backend::Postgres,
        BackendArg::Sqlite => Backend::Sqlite,
    }
}

/// The phase settings from the arguments (or the CI presets).
fn settings(args: &Args) -> anyhow::Result<Settings> {
    let solo = |mix: &mix::Mix| -> anyhow::Result<Vec<Op>> {
        let requested: Vec<Op> = match args.solo.as_deref() {
            None => mix.ops().chain(budgeted_ops()).collect(),
            Some("none") => Vec::new(),
            Some("all") => Op::workload().collect(),
            Some(list) => list
                .split(',')
                .map(|name| {
                    Op::parse(name.trim()).with_context(|| format!("--solo: unknown operation {name:?}"))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        // In table order, once each, and never a ceiling (those run anyway).
        Ok(Op::workload().filter(|op| requested.contains(op)).collect())
    };
    if args.ci {
        return Ok(Settings {
            scenarios: ScenarioName::expand(&[ScenarioName::All]),
            load: Load::Closed { concurrency: CI_CONCURRENCY },
            hot_concurrency: CI_HOT_CONCURRENCY,
            amount: Amount::Count(CI_COUNT),
            warmup: CI_WARMUP,
            max_ops: args.max_ops,
            mix: args.mix.clone(),
            growth_mix: args.growth_mix.clone(),
            solo: solo(&args.mix)?,
            sizes: CI_SIZES.to_vec(),
        });
    }
    let load = match args.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => {
            Load::Open { rate, arrivals: args.arrivals, max_in_flight: args.max_in_flight.max(1) }
        }
        Some(rate) => anyhow::bail!("--rate {rate}: give a positive number of requests per second"),
        None => Load::Closed { concurrency: args.concurrency.max(1) },
    };
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    Ok(Settings {
        scenarios: ScenarioName::expand(&args.scenario),
        load,
        hot_concurrency: args.hot_concurrency.max(1),
        amount: args.count.map_or(Amount::Duration(args.duration), Amount::Count),
        warmup: args.warmup.unwrap_or_else(|| (4 * load.width()).max(200)),
        max_ops: args.max_ops.max(1),
        mix: args.mix.clone(),
        growth_mix: args.growth_mix.clone(),
        solo: solo(&args.mix)?,
        sizes,
    })
}

async fn connect(url: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// One backend: services, ceiling service, every scenario. Failures end this backend's run and are
/// reported in it, so the other backend still runs and the summary is still written.
async fn run_backend(context: &RunContext<'_>, backend: Backend, run_id: String, rng: Rng) -> BackendRun {
    println!("\n##### {} #####", backend.name());
    let mut scenarios = Vec::new();
    let mut memory = Vec::new();
    let error = run_scenarios(context, backend, run_id, rng, &mut scenarios, &mut memory).await.err();
    if let Some(error) = &error {
        println!("\n  {} run stopped: {error:#}", backend.name());
    }
    BackendRun::new(backend.name(), memory, scenarios, error.map(|e| format!("{e:#}")))
}

async fn run_scenarios(
    context: &RunContext<'_>,
    backend: Backend,
    run_id: String,
    rng: Rng,
    scenarios: &mut Vec<scenario::ScenarioResult>,
    memory: &mut Vec<services::Memory>,
) -> anyhow::Result<()> {
    let args = context.args;
    let logs: PathBuf = context.out.join("logs").join(backend.name());
    std::fs::create_dir_all(&logs)?;
    let (mut started, endpoints, invoices_database_url) = match &args.invoices_url {
        Some(invoices) => {
            let endpoints = Endpoints {
                invoices: invoices.clone(),
                payments: args
                    .payments_url
                    .clone()
                    .context("--payments-url is required with --invoices-url")?,
                credit_notes: args
                    .credit_notes_url
                    .clone()
                    .context("--credit-notes-url is required with --invoices-url")?,
            };
            (None, endpoints, args.invoices_database_url.clone())
        }
        None => {
            let started = services::start(
                context.bin_dir,
                backend,
                context.postgres_url,
                args.db_connections,
                (&args.api_key, &args.account),
                &logs,
            )
            .await?;
            report::memory(&started.idle);
            let (endpoints, url) = (started.endpoints.clone(), started.invoices_database_url.clone());
            (Some(started), endpoints, Some(url))
        }
    };
    println!(
        "  services: invoices {} · payments {} · credit-notes {}",
        endpoints.invoices, endpoints.payments, endpoints.credit_notes
    );

    let ceiling_database = match backend {
        Backend::Sqlite => TestDatabase::sqlite(),
        Backend::Postgres => {
            TestDatabase::postgres_at(context.postgres_url).await.context("ceiling database")?
        }
    };
    let ceiling =
        CeilingServer::start(ceiling_database.url(), args.db_connections).await.context("ceiling service")?;
    let ceiling_client =
        CeilingClient::new(connect(&format!("http://{}", ceiling.addr())).await?, &args.api_key)?;
    let clients = Clients::new(
        connect(&endpoints.invoices).await?,
        connect(&endpoints.payments).await?,
        connect(&endpoints.credit_notes).await?,
        Some(ceiling_client),
        &args.api_key,
        &run_id,
    )?;
    let mut settings = context.settings.clone();
    if !clients.serves_credit_notes().await {
        println!("  credit_note skipped: this credit-notes service does not serve CreateCreditNote yet");
        settings.mix = settings.mix.without(Op::CreditNote).context("--mix has nothing but credit_note")?;
        settings.growth_mix = settings
            .growth_mix
            .without(Op::CreditNote)
            .context("--growth-mix has nothing but credit_note")?;
        settings.solo.retain(|op| *op != Op::CreditNote);
    }
    let mut runner = Runner::new(settings, clients, run_id, rng, invoices_database_url, args.account.clone());
    let mut outcome = Ok(());
    for scenario in context.settings.scenarios.clone() {
        match runner.run(scenario).await {
            Ok(result) => scenarios.push(result),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
        if let Some(started) = started.as_mut() {
            let exited = started.exited();
            if !exited.is_empty() {
                outcome = Err(anyhow::anyhow!(exited.join("; ")));
                break;
            }
        }
    }
    if let Some(started) = &started {
        *memory = started.memory();
    }
    outcome
}
