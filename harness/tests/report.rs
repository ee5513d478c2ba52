//! `migbench report` on committed results (harness/tests/data/report: a RAM × link
//! sweep and one Ghalib run with its latency plot): the document's structure, its
//! numbers against the records, well-formed SVGs, and the HTML rendered by headless
//! Chromium.

mod common;

use common::{migbench, processes_mentioning};
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/report")
}

fn records() -> Vec<serde_json::Value> {
    std::fs::read_to_string(data().join("results.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn run(tmp: &Path, args: &[&str]) -> (bool, String, String) {
    let out = migbench(tmp).arg("report").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Mean total time of the runs of the golden profile's cell that completed with a healthy guest.
fn mean_total(recs: &[serde_json::Value], ram: u64, link: &str) -> (f64, usize) {
    let v: Vec<f64> = recs
        .iter()
        .filter(|r| r["run"]["profile"] == "report-golden" && r["run"]["cell"]["ram_mib"] == ram && r["run"]["cell"]["link"] == link)
        .filter(|r| r["outcome"]["kind"] == "completed" && r["health"]["healthy"] == true)
        .filter_map(|r| r["total_time_ms"].as_f64())
        .collect();
    (v.iter().sum::<f64>() / v.len().max(1) as f64, v.len())
}

fn well_formed_svg(text: &str, what: &str) {
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{what} is not well-formed XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg", "{what}");
    assert!(doc.descendants().filter(|n| n.is_element()).count() > 20, "{what} draws next to nothing");
}

#[test]
fn every_format_holds_the_records_numbers_and_well_formed_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rep/r");
    let profile = data().join("report-golden.toml");
    let (ok, stdout, stderr) =
        run(tmp.path(), &[data().to_str().unwrap(), "--format", "md,html,json,csv", "--out", out.to_str().unwrap(), "--profile", profile.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    let recs = records();
    let md = std::fs::read_to_string(out.with_extension("md")).unwrap();

    // The structure: environment first, then each profile with its sections in order.
    let headings: Vec<&str> = md.lines().filter(|l| l.starts_with('#')).collect();
    let expect = [
        "# migbench report: report-golden, ghalib-web",
        "## Environment",
        "## Profile report-golden",
        "### Summary per cell",
        "### Migration time and downtime",
        "### Migration progress",
        "### CPU use",
        "### Workload rate",
        "## Profile ghalib-web",
        "### Service under migration",
        "### Beside the paper",
    ];
    let mut at = 0;
    for h in expect {
        let found = headings[at..].iter().position(|x| *x == h).unwrap_or_else(|| panic!("{h:?} missing or out of order in {headings:?}"));
        at += found + 1;
    }
    let accel = md.lines().find(|l| l.starts_with("| accelerator ")).expect("the accelerator in the environment");
    assert!(accel.contains("| tcg") || accel.contains("| kvm"), "{accel}");
    assert!(md.lines().any(|l| l.starts_with("| QEMU ") && l.contains("qemu-system-x86_64")), "{md}");
    assert!(md.contains("(profile ") && md.contains("report-golden.toml)"), "the profile given is used: {md}");
    // The summary's numbers are the records' (mean of the healthy completed runs).
    for (ram, link) in [(128, "1Gbit"), (256, "1Gbit")] {
        let (mean, n) = mean_total(&recs, ram, link);
        assert!(n >= 2);
        let row = md.lines().find(|l| l.starts_with(&format!("| ram_mib={ram} link={link} "))).expect("the cell's row");
        assert!(row.contains(&format!("| {mean:.0} ± ")), "{row} lacks the mean {mean:.0}");
    }
    // A cell with a cancelled run and a completed one that broke its guest (7815 ms, a
    // figure from a broken guest) has no healthy completed run: no figure, and why.
    let row = md.lines().find(|l| l.starts_with("| ram_mib=128 link=100Mbit ")).expect("the 100 Mbit cell's row");
    let cols: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(&cols[2..5], ["0 of 2 healthy", "-", "-"], "{row}");
    assert!(!md.contains("7815") && !md.contains("8256"), "a broken guest's total time reached the report: {md}");
    let why = md.lines().find(|l| l.starts_with("- ram_mib=128 link=100Mbit: ")).expect("why the cell has no figure");
    assert!(why.contains("0 of 2 healthy: cancelled: not finished after 60 s") && why.contains("guest not healthy on the destination"), "{why}");
    // The unhealthy runs stay in the record and are listed.
    assert!(md.contains("cancelled — not finished after 60 s"), "{md}");
    assert!(md.contains("guest on the destination is NOT healthy"), "{md}");
    // The Ghalib section beside the paper, and its latency plot.
    assert!(md.contains("Ghalib et al.") && md.contains("service_downtime_ms"), "{md}");

    // Every plot the Markdown shows is a well-formed SVG beside it, and there are no others.
    let plots_dir = out.with_file_name("r-plots");
    let shown: Vec<&str> = md.lines().filter_map(|l| l.strip_prefix("![")).filter_map(|l| l.split("](r-plots/").nth(1)).map(|f| f.trim_end_matches(')')).collect();
    let files: Vec<String> = std::fs::read_dir(&plots_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(shown.len(), files.len(), "{shown:?} vs {files:?}");
    for f in &shown {
        well_formed_svg(&std::fs::read_to_string(plots_dir.join(f)).unwrap(), f);
    }
    for want in ["report-golden-total_time-vs-ram-mib.svg", "report-golden-total_time-vs-link.svg", "report-golden-downtime-vs-link.svg", "report-golden-cpu-phases.svg", "report-golden-rate-mib.svg", "ghalib-web-latency-4a637311df24-r0.svg"] {
        assert!(shown.contains(&want), "{want} not in {shown:?}");
    }
    // Progress: one plot per cell with a healthy completed run (the two 1 Gbit cells, 1 and 3).
    let progress: Vec<&&str> = shown.iter().filter(|f| f.starts_with("report-golden-progress-")).collect();
    assert_eq!(progress, [&"report-golden-progress-1.svg", &"report-golden-progress-3.svg"], "{shown:?}");
    let progress = std::fs::read_to_string(plots_dir.join("report-golden-progress-3.svg")).unwrap();
    assert!(progress.contains("remaining (MiB)") && progress.contains("dirty rate (MiB/s)") && progress.contains("round 3"), "progress plot lacks its panels or rounds");

    // HTML: the same figures inline, nothing to fetch.
    let html = std::fs::read_to_string(out.with_extension("html")).unwrap();
    assert_eq!(html.matches("<figure><svg").count(), shown.len());
    assert!(html.contains("default-src 'none'"));
    assert!(!html.contains("src=\"http") && !html.contains("<link") && !html.contains("<script"), "the HTML refers to something outside itself");
    assert!(html.contains("<table>") && html.contains("<td>ram_mib=256 link=1Gbit</td>"), "tables are HTML tables");

    // JSON: the same means, and the figures by name.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(json["runs"], recs.len());
    let golden = &json["profiles"][0];
    assert_eq!(golden["name"], "report-golden");
    let cell = golden["cells"].as_array().unwrap().iter().find(|c| c["label"] == "ram_mib=256 link=1Gbit").unwrap();
    let (mean, _) = mean_total(&recs, 256, "1Gbit");
    assert!((cell["total_time_ms"]["mean"].as_f64().unwrap() - mean).abs() < 1e-6, "{cell}");
    assert_eq!((cell["counted"].as_u64(), cell["tally"].as_str()), (Some(2), Some("2 of 2 healthy")), "{cell}");
    let none = golden["cells"].as_array().unwrap().iter().find(|c| c["label"] == "ram_mib=256 link=100Mbit").unwrap();
    assert!(none["total_time_ms"].is_null() && none["counted"] == 0, "{none}");
    assert!(none["why_no_figure"].as_str().unwrap().starts_with("0 of 2 healthy: cancelled"), "{none}");
    let figures = json["profiles"].as_array().unwrap().iter().map(|p| p["figures"].as_array().unwrap().len()).sum::<usize>();
    assert_eq!(figures, shown.len());

    // CSV: one row per run with its figures.
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), recs.len());
    for (row, rec) in rows.iter().zip(&recs) {
        assert_eq!(row[col("outcome")], *rec["outcome"]["kind"].as_str().unwrap());
        match rec["total_time_ms"].as_f64() {
            Some(t) => assert_eq!(row[col("total_time_ms")].parse::<f64>().unwrap(), t),
            None => assert_eq!(&row[col("total_time_ms")], ""),
        }
    }
}

#[test]
fn bad_input_is_an_error_that_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(tmp.path(), &[tmp.path().join("nothing").to_str().unwrap()]);
    assert!(!ok && err.contains("nothing does not exist") && err.contains("give a results directory"), "{err}");
    let (ok, _, err) = run(tmp.path(), &[data().to_str().unwrap(), "--format", "md,pdf"]);
    assert!(!ok && err.contains("\"pdf\"") && err.contains("md, html, json, csv"), "{err}");
    let junk = tmp.path().join("junk.jsonl");
    std::fs::write(&junk, "{\"not\": \"a run\"}\n").unwrap();
    let (ok, _, err) = run(tmp.path(), &[junk.to_str().unwrap()]);
    assert!(!ok && err.contains("holds no run records"), "{err}");
    let (ok, _, err) = run(tmp.path(), &[data().to_str().unwrap(), "--profile", "smoke", "--out", tmp.path().join("x").to_str().unwrap()]);
    assert!(!ok && err.contains("--profile smoke") && err.contains("report-golden"), "{err}");
    // Nothing was written by the failed calls.
    assert!(!tmp.path().join("x.md").exists());
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r.html");
    let png = tmp.path().join("r.png");
    let (ok, stdout, stderr) =
        run(tmp.path(), &[data().to_str().unwrap(), "--format", "html", "--out", out.to_str().unwrap(), "--screenshot", png.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    // The tool checked the picture is not blank; check it again here.
    let (w, h, ink) = migbench::report::browser::ink(&png).unwrap();
    assert!(w >= 1000 && h >= 1000, "{w}×{h}");
    assert!(ink > 2.0, "the screenshot is nearly blank: {ink:.2} % ink");
    assert!(stdout.contains("not background"), "{stdout}");
    // Chromium and its helpers are gone (they all name its profile, made in our TMPDIR),
    // and so is that profile.
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("migbench-chromium-")).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn reproduce_chandak_puts_the_papers_decisions_beside_the_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("chandak");
    let o = migbench(tmp.path()).args(["reproduce", "chandak", "--no-live", "--format", "md,json", "--out", out.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.starts_with("# migbench reproduces Chandak et al."), "{md}");
    assert!(md.contains("cannot match their absolute times"), "{md}");
    for (table, decision) in [(1, "A2: Host 3 → Host 2"), (2, "K2: Host 2 → Host 3"), (3, "K3: Host 2 → Host 3"), (4, "none (balanced)")] {
        let row = md.lines().find(|l| l.starts_with(&format!("| Table {table} "))).unwrap_or_else(|| panic!("Table {table} missing: {md}"));
        assert_eq!(row.matches(decision).count(), 2, "paper and engine agree on Table {table}: {row}");
        assert!(row.trim_end().ends_with("| yes     |") || row.contains("| yes "), "{row}");
    }
    assert!(md.contains("matches the paper's in 4 of 4 rounds"), "{md}");
    // Bad input: an unknown paper names the ones there are.
    let o = migbench(tmp.path()).args(["reproduce", "sahnii"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && ["ghalib", "shreya", "chandak", "sahni", "thesis"].iter().all(|p| err.contains(p)), "{err}");
}

/// The runs `reproduce sahni` and `reproduce thesis` measured on this machine
/// (harness/tests/data/papers: their records without the progress samples and
/// events), with one run of `cell` broken by the test: its guest unhealthy and its
/// total time absurd. Returns the results directory and the broken run's healthy
/// siblings' mean total time.
fn papers_results(tmp: &Path, name: &str, workload: &str, strategy: &str) -> (PathBuf, f64) {
    let text = std::fs::read_to_string(data().with_file_name("papers").join(format!("{name}.jsonl"))).unwrap();
    let mut recs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of_cell = |r: &serde_json::Value| r["run"]["cell"]["workload"] == workload && r["run"]["cell"]["strategy"] == strategy;
    let broken = recs.iter().position(of_cell).expect("the cell has runs");
    recs[broken]["health"]["healthy"] = false.into();
    recs[broken]["health"]["detail"] = "Kernel panic (injected by the test)".into();
    recs[broken]["total_time_ms"] = 987_654.0.into();
    let others: Vec<f64> = recs.iter().enumerate().filter(|(i, r)| *i != broken && of_cell(r)).map(|(_, r)| r["total_time_ms"].as_f64().unwrap()).collect();
    assert_eq!(others.len(), 2, "three runs per cell");
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let lines: Vec<String> = recs.iter().map(|r| r.to_string()).collect();
    std::fs::write(dir.join("results.jsonl"), lines.join("\n") + "\n").unwrap();
    (dir, others.iter().sum::<f64>() / 2.0)
}

/// The cells of a Markdown table row, trimmed.
fn cols(row: &str) -> Vec<&str> {
    row.split('|').map(str::trim).collect()
}

#[test]
fn reproduce_sahni_sections_render_from_results_and_count_only_healthy_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mean) = papers_results(tmp.path(), "sahni", "idle", "hybrid");
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/sahni.toml");
    let out = tmp.path().join("r.md");
    let (ok, stdout, stderr) = run(tmp.path(), &[dir.to_str().unwrap(), "--format", "md", "--out", out.to_str().unwrap(), "--profile", profile.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    let md = std::fs::read_to_string(&out).unwrap();
    let section = &md[md.find("## Sahni & Varma").unwrap_or_else(|| panic!("no Sahni section: {md}"))..];
    // One row per workload × strategy, each with its tally.
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| idle") || l.starts_with("| read-") || l.starts_with("| write-")).collect();
    assert_eq!(rows.len(), 12, "{section}");
    let hybrid = cols(rows.iter().find(|l| cols(l)[1..3] == ["idle (idle)", "hybrid"]).unwrap());
    assert!(hybrid[3].starts_with(&format!("{mean:.0} ± ")), "the mean of the two healthy runs ({mean:.0}): {hybrid:?}");
    assert_eq!(hybrid[9], "2 of 3 healthy: guest not healthy on the destination (Kernel panic (injected by the test))");
    assert!(!md.contains("987654"), "the broken run's figure reached the report");
    // Pre-copy of the write-intensive guest never converged here: no figure, and why.
    let pre = cols(rows.iter().find(|l| cols(l)[1..3] == ["write-intensive (memdirty-write:64)", "precopy"]).unwrap());
    assert_eq!(pre[3], "none");
    assert!(pre[9].starts_with("0 of 3 healthy: 3 runs: cancelled: not finished after 40 s"), "{pre:?}");
    // A verdict per claim, the paper's figures beside ours.
    let verdicts: Vec<&str> = section.lines().filter(|l| l.starts_with("- **")).collect();
    assert_eq!(verdicts.len(), 7, "{section}");
    for claim in ["pre-copy degrades", "least downtime", "determinable", "read-intensive guests", "hybrid is no worse", "68 %", "their absolute figures"] {
        assert!(verdicts.iter().any(|v| v.contains(claim)), "{claim}: {verdicts:#?}");
    }
    let degrades = verdicts.iter().find(|v| v.contains("pre-copy degrades")).unwrap();
    assert!(degrades.starts_with("- **agrees**") && degrades.contains("3 of 3 runs cancelled"), "{degrades}");
}

#[test]
fn reproduce_thesis_puts_the_model_beside_healthy_measurements() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mean) = papers_results(tmp.path(), "thesis", "idle", "postcopy");
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/thesis.toml");
    let out = tmp.path().join("r.md");
    let (ok, stdout, stderr) = run(tmp.path(), &[dir.to_str().unwrap(), "--format", "md", "--out", out.to_str().unwrap(), "--profile", profile.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    let md = std::fs::read_to_string(&out).unwrap();
    let section = &md[md.find("## Thesis Table 1.1").unwrap_or_else(|| panic!("no thesis section: {md}"))..];
    let rows: Vec<Vec<&str>> = section.lines().filter(|l| l.starts_with("| precopy") || l.starts_with("| postcopy")).map(cols).collect();
    assert_eq!(rows.len(), 8, "{section}");
    let post = rows.iter().find(|r| r[1..3] == ["postcopy", "idle"]).unwrap();
    // The measured total (s) is the two healthy runs' mean, and the model's error is against it.
    assert!(post[6].starts_with(&format!("{:.2} ± ", mean / 1000.0)), "{post:?}");
    // The model's total is printed to 10 ms, so its error is checked to a point.
    let model: f64 = post[5].parse().unwrap();
    let error: f64 = post[7].trim_end_matches(" %").parse().unwrap();
    assert!((error - 100.0 * (model * 1000.0 - mean) / mean).abs() <= 1.0, "{post:?}");
    assert_eq!(post[13], "2 of 3 healthy: guest not healthy on the destination (Kernel panic (injected by the test))");
    assert!(!md.contains("987654") && !md.contains("987.65"), "the broken run's figure reached the report");
    let verdicts: Vec<&str> = section.lines().filter(|l| l.starts_with("- **")).collect();
    for claim in ["pre-copy total", "post-copy total", "precopy worst downtime", "postcopy worst downtime", "not measured here"] {
        assert!(verdicts.iter().any(|v| v.contains(claim)), "{claim}: {verdicts:#?}");
    }
}
