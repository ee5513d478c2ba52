//! The CPU benchmarks as a sequence of checked steps: a Dhrystone batch, a Linpack
//! solve, one kernel of a Livermore pass. The guest's workload threads and the harness's
//! host-side figures both repeat these steps, so both count and check the same work.

use crate::livermore::{self, Pass, Span};
use crate::orders::Workload;
use crate::{dhrystone, linpack};

/// Dhrystones per batch: one batch takes well under the 100 ms reporting period.
const DHRYSTONE_BATCH: u64 = 10_000;

/// Livermore pass scale (about 1 Mflop per kernel, and a step is one kernel): the
/// progress count moves every 10 ms or so even in a slow TCG guest, and the
/// timings stay far above the clock's resolution.
const LIVERMORE_SCALE: f64 = 0.05;

/// One checked step's work, in the workload's unit (`Workload::unit`).
pub struct Step {
    pub done: f64,
    /// A Livermore pass this step completed, with its per-kernel times (for the
    /// summary means).
    pub livermore: Option<Pass>,
}

pub enum Benchmark {
    Dhrystone(Box<dhrystone::State>),
    Linpack { n: usize, seed: u64 },
    /// `next` counts the passes made; `part` holds the kernel times of the one under way.
    Livermore { ws: Box<livermore::Workspace>, spans: Vec<Span>, next: usize, part: Vec<livermore::KernelTime> },
}

impl Benchmark {
    /// The benchmark for `w`; none for the workloads that are not CPU benchmarks.
    pub fn new(w: Workload) -> Option<Benchmark> {
        Some(match w {
            Workload::Dhrystone => Benchmark::Dhrystone(Box::default()),
            Workload::Linpack { n } => Benchmark::Linpack { n: n as usize, seed: 1 },
            Workload::Livermore { span } => Benchmark::Livermore {
                ws: Box::new(livermore::Workspace::new()),
                spans: span.map(|s| vec![s]).unwrap_or_else(|| Span::ALL.to_vec()),
                next: 0,
                part: Vec::with_capacity(livermore::KERNELS),
            },
            _ => return None,
        })
    }

    /// Runs one step and checks it: a wrong result is an error, not a number.
    pub fn step(&mut self) -> Result<Step, String> {
        match self {
            Benchmark::Dhrystone(state) => {
                let locals = state.run(DHRYSTONE_BATCH);
                state.check(&locals)?;
                Ok(Step { done: DHRYSTONE_BATCH as f64, livermore: None })
            }
            Benchmark::Linpack { n, seed } => {
                linpack::pass(*n, *seed)?;
                *seed = seed.wrapping_add(1);
                Ok(Step { done: linpack::flops(*n), livermore: None })
            }
            Benchmark::Livermore { ws, spans, next, part } => {
                // One kernel per step: a whole pass is 0.2-0.5 s in a TCG guest, long
                // enough for a short migration to see no work done at all.
                let span = spans[*next % spans.len()];
                let time = livermore::kernel_in_pass(ws, part.len() + 1, span, LIVERMORE_SCALE)?;
                part.push(time);
                let pass = (part.len() == livermore::KERNELS).then(|| {
                    *next += 1;
                    Pass { span, kernels: std::mem::take(part).try_into().expect("a pass has KERNELS kernel times") }
                });
                Ok(Step { done: time.flops, livermore: pass })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_count_their_work_and_livermore_cycles_its_spans() {
        let mut d = Benchmark::new(Workload::Dhrystone).unwrap();
        assert_eq!(d.step().unwrap().done, 10_000.0);
        let mut l = Benchmark::new(Workload::Linpack { n: 50 }).unwrap();
        assert_eq!(l.step().unwrap().done, linpack::flops(50));
        // Livermore steps one kernel at a time; every 24th step completes a pass,
        // whose work is the sum of its steps'.
        let mut lv = Benchmark::new(Workload::Livermore { span: None }).unwrap();
        let mut spans = Vec::new();
        let mut work = 0.0;
        for n in 1..=4 * livermore::KERNELS {
            let step = lv.step().unwrap();
            assert!(step.done > 0.0);
            work += step.done;
            assert_eq!(step.livermore.is_some(), n % livermore::KERNELS == 0, "step {n}");
            if let Some(pass) = step.livermore {
                assert_eq!(pass.kernels.iter().enumerate().filter(|(i, k)| k.kernel == i + 1).count(), livermore::KERNELS);
                let flops: f64 = pass.kernels.iter().map(|k| k.flops).sum();
                assert!((flops - work).abs() < 1e-6 * flops, "pass {flops} flops, its steps {work}");
                work = 0.0;
                spans.push(pass.span);
            }
        }
        assert_eq!(spans, [Span::Short, Span::Medium, Span::Long, Span::Short]);
        assert!(Benchmark::new(Workload::Burn).is_none());
    }
}
