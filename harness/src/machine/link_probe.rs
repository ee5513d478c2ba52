//! What the link to a remote host carries: one TCP stream from this host to the
//! far host's migration address, as a migration's would go, sent flat out for a few
//! seconds and counted where it arrives. The far end is a sink its agent opens
//! ([`sink`]); the rate is what the sink received over the time between its first
//! and last byte, on the far host's one clock.
//!
//! A single stream measures what one migration stream gets (TCP's window, the
//! link's rate and round trip, the shaping on it), which is the figure `plan`
//! predicts a migration at; it is not the link's capacity under many streams.
//!
//! The same sink answers [`reaches`]: whether one remote host reaches another's
//! migration address (a cluster's guest moving between them streams straight there).

use super::agent::{CALL_TIMEOUT, Request};
use super::remote::RemoteHost;
use crate::migration::link_speed::LinkSpeed;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long the sink waits for the stream to connect, and for each read.
const SINK_WAIT: Duration = Duration::from_secs(15);
/// The least a probe may send for: shorter ones mostly measure TCP's slow start.
pub const MIN_SECONDS: f64 = 0.5;

/// What the far end received.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Received {
    pub bytes: u64,
    /// From the first byte read to the last, on the far host's clock.
    pub seconds: f64,
}

/// One measurement of the link to a host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkProbe {
    /// `ssh://user@host`.
    pub host: String,
    /// Where the stream went (the host's migration address) and from.
    pub address: String,
    pub from: String,
    /// How long this host sent for.
    pub sent_for_s: f64,
    pub received: Received,
}

impl LinkProbe {
    /// The rate the far end received at, bytes/s: the one place it is computed.
    pub fn bytes_per_sec(&self) -> f64 {
        if self.received.seconds > 0.0 { self.received.bytes as f64 / self.received.seconds } else { 0.0 }
    }

    /// The same rate in Mbit/s.
    pub fn mbit(&self) -> f64 {
        self.bytes_per_sec() * 8.0 / 1e6
    }

    /// The measured rate as a link speed (`93.8Mbit`), to plan with.
    pub fn speed(&self) -> LinkSpeed {
        let mbit = self.mbit();
        format!("{mbit:.1}Mbit").parse().unwrap_or(LinkSpeed { text: format!("{mbit:.1}Mbit"), bytes_per_sec: Some(self.bytes_per_sec() as u64) })
    }
}

/// Sends to `host`'s migration address for `seconds` and has its agent count what
/// arrived.
pub fn measure(host: &RemoteHost, seconds: f64) -> Result<LinkProbe> {
    if !(MIN_SECONDS..=600.0).contains(&seconds) {
        bail!("a link probe of {seconds} s: give between {MIN_SECONDS} and 600 seconds");
    }
    let address = host.migrate_address.clone();
    let port: u16 = host.agent.ask(&Request::Sink { address: address.clone() }, CALL_TIMEOUT).with_context(|| format!("opening a sink on {address} on {}", host.ssh.target))?;
    let ip = crate::host::ssh::address_ip(&address)?;
    let sent = send((ip, port).into(), Duration::from_secs_f64(seconds));
    // The sink's count even when sending failed part way: it ends the sink's thread.
    let received: Result<Received> = host.agent.ask(&Request::SinkResult { port }, SINK_WAIT + CALL_TIMEOUT);
    let (from, sent_for) = sent.with_context(|| format!("sending to {ip} port {port} on {}", host.ssh.target))?;
    let received = received.with_context(|| format!("the count of the sink on {address} on {}", host.ssh.target))?;
    if received.bytes == 0 {
        bail!("nothing sent to {address} port {port} arrived on {}: is the migration address reachable from here?", host.ssh.target);
    }
    Ok(LinkProbe { host: host.ssh.target.to_string(), address, from, sent_for_s: sent_for, received })
}

/// How long a host may take to connect to another's sink ([`reaches`]).
const REACH_WAIT_S: u32 = 5;

/// Whether `from`'s own machine reaches `to`'s migration address, as a migration
/// from a QEMU on `from` straight to one on `to` would connect: `to`'s agent opens a
/// sink there and `from` connects to it over its SSH connection (bash's
/// `/dev/tcp`, within 5 s). The error says what `from` said.
pub fn reaches(from: &RemoteHost, to: &RemoteHost) -> Result<()> {
    let address = to.migrate_address.clone();
    let port: u16 = to.agent.ask(&Request::Sink { address: address.clone() }, CALL_TIMEOUT).with_context(|| format!("opening a sink on {address} on {}", to.ssh.target))?;
    let ip = crate::host::ssh::address_ip(&address)?;
    let line = format!("timeout {REACH_WAIT_S} bash -c 'exec 3<>/dev/tcp/{ip}/{port}' && echo connected");
    let connected = from.ssh.run(&line);
    if connected.is_err() {
        // Ends the sink's wait at once (this host reaches it, as every migration here does).
        let _ = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(2));
    }
    let received: Result<Received> = to.agent.ask(&Request::SinkResult { port }, SINK_WAIT + CALL_TIMEOUT);
    match connected {
        Ok(out) if out.contains("connected") => {
            received.with_context(|| format!("the sink on {address} port {port} on {}", to.ssh.target))?;
            Ok(())
        }
        Ok(out) => bail!("connecting from {} to {ip} port {port} said {:?}", from.ssh.target, out.trim()),
        Err(e) => {
            let why = format!("{e:#}");
            let timed_out = why.contains("exit status: 124");
            bail!(
                "a TCP connection from {} to {ip} port {port} (a port {}'s agent opened) failed{}: {why}",
                from.ssh.target,
                to.ssh.target,
                if timed_out { format!(" (no answer within {REACH_WAIT_S} s)") } else { String::new() }
            )
        }
    }
}

/// Writes to `to` flat out for `how_long`; returns our address and how long it sent.
fn send(to: std::net::SocketAddr, how_long: Duration) -> Result<(String, f64)> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(10)).with_context(|| format!("connecting to {to}"))?;
    stream.set_write_timeout(Some(SINK_WAIT))?;
    let from = stream.local_addr()?.ip().to_string();
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    while start.elapsed() < how_long {
        stream.write_all(&chunk)?;
    }
    let took = start.elapsed().as_secs_f64();
    stream.shutdown(std::net::Shutdown::Write)?;
    // Wait for the sink to close its end: everything sent has then been read.
    let _ = stream.set_read_timeout(Some(SINK_WAIT));
    let _ = stream.read(&mut [0u8; 1]);
    Ok((from, took))
}

/// The far end: listens on `address` (port 0), takes one connection and counts what
/// it reads until the sender closes. Returns the port and the counting thread.
pub fn sink(address: &str) -> Result<(u16, std::thread::JoinHandle<Result<Received, String>>)> {
    sink_waiting(address, SINK_WAIT)
}

/// [`sink`], waiting `wait` for the connection and for each read.
fn sink_waiting(address: &str, wait: Duration) -> Result<(u16, std::thread::JoinHandle<Result<Received, String>>)> {
    let ip = crate::host::ssh::address_ip(address)?;
    let listener = TcpListener::bind((ip, 0)).with_context(|| format!("listening on {address}"))?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let count = std::thread::spawn(move || -> Result<Received, String> {
        let deadline = Instant::now() + wait;
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("no connection within {:.1} s: {e}", wait.as_secs_f64())),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256 * 1024];
        let (mut bytes, mut first, mut last) = (0u64, None, Instant::now());
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let now = Instant::now();
                    // The first read's bytes arrived before the clock starts: not counted.
                    if first.is_none() {
                        first = Some(now);
                    } else {
                        bytes += n as u64;
                    }
                    last = now;
                }
                Err(e) => return Err(format!("reading the stream: {e}")),
            }
        }
        Ok(Received { bytes, seconds: first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0) })
    });
    Ok((port, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_counts_what_a_sender_sends_after_its_first_read() {
        let (port, count) = sink("127.0.0.1").unwrap();
        let (from, took) = send(([127, 0, 0, 1], port).into(), Duration::from_millis(300)).unwrap();
        let got = count.join().unwrap().unwrap();
        assert_eq!(from, "127.0.0.1");
        assert!(took >= 0.3, "{took}");
        assert!(got.bytes > 0 && got.seconds > 0.0 && got.seconds <= took + 1.0, "{got:?}");
        let p = LinkProbe { host: "ssh://h".into(), address: "127.0.0.1".into(), from, sent_for_s: took, received: got };
        assert_eq!(p.bytes_per_sec(), got.bytes as f64 / got.seconds);
        assert!(p.speed().text.ends_with("Mbit") && p.speed().bytes_per_sec.is_some(), "{:?}", p.speed());
    }

    #[test]
    fn a_sink_nobody_connects_to_says_so() {
        let (_, count) = sink_waiting("127.0.0.1", Duration::from_millis(200)).unwrap();
        let e = count.join().unwrap().unwrap_err();
        assert!(e.contains("no connection within 0.2 s"), "{e}");
    }

    #[test]
    fn a_bad_address_is_named() {
        let e = sink("not-an-ip").unwrap_err();
        assert!(format!("{e:#}").contains("\"not-an-ip\""), "{e:#}");
    }

    #[test]
    fn nothing_received_is_a_rate_of_zero() {
        let p = LinkProbe { host: "h".into(), address: "a".into(), from: "b".into(), sent_for_s: 1.0, received: Received { bytes: 0, seconds: 0.0 } };
        assert_eq!(p.bytes_per_sec(), 0.0);
    }
}
