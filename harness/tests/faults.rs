//! The fault matrix (profiles/faults.toml) against real QEMU: each fault is a
//! recorded outcome, the guest ends where QEMU's semantics say (verified, not
//! assumed), the sweep goes on to the next cell, and nothing is left behind.

mod common;

use common::*;

fn by_fault<'a>(rs: &'a [serde_json::Value], fault: &str, strategy: &str) -> &'a serde_json::Value {
    rs.iter()
        .find(|r| r["run"]["cell"]["fault"] == fault && r["run"]["cell"]["strategy"] == strategy)
        .unwrap_or_else(|| panic!("no run with fault {fault} ({strategy})"))
}

#[test]
fn every_fault_is_a_recorded_outcome_and_the_guest_ends_where_qemu_says() {
    platform();
    let _slot = qemu_slot();
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/faults.toml")).unwrap();
    let before = migbench::network::namespaces_in_use();
    let (tmp, rs, out, code) = run_profile_code(&text);
    // Runs failed on purpose, so the sweep says so (3), and it ran every cell.
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(rs.len(), 7, "the sweep went on past every fault: {out}");

    // Pre-copy, destination killed: failed, the source resumed and its heartbeats go on.
    let r = by_fault(&rs, "kill-destination:1", "precopy");
    assert_eq!(r["outcome"]["kind"], "failed", "{r}");
    assert_eq!(r["health"]["runs_on"], "source");
    assert_healthy_and_intact(r);
    assert!(r["health"]["next_seq"].as_u64() > r["health"]["last_source_seq"].as_u64(), "{}", r["health"]);
    assert_eq!(r["fault"]["as_expected"], true, "{}", r["fault"]);
    assert!(r["fault"]["at_ms"].as_f64().unwrap() >= 1000.0);

    // Source killed: the guest is lost, and the record says so.
    let r = by_fault(&rs, "kill-source:1", "precopy");
    assert_eq!(r["outcome"]["kind"], "failed");
    assert_eq!(r["health"]["runs_on"], "nowhere", "{}", r["health"]);
    assert!(r["health"]["detail"].as_str().unwrap().contains("the guest is lost"), "{}", r["health"]);
    assert_eq!(r["fault"]["as_expected"], true, "{}", r["fault"]);

    // The link cut for 2 s: the migration waits and completes; the guest moved, healthy.
    let r = by_fault(&rs, "cut-link:2", "precopy");
    assert_eq!(r["outcome"]["kind"], "completed", "{r}");
    assert_eq!(r["health"]["runs_on"], "destination");
    assert_healthy_and_intact(r);
    assert!(r["fault"]["action"].as_str().unwrap().contains("cut for 2 s, then restored"), "{}", r["fault"]);
    assert_eq!(r["fault"]["struck"], true);
    assert_eq!(r["fault"]["as_expected"], true, "{}", r["fault"]);
    // Nothing got through while the link was down: QEMU's byte count stands still.
    let at = r["fault"]["at_ms"].as_f64().unwrap();
    let sent: Vec<u64> = r["progress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| (at + 300.0..at + 1700.0).contains(&s["t_ms"].as_f64().unwrap()))
        .filter_map(|s| s["transferred"].as_u64())
        .collect();
    assert!(sent.len() >= 10, "too few samples inside the outage: {sent:?}");
    let moved = sent.iter().max().unwrap() - sent.iter().min().unwrap();
    assert!(moved < 1 << 20, "{moved} bytes went through a link that was down");

    // Dirtier than the link: cancelled at its time limit, the source runs on.
    let r = by_fault(&rs, "none", "precopy");
    assert_eq!(r["outcome"]["kind"], "cancelled", "{r}");
    assert_eq!(r["health"]["runs_on"], "source");
    assert_healthy_and_intact(r);
    assert!(r.get("fault").is_none_or(|f| f.is_null()));

    // The destination QEMU refused to start: QEMU's own words, the source guest fine.
    let r = by_fault(&rs, "bad-qemu-option", "precopy");
    assert!(r["outcome"]["reason"].as_str().unwrap().contains("-migbench-no-such-option: invalid option"), "{r}");
    assert_eq!(r["health"]["runs_on"], "source");
    assert_healthy_and_intact(r);
    assert_eq!(r["fault"]["as_expected"], true);

    // Never READY: the console's last words are in the reason.
    let r = by_fault(&rs, "never-ready:8", "precopy");
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("READY") && reason.contains("console"), "{reason}");
    assert_eq!(r["fault"]["as_expected"], true);

    // Post-copy, destination killed after the switch: the guest is lost.
    let r = by_fault(&rs, "kill-destination:1", "postcopy");
    assert_eq!(r["outcome"]["kind"], "failed");
    assert!(r["outcome"]["reason"].as_str().unwrap().contains("post-copy"), "{r}");
    assert_eq!(r["health"]["runs_on"], "nowhere", "{}", r["health"]);
    assert_eq!(r["fault"]["as_expected"], true, "{}", r["fault"]);

    // The table, and nothing left behind.
    assert!(out.contains("Faults injected: 6 runs, 6 as QEMU's semantics say"), "{out}");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
    let now = migbench::network::namespaces_in_use();
    assert!(now.difference(&before).next().is_none(), "a network namespace outlived the sweep");
}

#[test]
fn a_cut_link_needs_tcp_and_bad_faults_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("p.toml");
    for (body, says) in [
        ("[defaults]\nfault = \"cut-link\"\n", "set transport = \"tcp\""),
        ("[defaults]\nfault = \"kill-everything\"\n", "is not known: write none, kill-destination[:S]"),
        ("[defaults]\nfault = \"kill-source:-1\"\n", "is not a number of seconds"),
        ("[[cell]]\nfault = \"kill-source\"\n[matrix]\nram_mib = [128, 256]\n", "[[cell]] and [matrix] together"),
        ("[[cell]]\nram_mib = 128\n[[cell]]\nram_mib = 128\n", "two [[cell]] entries are the same"),
    ] {
        std::fs::write(&path, format!("name = \"x\"\n{body}")).unwrap();
        let o = migbench(tmp.path()).args(["run", path.to_str().unwrap(), "--dry-run"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{body}: {err}");
    }
}
