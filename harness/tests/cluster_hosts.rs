//! The live cluster with a real host: one host emulated here (a cgroup) and the test
//! host (`network::test_host`: another "machine" reached over SSH), balanced by real
//! migrations that cross between them in both directions.

mod common;

use common::*;
use migbench::network::test_host::TestHost;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shipped profile: one host here (capped at 70 % of a CPU) with a light guest,
/// and a real host (counted as 120 %, not capped) with two heavier ones.
fn shipped() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/cluster-two-hosts.toml")
}

/// What a QEMU of ours was seen as while the run went on: its network namespace
/// and its cgroups (as /proc/PID/cgroup says).
#[derive(Debug, Clone)]
struct Seen {
    netns: String,
    cgroup: String,
}

/// `migbench balance --cluster PROFILE --dest DEST` with `key` and the host's
/// known_hosts; returns the exit code, everything printed, cluster.json, migbench's
/// pid and every QEMU named `migbench-…` seen here or on `host` while it ran.
fn run_cluster(tmp: &Path, host: &TestHost, profile: &Path, dest: &str, key: &Path) -> (Option<i32>, String, serde_json::Value, u32, BTreeMap<String, Seen>) {
    let out = tmp.join("out");
    let child = migbench(tmp)
        .arg("balance")
        .arg("--cluster")
        .arg(profile)
        .args(["--dest", dest])
        .arg("--out")
        .arg(&out)
        .arg("--ssh-key")
        .arg(key)
        .arg("--ssh-option")
        .arg(format!("UserKnownHostsFile={}", host.known_hosts().display()))
        .args(["--ssh-option", "StrictHostKeyChecking=yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Watches the QEMUs: ours here mention the test's TMPDIR, ours there run in the host's namespace.
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, done, marker, there) = (seen.clone(), done.clone(), tmp.display().to_string(), netns_name(host.inode()));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for (p, cmd) in processes_mentioning("-name migbench-") {
                    let Some(name) = qemu_name(&cmd) else { continue };
                    let netns = std::fs::read_link(format!("/proc/{p}/ns/net")).map(|l| l.display().to_string()).unwrap_or_default();
                    if !(cmd.contains(&marker) || netns == there) {
                        continue;
                    }
                    let cgroup = std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
                    // The first sight after its cgroup was set (a local QEMU joins its host's group after it starts).
                    let mut s = seen.lock().unwrap();
                    let e = s.entry(name).or_insert(Seen { netns: netns.clone(), cgroup: cgroup.clone() });
                    if cgroup.contains("host-") {
                        *e = Seen { netns, cgroup };
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let o = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_to_string(out.join("cluster.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let seen = seen.lock().unwrap().clone();
    (o.status.code(), text, run, pid, seen)
}

/// "net:[N]", as /proc/PID/ns/net links to a namespace of inode N.
fn netns_name(inode: u64) -> String {
    format!("net:[{inode}]")
}

/// "migbench-c4" from a QEMU command line's `-name migbench-c4,debug-threads=on`.
fn qemu_name(cmd: &str) -> Option<String> {
    let rest = &cmd[cmd.find("-name migbench-")? + "-name ".len()..];
    Some(rest.split([',', ' ']).next()?.to_string())
}

/// QEMUs and agents of ours still running, here or on `host` (whose processes we see).
fn ours_running(tmp: &Path, host: &TestHost) -> Vec<(u32, String)> {
    let there = netns_name(host.inode());
    let marker = tmp.display().to_string();
    processes_mentioning("migbench")
        .into_iter()
        .filter(|(p, c)| {
            let in_host = std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|l| l.display().to_string() == there);
            c.contains(&marker) || (in_host && (c.contains("-name migbench-") || c.contains("/agent/migbench-")))
        })
        .collect()
}

/// Asserts nothing of the run is left: no QEMU or agent here or there, no cgroup of migbench `pid`.
fn assert_nothing_left(tmp: &Path, host: &TestHost, pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = ours_running(tmp, host);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: left running: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let groups: Vec<_> = migbench::machine::cgroup::leftovers().into_iter().filter(|p| p.display().to_string().contains(&format!("migbench-{pid}-"))).collect();
    assert!(groups.is_empty(), "{what}: cgroups left: {groups:?}");
}

#[test]
fn guests_move_between_a_host_here_and_a_real_host_both_ways_and_arrive_healthy() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    let (code, text, run, pid, seen) = run_cluster(tmp.path(), &host, &shipped(), &host.url(), host.key());
    // Every move it made was performed; whether the last round found the hosts balanced
    // depends on the guests' CPU cost on this shared machine, and the exit code says which.
    assert!(run["error"].is_null(), "{text}");
    assert_eq!(code, Some(if run["balanced"] == true { 0 } else { 3 }), "{text}");

    // The record names each host's place, and both ends' environment as `migrate --dest` does.
    let hosts = run["hosts"].as_array().unwrap();
    assert_eq!(hosts[0]["name"], "Here");
    assert!(hosts[0]["place"].as_str().unwrap().contains(&format!("migbench-{pid}-host-Here")), "{}", hosts[0]);
    assert_eq!((hosts[0]["capped"].as_bool(), hosts[0]["capacity_percent"].as_f64()), (Some(true), Some(70.0)));
    assert_eq!(hosts[1]["place"], host.url(), "{}", hosts[1]);
    assert_eq!((hosts[1]["capped"].as_bool(), hosts[1]["capacity_percent"].as_f64(), hosts[1]["capacity_from"].as_str()), (Some(false), Some(120.0), Some("profile")));
    assert_eq!(hosts[1]["machine"]["migrate_address"], host.ip().to_string());
    let env = &run["environment"];
    assert_eq!(env["destination_host"]["target"], host.url(), "{env}");
    assert!(!env["qemu_destination_version"].as_str().unwrap().is_empty() && env["machine_type"].as_str().unwrap().starts_with("pc-"), "{env}");

    let rounds = run["rounds"].as_array().unwrap();
    let moves: Vec<&serde_json::Value> = rounds.iter().filter(|r| !r["decision"]["migration"].is_null() && !r["outcome"].is_null()).collect();
    let here_ns = std::fs::read_link("/proc/self/ns/net").unwrap().display().to_string();
    let mut directions = Vec::new();
    for r in &moves {
        let mv = &r["decision"]["migration"];
        let (vm, from, to) = (mv["vm"].as_str().unwrap(), mv["from"].as_str().unwrap(), mv["to"].as_str().unwrap());
        // Every move completed and left a healthy guest.
        assert_eq!(r["outcome"], "completed", "{r}");
        assert_eq!(r["healthy"], true, "{r}");
        assert!(r["total_time_ms"].as_f64().unwrap() > 0.0, "{r}");
        // On the host it was sent to: the QEMU that received it ran there.
        let qemu = r["destination_qemu"].as_str().unwrap();
        let s = seen.get(qemu).unwrap_or_else(|| panic!("{vm}'s destination {qemu} was never seen running; seen: {seen:?}"));
        if to == "There" {
            assert_eq!(r["destination_place"], host.url(), "{r}");
            assert_eq!(s.netns, netns_name(host.inode()), "{vm} → There, but {qemu} ran in {s:?}");
        } else {
            assert_eq!(r["destination_place"], "this machine", "{r}");
            assert_eq!(s.netns, here_ns, "{vm} → Here, but {qemu} ran in {s:?}");
            assert!(s.cgroup.contains(&format!("migbench-{pid}-host-Here")), "{vm} → Here, but {qemu}'s cgroups are {s:?}");
        }
        // The next round measured it there (its CPU read where it runs).
        let next = rounds.iter().find(|n| n["round"].as_u64() == Some(r["round"].as_u64().unwrap() + 1)).expect("a round after every move");
        let on = next["state"]["hosts"].as_array().unwrap().iter().find(|h| h["vms"].as_array().unwrap().iter().any(|v| v["name"] == vm)).unwrap();
        assert_eq!(on["name"], to, "{vm} after its move: {next}");
        directions.push((from.to_string(), to.to_string()));
    }
    // The engine moved guests across, both ways: There → Here first, Here → There after.
    let both = [("There".to_string(), "Here".to_string()), ("Here".to_string(), "There".to_string())];
    assert_eq!(directions, both, "{text}");

    assert_nothing_left(tmp.path(), &host, pid, "after the cluster run");
    let inode = host.inode();
    drop(host);
    // The test host's namespace went with it.
    let holders: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.display().to_string() == netns_name(inode)))
        .map(|e| e.file_name())
        .collect();
    assert!(holders.is_empty(), "processes still in the test host's namespace: {holders:?}");
}

#[test]
fn an_unreachable_host_a_wrong_key_and_two_remote_hosts_are_errors_that_leave_nothing() {
    platform();
    let _slot = qemu_slot();
    let host = TestHost::start().expect("the test host");
    let tmp = tempfile::tempdir().unwrap();
    // Nobody listens on that port there.
    let unreachable = format!("ssh://root@{}:2222", host.ip());
    let (code, text, run, pid, seen) = run_cluster(tmp.path(), &host, &shipped(), &unreachable, host.key());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("host \"There\"") && text.contains(&unreachable) && text.contains("cannot be reached"), "{text}");
    assert!(run.is_null() && seen.is_empty(), "something ran: {seen:?}");
    assert_nothing_left(tmp.path(), &host, pid, "after an unreachable host");

    // A key the host never heard of.
    let other = tmp.path().join("other");
    let made = std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).output().unwrap();
    assert!(made.status.success());
    let (code, text, _, pid, seen) = run_cluster(tmp.path(), &host, &shipped(), &host.url(), &other);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("host \"There\"") && text.contains("refused the key") && text.contains(&other.display().to_string()), "{text}");
    assert!(seen.is_empty(), "something ran: {seen:?}");
    assert_nothing_left(tmp.path(), &host, pid, "after a wrong key");

    // Two remote hosts: refused when the profile is read, before any connection.
    let two = tmp.path().join("two.toml");
    let text = std::fs::read_to_string(shipped()).unwrap();
    std::fs::write(&two, format!("{text}\n[[host]]\nname = \"Far\"\ndest = \"ssh://root@{}:2222\"\n", host.ip())).unwrap();
    let (code, text, _, pid, _) = run_cluster(tmp.path(), &host, &two, &host.url(), host.key());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("\"There\"") && text.contains("\"Far\"") && text.contains("between two remote hosts is not built"), "{text}");
    assert!(!text.contains("connecting to"), "{text}");
    assert_nothing_left(tmp.path(), &host, pid, "after two remote hosts");

    // --ssh-key for a cluster with no remote host.
    let o = migbench(tmp.path())
        .args(["balance", "--cluster"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/cluster-tcg.toml"))
        .arg("--ssh-key")
        .arg(host.key())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("--ssh-key is for a cluster host on another machine"), "{text}");
    let o = migbench(tmp.path())
        .args(["balance", "--cluster"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/cluster-tcg.toml"))
        .args(["--dest", &host.url()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("cluster profile cluster-tcg has none"), "{text}");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}
