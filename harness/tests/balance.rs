//! `migbench balance --dry-run`: the paper's tables through the binary, every rule,
//! and bad input.

use std::process::Command;

fn balance(args: &[&str]) -> (Option<i32>, String, String) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new(env!("CARGO_BIN_EXE_migbench")).current_dir(&dir).arg("balance").args(args).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn the_papers_tables_give_the_papers_decisions_as_json() {
    let want = [Some(("A2", "Host 3", "Host 2")), Some(("K2", "Host 2", "Host 3")), Some(("K3", "Host 2", "Host 3")), None];
    for (n, want) in want.iter().enumerate() {
        let state = format!("profiles/chandak/table{}.json", n + 1);
        for rule in ["paper", "guarded"] {
            let (code, out, err) = balance(&["--dry-run", "--state", &state, "--rule", rule]);
            assert_eq!(code, Some(0), "{err}");
            let d: serde_json::Value = serde_json::from_str(&out).unwrap();
            for key in ["threshold", "band", "light", "heavy", "moderate", "migration"] {
                assert!(d.get(key).is_some(), "table {}: no {key} in {out}", n + 1);
            }
            match want {
                Some((vm, from, to)) => assert_eq!(d["migration"], serde_json::json!({"vm": vm, "from": from, "to": to}), "table {} {rule}", n + 1),
                None => assert!(d["migration"].is_null(), "table {} {rule}: {out}", n + 1),
            }
        }
    }
}

#[test]
fn compare_rules_prints_every_rule() {
    let (code, out, err) = balance(&["--dry-run", "--state", "profiles/chandak/table1.json", "--compare-rules"]);
    assert_eq!(code, Some(0), "{err}");
    for rule in ["paper", "guarded", "cost-aware", "lightest", "min-stddev"] {
        assert!(out.contains(&format!("| {rule} ")), "{rule} missing:\n{out}");
    }
    assert!(out.contains("A2: Host 3 → Host 2"), "{out}");
}

#[test]
fn bad_input_names_the_file_and_the_fix() {
    let (code, _, err) = balance(&["--state", "profiles/chandak/table1.json"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--dry-run --state FILE.json"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"hosts":[{"name":"h","cpu":"high"}]}"#).unwrap();
    let (code, _, err) = balance(&["--dry-run", "--state", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.json") && err.contains("expected"), "{err}");
    std::fs::write(&bad, r#"{"hosts":[{"name":"h","cpu":10}]}"#).unwrap();
    let (_, _, err) = balance(&["--dry-run", "--state", bad.to_str().unwrap()]);
    assert!(err.contains("at least 2"), "{err}");
    let (_, _, err) = balance(&["--dry-run", "--state", "/no/such.json"]);
    assert!(err.contains("/no/such.json"), "{err}");
    let (_, _, err) = balance(&["--dry-run", "--state", "profiles/chandak/table1.json", "--rule", "random"]);
    assert!(err.contains("cost-aware"), "{err}");
}
