//! `migbench run PROFILE`: every cell of a profile, streamed to DIR/results.jsonl,
//! then its summary.

use super::*;

#[derive(Args)]
pub(crate) struct SweepArgs {
    /// Accelerator: auto (KVM if a guest really runs under it, else TCG), kvm, tcg.
    #[arg(long, default_value = "auto")]
    pub(crate) accel: AccelRequest,
    /// Boot a fresh guest pair for every run instead of reusing booted guests.
    #[arg(long)]
    pub(crate) no_reuse: bool,
    /// How long a guest may take to boot to READY.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub(crate) boot_timeout: u64,
    /// No progress output (results and the summary are still printed).
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// A profile file, or the name of one in profiles/ (e.g. smoke).
    pub(crate) profile: String,
    /// Results directory (default reports/<profile name>).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Continue a sweep in --out: runs already in results.jsonl are skipped.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Run only shard I of N (cell i belongs to shard i mod N), e.g. --shard 0/4.
    #[arg(long, value_name = "I/N", default_value = "0/1")]
    pub(crate) shard: Shard,
    /// List the cells and estimate the time, without running anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) sweep: SweepArgs,
    #[command(flatten)]
    pub(crate) remote: super::migrate::RemoteArgs,
    /// With --dest (or a profile's dest): the QEMU to run there (a version, `system` or a path there).
    #[arg(long, value_name = "VERSION|PATH")]
    pub(crate) qemu_dest: Option<QemuWanted>,
}

/// `migbench run`: the profile (or with --dry-run, its plan).
pub(crate) async fn run(image: &ImageArgs, a: &RunArgs) -> Result<ExitCode> {
    let profile = Profile::resolve(&a.profile)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("reports").join(&profile.name));
    if a.dry_run {
        let done = migbench::record::file::done_keys(&migbench::record::file::read_understood(&out.join("results.jsonl"))?, &profile.name);
        let runs = sweep::plan(&profile, a.shard, &done);
        println!("profile {} ({}): {}", profile.name, profile.source, profile.description);
        println!("{} cells × {} repetitions; shard {}/{}; {} runs to do, {} already done in {}", profile.cells.len(), profile.repetitions, a.shard.index, a.shard.count, runs.len(), done.len(), out.display());
        let fixed: Vec<&str> = migbench::experiment::profile::VARIABLES.iter().copied().filter(|v| !profile.varied.contains(v)).collect();
        if let Some(first) = profile.cells.first() {
            println!("every cell: {}", first.describe(&fixed));
        }
        for r in &runs {
            println!("  cell {:>3} rep {}  {}", r.cell_index, r.repetition + 1, r.cell.describe(&profile.varied));
        }
        let est = sweep::estimate(&profile, &runs, !a.sweep.no_reuse, image.boot);
        println!("estimated time under TCG: about {}", humantime::format_duration(Duration::from_secs(est.as_secs())));
        return Ok(ExitCode::SUCCESS);
    }
    let remote = a.remote.spec(a.qemu_dest.as_ref(), profile.dest.as_ref())?;
    if remote.is_none() && a.qemu_dest.is_some() {
        anyhow::bail!("--qemu-dest with migbench run names the QEMU on another host (--dest); on this host give the profile a qemu_dest axis");
    }
    let mut p = prepare(image).await?;
    let env = environment(&mut p, a.sweep.accel).await?;
    let mut opts = sweep_options(&a.sweep, out, a.resume, a.shard)?;
    if let Some(r) = &remote {
        opts.remote = Some(super::migrate::connect_remote(r, &p, &env).await?);
    }
    let (outcome, records) = run_sweep(&p, &env, &profile, &opts).await?;
    print_sweep(&profile, &outcome, records)
}

/// Runs the sweep, then draws the plots of what it wrote (the runner writes data
/// only), and gives back the outcome with the runs of `profile` in its results file.
/// The file is read once, for the plots and the caller alike.
pub(crate) async fn run_sweep(
    p: &Platform,
    env: &Environment,
    profile: &Profile,
    opts: &SweepOptions,
) -> Result<(sweep::SweepOutcome, Vec<migbench::record::RunRecord>)> {
    use migbench::record::file;
    let outcome = sweep::run(p, env, profile, opts).await?;
    let runs = file::read_runs(&outcome.results)?;
    migbench::report::plot::write_latency_plots(&opts.out, &runs);
    Ok((outcome, file::of_profile(runs, &profile.name)))
}

pub(crate) fn sweep_options(a: &SweepArgs, out: PathBuf, resume: bool, shard: Shard) -> Result<SweepOptions> {
    Ok(SweepOptions { out, resume, shard, reuse: !a.no_reuse, boot_timeout: boot_timeout(a.boot_timeout)?, quiet: a.quiet, remote: None })
}

/// The summary of `runs` on the terminal: the report's sections as text (the table
/// per cell, then whichever of the runs not counted, service, faults, endurance and
/// paper sections they get). `dir` is the results directory.
pub(crate) fn print_summary(profile: &Profile, runs: Vec<migbench::record::RunRecord>, dir: &std::path::Path) -> Result<()> {
    use migbench::report::document::{self, ProfileRuns};
    use migbench::report::export::{Exporter, terminal::Terminal};
    let source = dir.display().to_string();
    let group = ProfileRuns { profile: profile.clone(), profile_origin: format!("profile {}", profile.source), runs, base: dir.to_path_buf() };
    print!("{}", Terminal.render(&document::build(&[group], &source)?)?);
    Ok(())
}

/// Prints a sweep's summary table and figures from its `records` (as [`run_sweep`] gives them);
/// exit 3 if any run did not complete healthy.
pub(crate) fn print_sweep(profile: &Profile, outcome: &sweep::SweepOutcome, records: Vec<migbench::record::RunRecord>) -> Result<ExitCode> {
    let bad = !all_counted(profile, &records);
    let dir = outcome.results.parent().unwrap_or(std::path::Path::new("."));
    print_summary(profile, records, dir)?;
    println!(
        "\n{} runs in {:.1} s ({:.1} runs/min, guest reuse {}){}",
        outcome.ran,
        outcome.wall.as_secs_f64(),
        outcome.runs_per_min(),
        if outcome.reuse { "on" } else { "off" },
        if outcome.skipped > 0 { format!("; {} already done, skipped", outcome.skipped) } else { String::new() }
    );
    eprintln!("migbench: results in {}", outcome.results.display());
    Ok(if bad { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

/// Whether every run of every cell counts (completed, healthy, strategy at work).
pub(crate) fn all_counted(profile: &Profile, records: &[migbench::record::RunRecord]) -> bool {
    migbench::summary::cells::summarise(records, profile).iter().all(|c| c.counted == c.runs)
}
