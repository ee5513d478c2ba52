//! Total time against RAM: a least-squares line per group of measured runs.

use crate::rank::vms;
use crate::record::RunRecord;
use crate::summary::cell_runs::CellRuns;
use crate::stats::Stats;
use serde::Serialize;

/// A least-squares line total_time_ms = a + b · RAM_MiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    pub a_ms: f64,
    pub b_ms_per_mib: f64,
    /// `None` when every run took the same time (nothing to explain).
    pub r2: Option<f64>,
    /// |fit − measured| / measured over the runs, %; `None` when no run took > 0 ms.
    pub median_error_percent: Option<f64>,
    pub worst_error_percent: Option<f64>,
}

/// The least-squares line through `points` (RAM MiB, total ms); `None` with fewer
/// than 2 distinct RAM sizes (or a non-finite value).
pub fn fit_line(points: &[(f64, f64)]) -> Option<Fit> {
    if points.iter().any(|(x, y)| !(x.is_finite() && y.is_finite())) {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if points.len() < 2 || sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let b = sxy / sxx;
    let a = mean_y - b * mean_x;
    let ss_res: f64 = points.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    let r2 = (ss_tot > 0.0).then(|| 1.0 - ss_res / ss_tot);
    let errors: Vec<f64> = points.iter().filter(|p| p.1 > 0.0).map(|p| 100.0 * (a + b * p.0 - p.1).abs() / p.1).collect();
    let stats = Stats::of(&errors);
    Some(Fit { a_ms: a, b_ms_per_mib: b, r2, median_error_percent: stats.map(|s| s.median), worst_error_percent: stats.map(|s| s.max) })
}

/// One group of runs that differ only in RAM.
#[derive(Debug, Clone, Serialize)]
pub struct FitGroup {
    pub group: String,
    /// Healthy completed runs with a total time: the points of the fit.
    pub runs: usize,
    pub ram_mib: Vec<u32>,
    pub fit: Option<Fit>,
    /// Why there is no fit.
    pub why_not: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fits {
    pub groups: Vec<FitGroup>,
    /// Why there are no groups.
    pub note: Option<String>,
}

/// The variables a fit group is named by, besides those that vary.
const GROUP_BY: [&str; 3] = ["workload", "link", "strategy"];

/// Total time against RAM, per group of runs with the same workload, link,
/// strategy and other varied settings.
pub fn fits(records: &[RunRecord]) -> Fits {
    if records.is_empty() {
        return Fits { groups: Vec::new(), note: Some("No measured runs".into()) };
    }
    let cells: Vec<serde_json::Value> = records.iter().map(|r| serde_json::to_value(&r.run.cell).unwrap_or_default()).collect();
    let varied = vms::varied(&cells);
    let mut names: Vec<&str> = GROUP_BY.to_vec();
    names.extend(varied.iter().map(String::as_str).filter(|v| *v != "ram_mib" && !GROUP_BY.contains(v)));
    let profiles = records.iter().map(|r| &r.run.profile).collect::<std::collections::BTreeSet<_>>().len();
    let mut groups: Vec<(String, Vec<&RunRecord>)> = Vec::new();
    for (r, cell) in records.iter().zip(&cells) {
        let mut label: Vec<String> = names.iter().map(|n| format!("{n}={}", vms::show(&cell[*n]))).collect();
        if profiles > 1 {
            label.insert(0, r.run.profile.clone());
        }
        let label = label.join(" ");
        match groups.iter_mut().find(|g| g.0 == label) {
            Some(g) => g.1.push(r),
            None => groups.push((label, vec![r])),
        }
    }
    let groups = groups
        .into_iter()
        .map(|(group, runs)| {
            let runs = CellRuns::new(runs);
            let points: Vec<(f64, f64)> =
                runs.counted().filter_map(|r| Some((r.run.cell.ram_mib as f64, r.migration.measurement.total_time_ms?))).collect();
            let mut ram: Vec<u32> = points.iter().map(|p| p.0 as u32).collect();
            ram.sort_unstable();
            ram.dedup();
            let (fit, why_not) = if points.is_empty() {
                (None, Some(runs.why_no_figure().unwrap_or_else(|| "no run recorded a total time".to_string())))
            } else if ram.len() < 2 {
                (None, Some("needs ≥ 2 RAM sizes".to_string()))
            } else {
                (fit_line(&points), None)
            };
            FitGroup { group, runs: points.len(), ram_mib: ram, fit, why_not }
        })
        .collect();
    Fits { groups, note: None }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::plan::testing::*;

    #[test]
    fn an_exact_line_fits_perfectly() {
        // total = 100 + 2 · RAM: 612 at 256 MiB, 1124 at 512, 2148 at 1024.
        let f = fit_line(&[(256.0, 612.0), (512.0, 1124.0), (1024.0, 2148.0), (512.0, 1124.0)]).unwrap();
        assert!(close(f.a_ms, 100.0, 1e-9) && close(f.b_ms_per_mib, 2.0, 1e-12), "{f:?}");
        assert!(close(f.r2.unwrap(), 1.0, 1e-12), "{f:?}");
        assert!(f.median_error_percent.unwrap() < 1e-9 && f.worst_error_percent.unwrap() < 1e-9, "{f:?}");
    }

    #[test]
    fn a_noisy_fit_by_hand() {
        // x = 1, 1, 3, 3; y = 10, 12, 20, 22: means 2 and 16; Sxx = 4, Sxy = 20,
        // b = 5, a = 16 − 10 = 6. Fitted 11, 11, 21, 21: residuals −1, 1, −1, 1,
        // SSres = 4; SStot = 36 + 16 + 16 + 36 = 104; R² = 1 − 4/104 = 0.961538.
        // Errors: 1/10 = 10 %, 1/12 = 8.33 %, 1/20 = 5 %, 1/22 = 4.55 %:
        // median (5 + 8.33) / 2 = 6.67 %, worst 10 %.
        let f = fit_line(&[(1.0, 10.0), (1.0, 12.0), (3.0, 20.0), (3.0, 22.0)]).unwrap();
        assert!(close(f.a_ms, 6.0, 1e-9) && close(f.b_ms_per_mib, 5.0, 1e-9), "{f:?}");
        assert!(close(f.r2.unwrap(), 1.0 - 4.0 / 104.0, 1e-12), "{f:?}");
        assert!(close(f.median_error_percent.unwrap(), (5.0 + 100.0 / 12.0) / 2.0, 1e-9), "{f:?}");
        assert!(close(f.worst_error_percent.unwrap(), 10.0, 1e-9), "{f:?}");
        // A flat line explains nothing: R² is undefined, the errors are 0.
        let f = fit_line(&[(256.0, 700.0), (512.0, 700.0)]).unwrap();
        assert_eq!((f.b_ms_per_mib, f.r2), (0.0, None));
    }

    #[test]
    fn fits_count_only_healthy_completed_runs() {
        use crate::summary::cell_runs::testing::run;
        let at = |ram: u32, link: &str, mut r: RunRecord| {
            r.run.cell.ram_mib = ram;
            r.run.cell.link = link.parse().unwrap();
            r
        };
        // total = 100 + 2 · RAM on the healthy runs; a broken guest's 10⁶ ms at 512 MiB
        // would bend the line if it counted.
        let records = [
            at(256, "1Gbit", run("a", 0, 612.0, true, true)),
            at(512, "1Gbit", run("b", 0, 1124.0, true, true)),
            at(512, "1Gbit", run("b", 1, 1_000_000.0, false, true)),
            at(256, "100Mbit", run("c", 0, 700.0, false, true)),
            at(512, "100Mbit", run("d", 0, 900.0, false, true)),
        ];
        let f = fits(&records);
        let fast = f.groups.iter().find(|g| g.group.contains("link=1Gbit")).unwrap();
        let fit = fast.fit.as_ref().unwrap();
        assert!(close(fit.a_ms, 100.0, 1e-9) && close(fit.b_ms_per_mib, 2.0, 1e-12) && fast.runs == 2, "{fast:?}");
        let slow = f.groups.iter().find(|g| g.group.contains("link=100Mbit")).unwrap();
        assert!(slow.fit.is_none() && slow.why_not.as_deref().unwrap().starts_with("0 of 2 healthy: 2 runs: guest not healthy"), "{slow:?}");
    }

    #[test]
    fn a_fit_needs_two_ram_sizes() {
        assert_eq!(fit_line(&[(256.0, 700.0), (256.0, 710.0)]), None);
        assert_eq!(fit_line(&[(256.0, 700.0)]), None);
        assert_eq!(fit_line(&[]), None);
        assert_eq!(fit_line(&[(256.0, f64::NAN), (512.0, 1.0)]), None);
    }
}
