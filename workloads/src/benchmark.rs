//! The CPU benchmarks as a sequence of checked steps: a Dhrystone batch, a Linpack
//! solve, a Livermore pass. The guest's workload threads and the harness's
//! host-side figures both repeat these steps, so both count and check the same work.

use crate::livermore::{self, Pass, Span};
use crate::orders::Workload;
use crate::{dhrystone, linpack};

/// Dhrystones per batch: one batch takes well under the 100 ms reporting period.
const DHRYSTONE_BATCH: u64 = 10_000;

/// Livermore pass scale (about 1 Mflop per kernel): the progress count moves often
/// even in a slow TCG guest, and the timings stay far above the clock's resolution.
const LIVERMORE_SCALE: f64 = 0.05;

/// One checked step's work, in the workload's unit (`Workload::unit`).
pub struct Step {
    pub done: f64,
    /// A Livermore pass, with its per-kernel times (for the summary means).
    pub livermore: Option<Pass>,
}

pub enum Benchmark {
    Dhrystone(Box<dhrystone::State>),
    Linpack { n: usize, seed: u64 },
    Livermore { ws: Box<livermore::Workspace>, spans: Vec<Span>, next: usize },
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
            Benchmark::Livermore { ws, spans, next } => {
                let pass = livermore::pass(ws, spans[*next % spans.len()], LIVERMORE_SCALE)?;
                *next += 1;
                Ok(Step { done: pass.kernels.iter().map(|k| k.flops).sum(), livermore: Some(pass) })
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
        let mut lv = Benchmark::new(Workload::Livermore { span: None }).unwrap();
        let spans: Vec<Span> = (0..4).map(|_| lv.step().unwrap().livermore.unwrap().span).collect();
        assert_eq!(spans, [Span::Short, Span::Medium, Span::Long, Span::Short]);
        assert!(Benchmark::new(Workload::Burn).is_none());
    }
}
