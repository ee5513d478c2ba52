//! The one schema of a run record: what a line of `results.jsonl` holds. Runs
//! write it (`migbench migrate`, `migbench run`); every table, rank, plan, gate and
//! report reads it through here, typed, never by poking at JSON fields.
//!
//! The measurement's own fields live with the driver that measures them
//! ([`crate::migration::measurement`]); a record adds where and how the run was
//! made. A field added there or here is read back by everything at once.

pub mod bench;
pub mod file;

use crate::experiment::profile::Cell;
use crate::machine::GuestSpec;
use crate::migration::measurement::Measurement;
use crate::migration::scenario::Scenario;
use crate::setup::Environment;
use serde::{Deserialize, Serialize};

/// The schema this migbench writes. 1: records before the field existed (the same
/// layout); 2: with `schema`. Raise it when a field changes meaning or is removed
/// (adding an optional field does not need it: older readers ignore it).
pub const SCHEMA: u32 = 2;

fn schema_1() -> u32 {
    1
}

/// One run of `migbench migrate`: context, inputs, and the measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// The kind of record ("migration").
    pub record: String,
    #[serde(default = "schema_1")]
    pub schema: u32,
    pub started_at: String,
    pub environment: Environment,
    pub guest: GuestSpec,
    pub scenario: Scenario,
    /// QEMU start to the guest's READY on the source.
    pub guest_boot_ms: f64,
    /// How that guest came up: booted fresh, or restored from a snapshot of a booted
    /// guest (`--boot`). None where no guest came up (a run that failed first) and
    /// in records from before snapshots, whose guests all booted fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_booted: Option<crate::machine::boot::Booted>,
    #[serde(flatten)]
    pub measurement: Measurement,
}

/// Now, as records write times: 2026-11-23T09:30:00.123Z.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Where a run sits in its profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub profile: String,
    pub cell_index: usize,
    pub cell_key: String,
    pub cell: Cell,
    pub repetition: u32,
    /// Whether the guest had already been migrated by an earlier run of this sweep.
    pub reused_guest: bool,
    /// The harness's own resident memory when the run ended, MiB (a soak's check
    /// that migbench does not grow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_rss_mib: Option<f64>,
    /// The migbench process that made the run (RSS figures compare one process's runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_pid: Option<u32>,
}

impl RunInfo {
    /// `cell_key/repetition`: the identity `--resume` and `merge` use.
    pub fn key(&self) -> String {
        run_key(&self.cell_key, self.repetition)
    }
}

/// `cell_key/repetition`, the one spelling of a run's identity.
pub fn run_key(cell_key: &str, repetition: u32) -> String {
    format!("{cell_key}/{repetition}")
}

/// One line of `results.jsonl` for a profile run: the migration record plus `run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run: RunInfo,
    #[serde(flatten)]
    pub migration: MigrationRecord,
}

impl RunRecord {
    pub fn measurement(&self) -> &Measurement {
        &self.migration.measurement
    }
}

/// Why a line is not a record this migbench reads.
#[derive(Debug, Clone, PartialEq)]
pub enum NotARecord {
    /// Written by a newer migbench: its fields may mean something else.
    NewerSchema(u64),
    /// Another kind of line (a `migbench migrate` record, a bench line) or damaged.
    Other(String),
}

impl std::fmt::Display for NotARecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotARecord::NewerSchema(v) => write!(
                f,
                "record schema {v} was written by a newer migbench (this one reads schemas 1 to {SCHEMA}): read it with that migbench, or update this one"
            ),
            NotARecord::Other(why) => write!(f, "not a run record of a profile ({why})"),
        }
    }
}

/// Reads one line as a run record, checking its schema first.
pub fn run_record(v: &serde_json::Value) -> Result<RunRecord, NotARecord> {
    check_schema(v)?;
    serde_json::from_value(v.clone()).map_err(|e| NotARecord::Other(e.to_string()))
}

/// The schema of a line is one this migbench reads (no `schema`: 1).
pub fn check_schema(v: &serde_json::Value) -> Result<(), NotARecord> {
    match v.get("schema").and_then(|s| s.as_u64()) {
        Some(s) if s > SCHEMA as u64 => Err(NotARecord::NewerSchema(s)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_by_name_and_an_older_one_reads() {
        let newer = serde_json::json!({"record": "migration", "schema": SCHEMA + 1});
        let e = run_record(&newer).unwrap_err();
        assert_eq!(e, NotARecord::NewerSchema(SCHEMA as u64 + 1));
        let text = e.to_string();
        assert!(text.contains(&format!("schema {}", SCHEMA + 1)) && text.contains("newer migbench"), "{text}");
        assert!(matches!(run_record(&serde_json::json!({"x": 1})), Err(NotARecord::Other(_))));
    }
}
