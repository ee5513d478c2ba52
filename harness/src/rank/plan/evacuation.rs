//! Evacuating a host: every VM off it, one by one and k at once over the link.

use super::frontier::LeftOut;
use super::{Options, PlanVm};
use crate::rank::predict;
use serde::Serialize;


/// Longest-processing-time-first scheduling: the jobs, longest first (equal ones
/// in their given order), each go to the slot that is free soonest (on a tie the
/// lowest). Returns each slot's jobs (indices into `times`) and the makespan, the
/// busiest slot's total. `k` = 0 is taken as 1.
pub fn longest_first(times: &[f64], k: usize) -> (Vec<Vec<usize>>, f64) {
    let k = k.max(1);
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|&a, &b| times[b].total_cmp(&times[a]).then(a.cmp(&b)));
    let mut slots: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut load = vec![0.0f64; k];
    for i in order {
        let s = (0..k).min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b))).expect("k ≥ 1");
        slots[s].push(i);
        load[s] += times[i];
    }
    let makespan = load.iter().copied().fold(0.0, f64::max);
    (slots, makespan)
}

/// A VM's migration in an evacuation.
#[derive(Debug, Clone, Serialize)]
pub struct VmTime {
    pub vm: String,
    /// "precopy", or "postcopy" when pre-copy would not converge at this share.
    pub strategy: String,
    pub total_s: f64,
    /// Why pre-copy was not used.
    pub precopy_fails: Option<String>,
}

/// All VMs off the host with `k` migrations at once.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub k: usize,
    /// Each migration's bandwidth: link/k.
    pub share_bytes_per_s: f64,
    pub vms: Vec<VmTime>,
    /// The VMs each slot migrates, in order.
    pub slots: Vec<Vec<String>>,
    pub makespan_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkEvacuation {
    pub link: String,
    pub bytes_per_s: f64,
    /// k = 1: the makespan is the sum of the VMs' times.
    pub one_by_one: Schedule,
    /// One schedule per `--parallel` value.
    pub parallel: Vec<Schedule>,
}

/// The measured side of one-by-one.
#[derive(Debug, Clone, Serialize)]
pub struct MeasuredEvacuation {
    /// The sum of the VMs' mean measured total times, seconds.
    pub total_s: f64,
    pub vms: usize,
    pub of: usize,
    /// The links they ran at.
    pub links: Vec<String>,
    /// The model's one-by-one time for the same VMs at the link they ran at (when
    /// they all ran at one, and each has a dirty rate for the model).
    pub model_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evacuation {
    pub links: Vec<LinkEvacuation>,
    pub measured: Option<MeasuredEvacuation>,
    pub simplification: String,
    pub left_out: Vec<LeftOut>,
}

pub const SIMPLIFICATION: &str = "k parallel migrations share the link equally: each is predicted at link/k for its whole run, even once fewer than k are left \
     (a real link would give the last ones more, so the makespan is pessimistic for the tail); the VMs are scheduled longest first onto k slots";

/// The evacuation of `vms` (each with its dirty rate) over a link of `bytes_per_s`
/// with `k` migrations at once; each at its own downtime and time limit.
pub fn schedule(vms: &[(&PlanVm, f64)], bytes_per_s: f64, k: usize) -> Schedule {
    let k = k.max(1);
    let share = bytes_per_s / k as f64;
    let times: Vec<VmTime> = vms
        .iter()
        .map(|(vm, dirty)| {
            let (_, pre) = vm.precopy(*dirty, share, vm.scenario.downtime_limit_ms as f64 / 1000.0);
            match pre.total_s {
                Some(t) if pre.converges => VmTime { vm: vm.label.clone(), strategy: pre.strategy, total_s: t, precopy_fails: None },
                _ => {
                    let (v, l) = vm.inputs(*dirty, share, vm.scenario.downtime_limit_ms as f64 / 1000.0);
                    let post = predict::postcopy(&v, &l);
                    VmTime { vm: vm.label.clone(), strategy: post.strategy, total_s: post.total_s.unwrap_or(f64::INFINITY), precopy_fails: Some(pre.reason) }
                }
            }
        })
        .collect();
    let (slots, makespan) = longest_first(&times.iter().map(|t| t.total_s).collect::<Vec<_>>(), k);
    let slots = slots.into_iter().map(|s| s.into_iter().map(|i| times[i].vm.clone()).collect()).collect();
    Schedule { k, share_bytes_per_s: share, vms: times, slots, makespan_s: makespan }
}

pub(super) fn evacuation(vms: &[(&PlanVm, f64)], all: &[PlanVm], opts: &Options) -> Evacuation {
    let links = opts
        .links
        .iter()
        .map(|link| {
            let b = link.max_bandwidth() as f64;
            LinkEvacuation { link: link.to_string(), bytes_per_s: b, one_by_one: schedule(vms, b, 1), parallel: opts.parallel.iter().map(|&k| schedule(vms, b, k)).collect() }
        })
        .collect();
    let measured: Vec<&PlanVm> = all.iter().filter(|v| v.measured_total_ms.is_some()).collect();
    let measured = (!measured.is_empty()).then(|| {
        let mut links: Vec<String> = measured.iter().map(|v| v.scenario.link.to_string()).collect();
        links.sort();
        links.dedup();
        // The model over exactly these VMs, at the bandwidth they had.
        let modelled: Vec<(&PlanVm, f64)> =
            vms.iter().filter(|(v, _)| measured.iter().any(|m| std::ptr::eq(*m, *v))).map(|(v, d)| (*v, *d)).collect();
        let model_s = (links.len() == 1 && modelled.len() == measured.len())
            .then(|| schedule(&modelled, measured[0].scenario.link.max_bandwidth() as f64, 1).makespan_s);
        MeasuredEvacuation { total_s: measured.iter().filter_map(|v| v.measured_total_ms).sum::<f64>() / 1000.0, vms: measured.len(), of: all.len(), links, model_s }
    });
    Evacuation { links, measured, simplification: SIMPLIFICATION.into(), left_out: Vec::new() }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::scenario::Scenario;
    use crate::rank::plan::testing::*;

    #[test]
    fn longest_first_on_two_slots() {
        // 5 → A; 4 → B; 3 → B (4 < 5): 7; 3 → A (5 < 7): 8. Makespan 8.
        let (slots, makespan) = longest_first(&[3.0, 5.0, 3.0, 4.0], 2);
        assert_eq!(makespan, 8.0);
        assert_eq!(slots, vec![vec![1, 2], vec![3, 0]]);
        // One slot: the sum; more slots than jobs: the longest job.
        assert_eq!(longest_first(&[3.0, 5.0, 3.0, 4.0], 1).1, 15.0);
        let (slots, makespan) = longest_first(&[3.0, 5.0], 4);
        assert_eq!((makespan, slots.len()), (5.0, 4));
        assert!(slots[2].is_empty() && slots[3].is_empty());
        assert_eq!(longest_first(&[], 3).1, 0.0);
        assert_eq!(longest_first(&[2.0, 1.0], 0).1, 3.0);
    }

    #[test]
    fn evacuation_falls_back_to_postcopy_for_a_vm_that_cannot_converge_at_its_share() {
        // 100 MiB/s, 2 at once: 50 MiB/s each.
        // "idle": 100 MiB in use, dirty 0: 100/50 = 2 s, then 1 MiB of state: 0.02 s: 2.02 s.
        // "hot": 512 MiB, dirty 60 MiB/s > 50 MiB/s: pre-copy never converges;
        // post-copy sends its 200 MiB once after the 1 MiB state: 0.02 + 4 = 4.02 s.
        // Alone at 100 MiB/s it converges: 200/100 = 2 s; 60 × 2 = 120 MiB, 1.2 s;
        // 72 MiB, 0.72; 43.2, 0.432; 25.92 MiB, 0.2592 s ≤ 0.3: stop-and-copy
        // (25.92 + 1) / 100 = 0.2692 s; total 2 + 1.2 + 0.72 + 0.432 + 0.2692 = 4.6212 s.
        let vms = [vm("idle", 256, 0.0, Some(100)), vm("hot", 512, 60.0, Some(200))];
        let with: Vec<(&PlanVm, f64)> = vms.iter().map(|v| (v, *v.dirty_bytes_per_s.as_ref().unwrap())).collect();
        let two = schedule(&with, 100.0 * MB, 2);
        assert!(close(two.share_bytes_per_s, 50.0 * MB, 1e-6));
        assert_eq!(two.vms[0].strategy, "precopy");
        assert!(close(two.vms[0].total_s, 2.02, 1e-9), "{:?}", two.vms[0]);
        assert_eq!(two.vms[1].strategy, "postcopy");
        assert!(close(two.vms[1].total_s, 4.02, 1e-9), "{:?}", two.vms[1]);
        assert!(two.vms[1].precopy_fails.as_ref().unwrap().contains("ratio 1.20"), "{:?}", two.vms[1]);
        assert!(close(two.makespan_s, 4.02, 1e-9));
        assert_eq!(two.slots, vec![vec!["hot".to_string()], vec!["idle".to_string()]]);
        let one = schedule(&with, 100.0 * MB, 1);
        assert_eq!(one.vms[1].strategy, "precopy");
        // idle at 100 MiB/s: 1 + 0.01 = 1.01 s; plus hot's 4.6212 s.
        assert!(close(one.vms[1].total_s, 4.6212, 1e-9), "{:?}", one.vms[1]);
        assert!(close(one.makespan_s, 1.01 + 4.6212, 1e-9), "{}", one.makespan_s);
        // A pre-copy past the time limit falls back too.
        let slow = PlanVm { scenario: Scenario { timeout_s: 3.0, ..vms[1].scenario.clone() }, ..vms[1].clone() };
        let s = schedule(&[(&slow, 60.0 * MB)], 100.0 * MB, 1);
        assert_eq!(s.vms[0].strategy, "postcopy");
        assert!(s.vms[0].precopy_fails.as_ref().unwrap().contains("time limit"), "{:?}", s.vms[0]);
    }
}
