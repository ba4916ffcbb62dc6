//! `settle-chaos`: runs the suite under a seeded storm of faults, then checks the money invariants.
//!
//! ```text
//! settle-chaos [--seed N] [--backend sqlite|postgres] [--duration SECONDS] [--workers N]
//!              [--kill-every SECONDS] [--crash-probability P] [--stall-probability P]
//!              [--db-restart-every SECONDS] [--network-delay P] [--network-reset P] [--ci]
//! ```
//!
//! Prints the seed first (the same seed replays the same fault schedule), then
//! `N faults, M operations, K violations`; exits 1 on any violation, 2 if the run itself failed.
//! PostgreSQL needs `DATABASE_URL` (a server where the tool may create databases).

use std::process::ExitCode;
use std::time::Duration;

use settle_platform::db::Backend;
use settle_tests::chaos::{self, ChaosConfig};

fn usage(problem: &str) -> ExitCode {
    eprintln!("settle-chaos: {problem}");
    eprintln!(
        "usage: settle-chaos [--seed N] [--backend sqlite|postgres] [--duration SECONDS] [--workers N] \
         [--kill-every SECONDS] [--crash-probability P] [--stall-probability P] [--db-restart-every SECONDS] \
         [--network-delay P] [--network-reset P] [--ci]"
    );
    ExitCode::from(64)
}

fn parse_args() -> Result<ChaosConfig, String> {
    let mut args = std::env::args().skip(1);
    let mut seed = None;
    let mut backend = Backend::Sqlite;
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut ci = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ci" => ci = true,
            flag if flag.starts_with("--") => {
                let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match flag {
                    "--seed" => seed = Some(value.parse().map_err(|_| format!("bad seed {value:?}"))?),
                    "--backend" => {
                        backend = match value.as_str() {
                            "sqlite" => Backend::Sqlite,
                            "postgres" | "postgresql" => Backend::Postgres,
                            other => return Err(format!("unknown backend {other:?}")),
                        }
                    }
                    _ => settings.push((flag.to_owned(), value)),
                }
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let mut config = ChaosConfig::new(seed, backend);
    if ci {
        config.duration = Duration::from_secs(40);
        config.workers = 4;
    }
    for (flag, value) in settings {
        let number: f64 = value.parse().map_err(|_| format!("{flag}: not a number: {value:?}"))?;
        match flag.as_str() {
            "--duration" => config.duration = Duration::from_secs_f64(number),
            "--workers" => config.workers = number as usize,
            "--kill-every" => config.kill_every = number,
            "--crash-probability" => config.crash_probability = number,
            "--stall-probability" => config.stall_probability = number,
            "--db-restart-every" => config.db_restart_every = number,
            "--network-delay" => config.network.delay = number,
            "--network-reset" => config.network.reset = number,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(config) => config,
        Err(problem) => return usage(&problem),
    };
    let node = match settle_tests::process::sibling_node() {
        Ok(node) => node,
        Err(problem) => {
            eprintln!("settle-chaos: {problem}");
            return ExitCode::from(2);
        }
    };
    println!(
        "seed {} (replay: settle-chaos --seed {} --backend {})",
        config.seed,
        config.seed,
        config.backend.name()
    );
    println!("{config:?}");
    let summary = match chaos::run(&config, node).await {
        Ok(summary) => summary,
        Err(problem) => {
            eprintln!("settle-chaos: the run failed: {problem}");
            return ExitCode::from(2);
        }
    };
    println!("\nfaults injected:");
    for (kind, n) in &summary.faults.by_kind {
        println!("  {kind:<34} {n:>8}");
    }
    println!("\noperations (kind, outcome: count):");
    for ((operation, outcome), n) in &summary.tally.counts {
        println!("  {:<14} {:<44} {n:>6}", format!("{operation:?}"), format!("{outcome:?}"));
    }
    for message in &summary.tally.internal_messages {
        println!("  INTERNAL: {message}");
    }
    let report = &summary.report;
    println!(
        "\nchecked {} invoices, {} invoice payments, {} payment intents, {} credit notes, {} events; settled {:.1?} after the last fault",
        report.invoices,
        report.invoice_payments,
        report.intents,
        report.credit_notes,
        report.events,
        summary.settled_in
    );
    for violation in &report.violations {
        println!("VIOLATION: {violation}");
    }
    let internal = summary.tally.internal_messages.len();
    println!(
        "\n{} faults, {} operations, {} violations{}",
        summary.faults.total(),
        summary.tally.attempted(),
        report.violations.len(),
        if internal > 0 { format!(" ({internal} INTERNAL answers)") } else { String::new() }
    );
    if report.violations.is_empty() && internal == 0 {
        ExitCode::SUCCESS
    } else {
        println!("replay: settle-chaos --seed {} --backend {}", config.seed, config.backend.name());
        ExitCode::from(1)
    }
}
