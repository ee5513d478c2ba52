//! What people read: a result set as a document (`document`, its `sections`, their
//! `figures`) rendered by `export` in each format, the terminal's included; papers'
//! numbers beside ours (`papers`); and the tables the other commands print.

pub mod block;
pub mod browser;
pub mod charts;
pub mod compare;
pub mod document;
pub mod downtime;
pub mod evacuation;
pub mod export;
mod figures;
pub mod papers;
pub mod plan;
pub mod plot;
pub mod saved_file;
pub mod sections;
pub mod service;

use crate::record::MigrationRecord;
use tabled::settings::Style;
use tabled::{Table, Tabled};

/// A name as an HTML id or a file name: lower-case letters and digits, the rest one dash.
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

fn mib(v: Option<u64>) -> String {
    v.map(|b| format!("{:.1}", b as f64 / (1024.0 * 1024.0))).unwrap_or_else(|| "-".into())
}

/// One row of the migration table (every DESIGN.md §3 number measured so far).
#[derive(Tabled)]
struct MigrationRow {
    #[tabled(rename = "ram_mib")]
    ram: u32,
    vcpus: u32,
    accel: String,
    link: String,
    strategy: String,
    workload: String,
    outcome: String,
    healthy: String,
    boot_ms: String,
    total_time_ms: String,
    downtime_ms: String,
    event_downtime_ms: String,
    setup_time_ms: String,
    wall_time_ms: String,
    transferred_mib: String,
    postcopy_mib: String,
    iterations: String,
    guest_gap_ms: String,
    qemu: String,
}

impl From<&MigrationRecord> for MigrationRow {
    fn from(r: &MigrationRecord) -> Self {
        let m = &r.measurement;
        MigrationRow {
            ram: r.guest.ram_mib,
            vcpus: r.guest.vcpus,
            accel: r.environment.accel.to_string(),
            link: format!("{} {}", r.scenario.link, r.scenario.transport),
            strategy: if m.strategy_took_effect() {
                r.scenario.strategy.to_string()
            } else {
                format!("{} (never took effect)", r.scenario.strategy)
            },
            workload: r.guest.workload.to_string(),
            outcome: m.outcome.label().into(),
            healthy: if m.health.healthy { "yes".into() } else { "NO".into() },
            boot_ms: match r.guest_booted {
                Some(crate::machine::boot::Booted::Restored) => format!("{:.0} (restored)", r.guest_boot_ms),
                _ => format!("{:.0}", r.guest_boot_ms),
            },
            total_time_ms: opt_ms(m.total_time_ms),
            downtime_ms: opt_ms(m.downtime_ms),
            event_downtime_ms: opt_ms(m.event_downtime_ms),
            setup_time_ms: opt_ms(m.setup_time_ms),
            wall_time_ms: opt_ms(m.wall_time_ms),
            transferred_mib: mib(m.transferred_bytes),
            postcopy_mib: mib(m.postcopy_bytes),
            iterations: opt(m.iterations),
            guest_gap_ms: opt_ms(m.guest_gap_ms),
            qemu: r.environment.qemu_label(),
        }
    }
}

pub fn migration_table(records: &[MigrationRecord]) -> String {
    let rows: Vec<MigrationRow> = records.iter().map(MigrationRow::from).collect();
    Table::new(rows).with(Style::markdown()).to_string()
}

/// The notes under a table: anything not healthy or not completed, in words.
pub fn migration_notes(records: &[MigrationRecord]) -> Vec<String> {
    let mut notes = Vec::new();
    for r in records {
        let m = &r.measurement;
        let who = format!("{} MiB/{} vCPU", r.guest.ram_mib, r.guest.vcpus);
        match &m.outcome {
            crate::migration::measurement::Outcome::Completed => {}
            crate::migration::measurement::Outcome::Cancelled { reason }
            | crate::migration::measurement::Outcome::Failed { reason }
            | crate::migration::measurement::Outcome::Unsupported { reason } => {
                notes.push(format!("{who}: {} — {reason}", m.outcome.label()))
            }
        }
        if !m.health.healthy {
            notes.push(format!("{who}: guest on the {} is NOT healthy: {}", m.health.runs_on, m.health.detail));
        }
        if let Some(e) = m.evidence.as_ref().filter(|_| !m.strategy_took_effect()) {
            notes.push(format!("{who}: {} — not counted as {}", e.note, r.scenario.strategy));
        }
    }
    notes
}

/// What QEMU showed of each run's strategy, one fact a line (`migbench migrate`).
pub fn evidence_notes(records: &[MigrationRecord]) -> Vec<String> {
    let mut notes = Vec::new();
    for r in records {
        if let Some(e) = &r.measurement.evidence {
            notes.extend(e.facts().into_iter().map(|f| format!("{}: {f}", r.scenario.strategy)));
        }
    }
    notes
}

/// The per-cell summary of a sweep: mean ± 95 % CI over the runs that count
/// (completed, guest healthy), "k of n healthy" per cell, and under the table why a
/// cell's other runs do not count (a cell with none has no figure, and says why).
pub fn summary_table(cells: &[crate::summary::cells::CellSummary]) -> String {
    #[derive(Tabled)]
    struct Row {
        cell: String,
        runs: String,
        total_time_ms: String,
        downtime_ms: String,
        transferred_mib: String,
        iterations: String,
        guest_gap_ms: String,
        cpu_before_pct: String,
        guest_cpu_before_pct: String,
        cpu_during_pct: String,
        src_send_cpu_ms: String,
        slowdown_pct: String,
    }
    let s = |v: &Option<crate::stats::Stats>, d: usize| v.map(|x| x.show(d)).unwrap_or_else(|| "-".into());
    let rows: Vec<Row> = cells
        .iter()
        .map(|c| Row {
            cell: c.label.clone(),
            runs: c.tally(),
            total_time_ms: s(&c.total_time_ms, 0),
            downtime_ms: s(&c.downtime_ms, 1),
            transferred_mib: s(&c.transferred_mib, 1),
            iterations: s(&c.iterations, 1),
            guest_gap_ms: s(&c.guest_gap_ms, 1),
            cpu_before_pct: s(&c.cpu_before_percent, 0),
            guest_cpu_before_pct: s(&c.guest_cpu_before_percent, 0),
            cpu_during_pct: s(&c.cpu_during_percent, 0),
            src_send_cpu_ms: s(&c.source_send_cpu_ms, 0),
            slowdown_pct: s(&c.slowdown_percent, 0),
        })
        .collect();
    let mut out = Table::new(rows).with(Style::markdown()).to_string();
    let partial: Vec<String> = cells.iter().filter(|c| c.counted < c.runs).map(|c| format!("- {}: {}", c.label, c.tally)).collect();
    if !partial.is_empty() {
        out.push_str("\n\nOnly completed runs with a healthy guest are counted; a cell with none has no figure:\n\n");
        out.push_str(&partial.join("\n"));
    }
    out
}

/// Post-copy's cost to the guest per cell, to compare strategies (plain post-copy
/// against preempt): the pages the destination requested, the time its vCPUs
/// stalled on them, that stall per request, QEMU's own fault latency where it
/// reports one, and the total time; mean ± 95 % CI over the runs that count. None
/// when no cell has a post-copy figure.
pub fn postcopy_table(cells: &[crate::summary::cells::CellSummary]) -> Option<String> {
    #[derive(Tabled)]
    struct Row {
        cell: String,
        runs: String,
        page_requests: String,
        blocktime_ms: String,
        stall_per_request_ms: String,
        qemu_fault_latency_ms: String,
        total_time_ms: String,
    }
    let s = |v: &Option<crate::stats::Stats>, d: usize| v.map(|x| x.show(d)).unwrap_or_else(|| "-".into());
    let rows: Vec<Row> = cells
        .iter()
        .filter(|c| c.postcopy_requests.is_some() || c.postcopy_blocktime_ms.is_some())
        .map(|c| Row {
            cell: c.label.clone(),
            runs: c.tally(),
            page_requests: s(&c.postcopy_requests, 0),
            blocktime_ms: s(&c.postcopy_blocktime_ms, 1),
            stall_per_request_ms: s(&c.postcopy_stall_per_request_ms, 2),
            qemu_fault_latency_ms: s(&c.postcopy_latency_ms, 3),
            total_time_ms: s(&c.total_time_ms, 0),
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut out = String::from("Post-copy page faults per cell (blocktime: the destination's vCPUs stalled on pages still on the source; qemu_fault_latency: QEMU 10.1+ only)\n\n");
    out.push_str(&Table::new(rows).with(Style::markdown()).to_string());
    Some(out)
}

/// A measured ranking (`migbench rank`), with the model's prediction beside each VM.
pub fn rank_table(rows: &[crate::rank::vms::VmRow], ranking: &crate::rank::vms::Ranking) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "place", "vm", "runs", "total_time_ms", "downtime_ms", "transferred_mib", "service_downtime_ms", "slowdown_pct", "dirty_mib_s", "predicted_total_s", "why",
    ]);
    let s = |v: &Option<crate::stats::Stats>, d: usize| v.map(|x| x.show(d)).unwrap_or_else(|| "-".into());
    let mut push = |place: String, r: &crate::rank::vms::VmRow, why: &str| {
        let predicted = match &r.predicted {
            Some(p) if p.converges => p.total_s.map(|t| format!("{t:.1}")).unwrap_or_else(|| "-".into()),
            Some(_) => "never converges".into(),
            None => "-".into(),
        };
        b.push_record([
            place,
            r.label.clone(),
            crate::summary::cell_runs::tally(r.counted, r.runs),
            s(&r.total_time_ms, 0),
            s(&r.downtime_ms, 1),
            s(&r.transferred_mib, 1),
            s(&r.service_downtime_ms, 1),
            s(&r.slowdown_percent, 1),
            r.dirty_rate_mib_s.map(|d| format!("{d:.1}")).unwrap_or_else(|| "-".into()),
            predicted,
            why.to_string(),
        ]);
    };
    for (i, k) in &ranking.ranked {
        push(k.position.to_string(), &rows[*i], &k.reason);
    }
    for (i, why) in &ranking.unranked {
        push("-".into(), &rows[*i], why);
    }
    format!("Ranking by {} (1 = migrate first)\n\n{}", ranking.objective, b.build().with(Style::markdown()))
}

/// The model's total time against the measured one.
pub fn validation_lines(v: &crate::rank::vms::Validation) -> String {
    let mut out = match (v.median_error_percent, v.worst_error_percent) {
        (Some(median), Some(worst)) => format!(
            "Predicted vs measured total time over {} VMs: median error {median:+.0} %, worst {worst:+.0} % ({}); Kendall's tau {}",
            v.compared,
            v.worst,
            v.kendall_tau.map(|t| format!("{t:.2}")).unwrap_or_else(|| "- (too few VMs)".into())
        ),
        _ => "No VM has both a converging prediction and a measured total time to compare.".to_string(),
    };
    out += &format!("\nConvergence: the model and the runs agree on {} VMs", v.convergence_agreements);
    for (label, predicted, completed) in &v.convergence_disagreements {
        out += &format!(
            "\n{label}: the model says it {}, but {}",
            if *predicted { "converges" } else { "never converges" },
            if *completed { "a run completed" } else { "no run completed" }
        );
    }
    out
}

/// A predicted ranking (`migbench rank PROFILE`): nothing migrated.
pub fn predicted_table(vms: &[crate::rank::vms::PredictedVm]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["place", "vm", "dirty_mib_s", "mode", "predicted_total_s", "predicted_downtime_ms", "rounds", "converges", "why"]);
    for (i, v) in vms.iter().enumerate() {
        let p = v.prediction.as_ref();
        b.push_record([
            (i + 1).to_string(),
            v.label.clone(),
            v.dirty_rate.as_ref().map(|d| format!("{:.1}", d.mib_per_s)).unwrap_or_else(|| "-".into()),
            v.dirty_rate.as_ref().map(|d| d.mode.clone()).unwrap_or_else(|| "-".into()),
            p.and_then(|p| p.total_s).map(|t| format!("{t:.2}")).unwrap_or_else(|| "-".into()),
            p.and_then(|p| p.downtime_s).map(|t| format!("{:.1}", t * 1000.0)).unwrap_or_else(|| "-".into()),
            p.map(|p| p.rounds.to_string()).unwrap_or_else(|| "-".into()),
            p.map(|p| if p.converges { "yes" } else { "NO" }.to_string()).unwrap_or_else(|| "-".into()),
            p.map(|p| p.reason.clone()).or_else(|| v.error.clone()).unwrap_or_default(),
        ]);
    }
    format!("Predicted ranking (nothing migrated; 1 = migrate first)\n\n{}", b.build().with(Style::markdown()))
}

/// One round of a live cluster, laid out like Chandak et al.'s tables.
pub fn cluster_round(r: &crate::rank::cluster::Round) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["host", "VM", "VM CPU (% of the host)", "predicted migration s", "host CPU (% of its capacity)", "band"]);
    let d = &r.decision;
    for h in &r.state.hosts {
        let band = if d.heavy.contains(&h.name) { "heavy" } else if d.light.contains(&h.name) { "light" } else { "moderate" };
        for (i, v) in h.vms.iter().enumerate() {
            let first = i == 0;
            b.push_record([
                if first { h.name.clone() } else { String::new() },
                v.name.clone(),
                format!("{:.2}", v.cpu),
                match (v.predicted_migration_s, v.converges) {
                    (_, Some(false)) => "never converges".into(),
                    (Some(s), _) => format!("{s:.2}"),
                    _ => "-".into(),
                },
                if first { format!("{:.2}", h.cpu) } else { String::new() },
                if first { band.to_string() } else { String::new() },
            ]);
        }
        if h.vms.is_empty() {
            b.push_record([h.name.clone(), "-".into(), "-".into(), "-".into(), format!("{:.2}", h.cpu), band.to_string()]);
        }
    }
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "-".into());
    let outcome = match (&d.migration, r.outcome.as_deref(), r.healthy) {
        (None, _, _) => "no migration".into(),
        (Some(m), Some("completed"), Some(true)) => {
            format!("migrated {} from {} to {} in {} (downtime {})", m.vm, m.from, m.to, ms(r.total_time_ms), ms(r.downtime_ms))
        }
        (Some(m), Some(o), healthy) => format!(
            "migrating {} from {} to {}: {o}{}",
            m.vm,
            m.from,
            m.to,
            if healthy == Some(false) { ", guest NOT healthy" } else { "" }
        ),
        // The engine's choice after the last allowed round, or a move that could not start.
        (Some(m), None, _) => format!("{} from {} to {} was not migrated", m.vm, m.from, m.to),
    };
    format!(
        "Round {}: threshold {:.2}, moderate band [{:.2}, {:.2}]\n\n{}\n\n{} — {}",
        r.round,
        d.threshold,
        d.band[0],
        d.band[1],
        b.build().with(Style::markdown()),
        outcome,
        d.reason
    )
}

/// The same cluster state through every balancing rule (`balance --compare-rules`).
pub fn balance_rules_table(decisions: &[crate::rank::balance::Decision]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["rule", "migration", "σ of host CPU before → after", "predicted migration s", "why"]);
    for d in decisions {
        b.push_record([
            d.rule.to_string(),
            d.migration.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "none".into()),
            format!("{:.2} → {:.2}", d.stddev_before, d.stddev_after),
            d.predicted_migration_s.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into()),
            d.reason.clone(),
        ]);
    }
    b.build().with(Style::markdown()).to_string()
}

/// The bench's sweeps side by side: runs per minute with guest reuse on and off,
/// on the reuse row its rate ÷ the other's, and the boots each made.
pub fn sweep_rates_table(sweeps: &[crate::record::bench::SweepRateRecord]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["profile", "guest reuse", "runs", "seconds", "runs/min", "÷ reuse off", "boots (s)", "runs counted"]);
    let off = sweeps.iter().find(|s| !s.reuse).map(|s| s.runs_per_min).filter(|r| *r > 0.0);
    for s in sweeps {
        b.push_record([
            s.profile.clone(),
            if s.reuse { "on" } else { "off" }.into(),
            s.runs.to_string(),
            format!("{:.1}", s.seconds),
            format!("{:.1}", s.runs_per_min),
            match off {
                Some(off) if s.reuse => format!("{:.2}×", s.runs_per_min / off),
                _ => String::new(),
            },
            format!("{} ({:.1})", s.boots, s.boot_seconds),
            s.tally.clone(),
        ]);
    }
    b.build().with(Style::markdown()).to_string()
}

/// The load generator's capacity beside other tools (`bench`).
pub fn capacity_table(figs: &[crate::load::capacity::Figure]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["tool", "setting", "requests/s", "p99_ms", "ours ÷ it", "note"]);
    for f in figs {
        b.push_record([
            f.tool.clone(),
            f.setting.clone(),
            f.requests_per_s.map(|r| format!("{r:.0}")).unwrap_or_else(|| "-".into()),
            opt_ms(f.p99_ms),
            f.ratio.map(|r| format!("{r:.2}×")).unwrap_or_else(|| if f.tool == "migbench" { String::new() } else { "-".into() }),
            f.note.clone(),
        ]);
    }
    b.build().with(Style::markdown()).to_string()
}

/// The workloads' own figures on the host and in a guest, side by side.
pub fn workload_rates_table(
    rates: &[(migbench_guest::orders::Workload, crate::experiment::workload_rates::Figure, crate::experiment::workload_rates::Figure)],
    accel: crate::machine::Accel,
) -> String {
    use migbench_guest::orders::Workload;
    let mut b = tabled::builder::Builder::default();
    b.push_record(["workload".to_string(), "figure".into(), "host (1 thread)".into(), format!("guest, {accel}, 1 vCPU"), "guest ÷ host".into()]);
    let ratio = |h: Option<f64>, g: Option<f64>| match (h, g) {
        (Some(h), Some(g)) if h > 0.0 => format!("{:.3}", g / h),
        _ => "-".into(),
    };
    let num = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    for (w, h, g) in rates {
        match w {
            Workload::Livermore { .. } => {
                for (label, pick) in [("arithmetic", 0), ("geometric", 1), ("harmonic", 2)] {
                    let get = |f: &crate::experiment::workload_rates::Figure| {
                        f.livermore.map(|m| [m.arithmetic, m.geometric, m.harmonic][pick])
                    };
                    b.push_record([
                        "Livermore loops (24 kernels × 3 spans)".to_string(),
                        format!("MFLOPS, {label} mean"),
                        num(get(h)),
                        num(get(g)),
                        ratio(get(h), get(g)),
                    ]);
                }
            }
            _ => {
                let figure = if *w == Workload::Dhrystone { "DMIPS (Dhrystones/s ÷ 1757)" } else { "MFLOPS" };
                b.push_record([w.to_string(), figure.into(), num(h.rate), num(g.rate), ratio(h.rate, g.rate)]);
            }
        }
    }
    b.build().with(Style::markdown()).to_string()
}

/// The faults injected into a sweep: what was done, how each run ended, where the
/// guest is, and whether that is what QEMU's semantics say. None without faults.
pub fn faults_table(records: &[crate::record::RunRecord]) -> Option<String> {
    let with: Vec<_> = records.iter().filter(|r| r.migration.measurement.fault.is_some()).collect();
    if with.is_empty() {
        return None;
    }
    let mut b = tabled::builder::Builder::default();
    b.push_record(["fault", "strategy", "struck at ms", "what was done", "outcome", "guest runs on", "healthy", "as expected"]);
    let mut expected: Vec<(String, String)> = Vec::new();
    for r in &with {
        let m = &r.migration.measurement;
        let f = m.fault.as_ref().expect("filtered");
        b.push_record([
            f.fault.to_string(),
            r.migration.scenario.strategy.to_string(),
            opt_ms(f.at_ms),
            f.action.clone(),
            m.outcome.label().to_string(),
            if m.health.runs_on.is_empty() { "-".into() } else { m.health.runs_on.clone() },
            if m.health.healthy { "yes".into() } else { "no".into() },
            if f.as_expected { "yes".into() } else { "NO".into() },
        ]);
        let key = format!("{} ({})", f.fault, r.migration.scenario.strategy);
        if !expected.iter().any(|(k, _)| *k == key) {
            expected.push((key, f.expected.clone()));
        }
    }
    let surprises = with.iter().filter(|r| !r.migration.measurement.fault.as_ref().is_some_and(|f| f.as_expected)).count();
    let mut out = format!("Faults injected: {} runs, {} as QEMU's semantics say{}\n\n", with.len(), with.len() - surprises, if surprises > 0 { format!(", {surprises} NOT") } else { String::new() });
    out.push_str(&b.build().with(Style::markdown()).to_string());
    out.push_str("\n\nExpected:\n");
    for (k, e) in expected {
        out.push_str(&format!("- {k}: {e}\n"));
    }
    Some(out)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::measurement::Outcome;
    use crate::migration::strategy::Strategy;

    /// Post-copy's figures per cell, only for cells that switched to post-copy; the
    /// stall per request is the blocktime over the requests of each run.
    #[test]
    fn the_postcopy_table_compares_page_faults_per_cell() {
        use crate::experiment::profile::Profile;
        let mut runs: Vec<crate::record::RunRecord> = (0..2).map(|i| crate::summary::cell_runs::testing::run("x", i, 9000.0, true, true)).collect();
        for r in &mut runs {
            r.run.cell_key = r.run.cell.key();
        }
        let profile = Profile::from_runs("p", &[(0, runs[0].run.cell.clone(), 0)], "t");
        // QEMU reports 0 requests in pre-copy: no post-copy table for it.
        for r in &mut runs {
            r.migration.measurement.postcopy_requests = Some(0);
        }
        assert!(postcopy_table(&crate::summary::cells::summarise(&runs, &profile)).is_none());
        for (r, (req, block)) in runs.iter_mut().zip([(100, 50.0), (300, 60.0)]) {
            let m = &mut r.migration.measurement;
            (m.postcopy_started_ms, m.postcopy_requests, m.postcopy_blocktime_ms) = (Some(1.0), Some(req), Some(block));
        }
        assert_eq!(runs[0].migration.measurement.postcopy_stall_per_request_ms(), Some(0.5));
        let t = postcopy_table(&crate::summary::cells::summarise(&runs, &profile)).unwrap();
        assert!(t.starts_with("Post-copy page faults per cell"), "{t}");
        let row = t.lines().last().unwrap();
        // Means of 100 and 300 requests, 50 and 60 ms, 0.5 and 0.2 ms a request; no QEMU latency.
        assert!(row.contains("| 200 ") && row.contains("| 55.0 ") && row.contains("| 0.35 ") && row.contains("| - "), "{t}");
        assert!(crate::report::sections::of(&profile, &runs).contains(&crate::report::sections::Section::Postcopy));
    }

    #[test]
    fn the_table_and_notes_say_when_a_strategy_never_took_effect() {
        let mut rec = crate::summary::cell_runs::testing::run("a", 0, 1000.0, true, true).migration;
        assert_eq!(rec.measurement.outcome, Outcome::Completed);
        rec.scenario.strategy = Strategy::Postcopy;
        rec.measurement.evidence = Some(crate::summary::cell_runs::testing::postcopy_not_engaged());
        let notes = migration_notes(std::slice::from_ref(&rec));
        assert!(notes.iter().any(|n| n.contains("pre-copy finished before switchover — not counted as postcopy")), "{notes:?}");
        assert!(migration_table(std::slice::from_ref(&rec)).contains("postcopy (never took effect)"));
        let facts = evidence_notes(std::slice::from_ref(&rec));
        assert_eq!(facts.len(), 3, "{facts:?}");
        assert!(facts[1].starts_with("postcopy: QEMU reads back on the source"), "{facts:?}");
    }

    #[test]
    fn the_sweep_rates_table_sets_reuse_beside_no_reuse() {
        use crate::record::bench::SweepRateRecord;
        let runs: Vec<crate::record::RunRecord> = (0..6)
            .map(|i| {
                let mut r = crate::summary::cell_runs::testing::run("a", i, 1000.0, true, true);
                (r.run.reused_guest, r.migration.guest_boot_ms) = (false, 2000.0 + 100.0 * i as f64);
                r
            })
            .collect();
        let mut reused = runs.clone();
        for r in &mut reused[1..] {
            // A reused guest's record keeps the boot time of the guest it reused.
            (r.run.reused_guest, r.migration.guest_boot_ms) = (true, 2000.0);
        }
        let env = runs[0].migration.environment.clone();
        let sweep = |reuse, secs: f64, runs: &[crate::record::RunRecord]| {
            SweepRateRecord::new(env.clone(), "smoke", reuse, secs, 6.0 / secs * 60.0, "6 of 6 healthy".into(), std::path::Path::new("r.jsonl"), runs)
        };
        let t = sweep_rates_table(&[sweep(true, 30.0, &reused), sweep(false, 45.0, &runs)]);
        let rows: Vec<&str> = t.lines().collect();
        assert!(rows[2].contains("| on ") && rows[2].contains("| 12.0 ") && rows[2].contains("| 1.50× ") && rows[2].contains("| 1 (2.0) "), "{t}");
        assert!(rows[3].contains("| off ") && rows[3].contains("| 8.0 ") && rows[3].contains("| 6 (13.5) ") && rows[3].contains("| 6 of 6 healthy "), "{t}");
        // Without a reuse-off sweep there is nothing to divide by.
        assert!(!sweep_rates_table(&[sweep(true, 30.0, &reused)]).contains('×'));
    }
}
