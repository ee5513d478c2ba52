//! The policy engine on a live cluster (`migbench balance --cluster PROFILE`): N
//! hosts, each running small guests with `cpu-duty` workloads. A host is emulated on
//! this machine (a cgroup with its own CPU capacity), or is a real machine reached
//! over SSH (`dest = "ssh://…"`, see `cluster_hosts`); a cluster may have several of
//! those, and guests move between any two hosts. Every round the engine samples
//! the QEMUs' real CPU use over a window (each where it runs), decides, and performs
//! the migration for real: a fresh QEMU on the destination host receives the guest.
//! Rounds go on until every host is moderate, no migration is beneficial, or
//! `max_rounds`.

use super::balance::{self, ClusterState, Decision, HostState, Options, Rule, VmState};
pub use super::cluster_hosts::{HostSpec, VmSpec};
use super::cluster_hosts::{self, ClusterHost, HostRecord, cgroup_name};
use crate::machine::hardware::{Accel, GuestSpec};
use crate::machine::remote::RemoteHost;
use crate::machine::usage;
use crate::machine::Machine;
use crate::migration::measurement::Outcome;
use crate::migration::scenario::{LinkSpeed, Scenario, Transport};
use crate::setup::{Environment, Platform};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A cluster profile, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seconds of CPU sampling per round (the paper averaged 3 minutes).
    #[serde(default = "three")]
    pub window_s: f64,
    #[serde(default = "six")]
    pub max_rounds: u32,
    #[serde(default)]
    pub rule: Rule,
    #[serde(default = "one")]
    pub margin: f64,
    /// Rounds a migrated VM stays put (against ping-pong).
    #[serde(default = "two")]
    pub cooldown_rounds: u32,
    #[serde(default = "gbit")]
    pub link: LinkSpeed,
    #[serde(default = "ram")]
    pub ram_mib: u32,
    /// Seconds the guests run before the first round.
    #[serde(default = "three")]
    pub warmup_s: f64,
    /// Seconds of QEMU's dirty-rate measurement per round, for every VM at once: the
    /// model's predicted migration time and convergence go to the engine (the
    /// cost-aware rule and the convergence veto use them). 0 = off, the default: on
    /// QEMU 7.2 under TCG, guests measured each round broke on migration more often.
    #[serde(default)]
    pub dirty_rate_s: f64,
    #[serde(rename = "host")]
    pub hosts: Vec<HostSpec>,
}

fn three() -> f64 {
    3.0
}
fn six() -> u32 {
    6
}
fn one() -> f64 {
    1.0
}
fn two() -> u32 {
    2
}
fn gbit() -> LinkSpeed {
    "1Gbit".parse().expect("a valid link speed")
}
fn ram() -> u32 {
    128
}

impl ClusterProfile {
    pub fn load(path: &Path) -> Result<ClusterProfile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading cluster profile {}", path.display()))?;
        let p: ClusterProfile = toml::from_str(&text).map_err(|e| anyhow::anyhow!("cluster profile {}: {}", path.display(), e.to_string().trim_end()))?;
        p.check().map_err(|e| anyhow::anyhow!("cluster profile {}: {e}", path.display()))?;
        Ok(p)
    }

    fn check(&self) -> Result<(), String> {
        if self.hosts.len() < 2 {
            return Err(format!("{} [[host]] given: a cluster needs at least 2", self.hosts.len()));
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u64;
        let total: u64 = self.hosts.iter().filter(|h| h.dest.is_none()).filter_map(|h| h.capacity_percent).map(u64::from).sum();
        if total > 100 * cores {
            return Err(format!(
                "the hosts' capacities add up to {total} %, more than this machine's {} % ({cores} cores): emulated hosts must fit the real one",
                100 * cores
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut groups = std::collections::HashSet::new();
        for h in &self.hosts {
            // Host names become cgroup names: two that differ only in punctuation would collide.
            if !groups.insert(cgroup_name(&h.name)) {
                return Err(format!("host {:?}: another host has the same name (up to punctuation)", h.name));
            }
            match (&h.dest, h.capacity_percent) {
                (_, Some(0)) => return Err(format!("host {:?}: capacity_percent must be above 0", h.name)),
                (None, None) => {
                    return Err(format!(
                        "host {:?}: capacity_percent is needed for a host on this machine (its cgroup's cap, % of one CPU, e.g. capacity_percent = 60)",
                        h.name
                    ));
                }
                _ => {}
            }
            if let Some(a) = &h.migrate_address {
                if h.dest.is_none() {
                    return Err(format!("host {:?}: migrate_address = {a:?} without dest: it is the address of a remote host (dest = \"ssh://user@host\")", h.name));
                }
                crate::host::ssh::check_migrate_address(a).map_err(|e| format!("host {:?}: {e}", h.name))?;
            }
            for v in &h.vms {
                if !names.insert(v.name.clone()) {
                    return Err(format!("VM {:?} appears twice", v.name));
                }
                GuestSpec::new(self.ram_mib, 1, Accel::Tcg).map_err(|e| e.to_string())?.with_workload(v.workload).check()?;
            }
        }
        if !(self.window_s.is_finite() && (0.5..=3600.0).contains(&self.window_s)) {
            return Err(format!("window_s = {}: give 0.5 to 3600 seconds", self.window_s));
        }
        if !(1..=1000).contains(&self.max_rounds) {
            return Err(format!("max_rounds = {}: allow 1 to 1000 rounds", self.max_rounds));
        }
        if !(self.warmup_s.is_finite() && (0.0..=3600.0).contains(&self.warmup_s)) {
            return Err(format!("warmup_s = {}: give 0 to 3600 seconds", self.warmup_s));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(format!("margin = {}: give points of σ of host CPU, 0 or more", self.margin));
        }
        if self.dirty_rate_s != 0.0 && !(self.dirty_rate_s.is_finite() && (0.1..=60.0).contains(&self.dirty_rate_s)) {
            return Err(format!("dirty_rate_s = {}: give 0.1 to 60 seconds, or 0 to skip it", self.dirty_rate_s));
        }
        Ok(())
    }
}

/// A guest and where it runs now.
struct Placed {
    name: String,
    host: usize,
    machine: Machine,
    /// The round it last moved in.
    moved_in: Option<u32>,
}

/// One round, for the log and the record.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: u32,
    pub state: ClusterState,
    pub decision: Decision,
    /// The migration performed: its outcome (completed, failed, …) and what it measured.
    pub outcome: Option<String>,
    pub total_time_ms: Option<f64>,
    pub downtime_ms: Option<f64>,
    pub healthy: Option<bool>,
    /// The QEMU that received the guest (`-name migbench-…`), and where it ran when
    /// the guest was checked there: "this machine" or the remote host's ssh target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_qemu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_place: Option<String>,
}

/// How the cluster run ended.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRun {
    pub profile: String,
    /// Where each host is, its capacity and whether it is capped.
    pub hosts: Vec<HostRecord>,
    pub rounds: Vec<Round>,
    pub migrations: u32,
    pub balanced: bool,
    /// Why the run stopped early (a migration that failed or left a sick guest).
    pub error: Option<String>,
    pub wall_s: f64,
    /// This host's; with a remote host, its QEMU and the machine type every host
    /// runs beside ours, and the host itself in `destination_host`, as `migrate
    /// --dest` records them (the first remote host's; each one's is in `hosts`).
    pub environment: Environment,
}

/// Runs the cluster until it is balanced (or no move helps, or `max_rounds`);
/// `report` is called with each round as it ends. `remotes` has the connected host
/// of each `[[host]]` with `dest` (one entry per host; empty when none has one).
pub async fn run(
    platform: &Platform,
    env: &Environment,
    p: &ClusterProfile,
    remotes: &[Option<Arc<RemoteHost>>],
    boot_timeout: Duration,
    report: &mut dyn FnMut(&Round),
) -> Result<ClusterRun> {
    let started = Instant::now();
    let mut hosts = cluster_hosts::build(platform, env, &p.hosts, p.ram_mib, remotes)?;
    let scenario = Scenario { link: p.link.clone(), ..Scenario::default() };
    // Between this machine and another: TCP to the receiving host's address.
    let across = Scenario { transport: Transport::Tcp, ..scenario.clone() };
    let mut environment = env.clone();
    if let Some(far) = hosts.iter().find(|h| h.remote.is_some()) {
        if let Some(why) = crate::migration::driver::remote_refusal(&across) {
            bail!("cluster profile {}: {why}", p.name);
        }
        // The machine type every host runs, beside the first remote host's QEMU.
        let there = far.emulator();
        environment = env.with_qemus(&platform.qemu, &there.qemu, &there.machine);
        environment.destination_host = far.remote.as_ref().map(|r| r.record(&platform.host, &platform.qemu));
    }
    // Declared after the hosts: on every way out the machines go first.
    let mut placed: Vec<Placed> = Vec::new();
    let mut qemus = 0u32;
    for (hi, (h, written)) in hosts.iter_mut().zip(&p.hosts).enumerate() {
        for v in &written.vms {
            qemus += 1;
            let name = format!("c{qemus}");
            let spec = GuestSpec::new(p.ram_mib, 1, env.accel)?.with_workload(v.workload);
            let m = h.boot(spec, &name, boot_timeout).await.with_context(|| format!("booting VM {} on host {:?}", v.name, h.name))?;
            placed.push(Placed { name: v.name.clone(), host: hi, machine: m, moved_in: None });
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(p.warmup_s)).await;
    let opts = Options { rule: p.rule, margin: p.margin };
    let mut rounds = Vec::new();
    let mut migrations = 0;
    let mut balanced = false;
    let mut error = None;
    // One round more than moves allowed: the state after the last move is judged too.
    for round in 1..=p.max_rounds + 1 {
        let state = match sample(p, &hosts, &placed, round, &scenario).await {
            Ok(s) => s,
            Err(e) => {
                error = Some(format!("round {round}: {e:#}"));
                break;
            }
        };
        let decision = match balance::decide(&state, &opts) {
            Ok(d) => d,
            Err(e) => {
                error = Some(format!("round {round}: {e}"));
                break;
            }
        };
        balanced = decision.heavy.is_empty() && decision.light.is_empty();
        let mut r = Round {
            round,
            state,
            decision: decision.clone(),
            outcome: None,
            total_time_ms: None,
            downtime_ms: None,
            healthy: None,
            destination_qemu: None,
            destination_place: None,
        };
        let mv = match decision.migration.clone() {
            Some(mv) if round <= p.max_rounds => mv,
            _ => {
                report(&r);
                rounds.push(r);
                break;
            }
        };
        // A failed move ends the run, but the rounds measured so far are kept.
        let moved = migrate(&mut hosts, &mut placed, &mut qemus, &mv, (&scenario, &across), round, &mut r).await;
        report(&r);
        rounds.push(r);
        match moved {
            Ok(()) => migrations += 1,
            Err(e) => {
                error = Some(format!("round {round}: {e:#}"));
                balanced = false;
                break;
            }
        }
    }
    for g in placed {
        g.machine.quit().await;
    }
    let records = hosts.iter().map(|h| h.record.clone()).collect();
    drop(hosts);
    Ok(ClusterRun { profile: p.name.clone(), hosts: records, rounds, migrations, balanced, error, wall_s: started.elapsed().as_secs_f64(), environment })
}

/// Moves `mv.vm` into a fresh QEMU on the destination host (`(within, across)`:
/// the scenario on this machine, and between it and another); fills in `r`.
async fn migrate(
    hosts: &mut [ClusterHost],
    placed: &mut [Placed],
    qemus: &mut u32,
    mv: &balance::Move,
    (within, across): (&Scenario, &Scenario),
    round: u32,
    r: &mut Round,
) -> Result<()> {
    let i = placed.iter().position(|g| g.name == mv.vm).context("the engine chose a VM that is not placed")?;
    let to = hosts.iter().position(|h| h.name == mv.to).context("the engine chose a host that does not exist")?;
    let from = placed[i].host;
    if from == to {
        bail!("the engine chose to move {} to {}, the host it is on", mv.vm, mv.to);
    }
    *qemus += 1;
    let name = format!("c{qemus}");
    let (a, b) = if from < to { let (x, y) = hosts.split_at_mut(to); (&x[from], &mut y[0]) } else { let (x, y) = hosts.split_at_mut(from); (&y[0], &mut x[to]) };
    let scenario = if a.remote.is_some() || b.remote.is_some() { across } else { within };
    let mut dst = b.incoming(placed[i].machine.spec, &name, a).await.with_context(|| format!("starting the QEMU that receives {} on host {:?}", mv.vm, mv.to))?;
    r.destination_qemu = Some(format!("migbench-{name}"));
    r.destination_place = Some(dst.remote_host().map_or_else(|| "this machine".to_string(), |h| h.ssh.target.to_string()));
    let m = crate::migration::driver::drive(&mut placed[i].machine, &mut dst, scenario).await?;
    r.outcome = Some(m.outcome.label().to_string());
    r.total_time_ms = m.total_time_ms;
    r.downtime_ms = m.downtime_ms;
    r.healthy = Some(m.health.healthy);
    if m.outcome != Outcome::Completed || !m.health.healthy {
        let why = match &m.outcome {
            Outcome::Cancelled { reason } | Outcome::Failed { reason } | Outcome::Unsupported { reason } => format!("{}: {reason}", m.outcome.label()),
            Outcome::Completed => "completed".into(),
        };
        bail!("migrating {} from {} to {} did not leave a healthy guest there ({why}; health: {})", mv.vm, mv.from, mv.to, m.health.detail);
    }
    let old = std::mem::replace(&mut placed[i].machine, dst);
    placed[i].host = to;
    placed[i].moved_in = Some(round);
    old.quit().await;
    Ok(())
}

/// Every host's and VM's CPU use over a window, as the engine's state, all in % of
/// the host's capacity: a VM's is its QEMU's use (read where it runs: here, or by
/// the remote host's agent) over its host's capacity, a host's the sum of its VMs'.
/// (A VM moving to a host of another capacity counts by the source's share in the
/// engine's estimate; the next round measures it afresh.) With `dirty_rate_s`, each
/// VM also gets the model's predicted migration. A QEMU whose use cannot be read
/// is an error: no figure rather than a wrong one.
async fn sample(p: &ClusterProfile, hosts: &[ClusterHost], placed: &[Placed], round: u32, scenario: &Scenario) -> Result<ClusterState> {
    use crate::machine::{cpu_sample, dirty_rate};
    let before: Vec<_> = placed.iter().map(|g| cpu_sample(&[&g.machine])).collect();
    // The dirty rates are measured inside the CPU window, all guests at once.
    let mut pending = Vec::new();
    if p.dirty_rate_s > 0.0 {
        for g in placed {
            pending.push(dirty_rate::start(&g.machine, p.dirty_rate_s, Default::default()).await.ok());
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(p.window_s)).await;
    let mut used = Vec::new();
    for (g, a) in placed.iter().zip(&before) {
        let u = a.zip(cpu_sample(&[&g.machine])).and_then(|(a, b)| usage::CpuUsage::between(&a, &b));
        let u = u.with_context(|| format!("the CPU use of VM {} on host {:?} could not be read", g.name, hosts[g.host].name))?;
        used.push(u.qemu_percent);
    }
    let mut predictions = Vec::new();
    for (g, pend) in placed.iter().zip(pending) {
        let rate = match pend {
            Some(pend) => dirty_rate::finish(&g.machine, pend).await.ok(),
            None => None,
        };
        let first = g.machine.channel.memory().map(|s| crate::migration::measurement::GuestMemory::of(&s).first_round_bytes(g.machine.spec.ram_mib));
        predictions.push(rate.map(|r| super::vms::predict_for(&g.machine.spec, scenario, r.bytes_per_s(), first)));
    }
    predictions.resize(placed.len(), None);
    let hosts = hosts
        .iter()
        .enumerate()
        .map(|(hi, h)| {
            let vms: Vec<VmState> = placed
                .iter()
                .zip(used.iter().zip(&predictions))
                .filter(|(g, _)| g.host == hi)
                // In % of its host's capacity, the unit of the host's figure and the vector.
                .map(|(g, (u, pred))| VmState {
                    name: g.name.clone(),
                    cpu: *u / h.capacity * 100.0,
                    predicted_migration_s: pred.as_ref().and_then(|p| p.total_s),
                    converges: pred.as_ref().map(|p| p.converges),
                })
                .collect();
            let cpu = vms.iter().map(|v| v.cpu).sum::<f64>();
            HostState { name: h.name.clone(), cpu, cores: None, vms }
        })
        .collect();
    let cooling_down = placed.iter().filter(|g| g.moved_in.is_some_and(|m| round - m <= p.cooldown_rounds)).map(|g| g.name.clone()).collect();
    Ok(ClusterState { hosts, cooling_down })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_checked() {
        let ok = "name = \"c\"\n[[host]]\nname = \"H1\"\ncapacity_percent = 50\n[[host.vm]]\nname = \"a\"\nworkload = \"cpu-duty:20\"\n[[host]]\nname = \"H2\"\ncapacity_percent = 50\n";
        let p: ClusterProfile = toml::from_str(ok).unwrap();
        assert!(p.check().is_ok());
        assert_eq!((p.window_s, p.max_rounds, p.rule, p.ram_mib), (3.0, 6, Rule::Guarded, 128));
        let mut big = p.clone();
        big.hosts[0].capacity_percent = Some(100_000);
        assert!(big.check().unwrap_err().contains("more than this machine"));
        let mut one = p.clone();
        one.hosts.truncate(1);
        assert!(one.check().unwrap_err().contains("at least 2"));
        assert!(toml::from_str::<ClusterProfile>(&ok.replace("capacity_percent = 50\n[[host.vm]]", "capacity = 50\n[[host.vm]]")).is_err());
        let mut none = p.clone();
        none.hosts[1].capacity_percent = None;
        let e = none.check().unwrap_err();
        assert!(e.contains("\"H2\"") && e.contains("capacity_percent is needed"), "{e}");
    }

    #[test]
    fn remote_hosts_are_checked() {
        let text = "name = \"c\"\n[[host]]\nname = \"Here\"\ncapacity_percent = 50\n[[host]]\nname = \"There\"\ndest = \"ssh://root@198.19.0.2\"\n";
        let p: ClusterProfile = toml::from_str(text).unwrap();
        assert!(p.check().is_ok(), "a remote host needs no capacity_percent: {:?}", p.check());
        assert_eq!(p.hosts[1].dest.as_ref().map(|d| d.to_string()).as_deref(), Some("ssh://root@198.19.0.2"));
        // A remote host's capacity does not count against this machine's cores.
        let mut big = p.clone();
        big.hosts[1].capacity_percent = Some(100_000);
        assert!(big.check().is_ok());
        // Two remote hosts (a guest moving between them streams straight from one to the other).
        let mut two = p.clone();
        two.hosts.push(HostSpec { name: "Far".into(), capacity_percent: None, dest: Some("ssh://u@10.0.0.9:2222".parse().unwrap()), migrate_address: None, vms: vec![] });
        assert!(two.check().is_ok(), "{:?}", two.check());
        two.hosts.remove(0);
        assert!(two.check().is_ok(), "two remote hosts and none here: {:?}", two.check());
        let mut addr = p.clone();
        addr.hosts[0].migrate_address = Some("10.0.0.1".into());
        assert!(addr.check().unwrap_err().contains("without dest"));
        addr.hosts[0].migrate_address = None;
        addr.hosts[1].migrate_address = Some("10.0.0.1:4444".into());
        assert!(addr.check().unwrap_err().contains("\"There\""));
        let e = toml::from_str::<ClusterProfile>(&text.replace("ssh://root@198.19.0.2", "root@198.19.0.2")).unwrap_err().to_string();
        assert!(e.contains("ssh://user@host"), "{e}");
    }
}
