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

/// One line of the capacity table.
#[derive(Debug, Clone)]
pub struct Figure {
    pub tool: String,
    pub setting: String,
    pub requests_per_s: Option<f64>,
    pub p99_ms: Option<f64>,
    /// For another tool's row: our keep-alive closed loop's requests/s ÷ its.
    pub ratio: Option<f64>,
    pub note: String,
}

impl Figure {
    /// A tool's row without figures, and why.
    pub fn absent(tool: &str, setting: String, why: &str) -> Figure {
        Figure { tool: tool.into(), setting, requests_per_s: None, p99_ms: None, ratio: None, note: why.into() }
    }
}

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
        let spec = LoadSpec { mode: Mode::Closed { clients, think_ms: 0 }, connection, dynamic_percent: 0, timeout_ms: 5000, requests: None };
        let recs = run_for(&spec, addr, secs)?;
        out.push(figure("migbench", format!("closed:{clients}, {connection}"), &recs, secs, String::new()));
    }
    let spec = LoadSpec { mode: Mode::Open { rate: target_rate }, connection: Connection::KeepAlive, dynamic_percent: 0, timeout_ms: 5000, requests: None };
    let recs = run_for(&spec, addr, secs)?;
    // How far sending fell behind the schedule (latency is charged from the schedule anyway).
    let mut lag: Vec<f64> = recs.iter().map(|r| r.sent_ms - r.intended_ms).collect();
    lag.sort_by(f64::total_cmp);
    let at = |q: f64| lag.get(((lag.len() as f64 * q) as usize).min(lag.len().saturating_sub(1))).copied().unwrap_or(0.0);
    let note = format!("target {target_rate:.0}/s; sent behind schedule by p50 {:.2} ms, p99 {:.2} ms", at(0.5), at(0.99));
    out.push(figure("migbench", format!("open:{target_rate:.0}, keep-alive"), &recs, secs, note));
    Ok(out)
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
    let mut figs = ours(addr, secs, clients, threads, target_rate)?;
    figs.push(match &rivals.wrk {
        Ok(f) => noted(rivals::wrk(&f.path, addr, secs, clients, threads), f),
        Err(why) => Figure::absent("wrk", format!("-t{threads} -c{clients}, keep-alive"), why),
    });
    figs.push(match &rivals.ab {
        Ok(f) => noted(rivals::ab(&f.path, addr, secs, clients), f),
        Err(why) => Figure::absent("ab", format!("-k -c {clients}, 1 thread"), why),
    });
    figs.push(match &rivals.oha {
        Ok(f) => noted(rivals::oha(&f.path, addr, secs, clients), f),
        Err(why) => Figure::absent("oha", format!("-c {clients}, keep-alive"), why),
    });
    with_ratios(&mut figs);
    Ok(figs)
}

/// A rival's row with which build of it ran, unless the row says why it has no figure.
fn noted(mut fig: Figure, found: &Found) -> Figure {
    if fig.note.is_empty() {
        let whence = match found.origin {
            Origin::System => "on PATH",
            Origin::Cache => "migbench's cache",
        };
        fig.note = format!("{} ({whence})", found.version_line);
    }
    fig
}

/// Sets each other tool's ratio: our closed keep-alive loop's requests/s ÷ its.
pub fn with_ratios(figs: &mut [Figure]) {
    let ours = figs.iter().find(|f| f.tool == "migbench" && f.setting.starts_with("closed:") && f.setting.contains("keep-alive")).and_then(|f| f.requests_per_s);
    for f in figs.iter_mut().filter(|f| f.tool != "migbench") {
        f.ratio = match (ours, f.requests_per_s) {
            (Some(o), Some(t)) if t > 0.0 => Some(o / t),
            _ => None,
        };
    }
}

fn run_for(spec: &LoadSpec, addr: SocketAddr, secs: f64) -> Result<Vec<Request>> {
    let load = generator::start(spec, addr, None, Instant::now())?;
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

    /// The comparison `bench` prints, for measuring the generator by hand:
    /// `cargo test --release --lib -- --ignored --nocapture comparison_figures`
    /// (`MIGBENCH_LOAD_SECS`, default 5).
    #[test]
    #[ignore]
    fn comparison_figures() {
        let secs = std::env::var("MIGBENCH_LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let figs = compare(secs, 32, threads, 2000.0, &Rivals::set_up()).unwrap();
        for f in &figs {
            println!("{:9} {:28} {:>8.0} req/s  p99 {:>6.2} ms  ratio {:>5.2}  {}", f.tool, f.setting, f.requests_per_s.unwrap_or(0.0), f.p99_ms.unwrap_or(0.0), f.ratio.unwrap_or(0.0), f.note);
        }
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
