//! The far end of `migbench agent` (see `machine::agent` for the protocol): reads
//! requests from stdin, answers on stdout, and when stdin closes kills every QEMU
//! it started and removes its run directory.

use super::agent::{Facts, LogFile, Numbered, PROTOCOL, Reply, Request, Status};
use super::command::MachinePaths;
use super::hardware::Accel;
use super::run_dir::RunDir;
use super::{spawn_qemu, tail, usage};
use crate::guest::GuestImage;
use crate::host::qemu_versions::{self, QemuWanted};
use crate::host::{HostInfo, OsRelease, Qemu, qemu_cache};
use crate::setup::{self, Platform};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::io::BufRead;

/// One QEMU the agent started.
struct Started {
    child: Child,
    paths: MachinePaths,
}

/// The agent's state: its run directory and QEMUs.
struct Agent {
    dir: RunDir,
    /// Interfaces the harness shaped here, cleared when the agent ends.
    shaped: std::collections::BTreeSet<String>,
    qemu: Option<Qemu>,
    machines: BTreeMap<String, Started>,
    /// The guest image's copy here, marked used at each start (see `remote::copy_once`).
    image_dir: Option<PathBuf>,
    /// Link probes' sinks by port, counting.
    sinks: BTreeMap<u16, std::thread::JoinHandle<std::result::Result<super::link_probe::Received, String>>>,
}

/// The agent's state, shared by the requests being answered.
type Shared = tokio::sync::Mutex<Agent>;

/// Serves requests until stdin closes. Each request is answered by a task of its
/// own, its reply written when it is done: a QEMU slow to start, a command or a
/// link probe's sink do not hold up the other requests. (Each harness task waits
/// for its own reply before it asks again, so its requests keep their order, up
/// to a request it gave up waiting for, which may still be running here.)
pub async fn serve() -> Result<()> {
    let agent = Arc::new(Shared::new(Agent { dir: RunDir::new()?, shaped: Default::default(), qemu: None, machines: BTreeMap::new(), image_dir: None, sinks: BTreeMap::new() }));
    // Requests are read on a thread of their own: stdin blocks.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<String>>();
    std::thread::Builder::new().name("migbench-agent-stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    })?;
    let mut tasks = tokio::task::JoinSet::new();
    // The request each task answers, for the reply of one that panicked.
    let mut answering: HashMap<tokio::task::Id, u64> = HashMap::new();
    let result = async {
        loop {
            tokio::select! {
                line = lines.recv() => {
                    let Some(line) = line else { break };
                    let line = line.context("reading a request")?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Numbered>(&line) {
                        Ok(Numbered { id, request }) => {
                            let agent = agent.clone();
                            let task = tasks.spawn(async move {
                                let reply = match answer(&agent, request).await {
                                    Ok(body) => Reply { id: Some(id), ok: true, error: String::new(), body },
                                    Err(e) => Reply { id: Some(id), ok: false, error: format!("{e:#}"), body: serde_json::Value::Null },
                                };
                                // A harness that is gone cannot be told; its stdin closes next.
                                let _ = write_reply(&reply);
                            });
                            answering.insert(task.id(), id);
                        }
                        Err(e) => {
                            // Answered under its id if it has one, so the harness hears why at once.
                            let id = serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v.get("id")?.as_u64());
                            let error = format!("a request this agent does not understand ({e}): is the harness's migbench the same version?");
                            write_reply(&Reply { id, ok: false, error, body: serde_json::Value::Null })?;
                        }
                    }
                }
                Some(done) = tasks.join_next_with_id() => {
                    match done {
                        Ok((task, ())) => {
                            answering.remove(&task);
                        }
                        Err(e) => {
                            let id = answering.remove(&e.id());
                            if e.is_panic() {
                                // The harness hears it now, not when its wait runs out.
                                let error = format!("the agent failed while answering: {}", panic_text(e.into_panic()));
                                write_reply(&Reply { id, ok: false, error, body: serde_json::Value::Null })?;
                            }
                        }
                    }
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    // The harness is gone or done. The requests still running get a moment to
    // finish (a `tc` command in flight must not land after the clean-up clears the
    // shapes), then the rest are dropped; the QEMUs they started are known, and
    // nothing of ours stays behind.
    let _ = tokio::time::timeout(Duration::from_secs(3), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let mut agent = agent.lock().await;
    for (_, mut m) in std::mem::take(&mut agent.machines) {
        kill(&mut m.child);
    }
    for dev in std::mem::take(&mut agent.shaped) {
        let _ = crate::network::tc::clear(&crate::network::tc::Local::host(), &dev);
    }
    drop(agent);
    result
}

/// What a panic said, if it said it as text.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "a panic".to_string(), |t| t.to_string()),
    }
}

/// Writes `reply` as one line on stdout (whole: replies of tasks finishing
/// together do not interleave).
fn write_reply(reply: &Reply) -> Result<()> {
    let line = serde_json::to_string(reply)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// [`Request::Run`]: `argv` run here as it is (no shell), its standard output.
fn run(argv: &[String]) -> Result<String> {
    let Some(program) = argv.first() else { bail!("no command to run") };
    if !super::agent::RUNNABLE.contains(&program.as_str()) {
        bail!("the agent runs only {} (asked for {program:?})", super::agent::RUNNABLE.join(" and "));
    }
    let place = match hostname().as_str() {
        "" => "the agent's host".to_string(),
        name => format!("host {name}"),
    };
    use crate::network::tc::Runner;
    crate::network::tc::Local::named(place).run(argv)
}

/// Sends SIGKILL to `child`'s process group without waiting for it.
fn signal_kill(child: &Child) {
    // Unregistered from the signal handler's list and killed as one (see `KillOnDrop`).
    drop(super::KillOnDrop(Some(child.id() as i32)));
}

/// Kills `child`'s process group and reaps it.
fn kill(child: &mut Child) {
    signal_kill(child);
    let _ = child.wait();
}

/// Answers `request`, holding the agent's state only while it reads or changes
/// it: the slow requests (starting a QEMU, running a command, waiting for a sink)
/// wait without it.
async fn answer(agent: &Shared, request: Request) -> Result<serde_json::Value> {
    Ok(match request {
        Request::Hello { protocol, qemu, image, accel } => {
            if protocol != PROTOCOL {
                bail!("this agent speaks protocol {PROTOCOL}, the harness {protocol}");
            }
            serde_json::to_value(hello(agent, qemu, &image, accel).await?)?
        }
        Request::Start { name, qemu, args } => serde_json::to_value(start(agent, &name, &qemu, &args).await?)?,
        Request::Status { name } => {
            let mut a = agent.lock().await;
            let m = a.machine(&name)?;
            let exit = m.child.try_wait().ok().flatten().map(|s| s.to_string());
            serde_json::to_value(Status { running: exit.is_none(), exit })?
        }
        Request::Tail { name, file, lines } => {
            let paths = agent.lock().await.machine(&name)?.paths.clone();
            serde_json::to_value(tail(if file == LogFile::Console { &paths.console } else { &paths.stderr }, lines.min(100_000)))?
        }
        Request::Cpu { names } => {
            let mut pids = Vec::new();
            let mut a = agent.lock().await;
            for n in &names {
                pids.push(a.machine(n)?.child.id());
            }
            drop(a);
            serde_json::to_value(usage::counters(&pids))?
        }
        Request::Clock => serde_json::to_value(unix_time_ns())?,
        Request::ShapedHere { dev, clear } => {
            let mut a = agent.lock().await;
            if clear {
                a.shaped.insert(dev);
            } else {
                a.shaped.remove(&dev);
            }
            serde_json::Value::Null
        }
        Request::Run { argv } => serde_json::to_value(tokio::task::spawn_blocking(move || run(&argv)).await.context("the command's task")??)?,
        Request::Kill { name } => {
            // Killed now, reaped without holding the agent: `Status` then says how it ended.
            let pid = {
                let mut a = agent.lock().await;
                let m = a.machine(&name)?;
                signal_kill(&m.child);
                m.child.id()
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let reaped = match agent.lock().await.started(&name, pid) {
                    Some(m) => m.child.try_wait().map(|s| s.is_some()).unwrap_or(true),
                    None => true,
                };
                if reaped {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("{name}'s QEMU (pid {pid}) was sent SIGKILL and had not ended after 30 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            serde_json::Value::Null
        }
        Request::FreePort { address } => {
            let ip = crate::host::ssh::address_ip(&address)?;
            let port = std::net::TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()).with_context(|| format!("finding a free port on {address}"))?.port();
            serde_json::to_value(port)?
        }
        Request::Sink { address } => {
            let (port, count) = super::link_probe::sink(&address)?;
            agent.lock().await.sinks.insert(port, count);
            serde_json::to_value(port)?
        }
        Request::SinkResult { port } => {
            let count = agent.lock().await.sinks.remove(&port).with_context(|| format!("no sink on port {port} here"))?;
            let got = tokio::task::spawn_blocking(move || count.join()).await.context("the sink's task")?.map_err(|_| anyhow::anyhow!("the sink's thread panicked"))?;
            serde_json::to_value(got.map_err(anyhow::Error::msg)?)?
        }
        Request::Stop { name } => {
            let removed = agent.lock().await.machines.remove(&name);
            if let Some(m) = removed {
                forget(m).await;
            }
            serde_json::Value::Null
        }
    })
}

/// Starts a QEMU and waits until its QMP and channel sockets exist (SSH forwards
/// them next), or it dies. The machine is known from the moment its QEMU is
/// spawned (its name taken, a `Stop` or the agent's end kills it), but the wait
/// holds nothing: other requests are answered meanwhile.
async fn start(agent: &Shared, name: &str, qemu: &Path, args: &[String]) -> Result<u32> {
    let (paths, pid) = agent.lock().await.spawn(name, qemu, args)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(paths.qmp.exists() && paths.channel.exists()) {
        let failure = match agent.lock().await.started(name, pid).map(|m| m.child.try_wait()) {
            None => Some("it was stopped while it started".to_string()),
            Some(Ok(Some(status))) => Some(format!("QEMU exited ({status}) as it started")),
            _ if Instant::now() >= deadline => Some("QEMU made no QMP socket within 30 s".to_string()),
            _ => None,
        };
        if let Some(failure) = failure {
            let said = tail(&paths.stderr, 10);
            // Reaped, forgotten and its directory gone: the name can be used again.
            let removed = agent.lock().await.forget_started(name, pid);
            if let Some(m) = removed {
                forget(m).await;
            }
            bail!("{failure}. It said:\n{said}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(pid)
}

/// Kills and reaps a machine no longer known, and removes its directory, off the
/// runtime's threads (a large QEMU can take a while to go).
async fn forget(mut m: Started) {
    let _ = tokio::task::spawn_blocking(move || {
        kill(&mut m.child);
        let _ = std::fs::remove_dir_all(&m.paths.dir);
    })
    .await;
}

/// This host's QEMU and accelerator, checked with the image the harness sent. The
/// slow part (resolving or fetching QEMU, a KVM probe) holds nothing.
async fn hello(agent: &Shared, wanted: Option<QemuWanted>, image_dir: &Path, accel: Accel) -> Result<Facts> {
    let image = GuestImage::load(image_dir).with_context(|| format!("the guest image the harness copied to {}", image_dir.display()))?;
    let qemu = tokio::task::spawn_blocking(move || host_qemu(wanted.as_ref())).await.context("QEMU resolution task")??;
    let mut p = Platform { qemu, qemu_asked: false, image, host: HostInfo::read() };
    let (kvm_works, kvm_detail) = if accel == Accel::Kvm { setup::kvm_works(&p).await? } else { (false, "not probed: the harness runs TCG".to_string()) };
    setup::choose_qemu(&mut p, accel).await?;
    let machine_help = {
        let q = p.qemu.clone();
        tokio::task::spawn_blocking(move || q.machine_help()).await.context("machine help task")??
    };
    let run_dir = {
        let mut a = agent.lock().await;
        a.image_dir = Some(image_dir.to_path_buf());
        a.qemu = Some(p.qemu.clone());
        a.dir.path().to_path_buf()
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Ok(Facts {
        protocol: PROTOCOL,
        migbench_version: env!("CARGO_PKG_VERSION").into(),
        hostname: hostname(),
        host: p.host.clone(),
        cpu_flags: crate::host::cpu_flags(&cpuinfo),
        mem_available_mib: crate::host::mem_available_mib(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()).unwrap_or(0),
        qemu: p.qemu,
        machine_help,
        kvm_works,
        kvm_detail,
        run_dir,
        unix_time_ns: unix_time_ns(),
    })
}

impl Agent {
    fn machine(&mut self, name: &str) -> Result<&mut Started> {
        self.machines.get_mut(name).with_context(|| format!("no machine named {name} on this host"))
    }

    /// Machine `name` if it is still the QEMU of pid `pid` (not a later one given
    /// the same name after a Stop).
    fn started(&mut self, name: &str, pid: u32) -> Option<&mut Started> {
        self.machines.get_mut(name).filter(|m| m.child.id() == pid)
    }

    /// [`Agent::started`], no longer known.
    fn forget_started(&mut self, name: &str, pid: u32) -> Option<Started> {
        self.started(name, pid)?;
        self.machines.remove(name)
    }

    /// Spawns `name`'s QEMU and knows it from then on; returns its files and pid.
    fn spawn(&mut self, name: &str, qemu: &Path, args: &[String]) -> Result<(MachinePaths, u32)> {
        // A name is a directory in the run directory: nothing that could leave it.
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("machine name {name:?}: letters, digits, - and _ only");
        }
        if self.machines.contains_key(name) {
            bail!("a machine named {name} already runs on this host");
        }
        // Only the QEMU this agent resolved at Hello.
        match &self.qemu {
            Some(q) if q.path == qemu => {}
            Some(q) => bail!("{} is not this host's QEMU ({}): name it with --qemu-dest", qemu.display(), q.path.display()),
            None => bail!("no Hello yet: this agent has not resolved a QEMU"),
        }
        // In use: a later harness's clean-up leaves it alone (a long sweep boots for days).
        if let Some(d) = &self.image_dir {
            let _ = std::fs::File::open(d).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        }
        let paths = MachinePaths::new(&self.dir.machine_dir(name)?);
        let child = spawn_qemu(qemu, args, &paths.stderr, None, None)?;
        // A SIGTERM or SIGHUP to the agent kills it too (see `machine::kill_all`).
        super::LIVE.lock().unwrap_or_else(|e| e.into_inner()).insert(child.id() as i32);
        let pid = child.id();
        self.machines.insert(name.into(), Started { child, paths: paths.clone() });
        Ok((paths, pid))
    }
}

/// This host's name (empty when it cannot be read).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

/// This host's wall clock, ns since the epoch.
pub fn unix_time_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// The QEMU this host runs: the one asked for, else the system's, else (Debian 12)
/// bookworm-backports' in migbench's cache. Nothing is installed system-wide here.
fn host_qemu(wanted: Option<&QemuWanted>) -> Result<Qemu> {
    Ok(match wanted {
        Some(QemuWanted::Series(series)) => qemu_versions::resolve_series_locked(series)?,
        Some(w) => qemu_versions::resolve(w)?,
        None => match Qemu::find(None)? {
            Some(q) => q,
            None if OsRelease::read().is_bookworm() => qemu_cache::ensure_locked(qemu_cache::DEFAULT)?,
            None => bail!("this host has no QEMU: install qemu-system-x86 here (Debian/Ubuntu: apt-get install qemu-system-x86), or name one with --qemu-dest PATH"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_told_in_its_own_words() {
        assert_eq!(panic_text(Box::new("boom")), "boom");
        assert_eq!(panic_text(Box::new(String::from("index out of range"))), "index out of range");
        assert_eq!(panic_text(Box::new(42)), "a panic");
    }

    #[test]
    fn run_runs_tc_and_ip_only_without_a_shell_and_says_why_a_command_failed() {
        let route = run(&["ip".into(), "route".into(), "get".into(), "127.0.0.1".into()]).unwrap();
        assert!(route.contains("dev lo"), "{route}");
        let e = run(&["sh".into(), "-c".into(), "true".into()]).unwrap_err().to_string();
        assert!(e.contains("only tc and ip") && e.contains("\"sh\""), "{e}");
        assert!(run(&[]).is_err());
        // No shell: a `;` is an argument of ip's, which refuses it.
        let e = run(&["ip".into(), "route".into(), "get".into(), "127.0.0.1;".into(), "true".into()]).unwrap_err().to_string();
        assert!(e.contains("`ip route get 127.0.0.1; true` failed on host ") && e.contains("(exit status: 1)"), "{e}");
    }
}
