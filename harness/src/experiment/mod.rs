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
use crate::machine::boot::{BootMode, Booted};
use crate::setup::Platform;
use anyhow::Result;
use std::time::Duration;


/// Boots a guest as `mode` says and returns its time from QEMU start to READY,
/// in ms, and how it came up.
pub async fn boot_once(platform: &Platform, spec: GuestSpec, mode: BootMode, timeout: Duration) -> Result<(f64, Booted)> {
    let mut site = Site::local(&platform.qemu, &platform.image, false)?;
    site.set_boot_mode(mode);
    let (m, t) = site.boot(spec, "boot", timeout).await?;
    let booted = m.booted;
    m.quit().await;
    Ok((t, booted))
}
