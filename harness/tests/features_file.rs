//! The migration features of QEMU 8–10 in this slice, on real QEMU: mapped-ram's
//! save to a file and restore from it, the downtime QEMU expects beside the one it
//! measures (with avail-switchover-bandwidth), the dirty-rate modes, and dirty-limit.
//! Every migrated guest is checked healthy and intact.

mod common;

use common::*;
use migbench::machine::hardware::DirtyRateMode;
use migbench::machine::site::Site;
use migbench::machine::{self, Accel, GuestSpec};
use migbench::migration::measurement::Outcome;
use migbench::migration::scenario::Scenario;
use migbench::migration::strategy::Strategy;
use migbench::record::MigrationRecord;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);

/// A guest that keeps rewriting 24 MiB of stamped memory (checked page by page after).
fn busy_guest(mib: u32) -> GuestSpec {
    GuestSpec::new(mib, 1, Accel::Tcg).unwrap().with_workload("memdirty-write:24".parse().unwrap())
}

async fn migrate_with(spec: GuestSpec, scenario: &Scenario) -> MigrationRecord {
    let (p, env) = chosen().await;
    let spec = GuestSpec { accel: env.accel, ..spec };
    let rec = migbench::experiment::once::run_one(p, env, spec, scenario, BOOT).await.unwrap();
    assert_eq!(machine::live_count(), 0, "run_one must stop both QEMUs");
    rec
}

fn assert_healthy_and_intact_rec(rec: &MigrationRecord) {
    assert_healthy_and_intact(&serde_json::to_value(rec).unwrap());
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_ram_saves_a_dirtying_guest_to_a_sparse_file_and_the_destination_runs_from_it() {
    let _slot = qemu_slot();
    for strategy in [Strategy::MappedRam, Strategy::MappedRamMultifd] {
        let sc = Scenario { strategy, link: "unlimited".parse().unwrap(), timeout_s: 120.0, ..Scenario::default() };
        let rec = migrate_with(busy_guest(256), &sc).await;
        let m = &rec.measurement;
        let e = m.evidence.as_ref().expect("every migrated run records its evidence");
        assert_eq!(m.outcome, Outcome::Completed, "{strategy}: {}", e.note);
        assert_healthy_and_intact_rec(&rec);
        assert_eq!((m.health.runs_on.as_str(), m.health.other_state.as_str()), ("destination", "postmigrate"), "{strategy}");
        assert!(m.health.next_seq.unwrap() > m.health.last_source_seq.unwrap(), "{strategy}: the guest continued, it did not reboot");
        // mapped-ram took effect: read back on both sides, the file written and restored.
        assert!(e.took_effect && m.strategy_took_effect(), "{strategy}: {}", e.note);
        for side in [&e.settings.source, &e.settings.destination] {
            assert_eq!(side.capabilities.get("mapped-ram"), Some(&true), "{strategy}: {side:?}");
            assert_eq!(side.capabilities.get("multifd"), Some(&(strategy == Strategy::MappedRamMultifd)), "{strategy}: {side:?}");
        }
        let f = m.file.as_ref().expect("the saved file is recorded");
        // Each page at its offset: the file spans the RAM (plus headers and the
        // device state), but only the pages ever written take disk.
        assert!(f.apparent_bytes >= 256 << 20 && f.apparent_bytes < 300 << 20, "{strategy}: {f:?}");
        assert!(f.allocated_bytes >= 24 << 20, "{strategy}: the 24 MiB the guest rewrites are on disk: {f:?}");
        assert!(f.allocated_bytes < f.apparent_bytes, "{strategy}: the zero pages are holes: {f:?}");
        assert!(!std::path::Path::new(&f.path).exists(), "{strategy}: the file is removed after the run");
        let (save, restore) = (m.total_time_ms.unwrap(), f.restore_ms.unwrap());
        assert!(save > 0.0 && restore > 0.0, "{strategy}: save {save} ms, restore {restore} ms");
        // The guest is stopped from the end of the save until the destination runs:
        // what it saw covers the restore.
        let (stop_to_resume, gap) = (m.event_downtime_ms.unwrap(), m.guest_gap_ms.unwrap());
        assert!(stop_to_resume >= restore && gap >= restore, "{strategy}: STOP→RESUME {stop_to_resume} ms, heartbeat gap {gap} ms, restore {restore} ms");
        eprintln!(
            "{strategy}: save {save:.0} ms (QEMU downtime {:?} ms), restore {restore:.0} ms, STOP→RESUME {stop_to_resume:.0} ms, guest gap {gap:.0} ms, file {:.1} MiB long, {:.1} MiB on disk",
            m.downtime_ms,
            mib(f.apparent_bytes),
            mib(f.allocated_bytes)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_downtime_is_recorded_beside_the_measured_one_and_follows_the_switchover_bandwidth() {
    let _slot = qemu_slot();
    // A guest rewriting 8 MiB at 20 MiB/s over 300 Mbit/s takes a few passes, so QEMU
    // measures a dirty rate and updates its expectation (before that it reports the
    // limit itself).
    let guest = GuestSpec::new(256, 1, Accel::Tcg).unwrap().with_workload("memdirty-write:8:20".parse().unwrap());
    let mut expected_at = Vec::new();
    for speed in ["300Mbit", "1Gbit"] {
        let mut sc = Scenario { link: "300Mbit".parse().unwrap(), downtime_limit_ms: 30, timeout_s: 120.0, ..Scenario::default() };
        sc.tuning.avail_switchover_bandwidth = Some(speed.parse().unwrap());
        let rec = migrate_with(guest, &sc).await;
        let m = &rec.measurement;
        assert_eq!(m.outcome, Outcome::Completed, "{speed}");
        assert_healthy_and_intact_rec(&rec);
        let e = m.evidence.as_ref().unwrap();
        let bytes = speed.parse::<migbench::migration::scenario::LinkSpeed>().unwrap().bytes_per_sec.unwrap();
        assert_eq!(e.settings.source.parameters["avail-switchover-bandwidth"], bytes, "read back: {:?}", e.settings.source);
        let expected = m.expected_downtime_ms.expect("QEMU reports expected-downtime while pre-copy is active");
        let active: Vec<u64> = m.progress.iter().filter(|s| s.status == "active").filter_map(|s| s.expected_downtime_ms).collect();
        assert_eq!(Some(expected), active.last().map(|v| *v as f64), "the last active sample's expectation");
        assert_ne!(expected, 30.0, "{speed}: QEMU never estimated (it still reports the limit): {active:?}");
        let measured = m.downtime_ms.unwrap();
        eprintln!("{speed}: expected downtime {expected} ms, QEMU's measured downtime {measured} ms, STOP→RESUME {:?} ms", m.event_downtime_ms);
        // The record carries it: a summary and the report read it from there.
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["expected_downtime_ms"], expected);
        assert_eq!(json["scenario"]["tuning"]["avail_switchover_bandwidth"], speed);
        expected_at.push(expected);
    }
    // QEMU divides the dirty memory by the switchover bandwidth: 3.3 times the
    // bandwidth, well under half the expectation.
    assert!(expected_at[1] * 2.0 < expected_at[0], "expected downtime at 300Mbit and 1Gbit: {expected_at:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_rate_modes_measure_as_asked_or_say_why_not() {
    let _slot = qemu_slot();
    let (p, env) = chosen().await;
    let spec = GuestSpec { accel: env.accel, ..busy_guest(256) };
    let site = Site::local(&p.qemu, &p.image, false).unwrap();
    let (src, _) = site.boot(spec, "src", BOOT).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sc = Scenario { link: "1Gbit".parse().unwrap(), ..Scenario::default() };
    let modes = match env.accel {
        Accel::Kvm => vec![DirtyRateMode::PageSampling, DirtyRateMode::DirtyBitmap],
        Accel::Tcg => vec![DirtyRateMode::PageSampling],
    };
    let mut sampled = 0.0;
    for mode in modes {
        let d = migbench::machine::dirty_rate::measure(&src, 1.0, mode).await.unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        assert_eq!(d.mode, mode.to_string(), "QEMU measured in the mode asked for");
        assert!(d.mib_per_s > 0.0, "{mode}: a guest rewriting 24 MiB dirties memory: {d:?}");
        assert_eq!(d.sample_pages.is_some(), mode == DirtyRateMode::PageSampling);
        // The cost model takes each mode's rate.
        let pr = migbench::rank::vms::predict_for(&spec, &sc, d.bytes_per_s(), None);
        assert!(pr.total_s.is_some() || !pr.reason.is_empty(), "{mode}: {pr:?}");
        eprintln!("{mode}: {:.1} MiB/s → predicted {:?} s, converges {}", d.mib_per_s, pr.total_s, pr.converges);
        sampled = d.mib_per_s;
    }
    if env.accel == Accel::Tcg {
        // Refused, with the reason: QEMU's own dirty-bitmap mode misses TCG's writes.
        let e = format!("{:#}", migbench::machine::dirty_rate::measure(&src, 1.0, DirtyRateMode::DirtyBitmap).await.unwrap_err());
        assert!(e.contains("the accelerator cannot: under TCG the dirty bitmap misses the guest's writes"), "{e}");
        // The ground for that refusal, asked of QEMU directly: when it counts this
        // guest's writes, this assertion fails and the refusal should go.
        src.qmp.execute_json("calc-dirty-rate", serde_json::json!({"calc-time": 1, "mode": "dirty-bitmap"})).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let bitmap = loop {
            assert!(std::time::Instant::now() < deadline, "QEMU never finished a 1 s dirty-bitmap measurement");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let v = src.qmp.execute_json("query-dirty-rate", serde_json::json!({})).await.unwrap();
            if v["status"] == "measured" {
                break v["dirty-rate"].as_f64().unwrap();
            }
        };
        eprintln!("dirty-bitmap asked of QEMU directly under TCG: {bitmap} MiB/s (page-sampling: {sampled:.1})");
        assert!(sampled > 0.0 && bitmap == 0.0, "page-sampling {sampled} MiB/s, dirty-bitmap {bitmap} MiB/s");
    }
    let ring = migbench::machine::dirty_rate::measure(&src, 1.0, DirtyRateMode::DirtyRing).await;
    match env.accel {
        Accel::Tcg => {
            let e = format!("{:#}", ring.unwrap_err());
            assert!(e.contains("the accelerator cannot: TCG has no dirty ring"), "{e}");
        }
        // migbench starts KVM without dirty-ring-size: QEMU's own refusal is the answer.
        Accel::Kvm => assert!(ring.is_err() || ring.unwrap().mode == "dirty-ring"),
    }
    // The guest was only measured, never harmed: still beating.
    let before = src.channel.beats().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(src.channel.beats().len() > before, "the guest keeps beating after the measurements");
    src.quit().await;
    drop(site);
    assert_eq!(machine::live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_limit_is_unsupported_under_tcg_naming_the_accelerator() {
    let _slot = qemu_slot();
    if environment().await.accel != Accel::Tcg {
        // Where KVM runs, QEMU decides: dirty-limit runs with a dirty ring and is
        // refused in QEMU's words without one; either way the guest stays healthy.
        let rec = migrate_with(busy_guest(256), &Scenario { strategy: Strategy::DirtyLimit, ..Scenario::default() }).await;
        assert!(rec.measurement.health.healthy, "{:?}", rec.measurement.health);
        return;
    }
    let mut sc = Scenario { strategy: Strategy::DirtyLimit, link: "300Mbit".parse().unwrap(), timeout_s: 60.0, ..Scenario::default() };
    sc.tuning.vcpu_dirty_limit_mb_s = 10;
    let rec = migrate_with(busy_guest(256), &sc).await;
    let m = &rec.measurement;
    let Outcome::Unsupported { reason } = &m.outcome else { panic!("dirty-limit under TCG must be unsupported, not {:?}", m.outcome) };
    assert!(reason.contains("unsupported under TCG") && reason.contains("dirty ring"), "{reason}");
    // Nothing was migrated: the guest runs on at the source, healthy and intact.
    assert_eq!(m.health.runs_on, "source");
    assert_healthy_and_intact_rec(&rec);
    assert!(m.transferred_bytes.is_none() && m.evidence.is_none(), "{m:?}");
}
