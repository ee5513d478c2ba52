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
pub mod network;
pub mod qmp;
pub mod rank;
pub mod record;
pub mod report;
pub mod setup;
pub mod stats;
pub mod summary;
