//! Migrations to a file and back (mapped-ram), per cell: the save (QEMU's total
//! time), the restore, the pause the guest saw across both, and the file's length
//! and the disk it took (mapped-ram files are sparse).

use crate::migration::measurement::Measurement;
use crate::record::RunRecord;
use crate::summary::cell_runs::CellRuns;
use tabled::settings::Style;

/// Whether a run saved to a file.
pub fn saved(r: &RunRecord) -> bool {
    r.migration.measurement.file.is_some()
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// One row per cell whose runs saved to a file; None when none did.
/// `label` names a cell by its key.
pub fn table(label: &dyn Fn(&str) -> String, runs: &[RunRecord]) -> Option<String> {
    let cells: Vec<CellRuns> = CellRuns::by_cell(runs).into_iter().filter(|c| c.all().iter().any(|r| saved(r))).collect();
    if cells.is_empty() {
        return None;
    }
    let file = |f: fn(&crate::migration::measurement::SavedFile) -> Option<f64>| move |m: &Measurement| m.file.as_ref().and_then(f);
    let mut b = tabled::builder::Builder::default();
    b.push_record(["cell", "strategy", "runs", "save ms (QEMU)", "restore ms", "STOP→RESUME ms", "guest gap ms", "file MiB", "on disk MiB"]);
    for c in &cells {
        let first = c.all()[0];
        b.push_record([
            label(&first.run.cell_key),
            first.migration.scenario.strategy.to_string(),
            c.tally(),
            c.show(|m| m.total_time_ms, 1),
            c.show(file(|f| f.restore_ms), 1),
            c.show(|m| m.event_downtime_ms, 1),
            c.show(|m| m.guest_gap_ms, 1),
            c.show(file(|f| Some(mib(f.apparent_bytes))), 1),
            c.show(file(|f| Some(mib(f.allocated_bytes))), 1),
        ]);
    }
    Some(format!(
        "Saved to a file and restored from it (mapped-ram); the guest is paused from the end of the save to the end of the restore. Mean ± 95 % CI over the healthy completed runs:\n\n{}",
        b.build().with(Style::markdown())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::measurement::SavedFile;
    use crate::summary::cell_runs::testing::run;

    #[test]
    fn save_restore_and_file_size_per_cell() {
        let mut runs: Vec<RunRecord> = (0..2).map(|i| run("a", i, 150.0, true, true)).collect();
        let p = |k: &str| format!("cell {k}");
        assert!(table(&p, &runs).is_none());
        for r in &mut runs {
            r.run.cell_key = r.run.cell.key();
            r.migration.measurement.file = Some(SavedFile { path: "/x".into(), apparent_bytes: 262 << 20, allocated_bytes: 100 << 20, restore_ms: Some(400.0) });
        }
        let t = table(&p, &runs).unwrap();
        assert!(t.contains("| 400.0 ±") && t.contains("| 262.0 ±") && t.contains("| 100.0 ±") && t.contains("2 of 2 healthy"), "{t}");
    }
}
