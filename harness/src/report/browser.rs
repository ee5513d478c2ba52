//! Rendering the HTML report with headless Chromium: the proof that the file opens
//! in a browser with nothing else, and a PNG preview for CI artifacts.
//!
//! Chromium is found on PATH (or `MIGBENCH_CHROMIUM`); when it is missing, migbench
//! installs Debian's `chromium` with apt-get as it does QEMU (root on Debian, unless
//! `MIGBENCH_NO_INSTALL` is set). As root it runs in a network namespace of
//! its own with no interfaces up, so it cannot reach anything; the report's
//! Content-Security-Policy forbids loading anything anyway.

use crate::host;
use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NAMES: [&str; 5] = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"];
const TIMEOUT: Duration = Duration::from_secs(120);
/// Below this share of pixels differing from the page's background, the render is blank.
const MIN_INK_PERCENT: f64 = 0.5;

/// What a screenshot shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    pub browser: String,
    pub width: u32,
    pub height: u32,
    /// Pixels that differ from the background (the top-left pixel), %.
    pub ink_percent: f64,
}

/// The browser to use, installing Debian's `chromium` when allowed.
pub fn find_or_install() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MIGBENCH_CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!("MIGBENCH_CHROMIUM={}: no such file; point it at a Chromium or Chrome binary, or unset it", p.display());
        }
        return Ok(p);
    }
    if let Some(p) = NAMES.iter().find_map(|n| host::which(n)) {
        return Ok(p);
    }
    let fix = "install Chromium (`apt-get install chromium` on Debian) or set MIGBENCH_CHROMIUM=/path/to/chromium";
    let os = host::OsRelease::read();
    // Ubuntu's chromium package is only a way to a snap, which does not run everywhere.
    if !os.is_debian_like() || os.is_ubuntu() {
        bail!("no Chromium or Chrome on PATH to render the report (migbench installs it itself only on Debian): {fix}");
    }
    if host::no_install() {
        bail!("no Chromium on PATH, and MIGBENCH_NO_INSTALL forbids installing it: {fix}");
    }
    if !host::is_root() {
        bail!("no Chromium on PATH (run migbench as root and it installs it): {fix}");
    }
    host::apt_install(&["chromium"]).with_context(|| format!("installing chromium failed: {fix}"))?;
    NAMES.iter().find_map(|n| host::which(n)).context("apt-get installed chromium but no chromium is on PATH")
}

/// Renders `html` into `png` (1280 px wide) and checks the picture is not blank.
pub fn screenshot(html: &Path, png: &Path) -> Result<Shot> {
    let browser = find_or_install()?;
    let html = std::fs::canonicalize(html).with_context(|| format!("{} (the HTML to render)", html.display()))?;
    if let Some(dir) = png.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let png_abs = std::path::absolute(png).with_context(|| format!("{}", png.display()))?;
    let _ = std::fs::remove_file(&png_abs);
    let profile = tempfile::Builder::new().prefix("migbench-chromium-").tempdir().context("a temporary Chromium profile")?;
    let log = profile.path().join("chromium.log");
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(8).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    };
    let mut cmd = Command::new(&browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,2400",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--screenshot={}", png_abs.display()))
    .arg(format!("file://{}", html.display()))
    .env("HOME", profile.path())
    .env("XDG_CONFIG_HOME", profile.path())
    .env("XDG_CACHE_HOME", profile.path())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    // To a file: a pipe nobody reads while it runs could fill and stall it.
    .stderr(Stdio::from(std::fs::File::create(&log).context("a log file for Chromium")?))
    // Its own process group, so its helpers go with it.
    .process_group(0);
    if host::is_root() {
        // SAFETY: unshare is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {}", browser.display()))?;
    let pgid = child.id() as i32;
    let kill_group = || unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > TIMEOUT => {
                kill_group();
                let _ = child.wait();
                bail!("{} did not finish rendering {} within {} s: {}", browser.display(), html.display(), TIMEOUT.as_secs(), tail());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                kill_group();
                return Err(e).context("waiting for Chromium");
            }
        }
    };
    // Whatever helper outlived the browser goes now.
    kill_group();
    if !status.success() || !png_abs.exists() {
        bail!("{} could not render {} ({status}): {}", browser.display(), html.display(), tail());
    }
    let (width, height, ink_percent) = ink(&png_abs)?;
    if ink_percent < MIN_INK_PERCENT {
        bail!("the report rendered blank: {:.2} % of {} differs from its background ({width}×{height})", ink_percent, png.display());
    }
    Ok(Shot { browser: browser.display().to_string(), width, height, ink_percent })
}

/// Width, height and the share of pixels (%) that differ from the top-left one.
pub fn ink(png: &Path) -> Result<(u32, u32, f64)> {
    let file = std::fs::File::open(png).with_context(|| format!("opening {}", png.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().with_context(|| format!("{} is not a PNG", png.display()))?;
    let size = reader.output_buffer_size().context("PNG too large")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).with_context(|| format!("decoding {}", png.display()))?;
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let Some(bg) = pixels.first().copied() else { bail!("{} has no pixels", png.display()) };
    let differs = pixels.iter().filter(|p| p.iter().zip(bg).any(|(a, b)| a.abs_diff(*b) > 24)).count();
    Ok((info.width, info.height, differs as f64 * 100.0 / pixels.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, dark: impl Fn(u32, u32) -> bool) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let v = if dark(x, y) { 0 } else { 255 };
                data.extend([v, v, v]);
            }
        }
        wr.write_image_data(&data).unwrap();
    }

    #[test]
    fn ink_counts_what_differs_from_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join("b.png");
        write_png(&blank, 40, 10, |_, _| false);
        assert_eq!(ink(&blank).unwrap(), (40, 10, 0.0));
        let quarter = dir.path().join("q.png");
        write_png(&quarter, 40, 10, |x, _| x >= 30);
        let (_, _, pct) = ink(&quarter).unwrap();
        assert!((pct - 25.0).abs() < 1e-9, "{pct}");
        let not_png = dir.path().join("x.png");
        std::fs::write(&not_png, "text").unwrap();
        assert!(ink(&not_png).unwrap_err().to_string().contains("not a PNG"));
    }
}
