//! The load tools users would pick instead of migbench's generator — `wrk`,
//! ApacheBench (`ab`) and `oha` — run on the same server with the same number of
//! keep-alive connections, their output read into a [`Figure`] each.

use super::capacity::Figure;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// `wrk -tTHREADS -cCLIENTS -dSECS --latency`: closed loop, keep-alive.
pub fn wrk(bin: &Path, addr: SocketAddr, secs: f64, clients: u32, threads: usize) -> Figure {
    let setting = format!("-t{threads} -c{clients}, keep-alive");
    let out = Command::new(bin)
        .args([format!("-t{threads}"), format!("-c{clients}"), format!("-d{}s", whole_secs(secs)), "--latency".into(), format!("http://{addr}/")])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let (rate, p99) = parse_wrk(&text);
            figure("wrk", setting, rate, p99, &text)
        }
        Ok(o) => Figure::absent("wrk", setting, &format!("wrk failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Figure::absent("wrk", setting, &format!("could not run {}: {e}", bin.display())),
    }
}

/// `ab -k -c CLIENTS -t SECS -n 100000000`: closed loop, HTTP/1.0 keep-alive, one
/// thread (ab has no other). `-t` alone stops ab at 50 000 requests; the `-n`
/// after it lifts that, so the time limit ends the run.
pub fn ab(bin: &Path, addr: SocketAddr, secs: f64, clients: u32) -> Figure {
    let setting = format!("-k -c {clients}, 1 thread");
    let out = Command::new(bin)
        .args(["-q".to_string(), "-k".into(), "-c".into(), clients.to_string(), "-t".into(), whole_secs(secs).to_string(), "-n".into(), "100000000".into()])
        .arg(format!("http://{addr}/"))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let (rate, p99) = parse_ab(&text);
            figure("ab", setting, rate, p99, &text)
        }
        Ok(o) => Figure::absent("ab", setting, &format!("ab failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Figure::absent("ab", setting, &format!("could not run {}: {e}", bin.display())),
    }
}

/// `oha -z SECS -c CLIENTS --no-tui --output-format json`: closed loop, keep-alive.
pub fn oha(bin: &Path, addr: SocketAddr, secs: f64, clients: u32) -> Figure {
    let setting = format!("-c {clients}, keep-alive");
    let out = Command::new(bin)
        .args(["-z".to_string(), format!("{}s", whole_secs(secs)), "-c".into(), clients.to_string(), "--no-tui".into(), "--output-format".into(), "json".into()])
        .arg(format!("http://{addr}/"))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let (rate, p99) = parse_oha(&text);
            figure("oha", setting, rate, p99, &text)
        }
        Ok(o) => Figure::absent("oha", setting, &format!("oha failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Figure::absent("oha", setting, &format!("could not run {}: {e}", bin.display())),
    }
}

/// The tools take whole seconds.
fn whole_secs(secs: f64) -> u64 {
    (secs.ceil() as u64).max(1)
}

/// A tool's row, or why its output gave no figure.
fn figure(tool: &str, setting: String, rate: Option<f64>, p99: Option<f64>, text: &str) -> Figure {
    match rate {
        Some(_) => Figure { tool: tool.into(), setting, requests_per_s: rate, p99_ms: p99, ratio: None, note: String::new() },
        None => {
            let head: String = text.trim().chars().take(200).collect();
            Figure::absent(tool, setting, &format!("no requests/s in its output: {head}"))
        }
    }
}

/// wrk's "Requests/sec:" and the 99 % line of its `--latency` distribution, in ms.
pub fn parse_wrk(text: &str) -> (Option<f64>, Option<f64>) {
    let rate = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok());
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| wrk_ms(v.trim()));
    (rate, p99)
}

/// wrk's latency text (`812.00us`, `1.23ms`, `2.01s`, `1.00m`) in ms.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * scale)
}

/// ab's "Requests per second:" and the 99 % line of its percentile table (whole ms).
pub fn parse_ab(text: &str) -> (Option<f64>, Option<f64>) {
    let rate = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests per second:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok());
    (rate, p99)
}

/// oha's JSON: `summary.requestsPerSec` and `latencyPercentiles.p99` (seconds), in ms.
pub fn parse_oha(text: &str) -> (Option<f64>, Option<f64>) {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else { return (None, None) };
    let rate = json.pointer("/summary/requestsPerSec").and_then(|v| v.as_f64());
    let p99 = json.pointer("/latencyPercentiles/p99").and_then(|v| v.as_f64()).map(|s| s * 1000.0);
    (rate, p99)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latency_units() {
        assert_eq!(wrk_ms("812.00us"), Some(0.812));
        assert_eq!(wrk_ms("1.50ms"), Some(1.5));
        assert_eq!(wrk_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_ms("1.00m"), Some(60_000.0));
        assert_eq!(wrk_ms("fast"), None);
    }
}
