//! Two hosts with a round trip and loss on the link between them: the shipped
//! profile `two-hosts-rtt` (200 Mbit/s × rtt 0/20/60 ms × loss 0/0.5 %) run to the
//! test host as a user runs it (`migbench run PROFILE --dest ssh://…`). The test host's
//! link is a delay line (`network::delay_line`): this machine's kernel, like CI's,
//! has no netem, and the delay line is what emulates rtt and loss there; on a kernel
//! with netem, `tc` netem does, and the record says which.

mod common;

use common::two_hosts::*;
use common::*;
use migbench::network::delay_line::Settings;
use migbench::network::test_host::{TestHost, TestLink};
use std::path::Path;

/// The shipped profile's text.
fn shipped_profile() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/two-hosts-rtt.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A number in a record, or the test fails naming it.
fn num(v: &serde_json::Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// One direction's counter of a delay line state in a record.
fn counter(state: &serde_json::Value, direction: &str, name: &str) -> u64 {
    state["counters"][direction][name].as_u64().unwrap_or_else(|| panic!("no {direction}.{name} in {state}"))
}

fn links() -> String {
    String::from_utf8_lossy(&std::process::Command::new("ip").args(["-o", "link", "show"]).output().unwrap().stdout).into_owned()
}

#[test]
fn round_trip_and_loss_at_a_fixed_rate_run_through_the_delay_line_and_the_report_shows_each_cell() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start_with(TestLink::DelayLine).expect("the test host on a delay line");
    let netem = kernel_has_netem(&host);
    let (near, far, inode, dir) = (host.local_interface().to_string(), host.host_interface().to_string(), host.inode(), host.dir().to_path_buf());
    let tmp = tempfile::tempdir().unwrap();
    let profile = shipped_profile();
    let (o, rs) = run_to(tmp.path(), &host, &profile);
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{said}");
    // Every cell ran, twice.
    assert_eq!(rs.len(), 12, "{said}");
    let mut figures = Vec::new();
    for r in &rs {
        let shape_text = r["run"]["cell"]["link_shape"].as_str().unwrap().to_string();
        let shape: migbench::network::shape::LinkShape = shape_text.parse().unwrap();
        assert_eq!(r["outcome"]["kind"], "completed", "{shape_text}: {}", r["outcome"]);
        assert_healthy_and_intact(r);
        let link = &r["link"];
        // What emulated the link: tc alone for a rate, else netem or the delay line.
        let by = link["emulated_by"].as_str().unwrap_or_default();
        let want = if shape.rtt.is_zero() && shape.loss.is_zero() {
            "tc htb"
        } else if netem {
            "tc netem"
        } else {
            "delay line (no netem in this kernel)"
        };
        assert_eq!(by, want, "{shape_text}: {link}");
        // The rate is tc's at both ends, whatever does the rest.
        for end in ["near_applied", "far_applied"] {
            assert_eq!(link[end]["rate_bytes_per_sec"].as_u64(), Some(25_000_000), "{shape_text} {end}: {}", link[end]);
        }
        // The round trip measured before the migration is at least the one asked for.
        let rtt = num(&link["measured_rtt_ms"], "measured_rtt_ms");
        assert!(rtt >= shape.rtt_ms() && rtt > 0.0, "{shape_text}: measured {rtt} ms");
        // The delay line is on the near interface: what it was set to, and what it did.
        let (before, after) = (&link["delay_line_before"], &link["delay_line_after"]);
        assert_eq!(before["near"], near.as_str(), "{link}");
        assert_eq!(after["far"], far.as_str(), "{link}");
        let grew = |dir: &str, name: &str| counter(after, dir, name) - counter(before, dir, name);
        let sent = r["transferred_bytes"].as_u64().unwrap();
        let dropped = grew("toward_far", "dropped_packets") + grew("toward_near", "dropped_packets");
        if by.starts_with("delay line") {
            let settings: Settings = serde_json::from_value(before["settings"].clone()).unwrap();
            assert_eq!(settings, migbench::machine::remote_link::line_settings(&shape), "{shape_text}");
            assert_eq!(settings.toward_far.delay_us + settings.toward_near.delay_us, shape.rtt.us);
            // The migration stream crossed it, held for its delay where there is one.
            assert!(grew("toward_far", "passed_bytes") >= sent, "{shape_text}: the line passed {} bytes, QEMU sent {sent}", grew("toward_far", "passed_bytes"));
            assert_eq!(grew("toward_far", "delayed_packets") > 0, !shape.rtt.is_zero(), "{shape_text}: {after}");
            // Loss is evidenced by the drop counters: some where asked for, none elsewhere.
            if shape.loss.is_zero() {
                assert_eq!(dropped, 0, "{shape_text}: {after}");
            } else {
                assert!(grew("toward_far", "dropped_packets") > 0 && grew("toward_near", "dropped_packets") > 0, "{shape_text}: {before} → {after}");
            }
        } else {
            // tc alone: the line passes everything at once.
            assert_eq!(before["settings"], serde_json::to_value(Settings::default()).unwrap(), "{shape_text}");
            assert_eq!(dropped, 0, "{shape_text}");
        }
        assert_eq!(grew("toward_far", "discarded_packets") + grew("toward_near", "discarded_packets"), 0, "{shape_text}: the line lost packets of its own: {after}");
        figures.push(format!(
            "{shape_text}: total {:.0} ms, downtime {:.0} ms, measured rtt {rtt:.2} ms, {sent} bytes, dropped {dropped}",
            num(&r["total_time_ms"], "total_time_ms"),
            num(&r["downtime_ms"], "downtime_ms")
        ));
    }
    eprintln!("figures:\n{}", figures.join("\n"));
    // migbench took its shaping off: no qdisc of its own at either end, the line passes everything.
    assert_ends_clear(&host, &["htb", "netem"], "shaped");
    assert_eq!(host.delay_line().unwrap().state().settings, Settings::default());

    // The report shows each cell with how many of its runs were healthy.
    let md = tmp.path().join("report.md");
    let o = migbench(tmp.path()).arg("report").arg(tmp.path().join("out")).args(["--format", "md", "--out"]).arg(&md).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(md).unwrap();
    // A row of the summary: "| link_shape=rate=200Mbit,rtt=20ms | 2 of 2 healthy | …".
    let rows: Vec<Vec<&str>> = md.lines().filter(|l| l.starts_with("| link_shape=")).map(|l| l.split('|').map(str::trim).collect()).collect();
    let mut shapes: Vec<&str> = rs.iter().map(|r| r["run"]["cell"]["link_shape"].as_str().unwrap()).collect();
    shapes.sort();
    shapes.dedup();
    assert_eq!(shapes.len(), 6, "{shapes:?}");
    for shape in shapes {
        let cell = format!("link_shape={shape}");
        assert!(rows.iter().any(|r| r.get(1) == Some(&cell.as_str()) && r.get(2) == Some(&"2 of 2 healthy")), "no row {cell} | 2 of 2 healthy in the report:\n{md}");
    }
    eprintln!("report:\n{md}");

    // Nothing is left behind: no QEMU or agent, and once the host goes, no tap,
    // namespace or sshd.
    wait_until_gone("after the round-trip sweep");
    drop(host);
    let l = links();
    assert!(!l.contains(&format!(" {near}:")), "{near} outlived the host: {l}");
    assert!(!migbench::network::namespaces_in_use().contains(&inode), "the host's namespace outlived it");
    assert!(processes_mentioning(&dir.display().to_string()).is_empty(), "sshd outlived the host");
    assert_eq!(migbench::network::delay_line::read(&near).unwrap(), None, "the delay line still answers");
}
