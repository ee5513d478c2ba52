//! The settings a scenario needs on one QEMU: its strategy's row (capabilities,
//! knobs) and the scenario's link and downtime limit, turned into
//! `migrate-set-capabilities` and `migrate-set-parameters` arguments for what this
//! QEMU's schema offers. Kept apart from the table in `strategy.rs`, which the
//! scenario itself names, so that neither imports the other.

use super::scenario::{Compression, Scenario};
use super::strategy::{Knob, Strategy, StrategySpec, managed_capabilities};
use crate::machine::hardware::Accel;
use crate::qmp::Features;

/// Whether the accelerator can do what the strategy needs, where this QEMU has the
/// strategy at all (a QEMU without it is refused by [`capability_plan`], naming the
/// QEMU). Only KVM has a dirty ring; under KVM, QEMU itself refuses `dirty-limit`
/// without `dirty-ring-size`, in its own words.
pub fn accelerator_plan(strategy: Strategy, accel: Accel, features: &Features) -> Result<(), String> {
    let offered = strategy.spec().required.iter().all(|c| features.has_capability(c));
    if strategy.needs_dirty_ring() && offered && accel != Accel::Kvm {
        let name = accel.to_string().to_uppercase();
        return Err(format!(
            "unsupported under {name}: strategy {strategy} needs KVM's dirty ring (-accel kvm,dirty-ring-size=N) and {name} has none"
        ));
    }
    Ok(())
}

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
    if let Some(speed) = &t.avail_switchover_bandwidth {
        if !features.has_parameter("avail-switchover-bandwidth") {
            return Err(format!(
                "avail_switchover_bandwidth = {speed}: this QEMU has no migration parameter avail-switchover-bandwidth (it came in QEMU 8.2)"
            ));
        }
        src.avail_switchover_bandwidth = Some(speed.max_bandwidth());
    }
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
            Knob::DirtyLimit => {
                need("vcpu-dirty-limit")?;
                src.vcpu_dirty_limit = Some(t.vcpu_dirty_limit_mb_s);
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

    /// The strategies of QEMU 8–10 that 7.2's schema lacks.
    const NEWER_THAN_7_2: [Strategy; 3] = [Strategy::MappedRam, Strategy::MappedRamMultifd, Strategy::DirtyLimit];

    /// Both QEMUs the harness meets (Debian 12's 7.2, the default 10.0) run every
    /// strategy with its default tuning, but those 7.2 does not have.
    #[test]
    fn every_strategy_has_a_plan_on_qemu_7_2_and_10_0() {
        for v in ["7.2", "10.0"] {
            let f = features(v);
            for s in Strategy::ALL {
                if v == "7.2" && NEWER_THAN_7_2.contains(&s) {
                    let e = capability_plan(s, &f).unwrap_err();
                    assert!(e.contains("which this QEMU does not offer"), "{s}: {e}");
                    continue;
                }
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
        assert_eq!(pre.len(), managed_capabilities().len() + 1 - 2, "all but mapped-ram and dirty-limit, which 7.2 lacks");
        assert_eq!(capability_plan(Strategy::Precopy, &features("10.0")).unwrap().len(), managed_capabilities().len() + 1);
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

    #[test]
    fn mapped_ram_is_planned_on_10_0_and_unsupported_on_7_2() {
        let (old, new) = (features("7.2"), features("10.0"));
        for s in [Strategy::MappedRam, Strategy::MappedRamMultifd] {
            assert!(s.saves_to_file(), "{s}");
            let e = capability_plan(s, &old).unwrap_err();
            assert!(e.contains("mapped-ram") && e.contains("does not offer"), "{s}: {e}");
            let plan = capability_plan(s, &new).unwrap();
            assert!(plan.contains(&("mapped-ram", true)), "{s}: {plan:?}");
            assert_eq!(plan.contains(&("multifd", true)), s == Strategy::MappedRamMultifd, "{s}: {plan:?}");
        }
        // Every other strategy turns mapped-ram off explicitly (a reused guest may have had it on).
        assert!(capability_plan(Strategy::Precopy, &new).unwrap().contains(&("mapped-ram", false)));
        let mut sc = Scenario { strategy: Strategy::MappedRamMultifd, ..Scenario::default() };
        sc.tuning.multifd_channels = 4;
        let (src, dst) = parameter_plan(&sc, &new).unwrap();
        assert_eq!((src.multifd_channels, dst.multifd_channels), (Some(4), Some(4)));
        assert!(!Strategy::Multifd.saves_to_file() && !Strategy::Precopy.saves_to_file());
        // A file has no transport to choose.
        let e = Scenario { strategy: Strategy::MappedRam, transport: crate::migration::scenario::Transport::Tcp, ..Scenario::default() }.validate().unwrap_err();
        assert!(e.contains("saves to a file") && e.contains("leave transport unset"), "{e}");
    }

    #[test]
    fn avail_switchover_bandwidth_is_set_on_10_0_and_unsupported_on_7_2() {
        let mut sc = Scenario::default();
        sc.tuning.avail_switchover_bandwidth = Some("100Mbit".parse().unwrap());
        let (src, dst) = parameter_plan(&sc, &features("10.0")).unwrap();
        assert_eq!((src.avail_switchover_bandwidth, dst.avail_switchover_bandwidth), (Some(12_500_000), None));
        assert_eq!(serde_json::to_value(&src).unwrap()["avail-switchover-bandwidth"], 12_500_000);
        let e = parameter_plan(&sc, &features("7.2")).unwrap_err();
        assert!(e.starts_with("avail_switchover_bandwidth = 100Mbit: this QEMU has no migration parameter avail-switchover-bandwidth"), "{e}");
        // Unset, it is not sent at all: QEMU keeps its own estimate.
        let (src, _) = parameter_plan(&Scenario::default(), &features("7.2")).unwrap();
        assert_eq!(src.avail_switchover_bandwidth, None);
        let json = serde_json::to_value(&Scenario::default()).unwrap();
        assert!(json["tuning"].get("avail_switchover_bandwidth").is_none(), "older records' scenarios stay as they were");
    }

    #[test]
    fn dirty_limit_needs_qemu_8_1_and_kvm_dirty_ring() {
        let (old, new) = (features("7.2"), features("10.0"));
        let s = Strategy::DirtyLimit;
        assert!(capability_plan(s, &old).unwrap_err().contains("dirty-limit"));
        assert!(capability_plan(s, &new).unwrap().contains(&("dirty-limit", true)));
        let mut sc = Scenario { strategy: s, ..Scenario::default() };
        sc.tuning.vcpu_dirty_limit_mb_s = 20;
        assert_eq!(parameter_plan(&sc, &new).unwrap().0.vcpu_dirty_limit, Some(20));
        // Under TCG: unsupported, naming the accelerator; under KVM QEMU decides.
        let e = accelerator_plan(s, Accel::Tcg, &new).unwrap_err();
        assert!(e.starts_with("unsupported under TCG: strategy dirty-limit needs KVM's dirty ring"), "{e}");
        assert!(accelerator_plan(s, Accel::Kvm, &new).is_ok());
        // On 7.2 the schema decides first (the QEMU is named by the caller).
        assert!(accelerator_plan(s, Accel::Tcg, &old).is_ok());
        for other in Strategy::ALL.into_iter().filter(|x| *x != s) {
            assert!(accelerator_plan(other, Accel::Tcg, &new).is_ok(), "{other}");
        }
        sc.tuning.vcpu_dirty_limit_mb_s = 0;
        assert!(sc.validate().unwrap_err().contains("--vcpu-dirty-limit 0"));
    }
}
