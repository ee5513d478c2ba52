//! The load tools `migbench bench` compares its generator against: `wrk` and
//! ApacheBench (`ab`) and `oha`.
//!
//! - `wrk` and `ab`: the system's when they are on PATH, used as they are;
//!   otherwise Debian 12's `wrk` and `apache2-utils` fetched with apt into
//!   `<cache>/tools/wrk` and `<cache>/tools/ab` and unpacked there, with
//!   `qemu_cache`'s machinery ([`qemu_cache::Bundle`]) exactly as `sshd_cache` does
//!   for openssh-server: private apt state, Debian's archive key, no apt source of
//!   the system changed, no package installed but the shared-library packages the
//!   binary links when one is missing (as root, never removing a package).
//! - `oha`: the system's when on PATH; otherwise built once with
//!   `cargo install oha --locked --root <cache>/tools/oha` when cargo is here, and
//!   kept there. Where it cannot be had, [`oha`] says exactly why.

use super::qemu_cache::{self, Bundle, Manifest};
use crate::host::{self, FileLock};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian 12's suite.
pub const SUITE: &str = "bookworm";

/// A load tool Debian packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Wrk,
    Ab,
}

impl Tool {
    pub const ALL: [Tool; 2] = [Tool::Wrk, Tool::Ab];

    /// The command's name ("wrk", "ab").
    pub fn name(self) -> &'static str {
        match self {
            Tool::Wrk => "wrk",
            Tool::Ab => "ab",
        }
    }

    /// Debian's package of it.
    pub fn package(self) -> &'static str {
        match self {
            Tool::Wrk => "wrk",
            Tool::Ab => "apache2-utils",
        }
    }

    fn bundle(self) -> Bundle {
        let (packages, binary): (&'static [&'static str], _) = match self {
            Tool::Wrk => (&["wrk"], "usr/bin/wrk"),
            Tool::Ab => (&["apache2-utils"], "usr/bin/ab"),
        };
        Bundle { suite: SUITE, packages, binary, package: self.package(), libraries: library_packages }
    }

    /// `<cache>/tools/NAME`: one directory per fetched version, and `current`.
    pub fn dir(self) -> PathBuf {
        host::cache_dir().join("tools").join(self.name())
    }

    /// The binary an unpacked tree holds.
    fn in_tree(self, root: &Path) -> PathBuf {
        root.join(self.bundle().binary)
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a tool says it is ("wrk 4.1.0 [epoll] …", "This is ApacheBench, Version
/// 2.3 <$Revision: 1903618 $>"), which also shows that it runs: it links its libraries.
pub fn version_line(tool: Tool, binary: &Path) -> Result<String> {
    // wrk prints its version and usage and exits 1 for `-v`; ab exits 0 for `-V`.
    let flag = match tool {
        Tool::Wrk => "-v",
        Tool::Ab => "-V",
    };
    let out = Command::new(binary).arg(flag).output().with_context(|| format!("could not run {}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let prefix = match tool {
        Tool::Wrk => "wrk ",
        Tool::Ab => "This is ApacheBench",
    };
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .map(String::from)
        .with_context(|| format!("{} {flag} did not say it is {tool}: {}", binary.display(), text.trim()))
}

/// Where a tool comes from, for the table's note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Found on PATH.
    System,
    /// Fetched (or built) into migbench's cache.
    Cache,
}

/// A tool ready to run.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub origin: Origin,
    pub version_line: String,
}

/// The system's tool, if it is on PATH and runs.
pub fn system(tool: Tool) -> Option<Found> {
    let path = host::which(tool.name())?;
    let version_line = version_line(tool, &path).ok()?;
    Some(Found { path, origin: Origin::System, version_line })
}

/// The cached tool, if one was fetched and still runs.
pub fn cached(tool: Tool) -> Option<(Found, Manifest)> {
    let (version_dir, manifest) = qemu_cache::current(&tool.dir())?;
    let path = tool.in_tree(&version_dir.join("root"));
    let version_line = version_line(tool, &path).ok()?;
    Some((Found { path, origin: Origin::Cache, version_line }, manifest))
}

/// The tool to run: the system's, else the cached one, fetched first if there is
/// none (under the set-up lock, so parallel commands fetch once).
pub fn ensure(tool: Tool) -> Result<Found> {
    if let Some(f) = system(tool).or_else(|| cached(tool).map(|(f, _)| f)) {
        return Ok(f);
    }
    let _lock = FileLock::acquire(&host::cache_dir().join("setup.lock"))?;
    if let Some((f, _)) = cached(tool) {
        return Ok(f);
    }
    let (package, dir) = (tool.package(), tool.dir());
    if host::no_install() {
        bail!(
            "{tool} is not on PATH, and MIGBENCH_NO_INSTALL forbids fetching {SUITE}'s {package} into {}. \
             Unset MIGBENCH_NO_INSTALL, or install {package}",
            dir.display()
        );
    }
    eprintln!("migbench: fetching {SUITE}'s {package} (for {tool}) into {} (once; a shared library it lacks is installed with apt-get --no-install-recommends --no-remove) …", dir.display());
    let found = fetch_to(tool, &dir)
        .with_context(|| format!("fetching Debian's {package} failed. Check that the Debian mirror is reachable, or install {package}"))?;
    eprintln!("migbench: {} ready at {}", found.version_line, found.path.display());
    Ok(found)
}

/// Fetches Debian's package of `tool` into `dir` (a version directory and
/// `current`, as [`Tool::dir`] holds them) and checks that it runs. Nobody else
/// may be fetching into `dir` (for the cache's, hold the set-up lock).
pub fn fetch_to(tool: Tool, dir: &Path) -> Result<Found> {
    qemu_cache::staged(dir, &format!("{SUITE}'s {}", tool.package()), |staging| fetch_into(tool, dir, staging))
}

fn fetch_into(tool: Tool, dir: &Path, staging: &Path) -> Result<Found> {
    let fetched = qemu_cache::unpack(&tool.bundle(), staging)?;
    let version_line = version_line(tool, &tool.in_tree(&fetched.root)).with_context(|| format!("the unpacked {tool} does not run"))?;
    let version = qemu_cache::package_version(&fetched.packages[0]);
    let manifest = Manifest { suite: SUITE.into(), mirror: fetched.mirror, packages: fetched.packages, version_line: version_line.clone(), fetched_at: host::stamp() };
    let final_dir = qemu_cache::publish(dir, staging, &manifest, &version)?;
    Ok(Found { path: tool.in_tree(&final_dir.join("root")), origin: Origin::Cache, version_line })
}

/// Of a tool package's `Depends:`, the shared-library packages its binary links
/// (Debian names them lib…, and zlib1g); nothing else is installed.
pub fn library_packages(depends: &str) -> Vec<String> {
    qemu_cache::dependency_names(depends).into_iter().filter(|n| n.starts_with("lib") || n == "zlib1g").collect()
}

/// The oha migbench builds: its JSON output is what `load::rivals` reads, and
/// releases have changed it.
pub const OHA_VERSION: &str = "1.16.0";

/// `<cache>/tools/oha`: `cargo install --root` puts the binary in `bin/`.
pub fn oha_dir() -> PathBuf {
    host::cache_dir().join("tools").join("oha")
}

/// What `oha --version` says ("oha 1.9.0"), which shows that it runs.
pub fn oha_version(binary: &Path) -> Result<String> {
    let out = host::run(Command::new(binary).arg("--version"))?;
    out.lines().map(str::trim).find(|l| l.starts_with("oha")).map(String::from).with_context(|| format!("{} --version: {}", binary.display(), out.trim()))
}

/// oha to run: the system's, else the one built into the cache, else built now
/// with cargo (once: it takes minutes on a small machine, and says so). Err says
/// exactly why there is none.
pub fn oha() -> std::result::Result<Found, String> {
    if let Some(path) = host::which("oha") {
        if let Ok(version_line) = oha_version(&path) {
            return Ok(Found { path, origin: Origin::System, version_line });
        }
    }
    let path = oha_dir().join("bin/oha");
    let cached = || oha_version(&path).ok().map(|version_line| Found { path: path.clone(), origin: Origin::Cache, version_line });
    if let Some(f) = cached() {
        return Ok(f);
    }
    let lock = FileLock::acquire(&host::cache_dir().join("tools").join("oha.lock")).map_err(|e| format!("{e:#}"))?;
    if let Some(f) = cached() {
        return Ok(f);
    }
    if host::no_install() {
        return Err(format!("not on PATH, and MIGBENCH_NO_INSTALL forbids building it into {}", oha_dir().display()));
    }
    let Some(cargo) = host::which("cargo") else {
        return Err("not on PATH, and cargo is not either to build it (install Rust, or oha)".into());
    };
    eprintln!(
        "migbench: building oha with `cargo install oha --version {OHA_VERSION} --locked --root {}` (once; this takes minutes) …",
        oha_dir().display()
    );
    let out = Command::new(cargo)
        .args(["install", "oha", "--version", OHA_VERSION, "--locked", "--root"])
        .arg(oha_dir())
        .output()
        .map_err(|e| format!("could not run cargo install oha: {e}"))?;
    drop(lock);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().filter(|l| !l.trim().is_empty()).take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("cargo install oha failed ({}): {}", out.status, tail.join(" / ")));
    }
    let f = cached().ok_or_else(|| format!("cargo install oha succeeded but {} does not run", path.display()))?;
    eprintln!("migbench: {} ready at {}", f.version_line, f.path.display());
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_libraries_the_tools_link_are_installed() {
        // wrk's and apache2-utils' Depends: in bookworm.
        assert_eq!(library_packages("libc6 (>= 2.34), libluajit-5.1-2 (>= 2.0.4+dfsg), libssl3 (>= 3.0.0)"), ["libc6", "libluajit-5.1-2", "libssl3"]);
        assert_eq!(
            library_packages("libapr1 (>= 1.4.8-2~), libaprutil1 (>= 1.5.0), libc6 (>= 2.34), libcrypt1 (>= 1:4.1.0), libssl3 (>= 3.0.0)"),
            ["libapr1", "libaprutil1", "libc6", "libcrypt1", "libssl3"]
        );
        assert!(library_packages("debconf | debconf-2.0, lsb-base").is_empty());
    }

}
