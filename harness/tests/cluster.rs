//! The policy engine on a live cluster: three emulated hosts (cgroups with their own
//! CPU capacity) running small cpu-duty guests, unbalanced at the start, balanced by
//! real migrations within a bounded number of rounds.

mod common;

use common::*;
use std::path::Path;

/// Runs `balance --cluster` on the shipped profile sized for a small TCG machine;
/// returns the exit code, everything printed, cluster.json, and migbench's pid.
fn run_cluster(tmp: &Path, out: &Path) -> (Option<i32>, String, serde_json::Value, u32) {
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/cluster-tcg.toml");
    let child = migbench(tmp)
        .arg("balance")
        .arg("--cluster")
        .arg(&profile)
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_to_string(out.join("cluster.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    (o.status.code(), text, run, pid)
}

#[test]
fn an_unbalanced_cluster_ends_balanced_by_real_migrations() {
    platform();
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let (code, text, run, pid) = run_cluster(tmp.path(), &tmp.path().join("out"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Balanced: every host is moderate"), "{text}");
    let rounds = run["rounds"].as_array().unwrap();
    // It started unbalanced: the first round found a heavy and a light host and moved a VM.
    assert!(!rounds[0]["decision"]["heavy"].as_array().unwrap().is_empty(), "{text}");
    assert!(run["migrations"].as_u64().unwrap() >= 1 && rounds.len() <= 5, "{text}");
    // Every migration was really performed and left a healthy guest.
    for r in rounds.iter().filter(|r| !r["outcome"].is_null()) {
        assert_eq!(r["outcome"], "completed", "{r}");
        assert_eq!(r["healthy"], true, "{r}");
        assert!(r["total_time_ms"].as_f64().unwrap() > 0.0);
    }
    // The last round is the balanced one, with no move.
    let last = rounds.last().unwrap();
    assert!(last["decision"]["migration"].is_null() && last["decision"]["heavy"].as_array().unwrap().is_empty());
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
    // The hosts' cgroups (migbench-<pid>-host-…) are gone.
    let left: Vec<_> = migbench::machine::cgroup::leftovers().into_iter().filter(|p| p.display().to_string().contains(&format!("migbench-{pid}-"))).collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}
