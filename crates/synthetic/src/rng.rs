//! A small deterministic pseudo-random number generator (SplitMix64). Not for cryptography: it
//! only has to give the same synthetic data for the same seed on every platform and every run.

/// SplitMix64 (Steele, Lea and Flood 2014): 64 bits of state, passes BigCrush, trivially seedable.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a good 64-bit mixing function on its own.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Independent streams, one per (seed, patient index, purpose), so that generating one source
/// never shifts the data of another: the GP, social care and HL7 generators all see the same
/// people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Person = 1,
    Gp = 2,
    SocialCare = 3,
    Hl7 = 4,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng {
            state: mix(seed ^ GOLDEN),
        }
    }

    pub(crate) fn for_patient(seed: u64, index: usize, stream: Stream) -> Rng {
        let index = index as u64;
        Rng::new(mix(seed).wrapping_add(mix(index.wrapping_mul(8).wrapping_add(stream as u64))))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift (bias below 2^-32 for the sizes used here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// A number in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo + 1) as usize) as i64
    }

    /// True with probability `per_mille / 1000`.
    pub(crate) fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < per_mille as usize
    }

    /// A float in `[lo, hi)`, rounded to `decimals` places.
    pub(crate) fn real(&mut self, lo: f64, hi: f64, decimals: i32) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let scale = 10f64.powi(decimals);
        ((lo + unit * (hi - lo)) * scale).round() / scale
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Picks by weight: `items` are `(weight, value)`.
    pub(crate) fn weighted<'a, T>(&mut self, items: &'a [(u32, T)]) -> &'a T {
        let total: u32 = items.iter().map(|(w, _)| w).sum();
        let mut roll = self.below(total as usize) as u32;
        for (w, v) in items {
            if roll < *w {
                return v;
            }
            roll -= w;
        }
        &items[items.len() - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        let mut gp = Rng::for_patient(7, 3, Stream::Gp);
        let mut sc = Rng::for_patient(7, 3, Stream::SocialCare);
        assert_ne!(gp.next_u64(), sc.next_u64());
    }

    #[test]
    fn bounded_draws_stay_in_bounds() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            let v = r.range(-3, 3);
            assert!((-3..=3).contains(&v));
            let f = r.real(1.0, 2.0, 1);
            assert!((1.0..=2.0).contains(&f));
        }
    }
}
