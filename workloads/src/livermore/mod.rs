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
//! kernels' code with McMahon's weights: add, subtract, multiply and a comparison of
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

// From the bottom up: `spans` (the loop lengths), `data` (the shared arena and the
// generator that fills it), `kernels` (the 24 loops and their table), then
// `checksums` and `rates`; this file runs timed, checked passes over them. Outside
// the tests, no module imports one above it.
mod checksums;
mod data;
mod kernels;
mod rates;
mod spans;

pub use checksums::{REPS_FOR_CHECK, TOLERANCE, expected_checksum};
pub use data::Workspace;
pub use kernels::{flops, name};
pub use rates::{KernelTime, Means, Pass, Tally, means, parse_report};
pub use spans::{KERNELS, Span, span_len};

use checksums::check;
use kernels::{execute, init};
use std::time::Instant;

/// Floating-point operations per kernel in a [`pass`] at scale 1: 0.3 s for all 24
/// kernels on a 2020s x86 core.
const PASS_FLOPS: f64 = 2.0e7;

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

/// The repetitions of `kernel` in a pass at `scale`: about `scale` × 2·10⁷ flops,
/// so every kernel gets roughly the same work (at least one repetition).
pub fn reps_for(kernel: usize, span: Span, scale: f64) -> u32 {
    ((scale * PASS_FLOPS / flops(kernel, span)).round() as u32).max(1)
}

/// Runs all 24 kernels at `span`, each [`reps_for`] times and timed, and checks
/// every checksum: a wrong one is an error naming the kernel.
pub fn pass(ws: &mut Workspace, span: Span, scale: f64) -> Result<Pass, String> {
    pass_against(ws, span, scale, expected_checksum)
}

fn pass_against(ws: &mut Workspace, span: Span, scale: f64, expected: fn(usize, Span) -> f64) -> Result<Pass, String> {
    let mut kernels = [KernelTime { kernel: 0, flops: 0.0, seconds: 0.0 }; KERNELS];
    for (slot, time) in kernels.iter_mut().enumerate() {
        *time = kernel_against(ws, slot + 1, span, scale, expected)?;
    }
    Ok(Pass { span, kernels })
}

/// Kernel `k`'s part of a [`pass`]: run [`reps_for`] times, timed, its checksum
/// checked. A pass is these for kernels 1 to 24 in turn.
pub fn kernel_in_pass(ws: &mut Workspace, k: usize, span: Span, scale: f64) -> Result<KernelTime, String> {
    kernel_against(ws, k, span, scale, expected_checksum)
}

fn kernel_against(ws: &mut Workspace, k: usize, span: Span, scale: f64, expected: fn(usize, Span) -> f64) -> Result<KernelTime, String> {
    let reps = reps_for(k, span, scale);
    init(ws, k, span);
    let start = Instant::now();
    let sum = execute(ws, k, span, reps);
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    check(k, span, sum, expected(k, span))?;
    Ok(KernelTime { kernel: k, flops: flops(k, span) * reps as f64, seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

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
