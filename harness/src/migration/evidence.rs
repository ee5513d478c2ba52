//! What QEMU itself says a run's strategy did. Setting a capability is a request:
//! QEMU may keep another value, and a strategy may never engage (pre-copy can
//! finish before the switch to post-copy; auto-converge throttles only a guest
//! that outruns the link). So the settings are read back from both QEMUs after
//! they are set, and the counters that show each strategy at work are kept. A run
//! whose strategy never took effect says so and is not reported as that strategy.

use crate::machine::Machine;
use super::measurement::{
    DirtyLimitEvidence, Measurement, MultifdEvidence, Outcome, PostcopyEvidence, ReadBack, RecordedEvent, Settings, StrategyEvidence, ThrottleEvidence,
    TlsEvidence,
};
use super::scenario::Scenario;
use super::settings::{capability_plan, parameter_plan};
use super::strategy::{Proof, Strategy};
use crate::qmp::{MigrationInfo, Qmp, QmpError, XbzrleCacheStats};
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;

/// What the watch loop saw of the strategy in the source's `query-migrate` replies
/// (counters that end with the migration, like the throttle, are only seen there).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    postcopy_seen_ms: Option<f64>,
    max_throttle: Option<u64>,
    throttled_samples: usize,
    xbzrle: Option<XbzrleCacheStats>,
    multifd_bytes: Option<u64>,
    dirty_limit_throttle_us: Option<u64>,
    dirty_limit_ring_full_us: Option<u64>,
    missed_zero_copy: Option<u64>,
}

impl Observed {
    pub fn sample(&mut self, t_ms: f64, info: &MigrationInfo) {
        if info.status().starts_with("postcopy") && self.postcopy_seen_ms.is_none() {
            self.postcopy_seen_ms = Some(t_ms);
        }
        if let Some(p) = info.cpu_throttle_percentage {
            self.max_throttle = Some(self.max_throttle.unwrap_or(0).max(p));
            self.throttled_samples += usize::from(p > 0);
        }
        // Cumulative counters: the last reply that has them holds the totals (after a
        // cancel QEMU drops them).
        if let Some(x) = &info.xbzrle_cache {
            self.xbzrle = Some(x.clone());
        }
        if let Some(b) = info.ram.as_ref().and_then(|r| r.multifd_bytes) {
            self.multifd_bytes = Some(b);
        }
        // Per-round figures: the highest shows whether the limit ever held a vCPU.
        let max = |seen: Option<u64>, now: Option<u64>| now.map(|n| seen.unwrap_or(0).max(n)).or(seen);
        self.dirty_limit_throttle_us = max(self.dirty_limit_throttle_us, info.dirty_limit_throttle_time_per_round);
        self.dirty_limit_ring_full_us = max(self.dirty_limit_ring_full_us, info.dirty_limit_ring_full_time);
        if let Some(n) = info.ram.as_ref().and_then(|r| r.dirty_sync_missed_zero_copy) {
            self.missed_zero_copy = Some(n);
        }
    }
}

/// When a MIGRATION event first said `postcopy-active` (either side), ms since `migrate`.
fn postcopy_event_ms(events: &[RecordedEvent]) -> Option<f64> {
    events
        .iter()
        .filter(|e| e.name == "MIGRATION" && e.data.get("status").and_then(Value::as_str) == Some("postcopy-active"))
        .map(|e| e.t_ms)
        .reduce(f64::min)
}

fn mib(bytes: u64) -> String {
    // XBZRLE deltas of a few bytes a page add up to KiB, not MiB.
    if bytes < 1 << 20 { format!("{:.1} KiB", bytes as f64 / 1024.0) } else { format!("{:.1} MiB", bytes as f64 / 1048576.0) }
}

/// Whether post-copy was entered, from the samples and events, and the note that says
/// so or why not.
fn postcopy_entered(strategy: Strategy, seen: &Observed, m: &Measurement, ended: &str) -> (PostcopyEvidence, String) {
    let entered_ms = [seen.postcopy_seen_ms, postcopy_event_ms(&m.events)].into_iter().flatten().reduce(f64::min);
    let p = PostcopyEvidence { entered: entered_ms.is_some(), entered_ms, bytes: m.postcopy_bytes, page_requests: m.postcopy_requests, preempt: None };
    let note = if let Some(at) = entered_ms {
        let bytes = p.bytes.map(|b| format!("; {} sent in post-copy", mib(b))).unwrap_or_default();
        let req = p.page_requests.map(|r| format!(", {r} pages requested by the destination")).unwrap_or_default();
        format!("post-copy entered {at:.0} ms after migrate{bytes}{req}")
    } else if let Some(err) = &m.postcopy_switch_error {
        format!("{strategy} requested; QEMU refused migrate-start-postcopy ({err})")
    } else if m.postcopy_started_ms.is_none() {
        format!("{strategy} requested; {ended} before the switch to post-copy was due")
    } else if m.outcome == Outcome::Completed {
        format!("{strategy} requested; pre-copy finished before switchover")
    } else {
        format!("{strategy} requested; {ended} before post-copy began")
    };
    (p, note)
}

/// Judges a finished migration: `m` holds its outcome, events, post-copy switch and
/// RAM counters; `seen` what the samples showed; `settings` the read-back.
pub fn judge(strategy: Strategy, settings: Settings, seen: &Observed, m: &Measurement) -> StrategyEvidence {
    let ended = match &m.outcome {
        Outcome::Completed => "pre-copy finished",
        Outcome::Cancelled { .. } => "the migration was cancelled",
        Outcome::Failed { .. } => "the migration failed",
        Outcome::Unsupported { .. } => "nothing was migrated",
    };
    let tls = tls_evidence(&settings);
    let mut e = StrategyEvidence {
        strategy,
        took_effect: true,
        note: String::new(),
        settings,
        postcopy: None,
        xbzrle: None,
        throttle: None,
        multifd: None,
        dirty_limit: None,
        tls,
    };
    match strategy.spec().proof {
        Proof::Nothing => e.note = "pre-copy: QEMU's default, nothing to engage".into(),
        Proof::PostcopyEntered => {
            let (p, note) = postcopy_entered(strategy, seen, m, ended);
            e.took_effect = p.entered;
            e.note = note;
            e.postcopy = Some(p);
        }
        Proof::PostcopyPreempt => {
            let (mut p, note) = postcopy_entered(strategy, seen, m, ended);
            // Both ends must run it: the destination opens no preempt channel to
            // listen on, nor the source one to send on, without the capability.
            let on = |r: &ReadBack| r.capabilities.get("postcopy-preempt") == Some(&true);
            let both = on(&e.settings.source) && on(&e.settings.destination);
            p.preempt = Some(both);
            e.took_effect = p.entered && both;
            e.note = if both {
                format!("{note}; postcopy-preempt read back on on both sides")
            } else {
                format!("{note}; but postcopy-preempt was not read back on on both sides, so the page requests shared the main channel")
            };
            e.postcopy = Some(p);
        }
        Proof::XbzrleDeltas => {
            let x = seen.xbzrle.clone();
            let (pages, overflow) = x.as_ref().map_or((0, 0), |x| (x.pages.unwrap_or(0), x.overflow.unwrap_or(0)));
            // A delta is only tried for a page the cache holds: one sent (or
            // overflowed) shows XBZRLE at work; misses alone are pre-copy.
            e.took_effect = pages + overflow > 0;
            e.note = match &x {
                None => format!("{strategy} requested; QEMU reported no XBZRLE cache statistics"),
                Some(x) if !e.took_effect => format!(
                    "{strategy} requested; {ended} before a re-sent page was found in the cache ({} cache misses): every page went whole, as in pre-copy",
                    x.cache_miss.unwrap_or(0)
                ),
                Some(x) => format!(
                    "XBZRLE sent {pages} pages as deltas ({}), {} cache misses (miss rate {:.2}), {overflow} overflows",
                    mib(x.bytes.unwrap_or(0)),
                    x.cache_miss.unwrap_or(0),
                    x.cache_miss_rate.unwrap_or(0.0)
                ),
            };
            e.xbzrle = x;
        }
        Proof::Throttled => {
            let t = ThrottleEvidence { max_percent: seen.max_throttle, throttled_samples: seen.throttled_samples };
            e.took_effect = t.max_percent.unwrap_or(0) > 0;
            e.note = if e.took_effect {
                format!("{strategy} throttled the guest's vCPUs up to {} %", t.max_percent.unwrap_or(0))
            } else {
                format!("{strategy} requested; {ended} before QEMU throttled the guest")
            };
            e.throttle = Some(t);
        }
        Proof::MultifdChannels | Proof::ZeroCopySent => {
            let params = &e.settings.source.parameters;
            let d = MultifdEvidence {
                channels: params.get("multifd-channels").and_then(Value::as_u64),
                compression: params.get("multifd-compression").and_then(Value::as_str).map(String::from),
                bytes: seen.multifd_bytes,
                zero_page_detection: params.get("zero-page-detection").and_then(Value::as_str).map(String::from),
                zero_pages: m.duplicate_pages,
                zero_copy: e.settings.source.capabilities.get("zero-copy-send").copied(),
                missed_zero_copy: seen.missed_zero_copy,
            };
            let mut how = format!(
                "{} channels, compression {}, zero-page detection {}",
                d.channels.map_or("?".into(), |c| c.to_string()),
                d.compression.as_deref().unwrap_or("not offered by this QEMU"),
                d.zero_page_detection.as_deref().unwrap_or("QEMU's default")
            );
            if d.zero_copy == Some(true) {
                how.push_str(", zero-copy send");
            }
            // The channels are confirmed by the read-back; QEMUs that count their
            // bytes also show they carried the RAM. Zero-copy must be read back on:
            // QEMU fails the migration rather than copy when it cannot send in place.
            let zero_copy_missing = strategy.spec().zero_copy && d.zero_copy != Some(true);
            e.took_effect = d.bytes.is_none_or(|b| b > 0) && !zero_copy_missing;
            let zeros = d.zero_pages.map(|z| format!(", {z} zero pages")).unwrap_or_default();
            let missed = d.missed_zero_copy.filter(|_| d.zero_copy == Some(true)).map(|n| format!(", {n} syncs waited for zero-copy sends")).unwrap_or_default();
            e.note = match d.bytes {
                _ if zero_copy_missing => format!("{strategy} requested ({how}); QEMU does not read zero-copy-send back on on the source"),
                Some(0) => format!("{strategy} requested ({how}); QEMU reports no byte sent through the channels"),
                Some(b) => format!("{strategy}: {how} (read back on both sides); {} sent through the channels{zeros}{missed}", mib(b)),
                None => format!("{strategy}: {how} (read back on both sides); this QEMU does not count multifd bytes{zeros}"),
            };
            e.multifd = Some(d);
        }
        Proof::SavedToFile => {
            let on = |r: &ReadBack| r.capabilities.get("mapped-ram") == Some(&true);
            let read_back = on(&e.settings.source) && on(&e.settings.destination);
            let f = m.file.as_ref();
            e.took_effect = read_back && f.is_some_and(|f| f.apparent_bytes > 0) && m.outcome == Outcome::Completed;
            e.note = match f {
                _ if !read_back => format!("{strategy} requested; QEMU did not read mapped-ram back on both sides"),
                None => format!("{strategy} requested; {ended} before the file was written"),
                Some(f) if f.apparent_bytes == 0 => format!("{strategy} requested; the file {} is empty", f.path),
                Some(f) if m.outcome != Outcome::Completed => {
                    format!("{strategy}: saved {} to {}, but {ended} before the destination ran from it", mib(f.apparent_bytes), f.path)
                }
                Some(f) => format!(
                    "{strategy}: mapped-ram read back on both sides; saved to {} ({} long, {} on disk), restored in {}",
                    f.path,
                    mib(f.apparent_bytes),
                    mib(f.allocated_bytes),
                    f.restore_ms.map_or("?".into(), |r| format!("{r:.0} ms"))
                ),
            };
        }
        Proof::DirtyLimited => {
            let d = DirtyLimitEvidence {
                limit_mb_s: e.settings.source.parameters.get("vcpu-dirty-limit").and_then(Value::as_u64),
                max_throttle_us_per_round: seen.dirty_limit_throttle_us,
                max_ring_full_us: seen.dirty_limit_ring_full_us,
            };
            e.took_effect = d.max_throttle_us_per_round.unwrap_or(0) > 0;
            e.note = if e.took_effect {
                format!(
                    "{strategy} held the vCPUs to {} MB/s: up to {} µs of throttling a round",
                    d.limit_mb_s.map_or("?".into(), |l| l.to_string()),
                    d.max_throttle_us_per_round.unwrap_or(0)
                )
            } else {
                format!("{strategy} requested; {ended} before QEMU throttled a vCPU to the limit")
            };
            e.dirty_limit = Some(d);
        }
    }
    e
}

/// The TLS credentials read back on both sides, when the run set any.
fn tls_evidence(settings: &Settings) -> Option<TlsEvidence> {
    let creds = |r: &ReadBack| r.parameters.get("tls-creds").and_then(Value::as_str).filter(|c| !c.is_empty()).map(String::from);
    let (source_creds, destination_creds) = (creds(&settings.source)?, creds(&settings.destination)?);
    let hostname = settings.source.parameters.get("tls-hostname").and_then(Value::as_str).filter(|h| !h.is_empty()).map(String::from);
    Some(TlsEvidence { source_creds, destination_creds, hostname })
}

impl StrategyEvidence {
    /// One line per strategy-specific fact, for the notes under a table.
    pub fn facts(&self) -> Vec<String> {
        let mut out = vec![self.note.clone()];
        if let Some(t) = &self.tls {
            out.push(format!(
                "TLS: credentials {} (client) and {} (server) read back, verify-peer on, the destination's certificate checked against {}",
                t.source_creds,
                t.destination_creds,
                t.hostname.as_deref().unwrap_or("the address")
            ));
        }
        let shown = |r: &ReadBack| {
            let caps: Vec<&str> = r.capabilities.iter().filter(|(c, on)| **on && c.as_str() != "events").map(|(c, _)| c.as_str()).collect();
            // An empty string (TLS off) is shown as one, not as nothing.
            let params: Vec<String> =
                r.parameters.iter().map(|(k, v)| format!("{k}={}", v.as_str().filter(|s| !s.is_empty()).map(String::from).unwrap_or_else(|| v.to_string()))).collect();
            let caps = if caps.is_empty() { "none".to_string() } else { caps.join(", ") };
            if params.is_empty() { format!("capabilities on: {caps}") } else { format!("capabilities on: {caps}; {}", params.join(", ")) }
        };
        out.push(format!("QEMU reads back on the source: {}", shown(&self.settings.source)));
        out.push(format!("QEMU reads back on the destination: {}", shown(&self.settings.destination)));
        out
    }
}

/// Sets the capabilities a strategy needs on one QEMU (all managed ones explicitly).
async fn set_capabilities(q: &Qmp, plan: &[(&str, bool)]) -> Result<(), QmpError> {
    let caps: Vec<Value> = plan.iter().map(|(c, on)| serde_json::json!({"capability": c, "state": on})).collect();
    q.execute_json("migrate-set-capabilities", serde_json::json!({ "capabilities": caps })).await?;
    Ok(())
}

/// Compares what one QEMU reports (`query-migrate-capabilities` and
/// `query-migrate-parameters` replies) with what was set: the read-back, or the
/// first difference in words.
pub fn read_back(side: &str, caps: &[(&str, bool)], params: &Value, caps_reply: &Value, params_reply: &Value) -> Result<ReadBack, String> {
    let mut out = ReadBack::default();
    let reported: BTreeMap<&str, bool> = caps_reply
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c.get("capability")?.as_str()?, c.get("state")?.as_bool()?)))
        .collect();
    for (cap, want) in caps {
        match reported.get(cap) {
            Some(got) if got == want => {
                out.capabilities.insert(cap.to_string(), *got);
            }
            Some(got) => {
                return Err(format!(
                    "QEMU on the {side} reports capability {cap} {} after migbench set it {}: the strategy would not run as asked",
                    on_off(*got),
                    on_off(*want)
                ));
            }
            None => return Err(format!("QEMU on the {side} does not report capability {cap} after migbench set it {}", on_off(*want))),
        }
    }
    for (name, want) in params.as_object().into_iter().flatten() {
        match params_reply.get(name) {
            Some(got) if got == want => {
                out.parameters.insert(name.clone(), got.clone());
            }
            Some(got) => {
                return Err(format!("QEMU on the {side} reports {name} = {got} after migbench set it to {want}: the strategy would not run as asked"));
            }
            None => return Err(format!("QEMU on the {side} does not report parameter {name} after migbench set it to {want}")),
        }
    }
    Ok(out)
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The capabilities and parameters `m`, the `side` of a migration, needs for the
/// scenario, from its own schema; or why its QEMU cannot ("unsupported on QEMU
/// 7.2.22 (destination): …").
async fn side_plan(m: &Machine, side: &str, scenario: &Scenario) -> Result<Result<SidePlan, String>> {
    let features = m.features().await?;
    let plan = capability_plan(scenario.strategy, features).and_then(|caps| {
        let (src, dst) = parameter_plan(scenario, features)?;
        Ok((caps, if side == "source" { src } else { dst }))
    });
    Ok(plan.map_err(|reason| format!("unsupported on QEMU {} ({side}): {reason}", m.emulator.qemu.version)))
}

/// One side's capability states and parameters.
type SidePlan = (Vec<(&'static str, bool)>, qapi::qmp::MigrateSetParameters);

/// Configures both QEMUs for the scenario and reads the settings back.
/// `Ok(Err(outcome))`: nothing was migrated — `Unsupported` when this QEMU cannot
/// do it or refused a value, `Failed` when it reports another value than was set.
pub(crate) async fn configure(src: &Machine, dst: &Machine, scenario: &Scenario) -> Result<Result<Settings, Outcome>> {
    // Each side's own schema decides for it: across two QEMU versions they differ.
    let (src_plan, dst_plan) = match (side_plan(src, "source", scenario).await?, side_plan(dst, "destination", scenario).await?) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(reason), _) | (_, Err(reason)) => return Ok(Err(Outcome::Unsupported { reason })),
    };
    let mut settings = Settings::default();
    for (side, m, (caps, params)) in [("source", src, src_plan), ("destination", dst, dst_plan)] {
        // QEMU refusing a value is this run's result (the guest is unharmed); a dead
        // connection is an error.
        let refused = |e: QmpError| match e {
            QmpError::Command { .. } => {
                Ok(Err(Outcome::Unsupported { reason: format!("QEMU on {} refused the {} settings: {e}", m.name, scenario.strategy) }))
            }
            other => Err(anyhow::Error::new(other)),
        };
        // Capabilities off, parameters, then capabilities on: QEMU checks each
        // against the other's current values (zero-copy send refuses compression
        // and TLS), and a reused guest's QEMU still holds an earlier run's.
        let off: Vec<(&str, bool)> = caps.iter().map(|(c, _)| (*c, false)).collect();
        if let Err(e) = set_capabilities(&m.qmp, &off).await {
            return refused(e);
        }
        let wanted = serde_json::to_value(&params)?;
        if let Err(e) = m.qmp.execute(&qapi::qmp::migrate_set_parameters(params)).await {
            return refused(e);
        }
        if let Err(e) = set_capabilities(&m.qmp, &caps).await {
            return refused(e);
        }
        let caps_reply = m.qmp.execute_json("query-migrate-capabilities", Value::Null).await?;
        let params_reply = m.qmp.execute_json("query-migrate-parameters", Value::Null).await?;
        match read_back(side, &caps, &wanted, &caps_reply, &params_reply) {
            Ok(r) if side == "source" => settings.source = r,
            Ok(r) => settings.destination = r,
            Err(reason) => return Ok(Err(Outcome::Failed { reason })),
        }
    }
    Ok(Ok(settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::measurement::Health;

    fn fixture(version: &str, name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/qmp-{version}/{name}"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
    }

    /// A completed run whose source last replied `replies`' last, as the driver records it.
    fn run(strategy: Strategy, replies: &[Value]) -> StrategyEvidence {
        let mut seen = Observed::default();
        let mut m = Measurement::not_started(Outcome::Completed, Health::default());
        for (i, r) in replies.iter().enumerate() {
            let info = MigrationInfo::from_value(r);
            seen.sample(50.0 * (i + 1) as f64, &info);
            if let Some(ram) = info.ram {
                m.postcopy_bytes = ram.postcopy_bytes;
                m.postcopy_requests = ram.postcopy_requests;
            }
        }
        m.postcopy_started_ms = strategy.switches_to_postcopy().then_some(1.0);
        judge(strategy, Settings::default(), &seen, &m)
    }

    #[test]
    fn evidence_is_read_from_7_2_and_10_0_replies() {
        for v in ["7.2", "10.0"] {
            let e = run(Strategy::Xbzrle, &[fixture(v, "query-migrate-xbzrle.json")]);
            let x = e.xbzrle.as_ref().unwrap();
            assert!(e.took_effect && x.pages.unwrap() > 1000 && x.cache_miss.unwrap() > 1000 && x.cache_size == Some(64 << 20), "{v}: {e:?}");
            assert!(e.note.starts_with("XBZRLE sent") && e.note.contains("cache misses"), "{v}: {}", e.note);

            // The throttle ends with the migration: its highest sample counts, not the last.
            let throttled = fixture(v, "query-migrate-throttle.json");
            let pct = throttled["cpu-throttle-percentage"].as_u64().unwrap();
            let e = run(Strategy::AutoConverge, &[throttled, fixture(v, "query-migrate-completed.json")]);
            let t = e.throttle.as_ref().unwrap();
            assert_eq!((t.max_percent, t.throttled_samples), (Some(pct), 1), "{v}");
            assert!(pct >= 90 && e.took_effect && e.note.contains(&format!("{pct} %")), "{v}: {}", e.note);

            let e = run(Strategy::Postcopy, &[fixture(v, "query-migrate-postcopy.json")]);
            let p = e.postcopy.as_ref().unwrap();
            assert!(e.took_effect && p.entered && p.entered_ms == Some(50.0) && p.bytes.unwrap() > 0, "{v}: {e:?}");
        }
        let mut settings = Settings::default();
        settings.source.parameters = [("multifd-channels".to_string(), Value::from(2)), ("multifd-compression".to_string(), Value::from("zstd"))].into();
        let mut seen = Observed::default();
        seen.sample(1.0, &MigrationInfo::from_value(&fixture("10.0", "query-migrate-multifd.json")));
        let e = judge(Strategy::Multifd, settings, &seen, &Measurement::not_started(Outcome::Completed, Health::default()));
        let d = e.multifd.as_ref().unwrap();
        assert_eq!((d.channels, d.compression.as_deref()), (Some(2), Some("zstd")));
        assert!(e.took_effect && d.bytes.unwrap() > 1 << 20, "{e:?}");
    }

    #[test]
    fn a_strategy_that_never_engaged_says_why_and_is_not_counted() {
        let precopy_only = fixture("10.0", "query-migrate-multifd.json");
        let plain = fixture("7.2", "query-migrate-completed.json");
        // Post-copy asked for, but QEMU finished in pre-copy.
        let e = run(Strategy::Postcopy, std::slice::from_ref(&plain));
        assert!(!e.took_effect && e.note == "postcopy requested; pre-copy finished before switchover", "{}", e.note);
        // Hybrid that never reached its switch, and one QEMU refused.
        let mut m = Measurement::not_started(Outcome::Completed, Health::default());
        let none = Observed::default();
        let e = judge(Strategy::Hybrid, Settings::default(), &none, &m);
        assert!(!e.took_effect && e.note.contains("before the switch to post-copy was due"), "{}", e.note);
        m.postcopy_switch_error = Some("Postcopy must be started after migration has been started".into());
        assert!(judge(Strategy::Hybrid, Settings::default(), &none, &m).note.contains("refused migrate-start-postcopy"));
        let mut failed = Measurement::not_started(Outcome::Failed { reason: "the destination QEMU exited".into() }, Health::default());
        failed.postcopy_started_ms = Some(2.0);
        assert_eq!(judge(Strategy::Postcopy, Settings::default(), &none, &failed).note, "postcopy requested; the migration failed before post-copy began");
        // A MIGRATION event is proof enough, even between samples.
        m.postcopy_switch_error = None;
        m.events.push(RecordedEvent { side: "destination".into(), t_ms: 30.0, name: "MIGRATION".into(), data: serde_json::json!({"status": "postcopy-active"}) });
        assert!(judge(Strategy::Hybrid, Settings::default(), &none, &m).took_effect);

        let e = run(Strategy::AutoConverge, std::slice::from_ref(&plain));
        assert!(!e.took_effect && e.note.contains("before QEMU throttled the guest"), "{}", e.note);
        let mut misses = fixture("10.0", "query-migrate-xbzrle.json");
        misses["xbzrle-cache"]["pages"] = 0.into();
        let e = run(Strategy::Xbzrle, &[misses]);
        assert!(!e.took_effect && e.note.contains("4257 cache misses") && e.note.contains("as in pre-copy"), "{}", e.note);
        assert!(!run(Strategy::Xbzrle, std::slice::from_ref(&plain)).took_effect, "no statistics, no proof");
        let e = run(Strategy::Multifd, std::slice::from_ref(&plain));
        assert!(!e.took_effect && e.note.contains("no byte sent through the channels"), "{}", e.note);
        assert!(run(Strategy::Precopy, &[precopy_only]).took_effect);

        // The measurement says so; a record from before evidence was kept is not judged.
        let mut m = Measurement::not_started(Outcome::Completed, Health { healthy: true, ..Default::default() });
        assert!(m.strategy_took_effect());
        m.evidence = Some(run(Strategy::Postcopy, std::slice::from_ref(&plain)));
        assert!(!m.strategy_took_effect());
        let old: Value = serde_json::to_value(Measurement::not_started(Outcome::Completed, Health::default())).unwrap();
        assert!(old.get("evidence").is_none(), "no evidence, no key");
        assert!(serde_json::from_value::<Measurement>(old).unwrap().strategy_took_effect());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["evidence"]["took_effect"], false);
        assert_eq!(serde_json::from_value::<Measurement>(json).unwrap(), m);
    }

    /// Preempt counts when post-copy was entered *and* both sides read the capability
    /// back on; post-copy alone is plain post-copy.
    #[test]
    fn postcopy_preempt_needs_post_copy_and_the_capability_on_both_sides() {
        let on = |both: bool| {
            let mut s = Settings::default();
            s.source.capabilities.insert("postcopy-preempt".into(), true);
            s.destination.capabilities.insert("postcopy-preempt".into(), both);
            s
        };
        for v in ["7.2", "10.0"] {
            let info = MigrationInfo::from_value(&fixture(v, "query-migrate-postcopy.json"));
            let mut seen = Observed::default();
            seen.sample(50.0, &info);
            let mut m = Measurement::not_started(Outcome::Completed, Health::default());
            m.postcopy_started_ms = Some(1.0);
            m.postcopy_requests = info.ram.as_ref().unwrap().postcopy_requests;
            let e = judge(Strategy::PostcopyPreempt, on(true), &seen, &m);
            let p = e.postcopy.as_ref().unwrap();
            assert!(e.took_effect && p.entered && p.preempt == Some(true), "{v}: {e:?}");
            assert!(e.note.contains("post-copy entered 50 ms") && e.note.ends_with("postcopy-preempt read back on on both sides"), "{v}: {}", e.note);

            let e = judge(Strategy::PostcopyPreempt, on(false), &seen, &m);
            assert!(!e.took_effect && e.postcopy.as_ref().unwrap().preempt == Some(false), "{v}: {e:?}");
            assert!(e.note.contains("not read back on on both sides"), "{v}: {}", e.note);

            // The capability on, but pre-copy finished first: not post-copy preempt.
            let e = judge(Strategy::PostcopyPreempt, on(true), &Observed::default(), &m);
            assert!(!e.took_effect && e.note.starts_with("postcopy-preempt requested; pre-copy finished before switchover"), "{v}: {}", e.note);
            // Plain post-copy records no preempt at all.
            assert_eq!(judge(Strategy::Postcopy, on(true), &seen, &m).postcopy.unwrap().preempt, None);
        }
    }

    #[test]
    fn a_save_to_a_file_is_proven_by_the_read_back_and_the_file() {
        use crate::migration::measurement::SavedFile;
        let mut settings = Settings::default();
        for side in [&mut settings.source, &mut settings.destination] {
            side.capabilities.insert("mapped-ram".into(), true);
        }
        let mut m = Measurement::not_started(Outcome::Completed, Health::default());
        let none = Observed::default();
        let e = judge(Strategy::MappedRam, settings.clone(), &none, &m);
        assert!(!e.took_effect && e.note.contains("before the file was written"), "{}", e.note);
        m.file = Some(SavedFile { path: "/run/saved.mapped-ram".into(), apparent_bytes: 262 << 20, allocated_bytes: 100 << 20, restore_ms: Some(398.0) });
        let e = judge(Strategy::MappedRam, settings.clone(), &none, &m);
        assert!(e.took_effect, "{}", e.note);
        assert_eq!(e.note, "mapped-ram: mapped-ram read back on both sides; saved to /run/saved.mapped-ram (262.0 MiB long, 100.0 MiB on disk), restored in 398 ms");
        // A restore that failed: saved, but the destination never ran from it.
        m.outcome = Outcome::Failed { reason: "restoring".into() };
        let e = judge(Strategy::MappedRamMultifd, settings.clone(), &none, &m);
        assert!(!e.took_effect && e.note.contains("before the destination ran from it"), "{}", e.note);
        // Without mapped-ram read back on both sides the file proves nothing.
        m.outcome = Outcome::Completed;
        settings.destination.capabilities.clear();
        assert!(!judge(Strategy::MappedRam, settings, &none, &m).took_effect);
    }

    #[test]
    fn dirty_limit_is_proven_by_throttle_time() {
        let mut settings = Settings::default();
        settings.source.parameters.insert("vcpu-dirty-limit".into(), Value::from(10));
        let mut seen = Observed::default();
        let reply = |t: u64| MigrationInfo::from_value(&serde_json::json!({"status": "active", "dirty-limit-throttle-time-per-round": t, "dirty-limit-ring-full-time": 7}));
        let m = Measurement::not_started(Outcome::Completed, Health::default());
        seen.sample(1.0, &reply(0));
        let e = judge(Strategy::DirtyLimit, settings.clone(), &seen, &m);
        assert!(!e.took_effect && e.note.contains("before QEMU throttled a vCPU"), "{}", e.note);
        seen.sample(2.0, &reply(1500));
        seen.sample(3.0, &reply(300));
        let e = judge(Strategy::DirtyLimit, settings, &seen, &m);
        let d = e.dirty_limit.as_ref().unwrap();
        assert_eq!((d.limit_mb_s, d.max_throttle_us_per_round, d.max_ring_full_us), (Some(10), Some(1500), Some(7)));
        assert!(e.took_effect && e.note.contains("10 MB/s") && e.note.contains("1500 µs"), "{}", e.note);
        // A 10.0 reply without dirty-limit carries neither figure.
        let plain = MigrationInfo::from_value(&fixture("10.0", "query-migrate-completed.json"));
        assert_eq!(plain.dirty_limit_throttle_time_per_round, None);
    }

    #[test]
    fn a_strategy_that_never_took_effect_says_so_with_what_qemu_read_back() {
        let e = run(Strategy::Postcopy, &[fixture("7.2", "query-migrate-completed.json")]);
        assert!(!e.took_effect && e.note.contains("pre-copy finished before switchover"), "{}", e.note);
        let facts = e.facts();
        assert_eq!(facts.len(), 3, "{facts:?}");
        assert!(facts[1].starts_with("QEMU reads back on the source"), "{facts:?}");
    }

    #[test]
    fn read_back_must_match_what_was_set() {
        let caps = fixture("10.0", "query-migrate-capabilities-multifd.json");
        let params = fixture("10.0", "query-migrate-parameters-multifd.json");
        let plan = [("multifd", true), ("xbzrle", false), ("events", true)];
        let set = serde_json::json!({"multifd-channels": 2, "multifd-compression": "zstd", "max-bandwidth": 125_000_000});
        let r = read_back("source", &plan, &set, &caps, &params).unwrap();
        assert_eq!(r.capabilities.len(), 3);
        assert_eq!(r.parameters.len(), 3, "only what was set is recorded: {r:?}");
        assert_eq!(r.parameters["multifd-compression"], "zstd");

        let more = serde_json::json!({"multifd-channels": 4});
        let e = read_back("destination", &plan, &more, &caps, &params).unwrap_err();
        assert!(e.contains("destination") && e.contains("multifd-channels = 2") && e.contains("set it to 4"), "{e}");
        let e = read_back("source", &[("multifd", false)], &set, &caps, &params).unwrap_err();
        assert!(e.contains("capability multifd on after migbench set it off"), "{e}");
        let e = read_back("source", &[("x-nothing", true)], &set, &caps, &params).unwrap_err();
        assert!(e.contains("does not report capability x-nothing"), "{e}");
        let e = read_back("source", &plan, &serde_json::json!({"no-such": 1}), &caps, &params).unwrap_err();
        assert!(e.contains("does not report parameter no-such"), "{e}");
    }

    #[test]
    fn zero_copy_zero_pages_and_tls_are_read_from_10_0s_replies() {
        let caps = fixture("10.0", "query-migrate-capabilities-multifd.json");
        let mut params = fixture("10.0", "query-migrate-parameters-multifd.json");
        // What QEMU 10.0 reads back after migbench set TLS and zero-page detection.
        params["tls-creds"] = "migbench-tls".into();
        params["tls-hostname"] = "127.0.0.1".into();
        let set = serde_json::json!({"multifd-channels": 2, "multifd-compression": "zstd", "zero-page-detection": "multifd", "tls-creds": "migbench-tls", "tls-hostname": "127.0.0.1"});
        let side = read_back("source", &[("multifd", true)], &set, &caps, &params).unwrap();
        let settings = Settings { source: side.clone(), destination: side };
        let reply = fixture("10.0", "query-migrate-multifd.json");
        let mut seen = Observed::default();
        seen.sample(1.0, &MigrationInfo::from_value(&reply));
        let mut m = Measurement::not_started(Outcome::Completed, Health::default());
        m.duplicate_pages = MigrationInfo::from_value(&reply).ram.and_then(|r| r.duplicate);

        let e = judge(Strategy::Multifd, settings.clone(), &seen, &m);
        let d = e.multifd.as_ref().unwrap();
        assert_eq!((d.zero_page_detection.as_deref(), d.zero_pages, d.zero_copy, d.missed_zero_copy), (Some("multifd"), Some(40907), None, Some(0)));
        assert!(e.took_effect && e.note.contains("zero-page detection multifd") && e.note.contains("40907 zero pages"), "{}", e.note);
        assert!(!e.note.contains("zero-copy"), "plain multifd says nothing of zero-copy: {}", e.note);
        let tls = e.tls.as_ref().unwrap();
        assert_eq!((tls.source_creds.as_str(), tls.destination_creds.as_str(), tls.hostname.as_deref()), ("migbench-tls", "migbench-tls", Some("127.0.0.1")));
        assert!(e.facts().iter().any(|f| f.starts_with("TLS: credentials migbench-tls")), "{:?}", e.facts());

        // Zero-copy counts only when QEMU reads the capability back on.
        let e = judge(Strategy::MultifdZeroCopy, settings.clone(), &seen, &m);
        assert!(!e.took_effect && e.note.contains("does not read zero-copy-send back on"), "{}", e.note);
        let mut on = settings.clone();
        on.source.capabilities.insert("zero-copy-send".into(), true);
        let e = judge(Strategy::MultifdZeroCopy, on, &seen, &m);
        let d = e.multifd.as_ref().unwrap();
        assert!(e.took_effect && d.zero_copy == Some(true) && e.note.contains("zero-copy send") && e.note.contains("0 syncs waited"), "{}", e.note);

        // TLS off (tls-creds read back empty): no TLS evidence.
        let mut off = settings;
        off.source.parameters.insert("tls-creds".into(), "".into());
        assert!(judge(Strategy::Precopy, off, &seen, &m).tls.is_none());
    }
}
