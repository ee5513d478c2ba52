//! `migbench compare BASELINE CURRENT`: two result sets, cell by cell, with a
//! statistical test rather than a single-number diff. A figure has regressed when
//! Welch's t-test says the current runs differ from the baseline's (p < 0.05) *and*
//! the mean got worse by more than the allowed margin; run-to-run noise passes.

use crate::experiment::sweep::RunRecord;
use crate::migration::{Measurement, Outcome};
use serde::Serialize;

/// The figures compared (all: less is better).
const METRICS: [(&str, &str); 3] = [("total_time_ms", "ms"), ("downtime_ms", "ms"), ("transferred_mib", "MiB")];

fn metric(m: &Measurement, name: &str) -> Option<f64> {
    match name {
        "total_time_ms" => m.total_time_ms,
        "downtime_ms" => m.downtime_ms,
        "transferred_mib" => m.transferred_bytes.map(|b| b as f64 / 1048576.0),
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
    /// Welch's two-sided p-value; None with fewer than 2 runs on a side or no spread.
    pub p_value: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Regression,
    Improvement,
    Unchanged,
    /// Too few runs to test.
    Untested,
}

/// The cells of both sets, matched by (profile, cell key), every metric compared.
pub fn compare(baseline: &[RunRecord], current: &[RunRecord], max_regression_percent: f64) -> Vec<Change> {
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for r in current {
        let k = (r.run.profile.clone(), r.run.cell_key.clone(), label(r));
        if !keys.iter().any(|x| x.0 == k.0 && x.1 == k.1) {
            keys.push(k);
        }
    }
    let samples = |set: &[RunRecord], k: &(String, String, String), name: &str| -> Vec<f64> {
        set.iter()
            .filter(|r| r.run.profile == k.0 && r.run.cell_key == k.1 && r.migration.measurement.outcome == Outcome::Completed)
            .filter_map(|r| metric(&r.migration.measurement, name))
            .collect()
    };
    let mut out = Vec::new();
    for k in &keys {
        for (name, unit) in METRICS {
            let (b, c) = (samples(baseline, k, name), samples(current, k, name));
            if b.is_empty() || c.is_empty() {
                continue;
            }
            let (bm, cm) = (mean(&b), mean(&c));
            let change = if bm != 0.0 { (cm - bm) / bm * 100.0 } else { 0.0 };
            let p = welch_p(&b, &c);
            let verdict = match p {
                None => Verdict::Untested,
                Some(p) if p < 0.05 && change > max_regression_percent => Verdict::Regression,
                Some(p) if p < 0.05 && change < -max_regression_percent => Verdict::Improvement,
                Some(_) => Verdict::Unchanged,
            };
            out.push(Change {
                cell: k.2.clone(),
                metric: name.into(),
                unit: unit.into(),
                baseline_mean: bm,
                current_mean: cm,
                baseline_runs: b.len(),
                current_runs: c.len(),
                change_percent: change,
                p_value: p,
                verdict,
            });
        }
    }
    out
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

/// The changes as a Markdown table (for the terminal and `$GITHUB_STEP_SUMMARY`).
pub fn markdown(changes: &[Change], max_regression_percent: f64) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["cell", "figure", "baseline", "current", "change", "p (Welch)", "verdict"]);
    for c in changes {
        b.push_record([
            c.cell.clone(),
            c.metric.clone(),
            format!("{:.1} {} ({} runs)", c.baseline_mean, c.unit, c.baseline_runs),
            format!("{:.1} {} ({} runs)", c.current_mean, c.unit, c.current_runs),
            format!("{:+.1} %", c.change_percent),
            c.p_value.map(|p| format!("{p:.3}")).unwrap_or_else(|| "-".into()),
            match c.verdict {
                Verdict::Regression => "REGRESSION".into(),
                Verdict::Improvement => "improvement".into(),
                Verdict::Unchanged => "unchanged".into(),
                Verdict::Untested => "untested (< 2 runs)".into(),
            },
        ]);
    }
    let regressions = changes.iter().filter(|c| c.verdict == Verdict::Regression).count();
    format!(
        "{}\n\n{regressions} significant regression(s) above {max_regression_percent} % (Welch's t-test, p < 0.05).",
        b.build().with(tabled::settings::Style::markdown())
    )
}

/// The current means in the JSON that benchmark-tracking actions read
/// (github-action-benchmark's `customSmallerIsBetter`: name, unit, value).
pub fn benchmark_json(changes: &[Change]) -> serde_json::Value {
    serde_json::Value::Array(
        changes
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

    #[test]
    fn incomplete_beta_edges() {
        assert_eq!(incomplete_beta(2.0, 3.0, 0.0), 0.0);
        assert_eq!(incomplete_beta(2.0, 3.0, 1.0), 1.0);
        // I_0.5(a, a) = 0.5 by symmetry.
        assert!((incomplete_beta(3.5, 3.5, 0.5) - 0.5).abs() < 1e-9);
    }
}
