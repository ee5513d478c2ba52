//! The records `migbench bench` writes beside its migration runs: boot times, the
//! workloads' own rates on the host and in a guest, the load comparison, and each
//! sweep's throughput.

use super::SCHEMA;
use crate::setup::Environment;
use serde::{Deserialize, Serialize};

/// Boots of one guest size, QEMU start to READY (`boots.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootRecord {
    /// "boot".
    pub record: String,
    pub schema: u32,
    pub environment: Environment,
    pub ram_mib: u32,
    pub vcpus: u32,
    /// Fresh boots, or restores from a snapshot (records from before read as fresh).
    #[serde(default)]
    pub booted: crate::machine::boot::Booted,
    pub boot_to_ready_ms: Vec<f64>,
}

impl BootRecord {
    pub fn new(environment: Environment, ram_mib: u32, vcpus: u32, booted: crate::machine::boot::Booted, boot_to_ready_ms: Vec<f64>) -> BootRecord {
        BootRecord { record: "boot".into(), schema: SCHEMA, environment, ram_mib, vcpus, booted, boot_to_ready_ms }
    }
}

/// The Livermore means over all 72 kernel rates, MFLOPS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LivermoreMeans {
    pub arithmetic: f64,
    pub geometric: f64,
    pub harmonic: f64,
}

/// One workload's figure in one place (host or guest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateFigure {
    /// DMIPS for Dhrystone, MFLOPS for Linpack.
    pub rate: Option<f64>,
    pub livermore_means: Option<LivermoreMeans>,
}

/// A workload's rate on the host and in a guest (`workloads.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRateRecord {
    /// "workload-rate".
    pub record: String,
    pub schema: u32,
    pub environment: Environment,
    pub workload: String,
    pub seconds: f64,
    pub host: RateFigure,
    pub guest: RateFigure,
}

impl WorkloadRateRecord {
    pub fn new(environment: Environment, workload: String, seconds: f64, host: RateFigure, guest: RateFigure) -> WorkloadRateRecord {
        WorkloadRateRecord { record: "workload-rate".into(), schema: SCHEMA, environment, workload, seconds, host, guest }
    }
}

/// One row of the load comparison (`load.jsonl`): our generator or another tool
/// against the same loopback server in the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadFigureRecord {
    /// "load-capacity".
    pub record: String,
    pub schema: u32,
    pub environment: Environment,
    /// Seconds of each run.
    pub seconds: f64,
    /// The tool, its setting, requests/s, p99, the ratio ours ÷ its (another
    /// tool's row) and the note: which build ran, every run's figure, or why there
    /// is no figure.
    #[serde(flatten)]
    pub figure: crate::load::capacity::Figure,
}

impl LoadFigureRecord {
    pub fn new(environment: Environment, seconds: f64, f: &crate::load::capacity::Figure) -> LoadFigureRecord {
        LoadFigureRecord { record: "load-capacity".into(), schema: SCHEMA, environment, seconds, figure: f.clone() }
    }
}

/// One sweep of the bench's profile (`sweeps.jsonl`): how many runs it did in how
/// long, with guest reuse on or off, and how many of them count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRateRecord {
    /// "sweep-rate".
    pub record: String,
    pub schema: u32,
    pub environment: Environment,
    pub profile: String,
    pub reuse: bool,
    pub runs: usize,
    /// The sweep's wall time, s.
    pub seconds: f64,
    pub runs_per_min: f64,
    /// Guests booted for a run (not reused), and their boot times' sum, s: the time
    /// reuse saves.
    pub boots: usize,
    pub boot_seconds: f64,
    /// "k of n healthy", with why the others do not count.
    pub tally: String,
    /// Its `results.jsonl`.
    pub results: String,
}

impl SweepRateRecord {
    /// The record of a sweep whose runs are `runs` (every one, counted or not: the
    /// sweep spent its time on all of them).
    #[allow(clippy::too_many_arguments)] // One per field: a record is written in one place.
    pub fn new(environment: Environment, profile: &str, reuse: bool, seconds: f64, runs_per_min: f64, tally: String, results: &std::path::Path, runs: &[super::RunRecord]) -> SweepRateRecord {
        let booted: Vec<f64> = runs.iter().filter(|r| !r.run.reused_guest && r.migration.guest_boot_ms > 0.0).map(|r| r.migration.guest_boot_ms).collect();
        SweepRateRecord {
            record: "sweep-rate".into(),
            schema: SCHEMA,
            environment,
            profile: profile.into(),
            reuse,
            runs: runs.len(),
            seconds,
            runs_per_min,
            boots: booted.len(),
            boot_seconds: booted.iter().sum::<f64>() / 1000.0,
            tally,
            results: results.display().to_string(),
        }
    }
}
