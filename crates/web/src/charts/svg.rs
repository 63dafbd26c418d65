//! Writing a chart's SVG so that a phone can read it: the root element has no `viewBox`, so
//! its text is drawn at its own size in CSS pixels however wide the chart is shown; x
//! positions are percentages of the width and y positions pixels of a fixed height. The data
//! are drawn in a nested layer whose `viewBox` is stretched over the plot
//! (`preserveAspectRatio="none"`), with strokes that keep their width
//! (`vector-effect="non-scaling-stroke"`). Time labels come twice, for wide and for narrow
//! screens (fewer ticks); the stylesheet shows one set.

use std::fmt::Write;

use super::axis::{self, ValueAxis};

/// Height of every chart, in CSS pixels.
pub const HEIGHT: f64 = 300.0;
/// Size of the tick labels, in CSS pixels.
pub const TICK_FONT: u32 = 13;
/// Size of the other text (threshold labels, legends, the day or year under a tick).
pub const LABEL_FONT: u32 = 12;
/// Ticks on the time axis of wide and of narrow screens.
pub const WIDE_TICKS: i64 = 8;
pub const NARROW_TICKS: i64 = 4;
/// Width of the data layer's coordinate system (its height is the plot's, in pixels).
const DATA_WIDTH: f64 = 1000.0;
/// Room above the plot for the top tick label, and below it for two lines of time labels.
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;
/// A legend row's height, and how wide a row may grow before the next begins (pixels: it
/// must fit a phone).
const LEGEND_ROW: f64 = 20.0;
const LEGEND_WIDTH: f64 = 300.0;

const INK: &str = "#1b2a2f";
const MUTED: &str = "#4a5a60";
const GRID: &str = "#e3e9e7";
const TIME_GRID: &str = "#d7dedc";

/// Where a chart's parts go: its time range, its value axis and the plot's place.
pub struct Frame {
    pub t0: i64,
    pub t1: i64,
    pub axis: ValueAxis,
    /// Top of the plot, and its height (pixels).
    pub top: f64,
    pub plot_h: f64,
}

impl Frame {
    /// A frame with `legend_rows` rows of legend above the plot.
    pub fn new(t0: i64, t1: i64, axis: ValueAxis, legend_rows: usize) -> Frame {
        let top = TOP + LEGEND_ROW * legend_rows as f64;
        Frame {
            t0,
            t1: t1.max(t0 + 1),
            axis,
            top,
            plot_h: HEIGHT - top - BOTTOM,
        }
    }

    fn fraction(&self, t: i64) -> f64 {
        (t - self.t0) as f64 / (self.t1 - self.t0) as f64
    }

    /// x of a time, in percent of the chart's width.
    pub fn x_pct(&self, t: i64) -> f64 {
        self.fraction(t) * 100.0
    }

    /// x of a time in the data layer.
    fn x_data(&self, t: i64) -> f64 {
        self.fraction(t) * DATA_WIDTH
    }

    /// y of a value in the data layer (pixels from the plot's top).
    fn y_data(&self, v: f64) -> f64 {
        let (v0, v1) = (self.axis.v0, self.axis.v1);
        ((v1 - v) / (v1 - v0) * self.plot_h).clamp(-self.plot_h, 2.0 * self.plot_h)
    }

    /// y of a value on the chart (pixels).
    pub fn y(&self, v: f64) -> f64 {
        self.top + self.y_data(v)
    }

    pub fn bottom(&self) -> f64 {
        self.top + self.plot_h
    }
}

/// Escapes text for an attribute or an element.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The ascent and descent of text of `size` pixels, for keeping labels apart.
fn extent(size: u32) -> (f64, f64) {
    (f64::from(size) * 0.8, f64::from(size) * 0.25)
}

/// A rough width of `text` at `size` pixels (wide enough for most system fonts).
fn text_width(text: &str, size: u32) -> f64 {
    text.chars().count() as f64 * f64::from(size) * 0.6
}

/// The narrowest chart the labels are laid out for (a 320 px phone, less the page's margins,
/// rounded down).
pub const MIN_WIDTH: f64 = 250.0;

/// A label's vertical span and width, for keeping labels apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub top: f64,
    pub bottom: f64,
    pub width: f64,
}

/// Whether a label at the left edge and one at the right edge could meet on the narrowest
/// chart, vertically and horizontally.
fn collide(left: &Span, right: &Span) -> bool {
    left.top < right.bottom
        && right.top < left.bottom
        && left.width + right.width + 10.0 > MIN_WIDTH
}

/// Where each threshold line's label goes (its baseline), given the lines' y positions and
/// the labels' widths, the labels at the plot's left edge (the value axis) and the span labels
/// may use; `None` where neither just above nor just below the line is free. A label never
/// crosses a line or another label; higher lines are placed first.
pub fn place_labels(
    lines: &[(f64, f64)],
    left: &[Span],
    bounds: (f64, f64),
    size: u32,
) -> Vec<Option<f64>> {
    const GAP: f64 = 3.0;
    let (ascent, descent) = extent(size);
    let mut placed: Vec<Span> = Vec::new();
    let mut out = vec![None; lines.len()];
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by(|a, b| lines[*a].0.total_cmp(&lines[*b].0));
    for i in order {
        let (y, width) = lines[i];
        let span = |top: f64| Span {
            top,
            bottom: top + ascent + descent,
            width,
        };
        let free = |b: &Span| {
            b.top >= bounds.0
                && b.bottom <= bounds.1
                && !lines
                    .iter()
                    .any(|(l, _)| *l >= b.top - 1.0 && *l <= b.bottom + 1.0)
                && !placed.iter().any(|p| b.top < p.bottom && p.top < b.bottom)
                && !left.iter().any(|l| collide(l, b))
        };
        let above = span(y - GAP - ascent - descent);
        let below = span(y + GAP);
        if let Some(b) = [above, below].into_iter().find(|b| free(b)) {
            out[i] = Some(b.bottom - descent);
            placed.push(b);
        }
    }
    out
}

/// The spans of the value axis' labels (see [`Svg::value_labels`]).
pub fn value_label_spans(f: &Frame) -> Vec<Span> {
    let (ascent, descent) = extent(TICK_FONT);
    f.axis
        .ticks
        .iter()
        .map(|(v, text)| {
            let base = f.y(*v) - 4.0;
            Span {
                top: base - ascent,
                bottom: base + descent,
                width: 4.0 + text_width(text, TICK_FONT),
            }
        })
        .collect()
}

/// The width a right-hand label takes.
pub fn label_width(text: &str) -> f64 {
    6.0 + text_width(text, LABEL_FONT)
}

/// One entry of a chart's legend.
pub enum Swatch<'a> {
    Line {
        color: &'a str,
        width: u32,
        dash: Option<&'a str>,
    },
    Band {
        color: &'a str,
    },
}

/// The rows of a legend: each entry's x offset, row by row, wrapped at [`LEGEND_WIDTH`].
fn legend_layout(labels: &[&str]) -> Vec<(usize, f64)> {
    let (mut row, mut x) = (0, 4.0);
    labels
        .iter()
        .map(|l| {
            let w = 26.0 + text_width(l, LABEL_FONT) + 14.0;
            if x > 4.0 && x + w > LEGEND_WIDTH {
                row += 1;
                x = 4.0;
            }
            let at = (row, x);
            x += w;
            at
        })
        .collect()
}

/// How many rows the legend of `labels` takes.
pub fn legend_rows(labels: &[&str]) -> usize {
    legend_layout(labels).last().map_or(0, |(r, _)| r + 1)
}

/// A chart being written.
pub struct Svg {
    out: String,
}

impl Svg {
    /// The root element (labelled for screen readers) and the white ground.
    pub fn open(label: &str) -> Svg {
        let mut out = String::with_capacity(16 * 1024);
        let _ = write!(
            out,
            "<svg role=\"img\" aria-label=\"{}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"100%\" height=\"{HEIGHT}\" font-size=\"{TICK_FONT}\">\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>",
            escape(label)
        );
        Svg { out }
    }

    /// The value axis' grid lines, and the plot's base line.
    pub fn grid(&mut self, f: &Frame) {
        self.out
            .push_str(&format!("<g stroke=\"{GRID}\" stroke-width=\"1\">"));
        for (v, _) in &f.axis.ticks {
            let y = f.y(*v);
            let _ = write!(
                self.out,
                "<line x1=\"0\" x2=\"100%\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>"
            );
        }
        self.out.push_str("</g>");
        let b = f.bottom();
        let _ = write!(
            self.out,
            "<line x1=\"0\" x2=\"100%\" y1=\"{b:.1}\" y2=\"{b:.1}\" stroke=\"{MUTED}\" stroke-width=\"1\"/>"
        );
    }

    /// The time axis: a set of grid lines and labels for wide screens and one for narrow ones.
    pub fn time_axis(&mut self, f: &Frame, current_year: i32) {
        for (class, max) in [("ticks-wide", WIDE_TICKS), ("ticks-narrow", NARROW_TICKS)] {
            let _ = write!(self.out, "<g class=\"ticks {class}\" fill=\"{INK}\">");
            for l in axis::time_labels(f.t0, f.t1, max, current_year) {
                let x = f.x_pct(l.t);
                let anchor = if x < 15.0 {
                    "start"
                } else if x > 85.0 {
                    "end"
                } else {
                    "middle"
                };
                let _ = write!(
                    self.out,
                    "<line x1=\"{x:.3}%\" x2=\"{x:.3}%\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{TIME_GRID}\"/>\
                     <text x=\"{x:.3}%\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"{TICK_FONT}\">{}</text>",
                    f.top,
                    f.bottom(),
                    f.bottom() + 17.0,
                    escape(&l.main)
                );
                if let Some(c) = &l.context {
                    let _ = write!(
                        self.out,
                        "<text x=\"{x:.3}%\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"{LABEL_FONT}\" fill=\"{MUTED}\">{}</text>",
                        f.bottom() + 33.0,
                        escape(c)
                    );
                }
            }
            self.out.push_str("</g>");
        }
    }

    /// A dashed horizontal line across the plot at `v`.
    pub fn rule(&mut self, f: &Frame, v: f64, color: &str) {
        let y = f.y(v);
        let _ = write!(
            self.out,
            "<line class=\"threshold\" x1=\"0\" x2=\"100%\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>"
        );
    }

    /// Starts the data layer.
    pub fn begin_data(&mut self, f: &Frame) {
        let _ = write!(
            self.out,
            "<svg class=\"plot\" x=\"0\" y=\"{:.1}\" width=\"100%\" height=\"{:.1}\" viewBox=\"0 0 {DATA_WIDTH} {:.1}\" \
             preserveAspectRatio=\"none\" overflow=\"visible\">",
            f.top, f.plot_h, f.plot_h
        );
    }

    pub fn end_data(&mut self) {
        self.out.push_str("</svg>");
    }

    fn path_data(f: &Frame, points: impl Iterator<Item = (i64, f64)>) -> String {
        let mut d = String::new();
        for (i, (t, v)) in points.enumerate() {
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if i == 0 { "M" } else { "L" },
                f.x_data(t),
                f.y_data(v)
            );
        }
        d
    }

    /// A line through `points` (in the data layer).
    pub fn line(&mut self, f: &Frame, points: &[(i64, f64)], color: &str, width: u32) {
        self.stroke(f, points, color, width, None);
    }

    /// A dashed line through `points` (in the data layer).
    pub fn dashed(&mut self, f: &Frame, points: &[(i64, f64)], color: &str, width: u32) {
        self.stroke(f, points, color, width, Some("7 4"));
    }

    fn stroke(
        &mut self,
        f: &Frame,
        points: &[(i64, f64)],
        color: &str,
        width: u32,
        dash: Option<&str>,
    ) {
        let dash = dash
            .map(|d| format!(" stroke-dasharray=\"{d}\""))
            .unwrap_or_default();
        let _ = write!(
            self.out,
            "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"{dash} \
             stroke-linejoin=\"round\" stroke-linecap=\"round\" vector-effect=\"non-scaling-stroke\"/>",
            Self::path_data(f, points.iter().copied())
        );
    }

    /// A band between `upper` and `lower` (same times; in the data layer).
    pub fn band(&mut self, f: &Frame, band: &[(i64, f64, f64)], color: &str) {
        let outline = band
            .iter()
            .map(|b| (b.0, b.2))
            .chain(band.iter().rev().map(|b| (b.0, b.1)));
        let _ = write!(
            self.out,
            "<path d=\"{}Z\" fill=\"{color}\" fill-opacity=\"0.2\" stroke=\"none\"/>",
            Self::path_data(f, outline)
        );
    }

    /// A dot per point (outside the data layer, so that dots stay round).
    pub fn dots(&mut self, f: &Frame, points: &[(i64, f64)], color: &str, r: f64) {
        let _ = write!(self.out, "<g fill=\"{color}\">");
        for (t, v) in points {
            let _ = write!(
                self.out,
                "<circle cx=\"{:.3}%\" cy=\"{:.1}\" r=\"{r}\"/>",
                f.x_pct(*t),
                f.y(*v)
            );
        }
        self.out.push_str("</g>");
    }

    /// Opens a group of labels with a white halo (legible over lines).
    fn begin_labels(&mut self, size: u32, fill: &str) {
        let _ = write!(
            self.out,
            "<g font-size=\"{size}\" fill=\"{fill}\" stroke=\"#ffffff\" stroke-width=\"3\" \
             stroke-linejoin=\"round\" paint-order=\"stroke\">"
        );
    }

    /// The value axis' labels, inside the plot at its left edge, just above their grid lines.
    pub fn value_labels(&mut self, f: &Frame) {
        self.begin_labels(TICK_FONT, INK);
        for (v, text) in &f.axis.ticks {
            let base = f.y(*v) - 4.0;
            let _ = write!(
                self.out,
                "<text x=\"4\" y=\"{base:.1}\">{}</text>",
                escape(text)
            );
        }
        self.out.push_str("</g>");
    }

    /// Labels at the right end of the plot, each at its baseline.
    pub fn right_labels(&mut self, labels: &[(f64, String)]) {
        self.begin_labels(LABEL_FONT, "#333333");
        for (base, text) in labels {
            let _ = write!(
                self.out,
                "<text class=\"threshold-label\" x=\"100%\" dx=\"-6\" y=\"{base:.1}\" text-anchor=\"end\">{}</text>",
                escape(text)
            );
        }
        self.out.push_str("</g>");
    }

    /// The legend, in rows above the plot.
    pub fn legend(&mut self, entries: &[(&str, Swatch)]) {
        let labels: Vec<&str> = entries.iter().map(|e| e.0).collect();
        let _ = write!(
            self.out,
            "<g class=\"legend\" font-size=\"{LABEL_FONT}\" fill=\"{INK}\">"
        );
        for ((label, swatch), (row, x)) in entries.iter().zip(legend_layout(&labels)) {
            let y = 14.0 + LEGEND_ROW * row as f64;
            match swatch {
                Swatch::Line { color, width, dash } => {
                    let dash = dash
                        .map(|d| format!(" stroke-dasharray=\"{d}\""))
                        .unwrap_or_default();
                    let _ = write!(
                        self.out,
                        "<line x1=\"{x:.0}\" x2=\"{:.0}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"{width}\"{dash}/>",
                        x + 20.0,
                        y - 4.0,
                        y - 4.0
                    );
                }
                Swatch::Band { color } => {
                    let _ = write!(
                        self.out,
                        "<rect x=\"{x:.0}\" y=\"{:.1}\" width=\"20\" height=\"10\" fill=\"{color}\" fill-opacity=\"0.2\"/>",
                        y - 9.0
                    );
                }
            }
            let _ = write!(
                self.out,
                "<text x=\"{:.0}\" y=\"{y:.1}\">{}</text>",
                x + 26.0,
                escape(label)
            );
        }
        self.out.push_str("</g>");
    }

    /// The plot's outline (which the page's script finds to place tooltips) and the end.
    pub fn finish(mut self, f: &Frame) -> String {
        let _ = write!(
            self.out,
            "<rect class=\"plot-area\" x=\"0\" y=\"{:.1}\" width=\"100%\" height=\"{:.1}\" fill=\"none\"/></svg>",
            f.top, f.plot_h
        );
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_off_each_other_and_every_line() {
        // Three lines 8 px apart: only one label fits between them and the others.
        let lines = [
            (100.0, 150.0),
            (108.0, 150.0),
            (116.0, 150.0),
            (200.0, 150.0),
        ];
        let placed = place_labels(&lines, &[], (0.0, 260.0), LABEL_FONT);
        let (ascent, descent) = extent(LABEL_FONT);
        let boxes: Vec<(f64, f64)> = placed
            .iter()
            .flatten()
            .map(|b| (b - ascent, b + descent))
            .collect();
        assert!(placed[0].is_some() && placed[3].is_some(), "{placed:?}");
        assert!(placed[1].is_none(), "{placed:?}");
        for (i, a) in boxes.iter().enumerate() {
            assert!(
                !lines.iter().any(|(l, _)| *l >= a.0 && *l <= a.1),
                "{a:?} crosses a line"
            );
            for b in &boxes[i + 1..] {
                assert!(a.1 <= b.0 || b.1 <= a.0, "{a:?} and {b:?} overlap");
            }
        }
        // A value label that a long label would meet on a phone pushes it below its line;
        // a short label passes beside it.
        let tick = [Span {
            top: 85.0,
            bottom: 99.0,
            width: 60.0,
        }];
        let long = place_labels(&[(100.0, 220.0)], &tick, (0.0, 260.0), LABEL_FONT);
        assert!(long[0].unwrap() > 100.0);
        let short = place_labels(&[(100.0, 120.0)], &tick, (0.0, 260.0), LABEL_FONT);
        assert!(short[0].unwrap() < 100.0);
    }

    #[test]
    fn legends_wrap_to_fit_a_phone() {
        assert_eq!(legend_rows(&["interval", "measured", "forecast"]), 1);
        assert_eq!(legend_rows(&[]), 0);
        let long = ["accepted readings per minute"; 4];
        assert!(legend_rows(&long) >= 2);
    }
}
