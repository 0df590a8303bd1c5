//! Where the generator's choices come from: a seeded ChaCha stream (the stable harness) or the
//! fuzzer's input bytes (cargo-fuzz), so both drive the same generator.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// A stream of choices.
pub trait Source {
    /// 64 bits of choice.
    fn next_u64(&mut self) -> u64;

    /// Fills `dst` with choice bytes.
    fn fill(&mut self, dst: &mut [u8]);

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `num / den`; false for choice 0 (see [`Bytes`]).
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) >= den.saturating_sub(num)
    }

    /// True with probability `per_mille / 1000`; false for choice 0.
    fn per_mille(&mut self, per_mille: u32) -> bool {
        self.chance(u64::from(per_mille), 1_000)
    }
}

impl dyn Source + '_ {
    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Choices from ChaCha20 seeded with a `u64`: a run is reproduced by its seed.
pub struct Seeded(ChaCha20Rng);

impl Seeded {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Seeded(ChaCha20Rng::seed_from_u64(seed))
    }
}

impl Source for Seeded {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

/// Choices read from fuzzer input, as few bytes as each choice needs, so that a mutation of the
/// input changes one decision; zeros once the input is used up (the generator makes choice 0 the
/// cheap and plain one, so a short input cannot ask for the most expensive frame).
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    /// Choices from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, at: 0 }
    }

    /// Whether every input byte has been used.
    pub fn is_exhausted(&self) -> bool {
        self.at >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at = self.at.saturating_add(1);
        b
    }
}

impl Source for Bytes<'_> {
    fn next_u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte()))
    }

    fn fill(&mut self, dst: &mut [u8]) {
        dst.iter_mut().for_each(|b| *b = self.byte());
    }

    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let mut v = 0u64;
        let mut span = 1u128;
        while span < u128::from(n) {
            v = (v << 8) | u64::from(self.byte());
            span <<= 8;
        }
        v % n
    }
}
