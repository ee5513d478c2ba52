use super::brownout::brownout;
use super::gap::{Gap, longest_gap};
use super::latency::{PhaseLatency, phase_latency};
use super::request::Request;
use super::window::{Phase, Window};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use crate::load::timeline::request::testing::{failed, ok, req};
    use super::*;

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
}
