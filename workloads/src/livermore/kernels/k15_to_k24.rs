//! Kernels 15 to 24: for each, its arrays' layout in the arena (`lay`), how it
//! fills its inputs (`init`) and the loop itself (`run`).

use crate::livermore::data::{Rng, Workspace, carve, opaque, weigh};
use std::hint::black_box;

// ---- 15: casual Fortran -------------------------------------------------------------------

/// Rows of kernel 15's mesh (the span is its columns).
pub(super) const NG: usize = 7;

/// vh, vf, vg, vy, vs: (n, NG) meshes, column j at j·n.
pub(super) fn lay15(n: usize) -> [usize; 5] {
    [n * NG, n * NG, n * NG, n * NG, n * NG]
}

pub(super) fn init15(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [vh, vf, vg, ..] = carve(&mut ws.f, lay15(n));
    rng.fill(vh, 0.0, 1.0);
    rng.fill(vf, 0.5, 1.5);
    rng.fill(vg, 0.0, 1.0);
}

pub(super) fn run15(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) const K16_COUNTS: [[usize; 2]; 3] = [[40, 17], [649, 95], [1506, 100]];

pub(super) fn lay16(n: usize) -> [usize; 2] {
    [n, n + 9] // plan, d
}

/// The zones: a row of n (flag, zone index) pairs per search.
pub(super) fn ilay16(n: usize) -> [usize; 1] {
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

pub(super) fn init16(ws: &mut Workspace, n: usize, rng: &mut Rng) {
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

pub(super) fn run16(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) const K17_PATHS: [[usize; 3]; 3] = [[0, 7, 7], [5, 43, 52], [6, 31, 63]];

pub(super) fn lay17(n: usize) -> [usize; 8] {
    [n; 8] // vsp, vstp, vxne, vxne as it was, vxnd, ve3, vlr, vlin
}

pub(super) fn init17(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [vsp, vstp, _, vxne0, _, _, vlr, vlin] = carve(&mut ws.f, lay17(n));
    rng.fill(vsp, 0.1, 0.9);
    rng.fill(vstp, 0.05, 0.3);
    rng.fill(vxne0, 0.0, 1.5);
    rng.fill(vlr, 0.2, 0.8);
    rng.fill(vlin, 0.1, 0.5);
}

pub(super) fn run17(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) fn lay18(n: usize) -> [usize; 13] {
    [(n + 1) * (KN + 1); 13]
}

pub(super) fn init18(ws: &mut Workspace, n: usize, rng: &mut Rng) {
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

pub(super) fn run18(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay19(n: usize) -> [usize; 3] {
    [n, n, n] // b5, sa, sb
}

pub(super) fn init19(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, sa, sb] = carve(&mut ws.f, lay19(n));
    rng.fill(sa, 0.0, 1.0);
    // stb5 is carried as stb5·(sb - 1) + sa: |sb - 1| < 1/2 keeps it bounded.
    rng.fill(sb, 0.5, 1.5);
}

pub(super) fn run19(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay20(n: usize) -> [usize; 9] {
    [n, n, n, n, n, n, n, n, n + 1] // x, y, z, u, v, w, g, vx, xx
}

pub(super) fn init20(ws: &mut Workspace, n: usize, rng: &mut Rng) {
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

pub(super) fn run20(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay21(n: usize) -> [usize; 4] {
    [M21 * n, M21 * M21, M21 * n, M21 * n] // px, vy, cx, px as it was
}

pub(super) fn init21(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [px, vy, cx, px0] = carve(&mut ws.f, lay21(n));
    rng.fill(px0, 0.0, 1.0);
    rng.fill(vy, -1.0, 1.0);
    rng.fill(cx, 0.0, 1.0);
    px.copy_from_slice(px0);
}

pub(super) fn run21(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay22(n: usize) -> [usize; 5] {
    [n, n, n, n, n] // u, v, w, x, y
}

pub(super) fn init22(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [u, v, _, x, _] = carve(&mut ws.f, lay22(n));
    rng.fill(v, 0.5, 2.0);
    // u/v (the y the kernel computes) from 0.05 to 8, and 19.8 at the end: w then
    // ranges over five decades, no element so small that the checksum cannot see it.
    for k in 0..n {
        u[k] = v[k] * rng.uniform(0.05, 8.0);
    }
    rng.fill(x, 0.0, 1.0);
}

pub(super) fn run22(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) fn lay23(n: usize) -> [usize; 7] {
    [(n + 1) * 7; 7]
}

pub(super) fn init23(ws: &mut Workspace, n: usize, rng: &mut Rng) {
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

pub(super) fn run23(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay24(n: usize) -> [usize; 1] {
    [n] // x
}

pub(super) fn init24(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x] = carve(&mut ws.f, lay24(n));
    rng.fill(x, 0.0, 1.0);
}

pub(super) fn run24(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livermore::kernels::{execute, init};
    use crate::livermore::spans::{Span, span_len};

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
}
