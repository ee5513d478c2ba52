//! A delay line: a link's round trip, jitter and loss emulated in user space, for
//! a kernel without netem (sch_netem). It is the test host's link only
//! ([`super::test_host::TestLink::DelayLine`]); a real host's link is shaped with
//! `tc` netem ([`super::tc`]).
//!
//! The link is a pair of tap devices (Ethernet frames, no packet-info header; a
//! tap rather than a tun so that the link is Ethernet with ARP as the veth pair is,
//! and the guest code's own `netif::open_tap` makes it), one end in our network
//! namespace and one in the test host's, and this relay between them in the
//! process that owns the test host. Per direction, one thread reads each frame
//! ("packet" below) from one tap, drops it at random with the direction's loss,
//! stamps it with when it is due (now + the delay, varied uniformly within ± the
//! jitter) and queues it; a second thread writes each packet to the other tap once
//! it is due. The queue is FIFO: a packet is never due before the one ahead of it (its
//! due time is raised to that one's), so unlike netem's jitter the line never
//! reorders; a round trip still lies within rtt ± jitter.
//!
//! The rate stays with `tc`: htb on each tap's egress, as on any interface, shapes
//! what enters the line. The delay line adds none of its own beyond its ceiling
//! (README: some hundreds of Mbit/s with 1500-byte packets on a small machine).
//! The MTU is the usual Ethernet 1500: no offloads cross a tap without a vnet
//! header, so every packet is a real one of at most 1500 bytes (1514 with its
//! Ethernet header, as the counters count it).
//!
//! **Control:** an abstract unix socket named after the near device,
//! `@migbench-delay-line/DEV` (nothing on disk; it goes with the process), takes one
//! JSON [`Request`] a line and answers each with one JSON [`Reply`] line: set each
//! direction's delay, jitter and loss, or read them with the counters (packets and
//! bytes passed, packets delayed, dropped by the loss asked for, and discarded by
//! the line itself: a full queue, or a far end that is down). `migbench` finds the
//! line by the interface its route to the far host leaves by
//! (`machine::remote_link`).
//!
//! Everything goes with the [`DelayLine`]: its threads stop, and its tap
//! descriptors close, which deletes both devices (they are not persistent), also
//! when the process is SIGKILLed.

use super::shape::{Egress, MAX_DELAY_US};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The taps' MTU: Ethernet's, as the veth link has.
pub const MTU: u32 = 1500;
/// At most this many packets wait in one direction (30 MB of full-size ones: at
/// 1 Gbit/s a quarter of a second); past it a packet is discarded.
const MAX_HELD: u64 = 20_000;
/// How often an idle thread looks whether it is to stop.
const POLL: Duration = Duration::from_millis(100);
/// How long a control client waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The control socket's abstract name for the line whose near device is `dev`.
pub fn socket_name(dev: &str) -> String {
    format!("migbench-delay-line/{dev}")
}

/// What one direction of the line does to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Impairment {
    /// Held this long on average, µs.
    pub delay_us: u64,
    /// The delay varies uniformly within ± this, µs (at most the delay).
    pub jitter_us: u64,
    /// The share of packets dropped, parts per million.
    pub loss_ppm: u32,
}

impl Impairment {
    /// Nothing: every packet passes at once.
    pub const NONE: Impairment = Impairment { delay_us: 0, jitter_us: 0, loss_ppm: 0 };

    /// What netem would do on the egress `e` (its rate is not the line's: tc's).
    pub fn of(e: &Egress) -> Impairment {
        Impairment { delay_us: e.delay.us, jitter_us: e.jitter.us, loss_ppm: e.loss.ppm }
    }

    /// Why the line cannot do this, if it cannot.
    pub fn refusal(&self) -> Option<String> {
        if self.jitter_us > self.delay_us {
            Some(format!("jitter {} µs exceeds the delay {} µs: a packet cannot leave before it came", self.jitter_us, self.delay_us))
        } else if self.delay_us > MAX_DELAY_US {
            Some(format!("delay {} µs is more than {MAX_DELAY_US} µs", self.delay_us))
        } else if self.loss_ppm > 1_000_000 {
            Some(format!("loss {} ppm is more than all packets", self.loss_ppm))
        } else {
            None
        }
    }
}

/// Both directions' impairments: towards the far end (what the near device sends)
/// and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Settings {
    pub toward_far: Impairment,
    pub toward_near: Impairment,
}

/// One direction's counters since the line started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirectionCounters {
    /// Written to the other end.
    pub passed_packets: u64,
    pub passed_bytes: u64,
    /// Held for a delay of more than zero.
    pub delayed_packets: u64,
    /// Dropped by the loss asked for.
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// Lost by the line itself: its queue full, or the other end down.
    pub discarded_packets: u64,
}

/// Both directions' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    pub toward_far: DirectionCounters,
    pub toward_near: DirectionCounters,
}

/// A control request, one JSON line: `{"op":"set","toward_far":{…},"toward_near":{…}}`
/// or `{"op":"read"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Set { toward_far: Impairment, toward_near: Impairment },
    Read,
}

/// The line as it is (after a request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The near and far devices.
    pub near: String,
    pub far: String,
    pub settings: Settings,
    pub counters: Counters,
}

/// The answer to a request: `{"ok":{…state…}}` or `{"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(State),
    Error(String),
}

/// Sends `request` to the delay line whose near device is `dev`; `None` when no
/// line answers there (nothing listens on its socket).
pub fn call(dev: &str, request: &Request) -> Result<Option<State>> {
    let name = socket_name(dev);
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).with_context(|| format!("the socket name @{name}"))?;
    let stream = match UnixStream::connect_addr(&addr) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("connecting to the delay line @{name}")),
    };
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).with_context(|| format!("writing to the delay line @{name}"))?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).with_context(|| format!("reading the delay line @{name}'s answer"))?;
    match serde_json::from_str::<Reply>(&answer).with_context(|| format!("the delay line @{name} answered {answer:?}"))? {
        Reply::Ok(state) => Ok(Some(state)),
        Reply::Error(e) => bail!("the delay line @{name} refused {request:?}: {e}"),
    }
}

/// Sets both directions of the line on `dev` (see [`call`]).
pub fn set(dev: &str, settings: Settings) -> Result<Option<State>> {
    call(dev, &Request::Set { toward_far: settings.toward_far, toward_near: settings.toward_near })
}

/// The line on `dev` as it is (see [`call`]).
pub fn read(dev: &str) -> Result<Option<State>> {
    call(dev, &Request::Read)
}

/// One direction's settings and counters, shared by its threads and the control.
#[derive(Default)]
struct Direction {
    delay_us: AtomicU64,
    jitter_us: AtomicU64,
    loss_ppm: AtomicU32,
    /// Packets queued, not yet written.
    held: AtomicU64,
    passed_packets: AtomicU64,
    passed_bytes: AtomicU64,
    delayed_packets: AtomicU64,
    dropped_packets: AtomicU64,
    dropped_bytes: AtomicU64,
    discarded_packets: AtomicU64,
}

impl Direction {
    fn impairment(&self) -> Impairment {
        Impairment { delay_us: self.delay_us.load(Relaxed), jitter_us: self.jitter_us.load(Relaxed), loss_ppm: self.loss_ppm.load(Relaxed) }
    }

    fn set(&self, i: Impairment) {
        self.delay_us.store(i.delay_us, Relaxed);
        self.jitter_us.store(i.jitter_us, Relaxed);
        self.loss_ppm.store(i.loss_ppm, Relaxed);
    }

    fn counters(&self) -> DirectionCounters {
        DirectionCounters {
            passed_packets: self.passed_packets.load(Relaxed),
            passed_bytes: self.passed_bytes.load(Relaxed),
            delayed_packets: self.delayed_packets.load(Relaxed),
            dropped_packets: self.dropped_packets.load(Relaxed),
            dropped_bytes: self.dropped_bytes.load(Relaxed),
            discarded_packets: self.discarded_packets.load(Relaxed),
        }
    }
}

struct Shared {
    near: String,
    far: String,
    toward_far: Direction,
    toward_near: Direction,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> State {
        State {
            near: self.near.clone(),
            far: self.far.clone(),
            settings: Settings { toward_far: self.toward_far.impairment(), toward_near: self.toward_near.impairment() },
            counters: Counters { toward_far: self.toward_far.counters(), toward_near: self.toward_near.counters() },
        }
    }

    fn answer(&self, line: &str) -> Reply {
        match serde_json::from_str::<Request>(line) {
            Err(e) => Reply::Error(format!("{e}: send {{\"op\":\"read\"}} or {{\"op\":\"set\",\"toward_far\":{{\"delay_us\":…,\"jitter_us\":…,\"loss_ppm\":…}},\"toward_near\":{{…}}}}")),
            Ok(Request::Read) => Reply::Ok(self.state()),
            Ok(Request::Set { toward_far, toward_near }) => {
                for (name, i) in [("toward_far", toward_far), ("toward_near", toward_near)] {
                    if let Some(why) = i.refusal() {
                        return Reply::Error(format!("{name}: {why}"));
                    }
                }
                self.toward_far.set(toward_far);
                self.toward_near.set(toward_near);
                Reply::Ok(self.state())
            }
        }
    }
}

/// A running delay line between two tap devices. See the module's text.
pub struct DelayLine {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayLine {
    /// Relays between the tap `near` (in our namespace, named `near_name`) and
    /// `far` (anywhere), passing everything at once until told otherwise; serves
    /// its control socket ([`socket_name`] of `near_name`).
    pub fn start(near_name: &str, near: File, far_name: &str, far: File) -> Result<DelayLine> {
        let name = socket_name(near_name);
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).with_context(|| format!("the socket name @{name}"))?;
        let listener = UnixListener::bind_addr(&addr).with_context(|| format!("binding the delay line's control socket @{name} (another line on {near_name}?)"))?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            near: near_name.into(),
            far: far_name.into(),
            toward_far: Direction::default(),
            toward_near: Direction::default(),
            stop: AtomicBool::new(false),
        });
        let (near, far) = (Arc::new(near), Arc::new(far));
        let mut line = DelayLine { shared: shared.clone(), threads: Vec::new() };
        // From here on, dropping `line` stops what was started.
        for (toward_far, from, to) in [(true, &near, &far), (false, &far, &near)] {
            let (tx, rx) = mpsc::channel();
            let (s, from) = (shared.clone(), from.clone());
            line.threads.push(spawn(&format!("mb-dl-read-{}", if toward_far { "far" } else { "near" }), move || read_side(&s, toward_far, &from, tx))?);
            let (s, to) = (shared.clone(), to.clone());
            line.threads.push(spawn(&format!("mb-dl-write-{}", if toward_far { "far" } else { "near" }), move || write_side(&s, toward_far, &to, rx))?);
        }
        let s = shared.clone();
        line.threads.push(spawn("mb-dl-control", move || serve(&s, &listener))?);
        Ok(line)
    }

    /// The line's settings and counters now.
    pub fn state(&self) -> State {
        self.shared.state()
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The last handles of the taps go with the threads: both devices are deleted.
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f).with_context(|| format!("starting the delay line's thread {name}"))
}

/// Whether `fd` has something to read within `timeout`; an error or hang-up on
/// it (a device gone with its namespace) counts as readable, so that the read
/// that follows fails and its reader ends instead of polling it for ever.
fn readable(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}

/// Reads packets from `from`, drops the configured share, stamps the rest with
/// when they are due and queues them for [`write_side`].
fn read_side(s: &Shared, toward_far: bool, from: &File, tx: mpsc::Sender<(Instant, Vec<u8>)>) {
    let d = if toward_far { &s.toward_far } else { &s.toward_near };
    let mut rng = Rng::seeded(toward_far as u64);
    let mut buf = vec![0u8; 65536];
    let mut last_due = Instant::now();
    while !s.stop.load(Relaxed) {
        if !readable(from, POLL) {
            continue;
        }
        let n = match (&*from).read(&mut buf) {
            // A tap never reads empty while its device lives.
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) => continue,
            Err(_) => return,
        };
        let now = Instant::now();
        let i = d.impairment();
        if i.loss_ppm > 0 && rng.below(1_000_000) < i.loss_ppm as u64 {
            d.dropped_packets.fetch_add(1, Relaxed);
            d.dropped_bytes.fetch_add(n as u64, Relaxed);
            continue;
        }
        if d.held.load(Relaxed) >= MAX_HELD {
            d.discarded_packets.fetch_add(1, Relaxed);
            continue;
        }
        let hold_us = hold(i, &mut rng);
        if hold_us > 0 {
            d.delayed_packets.fetch_add(1, Relaxed);
        }
        // FIFO: never due before the packet ahead.
        let due = (now + Duration::from_micros(hold_us)).max(last_due);
        last_due = due;
        d.held.fetch_add(1, Relaxed);
        if tx.send((due, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// One packet's delay, µs: the delay varied uniformly within ± the jitter.
fn hold(i: Impairment, rng: &mut Rng) -> u64 {
    if i.jitter_us == 0 {
        return i.delay_us;
    }
    (i.delay_us - i.jitter_us.min(i.delay_us)) + rng.below(2 * i.jitter_us + 1)
}

/// Writes each queued packet to `to` once it is due.
fn write_side(s: &Shared, toward_far: bool, to: &File, rx: mpsc::Receiver<(Instant, Vec<u8>)>) {
    let d = if toward_far { &s.toward_far } else { &s.toward_near };
    loop {
        let (due, packet) = match rx.recv_timeout(POLL) {
            Ok(p) => p,
            Err(mpsc::RecvTimeoutError::Timeout) if s.stop.load(Relaxed) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // In pieces: a drop of the line does not wait out a long delay.
        loop {
            let now = Instant::now();
            if due <= now || s.stop.load(Relaxed) {
                break;
            }
            std::thread::sleep((due - now).min(POLL));
        }
        d.held.fetch_sub(1, Relaxed);
        match (&*to).write(&packet) {
            Ok(_) => {
                d.passed_packets.fetch_add(1, Relaxed);
                d.passed_bytes.fetch_add(packet.len() as u64, Relaxed);
            }
            // The far end down (a cut link), or the kernel refusing the packet.
            Err(_) => {
                d.discarded_packets.fetch_add(1, Relaxed);
            }
        }
        if s.stop.load(Relaxed) {
            return;
        }
    }
}

/// Answers control connections, one at a time, one reply a request line.
fn serve(s: &Shared, listener: &UnixListener) {
    while !s.stop.load(Relaxed) {
        if !readable(listener, POLL) {
            continue;
        }
        let Ok((stream, _)) = listener.accept() else { continue };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
        for line in BufReader::new(&stream).lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let mut answer = serde_json::to_string(&s.answer(&line)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            answer.push('\n');
            if (&stream).write_all(answer.as_bytes()).is_err() {
                break;
            }
        }
    }
}

/// splitmix64: enough for choosing which packets to drop and how long to hold them.
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        Rng(t ^ (std::process::id() as u64) << 32 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0; the bias is below 2^-40 for the n used here).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::shape::{End, LinkShape};

    #[test]
    fn each_direction_takes_its_egress_share_as_netem_would() {
        let s: LinkShape = "rate=100Mbit,rtt=21ms,jitter=3ms,loss=0.5%".parse().unwrap();
        let (n, f) = (Impairment::of(&s.egress(End::Near)), Impairment::of(&s.egress(End::Far)));
        assert_eq!(n, Impairment { delay_us: 10_500, jitter_us: 1_500, loss_ppm: 5_000 });
        assert_eq!(f, Impairment { delay_us: 10_500, jitter_us: 1_500, loss_ppm: 5_000 });
        let s: LinkShape = "rtt=1.001ms,jitter=0.003ms".parse().unwrap();
        assert_eq!(Impairment::of(&s.egress(End::Near)).delay_us + Impairment::of(&s.egress(End::Far)).delay_us, 1001);
        assert!(n.refusal().is_none() && Impairment::NONE.refusal().is_none());
        assert!(Impairment { delay_us: 1, jitter_us: 2, loss_ppm: 0 }.refusal().unwrap().contains("exceeds the delay"));
        assert!(Impairment { delay_us: 0, jitter_us: 0, loss_ppm: 1_000_001 }.refusal().is_some());
    }

    #[test]
    fn a_packet_is_held_within_the_jitter_of_the_delay() {
        let mut rng = Rng::seeded(7);
        let i = Impairment { delay_us: 1000, jitter_us: 100, loss_ppm: 0 };
        let holds: Vec<u64> = (0..10_000).map(|_| hold(i, &mut rng)).collect();
        assert!(holds.iter().all(|h| (900..=1100).contains(h)));
        // Both ends of the range are reached, and the middle is the delay.
        assert!(holds.iter().any(|h| *h < 910) && holds.iter().any(|h| *h > 1090));
        let mean = holds.iter().sum::<u64>() as f64 / holds.len() as f64;
        assert!((mean - 1000.0).abs() < 5.0, "{mean}");
        assert_eq!(hold(Impairment { delay_us: 20, jitter_us: 0, loss_ppm: 0 }, &mut rng), 20);
    }

    #[test]
    fn requests_and_replies_are_json_lines() {
        let r: Request = serde_json::from_str(r#"{"op":"set","toward_far":{"delay_us":10000,"jitter_us":0,"loss_ppm":5000},"toward_near":{"delay_us":10000,"jitter_us":0,"loss_ppm":0}}"#).unwrap();
        assert_eq!(r, Request::Set { toward_far: Impairment { delay_us: 10_000, jitter_us: 0, loss_ppm: 5000 }, toward_near: Impairment { delay_us: 10_000, jitter_us: 0, loss_ppm: 0 } });
        assert_eq!(serde_json::to_string(&Request::Read).unwrap(), r#"{"op":"read"}"#);
        let s = Shared { near: "a".into(), far: "b".into(), toward_far: Direction::default(), toward_near: Direction::default(), stop: AtomicBool::new(false) };
        let Reply::Ok(state) = s.answer(r#"{"op":"set","toward_far":{"delay_us":5,"jitter_us":1,"loss_ppm":2},"toward_near":{"delay_us":0,"jitter_us":0,"loss_ppm":0}}"#) else { panic!() };
        assert_eq!(state.settings.toward_far, Impairment { delay_us: 5, jitter_us: 1, loss_ppm: 2 });
        let Reply::Error(e) = s.answer(r#"{"op":"set","toward_far":{"delay_us":1,"jitter_us":5,"loss_ppm":0},"toward_near":{"delay_us":0,"jitter_us":0,"loss_ppm":0}}"#) else { panic!() };
        assert!(e.contains("toward_far") && e.contains("exceeds the delay"), "{e}");
        assert_eq!(s.toward_far.impairment().delay_us, 5, "a refused setting changes nothing");
        let Reply::Error(e) = s.answer("hello") else { panic!() };
        assert!(e.contains(r#"{"op":"read"}"#), "{e}");
    }

    #[test]
    fn no_line_is_none() {
        assert_eq!(read("mb-no-such-dev").unwrap(), None);
    }

    #[test]
    fn the_rng_is_roughly_uniform() {
        let mut rng = Rng::seeded(1);
        let hits = (0..1_000_000).filter(|_| rng.below(1_000_000) < 5_000).count();
        assert!((4_000..6_000).contains(&hits), "{hits} of 1e6 below 0.5%");
    }
}
