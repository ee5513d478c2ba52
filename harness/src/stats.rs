//! Statistics of repeated runs: mean, standard deviation and the 95 % confidence
//! interval of the mean (Student's t, since repetitions are few), and the median
//! of a set of figures, from a summary's cells to a link's round trip.

use serde::{Deserialize, Serialize};

/// Two-sided 97.5 % quantiles of Student's t for 1..=30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

fn t_975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        1..=30 => T_975[df - 1],
        // Beyond 30 the normal quantile is within 2 %.
        _ => 1.96,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one value.
    pub sd: f64,
    /// Half-width of the 95 % confidence interval of the mean; `None` for one value.
    pub ci95: Option<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Option<Stats> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return None;
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        let ci95 = (n > 1).then(|| t_975(n - 1) * sd / (n as f64).sqrt());
        let median = median(&v)?;
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stats { n, mean, sd, ci95, median, min, max })
    }

    /// "812.3 ± 40.1 (sd 25.8)": mean ± 95 % CI and the standard deviation (or just
    /// the mean for one value), with `decimals` places.
    pub fn show(&self, decimals: usize) -> String {
        match self.ci95 {
            Some(ci) => format!("{:.*} ± {:.*} (sd {:.*})", decimals, self.mean, decimals, ci, decimals, self.sd),
            None => format!("{:.*}", decimals, self.mean),
        }
    }
}

/// The median of `values`' finite numbers: the middle one, or the mean of the two
/// middle ones when their count is even; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        // mean 5, deviations -3,-1,1,3 → sum of squares 20, sd = sqrt(20/3) = 2.5820,
        // ci = 3.182 * 2.5820 / 2 = 4.1080.
        let s = Stats::of(&[2.0, 4.0, 6.0, 8.0]).unwrap();
        assert_eq!(s.n, 4);
        assert!((s.mean - 5.0).abs() < 1e-12);
        assert!((s.sd - 2.581_988_897).abs() < 1e-6);
        assert!((s.ci95.unwrap() - 4.107_94).abs() < 1e-3);
        assert_eq!((s.min, s.max), (2.0, 8.0));
        assert_eq!(s.show(1), "5.0 ± 4.1 (sd 2.6)");
        assert_eq!(s.median, 5.0);
        assert_eq!(Stats::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[1.0, f64::NAN, 3.0, f64::INFINITY]), Some(2.0));
    }

    #[test]
    fn edge_cases() {
        let one = Stats::of(&[7.0]).unwrap();
        assert_eq!((one.sd, one.ci95), (0.0, None));
        assert_eq!(one.show(0), "7");
        assert!(Stats::of(&[]).is_none());
        assert_eq!(Stats::of(&[1.0, f64::NAN, 3.0]).unwrap().n, 2);
        let many: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let s = Stats::of(&many).unwrap();
        assert!((s.ci95.unwrap() - 1.96 * s.sd / 10.0).abs() < 1e-9);
    }
}
