//! The harness's own CPU while it drives a migration: utime + stime of this process,
//! less the threads that make traffic for the guest's clients instead of driving and
//! sampling the migration. QEMU and every other child process are not in it.

use super::usage::{stat_ticks, thread_ns_of};
use std::collections::BTreeMap;
use std::time::Instant;

/// The start of the names (`comm`, which the kernel cuts to 15 bytes) of the threads
/// left out: the HTTP load generator (`migbench-load`), the service probe
/// (`migbench-probe-tx`, `-rx`), the bridge port of a guest on another host
/// (`migbench-port-…`) and the delay line (`mb-dl-…`). Their work grows with the
/// load a profile asks for, not with the sampling.
pub const NOT_SAMPLING: [&str; 4] = ["migbench-load", "migbench-probe", "migbench-port-", "mb-dl-"];

/// Whether a thread named `comm` is one of [`NOT_SAMPLING`].
pub fn is_not_sampling(comm: &str) -> bool {
    NOT_SAMPLING.iter().any(|p| comm.starts_with(p))
}

/// This process's CPU counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnCpu {
    pub at: Instant,
    /// utime + stime of the whole process, ns: `getrusage(RUSAGE_SELF)`, the same
    /// sum as /proc/self/stat's but to the µs (stat's 10 ms ticks are 3 % of a
    /// 0.3 s migration), and with the threads that have ended.
    pub process_ns: u64,
    /// CPU time of each live thread left out ([`NOT_SAMPLING`]), ns, by thread id.
    pub left_out_ns: BTreeMap<u32, u64>,
}

impl OwnCpu {
    /// The counters from their sources: the process's utime + stime (ns) and, per
    /// live thread, its id, its /proc/self/task/ID/stat line and its schedstat.
    pub fn from_parts<'a>(at: Instant, process_ns: u64, threads: impl IntoIterator<Item = (u32, &'a str, Option<&'a str>)>) -> OwnCpu {
        let left_out_ns = threads
            .into_iter()
            .filter(|(_, stat, _)| stat_ticks(stat).is_some_and(|(comm, _)| is_not_sampling(&comm)))
            .filter_map(|(tid, stat, schedstat)| Some((tid, thread_ns_of(stat, schedstat)?)))
            .collect();
        OwnCpu { at, process_ns, left_out_ns }
    }

    /// The counters now; none when the kernel would not give the process's.
    pub fn now() -> Option<OwnCpu> {
        let process_ns = process_ns()?;
        let at = Instant::now();
        let mut threads: Vec<(u32, String, Option<String>)> = Vec::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for t in tasks.flatten() {
                let Some(tid) = t.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
                let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
                // schedstat only for the threads left out: the rest are in the total.
                let left_out = stat_ticks(&stat).is_some_and(|(comm, _)| is_not_sampling(&comm));
                let schedstat = left_out.then(|| std::fs::read_to_string(t.path().join("schedstat")).ok()).flatten();
                threads.push((tid, stat, schedstat));
            }
        }
        Some(OwnCpu::from_parts(at, process_ns, threads.iter().map(|(t, s, ss)| (*t, s.as_str(), ss.as_deref()))))
    }
}

/// utime + stime of this process, ns.
fn process_ns() -> Option<u64> {
    // SAFETY: getrusage writes only the struct it is given, which is plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer are all it needs.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let us = |t: libc::timeval| (t.tv_sec as u64).checked_mul(1_000_000)?.checked_add(t.tv_usec as u64);
    us(ru.ru_utime)?.checked_add(us(ru.ru_stime)?)?.checked_mul(1000)
}

/// The harness's CPU from `a` to `b`, % of one core: the process's utime + stime
/// over the window, less what the threads left out ran in it, ÷ the window's wall
/// time. A thread left out that ended inside the window is counted (its time is in
/// the total, and cannot be told apart any more): the figure errs high, never low.
/// None for an empty window or counters that went back.
pub fn harness_cpu_percent(a: &OwnCpu, b: &OwnCpu) -> Option<f64> {
    let secs = b.at.checked_duration_since(a.at)?.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let total = b.process_ns.checked_sub(a.process_ns)?;
    // A thread first seen at `b` started inside the window: all its time is in it.
    let left_out: u64 = b.left_out_ns.iter().map(|(tid, ns)| ns.saturating_sub(a.left_out_ns.get(tid).copied().unwrap_or(0))).sum();
    Some(total.saturating_sub(left_out) as f64 / 1e9 / secs * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A /proc/.../task/ID/stat line of thread `comm` with `ticks` of utime.
    fn stat(tid: u32, comm: &str, ticks: u64) -> String {
        format!("{tid} ({comm}) S 1 2 3 4 5 6 7 8 9 10 {ticks} 0 0 0 20 0 1 0")
    }

    #[test]
    fn the_load_and_probe_threads_are_left_out_of_the_harness_figure() {
        let t0 = Instant::now();
        let (main, load, probe) = (stat(100, "migbench", 0), stat(101, "migbench-load", 0), stat(102, "migbench-probe-", 0));
        let a = OwnCpu::from_parts(t0, 1_000_000_000, [(100, main.as_str(), Some("5000 0 0")), (101, &load, Some("200000000 0 0")), (102, &probe, Some("0 0 0"))]);
        assert_eq!(a.left_out_ns.len(), 2, "only the load and the probe are left out: {a:?}");
        // Over 2 s the process ran 500 ms, of which the load 300 ms and the probe 100 ms.
        let b = OwnCpu::from_parts(t0 + Duration::from_secs(2), 1_500_000_000, [(100, main.as_str(), None), (101, &load, Some("500000000 0 0")), (102, &probe, Some("100000000 0 0"))]);
        let pct = harness_cpu_percent(&a, &b).unwrap();
        assert!((pct - 5.0).abs() < 1e-9, "100 ms of 2 s is 5 % of one core, got {pct}");
    }

    #[test]
    fn a_thread_left_out_that_started_in_the_window_counts_from_zero_and_one_that_ended_stays_in() {
        let t0 = Instant::now();
        let load = stat(7, "migbench-load", 0);
        let a = OwnCpu::from_parts(t0, 0, [(7, load.as_str(), Some("400000000 1 1"))]);
        let late = stat(8, "mb-dl-read-far", 0);
        // Thread 7 ended (its 400 ms before the window are not in the window's total);
        // thread 8 started and ran 250 ms; the process ran 1 s in all over 1 s.
        let b = OwnCpu::from_parts(t0 + Duration::from_secs(1), 1_000_000_000, [(8, late.as_str(), Some("250000000 0 0"))]);
        assert!((harness_cpu_percent(&a, &b).unwrap() - 75.0).abs() < 1e-9);
    }

    #[test]
    fn without_schedstat_a_thread_is_read_from_its_ticks() {
        let load = stat(9, "migbench-load", 30);
        let c = OwnCpu::from_parts(Instant::now(), 0, [(9, load.as_str(), None)]);
        let expected = (30.0 / super::super::usage::ticks_per_sec() * 1e9) as u64;
        assert_eq!(c.left_out_ns.get(&9), Some(&expected));
    }

    #[test]
    fn no_figure_for_an_empty_window_or_counters_that_went_back() {
        let t0 = Instant::now();
        let a = OwnCpu::from_parts(t0, 10, []);
        assert_eq!(harness_cpu_percent(&a, &a), None);
        let earlier = OwnCpu::from_parts(t0 + Duration::from_secs(1), 5, []);
        assert_eq!(harness_cpu_percent(&a, &earlier), None, "the process's time went back");
        assert_eq!(harness_cpu_percent(&earlier, &a), None, "b before a");
    }

    #[test]
    fn a_busy_thread_of_this_process_shows_and_a_busy_load_thread_is_read_apart() {
        let spin = |name: &str| {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (s, (tx, rx)) = (stop.clone(), std::sync::mpsc::channel());
            let t = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    let _ = tx.send(unsafe { libc::gettid() } as u32);
                    let mut x = 0u64;
                    while !s.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
                .unwrap();
            let tid = rx.recv().unwrap();
            let a = OwnCpu::now().unwrap();
            std::thread::sleep(Duration::from_millis(400));
            let b = OwnCpu::now().unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            t.join().unwrap();
            (tid, a, b)
        };
        let (tid, a, b) = spin("migbench-spin");
        assert!(!b.left_out_ns.contains_key(&tid), "a harness thread is not left out");
        let busy = harness_cpu_percent(&a, &b).unwrap();
        assert!(busy > 30.0, "a spinning harness thread gave {busy} %");
        let (tid, a, b) = spin("migbench-load");
        let ran = b.left_out_ns[&tid] - a.left_out_ns[&tid];
        assert!(ran > 120_000_000, "the spinning load thread was read as {ran} ns in 400 ms");
        // Other tests share this process, so the rest is not required to be small;
        // the load thread's time must be out of it.
        let secs = (b.at - a.at).as_secs_f64();
        let without_it = (b.process_ns - a.process_ns).saturating_sub(ran) as f64 / 1e9 / secs * 100.0;
        assert!(harness_cpu_percent(&a, &b).unwrap() <= without_it + 1e-9);
    }
}
