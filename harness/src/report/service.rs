//! The service under migration, as its clients saw it, over the runs that count
//! (completed, guest healthy): latency per phase (the repetitions' raw HDR
//! histograms merged, not their percentiles averaged) and the outage five ways:
//! QEMU's downtime, the STOP→RESUME events, the guest's own heartbeat gap, the fine
//! probe and the HTTP clients.

use crate::summary::cell_runs::CellRuns;
use crate::experiment::profile::Profile;
use crate::record::RunRecord;
use crate::load::service::ServiceRecord;
use crate::load::timeline::{MergedPhase, PhaseLatency};
use crate::migration::measurement::Measurement;
use super::opt_ms;
use tabled::builder::Builder;
use tabled::settings::Style;

/// The runs of each cell that carried a load, in cell order, with the cell's label.
fn cells_with_service<'a>(profile: &Profile, records: &'a [RunRecord]) -> Vec<(String, CellRuns<'a>)> {
    let mut out = Vec::new();
    for (i, cell) in profile.cells.iter().enumerate() {
        let key = cell.key();
        let runs = CellRuns::new(records.iter().filter(|r| r.run.cell_key == key && r.migration.measurement.service.is_some()));
        if runs.n() > 0 {
            let label = profile.cell_label(i);
            let load = runs.all()[0].migration.measurement.service.as_ref().map(|s| format!("{} {}", s.load.mode, s.load.connection)).unwrap_or_default();
            out.push((format!("{label} [{load}]"), runs));
        }
    }
    out
}

fn service(r: &RunRecord) -> &ServiceRecord {
    r.migration.measurement.service.as_ref().expect("filtered to runs with a service")
}

/// Under a table: the cells some of whose runs do not count, and why.
fn uncounted_notes(cells: &[(String, CellRuns)]) -> String {
    let notes: Vec<String> = cells.iter().filter(|(_, c)| c.k() < c.n()).map(|(label, c)| format!("- {label}: {}", c.tally_with_reasons())).collect();
    if notes.is_empty() { String::new() } else { format!("\n\nOnly completed runs with a healthy guest are counted:\n\n{}", notes.join("\n")) }
}

/// Latency per phase, p50/p99/p99.9/max over the counted repetitions of a cell.
pub fn latency_table(profile: &Profile, records: &[RunRecord]) -> Option<String> {
    let cells = cells_with_service(profile, records);
    if cells.is_empty() {
        return None;
    }
    let mut b = Builder::default();
    b.push_record(["cell", "runs", "phase", "requests", "failed", "p50_ms", "p99_ms", "p99.9_ms", "max_ms", "ok_per_s"]);
    for (label, runs) in &cells {
        if runs.k() == 0 {
            let mut row = vec![label.clone(), runs.tally(), "-".into()];
            row.extend(std::iter::repeat_n("-".to_string(), 7));
            b.push_record(row);
            continue;
        }
        for (phase, pick) in [("before", 0), ("during", 1), ("after", 2)] {
            let phases: Vec<&PhaseLatency> = runs.counted().map(|r| service(r).client.phases()[pick]).collect();
            let m = MergedPhase::of(&phases);
            let rate = runs.stats(|m| m.service.as_ref()?.client.phases()[pick].ok_per_s);
            b.push_record([
                label.clone(),
                runs.tally(),
                phase.into(),
                m.requests.to_string(),
                m.failed.to_string(),
                opt_ms(m.p50_ms),
                opt_ms(m.p99_ms),
                opt_ms(m.p999_ms),
                opt_ms(m.max_ms),
                rate.map(|s| format!("{:.0}", s.mean)).unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    Some(format!("{}{}", b.build().with(Style::markdown()), uncounted_notes(&cells)))
}

/// The outage as each observer saw it (mean over the counted repetitions).
pub fn outage_table(profile: &Profile, records: &[RunRecord]) -> Option<String> {
    let cells = cells_with_service(profile, records);
    if cells.is_empty() {
        return None;
    }
    let mut b = Builder::default();
    b.push_record([
        "cell",
        "runs",
        "qemu_downtime_ms",
        "stop_to_resume_ms",
        "guest_gap_ms",
        "probe_outage_ms",
        "probe_lost_during/settling/other",
        "service_downtime_ms",
        "brownout_ms",
        "failed_requests",
    ]);
    for (label, runs) in &cells {
        let col = |f: &dyn Fn(&Measurement) -> Option<f64>| runs.stats(f).map(|s| s.show(1)).unwrap_or_else(|| "-".into());
        let counted: Vec<&RunRecord> = runs.counted().collect();
        let failed = if counted.is_empty() { "-".to_string() } else { counted.iter().map(|r| service(r).client.failed).sum::<u64>().to_string() };
        let probes: Vec<_> = counted.iter().filter_map(|r| service(r).probe.as_ref()).collect();
        let lost = if probes.is_empty() {
            "-".to_string()
        } else {
            let sum = |f: &dyn Fn(&crate::load::probe::ProbeSummary) -> u64| probes.iter().map(|p| f(p)).sum::<u64>();
            // Records from before the settling second was counted show "-" for it.
            let settling: Option<u64> = probes.iter().map(|p| p.lost_settling).sum();
            let settling = settling.map_or("-".to_string(), |n| n.to_string());
            format!("{}/{settling}/{}", sum(&|p| p.lost_during), sum(&|p| p.lost_outside))
        };
        b.push_record([
            label.clone(),
            runs.tally(),
            col(&|m| m.downtime_ms),
            col(&|m| m.event_downtime_ms),
            col(&|m| m.guest_gap_ms),
            col(&|m| m.service.as_ref()?.probe.as_ref()?.outage.map(|g| g.ms)),
            lost,
            col(&|m| m.service_downtime_ms),
            col(&|m| m.brownout_ms),
            failed,
        ]);
    }
    Some(format!("{}{}", b.build().with(Style::markdown()), uncounted_notes(&cells)))
}

/// Both tables with their headings, for `run`'s output.
pub fn section(profile: &Profile, records: &[RunRecord]) -> Option<String> {
    let latency = latency_table(profile, records)?;
    let outage = outage_table(profile, records)?;
    Some(format!(
        "Service under migration: request latency per phase (repetitions' HDR histograms merged)\n\n{latency}\n\n\
         The outage, seen five ways: QEMU's downtime, STOP→RESUME events, the guest's heartbeat gap, the 1 kHz probe, and HTTP clients\n\n{outage}"
    ))
}

/// One migration's service, for `migrate --load`: its clients' latency per phase
/// and the outage as the probe and the clients saw it (none without a load). A
/// broken guest's figures are shown, marked as not counting.
pub fn one_migration(m: &Measurement) -> Option<String> {
    let s = m.service.as_ref()?;
    let mut b = Builder::default();
    b.push_record(["phase", "requests", "failed", "p50_ms", "p99_ms", "max_ms", "ok_per_s"].map(String::from));
    for (phase, p) in [("before", &s.client.before), ("during", &s.client.during), ("after", &s.client.after)] {
        b.push_record([phase.to_string(), p.requests.to_string(), p.failed.to_string(), opt_ms(p.p50_ms), opt_ms(p.p99_ms), opt_ms(p.max_ms), opt_ms(p.ok_per_s)]);
    }
    let outage = s.probe.as_ref().and_then(|p| p.outage).map_or("-".to_string(), |g| format!("{:.1} ms", g.ms));
    let counts = if m.outcome == crate::migration::measurement::Outcome::Completed && m.health.healthy { "" } else { " (the guest is not healthy or did not move: these figures do not count)" };
    Some(format!(
        "HTTP clients ({} {}, to {}){counts}:\n\n{}\n\nprobe outage {outage}, service downtime {}, {} failed outside the migration",
        s.load.mode,
        s.load.connection,
        s.target,
        b.build().with(Style::markdown()),
        m.service_downtime_ms.map_or("-".to_string(), |v| format!("{v:.1} ms")),
        s.client.failed_outside_window
    ))
}
