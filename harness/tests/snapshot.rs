//! Guests restored from a saved booted guest (`--boot restore`): they come up
//! with their own orders, run their workload, and migrate healthy and intact; the
//! snapshot is made once and then reused.

mod common;

use common::*;
use migbench::machine::boot::{BootMode, Booted};
use migbench::machine::site::Site;
use migbench::load::readiness;
use migbench::machine::snapshot;
use migbench::network::tc::{self, Runner};
use migbench::network::{BRIDGE, GuestNet};
use migbench::machine::{GuestSpec, Role};
use migbench::migration::driver;
use migbench::migration::measurement::Outcome;
use migbench::migration::scenario::{Scenario, Transport};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_guest_runs_its_own_orders_and_migrates_healthy_and_intact() {
    let _slot = qemu_slot();
    let (p, env) = chosen().await;
    // 160 MiB: a size no other test boots, so this test makes the snapshot itself.
    let base = GuestSpec::new(160, 1, env.accel).unwrap();
    let spec = base.with_workload("memdirty-write:16:40".parse().unwrap());
    let key = snapshot::key(&p.qemu, "pc", &p.image, &spec);
    let dir = snapshot::dir_of(&p.qemu, "pc", &p.image, &spec);
    let _ = std::fs::remove_dir_all(&dir);

    let mut site = Site::local(&p.qemu, &p.image, false).unwrap();
    site.set_boot_mode(BootMode::Restore);
    // First boot: no snapshot yet, so one is made (a parked guest saved), then restored.
    let (first, first_ms) = site.boot(spec, "first", BOOT).await.unwrap();
    assert_eq!(first.booted, Booted::Restored);
    let info: snapshot::SnapshotInfo = serde_json::from_str(&std::fs::read_to_string(dir.join("info.json")).unwrap()).unwrap();
    assert!(info.bytes > 0 && info.ram_mib == 160 && info.image_key == p.image.manifest.key, "{info:?}");
    let made = std::fs::read_to_string(dir.join("info.json")).unwrap();
    // The orders came over the channel: the memory dirtier runs (its unit is MiB)
    // and beats at the harness's period.
    let rates = wait_for_rates(&first).await;
    assert!(rates.iter().all(|r| r.unit == "MiB"), "{rates:?}");
    first.quit().await;

    // A second boot of the same hardware reuses the file; a different workload is
    // the same hardware (the workload is an order, not part of the snapshot).
    let other = base.with_workload("memdirty-write:24:40".parse().unwrap());
    assert_eq!(snapshot::key(&p.qemu, "pc", &p.image, &other), key);
    // Other hardware, another machine type: other snapshots.
    assert_ne!(snapshot::key(&p.qemu, "pc", &p.image, &GuestSpec { ram_mib: 192, ..other }), key);
    assert_ne!(snapshot::key(&p.qemu, "pc-i440fx-7.2", &p.image, &other), key);
    let (mut src, restored_ms) = site.boot(other, "src", BOOT).await.unwrap();
    assert_eq!(src.booted, Booted::Restored);
    assert_eq!(std::fs::read_to_string(dir.join("info.json")).unwrap(), made, "the snapshot was made again");
    assert!(restored_ms > 0.0 && first_ms > 0.0);
    wait_for_rates(&src).await;

    // It migrates like a booted guest: completed, healthy, its 24 MiB verified.
    let mut dst = site.start(other, Role::Incoming, "dst").await.unwrap();
    let scenario = Scenario { transport: Transport::Unix, link: "1Gbit".parse().unwrap(), timeout_s: 120.0, ..Scenario::default() };
    let m = driver::drive(&mut src, &mut dst, &scenario).await.unwrap();
    assert_eq!(m.outcome, Outcome::Completed, "{:?}", m.outcome);
    assert!(m.health.healthy, "{:?}", m.health);
    let tally = m.health.integrity.unwrap_or_else(|| panic!("no memory check: {:?}", m.health));
    assert_eq!(tally.pages_checked, 24 * 256);
    assert_eq!(tally.mismatches, 0);
}

/// Boots are fresh where a snapshot cannot serve, and under `--boot fresh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_boots_where_asked_or_where_a_snapshot_cannot_serve() {
    let _slot = qemu_slot();
    let (p, env) = chosen().await;
    let spec = GuestSpec::new(128, 1, env.accel).unwrap();
    let site = Site::local(&p.qemu, &p.image, false).unwrap();
    let (m, _) = site.boot(spec, "fresh", BOOT).await.unwrap();
    assert_eq!(m.booted, Booted::Fresh, "a site boots fresh unless told otherwise");
    m.quit().await;
    assert_eq!(snapshot::fresh_only(&GuestSpec { net: Some(Default::default()), ..spec }), None, "a guest with a NIC restores");
    assert_eq!(snapshot::fresh_only(&spec), None);
    let faulty = GuestSpec { inject: migbench::machine::hardware::StartFault::NeverReady, ..spec };
    assert!(snapshot::fresh_only(&faulty).is_some_and(|why| why.contains("fault")));
}

/// Guests with a NIC restore too. Two restored from one snapshot on one bridge
/// each take their own MAC (QEMU's NIC reads it back, not the snapshot's), answer
/// HTTP at their own address, and one migrates healthy and still answers there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_with_a_nic_restore_with_their_own_mac_and_serve_after_migrating() {
    let _slot = qemu_slot();
    let (p, env) = chosen().await;
    // 144 MiB: a size no other test boots, so this test makes the snapshot itself.
    let base = GuestSpec::new(144, 1, env.accel).unwrap();
    let a_net = GuestNet::default();
    let b_net = GuestNet { ip: "198.18.0.3".parse().unwrap(), prefix: a_net.prefix };
    let a_spec = base.with_workload("http:4".parse().unwrap()).with_net(a_net);
    let b_spec = a_spec.with_net(b_net);
    let key = |s: &GuestSpec| snapshot::key(&p.qemu, "pc", &p.image, s);
    // The address and MAC are orders, not hardware: one snapshot serves both. A
    // guest without a NIC, or with one handed over without a vnet header, is other
    // hardware.
    assert_eq!(key(&a_spec), key(&b_spec));
    assert_ne!(key(&base), key(&a_spec));
    assert_ne!(key(&GuestSpec { portable_nic: true, ..a_spec }), key(&a_spec));
    let _ = std::fs::remove_dir_all(snapshot::dir_of(&p.qemu, "pc", &p.image, &a_spec));

    let mut site = Site::local(&p.qemu, &p.image, true).unwrap();
    site.set_boot_mode(BootMode::Restore);
    let network = site.network().unwrap().clone();
    let (mut a, _) = site.boot(a_spec, "nic-a", BOOT).await.unwrap();
    let (b, _) = site.boot(b_spec, "nic-b", BOOT).await.unwrap();
    for (m, net) in [(&a, a_net), (&b, b_net)] {
        assert_eq!(m.booted, Booted::Restored, "{}", m.name);
        assert_eq!(snapshot::nic_macs(m).await.unwrap(), vec![net.mac()], "{}: the MAC QEMU's NIC passes", m.name);
        serving(&network, net).await;
    }
    // No frame on the bridge came from the snapshot's MAC (QEMU announces a guest
    // it has loaded with the MAC on its command line).
    let fdb = tc::Local::in_namespace(&network).unwrap().run(&["bridge".into(), "fdb".into(), "show".into(), "br".into(), BRIDGE.into()]).unwrap();
    let parked_mac = snapshot::PARKED_NIC.mac();
    assert!(fdb.contains(&a_net.mac()) && fdb.contains(&b_net.mac()), "{fdb}");
    assert!(!fdb.contains(&parked_mac), "the bridge learned the snapshot's MAC {parked_mac}:\n{fdb}");

    let mut dst = site.start(a_spec, Role::Incoming, "nic-dst").await.unwrap();
    let scenario = Scenario { transport: Transport::Unix, link: "1Gbit".parse().unwrap(), timeout_s: 120.0, ..Scenario::default() };
    let m = driver::drive(&mut a, &mut dst, &scenario).await.unwrap();
    assert_eq!(m.outcome, Outcome::Completed, "{:?}", m.outcome);
    assert!(m.health.healthy, "{:?}", m.health);
    assert_eq!(snapshot::nic_macs(&dst).await.unwrap(), vec![a_net.mac()], "the MAC after the migration");
    serving(&network, a_net).await;
    serving(&network, b_net).await;
}

/// Waits until the guest at `net` answers HTTP on the test network.
async fn serving(network: &migbench::network::Network, net: GuestNet) {
    let network = network.clone();
    let at = std::net::SocketAddr::from((net.ip, migbench_guest::http::PORT));
    tokio::task::spawn_blocking(move || readiness::wait_until_serving(Some(&network), at, Duration::from_secs(60)))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{at}: {e:#}"));
}

/// Waits until the guest has sent a few workload reports.
async fn wait_for_rates(m: &migbench::machine::Machine) -> Vec<migbench::guest::channel::RateSample> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rates = m.channel.rates();
        if rates.len() >= 3 {
            return rates;
        }
        assert!(std::time::Instant::now() < deadline, "no workload reports from the restored guest: {:?}", m.channel.other_lines());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A snapshot whose file no longer matches what its save wrote is discarded, the
/// guest boots fresh (and says so), and the next boot makes the snapshot again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_snapshot_is_discarded_and_the_guest_boots_fresh_then_it_is_made_again() {
    let _slot = qemu_slot();
    let (p, env) = chosen().await;
    // 176 MiB: a size no other test boots.
    let spec = GuestSpec::new(176, 1, env.accel).unwrap();
    let dir = snapshot::dir_of(&p.qemu, "pc", &p.image, &spec);
    let mut site = Site::local(&p.qemu, &p.image, false).unwrap();
    site.set_boot_mode(BootMode::Restore);
    let (m, _) = site.boot(spec, "made", BOOT).await.unwrap();
    assert_eq!(m.booted, Booted::Restored);
    m.quit().await;
    // Cut the file short, as a disk that filled during the save would have.
    let state = dir.join("state");
    let f = std::fs::OpenOptions::new().write(true).open(&state).unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    drop(f);
    let (m, _) = site.boot(spec, "fallback", BOOT).await.unwrap();
    assert_eq!(m.booted, Booted::Fresh, "a guest from a broken snapshot came up");
    assert!(!dir.exists(), "the broken snapshot was kept");
    m.quit().await;
    let (m, _) = site.boot(spec, "again", BOOT).await.unwrap();
    assert_eq!(m.booted, Booted::Restored);
    assert!(state.exists());
    m.quit().await;
}

/// QEMU 7.2 saves and restores too (it has `exec:`, not `file:`); the restored
/// guest runs its orders. (It is not migrated from here: 7.2 as a sender corrupts
/// guests that write memory under TCG.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_7_2_saves_and_restores_a_guest() {
    let _slot = qemu_slot();
    let (p, env) = chosen().await;
    let q72 = tokio::task::spawn_blocking(|| migbench::host::qemu_versions::resolve(&"7.2".parse().unwrap())).await.unwrap().unwrap();
    assert!(q72.version.starts_with("7.2."), "{}", q72.version);
    let spec = GuestSpec::new(128, 2, env.accel).unwrap().with_workload("memdirty-write:16:40".parse().unwrap());
    let _ = std::fs::remove_dir_all(snapshot::dir_of(&q72, "pc", &p.image, &spec));
    let mut site = Site::local(&q72, &p.image, false).unwrap();
    site.set_boot_mode(BootMode::Restore);
    for name in ["first", "second"] {
        let (m, _) = site.boot(spec, name, BOOT).await.unwrap();
        assert_eq!(m.booted, Booted::Restored, "{name}");
        assert_eq!(m.identity().await.unwrap().0, q72.version, "{name}: the QEMU that ran");
        assert!(wait_for_rates(&m).await.iter().all(|r| r.unit == "MiB"), "{name}");
        m.quit().await;
    }
    let info = snapshot::made(&q72, "pc", &p.image, &spec).expect("the 7.2 snapshot");
    assert_eq!((info.qemu_version.as_str(), info.vcpus), (q72.version.as_str(), 2));
}
