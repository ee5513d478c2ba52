//! How much load the generator itself can make: against the guest's own HTTP
//! server on the host's loopback, beside `wrk`, `ab` and `oha` on the same server
//! in the same run (`load::rivals`), each with the ratio ours ÷ theirs. A generator
//! slower than the service it measures would report its own limit as the service's.

use super::generator;
use super::spec::{Connection, LoadSpec, Mode};
use super::timeline::{Request, merge_hdr, percentile_ms, phase_latency};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use crate::host::tool_cache::{Found, Origin};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

pub use super::rivals::Figure;

/// Starts the guest's HTTP server (the `http` workload's code) on a free loopback port.
pub fn loopback_server() -> Result<SocketAddr> {
    static SERVED: AtomicU64 = AtomicU64::new(0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port for the HTTP server")?;
    let addr = listener.local_addr()?;
    let store = std::sync::Arc::new(migbench_guest::http::Store::new(16));
    std::thread::Builder::new().name("migbench-http".into()).spawn(move || migbench_guest::http::serve(listener, store, &SERVED))?;
    Ok(addr)
}

/// Our generator's figures: the most it gets through with `clients` keep-alive
/// and per-request clients, and whether an open loop holds `target_rate`.
pub fn ours(addr: SocketAddr, secs: f64, clients: u32, threads: usize, target_rate: f64) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for connection in [Connection::KeepAlive, Connection::PerRequest] {
        out.push(ours_closed(addr, secs, clients, threads, connection)?);
    }
    out.push(ours_open(addr, secs, target_rate)?);
    Ok(out)
}

/// Our closed loop: `clients` clients over `threads` threads, no think time.
fn ours_closed(addr: SocketAddr, secs: f64, clients: u32, threads: usize, connection: Connection) -> Result<Figure> {
    let spec = LoadSpec { mode: Mode::Closed { clients, think_ms: 0 }, connection, dynamic_percent: 0, timeout_ms: 5000, requests: None };
    let recs = run_for(&spec, addr, secs, threads)?;
    Ok(figure("migbench", format!("closed:{clients}, {connection}, {threads} thread{}", if threads == 1 { "" } else { "s" }), &recs, secs, String::new()))
}

/// Our open loop at `target_rate` (one schedule, one thread), and how far sending
/// fell behind it (latency is charged from the schedule anyway).
fn ours_open(addr: SocketAddr, secs: f64, target_rate: f64) -> Result<Figure> {
    let spec = LoadSpec { mode: Mode::Open { rate: target_rate }, connection: Connection::KeepAlive, dynamic_percent: 0, timeout_ms: 5000, requests: None };
    let recs = run_for(&spec, addr, secs, 1)?;
    let lag = crate::load::timeline::histogram_ms(recs.iter().map(|r| r.sent_ms - r.intended_ms));
    let at = |q: f64| crate::load::timeline::percentile_ms(&lag, q).unwrap_or(0.0);
    let note = format!("target {target_rate:.0}/s; sent behind schedule by p50 {:.2} ms, p99 {:.2} ms", at(50.0), at(99.0));
    Ok(figure("migbench", format!("open:{target_rate:.0}, keep-alive"), &recs, secs, note))
}

/// The other tools to run, each found (`host::tool_cache`) or why not.
#[derive(Debug, Clone)]
pub struct Rivals {
    pub wrk: Result<Found, String>,
    pub ab: Result<Found, String>,
    pub oha: Result<Found, String>,
}

impl Rivals {
    /// bench's set-up for the load comparison: `wrk` and `ab` (the system's, else
    /// Debian's fetched into migbench's cache) and `oha` (the system's, else built
    /// once with cargo into the cache); each one that cannot be had says why.
    pub fn set_up() -> Rivals {
        use crate::host::tool_cache::{self, Tool};
        let debian = |t: Tool| tool_cache::ensure(t).map_err(|e| format!("{e:#}"));
        Rivals { wrk: debian(Tool::Wrk), ab: debian(Tool::Ab), oha: tool_cache::oha() }
    }
}

/// Our generator and every rival against one loopback server, `clients`
/// keep-alive connections each and `threads` threads where a tool has a choice,
/// with each rival's ratio.
pub fn compare(secs: f64, clients: u32, threads: usize, target_rate: f64, rivals: &Rivals) -> Result<Vec<Figure>> {
    use super::rivals;
    let addr = loopback_server()?;
    // The keep-alive closed loops take turns, ROUNDS times, each round starting
    // with the next tool: a machine whose load changes (other work on it) then
    // weighs on every tool alike, and none always runs first.
    let mut runs: [Vec<Figure>; 4] = Default::default();
    for round in 0..ROUNDS {
        for k in (0..4).map(|k| (k + round) % 4) {
            // A tool that gave no figure the first time is not run again.
            if round > 0 && runs[k][0].requests_per_s.is_none() {
                continue;
            }
            let fig = match k {
                0 => ours_closed(addr, secs, clients, threads, Connection::KeepAlive)?,
                1 => match &rivals.wrk {
                    Ok(f) => noted(rivals::wrk(&f.path, addr, secs, clients, threads), f),
                    Err(why) => Figure::absent("wrk", format!("-t{threads} -c{clients}, keep-alive"), why),
                },
                2 => match &rivals.ab {
                    Ok(f) => noted(rivals::ab(&f.path, addr, secs, clients), f),
                    Err(why) => Figure::absent("ab", format!("-k -c {clients}, 1 thread"), why),
                },
                _ => match &rivals.oha {
                    Ok(f) => noted(rivals::oha(&f.path, addr, secs, clients), f),
                    Err(why) => Figure::absent("oha", format!("-c {clients}, keep-alive"), why),
                },
            };
            runs[k].push(fig);
        }
    }
    let [ours_ka, rivals @ ..] = runs;
    let mut figs = vec![median(ours_ka.clone()), ours_closed(addr, secs, clients, threads, Connection::PerRequest)?, ours_open(addr, secs, target_rate)?];
    for theirs in rivals {
        let mut fig = median(theirs.clone());
        if let Some((ratio, each)) = paired_ratio(&ours_ka, &theirs) {
            fig.ratio = Some(ratio);
            let each: Vec<String> = each.iter().map(|r| format!("{r:.2}")).collect();
            fig.note = format!("{}; ours ÷ it round by round: {}", fig.note, each.join(", "));
        }
        figs.push(fig);
    }
    Ok(figs)
}

/// How many times each keep-alive closed loop runs in [`compare`].
pub const ROUNDS: usize = 7;

/// Of one tool's runs, the one with the median requests/s (runs without a figure
/// count as slowest), its note naming every run's figure.
pub fn median(mut runs: Vec<Figure>) -> Figure {
    runs.sort_by(|a, b| a.requests_per_s.unwrap_or(-1.0).total_cmp(&b.requests_per_s.unwrap_or(-1.0)));
    let all: Vec<String> = runs.iter().map(|f| f.requests_per_s.map_or("-".into(), |r| format!("{r:.0}"))).collect();
    let n = runs.len();
    if n == 0 {
        return Figure::absent("?", String::new(), "not run");
    }
    let mut m = runs.swap_remove(n / 2);
    if n > 1 {
        let sep = if m.note.is_empty() { "" } else { "; " };
        m.note = format!("{}{sep}median of {n} runs: {} req/s", m.note, all.join(", "));
    }
    m
}

/// A rival's row with which build of it ran, unless the row says why it has no figure.
fn noted(mut fig: Figure, found: &Found) -> Figure {
    if fig.requests_per_s.is_some() {
        let whence = match found.origin {
            Origin::System => "on PATH",
            Origin::Cache => "migbench's cache",
        };
        let sep = if fig.note.is_empty() { "" } else { "; " };
        fig.note = format!("{} ({whence}){sep}{}", found.version_line, fig.note);
    }
    fig
}

/// Ours ÷ theirs: the median over the rounds of our run's requests/s ÷ the tool's
/// run of the same round (`ours[i]` and `theirs[i]`, rounds where either has no
/// figure left out), with each round's ratio in order. The two runs of a round are
/// seconds apart, so a host whose load drifts over the minutes of a comparison (it
/// does: other virtual machines share it) weighs on both sides of each ratio alike,
/// where a ratio of the two medians would set a run from a quiet minute against one
/// from a busy minute.
pub fn paired_ratio(ours: &[Figure], theirs: &[Figure]) -> Option<(f64, Vec<f64>)> {
    let each: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .filter_map(|(o, t)| match (o.requests_per_s, t.requests_per_s) {
            (Some(o), Some(t)) if t > 0.0 => Some(o / t),
            _ => None,
        })
        .collect();
    Some((crate::stats::median(&each)?, each))
}

fn run_for(spec: &LoadSpec, addr: SocketAddr, secs: f64, threads: usize) -> Result<Vec<Request>> {
    let load = generator::start_on(spec, addr, None, Instant::now(), threads)?;
    std::thread::sleep(Duration::from_secs_f64(secs));
    load.stop()
}

fn figure(tool: &str, setting: String, recs: &[Request], secs: f64, note: String) -> Figure {
    let refs: Vec<&Request> = recs.iter().collect();
    let p = phase_latency(&refs, secs * 1000.0);
    let p99 = merge_hdr(&[p.hdr.as_str()]).ok().and_then(|h| percentile_ms(&h, 99.0));
    Figure { tool: tool.into(), setting, requests_per_s: p.ok_per_s, p99_ms: p99, ratio: None, note }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(tool: &str, setting: &str, rate: Option<f64>) -> Figure {
        Figure { tool: tool.into(), setting: setting.into(), requests_per_s: rate, p99_ms: rate.map(|r| 1000.0 / r), ratio: None, note: String::new() }
    }

    #[test]
    fn the_median_run_is_kept_with_every_runs_figure() {
        let m = median(vec![fig("wrk", "-t2", Some(300.0)), fig("wrk", "-t2", None), fig("wrk", "-t2", Some(100.0))]);
        assert_eq!(m.requests_per_s, Some(100.0));
        assert_eq!(m.p99_ms, Some(10.0), "the p99 of the same run");
        assert_eq!(m.note, "median of 3 runs: -, 100, 300 req/s");
        let one = median(vec![Figure::absent("oha", "-c 32".into(), "not on PATH")]);
        assert_eq!(one.note, "not on PATH");
    }

    #[test]
    fn ratios_pair_the_runs_of_each_round() {
        let runs = |rates: &[Option<f64>]| -> Vec<Figure> { rates.iter().map(|r| fig("t", "", *r)).collect() };
        // Round by round 1.2, 0.5, 2.0: the median is 1.2, though the medians of
        // the two tools' runs (60 and 100) would say 0.6.
        let ours = runs(&[Some(60.0), Some(50.0), Some(200.0)]);
        let theirs = runs(&[Some(50.0), Some(100.0), Some(100.0)]);
        assert_eq!(paired_ratio(&ours, &theirs), Some((1.2, vec![1.2, 0.5, 2.0])));
        // A round missing a figure on either side is left out.
        let ours = runs(&[Some(60.0), None, Some(90.0), Some(30.0), Some(10.0)]);
        let theirs = runs(&[Some(60.0), Some(10.0), Some(30.0), None, Some(20.0)]);
        assert_eq!(paired_ratio(&ours, &theirs), Some((1.0, vec![1.0, 3.0, 0.5])));
        // An even count takes the middle two.
        let (mid, _) = paired_ratio(&runs(&[Some(4.0), Some(1.0)]), &runs(&[Some(2.0), Some(2.0)])).unwrap();
        assert_eq!(mid, 1.25);
        // A tool that ran once without a figure (not installed) has no ratio.
        assert_eq!(paired_ratio(&ours, &[Figure::absent("oha", "-c 32".into(), "not on PATH")]), None);
        assert_eq!(paired_ratio(&ours, &runs(&[Some(0.0)])), None);
    }

    #[test]
    fn the_generator_sustains_its_target_rate_against_a_loopback_server() {
        let addr = loopback_server().unwrap();
        let figs = ours(addr, 1.0, 4, 1, 500.0).unwrap();
        assert_eq!(figs.len(), 3);
        // Both closed loops got answers.
        assert!(figs[..2].iter().all(|f| f.requests_per_s.is_some_and(|r| r > 0.0)), "{figs:?}");
        // The open loop at 500/s delivered that rate (within 10 %: it is a fixed schedule).
        let open = figs[2].requests_per_s.unwrap();
        assert!((450.0..=550.0).contains(&open), "{open}");
    }
}
