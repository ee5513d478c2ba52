//! The memory every kernel works in and the generator of its input data. The
//! kernels' own layouts and what they fill in are with each kernel (`kernels`).

use super::spans::Span;
use std::hint::black_box;

/// All the kernels' arrays: one arena of floats and one of integers, which every
/// kernel carves into its named arrays from the start (as the original's COMMON
/// block was shared), so each kernel overwrites the data of the one before.
pub struct Workspace {
    pub(super) f: Vec<f64>,
    pub(super) i: Vec<i64>,
}

// `Workspace::new` is with the kernel table (`kernels`): the arena's size comes
// from every kernel's layout, and this module, below the kernels, imports none.

/// The arenas, hidden from the optimiser: it must assume every repetition reads
/// and writes them anew.
pub(super) fn opaque(ws: &mut Workspace) -> (&mut [f64], &mut [i64]) {
    black_box((&mut ws.f[..], &mut ws.i[..]))
}

/// xorshift64 (13, 7, 17), seeded per kernel and span.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(kernel: usize, span: Span) -> Rng {
        let seed = (kernel as u64 * 3 + span as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = Rng(seed | 1);
        for _ in 0..4 {
            rng.bits();
        }
        rng
    }

    fn bits(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        self.0 = s;
        s
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(super) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub(super) fn fill(&mut self, v: &mut [f64], lo: f64, hi: f64) {
        for x in v {
            *x = self.uniform(lo, hi);
        }
    }

    /// Uniform integer in lo..=hi.
    pub(super) fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.bits() % (hi - lo + 1) as u64) as i64
    }

    /// Multiples of 1/`denom` (a power of two) from lo/denom to hi/denom: values whose
    /// sums and products stay exact.
    pub(super) fn fill_binary(&mut self, v: &mut [f64], lo: i64, hi: i64, denom: f64) {
        for x in v {
            *x = self.int(lo, hi) as f64 / denom;
        }
    }
}

/// Splits the start of an arena into arrays of the given lengths.
pub(super) fn carve<T, const N: usize>(mut rest: &mut [T], lens: [usize; N]) -> [&mut [T]; N] {
    lens.map(|len| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        head
    })
}

pub(super) fn total<const N: usize>(lens: [usize; N]) -> usize {
    lens.iter().sum()
}

/// The sum of `v` weighted by position (1, 2, 3, …).
pub(super) fn weigh(v: &[f64]) -> f64 {
    let mut sum = 0.0;
    for (i, x) in v.iter().enumerate() {
        sum += x * (i + 1) as f64;
    }
    sum
}
