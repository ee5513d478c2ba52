//! The test network: a network namespace of its own with a bridge, one tap per
//! QEMU on that bridge, and the client's end (the bridge's own address) in the
//! same namespace. Source and destination QEMU sit on the same bridge, so the
//! guest keeps its MAC and IP when it moves; QEMU's self-announce after the
//! migration tells the bridge where the guest went.
//!
//! Addresses come from 198.18.0.0/15, the block RFC 2544 sets aside for
//! benchmarking, and exist only inside the namespace: nothing here can reach or be
//! reached from the host's own networks.
//!
//! The namespace has no name (it is not mounted under /run/netns): it lives exactly
//! as long as something holds it, which is this harness's handles and the QEMUs
//! started in it. When the last of them goes (also after a crash or a SIGKILL, since
//! QEMU dies with the harness) the kernel destroys the namespace and with it the
//! bridge and every tap. There is nothing to leak and nothing to clean up later.

pub mod address;
pub mod delay_line;
mod host_namespaces;
pub mod shape;
pub mod stream_port;
pub mod tc;
pub mod tc_output;
pub mod test_host;

pub use address::{CLIENT_IP, GUEST_IP, GuestNet, PREFIX};
use anyhow::{Context, Result, bail};
use migbench_guest::netif;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

/// The bridge inside the namespace.
pub const BRIDGE: &str = "mbbr0";
/// A network namespace with the test bridge. Dropping the last clone lets the
/// namespace go once the QEMUs in it are gone.
#[derive(Clone)]
pub struct Network {
    ns: Arc<File>,
    inode: u64,
}

impl Network {
    /// Creates the namespace, brings up its loopback and the bridge with the
    /// client's address. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
    pub fn create() -> Result<Network> {
        let ns = std::thread::scope(|s| {
            s.spawn(|| -> Result<File> {
                // SAFETY: unshare only affects this thread, which ends right after.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EPERM) {
                        bail!(
                            "creating the test network needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to make a network namespace: \
                             run migbench as root (e.g. sudo -E), or leave out the HTTP load ({e})"
                        );
                    }
                    return Err(e).context("creating a network namespace for the test network");
                }
                let ns = File::open("/proc/thread-self/ns/net").context("opening the new network namespace")?;
                netif::set_up("lo")?;
                netif::add_bridge(BRIDGE).context(
                    "the test network needs the kernel's bridge support (module `bridge`): load it with `modprobe bridge`",
                )?;
                netif::set_ipv4(BRIDGE, CLIENT_IP, PREFIX)?;
                netif::set_up(BRIDGE)?;
                Ok(ns)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread making the test network panicked"))?
        })?;
        use std::os::unix::fs::MetadataExt;
        let inode = ns.metadata().context("reading the namespace's identity")?.ino();
        Ok(Network { ns: Arc::new(ns), inode })
    }

    /// The namespace's inode number (`net:[N]` in /proc/*/ns/net).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Runs `f` on a thread inside the namespace and returns its result. Sockets it
    /// creates belong to the namespace for their whole life, whichever thread uses them.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        run_in(&self.ns, f)
    }

    /// Starts a long-lived thread inside the namespace (the load generator's).
    pub fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<Result<T>>> {
        let ns = self.ns.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                join(&ns)?;
                Ok(f())
            })
            .with_context(|| format!("starting thread {name}"))
    }

    /// Creates tap `name` on the bridge, for one QEMU. It goes away when the
    /// returned handle drops (and with the namespace at the latest).
    pub fn add_tap(&self, name: &str) -> Result<Tap> {
        self.enter(|| -> std::io::Result<()> {
            netif::set_tap(name, true)?;
            netif::add_to_bridge(BRIDGE, name)?;
            netif::set_up(name)
        })?
        .with_context(|| format!("creating tap {name} on the test bridge"))?;
        Ok(Tap { name: name.into(), ns: self.ns.clone() })
    }

    /// Brings the namespace's loopback up or down: QEMUs started in the namespace
    /// migrate over TCP on it, so down cuts their link (a `cut-link` fault).
    pub fn set_loopback(&self, up: bool) -> Result<()> {
        self.enter(|| if up { netif::set_up("lo") } else { netif::set_down("lo") })?.with_context(|| format!("bringing the test network's loopback {}", if up { "up" } else { "down" }))
    }

    /// The namespace, for a process that is to run in it.
    pub fn namespace_fd(&self) -> std::os::fd::RawFd {
        self.ns.as_raw_fd()
    }

    /// What a QEMU needs to join this network through `tap`.
    pub fn nic(&self, tap: &Tap) -> Nic {
        Nic { netns: self.ns.clone(), tap: tap.name.clone() }
    }
}

impl AsFd for Network {
    /// The namespace, e.g. for `tc::Local::in_namespace`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ns.as_fd()
    }
}

/// A tap on the test bridge.
pub struct Tap {
    pub name: String,
    ns: Arc<File>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        let (ns, name) = (&self.ns, &self.name);
        let _ = run_in(ns, || netif::set_tap(name, false));
    }
}

/// A QEMU's attachment: the namespace it runs in and its tap there.
#[derive(Clone)]
pub struct Nic {
    pub netns: Arc<File>,
    pub tap: String,
}

impl Nic {
    pub fn netns_fd(&self) -> RawFd {
        self.netns.as_raw_fd()
    }
}

/// Whether the test network can be made here: makes one with a tap, then lets it go.
pub fn check() -> Result<()> {
    let net = Network::create()?;
    drop(net.add_tap("mb-check")?);
    Ok(())
}

/// Runs `f` on a short-lived thread inside the namespace `ns`.
fn run_in<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            join(ns)?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("a thread in the test network panicked"))?
    })
}

/// Moves the calling thread into the namespace `ns`.
fn join(ns: &File) -> Result<()> {
    // SAFETY: a valid namespace fd; setns only affects this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).context("entering the test network's namespace");
    }
    Ok(())
}

/// Whether any process, thread or open file still holds the network namespace with
/// this inode (scans /proc; for tests and `doctor`).
pub fn namespace_alive(inode: u64) -> bool {
    namespaces_in_use().contains(&inode)
}

/// The inodes of every network namespace a process, thread or open file holds.
pub fn namespaces_in_use() -> std::collections::BTreeSet<u64> {
    let mut found = std::collections::BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for p in procs.flatten() {
        let path = p.path();
        if !p.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let mut links = vec![path.join("ns/net")];
        if let Ok(tasks) = std::fs::read_dir(path.join("task")) {
            links.extend(tasks.flatten().map(|t| t.path().join("ns/net")));
        }
        if let Ok(fds) = std::fs::read_dir(path.join("fd")) {
            links.extend(fds.flatten().map(|f| f.path()));
        }
        for l in links {
            let Ok(target) = std::fs::read_link(&l) else { continue };
            let t = target.to_string_lossy();
            if let Some(n) = t.strip_prefix("net:[").and_then(|r| r.strip_suffix(']')).and_then(|n| n.parse().ok()) {
                found.insert(n);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_mac_follows_its_address() {
        assert_eq!(GuestNet::default().mac(), "52:54:00:12:00:02");
        // Both inside 198.18.0.0/15.
        for ip in [GUEST_IP, CLIENT_IP] {
            let o = ip.octets();
            assert!(o[0] == 198 && o[1] & 0xfe == 18, "{ip}");
        }
    }
}
