//! Scoring forecasts against what happened: per horizon, the model next to persistence,
//! seasonal naive and climatology, on exactly the same (origin, hour) pairs.

use serde::{Deserialize, Serialize};

use crate::baselines::{persistence, seasonal_naive};
use crate::features::{OriginFeatures, Weather};
use crate::model::ForecastModel;
use crate::series::{HourlySeries, HOUR};

/// The methods compared in every evaluation.
pub const METHODS: [&str; 4] = ["model", "persistence", "seasonal_naive", "climatology"];

/// Running sums for one method at one horizon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct ErrorSums {
    abs: f64,
    sq: f64,
}

/// Running sums for one horizon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct HorizonSums {
    n: u64,
    methods: [ErrorSums; 4],
    inside_interval: u64,
}

/// Errors of one method at one horizon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub mae: f64,
    pub rmse: f64,
}

/// The scores at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonScores {
    pub horizon: u32,
    /// Number of (origin, hour) pairs scored.
    pub n: u64,
    pub model: Scores,
    pub persistence: Scores,
    pub seasonal_naive: Scores,
    pub climatology: Scores,
    /// 1 − MAE(model) / MAE(persistence): 0.25 means a quarter less error than persistence.
    pub skill_vs_persistence: f64,
    /// Share of actual values inside the prediction interval.
    pub interval_coverage: f64,
}

/// One point of the forecast-versus-actual trace kept for plots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TracePoint {
    pub ts: i64,
    pub actual: f64,
    pub forecast: f64,
    pub lower: f64,
    pub upper: f64,
    pub persistence: f64,
}

/// The outcome of scoring a model over a window; several can be merged (backtest folds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    sums: Vec<HorizonSums>,
    /// Origins scored.
    pub origins: u64,
    /// Forecasts at the longest horizon against the actual values, in time order.
    pub trace: Vec<TracePoint>,
}

impl Evaluation {
    fn with_horizon(horizon: u32) -> Evaluation {
        Evaluation {
            sums: vec![HorizonSums::default(); horizon as usize],
            origins: 0,
            trace: Vec::new(),
        }
    }

    /// Adds another window's results (same horizon).
    pub fn merge(&mut self, other: Evaluation) {
        if self.sums.is_empty() {
            *self = other;
            return;
        }
        for (a, b) in self.sums.iter_mut().zip(other.sums) {
            a.n += b.n;
            a.inside_interval += b.inside_interval;
            for (x, y) in a.methods.iter_mut().zip(b.methods) {
                x.abs += y.abs;
                x.sq += y.sq;
            }
        }
        self.origins += other.origins;
        self.trace.extend(other.trace);
    }

    /// Per-horizon scores; horizons with nothing scored are left out.
    pub fn scores(&self) -> Vec<HorizonScores> {
        self.sums
            .iter()
            .enumerate()
            .filter(|(_, s)| s.n > 0)
            .map(|(i, s)| {
                let n = s.n as f64;
                let score = |m: usize| Scores {
                    mae: s.methods[m].abs / n,
                    rmse: (s.methods[m].sq / n).sqrt(),
                };
                let model = score(0);
                let persistence = score(1);
                HorizonScores {
                    horizon: i as u32 + 1,
                    n: s.n,
                    model,
                    persistence,
                    seasonal_naive: score(2),
                    climatology: score(3),
                    skill_vs_persistence: if persistence.mae > 0.0 {
                        1.0 - model.mae / persistence.mae
                    } else {
                        0.0
                    },
                    interval_coverage: s.inside_interval as f64 / n,
                }
            })
            .collect()
    }
}

/// Scores `model` on the origins in `[from, to)` (every `stride`-th hour with a value),
/// forecasting each from the data at or before its origin only. Pairs where any baseline is
/// undefined (a gap at the origin or the same hour yesterday) are skipped for all methods.
pub fn evaluate(
    model: &ForecastModel,
    series: &HourlySeries,
    weather: &Weather,
    from: i64,
    to: i64,
    stride: u32,
) -> Evaluation {
    let mut out = Evaluation::with_horizon(model.horizon);
    let mut origin = from;
    let step = stride.max(1) as i64 * HOUR;
    while origin < to {
        let persisted = persistence(series, origin);
        if persisted.is_nan() {
            origin += step;
            continue;
        }
        let features = OriginFeatures::at(series, weather, origin);
        let forecast = model.forecast_features(series, &features);
        let mut scored = false;
        for point in &forecast {
            let actual = series.at(point.ts);
            let naive = seasonal_naive(series, origin, point.horizon);
            let usual = model.climatology.predict(point.ts);
            if actual.is_nan() || naive.is_nan() || usual.is_nan() {
                continue;
            }
            scored = true;
            let sums = &mut out.sums[point.horizon as usize - 1];
            sums.n += 1;
            for (m, predicted) in [point.value, persisted, naive, usual]
                .into_iter()
                .enumerate()
            {
                let e = predicted - actual;
                sums.methods[m].abs += e.abs();
                sums.methods[m].sq += e * e;
            }
            if point.lower <= actual && actual <= point.upper {
                sums.inside_interval += 1;
            }
            if point.horizon == model.horizon {
                out.trace.push(TracePoint {
                    ts: point.ts,
                    actual,
                    forecast: point.value,
                    lower: point.lower,
                    upper: point.upper,
                    persistence: persisted,
                });
            }
        }
        if scored {
            out.origins += 1;
        }
        origin += step;
    }
    out
}
