//! The memory integrity check catches corruption it did not cause: a page the test
//! itself corrupts inside the guest, and (where QEMU 7.2 is installed and the
//! accelerator is TCG) what QEMU 7.2 as a migration sender does to a guest that
//! writes memory.

mod common;

use common::*;
use migbench::machine::{self, GuestSpec, Machine, Role, RunDir};
use migbench::migration::{self, Outcome, Scenario};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);

/// A booted source running `workload` and a destination waiting for it.
async fn pair(workload: &str, test_orders: bool) -> (RunDir, Machine, Machine) {
    let env = environment().await;
    let p = platform();
    let spec = GuestSpec { test_orders, ..GuestSpec::new(256, 1, env.accel).unwrap().with_workload(workload.parse().unwrap()) };
    let run = RunDir::new().unwrap();
    let (src, _) = Machine::boot(&p.qemu, &p.image, spec, &run.machine_dir("src").unwrap(), "src", BOOT).await.unwrap();
    let dst = Machine::start(&p.qemu, &p.image, spec, Role::Incoming, &run.machine_dir("dst").unwrap(), "dst").await.unwrap();
    (run, src, dst)
}

fn scenario() -> Scenario {
    Scenario { link: "1Gbit".parse().unwrap(), downtime_limit_ms: 300, timeout_s: 120.0, ..Scenario::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_the_test_corrupts_in_the_guest_is_found_on_the_destination() {
    let _slot = qemu_slot();
    let (_run, src, mut dst) = pair("memdirty-write:32:20", true).await;
    let mut src = src;
    // Let the writer go round its 8192 pages a few times first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let said = src.channel.test_only_corrupt_page(1234, Duration::from_secs(30)).await.unwrap();
    assert!(said.contains("flipped a bit of page 1234"), "{said}");
    let m = migration::drive(&mut src, &mut dst, &scenario()).await.unwrap();
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
    let again = migration::staying_guest(&mut dst).await;
    assert_eq!(again.integrity.map(|i| (i.mismatches, i.first_bad_page)), Some((1, Some(1234))), "{again:?}");
    assert!(!again.healthy);
    drop((src, dst));
    assert_eq!(machine::live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_guest_refuses_the_test_order_and_arrives_intact() {
    let _slot = qemu_slot();
    // Read mode: its pages are stamped once and checked as it reads them.
    let (_run, mut src, mut dst) = pair("memdirty-read:16:20", false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let said = src.channel.test_only_corrupt_page(7, Duration::from_secs(30)).await.unwrap();
    assert!(said.contains("refusing") && said.contains("migbench.test_orders=1"), "{said}");
    let m = migration::drive(&mut src, &mut dst, &scenario()).await.unwrap();
    assert_eq!(m.outcome, Outcome::Completed, "{:?}", m.outcome);
    assert!(m.health.healthy, "{}", m.health.detail);
    let integrity = m.health.integrity.unwrap_or_else(|| panic!("no integrity recorded: {:?}", m.health));
    assert_eq!((integrity.pages_checked, integrity.mismatches, integrity.first_bad_page), (4096, 0, None));
}
