use super::gap::Gap;
use super::request::Request;

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

#[cfg(test)]
mod tests {
    use crate::load::timeline::request::testing::{failed, ok, req};
    use super::*;

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
}
