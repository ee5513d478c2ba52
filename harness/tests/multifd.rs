//! Real QEMU: the multifd cells (channels × compression × zero-page detection),
//! zero-copy send and migration over TLS, each migrating one guest healthy and
//! intact with QEMU's own evidence; and a source given another CA's credentials
//! failing cleanly with the guest running on.
//!
//! One guest (its memory locked, as zero-copy needs) moves through the whole
//! chain, a fresh destination each time: that also shows that what one run set
//! on a QEMU (compression, TLS, zero-copy) does not leak into the next.

mod common;

use common::*;
use migbench::machine::site::Site;
use migbench::machine::{GuestSpec, Machine, Role};
use migbench::migration::driver::drive;
use migbench::migration::measurement::{Measurement, Outcome};
use migbench::migration::scenario::{Compression, Scenario, Transport, ZeroPageDetection};
use migbench::migration::strategy::Strategy;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);
/// Rewrites 8 MiB of stamped memory at 20 MiB/s: pre-copy has work after its first
/// pass, and the integrity check has pages to verify.
const WORKLOAD: &str = "memdirty-write:8:20";

fn multifd(channels: u8, compression: Compression, zero: Option<ZeroPageDetection>, transport: Transport) -> Scenario {
    let mut s = Scenario { strategy: Strategy::Multifd, transport, link: "unlimited".parse().unwrap(), timeout_s: 120.0, ..Scenario::default() };
    s.tuning.multifd_channels = channels;
    s.tuning.multifd_compression = compression;
    s.tuning.zero_page_detection = zero;
    s
}

/// Migrates the guest on `src` with `sc` to a fresh destination; the guest then
/// runs on whichever side the outcome left it.
async fn hop(site: &Site, spec: GuestSpec, src: Machine, sc: &Scenario, name: &str) -> (Machine, Measurement) {
    let mut src = src;
    let t = std::time::Instant::now();
    let mut dst = site.start(spec, Role::Incoming, name).await.unwrap();
    let started = t.elapsed();
    let m = drive(&mut src, &mut dst, sc).await.unwrap();
    eprintln!("{name}: destination started in {started:?}, drive {:?}", t.elapsed() - started);
    if m.outcome == Outcome::Completed {
        src.quit().await;
        (dst, m)
    } else {
        dst.quit().await;
        (src, m)
    }
}

fn assert_healthy_intact(m: &Measurement, what: &str) {
    assert!(m.health.healthy, "{what}: the guest is not healthy: {}", m.health.detail);
    assert_intact(WORKLOAD, &serde_json::to_value(&m.health).unwrap());
}

/// One line of figures for the cell, printed for the README (`--nocapture`).
fn figures(what: &str, m: &Measurement) -> String {
    let e = m.evidence.as_ref();
    format!(
        "{what:<44} total {:>6.0} ms  sent {:>6.1} MiB  multifd {:>6.1} MiB  zero pages {:>6}  source sending CPU {:>5.0} ms  both QEMUs {:>5.1} %",
        m.total_time_ms.unwrap_or(f64::NAN),
        m.transferred_mib().unwrap_or(f64::NAN),
        e.and_then(|e| e.multifd.as_ref()).and_then(|d| d.bytes).map_or(f64::NAN, |b| b as f64 / 1048576.0),
        m.duplicate_pages.map_or("-".into(), |z| z.to_string()),
        m.source_send_cpu_ms().unwrap_or(f64::NAN),
        m.cpu_percent.during.map_or(f64::NAN, |u| u.qemu_percent),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multifd_cells_zero_copy_and_tls_migrate_healthy_with_their_evidence() {
    let _slot = qemu_slot();
    let (p, env) = chosen().await;
    let spec = GuestSpec { lock_memory: true, ..GuestSpec::new(128, 1, env.accel).unwrap().with_workload(WORKLOAD.parse().unwrap()) };
    let site = Site::local(&p.qemu, &p.image, false).unwrap();
    let (mut guest, _) = site.boot(spec, "g0", BOOT).await.unwrap();
    // The memory is locked: QEMU was started with -overcommit mem-lock=on.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", guest.pid())).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("mem-lock=on"), "{}", String::from_utf8_lossy(&cmdline));

    let zero_copy = Scenario { strategy: Strategy::MultifdZeroCopy, ..multifd(2, Compression::None, None, Transport::Tcp) };
    let plain = multifd(2, Compression::None, None, Transport::Tcp);
    let tls_multifd = Scenario { tls: true, ..multifd(2, Compression::None, None, Transport::Tcp) };
    let tls_precopy = Scenario { tls: true, link: "unlimited".parse().unwrap(), timeout_s: 120.0, ..Scenario::default() };
    let cells: Vec<(String, Scenario)> = vec![
        ("multifd 1 ch, none, zero-page none".into(), multifd(1, Compression::None, Some(ZeroPageDetection::None), Transport::Unix)),
        ("multifd 1 ch, none, zero-page legacy".into(), multifd(1, Compression::None, Some(ZeroPageDetection::Legacy), Transport::Unix)),
        ("multifd 4 ch, zstd, zero-page multifd".into(), multifd(4, Compression::Zstd, Some(ZeroPageDetection::Multifd), Transport::Unix)),
        ("multifd 8 ch, zlib, default".into(), multifd(8, Compression::Zlib, None, Transport::Unix)),
        // Right after compression on the same guest: zero-copy refuses a compression left set.
        ("multifd-zero-copy 2 ch (tcp)".into(), zero_copy.clone()),
        ("multifd 2 ch (tcp)".into(), plain.clone()),
        ("multifd-zero-copy 2 ch (tcp)".into(), zero_copy.clone()),
        ("multifd 2 ch (tcp)".into(), plain.clone()),
        ("multifd 2 ch + TLS (tcp)".into(), tls_multifd.clone()),
        ("precopy + TLS (unix)".into(), Scenario { transport: Transport::Unix, ..tls_precopy.clone() }),
        ("precopy (tcp)".into(), Scenario { tls: false, transport: Transport::Tcp, ..tls_precopy.clone() }),
        ("precopy + TLS (tcp)".into(), Scenario { transport: Transport::Tcp, ..tls_precopy.clone() }),
    ];
    let mut lines = Vec::new();
    for (i, (what, sc)) in cells.iter().enumerate() {
        sc.validate().unwrap();
        let (g, m) = hop(&site, spec, guest, sc, &format!("d{i}")).await;
        guest = g;
        let e = m.evidence.as_ref().unwrap_or_else(|| panic!("{what}: no evidence: {:?}", m.outcome));
        assert_eq!(m.outcome, Outcome::Completed, "{what}: {}", e.note);
        assert_healthy_intact(&m, what);
        assert!(e.took_effect && m.strategy_took_effect(), "{what}: {}", e.note);
        let t = &sc.tuning;
        if let Some(d) = &e.multifd {
            assert_eq!(d.channels, Some(t.multifd_channels as u64), "{what}");
            assert_eq!(d.compression.as_deref(), Some(t.multifd_compression.name()), "{what}");
            assert_eq!(d.zero_page_detection.as_deref(), t.zero_page_detection.map(|z| z.name()), "{what}");
            assert!(d.bytes.unwrap() > 1 << 20, "{what}: {d:?}");
            for side in [&e.settings.source, &e.settings.destination] {
                assert_eq!(side.parameters["multifd-channels"], t.multifd_channels, "{what}: {side:?}");
                assert_eq!(side.parameters["multifd-compression"], t.multifd_compression.name(), "{what}: {side:?}");
            }
            assert_eq!(d.zero_copy, Some(sc.strategy == Strategy::MultifdZeroCopy), "{what}: zero-copy-send read back");
            if sc.strategy == Strategy::MultifdZeroCopy {
                assert!(d.missed_zero_copy.is_some(), "{what}: QEMU 10 counts dirty-sync-missed-zero-copy: {d:?}");
                assert_eq!(e.settings.source.capabilities.get("zero-copy-send"), Some(&true));
            }
            // Zero pages are found (and not sent as pages) unless detection is off.
            match t.zero_page_detection {
                Some(ZeroPageDetection::None) => assert!(m.transferred_bytes.unwrap() > 100 << 20, "{what}: a 128 MiB guest sent whole"),
                _ => assert!(d.zero_pages.unwrap() > 1000, "{what}: {d:?}"),
            }
        } else {
            assert_eq!(sc.strategy, Strategy::Precopy, "{what}");
        }
        match &e.tls {
            Some(tls) => {
                assert!(sc.tls, "{what}: TLS evidence without TLS");
                assert_eq!((tls.source_creds.as_str(), tls.destination_creds.as_str()), ("migbench-tls", "migbench-tls"), "{what}");
                let host = if sc.transport == Transport::Tcp { "127.0.0.1" } else { "localhost" };
                assert_eq!(tls.hostname.as_deref(), Some(host));
                assert!(e.facts().iter().any(|f| f.starts_with("TLS: ")), "{:?}", e.facts());
            }
            None => {
                assert!(!sc.tls, "{what}: TLS asked for but not read back");
                assert_eq!(e.settings.source.parameters["tls-creds"], "", "{what}: TLS left on from an earlier run");
            }
        }
        if sc.tls {
            // The run's credentials are in the destination's directory, keys 0600.
            use std::os::unix::fs::PermissionsExt;
            for key in ["tls/server/server-key.pem", "tls/client/client-key.pem"] {
                let key = guest.paths.dir.join(key);
                assert_eq!(std::fs::metadata(&key).unwrap_or_else(|e| panic!("{}: {e}", key.display())).permissions().mode() & 0o777, 0o600);
            }
        }
        lines.push(figures(what, &m));
    }

    // A source holding another CA's credentials: the handshake fails, the run is a
    // recorded failure, and the guest runs on at the source, healthy and intact.
    let wrong = Scenario { tls_wrong_ca: true, ..Scenario { transport: Transport::Tcp, ..tls_precopy.clone() } };
    wrong.validate().unwrap();
    let (g, m) = hop(&site, spec, guest, &wrong, "wrong-ca").await;
    guest = g;
    match &m.outcome {
        Outcome::Failed { reason } => eprintln!("wrong CA: {reason}"),
        other => panic!("a source with another CA's credentials must fail, not {other:?}"),
    }
    assert_eq!(m.health.runs_on, "source");
    assert_healthy_intact(&m, "wrong CA");
    assert_eq!(m.health.run_state, "running");
    // And the same guest still migrates over TLS with right credentials.
    let (g, m) = hop(&site, spec, guest, &Scenario { transport: Transport::Tcp, ..tls_precopy.clone() }, "after-wrong-ca").await;
    assert_eq!(m.outcome, Outcome::Completed, "{:?}", m.evidence.as_ref().map(|e| &e.note));
    assert_healthy_intact(&m, "TLS after a wrong CA");
    g.quit().await;
    for l in &lines {
        eprintln!("{l}");
    }
}

/// QEMU 7.2 (`--qemu 7.2`: an installed 7.2, else Debian 12's fetched into the
/// cache) has no `zero-page-detection`: a run that asks for it is recorded as unsupported,
/// with the reason, and nothing is migrated; the guest runs on, healthy.
#[test]
fn zero_page_detection_on_qemu_7_2_is_recorded_as_unsupported() {
    platform();
    let _slot = qemu_slot();
    let tmp = tempfile::tempdir().unwrap();
    let o = migbench(tmp.path())
        .args(["--qemu", "7.2", "migrate", "--ram", "128", "--strategy", "multifd", "--zero-page-detection", "legacy", "--json", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let start = o.stdout.iter().position(|b| *b == b'{').unwrap_or_else(|| panic!("no JSON record: {text}"));
    let r: serde_json::Value = serde_json::Deserializer::from_slice(&o.stdout[start..]).into_iter().next().unwrap().unwrap();
    assert!(r["environment"]["qemu_version"].as_str().is_some_and(|v| v.starts_with("7.")), "{}", r["environment"]);
    assert_eq!(r["outcome"]["kind"], "unsupported", "{text}");
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("unsupported on QEMU 7.2.") && reason.contains("(source)"), "{reason}");
    assert!(reason.contains("zero-page-detection") && reason.contains("QEMU 9.0+") && reason.contains("does not have"), "{reason}");
    assert_eq!(r["health"]["runs_on"], "source");
    assert_healthy_and_intact(&r);
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty(), "a QEMU outlived the run");
}
