//! `migbench agent`: what runs on a remote host, over an SSH session's stdio, to
//! start and watch the QEMUs there. One JSON request per line in, one JSON reply
//! per line out, each reply carrying its request's `id`: the agent answers
//! requests as they finish, not in turn, so one migration's far QEMU slow to start
//! does not hold up another's requests. The harness keeps QMP and the guest
//! channel to itself (their sockets are forwarded by SSH); the agent only does
//! what needs the host: resolve its QEMU, probe its KVM, start, watch, read and
//! stop processes, and report its facts and CPU counters. When its stdin closes (the harness ended, or the
//! connection broke) it kills every QEMU it started and removes its run directory.
//!
//! This file is the vocabulary and the harness's end; `agent_server` is the far end.

use super::hardware::Accel;
use crate::host::qemu_versions::QemuWanted;
use crate::host::{HostInfo, Qemu};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Bumped when a request or reply changes shape: an agent of another protocol is
/// replaced, not spoken to.
pub const PROTOCOL: u32 = 4;

/// A request as it is sent: its number, which its reply carries back, so several
/// requests can be in flight at once and a reply that comes too late is never
/// taken for another request's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Numbered {
    pub id: u64,
    #[serde(flatten)]
    pub request: Request,
}

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

/// What the agent answers: `ok` with a body, or the error, for request `id`
/// (none: for a line that was no request).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
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

/// The harness's end of an agent: its SSH session, and the requests waiting for
/// their replies.
pub struct AgentClient {
    session: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    /// The requests in flight by id, and whether the session still reads.
    waiting: Arc<Mutex<Waiting>>,
    next_id: AtomicU64,
    /// The session's stderr (the agent's and ssh's messages), for errors.
    log: PathBuf,
    /// Where it runs, for messages.
    pub host: String,
}

/// The replies the harness waits for.
#[derive(Default)]
struct Waiting {
    by_id: HashMap<u64, mpsc::Sender<Reply>>,
    /// Why no more replies will come (the session's output ended or failed, or
    /// the agent stopped answering).
    ended: Option<String>,
    /// When the session last wrote a line.
    last_heard: Option<Instant>,
}

/// The error of a request whose reply did not come in time (the request may
/// still be running there).
#[derive(Debug)]
pub struct NoAnswer {
    pub host: String,
    pub seconds: u64,
    /// The last lines the session wrote to stderr.
    pub said: String,
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the agent on {} did not answer within {} s; it said: {}", self.host, self.seconds, self.said)
    }
}

impl std::error::Error for NoAnswer {}

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
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let (shared, name) = (waiting.clone(), host.to_string());
        std::thread::Builder::new().name("migbench-agent-rx".into()).spawn(move || {
            let ended = deliver(BufReader::new(stdout), &shared, &name);
            let mut w = shared.lock().unwrap_or_else(|e| e.into_inner());
            w.ended = Some(ended);
            // Every request still waiting hears that no reply will come.
            w.by_id.clear();
        })?;
        Ok(AgentClient { session: Mutex::new(session), stdin: Mutex::new(Some(stdin)), waiting, next_id: AtomicU64::new(1), log: log.into(), host: host.into() })
    }

    /// Sends `request` and waits up to `timeout` for its reply's body. Other
    /// threads may call at the same time: each waits for its own reply. On a
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        {
            // Waiting before it is sent: the reply may come back at once.
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = &w.ended {
                bail!("the agent on {} ended ({why}); it said: {}", self.host, self.said());
            }
            w.by_id.insert(id, tx);
        }
        let sent_at = Instant::now();
        let sent = {
            let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
            match stdin.as_mut() {
                None => Err(format!("the agent on {} was closed", self.host)),
                Some(w) => {
                    let mut line = serde_json::to_string(&Numbered { id, request: request.clone() })?;
                    line.push('\n');
                    w.write_all(line.as_bytes()).and_then(|_| w.flush()).map_err(|e| format!("the agent on {} is gone ({e}); it said: {}", self.host, self.said()))
                }
            }
        };
        if let Err(e) = sent {
            self.forget(id);
            bail!(e);
        }
        match rx.recv_timeout(timeout) {
            Ok(reply) if reply.ok => Ok(reply.body),
            Ok(reply) => bail!("{} (agent on {})", reply.error, self.host),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Its reply, if it comes, is dropped: it cannot answer another request.
                self.forget(id);
                let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                // Nothing at all came back meanwhile: later requests fail at once
                // instead of each waiting out its own timeout.
                if w.ended.is_none() && w.last_heard.is_none_or(|t| t < sent_at) {
                    w.ended = Some(format!("it stopped answering: nothing came back for {} s", timeout.as_secs()));
                }
                drop(w);
                Err(NoAnswer { host: self.host.clone(), seconds: timeout.as_secs(), said: self.said() }.into())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let why = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).ended.clone().unwrap_or_default();
                bail!("the agent on {} ended ({why}); it said: {}", self.host, self.said())
            }
        }
    }

    fn forget(&self, id: u64) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).by_id.remove(&id);
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

/// Hands each reply read from `out` to the request waiting for it, until the
/// output ends; returns why it ended. Lines that are no reply of ours (a login
/// banner, a shell's message) and replies nobody waits for any more (their
/// request timed out) are logged and skipped.
fn deliver(out: impl BufRead, waiting: &Mutex<Waiting>, host: &str) -> String {
    for line in out.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => return format!("reading from it failed: {e}"),
        };
        let waiter = {
            let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
            w.last_heard = Some(Instant::now());
            match serde_json::from_str::<Reply>(&line) {
                Ok(reply @ Reply { id: Some(id), .. }) => w.by_id.remove(&id).map(|tx| (tx, reply)),
                _ => None,
            }
        };
        match waiter {
            Some((tx, reply)) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!("agent on {host}: {line}"),
        }
    }
    "its output ended".into()
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

    /// A fake agent: `script` in sh, with `id LINE` printing a request's id and
    /// `name LINE` its machine name.
    fn fake(script: &str) -> (AgentClient, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let helpers = r#"id() { printf '%s' "$1" | sed -n 's/.*"id":\([0-9]*\).*/\1/p'; }; name() { printf '%s' "$1" | sed -n 's/.*"name":"\([a-z]*\)".*/\1/p'; }; "#;
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &format!("{helpers}{script}")]);
        (AgentClient::start(cmd, &dir.path().join("log"), "test").unwrap(), dir)
    }

    #[test]
    fn requests_are_one_json_line_each_with_their_id() {
        let r = Numbered { id: 7, request: Request::Tail { name: "dst".into(), file: LogFile::Console, lines: 20 } };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"id":7,"op":"tail","name":"dst","file":"console","lines":20}"#);
        assert_eq!(serde_json::from_str::<Numbered>(&text).unwrap(), r);
        let hello = Numbered { id: 1, request: Request::Hello { protocol: PROTOCOL, qemu: Some("10.0".parse().unwrap()), image: "/i".into(), accel: Accel::Tcg } };
        assert!(!serde_json::to_string(&hello).unwrap().contains('\n'));
        assert_eq!(serde_json::from_str::<Numbered>(&serde_json::to_string(&hello).unwrap()).unwrap(), hello);
        let clock = Numbered { id: 2, request: Request::Clock };
        assert_eq!(serde_json::to_string(&clock).unwrap(), r#"{"id":2,"op":"clock"}"#);
    }

    #[test]
    fn a_dead_agent_is_an_error_with_its_words() {
        let (a, _dir) = fake("echo 'migbench: cannot execute binary file' >&2; exit 126");
        let e = a.call(&Request::Status { name: "x".into() }, Duration::from_secs(5)).unwrap_err().to_string();
        assert!(e.contains("cannot execute binary file"), "{e}");
    }

    #[test]
    fn a_late_reply_is_dropped_and_the_next_request_gets_its_own() {
        // The agent is alive (it says so at once) but slow to answer.
        let (a, _dir) = fake(r#"read l; echo 'working on it'; sleep 2; echo "{\"id\":$(id "$l"),\"ok\":true,\"body\":{\"running\":true,\"exit\":null}}"; read l; echo "{\"id\":$(id "$l"),\"ok\":true,\"body\":\"stopped\"}""#);
        assert!(a.call(&Request::Status { name: "x".into() }, Duration::from_millis(200)).unwrap_err().to_string().contains("did not answer"));
        // The late Status reply is not taken for the Stop's.
        assert_eq!(a.call(&Request::Stop { name: "x".into() }, Duration::from_secs(5)).unwrap(), serde_json::json!("stopped"));
    }

    #[test]
    fn after_a_silent_timeout_later_requests_fail_at_once() {
        let (a, _dir) = fake("read l; read l");
        let e = a.call(&Request::Status { name: "x".into() }, Duration::from_millis(300)).unwrap_err();
        assert!(e.downcast_ref::<NoAnswer>().is_some() && e.to_string().contains("did not answer within"), "{e}");
        let t0 = Instant::now();
        let e = a.call(&Request::Clock, Duration::from_secs(20)).unwrap_err().to_string();
        assert!(e.contains("stopped answering") && t0.elapsed() < Duration::from_secs(2), "{e} after {:?}", t0.elapsed());
    }

    #[test]
    fn replies_are_matched_by_id_and_noise_is_skipped() {
        let (a, _dir) = fake(
            r#"read l; echo 'Welcome!'; echo '{"id":999,"ok":true,"body":"not yours"}'; echo '{"ok":true,"body":"no id"}'; echo "{\"id\":$(id "$l"),\"ok\":true,\"body\":{\"running\":false,\"exit\":\"exit status: 1\"}}"; read l; echo "{\"id\":$(id "$l"),\"ok\":false,\"error\":\"no machine named x\"}""#,
        );
        let s: Status = a.ask(&Request::Status { name: "x".into() }, Duration::from_secs(5)).unwrap();
        assert_eq!(s, Status { running: false, exit: Some("exit status: 1".into()) });
        let e = a.call(&Request::Stop { name: "x".into() }, Duration::from_secs(5)).unwrap_err().to_string();
        assert!(e.contains("no machine named x"), "{e}");
    }

    #[test]
    fn two_requests_in_flight_each_get_their_own_reply_whatever_the_order() {
        // The agent reads both requests, then answers the second first.
        let (a, _dir) = fake(r#"read p; read q; for l in "$q" "$p"; do echo "{\"id\":$(id "$l"),\"ok\":true,\"body\":\"$(name "$l")\"}"; done"#);
        let a = std::sync::Arc::new(a);
        let asks: Vec<_> = ["first", "second"]
            .into_iter()
            .map(|name| {
                let a = a.clone();
                std::thread::spawn(move || a.call(&Request::Status { name: name.into() }, Duration::from_secs(5)).unwrap())
            })
            .collect();
        let got: Vec<serde_json::Value> = asks.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(got, vec![serde_json::json!("first"), serde_json::json!("second")]);
    }
}
