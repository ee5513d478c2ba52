//! How fast a running guest dirties its memory, measured by QEMU itself
//! (`calc-dirty-rate`, then `query-dirty-rate`), without migrating it: the input of
//! the predicted ranking.
//!
//! QEMU offers up to three modes. `page-sampling` hashes a sample of pages twice and
//! counts the ones that changed: it works everywhere, but it sees a page rewritten
//! with the same bytes as clean, and it samples. `dirty-bitmap` and `dirty-ring` use
//! KVM's dirty logging and count every written page. Under TCG those two crashed
//! QEMU 7.2 here (DESIGN.md §3), so TCG always samples; KVM uses the bitmap when the
//! QEMU offers it.

use super::Machine;
use super::hardware::Accel;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{Duration, Instant};

/// Pages sampled per GiB in page-sampling mode: QEMU's maximum, for the least noise.
const SAMPLE_PAGES_PER_GIB: u64 = 4096;

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirtyRate {
    /// MiB/s, as QEMU reports it.
    pub mib_per_s: f64,
    pub mode: String,
    /// The measuring window, seconds.
    pub calc_time_s: f64,
    /// Pages sampled per GiB (page-sampling only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_pages: Option<u64>,
}

impl DirtyRate {
    pub fn bytes_per_s(&self) -> f64 {
        self.mib_per_s * 1024.0 * 1024.0
    }
}

/// The mode to ask for: dirty-bitmap under KVM when offered, else page-sampling.
pub fn mode_for(accel: Accel, offered: &std::collections::BTreeSet<String>) -> &'static str {
    if accel == Accel::Kvm && offered.contains("dirty-bitmap") { "dirty-bitmap" } else { "page-sampling" }
}

/// Measures the guest's dirty rate over `secs` (whole seconds on QEMUs before 8.1,
/// which only take seconds).
pub async fn measure(m: &Machine, secs: f64) -> Result<DirtyRate> {
    let pending = start(m, secs).await?;
    finish(m, pending).await
}

/// A measurement under way (see [`start`]).
#[derive(Debug, Clone)]
pub struct Pending {
    mode: &'static str,
    calc_time_s: f64,
    sample_pages: Option<u64>,
}

/// Starts a measurement and returns at once, so several guests can be measured in
/// the same window; [`finish`] collects it.
pub async fn start(m: &Machine, secs: f64) -> Result<Pending> {
    if !(secs.is_finite() && (0.1..=60.0).contains(&secs)) {
        bail!("dirty_rate_s = {secs}: give 0.1 to 60 seconds (0 in a profile turns the measurement off)");
    }
    let f = m.features().await?;
    if !f.commands.contains("calc-dirty-rate") {
        bail!("this QEMU has no calc-dirty-rate (it came in QEMU 5.2): the dirty rate cannot be measured");
    }
    let mode = mode_for(m.spec.accel, &f.dirty_rate_modes);
    let mut args = json!({});
    let calc_time_s = if f.calc_time_unit {
        let ms = (secs * 1000.0).round().max(100.0) as u64;
        args["calc-time"] = json!(ms);
        args["calc-time-unit"] = json!("millisecond");
        ms as f64 / 1000.0
    } else {
        let s = secs.round().max(1.0) as u64;
        args["calc-time"] = json!(s);
        s as f64
    };
    // Older QEMUs have no `mode` and always sample.
    if !f.dirty_rate_modes.is_empty() {
        args["mode"] = json!(mode);
    }
    // `sample-pages` is older than `mode`; a QEMU without modes may not take it either.
    let sample_pages = (mode == "page-sampling" && !f.dirty_rate_modes.is_empty()).then_some(SAMPLE_PAGES_PER_GIB);
    if let Some(n) = sample_pages {
        args["sample-pages"] = json!(n);
    }
    m.qmp.execute_json("calc-dirty-rate", args).await.context("calc-dirty-rate")?;
    Ok(Pending { mode, calc_time_s, sample_pages })
}

/// Waits for a measurement [`start`]ed on `m` and returns it.
pub async fn finish(m: &Machine, pending: Pending) -> Result<DirtyRate> {
    let Pending { mode, calc_time_s, sample_pages } = pending;
    let deadline = Instant::now() + Duration::from_secs_f64(calc_time_s + 10.0);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = m.qmp.execute_json("query-dirty-rate", json!({})).await.context("query-dirty-rate")?;
        if v.get("status").and_then(|s| s.as_str()) == Some("measured") {
            let rate = v.get("dirty-rate").and_then(|r| r.as_f64()).context("query-dirty-rate: no dirty-rate in a measured reply")?;
            let mode = v.get("mode").and_then(|s| s.as_str()).unwrap_or(mode).to_string();
            return Ok(DirtyRate { mib_per_s: rate, mode, calc_time_s, sample_pages });
        }
        if Instant::now() >= deadline {
            bail!("query-dirty-rate still says {} after {:.0} s", v.get("status").unwrap_or(&json!("nothing")), calc_time_s + 10.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_always_samples() {
        let all: std::collections::BTreeSet<String> = ["page-sampling", "dirty-bitmap", "dirty-ring"].iter().map(|s| s.to_string()).collect();
        assert_eq!(mode_for(Accel::Tcg, &all), "page-sampling");
        assert_eq!(mode_for(Accel::Kvm, &all), "dirty-bitmap");
        assert_eq!(mode_for(Accel::Kvm, &Default::default()), "page-sampling");
    }
}
