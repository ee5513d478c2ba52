//! Whether the guest that arrived is the guest that left: the memory dirtier's
//! pages verified page by page (`migbench_guest::stamp`), and every workload's own
//! self-checks. Part of every health check.

use super::channel::GuestChannel;
use migbench_guest::orders::Workload;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The guest's verification of its stamped memory, as recorded in a run's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integrity {
    /// Pages of the working set checked, every word of each.
    pub pages_checked: u64,
    /// Pages whose index, generation or checksum was wrong (each counted once),
    /// found by this check or by the workload itself since the previous check.
    pub mismatches: u64,
    /// The lowest-numbered bad page (0 = the working set's first page).
    pub first_bad_page: Option<u64>,
}

/// What the integrity part of a health check found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// `None`: the workload owns no stamped memory, or the guest could not be asked.
    pub integrity: Option<Integrity>,
    /// Each reason the guest is not intact, in words.
    pub problems: Vec<String>,
}

/// Asks the guest on `here` to verify its memory (when it answers heartbeats at
/// all: `alive`), and collects the workload's failed self-checks from every
/// channel the guest spoke on (`all`, which includes `here`).
pub async fn check(here: &GuestChannel, all: &[&GuestChannel], workload: Workload, alive: bool) -> Verdict {
    let mut v = Verdict::default();
    if alive {
        // Reading every page under TCG takes about a second per 256 MiB on a busy host.
        let set_mib = if let Workload::MemDirty { mib, .. } = workload { u64::from(mib) } else { 0 };
        let timeout = Duration::from_secs(30 + set_mib / 16);
        match here.verify_memory(timeout).await {
            Ok(Some(t)) => {
                v.integrity = Some(Integrity { pages_checked: t.pages_checked, mismatches: t.mismatches, first_bad_page: t.first_bad_page });
                if t.mismatches > 0 {
                    let first = t.first_bad_page.map(|p| format!(", first bad page {p}")).unwrap_or_default();
                    v.problems.push(format!(
                        "memory corrupted: {} of {} pages of the {workload} working set failed their stamp check{first}",
                        t.mismatches, t.pages_checked
                    ));
                }
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
