//! `migbench plan` on the committed reference results (no QEMU): the three sections,
//! numbers checked against what this test computes from the results itself (over the
//! runs that count: a broken guest's figures never enter a plan), and bad flag values
//! refused with the flag named.

mod common;

use common::migbench;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/reference/which-vm/results.jsonl")
}

fn records() -> Vec<Value> {
    std::fs::read_to_string(reference()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn healthy(r: &Value) -> bool {
    r["health"]["healthy"] == true
}

fn counts(r: &Value) -> bool {
    healthy(r) && r["outcome"]["kind"] == "completed"
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// The least-squares slope of (x, y), by the textbook formula.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = (points.iter().map(|p| p.0).sum::<f64>(), points.iter().map(|p| p.1).sum::<f64>());
    let sxy = points.iter().map(|p| p.0 * p.1).sum::<f64>();
    let sxx = points.iter().map(|p| p.0 * p.0).sum::<f64>();
    (n * sxy - sx * sy) / (n * sxx - sx * sx)
}

fn plan(tmp: &Path, args: &[&str]) -> (std::process::Output, String, String) {
    let o = migbench(tmp).arg("plan").args(args).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    (o, out, err)
}

#[test]
fn plan_of_the_reference_results() {
    let tmp = tempfile::tempdir().unwrap();
    let (json, md) = (tmp.path().join("plan.json"), tmp.path().join("plan.md"));
    let source = reference().display().to_string();
    let (o, out, err) = plan(tmp.path(), &[&source, "--json", &json.display().to_string(), "--out", &md.display().to_string()]);
    assert!(o.status.success(), "{out}{err}");
    for s in ["## 1. Convergence frontier", "## 2. Evacuation", "## 3. Total time against RAM", "link/k", "| 256 MiB", "| 512 MiB", "slowest link", "1 (one by one)"] {
        assert!(out.contains(s), "{s:?} missing from\n{out}");
    }
    assert_eq!(std::fs::read_to_string(&md).unwrap().trim_end(), out.trim_end());
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rs = records();

    // The VMs: one per cell, each with the mean of the dirty rates QEMU measured on
    // its runs whose guest stayed healthy; a cell with none is left out, saying why.
    let mut cells: Vec<&str> = rs.iter().map(|r| r["run"]["cell_key"].as_str().unwrap()).collect();
    cells.dedup();
    assert_eq!(p["vms"], cells.len());
    let of_cell = |c: &str| -> Vec<&Value> { rs.iter().filter(|r| r["run"]["cell_key"] == c).collect() };
    let rated: Vec<&str> = cells.iter().copied().filter(|c| of_cell(c).into_iter().any(healthy)).collect();
    assert!(rated.len() >= 2, "the reference has cells with a healthy guest: {rated:?}");
    let frontier = &p["frontier"];
    assert_eq!(frontier["points"].as_array().unwrap().len(), 3 * 3 * 2, "3 links × 3 limits × 2 RAM sizes");
    let rows = frontier["vms"].as_array().unwrap();
    assert_eq!(rows.len(), rated.len() * 3);
    for c in cells.iter().filter(|c| !rated.contains(c)) {
        let r = of_cell(c)[0];
        let label = format!("ram_mib={} workload={}", r["run"]["cell"]["ram_mib"], r["run"]["cell"]["workload"].as_str().unwrap());
        assert!(out.contains(&format!("Left out: {label} (no run left a healthy guest, so no dirty rate counts (0 of 2 healthy: ")), "{label}:\n{out}");
    }
    for row in rows {
        let label = row["vm"].as_str().unwrap();
        let runs: Vec<&Value> = rs
            .iter()
            .filter(|r| label == format!("ram_mib={} workload={}", r["run"]["cell"]["ram_mib"], r["run"]["cell"]["workload"].as_str().unwrap()))
            .filter(|r| healthy(r))
            .collect();
        assert_eq!(runs.len(), 2, "{label}");
        let dirty = runs.iter().map(|r| r["dirty_rate_before"]["mib_per_s"].as_f64().unwrap()).sum::<f64>() / 2.0;
        assert!(close(row["dirty_mib_s"].as_f64().unwrap(), dirty), "{row}");
        for at in row["links"].as_array().unwrap() {
            let link_mib_s = match at["link"].as_str().unwrap() {
                "100Mbit" => 12.5e6,
                "1Gbit" => 125e6,
                "10Gbit" => 1250e6,
                other => panic!("{other}"),
            } / 1048576.0;
            // Dirtying at least as fast as the link carries never converges (all of
            // these guests' RAM is far above what any downtime limit here lets through).
            if dirty >= link_mib_s {
                assert_eq!(at["converges"], false, "{label} {at}");
            }
            // Every one of them completed at 1 Gbit/s, and the model agrees.
            if at["link"] == "1Gbit" {
                assert_eq!(at["converges"], true, "{label} {at}");
            }
        }
        // The slowest link lies below the first link it converges on in the table.
        let slowest = row["slowest_link_bytes_per_s"].as_f64().unwrap();
        assert!(slowest <= 125e6 && (dirty > 12.5e6 / 1048576.0) == (slowest > 12.5e6), "{row}");
    }

    // Evacuation: one by one is the sum of the per-VM predictions; k at once is at
    // least the longest and at most the sum of theirs.
    let evac = &p["evacuation"];
    for l in evac["links"].as_array().unwrap() {
        let one = &l["one_by_one"];
        let times: Vec<f64> = one["vms"].as_array().unwrap().iter().map(|v| v["total_s"].as_f64().unwrap()).collect();
        assert_eq!(times.len(), rated.len());
        assert!(close(one["makespan_s"].as_f64().unwrap(), times.iter().sum()), "{one}");
        let ks: Vec<u64> = l["parallel"].as_array().unwrap().iter().map(|s| s["k"].as_u64().unwrap()).collect();
        assert_eq!(ks, [1, 2, 4]);
        for s in l["parallel"].as_array().unwrap() {
            let t: Vec<f64> = s["vms"].as_array().unwrap().iter().map(|v| v["total_s"].as_f64().unwrap()).collect();
            let makespan = s["makespan_s"].as_f64().unwrap();
            assert!(makespan >= t.iter().copied().fold(0.0, f64::max) - 1e-9 && makespan <= t.iter().sum::<f64>() + 1e-9, "{s}");
            assert!(close(s["share_bytes_per_s"].as_f64().unwrap() * s["k"].as_f64().unwrap(), l["bytes_per_s"].as_f64().unwrap()));
            // Post-copy stands in exactly where pre-copy has a reason not to be used.
            for v in s["vms"].as_array().unwrap() {
                assert_eq!(v["strategy"] == "postcopy", v["precopy_fails"].is_string(), "{v}");
            }
        }
    }
    // The measured one-by-one: the sum of each cell's mean total time over its
    // healthy completed runs, for the cells that have one.
    let timed: Vec<&str> = cells.iter().copied().filter(|c| of_cell(c).into_iter().any(counts)).collect();
    let measured: f64 = timed
        .iter()
        .map(|c| {
            let t: Vec<f64> = of_cell(c).into_iter().filter(|r| counts(r)).map(|r| r["total_time_ms"].as_f64().unwrap()).collect();
            t.iter().sum::<f64>() / t.len() as f64
        })
        .sum::<f64>()
        / 1000.0;
    assert!(close(evac["measured"]["total_s"].as_f64().unwrap(), measured), "{}", evac["measured"]);
    assert_eq!((evac["measured"]["vms"].as_u64(), evac["measured"]["of"].as_u64()), (Some(timed.len() as u64), Some(cells.len() as u64)));
    assert!(out.contains(&format!("Measured one by one: {measured:.2} s")), "{out}");
    // At 100 Mbit/s, a VM that dirties at least as fast as its share of the link
    // (11.9 MiB/s one by one, 6 MiB/s two at once) cannot converge: post-copy.
    let slow = &evac["links"][0];
    assert_eq!(slow["link"], "100Mbit");
    let dirty_of: Vec<(String, f64)> = frontier["vms"].as_array().unwrap().iter().map(|v| (v["vm"].as_str().unwrap().to_string(), v["dirty_mib_s"].as_f64().unwrap())).collect();
    let post = |s: &Value| -> Vec<String> { s["vms"].as_array().unwrap().iter().filter(|v| v["strategy"] == "postcopy").map(|v| v["vm"].as_str().unwrap().to_string()).collect() };
    let two = slow["parallel"].as_array().unwrap().iter().find(|s| s["k"] == 2).unwrap();
    for (schedule, share) in [(&slow["one_by_one"], slow["bytes_per_s"].as_f64().unwrap()), (two, two["share_bytes_per_s"].as_f64().unwrap())] {
        let mut expected: Vec<String> = dirty_of.iter().filter(|(_, d)| *d >= share / 1048576.0).map(|(vm, _)| vm.clone()).collect();
        expected.sort();
        expected.dedup();
        let mut got = post(schedule);
        got.sort();
        assert_eq!(got, expected, "{schedule}");
    }
    assert!(!post(two).is_empty() && out.contains("VMs moved by post-copy"), "{out}");

    // Fits: one group per workload, its healthy completed runs over 256 and 512 MiB;
    // the slope is what this test computes from them, and dirtying means a steeper
    // line. A group without such a run has no fit and says why.
    let groups = p["fits"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    let mut slopes = Vec::new();
    for g in groups {
        let workload = g["group"].as_str().unwrap().split(' ').next().unwrap().strip_prefix("workload=").unwrap();
        let points: Vec<(f64, f64)> = rs
            .iter()
            .filter(|r| r["run"]["cell"]["workload"] == workload && counts(r))
            .map(|r| (r["run"]["cell"]["ram_mib"].as_f64().unwrap(), r["total_time_ms"].as_f64().unwrap()))
            .collect();
        assert_eq!(g["runs"], points.len());
        if points.is_empty() {
            assert!(g["fit"].is_null() && g["why_not"].as_str().unwrap().starts_with("0 of 4 healthy: "), "{g}");
            continue;
        }
        let b = g["fit"]["b_ms_per_mib"].as_f64().unwrap();
        assert!(close(b, slope(&points)), "{g}: {}", slope(&points));
        let r2 = g["fit"]["r2"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&r2), "{g}");
        slopes.push((workload.to_string(), b));
    }
    let b = |w: &str| slopes.iter().find(|s| s.0 == w).unwrap().1;
    assert_eq!(slopes.len(), groups.len(), "every workload of the reference has healthy runs to fit: {slopes:?}");
    // A non-zero MiB costs about 8.4 ms at 1 Gbit/s; the RAM an idle guest adds is
    // zero pages, which cost a small fraction of that.
    assert!(b("idle").abs() < 1.0, "an idle guest's zero pages cost almost nothing: {slopes:?}");

    // The results directory works as well as its file.
    let dir = reference().parent().unwrap().display().to_string();
    let (o, out2, err) = plan(tmp.path(), &[&dir]);
    assert!(o.status.success(), "{err}");
    assert_eq!(out2.replace(&dir, "SOURCE"), out.replace(&source, "SOURCE"));
}

#[test]
fn one_ram_size_cannot_be_fitted() {
    let tmp = tempfile::tempdir().unwrap();
    // The 48:20 guests' runs are marked broken here (the test's own fault): a group
    // with no healthy run has no fit and says why.
    let only_256: String = records()
        .into_iter()
        .filter(|r| r["run"]["cell"]["ram_mib"] == 256)
        .map(|mut r| {
            if r["run"]["cell"]["workload"] == "memdirty-write:48:20" {
                r["health"]["healthy"] = false.into();
                r["health"]["detail"] = "marked broken by the test".into();
            }
            r.to_string() + "\n"
        })
        .collect();
    let file = tmp.path().join("results.jsonl");
    std::fs::write(&file, only_256).unwrap();
    let json = tmp.path().join("plan.json").display().to_string();
    let (o, out, err) = plan(tmp.path(), &[&file.display().to_string(), "--links", "1Gbit", "--parallel", "3", "--json", &json]);
    assert!(o.status.success(), "{err}");
    // Two groups have healthy runs at one RAM size; the third has none.
    assert_eq!(out.matches("needs ≥ 2 RAM sizes").count(), 2, "{out}");
    let p: Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("plan.json")).unwrap()).unwrap();
    let groups = p["fits"]["groups"].as_array().unwrap();
    assert!(groups.iter().all(|g| g["fit"].is_null()), "{}", p["fits"]);
    assert_eq!(groups.iter().filter(|g| g["why_not"].as_str().unwrap().starts_with("0 of 2 healthy")).count(), 1, "{}", p["fits"]);
    // The two VMs with a dirty rate on three slots: the makespan is the longest one's time.
    assert!(out.contains("| 1Gbit | 3 "), "{out}");
    let three = p["evacuation"]["links"][0]["parallel"].as_array().unwrap().iter().find(|s| s["k"] == 3).unwrap();
    let times: Vec<f64> = three["vms"].as_array().unwrap().iter().map(|v| v["total_s"].as_f64().unwrap()).collect();
    assert_eq!(times.len(), 2, "{three}");
    assert!(close(three["makespan_s"].as_f64().unwrap(), times.iter().copied().fold(0.0, f64::max)), "{three}");
}

#[test]
fn bad_flag_values_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let source = reference().display().to_string();
    for (flag, value, says) in [
        ("--links", "1Gbit,fast", "\"fast\" is not understood"),
        ("--links", "1Gbit,,10Gbit", "empty item"),
        ("--downtime-limits", "300", "has no unit"),
        ("--downtime-limits", "-1s", "write durations such as 50ms"),
        ("--parallel", "0", "whole numbers 1 to 64"),
        ("--parallel", "two", "whole numbers 1 to 64"),
        ("--parallel", "-2", "whole numbers 1 to 64"),
    ] {
        let (o, out, err) = plan(tmp.path(), &[&source, flag, value]);
        assert!(!o.status.success() && o.status.code().is_some(), "{flag} {value}: {out}");
        assert!(err.contains(&format!("{flag} {value}")) && err.contains(says), "{flag} {value}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.is_empty(), "nothing is printed before the flags are checked: {out}");
    }
    let nowhere = tmp.path().join("no/such/dir/plan.json");
    let (o, out, err) = plan(tmp.path(), &[&source, "--json", &nowhere.display().to_string()]);
    assert!(!o.status.success() && err.contains("--json") && err.contains("no/such/dir") && out.is_empty(), "{err}");
    let (o, _, err) = plan(tmp.path(), &[&source, "--out", &tmp.path().display().to_string()]);
    assert!(!o.status.success() && err.contains("--out") && err.contains("is a directory; give a file in it"), "{err}");
    let (o, _, err) = plan(tmp.path(), &[&tmp.path().join("missing.jsonl").display().to_string()]);
    assert!(!o.status.success() && err.contains("does not exist"), "{err}");
}

/// `plan --dest`: the link to another host is measured (one TCP stream to its
/// migration address, counted by its agent) and planned for beside --links. Here the
/// test host's link is held to 50 Mbit/s at our end, so the measured rate is at most
/// that (htb counts headers too) and well above nothing.
#[test]
fn plan_for_another_host_measures_its_link_and_plans_for_it() {
    use migbench::network::shape::{End, LinkShape};
    use migbench::network::tc::{self, Local};
    common::platform();
    let host = migbench::network::test_host::TestHost::start().expect("the test host");
    let shape: LinkShape = "rate=50Mbit".parse().unwrap();
    tc::apply(&Local::host(), host.local_interface(), &shape.egress(End::Near)).expect("shaping our end");
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("plan.json");
    let source = reference().display().to_string();
    let known = format!("UserKnownHostsFile={}", host.known_hosts().display());
    let args = [&source, "--links", "1Gbit", "--parallel", "1,2", "--json", &json.display().to_string(), "--probe-seconds", "2"];
    let mut c = migbench(tmp.path());
    c.arg("plan").args(args).arg("--dest").arg(host.url()).arg("--ssh-key").arg(host.key()).args(["--ssh-option", &known, "--ssh-option", "StrictHostKeyChecking=yes"]);
    let o = c.output().unwrap();
    let _ = tc::clear(&Local::host(), host.local_interface());
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "{out}{err}");
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let m = &p["measured_link"];
    assert_eq!(m["host"], host.url(), "{m}");
    assert_eq!(m["address"], host.ip().to_string());
    assert_eq!(m["from"], host.local_ip().to_string(), "the stream crossed the test host's link");
    let bytes = m["received"]["bytes"].as_f64().unwrap();
    let rate = bytes / m["received"]["seconds"].as_f64().unwrap();
    assert!(rate > 0.5 * 50e6 / 8.0 && rate <= 1.02 * 50e6 / 8.0, "measured {:.1} Mbit/s through a 50 Mbit/s shape", rate * 8.0 / 1e6);
    // The measured link is planned for: a row of its own in sections 1 and 2, beside 1Gbit.
    let text = format!("{:.1}Mbit", rate * 8.0 / 1e6);
    assert!(out.contains(&format!("carried {:.1} Mbit/s", rate * 8.0 / 1e6)) && out.contains(&format!("as the link `{text}`")), "{out}");
    let links: Vec<&str> = p["evacuation"]["links"].as_array().unwrap().iter().map(|l| l["link"].as_str().unwrap()).collect();
    assert_eq!(links, [text.as_str(), "1Gbit"], "{}", p["evacuation"]);
    // Nothing of ours is left on the other host (agents of other tests' hosts aside).
    let on_host = || {
        let ns = |pid: u32| std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).ok();
        common::processes_mentioning("/agent/migbench-").into_iter().filter(|(pid, _)| ns(*pid) == Some(host.inode())).collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !on_host().is_empty() {
        assert!(std::time::Instant::now() < deadline, "left running: {:?}", on_host());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(host);
}
