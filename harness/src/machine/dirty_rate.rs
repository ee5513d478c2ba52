//! How fast a running guest dirties its memory, measured by QEMU itself
//! (`calc-dirty-rate`, then `query-dirty-rate`), without migrating it: the input of
//! the predicted ranking.
//!
//! QEMU offers up to three modes. `page-sampling` hashes a sample of pages twice and
//! counts the ones that changed: it works everywhere, but it sees a page rewritten
//! with the same bytes as clean, and it samples. `dirty-bitmap` and `dirty-ring` use
//! dirty logging and count every written page; the ring is KVM's alone. A profile
//! picks one with `dirty_rate_mode` ([`DirtyRateMode`]); `auto` samples under TCG
//! and uses the bitmap under KVM where offered. Under TCG the bitmap counts nothing
//! on QEMU 10.0 and crashed QEMU 7.2 here (DESIGN.md §3), and there is no ring: a
//! mode this QEMU or accelerator cannot measure is an error saying why, never a
//! measurement made another way.

use super::Machine;
use super::hardware::{Accel, DirtyRateMode};
use crate::qmp::Features;
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

/// The mode to ask for (QEMU's name), or why this QEMU (`version`, its schema's
/// `features`) under `accel` cannot measure the one requested.
pub fn mode_for(requested: DirtyRateMode, accel: Accel, features: &Features, version: Option<(u64, u64, u64)>) -> Result<&'static str, String> {
    let offered = &features.dirty_rate_modes;
    let name = match requested {
        DirtyRateMode::Auto => return Ok(if accel == Accel::Kvm && offered.contains("dirty-bitmap") { "dirty-bitmap" } else { "page-sampling" }),
        DirtyRateMode::PageSampling => "page-sampling",
        DirtyRateMode::DirtyBitmap => "dirty-bitmap",
        DirtyRateMode::DirtyRing => "dirty-ring",
    };
    let qemu = version.map_or("this QEMU".to_string(), |(a, b, _)| format!("QEMU {a}.{b}"));
    // Before modes existed (QEMU 6.2) calc-dirty-rate always sampled.
    if offered.is_empty() && requested == DirtyRateMode::PageSampling {
        return Ok(name);
    }
    if !offered.contains(name) {
        return Err(format!("dirty_rate_mode = {name}: unsupported on {qemu}: its calc-dirty-rate has no such mode; use page-sampling"));
    }
    if requested == DirtyRateMode::DirtyRing && accel != Accel::Kvm {
        return Err(format!(
            "dirty_rate_mode = dirty-ring: the accelerator cannot: {} has no dirty ring (it needs KVM with -accel kvm,dirty-ring-size=N); not measured",
            accel.to_string().to_uppercase()
        ));
    }
    // Measured here: QEMU 10.0 under TCG counts 0 MiB/s in this mode for a guest that
    // page-sampling sees dirtying 23 MiB/s (tests/features_file.rs checks it still
    // does), and QEMU 7.2 crashed (DESIGN.md §3). A 0 is not a rate.
    if requested == DirtyRateMode::DirtyBitmap && accel == Accel::Tcg {
        return Err("dirty_rate_mode = dirty-bitmap: the accelerator cannot: under TCG the dirty bitmap misses the guest's writes \
             (QEMU 10.0 counted 0 MiB/s where page-sampling measured 23; QEMU 7.2 crashed); use page-sampling, or KVM"
            .to_string());
    }
    Ok(name)
}

/// Measures the guest's dirty rate over `secs` (whole seconds on QEMUs before 8.1,
/// which only take seconds) in the `requested` mode.
pub async fn measure(m: &Machine, secs: f64, requested: DirtyRateMode) -> Result<DirtyRate> {
    let pending = start(m, secs, requested).await?;
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
pub async fn start(m: &Machine, secs: f64, requested: DirtyRateMode) -> Result<Pending> {
    if !(secs.is_finite() && (0.1..=60.0).contains(&secs)) {
        bail!("dirty_rate_s = {secs}: give 0.1 to 60 seconds (0 in a profile turns the measurement off)");
    }
    let f = m.features().await?;
    if !f.commands.contains("calc-dirty-rate") {
        bail!("this QEMU has no calc-dirty-rate (it came in QEMU 5.2): the dirty rate cannot be measured");
    }
    let mode = mode_for(requested, m.spec.accel, f, m.qmp.version()).map_err(anyhow::Error::msg)?;
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

    fn features(version: &str) -> Features {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/qmp-{version}/query-qmp-schema.json"));
        Features::from_schema(&serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }

    #[test]
    fn auto_samples_under_tcg_and_takes_the_bitmap_under_kvm() {
        for v in ["7.2", "10.0"] {
            let f = features(v);
            assert_eq!(mode_for(DirtyRateMode::Auto, Accel::Tcg, &f, None), Ok("page-sampling"), "{v}");
            assert_eq!(mode_for(DirtyRateMode::Auto, Accel::Kvm, &f, None), Ok("dirty-bitmap"), "{v}");
        }
        assert_eq!(mode_for(DirtyRateMode::Auto, Accel::Kvm, &Features::default(), None), Ok("page-sampling"));
    }

    #[test]
    fn each_mode_is_measured_as_asked_or_refused_with_the_reason() {
        use DirtyRateMode::*;
        let (old, new) = ((features("7.2"), Some((7, 2, 22))), (features("10.0"), Some((10, 0, 2))));
        for (f, v) in [&old, &new] {
            assert!(f.dirty_rate_modes.contains("dirty-ring"), "both schemas have the three modes");
            assert_eq!(mode_for(PageSampling, Accel::Tcg, f, *v), Ok("page-sampling"));
            assert_eq!(mode_for(DirtyBitmap, Accel::Kvm, f, *v), Ok("dirty-bitmap"));
            assert_eq!(mode_for(DirtyRing, Accel::Kvm, f, *v), Ok("dirty-ring"));
            let e = mode_for(DirtyRing, Accel::Tcg, f, *v).unwrap_err();
            assert!(e.contains("the accelerator cannot: TCG has no dirty ring") && e.contains("dirty-ring-size"), "{e}");
        }
        for (f, v) in [&old, &new] {
            let e = mode_for(DirtyBitmap, Accel::Tcg, f, *v).unwrap_err();
            assert!(e.starts_with("dirty_rate_mode = dirty-bitmap: the accelerator cannot: under TCG"), "{e}");
        }
        // A QEMU whose calc-dirty-rate has no modes only samples.
        let none = Features::default();
        assert_eq!(mode_for(PageSampling, Accel::Tcg, &none, Some((6, 1, 0))), Ok("page-sampling"));
        let e = mode_for(DirtyBitmap, Accel::Kvm, &none, Some((6, 1, 0))).unwrap_err();
        assert!(e.contains("unsupported on QEMU 6.1") && e.contains("no such mode"), "{e}");
    }
}
