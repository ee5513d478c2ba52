//! `migbench balance`: the load-balancing policy engine.

use super::*;

#[derive(Args)]
pub(crate) struct BalanceArgs {
    /// Decide once from a cluster state file (--state) instead of a live cluster.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// A live cluster: hosts as cgroups on this machine (or real hosts over SSH, each a
    /// [[host]] with dest = "ssh://user@host"), guests with cpu-duty workloads, balanced
    /// round by round with real migrations (e.g. profiles/chandak-cluster.toml).
    #[arg(long, value_name = "PROFILE", conflicts_with_all = ["dry_run", "state", "compare_rules"])]
    pub(crate) cluster: Option<String>,
    /// The cluster's one host on another machine, in place of its [[host]]'s dest
    /// (ssh://user@host[:port]); a cluster with several names each in its profile.
    #[arg(long, value_name = "ssh://USER@HOST[:PORT]", requires = "cluster")]
    pub(crate) dest: Option<migbench::host::ssh::SshTarget>,
    /// The private key that logs in to the cluster's remote hosts (each [[host]] with dest);
    /// otherwise your ssh config and agent. More keys: --ssh-option IdentityFile=FILE.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub(crate) ssh_key: Option<PathBuf>,
    /// More ssh options for the remote hosts, as `-o` takes them (e.g. UserKnownHostsFile=FILE); repeatable.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE", requires = "cluster")]
    pub(crate) ssh_options: Vec<String>,
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
    if let Some(dest) = &a.dest {
        let far: Vec<String> = profile.hosts.iter().filter(|h| h.dest.is_some()).map(|h| format!("{:?}", h.name)).collect();
        if far.len() > 1 {
            anyhow::bail!(
                "--dest {dest} replaces the dest of the cluster's one host on another machine, and cluster profile {} has {} ({}): give each [[host]] its dest in the profile instead",
                profile.name,
                far.len(),
                far.join(", ")
            );
        }
        let Some(h) = profile.hosts.iter_mut().find(|h| h.dest.is_some()) else {
            anyhow::bail!("--dest {dest} replaces the dest of the cluster's host on another machine, and cluster profile {} has none: give one [[host]] dest = \"ssh://user@host\"", profile.name);
        };
        h.dest = Some(dest.clone());
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("reports").join(&profile.name));
    let specs = remote_specs(&profile, a)?;
    let boot = boot_timeout(a.sweep.boot_timeout)?;
    let mut p = prepare(image).await?;
    let env = environment(&mut p, a.sweep.accel).await?;
    // One connection per remote host, all made before any guest boots.
    let mut remotes = Vec::new();
    for (h, spec) in profile.hosts.iter().zip(&specs) {
        remotes.push(match spec {
            Some(s) => Some(
                super::migrate::connect_remote(s, &p, &env)
                    .await
                    .with_context(|| format!("host {:?} (dest = \"{}\") of cluster profile {}", h.name, s.target, profile.name))?,
            ),
            None => None,
        });
    }
    let mut show = |r: &cluster::Round| println!("{}", migbench::report::cluster_round(r));
    let run = cluster::run(&p, &env, &profile, &remotes, boot, &mut show).await?;
    drop(remotes);
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

/// How to reach each of the profile's hosts with `dest` (`None` for the others).
fn remote_specs(profile: &migbench::rank::cluster::ClusterProfile, a: &BalanceArgs) -> Result<Vec<Option<migbench::machine::remote::RemoteSpec>>> {
    let auth = migbench::host::ssh::SshAuth { key: a.ssh_key.clone(), options: a.ssh_options.clone() };
    let specs: Vec<_> = profile
        .hosts
        .iter()
        .map(|h| {
            h.dest.as_ref().map(|target| migbench::machine::remote::RemoteSpec { target: target.clone(), auth: auth.clone(), client_address: None, migrate_address: h.migrate_address.clone(), qemu: None })
        })
        .collect();
    if specs.iter().all(Option::is_none) {
        if let Some(opt) = [("--ssh-key", a.ssh_key.is_some()), ("--ssh-option", !a.ssh_options.is_empty())].iter().find(|(_, given)| *given).map(|(o, _)| o) {
            anyhow::bail!("{opt} is for a cluster host on another machine, and cluster profile {} has none: give a [[host]] dest = \"ssh://user@host\"", profile.name);
        }
    }
    Ok(specs)
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
