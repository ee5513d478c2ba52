//! Per-cell figures of a result set: one row per cell of a profile, over the
//! cell's counted runs (see [`CellRuns`]).

use super::cell_runs::CellRuns;
use crate::stats::Stats;
use crate::experiment::profile::Profile;
use crate::migration::measurement::Measurement;
use crate::record::RunRecord;
use serde::Serialize;

/// Per-cell statistics of a result set, over the cell's counted runs (completed,
/// guest healthy: see [`CellRuns`]).
#[derive(Debug, Clone, Serialize)]
pub struct CellSummary {
    pub cell_index: usize,
    pub label: String,
    pub runs: usize,
    pub completed: usize,
    /// k: the runs that count (completed with a healthy guest).
    pub counted: usize,
    /// "k of n healthy", with why the others do not count.
    pub tally: String,
    /// Why the cell has no figure ("0 of 3 healthy: …"); None when a run counts.
    pub why_no_figure: Option<String>,
    pub total_time_ms: Option<Stats>,
    pub downtime_ms: Option<Stats>,
    pub transferred_mib: Option<Stats>,
    pub iterations: Option<Stats>,
    pub guest_gap_ms: Option<Stats>,
    /// QEMU CPU, % of one host CPU, in the `before` window.
    pub cpu_before_percent: Option<Stats>,
    /// The guest's own view of its CPU use in the `before` window, % of one vCPU.
    pub guest_cpu_before_percent: Option<Stats>,
    /// Both QEMUs' CPU during the migration, % of one host CPU.
    pub cpu_during_percent: Option<Stats>,
    /// CPU time of the source QEMU outside its vCPUs during the migration (sending:
    /// channels, compression, TLS), ms.
    pub source_send_cpu_ms: Option<Stats>,
    /// The guest workload's slowdown during the migration, %.
    pub slowdown_percent: Option<Stats>,
    /// Post-copy: pages the destination requested, the time its vCPUs stalled on
    /// them (`postcopy-blocktime`), that stall per request, and QEMU's own mean
    /// fault latency where it reports one (10.1+).
    pub postcopy_requests: Option<Stats>,
    pub postcopy_blocktime_ms: Option<Stats>,
    pub postcopy_stall_per_request_ms: Option<Stats>,
    pub postcopy_latency_ms: Option<Stats>,
    pub outcomes: Vec<String>,
}

impl CellSummary {
    /// "k of n healthy" for this cell.
    pub fn tally(&self) -> String {
        super::cell_runs::tally(self.counted, self.runs)
    }
}

/// Summarises the runs of `profile` among `parsed`, one row per cell, in cell order.
pub fn summarise(parsed: &[RunRecord], profile: &Profile) -> Vec<CellSummary> {
    let mut out = Vec::new();
    for (i, cell) in profile.cells.iter().enumerate() {
        let key = cell.key();
        let runs = CellRuns::new(parsed.iter().filter(|r| r.run.profile == profile.name && r.run.cell_key == key));
        if runs.n() == 0 {
            continue;
        }
        out.push(CellSummary {
            cell_index: i,
            label: profile.cell_label(i),
            runs: runs.n(),
            completed: runs.completed(),
            counted: runs.k(),
            tally: runs.tally_with_reasons(),
            why_no_figure: runs.why_no_figure(),
            total_time_ms: runs.stats(|m| m.total_time_ms),
            downtime_ms: runs.stats(|m| m.downtime_ms),
            transferred_mib: runs.stats(|m| m.transferred_mib()),
            iterations: runs.stats(|m| m.iterations.map(|v| v as f64)),
            guest_gap_ms: runs.stats(|m| m.guest_gap_ms),
            cpu_before_percent: runs.stats(|m| m.cpu_percent.before.map(|u| u.qemu_percent)),
            guest_cpu_before_percent: runs.stats(|m| m.cpu_percent.before.and_then(|u| u.guest_percent)),
            cpu_during_percent: runs.stats(|m| m.cpu_percent.during.map(|u| u.qemu_percent)),
            source_send_cpu_ms: runs.stats(|m| m.source_send_cpu_ms()),
            slowdown_percent: runs.stats(|m| m.slowdown_percent()),
            // QEMU counts requests (0) in pre-copy too: only runs that switched show it.
            postcopy_requests: runs.stats(Measurement::remote_page_faults),
            postcopy_blocktime_ms: runs.stats(|m| m.postcopy_blocktime_ms),
            postcopy_stall_per_request_ms: runs.stats(|m| m.postcopy_stall_per_request_ms()),
            postcopy_latency_ms: runs.stats(|m| m.postcopy_latency_ms),
            outcomes: runs.outcomes(),
        });
    }
    out
}
