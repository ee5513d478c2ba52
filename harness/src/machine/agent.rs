//! `migbench agent`: what runs on a remote host, over an SSH session's stdio, to
//! start and watch the QEMUs there. One JSON request per line in, one JSON reply
//! per line out. The harness keeps QMP and the guest channel to itself (their
//! sockets are forwarded by SSH); the agent only does what needs the host: resolve
//! its QEMU, probe its KVM, start, watch, read and stop processes, and report its
//! facts and CPU counters. When its stdin closes (the harness ended, or the
//! connection broke) it kills every QEMU it started and removes its run directory.
//!
//! This file is the vocabulary and the harness's end; `agent_server` is the far end.

use super::hardware::Accel;
use crate::host::qemu_versions::QemuWanted;
use crate::host::{HostInfo, Qemu};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// Bumped when a request or reply changes shape: an agent of another protocol is
/// replaced, not spoken to.
pub const PROTOCOL: u32 = 3;

/// A request to the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Resolve this host's QEMU (`qemu`, else its default), check `accel` runs a
    /// guest here (booting one from the image in `image`), and report the facts.
    Hello { protocol: u32, qemu: Option<QemuWanted>, image: PathBuf, accel: Accel },
    /// Start `qemu` with `args`; its directory is the agent's run directory joined
    /// with `name` (the harness names its files in `args`).
    Start { name: String, qemu: PathBuf, args: Vec<String> },
    /// Whether `name`'s QEMU still runs, and how it ended if not.
    Status { name: String },
    /// The last `lines` lines of `name`'s console or QEMU's stderr.
    Tail { name: String, file: LogFile, lines: usize },
    /// CPU counters of the named QEMUs and of the host.
    Cpu { names: Vec<String> },
    /// Kill `name`'s QEMU and reap it.
    Stop { name: String },
    /// SIGKILL `name`'s QEMU (a fault), keeping it known: `Status` then says how it ended.
    Kill { name: String },
    /// A TCP port free on `address` on this host now (for a migration to listen on).
    FreePort { address: String },
    /// Listen on `address` (port 0) for one stream and count what it carries
    /// (`link_probe`); answers the port.
    Sink { address: String },
    /// What the sink on `port` received, once its sender closed (`link_probe::Received`).
    SinkResult { port: u16 },
    /// The agent's wall clock, ns since the epoch (for the clock offset).
    Clock,
    /// The harness shaped `dev` here: delete its root qdisc when the agent ends,
    /// however the harness ended (`clear` false: it was cleared, forget it).
    ShapedHere { dev: String, clear: bool },
    /// Run `argv` (`tc` or `ip` only) and answer its standard output. Run by the
    /// agent itself, not through a shell of the SSH user's: a command over SSH
    /// starts that user's shell and its rc files each time (here root's .bashrc
    /// runs pyenv's set-up), which took 0.1 s per command on an idle machine and up
    /// to 16 s while two guests kept both cores busy.
    Run { argv: Vec<String> },
}

/// The programs [`Request::Run`] runs: what shaping and reading a link needs. A
/// guard against a mistaken request, not a boundary: the SSH user can run
/// anything there anyway.
pub const RUNNABLE: [&str; 2] = ["tc", "ip"];

/// A machine's log files.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFile {
    Console,
    Stderr,
}

/// What the agent answers: `ok` with a body, or the error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub body: serde_json::Value,
}

/// A remote host as its agent sees it: the preflight's facts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    pub protocol: u32,
    pub migbench_version: String,
    pub hostname: String,
    pub host: HostInfo,
    /// The CPU's feature flags (/proc/cpuinfo), which a KVM guest's `-cpu max` mirrors.
    pub cpu_flags: Vec<String>,
    pub mem_available_mib: u64,
    pub qemu: Qemu,
    /// QEMU's `-machine help`.
    pub machine_help: String,
    /// Whether a KVM guest runs there, and the probe's words.
    pub kvm_works: bool,
    pub kvm_detail: String,
    /// Where the agent keeps its QEMUs' sockets and logs.
    pub run_dir: PathBuf,
    /// The agent's wall clock when it answered, ns since the epoch.
    pub unix_time_ns: u128,
}

/// How a machine is doing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub running: bool,
    /// "exit status: 1", "signal: 9 (SIGKILL)" once it ended.
    pub exit: Option<String>,
}

/// CPU counters read on the far host (see `machine::usage`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Counters {
    pub process_ns: u64,
    pub vcpu_ns: u64,
    pub host_busy: u64,
    pub host_total: u64,
}

/// The harness's end of an agent: its SSH session, and the lines coming back.
pub struct AgentClient {
    session: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    lines: Mutex<mpsc::Receiver<std::io::Result<String>>>,
    /// The session's stderr (the agent's and ssh's messages), for errors.
    log: PathBuf,
    /// Set when a reply did not come in time: a late one would answer the next
    /// request, so none is sent any more.
    broken: std::sync::atomic::AtomicBool,
    /// Where it runs, for messages.
    pub host: String,
}

/// How long an ordinary request may take (a Hello may fetch a QEMU: longer).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl AgentClient {
    /// Starts the agent with `command` (an `ssh … migbench agent`), its stderr
    /// going to `log`.
    pub fn start(mut command: std::process::Command, log: &Path, host: &str) -> Result<AgentClient> {
        let stderr = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        let mut session = command.spawn().with_context(|| format!("starting migbench agent on {host}"))?;
        let stdin = session.stdin.take().context("the agent's stdin")?;
        let stdout = session.stdout.take().context("the agent's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("migbench-agent-rx".into()).spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        })?;
        Ok(AgentClient { session: Mutex::new(session), stdin: Mutex::new(Some(stdin)), lines: Mutex::new(rx), log: log.into(), broken: Default::default(), host: host.into() })
    }

    /// Sends `request` and waits up to `timeout` for its reply's body. On a
    /// multi-threaded runtime the wait does not hold up the runtime's other tasks
    /// (another migration's QMP, the guests' heartbeats): the worker hands them to
    /// another thread first. Two migrations starting their far QEMUs at once used
    /// to stall every task for seconds: one worker waited for a slow Start, the
    /// other for its turn to ask.
    pub fn call(&self, request: &Request, timeout: Duration) -> Result<serde_json::Value> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| self.call_here(request, timeout)),
            _ => self.call_here(request, timeout),
        }
    }

    /// [`AgentClient::call`] on this thread, whatever else waits for it.
    fn call_here(&self, request: &Request, timeout: Duration) -> Result<serde_json::Value> {
        // One request in flight: the reply that comes back is this one's.
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("the agent on {} stopped answering earlier; it said: {}", self.host, self.said());
        }
        {
            let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
            let Some(w) = stdin.as_mut() else { bail!("the agent on {} was closed", self.host) };
            let mut line = serde_json::to_string(request)?;
            line.push('\n');
            if let Err(e) = w.write_all(line.as_bytes()).and_then(|_| w.flush()) {
                bail!("the agent on {} is gone ({e}); it said: {}", self.host, self.said());
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(Ok(line)) => {
                    let Ok(reply) = serde_json::from_str::<Reply>(&line) else {
                        // Not ours (a login banner, a shell's message): keep it for errors.
                        tracing::debug!("agent on {}: {line}", self.host);
                        continue;
                    };
                    if !reply.ok {
                        bail!("{} (agent on {})", reply.error, self.host);
                    }
                    return Ok(reply.body);
                }
                Ok(Err(e)) => bail!("reading from the agent on {}: {e}", self.host),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.broken.store(true, std::sync::atomic::Ordering::Relaxed);
                    bail!("the agent on {} did not answer within {} s; it said: {}", self.host, timeout.as_secs(), self.said())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the agent on {} ended; it said: {}", self.host, self.said())
                }
            }
        }
    }

    /// [`AgentClient::call`] for a reply of type `T`.
    pub fn ask<T: serde::de::DeserializeOwned>(&self, request: &Request, timeout: Duration) -> Result<T> {
        let body = self.call(request, timeout)?;
        serde_json::from_value(body).with_context(|| format!("the agent on {} answered {request:?} in a shape this migbench does not know", self.host))
    }

    /// The last lines the session wrote to stderr.
    pub fn said(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(8)..].join(" | ");
        if tail.is_empty() { "nothing".into() } else { tail }
    }
}

impl Drop for AgentClient {
    fn drop(&mut self) {
        // Closing stdin is the agent's order to clean up and leave.
        drop(self.stdin.get_mut().unwrap_or_else(|e| e.into_inner()).take());
        let session = self.session.get_mut().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = session.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = session.kill();
        let _ = session.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_each() {
        let r = Request::Tail { name: "dst".into(), file: LogFile::Console, lines: 20 };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"op":"tail","name":"dst","file":"console","lines":20}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let hello = Request::Hello { protocol: PROTOCOL, qemu: Some("10.0".parse().unwrap()), image: "/i".into(), accel: Accel::Tcg };
        assert!(!serde_json::to_string(&hello).unwrap().contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&serde_json::to_string(&hello).unwrap()).unwrap(), hello);
    }

    #[test]
    fn a_dead_agent_is_an_error_with_its_words() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "echo 'migbench: cannot execute binary file' >&2; exit 126"]);
        let a = AgentClient::start(cmd, &dir.path().join("log"), "test").unwrap();
        let e = a.call(&Request::Status { name: "x".into() }, Duration::from_secs(5)).unwrap_err().to_string();
        assert!(e.contains("cannot execute binary file"), "{e}");
    }

    #[test]
    fn after_a_late_reply_nothing_more_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", r#"read l; sleep 2; echo '{"ok":true,"body":{"running":true,"exit":null}}'; read l; echo '{"ok":true,"body":null}'"#]);
        let a = AgentClient::start(cmd, &dir.path().join("log"), "test").unwrap();
        assert!(a.call(&Request::Status { name: "x".into() }, Duration::from_millis(200)).unwrap_err().to_string().contains("did not answer"));
        // The late Status reply must not be taken for the Stop's.
        let e = a.call(&Request::Stop { name: "x".into() }, Duration::from_secs(5)).unwrap_err().to_string();
        assert!(e.contains("stopped answering"), "{e}");
    }

    #[test]
    fn replies_are_matched_and_noise_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", r#"read l; echo 'Welcome!'; echo '{"ok":true,"body":{"running":false,"exit":"exit status: 1"}}'; read l; echo '{"ok":false,"error":"no machine named x"}'"#]);
        let a = AgentClient::start(cmd, &dir.path().join("log"), "test").unwrap();
        let s: Status = a.ask(&Request::Status { name: "x".into() }, Duration::from_secs(5)).unwrap();
        assert_eq!(s, Status { running: false, exit: Some("exit status: 1".into()) });
        let e = a.call(&Request::Stop { name: "x".into() }, Duration::from_secs(5)).unwrap_err().to_string();
        assert!(e.contains("no machine named x"), "{e}");
    }
}
