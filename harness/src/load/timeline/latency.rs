//! Latency per phase, kept as HDR histograms so that runs merge exactly.

use super::request::Request;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Lowest latency the histograms hold, µs; anything faster is recorded as this.
const HDR_LOWEST_US: u64 = 1;
/// Highest latency the histograms hold (one hour), µs; anything slower is recorded as this.
const HDR_HIGHEST_US: u64 = 3_600_000_000;
const HDR_SIGFIG: u8 = 3;
/// The first four bytes of a V2 + DEFLATE serialized histogram (HdrHistogram's
/// wire format, not exported by the crate).
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;

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

/// A histogram of `values` in ms (recorded in µs, as every latency here).
pub fn histogram_ms(values: impl IntoIterator<Item = f64>) -> Histogram<u64> {
    let mut h = new_histogram();
    for v in values {
        h.saturating_record(to_us(v));
    }
    h
}

/// Percentile `q` (0 to 100) of a histogram of µs, in ms: the upper end of the
/// bucket holding it. None when the histogram is empty or `q` is out of range.
pub fn percentile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    if h.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    Some(h.value_at_percentile(q) as f64 / 1000.0)
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
    use crate::load::timeline::request::testing::{failed, ok, req};
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= b.abs() * rel
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
}
