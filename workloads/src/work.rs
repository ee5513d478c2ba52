//! The workloads the guest runs beside its heartbeat. Each runs in its own thread
//! at a lower priority, so the heartbeat (the measurement) keeps its timing; only
//! the HTTP server keeps the default, since its clients measure it too.

use migbench_guest::benchmark::Benchmark;
use migbench_guest::http;
use migbench_guest::livermore;
use migbench_guest::orders::{DirtyMode, Workload};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use migbench_guest::stamp::{READ_STRIDE, StampedSet, Tally};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Work done since the workload started, in its unit (`Workload::unit`).
pub static DONE: AtomicU64 = AtomicU64::new(0);

/// The Livermore loops' per-kernel rates so far (all copies), for their summary means.
pub static LIVERMORE: Mutex<Option<livermore::Tally>> = Mutex::new(None);

/// The port the http workload listens on: port 80 in the guest; a host run
/// (`run http --port P`) moves it off the privileged port.
pub static HTTP_PORT: AtomicU16 = AtomicU16::new(http::PORT);

/// Listen on the loopback address only: a host run is a test, not a service
/// for the host's network. The guest listens on every address.
pub static HTTP_LOOPBACK: AtomicBool = AtomicBool::new(false);

/// Starts the workload: the CPU benchmarks (Dhrystone, Linpack, Livermore) as `copies`
/// threads, one per vCPU in the guest, so a 2-vCPU guest can use both (their
/// rate is the sum); the others as one thread. `on_error` is called if the
/// workload finds its own results wrong; that copy then stops rather than report
/// a number.
pub fn start(w: Workload, copies: usize, on_error: fn(&str)) {
    let copies = match w {
        Workload::Idle => 0,
        Workload::Dhrystone | Workload::Linpack { .. } | Workload::Livermore { .. } => copies.max(1),
        _ => 1,
    };
    for _ in 0..copies {
        start_one(w, on_error);
    }
}

fn start_one(w: Workload, on_error: fn(&str)) {
    std::thread::spawn(move || {
        // A server that answers late skews its clients' figures, so it competes
        // at the default priority (its connection threads inherit it).
        if !matches!(w, Workload::Http { .. }) {
            // SAFETY: setpriority on our own thread (which = 0 means the caller).
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        }
        match w {
            Workload::Idle => {}
            Workload::Burn => burn(),
            Workload::MemDirty { mib, mode, rate_mib_s } => memdirty(mib as usize * 1024 * 1024, mode, rate_mib_s),
            Workload::CpuDuty { percent } => cpu_duty(percent),
            Workload::Dhrystone | Workload::Linpack { .. } | Workload::Livermore { .. } => {
                if let Err(e) = run_benchmark(w) {
                    on_error(&e);
                }
            }
            Workload::Http { store_mib } => {
                if let Err(e) = serve_http(store_mib) {
                    on_error(&e);
                }
            }
        }
    });
}

/// Serves HTTP for ever, counting answered requests in `DONE`; returns only
/// when it cannot listen, or its listener fails.
fn serve_http(store_mib: u32) -> Result<(), String> {
    let ip = if HTTP_LOOPBACK.load(Ordering::Relaxed) { Ipv4Addr::LOCALHOST } else { Ipv4Addr::UNSPECIFIED };
    let addr = SocketAddr::from((ip, HTTP_PORT.load(Ordering::Relaxed)));
    let listener = TcpListener::bind(addr).map_err(|e| format!("http workload: cannot listen on {addr}: {e}"))?;
    // Filled after the bind, so a port in use is reported at once, not after
    // writing up to 4 GiB; clients that come meanwhile wait in the backlog.
    let store = Arc::new(http::Store::new(store_mib));
    http::serve(listener, store, &DONE).map_err(|e| format!("http workload: listening on {addr} failed: {e}"))
}

/// `n` steps of a linear congruential generator the optimiser cannot skip.
fn spin(x: &mut u64, n: u64) {
    for _ in 0..n {
        *x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    }
}

fn burn() -> ! {
    let mut x: u64 = 1;
    loop {
        spin(&mut x, 1_000_000);
        DONE.fetch_add(1_000_000, Ordering::Relaxed);
    }
}

/// Busy for `percent` % of every 10 ms period, asleep for the rest.
fn cpu_duty(percent: u32) -> ! {
    let period = std::time::Duration::from_millis(10);
    let busy = period * percent / 100;
    let mut x: u64 = 1;
    loop {
        let start = std::time::Instant::now();
        let mut n = 0u64;
        while start.elapsed() < busy {
            spin(&mut x, 1000);
            n += 1000;
        }
        DONE.fetch_add(n, Ordering::Relaxed);
        if let Some(rest) = period.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// A CPU benchmark's checked steps for ever; returns only when one is wrong.
fn run_benchmark(w: Workload) -> Result<(), String> {
    let Some(mut bench) = Benchmark::new(w) else { return Ok(()) };
    loop {
        let step = bench.step()?;
        DONE.fetch_add(step.done as u64, Ordering::Relaxed);
        if let Some(pass) = step.livermore {
            LIVERMORE.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(livermore::Tally::default).add(&pass);
        }
    }
}

/// The Livermore summary line so far (`short=AM/GM/HM …`), once every kernel has run.
pub fn livermore_report() -> Option<String> {
    LIVERMORE.lock().unwrap_or_else(|p| p.into_inner()).as_ref()?.report()
}

/// The memory dirtier's working set, once made: shared with the order handler,
/// which verifies it. Holding the lock pauses the writer between two chunks.
static STAMPED: Mutex<Option<Arc<Mutex<StampedSet>>>> = Mutex::new(None);

/// What workloads found wrong in their own results (each then stopped), in order.
pub static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Notes a workload's failed self-check, for the harness (`FAILED` lines).
pub fn failed(what: &str) {
    FAILURES.lock().unwrap_or_else(|p| p.into_inner()).push(what.to_string());
}

/// The memory dirtier's set, waiting up to `wait` for it to be made (it is made
/// as the workload starts); `None` if there is none.
fn stamped(wait: std::time::Duration) -> Option<Arc<Mutex<StampedSet>>> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(set) = STAMPED.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Some(set);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `f` on the memory dirtier's set with its writer paused (waiting its turn,
/// see [`Turn`]); `None` when `w` owns no stamped memory.
fn with_set<T>(w: Workload, f: impl FnOnce(&mut StampedSet) -> T) -> Option<Result<T, String>> {
    if !w.stamps_memory() {
        return None;
    }
    let Some(set) = stamped(std::time::Duration::from_secs(10)) else {
        return Some(Err(format!("{w}: its working set was not made within 10 s")));
    };
    let _turn = Turn::take();
    let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
    Some(Ok(f(&mut set)))
}

/// Verifies every page of the memory dirtier's set, its writer paused; `Ok(None)`
/// for a workload that owns no stamped memory.
pub fn verify_memory(w: Workload) -> Result<Option<Tally>, String> {
    with_set(w, StampedSet::verify).transpose().map_err(|e| format!("{e}, so nothing could be verified"))
}

/// How many threads wait for the set's lock besides the writer. std's mutex is not
/// fair: a writer that unlocks and relocks at once can starve a waiter on another
/// vCPU for ever, so while this is non-zero the writer steps aside between chunks.
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A waiter's place in line for the set's lock, given up when dropped.
struct Turn;

impl Turn {
    fn take() -> Turn {
        WAITING.fetch_add(1, Ordering::SeqCst);
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Flips a bit of page `page` of the memory dirtier's set (a test's fault).
pub fn corrupt_memory(w: Workload, page: u64) -> Result<(), String> {
    let page = usize::try_from(page).map_err(|_| format!("page {page} is out of range"))?;
    with_set(w, |set| set.corrupt(page)).unwrap_or_else(|| Err(format!("the {w} workload owns no stamped memory")))?
}

/// Pages the writer handles per hold of the lock (1 MiB): a verifier waits at
/// most that long for it, and the lock costs nothing next to the pages.
const CHUNK_PAGES: usize = 256;

fn memdirty(bytes: usize, mode: DirtyMode, rate_mib_s: Option<u32>) -> ! {
    // Write mode stamps every page each round: a new, non-zero generation and
    // checksum, so no page stays zero or repeats what was sent before, and migration
    // has to copy it again. Read mode reads (and verifies) every page and rewrites
    // one in 64.
    let stride = if mode == DirtyMode::Write { 1 } else { READ_STRIDE };
    let set = Arc::new(Mutex::new(StampedSet::new(bytes, stride)));
    *STAMPED.lock().unwrap_or_else(|p| p.into_inner()) = Some(set.clone());
    let pages = set.lock().unwrap_or_else(|p| p.into_inner()).pages();
    let started = std::time::Instant::now();
    loop {
        // At a target rate, a round waits until the MiB done so far are due.
        if let Some(rate) = rate_mib_s {
            let done = DONE.load(Ordering::Relaxed) as f64;
            let due = std::time::Duration::from_secs_f64(done / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let mut left = pages;
        while left > 0 {
            let n = left.min(CHUNK_PAGES);
            let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
            for _ in 0..n {
                s.step();
            }
            drop(s);
            left -= n;
            while WAITING.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        DONE.fetch_add((bytes / (1024 * 1024)) as u64, Ordering::Relaxed);
    }
}