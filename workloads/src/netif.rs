//! Network interfaces through the kernel's classic ioctls: bring one up and give it
//! an IPv4 address (the guest's init does this for its NIC, the harness for the
//! test bridge), and the bridge and tap operations the harness's test network needs.
//!
//! Plain ioctls need no netlink library and no `ip` binary, which neither the guest
//! (a static init and nothing else) nor a minimal host image has.

use std::io;
use std::net::Ipv4Addr;

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
const SIOCSIFADDR: libc::c_ulong = 0x8916;
const SIOCSIFNETMASK: libc::c_ulong = 0x891c;
const SIOCGIFINDEX: libc::c_ulong = 0x8933;
const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
const SIOCSIFHWADDR: libc::c_ulong = 0x8924;
/// `ARPHRD_ETHER`: the hardware address family of an Ethernet interface.
const ARPHRD_ETHER: u16 = 1;
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// `struct ifreq`: the name, then a 24-byte union (address, flags or index).
#[repr(C)]
#[derive(Debug)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) || bytes.contains(&b'/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?} must be 1 to {} bytes, without '/' or NUL", libc::IFNAMSIZ - 1),
            ));
        }
        let mut r = IfReq { name: [0; libc::IFNAMSIZ], data: [0; 24] };
        r.name[..bytes.len()].copy_from_slice(bytes);
        Ok(r)
    }

    fn set_ipv4(&mut self, addr: Ipv4Addr) {
        // struct sockaddr_in: family (host order), port, address (network order).
        self.data = [0; 24];
        self.data[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        self.data[4..8].copy_from_slice(&addr.octets());
    }

    fn set_mac(&mut self, mac: &[u8; 6]) {
        // struct sockaddr: family (host order), then the address's bytes.
        self.data = [0; 24];
        self.data[..2].copy_from_slice(&ARPHRD_ETHER.to_ne_bytes());
        self.data[2..8].copy_from_slice(mac);
    }

    fn mac(&self) -> [u8; 6] {
        self.data[2..8].try_into().expect("6 bytes")
    }

    fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    fn set_short(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }

    fn int(&self) -> i32 {
        i32::from_ne_bytes(self.data[..4].try_into().expect("4 bytes"))
    }

    fn set_int(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
}

/// A datagram socket to send interface ioctls through; closed on drop.
struct Ctl(libc::c_int);

impl Ctl {
    fn open() -> io::Result<Ctl> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(Ctl(fd)) }
    }

    fn ioctl(&self, request: libc::c_ulong, arg: *mut libc::c_void, what: &str) -> io::Result<()> {
        // SAFETY: `arg` points at a live struct of the size the request expects.
        let rc = unsafe { libc::ioctl(self.0, request as _, arg) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(())
    }

    fn ifreq(&self, request: libc::c_ulong, r: &mut IfReq, what: &str) -> io::Result<()> {
        self.ioctl(request, r as *mut IfReq as *mut libc::c_void, what)
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(self.0) };
    }
}

/// Brings interface `name` up.
pub fn set_up(name: &str) -> io::Result<()> {
    let ctl = Ctl::open()?;
    let mut r = IfReq::new(name)?;
    ctl.ifreq(SIOCGIFFLAGS, &mut r, &format!("reading the flags of {name}"))?;
    let flags = r.short() | libc::IFF_UP as i16;
    r.set_short(flags);
    ctl.ifreq(SIOCSIFFLAGS, &mut r, &format!("bringing {name} up"))
}

/// Takes interface `name` down.
pub fn set_down(name: &str) -> io::Result<()> {
    let ctl = Ctl::open()?;
    let mut r = IfReq::new(name)?;
    ctl.ifreq(SIOCGIFFLAGS, &mut r, &format!("reading the flags of {name}"))?;
    let flags = r.short() & !(libc::IFF_UP as i16);
    r.set_short(flags);
    ctl.ifreq(SIOCSIFFLAGS, &mut r, &format!("taking {name} down"))
}

/// Gives interface `name` the address `addr/prefix`.
pub fn set_ipv4(name: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let ctl = Ctl::open()?;
    let mut r = IfReq::new(name)?;
    r.set_ipv4(addr);
    ctl.ifreq(SIOCSIFADDR, &mut r, &format!("setting the address of {name} to {addr}"))?;
    r.set_ipv4(netmask(prefix));
    ctl.ifreq(SIOCSIFNETMASK, &mut r, &format!("setting the netmask of {name} to /{prefix}"))
}

/// The hardware (MAC) address of interface `name`.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let ctl = Ctl::open()?;
    let mut r = IfReq::new(name)?;
    ctl.ifreq(SIOCGIFHWADDR, &mut r, &format!("reading the MAC address of {name}"))?;
    Ok(r.mac())
}

/// Gives interface `name` the MAC address `mac` (a virtio NIC tells its device,
/// whose receive filter then passes that address).
pub fn set_mac(name: &str, mac: &[u8; 6]) -> io::Result<()> {
    let ctl = Ctl::open()?;
    let mut r = IfReq::new(name)?;
    r.set_mac(mac);
    ctl.ifreq(SIOCSIFHWADDR, &mut r, &format!("setting the MAC address of {name} to {}", crate::orders::format_mac(mac)))
}

/// The interface index of `name`.
pub fn index(name: &str) -> io::Result<i32> {
    let ctl = Ctl::open()?;
    let mut r = IfReq::new(name)?;
    ctl.ifreq(SIOCGIFINDEX, &mut r, &format!("looking up interface {name}"))?;
    Ok(r.int())
}

/// The netmask of a prefix length (0 to 32).
pub fn netmask(prefix: u8) -> Ipv4Addr {
    let p = prefix.min(32) as u32;
    Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) })
}

/// Creates an Ethernet bridge named `name` (STP off, so ports forward at once).
pub fn add_bridge(name: &str) -> io::Result<()> {
    let ctl = Ctl::open()?;
    // The kernel reads a whole IFNAMSIZ buffer here, not a C string's length.
    let mut r = IfReq::new(name)?;
    ctl.ioctl(SIOCBRADDBR, r.name.as_mut_ptr() as *mut libc::c_void, &format!("creating bridge {name}"))
}

/// Makes interface `port` a port of bridge `bridge`.
pub fn add_to_bridge(bridge: &str, port: &str) -> io::Result<()> {
    let idx = index(port)?;
    let ctl = Ctl::open()?;
    let mut r = IfReq::new(bridge)?;
    r.set_int(idx);
    ctl.ifreq(SIOCBRADDIF, &mut r, &format!("adding {port} to bridge {bridge}"))
}

/// Creates a persistent tap device `name` (no packet-info header, as QEMU opens
/// it), or with `persist = false` removes one.
pub fn set_tap(name: &str, persist: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let tun = open_tap(name)?;
    // `tun` owns the fd and closes it; the Ctl must not.
    let ctl = std::mem::ManuallyDrop::new(Ctl(tun.as_raw_fd()));
    ctl.ioctl(libc::TUNSETPERSIST as libc::c_ulong, persist as usize as *mut libc::c_void, &format!("setting tap {name} persistent={persist}"))
}

/// Opens tap `name` for reading and writing frames (made if missing; no
/// packet-info header): the harness's end of a guest's NIC that lives elsewhere.
pub fn open_tap(name: &str) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let mut r = IfReq::new(name)?;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| io::Error::new(e.kind(), format!("opening /dev/net/tun: {e}")))?;
    // `tun` owns the fd and closes it; the Ctl must not.
    let ctl = std::mem::ManuallyDrop::new(Ctl(tun.as_raw_fd()));
    r.set_short((libc::IFF_TAP | libc::IFF_NO_PI) as i16);
    ctl.ifreq(libc::TUNSETIFF as libc::c_ulong, &mut r, &format!("attaching to tap {name}"))?;
    Ok(tun)
}

/// The first network interface other than loopback, by name (the guest's NIC).
pub fn first_ethernet() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Gives `socket` a receive buffer of at least `bytes`, past `net.core.rmem_max`
/// where the caller may (`SO_RCVBUFFORCE`, CAP_NET_ADMIN), else as large as the
/// limit allows. Returns the size the kernel reports (about twice the request, as
/// the kernel counts its own bookkeeping).
pub fn grow_receive_buffer(socket: &impl std::os::fd::AsRawFd, bytes: usize) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let want = bytes.min(i32::MAX as usize) as libc::c_int;
    let set = |option| {
        // SAFETY: `want` outlives the call and its size is passed with it.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, option, (&want as *const libc::c_int).cast(), size_of::<libc::c_int>() as libc::socklen_t) }
    };
    if set(libc::SO_RCVBUFFORCE) != 0 && set(libc::SO_RCVBUF) != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut got: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `got` and `len` are valid for writes for the call's duration.
    if unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&mut got as *mut libc::c_int).cast(), &mut len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(got.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_buffer_grows() {
        let socket = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        let before = grow_receive_buffer(&socket, 0).unwrap();
        let after = grow_receive_buffer(&socket, 1 << 20).unwrap();
        // As root (SO_RCVBUFFORCE) the request is met; otherwise rmem_max caps it.
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        let root = unsafe { libc::geteuid() } == 0;
        assert!(after >= if root { 1 << 20 } else { cap.min(1 << 20) }, "{before} -> {after} (rmem_max {cap})");
        assert!(after > before);
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask(15), Ipv4Addr::new(255, 254, 0, 0));
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[test]
    fn names_are_checked() {
        assert!(IfReq::new("").is_err());
        assert!(IfReq::new("a-name-far-too-long").unwrap_err().to_string().contains("1 to 15"));
        assert!(IfReq::new("a/b").is_err());
        assert_eq!(&IfReq::new("br0").unwrap().name[..4], b"br0\0");
    }

    #[test]
    fn mac_addresses_are_read_and_a_missing_interface_is_named() {
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        let mut r = IfReq::new("eth0").unwrap();
        r.set_mac(&[0x52, 0x54, 0, 0x12, 0, 2]);
        assert_eq!((u16::from_ne_bytes([r.data[0], r.data[1]]), r.mac()), (ARPHRD_ETHER, [0x52, 0x54, 0, 0x12, 0, 2]));
        let e = set_mac("no-such-if0", &[0x52, 0x54, 0, 0x12, 0, 2]).unwrap_err().to_string();
        assert!(e.contains("no-such-if0") && e.contains("52:54:00:12:00:02"), "{e}");
    }

    #[test]
    fn loopback_has_an_index() {
        assert!(index("lo").unwrap() > 0);
        assert!(index("no-such-if0").unwrap_err().to_string().contains("no-such-if0"));
    }
}
