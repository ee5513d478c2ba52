//! `migbench bench`: boot time, the workloads beside native code, the load generator
//! beside wrk, ab and oha (which its set-up provides), then a profile with its summary,
//! the profile again with guest reuse the other way round (runs/min side by side),
//! and the harness's own CPU while it sampled the migrations.

use super::*;
use migbench::record::bench::{BootRecord, LivermoreMeans, LoadFigureRecord, RateFigure, SweepRateRecord, WorkloadRateRecord};

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// The profile to run.
    #[arg(long, default_value = "smoke")]
    pub(crate) profile: String,
    /// Boots to time before the profile (the median is reported); 0 to skip.
    #[arg(long, default_value_t = 5)]
    pub(crate) boots: usize,
    /// Seconds each workload (Dhrystone, Linpack, Livermore) runs on the host and in a
    /// guest for the side-by-side figures; 0 to skip.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub(crate) workload_seconds: f64,
    /// Seconds of each load-generator capacity run against the guest's HTTP server on
    /// the host's loopback, beside wrk, ab and oha on the same server (fetched or
    /// built into migbench's cache when not installed); 0 to skip.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub(crate) load_seconds: f64,
    /// Skip the profile's second sweep, which runs it again with guest reuse the other
    /// way round (off, or on with --no-reuse) to set the two runs/min side by side.
    #[arg(long)]
    pub(crate) no_reuse_comparison: bool,
    /// Where results are written (a new bench-<time> directory inside).
    #[arg(long, default_value = "reports", value_name = "DIR")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) sweep: SweepArgs,
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

/// `migbench bench`.
pub(crate) async fn bench(image: &ImageArgs, a: &BenchArgs) -> Result<ExitCode> {
    // Every option is checked before anything boots: a typo must not cost minutes.
    let profile = Profile::resolve(&a.profile)?;
    a.check()?;
    let dir = a.out.join(format!("bench-{}", host::stamp()));
    let opts = sweep_options(&a.sweep, dir.clone(), false, Shard::default())?;
    let mut p = prepare(image).await?;
    // The tools the load generator is compared with are set up with the rest,
    // before anything is measured (a first run fetches wrk and ab, and builds oha).
    let tools = if a.load_seconds > 0.0 { Some(tokio::task::spawn_blocking(migbench::load::capacity::Rivals::set_up).await?) } else { None };
    let env = environment(&mut p, a.sweep.accel).await?;
    let boot = if a.boots > 0 { Some(boot_times(&p, &env, a, &opts, &dir).await?) } else { None };
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
            let figure = |f: &workload_rates::Figure| RateFigure {
                rate: f.rate,
                livermore_means: f.livermore.map(|m| LivermoreMeans { arithmetic: m.arithmetic, geometric: m.geometric, harmonic: m.harmonic }),
            };
            f.append(&WorkloadRateRecord::new(env.clone(), w.to_string(), a.workload_seconds, figure(h), figure(g)))?;
        }
    }
    let capacity = if let Some(tools) = tools {
        if !a.sweep.quiet {
            eprintln!(
                "migbench: load generator beside wrk, ab and oha: {} s per run, the keep-alive loops {} rounds each",
                a.load_seconds,
                migbench::load::capacity::ROUNDS
            );
        }
        let secs = a.load_seconds;
        let figs = tokio::task::spawn_blocking(move || load_capacity(secs, &tools)).await??;
        let mut f = ResultsFile::create(&dir.join("load.jsonl"))?;
        for fig in &figs {
            f.append(&LoadFigureRecord::new(env.clone(), secs, fig))?;
        }
        Some(figs)
    } else {
        None
    };
    let (outcome, mut runs) = run_sweep(&p, &env, &profile, &opts).await?;
    let other = if a.no_reuse_comparison {
        None
    } else {
        let reuse = !opts.reuse;
        let out = dir.join(if reuse { "reuse-on" } else { "reuse-off" });
        if !a.sweep.quiet {
            eprintln!("migbench: profile {} again with guest reuse {}, into {}", profile.name, if reuse { "on" } else { "off" }, out.display());
        }
        Some(run_sweep(&p, &env, &profile, &SweepOptions { out, reuse, ..opts.clone() }).await?)
    };
    println!(
        "migbench bench — profile {} ({}), QEMU {}, accel {}, host {} ({} cores), guest kernel {}",
        profile.name, profile.source, env.qemu_version, env.accel, env.host.cpu_model, env.host.cores, env.guest_kernel
    );
    if let Some(boot) = &boot {
        println!("\nGuest boot to READY ({BOOT_RAM_MIB} MiB, 1 vCPU):");
        for (booted, b) in &boot.stats {
            println!("  {booted:<9} median {:.0} ms of {} (min {:.0}, max {:.0})", b.median, b.n, b.min, b.max);
        }
        if let Some(s) = &boot.snapshot {
            println!(
                "  (restored from a snapshot of {:.1} MiB, made once for this QEMU, image and hardware: boot {:.0} ms + save {:.0} ms)",
                s.bytes as f64 / 1048576.0,
                s.boot_ms,
                s.save_ms
            );
        }
    }
    if !rates.is_empty() {
        println!("\n{}", migbench::report::workload_rates_table(&rates, env.accel));
    }
    if let Some(figs) = &capacity {
        println!("\nLoad generator capacity against the guest's HTTP server on the host's loopback (same server for every tool)\n");
        println!("{}", migbench::report::capacity_table(figs));
    }
    // Printed, then counted for the throughput and harness figures.
    let mut code = print_sweep(&profile, &outcome, runs.clone())?;
    let mut sweeps = vec![sweep_rate(&env, &profile, &outcome, &runs)];
    if let Some((other, theirs)) = other {
        if !all_counted(&profile, &theirs) {
            code = ExitCode::from(3);
        }
        sweeps.push(sweep_rate(&env, &profile, &other, &theirs));
        runs.extend(theirs);
        eprintln!("migbench: results with guest reuse {} in {}", if other.reuse { "on" } else { "off" }, other.results.display());
    }
    let mut f = ResultsFile::create(&dir.join("sweeps.jsonl"))?;
    for s in &sweeps {
        f.append(s)?;
    }
    println!("\nSweep throughput\n\n{}", migbench::report::sweep_rates_table(&sweeps));
    println!("\n{}", migbench::summary::harness_cpu::HarnessCpu::of(&runs).line());
    Ok(code)
}

/// The record of one sweep's throughput, with how many of its `runs` count.
fn sweep_rate(env: &Environment, profile: &Profile, o: &sweep::SweepOutcome, runs: &[migbench::record::RunRecord]) -> SweepRateRecord {
    let tally = migbench::summary::CellRuns::new(runs).tally_with_reasons();
    SweepRateRecord::new(env.clone(), &profile.name, o.reuse, o.wall.as_secs_f64(), o.runs_per_min(), tally, &o.results, runs)
}

/// The guest whose boot `bench` times.
const BOOT_RAM_MIB: u32 = 256;

/// Boot-to-READY times, fresh and restored from a snapshot.
struct BootTimes {
    stats: Vec<(migbench::machine::boot::Booted, migbench::stats::Stats)>,
    /// The snapshot the restored boots came from.
    snapshot: Option<migbench::machine::snapshot::SnapshotInfo>,
}

/// Times `--boots` boots each way, fresh and restored, into `dir/boots.jsonl`. The
/// snapshot is made first when there is none (once per QEMU, image and hardware):
/// its making is not a boot and is not timed with them.
async fn boot_times(p: &Platform, env: &Environment, a: &BenchArgs, opts: &SweepOptions, dir: &std::path::Path) -> Result<BootTimes> {
    use migbench::machine::boot::{BootMode, Booted};
    use migbench::machine::site::Emulator;
    use migbench::machine::snapshot;
    let spec = GuestSpec::new(BOOT_RAM_MIB, 1, env.accel)?;
    let emulator = Emulator::newest(&p.qemu);
    let mut f = ResultsFile::create(&dir.join("boots.jsonl"))?;
    let mut stats = Vec::new();
    for (mode, want) in [(BootMode::Fresh, Booted::Fresh), (BootMode::Restore, Booted::Restored)] {
        if mode == BootMode::Restore && snapshot::made(&emulator.qemu, &emulator.machine, &p.image, &spec).is_none() {
            if !a.sweep.quiet {
                eprintln!("migbench: saving a booted {BOOT_RAM_MIB} MiB guest for restores (once per QEMU, image and hardware)");
            }
            experiment::boot_once(p, spec, mode, opts.boot_timeout).await?;
        }
        let mut times = Vec::new();
        for i in 0..a.boots {
            let (t, booted) = experiment::boot_once(p, spec, mode, opts.boot_timeout).await?;
            if booted != want {
                anyhow::bail!("boot {} was to be {want} but the guest came up {booted}", i + 1);
            }
            if !a.sweep.quiet {
                eprintln!("migbench: {want} boot {}/{}: {t:.0} ms to READY", i + 1, a.boots);
            }
            times.push(t);
        }
        f.append(&BootRecord::new(env.clone(), BOOT_RAM_MIB, 1, want, times.clone()))?;
        stats.extend(migbench::stats::Stats::of(&times).map(|s| (want, s)));
    }
    Ok(BootTimes { stats, snapshot: snapshot::made(&emulator.qemu, &emulator.machine, &p.image, &spec) })
}

/// Connections every tool keeps open, and threads where a tool has a choice
/// (wrk's `-t`, our generator's runtime): one per core, as wrk's documentation advises.
const CLIENTS: u32 = 32;

/// The load generator's capacity beside wrk, ab and oha, 32 connections each.
pub(crate) fn load_capacity(secs: f64, rivals: &migbench::load::capacity::Rivals) -> Result<Vec<migbench::load::capacity::Figure>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    migbench::load::capacity::compare(secs, CLIENTS, threads, 2000.0, rivals)
}
