//! Shreya et al., "Performance Analysis during Live Migration" (2013): their
//! numbers beside ours. They ran Xen 2013 on a 4-core host; we run QEMU (KVM where
//! it works, TCG otherwise) on this machine, so what can match is the *shape*: the
//! trend against the cap, the saturation, the decision. Each section says in one
//! line whether it does.

use crate::summary::cell_runs::CellRuns;
use crate::stats::Stats;
use crate::record::RunRecord;
use crate::rank::{self, Candidate};
use tabled::builder::Builder;
use tabled::settings::Style;

/// The caps of their Tables 1–3, % of one physical CPU.
const CAPS: [u32; 8] = [25, 50, 75, 100, 125, 150, 175, 200];

/// Their Tables 1, 2, 3 (Livermore, 1 vCPU; 512 MB, 1 GB, 2 GB): the average of 10
/// trials of CPU usage, % of their 4-core host, per cap in `CAPS`.
const TABLES_1_TO_3: [(u32, [f64; 8]); 3] = [
    (512, [6.235, 12.502, 18.739, 24.805, 24.838, 24.85, 25.238, 24.941]),
    (1024, [6.253, 12.505, 18.773, 24.793, 24.841, 24.838, 24.847, 24.844]),
    (2048, [6.244, 12.486, 18.775, 24.838, 24.841, 24.841, 24.841, 24.838]),
];
const THEIR_HOST_CORES: f64 = 4.0;

/// Their Table 4: host CPU usage (%) in 10 trials, per workload, with 1, 2, 3, 4 host cores.
const TABLE_4: [(&str, [[f64; 10]; 4]); 3] = [
    (
        "Dhrystone",
        [
            [98.5, 99.5, 65.5, 89.5, 98.5, 99.0, 99.0, 98.5, 99.5, 86.0],
            [100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 99.5],
            [100.0, 100.0, 100.0, 100.0, 101.0, 100.0, 100.0, 100.0, 100.0, 100.0],
            [100.0, 100.0, 100.0, 99.5, 99.5, 99.5, 99.5, 99.5, 99.5, 100.0],
        ],
    ),
    (
        "Livermore Loops",
        [
            [96.0, 90.2, 63.3, 42.2, 41.4, 49.5, 48.5, 47.8, 46.5, 51.5],
            [99.0, 100.0, 98.4, 94.3, 91.8, 91.4, 87.0, 94.0, 93.6, 91.1],
            [99.5, 99.0, 99.4, 99.6, 99.5, 100.0, 100.0, 100.0, 99.5, 97.1],
            [100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 101.0, 100.0, 100.0, 101.0],
        ],
    ),
    (
        "Linpack",
        [
            [92.0, 98.5, 98.5, 99.0, 88.5, 98.5, 87.0, 93.0, 98.5, 97.0],
            [99.0, 100.0, 100.0, 100.0, 98.5, 100.0, 100.0, 98.5, 100.0, 100.0],
            [99.5, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0],
            [100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 99.5, 100.0, 100.0, 100.0],
        ],
    ),
];

/// Their Table 5: total migration time and downtime, seconds.
const TABLE_5: [(&str, f64, f64); 3] = [("Livermore Loops", 63.0, 18.0), ("Dhrystone", 64.0, 28.0), ("Linpack", 64.0, 19.0)];
/// The order their rule gave.
const THEIR_ORDER: [&str; 3] = ["Livermore Loops", "Linpack", "Dhrystone"];

/// The paper's name for one of our workloads.
fn paper_name(workload: &str) -> String {
    match workload.split(':').next().unwrap_or("") {
        "livermore" => "Livermore Loops".into(),
        "dhrystone" => "Dhrystone".into(),
        "linpack" => "Linpack".into(),
        _ => workload.into(),
    }
}

fn show(s: Option<Stats>, decimals: usize) -> String {
    s.map(|s| s.show(decimals)).unwrap_or_else(|| "-".into())
}

/// Workloads in the order they first appear.
fn workloads(records: &[RunRecord]) -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    for r in records {
        let name = r.run.cell.workload.to_string();
        if !w.contains(&name) {
            w.push(name);
        }
    }
    w
}

fn sorted_unique<T: Ord + Copy>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = it.collect();
    v.sort();
    v.dedup();
    v
}

fn table(b: Builder) -> String {
    b.build().with(Style::markdown()).to_string()
}

/// Tables 1–3 and Figures 3–8: CPU usage against the cap, per workload and vCPU count.
pub fn tables_1_to_3(records: &[RunRecord]) -> String {
    let mut out = String::from(
        "## Shreya et al., Tables 1–3 and Figures 3–8: CPU usage against the CPU cap\n\n\
         Theirs: Xen's credit-scheduler cap, usage as % of their 4-core host (so one busy vCPU reads 25 %); \
         ×4 puts it in our unit. Ours: CPU of the QEMU process in the `before` window, % of one host CPU \
         (what the cgroup cap limits), mean ± 95 % CI over the runs that completed with a healthy guest; `guest` is the guest kernel's own account of its busy time.\n",
    );
    let mut verdicts = Vec::new();
    for w in workloads(records) {
        let of_w: Vec<&RunRecord> = records.iter().filter(|r| r.run.cell.workload.to_string() == w).collect();
        for vcpus in sorted_unique(of_w.iter().map(|r| r.run.cell.vcpus)) {
            let cell: Vec<&RunRecord> = of_w.iter().copied().filter(|r| r.run.cell.vcpus == vcpus).collect();
            let rams = sorted_unique(cell.iter().map(|r| r.run.cell.ram_mib));
            let caps = sorted_unique(cell.iter().filter_map(|r| r.run.cell.cap_percent));
            let published = paper_name(&w) == "Livermore Loops" && vcpus == 1;
            let mut b = Builder::default();
            let mut head = vec!["cap %".to_string(), "paper ×4 (512 MB / 1 GB / 2 GB)".into(), "expected".into()];
            head.extend(rams.iter().map(|m| format!("ours {m} MiB")));
            head.push("guest's own view".into());
            b.push_record(head);
            let mut follows = Vec::new();
            let mut ram_spread: f64 = 0.0;
            for &cap in &caps {
                let at_cap: Vec<&RunRecord> = cell.iter().copied().filter(|r| r.run.cell.cap_percent == Some(cap)).collect();
                let theirs = match CAPS.iter().position(|c| *c == cap) {
                    Some(i) if published => {
                        TABLES_1_TO_3.iter().map(|(_, v)| format!("{:.1}", v[i] * THEIR_HOST_CORES)).collect::<Vec<_>>().join(" / ")
                    }
                    _ if published => "-".into(),
                    _ => "figure only".into(),
                };
                let expected = cap.min(100 * vcpus) as f64;
                let mut row = vec![cap.to_string(), theirs, format!("{expected:.0}")];
                let mut means = Vec::new();
                let qemu = |m: &crate::migration::measurement::Measurement| m.cpu_percent.before.map(|u| u.qemu_percent);
                for &ram in &rams {
                    let runs = CellRuns::new(at_cap.iter().copied().filter(|r| r.run.cell.ram_mib == ram));
                    if let Some(s) = runs.stats(qemu) {
                        means.push(s.mean);
                    }
                    row.push(runs.show(qemu, 1));
                }
                row.push(CellRuns::new(at_cap.iter().copied()).show(|m| m.cpu_percent.before.and_then(|u| u.guest_percent), 0));
                b.push_record(row);
                if let (Some(lo), Some(hi)) = (means.iter().copied().reduce(f64::min), means.iter().copied().reduce(f64::max)) {
                    ram_spread = ram_spread.max(hi - lo);
                    let mean = means.iter().sum::<f64>() / means.len() as f64;
                    follows.push((cap, expected, mean));
                }
            }
            out.push_str(&format!("\n### {} ({w}), {vcpus} vCPU{}\n\n{}\n", paper_name(&w), if vcpus > 1 { "s" } else { "" }, table(b)));
            verdicts.push(format!("{} {vcpus} vCPU: {}", paper_name(&w), shape_verdict(&follows, ram_spread, vcpus)));
        }
    }
    if verdicts.is_empty() {
        out.push_str("\nNo runs with a CPU cap yet.\n");
    } else {
        out.push_str("\nShape (usage follows the cap up to 100 % per vCPU, then flattens; RAM has no effect):\n\n");
        for v in verdicts {
            out.push_str(&format!("- {v}\n"));
        }
    }
    out
}

/// Whether measured usage follows min(cap, 100·vCPUs) within 15 % (of the
/// expected value, at least 5 points) and RAM moves it by at most 10 points.
fn shape_verdict(points: &[(u32, f64, f64)], ram_spread: f64, vcpus: u32) -> String {
    if points.is_empty() {
        return "no data".into();
    }
    let off: Vec<String> = points
        .iter()
        .filter(|(_, expected, got)| (got - expected).abs() > (0.15 * expected).max(5.0))
        .map(|(cap, expected, got)| format!("cap {cap}: {got:.0} % where {expected:.0} % was expected"))
        .collect();
    let flat_at = 100 * vcpus;
    let mut parts = Vec::new();
    if off.is_empty() {
        parts.push(format!("matches — linear in the cap up to {flat_at} %, flat above"));
    } else {
        parts.push(format!("differs — {}", off.join("; ")));
    }
    parts.push(if ram_spread <= 10.0 {
        format!("RAM changes it by {ram_spread:.1} points at most (no effect, as theirs)")
    } else {
        format!("RAM changes it by up to {ram_spread:.1} points (theirs: no effect)")
    });
    parts.join("; ")
}

/// Table 4: how busy the guest keeps the host cores it is given.
pub fn table_4(records: &[RunRecord]) -> String {
    let mut out = String::from(
        "## Shreya et al., Table 4: host CPU usage with 1…N host cores\n\n\
         Theirs: host CPU usage with the host booted on N cores (mean of 10 trials). Ours: the QEMU process \
         confined to N cores (a cpuset), its CPU as % of those N cores, and the whole host's usage, in the `before` window, over the runs that completed with a healthy guest.\n\n",
    );
    let mut b = Builder::default();
    b.push_record(["workload", "host cores", "paper (% of host)", "ours: QEMU, % of its cores", "ours: whole host %", "guest vCPUs"]);
    let mut low = Vec::new();
    for w in workloads(records) {
        let of_w: Vec<&RunRecord> = records.iter().filter(|r| r.run.cell.workload.to_string() == w).collect();
        let host_cores = of_w.first().map(|r| r.migration.environment.host.cores as u32).unwrap_or(1);
        for cores in sorted_unique(of_w.iter().map(|r| r.run.cell.host_cores.unwrap_or(host_cores))) {
            let rs: Vec<&RunRecord> = of_w.iter().copied().filter(|r| r.run.cell.host_cores.unwrap_or(host_cores) == cores).collect();
            let theirs = TABLE_4
                .iter()
                .find(|(name, _)| *name == paper_name(&w))
                .and_then(|(_, by_cores)| by_cores.get(cores as usize - 1))
                .map(|trials| format!("{:.1}", trials.iter().sum::<f64>() / trials.len() as f64))
                .unwrap_or_else(|| "-".into());
            let runs = CellRuns::new(rs.iter().copied());
            let of_cores = |m: &crate::migration::measurement::Measurement| m.cpu_percent.before.map(|u| u.qemu_percent / cores as f64);
            let share = runs.stats(of_cores);
            let vcpus = sorted_unique(rs.iter().map(|r| r.run.cell.vcpus));
            if let Some(s) = share {
                // A guest can keep busy at most as many cores as it has vCPUs.
                let reachable = vcpus.iter().max().copied().unwrap_or(1).min(cores) as f64 / cores as f64 * 100.0;
                if s.mean < 0.9 * reachable {
                    low.push(format!("{} on {cores} cores: {:.0} % of {reachable:.0} % reachable", paper_name(&w), s.mean));
                }
            }
            b.push_record([
                format!("{} ({w})", paper_name(&w)),
                cores.to_string(),
                theirs,
                runs.show(of_cores, 1),
                runs.show(|m| m.cpu_percent.before.map(|u| u.host_percent), 1),
                vcpus.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","),
            ]);
        }
    }
    out.push_str(&table(b));
    out.push_str("\n\nShape (CPU-bound guests keep the cores they are given busy; theirs reach ~100 % from 2 cores): ");
    out.push_str(&if low.is_empty() {
        "matches — every workload used at least 90 % of the cores it could reach.\n".to_string()
    } else {
        format!("differs — {}.\n", low.join("; "))
    });
    out
}

/// Table 5 and the decision: which VM to migrate first.
pub fn table_5(records: &[RunRecord]) -> String {
    let mut out = String::from(
        "## Shreya et al., Table 5: total migration time and downtime per workload, and which VM to migrate\n\n\
         Theirs: seconds, Xen 2013. Ours: milliseconds, mean ± 95 % CI over the repetitions that completed with a healthy guest.\n\n",
    );
    let mut b = Builder::default();
    b.push_record(["workload", "paper total s", "paper downtime s", "ours total_time_ms", "ours downtime_ms", "ours transferred MiB", "runs"]);
    let mut candidates = Vec::new();
    for w in workloads(records) {
        let runs = CellRuns::new(records.iter().filter(|r| r.run.cell.workload.to_string() == w));
        let total = runs.stats(|m| m.total_time_ms);
        let down = runs.stats(|m| m.downtime_ms);
        let paper = TABLE_5.iter().find(|(n, _, _)| *n == paper_name(&w));
        b.push_record([
            format!("{} ({w})", paper_name(&w)),
            paper.map(|p| format!("{:.0}", p.1)).unwrap_or_else(|| "-".into()),
            paper.map(|p| format!("{:.0}", p.2)).unwrap_or_else(|| "-".into()),
            show(total, 0),
            show(down, 1),
            show(runs.stats(|m| m.transferred_mib()), 1),
            runs.tally_with_reasons(),
        ]);
        if let (Some(total_time_ms), Some(downtime_ms)) = (total, down) {
            candidates.push(Candidate { name: paper_name(&w), total_time_ms, downtime_ms });
        }
    }
    out.push_str(&table(b));
    let ranked = rank::by_migration_time_then_downtime(&candidates);
    out.push_str("\n\nDecision (least total migration time; on a tie — overlapping 95 % CIs — less downtime):\n\n");
    out.push_str(&format!("- paper: {}\n", THEIR_ORDER.join(", then ")));
    if ranked.is_empty() {
        out.push_str("- ours: no workload has a healthy completed migration to rank\n");
        return out;
    }
    for r in &ranked {
        out.push_str(&format!("- ours #{}: {} — {}\n", r.position, r.name, r.reason));
    }
    let ours: Vec<&str> = ranked.iter().map(|r| r.name.as_str()).collect();
    let theirs: Vec<&str> = THEIR_ORDER.iter().copied().filter(|n| ours.contains(n)).collect();
    out.push_str(&if ours == theirs {
        "\nOrder: matches the paper's.\n".to_string()
    } else if ours.first() == theirs.first() {
        format!("\nOrder: differs ({}); the first choice matches.\n", ours.join(", "))
    } else {
        format!("\nOrder: differs ({}).\n", ours.join(", "))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_name_what_is_off() {
        let good = [(25, 25.0, 26.0), (100, 100.0, 97.0), (200, 100.0, 101.0)];
        assert!(shape_verdict(&good, 2.0, 1).starts_with("matches"));
        let bad = [(25, 25.0, 26.0), (200, 100.0, 180.0)];
        let v = shape_verdict(&bad, 2.0, 1);
        assert!(v.starts_with("differs") && v.contains("cap 200: 180 %"), "{v}");
        assert!(shape_verdict(&good, 25.0, 1).contains("up to 25.0 points"));
    }

    #[test]
    fn table_5_ranks_on_healthy_runs_only() {
        use crate::summary::cell_runs::testing::run;
        let of = |w: &str, mut r: RunRecord| {
            r.run.cell.workload = w.parse().unwrap();
            r
        };
        // Dhrystone is quickest on its healthy runs; its broken run (10⁶ ms) would put it
        // last if it counted. Linpack has no healthy run at all: no figure, no place.
        let records = [
            of("dhrystone", run("d", 0, 1000.0, true, true)),
            of("dhrystone", run("d", 1, 1010.0, true, true)),
            of("dhrystone", run("d", 2, 1_000_000.0, false, true)),
            of("livermore", run("l", 0, 2000.0, true, true)),
            of("livermore", run("l", 1, 2010.0, true, true)),
            of("linpack:100", run("k", 0, 10.0, false, true)),
        ];
        let t = table_5(&records);
        assert!(t.contains("- ours #1: Dhrystone") && t.contains("- ours #2: Livermore Loops") && !t.contains("#3"), "{t}");
        let linpack = t.lines().find(|l| l.starts_with("| Linpack")).unwrap();
        assert!(linpack.contains("0 of 1 healthy: guest not healthy") && !linpack.contains("10 "), "{linpack}");
        let dhrystone = t.lines().find(|l| l.starts_with("| Dhrystone")).unwrap();
        assert!(dhrystone.contains("| 1005 ± ") && dhrystone.contains("2 of 3 healthy"), "{dhrystone}");
    }

    #[test]
    fn the_papers_constants_are_what_it_printed() {
        // Table 1's printed average for cap 25 and Table 4's Livermore 1-core trials.
        assert_eq!(TABLES_1_TO_3[0].1[0], 6.235);
        let liv = TABLE_4[1].1[0];
        assert!((liv.iter().sum::<f64>() / 10.0 - 57.69).abs() < 0.01);
        assert_eq!(paper_name("linpack:100"), "Linpack");
    }
}
