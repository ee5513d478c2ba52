//! A migration *scenario* (transport, link speed, downtime limit, time limit) and
//! the *driver* that runs one live migration between two QEMUs and measures it.
//! Every number it records is defined in DESIGN.md §3.

use crate::guest::channel::{guest_cpu_between, longest_gap, rate_between};
use crate::machine::usage::{self, CpuUsage, PhaseCpu};
use crate::machine::{Balloon, GuestSpec, Machine, Role, RunDir};
use crate::qmp::{Event, Features, MigrationInfo};
use crate::setup::{Environment, Platform};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// QEMU's default max-bandwidth is 128 MiB/s: we always set it. "Unlimited" is a
/// rate no link here reaches (1 TiB/s), below the SIZE_MAX bound QEMU checks.
pub const UNLIMITED_BYTES_PER_SEC: u64 = 1 << 40;

/// How often `query-migrate` is sampled (DESIGN.md: at most every 100 ms).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// A link speed: what the user wrote and the bytes per second it means. It is
/// written (in records and profiles) as its text, e.g. "100Mbit".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct LinkSpeed {
    pub text: String,
    /// `None` for unlimited.
    pub bytes_per_sec: Option<u64>,
}

impl LinkSpeed {
    /// The value for QEMU's `max-bandwidth` (bytes/s).
    pub fn max_bandwidth(&self) -> u64 {
        self.bytes_per_sec.unwrap_or(UNLIMITED_BYTES_PER_SEC)
    }
}

impl From<LinkSpeed> for String {
    fn from(l: LinkSpeed) -> String {
        l.text
    }
}

impl TryFrom<String> for LinkSpeed {
    type Error = String;
    fn try_from(s: String) -> Result<LinkSpeed, String> {
        s.parse()
    }
}

impl fmt::Display for LinkSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LinkSpeed {
    type Err = String;

    /// `100Mbit`, `1Gbit`, `2.5Gbit`, `500kbit` (bits per second, decimal prefixes),
    /// `100MiB/s`, `1GB/s` (bytes per second), or `unlimited`.
    fn from_str(s: &str) -> Result<LinkSpeed, String> {
        let bad = || {
            format!("link speed {s:?} is not understood: write a rate such as 100Mbit, 1Gbit, 10Gbit, 50MiB/s, or unlimited")
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(LinkSpeed { text: "unlimited".into(), bytes_per_sec: None });
        }
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit = unit.trim();
        // "B" is bytes and "b" is bits (so "100Mb/s" is a 100 Mbit/s link, not 100 MB/s);
        // the prefix letter may be either case.
        let (prefix, base, binary) = if let Some(p) = unit.strip_suffix("iB/s") {
            (p, 1.0, true)
        } else if let Some(p) = unit.strip_suffix("B/s") {
            (p, 1.0, false)
        } else if let Some(p) = ["bit/s", "bit", "bps", "b/s"].iter().find_map(|sfx| unit.strip_suffix(sfx)) {
            (p, 1.0 / 8.0, false)
        } else {
            return Err(bad());
        };
        let scale = |k: f64| match prefix.to_ascii_lowercase().as_str() {
            "" if !binary => Some(1.0),
            "k" => Some(k),
            "m" => Some(k * k),
            "g" => Some(k * k * k),
            "t" => Some(k * k * k * k),
            _ => None,
        };
        let bytes_per_unit = base * scale(if binary { 1024.0 } else { 1000.0 }).ok_or_else(bad)?;
        let bytes = (value * bytes_per_unit).round();
        if !(1.0..=UNLIMITED_BYTES_PER_SEC as f64).contains(&bytes) {
            return Err(format!("link speed {s:?} is out of range: it must be at least 8bit and at most 8Tbit (or unlimited)"));
        }
        Ok(LinkSpeed { text: format!("{num}{unit}"), bytes_per_sec: Some(bytes as u64) })
    }
}

/// A fault injected into a run, to measure what failure costs and check that the
/// guest ends where QEMU's semantics say it should. Written as text in profiles and
/// records: `kill-destination[:S]`, `kill-source[:S]` (S seconds after `migrate`,
/// default 1), `cut-link[:S]` (the migration's link down for S seconds, default 2,
/// from 1 s after `migrate`), `bad-qemu-option` (the destination QEMU is started
/// with an option it does not know), `never-ready[:S]` (the guest is booted with an
/// init that does not exist; give up after S seconds, default 10), or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Fault {
    #[default]
    None,
    KillDestination { at_s: f64 },
    KillSource { at_s: f64 },
    CutLink { at_s: f64, for_s: f64 },
    BadQemuOption,
    NeverReady { give_up_s: f64 },
}

/// When a mid-migration fault strikes unless the profile says: after `migrate`.
pub const FAULT_AT_S: f64 = 1.0;

impl Fault {
    pub fn is_none(&self) -> bool {
        *self == Fault::None
    }

    /// What QEMU's semantics say should become of the guest (for the record).
    pub fn expected(&self, strategy: Strategy) -> &'static str {
        match self {
            Fault::None => "",
            Fault::KillDestination { .. } if strategy == Strategy::Postcopy => {
                "the guest is lost: once post-copy runs, the destination holds the only up-to-date state and the source cannot resume"
            }
            Fault::KillDestination { .. } => {
                "the migration fails and the source resumes: its heartbeats continue (for hybrid, only if post-copy had not started)"
            }
            Fault::KillSource { .. } if strategy == Strategy::Postcopy => {
                "the guest is stuck: the destination runs it but cannot fetch the pages still on the source (post-copy paused)"
            }
            Fault::KillSource { .. } => "the guest is lost: the destination never received a complete state, so it does not run",
            Fault::CutLink { .. } => "the migration stalls while the link is down and goes on when it returns (TCP retransmits); the guest keeps running",
            Fault::BadQemuOption => "the destination QEMU refuses to start: the run fails before migrating and the source guest runs on",
            Fault::NeverReady { .. } => "the guest never says READY: the run fails after the wait, with the console's last words",
        }
    }
}

impl From<Fault> for String {
    fn from(f: Fault) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for Fault {
    type Error = String;
    fn try_from(s: String) -> Result<Fault, String> {
        s.parse()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => f.write_str("none"),
            Fault::KillDestination { at_s } => write!(f, "kill-destination:{at_s}"),
            Fault::KillSource { at_s } => write!(f, "kill-source:{at_s}"),
            Fault::CutLink { for_s, .. } => write!(f, "cut-link:{for_s}"),
            Fault::BadQemuOption => f.write_str("bad-qemu-option"),
            Fault::NeverReady { give_up_s } => write!(f, "never-ready:{give_up_s}"),
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        let t = s.trim();
        let (name, arg) = match t.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (t, None),
        };
        let secs = |default: f64, max: f64| -> Result<f64, String> {
            match arg {
                None => Ok(default),
                Some(a) => match a.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 && v <= max => Ok(v),
                    _ => Err(format!("fault {s:?}: {a:?} is not a number of seconds from just above 0 to {max}")),
                },
            }
        };
        let no_arg = |f: Fault| if arg.is_some() { Err(format!("fault {s:?}: {name} takes no value")) } else { Ok(f) };
        match name {
            "none" => no_arg(Fault::None),
            "kill-destination" => Ok(Fault::KillDestination { at_s: secs(FAULT_AT_S, MAX_SECONDS)? }),
            "kill-source" => Ok(Fault::KillSource { at_s: secs(FAULT_AT_S, MAX_SECONDS)? }),
            "cut-link" => Ok(Fault::CutLink { at_s: FAULT_AT_S, for_s: secs(2.0, 600.0)? }),
            "bad-qemu-option" => no_arg(Fault::BadQemuOption),
            "never-ready" => Ok(Fault::NeverReady { give_up_s: secs(10.0, 3600.0)? }),
            _ => Err(format!(
                "fault {s:?} is not known: write none, kill-destination[:S], kill-source[:S], cut-link[:S], bad-qemu-option or never-ready[:S]"
            )),
        }
    }
}

/// What a fault did in a run, and whether the guest ended as QEMU's semantics say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub fault: Fault,
    /// When it struck, ms since `migrate` (none for faults at start-up).
    pub at_ms: Option<f64>,
    /// What was done ("SIGKILL to the destination QEMU (pid 123)"), or why it was not.
    pub action: String,
    /// Whether the fault really struck (the signal was delivered, the link went down
    /// and came back, the bad start happened).
    #[serde(default)]
    pub struck: bool,
    pub expected: String,
    /// Whether the run's outcome and health match `expected`.
    pub as_expected: bool,
}

impl FaultRecord {
    /// The record of a fault that struck (or not) before any migration: at start-up,
    /// or a run that failed before its fault's time.
    pub fn before_migrating(fault: Fault, strategy: Strategy, action: String, struck: bool, as_expected: bool) -> FaultRecord {
        FaultRecord { fault, at_ms: None, action, struck, expected: fault.expected(strategy).into(), as_expected }
    }
}

/// How the migration stream travels between the two QEMUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Unix,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
        })
    }
}

/// The migration strategy: which of QEMU's mechanisms moves the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Iterative pre-copy (QEMU's default).
    #[default]
    Precopy,
    /// `postcopy-ram`, switched to post-copy at once.
    Postcopy,
    /// Pre-copy for `hybrid_passes` passes (or `hybrid_after_s`), then `migrate-start-postcopy`.
    Hybrid,
    /// Pre-copy with `auto-converge` CPU throttling.
    AutoConverge,
    /// Pre-copy with XBZRLE delta compression of re-sent pages.
    Xbzrle,
    /// Pre-copy over several channels (`multifd`), optionally compressed.
    Multifd,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Precopy => "precopy",
            Strategy::Postcopy => "postcopy",
            Strategy::Hybrid => "hybrid",
            Strategy::AutoConverge => "auto-converge",
            Strategy::Xbzrle => "xbzrle",
            Strategy::Multifd => "multifd",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Zlib,
    Zstd,
}

impl Compression {
    fn qapi(self) -> qapi::qmp::MultiFDCompression {
        match self {
            Compression::None => qapi::qmp::MultiFDCompression::none,
            Compression::Zlib => qapi::qmp::MultiFDCompression::zlib,
            Compression::Zstd => qapi::qmp::MultiFDCompression::zstd,
        }
    }
}

/// The knobs of the strategies (each used only by its strategy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tuning {
    /// hybrid: complete pre-copy passes before switching to post-copy.
    pub hybrid_passes: u64,
    /// hybrid: switch after this many seconds even if the passes are not done.
    pub hybrid_after_s: Option<f64>,
    /// auto-converge: `cpu-throttle-initial` (%).
    pub throttle_initial: u8,
    /// auto-converge: `cpu-throttle-increment` (%).
    pub throttle_increment: u8,
    /// xbzrle: `xbzrle-cache-size` in MiB.
    pub xbzrle_cache_mib: u64,
    /// multifd: `multifd-channels`.
    pub multifd_channels: u8,
    /// multifd: `multifd-compression`.
    pub multifd_compression: Compression,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            hybrid_passes: 1,
            hybrid_after_s: None,
            throttle_initial: 20,
            throttle_increment: 10,
            xbzrle_cache_mib: 64,
            multifd_channels: 2,
            multifd_compression: Compression::None,
        }
    }
}

/// Everything about how one migration is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    #[serde(default)]
    pub strategy: Strategy,
    pub transport: Transport,
    pub link: LinkSpeed,
    pub downtime_limit_ms: u64,
    /// Past this, a pre-copy migration is cancelled (`migrate_cancel`) and recorded as
    /// such. Post-copy cannot be cancelled without losing the guest, so once in
    /// post-copy the driver waits for it to finish.
    pub timeout_s: f64,
    #[serde(default)]
    pub tuning: Tuning,
    /// A fault injected into this migration (none normally).
    #[serde(default, skip_serializing_if = "Fault::is_none")]
    pub fault: Fault,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            strategy: Strategy::Precopy,
            transport: Transport::Unix,
            link: "1Gbit".parse().unwrap(),
            downtime_limit_ms: 300,
            timeout_s: 300.0,
            tuning: Tuning::default(),
            fault: Fault::None,
        }
    }
}

/// The longest time limit or window accepted: a week.
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;
/// QEMU's own upper bound for `downtime-limit`.
pub const MAX_DOWNTIME_LIMIT_MS: u64 = 2_000_000;
/// The largest XBZRLE cache accepted, MiB.
pub const MAX_XBZRLE_CACHE_MIB: u64 = 1 << 20;

impl Scenario {
    /// The time limit as a duration (validated values are within range).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s.clamp(0.1, MAX_SECONDS))
    }

    /// Checks the values a user gave; the message names the profile key and the option.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.tuning;
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= MAX_SECONDS) {
            return Err(format!(
                "timeout_s / --timeout {}: give the migration time limit in seconds, above 0 and at most {MAX_SECONDS} (e.g. 300)",
                self.timeout_s
            ));
        }
        if let Some(s) = t.hybrid_after_s {
            if !(s.is_finite() && (0.0..=MAX_SECONDS).contains(&s)) {
                return Err(format!("hybrid_after_s / --hybrid-after {s}: give seconds, 0 to {MAX_SECONDS} (e.g. 2)"));
            }
        }
        if !(1..=99).contains(&t.throttle_initial) || !(1..=100).contains(&t.throttle_increment) {
            return Err(format!(
                "throttle_initial {} / throttle_increment {} (--throttle-initial / --throttle-increment): QEMU takes 1..99 and 1..100 % (defaults 20 and 10)",
                t.throttle_initial, t.throttle_increment
            ));
        }
        if t.multifd_channels == 0 {
            return Err("multifd_channels / --multifd-channels 0: multifd needs at least one channel (e.g. 2)".into());
        }
        if !t.xbzrle_cache_mib.is_power_of_two() || t.xbzrle_cache_mib > MAX_XBZRLE_CACHE_MIB {
            return Err(format!(
                "xbzrle_cache_mib / --xbzrle-cache {}: QEMU takes a power of two, here 1 to {MAX_XBZRLE_CACHE_MIB} MiB (e.g. 64)",
                t.xbzrle_cache_mib
            ));
        }
        if self.downtime_limit_ms > MAX_DOWNTIME_LIMIT_MS {
            return Err(format!(
                "downtime_limit_ms / --downtime-limit {}: QEMU accepts at most {MAX_DOWNTIME_LIMIT_MS} ms (e.g. 300)",
                self.downtime_limit_ms
            ));
        }
        if matches!(self.fault, Fault::CutLink { .. }) && self.transport != Transport::Tcp {
            return Err(format!(
                "fault = \"{}\" cuts the migration's network link, but transport = \"{}\" does not use one: set transport = \"tcp\"",
                self.fault, self.transport
            ));
        }
        Ok(())
    }
}

/// Capabilities migbench manages: each is set on or off explicitly before every
/// migration (a reused guest keeps what an earlier run set).
const MANAGED_CAPABILITIES: &[&str] = &["postcopy-ram", "postcopy-blocktime", "auto-converge", "xbzrle", "multifd"];

/// The capability states a strategy needs on this QEMU, or why it cannot run here.
pub fn capability_plan(strategy: Strategy, features: &Features) -> Result<Vec<(&'static str, bool)>, String> {
    let (required, optional): (&[&str], &[&str]) = match strategy {
        Strategy::Precopy => (&[], &[]),
        Strategy::Postcopy | Strategy::Hybrid => (&["postcopy-ram"], &["postcopy-blocktime"]),
        Strategy::AutoConverge => (&["auto-converge"], &[]),
        Strategy::Xbzrle => (&["xbzrle"], &[]),
        Strategy::Multifd => (&["multifd"], &[]),
    };
    if let Some(missing) = required.iter().find(|c| !features.has_capability(c)) {
        return Err(format!("strategy {strategy} needs the migration capability {missing}, which this QEMU does not offer"));
    }
    let mut plan: Vec<(&'static str, bool)> = MANAGED_CAPABILITIES
        .iter()
        .filter(|c| features.has_capability(c))
        .map(|c| (*c, required.contains(c) || optional.contains(c)))
        .collect();
    if features.has_capability("events") {
        plan.push(("events", true));
    }
    Ok(plan)
}

/// The `migrate-set-parameters` for each side, or why this QEMU cannot take them.
pub fn parameter_plan(
    scenario: &Scenario,
    features: &Features,
) -> Result<(qapi::qmp::MigrateSetParameters, qapi::qmp::MigrateSetParameters), String> {
    let need = |p: &str| {
        if features.has_parameter(p) { Ok(()) } else { Err(format!("this QEMU has no migration parameter {p} (needed by {})", scenario.strategy)) }
    };
    let t = &scenario.tuning;
    let mut src = qapi::qmp::MigrateSetParameters {
        max_bandwidth: Some(scenario.link.max_bandwidth()),
        downtime_limit: Some(scenario.downtime_limit_ms),
        ..Default::default()
    };
    let mut dst = qapi::qmp::MigrateSetParameters::default();
    match scenario.strategy {
        Strategy::Precopy => {}
        Strategy::Postcopy | Strategy::Hybrid => {
            // 0 would mean "unlimited" in post-copy: keep the link's speed there too.
            if features.has_parameter("max-postcopy-bandwidth") {
                src.max_postcopy_bandwidth = Some(scenario.link.max_bandwidth());
            }
        }
        Strategy::AutoConverge => {
            need("cpu-throttle-initial")?;
            need("cpu-throttle-increment")?;
            src.cpu_throttle_initial = Some(t.throttle_initial);
            src.cpu_throttle_increment = Some(t.throttle_increment);
        }
        Strategy::Xbzrle => {
            need("xbzrle-cache-size")?;
            src.xbzrle_cache_size = Some(t.xbzrle_cache_mib.saturating_mul(1024 * 1024));
        }
        Strategy::Multifd => {
            need("multifd-channels")?;
            src.multifd_channels = Some(t.multifd_channels);
            dst.multifd_channels = Some(t.multifd_channels);
            if t.multifd_compression != Compression::None {
                need("multifd-compression")?;
                let name = serde_json::to_value(t.multifd_compression).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                if !features.multifd_compressions.is_empty() && !features.multifd_compressions.contains(&name) {
                    return Err(format!(
                        "this QEMU was built without multifd compression {name} (it offers {})",
                        features.multifd_compressions.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            if features.has_parameter("multifd-compression") {
                src.multifd_compression = Some(t.multifd_compression.qapi());
                dst.multifd_compression = Some(t.multifd_compression.qapi());
            }
        }
    }
    Ok((src, dst))
}

/// One `query-migrate` sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Since `migrate` was sent.
    pub t_ms: f64,
    pub status: String,
    pub transferred: Option<u64>,
    pub remaining: Option<u64>,
    pub dirty_rate_pps: Option<u64>,
    pub mbps: Option<f64>,
    pub iteration: Option<u64>,
}

impl Sample {
    fn from_info(t_ms: f64, i: &MigrationInfo) -> Sample {
        let ram = i.ram.clone().unwrap_or_default();
        Sample {
            t_ms,
            status: i.status().into(),
            transferred: ram.transferred,
            remaining: ram.remaining,
            dirty_rate_pps: ram.dirty_pages_rate,
            mbps: ram.mbps,
            iteration: ram.dirty_sync_count,
        }
    }
}

/// How a migration ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Outcome {
    Completed,
    /// We cancelled it (time limit); `reason` says why.
    Cancelled { reason: String },
    /// QEMU reported failure.
    Failed { reason: String },
    /// This QEMU lacks a capability or parameter the scenario needs; nothing was migrated.
    Unsupported { reason: String },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Cancelled { .. } => "cancelled",
            Outcome::Failed { .. } => "failed",
            Outcome::Unsupported { .. } => "unsupported",
        }
    }
}

/// The workload's rate per phase, in its unit per second, and what migrating cost it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorkloadRate {
    /// "flop", "MiB", "iterations" (per second).
    pub unit: String,
    pub before: Option<f64>,
    pub during: Option<f64>,
    pub after: Option<f64>,
    /// How much slower the workload ran during the migration than before, %.
    pub slowdown_percent: Option<f64>,
}

impl WorkloadRate {
    /// Fills `slowdown_percent` from `before` and `during`.
    pub fn with_slowdown(mut self) -> WorkloadRate {
        self.slowdown_percent = match (self.before, self.during) {
            (Some(b), Some(d)) if b > 0.0 => Some((1.0 - d / b) * 100.0),
            _ => None,
        };
        self
    }
}

/// Where the guest runs after the migration, and whether it is well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Health {
    /// Which side the guest should now run on: "destination" or "source".
    pub runs_on: String,
    /// QEMU's run state there ("running").
    pub run_state: String,
    /// QEMU's run state on the other side ("postmigrate" after a completed migration).
    pub other_state: String,
    /// Last heartbeat seen from the source before the switch.
    pub last_source_seq: Option<u64>,
    /// First heartbeat with a higher number where the guest runs now.
    pub next_seq: Option<u64>,
    /// Heartbeats lost across the switch (`next_seq - last_source_seq - 1`).
    pub lost_beats: Option<u64>,
    /// Kernel trouble found on either console (Oops, BUG, panic).
    pub console_problems: Vec<String>,
    /// The last console lines where the guest runs, kept only when it is not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_tail: Option<String>,
    /// The guest's check of its stamped memory where it runs now; none when its
    /// workload owns no stamped memory (only the memory dirtier does) or it could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<crate::guest::integrity::Integrity>,
    pub healthy: bool,
    /// Why not healthy, or "ok".
    pub detail: String,
}

/// An event as recorded: which QEMU, when (ms since `migrate`), what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub side: String,
    pub t_ms: f64,
    pub name: String,
    pub data: Value,
}

/// What one migration measured (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub outcome: Outcome,
    pub total_time_ms: Option<f64>,
    pub downtime_ms: Option<f64>,
    pub event_downtime_ms: Option<f64>,
    pub setup_time_ms: Option<f64>,
    pub wall_time_ms: Option<f64>,
    pub transferred_bytes: Option<u64>,
    pub precopy_bytes: Option<u64>,
    pub postcopy_bytes: Option<u64>,
    pub normal_pages: Option<u64>,
    pub duplicate_pages: Option<u64>,
    pub iterations: Option<u64>,
    /// The last `dirty-pages-rate` QEMU reported while migrating.
    pub dirty_rate_pps: Option<u64>,
    pub guest_gap_ms: Option<f64>,
    /// When `migrate-start-postcopy` was sent (ms since `migrate`), for post-copy and hybrid.
    pub postcopy_started_ms: Option<f64>,
    /// Why `migrate-start-postcopy` was refused, if it was.
    pub postcopy_switch_error: Option<String>,
    /// Pages the destination requested from the source during post-copy (`postcopy-requests`).
    pub postcopy_requests: Option<u64>,
    /// Total time vCPUs on the destination stalled on remote page faults (`postcopy-blocktime`).
    pub postcopy_blocktime_ms: Option<f64>,
    /// CPU used per phase (`during` by the driver; `before`/`after` by a sweep's windows).
    #[serde(default)]
    pub cpu_percent: PhaseCpu,
    /// The balloon inflated before migrating (`balloon_mib`), if any.
    pub balloon: Option<Balloon>,
    /// The guest workload's own rate per phase (none for an idle guest).
    #[serde(default)]
    pub workload_rate: Option<WorkloadRate>,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub progress: Vec<Sample>,
    #[serde(default)]
    pub events: Vec<RecordedEvent>,
    /// Longest interval without a successful HTTP response across the switchover,
    /// as the load's clients saw it (runs with a `load`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_downtime_ms: Option<f64>,
    /// Time during which request latency stayed above 10× the `before` p99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brownout_ms: Option<f64>,
    /// The clients' view in full: latency per phase, failures, the fine probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<crate::load::service::ServiceRecord>,
    /// The guest's dirty rate measured by QEMU before migrating (`calc-dirty-rate`;
    /// profiles with `dirty_rate_s`), or why it could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_rate_before: Option<crate::machine::dirty_rate::DirtyRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_rate_error: Option<String>,
    /// The guest kernel's memory just before migrating (its own report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_memory_before: Option<GuestMemory>,
    /// The fault injected into this run, what it did, and whether the guest ended
    /// as QEMU's semantics say it should.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultRecord>,
    /// The settings QEMU read back and what shows the strategy at work (or that it never did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<crate::migration_evidence::StrategyEvidence>,
    /// When `migrate` was sent and when the driver finished, on the harness's
    /// clock: to place the migration on other clocks (the load's). Not recorded.
    #[serde(skip)]
    pub started_at: Option<Instant>,
    #[serde(skip)]
    pub ended_at: Option<Instant>,
}

impl Measurement {
    /// The workload's slowdown during the migration, from a guest that arrived
    /// healthy (a broken guest's counts after the break are not work).
    pub fn slowdown_percent(&self) -> Option<f64> {
        self.workload_rate.as_ref().filter(|_| self.health.healthy).and_then(|w| w.slowdown_percent)
    }

    /// The bytes QEMU sent, in MiB (the unit every table shows).
    pub fn transferred_mib(&self) -> Option<f64> {
        self.transferred_bytes.map(|b| b as f64 / 1048576.0)
    }

    /// A measurement with only an outcome and a health check (nothing migrated yet).
    pub fn not_started(outcome: Outcome, health: Health) -> Measurement {
        Measurement {
            outcome,
            total_time_ms: None,
            downtime_ms: None,
            event_downtime_ms: None,
            setup_time_ms: None,
            wall_time_ms: None,
            transferred_bytes: None,
            precopy_bytes: None,
            postcopy_bytes: None,
            normal_pages: None,
            duplicate_pages: None,
            iterations: None,
            dirty_rate_pps: None,
            guest_gap_ms: None,
            postcopy_started_ms: None,
            postcopy_switch_error: None,
            postcopy_requests: None,
            postcopy_blocktime_ms: None,
            cpu_percent: PhaseCpu::default(),
            balloon: None,
            workload_rate: None,
            health,
            progress: Vec::new(),
            events: Vec::new(),
            service_downtime_ms: None,
            brownout_ms: None,
            service: None,
            dirty_rate_before: None,
            dirty_rate_error: None,
            guest_memory_before: None,
            fault: None,
            evidence: None,
            started_at: None,
            ended_at: None,
        }
    }
}

/// The guest kernel's memory as it reports it (`/proc/meminfo`), MiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuestMemory {
    pub total_mib: f64,
    pub free_mib: f64,
}

impl GuestMemory {
    pub fn of(m: &crate::guest::channel::MemSample) -> GuestMemory {
        GuestMemory { total_mib: m.total_kib as f64 / 1024.0, free_mib: m.free_kib as f64 / 1024.0 }
    }

    /// What a first pre-copy round must copy of a guest with `ram_mib` of RAM: all
    /// but the pages its kernel has never handed out, which are still zero. (Pages
    /// freed after use are not zero, so this is a lower bound of the non-zero memory.)
    pub fn first_round_bytes(&self, ram_mib: u32) -> u64 {
        ((ram_mib as f64 - self.free_mib).max(0.0) * 1048576.0) as u64
    }
}

/// One run of `migbench migrate`: context, inputs, and the measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRecord {
    pub record: String,
    pub started_at: String,
    pub environment: Environment,
    pub guest: GuestSpec,
    pub scenario: Scenario,
    /// QEMU start to the guest's READY on the source.
    pub guest_boot_ms: f64,
    #[serde(flatten)]
    pub measurement: Measurement,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

fn since_ms(t: Instant, t0: Instant) -> f64 {
    if t >= t0 { ms(t - t0) } else { -ms(t0 - t) }
}

/// Boots a source guest, starts a destination, migrates once and measures it.
/// An error means the experiment could not be run (QEMU would not start, the
/// guest never booted); a migration that failed or was cancelled is a result.
pub async fn run_one(platform: &Platform, env: &Environment, spec: GuestSpec, scenario: &Scenario, boot_timeout: Duration) -> Result<MigrationRecord> {
    let started_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let run = RunDir::new()?;
    let (mut src, guest_boot_ms) = Machine::boot(&platform.qemu, &platform.image, spec, &run.machine_dir("src")?, "src", boot_timeout).await?;
    let mut dst = Machine::start(&platform.qemu, &platform.image, spec, Role::Incoming, &run.machine_dir("dst")?, "dst").await?;
    let measurement = drive(&mut src, &mut dst, scenario).await?;
    match measurement.outcome {
        Outcome::Completed => src.quit().await,
        _ => dst.quit().await,
    }
    Ok(MigrationRecord {
        record: "migration".into(),
        started_at,
        environment: env.clone(),
        guest: spec,
        scenario: scenario.clone(),
        guest_boot_ms,
        measurement,
    })
}

/// Runs one migration from `src` (running) to `dst` (waiting with `-incoming defer`).
pub async fn drive(src: &mut Machine, dst: &mut Machine, scenario: &Scenario) -> Result<Measurement> {
    drive_observed(src, dst, scenario, &mut |_| {}).await
}

/// [`drive`], calling `observe` with every progress sample as it is taken (for a progress bar).
pub async fn drive_observed(
    src: &mut Machine,
    dst: &mut Machine,
    scenario: &Scenario,
    observe: &mut (dyn FnMut(&Sample) + Send),
) -> Result<Measurement> {
    drive_with(src, dst, scenario, observe, None).await
}

/// [`drive_observed`] with the test network both QEMUs run in (a `cut-link`
/// fault takes its loopback down: the migration's TCP stream runs there).
pub async fn drive_with(
    src: &mut Machine,
    dst: &mut Machine,
    scenario: &Scenario,
    observe: &mut (dyn FnMut(&Sample) + Send),
    network: Option<&crate::network::Network>,
) -> Result<Measurement> {
    if dst.role != Role::Incoming {
        bail!("destination {} was not started with -incoming defer", dst.name);
    }
    let settings = match crate::migration_evidence::configure(src, dst, scenario).await? {
        Ok(s) => s,
        Err(outcome) => return Ok(Measurement::not_started(outcome, check_guest(src, Some(dst), "source").await)),
    };

    let uri = match scenario.transport {
        // In the destination's own directory: a reused guest migrates many times.
        Transport::Unix => format!("unix:{}", dst.paths.dir.join("migrate.sock").display()),
        // Port 0: QEMU picks a free port and reports it in the destination's query-migrate.
        Transport::Tcp => "tcp:127.0.0.1:0".to_string(),
    };
    dst.qmp.execute(&qapi::qmp::migrate_incoming { uri: Some(uri.clone()), channels: None, exit_on_error: None }).await?;
    let uri = match scenario.transport {
        Transport::Unix => uri,
        Transport::Tcp => {
            let port = dst.qmp.query_migrate().await?.inet_port().context("the destination did not report the TCP port it listens on")?;
            format!("tcp:127.0.0.1:{port}")
        }
    };

    let cpu_start = usage::sample(&[src.pid(), dst.pid()]);
    let t0 = Instant::now();
    let mut w = Watch::default();
    // The fault (if any) strikes while the watch runs; a link it cut is always restored.
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let injected = inject(scenario.fault, t0, &*src, dst.pid(), network, done_rx);
    let watched = async {
        let r = watch(src, scenario, &uri, t0, observe, &mut w).await;
        let _ = done_tx.send(true);
        r
    };
    let (watched, injected) = tokio::join!(watched, injected);
    // From `migrate` on, a failure is a result: QEMU may refuse, or die mid-migration.
    let outcome = match watched {
        Ok(o) => o,
        Err(e) => Outcome::Failed { reason: format!("{e:#}{}", exit_notes(src, dst)) },
    };
    let Watch { progress, mut last, last_ram_seen, postcopy_started, switch_error, observed } = w;
    // Post-copy really ran (QEMU switched), not only asked for.
    let postcopy_active = progress.iter().any(|s| s.status.starts_with("postcopy"));

    let t_end = Instant::now();
    let guest_during = guest_cpu_between(&[src.channel.cpu_ticks(), dst.channel.cpu_ticks()], t0, t_end);
    let cpu_during = CpuUsage::between(&cpu_start, &usage::sample(&[src.pid(), dst.pid()])).map(|u| u.with_guest(guest_during));
    let rate_during = rate_between(&[src.channel.rates(), dst.channel.rates()], t0, t_end);
    let mut m = Measurement::not_started(outcome.clone(), Health::default());
    m.started_at = Some(t0);
    m.ended_at = Some(t_end);
    m.cpu_percent.during = cpu_during;
    m.workload_rate = rate_during.map(|(unit, r)| WorkloadRate { unit, during: Some(r), ..Default::default() });
    m.dirty_rate_pps = progress.iter().rev().filter(|s| s.status == "active").find_map(|s| s.dirty_rate_pps);
    m.progress = progress;
    m.postcopy_started_ms = postcopy_started.map(|t| since_ms(t, t0));
    m.postcopy_switch_error = switch_error;

    if outcome == Outcome::Completed {
        // QEMU 7.2 can say "completed" before total-time and downtime are filled in.
        let deadline = Instant::now() + Duration::from_secs(3);
        while (last.total_time.unwrap_or(0) == 0 || last.downtime.unwrap_or(0) == 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match src.qmp.query_migrate().await {
                Ok(info) => last = info,
                Err(_) => break,
            }
        }
        let resume = dst.qmp.wait_event("RESUME", t0, Duration::from_secs(30)).await;
        let stop = src.qmp.wait_event("STOP", t0, Duration::from_secs(1)).await;
        m.wall_time_ms = resume.as_ref().map(|r| since_ms(r.at, t0));
        m.event_downtime_ms = match (&stop, &resume) {
            (Some(s), Some(r)) => Some(since_ms(r.at, s.at)),
            _ => None,
        };
        m.health = check_guest(dst, Some(src), "destination").await;
        if postcopy_started.is_some() {
            // Remote page-fault stall time, measured by the destination (postcopy-blocktime).
            if let Ok(info) = dst.qmp.query_migrate().await {
                m.postcopy_blocktime_ms = info.postcopy_blocktime.map(|v| v as f64);
            }
        }
    } else if matches!(scenario.fault, Fault::KillSource { .. }) && injected.as_ref().is_some_and(|i| i.struck) && !postcopy_active {
        m.health = guest_lost(src, dst, "the source QEMU was killed mid-migration").await;
    } else if postcopy_active && !dst.is_running() {
        m.health = guest_lost(src, dst, "the destination QEMU died after post-copy had started").await;
    } else if postcopy_active {
        // After the switch the guest runs on the destination, whatever became of the source.
        m.health = check_guest(dst, Some(src), "destination").await;
    } else {
        m.health = check_guest(src, Some(dst), "source").await;
    }

    // A completed migration cannot take 0 ms: 0 means QEMU never filled it in.
    m.total_time_ms = last.total_time.filter(|t| *t > 0).map(|v| v as f64);
    m.downtime_ms = last.downtime.map(|v| v as f64);
    m.setup_time_ms = last.setup_time.map(|v| v as f64);
    // After a cancel QEMU drops the RAM statistics: report the last ones it gave.
    let ram = last.ram.clone().or_else(|| last_ram_seen.clone());
    if let Some(ram) = &ram {
        m.transferred_bytes = ram.transferred;
        m.precopy_bytes = ram.precopy_bytes;
        m.postcopy_bytes = ram.postcopy_bytes;
        m.normal_pages = ram.normal;
        m.duplicate_pages = ram.duplicate;
        m.iterations = ram.dirty_sync_count;
        m.postcopy_requests = ram.postcopy_requests;
    }
    let window_end = Instant::now();
    m.guest_gap_ms = longest_gap(&[src.channel.beats(), dst.channel.beats()], t0, window_end).map(ms);
    m.events = recorded_events(&[("source", src.qmp.events()), ("destination", dst.qmp.events())], t0);
    m.evidence = Some(crate::migration_evidence::judge(scenario.strategy, settings, &observed, &m));
    if let Some(mut f) = injected {
        f.expected = scenario.fault.expected(if postcopy_active { Strategy::Postcopy } else { Strategy::Precopy }).into();
        f.as_expected = as_expected(&f, &m, postcopy_active);
        m.fault = Some(f);
    }
    Ok(m)
}

/// Strikes `fault` at its time after `t0`, unless `done` says the migration ended
/// first. Returns what it did (none for no fault or a fault struck at start-up).
async fn inject(
    fault: Fault,
    t0: Instant,
    src: &Machine,
    dst_pid: u32,
    network: Option<&crate::network::Network>,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> Option<FaultRecord> {
    let at_s = match fault {
        Fault::KillDestination { at_s } | Fault::KillSource { at_s } | Fault::CutLink { at_s, .. } => at_s,
        Fault::None | Fault::BadQemuOption | Fault::NeverReady { .. } => return None,
    };
    let src_pid = src.pid();
    let mut record = FaultRecord { fault, at_ms: None, action: String::new(), struck: false, expected: String::new(), as_expected: false };
    let strike = tokio::time::sleep_until((t0 + Duration::from_secs_f64(at_s)).into());
    tokio::select! {
        _ = strike => {}
        _ = done.wait_for(|d| *d) => {
            record.action = format!("not struck: the migration ended before {at_s} s");
            return Some(record);
        }
    }
    // The watch sees the end of a migration up to a sample later: ask QEMU itself
    // whether it is still migrating, so a finished migration's guest is not killed.
    match src.qmp.query_migrate().await.map(|i| i.status().to_string()) {
        Ok(status) if matches!(status.as_str(), "setup" | "active" | "postcopy-active" | "pre-switchover" | "device") => {}
        Ok(status) => {
            record.action = format!("not struck: the migration was {status:?} at {at_s} s");
            return Some(record);
        }
        Err(e) => {
            record.action = format!("not struck: the source QEMU did not answer at {at_s} s ({e})");
            return Some(record);
        }
    }
    record.at_ms = Some(since_ms(Instant::now(), t0));
    let kill = |pid: u32, who: &str| {
        // SAFETY: a signal to a QEMU this harness started.
        let r = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        if r == 0 {
            (true, format!("SIGKILL to the {who} QEMU (pid {pid})"))
        } else {
            (false, format!("SIGKILL to the {who} QEMU (pid {pid}) failed: {}", std::io::Error::last_os_error()))
        }
    };
    let (struck, action) = match fault {
        Fault::KillDestination { .. } => kill(dst_pid, "destination"),
        Fault::KillSource { .. } => kill(src_pid, "source"),
        Fault::CutLink { for_s, .. } => match network {
            None => (false, "not struck: cutting the link needs the test network (the sweep makes one for a cut-link cell)".into()),
            Some(net) => match net.set_loopback(false) {
                Err(e) => (false, format!("taking the link down failed: {e:#}")),
                Ok(()) => {
                    tokio::time::sleep(Duration::from_secs_f64(for_s)).await;
                    // Up again, retried: every later run needs the link. The sweep also
                    // brings it up before each run.
                    let mut up = net.set_loopback(true);
                    for _ in 0..10 {
                        if up.is_ok() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        up = net.set_loopback(true);
                    }
                    match up {
                        Ok(()) => (true, format!("the link (loopback of the QEMUs' network namespace) down for {for_s} s, then up again")),
                        Err(e) => (false, format!("the link went down for {for_s} s but could not be brought up again: {e:#}")),
                    }
                }
            },
        },
        Fault::None | Fault::BadQemuOption | Fault::NeverReady { .. } => unreachable!("returned above"),
    };
    record.struck = struck;
    record.action = action;
    Some(record)
}

/// The health of a guest that stayed on `src` because no migration happened (its
/// destination never started).
pub async fn staying_guest(src: &mut Machine) -> Health {
    check_guest(src, None, "source").await
}

/// Whether a run with a mid-migration fault ended as `Fault::expected` says.
fn as_expected(f: &FaultRecord, m: &Measurement, postcopy_active: bool) -> bool {
    if !f.struck {
        return false;
    }
    let failed = matches!(m.outcome, Outcome::Failed { .. });
    match f.fault {
        Fault::KillDestination { .. } if postcopy_active => failed && m.health.runs_on == "nowhere",
        Fault::KillDestination { .. } => failed && m.health.runs_on == "source" && m.health.healthy,
        // With post-copy running, the destination keeps the guest but cannot fetch the
        // pages left on the source: it stalls when it needs one, so it is not healthy.
        Fault::KillSource { .. } if postcopy_active => failed && !m.health.healthy,
        Fault::KillSource { .. } => failed && m.health.runs_on == "nowhere",
        Fault::CutLink { .. } => m.outcome == Outcome::Completed && m.health.healthy && m.health.runs_on == "destination",
        _ => false,
    }
}

/// The health of a guest that no QEMU can run any more: neither side says
/// `running` and no heartbeat comes from either within a few seconds.
async fn guest_lost(src: &mut Machine, dst: &mut Machine, why: &str) -> Health {
    let mut states = Vec::new();
    let mut running = false;
    for (side, m) in [("source", &mut *src), ("destination", &mut *dst)] {
        let state = if m.is_running() { m.qmp.run_state().await.unwrap_or_else(|e| format!("unknown ({e})")) } else { "exited".into() };
        running |= state == "running";
        states.push(format!("{side}: {state}"));
    }
    let last = src.channel.last_beat().map(|b| b.seq).unwrap_or(0).max(dst.channel.last_beat().map(|b| b.seq).unwrap_or(0));
    let beat = tokio::select! {
        b = src.channel.wait_beat_after(last, Duration::from_secs(5)) => b,
        b = dst.channel.wait_beat_after(last, Duration::from_secs(5)) => b,
    };
    let mut console_problems = src.console_problems();
    console_problems.extend(dst.console_problems());
    let lost = !running && beat.is_none();
    Health {
        runs_on: if lost { "nowhere".into() } else if src.is_running() { "source".into() } else { "destination".into() },
        run_state: states.join(", "),
        other_state: String::new(),
        last_source_seq: src.channel.last_beat().map(|b| b.seq),
        next_seq: beat.map(|b| b.seq),
        lost_beats: None,
        console_problems,
        console_tail: None,
        integrity: None,
        healthy: false,
        detail: if lost {
            format!("the guest is lost: {why}, and no QEMU runs it ({})", states.join(", "))
        } else {
            format!("{why}, yet the guest still answers ({}): it was expected to be lost", states.join(", "))
        },
    }
}

/// What the watch loop collects.
#[derive(Default)]
struct Watch {
    progress: Vec<Sample>,
    last: MigrationInfo,
    last_ram_seen: Option<crate::qmp::RamStats>,
    postcopy_started: Option<Instant>,
    switch_error: Option<String>,
    observed: crate::migration_evidence::Observed,
}

/// Sends `migrate`, then samples `query-migrate` every [`SAMPLE_EVERY`] until the
/// migration ends: switches to post-copy when the strategy says so, cancels a
/// pre-copy that runs past its time limit, and gives up on a post-copy that runs
/// past twice that (it cannot be cancelled without losing the guest).
async fn watch(
    src: &Machine,
    scenario: &Scenario,
    uri: &str,
    t0: Instant,
    observe: &mut (dyn FnMut(&Sample) + Send),
    w: &mut Watch,
) -> Result<Outcome> {
    src.qmp.execute(&qapi::qmp::migrate { uri: Some(uri.into()), channels: None, detach: None, resume: None }).await?;
    if scenario.strategy == Strategy::Postcopy {
        start_postcopy(src, w).await;
    }
    let timeout = scenario.timeout();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let info = src.qmp.query_migrate().await?;
        let sample = Sample::from_info(since_ms(Instant::now(), t0), &info);
        observe(&sample);
        w.observed.sample(sample.t_ms, &info);
        w.progress.push(sample);
        if info.ram.is_some() {
            w.last_ram_seen = info.ram.clone();
        }
        let status = info.status().to_string();
        w.last = info;
        match status.as_str() {
            "completed" => return Ok(Outcome::Completed),
            "failed" | "cancelled" => {
                return Ok(Outcome::Failed { reason: w.last.error_desc.clone().unwrap_or_else(|| format!("QEMU reported {status}")) });
            }
            _ => {}
        }
        if scenario.strategy == Strategy::Hybrid && w.postcopy_started.is_none() && w.switch_error.is_none() && status == "active" {
            let passes_done = w.last.ram.as_ref().and_then(|r| r.dirty_sync_count).unwrap_or(0).saturating_sub(1);
            let due = passes_done >= scenario.tuning.hybrid_passes
                || scenario.tuning.hybrid_after_s.is_some_and(|s| t0.elapsed().as_secs_f64() >= s);
            if due {
                start_postcopy(src, w).await;
            }
        }
        if status == "postcopy-paused" {
            // The stream broke during post-copy: the destination holds the running guest's
            // state and the source cannot resume it; only post-copy recovery to a live
            // destination could.
            return Ok(Outcome::Failed {
                reason: "post-copy paused: the migration stream broke after the switch to post-copy; the source cannot resume the guest and recovery needs a destination".into(),
            });
        }
        if status.starts_with("postcopy") {
            if t0.elapsed() >= timeout * 2 {
                return Ok(Outcome::Failed {
                    reason: format!(
                        "post-copy ({status}) not finished after {:.0} s, twice the time limit; post-copy cannot be cancelled \
                         without losing the guest, so the migration was abandoned",
                        t0.elapsed().as_secs_f64()
                    ),
                });
            }
            continue;
        }
        if t0.elapsed() >= timeout {
            let reason = format!(
                "not finished after {:.0} s (link {}, {} iterations, {} bytes remaining); cancelled",
                scenario.timeout_s,
                scenario.link,
                w.last.ram.as_ref().and_then(|r| r.dirty_sync_count).unwrap_or(0),
                w.last.ram.as_ref().and_then(|r| r.remaining).unwrap_or(0)
            );
            let _ = src.qmp.execute(&qapi::qmp::migrate_cancel {}).await;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                tick.tick().await;
                let info = src.qmp.query_migrate().await?;
                w.progress.push(Sample::from_info(since_ms(Instant::now(), t0), &info));
                let done = matches!(info.status(), "cancelled" | "failed" | "completed");
                w.last = info;
                if done || Instant::now() >= deadline {
                    break;
                }
            }
            if w.last.status() == "completed" {
                // It finished while we were cancelling: that is a completed migration.
                return Ok(Outcome::Completed);
            }
            return Ok(Outcome::Cancelled { reason });
        }
    }
}

/// Sends `migrate-start-postcopy`, noting when, or why QEMU refused.
async fn start_postcopy(src: &Machine, w: &mut Watch) {
    match src.qmp.execute(&qapi::qmp::migrate_start_postcopy {}).await {
        Ok(_) => w.postcopy_started = Some(Instant::now()),
        Err(e) => w.switch_error = Some(e.to_string()),
    }
}

/// "; the source QEMU exited (signal: 9 (SIGKILL)); it said: …" for each QEMU that
/// is gone, with how it ended and the last lines of its stderr.
fn exit_notes(src: &mut Machine, dst: &mut Machine) -> String {
    let mut notes = String::new();
    for (side, m) in [("source", src), ("destination", dst)] {
        if let Some(report) = m.exit_report() {
            notes.push_str(&format!("; the {side} QEMU {report}"));
        }
    }
    notes
}

fn recorded_events(sides: &[(&str, Vec<Event>)], t0: Instant) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = sides
        .iter()
        .flat_map(|(side, evs)| {
            evs.iter().filter(|e| e.at >= t0).map(move |e| RecordedEvent {
                side: side.to_string(),
                t_ms: since_ms(e.at, t0),
                name: e.name.clone(),
                data: e.data.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    out
}

/// Checks that the guest runs on `here`: QEMU says "running", heartbeats arrive
/// there and keep coming, no Oops/BUG/panic shows on either console, the guest's
/// stamped memory verifies page by page and no workload failed its self-check. On the
/// destination the first heartbeat must continue the source's sequence (a lower
/// number would mean the guest rebooted); on the source (after a cancel) the beats
/// must carry on past the last one seen. Also notes `other`'s run state (`None`: no
/// other QEMU was started, the guest never left `here`, the source).
async fn check_guest(here: &mut Machine, mut other: Option<&mut Machine>, runs_on: &str) -> Health {
    let moved = runs_on == "destination" && other.is_some();
    let asked = crate::guest::integrity::ask(&here.channel).await;
    let mut problems = Vec::new();
    let run_state = here.qmp.run_state().await.unwrap_or_else(|e| format!("unknown ({e})"));
    if let Some(report) = here.exit_report() {
        problems.push(format!("QEMU on the {runs_on} {report}"));
    } else if run_state != "running" {
        problems.push(format!("QEMU on the {runs_on} reports {run_state:?}, not \"running\""));
    }
    let other_state = match other.as_deref_mut() {
        Some(o) => {
            if o.is_running() {
                o.qmp.run_state().await.unwrap_or_else(|e| format!("unknown ({e})"))
            } else {
                "exited".to_string()
            }
        }
        None => "not started".to_string(),
    };
    if moved && other_state != "postmigrate" {
        problems.push(format!("the source reports {other_state:?}, not \"postmigrate\""));
    }
    let source = match other.as_deref() {
        Some(o) if moved => &o.channel,
        _ => &here.channel,
    };
    let last_source_seq = source.last_beat().map(|b| b.seq);
    let after = if moved { 0 } else { last_source_seq.unwrap_or(0) };
    let next = here.channel.wait_beat_after(after, Duration::from_secs(15)).await;
    let mut lost = None;
    match next {
        None => problems.push(format!("no heartbeat from the guest on the {runs_on} within 15 s")),
        Some(b) => {
            if let Some(last) = last_source_seq {
                if b.seq <= last {
                    problems.push(format!("heartbeats restarted ({} after {last}): the guest rebooted?", b.seq));
                }
                lost = Some(b.seq.saturating_sub(last + 1));
            }
            // A few more beats: the guest keeps running, not just one last gasp.
            if here.channel.wait_beat_after(b.seq + 10, Duration::from_secs(10)).await.is_none() {
                problems.push(format!("heartbeats stopped on the {runs_on} after seq {}", b.seq));
            }
        }
    }
    let mut console_problems = here.console_problems();
    if let Some(o) = other.as_deref() {
        console_problems.extend(o.console_problems());
    }
    if !console_problems.is_empty() {
        problems.push(format!("kernel trouble on the guest console: {}", console_problems[0]));
    }
    let channels: Vec<&crate::guest::GuestChannel> = std::iter::once(&here.channel).chain(other.as_deref().map(|o| &o.channel)).collect();
    let intact = crate::guest::integrity::check(asked, &here.channel, &channels, here.spec.workload, next.is_some()).await;
    problems.extend(intact.problems);
    Health {
        runs_on: runs_on.into(),
        run_state,
        other_state,
        last_source_seq,
        next_seq: next.map(|b| b.seq),
        lost_beats: lost,
        console_problems,
        console_tail: (!problems.is_empty()).then(|| here.console_tail(60)),
        integrity: intact.integrity,
        healthy: problems.is_empty(),
        detail: if problems.is_empty() { "ok".into() } else { problems.join("; ") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_print_and_round_trip() {
        for (text, f) in [
            ("none", Fault::None),
            ("kill-destination", Fault::KillDestination { at_s: 1.0 }),
            ("kill-source:2.5", Fault::KillSource { at_s: 2.5 }),
            ("cut-link", Fault::CutLink { at_s: 1.0, for_s: 2.0 }),
            ("cut-link:5", Fault::CutLink { at_s: 1.0, for_s: 5.0 }),
            ("bad-qemu-option", Fault::BadQemuOption),
            ("never-ready:3", Fault::NeverReady { give_up_s: 3.0 }),
        ] {
            assert_eq!(text.parse::<Fault>().unwrap(), f, "{text}");
            assert_eq!(f.to_string().parse::<Fault>().unwrap(), f, "{f}");
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), f);
        }
        for bad in ["kill", "kill-source:0", "kill-source:x", "cut-link:1e9", "none:1", "bad-qemu-option:2", ""] {
            let e = bad.parse::<Fault>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        // A scenario without a fault records none.
        assert!(!serde_json::to_string(&Scenario::default()).unwrap().contains("fault"));
        let cut = Scenario { fault: Fault::CutLink { at_s: 1.0, for_s: 2.0 }, ..Default::default() };
        assert!(cut.validate().unwrap_err().contains("transport = \"tcp\""));
        assert!(Scenario { transport: Transport::Tcp, ..cut }.validate().is_ok());
    }

    #[test]
    fn link_speeds() {
        let l = |s: &str| s.parse::<LinkSpeed>().unwrap().bytes_per_sec;
        assert_eq!(l("1Gbit"), Some(125_000_000));
        assert_eq!(l("100Mbit"), Some(12_500_000));
        assert_eq!(l("10Gbit"), Some(1_250_000_000));
        assert_eq!(l("2.5Gbit"), Some(312_500_000));
        assert_eq!(l("1Mbit"), Some(125_000));
        assert_eq!(l("500kbit"), Some(62_500));
        assert_eq!(l("50MiB/s"), Some(50 * 1024 * 1024));
        assert_eq!(l("1 GB/s"), Some(1_000_000_000));
        assert_eq!(l("100Mb/s"), Some(12_500_000), "lower-case b is bits");
        assert_eq!(l("100MB/s"), Some(100_000_000));
        assert_eq!(l("1gbit"), Some(125_000_000));
        assert_eq!(l("800bps"), Some(100));
        assert_eq!(l("unlimited"), None);
        assert_eq!("UNLIMITED".parse::<LinkSpeed>().unwrap().max_bandwidth(), UNLIMITED_BYTES_PER_SEC);
        assert_eq!("1Gbit".parse::<LinkSpeed>().unwrap().max_bandwidth(), 125_000_000);
    }

    #[test]
    fn bad_link_speeds_say_what_to_write() {
        for bad in ["fast", "", "Gbit", "1.2.3Gbit", "10 furlongs", "-5Mbit", "5XB/s", "5iB/s"] {
            let e = bad.parse::<LinkSpeed>().unwrap_err();
            assert!(e.contains("100Mbit") && e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert!("0Mbit".parse::<LinkSpeed>().unwrap_err().contains("out of range"));
        assert!("99Tbit".parse::<LinkSpeed>().unwrap_err().contains("out of range"));
    }

    fn features_7_2() -> Features {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qmp-7.2/query-qmp-schema.json");
        Features::from_schema(&serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }

    #[test]
    fn capability_plans_set_every_managed_capability_explicitly() {
        let f = features_7_2();
        let pre = capability_plan(Strategy::Precopy, &f).unwrap();
        assert!(pre.iter().all(|(c, on)| *c == "events" || !on), "{pre:?}");
        assert_eq!(pre.len(), MANAGED_CAPABILITIES.len() + 1);
        let post = capability_plan(Strategy::Postcopy, &f).unwrap();
        assert!(post.contains(&("postcopy-ram", true)) && post.contains(&("postcopy-blocktime", true)) && post.contains(&("multifd", false)));
        assert!(capability_plan(Strategy::Multifd, &f).unwrap().contains(&("multifd", true)));
        let mut old = f.clone();
        old.capabilities.remove("multifd");
        let e = capability_plan(Strategy::Multifd, &old).unwrap_err();
        assert!(e.contains("multifd") && e.contains("does not offer"), "{e}");
        // A capability this QEMU lacks is not sent at all.
        assert!(!capability_plan(Strategy::Precopy, &old).unwrap().iter().any(|(c, _)| *c == "multifd"));
    }

    #[test]
    fn parameter_plans_per_strategy() {
        let f = features_7_2();
        let mut sc = Scenario { strategy: Strategy::Multifd, ..Scenario::default() };
        sc.tuning.multifd_compression = Compression::Zstd;
        sc.tuning.multifd_channels = 4;
        let (src, dst) = parameter_plan(&sc, &f).unwrap();
        let (src, dst) = (serde_json::to_value(&src).unwrap(), serde_json::to_value(&dst).unwrap());
        assert_eq!(src["multifd-channels"], 4);
        assert_eq!(dst["multifd-compression"], "zstd");
        assert_eq!(src["max-bandwidth"], 125_000_000);
        assert!(dst.get("max-bandwidth").is_none());
        let (src, _) = parameter_plan(&Scenario { strategy: Strategy::Postcopy, ..Scenario::default() }, &f).unwrap();
        assert_eq!(src.max_postcopy_bandwidth, Some(125_000_000));
        let (src, _) = parameter_plan(&Scenario { strategy: Strategy::Xbzrle, ..Scenario::default() }, &f).unwrap();
        assert_eq!(src.xbzrle_cache_size, Some(64 << 20));
        let mut bare = f.clone();
        bare.parameters.remove("xbzrle-cache-size");
        let e = parameter_plan(&Scenario { strategy: Strategy::Xbzrle, ..Scenario::default() }, &bare).unwrap_err();
        assert!(e.contains("xbzrle-cache-size"), "{e}");
    }

    #[test]
    fn recorded_events_are_merged_in_time_order() {
        let t0 = Instant::now();
        let ev = |name: &str, ms: u64| Event { name: name.into(), data: Value::Null, at: t0 + Duration::from_millis(ms), qemu_time: None };
        let out = recorded_events(&[("source", vec![ev("STOP", 20)]), ("destination", vec![ev("RESUME", 35), ev("MIGRATION", 5)])], t0);
        let names: Vec<_> = out.iter().map(|e| (e.side.as_str(), e.name.as_str())).collect();
        assert_eq!(names, [("destination", "MIGRATION"), ("source", "STOP"), ("destination", "RESUME")]);
        assert_eq!(out[2].t_ms, 35.0);
    }
}
