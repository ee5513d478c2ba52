//! The `migbench` command line: the options, and one file per subcommand.

mod agent;
mod balance;
mod bench;
mod compare;
mod doctor;
mod evacuate;
mod merge;
mod migrate;
mod plan;
mod rank;
mod report;
mod reproduce;
mod run;
mod setup;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use migbench::experiment::profile::{Profile, Shard};
use migbench::experiment::sweep::{self, SweepOptions};
use migbench::experiment;
use migbench::record::file::ResultsFile;
use migbench::guest::image::{GuestImage, ImageInputs};
use migbench::host::qemu_versions::QemuWanted;
use migbench::host::{self, HostInfo, Qemu};
use migbench::machine::{self, AccelRequest, GuestSpec};

use migbench::migration::scenario::Scenario;
use migbench_guest::orders::Workload;
use migbench::setup::{Environment, Platform};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
pub(crate) use balance::BalanceArgs;
pub(crate) use bench::BenchArgs;
pub(crate) use compare::CompareArgs;
pub(crate) use doctor::DoctorArgs;
pub(crate) use merge::MergeArgs;
pub(crate) use migrate::MigrateArgs;
pub(crate) use plan::PlanArgs;
pub(crate) use rank::RankArgs;
pub(crate) use report::ReportArgs;
pub(crate) use reproduce::ReproduceArgs;
pub(crate) use setup::print_image;
pub(crate) use report::print_written;
pub(crate) use run::{RunArgs, SweepArgs, all_counted, print_summary, print_sweep, run_sweep, sweep_options};

#[derive(Parser)]
#[command(name = "migbench", version, about = "Benchmark QEMU live migration on real guests")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) image: ImageArgs,
    /// More log output (repeat for more); or set RUST_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Args, Clone)]
pub(crate) struct ImageArgs {
    /// Guest kernel (bzImage) instead of the distribution's cloud kernel package.
    #[arg(long, global = true, env = "MIGBENCH_KERNEL", value_name = "PATH")]
    pub(crate) kernel: Option<PathBuf>,
    /// Modules directory (…/lib/modules/RELEASE) for --kernel.
    #[arg(long, global = true, env = "MIGBENCH_MODULES", value_name = "DIR")]
    pub(crate) modules: Option<PathBuf>,
    /// A prebuilt static migbench-guest instead of building it from source.
    #[arg(long, global = true, env = "MIGBENCH_GUEST_BIN", value_name = "PATH")]
    pub(crate) guest_bin: Option<PathBuf>,
    /// The QEMU to use: a version (7.2, 10.0: an installed one of that series, else
    /// fetched into the cache), `system`, or a path to a qemu-system-x86_64 used as it is
    /// (also $MIGBENCH_QEMU). Without it: the system's, or under TCG on Debian 12
    /// bookworm-backports' 10.0 from the cache. A profile's `qemu` axis overrides it per cell.
    #[arg(long, global = true, value_name = "VERSION|PATH")]
    pub(crate) qemu: Option<QemuWanted>,
    /// How guests come up: `restore` a saved booted guest (made once per QEMU, image
    /// and hardware, in the cache; guests on another host or given a start-up fault
    /// still boot), or boot `fresh` every time. Each run's record says which (`guest_booted`).
    #[arg(long, global = true, env = "MIGBENCH_BOOT", value_enum, default_value = "restore")]
    pub(crate) boot: migbench::machine::boot::BootMode,
}

impl ImageArgs {
    fn inputs(&self) -> ImageInputs {
        ImageInputs { kernel: self.kernel.clone(), modules: self.modules.clone(), guest_bin: self.guest_bin.clone() }
    }
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
    /// Evacuate a host: boot N guests here and migrate all of them to a destination (this host or
    /// --dest ssh://…) with at most P at once, for each P of --parallel (KubeVirt: 2 per node, 5 per
    /// cluster); the wall time, each guest's figures, k of n healthy, and what `plan` predicts.
    Evacuate(evacuate::EvacuateArgs),
    /// Capacity planning: the dirty rates each link carries, how long evacuating a host takes, total time against RAM.
    Plan(PlanArgs),
    /// The far end of `--dest ssh://…`: started by migbench over SSH on the destination host, it runs
    /// that host's QEMUs for the harness (JSON lines on stdin/stdout). Not for running by hand.
    Agent,
}

pub(crate) async fn prepare(image: &ImageArgs) -> Result<Platform> {
    migbench::machine::boot::set_default_mode(image.boot);
    let inputs = image.inputs();
    let qemu = image.qemu.clone();
    tokio::task::spawn_blocking(move || migbench::setup::prepare(&inputs, qemu.as_ref())).await.context("set-up task")?
}

/// The accelerator and the QEMU for it (which may replace the platform's), said on stderr.
pub(crate) async fn environment(p: &mut Platform, accel: AccelRequest) -> Result<Environment> {
    let env = migbench::setup::environment(p, accel).await?;
    eprintln!("migbench: accelerator {} — {}", env.accel, env.accel_note);
    eprintln!("migbench: QEMU {} ({}, {}), machine {}", env.qemu_version, env.qemu_path, env.qemu_origin, env.machine_type);
    if let Some(w) = &env.qemu_warning {
        eprintln!("migbench: WARNING: {w}");
    }
    Ok(env)
}

/// Runs the subcommand.
pub(crate) async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let image = &cli.image;
    match &cli.command {
        Cmd::Setup => setup::setup(image).await,
        Cmd::Doctor(a) if a.clean => Ok(doctor::doctor_clean()),
        Cmd::Doctor(_) => doctor::doctor(image).await,
        Cmd::Migrate(a) => migrate::migrate(image, a).await,
        Cmd::Bench(a) => bench::bench(image, a).await,
        Cmd::Run(a) => run::run(image, a).await,
        Cmd::Balance(a) if a.cluster.is_some() => balance::balance_cluster(image, a).await,
        Cmd::Balance(a) => balance::balance(a),
        Cmd::Rank(a) => rank::rank(image, a).await,
        Cmd::Compare(a) => compare::compare(a),
        Cmd::Report(a) => report::report_cmd(a),
        Cmd::Reproduce(a) => reproduce::reproduce(image, a).await,
        Cmd::Plan(a) => plan::plan(image, a).await,
        Cmd::Evacuate(a) => evacuate::evacuate(image, a).await,
        Cmd::Merge(a) => merge::merge(a),
        Cmd::Agent => agent::agent().await,
    }
}

/// What `rank` and `plan` take as SOURCE.
pub(crate) enum Source {
    /// A results directory's results.jsonl, or a .jsonl file.
    Results(PathBuf),
    /// Anything else: a profile's path or name.
    Profile,
}

pub(crate) fn source_kind(source: &str) -> Source {
    let path = PathBuf::from(source);
    let results = if path.is_dir() { path.join("results.jsonl") } else { path.clone() };
    if results.extension().is_some_and(|e| e == "jsonl") || path.is_dir() { Source::Results(results) } else { Source::Profile }
}

/// The profile SOURCE names, with `--dirty-rate-seconds` checked and filled in where
/// the profile does not set `dirty_rate_s`: for `predict_cells`.
pub(crate) fn profile_to_measure(source: &str, dirty_rate_seconds: f64) -> Result<Profile> {
    let mut profile = Profile::resolve(source)?;
    if !(dirty_rate_seconds.is_finite() && (0.1..=60.0).contains(&dirty_rate_seconds)) {
        anyhow::bail!("--dirty-rate-seconds {dirty_rate_seconds}: give 0.1 to 60");
    }
    if profile.dirty_rate_s == 0.0 {
        profile.dirty_rate_s = dirty_rate_seconds;
    }
    Ok(profile)
}

/// `--boot-timeout`, checked: 1 s up to a week.
pub(crate) fn boot_timeout(secs: u64) -> Result<Duration> {
    if secs == 0 || secs as f64 > migbench::migration::scenario::MAX_SECONDS {
        anyhow::bail!("--boot-timeout {secs}: give seconds, 1 to {} (e.g. 120)", migbench::migration::scenario::MAX_SECONDS);
    }
    Ok(Duration::from_secs(secs))
}
