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
