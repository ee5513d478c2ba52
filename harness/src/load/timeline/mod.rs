//! What the load generator's requests say about a migration: latency before,
//! during and after it, the longest stretch without a successful response, the
//! brownout, and the error mix. Pure functions over the request log, so every
//! number in a record can be recomputed from the log alone.
//!
//! All times are milliseconds (f64) on the load generator's clock, 0 = load start;
//! the migration window is given on that same clock.
//!
//! Each module imports only those listed above it here: a request and the
//! window know nothing of the rest; latency histograms and gaps are read off
//! requests; brownout runs are gaps; the client's view puts them all together;
//! the exports write the log and the view out.

mod request;
mod window;
mod latency;
mod gap;
mod brownout;
mod client_view;
mod export;

pub use brownout::brownout;
pub use client_view::{ClientView, summarise};
pub use export::{from_csv, interval_log, to_csv};
pub use gap::{Gap, longest_gap};
pub use latency::{MergedPhase, PhaseLatency, histogram_ms, merge_hdr, percentile_ms, phase_latency};
pub use request::Request;
pub use window::{Phase, Window};
