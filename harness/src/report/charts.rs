//! Generic SVG charts for the report: data in, SVG text out (plotters, SVG backend
//! only: no fonts are loaded or fetched; the viewer renders the text, which the
//! backend escapes). Non-finite values are skipped; a chart with nothing left to
//! draw is an error, never a panic.

use anyhow::{Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

const SIZE: (u32, u32) = (800, 420);
const PROGRESS_SIZE: (u32, u32) = (800, 560);

/// Okabe–Ito, colour-blind safe, without its black (the axes and whiskers are dark).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xF0, 0xE4, 0x42),
];
/// Shaded x ranges, drawn translucent.
const SHADES: [RGBColor; 3] = [RGBColor(0x99, 0x99, 0x99), RGBColor(0xD5, 0x5E, 0x00), RGBColor(0x56, 0xB4, 0xE9)];
const SHADE_ALPHA: f64 = 0.2;
const WHISKER: RGBColor = RGBColor(0x33, 0x33, 0x33);
const ROUND_MARKER: RGBColor = RGBColor(0x66, 0x66, 0x66);
const SWITCHOVER: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const REMAINING: RGBColor = PALETTE[0];
const DIRTY: RGBColor = PALETTE[1];

/// One bar: its value and the half-width of its 95 % confidence interval, if known.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bar {
    pub value: f64,
    pub err: Option<f64>,
}

/// Bars side by side at one x category; `bars[i]` belongs to `BarChart::series[i]` (None = no data).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarGroup {
    pub label: String,
    pub bars: Vec<Option<Bar>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<String>,
    pub groups: Vec<BarGroup>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: LineStyle,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LineStyle {
    #[default]
    Line,
    Points,
    LineAndPoints,
    /// A fitted line.
    Dashed,
}

/// An x range shaded across the chart, with its legend name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shade {
    pub from: f64,
    pub to: f64,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub shades: Vec<Shade>,
}

/// One migration's progress sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProgressPoint {
    pub t_s: f64,
    pub remaining_mib: Option<f64>,
    pub dirty_mib_s: Option<f64>,
    pub round: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressChart {
    pub title: String,
    pub points: Vec<ProgressPoint>,
    /// (from, to) s: the switchover (source STOP → destination RESUME), shaded
    pub switchover: Option<(f64, f64)>,
}

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Text as XML 1.0 allows it: control characters become spaces (the backend escapes the rest).
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `lo..hi` with a 5 % margin each side; a single value gets a range around it.
fn padded(lo: f64, hi: f64, title: &str) -> Result<(f64, f64)> {
    let m = if hi > lo { (hi - lo) * 0.05 } else if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
    let (lo, hi) = (lo - m, hi + m);
    if !(hi > lo) || !(hi - lo).is_finite() {
        bail!("plot '{title}': the values span too wide a range to draw");
    }
    Ok((lo, hi))
}

/// From 0 (or the lowest value, if negative) to the highest with `headroom` above it.
fn from_zero(values: impl Iterator<Item = f64>, headroom: f64, title: &str) -> Result<(f64, f64)> {
    let (lo, hi) = values.fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let hi = if hi > lo { hi } else { 1.0 };
    let span = hi - lo;
    let (lo, hi) = (if lo < 0.0 { lo - span * 0.05 } else { 0.0 }, hi + span * headroom);
    if !(hi - lo).is_finite() {
        bail!("plot '{title}': the values span too wide a range to draw");
    }
    Ok((lo, hi))
}

fn swatch(c: RGBAColor) -> impl Fn((i32, i32)) -> Polygon<(i32, i32)> {
    // A polygon, not a rectangle, so that only data draws <rect>s.
    move |(x, y)| Polygon::new(vec![(x, y - 5), (x + 12, y - 5), (x + 12, y + 5), (x, y + 5)], c.filled())
}

/// The bar chart's x axis: group `g` spans `g..g + 1`, its tick and label at the centre.
struct Categories(usize);

impl Ranged for Categories {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        limit.0 + (v / self.0 as f64 * (limit.1 - limit.0) as f64).round() as i32
    }
    fn key_points<H: KeyPointHint>(&self, _: H) -> Vec<f64> {
        (0..self.0).map(|g| g as f64 + 0.5).collect()
    }
    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.0 as f64
    }
}

/// Grouped vertical bars, one colour per series, with 95 % CI whiskers where known.
pub fn bars(chart: &BarChart) -> Result<String> {
    let title = clean(&chart.title);
    if chart.groups.is_empty() {
        bail!("plot '{title}': no groups to draw");
    }
    let n = chart.groups.iter().map(|g| g.bars.len()).max().unwrap_or(0).max(chart.series.len()).max(1);
    // (group, series, value, error) of every bar that can be drawn.
    let drawn: Vec<(usize, usize, f64, Option<f64>)> = chart
        .groups
        .iter()
        .enumerate()
        .flat_map(|(g, group)| {
            group.bars.iter().enumerate().filter_map(move |(s, b)| {
                let b = b.as_ref().filter(|b| b.value.is_finite())?;
                Some((g, s, b.value, b.err.filter(|e| e.is_finite()).map(f64::abs)))
            })
        })
        .collect();
    if drawn.is_empty() {
        bail!("plot '{title}': no finite values to draw");
    }
    let legend = n > 1;
    let headroom = 0.08 + if legend { 0.07 * n as f64 } else { 0.0 };
    let ends = drawn.iter().flat_map(|&(_, _, v, e)| {
        let e = e.unwrap_or(0.0);
        // A positive bar's interval may reach below 0: its whisker is cut at the axis.
        [v + e, if v < 0.0 { v - e } else { 0.0 }]
    });
    let (bottom, top) = from_zero(ends, headroom, &title)?;
    let groups = chart.groups.len();
    let labels: Vec<String> = chart.groups.iter().map(|g| clean(&g.label)).collect();
    let width = 0.8 / n as f64;
    let left = |g: usize, s: usize| g as f64 + 0.1 + s as f64 * width;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let mut c = super::plot::titled(&root, &title)
            .build_cartesian_2d(Categories(groups), bottom..top)
            .map_err(|e| anyhow!("plot: {e}"))?;
        let category = |x: &f64| labels.get(x.floor() as usize).cloned().unwrap_or_default();
        c.configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&category)
            .x_desc(clean(&chart.x_label))
            .y_desc(clean(&chart.y_label))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        for s in 0..n {
            let rects = drawn.iter().filter(|d| d.1 == s).map(|&(g, s, v, _)| {
                Rectangle::new([(left(g, s) + width * 0.05, 0.0), (left(g, s) + width * 0.95, v)], colour(s).filled())
            });
            let a = c.draw_series(rects).map_err(|e| anyhow!("plot: {e}"))?;
            if legend {
                let name = chart.series.get(s).map(|n| clean(n)).unwrap_or_else(|| format!("series {}", s + 1));
                a.label(name).legend(swatch(colour(s).to_rgba()));
            }
        }
        // Whiskers with caps: one path per bar, retracing the cap to reach the stem.
        let whiskers = drawn.iter().filter_map(|&(g, s, v, e)| {
            let e = e?;
            let (x, cap) = (left(g, s) + width / 2.0, width * 0.2);
            let (lo, hi) = ((v - e).max(bottom), v + e);
            let mut path = vec![(x - cap, hi), (x + cap, hi), (x, hi), (x, lo)];
            if v - e >= bottom {
                path.extend([(x - cap, lo), (x + cap, lo)]);
            }
            Some(PathElement::new(path, WHISKER.stroke_width(1)))
        });
        c.draw_series(whiskers).map_err(|e| anyhow!("plot: {e}"))?;
        if legend {
            super::plot::legend(&mut c, SeriesLabelPosition::UpperRight)?;
        }
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

/// Numeric x and y: each series as its style says, the shades behind them.
pub fn lines(chart: &LineChart) -> Result<String> {
    let title = clean(&chart.title);
    if chart.series.is_empty() {
        bail!("plot '{title}': no series to draw");
    }
    let series: Vec<(String, Vec<(f64, f64)>, LineStyle)> = chart
        .series
        .iter()
        .map(|s| (clean(&s.name), s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect(), s.style))
        .collect();
    if series.iter().all(|s| s.1.is_empty()) {
        bail!("plot '{title}': no finite values to draw");
    }
    let shades: Vec<(f64, f64, String)> = chart
        .shades
        .iter()
        .filter(|s| s.from.is_finite() && s.to.is_finite())
        .map(|s| (s.from.min(s.to), s.from.max(s.to), clean(&s.name)))
        .collect();
    let points = || series.iter().flat_map(|s| s.1.iter().copied());
    let xs = points().map(|p| p.0).chain(shades.iter().flat_map(|s| [s.0, s.1]));
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (y_lo, y_hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (x0, x1) = padded(x_lo, x_hi, &title)?;
    let (y0, y1) = padded(y_lo, y_hi, &title)?;
    let legend = series.len() + shades.len() > 1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let mut c = super::plot::titled(&root, &title)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("plot: {e}"))?;
        c.configure_mesh()
            .x_desc(clean(&chart.x_label))
            .y_desc(clean(&chart.y_label))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        for (i, (from, to, name)) in shades.iter().enumerate() {
            let shade = SHADES[i % SHADES.len()].mix(SHADE_ALPHA);
            c.draw_series([Rectangle::new([(*from, y0), (*to, y1)], shade.filled())])
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(name.clone())
                .legend(swatch(SHADES[i % SHADES.len()].mix(SHADE_ALPHA * 2.0)));
        }
        for (i, (name, pts, style)) in series.iter().enumerate() {
            let col = colour(i);
            let line = col.stroke_width(2);
            let dot = |p: &(f64, f64)| Circle::new(*p, 3, col.filled());
            // One point makes no line: it is drawn as a dot whatever the style.
            let style = if pts.len() == 1 { LineStyle::Points } else { *style };
            let a = match style {
                LineStyle::Line => c.draw_series(LineSeries::new(pts.iter().copied(), line)),
                LineStyle::Dashed => c.draw_series(DashedLineSeries::new(pts.iter().copied(), 6, 4, line)),
                LineStyle::Points => c.draw_series(pts.iter().map(dot)),
                LineStyle::LineAndPoints => {
                    c.draw_series(pts.iter().map(dot)).map_err(|e| anyhow!("plot: {e}"))?;
                    c.draw_series(LineSeries::new(pts.iter().copied(), line))
                }
            }
            .map_err(|e| anyhow!("plot: {e}"))?;
            if legend {
                a.label(name.clone());
                match style {
                    LineStyle::Line => a.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], line)),
                    LineStyle::Dashed => a.legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 16, y)], 6, 4, line)),
                    LineStyle::Points => a.legend(move |(x, y)| Circle::new((x + 8, y), 3, col.filled())),
                    LineStyle::LineAndPoints => a.legend(move |(x, y)| {
                        EmptyElement::at((x, y)) + PathElement::new(vec![(0, 0), (16, 0)], line) + Circle::new((8, 0), 3, col.filled())
                    }),
                };
            }
        }
        if legend {
            super::plot::legend(&mut c, SeriesLabelPosition::UpperLeft)?;
        }
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

/// One panel of the progress chart: `values` over the shared time range `x`.
struct Panel<'a> {
    values: &'a [(f64, f64)],
    colour: RGBColor,
    y_desc: &'a str,
    x_desc: Option<&'a str>,
    /// The round numbers and the legend go in this panel.
    labelled: bool,
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel<'_>,
    x: (f64, f64),
    switchover: Option<(f64, f64)>,
    starts: &[(f64, u64)],
    title: &str,
) -> Result<()> {
    let headroom = if panel.labelled { 0.15 } else { 0.08 };
    let (y0, y1) = from_zero(panel.values.iter().map(|p| p.1), headroom, title)?;
    let mut c = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(if panel.x_desc.is_some() { 40 } else { 24 })
        .y_label_area_size(64)
        .build_cartesian_2d(x.0..x.1, y0..y1)
        .map_err(|e| anyhow!("plot: {e}"))?;
    let mut mesh = c.configure_mesh();
    mesh.y_desc(panel.y_desc);
    if let Some(d) = panel.x_desc {
        mesh.x_desc(d);
    }
    mesh.draw().map_err(|e| anyhow!("plot: {e}"))?;
    // In the top panel, at mid-height on the right: clear of the round labels and,
    // as the remaining RAM falls, of the data.
    let legend = panel.labelled && (switchover.is_some() || !starts.is_empty());
    if let Some((a, b)) = switchover {
        let s = c
            .draw_series([Rectangle::new([(a, y0), (b, y1)], SWITCHOVER.mix(0.25).filled())])
            .map_err(|e| anyhow!("plot: {e}"))?;
        if legend {
            s.label("switchover (STOP → RESUME)").legend(swatch(SWITCHOVER.mix(0.35)));
        }
    }
    // A label needs about 60 px of the ~700 px plot: closer round starts share the
    // first one's label.
    let min_gap = (x.1 - x.0) * 0.09;
    let mut last_label: Option<f64> = None;
    for (i, &(t, round)) in starts.iter().enumerate() {
        let s = c
            .draw_series(DashedLineSeries::new([(t, y0), (t, y1)], 5, 4, ROUND_MARKER.stroke_width(1)))
            .map_err(|e| anyhow!("plot: {e}"))?;
        if legend && i == 0 {
            s.label("pre-copy round starts")
                .legend(|(x, y)| DashedPathElement::new(vec![(x, y), (x + 16, y)], 5, 4, ROUND_MARKER.stroke_width(1)));
        }
        if panel.labelled && last_label.is_none_or(|l| t - l >= min_gap) {
            last_label = Some(t);
            let label = EmptyElement::at((t, y1)) + Text::new(format!("round {round}"), (3, 3), ("sans-serif", 12).into_font());
            c.draw_series([label]).map_err(|e| anyhow!("plot: {e}"))?;
        }
    }
    if panel.values.is_empty() {
        let note = Text::new("no data", ((x.0 + x.1) / 2.0, (y0 + y1) / 2.0), ("sans-serif", 14).into_font().color(&BLACK.mix(0.5)));
        c.draw_series([note]).map_err(|e| anyhow!("plot: {e}"))?;
    } else {
        c.draw_series(LineSeries::new(panel.values.iter().copied(), panel.colour.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e}"))?;
        c.draw_series(panel.values.iter().map(|p| Circle::new(*p, 2, panel.colour.filled())))
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    if legend {
        super::plot::legend(&mut c, SeriesLabelPosition::MiddleRight)?;
    }
    Ok(())
}

/// One migration over time: remaining RAM above, dirty rate below, the pre-copy
/// rounds marked and the switchover shaded in both.
pub fn progress(chart: &ProgressChart) -> Result<String> {
    let title = clean(&chart.title);
    if chart.points.is_empty() {
        bail!("plot '{title}': no points to draw");
    }
    let mut points: Vec<&ProgressPoint> = chart.points.iter().filter(|p| p.t_s.is_finite()).collect();
    points.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let remaining: Vec<(f64, f64)> = points.iter().filter_map(|p| Some((p.t_s, finite(p.remaining_mib)?))).collect();
    let dirty: Vec<(f64, f64)> = points.iter().filter_map(|p| Some((p.t_s, finite(p.dirty_mib_s)?))).collect();
    if remaining.is_empty() && dirty.is_empty() {
        bail!("plot '{title}': no finite values to draw");
    }
    let mut starts = Vec::new();
    let mut last: Option<u64> = None;
    for p in &points {
        if let Some(r) = p.round {
            if last.is_some_and(|l| r > l) {
                starts.push((p.t_s, r));
            }
            last = Some(last.map_or(r, |l| l.max(r)));
        }
    }
    let switchover = chart.switchover.filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(a, b)| (a.min(b), a.max(b)));
    let ts = points.iter().map(|p| p.t_s).chain(switchover.into_iter().flat_map(|(a, b)| [a, b]));
    let (t_lo, t_hi) = ts.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let (x0, x1) = padded(t_lo, t_hi, &title)?;
    // Time since `migrate`: from 0 unless a sample came before it.
    let x = (if t_lo >= 0.0 { 0.0 } else { x0 }, x1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PROGRESS_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let area = root.titled(&title, ("sans-serif", 18)).map_err(|e| anyhow!("plot: {e}"))?;
        let h = area.dim_in_pixel().1 as i32;
        let (upper, lower) = area.split_vertically((h - 16) / 2);
        let top = Panel { values: &remaining, colour: REMAINING, y_desc: "remaining (MiB)", x_desc: None, labelled: true };
        let bottom = Panel { values: &dirty, colour: DIRTY, y_desc: "dirty rate (MiB/s)", x_desc: Some("time since migrate (s)"), labelled: false };
        draw_panel(&upper, &top, x, switchover, &starts, &title)?;
        draw_panel(&lower, &bottom, x, switchover, &starts, &title)?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &str = "<b & \"c\">";

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc
    }

    fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants().filter(|n| n.tag_name().name() == "text").map(|n| n.text().unwrap_or("").trim().to_string()).collect()
    }

    fn has_text(doc: &roxmltree::Document<'_>, t: &str) -> bool {
        texts(doc).iter().any(|x| x == t)
    }

    /// Elements `tag` whose `attr` is `colour`.
    fn coloured<'a>(doc: &'a roxmltree::Document<'a>, tag: &str, attr: &str, colour: RGBColor) -> Vec<roxmltree::Node<'a, 'a>> {
        let c = hex(colour);
        doc.descendants()
            .filter(|n| n.tag_name().name() == tag && n.attribute(attr).is_some_and(|a| a.eq_ignore_ascii_case(&c)))
            .collect()
    }

    fn palette_rects(doc: &roxmltree::Document<'_>) -> usize {
        PALETTE.iter().map(|&c| coloured(doc, "rect", "fill", c).len()).sum()
    }

    fn bar(value: f64, err: Option<f64>) -> Option<Bar> {
        Some(Bar { value, err })
    }

    fn three_by_three() -> BarChart {
        BarChart {
            title: "downtime by link".into(),
            x_label: "link".into(),
            y_label: "downtime (ms)".into(),
            series: vec!["precopy".into(), "postcopy".into(), "xbzrle".into()],
            groups: vec![
                BarGroup { label: "1G".into(), bars: vec![bar(10.0, Some(1.0)), bar(20.0, None), bar(5.0, Some(0.5))] },
                BarGroup { label: "10G".into(), bars: vec![None, bar(8.0, Some(2.0)), bar(f64::NAN, Some(1.0))] },
                BarGroup { label: "25G".into(), bars: vec![bar(3.0, Some(f64::INFINITY)), bar(0.0, None), bar(1.0, Some(3.0))] },
            ],
        }
    }

    #[test]
    fn bars_draw_one_rectangle_per_bar_and_a_whisker_per_interval() {
        let svg = bars(&three_by_three()).unwrap();
        let doc = parse(&svg);
        assert!(has_text(&doc, "downtime by link"));
        // 9 slots: one None and one NaN leave gaps.
        assert_eq!(palette_rects(&doc), 7, "{svg}");
        assert_eq!(coloured(&doc, "rect", "fill", PALETTE[0]).len(), 2);
        // Finite errors: 1.0, 0.5, 2.0, 3.0 (the infinite one and the NaN bar's are not drawn).
        assert_eq!(coloured(&doc, "polyline", "stroke", WHISKER).len(), 4, "{svg}");
        for t in ["1G", "10G", "25G", "precopy", "postcopy", "xbzrle", "link", "downtime (ms)"] {
            assert!(has_text(&doc, t), "{t} missing: {:?}", texts(&doc));
        }
    }

    #[test]
    fn a_whisker_below_zero_is_cut_at_the_axis() {
        let chart = BarChart {
            title: "t".into(),
            series: vec!["a".into()],
            groups: vec![BarGroup { label: "g".into(), bars: vec![bar(1.0, Some(3.0))] }],
            ..Default::default()
        };
        let svg = bars(&chart).unwrap();
        let doc = parse(&svg);
        let w = coloured(&doc, "polyline", "stroke", WHISKER);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].attribute("points").unwrap().split_whitespace().count(), 4, "top cap and stem only");
    }

    #[test]
    fn one_bar_alone_has_no_legend() {
        let chart = BarChart {
            title: "one".into(),
            series: vec!["only series".into()],
            groups: vec![BarGroup { label: "g".into(), bars: vec![bar(0.0, None)] }],
            ..Default::default()
        };
        let svg = bars(&chart).unwrap();
        let doc = parse(&svg);
        assert_eq!(palette_rects(&doc), 1);
        assert!(!has_text(&doc, "only series"));
        assert!(has_text(&doc, "g"));
        assert_eq!(doc.root_element().attribute("width"), Some("800"));
        assert_eq!(doc.root_element().attribute("height"), Some("420"));
    }

    #[test]
    fn negative_bars_are_drawn_below_zero() {
        let chart = BarChart {
            title: "t".into(),
            series: vec!["a".into()],
            groups: vec![
                BarGroup { label: "up".into(), bars: vec![bar(2.0, Some(0.5))] },
                BarGroup { label: "down".into(), bars: vec![bar(-3.0, Some(0.5))] },
            ],
            ..Default::default()
        };
        let doc_svg = bars(&chart).unwrap();
        let doc = parse(&doc_svg);
        let rects = coloured(&doc, "rect", "fill", PALETTE[0]);
        assert_eq!(rects.len(), 2);
        assert!(rects.iter().all(|r| r.attribute("height").unwrap().parse::<i32>().unwrap() > 0));
        assert_eq!(coloured(&doc, "polyline", "stroke", WHISKER).len(), 2);
    }

    #[test]
    fn bars_without_data_are_errors() {
        let empty = BarChart { title: "E".into(), ..Default::default() };
        let e = bars(&empty).unwrap_err().to_string();
        assert!(e.contains("plot 'E'") && e.contains("no groups"), "{e}");
        let nan = BarChart {
            title: "N".into(),
            series: vec!["a".into(), "b".into()],
            groups: vec![
                BarGroup { label: "g".into(), bars: vec![bar(f64::NAN, Some(1.0)), None] },
                BarGroup { label: "h".into(), bars: vec![] },
            ],
            ..Default::default()
        };
        let e = bars(&nan).unwrap_err().to_string();
        assert!(e.contains("plot 'N'") && e.contains("no finite values"), "{e}");
        let huge = BarChart {
            title: "H".into(),
            groups: vec![BarGroup { label: "g".into(), bars: vec![bar(f64::MAX, None), bar(-f64::MAX, None)] }],
            ..Default::default()
        };
        assert!(bars(&huge).is_err());
    }

    fn series(name: &str, points: Vec<(f64, f64)>, style: LineStyle) -> Series {
        Series { name: name.into(), points, style }
    }

    #[test]
    fn lines_draw_each_style_and_the_shades_behind() {
        let chart = LineChart {
            title: "total time vs dirty rate".into(),
            x_label: "dirty rate (MiB/s)".into(),
            y_label: "total time (s)".into(),
            series: vec![
                series("measured", vec![(0.0, 1.0), (10.0, 2.0), (20.0, f64::NAN), (30.0, 4.0)], LineStyle::Line),
                series("runs", vec![(0.0, 1.1), (10.0, 2.2), (f64::INFINITY, 1.0), (30.0, 3.9)], LineStyle::Points),
                series("both", vec![(5.0, 1.5), (15.0, 2.5)], LineStyle::LineAndPoints),
                series("fit", vec![(0.0, 0.9), (30.0, 4.1)], LineStyle::Dashed),
            ],
            shades: vec![Shade { from: 12.0, to: 18.0, name: "link saturated".into() }],
        };
        let svg = lines(&chart).unwrap();
        let doc = parse(&svg);
        for t in ["total time vs dirty rate", "dirty rate (MiB/s)", "total time (s)", "measured", "runs", "both", "fit", "link saturated"] {
            assert!(has_text(&doc, t), "{t} missing: {:?}", texts(&doc));
        }
        let line = coloured(&doc, "polyline", "stroke", PALETTE[0]);
        assert!(line.iter().any(|l| l.attribute("points").unwrap().split_whitespace().count() == 3), "NaN point skipped");
        assert_eq!(coloured(&doc, "circle", "fill", PALETTE[1]).len(), 3 + 1, "3 finite points + the legend's");
        assert_eq!(coloured(&doc, "circle", "fill", PALETTE[2]).len(), 2 + 1);
        assert!(coloured(&doc, "polyline", "stroke", PALETTE[3]).len() > 3, "dashes");
        let shade = coloured(&doc, "rect", "fill", SHADES[0]);
        assert_eq!(shade.len(), 1);
        assert!(shade[0].attribute("opacity").unwrap().parse::<f64>().unwrap() < 1.0);
        // Drawn first: before any series.
        let first_series = doc.descendants().position(|n| n.attribute("stroke").is_some_and(|s| s == hex(PALETTE[0])) && n.tag_name().name() == "polyline");
        let shade_at = doc.descendants().position(|n| n == shade[0]);
        assert!(shade_at < first_series);
    }

    #[test]
    fn one_point_and_flat_series_get_a_range() {
        for points in [vec![(3.0, 7.0)], vec![(0.0, 0.0)], vec![(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)], vec![(2.0, -1.0), (2.0, 1.0)]] {
            for style in [LineStyle::Line, LineStyle::Points, LineStyle::LineAndPoints, LineStyle::Dashed] {
                let chart = LineChart { title: "flat".into(), series: vec![series("s", points.clone(), style)], ..Default::default() };
                let svg = lines(&chart).unwrap_or_else(|e| panic!("{points:?} {style:?}: {e}"));
                let doc = parse(&svg);
                assert!(has_text(&doc, "flat"));
                assert!(!has_text(&doc, "s"), "no legend for one entry");
                let drawn = coloured(&doc, "polyline", "stroke", PALETTE[0]).len() + coloured(&doc, "circle", "fill", PALETTE[0]).len();
                assert!(drawn > 0, "{points:?} {style:?}: nothing drawn");
                // The y ticks are distinct numbers: the range is not degenerate.
                let numbers: Vec<f64> = texts(&doc).iter().filter_map(|t| t.parse().ok()).collect();
                assert!(numbers.len() >= 4, "{points:?}: {numbers:?}");
            }
        }
    }

    #[test]
    fn lines_without_data_are_errors() {
        let e = lines(&LineChart { title: "E".into(), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("plot 'E'") && e.contains("no series"), "{e}");
        let nan = LineChart {
            title: "N".into(),
            series: vec![series("a", vec![(f64::NAN, 1.0), (1.0, f64::NEG_INFINITY)], LineStyle::Line), series("b", vec![], LineStyle::Points)],
            shades: vec![Shade { from: 0.0, to: 1.0, name: "s".into() }],
            ..Default::default()
        };
        let e = lines(&nan).unwrap_err().to_string();
        assert!(e.contains("plot 'N'") && e.contains("no finite values"), "{e}");
        let huge = LineChart { title: "H".into(), series: vec![series("a", vec![(0.0, f64::MAX), (1.0, -f64::MAX)], LineStyle::Line)], ..Default::default() };
        assert!(lines(&huge).is_err());
    }

    #[test]
    fn markup_in_labels_is_escaped() {
        let b = BarChart {
            title: NASTY.into(),
            x_label: NASTY.into(),
            y_label: NASTY.into(),
            series: vec![NASTY.into(), "x'y\u{1}".into()],
            groups: vec![BarGroup { label: NASTY.into(), bars: vec![bar(1.0, Some(0.1)), bar(2.0, None)] }],
        };
        let l = LineChart {
            title: NASTY.into(),
            x_label: NASTY.into(),
            y_label: NASTY.into(),
            series: vec![series(NASTY, vec![(0.0, 1.0), (1.0, 2.0)], LineStyle::Line), series("x'y\u{1}", vec![(0.5, 1.5)], LineStyle::Points)],
            shades: vec![Shade { from: 0.2, to: 0.4, name: NASTY.into() }],
        };
        let p = ProgressChart {
            title: NASTY.into(),
            points: vec![ProgressPoint { t_s: 0.5, remaining_mib: Some(10.0), dirty_mib_s: Some(1.0), round: Some(1) }],
            switchover: None,
        };
        for (svg, n) in [(bars(&b).unwrap(), 5), (lines(&l).unwrap(), 5), (progress(&p).unwrap(), 1)] {
            let doc = parse(&svg);
            assert_eq!(texts(&doc).iter().filter(|t| *t == NASTY).count(), n, "{:?}", texts(&doc));
            assert!(svg.contains("&lt;b &amp; &quot;c&quot;&gt;"));
            if n == 5 {
                assert!(has_text(&doc, "x'y"), "{:?}", texts(&doc));
            }
        }
    }

    fn pt(t_s: f64, remaining: Option<f64>, dirty: Option<f64>, round: Option<u64>) -> ProgressPoint {
        ProgressPoint { t_s, remaining_mib: remaining, dirty_mib_s: dirty, round }
    }

    #[test]
    fn round_starts_too_close_share_a_label() {
        let points = [(0.0, 1), (5.0, 2), (5.1, 3), (5.2, 4), (9.0, 5), (10.0, 5)].iter().map(|&(t, r)| pt(t, Some(10.0), Some(1.0), Some(r))).collect();
        let doc_text = progress(&ProgressChart { title: "t".into(), points, switchover: None }).unwrap();
        let doc = parse(&doc_text);
        let rounds: Vec<String> = texts(&doc).into_iter().filter(|t| t.starts_with("round ")).collect();
        assert_eq!(rounds, ["round 2", "round 5"], "rounds 3 and 4 start within 0.2 s of round 2");
        assert_eq!(marker_xs(&doc).len(), 4, "every round start keeps its marker");
    }

    /// The distinct x of the vertical dashes of the round markers.
    fn marker_xs(doc: &roxmltree::Document<'_>) -> Vec<String> {
        let mut xs: Vec<String> = coloured(doc, "polyline", "stroke", ROUND_MARKER)
            .iter()
            .filter_map(|l| {
                let xs: Vec<&str> = l.attribute("points").unwrap().split_whitespace().map(|p| p.split(',').next().unwrap()).collect();
                xs.iter().all(|x| *x == xs[0]).then(|| xs[0].to_string())
            })
            .collect();
        xs.sort();
        xs.dedup();
        xs
    }

    #[test]
    fn progress_marks_each_round_and_shades_the_switchover_in_both_panels() {
        let chart = ProgressChart {
            title: "precopy 2 GiB".into(),
            points: vec![
                pt(0.0, Some(2048.0), None, Some(1)),
                pt(1.0, Some(1200.0), Some(300.0), Some(1)),
                pt(2.0, Some(400.0), Some(250.0), Some(2)),
                pt(2.5, None, Some(f64::NAN), Some(2)),
                pt(3.0, Some(100.0), Some(260.0), Some(3)),
                pt(f64::NAN, Some(5.0), Some(5.0), Some(9)),
            ],
            switchover: Some((3.2, 3.3)),
        };
        let svg = progress(&chart).unwrap();
        let doc = parse(&svg);
        assert_eq!(doc.root_element().attribute("height"), Some("560"));
        for t in ["precopy 2 GiB", "remaining (MiB)", "dirty rate (MiB/s)", "round 2", "round 3", "switchover (STOP → RESUME)"] {
            assert!(has_text(&doc, t), "{t} missing: {:?}", texts(&doc));
        }
        let rounds: Vec<String> = texts(&doc).into_iter().filter(|t| t.starts_with("round ")).collect();
        assert_eq!(rounds, ["round 2", "round 3"], "labelled once, in the top panel; round 1 is no increase");
        assert_eq!(marker_xs(&doc).len(), 2, "one marker per increase, at the same x in both panels");
        assert_eq!(coloured(&doc, "rect", "fill", SWITCHOVER).len(), 2, "shaded in both panels");
        // The None and NaN values are skipped: 4 remaining, 3 dirty-rate samples.
        assert_eq!(coloured(&doc, "circle", "fill", REMAINING).len(), 4);
        assert_eq!(coloured(&doc, "circle", "fill", DIRTY).len(), 3);
        let rem = coloured(&doc, "polyline", "stroke", REMAINING);
        assert_eq!(rem.len(), 1);
        assert_eq!(rem[0].attribute("points").unwrap().split_whitespace().count(), 4);
    }

    #[test]
    fn progress_with_one_point_or_one_panel_works() {
        let one = ProgressChart { title: "one".into(), points: vec![pt(0.0, Some(0.0), None, None)], switchover: None };
        let svg = progress(&one).unwrap();
        let doc = parse(&svg);
        assert!(has_text(&doc, "one") && has_text(&doc, "no data"));
        assert!(marker_xs(&doc).is_empty());
        assert!(coloured(&doc, "rect", "fill", SWITCHOVER).is_empty());
        let unordered = ProgressChart {
            title: "u".into(),
            points: vec![pt(4.0, None, Some(10.0), Some(2)), pt(1.0, None, Some(20.0), Some(1)), pt(5.0, None, Some(10.0), Some(2))],
            switchover: Some((f64::NAN, 1.0)),
        };
        let doc_svg = progress(&unordered).unwrap();
        let doc = parse(&doc_svg);
        assert_eq!(marker_xs(&doc).len(), 1);
        assert!(has_text(&doc, "round 2") && has_text(&doc, "no data"));
        assert!(coloured(&doc, "rect", "fill", SWITCHOVER).is_empty(), "a NaN switchover is not drawn");
    }

    #[test]
    fn progress_without_data_is_an_error() {
        let e = progress(&ProgressChart { title: "E".into(), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("plot 'E'") && e.contains("no points"), "{e}");
        let none = ProgressChart {
            title: "N".into(),
            points: vec![pt(0.0, None, None, Some(1)), pt(1.0, Some(f64::NAN), None, Some(2)), pt(f64::INFINITY, Some(1.0), Some(1.0), None)],
            switchover: Some((0.5, 0.6)),
        };
        let e = progress(&none).unwrap_err().to_string();
        assert!(e.contains("plot 'N'") && e.contains("no finite values"), "{e}");
    }
}
