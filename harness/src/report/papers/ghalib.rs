//! Ghalib et al., "Virtual Machine Migration with an Open Source Hypervisor": a web
//! server in a Xen VM, 1000 requests from ApacheBench, latency per request before,
//! during and after a live migration over a 100 Mb/s link. Their figures: 0–25 ms
//! per request normally, up to about 250 ms during the migration, the same as
//! before afterwards, and the VM keeps its IP address. Their hardware (Core 2 Duo,
//! Xen, IIS on Windows XP) is not ours, so what can match is the shape: slower
//! during, back to normal after, every request answered at the same address.

use crate::summary::cell_runs::CellRuns;
use crate::record::RunRecord;
use crate::load::spec::Connection;
use crate::load::service::ServiceRecord;
use crate::load::timeline::{MergedPhase, PhaseLatency};
use tabled::builder::Builder;
use tabled::settings::Style;

/// Their per-request latency range per phase, ms.
const THEIRS: [(&str, &str); 3] = [("before", "0–25"), ("during", "up to ~250"), ("after", "0–25 (as before)")];

pub fn section(records: &[RunRecord]) -> String {
    let loaded = CellRuns::new(records.iter().filter(|r| r.migration.measurement.service.is_some()));
    let mut out = String::from(
        "Ghalib et al.: per-request latency before, during and after live migration (100 Mbit/s), over the runs that completed with a healthy guest\n\n",
    );
    if loaded.n() == 0 {
        out += "No run carried an HTTP load: nothing to compare.\n";
        return out;
    }
    if let Some(why) = loaded.why_no_figure() {
        out += &format!("No run with an HTTP load counts ({why}): nothing to compare.\n");
        return out;
    }
    let runs: Vec<(&RunRecord, &ServiceRecord)> = loaded.counted().filter_map(|r| Some((r, r.migration.measurement.service.as_ref()?))).collect();
    // One group per load (mode and connection), repetitions merged through their histograms.
    let key = |s: &ServiceRecord| format!("{} {}", s.load.mode, s.load.connection);
    let mut groups: Vec<(String, Vec<&ServiceRecord>)> = Vec::new();
    for s in loaded.all().iter().filter_map(|r| r.migration.measurement.service.as_ref()) {
        if !groups.iter().any(|(k, _)| *k == key(s)) {
            groups.push((key(s), runs.iter().map(|(_, c)| *c).filter(|c| key(c) == key(s)).collect()));
        }
    }
    let mut b = Builder::default();
    b.push_record(["load", "phase", "paper (ms per request)", "runs", "requests", "failed", "p50_ms", "p99_ms", "max_ms"]);
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    for (k, group) in &groups {
        let of_load = CellRuns::new(loaded.all().iter().copied().filter(|r| r.migration.measurement.service.as_ref().is_some_and(|s| key(s) == *k)));
        for (pick, (phase, theirs)) in THEIRS.iter().enumerate() {
            let phases: Vec<&PhaseLatency> = group.iter().map(|s| s.client.phases()[pick]).collect();
            let m = MergedPhase::of(&phases);
            b.push_record([
                k.clone(),
                phase.to_string(),
                theirs.to_string(),
                of_load.tally(),
                m.requests.to_string(),
                m.failed.to_string(),
                ms(m.p50_ms),
                ms(m.p99_ms),
                ms(m.max_ms),
            ]);
        }
    }
    out += &b.build().with(Style::markdown()).to_string();
    out += "\n\n";
    if loaded.k() < loaded.n() {
        out += &format!("Not counted: {}.\n\n", loaded.reasons().join("; "));
    }
    for line in verdicts(&runs) {
        out += &format!("- {line}\n");
    }
    out
}

/// One line per claim of the paper: does our run show the same?
fn verdicts(runs: &[(&RunRecord, &ServiceRecord)]) -> Vec<String> {
    let n = runs.len();
    let slower = runs.iter().filter(|(_, s)| s.client.during.max_ms > s.client.before.max_ms).count();
    let within = |a: Option<f64>, b: Option<f64>, factor: f64| matches!((a, b), (Some(a), Some(b)) if a <= factor * b.max(1.0));
    let typical_back = runs.iter().filter(|(_, s)| within(s.client.after.p50_ms, s.client.before.p50_ms, 1.5)).count();
    let tail_back = runs.iter().filter(|(_, s)| within(s.client.after.p99_ms, s.client.before.p99_ms, 2.0)).count();
    // Only a guest that really moved can show it kept its address.
    let did_move = |r: &RunRecord| {
        let m = &r.migration.measurement;
        m.outcome == crate::migration::measurement::Outcome::Completed && m.health.runs_on == "destination"
    };
    let moved = runs.iter().filter(|(r, _)| did_move(r)).count();
    let answered_after = runs.iter().filter(|(r, s)| did_move(r) && s.client.after.ok > 0).count();
    let failed: u64 = runs.iter().map(|(_, s)| s.client.failed).sum();
    let worst = |conn: Connection| {
        runs.iter().filter(|(_, s)| s.load.connection == conn).filter_map(|(_, s)| s.client.during.max_ms).reduce(f64::max)
    };
    let show = |v: Option<f64>| v.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "-".into());
    let qemu_down = runs.iter().filter_map(|(r, _)| r.migration.measurement.downtime_ms).fold(0.0, f64::max);
    let service_down = runs.iter().filter_map(|(r, _)| r.migration.measurement.service_downtime_ms).fold(0.0, f64::max);
    vec![
        format!(
            "Slower during the migration (paper: up to ~250 ms, against 0–25 ms): {slower} of {n} runs had a slower worst request during than \
             before. Worst during: {} with keep-alive, {} with a new connection per request.",
            show(worst(Connection::KeepAlive)),
            show(worst(Connection::PerRequest))
        ),
        format!(
            "Back to normal afterwards (paper: same as before): typical latency (p50) within 1.5× of `before` in {typical_back} of {n} runs; \
             the tail (p99) within 2× in {tail_back} of {n}. The first requests after the switchover are slow while the guest catches up."
        ),
        format!("Keeps its IP address (paper: yes): {answered_after} of the {moved} runs whose guest moved were answered at the same address after the move."),
        format!(
            "Transparent to the user (paper: yes): {failed} requests failed in all. The longest time without an answer was {service_down:.0} ms \
             while QEMU reported at most {qemu_down:.0} ms of downtime: a client sees the whole path (bridge learning, \
             self-announce, TCP retransmits), not only the VM's pause."
        ),
        "Cannot match: their hardware (Core 2 Duo, Xen, IIS on Windows XP, NFS storage) and absolute times; ours is QEMU on this host.".into(),
    ]
}
