//! Whether the guest that arrived is the guest that left: the memory dirtier's
//! pages verified page by page (`migbench_guest::stamp`), and every workload's own
//! self-checks. Part of every health check.

use super::channel::GuestChannel;
use migbench_guest::orders::Workload;
use std::time::Duration;

/// The guest's verification of its stamped memory, as recorded in a run's health:
/// the guest's own tally, as it sent it.
pub use migbench_guest::stamp::Tally as Integrity;

/// What the integrity part of a health check found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// `None`: the workload owns no stamped memory, or the guest could not be asked.
    pub integrity: Option<Integrity>,
    /// Each reason the guest is not intact, in words.
    pub problems: Vec<String>,
}

/// Asks the guest to verify its memory, first thing after the switch: a guest
/// whose kernel was corrupted with it may not live long, and its pages are best
/// read while it still can. The answer is collected by [`check`].
pub async fn ask(here: &GuestChannel) -> anyhow::Result<u64> {
    here.ask_verify().await
}

/// Collects the guest's answer to `asked` (when it answers heartbeats at all:
/// `alive`), and the workload's failed self-checks from every channel the guest
/// spoke on (`all`, which includes `here`).
pub async fn check(asked: anyhow::Result<u64>, here: &GuestChannel, all: &[&GuestChannel], workload: Workload, alive: bool) -> Verdict {
    let mut v = Verdict::default();
    if alive {
        // Reading every page under TCG takes about a second per 256 MiB on a busy host.
        let set_mib = if let Workload::MemDirty { mib, .. } = workload { u64::from(mib) } else { 0 };
        let timeout = Duration::from_secs(30 + set_mib / 16);
        let answer = match asked {
            Ok(id) => here.verification(id, timeout).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(Some(t)) => {
                v.integrity = Some(t);
                if t.mismatches > 0 {
                    let first = t.first_bad_page.map(|p| format!(", first bad page {p}")).unwrap_or_default();
                    v.problems.push(format!(
                        "memory corrupted: {} of {} pages of the {workload} working set failed their stamp check{first}",
                        t.mismatches, t.pages_checked
                    ));
                }
            }
            // A workload that stamps its memory must have a stamped set to show.
            Ok(None) if workload.stamps_memory() => {
                v.problems.push(format!("memory not verified: the {workload} guest answered that it owns no stamped memory"))
            }
            Ok(None) => {}
            Err(e) => v.problems.push(format!("memory not verified: {e:#}")),
        }
    }
    // The same failure arrives on each channel that heard it: report it once.
    let mut seen = std::collections::HashSet::new();
    for f in all.iter().flat_map(|c| c.workload_failures()).filter(|f| seen.insert(f.clone())) {
        v.problems.push(format!("the workload's self-check failed: {f}"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A fake guest: answers each VERIFY with `answer` (its `{id}` filled in) after
    /// sending `before`; returns the connected channel.
    async fn guest(dir: &std::path::Path, before: &'static str, answer: &'static str) -> GuestChannel {
        let path = dir.join("chan.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            w.write_all(before.as_bytes()).await.unwrap();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(id) = line.strip_prefix("VERIFY ") {
                    w.write_all(answer.replace("{id}", id).as_bytes()).await.unwrap();
                }
            }
        });
        GuestChannel::connect(&path, Duration::from_secs(5)).await.unwrap()
    }

    const DIRTY: Workload = Workload::MemDirty { mib: 4, mode: migbench_guest::orders::DirtyMode::Write, rate_mib_s: None };

    #[tokio::test]
    async fn mismatches_and_failed_self_checks_are_problems() {
        let tmp = tempfile::tempdir().unwrap();
        let ch = guest(tmp.path(), "", "INTEGRITY {id} 1024 3 17\n").await;
        let v = check(ask(&ch).await, &ch, &[&ch], DIRTY, true).await;
        assert_eq!(v.integrity, Some(Integrity { pages_checked: 1024, mismatches: 3, first_bad_page: Some(17) }));
        assert_eq!(v.problems.len(), 1);
        assert!(v.problems[0].contains("3 of 1024 pages") && v.problems[0].contains("first bad page 17"), "{:?}", v.problems);

        // A benchmark that found its own result wrong: no stamped memory, one cause,
        // reported once though the guest repeats it with every answer.
        let tmp = tempfile::tempdir().unwrap();
        let ch = guest(tmp.path(), "FAILED linpack: residual too large\n", "FAILED linpack: residual too large\nINTEGRITY {id} none\n").await;
        let v = check(ask(&ch).await, &ch, &[&ch, &ch], Workload::Linpack { n: 100 }, true).await;
        assert_eq!(v.integrity, None);
        assert_eq!(v.problems, ["the workload's self-check failed: linpack: residual too large"]);
    }

    #[test]
    fn old_records_read_and_a_guest_without_stamped_memory_records_none() {
        let old = r#"{"runs_on":"destination","run_state":"running","other_state":"postmigrate","last_source_seq":5,"next_seq":7,
            "lost_beats":1,"console_problems":[],"healthy":true,"detail":"ok"}"#;
        let h: crate::migration::measurement::Health = serde_json::from_str(old).unwrap();
        assert_eq!(h.integrity, None);
        assert!(!serde_json::to_string(&h).unwrap().contains("integrity"));
        let checked = crate::migration::measurement::Health { integrity: Some(Integrity { pages_checked: 8, mismatches: 0, first_bad_page: None }), ..h };
        let json = serde_json::to_value(&checked).unwrap();
        assert_eq!(json["integrity"], serde_json::json!({"pages_checked": 8, "mismatches": 0, "first_bad_page": null}));
    }

    #[tokio::test]
    async fn an_intact_guest_has_no_problem_and_a_silent_one_is_not_verified() {
        let tmp = tempfile::tempdir().unwrap();
        let ch = guest(tmp.path(), "", "INTEGRITY {id} 1024 0 -\n").await;
        let v = check(ask(&ch).await, &ch, &[&ch], DIRTY, true).await;
        assert_eq!(v.integrity, Some(Integrity { pages_checked: 1024, mismatches: 0, first_bad_page: None }));
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        // A memory dirtier that says it owns no stamped set has shown nothing intact.
        let tmp = tempfile::tempdir().unwrap();
        let none = guest(tmp.path(), "", "INTEGRITY {id} none\n").await;
        let v = check(ask(&none).await, &none, &[&none], DIRTY, true).await;
        assert!(v.problems.len() == 1 && v.problems[0].contains("owns no stamped memory"), "{:?}", v.problems);
        let v = check(ask(&ch).await, &ch, &[&ch], Workload::Idle, false).await;
        assert!(v.integrity.is_none() && v.problems.is_empty(), "a guest without heartbeats is not asked");
        // A guest that never answers is not intact as far as anyone knows.
        let tmp = tempfile::tempdir().unwrap();
        let ch = guest(tmp.path(), "", "").await;
        let e = ch.verify_memory(Duration::from_millis(300)).await.unwrap_err();
        assert!(e.to_string().contains("did not answer the memory verification"), "{e}");
    }
}
