//! Post-copy preempt and post-copy recovery against real QEMU: a dirtying guest
//! migrated with its page requests on a channel of their own (over both
//! transports), and a post-copy migration whose link is cut, paused on both sides,
//! recovered with `migrate-recover` and completed, the guest healthy and intact.

mod common;

use common::*;
use serde_json::Value;

fn by_cell<'a>(rs: &'a [Value], strategy: &str, transport: &str) -> &'a Value {
    rs.iter()
        .find(|r| r["run"]["cell"]["strategy"] == strategy && r["run"]["cell"]["transport"] == transport)
        .unwrap_or_else(|| panic!("no run of {strategy} over {transport}"))
}

/// The link cut once post-copy runs, with plain post-copy and with preempt (whose
/// second channel must be re-opened too): QEMU pauses on both sides, the driver
/// brings the link back and recovers the migration, which completes with the guest
/// intact.
#[test]
fn a_link_cut_during_post_copy_pauses_it_and_recovery_completes_it() {
    platform();
    let _slot = qemu_slot();
    let before = migbench::network::namespaces_in_use();
    // 256 MiB with 64 MiB rewritten all the time, at 50 Mbit/s: post-copy lasts
    // seconds, so the cut meets it running.
    let (tmp, rs, out, code) = run_profile_code(
        "name = \"recovery\"\nrepetitions = 1\nbefore_s = 0.5\nafter_s = 0.5\n\
         [defaults]\nram_mib = 256\nworkload = \"memdirty-write:64\"\nlink = \"50Mbit\"\ntransport = \"tcp\"\n\
         fault = \"cut-link-postcopy:2\"\ntimeout_s = 120.0\n\
         [[cell]]\nstrategy = \"postcopy\"\n[[cell]]\nstrategy = \"postcopy-preempt\"\n",
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rs.len(), 2, "{out}");
    for strategy in ["postcopy", "postcopy-preempt"] {
        let r = by_cell(&rs, strategy, "tcp");
        assert_eq!(r["outcome"]["kind"], "completed", "{strategy}: {r}");
        assert_eq!(r["health"]["runs_on"], "destination");
        assert_healthy_and_intact(r);
        assert_eq!(r["evidence"]["took_effect"], true, "{strategy}: {}", r["evidence"]["note"]);
        let f = &r["fault"];
        assert_eq!(f["fault"], "cut-link-postcopy:2");
        assert_eq!((f["struck"].as_bool(), f["as_expected"].as_bool()), (Some(true), Some(true)), "{strategy}: {f}");
        let action = f["action"].as_str().unwrap();
        assert!(action.contains("migrate-pause on both sides") && action.contains("migrate-recover on the destination (tcp:127.0.0.1:"), "{action}");
        assert!(f["expected"].as_str().unwrap().contains("postcopy-paused"), "{f}");

        // QEMU said so itself: paused on both sides, then running post-copy again.
        let rec = &f["recovery"];
        let t = |k: &str| rec[k].as_f64().unwrap_or_else(|| panic!("{strategy}: no {k}: {rec}"));
        let struck = f["at_ms"].as_f64().unwrap();
        assert!(t("source_paused_ms") >= struck && t("destination_paused_ms") >= struck, "{strategy}: {rec}");
        assert!(t("recover_sent_ms") > t("source_paused_ms") && t("resumed_ms") >= t("recover_sent_ms"), "{strategy}: {rec}");
        // The link stayed down 2 s, so the migration stood paused most of that.
        assert!(t("paused_for_ms") >= 1000.0 && t("recovery_ms") >= 0.0, "{strategy}: {rec}");
        assert_eq!(rec["completed"], true);
        let event = |side: &str, status: &str| {
            r["events"].as_array().unwrap().iter().any(|e| e["side"] == side && e["name"] == "MIGRATION" && e["data"]["status"] == status)
        };
        for side in ["source", "destination"] {
            assert!(event(side, "postcopy-paused"), "{strategy}: the {side} never reported postcopy-paused");
        }
        assert!(event("source", "postcopy-recover"), "{strategy}: the source never reported postcopy-recover");
        let statuses: Vec<&str> = r["progress"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
        let paused = statuses.iter().position(|s| *s == "postcopy-paused").expect("a sample while paused");
        assert!(statuses[paused..].contains(&"completed"), "{statuses:?}");
        // Nothing moved while paused: the byte count stands still across the paused samples.
        let sent: Vec<u64> =
            r["progress"].as_array().unwrap().iter().filter(|s| s["status"] == "postcopy-paused").filter_map(|s| s["transferred"].as_u64()).collect();
        assert!(sent.len() >= 5 && sent.iter().max() == sent.iter().min(), "{strategy}: bytes moved while paused: {sent:?}");
    }
    assert!(out.contains("Faults injected: 2 runs, 2 as QEMU's semantics say"), "{out}");

    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
    let now = migbench::network::namespaces_in_use();
    assert!(now.difference(&before).next().is_none(), "a network namespace outlived the sweep");
}

/// Post-copy preempt against plain post-copy on the same dirtying guest: each
/// completes healthy, preempt is read back on on both sides (over unix and tcp, so
/// its second channel opens on both transports), and the report compares their
/// page requests, stall time and total time.
#[test]
fn post_copy_preempt_migrates_a_dirtying_guest_over_unix_and_tcp_with_its_proof() {
    platform();
    let _slot = qemu_slot();
    let (_tmp, rs, out, code) = run_profile_code(
        "name = \"preempt\"\nrepetitions = 1\nbefore_s = 0.5\nafter_s = 0.5\n\
         [defaults]\nram_mib = 256\nworkload = \"memdirty-write:64\"\nlink = \"50Mbit\"\ntimeout_s = 120.0\n\
         [[cell]]\nstrategy = \"postcopy\"\ntransport = \"tcp\"\n\
         [[cell]]\nstrategy = \"postcopy-preempt\"\ntransport = \"tcp\"\n\
         [[cell]]\nstrategy = \"postcopy-preempt\"\ntransport = \"unix\"\n",
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rs.len(), 3, "{out}");
    for (strategy, transport) in [("postcopy", "tcp"), ("postcopy-preempt", "tcp"), ("postcopy-preempt", "unix")] {
        let r = by_cell(&rs, strategy, transport);
        assert_eq!(r["outcome"]["kind"], "completed", "{strategy} {transport}: {}", r["outcome"]);
        assert_healthy_and_intact(r);
        let e = &r["evidence"];
        assert_eq!(e["took_effect"], true, "{strategy} {transport}: {}", e["note"]);
        assert_eq!(e["postcopy"]["entered"], true);
        let preempt = strategy == "postcopy-preempt";
        for side in ["source", "destination"] {
            assert_eq!(e["settings"][side]["capabilities"]["postcopy-preempt"], preempt, "{strategy} {transport} {side}: {}", e["settings"]);
            assert_eq!(e["settings"][side]["capabilities"]["postcopy-ram"], true);
        }
        if preempt {
            assert_eq!(e["postcopy"]["preempt"], true, "{e}");
            assert!(e["note"].as_str().unwrap().ends_with("postcopy-preempt read back on on both sides"), "{}", e["note"]);
        } else {
            assert!(e["postcopy"].get("preempt").is_none(), "{e}");
        }
        // The figures the comparison is made of.
        assert!(r["postcopy_requests"].as_u64().unwrap() > 0, "{strategy} {transport}: the destination requested no page");
        assert!(r["postcopy_blocktime_ms"].as_f64().is_some(), "{strategy} {transport}: no blocktime");
        assert!(r["total_time_ms"].as_f64().unwrap() > 0.0);
    }
    assert!(out.contains("Post-copy page faults per cell"), "{out}");
    assert!(out.contains("strategy=postcopy-preempt"), "{out}");
}

/// The command line knows the strategy and the fault, with the row's help, and
/// refuses a cut that cannot happen before anything starts.
#[test]
fn migrate_takes_the_strategy_and_the_fault_and_refuses_what_cannot_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = migbench(tmp.path()).args(args).output().unwrap();
        (o.status.code(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let (code, help) = run(&["migrate", "--help"]);
    assert_eq!(code, Some(0), "{help}");
    let summary = migbench::migration::strategy::Strategy::PostcopyPreempt.spec().summary;
    assert!(help.contains("postcopy-preempt") && help.contains(summary), "{help}");
    assert!(help.contains("--fault <FAULT>") && help.contains("cut-link-postcopy[:S]"), "{help}");
    for (args, says) in [
        (&["migrate", "--strategy", "postcopy", "--fault", "cut-link-postcopy"][..], "set transport = \"tcp\""),
        (&["migrate", "--transport", "tcp", "--fault", "cut-link-postcopy:3"][..], "never switches to post-copy: set strategy to one of postcopy, hybrid, postcopy-preempt"),
        (&["migrate", "--fault", "cut-link-postcopy:0"][..], "is not a number of seconds"),
        (&["migrate", "--fault", "unplug"][..], "cut-link-postcopy[:S]"),
        (&["migrate", "--strategy", "teleport"][..], "postcopy-preempt"),
    ] {
        let (code, out) = run(args);
        assert!(code.is_some_and(|c| c != 0) && out.contains(says) && !out.contains("panicked"), "{args:?}: {out}");
    }
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}
