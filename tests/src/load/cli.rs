//! `settle-load`'s command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::mix::Mix;
use super::scenario::ScenarioName;
use super::schedule::Arrivals;

/// The default mix: the invoicing flows weighted roughly as an invoicing API sees them.
pub const DEFAULT_MIX: &str =
    "create_finalize=2,attach=5,detach=1,reapply=1,pay=1,credit_note=1,read=10,list=2";
/// The growth scenario's mix, the same at every size.
pub const DEFAULT_GROWTH_MIX: &str = "read=10,list=2,attach=2,create_finalize=1";

/// Load generator for settle: starts (or targets) the three services, measures this machine's
/// ceilings in the same run, drives a seeded mix of invoicing flows, and prints every figure with
/// its ratio to the ceilings and the developers' guide budgets.
#[derive(Debug, Parser)]
#[command(name = "settle-load", version, after_help = after_help())]
pub struct Args {
    /// Scenarios to run, comma separated: uncontended, hot-invoice, hot-customer, growth, all.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "uncontended")]
    pub scenario: Vec<ScenarioName>,
    /// Weighted operations of the mix phase, op=weight pairs.
    #[arg(long, default_value = DEFAULT_MIX)]
    pub mix: Mix,
    /// Operations also run alone (capacity figures): a list, `all` or `none`. Default: the mix's
    /// operations and every operation with a budget.
    #[arg(long)]
    pub solo: Option<String>,
    /// Seed of the mix, the targets and the arrivals; printed, and a run with it replays them.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Closed loop: requests in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Open loop: requests started per second, whatever the services do (latency counts from each
    /// request's intended start). Replaces --concurrency.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: arrival spacing, uniform or poisson.
    #[arg(long, default_value = "uniform")]
    pub arrivals: Arrivals,
    /// Open loop: requests in flight at most (later ones wait, and their wait counts).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// Timed length of each phase (e.g. 30s, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub duration: Duration,
    /// Requests per phase instead of a duration.
    #[arg(long)]
    pub count: Option<usize>,
    /// Requests run before each phase, not measured. Default: 4 × concurrency, at least 200.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Backend of the started services and the ceiling service.
    #[arg(long, value_enum, default_value = "postgres")]
    pub backend: BackendArg,
    /// PostgreSQL server where databases are created and dropped (a role allowed to create
    /// databases). Default: $DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Pool size of each started service (SETTLE_DATABASE_MAX_CONNECTIONS) and of the ceiling service.
    #[arg(long, default_value_t = 16)]
    pub db_connections: u32,
    /// Target a running invoices service instead of starting one (give all three URLs).
    #[arg(long, requires_all = ["payments_url", "credit_notes_url"])]
    pub invoices_url: Option<String>,
    /// Target a running payments service.
    #[arg(long, requires = "invoices_url")]
    pub payments_url: Option<String>,
    /// Target a running credit-notes service.
    #[arg(long, requires = "invoices_url")]
    pub credit_notes_url: Option<String>,
    /// The running invoices service's database, for the growth scenario's seeding.
    #[arg(long)]
    pub invoices_database_url: Option<String>,
    /// API key of the requests (its account gets the data).
    #[arg(long, default_value = settle_platform::auth::DEV_API_KEY)]
    pub api_key: String,
    /// The account --api-key acts for: started services map the key to it, and growth seeds into it.
    #[arg(long, default_value = settle_platform::auth::DEV_ACCOUNT)]
    pub account: String,
    /// Growth: invoices in the database at each step (1e3 or 1000 forms).
    #[arg(long, value_parser = parse_size, value_delimiter = ',', default_value = "1e3,1e4,1e5,1e6")]
    pub sizes: Vec<u64>,
    /// Growth: the mix run at each size.
    #[arg(long, default_value = DEFAULT_GROWTH_MIX)]
    pub growth_mix: Mix,
    /// Hot invoice: concurrent attaches.
    #[arg(long, default_value_t = 64)]
    pub hot_concurrency: usize,
    /// Results folder. Default: target/load-results/<UTC timestamp>/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CI-sized run: every scenario, small counts, on SQLite and PostgreSQL; exits non-zero if any
    /// request failed (figures are never judged in CI).
    #[arg(long)]
    pub ci: bool,
    /// Most requests prepared for one phase round.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_ops: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Postgres,
    Sqlite,
}

fn after_help() -> String {
    let mut help = String::from("Operations (for --mix and --solo):\n");
    for spec in super::ops::OPS {
        help.push_str(&format!("  {:<16} {}\n", spec.name, spec.what));
    }
    help
}

/// `250ms`, `20s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: the unit is ms, s, m or h")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `1e6`, `250000` or `1_000_000`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let clean = text.trim().replace('_', "");
    let size = match clean.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => {
            let mantissa: u64 = mantissa.parse().map_err(|_| format!("{text:?} is not a size"))?;
            let exponent: u32 = exponent.parse().map_err(|_| format!("{text:?} is not a size"))?;
            10u64.checked_pow(exponent).and_then(|p| p.checked_mul(mantissa))
        }
        None => clean.parse().ok(),
    };
    size.filter(|s| (1..=100_000_000).contains(s))
        .ok_or_else(|| format!("{text:?} is not a size from 1 to 1e8"))
}

/// A UTC timestamp `YYYYMMDD-HHMMSS` for folder names.
pub fn timestamp(unix_seconds: u64) -> String {
    let (days, rest) = (unix_seconds / 86_400, unix_seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

impl Args {
    pub fn parse_args() -> Args {
        Args::parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1e3"), Ok(1_000));
        assert_eq!(parse_size("1E6"), Ok(1_000_000));
        assert_eq!(parse_size("5e4"), Ok(50_000));
        assert_eq!(parse_size("250_000"), Ok(250_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1e30").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(timestamp(0), "19700101-000000");
        assert_eq!(timestamp(951_782_400), "20000229-000000");
        assert_eq!(timestamp(1_764_118_123), "20251126-004843");
    }

    #[test]
    fn the_defaults_parse() {
        let args = Args::try_parse_from(["settle-load"]).unwrap();
        assert_eq!(args.scenario, vec![ScenarioName::Uncontended]);
        assert_eq!(args.mix.to_string(), DEFAULT_MIX);
        assert_eq!(args.sizes, vec![1_000, 10_000, 100_000, 1_000_000]);
        assert!(Args::try_parse_from(["settle-load", "--mix", "teleport=1"]).is_err());
        assert!(Args::try_parse_from(["settle-load", "--payments-url", "http://x"]).is_err());
    }
}
