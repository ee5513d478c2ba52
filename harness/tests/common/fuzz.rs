//! Bad input never panics or hangs: property-based fuzzing with proptest.
//!
//! What a user or a QEMU can hand migbench: profiles (mutations of the shipped ones,
//! and arbitrary text), cluster states for `balance --dry-run --state`, QMP replies
//! (as values, and over a socket from a fake QEMU that misbehaves), and the values
//! of command-line options and of the guest's kernel command line.
//!
//! Each property runs a fixed number of cases, each in a child process that is
//! killed after a per-case timeout (proptest's `timeout` forks), so a hang fails the
//! test instead of stalling CI. A failure is shrunk to a minimal input and printed;
//! nothing is saved in the source tree. `MIGBENCH_FUZZ_SCALE=N` runs N times the
//! cases (a longer local run); the seed is random on every run.
//!
//! One test file a subject: fuzz_profile, fuzz_cluster_state, fuzz_qmp_reply,
//! fuzz_qmp_socket and fuzz_command_line. What they share is here.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

/// `cases` cases (times `MIGBENCH_FUZZ_SCALE`), each killed after `timeout_ms`;
/// shrinking a failure stops after 30 s; failures are not written to files.
pub fn config(cases: u32, timeout_ms: u32) -> ProptestConfig {
    let scale = std::env::var("MIGBENCH_FUZZ_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1).max(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale),
        timeout: timeout_ms,
        max_shrink_time: 30_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys QEMU's replies and schemas use, so arbitrary values reach the fields read.
pub const QMP_KEYS: &[&str] = &[
    "status", "total-time", "downtime", "expected-downtime", "setup-time", "ram", "transferred", "remaining", "mbps", "dirty-sync-count",
    "socket-address", "type", "port", "host", "error-desc", "postcopy-blocktime", "name", "meta-type", "arg-type", "members", "values",
    "element-type", "return", "error", "class", "desc", "event", "data", "timestamp", "seconds", "microseconds", "QMP",
];
pub const QMP_WORDS: &[&str] = &[
    "inet", "unix", "active", "completed", "command", "event", "enum", "object", "array", "builtin", "migrate", "migrate-set-capabilities",
    "migrate-set-parameters", "calc-dirty-rate", "capabilities", "capability", "channels", "calc-time-unit", "mode", "multifd-compression",
    "[4]", "1", "2", "3", "4", "5", "6", "postcopy-ram", "multifd", "xbzrle", "auto-converge", "events", "zstd", "none", "4444", "",
];

pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..70000).prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        select(QMP_WORDS).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((prop_oneof![4 => select(QMP_KEYS).prop_map(String::from), 1 => any::<String>()], inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}
