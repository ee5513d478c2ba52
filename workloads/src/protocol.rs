//! The guest channel's line protocol, guest → host, one message per `\n`-terminated line.
//!
//! ```text
//! PARKED kernel=<uname -r>   (booted with migbench.park=1: up, waiting for ORDERS)
//! READY boot_ms=<ms since the guest kernel booted> kernel=<uname -r>
//! HB <seq> <guest CLOCK_MONOTONIC ns>
//! RATE <unit> <work done since boot, in unit> <guest CLOCK_MONOTONIC ns>   (every 100 ms)
//! CPU <busy ticks> <total ticks> <steal ticks> <online CPUs> <guest CLOCK_MONOTONIC ns>   (every 100 ms)
//! LOG <free text>
//! FAILED <what the workload found wrong in its own results>   (it then stops)
//! INTEGRITY <id> <pages checked> <mismatches> <first bad page, or ->   (the answer to VERIFY <id>)
//! INTEGRITY <id> none   (the workload owns no stamped memory)
//! ```
//!
//! and host → guest, one order per line ([`Order`]):
//!
//! ```text
//! ORDERS <migbench.* words>   a parked guest's orders, the words of a command line
//! VERIFY <id>          answer with every FAILED so far, then INTEGRITY <id> …
//! TEST-CORRUPT <page>  flip a bit of that page of the memory dirtier's set; obeyed only
//!                      by a guest booted with `migbench.test_orders=1`, which only tests ask for
//! ```
//!
//! Unknown lines are kept by the host as `Other`, so a newer guest never breaks an
//! older harness.

use std::fmt;

/// Name of the virtio-serial port the guest writes to.
pub const PORT_NAME: &str = "migbench.0";

/// The guest's UDP echo port (RFC 862), for the harness's fine outage probe.
pub const ECHO_PORT: u16 = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Ready { boot_ms: u64, kernel: String },
    /// A guest booted with `migbench.park=1` is up and waits for its orders
    /// (`orders::Orders::from_line`).
    Parked { kernel: String },
    Heartbeat { seq: u64, guest_ns: u64 },
    /// The workload's cumulative progress; rates are differences between two.
    Rate { unit: String, total: u64, guest_ns: u64 },
    /// The guest kernel's own CPU accounting (`/proc/stat`, all CPUs summed, in
    /// clock ticks since boot): what the guest believes it used, beside what the
    /// host measures of its QEMU.
    Cpu { busy: u64, total: u64, steal: u64, cpus: u32, guest_ns: u64 },
    /// The guest kernel's memory (`/proc/meminfo`): what it manages and what is
    /// free, KiB. Pages it never used are still zero, and QEMU sends zero pages almost
    /// free, so this tells the harness how much a first migration round must copy.
    Mem { total_kib: u64, free_kib: u64, guest_ns: u64 },
    Log(String),
    /// The workload found its own results wrong and stopped.
    Failed(String),
    /// The answer to `VERIFY id`: the memory dirtier's pages checked (`None`: the
    /// workload owns no stamped memory).
    Integrity { id: u64, tally: Option<crate::stamp::Tally> },
    Other(String),
}

/// What the harness asks of a running guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Verify { id: u64 },
    /// A test's own fault: a corruption the checker did not cause.
    TestCorrupt { page: u64 },
}

impl Order {
    pub fn parse(line: &str) -> Option<Order> {
        let mut words = line.split_whitespace();
        let order = match (words.next()?, words.next()?.parse().ok()?) {
            ("VERIFY", id) => Order::Verify { id },
            ("TEST-CORRUPT", page) => Order::TestCorrupt { page },
            _ => return None,
        };
        words.next().is_none().then_some(order)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Order::Verify { id } => write!(f, "VERIFY {id}"),
            Order::TestCorrupt { page } => write!(f, "TEST-CORRUPT {page}"),
        }
    }
}

impl Message {
    pub fn parse(line: &str) -> Message {
        let line = line.trim_end_matches(['\r', '\n']);
        let mut words = line.splitn(2, ' ');
        let head = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("");
        match head {
            "HB" => {
                let mut it = rest.split(' ');
                match (
                    it.next().and_then(|s| s.parse().ok()),
                    it.next().and_then(|s| s.parse().ok()),
                ) {
                    (Some(seq), Some(guest_ns)) => Message::Heartbeat { seq, guest_ns },
                    _ => Message::Other(line.to_string()),
                }
            }
            "READY" => {
                let mut boot_ms = None;
                let mut kernel = String::new();
                for kv in rest.split(' ') {
                    match kv.split_once('=') {
                        Some(("boot_ms", v)) => boot_ms = v.parse().ok(),
                        Some(("kernel", v)) => kernel = v.to_string(),
                        _ => {}
                    }
                }
                match boot_ms {
                    Some(boot_ms) => Message::Ready { boot_ms, kernel },
                    None => Message::Other(line.to_string()),
                }
            }
            "RATE" => {
                let mut it = rest.split(' ');
                match (it.next(), it.next().and_then(|s| s.parse().ok()), it.next().and_then(|s| s.parse().ok())) {
                    (Some(unit), Some(total), Some(guest_ns)) if !unit.is_empty() => {
                        Message::Rate { unit: unit.to_string(), total, guest_ns }
                    }
                    _ => Message::Other(line.to_string()),
                }
            }
            "CPU" => {
                let v: Vec<u64> = rest.split(' ').map_while(|s| s.parse().ok()).collect();
                match v[..] {
                    [busy, total, steal, cpus, guest_ns] if busy <= total && cpus > 0 && cpus <= u32::MAX as u64 => {
                        Message::Cpu { busy, total, steal, cpus: cpus as u32, guest_ns }
                    }
                    _ => Message::Other(line.to_string()),
                }
            }
            "MEM" => {
                let v: Vec<u64> = rest.split(' ').map_while(|s| s.parse().ok()).collect();
                match v[..] {
                    [total_kib, free_kib, guest_ns] if free_kib <= total_kib => Message::Mem { total_kib, free_kib, guest_ns },
                    _ => Message::Other(line.to_string()),
                }
            }
            "PARKED" => match rest.split_once('=') {
                Some(("kernel", k)) if !k.is_empty() && !k.contains(' ') => Message::Parked { kernel: k.to_string() },
                _ => Message::Other(line.to_string()),
            },
            "LOG" => Message::Log(rest.to_string()),
            "FAILED" => Message::Failed(rest.to_string()),
            "INTEGRITY" => {
                let v: Vec<&str> = rest.split(' ').collect();
                let n = |s: &str| s.parse::<u64>().ok();
                match v[..] {
                    [id, "none"] if n(id).is_some() => Message::Integrity { id: n(id).unwrap_or(0), tally: None },
                    [id, checked, bad, first] => match (n(id), n(checked), n(bad), first) {
                        (Some(id), Some(pages_checked), Some(mismatches), "-") if mismatches == 0 => {
                            Message::Integrity { id, tally: Some(crate::stamp::Tally { pages_checked, mismatches, first_bad_page: None }) }
                        }
                        (Some(id), Some(pages_checked), Some(mismatches), first) if mismatches > 0 && n(first).is_some() => {
                            Message::Integrity { id, tally: Some(crate::stamp::Tally { pages_checked, mismatches, first_bad_page: n(first) }) }
                        }
                        _ => Message::Other(line.to_string()),
                    },
                    _ => Message::Other(line.to_string()),
                }
            }
            _ => Message::Other(line.to_string()),
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Ready { boot_ms, kernel } => write!(f, "READY boot_ms={boot_ms} kernel={kernel}"),
            Message::Parked { kernel } => write!(f, "PARKED kernel={kernel}"),
            Message::Heartbeat { seq, guest_ns } => write!(f, "HB {seq} {guest_ns}"),
            Message::Rate { unit, total, guest_ns } => write!(f, "RATE {unit} {total} {guest_ns}"),
            Message::Cpu { busy, total, steal, cpus, guest_ns } => write!(f, "CPU {busy} {total} {steal} {cpus} {guest_ns}"),
            Message::Mem { total_kib, free_kib, guest_ns } => write!(f, "MEM {total_kib} {free_kib} {guest_ns}"),
            Message::Log(text) => write!(f, "LOG {text}"),
            Message::Failed(text) => write!(f, "FAILED {text}"),
            Message::Integrity { id, tally: None } => write!(f, "INTEGRITY {id} none"),
            Message::Integrity { id, tally: Some(t) } => match t.first_bad_page {
                Some(p) => write!(f, "INTEGRITY {id} {} {} {p}", t.pages_checked, t.mismatches),
                None => write!(f, "INTEGRITY {id} {} {} -", t.pages_checked, t.mismatches),
            },
            Message::Other(text) => f.write_str(text),
        }
    }
}

/// MemTotal and MemFree, KiB, from the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
    };
    Some((field("MemTotal:")?, field("MemFree:")?))
}

/// Busy, total and steal clock ticks summed over all CPUs, and the number of CPUs,
/// from the text of `/proc/stat`. Busy is user + nice + system + irq + softirq
/// (guest time is already inside user); total adds idle, iowait and steal.
pub fn parse_proc_stat(stat: &str) -> Option<(u64, u64, u64, u32)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map_while(|x| x.parse().ok()).collect();
    if v.len() < 8 {
        return None;
    }
    let busy = v[0] + v[1] + v[2] + v[5] + v[6];
    let total = v[..8].iter().sum();
    let cpus = stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count();
    Some((busy, total, v[7], cpus.max(1) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for m in [
            Message::Ready { boot_ms: 1234, kernel: "6.1.0-56-cloud-amd64".into() },
            Message::Parked { kernel: "6.1.0-56-cloud-amd64".into() },
            Message::Heartbeat { seq: 42, guest_ns: 9_000_000_001 },
            Message::Log("module virtio_net loaded".into()),
            Message::Rate { unit: "flop".into(), total: 123_456_789, guest_ns: 42 },
            Message::Cpu { busy: 120, total: 400, steal: 3, cpus: 2, guest_ns: 7 },
            Message::Mem { total_kib: 200_000, free_kib: 150_000, guest_ns: 8 },
            Message::Failed("linpack: residual 3e-2 too large".into()),
            Message::Integrity { id: 3, tally: None },
            Message::Integrity { id: 4, tally: Some(crate::stamp::Tally { pages_checked: 16384, mismatches: 0, first_bad_page: None }) },
            Message::Integrity { id: 5, tally: Some(crate::stamp::Tally { pages_checked: 16384, mismatches: 7, first_bad_page: Some(42) }) },
        ] {
            assert_eq!(Message::parse(&format!("{m}\n")), m);
        }
        for o in [Order::Verify { id: 9 }, Order::TestCorrupt { page: 12 }] {
            assert_eq!(Order::parse(&o.to_string()), Some(o));
        }
        for bad in ["VERIFY", "VERIFY x", "VERIFY 1 2", "CORRUPT 5", "TEST-CORRUPT -1", ""] {
            assert_eq!(Order::parse(bad), None, "{bad}");
        }
        // A tally that contradicts itself is not an answer.
        for bad in ["INTEGRITY 1 10 0 5", "INTEGRITY 1 10 2 -", "INTEGRITY x none", "INTEGRITY 1 10 2"] {
            assert_eq!(Message::parse(bad), Message::Other(bad.into()), "{bad}");
        }
    }

    #[test]
    fn meminfo_total_and_free() {
        let text = "MemTotal:         212236 kB\nMemFree:          170520 kB\nMemAvailable:     160000 kB\n";
        assert_eq!(parse_meminfo(text), Some((212236, 170520)));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(Message::parse("MEM 5 9 1"), Message::Other("MEM 5 9 1".into()), "free above total");
    }

    #[test]
    fn proc_stat_sums_busy_and_counts_cpus() {
        let stat = "cpu  100 5 30 800 10 2 3 50 0 0\ncpu0 50 5 15 400 5 1 1 25 0 0\ncpu1 50 0 15 400 5 1 2 25 0 0\nintr 1 2\n";
        assert_eq!(parse_proc_stat(stat), Some((140, 1000, 50, 2)));
        assert_eq!(parse_proc_stat("cpu  1 2 3\n"), None, "too few fields");
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn garbage_is_kept_not_fatal() {
        assert_eq!(Message::parse("HB x y"), Message::Other("HB x y".into()));
        assert_eq!(Message::parse("READY"), Message::Other("READY".into()));
        assert_eq!(Message::parse(""), Message::Other(String::new()));
        assert_eq!(Message::parse("NEWTHING 1"), Message::Other("NEWTHING 1".into()));
        assert_eq!(Message::parse("RATE flop x 1"), Message::Other("RATE flop x 1".into()));
        assert_eq!(Message::parse("CPU 5 4 0 1 9"), Message::Other("CPU 5 4 0 1 9".into()), "busy above total");
        assert_eq!(Message::parse("CPU 1 4 0 0 9"), Message::Other("CPU 1 4 0 0 9".into()), "no CPUs");
        assert_eq!(Message::parse("CPU 1 4 0 1"), Message::Other("CPU 1 4 0 1".into()));
    }
}
