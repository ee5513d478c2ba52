//! `migbench compare BASELINE CURRENT`: two result sets, cell by cell, with a
//! statistical test rather than a single-number diff. A figure has regressed when
//! Welch's t-test says the current runs differ from the baseline's (p < 0.05) *and*
//! the mean got worse by more than the allowed margin; run-to-run noise passes.
//!
//! It is a gate: a pass means every cell of the baseline was compared. A baseline
//! cell missing from the current results, with a current run that failed or left an
//! unhealthy guest, or with fewer than [`MIN_RUNS`] healthy completed runs on either
//! side, makes the comparison incomplete, and the cell is named. Only healthy
//! completed runs enter a mean or a test (see [`CellRuns`]).

use crate::summary::cell_runs::CellRuns;
use crate::record::RunRecord;
use crate::migration::measurement::{Measurement, Outcome};
use serde::Serialize;

/// The figures compared (all: less is better).
const METRICS: [(&str, &str); 3] = [("total_time_ms", "ms"), ("downtime_ms", "ms"), ("transferred_mib", "MiB")];

/// Healthy completed runs a cell needs on each side to be compared: Welch's test
/// needs a variance, so two.
pub const MIN_RUNS: usize = 2;

/// The exit status of a comparison with a significant regression.
pub const EXIT_REGRESSION: u8 = 4;
/// The exit status of a comparison that left a baseline cell uncompared (and found no regression).
pub const EXIT_INCOMPLETE: u8 = 5;

fn metric(m: &Measurement, name: &str) -> Option<f64> {
    match name {
        "total_time_ms" => m.total_time_ms,
        "downtime_ms" => m.downtime_ms,
        "transferred_mib" => m.transferred_mib(),
        _ => None,
    }
}

/// One figure of one cell, baseline against current.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub cell: String,
    pub metric: String,
    pub unit: String,
    pub baseline_mean: f64,
    pub current_mean: f64,
    pub baseline_runs: usize,
    pub current_runs: usize,
    /// (current − baseline) / baseline, %.
    pub change_percent: f64,
    /// Welch's two-sided p-value; None when neither side has any spread.
    pub p_value: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Regression,
    Improvement,
    Unchanged,
}

/// What became of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Every figure the baseline has was tested.
    Compared,
    /// No run of the cell in the current results.
    Missing,
    /// A current run did not complete.
    Failed,
    /// Every current run completed, but not every one left a healthy guest.
    Unhealthy,
    /// Every current run completed with a healthy guest, but in one the strategy
    /// never took effect (it is not that strategy's figure).
    NotEngaged,
    /// Fewer than [`MIN_RUNS`] healthy completed runs on a side.
    Untested,
    /// Only in the current results: nothing to compare it with, and no fault.
    New,
}

impl Status {
    /// Whether this cell keeps the comparison from passing.
    pub fn blocks(self) -> bool {
        !matches!(self, Status::Compared | Status::New)
    }

    fn word(self) -> &'static str {
        match self {
            Status::Compared => "compared",
            Status::Missing => "MISSING",
            Status::Failed => "FAILED",
            Status::Unhealthy => "UNHEALTHY",
            Status::NotEngaged => "STRATEGY NOT ENGAGED",
            Status::Untested => "UNTESTED",
            Status::New => "new (not in the baseline)",
        }
    }
}

/// One cell of the comparison: its runs on each side ("k of n healthy") and its status.
#[derive(Debug, Clone, Serialize)]
pub struct CellCheck {
    pub cell: String,
    pub baseline: String,
    pub current: String,
    pub status: Status,
    /// Why it was not compared; empty when it was.
    pub why: String,
}

/// The whole comparison: every cell's status and every figure compared.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub cells: Vec<CellCheck>,
    pub changes: Vec<Change>,
}

impl Comparison {
    pub fn regressions(&self) -> usize {
        self.changes.iter().filter(|c| c.verdict == Verdict::Regression).count()
    }

    /// The cells that keep the comparison from passing.
    pub fn uncompared(&self) -> Vec<&CellCheck> {
        self.cells.iter().filter(|c| c.status.blocks()).collect()
    }

    /// 0 when every baseline cell was compared and nothing regressed;
    /// [`EXIT_REGRESSION`] when a figure regressed (whatever else);
    /// [`EXIT_INCOMPLETE`] when nothing regressed but a baseline cell was not compared.
    pub fn exit_code(&self) -> u8 {
        if self.regressions() > 0 {
            EXIT_REGRESSION
        } else if !self.uncompared().is_empty() {
            EXIT_INCOMPLETE
        } else {
            0
        }
    }
}

fn verdict(p: Option<f64>, change: f64, max_regression_percent: f64) -> Verdict {
    // Without any spread on either side a difference is systematic: the margin alone decides.
    let significant = p.is_none_or(|p| p < 0.05);
    if significant && change > max_regression_percent {
        Verdict::Regression
    } else if significant && change < -max_regression_percent {
        Verdict::Improvement
    } else {
        Verdict::Unchanged
    }
}

/// Every cell of the baseline judged against the current results, matched by
/// (profile, cell key); then the current cells the baseline lacks, as new.
pub fn compare(baseline: &[RunRecord], current: &[RunRecord], max_regression_percent: f64) -> Comparison {
    let base_cells = CellRuns::by_cell(baseline);
    let cur_cells = CellRuns::by_cell(current);
    let key = |c: &CellRuns| (c.all()[0].run.profile.clone(), c.all()[0].run.cell_key.clone());
    let mut cells = Vec::new();
    let mut changes = Vec::new();
    for b in &base_cells {
        let name = label(b.all()[0]);
        let found = cur_cells.iter().find(|c| key(c) == key(b));
        let check = |current: String, status: Status, why: String| CellCheck { cell: name.clone(), baseline: b.tally(), current, status, why };
        let Some(c) = found else {
            cells.push(check("none".into(), Status::Missing, "not in the current results".into()));
            continue;
        };
        if c.k() < c.n() {
            let ms = || c.all().iter().map(|r| &r.migration.measurement);
            let status = if ms().any(|m| m.outcome != Outcome::Completed) {
                Status::Failed
            } else if ms().any(|m| !m.health.healthy) {
                Status::Unhealthy
            } else {
                Status::NotEngaged
            };
            cells.push(check(c.tally(), status, c.tally_with_reasons()));
            continue;
        }
        let mut found_changes = Vec::new();
        let mut short = Vec::new();
        for (metric_name, unit) in METRICS {
            let (bv, cv) = (b.values(|m| metric(m, metric_name)), c.values(|m| metric(m, metric_name)));
            if bv.is_empty() && b.k() >= MIN_RUNS {
                // The baseline never measured it: nothing to hold the current runs to.
                continue;
            }
            if bv.len() < MIN_RUNS || cv.len() < MIN_RUNS {
                short.push(format!("{metric_name}: {} in the baseline ({}), {} in the current ({})", bv.len(), b.tally_with_reasons(), cv.len(), c.tally()));
                continue;
            }
            // The cell's means are CellRuns' (the one summary); Welch's test needs the samples.
            let mean_of = |cell: &CellRuns| cell.stats(|m| metric(m, metric_name)).map_or(f64::NAN, |s| s.mean);
            let (bm, cm) = (mean_of(b), mean_of(c));
            let change = if bm != 0.0 { (cm - bm) / bm * 100.0 } else { 0.0 };
            let p = welch_p(&bv, &cv);
            found_changes.push(Change {
                cell: name.clone(),
                metric: metric_name.into(),
                unit: unit.into(),
                baseline_mean: bm,
                current_mean: cm,
                baseline_runs: bv.len(),
                current_runs: cv.len(),
                change_percent: change,
                p_value: p,
                verdict: verdict(p, change, max_regression_percent),
            });
        }
        if short.is_empty() && found_changes.is_empty() {
            // A pass must mean something was compared.
            cells.push(check(c.tally(), Status::Untested, "the baseline's runs carry none of the figures compared".into()));
        } else if short.is_empty() {
            cells.push(check(c.tally(), Status::Compared, String::new()));
        } else {
            let why = format!("healthy completed runs with the figure: {}; the minimum is {MIN_RUNS} on each side", short.join("; "));
            cells.push(check(c.tally(), Status::Untested, why));
        }
        changes.extend(found_changes);
    }
    for c in &cur_cells {
        if !base_cells.iter().any(|b| key(b) == key(c)) {
            cells.push(CellCheck { cell: label(c.all()[0]), baseline: "none".into(), current: c.tally(), status: Status::New, why: "not in the baseline".into() });
        }
    }
    Comparison { cells, changes }
}

fn label(r: &RunRecord) -> String {
    let cell = serde_json::to_value(&r.run.cell).unwrap_or_default();
    let w = cell.get("workload").and_then(|v| v.as_str()).unwrap_or("?");
    format!("{}/{} {} MiB {} {}", r.run.profile, r.run.cell_key, r.migration.guest.ram_mib, w, r.migration.scenario.link)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn variance(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)
}

/// Welch's t-test, two-sided p-value.
pub fn welch_p(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (va, vb) = (variance(a) / a.len() as f64, variance(b) / b.len() as f64);
    let se2 = va + vb;
    // No spread at all (or NaN): nothing to test.
    if se2.is_nan() || se2 <= 0.0 {
        return None;
    }
    let t = (mean(a) - mean(b)) / se2.sqrt();
    let df = se2 * se2 / (va * va / (a.len() as f64 - 1.0) + vb * vb / (b.len() as f64 - 1.0));
    // Two-sided: P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2).
    Some(incomplete_beta(df / 2.0, 0.5, df / (df + t * t)))
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI.ln() - (std::f64::consts::PI * x).sin().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised incomplete beta function I_x(a, b) (continued fraction).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-12 {
            break;
        }
    }
    h
}

/// The comparison as Markdown (for the terminal and `$GITHUB_STEP_SUMMARY`): the
/// cells with their status, the figures compared, and the verdict in one line.
pub fn markdown(cmp: &Comparison, max_regression_percent: f64) -> String {
    let mut cells = tabled::builder::Builder::default();
    cells.push_record(["cell", "baseline runs", "current runs", "status", "why not compared"]);
    for c in &cmp.cells {
        cells.push_record([c.cell.clone(), c.baseline.clone(), c.current.clone(), c.status.word().into(), c.why.clone()]);
    }
    let mut figures = tabled::builder::Builder::default();
    figures.push_record(["cell", "figure", "baseline", "current", "change", "p (Welch)", "verdict"]);
    for c in &cmp.changes {
        figures.push_record([
            c.cell.clone(),
            c.metric.clone(),
            format!("{:.1} {} ({} runs)", c.baseline_mean, c.unit, c.baseline_runs),
            format!("{:.1} {} ({} runs)", c.current_mean, c.unit, c.current_runs),
            format!("{:+.1} %", c.change_percent),
            c.p_value.map(|p| format!("{p:.3}")).unwrap_or_else(|| "- (no spread)".into()),
            match c.verdict {
                Verdict::Regression => "REGRESSION".into(),
                Verdict::Improvement => "improvement".into(),
                Verdict::Unchanged => "unchanged".into(),
            },
        ]);
    }
    let style = tabled::settings::Style::markdown();
    let baseline_cells = cmp.cells.iter().filter(|c| c.status != Status::New).count();
    let compared = cmp.cells.iter().filter(|c| c.status == Status::Compared).count();
    let uncompared = cmp.uncompared();
    let mut out = format!("{}\n\n", cells.build().with(style.clone()));
    if !cmp.changes.is_empty() {
        out += &format!("{}\n\n", figures.build().with(style));
    }
    out += &format!(
        "{compared} of {baseline_cells} baseline cells compared over their healthy completed runs; {} significant regression(s) above {max_regression_percent} % (Welch's t-test, p < 0.05).",
        cmp.regressions()
    );
    if !uncompared.is_empty() {
        let names: Vec<String> = uncompared.iter().map(|c| format!("{} ({})", c.cell, c.status.word())).collect();
        out += &format!("\nINCOMPLETE: not compared: {}.", names.join(", "));
        if compared == 0 && uncompared.iter().all(|c| c.status == Status::Missing) {
            out += " No cell of the baseline is in the current results: compare results of the same profile.";
        }
    }
    out
}

/// The current means in the JSON that benchmark-tracking actions read
/// (github-action-benchmark's `customSmallerIsBetter`: name, unit, value).
pub fn benchmark_json(cmp: &Comparison) -> serde_json::Value {
    serde_json::Value::Array(
        cmp.changes
            .iter()
            .map(|c| serde_json::json!({"name": format!("{} {}", c.cell, c.metric), "unit": c.unit, "value": c.current_mean}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_p_values_match_known_results() {
        // Identical samples: no difference.
        assert!((welch_p(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap() - 1.0).abs() < 1e-9);
        // a = 1..5 (mean 3, var 2.5), b = 3..7 (mean 5, var 2.5): t = −2 / √1 = −2, df = 8;
        // the two-sided p of t = 2 on 8 df is 0.0805.
        let p = welch_p(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.0, 4.0, 5.0, 6.0, 7.0]).unwrap();
        assert!((p - 0.0805).abs() < 5e-4, "{p}");
        // t = 10 on 8 df: p ≈ 8.5e-6.
        let p = welch_p(&[1.0, 2.0, 3.0, 4.0, 5.0], &[11.0, 12.0, 13.0, 14.0, 15.0]).unwrap();
        assert!(p < 1e-5 && p > 1e-6, "{p}");
        assert_eq!(welch_p(&[1.0], &[2.0, 3.0]), None);
        assert_eq!(welch_p(&[1.0, 1.0], &[1.0, 1.0]), None);
    }

    use crate::summary::cell_runs::testing::run;

    fn status_of(cmp: &Comparison, key: &str) -> Status {
        cmp.cells.iter().find(|c| c.cell.contains(&format!("/{key} "))).unwrap_or_else(|| panic!("no cell {key}: {cmp:?}")).status
    }

    #[test]
    fn an_unhealthy_baseline_run_does_not_move_the_gate() {
        // The baseline's third run broke its guest with an absurd figure: left out, the
        // current runs are unchanged; counted, they would read as a 99 % improvement.
        let base = [run("a", 0, 1000.0, true, true), run("a", 1, 1010.0, true, true), run("a", 2, 900_000.0, false, true)];
        let cur = [run("a", 0, 1005.0, true, true), run("a", 1, 1008.0, true, true)];
        let cmp = compare(&base, &cur, 10.0);
        assert_eq!(status_of(&cmp, "a"), Status::Compared);
        let total = cmp.changes.iter().find(|c| c.metric == "total_time_ms").unwrap();
        assert_eq!((total.baseline_mean, total.baseline_runs, total.verdict), (1005.0, 2, Verdict::Unchanged));
        assert_eq!(cmp.exit_code(), 0);
        assert_eq!(cmp.cells[0].baseline, "2 of 3 healthy");
    }

    #[test]
    fn every_baseline_cell_must_be_compared() {
        let base: Vec<RunRecord> = ["ok", "gone", "broken", "failing", "thin"].iter().flat_map(|k| (0..2).map(move |i| run(k, i, 1000.0 + i as f64, true, true))).collect();
        let cur = [
            run("ok", 0, 1000.0, true, true),
            run("ok", 1, 1001.0, true, true),
            run("broken", 0, 1000.0, true, true),
            run("broken", 1, 1001.0, false, true),
            run("failing", 0, 1000.0, true, true),
            run("failing", 1, 0.0, true, false),
            run("thin", 0, 1000.0, true, true),
            run("extra", 0, 1000.0, true, true),
        ];
        let cmp = compare(&base, &cur, 10.0);
        let statuses: Vec<Status> = ["ok", "gone", "broken", "failing", "thin", "extra"].iter().map(|k| status_of(&cmp, k)).collect();
        assert_eq!(statuses, [Status::Compared, Status::Missing, Status::Unhealthy, Status::Failed, Status::Untested, Status::New]);
        assert_eq!(cmp.exit_code(), EXIT_INCOMPLETE);
        let thin = cmp.cells.iter().find(|c| c.status == Status::Untested).unwrap();
        assert!(thin.why.contains("the minimum is 2 on each side") && thin.why.contains("1 in the current"), "{thin:?}");
        let broken = cmp.cells.iter().find(|c| c.status == Status::Unhealthy).unwrap();
        assert!(broken.why.starts_with("1 of 2 healthy: guest not healthy on the destination"), "{broken:?}");
        // A regression wins over an incomplete comparison: it is the stronger finding.
        let slow = [run("ok", 0, 2000.0, true, true), run("ok", 1, 2010.0, true, true)];
        assert_eq!(compare(&base, &slow, 10.0).exit_code(), EXIT_REGRESSION);
    }

    #[test]
    fn a_run_whose_strategy_never_engaged_is_named_so_not_called_unhealthy() {
        let base = [run("p", 0, 1000.0, true, true), run("p", 1, 1001.0, true, true)];
        let mut cur = base.clone();
        cur[1].migration.measurement.evidence = Some(crate::summary::cell_runs::testing::postcopy_not_engaged());
        let cmp = compare(&base, &cur, 10.0);
        assert_eq!(status_of(&cmp, "p"), Status::NotEngaged);
        assert!(cmp.cells[0].why.contains("pre-copy finished before switchover"), "{:?}", cmp.cells[0]);
        assert_eq!(cmp.exit_code(), EXIT_INCOMPLETE);
    }

    #[test]
    fn without_spread_the_margin_alone_decides() {
        let base = [run("a", 0, 1000.0, true, true), run("a", 1, 1000.0, true, true)];
        let same = compare(&base, &base, 10.0);
        assert!(same.changes.iter().all(|c| c.p_value.is_none() && c.verdict == Verdict::Unchanged), "{same:?}");
        let slow = [run("a", 0, 1200.0, true, true), run("a", 1, 1200.0, true, true)];
        let cmp = compare(&base, &slow, 10.0);
        assert_eq!(cmp.changes.iter().find(|c| c.metric == "total_time_ms").unwrap().verdict, Verdict::Regression);
    }

    #[test]
    fn incomplete_beta_edges() {
        assert_eq!(incomplete_beta(2.0, 3.0, 0.0), 0.0);
        assert_eq!(incomplete_beta(2.0, 3.0, 1.0), 1.0);
        // I_0.5(a, a) = 0.5 by symmetry.
        assert!((incomplete_beta(3.5, 3.5, 0.5) - 0.5).abs() < 1e-9);
    }
}
