//! An evacuation's figures (`migbench evacuate`), what `migbench plan` predicts for
//! the same guests over the same link, and the tables the command prints.
//!
//! A guest whose migration did not complete, or that arrived unhealthy or broken,
//! enters no figure: its evacuation says "k of n healthy", and the evacuation's
//! wall time exists only when every guest counts (a host with a broken guest left
//! behind was not evacuated).

use crate::experiment::evacuate::{EvacuatedGuest, EvacuationRun};
use crate::migration::measurement::Measurement;
use crate::rank::plan::{self, PlanVm, Schedule};
use crate::summary::cell_runs::{counts, tally, why_not_counted};
use serde::Serialize;
use tabled::settings::Style;

/// What one evacuation measured, over the guests that count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Migrations in flight at once, at most.
    pub parallel: usize,
    pub guests: usize,
    /// Guests that completed, arrived healthy and intact, with their strategy at work.
    pub counted: usize,
    /// "k of n healthy".
    pub healthy: String,
    /// Each guest that does not count: "guest1: why".
    pub not_counted: Vec<String>,
    /// First `migrate` to the last guest running at the destination (its RESUME), ms;
    /// none unless every guest counts.
    pub wall_time_ms: Option<f64>,
    /// Over the guests that count: the sum and mean of QEMU's total times, the
    /// longest downtime, the bytes sent.
    pub sum_total_time_ms: Option<f64>,
    pub mean_total_time_ms: Option<f64>,
    pub max_downtime_ms: Option<f64>,
    pub transferred_mib: Option<f64>,
    /// The most migrations the records show in flight at one instant (each from its
    /// `migrate` until the source reported it over and its slot was freed).
    pub max_in_flight: usize,
}

/// The most intervals (from, to) that share one instant. Touching ends do not overlap.
pub fn max_in_flight(intervals: &[(f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = intervals.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
    // At equal times an end comes before a start.
    edges.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The figures of `run`.
pub fn figures(run: &EvacuationRun) -> Figures {
    let counted: Vec<&EvacuatedGuest> = run.guests.iter().filter(|g| counts(&g.record.measurement)).collect();
    let n = run.guests.len();
    let not_counted = run.guests.iter().filter_map(|g| why_not_counted(&g.record.measurement).map(|w| format!("{}: {w}", g.name))).collect();
    let over = |f: fn(&Measurement) -> Option<f64>| counted.iter().filter_map(|g| f(&g.record.measurement)).collect::<Vec<f64>>();
    let totals = over(|m| m.total_time_ms);
    let sum = (!totals.is_empty()).then(|| totals.iter().sum::<f64>());
    let wall_time_ms = (counted.len() == n && n > 0)
        .then(|| {
            let first = counted.iter().filter_map(|g| g.migrate_sent_ms).fold(f64::INFINITY, f64::min);
            let last = counted.iter().map(|g| g.running_at_destination_ms).collect::<Option<Vec<f64>>>()?.into_iter().fold(f64::NEG_INFINITY, f64::max);
            (first.is_finite() && last.is_finite()).then(|| round1(last - first))
        })
        .flatten();
    let intervals: Vec<(f64, f64)> = run.guests.iter().filter_map(EvacuatedGuest::in_flight).collect();
    let sent = over(|m| m.transferred_mib());
    Figures {
        parallel: run.parallel,
        guests: n,
        counted: counted.len(),
        healthy: tally(counted.len(), n),
        not_counted,
        wall_time_ms,
        sum_total_time_ms: sum,
        mean_total_time_ms: sum.map(|s| s / totals.len() as f64),
        max_downtime_ms: over(|m| m.downtime_ms).into_iter().reduce(f64::max),
        transferred_mib: (!sent.is_empty()).then(|| sent.iter().sum()),
        max_in_flight: max_in_flight(&intervals),
    }
}

/// What `migbench plan` predicts for evacuating the same guests over the same link.
#[derive(Debug, Clone, Serialize)]
pub struct Predicted {
    /// The whole link the model shares among the migrations in flight.
    pub link: String,
    /// The model's evacuation time, s; none when a guest has no dirty rate.
    pub makespan_s: Option<f64>,
    /// The model's schedule (`rank::plan::evacuation::schedule`).
    pub schedule: Option<Schedule>,
    /// Guests the model could not take, and why.
    pub left_out: Vec<String>,
    /// How the model shares the link (`rank::plan::SIMPLIFICATION`).
    pub assumption: String,
}

/// Each guest as `plan` takes a VM: its RAM, scenario, measured dirty rate and
/// used memory; or why it cannot be modelled.
pub fn plan_vm(g: &EvacuatedGuest) -> Result<PlanVm, String> {
    let m = &g.record.measurement;
    let dirty = match (&m.dirty_rate_before, &m.dirty_rate_error) {
        (Some(d), _) => d.bytes_per_s(),
        (None, Some(e)) => return Err(format!("{}: no dirty rate ({e})", g.name)),
        (None, None) => return Err(format!("{}: no dirty rate was measured", g.name)),
    };
    Ok(PlanVm {
        label: format!("{} ({})", g.name, g.record.guest.workload),
        guest: g.record.guest,
        scenario: g.record.scenario.clone(),
        first_round_bytes: m.guest_memory_before.map(|mem| mem.first_round_bytes(g.record.guest.ram_mib)),
        dirty_bytes_per_s: Ok(dirty),
        measured_total_ms: None,
    })
}

/// The model's evacuation of `run`'s guests over its whole link with its number at
/// once: `plan`'s own function, not a second model.
pub fn predicted(run: &EvacuationRun) -> Predicted {
    let vms: Vec<Result<PlanVm, String>> = run.guests.iter().map(plan_vm).collect();
    let left_out: Vec<String> = vms.iter().filter_map(|v| v.as_ref().err().cloned()).collect();
    let usable: Vec<PlanVm> = vms.into_iter().filter_map(Result::ok).collect();
    let schedule = left_out.is_empty().then(|| {
        let with: Vec<(&PlanVm, f64)> = usable.iter().map(|v| (v, *v.dirty_bytes_per_s.as_ref().expect("usable"))).collect();
        plan::schedule(&with, run.link.max_bandwidth() as f64, run.parallel)
    });
    Predicted { link: run.link.to_string(), makespan_s: schedule.as_ref().map(|s| s.makespan_s), schedule, left_out, assumption: plan::SIMPLIFICATION.into() }
}

/// One evacuation as its JSON file holds it: the figures, the prediction, the run.
#[derive(Debug, Clone, Serialize)]
pub struct EvacuationReport {
    /// "evacuation".
    pub record: String,
    pub figures: Figures,
    pub predicted: Predicted,
    #[serde(flatten)]
    pub run: EvacuationRun,
}

pub fn report(run: EvacuationRun) -> EvacuationReport {
    EvacuationReport { record: "evacuation".into(), figures: figures(&run), predicted: predicted(&run), run }
}

fn opt(v: Option<f64>, scale: f64, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.*}", decimals, v * scale))
}

fn link_text(l: &crate::migration::scenario::LinkSpeed) -> String {
    match l.bytes_per_sec {
        Some(_) => format!("{:.1} MiB/s", l.mib_per_s()),
        None => "unlimited".into(),
    }
}

/// One row per evacuation: what it took beside what `plan` predicted.
pub fn table(reports: &[EvacuationReport]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "at once",
        "each migration",
        "wall s",
        "sum of totals s",
        "mean total s",
        "max downtime ms",
        "MiB sent",
        "max in flight",
        "healthy",
        "predicted s",
    ]);
    for r in reports {
        let f = &r.figures;
        b.push_record([
            f.parallel.to_string(),
            link_text(&r.run.per_migration_link),
            f.wall_time_ms.map_or_else(|| format!("none ({})", f.healthy), |w| format!("{:.2}", w / 1000.0)),
            opt(f.sum_total_time_ms, 1e-3, 2),
            opt(f.mean_total_time_ms, 1e-3, 2),
            opt(f.max_downtime_ms, 1.0, 1),
            opt(f.transferred_mib, 1.0, 1),
            f.max_in_flight.to_string(),
            f.healthy.clone(),
            r.predicted.makespan_s.map_or_else(|| "-".into(), |s| format!("{s:.2}")),
        ]);
    }
    b.build().with(Style::markdown()).to_string()
}

/// One row per guest per evacuation: its timeline and figures.
pub fn guests_table(reports: &[EvacuationReport]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "at once",
        "guest",
        "workload",
        "dirty MiB/s",
        "destination start s",
        "migrate at s",
        "running there at s",
        "total ms",
        "downtime ms",
        "MiB sent",
        "predicted s",
        "health",
    ]);
    for r in reports {
        for g in &r.run.guests {
            let m = &g.record.measurement;
            let label = format!("{} ({})", g.name, g.record.guest.workload);
            let predicted = r.predicted.schedule.as_ref().and_then(|s| s.vms.iter().find(|v| v.vm == label)).map(|v| format!("{:.2} ({})", v.total_s, v.strategy));
            b.push_record([
                r.run.parallel.to_string(),
                g.name.clone(),
                g.record.guest.workload.to_string(),
                m.dirty_rate_before.as_ref().map_or_else(|| "-".into(), |d| format!("{:.1}", d.mib_per_s)),
                opt(g.slot_taken_ms.zip(g.destination_started_ms).map(|(a, b)| b - a), 1e-3, 2),
                opt(g.migrate_sent_ms, 1e-3, 2),
                opt(g.running_at_destination_ms, 1e-3, 2),
                opt(m.total_time_ms, 1.0, 1),
                opt(m.downtime_ms, 1.0, 1),
                opt(m.transferred_mib(), 1.0, 1),
                predicted.unwrap_or_else(|| "-".into()),
                why_not_counted(m).unwrap_or_else(|| "healthy".into()),
            ]);
        }
    }
    b.build().with(Style::markdown()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::evacuate::{BANDWIDTH_RULE, share};
    use crate::machine::dirty_rate::DirtyRate;
    use crate::migration::measurement::{GuestMemory, Outcome};
    use crate::summary::cell_runs::testing::run;

    fn guest(i: usize, sent: f64, total_ms: f64, healthy: bool) -> EvacuatedGuest {
        let mut record = run("a", 0, total_ms, healthy, true).migration;
        record.measurement.wall_time_ms = Some(total_ms + 20.0);
        record.measurement.dirty_rate_before = Some(DirtyRate { mib_per_s: 0.0, mode: "page-sampling".into(), calc_time_s: 1.0, sample_pages: Some(4096) });
        record.measurement.guest_memory_before = Some(GuestMemory { total_mib: 100.0, free_mib: record.guest.ram_mib as f64 - 100.0 });
        EvacuatedGuest {
            name: format!("guest{i}"),
            slot_taken_ms: Some(sent - 5.0),
            destination_started_ms: Some(sent - 1.0),
            migrate_sent_ms: Some(sent),
            running_at_destination_ms: Some(sent + total_ms + 20.0),
            slot_freed_ms: Some(sent + total_ms),
            ended_ms: Some(sent + total_ms + 5.0),
            max_bandwidth_read_back: None,
            record,
        }
    }

    fn evacuation(parallel: usize, guests: Vec<EvacuatedGuest>) -> EvacuationRun {
        let link: crate::migration::scenario::LinkSpeed = "100MiB/s".parse().unwrap();
        EvacuationRun {
            started_at: String::new(),
            parallel,
            per_migration_link: share(&link, parallel),
            link,
            bandwidth_rule: BANDWIDTH_RULE.into(),
            destination: "this host".into(),
            guests,
        }
    }

    #[test]
    fn in_flight_counts_overlaps_not_touching_ends() {
        assert_eq!(max_in_flight(&[]), 0);
        assert_eq!(max_in_flight(&[(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]), 1);
        assert_eq!(max_in_flight(&[(0.0, 10.0), (5.0, 20.0), (9.0, 30.0), (25.0, 40.0)]), 3);
        assert_eq!(max_in_flight(&[(0.0, 10.0), (1.0, 2.0), (3.0, 4.0)]), 2);
    }

    #[test]
    fn figures_count_only_healthy_guests_and_the_wall_time_needs_all_of_them() {
        // Three at once, 1 s, 2 s and 3 s each from 0, 100 and 200 ms.
        let all = evacuation(3, vec![guest(0, 0.0, 1000.0, true), guest(1, 100.0, 2000.0, true), guest(2, 200.0, 3000.0, true)]);
        let f = figures(&all);
        assert_eq!((f.counted, f.healthy.as_str(), f.max_in_flight), (3, "3 of 3 healthy", 3));
        // First migrate at 0; the last guest runs there at 200 + 3000 + 20.
        assert_eq!(f.wall_time_ms, Some(3220.0));
        assert_eq!((f.sum_total_time_ms, f.mean_total_time_ms, f.max_downtime_ms), (Some(6000.0), Some(2000.0), Some(30.0)));
        // A broken guest: in no figure, and no wall time.
        let broken = evacuation(3, vec![guest(0, 0.0, 1000.0, true), guest(1, 100.0, 2000.0, true), guest(2, 200.0, 9000.0, false)]);
        let f = figures(&broken);
        assert_eq!((f.counted, f.healthy.as_str(), f.wall_time_ms), (2, "2 of 3 healthy", None));
        assert_eq!((f.sum_total_time_ms, f.max_downtime_ms), (Some(3000.0), Some(20.0)));
        assert!(f.not_counted.len() == 1 && f.not_counted[0].starts_with("guest2: guest not healthy"), "{:?}", f.not_counted);
        assert_eq!(f.max_in_flight, 3, "a broken guest was in flight too");
        let t = table(&[report(broken)]);
        assert!(t.contains("none (2 of 3 healthy)"), "{t}");
        // One at a time.
        let serial = evacuation(1, vec![guest(0, 0.0, 1000.0, true), guest(1, 1100.0, 1000.0, true)]);
        assert_eq!(figures(&serial).max_in_flight, 1);
        let mut failed = guest(1, 1100.0, 1000.0, true);
        failed.record.measurement.outcome = Outcome::Cancelled { reason: "not finished".into() };
        failed.running_at_destination_ms = None;
        let f = figures(&evacuation(2, vec![guest(0, 0.0, 1000.0, true), failed]));
        assert_eq!((f.counted, f.wall_time_ms), (1, None));
    }

    #[test]
    fn the_prediction_is_plans_schedule_of_the_same_guests_over_the_whole_link() {
        // Idle guests (dirty 0) using 100 MiB each, over 100 MiB/s: alone 1 s + 1 MiB of
        // state (0.01 s); two at once get 50 MiB/s each: 2.02 s each, side by side.
        let guests = vec![guest(0, 0.0, 1000.0, true), guest(1, 0.0, 1000.0, true)];
        let one = predicted(&evacuation(1, guests.clone()));
        assert!((one.makespan_s.unwrap() - 2.02).abs() < 1e-9, "{one:?}");
        let two = predicted(&evacuation(2, guests.clone()));
        assert!((two.makespan_s.unwrap() - 2.02).abs() < 1e-9, "{two:?}");
        assert_eq!(two.schedule.as_ref().unwrap().k, 2);
        assert_eq!(two.link, "100MiB/s");
        // A guest without a dirty rate: no makespan, and why.
        let mut g = guests;
        g[1].record.measurement.dirty_rate_before = None;
        g[1].record.measurement.dirty_rate_error = Some("calc-dirty-rate failed".into());
        let p = predicted(&evacuation(2, g));
        assert_eq!(p.makespan_s, None);
        assert_eq!(p.left_out, vec!["guest1: no dirty rate (calc-dirty-rate failed)".to_string()]);
    }

    #[test]
    fn the_report_serialises_figures_prediction_and_every_guest() {
        let r = report(evacuation(2, vec![guest(0, 0.0, 1000.0, true), guest(1, 10.0, 1000.0, true)]));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["record"], "evacuation");
        assert_eq!(v["parallel"], 2);
        assert_eq!(v["guests"].as_array().unwrap().len(), 2);
        assert_eq!(v["figures"]["healthy"], "2 of 2 healthy");
        assert!(v["predicted"]["makespan_s"].is_f64(), "{}", v["predicted"]);
        assert!(v["guests"][0]["record"]["total_time_ms"].is_f64());
        let t = guests_table(&[r]);
        assert!(t.contains("guest1") && t.contains("(precopy)"), "{t}");
    }
}
