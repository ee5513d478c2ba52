//! Nothing orphaned: a SIGKILLed migbench leaves its cgroups and its run directory
//! (its QEMUs die with it); `migbench doctor` reports them, `doctor --clean`
//! removes them, and so does the start of any other command. State of a migbench
//! that still runs is left alone.

mod common;

use common::*;
use migbench::host::CgroupVersion;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Long enough to be killed mid-way: one guest capped at half a CPU, migrated three times.
const PROFILE: &str = r#"
name = "stale"
description = "a capped guest, migrated three times"
repetitions = 3
[defaults]
ram_mib = 128
workload = "idle"
link = "1Gbit"
timeout_s = 20.0
cap_percent = 50
"#;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("migbench-{pid}-");
    migbench::machine::cgroup::leftovers().into_iter().filter(|d| d.file_name().unwrap().to_string_lossy().starts_with(&prefix)).collect()
}

fn run_dirs_of(tmp: &Path, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("migbench-run-{pid}-");
    std::fs::read_dir(tmp).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
}

/// Checks that everything under `dir` (and `dir`) is for its owner only; returns
/// how many sockets it saw.
fn assert_private(dir: &Path) -> usize {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A migbench that runs may remove a file while we look: that is fine.
    let Ok(md) = std::fs::symlink_metadata(dir) else { return 0 };
    let mode = md.permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "{} is {mode:o}: group or others may use it", dir.display());
    let mut sockets = 0;
    if md.is_dir() {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            sockets += assert_private(&e.path());
        }
    } else if md.file_type().is_socket() {
        sockets += 1;
    }
    sockets
}

/// A pid that no process has now (one that ran and was reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Kills the processes a test started and removes its own cgroup, however it ends.
struct Guard {
    children: Vec<Child>,
    cgroups: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.cgroups {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn what_a_sigkilled_migbench_leaves_is_reported_then_removed() {
    platform();
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().display().to_string();
    let profile = tmp.path().join("stale.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let child = migbench(tmp.path())
        .arg("run")
        .arg(&profile)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = Guard { children: vec![child], cgroups: Vec::new() };

    // Its capped guest runs: a cgroup and the run directory with the guest's sockets.
    let deadline = Instant::now() + Duration::from_secs(180);
    while cgroups_of(pid).is_empty() || run_dirs_of(tmp.path(), pid).is_empty() {
        assert!(Instant::now() < deadline, "no cgroup and run directory of migbench {pid} appeared");
        assert!(guard.children[0].try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The run directory and everything in it (sockets, console log) is private.
    let sockets = assert_private(&run_dirs_of(tmp.path(), pid)[0]);
    assert!(sockets >= 2, "no QMP and channel sockets in the run directory");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    guard.children[0].wait().unwrap();
    // Its QEMUs die with it (PR_SET_PDEATHSIG).
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_mentioning(&marker).iter().any(|(_, c)| c.contains("qemu-system")) {
        assert!(Instant::now() < deadline, "a QEMU outlived its SIGKILLed migbench: {:?}", processes_mentioning(&marker));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its cgroups and run directory stay: no destructor ran.
    let cgroups = cgroups_of(pid);
    let dirs = run_dirs_of(tmp.path(), pid);
    assert!(!cgroups.is_empty() && dirs.len() == 1, "cgroups {cgroups:?}, run directories {dirs:?}");
    let gone = |p: &PathBuf| format!("{} left by migbench pid {pid}, which no longer runs", p.display());

    // `doctor` reports them and removes nothing.
    let o = migbench(tmp.path()).arg("doctor").output().unwrap();
    let t = text(&o);
    for p in cgroups.iter().chain(&dirs) {
        assert!(t.contains(&gone(p)), "doctor does not report {}:\n{t}", p.display());
        assert!(p.exists(), "doctor removed {}:\n{t}", p.display());
    }
    assert!(t.contains("doctor --clean"), "{t}");

    // `doctor --clean` removes them and says so.
    let o = migbench(tmp.path()).args(["doctor", "--clean"]).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for p in &cgroups {
        assert!(t.contains(&format!("removed cgroup {}", gone(p))), "{t}");
        assert!(!p.exists(), "{} is still there:\n{t}", p.display());
    }
    assert!(t.contains(&format!("removed run directory {}", gone(&dirs[0]))), "{t}");
    assert!(!dirs[0].exists(), "{t}");
    let o = migbench(tmp.path()).args(["doctor", "--clean"]).output().unwrap();
    let t = text(&o);
    assert!(o.status.success() && !t.contains(&format!("migbench pid {pid},")), "{t}");

    // A second leftover, made by hand with a dead pid's name: a cgroup holding an
    // orphaned QEMU (a shell named like one) and another process, and a run directory.
    // Beside them, state named with this test's pid: a migbench that runs.
    let version = CgroupVersion::detect();
    let root = match version {
        CgroupVersion::V2 => PathBuf::from("/sys/fs/cgroup"),
        CgroupVersion::V1 => PathBuf::from("/sys/fs/cgroup/cpu"),
        CgroupVersion::None => unreachable!("a CPU cap ran above, so there are cgroups"),
    };
    let dead = dead_pid();
    let me = std::process::id();
    assert_eq!(std::env::var("CARGO_PKG_NAME").as_deref(), Ok("migbench"), "cargo names the package that owns this test");
    let (theirs, mine) = (root.join(format!("migbench-{dead}-src-1-1")), root.join(format!("migbench-{me}-mine")));
    guard.cgroups.extend([theirs.clone(), mine.clone()]);
    std::fs::create_dir(&theirs).unwrap();
    std::fs::create_dir(&mine).unwrap();
    let sleeper = Command::new("sleep").arg("120").spawn().unwrap();
    let qemu = Command::new("sh").args(["-c", "read x", "-name", "migbench-src-1"]).stdin(Stdio::piped()).spawn().unwrap();
    let (sleeper_pid, qemu_pid) = (sleeper.id(), qemu.id());
    guard.children.extend([sleeper, qemu]);
    for p in [sleeper_pid, qemu_pid] {
        std::fs::write(theirs.join("cgroup.procs"), p.to_string()).unwrap();
    }
    let their_dir = tmp.path().join(format!("migbench-run-{dead}-AbC123"));
    std::fs::create_dir_all(their_dir.join("src-1")).unwrap();
    std::fs::write(their_dir.join("src-1/console.log"), "booted\n").unwrap();
    let my_dir = tmp.path().join(format!("migbench-run-{me}-XyZ789"));
    std::fs::create_dir(&my_dir).unwrap();

    // An ordinary command that fails still cleans up first.
    let o = migbench(tmp.path()).arg("report").arg(tmp.path().join("no-such-results")).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("does not exist"), "{t}");
    let by_dead = |p: &Path| format!("{} left by migbench pid {dead}, which no longer runs", p.display());
    assert!(t.contains(&format!("migbench: killed QEMU pid {qemu_pid} of {}", theirs.display())), "{t}");
    assert!(t.contains(&format!("migbench: removed cgroup {} (its processes {sleeper_pid} were moved", by_dead(&theirs))), "{t}");
    assert!(t.contains(&format!("migbench: removed run directory {}", by_dead(&their_dir))), "{t}");
    assert!(!theirs.exists() && !their_dir.exists(), "{t}");
    assert!(!t.contains(&format!("pid {me},")), "a live migbench's state was touched:\n{t}");
    assert!(mine.exists() && my_dir.exists(), "{t}");
    // The orphaned QEMU was killed; the other process lives on in the parent group.
    let status = guard.children[2].wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{status}");
    assert!(pid_alive(sleeper_pid));
    let groups = std::fs::read_to_string(format!("/proc/{sleeper_pid}/cgroup")).unwrap();
    let cpu = match version {
        CgroupVersion::V2 => groups.lines().find(|l| l.starts_with("0::")),
        _ => groups.lines().find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "cpu"))),
    };
    assert!(cpu.is_some_and(|l| l.ends_with(":/")), "{groups}");
}
