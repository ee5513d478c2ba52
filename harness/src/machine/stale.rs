//! What a migbench killed with SIGKILL leaves behind, found and removed by the next
//! migbench to start and by `migbench doctor --clean`.
//!
//! A SIGKILL runs no destructor. The QEMUs die with migbench anyway
//! (PR_SET_PDEATHSIG), the test network is a namespace that vanishes with its last
//! process, and the set-up locks are flock(2) locks, which the kernel releases when
//! their holder dies (the lock files stay, empty, and are reused). What stays is the
//! process's cgroups, `migbench-<pid>-<name>` (v2, v1 cpu and v1 cpuset), and its
//! run directory, `migbench-run-<pid>-XXXXXX` (sockets and console logs).
//!
//! State is left alone while the process it names runs. That process is the owner
//! when it is a migbench (the command, or a test of this crate) and started before
//! the state was made: a pid is reused, and a process started later did not make it.

use super::run_dir::{RUN_DIR_LOCK, parse_pid, run_dir_bases, run_dir_owner};
use super::{cgroup, usage};
use anyhow::{Context, Result, bail};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Clock slack when comparing a process's start with the time state was made: the
/// boot time is known to the second, and file times lag the clock a little.
const SLACK: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cgroup,
    RunDir,
}

/// State of a migbench process that no longer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub kind: Kind,
    pub path: PathBuf,
    /// The process that made it.
    pub pid: u32,
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Cgroup => "cgroup",
            Kind::RunDir => "run directory",
        };
        write!(f, "{what} {} left by migbench pid {}, which no longer runs", self.path.display(), self.pid)
    }
}

/// The pid in a cgroup name `migbench-<pid>-<name>`.
pub fn cgroup_owner(name: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix("migbench-")?.split_once('-')?;
    parse_pid(pid)
}

/// The state letter and start time (clock ticks after boot) in `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> Option<(char, Option<u64>)> {
    // The command name is in parentheses and may hold spaces and parentheses itself.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 of the line; the state is field 3.
    Some((state, fields.nth(18).and_then(|t| t.parse().ok())))
}

/// Whether a process with this command name, executable and environment is a
/// migbench: the command, this crate's unit tests (`migbench-<hash>`), or another
/// test of this crate (cargo gives those `CARGO_PKG_NAME=migbench`).
pub fn looks_like_migbench(comm: &str, exe: Option<&str>, environ: &[u8]) -> bool {
    let named = |n: &str| n == "migbench" || n.starts_with("migbench-");
    let exe_name = exe.map(|e| e.trim_end_matches(" (deleted)")).and_then(|e| e.rsplit('/').next());
    named(comm.trim()) || exe_name.is_some_and(named) || environ.split(|&b| b == 0).any(|v| v == b"CARGO_PKG_NAME=migbench")
}

/// A running process, as far as deciding who owns state goes.
#[derive(Debug, Clone)]
pub struct Process {
    pub started: Option<SystemTime>,
    pub migbench: bool,
}

impl Process {
    /// The process with this pid, unless there is none or it is a zombie.
    pub fn read(pid: u32) -> Option<Process> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let (state, ticks) = parse_stat(&std::fs::read_to_string(proc.join("stat")).ok()?)?;
        if matches!(state, 'Z' | 'X' | 'x') {
            return None;
        }
        let started = ticks.zip(boot_time()).map(|(t, boot)| boot + Duration::from_secs_f64(t as f64 / usage::ticks_per_sec()));
        let comm = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
        let exe = std::fs::read_link(proc.join("exe")).ok().map(|p| p.display().to_string());
        // The environment only when the name does not tell (it may not be readable:
        // then the process is not one of ours, which would run as us).
        let migbench = looks_like_migbench(&comm, exe.as_deref(), &[])
            || looks_like_migbench(&comm, exe.as_deref(), &std::fs::read(proc.join("environ")).unwrap_or_default());
        Some(Process { started, migbench })
    }
}

fn boot_time() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}


/// Whether `pid` is a running migbench (the command or a test of this crate).
pub fn is_live_migbench(pid: u32) -> bool {
    Process::read(pid).is_some_and(|p| p.migbench)
}

/// Whether the process that made state at `made`, and named it with `pid`, still
/// runs: `pid` is a live migbench that started before then (a process started
/// later only got the pid again). Without a time, any live migbench with the pid.
pub fn owner_runs(pid: u32, made: Option<SystemTime>) -> bool {
    let Some(p) = Process::read(pid) else { return false };
    let reused = match (p.started, made) {
        (Some(started), Some(made)) => started > made + SLACK,
        _ => false,
    };
    p.migbench && !reused
}

/// When a file or directory was made, or (no earlier than that) last changed.
fn made(path: &Path) -> Option<SystemTime> {
    let md = std::fs::symlink_metadata(path).ok()?;
    md.created().or_else(|_| md.modified()).ok()
}

/// Whether the migbench that made run directory `dir` still runs, from the lock it
/// holds there while it does; `None` when the directory has no lock file (made by an
/// older migbench) or it cannot be tried.
pub fn run_dir_owner_alive(dir: &Path) -> Option<bool> {
    let lock = dir.join(RUN_DIR_LOCK);
    if !lock.exists() {
        return None;
    }
    crate::host::FileLock::try_acquire(&lock).ok().map(|taken| taken.is_none())
}

/// The run directories named after `pid`, in the places migbench makes them.
fn run_dirs_of(pid: u32) -> Vec<PathBuf> {
    run_dirs().into_iter().filter(|(owner, path)| *owner == pid && path.is_dir()).map(|(_, path)| path).collect()
}

/// Every entry named as a run directory in the places [`run_dir_bases`] names,
/// with the pid its name carries.
fn run_dirs() -> Vec<(u32, PathBuf)> {
    let mut dirs = Vec::new();
    for base in run_dir_bases() {
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(run_dir_owner) {
                dirs.push((pid, e.path()));
            }
        }
    }
    dirs
}

/// Whether the migbench that made `dir` (named after `pid`) still runs: exactly by
/// the lock of its run directory (for a cgroup, of any run directory named after the
/// same pid) when there is one, else by its name and start time.
fn alive(pid: u32, dir: &Path, kind: Kind) -> bool {
    let locks: Vec<bool> = match kind {
        Kind::Cgroup => run_dirs_of(pid).iter().filter_map(|d| run_dir_owner_alive(d)).collect(),
        Kind::RunDir => run_dir_owner_alive(dir).into_iter().collect(),
    };
    if locks.is_empty() { owner_runs(pid, made(dir)) } else { locks.iter().any(|&a| a) }
}

/// Everything migbench processes that no longer run left behind: cgroups, and run
/// directories (ours, in the places [`run_dir_bases`] names).
pub fn find() -> Vec<Leftover> {
    let mut found = Vec::new();
    for dir in cgroup::leftovers() {
        let Some(pid) = dir.file_name().and_then(|n| n.to_str()).and_then(cgroup_owner) else { continue };
        if !alive(pid, &dir, Kind::Cgroup) {
            found.push(Leftover { kind: Kind::Cgroup, path: dir, pid });
        }
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    for (pid, path) in run_dirs() {
        use std::os::unix::fs::MetadataExt;
        // Only real directories of ours: /tmp is everyone's, and a link is not followed.
        let Ok(md) = std::fs::symlink_metadata(&path) else { continue };
        if md.is_dir() && md.uid() == uid && !alive(pid, &path, Kind::RunDir) {
            found.push(Leftover { kind: Kind::RunDir, path, pid });
        }
    }
    found
}

/// Whether a command line (NUL-separated, as in `/proc/<pid>/cmdline`) is a QEMU
/// that migbench started: its `-name` is `migbench-…`.
pub fn is_migbench_qemu(cmdline: &[u8]) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.windows(2).any(|w| w[0] == b"-name" && w[1].starts_with(b"migbench-"))
}

fn cmdline(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

fn kill(pid: u32) -> bool {
    // SAFETY: kill has no memory-safety preconditions; the pid is an orphaned QEMU.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) == 0 }
}

/// What removing one leftover did.
#[derive(Debug, Default)]
pub struct Removal {
    /// QEMUs of the dead migbench that were still running, killed.
    pub killed: Vec<u32>,
    /// Other processes in a cgroup, moved to its parent group.
    pub moved: Vec<u32>,
    /// This host's interfaces the dead migbench had shaped, cleared.
    pub unshaped: Vec<String>,
}

/// Clears the shaping of the interface a dead migbench noted in its run directory
/// (`remote::SHAPED_FILE`): its root qdisc, when it is one migbench puts there, and
/// any delay line's settings; not when a live migbench notes the same interface.
/// The note goes first, so a clean-up that fails later never clears it again.
fn unshape_noted_in(dir: &Path) -> Vec<String> {
    use crate::network::tc::{self, Runner};
    let noted = noted_in(dir);
    let _ = std::fs::remove_file(dir.join(super::remote::SHAPED_FILE));
    let live = live_notes();
    let mut done = Vec::new();
    for dev in noted.iter().map(String::as_str).filter(|d| !live.iter().any(|l| l == d)) {
        let here = tc::Local::host();
        let root = here.run(&["tc".into(), "qdisc".into(), "show".into(), "dev".into(), dev.into()]).ok().and_then(|t| super::remote_link::root_qdisc(&t));
        if matches!(root.as_deref(), Some("htb 1:" | "netem 10:")) && tc::clear(&here, dev).is_ok() {
            let _ = crate::network::delay_line::set(dev, Default::default());
            done.push(dev.to_string());
        }
    }
    done
}

/// The interfaces the run directories of running migbench processes note as shaped.
fn live_notes() -> Vec<String> {
    run_dirs().into_iter().filter(|(_, path)| run_dir_owner_alive(path) == Some(true)).flat_map(|(_, path)| noted_in(&path)).collect()
}

/// The interfaces a run directory's note (`remote::SHAPED_FILE`) names as shaped.
fn noted_in(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(super::remote::SHAPED_FILE)).unwrap_or_default();
    text.lines().map(str::trim).filter(|d| !d.is_empty()).map(String::from).collect()
}

/// Removes one leftover: a cgroup after moving its processes to the parent group
/// (and killing those that are QEMUs of migbench), a run directory after killing
/// any migbench QEMU whose command line points into it.
pub fn remove(l: &Leftover) -> Result<Removal> {
    let mut r = Removal::default();
    match l.kind {
        Kind::Cgroup => {
            let parent = l.path.parent().context("a cgroup without a parent")?.to_path_buf();
            remove_cgroup(&l.path, &parent, &mut r)?;
        }
        Kind::RunDir => {
            r.killed = kill_qemus_in(&l.path);
            r.unshaped = unshape_noted_in(&l.path);
            if let Err(e) = std::fs::remove_dir_all(&l.path) {
                // Another migbench starting at the same time may have removed it first.
                if l.path.exists() {
                    return Err(e).with_context(|| format!("removing {}", l.path.display()));
                }
            }
        }
    }
    Ok(r)
}

fn remove_cgroup(dir: &Path, parent: &Path, r: &mut Removal) -> Result<()> {
    // Groups inside first (migbench makes none, but rmdir needs them gone).
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path(), parent, r)?;
            }
        }
    }
    let procs = match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(p) => p,
        Err(_) if !dir.exists() => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.join("cgroup.procs").display())),
    };
    for pid in procs.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
        // Out of the group first, so that it can go whether or not the process dies at once.
        if std::fs::write(parent.join("cgroup.procs"), pid.to_string()).is_err() && Process::read(pid).is_none() {
            continue; // It ended meanwhile.
        }
        if is_migbench_qemu(&cmdline(pid)) && kill(pid) {
            r.killed.push(pid);
        } else {
            r.moved.push(pid);
        }
    }
    match cgroup::remove_dir_retrying(dir) {
        Ok(()) => Ok(()),
        Err(e) => {
            let left = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let left = left.split_whitespace().collect::<Vec<_>>().join(" ");
            if left.is_empty() {
                Err(e).with_context(|| format!("removing {}", dir.display()))
            } else {
                bail!("removing {}: {e} (processes still in it: {left})", dir.display())
            }
        }
    }
}

/// Kills migbench QEMUs whose command line names a path inside `dir`.
fn kill_qemus_in(dir: &Path) -> Vec<u32> {
    let plain = format!("{}/", dir.display());
    // QEMU options double commas in paths.
    let escaped = plain.replace(',', ",,");
    let mut killed = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(parse_pid) else { continue };
        let cmd = cmdline(pid);
        if !is_migbench_qemu(&cmd) {
            continue;
        }
        let text = String::from_utf8_lossy(&cmd);
        if (text.contains(&plain) || text.contains(&escaped)) && kill(pid) {
            killed.push(pid);
        }
    }
    killed
}

/// What a clean-up did: a line for each thing removed, and what could not be.
#[derive(Debug, Default)]
pub struct Cleanup {
    pub removed: Vec<String>,
    pub failed: Vec<String>,
}

/// This process's own cgroups and run directories, removed on the way out after a
/// signal (its QEMUs are killed first): `exit` runs no destructor.
pub fn remove_own() -> Cleanup {
    let me = std::process::id();
    let mut c = Cleanup::default();
    let mut mine: Vec<Leftover> = cgroup::leftovers()
        .into_iter()
        .filter(|d| d.file_name().and_then(|n| n.to_str()).and_then(cgroup_owner) == Some(me))
        .map(|path| Leftover { kind: Kind::Cgroup, path, pid: me })
        .collect();
    mine.extend(run_dirs_of(me).into_iter().map(|path| Leftover { kind: Kind::RunDir, path, pid: me }));
    for l in mine {
        match remove(&l) {
            Ok(_) => c.removed.push(l.path.display().to_string()),
            Err(e) => c.failed.push(format!("could not remove {}: {e:#}", l.path.display())),
        }
    }
    c
}

/// Finds and removes everything migbench processes that no longer run left behind.
pub fn clean() -> Cleanup {
    let mut c = Cleanup::default();
    for l in find() {
        match remove(&l) {
            Ok(r) => {
                for pid in &r.killed {
                    c.removed.push(format!("killed QEMU pid {pid} of {}", l.path.display()));
                }
                for dev in &r.unshaped {
                    c.removed.push(format!("took the link shaping off {dev} (noted in {})", l.path.display()));
                }
                let moved = if r.moved.is_empty() {
                    String::new()
                } else {
                    format!(" (its processes {} were moved to the parent group)", r.moved.iter().map(u32::to_string).collect::<Vec<_>>().join(" "))
                };
                c.removed.push(format!("removed {l}{moved}"));
            }
            Err(e) => {
                let denied = e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied));
                let hint = if denied { " (run `migbench doctor --clean` as the user that ran it, or as root)" } else { "" };
                c.failed.push(format!("could not remove the {l}: {e:#}{hint}"));
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_lock_tells_a_live_owner_from_a_dead_one() {
        // Ours, held: alive, whatever the name says.
        let run = crate::machine::run_dir::RunDir::new().unwrap();
        assert_eq!(run_dir_owner_alive(run.path()), Some(true));
        assert!(alive(std::process::id(), run.path(), Kind::RunDir));
        // A lock file nobody holds (its owner was killed): gone, even under a live pid.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RUN_DIR_LOCK), "").unwrap();
        assert_eq!(run_dir_owner_alive(dir.path()), Some(false));
        assert!(!alive(std::process::id(), dir.path(), Kind::RunDir));
        // No lock file (an older migbench's): the name and start time decide.
        let old = tempfile::tempdir().unwrap();
        assert_eq!(run_dir_owner_alive(old.path()), None);
    }

    #[test]
    fn owners_from_names() {
        assert_eq!(cgroup_owner("migbench-123-src-1-456"), Some(123));
        assert_eq!(cgroup_owner("migbench-7-host-Host-1"), Some(7));
        assert_eq!(cgroup_owner("migbench-7-"), Some(7));
        assert_eq!(cgroup_owner("migbench-123"), None);
        assert_eq!(cgroup_owner("migbench-0-src"), None);
        assert_eq!(cgroup_owner("migbench-x1-src"), None);
        assert_eq!(cgroup_owner("migbench--1-src"), None);
        assert_eq!(cgroup_owner("migbench-99999999999-src"), None);
        assert_eq!(cgroup_owner("migbench-run-5-abc"), None);
        assert_eq!(cgroup_owner("other-5-src"), None);
    }

    #[test]
    fn stat_lines() {
        let line = "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 5 6 0 0 20 0 3 0 98765 1000 10 0";
        assert_eq!(parse_stat(line), Some(('S', Some(98765))));
        assert_eq!(parse_stat("1 (z) Z 0"), Some(('Z', None)));
        assert_eq!(parse_stat("garbage"), None);
        let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        assert!(matches!(parse_stat(&own), Some(('R', Some(_)))), "{own}");
    }

    #[test]
    fn what_counts_as_migbench() {
        assert!(looks_like_migbench("migbench\n", None, b""));
        assert!(looks_like_migbench("migbench-3f2a1b\n", None, b""));
        assert!(looks_like_migbench("x", Some("/work/target/debug/migbench (deleted)"), b""));
        assert!(looks_like_migbench("stale-0a1b2c3d", Some("/t/deps/stale-0a1b2c3d"), b"A=1\0CARGO_PKG_NAME=migbench\0B=2\0"));
        assert!(!looks_like_migbench("stale-0a1b2c3d", Some("/t/deps/stale-0a1b2c3d"), b"CARGO_PKG_NAME=migbench-guest\0"));
        assert!(!looks_like_migbench("bash", Some("/usr/bin/bash"), b"MIGBENCH=1\0"));
        assert!(!looks_like_migbench("qemu-system-x86", Some("/usr/bin/qemu-system-x86_64"), b""));
    }

    #[test]
    fn which_pids_are_live_migbench() {
        // A pid that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(!is_live_migbench(dead));
        assert!(!owner_runs(dead, Some(SystemTime::now())));
        // Init runs, but is not a migbench.
        assert!(Process::read(1).is_some());
        assert!(!is_live_migbench(1));
        assert!(!owner_runs(1, Some(SystemTime::now())));
        // This test binary (migbench-<hash>) is one, and owns what it makes now.
        let me = std::process::id();
        assert!(is_live_migbench(me));
        assert!(owner_runs(me, Some(SystemTime::now())));
        assert!(owner_runs(me, None));
        // State made an hour before this process started is not its own: the pid was reused.
        let started = Process::read(me).unwrap().started.unwrap();
        assert!(started <= SystemTime::now() + SLACK);
        assert!(!owner_runs(me, Some(started - Duration::from_secs(3600))));
        // A zombie is not running.
        let zombie = std::process::Command::new("true").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(Process::read(zombie.id()).is_none());
        let mut zombie = zombie;
        zombie.wait().unwrap();
    }

    #[test]
    fn qemu_command_lines() {
        assert!(is_migbench_qemu(b"qemu-system-x86_64\0-name\0migbench-src-1,debug-threads=on\0-m\x00128\0"));
        assert!(!is_migbench_qemu(b"qemu-system-x86_64\0-name\0web\0"));
        assert!(!is_migbench_qemu(b"sleep\0migbench-1\0"));
        assert!(!is_migbench_qemu(b""));
    }

    #[test]
    fn a_dead_owners_run_directory_is_removed_and_a_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let theirs = base.path().join(format!("migbench-run-{dead}-abcdef"));
        std::fs::create_dir_all(theirs.join("src")).unwrap();
        std::fs::write(theirs.join("src/console.log"), "boot").unwrap();
        let l = Leftover { kind: Kind::RunDir, path: theirs.clone(), pid: dead };
        assert!(!owner_runs(dead, made(&theirs)));
        let r = remove(&l).unwrap();
        assert!(r.killed.is_empty() && !theirs.exists());
        // Removing it again (another migbench got there first) is not an error.
        remove(&l).unwrap();
        assert_eq!(l.to_string(), format!("run directory {} left by migbench pid {dead}, which no longer runs", theirs.display()));
        let mine = base.path().join(format!("migbench-run-{}-abcdef", std::process::id()));
        std::fs::create_dir(&mine).unwrap();
        assert!(owner_runs(std::process::id(), made(&mine)));
    }
}
