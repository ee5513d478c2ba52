//! The namespaces a test host (`network::test_host`) runs in: its network
//! namespace made and emptied, and the PID and mount namespaces its sshd is
//! started into (from the forked child, before exec).

use anyhow::{Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::RawFd;
use std::path::Path;

/// SIGKILLs every process (but this one) whose network namespace is `inode`.
pub(super) fn kill_namespace(inode: u64) {
    let me = std::process::id();
    let target = format!("net:[{inode}]");
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        if std::fs::read_link(e.path().join("ns/net")).is_ok_and(|t| t.as_os_str() == target.as_str()) {
            // SAFETY: kill has no memory-safety preconditions; the process is in the host we made.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// A new network namespace with nothing in it, held by the returned handle.
pub(super) fn new_namespace() -> Result<File> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<File> {
            // SAFETY: unshare only affects this thread, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("creating the test host's network namespace");
            }
            File::open("/proc/thread-self/ns/net").context("opening the test host's network namespace")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread making the test host's namespace panicked"))?
    })
}

/// What the host's mount namespace gets, as C strings made before the fork.
pub(super) struct Mounts {
    root: CString,
    run: CString,
    run_sshd: CString,
    tmpfs: CString,
    tmpfs_options: CString,
    proc_: CString,
    proc_dir: CString,
    passwd: Option<(CString, CString)>,
}

impl Mounts {
    pub(super) fn new(passwd: Option<&Path>) -> Result<Mounts> {
        let c = |s: &str| CString::new(s).expect("no NUL in a constant");
        let passwd = match passwd {
            Some(p) => Some((CString::new(p.as_os_str().as_encoded_bytes()).context("a NUL in the run directory's path")?, c("/etc/passwd"))),
            None => None,
        };
        Ok(Mounts {
            root: c("/"),
            run: c("/run"),
            run_sshd: c("/run/sshd"),
            tmpfs: c("tmpfs"),
            tmpfs_options: c("mode=0755"),
            proc_: c("proc"),
            proc_dir: c("/proc"),
            passwd,
        })
    }
}

/// In the forked child, before exec: makes the PID namespace and forks its first
/// process, which enters the network namespace, makes the mount namespace and goes
/// on to exec sshd. This process stays outside, waits for it and exits as it did.
pub(super) fn enter_host(netns: RawFd, m: &Mounts) -> std::io::Result<()> {
    let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
    // SAFETY: plain system calls on valid, NUL-terminated strings and fds.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
        check(libc::unshare(libc::CLONE_NEWPID))?;
        let child = libc::fork();
        if child < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if child > 0 {
            // No descriptor of ours stays open here (the spawning side waits on one
            // to learn that sshd was executed).
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                for fd in 3..1024 {
                    libc::close(fd);
                }
            }
            let mut status = 0;
            loop {
                let r = libc::waitpid(child, &mut status, 0);
                if r == child {
                    break;
                }
                if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    libc::_exit(127);
                }
            }
            let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
            libc::_exit(code);
        }
        // The host's first process: it dies with the one above.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
        check(libc::setns(netns, libc::CLONE_NEWNET))?;
        check(libc::unshare(libc::CLONE_NEWNS))?;
        // Nothing mounted here reaches the system's mount namespace.
        check(libc::mount(std::ptr::null(), m.root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
        check(libc::mount(m.tmpfs.as_ptr(), m.run.as_ptr(), m.tmpfs.as_ptr(), libc::MS_NOSUID | libc::MS_NODEV, m.tmpfs_options.as_ptr().cast()))?;
        libc::umask(0o022);
        check(libc::mkdir(m.run_sshd.as_ptr(), 0o755))?;
        if let Some((from, to)) = &m.passwd {
            check(libc::mount(from.as_ptr(), to.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()))?;
        }
        // A /proc of the PID namespace (where the system forbids it, the host sees the system's).
        let _ = libc::mount(m.proc_.as_ptr(), m.proc_dir.as_ptr(), m.proc_.as_ptr(), libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, std::ptr::null());
    }
    Ok(())
}
