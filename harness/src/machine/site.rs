//! Where QEMUs run: this host, or a remote host reached over SSH with
//! `migbench agent` on the far side (`machine::remote`), without its callers
//! changing.
//!
//! A [`Site`] owns what its QEMUs need there: the run directory their sockets and
//! logs go in, and the test network namespace they run in when guests need one. It
//! is the only code that starts a [`Machine`]. Dropping it kills the QEMUs it
//! started that still run, removes its run directory and lets its namespace go.

use super::command::{MACHINE_TYPE, Role};
use super::hardware::{Accel, GuestSpec};
use super::remote::RemoteHost;
use super::run_dir::RunDir;
use super::boot::{self, BootMode};
use super::snapshot;
use super::{Machine, is_live, kill_if_live};
use crate::guest::GuestImage;
use crate::host::Qemu;
use crate::network::Network;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The QEMU a machine runs on and the machine type it is given: the same on both
/// sides of a migration between one QEMU, the older side's versioned type across
/// two versions.
#[derive(Debug, Clone, PartialEq)]
pub struct Emulator {
    pub qemu: Qemu,
    /// "pc", or a versioned type such as "pc-i440fx-7.2".
    pub machine: String,
}

impl Emulator {
    /// `qemu` with its newest i440FX machine ("pc").
    pub fn newest(qemu: &Qemu) -> Emulator {
        Emulator { qemu: qemu.clone(), machine: MACHINE_TYPE.into() }
    }

    /// The source's and the destination's emulators for a migration from `source`
    /// to `destination`: one QEMU keeps "pc"; two versions run the older one's
    /// versioned machine type on both sides. Returns them with the versioned type
    /// that ran (for the record).
    pub fn pair(source: &Qemu, destination: &Qemu) -> Result<(Emulator, Emulator, String)> {
        let versioned = crate::host::common_machine_type(source, destination, MACHINE_TYPE)?;
        let machine = if source.path == destination.path { MACHINE_TYPE.to_string() } else { versioned.clone() };
        Ok((Emulator { qemu: source.clone(), machine: machine.clone() }, Emulator { qemu: destination.clone(), machine }, versioned))
    }

    /// [`Emulator::pair`] from `source` here to a remote host's QEMU: both sides run
    /// the older one's versioned machine type (two hosts never share a binary).
    pub fn pair_with(source: &Qemu, remote: &RemoteHost) -> Result<(Emulator, Emulator, String)> {
        let destination = &remote.facts.qemu;
        let versioned = crate::host::common_machine_type_of((source, &source.machine_help()?), (destination, &remote.facts.machine_help), MACHINE_TYPE)?;
        Ok((Emulator { qemu: source.clone(), machine: versioned.clone() }, Emulator { qemu: destination.clone(), machine: versioned.clone() }, versioned))
    }
}

/// A place QEMUs run, with their run directory and (if asked for) test network.
/// A machine does not outlive its site.
pub struct Site {
    place: Place,
    /// The process groups of the QEMUs started here that may still run.
    started: Mutex<Vec<i32>>,
    /// How [`Site::boot`] brings guests up: [`boot::default_mode`] when made.
    boot_mode: BootMode,
}

/// The kinds of site: one variant per way of reaching the host.
enum Place {
    Local(Local),
    Remote(Remote),
}

/// Another host, through its agent: the QEMUs run there; their QMP and guest
/// channel sockets are forwarded into a run directory here.
struct Remote {
    host: Arc<RemoteHost>,
    dir: RunDir,
    /// This host's test network, where a far guest's NIC keeps its port.
    network: Option<Network>,
}

/// This host: its QEMU binary and guest image, a run directory of its own and,
/// when the guests need one, a test network.
struct Local {
    qemu: Qemu,
    image: GuestImage,
    network: Option<Network>,
    dir: RunDir,
}

impl Site {
    /// This host, with a fresh run directory, and a test network of its own when
    /// `test_network` (every QEMU then runs in its namespace, NIC or not: their
    /// migration over TCP runs on its loopback, which a fault can cut).
    pub fn local(qemu: &Qemu, image: &GuestImage, test_network: bool) -> Result<Site> {
        let dir = RunDir::new()?;
        let network = if test_network { Some(Network::create()?) } else { None };
        let local = Local { qemu: qemu.clone(), image: image.clone(), network, dir };
        Ok(Site { place: Place::Local(local), started: Mutex::new(Vec::new()), boot_mode: boot::default_mode() })
    }

    /// A remote host (connected with [`RemoteHost::connect`]); its sockets are
    /// forwarded into a fresh run directory here, and a guest's NIC has its port on
    /// `network` (the local site's test network) here.
    pub fn remote(host: Arc<RemoteHost>, network: Option<Network>) -> Result<Site> {
        Ok(Site { place: Place::Remote(Remote { host, dir: RunDir::new()?, network }), started: Mutex::new(Vec::new()), boot_mode: BootMode::Fresh })
    }

    /// Boots guests as `mode` says from now on (`--boot`). A remote site always
    /// boots fresh: the snapshots are in this host's cache.
    pub fn set_boot_mode(&mut self, mode: BootMode) {
        self.boot_mode = mode;
    }

    /// The site's test network, if it has one.
    pub fn network(&self) -> Option<&Network> {
        match &self.place {
            Place::Local(l) => l.network.as_ref(),
            Place::Remote(_) => None,
        }
    }

    /// The run directory here (a remote site's holds its forwarded sockets).
    pub fn dir(&self) -> &Path {
        match &self.place {
            Place::Local(l) => l.dir.path(),
            Place::Remote(r) => r.dir.path(),
        }
    }

    /// A new directory for machine `name`'s sockets and logs.
    fn machine_dir(&self, name: &str) -> Result<PathBuf> {
        match &self.place {
            Place::Local(l) => l.dir.machine_dir(name),
            Place::Remote(r) => r.dir.machine_dir(name),
        }
    }

    /// The site's own QEMU with its newest machine type.
    pub fn emulator(&self) -> Emulator {
        match &self.place {
            Place::Local(l) => Emulator::newest(&l.qemu),
            Place::Remote(r) => Emulator::newest(&r.host.facts.qemu),
        }
    }

    /// Starts QEMU for guest `name` on the site's own QEMU and connects to it; does
    /// not wait for the guest (see [`Machine::wait_ready`]). `name` is unique within
    /// the site: it names the QEMU (`-name migbench-NAME`), its directory, its tap
    /// and its cgroup.
    pub async fn start(&self, spec: GuestSpec, role: Role, name: &str) -> Result<Machine> {
        self.start_on(&self.emulator(), spec, role, name).await
    }

    /// [`Site::start`] on another QEMU or machine type (a QEMU version axis,
    /// a migration across versions).
    pub async fn start_on(&self, emulator: &Emulator, spec: GuestSpec, role: Role, name: &str) -> Result<Machine> {
        let dir = self.machine_dir(name)?;
        let m = match &self.place {
            Place::Local(l) => Machine::start(emulator, &l.image, spec, role, &dir, name, l.network.as_ref()).await?,
            // The agent kills its QEMUs when the connection ends.
            Place::Remote(r) => return Machine::start_remote(&r.host, emulator, spec, role, &dir, name, r.network.as_ref()).await,
        };
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        // Only those that may still run: a long sweep starts thousands.
        started.retain(|&pgid| is_live(pgid));
        started.push(m.pid() as i32);
        Ok(m)
    }

    /// Starts guest `name` and waits up to `timeout` for its READY; returns it with
    /// its boot time (QEMU start to READY, ms).
    pub async fn boot(&self, spec: GuestSpec, name: &str, timeout: Duration) -> Result<(Machine, f64)> {
        self.boot_on(&self.emulator(), spec, name, timeout).await
    }

    /// [`Site::boot`] on another QEMU or machine type.
    pub async fn boot_on(&self, emulator: &Emulator, spec: GuestSpec, name: &str, timeout: Duration) -> Result<(Machine, f64)> {
        if let (BootMode::Restore, Place::Local(l), None) = (self.boot_mode, &self.place, snapshot::fresh_only(&spec)) {
            return self.boot_restored(emulator, &l.image, spec, name, timeout).await;
        }
        self.boot_fresh(emulator, spec, name, timeout).await
    }

    /// Starts guest `name` booting its kernel and waits for its READY.
    async fn boot_fresh(&self, emulator: &Emulator, spec: GuestSpec, name: &str, timeout: Duration) -> Result<(Machine, f64)> {
        let mut m = self.start_on(emulator, spec, Role::Boot, name).await?;
        let ready = m.wait_ready(timeout).await?;
        let boot_ms = m.ms_after_start(ready.at);
        Ok((m, boot_ms))
    }
}

impl Site {
    /// Boots `spec` from its snapshot (`machine::snapshot`), making the snapshot
    /// first when there is none. A snapshot that cannot be made or loaded is
    /// discarded (the next boot makes it again) and this guest boots fresh, with a
    /// warning; its record says `fresh`.
    async fn boot_restored(&self, emulator: &Emulator, image: &GuestImage, spec: GuestSpec, name: &str, timeout: Duration) -> Result<(Machine, f64)> {
        let dir = snapshot::dir_of(&emulator.qemu, &emulator.machine, image, &spec);
        match self.try_restore(emulator, image, spec, name, &dir, timeout).await {
            Ok(booted) => Ok(booted),
            Err(e) => {
                tracing::warn!("guest {name} boots fresh: {e:#}");
                if let Ok(_lock) = snapshot::lock(&dir).await {
                    snapshot::discard(&dir);
                }
                // Under a name of its own: the failed restore's directory is still there.
                self.boot_fresh(emulator, spec, &format!("{name}-fresh"), timeout).await
            }
        }
    }

    /// [`Site::boot_restored`] without the fallback.
    async fn try_restore(&self, emulator: &Emulator, image: &GuestImage, spec: GuestSpec, name: &str, dir: &Path, timeout: Duration) -> Result<(Machine, f64)> {
        if !snapshot::state_of(dir).exists() {
            let _lock = snapshot::lock(dir).await?;
            // Another migbench may have made it while this one waited.
            if !snapshot::state_of(dir).exists() {
                let mut parked = self.start_on(emulator, snapshot::parked(&spec), Role::Boot, &format!("{name}-snap")).await?;
                let at = match parked.wait_parked(timeout).await {
                    Ok(at) => at,
                    Err(e) => {
                        parked.quit().await;
                        return Err(e.context(format!("booting guest {name}'s snapshot")));
                    }
                };
                let boot_ms = parked.ms_after_start(at);
                snapshot::save(parked, image, dir, boot_ms, timeout).await.with_context(|| format!("saving guest {name}'s snapshot"))?;
            }
        }
        let mut m = self.start_on(emulator, snapshot::restoring(&spec), Role::Incoming, name).await?;
        match snapshot::load(&mut m, dir, spec, timeout).await {
            Ok(boot_ms) => Ok((m, boot_ms)),
            Err(e) => {
                m.quit().await;
                Err(e)
            }
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Before the run directory and the namespace go (the fields drop after this).
        for pgid in self.started.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
            kill_if_live(pgid);
        }
    }
}

/// Whether KVM really runs a guest on this host: boots one under `-accel kvm` and
/// waits for READY. `/dev/kvm` existing proves nothing (here it exists and a guest
/// never gets to run).
pub async fn probe_kvm(qemu: &Qemu, image: &GuestImage, timeout: Duration) -> Result<Duration, String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    let site = Site::local(qemu, image, false).map_err(|e| format!("{e:#}"))?;
    let spec = GuestSpec::new(128, 1, Accel::Kvm).expect("a valid probe spec");
    let mut m = site.start(spec, Role::Boot, "kvm-probe").await.map_err(|e| one_line(&format!("{e:#}")))?;
    let r = m.wait_ready(timeout).await.map(|_| m.started.elapsed()).map_err(|e| one_line(&format!("{e:#}")));
    drop(m);
    r
}

/// A multi-line error (with QEMU's and the console's lines) folded into one line for a note.
fn one_line(text: &str) -> String {
    let folded = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ");
    if folded.chars().count() > 300 { folded.chars().take(300).collect::<String>() + " …" } else { folded }
}
