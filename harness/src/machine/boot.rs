//! How a guest comes up: booted, or restored from a snapshot of a booted guest
//! (`machine::snapshot`). `--boot` chooses; a record says which it was.

use serde::{Deserialize, Serialize};

/// How guests come up: `--boot`.
/// The command line's default is `restore`; a library caller's sites boot fresh
/// ([`default_mode`]) unless it says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// The kernel boots every time.
    Fresh,
    /// Restored from a saved booted guest where it can be (see `machine::snapshot`),
    /// fresh otherwise.
    Restore,
}

/// The mode a local [`super::site::Site`] starts with: `--boot`, which the command
/// line sets once. A library caller's sites boot fresh unless it says otherwise.
static DEFAULT_MODE: std::sync::Mutex<BootMode> = std::sync::Mutex::new(BootMode::Fresh);

/// Sets the mode sites made from now on start with.
pub fn set_default_mode(mode: BootMode) {
    *DEFAULT_MODE.lock().unwrap_or_else(|e| e.into_inner()) = mode;
}

/// The mode sites made now start with.
pub fn default_mode() -> BootMode {
    *DEFAULT_MODE.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a guest came up, for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Booted {
    /// Its kernel booted (every record before snapshots says so).
    #[default]
    Fresh,
    /// Restored from a snapshot of a booted guest.
    Restored,
}

impl std::fmt::Display for Booted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Booted::Fresh => "fresh",
            Booted::Restored => "restored",
        })
    }
}
