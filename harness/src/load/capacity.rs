//! How much load the generator itself can make: against the guest's own HTTP
//! server on the host's loopback, beside `wrk` and `oha` on the same server when
//! they are installed. A generator slower than the service it measures would
//! report its own limit as the service's.

use super::generator;
use super::spec::{Connection, LoadSpec, Mode};
use super::timeline::{Request, merge_hdr, percentile_ms, phase_latency};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// One line of the capacity table.
#[derive(Debug, Clone)]
pub struct Figure {
    pub tool: String,
    pub setting: String,
    pub requests_per_s: Option<f64>,
    pub p99_ms: Option<f64>,
    pub note: String,
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
pub fn ours(addr: SocketAddr, secs: f64, clients: u32, target_rate: f64) -> Result<Vec<Figure>> {
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

fn run_for(spec: &LoadSpec, addr: SocketAddr, secs: f64) -> Result<Vec<Request>> {
    let load = generator::start(spec, addr, None, Instant::now())?;
    std::thread::sleep(Duration::from_secs_f64(secs));
    load.stop()
}

fn figure(tool: &str, setting: String, recs: &[Request], secs: f64, note: String) -> Figure {
    let refs: Vec<&Request> = recs.iter().collect();
    let p = phase_latency(&refs, secs * 1000.0);
    let p99 = merge_hdr(&[p.hdr.as_str()]).ok().and_then(|h| percentile_ms(&h, 99.0));
    Figure { tool: tool.into(), setting, requests_per_s: p.ok_per_s, p99_ms: p99, note }
}

/// `wrk` on the same server, if it is installed.
pub fn wrk(addr: SocketAddr, secs: f64, clients: u32) -> Figure {
    let setting = format!("-t2 -c{clients}, keep-alive");
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{clients}"), &format!("-d{}s", secs.ceil() as u64), "--latency", &format!("http://{addr}/")])
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => return absent("wrk", setting, &format!("wrk failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(_) => return absent("wrk", setting, "not installed (apt-get install wrk)"),
    };
    let rate = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok());
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| wrk_ms(v.trim()));
    Figure { tool: "wrk".into(), setting, requests_per_s: rate, p99_ms: p99, note: String::new() }
}

/// `oha` on the same server, if it is installed.
pub fn oha(addr: SocketAddr, secs: f64, clients: u32) -> Figure {
    let setting = format!("-c {clients}, keep-alive");
    let out = Command::new("oha")
        .args(["-z", &format!("{}s", secs.ceil() as u64), "-c", &clients.to_string(), "--no-tui", "--output-format", "json", &format!("http://{addr}/")])
        .output();
    let json: serde_json::Value = match out {
        Ok(o) if o.status.success() => match serde_json::from_slice(&o.stdout) {
            Ok(v) => v,
            Err(e) => return absent("oha", setting, &format!("unreadable output ({e})")),
        },
        Ok(o) => return absent("oha", setting, &format!("oha failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(_) => return absent("oha", setting, "not installed (cargo install oha)"),
    };
    let rate = json.pointer("/summary/requestsPerSec").and_then(|v| v.as_f64());
    let p99 = json.pointer("/latencyPercentiles/p99").and_then(|v| v.as_f64()).map(|s| s * 1000.0);
    Figure { tool: "oha".into(), setting, requests_per_s: rate, p99_ms: p99, note: String::new() }
}

fn absent(tool: &str, setting: String, why: &str) -> Figure {
    Figure { tool: tool.into(), setting, requests_per_s: None, p99_ms: None, note: why.into() }
}

/// wrk's latency text (`812.00us`, `1.23ms`, `2.01s`) in ms.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latency_units() {
        assert_eq!(wrk_ms("812.00us"), Some(0.812));
        assert_eq!(wrk_ms("1.50ms"), Some(1.5));
        assert_eq!(wrk_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_ms("fast"), None);
    }

    #[test]
    fn the_generator_sustains_its_target_rate_against_a_loopback_server() {
        let addr = loopback_server().unwrap();
        let figs = ours(addr, 1.0, 4, 500.0).unwrap();
        assert_eq!(figs.len(), 3);
        // Both closed loops got answers.
        assert!(figs[..2].iter().all(|f| f.requests_per_s.is_some_and(|r| r > 0.0)), "{figs:?}");
        // The open loop at 500/s delivered that rate (within 10 %: it is a fixed schedule).
        let open = figs[2].requests_per_s.unwrap();
        assert!((450.0..=550.0).contains(&open), "{open}");
    }
}
