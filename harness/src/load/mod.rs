//! HTTP load against the guest while it migrates, and what the client saw.

pub mod capacity;
pub mod generator;
pub mod http1;
pub mod probe;
pub mod readiness;
pub mod rivals;
pub mod service;
pub mod spec;
pub mod timeline;
