//! The guest channel's line protocol, guest → host, one message per `\n`-terminated line.
//!
//! ```text
//! READY boot_ms=<ms since the guest kernel booted> kernel=<uname -r>
//! HB <seq> <guest CLOCK_MONOTONIC ns>
//! RATE <unit> <work done since boot, in unit> <guest CLOCK_MONOTONIC ns>   (every 100 ms)
//! LOG <free text>
//! ```
//!
//! Unknown lines are kept by the host as `Other`, so a newer guest never breaks an
//! older harness.

use std::fmt;

/// Name of the virtio-serial port the guest writes to.
pub const PORT_NAME: &str = "migbench.0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Ready { boot_ms: u64, kernel: String },
    Heartbeat { seq: u64, guest_ns: u64 },
    /// The workload's cumulative progress; rates are differences between two.
    Rate { unit: String, total: u64, guest_ns: u64 },
    Log(String),
    Other(String),
}

impl Message {
    pub fn parse(line: &str) -> Message {
        let line = line.trim_end_matches(['\r', '\n']);
        let mut words = line.splitn(2, ' ');
        let head = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("");
        match head {
            "HB" => {
                let mut it = rest.split(' ');
                match (
                    it.next().and_then(|s| s.parse().ok()),
                    it.next().and_then(|s| s.parse().ok()),
                ) {
                    (Some(seq), Some(guest_ns)) => Message::Heartbeat { seq, guest_ns },
                    _ => Message::Other(line.to_string()),
                }
            }
            "READY" => {
                let mut boot_ms = None;
                let mut kernel = String::new();
                for kv in rest.split(' ') {
                    match kv.split_once('=') {
                        Some(("boot_ms", v)) => boot_ms = v.parse().ok(),
                        Some(("kernel", v)) => kernel = v.to_string(),
                        _ => {}
                    }
                }
                match boot_ms {
                    Some(boot_ms) => Message::Ready { boot_ms, kernel },
                    None => Message::Other(line.to_string()),
                }
            }
            "RATE" => {
                let mut it = rest.split(' ');
                match (it.next(), it.next().and_then(|s| s.parse().ok()), it.next().and_then(|s| s.parse().ok())) {
                    (Some(unit), Some(total), Some(guest_ns)) if !unit.is_empty() => {
                        Message::Rate { unit: unit.to_string(), total, guest_ns }
                    }
                    _ => Message::Other(line.to_string()),
                }
            }
            "LOG" => Message::Log(rest.to_string()),
            _ => Message::Other(line.to_string()),
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Ready { boot_ms, kernel } => write!(f, "READY boot_ms={boot_ms} kernel={kernel}"),
            Message::Heartbeat { seq, guest_ns } => write!(f, "HB {seq} {guest_ns}"),
            Message::Rate { unit, total, guest_ns } => write!(f, "RATE {unit} {total} {guest_ns}"),
            Message::Log(text) => write!(f, "LOG {text}"),
            Message::Other(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for m in [
            Message::Ready { boot_ms: 1234, kernel: "6.1.0-56-cloud-amd64".into() },
            Message::Heartbeat { seq: 42, guest_ns: 9_000_000_001 },
            Message::Log("module virtio_net loaded".into()),
            Message::Rate { unit: "flop".into(), total: 123_456_789, guest_ns: 42 },
        ] {
            assert_eq!(Message::parse(&format!("{m}\n")), m);
        }
    }

    #[test]
    fn garbage_is_kept_not_fatal() {
        assert_eq!(Message::parse("HB x y"), Message::Other("HB x y".into()));
        assert_eq!(Message::parse("READY"), Message::Other("READY".into()));
        assert_eq!(Message::parse(""), Message::Other(String::new()));
        assert_eq!(Message::parse("NEWTHING 1"), Message::Other("NEWTHING 1".into()));
        assert_eq!(Message::parse("RATE flop x 1"), Message::Other("RATE flop x 1".into()));
    }
}
