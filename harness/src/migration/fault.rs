//! Faults injected into a migration: striking them at their time, and judging
//! whether the guest ended where QEMU's semantics say it should.

use super::measurement::{FaultRecord, Measurement, Outcome, PostcopyRecovery, Sample, since_ms};
use super::scenario::Fault;
use crate::machine::Machine;
use crate::machine::remote::RemoteHost;
use crate::network::Network;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long each side gets to report `postcopy-paused` after `migrate-pause`, and
/// post-copy to start before a `cut-link-postcopy` gives up striking.
const WAIT_FOR_STATE: Duration = Duration::from_secs(20);

/// Strikes `fault` at its time after `t0`, unless `done` says the migration ended
/// first. Returns what it did (none for no fault or a fault struck at start-up).
pub(super) async fn inject(
    fault: Fault,
    t0: Instant,
    src: &Machine,
    dst: &Machine,
    network: Option<&Network>,
    stream_port: Option<u16>,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> Option<FaultRecord> {
    let at_s = match fault {
        Fault::KillDestination { at_s } | Fault::KillSource { at_s } | Fault::CutLink { at_s, .. } => at_s,
        Fault::None | Fault::BadQemuOption | Fault::NeverReady { .. } => return None,
    };
    let mut record =
        FaultRecord { fault, at_ms: None, action: String::new(), struck: false, expected: String::new(), as_expected: false, recovery: None };
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
    let in_postcopy = matches!(fault, Fault::CutLink { in_postcopy: true, .. });
    let status = if in_postcopy { status_once_in_postcopy(src, dst, t0, &done).await } else { src.qmp.query_migrate().await.map(|i| i.status().to_string()) };
    match status {
        Ok(status) if in_postcopy && status != "postcopy-active" => {
            record.action = format!("not struck: post-copy was not running ({status:?}) at {at_s} s or within {} s after", WAIT_FOR_STATE.as_secs());
            return Some(record);
        }
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
    let (struck, action) = match fault {
        Fault::KillDestination { .. } => killed(dst.sigkill("destination").await),
        Fault::KillSource { .. } => killed(src.sigkill("source").await),
        Fault::CutLink { for_s, in_postcopy, .. } => match Cut::of(dst, network, stream_port) {
            Err(why) => (false, format!("not struck: {why}")),
            Ok(cut) if in_postcopy => {
                let mut recovery = PostcopyRecovery::default();
                let done = cut_and_recover(src, dst, &cut, for_s, t0, &mut recovery).await;
                record.recovery = Some(recovery);
                done
            }
            Ok(cut) => match cut.down().await {
                Ok(()) => {
                    tokio::time::sleep(Duration::from_secs_f64(for_s)).await;
                    match cut.up().await {
                        Ok(()) => (true, format!("{} cut for {for_s} s, then restored", cut.what())),
                        Err(e) => (false, format!("{} cut for {for_s} s but could not be restored: {e:#}", cut.what())),
                    }
                }
                Err(e) => {
                    let _ = cut.up().await;
                    (false, format!("cutting {} failed: {e:#}", cut.what()))
                }
            },
        },
        Fault::None | Fault::BadQemuOption | Fault::NeverReady { .. } => unreachable!("returned above"),
    };
    record.struck = struck;
    record.action = action;
    Some(record)
}


/// A kill's outcome as a fault record says it: struck, and what was done.
fn killed(r: anyhow::Result<String>) -> (bool, String) {
    match r {
        Ok(what) => (true, what),
        Err(e) => (false, format!("{e:#}")),
    }
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
        Fault::CutLink { in_postcopy: true, .. } => {
            let r = f.recovery.as_ref();
            m.outcome == Outcome::Completed
                && m.health.healthy
                && m.health.runs_on == "destination"
                && r.is_some_and(|r| r.source_paused_ms.is_some() && r.destination_paused_ms.is_some() && r.resumed_ms.is_some() && r.completed)
        }
        Fault::CutLink { .. } => m.outcome == Outcome::Completed && m.health.healthy && m.health.runs_on == "destination",
        _ => false,
    }
}

/// Where a `cut-link` is made: the loopback of the QEMUs' network namespace when
/// both run here, or the migration stream at both ends of the link to the
/// destination's host (`RemoteHost::cut_stream`: tc drops its packets, the rest of
/// the link, SSH included, goes on).
enum Cut<'a> {
    Loopback(&'a Network),
    Stream { host: Arc<RemoteHost>, port: u16 },
}

impl<'a> Cut<'a> {
    /// The cut for this migration, or why there is none.
    fn of(dst: &Machine, network: Option<&'a Network>, stream_port: Option<u16>) -> Result<Cut<'a>, String> {
        match (dst.remote_host(), network) {
            (Some(host), _) => match stream_port {
                Some(port) => Ok(Cut::Stream { host: host.clone(), port }),
                None => Err("the migration has no TCP port to cut".into()),
            },
            (None, Some(net)) => Ok(Cut::Loopback(net)),
            (None, None) => Err("cutting the link needs the test network (the sweep makes one for a cut-link cell)".into()),
        }
    }

    fn what(&self) -> String {
        match self {
            Cut::Loopback(_) => "the link (loopback of the QEMUs' network namespace)".into(),
            Cut::Stream { host, port } => format!("the migration stream to {} port {port} (dropped by tc at both ends of the link)", host.ssh.target),
        }
    }

    async fn down(&self) -> anyhow::Result<()> {
        match self {
            Cut::Loopback(net) => net.set_loopback(false),
            Cut::Stream { host, port } => {
                let (host, port) = (host.clone(), *port);
                tokio::task::spawn_blocking(move || host.cut_stream(port, true)).await?
            }
        }
    }

    /// Restores the link, retried: every later run needs it (the sweep also brings
    /// the loopback up before each run).
    async fn up(&self) -> anyhow::Result<()> {
        let once = || async {
            match self {
                Cut::Loopback(net) => net.set_loopback(true),
                Cut::Stream { host, port } => {
                    let (host, port) = (host.clone(), *port);
                    tokio::task::spawn_blocking(move || host.cut_stream(port, false)).await?
                }
            }
        };
        let mut up = once().await;
        for _ in 0..10 {
            if up.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            up = once().await;
        }
        up
    }

    /// A URI for the resumed post-copy, on a port the kernel just handed out where
    /// the destination listens (the destination cannot be asked which port it
    /// picked: `query-migrate` waits for its main thread).
    async fn recovery_uri(&self) -> Result<String, String> {
        match self {
            Cut::Loopback(net) => {
                let port = net
                    .enter(|| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()))
                    .map_err(|e| format!("entering the test network for a free port: {e:#}"))?
                    .map_err(|e| format!("finding a free port in the test network: {e}"))?;
                Ok(format!("tcp:127.0.0.1:{port}"))
            }
            Cut::Stream { host, .. } => {
                let h = host.clone();
                let port = tokio::task::spawn_blocking(move || h.free_port())
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("finding a free port on {}: {e:#}", host.ssh.target))?;
                Ok(format!("tcp:{}:{port}", crate::host::ssh::uri_host(&host.migrate_address)))
            }
        }
    }
}

/// The source's migration status once post-copy runs on both sides (a hybrid
/// switches late), or the status it ended in, or the last one seen after
/// [`WAIT_FOR_STATE`]. Both sides: the source says `postcopy-active` as soon as it
/// sends the switch, but until the destination has loaded the device state and runs
/// the guest (its RESUME event) a broken stream fails its incoming migration
/// outright, and that QEMU exits: there is nothing to pause yet.
async fn status_once_in_postcopy(
    src: &Machine,
    dst: &Machine,
    t0: Instant,
    done: &tokio::sync::watch::Receiver<bool>,
) -> Result<String, crate::qmp::QmpError> {
    let deadline = Instant::now() + WAIT_FOR_STATE;
    loop {
        let status = src.qmp.query_migrate().await?.status().to_string();
        let dst_runs = dst.qmp.events().iter().any(|e| e.at >= t0 && e.name == "RESUME");
        let running = status == "postcopy-active" && dst_runs;
        if running || !matches!(status.as_str(), "setup" | "active" | "postcopy-active") || *done.borrow() || Instant::now() >= deadline {
            return Ok(if status == "postcopy-active" && !running { "postcopy-active on the source only".into() } else { status });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Cuts the link during post-copy, waits for the migration to pause on both sides,
/// restores the link after `for_s` and recovers the migration. Notes in `r` when
/// each side paused and when `migrate-recover` was sent; the driver's watch sees
/// the migration on to its end.
///
/// Taking the loopback down alone does not pause QEMU: TCP retransmits into the
/// dead link for many minutes (`tcp_retries2`) before either end gives up, so the
/// stream only stalls and goes on when the link returns (the `cut-link` fault).
/// What a long outage ends in, both ends declaring the stream broken, is what
/// `migrate-pause` does on each side: `shutdown(2)` of its migration socket. The
/// driver sends it to both QEMUs while the link is down, and recovery goes through
/// a new connection over the restored link.
///
/// The destination's main thread is blocked by then (it touched a page still on the
/// source), so it would answer no ordinary command: `migrate-pause` and
/// `migrate-recover` go out of band, and its pause is read from its MIGRATION event.
async fn cut_and_recover(src: &Machine, dst: &Machine, cut: &Cut<'_>, for_s: f64, t0: Instant, r: &mut PostcopyRecovery) -> (bool, String) {
    let down_at = Instant::now();
    if let Err(e) = cut.down().await {
        let _ = cut.up().await;
        return (false, format!("cutting {} failed: {e:#}", cut.what()));
    }
    let mut steps = vec![format!("{} cut", cut.what())];
    for (side, m) in [("source", src), ("destination", dst)] {
        if let Err(e) = m.qmp.execute_oob("migrate-pause", Value::Null).await {
            steps.push(format!("migrate-pause on the {side} refused ({e})"));
        }
    }
    let (src_paused, dst_paused) = tokio::join!(source_paused(src, t0), destination_paused(dst, down_at, t0));
    r.source_paused_ms = src_paused;
    r.destination_paused_ms = dst_paused;
    steps.push(format!(
        "migrate-pause on both sides: postcopy-paused on the source {}, on the destination {}",
        seen_at(src_paused),
        seen_at(dst_paused)
    ));
    tokio::time::sleep_until((down_at + Duration::from_secs_f64(for_s)).into()).await;
    if let Err(e) = cut.up().await {
        steps.push(format!("the link could not be restored after {for_s} s: {e:#}"));
        return (false, steps.join("; "));
    }
    steps.push(format!("the link restored after {for_s} s"));
    match recover(src, dst, cut, t0, r).await {
        Ok(uri) => steps.push(format!("migrate-recover on the destination ({uri}), migrate with resume on the source")),
        Err(e) => steps.push(format!("recovery failed: {e}")),
    }
    (true, steps.join("; "))
}

fn seen_at(t: Option<f64>) -> String {
    t.map(|t| format!("at {t:.0} ms")).unwrap_or_else(|| format!("never within {} s", WAIT_FOR_STATE.as_secs()))
}

/// When the source first reports `postcopy-paused` (ms since `t0`), polled; none
/// within [`WAIT_FOR_STATE`].
async fn source_paused(src: &Machine, t0: Instant) -> Option<f64> {
    let deadline = Instant::now() + WAIT_FOR_STATE;
    while Instant::now() < deadline {
        if src.qmp.query_migrate().await.is_ok_and(|i| i.status() == "postcopy-paused") {
            return Some(since_ms(Instant::now(), t0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// When the destination's MIGRATION event said `postcopy-paused` after `since`.
async fn destination_paused(dst: &Machine, since: Instant, t0: Instant) -> Option<f64> {
    let deadline = Instant::now() + WAIT_FOR_STATE;
    while Instant::now() < deadline {
        let paused = dst.qmp.events().into_iter().find(|e| {
            e.at >= since && e.name == "MIGRATION" && e.data.get("status").and_then(Value::as_str) == Some("postcopy-paused")
        });
        if let Some(e) = paused {
            return Some(since_ms(e.at, t0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Resumes a paused post-copy: the destination listens anew (`migrate-recover`) and
/// the source connects to it (`migrate` with `resume`). Returns the URI.
async fn recover(src: &Machine, dst: &Machine, cut: &Cut<'_>, t0: Instant, r: &mut PostcopyRecovery) -> Result<String, String> {
    let uri = cut.recovery_uri().await?;
    r.recover_sent_ms = Some(since_ms(Instant::now(), t0));
    dst.qmp.execute_oob("migrate-recover", json!({ "uri": uri })).await.map_err(|e| format!("migrate-recover on the destination: {e}"))?;
    src.qmp.execute_json("migrate", json!({"uri": uri, "resume": true})).await.map_err(|e| format!("migrate with resume on the source: {e}"))?;
    Ok(uri)
}

/// Completes a fault's record once the run is over: what should have followed, the
/// recovery as QEMU reported it (MIGRATION events of both sides, the source's
/// samples), and whether the run ended as expected.
pub(super) fn conclude(mut f: FaultRecord, m: &Measurement, postcopy_active: bool) -> FaultRecord {
    f.expected = f.fault.expected_when(postcopy_active).into();
    f.recovery = f.recovery.map(|r| recovery_seen(r, m));
    f.as_expected = as_expected(&f, m, postcopy_active);
    f
}

/// The pause and recovery: the polled times in `r` sharpened by the MIGRATION events
/// and samples, and each duration computed here only.
fn recovery_seen(mut r: PostcopyRecovery, m: &Measurement) -> PostcopyRecovery {
    let event = |side: &str, status: &str, after: f64| {
        m.events
            .iter()
            .filter(|e| e.side == side && e.name == "MIGRATION" && e.t_ms >= after)
            .find(|e| e.data.get("status").and_then(Value::as_str) == Some(status))
            .map(|e| e.t_ms)
    };
    let sample = |status: &str, after: f64| m.progress.iter().find(|s: &&Sample| s.status == status && s.t_ms >= after).map(|s| s.t_ms);
    let earliest = |a: Option<f64>, b: Option<f64>| [a, b].into_iter().flatten().reduce(f64::min);
    r.source_paused_ms = earliest(r.source_paused_ms, earliest(event("source", "postcopy-paused", 0.0), sample("postcopy-paused", 0.0)));
    r.destination_paused_ms = earliest(r.destination_paused_ms, event("destination", "postcopy-paused", 0.0));
    if let Some(sent) = r.recover_sent_ms {
        r.resumed_ms = earliest(earliest(event("source", "postcopy-active", sent), event("destination", "postcopy-active", sent)), sample("postcopy-active", sent));
        // To 0.1 ms, as every time in a record.
        let tenth = |v: f64| (v * 10.0).round() / 10.0;
        r.paused_for_ms = earliest(r.source_paused_ms, r.destination_paused_ms).map(|p| tenth(sent - p));
        r.recovery_ms = r.resumed_ms.map(|t| tenth(t - sent));
    }
    r.completed = r.resumed_ms.is_some() && m.outcome == Outcome::Completed;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::measurement::{Health, RecordedEvent};

    fn migration_event(side: &str, t_ms: f64, status: &str) -> RecordedEvent {
        RecordedEvent { side: side.into(), t_ms, name: "MIGRATION".into(), data: json!({ "status": status }) }
    }

    fn sample(t_ms: f64, status: &str) -> Sample {
        Sample { t_ms, status: status.into(), transferred: None, remaining: None, dirty_rate_pps: None, mbps: None, iteration: None, expected_downtime_ms: None }
    }

    /// A completed, healthy run recovered from a cut during post-copy, as QEMU reports it.
    fn recovered() -> (FaultRecord, Measurement) {
        let fault: Fault = "cut-link-postcopy:2".parse().unwrap();
        let polled = PostcopyRecovery { source_paused_ms: Some(1060.0), destination_paused_ms: Some(1080.0), recover_sent_ms: Some(3050.0), ..Default::default() };
        let f = FaultRecord { fault, at_ms: Some(1000.0), action: "cut".into(), struck: true, expected: String::new(), as_expected: false, recovery: Some(polled) };
        let mut m = Measurement::not_started(Outcome::Completed, Health { healthy: true, runs_on: "destination".into(), ..Default::default() });
        m.events = vec![
            migration_event("source", 40.0, "postcopy-active"),
            migration_event("source", 1010.0, "postcopy-paused"),
            migration_event("destination", 1030.0, "postcopy-paused"),
            migration_event("source", 3060.0, "postcopy-recover"),
            migration_event("destination", 3090.0, "postcopy-active"),
            migration_event("source", 3100.0, "postcopy-active"),
        ];
        m.progress = vec![sample(50.0, "postcopy-active"), sample(1050.0, "postcopy-paused"), sample(3150.0, "postcopy-active"), sample(9000.0, "completed")];
        (f, m)
    }

    #[test]
    fn a_recovery_is_timed_from_qemus_own_events_and_judged() {
        let (f, m) = recovered();
        let f = conclude(f, &m, true);
        let r = f.recovery.as_ref().unwrap();
        // The events are earlier than the polls, and each duration is from them.
        assert_eq!((r.source_paused_ms, r.destination_paused_ms), (Some(1010.0), Some(1030.0)));
        assert_eq!(r.resumed_ms, Some(3090.0), "the first postcopy-active after migrate-recover, not the one before the cut");
        assert_eq!((r.paused_for_ms, r.recovery_ms), (Some(2040.0), Some(40.0)));
        assert!(r.completed && f.as_expected, "{f:?}");
        assert!(f.expected.contains("postcopy-paused") && f.expected.contains("migrate-recover"), "{}", f.expected);
    }

    #[test]
    fn a_recovery_that_did_not_happen_is_not_as_expected() {
        // Never resumed: the migration failed while paused.
        let (f, mut m) = recovered();
        m.events.retain(|e| e.t_ms < 3000.0);
        m.progress.truncate(2);
        m.outcome = Outcome::Failed { reason: "post-copy paused by the cut link and not recovered".into() };
        m.health.healthy = false;
        let f = conclude(f, &m, true);
        let r = f.recovery.as_ref().unwrap();
        assert!(r.resumed_ms.is_none() && r.recovery_ms.is_none() && !r.completed && !f.as_expected, "{f:?}");
        // Completed and healthy, but QEMU never showed a pause: not this fault's semantics.
        let (mut f, mut m) = recovered();
        f.recovery = Some(PostcopyRecovery { recover_sent_ms: Some(3050.0), ..Default::default() });
        m.events.retain(|e| e.data["status"] != "postcopy-paused");
        m.progress.retain(|s| s.status != "postcopy-paused");
        let f = conclude(f, &m, true);
        assert!(f.recovery.as_ref().unwrap().source_paused_ms.is_none() && !f.as_expected, "{f:?}");
        // A fault that did not strike never counts.
        let (mut f, m) = recovered();
        f.struck = false;
        assert!(!conclude(f, &m, true).as_expected);
    }
}
