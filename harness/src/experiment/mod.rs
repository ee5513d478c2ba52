//! Experiments: a profile → a matrix of cells → runs, with repetitions, shards,
//! resume, and results streamed to disk as they come.

pub mod profile;
pub mod results;
pub mod stats;
pub mod sweep;

pub use results::ResultsFile;

use crate::machine::{GuestSpec, Machine, RunDir};
use crate::setup::Platform;
use anyhow::Result;
use std::time::Duration;

/// A timestamp for file names: 20261123T093000Z.
pub fn stamp() -> String {
    let s = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    s.replace(['-', ':'], "")
}

/// Boots a guest and returns its time from QEMU start to READY, in ms.
pub async fn boot_once(platform: &Platform, spec: GuestSpec, timeout: Duration) -> Result<f64> {
    let run = RunDir::new()?;
    let (m, t) = Machine::boot(&platform.qemu, &platform.image, spec, &run.machine_dir("boot")?, "boot", timeout).await?;
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

}
