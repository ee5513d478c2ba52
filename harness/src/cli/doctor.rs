//! `migbench doctor`: what migbench found on this machine, and what killed runs left behind.

use super::*;

#[derive(Args)]
pub(crate) struct DoctorArgs {
    /// Only remove what migbench runs that no longer run left behind (cgroups, run
    /// directories, QEMUs still in them) and say what; every other command does this at its start.
    #[arg(long)]
    pub(crate) clean: bool,
}

/// `migbench doctor --clean`: removes what migbench processes that no longer run left
/// behind; exit 1 if something could not be removed.
pub(crate) fn doctor_clean() -> ExitCode {
    let c = migbench::machine::stale::clean();
    for line in &c.removed {
        println!("{line}");
    }
    for line in &c.failed {
        eprintln!("migbench: {line}");
    }
    if c.removed.is_empty() && c.failed.is_empty() {
        println!("nothing left behind");
    }
    if c.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

pub(crate) async fn doctor(image: &ImageArgs) -> Result<ExitCode> {
    let host = HostInfo::read();
    println!("host        {} — {} ({} cores), kernel {}", host.os, host.cpu_model, host.cores, host.kernel);
    println!("cache       {}", host::cache_dir().display());
    let mut ok = true;
    let cached = migbench::host::qemu_cache::cached(migbench::host::qemu_cache::DEFAULT);
    let named = match &image.qemu {
        // A version is looked up among the installed ones only: doctor fetches nothing.
        Some(QemuWanted::Series(series)) => Ok(migbench::host::qemu_versions::installed_of(series)),
        Some(w) => migbench::host::qemu_versions::resolve(w).map(Some),
        None => Qemu::find(None),
    };
    match named {
        Ok(Some(q)) => {
            println!("QEMU        {} — {} ({})", q.path.display(), q.version_line, q.origin);
            if !q.tcg_sender_intact() {
                println!("            older than 9.0: under TCG it corrupts guests it migrates while they write memory");
            }
        }
        Ok(None) if image.qemu.is_some() => {
            println!("QEMU        {} is not installed yet: any command that needs it fetches it into the cache", image.qemu.as_ref().map(|w| w.to_string()).unwrap_or_default());
        }
        // On Debian 12 the cache's QEMU serves where the system has none.
        Ok(None) if host::OsRelease::read().is_bookworm() && cached.is_some() => {
            println!("QEMU        none on PATH: migbench's cache serves (below)");
        }
        Ok(None) => {
            ok = false;
            println!(
                "QEMU        not installed (`migbench setup` fetches bookworm-backports' QEMU into the cache on Debian 12, \
                 and installs qemu-system-x86 elsewhere on Debian/Ubuntu as root)"
            );
        }
        Err(e) => {
            ok = false;
            println!("QEMU        {e:#}");
        }
    }
    print_versions();
    let version = match host.cgroup {
        host::CgroupVersion::V2 => "v2 (unified)",
        host::CgroupVersion::V1 => "v1",
        host::CgroupVersion::None => "none found under /sys/fs/cgroup",
    };
    // Make and remove a real group: that is what a CPU cap needs.
    match machine::cgroup::CpuCgroup::create("doctor").and_then(|cg| cg.set_cap(Some(50)).map(|_| cg)) {
        Ok(cg) => {
            drop(cg);
            println!("cgroups     {version}; CPU caps work (a test group was made and removed)");
        }
        Err(e) => println!("cgroups     {version}; CPU caps and core limits will fail: {e:#}"),
    }
    let left = migbench::machine::stale::find();
    if left.is_empty() {
        println!("leftovers   none (no cgroup or run directory of a migbench that no longer runs)");
    } else {
        for (i, l) in left.iter().enumerate() {
            println!("{}{l}", if i == 0 { "leftovers   " } else { "            " });
        }
        println!("            (`migbench doctor --clean` removes them, and so does any other command at its start)");
    }
    match migbench::network::check() {
        Ok(()) => println!("network     the test network can be made (namespace, bridge, tap)"),
        Err(e) => println!("network     no: {e:#}"),
    }
    println!("/dev/kvm    {}", if std::path::Path::new("/dev/kvm").exists() { "present (a probe boot decides whether it works)" } else { "absent" });
    let inputs = image.inputs();
    // A version not installed yet is not fetched here (it is said above): set-up
    // goes on with the default QEMU.
    let qemu = image.qemu.clone().filter(|w| !matches!(w, QemuWanted::Series(_)));
    let prepared = tokio::task::spawn_blocking(move || migbench::setup::prepare(&inputs, qemu.as_ref())).await?;
    match prepared {
        Ok(p) => {
            print_image(&p.image);
            let (works, detail) = migbench::setup::kvm_works(&p).await?;
            println!("KVM         {} ({detail})", if works { "works" } else { "unusable, TCG will be used" });
        }
        Err(e) => {
            ok = false;
            if let Some(img) = GuestImage::newest_cached() {
                print_image(&img);
            }
            println!("guest image cannot be built: {e:#}");
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The QEMU versions migbench has side by side (for a profile's `qemu` axis), and
/// those it would fetch when asked.
fn print_versions() {
    use migbench::host::qemu_cache::{self, SUITES};
    let installed = migbench::host::qemu_versions::installed();
    for (i, q) in installed.iter().enumerate() {
        let suite = SUITES.iter().find(|s| q.path.starts_with(qemu_cache::dir(**s))).map(|s| format!(", {}", s.name)).unwrap_or_default();
        let mark = if q.tcg_sender_intact() { "" } else { "; as a TCG sender it corrupts guests that write memory" };
        println!("{}{:<9} {} ({}{suite}{mark})", if i == 0 { "versions    " } else { "            " }, q.version, q.path.display(), q.origin);
    }
    if installed.is_empty() {
        println!("versions    none installed yet");
    }
    let missing: Vec<String> = SUITES
        .iter()
        .filter(|s| qemu_cache::cached(**s).is_none())
        .map(|s| format!("{} (from {})", s.series, s.name))
        .collect();
    if !missing.is_empty() {
        println!("            fetched into the cache when a profile or --qemu names them: {}", missing.join(", "));
    }
}
