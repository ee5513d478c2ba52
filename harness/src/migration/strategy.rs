//! The migration strategies: which of QEMU's mechanisms moves the memory, the
//! capabilities and parameters each needs.

use super::scenario::{Compression, Scenario};
use crate::qmp::Features;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The migration strategy: which of QEMU's mechanisms moves the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Iterative pre-copy (QEMU's default).
    #[default]
    Precopy,
    /// `postcopy-ram`, switched to post-copy at once.
    Postcopy,
    /// Pre-copy for `hybrid_passes` passes (or `hybrid_after_s`), then `migrate-start-postcopy`.
    Hybrid,
    /// Pre-copy with `auto-converge` CPU throttling.
    AutoConverge,
    /// Pre-copy with XBZRLE delta compression of re-sent pages.
    Xbzrle,
    /// Pre-copy over several channels (`multifd`), optionally compressed.
    Multifd,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Precopy => "precopy",
            Strategy::Postcopy => "postcopy",
            Strategy::Hybrid => "hybrid",
            Strategy::AutoConverge => "auto-converge",
            Strategy::Xbzrle => "xbzrle",
            Strategy::Multifd => "multifd",
        })
    }
}

/// Capabilities migbench manages: each is set on or off explicitly before every
/// migration (a reused guest keeps what an earlier run set).
const MANAGED_CAPABILITIES: &[&str] = &["postcopy-ram", "postcopy-blocktime", "auto-converge", "xbzrle", "multifd"];

/// The capability states a strategy needs on this QEMU, or why it cannot run here.
pub fn capability_plan(strategy: Strategy, features: &Features) -> Result<Vec<(&'static str, bool)>, String> {
    let (required, optional): (&[&str], &[&str]) = match strategy {
        Strategy::Precopy => (&[], &[]),
        Strategy::Postcopy | Strategy::Hybrid => (&["postcopy-ram"], &["postcopy-blocktime"]),
        Strategy::AutoConverge => (&["auto-converge"], &[]),
        Strategy::Xbzrle => (&["xbzrle"], &[]),
        Strategy::Multifd => (&["multifd"], &[]),
    };
    if let Some(missing) = required.iter().find(|c| !features.has_capability(c)) {
        return Err(format!("strategy {strategy} needs the migration capability {missing}, which this QEMU does not offer"));
    }
    let mut plan: Vec<(&'static str, bool)> = MANAGED_CAPABILITIES
        .iter()
        .filter(|c| features.has_capability(c))
        .map(|c| (*c, required.contains(c) || optional.contains(c)))
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
    match scenario.strategy {
        Strategy::Precopy => {}
        Strategy::Postcopy | Strategy::Hybrid => {
            // 0 would mean "unlimited" in post-copy: keep the link's speed there too.
            if features.has_parameter("max-postcopy-bandwidth") {
                src.max_postcopy_bandwidth = Some(scenario.link.max_bandwidth());
            }
        }
        Strategy::AutoConverge => {
            need("cpu-throttle-initial")?;
            need("cpu-throttle-increment")?;
            src.cpu_throttle_initial = Some(t.throttle_initial);
            src.cpu_throttle_increment = Some(t.throttle_increment);
        }
        Strategy::Xbzrle => {
            need("xbzrle-cache-size")?;
            src.xbzrle_cache_size = Some(t.xbzrle_cache_mib.saturating_mul(1024 * 1024));
        }
        Strategy::Multifd => {
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
    Ok((src, dst))
}


#[cfg(test)]
mod tests {
    use super::*;


    fn features_7_2() -> Features {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qmp-7.2/query-qmp-schema.json");
        Features::from_schema(&serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }

    #[test]
    fn capability_plans_set_every_managed_capability_explicitly() {
        let f = features_7_2();
        let pre = capability_plan(Strategy::Precopy, &f).unwrap();
        assert!(pre.iter().all(|(c, on)| *c == "events" || !on), "{pre:?}");
        assert_eq!(pre.len(), MANAGED_CAPABILITIES.len() + 1);
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

}
