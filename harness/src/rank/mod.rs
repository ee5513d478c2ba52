//! Which VM to migrate. The papers' rule (Shreya et al.): migrate the VM with the
//! least total migration time; when migration times tie, the one with less
//! downtime. A *tie* is decided statistically: two VMs tie on a figure when the 95 %
//! confidence intervals of their means overlap, not when the means are equal.

pub mod balance;
pub mod plan;
pub mod predict;
pub mod cluster;
pub mod cluster_hosts;
pub mod vms;

use crate::stats::Stats;
use serde::Serialize;

/// A VM measured over repeated migrations.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub total_time_ms: Stats,
    pub downtime_ms: Stats,
}

/// A candidate's place in the ranking and why it is there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    /// 1 = migrate this one first.
    pub position: usize,
    pub name: String,
    /// The candidates it ties with on total time (overlapping 95 % CIs).
    pub tied_on_time_with: Vec<String>,
    pub reason: String,
}

/// The 95 % interval of a mean; a single run has none, so it is just its value.
fn interval(s: &Stats) -> (f64, f64) {
    let half = s.ci95.unwrap_or(0.0);
    (s.mean - half, s.mean + half)
}

pub fn overlap(a: &Stats, b: &Stats) -> bool {
    let (a0, a1) = interval(a);
    let (b0, b1) = interval(b);
    a0 <= b1 && b0 <= a1
}

/// Ranks by the papers' rule. Candidates are sorted by mean total time; each tie
/// group starts at the fastest not yet placed and takes the next candidates for as
/// long as each one's total-time interval overlaps every member's so far (so a group
/// never holds two VMs that differ clearly). Inside a group the one with less mean
/// downtime goes first.
pub fn by_migration_time_then_downtime(candidates: &[Candidate]) -> Vec<Ranked> {
    let pairs: Vec<(String, Stats, Stats)> = candidates.iter().map(|c| (c.name.clone(), c.total_time_ms, c.downtime_ms)).collect();
    by_metric_then_tiebreak(&pairs, Metric { name: "total time", unit: "ms", decimals: 0 }, Metric { name: "downtime", unit: "ms", decimals: 1 })
}

/// How a figure is named and shown in a ranking's reasons.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub decimals: usize,
}

/// The same rule for any pair of figures, less is better: (name, primary, tie-breaker).
pub fn by_metric_then_tiebreak(candidates: &[(String, Stats, Stats)], primary: Metric, secondary: Metric) -> Vec<Ranked> {
    let mut order: Vec<&(String, Stats, Stats)> = candidates.iter().collect();
    order.sort_by(|a, b| a.1.mean.total_cmp(&b.1.mean).then_with(|| a.0.cmp(&b.0)));
    let show = |m: Metric, v: f64| format!("{v:.*} {}", m.decimals, m.unit);
    let mut out = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let lead = order[i];
        let mut group: Vec<&(String, Stats, Stats)> = vec![lead];
        for c in &order[i + 1..] {
            if !group.iter().all(|g| overlap(&g.1, &c.1)) {
                break;
            }
            group.push(c);
        }
        i += group.len();
        group.sort_by(|a, b| a.2.mean.total_cmp(&b.2.mean).then_with(|| a.0.cmp(&b.0)));
        let names: Vec<String> = group.iter().map(|c| c.0.clone()).collect();
        for (k, c) in group.iter().enumerate() {
            let others: Vec<String> = names.iter().filter(|n| **n != c.0).cloned().collect();
            let reason = if others.is_empty() {
                format!("{} {}, clearly apart from the others", primary.name, show(primary, c.1.mean))
            } else {
                let second_tie = group.iter().any(|o| o.0 != c.0 && overlap(&o.2, &c.2));
                format!(
                    "{} {} ties with {} (95 % CIs overlap); {} {} ({}){}",
                    primary.name,
                    show(primary, c.1.mean),
                    others.join(", "),
                    if k == 0 { "least" } else { "more" },
                    secondary.name,
                    show(secondary, c.2.mean),
                    if second_tie { format!(", though the {}s overlap too: a coin toss on these runs", secondary.name) } else { String::new() }
                )
            };
            out.push(Ranked { position: out.len() + 1, name: c.0.clone(), tied_on_time_with: others, reason });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, times: &[f64], downs: &[f64]) -> Candidate {
        Candidate { name: name.into(), total_time_ms: Stats::of(times).unwrap(), downtime_ms: Stats::of(downs).unwrap() }
    }

    fn names(r: &[Ranked]) -> Vec<&str> {
        r.iter().map(|x| x.name.as_str()).collect()
    }

    #[test]
    fn the_papers_table_5_gives_the_papers_order() {
        // Shreya et al. Table 5 (s): Livermore 63/18, Dhrystone 64/28, Linpack 64/19.
        // One value each: Dhrystone and Linpack tie on time exactly, Linpack has less downtime.
        let r = by_migration_time_then_downtime(&[c("Dhrystone", &[64.0], &[28.0]), c("Livermore", &[63.0], &[18.0]), c("Linpack", &[64.0], &[19.0])]);
        assert_eq!(names(&r), ["Livermore", "Linpack", "Dhrystone"]);
        assert!(r[1].tied_on_time_with == ["Dhrystone"], "{r:?}");
        assert_eq!(r.iter().map(|x| x.position).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn overlapping_intervals_are_a_tie_broken_by_downtime() {
        // B's mean time is lower, but the runs scatter: a tie, and A has less downtime.
        let r = by_migration_time_then_downtime(&[c("A", &[100.0, 120.0, 110.0], &[5.0, 6.0, 5.5]), c("B", &[95.0, 115.0, 105.0], &[30.0, 31.0, 29.0])]);
        assert_eq!(names(&r), ["A", "B"]);
        assert!(r[0].reason.contains("least downtime"), "{}", r[0].reason);
        // Tight runs: B is clearly faster, downtime does not matter.
        let r = by_migration_time_then_downtime(&[c("A", &[100.0, 101.0, 100.5], &[5.0, 6.0, 5.5]), c("B", &[90.0, 91.0, 90.5], &[30.0, 31.0, 29.0])]);
        assert_eq!(names(&r), ["B", "A"]);
        assert!(r[0].tied_on_time_with.is_empty());
    }

    #[test]
    fn a_group_holds_only_mutual_ties() {
        // A (100 ± wide) overlaps B and C, but B and C differ clearly: {A, B} then {C},
        // even though C has the least downtime.
        let r = by_migration_time_then_downtime(&[
            c("A", &[90.0, 110.0, 100.0, 95.0, 105.0], &[5.0, 5.0]),
            c("B", &[100.5, 101.5, 101.0, 101.0, 101.0], &[5.0, 5.0]),
            c("C", &[107.5, 108.5, 108.0, 108.0, 108.0], &[1.0, 1.0]),
        ]);
        assert_eq!(names(&r), ["A", "B", "C"], "{r:?}");
        assert!(r[2].tied_on_time_with.is_empty());
    }

    #[test]
    fn a_group_does_not_chain_past_its_first() {
        // A overlaps B, B overlaps C, A does not overlap C: {A, B} then {C}.
        let r = by_migration_time_then_downtime(&[
            c("A", &[100.0, 100.5, 101.0, 100.5, 100.0], &[9.0, 9.0]),
            c("B", &[99.0, 106.0, 99.0, 106.0, 102.5], &[1.0, 1.0]),
            c("C", &[104.5, 105.0, 105.5, 105.0, 105.0], &[0.5, 0.5]),
        ]);
        assert_eq!(names(&r), ["B", "A", "C"], "{r:?}");
        assert!(r[2].tied_on_time_with.is_empty());
    }

    #[test]
    fn empty_is_empty() {
        assert!(by_migration_time_then_downtime(&[]).is_empty());
    }
}
