//! Running a profile: every (cell, repetition) of this shard, skipping what
//! `--resume` finds already done, with booted guests reused across cells that
//! differ only in runtime-settable variables (each run migrates it on to a fresh QEMU).

use super::profile::{Cell, Profile, Shard};
use super::qemus::{Pair, QemuPairs};
use crate::guest::channel::{guest_cpu_between, rate_between};
use crate::machine::usage::CpuUsage;
use crate::machine::cpu_sample;
use crate::machine::remote::RemoteHost;
use std::sync::Arc;
use crate::machine::command::Role;
use crate::machine::dirty_rate::DirtyRate;
use crate::machine::hardware::{BAD_QEMU_OPTION, Balloon, GuestSpec, StartFault};
use crate::machine::pool::{Afterwards, GuestPool};
use crate::machine::site::Site;
use crate::machine::boot::{BootMode, Booted};
use crate::machine::Machine;
use crate::migration::measurement::{FaultRecord, GuestMemory, Measurement, Outcome, WorkloadRate};
use crate::migration::scenario::Fault;
use crate::migration::strategy::Strategy;
use crate::migration::{driver, health};
use crate::record::file::{ResultsFile, done_keys, read_understood};
use crate::record::{MigrationRecord, RunInfo, RunRecord, SCHEMA};
use crate::load::service;
use super::service_run;
use crate::setup::{Environment, Platform};
use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The record of a fault that never struck (it does not count as expected).
fn unstruck(fault: Fault, strategy: Strategy, why: &str) -> FaultRecord {
    FaultRecord::before_migrating(fault, strategy, why.to_string(), false, false)
}

/// This process's resident memory, MiB (`VmRSS` of /proc/self/status).
pub fn own_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub shard: Shard,
    pub reuse: bool,
    pub boot_timeout: Duration,
    pub quiet: bool,
    /// The destinations run on this host instead of here (`--dest ssh://…`).
    pub remote: Option<Arc<RemoteHost>>,
}

/// One planned run.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub cell_index: usize,
    pub cell: Cell,
    pub repetition: u32,
}

/// The runs of this shard not yet in `done` (keys `cell_key/repetition`), grouped so
/// runs that can share a booted guest are adjacent (stable within a group).
pub fn plan(profile: &Profile, shard: Shard, done: &HashSet<String>) -> Vec<PlannedRun> {
    let mut runs: Vec<PlannedRun> = profile
        .shard(shard)
        .into_iter()
        .flat_map(|(i, c)| (0..profile.repetitions).map(move |r| PlannedRun { cell_index: i, cell: c.clone(), repetition: r }))
        .filter(|r| !done.contains(&planned_key(r)))
        .collect();
    let mut first_seen: Vec<(u32, u32, String)> = Vec::new();
    for r in &runs {
        if !first_seen.contains(&r.cell.boot_key()) {
            first_seen.push(r.cell.boot_key());
        }
    }
    runs.sort_by_key(|r| first_seen.iter().position(|k| *k == r.cell.boot_key()));
    runs
}

/// A rough time estimate for `--dry-run` (TCG figures from this project's machine):
/// a boot to READY with its warm-up costs about 4 s fresh and 1 s restored from a
/// snapshot (`--boot`; a snapshot not made yet costs one fresh boot more, once).
/// Each boot adds the profile's warm-up, and each run its `before` and `after`
/// windows and its dirty-rate measurement.
pub fn estimate(profile: &Profile, runs: &[PlannedRun], reuse: bool, boot: BootMode) -> Duration {
    let boot_s = match boot {
        BootMode::Fresh => 4.0,
        BootMode::Restore => 1.0,
    } + profile.warmup_s;
    let windows_s = profile.before_s + profile.after_s + profile.dirty_rate_s;
    let mut secs = 0.0;
    let mut last_key = None;
    for r in runs {
        let key = r.cell.boot_key();
        if !reuse || last_key.as_ref() != Some(&key) {
            secs += boot_s;
        }
        last_key = Some(key);
        let bytes_per_sec = r.cell.link.bytes_per_sec.unwrap_or(200_000_000).min(200_000_000) as f64;
        let ram = (r.cell.ram_mib as f64 * 1048576.0).min(110.0 * 1048576.0);
        secs += 1.5 + windows_s + (ram / bytes_per_sec).min(r.cell.timeout_s);
    }
    Duration::from_secs_f64(secs)
}

/// What a booted guest can be reused for: RAM, vCPUs and workload (see
/// [`Cell::boot_key`]), and the QEMU binary and machine type it runs on.
type BootKey = (u32, u32, String, String);

/// The boot key of a guest of `cell` running on `emulator`.
fn boot_key(cell: &Cell, emulator: &crate::machine::site::Emulator) -> BootKey {
    let (ram, vcpus, workload) = cell.boot_key();
    (ram, vcpus, workload, format!("{} -machine {}", emulator.qemu.path.display(), emulator.machine))
}

/// Runs the profile. Every finished run is appended to `DIR/results.jsonl` at once.
pub async fn run(platform: &Platform, env: &Environment, profile: &Profile, opts: &SweepOptions) -> Result<SweepOutcome> {
    let results_path = opts.out.join("results.jsonl");
    // Opening repairs a torn last line first, so what is read next is what stays.
    let mut results = ResultsFile::create(&results_path)?;
    let existing = read_understood(&results_path)?;
    if !existing.is_empty() && !opts.resume {
        bail!(
            "{} already holds {} results: pass --resume to continue that sweep, or choose another --out",
            results_path.display(),
            existing.len()
        );
    }
    let done = done_keys(&existing, &profile.name);
    let runs = plan(profile, opts.shard, &done);
    // Every QEMU the runs name, fetched before the first run: one that cannot be had
    // stops the sweep here, with the reason.
    let pairs = {
        let (default, cells): (_, Vec<Cell>) = (platform.qemu.clone(), runs.iter().map(|r| r.cell.clone()).collect());
        let remote = opts.remote.clone();
        tokio::task::spawn_blocking(move || match remote {
            Some(host) => QemuPairs::resolve_to(&default, &cells, &host),
            None => QemuPairs::resolve(&default, &cells),
        })
        .await
        .context("QEMU resolution task")??
    };
    if opts.remote.is_none() {
        if let Some(r) = runs.iter().find(|r| !r.cell.link_shape.is_none()) {
            bail!("cell {} has link_shape = \"{}\", which shapes the link to another host: run the profile with --dest ssh://…", r.cell_index, r.cell.link_shape);
        }
    }
    if let Some(host) = &opts.remote {
        // What cannot cross hosts stops the sweep before its first run, naming the cell.
        for r in &runs {
            let scenario = r.cell.scenario();
            if let Some(why) = driver::remote_refusal(&scenario) {
                bail!("cell {} ({}) cannot migrate to {}: {why}", r.cell_index, profile.cell_label(r.cell_index), host.ssh.target);
            }
            host.check(env.accel, r.cell.guest(env.accel).ram_mib).with_context(|| format!("cell {}", r.cell_index))?;
        }
    }
    let skipped = plan(profile, opts.shard, &HashSet::new()).len() - runs.len();
    let bars = Bars::new(runs.len() as u64, opts.quiet);
    let bar = &bars.sweep;
    let started = Instant::now();
    // One test network for the sweep, if any guest serves HTTP; it goes with the
    // site at this function's end (and with the harness, whatever way it ends).
    // A cut-link fault needs it too: the QEMUs then migrate over its loopback.
    let needs_network = |r: &PlannedRun| r.cell.guest(env.accel).net.is_some() || matches!(r.cell.fault, Fault::CutLink { .. });
    let site = Site::local(&platform.qemu, &platform.image, runs.iter().any(needs_network))?;
    let far = opts.remote.clone().map(|h| Site::remote(h, site.network().cloned())).transpose()?;
    let warmup = Duration::try_from_secs_f64(profile.warmup_s).unwrap_or_default();
    let mut pool = GuestPool::new(&site, opts.reuse, opts.boot_timeout, warmup);
    let mut names = 0u32;
    // Only counted: a record is on disk the moment its run ends, and holding them all
    // would grow the harness with every run of a long sweep.
    let mut ran = 0usize;
    for (i, r) in runs.iter().enumerate() {
        let label = profile.cell_label(r.cell_index);
        bar.set_message(format!("{label} (rep {})", r.repetition + 1));
        let started_at = crate::record::now_rfc3339();
        let mut next_name = || {
            names += 1;
            format!("g{names}")
        };
        let pair = pairs.of(&r.cell)?;
        let (measurement, reused, (boot_ms, booted)) = match one_run(env, profile, opts, (&site, far.as_ref()), &mut pool, r, pair, &mut next_name, &bars.run).await {
            Ok(x) => x,
            Err(e) => {
                // The sweep goes on; this run is a recorded failure and its guests are gone.
                pool.discard();
                let reason = format!("{e:#}");
                let mut m = Measurement::not_started(Outcome::Failed { reason: reason.clone() }, Default::default());
                if !r.cell.fault.is_none() {
                    m.fault = Some(unstruck(r.cell.fault, r.cell.strategy, &format!("the run failed before the fault could strike: {reason}")));
                }
                (m, false, (0.0, None))
            }
        };
        let rec = RunRecord {
            run: RunInfo {
                profile: profile.name.clone(),
                cell_index: r.cell_index,
                cell_key: r.cell.key(),
                cell: r.cell.clone(),
                repetition: r.repetition,
                reused_guest: reused,
                harness_rss_mib: own_rss_mib(),
                harness_pid: Some(std::process::id()),
            },
            migration: MigrationRecord {
                record: "migration".into(),
                schema: SCHEMA,
                started_at,
                environment: Environment {
                    destination_host: opts.remote.as_ref().map(|h| h.record(&platform.host, &pair.source.qemu)),
                    ..env.with_qemus(&pair.source.qemu, &pair.destination.qemu, &pair.machine_type)
                },
                guest: r.cell.guest(env.accel),
                scenario: r.cell.scenario(),
                guest_boot_ms: boot_ms,
                guest_booted: booted,
                measurement,
            },
        };
        results.append(&rec)?;
        let m = &rec.migration.measurement;
        let line = format!(
            "[{}/{}] {label} rep {}: {}{} total {} ms, downtime {} ms{}",
            i + 1,
            runs.len(),
            r.repetition + 1,
            m.outcome.label(),
            if m.health.healthy { "" } else { " (guest NOT healthy)" },
            m.total_time_ms.map(|v| format!("{v:.0}")).unwrap_or("-".into()),
            m.downtime_ms.map(|v| format!("{v:.0}")).unwrap_or("-".into()),
            m.evidence.as_ref().map(|e| format!("; {}", e.note)).unwrap_or_default(),
        );
        if bar.is_hidden() {
            if !opts.quiet {
                eprintln!("migbench: {line}");
            }
        } else {
            bar.println(line);
        }
        bar.inc(1);
        ran += 1;
    }
    bars.run.finish_and_clear();
    bar.finish_and_clear();
    pool.clear().await;
    Ok(SweepOutcome { ran, skipped, wall: started.elapsed(), results: results_path, reuse: opts.reuse })
}

#[derive(Debug, Clone)]
pub struct SweepOutcome {
    pub ran: usize,
    pub skipped: usize,
    pub wall: Duration,
    pub results: PathBuf,
    /// Whether booted guests were reused across runs.
    pub reuse: bool,
}

impl SweepOutcome {
    /// Runs done per minute of the sweep's wall time, whatever their outcome (0 for
    /// an empty sweep): its throughput.
    pub fn runs_per_min(&self) -> f64 {
        let minutes = self.wall.as_secs_f64() / 60.0;
        if minutes > 0.0 { self.ran as f64 / minutes } else { 0.0 }
    }
}

/// One run on the sweep's site: its guest (kept from the last run, or booted), a
/// destination, the `before` measurements, the migration, the `after` window and
/// the load's record. Returns the measurement, whether the guest was reused, and
/// its boot time.
#[allow(clippy::too_many_arguments)]
async fn one_run(
    env: &Environment,
    profile: &Profile,
    opts: &SweepOptions,
    (site, far): (&Site, Option<&Site>),
    pool: &mut GuestPool<'_, BootKey>,
    r: &PlannedRun,
    pair: &Pair,
    next_name: &mut impl FnMut() -> String,
    run_bar: &ProgressBar,
) -> Result<(Measurement, bool, (f64, Option<Booted>))> {
    // A guest bound for another host gets a NIC that can follow it there.
    let spec = GuestSpec { portable_nic: far.is_some(), ..r.cell.guest(env.accel) };
    if let Some(net) = site.network() {
        // An earlier cut-link run may have failed to bring the link back.
        net.set_loopback(true).context("bringing the test network's loopback up before the run")?;
    }
    if let Fault::NeverReady { give_up_s } = r.cell.fault {
        pool.clear().await;
        return Ok((never_ready(site, pair, spec, r, give_up_s, &next_name()).await, false, (0.0, None)));
    }
    let mut src = pool.take(&pair.source, spec, boot_key(&r.cell, &pair.source), &mut *next_name).await?;
    src.machine.set_cpu_limits(r.cell.cap_percent, r.cell.host_cores).context("setting the CPU cap / cores of the source QEMU")?;
    let mut dst = match start_destination(far.unwrap_or(site), pair, spec, r, &mut src.machine, &next_name()).await? {
        Destination::Started(dst) => dst,
        Destination::Refused(m) => {
            let ran = (m, src.reused, (src.boot_ms, Some(src.booted)));
            pool.put_back(src);
            return Ok(ran);
        }
    };
    let (before, service) = measure_before(profile, site, r, spec, &src.machine).await?;
    let mut m = migrate(site, r, &mut src.machine, &mut dst, run_bar).await?;
    after_window(profile, r, &mut m, before, &src.machine, &dst).await;
    if let Some(svc) = service {
        finish_service(opts, r, &mut m, svc).await;
    }
    let (reused, boot) = (src.reused, (src.boot_ms, Some(src.booted)));
    let mut afterwards = Afterwards::of(m.outcome == Outcome::Completed, m.health.healthy, m.health.runs_on == "source");
    if afterwards == Afterwards::Moved && dst.is_remote() {
        // Every run starts here: a guest that moved away is not brought back.
        afterwards = Afterwards::Lost;
    }
    if afterwards == Afterwards::Moved {
        // From now on the guest runs on the destination's QEMU.
        src.rekey(boot_key(&r.cell, &pair.destination));
    }
    pool.after_migration(src, dst, afterwards).await;
    Ok((m, reused, boot))
}

/// A `never-ready` run: a fresh guest whose kernel is told to run an init that does
/// not exist, given `give_up_s` to say READY. As expected when it never does.
async fn never_ready(site: &Site, pair: &Pair, spec: GuestSpec, r: &PlannedRun, give_up_s: f64, name: &str) -> Measurement {
    let spec = GuestSpec { inject: StartFault::NeverReady, ..spec };
    let (outcome, ok, detail) = match site.boot_on(&pair.source, spec, name, Duration::from_secs_f64(give_up_s)).await {
        Ok((m, _)) => {
            m.quit().await;
            let why = "the guest said READY although its init does not exist";
            (Outcome::Failed { reason: why.into() }, false, why.to_string())
        }
        Err(e) => {
            let reason = format!("{e:#}");
            // As expected only if the guest itself never got there: QEMU gone before
            // READY with the kernel's complaint on the console, or no READY in time.
            let ok = reason.contains("READY") && (reason.contains("console") || reason.contains("did not say READY"));
            (Outcome::Failed { reason }, ok, "the guest never said READY".to_string())
        }
    };
    let health = crate::migration::measurement::Health { runs_on: "nowhere".into(), detail, ..Default::default() };
    let mut m = Measurement::not_started(outcome, health);
    let action = format!("booted with rdinit=/migbench-no-such-init, waiting up to {give_up_s} s for READY");
    m.fault = Some(FaultRecord::before_migrating(r.cell.fault, r.cell.strategy, action, true, ok));
    m
}

/// The destination QEMU, or the run's record when a `bad-qemu-option` fault kept
/// it from starting (no migration; the guest runs on where it was).
#[allow(clippy::large_enum_variant)] // Both are big, and it lives for one match.
enum Destination {
    Started(Machine),
    Refused(Measurement),
}

/// Starts the destination QEMU, with the cell's CPU limits.
async fn start_destination(site: &Site, pair: &Pair, spec: GuestSpec, r: &PlannedRun, src: &mut Machine, name: &str) -> Result<Destination> {
    let fault = r.cell.fault;
    let dst_spec = match fault {
        Fault::BadQemuOption => GuestSpec { inject: StartFault::BadQemuOption, ..spec },
        _ => spec,
    };
    let mut dst = match (site.start_on(&pair.destination, dst_spec, Role::Incoming, name).await, fault) {
        (Ok(d), _) => d,
        (Err(e), Fault::BadQemuOption) => {
            let health = health::staying_guest(src).await;
            let ok = health.healthy && format!("{e:#}").contains(BAD_QEMU_OPTION);
            let mut m = Measurement::not_started(Outcome::Failed { reason: format!("starting the destination QEMU: {e:#}") }, health);
            let action = format!("started the destination QEMU with {BAD_QEMU_OPTION}");
            m.fault = Some(FaultRecord::before_migrating(fault, r.cell.strategy, action, true, ok));
            return Ok(Destination::Refused(m));
        }
        (Err(e), _) => return Err(e).context("starting the destination QEMU"),
    };
    dst.set_cpu_limits(r.cell.cap_percent, r.cell.host_cores).context("setting the CPU cap / cores of the destination QEMU")?;
    Ok(Destination::Started(dst))
}

/// What a run measures on its guest before migrating it.
struct Before {
    balloon: Balloon,
    dirty: Option<Result<DirtyRate, String>>,
    memory: Option<GuestMemory>,
    cpu: Option<CpuUsage>,
    rate: Option<(String, f64)>,
}

/// Sets the balloon, starts the load (if the cell has one), then measures the dirty
/// rate, the guest's memory and the `before` window, under the conditions the
/// migration meets. The load runs on until [`finish_service`].
async fn measure_before(profile: &Profile, site: &Site, r: &PlannedRun, spec: GuestSpec, src: &Machine) -> Result<(Before, Option<service::Running>)> {
    // A reused guest may carry an earlier cell's balloon: always set it (deflated by default).
    let balloon = src.set_balloon(r.cell.balloon_mib).await?;
    let service = match (r.cell.load_spec(), spec.net, site.network()) {
        (Some(load), Some(net), Some(network)) => Some(service_run::start(&load, net.ip, r.cell.probe_hz, network).await?),
        (Some(_), _, _) => bail!("this cell has a load but its guest has no network (a bug: the sweep makes one for guests serving HTTP)"),
        _ => None,
    };
    let dirty = if profile.dirty_rate_s > 0.0 {
        Some(crate::machine::dirty_rate::measure(src, profile.dirty_rate_s, profile.dirty_rate_mode).await.map_err(|e| format!("{e:#}")))
    } else {
        None
    };
    let memory = src.channel.memory().map(|s| GuestMemory::of(&s));
    let (cpu, rate) = measure_window(src, profile.before_s).await;
    Ok((Before { balloon, dirty, memory, cpu, rate }, service))
}

/// The migration, its progress on the run's bar; a start-up fault that did not
/// strike is recorded as such.
async fn migrate(site: &Site, r: &PlannedRun, src: &mut Machine, dst: &mut Machine, run_bar: &ProgressBar) -> Result<Measurement> {
    let ram_bytes = r.cell.ram_mib as u64 * 1024 * 1024;
    run_bar.reset();
    run_bar.set_length(ram_bytes);
    let mut show = |s: &crate::migration::measurement::Sample| {
        run_bar.set_position(ram_bytes.saturating_sub(s.remaining.unwrap_or(ram_bytes)));
        run_bar.set_message(format!("{} pass {}", s.status, s.iteration.unwrap_or(0)));
    };
    let mut m = driver::drive_with(src, dst, &r.cell.scenario(), &mut show, site.network()).await?;
    if m.fault.is_none() && !r.cell.fault.is_none() {
        // A start-up fault that did not strike (the bad option was accepted).
        m.fault = Some(unstruck(r.cell.fault, r.cell.strategy, "the fault did not strike: the run went on as if it were not there"));
    }
    Ok(m)
}

/// Files the `before` figures into `m`, measures the `after` window where the guest
/// now runs (if it is healthy), and the workload's rate over the phases.
async fn after_window(profile: &Profile, r: &PlannedRun, m: &mut Measurement, before: Before, src: &Machine, dst: &Machine) {
    m.cpu_percent.before = before.cpu;
    m.guest_memory_before = before.memory;
    match before.dirty {
        Some(Ok(d)) => m.dirty_rate_before = Some(d),
        Some(Err(e)) => m.dirty_rate_error = Some(e),
        None => {}
    }
    m.balloon = r.cell.balloon_mib.map(|_| before.balloon);
    let here = if m.health.runs_on == "destination" { dst } else { src };
    let (cpu_after, rate_after) = if m.health.healthy { measure_window(here, profile.after_s).await } else { (None, None) };
    m.cpu_percent.after = cpu_after;
    let unit = [&before.rate, &rate_after].into_iter().flatten().map(|(u, _)| u.clone()).next();
    if let Some(unit) = unit.or_else(|| m.workload_rate.as_ref().map(|w| w.unit.clone())) {
        let during = m.workload_rate.as_ref().and_then(|w| w.during);
        let (before, after) = (before.rate.map(|r| r.1), rate_after.map(|r| r.1));
        m.workload_rate = Some(WorkloadRate { unit, before, during, after, slowdown_percent: None }.with_slowdown());
    }
}

/// Stops the run's load and files its record and time series beside the results.
async fn finish_service(opts: &SweepOptions, r: &PlannedRun, m: &mut Measurement, svc: service::Running) {
    let stem = format!("{}-r{}", r.cell.key(), r.repetition);
    service_run::finish(&opts.out, &stem, r.cell.requests, r.cell.request_timeout_ms, m, svc).await;
}

/// CPU use of one QEMU and its guest workload's rate over a window of `secs`
/// (none for a zero window).
async fn measure_window(m: &Machine, secs: f64) -> (Option<CpuUsage>, Option<(String, f64)>) {
    if secs <= 0.0 {
        return (None, None);
    }
    let (a, from) = (cpu_sample(&[m]), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let to = Instant::now();
    let guest = guest_cpu_between(&[m.channel.cpu_ticks()], from, to);
    let cpu = a.zip(cpu_sample(&[m])).and_then(|(a, b)| CpuUsage::between(&a, &b)).map(|u| u.with_guest(guest));
    (cpu, rate_between(&[m.channel.rates()], from, to))
}

/// Two bars: the sweep (runs, with ETA) and the migration under way (RAM copied).
/// Hidden when quiet or when stderr is not a terminal (CI logs get plain lines).
struct Bars {
    sweep: ProgressBar,
    run: ProgressBar,
    _multi: MultiProgress,
}

impl Bars {
    fn new(runs: u64, quiet: bool) -> Bars {
        if quiet || !std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
            return Bars { sweep: ProgressBar::hidden(), run: ProgressBar::hidden(), _multi: multi };
        }
        let multi = MultiProgress::new();
        let sweep = multi.add(ProgressBar::new(runs));
        sweep.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs, ETA {eta} — {msg}")
                .expect("valid progress template"),
        );
        sweep.enable_steady_tick(Duration::from_millis(200));
        let run = multi.add(ProgressBar::new(0));
        run.set_style(
            ProgressStyle::with_template("    {bar:30} {bytes}/{total_bytes} of RAM copied, ETA {eta}, {msg}").expect("valid progress template"),
        );
        Bars { sweep, run, _multi: multi }
    }
}

fn planned_key(r: &PlannedRun) -> String {
    crate::record::run_key(&r.cell.key(), r.repetition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile::parse(
            "name = \"p\"\nrepetitions = 2\n[matrix]\nram_mib = [128, 256]\nlink = [\"1Gbit\", \"100Mbit\"]\n",
            "p.toml",
        )
        .unwrap()
    }

    #[test]
    fn plan_groups_by_boot_key_and_skips_done_runs() {
        let p = profile();
        let all = plan(&p, Shard::default(), &HashSet::new());
        assert_eq!(all.len(), 8);
        let rams: Vec<u32> = all.iter().map(|r| r.cell.ram_mib).collect();
        assert_eq!(rams, [128, 128, 128, 128, 256, 256, 256, 256]);
        let done: HashSet<String> = [format!("{}/0", p.cells[0].key()), format!("{}/1", p.cells[3].key())].into();
        let rest = plan(&p, Shard::default(), &done);
        assert_eq!(rest.len(), 6);
        assert!(!rest.iter().any(|r| r.cell_index == 0 && r.repetition == 0));
        let half = plan(&p, Shard { index: 1, count: 2 }, &HashSet::new());
        assert!(half.iter().all(|r| r.cell_index % 2 == 1) && half.len() == 4);
    }

    #[test]
    fn runs_per_minute_are_runs_over_the_wall_time() {
        let o = |ran, secs| SweepOutcome { ran, skipped: 0, wall: Duration::from_secs_f64(secs), results: PathBuf::new(), reuse: true };
        assert!((o(6, 30.0).runs_per_min() - 12.0).abs() < 1e-9);
        assert_eq!(o(0, 0.0).runs_per_min(), 0.0);
    }

    #[test]
    fn reuse_and_restores_make_the_estimate_smaller_and_windows_longer() {
        let p = profile();
        let runs = plan(&p, Shard::default(), &HashSet::new());
        for boot in [BootMode::Fresh, BootMode::Restore] {
            assert!(estimate(&p, &runs, true, boot) < estimate(&p, &runs, false, boot));
        }
        assert!(estimate(&p, &runs, false, BootMode::Restore) < estimate(&p, &runs, false, BootMode::Fresh));
        // 8 runs with 2 s more of windows each, and 4 s more of warm-up for each of 2 boots.
        let longer = Profile { before_s: p.before_s + 1.5, after_s: p.after_s + 0.5, warmup_s: p.warmup_s + 4.0, ..p.clone() };
        let more = estimate(&longer, &runs, true, BootMode::Restore) - estimate(&p, &runs, true, BootMode::Restore);
        assert_eq!(more.as_secs_f64().round(), 8.0 * 2.0 + 2.0 * 4.0);
    }
}
