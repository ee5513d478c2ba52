//! Kernels 1 to 14: for each, its arrays' layout in the arena (`lay`), how it
//! fills its inputs (`init`) and the loop itself (`run`).

use crate::livermore::data::{Rng, Workspace, carve, opaque, weigh};
use std::hint::black_box;

// ---- 1: hydro fragment ---------------------------------------------------------

pub(super) fn lay01(n: usize) -> [usize; 3] {
    [n, n, n + 11] // x, y, zx
}

pub(super) fn init01(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y, zx] = carve(&mut ws.f, lay01(n));
    rng.fill(y, 0.0, 1.0);
    rng.fill(zx, 0.0, 1.0);
}

pub(super) fn run01(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) fn lay02(n: usize) -> [usize; 2] {
    [2 * n + 2, 2 * n + 2] // x, v
}

/// Inner iterations of kernel 2: a level of width w eliminates every other
/// unknown, w/2 of them, and the next level has that width.
pub(super) fn iccg_steps(n: usize) -> usize {
    let (mut width, mut steps) = (n, 0);
    while width > 0 {
        steps += width / 2;
        width /= 2;
    }
    steps
}

pub(super) fn init02(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x, v] = carve(&mut ws.f, lay02(n));
    rng.fill(&mut x[..n], 0.0, 1.0);
    rng.fill(v, -0.25, 0.25);
}

pub(super) fn run02(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay03(n: usize) -> [usize; 2] {
    [n, n] // x, z
}

pub(super) fn init03(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x, z] = carve(&mut ws.f, lay03(n));
    rng.fill(x, -1.0, 1.0);
    rng.fill(z, -1.0, 1.0);
}

pub(super) fn run03(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) fn lay04(n: usize) -> [usize; 4] {
    [1001, 1001 + n / 5, n, 3] // x, xz, y, the three x(k-1) as they were
}

/// The band's three rows, 1-based: k = 7, 504, 1001.
const BAND_STEP: usize = (1001 - 7) / 2;

pub(super) fn init04(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x, xz, y, x0] = carve(&mut ws.f, lay04(n));
    rng.fill(x, 0.0, 1.0);
    rng.fill(xz, -1.0, 1.0);
    rng.fill(y, -1.0, 1.0);
    for (kk, k) in (7..=1001).step_by(BAND_STEP).enumerate() {
        x0[kk] = x[k - 2];
    }
}

pub(super) fn run04(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay05(n: usize) -> [usize; 3] {
    [n, n, n] // x, y, z
}

pub(super) fn init05(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [x, y, z] = carve(&mut ws.f, lay05(n));
    x[0] = rng.uniform(0.0, 1.0);
    rng.fill(y, 0.0, 1.0);
    rng.fill(z, -0.9, 0.9);
}

pub(super) fn run05(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay06(n: usize) -> [usize; 2] {
    [n, n * n] // w, b (column-major: b(i,k) is b[(k-1)·n + i])
}

pub(super) fn init06(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [w, b] = carve(&mut ws.f, lay06(n));
    w[0] = rng.uniform(0.5, 1.0);
    // Coefficients of at most 1/n in size keep the recurrence from growing.
    let c = 1.0 / n as f64;
    rng.fill(b, -c, c);
}

pub(super) fn run06(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay07(n: usize) -> [usize; 4] {
    [n, n, n, n + 6] // x, y, z, u
}

pub(super) fn init07(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y, z, u] = carve(&mut ws.f, lay07(n));
    rng.fill(y, 0.0, 1.0);
    rng.fill(z, 0.0, 1.0);
    rng.fill(u, 0.0, 1.0);
}

pub(super) fn run07(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) fn lay08(n: usize) -> [usize; 6] {
    [10 * (n + 1), 10 * (n + 1), 10 * (n + 1), n + 1, n + 1, n + 1]
}

pub(super) fn init08(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [u1, u2, u3, ..] = carve(&mut ws.f, lay08(n));
    let level = 5 * (n + 1);
    rng.fill(&mut u1[..level], 0.0, 1.0);
    rng.fill(&mut u2[..level], 0.0, 1.0);
    rng.fill(&mut u3[..level], 0.0, 1.0);
}

pub(super) fn run08(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay09(n: usize) -> [usize; 1] {
    [PX_ROWS * n] // px
}

pub(super) fn init09(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [px] = carve(&mut ws.f, lay09(n));
    rng.fill(px, 0.0, 1.0);
}

pub(super) fn run09(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay10(n: usize) -> [usize; 3] {
    [PX_ROWS * n, PX_ROWS * n, 9 * n] // px, cx, px(5..13, i) as they were
}

pub(super) fn init10(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [px, cx, p0] = carve(&mut ws.f, lay10(n));
    rng.fill(px, 0.0, 1.0);
    rng.fill(cx, 0.0, 1.0);
    for i in 0..n {
        p0[i * 9..(i + 1) * 9].copy_from_slice(&px[i * PX_ROWS + 4..i * PX_ROWS + 13]);
    }
}

pub(super) fn run10(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay11(n: usize) -> [usize; 2] {
    [n, n] // x, y
}

pub(super) fn init11(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y] = carve(&mut ws.f, lay11(n));
    rng.fill(y, -1.0, 1.0);
}

pub(super) fn run11(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

pub(super) fn lay12(n: usize) -> [usize; 2] {
    [n, n + 1] // x, y
}

pub(super) fn init12(ws: &mut Workspace, n: usize, rng: &mut Rng) {
    let [_, y] = carve(&mut ws.f, lay12(n));
    rng.fill(y, -1.0, 1.0);
}

pub(super) fn run12(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) fn lay13(n: usize) -> [usize; 7] {
    [4 * n, 4 * n, MESH * MESH, MESH * MESH, MESH * MESH, 96, 96] // p, p0, b, c, h, y, z
}

pub(super) fn ilay13() -> [usize; 2] {
    [96, 96] // e, f: cell shifts
}

pub(super) fn init13(ws: &mut Workspace, n: usize, rng: &mut Rng) {
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

pub(super) fn run13(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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
pub(super) fn lay14(n: usize) -> [usize; 10] {
    [n, GRID, GRID, n, n, n, n, n, n, GRID + 1]
}

pub(super) fn ilay14(n: usize) -> [usize; 2] {
    [n, n] // ix, ir
}

pub(super) fn init14(ws: &mut Workspace, n: usize, rng: &mut Rng) {
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

pub(super) fn run14(ws: &mut Workspace, n: usize, reps: u32) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livermore::kernels::{execute, init};
    use crate::livermore::spans::{Span, span_len};

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
}
