//! `migbench rank`: which VM to migrate, from measured migrations (a results file)
//! and from the cost model (`crate::rank::predict`) fed with each VM's dirty rate as QEMU
//! measured it before migrating. Each cell of a profile is one candidate VM.

use super::{Metric, Ranked, by_metric_then_tiebreak};
use crate::summary::cell_runs::CellRuns;
use crate::stats::Stats;
use crate::record::RunRecord;
use crate::machine::hardware::GuestSpec;
use crate::migration::scenario::Scenario;
use crate::rank::predict::{self, LinkProfile, Prediction, VmProfile};
use serde::Serialize;
use std::fmt;

pub use crate::experiment::profile::{show_value as show, varied_keys as varied};

/// What "cheapest to migrate" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The papers' rule: least total migration time, ties (overlapping 95 % CIs) broken by less downtime.
    #[default]
    Time,
    /// Fewest bytes sent, ties broken by total time.
    Bytes,
    /// Shortest time without an answer at the guest's HTTP clients, ties broken by total time.
    ServiceDowntime,
    /// Least slowdown of the guest's own work during the migration, ties broken by total time.
    Slowdown,
}

impl Objective {
    pub const ALL: [Objective; 4] = [Objective::Time, Objective::Bytes, Objective::ServiceDowntime, Objective::Slowdown];
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Objective::Time => "time",
            Objective::Bytes => "bytes",
            Objective::ServiceDowntime => "service-downtime",
            Objective::Slowdown => "slowdown",
        })
    }
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Objective, String> {
        Objective::ALL
            .into_iter()
            .find(|o| o.to_string() == s)
            .ok_or_else(|| format!("objective {s:?} is not one of time, bytes, service-downtime, slowdown"))
    }
}

/// One candidate VM: a cell's runs summarised, and the model's prediction for it.
#[derive(Debug, Clone, Serialize)]
pub struct VmRow {
    pub label: String,
    pub runs: usize,
    pub completed: usize,
    /// The runs that count (completed, guest healthy): the figures are theirs.
    pub counted: usize,
    /// "k of n healthy", with why the others do not count.
    pub tally: String,
    pub total_time_ms: Option<Stats>,
    pub downtime_ms: Option<Stats>,
    pub transferred_mib: Option<Stats>,
    pub service_downtime_ms: Option<Stats>,
    pub slowdown_percent: Option<Stats>,
    /// Mean of the dirty rates QEMU measured before each migration, MiB/s, over the
    /// runs whose guest stayed healthy (whatever the outcome: see `CellRuns::healthy_guest`).
    pub dirty_rate_mib_s: Option<f64>,
    /// Why there is no dirty rate, when there is none.
    pub no_dirty_rate: Option<String>,
    pub predicted: Option<Prediction>,
    pub outcomes: Vec<String>,
    /// The model's inputs besides the dirty rate: the cell's guest and scenario (of
    /// its first run), and the mean first-round bytes of its runs (see [`predict_for`]).
    pub guest: GuestSpec,
    pub scenario: Scenario,
    pub first_round_bytes: Option<u64>,
}

/// The model's inputs for a guest and scenario, as `rank` and `plan` feed them. The
/// first round copies `first_round_bytes` (the guest's RAM less the memory its kernel
/// never handed out, which is still zero and costs QEMU almost nothing), or all of RAM
/// when the guest's memory is not known; the device state is taken as 1 MiB, set-up
/// as 0 s, and pre-copy gives up after 1000 rounds.
pub fn model_inputs(guest: &GuestSpec, scenario: &Scenario, dirty_bytes_per_s: f64, first_round_bytes: Option<u64>) -> (VmProfile, LinkProfile) {
    let vm = VmProfile { ram_bytes: guest.ram_mib as u64 * 1024 * 1024, first_round_bytes, dirty_rate_bytes_per_s: dirty_bytes_per_s, wws_bytes: None };
    let link = LinkProfile {
        bytes_per_s: scenario.link.max_bandwidth() as f64,
        downtime_limit_s: scenario.downtime_limit_ms as f64 / 1000.0,
        setup_s: 0.0,
        device_state_bytes: 1 << 20,
        max_rounds: 1000,
    };
    (vm, link)
}

/// A migration longer than the scenario's time limit (`timeout_s`) is cancelled: it
/// does not converge in practice, and `p` is marked so with the reason.
pub fn within_time_limit(mut p: Prediction, timeout_s: f64) -> Prediction {
    if let Some(t) = p.total_s.filter(|t| *t > timeout_s) {
        p.converges = false;
        p.reason = format!("{} — but that takes {t:.1} s, past the {timeout_s:.0} s time limit, so it would be cancelled", p.reason);
        p.total_s = None;
        p.downtime_s = None;
    }
    p
}

/// The model's prediction for a guest and scenario (see [`model_inputs`]), with the
/// scenario's time limit applied.
pub fn predict_for(guest: &GuestSpec, scenario: &Scenario, dirty_bytes_per_s: f64, first_round_bytes: Option<u64>) -> Prediction {
    let (vm, link) = model_inputs(guest, scenario, dirty_bytes_per_s, first_round_bytes);
    let p = predict::with_model(scenario.strategy.cost_model(), &vm, &link);
    within_time_limit(p, scenario.timeout_s)
}

/// The candidates in `records`, one per (profile, cell), in the order first seen,
/// labelled by the cell variables that differ between them.
pub fn rows(records: &[RunRecord]) -> Vec<VmRow> {
    let by_cell = CellRuns::by_cell(records);
    let cells: Vec<serde_json::Value> = by_cell.iter().map(|c| serde_json::to_value(&c.all()[0].run.cell).unwrap_or_default()).collect();
    // The variables whose values differ across the candidates name them.
    let varied = varied(&cells);
    let profiles = by_cell.iter().map(|c| &c.all()[0].run.profile).collect::<std::collections::BTreeSet<_>>().len();
    by_cell
        .into_iter()
        .zip(&cells)
        .map(|(runs, cell)| {
            let first = &runs.all()[0].run;
            let mut label: Vec<String> = varied.iter().map(|v| format!("{v}={}", show(&cell[v.as_str()]))).collect();
            if profiles > 1 {
                label.insert(0, first.profile.clone());
            }
            if label.is_empty() {
                label.push(first.cell_key.clone());
            }
            row(label.join(" "), &runs)
        })
        .collect()
}

fn row(label: String, cell: &CellRuns) -> VmRow {
    let dirty = cell.healthy_guest_stats(|m| m.dirty_rate_before.as_ref().map(|d| d.bytes_per_s())).map(|s| s.mean);
    let no_dirty_rate = dirty.is_none().then(|| match cell.healthy_guest().count() {
        0 => format!("no run left a healthy guest, so no dirty rate counts ({})", cell.tally_with_reasons()),
        _ => "its runs with a healthy guest recorded no dirty rate (dirty_rate_before)".to_string(),
    });
    let firsts: Vec<u64> = cell
        .healthy_guest()
        .filter_map(|r| r.migration.measurement.guest_memory_before.map(|g| g.first_round_bytes(r.migration.guest.ram_mib)))
        .collect();
    let first = (!firsts.is_empty()).then(|| firsts.iter().sum::<u64>() / firsts.len() as u64);
    let (guest, scenario) = (cell.all()[0].migration.guest, cell.all()[0].migration.scenario.clone());
    let predicted = dirty.map(|d| predict_for(&guest, &scenario, d, first));
    VmRow {
        label,
        runs: cell.n(),
        completed: cell.completed(),
        counted: cell.k(),
        tally: cell.tally_with_reasons(),
        total_time_ms: cell.stats(|m| m.total_time_ms),
        downtime_ms: cell.stats(|m| m.downtime_ms),
        transferred_mib: cell.stats(|m| m.transferred_mib()),
        service_downtime_ms: cell.stats(|m| m.service_downtime_ms),
        slowdown_percent: cell.stats(|m| m.slowdown_percent()),
        dirty_rate_mib_s: dirty.map(|d| d / 1048576.0),
        no_dirty_rate,
        predicted,
        outcomes: cell.outcomes(),
        guest,
        scenario,
        first_round_bytes: first,
    }
}

/// One candidate ranked without migrating it.
#[derive(Debug, Clone, Serialize)]
pub struct PredictedVm {
    pub label: String,
    pub dirty_rate: Option<crate::machine::dirty_rate::DirtyRate>,
    /// Why the dirty rate could not be measured.
    pub error: Option<String>,
    pub prediction: Option<Prediction>,
    /// The model's inputs besides the dirty rate (see [`predict_for`]).
    pub guest: GuestSpec,
    pub scenario: Scenario,
    pub first_round_bytes: Option<u64>,
}

/// Boots each cell's guest (one boot per RAM/vCPUs/workload, as a sweep does), lets it
/// run `warmup_s`, measures its dirty rate for the profile's `dirty_rate_s` and
/// predicts each cell's migration. Nothing is migrated. Sorted: converging ones by
/// predicted total time, then those that would not converge.
pub async fn predict_cells(
    platform: &crate::setup::Platform,
    env: &crate::setup::Environment,
    profile: &crate::experiment::profile::Profile,
    boot_timeout: std::time::Duration,
    quiet: bool,
) -> anyhow::Result<Vec<PredictedVm>> {
    use crate::machine::pool::GuestPool;
    use crate::machine::site::Site;
    // A prediction boots each candidate on the command's QEMU: a cell naming another
    // would be measured on the wrong one.
    if let Some(i) = profile.cells.iter().position(|c| c.qemu.is_some() || c.qemu_dest.is_some()) {
        anyhow::bail!(
            "{}: a predicted ranking measures every candidate on one QEMU, but this cell names qemu/qemu_dest. \
             Remove them and give the version with --qemu, or rank measured results (`migbench run`, then `rank DIR`)",
            profile.cell_label(i)
        );
    }
    let test_network = profile.cells.iter().any(|c| c.guest(env.accel).net.is_some());
    let site = Site::local(&platform.qemu, &platform.image, test_network)?;
    let warmup = std::time::Duration::try_from_secs_f64(profile.warmup_s).unwrap_or_default();
    let mut pool = GuestPool::new(&site, true, boot_timeout, warmup);
    let mut out = Vec::new();
    for (i, cell) in profile.cells.iter().enumerate() {
        let label = profile.cell_label(i);
        if !quiet {
            eprintln!("migbench: measuring the dirty rate of {label}");
        }
        let mut guest = pool.take(&site.emulator(), cell.guest(env.accel), cell.boot_key(), || format!("p{i}")).await?;
        let m = &mut guest.machine;
        // A failure here is this candidate's, recorded with it; the others go on.
        let measured = match m.set_cpu_limits(cell.cap_percent, cell.host_cores) {
            Ok(()) => crate::machine::dirty_rate::measure(m, profile.dirty_rate_s, profile.dirty_rate_mode).await,
            Err(e) => Err(e),
        };
        let (dirty_rate, error) = match measured {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        let first = m.channel.memory().map(|s| crate::migration::measurement::GuestMemory::of(&s).first_round_bytes(m.spec.ram_mib));
        let scenario = cell.scenario();
        let prediction = dirty_rate.as_ref().map(|d| predict_for(&m.spec, &scenario, d.bytes_per_s(), first));
        out.push(PredictedVm { label, dirty_rate, error, prediction, guest: m.spec, scenario, first_round_bytes: first });
        pool.put_back(guest);
    }
    pool.clear().await;
    let key = |p: &PredictedVm| match &p.prediction {
        Some(Prediction { converges: true, total_s: Some(t), .. }) => (0, *t),
        Some(_) => (1, 0.0),
        None => (2, 0.0),
    };
    out.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
    });
    Ok(out)
}

/// A ranking: the candidates that have the objective's figure, in order, and the
/// others with why they could not be placed.
#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    pub objective: Objective,
    /// (row index, place and reason).
    pub ranked: Vec<(usize, Ranked)>,
    pub unranked: Vec<(usize, String)>,
}

/// Ranks measured candidates by `objective`.
pub fn rank(rows: &[VmRow], objective: Objective) -> Ranking {
    let ms = |name| Metric { name, unit: "ms", decimals: 1 };
    let (primary, secondary) = match objective {
        Objective::Time => (Metric { name: "total time", unit: "ms", decimals: 0 }, ms("downtime")),
        Objective::Bytes => (Metric { name: "data sent", unit: "MiB", decimals: 1 }, Metric { name: "total time", unit: "ms", decimals: 0 }),
        Objective::ServiceDowntime => (ms("service downtime"), Metric { name: "total time", unit: "ms", decimals: 0 }),
        Objective::Slowdown => (Metric { name: "slowdown", unit: "%", decimals: 1 }, Metric { name: "total time", unit: "ms", decimals: 0 }),
    };
    let figures = |r: &VmRow| -> (Option<Stats>, Option<Stats>) {
        match objective {
            Objective::Time => (r.total_time_ms, r.downtime_ms),
            Objective::Bytes => (r.transferred_mib, r.total_time_ms),
            Objective::ServiceDowntime => (r.service_downtime_ms, r.total_time_ms),
            Objective::Slowdown => (r.slowdown_percent, r.total_time_ms),
        }
    };
    let mut pairs = Vec::new();
    let mut unranked = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match figures(r) {
            (Some(a), Some(b)) => pairs.push((r.label.clone(), a, b)),
            _ if r.counted == 0 => unranked.push((i, format!("{}: last, whatever the objective", r.tally))),
            _ => unranked.push((i, format!("no {} measured", primary.name))),
        }
    }
    // Labels name the candidates (they differ by construction: see `rows`).
    let ranked = by_metric_then_tiebreak(&pairs, primary, secondary)
        .into_iter()
        .filter_map(|k| Some((rows.iter().position(|r| r.label == k.name)?, k)))
        .collect();
    Ranking { objective, ranked, unranked }
}

/// The model against the measurements: total-time errors and rank agreement.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Candidates with both a prediction that converges and a measured total time.
    pub compared: usize,
    /// None when no VM has both a converging prediction and a measured time.
    pub median_error_percent: Option<f64>,
    pub worst_error_percent: Option<f64>,
    pub worst: String,
    /// Kendall's tau-b between the predicted and the measured total times (1 = same order).
    pub kendall_tau: Option<f64>,
    /// Where the model and the measurements disagree on convergence: (VM, the model
    /// says it converges, a run completed).
    pub convergence_disagreements: Vec<(String, bool, bool)>,
    /// Candidates whose convergence the model and the runs agree on.
    pub convergence_agreements: usize,
}

/// The model's error against a measurement, % of the measurement (+ = predicted too high).
pub fn error_percent(predicted: f64, measured: f64) -> f64 {
    100.0 * (predicted - measured) / measured
}

pub fn validate(rows: &[VmRow]) -> Option<Validation> {
    let pairs: Vec<(&VmRow, f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r, r.predicted.as_ref()?.total_s? * 1000.0, r.total_time_ms?.mean)))
        .collect();
    let judged: Vec<(String, bool, bool)> =
        rows.iter().filter_map(|r| Some((r.label.clone(), r.predicted.as_ref()?.converges, r.completed > 0))).collect();
    if judged.is_empty() {
        return None;
    }
    let convergence_agreements = judged.iter().filter(|(_, p, m)| p == m).count();
    let convergence_disagreements: Vec<(String, bool, bool)> = judged.into_iter().filter(|(_, p, m)| p != m).collect();
    let mut errors: Vec<(f64, &str)> = pairs.iter().map(|(r, p, m)| (error_percent(*p, *m), r.label.as_str())).collect();
    errors.sort_by(|a, b| a.0.abs().total_cmp(&b.0.abs()));
    // Not `stats::median`: the figure is one VM's own signed error (the middle one
    // by size, the larger of the two middle ones for an even count), so its sign
    // still says whether the model guessed high or low.
    let median = errors.get(errors.len() / 2).map(|e| e.0);
    let (worst, worst_label) = match errors.last() {
        Some(e) => (Some(e.0), e.1.to_string()),
        None => (None, String::new()),
    };
    let predicted: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let measured: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    Some(Validation {
        compared: pairs.len(),
        median_error_percent: median,
        worst_error_percent: worst,
        worst: worst_label,
        kendall_tau: predict::kendall_tau(&predicted, &measured),
        convergence_disagreements,
        convergence_agreements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: &[f64]) -> Option<Stats> {
        Stats::of(v)
    }

    fn vm(label: &str, time: &[f64], down: &[f64], mib: &[f64], predicted_s: Option<f64>) -> VmRow {
        VmRow {
            label: label.into(),
            runs: time.len().max(1),
            completed: time.len(),
            counted: time.len(),
            tally: format!("{} of {} healthy", time.len(), time.len().max(1)),
            total_time_ms: stats(time),
            downtime_ms: stats(down),
            transferred_mib: stats(mib),
            service_downtime_ms: None,
            slowdown_percent: None,
            dirty_rate_mib_s: None,
            no_dirty_rate: Some("none in this test".into()),
            predicted: predicted_s.map(|s| Prediction {
                strategy: "precopy".into(),
                converges: true,
                total_s: Some(s),
                downtime_s: Some(0.01),
                rounds: 2,
                bytes: None,
                reason: String::new(),
                per_round: vec![],
            }),
            outcomes: vec!["completed".into()],
            guest: GuestSpec::new(256, 1, crate::machine::Accel::Tcg).unwrap(),
            scenario: Scenario::default(),
            first_round_bytes: None,
        }
    }

    #[test]
    fn objectives_order_differently_and_failures_go_last() {
        let rows = vec![
            vm("fast-big", &[1000.0, 1010.0, 1005.0], &[5.0, 5.0, 5.0], &[300.0, 301.0, 300.0], Some(1.2)),
            vm("slow-small", &[2000.0, 2010.0, 2005.0], &[5.0, 5.0, 5.0], &[100.0, 101.0, 100.0], Some(2.1)),
            VmRow { completed: 0, tally: "0 of 1 healthy: cancelled: not finished after 60 s".into(), outcomes: vec!["cancelled".into()], ..vm("never", &[], &[], &[], None) },
        ];
        let t = rank(&rows, Objective::Time);
        assert_eq!(t.ranked.iter().map(|(_, k)| k.name.as_str()).collect::<Vec<_>>(), ["fast-big", "slow-small"]);
        assert_eq!(t.unranked.len(), 1);
        assert!(t.unranked[0].1.contains("cancelled"), "{:?}", t.unranked);
        let b = rank(&rows, Objective::Bytes);
        assert_eq!(b.ranked[0].1.name, "slow-small");
        assert!(b.ranked[0].1.reason.contains("data sent"), "{}", b.ranked[0].1.reason);
        let s = rank(&rows, Objective::ServiceDowntime);
        assert!(s.ranked.is_empty() && s.unranked.len() == 3);
        assert!("fastest".parse::<Objective>().unwrap_err().contains("service-downtime"));
    }

    #[test]
    fn unhealthy_runs_never_place_a_vm() {
        use crate::summary::cell_runs::testing::run;
        // "quick" would be last on its mean with its broken run counted (≈ 334 s); "dead" has
        // a tiny figure but no healthy run at all.
        let records = [
            run("quick", 0, 1000.0, true, true),
            run("quick", 1, 1010.0, true, true),
            run("quick", 2, 1_000_000.0, false, true),
            run("steady", 0, 1500.0, true, true),
            run("steady", 1, 1510.0, true, true),
            run("dead", 0, 10.0, false, true),
            run("dead", 1, 11.0, false, true),
        ];
        let rows = rows(&records);
        let t = rank(&rows, Objective::Time);
        let names: Vec<&str> = t.ranked.iter().map(|(i, _)| rows[*i].label.as_str()).collect();
        assert_eq!(names, ["quick", "steady"], "{t:?}");
        let quick = &rows[t.ranked[0].0];
        assert_eq!((quick.total_time_ms.unwrap().mean, quick.counted, quick.runs), (1005.0, 2, 3));
        assert_eq!(t.unranked.len(), 1);
        let (i, why) = &t.unranked[0];
        assert_eq!(rows[*i].label, "dead");
        assert!(why.starts_with("0 of 2 healthy: 2 runs: guest not healthy on the destination"), "{why}");
        assert!(rows[*i].total_time_ms.is_none());
    }

    #[test]
    fn validation_reports_errors_and_rank_agreement() {
        // Predictions 1.2 s and 2.1 s against 1005 ms and 2005 ms: +19.4 % and +4.7 %; same order.
        let rows = vec![
            vm("a", &[1000.0, 1010.0], &[5.0, 5.0], &[1.0, 1.0], Some(1.2)),
            vm("b", &[2000.0, 2010.0], &[5.0, 5.0], &[1.0, 1.0], Some(2.1)),
            vm("c", &[3000.0, 3010.0], &[5.0, 5.0], &[1.0, 1.0], Some(1.0)),
        ];
        let v = validate(&rows).unwrap();
        assert_eq!(v.compared, 3);
        // c: 1000 vs 3005 = −66.7 %, the worst; the median is a's +19.4 %.
        assert!((v.worst_error_percent.unwrap() + 66.72).abs() < 0.01 && v.worst == "c", "{v:?}");
        assert!((v.median_error_percent.unwrap() - 19.40).abs() < 0.01, "{v:?}");
        // Predicted order c, a, b against measured a, b, c: (a, b) agree, (a, c) and (b, c)
        // do not: tau = (1 − 2) / 3.
        assert!((v.kendall_tau.unwrap() + 1.0 / 3.0).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn a_dirtier_than_the_link_is_predicted_not_to_converge() {
        let guest = GuestSpec::new(256, 1, crate::machine::Accel::Tcg).unwrap();
        let scenario = Scenario { link: "100Mbit".parse().unwrap(), ..Scenario::default() };
        // 50 MiB/s against 12.5 MB/s.
        let p = predict_for(&guest, &scenario, 50.0 * 1048576.0, None);
        assert!(!p.converges && p.total_s.is_none(), "{p:?}");
        // An idle guest: one round of 256 MiB at 12.5 MB/s ≈ 21.5 s, plus 1 MiB of state.
        let p = predict_for(&guest, &scenario, 0.0, None);
        assert!(p.converges && (p.total_s.unwrap() - 21.559).abs() < 0.01, "{p:?}");
        // With 64 MiB of it in use: 64 MiB / 12.5 MB/s = 5.369 s, plus the state.
        let p = predict_for(&guest, &scenario, 0.0, Some(64 << 20));
        assert!((p.total_s.unwrap() - 5.453).abs() < 0.01, "{p:?}");
        // Past the time limit: cancelled in practice.
        let short = Scenario { timeout_s: 10.0, ..scenario };
        let p = predict_for(&guest, &short, 0.0, None);
        assert!(!p.converges && p.reason.contains("time limit"), "{p:?}");
    }
}
