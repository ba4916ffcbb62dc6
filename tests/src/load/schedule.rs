//! The open-loop schedule: when the i-th request is meant to start. Requests start at their
//! intended time whatever the previous ones are doing, and their latency is measured from that
//! intended time, so time spent queueing behind a slow server counts (no coordinated omission).

use std::str::FromStr;

use crate::rng::Rng;

/// How arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Evenly, `1/rate` apart.
    Uniform,
    /// As a Poisson process of the same mean rate (exponential gaps), seeded.
    Poisson,
}

impl FromStr for Arrivals {
    type Err = String;

    fn from_str(text: &str) -> Result<Arrivals, String> {
        match text {
            "uniform" => Ok(Arrivals::Uniform),
            "poisson" => Ok(Arrivals::Poisson),
            other => Err(format!("{other:?}: arrivals are uniform or poisson")),
        }
    }
}

/// The intended start of each of `n` requests at `rate` per second, in nanoseconds from the start
/// of the phase; non-decreasing.
pub fn offsets(rate: f64, n: usize, arrivals: Arrivals, rng: &mut Rng) -> Vec<u64> {
    let gap = 1e9 / rate;
    match arrivals {
        Arrivals::Uniform => (0..n).map(|i| (i as f64 * gap) as u64).collect(),
        Arrivals::Poisson => {
            let mut at = 0.0_f64;
            (0..n)
                .map(|_| {
                    let now = at as u64;
                    // Inverse transform: -ln(U) is exponential with mean 1; U in (0, 1].
                    at += -(1.0 - rng.unit()).ln() * gap;
                    now
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_arrivals_are_evenly_spaced() {
        let at = offsets(1000.0, 5, Arrivals::Uniform, &mut Rng::new(1));
        assert_eq!(at, vec![0, 1_000_000, 2_000_000, 3_000_000, 4_000_000]);
    }

    #[test]
    fn poisson_arrivals_keep_the_mean_rate_and_are_ordered() {
        let at = offsets(2000.0, 100_000, Arrivals::Poisson, &mut Rng::new(5));
        assert!(at.windows(2).all(|w| w[0] <= w[1]));
        let mean_gap = *at.last().unwrap() as f64 / (at.len() - 1) as f64;
        assert!((mean_gap - 500_000.0).abs() < 5_000.0, "mean gap {mean_gap} ns");
        // Exponential gaps: about 1/e of them longer than the mean.
        let long = at.windows(2).filter(|w| (w[1] - w[0]) as f64 > 500_000.0).count() as f64;
        assert!((long / at.len() as f64 - (-1.0_f64).exp()).abs() < 0.01);
    }

    #[test]
    fn a_seed_replays_the_same_arrivals() {
        let a = offsets(100.0, 50, Arrivals::Poisson, &mut Rng::new(9));
        let b = offsets(100.0, 50, Arrivals::Poisson, &mut Rng::new(9));
        assert_eq!(a, b);
        assert_ne!(a, offsets(100.0, 50, Arrivals::Poisson, &mut Rng::new(10)));
    }

    #[test]
    fn parses_the_arrival_kinds() {
        assert_eq!("uniform".parse(), Ok(Arrivals::Uniform));
        assert_eq!("poisson".parse(), Ok(Arrivals::Poisson));
        assert!("bursty".parse::<Arrivals>().is_err());
    }
}
