//! The settings a scenario needs on one QEMU: its strategy's row (capabilities,
//! knobs) and the scenario's link and downtime limit, turned into
//! `migrate-set-capabilities` and `migrate-set-parameters` arguments for what this
//! QEMU's schema offers. Kept apart from the table in `strategy.rs`, which the
//! scenario itself names, so that neither imports the other.

use super::scenario::{Compression, Scenario};
use super::tls::{TLS_CREDS_ID, hostname};
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
    } else if features.has_parameter("avail-switchover-bandwidth") {
        // 0 is QEMU's own "estimate it from the passes": set explicitly, so that a
        // reused guest never carries an earlier run's value.
        src.avail_switchover_bandwidth = Some(0);
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
    if let Some(z) = t.zero_page_detection {
        // Only the sender looks for zero pages; the receiver takes whatever comes.
        if !features.has_parameter("zero-page-detection") {
            return Err(format!("zero_page_detection = {z} needs the migration parameter zero-page-detection (QEMU 9.0+), which this QEMU does not have"));
        }
        src.zero_page_detection = Some(z.qapi());
    }
    tls_parameters(scenario, features, &mut src, &mut dst)?;
    Ok((src, dst))
}

/// `tls-creds` and `tls-hostname` on both sides: the run's credentials when the
/// scenario asks for TLS, and explicitly none otherwise (a reused guest's QEMU keeps
/// what an earlier run set).
fn tls_parameters(
    scenario: &Scenario,
    features: &Features,
    src: &mut qapi::qmp::MigrateSetParameters,
    dst: &mut qapi::qmp::MigrateSetParameters,
) -> Result<(), String> {
    let offered = features.has_parameter("tls-creds") && features.has_parameter("tls-hostname");
    if !offered {
        return if scenario.tls { Err("tls = true needs the migration parameters tls-creds and tls-hostname, which this QEMU does not have".into()) } else { Ok(()) };
    }
    let (creds, host) = if scenario.tls { (TLS_CREDS_ID, hostname(scenario.transport)) } else { ("", "") };
    for side in [src, dst] {
        side.tls_creds = Some(qapi::qmp::StrOrNull::s(creds.into()));
        side.tls_hostname = Some(qapi::qmp::StrOrNull::s(host.into()));
    }
    Ok(())
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
            // (Those this QEMU can run: mapped-ram and dirty-limit are not in 7.2.)
            for s in Strategy::ALL.into_iter().filter(|s| *s != Strategy::PostcopyPreempt) {
                if let Ok(plan) = capability_plan(s, &f) {
                    assert!(plan.contains(&("postcopy-preempt", false)), "{v} {s}");
                }
            }
            let sc = Scenario { strategy: Strategy::PostcopyPreempt, ..Scenario::default() };
            let (src, dst) = parameter_plan(&sc, &f).unwrap();
            assert_eq!(src.max_postcopy_bandwidth, Some(125_000_000), "{v}");
            // The destination gets only what every run sets there (TLS off).
            assert_eq!(serde_json::to_value(&dst).unwrap(), serde_json::json!({"tls-creds": "", "tls-hostname": ""}), "{v}");

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
        // Unset: QEMU's own estimate (0), set explicitly where the parameter exists,
        // so a reused guest does not keep an earlier run's value; 7.2 is sent nothing.
        let (src, _) = parameter_plan(&Scenario::default(), &features("7.2")).unwrap();
        assert_eq!(src.avail_switchover_bandwidth, None);
        let (src, _) = parameter_plan(&Scenario::default(), &features("10.0")).unwrap();
        assert_eq!(src.avail_switchover_bandwidth, Some(0));
        let json = serde_json::to_value(Scenario::default()).unwrap();
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

    #[test]
        fn zero_page_detection_is_set_on_10_0_and_unsupported_on_7_2() {
        use crate::migration::scenario::ZeroPageDetection;
        for z in [ZeroPageDetection::None, ZeroPageDetection::Legacy, ZeroPageDetection::Multifd] {
            for s in [Strategy::Multifd, Strategy::MultifdZeroCopy] {
                let mut sc = Scenario { strategy: s, ..Scenario::default() };
                sc.tuning.zero_page_detection = Some(z);
                let (src, dst) = parameter_plan(&sc, &features("10.0")).unwrap();
                let (src, dst) = (serde_json::to_value(&src).unwrap(), serde_json::to_value(&dst).unwrap());
                assert_eq!(src["zero-page-detection"], z.name(), "{s}");
                assert!(dst.get("zero-page-detection").is_none(), "only the sender looks for zero pages: {dst}");
                let e = parameter_plan(&sc, &features_7_2()).unwrap_err();
                assert!(e.contains(&format!("zero_page_detection = {z}")) && e.contains("zero-page-detection (QEMU 9.0+)") && e.contains("does not have"), "{e}");
            }
        }
        // Not set: QEMU's own default, nothing sent, on either QEMU.
        for v in ["7.2", "10.0"] {
            let (src, _) = parameter_plan(&Scenario { strategy: Strategy::Multifd, ..Scenario::default() }, &features(v)).unwrap();
            assert!(src.zero_page_detection.is_none(), "{v}");
        }
    }

    #[test]
    fn multifd_channels_and_compressions_on_both_qemus_and_a_build_without_one() {
        for v in ["7.2", "10.0"] {
            let f = features(v);
            for channels in [1, 2, 4, 8] {
                for c in [Compression::None, Compression::Zlib, Compression::Zstd] {
                    let mut sc = Scenario { strategy: Strategy::Multifd, ..Scenario::default() };
                    sc.tuning.multifd_channels = channels;
                    sc.tuning.multifd_compression = c;
                    let (src, dst) = parameter_plan(&sc, &f).unwrap_or_else(|e| panic!("{v} {channels} {c:?}: {e}"));
                    for side in [serde_json::to_value(&src).unwrap(), serde_json::to_value(&dst).unwrap()] {
                        assert_eq!((side["multifd-channels"].as_u64(), side["multifd-compression"].as_str()), (Some(channels as u64), Some(c.name())), "{v}");
                    }
                }
            }
            // A build without zstd (or zlib) offers fewer values: the run is unsupported, naming what it offers.
            for (missing, c) in [("zstd", Compression::Zstd), ("zlib", Compression::Zlib)] {
                let mut without = f.clone();
                without.multifd_compressions.remove(missing);
                let mut sc = Scenario { strategy: Strategy::Multifd, ..Scenario::default() };
                sc.tuning.multifd_compression = c;
                let e = parameter_plan(&sc, &without).unwrap_err();
                assert!(e.contains(&format!("built without multifd compression {missing}")) && e.contains("it offers") && e.contains("none"), "{v}: {e}");
                sc.tuning.multifd_compression = Compression::None;
                assert!(parameter_plan(&sc, &without).is_ok(), "{v}: no compression needs none of them");
            }
        }
    }

    #[test]
    fn zero_copy_send_is_planned_on_both_qemus_and_unsupported_without_the_capability() {
        for v in ["7.2", "10.0"] {
            let f = features(v);
            let plan = capability_plan(Strategy::MultifdZeroCopy, &f).unwrap();
            assert!(plan.contains(&("multifd", true)) && plan.contains(&("zero-copy-send", true)), "{v}: {plan:?}");
            // Every other strategy turns it off explicitly.
            assert!(capability_plan(Strategy::Multifd, &f).unwrap().contains(&("zero-copy-send", false)), "{v}");
            let sc = Scenario { strategy: Strategy::MultifdZeroCopy, transport: crate::migration::scenario::Transport::Tcp, ..Scenario::default() };
            let (src, _) = parameter_plan(&sc, &f).unwrap();
            assert_eq!(serde_json::to_value(&src).unwrap()["multifd-compression"], "none", "{v}");
            let mut other_os = f.clone();
            other_os.capabilities.remove("zero-copy-send");
            let e = capability_plan(Strategy::MultifdZeroCopy, &other_os).unwrap_err();
            assert!(e.contains("zero-copy-send") && e.contains("does not offer"), "{e}");
        }
    }

    #[test]
    fn tls_points_both_sides_at_the_runs_credentials_and_is_off_otherwise() {
        use crate::migration::scenario::Transport;
        for v in ["7.2", "10.0"] {
            let f = features(v);
            for s in [Strategy::Precopy, Strategy::Multifd, Strategy::Postcopy] {
                for (transport, host) in [(Transport::Tcp, "127.0.0.1"), (Transport::Unix, "localhost")] {
                    let sc = Scenario { strategy: s, transport, tls: true, ..Scenario::default() };
                    let (src, dst) = parameter_plan(&sc, &f).unwrap_or_else(|e| panic!("{v} {s}: {e}"));
                    for side in [serde_json::to_value(&src).unwrap(), serde_json::to_value(&dst).unwrap()] {
                        assert_eq!((side["tls-creds"].as_str(), side["tls-hostname"].as_str()), (Some("migbench-tls"), Some(host)), "{v} {s}");
                    }
                }
                let (src, dst) = parameter_plan(&Scenario { strategy: s, ..Scenario::default() }, &f).unwrap();
                for side in [serde_json::to_value(&src).unwrap(), serde_json::to_value(&dst).unwrap()] {
                    assert_eq!((side["tls-creds"].as_str(), side["tls-hostname"].as_str()), (Some(""), Some("")), "{v} {s}: off, explicitly");
                }
            }
            let mut bare = f.clone();
            bare.parameters.remove("tls-creds");
            let e = parameter_plan(&Scenario { tls: true, ..Scenario::default() }, &bare).unwrap_err();
            assert!(e.contains("tls = true") && e.contains("tls-creds"), "{e}");
            assert!(parameter_plan(&Scenario::default(), &bare).is_ok(), "no TLS asked, none needed");
        }
    }
}
