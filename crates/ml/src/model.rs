//! The forecast model: one gradient-boosted tree ensemble (forust) over all horizons. It learns
//! the change from the value at the origin, in logs (log(1 + target) − log(1 + last value)):
//! trees approximate "stays about the same" badly as a function of the level, but well as a
//! change near zero, so short horizons keep persistence's accuracy and long ones learn the
//! return to the usual level. Prediction intervals come from the errors it made on the most
//! recent part of its training window (held out from the fit).

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use crate::baselines::Climatology;
use crate::evaluate::{evaluate, Evaluation};
use crate::features::{log1p, OriginFeatures, Weather, FEATURE_NAMES, N_FEATURES};
use crate::series::{HourlySeries, HOUR};
use crate::MlError;

/// How a model is trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Forecast hours ahead: 1..=horizon.
    pub horizon: u32,
    /// Trees in the ensemble.
    pub trees: usize,
    /// Shrinkage of each tree.
    pub learning_rate: f32,
    /// Depth of each tree.
    pub max_depth: usize,
    /// Each horizon's booster is fitted on at most this many origins, sampled evenly.
    pub max_rows: usize,
    /// The most recent part of the window kept out of the fit, to measure the model and set its
    /// intervals: this share of the window, at most `holdout_max_hours`.
    pub holdout_share: f64,
    pub holdout_max_hours: u32,
    /// Central probability of the prediction interval (0.8: from the 10th to the 90th percentile).
    pub interval_level: f64,
    /// Training threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Refits that weigh each row by the inverse of its error in the fit before (iteratively
    /// reweighted least squares): the booster has only a squared loss, and this moves its
    /// forecast from the mean towards the median, which is what minimises the absolute error
    /// the forecasts are judged by. 0 keeps the plain squared-loss fit.
    #[serde(default)]
    pub robust_refits: u32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            horizon: 24,
            trees: 60,
            learning_rate: 0.15,
            max_depth: 4,
            max_rows: 12_000,
            holdout_share: 0.15,
            holdout_max_hours: 28 * 24,
            interval_level: 0.8,
            threads: None,
            robust_refits: 1,
        }
    }
}

/// The least data a model is trained on: two weeks of hourly values.
pub const MIN_TRAINING_HOURS: usize = 14 * 24;

/// A trained forecast model, ready to predict and to be saved.
#[derive(Serialize, Deserialize)]
pub struct ForecastModel {
    pub horizon: u32,
    pub feature_names: Vec<String>,
    pub climatology: Climatology,
    pub interval_level: f64,
    /// Per horizon (index 0 = 1 h): the quantiles of log(actual+1) − log(forecast+1) on the
    /// held-out window, lower and upper.
    pub interval_log_ratios: Vec<(f64, f64)>,
    /// One per horizon, index 0 = 1 h.
    boosters: Vec<GradientBooster>,
}

/// One forecast hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForecastPoint {
    /// Start of the forecast hour (epoch seconds).
    pub ts: i64,
    pub horizon: u32,
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// A model and what its training measured.
#[derive(Debug)]
pub struct Trained {
    pub model: ForecastModel,
    /// Scores on the held-out most recent part of the window, next to the baselines.
    pub holdout: Evaluation,
    /// Rows the boosters were fitted on, over all horizons.
    pub rows: usize,
    /// First and last hour of the data used.
    pub window: (i64, i64),
    /// Where the held-out part starts.
    pub holdout_from: i64,
}

/// Origins usable for training in `[from, to)`: hours with a value, after a day of history.
fn origins(series: &HourlySeries, from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut ts = from;
    while ts < to {
        if !series.at(ts).is_nan() {
            out.push(ts);
        }
        ts += HOUR;
    }
    out
}

/// Keeps about one origin in `stride`, chosen by a hash of the hour so the sample is spread
/// over every hour of the day and day of the week.
fn sample(origins: Vec<i64>, stride: usize) -> Vec<i64> {
    if stride <= 1 {
        return origins;
    }
    origins
        .into_iter()
        .filter(|ts| {
            let h = (*ts / HOUR) as u64;
            (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32).is_multiple_of(stride as u64)
        })
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Trains on everything in `series` and `weather` (pass only what may be known: a backtest
/// cuts both at its origin).
pub fn train(
    series: &HourlySeries,
    weather: &Weather,
    options: &TrainOptions,
) -> Result<Trained, MlError> {
    if !(1..=48).contains(&options.horizon) {
        return Err(MlError::InvalidOption(format!(
            "horizon must be 1 to 48 hours, got {}",
            options.horizon
        )));
    }
    let observed = series.observed();
    let (Some(first), Some(last)) = (series.first_observed(), series.last_observed()) else {
        return Err(MlError::NotEnoughData {
            needed: MIN_TRAINING_HOURS,
            got: 0,
        });
    };
    if observed < MIN_TRAINING_HOURS {
        return Err(MlError::NotEnoughData {
            needed: MIN_TRAINING_HOURS,
            got: observed,
        });
    }
    let span = (last - first) as f64;
    let holdout_hours = ((span * options.holdout_share) as i64 / HOUR)
        .min(options.holdout_max_hours as i64)
        .max(48);
    let holdout_from = last - holdout_hours * HOUR;
    // Training origins: targets must fall before the held-out part.
    let fit_series = series.before(holdout_from);
    let fit_weather = weather.before(holdout_from);
    let climatology = Climatology::fit(&fit_series);
    let known_climatology = ClimatologyAsOf::fit(&fit_series, first, holdout_from);
    let candidates = origins(&fit_series, first + 24 * HOUR, holdout_from - HOUR);
    let stride = candidates.len().div_ceil(options.max_rows.max(1));
    let chosen: Vec<OriginFeatures> = sample(candidates, stride)
        .into_iter()
        .map(|origin| OriginFeatures::at(&fit_series, &fit_weather, origin))
        .collect();

    // One booster per horizon (direct multi-step forecasting): each learns its own mix of
    // "stays as it is" and "returns to the usual level".
    let mut boosters = Vec::with_capacity(options.horizon as usize);
    let mut rows = 0;
    for h in 1..=options.horizon {
        let mut columns: Vec<Vec<f64>> = (0..N_FEATURES)
            .map(|_| Vec::with_capacity(chosen.len()))
            .collect();
        let mut target = Vec::with_capacity(chosen.len());
        for features in &chosen {
            let y = fit_series.at(features.origin() + h as i64 * HOUR);
            if y.is_nan() {
                continue;
            }
            let row = features.row(&fit_series, known_climatology.at(features.origin()), h);
            for (column, v) in columns.iter_mut().zip(row) {
                column.push(v);
            }
            target.push(log1p(y) - log1p(features.value_at_origin()));
        }
        let n = target.len();
        if n < MIN_TRAINING_HOURS / 2 {
            return Err(MlError::NotEnoughData {
                needed: MIN_TRAINING_HOURS,
                got: n,
            });
        }
        rows += n;
        let data: Vec<f64> = columns.concat();
        let matrix = Matrix::new(&data, n, N_FEATURES);
        let mut weights = vec![1.0; n];
        let mut booster = fit_booster(&matrix, &target, &weights, options)?;
        for _ in 0..options.robust_refits {
            let fitted = booster.predict(&matrix, options.threads != Some(1));
            weights = median_weights(&target, &fitted);
            booster = fit_booster(&matrix, &target, &weights, options)?;
        }
        boosters.push(booster);
    }

    let mut model = ForecastModel {
        horizon: options.horizon,
        feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        climatology,
        interval_level: options.interval_level,
        interval_log_ratios: vec![(0.0, 0.0); options.horizon as usize],
        boosters,
    };

    // Intervals from the held-out errors, in log space so they widen with the level.
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); options.horizon as usize];
    for origin in origins(series, holdout_from, last) {
        let forecast = model.forecast_from(series, weather, origin);
        for point in forecast {
            let actual = series.at(point.ts);
            if !actual.is_nan() {
                ratios[point.horizon as usize - 1].push(log1p(actual) - log1p(point.value));
            }
        }
    }
    let tail = (1.0 - options.interval_level) / 2.0;
    for (h, mut r) in ratios.into_iter().enumerate() {
        r.sort_by(f64::total_cmp);
        // The point forecast always lies inside its interval, even when the held-out errors
        // lean to one side.
        model.interval_log_ratios[h] = (
            quantile(&r, tail).min(0.0),
            quantile(&r, 1.0 - tail).max(0.0),
        );
    }
    let holdout = evaluate(&model, series, weather, holdout_from, last + HOUR, 1);
    Ok(Trained {
        model,
        holdout,
        rows,
        window: (first, last),
        holdout_from,
    })
}

/// The climatology as it was known at each training origin: refitted every 30 days on the data
/// before that day. Fitted on the whole window instead, a training row's "usual level" would
/// include its own target and the years after it, and the trees would learn to trust it more
/// than it deserves when forecasting a future it has not seen (where the level shifts over the
/// years, as NO2 at Marylebone Road in 2003, that cost a point of skill at 24 hours).
struct ClimatologyAsOf {
    /// (valid from, climatology of everything before that hour), in time order.
    checkpoints: Vec<(i64, Climatology)>,
    none: Climatology,
}

impl ClimatologyAsOf {
    const STEP: i64 = 30 * 24 * HOUR;

    fn fit(series: &HourlySeries, first: i64, end: i64) -> ClimatologyAsOf {
        let mut checkpoints = Vec::new();
        let mut at = first + Self::STEP;
        while at < end {
            checkpoints.push((at, Climatology::fit(&series.before(at))));
            at += Self::STEP;
        }
        ClimatologyAsOf {
            checkpoints,
            none: Climatology::fit(&HourlySeries::default()),
        }
    }

    /// The newest climatology fitted on data before `origin` only.
    fn at(&self, origin: i64) -> &Climatology {
        let known = self
            .checkpoints
            .partition_point(|(from, _)| *from <= origin);
        known
            .checked_sub(1)
            .map_or(&self.none, |i| &self.checkpoints[i].1)
    }
}

fn fit_booster(
    matrix: &Matrix<f64>,
    target: &[f64],
    weights: &[f64],
    options: &TrainOptions,
) -> Result<GradientBooster, MlError> {
    let mut booster = GradientBooster::default()
        .set_objective_type(ObjectiveType::SquaredLoss)
        .set_iterations(options.trees)
        .set_learning_rate(options.learning_rate)
        .set_max_depth(options.max_depth)
        .set_initialize_base_score(true)
        .set_parallel(options.threads != Some(1))
        .set_num_threads(options.threads);
    booster
        .fit(matrix, target, weights, None)
        .map_err(|e| MlError::Training(e.to_string()))?;
    Ok(booster)
}

/// Row weights that turn a squared loss into (about) an absolute one: 1 / |error|, with errors
/// below half the median error counted as that, so near-perfect rows do not take over. The
/// weights average 1.
fn median_weights(target: &[f64], fitted: &[f64]) -> Vec<f64> {
    let errors: Vec<f64> = target
        .iter()
        .zip(fitted)
        .map(|(y, f)| (y - f).abs())
        .collect();
    let mut sorted = errors.clone();
    sorted.sort_by(f64::total_cmp);
    let floor = (quantile(&sorted, 0.5) * 0.5).max(1e-3);
    let mut weights: Vec<f64> = errors.iter().map(|e| 1.0 / e.max(floor)).collect();
    let mean = weights.iter().sum::<f64>() / weights.len().max(1) as f64;
    weights.iter_mut().for_each(|w| *w /= mean);
    weights
}

impl std::fmt::Debug for ForecastModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForecastModel")
            .field("horizon", &self.horizon)
            .field("trees", &self.trees())
            .field("interval_level", &self.interval_level)
            .finish_non_exhaustive()
    }
}

impl ForecastModel {
    /// Forecasts from the last observed hour of `series`.
    pub fn forecast(&self, series: &HourlySeries, weather: &Weather) -> Option<Vec<ForecastPoint>> {
        let origin = series.last_observed()?;
        Some(self.forecast_from(series, weather, origin))
    }

    /// Forecasts the hours after `origin`, using only data at or before it.
    pub fn forecast_from(
        &self,
        series: &HourlySeries,
        weather: &Weather,
        origin: i64,
    ) -> Vec<ForecastPoint> {
        let features = OriginFeatures::at(series, weather, origin);
        self.forecast_features(series, &features)
    }

    pub(crate) fn forecast_features(
        &self,
        series: &HourlySeries,
        features: &OriginFeatures,
    ) -> Vec<ForecastPoint> {
        let anchor = log1p(features.value_at_origin());
        let mut row_data = [0.0; N_FEATURES];
        (1..=self.horizon)
            .zip(&self.boosters)
            .map(|(h, booster)| {
                row_data = features.row(series, &self.climatology, h);
                let matrix = Matrix::new(&row_data, 1, N_FEATURES);
                let change = booster.predict(&matrix, false)[0];
                let log_value = anchor + change;
                let (lo, hi) = self.interval_log_ratios[h as usize - 1];
                ForecastPoint {
                    ts: features.origin() + h as i64 * HOUR,
                    horizon: h,
                    value: log_value.exp_m1().max(0.0),
                    lower: (log_value + lo).exp_m1().max(0.0),
                    upper: (log_value + hi).exp_m1().max(0.0),
                }
            })
            .collect()
    }

    /// Number of trees in the ensemble.
    pub fn trees(&self) -> usize {
        self.boosters.iter().map(|b| b.trees.len()).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::evaluate::evaluate;

    #[test]
    fn training_rows_see_only_the_climatology_known_at_their_origin() {
        let start = 1_700_000_000 / HOUR * HOUR;
        // 100 days at 10, then 100 days at 50.
        let series = HourlySeries::from_grid(
            start,
            (0..200 * 24)
                .map(|i| if i < 100 * 24 { 10.0 } else { 50.0 })
                .collect(),
        );
        let end = start + 200 * 24 * HOUR;
        let known = ClimatologyAsOf::fit(&series, start, end);
        // Before the first 30 days there is nothing to know.
        assert!(known.at(start + 10 * 24 * HOUR).predict(start).is_nan());
        // Day 95 knows the first 90 days: 10 everywhere.
        assert_eq!(known.at(start + 95 * 24 * HOUR).predict(start), 10.0);
        // Day 125 knows 100 days at 10 and 20 at 50, never the 50s that come after.
        let usual = known.at(start + 125 * 24 * HOUR).predict(start);
        assert!(
            (usual - (100.0 * 10.0 + 20.0 * 50.0) / 120.0).abs() < 0.5,
            "{usual}"
        );
    }

    #[test]
    fn robust_refits_move_the_fit_towards_the_median() {
        // One feature that says nothing; targets mostly 0 with a few large outliers. The mean
        // is pulled up by the outliers, the median (what minimises absolute error) is 0.
        let n = 2_000;
        let data: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
        let target: Vec<f64> = (0..n)
            .map(|i| if i % 10 == 0 { 5.0 } else { 0.0 })
            .collect();
        let matrix = Matrix::new(&data, n, 1);
        let options = TrainOptions {
            trees: 30,
            max_depth: 1,
            threads: Some(1),
            ..TrainOptions::default()
        };
        let plain = fit_booster(&matrix, &target, &vec![1.0; n], &options).unwrap();
        let mean_fit = plain.predict(&matrix, false)[0];
        assert!(
            (mean_fit - 0.5).abs() < 0.1,
            "squared loss fits the mean: {mean_fit}"
        );
        let weights = median_weights(&target, &plain.predict(&matrix, false));
        assert!((weights.iter().sum::<f64>() / n as f64 - 1.0).abs() < 1e-9);
        let robust = fit_booster(&matrix, &target, &weights, &options).unwrap();
        let median_fit = robust.predict(&matrix, false)[0];
        assert!(
            median_fit < mean_fit / 2.0,
            "reweighted fit: {median_fit}, plain {mean_fit}"
        );
    }

    /// A pollutant-like series: a daily cycle times a level that wanders off and comes back
    /// within hours, with noise, from a fixed-seed generator.
    pub(crate) fn synthetic(hours: usize, seed: u64) -> HourlySeries {
        let mut state = seed;
        let mut noise = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f64 / 10_000.0 - 0.5
        };
        let mut level = 40.0;
        let values = (0..hours)
            .map(|i| {
                level = (level + 12.0 * noise()).clamp(10.0, 120.0) * 0.9 + 0.1 * 40.0;
                let hour = (i % 24) as f64;
                let cycle = 1.0 + 0.5 * ((hour - 8.0) / 24.0 * std::f64::consts::TAU).cos();
                (level * cycle + 3.0 * noise()).max(0.0)
            })
            .collect();
        HourlySeries::from_grid(1_700_000_000 / HOUR * HOUR, values)
    }

    #[test]
    fn the_model_beats_persistence_where_the_data_is_predictable() {
        let series = synthetic(120 * 24, 7);
        let cut = series.start() + 100 * 24 * HOUR;
        let trained = train(
            &series.before(cut),
            &Weather::default(),
            &TrainOptions::default(),
        )
        .unwrap();
        let eval = evaluate(
            &trained.model,
            &series,
            &Weather::default(),
            cut,
            series.end(),
            1,
        );
        let scores = eval.scores();
        let (h1, h24) = (&scores[0], &scores[23]);
        // One hour ahead the last value is hard to beat, but the model must not be far off it.
        assert!(h1.model.mae < h1.persistence.mae * 1.15, "h1: {h1:?}");
        // A day ahead the daily cycle and the mean reversion are the model's to exploit.
        assert!(h24.skill_vs_persistence > 0.2, "h24: {h24:?}");
        assert!(
            h24.interval_coverage > 0.6 && h24.interval_coverage < 0.95,
            "h24: {h24:?}"
        );
    }
}
