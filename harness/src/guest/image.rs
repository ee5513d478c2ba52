//! The guest image: a Linux kernel and an initramfs that our own code writes,
//! holding the static `migbench-guest` init and the virtio modules it loads.
//!
//! Kernel, in order of preference: `--kernel`/`MIGBENCH_KERNEL`; the distribution's
//! small VM kernel package fetched with `apt-get download` and unpacked into the
//! cache (never installed); the host's own `/boot` kernel and `/lib/modules`.
//! The image is cached under a key made of every input's bytes, so it is rebuilt
//! exactly when the kernel, a module or the guest init changes.

use super::cpio::CpioWriter;
use super::kmod::{self, GUEST_MODULES};
use crate::host::{self, OsRelease, run};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the image layout changes so old cached images are not reused.
const LAYOUT_VERSION: &str = "migbench-image-v1";
/// How many built images the cache keeps.
const IMAGES_KEPT: usize = 3;

/// What the user told us about the image's inputs (all optional).
#[derive(Debug, Clone, Default)]
pub struct ImageInputs {
    /// A kernel to boot instead of the distribution's package.
    pub kernel: Option<PathBuf>,
    /// The kernel's modules directory (`.../lib/modules/<release>`), for `kernel`.
    pub modules: Option<PathBuf>,
    /// A prebuilt static `migbench-guest` instead of building it with cargo.
    pub guest_bin: Option<PathBuf>,
}

impl ImageInputs {
    /// Fills what was not given from `MIGBENCH_KERNEL`, `MIGBENCH_MODULES`, `MIGBENCH_GUEST_BIN`.
    pub fn with_env(mut self) -> Self {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        self.kernel = self.kernel.or_else(|| env("MIGBENCH_KERNEL"));
        self.modules = self.modules.or_else(|| env("MIGBENCH_MODULES"));
        self.guest_bin = self.guest_bin.or_else(|| env("MIGBENCH_GUEST_BIN"));
        self
    }
}

/// A kernel to boot and where its modules are.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub modules_dir: Option<PathBuf>,
    pub release: String,
    /// Where it came from, for the record: "--kernel /x", "apt:linux-image-…=6.1.192-2", "host:/boot/…".
    pub origin: String,
}

/// A built, cached image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestImage {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub manifest: ImageManifest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageManifest {
    pub key: String,
    pub built_at: String,
    pub kernel_origin: String,
    pub kernel_release: String,
    pub guest_init_sha256: String,
    pub modules: Vec<String>,
    pub initramfs_bytes: u64,
}

impl GuestImage {
    /// The newest image in the cache, without building anything (for `doctor`).
    pub fn newest_cached() -> Option<GuestImage> {
        let mut images: Vec<_> = cached_images().into_iter().filter_map(|d| GuestImage::load(&d).ok()).collect();
        images.sort_by_key(|i| std::fs::metadata(&i.initramfs).and_then(|m| m.modified()).ok());
        images.pop()
    }

    /// The image whose files are in `dir` (with its manifest).
    pub fn load(dir: &Path) -> Result<GuestImage> {
        let text = std::fs::read_to_string(dir.join("manifest.json"))?;
        let manifest: ImageManifest = serde_json::from_str(&text)?;
        let img = GuestImage { dir: dir.into(), kernel: dir.join("vmlinuz"), initramfs: dir.join("initramfs.cpio"), manifest };
        if !img.kernel.exists() || !img.initramfs.exists() {
            bail!("incomplete image in {}", dir.display());
        }
        Ok(img)
    }
}

fn images_root() -> PathBuf {
    host::cache_dir().join("images")
}

fn cached_images() -> Vec<PathBuf> {
    std::fs::read_dir(images_root())
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// Returns the image for these inputs, building it if any input changed.
/// Callers hold the set-up lock (see `setup::prepare`).
pub fn ensure_image(inputs: &ImageInputs) -> Result<GuestImage> {
    let guest_bin = guest_init_binary(inputs)?;
    let kernel = find_kernel(inputs)?;
    let init_bytes =
        std::fs::read(&guest_bin).with_context(|| format!("reading the guest init {}", guest_bin.display()))?;
    check_static_elf(&init_bytes, &guest_bin)?;
    let kernel_bytes = std::fs::read(&kernel.vmlinuz).with_context(|| format!("reading kernel {}", kernel.vmlinuz.display()))?;
    let modules = match &kernel.modules_dir {
        Some(dir) => kmod::resolve(dir, GUEST_MODULES)?,
        None => Vec::new(),
    };

    let mut h = Sha256::new();
    h.update(LAYOUT_VERSION);
    h.update(Sha256::digest(&kernel_bytes));
    h.update(Sha256::digest(&init_bytes));
    for m in &modules {
        h.update(&m.name);
        h.update(Sha256::digest(&m.bytes));
    }
    let key = crate::host::hex(&h.finalize())[..16].to_string();
    let dir = images_root().join(&key);
    if let Ok(img) = GuestImage::load(&dir) {
        return Ok(img);
    }

    eprintln!("migbench: building guest image {key} (kernel {}, {} modules)", kernel.release, modules.len());
    let tmp = images_root().join(format!(".{key}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let built = write_image(&tmp, &dir, &key, &kernel, &kernel_bytes, &init_bytes, &modules);
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    built?;
    prune_images(&dir);
    GuestImage::load(&dir)
}

/// Writes an image into `tmp` and moves it to `dir` in one rename.
fn write_image(
    tmp: &Path,
    dir: &Path,
    key: &str,
    kernel: &Kernel,
    kernel_bytes: &[u8],
    init_bytes: &[u8],
    modules: &[kmod::Module],
) -> Result<()> {
    std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::write(tmp.join("vmlinuz"), kernel_bytes)?;

    let mut w = CpioWriter::new(Vec::new());
    for d in ["dev", "proc", "sys", "etc", "etc/migbench", "lib", "lib/modules", "tmp"] {
        w.dir(d, 0o755)?;
    }
    w.file("init", 0o755, init_bytes)?;
    let mut list = String::new();
    for m in modules {
        let path = format!("lib/modules/{}.ko", m.name);
        w.file(&path, 0o644, &m.bytes)?;
        list.push_str(&format!("/{path}\n"));
    }
    w.file("etc/migbench/modules", 0o644, list.as_bytes())?;
    let cpio = w.finish()?;
    std::fs::write(tmp.join("initramfs.cpio"), &cpio)?;

    let manifest = ImageManifest {
        key: key.to_string(),
        built_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        kernel_origin: kernel.origin.clone(),
        kernel_release: kernel.release.clone(),
        guest_init_sha256: crate::host::hex(&Sha256::digest(init_bytes)),
        modules: modules.iter().map(|m| m.name.clone()).collect(),
        initramfs_bytes: cpio.len() as u64,
    };
    std::fs::write(tmp.join("manifest.json"), serde_json::to_string_pretty(&manifest)?)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(tmp, dir).with_context(|| format!("moving the new image to {}", dir.display()))?;
    Ok(())
}

fn prune_images(keep: &Path) {
    let mut dirs: Vec<_> = cached_images()
        .into_iter()
        .filter(|d| d != keep)
        .filter_map(|d| Some((std::fs::metadata(&d).and_then(|m| m.modified()).ok()?, d)))
        .collect();
    dirs.sort();
    let excess = (dirs.len() + 1).saturating_sub(IMAGES_KEPT);
    for (_, d) in dirs.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(d);
    }
}


fn check_static_elf(bytes: &[u8], path: &Path) -> Result<()> {
    let rd = |off: usize, n: usize| {
        let end = off.checked_add(n)?;
        bytes.get(off..end).map(|b| b.iter().rev().fold(0usize, |a, &x| (a << 8) | x as usize))
    };
    if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) {
        bail!("the guest init {} is not an x86_64 ELF executable", path.display());
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2)) else {
        bail!("the guest init {} is a truncated ELF file", path.display());
    };
    // A dynamically linked program names its loader in a PT_INTERP (3) segment; as
    // PID 1 in an initramfs without a libc it would die with a bare "No such file".
    if (0..phnum).any(|i| i.checked_mul(phentsize).and_then(|o| o.checked_add(phoff)).and_then(|o| rd(o, 4)) == Some(3)) {
        bail!(
            "the guest init {} is dynamically linked; build it static \
             (RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build -p migbench-guest --target x86_64-unknown-linux-gnu)",
            path.display()
        );
    }
    Ok(())
}

/// The workspace this binary was built from, if its sources are still there.
pub fn workspace_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf();
    dir.join("workloads/Cargo.toml").exists().then_some(dir)
}

/// Builds the static guest init with cargo (a no-op when it is up to date), or
/// uses the one the user named.
fn guest_init_binary(inputs: &ImageInputs) -> Result<PathBuf> {
    if let Some(bin) = &inputs.guest_bin {
        if !bin.is_file() {
            bail!("guest init {} does not exist: fix --guest-bin / MIGBENCH_GUEST_BIN or unset it to build from source", bin.display());
        }
        return Ok(bin.clone());
    }
    let Some(ws) = workspace_dir() else {
        bail!(
            "cannot build the guest init: the migbench sources ({}) are not here. \
             Set MIGBENCH_GUEST_BIN to a static migbench-guest binary, or run migbench from its source tree.",
            env!("CARGO_MANIFEST_DIR")
        );
    };
    let target = "x86_64-unknown-linux-gnu";
    let target_dir = ws.join("target/guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ws)
        .args(["build", "--quiet", "--profile", "guest", "-p", "migbench-guest", "--target", target, "--target-dir"])
        .arg(&target_dir)
        // Highest-precedence flags variable, so a caller's RUSTFLAGS cannot drop +crt-static.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    run(&mut cmd).context("building the static guest init (migbench-guest) with cargo")?;
    Ok(target_dir.join(target).join("guest/migbench-guest"))
}

/// Picks the kernel: explicit, else the distribution package, else the host's.
pub fn find_kernel(inputs: &ImageInputs) -> Result<Kernel> {
    if let Some(path) = &inputs.kernel {
        return explicit_kernel(path, inputs.modules.as_deref());
    }
    let os = OsRelease::read();
    let mut why_not = Vec::new();
    if os.is_debian_like() && host::which("apt-get").is_some() {
        let meta = if os.is_ubuntu() { "linux-image-kvm" } else { "linux-image-cloud-amd64" };
        match package_kernel(meta) {
            Ok(k) => return Ok(k),
            Err(e) => why_not.push(format!("{meta} via apt-get download: {e:#}")),
        }
    } else {
        why_not.push("not a Debian/Ubuntu system, so no kernel package to download".to_string());
    }
    match host_kernel() {
        Ok(k) => Ok(k),
        Err(e) => {
            why_not.push(format!("host kernel: {e:#}"));
            bail!(
                "no kernel for the guest image. Tried:\n  - {}\nGive one with --kernel PATH (or MIGBENCH_KERNEL), \
                 with --modules DIR for its modules if virtio is not built in.",
                why_not.join("\n  - ")
            )
        }
    }
}

fn explicit_kernel(path: &Path, modules: Option<&Path>) -> Result<Kernel> {
    if !path.is_file() {
        bail!("kernel {} does not exist: fix --kernel / MIGBENCH_KERNEL", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading kernel {}", path.display()))?;
    let release = bzimage_release(&bytes).with_context(|| {
        format!("{} is not an x86 Linux bzImage (no kernel version in its header): give a vmlinuz file", path.display())
    })?;
    let modules_dir = match modules {
        Some(m) if m.is_dir() => Some(m.to_path_buf()),
        Some(m) => bail!("modules directory {} does not exist: fix --modules / MIGBENCH_MODULES", m.display()),
        None => {
            // A kernel unpacked at <root>/boot/vmlinuz-R has its modules at <root>/lib/modules/R.
            let root = path.parent().and_then(|b| (b.file_name() == Some("boot".as_ref())).then(|| b.parent()).flatten());
            let mut candidates: Vec<PathBuf> = Vec::new();
            if let Some(root) = root {
                candidates.push(root.join("lib/modules").join(&release));
                candidates.push(root.join("usr/lib/modules").join(&release));
            }
            candidates.push(Path::new("/lib/modules").join(&release));
            candidates.into_iter().find(|c| c.is_dir())
        }
    };
    Ok(Kernel { vmlinuz: path.into(), modules_dir, release, origin: format!("--kernel {}", path.display()) })
}

/// The release string in an x86 bzImage header ("6.1.0-56-cloud-amd64").
pub fn bzimage_release(bytes: &[u8]) -> Option<String> {
    if bytes.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes(bytes.get(0x20e..0x210)?.try_into().ok()?) as usize + 0x200;
    let s = bytes.get(ptr..)?.split(|&b| b == 0 || b == b' ').next()?;
    let s = std::str::from_utf8(s).ok()?;
    (!s.is_empty()).then(|| s.to_string())
}

fn apt_field(pkg: &str, args: &[&str], field: &str) -> Result<Vec<String>> {
    let out = run(Command::new("apt-cache").args(args).arg(pkg))?;
    Ok(out.lines().filter_map(|l| l.trim().strip_prefix(field)).map(|v| v.trim().to_string()).collect())
}

/// Resolves a kernel meta package to the real one and its candidate version,
/// refreshing apt's lists once when they know nothing about it.
fn resolve_package(meta: &str) -> Result<(String, String)> {
    let lookup = || -> Result<(String, String)> {
        let deps = apt_field(meta, &["depends"], "Depends:")?;
        let real = deps
            .into_iter()
            .find(|d| d.starts_with("linux-image-") && !d.contains('<'))
            .with_context(|| format!("apt-cache knows no package {meta}"))?;
        let version = apt_field(&real, &["policy"], "Candidate:")?
            .into_iter()
            .find(|v| v != "(none)")
            .with_context(|| format!("apt has no installable version of {real}"))?;
        Ok((real, version))
    };
    match lookup() {
        Ok(r) => Ok(r),
        Err(_) if host::is_root() => {
            run(Command::new("apt-get").args(["update", "-o", "Dpkg::Use-Pty=0"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
            lookup()
        }
        Err(e) => Err(e),
    }
}

fn package_kernel(meta: &str) -> Result<Kernel> {
    let (pkg, version) = resolve_package(meta)?;
    let safe_version = version.replace([':', '/'], "_");
    let root = host::cache_dir().join("kernels").join(format!("{pkg}_{safe_version}"));
    let done = root.join(".unpacked");
    if !done.exists() {
        eprintln!("migbench: fetching kernel package {pkg} {version} with apt-get download (unpacked into the cache, not installed)");
        let _ = std::fs::remove_dir_all(&root);
        let debs = root.join("debs");
        std::fs::create_dir_all(&debs)?;
        // Ubuntu ships the modules in a separate linux-modules-* package.
        let mut wanted = vec![format!("{pkg}={version}")];
        for dep in apt_field(&pkg, &["depends"], "Depends:")? {
            if dep.starts_with("linux-modules-") && !dep.starts_with("linux-modules-extra") {
                wanted.push(dep);
            }
        }
        for w in &wanted {
            run(Command::new("apt-get").current_dir(&debs).args(["download", "-q", w]))
                .with_context(|| format!("apt-get download {w}"))?;
        }
        let tree = root.join("tree");
        for deb in std::fs::read_dir(&debs)?.flatten() {
            run(Command::new("dpkg-deb").arg("-x").arg(deb.path()).arg(&tree))?;
        }
        let _ = std::fs::remove_dir_all(&debs);
        std::fs::write(&done, format!("{pkg} {version}\n"))?;
    }
    let tree = root.join("tree");
    let vmlinuz = std::fs::read_dir(tree.join("boot"))
        .with_context(|| format!("{pkg} has no /boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .with_context(|| format!("{pkg} has no /boot/vmlinuz-*"))?;
    let mut k = explicit_kernel(&vmlinuz, None)?;
    k.origin = format!("apt:{pkg}={version}");
    Ok(k)
}

fn host_kernel() -> Result<Kernel> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim().to_string();
    let vmlinuz = Path::new("/boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.exists() {
        bail!("{} does not exist", vmlinuz.display());
    }
    std::fs::File::open(&vmlinuz).with_context(|| format!("{} is not readable (run as root)", vmlinuz.display()))?;
    let mut k = explicit_kernel(&vmlinuz, None)?;
    k.origin = format!("host:{}", vmlinuz.display());
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzimage_release_from_header() {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        img[0x300..0x316].copy_from_slice(b"6.1.0-56-cloud-amd64 (");
        assert_eq!(bzimage_release(&img).as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(bzimage_release(b"short"), None);
        img[0x202] = b'X';
        assert_eq!(bzimage_release(&img), None);
    }

    #[test]
    fn explicit_kernel_errors_name_the_input() {
        let e = explicit_kernel(Path::new("/nonexistent/vmlinuz"), None).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/vmlinuz") && format!("{e:#}").contains("--kernel"));
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"not a kernel").unwrap();
        let e = explicit_kernel(f.path(), None).unwrap_err();
        assert!(format!("{e:#}").contains("bzImage"), "{e:#}");
    }

    #[test]
    fn dynamic_init_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(check_static_elf(b"#!/bin/sh", f.path()).is_err());
    }
}
