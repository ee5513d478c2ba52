//! `results.jsonl`: one JSON line per finished run, appended and flushed the moment
//! the run ends, so an interrupted sweep loses nothing and can be resumed; read
//! back typed, merged from shards, and asked which runs are done.

use super::{RunRecord, run_record};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends one JSON line per result and syncs it to disk.
pub struct ResultsFile {
    path: PathBuf,
    file: std::fs::File,
}

impl ResultsFile {
    /// Opens for appending. A torn last line (a crash mid-write) is cut off first,
    /// so the next line starts clean; `read_results` warns about it.
    pub fn create(path: &Path) -> Result<ResultsFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the results directory {}", dir.display()))?;
        }
        if let Ok(bytes) = std::fs::read(path) {
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                let keep = bytes.iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
                // Append mode: the newline must land at the end, and set_len works the same.
                let f = std::fs::File::options().append(true).open(path)?;
                if serde_json::from_slice::<Value>(&bytes[keep..]).is_ok() {
                    // A whole record that only lacks its newline: keep it.
                    use std::io::Write;
                    (&f).write_all(b"\n").with_context(|| format!("completing the last line of {}", path.display()))?;
                } else {
                    eprintln!(
                        "migbench: warning: {} ends in a torn line ({} bytes, from an interrupted run); it is dropped",
                        path.display(),
                        bytes.len() - keep
                    );
                    f.set_len(keep as u64).with_context(|| format!("truncating the torn line of {}", path.display()))?;
                }
            }
        }
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {} for results", path.display()))?;
        Ok(ResultsFile { path: path.into(), file })
    }

    pub fn append<T: serde::Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record)? + "\n";
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("writing a result to {} (disk full?)", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every complete JSON line; lines that do not parse (a torn last line) are
/// skipped with a warning naming the file and line.
pub fn read_results(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(e) => eprintln!("migbench: warning: {} line {}: not a complete result ({e}); ignored", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// `results.jsonl` in a results directory, or the file itself.
pub fn results_path(path: &Path) -> PathBuf {
    if path.is_dir() { path.join("results.jsonl") } else { path.to_path_buf() }
}

/// [`read_results`], refusing a file that holds a record of a newer schema (its
/// fields may mean something else), naming the file and the record.
pub fn read_understood(path: &Path) -> Result<Vec<Value>> {
    let lines = read_results(path)?;
    for (i, v) in lines.iter().enumerate() {
        if let Err(e) = super::check_schema(v) {
            bail!("{} record {}: {e}", path.display(), i + 1);
        }
    }
    Ok(lines)
}

/// Every run record in a results file (none when it does not exist yet). Lines of
/// other kinds are left out with a warning that counts them; a record of a newer
/// schema is an error, since its fields may mean something else.
pub fn read_runs(path: &Path) -> Result<Vec<RunRecord>> {
    let lines = read_understood(path)?;
    let total = lines.len();
    let runs: Vec<RunRecord> = lines.iter().filter_map(|v| run_record(v).ok()).collect();
    if runs.len() < total {
        eprintln!("migbench: warning: {} of {total} lines of {} are not run records and are left out", total - runs.len(), path.display());
    }
    Ok(runs)
}

/// [`read_runs`] of a results directory or file the user named: it must exist and
/// hold at least one run record.
pub fn load(path: &Path) -> Result<Vec<RunRecord>> {
    let file = results_path(path);
    if !file.exists() {
        bail!("{} does not exist: give a results directory or its results.jsonl", file.display());
    }
    let records = read_runs(&file)?;
    if records.is_empty() {
        bail!("{} holds no run records of a profile (the results of `migbench run`)", file.display());
    }
    Ok(records)
}

/// The records of one profile (a results file may hold several).
pub fn of_profile(records: Vec<RunRecord>, profile: &str) -> Vec<RunRecord> {
    records.into_iter().filter(|r| r.run.profile == profile).collect()
}

/// The profile and key (`cell_key/repetition`) of a result line, read from its
/// `run` block alone: a line that no longer reads whole as a run record is still
/// the same run to `--resume` and `merge`.
pub fn run_identity(v: &Value) -> Option<(String, String)> {
    let run = v.get("run")?;
    let repetition = u32::try_from(run.get("repetition")?.as_u64()?).ok()?;
    Some((run.get("profile")?.as_str()?.to_string(), super::run_key(run.get("cell_key")?.as_str()?, repetition)))
}

/// Keys (`cell_key/repetition`) of the runs of `profile` already among `lines`
/// (as [`read_understood`] gives them).
pub fn done_keys(lines: &[Value], profile: &str) -> HashSet<String> {
    lines.iter().filter_map(run_identity).filter(|(p, _)| p == profile).map(|(_, key)| key).collect()
}

/// Joins the `results.jsonl` of several directories (shards) into `out`, keeping
/// one copy of each (profile, cell, repetition). Returns (kept, dropped).
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<(usize, usize)> {
    let target = out.join("results.jsonl");
    if target.exists() {
        bail!("{} exists: merge into a new directory", target.display());
    }
    // Read and check every input before writing anything.
    let mut seen = HashSet::new();
    let mut keep = Vec::new();
    let mut dropped = 0;
    for dir in inputs {
        let path = results_path(dir);
        if !path.exists() {
            bail!("{} does not exist: give result directories (or results.jsonl files) to merge", path.display());
        }
        // Lines are copied as they are: a line this migbench cannot read as a run is
        // kept whole, but one of a newer schema would be merged without being understood.
        for v in read_understood(&path)? {
            let key = match run_identity(&v) {
                Some((profile, key)) => format!("{profile}/{key}"),
                None => v.to_string(),
            };
            if seen.insert(key) {
                keep.push(v);
            } else {
                dropped += 1;
            }
        }
    }
    let tmp = out.join(".results.jsonl.merging");
    let mut file = ResultsFile::create(&tmp)?;
    for v in &keep {
        file.append(v)?;
    }
    drop(file);
    std::fs::rename(&tmp, &target).with_context(|| format!("moving the merged results to {}", target.display()))?;
    Ok((keep.len(), dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk: the error names the file, the results before it stay whole, and
    /// the torn line a partial write leaves is dropped when the file is opened again.
    #[test]
    fn a_full_disk_is_an_error_naming_the_file_and_loses_nothing_written() {
        if !crate::host::is_root() {
            eprintln!("skipped: mounting a small tmpfs to fill needs root (CI runs as root)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let target = c(&dir.path().display().to_string());
        // SAFETY: mounting a 16 KiB tmpfs on our own temporary directory.
        let r = unsafe { libc::mount(c("tmpfs").as_ptr(), target.as_ptr(), c("tmpfs").as_ptr(), 0, c("size=16k").as_ptr().cast()) };
        assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        struct Unmount(std::ffi::CString);
        impl Drop for Unmount {
            fn drop(&mut self) {
                // SAFETY: unmounting what this test mounted.
                unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _unmount = Unmount(target);
        let p = dir.path().join("results.jsonl");
        let mut f = ResultsFile::create(&p).unwrap();
        let record = serde_json::json!({ "run": "x".repeat(1000) });
        let mut written = 0;
        let err = loop {
            match f.append(&record) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 100, "a 16 KiB file system took 100 KiB");
        };
        let enospc = err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.raw_os_error() == Some(libc::ENOSPC)));
        assert!(enospc, "{err:#}");
        assert!(format!("{err:#}").contains(&p.display().to_string()), "{err:#}");
        assert!(written >= 5, "{written}");
        drop(f);
        // Reopening cuts the torn tail the failed write left: the file ends with the
        // last whole record's newline, and holds exactly the records written.
        let torn = std::fs::read(&p).unwrap();
        let _ = ResultsFile::create(&p);
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes.ends_with(b"\n"));
        assert!(bytes.len() <= torn.len());
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), written);
        assert_eq!(read_results(&p).unwrap().len(), written);
    }

    #[test]
    fn done_keys_come_from_the_run_block_even_of_a_line_that_no_longer_reads_whole() {
        let damaged = serde_json::json!({"run": {"profile": "p", "cell_key": "abc", "repetition": 1}});
        let other = serde_json::json!({"run": {"profile": "q", "cell_key": "abc", "repetition": 0}});
        let keys = done_keys(&[damaged, other, serde_json::json!({"x": 1})], "p");
        assert_eq!(keys, HashSet::from(["abc/1".to_string()]));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.jsonl");
        let newer = serde_json::json!({"schema": super::super::SCHEMA + 1, "run": {"profile": "p", "cell_key": "x", "repetition": 0}});
        std::fs::write(&p, format!("{{\"x\":1}}\n{newer}\n")).unwrap();
        let e = read_understood(&p).unwrap_err().to_string();
        assert!(e.contains("record 2") && e.contains("newer migbench"), "{e}");
    }

    #[test]
    fn lines_are_appended_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/results.jsonl");
        let mut f = ResultsFile::create(&p).unwrap();
        f.append(&serde_json::json!({"x": 1})).unwrap();
        f.append(&serde_json::json!({"x": 2})).unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"x\":1}\n{\"x\":2}\n");
        // A crash mid-write leaves half a line.
        std::fs::write(&p, "{\"x\":1}\n{\"x\":2}\n{\"x\":").unwrap();
        assert_eq!(read_results(&p).unwrap().len(), 2);
        let mut f = ResultsFile::create(&p).unwrap();
        f.append(&serde_json::json!({"x": 3})).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"x\":1}\n{\"x\":2}\n{\"x\":3}\n");
        assert!(read_results(&dir.path().join("none.jsonl")).unwrap().is_empty());
        // A complete record without its newline is kept, not dropped.
        std::fs::write(&p, "{\"x\":1}\n{\"x\":2}").unwrap();
        drop(ResultsFile::create(&p).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"x\":1}\n{\"x\":2}\n");
    }
}
