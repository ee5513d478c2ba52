//! `migbench plan`: capacity planning for a set of VMs (the cells of a results file,
//! or of a profile whose guests have had their dirty rates measured), from the cost
//! model (`crate::rank::predict`) and, where there are any, the measured migrations:
//!
//! 1. the convergence frontier: the highest dirty rate at which pre-copy converges
//!    for each link, downtime limit and RAM size, and for each VM whether it
//!    converges on each link and the slowest link on which it still does;
//! 2. how long evacuating a host that holds all the VMs takes, one by one and with
//!    k migrations at once;
//! 3. total time against RAM: a least-squares line per group of measured runs.
//!
//! The model's inputs are those `migbench rank` uses (`rank::vms::model_inputs`:
//! 1 MiB of device state, no set-up time, at most 1000 rounds, each VM's own time
//! limit). On top of `predict`'s own simplifications (constant dirty rate and
//! bandwidth, no compression, no auto-converge), planning assumes:
//! - every VM migrates by pre-copy, whatever strategy its runs used; a VM whose
//!   pre-copy would not converge (or would outlast its time limit) is moved by
//!   post-copy instead, which always finishes: each page is sent once;
//! - k parallel migrations share the link equally, and each is predicted at link/k
//!   for its whole run, even once fewer than k are left: a real link would give the
//!   last migrations more, so the makespan is pessimistic for the tail, and a VM may
//!   be reported as not converging at link/k that would converge once alone;
//! - migrations compete for nothing but the link (not for the host's CPUs or memory
//!   bandwidth, which on a busy host they also do).
//!
//! Everything here is a pure function of its arguments: no I/O, no clock.

use crate::summary::cell_runs::CellRuns;
use crate::summary::stats::Stats;
use crate::record::RunRecord;
use crate::machine::GuestSpec;
use crate::migration::scenario::{LinkSpeed, Scenario};
use crate::rank::predict::{self, LinkProfile, Prediction, VmProfile};
use crate::rank::vms::{self, PredictedVm, VmRow};
use serde::Serialize;
use tabled::settings::Style;

const MIB: f64 = 1_048_576.0;

/// The fastest link the search for a VM's slowest link tries: 100 Gbit/s.
pub const FASTEST_LINK_BYTES_PER_S: f64 = 12.5e9;

/// The CLI's defaults, parsed by the same functions as the user's values.
pub const DEFAULT_LINKS: &str = "100Mbit,1Gbit,10Gbit";
pub const DEFAULT_DOWNTIME_LIMITS: &str = "50ms,300ms,1s";
pub const DEFAULT_PARALLEL: &str = "1,2,4";

/// At most this many migrations at once.
pub const MAX_PARALLEL: usize = 64;

/// QEMU refuses a `downtime-limit` above 2000 s.
const MAX_DOWNTIME_LIMIT_MS: f64 = 2_000_000.0;

/// What to plan for: each list sorted, without repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub links: Vec<LinkSpeed>,
    pub downtime_limits_ms: Vec<f64>,
    pub parallel: Vec<usize>,
}

impl Options {
    /// The three flags' values, each checked; an error names the flag, the value
    /// and what to write instead.
    pub fn parse(links: &str, downtime_limits: &str, parallel: &str) -> Result<Options, String> {
        Ok(Options { links: parse_links(links)?, downtime_limits_ms: parse_downtime_limits(downtime_limits)?, parallel: parse_parallel(parallel)? })
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::parse(DEFAULT_LINKS, DEFAULT_DOWNTIME_LIMITS, DEFAULT_PARALLEL).expect("the defaults parse")
    }
}

/// The comma-separated items of `text`, or why not (an empty list or item).
fn items<'a>(flag: &str, text: &'a str, example: &str) -> Result<Vec<&'a str>, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(format!("{flag} {text}: an empty item; give a comma-separated list such as {example}"));
    }
    Ok(items)
}

/// `--links`: link speeds as profiles write them (`LinkSpeed`), e.g. `100Mbit,1Gbit`.
pub fn parse_links(text: &str) -> Result<Vec<LinkSpeed>, String> {
    let mut links = Vec::new();
    for item in items("--links", text, DEFAULT_LINKS)? {
        let link: LinkSpeed = item.parse().map_err(|e| format!("--links {text}: {e}"))?;
        links.push(link);
    }
    links.sort_by_key(|l| l.max_bandwidth());
    links.dedup_by_key(|l| l.max_bandwidth());
    Ok(links)
}

/// `--downtime-limits`: durations in ms or s, e.g. `50ms,0.3s,1s`; returned in ms.
pub fn parse_downtime_limits(text: &str) -> Result<Vec<f64>, String> {
    let mut limits = Vec::new();
    for item in items("--downtime-limits", text, DEFAULT_DOWNTIME_LIMITS)? {
        let bad = |why: &str| format!("--downtime-limits {text}: {item:?} {why}; write durations such as 50ms, 300ms, 0.5s or 1s");
        let (number, scale) = if let Some(n) = item.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = item.strip_suffix('s') {
            (n, 1000.0)
        } else if item.parse::<f64>().is_ok() {
            return Err(bad("has no unit"));
        } else {
            return Err(bad("is not a duration"));
        };
        let ms = match number.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => v * scale,
            _ => return Err(bad("is not a duration")),
        };
        if !(0.0..=MAX_DOWNTIME_LIMIT_MS).contains(&ms) {
            return Err(bad("is out of range (QEMU takes 0 to 2000 s)"));
        }
        limits.push(ms);
    }
    limits.sort_by(f64::total_cmp);
    limits.dedup();
    Ok(limits)
}

/// `--parallel`: how many migrations run at once, e.g. `1,2,4`.
pub fn parse_parallel(text: &str) -> Result<Vec<usize>, String> {
    let mut ks = Vec::new();
    for item in items("--parallel", text, DEFAULT_PARALLEL)? {
        match item.parse::<usize>() {
            Ok(k) if (1..=MAX_PARALLEL).contains(&k) => ks.push(k),
            _ => return Err(format!("--parallel {text}: {item:?} is not a number of migrations at once; give whole numbers 1 to {MAX_PARALLEL}, such as 1,2,4")),
        }
    }
    ks.sort_unstable();
    ks.dedup();
    Ok(ks)
}

/// One VM to plan for.
#[derive(Debug, Clone)]
pub struct PlanVm {
    pub label: String,
    pub guest: GuestSpec,
    /// Its downtime limit and time limit are used where a plan does not set them.
    pub scenario: Scenario,
    pub first_round_bytes: Option<u64>,
    /// Bytes/s as QEMU measured it, or why there is no rate (such a VM is left out
    /// of sections 1 and 2).
    pub dirty_bytes_per_s: Result<f64, String>,
    /// The mean total time of its healthy completed runs, ms.
    pub measured_total_ms: Option<f64>,
}

impl PlanVm {
    /// A cell of a results file.
    pub fn from_row(r: &VmRow) -> PlanVm {
        PlanVm {
            label: r.label.clone(),
            guest: r.guest,
            scenario: r.scenario.clone(),
            first_round_bytes: r.first_round_bytes,
            dirty_bytes_per_s: r.dirty_rate_mib_s.map(|d| d * MIB).ok_or_else(|| r.no_dirty_rate.clone().unwrap_or_default()),
            measured_total_ms: r.total_time_ms.map(|s| s.mean),
        }
    }

    /// A cell of a profile whose guest was booted and measured (nothing migrated).
    pub fn from_predicted(p: &PredictedVm) -> PlanVm {
        PlanVm {
            label: p.label.clone(),
            guest: p.guest,
            scenario: p.scenario.clone(),
            first_round_bytes: p.first_round_bytes,
            dirty_bytes_per_s: p.dirty_rate.as_ref().map(|d| d.bytes_per_s()).ok_or_else(|| p.error.clone().unwrap_or_else(|| "no dirty rate was measured".into())),
            measured_total_ms: None,
        }
    }

    fn inputs(&self, dirty: f64, bytes_per_s: f64, downtime_limit_s: f64) -> (VmProfile, LinkProfile) {
        let (vm, link) = vms::model_inputs(&self.guest, &self.scenario, dirty, self.first_round_bytes);
        (vm, LinkProfile { bytes_per_s, downtime_limit_s, ..link })
    }

    /// Pre-copy at this bandwidth and downtime limit, as the model predicts it and
    /// then judged against the VM's time limit.
    fn precopy(&self, dirty: f64, bytes_per_s: f64, downtime_limit_s: f64) -> (Prediction, Prediction) {
        let (vm, link) = self.inputs(dirty, bytes_per_s, downtime_limit_s);
        let raw = predict::precopy(&vm, &link);
        (raw.clone(), vms::within_time_limit(raw, self.scenario.timeout_s))
    }
}

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

    fn show(&self) -> String {
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

fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 && (ms / 1000.0).fract() == 0.0 { format!("{} s", ms / 1000.0) } else { format!("{ms} ms") }
}

/// `sizes`: one guest of each RAM size.
fn frontier(vms: &[(&PlanVm, f64)], sizes: &[GuestSpec], time_limit_s: f64, opts: &Options) -> Frontier {
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

/// Longest-processing-time-first scheduling: the jobs, longest first (equal ones
/// in their given order), each go to the slot that is free soonest (on a tie the
/// lowest). Returns each slot's jobs (indices into `times`) and the makespan, the
/// busiest slot's total. `k` = 0 is taken as 1.
pub fn longest_first(times: &[f64], k: usize) -> (Vec<Vec<usize>>, f64) {
    let k = k.max(1);
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|&a, &b| times[b].total_cmp(&times[a]).then(a.cmp(&b)));
    let mut slots: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut load = vec![0.0f64; k];
    for i in order {
        let s = (0..k).min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b))).expect("k ≥ 1");
        slots[s].push(i);
        load[s] += times[i];
    }
    let makespan = load.iter().copied().fold(0.0, f64::max);
    (slots, makespan)
}

/// A VM's migration in an evacuation.
#[derive(Debug, Clone, Serialize)]
pub struct VmTime {
    pub vm: String,
    /// "precopy", or "postcopy" when pre-copy would not converge at this share.
    pub strategy: String,
    pub total_s: f64,
    /// Why pre-copy was not used.
    pub precopy_fails: Option<String>,
}

/// All VMs off the host with `k` migrations at once.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub k: usize,
    /// Each migration's bandwidth: link/k.
    pub share_bytes_per_s: f64,
    pub vms: Vec<VmTime>,
    /// The VMs each slot migrates, in order.
    pub slots: Vec<Vec<String>>,
    pub makespan_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkEvacuation {
    pub link: String,
    pub bytes_per_s: f64,
    /// k = 1: the makespan is the sum of the VMs' times.
    pub one_by_one: Schedule,
    /// One schedule per `--parallel` value.
    pub parallel: Vec<Schedule>,
}

/// The measured side of one-by-one.
#[derive(Debug, Clone, Serialize)]
pub struct MeasuredEvacuation {
    /// The sum of the VMs' mean measured total times, seconds.
    pub total_s: f64,
    pub vms: usize,
    pub of: usize,
    /// The links they ran at.
    pub links: Vec<String>,
    /// The model's one-by-one time for the same VMs at the link they ran at (when
    /// they all ran at one, and each has a dirty rate for the model).
    pub model_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evacuation {
    pub links: Vec<LinkEvacuation>,
    pub measured: Option<MeasuredEvacuation>,
    pub simplification: String,
    pub left_out: Vec<LeftOut>,
}

pub const SIMPLIFICATION: &str = "k parallel migrations share the link equally: each is predicted at link/k for its whole run, even once fewer than k are left \
     (a real link would give the last ones more, so the makespan is pessimistic for the tail); the VMs are scheduled longest first onto k slots";

/// The evacuation of `vms` (each with its dirty rate) over a link of `bytes_per_s`
/// with `k` migrations at once; each at its own downtime and time limit.
pub fn schedule(vms: &[(&PlanVm, f64)], bytes_per_s: f64, k: usize) -> Schedule {
    let k = k.max(1);
    let share = bytes_per_s / k as f64;
    let times: Vec<VmTime> = vms
        .iter()
        .map(|(vm, dirty)| {
            let (_, pre) = vm.precopy(*dirty, share, vm.scenario.downtime_limit_ms as f64 / 1000.0);
            match pre.total_s {
                Some(t) if pre.converges => VmTime { vm: vm.label.clone(), strategy: pre.strategy, total_s: t, precopy_fails: None },
                _ => {
                    let (v, l) = vm.inputs(*dirty, share, vm.scenario.downtime_limit_ms as f64 / 1000.0);
                    let post = predict::postcopy(&v, &l);
                    VmTime { vm: vm.label.clone(), strategy: post.strategy, total_s: post.total_s.unwrap_or(f64::INFINITY), precopy_fails: Some(pre.reason) }
                }
            }
        })
        .collect();
    let (slots, makespan) = longest_first(&times.iter().map(|t| t.total_s).collect::<Vec<_>>(), k);
    let slots = slots.into_iter().map(|s| s.into_iter().map(|i| times[i].vm.clone()).collect()).collect();
    Schedule { k, share_bytes_per_s: share, vms: times, slots, makespan_s: makespan }
}

fn evacuation(vms: &[(&PlanVm, f64)], all: &[PlanVm], opts: &Options) -> Evacuation {
    let links = opts
        .links
        .iter()
        .map(|link| {
            let b = link.max_bandwidth() as f64;
            LinkEvacuation { link: link.to_string(), bytes_per_s: b, one_by_one: schedule(vms, b, 1), parallel: opts.parallel.iter().map(|&k| schedule(vms, b, k)).collect() }
        })
        .collect();
    let measured: Vec<&PlanVm> = all.iter().filter(|v| v.measured_total_ms.is_some()).collect();
    let measured = (!measured.is_empty()).then(|| {
        let mut links: Vec<String> = measured.iter().map(|v| v.scenario.link.to_string()).collect();
        links.sort();
        links.dedup();
        // The model over exactly these VMs, at the bandwidth they had.
        let modelled: Vec<(&PlanVm, f64)> =
            vms.iter().filter(|(v, _)| measured.iter().any(|m| std::ptr::eq(*m, *v))).map(|(v, d)| (*v, *d)).collect();
        let model_s = (links.len() == 1 && modelled.len() == measured.len())
            .then(|| schedule(&modelled, measured[0].scenario.link.max_bandwidth() as f64, 1).makespan_s);
        MeasuredEvacuation { total_s: measured.iter().filter_map(|v| v.measured_total_ms).sum::<f64>() / 1000.0, vms: measured.len(), of: all.len(), links, model_s }
    });
    Evacuation { links, measured, simplification: SIMPLIFICATION.into(), left_out: Vec::new() }
}

/// A least-squares line total_time_ms = a + b · RAM_MiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    pub a_ms: f64,
    pub b_ms_per_mib: f64,
    /// `None` when every run took the same time (nothing to explain).
    pub r2: Option<f64>,
    /// |fit − measured| / measured over the runs, %; `None` when no run took > 0 ms.
    pub median_error_percent: Option<f64>,
    pub worst_error_percent: Option<f64>,
}

/// The least-squares line through `points` (RAM MiB, total ms); `None` with fewer
/// than 2 distinct RAM sizes (or a non-finite value).
pub fn fit_line(points: &[(f64, f64)]) -> Option<Fit> {
    if points.iter().any(|(x, y)| !(x.is_finite() && y.is_finite())) {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if points.len() < 2 || sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let b = sxy / sxx;
    let a = mean_y - b * mean_x;
    let ss_res: f64 = points.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    let r2 = (ss_tot > 0.0).then(|| 1.0 - ss_res / ss_tot);
    let errors: Vec<f64> = points.iter().filter(|p| p.1 > 0.0).map(|p| 100.0 * (a + b * p.0 - p.1).abs() / p.1).collect();
    let stats = Stats::of(&errors);
    Some(Fit { a_ms: a, b_ms_per_mib: b, r2, median_error_percent: stats.map(|s| s.median), worst_error_percent: stats.map(|s| s.max) })
}

/// One group of runs that differ only in RAM.
#[derive(Debug, Clone, Serialize)]
pub struct FitGroup {
    pub group: String,
    /// Healthy completed runs with a total time: the points of the fit.
    pub runs: usize,
    pub ram_mib: Vec<u32>,
    pub fit: Option<Fit>,
    /// Why there is no fit.
    pub why_not: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fits {
    pub groups: Vec<FitGroup>,
    /// Why there are no groups.
    pub note: Option<String>,
}

/// The variables a fit group is named by, besides those that vary.
const GROUP_BY: [&str; 3] = ["workload", "link", "strategy"];

/// Total time against RAM, per group of runs with the same workload, link,
/// strategy and other varied settings.
pub fn fits(records: &[RunRecord]) -> Fits {
    if records.is_empty() {
        return Fits { groups: Vec::new(), note: Some("No measured runs".into()) };
    }
    let cells: Vec<serde_json::Value> = records.iter().map(|r| serde_json::to_value(&r.run.cell).unwrap_or_default()).collect();
    let varied = vms::varied(&cells);
    let mut names: Vec<&str> = GROUP_BY.to_vec();
    names.extend(varied.iter().map(String::as_str).filter(|v| *v != "ram_mib" && !GROUP_BY.contains(v)));
    let profiles = records.iter().map(|r| &r.run.profile).collect::<std::collections::BTreeSet<_>>().len();
    let mut groups: Vec<(String, Vec<&RunRecord>)> = Vec::new();
    for (r, cell) in records.iter().zip(&cells) {
        let mut label: Vec<String> = names.iter().map(|n| format!("{n}={}", vms::show(&cell[*n]))).collect();
        if profiles > 1 {
            label.insert(0, r.run.profile.clone());
        }
        let label = label.join(" ");
        match groups.iter_mut().find(|g| g.0 == label) {
            Some(g) => g.1.push(r),
            None => groups.push((label, vec![r])),
        }
    }
    let groups = groups
        .into_iter()
        .map(|(group, runs)| {
            let runs = CellRuns::new(runs);
            let points: Vec<(f64, f64)> =
                runs.counted().filter_map(|r| Some((r.run.cell.ram_mib as f64, r.migration.measurement.total_time_ms?))).collect();
            let mut ram: Vec<u32> = points.iter().map(|p| p.0 as u32).collect();
            ram.sort_unstable();
            ram.dedup();
            let (fit, why_not) = if points.is_empty() {
                (None, Some(runs.why_no_figure().unwrap_or_else(|| "no run recorded a total time".to_string())))
            } else if ram.len() < 2 {
                (None, Some("needs ≥ 2 RAM sizes".to_string()))
            } else {
                (fit_line(&points), None)
            };
            FitGroup { group, runs: points.len(), ram_mib: ram, fit, why_not }
        })
        .collect();
    Fits { groups, note: None }
}

/// The three sections.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub source: String,
    pub vms: usize,
    pub assumptions: Vec<String>,
    pub frontier: Frontier,
    pub evacuation: Evacuation,
    pub fits: Fits,
}

/// The model's assumptions, as the output states them.
pub fn assumptions() -> Vec<String> {
    [
        "the cost model of `migbench rank` (predict.rs): constant dirty rate and bandwidth, no compression, no auto-converge; 1 MiB of device state, no set-up time, at most 1000 pre-copy rounds",
        "a pre-copy that would outlast the VM's time limit (timeout_s) counts as not converging, as migbench would cancel it",
        "each VM's first round sends its used memory (RAM less the memory its kernel never touched), or all of RAM when that was not recorded; the frontier assumes all of RAM",
        "every VM migrates by pre-copy whatever strategy its runs used; one that would not converge moves by post-copy, which sends each page once",
        SIMPLIFICATION,
        "migrations compete only for the link, not for the host's CPUs or memory bandwidth",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Plans for `vms`. `records` are SOURCE's measured runs (`None` for a profile,
/// whose guests were only measured).
pub fn plan(source: &str, vms: &[PlanVm], records: Option<&[RunRecord]>, opts: &Options) -> Plan {
    let usable: Vec<(&PlanVm, f64)> = vms.iter().filter_map(|v| v.dirty_bytes_per_s.as_ref().ok().map(|d| (v, *d))).collect();
    let left_out: Vec<LeftOut> =
        vms.iter().filter_map(|v| v.dirty_bytes_per_s.as_ref().err().map(|e| LeftOut { vm: v.label.clone(), why: e.clone() })).collect();
    let mut sizes: Vec<GuestSpec> = vms.iter().map(|v| v.guest).collect();
    sizes.sort_by_key(|g| g.ram_mib);
    sizes.dedup_by_key(|g| g.ram_mib);
    let time_limit_s = vms.iter().map(|v| v.scenario.timeout_s).fold(f64::INFINITY, f64::min);
    let time_limit_s = if time_limit_s.is_finite() { time_limit_s } else { Scenario::default().timeout_s };
    let mut frontier = frontier(&usable, &sizes, time_limit_s, opts);
    frontier.left_out = left_out.clone();
    let mut evacuation = evacuation(&usable, vms, opts);
    evacuation.left_out = left_out;
    let fits = match records {
        Some(r) => fits(r),
        None => Fits { groups: Vec::new(), note: Some(format!("No measurements: {source} is a profile, whose guests were booted to measure their dirty rates; nothing was migrated")) },
    };
    Plan { source: source.to_string(), vms: vms.len(), assumptions: assumptions(), frontier, evacuation, fits }
}

fn table(rows: Vec<Vec<String>>) -> String {
    let mut b = tabled::builder::Builder::default();
    for r in rows {
        b.push_record(r);
    }
    b.build().with(Style::markdown()).to_string()
}

fn left_out_lines(out: &mut String, left: &[LeftOut]) {
    for l in left {
        out.push_str(&format!("\nLeft out: {} ({})\n", l.vm, l.why));
    }
}

/// The plan as Markdown: what `migbench plan` prints.
pub fn markdown(p: &Plan) -> String {
    let mut out = format!("# Capacity plan for {} ({} VMs)\n\nAssumptions:\n", p.source, p.vms);
    for a in &p.assumptions {
        out.push_str(&format!("- {a}\n"));
    }

    let f = &p.frontier;
    out.push_str("\n## 1. Convergence frontier\n\n");
    out.push_str(&format!(
        "Highest dirty rate (MiB/s) at which pre-copy converges, for a VM of each RAM size whose first round sends all of it \
         (`max_convergent_dirty_rate`), and in brackets the highest that also finishes within {:.0} s:\n\n",
        f.time_limit_s
    ));
    let mut sizes: Vec<u32> = f.points.iter().map(|x| x.ram_mib).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut rows = vec![["link".to_string(), "downtime limit".to_string()].into_iter().chain(sizes.iter().map(|r| format!("{r} MiB"))).collect::<Vec<_>>()];
    for chunk in f.points.chunks(sizes.len().max(1)) {
        let Some(first) = chunk.first() else { continue };
        let mut row = vec![first.link.clone(), ms_text(first.downtime_limit_ms)];
        row.extend(chunk.iter().map(|x| format!("{} ({})", x.max_dirty.show(), x.max_dirty_within_time_limit.show())));
        rows.push(row);
    }
    out.push_str(&table(rows));
    out.push_str("\n\nPer VM: its measured dirty rate, at each link whether pre-copy converges within its time limit (and the predicted total time), \
                  and the slowest link on which it still does:\n\n");
    let links: Vec<String> = f.vms.first().map(|v| v.links.iter().map(|l| l.link.clone()).collect()).unwrap_or_default();
    let mut rows = vec![["vm", "dirty MiB/s", "first round MiB", "downtime limit"].into_iter().map(String::from).chain(links.iter().cloned()).chain(["slowest link".to_string()]).collect::<Vec<_>>()];
    for v in &f.vms {
        let mut row = vec![
            v.vm.clone(),
            format!("{:.1}", v.dirty_mib_s),
            v.first_round_mib.map_or_else(|| format!("{} (all)", v.ram_mib), |m| format!("{m:.1}")),
            ms_text(v.downtime_limit_ms),
        ];
        row.extend(v.links.iter().map(|l| l.verdict.clone()));
        row.push(v.slowest_link.clone());
        rows.push(row);
    }
    out.push_str(&table(rows));
    out.push('\n');
    left_out_lines(&mut out, &f.left_out);

    let e = &p.evacuation;
    out.push_str("\n## 2. Evacuation: every VM off one host\n\n");
    out.push_str(&format!(
        "Each VM at its own downtime limit, pre-copy unless it would not converge (then post-copy). The model's simplification: {}.\n\n",
        e.simplification
    ));
    let mut rows = vec![["link", "at once", "each migration", "makespan s", "post-copy instead"].into_iter().map(String::from).collect::<Vec<_>>()];
    let mut fallbacks = vec![["link", "at once", "vm", "post-copy s", "why not pre-copy"].into_iter().map(String::from).collect::<Vec<_>>()];
    for l in &e.links {
        for s in std::iter::once(&l.one_by_one).chain(l.parallel.iter().filter(|s| s.k != 1)) {
            let post: Vec<&VmTime> = s.vms.iter().filter(|v| v.precopy_fails.is_some()).collect();
            rows.push(vec![
                l.link.clone(),
                if s.k == 1 { "1 (one by one)".into() } else { s.k.to_string() },
                format!("{:.1} MiB/s", s.share_bytes_per_s / MIB),
                format!("{:.2}", s.makespan_s),
                if post.is_empty() { "-".into() } else { format!("{} of {} VMs (listed below)", post.len(), s.vms.len()) },
            ]);
            for v in post {
                fallbacks.push(vec![l.link.clone(), s.k.to_string(), v.vm.clone(), format!("{:.2}", v.total_s), v.precopy_fails.clone().unwrap_or_default()]);
            }
        }
    }
    out.push_str(&table(rows));
    out.push('\n');
    match &e.measured {
        Some(m) => {
            let model = m.model_s;
            out.push_str(&format!(
                "\nMeasured one by one: {:.2} s, the sum of the mean total times of {} of {} VMs, at the link{} they ran at ({}){}.\n",
                m.total_s,
                m.vms,
                m.of,
                if m.links.len() == 1 { "" } else { "s" },
                m.links.join(", "),
                match model {
                    Some(t) if m.total_s > 0.0 => format!("; the model says {t:.2} s for the same VMs at that link ({:+.0} %)", 100.0 * (t - m.total_s) / m.total_s),
                    _ => "; the model has no figure for exactly these VMs at one link".into(),
                }
            ));
        }
        None => out.push_str("\nNo measured total times to compare with.\n"),
    }
    if fallbacks.len() > 1 {
        out.push_str("\nVMs moved by post-copy because pre-copy would not converge at their share of the link:\n\n");
        out.push_str(&table(fallbacks));
        out.push('\n');
    }
    left_out_lines(&mut out, &e.left_out);

    out.push_str("\n## 3. Total time against RAM\n\n");
    match &p.fits.note {
        Some(note) => out.push_str(&format!("{note}.\n")),
        None => {
            out.push_str(
                "Least-squares line total_time_ms = a + b · RAM_MiB over the healthy completed runs of each group; error = |fit − measured| / measured, over the runs:\n\n",
            );
            let mut rows = vec![["group", "runs", "RAM MiB", "a ms", "b ms/MiB", "R²", "median error", "worst error"].into_iter().map(String::from).collect::<Vec<_>>()];
            let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1} %"));
            for g in &p.fits.groups {
                let ram = g.ram_mib.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
                let mut row = vec![g.group.clone(), g.runs.to_string(), if ram.is_empty() { "-".into() } else { ram }];
                match (&g.fit, &g.why_not) {
                    (Some(fit), _) => row.extend([
                        format!("{:.1}", fit.a_ms),
                        format!("{:.4}", fit.b_ms_per_mib),
                        fit.r2.map_or_else(|| "-".into(), |r| format!("{r:.3}")),
                        pct(fit.median_error_percent),
                        pct(fit.worst_error_percent),
                    ]),
                    (None, why) => {
                        row.push(why.clone().unwrap_or_else(|| "no fit".into()));
                        row.extend(std::iter::repeat_n("-".to_string(), 4));
                    }
                }
                rows.push(row);
            }
            out.push_str(&table(rows));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Accel;

    const MB: f64 = MIB;

    fn vm(label: &str, ram_mib: u32, dirty_mib_s: f64, first_mib: Option<u64>) -> PlanVm {
        PlanVm {
            label: label.into(),
            guest: GuestSpec::new(ram_mib, 1, Accel::Tcg).unwrap(),
            scenario: Scenario { timeout_s: 120.0, ..Scenario::default() },
            first_round_bytes: first_mib.map(|m| m << 20),
            dirty_bytes_per_s: Ok(dirty_mib_s * MB),
            measured_total_ms: None,
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn an_exact_line_fits_perfectly() {
        // total = 100 + 2 · RAM: 612 at 256 MiB, 1124 at 512, 2148 at 1024.
        let f = fit_line(&[(256.0, 612.0), (512.0, 1124.0), (1024.0, 2148.0), (512.0, 1124.0)]).unwrap();
        assert!(close(f.a_ms, 100.0, 1e-9) && close(f.b_ms_per_mib, 2.0, 1e-12), "{f:?}");
        assert!(close(f.r2.unwrap(), 1.0, 1e-12), "{f:?}");
        assert!(f.median_error_percent.unwrap() < 1e-9 && f.worst_error_percent.unwrap() < 1e-9, "{f:?}");
    }

    #[test]
    fn a_noisy_fit_by_hand() {
        // x = 1, 1, 3, 3; y = 10, 12, 20, 22: means 2 and 16; Sxx = 4, Sxy = 20,
        // b = 5, a = 16 − 10 = 6. Fitted 11, 11, 21, 21: residuals −1, 1, −1, 1,
        // SSres = 4; SStot = 36 + 16 + 16 + 36 = 104; R² = 1 − 4/104 = 0.961538.
        // Errors: 1/10 = 10 %, 1/12 = 8.33 %, 1/20 = 5 %, 1/22 = 4.55 %:
        // median (5 + 8.33) / 2 = 6.67 %, worst 10 %.
        let f = fit_line(&[(1.0, 10.0), (1.0, 12.0), (3.0, 20.0), (3.0, 22.0)]).unwrap();
        assert!(close(f.a_ms, 6.0, 1e-9) && close(f.b_ms_per_mib, 5.0, 1e-9), "{f:?}");
        assert!(close(f.r2.unwrap(), 1.0 - 4.0 / 104.0, 1e-12), "{f:?}");
        assert!(close(f.median_error_percent.unwrap(), (5.0 + 100.0 / 12.0) / 2.0, 1e-9), "{f:?}");
        assert!(close(f.worst_error_percent.unwrap(), 10.0, 1e-9), "{f:?}");
        // A flat line explains nothing: R² is undefined, the errors are 0.
        let f = fit_line(&[(256.0, 700.0), (512.0, 700.0)]).unwrap();
        assert_eq!((f.b_ms_per_mib, f.r2), (0.0, None));
    }

    #[test]
    fn fits_count_only_healthy_completed_runs() {
        use crate::summary::cell_runs::testing::run;
        let at = |ram: u32, link: &str, mut r: RunRecord| {
            r.run.cell.ram_mib = ram;
            r.run.cell.link = link.parse().unwrap();
            r
        };
        // total = 100 + 2 · RAM on the healthy runs; a broken guest's 10⁶ ms at 512 MiB
        // would bend the line if it counted.
        let records = [
            at(256, "1Gbit", run("a", 0, 612.0, true, true)),
            at(512, "1Gbit", run("b", 0, 1124.0, true, true)),
            at(512, "1Gbit", run("b", 1, 1_000_000.0, false, true)),
            at(256, "100Mbit", run("c", 0, 700.0, false, true)),
            at(512, "100Mbit", run("d", 0, 900.0, false, true)),
        ];
        let f = fits(&records);
        let fast = f.groups.iter().find(|g| g.group.contains("link=1Gbit")).unwrap();
        let fit = fast.fit.as_ref().unwrap();
        assert!(close(fit.a_ms, 100.0, 1e-9) && close(fit.b_ms_per_mib, 2.0, 1e-12) && fast.runs == 2, "{fast:?}");
        let slow = f.groups.iter().find(|g| g.group.contains("link=100Mbit")).unwrap();
        assert!(slow.fit.is_none() && slow.why_not.as_deref().unwrap().starts_with("0 of 2 healthy: 2 runs: guest not healthy"), "{slow:?}");
    }

    #[test]
    fn a_fit_needs_two_ram_sizes() {
        assert_eq!(fit_line(&[(256.0, 700.0), (256.0, 710.0)]), None);
        assert_eq!(fit_line(&[(256.0, 700.0)]), None);
        assert_eq!(fit_line(&[]), None);
        assert_eq!(fit_line(&[(256.0, f64::NAN), (512.0, 1.0)]), None);
    }

    #[test]
    fn longest_first_on_two_slots() {
        // 5 → A; 4 → B; 3 → B (4 < 5): 7; 3 → A (5 < 7): 8. Makespan 8.
        let (slots, makespan) = longest_first(&[3.0, 5.0, 3.0, 4.0], 2);
        assert_eq!(makespan, 8.0);
        assert_eq!(slots, vec![vec![1, 2], vec![3, 0]]);
        // One slot: the sum; more slots than jobs: the longest job.
        assert_eq!(longest_first(&[3.0, 5.0, 3.0, 4.0], 1).1, 15.0);
        let (slots, makespan) = longest_first(&[3.0, 5.0], 4);
        assert_eq!((makespan, slots.len()), (5.0, 4));
        assert!(slots[2].is_empty() && slots[3].is_empty());
        assert_eq!(longest_first(&[], 3).1, 0.0);
        assert_eq!(longest_first(&[2.0, 1.0], 0).1, 3.0);
    }

    #[test]
    fn evacuation_falls_back_to_postcopy_for_a_vm_that_cannot_converge_at_its_share() {
        // 100 MiB/s, 2 at once: 50 MiB/s each.
        // "idle": 100 MiB in use, dirty 0: 100/50 = 2 s, then 1 MiB of state: 0.02 s: 2.02 s.
        // "hot": 512 MiB, dirty 60 MiB/s > 50 MiB/s: pre-copy never converges;
        // post-copy sends its 200 MiB once after the 1 MiB state: 0.02 + 4 = 4.02 s.
        // Alone at 100 MiB/s it converges: 200/100 = 2 s; 60 × 2 = 120 MiB, 1.2 s;
        // 72 MiB, 0.72; 43.2, 0.432; 25.92 MiB, 0.2592 s ≤ 0.3: stop-and-copy
        // (25.92 + 1) / 100 = 0.2692 s; total 2 + 1.2 + 0.72 + 0.432 + 0.2692 = 4.6212 s.
        let vms = [vm("idle", 256, 0.0, Some(100)), vm("hot", 512, 60.0, Some(200))];
        let with: Vec<(&PlanVm, f64)> = vms.iter().map(|v| (v, *v.dirty_bytes_per_s.as_ref().unwrap())).collect();
        let two = schedule(&with, 100.0 * MB, 2);
        assert!(close(two.share_bytes_per_s, 50.0 * MB, 1e-6));
        assert_eq!(two.vms[0].strategy, "precopy");
        assert!(close(two.vms[0].total_s, 2.02, 1e-9), "{:?}", two.vms[0]);
        assert_eq!(two.vms[1].strategy, "postcopy");
        assert!(close(two.vms[1].total_s, 4.02, 1e-9), "{:?}", two.vms[1]);
        assert!(two.vms[1].precopy_fails.as_ref().unwrap().contains("ratio 1.20"), "{:?}", two.vms[1]);
        assert!(close(two.makespan_s, 4.02, 1e-9));
        assert_eq!(two.slots, vec![vec!["hot".to_string()], vec!["idle".to_string()]]);
        let one = schedule(&with, 100.0 * MB, 1);
        assert_eq!(one.vms[1].strategy, "precopy");
        // idle at 100 MiB/s: 1 + 0.01 = 1.01 s; plus hot's 4.6212 s.
        assert!(close(one.vms[1].total_s, 4.6212, 1e-9), "{:?}", one.vms[1]);
        assert!(close(one.makespan_s, 1.01 + 4.6212, 1e-9), "{}", one.makespan_s);
        // A pre-copy past the time limit falls back too.
        let slow = PlanVm { scenario: Scenario { timeout_s: 3.0, ..vms[1].scenario.clone() }, ..vms[1].clone() };
        let s = schedule(&[(&slow, 60.0 * MB)], 100.0 * MB, 1);
        assert_eq!(s.vms[0].strategy, "postcopy");
        assert!(s.vms[0].precopy_fails.as_ref().unwrap().contains("time limit"), "{:?}", s.vms[0]);
    }

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

    #[test]
    fn bad_flag_values_name_the_flag_the_value_and_the_fix() {
        let e = parse_links("1Gbit,fast").unwrap_err();
        assert!(e.starts_with("--links 1Gbit,fast:") && e.contains("\"fast\"") && e.contains("100Mbit"), "{e}");
        let e = parse_links("1Gbit,,10Gbit").unwrap_err();
        assert!(e.contains("--links") && e.contains("empty item") && e.contains(DEFAULT_LINKS), "{e}");
        assert!(parse_links("0Mbit").unwrap_err().contains("out of range"));
        let e = parse_downtime_limits("300").unwrap_err();
        assert!(e.starts_with("--downtime-limits 300:") && e.contains("no unit") && e.contains("300ms"), "{e}");
        for bad in ["fast", "-5ms", "3000s", "NaNms", "ms", "1h"] {
            let e = parse_downtime_limits(bad).unwrap_err();
            assert!(e.contains("--downtime-limits") && e.contains(&format!("{bad:?}")) && e.contains("50ms"), "{bad}: {e}");
        }
        for bad in ["0", "-1", "two", "65", "1.5", ""] {
            let e = parse_parallel(bad).unwrap_err();
            assert!(e.starts_with(&format!("--parallel {bad}")) && e.contains("1,2,4"), "{bad}: {e}");
        }
        assert!(Options::parse("1Gbit", "1s", "0").unwrap_err().starts_with("--parallel"));
    }

    #[test]
    fn flag_values_are_sorted_and_deduplicated() {
        let o = Options::parse("10Gbit, 100Mbit,1Gbit,1000Mbit", "1s,50ms,0.3s,300ms", "4,1,2,2").unwrap();
        assert_eq!(o.links.iter().map(|l| l.to_string()).collect::<Vec<_>>(), ["100Mbit", "1Gbit", "10Gbit"]);
        assert_eq!(o.downtime_limits_ms, [50.0, 300.0, 1000.0]);
        assert_eq!(o.parallel, [1, 2, 4]);
        assert_eq!(Options::default(), o);
    }

    #[test]
    fn a_plan_of_two_vms_has_three_sections_and_says_what_it_left_out() {
        let mut vms = vec![vm("idle", 256, 0.0, Some(100)), vm("hot", 512, 60.0, Some(200))];
        vms.push(PlanVm { dirty_bytes_per_s: Err("no rate".into()), ..vm("unknown", 256, 0.0, None) });
        let p = plan("test", &vms, None, &Options::default());
        assert_eq!(p.vms, 3);
        // 3 links × 3 limits × 2 RAM sizes; 2 VMs × 3 limits.
        assert_eq!(p.frontier.points.len(), 18);
        assert_eq!(p.frontier.vms.len(), 6);
        assert_eq!(p.frontier.left_out.len(), 1);
        let e = &p.evacuation.links[0];
        assert_eq!(e.one_by_one.vms.len(), 2);
        assert!(close(e.one_by_one.makespan_s, e.one_by_one.vms.iter().map(|v| v.total_s).sum(), 1e-9));
        assert!(p.fits.note.as_ref().unwrap().starts_with("No measurements: test is a profile"));
        let text = markdown(&p);
        for s in ["## 1. Convergence frontier", "## 2. Evacuation", "## 3. Total time against RAM", "Left out: unknown (no rate)", "No measurements", "post-copy"] {
            assert!(text.contains(s), "{s} missing from\n{text}");
        }
        // Every time in the JSON is a number (serde_json would write ∞ or NaN as null).
        let json = serde_json::to_value(&p).unwrap();
        for l in json["evacuation"]["links"].as_array().unwrap() {
            assert!(l["one_by_one"]["vms"].as_array().unwrap().iter().all(|v| v["total_s"].is_f64()), "{l}");
            assert!(l["one_by_one"]["makespan_s"].is_f64(), "{l}");
        }
    }
}
