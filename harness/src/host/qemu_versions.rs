//! Which QEMU a run uses, when the user names one: a version series ("7.2",
//! "10.0", "10"), `system` (the `qemu-system-x86_64` on `PATH`), or a path to any
//! binary. A version is served by an installed QEMU of that series when there is
//! one, else fetched into migbench's cache from the Debian suite that carries it
//! (see [`qemu_cache::SUITES`]), side by side with the others; the system is not
//! changed beyond the shared libraries an unpacked QEMU needs.

use super::qemu_cache::{self, Suite};
use super::{FileLock, Qemu, QemuOrigin};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A QEMU as the user names it, in a profile (`qemu`, `qemu_dest`) or on the
/// command line (`--qemu`, `--qemu-dest`). Written as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum QemuWanted {
    /// A version series: "7.2" matches 7.2.x, "10" matches any 10.x.
    Series(String),
    /// The `qemu-system-x86_64` on `PATH`, whatever its version.
    System,
    /// This binary, as it is.
    Path(PathBuf),
}

impl FromStr for QemuWanted {
    type Err = String;

    fn from_str(s: &str) -> Result<QemuWanted, String> {
        let t = s.trim();
        if t == "system" {
            return Ok(QemuWanted::System);
        }
        if !t.is_empty() && t.split('.').all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit())) {
            if t.split('.').count() > 3 {
                return Err(format!("QEMU {t:?}: a version has at most three parts, e.g. 7.2 or 10.0.2"));
            }
            return Ok(QemuWanted::Series(t.to_string()));
        }
        if t.contains('/') {
            return Ok(QemuWanted::Path(PathBuf::from(t)));
        }
        Err(format!(
            "QEMU {s:?} is not understood: give a version ({}), `system`, or a path to a qemu-system-x86_64 binary (e.g. ./qemu-system-x86_64)",
            qemu_cache::SUITES.iter().map(|s| s.series).collect::<Vec<_>>().join(", ")
        ))
    }
}

impl fmt::Display for QemuWanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QemuWanted::Series(s) => f.write_str(s),
            QemuWanted::System => f.write_str("system"),
            QemuWanted::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

impl From<QemuWanted> for String {
    fn from(w: QemuWanted) -> String {
        w.to_string()
    }
}

impl TryFrom<String> for QemuWanted {
    type Error = String;
    fn try_from(s: String) -> Result<QemuWanted, String> {
        s.parse()
    }
}

/// Whether `version` ("7.2.22") is of `series` ("7.2", "7", "7.2.22"): the series'
/// parts are the version's first parts.
pub fn in_series(version: &str, series: &str) -> bool {
    let v: Vec<&str> = version.split('.').collect();
    let s: Vec<&str> = series.split('.').collect();
    s.len() <= v.len() && s.iter().zip(&v).all(|(a, b)| a.parse::<u32>().ok() == b.parse::<u32>().ok() && a.parse::<u32>().is_ok())
}

/// The suite that carries `series`, if migbench can fetch it.
pub fn suite_for(series: &str) -> Option<Suite> {
    qemu_cache::SUITES.iter().copied().find(|s| in_series(s.series, series) || in_series(series, s.series))
}

/// The QEMUs present now without fetching anything: `$MIGBENCH_QEMU`, the system's,
/// and each suite's in the cache. For `migbench doctor` and for matching a series.
pub fn installed() -> Vec<Qemu> {
    let mut found: Vec<Qemu> = Vec::new();
    if let Ok(Some(q)) = Qemu::find(None) {
        found.push(q);
    }
    for suite in qemu_cache::SUITES {
        if let Some((q, _)) = qemu_cache::cached(suite) {
            found.push(q);
        }
    }
    found
}

/// The installed QEMU (see [`installed`]) of `series`, if any: nothing is fetched.
pub fn installed_of(series: &str) -> Option<Qemu> {
    installed().into_iter().find(|q| in_series(&q.version, series))
}

/// The QEMU `wanted` names, fetched into the cache first when it is a version no
/// installed QEMU has. Takes the set-up lock while it may fetch.
pub fn resolve(wanted: &QemuWanted) -> Result<Qemu> {
    match wanted {
        QemuWanted::Path(p) => Qemu::find(Some(p))?.with_context(|| format!("--qemu {}: no QEMU found there", p.display())),
        QemuWanted::System => match super::which("qemu-system-x86_64") {
            Some(p) => Qemu::at(p, QemuOrigin::System),
            None => bail!("QEMU `system`: there is no qemu-system-x86_64 on PATH. Install qemu-system-x86, or name a version (e.g. 10.0) or a path"),
        },
        QemuWanted::Series(series) => {
            let _lock = FileLock::acquire(&super::cache_dir().join("setup.lock"))?;
            resolve_series_locked(series)
        }
    }
}

/// [`resolve`] of a series for a caller that holds the set-up lock.
pub fn resolve_series_locked(series: &str) -> Result<Qemu> {
    if let Some(q) = installed_of(series) {
        return Ok(q);
    }
    match suite_for(series) {
        Some(suite) => {
            let q = qemu_cache::ensure_locked(suite)?;
            if !in_series(&q.version, series) {
                bail!("QEMU {series}: {}'s QEMU is {}, not of that series. Name {} or give a path to a {series} binary", suite.name, q.version, suite.series);
            }
            Ok(q)
        }
        None => {
            let have: Vec<String> = installed().iter().map(|q| q.version.clone()).collect();
            bail!(
                "QEMU {series} is neither installed nor one migbench can fetch (it fetches {}{}). Give a path to a \
                 qemu-system-x86_64 of that version instead (README: \"Adding a QEMU version\")",
                qemu_cache::SUITES.iter().map(|s| format!("{} from {}", s.series, s.name)).collect::<Vec<_>>().join(", "),
                if have.is_empty() { String::new() } else { format!("; installed: {}", have.join(", ")) }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_user_may_name() {
        assert_eq!("7.2".parse(), Ok(QemuWanted::Series("7.2".into())));
        assert_eq!(" 10 ".parse(), Ok(QemuWanted::Series("10".into())));
        assert_eq!("10.0.2".parse(), Ok(QemuWanted::Series("10.0.2".into())));
        assert_eq!("system".parse(), Ok(QemuWanted::System));
        assert_eq!("/opt/q/qemu-system-x86_64".parse(), Ok(QemuWanted::Path("/opt/q/qemu-system-x86_64".into())));
        assert_eq!("./qemu".parse(), Ok(QemuWanted::Path("./qemu".into())));
        for bad in ["", "latest", "7..2", "7.2.", "1.2.3.4", "v10"] {
            let e = bad.parse::<QemuWanted>().unwrap_err();
            assert!(e.contains("QEMU") && (e.contains("7.2") || e.contains("three parts")), "{bad}: {e}");
        }
        // Written as its text in profiles and records.
        let w: QemuWanted = serde_json::from_str("\"7.2\"").unwrap();
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"7.2\"");
    }

    #[test]
    fn series_match_whole_parts() {
        assert!(in_series("7.2.22", "7.2"));
        assert!(in_series("7.2.22", "7"));
        assert!(in_series("10.0.2", "10"));
        assert!(in_series("10.0.2", "10.0.2"));
        assert!(!in_series("10.0.2", "1"));
        assert!(!in_series("7.2.22", "7.22"));
        assert!(!in_series("7.2", "7.2.22"));
        assert_eq!(suite_for("7.2").map(|s| s.name), Some("bookworm"));
        assert_eq!(suite_for("10").map(|s| s.name), Some("bookworm-backports"));
        assert_eq!(suite_for("10.0.2").map(|s| s.name), Some("bookworm-backports"));
        assert_eq!(suite_for("8.2"), None);
    }
}
