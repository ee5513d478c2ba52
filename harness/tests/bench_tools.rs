//! `bench`'s load comparison: the tools it compares the generator with are fetched
//! and run, and its table has a row per tool with a figure and a ratio.

mod common;

use common::*;
use migbench::host::tool_cache::{self, Tool};
use migbench::load::{capacity, rivals};

/// Debian's wrk and apache2-utils fetched with the cache's machinery into a fresh
/// directory (so this fetches every time, whatever the cache or PATH hold), then
/// run against the guest's HTTP server on loopback: each reports requests/s and a p99.
#[test]
fn the_tool_cache_fetches_and_runs_wrk_and_ab() {
    let dir = tempfile::tempdir().unwrap();
    let addr = capacity::loopback_server().unwrap();
    for tool in Tool::ALL {
        let found = tool_cache::fetch_to(tool, &dir.path().join(tool.name())).unwrap_or_else(|e| panic!("{tool}: {e:#}"));
        assert!(found.path.starts_with(dir.path()), "{tool}: {found:?}");
        assert!(found.version_line.contains(if tool == Tool::Wrk { "wrk" } else { "ApacheBench" }), "{found:?}");
        // A second look finds what the fetch published.
        let current = std::fs::read_to_string(dir.path().join(tool.name()).join("current")).unwrap();
        assert!(found.path.starts_with(dir.path().join(tool.name()).join(current.trim())), "{found:?} vs {current}");
        let fig = match tool {
            Tool::Wrk => rivals::wrk(&found.path, addr, 1.0, 4, 1),
            Tool::Ab => rivals::ab(&found.path, addr, 1.0, 4),
        };
        assert!(fig.requests_per_s.is_some_and(|r| r > 0.0) && fig.p99_ms.is_some(), "{tool}: {fig:?}");
    }
}

/// `bench` with only its load section and the smallest profile: a row for our
/// generator and for each of wrk, ab and oha, each tool's with requests/s, a p99
/// and the ratio ours ÷ it. The tests run under cargo, so oha can always be built:
/// its row must have a figure too (the first run on a machine builds it, minutes).
#[test]
fn bench_prints_a_row_per_tool_with_a_number_and_a_ratio() {
    let _slot = qemu_slot();
    let _ = platform();
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("tiny.toml");
    std::fs::write(
        &profile,
        "name = \"tiny\"\ndescription = \"one pre-copy run of a small idle guest\"\nrepetitions = 1\nwarmup_s = 0.5\n\n\
         [defaults]\nram_mib = 128\nworkload = \"idle\"\ntimeout_s = 60.0\n\n[[cell]]\nstrategy = \"precopy\"\nlink = \"1Gbit\"\n",
    )
    .unwrap();
    let o = migbench(tmp.path())
        .args(["bench", "--boots", "0", "--workload-seconds", "0", "--load-seconds", "1", "--quiet", "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let text = format!("{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{text}");
    // | tool | setting | requests/s | p99_ms | ours ÷ it | note |
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|-"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    let header = rows.iter().position(|r| r.first().is_some_and(|c| c == "tool") && r.iter().any(|c| c == "ours ÷ it")).unwrap_or_else(|| panic!("no load table: {text}"));
    let table = &rows[header + 1..];
    let row = |tool: &str| table.iter().find(|r| r[0] == tool).unwrap_or_else(|| panic!("no {tool} row: {text}"));
    let ours: f64 = row("migbench")[2].parse().unwrap_or_else(|_| panic!("ours has no requests/s: {text}"));
    assert!(ours > 0.0);
    for tool in ["wrk", "ab", "oha"] {
        let r = row(tool);
        let rate: f64 = r[2].parse().unwrap_or_else(|_| panic!("{tool} has no requests/s: {r:?}\n{text}"));
        let p99: f64 = r[3].parse().unwrap_or_else(|_| panic!("{tool} has no p99: {r:?}\n{text}"));
        let ratio: f64 = r[4].trim_end_matches('×').parse().unwrap_or_else(|_| panic!("{tool} has no ratio: {r:?}\n{text}"));
        assert!(rate > 0.0 && p99 >= 0.0, "{r:?}");
        // The ratio is the median of ours ÷ theirs over the rounds, each round's
        // in the note (to the table's rounding).
        let each: Vec<f64> = r[5]
            .split_once("ours ÷ it round by round: ")
            .unwrap_or_else(|| panic!("{tool}'s note has no ratio per round: {r:?}"))
            .1
            .split(", ")
            .map(|x| x.parse().unwrap_or_else(|_| panic!("{tool}: {x:?} in {r:?}")))
            .collect();
        assert_eq!(each.len(), capacity::ROUNDS, "{r:?}");
        let mid = migbench::stats::median(&each).unwrap();
        assert!((ratio - mid).abs() < 0.011, "{tool}: {ratio} vs the median of {each:?}");
    }
    // The same rows are recorded, in bench-<time>/load.jsonl.
    let bench_dir = std::fs::read_dir(tmp.path().join("out")).unwrap().flatten().map(|e| e.path()).find(|p| p.join("load.jsonl").exists());
    let bench_dir = bench_dir.unwrap_or_else(|| panic!("no load.jsonl: {text}"));
    let recorded: Vec<serde_json::Value> = std::fs::read_to_string(bench_dir.join("load.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tools: Vec<&str> = recorded.iter().map(|r| r["tool"].as_str().unwrap()).collect();
    assert_eq!(tools, ["migbench", "migbench", "migbench", "wrk", "ab", "oha"]);
    assert!(recorded.iter().all(|r| r["record"] == "load-capacity" && r["seconds"] == 1.0), "{recorded:?}");
    assert!(recorded[3]["ratio"].as_f64().is_some_and(|r| r > 0.0), "{:?}", recorded[3]);
    sweeps_with_and_without_reuse_and_the_harness_figure(&stdout, &text, &bench_dir);
}

/// After its sweep `bench` ran the profile again without guest reuse: both sweeps'
/// runs/min in one table and in sweeps.jsonl, and the harness's own CPU over the
/// migrations of both, each run carrying its figure.
fn sweeps_with_and_without_reuse_and_the_harness_figure(stdout: &str, text: &str, bench_dir: &std::path::Path) {
    let row = |reuse: &str| -> Vec<String> {
        stdout
            .lines()
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect::<Vec<_>>())
            .find(|r| r.len() == 8 && r[0] == "tiny" && r[1] == reuse)
            .unwrap_or_else(|| panic!("no throughput row with guest reuse {reuse}: {text}"))
    };
    let (on, off) = (row("on"), row("off"));
    let rate = |r: &[String]| -> f64 { r[4].parse().unwrap_or_else(|_| panic!("no runs/min: {r:?}")) };
    assert!(rate(&on) > 0.0 && rate(&off) > 0.0, "{on:?} {off:?}");
    let ratio: f64 = on[5].trim_end_matches('×').parse().unwrap_or_else(|_| panic!("no ratio: {on:?}"));
    assert!((ratio - rate(&on) / rate(&off)).abs() < 0.01 + 0.01 * ratio, "{on:?} {off:?}");
    let sweeps: Vec<serde_json::Value> = std::fs::read_to_string(bench_dir.join("sweeps.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(sweeps.iter().map(|s| s["reuse"].as_bool().unwrap()).collect::<Vec<_>>(), [true, false], "{sweeps:?}");
    assert!(sweeps.iter().all(|s| s["record"] == "sweep-rate" && s["runs"] == 1 && s["boots"] == 1 && s["tally"] == "1 of 1 healthy"), "{sweeps:?}");
    let runs: Vec<serde_json::Value> = [bench_dir.to_path_buf(), bench_dir.join("reuse-off")].iter().flat_map(|d| results(d)).collect();
    assert_eq!(runs.len(), 2, "{text}");
    for r in &runs {
        let pct = r["harness_cpu_percent"].as_f64().unwrap_or_else(|| panic!("no harness_cpu_percent: {r}"));
        assert!(pct > 0.0 && pct < 100.0, "{pct}");
    }
    let line = stdout.lines().find(|l| l.starts_with("Harness while sampling: median ")).unwrap_or_else(|| panic!("no harness line: {text}"));
    assert!(line.contains(" of one core over 2 migrations (max ") && line.ends_with("; 2 of 2 healthy"), "{line}");
}
