//! A guest's machine: its hardware ([`hardware`]), its QEMU command line
//! ([`command`]), the run directory its sockets and logs live in ([`run_dir`]), and
//! here the QEMU process that runs it: start, readiness, stop.
//!
//! A QEMU started here never outlives the harness: it runs in its own process
//! group, is killed and reaped on drop (so on every error path), is killed by the
//! signal handler on Ctrl-C/SIGTERM (see [`kill_all`]), and gets SIGKILL from the
//! kernel if the harness itself is SIGKILLed (PR_SET_PDEATHSIG).

pub mod agent;
pub mod agent_server;
pub mod boot;
pub mod cgroup;
pub mod command;
pub mod dirty_rate;
pub mod hardware;
pub mod harness_cpu;
pub mod link_probe;
pub mod pool;
mod process;
pub mod remote;
pub mod remote_link;
pub mod run_dir;
pub mod site;
pub mod snapshot;
pub mod stale;
pub mod usage;

// The vocabulary most of the crate speaks, where code written before this module's
// split (the CLI, the migration driver, reports) still looks for it.
pub use command::Role;
pub use hardware::{Accel, AccelRequest, Balloon, GuestSpec};

use command::{MachinePaths, NicBackend, check_socket_path, qemu_args};
use crate::guest::channel::Ready;
use crate::guest::{GuestChannel, GuestImage};
use crate::network::{Network, Tap};
use crate::qmp::{Features, Qmp};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use process::Process;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The descriptor a QEMU is handed its tap as (`fd=3`), when it is passed one.
const PASSED_FD: i32 = 3;

/// Starts QEMU `path` with `args` in its own process group, its stderr to
/// `stderr`, dying with this process (PR_SET_PDEATHSIG), inside the network
/// namespace `netns` if given, with `pass_fd` as its fd 3 if given. The harness's
/// machines and a remote host's agent start their QEMUs here.
pub(crate) fn spawn_qemu<A: AsRef<std::ffi::OsStr>>(path: &Path, args: &[A], stderr: &Path, netns: Option<std::os::fd::RawFd>, pass_fd: Option<std::os::fd::RawFd>) -> Result<Child> {
    let log = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::File::options().write(true).create(true).truncate(true).mode(0o600).open(stderr)
    }
    .with_context(|| format!("creating {}", stderr.display()))?;
    let mut cmd = Command::new(path);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).process_group(0);
    // SAFETY: prctl, umask and setns are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // QEMU's sockets and console log are for their owner only (0700/0600),
            // whatever the caller's umask, inside a directory that is already 0700.
            libc::umask(0o077);
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The tap QEMU is handed, as fd 3 (dup2 clears close-on-exec; the same
            // number needs it cleared by hand).
            if let Some(fd) = pass_fd {
                if fd == PASSED_FD {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, PASSED_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
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
    crate::host::spawn_tied(cmd).with_context(|| format!("starting {}", path.display()))
}

/// A running QEMU and its two connections.
pub struct Machine {
    pub name: String,
    pub spec: GuestSpec,
    pub role: Role,
    /// The QEMU it runs on and the machine type it was given.
    pub emulator: site::Emulator,
    pub paths: MachinePaths,
    pub qmp: Qmp,
    pub channel: GuestChannel,
    pub started: Instant,
    process: Process,
    /// Present once a CPU cap or core limit was set; removed after QEMU is reaped.
    cgroup: Option<cgroup::CpuCgroup>,
    features: std::sync::OnceLock<Features>,
    /// The NIC's tap on the test network; removed after QEMU is gone (field order).
    _tap: Option<Tap>,
    /// A remote guest's port of the test bridge here.
    _port: Option<crate::network::stream_port::StreamPort>,
    /// Where a QEMU here listens for a migration from another host (see [`Machine::listen_for_remote`]).
    listen_at: Option<std::net::IpAddr>,
    /// How its guest came up: restored from a snapshot, or otherwise (a boot, or a
    /// migration's destination) fresh.
    pub booted: boot::Booted,
}

impl Machine {
    /// Starts QEMU and connects to its QMP and guest channel; does not wait for
    /// the guest (see [`Machine::wait_ready`]). With a `network`, QEMU runs inside
    /// its namespace and the guest's NIC (if `spec.net` is set) is on a tap of it.
    /// Only a [`site::Site`] starts machines: it knows where they run.
    pub(super) async fn start(
        emulator: &site::Emulator,
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
        let qemu = &emulator.qemu;
        // A guest bound for another host: QEMU stays in this host's namespace (its
        // migration must reach the other host) and is handed its tap, opened in the
        // test network's namespace, as fd 3.
        let tap_fd = match (&nic, network) {
            (Some(n), Some(net)) if spec.portable_nic => {
                Some(net.enter(|| migbench_guest::netif::open_tap(&n.tap))?.with_context(|| format!("opening tap {} for guest {name}", n.tap))?)
            }
            _ => None,
        };
        let backend = match (&nic, &tap_fd) {
            (Some(_), Some(_)) => Some(NicBackend::TapFd(PASSED_FD)),
            (Some(n), None) => Some(NicBackend::Tap(&n.tap)),
            (None, _) => None,
        };
        let mut args = qemu.data_dir_args();
        args.extend(qemu_args(&spec, image, &paths, role, name, backend, &emulator.machine).into_iter().map(std::ffi::OsString::from));
        // Every other QEMU of a sweep with a test network runs in it (a NIC or not):
        // their migration over TCP then runs on its loopback, which a fault can cut.
        let netns = if spec.portable_nic { None } else { network.map(|n| n.namespace_fd()) };
        let started = Instant::now();
        let child = spawn_qemu(&qemu.path, &args, &paths.stderr, netns, tap_fd.as_ref().map(std::os::fd::AsRawFd::as_raw_fd))?;
        drop(tap_fd);
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).insert(child.id() as i32);
        let process = Process::Local { child, stderr: paths.stderr.clone(), console: paths.console.clone() };
        Machine::connect(process, emulator, spec, role, paths, name, started, tap).await
    }

    /// Starts QEMU for guest `name` on a remote host through its agent, and connects
    /// to its QMP and guest channel through sockets SSH forwards into `local_dir`.
    pub(super) async fn start_remote(
        host: &std::sync::Arc<remote::RemoteHost>,
        emulator: &site::Emulator,
        spec: GuestSpec,
        role: Role,
        local_dir: &Path,
        name: &str,
        network: Option<&Network>,
    ) -> Result<Machine> {
        // A guest with a NIC keeps its place on the test bridge here: its frames
        // cross the link to a port of the bridge (`network::stream_port`).
        let port = match (spec.net, network) {
            (None, _) => None,
            (Some(net), None) => bail!("guest {name} has a NIC ({}) but no test network was made for it", net.ip),
            (Some(_), Some(n)) => Some(n.stream_port(&format!("mb-{name}"), host.client_local_address()?)?),
        };
        let there = MachinePaths::new(&host.facts.run_dir.join(name));
        let mut args: Vec<String> = emulator.qemu.data_dir_args().into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
        args.extend(qemu_args(&spec, &host.image, &there, role, name, port.as_ref().map(|p| NicBackend::Stream(p.addr)), &emulator.machine));
        let started = Instant::now();
        let here = MachinePaths::new(local_dir);
        for local in [&here.qmp, &here.channel] {
            check_socket_path(local)?;
        }
        let pid = host.start(name, &emulator.qemu.path, args)?;
        let mut process = Process::Remote { host: host.clone(), name: name.into(), pid, forwards: Vec::new() };
        // QMP and the channel come here through SSH (the agent answered once QEMU had
        // made them); the logs stay there.
        for (local, remote) in [(&here.qmp, &there.qmp), (&here.channel, &there.channel)] {
            let forwarded = host.ssh.forward_unix(local, remote);
            if let (Ok(()), Process::Remote { forwards, .. }) = (&forwarded, &mut process) {
                forwards.push((local.clone(), remote.clone()));
            }
            if let Err(e) = forwarded {
                process.kill_and_reap();
                return Err(e);
            }
        }
        let mut m = Machine::connect(process, emulator, spec, role, here, name, started, None).await?;
        m._port = port;
        Ok(m)
    }

    /// Connects to a just-started QEMU's QMP and guest channel, watching that it
    /// does not die meanwhile; on failure it is killed, with its last words in the error.
    #[allow(clippy::too_many_arguments)]
    async fn connect(
        mut process: Process,
        emulator: &site::Emulator,
        spec: GuestSpec,
        role: Role,
        paths: MachinePaths,
        name: &str,
        started: Instant,
        tap: Option<Tap>,
    ) -> Result<Machine> {
        let connect = async {
            let qmp = Qmp::connect(&paths.qmp, name, Duration::from_secs(30)).await?;
            let channel = GuestChannel::connect(&paths.channel, Duration::from_secs(10)).await?;
            anyhow::Ok((qmp, channel))
        };
        // A QEMU that dies at once (a bad option, a bad kernel) must not cost the
        // connect timeouts: watch the process while connecting.
        let exited = async {
            loop {
                tokio::time::sleep(Duration::from_millis(if process.is_remote() { 250 } else { 50 })).await;
                if let Some(status) = process.exit_status() {
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
                let status = process.exit_status();
                let stderr = process.tail(agent::LogFile::Stderr, 10);
                process.kill_and_reap();
                let how = match status {
                    Some(s) => format!("QEMU exited ({s})"),
                    None => "QEMU did not answer".to_string(),
                };
                bail!("{how} while starting guest {name}{}.\nQEMU said:\n{stderr}\n(QMP: {e:#})", process.place());
            }
        };
        Ok(Machine {
            name: name.into(),
            spec,
            role,
            emulator: emulator.clone(),
            paths,
            qmp,
            channel,
            started,
            process,
            cgroup: None,
            features: Default::default(),
            _tap: tap,
            _port: None,
            listen_at: None,
            booted: boot::Booted::Fresh,
        })
    }

    /// What this QEMU says it is: its version from the QMP greeting ("7.2.22") and
    /// the machine type it runs ("pc-i440fx-7.2", from `qom-get /machine type`).
    pub async fn identity(&self) -> Result<(String, String)> {
        let version = self.qmp.version().map(|(a, b, c)| format!("{a}.{b}.{c}")).context("the QMP greeting names no QEMU version")?;
        let ty = self.qmp.execute_json("qom-get", serde_json::json!({"path": "/machine", "property": "type"})).await?;
        let machine = ty.as_str().unwrap_or_default().trim_end_matches("-machine").to_string();
        Ok((version, machine))
    }

    /// What this QEMU offers, read from its schema once and kept.
    pub async fn features(&self) -> Result<&Features> {
        if let Some(f) = self.features.get() {
            return Ok(f);
        }
        let f = self.qmp.features().await?;
        Ok(self.features.get_or_init(|| f))
    }

    /// QEMU's process id on the host it runs on (see [`Machine::is_remote`]).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// SIGKILLs this QEMU on its host (a fault): "SIGKILL to the destination QEMU (pid 123 on ssh://…)".
    pub async fn sigkill(&self, who: &str) -> Result<String> {
        let what = format!("SIGKILL to the {who} QEMU (pid {}{})", self.pid(), self.process.place());
        let job = self.process.sigkill_job();
        tokio::task::spawn_blocking(job).await.context("the kill's task")?.map(|()| what.clone()).with_context(|| format!("{what} failed"))
    }

    /// The remote host this QEMU runs on, if it is not this one.
    pub fn remote_host(&self) -> Option<&std::sync::Arc<remote::RemoteHost>> {
        match &self.process {
            Process::Remote { host, .. } => Some(host),
            Process::Local { .. } => None,
        }
    }

    /// Whether this QEMU runs on another host (through its agent).
    pub fn is_remote(&self) -> bool {
        self.process.is_remote()
    }

    /// The address another QEMU sends a migration to this one at, as a `tcp:` URI's
    /// host: its host's migration address (IPv6 in brackets), or here loopback, or the
    /// address [`Machine::listen_for_remote`] gave it (a source on another host).
    pub fn migration_host(&self) -> String {
        match &self.process {
            Process::Remote { host, .. } => crate::host::ssh::uri_host(&host.migrate_address),
            Process::Local { .. } => match self.listen_at {
                Some(ip) => crate::host::ssh::uri_host(&ip.to_string()),
                None => "127.0.0.1".into(),
            },
        }
    }

    /// Makes this QEMU (here) take its incoming migration at `ip`, this host's
    /// address as another host reaches it (`RemoteHost::local_address`), instead
    /// of loopback: the source runs on that host.
    pub fn listen_for_remote(&mut self, ip: std::net::IpAddr) -> Result<()> {
        if self.is_remote() {
            bail!("guest {} runs{}: it listens at its host's migration address already", self.name, self.process.place());
        }
        self.listen_at = Some(ip);
        Ok(())
    }

    /// Caps this QEMU's CPU (`cap_percent`, % of one host CPU) and restricts it to
    /// host cores `0..cores`; `None` lifts a limit. Takes effect at once, while the
    /// guest runs.
    pub fn set_cpu_limits(&mut self, cap_percent: Option<u32>, cores: Option<u32>) -> Result<()> {
        if self.cgroup.is_none() {
            if cap_percent.is_none() && cores.is_none() {
                return Ok(());
            }
            if self.is_remote() {
                bail!("a CPU cap or core limit on guest {}{} is not supported yet: cap the guest on this host only", self.name, self.process.place());
            }
            let mut cg = cgroup::CpuCgroup::create(&format!("{}-{}", self.name, self.pid()))?;
            cg.add(self.pid())?;
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
        self.process.exit_status().is_none()
    }

    /// How this QEMU ended and its last words, "exited (signal: 9 (SIGKILL)); it
    /// said: …" (the last lines of its stderr), or `None` while it runs.
    pub fn exit_report(&mut self) -> Option<String> {
        let status = self.process.exit_status()?;
        Some(format!("exited ({status}){}; it said: {}", self.process.place(), self.process.tail(agent::LogFile::Stderr, 5).replace('\n', " | ")))
    }

    /// Milliseconds from this QEMU's start to `at` (the guest's READY or PARKED: its
    /// boot time).
    pub fn ms_after_start(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_secs_f64() * 1000.0
    }

    /// Waits for the guest's READY; the error quotes the guest console's last lines.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Ready> {
        self.wait_for_guest("READY", timeout, |c| Box::pin(c.wait_ready(Duration::from_millis(100)))).await
    }

    /// Waits for a parked guest's PARKED (`GuestSpec::park`), as [`Machine::wait_ready`]
    /// waits for READY; returns when it came.
    pub async fn wait_parked(&mut self, timeout: Duration) -> Result<Instant> {
        self.wait_for_guest("PARKED", timeout, |c| Box::pin(c.wait_parked(Duration::from_millis(100)))).await
    }

    /// Asks `ask` (a wait of 100 ms on the channel) until it answers, QEMU exits or
    /// `timeout` passes; the errors name `what` and quote QEMU's and the console's
    /// last lines.
    async fn wait_for_guest<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        ask: impl for<'a> Fn(&'a GuestChannel) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<T>> + Send + 'a>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = ask(&self.channel).await {
                return Ok(r);
            }
            if let Some(status) = self.process.exit_status() {
                bail!(
                    "QEMU for guest {}{} exited ({status}) before the guest said {what}.\nQEMU said:\n{}\nLast console lines:\n{}",
                    self.name,
                    self.process.place(),
                    self.process.tail(agent::LogFile::Stderr, 10),
                    self.process.tail(agent::LogFile::Console, 20)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "guest {} did not say {what} within {} s ({} accelerator). Last console lines:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.spec.accel,
                    self.process.tail(agent::LogFile::Console, 20)
                );
            }
        }
    }

    /// Sends `migrate-incoming URI` to this QEMU, waiting with `-incoming defer`,
    /// and waits until it has loaded the guest: the time that took (ms), or why it
    /// did not. A saved file is restored so (`migration::file`, `machine::snapshot`).
    pub async fn load_incoming(&self, uri: &str, timeout: Duration) -> Result<f64, String> {
        let t0 = Instant::now();
        self.qmp.execute(&qapi::qmp::migrate_incoming { uri: Some(uri.to_string()), channels: None, exit_on_error: None }).await.map_err(|e| format!("QEMU refused migrate-incoming: {e}"))?;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let info = self.qmp.query_migrate().await.map_err(|e| format!("query-migrate on the destination: {e}"))?;
            match info.status() {
                "completed" => return Ok(t0.elapsed().as_secs_f64() * 1000.0),
                "failed" | "cancelled" => {
                    return Err(info.error_desc.clone().unwrap_or_else(|| format!("the destination reported {}", info.status())));
                }
                _ => {}
            }
            if t0.elapsed() >= timeout {
                return Err(format!("not restored after {:.0} s (status {})", timeout.as_secs_f64(), info.status()));
            }
        }
    }

    /// The console's last `n` lines.
    pub fn console_tail(&self, n: usize) -> String {
        self.process.tail(agent::LogFile::Console, n)
    }

    /// Kernel trouble on the console: Oops, BUG, panic, … (each a line).
    pub fn console_problems(&self) -> Vec<String> {
        match &self.process {
            Process::Local { console, .. } => console_problems(&std::fs::read_to_string(console).unwrap_or_default()),
            // The whole console is small (the guest prints warnings and reports only).
            // One that cannot be read is a problem: a clean console is never assumed.
            Process::Remote { .. } => match self.process.read_tail(agent::LogFile::Console, 5000) {
                Ok(text) => console_problems(&text),
                Err(e) => vec![format!("the console on the far host could not be read: {e:#}")],
            },
        }
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
        self.process.kill_and_reap();
    }
}

/// CPU counters of these machines' QEMUs, each read where it runs, at one moment;
/// the host's are this host's, unless every machine runs on one other host (the
/// `after` window of a guest that moved there): then that host's. `None` when a
/// remote host could not be read: no figure rather than a wrong one.
pub fn cpu_sample(machines: &[&Machine]) -> Option<usage::CpuSample> {
    if let [m] = machines {
        if m.is_remote() {
            return remote_cpu_sample(m);
        }
    }
    let mut c = usage::counters(&[]);
    for m in machines {
        let p = m.process.counters()?;
        c.process_ns += p.process_ns;
        c.vcpu_ns += p.vcpu_ns;
    }
    Some(usage::CpuSample::at_now(c))
}

/// This machine's QEMU counters with its own host's, when that host is another
/// one and could be read (`None` otherwise).
pub fn remote_cpu_sample(m: &Machine) -> Option<usage::CpuSample> {
    if !m.is_remote() {
        return None;
    }
    m.process.counters().map(usage::CpuSample::at_now)
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

/// Kills the QEMU of process group `pgid` if it still runs (its [`Machine`] reaps
/// it when dropped). While `pgid` is in [`LIVE`] its process is not yet reaped, so
/// the group is still ours.
fn kill_if_live(pgid: i32) {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if live.contains(&pgid) {
        // SAFETY: signalling a process group we created and have not reaped.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Whether the QEMU of process group `pgid` is still running here.
fn is_live(pgid: i32) -> bool {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).contains(&pgid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kernel_trouble() {
        let c = "boot ok\n[  3.1] BUG: unable to handle page fault\n[  3.2] Oops: 0000 [#1] SMP\nfine\n";
        assert_eq!(console_problems(c).len(), 2);
        assert!(console_problems("all good\nREADY\n").is_empty());
    }
}
