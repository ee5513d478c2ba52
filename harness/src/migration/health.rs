//! After a migration: is the guest alive where it should run, healthy, and intact?

use super::measurement::Health;
use crate::machine::Machine;
use std::time::Duration;

/// The health of a guest that stayed on `src` because no migration happened (its
/// destination never started).
pub async fn staying_guest(src: &mut Machine) -> Health {
    check_guest(src, None, "source").await
}
/// The health of a guest that no QEMU can run any more: neither side says
/// `running` and no heartbeat comes from either within a few seconds.
pub(super) async fn guest_lost(src: &mut Machine, dst: &mut Machine, why: &str) -> Health {
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

/// Checks that the guest runs on `here`: QEMU says "running", heartbeats arrive
/// there and keep coming, no Oops/BUG/panic shows on either console, the guest's
/// stamped memory verifies page by page and no workload failed its self-check. On the
/// destination the first heartbeat must continue the source's sequence (a lower
/// number would mean the guest rebooted); on the source (after a cancel) the beats
/// must carry on past the last one seen. Also notes `other`'s run state (`None`: no
/// other QEMU was started, the guest never left `here`, the source).
pub(super) async fn check_guest(here: &mut Machine, mut other: Option<&mut Machine>, runs_on: &str) -> Health {
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
