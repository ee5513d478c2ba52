//! The tests' second host: a machine reached over SSH exactly as a user's other
//! host is, made on this one. It is Debian's OpenSSH server (see
//! [`crate::host::sshd_cache`]) running in namespaces of its own, joined to this
//! host by a veth pair (or, with [`TestLink::DelayLine`], a pair of tap devices
//! joined by a [`DelayLine`] in this process, for a kernel without netem):
//!
//! - a network namespace with one end of the pair, holding the host's address
//!   (`198.19.N.2/30`, [`Addresses`]); the other end stays in ours, with
//!   `198.19.N.1/30`, the address the other host reaches us at;
//! - a mount namespace where everything is private, `/run` is a tmpfs with the
//!   `/run/sshd` OpenSSH wants, and, when the system has no `sshd` user (no
//!   openssh-server installed), a copy of `/etc/passwd` with one is bound over
//!   `/etc/passwd`: OpenSSH does not start without its privilege-separation user.
//!   The real file system is not changed outside the run directory;
//! - a PID namespace whose first process is sshd (with a `/proc` of its own): when
//!   sshd dies, the kernel kills every process of the host with it (its SSH
//!   sessions and whatever they started), so nothing of the host can outlive it.
//!
//! The per-run keys, `authorized_keys`, `known_hosts`, `sshd_config` and sshd's log
//! are in a run directory ([`RunDir`]).
//!
//! Two hosts can be joined directly ([`TestHost::join`]: a veth pair between their
//! namespaces), as two machines a user's cluster moves guests between.
//!
//! Nothing outlives the host: dropping it kills every process in its network
//! namespace, reaps sshd, deletes the veth pair and removes the run directory.
//! After a SIGKILL of the process that made it, sshd is SIGKILLed by the kernel
//! (PR_SET_PDEATHSIG, from a thread that lives as long as the host), the PID
//! namespace dies with it, the network namespace with its last process and the veth
//! pair with the namespace; the run directory is what the next migbench's stale
//! clean-up removes (`machine::stale`), its owner's lock being free. A delay line's
//! tap devices are not persistent: they go with its descriptors, when the host is
//! dropped or its process dies, and its control socket (abstract) with them.

use super::delay_line::DelayLine;
use super::host_namespaces::{Mounts, enter_host, kill_namespace, new_namespace};
use super::run_in;
use crate::host::{self, FileLock, sshd_cache};
use crate::machine::run_dir::RunDir;
use anyhow::{Context, Result, bail};
use migbench_guest::netif;
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// The port sshd listens on, the usual one: the host has a network of its own.
pub const PORT: u16 = 22;
/// How long sshd may take to answer on its port.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The uid and gid the privilege-separation user gets when the system has none:
/// the gid is `nogroup`'s.
const NOGROUP: u32 = 65534;

/// A test host's place on the link: the /30 `198.19.index.0/30`, inside RFC 2544's
/// 198.18.0.0/15 and apart from the test network's 198.18.0.1 and .2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub index: u8,
}

impl Addresses {
    /// Our end of the link: `198.19.index.1`.
    pub fn local(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, self.index, 1)
    }

    /// The host's: `198.19.index.2`.
    pub fn host(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, self.index, 2)
    }

    pub const PREFIX: u8 = 30;

    /// Whether `ip` lies in this /30.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & !3 == u32::from(Ipv4Addr::new(198, 19, self.index, 0))
    }

    /// The veth end in our namespace, and the host's: "mbth7a", "mbth7b".
    pub fn interfaces(self) -> (String, String) {
        (format!("mbth{}a", self.index), format!("mbth{}b", self.index))
    }
}

/// The first /30 whose interface name no link of ours has and where no address of
/// ours lies (a live test host holds its /30 by its interface).
pub fn free_addresses(links: &[String], addresses: &[Ipv4Addr]) -> Option<Addresses> {
    (0..=u8::MAX).map(|index| Addresses { index }).find(|a| !links.contains(&a.interfaces().0) && !addresses.iter().any(|ip| a.contains(*ip)))
}

/// The sshd configuration of a test host whose files are in `dir`.
pub fn sshd_config(host: Ipv4Addr, dir: &Path, sftp_server: Option<&Path>) -> String {
    // sshd expands %-tokens in AuthorizedKeysFile.
    let authorized = dir.join("authorized_keys").display().to_string().replace('%', "%%");
    let mut c = format!(
        "# migbench's test host: one run's, in namespaces of its own\n\
         ListenAddress {host}:{PORT}\n\
         HostKey {}\n\
         PidFile none\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         AuthorizedKeysFile {authorized}\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         UseDNS no\n\
         PrintMotd no\n\
         AllowTcpForwarding yes\n\
         AllowStreamLocalForwarding yes\n\
         # One ControlMaster connection carries a dozen sessions; tests connect in parallel.\n\
         MaxSessions 64\n\
         MaxStartups 64\n\
         LogLevel VERBOSE\n",
        dir.join("host_ed25519").display()
    );
    if let Some(sftp) = sftp_server {
        c.push_str(&format!("Subsystem sftp {}\n", sftp.display()));
    }
    c
}

/// `/etc/passwd`'s text with a privilege-separation user `sshd` added (as Debian's
/// openssh-server makes it: no login, home /run/sshd), or `None` when it has one.
/// Its uid is the first from 100 (Debian's first system uid) that no user has.
pub fn passwd_with_sshd(passwd: &str) -> Option<String> {
    let field = |line: &str, n: usize| line.split(':').nth(n).map(str::to_string);
    if passwd.lines().any(|l| field(l, 0).as_deref() == Some("sshd")) {
        return None;
    }
    let uids: Vec<u32> = passwd.lines().filter_map(|l| field(l, 2)?.parse().ok()).collect();
    let uid = (100..NOGROUP).find(|u| !uids.contains(u))?;
    let mut text = passwd.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("sshd:x:{uid}:{NOGROUP}::/run/sshd:/usr/sbin/nologin\n"));
    Some(text)
}

/// What joins the test host to this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TestLink {
    /// A veth pair: the kernel's, at the kernel's speed, shaped with `tc`.
    #[default]
    Veth,
    /// Two tap devices joined by a [`DelayLine`] in this process, which emulates
    /// the round trip, jitter and loss a kernel without netem cannot; the rate is
    /// still `tc`'s (htb on each tap). `migbench` finds the line by the near
    /// device's name and uses it where netem is missing (`machine::remote_link`).
    DelayLine,
}

/// A running test host. See the module's documentation.
pub struct TestHost {
    addresses: Addresses,
    link: TestLink,
    /// The relay of a [`TestLink::DelayLine`] link, holding both taps.
    delay_line: Option<DelayLine>,
    local_if: String,
    host_if: String,
    /// Our ends of the veth pairs [`TestHost::add_veth_link`] added.
    more_links: Vec<String>,
    netns: File,
    inode: u64,
    sshd: Option<Sshd>,
    key: PathBuf,
    known_hosts: PathBuf,
    log: PathBuf,
    /// Last: removed once everything in it is no longer used.
    run: RunDir,
}

/// sshd's keeper: the thread that started it (its death SIGKILLs sshd) and waits
/// for it.
struct Sshd {
    /// The process we started: it made the PID namespace and waits for sshd, its
    /// first process; its process group holds both.
    pid: i32,
    /// In a mutex so that a host can be shared between threads.
    exited: Mutex<mpsc::Receiver<std::io::Result<ExitStatus>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestHost {
    /// Makes the host on a veth pair and starts its sshd; returns once sshd
    /// answers on its port. Needs root (namespaces, a veth pair, mounts).
    pub fn start() -> Result<TestHost> {
        TestHost::start_with(TestLink::Veth)
    }

    /// [`TestHost::start`] with the link `link`.
    pub fn start_with(link: TestLink) -> Result<TestHost> {
        if !host::is_root() {
            bail!("the test host needs root: it makes network, mount and PID namespaces and a veth pair");
        }
        if host::which("ip").is_none() {
            bail!("the test host needs iproute2's `ip` to make its veth pair: install iproute2");
        }
        if host::which("ssh-keygen").is_none() {
            bail!("the test host needs ssh-keygen for its keys: install openssh-client");
        }
        let sshd = sshd_cache::ensure()?;
        let run = RunDir::new()?;
        let dir = run.path().to_path_buf();
        for name in ["host_ed25519", "id_ed25519"] {
            host::run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "migbench-test-host", "-f"]).arg(dir.join(name)))
                .with_context(|| format!("making the test host's key {name}"))?;
        }
        let netns = new_namespace()?;
        use std::os::unix::fs::MetadataExt;
        let inode = netns.metadata().context("reading the test host's namespace's identity")?.ino();
        let (addresses, delay_line) = add_link(&netns, link)?;
        let (local_if, host_if) = addresses.interfaces();
        // From here on, dropping `host` undoes what is done.
        let mut host = TestHost {
            addresses,
            link,
            delay_line,
            local_if,
            host_if,
            more_links: Vec::new(),
            netns,
            inode,
            sshd: None,
            key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            log: dir.join("sshd.log"),
            run,
        };
        host.address(addresses)?;

        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).with_context(|| format!("writing {}", dir.join(name).display()));
        let public = |name: &str| std::fs::read_to_string(dir.join(format!("{name}.pub"))).with_context(|| format!("reading {name}.pub"));
        write("authorized_keys", &public("id_ed25519")?)?;
        let host_key = public("host_ed25519")?;
        // "ssh-ed25519 AAAA… comment" → "198.19.0.2 ssh-ed25519 AAAA…"
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        write("known_hosts", &format!("{} {}\n", addresses.host(), host_key.join(" ")))?;
        write("sshd_config", &sshd_config(addresses.host(), &dir, sshd_cache::sftp_server(&sshd).as_deref()))?;
        let passwd = match passwd_with_sshd(&std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?) {
            Some(text) => {
                write("passwd", &text)?;
                use std::os::unix::fs::PermissionsExt;
                // Read through the bind mount by everyone, as /etc/passwd is.
                std::fs::set_permissions(dir.join("passwd"), std::fs::Permissions::from_mode(0o644))?;
                Some(dir.join("passwd"))
            }
            None => None,
        };
        host.sshd = Some(Sshd::start(&sshd, &dir, &host.log, host.netns.as_raw_fd(), passwd.as_deref())?);
        host.wait_ready()?;
        Ok(host)
    }

    /// Addresses both ends of the link at `addresses` and brings them (and the
    /// host's loopback) up.
    fn address(&self, addresses: Addresses) -> Result<()> {
        let (local_if, host_if) = addresses.interfaces();
        netif::set_ipv4(&local_if, addresses.local(), Addresses::PREFIX).with_context(|| format!("addressing our end of the test host's link {local_if}"))?;
        netif::set_up(&local_if)?;
        self.enter(move || -> std::io::Result<()> {
            netif::set_up("lo")?;
            netif::set_ipv4(&host_if, addresses.host(), Addresses::PREFIX)?;
            netif::set_up(&host_if)
        })?
        .with_context(|| format!("addressing the test host's end of its link {}", addresses.interfaces().1))
    }

    /// Joins the host to this one by a second veth pair, in a /30 of its own: a
    /// network apart from the first, say for migrations (`--migrate-address`) while
    /// SSH and the guest's clients keep the first. Deleted with the host.
    pub fn add_veth_link(&mut self) -> Result<Addresses> {
        let (addresses, _) = add_link(&self.netns, TestLink::Veth)?;
        self.more_links.push(addresses.interfaces().0);
        self.address(addresses)?;
        Ok(addresses)
    }

    /// Waits until sshd greets on its port (a TCP connection from our namespace).
    fn wait_ready(&mut self) -> Result<()> {
        let addr = SocketAddr::from((self.addresses.host(), PORT));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.sshd.as_mut().and_then(|s| s.exited.get_mut().ok()?.try_recv().ok()) {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                bail!("the test host's sshd exited ({status}) before answering on {addr}. Its log ({}):\n{}", self.log.display(), self.log_tail());
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut greeting = [0u8; 8];
                if s.read_exact(&mut greeting).is_ok() && greeting.starts_with(b"SSH-") {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "the test host's sshd did not answer on {addr} within {} s. Its log ({}):\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        if tail.trim().is_empty() { "  (nothing)".into() } else { tail }
    }

    /// The host's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.addresses.host()
    }

    /// Our end's address: where the host reaches this machine.
    pub fn local_ip(&self) -> Ipv4Addr {
        self.addresses.local()
    }

    /// "ssh://root@198.19.0.2", as a user names a host.
    pub fn url(&self) -> String {
        format!("ssh://root@{}", self.ip())
    }

    /// The private key the host accepts for root.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// A known_hosts file with the host's key for its address.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// What an ssh client needs to log in with the key and check the host's key
    /// against [`TestHost::known_hosts`], never asking anything. Keep-alives end a
    /// session within some 12 s of the host going without a word (a delay line's
    /// holder SIGKILLed: nothing relays sshd's goodbye), as migbench's own do.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            "ServerAliveInterval=3".into(),
            "-o".into(),
            "ServerAliveCountMax=4".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", quoted(&self.known_hosts)),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]
    }

    /// `ssh [options] root@IP REMOTE`: runs `remote` (a shell command line) on the host.
    pub fn ssh(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_options()).arg(format!("root@{}", self.ip())).arg(remote).stdin(Stdio::null());
        c
    }

    /// The link's end in our namespace ("mbth0a").
    pub fn local_interface(&self) -> &str {
        &self.local_if
    }

    /// What the link is.
    pub fn link(&self) -> TestLink {
        self.link
    }

    /// The delay line of a [`TestLink::DelayLine`] link, for its settings and
    /// counters (it is set through its control socket, `delay_line::set`).
    pub fn delay_line(&self) -> Option<&DelayLine> {
        self.delay_line.as_ref()
    }

    /// The link's end in the host's namespace ("mbth0b"), e.g. for `tc` inside [`TestHost::enter`].
    pub fn host_interface(&self) -> &str {
        &self.host_if
    }

    /// The host's network namespace, for a process that is to run in it.
    pub fn namespace_fd(&self) -> RawFd {
        self.netns.as_raw_fd()
    }

    /// The host's network namespace's inode number (`net:[N]` in /proc/*/ns/net).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Runs `f` on a thread inside the host's network namespace (a process it spawns
    /// runs there too) and returns its result.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        run_in(&self.netns, f)
    }

    /// The run directory with the keys, configuration and sshd's log.
    pub fn dir(&self) -> &Path {
        self.run.path()
    }

    /// sshd's log (`-e`, LogLevel VERBOSE): connections, keys accepted or refused.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Cuts (`false`) or restores (`true`) the link, as a pulled and replugged
    /// cable: the host's end of the veth pair goes down or up. Our end then loses its
    /// carrier but keeps its address and route, so what we send the host is dropped
    /// (not routed elsewhere, e.g. to a default gateway, as it would be were our end
    /// down); the host cannot send at all.
    pub fn set_link(&self, up: bool) -> Result<()> {
        let name = self.host_if.clone();
        self.enter(move || if up { netif::set_up(&name) } else { netif::set_down(&name) })?
            .with_context(|| format!("bringing the test host's link ({}) {}", self.host_if, if up { "up" } else { "down" }))
    }
}

/// A path for an ssh `-o` option, quoted when it holds a space.
fn quoted(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains(char::is_whitespace) { format!("\"{s}\"") } else { s }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Every process of the host: sshd, its sessions and what they started (the
        // PID namespace's first process taking the rest with it).
        kill_namespace(self.inode);
        if let Some(mut sshd) = self.sshd.take() {
            // The process we started reaps sshd and exits; if it does not, it goes too.
            let exited = sshd.exited.get_mut().map(|rx| rx.recv_timeout(Duration::from_secs(5)).is_ok()).unwrap_or(false);
            if !exited {
                // SAFETY: signalling the process group we created, whose leader is not yet reaped.
                unsafe { libc::kill(-sshd.pid, libc::SIGKILL) };
            }
            if let Some(t) = sshd.thread.take() {
                let _ = t.join();
            }
        }
        // A delay line's taps go with its descriptors.
        drop(self.delay_line.take());
        // One end of a veth pair deleted takes the other with it (the namespace's end
        // would go with the namespace, but later).
        let veths = (self.link == TestLink::Veth).then_some(&self.local_if).into_iter().chain(&self.more_links);
        for dev in veths {
            let _ = Command::new("ip").args(["link", "del", dev]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        // The namespace's handle and the run directory go with the fields.
    }
}

/// Makes the link of the first free /30, its second end inside `netns`. The
/// search holds a lock, so that test processes starting hosts at once take
/// different ones; a host keeps its /30 by its interface's name.
fn add_link(netns: &File, link: TestLink) -> Result<(Addresses, Option<DelayLine>)> {
    let _lock = FileLock::acquire(&host::cache_dir().join("test-host.lock"))?;
    let (links, addrs) = links_and_addresses()?;
    let a = free_addresses(&links, &addrs).context("every 198.19.N.0/30 for a test host is taken")?;
    let (local, remote) = a.interfaces();
    if link == TestLink::DelayLine {
        let tap_error = |e: std::io::Error| anyhow::anyhow!("{e} (the kernel's tun driver, /dev/net/tun)");
        // Not persistent: each goes when its descriptor closes.
        let near = netif::open_tap(&local).map_err(tap_error).context("making the test host's near tap")?;
        // Made inside the host's namespace: the device lives there, its descriptor here.
        let far = run_in(netns, || netif::open_tap(&remote))?.map_err(tap_error).context("making the test host's far tap")?;
        return Ok((a, Some(DelayLine::start(&local, near, &remote, far)?)));
    }
    // `ip` opens the namespace through our descriptor of it.
    let ns = format!("/proc/{}/fd/{}", std::process::id(), netns.as_raw_fd());
    host::run(Command::new("ip").args(["link", "add", &local, "type", "veth", "peer", "name", &remote, "netns", &ns]))
        .context("making the test host's veth pair (the kernel's veth module)")?;
    Ok((a, None))
}

/// The names of our namespace's links and its IPv4 addresses.
fn links_and_addresses() -> Result<(Vec<String>, Vec<Ipv4Addr>)> {
    let links = host::run(Command::new("ip").args(["-o", "link", "show"]))?;
    let links: Vec<String> =
        links.lines().filter_map(|l| l.split(':').nth(1)).map(|n| n.trim().split('@').next().unwrap_or("").to_string()).collect();
    let addrs = host::run(Command::new("ip").args(["-o", "-4", "addr", "show"]))?;
    let addrs: Vec<Ipv4Addr> = addrs
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    Ok((links, addrs))
}

/// A direct link between two test hosts ([`TestHost::join`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Its /30: `local()` is the first host's end, `host()` the second's.
    pub addresses: Addresses,
    /// The veth end in the first host's namespace ("mbtj255a"), and in the second's.
    pub a_interface: String,
    pub b_interface: String,
}

impl TestHost {
    /// Joins two test hosts directly, as two machines on one switch: a veth pair
    /// with one end in each host's namespace, on a /30 of its own (taken from the
    /// top of 198.19.0.0/16 down, under the lock test hosts take theirs with, apart
    /// from every /30 a link of ours or either host has), and a route in each host
    /// to the other's address ([`TestHost::ip`]) over it. Each then reaches the
    /// other at the address the harness and a profile's `dest` use, without this
    /// host (which forwards nothing) in between. Nothing of it is in our namespace:
    /// the pair goes with either host's namespace, when that host is dropped or its
    /// process dies.
    pub fn join(a: &TestHost, b: &TestHost) -> Result<Joined> {
        if a.inode == b.inode {
            bail!("a test host cannot be joined to itself");
        }
        let _lock = FileLock::acquire(&host::cache_dir().join("test-host.lock"))?;
        let (links, mut addrs) = links_and_addresses()?;
        addrs.extend([a.ip(), b.ip()]);
        // As `free_addresses`, from the other end: test hosts take theirs from the bottom.
        let free = |j: &Addresses| !links.contains(&j.interfaces().0) && !addrs.iter().any(|ip| j.contains(*ip));
        let j = (0..=u8::MAX).rev().map(|index| Addresses { index }).find(free).context("every 198.19.N.0/30 for a test host is taken")?;
        let (a_if, b_if) = (format!("mbtj{}a", j.index), format!("mbtj{}b", j.index));
        let ns = |h: &TestHost| format!("/proc/{}/fd/{}", std::process::id(), h.netns.as_raw_fd());
        host::run(Command::new("ip").args(["link", "add", "name", &a_if, "netns", &ns(a), "type", "veth", "peer", "name", &b_if, "netns", &ns(b)]))
            .context("making the veth pair that joins two test hosts (the kernel's veth module)")?;
        let end = |h: &TestHost, dev: &str, mine: Ipv4Addr, other: Ipv4Addr, via: Ipv4Addr| -> Result<()> {
            let name = dev.to_string();
            h.enter(move || -> Result<()> {
                netif::set_ipv4(&name, mine, Addresses::PREFIX)?;
                netif::set_up(&name)?;
                host::run(Command::new("ip").args(["route", "add", &format!("{other}/32"), "via", &via.to_string(), "dev", &name]))?;
                Ok(())
            })?
            .with_context(|| format!("addressing {dev} ({mine}) in test host {} and its route to {other}", h.ip()))
        };
        end(a, &a_if, j.local(), b.ip(), j.host())?;
        end(b, &b_if, j.host(), a.ip(), j.local())?;
        Ok(Joined { addresses: j, a_interface: a_if, b_interface: b_if })
    }
}

impl Sshd {
    /// Starts sshd in the host's namespaces, from a thread of its own that waits
    /// for it: PR_SET_PDEATHSIG fires when the thread that forked exits.
    fn start(sshd: &Path, dir: &Path, log: &Path, netns: RawFd, passwd: Option<&Path>) -> Result<Sshd> {
        let log_file = {
            use std::os::unix::fs::OpenOptionsExt;
            File::options().write(true).create(true).truncate(true).mode(0o600).open(log)
        }
        .with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(sshd);
        cmd.args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0);
        let mounts = Mounts::new(passwd)?;
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, unshare,
        // fork, setns, mount, mkdir, chmod, umask, close, waitpid, _exit) on data
        // prepared before the fork.
        unsafe { cmd.pre_exec(move || enter_host(netns, &mounts)) };
        let (started_tx, started_rx) = mpsc::channel();
        let (exited_tx, exited) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("migbench-test-host".into())
            .spawn(move || {
                let spawned = cmd.spawn();
                // Our copies of the log's descriptors.
                drop(cmd);
                match spawned {
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                    Ok(mut child) => {
                        let _ = started_tx.send(Ok(child.id()));
                        let _ = exited_tx.send(child.wait());
                    }
                }
            })
            .context("starting the test host's thread")?;
        let pid = match started_rx.recv() {
            Ok(Ok(pid)) => pid as i32,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e).with_context(|| format!("starting {} in the test host's namespaces", sshd.display()));
            }
            Err(_) => {
                let _ = thread.join();
                bail!("the test host's thread ended before starting sshd");
            }
        };
        Ok(Sshd { pid, exited: Mutex::new(exited), thread: Some(thread) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_host_has_its_own_slash_30_in_the_benchmarking_block() {
        let a = Addresses { index: 0 };
        assert_eq!((a.local(), a.host()), (Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 19, 0, 2)));
        assert_eq!(a.interfaces(), ("mbth0a".to_string(), "mbth0b".to_string()));
        for index in [0, 7, 255] {
            let a = Addresses { index };
            for ip in [a.local(), a.host()] {
                let o = ip.octets();
                assert!(o[0] == 198 && o[1] & 0xfe == 18, "{ip} is outside 198.18.0.0/15");
                assert!(![super::super::CLIENT_IP, super::super::GUEST_IP].contains(&ip), "{ip} is the test network's");
                assert!(a.contains(ip));
            }
            assert!(!a.contains(Ipv4Addr::new(198, 19, index, 4)) && !a.contains(Ipv4Addr::new(198, 18, index, 2)));
            let (l, r) = a.interfaces();
            assert!(l.len() <= 15 && r.len() <= 15, "interface names are at most 15 bytes");
        }
    }

    #[test]
    fn a_host_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<TestHost>();
    }

    #[test]
    fn a_slash_30_in_use_is_skipped() {
        let none: [String; 0] = [];
        assert_eq!(free_addresses(&none, &[]), Some(Addresses { index: 0 }));
        // Another host's interface, or an address of ours in the /30.
        let links = vec!["lo".to_string(), "mbth0a".to_string(), "mbth2a".to_string()];
        assert_eq!(free_addresses(&links, &[]), Some(Addresses { index: 1 }));
        assert_eq!(free_addresses(&links, &[Ipv4Addr::new(198, 19, 1, 3)]), Some(Addresses { index: 3 }));
        assert_eq!(free_addresses(&links, &[Ipv4Addr::new(198, 19, 1, 4)]), Some(Addresses { index: 1 }));
        let all: Vec<String> = (0..=255).map(|i| format!("mbth{i}a")).collect();
        assert_eq!(free_addresses(&all, &[]), None);
    }

    #[test]
    fn the_configuration_lets_only_the_key_in_as_root() {
        let c = sshd_config(Ipv4Addr::new(198, 19, 3, 2), Path::new("/tmp/migbench-run-1-x"), Some(Path::new("/c/usr/lib/openssh/sftp-server")));
        for line in [
            "ListenAddress 198.19.3.2:22",
            "HostKey /tmp/migbench-run-1-x/host_ed25519",
            "PidFile none",
            "PermitRootLogin prohibit-password",
            "AuthorizedKeysFile /tmp/migbench-run-1-x/authorized_keys",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "AllowTcpForwarding yes",
            "AllowStreamLocalForwarding yes",
            "MaxSessions 64",
            "MaxStartups 64",
            "LogLevel VERBOSE",
            "Subsystem sftp /c/usr/lib/openssh/sftp-server",
        ] {
            assert!(c.lines().any(|l| l == line), "{line:?} missing in:\n{c}");
        }
        // Each keyword once: sshd takes the first.
        let keys: Vec<&str> = c.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_whitespace().next()).collect();
        let unique: std::collections::BTreeSet<&&str> = keys.iter().collect();
        assert_eq!(keys.len(), unique.len(), "{c}");
        // A % in the path is not a token; no SFTP server, no subsystem.
        let c = sshd_config(Ipv4Addr::new(198, 19, 3, 2), Path::new("/tmp/a%b"), None);
        assert!(c.contains("AuthorizedKeysFile /tmp/a%%b/authorized_keys") && !c.contains("Subsystem"), "{c}");
    }

    #[test]
    fn the_privilege_separation_user_is_added_when_missing() {
        let debian = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                      _apt:x:100:65534::/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin";
        let with = passwd_with_sshd(debian).unwrap();
        assert!(with.starts_with(debian), "the system's users stay as they are");
        assert_eq!(with.lines().last(), Some("sshd:x:101:65534::/run/sshd:/usr/sbin/nologin"));
        assert_eq!(with.lines().count(), 5);
        assert_eq!(passwd_with_sshd(&with), None, "a system with an sshd user keeps its own");
        assert_eq!(passwd_with_sshd("").as_deref(), Some("sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"));
    }
}
