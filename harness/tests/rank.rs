//! `migbench rank` against real guests: a VM that dirties memory fast ranks below an
//! idle VM of the same RAM, in the predicted ranking (nothing migrates), in the
//! measured one, and the model's errors are printed.

mod common;

use common::*;

const PROFILE: &str = r#"
name = "rank"
dirty_rate_s = 1.0
before_s = 0.5
after_s = 0.5
[defaults]
ram_mib = 256
link = "1Gbit"
timeout_s = 120.0
[matrix]
workload = ["memdirty-write:24", "idle"]
"#;

fn place_of(table: &str, vm: &str) -> usize {
    table
        .lines()
        .find(|l| l.contains(&format!("| {vm} ")))
        .and_then(|l| l.split('|').nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{vm} not ranked in:\n{table}"))
}

#[test]
fn a_fast_dirtier_ranks_below_an_idle_vm_predicted_and_measured() {
    platform();
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("rank.toml");
    std::fs::write(&profile, PROFILE).unwrap();

    // Predicted: guests booted, dirty rates measured, nothing migrated.
    let o = migbench(tmp.path()).arg("rank").arg(&profile).arg("--quiet").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("Predicted ranking (nothing migrated"), "{out}");
    assert!(place_of(&out, "workload=idle") < place_of(&out, "workload=memdirty-write:24"), "{out}");
    assert!(out.contains("page-sampling") || out.contains("dirty-bitmap"), "{out}");

    // Capacity planning from the same profile: guests booted, dirty rates measured,
    // nothing migrated, so nothing to fit.
    let json = tmp.path().join("plan.json");
    let o = migbench(tmp.path()).arg("plan").arg(&profile).arg("--quiet").arg("--json").arg(&json).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let dirty = |w: &str| {
        plan["frontier"]["vms"].as_array().unwrap().iter().find(|v| v["vm"].as_str().unwrap().contains(w)).unwrap()["dirty_mib_s"].as_f64().unwrap()
    };
    assert!(dirty("memdirty-write:24") > dirty("idle") + 1.0, "{plan}");
    assert!(plan["fits"]["note"].as_str().unwrap().contains("nothing was migrated"), "{plan}");
    assert!(out.contains("## 2. Evacuation"), "{out}");

    // Measured, with the model beside it.
    let dir = tmp.path().join("validate");
    let o = migbench(tmp.path()).arg("rank").arg(&profile).arg("--validate").arg("--quiet").arg("--out").arg(&dir).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(place_of(&out, "workload=idle") < place_of(&out, "workload=memdirty-write:24"), "{out}");
    assert!(out.contains("Predicted vs measured total time over 2 VMs") && out.contains("Kendall's tau"), "{out}");
    // Every record carries the dirty rate QEMU measured before migrating.
    let rs = results(&dir);
    assert_eq!(rs.len(), 2);
    for r in &rs {
        assert_eq!(r["outcome"]["kind"], "completed", "{r}");
        assert_healthy_and_intact(r);
    }
    let rate = |w: &str| rs.iter().find(|r| r["run"]["cell"]["workload"] == w).unwrap()["dirty_rate_before"]["mib_per_s"].as_f64().unwrap();
    assert!(rate("memdirty-write:24") > rate("idle"), "{rs:?}");

    // The plan of the measured runs compares its one-by-one evacuation with theirs.
    let o = migbench(tmp.path()).arg("plan").arg(&dir).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("Measured one by one:"), "{out}");

    // The same results, ranked again from disk, by another objective too.
    let o = migbench(tmp.path()).arg("rank").arg(&dir).arg("--objective").arg("bytes").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("Ranking by bytes"), "{out}");
    assert!(place_of(&out, "workload=idle") < place_of(&out, "workload=memdirty-write:24"), "{out}");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}

#[test]
fn rank_refuses_what_it_cannot_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let o = migbench(tmp.path()).args(["rank", "no-such-profile"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    let f = tmp.path().join("results.jsonl");
    std::fs::write(&f, "{\"x\":1}\n").unwrap();
    let o = migbench(tmp.path()).arg("rank").arg(&f).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("no run records"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = migbench(tmp.path()).arg("rank").arg(&f).arg("--validate").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--validate takes a profile"));
}
