//! Property-based: any cell, written as a profile's `[defaults]`, parses back to itself
//! exactly when it passes its checks (the rest of the fuzzing is in tests/fuzz_profile.rs).
#![cfg(test)]

use crate::network::shape::LinkShape;
use super::*;
use crate::migration::strategy::Strategy as Mig;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Strategy;

fn parsed<T: std::str::FromStr + std::fmt::Debug>(texts: &'static [&'static str]) -> impl Strategy<Value = T>
where
    T::Err: std::fmt::Debug,
{
    select(texts).prop_map(|t| t.parse().unwrap())
}

/// A number that TOML can hold (integers are i64 there).
fn int() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..100, 0..=i64::MAX as u64]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![any::<f64>(), select(&[0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, 604_800.0, 604_800.1][..])]
}

/// Mostly values in range (so that many cells pass), sometimes anything.
fn mostly<T: std::fmt::Debug>(valid: impl Strategy<Value = T> + 'static, any: impl Strategy<Value = T> + 'static) -> BoxedStrategy<T> {
    prop_oneof![19 => valid, 1 => any].boxed()
}

fn cell() -> impl Strategy<Value = Cell> {
    let workloads = &["idle", "burn", "dhrystone", "livermore:short", "http", "http:64", "http:4096", "cpu-duty:50", "linpack:100", "memdirty-write:16", "memdirty-read:300:10"];
    let links = &["100Mbit", "1Gbit", "2.5Gbit", "50MiB/s", "unlimited", "8bit", "8Tbit"];
    let loads = &["open:0.1", "open:100", "open:100000", "closed:1", "closed:4:10", "closed:1024:60000"];
    let guest = (mostly(64u32..5000, any::<u32>()), mostly(1u32..=255, any::<u32>()), parsed::<Workload>(workloads));
    let migration = (
        select(&Mig::ALL[..]),
        parsed::<LinkSpeed>(links),
        select(&[Transport::Unix, Transport::Tcp][..]),
        mostly(0u64..=2_000_000, int()),
        mostly(0.1..604_800.0, float()),
    );
    let tuning = (
        int(),
        prop::option::of(mostly(0.0..604_800.0, float())),
        mostly(1u8..=99, any::<u8>()),
        mostly(1u8..=100, any::<u8>()),
        mostly((0u32..=20).prop_map(|b| 1u64 << b), int()),
        mostly(1u8..=255, any::<u8>()),
        select(&[Compression::None, Compression::Zlib, Compression::Zstd][..]),
        prop::option::of(select(&[ZeroPageDetection::None, ZeroPageDetection::Legacy, ZeroPageDetection::Multifd][..])),
        any::<bool>(),
    );
    let host = (prop::option::of(mostly(25u32..=100, 0u32..1000)), prop::option::of(0u32..8), prop::option::of(0u32..5000));
    let load = (
        prop::option::of(parsed::<Mode>(loads)),
        select(&[Connection::KeepAlive, Connection::PerRequest][..]),
        prop::option::of(int()),
        mostly(0u32..=100, any::<u32>()),
        mostly(1u64..=600_000, int()),
        mostly(0u32..=MAX_PROBE_HZ, any::<u32>()),
    );
    let fault = parsed::<Fault>(&["none", "kill-destination", "kill-source:2", "cut-link", "cut-link:3", "bad-qemu-option", "never-ready:5"]);
    let later = (prop::option::of(parsed::<LinkSpeed>(links)), mostly(1u64..=1000, int()));
    const QEMUS: &[&str] = &["7.2", "10", "10.0.2", "system", "/opt/qemu/bin/qemu-system-x86_64"];
    const SHAPES: &[&str] = &["none", "rate=100Mbit", "rtt=20ms", "rate=10Mbit,rtt=40ms,jitter=2ms,loss=0.5%"];
    let qemu = (prop::option::of(parsed::<QemuWanted>(QEMUS)), prop::option::of(parsed::<QemuWanted>(QEMUS)), parsed::<LinkShape>(SHAPES));
    (guest, migration, tuning, host, load, fault, (later, qemu)).prop_map(|((ram_mib, vcpus, workload), m, t, h, l, fault, (later, q))| Cell {
        ram_mib,
        vcpus,
        workload,
        strategy: m.0,
        link: m.1,
        transport: m.2,
        downtime_limit_ms: m.3,
        timeout_s: m.4,
        hybrid_passes: t.0,
        hybrid_after_s: t.1,
        throttle_initial: t.2,
        throttle_increment: t.3,
        xbzrle_cache_mib: t.4,
        multifd_channels: t.5,
        multifd_compression: t.6,
        avail_switchover_bandwidth: later.0,
        vcpu_dirty_limit_mb_s: later.1,
        zero_page_detection: t.7,
        tls: t.8,
        cap_percent: h.0,
        host_cores: h.1,
        balloon_mib: h.2,
        load: l.0,
        connection: l.1,
        requests: l.2,
        dynamic_percent: l.3,
        request_timeout_ms: l.4,
        probe_hz: l.5,
        fault,
        qemu: q.0,
        qemu_dest: q.1,
        link_shape: q.2,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, timeout: 5_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_cell_written_as_defaults_parses_back_when_it_checks(cell in cell()) {
        let mut doc = toml::Table::new();
        doc.insert("name".into(), "x".into());
        doc.insert("defaults".into(), toml::Table::try_from(&cell).unwrap().into());
        let text = toml::to_string(&doc).unwrap();
        match (Profile::parse(&text, "p.toml"), cell.check()) {
            (Ok(p), Ok(())) => {
                prop_assert_eq!(&p.cells, &vec![cell.clone()]);
                prop_assert_eq!(p.cells[0].key(), cell.key());
            }
            (Err(e), Err(why)) => {
                let e = e.to_string();
                prop_assert!(e.starts_with("profile p.toml: ") && e.contains(&why), "{} / {}", e, why);
            }
            (p, c) => prop_assert!(false, "{text}\nparsed: {:?}\nchecked: {c:?}", p.map(|p| p.cells)),
        }
    }
}
