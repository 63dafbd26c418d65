use super::*;
use ecocityhub_domain::aqi::us_epa::Table;

/// Every `font-size="N"` of an SVG.
fn font_sizes(svg: &str) -> Vec<u32> {
    svg.match_indices("font-size=\"")
        .map(|(i, m)| {
            let rest = &svg[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The texts of the SVG's elements with `class`.
fn texts_of(svg: &str, class: &str) -> Vec<String> {
    let open = format!("class=\"{class}\"");
    svg.match_indices(&open)
        .map(|(i, _)| {
            let rest = &svg[i..];
            let start = rest.find('>').unwrap() + 1;
            rest[start..start + rest[start..].find('<').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn a_history_chart_draws_data_thresholds_and_tooltip_data() {
    let points: Vec<(i64, f64)> = (0..48)
        .map(|h| (h * 3_600, 5.0 + (h % 12) as f64))
        .collect();
    let thresholds = Table::Pm25_24h.category_upper_bounds();
    let spec = Spec::new("PM2.5, last 2 days", "µg/m³").thresholds(&thresholds);
    let c = history(&points, &spec);
    assert!(c
        .svg
        .starts_with("<svg role=\"img\" aria-label=\"PM2.5, last 2 days\""));
    // Data up to 16 µg/m³: the Good/Moderate line (9.0) is drawn, 35.4 is not near.
    let labels = texts_of(&c.svg, "threshold-label");
    assert_eq!(labels, ["Moderate above 9"], "{}", c.svg);
    assert!(shows_category_lines(&c));
    assert_eq!(c.points.split(';').count(), 48);
    let range: Vec<f64> = c.range.split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(range[2], 0.0);
    assert!(range[3] >= 16.0 && range[3] <= 20.0, "{range:?}");
}

#[test]
fn chart_text_keeps_its_size_at_any_width() {
    let points: Vec<(i64, f64)> = (0..168)
        .map(|h| (h * 3_600, 1000.0 + h as f64 / 10.0))
        .collect();
    let c = history(&points, &Spec::new("pressure", "hPa"));
    let root = &c.svg[..c.svg.find('>').unwrap()];
    // No viewBox on the root: it is as wide as the page and its text is in CSS pixels.
    assert!(
        !root.contains("viewBox") && root.contains("width=\"100%\""),
        "{root}"
    );
    let sizes = font_sizes(&c.svg);
    assert!(
        !sizes.is_empty() && sizes.iter().all(|s| *s >= 12),
        "{sizes:?}"
    );
    // The data layer stretches to the plot; its strokes keep their width.
    assert!(c.svg.contains("preserveAspectRatio=\"none\""));
    assert!(c.svg.contains("vector-effect=\"non-scaling-stroke\""));
    // Both sets of time labels; the y axis fitted to the data, far from zero.
    assert!(c.svg.contains("ticks-wide") && c.svg.contains("ticks-narrow"));
    let v0: f64 = c.range.split(',').nth(2).unwrap().parse().unwrap();
    assert!(v0 >= 990.0, "{}", c.range);
    assert!(!shows_category_lines(&c));
}

#[test]
fn beijing_says_hazardous_once_and_no_labels_collide() {
    // A Beijing week: 20 to 700 µg/m³.
    let points: Vec<(i64, f64)> = (0..168)
        .map(|h| (h * 3_600, 20.0 + 680.0 * ((h % 60) as f64 / 59.0)))
        .collect();
    let thresholds = Table::Pm25_24h.category_upper_bounds();
    let c = history(
        &points,
        &Spec::new("PM2.5", "µg/m³").thresholds(&thresholds),
    );
    let labels = texts_of(&c.svg, "threshold-label");
    assert_eq!(
        labels.iter().filter(|l| l.starts_with("Hazardous")).count(),
        1,
        "{labels:?}"
    );
    let mut seen = std::collections::HashSet::new();
    assert!(labels.iter().all(|l| seen.insert(l.clone())), "{labels:?}");
    assert_eq!(
        category_lines(&thresholds)
            .iter()
            .filter(|(c, _)| *c == Category::Hazardous)
            .count(),
        1
    );
}

#[test]
fn a_wind_direction_is_dots_on_compass_points() {
    let points: Vec<(i64, f64)> = (0..24).map(|h| (h * 3_600, (h * 15) as f64)).collect();
    let c = history(&points, &Spec::new("wind", "°").compass(true));
    assert!(c.svg.contains(">NNE<") || c.svg.contains(">N<"));
    assert!(c.svg.contains(">E<") && c.svg.contains(">S<") && c.svg.contains(">W<"));
    assert_eq!(c.svg.matches("<circle").count(), 24);
    assert!(c.range.ends_with(",0,360"));
}

#[test]
fn axes_name_the_year_of_old_data() {
    // 24-31 Dec 2008, seen in 2026.
    let t0 = 1_230_076_800;
    let points: Vec<(i64, f64)> = (0..168).map(|h| (t0 + h * 3_600, 10.0)).collect();
    let mut spec = Spec::new("old", "µg/m³");
    spec.current_year = 2026;
    let c = history(&points, &spec);
    assert!(c.svg.contains(">2008<"), "{}", c.svg);
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
fn a_forecast_chart_has_the_band_both_lines_and_a_legend() {
    let measured: Vec<(i64, f64)> = (0..24).map(|h| (h * 3_600, 20.0)).collect();
    let hours: Vec<ForecastPoint> = (24..48).map(|h| (h * 3_600, 22.0, 15.0, 30.0)).collect();
    let c = forecast(&measured, &hours, &Spec::new("forecast", "µg/m³"));
    assert!(c.svg.contains("fill-opacity=\"0.2\""));
    assert!(c.svg.contains(">forecast<") && c.svg.contains(">measured<"));
    assert_eq!(c.points.split(';').count(), 48);
    assert!(font_sizes(&c.svg).iter().all(|s| *s >= 12));
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
    );
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
    );
    assert!(two.svg.contains(">accepted<") && two.svg.contains(">rejected<"));
    assert!(two.points.is_empty());
}
