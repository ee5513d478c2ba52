//! Where a live cluster's hosts are (`rank::cluster`): an emulated host on this
//! machine, a cgroup capped at its `capacity_percent`, or a real machine reached
//! over SSH (`dest = "ssh://user@host[:port]"`), whose guests boot there through its
//! `migbench agent` and whose QEMUs' CPU use is read there.
//!
//! A real host is not capped: nothing of migbench's runs in a cgroup there (the agent
//! starts plain processes). Its capacity is only the figure its VMs' use is counted
//! against: `capacity_percent` when the profile gives one, else its cores × 100
//! (from the agent's facts). The record says which (`capacity_from`, `capped`).
//!
//! Several hosts may be on other machines: a guest moving between two of them
//! streams straight from one's QEMU to the other's migration address, never through
//! this machine. Before anything boots, every remote host is shown to reach every
//! other's migration address ([`check_pairs`]); a pair that cannot is an error
//! naming both. Every guest runs the machine type of the oldest QEMU of all the
//! hosts, which every one of them must offer.

use crate::host::Qemu;
use crate::host::ssh::SshTarget;
use crate::machine::cgroup::CpuCgroup;
use crate::machine::command::{MACHINE_TYPE, Role};
use crate::machine::hardware::{GuestSpec, host_mib_for};
use crate::machine::remote::{RemoteHost, RemoteRecord};
use crate::machine::site::{Emulator, Site};
use crate::machine::Machine;
use crate::setup::{Environment, Platform};
use anyhow::{Context, Result, bail};
use migbench_guest::orders::Workload;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A `[[host]]` of a cluster profile, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    /// The host's CPU, % of one physical CPU. On this machine: a cgroup cap on all
    /// its QEMUs (needed). On a remote host: what its VMs' use is counted against,
    /// not enforced; that host's cores × 100 when not given.
    #[serde(default)]
    pub capacity_percent: Option<u32>,
    /// A real host reached over SSH (`ssh://user@host[:port]`) instead of one
    /// emulated here: its guests run there.
    #[serde(default)]
    pub dest: Option<SshTarget>,
    /// The remote host's address for migration streams (default: `dest`'s host).
    #[serde(default)]
    pub migrate_address: Option<String>,
    #[serde(rename = "vm", default)]
    pub vms: Vec<VmSpec>,
}

/// A `[[host.vm]]`: a guest and what it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    pub name: String,
    pub workload: Workload,
}

/// A host of a running cluster: where its QEMUs start, and what caps them.
pub struct ClusterHost {
    pub name: String,
    /// % of one CPU its VMs' use is counted against.
    pub capacity: f64,
    /// Its own place to start QEMUs (a run directory here; for a remote host, its
    /// forwarded sockets). Dropped after the machines (see `cluster::run`).
    site: Site,
    /// The QEMU and machine type its guests run: every guest of a cluster with a
    /// remote host runs the versioned type both hosts' QEMUs have, to move either way.
    emulator: Emulator,
    /// A host on this machine: the cgroup all its QEMUs run in.
    cgroup: Option<CpuCgroup>,
    pub remote: Option<Arc<RemoteHost>>,
    pub record: HostRecord,
}

/// A host as the record shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostRecord {
    pub name: String,
    /// "this machine, cgroup …" or the ssh target.
    pub place: String,
    pub capacity_percent: f64,
    /// "profile" (capacity_percent), or "cores" (the remote host's cores × 100).
    pub capacity_from: String,
    /// Whether the capacity is enforced on the host's QEMUs (a cgroup's cap here);
    /// on a remote host it is not, and they use what the machine gives them.
    pub capped: bool,
    /// A remote host's facts, QEMU and clock, as `migrate --dest` records them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<RemoteRecord>,
}

/// Builds the hosts `specs` (guests of `ram_mib`): `remotes` has one entry per
/// `[[host]]`, the connected host for those with `dest` (see `cli::balance`), or is
/// empty when none has one.
/// Checks every remote host can take the cluster's guests before anything starts,
/// then makes the local hosts' cgroups.
pub fn build(platform: &Platform, env: &Environment, specs: &[HostSpec], ram_mib: u32, remotes: &[Option<Arc<RemoteHost>>]) -> Result<Vec<ClusterHost>> {
    let remote_at = |i: usize| remotes.get(i).cloned().flatten();
    for (i, h) in specs.iter().enumerate() {
        if h.dest.is_some() != remote_at(i).is_some() {
            bail!("host {:?}: its connection does not match the profile (dest {:?}); connect every host with dest first", h.name, h.dest.as_ref().map(|d| d.to_string()));
        }
    }
    let far: Vec<(&HostSpec, Arc<RemoteHost>)> = specs.iter().enumerate().filter_map(|(i, h)| Some((h, remote_at(i)?))).collect();
    // Every host's QEMU runs the oldest one's versioned machine type, so a guest can move any way.
    let machine = match far.is_empty() {
        true => None,
        false => Some(common_machine_type(&platform.qemu, &far)?),
    };
    let here = match &machine {
        Some(m) => Emulator { qemu: platform.qemu.clone(), machine: m.clone() },
        None => Emulator::newest(&platform.qemu),
    };
    check_pairs(&far)?;
    let guests = specs.iter().map(|h| h.vms.len()).sum::<usize>();
    let mut out = Vec::new();
    for (i, h) in specs.iter().enumerate() {
        let host = match (remote_at(i), &machine) {
            (Some(r), Some(m)) => {
                let there = Emulator { qemu: r.facts.qemu.clone(), machine: m.clone() };
                remote_host(h, r, there, platform, env, ram_mib, guests)?
            }
            _ => local_host(platform, h, here.clone())?,
        };
        out.push(host);
    }
    Ok(out)
}

/// The versioned machine type every host of the cluster runs (see
/// [`oldest_machine_type`]): this machine's QEMU and each remote host's.
fn common_machine_type(here: &Qemu, far: &[(&HostSpec, Arc<RemoteHost>)]) -> Result<String> {
    let help = here.machine_help()?;
    let mut qemus = vec![("this machine".to_string(), here, help.as_str())];
    qemus.extend(far.iter().map(|(h, r)| (format!("host {:?} ({})", h.name, r.ssh.target), &r.facts.qemu, r.facts.machine_help.as_str())));
    oldest_machine_type(&qemus).map_err(anyhow::Error::msg)
}

/// The machine type every one of `qemus` (where it runs, the QEMU, its `-machine
/// help`) runs, so that a guest can move between any two: the versioned type "pc"
/// stands for on the oldest QEMU (the first of equals), which every other must offer.
pub fn oldest_machine_type(qemus: &[(String, &Qemu, &str)]) -> Result<String, String> {
    let (at, oldest, help) = qemus.iter().min_by_key(|(_, q, _)| q.major_minor()).ok_or("no QEMU")?;
    let machine = crate::host::machine_alias_target(help, MACHINE_TYPE).unwrap_or_else(|| MACHINE_TYPE.to_string());
    for (other, q, h) in qemus {
        if h != help && !crate::host::machine_types_in(h).contains(&machine) {
            return Err(format!(
                "{other} runs QEMU {}, which does not offer machine type {machine}, that of QEMU {} on {at} (the oldest of the cluster): \
                 a guest cannot move between them. Choose QEMU versions closer together",
                q.version, oldest.version
            ));
        }
    }
    Ok(machine)
}

/// Checks that each remote host reaches every other's migration address (both
/// ways of every pair), where a guest moving between them streams straight to:
/// a pair that cannot is an error naming both hosts and the address, before
/// anything boots.
pub fn check_pairs(far: &[(&HostSpec, Arc<RemoteHost>)]) -> Result<()> {
    for (a, ra) in far {
        for (b, rb) in far {
            if std::ptr::eq(*a, *b) {
                continue;
            }
            crate::machine::link_probe::reaches(ra, rb).map_err(|e| {
                anyhow::anyhow!(
                    "host {:?} ({}) cannot reach host {:?} ({}) at its migration address {}: a guest moving from {:?} to {:?} streams straight there. \
                     Join the two machines so that each reaches the other's migration address (a route), or give each [[host]] a migrate_address the other reaches. \
                     ({e:#})",
                    a.name,
                    ra.ssh.target,
                    b.name,
                    rb.ssh.target,
                    rb.migrate_address,
                    a.name,
                    b.name
                )
            })?;
        }
    }
    Ok(())
}

/// A host on this machine: a cgroup capped at its capacity.
fn local_host(platform: &Platform, h: &HostSpec, emulator: Emulator) -> Result<ClusterHost> {
    let cap = h.capacity_percent.context("a host on this machine needs capacity_percent")?;
    let g = CpuCgroup::create(&format!("host-{}", cgroup_name(&h.name))).with_context(|| format!("making the cgroup of host {:?}", h.name))?;
    g.set_cap(Some(cap))?;
    let record = HostRecord {
        name: h.name.clone(),
        place: format!("this machine, cgroup {}", g.dir().display()),
        capacity_percent: cap as f64,
        capacity_from: "profile".into(),
        capped: true,
        machine: None,
    };
    Ok(ClusterHost { name: h.name.clone(), capacity: cap as f64, site: Site::local(&platform.qemu, &platform.image, false)?, emulator, cgroup: Some(g), remote: None, record })
}

/// A real host: preflight for a guest moving there, and room there for all of the
/// cluster's `guests` and one arriving (the engine may move every guest there).
fn remote_host(h: &HostSpec, r: Arc<RemoteHost>, emulator: Emulator, platform: &Platform, env: &Environment, ram_mib: u32, guests: usize) -> Result<ClusterHost> {
    let at = format!("host {:?} ({})", h.name, r.ssh.target);
    r.check(env.accel, ram_mib).with_context(|| at.clone())?;
    check_room(ram_mib, guests, r.facts.mem_available_mib).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    let (capacity, from) = capacity(h.capacity_percent, r.facts.host.cores);
    let record = HostRecord {
        name: h.name.clone(),
        place: r.ssh.target.to_string(),
        capacity_percent: capacity,
        capacity_from: from.into(),
        capped: false,
        machine: Some(r.record(&platform.host, &platform.qemu)),
    };
    Ok(ClusterHost { name: h.name.clone(), capacity, site: Site::remote(r.clone(), None)?, emulator, cgroup: None, remote: Some(r), record })
}

/// A remote host's capacity: the profile's, else its cores × 100; and where it came from.
pub fn capacity(given: Option<u32>, cores: usize) -> (f64, &'static str) {
    match given {
        Some(c) => (c as f64, "profile"),
        None => (cores.max(1) as f64 * 100.0, "cores"),
    }
}

/// Whether `available` MiB hold every one of the cluster's `guests` and one more arriving.
pub fn check_room(ram_mib: u32, guests: usize, available: u64) -> Result<(), String> {
    let need = host_mib_for(ram_mib) * (guests as u64 + 1);
    if need > available {
        return Err(format!(
            "{available} MiB of memory available, but the cluster's {guests} guests of {ram_mib} MiB could all move there, and one more arrive: about {need} MiB. \
             Free memory there, or use fewer or smaller guests (ram_mib)"
        ));
    }
    Ok(())
}

/// A host name as a cgroup's: two names that differ only in punctuation collide.
pub fn cgroup_name(host: &str) -> String {
    host.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

impl ClusterHost {
    /// The QEMU and machine type its guests run.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Boots guest `name` here (in its cgroup on this machine).
    pub async fn boot(&mut self, spec: GuestSpec, name: &str, timeout: Duration) -> Result<Machine> {
        let (m, _) = self.site.boot_on(&self.emulator, spec, name, timeout).await?;
        if let Some(g) = &mut self.cgroup {
            g.add(m.pid())?;
        }
        Ok(m)
    }

    /// Starts the QEMU that receives a guest from host `from` (in the cgroup on this
    /// machine). Here, from a remote host, it listens at this machine's address as
    /// that host reaches it; on a remote host, at that host's migration address,
    /// whichever host the guest comes from (checked reachable by [`check_pairs`]).
    pub async fn incoming(&mut self, spec: GuestSpec, name: &str, from: &ClusterHost) -> Result<Machine> {
        let mut m = self.site.start_on(&self.emulator, spec, Role::Incoming, name).await?;
        if let Some(g) = &mut self.cgroup {
            g.add(m.pid())?;
        }
        if let (Some(far), None) = (&from.remote, &self.remote) {
            m.listen_for_remote(far.local_address()?)?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_runs_the_oldest_qemus_machine_type_which_all_must_offer() {
        let q = |v: &str| Qemu { path: format!("/q{v}").into(), version: v.into(), version_line: String::new(), data_dirs: vec![], origin: Default::default() };
        let help = |newest: &str, more: &[&str]| {
            let mut t = format!("Supported machines are:\npc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-{newest})\npc-i440fx-{newest}       Standard PC\n");
            for m in more {
                t += &format!("pc-i440fx-{m}       Standard PC\n");
            }
            t
        };
        let (q10, q72, q90) = (q("10.0.2"), q("7.2.22"), q("9.0.0"));
        let (h10, h72, h90) = (help("10.0", &["9.0", "7.2"]), help("7.2", &[]), help("9.0", &[]));
        let at = |s: &str| s.to_string();
        assert_eq!(oldest_machine_type(&[(at("this machine"), &q10, &h10), (at("host \"A\""), &q10, &h10)]).unwrap(), "pc-i440fx-10.0");
        // The oldest is a remote host's, the second of three.
        let all = [(at("this machine"), &q10, h10.as_str()), (at("host \"A\""), &q72, h72.as_str()), (at("host \"B\""), &q10, h10.as_str())];
        assert_eq!(oldest_machine_type(&all).unwrap(), "pc-i440fx-7.2");
        // A 9.0 without 7.2's type: named, with the host of the oldest.
        let e = oldest_machine_type(&[(at("this machine"), &q10, &h10), (at("host \"A\""), &q72, &h72), (at("host \"B\""), &q90, &h90)]).unwrap_err();
        assert!(e.contains("host \"B\" runs QEMU 9.0.0") && e.contains("pc-i440fx-7.2") && e.contains("QEMU 7.2.22 on host \"A\""), "{e}");
    }

    #[test]
    fn a_remote_hosts_capacity_is_the_profiles_or_its_cores() {
        assert_eq!(capacity(Some(150), 8), (150.0, "profile"));
        assert_eq!(capacity(None, 4), (400.0, "cores"));
        assert_eq!(capacity(None, 0), (100.0, "cores"));
    }

    #[test]
    fn a_remote_host_must_hold_every_guest_and_one_arriving() {
        let per = host_mib_for(128);
        assert!(check_room(128, 3, per * 4).is_ok());
        let e = check_room(128, 3, per * 4 - 1).unwrap_err();
        assert!(e.contains("3 guests of 128 MiB") && e.contains(&format!("{} MiB", per * 4)) && e.contains("ram_mib"), "{e}");
        assert_eq!(cgroup_name("Host 1"), "Host-1");
    }
}
