//! The machine migbench runs on: where its cache lives, the QEMU it uses (installed
//! through apt when missing), and the facts every result carries (CPU, cores,
//! kernel, cgroup version) so a number never travels without its context.

pub mod qemu_cache;
pub mod qemu_versions;
pub mod ssh;
pub mod sshd_cache;
pub mod tool_cache;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// migbench's cache: `$MIGBENCH_CACHE`, else `$XDG_CACHE_HOME/migbench`, else `~/.cache/migbench`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MIGBENCH_CACHE").filter(|s| !s.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("migbench")
}

/// An exclusive advisory lock on a file, held until dropped. Set-up takes one so
/// that test binaries and parallel commands build the image once, not racing.
/// It is a flock(2) lock: the kernel releases it when its holder dies, SIGKILL
/// included, so no lock is ever stale; the file itself stays and is reused.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        loop {
            // SAFETY: flock on a valid fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
    }

    /// Takes the lock of an existing file if nobody holds it; `None` if someone does.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = File::options().write(true).open(path).with_context(|| format!("opening lock file {}", path.display()))?;
        loop {
            // SAFETY: flock on a valid fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Some(FileLock { _file: file }));
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(err).with_context(|| format!("locking {}", path.display())),
            }
        }
    }
}

/// Runs a command to completion, returning stdout; the error names the command and
/// quotes its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().with_context(|| format!("could not run `{shown}`"))?;
    if !out.status.success() {
        bail!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Spawns `cmd` (which sets PR_SET_PDEATHSIG in its `pre_exec`) from one
/// long-lived thread: PR_SET_PDEATHSIG fires when the *thread*
/// that forked the child exits, so forking from a short-lived runtime thread would
/// kill QEMU early.
pub fn spawn_tied(cmd: Command) -> std::io::Result<std::process::Child> {
    use std::sync::{Mutex, mpsc};
    type Job = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);
    static SPAWNER: std::sync::OnceLock<Mutex<mpsc::Sender<Job>>> = std::sync::OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("migbench-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the process-spawner thread");
        Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::channel();
    tx.lock().unwrap().send((cmd, rtx)).map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    rrx.recv().map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// Whether `MIGBENCH_NO_INSTALL` forbids installing or fetching anything.
pub fn no_install() -> bool {
    std::env::var_os("MIGBENCH_NO_INSTALL").is_some_and(|v| !v.is_empty() && v != "0")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Finds an executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// The `flags` of the first CPU in /proc/cpuinfo.
pub fn cpu_flags(cpuinfo: &str) -> Vec<String> {
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags").and_then(|r| r.trim_start().strip_prefix(':')))
        .map(|f| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// `MemAvailable` from /proc/meminfo, MiB.
pub fn mem_available_mib(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kib / 1024)
}

/// Which distribution family we are on, from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: String,
    pub pretty: String,
    /// `VERSION_CODENAME`, e.g. "bookworm".
    pub codename: String,
}

impl OsRelease {
    pub fn read() -> OsRelease {
        Self::parse(&std::fs::read_to_string("/etc/os-release").unwrap_or_default())
    }

    pub fn parse(text: &str) -> OsRelease {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        OsRelease { id: get("ID"), id_like: get("ID_LIKE"), pretty: get("PRETTY_NAME"), codename: get("VERSION_CODENAME") }
    }

    pub fn is_debian_like(&self) -> bool {
        self.id == "debian" || self.id == "ubuntu" || self.id_like.split(' ').any(|w| w == "debian" || w == "ubuntu")
    }

    /// Debian 12, whose backports suite has a QEMU ≥ 9.0.
    pub fn is_bookworm(&self) -> bool {
        self.id == "debian" && self.codename == "bookworm"
    }

    pub fn is_ubuntu(&self) -> bool {
        self.id == "ubuntu" || self.id_like.split(' ').any(|w| w == "ubuntu")
    }
}

/// Where the QEMU migbench drives came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QemuOrigin {
    /// `qemu-system-x86_64` on `PATH` (the distribution's, apt-installed when missing).
    #[default]
    System,
    /// `--qemu PATH` or `$MIGBENCH_QEMU`: the user's choice, used as it is.
    Chosen,
    /// Fetched into migbench's cache (see `qemu_cache`).
    Cache,
}

impl std::fmt::Display for QemuOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            QemuOrigin::System => "the system's",
            QemuOrigin::Chosen => "chosen with --qemu/MIGBENCH_QEMU",
            QemuOrigin::Cache => "migbench's cache",
        })
    }
}

/// The QEMU binary migbench drives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Qemu {
    pub path: PathBuf,
    /// e.g. "7.2.22"
    pub version: String,
    /// The whole first line of `--version`, e.g. with the distribution's package version.
    pub version_line: String,
    /// Firmware directories given to it with `-L` (a QEMU unpacked outside `/usr`).
    #[serde(default)]
    pub data_dirs: Vec<PathBuf>,
    #[serde(default)]
    pub origin: QemuOrigin,
}

/// The first QEMU release whose TCG dirty tracking migrates a guest that writes
/// memory intact. Measured here with the same kernel, image and migbench: 7.2.22 as
/// the sender left 1 of 30 such guests healthy, 10.0 33 of 33; 10.0 → 7.2 6 of 6,
/// 7.2 → 10.0 0 of 6. QEMU fixed the dirty-bitmap coherency of TCG writes in 9.0.
pub const FIRST_INTACT_TCG_SENDER: (u32, u32) = (9, 0);

impl Qemu {
    /// `explicit` (`--qemu`), else `$MIGBENCH_QEMU`, else `qemu-system-x86_64` on
    /// `PATH`; `None` if none of them.
    pub fn find(explicit: Option<&Path>) -> Result<Option<Qemu>> {
        let from_env = std::env::var_os("MIGBENCH_QEMU").filter(|s| !s.is_empty()).map(PathBuf::from);
        let (path, origin) = match (explicit, from_env) {
            (Some(p), _) => {
                if !p.exists() {
                    bail!("--qemu {} does not exist: point it at a qemu-system-x86_64 binary", p.display());
                }
                (p.to_path_buf(), QemuOrigin::Chosen)
            }
            (None, Some(p)) => {
                if !p.exists() {
                    bail!("MIGBENCH_QEMU={} does not exist: point it at a qemu-system-x86_64 binary or unset it", p.display());
                }
                (p, QemuOrigin::Chosen)
            }
            (None, None) => match which("qemu-system-x86_64") {
                Some(p) => (p, QemuOrigin::System),
                None => return Ok(None),
            },
        };
        Qemu::at(path, origin).map(Some)
    }

    /// The QEMU at `path` (firmware where it was built to look), identified.
    pub fn at(path: PathBuf, origin: QemuOrigin) -> Result<Qemu> {
        Qemu { path, version: String::new(), version_line: String::new(), data_dirs: Vec::new(), origin }.identified()
    }

    /// This QEMU with its version read from `--version`.
    pub fn identified(mut self) -> Result<Qemu> {
        let out = run(Command::new(&self.path).args(self.data_dir_args()).arg("--version"))?;
        self.version_line = out.lines().next().unwrap_or("").trim().to_string();
        self.version = parse_qemu_version(&self.version_line)
            .with_context(|| format!("{} --version printed {:?}, not a QEMU version", self.path.display(), self.version_line))?;
        Ok(self)
    }

    /// `-L DIR` for each firmware directory.
    pub fn data_dir_args(&self) -> Vec<std::ffi::OsString> {
        self.data_dirs.iter().flat_map(|d| [std::ffi::OsString::from("-L"), d.clone().into_os_string()]).collect()
    }

    /// The versioned machine type an alias such as "pc" stands for on this QEMU,
    /// e.g. "pc-i440fx-10.0", from `-machine help`; the alias itself where the
    /// list does not say.
    pub fn machine_type(&self, alias: &str) -> Result<String> {
        let out = self.machine_help()?;
        Ok(machine_alias_target(&out, alias).unwrap_or_else(|| alias.to_string()))
    }

    /// The machine types this QEMU offers (the first word of each `-machine help` line).
    pub fn machine_types(&self) -> Result<Vec<String>> {
        Ok(machine_types_in(&self.machine_help()?))
    }

    /// What `-machine help` prints (read on a remote host by its agent).
    pub fn machine_help(&self) -> Result<String> {
        run(Command::new(&self.path).args(self.data_dir_args()).args(["-machine", "help"]))
    }

    /// (major, minor), or `None` for a version that does not parse.
    pub fn major_minor(&self) -> Option<(u32, u32)> {
        let mut parts = self.version.split('.').map(|p| p.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??))
    }

    /// Whether this QEMU, as the sender, migrates a TCG guest that writes memory
    /// intact (see [`FIRST_INTACT_TCG_SENDER`]).
    pub fn tcg_sender_intact(&self) -> bool {
        self.major_minor().is_some_and(|v| v >= FIRST_INTACT_TCG_SENDER)
    }

    /// For a machine where [`Qemu::find`] found none: installs `qemu-system-x86`
    /// with apt when we are root on Debian or Ubuntu; otherwise stops and says what
    /// to install.
    pub fn install() -> Result<Qemu> {
        let os = OsRelease::read();
        if !os.is_debian_like() {
            bail!(
                "QEMU is not installed: no qemu-system-x86_64 on PATH. migbench installs it by itself only on Debian/Ubuntu; \
                 on {} install the package that provides qemu-system-x86_64 (e.g. `dnf install qemu-system-x86`), \
                 or set MIGBENCH_QEMU=/path/to/qemu-system-x86_64.",
                if os.pretty.is_empty() { "this system" } else { &os.pretty }
            );
        }
        if no_install() {
            bail!(
                "QEMU is not installed: no qemu-system-x86_64 on PATH, and MIGBENCH_NO_INSTALL forbids installing it. \
                 Install it with `sudo apt-get install qemu-system-x86`, or set MIGBENCH_QEMU=/path/to/qemu-system-x86_64."
            );
        }
        if !is_root() {
            bail!(
                "QEMU is not installed: no qemu-system-x86_64 on PATH. Install it with \
                 `sudo apt-get install qemu-system-x86` (or run migbench as root and it installs it), \
                 or set MIGBENCH_QEMU=/path/to/qemu-system-x86_64."
            );
        }
        apt_install(&["qemu-system-x86"]).context(
            "QEMU is not installed and installing it failed; install qemu-system-x86 yourself \
             or set MIGBENCH_QEMU=/path/to/qemu-system-x86_64",
        )?;
        Qemu::find(None)?.context("apt-get installed qemu-system-x86 but qemu-system-x86_64 is still not on PATH")
    }
}

/// In `-machine help` output, what `alias` is an alias of:
/// "pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)".
pub fn machine_alias_target(help: &str, alias: &str) -> Option<String> {
    help.lines().find_map(|l| {
        let (name, rest) = l.trim().split_once(char::is_whitespace)?;
        (name == alias).then_some(())?;
        let target = rest.split("(alias of ").nth(1)?.split(')').next()?.trim();
        (!target.is_empty()).then(|| target.to_string())
    })
}

/// The machine type a guest migrating between `source` and `destination` runs on
/// both: the versioned type the `alias` ("pc") stands for on the older of the two,
/// which the newer must offer too (QEMU keeps old versioned types so that guests can
/// migrate from older QEMUs). For one QEMU, its own.
pub fn common_machine_type(source: &Qemu, destination: &Qemu, alias: &str) -> Result<String> {
    let source_help = source.machine_help()?;
    // One binary: its listing once.
    let destination_help = if destination.path == source.path { source_help.clone() } else { destination.machine_help()? };
    common_machine_type_of((source, &source_help), (destination, &destination_help), alias)
}

/// [`common_machine_type`] from each QEMU's `-machine help` (a remote QEMU's is
/// read by its host's agent).
pub fn common_machine_type_of(source: (&Qemu, &str), destination: (&Qemu, &str), alias: &str) -> Result<String> {
    let older = if destination.0.major_minor() < source.0.major_minor() { destination } else { source };
    let newer = if std::ptr::eq(older.0, source.0) { destination } else { source };
    let pinned = machine_alias_target(older.1, alias).unwrap_or_else(|| alias.to_string());
    if source.1 != destination.1 && !machine_types_in(newer.1).contains(&pinned) {
        bail!(
            "QEMU {} (the older side) runs machine type {pinned}, which QEMU {} does not offer: these two cannot migrate \
             a guest between them. Choose versions closer together",
            older.0.version,
            newer.0.version
        );
    }
    Ok(pinned)
}

/// The machine types in a `-machine help` listing.
pub fn machine_types_in(help: &str) -> Vec<String> {
    help.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

/// "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" → "7.2.22"
pub fn parse_qemu_version(line: &str) -> Option<String> {
    let rest = line.split("version").nth(1)?.trim_start();
    let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let v = v.trim_end_matches('.');
    (v.contains('.') && v.split('.').all(|p| !p.is_empty())).then(|| v.to_string())
}

/// `apt-get install` as root, refreshing the package lists first when needed.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    tracing::info!("installing {} with apt-get", packages.join(" "));
    eprintln!("migbench: installing {} with apt-get (needed once) …", packages.join(" "));
    let install = || {
        run(Command::new("apt-get")
            // --no-remove: an install that would take a package away from the user
            // (Debian 12's QEMU 7.2 would remove a backports qemu-utils) fails instead.
            .args(["install", "-y", "--no-install-recommends", "--no-remove", "-o", "Dpkg::Use-Pty=0"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_ok() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-o", "Dpkg::Use-Pty=0"]).env("DEBIAN_FRONTEND", "noninteractive"))
        .context("apt-get update failed (is the network to the Debian/Ubuntu mirror reachable?)")?;
    install().with_context(|| {
        format!(
            "apt-get install {} failed. migbench lets apt install nothing that would remove a package (--no-remove); \
             if apt's message above says it would, install the packages yourself and decide what to remove",
            packages.join(" ")
        )
    })?;
    Ok(())
}

/// The host facts every result records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub os: String,
    pub cgroup: CgroupVersion,
}

impl HostInfo {
    pub fn read() -> HostInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| "unknown".into());
        HostInfo {
            cpu_model,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            os: OsRelease::read().pretty,
            cgroup: CgroupVersion::detect(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Only the unified hierarchy at /sys/fs/cgroup.
    V2,
    /// v1 controllers (cpu, cpuset) mounted; maybe a v2 hierarchy beside them.
    V1,
    None,
}

impl CgroupVersion {
    pub fn detect() -> CgroupVersion {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            CgroupVersion::V2
        } else if Path::new("/sys/fs/cgroup/cpu").exists() || Path::new("/sys/fs/cgroup/cpu,cpuacct").exists() {
            CgroupVersion::V1
        } else {
            CgroupVersion::None
        }
    }
}

/// A timestamp for file names: 20261123T093000Z.
pub fn stamp() -> String {
    let s = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    s.replace(['-', ':'], "")
}

/// Lower-case hex of some bytes (digests in cache keys and records).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_memory_are_read() {
        let cpu = "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu vme sse2 avx2\n\nprocessor\t: 1\nflags\t\t: fpu\n";
        assert_eq!(cpu_flags(cpu), ["fpu", "vme", "sse2", "avx2"]);
        assert!(cpu_flags("nothing").is_empty());
        assert_eq!(mem_available_mib("MemTotal: 100 kB\nMemAvailable:   2097152 kB\n"), Some(2048));
        assert_eq!(mem_available_mib("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn qemu_version_lines() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)").as_deref(),
            Some("7.2.22")
        );
        assert_eq!(parse_qemu_version("QEMU emulator version 10.0.2").as_deref(), Some("10.0.2"));
        assert_eq!(parse_qemu_version("QEMU emulator version 9.1.0 (v9.1.0-dirty)").as_deref(), Some("9.1.0"));
        assert_eq!(parse_qemu_version("nonsense"), None);
        assert_eq!(parse_qemu_version("version x"), None);
    }

    #[test]
    fn machine_aliases() {
        let help = "Supported machines are:\nmicrovm              microvm (i386)\n\
                    pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)\n\
                    pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)\n\
                    q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)\n";
        assert_eq!(machine_alias_target(help, "pc").as_deref(), Some("pc-i440fx-10.0"));
        assert_eq!(machine_alias_target(help, "q35").as_deref(), Some("pc-q35-10.0"));
        assert_eq!(machine_alias_target(help, "microvm"), None);
        assert_eq!(machine_alias_target(help, "pc-i440fx-10.0"), None);
    }

    #[test]
    fn tcg_sender_versions() {
        let q = |v: &str| Qemu { path: "/q".into(), version: v.into(), version_line: String::new(), data_dirs: vec![], origin: QemuOrigin::System };
        assert!(!q("7.2.22").tcg_sender_intact());
        assert!(!q("8.2.2").tcg_sender_intact());
        assert!(q("9.0.0").tcg_sender_intact());
        assert!(q("10.0.2").tcg_sender_intact());
        assert!(!q("garbage").tcg_sender_intact());
        assert_eq!(q("10.1").major_minor(), Some((10, 1)));
    }

    #[test]
    fn os_release() {
        let d = OsRelease::parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n");
        assert!(d.is_debian_like() && !d.is_ubuntu() && d.is_bookworm());
        let u = OsRelease::parse("ID=ubuntu\nID_LIKE=debian\n");
        assert!(u.is_debian_like() && u.is_ubuntu() && !u.is_bookworm());
        let f = OsRelease::parse("ID=fedora\n");
        assert!(!f.is_debian_like());
    }

    #[test]
    fn file_lock_is_exclusive_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = FileLock::acquire(&path).unwrap();
        let file = File::options().write(true).open(&path).unwrap();
        // SAFETY: valid fd.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1, "a second exclusive lock must not be granted while the first is held");
        drop(held);
        // SAFETY: valid fd.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    }
}
