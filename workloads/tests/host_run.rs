//! The guest's workloads run on the host too (`migbench-guest run`).

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_migbench-guest")).args(args).output().unwrap();
    (o.status.code(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn linpack_and_burn_report_a_rate() {
    for w in ["linpack:50", "burn", "memdirty-write:4", "cpu-duty:30", "dhrystone", "livermore:short"] {
        let (code, out) = run(&["run", w, "--seconds", "0.5"]);
        assert_eq!(code, Some(0), "{out}");
        let rate: f64 = out.split(": ").nth(1).and_then(|r| r.split(' ').next()).and_then(|r| r.parse().ok()).unwrap_or(0.0);
        assert!(rate > 0.0, "{w}: no rate in {out:?}");
    }
}

#[test]
fn bad_arguments_say_what_to_write() {
    let (code, out) = run(&["run", "dance"]);
    assert_eq!(code, Some(2));
    assert!(out.contains("linpack:N"), "{out}");
    let (code, out) = run(&["run", "burn", "--seconds", "-1"]);
    assert_eq!(code, Some(2));
    assert!(out.contains("--seconds"), "{out}");
    let (code, _) = run(&["run", "idle"]);
    assert_eq!(code, Some(2));
}

#[test]
fn a_rate_limited_dirtier_keeps_near_its_target() {
    for mode in ["write", "read"] {
        let (code, out) = run(&["run", &format!("memdirty-{mode}:2:40"), "--seconds", "3"]);
        assert_eq!(code, Some(0), "{out}");
        // Rounds of 2 MiB against 40 MiB/s over 3 s: one round is under 2 % of it.
        let rate = rate_of(&out);
        assert!((36.0..=44.0).contains(&rate), "{mode}: target 40 MiB/s ± 10 %, got {rate}: {out}");
    }
}

fn rate_of(out: &str) -> f64 {
    out.split(": ").nth(1).and_then(|r| r.split(' ').next()).and_then(|r| r.parse().ok()).unwrap_or(0.0)
}

#[test]
fn copies_run_and_a_bad_count_is_refused() {
    let (code, out) = run(&["run", "dhrystone", "--seconds", "1", "--copies", "2"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(rate_of(&out) > 0.0, "{out}");
    let (code, out) = run(&["run", "dhrystone", "--copies", "0"]);
    assert_eq!(code, Some(2));
    assert!(out.contains("--copies"), "{out}");
}

#[test]
fn livermore_prints_its_means_per_span() {
    let (code, out) = run(&["run", "livermore", "--seconds", "1"]);
    assert_eq!(code, Some(0), "{out}");
    let line = out.lines().find(|l| l.starts_with("livermore MFLOPS means")).unwrap_or_else(|| panic!("no means in {out:?}"));
    let means = migbench_guest::livermore::parse_report(line.split(": ").nth(1).unwrap());
    assert_eq!(means.len(), 4, "{line}");
    assert!(means.iter().all(|(_, m)| m.harmonic > 0.0), "{line}");
}
