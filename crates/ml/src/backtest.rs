//! Rolling-origin backtests: walk through a window in folds; before each fold, train a fresh
//! model on the data before the fold only, then forecast from every hour of the fold.

use serde::{Deserialize, Serialize};

use crate::evaluate::{evaluate, Evaluation, HorizonScores};
use crate::features::Weather;
use crate::model::{train, TrainOptions};
use crate::series::{floor_hour, HourlySeries, HOUR};
use crate::MlError;

/// What a backtest walks through.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    /// First forecast origin (epoch seconds).
    pub from: i64,
    /// Origins are before this.
    pub to: i64,
    /// The model is retrained this often, on everything before the fold.
    pub retrain_every_hours: u32,
    /// Forecast from every `stride`-th hour.
    pub stride: u32,
    pub train: TrainOptions,
}

/// A backtest's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backtest {
    pub from: i64,
    pub to: i64,
    pub folds: usize,
    pub origins: u64,
    pub horizons: Vec<HorizonScores>,
    #[serde(skip)]
    pub evaluation: Evaluation,
}

/// Runs the backtest; `progress(done, total)` is called after each fold.
pub fn backtest(
    series: &HourlySeries,
    weather: &Weather,
    options: &BacktestOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Backtest, MlError> {
    let from = floor_hour(options.from);
    let to = options.to;
    if to <= from {
        return Err(MlError::InvalidOption(
            "the backtest window is empty: --to must be after --from".into(),
        ));
    }
    let step = options.retrain_every_hours.max(1) as i64 * HOUR;
    let total = ((to - from) + step - 1) / step;
    let mut evaluation = Evaluation::default();
    let mut folds = 0;
    let mut fold_start = from;
    while fold_start < to {
        let fold_end = (fold_start + step).min(to);
        // Training sees nothing at or after the fold's first origin... except the origin hour
        // itself, which is the last observed value every forecast starts from.
        let known = fold_start + HOUR;
        let trained = train(
            &series.before(known),
            &weather.before(known),
            &options.train,
        )
        .map_err(|e| match e {
            MlError::NotEnoughData { needed, got } => MlError::NotEnoughHistory {
                at: fold_start,
                needed,
                got,
            },
            other => other,
        })?;
        evaluation.merge(evaluate(
            &trained.model,
            series,
            weather,
            fold_start,
            fold_end,
            options.stride,
        ));
        folds += 1;
        progress(folds, total as usize);
        fold_start = fold_end;
    }
    Ok(Backtest {
        from,
        to,
        folds,
        origins: evaluation.origins,
        horizons: evaluation.scores(),
        evaluation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14 00:00 UTC.
    const START: i64 = 1_699_920_000;
    const DAY: i64 = 24 * HOUR;

    fn options(from: i64, to: i64, stride: u32) -> BacktestOptions {
        BacktestOptions {
            from,
            to,
            retrain_every_hours: 24,
            stride,
            train: crate::test_support::quick_options(),
        }
    }

    /// `days` of a series with an exact daily period: 10 at midnight, 11 at 01:00 … 33 at
    /// 23:00, every day alike.
    fn sawtooth(days: i64) -> HourlySeries {
        HourlySeries::from_grid(
            START,
            (0..days * 24).map(|i| 10.0 + (i % 24) as f64).collect(),
        )
    }

    fn run(series: &HourlySeries, options: &BacktestOptions) -> (Backtest, Vec<(usize, usize)>) {
        let mut calls = Vec::new();
        let result = backtest(series, &Weather::default(), options, &mut |done, total| {
            calls.push((done, total))
        })
        .unwrap();
        (result, calls)
    }

    #[test]
    fn an_empty_window_is_an_error() {
        let series = sawtooth(24);
        let from = START + 21 * DAY;
        for to in [from, from - HOUR] {
            let err = backtest(
                &series,
                &Weather::default(),
                &options(from, to, 1),
                &mut |_, _| panic!("no fold runs"),
            )
            .unwrap_err();
            assert!(
                matches!(&err, MlError::InvalidOption(m) if m.contains("empty")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_window_without_two_weeks_of_history_before_it_names_the_fold() {
        let series = sawtooth(24);
        let from = START + 5 * DAY;
        let err = backtest(
            &series,
            &Weather::default(),
            &options(from, from + DAY, 1),
            &mut |_, _| {},
        )
        .unwrap_err();
        // Training saw the five days before the fold and the origin hour, nothing after.
        match err {
            MlError::NotEnoughHistory { at, needed, got } => {
                assert_eq!((at, needed, got), (from, 14 * 24, 5 * 24 + 1));
            }
            other => panic!("{other}"),
        }
    }

    /// On an exactly periodic series the answers are known: the same hour yesterday and the
    /// usual value of the hour are exact, and persistence at `h` hours is off by `h` at
    /// 24 − h origins of the day and by 24 − h at the other `h`: MAE h(24 − h)/12, RMSE
    /// √(h(24 − h)).
    #[test]
    fn rolling_origins_score_every_horizon_against_baselines_with_known_errors() {
        let series = sawtooth(24);
        let from = START + 21 * DAY;
        let (result, calls) = run(&series, &options(from, from + 2 * DAY, 1));
        assert_eq!((result.from, result.to), (from, from + 2 * DAY));
        assert_eq!(result.folds, 2);
        assert_eq!(calls, vec![(1, 2), (2, 2)]);
        assert_eq!(result.origins, 48);
        assert_eq!(result.horizons.len(), 3);
        for (i, s) in result.horizons.iter().enumerate() {
            let h = i as f64 + 1.0;
            assert_eq!(s.horizon, i as u32 + 1);
            assert_eq!(s.n, 48);
            assert_eq!(s.seasonal_naive.mae, 0.0, "h{h}");
            assert_eq!(s.seasonal_naive.rmse, 0.0, "h{h}");
            assert_eq!(s.climatology.mae, 0.0, "h{h}");
            let mae = h * (24.0 - h) / 12.0;
            assert!((s.persistence.mae - mae).abs() < 1e-9, "h{h}: {s:?}");
            let rmse = (h * (24.0 - h)).sqrt();
            assert!((s.persistence.rmse - rmse).abs() < 1e-9, "h{h}: {s:?}");
            assert!(
                s.model.mae.is_finite() && s.model.mae < s.persistence.mae,
                "h{h}: {s:?}"
            );
            assert!(
                (s.skill_vs_persistence - (1.0 - s.model.mae / s.persistence.mae)).abs() < 1e-12
            );
        }
        // The trace holds the longest horizon of every origin, in time order.
        assert_eq!(result.evaluation.trace.len(), 48);
        assert_eq!(result.evaluation.trace[0].ts, from + 3 * HOUR);
        assert!(result
            .evaluation
            .trace
            .windows(2)
            .all(|w| w[1].ts == w[0].ts + HOUR));
    }

    #[test]
    fn on_a_constant_series_every_method_is_exact() {
        let series = HourlySeries::from_grid(START, vec![25.0; 24 * 24]);
        let from = START + 21 * DAY;
        let (result, _) = run(&series, &options(from, from + DAY, 1));
        assert_eq!(result.origins, 24);
        for s in &result.horizons {
            assert_eq!(s.persistence.mae, 0.0);
            assert_eq!(s.seasonal_naive.mae, 0.0);
            assert_eq!(s.climatology.mae, 0.0);
            assert!(s.model.mae < 1e-6, "{s:?}");
            assert_eq!(
                s.skill_vs_persistence, 0.0,
                "no skill is claimed against zero"
            );
        }
    }

    #[test]
    fn stride_partial_folds_and_an_unaligned_start() {
        let series = sawtooth(24);
        let from = START + 21 * DAY;
        // Every second hour of two days.
        let (strided, _) = run(&series, &options(from, from + 2 * DAY, 2));
        assert_eq!(strided.origins, 24);
        assert!(strided.horizons.iter().all(|s| s.n == 24));
        assert!(strided
            .evaluation
            .trace
            .windows(2)
            .all(|w| w[1].ts == w[0].ts + 2 * HOUR));

        // A day and a half: a whole fold and a half one; the start is rounded down to its hour.
        let (partial, calls) = run(&series, &options(from + 1_800, from + 36 * HOUR, 1));
        assert_eq!(partial.from, from);
        assert_eq!(partial.folds, 2);
        assert_eq!(calls, vec![(1, 2), (2, 2)]);
        assert_eq!(partial.origins, 36);

        // Origins whose hours ahead are past the end of the data score what they can: the
        // last origin of the data scores nothing and is not counted.
        let end = series.end();
        let (tail, _) = run(&series, &options(end - 3 * HOUR, end, 1));
        assert_eq!(tail.origins, 2, "{:?}", tail.horizons);
        let n: Vec<u64> = tail.horizons.iter().map(|s| s.n).collect();
        assert_eq!(
            n,
            vec![2, 1],
            "3 h ahead of the last three hours is never known"
        );
    }
}
