//! What the tests across the test host (`network::test_host`) share: running
//! migbench against it as a user would, and checking that nothing is left behind.

use super::{migbench, processes_mentioning, results};
use migbench::network::test_host::TestHost;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// `migbench SUBCOMMAND --dest DEST` logging in with `key` and checking `host`'s key.
pub fn to_host(tmp: &Path, host: &TestHost, subcommand: &str, dest: &str, key: &Path) -> std::process::Command {
    let mut c = migbench(tmp);
    c.arg(subcommand).arg("--dest").arg(dest).arg("--ssh-key").arg(key);
    c.arg("--ssh-option").arg(format!("UserKnownHostsFile={}", host.known_hosts().display()));
    c.args(["--ssh-option", "StrictHostKeyChecking=yes"]);
    c
}

/// `migbench run` of `profile` (its text) with every destination on `host`;
/// returns what it printed and its results.
pub fn run_to(tmp: &Path, host: &TestHost, profile: &str) -> (Output, Vec<serde_json::Value>) {
    run_to_with(tmp, host, profile, &[])
}

/// [`run_to`] with more options (`--migrate-address …`, say).
pub fn run_to_with(tmp: &Path, host: &TestHost, profile: &str, args: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let path = tmp.join("p.toml");
    std::fs::write(&path, profile).unwrap();
    let out = tmp.join("out");
    let o = to_host(tmp, host, "run", &host.url(), host.key()).arg(&path).arg("--out").arg(&out).arg("--quiet").args(args).output().unwrap();
    (o, results(&out))
}

/// Asserts the guest's HTTP clients were answered before, during and after its
/// migration in record `m`, and that nothing failed outside the switchover.
pub fn assert_answered_throughout(m: &serde_json::Value, what: &str) {
    let client = &m["service"]["client"];
    for phase in ["before", "during", "after"] {
        assert!(client[phase]["ok"].as_u64().unwrap() > 0, "{what}: no answer {phase} the migration: {client}");
    }
    assert_eq!(client["failed_outside_window"], 0, "{what}: {client}");
}

/// Asserts the shaped class on this host's end of the link counted at least the
/// bytes QEMU sent in record `m`: the migration stream crossed the shaped link.
pub fn assert_stream_crossed_the_shape(m: &serde_json::Value, what: &str) {
    let link = &m["link"];
    let (before, after) = (class_bytes(&link["before"][0]), class_bytes(&link["after"][0]));
    let sent = m["transferred_bytes"].as_u64().unwrap();
    assert!(after.saturating_sub(before) >= sent, "{what}: htb counted {} bytes, QEMU sent {sent}", after.saturating_sub(before));
}

/// Asserts neither end of the link to `host` has a qdisc of `kinds` left on it.
pub fn assert_ends_clear(host: &TestHost, kinds: &[&str], what: &str) {
    let here = std::process::Command::new("tc").args(["qdisc", "show", "dev", host.local_interface()]).output().unwrap();
    let there = host.ssh(&format!("tc qdisc show dev {}", host.host_interface())).output().unwrap();
    for (end, o) in [("near", here), ("far", there)] {
        let t = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success() && !kinds.iter().any(|k| t.contains(k)), "{end} end still {what}: {t}");
    }
}

/// QEMUs and agents of ours still running anywhere (the test host shares our pid space).
pub fn ours_running() -> Vec<(u32, String)> {
    processes_mentioning("migbench-")
        .into_iter()
        .filter(|(_, c)| (c.contains("qemu-system") && c.contains("-name migbench-")) || c.contains("/agent/migbench-"))
        .collect()
}

pub fn wait_until_gone(what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = ours_running();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: left running: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the kernel has netem (checked in the test host's namespace, over SSH).
pub fn kernel_has_netem(host: &TestHost) -> bool {
    host.ssh("tc qdisc add dev lo root netem delay 1ms && tc qdisc del dev lo root").output().unwrap().status.success()
}

/// The bytes `tc -s class show` counted on htb's class in `stats`.
pub fn class_bytes(stats: &serde_json::Value) -> u64 {
    migbench::network::tc_output::counters(stats["classes"].as_str().unwrap_or_default())
        .iter()
        .filter(|c| c.what.starts_with("class htb 1:1"))
        .map(|c| c.bytes)
        .sum()
}
