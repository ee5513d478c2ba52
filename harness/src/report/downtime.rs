//! The downtime QEMU expected beside the downtime it measured, per cell: how well
//! its switchover decision (the downtime limit, and avail-switchover-bandwidth
//! where set) predicts the pause, and what the guest and the harness saw of it.

use crate::record::RunRecord;
use crate::summary::cell_runs::CellRuns;
use tabled::settings::Style;

/// Whether a run has QEMU's expectation to show.
pub fn has_expected(r: &RunRecord) -> bool {
    r.migration.measurement.expected_downtime_ms.is_some()
}

/// One row per cell whose runs carry `expected_downtime_ms`; None when none does.
/// `label` names a cell by its key.
pub fn table(label: &dyn Fn(&str) -> String, runs: &[RunRecord]) -> Option<String> {
    let cells: Vec<CellRuns> = CellRuns::by_cell(runs).into_iter().filter(|c| c.all().iter().any(|r| has_expected(r))).collect();
    if cells.is_empty() {
        return None;
    }
    let mut b = tabled::builder::Builder::default();
    b.push_record(["cell", "downtime limit ms", "switchover bandwidth", "runs", "expected ms (QEMU)", "measured ms (QEMU)", "STOP→RESUME ms", "guest gap ms"]);
    for c in &cells {
        let first = c.all()[0];
        let sc = &first.migration.scenario;
        b.push_record([
            label(&first.run.cell_key),
            sc.downtime_limit_ms.to_string(),
            sc.tuning.avail_switchover_bandwidth.as_ref().map_or("QEMU's estimate".into(), |s| s.to_string()),
            c.tally(),
            c.show(|m| m.expected_downtime_ms, 1),
            c.show(|m| m.downtime_ms, 1),
            c.show(|m| m.event_downtime_ms, 1),
            c.show(|m| m.guest_gap_ms, 1),
        ]);
    }
    Some(format!(
        "QEMU's expected downtime (its last `expected-downtime` while pre-copy was active) beside the downtime it measured, the harness's STOP→RESUME and the guest's longest heartbeat gap; mean ± 95 % CI over the healthy completed runs:\n\n{}",
        b.build().with(Style::markdown())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::cell_runs::testing::run;

    #[test]
    fn expected_and_measured_downtime_per_cell() {
        let mut runs: Vec<RunRecord> = (0..3).map(|i| run("a", i, 1000.0, true, true)).collect();
        let p = |k: &str| format!("cell {k}");
        assert!(table(&p, &runs).is_none(), "no expectation recorded, no table");
        for (r, (e, d)) in runs.iter_mut().zip([(100.0, 40.0), (200.0, 60.0), (300.0, 80.0)]) {
            r.run.cell_key = r.run.cell.key();
            r.migration.measurement.expected_downtime_ms = Some(e);
            r.migration.measurement.downtime_ms = Some(d);
        }
        runs[0].migration.scenario.tuning.avail_switchover_bandwidth = Some("1Gbit".parse().unwrap());
        let t = table(&p, &runs).unwrap();
        let row = t.lines().find(|l| l.contains("1Gbit")).unwrap_or_else(|| panic!("{t}"));
        assert!(row.contains("3 of 3 healthy") && row.contains("200.0 ±") && row.contains("60.0 ±"), "{row}");
        assert!(t.contains("expected ms (QEMU)"), "{t}");
    }
}
