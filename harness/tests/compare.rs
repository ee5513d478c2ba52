//! `migbench compare` as a CI gate, on small synthetic result sets made from one
//! committed run record: an injected 30 % regression is flagged (exit 4), run-to-run
//! noise is not, an unhealthy run never moves a figure, and a baseline cell that is
//! missing, failed, unhealthy or untested in the current results fails the gate
//! (exit 5) by name.

mod common;

use common::migbench;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A healthy completed run of the committed report data: every synthetic run is a copy.
fn template() -> Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/report/results.jsonl")).unwrap();
    let line = text.lines().find(|l| l.contains("\"c1b4f1bc4245\"")).expect("the template run");
    serde_json::from_str(line).unwrap()
}

/// How one synthetic run ended.
#[derive(Clone, Copy)]
enum End {
    Healthy,
    Unhealthy,
    Cancelled,
}

/// One run of cell `key`, repetition `rep`, taking `total_ms` (downtime and MiB sent follow it).
fn run(key: &str, rep: u64, total_ms: f64, end: End) -> Value {
    let mut v = template();
    v["run"]["profile"] = json!("gate");
    v["run"]["cell_key"] = json!(key);
    v["run"]["repetition"] = json!(rep);
    v["total_time_ms"] = json!(total_ms);
    v["downtime_ms"] = json!(total_ms / 100.0);
    v["transferred_bytes"] = json!((total_ms / 10.0 * 1048576.0) as u64);
    match end {
        End::Healthy => {}
        End::Unhealthy => {
            v["health"]["healthy"] = json!(false);
            v["health"]["detail"] = json!("Kernel panic on the destination's console");
        }
        End::Cancelled => {
            v["outcome"] = json!({"kind": "cancelled", "reason": "not finished after 60 s"});
            for f in ["total_time_ms", "downtime_ms", "transferred_bytes"] {
                v[f] = Value::Null;
            }
        }
    }
    v
}

fn write(dir: &Path, name: &str, runs: &[Value]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, runs.iter().map(|v| v.to_string() + "\n").collect::<String>()).unwrap();
    path
}

/// Three cells, three healthy runs each, a little spread.
fn baseline_runs() -> Vec<Value> {
    let mut out = Vec::new();
    for (key, base) in [("cella", 1000.0), ("cellb", 2000.0), ("cellc", 3000.0)] {
        for (rep, f) in [1.0, 1.01, 0.99].into_iter().enumerate() {
            out.push(run(key, rep as u64, base * f, End::Healthy));
        }
    }
    out
}

/// The baseline's runs with `f(cell, rep, run)` applied; None drops the run.
fn altered(f: impl Fn(&str, u64, Value) -> Option<Value>) -> Vec<Value> {
    baseline_runs()
        .into_iter()
        .filter_map(|v| {
            let (key, rep) = (v["run"]["cell_key"].as_str().unwrap().to_string(), v["run"]["repetition"].as_u64().unwrap());
            f(&key, rep, v)
        })
        .collect()
}

fn scaled(mut v: Value, by: f64) -> Value {
    let t = v["total_time_ms"].as_f64().unwrap() * by;
    v["total_time_ms"] = json!(t);
    v
}

fn compare(tmp: &Path, base: &Path, cur: &Path) -> (Option<i32>, String, String) {
    let o = migbench(tmp).arg("compare").arg(base).arg(cur).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// The line of the cell table naming `key` (that table comes before the figures').
fn cell_line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(&format!("| gate/{key} "))).unwrap_or_else(|| panic!("no line for {key}:\n{out}"))
}

#[test]
fn a_30_percent_regression_is_flagged_and_noise_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write(tmp.path(), "base.jsonl", &baseline_runs());

    // Against itself: every cell compared, nothing changed.
    let (code, out, err) = compare(tmp.path(), &base, &base);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("3 of 3 baseline cells compared") && out.contains("0 significant regression(s)") && !out.contains("REGRESSION"), "{out}");
    assert!(cell_line(&out, "cella").contains("3 of 3 healthy") && cell_line(&out, "cella").contains("compared"), "{out}");

    // Noise: ±2 % per run.
    let noisy = write(tmp.path(), "noisy.jsonl", &altered(|_, rep, v| Some(scaled(v, if rep == 1 { 1.02 } else { 0.98 }))));
    let (code, out, _) = compare(tmp.path(), &base, &noisy);
    assert_eq!(code, Some(0), "noise was flagged:\n{out}");

    // One cell 30 % slower (with a little spread): flagged, and only that cell.
    let slow = write(tmp.path(), "slow.jsonl", &altered(|k, rep, v| Some(if k == "cellb" { scaled(v, 1.29 + rep as f64 * 0.01) } else { v })));
    let summary = tmp.path().join("summary.md");
    let json = tmp.path().join("bench.json");
    let o = migbench(tmp.path())
        .arg("compare")
        .arg(&base)
        .arg(&slow)
        .args(["--max-regression", "10%", "--json"])
        .arg(&json)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{out}");
    let flagged: Vec<&str> = out.lines().filter(|l| l.contains("REGRESSION")).collect();
    assert_eq!(flagged.len(), 1, "{out}");
    assert!(flagged[0].contains("/cellb ") && flagged[0].contains("total_time_ms"), "{out}");
    assert!(std::fs::read_to_string(&summary).unwrap().contains("REGRESSION"));
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(exported.as_array().unwrap().len(), 9, "{exported}");
    assert!(exported.as_array().unwrap().iter().all(|e| e["name"].is_string() && e["value"].is_number() && e["unit"].is_string()));
}

#[test]
fn an_unhealthy_run_moves_no_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write(tmp.path(), "base.jsonl", &baseline_runs());
    // A fourth run of cellb in the current results, 50 times slower, with a broken
    // guest: counted, it would be a regression; it is not counted, and it fails the
    // gate as a broken run instead.
    let mut cur = baseline_runs();
    cur.push(run("cellb", 3, 100_000.0, End::Unhealthy));
    let cur = write(tmp.path(), "cur.jsonl", &cur);
    let (code, out, _) = compare(tmp.path(), &base, &cur);
    assert_eq!(code, Some(5), "{out}");
    assert!(!out.contains("REGRESSION"), "{out}");
    let line = cell_line(&out, "cellb");
    assert!(line.contains("3 of 4 healthy") && line.contains("UNHEALTHY") && line.contains("Kernel panic"), "{line}");

    // The same broken run in the baseline: left out there too, and everything passes.
    let mut broken_base = baseline_runs();
    broken_base.push(run("cellb", 3, 100_000.0, End::Unhealthy));
    let broken_base = write(tmp.path(), "broken-base.jsonl", &broken_base);
    let (code, out, _) = compare(tmp.path(), &broken_base, &base);
    assert_eq!(code, Some(0), "{out}");
    assert!(cell_line(&out, "cellb").contains("3 of 4 healthy") && !out.contains("improvement"), "{out}");
}

#[test]
fn every_baseline_cell_must_be_compared() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write(tmp.path(), "base.jsonl", &baseline_runs());

    // cella missing, cellb cancelled once, cellc with one run left.
    let cur = altered(|k, rep, v| match k {
        "cella" => None,
        "cellb" if rep == 2 => Some(run("cellb", 2, 0.0, End::Cancelled)),
        "cellc" if rep > 0 => None,
        _ => Some(v),
    });
    let cur = write(tmp.path(), "cur.jsonl", &cur);
    let (code, out, _) = compare(tmp.path(), &base, &cur);
    assert_eq!(code, Some(5), "{out}");
    assert!(cell_line(&out, "cella").contains("MISSING") && cell_line(&out, "cella").contains("not in the current results"), "{out}");
    let b = cell_line(&out, "cellb");
    assert!(b.contains("FAILED") && b.contains("2 of 3 healthy") && b.contains("cancelled: not finished after 60 s"), "{b}");
    let c = cell_line(&out, "cellc");
    assert!(c.contains("UNTESTED") && c.contains("the minimum is 2 on each side"), "{c}");
    assert!(out.contains("0 of 3 baseline cells compared"), "{out}");
    let verdict = out.lines().find(|l| l.starts_with("INCOMPLETE")).expect("the incomplete verdict");
    for key in ["cella", "cellb", "cellc"] {
        assert!(verdict.contains(&format!("/{key} ")), "{verdict}");
    }

    // A current cell with no healthy completed run at all.
    let cur = altered(|k, _, v| Some(if k == "cellc" { let mut v = v; v["health"]["healthy"] = json!(false); v["health"]["detail"] = json!("heartbeats stopped"); v } else { v }));
    let cur = write(tmp.path(), "unhealthy.jsonl", &cur);
    let (code, out, _) = compare(tmp.path(), &base, &cur);
    assert_eq!(code, Some(5), "{out}");
    let c = cell_line(&out, "cellc");
    assert!(c.contains("0 of 3 healthy") && c.contains("3 runs: guest not healthy on the destination (heartbeats stopped)"), "{c}");
    assert!(out.contains("2 of 3 baseline cells compared"), "{out}");
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write(tmp.path(), "base.jsonl", &baseline_runs());
    let o = migbench(tmp.path()).arg("compare").arg(&base).arg(&base).args(["--max-regression", "ten"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-regression ten"));
    let o = migbench(tmp.path()).arg("compare").arg(&base).arg(tmp.path().join("none")).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    assert_eq!(o.status.code(), Some(1));
}
