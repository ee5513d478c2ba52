//! The kernels' DO-loop lengths: three spans of each, as the benchmark sets them.

/// The number of kernels.
pub const KERNELS: usize = 24;

/// The three DO-loop span sets of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Short,
    Medium,
    Long,
}

impl Span {
    pub const ALL: [Span; 3] = [Span::Short, Span::Medium, Span::Long];

    pub fn name(self) -> &'static str {
        match self {
            Span::Short => "short",
            Span::Medium => "medium",
            Span::Long => "long",
        }
    }
}

/// Loop lengths per kernel: short, medium, long (see the `livermore` module's table).
const SPANS: [[usize; 3]; KERNELS] = [
    [27, 101, 1001],
    [15, 101, 101],
    [27, 101, 1001],
    [27, 101, 1001],
    [27, 101, 1001],
    [8, 32, 64],
    [21, 101, 995],
    [14, 100, 100],
    [15, 101, 101],
    [15, 101, 101],
    [27, 101, 1001],
    [26, 100, 1000],
    [8, 32, 64],
    [27, 101, 1001],
    [15, 101, 101],
    [15, 40, 75],
    [15, 101, 101],
    [14, 100, 100],
    [15, 101, 101],
    [26, 100, 1000],
    [20, 50, 101],
    [15, 101, 101],
    [14, 100, 100],
    [27, 101, 1001],
];

pub(super) fn slot(kernel: usize) -> usize {
    assert!((1..=KERNELS).contains(&kernel), "Livermore kernels are numbered 1 to {KERNELS}, not {kernel}");
    kernel - 1
}

/// The loop length of `kernel` (1 to 24) at `span`.
pub fn span_len(kernel: usize, span: Span) -> usize {
    SPANS[slot(kernel)][span as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "numbered 1 to 24")]
    fn kernel_numbers_are_checked() {
        span_len(25, Span::Long);
    }
}
