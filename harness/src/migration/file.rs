//! A migration to a file and back, for the strategies that turn on `mapped-ram`
//! (`Strategy::saves_to_file`): the source writes its state to `file:PATH` and
//! ends paused (`postmigrate`), then the destination, waiting with `-incoming
//! defer`, is given `migrate-incoming file:PATH` and runs the guest from it. The
//! driver sends the first half as any migration; this file holds the second half
//! and what the file measured. `mapped-ram` writes each page at a fixed offset, so
//! the file is as long as the RAM and sparse where pages were never written.

use super::measurement::{Outcome, SavedFile};
use crate::machine::Machine;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the source saves: the destination's own directory (a reused guest saves
/// many times; each file is removed once restored).
pub(super) fn path_in(dir: &Path) -> PathBuf {
    dir.join("saved.mapped-ram")
}

/// The file's length and the disk blocks it uses, bytes.
pub fn sizes(path: &Path) -> std::io::Result<(u64, u64)> {
    let md = std::fs::metadata(path)?;
    Ok((md.len(), md.blocks() * 512))
}

/// After the save (`saved`, the outcome of the source's migration): measures the
/// file and, if the save completed, restores the destination from it. Returns the
/// run's outcome (a failed restore fails the run) and the file's record; the file
/// is removed either way.
pub(super) async fn restore_after(dst: &Machine, path: &Path, saved: Outcome, timeout: Duration) -> (Outcome, Option<SavedFile>) {
    let mut file = sizes(path).ok().map(|(apparent_bytes, allocated_bytes)| SavedFile {
        path: path.display().to_string(),
        apparent_bytes,
        allocated_bytes,
        restore_ms: None,
    });
    let outcome = match (&saved, file.as_mut()) {
        (Outcome::Completed, None) => {
            Outcome::Failed { reason: format!("the source reported the save completed, but {} is not there", path.display()) }
        }
        (Outcome::Completed, Some(f)) => match restore(dst, path, timeout).await {
            Ok(t) => {
                f.restore_ms = Some(t);
                Outcome::Completed
            }
            Err(reason) => Outcome::Failed { reason: format!("restoring the destination from {}: {reason}", path.display()) },
        },
        _ => saved,
    };
    let _ = std::fs::remove_file(path);
    (outcome, file)
}

/// Restores the destination from `file:PATH`: the time that took (ms), or why not.
async fn restore(dst: &Machine, path: &Path, timeout: Duration) -> Result<f64, String> {
    dst.load_incoming(&format!("file:{}", path.display()), timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_file_is_longer_than_the_disk_it_uses() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_in(dir.path());
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        let (apparent, allocated) = sizes(&p).unwrap();
        assert_eq!(apparent, 64 << 20);
        assert!(allocated < 1 << 20, "a file of holes uses (almost) no disk: {allocated}");
        assert!(sizes(&dir.path().join("none")).is_err());
    }
}
