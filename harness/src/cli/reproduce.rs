//! `migbench reproduce PAPER`: a paper's profiles, then one report of them.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Paper {
    /// Ghalib et al.: HTTP latency per request across a migration at 100 Mbit/s (profile ghalib-web).
    Ghalib,
    /// Shreya et al.: CPU use against the cap (Tables 1–3), host cores (Table 4), time and downtime (Table 5).
    Shreya,
    /// Chandak et al.: the policy engine on the paper's Tables 1–4, then a live 3-host cluster.
    Chandak,
    /// Sahni & Varma: pre-copy, post-copy, hybrid (and multifd zstd) on idle, read- and write-intensive guests (profile sahni).
    Sahni,
    /// Thesis chapter 1, Table 1.1: the pre-/post-copy cost model predicted vs measured, per strategy (profile thesis).
    Thesis,
}

#[derive(Args)]
pub(crate) struct ReproduceArgs {
    pub(crate) paper: Paper,
    /// Where the results and the report go (default reports/reproduce-<paper>).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Continue an interrupted reproduction: runs already in DIR are kept.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Repetitions per cell instead of each profile's own (Shreya's Tables 1–3 are 432 runs at 3; sahni 36, thesis 24).
    #[arg(long, value_name = "N")]
    pub(crate) repetitions: Option<u32>,
    /// Chandak: decide the paper's tables only, without the live cluster.
    #[arg(long)]
    pub(crate) no_live: bool,
    /// Report formats (md, html, json, csv).
    #[arg(long, default_value = "md,html", value_name = "LIST")]
    pub(crate) format: String,
    #[command(flatten)]
    pub(crate) sweep: SweepArgs,
}

/// `migbench reproduce PAPER`: the paper's profiles, then one report of them.
pub(crate) async fn reproduce(image: &ImageArgs, a: &ReproduceArgs) -> Result<ExitCode> {
    use migbench::report::block::Block;
    use migbench::report::document::{self, Document};
    use migbench::report::export::files::{self, Format};
    let formats = Format::parse_list(&a.format)?;
    if let Some(r) = a.repetitions {
        if !(1..=10_000).contains(&r) {
            anyhow::bail!("--repetitions {r}: give 1 to 10000 runs per cell");
        }
    }
    let (slug, citation, profiles): (&str, &str, &[&str]) = match a.paper {
        Paper::Ghalib => ("ghalib", "Ghalib et al., \"Virtual Machine Migration with an Open Source Hypervisor\"", &["ghalib-web"]),
        Paper::Shreya => ("shreya", "Shreya et al., \"Performance Analysis during Live Migration\"", &["shreya-tables1-3", "shreya-table4", "shreya-table5"]),
        Paper::Chandak => ("chandak", "Chandak et al., \"Dynamic Load Balancing of Virtual Machines using QEMU-KVM\"", &[]),
        Paper::Sahni => ("sahni", "Sahni & Varma, \"A Hybrid Approach To Live Migration Of Virtual Machines\"", &["sahni"]),
        Paper::Thesis => ("thesis", "the thesis chapter \"Virtualization and Resource Management in Cloud\" (Table 1.1)", &["thesis"]),
    };
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("reports").join(format!("reproduce-{slug}")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut intro = vec![Block::Markdown(format!(
        "Reproducing {citation} (`../shared/papers/`, summarised in `../shared/REPRODUCE.md`). Their hardware and hypervisor \
         are not ours: a reproduction can match the *shape* of a result (an ordering, a trend, a decision) and prints their \
         number beside ours; it cannot match their absolute times, which depend on their machines, their links and, for \
         Xen, another hypervisor. Each section below ends with a verdict per claim."
    ))];
    let mut bad = false;
    if a.paper == Paper::Chandak {
        intro.push(Block::Heading(2, "The policy engine on the paper's Tables 1–4".into()));
        intro.push(Block::Markdown(migbench::report::papers::chandak::tables()?));
    }
    let needs_guests = !profiles.is_empty() || (a.paper == Paper::Chandak && !a.no_live);
    let mut platform = if needs_guests { Some(prepare(image).await?) } else { None };
    let env = match &mut platform {
        Some(p) => Some(environment(p, a.sweep.accel).await?),
        None => None,
    };
    let mut groups = Vec::new();
    for name in profiles {
        let mut profile = Profile::resolve(name)?;
        if let Some(r) = a.repetitions {
            profile.repetitions = r;
        }
        let dir = out.join(name);
        let opts = sweep_options(&a.sweep, dir.clone(), a.resume, Shard::default())?;
        let (Some(p), Some(env)) = (&platform, &env) else { unreachable!("guests were prepared") };
        println!("\n== {name} ==");
        let (outcome, records) = run_sweep(p, env, &profile, &opts).await?;
        bad |= print_sweep(&profile, &outcome, records)? != ExitCode::SUCCESS;
        let records = migbench::record::file::load(&dir)?;
        groups.extend(document::group_by_profile(records, Some(&profile), &dir, &dir.display().to_string()));
    }
    if a.paper == Paper::Chandak && !a.no_live {
        use migbench::rank::cluster;
        let (Some(p), Some(env)) = (&platform, &env) else { unreachable!("guests were prepared") };
        let profile = cluster::ClusterProfile::load(&migbench::experiment::profile::locate("chandak-cluster")?)?;
        let mut rounds = Vec::new();
        let mut show = |r: &cluster::Round| {
            let t = migbench::report::cluster_round(r);
            println!("{t}");
            rounds.push(t);
        };
        let run = cluster::run(p, env, &profile, &[], boot_timeout(a.sweep.boot_timeout)?, &mut show).await?;
        let file = out.join("cluster.json");
        std::fs::write(&file, serde_json::to_string_pretty(&run)?).with_context(|| format!("writing {} (disk full?)", file.display()))?;
        bad |= !run.balanced;
        intro.push(Block::Heading(2, "A live cluster: 3 hosts × 3 guests (profiles/chandak-cluster.toml)".into()));
        for t in rounds {
            intro.push(Block::Terminal(t));
        }
        intro.push(Block::Markdown(format!(
            "{} after {} rounds and {} migrations, {:.0} s ({}). The paper's cluster balanced after 3 migrations.{}",
            if run.balanced { "**Balanced**: every host is moderate" } else { "**Not balanced**" },
            run.rounds.len(),
            run.migrations,
            run.wall_s,
            env.accel,
            run.error.as_ref().map(|e| format!(" The run stopped early: {e}.")).unwrap_or_default()
        )));
    }
    let source = out.display().to_string();
    let title = format!("migbench reproduces {citation}");
    let mut doc = if groups.is_empty() { Document::empty(title.clone(), &source) } else { document::build(&groups, &source)? };
    doc.retitle(title);
    doc.insert_after_title(intro);
    print_written(&files::write(&doc, &formats, None, &out)?);
    Ok(if bad { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
