//! `migbench compare BASELINE CURRENT`: the CI gate.

use super::*;

#[derive(Args)]
pub(crate) struct CompareArgs {
    /// The baseline results (a directory with results.jsonl, or the file).
    pub(crate) baseline: PathBuf,
    /// The results to judge.
    pub(crate) current: PathBuf,
    /// A figure regresses when its mean is worse by more than this (and the t-test says it differs).
    #[arg(long, default_value = "10%", value_name = "PERCENT")]
    pub(crate) max_regression: String,
    /// Also write the current means as JSON for benchmark-tracking actions (customSmallerIsBetter).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
}

/// `migbench compare BASELINE CURRENT`: exit 4 on a significant regression, 5 when a
/// baseline cell was not compared.
pub(crate) fn compare(a: &CompareArgs) -> Result<ExitCode> {
    use migbench::report::compare;
    let text = a.max_regression.trim().trim_end_matches('%').trim();
    let max: f64 = match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => v,
        _ => anyhow::bail!("--max-regression {}: give a percentage, 0 or more (e.g. 10%)", a.max_regression),
    };
    let (baseline, current) = (migbench::record::file::load(&a.baseline)?, migbench::record::file::load(&a.current)?);
    let cmp = compare::compare(&baseline, &current, max);
    let table = compare::markdown(&cmp, max);
    println!("{table}");
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&summary).with_context(|| format!("opening $GITHUB_STEP_SUMMARY ({})", summary.to_string_lossy()))?;
        writeln!(f, "## migbench compare\n\n{table}\n").with_context(|| "writing $GITHUB_STEP_SUMMARY")?;
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&compare::benchmark_json(&cmp))?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::from(cmp.exit_code()))
}
