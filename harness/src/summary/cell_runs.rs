//! The one per-cell summary: which runs of a cell count, and the statistics of the
//! ones that do. A number from a broken guest is not a number: only runs that
//! completed *and* left a healthy guest enter a mean, a median, a confidence
//! interval, a rank, a gate or a plan. The others stay in the record and are named
//! (with why) wherever a cell has fewer counted runs than runs.

use crate::stats::Stats;
use crate::record::RunRecord;
use crate::migration::measurement::{Measurement, Outcome};

/// Whether a run's figures count: it completed, its guest was healthy after, and
/// QEMU showed its strategy at work (a post-copy run that finished in pre-copy is
/// not a post-copy figure).
/// "k of n healthy": how every summary says how many of a cell's runs count.
pub fn tally(counted: usize, runs: usize) -> String {
    format!("{counted} of {runs} healthy")
}

pub fn counts(m: &Measurement) -> bool {
    m.outcome == Outcome::Completed && m.health.healthy && m.strategy_took_effect() && fault_struck(m)
}

/// A run of a fault cell counts only if its fault struck: one the migration
/// outran measured no fault, and would mix into the cell's figures unseen.
fn fault_struck(m: &Measurement) -> bool {
    m.fault.as_ref().is_none_or(|f| f.struck)
}

/// Why a run does not count, in a line for a table: the outcome or the health
/// check's verdict, with the first clause of its reason (the full reason is in the
/// record, and in the reports' list of runs that failed or broke their guest).
pub fn why_not_counted(m: &Measurement) -> Option<String> {
    let unhealthy = (!m.health.healthy).then(|| format!("guest not healthy on the {} ({})", m.health.runs_on, first_clause(&m.health.detail, "; ")));
    let outcome = match &m.outcome {
        Outcome::Completed => None,
        // Our own reasons put their details in brackets after the clause.
        Outcome::Cancelled { reason } | Outcome::Failed { reason } | Outcome::Unsupported { reason } => {
            Some(format!("{}: {}", m.outcome.label(), first_clause(&first_clause(reason, " ("), "; ")))
        }
    };
    let untaken = (!m.strategy_took_effect()).then(|| m.evidence.as_ref().map(|e| first_clause(&e.note, "\n")).unwrap_or_default());
    let unstruck = (!fault_struck(m)).then(|| "the fault never struck".to_string());
    let why: Vec<String> = [outcome, unhealthy, untaken, unstruck].into_iter().flatten().collect();
    (!why.is_empty()).then(|| why.join("; "))
}

/// A reason up to the first `sep`, at most 60 characters.
fn first_clause(reason: &str, sep: &str) -> String {
    let clause = reason.split(sep).next().unwrap_or(reason);
    match clause.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &clause[..cut]),
        None => clause.to_string(),
    }
}

/// The runs of one cell (or of any group a table shows as one row).
#[derive(Debug, Clone)]
pub struct CellRuns<'a> {
    runs: Vec<&'a RunRecord>,
}

impl<'a> CellRuns<'a> {
    pub fn new(runs: impl IntoIterator<Item = &'a RunRecord>) -> CellRuns<'a> {
        CellRuns { runs: runs.into_iter().collect() }
    }

    /// The runs of `records` grouped by (profile, cell key), in the order first seen.
    pub fn by_cell(records: &'a [RunRecord]) -> Vec<CellRuns<'a>> {
        let mut out: Vec<CellRuns<'a>> = Vec::new();
        for r in records {
            let same = |c: &CellRuns| c.runs[0].run.profile == r.run.profile && c.runs[0].run.cell_key == r.run.cell_key;
            match out.iter_mut().find(|c| same(c)) {
                Some(c) => c.runs.push(r),
                None => out.push(CellRuns { runs: vec![r] }),
            }
        }
        out
    }

    /// Every run, counted or not.
    pub fn all(&self) -> &[&'a RunRecord] {
        &self.runs
    }

    /// n: how many runs the cell has.
    pub fn n(&self) -> usize {
        self.runs.len()
    }

    /// The runs whose figures count (completed, guest healthy).
    pub fn counted(&self) -> impl Iterator<Item = &'a RunRecord> + '_ {
        self.runs.iter().copied().filter(|r| counts(&r.migration.measurement))
    }

    /// k: how many runs count.
    pub fn k(&self) -> usize {
        self.counted().count()
    }

    /// Runs that completed, healthy or not (a completed run says the migration converged).
    pub fn completed(&self) -> usize {
        self.runs.iter().filter(|r| r.migration.measurement.outcome == Outcome::Completed).count()
    }

    /// Runs whose guest was healthy at the end, whatever the outcome: their figures
    /// from *before* migrating (the dirty rate, the guest's memory) describe a sound
    /// guest even when the migration was cancelled, as a non-converging one is.
    pub fn healthy_guest(&self) -> impl Iterator<Item = &'a RunRecord> + '_ {
        self.runs.iter().copied().filter(|r| r.migration.measurement.health.healthy)
    }

    /// Mean, median and 95 % CI of `f` over the counted runs; None when no counted
    /// run has the figure.
    pub fn stats(&self, f: impl Fn(&Measurement) -> Option<f64>) -> Option<Stats> {
        Stats::of(&self.values(f))
    }

    /// Mean, median and 95 % CI of a figure from *before* migrating (see
    /// [`CellRuns::healthy_guest`]) over the runs whose guest was healthy.
    pub fn healthy_guest_stats(&self, f: impl Fn(&Measurement) -> Option<f64>) -> Option<Stats> {
        Stats::of(&self.healthy_guest().filter_map(|r| f(&r.migration.measurement)).collect::<Vec<_>>())
    }

    /// The values of `f` over the counted runs (for tests that need the samples).
    pub fn values(&self, f: impl Fn(&Measurement) -> Option<f64>) -> Vec<f64> {
        self.counted().filter_map(|r| f(&r.migration.measurement)).collect()
    }

    /// "k of n healthy".
    pub fn tally(&self) -> String {
        tally(self.k(), self.n())
    }

    /// The distinct reasons runs do not count, each with how many runs it cost.
    pub fn reasons(&self) -> Vec<String> {
        let mut seen: Vec<(String, usize)> = Vec::new();
        for why in self.runs.iter().filter_map(|r| why_not_counted(&r.migration.measurement)) {
            match seen.iter_mut().find(|(w, _)| *w == why) {
                Some((_, n)) => *n += 1,
                None => seen.push((why, 1)),
            }
        }
        seen.into_iter().map(|(w, n)| if n > 1 { format!("{n} runs: {w}") } else { w }).collect()
    }

    /// "2 of 3 healthy", with why the others do not count when some do not.
    pub fn tally_with_reasons(&self) -> String {
        let reasons = self.reasons();
        if reasons.is_empty() { self.tally() } else { format!("{}: {}", self.tally(), reasons.join("; ")) }
    }

    /// Why the cell has no figure at all ("0 of 3 healthy: …"); None when a run counts.
    pub fn why_no_figure(&self) -> Option<String> {
        (self.k() == 0).then(|| self.tally_with_reasons())
    }

    /// A figure as a table cell: "mean ± CI (sd)" over the counted runs, with
    /// "k of n healthy" beside it when some runs do not count, "none (0 of n
    /// healthy)" when none does, "-" when no counted run has the figure.
    pub fn show(&self, f: impl Fn(&Measurement) -> Option<f64>, decimals: usize) -> String {
        let (k, n) = (self.k(), self.n());
        match self.stats(f) {
            _ if n == 0 => "-".into(),
            _ if k == 0 => format!("none ({})", self.tally()),
            Some(s) if k < n => format!("{} ({})", s.show(decimals), self.tally()),
            Some(s) => s.show(decimals),
            None => "-".into(),
        }
    }

    /// The distinct outcome labels of the runs, sorted.
    pub fn outcomes(&self) -> Vec<String> {
        let mut o: Vec<String> = self.runs.iter().map(|r| r.migration.measurement.outcome.label().to_string()).collect();
        o.sort();
        o.dedup();
        o
    }
}

/// Synthetic run records for the tests of everything that aggregates runs.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A healthy completed run of the committed report data, as a template.
    fn template() -> RunRecord {
        let text = include_str!("../../tests/data/report/results.jsonl");
        let line = text.lines().find(|l| l.contains("\"c1b4f1bc4245\"")).expect("the template run is in the report data");
        serde_json::from_str(line).expect("the report data reads as run records")
    }

    /// A run of cell `key` (profile "p"), repetition `rep`, taking `total_ms` (also its
    /// downtime / 100 and MiB / 10), healthy or not, completed or cancelled.
    pub fn run(key: &str, rep: u32, total_ms: f64, healthy: bool, completed: bool) -> RunRecord {
        let mut r = template();
        r.run.profile = "p".into();
        r.run.cell_key = key.into();
        r.run.repetition = rep;
        let m = &mut r.migration.measurement;
        m.total_time_ms = Some(total_ms);
        m.downtime_ms = Some(total_ms / 100.0);
        m.transferred_bytes = Some((total_ms / 10.0 * 1048576.0) as u64);
        m.health.healthy = healthy;
        m.health.detail = if healthy { "ok".into() } else { "Kernel panic on the console".into() };
        if !completed {
            m.outcome = Outcome::Cancelled { reason: "not finished after 60 s".into() };
        }
        r
    }

    /// Post-copy asked for, but pre-copy finished first: the evidence of a strategy
    /// that never took effect.
    pub fn postcopy_not_engaged() -> crate::migration::measurement::StrategyEvidence {
        crate::migration::measurement::StrategyEvidence {
            strategy: crate::migration::strategy::Strategy::Postcopy,
            took_effect: false,
            note: "postcopy requested; pre-copy finished before switchover".into(),
            settings: Default::default(),
            postcopy: None,
            xbzrle: None,
            throttle: None,
            multifd: None,
            dirty_limit: None,
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::run;
    use super::*;

    #[test]
    fn an_unhealthy_run_never_moves_the_figures() {
        let runs = [run("a", 0, 1000.0, true, true), run("a", 1, 1100.0, true, true), run("a", 2, 1_000_000.0, false, true)];
        let cell = CellRuns::new(&runs);
        assert_eq!((cell.k(), cell.n(), cell.completed()), (2, 3, 3));
        let s = cell.stats(|m| m.total_time_ms).unwrap();
        assert_eq!((s.n, s.mean, s.median, s.max), (2, 1050.0, 1050.0, 1100.0));
        assert_eq!(cell.tally(), "2 of 3 healthy");
        assert_eq!(cell.tally_with_reasons(), "2 of 3 healthy: guest not healthy on the destination (Kernel panic on the console)");
        assert_eq!(cell.why_no_figure(), None);
    }

    #[test]
    fn a_run_whose_strategy_never_took_effect_is_not_that_strategys_figure() {
        let mut runs = [run("p", 0, 1000.0, true, true), run("p", 1, 50.0, true, true)];
        runs[1].migration.measurement.evidence = Some(testing::postcopy_not_engaged());
        let cell = CellRuns::new(&runs);
        assert_eq!(cell.stats(|m| m.total_time_ms).unwrap().mean, 1000.0);
        assert_eq!(cell.tally_with_reasons(), "1 of 2 healthy: postcopy requested; pre-copy finished before switchover");
    }

    #[test]
    fn a_fault_that_never_struck_leaves_its_run_out_of_the_cells_figures() {
        use crate::migration::measurement::FaultRecord;
        use crate::migration::scenario::Fault;
        use crate::migration::strategy::Strategy;
        let cut: Fault = "cut-link-postcopy".parse().unwrap();
        let mut runs = [run("f", 0, 3000.0, true, true), run("f", 1, 700.0, true, true)];
        runs[0].migration.measurement.fault = Some(FaultRecord::before_migrating(cut, Strategy::Postcopy, "cut".into(), true, true));
        runs[1].migration.measurement.fault = Some(FaultRecord::before_migrating(cut, Strategy::Postcopy, "never cut".into(), false, false));
        let cell = CellRuns::new(&runs);
        assert_eq!(cell.stats(|m| m.total_time_ms).unwrap().mean, 3000.0);
        assert_eq!(cell.tally_with_reasons(), "1 of 2 healthy: the fault never struck");
    }

    #[test]
    fn a_cell_without_a_healthy_completed_run_has_no_figure_and_says_why() {
        let runs = [run("b", 0, 900.0, false, true), run("b", 1, 950.0, false, true), run("b", 2, 0.0, true, false)];
        let cell = CellRuns::new(&runs);
        assert_eq!(cell.stats(|m| m.total_time_ms), None);
        assert_eq!(
            cell.why_no_figure().unwrap(),
            "0 of 3 healthy: 2 runs: guest not healthy on the destination (Kernel panic on the console); cancelled: not finished after 60 s"
        );
        // A cancelled run whose guest stayed healthy still describes a sound guest.
        assert_eq!(cell.healthy_guest().count(), 1);
        assert_eq!(cell.healthy_guest_stats(|m| m.total_time_ms).map(|s| (s.n, s.mean)), Some((1, 0.0)));
        assert_eq!(cell.outcomes(), ["cancelled", "completed"]);
    }

    #[test]
    fn a_figure_shows_how_many_runs_it_stands_on() {
        let mixed = [run("a", 0, 1000.0, true, true), run("a", 1, 1000.0, false, true)];
        assert_eq!(CellRuns::new(&mixed).show(|m| m.total_time_ms, 0), "1000 (1 of 2 healthy)");
        assert_eq!(CellRuns::new(&mixed[..1]).show(|m| m.total_time_ms, 0), "1000");
        assert_eq!(CellRuns::new(&mixed[1..]).show(|m| m.total_time_ms, 0), "none (0 of 1 healthy)");
        assert_eq!(CellRuns::new(&mixed[..1]).show(|m| m.service_downtime_ms, 0), "-");
        assert_eq!(CellRuns::new(&mixed[..0]).show(|m| m.total_time_ms, 0), "-");
    }

    #[test]
    fn a_reason_is_cut_to_its_first_clause() {
        assert_eq!(first_clause("not finished after 60 s (link 100Mbit, 133 iterations); cancelled", " ("), "not finished after 60 s");
        assert_eq!(first_clause("no heartbeat within 15 s; kernel trouble", "; "), "no heartbeat within 15 s");
        assert_eq!(first_clause(&"é".repeat(70), "; "), format!("{}…", "é".repeat(60)));
        assert_eq!(first_clause("ok", "; "), "ok");
    }

    #[test]
    fn runs_are_grouped_by_profile_and_cell_in_order_first_seen() {
        let mut other = run("a", 0, 1.0, true, true);
        other.run.profile = "q".into();
        let runs = [run("b", 0, 1.0, true, true), run("a", 0, 2.0, true, true), run("b", 1, 3.0, false, true), other];
        let cells = CellRuns::by_cell(&runs);
        let shape: Vec<(String, String, usize, usize)> =
            cells.iter().map(|c| (c.all()[0].run.profile.clone(), c.all()[0].run.cell_key.clone(), c.k(), c.n())).collect();
        assert_eq!(shape, [("p".into(), "b".into(), 1, 2), ("p".into(), "a".into(), 1, 1), ("q".into(), "a".into(), 1, 1)]);
    }
}
