//! A guest's hardware, as a profile or the command line asks for it: accelerator,
//! RAM, vCPUs, the workload it boots into, its NIC, and the start-up faults a run
//! may inject. Plain values: nothing here starts a QEMU.

use crate::network::address::GuestNet;
use anyhow::{Result, bail};
use migbench_guest::orders::Workload;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// What the user asked for; `Auto` means KVM if a guest really runs under it, else TCG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccelRequest {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl FromStr for AccelRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AccelRequest::Auto),
            "kvm" => Ok(AccelRequest::Kvm),
            "tcg" => Ok(AccelRequest::Tcg),
            _ => Err(format!("accelerator {s:?} is not one of auto, kvm, tcg")),
        }
    }
}

impl fmt::Display for AccelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelRequest::Auto => "auto",
            AccelRequest::Kvm => "kvm",
            AccelRequest::Tcg => "tcg",
        })
    }
}

/// How QEMU's `calc-dirty-rate` counts a guest's dirty pages (a profile's
/// `dirty_rate_mode`). `auto` takes the dirty bitmap under KVM where offered, else
/// samples pages; the others are asked for as written, and where this QEMU or the
/// accelerator cannot do one, the record says why instead of measuring another way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DirtyRateMode {
    #[default]
    Auto,
    /// Hashes a sample of pages twice and counts the changed ones.
    PageSampling,
    /// The dirty bitmap QEMU keeps for migration: every written page.
    DirtyBitmap,
    /// KVM's per-vCPU dirty ring (`-accel kvm,dirty-ring-size=N`): every written page, per vCPU.
    DirtyRing,
}

impl fmt::Display for DirtyRateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DirtyRateMode::Auto => "auto",
            DirtyRateMode::PageSampling => "page-sampling",
            DirtyRateMode::DirtyBitmap => "dirty-bitmap",
            DirtyRateMode::DirtyRing => "dirty-ring",
        })
    }
}

/// A guest's hardware, and the workload it boots into.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuestSpec {
    pub ram_mib: u32,
    pub vcpus: u32,
    pub accel: Accel,
    #[serde(default = "idle")]
    pub workload: Workload,
    /// The guest's NIC on the test network (none: no network device at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<GuestNet>,
    /// A start-up fault to inject (the record's scenario says which; not recorded here).
    #[serde(skip)]
    pub inject: StartFault,
    /// The guest obeys test-only orders (a test's own memory corruption). Only tests
    /// set it; nothing a user runs can.
    #[serde(skip)]
    pub test_orders: bool,
    /// QEMU locks the guest's memory (`-overcommit mem-lock=on`), as sending pages
    /// straight from it (zero-copy send) needs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lock_memory: bool,
    /// Bound for another host: its QEMU runs in this host's own network namespace
    /// (so its migration reaches the other host) and is handed its NIC's tap, without
    /// a vnet header (the far end's stream backend has none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub portable_nic: bool,
    /// Boot parked (`migbench.park=1`): the guest comes up without its orders and
    /// waits for them on the guest channel. Only the snapshot of a booted guest
    /// (`machine::snapshot`) boots so; its command line then carries no orders.
    #[serde(skip)]
    pub park: bool,
}

/// Faults that strike when a QEMU starts (`crate::migration::scenario::Fault` has them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFault {
    #[default]
    None,
    /// QEMU gets an option it does not know, and refuses to start.
    BadQemuOption,
    /// The kernel is told to run an init that does not exist: it panics, never READY.
    NeverReady,
}

/// The option `StartFault::BadQemuOption` adds.
pub const BAD_QEMU_OPTION: &str = "-migbench-no-such-option";

fn idle() -> Workload {
    Workload::Idle
}

pub const MIN_RAM_MIB: u32 = 64;
pub const MAX_RAM_MIB: u32 = 1 << 20;

/// Memory a QEMU takes beyond its guest's RAM, MiB, as set aside when checking
/// that guests fit on a host (about 64 MiB was seen here; twice that for margin).
pub const QEMU_OVERHEAD_MIB: u64 = 128;

/// The memory a guest of `ram_mib` needs on its host, MiB.
pub fn host_mib_for(ram_mib: u32) -> u64 {
    ram_mib as u64 + QEMU_OVERHEAD_MIB
}
pub const MAX_VCPUS: u32 = 255;

impl GuestSpec {
    pub fn new(ram_mib: u32, vcpus: u32, accel: Accel) -> Result<GuestSpec> {
        if !(MIN_RAM_MIB..=MAX_RAM_MIB).contains(&ram_mib) {
            bail!(
                "--ram {ram_mib}: guest RAM is given in MiB and must be between {MIN_RAM_MIB} and {MAX_RAM_MIB} \
                 (the guest kernel needs at least {MIN_RAM_MIB} MiB); try --ram 256"
            );
        }
        if !(1..=MAX_VCPUS).contains(&vcpus) {
            bail!("--vcpus {vcpus}: a guest has 1 to {MAX_VCPUS} vCPUs; try --vcpus 1");
        }
        Ok(GuestSpec { ram_mib, vcpus, accel, workload: Workload::Idle, net: None, inject: StartFault::None, test_orders: false, lock_memory: false, portable_nic: false, park: false })
    }

    pub fn with_workload(self, workload: Workload) -> GuestSpec {
        GuestSpec { workload, ..self }
    }

    /// The same guest with a NIC on the test network.
    pub fn with_net(self, net: GuestNet) -> GuestSpec {
        GuestSpec { net: Some(net), ..self }
    }

    /// Checks that the workload fits: a memory dirtier's working set must leave the
    /// guest kernel and init at least 64 MiB.
    pub fn check(&self) -> Result<(), String> {
        if let Workload::Http { store_mib } = self.workload {
            let room = self.ram_mib.saturating_sub(64);
            if store_mib > room {
                return Err(format!(
                    "workload {}: a {store_mib} MiB store does not fit a {} MiB guest; keep it at most RAM − 64 MiB (here {room})",
                    self.workload, self.ram_mib
                ));
            }
        }
        if let Workload::MemDirty { mib, .. } = self.workload {
            let room = self.ram_mib.saturating_sub(64);
            if mib > room {
                return Err(format!(
                    "workload {}: a {mib} MiB working set does not fit a {} MiB guest; keep it at most RAM − 64 MiB (here {room})",
                    self.workload, self.ram_mib
                ));
            }
        }
        Ok(())
    }
}

/// The balloon's effect before a migration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Balloon {
    /// How much the balloon was asked to take, MiB.
    pub requested_mib: u32,
    /// The guest's memory as QEMU reports it afterwards (`query-balloon` actual), MiB.
    pub guest_mib: f64,
    /// RAM taken from the guest, MiB: pages that migration need not copy.
    pub saved_mib: f64,
}

/// Checks a cap against the host: 1 % up to 100 % × cores.
pub fn check_cap(percent: u32, cores: usize) -> Result<(), String> {
    let max = 100 * cores as u32;
    if percent == 0 || percent > max {
        return Err(format!("cap_percent = {percent}: a CPU cap is 1 to {max} (% of one host CPU; this host has {cores} cores)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_validation_names_the_input() {
        let e = GuestSpec::new(0, 1, Accel::Tcg).unwrap_err().to_string();
        assert!(e.contains("--ram 0") && e.contains("--ram 256"), "{e}");
        let e = GuestSpec::new(256, 0, Accel::Tcg).unwrap_err().to_string();
        assert!(e.contains("--vcpus 0"), "{e}");
        assert!(GuestSpec::new(128, 1, Accel::Tcg).is_ok());
    }

    #[test]
    fn accel_parsing() {
        assert_eq!("KVM".parse::<AccelRequest>().unwrap(), AccelRequest::Kvm);
        assert_eq!("auto".parse::<AccelRequest>().unwrap(), AccelRequest::Auto);
        assert!("hvf".parse::<AccelRequest>().unwrap_err().contains("auto, kvm, tcg"));
    }
}
