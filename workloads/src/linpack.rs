//! Linpack: LU factorisation with partial pivoting of an n×n double matrix and the
//! solve of A·x = b, written from the published description of the benchmark
//! (DGEFA/DGESL's column-oriented elimination). Each solve is checked: the
//! scaled residual ‖A·x − b‖∞ / (ε · (‖A‖∞ · ‖x‖∞ + ‖b‖∞) · n), HPL's acceptance
//! test, must stay below 16, or the run is an error, not a number. (The 1980s
//! program divided by the largest element instead of ‖A‖∞; that figure grows with
//! n and already reaches 10 at n = 1000 for a correct solve.)

/// Floating-point operations of one factor + solve, the benchmark's standard count.
pub fn flops(n: usize) -> f64 {
    let n = n as f64;
    2.0 / 3.0 * n * n * n + 2.0 * n * n
}

/// A scaled residual above this means the arithmetic went wrong (HPL's threshold).
pub const MAX_NORMALISED_RESIDUAL: f64 = 16.0;

/// A matrix of pseudo-random values in [-0.5, 0.5) (column-major) and b = A·1,
/// so the exact solution is all ones.
pub fn generate(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let a: Vec<f64> = (0..n * n).map(|_| next()).collect();
    let mut b = vec![0.0; n];
    for j in 0..n {
        for i in 0..n {
            b[i] += a[j * n + i];
        }
    }
    (a, b)
}

/// Factors `a` (column-major, n×n) in place; returns the pivot rows, or the column
/// that was exactly singular.
pub fn factor(a: &mut [f64], n: usize) -> Result<Vec<usize>, usize> {
    let mut ipvt = vec![0; n];
    for k in 0..n {
        // Pivot: the largest magnitude in column k at or below the diagonal.
        let col = k * n;
        let l = (k..n).max_by(|&i, &j| a[col + i].abs().total_cmp(&a[col + j].abs())).unwrap_or(k);
        ipvt[k] = l;
        if a[col + l] == 0.0 {
            return Err(k);
        }
        if l != k {
            a.swap(col + l, col + k);
        }
        let t = -1.0 / a[col + k];
        dscal(&mut a[col + k + 1..col + n], t);
        for j in k + 1..n {
            let cj = j * n;
            let t = a[cj + l];
            if l != k {
                a[cj + l] = a[cj + k];
                a[cj + k] = t;
            }
            // Column j (after column k in `a`) += t · column k, below the diagonal.
            let (before, from_j) = a.split_at_mut(cj);
            daxpy(&mut from_j[k + 1..n], t, &before[col + k + 1..col + n]);
        }
    }
    Ok(ipvt)
}

/// Solves with a factored matrix; `b` becomes x.
pub fn solve(a: &[f64], n: usize, ipvt: &[usize], b: &mut [f64]) {
    for k in 0..n {
        let l = ipvt[k];
        let t = b[l];
        if l != k {
            b[l] = b[k];
            b[k] = t;
        }
        daxpy(&mut b[k + 1..n], t, &a[k * n + k + 1..k * n + n]);
    }
    for k in (0..n).rev() {
        b[k] /= a[k * n + k];
        let t = -b[k];
        daxpy(&mut b[..k], t, &a[k * n..k * n + k]);
    }
}

/// x ·= t, element by element (LINPACK's DSCAL), scalar as [`daxpy`] is.
#[inline(always)]
fn dscal(x: &mut [f64], t: f64) {
    for xi in x {
        *xi *= t;
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// y += t · x, element by element: LINPACK's DAXPY, the loop that does nearly all
/// of the work. It is kept scalar, as gcc -O2 builds the classic C program (gcc 12
/// at -O2 vectorises no loop of varying length), so that a Linpack MFLOPS of ours
/// means what the classic program's does: rustc would otherwise do it two doubles
/// at a time with SSE2, 1.36× the C program's rate on the same host
/// (docs/workloads-vs-classic-c.md). The fence emits no instruction; it only
/// keeps the optimiser from merging iterations. The arithmetic is unchanged.
#[inline(always)]
fn daxpy(y: &mut [f64], t: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += t * xi;
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// One benchmark pass: generate, factor, solve, check. Returns the normalised residual.
pub fn pass(n: usize, seed: u64) -> Result<f64, String> {
    let (a0, b0) = generate(n, seed);
    let mut a = a0.clone();
    let mut x = b0.clone();
    let ipvt = factor(&mut a, n).map_err(|k| format!("linpack n={n}: matrix singular at column {k}"))?;
    solve(&a, n, &ipvt, &mut x);
    let resid = normalised_residual(&a0, &b0, &x, n);
    if !resid.is_finite() || resid > MAX_NORMALISED_RESIDUAL {
        return Err(format!("linpack n={n}: normalised residual {resid:.3e} is over {MAX_NORMALISED_RESIDUAL}: the result is wrong"));
    }
    Ok(resid)
}

/// ‖A·x − b‖∞ / (ε · (‖A‖∞ · ‖x‖∞ + ‖b‖∞) · n), with `a` column-major: well
/// below 1 for a correct solve, large when the arithmetic (or the memory holding
/// it) went wrong. ‖A‖∞ is the largest row sum of magnitudes.
pub fn normalised_residual(a: &[f64], b: &[f64], x: &[f64], n: usize) -> f64 {
    let mut r = b.iter().map(|v| -v).collect::<Vec<_>>();
    let mut row_sums = vec![0.0f64; n];
    for j in 0..n {
        for i in 0..n {
            r[i] += a[j * n + i] * x[j];
            row_sums[i] += a[j * n + i].abs();
        }
    }
    let norm = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    norm(&r) / (f64::EPSILON * (norm(&row_sums) * norm(x) + norm(b)) * n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_to_all_ones_with_a_small_residual() {
        for n in [1, 2, 10, 100] {
            let (mut a, mut b) = generate(n, 42);
            let ipvt = factor(&mut a, n).unwrap();
            solve(&a, n, &ipvt, &mut b);
            assert!(b.iter().all(|x| (x - 1.0).abs() < 1e-9), "n={n}: {:?}", &b[..n.min(4)]);
            assert!(pass(n, 42).unwrap() < MAX_NORMALISED_RESIDUAL);
        }
    }

    #[test]
    fn the_large_option_n_1000_solves_and_checks() {
        let n = 1000;
        let resid = pass(n, 7).unwrap();
        assert!(resid < MAX_NORMALISED_RESIDUAL, "{resid}");
        let (mut a, mut b) = generate(n, 7);
        let ipvt = factor(&mut a, n).unwrap();
        solve(&a, n, &ipvt, &mut b);
        assert!(b.iter().all(|x| (x - 1.0).abs() < 1e-8), "n=1000 is not all ones");
        assert!((flops(1000) - 668_666_666.67).abs() < 1.0);
    }

    #[test]
    fn a_wrong_solution_fails_the_residual_check() {
        let n = 100;
        let (a0, b0) = generate(n, 3);
        let mut x = vec![1.0; n];
        assert!(normalised_residual(&a0, &b0, &x, n) < MAX_NORMALISED_RESIDUAL);
        // One element off by a part in a billion: far outside rounding error.
        x[17] += 1e-9;
        assert!(normalised_residual(&a0, &b0, &x, n) > MAX_NORMALISED_RESIDUAL);
    }

    #[test]
    fn a_known_system() {
        // [[2, 1], [4, 3]] x = [3, 7] → x = [1, 1]; column-major storage.
        let mut a = vec![2.0, 4.0, 1.0, 3.0];
        let mut b = vec![3.0, 7.0];
        let ipvt = factor(&mut a, 2).unwrap();
        assert_eq!(ipvt[0], 1, "partial pivoting picks the 4");
        solve(&a, 2, &ipvt, &mut b);
        assert!((b[0] - 1.0).abs() < 1e-12 && (b[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn singular_and_flop_count() {
        let mut a = vec![1.0, 2.0, 2.0, 4.0];
        assert_eq!(factor(&mut a, 2), Err(1));
        assert!((flops(100) - 686_666.666).abs() < 1.0);
    }
}
