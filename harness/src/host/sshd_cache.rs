//! The OpenSSH server the tests' second host runs (`network::test_host`): the
//! system's `/usr/sbin/sshd` when openssh-server is installed, used as it is;
//! otherwise Debian 12's `openssh-server` (and `openssh-sftp-server`, which `scp`
//! needs) fetched with apt into migbench's cache and unpacked there, exactly as
//! `qemu_cache` does for QEMU and with its machinery ([`qemu_cache::Bundle`]):
//! private apt state, Debian's archive key, no apt source of the system changed,
//! nothing installed but missing library packages sshd links (as root, never
//! removing a package). No service is installed or started: the unpacked sshd only
//! ever runs as the test host's child, in namespaces of its own.

use super::qemu_cache::{self, Bundle, Manifest};
use crate::host::{self, FileLock};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian 12's suite.
pub const SUITE: &str = "bookworm";
/// The packages unpacked: the server and the SFTP server `scp` talks to.
pub const PACKAGES: [&str; 2] = ["openssh-server", "openssh-sftp-server"];
/// Where Debian's openssh-server puts sshd; used as it is when present.
pub const SYSTEM_SSHD: &str = "/usr/sbin/sshd";

fn bundle() -> Bundle {
    Bundle { suite: SUITE, packages: &PACKAGES, binary: "usr/sbin/sshd", package: "openssh-server", libraries: library_packages }
}

/// `<cache>/sshd`: one directory per fetched version, and `current`.
pub fn dir() -> PathBuf {
    host::cache_dir().join("sshd")
}

/// The sshd an unpacked tree holds.
fn sshd_in(root: &Path) -> PathBuf {
    root.join("usr/sbin/sshd")
}

/// The SFTP server beside an sshd (`/usr/sbin/sshd` → `/usr/lib/openssh/sftp-server`,
/// and the same inside an unpacked tree), if there is one: for sshd_config's
/// `Subsystem sftp`.
pub fn sftp_server(sshd: &Path) -> Option<PathBuf> {
    let usr = sshd.parent()?.parent()?;
    Some(usr.join("lib/openssh/sftp-server")).filter(|p| p.is_file())
}

/// The system's sshd, if openssh-server is installed.
pub fn system() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = PathBuf::from(SYSTEM_SSHD);
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
}

/// The first line sshd prints about itself ("OpenSSH_9.2p1 Debian-2+deb12u7, OpenSSL
/// 3.0.17 1 Jul 2025"), which also shows that it runs: it links its libraries.
pub fn version_line(sshd: &Path) -> Result<String> {
    // `-V` prints it on stderr; an sshd too old for `-V` prints it above its usage.
    let out = Command::new(sshd).arg("-V").output().with_context(|| format!("could not run {}", sshd.display()))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("OpenSSH_"))
        .map(String::from)
        .with_context(|| format!("{} -V printed no OpenSSH version: {}", sshd.display(), text.trim()))
}

/// The cached sshd, if one was fetched and still runs.
pub fn cached() -> Option<(PathBuf, Manifest)> {
    let (version_dir, manifest) = qemu_cache::current(&dir())?;
    let sshd = sshd_in(&version_dir.join("root"));
    version_line(&sshd).ok()?;
    Some((sshd, manifest))
}

/// The sshd the test host runs, as an absolute path: the system's, else the cached
/// one, fetched first if there is none (under the set-up lock, so parallel tests
/// fetch once).
pub fn ensure() -> Result<PathBuf> {
    if let Some(p) = system().or_else(|| cached().map(|(p, _)| p)) {
        return Ok(p);
    }
    let _lock = FileLock::acquire(&host::cache_dir().join("setup.lock"))?;
    if let Some((p, _)) = cached() {
        return Ok(p);
    }
    if host::no_install() {
        bail!(
            "the test host needs an OpenSSH server: {SYSTEM_SSHD} is missing, and MIGBENCH_NO_INSTALL forbids fetching \
             Debian's openssh-server into {}. Unset MIGBENCH_NO_INSTALL, or install openssh-server",
            dir().display()
        );
    }
    eprintln!("migbench: fetching {SUITE}'s openssh-server into {} (once; no package or service is installed) …", dir().display());
    let sshd = qemu_cache::staged(&dir(), &format!("{SUITE}'s openssh-server"), fetch_into).context(
        "fetching Debian's openssh-server for the test host failed. Check that the Debian mirror is reachable, \
         or install openssh-server",
    )?;
    eprintln!("migbench: {} ready at {}", version_line(&sshd)?, sshd.display());
    Ok(sshd)
}

fn fetch_into(staging: &Path) -> Result<PathBuf> {
    let fetched = qemu_cache::unpack(&bundle(), staging)?;
    let version_line = version_line(&sshd_in(&fetched.root)).context("the unpacked sshd does not run")?;
    let version = qemu_cache::package_version(&fetched.packages[0]);
    let manifest = Manifest { suite: SUITE.into(), mirror: fetched.mirror, packages: fetched.packages, version_line, fetched_at: host::stamp() };
    let final_dir = qemu_cache::publish(&dir(), staging, &manifest, &version)?;
    Ok(sshd_in(&final_dir.join("root")))
}

/// Of openssh-server's `Depends:`, the shared-library packages sshd links
/// (Debian names them lib…, and zlib1g): not PAM's modules and configuration
/// (libpam-modules, libpam-runtime), which an sshd run with `UsePAM no` never loads,
/// and none of the packages a service install needs (ucf, procps, runit-helper, …).
pub fn library_packages(depends: &str) -> Vec<String> {
    qemu_cache::dependency_names(depends)
        .into_iter()
        .filter(|n| (n.starts_with("lib") && !n.starts_with("libpam-")) || n == "zlib1g")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_libraries_sshd_links_are_installed() {
        let depends = "libpam-modules (>= 0.72-9), libpam-runtime (>= 0.76-14), lsb-base (>= 4.1+Debian3), \
                       openssh-client (= 1:9.2p1-2+deb12u7), openssh-sftp-server, procps, ucf, debconf (>= 0.5) | debconf-2.0, \
                       runit-helper (>= 2.14.0~), libaudit1 (>= 1:2.2.1), libc6 (>= 2.36), libpam0g (>= 0.99.7.1), \
                       libssl3 (>= 3.0.11), libwrap0 (>= 7.6-4~), zlib1g (>= 1:1.1.4)";
        assert_eq!(library_packages(depends), ["libaudit1", "libc6", "libpam0g", "libssl3", "libwrap0", "zlib1g"]);
        assert!(library_packages("").is_empty());
    }

    #[test]
    fn the_sftp_server_is_found_beside_sshd() {
        let root = tempfile::tempdir().unwrap();
        let sshd = root.path().join("usr/sbin/sshd");
        assert_eq!(sftp_server(&sshd), None);
        std::fs::create_dir_all(root.path().join("usr/lib/openssh")).unwrap();
        std::fs::write(root.path().join("usr/lib/openssh/sftp-server"), "").unwrap();
        assert_eq!(sftp_server(&sshd), Some(root.path().join("usr/lib/openssh/sftp-server")));
    }
}
