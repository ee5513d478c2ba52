//! `migbench setup`: install what is missing and build the guest image.

use super::*;

/// `migbench setup`: QEMU and the guest image, and which QEMU a migration would use.
pub(crate) async fn setup(image: &ImageArgs) -> Result<ExitCode> {
    let mut p = prepare(image).await?;
    let system = p.qemu.clone();
    // The QEMU a migration would use here (under TCG on Debian 12, the cache's).
    let env = environment(&mut p, AccelRequest::Auto).await?;
    println!("QEMU        {} ({}, {})", system.path.display(), system.version_line, system.origin);
    if p.qemu != system {
        println!("QEMU used   {} ({}, {}) under {}", p.qemu.path.display(), p.qemu.version_line, p.qemu.origin, env.accel);
    }
    print_image(&p.image);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_image(img: &GuestImage) {
    let m = &img.manifest;
    let age = std::fs::metadata(&img.initramfs)
        .and_then(|md| md.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string())
        .unwrap_or_else(|| "?".into());
    println!("guest image {} ({})", m.key, img.dir.display());
    println!("  kernel    {} from {}", m.kernel_release, m.kernel_origin);
    println!("  initramfs {} bytes, modules: {}", m.initramfs_bytes, if m.modules.is_empty() { "none".into() } else { m.modules.join(" ") });
    println!("  built     {} ({age} ago)", m.built_at);
}
