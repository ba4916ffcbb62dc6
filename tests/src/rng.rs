//! A small seeded generator (SplitMix64): the same seed gives the same fault schedule (chaos) or
//! the same mix, targets and arrivals (load) on every machine and every version, which a
//! general-purpose RNG crate does not promise.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for a sub-stream (a connection, a worker) that does not disturb this one.
    pub fn fork(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A generator seeded from this one's next draw: each phase of a load run takes its own in turn,
    /// so a seed replays every phase.
    pub fn split(&mut self) -> Rng {
        Rng::fork(self.next_u64(), 0)
    }

    /// A value in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2⁻³² for the ranges drawn).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index into a collection of `len` (> 0) elements.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high] (inclusive); `low` when the range is empty.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low { low } else { low + self.next_u64() % (high - low + 1) }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An index drawn with the given weights (all zero: 0).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return 0;
        }
        let mut pick = self.next_u64() % total;
        for (i, w) in weights.iter().enumerate() {
            if pick < u64::from(*w) {
                return i;
            }
            pick -= u64::from(*w);
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a: Vec<u64> = (0..8).scan(Rng::new(42), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..8).scan(Rng::new(42), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::fork(42, 1).next_u64(), Rng::fork(42, 2).next_u64());
    }

    #[test]
    fn matches_the_reference_splitmix64() {
        // First outputs of the reference implementation (Vigna) for seed 1234567.
        let mut rng = Rng::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn splits_replay_and_differ_from_each_other() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        assert_eq!(a.split().next_u64(), b.split().next_u64());
        assert_ne!(a.split().next_u64(), a.split().next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(9);
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            seen[rng.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
        assert!((0..100).all(|_| rng.index(3) < 3));
    }

    #[test]
    fn draws_stay_in_range_and_follow_weights() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let x = rng.between(3, 9);
            assert!((3..=9).contains(&x));
            assert!((0.0..1.0).contains(&rng.unit()));
        }
        let picks: Vec<usize> = (0..10_000).map(|_| rng.weighted(&[1, 0, 3])).collect();
        assert!(!picks.contains(&1));
        let threes = picks.iter().filter(|p| **p == 2).count();
        assert!((7_000..8_000).contains(&threes), "{threes}");
    }
}
