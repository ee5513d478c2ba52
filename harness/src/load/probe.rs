//! The fine probe: a UDP datagram to the guest's echo port (7) every millisecond
//! or faster, each answered by the guest init. The longest stretch without an
//! echo across the switchover is the client-visible outage to about one probe
//! period, which HTTP requests (one every few ms at best, and a lost SYN waiting a
//! second) cannot resolve.

use super::timeline::{Gap, longest_gap};
use crate::network::Network;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use migbench_guest::protocol::ECHO_PORT;
use super::spec::MAX_PROBE_HZ as MAX_HZ;

/// How long after the migration (its window or its outage, whichever ends later)
/// losses count as the destination settling rather than as ordinary loss: a guest
/// resumed under TCG retranslates its code and stalls for tens of ms now and then.
pub const SETTLE_MS: f64 = 1000.0;

/// Marks our datagrams, so a stray packet is not counted as an echo.
const MAGIC: u64 = 0x6d69_6762_656e_6368; // "migbench"

/// A probe under way.
pub struct RunningProbe {
    hz: u32,
    stop: Arc<AtomicBool>,
    sender: Option<std::thread::JoinHandle<Vec<f64>>>,
    receiver: Option<std::thread::JoinHandle<Vec<Echo>>>,
}

/// A probe dropped on an error path stops (its threads end by themselves).
impl Drop for RunningProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One answered probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Echo {
    pub seq: u64,
    pub sent_ms: f64,
    pub received_ms: f64,
}

/// Starts probing `target` at `hz` per second; times are ms since `t0`.
pub fn start(target: SocketAddr, hz: u32, network: Option<&Network>, t0: Instant) -> Result<RunningProbe> {
    if !(1..=MAX_HZ).contains(&hz) {
        bail!("probe_hz = {hz}: give 1 to {MAX_HZ} probes per second (0 in a profile turns the probe off)");
    }
    let bind = || -> std::io::Result<UdpSocket> {
        let s = UdpSocket::bind(("0.0.0.0", 0))?;
        s.connect(target)?;
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        // Room for a few seconds of echoes, so a receiver descheduled on a busy
        // host counts them late rather than lost (best effort: rmem_max may cap it).
        let _ = migbench_guest::netif::grow_receive_buffer(&s, 4 << 20);
        Ok(s)
    };
    // The socket belongs to the namespace it was made in, whichever thread uses it.
    let socket = match network {
        Some(n) => n.enter(bind)?,
        None => bind(),
    }
    .with_context(|| format!("opening the probe's UDP socket towards {target}"))?;
    let rx = socket.try_clone().context("cloning the probe socket")?;
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64(1.0 / hz as f64);
    let sender = {
        let stop = stop.clone();
        std::thread::Builder::new().name("migbench-probe-tx".into()).spawn(move || {
            let mut sent = Vec::new();
            let mut seq = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let sent_ns = t0.elapsed().as_nanos() as u64;
                sent.push(sent_ns as f64 / 1e6);
                let mut msg = [0u8; 24];
                msg[..8].copy_from_slice(&MAGIC.to_be_bytes());
                msg[8..16].copy_from_slice(&seq.to_be_bytes());
                msg[16..].copy_from_slice(&sent_ns.to_be_bytes());
                // A send error (the guest's MAC not learnt yet, a full queue) is a lost probe.
                let _ = socket.send(&msg);
                seq += 1;
                // A fixed schedule: a late wake-up is not carried into the next period.
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            sent
        })?
    };
    let receiver = {
        let stop = stop.clone();
        std::thread::Builder::new().name("migbench-probe-rx".into()).spawn(move || {
            let mut echoes = Vec::new();
            let mut buf = [0u8; 64];
            // Keep listening a little after the stop, for echoes still on their way.
            let mut stop_at: Option<Instant> = None;
            loop {
                if stop.load(Ordering::Relaxed) && stop_at.is_none() {
                    stop_at = Some(Instant::now() + Duration::from_millis(100));
                }
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                match rx.recv(&mut buf) {
                    Ok(24) if buf[..8] == MAGIC.to_be_bytes() => {
                        let seq = u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes"));
                        let sent_ns = u64::from_be_bytes(buf[16..24].try_into().expect("8 bytes"));
                        echoes.push(Echo { seq, sent_ms: sent_ns as f64 / 1e6, received_ms: t0.elapsed().as_secs_f64() * 1000.0 });
                    }
                    _ => {}
                }
            }
            echoes
        })
    };
    let receiver = match receiver {
        Ok(r) => r,
        Err(e) => {
            // The sender is running already: stop it, or it would probe forever.
            stop.store(true, Ordering::Relaxed);
            return Err(e).context("starting the probe's receiver thread");
        }
    };
    Ok(RunningProbe { hz, stop, sender: Some(sender), receiver: Some(receiver) })
}

impl RunningProbe {
    pub fn stop(mut self) -> Result<ProbeLog> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.take().map(|t| t.join()).transpose().map_err(|_| anyhow::anyhow!("the probe sender panicked"))?;
        let echoes = self.receiver.take().map(|t| t.join()).transpose().map_err(|_| anyhow::anyhow!("the probe receiver panicked"))?;
        Ok(ProbeLog { hz: self.hz, sent_ms: sent.unwrap_or_default(), echoes: echoes.unwrap_or_default() })
    }
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeLog {
    pub hz: u32,
    /// When each probe went out (index = sequence number), ms.
    pub sent_ms: Vec<f64>,
    pub echoes: Vec<Echo>,
}

/// The probe's findings for a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    pub hz: u32,
    pub sent: u64,
    pub answered: u64,
    /// Probes never answered that were sent during the migration window or its
    /// outage (which can last past `RESUME` while the destination's path settles).
    pub lost_during: u64,
    /// Probes lost in the `SETTLE_MS` after the migration and its outage: the
    /// destination settling (stalls of a resumed guest), not the switchover.
    /// `None` in records made before it was counted (their `lost_outside` holds it).
    #[serde(default)]
    pub lost_settling: Option<u64>,
    /// Probes lost at any other time (a healthy path loses none).
    pub lost_outside: u64,
    /// Where probes were lost: runs of consecutive losses as (first sent, last sent),
    /// ms, at most 50.
    #[serde(default)]
    pub lost_stretches: Vec<(f64, f64)>,
    /// The longest stretch without an echo across the switchover (ms, about one
    /// probe period of resolution): the outage as the network sees it.
    pub outage: Option<Gap>,
    /// Round-trip time before the migration, ms.
    pub rtt_before_p50_ms: Option<f64>,
    pub rtt_before_max_ms: Option<f64>,
}

impl ProbeLog {
    /// Summarises against the migration window `window` (from, to) and the
    /// switchover inside it; `end_ms` is when the probe stopped.
    pub fn summarise(&self, window: (f64, f64), switchover: Option<(f64, f64)>, end_ms: f64) -> ProbeSummary {
        let mut received: Vec<f64> = self.echoes.iter().map(|e| e.received_ms).collect();
        received.sort_by(f64::total_cmp);
        let outage = longest_gap(&received, switchover.unwrap_or(window), end_ms);
        // The outage across the switchover can outlast `RESUME` (the destination's
        // network still catching up): probes lost in it belong to the migration too.
        // Its start is an arrival time, so allow a round trip before it.
        let in_migration = |t: f64| (t >= window.0 && t <= window.1) || outage.is_some_and(|g| t >= g.from_ms - 10.0 && t <= g.to_ms);
        let settled_from = outage.map_or(window.1, |g| g.to_ms.max(window.1));
        let settling = |t: f64| t > settled_from && t <= settled_from + SETTLE_MS;
        let answered: std::collections::HashSet<u64> = self.echoes.iter().map(|e| e.seq).collect();
        let (mut lost_during, mut lost_settling, mut lost_outside) = (0, 0, 0);
        let mut stretches: Vec<(f64, f64)> = Vec::new();
        let mut last_lost: Option<usize> = None;
        let mut open = false;
        for (seq, &t) in self.sent_ms.iter().enumerate() {
            // A probe sent in the last 100 ms before the stop may still have been on the wire.
            if answered.contains(&(seq as u64)) || t > end_ms - 100.0 {
                continue;
            }
            if in_migration(t) {
                lost_during += 1
            } else if settling(t) {
                lost_settling += 1
            } else {
                lost_outside += 1
            }
            // Extend the open stretch, or open a new one while there is room (a run
            // that found no room stays unrecorded rather than extending another).
            if last_lost.is_some_and(|l| l + 1 == seq) {
                if open {
                    if let Some(s) = stretches.last_mut() {
                        s.1 = t;
                    }
                }
            } else {
                open = stretches.len() < 50;
                if open {
                    stretches.push((t, t));
                }
            }
            last_lost = Some(seq);
        }
        let rtt: Vec<f64> = self.echoes.iter().filter(|e| e.sent_ms < window.0).map(|e| e.received_ms - e.sent_ms).collect();
        ProbeSummary {
            hz: self.hz,
            sent: self.sent_ms.len() as u64,
            answered: self.echoes.len() as u64,
            lost_during,
            lost_settling: Some(lost_settling),
            lost_outside,
            lost_stretches: stretches,
            outage,
            rtt_before_p50_ms: crate::stats::median(&rtt),
            rtt_before_max_ms: rtt.iter().copied().max_by(f64::total_cmp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback that goes silent for `pause` after `after`.
    fn echo_server(after: Duration, pause: Duration) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let t = start.elapsed();
                if t >= after && t < after + pause {
                    continue;
                }
                let _ = s.send_to(&buf[..n], from);
            }
        });
        addr
    }

    #[test]
    fn a_silent_stretch_is_measured_to_about_a_millisecond() {
        let addr = echo_server(Duration::from_millis(300), Duration::from_millis(200));
        let t0 = Instant::now();
        let probe = start(addr, 1000, None, t0).unwrap();
        std::thread::sleep(Duration::from_millis(900));
        let log = probe.stop().unwrap();
        let end = t0.elapsed().as_secs_f64() * 1000.0;
        // Roughly 1 kHz (a loaded CI machine may oversleep now and then).
        assert!(log.sent_ms.len() > 600 && log.sent_ms.len() < 1000, "{}", log.sent_ms.len());
        let s = log.summarise((250.0, 600.0), None, end);
        let outage = s.outage.expect("an outage");
        assert!(outage.ms >= 195.0 && outage.ms < 260.0, "{outage:?}");
        assert!(s.lost_during >= 150, "{s:?}");
        assert_eq!(s.lost_outside, 0, "{s:?}");
        // A silence that outlasts the window (the destination settling after RESUME)
        // still belongs to the migration.
        let late = log.summarise((250.0, 400.0), Some((390.0, 400.0)), end);
        assert_eq!(late.lost_outside, 0, "{late:?}");
        assert_eq!(late.lost_during, s.lost_during, "{late:?}");
        assert!(s.rtt_before_p50_ms.unwrap() < 20.0);
    }

    #[test]
    fn lost_probes_are_grouped_into_stretches() {
        let sent_ms: Vec<f64> = (0..300).map(|i| i as f64).collect();
        let lost = |i: u64| (10..15).contains(&i) || i == 50;
        let echoes = (0..300u64).filter(|i| !lost(*i)).map(|i| Echo { seq: i, sent_ms: i as f64, received_ms: i as f64 + 0.5 }).collect();
        let log = ProbeLog { hz: 1000, sent_ms, echoes };
        let s = log.summarise((100.0, 200.0), None, 300.0);
        assert_eq!(s.lost_stretches, vec![(10.0, 14.0), (50.0, 50.0)]);
        assert_eq!((s.lost_during, s.lost_settling, s.lost_outside), (0, Some(0), 6));
        // After the window: first the settling second, then ordinary loss again.
        let sent_ms: Vec<f64> = (0..3000).map(|i| i as f64).collect();
        let lost = |i: u64| (150..160).contains(&i) || (400..420).contains(&i) || (1300..1305).contains(&i);
        let echoes = (0..3000u64).filter(|i| !lost(*i)).map(|i| Echo { seq: i, sent_ms: i as f64, received_ms: i as f64 + 0.5 }).collect();
        let s = ProbeLog { hz: 1000, sent_ms, echoes }.summarise((100.0, 200.0), None, 3000.0);
        assert_eq!((s.lost_during, s.lost_settling, s.lost_outside), (10, Some(20), 5), "{s:?}");
    }

    #[test]
    fn bad_rates_are_refused() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(start(addr, 0, None, Instant::now()).err().unwrap().to_string().contains("probe_hz = 0"));
    }
}
