//! The `migbench` binary as a user runs it: bad input gets a clear error and a
//! non-zero exit with nothing left running; good input gets a measured migration.

mod common;

use common::*;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};


fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs a command that must fail before any guest starts, with a message naming
/// the input (`names`) and the fix (`fix`).
fn fails_clearly(args: &[&str], envs: &[(&str, &str)], names: &str, fix: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = migbench(tmp.path());
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{args:?} succeeded:\n{t}");
    assert!(o.status.code().is_some(), "{args:?} died of a signal (a panic?):\n{t}");
    assert!(t.contains(names), "{args:?}: message does not name {names:?}:\n{t}");
    assert!(t.contains(fix), "{args:?}: message does not say {fix:?}:\n{t}");
    assert!(!t.contains("panicked"), "{args:?} panicked:\n{t}");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}

#[test]
fn bad_numbers_and_names_are_refused_with_the_fix() {
    fails_clearly(&["migrate", "--ram", "0"], &[], "--ram 0", "--ram 256");
    fails_clearly(&["migrate", "--vcpus", "0"], &[], "--vcpus 0", "--vcpus 1");
    fails_clearly(&["migrate", "--link", "fast"], &[], "\"fast\"", "1Gbit");
    fails_clearly(&["migrate", "--accel", "hvf"], &[], "hvf", "auto, kvm, tcg");
    fails_clearly(&["migrate", "--timeout", "0"], &[], "--timeout 0", "300");
    fails_clearly(&["migrate", "--timeout", "1e20"], &[], "--timeout 100000000000000000000", "300");
    fails_clearly(&["migrate", "--xbzrle-cache", "99999999999999"], &[], "--xbzrle-cache 99999999999999", "64");
    fails_clearly(&["migrate", "--ram", "256", "--workload", "memdirty-write:4096"], &[], "memdirty-write:4096", "at most RAM − 64 MiB");
    fails_clearly(&["run", "no-such-profile"], &[], "no-such-profile", "profiles/");
    fails_clearly(&["migrate", "--boot-timeout", "18446744073709551615"], &[], "--boot-timeout 18446744073709551615", "120");
    fails_clearly(&["migrate", "--load", "open:100"], &[], "--load", "--workload http");
    fails_clearly(&["migrate", "--workload", "http", "--load", "open:100", "--probe-hz", "1000000"], &[], "--probe-hz 1000000", "0 (off) to");
    fails_clearly(&["migrate", "--workload", "http", "--load", "open:100", "--load-window", "-1"], &[], "--load-window -1", "0 to 600");
}

#[test]
fn bench_refuses_bad_options_before_it_sets_anything_up() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let file = file.path().to_str().unwrap();
    for (args, names, fix) in [
        (vec!["bench", "--boots", "100000"], "--boots 100000", "0 (skip) to 1000"),
        (vec!["bench", "--workload-seconds=-1"], "--workload-seconds -1", "0 (skip) to 3600"),
        (vec!["bench", "--load-seconds", "NaN"], "--load-seconds NaN", "0 (skip) to 600"),
        (vec!["bench", "--boot-timeout", "0"], "--boot-timeout 0", "e.g. 120"),
        (vec!["bench", "--profile", "no-such-profile"], "no-such-profile", "profiles/"),
        (vec!["bench", "--out", file], file, "give a directory"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let o = migbench(tmp.path()).args(&args).output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}:\n{t}");
        assert!(t.contains(names) && t.contains(fix), "{args:?}: the message must name the input and the fix:\n{t}");
        // Refused before set-up: no accelerator was chosen, no guest booted.
        assert!(!t.contains("migbench: accelerator") && !t.contains("boot 1/"), "{args:?} set things up first:\n{t}");
    }
}

#[test]
fn missing_files_and_programs_are_named() {
    fails_clearly(&["migrate", "--kernel", "/nonexistent/vmlinuz"], &[], "/nonexistent/vmlinuz", "--kernel");
    fails_clearly(&["migrate", "--guest-bin", "/nonexistent/init"], &[], "/nonexistent/init", "MIGBENCH_GUEST_BIN");
    fails_clearly(&["migrate"], &[("MIGBENCH_QEMU", "/nonexistent/qemu")], "MIGBENCH_QEMU=/nonexistent/qemu", "unset it");
    // QEMU not installed (not on PATH, an empty cache) and installing forbidden: say
    // how to get one. On Debian 12 that is a QEMU ≥ 9.0, not the system's 7.2.
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap();
    let (names, fix) = if migbench::host::OsRelease::read().is_bookworm() {
        ("MIGBENCH_NO_INSTALL forbids fetching bookworm-backports's QEMU", "--qemu PATH")
    } else {
        ("QEMU is not installed", "apt-get install qemu-system-x86")
    };
    fails_clearly(&["migrate"], &[("PATH", "/nonexistent"), ("MIGBENCH_NO_INSTALL", "1"), ("MIGBENCH_CACHE", cache)], names, fix);
}

#[test]
fn a_guest_that_never_says_ready_is_reported_with_its_console() {
    let p = platform();
    let _slot = qemu_slot();
    // A kernel whose virtio drivers "are built in" per modules.builtin but are not:
    // the guest boots and never finds its channel.
    let fake = tempfile::tempdir().unwrap();
    let builtin: String = migbench::guest::kmod::GUEST_MODULES.iter().map(|m| format!("kernel/drivers/{m}.ko\n")).collect();
    std::fs::write(fake.path().join("modules.builtin"), builtin).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = migbench(tmp.path())
        .args(["migrate", "--ram", "128", "--accel", "tcg", "--boot-timeout", "25", "--out"])
        .arg(tmp.path().join("out"))
        .arg("--kernel")
        .arg(&p.image.kernel)
        .arg("--modules")
        .arg(fake.path())
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("did not say READY within 25 s"), "{t}");
    assert!(t.contains("no guest channel"), "the error must quote the guest console:\n{t}");
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty(), "QEMU left running");
    assert!(dir_is_empty(tmp.path()) || !tmp.path().join("out").exists(), "no result for a run that never started");
}

#[test]
fn migrate_prints_a_table_and_writes_the_record() {
    platform();
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = migbench(tmp.path()).args(["migrate", "--ram", "128", "--link", "1Gbit", "--json", "--out"]).arg(&out).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not the JSON record ({e}):\n{t}"));
    assert_eq!(rec["outcome"]["kind"], "completed");
    assert_healthy_and_intact(&rec);
    assert_eq!(rec["scenario"]["link"], "1Gbit");
    for k in ["total_time_ms", "downtime_ms", "event_downtime_ms", "setup_time_ms", "wall_time_ms", "transferred_bytes", "iterations", "guest_gap_ms", "guest_boot_ms"] {
        assert!(rec[k].is_number(), "{k} missing in {rec}");
    }
    assert!(["kvm", "tcg"].contains(&rec["environment"]["accel"].as_str().unwrap()));
    assert!(rec["environment"]["qemu_version"].as_str().unwrap().contains('.'));
    // Provenance: both sides' QEMU, where it came from, and the versioned machine type.
    assert_eq!(rec["environment"]["qemu_destination_version"], rec["environment"]["qemu_version"]);
    assert!(["system", "cache"].contains(&rec["environment"]["qemu_origin"].as_str().unwrap()), "{}", rec["environment"]);
    assert!(rec["environment"]["machine_type"].as_str().unwrap().starts_with("pc-i440fx-"), "{}", rec["environment"]);
    assert!(rec["environment"]["guest_kernel"].is_string() && rec["environment"]["host"]["kernel"].is_string());
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let on_disk: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(files[0].path()).unwrap()).unwrap();
    assert_eq!(on_disk, rec);
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
    // The run directory is gone; only the results directory stays.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("out")]);
}

#[test]
fn sigint_mid_migration_kills_every_qemu_and_removes_the_run_directory() {
    platform();
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().display().to_string();
    let mut child = migbench(tmp.path())
        .args(["migrate", "--ram", "256", "--accel", "tcg", "--link", "1Mbit", "--timeout", "600", "--out"])
        .arg(tmp.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both QEMUs (source and destination) run, and the migration has had a moment.
    let (status, err) = interrupt_mid_migration(&mut child, &marker, Duration::from_secs(2));
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("SIGINT"), "{err}");
    std::thread::sleep(Duration::from_millis(200));
    let left = processes_mentioning(&marker);
    assert!(left.is_empty(), "left running after SIGINT: {left:?}");
    let dirs: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(!dirs.iter().any(|d| d.starts_with("migbench-")), "run directory left behind: {dirs:?}");
}

#[test]
fn setup_is_cached_and_doctor_reports_the_machine() {
    platform();
    let tmp = tempfile::tempdir().unwrap();
    let o = migbench(tmp.path()).arg("setup").output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("building guest image"), "an unchanged image must not be rebuilt:\n{t}");
    assert!(t.contains("guest image") && t.contains("QEMU"), "{t}");

    let _slot = qemu_slot();
    let o = migbench(tmp.path()).arg("doctor").output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in ["QEMU ", "KVM ", "cgroups ", "network ", "guest image ", "built "] {
        assert!(t.contains(want), "doctor output lacks {want:?}:\n{t}");
    }
    assert!(t.contains("KVM         works") || t.contains("KVM         unusable"), "{t}");
    // CI runs as root: the test network must be possible there.
    assert!(t.contains("the test network can be made"), "{t}");
}

#[test]
fn a_qemu_that_dies_at_start_is_reported_at_once() {
    platform();
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("qemu-system-x86_64");
    std::fs::write(
        &fake,
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'QEMU emulator version 7.2.99'; exit 0; fi\necho 'qemu-system-x86_64: -machine pc: unsupported machine type' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let started = Instant::now();
    let o = migbench(tmp.path())
        .args(["migrate", "--accel", "tcg", "--out"])
        .arg(tmp.path().join("out"))
        .env("MIGBENCH_QEMU", &fake)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("QEMU exited") && t.contains("unsupported machine type"), "{t}");
    // A QEMU the user chose is used as it is, and one older than 9.0 under TCG is marked.
    assert!(t.contains("WARNING: QEMU 7.2.99 under TCG, as the migration sender, corrupts guests"), "{t}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}: the connect timeouts were waited out", started.elapsed());
}

/// A results file written by a newer migbench (a record schema this one does not
/// know) is refused by name, not half-read: its fields may mean something else.
#[test]
fn a_record_of_a_newer_schema_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let golden = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/report/results.jsonl")).unwrap();
    let mut lines: Vec<serde_json::Value> = golden.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines[1]["schema"] = serde_json::json!(99);
    let body: String = lines.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(dir.path().join("results.jsonl"), body).unwrap();
    let d = dir.path().to_str().unwrap();
    for args in [vec!["compare", d, d], vec!["report", d, "--format", "json"], vec!["rank", d]] {
        let o = migbench(dir.path()).args(&args).output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}:\n{t}");
        assert!(t.contains("record 2") && t.contains("schema 99"), "{args:?}: does not name the record and its schema:\n{t}");
        assert!(t.contains("update this one"), "{args:?}: does not say what to do:\n{t}");
        assert!(!t.contains("panicked"), "{args:?}:\n{t}");
    }
}
