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
    /// With --dest: how long to measure the link to that host for (seconds).
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub(crate) probe_seconds: f64,
    /// The QEMU on --dest's host: a version (7.2, 10.0), `system` or a path.
    #[arg(long, value_name = "VERSION|PATH", requires = "dest")]
    pub(crate) qemu_dest: Option<QemuWanted>,
    /// Plan for migrations to another host: its link is measured (one TCP stream to its
    /// migration address) and planned for beside --links.
    #[command(flatten)]
    pub(crate) remote: super::migrate::RemoteArgs,
    #[command(flatten)]
    pub(crate) sweep: SweepArgs,
}

/// `migbench plan SOURCE`: the convergence frontier, the evacuation time and the fits
/// of total time against RAM, from results or from a profile's measured guests.
pub(crate) async fn plan(image: &ImageArgs, a: &PlanArgs) -> Result<ExitCode> {
    use migbench::rank::plan::{self, PlanVm};
    use migbench::rank::vms;
    // The cheap inputs first: a typo should not wait for guests to boot.
    let mut opts = plan::Options::parse(&a.links, &a.downtime_limits, &a.parallel).map_err(anyhow::Error::msg)?;
    let remote = a.remote.spec(a.qemu_dest.as_ref(), None)?;
    if remote.is_some() && !(migbench::machine::link_probe::MIN_SECONDS..=600.0).contains(&a.probe_seconds) {
        anyhow::bail!("--probe-seconds {}: give between {} and 600 seconds", a.probe_seconds, migbench::machine::link_probe::MIN_SECONDS);
    }
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
    let kind = source_kind(&a.source);
    let profile = match kind {
        Source::Profile => Some(profile_to_measure(&a.source, a.dirty_rate_seconds)?),
        Source::Results(_) => None,
    };
    // QEMU and the image: to boot a profile's guests, or to reach another host.
    let platform = if matches!(kind, Source::Profile) || remote.is_some() {
        let mut p = prepare(image).await?;
        let env = environment(&mut p, a.sweep.accel).await?;
        Some((p, env))
    } else {
        None
    };
    let (planned, records) = match (kind, &platform) {
        (Source::Results(results), _) => {
            let records = migbench::record::file::load(&results)?;
            (vms::rows(&records).iter().map(PlanVm::from_row).collect::<Vec<_>>(), Some(records))
        }
        (Source::Profile, Some((p, env))) => {
            let profile = profile.as_ref().expect("parsed above");
            let boot = boot_timeout(a.sweep.boot_timeout)?;
            let predicted = vms::predict_cells(p, env, profile, boot, a.sweep.quiet).await?;
            (predicted.iter().map(PlanVm::from_predicted).collect(), None)
        }
        (Source::Profile, None) => unreachable!("a profile gets its platform above"),
    };
    if let (Some(r), Some((p, env))) = (&remote, &platform) {
        // The host must take these guests (preflight), and its link is what it is.
        let env = env.clone();
        let host = super::migrate::connect_remote(r, p, &env).await?;
        let largest = planned.iter().map(|v| v.guest.ram_mib).max().unwrap_or(0);
        let seconds = a.probe_seconds;
        let probe = tokio::task::spawn_blocking(move || -> Result<migbench::machine::link_probe::LinkProbe> {
            host.check(env.accel, largest)?;
            migbench::machine::link_probe::measure(&host, seconds)
        })
        .await
        .context("link probe task")??;
        eprintln!("migbench: the link to {} carried {:.1} Mbit/s in one stream over {:.1} s", probe.host, probe.mbit(), probe.sent_for_s);
        opts = opts.with_measured(probe);
    }
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
