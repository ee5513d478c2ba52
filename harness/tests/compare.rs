//! `migbench compare` as a CI gate, on the committed reference results: an injected
//! 30 % regression is flagged (exit 4), run-to-run noise is not.

mod common;

use common::migbench;
use std::path::{Path, PathBuf};

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/reference/which-vm/results.jsonl")
}

/// A copy of the reference with `f(cell_key, repetition, total_time_ms)` applied.
fn altered(dir: &Path, name: &str, f: impl Fn(&str, u64, f64) -> f64) -> PathBuf {
    let text = std::fs::read_to_string(reference()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["run"]["cell_key"].as_str().unwrap().to_string();
        let rep = v["run"]["repetition"].as_u64().unwrap();
        if let Some(t) = v["total_time_ms"].as_f64() {
            v["total_time_ms"] = serde_json::json!(f(&key, rep, t));
        }
        out += &(v.to_string() + "\n");
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn a_30_percent_regression_is_flagged_and_noise_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let first_key = {
        let text = std::fs::read_to_string(reference()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        v["run"]["cell_key"].as_str().unwrap().to_string()
    };
    // Against itself: nothing changed.
    let o = migbench(tmp.path()).arg("compare").arg(reference()).arg(reference()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("0 significant regression(s)") && !out.contains("REGRESSION"), "{out}");

    // Noise: one repetition 2 % slower, the other 1 % faster.
    let noisy = altered(tmp.path(), "noisy.jsonl", |_, rep, t| if rep == 0 { t * 1.02 } else { t * 0.99 });
    let o = migbench(tmp.path()).arg("compare").arg(reference()).arg(&noisy).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "noise was flagged:\n{out}");

    // One cell 30 % slower in both repetitions (with a little spread): flagged.
    let slow = altered(tmp.path(), "slow.jsonl", |k, rep, t| if k == first_key { t * if rep == 0 { 1.29 } else { 1.31 } } else { t });
    let summary = tmp.path().join("summary.md");
    let json = tmp.path().join("bench.json");
    let o = migbench(tmp.path())
        .arg("compare")
        .arg(reference())
        .arg(&slow)
        .arg("--max-regression")
        .arg("10%")
        .arg("--json")
        .arg(&json)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{out}");
    let flagged: Vec<&str> = out.lines().filter(|l| l.contains("REGRESSION")).collect();
    assert_eq!(flagged.len(), 1, "{out}");
    assert!(flagged[0].contains(&first_key) && flagged[0].contains("total_time_ms"), "{out}");
    assert!(std::fs::read_to_string(&summary).unwrap().contains("REGRESSION"));
    let exported: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(exported.as_array().unwrap().iter().all(|e| e["name"].is_string() && e["value"].is_number() && e["unit"].is_string()));

    // Bad input is named.
    let o = migbench(tmp.path()).arg("compare").arg(reference()).arg(&slow).args(["--max-regression", "ten"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-regression ten"));
    let o = migbench(tmp.path()).arg("compare").arg(reference()).arg(tmp.path().join("none")).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}
