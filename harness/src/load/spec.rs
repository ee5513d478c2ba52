//! What load to put on a guest: the HTTP load's pacing, connections and request
//! mix, and the probe's rate. Profiles and records speak these; the generator and
//! the probe carry them out.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The highest probe rate accepted, probes per second.
pub const MAX_PROBE_HZ: u32 = 20_000;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A fixed schedule of `rate` requests per second.
    Open { rate: f64 },
    /// `clients` clients, each waiting for its answer and `think_ms` before the next request.
    Closed { clients: u32, think_ms: u64 },
}

pub const MAX_RATE: f64 = 100_000.0;
/// Below one request per 10 s a "load" measures nothing across a migration.
pub const MIN_RATE: f64 = 0.1;
pub const MAX_CLIENTS: u32 = 1024;

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Open { rate } => write!(f, "open:{rate}"),
            Mode::Closed { clients, think_ms: 0 } => write!(f, "closed:{clients}"),
            Mode::Closed { clients, think_ms } => write!(f, "closed:{clients}:{think_ms}"),
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        let bad = || {
            format!(
                "load {s:?} is not open:RATE (requests per second, e.g. open:200) or closed:CLIENTS[:THINK_MS] \
                 (e.g. closed:1 like `ab -c 1`, closed:4:10)"
            )
        };
        let mut parts = s.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("open"), Some(r), None, None) => {
                let rate: f64 = r.parse().map_err(|_| bad())?;
                if !(rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate)) {
                    return Err(format!("load {s:?}: the rate is requests per second, {MIN_RATE} to {MAX_RATE}"));
                }
                Ok(Mode::Open { rate })
            }
            (Some("closed"), Some(c), think, None) => {
                let clients: u32 = c.parse().map_err(|_| bad())?;
                if !(1..=MAX_CLIENTS).contains(&clients) {
                    return Err(format!("load {s:?}: give 1 to {MAX_CLIENTS} clients"));
                }
                let think_ms = match think {
                    None => 0,
                    Some(t) => t.parse::<u64>().ok().filter(|t| *t <= 60_000).ok_or_else(|| format!("load {s:?}: the think time is 0 to 60000 ms"))?,
                };
                Ok(Mode::Closed { clients, think_ms })
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a connection carries many requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connection {
    #[default]
    KeepAlive,
    PerRequest,
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connection::KeepAlive => "keep-alive",
            Connection::PerRequest => "per-request",
        })
    }
}

/// One load: what to send, how fast, and over which connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    pub mode: Mode,
    pub connection: Connection,
    /// Share of requests (%) to the dynamic endpoint `/kv/N` (which reads and
    /// rewrites a slot of the guest's key/value store); the rest fetch the static page.
    pub dynamic_percent: u32,
    /// A request not answered within this is a failure ("timeout").
    pub timeout_ms: u64,
    /// Stop after this many requests (like `ab -n`); none: until stopped.
    pub requests: Option<u64>,
}

impl LoadSpec {
    pub fn check(&self) -> Result<(), String> {
        if self.dynamic_percent > 100 {
            return Err(format!("dynamic_percent = {}: a share of requests, 0 to 100", self.dynamic_percent));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return Err(format!("request_timeout_ms = {}: give 1 to 600000 ms", self.timeout_ms));
        }
        if self.requests == Some(0) {
            return Err("requests = 0: give at least 1 request, or leave it out to send until the run ends".into());
        }
        Ok(())
    }

    /// The path of request number `i`: `dynamic_percent` of them, spread evenly,
    /// go to the key/value endpoint, each to a different key (the others to `/`,
    /// which costs no allocation).
    pub fn path(&self, i: u64) -> std::borrow::Cow<'static, str> {
        let p = self.dynamic_percent as u64;
        if (i + 1) * p / 100 > i * p / 100 { format!("/kv/{}", i.wrapping_mul(2_654_435_761) % 1_000_003).into() } else { "/".into() }
    }
}
