//! The guest's PID 1: bring the tiny system up, then beat.

use crate::channel::Channel;
use crate::console::console;
use migbench_guest::orders::Orders;
use migbench_guest::protocol::Message;
use std::ffi::CString;
use std::time::Duration;

/// Written by the image builder: one module path per line, dependencies first.
const MODULE_LIST: &str = "/etc/migbench/modules";

pub fn run_as_pid1() -> ! {
    mount_pseudo_filesystems();
    load_modules();
    let (orders, problems) = Orders::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    for p in problems {
        console(&format!("migbench-guest: {p}"));
    }
    let channel: &'static Channel = loop {
        match Channel::open(Duration::from_secs(5)) {
            Ok(c) => break Box::leak(Box::new(c)),
            // Without a channel the harness cannot hear us; say why on the console
            // (the harness quotes it in its error) and try again.
            Err(e) => console(&format!("migbench-guest: no guest channel: {e}")),
        }
    };
    let orders = if orders.park { wait_for_orders(channel) } else { orders };
    // Before READY: once the harness hears READY it may start sending traffic.
    if let Some((ip, prefix)) = orders.ip {
        bring_up_network(ip, prefix, orders.mac);
    }
    let kernel = uname_release();
    channel.send(&Message::Ready { boot_ms: boot_ms(), kernel });
    let vcpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    crate::work::start(orders.workload, vcpus, |e| {
        console(&format!("migbench-guest: workload stopped: {e}"));
        crate::work::failed(e);
    });
    let unit = orders.workload.unit();
    let period = Duration::from_millis(orders.heartbeat_ms);
    std::thread::spawn(move || channel.read_orders(|line| crate::obey::obey(line, channel, &orders)));
    heartbeat_forever(channel, period, unit)
}

/// A parked guest (`migbench.park=1`) says PARKED and waits for its orders on the
/// channel. The harness saves the guest here, once, and every restored copy wakes
/// up in this wait and gets its own orders.
fn wait_for_orders(channel: &Channel) -> Orders {
    channel.send(&Message::Parked { kernel: uname_release() });
    let (orders, problems) = channel.wait_for(Orders::from_line);
    for p in problems {
        console(&format!("migbench-guest: {p}"));
    }
    // What it took, for the harness to compare with what it sent.
    channel.send(&Message::Log(format!("{} {}", migbench_guest::orders::TAKEN_LOG, orders.to_cmdline())));
    orders
}

/// Beats every `period`, and every 100 ms also reports the workload's progress.
fn heartbeat_forever(channel: &Channel, period: Duration, unit: Option<&str>) -> ! {
    let period_ns = period.as_nanos() as i64;
    let mut seq: u64 = 0;
    let mut next = monotonic_ns();
    let mut next_rate = next;
    let mut next_report = next;
    let mut failures_sent = 0;
    loop {
        seq += 1;
        let now = monotonic_ns();
        channel.send(&Message::Heartbeat { seq, guest_ns: now as u64 });
        if let Some(unit) = unit.filter(|_| now >= next_rate) {
            let total = crate::work::DONE.load(std::sync::atomic::Ordering::Relaxed);
            channel.send(&Message::Rate { unit: unit.to_string(), total, guest_ns: now as u64 });
        }
        if now >= next_rate {
            // A workload's failed self-check, as soon as it happens (VERIFY repeats them).
            let failures = crate::work::FAILURES.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for what in &failures[failures_sent..] {
                channel.send(&Message::Failed(what.clone()));
            }
            failures_sent = failures.len();
            if let Some((busy, total, steal, cpus)) = read_cpu_ticks() {
                channel.send(&Message::Cpu { busy, total, steal, cpus, guest_ns: now as u64 });
            }
            next_rate = now + 100_000_000;
        }
        if now >= next_report {
            // The Livermore loops' summary means, once a second (LOG livermore short=AM/GM/HM …).
            if let Some(line) = crate::work::livermore_report() {
                channel.send(&Message::Log(format!("livermore {line}")));
            }
            if let Some((total_kib, free_kib)) = std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(migbench_guest::protocol::parse_meminfo) {
                channel.send(&Message::Mem { total_kib, free_kib, guest_ns: now as u64 });
            }
            next_report = now + 1_000_000_000;
        }
        next += period_ns;
        let now = monotonic_ns();
        // After a pause (migration stop-and-copy, a CPU cap) do not send a burst of
        // catch-up beats: the gap itself is the measurement.
        if next < now {
            next = now + period_ns;
        }
        sleep_until_ns(next);
    }
}

/// The guest kernel's CPU accounting summed over its CPUs: busy, total and steal
/// ticks, and how many CPUs it counts.
fn read_cpu_ticks() -> Option<(u64, u64, u64, u32)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    migbench_guest::protocol::parse_proc_stat(&stat)
}

/// Gives the NIC its MAC (when told one it does not have) and address, and starts
/// the UDP echo the harness's fine probe uses.
fn bring_up_network(ip: std::net::Ipv4Addr, prefix: u8, mac: Option<[u8; 6]>) {
    use migbench_guest::netif;
    let _ = netif::set_up("lo");
    let Some(nic) = netif::first_ethernet() else {
        console("migbench-guest: migbench.ip is set but the guest has no network interface");
        return;
    };
    // A restored guest's NIC still has the snapshot's MAC: it takes its own before
    // it sends anything (the interface is down until now).
    if let Some(mac) = mac.filter(|m| netif::mac(&nic).ok().as_ref() != Some(m)) {
        if let Err(e) = netif::set_mac(&nic, &mac) {
            console(&format!("migbench-guest: network: {e}"));
            return;
        }
    }
    if let Err(e) = netif::set_ipv4(&nic, ip, prefix).and_then(|_| netif::set_up(&nic)) {
        console(&format!("migbench-guest: network: {e}"));
        return;
    }
    match std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, migbench_guest::protocol::ECHO_PORT)) {
        Ok(socket) => {
            // A vCPU stalled for tens of ms (TCG, a loaded host) must delay the
            // probe's datagrams, not drop them: the default buffer holds only about
            // a hundred at 1 kHz, so take room for a few seconds of them.
            if let Err(e) = migbench_guest::netif::grow_receive_buffer(&socket, 4 << 20) {
                console(&format!("migbench-guest: UDP echo receive buffer: {e}"));
            }
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                loop {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            });
        }
        Err(e) => console(&format!("migbench-guest: UDP echo on port {}: {e}", migbench_guest::protocol::ECHO_PORT)),
    }
}

fn mount_pseudo_filesystems() {
    for (src, target, fstype) in [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")] {
        let _ = std::fs::create_dir_all(target);
        let (s, t, f) = (cstr(src), cstr(target), cstr(fstype));
        // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
        let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            console(&format!("migbench-guest: mount {target}: {}", std::io::Error::last_os_error()));
        }
    }
}

fn load_modules() {
    let Ok(list) = std::fs::read_to_string(MODULE_LIST) else { return };
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                console(&format!("migbench-guest: open module {path}: {e}"));
                continue;
            }
        };
        use std::os::fd::AsRawFd;
        let params = cstr("");
        // SAFETY: a valid open fd and an empty parameter string.
        let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                console(&format!("migbench-guest: load module {path}: {err}"));
            }
        }
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in literal")
}

fn uname_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn monotonic_ns() -> i64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn boot_ms() -> u64 {
    (clock_ns(libc::CLOCK_BOOTTIME) / 1_000_000) as u64
}

fn sleep_until_ns(deadline: i64) {
    let ts = libc::timespec { tv_sec: deadline / 1_000_000_000, tv_nsec: deadline % 1_000_000_000 };
    // SAFETY: ts is valid; EINTR just means we beat a little early.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
}
