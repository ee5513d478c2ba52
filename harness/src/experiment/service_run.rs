//! The HTTP load on a guest around its migration, for a sweep's runs and for
//! `migbench migrate --load`: started once the guest serves, stopped after the
//! migration, its record filed in the measurement and its time series written
//! beside the results.

use crate::load::readiness;
use crate::load::service;
use crate::load::spec::LoadSpec;
use crate::load::timeline;
use crate::migration::measurement::Measurement;
use crate::network::Network;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Stops the load (a bounded one of `requests` first sends them all) and files its
/// record in `m`, with the time series in `out` (named after `stem`) and where
/// their plot goes.
pub async fn finish(out: &Path, stem: &str, requests: Option<u64>, request_timeout_ms: u64, m: &mut Measurement, svc: service::Running) {
    let stopped_early = match requests {
        Some(n) => finish_requests(&svc, n, m.health.healthy, Duration::from_millis(request_timeout_ms)).await,
        None => None,
    };
    let window = m.window_since(svc.t0);
    let (mut rec, requests) = tokio::task::block_in_place(|| svc.finish(window));
    rec.stopped_early = stopped_early;
    // The time series are extras: failing to write them must not cost the run its
    // measurement.
    rec.requests_csv = write_artifact(out, &format!("requests/{stem}.csv"), || Ok(timeline::to_csv(&requests, rec.window)));
    rec.latency_log = write_artifact(out, &format!("latency/{stem}.hlog"), || timeline::interval_log(&rec.client, rec.window, rec.end_ms));
    // Where its plot goes: the runner writes data only, the report side draws the
    // plot from the CSV once the sweep is done (report::plot::write_latency_plots).
    rec.latency_svg = rec.requests_csv.as_ref().map(|_| format!("plots/{stem}.svg"));
    m.service_downtime_ms = rec.client.service_downtime.map(|g| g.ms);
    m.brownout_ms = rec.client.brownout_ms;
    m.service = Some(rec);
}

/// Lets a bounded load (`requests`, like ab -n) send and finish all `n` requests, as
/// long as the guest is healthy and answers keep coming; says why if it stops sooner.
async fn finish_requests(svc: &service::Running, n: u64, healthy: bool, timeout: Duration) -> Option<String> {
    if !healthy {
        return (!svc.is_done()).then(|| format!("stopped after {} of {n} requests: the guest is not healthy", svc.finished()));
    }
    // A request ends by its timeout at the latest, so a longer silence means nothing moves.
    let stall = timeout + Duration::from_secs(5);
    let (mut seen, mut moved) = (svc.finished(), Instant::now());
    while !svc.is_done() {
        if svc.finished() != seen {
            (seen, moved) = (svc.finished(), Instant::now());
        } else if moved.elapsed() > stall {
            return Some(format!("stopped after {seen} of {n} requests: none finished for {} s", stall.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Waits for the guest's HTTP server, then starts the load and the probe.
pub async fn start(load: &LoadSpec, ip: std::net::Ipv4Addr, probe_hz: u32, network: &Network) -> Result<service::Running> {
    let net = network.clone();
    tokio::task::spawn_blocking(move || readiness::wait_until_serving(Some(&net), std::net::SocketAddr::from((ip, migbench_guest::http::PORT)), Duration::from_secs(60)))
        .await
        .context("waiting for the guest's HTTP server")??;
    service::start(load, ip, migbench_guest::http::PORT, probe_hz, Some(network))
}

/// Writes `contents()` to `rel` inside the results directory and returns `rel`; on
/// failure warns (naming the file) and returns None.
fn write_artifact(out: &Path, rel: &str, contents: impl FnOnce() -> Result<String>) -> Option<String> {
    let path = out.join(rel);
    let written = (|| {
        let text = contents()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {} (disk full?)", path.display()))
    })();
    match written {
        Ok(()) => Some(rel.to_string()),
        Err(e) => {
            eprintln!("migbench: warning: {e:#}; the run's record is kept without it");
            None
        }
    }
}

