//! `migbench balance`: the load-balancing policy engine.

use super::*;

#[derive(Args)]
pub(crate) struct BalanceArgs {
    /// Decide once from a cluster state file (--state) instead of a live cluster.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// A live cluster on this machine: hosts as cgroups, guests with cpu-duty workloads,
    /// balanced round by round with real migrations (e.g. profiles/chandak-cluster.toml).
    #[arg(long, value_name = "PROFILE", conflicts_with_all = ["dry_run", "state", "compare_rules"])]
    pub(crate) cluster: Option<String>,
    /// Where the cluster run's rounds are written (cluster.json); default reports/<profile name>.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) sweep: SweepArgs,
    /// The cluster state: {"hosts":[{"name":"Host 1","cpu":42.4,"cores":4,"vms":[{"name":"S1","cpu":46.5}, …]}, …]}.
    #[arg(long, value_name = "FILE.json")]
    pub(crate) state: Option<PathBuf>,
    /// paper (the five phases only), guarded (vetoes and cooldown; the default), cost-aware,
    /// lightest, min-stddev. With --cluster it overrides the profile's rule.
    #[arg(long)]
    pub(crate) rule: Option<migbench::rank::balance::Rule>,
    /// A move must lower σ of host CPU by at least this many points (all rules but paper;
    /// default 1). With --cluster it overrides the profile's margin.
    #[arg(long)]
    pub(crate) margin: Option<f64>,
    /// Run the state through every rule and print a comparison table.
    #[arg(long)]
    pub(crate) compare_rules: bool,
}

/// `migbench balance --cluster PROFILE`: the policy engine on a live cluster.
pub(crate) async fn balance_cluster(image: &ImageArgs, a: &BalanceArgs) -> Result<ExitCode> {
    use migbench::rank::cluster;
    let name = a.cluster.as_ref().expect("checked by the caller");
    let mut profile = cluster::ClusterProfile::load(&migbench::experiment::profile::locate(name)?)?;
    if let Some(rule) = a.rule {
        profile.rule = rule;
    }
    if let Some(margin) = a.margin {
        if !(margin.is_finite() && margin >= 0.0) {
            anyhow::bail!("--margin {margin}: give points of σ of host CPU, 0 or more (e.g. 1)");
        }
        profile.margin = margin;
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("reports").join(&profile.name));
    let mut p = prepare(image).await?;
    let env = environment(&mut p, a.sweep.accel).await?;
    let mut show = |r: &cluster::Round| println!("{}", migbench::report::cluster_round(r));
    let run = cluster::run(&p, &env, &profile, boot_timeout(a.sweep.boot_timeout)?, &mut show).await?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let file = out.join("cluster.json");
    std::fs::write(&file, serde_json::to_string_pretty(&run)?).with_context(|| format!("writing {} (disk full?)", file.display()))?;
    println!(
        "\n{} after {} rounds and {} migrations, {:.0} s",
        if run.balanced { "Balanced: every host is moderate" } else { "Not balanced" },
        run.rounds.len(),
        run.migrations,
        run.wall_s
    );
    eprintln!("migbench: rounds in {}", file.display());
    if let Some(e) = &run.error {
        eprintln!("migbench: the run stopped early: {e}");
    }
    Ok(if run.balanced { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// `migbench balance --dry-run --state FILE.json`: the decision as JSON, or with
/// `--compare-rules` a table of every rule's choice.
pub(crate) fn balance(a: &BalanceArgs) -> Result<ExitCode> {
    use migbench::rank::balance::{self, ClusterState, Options, Rule};
    let Some(path) = a.state.as_ref().filter(|_| a.dry_run) else {
        anyhow::bail!(
            "balance needs --dry-run --state FILE.json (one decision for a cluster state read from a file, \
             e.g. --dry-run --state profiles/chandak/table1.json) or --cluster PROFILE (a live cluster, e.g. --cluster cluster-tcg)"
        );
    };
    let margin = a.margin.unwrap_or(1.0);
    let rule = a.rule.unwrap_or_default();
    if !(margin.is_finite() && margin >= 0.0) {
        anyhow::bail!("--margin {margin}: give points of σ of host CPU, 0 or more (e.g. 1)");
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the cluster state {}", path.display()))?;
    let state: ClusterState = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("cluster state {}: {e} (expected {{\"hosts\":[{{\"name\":…,\"cpu\":…,\"vms\":[{{\"name\":…,\"cpu\":…}}]}}]}})", path.display())
    })?;
    if !a.compare_rules {
        let d = balance::decide(&state, &Options { rule, margin }).map_err(|e| anyhow::anyhow!("cluster state {}: {e}", path.display()))?;
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut decisions = Vec::new();
    for rule in Rule::ALL {
        decisions.push(balance::decide(&state, &Options { rule, margin }).map_err(|e| anyhow::anyhow!("cluster state {}: {e}", path.display()))?);
    }
    println!("{}", migbench::report::balance_rules_table(&decisions));
    Ok(ExitCode::SUCCESS)
}
