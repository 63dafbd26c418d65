//! The report of a training run or a backtest: a Markdown page with the per-horizon table and
//! two SVG charts drawn with plotters (error by horizon; forecast against actual values).

use plotters::prelude::*;

use crate::evaluate::{HorizonScores, TracePoint};
use crate::{fmt_ts, MlError};

/// A rendered report: `report.md` and the SVG files it links to.
#[derive(Debug, Clone)]
pub struct Report {
    pub markdown: String,
    /// (file name, SVG text)
    pub charts: Vec<(String, String)>,
}

/// File names of the report's parts.
pub const MARKDOWN_FILE: &str = "report.md";
pub const ERROR_CHART_FILE: &str = "error-by-horizon.svg";
pub const TRACE_CHART_FILE: &str = "forecast-vs-actual.svg";

fn err(e: impl std::fmt::Display) -> MlError {
    MlError::Report(e.to_string())
}

/// The per-horizon table in Markdown (every horizon in `rows`).
pub fn scores_table(scores: &[HorizonScores], unit: &str) -> String {
    let mut out = String::from(
        "| horizon | n | model MAE | persistence MAE | seasonal naive MAE | climatology MAE | model RMSE | persistence RMSE | skill vs persistence | interval coverage |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for s in scores {
        out.push_str(&format!(
            "| {} h | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:+.0} % | {:.0} % |\n",
            s.horizon,
            s.n,
            s.model.mae,
            s.persistence.mae,
            s.seasonal_naive.mae,
            s.climatology.mae,
            s.model.rmse,
            s.persistence.rmse,
            s.skill_vs_persistence * 100.0,
            s.interval_coverage * 100.0,
        ));
    }
    out.push_str(&format!(
        "\nErrors in {unit}. Skill: how much smaller the model's MAE is than persistence's.\n"
    ));
    out
}

/// Renders the report. `facts` are (label, value) lines shown at the top.
pub fn render(
    title: &str,
    facts: &[(&str, String)],
    scores: &[HorizonScores],
    trace: &[TracePoint],
    unit: &str,
) -> Result<Report, MlError> {
    let mut md = format!("# {title}\n\n");
    for (label, value) in facts {
        md.push_str(&format!("- **{label}:** {value}\n"));
    }
    if let Some(last) = scores.last() {
        md.push_str(&format!(
            "\nAt {} h ahead the model's forecasts were off by {:.1} {unit} on average; persistence (the last value) by {:.1} {unit}, the same hour yesterday by {:.1} {unit}, the usual value for the hour by {:.1} {unit}.\n",
            last.horizon, last.model.mae, last.persistence.mae, last.seasonal_naive.mae, last.climatology.mae
        ));
    }
    md.push_str("\n## Error by horizon\n\n");
    md.push_str(&format!(
        "![Mean absolute error by horizon]({ERROR_CHART_FILE})\n\n"
    ));
    md.push_str(&scores_table(scores, unit));
    md.push_str("\n## Forecast against actual values\n\n");
    md.push_str(&format!(
        "![Forecasts at the longest horizon against what was measured]({TRACE_CHART_FILE})\n"
    ));
    Ok(Report {
        markdown: md,
        charts: vec![
            (ERROR_CHART_FILE.into(), error_chart(scores, unit)?),
            (
                TRACE_CHART_FILE.into(),
                trace_chart(trace, scores.last().map_or(24, |s| s.horizon), unit)?,
            ),
        ],
    })
}

const SERIES_COLORS: [RGBColor; 4] = [
    RGBColor(0, 92, 171),
    RGBColor(214, 96, 0),
    RGBColor(0, 133, 66),
    RGBColor(120, 120, 120),
];

/// MAE per horizon for the model and each baseline.
pub fn error_chart(scores: &[HorizonScores], unit: &str) -> Result<String, MlError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max_h = scores.iter().map(|s| s.horizon).max().unwrap_or(1);
        let y_max = scores
            .iter()
            .flat_map(|s| {
                [
                    s.model.mae,
                    s.persistence.mae,
                    s.seasonal_naive.mae,
                    s.climatology.mae,
                ]
            })
            .fold(0.0_f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption("Mean absolute error by horizon", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1u32..max_h.max(2), 0.0..y_max.max(1.0))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("hours ahead")
            .y_desc(format!("MAE ({unit})"))
            .draw()
            .map_err(err)?;
        type Mae = fn(&HorizonScores) -> f64;
        let methods: [(&str, Mae); 4] = [
            ("model", |s| s.model.mae),
            ("persistence", |s| s.persistence.mae),
            ("same hour yesterday", |s| s.seasonal_naive.mae),
            ("climatology", |s| s.climatology.mae),
        ];
        for ((name, value), color) in methods.into_iter().zip(SERIES_COLORS) {
            chart
                .draw_series(LineSeries::new(
                    scores.iter().map(|s| (s.horizon, value(s))),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The last two weeks of forecasts at the longest horizon, with their interval, against the
/// actual values.
pub fn trace_chart(trace: &[TracePoint], horizon: u32, unit: &str) -> Result<String, MlError> {
    let last = trace.last().map_or(0, |p| p.ts);
    let shown: Vec<&TracePoint> = trace.iter().filter(|p| p.ts > last - 14 * 86_400).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (x0, x1) = match (shown.first(), shown.last()) {
            (Some(a), Some(b)) if b.ts > a.ts => (a.ts, b.ts),
            _ => (0, 1),
        };
        let y_max = shown
            .iter()
            .flat_map(|p| [p.actual, p.upper, p.forecast])
            .fold(0.0_f64, f64::max)
            * 1.05;
        let caption = match shown.first() {
            Some(p) => format!(
                "Forecasts {horizon} h ahead vs measured, from {}",
                &fmt_ts(p.ts)[..10]
            ),
            None => "Forecasts vs measured (nothing to show)".into(),
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..y_max.max(1.0))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("date (UTC)")
            .y_desc(unit.to_string())
            .x_labels(8)
            .x_label_formatter(&|ts| fmt_ts(*ts)[5..10].to_string())
            .draw()
            .map_err(err)?;
        let band = SERIES_COLORS[0].mix(0.18);
        chart
            .draw_series(shown.iter().map(|p| {
                Rectangle::new(
                    [(p.ts - 1_800, p.lower), (p.ts + 1_800, p.upper)],
                    band.filled(),
                )
            }))
            .map_err(err)?
            .label("interval")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], band.filled()));
        chart
            .draw_series(LineSeries::new(
                shown.iter().map(|p| (p.ts, p.actual)),
                BLACK.stroke_width(1),
            ))
            .map_err(err)?
            .label("measured")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        let model = SERIES_COLORS[0];
        chart
            .draw_series(LineSeries::new(
                shown.iter().map(|p| (p.ts, p.forecast)),
                model.stroke_width(2),
            ))
            .map_err(err)?
            .label("forecast")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], model.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
