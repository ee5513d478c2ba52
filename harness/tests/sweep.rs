//! Profiles run end to end through the CLI: reuse of booted guests, results on
//! disk, and a sweep killed mid-way that `--resume` finishes without repeating or
//! losing a run.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

const PROFILE: &str = r#"
name = "tiny"
description = "two link speeds, two repetitions, one small idle guest"
repetitions = 2
[defaults]
ram_mib = 128
workload = "idle"
timeout_s = 60.0
[matrix]
link = ["1Gbit", "unlimited"]
"#;

fn run_keys(rs: &[serde_json::Value]) -> Vec<String> {
    rs.iter().map(|r| format!("{}/{}", r["run"]["cell_key"].as_str().unwrap(), r["run"]["repetition"])).collect()
}

#[test]
fn a_profile_runs_every_cell_reusing_one_guest() {
    platform();
    let _slot = qemu_slot();
    let (tmp, rs, text) = run_profile(PROFILE);
    let (profile, out) = (tmp.path().join("profile.toml"), tmp.path().join("out"));
    assert_eq!(rs.len(), 4, "{text}");
    assert_eq!(run_keys(&rs).into_iter().collect::<HashSet<_>>().len(), 4);
    for r in &rs {
        assert_eq!(r["outcome"]["kind"], "completed", "{r}");
        assert_healthy_and_intact(r);
        assert_eq!(r["run"]["profile"], "tiny");
    }
    // One guest booted, then migrated back and forth for every run.
    let reused = rs.iter().filter(|r| r["run"]["reused_guest"] == true).count();
    assert_eq!(reused, 3, "{text}");
    let boots: HashSet<String> = rs.iter().map(|r| r["guest_boot_ms"].to_string()).collect();
    assert_eq!(boots.len(), 1, "all runs used the guest of one boot");
    // The summary table has one row per cell.
    assert!(text.contains("| link=1Gbit") && text.contains("| link=unlimited"), "{text}");
    assert!(text.contains("4 runs in"), "{text}");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());

    // Running it again into the same directory without --resume is refused.
    let o = migbench(tmp.path()).arg("run").arg(&profile).arg("--out").arg(&out).arg("--quiet").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
}

#[test]
fn a_killed_sweep_resumes_without_repeating_or_losing_a_run() {
    platform();
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().display().to_string();
    let profile = tmp.path().join("tiny.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let out = tmp.path().join("out");
    let mut child = migbench(tmp.path())
        .arg("run")
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while results(&out).is_empty() {
        assert!(Instant::now() < deadline, "no result appeared");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it could be killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The harshest stop: SIGKILL, no clean-up code runs in migbench.
    child.kill().unwrap();
    child.wait().unwrap();
    let before = results(&out);
    assert!(!before.is_empty() && before.len() < 4, "{} results before the kill", before.len());
    // PR_SET_PDEATHSIG takes the QEMUs down with their harness.
    std::thread::sleep(Duration::from_millis(500));
    let left = processes_mentioning(&marker);
    assert!(left.iter().all(|(_, c)| !c.contains("qemu-system")), "QEMU outlived a SIGKILLed migbench: {left:?}");
    // A crash mid-write leaves a torn line: it must be dropped, not break the resume.
    let path = out.join("results.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"run\": {\"profile\": \"tiny\", \"cell_k");
    std::fs::write(&path, text).unwrap();

    let o = migbench(tmp.path()).arg("run").arg(&profile).arg("--out").arg(&out).arg("--resume").arg("--quiet").output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("torn"), "the torn line must be reported: {stderr}");
    let after = results(&out);
    assert_eq!(after.len(), 4, "every run exactly once after the resume");
    let keys = run_keys(&after);
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 4, "no run repeated: {keys:?}");
    assert_eq!(&after[..before.len()], &before[..], "results from before the kill are kept as they were");
    for r in &after {
        assert_eq!(r["outcome"]["kind"], "completed", "{r}");
        assert_healthy_and_intact(r);
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("already done, skipped"));
}

#[test]
fn shards_and_merge_give_the_whole_matrix() {
    // No QEMU: --dry-run lists what each shard would run.
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("tiny.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let mut listed = Vec::new();
    for i in 0..2 {
        let o = migbench(tmp.path())
            .args(["run", profile.to_str().unwrap(), "--dry-run", "--shard", &format!("{i}/2"), "--out"])
            .arg(tmp.path().join(format!("s{i}")))
            .output()
            .unwrap();
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        listed.extend(text.lines().filter(|l| l.trim_start().starts_with("cell ")).map(|l| l.trim().to_string()));
    }
    listed.sort();
    assert_eq!(listed.len(), 4, "{listed:?}");
    listed.dedup();
    assert_eq!(listed.len(), 4);

    // merge joins shard result files and drops duplicates.
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let line = |k: &str, r: u32| format!("{{\"run\":{{\"profile\":\"tiny\",\"cell_key\":\"{k}\",\"repetition\":{r}}}}}\n");
    std::fs::write(a.join("results.jsonl"), line("x", 0) + &line("x", 1)).unwrap();
    std::fs::write(b.join("results.jsonl"), line("y", 0) + &line("x", 1)).unwrap();
    let merged = tmp.path().join("m");
    let o = migbench(tmp.path()).arg("merge").arg(&a).arg(&b).arg("--out").arg(&merged).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(results(&merged).len(), 3);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 duplicates dropped"));
    let o = migbench(tmp.path()).arg("merge").arg(tmp.path().join("nope")).arg("--out").arg(tmp.path().join("m2")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("nope"));
}

#[test]
fn a_cpu_cap_changed_at_run_time_shows_in_the_busy_guests_cpu_use() {
    platform();
    let _slot = qemu_slot();
    let (_tmp, rs, _) = run_profile(
        "name = \"cap\"\nbefore_s = 2.0\nafter_s = 0.0\n[defaults]\nram_mib = 128\nworkload = \"burn\"\nlink = \"unlimited\"\n[matrix]\ncap_percent = [25, 100]\n",
    );
    assert_eq!(rs.len(), 2);
    let before = |cap: u64| {
        let r = rs.iter().find(|r| r["run"]["cell"]["cap_percent"] == cap).unwrap();
        assert_healthy_and_intact(r);
        &r["cpu_percent"]["before"]
    };
    let cpu = |cap: u64| before(cap)["qemu_percent"].as_f64().unwrap();
    let (capped, full) = (cpu(25), cpu(100));
    assert!(capped < 40.0, "a 25 % cap let QEMU use {capped:.0} %");
    assert!(full > capped + 30.0, "lifting the cap to 100 % gave {full:.0} % (capped: {capped:.0} %)");
    // The guest's own accounting is recorded beside the host's: uncapped, its one
    // vCPU is busy nearly all the time by its own clock.
    let guest = |cap: u64| before(cap)["guest_percent"].as_f64().unwrap_or_else(|| panic!("no guest view: {}", before(cap)));
    let (g_capped, g_full) = (guest(25), guest(100));
    assert!(g_full > 80.0 && g_full <= 101.0, "an uncapped burning vCPU says it was busy {g_full:.0} %");
    assert!(g_capped > 0.0 && g_capped <= 101.0, "the capped guest says {g_capped:.0} %");
    // Both cells ran on one booted guest: the cap changed while it ran.
    assert_eq!(rs.iter().filter(|r| r["run"]["reused_guest"] == true).count(), 1);
    // migbench has exited: none of its cgroups may remain.
    assert!(cgroups_of_dead_processes().is_empty(), "cgroups left behind: {:?}", cgroups_of_dead_processes());
}

/// The run's guest workload reported a positive rate before, during and after its migration.
fn assert_rate_in_every_phase(r: &serde_json::Value) {
    let w = &r["workload_rate"];
    for phase in ["before", "during", "after"] {
        assert!(w[phase].as_f64().unwrap_or(0.0) > 0.0, "{}: no {phase} rate: {w}", r["run"]["cell"]["workload"]);
    }
}

/// migbench cgroups whose creator (the pid in the name) is gone.
fn cgroups_of_dead_processes() -> Vec<std::path::PathBuf> {
    migbench::machine::cgroup::leftovers()
        .into_iter()
        .filter(|d| {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            let pid: u32 = name.split('-').nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            !pid_alive(pid)
        })
        .collect()
}

#[test]
fn the_balloon_takes_memory_from_the_guest_before_migrating() {
    platform();
    let _slot = qemu_slot();
    let (_tmp, rs, _) = run_profile(
        "name = \"balloon\"\nbefore_s = 0.0\nafter_s = 0.0\n[defaults]\nram_mib = 256\nlink = \"unlimited\"\n[matrix]\nballoon_mib = [96, 0]\n",
    );
    let saved = |b: u64| {
        let r = rs.iter().find(|r| r["run"]["cell"]["balloon_mib"] == b).unwrap();
        assert_healthy_and_intact(r);
        r["balloon"]["saved_mib"].as_f64().unwrap()
    };
    let (inflated, deflated) = (saved(96), saved(0));
    assert!((inflated - 96.0).abs() <= 2.0, "balloon of 96 MiB saved {inflated} MiB");
    // The second cell reused the guest (migrated with its balloon) and deflated it again.
    assert!(deflated.abs() <= 2.0, "deflated balloon still holds {deflated} MiB");
}

#[test]
fn the_guest_workload_rate_is_recorded_per_phase() {
    platform();
    let _slot = qemu_slot();
    let (_tmp, rs, _) = run_profile(
        "name = \"rate\"\nbefore_s = 1.5\nafter_s = 1.0\n[defaults]\nram_mib = 256\nworkload = \"linpack:60\"\nlink = \"200Mbit\"\nstrategy = \"postcopy\"\n",
    );
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_healthy_and_intact(r);
    let w = &r["workload_rate"];
    assert_eq!(w["unit"], "flop", "{w}");
    assert_rate_in_every_phase(r);
    assert!(w["slowdown_percent"].is_number(), "{w}");
}

#[test]
fn a_fast_dirtier_needs_more_passes_and_bytes_than_an_idle_guest() {
    platform();
    let _slot = qemu_slot();
    // 50 MiB/s of changing data against a 500 Mbit/s link (~60 MiB/s): pre-copy
    // converges, but only after several passes.
    let (_tmp, rs, _) = run_profile(
        "name = \"dirty\"\nbefore_s = 0.5\nafter_s = 0.5\n[defaults]\nram_mib = 256\nlink = \"500Mbit\"\ntimeout_s = 120.0\n[matrix]\nworkload = [\"idle\", \"memdirty-write:64:50\"]\n",
    );
    assert_eq!(rs.len(), 2);
    let get = |w: &str| {
        let r = rs.iter().find(|r| r["run"]["cell"]["workload"] == w).unwrap();
        assert_eq!(r["outcome"]["kind"], "completed", "{w}: {}", r["outcome"]);
        assert_healthy_and_intact(r);
        (r["iterations"].as_u64().unwrap(), r["transferred_bytes"].as_u64().unwrap())
    };
    let (idle_passes, idle_bytes) = get("idle");
    let (dirty_passes, dirty_bytes) = get("memdirty-write:64:50");
    assert!(dirty_passes > idle_passes, "dirtier {dirty_passes} passes, idle {idle_passes}");
    // At least its working set once more than the idle guest sent.
    assert!(dirty_bytes > idle_bytes + 64 * 1024 * 1024, "dirtier {dirty_bytes} bytes, idle {idle_bytes}");
}

#[test]
fn every_cpu_benchmark_reports_rates_per_phase_and_table_5_ranks_them() {
    platform();
    let _slot = qemu_slot();
    let (_tmp, rs, text) = run_profile(
        "name = \"t5\"\nreproduces = \"shreya-table5\"\nbefore_s = 1.5\nafter_s = 1.5\n[defaults]\nram_mib = 128\nlink = \"1Gbit\"\n[matrix]\nworkload = [\"livermore\", \"dhrystone\", \"linpack:100\"]\n",
    );
    assert_eq!(rs.len(), 3);
    for r in &rs {
        assert_healthy_and_intact(r);
        assert_rate_in_every_phase(r);
    }
    assert!(text.contains("Shreya et al., Table 5"), "{text}");
    assert!(text.contains("- paper: Livermore Loops, then Linpack, then Dhrystone"), "{text}");
    for place in ["ours #1:", "ours #2:", "ours #3:"] {
        assert!(text.contains(place), "no {place} in {text}");
    }
    assert!(text.contains("\nOrder: "), "{text}");
}

#[test]
fn the_cap_table_puts_the_papers_numbers_beside_ours() {
    platform();
    let _slot = qemu_slot();
    let (_tmp, rs, text) = run_profile(
        "name = \"t13\"\nreproduces = \"shreya-tables1-3\"\nbefore_s = 2.0\nafter_s = 0.0\n[defaults]\nram_mib = 128\nworkload = \"livermore\"\nlink = \"unlimited\"\n[matrix]\ncap_percent = [25, 100]\n",
    );
    assert_eq!(rs.len(), 2);
    rs.iter().for_each(assert_healthy_and_intact);
    assert!(text.contains("### Livermore Loops (livermore), 1 vCPU"), "{text}");
    // Their Table 1–3 averages for cap 25, ×4 into % of one CPU.
    assert!(text.contains("24.9 / 25.0 / 25.0"), "{text}");
    assert!(text.contains("Livermore Loops 1 vCPU: "), "{text}");
}
