//! What one migration measured (DESIGN.md §3): the outcome, QEMU's figures, the
//! progress samples, the guest's health, and what the fault (if any) did.

use super::scenario::Fault;
use super::strategy::Strategy;
use crate::machine::Balloon;
use crate::load::timeline::Window;
use crate::machine::usage::PhaseCpu;
use crate::qmp::{MigrationInfo, XbzrleCacheStats};
use std::collections::BTreeMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

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
    /// A link cut during post-copy (`cut-link-postcopy`): the pause and the recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<PostcopyRecovery>,
}

/// A post-copy migration paused by a cut link and recovered, as QEMU reported it.
/// Times are ms since `migrate`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PostcopyRecovery {
    /// When the source first reported `postcopy-paused` (a `query-migrate` reply or a
    /// MIGRATION event); none: never seen.
    pub source_paused_ms: Option<f64>,
    /// The same for the destination.
    pub destination_paused_ms: Option<f64>,
    /// When `migrate-recover` was sent to the destination, with the link back up.
    pub recover_sent_ms: Option<f64>,
    /// When post-copy ran again: the first `postcopy-active` after `migrate-recover`.
    pub resumed_ms: Option<f64>,
    /// Time paused: from the first side's `postcopy-paused` to `migrate-recover`.
    pub paused_for_ms: Option<f64>,
    /// The recovery itself: from `migrate-recover` to post-copy running again.
    pub recovery_ms: Option<f64>,
    /// The migration completed after the recovery.
    pub completed: bool,
}

impl FaultRecord {
    /// The record of a fault that struck (or not) before any migration: at start-up,
    /// or a run that failed before its fault's time.
    pub fn before_migrating(fault: Fault, strategy: Strategy, action: String, struck: bool, as_expected: bool) -> FaultRecord {
        FaultRecord { fault, at_ms: None, action, struck, expected: fault.expected(strategy).into(), as_expected, recovery: None }
    }
}

/// A duration as records keep it: ms, to 0.1 ms.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// `t` on a clock that starts at `t0`, in ms (negative before it).
pub(super) fn since_ms(t: Instant, t0: Instant) -> f64 {
    if t >= t0 { ms(t - t0) } else { -ms(t0 - t) }
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
    /// QEMU's `expected-downtime` (ms): the stop-and-copy it predicts from the
    /// dirty memory left and its bandwidth estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_downtime_ms: Option<u64>,
}

impl Sample {
    pub(super) fn from_info(t_ms: f64, i: &MigrationInfo) -> Sample {
        let ram = i.ram.clone().unwrap_or_default();
        Sample {
            t_ms,
            status: i.status().into(),
            transferred: ram.transferred,
            remaining: ram.remaining,
            dirty_rate_pps: ram.dirty_pages_rate,
            mbps: ram.mbps,
            iteration: ram.dirty_sync_count,
            expected_downtime_ms: i.expected_downtime,
        }
    }
}

/// The downtime QEMU expected when it last reported one while pre-copy was
/// active: its prediction just before the switchover, to set beside the downtime
/// it measured (`downtime_ms`). None when no active sample carried one.
pub fn expected_downtime_ms(progress: &[Sample]) -> Option<f64> {
    progress.iter().rev().filter(|s| s.status == "active").find_map(|s| s.expected_downtime_ms).map(|v| v as f64)
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

/// A measurement nobody gave an outcome is a failure: it never counts.
impl Default for Outcome {
    fn default() -> Outcome {
        Outcome::Failed { reason: "no outcome was recorded".into() }
    }
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

/// What one migration measured (DESIGN.md §3). A new figure is one field here
/// (optional, so records written before it still read); everything that reads
/// records gets it through serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Measurement {
    pub outcome: Outcome,
    pub total_time_ms: Option<f64>,
    pub downtime_ms: Option<f64>,
    /// What QEMU expected the downtime to be ([`expected_downtime_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_downtime_ms: Option<f64>,
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
    /// QEMU's own mean latency of a remote page fault on the destination
    /// (`postcopy-latency`, which QEMU reports from 10.1 on; none where it does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcopy_latency_ms: Option<f64>,
    /// CPU used per phase (`during` by the driver; `before`/`after` by a sweep's windows).
    #[serde(default)]
    pub cpu_percent: PhaseCpu,
    /// The harness's own CPU from `migrate` to completion, % of one core: this
    /// process's utime + stime, without its load, probe and link threads
    /// ([`crate::machine::harness_cpu`]). None in records written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_cpu_percent: Option<f64>,
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
    /// The file a saving strategy (mapped-ram) wrote and the destination restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<SavedFile>,
    /// The settings QEMU read back and what shows the strategy at work (or that it never did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<StrategyEvidence>,
    /// What the two QEMUs said they are before migrating (version, machine type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemus: Option<QemuSides>,
    /// When `migrate` was sent and when the driver finished, on the harness's
    /// clock: to place the migration on other clocks (the load's). Not recorded.
    #[serde(skip)]
    pub started_at: Option<Instant>,
    #[serde(skip)]
    pub ended_at: Option<Instant>,
    /// The link to a destination on another host: its shape, what each end read
    /// back, and both ends' `tc -s` counters before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<crate::machine::remote_link::LinkRecord>,
}

impl Measurement {
    /// The workload's slowdown during the migration, from a guest that arrived
    /// healthy (a broken guest's counts after the break are not work).
    pub fn slowdown_percent(&self) -> Option<f64> {
        self.workload_rate.as_ref().filter(|_| self.health.healthy).and_then(|w| w.slowdown_percent)
    }

    /// The migration's window and switchover on a clock that started at `t0` (the
    /// load's), in ms; none when it never started.
    pub fn window_since(&self, t0: Instant) -> Option<(Window, Option<(f64, f64)>)> {
        let started = self.started_at?;
        let base = started.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        let end = self.wall_time_ms.map(|w| base + w).or_else(|| self.ended_at.map(|e| e.saturating_duration_since(t0).as_secs_f64() * 1000.0))?;
        let event = |side: &str, name: &str| self.events.iter().find(|e| e.side == side && e.name == name).map(|e| base + e.t_ms);
        let switchover = match (event("source", "STOP"), event("destination", "RESUME")) {
            (Some(a), Some(b)) if b >= a => Some((a, b)),
            _ => None,
        };
        Some((Window { from_ms: base, to_ms: end }, switchover))
    }

    /// CPU time the source QEMU spent outside its vCPUs while migrating, ms: the
    /// migration thread, multifd's channels, compression, TLS. (The vCPU threads
    /// run the guest's own work, not the sending.) A time, not a rate, so that a
    /// faster migration that does the same work shows the same cost.
    pub fn source_send_cpu_ms(&self) -> Option<f64> {
        self.cpu_percent.source_during.map(|u| ((u.qemu_percent - u.vcpu_percent) * u.seconds * 10.0).max(0.0))
    }

    /// Pages the destination faulted in from the source (`postcopy-requests`), for a
    /// run that switched to post-copy; none for one that never did.
    pub fn remote_page_faults(&self) -> Option<f64> {
        self.postcopy_started_ms.and(self.postcopy_requests).map(|v| v as f64)
    }

    /// The mean vCPU stall per page the destination requested in post-copy: its
    /// `postcopy-blocktime` over the source's `postcopy-requests` (what a remote page
    /// fault cost the guest, on every QEMU that has the blocktime; QEMU's own
    /// per-fault figure, where it has one, is `postcopy_latency_ms`).
    pub fn postcopy_stall_per_request_ms(&self) -> Option<f64> {
        match (self.postcopy_blocktime_ms, self.postcopy_requests) {
            (Some(b), Some(r)) if r > 0 => Some(b / r as f64),
            _ => None,
        }
    }

    /// The bytes QEMU sent, in MiB (the unit every table shows).
    pub fn transferred_mib(&self) -> Option<f64> {
        self.transferred_bytes.map(|b| b as f64 / 1048576.0)
    }

    /// A measurement with only an outcome and a health check (nothing migrated yet).
    pub fn not_started(outcome: Outcome, health: Health) -> Measurement {
        Measurement { outcome, health, ..Default::default() }
    }
}

/// The two QEMUs of a migration as they describe themselves over QMP: the version
/// in their greeting and the machine type `qom-get /machine type` reports. The
/// evidence that a version axis and a pinned machine type took effect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QemuSides {
    pub source_version: String,
    pub destination_version: String,
    /// e.g. "pc-i440fx-7.2".
    pub source_machine: String,
    pub destination_machine: String,
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

/// The managed settings of one QEMU as it reports them after they were set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReadBack {
    pub capabilities: BTreeMap<String, bool>,
    /// Only the parameters migbench set, by QEMU's names (`multifd-channels`).
    pub parameters: BTreeMap<String, Value>,
}

/// Both sides' read-back.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Settings {
    pub source: ReadBack,
    pub destination: ReadBack,
}

/// Post-copy as QEMU reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostcopyEvidence {
    /// QEMU reported `postcopy-active` (in a `query-migrate` sample or a MIGRATION event).
    pub entered: bool,
    /// When it was first reported, ms since `migrate`.
    pub entered_ms: Option<f64>,
    /// `ram.postcopy-bytes` of the source's last reply.
    pub bytes: Option<u64>,
    /// `ram.postcopy-requests`: pages the destination asked for.
    pub page_requests: Option<u64>,
    /// `postcopy-preempt` read back on on both sides (strategy `postcopy-preempt` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempt: Option<bool>,
}

/// Auto-converge as QEMU reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThrottleEvidence {
    /// The highest `cpu-throttle-percentage` over the samples (none: never reported).
    pub max_percent: Option<u64>,
    /// Samples in which the guest was throttled.
    pub throttled_samples: usize,
}

/// Multifd as QEMU reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultifdEvidence {
    /// `multifd-channels` read back (the same on both sides, or the run failed).
    pub channels: Option<u64>,
    /// `multifd-compression` read back (none: this QEMU has no such parameter).
    pub compression: Option<String>,
    /// `ram.multifd-bytes`: bytes sent through the channels (none: not reported).
    pub bytes: Option<u64>,
    /// `zero-page-detection` read back on the source (none: not set, QEMU's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_page_detection: Option<String>,
    /// `ram.duplicate` at the end: zero pages found and sent as a flag, not a page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_pages: Option<u64>,
    /// `zero-copy-send` read back on the source (none: this QEMU has no such capability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_copy: Option<bool>,
    /// `ram.dirty-sync-missed-zero-copy`: syncs that found pages still in flight from
    /// guest memory and had to wait (QEMU counts them only with zero-copy send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_zero_copy: Option<u64>,
}

/// TLS as QEMU read it back: the credentials both sides use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsEvidence {
    /// `tls-creds` on the source (the client end) and the destination (the server end).
    pub source_creds: String,
    pub destination_creds: String,
    /// `tls-hostname`: the name the source checked the destination's certificate against.
    pub hostname: Option<String>,
}

/// A migration to a file and back: the source saved the guest to `path` (its
/// save time is QEMU's `total_time_ms`), and the destination restored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedFile {
    pub path: String,
    /// The file's length (`mapped-ram` puts each page at its offset, so about the RAM).
    pub apparent_bytes: u64,
    /// The disk blocks it uses: pages never written (zero) are holes.
    pub allocated_bytes: u64,
    /// `migrate-incoming` sent → the destination's migration completed (harness clock).
    pub restore_ms: Option<f64>,
}

/// Dirty-limit as QEMU reported it (`query-migrate`, QEMU 8.1+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirtyLimitEvidence {
    /// `vcpu-dirty-limit` read back, MB/s.
    pub limit_mb_s: Option<u64>,
    /// The highest `dirty-limit-throttle-time-per-round` seen (µs).
    pub max_throttle_us_per_round: Option<u64>,
    /// The highest `dirty-limit-ring-full-time` seen (µs).
    pub max_ring_full_us: Option<u64>,
}

/// The proof (or not) that a run's strategy took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyEvidence {
    pub strategy: Strategy,
    pub took_effect: bool,
    /// One sentence: what the strategy did, or why it never took effect.
    pub note: String,
    pub settings: Settings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcopy: Option<PostcopyEvidence>,
    /// The `xbzrle-cache` statistics of the source's last reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xbzrle: Option<XbzrleCacheStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multifd: Option<MultifdEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_limit: Option<DirtyLimitEvidence>,
    /// Present when the run migrated over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsEvidence>,
}

impl Measurement {
    /// Whether this run may be reported as its strategy: QEMU showed the strategy
    /// at work. Records written before evidence was kept are not judged (true).
    pub fn strategy_took_effect(&self) -> bool {
        self.evidence.as_ref().is_none_or(|e| e.took_effect)
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::usage::CpuUsage;

    #[test]
    fn the_source_sending_cpu_is_its_time_outside_the_vcpus() {
        let mut m = Measurement::default();
        assert_eq!(m.source_send_cpu_ms(), None, "not measured, no figure");
        let u = |qemu_percent, vcpu_percent, seconds| CpuUsage { seconds, qemu_percent, vcpu_percent, host_percent: 0.0, guest_percent: None, guest_steal_percent: None };
        // 0.5 s at 150 % with 100 % in vCPUs: 250 ms sending.
        m.cpu_percent.source_during = Some(u(150.0, 100.0, 0.5));
        assert!((m.source_send_cpu_ms().unwrap() - 250.0).abs() < 1e-9);
        // The same work done twice as fast is the same cost.
        m.cpu_percent.source_during = Some(u(200.0, 100.0, 0.25));
        assert!((m.source_send_cpu_ms().unwrap() - 250.0).abs() < 1e-9);
        // Tick-sized noise never makes it negative.
        m.cpu_percent.source_during = Some(u(90.0, 100.0, 1.0));
        assert_eq!(m.source_send_cpu_ms(), Some(0.0));
    }
}
