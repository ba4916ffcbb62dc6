//! `settle-fuzz`: drives every RPC of every settle service with generated hostile requests and
//! checks each answer (see `settle_tests::fuzz`).
//!
//! ```text
//! settle-fuzz [--seed N] [--backend sqlite|postgres] [--requests N] [--probes all|none|a,b] [--ci]
//! ```
//!
//! After the generated requests the probes run (`settle_tests::fuzz::probes`): one scenario per hole
//! of issue 12, each reported under its own class; `--requests 0 --probes modes` runs one alone.
//!
//! Prints the seed first and the methods covered, then `N requests, M refused as expected, K
//! violations` and one line per kind of violation with the request that first showed it; exits 1
//! on any violation, 2 if the run itself failed. PostgreSQL needs `DATABASE_URL`.

use std::process::ExitCode;

use settle_platform::db::Backend;
use settle_tests::fuzz::{self, FuzzConfig};

/// Requests per backend for `--ci`: a few thousand, under three minutes on two cores in debug.
const CI_REQUESTS: u64 = 3_000;

fn usage(problem: &str) -> ExitCode {
    eprintln!("settle-fuzz: {problem}");
    eprintln!(
        "usage: settle-fuzz [--seed N] [--backend sqlite|postgres] [--requests N] [--probes all|none|a,b] [--ci]"
    );
    eprintln!("probes: {}", fuzz::probes::ALL.join(", "));
    ExitCode::from(64)
}

fn parse_args() -> Result<FuzzConfig, String> {
    let mut args = std::env::args().skip(1);
    let (mut seed, mut backend, mut requests, mut ci) = (None, Backend::Sqlite, None, false);
    let mut probes = Some(Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ci" => ci = true,
            "--probes" => {
                let value = args.next().ok_or("--probes needs a value")?;
                probes = match value.as_str() {
                    "all" => Some(Vec::new()),
                    "none" => None,
                    list => {
                        let names: Vec<String> = list.split(',').map(|n| n.trim().to_owned()).collect();
                        let unknown = fuzz::probes::unknown(&names);
                        if !unknown.is_empty() {
                            return Err(format!("unknown probes {unknown:?}"));
                        }
                        Some(names)
                    }
                };
            }
            flag @ ("--seed" | "--backend" | "--requests") => {
                let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match flag {
                    "--seed" => seed = Some(value.parse().map_err(|_| format!("bad seed {value:?}"))?),
                    "--requests" => {
                        requests = Some(value.parse().map_err(|_| format!("bad count {value:?}"))?)
                    }
                    _ => {
                        backend = match value.as_str() {
                            "sqlite" => Backend::Sqlite,
                            "postgres" | "postgresql" => Backend::Postgres,
                            other => return Err(format!("unknown backend {other:?}")),
                        }
                    }
                }
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let mut config = FuzzConfig::new(seed, backend);
    config.probes = probes;
    config.ci = ci;
    if ci {
        config.requests = CI_REQUESTS;
    }
    if let Some(requests) = requests {
        config.requests = requests;
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
            eprintln!("settle-fuzz: {problem}");
            return ExitCode::from(2);
        }
    };
    let backend = config.backend.name();
    println!(
        "seed {} (replay: settle-fuzz --seed {} --backend {backend} --requests {})",
        config.seed, config.seed, config.requests
    );
    let summary = match fuzz::run(&config, node).await {
        Ok(summary) => summary,
        Err(problem) => {
            eprintln!("settle-fuzz: the run failed: {problem}");
            return ExitCode::from(2);
        }
    };
    println!("\nmethods covered ({}), with succeeded / refused / violations:", summary.covered.len());
    for (rpc, nodes) in &summary.covered {
        let (ok, refused, bad) = summary.per_method.get(rpc).copied().unwrap_or_default();
        let nodes: Vec<&str> = nodes.iter().map(|n| n.arg()).collect();
        println!("  {rpc:<58} {:<28} {ok:>6} {refused:>6} {bad:>6}", nodes.join(","));
    }
    for path in &summary.unserved {
        println!("  NOT SERVED by any service: {path}");
    }
    println!("\nby flavor (requests, refused, violations):");
    for (flavor, (n, refused, bad)) in &summary.per_flavor {
        println!("  {flavor:<22} {n:>7} {refused:>7} {bad:>7}");
    }
    if !summary.probes.is_empty() {
        println!("\nprobes (requests, refused, violations, time):");
        for probe in &summary.probes {
            let bad = summary.violations.iter().filter(|v| v.probe == Some(probe.name)).count();
            println!(
                "  {:<22} {:>7} {:>7} {bad:>7} {:>8.1?}",
                probe.name, probe.requests, probe.refused, probe.elapsed
            );
            for note in &probe.notes {
                println!("      {note}");
            }
        }
    }
    println!("\nrefusal codes:");
    for (code, n) in &summary.codes {
        println!("  {code:<20} {n:>7}");
    }
    println!(
        "\n{} succeeded; {} digests of lists and balances compared; {} health rounds; {} background events beside refused calls; {} inconclusive digests; {:.1?}",
        summary.succeeded,
        summary.digests_compared,
        summary.health_checks,
        summary.background_events,
        summary.inconclusive,
        summary.elapsed
    );
    let groups = fuzz::grouped(&summary.violations);
    if !groups.is_empty() {
        println!("\nviolations by class:");
        for (class, n) in fuzz::by_class(&summary.violations) {
            println!("  {class:<60} {n:>6}");
        }
        println!("\nviolations (class | rpc | code | count | first: flavor, message, replay):");
        for ((class, rpc, code), n, first) in &groups {
            let (origin, replay) = match first.probe {
                Some(probe) => (format!("probe {probe}"), format!("--requests 0 --probes {probe}")),
                None => (first.flavor.name().to_owned(), format!("--requests {}", first.index + 1)),
            };
            println!(
                "VIOLATION {class} | {rpc} | {code} | x{n} | {origin} \"{}\" | settle-fuzz --seed {} --backend {backend} {replay}",
                first.message, config.seed,
            );
        }
    }
    println!(
        "\n{} requests, {} refused as expected, {} violations",
        summary.requests,
        summary.refused,
        summary.violations.len()
    );
    if summary.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
