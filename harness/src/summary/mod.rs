//! The one per-cell summary of a result set: records grouped by cell, only healthy
//! completed runs whose strategy took effect counted ("k of n healthy"), and their
//! statistics (mean, median, CI, spread; `crate::stats`) taken once for every table,
//! rank, plan, gate and report.

pub mod cell_runs;
pub mod cells;
pub mod endurance;
pub mod harness_cpu;

pub use cell_runs::CellRuns;
