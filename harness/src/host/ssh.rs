//! Another host, reached with the system's OpenSSH client: one master connection
//! per host (`ControlMaster`), and every command, upload and socket forward after
//! it multiplexed over that one connection. No protocol of our own crosses the
//! network: what runs there (`migbench agent`) talks over an SSH session's stdio.
//!
//! The master runs in its own process group and dies with migbench
//! (PR_SET_PDEATHSIG); dropping an [`Ssh`] closes it, and with it every session
//! and forward it carried.

use anyhow::{Context, Result, bail};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Where a remote host is: `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl FromStr for SshTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<SshTarget, String> {
        let fix = "write it as ssh://user@host or ssh://user@host:port (e.g. ssh://root@198.18.0.6)";
        let Some(rest) = text.strip_prefix("ssh://") else {
            return Err(format!("{text:?} is not an ssh:// address: {fix}"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!("{text:?} has a path or query, which an ssh:// destination does not take: {fix}"));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if let Some(u) = user {
            if u.is_empty() || !u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) || u.starts_with('-') {
                return Err(format!("{text:?}: the user {u:?} is not a user name: {fix}"));
            }
        }
        // [v6]:port, host:port, or host.
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("{text:?}: an IPv6 address needs its closing ]: {fix}"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || host.starts_with('-') || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c)) {
            return Err(format!("{text:?} names no host: {fix}"));
        }
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("{text:?}: the port {p:?} is not 1 to 65535: {fix}"))?),
        };
        Ok(SshTarget { user: user.map(String::from), host: host.to_string(), port })
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') { write!(f, "[{}]", self.host)? } else { write!(f, "{}", self.host)? }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for SshTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SshTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SshTarget, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl SshTarget {
    /// `user@host` as ssh's destination argument.
    fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Whether `text` can be a migration address: an IP address or a host name, no
/// port (QEMU picks one), no URI; the error says what to give.
pub fn check_migrate_address(text: &str) -> Result<(), String> {
    let name = |t: &str| !t.is_empty() && !t.starts_with(['-', '.']) && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if text.parse::<std::net::IpAddr>().is_ok() || name(text) {
        return Ok(());
    }
    Err(format!("--migrate-address {text:?}: give the destination host's IP address (198.18.0.6, fd00::2) or name on the link the migration should use, without a port or brackets"))
}

/// The IP address `address` names (an IPv6 one with or without brackets).
pub fn address_ip(address: &str) -> Result<std::net::IpAddr> {
    address.trim_start_matches('[').trim_end_matches(']').parse().with_context(|| format!("the address {address:?} is not an IP address"))
}

/// `address` as the host part of a QEMU `tcp:` URI (an IPv6 address in brackets).
pub fn uri_host(address: &str) -> String {
    if address.contains(':') { format!("[{address}]") } else { address.to_string() }
}

/// How to authenticate: a key file (`--ssh-key`), else the user's own ssh config
/// and agent; `options` are more `-o` settings (the tests pin a known_hosts file).
#[derive(Debug, Clone, Default)]
pub struct SshAuth {
    pub key: Option<PathBuf>,
    pub options: Vec<String>,
}

/// Quotes `s` for the remote user's POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One master connection to a host.
pub struct Ssh {
    pub target: SshTarget,
    /// The private directory holding the control socket and the master's log.
    dir: tempfile::TempDir,
    control: PathBuf,
    master: std::process::Child,
    base: Vec<String>,
}

impl Ssh {
    /// Opens the master connection and waits until it is up; the error says why
    /// not (refused key, unknown host key, unreachable host) with ssh's own words.
    pub fn connect(target: &SshTarget, auth: &SshAuth, timeout: Duration) -> Result<Ssh> {
        if super::which("ssh").is_none() {
            bail!("`ssh` is not on PATH: migbench reaches {target} with the system's OpenSSH client (Debian: apt-get install openssh-client)");
        }
        if let Some(k) = &auth.key {
            if !k.is_file() {
                bail!("--ssh-key {}: no such file (give the private key that logs in to {target})", k.display());
            }
        }
        let dir = tempfile::Builder::new().prefix("migbench-ssh-").tempdir().context("creating a directory for the SSH control socket")?;
        let control = dir.path().join("c");
        // No terminal, no command of the user's config in place of ours.
        let mut base = vec![
            "-T".into(),
            "-o".into(),
            "RequestTTY=no".into(),
            "-o".into(),
            "RemoteCommand=none".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={}", timeout.as_secs().max(1)),
            "-o".into(),
            "ServerAliveInterval=5".into(),
            "-o".into(),
            "ServerAliveCountMax=6".into(),
            "-S".into(),
            control.display().to_string(),
        ];
        if let Some(k) = &auth.key {
            base.extend(["-i".into(), k.display().to_string(), "-o".into(), "IdentitiesOnly=yes".into()]);
        }
        for o in &auth.options {
            base.extend(["-o".into(), o.clone()]);
        }
        if let Some(p) = target.port {
            base.extend(["-p".into(), p.to_string()]);
        }
        let log = dir.path().join("master.log");
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new("ssh");
        cmd.args(&base)
            .args(["-M", "-N", "-o", "ControlPersist=no", "-o", "ExitOnForwardFailure=yes"])
            .arg(target.destination())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let master = super::spawn_tied(cmd).context("starting ssh")?;
        let mut ssh = Ssh { target: target.clone(), dir, control, master, base };
        let deadline = Instant::now() + timeout + Duration::from_secs(2);
        loop {
            if let Ok(Some(status)) = ssh.master.try_wait() {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("{}", connect_error(target, auth, &status.to_string(), said.trim()));
            }
            if ssh.control.exists() && ssh.check() {
                return Ok(ssh);
            }
            if Instant::now() >= deadline {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("{}", connect_error(target, auth, "no connection", said.trim()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the master connection is up.
    pub fn check(&self) -> bool {
        Command::new("ssh")
            .args(&self.base)
            .args(["-O", "check"])
            .arg(self.target.destination())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A command that runs `remote` (a shell command line) on the host over the
    /// master connection; the caller sets its stdio.
    pub fn command(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        // Through the master only: never a master of its own.
        c.args(&self.base).args(["-o", "ControlMaster=no"]).arg(self.target.destination()).arg("--").arg(remote);
        c
    }

    /// Runs `remote` there and returns its stdout; the error quotes its stderr.
    pub fn run(&self, remote: &str) -> Result<String> {
        let out = self.command(remote).stdin(Stdio::null()).output().with_context(|| format!("running `{remote}` on {}", self.target))?;
        if !out.status.success() {
            bail!("`{remote}` on {} failed ({}): {}", self.target, out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Copies `local` to `remote` there (mode `mode`), through a temporary name and
    /// one rename: a half-copied file is never taken for a whole one.
    pub fn upload(&self, local: &Path, remote: &str, mode: u32) -> Result<()> {
        let file = std::fs::File::open(local).with_context(|| format!("opening {}", local.display()))?;
        let tmp = format!("{remote}.part-{}", std::process::id());
        let dir = Path::new(remote).parent().map(|d| d.display().to_string()).unwrap_or_else(|| ".".into());
        let script = format!(
            "umask 077 && mkdir -p {d} && cat > {t} && chmod {mode:o} {t} && mv -f {t} {r}",
            d = shell_quote(&dir),
            t = shell_quote(&tmp),
            r = shell_quote(remote)
        );
        let out = self.command(&script).stdin(file).output().with_context(|| format!("copying {} to {}", local.display(), self.target))?;
        if !out.status.success() {
            bail!("copying {} to {}:{remote} failed ({}): {}", local.display(), self.target, out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Forwards the local unix socket `local` to `remote` there (a QEMU's QMP or
    /// guest channel), over the master connection.
    pub fn forward_unix(&self, local: &Path, remote: &Path) -> Result<()> {
        let _ = std::fs::remove_file(local);
        let spec = format!("{}:{}", local.display(), remote.display());
        let out = Command::new("ssh")
            .args(&self.base)
            .args(["-O", "forward", "-o", "StreamLocalBindUnlink=yes", "-L", &spec])
            .arg(self.target.destination())
            .stdin(Stdio::null())
            .output()
            .context("asking ssh to forward a socket")?;
        if !out.status.success() {
            bail!(
                "forwarding {} to {}:{} failed ({}): {} (the server must allow it: AllowStreamLocalForwarding yes)",
                local.display(),
                self.target,
                remote.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Ends a forward [`Ssh::forward_unix`] made (the master keeps each one, and
    /// its listening socket, until told).
    pub fn cancel_forward(&self, local: &Path, remote: &Path) {
        let spec = format!("{}:{}", local.display(), remote.display());
        let _ = Command::new("ssh")
            .args(&self.base)
            .args(["-O", "cancel", "-L", &spec])
            .arg(self.target.destination())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(local);
    }

    /// The master's own messages so far (for an error).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default()
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .args(&self.base)
            .args(["-O", "exit"])
            .arg(self.target.destination())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // SAFETY: signalling the process group of the master we started.
        unsafe { libc::kill(-(self.master.id() as i32), libc::SIGKILL) };
        let _ = self.master.wait();
    }
}

/// Why the connection to `target` failed, with ssh's words and the fix.
fn connect_error(target: &SshTarget, auth: &SshAuth, status: &str, said: &str) -> String {
    let key = auth.key.as_ref().map_or("your ssh agent's and ~/.ssh's keys".to_string(), |k| format!("the key {}", k.display()));
    let fix = if said.contains("Permission denied") {
        format!("{target} refused {key}: add its public key to the user's ~/.ssh/authorized_keys there, or give another with --ssh-key")
    } else if said.contains("Host key verification failed") || said.contains("No matching host key") {
        format!("{target}'s host key is not known or has changed: connect once with `ssh {}` and check its fingerprint", target.destination())
    } else if said.contains("timed out") || said.contains("No route to host") || said.contains("Network is unreachable") || said.contains("Connection refused") || said.contains("Could not resolve") {
        format!("{target} cannot be reached: check the address and port, and that sshd runs there")
    } else {
        format!("could not connect to {target}")
    };
    format!("{fix}. ssh said ({status}): {}", if said.is_empty() { "nothing" } else { said })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_print_back() {
        for (text, user, host, port) in [
            ("ssh://root@198.18.0.6", Some("root"), "198.18.0.6", None),
            ("ssh://bench@host-b.example:2222", Some("bench"), "host-b.example", Some(2222)),
            ("ssh://hostb", None, "hostb", None),
            ("ssh://me@[fd00::2]:22", Some("me"), "fd00::2", Some(22)),
        ] {
            let t: SshTarget = text.parse().unwrap();
            assert_eq!((t.user.as_deref(), t.host.as_str(), t.port), (user, host, port), "{text}");
            assert_eq!(t.to_string(), text);
        }
    }

    #[test]
    fn bad_destinations_say_how_to_write_one() {
        for bad in ["root@host", "ssh://", "ssh://root@", "ssh://root@host:0", "ssh://root@host:99999", "ssh://-oProxyCommand=x", "ssh://a b@h", "ssh://h/path", "ssh://[fd00::2"] {
            let e = bad.parse::<SshTarget>().unwrap_err();
            assert!(e.contains("ssh://user@host"), "{bad}: {e}");
        }
    }

    #[test]
    fn migration_addresses_are_checked_and_bracketed() {
        for ok in ["198.19.0.2", "fd00::2", "host-b.example", "hostb"] {
            assert!(check_migrate_address(ok).is_ok(), "{ok}");
        }
        for bad in ["", "host:4444", "[fd00::2]", "-oX", "a b", "tcp:1.2.3.4", "h/x"] {
            assert!(check_migrate_address(bad).unwrap_err().contains("without a port"), "{bad}");
        }
        assert_eq!(uri_host("fd00::2"), "[fd00::2]");
        assert_eq!(uri_host("198.19.0.2"), "198.19.0.2");
    }

    #[test]
    fn quoting_survives_the_remote_shell() {
        assert_eq!(shell_quote("/root/.cache/migbench/agent"), "/root/.cache/migbench/agent");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        let out = Command::new("sh").arg("-c").arg(format!("printf %s {}", shell_quote("x'; echo pwned; '$(id)"))).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'; echo pwned; '$(id)");
    }

    #[test]
    fn an_unreachable_host_is_named_with_the_fix() {
        // Loopback, a port nothing listens on: refused at once, nothing leaves this host.
        let t: SshTarget = "ssh://root@127.0.0.1:1".parse().unwrap();
        let e = Ssh::connect(&t, &SshAuth::default(), Duration::from_secs(3)).err().expect("no sshd on port 1");
        let e = format!("{e:#}");
        assert!(e.contains("cannot be reached") && e.contains("ssh://root@127.0.0.1:1"), "{e}");
    }
}
