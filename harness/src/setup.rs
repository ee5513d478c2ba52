//! Everything a command needs before it can start a guest, done by the tool
//! itself: QEMU (apt-installed when missing), the guest image (built and cached),
//! and the accelerator (KVM only where a guest really runs under it).
//! Concurrent callers (test binaries, parallel commands) serialise on one file lock.

use crate::guest::image::{self, GuestImage, ImageInputs};
use crate::host::{self, FileLock, HostInfo, Qemu};
use crate::machine::{self, Accel, AccelRequest};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a KVM guest may take to say READY before we call KVM unusable. A real
/// KVM guest is ready in about a second; a broken one never runs at all.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What set-up found or made.
#[derive(Debug, Clone)]
pub struct Platform {
    pub qemu: Qemu,
    pub image: GuestImage,
    pub host: HostInfo,
}

fn lock() -> Result<FileLock> {
    FileLock::acquire(&host::cache_dir().join("setup.lock"))
}

/// Installs QEMU if needed and builds the guest image if any input changed.
pub fn prepare(inputs: &ImageInputs) -> Result<Platform> {
    let _lock = lock()?;
    let qemu = Qemu::find_or_install()?;
    let image = image::ensure_image(inputs)?;
    Ok(Platform { qemu, image, host: HostInfo::read() })
}

/// The accelerator chosen, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub requested: AccelRequest,
    /// e.g. "KVM probe: guest never said READY within 15 s; using TCG".
    pub note: String,
}

/// A KVM probe's result, cached for this boot of the host and this QEMU binary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ProbeCache {
    boot_id: String,
    qemu: String,
    image: String,
    works: bool,
    detail: String,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string()
}

/// Whether KVM runs a guest here (probing once per host boot, QEMU and image).
pub async fn kvm_works(p: &Platform) -> Result<(bool, String)> {
    // Waiting for the lock must not block the runtime (Ctrl-C must still be heard).
    let _lock = tokio::task::spawn_blocking(lock).await.context("set-up lock task")??;
    let path = host::cache_dir().join("kvm-probe.json");
    let key = (boot_id(), p.qemu.version_line.clone(), p.image.manifest.key.clone());
    if let Some(c) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<ProbeCache>(&t).ok()) {
        if (c.boot_id.clone(), c.qemu.clone(), c.image.clone()) == key {
            return Ok((c.works, c.detail));
        }
    }
    let (works, detail) = match machine::probe_kvm(&p.qemu, &p.image, KVM_PROBE_TIMEOUT).await {
        Ok(t) => (true, format!("a KVM guest said READY after {:.1} s", t.as_secs_f64())),
        Err(e) => (false, e),
    };
    let c = ProbeCache { boot_id: key.0, qemu: key.1, image: key.2, works, detail: detail.clone() };
    let _ = std::fs::write(&path, serde_json::to_string_pretty(&c)?);
    Ok((works, detail))
}

/// Turns `auto|kvm|tcg` into the accelerator to use.
pub async fn resolve_accel(p: &Platform, requested: AccelRequest) -> Result<AccelChoice> {
    match requested {
        AccelRequest::Tcg => Ok(AccelChoice { accel: Accel::Tcg, requested, note: "TCG requested".into() }),
        AccelRequest::Kvm => {
            let (works, detail) = kvm_works(p).await?;
            if !works {
                bail!(
                    "--accel kvm: KVM does not run a guest on this machine ({detail}). \
                     Use --accel auto (falls back to TCG) or --accel tcg, or fix KVM (is the kvm module loaded and /dev/kvm usable?)."
                );
            }
            Ok(AccelChoice { accel: Accel::Kvm, requested, note: format!("KVM requested; {detail}") })
        }
        AccelRequest::Auto => {
            let (works, detail) = kvm_works(p).await?;
            Ok(if works {
                AccelChoice { accel: Accel::Kvm, requested, note: format!("KVM works ({detail})") }
            } else {
                AccelChoice { accel: Accel::Tcg, requested, note: format!("KVM unusable ({detail}); using TCG") }
            })
        }
    }
}

/// The context every result carries, so a number never travels without it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    pub migbench_version: String,
    pub qemu_version: String,
    pub qemu_version_line: String,
    pub qemu_path: String,
    pub accel: Accel,
    pub accel_note: String,
    pub host: HostInfo,
    pub guest_image: String,
    pub guest_kernel: String,
}

impl Environment {
    pub fn new(p: &Platform, accel: &AccelChoice) -> Environment {
        Environment {
            migbench_version: env!("CARGO_PKG_VERSION").into(),
            qemu_version: p.qemu.version.clone(),
            qemu_version_line: p.qemu.version_line.clone(),
            qemu_path: p.qemu.path.display().to_string(),
            accel: accel.accel,
            accel_note: accel.note.clone(),
            host: p.host.clone(),
            guest_image: p.image.manifest.key.clone(),
            guest_kernel: format!("{} ({})", p.image.manifest.kernel_release, p.image.manifest.kernel_origin),
        }
    }
}
