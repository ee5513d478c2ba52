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

use migbench::experiment::profile::{Profile, Shard, VARIABLES};
use migbench::load::generator::Mode;
use migbench::machine::command::kernel_cmdline;
use migbench::machine::hardware::Accel;
use migbench::migration::scenario::{LinkSpeed, Scenario};
use migbench::migration::strategy::{capability_plan, parameter_plan};
use migbench::qmp::{Features, MigrationInfo, Qmp, QmpError};
use migbench::rank::balance::{self, ClusterState, Options, Rule};
use migbench::rank::cluster::ClusterProfile;
use migbench_guest::orders::{DirtyMode, Orders, Workload};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// `cases` cases (times `MIGBENCH_FUZZ_SCALE`), each killed after `timeout_ms`;
/// shrinking a failure stops after 30 s; failures are not written to files.
fn config(cases: u32, timeout_ms: u32) -> ProptestConfig {
    let scale = std::env::var("MIGBENCH_FUZZ_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1).max(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale),
        timeout: timeout_ms,
        max_shrink_time: 30_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------
// Profiles

/// The shipped profiles, (file name, text), in name order.
fn shipped_profiles() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "profiles missing from {}", dir.display());
    files
}

/// Words a profile's string values take, so mutations reach the checks behind the parser.
const WORDS: &[&str] = &[
    "precopy", "postcopy", "hybrid", "auto-converge", "xbzrle", "multifd", "teleport", "unix", "tcp", "1Gbit", "100Mbit", "10Gbit",
    "unlimited", "0bit", "99Tbit", "50MiB/s", "idle", "burn", "dhrystone", "livermore", "livermore:short", "http", "http:32",
    "http:0", "memdirty-write:16", "memdirty-write:0", "memdirty-read:64:10", "memdirty-write:4096", "cpu-duty:50", "cpu-duty:0",
    "linpack:100", "open:100", "open:0", "open:nan", "closed:4:10", "closed:0", "keep-alive", "per-request", "none", "zstd",
    "zlib", "shreya-table5", "ghalib-web", "paper", "guarded", "cost-aware", "lightest", "min-stddev", "", " ", "Host 1",
];

/// Numbers as TOML writes them, with the edges: huge, negative, NaN, infinities.
fn toml_number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..5000).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| if f.is_nan() { "nan".to_string() } else if f.is_infinite() { format!("{}inf", if f < 0.0 { "-" } else { "" }) } else { format!("{f:?}") }),
        select(&[
            "0", "-0", "1", "-1", "0.0", "-0.0", "0.5", "60.0", "1e400", "-1e400", "1e-400", "nan", "+nan", "-nan", "inf", "+inf", "-inf",
            "255", "256", "4294967295", "4294967296", "18446744073709551615", "18446744073709551616", "-9223372036854775809",
            "99999999999999999999999999", "604800", "604801", "0x7fffffff", "0o777", "0b101", "1_000",
        ][..])
        .prop_map(String::from),
    ]
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML scalar: a number, a string (a known word or anything), a boolean or a date.
fn toml_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => toml_number(),
        3 => select(WORDS).prop_map(toml_string),
        1 => any::<String>().prop_map(|s| toml_string(&s)),
        1 => select(&["true", "false", "1979-05-27T07:32:00Z", "07:32:00", "''", "'''x'''", "\"\\u0000\""][..]).prop_map(String::from),
    ]
}

/// Any TOML value: scalars, lists (empty too), inline tables, deep nesting.
fn toml_value() -> impl Strategy<Value = String> {
    let nested = toml_scalar().prop_recursive(3, 32, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((toml_key(), inner), 0..4)
                .prop_map(|kv| format!("{{ {} }}", kv.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "))),
        ]
    });
    prop_oneof![
        20 => nested,
        // Deep nesting (the parser has a recursion limit).
        1 => prop_oneof![
            (1usize..3000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
            (1usize..3000).prop_map(|n| format!("{}1{}", "{ a = ".repeat(n), " }".repeat(n))),
        ],
    ]
}

/// Keys: a profile's own, a cluster profile's, and anything.
fn toml_key() -> impl Strategy<Value = String> {
    const TOP: &[&str] = &[
        "name", "description", "repetitions", "warmup_s", "before_s", "after_s", "dirty_rate_s", "reproduces", "defaults", "matrix",
        "cell", "window_s", "max_rounds", "rule", "margin", "cooldown_rounds", "host", "vm", "capacity_percent", "workload",
    ];
    prop_oneof![
        4 => select(VARIABLES).prop_map(String::from),
        2 => select(TOP).prop_map(String::from),
        1 => "[a-z_]{1,12}",
        1 => any::<String>().prop_map(|s| toml_string(&s)),
        1 => select(VARIABLES).prop_map(|v| format!("defaults.{v}")),
    ]
}

/// Values a variable takes: of its type (in range and just outside it), so that
/// mutations get past the parser to the checks behind it.
fn values_of(key: &str) -> BoxedStrategy<String> {
    let ints = |lo: u64, hi: u64| (lo..=hi).prop_map(|n| n.to_string()).boxed();
    let floats = |hi: f64| (0.0..hi).prop_map(|f| format!("{f:?}")).boxed();
    let words = |w: &'static [&'static str]| select(w).prop_map(toml_string).boxed();
    match key {
        "ram_mib" => ints(32, 2048),
        "vcpus" => ints(0, 8),
        "workload" => words(&["idle", "burn", "dhrystone", "livermore:long", "http", "http:64", "http:4096", "cpu-duty:50", "linpack:100", "memdirty-write:16", "memdirty-read:64:10", "memdirty-write:300"]),
        "strategy" => words(&["precopy", "postcopy", "hybrid", "auto-converge", "xbzrle", "multifd"]),
        "link" => words(&["100Mbit", "1Gbit", "10Gbit", "2.5Gbit", "50MiB/s", "unlimited", "0Mbit", "9Tbit"]),
        "transport" => words(&["unix", "tcp"]),
        "downtime_limit_ms" => ints(0, 3_000_000),
        "timeout_s" | "hybrid_after_s" => floats(1e6),
        "hybrid_passes" => ints(0, 10),
        "throttle_initial" | "throttle_increment" => ints(0, 120),
        "xbzrle_cache_mib" => ints(0, 2048),
        "multifd_channels" => ints(0, 16),
        "multifd_compression" => words(&["none", "zlib", "zstd"]),
        "cap_percent" => ints(0, 400),
        "host_cores" => ints(0, 4),
        "balloon_mib" => ints(0, 2048),
        "load" => words(&["open:100", "open:0.05", "open:1e6", "closed:1", "closed:4:10", "closed:2000", "closed:1:60001"]),
        "connection" => words(&["keep-alive", "per-request"]),
        "requests" => ints(0, 100_000),
        "dynamic_percent" => ints(0, 150),
        "request_timeout_ms" => ints(0, 700_000),
        "probe_hz" => ints(0, 200_000),
        _ => toml_scalar().boxed(),
    }
}

/// `key = value` for `[defaults]`.
fn defaults_entry() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        3 => select(VARIABLES).prop_flat_map(|k| prop_oneof![9 => values_of(k), 1 => toml_value()].prop_map(move |v| (k.to_string(), v))),
        1 => (toml_key(), toml_value()),
    ]
}

/// `key = [values]` for `[matrix]`: often long lists.
fn matrix_entry(key: &'static str) -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        6 => prop::collection::vec(values_of(key), 0..24),
        1 => prop::collection::vec(prop_oneof![9 => values_of(key), 1 => toml_scalar()], 0..24),
        1 => prop::collection::vec(toml_scalar(), 0..8),
    ]
    .prop_map(move |v| (key.to_string(), format!("[{}]", v.join(", "))))
}

#[derive(Debug, Clone)]
enum Edit {
    Drop(Index),
    Duplicate(Index),
    Truncate(Index, Index),
    Swap(Index, Index),
    /// Replace the value of a `key = value` line.
    Value(Index, String),
    /// Insert a line anywhere.
    Line(Index, String),
    /// Set keys in a section: replace the key's line, or add one below the header
    /// (and the header at the end if it is missing).
    Set(&'static str, Vec<(String, String)>),
}

fn edit() -> impl Strategy<Value = Edit> {
    const HEADERS: &[&str] = &["[defaults]", "[matrix]", "[[cell]]", "[[host]]", "[reproduces]", "[matrix.ram_mib]", "[", "[[", "]"];
    let line = prop_oneof![
        4 => (toml_key(), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => select(HEADERS).prop_map(String::from),
        1 => any::<String>(),
    ];
    prop_oneof![
        2 => any::<Index>().prop_map(Edit::Drop),
        1 => any::<Index>().prop_map(Edit::Duplicate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(l, at)| Edit::Truncate(l, at)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        4 => (any::<Index>(), toml_value()).prop_map(|(l, v)| Edit::Value(l, v)),
        2 => (any::<Index>(), line).prop_map(|(l, s)| Edit::Line(l, s)),
        6 => setting(),
    ]
}

/// A variable set in `[defaults]` or `[matrix]`, or a whole matrix.
fn setting() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => defaults_entry().prop_map(|kv| Edit::Set("[defaults]", vec![kv])),
        3 => select(VARIABLES).prop_flat_map(matrix_entry).prop_map(|kv| Edit::Set("[matrix]", vec![kv])),
        1 => prop::sample::subsequence(VARIABLES, 1..10)
            .prop_flat_map(|keys| keys.into_iter().map(matrix_entry).collect::<Vec<_>>())
            .prop_map(|kvs| Edit::Set("[matrix]", kvs)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for e in edits {
        let n = lines.len();
        match e {
            Edit::Drop(i) if n > 0 => {
                lines.remove(i.index(n));
            }
            Edit::Duplicate(i) if n > 0 => {
                let l = lines[i.index(n)].clone();
                lines.insert(i.index(n), l);
            }
            Edit::Truncate(i, at) if n > 0 => {
                let l = &mut lines[i.index(n)];
                let cut = l.char_indices().map(|(b, _)| b).nth(at.index(l.chars().count() + 1)).unwrap_or(l.len());
                l.truncate(cut);
            }
            Edit::Swap(a, b) if n > 0 => lines.swap(a.index(n), b.index(n)),
            Edit::Value(i, v) if n > 0 => {
                let l = &mut lines[i.index(n)];
                if let Some(eq) = l.find('=').filter(|_| !l.trim_start().starts_with('[')) {
                    *l = format!("{} {v}", &l[..=eq]);
                }
            }
            Edit::Line(i, s) => lines.insert(i.index(n + 1), s.clone()),
            Edit::Set(header, kvs) => {
                for (k, v) in kvs {
                    let line = format!("{k} = {v}");
                    let Some(at) = lines.iter().position(|l| l.trim() == *header) else {
                        lines.extend([header.to_string(), line]);
                        continue;
                    };
                    let end = lines[at + 1..].iter().position(|l| l.trim_start().starts_with('[')).map_or(lines.len(), |e| at + 1 + e);
                    let set = |l: &String| l.trim_start().strip_prefix(k.as_str()).is_some_and(|r| r.trim_start().starts_with('='));
                    match lines[at + 1..end].iter().position(set) {
                        Some(i) => lines[at + 1 + i] = line,
                        None => lines.insert(at + 1, line),
                    }
                }
            }
            _ => {}
        }
    }
    lines.join("\n")
}

/// A profile that parses holds together: distinct keys, cells whose parts pass their
/// own checks, kernel command lines the guest reads back, shards covering every cell.
fn check_profile(text: &str, source: &str) -> Result<(), TestCaseError> {
    let p = match Profile::parse(text, source) {
        Err(e) => {
            let msg = e.to_string();
            // A cluster profile is told apart before parsing, with its own wording.
            let cluster = text.contains("[[host]]") && msg.starts_with(&format!("profile {source} describes a cluster ([[host]])"));
            prop_assert!(msg.starts_with(&format!("profile {source}:")) || cluster, "{msg}");
            return Ok(());
        }
        Ok(p) => p,
    };
    prop_assert!(!p.cells.is_empty() && p.repetitions >= 1);
    let keys: std::collections::HashSet<String> = p.cells.iter().map(|c| c.key()).collect();
    prop_assert_eq!(keys.len(), p.cells.len(), "two cells share a key");
    for c in &p.cells {
        let scenario = c.scenario();
        prop_assert!(scenario.validate().is_ok(), "{:?}", scenario.validate());
        prop_assert!(scenario.timeout() > Duration::ZERO);
        let spec = c.guest(Accel::Tcg);
        prop_assert!(spec.check().is_ok(), "{:?}", spec.check());
        if let Some(load) = c.load_spec() {
            prop_assert!(load.check().is_ok(), "{:?}", load.check());
        }
        let (orders, problems) = Orders::parse(&kernel_cmdline(&spec));
        prop_assert!(problems.is_empty(), "{problems:?}");
        prop_assert_eq!(orders.workload, c.workload);
        let _ = (c.describe(VARIABLES), c.boot_key());
    }
    for count in 1..=3 {
        let covered: usize = (0..count).map(|index| p.shard(Shard { index, count }).len()).sum();
        prop_assert_eq!(covered, p.cells.len());
    }
    Ok(())
}

fn check_cluster_profile(text: &str) -> Result<(), TestCaseError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    if let Err(e) = ClusterProfile::load(file.path()) {
        let msg = e.to_string();
        prop_assert!(msg.starts_with(&format!("cluster profile {}:", file.path().display())), "{msg}");
    }
    Ok(())
}

fn mutated_profile() -> impl Strategy<Value = (String, String)> {
    // Any edits (most break the TOML), or settings only (which reach the checks behind it).
    let edits = prop_oneof![prop::collection::vec(edit(), 1..6), prop::collection::vec(setting(), 1..6)];
    (select(shipped_profiles()), edits).prop_map(|((name, text), edits)| (name, apply(&text, &edits)))
}

proptest! {
    #![proptest_config(config(1500, 5_000))]

    #[test]
    fn mutated_profiles_parse_or_say_why((name, text) in mutated_profile()) {
        check_profile(&text, &name)?;
        if text.contains("[[host]]") {
            check_cluster_profile(&text)?;
        }
    }
}

proptest! {
    #![proptest_config(config(500, 5_000))]

    #[test]
    fn arbitrary_text_is_not_a_profile(text in any::<String>(), source in "[a-z./ -]{0,16}") {
        check_profile(&text, &source)?;
    }

    #[test]
    fn toml_like_text_is_not_a_profile(text in "[\\[\\]a-z_= \"'0-9.,{}#\n-]{0,400}") {
        check_profile(&text, "t.toml")?;
    }

    #[test]
    fn arbitrary_bytes_are_not_a_profile(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        check_profile(&String::from_utf8_lossy(&bytes), "bytes.toml")?;
    }
}

// ---------------------------------------------------------------------------------
// Cluster states (`balance --dry-run --state`)

/// Names: mostly distinct, sometimes from a small pool (so some repeat), or anything.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z]{1,4}",
        2 => select(&["a", "b", "c", "Host 1", "Host 2", "S1", "K2", "", " ", "a\u{0}", "é", "|", "host:a", "vm:a"][..]).prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// Finite numbers (JSON has no NaN): usages, negatives, zero, huge, integers.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        24 => (0.0..150.0f64).prop_map(|f| json!(f)),
        2 => select(&[0.0, -0.0, -1.0, -1e-9, 5e-324, 1e-300, 1e10, 1e154, 1e155, 1e300, f64::MAX, -f64::MAX, f64::MIN_POSITIVE][..]).prop_map(|f| json!(f)),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<u64>().prop_map(|n| json!(n)),
        1 => any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(|f| json!(f)),
    ]
}

fn vm_json() -> impl Strategy<Value = Value> {
    (name(), number(), prop::option::of(number()), prop::option::of(any::<bool>())).prop_map(|(name, cpu, s, converges)| {
        let mut v = json!({"name": name, "cpu": cpu});
        if let Some(s) = s {
            v["predicted_migration_s"] = s;
        }
        if let Some(c) = converges {
            v["converges"] = json!(c);
        }
        v
    })
}

fn host_json() -> impl Strategy<Value = Value> {
    (name(), number(), prop::option::of(number()), prop::option::of(prop::collection::vec(vm_json(), 0..6))).prop_map(|(name, cpu, cores, vms)| {
        let mut h = json!({"name": name, "cpu": cpu});
        if let Some(c) = cores {
            h["cores"] = c;
        }
        if let Some(vms) = vms {
            h["vms"] = Value::Array(vms);
        }
        h
    })
}

fn shaped_state_json() -> impl Strategy<Value = Value> {
    let hosts = prop_oneof![1 => prop::collection::vec(host_json(), 0..2), 6 => prop::collection::vec(host_json(), 2..7)];
    (hosts, prop::option::of(prop::collection::vec(name(), 0..4))).prop_map(|(hosts, cooling)| {
        let mut s = json!({"hosts": hosts});
        if let Some(c) = cooling {
            s["cooling_down"] = json!(c);
        }
        s
    })
}

fn state_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => shaped_state_json(),
        // Slightly off: an unknown field, or a field of the wrong type.
        1 => (shaped_state_json(), any::<Index>(), json_value()).prop_map(|(mut s, i, v)| {
            if let Some(hosts) = s["hosts"].as_array_mut().filter(|h| !h.is_empty()) {
                let n = hosts.len();
                hosts[i.index(n)]["cpu"] = v;
            } else {
                s["extra"] = v;
            }
            s
        }),
        1 => json_value(),
    ]
}

fn check_state(v: &Value, margin: f64) -> Result<(), TestCaseError> {
    let Ok(state) = serde_json::from_str::<ClusterState>(&v.to_string()) else { return Ok(()) };
    let checked = balance::check(&state);
    let exists = |host: &str| state.hosts.iter().find(|h| h.name == host);
    let mut decisions = Vec::new();
    for rule in Rule::ALL {
        for margin in [0.0, 1.0, margin] {
            match balance::decide(&state, &Options { rule, margin }) {
                Err(e) => {
                    prop_assert_eq!(Err(e.clone()), checked.clone());
                    let named = e.contains("at least 2")
                        || state.hosts.iter().any(|h| e.contains(&format!("{:?}", h.name)) || h.vms.iter().any(|v| e.contains(&format!("{:?}", v.name))));
                    prop_assert!(named, "the error names nothing: {}", e);
                }
                Ok(d) => {
                    prop_assert!(checked.is_ok());
                    if let Some(m) = &d.migration {
                        prop_assert!(m.from != m.to, "{m:?}");
                        prop_assert!(exists(&m.to).is_some(), "{m:?}");
                        prop_assert!(exists(&m.from).is_some_and(|h| h.vms.iter().any(|v| v.name == m.vm)), "{m:?}");
                    }
                    for c in &d.candidates {
                        prop_assert!(exists(&c.from).is_some_and(|h| h.vms.iter().any(|v| v.name == c.vm)) && exists(&c.to).is_some(), "{c:?}");
                    }
                    // Every host is light, moderate or heavy, once (unless the usages
                    // are so large that their sum overflows).
                    if state.hosts.iter().map(|h| h.cpu).sum::<f64>().is_finite() {
                        for h in &state.hosts {
                            let n = [&d.light, &d.moderate, &d.heavy].iter().filter(|l| l.contains(&h.name)).count();
                            prop_assert_eq!(n, 1, "host {:?} in {} classes: {:?}", h.name, n, d);
                        }
                    }
                    prop_assert!(serde_json::to_string_pretty(&d).is_ok());
                    decisions.push(d);
                }
            }
        }
    }
    let _ = migbench::report::balance_rules_table(&decisions);
    Ok(())
}

proptest! {
    #![proptest_config(config(1000, 5_000))]

    #[test]
    fn cluster_states_decide_or_say_why(v in state_json(), margin in select(&[0.0, 0.5, 5.0, 1e300, f64::MAX, 5e-324][..])) {
        check_state(&v, margin)?;
    }
}

// ---------------------------------------------------------------------------------
// QMP replies as values

/// Keys QEMU's replies and schemas use, so arbitrary values reach the fields read.
const QMP_KEYS: &[&str] = &[
    "status", "total-time", "downtime", "expected-downtime", "setup-time", "ram", "transferred", "remaining", "mbps", "dirty-sync-count",
    "socket-address", "type", "port", "host", "error-desc", "postcopy-blocktime", "name", "meta-type", "arg-type", "members", "values",
    "element-type", "return", "error", "class", "desc", "event", "data", "timestamp", "seconds", "microseconds", "QMP",
];
const QMP_WORDS: &[&str] = &[
    "inet", "unix", "active", "completed", "command", "event", "enum", "object", "array", "builtin", "migrate", "migrate-set-capabilities",
    "migrate-set-parameters", "calc-dirty-rate", "capabilities", "capability", "channels", "calc-time-unit", "mode", "multifd-compression",
    "[4]", "1", "2", "3", "4", "5", "6", "postcopy-ram", "multifd", "xbzrle", "auto-converge", "events", "zstd", "none", "4444", "",
];

fn json_value() -> impl Strategy<Value = Value> {
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

/// A `query-qmp-schema` whose entries point at each other (as QEMU's masked names do).
fn schema_json() -> impl Strategy<Value = Value> {
    let member = (select(QMP_WORDS), prop::option::of(select(QMP_WORDS))).prop_map(|(n, t)| match t {
        Some(t) => json!({"name": n, "type": t}),
        None => json!({"name": n}),
    });
    let entry = (
        select(QMP_WORDS),
        select(&["command", "event", "object", "enum", "array", "builtin", "alternate"][..]),
        prop::option::of(select(QMP_WORDS)),
        prop::option::of(select(QMP_WORDS)),
        prop::option::of(prop::collection::vec(member, 0..5)),
        prop::option::of(prop::collection::vec(prop_oneof![4 => select(QMP_WORDS).prop_map(Value::from), 1 => json_value()], 0..6)),
    )
        .prop_map(|(name, meta, arg, element, members, values)| {
            let mut e = json!({"name": name, "meta-type": meta});
            if let Some(a) = arg {
                e["arg-type"] = json!(a);
            }
            if let Some(t) = element {
                e["element-type"] = json!(t);
            }
            if let Some(m) = members {
                e["members"] = Value::Array(m);
            }
            if let Some(v) = values {
                e["values"] = Value::Array(v);
            }
            e
        });
    prop_oneof![4 => prop::collection::vec(entry, 0..24).prop_map(Value::Array), 1 => json_value()]
}

fn check_migration_info(v: &Value) -> Result<(), TestCaseError> {
    let info = MigrationInfo::from_value(v);
    // Lenient: a field of the right type survives whatever its neighbours are.
    if let Some(s) = v.get("status").and_then(Value::as_str) {
        prop_assert_eq!(info.status(), s);
    }
    if let Some(t) = v.get("total-time").and_then(Value::as_u64) {
        prop_assert_eq!(info.total_time, Some(t));
    }
    let _ = info.inet_port();
    Ok(())
}

fn check_features(schema: &Value) -> Result<(), TestCaseError> {
    let f = Features::from_schema(schema);
    use migbench::migration::strategy::Strategy::*;
    for strategy in [Precopy, Postcopy, Hybrid, AutoConverge, Xbzrle, Multifd] {
        if let Ok(plan) = capability_plan(strategy, &f) {
            for (cap, _) in &plan {
                prop_assert!(f.has_capability(cap), "{cap} is not offered: {:?}", f.capabilities);
            }
        }
        let scenario = Scenario { strategy, ..Scenario::default() };
        let _ = parameter_plan(&scenario, &f);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(500, 5_000))]

    #[test]
    fn query_migrate_replies_are_read_leniently(v in json_value()) {
        check_migration_info(&v)?;
        check_features(&v)?;
    }

    #[test]
    fn migration_info_shaped_replies(fields in prop::collection::vec((select(QMP_KEYS), json_value()), 0..10)) {
        let v = Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        check_migration_info(&v)?;
        check_migration_info(&json!({"status": "active", "ram": v}))?;
        check_migration_info(&json!({"socket-address": [v]}))?;
    }

    #[test]
    fn schemas_are_walked_without_panics(schema in schema_json()) {
        check_features(&schema)?;
    }
}

// ---------------------------------------------------------------------------------
// QMP over a socket: a fake QEMU that misbehaves

/// What the fake QEMU sends where a reply is due. `$ID` is the command's id.
#[derive(Debug, Clone)]
enum Chunk {
    /// Anything, newlines included.
    Bytes(Vec<u8>),
    /// A reply cut short (it never has its closing brace).
    Truncated(Index),
    /// A reply to some other command, or with an id of the wrong type.
    WrongId(Value),
    /// A reply without an id.
    NoId,
    /// A line of JSON that is not a message (an array, a number, an object of anything).
    Json(Value),
    /// A line that is not UTF-8.
    NotUtf8(Vec<u8>),
    /// Many events at once.
    Events(usize),
    /// A 1 MiB line: an event with a huge payload, or 1 MiB of non-JSON.
    HugeEvent,
    HugeGarbage,
    /// A reply to the command: `return`, `error`, or neither.
    Return(Value),
    Error(Value),
    Neither,
}

fn chunk() -> impl Strategy<Value = Chunk> {
    let wrong_id = select(vec![json!(0), json!(1), json!(7), json!(u64::MAX), json!(-2), json!(2.5), json!("2"), json!(null), json!([2]), json!({"id": 2})]);
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Chunk::Bytes),
        2 => any::<Index>().prop_map(Chunk::Truncated),
        2 => wrong_id.prop_map(Chunk::WrongId),
        1 => Just(Chunk::NoId),
        // Objects with no id of their own (an id here would answer commands by luck).
        2 => json_value().prop_map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
            }
            Chunk::Json(v)
        }),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut b| {
            b.insert(0, 0xff);
            b.retain(|&c| c != b'\n');
            b.push(b'\n');
            Chunk::NotUtf8(b)
        }),
        1 => (0usize..1500).prop_map(Chunk::Events),
        1 => Just(Chunk::HugeEvent),
        1 => Just(Chunk::HugeGarbage),
        1 => json_value().prop_map(Chunk::Return),
        1 => json_value().prop_map(Chunk::Error),
        1 => Just(Chunk::Neither),
    ]
}

fn render(chunks: &[Chunk], id: &Value) -> Vec<Vec<u8>> {
    let line = |v: Value| format!("{v}\r\n").into_bytes();
    chunks
        .iter()
        .map(|c| match c {
            Chunk::Bytes(b) | Chunk::NotUtf8(b) => b.clone(),
            Chunk::Truncated(at) => {
                let full = json!({"return": {"status": "active"}, "id": id}).to_string();
                full.as_bytes()[..at.index(full.len())].to_vec()
            }
            Chunk::WrongId(other) => line(json!({"return": {}, "id": other})),
            Chunk::NoId => line(json!({"return": {}})),
            Chunk::Json(v) => line(v.clone()),
            Chunk::Events(n) => (0..*n)
                .flat_map(|i| line(json!({"event": "FLOOD", "data": {"i": i}, "timestamp": {"seconds": i, "microseconds": 0}})))
                .collect(),
            Chunk::HugeEvent => line(json!({"event": "HUGE", "data": "x".repeat(1 << 20)})),
            Chunk::HugeGarbage => vec![b'x'; 1 << 20],
            Chunk::Return(v) => line(json!({"return": v, "id": id})),
            Chunk::Error(v) => line(json!({"error": {"class": v, "desc": "because"}, "id": id})),
            Chunk::Neither => line(json!({"id": id, "something": true})),
        })
        .collect()
}

/// The messages a QMP client should see in `stream`: lines split at `\n` (one `\r`
/// dropped), the last one too if the stream ended; lines that are not UTF-8 or not
/// JSON are skipped, as are blank ones.
fn messages(stream: &[u8], eof: bool) -> Vec<Value> {
    let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let partial = parts.pop().unwrap_or_default();
    if eof && !partial.is_empty() {
        parts.push(partial);
    }
    parts
        .into_iter()
        .filter_map(|l| std::str::from_utf8(l.strip_suffix(b"\r").unwrap_or(l)).ok())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// What a command with `id` should get from `msgs`: the first reply with its id.
fn answer(msgs: &[Value], id: u64) -> Option<Result<Value, (String, String)>> {
    let m = msgs.iter().find(|m| m.get("event").and_then(Value::as_str).is_none() && m.get("id").and_then(Value::as_u64) == Some(id))?;
    Some(if let Some(r) = m.get("return") {
        Ok(r.clone())
    } else if let Some(e) = m.get("error") {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Err((s("class"), s("desc")))
    } else {
        Err(("ProtocolError".into(), String::new()))
    })
}

fn events(msgs: &[Value]) -> usize {
    msgs.iter().filter(|m| m.get("event").and_then(Value::as_str).is_some()).count()
}

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A socket in a fresh directory, and the listener on it.
fn listen() -> (tempfile::TempDir, std::path::PathBuf, tokio::net::UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    (dir, path, listener)
}

async fn next_id(lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>) -> Option<Value> {
    let line = lines.next_line().await.ok()??;
    Some(serde_json::from_str::<Value>(&line).ok()?["id"].clone())
}

/// Greets, answers `qmp_capabilities`, sends `chunks` where the next reply is due,
/// then closes, or (`close` false) ends the line and answers one more command properly.
async fn misbehave(listener: tokio::net::UnixListener, chunks: Vec<Chunk>, close: bool) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Ok((stream, _)) = listener.accept().await else { return };
    let (rd, mut wr) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(rd).lines();
    let _ = wr.write_all(GREETING).await;
    let Some(id) = next_id(&mut lines).await else { return };
    let _ = wr.write_all(format!("{}\r\n", json!({"return": {}, "id": id})).as_bytes()).await;
    let Some(id) = next_id(&mut lines).await else { return };
    for bytes in render(&chunks, &id) {
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
    }
    if close {
        return;
    }
    let _ = wr.write_all(b"\n").await;
    let Some(id) = next_id(&mut lines).await else { return };
    let _ = wr.write_all(format!("{}\r\n", json!({"return": {"second": true}, "id": id})).as_bytes()).await;
    while let Ok(Some(_)) = lines.next_line().await {}
}

fn check_misbehaving_qemu(chunks: Vec<Chunk>, close: bool) -> Result<(), TestCaseError> {
    // Ids: 1 is qmp_capabilities, 2 the command under test, 3 the one after it.
    let stream: Vec<u8> = render(&chunks, &json!(2)).concat();
    let mut msgs = messages(&stream, close);
    if !close {
        msgs = messages(&[stream, b"\n".to_vec()].concat(), false);
    }
    let want = answer(&msgs, 2);
    // Where no answer comes and the connection stays, the command must time out: keep it short.
    let timeout = if want.is_none() && !close { Duration::from_millis(150) } else { Duration::from_secs(5) };
    runtime().block_on(async {
        let (_dir, path, listener) = listen();
        tokio::spawn(misbehave(listener, chunks, close));
        let q = Qmp::connect(&path, "fuzz", Duration::from_secs(5)).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let t0 = Instant::now();
        let got = q.execute_json_timeout("query-migrate", json!({}), timeout).await;
        prop_assert!(t0.elapsed() <= timeout + Duration::from_secs(1), "took {:?}", t0.elapsed());
        match (&want, &got) {
            (Some(Ok(v)), Ok(r)) => prop_assert_eq!(v, r),
            (Some(Err((class, desc))), Err(e @ QmpError::Command { .. })) => {
                prop_assert_eq!(e.class(), Some(class.as_str()));
                prop_assert!(e.to_string().contains(desc.as_str()), "{e}");
            }
            (None, Err(QmpError::Closed { .. })) if close => {}
            (None, Err(QmpError::Timeout { .. })) if !close => {}
            _ => prop_assert!(false, "expected {want:?}, got {got:?}"),
        }
        if let Ok(v) = &got {
            let _ = MigrationInfo::from_value(v);
        }
        if close {
            // The connection is gone: the client says so (not a timeout).
            let next = q.execute_json_timeout("query-status", json!({}), Duration::from_secs(5)).await;
            prop_assert!(matches!(next, Err(QmpError::Closed { .. })), "{next:?}");
            prop_assert!(q.is_closed());
        } else {
            // Still usable: the next command gets its own reply.
            let next = q.execute_json_timeout("query-status", json!({}), Duration::from_secs(5)).await;
            prop_assert!(matches!(&next, Ok(v) if *v == json!({"second": true})), "{next:?}");
        }
        // Every event was kept, known or not.
        prop_assert_eq!(q.events().len(), events(&msgs));
        Ok(())
    })
}

/// Sends `greeting` at once; then, if `caps` is given and the client asks for
/// capabilities, sends it; then closes, or keeps the connection open and silent.
async fn greet(listener: tokio::net::UnixListener, greeting: Vec<Chunk>, caps: Option<Vec<Chunk>>, close: bool) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Ok((stream, _)) = listener.accept().await else { return };
    let (rd, mut wr) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(rd).lines();
    for bytes in render(&greeting, &json!(1)) {
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
    }
    if let Some(caps) = caps {
        let Some(id) = next_id(&mut lines).await else { return };
        for bytes in render(&caps, &id) {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
    if !close {
        while let Ok(Some(_)) = lines.next_line().await {}
    }
}

/// How `Qmp::connect` should end, from what the fake QEMU sends: `greeting` at once,
/// `caps` after a capabilities command, then the end of the stream if `close`.
fn handshake_outcome(greeting: &[u8], caps: Option<&[u8]>, close: bool) -> &'static str {
    // The server waits for a command after the greeting when it has a reply for it.
    let eof = close && caps.is_none();
    let (first, rest) = match greeting.iter().position(|&b| b == b'\n') {
        Some(n) => (&greeting[..n], &greeting[n + 1..]),
        None if eof && !greeting.is_empty() => (greeting, &[][..]),
        None if eof => return "closed",
        None => return "protocol",
    };
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let greeted = std::str::from_utf8(first).ok().and_then(|l| serde_json::from_str::<Value>(l).ok()).is_some_and(|v| v.get("QMP").is_some());
    if !greeted {
        return "protocol";
    }
    let rest = [rest, caps.unwrap_or_default()].concat();
    match answer(&messages(&rest, close), 1) {
        Some(Ok(_)) => "ok",
        Some(Err(_)) => "command",
        None if close => "closed",
        None => "timeout",
    }
}

fn check_handshake(greeting: Vec<Chunk>, caps: Option<Vec<Chunk>>, close: bool) -> Result<(), TestCaseError> {
    let want = handshake_outcome(&render(&greeting, &json!(1)).concat(), caps.as_ref().map(|c| render(c, &json!(1)).concat()).as_deref(), close);
    let no_caps = caps.is_none();
    let timeout = Duration::from_secs(1);
    runtime().block_on(async {
        let (_dir, path, listener) = listen();
        tokio::spawn(greet(listener, greeting, caps, close));
        let t0 = Instant::now();
        let got = Qmp::connect(&path, "fuzz", timeout).await;
        prop_assert!(t0.elapsed() <= timeout + Duration::from_secs(1), "connect took {:?}: {:?}", t0.elapsed(), got.as_ref().err());
        let outcome = match &got {
            Ok(_) => "ok",
            Err(QmpError::Closed { .. }) => "closed",
            Err(QmpError::Protocol { .. }) => "protocol",
            Err(QmpError::Timeout { .. }) => "timeout",
            Err(QmpError::Command { .. }) => "command",
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        // A reply sent before the command, by a server that then closed, may be read,
        // or the command may find the socket closed first: both are right.
        let early = close && no_caps && outcome == "closed" && matches!(want, "ok" | "command");
        prop_assert!(outcome == want || early, "expected {}, got {:?}", want, got.as_ref().err());
        if let Ok(q) = got {
            // Then it is a session like any other: a command gets an answer or an error.
            let t0 = Instant::now();
            let _ = q.execute_json_timeout("query-status", json!({}), Duration::from_millis(100)).await;
            prop_assert!(t0.elapsed() <= Duration::from_millis(1100), "took {:?}", t0.elapsed());
        }
        Ok(())
    })
}

/// A valid greeting first, most of the time: the capabilities step is reached.
fn greeting() -> impl Strategy<Value = Vec<Chunk>> {
    let valid = Chunk::Bytes(GREETING.to_vec());
    prop_oneof![
        3 => prop::collection::vec(chunk(), 0..3).prop_map(move |mut c| {
            c.insert(0, valid.clone());
            c
        }),
        1 => prop::collection::vec(chunk(), 0..3),
        1 => json_value().prop_map(|v| vec![Chunk::Json(v)]),
    ]
}

proptest! {
    #![proptest_config(config(48, 10_000))]

    #[test]
    fn a_misbehaving_qemu_never_hangs_the_client(chunks in prop::collection::vec(chunk(), 0..6), close in any::<bool>()) {
        check_misbehaving_qemu(chunks, close)?;
    }
}

proptest! {
    // Fewer cases: many wait out the second that connect gives a silent QEMU.
    #![proptest_config(config(24, 10_000))]

    #[test]
    fn a_bad_greeting_or_capabilities_reply_never_hangs_connect(
        greeting in greeting(),
        caps in prop::option::of(prop::collection::vec(chunk(), 0..4)),
        close in prop::bool::weighted(0.8),
    ) {
        check_handshake(greeting, caps, close)?;
    }
}

// ---------------------------------------------------------------------------------
// Command-line values and the guest's kernel command line

fn link_text() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        (0u64..100_000).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        select(&["", ".", "1.", ".5", "1.2.3", "-5", "1e9", "NaN", "inf", "00000000000000000000000001", "99999999999999999999999999999", "0.0000001"][..])
            .prop_map(String::from),
    ];
    let unit = select(&["bit", "bit/s", "bps", "b/s", "B/s", "iB/s", "kbit", "Mbit", "Gbit", "Tbit", "Pbit", "KiB/s", "MiB/s", "GiB/s", "TiB/s", "MB/s", "mB/s", "kib/s", "", " Mbit", "Mbit "][..]);
    prop_oneof![
        3 => (num, unit).prop_map(|(n, u)| format!("{n}{u}")),
        1 => select(&["unlimited", "UNLIMITED", " unlimited ", "unlimitedx"][..]).prop_map(String::from),
        2 => any::<String>(),
    ]
}

fn load_text() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        (0u64..2000).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        select(&["", "nan", "inf", "-1", "1e5", "100000.0001", "0.1", "0.09", "60000", "60001", "18446744073709551616", "x"][..]).prop_map(String::from),
    ];
    prop_oneof![
        3 => (select(&["open", "closed", "OPEN", "", "half"][..]), prop::collection::vec(part, 0..4)).prop_map(|(k, p)| {
            std::iter::once(k.to_string()).chain(p).collect::<Vec<_>>().join(":")
        }),
        1 => any::<String>(),
    ]
}

fn workload_text() -> impl Strategy<Value = String> {
    const KINDS: &[&str] = &["idle", "burn", "dhrystone", "livermore", "http", "cpu-duty", "linpack", "memdirty-write", "memdirty-read", "memdirty-x", "Idle", ""];
    let part = prop_oneof![
        (0u64..5000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        select(&["", "max", "short", "medium", "long", "huge", "-1", "+5", "4294967296", "0", "x"][..]).prop_map(String::from),
    ];
    prop_oneof![
        3 => (select(KINDS), prop::collection::vec(part, 0..4)).prop_map(|(k, p)| {
            std::iter::once(k.to_string()).chain(p).collect::<Vec<_>>().join(":")
        }),
        1 => any::<String>(),
    ]
}

/// A workload the guest accepts (as the harness writes them).
fn workload() -> impl Strategy<Value = Workload> {
    prop_oneof![
        Just(Workload::Idle),
        Just(Workload::Burn),
        Just(Workload::Dhrystone),
        prop::option::of(select(migbench_guest::livermore::Span::ALL.to_vec())).prop_map(|span| Workload::Livermore { span }),
        (1u32..=4096).prop_map(|store_mib| Workload::Http { store_mib }),
        (1u32..=100).prop_map(|percent| Workload::CpuDuty { percent }),
        (2u32..=4000).prop_map(|n| Workload::Linpack { n }),
        (1u32.., any::<bool>(), prop::option::of(1u32..)).prop_map(|(mib, write, rate_mib_s)| Workload::MemDirty {
            mib,
            mode: if write { DirtyMode::Write } else { DirtyMode::Read },
            rate_mib_s,
        }),
    ]
}

/// A kernel command line: ordinary words and `migbench.*` words with any value.
fn cmdline() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        2 => select(&["console=ttyS0", "quiet", "panic=-1", "migbench.", "migbench.hb_ms", "migbench.other=1", "=", ""][..]).prop_map(String::from),
        1 => (0u64..100).prop_map(|n| format!("migbench.hb_ms={n}")),
        1 => any::<String>().prop_map(|v| format!("migbench.hb_ms={v}")),
        2 => workload_text().prop_map(|v| format!("migbench.workload={v}")),
        1 => select(&["1.2.3.4/24", "198.18.0.2/15", "1.2.3.4", "1.2.3.4/33", "1.2.3/8", "256.1.1.1/8", "::1/64", "1.2.3.4/-1", "/"][..])
            .prop_map(|v| format!("migbench.ip={v}")),
        1 => any::<String>().prop_map(|v| format!("migbench.ip={v}")),
        1 => any::<String>(),
    ];
    prop::collection::vec(word, 0..8).prop_map(|w| w.join(" "))
}

/// `problem` names one of the `migbench.*` words of `cmdline`, or its value quoted.
fn names_a_word(problem: &str, cmdline: &str) -> bool {
    cmdline.split_whitespace().filter(|w| w.starts_with("migbench.")).any(|w| {
        problem.contains(w) || w.split_once('=').is_some_and(|(_, v)| problem.contains(&format!("{v:?}")))
    })
}

proptest! {
    #![proptest_config(config(1000, 5_000))]

    #[test]
    fn link_speeds_parse_or_name_the_input(s in link_text()) {
        match s.parse::<LinkSpeed>() {
            Ok(l) => {
                let again: LinkSpeed = l.to_string().parse().map_err(TestCaseError::fail)?;
                prop_assert_eq!(again.bytes_per_sec, l.bytes_per_sec);
                prop_assert!(l.max_bandwidth() > 0);
            }
            Err(e) => prop_assert!(e.contains(&format!("{s:?}")), "{e}"),
        }
    }

    #[test]
    fn load_modes_parse_or_name_the_input(s in load_text()) {
        match s.parse::<Mode>() {
            Ok(m) => prop_assert_eq!(m.to_string().parse::<Mode>(), Ok(m)),
            Err(e) => prop_assert!(e.contains(&format!("{s:?}")), "{e}"),
        }
    }

    #[test]
    fn workloads_parse_or_name_the_input(s in workload_text()) {
        match s.parse::<Workload>() {
            Ok(w) => prop_assert_eq!(w.to_string().parse::<Workload>(), Ok(w)),
            Err(e) => prop_assert!(e.contains(&format!("{s:?}")), "{e}"),
        }
    }

    #[test]
    fn shards_parse_or_name_the_input(s in prop_oneof!["[0-9 /-]{0,8}", any::<String>()]) {
        match s.parse::<Shard>() {
            Ok(sh) => prop_assert!(sh.index < sh.count),
            Err(e) => prop_assert!(e.contains(&format!("{s:?}")), "{e}"),
        }
    }

    #[test]
    fn kernel_command_lines_never_stop_the_guest(line in cmdline()) {
        let (orders, problems) = Orders::parse(&line);
        prop_assert!(orders.heartbeat_ms > 0);
        for p in &problems {
            prop_assert!(names_a_word(p, &line), "{p:?} names no word of {line:?}");
        }
    }

    #[test]
    fn orders_survive_the_command_line(
        heartbeat_ms in 1u64..,
        workload in workload(),
        ip in prop::option::of((any::<[u8; 4]>(), 0u8..=32)),
        test_orders in any::<bool>(),
        before in "[a-z=0-9 ]{0,20}",
    ) {
        let o = Orders { heartbeat_ms, workload, ip: ip.map(|(a, p)| (std::net::Ipv4Addr::from(a), p)), test_orders };
        let (back, problems) = Orders::parse(&format!("{before} {}", o.to_cmdline()));
        prop_assert!(problems.is_empty(), "{problems:?}");
        prop_assert_eq!(back, o);
    }
}
