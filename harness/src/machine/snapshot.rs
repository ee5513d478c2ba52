//! A booted guest, saved once and restored for each boot.
//!
//! Under TCG a guest takes seconds from QEMU's start to READY, most of it the
//! kernel booting. So a guest is booted once *parked* (`migbench.park=1`: up, its
//! devices probed, waiting for orders on the guest channel), stopped, and its state
//! saved to a file in the cache with `migrate exec:cat > FILE`. Every later boot of
//! the same hardware starts QEMU with `-incoming defer`, loads that file
//! (`migrate-incoming exec:cat FILE`), and gives the restored guest its orders on
//! the channel; it comes up as if booted with them and says READY. `exec:` works on
//! every QEMU migbench runs (7.2 has no `file:` migration).
//!
//! The file is good only for exactly the QEMU, machine type, guest image and
//! hardware it was saved from, so its name is a hash of all of them: the QEMU
//! binary (path, version, size, modification time), the image's key, the whole
//! QEMU command line of the parked guest, and under KVM the host CPU's flags. Any
//! change makes another file; files unused for [`UNUSED_DAYS`] are removed.
//!
//! Guests with a NIC, guests given a start-up fault and guests on another host boot
//! fresh (their hardware differs per guest, or the file is not there); so does
//! every guest under `--boot fresh`. A run's record says which it was
//! (`guest_booted`).

use super::command::{self, MachinePaths, Role};
use super::hardware::{Accel, GuestSpec, StartFault};
use super::site::{Emulator, Site};
use super::Machine;
use crate::guest::GuestImage;
use crate::host::FileLock;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Snapshot files not used for this many days are removed when another is made.
pub const UNUSED_DAYS: u64 = 14;

/// How guests come up: `--boot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// The kernel boots every time.
    Fresh,
    /// Restored from a saved booted guest where it can be (see the module doc),
    /// fresh otherwise.
    #[default]
    Restore,
}

/// The mode [`Site::local`] starts with: `--boot`, which the command line sets
/// once. A library caller's sites boot fresh unless it says otherwise.
static DEFAULT_MODE: std::sync::Mutex<BootMode> = std::sync::Mutex::new(BootMode::Fresh);

/// Sets the mode sites made from now on start with.
pub fn set_default_mode(mode: BootMode) {
    *DEFAULT_MODE.lock().unwrap_or_else(|e| e.into_inner()) = mode;
}

/// The mode sites made now start with.
pub fn default_mode() -> BootMode {
    *DEFAULT_MODE.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a guest came up, for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Booted {
    /// Its kernel booted (every record before snapshots says so).
    #[default]
    Fresh,
    /// Restored from a snapshot of a booted guest.
    Restored,
}

impl std::fmt::Display for Booted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Booted::Fresh => "fresh",
            Booted::Restored => "restored",
        })
    }
}

/// Why `spec` must boot fresh even under `--boot restore`, if it must.
pub fn fresh_only(spec: &GuestSpec) -> Option<&'static str> {
    if spec.net.is_some() {
        Some("its NIC's address and MAC are its own")
    } else if spec.inject != StartFault::None {
        Some("a start-up fault is injected")
    } else {
        None
    }
}

/// Where snapshots live: `<cache>/snapshots/<key>/state`.
fn root() -> PathBuf {
    crate::host::cache_dir().join("snapshots")
}

/// The guest a snapshot holds: `spec`'s hardware, parked, with no orders.
fn parked(spec: &GuestSpec) -> GuestSpec {
    GuestSpec { park: true, workload: migbench_guest::orders::Workload::Idle, test_orders: false, ..*spec }
}

/// The snapshot's name for `spec` on `emulator` with `image`: a hash of everything
/// a restore must match.
pub fn key(emulator: &Emulator, image: &GuestImage, spec: &GuestSpec) -> String {
    let qemu = &emulator.qemu;
    let mut h = Sha256::new();
    let mut add = |label: &str, value: &str| {
        h.update(label.as_bytes());
        h.update(b"=");
        h.update(value.as_bytes());
        h.update(b"\n");
    };
    add("qemu", &qemu.path.display().to_string());
    add("version", &qemu.version_line);
    if let Ok(md) = std::fs::metadata(&qemu.path) {
        let mtime = md.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        add("binary", &format!("{} {mtime}", md.len()));
    }
    add("image", &image.manifest.key);
    let paths = MachinePaths::new(Path::new("/snapshot"));
    let mut args: Vec<String> = qemu.data_dir_args().into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    args.extend(command::qemu_args(&parked(spec), image, &paths, Role::Boot, "snapshot", None, &emulator.machine));
    add("args", &args.join("\u{1f}"));
    if spec.accel == Accel::Kvm {
        // `-cpu max` under KVM is this host's CPU.
        add("cpu", &crate::host::cpu_flags(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()).join(" "));
    }
    format!("{:x}", h.finalize())[..24].to_string()
}

/// The snapshot for `spec` on `emulator` with `image`, if it has been made: what
/// its directory says about it.
pub fn made(emulator: &Emulator, image: &GuestImage, spec: &GuestSpec) -> Option<SnapshotInfo> {
    let dir = root().join(key(emulator, image, spec));
    if !dir.join("state").exists() {
        return None;
    }
    serde_json::from_str(&std::fs::read_to_string(dir.join("info.json")).ok()?).ok()
}

/// What a snapshot directory says about its file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub qemu_version: String,
    pub machine: String,
    pub image_key: String,
    pub ram_mib: u32,
    pub vcpus: u32,
    pub accel: String,
    pub created_at: String,
    /// QEMU start to PARKED when it was made, and the save itself, ms.
    pub boot_ms: f64,
    pub save_ms: f64,
    pub bytes: u64,
}

/// Boots `spec` as guest `name` on `site` from its snapshot, making the snapshot
/// first if there is none; returns the guest and its QEMU start to READY, ms.
pub(super) async fn boot(site: &Site, emulator: &Emulator, image: &GuestImage, spec: GuestSpec, name: &str, timeout: Duration) -> Result<(Machine, f64)> {
    let dir = root().join(key(emulator, image, &spec));
    let state = dir.join("state");
    if !state.exists() {
        let lock_path = dir.with_extension("lock");
        let _lock = tokio::task::spawn_blocking(move || FileLock::acquire(&lock_path)).await??;
        // Another migbench may have made it while this one waited.
        if !state.exists() {
            make(site, emulator, image, &spec, &dir, &format!("{name}-snap"), timeout).await.context("saving a booted guest for restores (--boot fresh does without)")?;
            prune(&root(), &dir);
        }
    }
    // Its last use, for pruning.
    let _ = std::fs::File::options().write(true).open(&state).and_then(|f| f.set_modified(SystemTime::now()));
    restore(site, emulator, spec, &state, name, timeout).await
}

/// Boots `spec` parked, waits for PARKED, stops it and saves it into `dir/state`
/// (through a temporary name, so a half-written file is never used).
async fn make(site: &Site, emulator: &Emulator, image: &GuestImage, spec: &GuestSpec, dir: &Path, name: &str, timeout: Duration) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("state.{}.tmp", std::process::id()));
    let quoted = shell_quoted(&tmp)?;
    let t0 = Instant::now();
    let mut m = site.start_on(emulator, parked(spec), Role::Boot, name).await?;
    if m.channel.wait_parked(timeout).await.is_none() {
        let why = m.exit_report().unwrap_or_else(|| format!("it did not say PARKED within {} s", timeout.as_secs()));
        let console = m.console_tail(20);
        m.quit().await;
        bail!("the parked guest {name}: {why}. Last console lines:\n{console}");
    }
    let boot_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let saved = save(&m, &quoted, timeout).await;
    let info = SnapshotInfo {
        qemu_version: emulator.qemu.version.clone(),
        machine: emulator.machine.clone(),
        image_key: image.manifest.key.clone(),
        ram_mib: spec.ram_mib,
        vcpus: spec.vcpus,
        accel: spec.accel.to_string(),
        created_at: crate::record::now_rfc3339(),
        boot_ms,
        save_ms: 0.0,
        bytes: 0,
    };
    m.quit().await;
    let save_ms = match saved {
        Ok(ms) => ms,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let bytes = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    if bytes == 0 {
        let _ = std::fs::remove_file(&tmp);
        bail!("QEMU said the save of {name} completed, but {} is empty", tmp.display());
    }
    let info = SnapshotInfo { save_ms, bytes, ..info };
    std::fs::write(dir.join("info.json"), serde_json::to_string_pretty(&info)?)?;
    std::fs::rename(&tmp, dir.join("state")).with_context(|| format!("publishing {}", tmp.display()))?;
    Ok(())
}

/// Stops the guest and saves it with `migrate exec:cat > FILE` at full speed;
/// returns how long the save took, ms.
async fn save(m: &Machine, quoted_path: &str, timeout: Duration) -> Result<f64> {
    let t0 = Instant::now();
    m.qmp.execute(&qapi::qmp::stop {}).await.context("stopping the parked guest")?;
    // QEMU 7.2 caps a migration at 32 MiB/s unless told otherwise.
    m.qmp.execute_json("migrate-set-parameters", serde_json::json!({"max-bandwidth": 1u64 << 40})).await.context("lifting the save's bandwidth cap")?;
    let uri = format!("exec:cat > {quoted_path}");
    m.qmp.execute(&qapi::qmp::migrate { uri: Some(uri), channels: None, detach: None, resume: None }).await.context("saving the parked guest")?;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let info = m.qmp.query_migrate().await.context("query-migrate during the save")?;
        match info.status() {
            "completed" => return Ok(t0.elapsed().as_secs_f64() * 1000.0),
            "failed" | "cancelled" => bail!("QEMU could not save the guest: {}", info.error_desc.clone().unwrap_or_else(|| info.status().to_string())),
            _ if t0.elapsed() >= timeout => bail!("the save did not complete within {} s (status {})", timeout.as_secs(), info.status()),
            _ => {}
        }
    }
}

/// Starts QEMU waiting for an incoming migration, loads `state` into it, gives the
/// guest `spec`'s orders and waits for READY.
async fn restore(site: &Site, emulator: &Emulator, spec: GuestSpec, state: &Path, name: &str, timeout: Duration) -> Result<(Machine, f64)> {
    let quoted = shell_quoted(state)?;
    let mut m = site.start_on(emulator, parked(&spec), Role::Incoming, name).await?;
    let restored = async {
        crate::migration::file::incoming_from(&m, &format!("exec:cat {quoted}"), timeout).await.map_err(|e| anyhow::anyhow!("restoring guest {name} from {}: {e}", state.display()))?;
        // With -incoming (and no -S) QEMU runs the guest once it is loaded.
        let status = m.qmp.execute(&qapi::qmp::query_status {}).await?;
        if status.get("status").and_then(|s| s.as_str()) != Some("running") {
            m.qmp.execute(&qapi::qmp::cont {}).await.context("running the restored guest")?;
        }
        m.channel.give_orders(&command::orders(&spec)).await.context("giving the restored guest its orders")?;
        anyhow::Ok(())
    };
    if let Err(e) = restored.await {
        m.quit().await;
        return Err(e);
    }
    let ready = m.wait_ready(timeout).await?;
    m.spec = spec;
    m.role = Role::Boot;
    m.booted = Booted::Restored;
    let boot_ms = (ready.at - m.started).as_secs_f64() * 1000.0;
    Ok((m, boot_ms))
}

/// `path` in single quotes for `exec:` (QEMU runs it with /bin/sh -c).
fn shell_quoted(path: &Path) -> Result<String> {
    let text = path.to_str().with_context(|| format!("the snapshot path {} is not UTF-8", path.display()))?;
    if text.contains('\'') {
        bail!("the snapshot path {text} holds a single quote, which exec: cannot take: point MIGBENCH_CACHE elsewhere, or use --boot fresh");
    }
    Ok(format!("'{text}'"))
}

/// Removes snapshot directories under `root` other than `keep` whose state was
/// not used for [`UNUSED_DAYS`] (and stale temporary files).
fn prune(root: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let limit = Duration::from_secs(UNUSED_DAYS * 86_400);
    for e in entries.flatten() {
        let dir = e.path();
        if dir == keep || !dir.is_dir() {
            continue;
        }
        let last_use = std::fs::metadata(dir.join("state")).and_then(|m| m.modified()).ok();
        if last_use.is_some_and(|t| t.elapsed().unwrap_or_default() > limit) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
