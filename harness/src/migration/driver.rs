//! The *driver*: runs one live migration between two QEMUs over QMP, samples its
//! progress, and measures it.

use super::fault::{conclude, inject};
use super::health::{check_guest, guest_lost};
use super::measurement::{Health, Measurement, Outcome, QemuSides, RecordedEvent, Sample, WorkloadRate, expected_downtime_ms, ms, since_ms};
use super::scenario::{Fault, Scenario, Transport};
use super::strategy::PostcopySwitch;
use crate::guest::channel::{guest_cpu_between, longest_gap, rate_between};
use crate::machine::{cpu_sample, remote_cpu_sample};
use crate::machine::harness_cpu::{OwnCpu, harness_cpu_percent};
use crate::machine::usage::CpuUsage;
use crate::machine::{Machine, Role};
use crate::qmp::{Event, MigrationInfo};
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

/// How often `query-migrate` is sampled (DESIGN.md: at most every 100 ms).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How long a post-copy paused by a `cut-link-postcopy` may stay paused after its
/// link is back before the run is failed (the recovery takes well under a second).
const RECOVERY_GRACE: Duration = Duration::from_secs(30);

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
    let qemus = qemu_sides(src, dst).await?;
    let settings = match before_migrate(src, dst, scenario).await? {
        Ok(s) => s,
        Err(outcome) => {
            let mut m = Measurement::not_started(outcome, check_guest(src, Some(dst), "source").await);
            m.qemus = Some(qemus);
            return Ok(m);
        }
    };

    if dst.is_remote() {
        if let Some(why) = remote_refusal(scenario) {
            bail!("{why}");
        }
    }
    // The link to another host, shaped as asked (or cleared), with both ends' counters.
    let mut link = match dst.remote_host().cloned() {
        Some(host) => {
            let shape = scenario.link_shape.clone();
            match tokio::task::spawn_blocking(move || host.shape_link(&shape)).await.context("link shaping task")? {
                Ok(r) => r,
                Err(e) if e.downcast_ref::<crate::network::tc::MissingQdisc>().is_some() => {
                    let mut m = Measurement::not_started(Outcome::Unsupported { reason: format!("link_shape = \"{}\": {e:#}", scenario.link_shape) }, check_guest(src, Some(dst), "source").await);
                    m.qemus = Some(qemus);
                    return Ok(m);
                }
                Err(e) => return Err(e.context(format!("shaping the link to {}", dst.migration_host()))),
            }
        }
        None if !scenario.link_shape.is_none() => {
            bail!("link_shape = \"{}\" shapes the link to another host: give the destination with --dest ssh://…", scenario.link_shape)
        }
        None => None,
    };
    // A saving strategy sends to a file, which the destination is given once the
    // save is complete (`file::restore_after`); the others to a listening destination.
    let saved_to = scenario.strategy.saves_to_file().then(|| super::file::path_in(&dst.paths.dir));
    let uri = if let Some(path) = &saved_to {
        let _ = std::fs::remove_file(path);
        format!("file:{}", path.display())
    } else {
        let uri = match scenario.transport {
            // In the destination's own directory: a reused guest migrates many times.
            Transport::Unix => format!("unix:{}", dst.paths.dir.join("migrate.sock").display()),
            // Port 0: QEMU picks a free port and reports it in the destination's query-migrate.
            // The destination's host address (its migration address when remote).
            Transport::Tcp => format!("tcp:{}:0", dst.migration_host()),
        };
        dst.qmp.execute(&qapi::qmp::migrate_incoming { uri: Some(uri.clone()), channels: None, exit_on_error: None }).await?;
        match scenario.transport {
            Transport::Unix => uri,
            Transport::Tcp => {
                let port = dst.qmp.query_migrate().await?.inet_port().context("the destination did not report the TCP port it listens on")?;
                format!("tcp:{}:{port}", dst.migration_host())
            }
        }
    };

    let cpu_start = cpu_sample(&[&*src, &*dst]);
    let source_cpu_start = cpu_sample(&[&*src]);
    let far_cpu_start = remote_cpu_sample(dst);
    let own_start = OwnCpu::now();
    let t0 = Instant::now();
    let mut w = Watch::default();
    // The fault (if any) strikes while the watch runs; a link it cut is always restored.
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let stream_port = uri.strip_prefix("tcp:").and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| p.parse().ok());
    let injected = inject(scenario.fault, t0, &*src, &*dst, network, stream_port, done_rx);
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
    let (outcome, file) = match &saved_to {
        Some(path) => super::file::restore_after(dst, path, outcome, scenario.timeout()).await,
        None => (outcome, None),
    };
    let Watch { progress, mut last, last_ram_seen, postcopy_started, switch_error, observed } = w;
    // Post-copy really ran (QEMU switched), not only asked for.
    let postcopy_active = progress.iter().any(|s| s.status.starts_with("postcopy"));

    let t_end = Instant::now();
    let harness_cpu = own_start.zip(OwnCpu::now()).and_then(|(a, b)| harness_cpu_percent(&a, &b));
    let guest_during = guest_cpu_between(&[src.channel.cpu_ticks(), dst.channel.cpu_ticks()], t0, t_end);
    let cpu_during = cpu_start.zip(cpu_sample(&[&*src, &*dst])).and_then(|(a, b)| CpuUsage::between(&a, &b)).map(|u| u.with_guest(guest_during));
    let source_cpu_during = source_cpu_start.zip(cpu_sample(&[&*src])).and_then(|(a, b)| CpuUsage::between(&a, &b));
    let rate_during = rate_between(&[src.channel.rates(), dst.channel.rates()], t0, t_end);
    let mut m = Measurement::not_started(outcome.clone(), Health::default());
    m.qemus = Some(qemus);
    m.started_at = Some(t0);
    m.ended_at = Some(t_end);
    m.cpu_percent.during = cpu_during;
    m.harness_cpu_percent = harness_cpu;
    m.cpu_percent.source_during = source_cpu_during;
    m.cpu_percent.destination_host_during = far_cpu_start.zip(remote_cpu_sample(dst)).and_then(|(a, b)| CpuUsage::between(&a, &b));
    m.workload_rate = rate_during.map(|(unit, r)| WorkloadRate { unit, during: Some(r), ..Default::default() });
    m.dirty_rate_pps = progress.iter().rev().filter(|s| s.status == "active").find_map(|s| s.dirty_rate_pps);
    m.expected_downtime_ms = expected_downtime_ms(&progress);
    m.progress = progress;
    m.file = file;
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
                m.postcopy_latency_ms = info.postcopy_latency.map(|ns| ns as f64 / 1e6);
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
    if let (Some(host), Some(l)) = (dst.remote_host().cloned(), link.take()) {
        m.link = tokio::task::spawn_blocking(move || {
            let mut l = l;
            host.link_after(&mut l);
            l
        })
        .await
        .ok();
    }
    m.evidence = Some(crate::migration::evidence::judge(scenario.strategy, settings, &observed, &m));
    m.fault = injected.map(|f| conclude(f, &m, postcopy_active));
    Ok(m)
}

/// Why `scenario` cannot run to a destination on another host yet, if it cannot:
/// what needs a file or socket both QEMUs share, a fault at the QEMUs' start-up,
/// or credentials written beside the destination.
pub fn remote_refusal(scenario: &Scenario) -> Option<String> {
    let fix = "run it with both QEMUs on this host (without --dest)";
    if scenario.transport != Transport::Tcp {
        return Some(format!("transport {} cannot reach another host: use TCP (--transport tcp, or transport = \"tcp\" in a profile)", scenario.transport));
    }
    if scenario.strategy.saves_to_file() {
        return Some(format!("strategy {} saves to a file on this host, which the other host cannot read: {fix}", scenario.strategy));
    }
    if scenario.tls {
        return Some(format!("TLS to another host is not supported yet (its credentials are made on this host): {fix}"));
    }
    // A cut is made with tc at both ends of the link, a kill by the QEMU's own host
    // (its agent, for the destination); the faults at start-up are not tried there.
    if matches!(scenario.fault, Fault::BadQemuOption | Fault::NeverReady { .. }) {
        return Some(format!("fault {} is not supported with a destination on another host yet: {fix}", scenario.fault));
    }
    None
}

/// Everything before `migrate`: what the accelerator can do, the TLS credentials,
/// the settings on both sides, read back. `Ok(Err(outcome))`: nothing is migrated,
/// and that is the run's result.
async fn before_migrate(src: &Machine, dst: &Machine, scenario: &Scenario) -> Result<Result<crate::migration::measurement::Settings, Outcome>> {
    // What the accelerator cannot do is this run's result, as what the QEMU cannot.
    let features = src.features().await?;
    if let Err(reason) = super::settings::accelerator_plan(scenario.strategy, src.spec.accel, features) {
        return Ok(Err(Outcome::Unsupported { reason }));
    }
    if let Fault::CutLink { in_postcopy: true, .. } = scenario.fault {
        for (side, m, commands) in [("source", src, &["migrate-pause"][..]), ("destination", dst, &["migrate-pause", "migrate-recover"][..])] {
            if let Some(reason) = recovery_lacks(m, commands).await? {
                let version = &m.emulator.qemu.version;
                return Ok(Err(Outcome::Unsupported { reason: format!("unsupported on QEMU {version} ({side}): {reason}, which recovering post-copy needs") }));
            }
        }
    }
    if let Err(outcome) = crate::migration::tls::prepare(src, dst, scenario).await? {
        return Ok(Err(outcome));
    }
    crate::migration::evidence::configure(src, dst, scenario).await
}

/// What `m`'s QEMU lacks to pause and recover a post-copy migration: one of
/// `commands`, or out-of-band execution (the destination's main thread is blocked
/// on a missing page while the link is down).
async fn recovery_lacks(m: &Machine, commands: &[&str]) -> Result<Option<String>> {
    let features = m.features().await?;
    if let Some(c) = commands.iter().find(|c| !features.commands.contains(**c)) {
        return Ok(Some(format!("it has no QMP command {c}")));
    }
    Ok((!m.qmp.offers_oob()).then(|| "its monitor offers no out-of-band execution".to_string()))
}

/// The versions and machine types the two QEMUs report.
/// They must be the QEMUs the run was started on (`--version` and the QMP greeting
/// agree) and run one machine type, the one asked for where it was pinned: a run
/// on anything else is not this cell's, and ends here as an error.
async fn qemu_sides(src: &Machine, dst: &Machine) -> Result<QemuSides> {
    let (source_version, source_machine) = src.identity().await.context("asking the source QEMU what it is")?;
    let (destination_version, destination_machine) = dst.identity().await.context("asking the destination QEMU what it is")?;
    for (side, m, version, machine) in [("source", src, &source_version, &source_machine), ("destination", dst, &destination_version, &destination_machine)] {
        let asked = &m.emulator;
        if version != &asked.qemu.version {
            bail!("the {side} QEMU says it is {version:?}, but {} --version said {}", asked.qemu.path.display(), asked.qemu.version);
        }
        let pinned = asked.machine != crate::machine::command::MACHINE_TYPE;
        if machine.is_empty() || (pinned && machine != &asked.machine) {
            bail!("the {side} QEMU runs machine type {machine:?}, not {}", asked.machine);
        }
    }
    if source_machine != destination_machine {
        bail!("the source runs machine type {source_machine} and the destination {destination_machine}: a migration needs the same on both");
    }
    Ok(QemuSides { source_version, destination_version, source_machine, destination_machine })
}

/// What the watch loop collects.
#[derive(Default)]
struct Watch {
    progress: Vec<Sample>,
    last: MigrationInfo,
    last_ram_seen: Option<crate::qmp::RamStats>,
    postcopy_started: Option<Instant>,
    switch_error: Option<String>,
    observed: crate::migration::evidence::Observed,
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
    match scenario.strategy.postcopy_switch() {
        PostcopySwitch::AtOnce => start_postcopy(src, w).await,
        PostcopySwitch::Never | PostcopySwitch::AfterPasses => {}
    }
    let timeout = scenario.timeout();
    let mut paused_since: Option<Instant> = None;
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
        let due = match scenario.strategy.postcopy_switch() {
            PostcopySwitch::Never | PostcopySwitch::AtOnce => false,
            PostcopySwitch::AfterPasses => {
                let passes_done = w.last.ram.as_ref().and_then(|r| r.dirty_sync_count).unwrap_or(0).saturating_sub(1);
                w.postcopy_started.is_none()
                    && w.switch_error.is_none()
                    && status == "active"
                    && (passes_done >= scenario.tuning.hybrid_passes
                        || scenario.tuning.hybrid_after_s.is_some_and(|s| t0.elapsed().as_secs_f64() >= s))
            }
        };
        if due {
            start_postcopy(src, w).await;
        }
        paused_since = if status == "postcopy-paused" { paused_since.or(Some(Instant::now())) } else { None };
        if let (Fault::CutLink { in_postcopy: true, for_s, .. }, Some(since)) = (scenario.fault, paused_since) {
            // The fault recovers it once the link is back: wait for that, not for ever.
            if since.elapsed() < Duration::from_secs_f64(for_s) + RECOVERY_GRACE {
                continue;
            }
            return Ok(Outcome::Failed {
                reason: format!(
                    "post-copy paused by the cut link and not recovered {:.0} s after the link came back",
                    RECOVERY_GRACE.as_secs_f64()
                ),
            });
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
