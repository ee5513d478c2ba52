//! What the load generator's requests say about a migration: latency before,
//! during and after it, the longest stretch without a successful response, the
//! brownout, and the error mix. Pure functions over the request log, so every
//! number in a record can be recomputed from the log alone.
//!
//! All times are milliseconds (f64) on the load generator's clock, 0 = load start;
//! the migration window is given on that same clock.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

/// Lowest latency the histograms hold, µs; anything faster is recorded as this.
const HDR_LOWEST_US: u64 = 1;
/// Highest latency the histograms hold (one hour), µs; anything slower is recorded as this.
const HDR_HIGHEST_US: u64 = 3_600_000_000;
const HDR_SIGFIG: u8 = 3;
/// The first four bytes of a V2 + DEFLATE serialized histogram (HdrHistogram's
/// wire format, not exported by the crate).
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;

/// One request as the client saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// When the request was meant to go out, ms. Open loop: its slot in the fixed
    /// schedule, so a stall is charged to every request it delays (coordinated
    /// omission corrected); closed loop: when it was sent.
    pub intended_ms: f64,
    /// When it actually went out, ms.
    pub sent_ms: f64,
    /// When the response (or the error) came, ms.
    pub done_ms: f64,
    /// HTTP status; None when there was no response.
    pub status: Option<u16>,
    /// Why there was no (good) response: "timeout", "connect", "reset",
    /// "status 503", …; None when ok.
    pub error: Option<String>,
}

impl Request {
    /// A 2xx status and no error.
    pub fn ok(&self) -> bool {
        self.error.is_none() && matches!(self.status, Some(200..=299))
    }

    /// From the intended send time to the response, ms — so an open-loop request
    /// held up behind a stall carries the stall.
    pub fn latency_ms(&self) -> f64 {
        self.done_ms - self.intended_ms
    }

    /// The key for the error tally; None when the request succeeded.
    fn error_kind(&self) -> Option<String> {
        if self.ok() {
            return None;
        }
        Some(match (&self.error, self.status) {
            (Some(e), _) => e.clone(),
            (None, Some(s)) => format!("status {s}"),
            // Not produced by the generator, but a log from elsewhere may have it.
            (None, None) => "no response".to_string(),
        })
    }
}

/// Where a request falls relative to the migration window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    During,
    After,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        })
    }
}

/// The migration on the load's clock: from `migrate` sent to the guest running
/// on the destination, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: f64,
    pub to_ms: f64,
}

impl Window {
    /// Before `from_ms`, inside `[from_ms, to_ms]` (both ends included), or after `to_ms`.
    pub fn phase(&self, t_ms: f64) -> Phase {
        if t_ms < self.from_ms {
            Phase::Before
        } else if t_ms <= self.to_ms {
            Phase::During
        } else {
            Phase::After
        }
    }
}

/// Latency of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseLatency {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Percentiles of the successful requests' latency, ms (None when none
    /// succeeded). Read from `hdr`: the upper end of the histogram bucket, so
    /// within 0.1 % of the exact value, and never above `max_ms`.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// Exact maximum and mean of the successful requests' latency, ms.
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Successful requests per second over the phase's span; None for a span of
    /// zero or less.
    pub ok_per_s: Option<f64>,
    /// The phase's HDR histogram of successful latencies (µs, 3 significant
    /// digits, values clamped to [1 µs, 1 hour]), V2 + DEFLATE serialized, base64
    /// (standard alphabet): the raw data that lets repetitions be merged exactly
    /// (see [`merge_hdr`]).
    pub hdr: String,
}

/// A stretch without success, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub from_ms: f64,
    pub to_ms: f64,
    /// `to_ms - from_ms`.
    pub ms: f64,
}

impl Gap {
    fn new(from_ms: f64, to_ms: f64) -> Gap {
        Gap { from_ms, to_ms, ms: to_ms - from_ms }
    }
}

/// The longest interval between two consecutive success times that overlaps
/// `around` = (from, to), i.e. `gap.to_ms >= from && gap.from_ms <= to`; all ms.
///
/// `success_ms` need not be sorted; non-finite times are ignored. When no
/// success came at or after `around.1`, the service never came back, so
/// [last success, `end_ms`] (the end of the observation) is a candidate too.
/// Nothing is counted before the first success. Ties go to the earlier gap.
/// None when there are no successes, or no interval overlaps `around`.
pub fn longest_gap(success_ms: &[f64], around: (f64, f64), end_ms: f64) -> Option<Gap> {
    let mut t: Vec<f64> = success_ms.iter().copied().filter(|x| x.is_finite()).collect();
    t.sort_by(f64::total_cmp);
    let last = *t.last()?;
    let tail = (last < around.1).then(|| Gap::new(last, end_ms));
    t.windows(2)
        .map(|w| Gap::new(w[0], w[1]))
        .chain(tail)
        .filter(|g| g.to_ms >= around.0 && g.from_ms <= around.1 && g.ms >= 0.0)
        .fold(None, |best: Option<Gap>, g| match best {
            Some(b) if b.ms >= g.ms => Some(b),
            _ => Some(g),
        })
}

/// Brownout: the total time, ms, during which request latency stays above
/// `threshold_ms` (strictly), and the longest single run.
///
/// Requests are taken in intended-time order; a failed request counts as slow.
/// A run of consecutive slow requests lasts from the first one's `intended_ms`
/// to the `intended_ms` of the next fast request, or, when none follows, to the
/// last slow request's `done_ms`. Ties for the longest go to the earlier run.
/// (0, None) when no request is slow.
pub fn brownout(requests: &[Request], threshold_ms: f64) -> (f64, Option<Gap>) {
    let mut order: Vec<&Request> = requests.iter().collect();
    order.sort_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
    let slow = |r: &Request| !r.ok() || r.latency_ms() > threshold_ms;

    let mut runs = Vec::new();
    let mut start: Option<f64> = None;
    for r in &order {
        match (slow(r), start) {
            (true, None) => start = Some(r.intended_ms),
            (false, Some(from)) => {
                runs.push(Gap::new(from, r.intended_ms));
                start = None;
            }
            _ => {}
        }
    }
    if let (Some(from), Some(last)) = (start, order.last()) {
        // A failed request's done_ms can in principle precede its slot (a
        // connect refused at once); a run never ends before it begins.
        runs.push(Gap::new(from, last.done_ms.max(from)));
    }

    // fold from +0.0: an empty f64 sum is -0.0, which prints as "-0.0".
    let total = runs.iter().fold(0.0, |t, g| t + g.ms);
    let longest = runs.into_iter().fold(None, |best: Option<Gap>, g| match best {
        Some(b) if b.ms >= g.ms => Some(b),
        _ => Some(g),
    });
    (total, longest)
}

/// One phase over several runs: the counts summed, the percentiles from the runs'
/// merged histograms (not averaged), the exact maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedPhase {
    pub requests: u64,
    pub failed: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl MergedPhase {
    pub fn of(phases: &[&PhaseLatency]) -> MergedPhase {
        let hdrs: Vec<&str> = phases.iter().map(|p| p.hdr.as_str()).filter(|h| !h.is_empty()).collect();
        let merged = merge_hdr(&hdrs).ok().filter(|h| !h.is_empty());
        let q = |p: f64| merged.as_ref().and_then(|h| percentile_ms(h, p));
        MergedPhase {
            requests: phases.iter().map(|p| p.requests).sum(),
            failed: phases.iter().map(|p| p.failed).sum(),
            p50_ms: q(50.0),
            p99_ms: q(99.0),
            p999_ms: q(99.9),
            // The exact maximum, not the top of its histogram bucket.
            max_ms: phases.iter().filter_map(|p| p.max_ms).reduce(f64::max),
        }
    }
}

/// Everything the client saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientView {
    pub before: PhaseLatency,
    pub during: PhaseLatency,
    pub after: PhaseLatency,
    /// Longest interval without a successful response across the switchover, ms:
    /// [`longest_gap`] over the successes' `done_ms` around the switchover (or the
    /// whole window when no switchover times are known).
    pub service_downtime: Option<Gap>,
    /// 10 × the `before` p99, ms (None when `before` has no p99, and then so are
    /// the two brownout fields).
    pub brownout_threshold_ms: Option<f64>,
    /// Total brownout over the whole load, ms (see [`brownout`]).
    pub brownout_ms: Option<f64>,
    pub longest_brownout: Option<Gap>,
    pub failed: u64,
    /// Failed requests intended outside the window (a healthy service fails none).
    pub failed_outside_window: u64,
    /// Error kind → count: the request's `error`, or "status NNN" for a non-2xx
    /// status without one.
    pub errors: BTreeMap<String, u64>,
}

/// Summarises a load's requests against the migration `window` and, when known,
/// the `switchover` (source stopped, destination resumed) inside it; `end_ms`
/// is when the load stopped. All ms on the load's clock.
///
/// Spans for `ok_per_s`: before = [first request's `intended_ms`, window start],
/// during = the window, after = [window end, `end_ms`].
impl ClientView {
    /// The phases in order: before, during, after.
    pub fn phases(&self) -> [&PhaseLatency; 3] {
        [&self.before, &self.during, &self.after]
    }
}

pub fn summarise(requests: &[Request], window: Window, switchover: Option<(f64, f64)>, end_ms: f64) -> ClientView {
    let mut by_phase: [Vec<&Request>; 3] = Default::default();
    for r in requests {
        let i = match window.phase(r.intended_ms) {
            Phase::Before => 0,
            Phase::During => 1,
            Phase::After => 2,
        };
        by_phase[i].push(r);
    }
    let [before, during, after] = by_phase;

    let first = requests.iter().map(|r| r.intended_ms).min_by(f64::total_cmp);
    // No requests at all: no span, so no rate rather than a rate of 0 over an undefined span.
    let before = phase_latency(&before, first.map_or(0.0, |f| window.from_ms - f));
    let during = phase_latency(&during, window.to_ms - window.from_ms);
    let after = phase_latency(&after, end_ms - window.to_ms);

    let successes: Vec<f64> = requests.iter().filter(|r| r.ok()).map(|r| r.done_ms).collect();
    let service_downtime = longest_gap(&successes, switchover.unwrap_or((window.from_ms, window.to_ms)), end_ms);

    let brownout_threshold_ms = before.p99_ms.map(|p| 10.0 * p);
    let (brownout_ms, longest_brownout) = match brownout_threshold_ms {
        Some(th) => {
            let (total, longest) = brownout(requests, th);
            (Some(total), longest)
        }
        None => (None, None),
    };

    let mut errors = BTreeMap::new();
    let (mut failed, mut failed_outside_window) = (0, 0);
    for r in requests {
        if let Some(kind) = r.error_kind() {
            failed += 1;
            if window.phase(r.intended_ms) != Phase::During {
                failed_outside_window += 1;
            }
            *errors.entry(kind).or_insert(0) += 1;
        }
    }

    ClientView {
        before,
        during,
        after,
        service_downtime,
        brownout_threshold_ms,
        brownout_ms,
        longest_brownout,
        failed,
        failed_outside_window,
        errors,
    }
}

/// Latency of one phase's requests; `span_ms` is the phase's duration, for
/// `ok_per_s`.
pub fn phase_latency(requests: &[&Request], span_ms: f64) -> PhaseLatency {
    let latencies: Vec<f64> = requests.iter().filter(|r| r.ok()).map(|r| r.latency_ms()).collect();
    let mut h = new_histogram();
    for &l in &latencies {
        h.saturating_record(to_us(l));
    }
    let ok = latencies.len() as u64;
    let max_ms = latencies.iter().copied().max_by(f64::total_cmp);
    let mean_ms = (ok > 0).then(|| latencies.iter().sum::<f64>() / ok as f64);
    // The histogram reports a bucket's upper end, which for the top value can
    // lie just above the true maximum; a p99.9 above the max reads as a bug.
    let p = |q: f64| match (percentile_ms(&h, q), max_ms) {
        (Some(v), Some(m)) => Some(v.min(m)),
        (v, _) => v,
    };
    PhaseLatency {
        requests: requests.len() as u64,
        ok,
        failed: requests.len() as u64 - ok,
        p50_ms: p(50.0),
        p90_ms: p(90.0),
        p99_ms: p(99.0),
        p999_ms: p(99.9),
        max_ms,
        mean_ms,
        ok_per_s: (span_ms > 0.0 && span_ms.is_finite()).then(|| ok as f64 / (span_ms / 1000.0)),
        hdr: encode_hdr(&h),
    }
}

/// Decodes [`PhaseLatency::hdr`] strings and merges them into one histogram
/// (µs, as recorded), e.g. to summarise the repetitions of a run. An empty list
/// gives an empty histogram. Each entry must be V2 + DEFLATE with this module's
/// layout (1 µs to 1 hour, 3 digits), so the merge is exact; errors name the
/// bad entry by its 0-based index.
pub fn merge_hdr(encoded: &[&str]) -> Result<Histogram<u64>> {
    let mut merged = new_histogram();
    let mut deserializer = Deserializer::new();
    for (i, e) in encoded.iter().enumerate() {
        if e.is_empty() {
            bail!("hdr entry {i}: empty");
        }
        let bytes = BASE64.decode(e.trim()).with_context(|| format!("hdr entry {i}: not base64"))?;
        // Only the compressed form, which is all we write: the plain V2 form takes
        // its payload length on trust and allocates it before reading, so a
        // corrupted length asks for up to 4 GiB.
        if bytes.get(..4) != Some(&V2_DEFLATE_COOKIE.to_be_bytes()[..]) {
            bail!("hdr entry {i}: not a V2 + DEFLATE serialized HDR histogram");
        }
        let h: Histogram<u64> = deserializer
            .deserialize(&mut bytes.as_slice())
            .with_context(|| format!("hdr entry {i}: not a valid serialized HDR histogram"))?;
        // Another layout would be merged only to its own resolution, not exactly.
        if (h.low(), h.high(), h.sigfig()) != (HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGFIG) {
            bail!(
                "hdr entry {i}: recorded over [{}, {}] µs to {} digits, not [{HDR_LOWEST_US}, {HDR_HIGHEST_US}] µs to \
                 {HDR_SIGFIG}",
                h.low(),
                h.high(),
                h.sigfig()
            );
        }
        merged.add(&h).with_context(|| format!("hdr entry {i}: cannot be added"))?;
    }
    Ok(merged)
}

/// Percentile `q` (0 to 100) of a histogram of µs, in ms: the upper end of the
/// bucket holding it. None when the histogram is empty or `q` is out of range.
pub fn percentile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    if h.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    Some(h.value_at_percentile(q) as f64 / 1000.0)
}

/// The per-request time series as CSV (header
/// `intended_ms,sent_ms,done_ms,latency_ms,phase,status,error`, times in ms to
/// the µs, status and error empty when absent), for people and plots.
pub fn to_csv(requests: &[Request], window: Window) -> String {
    let mut out = String::from("intended_ms,sent_ms,done_ms,latency_ms,phase,status,error\n");
    for r in requests {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:.3},{:.3},{:.3},{:.3},{},{},{}",
            r.intended_ms,
            r.sent_ms,
            r.done_ms,
            r.latency_ms(),
            window.phase(r.intended_ms),
            r.status.map(|s| s.to_string()).unwrap_or_default(),
            csv_field(r.error.as_deref().unwrap_or("")),
        );
    }
    out
}

/// The requests back from [`to_csv`]'s text, to the µs it kept (for plots drawn
/// after the run, from what the run wrote).
pub fn from_csv(text: &str) -> Result<Vec<Request>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.with_context(|| format!("requests CSV line {line}"))?;
        let field = |c: usize| row.get(c).unwrap_or("");
        let ms = |c: usize| field(c).parse::<f64>().with_context(|| format!("requests CSV line {line}: {:?} is not a time in ms", field(c)));
        let status = match field(5) {
            "" => None,
            s => Some(s.parse::<u16>().with_context(|| format!("requests CSV line {line}: {s:?} is not an HTTP status"))?),
        };
        let error = Some(field(6)).filter(|e| !e.is_empty()).map(String::from);
        out.push(Request { intended_ms: ms(0)?, sent_ms: ms(1)?, done_ms: ms(2)?, status, error });
    }
    Ok(out)
}

/// Quotes a field when it holds a separator, a quote or a line break (RFC 4180);
/// error strings come from elsewhere and may hold any of them.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// The three phases' histograms as a standard HdrHistogram interval log (tags
/// `before`, `during`, `after`; values in µs, the max column in ms), which
/// HdrHistogram's own tools (HistogramLogAnalyzer, `hdr-plot`) read. Interval start
/// times are seconds since the load started.
pub fn interval_log(view: &ClientView, window: Window, end_ms: f64) -> Result<String> {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment("migbench: request latency per migration phase, in microseconds")
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut out, &mut serializer)?;
        let span = |from: f64, to: f64| (Duration::from_secs_f64(from.max(0.0) / 1000.0), Duration::from_secs_f64((to - from).max(0.0) / 1000.0));
        for (name, phase, (from, to)) in [
            ("before", &view.before, (0.0, window.from_ms)),
            ("during", &view.during, (window.from_ms, window.to_ms)),
            ("after", &view.after, (window.to_ms, end_ms)),
        ] {
            let h = merge_hdr(&[phase.hdr.as_str()])?;
            let (start, length) = span(from, to);
            log.write_histogram(&h, start, length, Tag::new(name)).map_err(|e| anyhow::anyhow!("writing the {name} histogram: {e}"))?;
        }
    }
    Ok(String::from_utf8(out)?)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGFIG).expect("constant bounds are valid")
}

/// ms → µs, clamped into the histogram's range (NaN goes to the bottom).
fn to_us(ms: f64) -> u64 {
    ((ms * 1000.0).round() as u64).clamp(HDR_LOWEST_US, HDR_HIGHEST_US)
}

fn encode_hdr(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing fails only on a count above i64::MAX or a failing writer;
    // neither can happen with u64 counts of a slice into a Vec.
    V2DeflateSerializer::new().serialize(h, &mut bytes).expect("serializing a histogram into memory");
    BASE64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request sent on time, answered `latency` ms later (`done_ms` even for failures).
    fn req(t: f64, latency: f64, status: Option<u16>, error: Option<&str>) -> Request {
        Request { intended_ms: t, sent_ms: t, done_ms: t + latency, status, error: error.map(String::from) }
    }

    fn ok(t: f64, latency: f64) -> Request {
        req(t, latency, Some(200), None)
    }

    fn failed(t: f64, error: &str) -> Request {
        req(t, 1.0, None, Some(error))
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= b.abs() * rel
    }

    #[test]
    fn ok_needs_a_2xx_status_and_no_error() {
        assert!(ok(0.0, 1.0).ok());
        assert!(req(0.0, 1.0, Some(204), None).ok());
        assert!(!req(0.0, 1.0, Some(199), None).ok());
        assert!(!req(0.0, 1.0, Some(300), None).ok());
        assert!(!req(0.0, 1.0, Some(503), Some("status 503")).ok());
        assert!(!req(0.0, 1.0, Some(200), Some("body truncated")).ok());
        assert!(!failed(0.0, "timeout").ok());
        // Latency runs from the intended slot, not the send.
        let r = Request { intended_ms: 10.0, sent_ms: 250.0, done_ms: 260.0, status: Some(200), error: None };
        assert_eq!(r.latency_ms(), 250.0);
    }

    #[test]
    fn phases_include_both_window_ends() {
        let w = Window { from_ms: 100.0, to_ms: 200.0 };
        assert_eq!(w.phase(-5.0), Phase::Before);
        assert_eq!(w.phase(99.999), Phase::Before);
        assert_eq!(w.phase(100.0), Phase::During);
        assert_eq!(w.phase(150.0), Phase::During);
        assert_eq!(w.phase(200.0), Phase::During);
        assert_eq!(w.phase(200.001), Phase::After);
        assert_eq!(serde_json::to_string(&Phase::During).unwrap(), "\"during\"");
        assert_eq!(Phase::After.to_string(), "after");
    }

    #[test]
    fn percentiles_of_1_to_1000_ms() {
        let rs: Vec<Request> = (1..=1000).map(|i| ok(0.0, i as f64)).collect();
        let refs: Vec<&Request> = rs.iter().collect();
        let p = phase_latency(&refs, 2000.0);
        assert_eq!((p.requests, p.ok, p.failed), (1000, 1000, 0));
        // 3 significant digits: each bucket is under 0.1 % wide.
        assert!(close(p.p50_ms.unwrap(), 500.0, 1e-3), "{p:?}");
        assert!(close(p.p90_ms.unwrap(), 900.0, 1e-3), "{p:?}");
        assert!(close(p.p99_ms.unwrap(), 990.0, 1e-3), "{p:?}");
        // 0.999 × 1000 is a hair above 999 in floating point, so HDR rounds the
        // rank up to the 1000th value; capped at the exact max.
        assert!((999.0..=1000.0).contains(&p.p999_ms.unwrap()), "{p:?}");
        assert_eq!(p.max_ms, Some(1000.0));
        assert_eq!(p.mean_ms, Some(500.5));
        assert_eq!(p.ok_per_s, Some(500.0));
    }

    #[test]
    fn latency_counts_successes_only_and_a_phase_without_any_has_none() {
        let rs = [ok(0.0, 2.0), failed(10.0, "reset"), req(20.0, 900.0, Some(500), None), ok(30.0, 4.0)];
        let refs: Vec<&Request> = rs.iter().collect();
        let p = phase_latency(&refs, 100.0);
        assert_eq!((p.requests, p.ok, p.failed), (4, 2, 2));
        assert_eq!(p.max_ms, Some(4.0));
        assert_eq!(p.mean_ms, Some(3.0));
        // Below 2.048 ms the buckets are 1 µs wide: exact.
        assert_eq!(p.p50_ms, Some(2.0));
        assert_eq!(p.p99_ms, Some(4.0));
        assert_eq!(p.ok_per_s, Some(20.0));

        let none = phase_latency(&refs[1..3], 0.0);
        assert_eq!((none.requests, none.ok, none.failed), (2, 0, 2));
        assert_eq!((none.p50_ms, none.p999_ms, none.max_ms, none.mean_ms), (None, None, None, None));
        assert_eq!(none.ok_per_s, None);
        assert_eq!(phase_latency(&refs, -1.0).ok_per_s, None);
        // The empty histogram is still a valid entry to merge.
        assert_eq!(merge_hdr(&[&none.hdr]).unwrap().len(), 0);
    }

    #[test]
    fn latencies_are_clamped_into_the_histogram() {
        let rs = [ok(0.0, 0.0), ok(0.0, 2.0 * 3_600_000.0)];
        let refs: Vec<&Request> = rs.iter().collect();
        let h = merge_hdr(&[&phase_latency(&refs, 1.0).hdr]).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.equivalent(h.max(), HDR_HIGHEST_US));
    }

    #[test]
    fn hdr_round_trips_and_merging_phases_equals_the_union() {
        let rs: Vec<Request> = (1..=1000).map(|i| ok(i as f64, (i * 7 % 1000) as f64 + 0.5)).collect();
        let all: Vec<&Request> = rs.iter().collect();
        let (a, b) = all.split_at(300);
        let (pa, pb, pu) = (phase_latency(a, 1.0), phase_latency(b, 1.0), phase_latency(&all, 1.0));

        let ha = merge_hdr(&[&pa.hdr]).unwrap();
        assert_eq!(ha.len(), 300);
        assert_eq!(percentile_ms(&ha, 99.0).map(|v| v.min(pa.max_ms.unwrap())), pa.p99_ms);

        let merged = merge_hdr(&[&pa.hdr, &pb.hdr]).unwrap();
        let union = merge_hdr(&[&pu.hdr]).unwrap();
        assert_eq!(merged.len(), 1000);
        assert_eq!(merged.len(), union.len());
        assert_eq!(percentile_ms(&merged, 99.0), percentile_ms(&union, 99.0));
        assert_eq!(merged, union);
    }

    #[test]
    fn merge_hdr_names_the_bad_entry() {
        let good = phase_latency(&[&ok(0.0, 1.0)], 1.0).hdr;
        let e = merge_hdr(&[&good, "not base64!"]).unwrap_err();
        assert!(format!("{e:#}").contains("entry 1"), "{e:#}");
        let e = merge_hdr(&[&good, &good, &BASE64.encode(b"this is not a histogram")]).unwrap_err();
        assert!(format!("{e:#}").contains("entry 2"), "{e:#}");
        let truncated = BASE64.encode(&BASE64.decode(&good).unwrap()[..12]);
        assert!(format!("{:#}", merge_hdr(&[&truncated]).unwrap_err()).contains("entry 0"));
        assert!(format!("{:#}", merge_hdr(&[""]).unwrap_err()).contains("entry 0"));
        assert!(merge_hdr(&[]).unwrap().is_empty());
    }

    #[test]
    fn merge_hdr_survives_corrupted_entries() {
        let rs: Vec<Request> = (1..=200).map(|i| ok(0.0, i as f64)).collect();
        let refs: Vec<&Request> = rs.iter().collect();
        let bytes = BASE64.decode(phase_latency(&refs, 1.0).hdr).unwrap();
        // Every single-byte corruption either decodes to something or is an error; none panics.
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = merge_hdr(&[&BASE64.encode(&b)]);
            }
        }
        // The plain V2 form, whose header is exposed to corruption, is refused outright.
        let h = merge_hdr(&[&BASE64.encode(&bytes)]).unwrap();
        let mut plain = Vec::new();
        hdrhistogram::serialization::V2Serializer::new().serialize(&h, &mut plain).unwrap();
        let e = merge_hdr(&[&BASE64.encode(&plain)]).unwrap_err();
        assert!(format!("{e:#}").contains("V2 + DEFLATE"), "{e:#}");
    }

    #[test]
    fn merge_hdr_refuses_another_layout() {
        let mut other = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
        other.record(1500).unwrap();
        let mut bytes = Vec::new();
        V2DeflateSerializer::new().serialize(&other, &mut bytes).unwrap();
        let e = merge_hdr(&[&BASE64.encode(&bytes)]).unwrap_err();
        assert!(format!("{e:#}").contains("entry 0: recorded over [1, 60000000] µs to 2 digits"), "{e:#}");
    }

    #[test]
    fn percentile_ms_rejects_out_of_range_and_empty() {
        let h = merge_hdr(&[&phase_latency(&[&ok(0.0, 1.0)], 1.0).hdr]).unwrap();
        assert_eq!(percentile_ms(&h, 50.0), Some(1.0));
        assert_eq!(percentile_ms(&h, -1.0), None);
        assert_eq!(percentile_ms(&h, 100.5), None);
        assert_eq!(percentile_ms(&h, f64::NAN), None);
        assert_eq!(percentile_ms(&new_histogram(), 50.0), None);
    }

    /// Successes every 10 ms from 0 to 2000, except the holes given as
    /// (first missing, last missing).
    fn steady_with_holes(holes: &[(u32, u32)]) -> Vec<f64> {
        (0..=200).map(|i| i * 10).filter(|&t| !holes.iter().any(|&(a, b)| t >= a && t <= b)).map(f64::from).collect()
    }

    #[test]
    fn longest_gap_finds_the_hole_across_the_switchover() {
        // 300 ms without success: 1010..=1300 missing, so 1000 → 1310.
        let t = steady_with_holes(&[(1010, 1300)]);
        let g = longest_gap(&t, (1100.0, 1200.0), 2000.0).unwrap();
        assert_eq!(g, Gap { from_ms: 1000.0, to_ms: 1310.0, ms: 310.0 });
        // Order of the input does not matter.
        let mut shuffled = t.clone();
        shuffled.reverse();
        assert_eq!(longest_gap(&shuffled, (1100.0, 1200.0), 2000.0), Some(g));
    }

    #[test]
    fn longest_gap_ignores_a_bigger_hole_outside_around() {
        // 500..=900 missing is a 410 ms gap, far from the switchover.
        let t = steady_with_holes(&[(500, 900), (1010, 1300)]);
        let g = longest_gap(&t, (1100.0, 1200.0), 2000.0).unwrap();
        assert_eq!(g, Gap { from_ms: 1000.0, to_ms: 1310.0, ms: 310.0 });
        // Without a hole at the switchover the answer is the ordinary 10 ms spacing there.
        let t = steady_with_holes(&[(500, 900)]);
        assert_eq!(longest_gap(&t, (1100.0, 1100.0), 2000.0), Some(Gap { from_ms: 1090.0, to_ms: 1100.0, ms: 10.0 }));
        // A gap that only touches `around` at an end still overlaps it.
        let t = steady_with_holes(&[(1010, 1300)]);
        assert_eq!(longest_gap(&t, (1310.0, 1400.0), 2000.0).unwrap().ms, 310.0);
        assert_eq!(longest_gap(&t, (900.0, 1000.0), 2000.0).unwrap().ms, 310.0);
    }

    #[test]
    fn longest_gap_runs_to_the_end_when_the_service_never_returns() {
        // Nothing after 1000.
        let t = steady_with_holes(&[(1010, 2000)]);
        let g = longest_gap(&t, (1100.0, 1200.0), 2500.0).unwrap();
        assert_eq!(g, Gap { from_ms: 1000.0, to_ms: 2500.0, ms: 1500.0 });
        // A success exactly at around.1 means it did come back.
        let t = [0.0, 10.0, 1200.0];
        assert_eq!(longest_gap(&t, (1100.0, 1200.0), 2500.0), Some(Gap { from_ms: 10.0, to_ms: 1200.0, ms: 1190.0 }));
    }

    #[test]
    fn longest_gap_without_successes_is_none() {
        assert_eq!(longest_gap(&[], (0.0, 10.0), 100.0), None);
        assert_eq!(longest_gap(&[f64::NAN], (0.0, 10.0), 100.0), None);
        // Nothing is counted before the first success.
        assert_eq!(longest_gap(&[50.0, 60.0], (0.0, 10.0), 100.0), None);
    }

    #[test]
    fn brownout_sums_runs_and_counts_failures_as_slow() {
        let rs = vec![
            ok(0.0, 5.0),
            ok(10.0, 60.0), // slow: a run from 10 …
            failed(20.0, "timeout"),
            ok(30.0, 80.0),
            ok(40.0, 5.0),   // … to 40: 30 ms
            ok(50.0, 50.0),  // exactly the threshold is not above it
            ok(60.0, 100.0), // 60 → 70: 10 ms
            ok(70.0, 5.0),
            ok(80.0, 70.0), // the last: runs to its done_ms, 150: 70 ms
        ];
        let (total, longest) = brownout(&rs, 50.0);
        assert_eq!(total, 110.0);
        assert_eq!(longest, Some(Gap { from_ms: 80.0, to_ms: 150.0, ms: 70.0 }));
        // Intended-time order, not log order.
        let mut shuffled = rs.clone();
        shuffled.reverse();
        assert_eq!(brownout(&shuffled, 50.0), (110.0, longest));
    }

    #[test]
    fn brownout_run_at_the_end_ends_at_the_last_slow_requests_done() {
        let rs = [ok(0.0, 1.0), failed(10.0, "reset"), req(20.0, 3.0, None, Some("connect"))];
        assert_eq!(brownout(&rs, 50.0), (13.0, Some(Gap { from_ms: 10.0, to_ms: 23.0, ms: 13.0 })));
        // A failure reported before its slot does not make a negative run.
        let early = Request { intended_ms: 10.0, sent_ms: 10.0, done_ms: 5.0, status: None, error: Some("x".into()) };
        assert_eq!(brownout(&[early], 50.0), (0.0, Some(Gap { from_ms: 10.0, to_ms: 10.0, ms: 0.0 })));
    }

    #[test]
    fn brownout_without_slow_requests_is_zero() {
        assert_eq!(brownout(&[ok(0.0, 1.0), ok(10.0, 2.0)], 50.0), (0.0, None));
        assert_eq!(brownout(&[], 50.0), (0.0, None));
    }

    /// Requests every 10 ms from 0 to 290, 2 ms each unless replaced; window
    /// [100, 200], switchover (140, 160), load stops at 300.
    fn synthetic() -> Vec<Request> {
        (0..30)
            .map(|i| {
                let t = f64::from(i * 10);
                match i * 10 {
                    20 => failed(t, "reset"),
                    50 => ok(t, 3.0), // the slowest before: p99 3 ms, threshold 30 ms
                    130 => failed(t, "timeout"),
                    140 => failed(t, "connect"),
                    150 => req(t, 1.0, Some(503), None),
                    160 => ok(t, 45.0), // done at 205: slow, and not the end of the outage
                    190 => req(t, 1.0, Some(503), Some("status 503")),
                    250 => failed(t, "reset"),
                    _ => ok(t, 2.0),
                }
            })
            .collect()
    }

    #[test]
    fn summarise_a_synthetic_migration() {
        let w = Window { from_ms: 100.0, to_ms: 200.0 };
        let v = summarise(&synthetic(), w, Some((140.0, 160.0)), 300.0);

        // before 0..=90, during 100..=200, after 210..=290.
        assert_eq!((v.before.requests, v.before.ok, v.before.failed), (10, 9, 1));
        assert_eq!((v.during.requests, v.during.ok, v.during.failed), (11, 7, 4));
        assert_eq!((v.after.requests, v.after.ok, v.after.failed), (9, 8, 1));
        // Spans [0, 100], [100, 200], [200, 300].
        assert_eq!(v.before.ok_per_s, Some(90.0));
        assert_eq!(v.during.ok_per_s, Some(70.0));
        assert_eq!(v.after.ok_per_s, Some(80.0));
        assert_eq!(v.before.p99_ms, Some(3.0));
        assert_eq!(v.during.p50_ms, Some(2.0));
        assert_eq!(v.during.max_ms, Some(45.0));

        // Successes done at …, 122 (t 120), then 172 (t 170): 205 (t 160) comes later.
        assert_eq!(v.service_downtime, Some(Gap { from_ms: 122.0, to_ms: 172.0, ms: 50.0 }));

        assert_eq!(v.brownout_threshold_ms, Some(30.0));
        // Runs: [20, 30] 10, [130, 170] 40, [190, 200] 10, [250, 260] 10.
        assert_eq!(v.brownout_ms, Some(70.0));
        assert_eq!(v.longest_brownout, Some(Gap { from_ms: 130.0, to_ms: 170.0, ms: 40.0 }));

        assert_eq!(v.failed, 6);
        assert_eq!(v.failed_outside_window, 2);
        let errors: Vec<(&str, u64)> = v.errors.iter().map(|(k, &n)| (k.as_str(), n)).collect();
        assert_eq!(errors, [("connect", 1), ("reset", 2), ("status 503", 2), ("timeout", 1)]);

        // The whole window stands in for an unknown switchover; the hole is the same.
        let v2 = summarise(&synthetic(), w, None, 300.0);
        assert_eq!(v2.service_downtime, v.service_downtime);
        // The record survives JSON.
        let back: ClientView = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn summarise_without_a_before_p99_has_no_brownout() {
        let w = Window { from_ms: 100.0, to_ms: 200.0 };
        let rs = [failed(50.0, "connect"), ok(150.0, 2.0), ok(250.0, 2.0)];
        let v = summarise(&rs, w, None, 300.0);
        assert_eq!(v.before.p99_ms, None);
        assert_eq!((v.brownout_threshold_ms, v.brownout_ms, v.longest_brownout), (None, None, None));
        assert_eq!((v.failed, v.failed_outside_window), (1, 1));

        let empty = summarise(&[], w, None, 300.0);
        assert_eq!(empty.before.ok_per_s, None);
        assert_eq!(empty.during.ok_per_s, Some(0.0));
        assert_eq!(empty.service_downtime, None);
        assert!(empty.errors.is_empty());
    }

    #[test]
    fn csv_has_the_header_and_one_row_per_request() {
        let w = Window { from_ms: 100.0, to_ms: 200.0 };
        let rs = [
            Request { intended_ms: 1.5, sent_ms: 2.0, done_ms: 12.25, status: Some(200), error: None },
            Request {
                intended_ms: 150.0,
                sent_ms: 150.0,
                done_ms: 1150.0,
                status: None,
                error: Some("timeout".into()),
            },
            req(250.0, 1.0, Some(502), Some("bad gateway, \"upstream\"")),
        ];
        let csv = to_csv(&rs, w);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "intended_ms,sent_ms,done_ms,latency_ms,phase,status,error");
        assert_eq!(lines[1], "1.500,2.000,12.250,10.750,before,200,");
        assert_eq!(lines[2], "150.000,150.000,1150.000,1000.000,during,,timeout");
        assert_eq!(lines[3], "250.000,250.000,251.000,1.000,after,502,\"bad gateway, \"\"upstream\"\"\"");
        assert_eq!(lines.len(), 4);
        assert!(csv.ends_with('\n'));
        assert_eq!(to_csv(&[], w), "intended_ms,sent_ms,done_ms,latency_ms,phase,status,error\n");
        assert_eq!(from_csv(&csv).unwrap(), rs, "the CSV reads back as the requests");
        assert!(from_csv("intended_ms,sent_ms,done_ms,latency_ms,phase,status,error\nx,1,2,1,before,,\n").unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn the_interval_log_holds_each_phase_under_its_tag() {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        let reqs: Vec<Request> = (0..30).map(|i| ok(i as f64 * 10.0, 2.0 + (i % 3) as f64)).collect();
        let window = Window { from_ms: 100.0, to_ms: 200.0 };
        let view = summarise(&reqs, window, None, 300.0);
        let log = interval_log(&view, window, 300.0).unwrap();
        let entries: Vec<(String, f64, f64, u64)> = IntervalLogIterator::new(log.as_bytes())
            .filter_map(|e| match e.ok()? {
                LogEntry::Interval(h) => {
                    let bytes = BASE64.decode(h.encoded_histogram()).ok()?;
                    let hist: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).ok()?;
                    Some((h.tag()?.as_str().to_string(), h.start_timestamp().as_secs_f64(), h.duration().as_secs_f64(), hist.len()))
                }
                _ => None,
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["before", "during", "after"]);
        // 10 requests per 100 ms phase; starts and lengths in seconds.
        assert_eq!(entries.iter().map(|e| e.3).collect::<Vec<_>>(), [10, 11, 9]);
        assert!((entries[1].1 - 0.1).abs() < 1e-6 && (entries[1].2 - 0.1).abs() < 1e-6, "{entries:?}");
    }
}
