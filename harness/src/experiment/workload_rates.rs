//! The guest workloads' own figures on the host and in a guest, side by side:
//! DMIPS, Linpack MFLOPS and the Livermore means. The host side runs the same
//! workload code (the `migbench_guest` library) in this process, one thread; the
//! guest side boots a 1-vCPU guest with the workload and reads its reports.

use crate::guest::channel::rate_between;
use crate::machine::hardware::{Accel, GuestSpec};
use crate::machine::site::Site;
use crate::setup::Platform;
use anyhow::{Result, bail};
use migbench_guest::benchmark::Benchmark;
use migbench_guest::livermore::{self, Means, Tally};
use migbench_guest::orders::Workload;
use std::time::{Duration, Instant};

/// One workload's figure in one place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// DMIPS for Dhrystone, MFLOPS for Linpack (its standard flop count per second).
    pub rate: Option<f64>,
    /// The Livermore means over all 72 kernel rates (24 kernels × 3 spans).
    pub livermore: Option<Means>,
}

/// The workloads compared.
pub fn workloads() -> [Workload; 3] {
    [Workload::Dhrystone, Workload::Linpack { n: 100 }, Workload::Livermore { span: None }]
}

/// DMIPS from Dhrystones per second, MFLOPS from flop per second.
fn scaled(w: Workload, per_second: f64) -> f64 {
    match w {
        Workload::Dhrystone => per_second / migbench_guest::dhrystone::VAX_DHRYSTONES_PER_SEC,
        _ => per_second / 1e6,
    }
}

/// Runs `w` here for about `secs` seconds, checking every result as the guest does.
pub fn on_host(w: Workload, secs: f64) -> Result<Figure> {
    let Some(mut bench) = Benchmark::new(w) else { bail!("{w} has no benchmark figure to compare") };
    let (start, mut done, mut tally) = (Instant::now(), 0.0, Tally::default());
    let until = start + Duration::from_secs_f64(secs);
    // Livermore's means need every span: finish the cycle of three passes.
    while Instant::now() < until || (tally.report().is_none() && matches!(w, Workload::Livermore { .. })) {
        let step = bench.step().map_err(anyhow::Error::msg)?;
        done += step.done;
        if let Some(pass) = step.livermore {
            tally.add(&pass);
        }
    }
    Ok(match w {
        Workload::Livermore { .. } => Figure { rate: None, livermore: all_means(&tally.report().unwrap_or_default()) },
        _ => Figure { rate: Some(scaled(w, done / start.elapsed().as_secs_f64())), livermore: None },
    })
}

fn all_means(report: &str) -> Option<Means> {
    livermore::parse_report(report).into_iter().find(|(k, _)| k == "all").map(|(_, m)| m)
}

/// Boots a 1-vCPU guest running `w`, lets it warm up, and reads its rate over `secs`.
pub async fn in_guest(platform: &Platform, accel: Accel, w: Workload, secs: f64, boot_timeout: Duration) -> Result<Figure> {
    let site = Site::local(&platform.qemu, &platform.image, false)?;
    let spec = GuestSpec::new(256, 1, accel)?.with_workload(w);
    let (m, _) = site.boot(spec, "rates", boot_timeout).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let rate = rate_between(&[m.channel.rates()], from, Instant::now()).map(|(_, r)| scaled(w, r));
    let livermore = m
        .channel
        .other_lines()
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("livermore "))
        .and_then(all_means);
    // A workload that finds its own result wrong says so (a FAILED line) and stops;
    // a guest whose kernel complained gives no figure either.
    let failures = m.channel.workload_failures();
    let kernel = m.console_problems();
    m.quit().await;
    if let Some(f) = failures.first() {
        bail!("the guest's {w} failed its own check: {f}");
    }
    if let Some(p) = kernel.first() {
        bail!("the guest running {w} is not healthy: kernel trouble on its console: {p}");
    }
    Ok(match w {
        Workload::Livermore { .. } => Figure { rate: None, livermore },
        _ => Figure { rate, livermore: None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_figures_are_positive_and_checked() {
        for w in workloads() {
            let f = on_host(w, 0.3).unwrap();
            match w {
                Workload::Livermore { .. } => {
                    let m = f.livermore.expect("livermore means");
                    assert!(m.arithmetic >= m.geometric && m.geometric >= m.harmonic && m.harmonic > 0.0, "{m:?}");
                }
                _ => assert!(f.rate.unwrap() > 0.0, "{w}: {f:?}"),
            }
        }
        assert!(on_host(Workload::Idle, 0.1).is_err());
    }
}
