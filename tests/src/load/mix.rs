//! The weighted operation mix (`--mix attach=5,detach=1,read=10`) and the seeded plan drawn from
//! it: which operation the i-th request of a phase is.

use std::fmt;
use std::str::FromStr;

use super::ops::Op;
use crate::rng::Rng;

/// Operations and their integer weights; an operation's share is its weight over the total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// In the order given, weights > 0.
    entries: Vec<(Op, u32)>,
}

/// Why a `--mix` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("the mix is empty: give op=weight pairs, e.g. attach=5,read=10")]
    Empty,
    #[error("{0:?} is not op=weight")]
    Malformed(String),
    #[error("unknown operation {name:?}; known: {known}")]
    UnknownOp { name: String, known: String },
    #[error("the weight of {0} must be a whole number from 0 to 1000000")]
    BadWeight(String),
    #[error("{0} appears twice")]
    Duplicate(String),
    #[error("every weight is 0")]
    AllZero,
}

/// The largest weight accepted: keeps the running total far from overflow.
const MAX_WEIGHT: u32 = 1_000_000;

impl Mix {
    /// One operation alone.
    pub fn solo(op: Op) -> Mix {
        Mix { entries: vec![(op, 1)] }
    }

    /// The operations with a weight, in the order given.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.entries.iter().map(|(op, _)| *op)
    }

    /// The mix without `op`; `None` if nothing is left.
    pub fn without(&self, op: Op) -> Option<Mix> {
        let entries: Vec<(Op, u32)> = self.entries.iter().copied().filter(|(o, _)| *o != op).collect();
        (!entries.is_empty()).then_some(Mix { entries })
    }

    pub fn contains(&self, op: Op) -> bool {
        self.entries.iter().any(|(o, _)| *o == op)
    }

    fn total(&self) -> u64 {
        self.entries.iter().map(|(_, w)| u64::from(*w)).sum()
    }

    /// Draws one operation with probability weight / total.
    pub fn choose(&self, rng: &mut Rng) -> Op {
        let mut ticket = rng.below(self.total());
        for (op, weight) in &self.entries {
            let weight = u64::from(*weight);
            if ticket < weight {
                return *op;
            }
            ticket -= weight;
        }
        // Unreachable while total() > 0, which parsing guarantees; the last entry is a safe answer.
        self.entries.last().map_or(Op::Noop, |(op, _)| *op)
    }

    /// The operations of `n` requests, drawn in order from `rng`.
    pub fn plan(&self, n: usize, rng: &mut Rng) -> Vec<Op> {
        if self.entries.len() == 1 {
            return vec![self.entries[0].0; n];
        }
        (0..n).map(|_| self.choose(rng)).collect()
    }
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(text: &str) -> Result<Mix, MixError> {
        let mut entries: Vec<(Op, u32)> = Vec::new();
        let mut named = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| MixError::Malformed(part.to_owned()))?;
            let (name, weight) = (name.trim(), weight.trim());
            let op = Op::parse(name).ok_or_else(|| MixError::UnknownOp {
                name: name.to_owned(),
                known: Op::all().map(Op::name).collect::<Vec<_>>().join(", "),
            })?;
            let weight: u32 = weight
                .parse()
                .ok()
                .filter(|w| *w <= MAX_WEIGHT)
                .ok_or_else(|| MixError::BadWeight(name.to_owned()))?;
            if named.contains(&op) {
                return Err(MixError::Duplicate(name.to_owned()));
            }
            named.push(op);
            if weight > 0 {
                entries.push((op, weight));
            }
        }
        if named.is_empty() {
            return Err(MixError::Empty);
        }
        if entries.is_empty() {
            return Err(MixError::AllZero);
        }
        Ok(Mix { entries })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, weight)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={weight}", op.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights_in_order_and_prints_them_back() {
        let mix: Mix = "attach=5, detach=1,read=10".parse().unwrap();
        assert_eq!(mix.ops().collect::<Vec<_>>(), vec![Op::Attach, Op::Detach, Op::Read]);
        assert_eq!(mix.to_string(), "attach=5,detach=1,read=10");
        assert_eq!(mix.to_string().parse::<Mix>().unwrap(), mix);
    }

    #[test]
    fn zero_weights_drop_the_operation() {
        let mix: Mix = "attach=0,read=1".parse().unwrap();
        assert_eq!(mix.ops().collect::<Vec<_>>(), vec![Op::Read]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!("".parse::<Mix>(), Err(MixError::Empty));
        assert_eq!("attach".parse::<Mix>(), Err(MixError::Malformed("attach".into())));
        assert!(matches!("teleport=1".parse::<Mix>(), Err(MixError::UnknownOp { .. })));
        assert_eq!("attach=-1".parse::<Mix>(), Err(MixError::BadWeight("attach".into())));
        assert_eq!("attach=x".parse::<Mix>(), Err(MixError::BadWeight("attach".into())));
        assert_eq!("attach=2000000".parse::<Mix>(), Err(MixError::BadWeight("attach".into())));
        assert_eq!("attach=1,attach=2".parse::<Mix>(), Err(MixError::Duplicate("attach".into())));
        assert_eq!("attach=0".parse::<Mix>(), Err(MixError::AllZero));
    }

    #[test]
    fn the_same_seed_draws_the_same_plan() {
        let mix: Mix = "attach=5,detach=1,read=10".parse().unwrap();
        let a = mix.plan(500, &mut Rng::new(3));
        let b = mix.plan(500, &mut Rng::new(3));
        let c = mix.plan(500, &mut Rng::new(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn draws_follow_the_weights() {
        let mix: Mix = "attach=5,detach=1,read=10,list=4".parse().unwrap();
        let plan = mix.plan(200_000, &mut Rng::new(17));
        for (op, weight) in [(Op::Attach, 5.0), (Op::Detach, 1.0), (Op::Read, 10.0), (Op::List, 4.0)] {
            let share = plan.iter().filter(|o| **o == op).count() as f64 / plan.len() as f64;
            let expected = weight / 20.0;
            assert!((share - expected).abs() < 0.01, "{op:?}: {share} vs {expected}");
        }
    }

    #[test]
    fn an_operation_can_be_taken_out() {
        let mix: Mix = "attach=5,credit_note=1".parse().unwrap();
        assert_eq!(mix.without(Op::CreditNote).unwrap().to_string(), "attach=5");
        assert_eq!(mix.without(Op::Read), Some(mix.clone()));
        assert_eq!(Mix::solo(Op::CreditNote).without(Op::CreditNote), None);
    }

    #[test]
    fn a_solo_mix_is_all_one_operation() {
        assert!(Mix::solo(Op::Pay).plan(10, &mut Rng::new(1)).iter().all(|op| *op == Op::Pay));
    }
}
