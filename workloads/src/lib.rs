//! What the guest and the harness share: the line protocol on the guest channel
//! and the orders on the kernel command line. The guest side (init and workloads)
//! lives in the `migbench-guest` binary.

pub mod benchmark;
pub mod dhrystone;
pub mod http;
pub mod linpack;
pub mod livermore;
pub mod netif;
pub mod orders;
pub mod protocol;
pub mod stamp;
