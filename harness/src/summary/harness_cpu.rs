//! The harness's own CPU while it sampled migrations, over the runs that count: the
//! figure `bench` sets beside its target.

use super::cell_runs::CellRuns;
use crate::stats::Stats;
use crate::record::RunRecord;

/// What the harness may use of one core while it samples a running migration.
pub const TARGET_PERCENT: f64 = 2.0;

/// `harness_cpu_percent` over a set of runs.
#[derive(Debug, Clone, PartialEq)]
pub struct HarnessCpu {
    /// Over the counted runs that have the figure; none when no such run.
    pub stats: Option<Stats>,
    /// "k of n healthy", with why the others do not count.
    pub tally: String,
}

impl HarnessCpu {
    /// The figure over `runs`: only those that count ([`super::cell_runs::counts`]).
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> HarnessCpu {
        let runs = CellRuns::new(runs);
        HarnessCpu { stats: runs.stats(|m| m.harness_cpu_percent), tally: runs.tally_with_reasons() }
    }

    /// Whether the median is above [`TARGET_PERCENT`] (false with no figure).
    pub fn over_target(&self) -> bool {
        self.stats.is_some_and(|s| s.median > TARGET_PERCENT)
    }

    /// "Harness while sampling: median 0.9 % of one core over 12 migrations (max
    /// 1.4 %), target ≤ 2 %; 12 of 12 healthy".
    pub fn line(&self) -> String {
        match &self.stats {
            Some(s) => format!(
                "Harness while sampling: median {:.2} % of one core over {} migration{} (max {:.2} %), target ≤ {TARGET_PERCENT} %{}; {}",
                s.median,
                s.n,
                if s.n == 1 { "" } else { "s" },
                s.max,
                if self.over_target() { ", ABOVE the target" } else { "" },
                self.tally
            ),
            None => format!("Harness while sampling: no figure (no counted run has one); {}", self.tally),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::cell_runs::testing::run;

    fn with_cpu(mut r: RunRecord, pct: Option<f64>) -> RunRecord {
        r.migration.measurement.harness_cpu_percent = pct;
        r
    }

    #[test]
    fn only_healthy_completed_runs_enter_the_figure() {
        let runs = [
            with_cpu(run("a", 0, 500.0, true, true), Some(0.5)),
            with_cpu(run("a", 1, 500.0, true, true), Some(1.5)),
            with_cpu(run("b", 0, 500.0, true, true), Some(1.0)),
            // A broken guest's and a cancelled run's figures never count.
            with_cpu(run("b", 1, 500.0, false, true), Some(40.0)),
            with_cpu(run("c", 0, 500.0, true, false), Some(30.0)),
        ];
        let h = HarnessCpu::of(&runs);
        let s = h.stats.unwrap();
        assert_eq!((s.n, s.median, s.max), (3, 1.0, 1.5));
        assert!(!h.over_target());
        let line = h.line();
        assert!(line.starts_with("Harness while sampling: median 1.00 % of one core over 3 migrations (max 1.50 %), target ≤ 2 %; 3 of 5 healthy: "), "{line}");
        assert!(line.contains("guest not healthy") && line.contains("cancelled"), "{line}");
    }

    #[test]
    fn a_median_above_the_target_is_said_and_no_figure_is_said_too() {
        let runs = [with_cpu(run("a", 0, 500.0, true, true), Some(2.5)), with_cpu(run("a", 1, 500.0, true, true), Some(3.5))];
        let h = HarnessCpu::of(&runs);
        assert!(h.over_target());
        assert!(h.line().contains("median 3.00 %") && h.line().contains("ABOVE the target"), "{}", h.line());
        // Records written before the figure existed have none.
        let old = [with_cpu(run("a", 0, 500.0, true, true), None)];
        assert_eq!(HarnessCpu::of(&old).line(), "Harness while sampling: no figure (no counted run has one); 1 of 1 healthy");
        assert_eq!(HarnessCpu::of(&[]).stats, None);
    }
}
