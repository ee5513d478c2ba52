//! The settings a scenario needs on one QEMU: its strategy's row (capabilities,
//! knobs) and the scenario's link and downtime limit, turned into
//! `migrate-set-capabilities` and `migrate-set-parameters` arguments for what this
//! QEMU's schema offers. Kept apart from the table in `strategy.rs`, which the
//! scenario itself names, so that neither imports the other.

use super::scenario::{Compression, Scenario};
use super::strategy::{Knob, Strategy, StrategySpec, managed_capabilities};
use crate::qmp::Features;

/// The capability states a strategy needs on this QEMU, or why it cannot run here.
pub fn capability_plan(strategy: Strategy, features: &Features) -> Result<Vec<(&'static str, bool)>, String> {
    let StrategySpec { required, optional, .. } = strategy.spec();
    if let Some(missing) = required.iter().find(|c| !features.has_capability(c)) {
        return Err(format!("strategy {strategy} needs the migration capability {missing}, which this QEMU does not offer"));
    }
    let mut plan: Vec<(&'static str, bool)> = managed_capabilities()
        .into_iter()
        .filter(|c| features.has_capability(c))
        .map(|c| (c, required.contains(&c) || optional.contains(&c)))
        .collect();
    if features.has_capability("events") {
        plan.push(("events", true));
    }
    Ok(plan)
}

/// The `migrate-set-parameters` for each side, or why this QEMU cannot take them.
pub fn parameter_plan(
    scenario: &Scenario,
    features: &Features,
) -> Result<(qapi::qmp::MigrateSetParameters, qapi::qmp::MigrateSetParameters), String> {
    let need = |p: &str| {
        if features.has_parameter(p) { Ok(()) } else { Err(format!("this QEMU has no migration parameter {p} (needed by {})", scenario.strategy)) }
    };
    let t = &scenario.tuning;
    let mut src = qapi::qmp::MigrateSetParameters {
        max_bandwidth: Some(scenario.link.max_bandwidth()),
        downtime_limit: Some(scenario.downtime_limit_ms),
        ..Default::default()
    };
    let mut dst = qapi::qmp::MigrateSetParameters::default();
    for knob in scenario.strategy.spec().knobs {
        match knob {
            Knob::PostcopyBandwidth => {
                // 0 would mean "unlimited" in post-copy: keep the link's speed there too.
                if features.has_parameter("max-postcopy-bandwidth") {
                    src.max_postcopy_bandwidth = Some(scenario.link.max_bandwidth());
                }
            }
            Knob::CpuThrottle => {
                need("cpu-throttle-initial")?;
                need("cpu-throttle-increment")?;
                src.cpu_throttle_initial = Some(t.throttle_initial);
                src.cpu_throttle_increment = Some(t.throttle_increment);
            }
            Knob::XbzrleCache => {
                need("xbzrle-cache-size")?;
                src.xbzrle_cache_size = Some(t.xbzrle_cache_mib.saturating_mul(1024 * 1024));
            }
            Knob::Multifd => {
                need("multifd-channels")?;
                src.multifd_channels = Some(t.multifd_channels);
                dst.multifd_channels = Some(t.multifd_channels);
                if t.multifd_compression != Compression::None {
                    need("multifd-compression")?;
                    let name = serde_json::to_value(t.multifd_compression).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                    if !features.multifd_compressions.is_empty() && !features.multifd_compressions.contains(&name) {
                        return Err(format!(
                            "this QEMU was built without multifd compression {name} (it offers {})",
                            features.multifd_compressions.iter().cloned().collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
                if features.has_parameter("multifd-compression") {
                    src.multifd_compression = Some(t.multifd_compression.qapi());
                    dst.multifd_compression = Some(t.multifd_compression.qapi());
                }
            }
        }
    }
    Ok((src, dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(version: &str) -> Features {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/qmp-{version}/query-qmp-schema.json"));
        Features::from_schema(&serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }

    fn features_7_2() -> Features {
        features("7.2")
    }

    /// Both QEMUs the harness meets (Debian 12's 7.2, the default 10.0) run every
    /// strategy with its default tuning.
    #[test]
    fn every_strategy_has_a_plan_on_qemu_7_2_and_10_0() {
        for v in ["7.2", "10.0"] {
            let f = features(v);
            for s in Strategy::ALL {
                let plan = capability_plan(s, &f).unwrap_or_else(|e| panic!("{v} {s}: {e}"));
                for c in s.spec().required {
                    assert!(plan.contains(&(*c, true)), "{v} {s}: {plan:?}");
                }
                parameter_plan(&Scenario { strategy: s, ..Scenario::default() }, &f).unwrap_or_else(|e| panic!("{v} {s}: {e}"));
            }
        }
    }
    #[test]
    fn capability_plans_set_every_managed_capability_explicitly() {
        let f = features_7_2();
        let pre = capability_plan(Strategy::Precopy, &f).unwrap();
        assert!(pre.iter().all(|(c, on)| *c == "events" || !on), "{pre:?}");
        assert_eq!(pre.len(), managed_capabilities().len() + 1);
        let post = capability_plan(Strategy::Postcopy, &f).unwrap();
        assert!(post.contains(&("postcopy-ram", true)) && post.contains(&("postcopy-blocktime", true)) && post.contains(&("multifd", false)));
        assert!(capability_plan(Strategy::Multifd, &f).unwrap().contains(&("multifd", true)));
        let mut old = f.clone();
        old.capabilities.remove("multifd");
        let e = capability_plan(Strategy::Multifd, &old).unwrap_err();
        assert!(e.contains("multifd") && e.contains("does not offer"), "{e}");
        // A capability this QEMU lacks is not sent at all.
        assert!(!capability_plan(Strategy::Precopy, &old).unwrap().iter().any(|(c, _)| *c == "multifd"));
    }
    /// Post-copy preempt on both fixtures: both capabilities on, plain post-copy's
    /// parameters; a QEMU without `postcopy-preempt` cannot run it, and says so.
    #[test]
    fn postcopy_preempt_sets_both_capabilities_on_7_2_and_10_0() {
        for v in ["7.2", "10.0"] {
            let f = features(v);
            assert!(f.has_capability("postcopy-preempt"), "{v}");
            let plan = capability_plan(Strategy::PostcopyPreempt, &f).unwrap();
            for c in ["postcopy-ram", "postcopy-preempt", "postcopy-blocktime"] {
                assert!(plan.contains(&(c, true)), "{v}: {plan:?}");
            }
            assert!(plan.contains(&("multifd", false)), "{v}: {plan:?}");
            // Every other strategy turns preempt off explicitly (a reused guest keeps it).
            for s in Strategy::ALL.into_iter().filter(|s| *s != Strategy::PostcopyPreempt) {
                assert!(capability_plan(s, &f).unwrap().contains(&("postcopy-preempt", false)), "{v} {s}");
            }
            let sc = Scenario { strategy: Strategy::PostcopyPreempt, ..Scenario::default() };
            let (src, dst) = parameter_plan(&sc, &f).unwrap();
            assert_eq!(src.max_postcopy_bandwidth, Some(125_000_000), "{v}");
            assert_eq!(serde_json::to_value(&dst).unwrap(), serde_json::json!({}), "{v}");

            let mut old = f.clone();
            old.capabilities.remove("postcopy-preempt");
            let e = capability_plan(Strategy::PostcopyPreempt, &old).unwrap_err();
            assert!(e.contains("postcopy-preempt") && e.contains("does not offer"), "{v}: {e}");
            // Plain post-copy does not need it, and does not send what this QEMU lacks.
            assert!(!capability_plan(Strategy::Postcopy, &old).unwrap().iter().any(|(c, _)| *c == "postcopy-preempt"));
        }
    }

    /// What recovering a paused post-copy sends exists in both schemas.
    #[test]
    fn postcopy_recovery_commands_are_in_the_schema_of_7_2_and_10_0() {
        for v in ["7.2", "10.0"] {
            let f = features(v);
            for c in ["migrate-pause", "migrate-recover", "migrate"] {
                assert!(f.commands.contains(c), "{v}: {c}");
            }
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/qmp-{v}/query-qmp-schema.json"));
            let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let args_of = |cmd: &str| -> Vec<String> {
                let entries = schema.as_array().unwrap();
                let ty = entries.iter().find(|e| e["name"] == cmd).unwrap()["arg-type"].as_str().unwrap().to_string();
                let t = entries.iter().find(|e| e["name"] == ty.as_str()).unwrap();
                t["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect()
            };
            assert!(args_of("migrate").contains(&"resume".to_string()), "{v}");
            assert_eq!(args_of("migrate-recover"), ["uri"], "{v}");
            assert!(f.events.contains("MIGRATION"), "{v}");
        }
    }

    #[test]
    fn parameter_plans_per_strategy() {
        let f = features_7_2();
        let mut sc = Scenario { strategy: Strategy::Multifd, ..Scenario::default() };
        sc.tuning.multifd_compression = Compression::Zstd;
        sc.tuning.multifd_channels = 4;
        let (src, dst) = parameter_plan(&sc, &f).unwrap();
        let (src, dst) = (serde_json::to_value(&src).unwrap(), serde_json::to_value(&dst).unwrap());
        assert_eq!(src["multifd-channels"], 4);
        assert_eq!(dst["multifd-compression"], "zstd");
        assert_eq!(src["max-bandwidth"], 125_000_000);
        assert!(dst.get("max-bandwidth").is_none());
        let (src, _) = parameter_plan(&Scenario { strategy: Strategy::Postcopy, ..Scenario::default() }, &f).unwrap();
        assert_eq!(src.max_postcopy_bandwidth, Some(125_000_000));
        let (src, _) = parameter_plan(&Scenario { strategy: Strategy::Xbzrle, ..Scenario::default() }, &f).unwrap();
        assert_eq!(src.xbzrle_cache_size, Some(64 << 20));
        let mut bare = f.clone();
        bare.parameters.remove("xbzrle-cache-size");
        let e = parameter_plan(&Scenario { strategy: Strategy::Xbzrle, ..Scenario::default() }, &bare).unwrap_err();
        assert!(e.contains("xbzrle-cache-size"), "{e}");
    }
}
