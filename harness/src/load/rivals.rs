//! The load tools users would pick instead of migbench's generator — `wrk`,
//! ApacheBench (`ab`) and `oha` — run on the same server with the same number of
//! keep-alive connections, their output read into a [`Figure`] each.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// One line of the capacity table (and of `bench`'s `load.jsonl`, inside a
/// `record::bench::LoadFigureRecord`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// `wrk -tTHREADS -cCLIENTS -dSECS --latency`: closed loop, keep-alive.
pub fn wrk(bin: &Path, addr: SocketAddr, secs: f64, clients: u32, threads: usize) -> Figure {
    let setting = format!("-t{threads} -c{clients}, keep-alive");
    let args = [format!("-t{threads}"), format!("-c{clients}"), format!("-d{}s", whole_secs(secs)), "--latency".into(), format!("http://{addr}/")];
    run("wrk", bin, &args, setting, parse_wrk)
}

/// `ab -r -k -c CLIENTS -t SECS -n 100000000`: closed loop, HTTP/1.0 keep-alive,
/// one thread (ab has no other). `-t` alone stops ab at 50 000 requests; the `-n`
/// after it lifts that, so the time limit ends the run; `-r` keeps it going after a
/// socket error (which it then counts as failed) instead of giving up.
pub fn ab(bin: &Path, addr: SocketAddr, secs: f64, clients: u32) -> Figure {
    let setting = format!("-k -c {clients}, 1 thread");
    let args = ["-q".to_string(), "-r".into(), "-k".into(), "-c".into(), clients.to_string(), "-t".into(), whole_secs(secs).to_string(), "-n".into(), "100000000".into(), format!("http://{addr}/")];
    run("ab", bin, &args, setting, parse_ab)
}

/// `oha -z SECS -c CLIENTS --no-tui --output-format json`: closed loop, keep-alive.
pub fn oha(bin: &Path, addr: SocketAddr, secs: f64, clients: u32) -> Figure {
    // oha runs on a tokio runtime with one worker per core, its default.
    let setting = format!("-c {clients}, keep-alive, {} threads", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let args = ["-z".to_string(), format!("{}s", whole_secs(secs)), "-c".into(), clients.to_string(), "--no-tui".into(), "--output-format".into(), "json".into(), format!("http://{addr}/")];
    run("oha", bin, &args, setting, parse_oha)
}

/// Runs `bin` with `args` and reads its standard output with `parse`; a tool that
/// fails or cannot run gets a row saying why.
fn run(tool: &str, bin: &Path, args: &[String], setting: String, parse: fn(&str) -> Parsed) -> Figure {
    match Command::new(bin).args(args).output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            figure(tool, setting, parse(&text), &text)
        }
        Ok(o) => Figure::absent(tool, setting, &format!("{tool} failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Figure::absent(tool, setting, &format!("could not run {}: {e}", bin.display())),
    }
}

/// The tools take whole seconds.
fn whole_secs(secs: f64) -> u64 {
    (secs.ceil() as u64).max(1)
}

/// What a tool's output says: its rate of successful answers (2xx), its p99, and
/// how many requests it made and how many of them failed (an error, or an answer
/// other than 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Parsed {
    pub ok_per_s: Option<f64>,
    pub p99_ms: Option<f64>,
    pub requests: u64,
    pub failed: u64,
}

/// Above this share of failed requests a tool's run has no figure: it did not
/// measure the server, as migbench's own rate counts only answered requests.
pub const MAX_FAILED_SHARE: f64 = 0.01;

/// A tool's row, or why its output gave no figure.
fn figure(tool: &str, setting: String, p: Parsed, text: &str) -> Figure {
    let failed_share = if p.requests > 0 { p.failed as f64 / p.requests as f64 } else { 0.0 };
    match p.ok_per_s {
        Some(_) if failed_share > MAX_FAILED_SHARE => Figure::absent(
            tool,
            setting,
            &format!("{} of its {} requests failed (over {:.0} %): no figure", p.failed, p.requests, MAX_FAILED_SHARE * 100.0),
        ),
        Some(_) => {
            let note = if p.failed > 0 { format!("{} of {} requests failed, not counted", p.failed, p.requests) } else { String::new() };
            Figure { tool: tool.into(), setting, requests_per_s: p.ok_per_s, p99_ms: p.p99_ms, ratio: None, note }
        }
        None => {
            let head: String = text.trim().chars().take(200).collect();
            Figure::absent(tool, setting, &format!("no requests/s in its output: {head}"))
        }
    }
}

/// The number after `label` on the line that starts with it (`label` trimmed of
/// leading spaces), e.g. `Complete requests:      611`.
fn count_after(text: &str, label: &str) -> Option<u64> {
    text.lines().find_map(|l| l.trim().strip_prefix(label)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.trim_end_matches(',').parse().ok())
}

/// wrk: `Requests/sec:` counts every answer, so the 2xx rate is that × (answers −
/// `Non-2xx or 3xx responses`) ÷ answers; its socket errors (connect, read, write,
/// timeout) are failed requests too. The 99 % line of its `--latency`
/// distribution, in ms.
pub fn parse_wrk(text: &str) -> Parsed {
    let rate: Option<f64> = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok());
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| wrk_ms(v.trim()));
    // "  822 requests in 1.00s, 335.54KB read"
    let answers = text.lines().find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.trim().parse::<u64>().ok())).unwrap_or(0);
    let non_2xx = count_after(text, "Non-2xx or 3xx responses:").unwrap_or(0);
    // "  Socket errors: connect 0, read 3, write 0, timeout 1"
    let socket_errors: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|v| v.split(',').filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    let ok_per_s = rate.map(|r| if answers > 0 { r * answers.saturating_sub(non_2xx) as f64 / answers as f64 } else { r });
    Parsed { ok_per_s, p99_ms: p99, requests: answers + socket_errors, failed: non_2xx + socket_errors }
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

/// ab: `Requests per second:` counts every completed request, so the 2xx rate is
/// that × (complete − failed − `Non-2xx responses`) ÷ complete. The 99 % line of
/// its percentile table (whole ms).
pub fn parse_ab(text: &str) -> Parsed {
    let rate: Option<f64> = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests per second:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok());
    let complete = count_after(text, "Complete requests:").unwrap_or(0);
    let failed = count_after(text, "Failed requests:").unwrap_or(0) + count_after(text, "Non-2xx responses:").unwrap_or(0);
    let ok_per_s = rate.map(|r| if complete > 0 { r * complete.saturating_sub(failed) as f64 / complete as f64 } else { r });
    Parsed { ok_per_s, p99_ms: p99, requests: complete, failed }
}

/// oha's JSON: the 2xx answers of `statusCodeDistribution` over `summary.total`
/// seconds, and `latencyPercentiles.p99` (seconds) in ms. Its errors other than the
/// requests its deadline cut (`aborted due to deadline`, those in flight when `-z`
/// ends) are failed requests, as are answers other than 2xx.
pub fn parse_oha(text: &str) -> Parsed {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else { return Parsed::default() };
    let secs = json.pointer("/summary/total").and_then(|v| v.as_f64()).filter(|s| *s > 0.0);
    let p99 = json.pointer("/latencyPercentiles/p99").and_then(|v| v.as_f64()).map(|s| s * 1000.0);
    let counts = |key: &str| -> Vec<(String, u64)> {
        json.get(key).and_then(|v| v.as_object()).map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect()).unwrap_or_default()
    };
    let statuses = counts("statusCodeDistribution");
    let ok: u64 = statuses.iter().filter(|(code, _)| code.starts_with('2')).map(|(_, n)| n).sum();
    let other: u64 = statuses.iter().filter(|(code, _)| !code.starts_with('2')).map(|(_, n)| n).sum();
    let errors: u64 = counts("errorDistribution").iter().filter(|(what, _)| what.as_str() != "aborted due to deadline").map(|(_, n)| n).sum();
    let ok_per_s = match (secs, json.pointer("/summary/requestsPerSec")) {
        (Some(secs), Some(_)) => Some(ok as f64 / secs),
        _ => None,
    };
    Parsed { ok_per_s, p99_ms: p99, requests: ok + other + errors, failed: other + errors }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wrk -t2 -c4 -d1s --latency`, run here (Debian's wrk 4.1.0).
    const WRK: &str = r#"Running 1s test @ http://127.0.0.1:18931/
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.31ms    4.40ms  31.33ms   79.16%
    Req/Sec   412.25    259.63     1.24k    80.00%
  Latency Distribution
     50%    4.09ms
     75%    7.80ms
     90%   10.99ms
     99%   19.95ms
  822 requests in 1.00s, 335.54KB read
Requests/sec:    818.07
Transfer/sec:    333.94KB
"#;

    /// `ab -q -k -c 4 -t 1 -n 100000000`, run here (Debian's ab 2.3).
    const AB: &str = r#"This is ApacheBench, Version 2.3 <$Revision: 1934973 $>
Copyright 1996 Adam Twiss, Zeus Technology Ltd, http://www.zeustech.net/
Licensed to The Apache Software Foundation, http://www.apache.org/

Benchmarking 127.0.0.1 (be patient).....done


Server Software:        SimpleHTTP/0.6
Server Hostname:        127.0.0.1
Server Port:            18931

Document Path:          /
Document Length:        300 bytes

Concurrency Level:      4
Time taken for tests:   1.005 seconds
Complete requests:      611
Failed requests:        0
Keep-Alive requests:    0
Total transferred:      278005 bytes
HTML transferred:       183300 bytes
Requests per second:    608.03 [#/sec] (mean)
Time per request:       6.579 [ms] (mean)
Time per request:       1.645 [ms] (mean, across all concurrent requests)
Transfer rate:          270.17 [Kbytes/sec] received

Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        0    0   0.1      0       1
Processing:     1    6   7.0      2      40
Waiting:        0    6   7.0      2      40
Total:          1    6   7.0      2      40

Percentage of the requests served within a certain time (ms)
  50%      2
  66%      5
  75%     12
  80%     13
  90%     16
  95%     20
  98%     22
  99%     33
 100%     40 (longest request)
"#;

    /// `oha -z 1s -c 4 --no-tui --output-format json`, run here (oha 1.16.0).
    const OHA: &str = r#"{
  "summary": {
    "successRate": 1.0,
    "total": 1.001070987,
    "slowest": 0.021701068,
    "fastest": 0.000679447,
    "average": 0.004877840570197048,
    "requestsPerSec": 815.1270095694023,
    "totalData": 391384,
    "sizePerRequest": 482,
    "sizePerSec": 390965.2812663124
  },
  "metrics": {
    "success_rate": 1.0,
    "requests_per_sec": 815.1270095694023,
    "latency_ms": {
      "min": 0.679,
      "mean": 4.878,
      "p50": 4.0,
      "p95": 10.484,
      "p99": 16.419,
      "max": 21.701
    }
  },
  "responseTimeHistogram": {
    "0.000679447": 1,
    "0.0027816091": 241,
    "0.0048837711999999995": 252,
    "0.006985933299999999": 148,
    "0.0090880954": 85,
    "0.011190257499999998": 54,
    "0.013292419599999999": 13,
    "0.0153945817": 5,
    "0.0174967438": 8,
    "0.019598905899999998": 2,
    "0.021701067999999997": 3
  },
  "latencyPercentiles": {
    "p10": 0.001890486,
    "p25": 0.002609808,
    "p50": 0.004000301,
    "p75": 0.006475208,
    "p90": 0.009152091,
    "p95": 0.01048404,
    "p99": 0.016418695,
    "p99.9": 0.021701068,
    "p99.99": 0.021701068
  },
  "firstByteHistogram": {
    "0.000679187": 1,
    "0.002781352": 241,
    "0.004883517": 252,
    "0.006985682000000001": 148,
    "0.009087847": 85,
    "0.011190012": 54,
    "0.013292177": 13,
    "0.015394342": 5,
    "0.017496507": 8,
    "0.019598672": 2,
    "0.021700837": 3
  },
  "firstBytePercentiles": {
    "p10": 0.001890086,
    "p25": 0.002609277,
    "p50": 0.00399978,
    "p75": 0.006474767,
    "p90": 0.00915158,
    "p95": 0.010483409,
    "p99": 0.016418104,
    "p99.9": 0.021700837,
    "p99.99": 0.021700837
  },
  "rps": {
    "mean": 826.2430749778506,
    "stddev": 422.42065261937796,
    "max": 1973.0328686136265,
    "min": 74.6100505706922,
    "percentiles": {
      "p10": 300.4318407278621,
      "p25": 500.8039154853297,
      "p50": 802.26728758144,
      "p75": 1053.2147273121686,
      "p90": 1358.5509653601962,
      "p95": 1740.1624267609104,
      "p99": 1950.6960427721208,
      "p99.9": 1973.0328686136265,
      "p99.99": 1973.0328686136265
    }
  },
  "details": {
    "DNSDialup": {
      "average": 0.00006775696428571437,
      "fastest": 0.000036218,
      "slowest": 0.001136791
    },
    "DNSLookup": {
      "average": 4.811899014778326e-6,
      "fastest": 1.743e-6,
      "slowest": 0.000030247
    },
    "firstByte": {
      "average": 0.004877294242610831,
      "fastest": 0.000679187,
      "slowest": 0.021700837
    }
  },
  "statusCodeDistribution": {
    "200": 812
  },
  "errorDistribution": {
    "aborted due to deadline": 4
  }
}"#;

    #[test]
    fn wrk_output_is_read() {
        assert_eq!(parse_wrk(WRK), Parsed { ok_per_s: Some(818.07), p99_ms: Some(19.95), requests: 822, failed: 0 });
        assert_eq!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused").ok_per_s, None);
        // The same run with 2 of its answers a 503 and 4 socket errors.
        let bad = WRK.replace("Requests/sec:", "  Socket errors: connect 0, read 3, write 0, timeout 1\n  Non-2xx or 3xx responses: 2\nRequests/sec:");
        let p = parse_wrk(&bad);
        assert_eq!((p.requests, p.failed), (826, 6));
        assert!((p.ok_per_s.unwrap() - 818.07 * 820.0 / 822.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn ab_output_is_read() {
        assert_eq!(parse_ab(AB), Parsed { ok_per_s: Some(608.03), p99_ms: Some(33.0), requests: 611, failed: 0 });
        assert_eq!(parse_ab("apr_socket_recv: Connection refused (111)").ok_per_s, None);
        let bad = AB.replace("Failed requests:        0", "Failed requests:        5").replace("Keep-Alive requests:", "Non-2xx responses:      6\nKeep-Alive requests:");
        let p = parse_ab(&bad);
        assert_eq!((p.requests, p.failed), (611, 11));
        assert!((p.ok_per_s.unwrap() - 608.03 * 600.0 / 611.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn oha_output_is_read() {
        let p = parse_oha(OHA);
        // 812 answers with 200 in 1.001 s; the 4 its deadline cut are not failures.
        assert!((p.ok_per_s.unwrap() - 812.0 / 1.001070987).abs() < 1e-9, "{p:?}");
        assert!((p.p99_ms.unwrap() - 16.418695).abs() < 1e-9, "{p:?}");
        assert_eq!((p.requests, p.failed), (812, 0));
        let bad = OHA.replace("\"200\": 812", "\"200\": 800, \"500\": 12").replace("\"aborted due to deadline\": 4", "\"aborted due to deadline\": 4, \"connection reset\": 3");
        let p = parse_oha(&bad);
        assert_eq!((p.requests, p.failed), (815, 15));
        assert_eq!(parse_oha("{}").ok_per_s, None);
        assert_eq!(parse_oha("error: connection refused"), Parsed::default());
    }

    #[test]
    fn a_tool_without_a_figure_says_what_it_printed() {
        let f = figure("wrk", "-t1 -c1".into(), Parsed::default(), "unable to connect to 127.0.0.1:1 Connection refused");
        assert!(f.requests_per_s.is_none() && f.note.contains("Connection refused"), "{f:?}");
    }

    #[test]
    fn a_run_with_many_failures_has_no_figure_and_a_few_are_noted() {
        let many = Parsed { ok_per_s: Some(900.0), p99_ms: Some(2.0), requests: 1000, failed: 11 };
        let f = figure("ab", "-k".into(), many, "");
        assert!(f.requests_per_s.is_none() && f.note.contains("11 of its 1000 requests failed"), "{f:?}");
        let few = Parsed { failed: 10, ..many };
        let f = figure("ab", "-k".into(), few, "");
        assert_eq!(f.requests_per_s, Some(900.0));
        assert!(f.note.contains("10 of 1000 requests failed"), "{f:?}");
    }

    #[test]
    fn wrk_latency_units() {
        assert_eq!(wrk_ms("812.00us"), Some(0.812));
        assert_eq!(wrk_ms("1.50ms"), Some(1.5));
        assert_eq!(wrk_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_ms("1.00m"), Some(60_000.0));
        assert_eq!(wrk_ms("fast"), None);
    }
}
