//! One migration outside a profile (`migbench migrate`): boot a guest, migrate it
//! once to a fresh QEMU, and make the record.

use crate::machine::command::Role;
use crate::machine::hardware::GuestSpec;
use crate::machine::remote::RemoteHost;
use crate::machine::site::Site;
use super::qemus::Pair;
use crate::migration::driver::drive_with;
use crate::migration::measurement::Outcome;
use crate::migration::scenario::Scenario;
use crate::record::{MigrationRecord, SCHEMA};
use crate::setup::{Environment, Platform};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An HTTP load on the guest around its one migration (`migrate --load`): the
/// guest gets a NIC on the test network, the load and the probe start once it
/// serves, run `before_s` before `migrate` and `after_s` after it ends, and their
/// time series go to `out`.
#[derive(Debug, Clone)]
pub struct OnceLoad {
    pub spec: crate::load::spec::LoadSpec,
    pub probe_hz: u32,
    pub before_s: f64,
    pub after_s: f64,
    pub out: PathBuf,
}

/// Boots a source guest, starts a destination, migrates once and measures it.
/// An error means the experiment could not be run (QEMU would not start, the
/// guest never booted); a migration that failed or was cancelled is a result.
pub async fn run_one(platform: &Platform, env: &Environment, spec: GuestSpec, scenario: &Scenario, boot_timeout: Duration) -> Result<MigrationRecord> {
    let pair = Pair::newest(&platform.qemu, &env.machine_type);
    run_between(platform, env, &pair, spec, scenario, boot_timeout).await
}

/// [`run_one`] from `pair`'s source QEMU to its destination QEMU (two versions,
/// say); the record names both and the machine type they ran.
pub async fn run_between(platform: &Platform, env: &Environment, pair: &Pair, spec: GuestSpec, scenario: &Scenario, boot_timeout: Duration) -> Result<MigrationRecord> {
    run_to(platform, env, pair, None, spec, scenario, None, boot_timeout).await
}

/// [`run_between`], the destination on `remote` when given (its QEMU is `pair`'s
/// destination); the record then carries that host too.
pub async fn run_to(
    platform: &Platform,
    env: &Environment,
    pair: &Pair,
    remote: Option<&Arc<RemoteHost>>,
    spec: GuestSpec,
    scenario: &Scenario,
    load: Option<&OnceLoad>,
    boot_timeout: Duration,
) -> Result<MigrationRecord> {
    if scenario.fault.strikes_at_start() {
        anyhow::bail!(
            "fault {} strikes at start-up, which one migration cannot show: put it in a profile (fault = \"{}\", see profiles/faults.toml) and use migbench run",
            scenario.fault,
            scenario.fault
        );
    }
    let started_at = crate::record::now_rfc3339();
    // Zero-copy send needs the guest's memory locked on the sender, from its start.
    // A guest bound for another host runs its source QEMU in this host's namespace.
    let spec = GuestSpec { lock_memory: spec.lock_memory || scenario.strategy.spec().zero_copy, portable_nic: remote.is_some(), ..spec };
    // A guest under load serves its clients on the test network.
    let spec = if load.is_some() { spec.with_net(crate::network::address::GuestNet::default()) } else { spec };
    // A link cut here needs the test network: both QEMUs migrate over its loopback
    // (to another host, the stream is cut on the link itself).
    let site = Site::local(&platform.qemu, &platform.image, load.is_some() || (remote.is_none() && scenario.fault.cuts_link()))?;
    let far = remote.map(|h| Site::remote(h.clone(), site.network().cloned())).transpose()?;
    let (mut src, guest_boot_ms) = site.boot_on(&pair.source, spec, "src", boot_timeout).await?;
    let guest_booted = Some(src.booted);
    let mut dst = far.as_ref().unwrap_or(&site).start_on(&pair.destination, spec, Role::Incoming, "dst").await?;
    let service = match (load, spec.net, site.network()) {
        (Some(l), Some(net), Some(network)) => {
            let svc = super::service_run::start(&l.spec, net.ip, l.probe_hz, network).await.context("starting the load on the guest")?;
            tokio::time::sleep(Duration::from_secs_f64(l.before_s)).await;
            Some((l, svc))
        }
        (Some(_), _, _) => anyhow::bail!("--load: the guest has no NIC on a test network here to take the load (an internal error: please report it)"),
        (None, _, _) => None,
    };
    let mut measurement = drive_with(&mut src, &mut dst, scenario, &mut |_| {}, site.network()).await?;
    if let Some((l, svc)) = service {
        if measurement.health.healthy {
            tokio::time::sleep(Duration::from_secs_f64(l.after_s)).await;
        }
        super::service_run::finish(&l.out, &format!("migrate-{}", started_at.replace(':', "")), l.spec.requests, l.spec.timeout_ms, &mut measurement, svc).await;
    }
    match measurement.outcome {
        Outcome::Completed => src.quit().await,
        _ => dst.quit().await,
    }
    let mut environment = env.with_qemus(&pair.source.qemu, &pair.destination.qemu, &pair.machine_type);
    environment.destination_host = remote.map(|h| h.record(&platform.host, &pair.source.qemu));
    Ok(MigrationRecord {
        record: "migration".into(),
        schema: SCHEMA,
        started_at,
        environment,
        guest: spec,
        scenario: scenario.clone(),
        guest_boot_ms,
        guest_booted,
        measurement,
    })
}
