//! QEMUs from Debian's archive, fetched with apt into migbench's cache and unpacked
//! there side by side, beside the system's QEMU: bookworm-backports' 10.0 (the
//! default under TCG on Debian 12, whose own 7.2 corrupts the TCG guests it sends)
//! and bookworm's 7.2 (for comparing versions and migrating across them). Nothing
//! is installed and no apt source of the system is changed: apt runs with a private
//! source list, private package lists and a private download directory, all under
//! the cache. The packages are verified by apt against Debian's archive key as any
//! install is.
//!
//! An unpacked QEMU uses the system's shared libraries, Debian 12's own packages
//! of those its `Depends:` names (installed with apt as root when one is missing,
//! never removing a package), and its own firmware, given to it with `-L`.
//!
//! The fetch itself (private apt state, download, unpack, libraries, manifest,
//! `current`) is a [`Bundle`]'s, shared with the other packages migbench unpacks
//! (openssh-server, see `sshd_cache`).

use crate::host::{self, FileLock, Qemu, QemuOrigin};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A QEMU Debian's archive offers for Debian 12: the suite and the version series it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// e.g. "bookworm-backports".
    pub name: &'static str,
    /// The QEMU version series the suite carries, e.g. "10.0".
    pub series: &'static str,
}

/// The QEMUs migbench fetches, oldest first. Both are built for Debian 12's libraries.
pub const SUITES: [Suite; 2] = [Suite { name: "bookworm", series: "7.2" }, Suite { name: "bookworm-backports", series: "10.0" }];

/// The QEMU fetched where none ≥ 9.0 is installed: bookworm-backports'.
pub const DEFAULT: Suite = SUITES[1];
/// The packages unpacked: the emulator, its common files, its firmware data and the
/// BIOS it boots with (the system's older SeaBIOS does not match 10.0's machines).
pub const PACKAGES: [&str; 4] = ["qemu-system-x86", "qemu-system-common", "qemu-system-data", "seabios"];
/// Debian's archive key, which signs bookworm-backports like every Debian suite.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Where a Debian system without an apt source for bookworm fetches from.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What was fetched, kept beside the unpacked tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub suite: String,
    pub mirror: String,
    /// "qemu-system-x86=1:10.0.2+ds-2+deb13u1~bpo12+1", one per package.
    pub packages: Vec<String>,
    pub version_line: String,
    pub fetched_at: String,
}

/// Debian packages fetched together from one suite and unpacked into one tree.
pub(crate) struct Bundle {
    /// e.g. "bookworm-backports".
    pub suite: &'static str,
    pub packages: &'static [&'static str],
    /// The executable in the unpacked tree that must find its shared libraries
    /// ("usr/bin/qemu-system-x86_64")…
    pub binary: &'static str,
    /// …and the package whose `Depends:` names them ("qemu-system-x86").
    pub package: &'static str,
    /// Which of those dependencies are library packages of the system.
    pub libraries: fn(&str) -> Vec<String>,
}

/// QEMU's packages from `suite`.
fn bundle(suite: Suite) -> Bundle {
    Bundle { suite: suite.name, packages: &PACKAGES, binary: "usr/bin/qemu-system-x86_64", package: "qemu-system-x86", libraries: library_packages }
}

/// A bundle unpacked into `<staging>/root`, its libraries present.
pub(crate) struct Unpacked {
    pub root: PathBuf,
    pub mirror: String,
    /// "pkg=version", one per package.
    pub packages: Vec<String>,
}

/// `<cache>/qemu/SUITE`: one directory per fetched version, and `current`.
pub fn dir(suite: Suite) -> PathBuf {
    host::cache_dir().join("qemu").join(suite.name)
}

/// The QEMU of an unpacked tree, with its firmware directories.
fn qemu_in(root: &Path) -> Qemu {
    Qemu {
        path: root.join("usr/bin/qemu-system-x86_64"),
        version: String::new(),
        version_line: String::new(),
        data_dirs: vec![root.join("usr/share/qemu"), root.join("usr/share/seabios")],
        origin: QemuOrigin::Cache,
    }
}

/// The cached QEMU of `suite`, if one was fetched and still runs.
pub fn cached(suite: Suite) -> Option<(Qemu, Manifest)> {
    let (version_dir, manifest) = current(&dir(suite))?;
    let qemu = qemu_in(&version_dir.join("root")).identified().ok()?;
    Some((qemu, manifest))
}

/// The version directory `current` in `dir` names, and its manifest.
pub(crate) fn current(dir: &Path) -> Option<(PathBuf, Manifest)> {
    let current = std::fs::read_to_string(dir.join("current")).ok()?;
    let version_dir = dir.join(current.trim());
    let manifest: Manifest = serde_json::from_str(&std::fs::read_to_string(version_dir.join("manifest.json")).ok()?).ok()?;
    Some((version_dir, manifest))
}

/// The cached QEMU of `suite`, fetched first if there is none; takes the set-up
/// lock, so parallel commands fetch once.
pub fn ensure(suite: Suite) -> Result<Qemu> {
    let _lock = FileLock::acquire(&host::cache_dir().join("setup.lock"))?;
    ensure_locked(suite)
}

/// Why a suite's QEMU is wanted, for the messages of a fetch that cannot happen.
fn why(suite: Suite) -> String {
    if suite == DEFAULT {
        "no QEMU ≥ 9.0 is installed here, and Debian 12's 7.2 corrupts TCG guests it migrates".into()
    } else {
        format!("QEMU {} was asked for (--qemu / the profile's qemu)", suite.series)
    }
}

/// [`ensure`] for a caller that holds the set-up lock already.
pub fn ensure_locked(suite: Suite) -> Result<Qemu> {
    if let Some((q, _)) = cached(suite) {
        return Ok(q);
    }
    let name = suite.name;
    if host::no_install() {
        bail!(
            "{}, and MIGBENCH_NO_INSTALL forbids fetching {name}'s QEMU into {}. Unset MIGBENCH_NO_INSTALL, \
             or give a qemu-system-x86_64 with --qemu PATH.",
            why(suite),
            dir(suite).display()
        );
    }
    eprintln!("migbench: fetching {name}'s QEMU into {} (once; no QEMU package is installed on the system) …", dir(suite).display());
    let q = fetch(suite).with_context(|| {
        format!(
            "fetching {name}'s QEMU failed ({}). Check that the Debian mirror is reachable, or give a \
             qemu-system-x86_64 with --qemu PATH (or MIGBENCH_QEMU)",
            why(suite)
        )
    })?;
    eprintln!("migbench: {} ready at {}", q.version_line, q.path.display());
    Ok(q)
}

/// The shared libraries `qemu-system-x86` of `control` (its `Depends:` field)
/// needs: every dependency but QEMU's own packages and firmware, which come
/// unpacked.
pub fn library_packages(depends: &str) -> Vec<String> {
    dependency_names(depends).into_iter().filter(|name| !name.starts_with("qemu-") && name != "seabios" && name != "ipxe-qemu").collect()
}

/// The package names of a `Depends:` field, without versions or architectures;
/// for an alternative ("a | b") the first.
pub(crate) fn dependency_names(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|d| d.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Makes sure the unpacked binary's libraries are on the system: Debian 12's own
/// packages of them, installed with apt as root (never removing anything); without
/// root, the error names them.
fn install_libraries(b: &Bundle, root: &Path, debs: &Path) -> Result<()> {
    let binary = root.join(b.binary);
    if missing_libraries(&binary).is_empty() {
        return Ok(());
    }
    let deb = std::fs::read_dir(debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{}_", b.package))))
        .with_context(|| format!("the downloaded {} package is missing", b.package))?;
    let depends = host::run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"))?;
    // Only the missing ones: an installed library is left at its version.
    let libs: Vec<String> = (b.libraries)(&depends).into_iter().filter(|p| !installed(p)).collect();
    let names: Vec<&str> = libs.iter().map(String::as_str).collect();
    let what = binary.file_name().unwrap_or_default().to_string_lossy().into_owned();
    if !host::is_root() || host::no_install() {
        bail!(
            "the {what} unpacked into {} needs shared libraries this system lacks ({}). Install them with \
             `sudo apt-get install --no-install-recommends {}` (Debian 12's own packages), then run migbench again",
            root.display(),
            missing_libraries(&binary).join(", "),
            names.join(" ")
        );
    }
    host::apt_install(&names).with_context(|| format!("installing the libraries of the unpacked {what}"))?;
    let still = missing_libraries(&binary);
    if !still.is_empty() {
        bail!("after installing {}, the unpacked {what} still lacks {}", names.join(" "), still.join(", "));
    }
    Ok(())
}

/// The mirror the system already fetches bookworm from, so a machine with a local
/// mirror keeps using it; Debian's own otherwise.
pub fn mirror() -> String {
    let mut texts = Vec::new();
    texts.extend(std::fs::read_to_string("/etc/apt/sources.list").ok());
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list")).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    texts.iter().find_map(|t| mirror_in(t)).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// The URI of the first source in `text` (one-line or deb822 format) that serves
/// the `bookworm` suite of Debian's main archive (not its security archive).
pub fn mirror_in(text: &str) -> Option<String> {
    let is_archive = |uri: &str| (uri.starts_with("http://") || uri.starts_with("https://")) && !uri.contains("security");
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else { continue };
        let rest = rest.trim_start();
        // `deb [signed-by=…] URI SUITE COMPONENTS`
        let rest = if rest.starts_with('[') { rest.split_once(']').map(|(_, r)| r.trim_start()).unwrap_or("") } else { rest };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some("bookworm")) = (words.next(), words.next()) {
            if is_archive(uri) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| l.trim().strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
        };
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else { continue };
        if field("Types").is_some_and(|t| !t.split_whitespace().any(|w| w == "deb")) || !suites.split_whitespace().any(|s| s == "bookworm") {
            continue;
        }
        if let Some(uri) = uris.split_whitespace().find(|u| is_archive(u)) {
            return Some(uri.trim_end_matches('/').to_string());
        }
    }
    None
}

/// apt with everything it keeps under `state`: the system's sources, lists and
/// caches are neither read nor written.
fn apt(tool: &str, state: &Path) -> Command {
    let mut c = Command::new(tool);
    for (key, value) in [
        ("Dir::Etc::SourceList", state.join("sources.list")),
        ("Dir::Etc::SourceParts", state.join("sources.list.d")),
        ("Dir::State::Lists", state.join("lists")),
        ("Dir::Cache", state.join("cache")),
        ("Dir::Cache::archives", state.join("archives")),
        // An empty package status and no pins: the candidate is what the suite
        // offers, whatever the system has installed or pinned.
        ("Dir::State::status", state.join("status")),
        ("Dir::Etc::Preferences", state.join("preferences")),
        ("Dir::Etc::PreferencesParts", state.join("preferences.d")),
    ] {
        c.arg("-o").arg(format!("{key}={}", value.display()));
    }
    // The private lists need no lock shared with the system's apt.
    c.args(["-o", "Debug::NoLocking=1", "-o", "APT::Get::List-Cleanup=0", "-o", "Dpkg::Use-Pty=0", "-o", "APT::Default-Release="]);
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

fn fetch(suite: Suite) -> Result<Qemu> {
    staged(&dir(suite), &format!("{}'s QEMU", suite.name), |staging| fetch_into(suite, staging))
}

fn fetch_into(suite: Suite, staging: &Path) -> Result<Qemu> {
    let fetched = unpack(&bundle(suite), staging)?;
    let qemu = qemu_in(&fetched.root).identified().context("the unpacked QEMU does not run")?;
    let manifest = Manifest {
        suite: suite.name.into(),
        mirror: fetched.mirror,
        packages: fetched.packages,
        version_line: qemu.version_line.clone(),
        fetched_at: super::stamp(),
    };
    let final_dir = publish(&dir(suite), staging, &manifest, &qemu.version)?;
    qemu_in(&final_dir.join("root")).identified()
}

/// Runs `fetch` on a fresh staging directory `<dir>/fetching-<pid>`, removed if it
/// fails, after checking that apt, dpkg and Debian's key are here (`what`, e.g.
/// "bookworm's QEMU", names the fetch in errors). The caller holds the set-up lock.
pub(crate) fn staged<T>(dir: &Path, what: &str, fetch: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    for tool in ["apt-get", "apt-cache", "dpkg-deb"] {
        if host::which(tool).is_none() {
            bail!("{tool} is not on PATH; fetching {what} needs Debian's apt and dpkg");
        }
    }
    if !Path::new(KEYRING).exists() {
        bail!("{KEYRING} is missing: install debian-archive-keyring, which verifies the packages");
    }
    // What an interrupted fetch left (we hold the set-up lock: nobody fetches now).
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("fetching-")) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let staging = dir.join(format!("fetching-{}", std::process::id()));
    let result = fetch(&staging);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Downloads the bundle's packages with a private apt (verified against Debian's
/// key), unpacks them into `<staging>/root` and makes sure the system has the
/// libraries its binary needs; the downloads and apt's state are removed after.
pub(crate) fn unpack(b: &Bundle, staging: &Path) -> Result<Unpacked> {
    let name = b.suite;
    let state = staging.join("apt");
    for d in ["lists/partial", "cache", "archives/partial", "sources.list.d", "preferences.d"] {
        std::fs::create_dir_all(state.join(d)).with_context(|| format!("creating {}", state.join(d).display()))?;
    }
    std::fs::write(state.join("status"), "")?;
    let mirror = mirror();
    std::fs::write(state.join("sources.list"), format!("deb [signed-by={KEYRING}] {mirror} {name} main\n"))?;
    host::run(apt("apt-get", &state).arg("update")).with_context(|| format!("apt-get update of {name} from {mirror}"))?;
    let mut versions = Vec::new();
    for &p in b.packages {
        let policy = host::run(apt("apt-cache", &state).args(["policy", p]))?;
        let candidate = policy
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:").map(|v| v.trim().to_string()))
            .filter(|v| v != "(none)")
            .with_context(|| format!("{name} at {mirror} has no package {p}"))?;
        versions.push(format!("{p}={candidate}"));
    }
    let debs = staging.join("debs");
    std::fs::create_dir_all(&debs)?;
    // `pkg=version` pins exactly the version the policy named.
    host::run(apt("apt-get", &state).current_dir(&debs).arg("download").args(&versions)).context("apt-get download")?;
    let root = staging.join("root");
    let mut unpacked = 0;
    for e in std::fs::read_dir(&debs)?.flatten() {
        if e.path().extension().is_some_and(|x| x == "deb") {
            host::run(Command::new("dpkg-deb").arg("-x").arg(e.path()).arg(&root))?;
            unpacked += 1;
        }
    }
    if unpacked != b.packages.len() {
        bail!("apt-get download left {unpacked} packages in {}, not {}", debs.display(), b.packages.len());
    }
    install_libraries(b, &root, &debs)?;
    std::fs::remove_dir_all(&debs)?;
    std::fs::remove_dir_all(&state)?;
    Ok(Unpacked { root, mirror, packages: versions })
}

/// The version of a pinned package ("openssh-server=1:9.2p1-2+deb12u7" →
/// "9.2p1-2+deb12u7"), without its epoch: a version directory's name for
/// [`publish`].
pub(crate) fn package_version(pinned: &str) -> String {
    let v = pinned.split_once('=').map_or(pinned, |(_, v)| v);
    v.split_once(':').map_or(v, |(_, v)| v).to_string()
}

/// Writes the manifest into `staging` and moves it to `<dir>/<version>-<fetched_at>`,
/// which `current` then names; returns that directory. A directory of its own: a
/// binary another migbench runs from an earlier fetch keeps its files. `current`
/// changes in one rename.
pub(crate) fn publish(dir: &Path, staging: &Path, manifest: &Manifest, version: &str) -> Result<PathBuf> {
    std::fs::write(staging.join("manifest.json"), serde_json::to_string_pretty(manifest)?)?;
    let version_dir = format!("{version}-{}", manifest.fetched_at);
    let final_dir = dir.join(&version_dir);
    std::fs::rename(staging, &final_dir).with_context(|| format!("moving {} to {}", staging.display(), final_dir.display()))?;
    let current = dir.join("current");
    let tmp = dir.join(format!("current.{}", std::process::id()));
    std::fs::write(&tmp, format!("{version_dir}\n"))?;
    std::fs::rename(&tmp, &current).with_context(|| format!("writing {}", current.display()))?;
    Ok(final_dir)
}

/// Whether dpkg has `package` installed.
fn installed(package: &str) -> bool {
    host::run(Command::new("dpkg-query").args(["-W", "-f=${Status}", package])).is_ok_and(|s| s.trim() == "install ok installed")
}

/// The libraries `ldd` cannot find for `binary` ("libslirp.so.0").
fn missing_libraries(binary: &Path) -> Vec<String> {
    let out = host::run(Command::new("ldd").arg(binary)).unwrap_or_default();
    out.lines().filter(|l| l.contains("not found")).filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_directories_carry_no_epoch() {
        assert_eq!(package_version("openssh-server=1:9.2p1-2+deb12u7"), "9.2p1-2+deb12u7");
        assert_eq!(package_version("openssh-server=9.2p1-2"), "9.2p1-2");
        assert_eq!(package_version("wrk=4.1.0-3+b1"), "4.1.0-3+b1");
        assert_eq!(package_version("apache2-utils=2.4.62-1~deb12u2"), "2.4.62-1~deb12u2");
        assert_eq!(package_version("x=1:2.0"), "2.0");
    }

    #[test]
    fn the_mirror_is_read_from_either_source_format() {
        let one_line = "# comment\ndeb http://deb.debian.org/debian-security bookworm-security main\n\
                        deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian/ bookworm main contrib\n";
        assert_eq!(mirror_in(one_line).as_deref(), Some("http://mirror.example/debian"));
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(mirror_in(deb822).as_deref(), Some("http://deb.debian.org/debian"));
        // Only the security archive, a source-only stanza, or another release: none.
        assert_eq!(mirror_in("deb http://deb.debian.org/debian-security bookworm main\n"), None);
        assert_eq!(mirror_in("Types: deb-src\nURIs: http://x/debian\nSuites: bookworm\n"), None);
        assert_eq!(mirror_in("deb http://deb.debian.org/debian trixie main\n"), None);
        assert_eq!(mirror_in(""), None);
    }

    #[test]
    fn only_libraries_are_installed() {
        let depends = "libaio1 (>= 0.3.93), libc6 (>= 2.34), libglib2.0-0 (>= 2.67.3), libslirp0 (>= 4.7.0), \
                       qemu-system-common (= 1:10.0.2+ds-2+deb13u1~bpo12+1), qemu-system-data (>> 1:10.0.2+ds~), \
                       seabios (>> 1.16.3-1~), ipxe-qemu, libfoo1 | libfoo2";
        assert_eq!(library_packages(depends), ["libaio1", "libc6", "libglib2.0-0", "libslirp0", "libfoo1"]);
        assert!(library_packages("").is_empty());
    }

    #[test]
    fn apt_never_touches_the_systems_state() {
        let c = apt("apt-get", Path::new("/x"));
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        for key in [
            "Dir::Etc::SourceList=/x/sources.list",
            "Dir::State::Lists=/x/lists",
            "Dir::Cache=/x/cache",
            "Dir::Cache::archives=/x/archives",
            "Dir::State::status=/x/status",
            "Dir::Etc::Preferences=/x/preferences",
            "Dir::Etc::PreferencesParts=/x/preferences.d",
        ] {
            assert!(args.iter().any(|a| a == key), "{key} missing in {args:?}");
        }
    }
}
