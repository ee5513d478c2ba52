//! The migration strategies, one row each in [`Strategy::spec`]: what a strategy
//! is called, the capabilities and parameters it needs, when it switches to
//! post-copy, which cost model predicts it and what proves it took effect. The
//! rest of the harness asks the row, so adding a strategy is its variant and its
//! row; a mechanism no row has yet (a new [`Knob`], [`PostcopySwitch`], [`Proof`]
//! or [`CostModel`]) is a new variant there, and the compiler points at the
//! exhaustive `match` that must learn it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The migration strategy: which of QEMU's mechanisms moves the memory. Each is
/// described by its row in [`Strategy::spec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    #[default]
    Precopy,
    Postcopy,
    Hybrid,
    AutoConverge,
    Xbzrle,
    Multifd,
    MappedRam,
    MappedRamMultifd,
    DirtyLimit,
    MultifdZeroCopy,
    PostcopyPreempt,
}

/// Everything the harness does differently for one strategy.
#[derive(Debug)]
pub struct StrategySpec {
    /// As written in profiles, records and on the command line.
    pub name: &'static str,
    /// One line, for `--help`.
    pub summary: &'static str,
    /// Capabilities turned on; a QEMU without one of them cannot run the strategy.
    pub required: &'static [&'static str],
    /// Capabilities turned on where this QEMU offers them.
    pub optional: &'static [&'static str],
    /// The migration parameters set from the scenario's `Tuning`, beyond
    /// `max-bandwidth` and `downtime-limit`, which every strategy sets.
    pub knobs: &'static [Knob],
    pub postcopy: PostcopySwitch,
    /// The models know no throttling, compression or channels and no mix of
    /// pre- and post-copy (see `rank::predict`), so such a strategy names the
    /// nearest of them.
    pub cost_model: CostModel,
    /// What QEMU must show for a run to count as this strategy (judged in
    /// `migration::evidence`).
    pub proof: Proof,
    /// The pages are sent straight from guest memory (`zero-copy-send`): QEMU
    /// needs the guest's memory locked (`-overcommit mem-lock=on`), TCP, and
    /// neither compression nor TLS.
    pub zero_copy: bool,
}

/// A group of migration parameters set from the scenario's `Tuning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// `max-postcopy-bandwidth` = the link, where QEMU has it.
    PostcopyBandwidth,
    /// `cpu-throttle-initial` and `cpu-throttle-increment`.
    CpuThrottle,
    /// `xbzrle-cache-size`.
    XbzrleCache,
    /// `multifd-channels` and `multifd-compression`, on both sides.
    Multifd,
    /// `vcpu-dirty-limit` (MB/s per vCPU).
    DirtyLimit,
}

/// When the driver sends `migrate-start-postcopy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostcopySwitch {
    Never,
    /// Right after `migrate`.
    AtOnce,
    /// After `hybrid_passes` complete pre-copy passes, or `hybrid_after_s` if sooner.
    AfterPasses,
}

/// Which of `rank::predict`'s models predicts a strategy's cost. Its name is the
/// `strategy` of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostModel {
    Precopy,
    Postcopy,
}

impl CostModel {
    pub fn name(self) -> &'static str {
        match self {
            CostModel::Precopy => "precopy",
            CostModel::Postcopy => "postcopy",
        }
    }
}

/// What QEMU shows when a strategy took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Nothing to engage: QEMU's default.
    Nothing,
    /// `postcopy-active`, in a `query-migrate` sample or a `MIGRATION` event.
    PostcopyEntered,
    /// A page sent as an XBZRLE delta (or tried: an overflow).
    XbzrleDeltas,
    /// `cpu-throttle-percentage` above 0.
    Throttled,
    /// The channels read back, and bytes through them where QEMU counts them.
    MultifdChannels,
    /// The state saved to a file (`mapped-ram` read back on both sides, the file
    /// there with its size) and restored from it by the destination.
    SavedToFile,
    /// `dirty-limit-throttle-time-per-round` above 0: QEMU held the vCPUs to the limit.
    DirtyLimited,
    /// As `MultifdChannels`, and `zero-copy-send` read back on in the source.
    ZeroCopySent,
    /// Post-copy entered, and `postcopy-preempt` read back on on both sides (the
    /// page requests then have their own channel).
    PostcopyPreempt,
}

impl Strategy {
    /// Every strategy, in declaration order (a new variant goes last, here too).
    pub const ALL: [Strategy; 11] = [
        Strategy::Precopy,
        Strategy::Postcopy,
        Strategy::Hybrid,
        Strategy::AutoConverge,
        Strategy::Xbzrle,
        Strategy::Multifd,
        Strategy::MappedRam,
        Strategy::MappedRamMultifd,
        Strategy::DirtyLimit,
        Strategy::MultifdZeroCopy,
        Strategy::PostcopyPreempt,
    ];

    /// This strategy's row.
    pub const fn spec(self) -> &'static StrategySpec {
        match self {
            Strategy::Precopy => &StrategySpec {
                name: "precopy",
                summary: "Iterative pre-copy (QEMU's default)",
                required: &[],
                optional: &[],
                knobs: &[],
                postcopy: PostcopySwitch::Never,
                cost_model: CostModel::Precopy,
                proof: Proof::Nothing,
                zero_copy: false,
            },
            Strategy::Postcopy => &StrategySpec {
                name: "postcopy",
                summary: "`postcopy-ram`, switched to post-copy at once",
                required: &["postcopy-ram"],
                optional: &["postcopy-blocktime"],
                knobs: &[Knob::PostcopyBandwidth],
                postcopy: PostcopySwitch::AtOnce,
                cost_model: CostModel::Postcopy,
                proof: Proof::PostcopyEntered,
                zero_copy: false,
            },
            Strategy::Hybrid => &StrategySpec {
                name: "hybrid",
                summary: "Pre-copy for `hybrid_passes` passes (or `hybrid_after_s`), then `migrate-start-postcopy`",
                required: &["postcopy-ram"],
                optional: &["postcopy-blocktime"],
                knobs: &[Knob::PostcopyBandwidth],
                postcopy: PostcopySwitch::AfterPasses,
                cost_model: CostModel::Postcopy,
                proof: Proof::PostcopyEntered,
                zero_copy: false,
            },
            Strategy::AutoConverge => &StrategySpec {
                name: "auto-converge",
                summary: "Pre-copy with `auto-converge` CPU throttling",
                required: &["auto-converge"],
                optional: &[],
                knobs: &[Knob::CpuThrottle],
                postcopy: PostcopySwitch::Never,
                cost_model: CostModel::Precopy,
                proof: Proof::Throttled,
                zero_copy: false,
            },
            Strategy::Xbzrle => &StrategySpec {
                name: "xbzrle",
                summary: "Pre-copy with XBZRLE delta compression of re-sent pages",
                required: &["xbzrle"],
                optional: &[],
                knobs: &[Knob::XbzrleCache],
                postcopy: PostcopySwitch::Never,
                cost_model: CostModel::Precopy,
                proof: Proof::XbzrleDeltas,
                zero_copy: false,
            },
            Strategy::Multifd => &StrategySpec {
                name: "multifd",
                summary: "Pre-copy over several channels (`multifd`), optionally compressed",
                required: &["multifd"],
                optional: &[],
                knobs: &[Knob::Multifd],
                postcopy: PostcopySwitch::Never,
                cost_model: CostModel::Precopy,
                proof: Proof::MultifdChannels,
                zero_copy: false,
            },
            Strategy::MultifdZeroCopy => &StrategySpec {
                name: "multifd-zero-copy",
                summary: "multifd sending pages straight from guest memory (`zero-copy-send`; TCP, no compression, locked memory)",
                required: &["multifd", "zero-copy-send"],
                optional: &[],
                knobs: &[Knob::Multifd],
                postcopy: PostcopySwitch::Never,
                cost_model: CostModel::Precopy,
                proof: Proof::ZeroCopySent,
                zero_copy: true,
            },
            // A `mapped-ram` stream can only go to a file (QEMU refuses it on a
            // socket), so these two save to a file and restore from it: see
            // `Strategy::saves_to_file`.
            Strategy::MappedRam => &StrategySpec {
                name: "mapped-ram",
                summary: "Save to a file with `mapped-ram` (each page at a fixed offset), then restore the destination from it",
                required: &["mapped-ram"],
                optional: &[],
                knobs: &[],
                postcopy: PostcopySwitch::Never,
                cost_model: CostModel::Precopy,
                zero_copy: false,
                proof: Proof::SavedToFile,
            },
            Strategy::MappedRamMultifd => &StrategySpec {
                name: "mapped-ram-multifd",
                summary: "As mapped-ram, written and read by `multifd_channels` threads",
                required: &["mapped-ram", "multifd"],
                optional: &[],
                knobs: &[Knob::Multifd],
                postcopy: PostcopySwitch::Never,
                cost_model: CostModel::Precopy,
                zero_copy: false,
                proof: Proof::SavedToFile,
            },
            // Needs KVM's dirty ring (`settings::accelerator_plan`).
            Strategy::DirtyLimit => &StrategySpec {
                name: "dirty-limit",
                summary: "Pre-copy with `dirty-limit`: each vCPU held to `vcpu_dirty_limit` MB/s of dirtying (KVM dirty ring)",
                required: &["dirty-limit"],
                optional: &[],
                knobs: &[Knob::DirtyLimit],
                postcopy: PostcopySwitch::Never,
                cost_model: CostModel::Precopy,
                zero_copy: false,
                proof: Proof::DirtyLimited,
            },
            Strategy::PostcopyPreempt => &StrategySpec {
                name: "postcopy-preempt",
                summary: "`postcopy-ram` + `postcopy-preempt` (page requests on a channel of their own), switched to post-copy at once",
                required: &["postcopy-ram", "postcopy-preempt"],
                optional: &["postcopy-blocktime"],
                knobs: &[Knob::PostcopyBandwidth],
                postcopy: PostcopySwitch::AtOnce,
                cost_model: CostModel::Postcopy,
                zero_copy: false,
                proof: Proof::PostcopyPreempt,
            },
        }
    }

    pub fn postcopy_switch(self) -> PostcopySwitch {
        self.spec().postcopy
    }

    /// Whether the driver switches this strategy to post-copy at some point.
    pub fn switches_to_postcopy(self) -> bool {
        match self.postcopy_switch() {
            PostcopySwitch::Never => false,
            PostcopySwitch::AtOnce | PostcopySwitch::AfterPasses => true,
        }
    }

    /// Whether post-copy runs from the start, so a fault at any time meets it.
    pub fn postcopy_from_start(self) -> bool {
        match self.postcopy_switch() {
            PostcopySwitch::AtOnce => true,
            PostcopySwitch::Never | PostcopySwitch::AfterPasses => false,
        }
    }

    /// Whether the stream goes to a file and the destination restores from it: a
    /// strategy that turns on `mapped-ram`, which QEMU writes only to a `file:` URI.
    pub fn saves_to_file(self) -> bool {
        self.spec().required.contains(&"mapped-ram")
    }

    /// Whether the strategy needs KVM's dirty ring (`-accel kvm,dirty-ring-size=N`):
    /// QEMU's `dirty-limit` capability works only there.
    pub fn needs_dirty_ring(self) -> bool {
        self.spec().required.contains(&"dirty-limit")
    }

    pub fn cost_model(self) -> CostModel {
        self.spec().cost_model
    }

    fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.spec().name == name)
    }
}

/// The names, in `ALL`'s order, for "expected one of" messages.
const NAMES: [&str; Strategy::ALL.len()] = {
    let mut names = [""; Strategy::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Strategy::ALL[i].spec().name;
        i += 1;
    }
    names
};

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec().name)
    }
}

// Written by hand, not derived, so that a strategy's name and help come from its
// row alone.
impl Serialize for Strategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.spec().name)
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strategy, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Strategy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a migration strategy")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Strategy, E> {
                // The same words as serde's derived enums, which profiles' messages used.
                Strategy::from_name(v).ok_or_else(|| E::unknown_variant(v, &NAMES))
            }
        }
        d.deserialize_str(Name)
    }
}

impl clap::ValueEnum for Strategy {
    fn value_variants<'a>() -> &'a [Strategy] {
        &Strategy::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.spec().name).help(self.spec().summary))
    }
}

/// The capabilities some strategy turns on, in `ALL`'s order: each is set on or off
/// explicitly before every migration (a reused guest keeps what an earlier run set).
pub(super) fn managed_capabilities() -> Vec<&'static str> {
    let mut caps: Vec<&'static str> = Vec::new();
    for s in Strategy::ALL {
        for c in s.spec().required.iter().chain(s.spec().optional) {
            if !caps.contains(c) {
                caps.push(c);
            }
        }
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;


    #[test]
    fn all_holds_every_strategy_once_in_declaration_order() {
        for (i, s) in Strategy::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i, "{s}");
        }
        // Records and profiles hold these names: a strategy is never renamed.
        assert_eq!(NAMES[..6], ["precopy", "postcopy", "hybrid", "auto-converge", "xbzrle", "multifd"]);
        assert_eq!(NAMES[6..10], ["mapped-ram", "mapped-ram-multifd", "dirty-limit", "multifd-zero-copy"]);
        assert_eq!(NAMES[10], "postcopy-preempt");
    }

    #[test]
    fn every_strategy_round_trips_through_its_name() {
        use clap::ValueEnum;
        for s in Strategy::ALL {
            let name = s.to_string();
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::String(name.clone()));
            assert_eq!(serde_json::from_value::<Strategy>(name.clone().into()).unwrap(), s);
            assert_eq!(Strategy::from_str(&name, false), Ok(s));
            assert_eq!(s.to_possible_value().unwrap().get_name(), name);
        }
        let e = serde_json::from_str::<Strategy>("\"teleport\"").unwrap_err().to_string();
        assert!(e.starts_with("unknown variant `teleport`, expected one of `precopy`, `postcopy`, `hybrid`, `auto-converge`, `xbzrle`, `multifd`"), "{e}");
    }

    #[test]
    fn the_managed_capabilities_are_those_of_the_rows() {
        assert_eq!(managed_capabilities()[..5], ["postcopy-ram", "postcopy-blocktime", "auto-converge", "xbzrle", "multifd"]);
        for c in ["mapped-ram", "dirty-limit", "zero-copy-send", "postcopy-preempt"] {
            assert!(managed_capabilities().contains(&c), "{c}");
        }
    }

    #[test]
    fn the_postcopy_switch_decides_the_postcopy_properties() {
        let with = |s: Strategy| (s.switches_to_postcopy(), s.postcopy_from_start());
        assert_eq!(with(Strategy::Precopy), (false, false));
        assert_eq!(with(Strategy::Postcopy), (true, true));
        assert_eq!(with(Strategy::Hybrid), (true, false));
        assert_eq!(with(Strategy::PostcopyPreempt), (true, true));
        let models: Vec<&str> = Strategy::ALL.iter().map(|s| s.cost_model().name()).collect();
        assert_eq!(models[..7], ["precopy", "postcopy", "postcopy", "precopy", "precopy", "precopy", "precopy"]);
        let zero_copy: Vec<Strategy> = Strategy::ALL.into_iter().filter(|s| s.spec().zero_copy).collect();
        assert_eq!(zero_copy, [Strategy::MultifdZeroCopy]);
        assert_eq!(Strategy::PostcopyPreempt.cost_model().name(), "postcopy");
    }
}
