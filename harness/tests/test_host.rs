//! The tests' second host (`network::test_host`): a real sshd (the system's or
//! Debian's, fetched by `host::sshd_cache`) in network, mount and PID namespaces of
//! its own behind a veth pair. It lets in the per-run key and no other, it really is
//! another network namespace, two of them live side by side, and nothing of one
//! remains after it is dropped or after its process is SIGKILLed. A host whose link
//! is a delay line (two tuns and a relay, `network::delay_line`) delays and drops
//! as its control socket sets, and leaves nothing either.

mod common;

use common::pid_alive;
use migbench::network::delay_line::{self, Impairment, Settings};
use migbench::network::test_host::{TestHost, TestLink};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `remote` on the host over SSH; the output, or the test fails with what ssh said.
fn on(host: &TestHost, remote: &str) -> String {
    let o = host.ssh(remote).output().unwrap();
    assert!(o.status.success(), "ssh {} {remote:?} failed ({}):\n{}\nsshd's log:\n{}", host.url(), o.status, text(&o), sshd_log(host));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sshd_log(host: &TestHost) -> String {
    std::fs::read_to_string(host.log()).unwrap_or_default()
}

/// The processes (not zombies) in the network namespace with this inode.
fn processes_in(inode: u64) -> Vec<u32> {
    let target = format!("net:[{inode}]");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if std::fs::read_link(e.path().join("ns/net")).is_ok_and(|t| t.to_string_lossy() == target) && pid_alive(pid) {
            found.push(pid);
        }
    }
    found
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success()
}

/// Processes whose command line mentions `marker`, alive.
fn alive_mentioning(marker: &str) -> Vec<(u32, String)> {
    common::processes_mentioning(marker).into_iter().filter(|(p, _)| pid_alive(*p)).collect()
}

/// Waits until `done` holds, at most 15 s; false if it never did.
fn eventually(done: impl FnMut() -> bool) -> bool {
    eventually_within(Duration::from_secs(15), done)
}

/// Waits until `done` holds, at most `limit`; false if it never did.
fn eventually_within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Opens a session that stays (`sleep 600` on the host) and waits until it runs there.
fn lingering_session(host: &TestHost) -> Child {
    let child = host.ssh("exec sleep 600").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let inode = host.inode();
    let sleeping = || processes_in(inode).iter().any(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep"));
    assert!(eventually(sleeping), "the session's sleep never ran on the host:\n{}", sshd_log(host));
    child
}

#[test]
fn the_per_run_key_logs_in_to_another_network_namespace() {
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let had_run_sshd = Path::new("/run/sshd").exists();
    let host = TestHost::start().unwrap();
    assert_eq!(host.url(), format!("ssh://root@{}", host.ip()));
    assert_eq!(on(&host, "true"), "");
    assert_eq!(on(&host, "id -un").trim(), "root");
    // Its network namespace is the host's, not ours.
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap().display().to_string();
    let theirs = on(&host, "readlink /proc/self/ns/net").trim().to_string();
    assert_ne!(theirs, ours);
    assert_eq!(theirs, format!("net:[{}]", host.inode()));
    // It holds the host's address, on its end of the veth pair.
    let addrs = on(&host, "ip -o -4 addr show");
    assert!(addrs.lines().any(|l| l.contains(host.host_interface()) && l.contains(&format!("inet {}/30", host.ip()))), "{addrs}");
    // Its processes are its own: sshd is the first.
    assert_eq!(on(&host, "cat /proc/1/comm").trim(), "sshd");
    // It reaches us at local_ip().
    let listener = std::net::TcpListener::bind((host.local_ip(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        (peer.ip(), got)
    });
    on(&host, &format!("echo hello > /dev/tcp/{}/{port}", host.local_ip()));
    let (peer, got) = reply.join().unwrap();
    assert_eq!((peer, got.as_str()), (std::net::IpAddr::V4(host.ip()), "hello\n"));
    // SFTP works (scp uses it).
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), "payload").unwrap();
    let o = Command::new("scp").args(host.ssh_options()).arg(tmp.path().join("f")).arg(format!("root@{}:{}", host.ip(), host.dir().join("copied").display())).output().unwrap();
    assert!(o.status.success(), "scp: {}", text(&o));
    assert_eq!(std::fs::read_to_string(host.dir().join("copied")).unwrap(), "payload");
    // The system's files are as they were: the host's /run and passwd are its own.
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    assert_eq!(Path::new("/run/sshd").exists(), had_run_sshd);
    let log = sshd_log(&host);
    assert!(log.contains("Accepted publickey for root"), "{log}");
}

#[test]
fn a_key_of_its_own_is_refused() {
    let host = TestHost::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    let o = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The host's options with the other key in place of the host's.
    let mut options = host.ssh_options();
    let i = options.iter().position(|o| o == "-i").unwrap();
    options[i + 1] = other.display().to_string();
    let o = Command::new("ssh").args(&options).arg(format!("root@{}", host.ip())).arg("true").stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(255), "{}", text(&o));
    assert!(text(&o).contains("Permission denied"), "{}", text(&o));
    // And the right key still gets in.
    on(&host, "true");
}

#[test]
fn nothing_remains_after_a_drop() {
    nothing_remains_after_a_drop_of(TestLink::Veth);
}

#[test]
fn nothing_of_a_delay_line_remains_after_a_drop() {
    nothing_remains_after_a_drop_of(TestLink::DelayLine);
}

fn nothing_remains_after_a_drop_of(link: TestLink) {
    let host = TestHost::start_with(link).unwrap();
    let (inode, dir) = (host.inode(), host.dir().to_path_buf());
    let (local, remote) = (host.local_interface().to_string(), host.host_interface().to_string());
    assert!(link_exists(&local) && !link_exists(&remote), "only our end of the pair is in our namespace");
    let mut session = lingering_session(&host);
    let marker = dir.display().to_string();
    assert!(alive_mentioning(&marker).iter().any(|(_, c)| c.contains("sshd")), "no sshd runs with {marker}");
    assert!(processes_in(inode).len() >= 3, "sshd, the session and its sleep: {:?}", processes_in(inode));
    drop(host);
    assert_eq!(processes_in(inode), Vec::<u32>::new(), "processes of the host outlived it");
    assert!(alive_mentioning(&marker).is_empty(), "{:?}", alive_mentioning(&marker));
    assert!(!migbench::network::namespaces_in_use().contains(&inode), "the host's namespace is still held");
    assert!(!link_exists(&local), "{local} is still there");
    assert_eq!(delay_line::read(&local).unwrap(), None, "a delay line still answers on {local}");
    assert!(!dir.exists(), "{} is still there", dir.display());
    // The session's client saw its connection end.
    assert!(eventually(|| session.try_wait().unwrap().is_some()), "the ssh client of a session never noticed the host was gone");
}

#[test]
fn two_hosts_live_side_by_side() {
    let a = std::thread::spawn(TestHost::start);
    let b = std::thread::spawn(TestHost::start);
    let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
    assert_ne!(a.ip(), b.ip());
    assert_ne!(a.local_ip(), b.local_ip());
    assert_ne!(a.local_interface(), b.local_interface());
    assert_ne!(a.inode(), b.inode());
    for h in [&a, &b] {
        assert_eq!(on(h, "readlink /proc/self/ns/net").trim(), format!("net:[{}]", h.inode()));
    }
    // One host's key and known_hosts are not the other's.
    let mut options = a.ssh_options();
    let i = options.iter().position(|o| o == "-i").unwrap();
    options[i + 1] = b.key().display().to_string();
    let o = Command::new("ssh").args(&options).arg(format!("root@{}", a.ip())).arg("true").stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(255), "{}", text(&o));
    // The link of one is cut and restored; the other's is untouched.
    a.set_link(false).unwrap();
    let shown = Command::new("ip").args(["-o", "link", "show", a.local_interface()]).output().unwrap();
    assert!(text(&shown).contains("NO-CARRIER"), "our end still has a carrier: {}", text(&shown));
    let o = Command::new("ssh").args(a.ssh_options()).args(["-o", "ConnectTimeout=3"]).arg(format!("root@{}", a.ip())).arg("true").stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(255), "reached a host whose link is cut: {}", text(&o));
    assert!(text(&o).contains("timed out"), "{}", text(&o));
    on(&b, "true");
    a.set_link(true).unwrap();
    assert!(eventually(|| a.ssh("true").status().unwrap().success()), "the restored link does not carry ssh");
}

/// Set in the child process of [`a_sigkilled_holder_leaves_nothing`].
const CHILD: &str = "MIGBENCH_TEST_HOST_CHILD";

/// Not a test of its own: the process [`a_sigkilled_holder_leaves_nothing`] starts
/// and kills. It starts a host with a session open and says where, then waits.
#[test]
#[ignore = "run by a_sigkilled_holder_leaves_nothing as its child"]
#[allow(clippy::zombie_processes)] // The session's client outlives this process on purpose.
fn held_by_a_child_process() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let link = if std::env::var(CHILD).is_ok_and(|v| v == "delay-line") { TestLink::DelayLine } else { TestLink::Veth };
    let host = TestHost::start_with(link).unwrap();
    let session = lingering_session(&host);
    println!("HOST {} {} {} {}", host.inode(), host.local_interface(), host.dir().display(), session.id());
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_sigkilled_holder_leaves_nothing() {
    sigkilled_holder_leaves_nothing("veth");
}

#[test]
fn a_sigkilled_holder_of_a_delay_line_leaves_nothing() {
    sigkilled_holder_leaves_nothing("delay-line");
}

/// Starts a child holding a host on `link` ("veth" or "delay-line"), SIGKILLs it
/// and checks what remains.
fn sigkilled_holder_leaves_nothing(link: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "held_by_a_child_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, link)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // libtest prints "test held_by_a_child_process ... " before the test's own output.
    let line = lines.find_map(|l| l.ok()?.split_once("HOST ").map(|(_, w)| w.to_string())).expect("the child never said where its host is");
    let words: Vec<&str> = line.split_whitespace().collect();
    let (inode, local, dir, client): (u64, &str, PathBuf, u32) = (words[0].parse().unwrap(), words[1], words[2].into(), words[3].parse().unwrap());
    assert!(!processes_in(inode).is_empty() && link_exists(local) && dir.exists() && pid_alive(client));

    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let marker = dir.display().to_string();
    // sshd dies with it and takes the session with it; the namespace goes with its
    // last process and the veth pair with the namespace.
    assert!(eventually(|| processes_in(inode).is_empty()), "processes of the host outlived its holder: {:?}", processes_in(inode));
    assert!(eventually(|| alive_mentioning(&marker).iter().all(|(p, _)| *p == client)), "{:?}", alive_mentioning(&marker));
    assert!(eventually(|| !migbench::network::namespaces_in_use().contains(&inode)), "the namespace outlived its holder");
    assert!(eventually(|| !link_exists(local)), "{local} outlived its holder");
    assert!(eventually(|| delay_line::read(local).unwrap().is_none()), "a delay line on {local} outlived its holder");
    // The session's client (the holder's child, not killed with it) saw it end: at
    // once over a veth pair (sshd's goodbye crosses it before it goes), through its
    // keep-alives over a delay line (which died with its holder).
    assert!(eventually_within(Duration::from_secs(30), || !pid_alive(client)), "the ssh client of the session still runs");
    // What stays is the run directory with the keys, which the stale clean-up of
    // the next migbench finds and removes.
    assert!(dir.exists());
    let found: Vec<_> = migbench::machine::stale::find().into_iter().filter(|l| l.pid == pid).collect();
    assert_eq!(found.iter().map(|l| &l.path).collect::<Vec<_>>(), [&dir], "the stale clean-up does not see the run directory");
    migbench::machine::stale::remove(&found[0]).unwrap();
    assert!(!dir.exists());
}


/// The median time of 10 TCP connections to the host's sshd, ms.
fn round_trip_ms(host: &TestHost) -> f64 {
    migbench::machine::remote_link::round_trip_ms((host.ip(), migbench::network::test_host::PORT).into()).unwrap()
}

#[test]
fn a_delay_line_delays_and_drops_as_its_socket_sets_and_takes_a_rate() {
    let host = TestHost::start_with(TestLink::DelayLine).unwrap();
    assert_eq!(host.link(), TestLink::DelayLine);
    let (near, far) = (host.local_interface().to_string(), host.host_interface().to_string());
    // Our end is a tap (a tun device), the host's is in its namespace with its address.
    let shown = Command::new("ip").args(["-d", "-o", "link", "show", &near]).output().unwrap();
    assert!(text(&shown).contains("tun type tap") && text(&shown).contains("mtu 1500"), "{}", text(&shown));
    assert!(!link_exists(&far));
    let addrs = on(&host, "ip -o -4 addr show");
    assert!(addrs.lines().any(|l| l.contains(&far) && l.contains(&format!("inet {}/30", host.ip()))), "{addrs}");
    // Its control socket, named after our end, answers with nothing set.
    let state = delay_line::read(&near).unwrap().expect("the delay line answers");
    assert_eq!((state.near.as_str(), state.far.as_str(), state.settings), (near.as_str(), far.as_str(), Settings::default()));
    assert!(state.counters.toward_far.passed_packets > 0 && state.counters.toward_near.passed_packets > 0, "sshd's greeting crossed it: {state:?}");
    let quick = round_trip_ms(&host);
    assert!(quick < 15.0, "an unset line holds packets: {quick} ms");

    // 15 ms each way: a round trip of at least 30 ms.
    let each = Impairment { delay_us: 15_000, jitter_us: 0, loss_ppm: 0 };
    delay_line::set(&near, Settings { toward_far: each, toward_near: each }).unwrap().unwrap();
    let slow = round_trip_ms(&host);
    assert!((30.0..60.0).contains(&slow), "a 30 ms round trip measured {slow} ms");
    let held = delay_line::read(&near).unwrap().unwrap().counters;
    assert!(held.toward_far.delayed_packets >= 10 && held.toward_near.delayed_packets >= 10, "{held:?}");

    // Half of what goes to the host is lost, nothing of what comes back.
    let half = Impairment { delay_us: 0, jitter_us: 0, loss_ppm: 500_000 };
    let before = delay_line::set(&near, Settings { toward_far: half, toward_near: Impairment::NONE }).unwrap().unwrap().counters;
    let udp = std::net::UdpSocket::bind((host.local_ip(), 0)).unwrap();
    for _ in 0..400 {
        udp.send_to(b"x", (host.ip(), 9)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = delay_line::read(&near).unwrap().unwrap().counters;
    let dropped = after.toward_far.dropped_packets - before.toward_far.dropped_packets;
    assert!((120..280).contains(&dropped), "{dropped} of 400 dropped at 50 %");
    assert_eq!(after.toward_near.dropped_packets, before.toward_near.dropped_packets);

    // A setting it cannot do is refused and changes nothing.
    let bad = Impairment { delay_us: 1_000, jitter_us: 2_000, loss_ppm: 0 };
    let e = format!("{:#}", delay_line::set(&near, Settings { toward_far: bad, toward_near: bad }).unwrap_err());
    assert!(e.contains("exceeds the delay") && e.contains(&near), "{e}");
    assert_eq!(host.delay_line().unwrap().state().settings.toward_far, half);

    // tc's htb shapes a tap's egress as any interface's.
    let tc = |args: &str| Command::new("tc").args(args.split_whitespace()).output().unwrap();
    assert!(tc(&format!("qdisc add dev {near} root handle 1: htb default 1")).status.success());
    assert!(text(&tc(&format!("qdisc show dev {near}"))).contains("htb 1: root"));
    assert!(tc(&format!("qdisc del dev {near} root")).status.success());
    delay_line::set(&near, Settings::default()).unwrap();
    on(&host, "true");
}
