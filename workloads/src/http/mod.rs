//! The `http` workload: a small HTTP/1.1 server with an in-memory key/value store
//! behind it, so a migrated guest carries live TCP connections and a web
//! application's memory (each request rewrites one page of it).
//!
//! It is blocking `std::net` with a thread per connection: the guest has few
//! vCPUs and must depend on nothing but `libc`, and a server this small needs no
//! event loop to keep a load generator busy.
//!
//! The guest binary aborts on panic and this server runs in PID 1, so nothing
//! that comes from the network may panic: slices are taken with `get`, numbers
//! are parsed with checks, and a connection that fails just ends.
//!
//! Modules import only those listed above them in this file: the store, the page
//! and the response know nothing of the rest; the request parser speaks in
//! response statuses; routes answer parsed requests from the store; a connection
//! reads, routes and answers; the server accepts connections.

mod store;
mod page;
mod response;
mod request;
mod routes;
mod connection;
mod server;

pub use server::serve;
pub use store::{Store, SLOT_BYTES};

/// The port the guest serves on.
pub const PORT: u16 = 80;
