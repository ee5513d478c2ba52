//! The convergence frontier: the highest dirty rate at which pre-copy converges for
//! each link, downtime limit and RAM size, and each VM's slowest link.

use super::{FASTEST_LINK_BYTES_PER_S, MIB, Options, PlanVm};
use crate::machine::GuestSpec;
use crate::migration::scenario::Scenario;
use crate::rank::predict::{self, LinkProfile, VmProfile};
use crate::rank::vms;
use serde::Serialize;

/// Bisection between a point that passes a monotone test and one that fails: the
/// last passing point once the two are within a relative 1e-9 (or after 300
/// halvings). `geometric` halves in log space (both points must then be positive).
fn bisect(mut pass: f64, mut fail: f64, test: impl Fn(f64) -> bool, geometric: bool) -> f64 {
    for _ in 0..300 {
        let mid = if geometric { (pass * fail).sqrt() } else { pass + (fail - pass) / 2.0 };
        if mid == pass || mid == fail || (fail - pass).abs() <= 1e-9 * pass.abs().max(fail.abs()) {
            break;
        }
        if test(mid) {
            pass = mid;
        } else {
            fail = mid;
        }
    }
    pass
}

/// The slowest link, bytes/s (to a relative 1e-9), on which `vm` dirtying `dirty`
/// bytes/s converges by pre-copy within its time limit at this downtime limit;
/// `None` when it does not even at [`FASTEST_LINK_BYTES_PER_S`]. Convergence is
/// monotone in the bandwidth (a faster link shrinks every round and raises the
/// threshold L·B, and shortens the total), so bisection finds the boundary.
pub fn slowest_link(vm: &PlanVm, dirty: f64, downtime_limit_s: f64) -> Option<f64> {
    let ok = |b: f64| vm.precopy(dirty, b, downtime_limit_s).1.converges;
    let (lo, hi) = (1.0, FASTEST_LINK_BYTES_PER_S);
    if !ok(hi) {
        return None;
    }
    if ok(lo) {
        return Some(lo);
    }
    Some(bisect(hi, lo, ok, true))
}

/// A dirty-rate bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    MibPerS(f64),
    /// Every dirty rate converges (what there is to send fits the downtime limit).
    Any,
    /// Not even an idle guest converges.
    None,
}

impl Bound {
    fn of(bytes_per_s: f64) -> Bound {
        if bytes_per_s.is_nan() {
            Bound::None
        } else if bytes_per_s.is_infinite() {
            Bound::Any
        } else {
            Bound::MibPerS(bytes_per_s / MIB)
        }
    }

    pub fn show(&self) -> String {
        match self {
            Bound::MibPerS(v) => format!("{v:.1}"),
            Bound::Any => "any".into(),
            Bound::None => "none".into(),
        }
    }
}

/// The highest dirty rate at which pre-copy of `vm` over `link` converges and
/// finishes within `time_limit_s`. The total time grows with the dirty rate (every
/// round's bytes do, and an extra round only adds one), so the set of rates that
/// pass is an interval from 0, below `max_convergent_dirty_rate`.
fn max_dirty_within(vm: &VmProfile, link: &LinkProfile, time_limit_s: f64) -> Bound {
    let ok = |d: f64| {
        let p = predict::precopy(&VmProfile { dirty_rate_bytes_per_s: d, ..*vm }, link);
        p.converges && p.total_s.is_some_and(|t| t <= time_limit_s)
    };
    if !ok(0.0) {
        return Bound::None;
    }
    let mut hi = predict::max_convergent_dirty_rate(vm, link);
    if ok(hi) {
        return Bound::of(hi);
    }
    let mut lo = 0.0;
    if hi.is_infinite() {
        // A rate high enough that every round finds all of RAM dirty acts as +∞,
        // which fails here, so the doubling ends.
        hi = link.bytes_per_s;
        while ok(hi) {
            lo = hi;
            hi *= 2.0;
            if !hi.is_finite() {
                return Bound::Any;
            }
        }
    }
    Bound::of(bisect(lo, hi, ok, false))
}

/// One point of the frontier.
#[derive(Debug, Clone, Serialize)]
pub struct FrontierPoint {
    pub link: String,
    pub downtime_limit_ms: f64,
    pub ram_mib: u32,
    /// `predict::max_convergent_dirty_rate` for a VM of this RAM whose first round
    /// sends all of it.
    pub max_dirty: Bound,
    /// The same, finishing within the frontier's time limit.
    pub max_dirty_within_time_limit: Bound,
}

/// A VM at one link.
#[derive(Debug, Clone, Serialize)]
pub struct AtLink {
    pub link: String,
    /// Pre-copy converges within the VM's time limit.
    pub converges: bool,
    pub total_s: Option<f64>,
    pub reason: String,
    /// Short, for the table.
    pub verdict: String,
}

/// A VM at one downtime limit.
#[derive(Debug, Clone, Serialize)]
pub struct VmFrontier {
    pub vm: String,
    pub ram_mib: u32,
    pub dirty_mib_s: f64,
    /// What the first round sends (the guest's used memory), MiB; `None`: all of RAM.
    pub first_round_mib: Option<f64>,
    pub downtime_limit_ms: f64,
    pub time_limit_s: f64,
    pub links: Vec<AtLink>,
    /// `None`: it does not converge even at 100 Gbit/s.
    pub slowest_link_bytes_per_s: Option<f64>,
    pub slowest_link: String,
}

/// A VM left out of a section, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOut {
    pub vm: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Frontier {
    /// The `max_dirty_within_time_limit` figures use this (the VMs' smallest time limit).
    pub time_limit_s: f64,
    pub points: Vec<FrontierPoint>,
    pub vms: Vec<VmFrontier>,
    pub left_out: Vec<LeftOut>,
}

/// A link speed as `LinkSpeed` parses it, rounded up at its last digit so that the
/// link written is never slower than the one found.
pub fn link_text(bytes_per_s: f64) -> String {
    let bits = bytes_per_s * 8.0;
    let up = |v: f64, digits: i32| {
        let s = 10f64.powi(digits);
        (v * s - 1e-6).ceil() / s
    };
    if bits >= 1e9 {
        format!("{:.2}Gbit", up(bits / 1e9, 2))
    } else if bits >= 1e6 {
        format!("{:.1}Mbit", up(bits / 1e6, 1))
    } else {
        format!("{:.0}kbit", up(bits / 1e3, 0))
    }
}

pub fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 && (ms / 1000.0).fract() == 0.0 { format!("{} s", ms / 1000.0) } else { format!("{ms} ms") }
}

/// `sizes`: one guest of each RAM size.
pub(super) fn frontier(vms: &[(&PlanVm, f64)], sizes: &[GuestSpec], time_limit_s: f64, opts: &Options) -> Frontier {
    let mut points = Vec::new();
    for link in &opts.links {
        for &limit_ms in &opts.downtime_limits_ms {
            for guest in sizes {
                // The scenario supplies only the model's constants (device state,
                // set-up, rounds): the link and the limit are the plan's.
                let (vm, l) = vms::model_inputs(guest, &Scenario::default(), 0.0, None);
                let l = LinkProfile { bytes_per_s: link.max_bandwidth() as f64, downtime_limit_s: limit_ms / 1000.0, ..l };
                points.push(FrontierPoint {
                    link: link.to_string(),
                    downtime_limit_ms: limit_ms,
                    ram_mib: guest.ram_mib,
                    max_dirty: Bound::of(predict::max_convergent_dirty_rate(&vm, &l)),
                    max_dirty_within_time_limit: max_dirty_within(&vm, &l, time_limit_s),
                });
            }
        }
    }
    let mut rows = Vec::new();
    for (vm, dirty) in vms {
        for &limit_ms in &opts.downtime_limits_ms {
            let limit_s = limit_ms / 1000.0;
            let links = opts
                .links
                .iter()
                .map(|link| {
                    let (raw, judged) = vm.precopy(*dirty, link.max_bandwidth() as f64, limit_s);
                    let verdict = match (judged.total_s, raw.total_s) {
                        (Some(t), _) => format!("yes, {t:.2} s"),
                        (None, Some(t)) => format!("no: {t:.0} s, past {:.0} s", vm.scenario.timeout_s),
                        (None, None) => "no".into(),
                    };
                    AtLink { link: link.to_string(), converges: judged.converges, total_s: judged.total_s, reason: judged.reason, verdict }
                })
                .collect();
            let slowest = slowest_link(vm, *dirty, limit_s);
            rows.push(VmFrontier {
                vm: vm.label.clone(),
                ram_mib: vm.guest.ram_mib,
                dirty_mib_s: dirty / MIB,
                first_round_mib: vm.first_round_bytes.map(|b| b as f64 / MIB),
                downtime_limit_ms: limit_ms,
                time_limit_s: vm.scenario.timeout_s,
                links,
                slowest_link_bytes_per_s: slowest,
                slowest_link: slowest.map_or_else(|| "none up to 100 Gbit".to_string(), link_text),
            });
        }
    }
    Frontier { time_limit_s, points, vms: rows, left_out: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Accel;
    use crate::migration::scenario::LinkSpeed;
    use crate::rank::plan::testing::*;

    #[test]
    fn the_slowest_link_by_bisection() {
        // An idle VM with 120 MiB in use and a 120 s time limit: round 0 takes
        // 120 MiB / B, then 1 MiB of state: 121 MiB / B ≤ 120 s, so B = 121/120 MiB/s.
        let idle = vm("idle", 256, 0.0, Some(120));
        let b = slowest_link(&idle, 0.0, 0.3).unwrap();
        assert!(close(b, 121.0 / 120.0 * MB, 1e-6 * MB), "{}", b / MB);
        // A dirtier: 100 MiB in use, 10 MiB/s, limit 1 s: it needs B > 10 MiB/s,
        // and then enough margin to finish within 1000 rounds and 120 s. The link
        // found converges and one a millionth slower does not.
        let hot = vm("hot", 256, 10.0, Some(100));
        let b = slowest_link(&hot, 10.0 * MB, 1.0).unwrap();
        assert!(b > 10.0 * MB, "{}", b / MB);
        assert!(hot.precopy(10.0 * MB, b, 1.0).1.converges);
        assert!(!hot.precopy(10.0 * MB, b * (1.0 - 1e-6), 1.0).1.converges);
        // Dirtying faster than 100 Gbit/s, with more RAM than 10 ms at 100 Gbit/s
        // carry (125 MB): none. With a 0.3 s limit all of its 256 MiB fits the
        // stop-and-copy at 7.2 Gbit/s, so however fast it dirties, it converges.
        let wild = vm("wild", 256, 20_000.0, None);
        assert_eq!(slowest_link(&wild, 20_000.0 * MB, 0.01), None);
        let b = slowest_link(&wild, 20_000.0 * MB, 0.3).unwrap();
        assert!(close(b, 256.0 * MB / 0.3, 10.0), "{b}");
        assert_eq!(link_text(12.5e6), "100.0Mbit");
        assert_eq!(link_text(125e6 * 1.000001), "1.01Gbit");
        assert_eq!(link_text(1000.0), "8kbit");
        assert_eq!(link_text(b).parse::<LinkSpeed>().map(|l| l.max_bandwidth() as f64 >= b.floor()), Ok(true));
    }

    #[test]
    fn the_frontier_within_a_time_limit() {
        // 1024 MiB, all of it in round 0, 100 MiB/s, limit 0.3 s (30 MiB).
        let (vm, link) = vms::model_inputs(&GuestSpec::new(1024, 1, Accel::Tcg).unwrap(), &Scenario::default(), 0.0, None);
        let link = LinkProfile { bytes_per_s: 100.0 * MB, downtime_limit_s: 0.3, ..link };
        let star = predict::max_convergent_dirty_rate(&vm, &link);
        // No time limit to speak of: the bound is max_convergent_dirty_rate.
        assert_eq!(max_dirty_within(&vm, &link, 1e12), Bound::of(star));
        // 20 s: the rounds 10.24 s · (1 + r + r² + …), cut short once 30 MiB is
        // left, must stay within 20 s: r a little under 1 − 10.24/20 = 0.488.
        let Bound::MibPerS(d) = max_dirty_within(&vm, &link, 20.0) else { panic!() };
        assert!(d > 45.0 && d < 50.0, "{d}");
        let total = |d: f64| predict::precopy(&VmProfile { dirty_rate_bytes_per_s: d * MB, ..vm }, &link).total_s.unwrap();
        assert!(total(d) <= 20.0 && total(d * (1.0 + 1e-6)) > 20.0, "{} {}", total(d), total(d * (1.0 + 1e-6)));
        // Less time than even an idle guest needs (10.25 s): none.
        assert_eq!(max_dirty_within(&vm, &link, 5.0), Bound::None);
        // All of RAM fits the downtime limit: any rate, if there is time for it twice.
        let small = VmProfile { ram_bytes: 16 << 20, ..vm };
        assert_eq!(max_dirty_within(&small, &link, 120.0), Bound::Any);
    }
}
