//! `migbench evacuate` as a user runs it: three guests evacuated one at a time and
//! all at once, every guest healthy and intact, the three really in flight together;
//! bad input refused before anything boots; nothing left behind on error or Ctrl-C.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The evacuation records in `out`, by the number at once.
fn records(out: &Path) -> Vec<Value> {
    let mut rs: Vec<Value> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("evacuate-p"))
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .collect();
    rs.sort_by_key(|r| r["parallel"].as_u64());
    rs
}

fn nothing_left(tmp: &Path) {
    let marker = tmp.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(processes_mentioning(&marker).is_empty(), "left running: {:?}", processes_mentioning(&marker));
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().flatten().map(|e| e.file_name()).filter(|n| n != "out").collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// From each guest's record: when `migrate` was sent and when its slot was freed.
fn intervals(r: &Value) -> Vec<(f64, f64)> {
    r["guests"].as_array().unwrap().iter().map(|g| (g["migrate_sent_ms"].as_f64().unwrap(), g["slot_freed_ms"].as_f64().unwrap())).collect()
}

#[test]
fn three_guests_evacuated_one_at_a_time_and_all_at_once_arrive_healthy_and_intact() {
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = migbench(tmp.path())
        .args(["evacuate", "--guests", "3", "--ram", "128", "--workload", "memdirty-write:8", "--parallel", "1,3", "--link", "1Gbit", "--timeout", "60"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let rs = records(&out);
    assert_eq!(rs.iter().map(|r| r["parallel"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 3], "one record per evacuation:\n{t}");
    for r in &rs {
        let p = r["parallel"].as_u64().unwrap();
        assert_eq!(r["record"], "evacuation");
        let guests = r["guests"].as_array().unwrap();
        assert_eq!(guests.len(), 3, "P={p}: every guest in the record");
        // Each migration at link/P, read back from the source QEMU.
        let share = 125_000_000 / p;
        for g in guests {
            let rec = &g["record"];
            assert_eq!(rec["outcome"]["kind"], "completed", "P={p} {}: {rec}", g["name"]);
            assert_healthy_and_intact(rec);
            assert_eq!(rec["health"]["runs_on"], "destination");
            assert_eq!(g["max_bandwidth_read_back"].as_u64(), Some(share), "P={p} {}", g["name"]);
            assert!(rec["dirty_rate_before"]["mib_per_s"].is_f64(), "P={p}: the model's input was measured: {rec}");
            let (sent, running) = (g["migrate_sent_ms"].as_f64().unwrap(), g["running_at_destination_ms"].as_f64().unwrap());
            assert!(sent < running, "P={p} {}: {sent} .. {running}", g["name"]);
        }
        let f = &r["figures"];
        assert_eq!(f["healthy"], "3 of 3 healthy", "P={p}: {f}");
        // The evacuation's time: first migrate to the last guest running there.
        let first = guests.iter().map(|g| g["migrate_sent_ms"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
        let last = guests.iter().map(|g| g["running_at_destination_ms"].as_f64().unwrap()).fold(0.0, f64::max);
        let wall = f["wall_time_ms"].as_f64().unwrap_or_else(|| panic!("P={p}: no evacuation time: {f}"));
        assert!((wall - (last - first)).abs() < 0.2, "P={p}: {wall} vs {first}..{last}");
        assert!(r["predicted"]["makespan_s"].as_f64().unwrap() > 0.0, "P={p}: {}", r["predicted"]);
        assert_eq!(r["predicted"]["schedule"]["k"].as_u64(), Some(p));
    }
    // One at a time: each migration began after the one before it had ended.
    let mut one = intervals(&rs[0]);
    one.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in one.windows(2) {
        assert!(w[1].0 >= w[0].1, "P=1 overlapped: {one:?}");
    }
    // All at once: one instant inside all three (the last to start began before the first to end ended).
    let three = intervals(&rs[1]);
    let latest_start = three.iter().map(|i| i.0).fold(0.0, f64::max);
    let earliest_end = three.iter().map(|i| i.1).fold(f64::INFINITY, f64::min);
    assert!(latest_start < earliest_end, "P=3: the three were never in flight together: {three:?}");
    assert_eq!(rs[1]["figures"]["max_in_flight"], 3);
    assert_eq!(rs[0]["figures"]["max_in_flight"], 1);
    // The table has both evacuations.
    assert!(t.contains("| at once") && t.contains("predicted s") && t.matches("3 of 3 healthy").count() >= 2, "{t}");
    nothing_left(tmp.path());
}

/// A command that must fail before anything boots, naming the input and the fix.
fn fails_clearly(args: &[&str], names: &str, fix: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let o = migbench(tmp.path()).arg("evacuate").args(args).arg("--out").arg(tmp.path().join("out")).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}:\n{t}");
    assert!(t.contains(names), "{args:?}: does not name {names:?}:\n{t}");
    assert!(t.contains(fix), "{args:?}: does not say {fix:?}:\n{t}");
    assert!(!t.contains("panicked") && !t.contains("accelerator"), "{args:?}: got as far as setting up:\n{t}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{args:?} took {:?}: it did more than check its input", t0.elapsed());
    nothing_left(tmp.path());
}

#[test]
fn bad_input_is_refused_before_anything_boots() {
    fails_clearly(&["--guests", "0"], "--guests 0", "e.g. --guests 3");
    fails_clearly(&["--guests", "65"], "--guests 65", "at most 64");
    fails_clearly(&["--guests", "3", "--parallel", "0"], "--parallel 0", "1 to 3");
    fails_clearly(&["--guests", "3", "--parallel", "1,4"], "only 3 guests", "give at most 3, or N");
    fails_clearly(&["--guests", "2", "--parallel", "1,two"], "\"two\"", "1,2,N");
    // 8 guests of 64 GiB, and up to 8 destinations beside them: more than any test machine has.
    fails_clearly(&["--guests", "8", "--ram", "65536"], "--guests 8 × --ram 65536", "use fewer guests (--guests) or smaller ones (--ram)");
    fails_clearly(&["--guests", "2", "--workload", "http"], "--workload http", "memdirty-write");
    fails_clearly(&["--guests", "2", "--fault", "kill-source"], "--fault kill-source", "migbench run");
    fails_clearly(&["--guests", "2", "--ram", "128", "--workload", "memdirty-write:100"], "memdirty-write:100", "at most RAM − 64 MiB");
    fails_clearly(&["--guests", "2", "--warmup=-1"], "--warmup -1", "0 to 600");
}

#[test]
fn a_guest_that_never_boots_stops_the_evacuation_and_leaves_nothing() {
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    // No guest boots its kernel to READY in 1 s under TCG here (they take 2.5–5 s);
    // a restore from a snapshot would (0.2 s), so these boot fresh.
    let o = migbench(tmp.path())
        .args(["evacuate", "--guests", "2", "--ram", "128", "--parallel", "2", "--boot-timeout", "1", "--boot", "fresh"])
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("booting guest") && t.contains("READY"), "{t}");
    assert!(records(&tmp.path().join("out")).is_empty(), "no record of an evacuation that never ran:\n{t}");
    nothing_left(tmp.path());
}

#[test]
fn ctrl_c_mid_evacuation_leaves_nothing_behind() {
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().display().to_string();
    let mut child = migbench(tmp.path())
        .args(["evacuate", "--guests", "2", "--ram", "128", "--workload", "memdirty-write:8", "--parallel", "2", "--link", "100Mbit", "--timeout", "60"])
        .arg("--out")
        .arg(tmp.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two sources and both destinations: the migrations are under way.
    let (status, err) = interrupt_once_running(
        &mut child,
        &marker,
        |c| c.contains("qemu-system") && c.contains("incoming"),
        2,
        "the destinations never started",
        Duration::from_millis(500),
    );
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("stopped by SIGINT"), "{err}");
    nothing_left(tmp.path());
}

#[test]
fn two_guests_evacuated_together_to_another_host_over_ssh_arrive_healthy_and_intact() {
    platform();
    let _slot = qemu_slot();
    let host = migbench::network::test_host::TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // The guests write at 32 MiB/s, not flat out: two guests dirtying memory as fast
    // as TCG goes keep both cores of a 2-core runner busy (each QEMU's main loop
    // too), and then starting the far QEMUs and setting them up took 2 to 30 s,
    // longer than a migration, so the two would be in flight one after the other.
    let o = migbench(tmp.path())
        .args(["evacuate", "--guests", "2", "--ram", "128", "--workload", "memdirty-write:8:32", "--parallel", "2", "--link", "1Gbit", "--timeout", "60"])
        .arg("--dest")
        .arg(host.url())
        .arg("--ssh-key")
        .arg(host.key())
        .arg("--ssh-option")
        .arg(format!("UserKnownHostsFile={}", host.known_hosts().display()))
        .args(["--ssh-option", "StrictHostKeyChecking=yes", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let rs = records(&out);
    assert_eq!(rs.len(), 1, "{t}");
    let r = &rs[0];
    assert_eq!(r["destination"], host.url());
    for g in r["guests"].as_array().unwrap() {
        let rec = &g["record"];
        assert_eq!(rec["outcome"]["kind"], "completed", "{}: {rec}", g["name"]);
        assert_healthy_and_intact(rec);
        // It runs on the far host, reached over the link, not over SSH or loopback.
        assert_eq!(rec["environment"]["destination_host"]["target"], host.url());
        assert_eq!(rec["environment"]["destination_host"]["migrate_address"], host.ip().to_string());
        assert_eq!(g["max_bandwidth_read_back"].as_u64(), Some(62_500_000));
    }
    assert_eq!(r["figures"]["healthy"], "2 of 2 healthy");
    let both = intervals(r);
    assert!(both[0].0.max(both[1].0) < both[0].1.min(both[1].1), "the two were never in flight together: {both:?}");
    // While the host still runs (its drop kills everything in it): no QEMU or agent of
    // ours left there.
    let deadline = Instant::now() + Duration::from_secs(15);
    let far = || processes_mentioning("-name migbench-").into_iter().chain(processes_mentioning("/agent/migbench-")).filter(|(_, c)| c.contains("qemu-system") || c.contains(" agent")).collect::<Vec<_>>();
    while !far().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(far().is_empty(), "left running on the far host: {:?}", far());
    drop(host);
    nothing_left(tmp.path());
}
