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

pub mod evacuation;
pub mod fits;
pub mod frontier;

use crate::record::RunRecord;
use crate::machine::GuestSpec;
use crate::machine::link_probe::LinkProbe;
use crate::migration::scenario::{LinkSpeed, Scenario};
use crate::rank::predict::{self, LinkProfile, Prediction, VmProfile};
use crate::rank::vms::{self, PredictedVm, VmRow};
use serde::Serialize;

pub use evacuation::*;
pub use fits::*;
pub use frontier::*;

pub const MIB: f64 = 1_048_576.0;

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
    /// The link to a real host, measured (`plan --dest`): its rate is one of `links`.
    pub measured: Option<LinkProbe>,
}

impl Options {
    /// The three flags' values, each checked; an error names the flag, the value
    /// and what to write instead.
    pub fn parse(links: &str, downtime_limits: &str, parallel: &str) -> Result<Options, String> {
        Ok(Options { links: parse_links(links)?, downtime_limits_ms: parse_downtime_limits(downtime_limits)?, parallel: parse_parallel(parallel)?, measured: None })
    }

    /// Plans for the measured link to a host too, beside the links asked for.
    pub fn with_measured(mut self, probe: LinkProbe) -> Options {
        // First among equal rates (the sort is stable): a --links entry of the same
        // rate gives way to it, so the measured link keeps its row.
        self.links.insert(0, probe.speed());
        self.links.sort_by_key(|l| l.max_bandwidth());
        self.links.dedup_by_key(|l| l.max_bandwidth());
        self.measured = Some(probe);
        self
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

/// The three sections.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub source: String,
    pub vms: usize,
    /// The link to a real host as measured, when the plan is for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_link: Option<LinkProbe>,
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
    let mut frontier = frontier::frontier(&usable, &sizes, time_limit_s, opts);
    frontier.left_out = left_out.clone();
    let mut evacuation = evacuation::evacuation(&usable, vms, opts);
    evacuation.left_out = left_out;
    let fits = match records {
        Some(r) => fits(r),
        None => Fits { groups: Vec::new(), note: Some(format!("No measurements: {source} is a profile, whose guests were booted to measure their dirty rates; nothing was migrated")) },
    };
    Plan { source: source.to_string(), vms: vms.len(), measured_link: opts.measured.clone(), assumptions: assumptions(), frontier, evacuation, fits }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::machine::Accel;

    pub const MB: f64 = MIB;

    pub fn vm(label: &str, ram_mib: u32, dirty_mib_s: f64, first_mib: Option<u64>) -> PlanVm {
        PlanVm {
            label: label.into(),
            guest: GuestSpec::new(ram_mib, 1, Accel::Tcg).unwrap(),
            scenario: Scenario { timeout_s: 120.0, ..Scenario::default() },
            first_round_bytes: first_mib.map(|m| m << 20),
            dirty_bytes_per_s: Ok(dirty_mib_s * MB),
            measured_total_ms: None,
        }
    }

    pub fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::plan::testing::*;

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
        let text = crate::report::plan::markdown(&p);
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
