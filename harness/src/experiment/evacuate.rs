//! Evacuating a host (`migbench evacuate`): N guests booted here, each running its
//! workload, all migrated to one destination (this host, or another over SSH) with
//! at most P migrations in flight at once. Data only: the figures over the guests
//! and the prediction beside them are `report::evacuation`'s.
//!
//! The link's bandwidth: QEMU has no cap shared by several migrations; each has its
//! own `max-bandwidth`, as each KubeVirt migration has its `bandwidthPerMigration`.
//! To emulate one link of L shared by P migrations in flight, every migration is
//! given L/P ([`share`]), so that the P in flight together never exceed L. A
//! migration keeps its share to the end, even when fewer than P are left (QEMU
//! would take a new `max-bandwidth` mid-migration, KubeVirt does not change it):
//! the same rule `migbench plan` predicts with (`rank::plan::evacuation`).
//!
//! Every guest is checked alive, healthy and intact after its migration by the
//! driver, as in every other run; its record is a `MigrationRecord` like
//! `migbench migrate`'s, placed on the evacuation's clock.

use super::qemus::Pair;
use crate::machine::command::Role;
use crate::machine::dirty_rate;
use crate::machine::hardware::{DirtyRateMode, GuestSpec};
use crate::machine::remote::RemoteHost;
use crate::machine::site::Site;
use crate::machine::Machine;
use crate::migration::driver::drive_with;
use crate::migration::measurement::{GuestMemory, Measurement, Outcome, Sample};
use crate::migration::scenario::{LinkSpeed, Scenario};
use crate::record::{MigrationRecord, SCHEMA};
use crate::setup::{Environment, Platform};
use anyhow::{Context, Result, bail};
use migbench_guest::orders::Workload;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// At most this many guests in one evacuation.
pub const MAX_GUESTS: usize = 64;

pub use crate::machine::hardware::QEMU_OVERHEAD_MIB;

/// The default of `--parallel`: one at a time, KubeVirt's 2 per node, and all at once.
pub const DEFAULT_PARALLEL: &str = "1,2,N";

/// How the link is shared, as records and the help say it.
pub const BANDWIDTH_RULE: &str = "each migration has its own max-bandwidth (as QEMU and KubeVirt's bandwidthPerMigration have it): \
     with P in flight each gets link/P, so the P together never exceed the link; a migration keeps its share to its end";

/// `--guests`: 1 to [`MAX_GUESTS`].
pub fn check_guests(n: usize) -> Result<(), String> {
    if n == 0 {
        return Err("--guests 0: an evacuation needs at least one guest on the host; give 1 to 64, e.g. --guests 3".into());
    }
    if n > MAX_GUESTS {
        return Err(format!("--guests {n}: at most {MAX_GUESTS} guests in one evacuation; give fewer, e.g. --guests 8"));
    }
    Ok(())
}

/// `--parallel`: migrations in flight at once, comma-separated; `N` is every guest
/// at once. Sorted, without repeats. A value above the number of guests is refused
/// (not clamped: it would run as N and be recorded as something it was not).
pub fn parse_parallel(text: &str, guests: usize) -> Result<Vec<usize>, String> {
    let mut ps = Vec::new();
    for item in text.split(',').map(str::trim) {
        let p = match item {
            "N" | "n" => guests,
            _ => match item.parse::<usize>() {
                Ok(p) if p >= 1 => p,
                Ok(_) => return Err(format!("--parallel {text}: 0 migrations at once moves nothing; give 1 to {guests} (the number of guests), or N for all at once, e.g. 1,2,N")),
                Err(_) => return Err(format!("--parallel {text}: {item:?} is not a number of migrations at once; give whole numbers 1 to {guests}, or N for all at once, e.g. 1,2,N")),
            },
        };
        if p > guests {
            return Err(format!(
                "--parallel {text}: {p} migrations at once, but there are only {guests} guests (--guests {guests}); give at most {guests}, or N for all at once"
            ));
        }
        ps.push(p);
    }
    ps.sort_unstable();
    ps.dedup();
    Ok(ps)
}

/// The workloads given (`--workload`, repeatable), one per guest in turn; idle when none.
pub fn workloads_for(given: &[Workload], guests: usize) -> Vec<Workload> {
    (0..guests).map(|i| if given.is_empty() { Workload::Idle } else { given[i % given.len()] }).collect()
}

/// A workload an evacuation cannot run, and why.
pub fn refuse_workload(w: &Workload) -> Result<(), String> {
    if let Workload::Http { .. } = w {
        return Err(format!(
            "--workload {w}: the http workload serves clients on a test network with a load of its own, which evacuate does not make; \
             use idle, burn, memdirty-write:MIB or another workload that needs no network"
        ));
    }
    Ok(())
}

/// Memory the guests take here and at the destination, MiB: each guest's RAM plus
/// QEMU's own. Here: every source, plus the P destinations in flight when the
/// destination is this host (a source quits once its guest has moved).
pub fn memory_needed_mib(ram_mib: u32, guests: usize, parallel: usize, destination_here: bool) -> (u64, u64) {
    let per = crate::machine::hardware::host_mib_for(ram_mib);
    let here = per * (guests + if destination_here { parallel } else { 0 }) as u64;
    let there = if destination_here { 0 } else { per * guests as u64 };
    (here, there)
}

/// Checks the guests fit: `available_here` (MemAvailable, MiB) and, for another
/// host, what it has. The error names the inputs and the fix.
pub fn check_memory(ram_mib: u32, guests: usize, parallel: usize, available_here: u64, there: Option<(&str, u64)>) -> Result<(), String> {
    let (need_here, need_there) = memory_needed_mib(ram_mib, guests, parallel, there.is_none());
    let fix = "use fewer guests (--guests) or smaller ones (--ram)";
    if need_here > available_here {
        let counted = if there.is_none() { format!("{guests} sources and up to {parallel} destinations in flight") } else { format!("{guests} sources") };
        return Err(format!(
            "--guests {guests} × --ram {ram_mib}: the guests need about {need_here} MiB on this host ({counted}, each its RAM + {QEMU_OVERHEAD_MIB} MiB for QEMU), \
             but it has {available_here} MiB available; {fix}"
        ));
    }
    if let Some((host, available)) = there {
        if need_there > available {
            return Err(format!(
                "--guests {guests} × --ram {ram_mib}: the guests need about {need_there} MiB at the destination {host} (each its RAM + {QEMU_OVERHEAD_MIB} MiB for QEMU), \
                 but it has {available} MiB available; {fix}, or free memory there"
            ));
        }
    }
    Ok(())
}

/// Each migration's link when `parallel` share `link`: link/P (unlimited stays so).
pub fn share(link: &LinkSpeed, parallel: usize) -> LinkSpeed {
    match link.bytes_per_sec {
        Some(b) if parallel > 1 => {
            let each = (b / parallel as u64).max(1);
            LinkSpeed { text: format!("{each}B/s"), bytes_per_sec: Some(each) }
        }
        _ => link.clone(),
    }
}

/// Whether a `query-migrate` status says the migration is over (its slot is free).
fn is_over(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

/// What to evacuate.
#[derive(Debug, Clone)]
pub struct EvacuationSpec {
    /// One per guest.
    pub guests: Vec<GuestSpec>,
    /// The migration of each; its link is the whole link (each gets [`share`] of it).
    pub scenario: Scenario,
    pub parallel: usize,
    /// How long the guests run their workloads before their dirty rates are measured.
    pub warmup: Duration,
    /// calc-dirty-rate's window, seconds (every guest in the same window).
    pub dirty_rate_s: f64,
    pub boot_timeout: Duration,
}

/// One guest's migration in an evacuation, on the evacuation's clock (ms since the
/// migrations were let go, before the first destination QEMU started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvacuatedGuest {
    pub name: String,
    /// When it got its slot (one of the P), and when its destination QEMU was up
    /// and connected: the time between them is the destination's start.
    pub slot_taken_ms: Option<f64>,
    pub destination_started_ms: Option<f64>,
    /// When `migrate` was sent for it.
    pub migrate_sent_ms: Option<f64>,
    /// When its destination reported RESUME: `migrate_sent_ms` + the measurement's `wall_time_ms`.
    pub running_at_destination_ms: Option<f64>,
    /// When the source first reported the migration over (completed, failed or
    /// cancelled): its slot was freed then, and the next migration could start.
    pub slot_freed_ms: Option<f64>,
    /// When the driver saw the migration end (before it checked the guest).
    pub ended_ms: Option<f64>,
    /// `max-bandwidth` as the source QEMU read it back (bytes/s): the share took effect.
    pub max_bandwidth_read_back: Option<u64>,
    pub record: MigrationRecord,
}

impl EvacuatedGuest {
    /// From `migrate` to its slot freed (to the driver's end of it when no sample
    /// said it was over): the time it held one of the P slots, ms.
    pub fn in_flight(&self) -> Option<(f64, f64)> {
        let from = self.migrate_sent_ms?;
        Some((from, self.slot_freed_ms.or(self.ended_ms)?))
    }
}

/// One evacuation, as run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvacuationRun {
    pub started_at: String,
    pub parallel: usize,
    /// The whole link.
    pub link: LinkSpeed,
    /// Each migration's `max-bandwidth`.
    pub per_migration_link: LinkSpeed,
    pub bandwidth_rule: String,
    /// "this host", or the SSH destination.
    pub destination: String,
    pub guests: Vec<EvacuatedGuest>,
}

/// Boots the guests here, measures their dirty rates, then migrates all of them to
/// `remote` (this host when `None`) with at most `spec.parallel` in flight. Every
/// QEMU belongs to a [`Site`] dropped on return, so nothing is left on error or
/// when the future is dropped (Ctrl-C). An error means the evacuation could not be
/// run (a QEMU would not start, a guest never booted); a failed migration is a result.
pub async fn evacuate(platform: &Platform, env: &Environment, pair: &Pair, remote: Option<&Arc<RemoteHost>>, spec: &EvacuationSpec) -> Result<EvacuationRun> {
    if spec.guests.is_empty() || spec.parallel == 0 || spec.parallel > spec.guests.len() {
        bail!("an evacuation of {} guests with {} at once (give 1 to {} at once)", spec.guests.len(), spec.parallel, spec.guests.len());
    }
    let started_at = crate::record::now_rfc3339();
    let here = Arc::new(Site::local(&platform.qemu, &platform.image, false)?);
    let there = match remote {
        Some(h) => Arc::new(Site::remote(h.clone(), None)?),
        None => here.clone(),
    };
    let mut sources = boot_all(&here, pair, spec).await?;
    if !spec.warmup.is_zero() {
        tokio::time::sleep(spec.warmup).await;
    }
    let before = measure_before(&sources, spec.dirty_rate_s).await;

    let link = share(&spec.scenario.link, spec.parallel);
    let scenario = Scenario { link: link.clone(), ..spec.scenario.clone() };
    let slots = Arc::new(Semaphore::new(spec.parallel));
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    let mut done: Vec<Option<Finished>> = (0..spec.guests.len()).map(|_| None).collect();
    // The guests stay where they ended until every migration is over, as on a real host.
    let mut kept = Vec::new();
    for (i, (src, boot_ms)) in sources.drain(..).enumerate() {
        // In the guests' order: each waits for a free slot (and a migration that
        // could not be run stops the evacuation before more start).
        let slot = slots.clone().acquire_owned().await.context("the evacuation's slots closed")?;
        let slot_taken = Instant::now();
        while let Some(joined) = set.try_join_next() {
            let (i, finished, machine) = joined.context("a migration task panicked")??;
            done[i] = Some(finished);
            kept.push(machine);
        }
        let (there, destination, scenario) = (there.clone(), pair.destination.clone(), scenario.clone());
        set.spawn(async move {
            let mut src = src;
            let booted = src.booted;
            let mut slot = Some(slot);
            let mut dst = there.start_on(&destination, src.spec, Role::Incoming, &format!("dst{i}")).await.with_context(|| format!("starting guest {i}'s destination QEMU"))?;
            let destination_started = Instant::now();
            // The slot frees when the source reports the migration over, as the
            // next one may then start; the guest's health check runs beside it.
            let mut free_when_over = |s: &Sample| {
                if is_over(&s.status) {
                    slot.take();
                }
            };
            let m = drive_with(&mut src, &mut dst, &scenario, &mut free_when_over, None).await.with_context(|| format!("migrating guest {i}"))?;
            let kept = match m.outcome {
                Outcome::Completed => {
                    src.quit().await;
                    dst
                }
                _ => {
                    dst.quit().await;
                    src
                }
            };
            anyhow::Ok((i, Finished { boot_ms, booted, slot_taken, destination_started, measurement: m }, kept))
        });
    }
    while let Some(joined) = set.join_next().await {
        let (i, finished, machine) = joined.context("a migration task panicked")??;
        done[i] = Some(finished);
        kept.push(machine);
    }
    for m in kept {
        m.quit().await;
    }

    let mut environment = env.with_qemus(&pair.source.qemu, &pair.destination.qemu, &pair.machine_type);
    environment.destination_host = remote.map(|h| h.record(&platform.host, &pair.source.qemu));
    let guests = done
        .into_iter()
        .zip(before)
        .enumerate()
        .map(|(i, (d, (dirty, memory)))| {
            let mut f = d.expect("every task reported");
            match dirty {
                Ok(d) => f.measurement.dirty_rate_before = Some(d),
                Err(e) => f.measurement.dirty_rate_error = Some(e),
            }
            f.measurement.guest_memory_before = memory;
            placed(i, f, t0, &environment, spec.guests[i], &scenario, &started_at)
        })
        .collect();
    let destination = remote.map_or_else(|| "this host".to_string(), |h| h.ssh.target.to_string());
    Ok(EvacuationRun { started_at, parallel: spec.parallel, link: spec.scenario.link.clone(), per_migration_link: link, bandwidth_rule: BANDWIDTH_RULE.into(), destination, guests })
}

/// Boots every guest, as many at once as this host has CPUs (TCG boots are CPU-bound).
async fn boot_all(site: &Arc<Site>, pair: &Pair, spec: &EvacuationSpec) -> Result<Vec<(Machine, f64)>> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = Arc::new(Semaphore::new(cpus));
    let mut set = JoinSet::new();
    for (i, g) in spec.guests.iter().enumerate() {
        let (site, slots, emulator, g, timeout) = (site.clone(), slots.clone(), pair.source.clone(), *g, spec.boot_timeout);
        set.spawn(async move {
            let _slot = slots.acquire_owned().await.context("the boot slots closed")?;
            let (m, ms) = site.boot_on(&emulator, g, &format!("src{i}"), timeout).await.with_context(|| format!("booting guest {i} ({})", g.workload))?;
            anyhow::Ok((i, m, ms))
        });
    }
    let mut booted: Vec<Option<(Machine, f64)>> = (0..spec.guests.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, m, ms) = joined.context("a boot task panicked")??;
        booted[i] = Some((m, ms));
    }
    Ok(booted.into_iter().map(|b| b.expect("every boot reported")).collect())
}

/// Each guest's dirty rate (QEMU's calc-dirty-rate, all in the same window) and its
/// kernel's memory: the model's inputs. A guest whose rate cannot be measured keeps why.
async fn measure_before(sources: &[(Machine, f64)], secs: f64) -> Vec<(Result<dirty_rate::DirtyRate, String>, Option<GuestMemory>)> {
    let mut pending = Vec::new();
    for (m, _) in sources {
        pending.push(dirty_rate::start(m, secs, DirtyRateMode::Auto).await);
    }
    let mut out = Vec::new();
    for ((m, _), p) in sources.iter().zip(pending) {
        let rate = match p {
            Ok(p) => dirty_rate::finish(m, p).await,
            Err(e) => Err(e),
        };
        out.push((rate.map_err(|e| format!("{e:#}")), m.channel.memory().map(|s| GuestMemory::of(&s))));
    }
    out
}

/// What a migration task hands back.
struct Finished {
    boot_ms: f64,
    booted: crate::machine::boot::Booted,
    slot_taken: Instant,
    destination_started: Instant,
    measurement: Measurement,
}

/// Guest `i`'s record, placed on the evacuation's clock `t0`.
fn placed(i: usize, f: Finished, t0: Instant, environment: &Environment, guest: GuestSpec, scenario: &Scenario, started_at: &str) -> EvacuatedGuest {
    let at = |t: Option<Instant>| t.map(|t| (t.saturating_duration_since(t0).as_secs_f64() * 1e4).round() / 10.0);
    let m = f.measurement;
    let migrate_sent_ms = at(m.started_at);
    let running_at_destination_ms = match (migrate_sent_ms, m.wall_time_ms) {
        (Some(s), Some(w)) if m.outcome == Outcome::Completed => Some(((s + w) * 10.0).round() / 10.0),
        _ => None,
    };
    let slot_freed_ms = migrate_sent_ms.and_then(|s| m.progress.iter().find(|p| is_over(&p.status)).map(|p| ((s + p.t_ms) * 10.0).round() / 10.0));
    let max_bandwidth_read_back = m.evidence.as_ref().and_then(|e| e.settings.source.parameters.get("max-bandwidth")).and_then(|v| v.as_u64());
    let record = MigrationRecord {
        record: "migration".into(),
        schema: SCHEMA,
        started_at: started_at.to_string(),
        environment: environment.clone(),
        guest,
        scenario: scenario.clone(),
        guest_boot_ms: f.boot_ms,
        guest_booted: Some(f.booted),
        measurement: m.clone(),
    };
    EvacuatedGuest {
        name: format!("guest{i}"),
        slot_taken_ms: at(Some(f.slot_taken)),
        destination_started_ms: at(Some(f.destination_started)),
        migrate_sent_ms,
        running_at_destination_ms,
        slot_freed_ms,
        ended_ms: at(m.ended_at),
        max_bandwidth_read_back,
        record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_takes_n_sorts_and_refuses_zero_and_more_than_the_guests() {
        assert_eq!(parse_parallel("1,2,N", 3), Ok(vec![1, 2, 3]));
        assert_eq!(parse_parallel("N, 1 ,3,1", 3), Ok(vec![1, 3]));
        assert_eq!(parse_parallel(DEFAULT_PARALLEL, 2), Ok(vec![1, 2]));
        let e = parse_parallel("0", 3).unwrap_err();
        assert!(e.starts_with("--parallel 0:") && e.contains("1 to 3"), "{e}");
        let e = parse_parallel("1,4", 3).unwrap_err();
        assert!(e.starts_with("--parallel 1,4:") && e.contains("only 3 guests") && e.contains("at most 3"), "{e}");
        for bad in ["two", "", "1,,2", "-1", "1.5"] {
            let e = parse_parallel(bad, 3).unwrap_err();
            assert!(e.starts_with(&format!("--parallel {bad}:")) && e.contains("1,2,N"), "{bad}: {e}");
        }
    }

    #[test]
    fn guests_are_one_to_the_limit() {
        assert!(check_guests(0).unwrap_err().starts_with("--guests 0:"));
        assert!(check_guests(MAX_GUESTS + 1).unwrap_err().contains("at most 64"));
        assert!(check_guests(1).is_ok() && check_guests(MAX_GUESTS).is_ok());
    }

    #[test]
    fn each_migration_gets_its_share_and_the_shares_sum_to_the_link() {
        let link: LinkSpeed = "1Gbit".parse().unwrap();
        assert_eq!(share(&link, 1), link);
        let s = share(&link, 3);
        assert_eq!(s.bytes_per_sec, Some(41_666_666));
        assert!(s.bytes_per_sec.unwrap() * 3 <= link.max_bandwidth() && s.bytes_per_sec.unwrap() * 3 + 3 > link.max_bandwidth());
        // Its text reads back as the same rate (records are read again).
        assert_eq!(s.text.parse::<LinkSpeed>().unwrap(), s);
        let unlimited: LinkSpeed = "unlimited".parse().unwrap();
        assert_eq!(share(&unlimited, 4), unlimited);
    }

    #[test]
    fn memory_counts_sources_and_the_destinations_in_flight() {
        // Here: 3 sources + 2 destinations in flight, each 128 + 128 MiB.
        assert_eq!(memory_needed_mib(128, 3, 2, true), (5 * 256, 0));
        assert_eq!(memory_needed_mib(128, 3, 2, false), (3 * 256, 3 * 256));
        assert!(check_memory(128, 3, 2, 5 * 256, None).is_ok());
        let e = check_memory(128, 3, 2, 5 * 256 - 1, None).unwrap_err();
        assert!(e.starts_with("--guests 3 × --ram 128:") && e.contains("1280 MiB on this host") && e.contains("--guests") && e.contains("--ram"), "{e}");
        let e = check_memory(1024, 4, 1, 100_000, Some(("ssh://root@h", 2000))).unwrap_err();
        assert!(e.contains("at the destination ssh://root@h") && e.contains("4608 MiB") && e.contains("2000 MiB available"), "{e}");
    }

    #[test]
    fn workloads_go_round_robin_and_http_is_refused() {
        let w: Vec<Workload> = ["idle", "memdirty-write:16"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(workloads_for(&w, 3), vec![w[0], w[1], w[0]]);
        assert_eq!(workloads_for(&[], 2), vec![Workload::Idle, Workload::Idle]);
        let e = refuse_workload(&"http".parse().unwrap()).unwrap_err();
        assert!(e.starts_with("--workload http") && e.contains("memdirty-write"), "{e}");
        assert!(refuse_workload(&w[1]).is_ok());
    }

    #[test]
    fn a_guest_holds_its_slot_from_migrate_until_the_source_says_it_is_over() {
        let record = crate::summary::cell_runs::testing::run("a", 0, 1000.0, true, true).migration;
        let g = |sent, freed, ended| EvacuatedGuest {
            name: "g".into(),
            slot_taken_ms: None,
            destination_started_ms: None,
            migrate_sent_ms: sent,
            running_at_destination_ms: None,
            slot_freed_ms: freed,
            ended_ms: ended,
            max_bandwidth_read_back: None,
            record: record.clone(),
        };
        assert_eq!(g(Some(10.0), Some(480.0), Some(490.0)).in_flight(), Some((10.0, 480.0)));
        assert_eq!(g(Some(10.0), None, Some(490.0)).in_flight(), Some((10.0, 490.0)));
        assert_eq!(g(None, None, None).in_flight(), None);
    }
}
