//! The QEMU command line of a guest: its files in the run directory, its role
//! (boot, or wait for an incoming migration), the kernel's command line with the
//! guest's orders, and the arguments themselves.

use super::hardware::{BAD_QEMU_OPTION, GuestSpec, StartFault};
use crate::guest::GuestImage;
use anyhow::{Result, bail};
use migbench_guest::orders::Orders;
use std::path::{Path, PathBuf};

/// Heartbeat period the guest is told to use.
pub const HEARTBEAT_MS: u64 = 10;

/// Whether QEMU boots the guest or waits for an incoming migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Boot,
    /// `-incoming defer`: the URI is given later with `migrate-incoming`.
    Incoming,
}

/// The files of one QEMU inside its run directory.
#[derive(Debug, Clone)]
pub struct MachinePaths {
    pub dir: PathBuf,
    pub qmp: PathBuf,
    pub channel: PathBuf,
    pub console: PathBuf,
    pub stderr: PathBuf,
}

impl MachinePaths {
    pub fn new(dir: &Path) -> MachinePaths {
        MachinePaths {
            dir: dir.into(),
            qmp: dir.join("qmp.sock"),
            channel: dir.join("channel.sock"),
            console: dir.join("console.log"),
            stderr: dir.join("qemu.stderr"),
        }
    }
}

/// The machine type a guest runs unless it migrates between two QEMU versions: the
/// newest i440FX machine of its QEMU (the record names the versioned type it stood
/// for). Across versions both sides run the older one's versioned type (see
/// `host::common_machine_type`).
pub const MACHINE_TYPE: &str = "pc";

/// What the guest is told to do: on its command line, or on the guest channel
/// after a restore (`machine::snapshot`).
pub fn orders(spec: &GuestSpec) -> Orders {
    Orders {
        heartbeat_ms: HEARTBEAT_MS,
        workload: spec.workload,
        ip: spec.net.map(|n| (n.ip, n.prefix)),
        mac: spec.net.map(|n| n.mac_bytes()),
        test_orders: spec.test_orders,
        park: false,
    }
}

/// The guest kernel's command line, with the guest's orders (a parked guest's
/// carries none: they come later, on the channel).
pub fn kernel_cmdline(spec: &GuestSpec) -> String {
    let orders = if spec.park { Orders { heartbeat_ms: HEARTBEAT_MS, park: true, ..Orders::default() } } else { orders(spec) };
    // loglevel=5 prints warnings and Oops/BUG reports (KERN_DEFAULT) but not the
    // chatty boot log, which would slow a TCG boot down over the emulated UART.
    let mut line = format!("console=ttyS0 loglevel=5 panic=-1 rdinit=/init mitigations=off {}", orders.to_cmdline());
    if spec.inject == StartFault::NeverReady {
        // The last rdinit= wins.
        line.push_str(" rdinit=/migbench-no-such-init");
    }
    line
}

/// A path as a QEMU option value: commas are doubled (QEMU's escape).
fn opt_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// Unix socket paths must fit `sun_path` (108 bytes with the NUL).
pub fn check_socket_path(p: &Path) -> Result<()> {
    let len = p.as_os_str().len();
    if len >= 108 {
        bail!(
            "the socket path {} is {len} bytes, over the 107 a unix socket allows: \
             point TMPDIR (or XDG_RUNTIME_DIR) at a shorter directory",
            p.display()
        );
    }
    Ok(())
}

/// The QEMU arguments for a guest. Source and destination get the same hardware
/// (the same `machine` type among it); only `-incoming` differs, as migration requires.
/// `tap` is the guest NIC's tap device on the test network (used when `spec.net` is set).
/// What the guest's NIC is attached to on its QEMU's host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NicBackend<'a> {
    /// A tap on the test bridge here (the harness made it: QEMU only opens it).
    Tap(&'a str),
    /// That tap opened by the harness and handed to QEMU as this fd (QEMU then need
    /// not run in the test network's namespace), without a vnet header.
    TapFd(i32),
    /// A stream to the harness's end of the test bridge (`network::stream_port`):
    /// the NIC of a guest on another host, its frames carried over the link.
    Stream(std::net::SocketAddr),
}

pub fn qemu_args(spec: &GuestSpec, image: &GuestImage, paths: &MachinePaths, role: Role, name: &str, nic: Option<NicBackend>, machine: &str) -> Vec<String> {
    let p = opt_path;
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("migbench-{name},debug-threads=on"),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-machine".into(),
        machine.into(),
        "-accel".into(),
        spec.accel.to_string(),
        "-cpu".into(),
        "max".into(),
        "-m".into(),
        spec.ram_mib.to_string(),
        "-smp".into(),
        spec.vcpus.to_string(),
        "-kernel".into(),
        p(&image.kernel),
        "-initrd".into(),
        p(&image.initramfs),
        "-append".into(),
        kernel_cmdline(spec),
        "-chardev".into(),
        format!("socket,id=qmp,path={},server=on,wait=off", p(&paths.qmp)),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
        "-chardev".into(),
        format!("file,id=console,path={}", p(&paths.console)),
        "-serial".into(),
        "chardev:console".into(),
        "-device".into(),
        "virtio-serial-pci,id=vser0".into(),
        "-chardev".into(),
        format!("socket,id=channel,path={},server=on,wait=off", p(&paths.channel)),
        "-device".into(),
        format!("virtserialport,bus=vser0.0,chardev=channel,name={}", migbench_guest::protocol::PORT_NAME),
        "-device".into(),
        "virtio-balloon-pci,id=balloon0".into(),
        // A guest that panics or reboots ends QEMU instead of looping.
        "-no-reboot".into(),
    ];
    if spec.lock_memory {
        a.extend(["-overcommit".into(), "mem-lock=on".into()]);
    }
    if spec.inject == StartFault::BadQemuOption {
        a.push(BAD_QEMU_OPTION.into());
    }
    if let (Some(net), Some(nic)) = (spec.net, nic) {
        let netdev = match nic {
            // A guest that may move to another host gets no vnet header here (TapFd):
            // the far end's stream backend has none, and offloads negotiated with one
            // would not load there.
            NicBackend::Tap(tap) => format!("tap,id=net0,ifname={tap},script=no,downscript=no"),
            // Opened without IFF_VNET_HDR: QEMU finds no vnet header on it.
            NicBackend::TapFd(fd) => format!("tap,id=net0,fd={fd}"),
            NicBackend::Stream(at) => {
                format!("stream,id=net0,server=off,addr.type=inet,addr.host={},addr.port={}", at.ip(), at.port())
            }
        };
        // `romfile=` leaves out the PXE option ROM: the kernel is booted directly, and
        // the ROM's package is not always installed.
        a.extend(["-netdev".into(), netdev, "-device".into(), format!("virtio-net-pci,netdev=net0,mac={},romfile=", net.mac())]);
    }
    if role == Role::Incoming {
        a.extend(["-incoming".into(), "defer".into()]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::hardware::Accel;
    use crate::guest::image::ImageManifest;

    fn image() -> GuestImage {
        GuestImage {
            dir: "/img".into(),
            kernel: "/img/vmlinuz".into(),
            initramfs: "/img/initramfs.cpio".into(),
            manifest: ImageManifest {
                key: "k".into(),
                built_at: String::new(),
                kernel_origin: String::new(),
                kernel_release: String::new(),
                guest_init_sha256: String::new(),
                modules: vec![],
                initramfs_bytes: 0,
            },
        }
    }

    #[test]
    fn command_line_for_a_spec() {
        let spec = GuestSpec::new(512, 2, Accel::Tcg).unwrap();
        let paths = MachinePaths::new(Path::new("/run/m/src"));
        let a = qemu_args(&spec, &image(), &paths, Role::Boot, "src", None, MACHINE_TYPE);
        let joined = a.join(" ");
        for want in [
            "-accel tcg",
            "-m 512",
            "-smp 2",
            "-kernel /img/vmlinuz",
            "-initrd /img/initramfs.cpio",
            "socket,id=qmp,path=/run/m/src/qmp.sock,server=on,wait=off",
            "name=migbench.0",
            "file,id=console,path=/run/m/src/console.log",
            "-no-reboot",
        ] {
            assert!(joined.contains(want), "missing {want:?} in {joined}");
        }
        assert!(!joined.contains("-incoming"));
        assert!(joined.contains("migbench.workload=idle"));
        let busy = qemu_args(&spec.with_workload("memdirty-write:32".parse().unwrap()), &image(), &paths, Role::Boot, "src", None, MACHINE_TYPE);
        assert!(busy.join(" ").contains("migbench.workload=memdirty-write:32"));
        let b = qemu_args(&GuestSpec { accel: Accel::Kvm, ..spec }, &image(), &paths, Role::Incoming, "dst", None, MACHINE_TYPE);
        assert_eq!(&b[b.len() - 2..], ["-incoming", "defer"]);
        assert!(b.join(" ").contains("-accel kvm"));
        // Same hardware on both sides: only -incoming and the accel differ here.
        assert_eq!(a.len() + 2, b.len());
    }

    #[test]
    fn paths_are_escaped_and_checked() {
        let paths = MachinePaths::new(Path::new("/tmp/a,b"));
        let a = qemu_args(&GuestSpec::new(128, 1, Accel::Tcg).unwrap(), &image(), &paths, Role::Boot, "src", None, MACHINE_TYPE).join(" ");
        assert!(a.contains("path=/tmp/a,,b/qmp.sock"), "{a}");
        let long = Path::new("/").join("x".repeat(120));
        assert!(check_socket_path(&long).unwrap_err().to_string().contains("TMPDIR"));
        assert!(check_socket_path(Path::new("/tmp/q.sock")).is_ok());
    }
}
