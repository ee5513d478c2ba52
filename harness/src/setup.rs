//! Everything a command needs before it can start a guest, done by the tool
//! itself: QEMU (found, fetched into the cache, or apt-installed), the guest image (built and cached),
//! and the accelerator (KVM only where a guest really runs under it).
//! Concurrent callers (test binaries, parallel commands) serialise on one file lock.

use crate::guest::image::{self, GuestImage, ImageInputs};
use crate::host::qemu_versions::{self, QemuWanted};
use crate::host::{self, FileLock, HostInfo, OsRelease, Qemu, QemuOrigin, qemu_cache};
use crate::machine::hardware::{Accel, AccelRequest};
use crate::machine;
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
    /// The user named this QEMU (`--qemu`, `$MIGBENCH_QEMU`): it is used as it is,
    /// never swapped for another under TCG.
    pub qemu_asked: bool,
    pub image: GuestImage,
    pub host: HostInfo,
}

fn lock() -> Result<FileLock> {
    FileLock::acquire(&host::cache_dir().join("setup.lock"))
}

/// Installs QEMU if needed and builds the guest image if any input changed.
/// `qemu` is `--qemu` (a version, `system` or a path), which wins over
/// `$MIGBENCH_QEMU` and the system's.
pub fn prepare(inputs: &ImageInputs, qemu: Option<&QemuWanted>) -> Result<Platform> {
    let _lock = lock()?;
    let qemu_asked = qemu.is_some() || std::env::var_os("MIGBENCH_QEMU").is_some_and(|v| !v.is_empty());
    let qemu = match qemu {
        Some(QemuWanted::Series(series)) => qemu_versions::resolve_series_locked(series)?,
        Some(w) => qemu_versions::resolve(w)?,
        None => match Qemu::find(None)? {
            Some(q) => q,
            // Debian 12's own QEMU (7.2) corrupts TCG guests it migrates, and installing
            // it would remove a backports qemu-utils: the cache's QEMU serves instead.
            None if OsRelease::read().is_bookworm() => qemu_cache::ensure_locked(qemu_cache::DEFAULT)?,
            None => Qemu::install()?,
        },
    };
    let image = image::ensure_image(inputs)?;
    Ok(Platform { qemu, qemu_asked, image, host: HostInfo::read() })
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
    let (works, detail) = match machine::site::probe_kvm(&p.qemu, &p.image, KVM_PROBE_TIMEOUT).await {
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

/// The QEMU a guest under `accel` should be migrated with. Under KVM, and under TCG
/// where it is ≥ 9.0, the one set-up found. Under TCG with an older system QEMU on
/// Debian 12, bookworm-backports' QEMU from migbench's cache (fetched once), since
/// the older one corrupts the guests it sends. A QEMU the user named is always used
/// as it is; so is an older one where no newer can be fetched: those carry
/// [`tcg_sender_warning`].
pub async fn choose_qemu(p: &mut Platform, accel: Accel) -> Result<()> {
    if accel != Accel::Tcg || p.qemu.tcg_sender_intact() || p.qemu_asked || p.qemu.origin == QemuOrigin::Chosen || !OsRelease::read().is_bookworm() {
        return Ok(());
    }
    p.qemu = tokio::task::spawn_blocking(|| qemu_cache::ensure(qemu_cache::DEFAULT)).await.context("QEMU fetch task")??;
    Ok(())
}

/// The mark a QEMU older than 9.0 under TCG leaves on its results and its output.
pub fn tcg_sender_warning(qemu: &Qemu, accel: Accel) -> Option<String> {
    (accel == Accel::Tcg && !qemu.tcg_sender_intact()).then(|| {
        format!(
            "QEMU {} under TCG, as the migration sender, corrupts guests that write memory while they migrate \
             (QEMU's dirty tracking of TCG writes, fixed in 9.0; measured here with 7.2.22: 1 of 30 such guests \
             arrived healthy, against 33 of 33 with 10.0). Results carry this mark; every run is still checked \
             healthy and intact. Use a QEMU ≥ 9.0 (--qemu PATH) for figures you trust.",
            qemu.version
        )
    })
}

/// Resolves the accelerator, chooses the QEMU for it, and returns the environment
/// every record of this command carries.
pub async fn environment(p: &mut Platform, requested: AccelRequest) -> Result<Environment> {
    let choice = resolve_accel(p, requested).await?;
    choose_qemu(p, choice.accel).await?;
    let machine_type = {
        let q = p.qemu.clone();
        // A QEMU that cannot list its machines fails at its start, with its own words.
        tokio::task::spawn_blocking(move || q.machine_type(machine::command::MACHINE_TYPE))
            .await
            .context("machine type task")?
            .unwrap_or_else(|e| format!("{} (not resolved: {})", machine::command::MACHINE_TYPE, format!("{e:#}").lines().next().unwrap_or("")))
    };
    Ok(Environment::new(p, &choice, machine_type))
}

/// The context every result carries, so a number never travels without it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    pub migbench_version: String,
    pub qemu_version: String,
    pub qemu_version_line: String,
    pub qemu_path: String,
    /// Where that QEMU came from: the system, the user's choice, or migbench's cache.
    #[serde(default)]
    pub qemu_origin: QemuOrigin,
    /// The destination's QEMU (the same binary as the source's unless said otherwise).
    #[serde(default)]
    pub qemu_destination_version: String,
    #[serde(default)]
    pub qemu_destination_path: String,
    /// The versioned machine type both QEMUs ran, e.g. "pc-i440fx-10.0".
    #[serde(default)]
    pub machine_type: String,
    /// Set when the sender is a QEMU known to corrupt TCG guests (see [`tcg_sender_warning`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_warning: Option<String>,
    pub accel: Accel,
    pub accel_note: String,
    pub host: HostInfo,
    pub guest_image: String,
    pub guest_kernel: String,
    /// The destination's host when it is not this one (`--dest ssh://…`): its
    /// facts, QEMU, clock offset and what differs from this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_host: Option<crate::machine::remote::RemoteRecord>,
}

impl Environment {
    /// This environment for a run whose source runs `source` and destination
    /// `destination`, on `machine_type`: the versions, paths and the TCG sender's
    /// mark are those of this pair.
    pub fn with_qemus(&self, source: &Qemu, destination: &Qemu, machine_type: &str) -> Environment {
        Environment {
            qemu_version: source.version.clone(),
            qemu_version_line: source.version_line.clone(),
            qemu_path: source.path.display().to_string(),
            qemu_origin: source.origin,
            qemu_destination_version: destination.version.clone(),
            qemu_destination_path: destination.path.display().to_string(),
            machine_type: machine_type.to_string(),
            qemu_warning: tcg_sender_warning(source, self.accel),
            ..self.clone()
        }
    }

    /// The QEMU version of a run as tables show it: "10.0.2", or "10.0.2 → 7.2.22"
    /// when the destination ran another version.
    pub fn qemu_label(&self) -> String {
        if self.qemu_destination_version.is_empty() || self.qemu_destination_version == self.qemu_version {
            self.qemu_version.clone()
        } else {
            format!("{} → {}", self.qemu_version, self.qemu_destination_version)
        }
    }

    pub fn new(p: &Platform, accel: &AccelChoice, machine_type: String) -> Environment {
        Environment {
            migbench_version: env!("CARGO_PKG_VERSION").into(),
            qemu_version: p.qemu.version.clone(),
            qemu_version_line: p.qemu.version_line.clone(),
            qemu_path: p.qemu.path.display().to_string(),
            qemu_origin: p.qemu.origin,
            qemu_destination_version: p.qemu.version.clone(),
            qemu_destination_path: p.qemu.path.display().to_string(),
            machine_type,
            qemu_warning: tcg_sender_warning(&p.qemu, accel.accel),
            accel: accel.accel,
            accel_note: accel.note.clone(),
            host: p.host.clone(),
            guest_image: p.image.manifest.key.clone(),
            guest_kernel: format!("{} ({})", p.image.manifest.kernel_release, p.image.manifest.kernel_origin),
            destination_host: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_old_tcg_sender_is_marked() {
        let q = |v: &str| Qemu { path: "/q".into(), version: v.into(), version_line: String::new(), data_dirs: vec![], origin: QemuOrigin::Chosen };
        let w = tcg_sender_warning(&q("8.2.2"), Accel::Tcg).unwrap();
        assert!(w.contains("QEMU 8.2.2 under TCG") && w.contains("corrupts") && w.contains("--qemu"), "{w}");
        assert!(tcg_sender_warning(&q("7.2.22"), Accel::Tcg).is_some());
        assert!(tcg_sender_warning(&q("7.2.22"), Accel::Kvm).is_none(), "the fault is TCG's dirty tracking");
        assert!(tcg_sender_warning(&q("10.0.2"), Accel::Tcg).is_none());
    }
}
