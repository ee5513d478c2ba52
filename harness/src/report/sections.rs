//! What a result set's report holds: the one list of sections that both the
//! terminal summary (after `run`, `bench`, `reproduce`, `merge --profile`) and every
//! document render. The terminal shows a section's text; the documents add its
//! heading, prose and plots.

use super::block::Block;
use super::figures::{self, CellOf};
use crate::experiment::profile::{Cell, Profile};
use crate::record::RunRecord;
use crate::summary::cells::CellSummary;
use std::path::Path;

/// One section of a profile's part of a report, in the order they appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Mean ± CI per cell over the runs that count, "k of n healthy", and why the
    /// others do not count.
    Summary,
    /// Every run that did not complete, left an unhealthy guest, or whose strategy
    /// never took effect, with the reason in full.
    RunsNotCounted,
    /// Total time and downtime against RAM, link and strategy (plots).
    TimeAndDowntime,
    /// QEMU's expected downtime beside the measured one, per cell.
    Downtime,
    /// Save to a file and restore (mapped-ram): times and the file's size, per cell.
    SavedToFile,
    /// Remaining memory and dirty rate over each cell's first counted run (plots).
    Progress,
    /// CPU use against the cap, or per phase (plots).
    Cpu,
    /// The workload's own rate before, during and after (plots).
    WorkloadRate,
    /// Latency and outage as the clients of an HTTP guest saw them, with each cell's
    /// latency plot.
    Service,
    /// Post-copy's page faults per cell (requests, stall, latency), strategies side by side.
    Postcopy,
    /// The faults injected and whether each run ended as QEMU's semantics say.
    Faults,
    /// Whether the harness and the service held up over a long sweep (a soak).
    Endurance,
    /// The paper's numbers beside ours, with a verdict per claim.
    Paper,
}

/// A sweep this long also reports its endurance.
const ENDURANCE_RUNS: usize = 10;

impl Section {
    /// The heading in the documents (the terminal text carries its own titles).
    pub fn heading(self) -> Option<&'static str> {
        Some(match self {
            Section::Summary => "Summary per cell",
            // It belongs to the summary above it.
            Section::RunsNotCounted => return None,
            Section::TimeAndDowntime => "Migration time and downtime",
            Section::Downtime => "Expected and measured downtime",
            Section::SavedToFile => "Save to a file and restore",
            Section::Progress => "Migration progress",
            Section::Cpu => "CPU use",
            Section::WorkloadRate => "Workload rate",
            Section::Service => "Service under migration",
            Section::Postcopy => "Post-copy page faults",
            Section::Faults => "Faults",
            Section::Endurance => "Endurance",
            Section::Paper => "Beside the paper",
        })
    }
}

/// The sections `runs` of `profile` get. Per-cell sections look at the runs of the
/// profile's cells; the others at every run given.
pub fn of(profile: &Profile, runs: &[RunRecord]) -> Vec<Section> {
    let keys: Vec<String> = profile.cells.iter().map(Cell::key).collect();
    let in_cells = || runs.iter().filter(|r| keys.contains(&r.run.cell_key));
    let measured = |f: &dyn Fn(&RunRecord) -> bool| in_cells().any(f);
    [
        (Section::Summary, true),
        (Section::RunsNotCounted, runs.iter().any(|r| !super::migration_notes(std::slice::from_ref(&r.migration)).is_empty())),
        (Section::TimeAndDowntime, true),
        (Section::Downtime, measured(&super::downtime::has_expected)),
        (Section::SavedToFile, measured(&super::saved_file::saved)),
        (Section::Progress, measured(&figures::has_progress)),
        (Section::Cpu, measured(&|r| r.migration.measurement.cpu_percent.before.is_some())),
        (Section::WorkloadRate, measured(&|r| r.migration.measurement.workload_rate.is_some())),
        (Section::Service, measured(&|r| r.migration.measurement.service.is_some())),
        (Section::Postcopy, measured(&|r| r.migration.measurement.postcopy_started_ms.is_some())),
        (Section::Faults, runs.iter().any(|r| r.migration.measurement.fault.is_some())),
        (Section::Endurance, runs.len() >= ENDURANCE_RUNS),
        (Section::Paper, profile.reproduces.is_some()),
    ]
    .into_iter()
    .filter_map(|(s, applies)| applies.then_some(s))
    .collect()
}

/// What a section is built from: one profile's runs, grouped by cell and summarised.
pub(crate) struct Context<'a> {
    pub profile: &'a Profile,
    pub runs: &'a [RunRecord],
    /// The profile's cells that have runs.
    pub cells: Vec<CellOf<'a>>,
    pub summary: &'a [CellSummary],
    /// The profile's name as figures' file names start.
    pub name: String,
    /// The results directory: runs' own files (latency plots) are relative to it.
    pub base: &'a Path,
}

impl Section {
    /// The section's blocks: its heading, then its text, prose and figures.
    pub(crate) fn blocks(self, cx: &Context) -> Vec<Block> {
        let (p, runs, cells, name) = (cx.profile, cx.runs, &cx.cells[..], cx.name.as_str());
        let text = |t: String| vec![Block::Terminal(t)];
        let body = match self {
            Section::Summary => text(super::summary_table(cx.summary)),
            Section::RunsNotCounted => {
                let mut notes = Vec::new();
                for r in runs {
                    for n in super::migration_notes(std::slice::from_ref(&r.migration)) {
                        notes.push(format!("- {} run {}: {n}", label_of(p, &r.run.cell_key), r.run.repetition + 1));
                    }
                }
                text(format!("Runs that did not complete, left an unhealthy guest, or whose strategy never took effect:\n\n{}", notes.join("\n")))
            }
            Section::TimeAndDowntime => figures::time_and_downtime(p, cells, name),
            Section::Downtime => super::downtime::table(&|k| label_of(p, k), runs).map(text).unwrap_or_default(),
            Section::SavedToFile => super::saved_file::table(&|k| label_of(p, k), runs).map(text).unwrap_or_default(),
            Section::Progress => figures::progress(p, cells, name),
            Section::Cpu => figures::cpu(p, cells, name),
            Section::WorkloadRate => figures::workload_rates(p, cells, name),
            Section::Service => {
                let mut blocks = super::service::section(p, runs).map(text).unwrap_or_default();
                blocks.extend(figures::latency(cells, cx.base, name));
                blocks
            }
            Section::Postcopy => super::postcopy_table(cx.summary).map(text).unwrap_or_default(),
            Section::Faults => super::faults_table(runs).map(text).unwrap_or_default(),
            Section::Endurance => text(crate::summary::endurance::endurance(runs)),
            Section::Paper => super::papers::reproduction(p, runs).map(text).unwrap_or_default(),
        };
        self.heading().map(|h| Block::Heading(3, h.into())).into_iter().chain(body).collect()
    }
}

/// The label of the profile's cell with `key`, or the key itself for a run whose
/// cell the profile no longer has.
pub(crate) fn label_of(p: &Profile, key: &str) -> String {
    p.cells.iter().position(|c| c.key() == key).map(|i| p.cell_label(i)).unwrap_or_else(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::profile::Reproduction;
    use crate::migration::measurement::FaultRecord;
    use crate::migration::scenario::Fault;
    use crate::migration::strategy::Strategy;
    use crate::report::document::{self, ProfileRuns};
    use crate::report::export::{Exporter, markdown::Markdown, terminal::Terminal};
    use crate::summary::cell_runs::testing::run;

    #[test]
    fn the_terminal_and_the_documents_render_one_list_of_sections() {
        // A long sweep of one cell, a run that broke its guest, a fault, a paper.
        let mut runs: Vec<RunRecord> = (0..12).map(|i| run("x", i, 1000.0 + i as f64, i != 3, true)).collect();
        for r in &mut runs {
            r.run.cell_key = r.run.cell.key();
        }
        runs[5].migration.measurement.fault = Some(FaultRecord::before_migrating(Fault::BadQemuOption, Strategy::Precopy, "started".into(), true, true));
        let mut profile = Profile::from_runs("p", &[(0, runs[0].run.cell.clone(), 0)], "t");
        profile.reproduces = Some(Reproduction::ShreyaTable5);
        use Section::*;
        let sections = of(&profile, &runs);
        assert_eq!(sections, [Summary, RunsNotCounted, TimeAndDowntime, Progress, Cpu, WorkloadRate, Faults, Endurance, Paper]);
        assert_eq!(of(&profile, &runs[..2]), [Summary, TimeAndDowntime, Progress, Cpu, WorkloadRate, Paper], "two healthy runs, no fault: fewer sections");

        let group = ProfileRuns { profile, profile_origin: "profile t".into(), runs, base: Path::new("/nonexistent").into() };
        let doc = document::build(&[group], "t").unwrap();
        let terminal = Terminal.render(&doc).unwrap();
        let md = Markdown { plots_dir: "plots".into() }.render(&doc).unwrap();
        // Each section's text, in the list's order, on the terminal and in the document.
        let texts = ["| cell ", "Runs that did not complete", "Faults injected: 1 runs", "Endurance: 12 migrations", "Shreya et al., Table 5"];
        let at = |text: &str, what: &str| text.find(what).unwrap_or_else(|| panic!("{what:?} missing from {text}"));
        for pair in texts.windows(2) {
            assert!(at(&terminal, pair[0]) < at(&terminal, pair[1]), "terminal: {pair:?} out of order");
            assert!(at(&md, pair[0]) < at(&md, pair[1]), "document: {pair:?} out of order");
        }
        let headings: Vec<&str> = md.lines().filter_map(|l| l.strip_prefix("### ")).collect();
        let want: Vec<&str> = sections.iter().filter_map(|s| s.heading()).collect();
        assert_eq!(headings, want);
        // The terminal has no headings, prose or plots: only the sections' text.
        assert!(!terminal.contains("###") && !terminal.contains("![") && !terminal.contains("Means are over"), "{terminal}");
    }
}
