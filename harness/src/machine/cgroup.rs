//! CPU limits for one QEMU process through a cgroup of its own: a CPU cap
//! (`cap_percent`, % of one host CPU, as the Xen credit scheduler's cap in the
//! papers) and a cpuset (`host_cores`). cgroup v2 (`cpu.max`, `cpuset.cpus`) or v1
//! (`cpu.cfs_quota_us`, `cpuset.cpus`), whichever the host has. Limits change while
//! the guest runs; the cgroup is removed when dropped.

use crate::host::CgroupVersion;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

const PERIOD_US: u64 = 100_000;
const V1_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup(s) of one QEMU.
#[derive(Debug)]
pub struct CpuCgroup {
    version: CgroupVersion,
    /// v2: the one group; v1: the group in the cpu hierarchy.
    cpu_dir: PathBuf,
    /// v1 only: the group in the cpuset hierarchy, made when `host_cores` is first set.
    cpuset_dir: Option<PathBuf>,
    /// Whether a core limit is in force (so lifting it has something to undo).
    cores_limited: bool,
    name: String,
    pids: Vec<u32>,
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
}

/// The quota for a cap: `percent` of one CPU per period.
pub fn quota_us(percent: u32) -> u64 {
    (percent as u64 * PERIOD_US / 100).max(1000)
}

/// Turns a controller on for the children of the v2 root, saying plainly why it
/// cannot be done when the write fails.
fn enable_v2_controller(controller: &str) -> Result<()> {
    let root = Path::new(V1_ROOT);
    let control = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    if control.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    std::fs::write(root.join("cgroup.subtree_control"), format!("+{controller}")).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EBUSY) => "the cgroup at /sys/fs/cgroup holds processes itself (a container with its own cgroup \
                                  namespace?); give migbench a delegated cgroup subtree or run it on the host"
                .to_string(),
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => "CPU caps and core limits need root".to_string(),
            _ => e.to_string(),
        };
        anyhow::anyhow!("cannot enable the {controller} controller for child cgroups in /sys/fs/cgroup: {why}")
    })
}

/// A CPU list such as "0-3,8" as numbers.
pub fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    cpus.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            None => cpus.extend(part.trim().parse::<u32>().ok()),
        }
    }
    cpus
}

impl CpuCgroup {
    /// Makes an empty cgroup named `migbench-<our pid>-<name>`.
    pub fn create(name: &str) -> Result<CpuCgroup> {
        let version = CgroupVersion::detect();
        let name = format!("migbench-{}-{name}", std::process::id());
        let cpu_dir = match version {
            CgroupVersion::V2 => {
                enable_v2_controller("cpu")?;
                Path::new(V1_ROOT).join(&name)
            }
            CgroupVersion::V1 => Path::new(V1_ROOT).join("cpu").join(&name),
            CgroupVersion::None => bail!("no cgroup file system under /sys/fs/cgroup: CPU caps and core limits need cgroups (v1 or v2)"),
        };
        std::fs::create_dir(&cpu_dir).map_err(|e| {
            let hint = if matches!(e.kind(), std::io::ErrorKind::PermissionDenied) { " (CPU caps and core limits need root)" } else { "" };
            anyhow::anyhow!("creating cgroup {}: {e}{hint}", cpu_dir.display())
        })?;
        Ok(CpuCgroup { version, cpu_dir, cpuset_dir: None, cores_limited: false, name, pids: Vec::new() })
    }

    pub fn dir(&self) -> &Path {
        &self.cpu_dir
    }

    /// Moves a process (all its threads) into the group(s).
    pub fn add(&mut self, pid: u32) -> Result<()> {
        write(&self.cpu_dir.join("cgroup.procs"), &pid.to_string())?;
        if let Some(d) = &self.cpuset_dir {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        self.pids.push(pid);
        Ok(())
    }

    /// Sets (or, with `None`, lifts) the CPU cap.
    pub fn set_cap(&self, percent: Option<u32>) -> Result<()> {
        match self.version {
            CgroupVersion::V2 => {
                let v = match percent {
                    Some(p) => format!("{} {PERIOD_US}", quota_us(p)),
                    None => format!("max {PERIOD_US}"),
                };
                write(&self.cpu_dir.join("cpu.max"), &v)
            }
            _ => {
                write(&self.cpu_dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                let q = percent.map(|p| quota_us(p).to_string()).unwrap_or_else(|| "-1".into());
                write(&self.cpu_dir.join("cpu.cfs_quota_us"), &q)
            }
        }
    }

    /// Restricts the process to the first `cores` CPUs it may use (or lifts the
    /// limit with `None`). The cpuset is only touched once a limit is asked for.
    pub fn set_cores(&mut self, cores: Option<u32>) -> Result<()> {
        if cores.is_none() && !self.cores_limited {
            return Ok(());
        }
        let allowed_file = match self.version {
            CgroupVersion::V2 => Path::new(V1_ROOT).join("cpuset.cpus.effective"),
            _ => Path::new(V1_ROOT).join("cpuset/cpuset.effective_cpus"),
        };
        let allowed_text = std::fs::read_to_string(&allowed_file)
            .or_else(|_| std::fs::read_to_string(Path::new(V1_ROOT).join("cpuset/cpuset.cpus")))
            .with_context(|| format!("reading the CPUs this host allows ({})", allowed_file.display()))?;
        let allowed = parse_cpu_list(&allowed_text);
        let cpus = match cores {
            Some(n) => {
                if n == 0 || n as usize > allowed.len() {
                    bail!("host_cores = {n}: this host allows {} CPUs ({}); give 1 to {}", allowed.len(), allowed_text.trim(), allowed.len());
                }
                allowed[..n as usize].iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            }
            None => allowed_text.trim().to_string(),
        };
        let dir = match self.version {
            CgroupVersion::V2 => {
                enable_v2_controller("cpuset")?;
                self.cpu_dir.clone()
            }
            _ => match &self.cpuset_dir {
                Some(d) => d.clone(),
                None => {
                    let parent = Path::new(V1_ROOT).join("cpuset");
                    let d = parent.join(&self.name);
                    std::fs::create_dir(&d).with_context(|| format!("creating cgroup {}", d.display()))?;
                    self.cpuset_dir = Some(d.clone());
                    // A v1 cpuset starts empty: it needs CPUs and memory nodes before it takes a process.
                    let mems = std::fs::read_to_string(parent.join("cpuset.mems")).unwrap_or_else(|_| "0".into());
                    write(&d.join("cpuset.mems"), mems.trim())?;
                    write(&d.join("cpuset.cpus"), &cpus)?;
                    for pid in self.pids.clone() {
                        write(&d.join("cgroup.procs"), &pid.to_string())?;
                    }
                    self.cores_limited = cores.is_some();
                    return Ok(());
                }
            },
        };
        write(&dir.join("cpuset.cpus"), &cpus)?;
        self.cores_limited = cores.is_some();
        Ok(())
    }
}

impl Drop for CpuCgroup {
    fn drop(&mut self) {
        // Whatever still runs in the group goes back to the root, then the group goes.
        for dir in std::iter::once(self.cpu_dir.clone()).chain(self.cpuset_dir.clone()) {
            let parent = dir.parent().map(Path::to_path_buf);
            if let (Ok(procs), Some(parent)) = (std::fs::read_to_string(dir.join("cgroup.procs")), parent) {
                for pid in procs.split_whitespace() {
                    let _ = std::fs::write(parent.join("cgroup.procs"), pid);
                }
            }
            let _ = remove_dir_retrying(&dir);
        }
    }
}

/// Removes an empty cgroup directory, retrying for up to half a second: the kernel
/// lets a group go only once the processes just moved out are really gone from it.
/// A directory already gone is success.
pub fn remove_dir_retrying(dir: &Path) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(_) if !dir.exists() => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the cgroup would not go")))
}

/// migbench's cgroups that exist now (for tests and `doctor`).
pub fn leftovers() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in [Path::new(V1_ROOT).to_path_buf(), Path::new(V1_ROOT).join("cpu"), Path::new(V1_ROOT).join("cpuset")] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("migbench-") && e.path().is_dir() {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_and_cap_checks() {
        assert_eq!(quota_us(25), 25_000);
        assert_eq!(quota_us(200), 200_000);
        assert_eq!(quota_us(0), 1000);
        use crate::machine::hardware::check_cap;
        assert!(check_cap(200, 2).is_ok());
        let e = check_cap(250, 2).unwrap_err();
        assert!(e.contains("1 to 200") && e.contains("cap_percent = 250"), "{e}");
        assert!(check_cap(0, 4).is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8\n"), [0, 1, 2, 3, 8]);
        assert_eq!(parse_cpu_list("2-3"), [2, 3]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("x,1"), [1]);
    }

    #[test]
    fn a_cgroup_takes_a_process_a_cap_and_is_removed() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut cg = CpuCgroup::create(&format!("unit-{}", child.id())).unwrap();
        let dir = cg.dir().to_path_buf();
        cg.add(child.id()).unwrap();
        cg.set_cap(Some(50)).unwrap();
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(procs.split_whitespace().any(|p| p == child.id().to_string()));
        let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).or_else(|_| std::fs::read_to_string(dir.join("cpu.max"))).unwrap();
        assert!(quota.starts_with("50000"), "{quota}");
        cg.set_cap(None).unwrap();
        cg.set_cores(Some(1)).unwrap();
        drop(cg);
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
