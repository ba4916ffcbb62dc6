//! The tool's one source of randomness: SplitMix64, seeded from `--seed`. Written out here rather
//! than taken from a crate so that a seed replays the same mix, targets and arrivals whatever
//! crate versions a later build resolves.

/// A seeded generator (SplitMix64: one `u64` of state, passes BigCrush, a few instructions a draw).
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// An independent generator for one purpose (`stream`), so that drawing more for one purpose
    /// (say, more arrivals) does not shift what another purpose (the mix) draws.
    pub fn fork(&self, stream: u64) -> Rng {
        let mut mixer = Rng::new(self.state ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        Rng::new(mixer.next_u64())
    }

    /// A generator seeded from this one's next draw: each phase takes its own in turn, so a seed
    /// replays every phase.
    pub fn split(&mut self) -> Rng {
        let mut mixer = Rng::new(self.next_u64());
        Rng::new(mixer.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`), by Lemire's multiply-shift: the bias is below 2⁻³² for the
    /// ranges the tool draws from.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index into a collection of `len` (> 0) elements.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A float in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_sequence() {
        let a: Vec<u64> = {
            let mut rng = Rng::new(42);
            (0..8).map(|_| rng.next_u64()).collect()
        };
        let mut rng = Rng::new(42);
        assert!(a.iter().all(|v| *v == rng.next_u64()));
        assert_ne!(Rng::new(43).next_u64(), a[0]);
    }

    #[test]
    fn matches_the_reference_splitmix64() {
        // First outputs of the reference implementation (Vigna) for seed 1234567.
        let mut rng = Rng::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn forks_are_independent_and_stable() {
        let root = Rng::new(7);
        assert_eq!(root.fork(1).next_u64(), root.fork(1).next_u64());
        assert_ne!(root.fork(1).next_u64(), root.fork(2).next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(9);
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            let v = rng.below(7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn unit_is_in_the_half_open_interval() {
        let mut rng = Rng::new(11);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
