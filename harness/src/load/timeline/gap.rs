use serde::{Deserialize, Serialize};

/// A stretch without success, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub from_ms: f64,
    pub to_ms: f64,
    /// `to_ms - from_ms`.
    pub ms: f64,
}

impl Gap {
    pub(super) fn new(from_ms: f64, to_ms: f64) -> Gap {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
