//! The HTTP load generator: a lean HTTP/1.1 client (`load::http1`) on a tokio
//! runtime of its own, one thread unless the caller asks for more.
//!
//! - **Open loop** (`open:RATE`): requests go out on a fixed schedule, RATE per
//!   second, whether or not earlier ones were answered. Each request's latency
//!   counts from its *intended* send time, so a stall is charged to every request
//!   it delays instead of being hidden (coordinated omission corrected).
//! - **Closed loop** (`closed:CLIENTS[:THINK_MS]`): CLIENTS clients each send a
//!   request, wait for its answer, pause THINK_MS and go again, like ApacheBench;
//!   latency counts from the actual send.
//!
//! Connections are kept alive and reused, or made fresh for every request
//! (`Connection: close`), which is what a browser opening a new connection during
//! the switchover experiences (a SYN lost then waits for TCP's 1 s retransmit).

use super::http1::{Conn, Failure};
use super::spec::{Connection, LoadSpec, Mode};
use super::timeline::Request;
use crate::network::Network;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A load under way. Requests are recorded as they finish.
pub struct RunningLoad {
    t0: Instant,
    stop: tokio::sync::watch::Sender<bool>,
    done: Arc<AtomicU64>,
    records: Arc<Mutex<Vec<Request>>>,
    /// When the generator finished its last request.
    ended: Arc<Mutex<Option<Instant>>>,
    thread: Option<std::thread::JoinHandle<Result<Result<()>>>>,
}

/// A load dropped on an error path stops sending (its thread ends by itself).
impl Drop for RunningLoad {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Everything a stopped load produced.
#[derive(Debug)]
pub struct Finished {
    /// In the order they were meant to go out.
    pub requests: Vec<Request>,
    /// When the last request finished (the load's own end, which for a bounded
    /// load can be long before it was stopped).
    pub ended: Instant,
    /// Why the generator itself failed, if it did; `requests` holds what it did before.
    pub error: Option<String>,
}

/// Starts `spec` against `target` (inside `network`'s namespace, or in the
/// harness's own without one) on one thread, which leaves the host's other cores to
/// the QEMUs being measured. Times are measured from `t0`.
pub fn start(spec: &LoadSpec, target: SocketAddr, network: Option<&Network>, t0: Instant) -> Result<RunningLoad> {
    start_on(spec, target, network, t0, 1)
}

/// [`start`] on `threads` runtime threads (for measuring the generator's own
/// capacity beside tools that use as many).
pub fn start_on(spec: &LoadSpec, target: SocketAddr, network: Option<&Network>, t0: Instant, threads: usize) -> Result<RunningLoad> {
    if let Err(e) = spec.check() {
        bail!("{e}");
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let done = Arc::new(AtomicU64::new(0));
    let records = Arc::new(Mutex::new(Vec::new()));
    let ended = Arc::new(Mutex::new(None));
    let job = {
        let (spec, done, records, ended) = (spec.clone(), done.clone(), records.clone(), ended.clone());
        move || -> Result<()> {
            let issued = Arc::new(AtomicU64::new(0));
            // One single-threaded runtime per share: this thread runs the first, and
            // threads it makes (so in its network namespace) run the others.
            let run = |spec: LoadSpec| -> Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the load generator's runtime")?;
                rt.block_on(generate(spec, target, t0, stop_rx.clone(), done.clone(), records.clone(), issued.clone()))
            };
            let shares = shares(&spec, threads);
            let r = std::thread::scope(|scope| {
                let others: Vec<_> = shares[1..]
                    .iter()
                    .map(|share| {
                        let share = share.clone();
                        std::thread::Builder::new().name("migbench-load".into()).spawn_scoped(scope, || run(share))
                    })
                    .collect();
                let mut r = run(shares[0].clone());
                for other in others {
                    let o = match other {
                        Ok(h) => h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a load thread panicked"))),
                        Err(e) => Err(anyhow::Error::from(e).context("starting a load thread")),
                    };
                    r = r.and(o);
                }
                r
            });
            *ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            r
        }
    };
    let thread = match network {
        Some(n) => n.spawn("migbench-load", job)?,
        None => std::thread::Builder::new().name("migbench-load".into()).spawn(move || Ok(job())).context("starting the load thread")?,
    };
    Ok(RunningLoad { t0, stop, done, records, ended, thread: Some(thread) })
}

impl RunningLoad {
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// Requests finished so far (answered or failed).
    pub fn finished(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Whether every request of a bounded load (`requests`) is finished, or the generator ended.
    pub fn is_done(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits until a bounded load (`requests`) is done, then [`RunningLoad::stop`]s it.
    pub fn wait(self) -> Result<Vec<Request>> {
        while !self.is_done() {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop()
    }

    /// Stops sending, waits for the requests in flight (each ends by its timeout),
    /// and returns every request in the order they were meant to go out.
    pub fn stop(self) -> Result<Vec<Request>> {
        let f = self.finish();
        match f.error {
            Some(e) => bail!("{e}"),
            None => Ok(f.requests),
        }
    }

    /// [`RunningLoad::stop`], keeping what was recorded even when the generator
    /// failed, and when it ended.
    pub fn finish(mut self) -> Finished {
        self.stop.send_replace(true);
        let error = match self.thread.take().map(|t| t.join()) {
            None | Some(Ok(Ok(Ok(())))) => None,
            Some(Ok(Ok(Err(e)) | Err(e))) => Some(format!("the load generator failed: {e:#}")),
            Some(Err(_)) => Some("the load generator panicked".to_string()),
        };
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(Instant::now);
        let mut requests = std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()));
        requests.sort_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
        Finished { requests, ended, error }
    }
}

/// How a load is split over `threads` threads: a closed loop's clients dealt out
/// evenly (as wrk deals its connections over its threads), each share one thread's;
/// an open loop keeps its one schedule on one thread.
fn shares(spec: &LoadSpec, threads: usize) -> Vec<LoadSpec> {
    match spec.mode {
        Mode::Closed { clients, think_ms } if threads > 1 && clients > 1 => {
            let n = (threads as u32).min(clients);
            (0..n).map(|k| LoadSpec { mode: Mode::Closed { clients: clients / n + u32::from(k < clients % n), think_ms }, ..spec.clone() }).collect()
        }
        _ => vec![spec.clone()],
    }
}

fn ms_since(t0: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(t0).as_secs_f64() * 1000.0
}

/// More requests in flight than this means the target is not answering at all;
/// later ones are recorded as failed without being sent, so the harness stays bounded.
const MAX_IN_FLIGHT: u64 = 20_000;

/// How many requests may be in flight: each holds a socket, and the process must
/// keep descriptors for everything else it does (QMP, /proc, logs).
fn in_flight_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid out-pointer.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_cur } else { 1024 };
    soft.saturating_sub(256).clamp(16, MAX_IN_FLIGHT)
}

/// Raises this process's open-file limit to its hard limit (usually far above the
/// 1024 soft default), so a load with many requests in flight has sockets to use.
pub fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointers; raising the soft limit up to the hard one needs no privilege.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Whether the stop signal came (or the load's owner is gone).
fn stopped(stop: &tokio::sync::watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Sleeps until `t`, or less if the stop signal comes first; true if it came.
async fn sleep_or_stop(t: tokio::time::Instant, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    let slept = tokio::select! {
        _ = tokio::time::sleep_until(t) => true,
        // An error means the owner is gone: stop too.
        _ = async { let _ = stop.wait_for(|s| *s).await; } => false,
    };
    !slept || stopped(stop)
}

async fn generate(
    spec: LoadSpec,
    target: SocketAddr,
    t0: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
    done: Arc<AtomicU64>,
    records: Arc<Mutex<Vec<Request>>>,
    issued: Arc<AtomicU64>,
) -> Result<()> {
    let shot = Shot {
        target,
        host: Arc::from(target.to_string()),
        spec: spec.clone(),
        t0,
        done,
        records,
        in_flight: Arc::new(AtomicU64::new(0)),
        max_in_flight: in_flight_limit(),
        idle: Arc::new(Mutex::new(Vec::new())),
    };
    match spec.mode {
        Mode::Open { rate } => {
            let mut tasks = tokio::task::JoinSet::new();
            let mut i: u64 = 0;
            while !stopped(&stop) && spec.requests.is_none_or(|n| i < n) {
                let intended = t0 + Duration::from_secs_f64(i as f64 / rate);
                if sleep_or_stop(intended.into(), &mut stop).await {
                    break;
                }
                let shot = shot.clone();
                tasks.spawn(async move {
                    // A connection left idle by an earlier request, else a new one.
                    let mut conn = shot.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let rec = shot.fire(i, intended, &mut conn, &mut Timer::new()).await;
                    shot.record(rec);
                    if let Some(c) = conn {
                        shot.idle.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                    }
                });
                i += 1;
                // Reap finished tasks so the set stays small.
                while let Some(joined) = tasks.try_join_next() {
                    joined.context("a request task of the load generator failed")?;
                }
            }
            while let Some(joined) = tasks.join_next().await {
                joined.context("a request task of the load generator failed")?;
            }
        }
        Mode::Closed { clients, think_ms } => {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let (shot, mut stop, issued, requests) = (shot.clone(), stop.clone(), issued.clone(), spec.requests);
                tasks.spawn(async move {
                    // Each client keeps its own connection, as wrk's do, and its
                    // records, handed over in batches (the lock is shared by threads).
                    let mut conn = None;
                    let mut timer = Timer::new();
                    let mut batch = Vec::with_capacity(BATCH);
                    loop {
                        let i = issued.fetch_add(1, Ordering::Relaxed);
                        if stopped(&stop) || requests.is_some_and(|n| i >= n) {
                            break;
                        }
                        batch.push(shot.fire(i, Instant::now(), &mut conn, &mut timer).await);
                        shot.done.fetch_add(1, Ordering::Relaxed);
                        if batch.len() == BATCH {
                            shot.records.lock().unwrap_or_else(|e| e.into_inner()).append(&mut batch);
                        }
                        if think_ms > 0 && sleep_or_stop(tokio::time::Instant::now() + Duration::from_millis(think_ms), &mut stop).await {
                            break;
                        }
                    }
                    shot.records.lock().unwrap_or_else(|e| e.into_inner()).append(&mut batch);
                });
            }
            // A client task that failed lost its unsent records: that is the
            // generator's error, not a quiet gap in the load.
            while let Some(joined) = tasks.join_next().await {
                joined.context("a client of the load generator failed")?;
            }
        }
    }
    Ok(())
}

/// Records a closed-loop client keeps before handing them over.
const BATCH: usize = 256;

/// What one request needs; cheap to clone.
#[derive(Clone)]
struct Shot {
    target: SocketAddr,
    /// The `Host:` header's value.
    host: Arc<str>,
    spec: LoadSpec,
    t0: Instant,
    done: Arc<AtomicU64>,
    records: Arc<Mutex<Vec<Request>>>,
    in_flight: Arc<AtomicU64>,
    max_in_flight: u64,
    /// Keep-alive connections no open-loop request is using.
    idle: Arc<Mutex<Vec<Conn>>>,
}

impl Shot {
    /// Sends request `i` (meant to go out at `intended`) on `conn` (or a new
    /// connection, left in `conn` if it can be used again) and says how it went.
    async fn fire(&self, i: u64, intended: Instant, conn: &mut Option<Conn>, timer: &mut Timer) -> Request {
        let sent = Instant::now();
        let full = self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight;
        let (status, error) = if full {
            (None, Some(format!("not sent: {} requests in flight", self.max_in_flight)))
        } else {
            self.send(i, sent, conn, timer).await
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let done = Instant::now();
        // A connection this request did not use keeps its idle time (and its check).
        if let Some(c) = conn.as_mut().filter(|_| !full) {
            c.used_at(done);
        }
        Request { intended_ms: ms_since(self.t0, intended), sent_ms: ms_since(self.t0, sent), done_ms: ms_since(self.t0, done), status, error }
    }

    fn record(&self, rec: Request) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    async fn send(&self, i: u64, now: Instant, slot: &mut Option<Conn>, timer: &mut Timer) -> (Option<u16>, Option<String>) {
        let close = self.spec.connection == Connection::PerRequest;
        let path = self.spec.path(i);
        let exchange = async {
            // A kept connection the server has closed meanwhile (its idle timeout)
            // is dropped before use, as a browser's pool does.
            let mut conn = match slot.take().filter(|c| c.open(now)) {
                Some(c) => c,
                None => Conn::connect(self.target).await?,
            };
            let answer = conn.get(&self.host, &path, close).await?;
            if conn.reusable && !close {
                *slot = Some(conn);
            }
            Ok::<_, Failure>(answer.status)
        };
        // The whole exchange, connecting included, within the request's timeout.
        match timer.until(now + Duration::from_millis(self.spec.timeout_ms), exchange).await {
            None => (None, Some("timeout".into())),
            Some(Ok(status)) if (200..300).contains(&status) => (Some(status), None),
            Some(Ok(status)) => (Some(status), Some(format!("status {status}"))),
            Some(Err(f)) => (None, Some(f.kind().into())),
        }
    }
}

/// A request's timeout on a timer its client keeps from one request to the next.
/// `tokio::time::timeout` makes a timer per request, which is an insertion into
/// the runtime's timer wheel and a removal under its lock each time; moving a kept
/// timer's deadline later only marks it (the wheel catches up when the old
/// deadline comes), so a closed-loop client's requests cost the wheel nothing.
struct Timer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Timer {
    fn new() -> Timer {
        Timer { sleep: Box::pin(tokio::time::sleep(Duration::ZERO)) }
    }

    /// `work`'s output, or None if `deadline` passed first.
    async fn until<F: std::future::Future>(&mut self, deadline: Instant, work: F) -> Option<F::Output> {
        self.sleep.as_mut().reset(deadline.into());
        tokio::select! {
            biased;
            out = work => Some(out),
            () = self.sleep.as_mut() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        assert_eq!("open:200".parse::<Mode>().unwrap(), Mode::Open { rate: 200.0 });
        assert_eq!("closed:1".parse::<Mode>().unwrap(), Mode::Closed { clients: 1, think_ms: 0 });
        assert_eq!("closed:4:10".parse::<Mode>().unwrap(), Mode::Closed { clients: 4, think_ms: 10 });
        for m in ["open:2.5", "closed:3", "closed:2:25"] {
            assert_eq!(m.parse::<Mode>().unwrap().to_string(), m);
        }
        assert!("open:0".parse::<Mode>().unwrap_err().contains("0.1 to"));
        assert!("open:1e-300".parse::<Mode>().unwrap_err().contains("0.1 to"));
        assert!("closed:0".parse::<Mode>().unwrap_err().contains("1 to 1024"));
        assert!("closed:1:x".parse::<Mode>().unwrap_err().contains("think time"));
        assert!("burst:5".parse::<Mode>().unwrap_err().contains("open:RATE"));
        assert!("open".parse::<Mode>().is_err());
    }

    #[test]
    fn dynamic_share_is_spread_evenly() {
        let spec = LoadSpec { mode: Mode::Open { rate: 1.0 }, connection: Connection::KeepAlive, dynamic_percent: 25, timeout_ms: 1000, requests: None };
        let dynamic: Vec<u64> = (0..12).filter(|i| spec.path(*i).starts_with("/kv/")).collect();
        assert_eq!(dynamic, [3, 7, 11]);
        assert_eq!((0..1000).filter(|i| spec.path(*i).starts_with("/kv/")).count(), 250);
        let none = LoadSpec { dynamic_percent: 0, ..spec.clone() };
        assert!((0..100).all(|i| none.path(i) == "/"));
        let all = LoadSpec { dynamic_percent: 100, ..spec };
        assert!((0..100).all(|i| all.path(i).starts_with("/kv/")));
    }

    /// A minimal HTTP server on loopback: answers every request after `delay`.
    fn server(delay: Duration) -> SocketAddr {
        server_answering(delay, usize::MAX)
    }

    /// [`server`], which on each connection answers `answers` requests and then
    /// holds the connection without answering.
    fn server_answering(delay: Duration, answers: usize) -> SocketAddr {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    for _ in 0..answers {
                        let mut line = String::new();
                        let mut close = false;
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            close |= line.to_ascii_lowercase().starts_with("connection: close");
                            if line == "\r\n" {
                                break;
                            }
                        }
                        std::thread::sleep(delay);
                        let c = if close { "close" } else { "keep-alive" };
                        if conn.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: {c}\r\n\r\nok").as_bytes()).is_err() || close {
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_secs(30));
                });
            }
        });
        addr
    }

    #[test]
    fn open_loop_keeps_its_rate_and_charges_stalls_from_the_intended_time() {
        let addr = server(Duration::from_millis(0));
        for connection in [Connection::KeepAlive, Connection::PerRequest] {
            let spec = LoadSpec { mode: Mode::Open { rate: 200.0 }, connection, dynamic_percent: 50, timeout_ms: 2000, requests: Some(100) };
            let load = start(&spec, addr, None, Instant::now()).unwrap();
            let recs = load.wait().unwrap();
            assert_eq!(recs.len(), 100, "{connection}");
            assert!(recs.iter().all(|r| r.ok()), "{connection}: {:?}", recs.iter().find(|r| !r.ok()));
            // Request i was meant for i × 5 ms.
            for (i, r) in recs.iter().enumerate() {
                assert!((r.intended_ms - i as f64 * 5.0).abs() < 0.01, "{i}: {r:?}");
                assert!(r.sent_ms >= r.intended_ms - 0.01 && r.done_ms >= r.sent_ms);
            }
        }
        // A server that takes 50 ms per request on one connection at a time: the
        // schedule does not wait for it (all 20 go out within the 95 ms schedule).
        let slow = server(Duration::from_millis(50));
        let spec = LoadSpec { mode: Mode::Open { rate: 200.0 }, connection: Connection::PerRequest, dynamic_percent: 0, timeout_ms: 5000, requests: Some(20) };
        let recs = start(&spec, slow, None, Instant::now()).unwrap().wait().unwrap();
        assert_eq!(recs.len(), 20);
        assert!(recs.iter().all(|r| r.latency_ms() >= 50.0 && r.ok()));
        assert!(recs.last().unwrap().intended_ms < 100.0);
    }

    #[test]
    fn closed_loop_sends_the_requested_count_one_at_a_time() {
        let addr = server(Duration::from_millis(2));
        let spec = LoadSpec { mode: Mode::Closed { clients: 1, think_ms: 0 }, connection: Connection::KeepAlive, dynamic_percent: 0, timeout_ms: 2000, requests: Some(30) };
        let recs = start(&spec, addr, None, Instant::now()).unwrap().wait().unwrap();
        assert_eq!(recs.len(), 30);
        // One client: each request goes out after the previous one was answered.
        for w in recs.windows(2) {
            assert!(w[1].sent_ms >= w[0].done_ms - 0.01, "{w:?}");
            assert!(w[0].latency_ms() >= 2.0);
        }
    }

    #[test]
    fn a_clients_timeout_counts_from_each_of_its_requests() {
        // 15 answers 20 ms apart on the one connection, then silence: the 16th
        // request goes out about 300 ms after the first, past the first one's
        // deadline, and the client's kept timer must give it its own 250 ms —
        // neither fire during an answered request nor stay set to an old deadline.
        let addr = server_answering(Duration::from_millis(20), 15);
        let spec = LoadSpec { mode: Mode::Closed { clients: 1, think_ms: 0 }, connection: Connection::KeepAlive, dynamic_percent: 0, timeout_ms: 250, requests: Some(16) };
        let recs = start(&spec, addr, None, Instant::now()).unwrap().wait().unwrap();
        assert_eq!(recs.len(), 16);
        assert!(recs[..15].iter().all(|r| r.ok()), "{recs:?}");
        assert!(recs[14].sent_ms >= 250.0, "the answers came too fast to pass the first deadline: {recs:?}");
        let last = &recs[15];
        assert_eq!(last.error.as_deref(), Some("timeout"), "{last:?}");
        assert!((250.0..1000.0).contains(&last.latency_ms()), "{last:?}");
    }

    #[test]
    fn failures_are_recorded_with_their_kind() {
        // Nothing listens on this port.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let spec = LoadSpec { mode: Mode::Open { rate: 100.0 }, connection: Connection::KeepAlive, dynamic_percent: 0, timeout_ms: 500, requests: Some(5) };
        let recs = start(&spec, closed, None, Instant::now()).unwrap().wait().unwrap();
        assert_eq!(recs.len(), 5);
        assert!(recs.iter().all(|r| !r.ok() && r.status.is_none()));
        assert!(recs.iter().all(|r| r.error.as_deref() == Some("refused")), "{recs:?}");
        // A server that never answers: timeouts.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = LoadSpec { requests: Some(2), timeout_ms: 200, ..spec };
        let recs = start(&spec, silent.local_addr().unwrap(), None, Instant::now()).unwrap().wait().unwrap();
        assert!(recs.iter().all(|r| r.error.as_deref() == Some("timeout") && r.latency_ms() >= 200.0), "{recs:?}");
    }

    #[test]
    fn a_stop_does_not_wait_for_the_next_slot_or_think_time() {
        let addr = server(Duration::from_millis(0));
        for mode in [Mode::Open { rate: 0.1 }, Mode::Closed { clients: 2, think_ms: 60_000 }] {
            let spec = LoadSpec { mode, connection: Connection::KeepAlive, dynamic_percent: 0, timeout_ms: 1000, requests: None };
            let load = start(&spec, addr, None, Instant::now()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let asked = Instant::now();
            let f = load.finish();
            // The next request is 10 s (or 60 s of thinking) away; the stop must not wait for it.
            assert!(asked.elapsed() < Duration::from_secs(3), "{mode}: stopping took {:?}", asked.elapsed());
            assert!(f.error.is_none() && !f.requests.is_empty() && f.requests.iter().all(|r| r.ok()), "{mode}: {f:?}");
        }
    }

    #[test]
    fn a_bounded_load_ends_when_its_last_request_does() {
        let addr = server(Duration::from_millis(0));
        let spec = LoadSpec { mode: Mode::Open { rate: 100.0 }, connection: Connection::KeepAlive, dynamic_percent: 0, timeout_ms: 1000, requests: Some(5) };
        let t0 = Instant::now();
        let load = start(&spec, addr, None, t0).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let f = load.finish();
        let last_done = f.requests.iter().map(|r| r.done_ms).fold(0.0, f64::max);
        let ended_ms = (f.ended - t0).as_secs_f64() * 1000.0;
        // Its own end (about 40 ms in), not the stop at 500 ms.
        assert!(ended_ms >= last_done && ended_ms < 300.0, "ended {ended_ms} ms, last request done {last_done} ms");
    }

    #[test]
    fn bad_specs_are_refused() {
        let spec = LoadSpec { mode: Mode::Open { rate: 1.0 }, connection: Connection::KeepAlive, dynamic_percent: 101, timeout_ms: 1000, requests: None };
        assert!(spec.check().unwrap_err().contains("dynamic_percent = 101"));
        assert!(LoadSpec { dynamic_percent: 0, timeout_ms: 0, ..spec.clone() }.check().unwrap_err().contains("request_timeout_ms"));
        assert!(LoadSpec { dynamic_percent: 0, requests: Some(0), ..spec }.check().unwrap_err().contains("requests = 0"));
    }
}
