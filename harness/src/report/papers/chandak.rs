//! Chandak et al., "Dynamic Load Balancing of Virtual Machines using QEMU-KVM": their
//! Tables 1–4 are cluster states with the migration their rule chose. The engine
//! decides the same states; a live cluster's rounds are laid out like their tables
//! by [`crate::report::cluster_round`].

use crate::rank::balance::{self, ClusterState, Options, Rule};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// The decision the paper printed under each of its Tables 1–4.
const THEIRS: [&str; 4] = ["A2: Host 3 → Host 2", "K2: Host 2 → Host 3", "K3: Host 2 → Host 3", "none (balanced)"];

/// Chandak et al.'s Tables 1–4 through the engine: the paper's decision beside ours.
pub fn tables() -> Result<String> {
    // Where `locate` looks for profiles: ./profiles first, then the source tree's.
    let dir = [PathBuf::from("profiles/chandak"), PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles/chandak")]
        .into_iter()
        .find(|d| d.join("table1.json").exists())
        .context("the paper's tables (profiles/chandak/table1.json …) are not here: run from the migbench source tree")?;
    let mut b = tabled::builder::Builder::default();
    b.push_record(["table", "threshold", "band", "light", "heavy", "paper's decision", "ours (rule paper)", "matches"]);
    let mut matched = 0;
    for (i, want) in THEIRS.iter().enumerate() {
        let path = dir.join(format!("table{}.json", i + 1));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let state: ClusterState = serde_json::from_str(&text).with_context(|| format!("cluster state {}", path.display()))?;
        let d = balance::decide(&state, &Options { rule: Rule::Paper, margin: 0.0 }).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let ours = d.migration.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "none (balanced)".into());
        let ok = ours == *want;
        matched += ok as usize;
        b.push_record([
            format!("Table {}", i + 1),
            format!("{:.1}", d.threshold),
            format!("{:.1}–{:.1}", d.band[0], d.band[1]),
            d.light.join(", "),
            d.heavy.join(", "),
            want.to_string(),
            ours,
            if ok { "yes".into() } else { "NO".into() },
        ]);
    }
    Ok(format!(
        "{}\n\nThe engine's decision matches the paper's in {matched} of 4 rounds.",
        b.build().with(tabled::settings::Style::markdown())
    ))
}
