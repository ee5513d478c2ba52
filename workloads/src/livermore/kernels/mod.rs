//! The 24 kernels, one table of them, and what the rest of the benchmark asks of
//! a kernel by its number: its name, its flops, the arena it needs, its
//! initialisation and its run. Each kernel's layout, initialisation and loop are
//! together, in `k01_to_k14` or `k15_to_k24`.

mod k01_to_k14;
mod k15_to_k24;

use super::data::{Rng, Workspace, total};
use super::spans::{KERNELS, Span, slot, span_len};
use k01_to_k14::*;
use k15_to_k24::*;

/// What each kernel computes, as the benchmark names it.
pub fn name(kernel: usize) -> &'static str {
    TABLE[slot(kernel)].name
}

/// Floating-point operations of one execution of `kernel` at `span`, counted from
/// the kernels' code with McMahon's weights (add, subtract, multiply, compare 1;
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

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

// Here rather than with the struct in `data`: the arena is as large as the largest
// of the kernels' layouts, which only this module knows.
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
pub(super) fn init(ws: &mut Workspace, k: usize, span: Span) {
    let n = span_len(k, span);
    let (nf, ni) = need(k, n);
    ws.f[..nf].fill(0.0);
    ws.i[..ni].fill(0);
    (TABLE[slot(k)].init)(ws, n, &mut Rng::new(k, span));
}

/// Runs kernel `k` on the data `init` left, `reps` times; returns the checksum.
pub(super) fn execute(ws: &mut Workspace, k: usize, span: Span, reps: u32) -> f64 {
    (TABLE[slot(k)].run)(ws, span_len(k, span), reps.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livermore::checksums::{check, expected_checksum};

    /// Where array `i` of a layout starts in the arena.
    fn start<const N: usize>(lens: [usize; N], i: usize) -> usize {
        lens[..i].iter().sum()
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
}
