//! migbench: benchmark QEMU live migration on real guests.
//!
//! Data flows one way (DESIGN.md §2): set-up → machine + guest → migration driver
//! → one record per run → report.

pub mod experiment;
pub mod guest;
pub mod host;
pub mod load;
pub mod machine;
pub mod migration;
pub mod migration_evidence;
pub mod network;
pub mod plan;
pub mod predict;
pub mod qemu_cache;
pub mod qmp;
pub mod rank;
pub mod report;
pub mod setup;
pub mod stale;
