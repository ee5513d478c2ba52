//! One live migration, split by concern (as guestperf keeps scenario, engine and
//! progress apart):
//!
//! - [`scenario`]: what to run (transport, link, limits, knobs, an injected fault);
//! - [`strategy`]: the strategies, one row each: capabilities, knobs, post-copy
//!   switch, cost model, proof;
//! - [`settings`]: a scenario's capabilities and parameters for one QEMU;
//! - [`driver`]: the QMP conversation that runs it and samples its progress;
//! - [`evidence`]: the settings read back and the proof that the strategy worked;
//! - [`file`]: a migration to a file and back (mapped-ram save and restore);
//! - [`fault`]: striking an injected fault and judging its outcome;
//! - [`health`]: whether the guest arrived alive, healthy and intact;
//! - [`measurement`]: what the run measured (DESIGN.md §3);
//! - [`tls`]: a run's x509 credentials and loading them into both QEMUs.

pub mod driver;
pub mod evidence;
pub mod fault;
pub mod file;
pub mod health;
pub mod link_speed;
pub mod measurement;
pub mod scenario;
pub mod settings;
pub mod strategy;
pub mod tls;
