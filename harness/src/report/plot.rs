//! SVG plots (plotters, SVG backend only: no fonts are loaded or fetched; the
//! viewer renders the text), and each HTTP run's latency plot in its results
//! directory, drawn from the requests the run wrote.

use crate::load::timeline::{self, Request, Window};
use crate::record::RunRecord;
use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// A chart on `root` laid out the one way every titled plot here is: the title on
/// top, room for the axes' labels.
pub(crate) fn titled<'a, 'b>(root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>, title: &str) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 18)).margin(12).x_label_area_size(40).y_label_area_size(64);
    b
}

/// Draws a chart's legend the one way every plot here does: a framed, mostly
/// opaque box at `at`.
pub(crate) fn legend<'a, CT: plotters::coord::CoordTranslate>(chart: &mut ChartContext<'a, SVGBackend<'a>, CT>, at: SeriesLabelPosition) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(at)
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))
}

/// Per-request latency over the run (Ghalib et al.'s figure): one dot per request
/// at its intended send time, failures in red at the top, the migration window
/// shaded and the switchover darker.
pub fn latency_svg(requests: &[Request], window: Window, switchover: Option<(f64, f64)>, title: &str) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let end_s = requests.iter().map(|r| r.done_ms).fold(window.to_ms, f64::max) / 1000.0;
        let ok_max = requests.iter().filter(|r| r.ok()).map(Request::latency_ms).fold(1.0, f64::max);
        // Failures sit just above the highest answered request.
        let top = ok_max * 1.15;
        let mut chart = titled(&root, title)
            .build_cartesian_2d(0f64..end_s.max(0.001), 0f64..top)
            .map_err(|e| anyhow!("plot: {e}"))?;
        chart
            .configure_mesh()
            .x_desc("time since the load started (s)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        let shade = |from: f64, to: f64, color: RGBAColor| Rectangle::new([(from / 1000.0, 0.0), (to / 1000.0, top)], color.filled());
        chart
            .draw_series([shade(window.from_ms, window.to_ms, BLUE.mix(0.12))])
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("migration")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BLUE.mix(0.25).filled()));
        if let Some((a, b)) = switchover {
            chart
                .draw_series([shade(a, b, RED.mix(0.25))])
                .map_err(|e| anyhow!("plot: {e}"))?
                .label("switchover (STOP → RESUME)")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RED.mix(0.35).filled()));
        }
        chart
            .draw_series(requests.iter().filter(|r| r.ok()).map(|r| Circle::new((r.intended_ms / 1000.0, r.latency_ms()), 2, BLACK.filled())))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("answered")
            .legend(|(x, y)| Circle::new((x + 6, y), 3, BLACK.filled()));
        let failed: Vec<&Request> = requests.iter().filter(|r| !r.ok()).collect();
        if !failed.is_empty() {
            chart
                .draw_series(failed.iter().map(|r| Cross::new((r.intended_ms / 1000.0, ok_max * 1.07), 3, RED)))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label("failed")
                .legend(|(x, y)| Cross::new((x + 6, y), 3, RED));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

/// A run's latency plot as its record names it: the file in the results directory
/// `dir`, else drawn from the run's requests CSV (a sweep stopped before
/// [`write_latency_plots`] ran).
pub fn run_latency_svg(dir: &Path, r: &RunRecord) -> Result<String> {
    let s = r.migration.measurement.service.as_ref().context("the run carried no HTTP load")?;
    let file = dir.join(s.latency_svg.as_deref().context("the run's record names no latency plot")?);
    match std::fs::read_to_string(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && s.requests_csv.is_some() => draw_latency(dir, r),
        read => read.with_context(|| format!("reading {}", file.display())),
    }
}

/// Draws a run's latency plot from the requests CSV it wrote.
fn draw_latency(dir: &Path, r: &RunRecord) -> Result<String> {
    let s = r.migration.measurement.service.as_ref().context("the run carried no HTTP load")?;
    let csv = dir.join(s.requests_csv.as_deref().context("the run's record names no requests CSV")?);
    let text = std::fs::read_to_string(&csv).with_context(|| format!("reading {}", csv.display()))?;
    let requests = timeline::from_csv(&text).with_context(|| format!("reading {}", csv.display()))?;
    let title = format!("{} {}, {}: latency per request", s.load.mode, s.load.connection, r.run.cell.link);
    latency_svg(&requests, s.window, s.switchover, &title)
}

/// Draws, into the results directory `dir`, the latency plot each run's record names
/// and `dir` does not hold yet. The runner writes the requests; the plot is drawn
/// here, from them. One that cannot be drawn is a warning: the record and the
/// requests stay. Returns the files written.
pub fn write_latency_plots(dir: &Path, records: &[RunRecord]) -> Vec<PathBuf> {
    let mut written = Vec::new();
    for r in records {
        let Some(file) = r.migration.measurement.service.as_ref().and_then(|s| s.latency_svg.as_deref()) else { continue };
        let path = dir.join(file);
        if path.exists() {
            continue;
        }
        let done = draw_latency(dir, r).and_then(|svg| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, svg).with_context(|| format!("writing {} (disk full?)", path.display()))
        });
        match done {
            Ok(()) => written.push(path),
            Err(e) => eprintln!("migbench: warning: no latency plot {}: {e:#}; the run's record and requests are kept", path.display()),
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_is_an_svg_with_the_window_and_every_request() {
        let req = |t: f64, lat: f64, ok: bool| Request {
            intended_ms: t,
            sent_ms: t,
            done_ms: t + lat,
            status: ok.then_some(200),
            error: (!ok).then(|| "timeout".to_string()),
        };
        let requests: Vec<Request> = (0..50).map(|i| req(i as f64 * 20.0, 2.0 + (i % 5) as f64, i != 30)).collect();
        let svg = latency_svg(&requests, Window { from_ms: 300.0, to_ms: 700.0 }, Some((600.0, 620.0)), "t").unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..100]);
        assert_eq!(svg.matches("<circle").count(), 49 + 1, "49 answered + the legend's dot");
        assert!(svg.contains("migration") && svg.contains("switchover") && svg.contains("failed"));
    }
}
