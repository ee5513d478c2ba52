//! A long sweep's endurance: does the harness hold up over many migrations?

use super::cell_runs::CellRuns;
use crate::migration::measurement::Outcome;
use crate::record::RunRecord;

/// A long sweep's endurance figures: migrations, failures, requests lost outside
/// the switchover windows, and the harness's memory from the first run to the last.
pub fn endurance(records: &[RunRecord]) -> String {
    let completed = records.iter().filter(|r| r.measurement().outcome == Outcome::Completed).count();
    let healthy = records.iter().filter(|r| r.measurement().health.healthy).count();
    let all = CellRuns::new(records);
    // A broken guest's lost requests say nothing of the path: count the healthy runs'.
    let services = || all.counted().filter_map(|r| r.measurement().service.as_ref());
    let outside: u64 = services().map(|s| s.client.failed_outside_window).sum();
    let requests: u64 = services().map(|s| s.client.before.requests + s.client.during.requests + s.client.after.requests).sum();
    // Memory is one process's: the last one's runs (a resumed or merged sweep has several).
    let last_pid = records.last().and_then(|r| r.run.harness_pid);
    let rss: Vec<f64> = records.iter().filter(|r| r.run.harness_pid == last_pid).filter_map(|r| r.run.harness_rss_mib).collect();
    // The first runs grow the harness to its working size (buffers, thread pools);
    // what counts is the growth after that, from a tenth of the runs (at least the third) on.
    let warm = (rss.len() / 10).max(2);
    let rss_text = match (rss.first(), rss.get(warm), rss.last()) {
        (Some(a), Some(w), Some(b)) => format!(
            "harness RSS {a:.1} MiB after the first run, {w:.1} after run {}, {b:.1} after the last: {:+.1} MiB over the last {} runs",
            warm + 1,
            b - w,
            rss.len() - warm - 1
        ),
        (Some(a), _, Some(b)) => format!("harness RSS {a:.1} MiB after the first run, {b:.1} after the last"),
        _ => "harness RSS not recorded".into(),
    };
    format!(
        "Endurance: {} migrations, {completed} completed, {} not, {} with a guest not healthy; {outside} of {requests} requests failed outside the switchover windows (in the runs that count: {}); {rss_text}",
        records.len(),
        records.len() - completed,
        records.len() - healthy,
        all.tally(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endurance_says_which_runs_count() {
        use crate::summary::cell_runs::testing::run;
        let text = endurance(&[run("a", 0, 1.0, true, true), run("a", 1, 1.0, false, true), run("a", 2, 1.0, true, false)]);
        assert!(text.starts_with("Endurance: 3 migrations, 2 completed, 1 not, 1 with a guest not healthy; 0 of 0 requests"), "{text}");
        assert!(text.contains("(in the runs that count: 1 of 3 healthy)"), "{text}");
    }
}
