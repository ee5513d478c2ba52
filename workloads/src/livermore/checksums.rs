//! The pinned checksums of every kernel and span, and the check a pass makes
//! against them.

use super::kernels::name;
use super::spans::{KERNELS, Span, slot};

/// The repetitions [`expected_checksum`] is pinned for (any count gives the same).
pub const REPS_FOR_CHECK: u32 = 3;

/// A checksum further than this (relative) from the pinned value is wrong.
pub const TOLERANCE: f64 = 1e-10;

/// The checksum of `run_kernel(ws, k, span, REPS_FOR_CHECK)`, pinned.
pub fn expected_checksum(k: usize, span: Span) -> f64 {
    f64::from_bits(EXPECTED[slot(k)][span as usize])
}

pub(super) fn check(k: usize, span: Span, got: f64, want: f64) -> Result<(), String> {
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
    use crate::livermore::{Workspace, run_kernel};

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

    #[test]
    fn the_check_has_a_relative_tolerance() {
        assert!(check(1, Span::Long, 1000.0 * (1.0 + 1e-12), 1000.0).is_ok());
        assert!(check(1, Span::Long, -1000.0 * (1.0 + 1e-12), -1000.0).is_ok());
        assert!(check(1, Span::Long, 1000.0 * (1.0 + 1e-9), 1000.0).is_err());
        assert!(check(1, Span::Long, f64::NAN, 1000.0).is_err());
        assert!(check(1, Span::Long, 0.0, 0.0).is_ok());
    }
}
