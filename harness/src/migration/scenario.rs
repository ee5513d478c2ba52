//! What to run: a migration *scenario* (strategy, transport, link speed, downtime
//! and time limits, the strategies' knobs, an injected fault). Profiles, the CLI
//! and records speak this vocabulary; nothing here talks to QEMU.

use super::strategy::{Knob, Strategy};
use crate::network::shape::LinkShape;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use super::link_speed::{LinkSpeed, UNLIMITED_BYTES_PER_SEC};

/// A fault injected into a run, to measure what failure costs and check that the
/// guest ends where QEMU's semantics say it should. Written as text in profiles and
/// records: `kill-destination[:S]`, `kill-source[:S]` (S seconds after `migrate`,
/// default 1), `cut-link[:S]` (the migration's link down for S seconds, default 2,
/// from 1 s after `migrate`), `cut-link-postcopy[:S]` (the same cut once post-copy
/// runs, from 1 s after `migrate` or the switch if later; the migration pauses and
/// is recovered), `bad-qemu-option` (the destination QEMU is started
/// with an option it does not know), `never-ready[:S]` (the guest is booted with an
/// init that does not exist; give up after S seconds, default 10), or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Fault {
    #[default]
    None,
    KillDestination { at_s: f64 },
    KillSource { at_s: f64 },
    /// `in_postcopy`: struck only once post-copy runs, which pauses the migration;
    /// the driver then recovers it (`migrate-recover`, `migrate` with `resume`).
    CutLink { at_s: f64, for_s: f64, in_postcopy: bool },
    BadQemuOption,
    NeverReady { give_up_s: f64 },
}

/// When a mid-migration fault strikes unless the profile says: after `migrate`.
pub const FAULT_AT_S: f64 = 1.0;

impl Fault {
    pub fn is_none(&self) -> bool {
        *self == Fault::None
    }

    /// Whether the fault takes the migration's link down: its QEMUs must then run in
    /// the test network and migrate over its loopback.
    pub fn cuts_link(&self) -> bool {
        matches!(self, Fault::CutLink { .. })
    }

    /// Whether the fault strikes at start-up, before any migration (a profile's
    /// sweep injects those; the driver only strikes mid-migration faults).
    pub fn strikes_at_start(&self) -> bool {
        matches!(self, Fault::BadQemuOption | Fault::NeverReady { .. })
    }

    /// What QEMU's semantics say should become of the guest (for the record), for
    /// a run of `strategy` that the fault met before the migration showed its phase.
    pub fn expected(&self, strategy: Strategy) -> &'static str {
        self.expected_when(strategy.postcopy_from_start())
    }

    /// [`Fault::expected`] for a fault that struck with post-copy running or not.
    pub fn expected_when(&self, postcopy: bool) -> &'static str {
        match self {
            Fault::None => "",
            Fault::KillDestination { .. } if postcopy => {
                "the guest is lost: once post-copy runs, the destination holds the only up-to-date state and the source cannot resume"
            }
            Fault::KillDestination { .. } => {
                "the migration fails and the source resumes: its heartbeats continue (for hybrid, only if post-copy had not started)"
            }
            Fault::KillSource { .. } if postcopy => {
                "the guest is stuck: the destination runs it but cannot fetch the pages still on the source (post-copy paused)"
            }
            Fault::KillSource { .. } => "the guest is lost: the destination never received a complete state, so it does not run",
            Fault::CutLink { in_postcopy: true, .. } => {
                "post-copy pauses on both sides (postcopy-paused) while the link is down; once it is back, migrate-recover on the destination and migrate with resume on the source carry the migration on to completion, and the guest arrives healthy and intact"
            }
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
            Fault::CutLink { for_s, in_postcopy: false, .. } => write!(f, "cut-link:{for_s}"),
            Fault::CutLink { for_s, in_postcopy: true, .. } => write!(f, "cut-link-postcopy:{for_s}"),
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
            "cut-link" => Ok(Fault::CutLink { at_s: FAULT_AT_S, for_s: secs(2.0, 600.0)?, in_postcopy: false }),
            "cut-link-postcopy" => Ok(Fault::CutLink { at_s: FAULT_AT_S, for_s: secs(2.0, 600.0)?, in_postcopy: true }),
            "bad-qemu-option" => no_arg(Fault::BadQemuOption),
            "never-ready" => Ok(Fault::NeverReady { give_up_s: secs(10.0, 3600.0)? }),
            _ => Err(format!(
                "fault {s:?} is not known: write none, kill-destination[:S], kill-source[:S], cut-link[:S], cut-link-postcopy[:S], bad-qemu-option or never-ready[:S]"
            )),
        }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Zlib,
    Zstd,
}

impl Compression {
    /// As QEMU writes it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Zstd => "zstd",
        }
    }

    pub(crate) fn qapi(self) -> qapi::qmp::MultiFDCompression {
        match self {
            Compression::None => qapi::qmp::MultiFDCompression::none,
            Compression::Zlib => qapi::qmp::MultiFDCompression::zlib,
            Compression::Zstd => qapi::qmp::MultiFDCompression::zstd,
        }
    }
}

/// QEMU's `zero-page-detection` (QEMU 9.0+): where zero pages are found. Not
/// set, QEMU keeps its own default (`multifd` on 9.0+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ZeroPageDetection {
    /// Zero pages are sent as normal pages.
    None,
    /// Found by the migration thread, as QEMU before 9.0 did.
    Legacy,
    /// Found by the multifd send threads.
    Multifd,
}

impl ZeroPageDetection {
    /// As QEMU writes it.
    pub fn name(self) -> &'static str {
        match self {
            ZeroPageDetection::None => "none",
            ZeroPageDetection::Legacy => "legacy",
            ZeroPageDetection::Multifd => "multifd",
        }
    }

    pub(crate) fn qapi(self) -> qapi::qmp::ZeroPageDetection {
        match self {
            ZeroPageDetection::None => qapi::qmp::ZeroPageDetection::none,
            ZeroPageDetection::Legacy => qapi::qmp::ZeroPageDetection::legacy,
            ZeroPageDetection::Multifd => qapi::qmp::ZeroPageDetection::multifd,
        }
    }
}

impl fmt::Display for ZeroPageDetection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The knobs of the strategies (each used only by its strategy). The same type is
/// a profile's keys, a record's fields and the command line's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct Tuning {
    /// hybrid: complete pre-copy passes before switching to post-copy.
    #[arg(long, default_value_t = Tuning::default().hybrid_passes, value_name = "N", help = "hybrid: pre-copy passes before switching to post-copy")]
    pub hybrid_passes: u64,
    /// hybrid: switch after this many seconds even if the passes are not done.
    #[arg(long = "hybrid-after", value_name = "SECS", help = "hybrid: switch to post-copy after this many seconds at the latest")]
    pub hybrid_after_s: Option<f64>,
    /// auto-converge: `cpu-throttle-initial` (%).
    #[arg(long, default_value_t = Tuning::default().throttle_initial, value_name = "PCT", help = "auto-converge: initial CPU throttle, %")]
    pub throttle_initial: u8,
    /// auto-converge: `cpu-throttle-increment` (%).
    #[arg(long, default_value_t = Tuning::default().throttle_increment, value_name = "PCT", help = "auto-converge: throttle increment, %")]
    pub throttle_increment: u8,
    /// xbzrle: `xbzrle-cache-size` in MiB.
    #[arg(long = "xbzrle-cache", default_value_t = Tuning::default().xbzrle_cache_mib, value_name = "MIB", help = "xbzrle: cache size in MiB")]
    pub xbzrle_cache_mib: u64,
    /// multifd: `multifd-channels`.
    #[arg(long, default_value_t = Tuning::default().multifd_channels, value_name = "N", help = "multifd: channels")]
    pub multifd_channels: u8,
    /// multifd: `multifd-compression`.
    #[arg(long, value_enum, default_value_t = Compression::None, help = "multifd: compression")]
    pub multifd_compression: Compression,
    /// Every strategy: `avail-switchover-bandwidth`, the bandwidth QEMU assumes for
    /// the final stop-and-copy when it decides whether the downtime limit is met
    /// (QEMU 8.2+); none leaves QEMU's estimate from the pre-copy passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long = "avail-switchover-bandwidth", value_name = "SPEED", help = "QEMU's avail-switchover-bandwidth (QEMU 8.2+): the link speed assumed for the switchover, e.g. 1Gbit")]
    pub avail_switchover_bandwidth: Option<LinkSpeed>,
    /// dirty-limit: `vcpu-dirty-limit`, MB/s each vCPU may dirty while migrating.
    #[arg(long = "vcpu-dirty-limit", default_value_t = Tuning::default().vcpu_dirty_limit_mb_s, value_name = "MB/S", help = "dirty-limit: MB/s each vCPU may dirty")]
    pub vcpu_dirty_limit_mb_s: u64,
    /// `zero-page-detection` (QEMU 9.0+), for any strategy; `multifd` needs a
    /// multifd strategy. None: not set, QEMU's own default.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_enum, help = "zero-page detection: none, legacy or multifd (QEMU 9.0+; default: QEMU's own)")]
    pub zero_page_detection: Option<ZeroPageDetection>,
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
            avail_switchover_bandwidth: None,
            // QEMU's own default.
            vcpu_dirty_limit_mb_s: 1,
            zero_page_detection: None,
        }
    }
}

/// Everything about how one migration is done: a profile's cell, a record's
/// `scenario`, and `migbench migrate`'s options are this one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct Scenario {
    #[serde(default)]
    #[arg(long, value_enum, default_value_t = Scenario::default().strategy, help = "Migration strategy")]
    pub strategy: Strategy,
    #[arg(long, value_enum, default_value_t = Scenario::default().transport, help = "Migration transport")]
    pub transport: Transport,
    #[arg(long, default_value_t = Scenario::default().link, help = "Link speed: 100Mbit, 1Gbit, 10Gbit, 50MiB/s, unlimited (sets QEMU's max-bandwidth)")]
    pub link: LinkSpeed,
    #[arg(long = "downtime-limit", default_value_t = Scenario::default().downtime_limit_ms, value_name = "MS", help = "QEMU's downtime-limit in ms")]
    pub downtime_limit_ms: u64,
    /// Past this, a pre-copy migration is cancelled (`migrate_cancel`) and recorded as
    /// such. Post-copy cannot be cancelled without losing the guest, so once in
    /// post-copy the driver waits for it to finish.
    #[arg(long = "timeout", default_value_t = Scenario::default().timeout_s, value_name = "SECS", help = "Cancel a migration not finished after this many seconds (recorded as cancelled)")]
    pub timeout_s: f64,
    #[serde(default)]
    #[command(flatten)]
    pub tuning: Tuning,
    /// Migrate over TLS, with x509 credentials made for this run (`migration::tls`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[arg(long, help = "Migrate over TLS with x509 credentials made for the run (verify-peer on both sides)")]
    pub tls: bool,
    /// Test only: the source gets TLS credentials from another CA, so the handshake
    /// must fail. Never recorded; nothing a user runs can set it.
    #[serde(skip)]
    #[arg(skip)]
    pub tls_wrong_ca: bool,
    /// A fault injected into this migration (none normally; profiles set it).
    #[serde(default, skip_serializing_if = "Fault::is_none")]
    #[arg(
        long,
        default_value_t = Fault::None,
        value_name = "FAULT",
        help = "A fault mid-migration: kill-destination[:S], kill-source[:S], cut-link[:S], cut-link-postcopy[:S] (the cuts need --transport tcp)"
    )]
    pub fault: Fault,
    /// The link to a destination on another host, shaped with tc at both ends
    /// (`machine::remote_link`): none leaves it as it is.
    #[serde(default, skip_serializing_if = "LinkShape::is_none")]
    #[arg(
        long = "link-shape",
        default_value_t = LinkShape::none(),
        value_name = "SHAPE",
        help = "With --dest: shape the link to it with tc at both ends, e.g. rate=100Mbit,rtt=20ms,jitter=2ms,loss=0.1% (none: as it is)"
    )]
    pub link_shape: LinkShape,
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
            tls: false,
            tls_wrong_ca: false,
            fault: Fault::None,
            link_shape: LinkShape::none(),
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
        if t.vcpu_dirty_limit_mb_s == 0 {
            return Err("vcpu_dirty_limit_mb_s / --vcpu-dirty-limit 0: QEMU takes at least 1 MB/s (its default)".into());
        }
        if self.strategy.saves_to_file() && self.transport != Transport::Unix {
            return Err(format!(
                "strategy = \"{}\" saves to a file and restores from it, so transport = \"{}\" would not be used: leave transport unset (unix)",
                self.strategy, self.transport
            ));
        }
        if self.downtime_limit_ms > MAX_DOWNTIME_LIMIT_MS {
            return Err(format!(
                "downtime_limit_ms / --downtime-limit {}: QEMU accepts at most {MAX_DOWNTIME_LIMIT_MS} ms (e.g. 300)",
                self.downtime_limit_ms
            ));
        }
        if t.zero_page_detection == Some(ZeroPageDetection::Multifd) && !self.strategy.spec().knobs.contains(&Knob::Multifd) {
            return Err(format!(
                "zero_page_detection / --zero-page-detection multifd: the multifd threads find zero pages only when multifd runs, \
                 but strategy = \"{}\" does not use it: choose strategy multifd (or multifd-zero-copy), or legacy detection",
                self.strategy
            ));
        }
        if self.strategy.spec().zero_copy {
            let why = if t.multifd_compression != Compression::None {
                Some(format!("multifd_compression / --multifd-compression {}: the pages must be sent as they lie in guest memory, so set none", t.multifd_compression.name()))
            } else if self.transport != Transport::Tcp {
                Some(format!("transport = \"{}\": Linux sends from guest memory (MSG_ZEROCOPY) only over TCP, so set transport = \"tcp\" (--transport tcp)", self.transport))
            } else if self.tls {
                Some("tls = true (--tls): TLS encrypts every page into a buffer of its own, so nothing can be sent from guest memory; set tls = false".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(format!("strategy = \"{}\" (zero-copy send) cannot run with {why}", self.strategy));
            }
        }
        if self.tls && self.strategy.saves_to_file() {
            return Err(format!(
                "tls = true (--tls) with strategy = \"{}\": the state goes to a file, not over a connection TLS could protect; set tls = false",
                self.strategy
            ));
        }
        if self.tls_wrong_ca && !self.tls {
            return Err("a wrong-CA TLS test needs tls = true".into());
        }
        if matches!(self.fault, Fault::CutLink { .. }) && self.transport != Transport::Tcp {
            return Err(format!(
                "fault = \"{}\" cuts the migration's network link, but transport = \"{}\" does not use one: set transport = \"tcp\"",
                self.fault, self.transport
            ));
        }
        if matches!(self.fault, Fault::CutLink { in_postcopy: true, .. }) && !self.strategy.switches_to_postcopy() {
            let postcopy: Vec<String> = Strategy::ALL.iter().filter(|s| s.switches_to_postcopy()).map(|s| s.to_string()).collect();
            return Err(format!(
                "fault = \"{}\" cuts the link once post-copy runs, but strategy = \"{}\" never switches to post-copy: set strategy to one of {}",
                self.fault,
                self.strategy,
                postcopy.join(", ")
            ));
        }
        Ok(())
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
            ("cut-link", Fault::CutLink { at_s: 1.0, for_s: 2.0, in_postcopy: false }),
            ("cut-link:5", Fault::CutLink { at_s: 1.0, for_s: 5.0, in_postcopy: false }),
            ("cut-link-postcopy", Fault::CutLink { at_s: 1.0, for_s: 2.0, in_postcopy: true }),
            ("cut-link-postcopy:4", Fault::CutLink { at_s: 1.0, for_s: 4.0, in_postcopy: true }),
            ("bad-qemu-option", Fault::BadQemuOption),
            ("never-ready:3", Fault::NeverReady { give_up_s: 3.0 }),
        ] {
            assert_eq!(text.parse::<Fault>().unwrap(), f, "{text}");
            assert_eq!(f.to_string().parse::<Fault>().unwrap(), f, "{f}");
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), f);
        }
        for bad in ["kill", "kill-source:0", "kill-source:x", "cut-link:1e9", "cut-link-postcopy:0", "none:1", "bad-qemu-option:2", ""] {
            let e = bad.parse::<Fault>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        // A scenario without a fault records none.
        assert!(!serde_json::to_string(&Scenario::default()).unwrap().contains("fault"));
        let cut = Scenario { fault: Fault::CutLink { at_s: 1.0, for_s: 2.0, in_postcopy: false }, ..Default::default() };
        assert!(cut.validate().unwrap_err().contains("transport = \"tcp\""));
        assert!(Scenario { transport: Transport::Tcp, ..cut.clone() }.validate().is_ok());
        // A cut during post-copy needs the link and a strategy that reaches post-copy.
        let cut = Scenario { fault: "cut-link-postcopy".parse().unwrap(), transport: Transport::Tcp, ..Default::default() };
        let e = cut.validate().unwrap_err();
        assert!(e.contains("never switches to post-copy") && e.contains("postcopy, hybrid, postcopy-preempt"), "{e}");
        for s in [Strategy::Postcopy, Strategy::Hybrid, Strategy::PostcopyPreempt] {
            assert!(Scenario { strategy: s, ..cut.clone() }.validate().is_ok(), "{s}");
        }
        let e = Scenario { strategy: Strategy::Postcopy, transport: Transport::Unix, ..cut }.validate().unwrap_err();
        assert!(e.contains("set transport = \"tcp\""), "{e}");
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

    #[test]
    fn zero_copy_tls_and_zero_page_detection_are_validated() {
        let zc = Scenario { strategy: Strategy::MultifdZeroCopy, transport: Transport::Tcp, ..Scenario::default() };
        assert!(zc.validate().is_ok());
        let mut zstd = zc.clone();
        zstd.tuning.multifd_compression = Compression::Zstd;
        let e = zstd.validate().unwrap_err();
        assert!(e.contains("multifd-zero-copy") && e.contains("--multifd-compression zstd") && e.contains("set none"), "{e}");
        let e = Scenario { transport: Transport::Unix, ..zc.clone() }.validate().unwrap_err();
        assert!(e.contains("transport = \"unix\"") && e.contains("only over TCP") && e.contains("transport = \"tcp\""), "{e}");
        let e = Scenario { tls: true, ..zc.clone() }.validate().unwrap_err();
        assert!(e.contains("tls = true") && e.contains("tls = false"), "{e}");

        let mut z = Scenario::default();
        z.tuning.zero_page_detection = Some(ZeroPageDetection::Multifd);
        let e = z.validate().unwrap_err();
        assert!(e.contains("zero_page_detection") && e.contains("strategy = \"precopy\"") && e.contains("choose strategy multifd"), "{e}");
        z.tuning.zero_page_detection = Some(ZeroPageDetection::Legacy);
        assert!(z.validate().is_ok(), "legacy detection works without multifd");
        let e = Scenario { tls: true, strategy: Strategy::MappedRam, ..Scenario::default() }.validate().unwrap_err();
        assert!(e.contains("tls = true") && e.contains("mapped-ram") && e.contains("file"), "{e}");
        let e = Scenario { tls_wrong_ca: true, ..Scenario::default() }.validate().unwrap_err();
        assert!(e.contains("tls = true"), "{e}");

        // Records: unset values are not written, so older records and keys do not change.
        let json = serde_json::to_value(Scenario::default()).unwrap();
        assert!(json.get("tls").is_none() && json["tuning"].get("zero_page_detection").is_none(), "{json}");
        let tls = Scenario { tls: true, tls_wrong_ca: true, ..Scenario::default() };
        let json = serde_json::to_value(&tls).unwrap();
        assert_eq!(json["tls"], true);
        assert!(json.get("tls_wrong_ca").is_none(), "a test's injection is never recorded");
        assert_eq!(serde_json::from_value::<Scenario>(json).unwrap(), Scenario { tls_wrong_ca: false, ..tls });
    }
}
