//! `migbench evacuate`: N guests on this host, all migrated to a destination with
//! at most P at once, for each P of `--parallel`; beside it what `plan` predicts.

use super::migrate::{RemoteArgs, connect_remote};
use super::*;
use migbench::experiment::evacuate::{self as evac, EvacuationSpec};
use migbench::experiment::qemus::Pair;
use migbench::machine::site::Emulator;

#[derive(Args)]
pub(crate) struct EvacuateArgs {
    /// Guests on the host to evacuate (1 to 64).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub(crate) guests: usize,
    /// Migrations in flight at once, comma-separated; N is every guest at once. One evacuation
    /// (fresh guests) per value. Each migration gets --link divided by this number as its own
    /// max-bandwidth (QEMU has no cap shared by several migrations; KubeVirt sets one per
    /// migration, bandwidthPerMigration), so those in flight together never exceed the link.
    /// KubeVirt's defaults: 2 outbound migrations per node (parallelOutboundMigrationsPerNode),
    /// 5 per cluster (parallelMigrationsPerCluster). A value above --guests is refused.
    #[arg(long, default_value = evac::DEFAULT_PARALLEL, value_name = "LIST", allow_hyphen_values = true)]
    pub(crate) parallel: String,
    /// Guest RAM in MiB, each guest.
    #[arg(long, default_value_t = 256)]
    pub(crate) ram: u32,
    /// vCPUs per guest.
    #[arg(long, default_value_t = 1)]
    pub(crate) vcpus: u32,
    /// What a guest runs (idle, burn, memdirty-write:MIB, …); repeat it to give the guests
    /// different workloads in turn. Default: idle.
    #[arg(long = "workload", value_name = "WORKLOAD")]
    pub(crate) workloads: Vec<Workload>,
    /// Accelerator: auto (KVM if a guest really runs under it, else TCG), kvm, tcg.
    #[arg(long, default_value = "auto")]
    pub(crate) accel: AccelRequest,
    #[command(flatten)]
    pub(crate) scenario: Scenario,
    /// Seconds the guests run their workloads after booting, before their dirty rates are measured.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub(crate) warmup: f64,
    /// Seconds of calc-dirty-rate, every guest in the same window: the prediction's input.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub(crate) dirty_rate_seconds: f64,
    /// How long a guest may take to boot to READY.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub(crate) boot_timeout: u64,
    /// Where the records go: one JSON file per evacuation.
    #[arg(long, default_value = "reports", value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// With --dest: the QEMU to run there (a version, `system` or a path there).
    #[arg(long, value_name = "VERSION|PATH", requires = "dest")]
    pub(crate) qemu_dest: Option<QemuWanted>,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// `migbench evacuate`.
pub(crate) async fn evacuate(image: &ImageArgs, a: &EvacuateArgs) -> Result<ExitCode> {
    // Every input that can be wrong is checked before anything is fetched or booted.
    evac::check_guests(a.guests).map_err(anyhow::Error::msg)?;
    let parallel = evac::parse_parallel(&a.parallel, a.guests).map_err(anyhow::Error::msg)?;
    let workloads = evac::workloads_for(&a.workloads, a.guests);
    for w in &a.workloads {
        evac::refuse_workload(w).map_err(anyhow::Error::msg)?;
    }
    let mut scenario = a.scenario.clone();
    scenario.validate().map_err(anyhow::Error::msg)?;
    if !scenario.fault.is_none() {
        anyhow::bail!("--fault {}: evacuate injects no faults; put the fault in a profile and use migbench run (see profiles/faults.toml)", scenario.fault);
    }
    let remote = a.remote.spec(a.qemu_dest.as_ref(), None)?;
    if remote.is_some() {
        scenario.transport = migbench::migration::scenario::Transport::Tcp;
        if let Some(why) = migbench::migration::driver::remote_refusal(&scenario) {
            anyhow::bail!("--dest: {why}");
        }
    }
    for w in &workloads {
        GuestSpec::new(a.ram, a.vcpus, machine::Accel::Tcg)?.with_workload(*w).check().map_err(anyhow::Error::msg)?;
    }
    if !(a.warmup.is_finite() && (0.0..=600.0).contains(&a.warmup)) {
        anyhow::bail!("--warmup {}: give seconds, 0 to 600 (e.g. 2)", a.warmup);
    }
    if !(a.dirty_rate_seconds.is_finite() && (0.1..=60.0).contains(&a.dirty_rate_seconds)) {
        anyhow::bail!("--dirty-rate-seconds {}: give 0.1 to 60", a.dirty_rate_seconds);
    }
    let boot = boot_timeout(a.boot_timeout)?;
    let most = parallel.iter().copied().max().unwrap_or(1);
    let available = migbench::host::mem_available_mib(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
        .context("reading MemAvailable from /proc/meminfo (how much memory the guests may take here)")?;
    evac::check_memory(a.ram, a.guests, most, available, remote.as_ref().map(|_| ("", u64::MAX))).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}: creating it", a.out.display()))?;

    let mut p = prepare(image).await?;
    let env = environment(&mut p, a.accel).await?;
    let guests: Vec<GuestSpec> = workloads.iter().map(|w| GuestSpec::new(a.ram, a.vcpus, env.accel).map(|g| g.with_workload(*w))).collect::<Result<_>>()?;
    let (pair, far) = match &remote {
        Some(r) => {
            let host = connect_remote(r, &p, &env).await?;
            host.check(env.accel, a.ram)?;
            let target = host.ssh.target.to_string();
            evac::check_memory(a.ram, a.guests, most, available, Some((&target, host.facts.mem_available_mib))).map_err(anyhow::Error::msg)?;
            let (source, destination, machine_type) = Emulator::pair_with(&p.qemu, &host)?;
            (Pair { source, destination, machine_type }, Some(host))
        }
        None => (Pair::newest(&p.qemu, &env.machine_type), None),
    };

    let mut reports = Vec::new();
    for &k in &parallel {
        let spec = EvacuationSpec {
            guests: guests.clone(),
            scenario: scenario.clone(),
            parallel: k,
            warmup: Duration::from_secs_f64(a.warmup),
            dirty_rate_s: a.dirty_rate_seconds,
            boot_timeout: boot,
        };
        let each = evac::share(&scenario.link, k);
        eprintln!(
            "migbench: evacuating {} guests of {} MiB to {}, {k} at once, each migration at {} of the {} link",
            a.guests,
            a.ram,
            far.as_ref().map_or_else(|| "this host".to_string(), |h| h.ssh.target.to_string()),
            each,
            scenario.link
        );
        let run = evac::evacuate(&p, &env, &pair, far.as_ref(), &spec).await?;
        let report = migbench::report::evacuation::report(run);
        let path = a.out.join(format!("evacuate-p{k}-{}-{}.json", host::stamp(), std::process::id()));
        std::fs::write(&path, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("migbench: {k} at once: {}; record written to {}", report.figures.healthy, path.display());
        reports.push(report);
    }

    println!("{}", migbench::report::evacuation::table(&reports));
    println!();
    println!("{}", migbench::report::evacuation::guests_table(&reports));
    for r in &reports {
        for why in r.figures.not_counted.iter().chain(&r.predicted.left_out) {
            eprintln!("migbench: {} at once: {why}", r.figures.parallel);
        }
    }
    eprintln!("migbench: the link: {}", evac::BANDWIDTH_RULE);
    eprintln!("migbench: predicted: `migbench plan`'s evacuation for the same guests (their measured dirty rates and memory) over the {} link: {}", scenario.link, migbench::rank::plan::SIMPLIFICATION);
    let all = reports.iter().all(|r| r.figures.counted == r.figures.guests);
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::from(3) })
}
