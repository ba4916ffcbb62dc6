//! The developers' guide budgets, each a ratio to a figure measured in the same run, and their
//! verdicts: PASS, or SHORT of the budget.

use serde::Serialize;

use super::ops::Op;

/// The bound a ratio must keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// ratio ≥ the value (throughput shares).
    AtLeast(f64),
    /// ratio ≤ the value (latency multiples).
    AtMost(f64),
    /// |ratio − 1| ≤ the value (flat across sizes).
    Within(f64),
}

/// A figure against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Short,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Short => "SHORT",
        })
    }
}

impl Bound {
    pub fn judge(self, ratio: f64) -> Verdict {
        // A tiny tolerance so that a ratio printed as exactly the bound is not SHORT by rounding.
        const EPSILON: f64 = 1e-9;
        let kept = match self {
            Bound::AtLeast(min) => ratio + EPSILON >= min,
            Bound::AtMost(max) => ratio - EPSILON <= max,
            Bound::Within(spread) => (ratio - 1.0).abs() - EPSILON <= spread,
        };
        if kept && ratio.is_finite() { Verdict::Pass } else { Verdict::Short }
    }

    /// How the budget reads in the report: `≥ 70 %`, `≤ 3.0×`, `±25 %`.
    pub fn describe(self) -> String {
        match self {
            Bound::AtLeast(min) => format!("≥ {:.0} %", min * 100.0),
            Bound::AtMost(max) => format!("≤ {max:.1}×"),
            Bound::Within(spread) => format!("±{:.0} %", spread * 100.0),
        }
    }
}

/// Which figure of an operation a budget is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Throughput,
    P99,
}

/// A budget of one operation run alone, against a ceiling run the same way.
#[derive(Debug)]
pub struct CeilingBudget {
    pub op: Op,
    pub metric: Metric,
    pub ceiling: Op,
    pub bound: Bound,
}

/// The guide's budgets against the ceilings.
pub const CEILING_BUDGETS: &[CeilingBudget] = &[
    // Single-transaction writes ≥ 70 % of the attach-shaped transaction.
    CeilingBudget {
        op: Op::Create,
        metric: Metric::Throughput,
        ceiling: Op::AttachShaped,
        bound: Bound::AtLeast(0.70),
    },
    CeilingBudget {
        op: Op::Intent,
        metric: Metric::Throughput,
        ceiling: Op::AttachShaped,
        bound: Bound::AtLeast(0.70),
    },
    // Reads ≥ 60 % of a gRPC `SELECT 1`.
    CeilingBudget {
        op: Op::Read,
        metric: Metric::Throughput,
        ceiling: Op::SelectOne,
        bound: Bound::AtLeast(0.60),
    },
    // Attach/detach sagas ≥ 30 %, with p99 ≤ 3× the ceiling's p99.
    CeilingBudget {
        op: Op::Attach,
        metric: Metric::Throughput,
        ceiling: Op::AttachShaped,
        bound: Bound::AtLeast(0.30),
    },
    CeilingBudget {
        op: Op::Attach,
        metric: Metric::P99,
        ceiling: Op::AttachShaped,
        bound: Bound::AtMost(3.0),
    },
    CeilingBudget {
        op: Op::Detach,
        metric: Metric::Throughput,
        ceiling: Op::AttachShaped,
        bound: Bound::AtLeast(0.30),
    },
    CeilingBudget {
        op: Op::Detach,
        metric: Metric::P99,
        ceiling: Op::AttachShaped,
        bound: Bound::AtMost(3.0),
    },
    // A credit note with a refund ≥ 20 %.
    CeilingBudget {
        op: Op::CreditNote,
        metric: Metric::Throughput,
        ceiling: Op::AttachShaped,
        bound: Bound::AtLeast(0.20),
    },
];

/// 64 concurrent attaches to one invoice keep ≥ 25 % of the uncontended attach throughput.
pub const HOT_INVOICE: Bound = Bound::AtLeast(0.25);
/// p99 at each data-set size within ±25 % of the p99 at the smallest.
pub const GROWTH_P99: Bound = Bound::Within(0.25);
/// Idle resident memory of each service, KiB (30 MiB).
pub const IDLE_RSS_KIB: u64 = 30 * 1024;

/// The operations that have a budget against a ceiling (run alone by default).
pub fn budgeted_ops() -> impl Iterator<Item = Op> {
    CEILING_BUDGETS.iter().map(|b| b.op)
}

/// `value / reference`, or NaN when the reference is 0 (nothing measured).
pub fn ratio(value: f64, reference: f64) -> f64 {
    if reference > 0.0 { value / reference } else { f64::NAN }
}

/// One budget check as the report and the JSON summary show it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was compared, e.g. `attach throughput / attach_shaped`.
    pub what: String,
    pub ratio: f64,
    pub bound: Bound,
    pub budget: String,
    pub verdict: Verdict,
}

impl Check {
    pub fn new(what: String, ratio: f64, bound: Bound) -> Check {
        Check { what, ratio, bound, budget: bound.describe(), verdict: bound.judge(ratio) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_passes_from_the_bound_up() {
        assert_eq!(Bound::AtLeast(0.3).judge(0.31), Verdict::Pass);
        assert_eq!(Bound::AtLeast(0.3).judge(0.3), Verdict::Pass);
        assert_eq!(Bound::AtLeast(0.3).judge(0.29), Verdict::Short);
    }

    #[test]
    fn at_most_passes_up_to_the_bound() {
        assert_eq!(Bound::AtMost(3.0).judge(2.0), Verdict::Pass);
        assert_eq!(Bound::AtMost(3.0).judge(3.0), Verdict::Pass);
        assert_eq!(Bound::AtMost(3.0).judge(3.01), Verdict::Short);
    }

    #[test]
    fn within_passes_on_both_sides_of_one() {
        assert_eq!(Bound::Within(0.25).judge(0.75), Verdict::Pass);
        assert_eq!(Bound::Within(0.25).judge(1.25), Verdict::Pass);
        assert_eq!(Bound::Within(0.25).judge(1.26), Verdict::Short);
        assert_eq!(Bound::Within(0.25).judge(0.74), Verdict::Short);
    }

    #[test]
    fn nothing_measured_is_short() {
        assert!(ratio(5.0, 0.0).is_nan());
        assert_eq!(Bound::AtLeast(0.3).judge(ratio(5.0, 0.0)), Verdict::Short);
        assert_eq!(Bound::AtMost(3.0).judge(f64::INFINITY), Verdict::Short);
    }

    #[test]
    fn budgets_read_as_the_guide_writes_them() {
        assert_eq!(Bound::AtLeast(0.7).describe(), "≥ 70 %");
        assert_eq!(Bound::AtMost(3.0).describe(), "≤ 3.0×");
        assert_eq!(Bound::Within(0.25).describe(), "±25 %");
    }

    #[test]
    fn every_ceiling_budget_compares_with_a_ceiling() {
        for budget in CEILING_BUDGETS {
            assert_eq!(budget.op.ceiling(), budget.ceiling, "{:?}", budget.op);
        }
    }

    #[test]
    fn a_check_carries_its_verdict() {
        let check =
            Check::new("attach throughput / attach_shaped".into(), ratio(450.0, 1500.0), Bound::AtLeast(0.3));
        assert_eq!(check.verdict, Verdict::Pass);
        assert_eq!(check.budget, "≥ 30 %");
    }
}
