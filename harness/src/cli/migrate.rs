//! `migbench migrate`: one guest, one migration, its record.

use super::*;

#[derive(Args)]
pub(crate) struct CommonRun {
    /// Accelerator: auto (KVM if a guest really runs under it, else TCG), kvm, tcg.
    #[arg(long, default_value = "auto")]
    pub(crate) accel: AccelRequest,
    #[command(flatten)]
    pub(crate) scenario: Scenario,
    /// What the guest runs: idle, burn, memdirty-write:MIB, memdirty-read:MIB.
    #[arg(long, default_value = "idle")]
    pub(crate) workload: Workload,
    /// How long a guest may take to boot to READY.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub(crate) boot_timeout: u64,
    /// vCPUs per guest.
    #[arg(long, default_value_t = 1)]
    pub(crate) vcpus: u32,
    /// Where results are written.
    #[arg(long, default_value = "reports", value_name = "DIR")]
    pub(crate) out: PathBuf,
}

#[derive(Args)]
pub(crate) struct MigrateArgs {
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 512)]
    pub(crate) ram: u32,
    /// Print the full JSON record instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// An HTTP load on the guest through the migration (needs --workload http):
    /// open:RATE or closed:CLIENTS[:THINK_MS], as a profile's `load`.
    #[arg(long, value_name = "MODE")]
    pub(crate) load: Option<migbench::load::spec::Mode>,
    /// With --load: UDP echoes per second to the guest, for the outage (0 = off).
    #[arg(long, default_value_t = 1000, requires = "load")]
    pub(crate) probe_hz: u32,
    /// With --load: seconds of load before `migrate`, and after the migration ends.
    #[arg(long, default_value_t = 2.0, value_name = "SECS", requires = "load", allow_hyphen_values = true)]
    pub(crate) load_window: f64,
    /// The destination's QEMU, when it is not the source's (`--qemu`): a version
    /// (7.2, 10.0), `system` or a path. Both sides then run the older one's versioned
    /// machine type, and the record names both versions and that type.
    #[arg(long, value_name = "VERSION|PATH")]
    pub(crate) qemu_dest: Option<QemuWanted>,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) run: CommonRun,
}

/// A destination on another host.
#[derive(Args, Clone)]
pub(crate) struct RemoteArgs {
    /// Migrate to another host: ssh://user@host[:port]. migbench copies itself and the guest
    /// image there (~/.cache/migbench) and runs the destination QEMU with `migbench agent`
    /// over one SSH connection. --qemu-dest then names the QEMU there.
    #[arg(long, value_name = "ssh://USER@HOST[:PORT]")]
    pub(crate) dest: Option<migbench::host::ssh::SshTarget>,
    /// The private key that logs in to --dest (otherwise your ssh config and agent).
    #[arg(long, value_name = "FILE")]
    pub(crate) ssh_key: Option<PathBuf>,
    /// More ssh options for --dest, as `-o` takes them (e.g. UserKnownHostsFile=FILE); repeatable.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    pub(crate) ssh_options: Vec<String>,
    /// The destination's address for the migration stream (default: --dest's host). The stream
    /// never rides the SSH connection.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) migrate_address: Option<String>,
    /// The destination's address for the guest's clients, on another link than the migration's
    /// (default: the migration address, one link shared by both).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) client_address: Option<String>,
}

impl RemoteArgs {
    /// The remote destination asked for, with the QEMU to run there; a profile's
    /// `dest`, `migrate_address` and `client_address` (`profile`) serve when the options do not say.
    pub(crate) fn spec(&self, qemu: Option<&QemuWanted>, profile: Option<&migbench::experiment::profile::Destination>) -> Result<Option<migbench::machine::remote::RemoteSpec>> {
        let target = self.dest.as_ref().or(profile.map(|p| &p.target));
        let Some(target) = target else {
            let stray = [("--ssh-key", self.ssh_key.is_some()), ("--ssh-option", !self.ssh_options.is_empty()), ("--migrate-address", self.migrate_address.is_some()), ("--client-address", self.client_address.is_some())];
            if let Some((opt, _)) = stray.iter().find(|(_, given)| *given) {
                anyhow::bail!("{opt} is for a destination on another host: give it with --dest ssh://user@host");
            }
            return Ok(None);
        };
        let migrate_address = self.migrate_address.clone().or_else(|| profile.and_then(|p| p.migrate_address.clone()));
        if let Some(a) = &migrate_address {
            migbench::host::ssh::check_migrate_address(a).map_err(anyhow::Error::msg)?;
        }
        let client_address = self.client_address.clone().or_else(|| profile.and_then(|p| p.client_address.clone()));
        if let Some(a) = &client_address {
            migbench::host::ssh::check_migrate_address(a).map_err(|e| anyhow::anyhow!(e.replace("--migrate-address", "--client-address").replace("the migration should use", "the guest's clients should use")))?;
        }
        Ok(Some(migbench::machine::remote::RemoteSpec {
            target: target.clone(),
            auth: migbench::host::ssh::SshAuth { key: self.ssh_key.clone(), options: self.ssh_options.clone() },
            migrate_address,
            client_address,
            qemu: qemu.cloned(),
        }))
    }
}

/// `migbench migrate`: boots a guest, migrates it once and prints the measurements.
pub(crate) async fn migrate(image: &ImageArgs, a: &MigrateArgs) -> Result<ExitCode> {
    let remote = a.remote.spec(a.qemu_dest.as_ref(), None)?;
    let mut scenario = a.run.scenario.clone();
    if remote.is_some() {
        // Another host is reached over the network: TCP, to its migration address.
        scenario.transport = migbench::migration::scenario::Transport::Tcp;
    }
    scenario.validate().map_err(anyhow::Error::msg)?;
    if remote.is_some() {
        if let Some(why) = migbench::migration::driver::remote_refusal(&scenario) {
            anyhow::bail!("--dest: {why}");
        }
    }
    // Check the cheap inputs before any set-up work.
    GuestSpec::new(a.ram, a.run.vcpus, machine::Accel::Tcg)?.with_workload(a.run.workload).check().map_err(anyhow::Error::msg)?;
    let load = match a.load {
        None => None,
        Some(_) if !matches!(a.run.workload, Workload::Http { .. }) => {
            anyhow::bail!("--load puts HTTP requests on the guest's server: give --workload http too (the guest runs {})", a.run.workload)
        }
        Some(_) if a.probe_hz > migbench::load::spec::MAX_PROBE_HZ => {
            anyhow::bail!("--probe-hz {}: give 0 (off) to {} probes per second", a.probe_hz, migbench::load::spec::MAX_PROBE_HZ)
        }
        Some(_) if !(a.load_window.is_finite() && (0.0..=600.0).contains(&a.load_window)) => {
            anyhow::bail!("--load-window {}: give seconds, 0 to 600", a.load_window)
        }
        Some(mode) => Some(migbench::experiment::once::OnceLoad {
            spec: migbench::load::spec::LoadSpec { mode, connection: Default::default(), dynamic_percent: 50, timeout_ms: 5000, requests: None },
            probe_hz: a.probe_hz,
            before_s: a.load_window,
            after_s: a.load_window,
            out: a.run.out.clone(),
        }),
    };
    let boot = boot_timeout(a.run.boot_timeout)?;
    let mut p = prepare(image).await?;
    let env = environment(&mut p, a.run.accel).await?;
    let spec = GuestSpec::new(a.ram, a.run.vcpus, env.accel)?.with_workload(a.run.workload);
    let rec = match (&remote, &a.qemu_dest) {
        (Some(r), _) => {
            let host = connect_remote(r, &p, &env).await?;
            host.check(env.accel, a.ram)?;
            let (source, destination, machine_type) = migbench::machine::site::Emulator::pair_with(&p.qemu, &host)?;
            let pair = migbench::experiment::qemus::Pair { source, destination, machine_type };
            migbench::experiment::once::run_to(&p, &env, &pair, Some(&host), spec, &scenario, load.as_ref(), boot).await?
        }
        (None, None) => {
            let pair = migbench::experiment::qemus::Pair::newest(&p.qemu, &env.machine_type);
            migbench::experiment::once::run_to(&p, &env, &pair, None, spec, &scenario, load.as_ref(), boot).await?
        }
        (None, Some(wanted)) => {
            let (source, wanted) = (p.qemu.clone(), wanted.clone());
            let pair = tokio::task::spawn_blocking(move || -> Result<migbench::experiment::qemus::Pair> {
                let destination = migbench::host::qemu_versions::resolve(&wanted).with_context(|| format!("--qemu-dest {wanted}"))?;
                let (source, destination, machine_type) = migbench::machine::site::Emulator::pair(&source, &destination)?;
                Ok(migbench::experiment::qemus::Pair { source, destination, machine_type })
            })
            .await
            .context("QEMU resolution task")??;
            eprintln!(
                "migbench: migrating from QEMU {} to QEMU {} on machine type {}",
                pair.source.qemu.version, pair.destination.qemu.version, pair.machine_type
            );
            migbench::experiment::once::run_to(&p, &env, &pair, None, spec, &scenario, load.as_ref(), boot).await?
        }
    };
    let path = a.run.out.join(format!("migrate-{}-{}.json", host::stamp(), std::process::id()));
    std::fs::create_dir_all(&a.run.out).with_context(|| format!("creating {}", a.run.out.display()))?;
    std::fs::write(&path, serde_json::to_string_pretty(&rec)?).with_context(|| format!("writing {}", path.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        println!("{}", migbench::report::migration_table(std::slice::from_ref(&rec)));
        if let Some(t) = migbench::report::service::one_migration(&rec.measurement) {
            println!("\n{t}");
        }
    }
    for n in migbench::report::evidence_notes(std::slice::from_ref(&rec)).into_iter().chain(migbench::report::migration_notes(std::slice::from_ref(&rec))) {
        eprintln!("migbench: {n}");
    }
    eprintln!("migbench: record written to {}", path.display());
    Ok(exit_for(std::slice::from_ref(&rec)))
}

/// Connects to the remote destination and says what it found there.
pub(crate) async fn connect_remote(spec: &migbench::machine::remote::RemoteSpec, p: &Platform, env: &Environment) -> Result<std::sync::Arc<migbench::machine::remote::RemoteHost>> {
    let (r, image, accel) = (spec.clone(), p.image.clone(), env.accel);
    eprintln!("migbench: connecting to {} …", r.target);
    let host = tokio::task::spawn_blocking(move || migbench::machine::remote::RemoteHost::connect(&r, &image, accel)).await.context("connection task")??;
    eprintln!(
        "migbench: destination {} ({}): QEMU {} ({}), migration to {} over TCP; clock {:+.1} ms from ours (± {:.1})",
        host.ssh.target,
        host.facts.hostname,
        host.facts.qemu.version,
        host.facts.qemu.path.display(),
        host.migrate_address,
        host.clock.offset_ms,
        host.clock.round_trip_ms / 2.0
    );
    for d in migbench::machine::remote::differences(&p.host, &p.qemu, &host.facts) {
        eprintln!("migbench: the hosts differ (recorded): {d}");
    }
    Ok(std::sync::Arc::new(host))
}

/// 0 when every migration completed and left a healthy guest, 3 otherwise (the
/// records are written either way), 1 for errors.
pub(crate) fn exit_for(records: &[migbench::record::MigrationRecord]) -> ExitCode {
    let ok = records.iter().all(|r| migbench::summary::cell_runs::counts(&r.measurement));
    if ok { ExitCode::SUCCESS } else { ExitCode::from(3) }
}
