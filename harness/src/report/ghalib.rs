//! Ghalib et al., "Virtual Machine Migration with an Open Source Hypervisor": a web
//! server in a Xen VM, 1000 requests from ApacheBench, latency per request before,
//! during and after a live migration over a 100 Mb/s link. Their figures: 0–25 ms
//! per request normally, up to about 250 ms during the migration, the same as
//! before afterwards, and the VM keeps its IP address. Their hardware (Core 2 Duo,
//! Xen, IIS on Windows XP) is not ours, so what can match is the shape: slower
//! during, back to normal after, every request answered at the same address.

use crate::experiment::sweep::RunRecord;
use crate::load::service::ServiceRecord;
use tabled::builder::Builder;
use tabled::settings::Style;

/// Their per-request latency range per phase, ms.
const THEIRS: [(&str, &str); 3] = [("before", "0–25"), ("during", "up to ~250"), ("after", "0–25 (as before)")];

pub fn section(records: &[RunRecord]) -> String {
    let runs: Vec<(&RunRecord, &ServiceRecord)> =
        records.iter().filter_map(|r| Some((r, r.migration.measurement.service.as_ref()?))).collect();
    let mut out = String::from(
        "Ghalib et al.: per-request latency before, during and after live migration (100 Mbit/s)\n\n",
    );
    if runs.is_empty() {
        out += "No run carried an HTTP load: nothing to compare.\n";
        return out;
    }
    let mut b = Builder::default();
    b.push_record(["run", "phase", "paper (ms per request)", "requests", "failed", "p50_ms", "p99_ms", "max_ms"]);
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    for (r, s) in &runs {
        let label = format!("{} {} rep {}", s.load.mode, s.load.connection, r.run.repetition + 1);
        for ((phase, theirs), p) in THEIRS.iter().zip([&s.client.before, &s.client.during, &s.client.after]) {
            b.push_record([
                label.clone(),
                phase.to_string(),
                theirs.to_string(),
                p.requests.to_string(),
                p.failed.to_string(),
                ms(p.p50_ms),
                ms(p.p99_ms),
                ms(p.max_ms),
            ]);
        }
    }
    out += &b.build().with(Style::markdown()).to_string();
    out += "\n\n";
    for line in verdicts(&runs) {
        out += &format!("- {line}\n");
    }
    out
}

/// One line per claim of the paper: does our run show the same?
fn verdicts(runs: &[(&RunRecord, &ServiceRecord)]) -> Vec<String> {
    let n = runs.len();
    let slower = runs.iter().filter(|(_, s)| s.client.during.max_ms > s.client.before.max_ms).count();
    let recovered = runs
        .iter()
        .filter(|(_, s)| match (s.client.before.p99_ms, s.client.after.p99_ms) {
            (Some(b), Some(a)) => a <= 2.0 * b.max(1.0),
            _ => false,
        })
        .count();
    let answered_after = runs.iter().filter(|(_, s)| s.client.after.ok > 0).count();
    let failed: u64 = runs.iter().map(|(_, s)| s.client.failed).sum();
    let worst = runs.iter().filter_map(|(_, s)| s.client.during.max_ms).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let qemu_down = runs.iter().filter_map(|(r, _)| r.migration.measurement.downtime_ms).fold(0.0, f64::max);
    let service_down = runs.iter().filter_map(|(r, _)| r.migration.measurement.service_downtime_ms).fold(0.0, f64::max);
    vec![
        format!(
            "Slower during the migration (paper: up to ~250 ms vs 0–25 ms): {slower} of {n} runs had a slower worst request during than before{}.",
            worst.map(|w| format!("; our worst during the migration: {w:.1} ms")).unwrap_or_default()
        ),
        format!("Back to normal afterwards (paper: same as before): {recovered} of {n} runs had an `after` p99 within 2× of `before`."),
        format!("Keeps its IP address (paper: yes): {answered_after} of {n} runs were answered at the same address after the move."),
        format!(
            "Transparent to the user (paper: yes): {failed} requests failed in all. The longest time without an answer was {service_down:.0} ms \
             while QEMU reported at most {qemu_down:.0} ms of downtime: a client sees the whole path (bridge learning, \
             self-announce, TCP retransmits), not only the VM's pause."
        ),
        "Cannot match: their hardware (Core 2 Duo, Xen, IIS on Windows XP, NFS storage) and absolute times; ours is QEMU on this host.".into(),
    ]
}
