//! The report's figures: a profile's runs as SVG charts (bars against what the profile
//! varies, each migration's progress, CPU use, the workload's rate, latency per
//! request), each a block with its caption, or a note saying why there is none.

use super::charts::{self, Bar, BarChart, BarGroup, ProgressChart, ProgressPoint};
use super::block::Block;
use super::slug;
use crate::experiment::profile::{Cell, Profile};
use crate::migration::measurement::Measurement;
use crate::record::RunRecord;
use crate::summary::cell_runs::{CellRuns, counts};
use crate::stats::Stats;
use anyhow::Result;
use std::path::Path;

/// QEMU's `dirty-pages-rate` counts target pages: 4 KiB on x86.
const PAGE_BYTES: f64 = 4096.0;
/// Progress plots per profile; a sweep with more cells gets a note instead.
const MAX_PROGRESS_PLOTS: usize = 12;
/// Latency plots per profile (one per cell).
const MAX_LATENCY_PLOTS: usize = 12;

/// The value of one variable of a cell, as profiles write it.
fn value_of(cell: &Cell, var: &str) -> String {
    let d = cell.describe(&[var]);
    d.split_once('=').map(|(_, v)| v.to_string()).unwrap_or(d)
}

/// The other varied variables of a cell (a series name), "all" when there are none.
fn rest_of(cell: &Cell, varied: &[&'static str], axis: &str) -> String {
    let rest: Vec<&str> = varied.iter().copied().filter(|v| *v != axis).collect();
    let d = cell.describe(&rest);
    if d.is_empty() { "all".into() } else { d }
}

fn bar_of(stats: Option<Stats>) -> Option<Bar> {
    stats.map(|s| Bar { value: s.mean, err: s.ci95 })
}

/// A figure block, or a note saying why there is none.
fn figure(file: String, caption: String, svg: Result<String>) -> Block {
    match svg {
        Ok(svg) => Block::Figure { file, caption, svg },
        Err(e) => Block::Markdown(format!("_No plot of {caption}: {e:#}._")),
    }
}

/// One cell of a profile that has runs, with its label.
pub(crate) struct CellOf<'a> {
    pub cell: &'a Cell,
    pub label: String,
    pub runs: Vec<&'a RunRecord>,
}

/// Bars against one variable: a group per value of `axis`, a bar per combination of
/// the other varied variables, each the mean (± CI) of `value` over the runs that
/// count (completed, guest healthy). Returns the series names and the groups.
fn against(
    p: &Profile,
    cells: &[CellOf],
    axis: &str,
    value: &dyn Fn(&Measurement) -> Option<f64>,
) -> (Vec<String>, Vec<BarGroup>) {
    let mut xs: Vec<String> = Vec::new();
    let mut series: Vec<String> = Vec::new();
    for CellOf { cell: c, .. } in cells {
        let x = value_of(c, axis);
        if !xs.contains(&x) {
            xs.push(x);
        }
        let s = rest_of(c, &p.varied, axis);
        if !series.contains(&s) {
            series.push(s);
        }
    }
    let groups = xs
        .iter()
        .map(|x| BarGroup {
            label: format!("{axis}={x}"),
            bars: series
                .iter()
                .map(|s| {
                    let runs = CellRuns::new(
                        cells.iter().filter(|c| value_of(c.cell, axis) == *x && rest_of(c.cell, &p.varied, axis) == *s).flat_map(|c| c.runs.iter().copied()),
                    );
                    bar_of(runs.stats(value))
                })
                .collect(),
        })
        .collect();
    (series, groups)
}

/// Bars per cell: a bar per series, each the mean (± CI) of its value over the runs that count.
fn per_cell(cells: &[CellOf], series: &[&dyn Fn(&Measurement) -> Option<f64>]) -> Vec<BarGroup> {
    cells
        .iter()
        .map(|c| {
            let runs = CellRuns::new(c.runs.iter().copied());
            BarGroup { label: c.label.clone(), bars: series.iter().map(|f| bar_of(runs.stats(f))).collect() }
        })
        .collect()
}

/// The caption's note when a chart has a gap.
fn gaps(chart: &BarChart, what: &str) -> String {
    if chart.groups.iter().any(|g| g.bars.iter().any(Option::is_none)) { format!("; a missing bar is a cell {what}") } else { String::new() }
}

/// Total time and downtime against RAM, link and strategy (whichever the profile
/// varies; against the cells when it varies none of them).
pub(crate) fn time_and_downtime(p: &Profile, cells: &[CellOf], name: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let axes: Vec<&str> = ["ram_mib", "link", "strategy"].into_iter().filter(|a| p.varied.contains(a)).collect();
    let metrics: [(&str, &str, fn(&Measurement) -> Option<f64>); 2] =
        [("total_time", "total migration time (ms)", |m| m.total_time_ms), ("downtime", "downtime (ms)", |m| m.downtime_ms)];
    for (key, label, f) in metrics {
        if axes.is_empty() {
            let chart = BarChart {
                title: format!("{}: {label}", p.name),
                x_label: "cell".into(),
                y_label: label.into(),
                series: vec![label.into()],
                groups: per_cell(cells, &[&f]),
            };
            let caption = format!("{label} per cell{}", gaps(&chart, "without a healthy completed run"));
            blocks.push(figure(format!("{name}-{key}.svg"), caption, charts::bars(&chart)));
        }
        for axis in &axes {
            let (series, groups) = against(p, cells, axis, &f);
            let chart = BarChart { title: format!("{}: {label} vs {axis}", p.name), x_label: axis.to_string(), y_label: label.into(), series, groups };
            let caption = format!("{label} against {axis}{}", gaps(&chart, "without a healthy completed run"));
            blocks.push(figure(format!("{name}-{key}-vs-{}.svg", slug(axis)), caption, charts::bars(&chart)));
        }
    }
    blocks
}

/// The migration's progress (remaining bytes and dirty rate over time, rounds
/// marked) for the first run of each cell that counts (completed, guest healthy).
pub(crate) fn progress(p: &Profile, cells: &[CellOf], name: &str) -> Vec<Block> {
    let mut blocks = vec![Block::Markdown(
        "Remaining memory and the guest's dirty rate as QEMU reported them (`query-migrate`, sampled), for the first run of each cell that completed with a healthy guest; dashed lines start pre-copy rounds (rounds that start close together share a label), the shaded span is the switchover (source STOP → destination RESUME). QEMU computes the dirty rate from the second round on, so it reads 0 during the first.".into(),
    )];
    let mut shown = 0;
    let mut skipped = 0;
    for (i, c) in cells.iter().enumerate() {
        let Some(r) = c.runs.iter().find(|r| has_progress(r)) else {
            continue;
        };
        if shown == MAX_PROGRESS_PLOTS {
            skipped += 1;
            continue;
        }
        shown += 1;
        let m = &r.migration.measurement;
        let points = m
            .progress
            .iter()
            .map(|s| ProgressPoint {
                t_s: s.t_ms / 1000.0,
                remaining_mib: s.remaining.map(|b| b as f64 / 1048576.0),
                dirty_mib_s: s.dirty_rate_pps.map(|pps| pps as f64 * PAGE_BYTES / 1048576.0),
                round: s.iteration,
            })
            .collect();
        let at = |side: &str, event: &str| m.events.iter().find(|e| e.side == side && e.name == event).map(|e| e.t_ms / 1000.0);
        let switchover = at("source", "STOP").zip(at("destination", "RESUME"));
        let label = &c.label;
        let chart = ProgressChart { title: format!("{}: {label}, run {}", p.name, r.run.repetition + 1), points, switchover };
        blocks.push(figure(
            format!("{name}-progress-{i}.svg"),
            format!("progress of a migration of {label}: remaining memory and dirty rate per pre-copy round"),
            charts::progress(&chart),
        ));
    }
    if skipped > 0 {
        blocks.push(Block::Markdown(format!("_{skipped} more cells have progress samples; the first {MAX_PROGRESS_PLOTS} are plotted._")));
    }
    blocks
}

/// CPU use: against the cap when the profile varies it (Shreya et al.'s figures),
/// per phase otherwise.
pub(crate) fn cpu(p: &Profile, cells: &[CellOf], name: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    if p.varied.contains(&"cap_percent") {
        let whose: [(&str, &str, fn(&Measurement) -> Option<f64>); 2] = [
            ("qemu", "QEMU process", |m| m.cpu_percent.before.map(|u| u.qemu_percent)),
            ("guest", "the guest's own view", |m| m.cpu_percent.before.and_then(|u| u.guest_percent)),
        ];
        for (key, who, f) in whose {
            let (series, groups) = against(p, cells, "cap_percent", &f);
            let chart = BarChart {
                title: format!("{}: CPU use before migrating, {who}", p.name),
                x_label: "CPU cap (% of one CPU)".into(),
                y_label: "CPU use (% of one CPU)".into(),
                series,
                groups,
            };
            let caption = format!("CPU use against the cap, {who}{}", gaps(&chart, "without this figure"));
            blocks.push(figure(format!("{name}-cpu-{key}-vs-cap.svg"), caption, charts::bars(&chart)));
        }
        return blocks;
    }
    let phases: [(&str, fn(&Measurement) -> Option<f64>); 3] = [
        ("before", |m| m.cpu_percent.before.map(|u| u.qemu_percent)),
        ("during", |m| m.cpu_percent.during.map(|u| u.qemu_percent)),
        ("after", |m| m.cpu_percent.after.map(|u| u.qemu_percent)),
    ];
    let fs: Vec<&dyn Fn(&Measurement) -> Option<f64>> = phases.iter().map(|(_, f)| f as &dyn Fn(&Measurement) -> Option<f64>).collect();
    let chart = BarChart {
        title: format!("{}: QEMU's CPU use before, during and after migrating", p.name),
        x_label: "cell".into(),
        y_label: "CPU use (% of one CPU)".into(),
        series: phases.iter().map(|(n, _)| n.to_string()).collect(),
        groups: per_cell(cells, &fs),
    };
    blocks.push(figure(
        format!("{name}-cpu-phases.svg"),
        format!("CPU use of the QEMU processes per phase (during: source and destination together){}", gaps(&chart, "phase without this figure")),
        charts::bars(&chart),
    ));
    blocks
}

/// The workload's own rate before, during and after, one chart per unit.
pub(crate) fn workload_rates(p: &Profile, cells: &[CellOf], name: &str) -> Vec<Block> {
    let mut units: Vec<String> = Vec::new();
    for c in cells {
        for r in &c.runs {
            if let Some(w) = &r.migration.measurement.workload_rate {
                if !units.contains(&w.unit) {
                    units.push(w.unit.clone());
                }
            }
        }
    }
    let mut blocks = vec![
        Block::Markdown("The guest workload's own rate per phase, as it reported it, over the runs that completed with a healthy guest (a broken guest's counts are not work); the summary table has the slowdown during the migration.".into()),
    ];
    for unit in units {
        let phases: [(&str, fn(&crate::migration::measurement::WorkloadRate) -> Option<f64>); 3] =
            [("before", |w| w.before), ("during", |w| w.during), ("after", |w| w.after)];
        let groups = cells
            .iter()
            .filter(|c| c.runs.iter().any(|r| r.migration.measurement.workload_rate.as_ref().is_some_and(|w| w.unit == unit)))
            .map(|c| BarGroup {
                label: c.label.clone(),
                bars: phases
                    .iter()
                    .map(|(_, f)| {
                        let runs = CellRuns::new(c.runs.iter().copied());
                        bar_of(runs.stats(|m| m.workload_rate.as_ref().filter(|w| w.unit == unit).and_then(f)))
                    })
                    .collect(),
            })
            .collect();
        let chart = BarChart {
            title: format!("{}: workload rate ({unit}/s)", p.name),
            x_label: "cell".into(),
            y_label: format!("{unit} per second"),
            series: phases.iter().map(|(n, _)| n.to_string()).collect(),
            groups,
        };
        blocks.push(figure(format!("{name}-rate-{}.svg", slug(&unit)), format!("workload rate in {unit}/s per phase"), charts::bars(&chart)));
    }
    blocks
}

/// Each cell's first latency plot (Ghalib et al.'s figure), as the run's record names it.
pub(crate) fn latency(cells: &[CellOf], base: &Path, name: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    for c in cells {
        let Some((r, file)) = c.runs.iter().find_map(|r| Some((r, r.migration.measurement.service.as_ref()?.latency_svg.clone()?))) else {
            continue;
        };
        if blocks.len() == MAX_LATENCY_PLOTS {
            break;
        }
        let caption = format!("latency of every request over run {} of {}, the migration shaded (Ghalib et al.'s figure)", r.run.repetition + 1, c.label);
        let own = Path::new(&file).file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| file.clone());
        blocks.push(figure(format!("{name}-latency-{own}"), caption, super::plot::run_latency_svg(base, r)));
    }
    blocks
}

/// Whether a run has a progress plot: it counts, and QEMU reported the remaining
/// memory at least twice.
pub(crate) fn has_progress(r: &RunRecord) -> bool {
    counts(&r.migration.measurement) && r.migration.measurement.progress.iter().filter(|s| s.remaining.is_some()).count() >= 2
}
