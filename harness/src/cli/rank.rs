//! `migbench rank SOURCE`: which VM to migrate.

use super::*;

#[derive(Args)]
pub(crate) struct RankArgs {
    /// A results directory (or results.jsonl) to rank, or a profile: then each cell's guest is
    /// booted and its dirty rate measured, and the model predicts its migration (nothing migrates).
    pub(crate) source: String,
    /// time (the papers' rule: total time, then downtime), bytes, service-downtime, slowdown.
    #[arg(long, default_value = "time")]
    pub(crate) objective: migbench::rank::vms::Objective,
    /// With a profile: also migrate every cell (a sweep that measures the dirty rate first) and
    /// print predicted against measured: errors and Kendall's tau.
    #[arg(long)]
    pub(crate) validate: bool,
    /// Seconds of calc-dirty-rate per candidate (profiles without their own dirty_rate_s).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub(crate) dirty_rate_seconds: f64,
    /// Where a --validate sweep writes its results (default reports/<profile>-validate).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) sweep: SweepArgs,
}

/// `migbench rank SOURCE`: a measured ranking from results, a predicted one from a
/// profile's guests, or (`--validate`) both with the model's errors.
pub(crate) async fn rank(image: &ImageArgs, a: &RankArgs) -> Result<ExitCode> {
    use migbench::rank::vms;
    if let Source::Results(results) = source_kind(&a.source) {
        if a.validate {
            anyhow::bail!("--validate takes a profile (it migrates every cell); {} is a results file: rank it without --validate", a.source);
        }
        print_ranking(&migbench::record::file::load(&results)?, a.objective);
        return Ok(ExitCode::SUCCESS);
    }
    let profile = profile_to_measure(&a.source, a.dirty_rate_seconds)?;
    let mut p = prepare(image).await?;
    let env = environment(&mut p, a.sweep.accel).await?;
    if a.validate {
        let out = a.out.clone().unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-validate", profile.name)));
        let opts = sweep_options(&a.sweep, out, false, Shard::default())?;
        let (outcome, records) = run_sweep(&p, &env, &profile, &opts).await?;
        print_ranking(&records, a.objective);
        eprintln!("migbench: results in {}", outcome.results.display());
        return Ok(ExitCode::SUCCESS);
    }
    let predicted = vms::predict_cells(&p, &env, &profile, boot_timeout(a.sweep.boot_timeout)?, a.sweep.quiet).await?;
    println!("{}", migbench::report::predicted_table(&predicted));
    Ok(ExitCode::SUCCESS)
}

/// The measured ranking of `records`, with the model's errors when it has predictions.
pub(crate) fn print_ranking(records: &[migbench::record::RunRecord], objective: migbench::rank::vms::Objective) {
    use migbench::rank::vms;
    let rows = vms::rows(records);
    println!("{}", migbench::report::rank_table(&rows, &vms::rank(&rows, objective)));
    if let Some(v) = vms::validate(&rows) {
        println!("\n{}", migbench::report::validation_lines(&v));
    }
}
