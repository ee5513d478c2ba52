//! The service a guest gives its clients, measured across one migration: the HTTP
//! load and the fine probe started together on one clock, stopped together, and
//! summarised against the migration window.

use super::generator::{self, RunningLoad};
use super::spec::LoadSpec;
use super::probe::{self, ProbeSummary, RunningProbe};
use super::timeline::{self, ClientView, Request, Window};
use crate::network::Network;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

/// What the guest's clients saw during one run (the `service` field of a record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub load: LoadSpec,
    /// The address the load was sent to.
    pub target: String,
    /// The migration on the load's clock (ms since the load started): `migrate`
    /// sent → destination running (or the migration's end when it did not complete).
    pub window: Window,
    /// Source `STOP` → destination `RESUME`, on the same clock.
    pub switchover: Option<(f64, f64)>,
    /// When the load's last request finished, ms (for a bounded load, possibly
    /// long before the run ended).
    pub end_ms: f64,
    pub client: ClientView,
    pub probe: Option<ProbeSummary>,
    /// The per-request time series (CSV), relative to the results directory.
    pub requests_csv: Option<String>,
    /// Its plot, with the migration shaded (SVG), relative to the results directory.
    /// The runner names it; the report side draws it from the CSV after the sweep
    /// (or `migbench report` does, if the sweep was interrupted first).
    #[serde(default)]
    pub latency_svg: Option<String>,
    /// The phases' histograms as an HdrHistogram interval log, relative to the results directory.
    #[serde(default)]
    pub latency_log: Option<String>,
    /// Why a bounded load (`requests`) ended before all its requests were sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// What went wrong in the load generator or the probe themselves (their
    /// results up to then are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The load and the probe, running.
pub struct Running {
    pub t0: Instant,
    spec: LoadSpec,
    target: SocketAddr,
    load: RunningLoad,
    probe: Option<RunningProbe>,
}

/// Starts `spec` against the guest's HTTP port and, with `probe_hz` > 0, the probe
/// against its echo port.
pub fn start(spec: &LoadSpec, ip: Ipv4Addr, http_port: u16, probe_hz: u32, network: Option<&Network>) -> Result<Running> {
    let t0 = Instant::now();
    let target = SocketAddr::from((ip, http_port));
    let load = generator::start(spec, target, network, t0).context("starting the HTTP load")?;
    let probe = match probe_hz {
        0 => None,
        hz => Some(probe::start(SocketAddr::from((ip, probe::ECHO_PORT)), hz, network, t0).context("starting the probe")?),
    };
    Ok(Running { t0, spec: spec.clone(), target, load, probe })
}

impl Running {
    /// Milliseconds on the load's clock.
    pub fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64() * 1000.0
    }

    /// Whether a bounded load (`requests`) has sent and finished them all.
    pub fn is_done(&self) -> bool {
        self.load.is_done()
    }

    /// Requests finished so far.
    pub fn finished(&self) -> u64 {
        self.load.finished()
    }

    /// Stops both and summarises them against the migration's window and switchover
    /// (on this load's clock: see [`Running::t0`]; none when the migration never
    /// started). A failure of either is noted in the record; what they measured until
    /// then is kept.
    pub fn finish(self, migration: Option<(Window, Option<(f64, f64)>)>) -> (ServiceRecord, Vec<Request>) {
        let Running { t0, spec, target, load, probe } = self;
        let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        let mut errors = Vec::new();
        let probe = probe.and_then(|p| match p.stop() {
            Ok(log) => Some(log),
            Err(e) => {
                errors.push(format!("{e:#}"));
                None
            }
        });
        let probe_end_ms = ms(Instant::now());
        let finished = load.finish();
        errors.extend(finished.error);
        let end_ms = ms(finished.ended);
        let requests = finished.requests;
        let (window, switchover) = migration.unwrap_or((Window { from_ms: end_ms, to_ms: end_ms }, None));
        let client = timeline::summarise(&requests, window, switchover, end_ms);
        let probe = probe.map(|p| p.summarise((window.from_ms, window.to_ms), switchover, probe_end_ms));
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let rec = ServiceRecord {
            load: spec,
            target: target.to_string(),
            window,
            switchover,
            end_ms,
            client,
            probe,
            requests_csv: None,
            latency_svg: None,
            latency_log: None,
            stopped_early: None,
            error,
        };
        (rec, requests)
    }
}
