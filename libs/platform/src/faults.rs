//! Named fault points, for crash and chaos tests. Off unless the crate is built with the `faults`
//! feature AND a plan is loaded from the `FAILPOINTS` environment variable:
//!
//! ```text
//! FAILPOINTS="invoices.attach.after_reserve=return(crash);payments.confirm.before_commit=5%sleep(200)"
//! SETTLE_FAULT_SEED=42
//! ```
//!
//! Each entry is `point=[P%][N*]action` with the action
//! - `return(crash)` (or `return`, `crash`): the process exits at once with status 137, as if
//!   SIGKILLed — no draining, no flushing, no commit of an open transaction;
//! - `sleep(ms)`: the caller waits that long (a slow disk, a slow peer);
//! - `off`.
//!
//! `P%` fires with probability P, `N*` at most N times; `a->b` tries `b` when `a` does not fire.
//! Whether the k-th pass of a point fires is a hash of (`SETTLE_FAULT_SEED`, point, rule, k): the
//! same seed replays the same schedule, whatever the other points do. Points are named `<service>.<step>.<phase>` (`invoices.attach.after_apply`).

#[cfg(feature = "faults")]
mod plan {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Action {
        Crash,
        Sleep(Duration),
        Off,
    }

    #[derive(Debug)]
    pub struct Rule {
        pub action: Action,
        /// Probability in millionths.
        pub per_million: u64,
        pub max_times: Option<u64>,
        passes: AtomicU64,
        fired: AtomicU64,
    }

    pub struct Plan {
        seed: u64,
        rules: HashMap<String, Vec<Rule>>,
    }

    static PLAN: OnceLock<Plan> = OnceLock::new();

    /// Parses one `[P%][N*]action`.
    pub fn parse_rule(spec: &str) -> Result<Rule, String> {
        let mut rest = spec.trim();
        let mut per_million = 1_000_000;
        if let Some((p, after)) = rest.split_once('%') {
            let percent: f64 = p.trim().parse().map_err(|_| format!("bad probability in {spec:?}"))?;
            if !(0.0..=100.0).contains(&percent) {
                return Err(format!("probability out of range in {spec:?}"));
            }
            per_million = (percent * 10_000.0).round() as u64;
            rest = after;
        }
        let mut max_times = None;
        if let Some((n, after)) = rest.split_once('*') {
            max_times = Some(n.trim().parse().map_err(|_| format!("bad count in {spec:?}"))?);
            rest = after;
        }
        let action = match rest.trim() {
            "return" | "return(crash)" | "crash" => Action::Crash,
            "off" => Action::Off,
            other => match other.strip_prefix("sleep(").and_then(|s| s.strip_suffix(')')) {
                Some(ms) => Action::Sleep(Duration::from_millis(
                    ms.trim().parse().map_err(|_| format!("bad sleep in {spec:?}"))?,
                )),
                None => return Err(format!("unknown action in {spec:?}")),
            },
        };
        Ok(Rule { action, per_million, max_times, passes: AtomicU64::new(0), fired: AtomicU64::new(0) })
    }

    pub fn load(plan: &str, seed: u64) -> Result<(), String> {
        let mut rules = HashMap::new();
        for entry in plan.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, spec) =
                entry.split_once('=').ok_or_else(|| format!("expected name=action in {entry:?}"))?;
            let chain = spec.split("->").map(parse_rule).collect::<Result<Vec<_>, _>>()?;
            rules.insert(name.trim().to_owned(), chain);
        }
        PLAN.set(Plan { seed, rules }).map_err(|_| "a fault plan is already loaded".to_owned())
    }

    /// SplitMix64 of the seed, the point's name and the pass number: stable across runs.
    fn decision(seed: u64, name: &str, pass: u64) -> u64 {
        let mut x = seed ^ pass.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for byte in name.bytes() {
            x = (x ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3);
        }
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// The action to take at this pass of `name`, if the plan says one fires.
    pub fn fire(name: &str) -> Option<Action> {
        let plan = PLAN.get()?;
        for (index, rule) in plan.rules.get(name)?.iter().enumerate() {
            let pass = rule.passes.fetch_add(1, Ordering::Relaxed);
            let draw = decision(plan.seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407), name, pass);
            if rule.action == Action::Off || draw % 1_000_000 >= rule.per_million {
                continue;
            }
            if let Some(max) = rule.max_times
                && rule.fired.fetch_add(1, Ordering::Relaxed) >= max
            {
                continue;
            }
            return Some(rule.action);
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rules_parse_like_the_fail_crate_spells_them() {
            assert_eq!(parse_rule("return(crash)").unwrap().action, Action::Crash);
            let rule = parse_rule("25%3*sleep(40)").unwrap();
            assert_eq!(rule.action, Action::Sleep(Duration::from_millis(40)));
            assert_eq!((rule.per_million, rule.max_times), (250_000, Some(3)));
            assert!(parse_rule("150%crash").is_err());
            assert!(parse_rule("explode").is_err());
        }

        #[test]
        fn decisions_are_a_function_of_seed_point_and_pass() {
            let a: Vec<u64> = (0..50).map(|k| decision(7, "p.q.r", k)).collect();
            let b: Vec<u64> = (0..50).map(|k| decision(7, "p.q.r", k)).collect();
            let c: Vec<u64> = (0..50).map(|k| decision(8, "p.q.r", k)).collect();
            assert_eq!(a, b);
            assert_ne!(a, c);
            // Roughly the asked-for share fires.
            let fired = (0..100_000).filter(|k| decision(3, "x", *k) % 1_000_000 < 100_000).count();
            assert!((9_000..11_000).contains(&fired), "{fired}");
        }
    }
}

/// Loads the plan in `FAILPOINTS` (call once at start-up; a no-op without the feature).
pub fn setup() {
    #[cfg(feature = "faults")]
    if let Ok(plan) = std::env::var("FAILPOINTS") {
        let seed = std::env::var("SETTLE_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        match plan::load(&plan, seed) {
            Ok(()) => tracing::warn!(plan, seed, "fault plan armed"),
            Err(error) => tracing::error!(%error, "invalid fault plan; no fault will fire"),
        }
    }
}

/// Passes fault point `name`: crashes the process, or sleeps, when the plan says so.
#[inline]
pub async fn hit(name: &'static str) {
    #[cfg(feature = "faults")]
    match plan::fire(name) {
        Some(plan::Action::Crash) => crash(name),
        Some(plan::Action::Sleep(duration)) => tokio::time::sleep(duration).await,
        _ => {}
    }
    #[cfg(not(feature = "faults"))]
    let _ = name;
}

#[cfg(feature = "faults")]
fn crash(name: &str) -> ! {
    eprintln!("fault point {name}: crashing");
    std::process::exit(137)
}
