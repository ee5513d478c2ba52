//! The policy engine on a live cluster (`migbench balance --cluster PROFILE`): N
//! emulated hosts on this machine, each a cgroup with its own CPU capacity, each
//! running small guests with `cpu-duty` workloads. Every round the engine samples the
//! QEMUs' real CPU use over a window, decides, and performs the migration for real:
//! a fresh QEMU in the destination host's cgroup receives the guest. Rounds go on
//! until every host is moderate, no migration is beneficial, or `max_rounds`.

use super::balance::{self, ClusterState, Decision, HostState, Options, Rule, VmState};
use crate::machine::cgroup::CpuCgroup;
use crate::machine::usage;
use crate::machine::command::Role;
use crate::machine::hardware::{Accel, GuestSpec};
use crate::machine::Machine;
use crate::machine::site::Site;
use crate::migration::measurement::Outcome;
use crate::migration::scenario::{LinkSpeed, Scenario};
use crate::setup::{Environment, Platform};
use anyhow::{Context, Result, bail};
use migbench_guest::orders::Workload;
use serde::{Deserialize, Serialize};
use std::path::Path;
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    /// The host's CPU, % of one physical CPU (a cgroup cap on all its QEMUs).
    pub capacity_percent: u32,
    #[serde(rename = "vm", default)]
    pub vms: Vec<VmSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    pub name: String,
    pub workload: Workload,
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
        let total: u64 = self.hosts.iter().map(|h| h.capacity_percent as u64).sum();
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
            if h.capacity_percent == 0 {
                return Err(format!("host {:?}: capacity_percent must be above 0", h.name));
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
}

/// How the cluster run ended.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRun {
    pub profile: String,
    pub rounds: Vec<Round>,
    pub migrations: u32,
    pub balanced: bool,
    /// Why the run stopped early (a migration that failed or left a sick guest).
    pub error: Option<String>,
    pub wall_s: f64,
    pub environment: Environment,
}

fn cgroup_name(host: &str) -> String {
    host.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

/// Runs the cluster until it is balanced (or no move helps, or `max_rounds`);
/// `report` is called with each round as it ends.
pub async fn run(platform: &Platform, env: &Environment, p: &ClusterProfile, boot_timeout: Duration, report: &mut dyn FnMut(&Round)) -> Result<ClusterRun> {
    let started = Instant::now();
    let site = Site::local(&platform.qemu, &platform.image, false)?;
    let mut groups = Vec::new();
    for h in &p.hosts {
        let g = CpuCgroup::create(&format!("host-{}", cgroup_name(&h.name))).with_context(|| format!("making the cgroup of host {:?}", h.name))?;
        g.set_cap(Some(h.capacity_percent))?;
        groups.push(g);
    }
    let mut placed: Vec<Placed> = Vec::new();
    let mut qemus = 0u32;
    for (hi, h) in p.hosts.iter().enumerate() {
        for v in &h.vms {
            qemus += 1;
            let name = format!("c{qemus}");
            let spec = GuestSpec::new(p.ram_mib, 1, env.accel)?.with_workload(v.workload);
            let (m, _) = site.boot(spec, &name, boot_timeout).await.with_context(|| format!("booting VM {}", v.name))?;
            groups[hi].add(m.pid())?;
            placed.push(Placed { name: v.name.clone(), host: hi, machine: m, moved_in: None });
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(p.warmup_s)).await;
    let scenario = Scenario { link: p.link.clone(), ..Scenario::default() };
    let opts = Options { rule: p.rule, margin: p.margin };
    let mut rounds = Vec::new();
    let mut migrations = 0;
    let mut balanced = false;
    let mut error = None;
    // One round more than moves allowed: the state after the last move is judged too.
    for round in 1..=p.max_rounds + 1 {
        let state = sample(p, &placed, round, &scenario).await;
        let decision = match balance::decide(&state, &opts) {
            Ok(d) => d,
            Err(e) => {
                error = Some(format!("round {round}: {e}"));
                break;
            }
        };
        balanced = decision.heavy.is_empty() && decision.light.is_empty();
        let mut r = Round { round, state, decision: decision.clone(), outcome: None, total_time_ms: None, downtime_ms: None, healthy: None };
        let mv = match decision.migration.clone() {
            Some(mv) if round <= p.max_rounds => mv,
            _ => {
                report(&r);
                rounds.push(r);
                break;
            }
        };
        // A failed move ends the run, but the rounds measured so far are kept.
        let moved = migrate(&site, &mut groups, &mut placed, &mut qemus, &mv, p, &scenario, round, &mut r).await;
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
    drop(groups);
    Ok(ClusterRun { profile: p.name.clone(), rounds, migrations, balanced, error, wall_s: started.elapsed().as_secs_f64(), environment: env.clone() })
}

/// Moves `mv.vm` into a fresh QEMU in the destination host's cgroup; fills in `r`.
#[allow(clippy::too_many_arguments)]
async fn migrate(
    site: &Site,
    groups: &mut [CpuCgroup],
    placed: &mut [Placed],
    qemus: &mut u32,
    mv: &balance::Move,
    p: &ClusterProfile,
    scenario: &Scenario,
    round: u32,
    r: &mut Round,
) -> Result<()> {
    let i = placed.iter().position(|g| g.name == mv.vm).context("the engine chose a VM that is not placed")?;
    let to = p.hosts.iter().position(|h| h.name == mv.to).context("the engine chose a host that does not exist")?;
    *qemus += 1;
    let name = format!("c{qemus}");
    let mut dst = site.start(placed[i].machine.spec, Role::Incoming, &name).await?;
    groups[to].add(dst.pid())?;
    let m = crate::migration::driver::drive(&mut placed[i].machine, &mut dst, scenario).await?;
    r.outcome = Some(m.outcome.label().to_string());
    r.total_time_ms = m.total_time_ms;
    r.downtime_ms = m.downtime_ms;
    r.healthy = Some(m.health.healthy);
    if m.outcome != Outcome::Completed || !m.health.healthy {
        bail!("migrating {} to {} did not leave a healthy guest there ({}; {})", mv.vm, mv.to, m.outcome.label(), m.health.detail);
    }
    let old = std::mem::replace(&mut placed[i].machine, dst);
    placed[i].host = to;
    placed[i].moved_in = Some(round);
    old.quit().await;
    Ok(())
}

/// Every host's and VM's CPU use over a window, as the engine's state, all in % of
/// the host's capacity: a VM's is its QEMU's use over its host's capacity, a host's
/// the sum of its VMs'. (A VM moving to a host of another capacity counts by the
/// source's share in the engine's estimate; the next round measures it afresh.)
/// With `dirty_rate_s`, each VM also gets the model's predicted migration.
async fn sample(p: &ClusterProfile, placed: &[Placed], round: u32, scenario: &Scenario) -> ClusterState {
    use crate::machine::dirty_rate;
    let before: Vec<_> = placed.iter().map(|g| usage::sample(&[g.machine.pid()])).collect();
    // The dirty rates are measured inside the CPU window, all guests at once.
    let mut pending = Vec::new();
    if p.dirty_rate_s > 0.0 {
        for g in placed {
            pending.push(dirty_rate::start(&g.machine, p.dirty_rate_s, Default::default()).await.ok());
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(p.window_s)).await;
    let used: Vec<f64> = placed
        .iter()
        .zip(&before)
        .map(|(g, a)| usage::CpuUsage::between(a, &usage::sample(&[g.machine.pid()])).map(|u| u.qemu_percent).unwrap_or(0.0))
        .collect();
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
    let hosts = p
        .hosts
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
                    cpu: *u / h.capacity_percent as f64 * 100.0,
                    predicted_migration_s: pred.as_ref().and_then(|p| p.total_s),
                    converges: pred.as_ref().map(|p| p.converges),
                })
                .collect();
            let cpu = vms.iter().map(|v| v.cpu).sum::<f64>();
            HostState { name: h.name.clone(), cpu, cores: None, vms }
        })
        .collect();
    let cooling_down = placed.iter().filter(|g| g.moved_in.is_some_and(|m| round - m <= p.cooldown_rounds)).map(|g| g.name.clone()).collect();
    ClusterState { hosts, cooling_down }
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
        big.hosts[0].capacity_percent = 100_000;
        assert!(big.check().unwrap_err().contains("more than this machine"));
        let mut one = p.clone();
        one.hosts.truncate(1);
        assert!(one.check().unwrap_err().contains("at least 2"));
        assert!(toml::from_str::<ClusterProfile>(&ok.replace("capacity_percent = 50\n[[host.vm]]", "capacity = 50\n[[host.vm]]")).is_err());
        assert_eq!(cgroup_name("Host 1"), "Host-1");
    }
}
