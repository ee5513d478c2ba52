//! Profiles (mutations of the shipped ones, and arbitrary text) parse or say why.
//! How the cases run: `common/fuzz.rs`.

mod common;

use common::fuzz::config;
use migbench::experiment::profile::{Profile, Shard, VARIABLES};
use migbench::machine::command::kernel_cmdline;
use migbench::machine::hardware::Accel;
use migbench::rank::cluster::ClusterProfile;
use migbench_guest::orders::Orders;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use std::time::Duration;

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
        "name", "description", "repetitions", "warmup_s", "before_s", "after_s", "dirty_rate_s", "dirty_rate_mode", "reproduces", "defaults", "matrix",
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
        "strategy" => words(&["precopy", "postcopy", "hybrid", "auto-converge", "xbzrle", "multifd", "mapped-ram", "mapped-ram-multifd", "dirty-limit", "multifd-zero-copy", "postcopy-preempt"]),
        "link" => words(&["100Mbit", "1Gbit", "10Gbit", "2.5Gbit", "50MiB/s", "unlimited", "0Mbit", "9Tbit"]),
        "transport" => words(&["unix", "tcp"]),
        "downtime_limit_ms" => ints(0, 3_000_000),
        "timeout_s" | "hybrid_after_s" => floats(1e6),
        "hybrid_passes" => ints(0, 10),
        "throttle_initial" | "throttle_increment" => ints(0, 120),
        "xbzrle_cache_mib" => ints(0, 2048),
        "multifd_channels" => ints(0, 16),
        "multifd_compression" => words(&["none", "zlib", "zstd"]),
        "zero_page_detection" => words(&["none", "legacy", "multifd", "auto"]),
        "tls" => select(&["true", "false", "1"][..]).prop_map(String::from).boxed(),
        "cap_percent" => ints(0, 400),
        "host_cores" => ints(0, 4),
        "balloon_mib" => ints(0, 2048),
        "load" => words(&["open:100", "open:0.05", "open:1e6", "closed:1", "closed:4:10", "closed:2000", "closed:1:60001"]),
        "connection" => words(&["keep-alive", "per-request"]),
        "requests" => ints(0, 100_000),
        "dynamic_percent" => ints(0, 150),
        "request_timeout_ms" => ints(0, 700_000),
        "probe_hz" => ints(0, 200_000),
        "avail_switchover_bandwidth" => words(&["100Mbit", "1Gbit", "unlimited", "0Mbit", "fast"]),
        "vcpu_dirty_limit_mb_s" => ints(0, 1000),
        "qemu" | "qemu_dest" => words(&["7.2", "10.0", "10", "system", "/opt/qemu/bin/qemu-system-x86_64", "latest", "1.2.3.4", ""]),
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
