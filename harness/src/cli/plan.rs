//! `migbench plan SOURCE`: capacity planning.

use super::*;

#[derive(Args)]
pub(crate) struct PlanArgs {
    /// A results directory (or results.jsonl), or a profile: then each cell's guest is booted
    /// and its dirty rate measured, and nothing migrates (so there is nothing to fit).
    pub(crate) source: String,
    /// Link speeds to plan for, comma-separated.
    #[arg(long, default_value = migbench::rank::plan::DEFAULT_LINKS, value_name = "LIST", allow_hyphen_values = true)]
    pub(crate) links: String,
    /// Downtime limits for the convergence frontier, comma-separated (ms or s).
    #[arg(long, default_value = migbench::rank::plan::DEFAULT_DOWNTIME_LIMITS, value_name = "LIST", allow_hyphen_values = true)]
    pub(crate) downtime_limits: String,
    /// Numbers of migrations at once for the evacuation, comma-separated.
    #[arg(long, default_value = migbench::rank::plan::DEFAULT_PARALLEL, value_name = "LIST", allow_hyphen_values = true)]
    pub(crate) parallel: String,
    /// Also write the plan (the Markdown printed) to this file.
    #[arg(long, value_name = "FILE.md")]
    pub(crate) out: Option<PathBuf>,
    /// Write the three sections as one JSON document.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Seconds of calc-dirty-rate per VM (profiles without their own dirty_rate_s).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub(crate) dirty_rate_seconds: f64,
    #[command(flatten)]
    pub(crate) sweep: SweepArgs,
}

/// `migbench plan SOURCE`: the convergence frontier, the evacuation time and the fits
/// of total time against RAM, from results or from a profile's measured guests.
pub(crate) async fn plan(image: &ImageArgs, a: &PlanArgs) -> Result<ExitCode> {
    use migbench::rank::plan::{self, PlanVm};
    use migbench::rank::vms;
    // The cheap inputs first: a typo should not wait for guests to boot.
    let opts = plan::Options::parse(&a.links, &a.downtime_limits, &a.parallel).map_err(anyhow::Error::msg)?;
    for (flag, path) in [("--out", &a.out), ("--json", &a.json)] {
        let Some(path) = path else { continue };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if path.is_dir() {
            anyhow::bail!("{flag} {}: that is a directory; give a file in it, e.g. {}", path.display(), path.join(if flag == "--out" { "plan.md" } else { "plan.json" }).display());
        }
        if !dir.is_dir() {
            anyhow::bail!("{flag} {}: the directory {} does not exist; create it or give another path", path.display(), dir.display());
        }
    }
    let (planned, records) = match source_kind(&a.source) {
        Source::Results(results) => {
            let records = migbench::record::file::load(&results)?;
            (vms::rows(&records).iter().map(PlanVm::from_row).collect::<Vec<_>>(), Some(records))
        }
        Source::Profile => {
            let profile = profile_to_measure(&a.source, a.dirty_rate_seconds)?;
            let boot = boot_timeout(a.sweep.boot_timeout)?;
            let mut p = prepare(image).await?;
            let env = environment(&mut p, a.sweep.accel).await?;
            let predicted = vms::predict_cells(&p, &env, &profile, boot, a.sweep.quiet).await?;
            (predicted.iter().map(PlanVm::from_predicted).collect(), None)
        }
    };
    let result = plan::plan(&a.source, &planned, records.as_deref(), &opts);
    let text = migbench::report::plan::markdown(&result);
    println!("{text}");
    if let Some(path) = &a.out {
        std::fs::write(path, &text).with_context(|| format!("--out {}: writing the plan", path.display()))?;
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?).with_context(|| format!("--json {}: writing the plan", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
