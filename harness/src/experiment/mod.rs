//! Experiments: a profile → a matrix of cells → runs, with repetitions, shards,
//! resume, and results streamed to disk as they come.

pub mod evacuate;
pub mod once;
pub mod profile;
pub mod qemus;
pub mod service_run;
pub mod sweep;
pub mod workload_rates;

use crate::machine::hardware::GuestSpec;
use crate::machine::site::Site;
use crate::setup::Platform;
use anyhow::Result;
use std::time::Duration;


/// Boots a guest and returns its time from QEMU start to READY, in ms.
pub async fn boot_once(platform: &Platform, spec: GuestSpec, timeout: Duration) -> Result<f64> {
    let site = Site::local(&platform.qemu, &platform.image, false)?;
    let (m, t) = site.boot(spec, "boot", timeout).await?;
    m.quit().await;
    Ok(t)
}
