//! Cluster states for `balance --dry-run --state` are decided on, or refused naming
//! what is wrong. How the cases run: `common/fuzz.rs`.

mod common;

use common::fuzz::{config, json_value};
use migbench::rank::balance::{self, ClusterState, Options, Rule};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

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
