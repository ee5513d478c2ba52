//! Run directories: where a migbench keeps its QEMUs' sockets and logs, and how
//! each is named after the process that owns it, so that the clean-up after a
//! SIGKILL (`crate::machine::stale`) can tell whose it is.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// A run directory's name starts with this, then the owner's pid and a dash.
pub const RUN_DIR_PREFIX: &str = "migbench-run-";

/// A pid as a name carries it: decimal digits only, above 0.
pub fn parse_pid(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&p| p > 0)
}

/// The pid in a run directory name `migbench-run-<pid>-XXXXXX`.
pub fn run_dir_owner(name: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix(RUN_DIR_PREFIX)?.split_once('-')?;
    parse_pid(pid)
}

/// Where run directories go: `$XDG_RUNTIME_DIR` when it is a directory, else the
/// temporary directory (`$TMPDIR`, else /tmp). A new one goes in the first; all are
/// searched for the run directories of migbench processes that no longer run.
pub fn run_dir_bases() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|d| d.is_dir()).into_iter().collect();
    let tmp = std::env::temp_dir();
    if !bases.contains(&tmp) {
        bases.push(tmp);
    }
    bases
}

/// A private run directory (mode 0700) holding sockets and logs; removed on drop.
/// Its name, `migbench-run-<pid>-XXXXXX`, says whose it is: when that process was
/// SIGKILLed, the next migbench removes it (see [`crate::machine::stale`]).
pub struct RunDir {
    dir: tempfile::TempDir,
    /// Held for the directory's whole life: a later migbench that can take it knows
    /// the owner is gone (exactly, whatever the pid or the clock say).
    _owner: crate::host::FileLock,
}

/// The lock file in a run directory that its migbench holds while it runs.
pub const RUN_DIR_LOCK: &str = "owner.lock";

impl RunDir {
    pub fn new() -> Result<RunDir> {
        let base = run_dir_bases().remove(0);
        use std::os::unix::fs::PermissionsExt;
        // Private: sockets inside give control of the guests. Unix socket paths must
        // stay under 108 bytes, so the name is short.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}{}-", RUN_DIR_PREFIX, std::process::id()))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .with_context(|| format!("creating a run directory in {}", base.display()))?;
        let lock = dir.path().join(RUN_DIR_LOCK);
        let owner = crate::host::FileLock::acquire(&lock)?;
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).with_context(|| format!("making {} private", lock.display()))?;
        Ok(RunDir { dir, _owner: owner })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A 0700 subdirectory for one machine.
    pub fn machine_dir(&self, name: &str) -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let d = self.dir.path().join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let r = RunDir::new().unwrap();
        let m = r.machine_dir("src").unwrap();
        assert_eq!(std::fs::metadata(r.path()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&m).unwrap().permissions().mode() & 0o777, 0o700);
        // Its name says whose it is, for the clean-up after a SIGKILL.
        let name = r.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(run_dir_owner(&name), Some(std::process::id()), "{name}");
        assert_eq!(r.path().parent(), Some(run_dir_bases()[0].as_path()));
        let p = r.path().to_path_buf();
        drop(r);
        assert!(!p.exists());
    }

    #[test]
    fn owners_from_names() {
        assert_eq!(run_dir_owner("migbench-run-4321-aB3xYz"), Some(4321));
        assert_eq!(run_dir_owner("migbench-run-4321"), None);
        assert_eq!(run_dir_owner("migbench-aB3xYz"), None);
        assert_eq!(run_dir_owner("migbench-chromium-12-x"), None);
        assert_eq!(run_dir_owner("migbench-run-+5-x"), None);
    }
}
