//! The QEMU process behind a machine: a child of this process, or one a remote
//! host's agent started there. Either way it can be asked whether it still runs,
//! for its logs and CPU counters, and killed; a local one is also signalled on
//! Ctrl-C (see `machine::kill_all`), a remote one dies with its agent.

use super::agent::{Counters, LogFile, Request, Status};
use super::remote::RemoteHost;
use super::{KillOnDrop, tail, usage};
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;

pub(super) enum Process {
    Local { child: Child, stderr: PathBuf, console: PathBuf },
    /// `forwards`: the (here, there) socket pairs SSH forwards for it, ended with it.
    Remote { host: Arc<RemoteHost>, name: String, pid: u32, forwards: Vec<(PathBuf, PathBuf)> },
}

impl Process {
    /// The process id, on its own host.
    pub(super) fn id(&self) -> u32 {
        match self {
            Process::Local { child, .. } => child.id(),
            Process::Remote { pid, .. } => *pid,
        }
    }

    pub(super) fn is_remote(&self) -> bool {
        matches!(self, Process::Remote { .. })
    }

    /// " on ssh://…" for a remote one, empty here.
    pub(super) fn place(&self) -> String {
        match self {
            Process::Local { .. } => String::new(),
            Process::Remote { host, .. } => format!(" on {}", host.ssh.target),
        }
    }

    /// How it ended ("signal: 9 (SIGKILL)"), or `None` while it runs. A remote
    /// host that cannot be asked counts as running: the caller's own deadline ends the wait.
    pub(super) fn exit_status(&mut self) -> Option<String> {
        match self {
            Process::Local { child, .. } => child.try_wait().ok().flatten().map(|s| s.to_string()),
            Process::Remote { host, name, .. } => {
                let s: Status = host.agent.ask(&Request::Status { name: name.clone() }, super::agent::CALL_TIMEOUT).ok()?;
                (!s.running).then(|| s.exit.unwrap_or_else(|| "ended".into()))
            }
        }
    }

    /// The last `n` lines of its console or stderr ("  (nothing)" when empty or
    /// unreadable), for messages.
    pub(super) fn tail(&self, file: LogFile, n: usize) -> String {
        self.read_tail(file, n).unwrap_or_else(|e| format!("  (could not read it: {e:#})"))
    }

    /// [`Process::tail`], with a remote host that cannot be asked as an error.
    pub(super) fn read_tail(&self, file: LogFile, n: usize) -> anyhow::Result<String> {
        match self {
            Process::Local { stderr, console, .. } => Ok(tail(if file == LogFile::Console { console } else { stderr }, n)),
            Process::Remote { host, name, .. } => host.agent.ask::<String>(&Request::Tail { name: name.clone(), file, lines: n }, super::agent::CALL_TIMEOUT),
        }
    }

    /// Its CPU counters and its host's, read where it runs; `None` when the remote
    /// host could not be asked.
    pub(super) fn counters(&self) -> Option<Counters> {
        match self {
            Process::Local { child, .. } => Some(usage::counters(&[child.id()])),
            Process::Remote { host, name, .. } => host.agent.ask(&Request::Cpu { names: vec![name.clone()] }, super::agent::CALL_TIMEOUT).ok(),
        }
    }

    /// What SIGKILLs it where it runs (a fault), leaving the reaping to whoever
    /// waits on it: a job that may block (a remote one asks its agent), to run off
    /// the async runtime.
    pub(super) fn sigkill_job(&self) -> Box<dyn FnOnce() -> anyhow::Result<()> + Send> {
        match self {
            Process::Local { child, .. } => {
                let pid = child.id() as i32;
                Box::new(move || {
                    // SAFETY: a signal to a QEMU this harness started and has not reaped.
                    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
                        anyhow::bail!("{}", std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            }
            Process::Remote { host, name, .. } => {
                let (host, name) = (host.clone(), name.clone());
                Box::new(move || host.agent.call(&Request::Kill { name }, super::agent::CALL_TIMEOUT).map(drop))
            }
        }
    }

    /// Kills it and waits for it to go.
    pub(super) fn kill_and_reap(&mut self) {
        match self {
            Process::Local { child, .. } => {
                drop(KillOnDrop(Some(child.id() as i32)));
                let _ = child.wait();
            }
            Process::Remote { host, name, forwards, .. } => {
                let _ = host.agent.call(&Request::Stop { name: name.clone() }, super::agent::CALL_TIMEOUT);
                for (here, there) in forwards.drain(..) {
                    host.ssh.cancel_forward(&here, &there);
                }
            }
        }
    }
}
