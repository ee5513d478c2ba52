//! The way out after SIGINT/SIGTERM: `stale::remove_own` removes this process's own
//! cgroups and run directories, which `exit` would otherwise leave (no destructor
//! runs). A test binary of its own: it removes everything its process made.

use migbench::machine::cgroup::{self, CpuCgroup};

#[test]
fn remove_own_takes_this_process_cgroups_and_run_directories() {
    let me = std::process::id();
    // A cgroup as a sweep makes one, then forgotten as `exit` would forget it.
    let group = CpuCgroup::create("own-test").expect("making a cgroup (the tests run as root)");
    let dir = group.dir().to_path_buf();
    std::mem::forget(group);
    assert!(dir.exists());
    let base = migbench::machine::run_dir::run_dir_bases().into_iter().next().expect("a place for run directories");
    let run_dir = base.join(format!("migbench-run-{me}-owntest"));
    std::fs::create_dir_all(run_dir.join("g1")).unwrap();
    std::fs::write(run_dir.join("g1/console.log"), "x").unwrap();
    // Someone else's (a pid that is not ours) is not touched.
    let other = base.join(format!("migbench-run-{}-owntest", me + 1));
    std::fs::create_dir_all(&other).unwrap();

    let c = migbench::machine::stale::remove_own();
    assert!(c.failed.is_empty(), "{:?}", c.failed);
    assert!(!dir.exists(), "the cgroup is still there: {c:?}");
    assert!(!run_dir.exists(), "the run directory is still there: {c:?}");
    assert!(other.exists(), "another process's run directory was removed");
    std::fs::remove_dir(&other).unwrap();
    assert!(cgroup::leftovers().iter().all(|d| !d.file_name().unwrap().to_string_lossy().starts_with(&format!("migbench-{me}-"))));
}
