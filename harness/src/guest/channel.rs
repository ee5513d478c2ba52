//! The host end of the guest channel: a unix socket that QEMU connects to the
//! guest's virtio-serial port. One reader task per channel records every message
//! with the harness's monotonic arrival time.

use anyhow::{Result, bail};
use migbench_guest::protocol::{Message, Order};
use migbench_guest::stamp::Tally;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;

/// One heartbeat as the harness received it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    pub at: Instant,
    pub seq: u64,
    pub guest_ns: u64,
}

/// One progress report of the guest's workload, as the harness received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSample {
    pub at: Instant,
    pub unit: String,
    /// Work done since the workload started, in `unit`.
    pub total: u64,
    /// The guest's CLOCK_MONOTONIC when it counted `total`, ns.
    pub guest_ns: u64,
}

/// The guest kernel's own CPU accounting at one moment, as the harness received it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTicks {
    pub at: Instant,
    pub busy: u64,
    pub total: u64,
    pub steal: u64,
    pub cpus: u32,
}

/// The guest kernel's memory at one moment, KiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemSample {
    pub at: Instant,
    pub total_kib: u64,
    pub free_kib: u64,
}

/// What the guest believes it used over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuestCpu {
    /// Busy time, % of one vCPU (2 busy vCPUs read 200 %), like the host's figures.
    pub percent: f64,
    /// Time the guest's kernel says the hypervisor took from it (steal), % of one vCPU.
    pub steal_percent: f64,
}

#[derive(Debug, Clone)]
pub struct Ready {
    pub at: Instant,
    pub boot_ms: u64,
    pub kernel: String,
}

#[derive(Default)]
struct Log {
    ready: Option<Ready>,
    /// When a parked guest said PARKED.
    parked: Option<Instant>,
    beats: Vec<Beat>,
    rates: Vec<RateSample>,
    cpu: Vec<CpuTicks>,
    mem: Option<MemSample>,
    other: Vec<String>,
    /// The workload's failed self-checks (`FAILED` lines), as sent.
    failures: Vec<String>,
    /// Answers to `VERIFY id`, by id.
    integrity: HashMap<u64, Option<Tally>>,
    closed: bool,
}

/// A connected guest channel. Dropping it stops its reader.
pub struct GuestChannel {
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
    reader: tokio::task::JoinHandle<()>,
    /// Orders to the guest.
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// The id of the last `VERIFY` sent.
    last_verify: std::sync::atomic::AtomicU64,
}

impl Drop for GuestChannel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl GuestChannel {
    /// Connects to the socket QEMU listens on, retrying until `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<GuestChannel> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    bail!("could not connect to the guest channel {}: {e}", path.display())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let log = Arc::new(Mutex::new(Log::default()));
        let changed = Arc::new(Notify::new());
        let (read, write) = stream.into_split();
        let reader = tokio::spawn(read_loop(read, log.clone(), changed.clone()));
        Ok(GuestChannel { log, changed, reader, writer: tokio::sync::Mutex::new(write), last_verify: Default::default() })
    }

    /// Waits until `pred` holds for the log, or `timeout` passes.
    async fn wait_for<T>(&self, timeout: Duration, mut pred: impl FnMut(&Log) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = pred(&self.log.lock().unwrap()) {
                return Some(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return pred(&self.log.lock().unwrap());
            }
        }
    }

    /// Waits for the guest's READY.
    pub async fn wait_ready(&self, timeout: Duration) -> Option<Ready> {
        self.wait_for(timeout, |l| l.ready.clone()).await
    }

    /// Waits for a parked guest's PARKED (`GuestSpec::park`).
    pub async fn wait_parked(&self, timeout: Duration) -> Option<Instant> {
        self.wait_for(timeout, |l| l.parked).await
    }

    /// Gives a parked guest its orders (it then comes up as if booted with them and says READY).
    pub async fn give_orders(&self, orders: &migbench_guest::orders::Orders) -> Result<()> {
        self.write_line(&orders.to_line()).await
    }

    /// Waits for the first heartbeat whose sequence number is above `seq`.
    pub async fn wait_beat_after(&self, seq: u64, timeout: Duration) -> Option<Beat> {
        self.wait_for(timeout, |l| l.beats.iter().find(|b| b.seq > seq).copied()).await
    }

    pub fn last_beat(&self) -> Option<Beat> {
        self.log.lock().unwrap().beats.last().copied()
    }

    /// Every heartbeat received so far, in arrival order.
    pub fn beats(&self) -> Vec<Beat> {
        self.log.lock().unwrap().beats.clone()
    }

    /// Every workload progress report received so far.
    pub fn rates(&self) -> Vec<RateSample> {
        self.log.lock().unwrap().rates.clone()
    }

    /// Every CPU accounting report received so far.
    pub fn cpu_ticks(&self) -> Vec<CpuTicks> {
        self.log.lock().unwrap().cpu.clone()
    }

    /// The guest's latest memory report (one a second).
    pub fn memory(&self) -> Option<MemSample> {
        self.log.lock().unwrap().mem
    }

    /// The workload's failed self-checks the guest reported on this channel.
    pub fn workload_failures(&self) -> Vec<String> {
        self.log.lock().unwrap().failures.clone()
    }

    async fn send(&self, order: Order) -> Result<()> {
        self.write_line(&order.to_string()).await
    }

    async fn write_line(&self, line: &str) -> Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(w.flush().await?)
    }

    /// Asks the guest to verify its memory; returns the request's id for
    /// [`GuestChannel::verification`]. The guest sends every failed self-check
    /// before its answer, so [`GuestChannel::workload_failures`] is complete after it.
    pub async fn ask_verify(&self) -> Result<u64> {
        let id = self.last_verify.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.send(Order::Verify { id }).await?;
        Ok(id)
    }

    /// Waits for the answer to verification `id`: `Ok(None)` if the guest's
    /// workload owns no stamped memory.
    pub async fn verification(&self, id: u64, timeout: Duration) -> Result<Option<Tally>> {
        match self.wait_for(timeout, |l| l.integrity.get(&id).copied()).await {
            Some(answer) => Ok(answer),
            None => bail!("the guest did not answer the memory verification within {} s", timeout.as_secs()),
        }
    }

    /// [`GuestChannel::ask_verify`], then [`GuestChannel::verification`].
    pub async fn verify_memory(&self, timeout: Duration) -> Result<Option<Tally>> {
        let id = self.ask_verify().await?;
        self.verification(id, timeout).await
    }

    /// Test only: has the guest flip a bit of page `page` of its memory dirtier's
    /// set (a guest obeys only when booted with `GuestSpec::test_orders`) and waits
    /// for its word on it.
    pub async fn test_only_corrupt_page(&self, page: u64, timeout: Duration) -> Result<String> {
        self.send(Order::TestCorrupt { page }).await?;
        let said = |l: &Log| l.other.iter().find(|t| t.contains(&format!("page {page}")) && (t.contains("test order") || t.contains("refusing"))).cloned();
        self.wait_for(timeout, said).await.ok_or_else(|| anyhow::anyhow!("the guest did not answer the test order within {} s", timeout.as_secs()))
    }

    /// Lines the guest sent that were not READY or heartbeats (its LOG messages and anything unknown).
    pub fn other_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().other.clone()
    }
}

async fn read_loop(stream: tokio::net::unix::OwnedReadHalf, log: Arc<Mutex<Log>>, changed: Arc<Notify>) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        let line = lines.next_line().await;
        let at = Instant::now();
        {
            let mut l = log.lock().unwrap();
            match line {
                Ok(Some(line)) => match Message::parse(&line) {
                    Message::Heartbeat { seq, guest_ns } => l.beats.push(Beat { at, seq, guest_ns }),
                    Message::Ready { boot_ms, kernel } => l.ready = Some(Ready { at, boot_ms, kernel }),
                    Message::Parked { .. } => l.parked = Some(at),
                    Message::Rate { unit, total, guest_ns } => l.rates.push(RateSample { at, unit, total, guest_ns }),
                    Message::Cpu { busy, total, steal, cpus, .. } => l.cpu.push(CpuTicks { at, busy, total, steal, cpus }),
                    Message::Mem { total_kib, free_kib, .. } => l.mem = Some(MemSample { at, total_kib, free_kib }),
                    Message::Failed(text) => l.failures.push(text),
                    Message::Integrity { id, tally } => {
                        l.integrity.insert(id, tally);
                    }
                    Message::Log(text) | Message::Other(text) => l.other.push(text),
                },
                // A line that is not UTF-8 (a garbled write) is skipped, not fatal.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
                Ok(None) | Err(_) => {
                    l.closed = true;
                    drop(l);
                    changed.notify_waiters();
                    return;
                }
            }
        }
        changed.notify_waiters();
    }
}

/// The longest interval between consecutive heartbeats, merged over several
/// channels (source and destination), counting only beats that arrived in
/// `[from, to]`. This is `guest_gap_ms`.
pub fn longest_gap(channels: &[Vec<Beat>], from: Instant, to: Instant) -> Option<Duration> {
    let mut times: Vec<Instant> =
        channels.iter().flatten().map(|b| b.at).filter(|t| *t >= from && *t <= to).collect();
    times.sort();
    times.windows(2).map(|w| w[1] - w[0]).max()
}

/// The workload's rate (units per second of harness time) over `[from, to]`, from
/// the reports of several channels merged (the guest's counter lives in its memory,
/// so it carries on across a migration). Needs two reports in the window.
pub fn rate_between(channels: &[Vec<RateSample>], from: Instant, to: Instant) -> Option<(String, f64)> {
    let mut s: Vec<&RateSample> = channels.iter().flatten().filter(|r| r.at >= from && r.at <= to).collect();
    // In the guest's order when it gave its clock: a late burst from the source can
    // be read after the destination's first reports.
    if s.iter().all(|r| r.guest_ns > 0) {
        s.sort_by_key(|r| r.guest_ns);
    } else {
        s.sort_by_key(|r| r.at);
    }
    let (first, last) = (s.first()?, s.last()?);
    // The time between the two counts is the guest's own: the harness receives
    // reports late and in bursts (a guest stalled by the migration, a busy host), so
    // two reports 100 ms apart in the guest can arrive 1 ms apart. The receipt times
    // stand in when the guest clock gives no usable span.
    let secs = if last.guest_ns > first.guest_ns {
        (last.guest_ns - first.guest_ns) as f64 / 1e9
    } else {
        (last.at - first.at).as_secs_f64()
    };
    (secs > 0.0 && last.total >= first.total).then(|| (last.unit.clone(), (last.total - first.total) as f64 / secs))
}

/// The guest's own view of its CPU use over `[from, to]`, from the reports of several
/// channels merged (its tick counters carry on across a migration). The share of
/// ticks is scaled by the guest's CPU count. Needs two reports in the window.
pub fn guest_cpu_between(channels: &[Vec<CpuTicks>], from: Instant, to: Instant) -> Option<GuestCpu> {
    let mut s: Vec<&CpuTicks> = channels.iter().flatten().filter(|c| c.at >= from && c.at <= to).collect();
    s.sort_by_key(|c| c.at);
    let (a, b) = (s.first()?, s.last()?);
    let total = b.total.checked_sub(a.total).filter(|t| *t > 0)?;
    let share = |d: u64| d as f64 / total as f64 * b.cpus as f64 * 100.0;
    Some(GuestCpu { percent: share(b.busy.checked_sub(a.busy)?), steal_percent: share(b.steal.saturating_sub(a.steal)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_merges_channels_and_respects_window() {
        let t0 = Instant::now();
        let b = |ms: u64, seq| Beat { at: t0 + Duration::from_millis(ms), seq, guest_ns: 0 };
        let src = vec![b(0, 1), b(10, 2), b(20, 3)];
        let dst = vec![b(95, 4), b(105, 5)];
        assert_eq!(longest_gap(&[src.clone(), dst.clone()], t0, t0 + Duration::from_secs(1)), Some(Duration::from_millis(75)));
        // Outside the window the big gap does not count.
        assert_eq!(longest_gap(&[src, dst], t0, t0 + Duration::from_millis(20)), Some(Duration::from_millis(10)));
        assert_eq!(longest_gap(&[], t0, t0), None);
    }

    #[test]
    fn rates_merge_channels() {
        let t0 = Instant::now();
        let r = |ms: u64, total| RateSample { at: t0 + Duration::from_millis(ms), unit: "flop".into(), total, guest_ns: ms * 1_000_000 };
        let src = vec![r(0, 0), r(100, 10)];
        let dst = vec![r(400, 40)];
        let (unit, rate) = rate_between(&[src.clone(), dst], t0, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(unit, "flop");
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        assert!(rate_between(&[src], t0, t0).is_none(), "one report is no rate");
        // Reports that arrive in a burst are timed by the guest's clock: 400 ms of
        // guest time, received 2 ms apart, is still 100 flop/s.
        let late = vec![RateSample { at: t0 + Duration::from_millis(500), unit: "flop".into(), total: 0, guest_ns: 0 }, RateSample {
            at: t0 + Duration::from_millis(502),
            unit: "flop".into(),
            total: 40,
            guest_ns: 400_000_000,
        }];
        let (_, rate) = rate_between(std::slice::from_ref(&late), t0, t0 + Duration::from_secs(1)).unwrap();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        // The source's last report read after the destination's first still counts in order.
        let dst = vec![RateSample { at: t0 + Duration::from_millis(501), unit: "flop".into(), total: 50, guest_ns: 500_000_000 }];
        let (_, rate) = rate_between(&[late, dst], t0, t0 + Duration::from_secs(1)).unwrap();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        // Without a usable guest clock (an old guest sends 0), receipt times stand in.
        let old = |ms: u64, total| RateSample { at: t0 + Duration::from_millis(ms), unit: "flop".into(), total, guest_ns: 7 };
        let (_, rate) = rate_between(&[vec![old(0, 0), old(200, 20)]], t0, t0 + Duration::from_secs(1)).unwrap();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn guest_cpu_is_a_share_of_its_vcpus() {
        let t0 = Instant::now();
        let c = |ms: u64, busy, total, steal| CpuTicks { at: t0 + Duration::from_millis(ms), busy, total, steal, cpus: 2 };
        // 2 vCPUs, 100 ticks each second: 150 busy ticks of 200 = 1.5 vCPUs.
        let src = vec![c(0, 1000, 5000, 0), c(500, 1070, 5100, 2)];
        let dst = vec![c(1000, 1150, 5200, 10)];
        let g = guest_cpu_between(&[src.clone(), dst], t0, t0 + Duration::from_secs(2)).unwrap();
        assert!((g.percent - 150.0).abs() < 1e-9, "{g:?}");
        assert!((g.steal_percent - 10.0).abs() < 1e-9, "{g:?}");
        assert!(guest_cpu_between(&[src], t0, t0).is_none(), "one report is no window");
        // A counter that goes backwards (a different guest) is no figure.
        assert!(guest_cpu_between(&[vec![c(0, 50, 100, 0), c(10, 10, 200, 0)]], t0, t0 + Duration::from_secs(1)).is_none());
    }

    #[tokio::test]
    async fn reads_lines_from_a_socket() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chan.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"LOG hello\nREADY boot_ms=5 kernel=k\nHB 1 10\n\xff\xfe\nHB 2 20\n").await.unwrap();
            s
        });
        let ch = GuestChannel::connect(&path, Duration::from_secs(5)).await.unwrap();
        let ready = ch.wait_ready(Duration::from_secs(5)).await.unwrap();
        assert_eq!((ready.boot_ms, ready.kernel.as_str()), (5, "k"));
        let beat = ch.wait_beat_after(1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(beat.seq, 2);
        assert_eq!(ch.other_lines(), ["hello"]);
        drop(server.await.unwrap());
        assert!(ch.wait_for(Duration::from_secs(5), |l| l.closed.then_some(())).await.is_some());
    }
}
