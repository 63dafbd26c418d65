//! Charts of the station pages, drawn on the server as SVG that a phone can read (see
//! [`svg`]: text at its own pixel size at any width): a series' history and its 24-hour
//! forecast with the prediction interval, each on a value axis fitted to the data with the
//! lines where the AQI category changes when they fall in or near its range; and the
//! operators' metric charts ([`metric`]: one or more lines over a fixed range, broken where a
//! period has no value). A chart comes with what the page's script needs for tooltips (axis
//! ranges, points), so the SVG itself stays static, and [`table`] gives each chart's data as a
//! table for keyboard and screen-reader users.

pub mod axis;
pub mod svg;
pub mod table;

use chrono::Datelike;
use ecocityhub_domain::aqi::us_epa::Category;

use svg::{Frame, Svg, Swatch};

pub use table::DataTable;

/// A drawn chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub svg: String,
    /// Axis ranges: `t0,t1,v0,v1` (epoch seconds, values).
    pub range: String,
    /// `ts,value[,lower,upper];…` for tooltips.
    pub points: String,
}

/// What a chart says about its data besides the points.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// What a screen reader announces for the chart.
    pub label: &'a str,
    pub unit: &'a str,
    /// The AQI category bounds in the series' unit (empty for parameters without an AQI).
    pub thresholds: &'a [(Category, f64)],
    /// A wind direction: dots on a compass axis.
    pub compass: bool,
    /// The year "now" (time labels name other years).
    pub current_year: i32,
}

impl<'a> Spec<'a> {
    pub fn new(label: &'a str, unit: &'a str) -> Spec<'a> {
        Spec {
            label,
            unit,
            thresholds: &[],
            compass: false,
            current_year: chrono::Utc::now().year(),
        }
    }

    pub fn thresholds(mut self, thresholds: &'a [(Category, f64)]) -> Spec<'a> {
        self.thresholds = thresholds;
        self
    }

    pub fn compass(mut self, compass: bool) -> Spec<'a> {
        self.compass = compass;
        self
    }
}

/// The category that begins above a category's upper bound.
fn next(c: Category) -> Category {
    match c {
        Category::Good => Category::Moderate,
        Category::Moderate => Category::UnhealthyForSensitiveGroups,
        Category::UnhealthyForSensitiveGroups => Category::Unhealthy,
        Category::Unhealthy => Category::VeryUnhealthy,
        Category::VeryUnhealthy | Category::Hazardous => Category::Hazardous,
    }
}

/// Where a category begins, once per category: the upper bound of "Hazardous" is the top of
/// the index, not a change of category (drawing it said "Hazardous" twice).
pub fn category_lines(thresholds: &[(Category, f64)]) -> Vec<(Category, f64)> {
    let mut out: Vec<(Category, f64)> = Vec::new();
    for &(c, v) in thresholds {
        let begins = next(c);
        if c != Category::Hazardous && !out.iter().any(|(b, _)| *b == begins) {
            out.push((begins, v));
        }
    }
    out
}

/// A line's colour: the category's, but a darker yellow for "Moderate" (pure yellow does not
/// show on white).
fn line_color(c: Category) -> &'static str {
    match c {
        Category::Moderate => "#c8b400",
        other => other.color(),
    }
}

/// The value axis of a chart of values from `lo` to `hi`.
fn value_axis(lo: f64, hi: f64, spec: &Spec, lines: &[(Category, f64)]) -> axis::ValueAxis {
    if spec.compass {
        return axis::compass();
    }
    let values: Vec<f64> = lines.iter().map(|l| l.1).collect();
    axis::fitted(lo, hi, &values, spec.unit)
}

/// The category lines of a frame worth drawing: in its range, each with its label and where
/// the label goes (a line whose label finds no free place is left out).
fn placed_lines(f: &Frame, lines: &[(Category, f64)]) -> Vec<(Category, f64, f64, String)> {
    let shown: Vec<(Category, f64, String)> = lines
        .iter()
        .filter(|(_, v)| *v >= f.axis.v0 && *v <= f.axis.v1)
        .map(|(c, v)| (*c, *v, format!("{} above {}", c.label(), bound(*v))))
        .collect();
    let ys: Vec<(f64, f64)> = shown
        .iter()
        .map(|(_, v, text)| (f.y(*v), svg::label_width(text)))
        .collect();
    let left = svg::value_label_spans(f);
    let places = svg::place_labels(&ys, &left, (f.top - 18.0, f.bottom()), svg::LABEL_FONT);
    shown
        .into_iter()
        .zip(places)
        .filter_map(|((c, v, text), at)| Some((c, v, at?, text)))
        .collect()
}

/// Draws the frame — grid, time axis, category lines — before the data, and returns the
/// category lines drawn with their labels' places (see [`draw_labels`]).
fn draw_frame(
    s: &mut Svg,
    f: &Frame,
    spec: &Spec,
    lines: &[(Category, f64)],
) -> Vec<(f64, String)> {
    s.grid(f);
    s.time_axis(f, spec.current_year);
    let placed = placed_lines(f, lines);
    for (c, v, _, _) in &placed {
        s.rule(f, *v, line_color(*c));
    }
    placed
        .into_iter()
        .map(|(_, _, at, text)| (at, text))
        .collect()
}

/// Labels the value axis and the category lines, over the data.
fn draw_labels(s: &mut Svg, f: &Frame, labels: &[(f64, String)]) {
    s.value_labels(f);
    s.right_labels(labels);
}

/// A category bound as its label says it: `9`, `35.4`, `188`.
fn bound(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        crate::view::fmt_value(v)
    }
}

/// The category lines a finished chart shows (for its caption).
pub fn shows_category_lines(chart: &Chart) -> bool {
    chart.svg.contains("class=\"threshold\"")
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Splits a series where consecutive points are further apart than `max_gap`, so that lines
/// do not bridge missing data.
fn segments(points: &[(i64, f64)], max_gap: i64) -> Vec<&[(i64, f64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if points[i].0 - points[i - 1].0 > max_gap {
            out.push(&points[start..i]);
            start = i;
        }
    }
    if start < points.len() {
        out.push(&points[start..]);
    }
    out
}

/// The typical step of a series (median spacing).
fn typical_step(points: &[(i64, f64)]) -> i64 {
    let mut d: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if d.is_empty() {
        return 3_600;
    }
    d.sort_unstable();
    d[d.len() / 2].max(1)
}

/// Draws a series as lines broken at gaps, lone points as dots.
fn draw_series(s: &mut Svg, f: &Frame, points: &[(i64, f64)], color: &str) {
    let step = typical_step(points);
    let mut lone = Vec::new();
    s.begin_data(f);
    for seg in segments(points, step * 3) {
        if seg.len() == 1 {
            lone.push(seg[0]);
        } else {
            s.line(f, seg, color, 2);
        }
    }
    s.end_data();
    s.dots(f, &lone, color, 2.5);
}

fn points_attr(points: &[(i64, f64)]) -> String {
    points
        .iter()
        .map(|(t, v)| format!("{t},{v:.2}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn range_attr(f: &Frame) -> String {
    format!("{},{},{},{}", f.t0, f.t1, f.axis.v0, f.axis.v1)
}

/// The history of a series: `points` are (epoch seconds, value).
pub fn history(points: &[(i64, f64)], spec: &Spec) -> Chart {
    let (lo, hi) = min_max(points.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
    let lines = category_lines(spec.thresholds);
    let (t0, t1) = match (points.first(), points.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (a.0, b.0),
        (Some(a), _) => (a.0 - 3_600, a.0 + 3_600),
        _ => (0, 1),
    };
    let f = Frame::new(t0, t1, value_axis(lo, hi, spec, &lines), 0);
    let mut s = Svg::open(spec.label);
    let shown = draw_frame(&mut s, &f, spec, &lines);
    let line = "#0b6e4f";
    if spec.compass {
        s.dots(&f, points, line, 2.5);
    } else {
        draw_series(&mut s, &f, points, line);
    }
    draw_labels(&mut s, &f, &shown);
    Chart {
        svg: s.finish(&f),
        range: range_attr(&f),
        points: points_attr(points),
    }
}

/// One forecast hour: (epoch seconds, value, lower, upper).
pub type ForecastPoint = (i64, f64, f64, f64);

/// The last day of measurements and the forecast after it, with its interval as a band.
pub fn forecast(measured: &[(i64, f64)], hours: &[ForecastPoint], spec: &Spec) -> Chart {
    let values = measured
        .iter()
        .map(|p| p.1)
        .chain(hours.iter().flat_map(|h| [h.1, h.2, h.3]));
    let (lo, hi) = min_max(values).unwrap_or((0.0, 1.0));
    let lines = category_lines(spec.thresholds);
    let t0 = measured
        .first()
        .map(|p| p.0)
        .or(hours.first().map(|h| h.0 - 3_600))
        .unwrap_or(0);
    let t1 = hours.last().map(|h| h.0).unwrap_or(t0 + 1).max(t0 + 1);
    let (model, ink) = ("#005cab", "#1b2a2f");
    let legend = [
        ("interval", Swatch::Band { color: model }),
        (
            "measured",
            Swatch::Line {
                color: ink,
                width: 2,
                dash: None,
            },
        ),
        (
            "forecast",
            Swatch::Line {
                color: model,
                width: 3,
                dash: Some("7 4"),
            },
        ),
    ];
    let rows = svg::legend_rows(&legend.iter().map(|l| l.0).collect::<Vec<_>>());
    let f = Frame::new(t0, t1, value_axis(lo, hi, spec, &lines), rows);
    let mut s = Svg::open(spec.label);
    let shown = draw_frame(&mut s, &f, spec, &lines);
    s.begin_data(&f);
    let band: Vec<(i64, f64, f64)> = hours.iter().map(|h| (h.0, h.2, h.3)).collect();
    if !band.is_empty() {
        s.band(&f, &band, model);
    }
    let step = typical_step(measured);
    for seg in segments(measured, step * 3) {
        s.line(&f, seg, ink, 2);
    }
    // The forecast starts from the last measurement, so the two lines meet.
    let joined: Vec<(i64, f64)> = measured
        .last()
        .copied()
        .into_iter()
        .chain(hours.iter().map(|h| (h.0, h.1)))
        .collect();
    s.dashed(&f, &joined, model, 3);
    s.end_data();
    draw_labels(&mut s, &f, &shown);
    s.legend(&legend);
    let pts = measured
        .iter()
        .map(|(t, v)| format!("{t},{v:.2}"))
        .chain(
            hours
                .iter()
                .map(|(t, v, lo, hi)| format!("{t},{v:.2},{lo:.2},{hi:.2}")),
        )
        .collect::<Vec<_>>()
        .join(";");
    Chart {
        svg: s.finish(&f),
        range: range_attr(&f),
        points: pts,
    }
}

/// One line of a [`metric`] chart: its legend and its points, `None` where a period has no
/// value (the line breaks there).
pub struct Line<'a> {
    pub label: &'a str,
    pub points: &'a [(i64, Option<f64>)],
}

/// The colours of a metric chart's lines, in order.
const LINE_COLORS: [&str; 4] = ["#0b6e4f", "#b22222", "#005cab", "#8c5a00"];

/// The runs of consecutive points with a value.
fn runs(points: &[(i64, Option<f64>)]) -> Vec<Vec<(i64, f64)>> {
    let mut out: Vec<Vec<(i64, f64)>> = vec![Vec::new()];
    for &(t, v) in points {
        match (v, out.last_mut()) {
            (Some(v), Some(run)) => run.push((t, v)),
            (None, Some(run)) if !run.is_empty() => out.push(Vec::new()),
            _ => {}
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// A chart of operational metrics over `t0..t1` (epoch seconds): one line per [`Line`], a
/// legend when there are several, tooltips (the figure's points) when there is one.
pub fn metric(lines: &[Line], t0: i64, t1: i64, unit: &str, label: &str) -> Chart {
    let values = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1));
    let (lo, hi) = min_max(values).unwrap_or((0.0, 1.0));
    let spec = Spec::new(label, unit);
    let legend: Vec<(&str, Swatch)> = if lines.len() > 1 {
        lines
            .iter()
            .zip(LINE_COLORS.iter().cycle())
            .map(|(l, color)| {
                (
                    l.label,
                    Swatch::Line {
                        color,
                        width: 2,
                        dash: None,
                    },
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows = svg::legend_rows(&legend.iter().map(|l| l.0).collect::<Vec<_>>());
    let f = Frame::new(t0, t1, axis::fitted(lo.min(0.0), hi, &[], unit), rows);
    let mut s = Svg::open(label);
    draw_frame(&mut s, &f, &spec, &[]);
    let mut lone = Vec::new();
    s.begin_data(&f);
    for (line, color) in lines.iter().zip(LINE_COLORS.iter().cycle()) {
        for run in runs(line.points) {
            if run.len() == 1 {
                lone.push((run[0], *color));
            } else {
                s.line(&f, &run, color, 2);
            }
        }
    }
    s.end_data();
    for (p, color) in lone {
        s.dots(&f, &[p], color, 2.5);
    }
    draw_labels(&mut s, &f, &[]);
    s.legend(&legend);
    let points = match lines {
        [one] => one
            .points
            .iter()
            .filter_map(|(t, v)| Some(format!("{t},{:.3}", (*v)?)))
            .collect::<Vec<_>>()
            .join(";"),
        _ => String::new(),
    };
    Chart {
        svg: s.finish(&f),
        range: range_attr(&f),
        points,
    }
}

#[cfg(test)]
mod tests;
