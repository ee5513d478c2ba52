//! `migbench report`: a results file becomes a document people read (Markdown with
//! its plots as SVG files beside it, or one self-contained HTML file with the plots
//! inline) and data other tools read (JSON, CSV).
//!
//! The document is built once as a list of blocks; each format renders the list.

use super::charts::{self, Bar, BarChart, BarGroup, ProgressChart, ProgressPoint};
use crate::summary::cell_runs::{CellRuns, counts};
use crate::experiment::profile::{self, Cell, Profile};
use crate::summary::stats::Stats;
use crate::record::RunRecord;
use crate::summary::cells::CellSummary;
use crate::migration::measurement::Measurement;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::{Path, PathBuf};

/// QEMU's `dirty-pages-rate` counts target pages: 4 KiB on x86.
const PAGE_BYTES: f64 = 4096.0;
/// Progress plots per profile; a sweep with more cells gets a note instead.
const MAX_PROGRESS_PLOTS: usize = 12;
/// Latency plots per profile (one per cell).
const MAX_LATENCY_PLOTS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Md,
    Html,
    Json,
    Csv,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Html => "html",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    /// `md,html` → the formats, in that order, without repeats.
    pub fn parse_list(s: &str) -> Result<Vec<Format>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let f = match part.to_ascii_lowercase().as_str() {
                "md" | "markdown" => Format::Md,
                "html" => Format::Html,
                "json" => Format::Json,
                "csv" => Format::Csv,
                _ => bail!("--format {s}: {part:?} is not a report format; give a comma-separated list of md, html, json, csv"),
            };
            if !out.contains(&f) {
                out.push(f);
            }
        }
        if out.is_empty() {
            bail!("--format {s:?}: give at least one of md, html, json, csv");
        }
        Ok(out)
    }
}

/// One piece of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(u8, String),
    /// Markdown written for the report.
    Markdown(String),
    /// Text made for the terminal (tables and lines), shown line by line.
    Terminal(String),
    Figure { file: String, caption: String, svg: String },
}

/// A report ready to be written in any format.
#[derive(Debug, Clone)]
pub struct Report {
    pub title: String,
    pub blocks: Vec<Block>,
    pub json: serde_json::Value,
    pub csv: String,
}

/// One profile's runs and the profile that labels them.
pub struct ProfileRuns {
    pub profile: Profile,
    /// Where the profile came from, in words.
    pub profile_origin: String,
    pub runs: Vec<RunRecord>,
    /// The results directory: per-run artifacts (latency plots) are relative to it.
    pub base: PathBuf,
}

/// Groups run records by profile (in order of first appearance) and finds each
/// profile: `explicit` if its name matches, else the file in `profiles/` if every
/// run's cell is still in it, else cells rebuilt from the records themselves.
pub fn group_by_profile(records: Vec<RunRecord>, explicit: Option<&Profile>, base: &Path, source: &str) -> Vec<ProfileRuns> {
    let mut names: Vec<String> = Vec::new();
    for r in &records {
        if !names.contains(&r.run.profile) {
            names.push(r.run.profile.clone());
        }
    }
    let mut out = Vec::new();
    for name in names {
        let runs: Vec<RunRecord> = records.iter().filter(|r| r.run.profile == name).cloned().collect();
        let covers = |p: &Profile| {
            let keys: Vec<String> = p.cells.iter().map(Cell::key).collect();
            runs.iter().all(|r| keys.contains(&r.run.cell_key))
        };
        let (profile, profile_origin) = match explicit.filter(|p| p.name == name) {
            Some(p) if covers(p) => (p.clone(), format!("profile {}", p.source)),
            other => {
                let found = profile::locate(&name).ok().and_then(|path| Profile::load(&path).ok()).filter(|p| p.name == name && covers(p));
                match found {
                    Some(p) => (p.clone(), format!("profile {}", p.source)),
                    None => {
                        let cells: Vec<(usize, Cell, u32)> = runs.iter().map(|r| (r.run.cell_index, r.run.cell.clone(), r.run.repetition)).collect();
                        let why = if other.is_some() {
                            "the profile given does not hold every cell of these runs"
                        } else {
                            "no profile file of that name holds every cell of these runs"
                        };
                        (Profile::from_runs(&name, &cells, source), format!("cells rebuilt from the records: {why}"))
                    }
                }
            }
        };
        out.push(ProfileRuns { profile, profile_origin, runs, base: base.to_path_buf() });
    }
    out
}

/// Builds the report; `source` names where the results came from.
pub fn build(groups: &[ProfileRuns], source: &str) -> Result<Report> {
    if groups.is_empty() {
        bail!("{source} holds no runs of a profile to report on");
    }
    let title = if groups.len() == 1 {
        format!("migbench report: {}", groups[0].profile.name)
    } else {
        format!("migbench report: {}", groups.iter().map(|g| g.profile.name.as_str()).collect::<Vec<_>>().join(", "))
    };
    let mut blocks = vec![Block::Heading(1, title.clone())];
    let total: usize = groups.iter().map(|g| g.runs.len()).sum();
    let mut starts: Vec<&str> = groups.iter().flat_map(|g| g.runs.iter().map(|r| r.migration.started_at.as_str())).collect();
    starts.sort();
    blocks.push(Block::Markdown(format!(
        "{} from `{}`, made {} to {}. Means are over the runs that completed with a healthy guest (a cell shows \"k of n healthy\"; one with none has no figure and says why), ± the half-width of their 95 % confidence interval (Student's t); the definitions of every number are in DESIGN.md §3.",
        plural(total, "run"),
        source,
        starts.first().copied().unwrap_or("-"),
        starts.last().copied().unwrap_or("-"),
    )));
    let all: Vec<&RunRecord> = groups.iter().flat_map(|g| g.runs.iter()).collect();
    blocks.push(Block::Heading(2, "Environment".into()));
    blocks.push(Block::Markdown(environment_table(&all)));
    let mut json_profiles = Vec::new();
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(CSV_HEADER)?;
    for g in groups {
        let (section, summary) = profile_section(g)?;
        let figures: Vec<&str> = section.iter().filter_map(|b| if let Block::Figure { file, .. } = b { Some(file.as_str()) } else { None }).collect();
        json_profiles.push(json!({
            "name": g.profile.name,
            "description": g.profile.description,
            "profile": g.profile_origin,
            "varied": g.profile.varied,
            "runs": g.runs.len(),
            "cells": summary,
            "figures": figures,
        }));
        blocks.extend(section);
        for r in &g.runs {
            csv.write_record(csv_row(g, r))?;
        }
    }
    let json = json!({
        "generated_by": format!("migbench {}", env!("CARGO_PKG_VERSION")),
        "source": source,
        "runs": total,
        "environment": environments(&all),
        "profiles": json_profiles,
    });
    let csv = String::from_utf8(csv.into_inner().map_err(|e| anyhow::anyhow!("writing the CSV: {e}"))?)?;
    Ok(Report { title, blocks, json, csv })
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

fn profile_heading(p: &Profile) -> String {
    format!("Profile {}", p.name)
}

/// The environments the runs came from: each distinct one once.
fn environments(runs: &[&RunRecord]) -> Vec<serde_json::Value> {
    let mut seen: Vec<serde_json::Value> = Vec::new();
    for r in runs {
        let v = serde_json::to_value(&r.migration.environment).unwrap_or_default();
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen
}

fn environment_table(runs: &[&RunRecord]) -> String {
    let rows: [(&str, &dyn Fn(&RunRecord) -> String); 9] = [
        ("QEMU", &|r| format!("{} ({})", r.migration.environment.qemu_version, r.migration.environment.qemu_path)),
        ("accelerator", &|r| {
            let e = &r.migration.environment;
            // The note can quote QEMU at length: its first clause says enough here.
            let note = e.accel_note.split(" (").next().unwrap_or("").trim();
            if note.is_empty() { e.accel.to_string() } else { format!("{} — {note}", e.accel) }
        }),
        ("host CPU", &|r| r.migration.environment.host.cpu_model.clone()),
        ("host cores", &|r| r.migration.environment.host.cores.to_string()),
        ("host kernel", &|r| r.migration.environment.host.kernel.clone()),
        ("host OS", &|r| r.migration.environment.host.os.clone()),
        ("guest kernel", &|r| r.migration.environment.guest_kernel.clone()),
        ("guest image", &|r| r.migration.environment.guest_image.clone()),
        ("migbench", &|r| r.migration.environment.migbench_version.clone()),
    ];
    let mut b = tabled::builder::Builder::default();
    b.push_record(["", "value"]);
    let mut mixed = Vec::new();
    for (name, f) in rows {
        let mut values: Vec<String> = Vec::new();
        for r in runs {
            let v = f(r);
            if !values.contains(&v) {
                values.push(v);
            }
        }
        if values.len() > 1 {
            mixed.push(name);
        }
        b.push_record([name.to_string(), values.join("; ")]);
    }
    let mut out = b.build().with(tabled::settings::Style::markdown()).to_string();
    if !mixed.is_empty() {
        out.push_str(&format!(
            "\n\n**These runs come from more than one environment** ({} differ): compare their numbers with care.",
            mixed.join(", ")
        ));
    }
    out
}

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

fn slug(s: &str) -> String {
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

/// A figure block, or a note saying why there is none.
fn figure(file: String, caption: String, svg: Result<String>) -> Block {
    match svg {
        Ok(svg) => Block::Figure { file, caption, svg },
        Err(e) => Block::Markdown(format!("_No plot of {caption}: {e:#}._")),
    }
}

fn profile_section(g: &ProfileRuns) -> Result<(Vec<Block>, Vec<CellSummary>)> {
    let p = &g.profile;
    let mut blocks = vec![Block::Heading(2, profile_heading(p))];
    let mut intro = String::new();
    if !p.description.is_empty() {
        intro.push_str(&format!("{}.\n\n", p.description.trim_end_matches('.')));
    }
    intro.push_str(&format!(
        "{} of {} ({}). Varied: {}.",
        plural(g.runs.len(), "run"),
        plural(p.cells.len(), "cell"),
        g.profile_origin,
        if p.varied.is_empty() { "nothing".to_string() } else { p.varied.join(", ") }
    ));
    blocks.push(Block::Markdown(intro));
    let summary = crate::summary::cells::summarise(&g.runs, p);
    blocks.push(Block::Heading(3, "Summary per cell".into()));
    blocks.push(Block::Terminal(super::summary_table(&summary)));
    let mut notes = Vec::new();
    for r in &g.runs {
        for n in super::migration_notes(std::slice::from_ref(&r.migration)) {
            notes.push(format!("- {} run {}: {n}", label_of(p, &r.run.cell_key), r.run.repetition + 1));
        }
    }
    if !notes.is_empty() {
        blocks.push(Block::Markdown(format!("Runs that did not complete, left an unhealthy guest, or whose strategy never took effect:\n\n{}", notes.join("\n"))));
    }
    let cells: Vec<CellOf> = p
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = c.key();
            CellOf { cell: c, label: p.cell_label(i), runs: g.runs.iter().filter(|r| r.run.cell_key == key).collect() }
        })
        .filter(|c| !c.runs.is_empty())
        .collect();
    let name = slug(&p.name);
    blocks.extend(time_and_downtime(p, &cells, &name));
    blocks.extend(progress(p, &cells, &name));
    blocks.extend(cpu(p, &cells, &name));
    blocks.extend(workload_rates(p, &cells, &name));
    blocks.extend(service(p, &g.runs, &cells, &g.base));
    if let Some(text) = super::faults_table(&g.runs) {
        blocks.push(Block::Heading(3, "Faults".into()));
        blocks.push(Block::Terminal(text));
    }
    if let Some(text) = super::papers::reproduction(p, &g.runs) {
        blocks.push(Block::Heading(3, "Beside the paper".into()));
        blocks.push(Block::Terminal(text));
    }
    Ok((blocks, summary))
}

/// One cell of a profile that has runs, with its label.
struct CellOf<'a> {
    cell: &'a Cell,
    label: String,
    runs: Vec<&'a RunRecord>,
}

/// The label of the profile's cell with `key` (a run's cell is always one of them:
/// see [`group_by_profile`]).
fn label_of(p: &Profile, key: &str) -> String {
    p.cells.iter().position(|c| c.key() == key).map(|i| p.cell_label(i)).unwrap_or_else(|| key.to_string())
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
fn time_and_downtime(p: &Profile, cells: &[CellOf], name: &str) -> Vec<Block> {
    let mut blocks = vec![Block::Heading(3, "Migration time and downtime".into())];
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
fn progress(p: &Profile, cells: &[CellOf], name: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut shown = 0;
    let mut skipped = 0;
    for (i, c) in cells.iter().enumerate() {
        let Some(r) = c.runs.iter().find(|r| {
            counts(&r.migration.measurement) && r.migration.measurement.progress.iter().filter(|s| s.remaining.is_some()).count() >= 2
        }) else {
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
    if blocks.is_empty() {
        return blocks;
    }
    blocks.insert(0, Block::Heading(3, "Migration progress".into()));
    blocks.insert(
        1,
        Block::Markdown(
            "Remaining memory and the guest's dirty rate as QEMU reported them (`query-migrate`, sampled), for the first run of each cell that completed with a healthy guest; dashed lines start pre-copy rounds (rounds that start close together share a label), the shaded span is the switchover (source STOP → destination RESUME). QEMU computes the dirty rate from the second round on, so it reads 0 during the first.".into(),
        ),
    );
    if skipped > 0 {
        blocks.push(Block::Markdown(format!("_{skipped} more cells have progress samples; the first {MAX_PROGRESS_PLOTS} are plotted._")));
    }
    blocks
}

/// CPU use: against the cap when the profile varies it (Shreya et al.'s figures),
/// per phase otherwise.
fn cpu(p: &Profile, cells: &[CellOf], name: &str) -> Vec<Block> {
    let any = cells.iter().any(|c| c.runs.iter().any(|r| r.migration.measurement.cpu_percent.before.is_some()));
    if !any {
        return Vec::new();
    }
    let mut blocks = vec![Block::Heading(3, "CPU use".into())];
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
fn workload_rates(p: &Profile, cells: &[CellOf], name: &str) -> Vec<Block> {
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
    if units.is_empty() {
        return Vec::new();
    }
    let mut blocks = vec![
        Block::Heading(3, "Workload rate".into()),
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

/// Clients' view: the latency and outage tables, and each cell's first latency plot.
fn service(p: &Profile, runs: &[RunRecord], cells: &[CellOf], base: &Path) -> Vec<Block> {
    let Some(text) = super::service::section(p, runs) else { return Vec::new() };
    let mut blocks = vec![Block::Heading(3, "Service under migration".into()), Block::Terminal(text)];
    let mut shown = 0;
    for c in cells {
        let Some((r, file)) = c.runs.iter().find_map(|r| Some((r, r.migration.measurement.service.as_ref()?.latency_svg.clone()?))) else {
            continue;
        };
        if shown == MAX_LATENCY_PLOTS {
            break;
        }
        shown += 1;
        let caption = format!("latency of every request over run {} of {}, the migration shaded (Ghalib et al.'s figure)", r.run.repetition + 1, c.label);
        let svg = std::fs::read_to_string(base.join(&file)).with_context(|| format!("reading {}", base.join(&file).display()));
        let own = Path::new(&file).file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| file.clone());
        blocks.push(figure(format!("{}-latency-{own}", slug(&p.name)), caption, svg));
    }
    blocks
}

const CSV_HEADER: [&str; 26] = [
    "profile",
    "cell",
    "cell_key",
    "repetition",
    "started_at",
    "outcome",
    "healthy",
    "accel",
    "qemu_version",
    "ram_mib",
    "vcpus",
    "workload",
    "strategy",
    "link",
    "total_time_ms",
    "downtime_ms",
    "event_downtime_ms",
    "setup_time_ms",
    "transferred_bytes",
    "iterations",
    "guest_gap_ms",
    "service_downtime_ms",
    "cpu_before_qemu_percent",
    "cpu_during_qemu_percent",
    "slowdown_percent",
    "dirty_rate_before_mib_s",
];

fn csv_row(g: &ProfileRuns, r: &RunRecord) -> Vec<String> {
    let m = &r.migration.measurement;
    let f = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    let u = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        g.profile.name.clone(),
        label_of(&g.profile, &r.run.cell_key),
        r.run.cell_key.clone(),
        (r.run.repetition + 1).to_string(),
        r.migration.started_at.clone(),
        m.outcome.label().into(),
        m.health.healthy.to_string(),
        r.migration.environment.accel.to_string(),
        r.migration.environment.qemu_version.clone(),
        r.migration.guest.ram_mib.to_string(),
        r.migration.guest.vcpus.to_string(),
        r.migration.guest.workload.to_string(),
        r.migration.scenario.strategy.to_string(),
        r.migration.scenario.link.to_string(),
        f(m.total_time_ms),
        f(m.downtime_ms),
        f(m.event_downtime_ms),
        f(m.setup_time_ms),
        u(m.transferred_bytes),
        u(m.iterations),
        f(m.guest_gap_ms),
        f(m.service_downtime_ms),
        f(m.cpu_percent.before.map(|c| c.qemu_percent)),
        f(m.cpu_percent.during.map(|c| c.qemu_percent)),
        f(m.workload_rate.as_ref().and_then(|w| w.slowdown_percent)),
        f(m.dirty_rate_before.as_ref().map(|d| d.mib_per_s)),
    ]
}

/// Terminal text as Markdown: tables keep their lines (set apart by blank lines),
/// other lines keep their line breaks.
fn terminal_to_md(text: &str) -> String {
    let mut out = String::new();
    let mut prev_table = false;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let table = line.trim_start().starts_with('|');
        if table != prev_table && !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(line);
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        // Not before a list item: a backslash ending a paragraph is a literal one.
        if !table && !line.trim().is_empty() && !next.is_empty() && !next.starts_with('|') && !next.starts_with("- ") {
            // A hard line break.
            out.push('\\');
        }
        out.push('\n');
        prev_table = table;
    }
    out
}

impl Report {
    /// Markdown, with each figure as `plots_dir/<file>` (a path relative to the
    /// Markdown file); returns the text and the figures to write there.
    pub fn markdown(&self, plots_dir: &str) -> (String, Vec<(String, String)>) {
        let mut out = String::new();
        let mut files = Vec::new();
        for b in &self.blocks {
            match b {
                Block::Heading(level, text) => out.push_str(&format!("{} {text}\n\n", "#".repeat(*level as usize))),
                Block::Markdown(text) => out.push_str(&format!("{}\n\n", text.trim_end())),
                Block::Terminal(text) => out.push_str(&format!("{}\n\n", terminal_to_md(text).trim_end())),
                Block::Figure { file, caption, svg } => {
                    out.push_str(&format!("![{caption}]({plots_dir}/{file})\n\n"));
                    files.push((file.clone(), svg.clone()));
                }
            }
        }
        (out, files)
    }

    /// One self-contained HTML file: styles and plots inline, nothing fetched (its
    /// Content-Security-Policy forbids it).
    pub fn html(&self) -> String {
        let mut body = String::new();
        let mut toc = String::new();
        let mut nav_at = None;
        // Each profile has the same subsections: ids get -2, -3 … on repeats.
        let mut ids: Vec<String> = Vec::new();
        for b in &self.blocks {
            match b {
                Block::Heading(level, text) => {
                    let base = slug(text);
                    let mut id = base.clone();
                    let mut n = 1;
                    while ids.contains(&id) {
                        n += 1;
                        id = format!("{base}-{n}");
                    }
                    ids.push(id.clone());
                    if *level == 2 || *level == 3 {
                        toc.push_str(&format!("<li class=\"l{level}\"><a href=\"#{id}\">{}</a></li>", escape(text)));
                    }
                    body.push_str(&format!("<h{level} id=\"{id}\">{}</h{level}>\n", escape(text)));
                    if *level == 1 && nav_at.is_none() {
                        nav_at = Some(body.len());
                    }
                }
                Block::Markdown(text) => body.push_str(&md_to_html(text)),
                Block::Terminal(text) => body.push_str(&md_to_html(&terminal_to_md(text))),
                Block::Figure { caption, svg, .. } => {
                    // Drop an XML declaration: inline SVG in HTML must not have one.
                    let svg = svg.trim_start();
                    let svg = if svg.starts_with("<?xml") { svg.split_once("?>").map(|(_, rest)| rest).unwrap_or(svg) } else { svg };
                    body.push_str(&format!("<figure>{svg}<figcaption>{}</figcaption></figure>\n", escape(caption)));
                }
            }
        }
        // The contents go under the title.
        body.insert_str(nav_at.unwrap_or(0), &format!("<nav><ul>{toc}</ul></nav>\n"));
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n\
             <body>\n<main>\n{body}</main>\n</body>\n</html>\n",
            escape(&self.title)
        )
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1a1a1a;background:#fff}\
main{max-width:1200px;margin:0 auto;padding:1.5rem}\
h1{font-size:1.7rem;border-bottom:2px solid #0072b2;padding-bottom:.3rem}\
h2{font-size:1.35rem;margin-top:2.2rem;border-bottom:1px solid #ccc}\
h3{font-size:1.1rem;margin-top:1.6rem}\
table{border-collapse:collapse;margin:.8rem 0;font-size:.82rem;display:block;overflow-x:auto}\
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;white-space:nowrap}\
th{background:#eef4fa}tr:nth-child(even) td{background:#fafafa}\
figure{margin:1rem 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
figcaption{font-size:.85rem;color:#555}\
nav ul{list-style:none;padding:0;font-size:.85rem}nav li.l3{padding-left:1.2rem}\
code{background:#f3f3f3;padding:0 .2rem}";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Markdown to HTML, with tables; raw HTML in the text is shown as text.
fn md_to_html(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        e => e,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

/// Where each format goes: `out` as given for one format; for several, `out` with
/// the format's extension (replacing an extension that names a format, else added);
/// `DIR/report.<ext>` without `out`.
pub fn output_paths(formats: &[Format], out: Option<&Path>, base: &Path) -> Vec<(Format, PathBuf)> {
    formats
        .iter()
        .map(|f| {
            let path = match out {
                Some(o) if formats.len() == 1 => o.to_path_buf(),
                Some(o) => {
                    let named = o.extension().and_then(|e| e.to_str()).is_some_and(|e| Format::parse_list(e).is_ok());
                    if named {
                        o.with_extension(f.ext())
                    } else {
                        let mut s = o.as_os_str().to_owned();
                        s.push(format!(".{}", f.ext()));
                        PathBuf::from(s)
                    }
                }
                None => base.join(format!("report.{}", f.ext())),
            };
            (*f, path)
        })
        .collect()
}

/// `--out` must name a file (or a stem), not a directory.
pub fn check_out(out: &Path) -> Result<()> {
    if out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/') {
        bail!("--out {}: that is a directory; give a file (e.g. {}/report.html) or, for several formats, a stem (e.g. {}/report)", out.display(), out.display().to_string().trim_end_matches('/'), out.display().to_string().trim_end_matches('/'));
    }
    Ok(())
}

/// Writes the report in each format; returns the files written.
pub fn write(report: &Report, formats: &[Format], out: Option<&Path>, base: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (format, path) in output_paths(formats, out, base) {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = match format {
            Format::Md => {
                let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "report".into());
                let plots = format!("{stem}-plots");
                let (text, files) = report.markdown(&plots);
                let dir = path.with_file_name(&plots);
                // The plots of an earlier report there would be stale: this report owns the directory.
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for e in entries.flatten() {
                        if e.path().extension().is_some_and(|x| x == "svg") {
                            std::fs::remove_file(e.path()).with_context(|| format!("removing the old plot {}", e.path().display()))?;
                        }
                    }
                }
                if !files.is_empty() {
                    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                for (file, svg) in files {
                    let p = dir.join(file);
                    std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))?;
                    written.push(p);
                }
                text
            }
            Format::Html => report.html(),
            Format::Json => serde_json::to_string_pretty(&report.json)? + "\n",
            Format::Csv => report.csv.clone(),
        };
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_bad_ones_name_the_fix() {
        assert_eq!(Format::parse_list("md, html,md").unwrap(), vec![Format::Md, Format::Html]);
        let e = Format::parse_list("md,pdf").unwrap_err().to_string();
        assert!(e.contains("\"pdf\"") && e.contains("md, html, json, csv"), "{e}");
        assert!(Format::parse_list(" , ").is_err());
    }

    #[test]
    fn output_paths_follow_out_and_the_formats() {
        let base = Path::new("/r");
        let one = output_paths(&[Format::Html], Some(Path::new("x/rep.htm")), base);
        assert_eq!(one, vec![(Format::Html, PathBuf::from("x/rep.htm"))]);
        let two = output_paths(&[Format::Md, Format::Json], Some(Path::new("x/rep")), base);
        assert_eq!(two[0].1, PathBuf::from("x/rep.md"));
        assert_eq!(two[1].1, PathBuf::from("x/rep.json"));
        // A stem with a dot keeps it; a format's extension is replaced.
        let v2 = output_paths(&[Format::Md, Format::Html], Some(Path::new("x/rep.v2")), base);
        assert_eq!(v2[1].1, PathBuf::from("x/rep.v2.html"));
        let named = output_paths(&[Format::Md, Format::Html], Some(Path::new("x/rep.md")), base);
        assert_eq!(named[1].1, PathBuf::from("x/rep.html"));
        assert!(check_out(Path::new("/tmp")).unwrap_err().to_string().contains("that is a directory"));
        assert!(check_out(Path::new("/tmp/new/report")).is_ok());
        assert_eq!(output_paths(&[Format::Csv], None, base)[0].1, PathBuf::from("/r/report.csv"));
    }

    #[test]
    fn terminal_text_keeps_its_lines_and_tables() {
        let t = "Title line\nsecond line\n| a | b |\n|---|---|\n| 1 | 2 |\nafter\n\n- one\n- two\n";
        let html = md_to_html(&terminal_to_md(t));
        assert!(html.contains("<li>one</li>") && !html.contains('\\'), "{html}");
        assert!(html.contains("Title line<br"), "{html}");
        assert!(html.contains("<table>") && html.contains("<td>1</td>"), "{html}");
        assert!(html.contains("<p>after</p>"), "{html}");
    }

    #[test]
    fn raw_html_in_text_is_shown_not_run() {
        let html = md_to_html("a <script>alert(1)</script> b");
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn html_inlines_figures_and_needs_nothing_from_outside() {
        let r = Report {
            title: "t <1>".into(),
            blocks: vec![
                Block::Heading(1, "t <1>".into()),
                Block::Heading(2, "Part".into()),
                Block::Heading(2, "Part".into()),
                Block::Figure { file: "a.svg".into(), caption: "cap & co".into(), svg: "<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"></svg>".into() },
            ],
            json: json!({}),
            csv: String::new(),
        };
        let html = r.html();
        assert!(html.contains("<figure><svg xmlns") && !html.contains("<?xml"), "{html}");
        assert!(html.contains("cap &amp; co") && html.contains("<title>t &lt;1&gt;</title>"));
        assert!(html.contains("default-src 'none'") && html.contains("href=\"#part\"") && html.contains("href=\"#part-2\""));
        assert!(html.contains("<h2 id=\"part-2\">"), "a repeated heading gets its own id: {html}");
        let (md, files) = r.markdown("report-plots");
        assert!(md.contains("![cap & co](report-plots/a.svg)"), "{md}");
        assert_eq!(files.len(), 1);
    }
}
