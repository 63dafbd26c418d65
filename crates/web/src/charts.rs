//! Charts of the station pages, drawn on the server as SVG with plotters: a series' history
//! and its 24-hour forecast with the prediction interval, each with the concentration lines
//! where the AQI category changes; and the operators' metric charts ([`metric`]: one or more
//! lines over a fixed range, broken where a period has no value). A chart comes with what the
//! page's script needs for tooltips (plot area, axis ranges, points), so the SVG itself stays
//! static.

use chrono::Datelike;
use ecocityhub_domain::aqi::us_epa::Category;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Size of a chart in SVG units (it scales to the page's width).
pub const SIZE: (u32, u32) = (760, 320);

/// A drawn chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub svg: String,
    /// Plot area in SVG units: `x0,x1,y0,y1`.
    pub area: String,
    /// Axis ranges: `t0,t1,v0,v1` (epoch seconds, values).
    pub range: String,
    /// `ts,value[,lower,upper];…` for tooltips.
    pub points: String,
}

fn parse_hex(color: &str) -> RGBColor {
    let c = color.trim_start_matches('#');
    let byte = |i: usize| u8::from_str_radix(c.get(i..i + 2).unwrap_or("80"), 16).unwrap_or(128);
    RGBColor(byte(0), byte(2), byte(4))
}

fn time_label(ts: i64, span: i64) -> String {
    let t = chrono::DateTime::from_timestamp(ts, 0).unwrap_or_default();
    let midnight = ts.rem_euclid(86_400) == 0;
    if span <= 36 * 3_600 && !midnight {
        t.format("%H:%M").to_string()
    } else if span <= 4 * 86_400 && !midnight {
        t.format("%d %b %H:%M").to_string()
    } else if span <= 120 * 86_400 {
        t.format("%d %b").to_string()
    } else {
        t.format("%b %Y").to_string()
    }
}

/// Tick positions on a time axis: whole quarter hours, hours, days or months (UTC), at most
/// about 8.
pub fn time_ticks(t0: i64, t1: i64) -> Vec<i64> {
    const M: i64 = 60;
    const H: i64 = 3_600;
    const D: i64 = 86_400;
    let span = (t1 - t0).max(1);
    let step = [
        10 * M,
        15 * M,
        30 * M,
        H,
        2 * H,
        3 * H,
        6 * H,
        12 * H,
        D,
        2 * D,
        7 * D,
        14 * D,
        30 * D,
        61 * D,
    ]
    .into_iter()
    .find(|s| span / s <= 8)
    .unwrap_or(91 * D);
    if step >= 30 * D {
        // Calendar months: the first of each (every second or third month for long spans).
        let every = (step / (30 * D)) as u32;
        let mut out = Vec::new();
        let start = chrono::DateTime::from_timestamp(t0, 0)
            .unwrap_or_default()
            .date_naive();
        let mut m = chrono::NaiveDate::from_ymd_opt(start.year_ce().1 as i32, start.month(), 1)
            .unwrap_or_default();
        while let Some(t) = m.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()) {
            if t > t1 {
                break;
            }
            if t >= t0 && m.month0().is_multiple_of(every) {
                out.push(t);
            }
            m = m
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(chrono::NaiveDate::MAX);
        }
        return out;
    }
    // Weeks start on Mondays (1970-01-01 was a Thursday).
    let offset = if step == 7 * D || step == 14 * D {
        4 * D
    } else {
        0
    };
    let first = ((t0 - offset) as f64 / step as f64).ceil() as i64 * step + offset;
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= t1)
        .collect()
}

/// Vertical grid lines and labels at [`time_ticks`], drawn under the x axis.
fn draw_time_axis<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordi64, plotters::coord::types::RangedCoordf64>,
    >,
    t0: i64,
    t1: i64,
    span: i64,
) -> Result<(), String> {
    let (_, y_range) = (chart.x_range(), chart.y_range());
    let grid = RGBColor(215, 222, 220);
    for t in time_ticks(t0, t1) {
        chart
            .draw_series(LineSeries::new(
                [(t, y_range.start), (t, y_range.end)],
                grid.stroke_width(1),
            ))
            .map_err(err)?;
        let (x, y) = chart.backend_coord(&(t, y_range.start));
        let style = ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(27, 42, 47))
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(time_label(t, span), (x, y + 8), style))
            .map_err(err)?;
    }
    Ok(())
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

/// Threshold lines visible in `0..v_max`, and how far up the axis must go to show the first
/// one above the data (so a reader sees where "Moderate" starts even on a clean day).
fn visible_thresholds(
    thresholds: &[(Category, f64)],
    data_max: f64,
) -> (Vec<(Category, f64)>, f64) {
    let mut v_max = data_max.max(1.0) * 1.08;
    if let Some(&(_, next)) = thresholds.iter().find(|(_, c)| *c >= data_max) {
        if next < data_max * 2.5 + 1.0 {
            v_max = v_max.max(next * 1.08);
        }
    }
    let shown = thresholds
        .iter()
        .copied()
        .filter(|(_, c)| *c < v_max)
        .collect();
    (shown, v_max)
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("chart: {e:?}")
}

/// What both charts draw around their data.
struct Frame<'a> {
    t0: i64,
    t1: i64,
    v_max: f64,
    unit: &'a str,
    thresholds: Vec<(Category, f64)>,
}

fn finish(
    svg: String,
    label: &str,
    area: (i32, i32, i32, i32),
    f: &Frame,
    points: String,
) -> Chart {
    let labelled = svg.replacen(
        "<svg ",
        &format!(
            "<svg role=\"img\" aria-label=\"{}\" ",
            label
                .replace('&', "&amp;")
                .replace('"', "&quot;")
                .replace('<', "&lt;")
        ),
        1,
    );
    Chart {
        svg: labelled,
        area: format!("{},{},{},{}", area.0, area.1, area.2, area.3),
        range: format!("{},{},0,{:.3}", f.t0, f.t1, f.v_max),
        points,
    }
}

/// Axes (a time axis on whole hours, days or months), grid and threshold lines of a chart
/// whose values start at `v_min`.
fn draw_frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
    f: &Frame,
    v_min: f64,
) -> Result<ChartContext<'a, DB, TimeValue>, String> {
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(56)
        .build_cartesian_2d(f.t0..f.t1, v_min..f.v_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_desc(f.unit.to_string())
        .disable_x_mesh()
        // The time axis is drawn by `draw_time_axis`; plotters' own labels are blanked.
        .x_labels(2)
        .x_label_formatter(&|_| String::new())
        .y_labels(6)
        .light_line_style(RGBColor(236, 240, 239))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    draw_time_axis(root, &mut chart, f.t0, f.t1, f.t1 - f.t0)?;
    draw_thresholds(&mut chart, f)?;
    Ok(chart)
}

/// The coordinates of every chart: epoch seconds against values.
type TimeValue =
    Cartesian2d<plotters::coord::types::RangedCoordi64, plotters::coord::types::RangedCoordf64>;

/// The history of a series: `points` are (epoch seconds, value); `thresholds` the AQI
/// category bounds in the series' unit (empty for parameters without an AQI).
pub fn history(
    points: &[(i64, f64)],
    unit: &str,
    label: &str,
    thresholds: &[(Category, f64)],
) -> Result<Chart, String> {
    let data_max = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let data_min = points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let (shown, v_max) = visible_thresholds(thresholds, data_max.max(0.0));
    let v_min = if data_min < 0.0 { data_min * 1.08 } else { 0.0 };
    let (t0, t1) = match (points.first(), points.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (a.0, b.0),
        (Some(a), _) => (a.0 - 3_600, a.0 + 3_600),
        _ => (0, 1),
    };
    let frame = Frame {
        t0,
        t1,
        v_max,
        unit,
        thresholds: shown,
    };
    let mut svg = String::new();
    let area;
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = draw_frame(&root, &frame, v_min)?;
        let step = typical_step(points);
        let line = RGBColor(11, 110, 79);
        for seg in segments(points, step * 3) {
            if seg.len() == 1 {
                chart
                    .draw_series(std::iter::once(Circle::new(seg[0], 2, line.filled())))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(seg.iter().copied(), line.stroke_width(2)))
                    .map_err(err)?;
            }
        }
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        area = (xr.start, xr.end, yr.start, yr.end);
        root.present().map_err(err)?;
    }
    let pts = points
        .iter()
        .map(|(t, v)| format!("{t},{v:.2}"))
        .collect::<Vec<_>>()
        .join(";");
    Ok(finish(svg, label, area, &frame, pts))
}

fn draw_thresholds<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordi64, plotters::coord::types::RangedCoordf64>,
    >,
    f: &Frame,
) -> Result<(), String> {
    for &(category, c) in &f.thresholds {
        // The line has the colour of the category that begins above it.
        let color = parse_hex(next(category).color());
        chart
            .draw_series(DashedLineSeries::new(
                [(f.t0, c), (f.t1, c)],
                6,
                4,
                color.stroke_width(2),
            ))
            .map_err(err)?;
        let style = ("sans-serif", 11)
            .into_font()
            .color(&RGBColor(60, 60, 60))
            .pos(Pos::new(HPos::Right, VPos::Bottom));
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{} above {:.0} {}", next(category).label(), c, f.unit),
                (f.t1, c),
                style,
            )))
            .map_err(err)?;
    }
    Ok(())
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

/// One forecast hour: (epoch seconds, value, lower, upper).
pub type ForecastPoint = (i64, f64, f64, f64);

/// The last day of measurements and the forecast after it, with its interval as a band.
pub fn forecast(
    measured: &[(i64, f64)],
    hours: &[ForecastPoint],
    unit: &str,
    label: &str,
    thresholds: &[(Category, f64)],
) -> Result<Chart, String> {
    let data_max = measured
        .iter()
        .map(|p| p.1)
        .chain(hours.iter().map(|h| h.3))
        .fold(0.0, f64::max);
    let (shown, v_max) = visible_thresholds(thresholds, data_max);
    let t0 = measured
        .first()
        .map(|p| p.0)
        .or(hours.first().map(|h| h.0 - 3_600))
        .unwrap_or(0);
    let t1 = hours.last().map(|h| h.0).unwrap_or(t0 + 1).max(t0 + 1);
    let frame = Frame {
        t0,
        t1,
        v_max,
        unit,
        thresholds: shown,
    };
    let mut svg = String::new();
    let area;
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = draw_frame(&root, &frame, 0.0)?;
        let model = RGBColor(0, 92, 171);
        if !hours.is_empty() {
            let mut band: Vec<(i64, f64)> = hours.iter().map(|h| (h.0, h.3)).collect();
            band.extend(hours.iter().rev().map(|h| (h.0, h.2)));
            chart
                .draw_series(std::iter::once(Polygon::new(band, model.mix(0.2).filled())))
                .map_err(err)?
                .label("interval")
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], model.mix(0.2).filled())
                });
        }
        let ink = RGBColor(27, 42, 47);
        let step = typical_step(measured);
        for (i, seg) in segments(measured, step * 3).into_iter().enumerate() {
            let series = chart
                .draw_series(LineSeries::new(seg.iter().copied(), ink.stroke_width(2)))
                .map_err(err)?;
            if i == 0 {
                series.label("measured").legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], ink.stroke_width(2))
                });
            }
        }
        // The forecast starts from the last measurement, so the two lines meet.
        let joined: Vec<(i64, f64)> = measured
            .last()
            .copied()
            .into_iter()
            .chain(hours.iter().map(|h| (h.0, h.1)))
            .collect();
        chart
            .draw_series(DashedLineSeries::new(joined, 7, 4, model.stroke_width(3)))
            .map_err(err)?
            .label("forecast")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], model.stroke_width(3))
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(160, 170, 170))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        area = (xr.start, xr.end, yr.start, yr.end);
        root.present().map_err(err)?;
    }
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
    Ok(finish(svg, label, area, &frame, pts))
}

/// One line of a [`metric`] chart: its legend and its points, `None` where a period has no
/// value (the line breaks there).
pub struct Line<'a> {
    pub label: &'a str,
    pub points: &'a [(i64, Option<f64>)],
}

/// The colours of a metric chart's lines, in order.
const LINE_COLORS: [RGBColor; 4] = [
    RGBColor(11, 110, 79),
    RGBColor(178, 34, 34),
    RGBColor(0, 92, 171),
    RGBColor(140, 90, 0),
];

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

/// Draws one line's runs, with a legend entry when `legend`.
fn draw_line<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, TimeValue>,
    line: &Line,
    color: RGBColor,
    legend: bool,
) -> Result<(), String> {
    for (i, run) in runs(line.points).into_iter().enumerate() {
        let drawn = if run.len() == 1 {
            chart
                .draw_series(std::iter::once(Circle::new(run[0], 2, color.filled())))
                .map_err(err)?
        } else {
            chart
                .draw_series(LineSeries::new(run, color.stroke_width(2)))
                .map_err(err)?
        };
        if legend && i == 0 {
            drawn.label(line.label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    Ok(())
}

/// A chart of operational metrics over `t0..t1` (epoch seconds): one line per [`Line`], a
/// legend when there are several, tooltips (the figure's points) when there is one.
pub fn metric(lines: &[Line], t0: i64, t1: i64, unit: &str, label: &str) -> Result<Chart, String> {
    let data_max = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .fold(0.0, f64::max);
    let frame = Frame {
        t0,
        t1: t1.max(t0 + 1),
        v_max: if data_max > 0.0 { data_max * 1.1 } else { 1.0 },
        unit,
        thresholds: Vec::new(),
    };
    let mut svg = String::new();
    let area;
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = draw_frame(&root, &frame, 0.0)?;
        let legend = lines.len() > 1;
        for (line, color) in lines.iter().zip(LINE_COLORS.iter().cycle()) {
            draw_line(&mut chart, line, *color, legend)?;
        }
        if legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.9))
                .border_style(RGBColor(160, 170, 170))
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(err)?;
        }
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        area = (xr.start, xr.end, yr.start, yr.end);
        root.present().map_err(err)?;
    }
    let points = match lines {
        [one] => one
            .points
            .iter()
            .filter_map(|(t, v)| Some(format!("{t},{:.3}", (*v)?)))
            .collect::<Vec<_>>()
            .join(";"),
        _ => String::new(),
    };
    Ok(finish(svg, label, area, &frame, points))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_chart_draws_data_thresholds_and_tooltip_data() {
        let points: Vec<(i64, f64)> = (0..48)
            .map(|h| (h * 3_600, 5.0 + (h % 12) as f64))
            .collect();
        let thresholds = ecocityhub_domain::aqi::us_epa::Table::Pm25_24h.category_upper_bounds();
        let c = history(&points, "µg/m³", "PM2.5, last 2 days", &thresholds).unwrap();
        assert!(c
            .svg
            .starts_with("<svg role=\"img\" aria-label=\"PM2.5, last 2 days\""));
        // Data up to 16 µg/m³: the Good/Moderate line (9.0) and the next (35.4) are drawn.
        assert!(c.svg.contains("Moderate above 9"), "{}", &c.svg[..200]);
        assert!(c.svg.contains("Unhealthy for Sensitive Groups above 35"));
        assert!(!c.svg.contains("Very Unhealthy above"));
        assert_eq!(c.points.split(';').count(), 48);
        let area: Vec<i32> = c.area.split(',').map(|v| v.parse().unwrap()).collect();
        assert!(area[0] < area[1] && area[2] < area[3]);
    }

    #[test]
    fn time_ticks_fall_on_whole_hours_days_weeks_and_months() {
        let day = 86_400;
        let t0 = 1_700_000_123; // 2023-11-14 22:15:23 UTC
        let hours = time_ticks(t0, t0 + day);
        assert!(hours.len() <= 8 && hours.len() >= 4, "{hours:?}");
        assert!(hours.iter().all(|t| t % (3 * 3_600) == 0));
        let week = time_ticks(t0, t0 + 7 * day);
        assert!(week.iter().all(|t| t % day == 0), "{week:?}");
        let hour = time_ticks(t0, t0 + 3_600);
        assert!(
            hour.len() >= 4 && hour.iter().all(|t| t % 600 == 0),
            "{hour:?}"
        );
        let year = time_ticks(t0, t0 + 365 * day);
        assert!(year.len() <= 8, "{year:?}");
        for t in &year {
            let d = chrono::DateTime::from_timestamp(*t, 0).unwrap();
            assert_eq!(d.format("%d %H:%M").to_string(), "01 00:00");
        }
        let two_months = time_ticks(t0, t0 + 60 * day);
        assert!(
            two_months.iter().all(|t| (t - 4 * day) % (7 * day) == 0),
            "Mondays"
        );
        assert_eq!(time_label(t0 - t0 % day, 3 * day), "14 Nov");
    }

    #[test]
    fn gaps_split_the_line() {
        let pts = [
            (0, 1.0),
            (3_600, 1.0),
            (7_200, 1.0),
            (50_000, 1.0),
            (53_600, 1.0),
        ];
        assert_eq!(segments(&pts, 3 * typical_step(&pts)).len(), 2);
    }

    #[test]
    fn a_forecast_chart_has_the_band_and_both_lines() {
        let measured: Vec<(i64, f64)> = (0..24).map(|h| (h * 3_600, 20.0)).collect();
        let hours: Vec<ForecastPoint> = (24..48).map(|h| (h * 3_600, 22.0, 15.0, 30.0)).collect();
        let c = forecast(&measured, &hours, "µg/m³", "forecast", &[]).unwrap();
        assert!(c.svg.contains("<polygon"));
        assert!(c.svg.contains("forecast") && c.svg.contains("measured"));
        assert_eq!(c.points.split(';').count(), 48);
    }

    #[test]
    fn a_metric_chart_breaks_lines_at_missing_periods_and_labels_several() {
        let a: Vec<(i64, Option<f64>)> = (0..60)
            .map(|i| (i * 60, (i % 20 != 5).then_some(i as f64)))
            .collect();
        assert_eq!(runs(&a).len(), 4);
        let b: Vec<(i64, Option<f64>)> = (0..60).map(|i| (i * 60, Some(1.0))).collect();
        let one = metric(
            &[Line {
                label: "a",
                points: &a,
            }],
            0,
            3_600,
            "req/min",
            "x",
        )
        .unwrap();
        assert!(one.svg.starts_with("<svg role=\"img\" aria-label=\"x\""));
        assert_eq!(one.points.split(';').count(), 57);
        let two = metric(
            &[
                Line {
                    label: "accepted",
                    points: &a,
                },
                Line {
                    label: "rejected",
                    points: &b,
                },
            ],
            0,
            3_600,
            "readings",
            "y",
        )
        .unwrap();
        assert!(two.svg.contains("accepted") && two.svg.contains("rejected"));
        assert!(two.points.is_empty());
    }
}
