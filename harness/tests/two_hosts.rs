//! Two hosts: the destination on another "host" reached over SSH, exactly as a user
//! would point migbench at a second machine. The second host is a network and mount
//! namespace on a veth pair in 198.18.0.0/15 running Debian's openssh-server with
//! per-run keys (`network::test_host`).

mod common;

use common::two_hosts::*;
use common::*;
use migbench::network::test_host::TestHost;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// `migbench migrate --dest` to `host` with its key and known_hosts, plus `args`.
fn migrate_to(tmp: &Path, host: &TestHost, dest: &str, key: &Path, args: &[&str]) -> Output {
    to_host(tmp, host, "migrate", dest, key).arg("--out").arg(tmp.join("out")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The one record `migrate` wrote.
fn record(tmp: &Path) -> serde_json::Value {
    let dir = tmp.join("out");
    let file = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "json")).expect("a record");
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
fn a_guest_migrates_to_another_host_over_ssh_and_arrives_intact() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    let o = migrate_to(tmp.path(), &host, &host.url(), host.key(), &["--ram", "128", "--workload", "memdirty-write:32", "--json"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let r = record(tmp.path());
    // The record is flat: the measurement's fields beside the environment.
    let m = &r;
    assert_eq!(m["outcome"]["kind"], "completed", "{out}");
    assert_healthy_and_intact(m);
    assert!(m["total_time_ms"].as_f64().unwrap() > 0.0 && m["transferred_bytes"].as_u64().unwrap() > 32 << 20, "{m}");
    // The far side is in the record: which host, its QEMU, and the clock between us.
    let far = &r["environment"]["destination_host"];
    assert_eq!(far["target"], host.url(), "{far}");
    assert_eq!(far["migrate_address"], host.ip().to_string());
    assert!(far["clock"]["round_trip_ms"].as_f64().unwrap() > 0.0, "{far}");
    assert!(!far["qemu_version"].as_str().unwrap().is_empty());
    // Both QEMUs said who they are; the destination's is the one the far agent resolved.
    assert_eq!(m["qemus"]["destination_version"], far["qemu_version"], "{}", m["qemus"]);
    // The stream went over the link to the host's address, not over SSH or loopback.
    assert!(out.contains(&format!("migration to {} over TCP", host.ip())), "{out}");
    wait_until_gone("after a migration to another host");
}

#[test]
fn a_wrong_key_an_unreachable_host_and_a_missing_qemu_are_errors_that_leave_nothing() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    // A key the host never heard of.
    let other = tmp.path().join("other");
    let made = std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).output().unwrap();
    assert!(made.status.success());
    let o = migrate_to(tmp.path(), &host, &host.url(), &other, &["--ram", "128"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("refused the key") && out.contains(&other.display().to_string()) && out.contains("authorized_keys"), "{out}");
    // Nobody listens on that port there.
    let o = migrate_to(tmp.path(), &host, &format!("ssh://root@{}:2222", host.ip()), host.key(), &["--ram", "128"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("cannot be reached") && out.contains(":2222"), "{out}");
    // A QEMU that does not exist there.
    let o = migrate_to(tmp.path(), &host, &host.url(), host.key(), &["--ram", "128", "--qemu-dest", "/nonexistent/qemu-system-x86_64"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("/nonexistent/qemu-system-x86_64") && out.contains(&host.url()), "{out}");
    // More memory than the far host has free: refused before any guest boots.
    let o = migrate_to(tmp.path(), &host, &host.url(), host.key(), &["--ram", "1000000"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains(&host.url()) && out.contains("MiB of memory available") && out.contains("1000000 MiB guest"), "{out}");
    // Bad input, refused before anything starts.
    let o = migrate_to(tmp.path(), &host, "root@nowhere", host.key(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("ssh://user@host"), "{}", text(&o));
    let o = migbench(tmp.path()).args(["migrate", "--ssh-key"]).arg(host.key()).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--ssh-key is for a destination on another host"), "{}", text(&o));
    let o = migrate_to(tmp.path(), &host, &host.url(), host.key(), &["--migrate-address", "198.19.0.2:4444"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("without a port"), "{}", text(&o));
    let o = migrate_to(tmp.path(), &host, &host.url(), host.key(), &["--strategy", "mapped-ram"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("saves to a file"), "{}", text(&o));
    wait_until_gone("after refused migrations");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}

#[test]
fn a_killed_harness_takes_the_far_qemu_and_agent_with_it_and_the_next_clears_its_shape() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    let mut c = to_host(tmp.path(), &host, "migrate", &host.url(), host.key());
    // A slow migration: a dirtier on a 1 MiB/s link, shaped too.
    c.args(["--ram", "128", "--workload", "memdirty-write:64", "--link", "8Mbit", "--link-shape", "rate=50Mbit", "--out"]).arg(tmp.path().join("out"));
    let mut child = c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    // Until the far QEMU runs (the agent started it).
    while !ours_running().iter().any(|(_, c)| c.contains("-name migbench-dst")) {
        assert!(Instant::now() < deadline, "the destination never started");
        assert!(child.try_wait().unwrap().is_none(), "migbench ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until_gone("after SIGKILL of the harness");
    // The far end went with its agent; ours outlived the harness, noted in its run
    // directory, and the next migbench (here `doctor --clean`) takes it off.
    let here = || String::from_utf8_lossy(&std::process::Command::new("tc").args(["qdisc", "show", "dev", host.local_interface()]).output().unwrap().stdout).into_owned();
    assert!(here().contains("htb"), "the shape was not on: {}", here());
    let o = migbench(tmp.path()).args(["doctor", "--clean"]).output().unwrap();
    let said = text(&o);
    assert!(said.contains(&format!("took the link shaping off {}", host.local_interface())), "{said}");
    assert!(!here().contains("htb"), "{}", here());
    assert_ends_clear(&host, &["htb", "pfifo"], "shaped");
}

#[test]
fn a_profile_over_link_shapes_runs_to_the_other_host_through_the_shaped_link() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let netem = kernel_has_netem(&host);
    let tmp = tempfile::tempdir().unwrap();
    let (o, rs) = run_to(
        tmp.path(),
        &host,
        r#"
name = "two-hosts-test"
repetitions = 1
before_s = 0.2
after_s = 0.2
[defaults]
ram_mib = 128
workload = "memdirty-write:16:1"
transport = "tcp"
link = "10Gbit"
timeout_s = 90.0
[matrix]
link_shape = ["rate=40Mbit", "rate=200Mbit,rtt=20ms"]
"#,
    );
    let said = text(&o);
    assert_eq!(rs.len(), 2, "{said}");
    for r in &rs {
        let shape = r["run"]["cell"]["link_shape"].as_str().unwrap().to_string();
        let m = r;
        if shape.contains("rtt") && !netem {
            // A kernel without netem cannot delay: the cell says so, naming the host.
            assert_eq!(m["outcome"]["kind"], "unsupported", "{shape}: {}", m["outcome"]);
            let reason = m["outcome"]["reason"].as_str().unwrap();
            assert!(reason.contains("netem") && reason.contains("modprobe"), "{reason}");
            continue;
        }
        assert_eq!(m["outcome"]["kind"], "completed", "{shape}: {}", m["outcome"]);
        assert_healthy_and_intact(m);
        let link = &m["link"];
        assert_eq!(link["ends"]["near_dev"], host.local_interface(), "{link}");
        assert_eq!(link["ends"]["far_dev"], host.host_interface(), "{link}");
        // Both ends read back the rate asked for.
        let want: u64 = if shape.contains("rate=40Mbit") { 5_000_000 } else { 25_000_000 };
        for end in ["near_applied", "far_applied"] {
            assert_eq!(link[end]["rate_bytes_per_sec"].as_u64(), Some(want), "{shape} {end}: {}", link[end]);
        }
        // The migration stream went through the shaped class on this host's end.
        assert_stream_crossed_the_shape(m, &shape);
    }
    // The summary names each shape and says how many runs were healthy.
    assert!(said.contains("rate=40Mbit") && said.contains("healthy"), "{said}");
    // migbench took the shaping off both ends when it finished.
    assert_ends_clear(&host, &["htb", "netem"], "shaped");
    // While the host still runs (its drop kills everything in it): nothing of ours there.
    wait_until_gone("after the shaped sweep");
    drop(host);
}

#[test]
fn a_guest_serving_http_under_load_moves_to_the_other_host_and_keeps_answering() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    let (o, rs) = run_to(
        tmp.path(),
        &host,
        r#"
name = "http-two-hosts"
repetitions = 1
before_s = 2.0
after_s = 2.0
[defaults]
ram_mib = 256
workload = "http"
transport = "tcp"
link = "1Gbit"
load = "open:100"
probe_hz = 1000
timeout_s = 120.0
"#,
    );
    let said = text(&o);
    assert_eq!(o.status.code(), Some(0), "{said}");
    assert_eq!(rs.len(), 1, "{said}");
    let m = &rs[0];
    assert_eq!(m["outcome"]["kind"], "completed", "{}", m["outcome"]);
    assert_healthy_and_intact(m);
    assert_eq!(m["environment"]["destination_host"]["target"], host.url());
    // The client on this host's test network reached the guest before, during and
    // after its move to the other host, at the same address.
    assert_answered_throughout(m, "http-two-hosts");
    let probe = &m["service"]["probe"];
    assert!(probe["answered"].as_u64().unwrap() > 1000, "{probe}");
    wait_until_gone("after the HTTP guest's move");
    drop(host);
}

#[test]
fn a_cut_of_the_link_to_the_other_host_stalls_the_migration_which_then_completes() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    let o = migrate_to(tmp.path(), &host, &host.url(), host.key(), &["--ram", "128", "--workload", "memdirty-write:16:1", "--link", "100Mbit", "--fault", "cut-link:1", "--json"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let r = record(tmp.path());
    let f = &r["fault"];
    assert_eq!(f["struck"], true, "{f}");
    assert!(f["action"].as_str().unwrap().contains("dropped by tc at both ends of the link") && f["action"].as_str().unwrap().contains("then restored"), "{f}");
    assert_eq!(f["as_expected"], true, "{f}");
    assert_eq!(r["outcome"]["kind"], "completed", "{}", r["outcome"]);
    assert_healthy_and_intact(&r);
    assert_eq!(r["health"]["runs_on"], "destination");
    // The cut is gone from both ends.
    assert_ends_clear(&host, &["htb", "pfifo"], "cut");
    wait_until_gone("after the cut link");
    drop(host);
}

/// Faults across hosts: the destination's QEMU killed there (through its agent) in
/// pre-copy leaves the guest running healthy here; the link cut once post-copy runs
/// pauses it on both sides, and recovery over a new port on the far host completes it.
#[test]
fn a_killed_far_qemu_and_a_link_cut_in_post_copy_end_as_qemu_says_across_hosts() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    // 256 MiB with 64 MiB rewritten all the time, at 50 Mbit/s: each migration lasts
    // seconds, so each fault meets it running.
    let (o, rs) = run_to(
        tmp.path(),
        &host,
        "name = \"two-hosts-faults\"\nrepetitions = 1\nbefore_s = 0.5\nafter_s = 0.5\n\
         [defaults]\nram_mib = 256\nworkload = \"memdirty-write:64\"\nlink = \"50Mbit\"\ntransport = \"tcp\"\ntimeout_s = 120.0\n\
         [[cell]]\nstrategy = \"postcopy\"\nfault = \"cut-link-postcopy:2\"\n\
         [[cell]]\nstrategy = \"precopy\"\nfault = \"kill-destination:1\"\n",
    );
    let said = text(&o);
    // A run failed on purpose, so the sweep says so (3).
    assert_eq!(o.status.code(), Some(3), "{said}");
    assert_eq!(rs.len(), 2, "{said}");
    let by = |fault: &str| rs.iter().find(|r| r["fault"]["fault"] == fault).unwrap_or_else(|| panic!("no {fault} run: {said}"));

    let r = by("cut-link-postcopy:2");
    let f = &r["fault"];
    assert_eq!((f["struck"].as_bool(), f["as_expected"].as_bool()), (Some(true), Some(true)), "{f}");
    let action = f["action"].as_str().unwrap();
    let far = format!("migrate-recover on the destination (tcp:{}:", host.ip());
    assert!(action.contains("dropped by tc at both ends") && action.contains("migrate-pause on both sides") && action.contains(&far), "{action}");
    assert_eq!(r["outcome"]["kind"], "completed", "{}", r["outcome"]);
    assert_eq!(r["health"]["runs_on"], "destination");
    assert_healthy_and_intact(r);
    assert_eq!(r["evidence"]["postcopy"]["entered"], true, "{}", r["evidence"]);
    let rec = &f["recovery"];
    let t = |k: &str| rec[k].as_f64().unwrap_or_else(|| panic!("no {k}: {rec}"));
    assert!(t("source_paused_ms") >= f["at_ms"].as_f64().unwrap() && t("resumed_ms") >= t("recover_sent_ms"), "{rec}");
    assert_eq!(rec["completed"], true, "{rec}");
    for side in ["source", "destination"] {
        let paused = r["events"].as_array().unwrap().iter().any(|e| e["side"] == side && e["name"] == "MIGRATION" && e["data"]["status"] == "postcopy-paused");
        assert!(paused, "the {side} never reported postcopy-paused");
    }

    let r = by("kill-destination:1");
    let f = &r["fault"];
    assert!(f["action"].as_str().unwrap().contains(&format!("on {}", host.url())), "{f}");
    assert_eq!((f["struck"].as_bool(), f["as_expected"].as_bool()), (Some(true), Some(true)), "{f}");
    assert_eq!(r["outcome"]["kind"], "failed", "{}", r["outcome"]);
    assert_eq!(r["health"]["runs_on"], "source");
    assert_healthy_and_intact(r);

    assert!(said.contains("Faults injected: 2 runs, 2 as QEMU's semantics say"), "{said}");
    assert_ends_clear(&host, &["htb", "pfifo"], "cut");
    wait_until_gone("after the faults across hosts");
    drop(host);
}

/// Shared and separate links: the migration goes over a second link to the host
/// (`--migrate-address`), shaped to 100 Mbit/s, while the guest's clients reach it
/// over the same link (`--client-address` its address too) or over the first one
/// (`--client-address` the first link's). Either way the guest moves under load,
/// healthy and intact, answering in every phase; the record names the interface
/// client traffic left by, and the shaped class carried the migration.
#[test]
fn a_guest_under_load_moves_over_a_shaped_link_shared_with_its_clients_or_apart_from_them() {
    platform();
    let _slot = qemu_slot();
    let mut host = TestHost::start().expect("the test host");
    let second = host.add_veth_link().expect("a second link");
    let (migration_dev, _) = second.interfaces();
    let profile = r#"
name = "http-links"
repetitions = 1
before_s = 2.0
after_s = 2.0
[defaults]
ram_mib = 256
workload = "http"
transport = "tcp"
link = "10Gbit"
link_shape = "rate=100Mbit"
load = "open:100"
probe_hz = 200
timeout_s = 120.0
"#;
    let mut during_p99 = Vec::new();
    for (kind, clients) in [("shared", second.host()), ("separate", host.ip())] {
        let tmp = tempfile::tempdir().unwrap();
        let (o, rs) = run_to_with(tmp.path(), &host, profile, &["--migrate-address", &second.host().to_string(), "--client-address", &clients.to_string()]);
        let said = text(&o);
        assert_eq!(o.status.code(), Some(0), "{kind}: {said}");
        assert_eq!(rs.len(), 1, "{kind}: {said}");
        let m = &rs[0];
        assert_eq!(m["outcome"]["kind"], "completed", "{kind}: {}", m["outcome"]);
        assert_healthy_and_intact(m);
        let far = &m["environment"]["destination_host"];
        assert_eq!((far["migrate_address"].as_str(), far["client_address"].as_str()), (Some(second.host().to_string().as_str()), Some(clients.to_string().as_str())), "{far}");
        let link = &m["link"];
        assert_eq!(link["ends"]["near_dev"], migration_dev.as_str(), "{link}");
        let client_dev = if kind == "shared" { migration_dev.as_str() } else { host.local_interface() };
        assert_eq!(link["client_dev"], client_dev, "{kind}: {link}");
        // The migration crossed the shaped class on the second link.
        assert_stream_crossed_the_shape(m, kind);
        assert_answered_throughout(m, kind);
        let client = &m["service"]["client"];
        during_p99.push((kind, client["during"]["p50_ms"].clone(), client["during"]["p99_ms"].clone()));
    }
    eprintln!("p50 and p99 of the clients' requests during the migration: {during_p99:?}");
    wait_until_gone("after the moves over two links");
    drop(host);
    let links = std::process::Command::new("ip").args(["link", "show", &migration_dev]).output().unwrap();
    assert!(!links.status.success(), "the second link outlived the host");
}

/// The issue's own words: `migbench migrate --dest` moves a guest serving HTTP
/// under load to the other host and prints the record a local run prints, the
/// clients answered before, during and after, the guest healthy and intact there.
#[test]
fn migrate_dest_moves_a_guest_serving_http_under_load() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    let o = migrate_to(tmp.path(), &host, &host.url(), host.key(), &["--ram", "256", "--workload", "http", "--load", "open:100", "--link", "1Gbit"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(0), "{said}");
    assert!(said.contains("HTTP clients (open:100 keep-alive") && said.contains("| during |"), "{said}");
    let r = record(tmp.path());
    assert_eq!(r["outcome"]["kind"], "completed", "{}", r["outcome"]);
    assert_healthy_and_intact(&r);
    assert_eq!(r["health"]["runs_on"], "destination");
    assert_eq!(r["environment"]["destination_host"]["target"], host.url());
    // The source came from a snapshot of a guest bound for another host (its tap
    // without a vnet header), and its NIC served the far host's clients throughout.
    assert_eq!(r["guest_booted"], "restored", "{said}");
    assert_answered_throughout(&r, "migrate --load");
    assert!(r["service"]["probe"]["answered"].as_u64().unwrap() > 1000, "{}", r["service"]["probe"]);
    // Its time series beside the record.
    let csv = r["service"]["requests_csv"].as_str().expect("a requests CSV");
    assert!(tmp.path().join("out").join(csv).is_file(), "{csv}");
    wait_until_gone("after migrate --load");
    drop(host);
}
