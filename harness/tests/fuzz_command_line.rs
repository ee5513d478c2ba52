//! Command-line values, and the guest's kernel command line, parse or name the
//! input. How the cases run: `common/fuzz.rs`.

mod common;

use common::fuzz::config;
use migbench::experiment::profile::Shard;
use migbench::load::spec::Mode;
use migbench::migration::scenario::LinkSpeed;
use migbench_guest::orders::{DirtyMode, Orders, Workload};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

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
        1 => select(&["52:54:00:12:00:02", "53:54:00:12:00:02", "52:54:00:12:00", "52:54:00:12:00:02:03", "52-54-00-12-00-02", "5:54:00:12:00:002", ""][..])
            .prop_map(|v| format!("migbench.mac={v}")),
        1 => any::<String>().prop_map(|v| format!("migbench.mac={v}")),
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
        mac in prop::option::of(any::<[u8; 6]>().prop_map(|mut m| { m[0] &= 0xfe; m })),
        test_orders in any::<bool>(),
        park in any::<bool>(),
        before in "[a-z=0-9 ]{0,20}",
    ) {
        let o = Orders { heartbeat_ms, workload, ip: ip.map(|(a, p)| (std::net::Ipv4Addr::from(a), p)), mac, test_orders, park };
        let (back, problems) = Orders::parse(&format!("{before} {}", o.to_cmdline()));
        prop_assert!(problems.is_empty(), "{problems:?}");
        prop_assert_eq!(&back, &o);
        // The same words as a parked guest's ORDERS line (which never parks it again).
        let (sent, problems) = Orders::from_line(&o.to_line()).expect("an ORDERS line");
        prop_assert!(problems.is_empty(), "{problems:?}");
        prop_assert_eq!(sent, Orders { park: false, ..o });
    }
}
