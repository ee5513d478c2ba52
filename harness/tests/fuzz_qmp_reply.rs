//! QMP replies and schemas, as values, are read leniently and never panic.
//! How the cases run: `common/fuzz.rs`.

mod common;

use common::fuzz::{QMP_KEYS, QMP_WORDS, config, json_value};
use migbench::migration::scenario::Scenario;
use migbench::migration::settings::{capability_plan, parameter_plan};
use migbench::qmp::{Features, MigrationInfo};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

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
    for strategy in migbench::migration::strategy::Strategy::ALL {
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
