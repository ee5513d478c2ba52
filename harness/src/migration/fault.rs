//! Faults injected into a migration: striking them at their time, and judging
//! whether the guest ended where QEMU's semantics say it should.

use super::measurement::{FaultRecord, Measurement, Outcome, since_ms};
use super::scenario::Fault;
use crate::machine::Machine;
use std::time::{Duration, Instant};

/// Strikes `fault` at its time after `t0`, unless `done` says the migration ended
/// first. Returns what it did (none for no fault or a fault struck at start-up).
pub(super) async fn inject(
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


/// Whether a run with a mid-migration fault ended as `Fault::expected` says.
pub(super) fn as_expected(f: &FaultRecord, m: &Measurement, postcopy_active: bool) -> bool {
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
