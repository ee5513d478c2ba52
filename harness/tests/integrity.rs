//! The memory integrity check catches corruption it did not cause: a page the test
//! itself corrupts inside the guest, and (where the accelerator is TCG) what QEMU
//! 7.2 as a migration sender does to a guest that writes memory.

mod common;

use common::*;
use migbench::machine::site::Site;
use migbench::machine::{self, GuestSpec, Machine, Role};
use migbench::migration::measurement::Outcome;
use migbench::migration::scenario::Scenario;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);

/// A booted source running `workload` and a destination waiting for it.
async fn pair(workload: &str, test_orders: bool) -> (Site, Machine, Machine) {
    let (p, env) = chosen().await;
    let spec = GuestSpec { test_orders, ..GuestSpec::new(256, 1, env.accel).unwrap().with_workload(workload.parse().unwrap()) };
    let site = Site::local(&p.qemu, &p.image, false).unwrap();
    let (src, _) = site.boot(spec, "src", BOOT).await.unwrap();
    let dst = site.start(spec, Role::Incoming, "dst").await.unwrap();
    (site, src, dst)
}

fn scenario() -> Scenario {
    Scenario { link: "1Gbit".parse().unwrap(), downtime_limit_ms: 300, timeout_s: 120.0, ..Scenario::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_the_test_corrupts_in_the_guest_is_found_on_the_destination() {
    let _slot = qemu_slot();
    let (_site, src, mut dst) = pair("memdirty-write:32:20", true).await;
    let mut src = src;
    // Let the writer go round its 8192 pages a few times first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let said = src.channel.test_only_corrupt_page(1234, Duration::from_secs(30)).await.unwrap();
    assert!(said.contains("flipped a bit of page 1234"), "{said}");
    let m = migbench::migration::driver::drive(&mut src, &mut dst, &scenario()).await.unwrap();
    assert_eq!(m.outcome, Outcome::Completed, "{:?}", m.outcome);
    let h = &m.health;
    assert_eq!(h.runs_on, "destination");
    let integrity = h.integrity.unwrap_or_else(|| panic!("no integrity recorded: {h:?}"));
    assert_eq!((integrity.pages_checked, integrity.mismatches, integrity.first_bad_page), (8192, 1, Some(1234)), "{h:?}");
    assert!(!h.healthy, "a corrupted guest counted healthy: {h:?}");
    assert!(h.detail.contains("memory corrupted: 1 of 8192 pages") && h.detail.contains("first bad page 1234"), "{}", h.detail);
    // Everything else about the guest was fine: the corruption is the only cause.
    assert_eq!(h.detail.matches("; ").count(), 0, "{}", h.detail);
    // A report covers what was found since the last one, and the flipped bit is
    // still there: the next check finds it again.
    let again = migbench::migration::health::staying_guest(&mut dst).await;
    assert_eq!(again.integrity.map(|i| (i.mismatches, i.first_bad_page)), Some((1, Some(1234))), "{again:?}");
    assert!(!again.healthy);
    drop((src, dst));
    assert_eq!(machine::live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_guest_refuses_the_test_order_and_arrives_intact() {
    let _slot = qemu_slot();
    // Read mode: its pages are stamped once and checked as it reads them.
    let (_site, mut src, mut dst) = pair("memdirty-read:16:20", false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let said = src.channel.test_only_corrupt_page(7, Duration::from_secs(30)).await.unwrap();
    assert!(said.contains("refusing") && said.contains("migbench.test_orders=1"), "{said}");
    let m = migbench::migration::driver::drive(&mut src, &mut dst, &scenario()).await.unwrap();
    assert_eq!(m.outcome, Outcome::Completed, "{:?}", m.outcome);
    assert!(m.health.healthy, "{}", m.health.detail);
    let integrity = m.health.integrity.unwrap_or_else(|| panic!("no integrity recorded: {:?}", m.health));
    assert_eq!((integrity.pages_checked, integrity.mismatches, integrity.first_bad_page), (4096, 0, None));
}

/// QEMU 7.2 as the sender under TCG corrupts a guest that writes memory while it
/// migrates (measured here: every run of this guest, 13 of 13, left the guest's
/// kernel dead on the destination). That QEMU is used on purpose (`--qemu 7.2`,
/// which migbench fetches into its cache from bookworm): the run must never count
/// as healthy, and where the guest still answers, the checker must be what says so.
#[test]
fn a_qemu_7_2_tcg_sender_leaves_a_writing_guest_unhealthy_and_the_checker_says_why() {
    platform();
    let _slot = qemu_slot();
    // A run that 7.2 happens to carry intact is healthy, and then verified clean:
    // that is no failure of the checker, so try again; three intact runs in a row
    // would mean 7.2 no longer corrupts this guest, and the test says so.
    for attempt in 1..=3 {
        let (r, code, text) = run_under_qemu("7.2");
        assert!(r["environment"]["qemu_version"].as_str().is_some_and(|v| v.starts_with("7.")), "{}", r["environment"]);
        if r["environment"]["accel"] != "tcg" {
            eprintln!("skipped: the accelerator is {} here; the 7.2 fault is TCG's dirty tracking", r["environment"]["accel"]);
            return;
        }
        let h = &r["health"];
        eprintln!("QEMU {}, attempt {attempt}: outcome {}, integrity {}, health: {}", r["environment"]["qemu_version"], r["outcome"]["kind"], h["integrity"], h["detail"]);
        if h["healthy"] == true {
            assert_eq!(r["outcome"]["kind"], "completed", "{r}");
            assert_intact("memdirty-write:64:50", h);
            assert_eq!(code, Some(0), "{text}");
            continue;
        }
        assert_ne!(h["detail"], "ok", "{h}");
        assert_eq!(code, Some(3), "an unhealthy run must show in the exit code: {text}");
        match h.get("integrity") {
            // The guest still answered: its pages must tell what QEMU did not resend.
            Some(i) => {
                assert!(i["mismatches"].as_u64().unwrap() > 0, "the guest answered, yet its stamped memory verified clean: {h}");
                assert!(h["detail"].as_str().unwrap().contains("memory corrupted"), "{h}");
            }
            // The guest died first (its kernel's memory went with it): unhealthy for that cause.
            None => assert!(h["detail"].as_str().unwrap().contains("heartbeat") || !h["console_problems"].as_array().unwrap().is_empty(), "{h}"),
        }
        return;
    }
    panic!("QEMU 7.2 carried a guest writing 64 MiB at 50 MiB/s intact three times in a row: the measured fault is gone");
}

/// One migration of a guest writing 64 MiB at 50 MiB/s over 1 Gbit/s with the
/// QEMU `qemu` names (`--qemu`): its record, migbench's exit code and everything it printed.
fn run_under_qemu(qemu: &str) -> (serde_json::Value, Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("qemu72.toml");
    std::fs::write(
        &profile,
        "name = \"qemu72\"\nbefore_s = 1.0\nafter_s = 0.5\n[defaults]\nram_mib = 256\nlink = \"1Gbit\"\ntimeout_s = 120.0\nworkload = \"memdirty-write:64:50\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = migbench(tmp.path()).arg("--qemu").arg(qemu).arg("run").arg(&profile).arg("--out").arg(&out).arg("--quiet").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let mut rs = results(&out);
    assert_eq!(rs.len(), 1, "{text}");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty(), "a QEMU outlived the run");
    (rs.remove(0), o.status.code(), text)
}
