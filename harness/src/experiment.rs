//! Runs of several migrations: for now the built-in benchmark (`migbench bench`);
//! profiles, matrices and resumable sweeps come here next.

use crate::machine::{GuestSpec, Machine, Role, RunDir};
use crate::migration::{self, MigrationRecord, Scenario};
use crate::setup::{Environment, Platform};
use migbench_guest::orders::Workload;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Appends one JSON line and flushes it, so a finished run is on disk at once.
pub struct ResultsFile {
    path: PathBuf,
    file: std::fs::File,
}

impl ResultsFile {
    pub fn create(path: &Path) -> Result<ResultsFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the results directory {}", dir.display()))?;
        }
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {} for results", path.display()))?;
        Ok(ResultsFile { path: path.into(), file })
    }

    pub fn append<T: serde::Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record)? + "\n";
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("writing a result to {} (disk full?)", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A timestamp for file names: 20261123T093000Z.
pub fn stamp() -> String {
    let s = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    s.replace(['-', ':'], "")
}

/// Boots a guest and returns its time from QEMU start to READY, in ms.
pub async fn boot_once(platform: &Platform, spec: GuestSpec, timeout: Duration) -> Result<f64> {
    let run = RunDir::new()?;
    let mut m = Machine::start(&platform.qemu, &platform.image, spec, Role::Boot, &run.machine_dir("boot")?, "boot").await?;
    let ready = m.wait_ready(timeout).await?;
    let t = (ready.at - m.started).as_secs_f64() * 1000.0;
    m.quit().await;
    Ok(t)
}

/// Statistics of a handful of timings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Summary { n, median, min: v[0], max: v[n - 1] })
    }
}

/// The benchmark's plan.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub sizes_mib: Vec<u32>,
    pub boots: usize,
    pub boot_ram_mib: u32,
    pub vcpus: u32,
    pub scenario: Scenario,
    pub workload: Workload,
    pub boot_timeout: Duration,
}

/// What `migbench bench` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub boot_ms: Vec<f64>,
    pub boot: Option<Summary>,
    pub migrations: Vec<MigrationRecord>,
}

/// Boot timing, then one idle-guest migration per size. Each migration record is
/// appended to `results` as soon as it is measured.
pub async fn bench(platform: &Platform, env: &Environment, plan: &BenchPlan, results: &mut ResultsFile) -> Result<BenchResult> {
    let accel = env.accel;
    let mut boot_ms = Vec::new();
    for i in 0..plan.boots {
        let spec = GuestSpec::new(plan.boot_ram_mib, plan.vcpus, accel)?;
        let t = boot_once(platform, spec, plan.boot_timeout).await?;
        eprintln!("migbench: boot {}/{}: {:.0} ms to READY", i + 1, plan.boots, t);
        boot_ms.push(t);
    }
    results.append(&serde_json::json!({
        "record": "boot", "environment": env, "ram_mib": plan.boot_ram_mib, "vcpus": plan.vcpus,
        "boot_to_ready_ms": boot_ms,
    }))?;
    let mut migrations = Vec::new();
    for &size in &plan.sizes_mib {
        let spec = GuestSpec::new(size, plan.vcpus, accel)?.with_workload(plan.workload);
        eprintln!(
            "migbench: migrating a {size} MiB guest ({}) over {} ({}, {}) …",
            plan.workload, plan.scenario.link, plan.scenario.transport, plan.scenario.strategy
        );
        let rec = migration::run_one(platform, env, spec, &plan.scenario, plan.boot_timeout).await?;
        results.append(&rec)?;
        migrations.push(rec);
    }
    Ok(BenchResult { boot: Summary::of(&boot_ms), boot_ms, migrations })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_median() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Summary::of(&[]).is_none());
        let s = Summary::of(&[5.0, f64::NAN, 1.0]).unwrap();
        assert_eq!((s.n, s.min, s.max), (2, 1.0, 5.0));
    }

    #[test]
    fn results_are_appended_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/results.jsonl");
        let mut f = ResultsFile::create(&p).unwrap();
        f.append(&serde_json::json!({"x": 1})).unwrap();
        f.append(&serde_json::json!({"x": 2})).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "{\"x\":1}\n{\"x\":2}\n");
    }
}
