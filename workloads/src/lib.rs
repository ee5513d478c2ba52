//! What the guest and the harness share: the line protocol on the guest channel.
//! The guest side (init and workloads) lives in the `migbench-guest` binary.

pub mod protocol;
