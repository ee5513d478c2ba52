//! The load-balancing policy engine of Chandak et al. ("Dynamic Load Balancing of
//! Virtual Machines using QEMU-KVM"), as pure logic over a cluster state, with the
//! guards a production balancer needs on top.
//!
//! The paper's five phases (`Rule::Paper`, exactly as `../shared/REPRODUCE.md` §B):
//! 1. Load evaluation: `threshold` = mean host CPU; `mean` = (min + max) / 2;
//!    `diff` = |threshold − mean|; the moderate band is threshold ± diff if
//!    diff > 10, else threshold ± 10. Below the band a host is light, above heavy.
//! 2. Profitability: migrate only if some host is heavy and some host is light.
//! 3. Work transfer vector: threshold − (the light host's CPU).
//! 4. VM selection: on the heavy host, the VM whose CPU is closest to the vector.
//! 5. Migration: that VM moves from the heavy host to the light one.
//!
//! When several hosts are heavy (or light), the engine pairs the most loaded heavy
//! host with the least loaded light one: the pair furthest apart, whose move does
//! the most for the spread. Ties go to the first host in the state's order.
//!
//! Beyond the paper (`Rule::Guarded` and the rules built on it): every candidate is
//! judged on the state after its move, estimated from VM shares (a VM using x % of
//! one core adds x / cores % to a host). A move is vetoed if it leaves the
//! destination heavy, lowers the spread (σ of host CPU) by less than a margin, is
//! predicted not to converge, or moves a VM still in its cooldown (against ping-pong).
//! If every candidate is vetoed the answer is an explicit "no beneficial migration".

use serde::{Deserialize, Serialize};
use std::fmt;

/// A cluster as the policy engine sees it (`migbench balance --state FILE.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterState {
    pub hosts: Vec<HostState>,
    /// VMs moved recently, still in their cooldown (the live mode fills this in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cooling_down: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostState {
    pub name: String,
    /// The host's CPU use, % (averaged over the sampling window).
    pub cpu: f64,
    /// Cores, to estimate what a VM's share does to the host (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<f64>,
    #[serde(default)]
    pub vms: Vec<VmState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmState {
    pub name: String,
    /// The VM's CPU use, % of one core.
    pub cpu: f64,
    /// What migrating it is predicted to cost, seconds (from the pre-copy model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_migration_s: Option<f64>,
    /// Whether the model predicts its pre-copy converges at this link speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converges: Option<bool>,
}

/// How the engine chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The paper's five phases, nothing more.
    Paper,
    /// The paper's choice, judged on the state after the move, with vetoes and cooldown.
    #[default]
    Guarded,
    /// Guarded; among candidates within `NEAR_TIE` points of the best distance, the
    /// one that relieves the most CPU per predicted second of migration.
    CostAware,
    /// The lightest VM on the heavy host (a common naive rule), guarded.
    Lightest,
    /// Any VM to any host: the move that lowers σ of host CPU the most, guarded.
    MinStddev,
}

impl Rule {
    pub const ALL: [Rule; 5] = [Rule::Paper, Rule::Guarded, Rule::CostAware, Rule::Lightest, Rule::MinStddev];
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Paper => "paper",
            Rule::Guarded => "guarded",
            Rule::CostAware => "cost-aware",
            Rule::Lightest => "lightest",
            Rule::MinStddev => "min-stddev",
        })
    }
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Rule, String> {
        Rule::ALL
            .into_iter()
            .find(|r| r.to_string() == s)
            .ok_or_else(|| format!("rule {s:?} is not one of paper, guarded, cost-aware, lightest, min-stddev"))
    }
}

/// Candidates whose |CPU − vector| is within this many points of the best are a near-tie.
pub const NEAR_TIE: f64 = 5.0;

/// The engine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Options {
    pub rule: Rule,
    /// A move must lower σ of host CPU by at least this many points.
    pub margin: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options { rule: Rule::Guarded, margin: 1.0 }
    }
}

/// One migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub vm: String,
    pub from: String,
    pub to: String,
}

/// "A2: Host 3 → Host 2"
impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.vm, self.from, self.to)
    }
}

/// A candidate VM and the engine's verdict on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub vm: String,
    pub from: String,
    pub to: String,
    pub cpu: f64,
    /// |CPU − work transfer vector| (the paper's selection key).
    pub distance: Option<f64>,
    pub predicted_migration_s: Option<f64>,
    /// Host CPU after the move, estimated from VM shares.
    pub from_after: f64,
    pub to_after: f64,
    pub stddev_after: f64,
    /// None if acceptable, else why it was rejected.
    pub rejected: Option<String>,
}

/// The engine's answer, with its workings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub rule: Rule,
    pub threshold: f64,
    pub band: [f64; 2],
    pub light: Vec<String>,
    pub heavy: Vec<String>,
    pub moderate: Vec<String>,
    pub migration: Option<Move>,
    /// In words: the pair chosen and why, or why nothing moves.
    pub reason: String,
    pub vector: Option<f64>,
    pub candidates: Vec<Candidate>,
    pub stddev_before: f64,
    pub stddev_after: f64,
    /// The chosen move's predicted migration time, if known.
    pub predicted_migration_s: Option<f64>,
}

/// Checks a state: names, finite values, something to balance.
pub fn check(state: &ClusterState) -> Result<(), String> {
    if state.hosts.len() < 2 {
        return Err(format!("the state has {} host(s): balancing needs at least 2", state.hosts.len()));
    }
    let mut names = std::collections::HashSet::new();
    for h in &state.hosts {
        if !(h.cpu.is_finite() && h.cpu >= 0.0) {
            return Err(format!("host {:?}: cpu = {} is not a usage in % (0 or more)", h.name, h.cpu));
        }
        if h.cores.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return Err(format!("host {:?}: cores must be above 0", h.name));
        }
        if !names.insert(format!("host:{}", h.name)) {
            return Err(format!("host {:?} appears twice", h.name));
        }
        for v in &h.vms {
            if !(v.cpu.is_finite() && v.cpu >= 0.0) {
                return Err(format!("VM {:?} on {:?}: cpu = {} is not a usage in % (0 or more)", v.name, h.name, v.cpu));
            }
            if !names.insert(format!("vm:{}", v.name)) {
                return Err(format!("VM {:?} appears twice", v.name));
            }
        }
    }
    Ok(())
}

/// Phase 1: the threshold and the moderate band.
pub fn band(cpus: &[f64]) -> (f64, [f64; 2]) {
    let n = cpus.len().max(1) as f64;
    let threshold = cpus.iter().sum::<f64>() / n;
    let (min, max) = cpus.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    let diff = (threshold - (min + max) / 2.0).abs();
    let half = if diff > 10.0 { diff } else { 10.0 };
    (threshold, [threshold - half, threshold + half])
}

fn stddev(cpus: &[f64]) -> f64 {
    let n = cpus.len().max(1) as f64;
    let mean = cpus.iter().sum::<f64>() / n;
    (cpus.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// The index of the most (`hottest`) or least loaded host among `names` (the first
/// in order on a tie); `names` is not empty.
fn extreme_host(state: &ClusterState, names: &[String], hottest: bool) -> usize {
    let mut best: Option<usize> = None;
    for (i, h) in state.hosts.iter().enumerate() {
        if !names.contains(&h.name) {
            continue;
        }
        let better = match best {
            None => true,
            Some(b) => if hottest { h.cpu > state.hosts[b].cpu } else { h.cpu < state.hosts[b].cpu },
        };
        if better {
            best = Some(i);
        }
    }
    best.expect("the list is not empty")
}

/// The moves a rule weighs, as (from host, VM, to host): the heavy host's VMs to
/// the light host, or (min-stddev) every VM to every other host.
fn candidate_moves(state: &ClusterState, rule: Rule, heavy: usize, light: usize) -> Vec<(usize, usize, usize)> {
    match rule {
        Rule::MinStddev => {
            let mut all = Vec::new();
            for (f, h) in state.hosts.iter().enumerate() {
                for v in 0..h.vms.len() {
                    for t in 0..state.hosts.len() {
                        if t != f {
                            all.push((f, v, t));
                        }
                    }
                }
            }
            all
        }
        Rule::Paper | Rule::Guarded | Rule::CostAware | Rule::Lightest => (0..state.hosts[heavy].vms.len()).map(|v| (heavy, v, light)).collect(),
    }
}

/// Phase 4's order of the candidates, and the other rules' orders.
fn order(cands: &mut [Candidate], rule: Rule) {
    match rule {
        Rule::Paper | Rule::Guarded | Rule::CostAware => cands.sort_by(|a, b| a.distance.unwrap_or(f64::MAX).total_cmp(&b.distance.unwrap_or(f64::MAX))),
        Rule::Lightest => cands.sort_by(|a, b| a.cpu.total_cmp(&b.cpu)),
        Rule::MinStddev => cands.sort_by(|a, b| a.stddev_after.total_cmp(&b.stddev_after)),
    }
}

/// Decides one round for `state`.
pub fn decide(state: &ClusterState, opts: &Options) -> Result<Decision, String> {
    check(state)?;
    let cpus: Vec<f64> = state.hosts.iter().map(|h| h.cpu).collect();
    let (threshold, band) = band(&cpus);
    let names = |pred: &dyn Fn(f64) -> bool| -> Vec<String> { state.hosts.iter().filter(|h| pred(h.cpu)).map(|h| h.name.clone()).collect() };
    let light = names(&|c| c < band[0]);
    let heavy = names(&|c| c > band[1]);
    let moderate = names(&|c| c >= band[0] && c <= band[1]);
    let stddev_before = stddev(&cpus);
    let mut d = Decision {
        rule: opts.rule,
        threshold,
        band,
        light,
        heavy,
        moderate,
        migration: None,
        reason: String::new(),
        vector: None,
        candidates: Vec::new(),
        stddev_before,
        stddev_after: stddev_before,
        predicted_migration_s: None,
    };
    // Phase 2: profitability.
    if d.heavy.is_empty() || d.light.is_empty() {
        d.reason = if d.heavy.is_empty() && d.light.is_empty() {
            "balanced: every host is in the moderate band".into()
        } else if d.heavy.is_empty() {
            format!("no heavy host (light: {}), so no migration is profitable", d.light.join(", "))
        } else {
            format!("no light host (heavy: {}), so no migration is profitable", d.heavy.join(", "))
        };
        return Ok(d);
    }
    // The most loaded heavy host and the least loaded light one.
    let (hi, li) = (extreme_host(state, &d.heavy, true), extreme_host(state, &d.light, false));
    let (heavy, light) = (&state.hosts[hi], &state.hosts[li]);
    // Phase 3: the work transfer vector.
    let vector = threshold - light.cpu;
    d.vector = Some(vector);
    let pair = format!(
        "{} is the most loaded heavy host ({:.2} > {:.2}) and {} the least loaded light one ({:.2} < {:.2}); vector = {:.2} − {:.2} = {:.2}",
        heavy.name, heavy.cpu, band[1], light.name, light.cpu, band[0], threshold, light.cpu, vector
    );
    let moves = candidate_moves(state, opts.rule, hi, li);
    let mut cands: Vec<Candidate> = moves.iter().map(|&(f, v, t)| candidate(state, f, v, t, (f == hi && t == li).then_some(vector), band)).collect();
    order(&mut cands, opts.rule);
    if cands.is_empty() {
        d.reason = format!("{pair}; but {} has no VM to move", heavy.name);
        return Ok(d);
    }
    if opts.rule == Rule::Paper {
        let best = &cands[0];
        d.reason = format!("{pair}; {} is closest to the vector (|{:.2} − {:.2}| = {:.2})", best.vm, best.cpu, vector, best.distance.unwrap_or(0.0));
        choose(&mut d, cands, 0);
        return Ok(d);
    }
    for c in &mut cands {
        c.rejected = veto(c, state, band, stddev_before, opts.margin);
    }
    let acceptable: Vec<usize> = (0..cands.len()).filter(|&i| cands[i].rejected.is_none()).collect();
    let Some(&first) = acceptable.first() else {
        d.reason = format!("{pair}; no beneficial migration: every candidate is vetoed (see candidates)");
        d.candidates = cands;
        return Ok(d);
    };
    let chosen = if opts.rule == Rule::CostAware {
        // Near-ties on distance are broken by CPU relieved per predicted second.
        let best = cands[first].distance.unwrap_or(f64::MAX);
        let per_s = |c: &Candidate| c.predicted_migration_s.filter(|s| *s > 0.0).map(|s| c.cpu / s);
        acceptable
            .iter()
            .copied()
            .filter(|&i| cands[i].distance.unwrap_or(f64::MAX) <= best + NEAR_TIE)
            .max_by(|&a, &b| per_s(&cands[a]).unwrap_or(-1.0).total_cmp(&per_s(&cands[b]).unwrap_or(-1.0)).then(b.cmp(&a)))
            .unwrap_or(first)
    } else {
        first
    };
    let c = &cands[chosen];
    d.reason = match opts.rule {
        Rule::Guarded => format!("{pair}; {} is the closest acceptable VM (distance {:.2})", c.vm, c.distance.unwrap_or(0.0)),
        Rule::CostAware if c.predicted_migration_s.is_some() => format!(
            "{pair}; {} relieves the most CPU per predicted second among the near-ties (within {NEAR_TIE} of the best distance)",
            c.vm
        ),
        Rule::CostAware => format!("{pair}; no predicted migration costs, so {} is the closest acceptable VM (distance {:.2})", c.vm, c.distance.unwrap_or(0.0)),
        Rule::Lightest => format!("{pair}; {} is the lightest acceptable VM on {} ({:.2} %)", c.vm, heavy.name, c.cpu),
        Rule::MinStddev => format!("{pair}; moving {} from {} to {} lowers σ of host CPU the most ({:.2} → {:.2})", c.vm, c.from, c.to, stddev_before, c.stddev_after),
        Rule::Paper => unreachable!("handled above"),
    };
    choose(&mut d, cands, chosen);
    Ok(d)
}

fn choose(d: &mut Decision, cands: Vec<Candidate>, i: usize) {
    let c = &cands[i];
    d.migration = Some(Move { vm: c.vm.clone(), from: c.from.clone(), to: c.to.clone() });
    d.stddev_after = c.stddev_after;
    d.predicted_migration_s = c.predicted_migration_s;
    d.candidates = cands;
}

/// What moving VM `v` of host `f` to host `t` does, estimated from VM shares.
fn candidate(state: &ClusterState, f: usize, v: usize, t: usize, vector: Option<f64>, _band: [f64; 2]) -> Candidate {
    let (from, to) = (&state.hosts[f], &state.hosts[t]);
    let vm = &from.vms[v];
    let share = |h: &HostState| vm.cpu / h.cores.unwrap_or(1.0);
    let from_after = (from.cpu - share(from)).max(0.0);
    let to_after = to.cpu + share(to);
    let after: Vec<f64> = state
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| if i == f { from_after } else if i == t { to_after } else { h.cpu })
        .collect();
    Candidate {
        vm: vm.name.clone(),
        from: from.name.clone(),
        to: to.name.clone(),
        cpu: vm.cpu,
        distance: vector.map(|x| (vm.cpu - x).abs()),
        predicted_migration_s: vm.predicted_migration_s,
        from_after,
        to_after,
        stddev_after: stddev(&after),
        rejected: None,
    }
}

/// Why a move is not acceptable, if it is not.
fn veto(c: &Candidate, state: &ClusterState, band: [f64; 2], stddev_before: f64, margin: f64) -> Option<String> {
    if state.cooling_down.contains(&c.vm) {
        return Some(format!("{} moved recently and is cooling down", c.vm));
    }
    let vm = state.hosts.iter().flat_map(|h| &h.vms).find(|v| v.name == c.vm);
    if vm.and_then(|v| v.converges) == Some(false) {
        return Some(format!("{}'s migration is predicted not to converge at this link speed", c.vm));
    }
    if c.to_after > band[1] {
        return Some(format!("{} would be heavy afterwards ({:.2} > {:.2})", c.to, c.to_after, band[1]));
    }
    let gain = stddev_before - c.stddev_after;
    if gain < margin {
        return Some(format!("σ of host CPU would fall by {gain:.2}, less than the {margin:.2} margin"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, cpu: f64, vms: &[(&str, f64)]) -> HostState {
        HostState { name: name.into(), cpu, cores: None, vms: vms.iter().map(|(n, c)| VmState { name: (*n).into(), cpu: *c, predicted_migration_s: None, converges: None }).collect() }
    }

    fn state(hosts: Vec<HostState>) -> ClusterState {
        ClusterState { hosts, cooling_down: vec![] }
    }

    /// Chandak et al., Tables 1–4 (CPU %; their hosts had 4 cores), as shipped in
    /// `profiles/chandak/tableN.json` for `migbench balance --dry-run --state`.
    pub fn paper_tables() -> Vec<ClusterState> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/chandak");
        (1..=4)
            .map(|n| {
                let path = dir.join(format!("table{n}.json"));
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            })
            .collect()
    }

    fn mv(vm: &str, from: &str, to: &str) -> Option<Move> {
        Some(Move { vm: vm.into(), from: from.into(), to: to.into() })
    }

    #[test]
    fn the_papers_four_rounds() {
        let t = paper_tables();
        let paper = Options { rule: Rule::Paper, margin: 0.0 };
        // Table 1: threshold (42.4 + 19.07 + 62.18) / 3 = 41.2167; mean (19.07 + 62.18) / 2 =
        // 40.625; diff 0.59 ≤ 10, so the band is 41.22 ± 10. Vector 41.2167 − 19.07 = 22.15;
        // A2 (24.8) is 2.65 from it.
        let d = decide(&t[0], &paper).unwrap();
        assert!((d.threshold - 41.21667).abs() < 1e-4 && (d.band[0] - 31.21667).abs() < 1e-4 && (d.band[1] - 51.21667).abs() < 1e-4);
        assert_eq!((d.light.clone(), d.heavy.clone(), d.moderate.clone()), (vec!["Host 2".to_string()], vec!["Host 3".to_string()], vec!["Host 1".to_string()]));
        assert!((d.vector.unwrap() - 22.14667).abs() < 1e-4);
        assert_eq!(d.migration, mv("A2", "Host 3", "Host 2"));
        // Table 2: threshold 41.1067, band [31.11, 51.11]; Host 2 heavy, Host 3 light;
        // vector 12.11; K2 (7.0) is 5.11 away, A2 (23.4) 11.29, K3 (24.5) 12.39.
        assert_eq!(decide(&t[1], &paper).unwrap().migration, mv("K2", "Host 2", "Host 3"));
        // Table 3: threshold 40.16, band [30.16, 50.16]; vector 12.85; K3 (25.1) is 12.25 away.
        assert_eq!(decide(&t[2], &paper).unwrap().migration, mv("K3", "Host 2", "Host 3"));
        // Table 4: threshold 38.57, band [28.57, 48.57]: every host is moderate.
        let d = decide(&t[3], &paper).unwrap();
        assert_eq!(d.migration, None);
        assert!(d.reason.contains("balanced"), "{}", d.reason);
        assert_eq!(d.moderate.len(), 3);
    }

    #[test]
    fn the_guarded_rule_agrees_with_the_paper_on_its_tables() {
        for (i, want) in [mv("A2", "Host 3", "Host 2"), mv("K2", "Host 2", "Host 3"), mv("K3", "Host 2", "Host 3"), None].into_iter().enumerate() {
            let d = decide(&paper_tables()[i], &Options::default()).unwrap();
            assert_eq!(d.migration, want, "table {}: {}", i + 1, d.reason);
        }
    }

    #[test]
    fn band_edges() {
        // diff exactly 10 is not above 10: the band is threshold ± 10 (the same width here).
        // 0, 0, 60: threshold 20, mean 30, diff 10.
        let (t, b) = band(&[0.0, 0.0, 60.0]);
        assert_eq!((t, b), (20.0, [10.0, 30.0]));
        // diff above 10 widens it: 0, 0, 0, 100: threshold 25, mean 50, diff 25.
        assert_eq!(band(&[0.0, 0.0, 0.0, 100.0]), (25.0, [0.0, 50.0]));
        // All hosts equal: balanced.
        let s = state(vec![host("a", 50.0, &[("x", 50.0)]), host("b", 50.0, &[])]);
        let d = decide(&s, &Options::default()).unwrap();
        assert!(d.migration.is_none() && d.reason.contains("balanced"));
        // A host exactly on the band's edge is moderate: 20, 30, 40 gives 30 ± 10.
        let s = state(vec![host("a", 20.0, &[]), host("b", 30.0, &[]), host("c", 40.0, &[("x", 5.0)])]);
        let d = decide(&s, &Options { rule: Rule::Paper, margin: 0.0 }).unwrap();
        assert_eq!(d.moderate.len(), 3);
        assert!(d.migration.is_none());
    }

    #[test]
    fn no_light_host_means_no_move() {
        // 70, 70, 95: threshold 78.33, mean 82.5, diff 4.17, band 68.33…88.33: none light.
        let s = state(vec![host("a", 70.0, &[]), host("b", 70.0, &[]), host("c", 95.0, &[("x", 30.0)])]);
        let d = decide(&s, &Options { rule: Rule::Paper, margin: 0.0 }).unwrap();
        assert_eq!(d.heavy, ["c"]);
        assert!(d.light.is_empty() && d.migration.is_none() && d.reason.contains("no light host"), "{d:?}");
    }

    #[test]
    fn two_equally_close_vms_go_in_the_states_order() {
        // Vector = 40 − 10 = 30 (threshold 40 = mean of 10, 40, 70); x (25) and y (35) are both 5 away.
        let s = state(vec![host("a", 10.0, &[]), host("b", 40.0, &[]), host("c", 70.0, &[("x", 25.0), ("y", 35.0)])]);
        let d = decide(&s, &Options { rule: Rule::Paper, margin: 0.0 }).unwrap();
        assert_eq!(d.migration, mv("x", "c", "a"));
    }

    #[test]
    fn the_most_loaded_heavy_host_and_least_loaded_light_host_are_paired() {
        // Five hosts, two heavy (80, 90) and two light (5, 10): 90 → 5.
        let s = state(vec![
            host("l1", 10.0, &[]),
            host("h1", 80.0, &[("p", 20.0)]),
            host("m", 45.0, &[]),
            host("h2", 90.0, &[("q", 20.0)]),
            host("l2", 5.0, &[]),
        ]);
        let d = decide(&s, &Options { rule: Rule::Paper, margin: 0.0 }).unwrap();
        assert_eq!(d.migration, mv("q", "h2", "l2"));
        assert!(d.reason.contains("h2 is the most loaded heavy host"), "{}", d.reason);
    }

    #[test]
    fn vetoes_explain_themselves_and_can_leave_no_move() {
        // One VM of 95 % on a 1-core host: moving it makes the light host heavy.
        let s = state(vec![host("a", 5.0, &[]), host("b", 50.0, &[]), host("c", 95.0, &[("big", 95.0)])]);
        let paper = decide(&s, &Options { rule: Rule::Paper, margin: 0.0 }).unwrap();
        assert_eq!(paper.migration, mv("big", "c", "a"));
        let d = decide(&s, &Options::default()).unwrap();
        assert_eq!(d.migration, None);
        assert!(d.reason.contains("no beneficial migration"), "{}", d.reason);
        assert!(d.candidates[0].rejected.as_deref().unwrap().contains("would be heavy"), "{:?}", d.candidates);
        // Cooldown, and a predicted non-convergence.
        let mut s = state(vec![host("a", 5.0, &[]), host("b", 50.0, &[]), host("c", 95.0, &[("x", 40.0), ("y", 42.0)])]);
        s.cooling_down = vec!["x".into()];
        s.hosts[2].vms[1].converges = Some(false);
        let d = decide(&s, &Options::default()).unwrap();
        assert_eq!(d.migration, None);
        let why: Vec<&str> = d.candidates.iter().filter_map(|c| c.rejected.as_deref()).collect();
        assert!(why.iter().any(|w| w.contains("cooling down")) && why.iter().any(|w| w.contains("not to converge")), "{why:?}");
        // A move that barely changes the spread is vetoed by the margin.
        let s = state(vec![host("a", 29.0, &[]), host("b", 40.0, &[]), host("c", 51.5, &[("tiny", 0.1)])]);
        let d = decide(&s, &Options { rule: Rule::Guarded, margin: 1.0 }).unwrap();
        assert!(d.heavy == ["c"] && d.light == ["a"], "{d:?}");
        assert!(d.migration.is_none() && d.candidates[0].rejected.as_deref().unwrap().contains("margin"), "{:?}", d.candidates);
    }

    #[test]
    fn cost_aware_breaks_near_ties_by_cpu_per_second() {
        // Vector 30 (as above). x (28) is 2 away but slow to move; y (33) is 3 away and quick.
        let mut s = state(vec![host("a", 10.0, &[]), host("b", 40.0, &[]), host("c", 70.0, &[("x", 28.0), ("y", 33.0)])]);
        s.hosts[2].vms[0].predicted_migration_s = Some(60.0);
        s.hosts[2].vms[1].predicted_migration_s = Some(5.0);
        for h in &mut s.hosts {
            h.cores = Some(4.0);
        }
        assert_eq!(decide(&s, &Options { rule: Rule::Guarded, margin: 0.0 }).unwrap().migration, mv("x", "c", "a"));
        let d = decide(&s, &Options { rule: Rule::CostAware, margin: 0.0 }).unwrap();
        assert_eq!(d.migration, mv("y", "c", "a"));
        assert_eq!(d.predicted_migration_s, Some(5.0));
    }

    #[test]
    fn lightest_and_min_stddev_rules() {
        let s = state(vec![host("a", 10.0, &[("u", 10.0)]), host("b", 40.0, &[]), host("c", 70.0, &[("x", 25.0), ("y", 30.0), ("z", 2.0)])]);
        let o = |rule| Options { rule, margin: 0.0 };
        // z (2.0) is lightest.
        assert_eq!(decide(&s, &o(Rule::Lightest)).unwrap().migration, mv("z", "c", "a"));
        // Moving y (30) from c to a gives 40, 40, 40: σ 0, the lowest of all moves.
        let d = decide(&s, &o(Rule::MinStddev)).unwrap();
        assert_eq!(d.migration, mv("y", "c", "a"));
        assert!(d.stddev_after.abs() < 1e-9, "{}", d.stddev_after);
        assert!(d.stddev_after < d.stddev_before);
    }

    #[test]
    fn bad_states_are_refused_with_the_input_named() {
        assert!(check(&state(vec![host("a", 1.0, &[])])).unwrap_err().contains("at least 2"));
        assert!(check(&state(vec![host("a", f64::NAN, &[]), host("b", 1.0, &[])])).unwrap_err().contains("\"a\""));
        assert!(check(&state(vec![host("a", 1.0, &[("v", 1.0)]), host("b", 1.0, &[("v", 2.0)])])).unwrap_err().contains("twice"));
        assert!(check(&state(vec![host("a", 1.0, &[("v", -1.0)]), host("b", 1.0, &[])])).unwrap_err().contains("\"v\""));
        assert!("random".parse::<Rule>().unwrap_err().contains("cost-aware"));
        let json = r#"{"hosts":[{"name":"Host 1","cpu":42.4,"vms":[{"name":"S1","cpu":46.5}]},{"name":"Host 2","cpu":19.07,"vms":[]}]}"#;
        let s: ClusterState = serde_json::from_str(json).unwrap();
        assert_eq!(s.hosts[0].vms[0].name, "S1");
        assert!(serde_json::from_str::<ClusterState>(r#"{"hosts":[],"extra":1}"#).unwrap_err().to_string().contains("extra"));
    }
}
