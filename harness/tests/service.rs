//! The test network and an HTTP-serving guest under migration, end to end: a real
//! namespace with a bridge and taps, a real guest answering the load generator
//! before, during and after a real migration, and nothing left behind.

mod common;

use common::*;
use migbench::network::{self, Network};
use migbench_guest::netif;
use std::time::{Duration, Instant};

/// Waits up to 10 s for the kernel to tear a namespace down (it does so asynchronously).
fn gone(inode: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !network::namespace_alive(inode) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn the_bridge_and_taps_exist_only_inside_the_namespace_and_go_with_it() {
    let _slot = qemu_slot();
    let net = Network::create().expect("creating the test network (run the tests as root)");
    let inode = net.inode();
    assert!(network::namespace_alive(inode));
    let taps = [net.add_tap("mb-t1").unwrap(), net.add_tap("mb-t2").unwrap()];
    let inside = net
        .enter(|| {
            let bridge = netif::index(network::BRIDGE);
            let taps: Vec<_> = ["mb-t1", "mb-t2"].iter().map(|t| netif::index(t)).collect();
            // The client's address exists here ...
            let bound = std::net::UdpSocket::bind((network::CLIENT_IP, 0)).is_ok();
            (bridge.is_ok(), taps.iter().all(|t| t.is_ok()), bound)
        })
        .unwrap();
    assert_eq!(inside, (true, true, true));
    // ... and none of it in the host's own namespace.
    assert!(netif::index(network::BRIDGE).is_err());
    assert!(netif::index("mb-t1").is_err());
    assert!(std::net::UdpSocket::bind((network::CLIENT_IP, 0)).is_err());
    // A tap handle removes its tap.
    let [t1, t2] = taps;
    drop(t1);
    assert!(net.enter(|| netif::index("mb-t1").is_err()).unwrap());
    drop(t2);
    drop(net);
    assert!(gone(inode), "the namespace outlived its handles");

    // Also when the code holding it panics.
    let inode = std::panic::catch_unwind(|| {
        let net = Network::create().unwrap();
        let _tap = net.add_tap("mb-t3").unwrap();
        let inode = net.inode();
        std::panic::panic_any(inode);
    })
    .unwrap_err();
    let inode = *inode.downcast::<u64>().unwrap();
    assert!(gone(inode), "the namespace outlived a panic");
}

const SERVICE: &str = r#"
name = "service"
before_s = 2.0
after_s = 2.0
[defaults]
ram_mib = 256
workload = "http"
link = "1Gbit"
load = "open:100"
probe_hz = 1000
timeout_s = 120.0
[matrix]
connection = ["keep-alive", "per-request"]
"#;

#[test]
fn a_guest_answers_http_before_during_and_after_its_migration() {
    platform();
    let _slot = qemu_slot();
    let before = network::namespaces_in_use();
    let (tmp, rs, text) = run_profile(SERVICE);
    assert_eq!(rs.len(), 2, "{text}");
    for r in &rs {
        let m = r;
        let conn = r["run"]["cell"]["connection"].as_str().unwrap();
        assert_eq!(m["outcome"]["kind"], "completed", "{conn}: {}", m["outcome"]);
        assert_eq!(m["health"]["healthy"], true, "{conn}: {}", m["health"]);
        let svc = &m["service"];
        let client = &svc["client"];
        // Answers in every phase, on both sides of the move.
        for phase in ["before", "during", "after"] {
            assert!(client[phase]["ok"].as_u64().unwrap() > 0, "{conn}: no answer {phase} the migration: {client}");
        }
        assert!(client["before"]["ok"].as_u64().unwrap() >= 150, "{conn}: {}", client["before"]);
        // Nothing lost outside the switchover window.
        assert_eq!(client["failed_outside_window"], 0, "{conn}: {client}");
        // The outage as the client and as the probe saw it, beside QEMU's.
        let service_ms = m["service_downtime_ms"].as_f64().expect("service downtime");
        assert!(service_ms > 0.0);
        let probe = &svc["probe"];
        assert!(probe["answered"].as_u64().unwrap() > 1000, "{probe}");
        assert_eq!(probe["lost_outside"], 0, "{probe}");
        let outage = probe["outage"]["ms"].as_f64().expect("probe outage");
        // The probe's outage covers at least the switchover QEMU reports.
        let event_downtime = m["event_downtime_ms"].as_f64().unwrap();
        assert!(outage + 2.0 >= event_downtime.min(m["downtime_ms"].as_f64().unwrap()), "probe {outage} vs QEMU {event_downtime}");
        // The time series is on disk.
        let csv = tmp.path().join("out").join(svc["requests_csv"].as_str().unwrap());
        let text = std::fs::read_to_string(&csv).unwrap();
        assert!(text.lines().count() as u64 > client["before"]["requests"].as_u64().unwrap());
        // The raw histograms are kept.
        assert!(!client["before"]["hdr"].as_str().unwrap().is_empty());
    }
    assert!(text.contains("service_downtime_ms"), "{text}");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
    // The namespace went with the run.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !network::namespaces_in_use().is_subset(&before) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u64> = network::namespaces_in_use().difference(&before).copied().collect();
    assert!(left.is_empty(), "network namespaces left behind: {left:?}");
}

#[test]
fn a_load_without_an_http_guest_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("p.toml");
    std::fs::write(&path, "name = \"x\"\n[defaults]\nload = \"open:10\"\n").unwrap();
    let o = migbench(tmp.path()).arg("run").arg(&path).arg("--dry-run").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("load = open:10") && err.contains("workload = \"http\""), "{err}");
}
