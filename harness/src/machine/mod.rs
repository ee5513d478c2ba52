//! A guest's hardware and the QEMU process that runs it: the command line, start,
//! readiness, stop. A QEMU started here never outlives the harness: it runs in its
//! own process group, is killed and reaped on drop (so on every error path), is
//! killed by the signal handler on Ctrl-C/SIGTERM (see [`kill_all`]), and gets
//! SIGKILL from the kernel if the harness itself is SIGKILLed (PR_SET_PDEATHSIG).

pub mod cgroup;
pub mod dirty_rate;
pub mod stale;
pub mod usage;

use crate::guest::channel::Ready;
use crate::guest::{GuestChannel, GuestImage};
use crate::host::Qemu;
use crate::network::{GuestNet, Network, Tap};
use crate::qmp::{Features, Qmp};
use migbench_guest::orders::{Orders, Workload};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// Heartbeat period the guest is told to use.
pub const HEARTBEAT_MS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// What the user asked for; `Auto` means KVM if a guest really runs under it, else TCG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccelRequest {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl FromStr for AccelRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AccelRequest::Auto),
            "kvm" => Ok(AccelRequest::Kvm),
            "tcg" => Ok(AccelRequest::Tcg),
            _ => Err(format!("accelerator {s:?} is not one of auto, kvm, tcg")),
        }
    }
}

impl fmt::Display for AccelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelRequest::Auto => "auto",
            AccelRequest::Kvm => "kvm",
            AccelRequest::Tcg => "tcg",
        })
    }
}

/// A guest's hardware, and the workload it boots into.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuestSpec {
    pub ram_mib: u32,
    pub vcpus: u32,
    pub accel: Accel,
    #[serde(default = "idle")]
    pub workload: Workload,
    /// The guest's NIC on the test network (none: no network device at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<GuestNet>,
    /// A start-up fault to inject (the record's scenario says which; not recorded here).
    #[serde(skip)]
    pub inject: StartFault,
    /// The guest obeys test-only orders (a test's own memory corruption). Only tests
    /// set it; nothing a user runs can.
    #[serde(skip)]
    pub test_orders: bool,
}

/// Faults that strike when a QEMU starts (`crate::migration::scenario::Fault` has them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFault {
    #[default]
    None,
    /// QEMU gets an option it does not know, and refuses to start.
    BadQemuOption,
    /// The kernel is told to run an init that does not exist: it panics, never READY.
    NeverReady,
}

/// The option `StartFault::BadQemuOption` adds.
pub const BAD_QEMU_OPTION: &str = "-migbench-no-such-option";

fn idle() -> Workload {
    Workload::Idle
}

pub const MIN_RAM_MIB: u32 = 64;
pub const MAX_RAM_MIB: u32 = 1 << 20;
pub const MAX_VCPUS: u32 = 255;

impl GuestSpec {
    pub fn new(ram_mib: u32, vcpus: u32, accel: Accel) -> Result<GuestSpec> {
        if !(MIN_RAM_MIB..=MAX_RAM_MIB).contains(&ram_mib) {
            bail!(
                "--ram {ram_mib}: guest RAM is given in MiB and must be between {MIN_RAM_MIB} and {MAX_RAM_MIB} \
                 (the guest kernel needs at least {MIN_RAM_MIB} MiB); try --ram 256"
            );
        }
        if !(1..=MAX_VCPUS).contains(&vcpus) {
            bail!("--vcpus {vcpus}: a guest has 1 to {MAX_VCPUS} vCPUs; try --vcpus 1");
        }
        Ok(GuestSpec { ram_mib, vcpus, accel, workload: Workload::Idle, net: None, inject: StartFault::None, test_orders: false })
    }

    pub fn with_workload(self, workload: Workload) -> GuestSpec {
        GuestSpec { workload, ..self }
    }

    /// The same guest with a NIC on the test network.
    pub fn with_net(self, net: GuestNet) -> GuestSpec {
        GuestSpec { net: Some(net), ..self }
    }

    /// Checks that the workload fits: a memory dirtier's working set must leave the
    /// guest kernel and init at least 64 MiB.
    pub fn check(&self) -> Result<(), String> {
        if let Workload::Http { store_mib } = self.workload {
            let room = self.ram_mib.saturating_sub(64);
            if store_mib > room {
                return Err(format!(
                    "workload {}: a {store_mib} MiB store does not fit a {} MiB guest; keep it at most RAM − 64 MiB (here {room})",
                    self.workload, self.ram_mib
                ));
            }
        }
        if let Workload::MemDirty { mib, .. } = self.workload {
            let room = self.ram_mib.saturating_sub(64);
            if mib > room {
                return Err(format!(
                    "workload {}: a {mib} MiB working set does not fit a {} MiB guest; keep it at most RAM − 64 MiB (here {room})",
                    self.workload, self.ram_mib
                ));
            }
        }
        Ok(())
    }
}

/// The balloon's effect before a migration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Balloon {
    /// How much the balloon was asked to take, MiB.
    pub requested_mib: u32,
    /// The guest's memory as QEMU reports it afterwards (`query-balloon` actual), MiB.
    pub guest_mib: f64,
    /// RAM taken from the guest, MiB: pages that migration need not copy.
    pub saved_mib: f64,
}

/// Whether QEMU boots the guest or waits for an incoming migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Boot,
    /// `-incoming defer`: the URI is given later with `migrate-incoming`.
    Incoming,
}

/// The files of one QEMU inside its run directory.
#[derive(Debug, Clone)]
pub struct MachinePaths {
    pub dir: PathBuf,
    pub qmp: PathBuf,
    pub channel: PathBuf,
    pub console: PathBuf,
    pub stderr: PathBuf,
}

impl MachinePaths {
    pub fn new(dir: &Path) -> MachinePaths {
        MachinePaths {
            dir: dir.into(),
            qmp: dir.join("qmp.sock"),
            channel: dir.join("channel.sock"),
            console: dir.join("console.log"),
            stderr: dir.join("qemu.stderr"),
        }
    }
}

/// The machine type every guest runs: the newest i440FX machine of the QEMU (the
/// record names the versioned type it stood for).
pub const MACHINE_TYPE: &str = "pc";

/// The guest kernel's command line, with the guest's orders.
pub fn kernel_cmdline(spec: &GuestSpec) -> String {
    let orders = Orders { heartbeat_ms: HEARTBEAT_MS, workload: spec.workload, ip: spec.net.map(|n| (n.ip, n.prefix)), test_orders: spec.test_orders };
    // loglevel=5 prints warnings and Oops/BUG reports (KERN_DEFAULT) but not the
    // chatty boot log, which would slow a TCG boot down over the emulated UART.
    let mut line = format!("console=ttyS0 loglevel=5 panic=-1 rdinit=/init mitigations=off {}", orders.to_cmdline());
    if spec.inject == StartFault::NeverReady {
        // The last rdinit= wins.
        line.push_str(" rdinit=/migbench-no-such-init");
    }
    line
}

/// A path as a QEMU option value: commas are doubled (QEMU's escape).
fn opt_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// Unix socket paths must fit `sun_path` (108 bytes with the NUL).
pub fn check_socket_path(p: &Path) -> Result<()> {
    let len = p.as_os_str().len();
    if len >= 108 {
        bail!(
            "the socket path {} is {len} bytes, over the 107 a unix socket allows: \
             point TMPDIR (or XDG_RUNTIME_DIR) at a shorter directory",
            p.display()
        );
    }
    Ok(())
}

/// The QEMU arguments for a guest. Source and destination get the same hardware;
/// only `-incoming` differs, as migration requires.
/// `tap` is the guest NIC's tap device on the test network (used when `spec.net` is set).
pub fn qemu_args(spec: &GuestSpec, image: &GuestImage, paths: &MachinePaths, role: Role, name: &str, tap: Option<&str>) -> Vec<String> {
    let p = opt_path;
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("migbench-{name},debug-threads=on"),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-machine".into(),
        MACHINE_TYPE.into(),
        "-accel".into(),
        spec.accel.to_string(),
        "-cpu".into(),
        "max".into(),
        "-m".into(),
        spec.ram_mib.to_string(),
        "-smp".into(),
        spec.vcpus.to_string(),
        "-kernel".into(),
        p(&image.kernel),
        "-initrd".into(),
        p(&image.initramfs),
        "-append".into(),
        kernel_cmdline(spec),
        "-chardev".into(),
        format!("socket,id=qmp,path={},server=on,wait=off", p(&paths.qmp)),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
        "-chardev".into(),
        format!("file,id=console,path={}", p(&paths.console)),
        "-serial".into(),
        "chardev:console".into(),
        "-device".into(),
        "virtio-serial-pci,id=vser0".into(),
        "-chardev".into(),
        format!("socket,id=channel,path={},server=on,wait=off", p(&paths.channel)),
        "-device".into(),
        format!("virtserialport,bus=vser0.0,chardev=channel,name={}", migbench_guest::protocol::PORT_NAME),
        "-device".into(),
        "virtio-balloon-pci,id=balloon0".into(),
        // A guest that panics or reboots ends QEMU instead of looping.
        "-no-reboot".into(),
    ];
    if spec.inject == StartFault::BadQemuOption {
        a.push(BAD_QEMU_OPTION.into());
    }
    if let (Some(net), Some(tap)) = (spec.net, tap) {
        // The tap exists already (the harness made it on the bridge): QEMU only opens it.
        // `romfile=` leaves out the PXE option ROM: the kernel is booted directly, and
        // the ROM's package is not always installed.
        a.extend([
            "-netdev".into(),
            format!("tap,id=net0,ifname={tap},script=no,downscript=no"),
            "-device".into(),
            format!("virtio-net-pci,netdev=net0,mac={},romfile=", net.mac()),
        ]);
    }
    if role == Role::Incoming {
        a.extend(["-incoming".into(), "defer".into()]);
    }
    a
}

/// Where run directories go: `$XDG_RUNTIME_DIR` when it is a directory, else the
/// temporary directory (`$TMPDIR`, else /tmp). A new one goes in the first; all are
/// searched for the run directories of migbench processes that no longer run.
pub fn run_dir_bases() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|d| d.is_dir()).into_iter().collect();
    let tmp = std::env::temp_dir();
    if !bases.contains(&tmp) {
        bases.push(tmp);
    }
    bases
}

/// A private run directory (mode 0700) holding sockets and logs; removed on drop.
/// Its name, `migbench-run-<pid>-XXXXXX`, says whose it is: when that process was
/// SIGKILLed, the next migbench removes it (see [`crate::machine::stale`]).
pub struct RunDir {
    dir: tempfile::TempDir,
    /// Held for the directory's whole life: a later migbench that can take it knows
    /// the owner is gone (exactly, whatever the pid or the clock say).
    _owner: crate::host::FileLock,
}

/// The lock file in a run directory that its migbench holds while it runs.
pub const RUN_DIR_LOCK: &str = "owner.lock";

impl RunDir {
    pub fn new() -> Result<RunDir> {
        let base = run_dir_bases().remove(0);
        use std::os::unix::fs::PermissionsExt;
        // Private: sockets inside give control of the guests. Unix socket paths must
        // stay under 108 bytes, so the name is short.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}{}-", crate::machine::stale::RUN_DIR_PREFIX, std::process::id()))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .with_context(|| format!("creating a run directory in {}", base.display()))?;
        let lock = dir.path().join(RUN_DIR_LOCK);
        let owner = crate::host::FileLock::acquire(&lock)?;
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).with_context(|| format!("making {} private", lock.display()))?;
        Ok(RunDir { dir, _owner: owner })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A 0700 subdirectory for one machine.
    pub fn machine_dir(&self, name: &str) -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let d = self.dir.path().join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }
}

/// Process groups of the QEMUs alive now, for the signal handler.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// How many QEMUs this process has running now.
pub fn live_count() -> usize {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Kills every QEMU this process started (the Ctrl-C/SIGTERM path).
pub fn kill_all() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for pgid in live {
        // SAFETY: signalling a process group we created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Spawns from one long-lived thread: PR_SET_PDEATHSIG fires when the *thread*
/// that forked the child exits, so forking from a short-lived runtime thread would
/// kill QEMU early.
fn spawn(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<Mutex<mpsc::Sender<Job>>> = std::sync::OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("migbench-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the process-spawner thread");
        Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::channel();
    tx.lock().unwrap().send((cmd, rtx)).map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    rrx.recv().map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// A running QEMU and its two connections.
pub struct Machine {
    pub name: String,
    pub spec: GuestSpec,
    pub role: Role,
    pub paths: MachinePaths,
    pub qmp: Qmp,
    pub channel: GuestChannel,
    pub started: Instant,
    child: Child,
    /// Present once a CPU cap or core limit was set; removed after QEMU is reaped.
    cgroup: Option<cgroup::CpuCgroup>,
    features: std::sync::OnceLock<Features>,
    /// The NIC's tap on the test network; removed after QEMU is gone (field order).
    _tap: Option<Tap>,
}

impl Machine {
    /// Starts QEMU and connects to its QMP and guest channel; does not wait for
    /// the guest (see [`Machine::wait_ready`]).
    pub async fn start(qemu: &Qemu, image: &GuestImage, spec: GuestSpec, role: Role, dir: &Path, name: &str) -> Result<Machine> {
        Machine::start_in(qemu, image, spec, role, dir, name, None).await
    }

    /// [`Machine::start`], with the guest's NIC (if `spec.net` is set) on a tap of
    /// `network`; QEMU runs inside the network's namespace.
    pub async fn start_in(
        qemu: &Qemu,
        image: &GuestImage,
        spec: GuestSpec,
        role: Role,
        dir: &Path,
        name: &str,
        network: Option<&Network>,
    ) -> Result<Machine> {
        let (tap, nic) = match (spec.net, network) {
            (None, _) => (None, None),
            (Some(_), None) => bail!("guest {name} has a NIC ({}) but no test network was made for it", spec.net.map(|n| n.ip.to_string()).unwrap_or_default()),
            (Some(_), Some(net)) => {
                let tap = net.add_tap(&format!("mb-{name}"))?;
                let nic = net.nic(&tap);
                (Some(tap), Some(nic))
            }
        };
        let paths = MachinePaths::new(dir);
        for sock in [&paths.qmp, &paths.channel, &paths.dir.join("migrate.sock")] {
            check_socket_path(sock)?;
        }
        let stderr = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::File::options().write(true).create(true).truncate(true).mode(0o600).open(&paths.stderr)
        }
        .with_context(|| format!("creating {}", paths.stderr.display()))?;
        let mut cmd = Command::new(&qemu.path);
        cmd.args(qemu.data_dir_args());
        cmd.args(qemu_args(&spec, image, &paths, role, name, nic.as_ref().map(|n| n.tap.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        // Every QEMU of a sweep with a test network runs in it (a NIC or not): their
        // migration over TCP then runs on its loopback, which a fault can cut.
        let netns = network.map(|n| n.namespace_fd());
        // SAFETY: prctl, umask and setns are async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // QEMU's sockets and console log are for their owner only (0700/0600),
                // whatever the caller's umask, inside a directory that is already 0700.
                libc::umask(0o077);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Into the test network's namespace, where the tap is.
                if let Some(fd) = netns {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = spawn(cmd).with_context(|| format!("starting {}", qemu.path.display()))?;
        let pid = child.id() as i32;
        LIVE.lock().unwrap().insert(pid);
        let guard = KillOnDrop(Some(pid));

        let connect = async {
            let qmp = Qmp::connect(&paths.qmp, name, Duration::from_secs(30)).await?;
            let channel = GuestChannel::connect(&paths.channel, Duration::from_secs(10)).await?;
            anyhow::Ok((qmp, channel))
        };
        // A QEMU that dies at once (a bad option, a bad kernel) must not cost the
        // connect timeouts: watch the process while connecting.
        let exited = async {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Ok(Some(status)) = child.try_wait() {
                    return status;
                }
            }
        };
        let connected = tokio::select! {
            r = connect => r,
            status = exited => Err(anyhow::anyhow!("QEMU exited ({status})")),
        };
        let (qmp, channel) = match connected {
            Ok(c) => c,
            Err(e) => {
                let status = child.try_wait().ok().flatten();
                let stderr = tail(&paths.stderr, 10);
                drop(guard);
                let _ = child.wait();
                let how = match status {
                    Some(s) => format!("QEMU exited ({s})"),
                    None => "QEMU did not answer".to_string(),
                };
                bail!("{how} while starting guest {name}.\nQEMU said:\n{stderr}\n(QMP: {e:#})");
            }
        };
        std::mem::forget(guard);
        Ok(Machine { name: name.into(), spec, role, paths, qmp, channel, started, child, cgroup: None, features: Default::default(), _tap: tap })
    }

    /// Starts a guest and waits for READY; returns it with its boot time (QEMU
    /// start to READY, ms).
    pub async fn boot(qemu: &Qemu, image: &GuestImage, spec: GuestSpec, dir: &Path, name: &str, timeout: Duration) -> Result<(Machine, f64)> {
        Machine::boot_in(qemu, image, spec, dir, name, timeout, None).await
    }

    /// [`Machine::boot`] on the test network (see [`Machine::start_in`]).
    pub async fn boot_in(
        qemu: &Qemu,
        image: &GuestImage,
        spec: GuestSpec,
        dir: &Path,
        name: &str,
        timeout: Duration,
        network: Option<&Network>,
    ) -> Result<(Machine, f64)> {
        let mut m = Machine::start_in(qemu, image, spec, Role::Boot, dir, name, network).await?;
        let ready = m.wait_ready(timeout).await?;
        let boot_ms = (ready.at - m.started).as_secs_f64() * 1000.0;
        Ok((m, boot_ms))
    }

    /// What this QEMU offers, read from its schema once and kept.
    pub async fn features(&self) -> Result<&Features> {
        if let Some(f) = self.features.get() {
            return Ok(f);
        }
        let f = self.qmp.features().await?;
        Ok(self.features.get_or_init(|| f))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Caps this QEMU's CPU (`cap_percent`, % of one host CPU) and restricts it to
    /// host cores `0..cores`; `None` lifts a limit. Takes effect at once, while the
    /// guest runs.
    pub fn set_cpu_limits(&mut self, cap_percent: Option<u32>, cores: Option<u32>) -> Result<()> {
        if self.cgroup.is_none() {
            if cap_percent.is_none() && cores.is_none() {
                return Ok(());
            }
            let mut cg = cgroup::CpuCgroup::create(&format!("{}-{}", self.name, self.child.id()))?;
            cg.add(self.child.id())?;
            self.cgroup = Some(cg);
        }
        let cg = self.cgroup.as_mut().expect("just created");
        cg.set_cap(cap_percent)?;
        cg.set_cores(cores)?;
        Ok(())
    }

    /// Inflates the virtio balloon by `balloon_mib` (taking that much memory from
    /// the guest; `None` or 0 deflates it fully) and waits up to 10 s for the guest
    /// to follow. Returns what the guest gave up.
    pub async fn set_balloon(&self, balloon_mib: Option<u32>) -> Result<Balloon> {
        let ram = self.spec.ram_mib as u64;
        let requested = balloon_mib.unwrap_or(0) as u64;
        if requested >= ram {
            bail!("balloon_mib = {requested}: must be less than the guest's RAM ({ram} MiB)");
        }
        let target = (ram - requested) * 1024 * 1024;
        self.qmp.execute(&qapi::qmp::balloon { value: target as i64 }).await.context("setting the balloon target")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut actual = ram * 1024 * 1024;
        loop {
            if let Ok(v) = self.qmp.execute(&qapi::qmp::query_balloon {}).await {
                actual = v.get("actual").and_then(serde_json::Value::as_u64).unwrap_or(actual);
            }
            // Within 1 MiB of the target, or out of time: the guest may refuse pages it needs.
            if actual.abs_diff(target) <= 1024 * 1024 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let actual_mib = actual as f64 / 1048576.0;
        Ok(Balloon { requested_mib: requested as u32, guest_mib: actual_mib, saved_mib: ram as f64 - actual_mib })
    }

    /// Whether the QEMU process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How this QEMU ended and its last words, "exited (signal: 9 (SIGKILL)); it
    /// said: …" (the last lines of its stderr), or `None` while it runs.
    pub fn exit_report(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        Some(format!("exited ({status}); it said: {}", tail(&self.paths.stderr, 5).replace('\n', " | ")))
    }

    /// Waits for the guest's READY; the error quotes the guest console's last lines.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Ready> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.channel.wait_ready(Duration::from_millis(100)).await {
                return Ok(r);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "QEMU for guest {} exited ({status}) before the guest said READY.\nQEMU said:\n{}\nLast console lines:\n{}",
                    self.name,
                    tail(&self.paths.stderr, 10),
                    tail(&self.paths.console, 20)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "guest {} did not say READY within {} s ({} accelerator). Last console lines:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.spec.accel,
                    tail(&self.paths.console, 20)
                );
            }
        }
    }

    /// The console's last `n` lines.
    pub fn console_tail(&self, n: usize) -> String {
        tail(&self.paths.console, n)
    }

    /// Kernel trouble on the console: Oops, BUG, panic, … (each a line).
    pub fn console_problems(&self) -> Vec<String> {
        console_problems(&std::fs::read_to_string(&self.paths.console).unwrap_or_default())
    }

    /// Asks QEMU to quit, waits a little, then kills it.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.qmp.execute(&qapi::qmp::quit {})).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.is_running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Drop kills whatever is left and reaps.
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        drop(KillOnDrop(Some(self.child.id() as i32)));
        let _ = self.child.wait();
    }
}

/// Kills a process group and forgets it in [`LIVE`].
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: signalling a process group we created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&pgid);
        }
    }
}

/// Patterns of a sick guest kernel on its console.
const PROBLEM_MARKERS: &[&str] =
    &["Oops", "BUG:", "Kernel panic", "general protection fault", "Call Trace:", "RIP:", "watchdog: BUG", "segfault"];

pub fn console_problems(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|l| PROBLEM_MARKERS.iter().any(|m| l.contains(m)))
        .map(|l| l.trim().to_string())
        .take(20)
        .collect()
}

/// The last `n` lines of a text file (empty if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let out = lines[lines.len().saturating_sub(n)..].join("\n");
    if out.trim().is_empty() { "  (nothing)".to_string() } else { out }
}

/// Whether KVM really runs a guest here: boots one under `-accel kvm` and waits
/// for READY. `/dev/kvm` existing proves nothing (here it exists and a guest
/// never gets to run).
pub async fn probe_kvm(qemu: &Qemu, image: &GuestImage, timeout: Duration) -> Result<Duration, String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    let run = RunDir::new().map_err(|e| format!("{e:#}"))?;
    let dir = run.machine_dir("kvm-probe").map_err(|e| format!("{e:#}"))?;
    let spec = GuestSpec::new(128, 1, Accel::Kvm).expect("a valid probe spec");
    let mut m = Machine::start(qemu, image, spec, Role::Boot, &dir, "kvm-probe").await.map_err(|e| one_line(&format!("{e:#}")))?;
    let r = m.wait_ready(timeout).await.map(|_| m.started.elapsed()).map_err(|e| one_line(&format!("{e:#}")));
    drop(m);
    r
}

/// A multi-line error (with QEMU's and the console's lines) folded into one line for a note.
fn one_line(text: &str) -> String {
    let folded = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ");
    if folded.chars().count() > 300 { folded.chars().take(300).collect::<String>() + " …" } else { folded }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::image::ImageManifest;

    fn image() -> GuestImage {
        GuestImage {
            dir: "/img".into(),
            kernel: "/img/vmlinuz".into(),
            initramfs: "/img/initramfs.cpio".into(),
            manifest: ImageManifest {
                key: "k".into(),
                built_at: String::new(),
                kernel_origin: String::new(),
                kernel_release: String::new(),
                guest_init_sha256: String::new(),
                modules: vec![],
                initramfs_bytes: 0,
            },
        }
    }

    #[test]
    fn command_line_for_a_spec() {
        let spec = GuestSpec::new(512, 2, Accel::Tcg).unwrap();
        let paths = MachinePaths::new(Path::new("/run/m/src"));
        let a = qemu_args(&spec, &image(), &paths, Role::Boot, "src", None);
        let joined = a.join(" ");
        for want in [
            "-accel tcg",
            "-m 512",
            "-smp 2",
            "-kernel /img/vmlinuz",
            "-initrd /img/initramfs.cpio",
            "socket,id=qmp,path=/run/m/src/qmp.sock,server=on,wait=off",
            "name=migbench.0",
            "file,id=console,path=/run/m/src/console.log",
            "-no-reboot",
        ] {
            assert!(joined.contains(want), "missing {want:?} in {joined}");
        }
        assert!(!joined.contains("-incoming"));
        assert!(joined.contains("migbench.workload=idle"));
        let busy = qemu_args(&spec.with_workload("memdirty-write:32".parse().unwrap()), &image(), &paths, Role::Boot, "src", None);
        assert!(busy.join(" ").contains("migbench.workload=memdirty-write:32"));
        let b = qemu_args(&GuestSpec { accel: Accel::Kvm, ..spec }, &image(), &paths, Role::Incoming, "dst", None);
        assert_eq!(&b[b.len() - 2..], ["-incoming", "defer"]);
        assert!(b.join(" ").contains("-accel kvm"));
        // Same hardware on both sides: only -incoming and the accel differ here.
        assert_eq!(a.len() + 2, b.len());
    }

    #[test]
    fn paths_are_escaped_and_checked() {
        let paths = MachinePaths::new(Path::new("/tmp/a,b"));
        let a = qemu_args(&GuestSpec::new(128, 1, Accel::Tcg).unwrap(), &image(), &paths, Role::Boot, "src", None).join(" ");
        assert!(a.contains("path=/tmp/a,,b/qmp.sock"), "{a}");
        let long = Path::new("/").join("x".repeat(120));
        assert!(check_socket_path(&long).unwrap_err().to_string().contains("TMPDIR"));
        assert!(check_socket_path(Path::new("/tmp/q.sock")).is_ok());
    }

    #[test]
    fn spec_validation_names_the_input() {
        let e = GuestSpec::new(0, 1, Accel::Tcg).unwrap_err().to_string();
        assert!(e.contains("--ram 0") && e.contains("--ram 256"), "{e}");
        let e = GuestSpec::new(256, 0, Accel::Tcg).unwrap_err().to_string();
        assert!(e.contains("--vcpus 0"), "{e}");
        assert!(GuestSpec::new(128, 1, Accel::Tcg).is_ok());
    }

    #[test]
    fn accel_parsing() {
        assert_eq!("KVM".parse::<AccelRequest>().unwrap(), AccelRequest::Kvm);
        assert_eq!("auto".parse::<AccelRequest>().unwrap(), AccelRequest::Auto);
        assert!("hvf".parse::<AccelRequest>().unwrap_err().contains("auto, kvm, tcg"));
    }

    #[test]
    fn finds_kernel_trouble() {
        let c = "boot ok\n[  3.1] BUG: unable to handle page fault\n[  3.2] Oops: 0000 [#1] SMP\nfine\n";
        assert_eq!(console_problems(c).len(), 2);
        assert!(console_problems("all good\nREADY\n").is_empty());
    }

    #[test]
    fn run_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let r = RunDir::new().unwrap();
        let m = r.machine_dir("src").unwrap();
        assert_eq!(std::fs::metadata(r.path()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&m).unwrap().permissions().mode() & 0o777, 0o700);
        // Its name says whose it is, for the clean-up after a SIGKILL.
        let name = r.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(crate::machine::stale::run_dir_owner(&name), Some(std::process::id()), "{name}");
        assert_eq!(r.path().parent(), Some(run_dir_bases()[0].as_path()));
        let p = r.path().to_path_buf();
        drop(r);
        assert!(!p.exists());
    }
}
