//! The request log and the phases' histograms as files other tools read.

use super::client_view::ClientView;
use super::latency::merge_hdr;
use super::request::Request;
use super::window::Window;
use anyhow::{Context, Result};
use hdrhistogram::serialization::V2DeflateSerializer;
use std::fmt::Write as _;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use crate::load::timeline::client_view::summarise;
    use crate::load::timeline::request::testing::{ok, req};
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::Deserializer;

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
