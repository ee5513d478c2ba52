//! The `migbench` command line.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use migbench::experiment::profile::{Profile, Shard};
use migbench::experiment::sweep::{self, SweepOptions};
use migbench::experiment;
use migbench::record::file::ResultsFile;
use migbench::guest::image::{GuestImage, ImageInputs};
use migbench::host::{self, HostInfo, Qemu};
use migbench::machine::{self, AccelRequest, GuestSpec};

use migbench::migration::scenario::{Compression, LinkSpeed, Scenario, Transport, Tuning};
use migbench::migration::strategy::Strategy;
use migbench_guest::orders::Workload;
use migbench::report;
use migbench::setup::{self, Environment, Platform};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "migbench", version, about = "Benchmark QEMU live migration on real guests")]
struct Cli {
    #[command(flatten)]
    image: ImageArgs,
    /// More log output (repeat for more); or set RUST_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct ImageArgs {
    /// Guest kernel (bzImage) instead of the distribution's cloud kernel package.
    #[arg(long, global = true, env = "MIGBENCH_KERNEL", value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Modules directory (…/lib/modules/RELEASE) for --kernel.
    #[arg(long, global = true, env = "MIGBENCH_MODULES", value_name = "DIR")]
    modules: Option<PathBuf>,
    /// A prebuilt static migbench-guest instead of building it from source.
    #[arg(long, global = true, env = "MIGBENCH_GUEST_BIN", value_name = "PATH")]
    guest_bin: Option<PathBuf>,
    /// The qemu-system-x86_64 to use, as it is (also $MIGBENCH_QEMU). Without it: the
    /// system's, or under TCG on Debian 12 bookworm-backports' QEMU from the cache.
    #[arg(long, global = true, value_name = "PATH")]
    qemu: Option<PathBuf>,
}

impl ImageArgs {
    fn inputs(&self) -> ImageInputs {
        ImageInputs { kernel: self.kernel.clone(), modules: self.modules.clone(), guest_bin: self.guest_bin.clone() }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Install QEMU if missing and build the guest image (every other command does this itself).
    Setup,
    /// Print what migbench found on this machine: QEMU, KVM, cgroups, namespaces, guest image,
    /// and what killed migbench runs left behind.
    Doctor(DoctorArgs),
    /// Boot a guest, live-migrate it once, and print the measurements.
    Migrate(MigrateArgs),
    /// The benchmark: guest boot time, then a profile (default profiles/smoke.toml) with its summary.
    Bench(BenchArgs),
    /// Run a profile: every cell of its matrix, with repetitions, streamed to DIR/results.jsonl.
    Run(RunArgs),
    /// Join the results of several shards (directories or results.jsonl files) into one directory.
    Merge(MergeArgs),
    /// The load-balancing policy engine (Chandak et al.): which VM to migrate, and where, for a cluster state.
    Balance(BalanceArgs),
    /// Which VM to migrate: rank a profile's cells (candidate VMs) by measured or predicted cost.
    Rank(RankArgs),
    /// CI gate: compare two result sets cell by cell (Welch's t-test) over healthy completed runs; exit 4 on a
    /// significant regression, 5 when a baseline cell is missing, failed, unhealthy or has < 2 healthy runs.
    Compare(CompareArgs),
    /// A report people read from a results directory: tables and SVG plots, as Markdown, one
    /// self-contained HTML file, JSON or CSV.
    Report(ReportArgs),
    /// Reproduce a paper: run its profiles and write a report that puts its numbers beside ours.
    Reproduce(ReproduceArgs),
    /// Capacity planning: the dirty rates each link carries, how long evacuating a host takes, total time against RAM.
    Plan(PlanArgs),
}

#[derive(Args)]
struct DoctorArgs {
    /// Only remove what migbench runs that no longer run left behind (cgroups, run
    /// directories, QEMUs still in them) and say what; every other command does this at its start.
    #[arg(long)]
    clean: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Paper {
    /// Ghalib et al.: HTTP latency per request across a migration at 100 Mbit/s (profile ghalib-web).
    Ghalib,
    /// Shreya et al.: CPU use against the cap (Tables 1–3), host cores (Table 4), time and downtime (Table 5).
    Shreya,
    /// Chandak et al.: the policy engine on the paper's Tables 1–4, then a live 3-host cluster.
    Chandak,
}

#[derive(Args)]
struct ReproduceArgs {
    paper: Paper,
    /// Where the results and the report go (default reports/reproduce-<paper>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue an interrupted reproduction: runs already in DIR are kept.
    #[arg(long)]
    resume: bool,
    /// Repetitions per cell instead of each profile's own (Shreya's Tables 1–3 are 432 runs at 3).
    #[arg(long, value_name = "N")]
    repetitions: Option<u32>,
    /// Chandak: decide the paper's tables only, without the live cluster.
    #[arg(long)]
    no_live: bool,
    /// Report formats (md, html, json, csv).
    #[arg(long, default_value = "md,html", value_name = "LIST")]
    format: String,
    #[command(flatten)]
    sweep: SweepArgs,
}

#[derive(Args)]
struct ReportArgs {
    /// The results (a directory with results.jsonl, or the file).
    results: PathBuf,
    /// Formats to write, comma-separated: md, html, json, csv.
    #[arg(long, default_value = "md,html", value_name = "LIST")]
    format: String,
    /// Where to write: the file for one format; for several, this path with each format's
    /// extension. Default: DIR/report.<format> (Markdown's plots go to report-plots/ beside it).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The profile that made the results (default: profiles/<name>.toml when it still holds
    /// every cell of the runs, else the cells as the records describe them).
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Also render the HTML report with headless Chromium (installed with apt-get when missing,
    /// run without a network) into this PNG: a check that it renders, and a preview.
    #[arg(long, value_name = "PNG")]
    screenshot: Option<PathBuf>,
}

#[derive(Args)]
struct PlanArgs {
    /// A results directory (or results.jsonl), or a profile: then each cell's guest is booted
    /// and its dirty rate measured, and nothing migrates (so there is nothing to fit).
    source: String,
    /// Link speeds to plan for, comma-separated.
    #[arg(long, default_value = migbench::rank::plan::DEFAULT_LINKS, value_name = "LIST", allow_hyphen_values = true)]
    links: String,
    /// Downtime limits for the convergence frontier, comma-separated (ms or s).
    #[arg(long, default_value = migbench::rank::plan::DEFAULT_DOWNTIME_LIMITS, value_name = "LIST", allow_hyphen_values = true)]
    downtime_limits: String,
    /// Numbers of migrations at once for the evacuation, comma-separated.
    #[arg(long, default_value = migbench::rank::plan::DEFAULT_PARALLEL, value_name = "LIST", allow_hyphen_values = true)]
    parallel: String,
    /// Also write the plan (the Markdown printed) to this file.
    #[arg(long, value_name = "FILE.md")]
    out: Option<PathBuf>,
    /// Write the three sections as one JSON document.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Seconds of calc-dirty-rate per VM (profiles without their own dirty_rate_s).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    dirty_rate_seconds: f64,
    #[command(flatten)]
    sweep: SweepArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// The baseline results (a directory with results.jsonl, or the file).
    baseline: PathBuf,
    /// The results to judge.
    current: PathBuf,
    /// A figure regresses when its mean is worse by more than this (and the t-test says it differs).
    #[arg(long, default_value = "10%", value_name = "PERCENT")]
    max_regression: String,
    /// Also write the current means as JSON for benchmark-tracking actions (customSmallerIsBetter).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct RankArgs {
    /// A results directory (or results.jsonl) to rank, or a profile: then each cell's guest is
    /// booted and its dirty rate measured, and the model predicts its migration (nothing migrates).
    source: String,
    /// time (the papers' rule: total time, then downtime), bytes, service-downtime, slowdown.
    #[arg(long, default_value = "time")]
    objective: migbench::rank::vms::Objective,
    /// With a profile: also migrate every cell (a sweep that measures the dirty rate first) and
    /// print predicted against measured: errors and Kendall's tau.
    #[arg(long)]
    validate: bool,
    /// Seconds of calc-dirty-rate per candidate (profiles without their own dirty_rate_s).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    dirty_rate_seconds: f64,
    /// Where a --validate sweep writes its results (default reports/<profile>-validate).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    sweep: SweepArgs,
}

#[derive(Args)]
struct BalanceArgs {
    /// Decide once from a cluster state file (--state) instead of a live cluster.
    #[arg(long)]
    dry_run: bool,
    /// A live cluster on this machine: hosts as cgroups, guests with cpu-duty workloads,
    /// balanced round by round with real migrations (e.g. profiles/chandak-cluster.toml).
    #[arg(long, value_name = "PROFILE", conflicts_with_all = ["dry_run", "state", "compare_rules"])]
    cluster: Option<String>,
    /// Where the cluster run's rounds are written (cluster.json); default reports/<profile name>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    sweep: SweepArgs,
    /// The cluster state: {"hosts":[{"name":"Host 1","cpu":42.4,"cores":4,"vms":[{"name":"S1","cpu":46.5}, …]}, …]}.
    #[arg(long, value_name = "FILE.json")]
    state: Option<PathBuf>,
    /// paper (the five phases only), guarded (vetoes and cooldown; the default), cost-aware,
    /// lightest, min-stddev. With --cluster it overrides the profile's rule.
    #[arg(long)]
    rule: Option<migbench::rank::balance::Rule>,
    /// A move must lower σ of host CPU by at least this many points (all rules but paper;
    /// default 1). With --cluster it overrides the profile's margin.
    #[arg(long)]
    margin: Option<f64>,
    /// Run the state through every rule and print a comparison table.
    #[arg(long)]
    compare_rules: bool,
}

#[derive(Args)]
struct SweepArgs {
    /// Accelerator: auto (KVM if a guest really runs under it, else TCG), kvm, tcg.
    #[arg(long, default_value = "auto")]
    accel: AccelRequest,
    /// Boot a fresh guest pair for every run instead of reusing booted guests.
    #[arg(long)]
    no_reuse: bool,
    /// How long a guest may take to boot to READY.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    boot_timeout: u64,
    /// No progress output (results and the summary are still printed).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct RunArgs {
    /// A profile file, or the name of one in profiles/ (e.g. smoke).
    profile: String,
    /// Results directory (default reports/<profile name>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue a sweep in --out: runs already in results.jsonl are skipped.
    #[arg(long)]
    resume: bool,
    /// Run only shard I of N (cell i belongs to shard i mod N), e.g. --shard 0/4.
    #[arg(long, value_name = "I/N", default_value = "0/1")]
    shard: Shard,
    /// List the cells and estimate the time, without running anything.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    sweep: SweepArgs,
}

#[derive(Args)]
struct MergeArgs {
    /// Result directories (or results.jsonl files) of the shards.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The new directory for the merged results.jsonl.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Profile to summarise the merged results with.
    #[arg(long)]
    profile: Option<String>,
}

#[derive(Args)]
struct CommonRun {
    /// Accelerator: auto (KVM if a guest really runs under it, else TCG), kvm, tcg.
    #[arg(long, default_value = "auto")]
    accel: AccelRequest,
    /// Link speed: 100Mbit, 1Gbit, 10Gbit, 50MiB/s, unlimited (sets QEMU's max-bandwidth).
    #[arg(long, default_value = "1Gbit")]
    link: LinkSpeed,
    /// Migration transport.
    #[arg(long, value_enum, default_value_t = Transport::Unix)]
    transport: Transport,
    /// Migration strategy.
    #[arg(long, value_enum, default_value_t = Strategy::Precopy)]
    strategy: Strategy,
    /// hybrid: pre-copy passes before switching to post-copy.
    #[arg(long, default_value_t = Tuning::default().hybrid_passes, value_name = "N")]
    hybrid_passes: u64,
    /// hybrid: switch to post-copy after this many seconds at the latest.
    #[arg(long, value_name = "SECS")]
    hybrid_after: Option<f64>,
    /// auto-converge: initial CPU throttle, %.
    #[arg(long, default_value_t = Tuning::default().throttle_initial, value_name = "PCT")]
    throttle_initial: u8,
    /// auto-converge: throttle increment, %.
    #[arg(long, default_value_t = Tuning::default().throttle_increment, value_name = "PCT")]
    throttle_increment: u8,
    /// xbzrle: cache size in MiB.
    #[arg(long, default_value_t = Tuning::default().xbzrle_cache_mib, value_name = "MIB")]
    xbzrle_cache: u64,
    /// multifd: channels.
    #[arg(long, default_value_t = Tuning::default().multifd_channels, value_name = "N")]
    multifd_channels: u8,
    /// multifd: compression.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    multifd_compression: Compression,
    /// What the guest runs: idle, burn, memdirty-write:MIB, memdirty-read:MIB.
    #[arg(long, default_value = "idle")]
    workload: Workload,
    /// QEMU's downtime-limit in ms.
    #[arg(long, default_value_t = Scenario::default().downtime_limit_ms, value_name = "MS")]
    downtime_limit: u64,
    /// Cancel a migration not finished after this many seconds (recorded as cancelled).
    #[arg(long, default_value_t = Scenario::default().timeout_s, value_name = "SECS")]
    timeout: f64,
    /// How long a guest may take to boot to READY.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    boot_timeout: u64,
    /// vCPUs per guest.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Where results are written.
    #[arg(long, default_value = "reports", value_name = "DIR")]
    out: PathBuf,
}

impl CommonRun {
    fn scenario(&self) -> Result<Scenario> {
        let scenario = Scenario {
            strategy: self.strategy,
            transport: self.transport,
            link: self.link.clone(),
            downtime_limit_ms: self.downtime_limit,
            timeout_s: self.timeout,
            tuning: Tuning {
                hybrid_passes: self.hybrid_passes,
                hybrid_after_s: self.hybrid_after,
                throttle_initial: self.throttle_initial,
                throttle_increment: self.throttle_increment,
                xbzrle_cache_mib: self.xbzrle_cache,
                multifd_channels: self.multifd_channels,
                multifd_compression: self.multifd_compression,
            },
            fault: Default::default(),
        };
        scenario.validate().map_err(anyhow::Error::msg)?;
        Ok(scenario)
    }
}

#[derive(Args)]
struct MigrateArgs {
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 512)]
    ram: u32,
    /// Print the full JSON record instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    run: CommonRun,
}

#[derive(Args)]
struct BenchArgs {
    /// The profile to run.
    #[arg(long, default_value = "smoke")]
    profile: String,
    /// Boots to time before the profile (the median is reported); 0 to skip.
    #[arg(long, default_value_t = 5)]
    boots: usize,
    /// Seconds each workload (Dhrystone, Linpack, Livermore) runs on the host and in a
    /// guest for the side-by-side figures; 0 to skip.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    workload_seconds: f64,
    /// Seconds of each load-generator capacity run against the guest's HTTP server on
    /// the host's loopback (beside wrk and oha when installed); 0 to skip.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    load_seconds: f64,
    /// Where results are written (a new bench-<time> directory inside).
    #[arg(long, default_value = "reports", value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    sweep: SweepArgs,
}

impl BenchArgs {
    /// The options that need no guest, checked before anything is set up.
    fn check(&self) -> Result<()> {
        if self.boots > 1000 {
            anyhow::bail!("--boots {}: give 0 (skip) to 1000", self.boots);
        }
        if !(self.workload_seconds.is_finite() && (0.0..=3600.0).contains(&self.workload_seconds)) {
            anyhow::bail!("--workload-seconds {}: give seconds, 0 (skip) to 3600", self.workload_seconds);
        }
        if !(self.load_seconds.is_finite() && (0.0..=600.0).contains(&self.load_seconds)) {
            anyhow::bail!("--load-seconds {}: give seconds, 0 (skip) to 600", self.load_seconds);
        }
        if self.out.exists() && !self.out.is_dir() {
            anyhow::bail!("--out {}: that is a file; give a directory (bench makes bench-<time> inside it)", self.out.display());
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // An HTTP load holds a socket per request in flight; 1024 descriptors is too few.
    migbench::load::generator::raise_open_file_limit();
    let filter = match cli.verbose {
        0 => "migbench=warn",
        1 => "migbench=info",
        _ => "migbench=debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .init();
    // What a SIGKILLed migbench left behind goes first; `doctor` reports it instead
    // (and removes it with --clean).
    if !matches!(cli.command, Cmd::Doctor(_)) {
        let c = migbench::machine::stale::clean();
        for line in &c.removed {
            eprintln!("migbench: {line}");
        }
        for line in &c.failed {
            eprintln!("migbench: warning: {line}");
        }
    }
    tokio::select! {
        r = run(cli) => match r {
            Ok(code) => code,
            Err(e) => {
                eprintln!("migbench: error: {e:#}");
                ExitCode::from(1)
            }
        },
        sig = shutdown_signal() => {
            // Dropping `run` has killed its QEMUs and removed its run directory and
            // cgroups; this catches any QEMU still registered.
            machine::kill_all();
            // Its cgroups and run directory too: `exit` below runs no destructor.
            for line in migbench::machine::stale::remove_own().failed {
                eprintln!("migbench: warning: {line}");
            }
            eprintln!("migbench: stopped by {sig}; its QEMU processes were killed");
            // Exit now: a set-up step still running on a blocking thread (apt, cargo,
            // a lock wait) would otherwise hold up the runtime's shutdown.
            std::process::exit(130)
        }
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

async fn prepare(image: &ImageArgs) -> Result<Platform> {
    let inputs = image.inputs();
    let qemu = image.qemu.clone();
    tokio::task::spawn_blocking(move || setup::prepare(&inputs, qemu.as_deref())).await.context("set-up task")?
}

/// The accelerator and the QEMU for it (which may replace the platform's), said on stderr.
async fn environment(p: &mut Platform, accel: AccelRequest) -> Result<Environment> {
    let env = setup::environment(p, accel).await?;
    eprintln!("migbench: accelerator {} — {}", env.accel, env.accel_note);
    eprintln!("migbench: QEMU {} ({}, {}), machine {}", env.qemu_version, env.qemu_path, env.qemu_origin, env.machine_type);
    if let Some(w) = &env.qemu_warning {
        eprintln!("migbench: WARNING: {w}");
    }
    Ok(env)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Setup => {
            let mut p = prepare(&cli.image).await?;
            let system = p.qemu.clone();
            // The QEMU a migration would use here (under TCG on Debian 12, the cache's).
            let env = environment(&mut p, AccelRequest::Auto).await?;
            println!("QEMU        {} ({}, {})", system.path.display(), system.version_line, system.origin);
            if p.qemu != system {
                println!("QEMU used   {} ({}, {}) under {}", p.qemu.path.display(), p.qemu.version_line, p.qemu.origin, env.accel);
            }
            print_image(&p.image);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Doctor(a) if a.clean => Ok(doctor_clean()),
        Cmd::Doctor(_) => doctor(&cli.image).await,
        Cmd::Migrate(a) => {
            let scenario = a.run.scenario()?;
            // Check the cheap inputs before any set-up work.
            GuestSpec::new(a.ram, a.run.vcpus, machine::Accel::Tcg)?.with_workload(a.run.workload).check().map_err(anyhow::Error::msg)?;
            let boot = boot_timeout(a.run.boot_timeout)?;
            let mut p = prepare(&cli.image).await?;
            let env = environment(&mut p, a.run.accel).await?;
            let spec = GuestSpec::new(a.ram, a.run.vcpus, env.accel)?.with_workload(a.run.workload);
            let rec = migbench::experiment::once::run_one(&p, &env, spec, &scenario, boot).await?;
            let path = a.run.out.join(format!("migrate-{}-{}.json", experiment::stamp(), std::process::id()));
            std::fs::create_dir_all(&a.run.out).with_context(|| format!("creating {}", a.run.out.display()))?;
            std::fs::write(&path, serde_json::to_string_pretty(&rec)?).with_context(|| format!("writing {}", path.display()))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rec)?);
            } else {
                println!("{}", report::migration_table(std::slice::from_ref(&rec)));
            }
            for n in report::evidence_notes(std::slice::from_ref(&rec)).into_iter().chain(report::migration_notes(std::slice::from_ref(&rec))) {
                eprintln!("migbench: {n}");
            }
            eprintln!("migbench: record written to {}", path.display());
            Ok(exit_for(std::slice::from_ref(&rec)))
        }
        Cmd::Bench(a) => {
            // Every option is checked before anything boots: a typo must not cost minutes.
            let profile = Profile::resolve(&a.profile)?;
            a.check()?;
            let dir = a.out.join(format!("bench-{}", experiment::stamp()));
            let opts = sweep_options(&a.sweep, dir.clone(), false, Shard::default())?;
            let mut p = prepare(&cli.image).await?;
            let env = environment(&mut p, a.sweep.accel).await?;
            let mut boot = None;
            if a.boots > 0 {
                let spec = GuestSpec::new(256, 1, env.accel)?;
                let mut times = Vec::new();
                for i in 0..a.boots {
                    let t = experiment::boot_once(&p, spec, opts.boot_timeout).await?;
                    if !a.sweep.quiet {
                        eprintln!("migbench: boot {}/{}: {t:.0} ms to READY", i + 1, a.boots);
                    }
                    times.push(t);
                }
                let mut f = ResultsFile::create(&dir.join("boots.jsonl"))?;
                f.append(&serde_json::json!({"record": "boot", "environment": env, "ram_mib": 256, "vcpus": 1, "boot_to_ready_ms": times}))?;
                boot = migbench::summary::stats::Stats::of(&times);
            }
            let mut rates = Vec::new();
            if a.workload_seconds > 0.0 {
                use migbench::experiment::workload_rates;
                for w in workload_rates::workloads() {
                    if !a.sweep.quiet {
                        eprintln!("migbench: {w} for {} s on the host, then in a guest", a.workload_seconds);
                    }
                    let secs = a.workload_seconds;
                    let host = tokio::task::spawn_blocking(move || workload_rates::on_host(w, secs)).await??;
                    let guest = workload_rates::in_guest(&p, env.accel, w, secs, opts.boot_timeout).await?;
                    rates.push((w, host, guest));
                }
                let mut f = ResultsFile::create(&dir.join("workloads.jsonl"))?;
                for (w, h, g) in &rates {
                    let m = |f: &workload_rates::Figure| f.livermore.map(|m| serde_json::json!({"arithmetic": m.arithmetic, "geometric": m.geometric, "harmonic": m.harmonic}));
                    f.append(&serde_json::json!({"record": "workload-rate", "environment": env, "workload": w.to_string(), "seconds": a.workload_seconds,
                        "host": {"rate": h.rate, "livermore_means": m(h)}, "guest": {"rate": g.rate, "livermore_means": m(g)}}))?;
                }
            }
            let capacity = if a.load_seconds > 0.0 {
                if !a.sweep.quiet {
                    eprintln!("migbench: load generator capacity, {} s per run", a.load_seconds);
                }
                let secs = a.load_seconds;
                Some(tokio::task::spawn_blocking(move || load_capacity(secs)).await??)
            } else {
                None
            };
            let outcome = sweep::run(&p, &env, &profile, &opts).await?;
            println!(
                "migbench bench — profile {} ({}), QEMU {}, accel {}, host {} ({} cores), guest kernel {}",
                profile.name, profile.source, env.qemu_version, env.accel, env.host.cpu_model, env.host.cores, env.guest_kernel
            );
            if let Some(b) = &boot {
                println!("\nGuest boot to READY (256 MiB, 1 vCPU): median {:.0} ms of {} (min {:.0}, max {:.0})", b.median, b.n, b.min, b.max);
            }
            if !rates.is_empty() {
                println!("\n{}", report::workload_rates_table(&rates, env.accel));
            }
            if let Some(figs) = &capacity {
                println!("\nLoad generator capacity against the guest's HTTP server on the host's loopback (same server for every tool)\n");
                println!("{}", report::capacity_table(figs));
            }
            print_sweep(&profile, &outcome, opts.reuse)
        }
        Cmd::Run(a) => {
            let profile = Profile::resolve(&a.profile)?;
            let out = a.out.clone().unwrap_or_else(|| PathBuf::from("reports").join(&profile.name));
            if a.dry_run {
                let done = migbench::record::file::done_keys(&migbench::record::file::read_runs(&out.join("results.jsonl"))?, &profile.name);
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
                let est = sweep::estimate(&runs, !a.sweep.no_reuse);
                println!("estimated time under TCG: about {}", humantime::format_duration(Duration::from_secs(est.as_secs())));
                return Ok(ExitCode::SUCCESS);
            }
            let mut p = prepare(&cli.image).await?;
            let env = environment(&mut p, a.sweep.accel).await?;
            let opts = sweep_options(&a.sweep, out, a.resume, a.shard)?;
            let outcome = sweep::run(&p, &env, &profile, &opts).await?;
            print_sweep(&profile, &outcome, opts.reuse)
        }
        Cmd::Balance(a) if a.cluster.is_some() => balance_cluster(&cli.image, &a).await,
        Cmd::Balance(a) => balance(&a),
        Cmd::Rank(a) => rank(&cli.image, &a).await,
        Cmd::Compare(a) => compare(&a),
        Cmd::Report(a) => report_cmd(&a),
        Cmd::Reproduce(a) => reproduce(&cli.image, &a).await,
        Cmd::Plan(a) => plan(&cli.image, &a).await,
        Cmd::Merge(a) => {
            let (kept, dropped) = migbench::record::file::merge(&a.inputs, &a.out)?;
            println!("merged {kept} results into {} ({dropped} duplicates dropped)", a.out.join("results.jsonl").display());
            if let Some(name) = &a.profile {
                let profile = Profile::resolve(name)?;
                let records = migbench::record::file::of_profile(migbench::record::file::read_runs(&a.out.join("results.jsonl"))?, &profile.name);
                println!("\n{}", report::summary_table(&migbench::summary::cells::summarise(&records, &profile)));
                print_sections(&profile, &records);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn sweep_options(a: &SweepArgs, out: PathBuf, resume: bool, shard: Shard) -> Result<SweepOptions> {
    Ok(SweepOptions { out, resume, shard, reuse: !a.no_reuse, boot_timeout: boot_timeout(a.boot_timeout)?, quiet: a.quiet })
}

/// What `rank` and `plan` take as SOURCE.
enum Source {
    /// A results directory's results.jsonl, or a .jsonl file.
    Results(PathBuf),
    /// Anything else: a profile's path or name.
    Profile,
}

fn source_kind(source: &str) -> Source {
    let path = PathBuf::from(source);
    let results = if path.is_dir() { path.join("results.jsonl") } else { path.clone() };
    if results.extension().is_some_and(|e| e == "jsonl") || path.is_dir() { Source::Results(results) } else { Source::Profile }
}

/// The profile SOURCE names, with `--dirty-rate-seconds` checked and filled in where
/// the profile does not set `dirty_rate_s`: for `predict_cells`.
fn profile_to_measure(source: &str, dirty_rate_seconds: f64) -> Result<Profile> {
    let mut profile = Profile::resolve(source)?;
    if !(dirty_rate_seconds.is_finite() && (0.1..=60.0).contains(&dirty_rate_seconds)) {
        anyhow::bail!("--dirty-rate-seconds {dirty_rate_seconds}: give 0.1 to 60");
    }
    if profile.dirty_rate_s == 0.0 {
        profile.dirty_rate_s = dirty_rate_seconds;
    }
    Ok(profile)
}

/// `migbench rank SOURCE`: a measured ranking from results, a predicted one from a
/// profile's guests, or (`--validate`) both with the model's errors.
async fn rank(image: &ImageArgs, a: &RankArgs) -> Result<ExitCode> {
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
        let outcome = sweep::run(&p, &env, &profile, &opts).await?;
        print_ranking(&migbench::record::file::of_profile(migbench::record::file::read_runs(&outcome.results)?, &profile.name), a.objective);
        eprintln!("migbench: results in {}", outcome.results.display());
        return Ok(ExitCode::SUCCESS);
    }
    let predicted = vms::predict_cells(&p, &env, &profile, boot_timeout(a.sweep.boot_timeout)?, a.sweep.quiet).await?;
    println!("{}", report::predicted_table(&predicted));
    Ok(ExitCode::SUCCESS)
}

/// `migbench plan SOURCE`: the convergence frontier, the evacuation time and the fits
/// of total time against RAM, from results or from a profile's measured guests.
async fn plan(image: &ImageArgs, a: &PlanArgs) -> Result<ExitCode> {
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
    let text = plan::markdown(&result);
    println!("{text}");
    if let Some(path) = &a.out {
        std::fs::write(path, &text).with_context(|| format!("--out {}: writing the plan", path.display()))?;
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?).with_context(|| format!("--json {}: writing the plan", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `migbench report DIR`: writes the report in each format asked for.
fn report_cmd(a: &ReportArgs) -> Result<ExitCode> {
    use migbench::report::document::{self, Format};
    let formats = Format::parse_list(&a.format)?;
    if let Some(out) = &a.out {
        document::check_out(out)?;
    }
    let profile = a.profile.as_deref().map(Profile::resolve).transpose()?;
    let records = migbench::record::file::load(&a.results)?;
    let base = if a.results.is_dir() { a.results.clone() } else { a.results.parent().map(|p| p.to_path_buf()).unwrap_or_default() };
    let source = a.results.display().to_string();
    let groups = document::group_by_profile(records, profile.as_ref(), &base, &source);
    if let Some(p) = &profile {
        if !groups.iter().any(|g| g.profile.name == p.name) {
            anyhow::bail!("--profile {}: the results hold no runs of profile {:?} (they hold {})", a.profile.as_deref().unwrap_or(""), p.name,
                groups.iter().map(|g| g.profile.name.as_str()).collect::<Vec<_>>().join(", "));
        }
    }
    let report = document::build(&groups, &source)?;
    print_written(&document::write(&report, &formats, a.out.as_deref(), &base)?);
    if let Some(png) = &a.screenshot {
        let html = match document::output_paths(&formats, a.out.as_deref(), &base).into_iter().find(|(f, _)| *f == Format::Html) {
            Some((_, path)) => path,
            None => {
                let path = png.with_extension("html");
                std::fs::write(&path, report.html()).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
                path
            }
        };
        let shot = migbench::report::browser::screenshot(&html, png)?;
        println!("wrote {} ({}×{}, {:.1} % of it not background) with {}", png.display(), shot.width, shot.height, shot.ink_percent, shot.browser);
    }
    Ok(ExitCode::SUCCESS)
}

/// What a report wrote: each document, and the Markdown's plots as one line.
fn print_written(written: &[PathBuf]) {
    let svg = |p: &&PathBuf| p.extension().is_some_and(|e| e == "svg");
    for path in written.iter().filter(|p| !svg(p)) {
        println!("wrote {}", path.display());
    }
    let plots: Vec<&PathBuf> = written.iter().filter(svg).collect();
    if let Some(dir) = plots.first().and_then(|p| p.parent()) {
        println!("wrote {} plots for the Markdown into {}", plots.len(), dir.display());
    }
}

/// `migbench reproduce PAPER`: the paper's profiles, then one report of them.
async fn reproduce(image: &ImageArgs, a: &ReproduceArgs) -> Result<ExitCode> {
    use migbench::report::document::{self, Block, Format};
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
        intro.push(Block::Markdown(chandak_tables()?));
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
        let outcome = sweep::run(p, env, &profile, &opts).await?;
        bad |= print_sweep(&profile, &outcome, opts.reuse)? != ExitCode::SUCCESS;
        let records = migbench::record::file::load(&dir)?;
        groups.extend(document::group_by_profile(records, Some(&profile), &dir, &dir.display().to_string()));
    }
    if a.paper == Paper::Chandak && !a.no_live {
        use migbench::rank::cluster;
        let (Some(p), Some(env)) = (&platform, &env) else { unreachable!("guests were prepared") };
        let profile = cluster::ClusterProfile::load(&migbench::experiment::profile::locate("chandak-cluster")?)?;
        let mut rounds = Vec::new();
        let mut show = |r: &cluster::Round| {
            let t = report::cluster_round(r);
            println!("{t}");
            rounds.push(t);
        };
        let run = cluster::run(p, env, &profile, boot_timeout(a.sweep.boot_timeout)?, &mut show).await?;
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
    let mut report = if groups.is_empty() {
        document::Report { title: String::new(), blocks: Vec::new(), json: serde_json::json!({ "source": source }), csv: String::new() }
    } else {
        document::build(&groups, &source)?
    };
    report.title = format!("migbench reproduces {citation}");
    if report.blocks.is_empty() {
        report.blocks.push(Block::Heading(1, report.title.clone()));
    } else {
        report.blocks[0] = Block::Heading(1, report.title.clone());
    }
    let at = 1.min(report.blocks.len());
    report.blocks.splice(at..at, intro);
    print_written(&document::write(&report, &formats, None, &out)?);
    Ok(if bad { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

/// Chandak et al.'s Tables 1–4 through the engine: the paper's decision beside ours.
fn chandak_tables() -> Result<String> {
    use migbench::rank::balance::{self, ClusterState, Options, Rule};
    let paper = ["A2: Host 3 → Host 2", "K2: Host 2 → Host 3", "K3: Host 2 → Host 3", "none (balanced)"];
    // Where `locate` looks for profiles: ./profiles first, then the source tree's.
    let dir = [PathBuf::from("profiles/chandak"), PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles/chandak")]
        .into_iter()
        .find(|d| d.join("table1.json").exists())
        .context("the paper's tables (profiles/chandak/table1.json …) are not here: run from the migbench source tree")?;
    let mut b = tabled::builder::Builder::default();
    b.push_record(["table", "threshold", "band", "light", "heavy", "paper's decision", "ours (rule paper)", "matches"]);
    let mut matched = 0;
    for (i, want) in paper.iter().enumerate() {
        let path = dir.join(format!("table{}.json", i + 1));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let state: ClusterState = serde_json::from_str(&text).with_context(|| format!("cluster state {}", path.display()))?;
        let d = balance::decide(&state, &Options { rule: Rule::Paper, margin: 0.0 }).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let ours = d.migration.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "none (balanced)".into());
        let ok = ours == *want;
        matched += ok as usize;
        b.push_record([
            format!("Table {}", i + 1),
            format!("{:.1}", d.threshold),
            format!("{:.1}–{:.1}", d.band[0], d.band[1]),
            d.light.join(", "),
            d.heavy.join(", "),
            want.to_string(),
            ours,
            if ok { "yes".into() } else { "NO".into() },
        ]);
    }
    Ok(format!(
        "{}\n\nThe engine's decision matches the paper's in {matched} of 4 rounds.",
        b.build().with(tabled::settings::Style::markdown())
    ))
}

/// `migbench compare BASELINE CURRENT`: exit 4 on a significant regression, 5 when a
/// baseline cell was not compared.
fn compare(a: &CompareArgs) -> Result<ExitCode> {
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

/// The measured ranking of `records`, with the model's errors when it has predictions.
fn print_ranking(records: &[migbench::record::RunRecord], objective: migbench::rank::vms::Objective) {
    use migbench::rank::vms;
    let rows = vms::rows(records);
    println!("{}", report::rank_table(&rows, &vms::rank(&rows, objective)));
    if let Some(v) = vms::validate(&rows) {
        println!("\n{}", report::validation_lines(&v));
    }
}

/// `migbench balance --cluster PROFILE`: the policy engine on a live cluster.
async fn balance_cluster(image: &ImageArgs, a: &BalanceArgs) -> Result<ExitCode> {
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
    let mut show = |r: &cluster::Round| println!("{}", report::cluster_round(r));
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
fn balance(a: &BalanceArgs) -> Result<ExitCode> {
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
    println!("{}", report::balance_rules_table(&decisions));
    Ok(ExitCode::SUCCESS)
}

/// The load generator's capacity beside wrk and oha, 32 connections each.
fn load_capacity(secs: f64) -> Result<Vec<migbench::load::capacity::Figure>> {
    use migbench::load::capacity;
    let addr = capacity::loopback_server()?;
    let mut figs = capacity::ours(addr, secs, 32, 2000.0)?;
    figs.push(capacity::wrk(addr, secs, 32));
    figs.push(capacity::oha(addr, secs, 32));
    Ok(figs)
}

/// `--boot-timeout`, checked: 1 s up to a week.
fn boot_timeout(secs: u64) -> Result<Duration> {
    if secs == 0 || secs as f64 > migbench::migration::scenario::MAX_SECONDS {
        anyhow::bail!("--boot-timeout {secs}: give seconds, 1 to {} (e.g. 120)", migbench::migration::scenario::MAX_SECONDS);
    }
    Ok(Duration::from_secs(secs))
}

/// The sections under a summary: the service tables (runs with an HTTP load) and the
/// paper section the profile reproduces.
fn print_sections(profile: &Profile, runs: &[migbench::record::RunRecord]) {
    if let Some(section) = report::service::section(profile, &runs) {
        println!("\n{section}");
    }
    if let Some(section) = report::reproduction(profile, &runs) {
        println!("\n{section}");
    }
    if let Some(section) = report::faults_table(&runs) {
        println!("\n{section}");
    }
    // A long sweep (a soak) also says whether the harness and the service held up.
    if runs.len() >= 10 {
        println!("\n{}", migbench::summary::endurance::endurance(&runs));
    }
}

/// Prints a sweep's summary table and figures; exit 3 if any run did not complete healthy.
fn print_sweep(profile: &Profile, outcome: &sweep::SweepOutcome, reuse: bool) -> Result<ExitCode> {
    let records = migbench::record::file::of_profile(migbench::record::file::read_runs(&outcome.results)?, &profile.name);
    let cells = migbench::summary::cells::summarise(&records, profile);
    println!("\n{}", report::summary_table(&cells));
    print_sections(profile, &records);
    let minutes = outcome.wall.as_secs_f64() / 60.0;
    println!(
        "\n{} runs in {:.1} s ({:.1} runs/min, guest reuse {}){}",
        outcome.ran,
        outcome.wall.as_secs_f64(),
        if minutes > 0.0 { outcome.ran as f64 / minutes } else { 0.0 },
        if reuse { "on" } else { "off" },
        if outcome.skipped > 0 { format!("; {} already done, skipped", outcome.skipped) } else { String::new() }
    );
    eprintln!("migbench: results in {}", outcome.results.display());
    let bad = cells.iter().any(|c| c.counted < c.runs);
    Ok(if bad { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

/// 0 when every migration completed and left a healthy guest, 3 otherwise (the
/// records are written either way), 1 for errors.
fn exit_for(records: &[migbench::record::MigrationRecord]) -> ExitCode {
    let ok = records.iter().all(|r| migbench::summary::cell_runs::counts(&r.measurement));
    if ok { ExitCode::SUCCESS } else { ExitCode::from(3) }
}

fn print_image(img: &GuestImage) {
    let m = &img.manifest;
    let age = std::fs::metadata(&img.initramfs)
        .and_then(|md| md.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string())
        .unwrap_or_else(|| "?".into());
    println!("guest image {} ({})", m.key, img.dir.display());
    println!("  kernel    {} from {}", m.kernel_release, m.kernel_origin);
    println!("  initramfs {} bytes, modules: {}", m.initramfs_bytes, if m.modules.is_empty() { "none".into() } else { m.modules.join(" ") });
    println!("  built     {} ({age} ago)", m.built_at);
}

/// `migbench doctor --clean`: removes what migbench processes that no longer run left
/// behind; exit 1 if something could not be removed.
fn doctor_clean() -> ExitCode {
    let c = migbench::machine::stale::clean();
    for line in &c.removed {
        println!("{line}");
    }
    for line in &c.failed {
        eprintln!("migbench: {line}");
    }
    if c.removed.is_empty() && c.failed.is_empty() {
        println!("nothing left behind");
    }
    if c.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

async fn doctor(image: &ImageArgs) -> Result<ExitCode> {
    let host = HostInfo::read();
    println!("host        {} — {} ({} cores), kernel {}", host.os, host.cpu_model, host.cores, host.kernel);
    println!("cache       {}", host::cache_dir().display());
    let mut ok = true;
    let cached = migbench::host::qemu_cache::cached();
    match Qemu::find(image.qemu.as_deref()) {
        Ok(Some(q)) => {
            println!("QEMU        {} — {} ({})", q.path.display(), q.version_line, q.origin);
            if !q.tcg_sender_intact() {
                println!("            older than 9.0: under TCG it corrupts guests it migrates while they write memory");
            }
        }
        // On Debian 12 the cache's QEMU serves where the system has none.
        Ok(None) if host::OsRelease::read().is_bookworm() && cached.is_some() => {
            println!("QEMU        none on PATH: migbench's cache serves (below)");
        }
        Ok(None) => {
            ok = false;
            println!(
                "QEMU        not installed (`migbench setup` fetches bookworm-backports' QEMU into the cache on Debian 12, \
                 and installs qemu-system-x86 elsewhere on Debian/Ubuntu as root)"
            );
        }
        Err(e) => {
            ok = false;
            println!("QEMU        {e:#}");
        }
    }
    match cached {
        Some((q, m)) => println!(
            "QEMU cache  {} — {} ({}, fetched {}); used where the system has no QEMU, and under TCG where its QEMU is older than 9.0",
            q.path.display(),
            q.version_line,
            m.suite,
            m.fetched_at
        ),
        None => println!("QEMU cache  none yet ({} is fetched into it under TCG on Debian 12 when the system's QEMU is older than 9.0)", migbench::host::qemu_cache::SUITE),
    }
    let version = match host.cgroup {
        host::CgroupVersion::V2 => "v2 (unified)",
        host::CgroupVersion::V1 => "v1",
        host::CgroupVersion::None => "none found under /sys/fs/cgroup",
    };
    // Make and remove a real group: that is what a CPU cap needs.
    match machine::cgroup::CpuCgroup::create("doctor").and_then(|cg| cg.set_cap(Some(50)).map(|_| cg)) {
        Ok(cg) => {
            drop(cg);
            println!("cgroups     {version}; CPU caps work (a test group was made and removed)");
        }
        Err(e) => println!("cgroups     {version}; CPU caps and core limits will fail: {e:#}"),
    }
    let left = migbench::machine::stale::find();
    if left.is_empty() {
        println!("leftovers   none (no cgroup or run directory of a migbench that no longer runs)");
    } else {
        for (i, l) in left.iter().enumerate() {
            println!("{}{l}", if i == 0 { "leftovers   " } else { "            " });
        }
        println!("            (`migbench doctor --clean` removes them, and so does any other command at its start)");
    }
    match migbench::network::check() {
        Ok(()) => println!("network     the test network can be made (namespace, bridge, tap)"),
        Err(e) => println!("network     no: {e:#}"),
    }
    println!("/dev/kvm    {}", if std::path::Path::new("/dev/kvm").exists() { "present (a probe boot decides whether it works)" } else { "absent" });
    let inputs = image.inputs();
    let qemu = image.qemu.clone();
    let prepared = tokio::task::spawn_blocking(move || setup::prepare(&inputs, qemu.as_deref())).await?;
    match prepared {
        Ok(p) => {
            print_image(&p.image);
            let (works, detail) = setup::kvm_works(&p).await?;
            println!("KVM         {} ({detail})", if works { "works" } else { "unusable, TCG will be used" });
        }
        Err(e) => {
            ok = false;
            if let Some(img) = GuestImage::newest_cached() {
                print_image(&img);
            }
            println!("guest image cannot be built: {e:#}");
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
