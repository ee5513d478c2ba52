//! The Livermore Fortran Kernels (the "Livermore loops"): 24 DO loops that F. H.
//! McMahon took from the production codes of Lawrence Livermore to measure the range
//! of floating-point rates a machine and its compiler deliver, from vectorisable
//! streams (kernels 1, 7, 12) to recurrences, gathers and branchy searches that no
//! hardware speeds up (5, 11, 16, 17, 20). They are written here, kernel by kernel,
//! from the published description of the benchmark: F. H. McMahon, "The Livermore
//! Fortran Kernels: A Computer Test of the Numerical Performance Range", UCRL-53745,
//! Lawrence Livermore National Laboratory, 1986. Each keeps its kernel's computation
//! and loop structure; data, constants and array shapes are our own.
//!
//! # Spans
//!
//! The benchmark runs every kernel at three sets of DO-loop lengths ("spans"): long,
//! medium and short, so one sees both the streaming rate and the start-up cost of a
//! loop. [`span_len`] gives them; they follow the original sets (kernels whose
//! arrays the original dimensioned at about 100 have long = medium):
//!
//! ```text
//! kernel   1   2    3    4    5  6   7   8   9  10   11   12 13   14  15 16  17  18  19   20  21  22  23   24
//! long  1001 101 1001 1001 1001 64 995 100 101 101 1001 1000 64 1001 101 75 101 100 101 1000 101 101 100 1001
//! medium 101 101  101  101  101 32 101 100 101 101  101  100 32  101 101 40 101 100 101  100  50 101 100  101
//! short   27  15   27   27   27  8  21  14  15  15   27   26  8   27  15 15  15  14  15   26  20  15  14   27
//! ```
//!
//! What the span counts differs by kernel: the particles of 13 and 14, the
//! searches of 16, the matrix columns of 21, the order of the recurrence in 6, the
//! inner loop of the 2-D kernels 8, 15, 18 and 23 (their outer one is fixed), the
//! terms of each band row in 4, the unknowns of the first level in 2.
//!
//! # Flops
//!
//! [`flops`] counts the floating-point operations of one execution, read off the
//! code below with McMahon's weights: add, subtract, multiply and a comparison of
//! two values (`<`, `min`, `max`) count 1, divide and square root 4, `exp` 8. A test
//! of the sign of a value already computed is free (it is the arithmetic IF of the
//! Fortran), and so are integer and conversion operations. The two kernels whose
//! work depends on their data (16: how far each search runs, 17: which branch each
//! step takes) count the paths their fixed data takes; the kernel counts them as it
//! runs and a test checks the pinned figures. Per innermost iteration:
//!
//! ```text
//! kernel  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15    16   17 18 19 20 21 22 23 24
//! flops   5  4  2  2  2  2 16 36 17  9  1  1  7 11 29 1/10 6-9 50  6 25  2 17 11  1
//! ```
//!
//! (15: 29 at an interior point, 15 on its last column, none on its last row; 16: 1
//! per zone compared, 10 per distance test; 17: 6, 7 or 9 by branch; 18: over its
//! three loops; 22 adds 1 for its last u.)
//!
//! # Checksums
//!
//! Every call of [`run_kernel`] re-initialises its kernel's data from a fixed
//! generator, repeats the kernel `reps` times and returns a checksum of its outputs
//! (sums weighted by position, so a wrong or misplaced element changes it). Every
//! repetition computes the same thing, so the checksum does not depend on `reps` and
//! can be pinned ([`expected_checksum`]). The original let the data drift from one
//! repetition to the next where a kernel updates an array in place; here such a
//! kernel reads its inputs from a pristine copy and writes the working array (4, 10,
//! 13, 17, 18: one execution computes exactly that), restores the array when the
//! in-place sweep is the point (21, 23), clears the grid nodes it deposits on (14),
//! or, for the charge counts of 13, which are whole numbers and so add up exactly,
//! divides them by `reps`. `std::hint::black_box` hides the arrays from the
//! optimiser at every repetition, so none can be skipped.
//!
//! A checksum that differs from the pinned value is an error, never a number: it
//! means the compiler or the machine computed the kernel wrongly, or, as this
//! workload runs in a VM being live-migrated, that the guest's memory was corrupted
//! under it (a page lost, zeroed or left stale across the migration). All kernels
//! share one arena of memory, as the original's COMMON block did, so a stale page
//! left from an earlier kernel shows as wrong data too (a page a kernel rewrote with
//! the very values it held cannot be told from a fresh one, of course). The check
//! allows a relative difference of [`TOLERANCE`]: gross damage (a page of zeros or of
//! another kernel's data) shows, a flip of one low mantissa bit may not. Plain `f64`
//! arithmetic is correctly rounded and Rust never fuses or reorders it, so the
//! checksums are the same at every optimisation level and CPU; only kernel 22's
//! `exp` may differ by an ulp between C libraries, which the tolerance absorbs. The
//! kernels that turn floats into indices (13, 14) use data on a binary grid, so
//! their arithmetic is exact and no index sits one rounding away from the next cell.

// The kernels are the benchmark's indexed DO loops, on purpose.
#![allow(clippy::needless_range_loop)]

use std::hint::black_box;
use std::time::Instant;

/// The number of kernels.
pub const KERNELS: usize = 24;

/// The repetitions [`expected_checksum`] is pinned for (any count gives the same).
pub const REPS_FOR_CHECK: u32 = 3;

/// A checksum further than this (relative) from the pinned value is wrong.
pub const TOLERANCE: f64 = 1e-10;

/// Floating-point operations per kernel in a [`pass`] at scale 1: 0.3 s for all 24
/// kernels on a 2020s x86 core.
const PASS_FLOPS: f64 = 2.0e7;

/// The three DO-loop span sets of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Short,
    Medium,
    Long,
}

impl Span {
    pub const ALL: [Span; 3] = [Span::Short, Span::Medium, Span::Long];

    pub fn name(self) -> &'static str {
        match self {
            Span::Short => "short",
            Span::Medium => "medium",
            Span::Long => "long",
        }
    }
}

/// Loop lengths per kernel: short, medium, long (see the module's table).
const SPANS: [[usize; 3]; KERNELS] = [
    [27, 101, 1001],
    [15, 101, 101],
    [27, 101, 1001],
    [27, 101, 1001],
    [27, 101, 1001],
    [8, 32, 64],
    [21, 101, 995],
    [14, 100, 100],
    [15, 101, 101],
    [15, 101, 101],
    [27, 101, 1001],
    [26, 100, 1000],
    [8, 32, 64],
    [27, 101, 1001],
    [15, 101, 101],
    [15, 40, 75],
    [15, 101, 101],
    [14, 100, 100],
    [15, 101, 101],
    [26, 100, 1000],
    [20, 50, 101],
    [15, 101, 101],
    [14, 100, 100],
    [27, 101, 1001],
];

fn slot(kernel: usize) -> usize {
    assert!((1..=KERNELS).contains(&kernel), "Livermore kernels are numbered 1 to {KERNELS}, not {kernel}");
    kernel - 1
}

/// The loop length of `kernel` (1 to 24) at `span`.
pub fn span_len(kernel: usize, span: Span) -> usize {
    SPANS[slot(kernel)][span as usize]
}

/// What each kernel computes, as the benchmark names it.
pub fn name(kernel: usize) -> &'static str {
    TABLE[slot(kernel)].name
}

/// Floating-point operations of one execution of `kernel` at `span`, counted from
/// the code below with McMahon's weights (add, subtract, multiply, compare 1;
/// divide, square root 4; exp 8), as the module documentation details.
pub fn flops(kernel: usize, span: Span) -> f64 {
    let n = span_len(kernel, span);
    let ops = match kernel {
        1 => 5 * n,
        2 => 4 * iccg_steps(n),
        3 => 2 * n,
        4 => 3 * (2 * (n / 5) + 1),
        5 => 2 * (n - 1),
        6 => n * (n - 1),
        7 => 16 * n,
        8 => 36 * 2 * (n - 1),
        9 => 17 * n,
        10 => 9 * n,
        11 => n - 1,
        12 => n,
        13 => 7 * n,
        14 => 11 * n,
        15 => (NG - 2) * (29 * (n - 2) + 15),
        16 => {
            let [compares, tests] = K16_COUNTS[span as usize];
            compares + 10 * tests
        }
        17 => {
            let [a, b, c] = K17_PATHS[span as usize];
            6 * a + 7 * b + 9 * c
        }
        18 => 50 * 5 * (n - 1),
        19 => 6 * n,
        20 => 25 * n,
        21 => 2 * 25 * 25 * n,
        22 => 17 * n + 1,
        23 => 11 * 5 * (n - 1),
        24 => n - 1,
        _ => unreachable!("span_len checks the kernel number"),
    };
    ops as f64
}

/// All the kernels' arrays: one arena of floats and one of integers, which every
/// kernel carves into its named arrays from the start (as the original's COMMON
/// block was shared), so each kernel overwrites the data of the one before.
pub struct Workspace {
    f: Vec<f64>,
    i: Vec<i64>,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        let (mut nf, mut ni) = (0, 0);
        for k in 1..=KERNELS {
            for span in Span::ALL {
                let (f, i) = need(k, span_len(k, span));
                nf = nf.max(f);
                ni = ni.max(i);
            }
        }
        Workspace { f: vec![0.0; nf], i: vec![0; ni] }
    }
}

/// Runs kernel `k` at `span`: re-initialises that kernel's data (so every call
/// computes the same thing), executes the kernel `reps` times (at least once) and
/// returns the checksum of its outputs.
///
/// # Panics
///
/// If `k` is not 1 to 24.
pub fn run_kernel(ws: &mut Workspace, k: usize, span: Span, reps: u32) -> f64 {
    init(ws, k, span);
    execute(ws, k, span, reps)
}

/// The checksum of `run_kernel(ws, k, span, REPS_FOR_CHECK)`, pinned.
pub fn expected_checksum(k: usize, span: Span) -> f64 {
    f64::from_bits(EXPECTED[slot(k)][span as usize])
}

/// One kernel's time in a pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelTime {
    pub kernel: usize,
    /// Floating-point operations done in `seconds`: all repetitions.
    pub flops: f64,
    pub seconds: f64,
}

impl KernelTime {
    pub fn mflops(&self) -> f64 {
        self.flops / self.seconds / 1e6
    }
}

/// All 24 kernels run once at one span.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub span: Span,
    pub kernels: [KernelTime; KERNELS],
}

impl Pass {
    /// The means of the 24 kernels' rates.
    pub fn means(&self) -> Means {
        means(&self.kernels.map(|t| t.mflops()))
    }
}

/// The benchmark's summary of a set of rates. The arithmetic mean is ruled by the
/// fastest kernels, the harmonic by the slowest (it is the rate of running all of
/// them for equal flops), the geometric sits between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Means {
    pub arithmetic: f64,
    pub geometric: f64,
    pub harmonic: f64,
}

/// The arithmetic, geometric and harmonic means of positive rates (all 0 for none).
pub fn means(mflops: &[f64]) -> Means {
    if mflops.is_empty() {
        return Means { arithmetic: 0.0, geometric: 0.0, harmonic: 0.0 };
    }
    let n = mflops.len() as f64;
    Means {
        arithmetic: mflops.iter().sum::<f64>() / n,
        geometric: (mflops.iter().map(|x| x.ln()).sum::<f64>() / n).exp(),
        harmonic: n / mflops.iter().map(|x| 1.0 / x).sum::<f64>(),
    }
}

/// The repetitions of `kernel` in a pass at `scale`: about `scale` × 2·10⁷ flops,
/// so every kernel gets roughly the same work (at least one repetition).
pub fn reps_for(kernel: usize, span: Span, scale: f64) -> u32 {
    ((scale * PASS_FLOPS / flops(kernel, span)).round() as u32).max(1)
}

/// Rates accumulated over many passes: flops and seconds per span and kernel, so
/// the summary means can be reported while the workload keeps running.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    work: [[(f64, f64); KERNELS]; 3],
}

impl Default for Tally {
    fn default() -> Tally {
        Tally { work: [[(0.0, 0.0); KERNELS]; 3] }
    }
}

impl Tally {
    pub fn add(&mut self, p: &Pass) {
        let row = &mut self.work[Span::ALL.iter().position(|s| *s == p.span).unwrap_or(0)];
        for t in &p.kernels {
            if let Some(slot) = row.get_mut(t.kernel.wrapping_sub(1)) {
                slot.0 += t.flops;
                slot.1 += t.seconds;
            }
        }
    }

    /// Each kernel's MFLOPS at `span`; none until every kernel has run there.
    pub fn mflops(&self, span: Span) -> Option<Vec<f64>> {
        let row = &self.work[Span::ALL.iter().position(|s| *s == span).unwrap_or(0)];
        row.iter().map(|(f, s)| (*s > 0.0).then(|| f / s / 1e6)).collect()
    }

    /// The benchmark's report line: `short=AM/GM/HM medium=… long=… all=…` (MFLOPS),
    /// with `all` over the 72 kernel rates of the three spans.
    pub fn report(&self) -> Option<String> {
        let mut parts = Vec::new();
        let mut all = Vec::new();
        for span in Span::ALL {
            let rates = self.mflops(span)?;
            let m = means(&rates);
            parts.push(format!("{}={:.2}/{:.2}/{:.2}", span.name(), m.arithmetic, m.geometric, m.harmonic));
            all.extend(rates);
        }
        let m = means(&all);
        parts.push(format!("all={:.2}/{:.2}/{:.2}", m.arithmetic, m.geometric, m.harmonic));
        Some(parts.join(" "))
    }
}

/// Reads a [`Tally::report`] line back: (span name or "all", means).
pub fn parse_report(line: &str) -> Vec<(String, Means)> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let n: Vec<f64> = v.split('/').map(|x| x.parse().ok()).collect::<Option<_>>()?;
            match n[..] {
                [a, g, h] => Some((k.to_string(), Means { arithmetic: a, geometric: g, harmonic: h })),
                _ => None,
            }
        })
        .collect()
}

/// Runs all 24 kernels at `span`, each [`reps_for`] times and timed, and checks
/// every checksum: a wrong one is an error naming the kernel.
pub fn pass(ws: &mut Workspace, span: Span, scale: f64) -> Result<Pass, String> {
    pass_against(ws, span, scale, expected_checksum)
}

fn pass_against(ws: &mut Workspace, span: Span, scale: f64, expected: fn(usize, Span) -> f64) -> Result<Pass, String> {
    let mut kernels = [KernelTime { kernel: 0, flops: 0.0, seconds: 0.0 }; KERNELS];
    for (slot, time) in kernels.iter_mut().enumerate() {
        let k = slot + 1;
        let reps = reps_for(k, span, scale);
        init(ws, k, span);
        let start = Instant::now();
        let sum = execute(ws, k, span, reps);
        let seconds = start.elapsed().as_secs_f64().max(1e-9);
        check(k, span, sum, expected(k, span))?;
        *time = KernelTime { kernel: k, flops: flops(k, span) * reps as f64, seconds };
    }
    Ok(Pass { span, kernels })
}

fn check(k: usize, span: Span, got: f64, want: f64) -> Result<(), String> {
    if (got - want).abs() <= TOLERANCE * want.abs() {
        return Ok(());
    }
    Err(format!(
        "livermore kernel {k} ({}), {} span: checksum {got:.17e}, must be {want:.17e}: the result is wrong \
         (miscompiled, or the memory under it was corrupted)",
        name(k),
        span.name()
    ))
}

// ---- Machinery ---------------------------------------------------------------

/// xorshift64 (13, 7, 17), seeded per kernel and span.
struct Rng(u64);

impl Rng {
    fn new(kernel: usize, span: Span) -> Rng {
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
    fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn fill(&mut self, v: &mut [f64], lo: f64, hi: f64) {
        for x in v {
            *x = self.uniform(lo, hi);
        }
    }

    /// Uniform integer in lo..=hi.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.bits() % (hi - lo + 1) as u64) as i64
    }

    /// Multiples of 1/`denom` (a power of two) from lo/denom to hi/denom: values whose
    /// sums and products stay exact.
    fn fill_binary(&mut self, v: &mut [f64], lo: i64, hi: i64, denom: f64) {
        for x in v {
            *x = self.int(lo, hi) as f64 / denom;
        }
    }
}

/// Splits the start of an arena into arrays of the given lengths.
fn carve<T, const N: usize>(mut rest: &mut [T], lens: [usize; N]) -> [&mut [T]; N] {
    lens.map(|len| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        head
    })
}

fn total<const N: usize>(lens: [usize; N]) -> usize {
    lens.iter().sum()
}

/// The sum of `v` weighted by position (1, 2, 3, …).
fn weigh(v: &[f64]) -> f64 {
    let mut sum = 0.0;
    for (i, x) in v.iter().enumerate() {
        sum += x * (i + 1) as f64;
    }
    sum
}

type Init = fn(&mut Workspace, usize, &mut Rng);
type Run = fn(&mut Workspace, usize, u32) -> f64;

struct Kernel {
    name: &'static str,
    init: Init,
    run: Run,
}

const TABLE: [Kernel; KERNELS] = [
    Kernel { name: "hydro fragment", init: init01, run: run01 },
    Kernel { name: "ICCG excerpt (incomplete Cholesky conjugate gradient)", init: init02, run: run02 },
    Kernel { name: "inner product", init: init03, run: run03 },
    Kernel { name: "banded linear equations", init: init04, run: run04 },
    Kernel { name: "tri-diagonal elimination, below diagonal", init: init05, run: run05 },
    Kernel { name: "general linear recurrence equations", init: init06, run: run06 },
    Kernel { name: "equation of state fragment", init: init07, run: run07 },
    Kernel { name: "ADI integration", init: init08, run: run08 },
    Kernel { name: "integrate predictors", init: init09, run: run09 },
    Kernel { name: "difference predictors", init: init10, run: run10 },
    Kernel { name: "first sum", init: init11, run: run11 },
    Kernel { name: "first difference", init: init12, run: run12 },
    Kernel { name: "2-D particle in cell", init: init13, run: run13 },
    Kernel { name: "1-D particle in cell", init: init14, run: run14 },
    Kernel { name: "casual Fortran (development version)", init: init15, run: run15 },
    Kernel { name: "Monte Carlo search loop", init: init16, run: run16 },
    Kernel { name: "implicit, conditional computation", init: init17, run: run17 },
    Kernel { name: "2-D explicit hydrodynamics fragment", init: init18, run: run18 },
    Kernel { name: "general linear recurrence equations", init: init19, run: run19 },
    Kernel { name: "discrete ordinates transport", init: init20, run: run20 },
    Kernel { name: "matrix*matrix product", init: init21, run: run21 },
    Kernel { name: "Planckian distribution", init: init22, run: run22 },
    Kernel { name: "2-D implicit hydrodynamics fragment", init: init23, run: run23 },
    Kernel { name: "find location of first minimum in array", init: init24, run: run24 },
];

/// The floats and integers kernel `k` uses at loop length `n`.
fn need(k: usize, n: usize) -> (usize, usize) {
    match k {
        1 => (total(lay01(n)), 0),
        2 => (total(lay02(n)), 0),
        3 => (total(lay03(n)), 0),
        4 => (total(lay04(n)), 0),
        5 => (total(lay05(n)), 0),
        6 => (total(lay06(n)), 0),
        7 => (total(lay07(n)), 0),
        8 => (total(lay08(n)), 0),
        9 => (total(lay09(n)), 0),
        10 => (total(lay10(n)), 0),
        11 => (total(lay11(n)), 0),
        12 => (total(lay12(n)), 0),
        13 => (total(lay13(n)), total(ilay13())),
        14 => (total(lay14(n)), total(ilay14(n))),
        15 => (total(lay15(n)), 0),
        16 => (total(lay16(n)), total(ilay16(n))),
        17 => (total(lay17(n)), 0),
        18 => (total(lay18(n)), 0),
        19 => (total(lay19(n)), 0),
        20 => (total(lay20(n)), 0),
        21 => (total(lay21(n)), 0),
        22 => (total(lay22(n)), 0),
        23 => (total(lay23(n)), 0),
        24 => (total(lay24(n)), 0),
        _ => unreachable!("Livermore kernels are numbered 1 to {KERNELS}, not {k}"),
    }
}

/// Clears kernel `k`'s part of the arenas and fills its inputs.
fn init(ws: &mut Workspace, k: usize, span: Span) {
    let n = span_len(k, span);
    let (nf, ni) = need(k, n);
    ws.f[..nf].fill(0.0);
    ws.i[..ni].fill(0);
    (TABLE[slot(k)].init)(ws, n, &mut Rng::new(k, span));
}

/// Runs kernel `k` on the data `init` left, `reps` times; returns the checksum.
fn execute(ws: &mut Workspace, k: usize, span: Span, reps: u32) -> f64 {
    (TABLE[slot(k)].run)(ws, span_len(k, span), reps.max(1))
}

/// The arenas, hidden from the optimiser: it must assume every repetition reads
/// and writes them anew.
fn opaque(ws: &mut Workspace) -> (&mut [f64], &mut [i64]) {
    black_box((&mut ws.f[..], &mut ws.i[..]))
}

// ---- 1: hydro fragment ---------------------------------------------------------

fn lay01(n: usize) -> [usize; 3] {
    [n, n, n + 11] // x, y, zx
}

fn init01(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y, zx] = carve(&mut ws.f, lay01(n));
    rng.fill(y, 0.0, 1.0);
    rng.fill(zx, 0.0, 1.0);
}

fn run01(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const Q: f64 = 0.5;
    const R: f64 = 0.25;
    const T: f64 = 0.125;
    for _ in 0..reps {
        let [x, y, zx] = carve(opaque(ws).0, lay01(n));
        for k in 0..n {
            x[k] = Q + y[k] * (R * zx[k + 10] + T * zx[k + 11]);
        }
    }
    let [x, ..] = carve(&mut ws.f, lay01(n));
    weigh(x)
}

// ---- 2: ICCG excerpt -------------------------------------------------------------

/// x holds the n unknowns, then each level of the reduction: n/2, n/4, … values.
fn lay02(n: usize) -> [usize; 2] {
    [2 * n + 2, 2 * n + 2] // x, v
}

/// Inner iterations of kernel 2: a level of width w eliminates every other
/// unknown, w/2 of them, and the next level has that width.
fn iccg_steps(n: usize) -> usize {
    let (mut width, mut steps) = (n, 0);
    while width > 0 {
        steps += width / 2;
        width /= 2;
    }
    steps
}

fn init02(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x, v] = carve(&mut ws.f, lay02(n));
    rng.fill(&mut x[..n], 0.0, 1.0);
    rng.fill(v, -0.25, 0.25);
}

fn run02(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let [x, v] = carve(opaque(ws).0, lay02(n));
        // A level reads the unknowns at start..=end and appends its results at end.
        let (mut width, mut end) = (n, 0);
        while width > 0 {
            let start = end;
            end += width;
            let mut i = end;
            let mut k = start + 1;
            while k < end {
                x[i] = x[k] - v[k] * x[k - 1] - v[k + 1] * x[k + 1];
                i += 1;
                k += 2;
            }
            width /= 2;
        }
    }
    let [x, _] = carve(&mut ws.f, lay02(n));
    weigh(x)
}

// ---- 3: inner product ------------------------------------------------------------

fn lay03(n: usize) -> [usize; 2] {
    [n, n] // x, z
}

fn init03(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x, z] = carve(&mut ws.f, lay03(n));
    rng.fill(x, -1.0, 1.0);
    rng.fill(z, -1.0, 1.0);
}

fn run03(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    let mut q = 0.0;
    for _ in 0..reps {
        let [x, z] = carve(opaque(ws).0, lay03(n));
        q = 0.0;
        for k in 0..n {
            q += z[k] * x[k];
        }
        q = black_box(q);
    }
    q
}

// ---- 4: banded linear equations --------------------------------------------------

/// The three band rows sit in the original's 1001 unknowns whatever the span; the
/// span sets how far each row reaches along y (n/5 terms).
fn lay04(n: usize) -> [usize; 4] {
    [1001, 1001 + n / 5, n, 3] // x, xz, y, the three x(k-1) as they were
}

/// The band's three rows, 1-based: k = 7, 504, 1001.
const BAND_STEP: usize = (1001 - 7) / 2;

fn init04(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x, xz, y, x0] = carve(&mut ws.f, lay04(n));
    rng.fill(x, 0.0, 1.0);
    rng.fill(xz, -1.0, 1.0);
    rng.fill(y, -1.0, 1.0);
    for (kk, k) in (7..=1001).step_by(BAND_STEP).enumerate() {
        x0[kk] = x[k - 2];
    }
}

fn run04(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let [x, xz, y, x0] = carve(opaque(ws).0, lay04(n));
        // k is the original's 1-based row: x(k-1) is x[k - 2], xz(k-6) is xz[k - 7].
        for (kk, k) in (7..=1001).step_by(BAND_STEP).enumerate() {
            let mut temp = x0[kk];
            // lw walks along the band row as j steps through y by 5.
            for (lw, j) in (k - 7..).zip((4..n).step_by(5)) {
                temp -= xz[lw] * y[j];
            }
            x[k - 2] = y[4] * temp;
        }
    }
    let [x, ..] = carve(&mut ws.f, lay04(n));
    weigh(x)
}

// ---- 5: tri-diagonal elimination, below diagonal ----------------------------------

fn lay05(n: usize) -> [usize; 3] {
    [n, n, n] // x, y, z
}

fn init05(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x, y, z] = carve(&mut ws.f, lay05(n));
    x[0] = rng.uniform(0.0, 1.0);
    rng.fill(y, 0.0, 1.0);
    rng.fill(z, -0.9, 0.9);
}

fn run05(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let [x, y, z] = carve(opaque(ws).0, lay05(n));
        for i in 1..n {
            x[i] = z[i] * (y[i] - x[i - 1]);
        }
    }
    let [x, ..] = carve(&mut ws.f, lay05(n));
    weigh(x)
}

// ---- 6: general linear recurrence equations -----------------------------------------

fn lay06(n: usize) -> [usize; 2] {
    [n, n * n] // w, b (column-major: b(i,k) is b[(k-1)·n + i])
}

fn init06(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [w, b] = carve(&mut ws.f, lay06(n));
    w[0] = rng.uniform(0.5, 1.0);
    // Coefficients of at most 1/n in size keep the recurrence from growing.
    let c = 1.0 / n as f64;
    rng.fill(b, -c, c);
}

fn run06(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let [w, b] = carve(opaque(ws).0, lay06(n));
        for i in 1..n {
            let mut wi = 0.01;
            for k in 1..=i {
                wi += b[(k - 1) * n + i] * w[i - k];
            }
            w[i] = wi;
        }
    }
    let [w, _] = carve(&mut ws.f, lay06(n));
    weigh(w)
}

// ---- 7: equation of state fragment ----------------------------------------------------

fn lay07(n: usize) -> [usize; 4] {
    [n, n, n, n + 6] // x, y, z, u
}

fn init07(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y, z, u] = carve(&mut ws.f, lay07(n));
    rng.fill(y, 0.0, 1.0);
    rng.fill(z, 0.0, 1.0);
    rng.fill(u, 0.0, 1.0);
}

fn run07(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const Q: f64 = 0.4;
    const R: f64 = 0.2;
    const T: f64 = 0.3;
    for _ in 0..reps {
        let [x, y, z, u] = carve(opaque(ws).0, lay07(n));
        for k in 0..n {
            x[k] = u[k]
                + R * (z[k] + R * y[k])
                + T * (u[k + 3] + R * (u[k + 2] + R * u[k + 1]) + T * (u[k + 6] + Q * (u[k + 5] + Q * u[k + 4])));
        }
    }
    let [x, ..] = carve(&mut ws.f, lay07(n));
    weigh(x)
}

// ---- 8: ADI integration ------------------------------------------------------------

/// u1, u2, u3 are (5, n+1, 2) arrays (kx, ky, time level), then du1, du2, du3.
fn lay08(n: usize) -> [usize; 6] {
    [10 * (n + 1), 10 * (n + 1), 10 * (n + 1), n + 1, n + 1, n + 1]
}

fn init08(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [u1, u2, u3, ..] = carve(&mut ws.f, lay08(n));
    let level = 5 * (n + 1);
    rng.fill(&mut u1[..level], 0.0, 1.0);
    rng.fill(&mut u2[..level], 0.0, 1.0);
    rng.fill(&mut u3[..level], 0.0, 1.0);
}

fn run08(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const A11: f64 = 0.05;
    const A12: f64 = -0.02;
    const A13: f64 = 0.01;
    const A21: f64 = 0.03;
    const A22: f64 = 0.04;
    const A23: f64 = -0.01;
    const A31: f64 = -0.02;
    const A32: f64 = 0.01;
    const A33: f64 = 0.06;
    const SIG: f64 = 0.1;
    let at = |kx: usize, ky: usize, nl: usize| (nl * (n + 1) + ky) * 5 + kx;
    // From time level 0 (nl1) to time level 1 (nl2).
    for _ in 0..reps {
        let [u1, u2, u3, du1, du2, du3] = carve(opaque(ws).0, lay08(n));
        for kx in 1..3 {
            for ky in 1..n {
                du1[ky] = u1[at(kx, ky + 1, 0)] - u1[at(kx, ky - 1, 0)];
                du2[ky] = u2[at(kx, ky + 1, 0)] - u2[at(kx, ky - 1, 0)];
                du3[ky] = u3[at(kx, ky + 1, 0)] - u3[at(kx, ky - 1, 0)];
                u1[at(kx, ky, 1)] = u1[at(kx, ky, 0)]
                    + A11 * du1[ky]
                    + A12 * du2[ky]
                    + A13 * du3[ky]
                    + SIG * (u1[at(kx + 1, ky, 0)] - 2.0 * u1[at(kx, ky, 0)] + u1[at(kx - 1, ky, 0)]);
                u2[at(kx, ky, 1)] = u2[at(kx, ky, 0)]
                    + A21 * du1[ky]
                    + A22 * du2[ky]
                    + A23 * du3[ky]
                    + SIG * (u2[at(kx + 1, ky, 0)] - 2.0 * u2[at(kx, ky, 0)] + u2[at(kx - 1, ky, 0)]);
                u3[at(kx, ky, 1)] = u3[at(kx, ky, 0)]
                    + A31 * du1[ky]
                    + A32 * du2[ky]
                    + A33 * du3[ky]
                    + SIG * (u3[at(kx + 1, ky, 0)] - 2.0 * u3[at(kx, ky, 0)] + u3[at(kx - 1, ky, 0)]);
            }
        }
    }
    let [u1, u2, u3, ..] = carve(&mut ws.f, lay08(n));
    weigh(u1) + weigh(u2) + weigh(u3)
}

// ---- 9: integrate predictors -------------------------------------------------------

/// The predictor table px(25, n): column i holds row i's 25 values.
const PX_ROWS: usize = 25;

fn lay09(n: usize) -> [usize; 1] {
    [PX_ROWS * n] // px
}

fn init09(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [px] = carve(&mut ws.f, lay09(n));
    rng.fill(px, 0.0, 1.0);
}

fn run09(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const DM22: f64 = 0.11;
    const DM23: f64 = 0.13;
    const DM24: f64 = 0.17;
    const DM25: f64 = 0.19;
    const DM26: f64 = 0.23;
    const DM27: f64 = 0.29;
    const DM28: f64 = 0.31;
    const C0: f64 = 0.5;
    for _ in 0..reps {
        let [px] = carve(opaque(ws).0, lay09(n));
        for i in 0..n {
            let p = &mut px[i * PX_ROWS..(i + 1) * PX_ROWS];
            p[0] = DM28 * p[12]
                + DM27 * p[11]
                + DM26 * p[10]
                + DM25 * p[9]
                + DM24 * p[8]
                + DM23 * p[7]
                + DM22 * p[6]
                + C0 * (p[4] + p[5])
                + p[2];
        }
    }
    let [px] = carve(&mut ws.f, lay09(n));
    weigh(px)
}

// ---- 10: difference predictors -----------------------------------------------------

fn lay10(n: usize) -> [usize; 3] {
    [PX_ROWS * n, PX_ROWS * n, 9 * n] // px, cx, px(5..13, i) as they were
}

fn init10(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [px, cx, p0] = carve(&mut ws.f, lay10(n));
    rng.fill(px, 0.0, 1.0);
    rng.fill(cx, 0.0, 1.0);
    for i in 0..n {
        p0[i * 9..(i + 1) * 9].copy_from_slice(&px[i * PX_ROWS + 4..i * PX_ROWS + 13]);
    }
}

fn run10(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let [px, cx, p0] = carve(opaque(ws).0, lay10(n));
        for i in 0..n {
            // Each difference replaces the one it was taken from (px(5..14, i) 1-based).
            let (p, old) = (&mut px[i * PX_ROWS..(i + 1) * PX_ROWS], &p0[i * 9..(i + 1) * 9]);
            let ar = cx[i * PX_ROWS + 4];
            let br = ar - old[0];
            p[4] = ar;
            let cr = br - old[1];
            p[5] = br;
            let ar = cr - old[2];
            p[6] = cr;
            let br = ar - old[3];
            p[7] = ar;
            let cr = br - old[4];
            p[8] = br;
            let ar = cr - old[5];
            p[9] = cr;
            let br = ar - old[6];
            p[10] = ar;
            let cr = br - old[7];
            p[11] = br;
            p[13] = cr - old[8];
            p[12] = cr;
        }
    }
    let [px, ..] = carve(&mut ws.f, lay10(n));
    weigh(px)
}

// ---- 11: first sum --------------------------------------------------------------------

fn lay11(n: usize) -> [usize; 2] {
    [n, n] // x, y
}

fn init11(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y] = carve(&mut ws.f, lay11(n));
    rng.fill(y, -1.0, 1.0);
}

fn run11(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let [x, y] = carve(opaque(ws).0, lay11(n));
        x[0] = y[0];
        for k in 1..n {
            x[k] = x[k - 1] + y[k];
        }
    }
    let [x, _] = carve(&mut ws.f, lay11(n));
    weigh(x)
}

// ---- 12: first difference ----------------------------------------------------------------

fn lay12(n: usize) -> [usize; 2] {
    [n, n + 1] // x, y
}

fn init12(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y] = carve(&mut ws.f, lay12(n));
    rng.fill(y, -1.0, 1.0);
}

fn run12(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let [x, y] = carve(opaque(ws).0, lay12(n));
        for k in 0..n {
            x[k] = y[k + 1] - y[k];
        }
    }
    let [x, _] = carve(&mut ws.f, lay12(n));
    weigh(x)
}

// ---- 13: 2-D particle in cell ----------------------------------------------------------

/// The mesh is 64×64 and periodic: a position's cell is its integer part mod 64.
const MESH: usize = 64;

/// Particles p(4, n) = (x, y, vx, vy) now and as they started, the force meshes b
/// and c, the charge mesh h, and the corrections y, z indexed by cell + 32.
fn lay13(n: usize) -> [usize; 7] {
    [4 * n, 4 * n, MESH * MESH, MESH * MESH, MESH * MESH, 96, 96] // p, p0, b, c, h, y, z
}

fn ilay13() -> [usize; 2] {
    [96, 96] // e, f: cell shifts
}

fn init13(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, p0, b, c, _, y, z] = carve(&mut ws.f, lay13(n));
    let [e, f] = carve(&mut ws.i, ilay13());
    // Everything on a 1/64 grid: positions and sums stay exact.
    for p in p0.chunks_exact_mut(4) {
        p[0] = rng.int(0, 64 * 64 - 1) as f64 / 64.0;
        p[1] = rng.int(0, 64 * 64 - 1) as f64 / 64.0;
        p[2] = rng.int(-128, 128) as f64 / 64.0;
        p[3] = rng.int(-128, 128) as f64 / 64.0;
    }
    rng.fill_binary(b, -64, 64, 64.0);
    rng.fill_binary(c, -64, 64, 64.0);
    rng.fill_binary(y, -64, 64, 64.0);
    rng.fill_binary(z, -64, 64, 64.0);
    for s in e.iter_mut().chain(f.iter_mut()) {
        *s = rng.int(-1, 1);
    }
}

/// The mesh cell of a position (any value, even NaN, gives a cell).
fn cell13(x: f64) -> usize {
    (x as i64 & (MESH as i64 - 1)) as usize
}

fn run13(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let (fs, is) = opaque(ws);
        let [p, p0, b, c, h, y, z] = carve(fs, lay13(n));
        let [e, f] = carve(is, ilay13());
        // Each repetition moves the particles from where they started; the charges
        // it deposits add up in h.
        for ip in 0..n {
            let (mut x, mut yp, mut vx, mut vy) = (p0[4 * ip], p0[4 * ip + 1], p0[4 * ip + 2], p0[4 * ip + 3]);
            let (i1, j1) = (cell13(x), cell13(yp));
            vx += b[j1 * MESH + i1];
            vy += c[j1 * MESH + i1];
            x += vx;
            yp += vy;
            let (i2, j2) = (cell13(x), cell13(yp));
            x += y[i2 + 32];
            yp += z[j2 + 32];
            let i2 = ((i2 as i64 + e[i2 + 32]) & (MESH as i64 - 1)) as usize;
            let j2 = ((j2 as i64 + f[j2 + 32]) & (MESH as i64 - 1)) as usize;
            h[j2 * MESH + i2] += 1.0;
            p[4 * ip..4 * ip + 4].copy_from_slice(&[x, yp, vx, vy]);
        }
    }
    let [p, _, _, _, h, ..] = carve(&mut ws.f, lay13(n));
    // h holds `reps` deposits of every particle, whole numbers and so exact: divided
    // by reps it is one repetition's mesh, exactly.
    weigh(p) + weigh(h) / f64::from(reps.max(1))
}

// ---- 14: 1-D particle in cell -------------------------------------------------------------

/// Cells of the 1-D grid (a power of two: cells wrap by masking).
const GRID: usize = 2048;

/// grd, ex, dex, vx, xx, xi, ex1, dex1, rx, rh (the charge on the GRID+1 nodes).
fn lay14(n: usize) -> [usize; 10] {
    [n, GRID, GRID, n, n, n, n, n, n, GRID + 1]
}

fn ilay14(n: usize) -> [usize; 2] {
    [n, n] // ix, ir
}

fn init14(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [grd, ex, dex, ..] = carve(&mut ws.f, lay14(n));
    // On a 1/1024 grid: every sum and product below is exact.
    rng.fill_binary(grd, 1024, (GRID as i64 - 1) * 1024 - 1, 1024.0);
    rng.fill_binary(ex, -8 * 1024, 8 * 1024, 1024.0);
    rng.fill_binary(dex, -2 * 1024, 2 * 1024, 1024.0);
}

/// The node left of a particle whose (1-based) cell is `ir`: any value is in range.
fn node14(ir: i64) -> usize {
    (ir.wrapping_sub(1) & (GRID as i64 - 1)) as usize
}

fn run14(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const FLX: f64 = 3.0 / 1024.0;
    for _ in 0..reps {
        let (fs, is) = opaque(ws);
        let [grd, ex, dex, vx, xx, xi, ex1, dex1, rx, rh] = carve(fs, lay14(n));
        let [ix, ir] = carve(is, ilay14(n));
        for k in 0..n {
            vx[k] = 0.0;
            xx[k] = 0.0;
            ix[k] = (grd[k] as i64).clamp(0, GRID as i64 - 1);
            xi[k] = ix[k] as f64;
            ex1[k] = ex[ix[k] as usize];
            dex1[k] = dex[ix[k] as usize];
        }
        for k in 0..n {
            vx[k] += ex1[k] + (xx[k] - xi[k]) * dex1[k];
            xx[k] += vx[k] + FLX;
            ir[k] = xx[k] as i64;
            rx[k] = xx[k] - ir[k] as f64;
            ir[k] = (ir[k] & (GRID as i64 - 1)) + 1;
            xx[k] = rx[k] + ir[k] as f64;
        }
        // Each repetition deposits on a clean grid: clear the nodes it will touch.
        for k in 0..n {
            let node = node14(ir[k]);
            rh[node] = 0.0;
            rh[node + 1] = 0.0;
        }
        for k in 0..n {
            let node = node14(ir[k]);
            rh[node] += 1.0 - rx[k];
            rh[node + 1] += rx[k];
        }
    }
    let [_, _, _, vx, xx, _, _, _, _, rh] = carve(&mut ws.f, lay14(n));
    weigh(vx) + weigh(xx) + weigh(rh)
}

// ---- 15: casual Fortran -------------------------------------------------------------------

/// Rows of kernel 15's mesh (the span is its columns).
const NG: usize = 7;

/// vh, vf, vg, vy, vs: (n, NG) meshes, column j at j·n.
fn lay15(n: usize) -> [usize; 5] {
    [n * NG, n * NG, n * NG, n * NG, n * NG]
}

fn init15(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [vh, vf, vg, ..] = carve(&mut ws.f, lay15(n));
    rng.fill(vh, 0.0, 1.0);
    rng.fill(vf, 0.5, 1.5);
    rng.fill(vg, 0.0, 1.0);
}

fn run15(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const AR: f64 = 0.053;
    const BR: f64 = 0.073;
    let at = |k: usize, j: usize| j * n + k;
    for _ in 0..reps {
        let [vh, vf, vg, vy, vs] = carve(opaque(ws).0, lay15(n));
        for j in 1..NG {
            for k in 1..n {
                if j == NG - 1 {
                    vy[at(k, j)] = 0.0;
                    continue;
                }
                // r and s from the side in k where vf is smaller.
                let t = if vh[at(k, j + 1)] > vh[at(k, j)] { AR } else { BR };
                let (r, s) = if vf[at(k, j)] < vf[at(k - 1, j)] {
                    (vh[at(k - 1, j)].max(vh[at(k - 1, j + 1)]), vf[at(k - 1, j)])
                } else {
                    (vh[at(k, j)].max(vh[at(k, j + 1)]), vf[at(k, j)])
                };
                vy[at(k, j)] = (vg[at(k, j)] * vg[at(k, j)] + r * r).sqrt() * t / s;
                if k == n - 1 {
                    vs[at(k, j)] = 0.0;
                    continue;
                }
                // Likewise in j.
                let (r, s, t) = if vf[at(k, j)] < vf[at(k, j - 1)] {
                    (vg[at(k, j - 1)].max(vg[at(k + 1, j - 1)]), vf[at(k, j - 1)], BR)
                } else {
                    (vg[at(k, j)].max(vg[at(k + 1, j)]), vf[at(k, j)], AR)
                };
                vs[at(k, j)] = (vh[at(k, j)] * vh[at(k, j)] + r * r).sqrt() * t / s;
            }
        }
    }
    let [.., vy, vs] = carve(&mut ws.f, lay15(n));
    weigh(vy) + weigh(vs)
}

// ---- 16: Monte Carlo search loop ----------------------------------------------------------

/// Band thresholds: a zone index below n - 2·(n/3) compares its plan with T, below
/// n - n/3 with S, below n with R; one above n is a distance test.
const R16: f64 = 0.3;
const S16: f64 = 0.2;
const T16: f64 = 0.1;

/// Per span: plan comparisons and distance tests of one execution, as the fixed
/// data makes the searches run (checked by a test).
const K16_COUNTS: [[usize; 2]; 3] = [[40, 17], [649, 95], [1506, 100]];

fn lay16(n: usize) -> [usize; 2] {
    [n, n + 9] // plan, d
}

/// The zones: a row of n (flag, zone index) pairs per search.
fn ilay16(n: usize) -> [usize; 1] {
    [2 * n * n]
}

fn band16(j5: usize, n: usize) -> f64 {
    let ii = n / 3;
    if j5 < n - 2 * ii {
        T16
    } else if j5 < n - ii {
        S16
    } else {
        R16
    }
}

fn init16(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [plan, d] = carve(&mut ws.f, lay16(n));
    let [zone] = carve(&mut ws.i, ilay16(n));
    for (j, p) in plan.iter_mut().enumerate() {
        // A few plans sit exactly on their threshold: those searches end there.
        *p = if rng.unit() < 0.05 { band16(j, n) } else { rng.unit() };
    }
    rng.fill(d, 0.5, 1.0);
    for pair in zone.chunks_exact_mut(2) {
        let u = rng.unit();
        pair[0] = if u < 0.8 {
            1
        } else if u < 0.97 {
            -1
        } else {
            0
        };
        pair[1] = rng.int(0, n as i64 + 8);
    }
}

fn run16(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    run16_counting(ws, n, reps).0
}

/// Kernel 16, also returning the plan comparisons and distance tests of the last
/// repetition.
fn run16_counting(ws: &mut Workspace, n: usize, reps: u32) -> (f64, [usize; 2]) {
    let sq = |x: f64| x * x;
    let mut out = (0, [0, 0]);
    for _ in 0..reps {
        let (fs, is) = opaque(ws);
        let [plan, d] = carve(fs, lay16(n));
        let [zone] = carve(is, ilay16(n));
        let (mut trail, mut compares, mut tests) = (0usize, 0, 0);
        for m in 0..n {
            // Search m scans the zones of its row; by the sign of the comparison
            // against the zone's flag it goes on along the row, stops, or hops to
            // the next row and starts over there, until it comes back round.
            let mut row = m;
            let mut steps = 0;
            let end = 'search: loop {
                let j2 = row * 2 * n;
                for k in 0..n {
                    steps += 1;
                    let j4 = j2 + 2 * k + 1;
                    let j5 = zone[j4].clamp(0, n as i64 + 8) as usize;
                    let diff = if j5 == n {
                        break 'search 1;
                    } else if j5 > n {
                        tests += 1;
                        d[j5] - (d[j5 - 1] * sq(T16 - d[j5 - 2]) + sq(S16 - d[j5 - 3]) + sq(R16 - d[j5 - 4]))
                    } else {
                        compares += 1;
                        plan[j5] - band16(j5, n)
                    };
                    let flag = zone[j4 - 1];
                    if diff == 0.0 {
                        break 'search 2;
                    }
                    if flag == 0 {
                        break 'search 3;
                    }
                    if (diff > 0.0) == (flag > 0) {
                        continue;
                    }
                    row = (row + 1) % n;
                    if row == m {
                        break 'search 4;
                    }
                    continue 'search;
                }
                break 5;
            };
            trail += (m + 1) * (8 * steps + end);
        }
        out = black_box((trail + 3 * compares + 7 * tests, [compares, tests]));
    }
    (out.0 as f64, out.1)
}

// ---- 17: implicit, conditional computation ---------------------------------------------

/// Per span: the steps of one execution down each branch (first test true, second
/// test true, neither), as the fixed data makes them (checked by a test).
const K17_PATHS: [[usize; 3]; 3] = [[0, 7, 7], [5, 43, 52], [6, 31, 63]];

fn lay17(n: usize) -> [usize; 8] {
    [n; 8] // vsp, vstp, vxne, vxne as it was, vxnd, ve3, vlr, vlin
}

fn init17(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [vsp, vstp, _, vxne0, _, _, vlr, vlin] = carve(&mut ws.f, lay17(n));
    rng.fill(vsp, 0.1, 0.9);
    rng.fill(vstp, 0.05, 0.3);
    rng.fill(vxne0, 0.0, 1.5);
    rng.fill(vlr, 0.2, 0.8);
    rng.fill(vlin, 0.1, 0.5);
}

fn run17(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    run17_counting(ws, n, reps).0
}

/// Kernel 17, also returning how many steps of the last repetition took each branch.
fn run17_counting(ws: &mut Workspace, n: usize, reps: u32) -> (f64, [usize; 3]) {
    const SCALE: f64 = 5.0 / 3.0;
    let mut paths = [0; 3];
    for _ in 0..reps {
        let [vsp, vstp, vxne, vxne0, vxnd, ve3, vlr, vlin] = carve(opaque(ws).0, lay17(n));
        paths = [0; 3];
        let mut xnm = 1.0 / 3.0;
        let mut e6 = 1.03 / 3.07;
        // From the top down to the second element (the original's i = n … 2).
        let mut i = n - 1;
        loop {
            let e3 = xnm * vlr[i] + vlin[i];
            let xnei = vxne0[i];
            vxnd[i] = e6;
            let xnc = SCALE * e3;
            let path = if xnm > xnc {
                0
            } else if xnei > xnc {
                1
            } else {
                2
            };
            paths[path] += 1;
            if path < 2 {
                e6 = xnm * vsp[i] + vstp[i];
                vxne[i] = e6;
                xnm = e6;
                ve3[i] = e6;
            } else {
                ve3[i] = e3;
                e6 = e3 + e3 - xnm;
                vxne[i] = e3 + e3 - xnei;
                xnm = e6;
            }
            if i == 1 {
                break;
            }
            i -= 1;
        }
        paths = black_box(paths);
    }
    let [_, _, vxne, _, vxnd, ve3, ..] = carve(&mut ws.f, lay17(n));
    let [a, b, c] = paths;
    (weigh(vxne) + weigh(vxnd) + weigh(ve3) + (a + 2 * b + 3 * c) as f64, paths)
}

// ---- 18: 2-D explicit hydrodynamics fragment -----------------------------------------------

/// Columns k = 0 ..= KN of kernel 18's meshes (the span is the rows j).
const KN: usize = 6;

/// za, zb, zp, zq, zr, zm, zu, zv, zz, then zr, zz, zu, zv as they were: (n+1, KN+1)
/// meshes, column k at k·(n+1).
fn lay18(n: usize) -> [usize; 13] {
    [(n + 1) * (KN + 1); 13]
}

fn init18(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [za, zb, zp, zq, zr, zm, zu, zv, zz, zr0, zz0, zu0, zv0] = carve(&mut ws.f, lay18(n));
    rng.fill(za, 0.0, 1.0);
    rng.fill(zb, 0.0, 1.0);
    rng.fill(zp, 0.0, 1.0);
    rng.fill(zq, 0.0, 1.0);
    rng.fill(zm, 0.5, 1.5);
    rng.fill(zr0, 0.0, 1.0);
    rng.fill(zz0, 0.0, 1.0);
    rng.fill(zu0, -0.1, 0.1);
    rng.fill(zv0, -0.1, 0.1);
    zr.copy_from_slice(zr0);
    zz.copy_from_slice(zz0);
    zu.copy_from_slice(zu0);
    zv.copy_from_slice(zv0);
}

fn run18(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const T: f64 = 0.0037;
    const S: f64 = 0.0041;
    let at = |j: usize, k: usize| k * (n + 1) + j;
    // One explicit time step from the fields as they were (zr0, zz0, zu0, zv0).
    for _ in 0..reps {
        let [za, zb, zp, zq, zr, zm, zu, zv, zz, zr0, zz0, zu0, zv0] = carve(opaque(ws).0, lay18(n));
        for k in 1..KN {
            for j in 1..n {
                za[at(j, k)] = (zp[at(j - 1, k + 1)] + zq[at(j - 1, k + 1)] - zp[at(j - 1, k)] - zq[at(j - 1, k)])
                    * (zr0[at(j, k)] + zr0[at(j - 1, k)])
                    / (zm[at(j - 1, k)] + zm[at(j - 1, k + 1)]);
                zb[at(j, k)] = (zp[at(j - 1, k)] + zq[at(j - 1, k)] - zp[at(j, k)] - zq[at(j, k)])
                    * (zr0[at(j, k)] + zr0[at(j, k - 1)])
                    / (zm[at(j, k)] + zm[at(j - 1, k)]);
            }
        }
        for k in 1..KN {
            for j in 1..n {
                zu[at(j, k)] = zu0[at(j, k)]
                    + S * (za[at(j, k)] * (zz0[at(j, k)] - zz0[at(j + 1, k)])
                        - za[at(j - 1, k)] * (zz0[at(j, k)] - zz0[at(j - 1, k)])
                        - zb[at(j, k)] * (zz0[at(j, k)] - zz0[at(j, k - 1)])
                        + zb[at(j, k + 1)] * (zz0[at(j, k)] - zz0[at(j, k + 1)]));
                zv[at(j, k)] = zv0[at(j, k)]
                    + S * (za[at(j, k)] * (zr0[at(j, k)] - zr0[at(j + 1, k)])
                        - za[at(j - 1, k)] * (zr0[at(j, k)] - zr0[at(j - 1, k)])
                        - zb[at(j, k)] * (zr0[at(j, k)] - zr0[at(j, k - 1)])
                        + zb[at(j, k + 1)] * (zr0[at(j, k)] - zr0[at(j, k + 1)]));
            }
        }
        for k in 1..KN {
            for j in 1..n {
                zr[at(j, k)] = zr0[at(j, k)] + T * zu[at(j, k)];
                zz[at(j, k)] = zz0[at(j, k)] + T * zv[at(j, k)];
            }
        }
    }
    let [za, zb, _, _, zr, _, zu, zv, zz, ..] = carve(&mut ws.f, lay18(n));
    weigh(za) + weigh(zb) + weigh(zr) + weigh(zu) + weigh(zv) + weigh(zz)
}

// ---- 19: general linear recurrence equations ----------------------------------------------

fn lay19(n: usize) -> [usize; 3] {
    [n, n, n] // b5, sa, sb
}

fn init19(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, sa, sb] = carve(&mut ws.f, lay19(n));
    rng.fill(sa, 0.0, 1.0);
    // stb5 is carried as stb5·(sb - 1) + sa: |sb - 1| < 1/2 keeps it bounded.
    rng.fill(sb, 0.5, 1.5);
}

fn run19(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    let mut stb5 = 0.0;
    for _ in 0..reps {
        let [b5, sa, sb] = carve(opaque(ws).0, lay19(n));
        stb5 = 0.1;
        for k in 0..n {
            b5[k] = sa[k] + stb5 * sb[k];
            stb5 = b5[k] - stb5;
        }
        for i in 1..=n {
            let k = n - i;
            b5[k] = sa[k] + stb5 * sb[k];
            stb5 = b5[k] - stb5;
        }
        stb5 = black_box(stb5);
    }
    let [b5, ..] = carve(&mut ws.f, lay19(n));
    weigh(b5) + stb5
}

// ---- 20: discrete ordinates transport ------------------------------------------------------

fn lay20(n: usize) -> [usize; 9] {
    [n, n, n, n, n, n, n, n, n + 1] // x, y, z, u, v, w, g, vx, xx
}

fn init20(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y, z, u, v, w, g, vx, xx] = carve(&mut ws.f, lay20(n));
    // y > g keeps di away from 0, so every step takes the min/max branch.
    rng.fill(y, 1.0, 2.0);
    rng.fill(z, -1.0, 1.0);
    rng.fill(u, 0.0, 0.2);
    rng.fill(v, 0.2, 1.0);
    rng.fill(w, 0.2, 0.6);
    rng.fill(g, 0.0, 0.5);
    rng.fill(vx, 1.0, 1.5);
    xx[0] = rng.uniform(0.5, 1.0);
}

fn run20(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const DK: f64 = 1.0;
    const S: f64 = 0.1;
    const T: f64 = 0.9;
    for _ in 0..reps {
        let [x, y, z, u, v, w, g, vx, xx] = carve(opaque(ws).0, lay20(n));
        for k in 0..n {
            let di = y[k] - g[k] / (xx[k] + DK);
            let mut dn = 0.2;
            if di != 0.0 {
                dn = (z[k] / di).clamp(S, T); // max(s, min(z/di, t))
            }
            x[k] = ((w[k] + v[k] * dn) * xx[k] + u[k]) / (vx[k] + v[k] * dn);
            xx[k + 1] = (x[k] - xx[k]) * dn + xx[k];
        }
    }
    let [x, .., xx] = carve(&mut ws.f, lay20(n));
    weigh(x) + weigh(xx)
}

// ---- 21: matrix*matrix product -------------------------------------------------------------

/// px(25, n) += vy(25, 25) · cx(25, n), column-major.
const M21: usize = 25;

fn lay21(n: usize) -> [usize; 4] {
    [M21 * n, M21 * M21, M21 * n, M21 * n] // px, vy, cx, px as it was
}

fn init21(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [px, vy, cx, px0] = carve(&mut ws.f, lay21(n));
    rng.fill(px0, 0.0, 1.0);
    rng.fill(vy, -1.0, 1.0);
    rng.fill(cx, 0.0, 1.0);
    px.copy_from_slice(px0);
}

fn run21(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    for _ in 0..reps {
        let [px, vy, cx, px0] = carve(opaque(ws).0, lay21(n));
        // px accumulates in place over k: each repetition starts it afresh.
        px.copy_from_slice(px0);
        for k in 0..M21 {
            for i in 0..M21 {
                for j in 0..n {
                    px[j * M21 + i] += vy[k * M21 + i] * cx[j * M21 + k];
                }
            }
        }
    }
    let [px, ..] = carve(&mut ws.f, lay21(n));
    weigh(px)
}

// ---- 22: Planckian distribution -------------------------------------------------------------

fn lay22(n: usize) -> [usize; 5] {
    [n, n, n, n, n] // u, v, w, x, y
}

fn init22(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [u, v, _, x, _] = carve(&mut ws.f, lay22(n));
    rng.fill(v, 0.5, 2.0);
    // u/v (the y the kernel computes) from 0.05 to 8, and 19.8 at the end: w then
    // ranges over five decades, no element so small that the checksum cannot see it.
    for k in 0..n {
        u[k] = v[k] * rng.uniform(0.05, 8.0);
    }
    rng.fill(x, 0.0, 1.0);
}

fn run22(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    const EXPMAX: f64 = 20.0;
    for _ in 0..reps {
        let [u, v, w, x, y] = carve(opaque(ws).0, lay22(n));
        u[n - 1] = 0.99 * EXPMAX * v[n - 1];
        for k in 0..n {
            y[k] = u[k] / v[k];
            w[k] = x[k] / (y[k].exp() - 1.0);
        }
    }
    let [.., w, _, y] = carve(&mut ws.f, lay22(n));
    weigh(w) + weigh(y)
}

// ---- 23: 2-D implicit hydrodynamics fragment -------------------------------------------------

/// za, zb, zr, zu, zv, zz, za as it was: (n+1, 7) meshes, column j at j·(n+1).
fn lay23(n: usize) -> [usize; 7] {
    [(n + 1) * 7; 7]
}

fn init23(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [za, zb, zr, zu, zv, zz, za0] = carve(&mut ws.f, lay23(n));
    rng.fill(za0, 0.0, 1.0);
    // Coefficients summing below 1: the relaxation contracts.
    rng.fill(zb, 0.0, 0.25);
    rng.fill(zr, 0.0, 0.25);
    rng.fill(zu, 0.0, 0.25);
    rng.fill(zv, 0.0, 0.25);
    rng.fill(zz, 0.0, 0.1);
    za.copy_from_slice(za0);
}

fn run23(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    let at = |k: usize, j: usize| j * (n + 1) + k;
    for _ in 0..reps {
        let [za, zb, zr, zu, zv, zz, za0] = carve(opaque(ws).0, lay23(n));
        // The sweep uses the values it has just updated: restart it from za0.
        za.copy_from_slice(za0);
        for j in 1..6 {
            for k in 1..n {
                let qa = za[at(k, j + 1)] * zr[at(k, j)]
                    + za[at(k, j - 1)] * zb[at(k, j)]
                    + za[at(k + 1, j)] * zu[at(k, j)]
                    + za[at(k - 1, j)] * zv[at(k, j)]
                    + zz[at(k, j)];
                za[at(k, j)] += 0.175 * (qa - za[at(k, j)]);
            }
        }
    }
    let [za, ..] = carve(&mut ws.f, lay23(n));
    weigh(za)
}

// ---- 24: find location of first minimum in array ----------------------------------------------

fn lay24(n: usize) -> [usize; 1] {
    [n] // x
}

fn init24(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x] = carve(&mut ws.f, lay24(n));
    rng.fill(x, 0.0, 1.0);
}

fn run24(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
    let mut m = 0;
    for _ in 0..reps {
        let [x] = carve(opaque(ws).0, lay24(n));
        x[n / 2] = -1.0e10;
        m = 0;
        for k in 1..n {
            if x[k] < x[m] {
                m = k;
            }
        }
        m = black_box(m);
    }
    // The original's 1-based location, and the array it searched (less the planted
    // minimum, which would drown the rest), so a corrupted element shows even where
    // it does not move the minimum.
    let [x] = carve(&mut ws.f, lay24(n));
    (m + 1) as f64 + weigh(&x[..n / 2]) + weigh(&x[n / 2 + 1..])
}

/// Pinned checksums (bits of the f64) per kernel: short, medium, long.
const EXPECTED: [[u64; 3]; KERNELS] = [
    [0x406a70ac3d23fcf8, 0x40a74ccaaf2cd4f0, 0x411220e08b50de45], // 1
    [0x4064c64b28bceaf0, 0x40c1bc1ec5476024, 0x40c2e6592947dfed], // 2
    [0x40051373b204fda4, 0x3ffec4082d93367c, 0xbff83de039f1bcc2], // 3
    [0x410f8a60e085035f, 0x410f47e2869ebb9e, 0x410e5a1db64c9847], // 4
    [0xc043ff9aec24a9f4, 0xc058b613b2a9eb35, 0x408f7984970343c1], // 5
    [0x400623e4a12e928a, 0x4016f7ea23c812e4, 0x4034086176c60b0d], // 6
    [0x406aa3df42b6b2ec, 0x40b0ffe9d624d348, 0x411a19e8b543208c], // 7
    [0x40c08b7e342ec982, 0x41192525d71e7884, 0x4118d5a864170eea], // 8
    [0x40e31a136a0a4a54, 0x413b334914721272, 0x413b12e431fb57c0], // 9
    [0xc0da5692d85a8142, 0xc131932b3fdd2a75, 0xc132419c69301859], // 10
    [0x408c4289631ac969, 0xc0b51f2a1e6af372, 0xc131f2d1158a2ed5], // 11
    [0x3ff677e7f8486360, 0x4024dcea0d24d518, 0xc08250ee20af2110], // 12
    [0x40d6060500000000, 0x41064e6ee0000000, 0x41261441e8000000], // 13
    [0x412042b1a0800000, 0x415a0b9ff5600000, 0x41bfc27ba7d2c000], // 14
    [0x4075b80eac235a1a, 0x40d111fb69116216, 0x40d167fea4b90268], // 15
    [0x40b5ef0000000000, 0x40ffe2c000000000, 0x41164a6800000000], // 16
    [0x4070fa9df6320a86, 0x40c07cf64ecf9dd5, 0x40c2acc8234b48e8], // 17
    [0x40bf49504786decc, 0x4113ebc3b9c0847c, 0x4113bb6aa194ceb5], // 18
    [0x40650588f958a9f7, 0x40b415638bd42d78, 0x40b3eb912b6be700], // 19
    [0x406190c99323c911, 0x40921d64ca52926f, 0x40fc3beea45b594c], // 20
    [0x40f892e6c267044c, 0x411c8d6b21f3ca2c, 0x4129af0131852aab], // 21
    [0x408528ab2af07db5, 0x40d76ccbc1d0c479, 0x40d5ea7467a256f8], // 22
    [0x40a4f135027743c5, 0x40fe2c273fd52fa9, 0x40fd7e624fa81213], // 23
    [0x405a7bf2ede3e334, 0x4094d013bf537f9d, 0x40fe49aabf85d18f], // 24
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Where array `i` of a layout starts in the arena.
    fn start<const N: usize>(lens: [usize; N], i: usize) -> usize {
        lens[..i].iter().sum()
    }

    #[test]
    fn checksums_match_the_pinned_values() {
        let mut ws = Workspace::new();
        for k in 1..=KERNELS {
            for span in Span::ALL {
                let got = run_kernel(&mut ws, k, span, REPS_FOR_CHECK);
                assert!(got.is_finite(), "kernel {k} {}: {got}", span.name());
                check(k, span, got, expected_checksum(k, span)).unwrap();
            }
        }
    }

    #[test]
    fn checksums_do_not_depend_on_reps_or_on_what_ran_before() {
        let mut reused = Workspace::new();
        for k in (1..=KERNELS).rev() {
            for span in Span::ALL {
                let fresh = run_kernel(&mut Workspace::new(), k, span, 1);
                let again = run_kernel(&mut reused, k, span, 7);
                assert_eq!(fresh.to_bits(), again.to_bits(), "kernel {k} {}: {fresh} vs {again}", span.name());
            }
        }
    }

    #[test]
    fn every_kernel_and_span_has_its_own_checksum() {
        let mut ws = Workspace::new();
        let mut seen: Vec<u64> = Vec::new();
        for k in 1..=KERNELS {
            for span in Span::ALL {
                let bits = run_kernel(&mut ws, k, span, 1).to_bits();
                assert!(!seen.contains(&bits), "kernel {k} {}: checksum repeats", span.name());
                seen.push(bits);
            }
        }
    }

    /// An input element each kernel reads: its index in the float arena.
    fn an_input(k: usize, n: usize) -> usize {
        match k {
            1 => start(lay01(n), 1) + 5,                // y
            2 => 3,                                     // x
            3 => 3,                                     // x
            4 => start(lay04(n), 1) + 2,                // xz, first band row
            5 => start(lay05(n), 1) + 3,                // y
            6 => 0,                                     // w(1)
            7 => start(lay07(n), 1) + 3,                // y
            8 => 2 * 5 + 1,                             // u1(kx 1, ky 2, level 0)
            9 => 12,                                    // px(13, 1)
            10 => start(lay10(n), 1) + 4,               // cx(5, 1)
            11 => start(lay11(n), 1) + 3,               // y
            12 => start(lay12(n), 1) + 3,               // y
            13 => start(lay13(n), 1) + 2,               // p0: particle 1's vx
            14 => 0,                                    // grd
            15 => start(lay15(n), 1) + 2 * n + 3,       // vf
            17 => start(lay17(n), 6) + n - 1,           // vlr at the first step
            18 => start(lay18(n), 5) + n + 2,           // zm
            19 => start(lay19(n), 1) + 3,               // sa
            20 => start(lay20(n), 1) + 3,               // y
            21 => start(lay21(n), 2),                   // cx
            22 => start(lay22(n), 3) + 3,               // x
            23 => start(lay23(n), 5) + 2 * (n + 1) + 2, // zz
            24 => 3,                                    // x
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_corrupted_input_changes_the_checksum() {
        let mut ws = Workspace::new();
        for k in 1..=KERNELS {
            for span in Span::ALL {
                let n = span_len(k, span);
                init(&mut ws, k, span);
                if k == 16 {
                    // Search 1's first zone now ends it at once (or no longer does).
                    ws.i[1] = if ws.i[1] == n as i64 { 0 } else { n as i64 };
                } else {
                    let i = an_input(k, n);
                    ws.f[i] = -3.0 * ws.f[i] - 0.5;
                }
                let got = execute(&mut ws, k, span, 2);
                assert!(
                    check(k, span, got, expected_checksum(k, span)).is_err(),
                    "kernel {k} {}: corruption went unnoticed",
                    span.name()
                );
            }
        }
    }

    #[test]
    fn a_wrong_checksum_fails_the_pass() {
        let mut ws = Workspace::new();
        for span in Span::ALL {
            let p = pass(&mut ws, span, 1e-9).unwrap();
            assert_eq!(p.span, span);
            for (i, t) in p.kernels.iter().enumerate() {
                assert_eq!(t.kernel, i + 1);
                assert_eq!(t.flops, flops(i + 1, span), "one repetition at this scale");
                assert!(t.seconds > 0.0 && t.mflops() > 0.0);
            }
            let m = p.means();
            assert!(m.harmonic <= m.geometric && m.geometric <= m.arithmetic, "{m:?}");
        }
        let wrong =
            |k, span| if k == 7 { expected_checksum(k, span) * (1.0 + 1e-8) } else { expected_checksum(k, span) };
        let err = pass_against(&mut ws, Span::Medium, 1e-9, wrong).unwrap_err();
        assert!(err.contains("kernel 7 (equation of state fragment), medium span"), "{err}");
    }

    #[test]
    fn the_check_has_a_relative_tolerance() {
        assert!(check(1, Span::Long, 1000.0 * (1.0 + 1e-12), 1000.0).is_ok());
        assert!(check(1, Span::Long, -1000.0 * (1.0 + 1e-12), -1000.0).is_ok());
        assert!(check(1, Span::Long, 1000.0 * (1.0 + 1e-9), 1000.0).is_err());
        assert!(check(1, Span::Long, f64::NAN, 1000.0).is_err());
        assert!(check(1, Span::Long, 0.0, 0.0).is_ok());
    }

    #[test]
    fn means_by_hand() {
        let m = means(&[1.0, 2.0, 4.0]);
        assert!((m.arithmetic - 7.0 / 3.0).abs() < 1e-12, "{m:?}");
        assert!((m.geometric - 2.0).abs() < 1e-12, "{m:?}");
        assert!((m.harmonic - 12.0 / 7.0).abs() < 1e-12, "{m:?}");
        let m = means(&[5.0; 24]);
        assert!([m.arithmetic, m.geometric, m.harmonic].iter().all(|x| (x - 5.0).abs() < 1e-12), "{m:?}");
        assert_eq!(means(&[]), Means { arithmetic: 0.0, geometric: 0.0, harmonic: 0.0 });
    }

    #[test]
    fn spans_are_ordered_and_flops_positive() {
        for k in 1..=KERNELS {
            let [s, m, l] = Span::ALL.map(|span| span_len(k, span));
            assert!(s < m && m <= l, "kernel {k}: {s} {m} {l}");
            for span in Span::ALL {
                assert!(flops(k, span) > 0.0, "kernel {k} {}", span.name());
            }
            assert!(!name(k).is_empty());
        }
        assert_eq!(Span::ALL.map(Span::name), ["short", "medium", "long"]);
        assert_eq!(flops(1, Span::Long), 5005.0);
        assert_eq!(flops(21, Span::Long), 126_250.0);
        assert_eq!(flops(2, Span::Long), 4.0 * (50 + 25 + 12 + 6 + 3 + 1) as f64);
    }

    #[test]
    #[should_panic(expected = "numbered 1 to 24")]
    fn kernel_numbers_are_checked() {
        span_len(25, Span::Long);
    }

    #[test]
    fn counted_paths_match_the_pinned_flops() {
        let mut ws = Workspace::new();
        for span in Span::ALL {
            init(&mut ws, 16, span);
            let counts = run16_counting(&mut ws, span_len(16, span), 2).1;
            assert_eq!(counts, K16_COUNTS[span as usize], "{}", span.name());
            init(&mut ws, 17, span);
            let paths = run17_counting(&mut ws, span_len(17, span), 2).1;
            assert_eq!(paths, K17_PATHS[span as usize], "{}", span.name());
            assert_eq!(paths.iter().sum::<usize>(), span_len(17, span) - 1);
        }
    }

    // ---- Independent cross-checks: the same results computed another way ----

    #[test]
    fn inner_product_against_an_iterator_sum_and_a_closed_form() {
        let mut ws = Workspace::new();
        for span in Span::ALL {
            let n = span_len(3, span);
            init(&mut ws, 3, span);
            let [x, z] = carve(&mut ws.f, lay03(n));
            let want: f64 = x.iter().zip(z.iter()).map(|(a, b)| a * b).sum();
            let got = execute(&mut ws, 3, span, 2);
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{got} vs {want}");
            // x = 1, z = k: the sum is n(n-1)/2, exactly.
            let [x, z] = carve(&mut ws.f, lay03(n));
            x.fill(1.0);
            for (k, zk) in z.iter_mut().enumerate() {
                *zk = k as f64;
            }
            assert_eq!(execute(&mut ws, 3, span, 2), (n * (n - 1) / 2) as f64);
        }
    }

    #[test]
    fn first_sum_against_a_separate_prefix_sum() {
        let mut ws = Workspace::new();
        for span in Span::ALL {
            let n = span_len(11, span);
            init(&mut ws, 11, span);
            execute(&mut ws, 11, span, 2);
            let [x, y] = carve(&mut ws.f, lay11(n));
            let prefix: Vec<f64> = y
                .iter()
                .scan(0.0, |acc, &v| {
                    *acc += v;
                    Some(*acc)
                })
                .collect();
            for (k, (a, b)) in x.iter().zip(&prefix).enumerate() {
                assert!((a - b).abs() <= 1e-12 * (k + 1) as f64, "x[{k}] = {a}, prefix sum {b}");
            }
        }
    }

    #[test]
    fn first_difference_against_windows() {
        let mut ws = Workspace::new();
        for span in Span::ALL {
            let n = span_len(12, span);
            init(&mut ws, 12, span);
            execute(&mut ws, 12, span, 2);
            let [x, y] = carve(&mut ws.f, lay12(n));
            let diff: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
            assert_eq!(x, &diff[..]);
        }
    }

    #[test]
    fn tridiagonal_elimination_against_a_fold() {
        let mut ws = Workspace::new();
        for span in Span::ALL {
            let n = span_len(5, span);
            init(&mut ws, 5, span);
            execute(&mut ws, 5, span, 2);
            let [x, y, z] = carve(&mut ws.f, lay05(n));
            let mut prev = x[0];
            for i in 1..n {
                prev = z[i] * (y[i] - prev);
                assert_eq!(x[i], prev, "x[{i}]");
            }
        }
    }

    #[test]
    fn linear_recurrence_against_a_rederivation() {
        // w(i) = 0.01 + Σ_{j<i} b(i, i-j)·w(j): summed here by j ascending, the kernel
        // sums by lag; the results agree to rounding.
        let mut ws = Workspace::new();
        for span in Span::ALL {
            let n = span_len(6, span);
            init(&mut ws, 6, span);
            execute(&mut ws, 6, span, 2);
            let [w, b] = carve(&mut ws.f, lay06(n));
            let mut mine = vec![w[0]; n];
            for i in 1..n {
                mine[i] = 0.01 + (0..i).map(|j| b[(i - j - 1) * n + i] * mine[j]).sum::<f64>();
            }
            for i in 0..n {
                assert!((w[i] - mine[i]).abs() <= 1e-13, "w[{i}] = {} vs {}", w[i], mine[i]);
            }
        }
    }

    #[test]
    fn matrix_product_against_a_naive_triple_loop() {
        let mut ws = Workspace::new();
        for span in Span::ALL {
            let n = span_len(21, span);
            init(&mut ws, 21, span);
            execute(&mut ws, 21, span, 2);
            let [px, vy, cx, px0] = carve(&mut ws.f, lay21(n));
            for j in 0..n {
                for i in 0..M21 {
                    let mut s = px0[j * M21 + i];
                    for k in 0..M21 {
                        s += vy[k * M21 + i] * cx[j * M21 + k];
                    }
                    assert_eq!(px[j * M21 + i], s, "px({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn first_minimum_against_min_by() {
        let mut ws = Workspace::new();
        for span in Span::ALL {
            let n = span_len(24, span);
            let first_min = |x: &[f64]| x.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            init(&mut ws, 24, span);
            let got = execute(&mut ws, 24, span, 2);
            let [x] = carve(&mut ws.f, lay24(n));
            let m = first_min(x);
            assert_eq!(m, n / 2, "the planted minimum");
            assert_eq!(got, (m + 1) as f64 + weigh(&x[..n / 2]) + weigh(&x[n / 2 + 1..]));
            // Two equal minima below the planted one: the first wins.
            x[3] = -2e10;
            x[n - 2] = -2e10;
            let got = execute(&mut ws, 24, span, 2);
            let [x] = carve(&mut ws.f, lay24(n));
            assert_eq!(first_min(x), 3);
            assert_eq!(got, 4.0 + weigh(&x[..n / 2]) + weigh(&x[n / 2 + 1..]));
        }
    }

    #[test]
    fn a_tally_reports_means_per_span_and_reads_back() {
        let mut ws = Workspace::new();
        let mut tally = Tally::default();
        assert_eq!(tally.report(), None, "nothing has run yet");
        for span in Span::ALL {
            tally.add(&pass(&mut ws, span, 0.001).unwrap());
        }
        let line = tally.report().unwrap();
        let back = parse_report(&line);
        assert_eq!(back.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["short", "medium", "long", "all"]);
        for (_, m) in &back {
            assert!(m.arithmetic >= m.geometric && m.geometric >= m.harmonic && m.harmonic > 0.0, "{line}");
        }
        assert!(parse_report("short=1/2 x=y").is_empty());
    }
}
