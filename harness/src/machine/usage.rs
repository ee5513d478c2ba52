//! CPU used by a QEMU process and by its vCPU threads, and by the whole host, read
//! from /proc. Percentages are of one host CPU (so 2 busy vCPUs read 200 %),
//! except `host_percent`, which is of the whole host.

use super::agent::Counters;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub at: Instant,
    /// CPU time of the process, ns, from /proc/PID/stat: clock ticks (10 ms), but
    /// it includes threads that have ended, such as QEMU's migration thread.
    pub process_ns: u64,
    /// CPU time of the threads named "CPU n/TCG" or "CPU n/KVM" (QEMU names them so
    /// with `-name ...,debug-threads=on`), ns, from each thread's schedstat: vCPU
    /// threads live as long as QEMU, so this one can be exact.
    pub vcpu_ns: u64,
    /// /proc/stat: busy and total jiffies of all host CPUs.
    pub host_busy: u64,
    pub host_total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub seconds: f64,
    /// The QEMU process(es), % of one host CPU.
    pub qemu_percent: f64,
    /// Their vCPU threads only, % of one host CPU.
    pub vcpu_percent: f64,
    /// The whole host, % of all its CPUs.
    pub host_percent: f64,
    /// The guest's own accounting (its /proc/stat): busy, % of one vCPU. Under a
    /// cap without steal-time reporting (TCG) the guest cannot see the time it was
    /// not run, so this can stay near 100 % per busy vCPU while the host sees the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_percent: Option<f64>,
    /// Steal time the guest's kernel reports, % of one vCPU (KVM with steal time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_steal_percent: Option<f64>,
}

pub(crate) fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime from a /proc/.../stat line (fields 14 and 15, after the comm in parentheses).
pub(crate) fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14 → rest[11], stime rest[12].
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn host_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0) };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// One thread's CPU time in ns: schedstat where the kernel has it, else stat's ticks.
fn thread_ns(task: &std::path::Path, stat: &str) -> Option<u64> {
    thread_ns_of(stat, std::fs::read_to_string(task.join("schedstat")).ok().as_deref())
}

/// One thread's CPU time in ns from its `stat` line and its `schedstat` (whose first
/// field is the time it ran, in ns), when the kernel has one; else stat's ticks.
pub(crate) fn thread_ns_of(stat: &str, schedstat: Option<&str>) -> Option<u64> {
    if let Some(ns) = schedstat.and_then(|s| s.split_whitespace().next()?.parse().ok()) {
        return Some(ns);
    }
    stat_ticks(stat).map(|(_, t)| (t as f64 / ticks_per_sec() * 1e9) as u64)
}

/// Samples the given processes (a migration has two QEMUs).
pub fn sample(pids: &[u32]) -> CpuSample {
    CpuSample::at_now(counters(pids))
}

/// The cumulative CPU counters of the given processes and of this host.
pub fn counters(pids: &[u32]) -> Counters {
    let mut process_ns = 0;
    let mut vcpu_ns = 0;
    for pid in pids {
        if let Some((_, ticks)) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(stat_ticks) {
            process_ns += (ticks as f64 / ticks_per_sec() * 1e9) as u64;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            if stat_ticks(&stat).is_some_and(|(comm, _)| comm.starts_with("CPU ")) {
                vcpu_ns += thread_ns(&t.path(), &stat).unwrap_or(0);
            }
        }
    }
    let (host_busy, host_total) = host_ticks();
    Counters { process_ns, vcpu_ns, host_busy, host_total }
}

impl CpuSample {
    /// Counters read just now.
    pub fn at_now(c: Counters) -> CpuSample {
        CpuSample { at: Instant::now(), process_ns: c.process_ns, vcpu_ns: c.vcpu_ns, host_busy: c.host_busy, host_total: c.host_total }
    }
}

impl CpuUsage {
    pub fn between(a: &CpuSample, b: &CpuSample) -> Option<CpuUsage> {
        let secs = (b.at - a.at).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let pct = |d: u64| d as f64 / 1e9 / secs * 100.0;
        let host_total = b.host_total.saturating_sub(a.host_total);
        Some(CpuUsage {
            seconds: secs,
            qemu_percent: pct(b.process_ns.saturating_sub(a.process_ns)),
            vcpu_percent: pct(b.vcpu_ns.saturating_sub(a.vcpu_ns)),
            host_percent: if host_total > 0 { b.host_busy.saturating_sub(a.host_busy) as f64 / host_total as f64 * 100.0 } else { 0.0 },
            guest_percent: None,
            guest_steal_percent: None,
        })
    }

    /// Adds the guest's own view of the same window.
    pub fn with_guest(mut self, guest: Option<crate::guest::channel::GuestCpu>) -> CpuUsage {
        self.guest_percent = guest.map(|g| g.percent);
        self.guest_steal_percent = guest.map(|g| g.steal_percent);
        self
    }
}

/// CPU usage per phase of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseCpu {
    /// A window of steady state before `migrate`.
    pub before: Option<CpuUsage>,
    /// From `migrate` to completion (source and destination QEMU together).
    pub during: Option<CpuUsage>,
    /// A window after the guest runs on its new host.
    pub after: Option<CpuUsage>,
    /// From `migrate` to completion, the source QEMU alone: what sending costs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_during: Option<CpuUsage>,
    /// From `migrate` to completion, the destination's host when it is another one:
    /// its QEMU (% of one of its CPUs) and the whole host (% of all its CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_host_during: Option<CpuUsage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_with_spaces_in_the_name() {
        let line = "1234 (CPU 0/TCG) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(stat_ticks(line), Some(("CPU 0/TCG".into(), 300)));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn a_busy_thread_shows_up() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            let mut x = 0u64;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
        let a = sample(&[std::process::id()]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let b = sample(&[std::process::id()]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t.join().unwrap();
        let u = CpuUsage::between(&a, &b).unwrap();
        assert!(u.qemu_percent > 30.0, "a spinning thread used {u:?}");
        assert!(u.host_percent > 0.0);
        assert_eq!(u.vcpu_percent, 0.0, "no thread here is named CPU n/...");
    }
}
