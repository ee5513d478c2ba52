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
//! binary (path, version, size, modification time), the firmware it loads, the
//! image's key, the whole QEMU command line of the parked guest, and under KVM the
//! host CPU's flags and kernel. Any change makes another file; files unused for
//! [`UNUSED_DAYS`] are removed. A file is used only whole (its length is checked
//! against `info.json`), and one that cannot be made or loaded is discarded while
//! its guest boots fresh.
//!
//! A guest with a NIC restores too. Its snapshot is saved with a NIC of the same
//! kind (a tap with or without a vnet header) but a MAC of no guest's,
//! [`PARKED_NIC`], its interface still down; the restored guest is told its own
//! MAC with its address and takes it before its NIC comes up (virtio-net tells
//! QEMU, whose receive filter then passes it), and the restore is good only when
//! QEMU reports that MAC back (`query-rx-filter`). The QEMU it is restored into
//! has that MAC on its command line too ([`restoring`]), so the frames QEMU sends
//! to announce the loaded guest carry it: guests restored from one snapshot never
//! share a MAC on the test bridge.
//!
//! Guests given a start-up fault and guests on another host boot fresh (their
//! hardware differs per guest, or the file is not there); so does every guest
//! under `--boot fresh` (`machine::boot`). A run's record says which it was
//! (`guest_booted`). The site starts the QEMUs (`Site::boot_on`); this file names,
//! saves and loads the snapshots.

use super::Machine;
use super::boot::Booted;
use super::command::{self, MachinePaths, NicBackend, Role};
use super::hardware::{Accel, GuestSpec, StartFault};
use crate::guest::GuestImage;
use crate::host::{FileLock, Qemu};
use crate::network::GuestNet;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The firmware files a guest's QEMU loads (SeaBIOS, the option ROM that boots
/// `-kernel`, KVM's vAPIC ROM), wherever QEMU may find them.
const FIRMWARE: [&str; 3] = ["bios-256k.bin", "linuxboot_dma.bin", "kvmvapic.bin"];

/// Snapshot files not used for this many days are removed when another is made.
pub const UNUSED_DAYS: u64 = 14;

/// The NIC of a snapshot's parked guest: its MAC (52:54:00:00:00:00) is no
/// guest's, since every guest's address is in 198.18.0.0/15. The parked guest is
/// never given the address.
pub const PARKED_NIC: GuestNet = GuestNet { ip: std::net::Ipv4Addr::UNSPECIFIED, prefix: 0 };

/// Why `spec` must boot fresh even under `--boot restore`, if it must.
pub fn fresh_only(spec: &GuestSpec) -> Option<&'static str> {
    (spec.inject != StartFault::None).then_some("a start-up fault is injected")
}

/// Where snapshots live: `<cache>/snapshots/<key>/state`.
fn root() -> PathBuf {
    crate::host::cache_dir().join("snapshots")
}

/// The guest a snapshot holds: `spec`'s hardware, parked, with no orders, and
/// [`PARKED_NIC`] for its NIC if it has one.
pub(super) fn parked(spec: &GuestSpec) -> GuestSpec {
    let net = spec.net.map(|_| PARKED_NIC);
    GuestSpec { park: true, workload: migbench_guest::orders::Workload::Idle, test_orders: false, net, ..*spec }
}

/// The QEMU a snapshot of `spec` is loaded into: the parked guest's hardware, but
/// with the guest's own MAC on its NIC. The load takes the MAC the guest's device
/// had (the snapshot's) from the file, but the frames QEMU sends to announce the
/// guest once it is loaded (RARP, for the switches) carry the command line's, and
/// a reset of the device goes back to it: neither may carry [`PARKED_NIC`]'s.
pub(super) fn restoring(spec: &GuestSpec) -> GuestSpec {
    GuestSpec { net: spec.net, ..parked(spec) }
}

/// The snapshot's name for `spec` on `qemu` with machine type `machine` and
/// `image`: a hash of everything a restore must match.
pub fn key(qemu: &Qemu, machine: &str, image: &GuestImage, spec: &GuestSpec) -> String {
    let mut h = Sha256::new();
    let mut add = |label: &str, value: &str| {
        h.update(label.as_bytes());
        h.update(b"=");
        h.update(value.as_bytes());
        h.update(b"\n");
    };
    add("qemu", &qemu.path.display().to_string());
    add("version", &qemu.version_line);
    if let Some(id) = size_and_mtime(&qemu.path) {
        add("binary", &id);
    }
    add("image", &image.manifest.key);
    let paths = MachinePaths::new(Path::new("/snapshot"));
    let mut args: Vec<String> = qemu.data_dir_args().into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    // The NIC's kind: a tap QEMU opens (with a vnet header, whose offloads the
    // guest's driver takes on) or one handed to it without (a guest bound for
    // another host); the tap's name and descriptor are the same in every key.
    let nic = if spec.portable_nic { NicBackend::TapFd(super::PASSED_FD) } else { NicBackend::Tap("snapshot") };
    args.extend(command::qemu_args(&parked(spec), image, &paths, Role::Boot, "snapshot", Some(nic), machine));
    add("args", &args.join("\u{1f}"));
    // The firmware QEMU loads into the guest (a system QEMU's can change under an
    // unchanged binary; a restore then fails on a length it does not expect).
    let firmware_dirs = qemu.data_dirs.iter().cloned().chain(["/usr/share/qemu".into(), "/usr/share/seabios".into()]);
    for dir in firmware_dirs {
        for file in FIRMWARE {
            if let Some(id) = size_and_mtime(&dir.join(file)) {
                add("firmware", &format!("{} {id}", dir.join(file).display()));
            }
        }
    }
    if spec.accel == Accel::Kvm {
        // `-cpu max` under KVM is this host's CPU, and the state KVM saves follows
        // the host kernel.
        add("cpu", &crate::host::cpu_flags(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()).join(" "));
        add("kernel", std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim());
    }
    format!("{:x}", h.finalize())[..24].to_string()
}

/// A file's length and modification time (ns), which change when it is replaced.
fn size_and_mtime(path: &Path) -> Option<String> {
    let md = std::fs::metadata(path).ok()?;
    let mtime = md.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    Some(format!("{} {mtime}", md.len()))
}

/// The directory of the snapshot for `spec` (see [`key`]): `state` and `info.json`.
pub fn dir_of(qemu: &Qemu, machine: &str, image: &GuestImage, spec: &GuestSpec) -> PathBuf {
    root().join(key(qemu, machine, image, spec))
}

/// The snapshot for `spec` on `qemu` and `machine` with `image`, if it has been made
/// and is whole (see [`check`]): what its directory says about it.
pub fn made(qemu: &Qemu, machine: &str, image: &GuestImage, spec: &GuestSpec) -> Option<SnapshotInfo> {
    check(&dir_of(qemu, machine, image, spec)).ok()
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

/// Takes the lock held while a snapshot is made or discarded, so that two migbench
/// processes make it once; one that has to wait for another says so.
pub(super) async fn lock(dir: &Path) -> Result<FileLock> {
    let lock_path = dir.with_extension("lock");
    let mut taking = tokio::task::spawn_blocking({
        let lock_path = lock_path.clone();
        move || FileLock::acquire(&lock_path)
    });
    match tokio::time::timeout(Duration::from_secs(1), &mut taking).await {
        Ok(taken) => taken?,
        Err(_) => {
            tracing::warn!("waiting for another migbench to save the snapshot {} (its lock: {})", dir.display(), lock_path.display());
            taking.await?
        }
    }
}

/// Removes a snapshot that could not be made or loaded (the next boot makes it
/// again), with anything half-written in its directory.
pub(super) fn discard(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// The file that is the snapshot, once it passes [`check`].
pub(super) fn state_of(dir: &Path) -> PathBuf {
    dir.join("state")
}

/// What the save wrote about the snapshot in `dir`.
fn info_of(dir: &Path) -> PathBuf {
    dir.join("info.json")
}

/// Whether `dir` holds a whole snapshot: its state as long as `info.json` says
/// the save wrote; returns what `info.json` says. Err says what is wrong.
pub(super) fn check(dir: &Path) -> Result<SnapshotInfo> {
    let info: SnapshotInfo = serde_json::from_str(&std::fs::read_to_string(info_of(dir)).context("reading its info.json")?).context("reading its info.json")?;
    let len = std::fs::metadata(state_of(dir)).context("its state")?.len();
    if len != info.bytes {
        bail!("its state is {len} bytes, but the save wrote {}", info.bytes);
    }
    Ok(info)
}

/// Saves `m`, a parked guest that has said PARKED (`boot_ms` after its QEMU
/// started), into `dir/state` with `info.json` beside it; quits `m` either way and
/// removes snapshots unused for [`UNUSED_DAYS`]. A guest whose console shows
/// kernel trouble is not saved: every guest restored from it would carry it
/// unseen (a restored guest's console starts empty).
pub(super) async fn save(mut m: Machine, image: &GuestImage, dir: &Path, boot_ms: f64, timeout: Duration) -> Result<()> {
    let problems = m.console_problems();
    if !problems.is_empty() {
        let name = m.name.clone();
        m.quit().await;
        bail!("guest {name} showed kernel trouble on its console while it booted: {}", problems.join(" | "));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // cat writes the temporary file and renames it when it has written all; QEMU
    // says `completed` before it closes the pipe, so the harness waits for the rename.
    let tmp = dir.join(format!("state.{}.tmp", std::process::id()));
    let written = dir.join(format!("state.{}.written", std::process::id()));
    let saved = match (shell_quoted(&tmp), shell_quoted(&written)) {
        (Ok(t), Ok(w)) => save_to(&mut m, &format!("cat > {t} && mv {t} {w}"), &written, timeout).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let info = SnapshotInfo {
        qemu_version: m.emulator.qemu.version.clone(),
        machine: m.emulator.machine.clone(),
        image_key: image.manifest.key.clone(),
        ram_mib: m.spec.ram_mib,
        vcpus: m.spec.vcpus,
        accel: m.spec.accel.to_string(),
        created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        boot_ms,
        save_ms: 0.0,
        bytes: 0,
    };
    m.quit().await;
    let published = saved.and_then(|save_ms| {
        let bytes = std::fs::metadata(&written).map(|m| m.len()).unwrap_or(0);
        if bytes == 0 {
            bail!("the save completed, but {} is empty", written.display());
        }
        std::fs::write(info_of(dir), serde_json::to_string_pretty(&SnapshotInfo { save_ms, bytes, ..info })?)?;
        std::fs::rename(&written, state_of(dir)).with_context(|| format!("publishing {}", written.display()))
    });
    for leftover in [&tmp, &written] {
        let _ = std::fs::remove_file(leftover);
    }
    if let Some(root) = dir.parent() {
        prune(root, dir);
    }
    published
}

/// Stops the guest and saves it through `exec:` running `command` at full speed,
/// then waits until `written` exists (the command's last act); returns how long
/// the save took, ms.
async fn save_to(m: &mut Machine, command: &str, written: &Path, timeout: Duration) -> Result<f64> {
    let t0 = Instant::now();
    m.qmp.execute(&qapi::qmp::stop {}).await.context("stopping the parked guest")?;
    // QEMU 7.2 caps a migration at 32 MiB/s unless told otherwise.
    m.qmp.execute_json("migrate-set-parameters", serde_json::json!({"max-bandwidth": 1u64 << 40})).await.context("lifting the save's bandwidth cap")?;
    let uri = format!("exec:{command}");
    m.qmp.execute(&qapi::qmp::migrate { uri: Some(uri), channels: None, detach: None, resume: None }).await.context("saving the parked guest")?;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let info = m.qmp.query_migrate().await.context("query-migrate during the save")?;
        match info.status() {
            "completed" => break,
            "failed" | "cancelled" => bail!("QEMU could not save the guest: {}", info.error_desc.clone().unwrap_or_else(|| info.status().to_string())),
            _ if t0.elapsed() >= timeout => bail!("the save did not complete within {} s (status {})", timeout.as_secs(), info.status()),
            _ => {}
        }
    }
    while !written.exists() {
        if t0.elapsed() >= timeout {
            bail!("QEMU said the save completed, but its writer did not finish within {} s", timeout.as_secs());
        }
        if let Some(exit) = m.exit_report() {
            bail!("QEMU {exit} before the save's writer finished");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(t0.elapsed().as_secs_f64() * 1000.0)
}

/// Loads the snapshot in `dir` into `m` (a QEMU of the parked guest's hardware
/// waiting with `-incoming defer`), gives the guest `spec`'s orders and waits for
/// READY, then checks that the guest took them (it echoes them in a `LOG orders`
/// line); `m` is then `spec`'s guest. Returns its QEMU start to READY, ms.
pub(super) async fn load(m: &mut Machine, dir: &Path, spec: GuestSpec, timeout: Duration) -> Result<f64> {
    check(dir).with_context(|| format!("the snapshot {}", dir.display()))?;
    let state = state_of(dir);
    let quoted = shell_quoted(&state)?;
    // Its last use, for pruning.
    let _ = std::fs::File::options().write(true).open(&state).and_then(|f| f.set_modified(SystemTime::now()));
    m.load_incoming(&format!("exec:cat {quoted}"), timeout).await.map_err(|e| anyhow::anyhow!("restoring guest {} from {}: {e}", m.name, state.display()))?;
    // With -incoming (and no -S) QEMU runs the guest once it is loaded.
    let status = m.qmp.execute(&qapi::qmp::query_status {}).await?;
    if status.get("status").and_then(|s| s.as_str()) != Some("running") {
        m.qmp.execute(&qapi::qmp::cont {}).await.context("running the restored guest")?;
    }
    let orders = command::orders(&spec);
    m.channel.give_orders(&orders).await.context("giving the restored guest its orders")?;
    let ready = m.wait_ready(timeout).await?;
    let echo = format!("{} {}", migbench_guest::orders::TAKEN_LOG, orders.to_cmdline());
    if !m.channel.other_lines().contains(&echo) {
        let took = m.channel.other_lines().into_iter().find(|l| l.starts_with(migbench_guest::orders::TAKEN_LOG));
        bail!("the restored guest {} did not take its orders: sent {:?}, it said {:?}", m.name, orders.to_cmdline(), took.unwrap_or_else(|| "nothing".into()));
    }
    if let Some(net) = spec.net {
        check_mac(m, &net.mac()).await?;
    }
    m.spec = spec;
    m.role = Role::Boot;
    m.booted = Booted::Restored;
    Ok(m.ms_after_start(ready.at))
}

/// The MACs `m`'s NICs pass: `query-rx-filter`'s `main-mac` for each.
pub async fn nic_macs(m: &Machine) -> Result<Vec<String>> {
    let filters = m.qmp.execute_json("query-rx-filter", serde_json::json!({})).await.with_context(|| format!("reading guest {}'s MAC from QEMU", m.name))?;
    Ok(filters.as_array().into_iter().flatten().filter_map(|f| Some(f.get("main-mac")?.as_str()?.to_string())).collect())
}

/// Checks that QEMU's NIC now passes `mac` (the restored guest's own, which it
/// set after waking with [`PARKED_NIC`]'s).
async fn check_mac(m: &Machine, mac: &str) -> Result<()> {
    let macs = nic_macs(m).await?;
    if !macs.iter().any(|m| m.eq_ignore_ascii_case(mac)) {
        bail!("the restored guest {} did not take its MAC {mac}: QEMU's NIC passes {macs:?}", m.name);
    }
    Ok(())
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
/// not used for [`UNUSED_DAYS`], directories a save left without a state a day
/// ago, and their lock files.
fn prune(root: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let unused = Duration::from_secs(UNUSED_DAYS * 86_400);
    let abandoned = Duration::from_secs(86_400);
    let age = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok().map(|t| t.elapsed().unwrap_or_default());
    for e in entries.flatten() {
        let dir = e.path();
        if dir == keep || !dir.is_dir() {
            continue;
        }
        let stale = match age(&state_of(&dir)) {
            Some(a) => a > unused,
            None => age(&dir).is_some_and(|a| a > abandoned),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(dir.with_extension("lock"));
        }
    }
}
