//! The live cluster with a real host: one host emulated here (a cgroup) and the test
//! host (`network::test_host`: another "machine" reached over SSH), balanced by real
//! migrations that cross between them in both directions.

mod common;

use common::*;
use migbench::network::test_host::TestHost;
use std::collections::BTreeMap;
use std::ffi::OsString;
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
    let args: Vec<OsString> = vec![
        "--dest".into(),
        dest.into(),
        "--ssh-key".into(),
        key.into(),
        "--ssh-option".into(),
        format!("UserKnownHostsFile={}", host.known_hosts().display()).into(),
        "--ssh-option".into(),
        "StrictHostKeyChecking=yes".into(),
    ];
    run_balance(tmp, &[host], profile, &args)
}

/// `migbench balance --cluster PROFILE ARGS…`; returns as [`run_cluster`], with the
/// QEMUs seen here or on any of `hosts`.
fn run_balance(tmp: &Path, hosts: &[&TestHost], profile: &Path, args: &[OsString]) -> (Option<i32>, String, serde_json::Value, u32, BTreeMap<String, Seen>) {
    let out = tmp.join("out");
    let child = migbench(tmp)
        .arg("balance")
        .arg("--cluster")
        .arg(profile)
        .arg("--out")
        .arg(&out)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Watches the QEMUs: ours here mention the test's TMPDIR, ours there run in a host's namespace.
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, done, marker) = (seen.clone(), done.clone(), tmp.display().to_string());
        let there: Vec<String> = hosts.iter().map(|h| netns_name(h.inode())).collect();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for (p, cmd) in processes_mentioning("-name migbench-") {
                    let Some(name) = qemu_name(&cmd) else { continue };
                    let netns = std::fs::read_link(format!("/proc/{p}/ns/net")).map(|l| l.display().to_string()).unwrap_or_default();
                    if !(cmd.contains(&marker) || there.contains(&netns)) {
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

/// "migbench-c4" from a QEMU command line's `-name migbench-c4,debug-threads=on`
/// (not from an ssh command line whose remote `find -name migbench-…` cleans copies up).
fn qemu_name(cmd: &str) -> Option<String> {
    let rest = &cmd[cmd.find("-name migbench-")? + "-name ".len()..];
    let (name, _) = rest.split_once(",debug-threads=on")?;
    (!name.contains(' ')).then(|| name.to_string())
}

/// QEMUs and agents of ours still running, here or on `hosts` (whose processes we see).
fn ours_running(tmp: &Path, hosts: &[&TestHost]) -> Vec<(u32, String)> {
    let there: Vec<String> = hosts.iter().map(|h| netns_name(h.inode())).collect();
    let marker = tmp.display().to_string();
    processes_mentioning("migbench")
        .into_iter()
        .filter(|(p, c)| {
            let in_host = std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|l| there.contains(&l.display().to_string()));
            c.contains(&marker) || (in_host && (c.contains("-name migbench-") || c.contains("/agent/migbench-")))
        })
        .collect()
}

/// Asserts nothing of the run is left: no QEMU or agent here or on `hosts`, no cgroup of migbench `pid`.
fn assert_nothing_left(tmp: &Path, hosts: &[&TestHost], pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = ours_running(tmp, hosts);
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

    assert_nothing_left(tmp.path(), &[&host], pid, "after the cluster run");
    let inode = host.inode();
    drop(host);
    assert_namespace_gone(inode);
}

/// Asserts no process is left in the network namespace of inode `inode` (a dropped test host's).
fn assert_namespace_gone(inode: u64) {
    let holders: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.display().to_string() == netns_name(inode)))
        .map(|e| e.file_name())
        .collect();
    assert!(holders.is_empty(), "processes still in the test host's namespace: {holders:?}");
}

#[test]
fn an_unreachable_host_and_a_wrong_key_are_errors_that_leave_nothing() {
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
    assert_nothing_left(tmp.path(), &[&host], pid, "after an unreachable host");

    // A key the host never heard of.
    let other = tmp.path().join("other");
    let made = std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).output().unwrap();
    assert!(made.status.success());
    let (code, text, _, pid, seen) = run_cluster(tmp.path(), &host, &shipped(), &host.url(), &other);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("host \"There\"") && text.contains("refused the key") && text.contains(&other.display().to_string()), "{text}");
    assert!(seen.is_empty(), "something ran: {seen:?}");
    assert_nothing_left(tmp.path(), &[&host], pid, "after a wrong key");

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

/// The shipped two-remote-host profile with its hosts at `a` and `b`.
fn pair_profile(tmp: &Path, a: &TestHost, b: &TestHost) -> std::path::PathBuf {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/cluster-remote-pair.toml")).unwrap();
    assert!(text.contains("ssh://root@198.19.0.2") && text.contains("ssh://root@198.19.1.2"), "{text}");
    let text = text.replace("ssh://root@198.19.0.2", "@A@").replace("ssh://root@198.19.1.2", "@B@").replace("@A@", &a.url()).replace("@B@", &b.url());
    let path = tmp.join("cluster-remote-pair.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The ssh options that log in to both test hosts: both keys, both host keys.
fn pair_args(tmp: &Path, a: &TestHost, b: &TestHost) -> Vec<OsString> {
    let known = tmp.join("known_hosts");
    std::fs::write(&known, format!("{}{}", std::fs::read_to_string(a.known_hosts()).unwrap(), std::fs::read_to_string(b.known_hosts()).unwrap())).unwrap();
    vec![
        "--ssh-key".into(),
        a.key().into(),
        "--ssh-option".into(),
        format!("IdentityFile={}", b.key().display()).into(),
        "--ssh-option".into(),
        format!("UserKnownHostsFile={}", known.display()).into(),
        "--ssh-option".into(),
        "StrictHostKeyChecking=yes".into(),
    ]
}

/// Bytes sent from `dev`, a link in `host`'s namespace (`ip -s -j link`).
fn tx_bytes(host: &TestHost, dev: &str) -> u64 {
    let dev = dev.to_string();
    let out = host.enter(move || std::process::Command::new("ip").args(["-s", "-j", "link", "show", "dev", &dev]).output()).unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["stats64"]["tx"]["bytes"].as_u64().unwrap_or_else(|| panic!("no tx bytes in {v}"))
}

#[test]
fn a_guest_moves_between_two_remote_hosts_straight_over_their_own_link_and_arrives_healthy() {
    platform();
    let _slot = qemu_slot();
    let a = TestHost::start().expect("test host A");
    let b = TestHost::start().expect("test host B");
    let joined = TestHost::join(&a, &b).expect("joining the test hosts");
    // Each reaches the other's address over the pair: this host forwards nothing.
    let reach = |from: &TestHost, to: std::net::Ipv4Addr| {
        from.enter(move || std::process::Command::new("ip").args(["route", "get", &to.to_string()]).output()).unwrap().unwrap()
    };
    let route = String::from_utf8_lossy(&reach(&a, b.ip()).stdout).into_owned();
    assert!(route.contains(&joined.a_interface) && route.contains(&format!("via {}", joined.addresses.host())), "{route}");
    let route = String::from_utf8_lossy(&reach(&b, a.ip()).stdout).into_owned();
    assert!(route.contains(&joined.b_interface) && route.contains(&format!("via {}", joined.addresses.local())), "{route}");
    let (a_sent, b_sent) = (tx_bytes(&a, &joined.a_interface), tx_bytes(&b, &joined.b_interface));

    let tmp = tempfile::tempdir().unwrap();
    let profile = pair_profile(tmp.path(), &a, &b);
    let (code, text, run, pid, seen) = run_balance(tmp.path(), &[&a, &b], &profile, &pair_args(tmp.path(), &a, &b));
    assert!(run["error"].is_null(), "{text}");
    assert_eq!(code, Some(if run["balanced"] == true { 0 } else { 3 }), "{text}");

    // The record names each host's place: two other machines, neither capped, and a cgroup here.
    let hosts = run["hosts"].as_array().unwrap();
    for (h, name, host) in [(&hosts[0], "A", &a), (&hosts[1], "B", &b)] {
        assert_eq!(h["name"], name, "{h}");
        assert_eq!(h["place"], host.url(), "{h}");
        assert_eq!((h["capped"].as_bool(), h["capacity_percent"].as_f64()), (Some(false), Some(50.0)), "{h}");
        assert_eq!(h["machine"]["migrate_address"], host.ip().to_string(), "{h}");
    }
    assert_eq!(hosts[2]["name"], "Here");
    assert!(hosts[2]["place"].as_str().unwrap().contains(&format!("migbench-{pid}-host-Here")), "{}", hosts[2]);
    assert_eq!(hosts[2]["capped"], true, "{}", hosts[2]);
    assert!(run["environment"]["machine_type"].as_str().unwrap().starts_with("pc-"), "{}", run["environment"]);

    let rounds = run["rounds"].as_array().unwrap();
    let moves: Vec<&serde_json::Value> = rounds.iter().filter(|r| !r["decision"]["migration"].is_null() && !r["outcome"].is_null()).collect();
    assert!(!moves.is_empty(), "no move was made: {text}");
    let here_ns = std::fs::read_link("/proc/self/ns/net").unwrap().display().to_string();
    for (k, r) in moves.iter().enumerate() {
        let mv = &r["decision"]["migration"];
        let (vm, from, to) = (mv["vm"].as_str().unwrap(), mv["from"].as_str().unwrap(), mv["to"].as_str().unwrap());
        // A starts with every guest, B and Here with none (B first on the tie): the first move is A → B.
        if k == 0 {
            assert_eq!((from, to), ("A", "B"), "{r}");
        }
        assert_eq!(r["outcome"], "completed", "{r}");
        assert_eq!(r["healthy"], true, "{r}");
        assert!(r["total_time_ms"].as_f64().unwrap() > 0.0, "{r}");
        // The QEMU that received it ran on the host it was sent to.
        let qemu = r["destination_qemu"].as_str().unwrap();
        let s = seen.get(qemu).unwrap_or_else(|| panic!("{vm}'s destination {qemu} was never seen running; seen: {seen:?}"));
        match to {
            "Here" => {
                assert_eq!(r["destination_place"], "this machine", "{r}");
                assert_eq!(s.netns, here_ns, "{vm} → Here, but {qemu} ran in {s:?}");
                assert!(s.cgroup.contains(&format!("migbench-{pid}-host-Here")), "{vm} → Here, but {qemu}'s cgroups are {s:?}");
            }
            _ => {
                let dest = if to == "B" { &b } else { &a };
                assert_eq!(r["destination_place"], dest.url(), "{r}");
                assert_eq!(s.netns, netns_name(dest.inode()), "{vm} → {to}, but {qemu} ran in {s:?}");
            }
        }
        // The next round measured it there.
        let next = rounds.iter().find(|n| n["round"].as_u64() == Some(r["round"].as_u64().unwrap() + 1)).expect("a round after every move");
        let on = next["state"]["hosts"].as_array().unwrap().iter().find(|h| h["vms"].as_array().unwrap().iter().any(|v| v["name"] == vm)).unwrap();
        assert_eq!(on["name"], to, "{vm} after its move: {next}");
    }
    // The guests booted on A, not here.
    assert!(["migbench-c1", "migbench-c2", "migbench-c3"].iter().all(|q| seen.get(*q).is_some_and(|s| s.netns == netns_name(a.inode()))), "{seen:?}");
    // The guest's memory went over the pair between the two hosts (a 128 MiB guest: some MiB at least).
    let over = (tx_bytes(&a, &joined.a_interface) - a_sent) + (tx_bytes(&b, &joined.b_interface) - b_sent);
    assert!(over > 4 << 20, "only {over} bytes crossed the hosts' own link: {text}");
    eprintln!("{text}\n{over} bytes crossed the hosts' own link ({} ↔ {})", joined.a_interface, joined.b_interface);

    assert_nothing_left(tmp.path(), &[&a, &b], pid, "after the cluster run");
    let (ia, ib) = (a.inode(), b.inode());
    drop(a);
    // The pair went with A's namespace: B's end is gone too.
    // (A namespace is torn down by the kernel's worker, a moment after its last user.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dev = joined.b_interface.clone();
        let left = b.enter(move || std::process::Command::new("ip").args(["link", "show", "dev", &dev]).output()).unwrap().unwrap();
        if !left.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{} is still in B: {}", joined.b_interface, String::from_utf8_lossy(&left.stdout));
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(b);
    assert_namespace_gone(ia);
    assert_namespace_gone(ib);
}

#[test]
fn two_remote_hosts_that_cannot_reach_each_other_are_an_error_naming_both_before_anything_boots() {
    platform();
    let _slot = qemu_slot();
    // Two test hosts, not joined: each reaches this host only, which forwards nothing.
    let a = TestHost::start().expect("test host A");
    let b = TestHost::start().expect("test host B");
    let tmp = tempfile::tempdir().unwrap();
    let profile = pair_profile(tmp.path(), &a, &b);
    let (code, text, run, pid, seen) = run_balance(tmp.path(), &[&a, &b], &profile, &pair_args(tmp.path(), &a, &b));
    assert_eq!(code, Some(1), "{text}");
    let named = format!("host \"A\" ({}) cannot reach host \"B\" ({}) at its migration address {}", a.url(), b.url(), b.ip());
    assert!(text.contains(&named) && text.contains("Join the two machines"), "{text}");
    eprintln!("{text}");
    assert!(run.is_null() && seen.is_empty(), "something ran: {seen:?}");
    assert_nothing_left(tmp.path(), &[&a, &b], pid, "after two hosts that cannot reach each other");

    // --dest stands for a cluster's one remote host: with two it is refused before any connection.
    let mut args = pair_args(tmp.path(), &a, &b);
    args.extend(["--dest".into(), a.url().into()]);
    let (code, text, _, pid, seen) = run_balance(tmp.path(), &[&a, &b], &profile, &args);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("has 2 (\"A\", \"B\")") && text.contains("give each [[host]] its dest in the profile"), "{text}");
    assert!(!text.contains("connecting to") && seen.is_empty(), "{text}");
    assert_nothing_left(tmp.path(), &[&a, &b], pid, "after --dest with two remote hosts");
}
