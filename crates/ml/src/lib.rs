//! EcoCityHub's machine learning — the SageMaker layer, in pure Rust.
//!
//! - [`series`]: readings on an hourly grid; [`features`]: what a forecast may know;
//! - [`baselines`]: persistence, seasonal naive, climatology;
//! - [`model`]: the gradient-boosted forecast model with prediction intervals;
//! - [`evaluate`] and [`backtest`]: honest, rolling-origin scoring per horizon;
//! - [`report`]: the Markdown and SVG report of a training run or backtest;
//! - [`artifact`]: a model as a versioned, self-describing, checksummed file;
//! - [`aqi`]: the AQI of each forecast hour.
//!
//! Those modules are pure computation. The platform side reads and writes through the store and
//! blob traits: [`data`] (history out of the store), [`registry`] (versions, promotion,
//! rollback), [`training`] (a training run), [`jobs`] (the queued-job worker) and [`forecast`]
//! (the serving engine behind the forecast endpoint).

pub mod anomaly;
pub mod aqi;
pub mod artifact;
pub mod backtest;
pub mod baselines;
pub mod data;
pub mod evaluate;
pub mod features;
pub mod forecast;
pub mod jobs;
pub mod model;
pub mod registry;
pub mod report;
pub mod screening;
pub mod series;
#[cfg(test)]
mod test_support;
pub mod training;

pub use backtest::{backtest, Backtest, BacktestOptions};
pub use evaluate::{Evaluation, HorizonScores};
pub use features::Weather;
pub use model::{train, ForecastModel, ForecastPoint, TrainOptions, Trained};
pub use series::HourlySeries;

/// What can go wrong in training, forecasting and reading artifacts.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error("not enough data to train: {got} hourly values, at least {needed} needed")]
    NotEnoughData { needed: usize, got: usize },
    #[error("not enough history before the fold starting at {}: {got} hourly values, at least {needed} needed; start the backtest later", fmt_ts(*at))]
    NotEnoughHistory { at: i64, needed: usize, got: usize },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("training failed: {0}")]
    Training(String),
    #[error("model artifact is corrupt: {0}")]
    CorruptArtifact(String),
    #[error("model artifact is incompatible: {0}")]
    IncompatibleArtifact(String),
    #[error("could not draw the report: {0}")]
    Report(String),
}

/// An epoch time as RFC 3339 (UTC), for messages.
pub fn fmt_ts(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ts.to_string())
}
