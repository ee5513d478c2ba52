//! Shared by the integration tests: one set-up for the whole suite (file-locked
//! inside `setup::prepare`, so test binaries build the image once), and a lock so
//! only one test at a time runs QEMU on a 2-core machine.
#![allow(dead_code)]

use migbench::guest::ImageInputs;
use migbench::host::{self, FileLock};
use migbench::machine::AccelRequest;
use migbench::setup::{self, Environment, Platform};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub mod fuzz;
pub mod two_hosts;

/// The `migbench` binary with a private TMPDIR: its run directories land there,
/// so anything left behind is easy to find.
pub fn migbench(tmp: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_migbench"));
    c.env("TMPDIR", tmp).env_remove("XDG_RUNTIME_DIR").stdin(Stdio::null());
    c
}

pub fn platform() -> &'static Platform {
    static P: OnceLock<Platform> = OnceLock::new();
    P.get_or_init(|| setup::prepare(&ImageInputs::default().with_env(), None).expect("migbench set-up (QEMU + guest image)"))
}

/// Held while a test runs QEMU guests.
pub fn qemu_slot() -> FileLock {
    FileLock::acquire(&host::cache_dir().join("test-qemu.lock")).expect("test QEMU lock")
}

/// The platform and environment with the accelerator `auto` picks (KVM where it
/// works, never hard-coded TCG) and the QEMU chosen for it, as every command has them.
pub async fn chosen() -> &'static (Platform, Environment) {
    static C: tokio::sync::OnceCell<(Platform, Environment)> = tokio::sync::OnceCell::const_new();
    C.get_or_init(|| async {
        let mut p = platform().clone();
        let env = setup::environment(&mut p, AccelRequest::Auto).await.expect("resolving the accelerator and its QEMU");
        (p, env)
    })
    .await
}

/// The environment of [`chosen`].
pub async fn environment() -> Environment {
    chosen().await.1.clone()
}

/// Processes whose command line mentions `marker` (e.g. a test's private TMPDIR).
pub fn processes_mentioning(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) {
            found.push((pid, cmd));
        }
    }
    found
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie is dead for our purposes; a reaped pid has no /proc entry.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

pub fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p).map(|mut d| d.next().is_none()).unwrap_or(true)
}

pub fn results(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Writes `profile` to a file and runs it with `migbench run --quiet`; returns the
/// temporary directory (keep it alive), the results and everything printed.
pub fn run_profile(profile: &str) -> (tempfile::TempDir, Vec<serde_json::Value>, String) {
    let (tmp, rs, text, code) = run_profile_code(profile);
    assert_eq!(code, Some(0), "{text}");
    (tmp, rs, text)
}

/// As `run_profile`, but any exit code: 3 means a run did not end healthy.
pub fn run_profile_code(profile: &str) -> (tempfile::TempDir, Vec<serde_json::Value>, String, Option<i32>) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("profile.toml");
    std::fs::write(&path, profile).unwrap();
    let out = tmp.path().join("out");
    let o = migbench(tmp.path()).arg("run").arg(&path).arg("--out").arg(&out).arg("--quiet").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let rs = results(&out);
    (tmp, rs, text, o.status.code())
}

/// Waits until `child` (a migbench whose TMPDIR holds `marker`) runs both QEMUs of a
/// migration, lets it go on for `settle`, sends SIGINT, and waits for it to exit;
/// returns its exit status and everything it wrote on stderr.
pub fn interrupt_mid_migration(child: &mut std::process::Child, marker: &str, settle: std::time::Duration) -> (std::process::ExitStatus, String) {
    interrupt_once_running(child, marker, |c| c.contains("qemu-system"), 2, "source and destination never both started", settle)
}

/// [`interrupt_mid_migration`] once `count` of the processes mentioning `marker`
/// match `which` (e.g. the destinations of several migrations); `never` is the
/// failure when they do not within 120 s.
pub fn interrupt_once_running(
    child: &mut std::process::Child,
    marker: &str,
    which: impl Fn(&str) -> bool,
    count: usize,
    never: &str,
    settle: std::time::Duration,
) -> (std::process::ExitStatus, String) {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(120);
    while processes_mentioning(marker).iter().filter(|(_, c)| which(c)).count() < count {
        assert!(Instant::now() < deadline, "{never}");
        assert!(child.try_wait().unwrap().is_none(), "migbench exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(settle);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "migbench did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

/// Asserts that a run record's guest ended healthy and intact: the health check
/// passed, and where its workload stamps memory (the memory dirtier) the check of
/// every page ran and found none wrong. No QEMU version or console symptom excuses
/// a broken guest; a test that wants the unhealthy path injects its own fault.
pub fn assert_healthy_and_intact(r: &serde_json::Value) {
    let h = &r["health"];
    let workload = r["guest"]["workload"].as_str().unwrap_or_else(|| panic!("a record without its guest's workload: {r}"));
    assert_eq!(h["healthy"], true, "{workload}: the guest is not healthy: {h}");
    assert_intact(workload, h);
}

/// Asserts that a health record (as JSON) shows stamped memory verified clean,
/// where `workload` stamps memory; that nothing was claimed where it does not.
pub fn assert_intact(workload: &str, health: &serde_json::Value) {
    let i = &health["integrity"];
    if workload.starts_with("memdirty") {
        assert!(i["pages_checked"].as_u64().unwrap_or(0) > 0, "{workload}: its memory was not verified: {health}");
        assert_eq!(i["mismatches"], 0, "{workload}: its memory is not intact: {health}");
    } else {
        assert!(i.is_null(), "{workload} owns no stamped memory, yet integrity was recorded: {health}");
    }
}
