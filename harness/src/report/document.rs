//! The document a result set becomes, built once from the records and their summary
//! per cell: blocks (headings, prose, tables, figures) for the documents and the
//! terminal, and the data the JSON and CSV carry. What each profile's part holds is
//! [`sections::of`]; how it looks in each format is `export`'s.

use super::block::Block;
use super::figures::CellOf;
use super::sections::{self, Context};
use crate::experiment::profile::{self, Cell, Profile};
use crate::record::RunRecord;
use crate::summary::cells::CellSummary;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// A report's content, ready for any exporter.
#[derive(Debug, Clone)]
pub struct Document {
    pub title: String,
    pub blocks: Vec<Block>,
    /// Where the results came from.
    pub source: String,
    /// Each distinct environment the runs came from, once.
    pub environments: Vec<serde_json::Value>,
    pub profiles: Vec<ProfileData>,
    /// One row per run, [`RUN_COLUMNS`] wide.
    pub runs: Vec<Vec<String>>,
}

/// What the data formats say of one profile.
#[derive(Debug, Clone)]
pub struct ProfileData {
    pub name: String,
    pub description: String,
    /// Where the profile came from, in words.
    pub origin: String,
    pub varied: Vec<&'static str>,
    pub runs: usize,
    pub cells: Vec<CellSummary>,
    /// The file names of the figures its sections drew.
    pub figures: Vec<String>,
}

impl Document {
    /// A document with its title and nothing else (a reproduction without runs).
    pub fn empty(title: String, source: &str) -> Document {
        Document {
            blocks: vec![Block::Heading(1, title.clone())],
            title,
            source: source.to_string(),
            environments: Vec::new(),
            profiles: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Renames the document: its title and its first heading.
    pub fn retitle(&mut self, title: String) {
        match self.blocks.first_mut() {
            Some(Block::Heading(1, h)) => *h = title.clone(),
            _ => self.blocks.insert(0, Block::Heading(1, title.clone())),
        }
        self.title = title;
    }

    /// Puts `blocks` right under the title (a reproduction's own parts).
    pub fn insert_after_title(&mut self, blocks: Vec<Block>) {
        let at = 1.min(self.blocks.len());
        self.blocks.splice(at..at, blocks);
    }
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

/// Builds the document; `source` names where the results came from.
pub fn build(groups: &[ProfileRuns], source: &str) -> Result<Document> {
    if groups.is_empty() {
        bail!("{source} holds no runs of a profile to report on");
    }
    let title = format!("migbench report: {}", groups.iter().map(|g| g.profile.name.as_str()).collect::<Vec<_>>().join(", "));
    let mut doc = Document::empty(title, source);
    let total: usize = groups.iter().map(|g| g.runs.len()).sum();
    let mut starts: Vec<&str> = groups.iter().flat_map(|g| g.runs.iter().map(|r| r.migration.started_at.as_str())).collect();
    starts.sort();
    doc.blocks.push(Block::Markdown(format!(
        "{} from `{}`, made {} to {}. Means are over the runs that completed with a healthy guest (a cell shows \"k of n healthy\"; one with none has no figure and says why), ± the half-width of their 95 % confidence interval (Student's t); the definitions of every number are in DESIGN.md §3.",
        plural(total, "run"),
        source,
        starts.first().copied().unwrap_or("-"),
        starts.last().copied().unwrap_or("-"),
    )));
    let all: Vec<&RunRecord> = groups.iter().flat_map(|g| g.runs.iter()).collect();
    doc.blocks.push(Block::Heading(2, "Environment".into()));
    doc.blocks.push(Block::Markdown(environment_table(&all)));
    doc.environments = environments(&all);
    for g in groups {
        let (blocks, data) = profile_part(g);
        doc.blocks.extend(blocks);
        doc.profiles.push(data);
        let labels: Vec<(String, String)> = g.profile.cells.iter().enumerate().map(|(i, c)| (c.key(), g.profile.cell_label(i))).collect();
        for r in &g.runs {
            let label = labels.iter().find(|(k, _)| *k == r.run.cell_key).map(|(_, l)| l.clone()).unwrap_or_else(|| r.run.cell_key.clone());
            doc.runs.push(run_row(g, label, r));
        }
    }
    Ok(doc)
}

/// One profile's part: its heading and intro, then each of its sections.
fn profile_part(g: &ProfileRuns) -> (Vec<Block>, ProfileData) {
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
    let cx = Context { profile: p, runs: &g.runs, cells, summary: &summary, name: super::slug(&p.name), base: &g.base };
    for section in sections::of(p, &g.runs) {
        blocks.extend(section.blocks(&cx));
    }
    let figures = blocks.iter().filter_map(|b| if let Block::Figure { file, .. } = b { Some(file.clone()) } else { None }).collect();
    let data = ProfileData {
        name: p.name.clone(),
        description: p.description.clone(),
        origin: g.profile_origin.clone(),
        varied: p.varied.clone(),
        runs: g.runs.len(),
        cells: summary,
        figures,
    };
    (blocks, data)
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
        ("QEMU", &|r| {
            let e = &r.migration.environment;
            if e.qemu_label() == e.qemu_version {
                format!("{} ({})", e.qemu_version, e.qemu_path)
            } else {
                format!("{} ({} → {}), machine {}", e.qemu_label(), e.qemu_path, e.qemu_destination_path, e.machine_type)
            }
        }),
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

/// The columns of the table of runs (the CSV): one row per run, its main figures.
pub const RUN_COLUMNS: [&str; 26] = [
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

fn run_row(g: &ProfileRuns, label: String, r: &RunRecord) -> Vec<String> {
    let m = &r.migration.measurement;
    let f = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    let u = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        g.profile.name.clone(),
        label,
        r.run.cell_key.clone(),
        (r.run.repetition + 1).to_string(),
        r.migration.started_at.clone(),
        m.outcome.label().into(),
        m.health.healthy.to_string(),
        r.migration.environment.accel.to_string(),
        r.migration.environment.qemu_label(),
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
