//! A remote host: the SSH connection to it, the `migbench agent` running there,
//! the guest image copied there, and its preflight facts. Built once per
//! destination (`--dest ssh://…`) and shared by every machine started there.
//!
//! What it copies: this migbench binary to `~/.cache/migbench/agent/migbench-HASH`
//! and the guest image to `~/.cache/migbench/remote-images/KEY/`, each only when
//! missing (the hash or key names it), each written under a temporary name and
//! renamed. Copies no harness has used for a day are removed when one connects (a
//! copy in use by another migbench is never removed).

use super::agent::{AgentClient, CALL_TIMEOUT, Facts, PROTOCOL, Request};
use super::hardware::Accel;
use crate::guest::GuestImage;
use crate::host::qemu_versions::QemuWanted;
use crate::host::ssh::{SshAuth, SshTarget, Ssh, shell_quote};
use crate::host::{HostInfo, Qemu};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What the user asked for: a destination host and how to reach it.
#[derive(Debug, Clone)]
pub struct RemoteSpec {
    pub target: SshTarget,
    pub auth: SshAuth,
    /// The address the migration stream goes to (`--migrate-address`); the SSH
    /// host's address when not given. Never the SSH connection itself.
    pub migrate_address: Option<String>,
    /// The address on the link the guest's clients reach it over once it runs there
    /// (`--client-address`); the migration address when not given (one shared link).
    pub client_address: Option<String>,
    /// The QEMU to run there (`--qemu-dest`), else the host's own default.
    pub qemu: Option<QemuWanted>,
}

/// A connected remote host.
pub struct RemoteHost {
    /// Dropped first: closing its stdin makes the agent kill its QEMUs and leave.
    pub agent: AgentClient,
    pub ssh: Ssh,
    pub facts: Facts,
    /// The guest image's files there.
    pub image: GuestImage,
    pub migrate_address: String,
    /// Where the guest's client traffic reaches this host: the migration address
    /// (a link shared with the migration) or another one (a separate link).
    pub client_address: String,
    pub clock: ClockOffset,
    /// The shape on the link now (`machine::remote_link`), taken off on drop.
    pub(super) shaped: std::sync::Mutex<Option<crate::network::shape::LinkShape>>,
    /// Holds the agent's log, and the name of this host's interface while it is
    /// shaped ([`SHAPED_FILE`]): after a SIGKILL the next migbench clears it.
    dir: super::run_dir::RunDir,
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        // Before the connection goes: the far end is cleared over it.
        if let Err(e) = self.unshape_link() {
            eprintln!("migbench: warning: could not take the shaping off the link to {}: {e:#}", self.ssh.target);
        }
    }
}

/// The file in a remote host's run directory that names this host's interface
/// while migbench has it shaped (see `machine::stale`).
pub const SHAPED_FILE: &str = "shaped-here";

/// The far host's wall clock against ours, measured over one agent round trip.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ClockOffset {
    /// Their clock minus ours, ms (positive: theirs is ahead).
    pub offset_ms: f64,
    /// The round trip it was measured over, ms: the offset is good to half of it.
    pub round_trip_ms: f64,
}

/// The remote host as a record carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemoteRecord {
    pub target: String,
    pub hostname: String,
    pub host: HostInfo,
    pub qemu_version: String,
    pub qemu_path: String,
    pub migrate_address: String,
    /// Where the guest's clients reach it there (the migration address: a shared link).
    #[serde(default)]
    pub client_address: String,
    pub mem_available_mib: u64,
    pub kvm_works: bool,
    pub kvm_detail: String,
    pub clock: ClockOffset,
    /// What differs between the two hosts but does not stop a migration.
    pub differences: Vec<String>,
}

impl std::fmt::Debug for RemoteHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteHost({}, QEMU {})", self.ssh.target, self.facts.qemu.version)
    }
}

impl RemoteHost {
    /// Connects, copies what is missing, starts the agent and reads the host's
    /// facts (checking `accel` runs there).
    pub fn connect(spec: &RemoteSpec, image: &GuestImage, accel: Accel) -> Result<RemoteHost> {
        let ssh = Ssh::connect(&spec.target, &spec.auth, Duration::from_secs(15))?;
        let target = spec.target.to_string();
        let about = ssh.run(r#"printf '%s\n%s\n%s\n' "$HOME" "$(uname -m)" "$SSH_CONNECTION""#).context("asking the host for its home and architecture")?;
        let mut about = about.lines();
        let home = PathBuf::from(about.next().unwrap_or_default());
        let arch = about.next().unwrap_or_default().to_string();
        // "client port server port": the address the host was reached at (an ssh_config
        // alias or a name QEMU could not resolve becomes the address itself).
        let server = about.next().unwrap_or_default().split_whitespace().nth(2).map(String::from);
        if !home.is_absolute() {
            bail!("{target}: the login has no home directory (HOME is {:?}); migbench keeps its copies under ~/.cache/migbench there", home);
        }
        if arch != std::env::consts::ARCH {
            bail!("{target} is {arch}, this migbench is built for {}: run it from a host of the same architecture", std::env::consts::ARCH);
        }
        let cache = home.join(".cache/migbench");
        let exe = copy_agent(&ssh, &cache)?;
        let image_there = copy_image(&ssh, &cache, image)?;
        let dir = super::run_dir::RunDir::new()?;
        let agent = AgentClient::start(ssh.command(&format!("exec {} agent", shell_quote(&exe.display().to_string()))), &dir.path().join("agent.log"), &target)?;
        // Resolving QEMU there may fetch one (minutes, once); a KVM probe boots a guest.
        let facts: Facts = agent
            .ask(&Request::Hello { protocol: PROTOCOL, qemu: spec.qemu.clone(), image: image_there.clone(), accel }, Duration::from_secs(900))
            .with_context(|| format!("preparing {target}"))?;
        let clock = measure_clock(&agent)?;
        let remote_image = GuestImage {
            dir: image_there.clone(),
            kernel: image_there.join("vmlinuz"),
            initramfs: image_there.join("initramfs.cpio"),
            manifest: image.manifest.clone(),
        };
        let migrate_address = match (&spec.migrate_address, server) {
            (Some(a), _) => a.clone(),
            (None, Some(ip)) if ip.parse::<std::net::IpAddr>().is_ok() => ip,
            (None, _) => spec.target.host.clone(),
        };
        let client_address = spec.client_address.clone().unwrap_or_else(|| migrate_address.clone());
        Ok(RemoteHost { ssh, agent, facts, image: remote_image, migrate_address, client_address, clock, shaped: Default::default(), dir })
    }

    /// Starts `qemu` there with `args` as machine `name`; returns its pid there. A
    /// start that did not answer in time is stopped there (when the agent still
    /// answers), so its QEMU does not run on unknown to the harness.
    pub fn start(&self, name: &str, qemu: &Path, args: Vec<String>) -> Result<u32> {
        let started = self.agent.ask(&Request::Start { name: name.into(), qemu: qemu.into(), args }, CALL_TIMEOUT);
        if started.as_ref().is_err_and(|e| e.downcast_ref::<super::agent::NoAnswer>().is_some()) {
            let _ = self.agent.call(&Request::Stop { name: name.into() }, Duration::from_secs(10));
        }
        started
    }

    /// Notes in the run directory that this host's interface `dev` is shaped (or,
    /// with `None`, that nothing is), for the clean-up after a SIGKILL.
    pub(super) fn note_shaped_here(&self, dev: Option<&str>) {
        let file = self.dir.path().join(SHAPED_FILE);
        let _ = match dev {
            Some(d) => std::fs::write(&file, format!("{d}\n")),
            None => std::fs::remove_file(&file).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }),
        };
    }

    /// A TCP port free on this host's migration address now, for QEMU to listen on.
    pub fn free_port(&self) -> Result<u16> {
        self.agent.ask(&Request::FreePort { address: self.migrate_address.clone() }, CALL_TIMEOUT)
    }

    /// Checks a guest of `ram_mib` under `accel` can move here from this host (see [`preflight`]).
    pub fn check(&self, accel: Accel, ram_mib: u32) -> Result<()> {
        let flags = crate::host::cpu_flags(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
        preflight(&flags, accel, ram_mib, &self.facts, &self.ssh.target.to_string())
    }

    /// The host for a record, with what differs from this one.
    pub fn record(&self, local: &HostInfo, local_qemu: &Qemu) -> RemoteRecord {
        RemoteRecord {
            target: self.ssh.target.to_string(),
            hostname: self.facts.hostname.clone(),
            host: self.facts.host.clone(),
            qemu_version: self.facts.qemu.version.clone(),
            qemu_path: self.facts.qemu.path.display().to_string(),
            migrate_address: self.migrate_address.clone(),
            client_address: self.client_address.clone(),
            mem_available_mib: self.facts.mem_available_mib,
            kvm_works: self.facts.kvm_works,
            kvm_detail: self.facts.kvm_detail.clone(),
            clock: self.clock,
            differences: differences(local, local_qemu, &self.facts),
        }
    }
}

/// Checks that a guest of `ram_mib` under `accel` can move from this host to the
/// one `facts` describe; the error names both sides and the fix.
pub fn preflight(local_flags: &[String], accel: Accel, ram_mib: u32, facts: &Facts, target: &str) -> Result<()> {
    if accel == Accel::Kvm && !facts.kvm_works {
        bail!("this host runs KVM but {target} cannot ({}): a guest cannot move between KVM and TCG. Use --accel tcg, or fix KVM there", facts.kvm_detail);
    }
    if accel == Accel::Kvm {
        // `-cpu max` under KVM is the host's CPU: the destination must have every flag the source's guest sees.
        let missing: Vec<&str> = local_flags.iter().filter(|f| !facts.cpu_flags.contains(f)).map(String::as_str).collect();
        if !missing.is_empty() {
            bail!(
                "{target}'s CPU ({}) lacks {} of this host's CPU flags ({}), which a KVM guest here uses: it would not run there after the move. \
                 Migrate between hosts with the same CPU",
                facts.host.cpu_model,
                missing.len(),
                missing.iter().take(12).copied().collect::<Vec<_>>().join(" ")
            );
        }
    }
    let needed = super::hardware::host_mib_for(ram_mib);
    if facts.mem_available_mib < needed {
        bail!("{target} has {} MiB of memory available; a {ram_mib} MiB guest needs about {needed} MiB there. Free memory there or use a smaller guest", facts.mem_available_mib);
    }
    Ok(())
}

/// What differs between this host and the remote one but does not stop a migration.
pub fn differences(local: &HostInfo, local_qemu: &Qemu, facts: &Facts) -> Vec<String> {
    let mut d = Vec::new();
    let mut note = |what: &str, here: &str, there: &str| {
        if here != there {
            d.push(format!("{what}: {here} here, {there} there"));
        }
    };
    note("CPU", &local.cpu_model, &facts.host.cpu_model);
    note("cores", &local.cores.to_string(), &facts.host.cores.to_string());
    note("kernel", &local.kernel, &facts.host.kernel);
    note("QEMU", &local_qemu.version, &facts.qemu.version);
    d
}

/// The clock offset from the quickest of five `Clock` round trips.
fn measure_clock(agent: &AgentClient) -> Result<ClockOffset> {
    let mut best: Option<ClockOffset> = None;
    for _ in 0..5 {
        let (sent, t0) = (SystemTime::now(), Instant::now());
        let theirs: u128 = agent.ask(&Request::Clock, CALL_TIMEOUT)?;
        let c = clock_offset(sent, t0.elapsed(), theirs);
        if best.is_none_or(|b| c.round_trip_ms < b.round_trip_ms) {
            best = Some(c);
        }
    }
    Ok(best.expect("five samples"))
}

/// Their clock minus ours, from a request sent at `sent` (our wall clock) and
/// answered `round_trip` later, stamped `their_ns` by them.
fn clock_offset(sent: SystemTime, round_trip: Duration, their_ns: u128) -> ClockOffset {
    let ours_ns = sent.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() + round_trip.as_nanos() / 2;
    ClockOffset { offset_ms: (their_ns as f64 - ours_ns as f64) / 1e6, round_trip_ms: round_trip.as_secs_f64() * 1000.0 }
}

/// Copies this migbench to the host unless the same binary (by hash) is there;
/// returns its path there.
fn copy_agent(ssh: &Ssh, cache: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this migbench's binary")?;
    let hash = file_hash(&exe)?;
    let dir = cache.join("agent");
    let there = dir.join(format!("migbench-{hash}"));
    copy_once(ssh, &[(&exe, &there, 0o755)], &there, &dir, &format!("migbench-{hash}"))?;
    Ok(there)
}

/// Copies the guest image unless it is there (its key names it); returns its directory there.
fn copy_image(ssh: &Ssh, cache: &Path, image: &GuestImage) -> Result<PathBuf> {
    let dir = cache.join("remote-images");
    let there = dir.join(&image.manifest.key);
    let manifest = image.dir.join("manifest.json");
    let (k, i, m) = (there.join("vmlinuz"), there.join("initramfs.cpio"), there.join("manifest.json"));
    // The manifest last: its presence says the image is whole.
    copy_once(ssh, &[(&image.kernel, &k, 0o644), (&image.initramfs, &i, 0o644), (&manifest, &m, 0o644)], &m, &dir, &image.manifest.key)?;
    Ok(there)
}

/// How long a copy there may go unused before a later copy removes it: another
/// harness (another migbench version, another checkout) may be using it now.
const UNUSED_COPY_MINUTES: u32 = 24 * 60;

/// Copies `files` when `marker` is missing there, marks `keep` (the copy's entry in
/// `dir`) used now, and removes the entries of `dir` there that no harness has used
/// for [`UNUSED_COPY_MINUTES`].
fn copy_once(ssh: &Ssh, files: &[(&Path, &Path, u32)], marker: &Path, dir: &Path, keep: &str) -> Result<()> {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    // Marked used before it is looked for: another harness's clean-up between the
    // two would otherwise remove a copy older than a day that is about to be used.
    let _ = ssh.run(&format!("touch -c -- {}", q(&dir.join(keep))));
    if ssh.run(&format!("test -f {}", q(marker))).is_err() {
        for (local, there, mode) in files {
            ssh.upload(local, &there.display().to_string(), *mode)?;
        }
    }
    // A copy in use is never removed: each connection marks its own used, and only
    // copies untouched for a day go (an upload cut off half way among them).
    let _ = ssh.run(&cleanup_command(&dir.display().to_string(), keep));
    Ok(())
}

/// The shell command that marks `keep` in `dir` used and removes the entries left
/// unused for [`UNUSED_COPY_MINUTES`].
fn cleanup_command(dir: &str, keep: &str) -> String {
    let (d, k) = (shell_quote(dir), shell_quote(keep));
    format!("cd {d} && touch -c -- {k} && find . -mindepth 1 -maxdepth 1 ! -name {k} -mmin +{UNUSED_COPY_MINUTES} -exec rm -rf -- {{}} +")
}

/// The first 16 hex digits of a file's SHA-256.
fn file_hash(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clean_up_keeps_what_is_in_use_and_removes_what_a_day_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
        for (name, when) in [("mine", old), ("stale", old), ("busy", SystemTime::now()), ("x.part-12", old)] {
            let p = tmp.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("f"), "").unwrap();
            std::fs::File::open(&p).unwrap().set_modified(when).unwrap();
        }
        let o = std::process::Command::new("sh").arg("-c").arg(cleanup_command(&tmp.path().display().to_string(), "mine")).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut left: Vec<String> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        // Ours is kept and marked used now; another harness's recent copy is kept.
        assert_eq!(left, ["busy", "mine"]);
        let age = std::fs::metadata(tmp.path().join("mine")).unwrap().modified().unwrap().elapsed().unwrap();
        assert!(age < Duration::from_secs(60), "{age:?}");
    }

    fn facts(flags: &[&str], mem: u64, kvm: bool) -> Facts {
        Facts {
            protocol: PROTOCOL,
            migbench_version: "0".into(),
            hostname: "b".into(),
            host: HostInfo::read(),
            cpu_flags: flags.iter().map(|s| s.to_string()).collect(),
            mem_available_mib: mem,
            qemu: Qemu { path: "/q".into(), version: "10.0.2".into(), version_line: String::new(), data_dirs: vec![], origin: Default::default() },
            machine_help: String::new(),
            kvm_works: kvm,
            kvm_detail: "a KVM guest never said READY".into(),
            run_dir: "/run/x".into(),
            unix_time_ns: 0,
        }
    }

    #[test]
    fn preflight_names_what_stops_a_migration() {
        let here: Vec<String> = ["fpu", "avx2", "sse2"].iter().map(|s| s.to_string()).collect();
        assert!(preflight(&here, Accel::Tcg, 256, &facts(&["fpu"], 4096, false), "b").is_ok(), "TCG does not care for the host CPU");
        let e = preflight(&here, Accel::Kvm, 256, &facts(&["fpu", "sse2"], 4096, true), "ssh://b").unwrap_err().to_string();
        assert!(e.contains("lacks 1") && e.contains("avx2") && e.contains("ssh://b"), "{e}");
        let e = preflight(&here, Accel::Kvm, 256, &facts(&["fpu", "avx2", "sse2"], 4096, false), "ssh://b").unwrap_err().to_string();
        assert!(e.contains("between KVM and TCG") && e.contains("never said READY"), "{e}");
        let e = preflight(&here, Accel::Tcg, 4096, &facts(&[], 1024, false), "ssh://b").unwrap_err().to_string();
        assert!(e.contains("1024 MiB") && e.contains("4096 MiB guest"), "{e}");
    }

    #[test]
    fn the_clock_offset_splits_the_round_trip() {
        let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        // They stamped 5 ms after our send + half the 2 ms round trip: 4 ms ahead.
        let c = clock_offset(sent, Duration::from_millis(2), (1_000_000 + 5) as u128 * 1_000_000);
        assert!((c.offset_ms - 4.0).abs() < 1e-6 && (c.round_trip_ms - 2.0).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn differences_are_listed_not_refused() {
        let local = HostInfo::read();
        let mut f = facts(&[], 1, false);
        f.host.cpu_model = "Other CPU".into();
        let q = Qemu { version: "9.2.0".into(), ..f.qemu.clone() };
        let d = differences(&local, &q, &f);
        assert!(d.iter().any(|l| l.starts_with("CPU:") && l.contains("Other CPU")) && d.iter().any(|l| l == "QEMU: 9.2.0 here, 10.0.2 there"), "{d:?}");
    }
}
