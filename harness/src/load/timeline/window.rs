use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a request falls relative to the migration window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    During,
    After,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        })
    }
}

/// The migration on the load's clock: from `migrate` sent to the guest running
/// on the destination, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: f64,
    pub to_ms: f64,
}

impl Window {
    /// Before `from_ms`, inside `[from_ms, to_ms]` (both ends included), or after `to_ms`.
    pub fn phase(&self, t_ms: f64) -> Phase {
        if t_ms < self.from_ms {
            Phase::Before
        } else if t_ms <= self.to_ms {
            Phase::During
        } else {
            Phase::After
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_include_both_window_ends() {
        let w = Window { from_ms: 100.0, to_ms: 200.0 };
        assert_eq!(w.phase(-5.0), Phase::Before);
        assert_eq!(w.phase(99.999), Phase::Before);
        assert_eq!(w.phase(100.0), Phase::During);
        assert_eq!(w.phase(150.0), Phase::During);
        assert_eq!(w.phase(200.0), Phase::During);
        assert_eq!(w.phase(200.001), Phase::After);
        assert_eq!(serde_json::to_string(&Phase::During).unwrap(), "\"during\"");
        assert_eq!(Phase::After.to_string(), "after");
    }
}
