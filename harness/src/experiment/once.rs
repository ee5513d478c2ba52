//! One migration outside a profile (`migbench migrate`): boot a guest, migrate it
//! once to a fresh QEMU, and make the record.

use crate::machine::command::Role;
use crate::machine::hardware::GuestSpec;
use crate::machine::site::Site;
use crate::migration::driver::drive_with;
use crate::migration::measurement::Outcome;
use crate::migration::scenario::Scenario;
use crate::record::{MigrationRecord, SCHEMA};
use crate::setup::{Environment, Platform};
use anyhow::Result;
use std::time::Duration;

/// Boots a source guest, starts a destination, migrates once and measures it.
/// An error means the experiment could not be run (QEMU would not start, the
/// guest never booted); a migration that failed or was cancelled is a result.
pub async fn run_one(platform: &Platform, env: &Environment, spec: GuestSpec, scenario: &Scenario, boot_timeout: Duration) -> Result<MigrationRecord> {
    if scenario.fault.strikes_at_start() {
        anyhow::bail!(
            "fault {} strikes at start-up, which one migration cannot show: put it in a profile (fault = \"{}\", see profiles/faults.toml) and use migbench run",
            scenario.fault,
            scenario.fault
        );
    }
    let started_at = crate::record::now_rfc3339();
    // A link cut needs the test network: both QEMUs migrate over its loopback.
    let site = Site::local(&platform.qemu, &platform.image, scenario.fault.cuts_link())?;
    let (mut src, guest_boot_ms) = site.boot(spec, "src", boot_timeout).await?;
    let mut dst = site.start(spec, Role::Incoming, "dst").await?;
    let measurement = drive_with(&mut src, &mut dst, scenario, &mut |_| {}, site.network()).await?;
    match measurement.outcome {
        Outcome::Completed => src.quit().await,
        _ => dst.quit().await,
    }
    Ok(MigrationRecord {
        record: "migration".into(),
        schema: SCHEMA,
        started_at,
        environment: env.clone(),
        guest: spec,
        scenario: scenario.clone(),
        guest_boot_ms,
        measurement,
    })
}
