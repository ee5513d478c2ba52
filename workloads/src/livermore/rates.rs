//! What passes measured: each kernel's time, the benchmark's three means of the
//! rates, and the tally of them kept while the workload runs.

use super::spans::{KERNELS, Span};

/// One kernel's time in a pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelTime {
    pub kernel: usize,
    /// Floating-point operations done in `seconds`: all repetitions.
    pub flops: f64,
    pub seconds: f64,
}

impl KernelTime {
    pub fn mflops(&self) -> f64 {
        self.flops / self.seconds / 1e6
    }
}

/// All 24 kernels run once at one span.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub span: Span,
    pub kernels: [KernelTime; KERNELS],
}

impl Pass {
    /// The means of the 24 kernels' rates.
    pub fn means(&self) -> Means {
        means(&self.kernels.map(|t| t.mflops()))
    }
}

/// The benchmark's summary of a set of rates. The arithmetic mean is ruled by the
/// fastest kernels, the harmonic by the slowest (it is the rate of running all of
/// them for equal flops), the geometric sits between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Means {
    pub arithmetic: f64,
    pub geometric: f64,
    pub harmonic: f64,
}

/// The arithmetic, geometric and harmonic means of positive rates (all 0 for none).
pub fn means(mflops: &[f64]) -> Means {
    if mflops.is_empty() {
        return Means { arithmetic: 0.0, geometric: 0.0, harmonic: 0.0 };
    }
    let n = mflops.len() as f64;
    Means {
        arithmetic: mflops.iter().sum::<f64>() / n,
        geometric: (mflops.iter().map(|x| x.ln()).sum::<f64>() / n).exp(),
        harmonic: n / mflops.iter().map(|x| 1.0 / x).sum::<f64>(),
    }
}

/// Rates accumulated over many passes: flops and seconds per span and kernel, so
/// the summary means can be reported while the workload keeps running.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    work: [[(f64, f64); KERNELS]; 3],
}

impl Default for Tally {
    fn default() -> Tally {
        Tally { work: [[(0.0, 0.0); KERNELS]; 3] }
    }
}

impl Tally {
    pub fn add(&mut self, p: &Pass) {
        let row = &mut self.work[Span::ALL.iter().position(|s| *s == p.span).unwrap_or(0)];
        for t in &p.kernels {
            if let Some(slot) = row.get_mut(t.kernel.wrapping_sub(1)) {
                slot.0 += t.flops;
                slot.1 += t.seconds;
            }
        }
    }

    /// Each kernel's MFLOPS at `span`; none until every kernel has run there.
    pub fn mflops(&self, span: Span) -> Option<Vec<f64>> {
        let row = &self.work[Span::ALL.iter().position(|s| *s == span).unwrap_or(0)];
        row.iter().map(|(f, s)| (*s > 0.0).then(|| f / s / 1e6)).collect()
    }

    /// The benchmark's report line: `short=AM/GM/HM medium=… long=… all=…` (MFLOPS),
    /// with `all` over the 72 kernel rates of the three spans.
    pub fn report(&self) -> Option<String> {
        let mut parts = Vec::new();
        let mut all = Vec::new();
        for span in Span::ALL {
            let rates = self.mflops(span)?;
            let m = means(&rates);
            parts.push(format!("{}={:.2}/{:.2}/{:.2}", span.name(), m.arithmetic, m.geometric, m.harmonic));
            all.extend(rates);
        }
        let m = means(&all);
        parts.push(format!("all={:.2}/{:.2}/{:.2}", m.arithmetic, m.geometric, m.harmonic));
        Some(parts.join(" "))
    }
}

/// Reads a [`Tally::report`] line back: (span name or "all", means).
pub fn parse_report(line: &str) -> Vec<(String, Means)> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let n: Vec<f64> = v.split('/').map(|x| x.parse().ok()).collect::<Option<_>>()?;
            match n[..] {
                [a, g, h] => Some((k.to_string(), Means { arithmetic: a, geometric: g, harmonic: h })),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_by_hand() {
        let m = means(&[1.0, 2.0, 4.0]);
        assert!((m.arithmetic - 7.0 / 3.0).abs() < 1e-12, "{m:?}");
        assert!((m.geometric - 2.0).abs() < 1e-12, "{m:?}");
        assert!((m.harmonic - 12.0 / 7.0).abs() < 1e-12, "{m:?}");
        let m = means(&[5.0; 24]);
        assert!([m.arithmetic, m.geometric, m.harmonic].iter().all(|x| (x - 5.0).abs() < 1e-12), "{m:?}");
        assert_eq!(means(&[]), Means { arithmetic: 0.0, geometric: 0.0, harmonic: 0.0 });
    }
}
