//! Training runs on the platform's data: choose the series, read them, train off the async
//! runtime, write the report, register the model and promote it when the series has none.

use chrono::Utc;
use ecocityhub_domain::{Parameter, StationId};
use ecocityhub_store::ml::ModelRecord;
use ecocityhub_store::StoreError;
use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, ArtifactMeta, CODE_VERSION, FORMAT, FORMAT_VERSION};
use crate::data::{load_series, load_weather, FORECASTABLE};
use crate::features::Weather;
use crate::model::{train, TrainOptions, MIN_TRAINING_HOURS};
use crate::registry::{Registry, RegistryError};
use crate::report::{render, Report};
use crate::series::{HourlySeries, HOUR};
use crate::{fmt_ts, MlError};

/// What a training job trains. Empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    #[serde(default)]
    pub stations: Vec<String>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// Serve each new model at once, even where another model serves (a series without a
    /// serving model always gets its first one).
    #[serde(default)]
    pub promote: bool,
}

/// What can go wrong in a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Ml(#[from] MlError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("station {0:?} does not exist")]
    UnknownStation(String),
    #[error("{0} is not forecast; forecastable parameters: pm25, pm10, no2, o3, so2, co")]
    NotForecastable(Parameter),
    #[error("nothing to train: no hourly series of a forecastable parameter with at least two weeks of data{0}")]
    NothingToTrain(String),
    #[error("training was interrupted: {0}")]
    Interrupted(String),
}

impl TrainError {
    /// A short, stable name of what went wrong (an audit record's `errorCode`).
    pub fn code(&self) -> &'static str {
        match self {
            TrainError::Ml(MlError::NotEnoughData { .. }) => "NotEnoughData",
            TrainError::Ml(_) => "TrainingFailed",
            TrainError::Registry(_) => "RegistryError",
            TrainError::Store(_) => "StoreError",
            TrainError::UnknownStation(_) => "UnknownStation",
            TrainError::NotForecastable(_) => "NotForecastable",
            TrainError::NothingToTrain(_) => "NothingToTrain",
            TrainError::Interrupted(_) => "TrainingInterrupted",
        }
    }
}

/// One series to train.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesToTrain {
    pub station: StationId,
    pub parameter: Parameter,
}

impl std::fmt::Display for SeriesToTrain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.station, self.parameter)
    }
}

/// The series a request covers: hourly series of forecastable parameters with two weeks of
/// data or more.
pub async fn plan(
    registry: &Registry,
    request: &TrainRequest,
) -> Result<Vec<SeriesToTrain>, TrainError> {
    let store = registry.store();
    let stations = store.stations().await?;
    for wanted in &request.stations {
        if !stations.iter().any(|s| s.id.as_str() == wanted) {
            return Err(TrainError::UnknownStation(wanted.clone()));
        }
    }
    if let Some(p) = request
        .parameters
        .iter()
        .find(|p| !FORECASTABLE.contains(p))
    {
        return Err(TrainError::NotForecastable(*p));
    }
    let mut out = Vec::new();
    for s in store.series().await? {
        let hourly = s.period_seconds.is_none_or(|p| p <= HOUR);
        let long_enough = match (s.first, s.last) {
            (Some(a), Some(b)) => (b - a).num_hours() >= MIN_TRAINING_HOURS as i64,
            _ => false,
        };
        let wanted_station =
            request.stations.is_empty() || request.stations.iter().any(|w| w == s.station.as_str());
        let wanted_parameter = if request.parameters.is_empty() {
            FORECASTABLE.contains(&s.parameter)
        } else {
            request.parameters.contains(&s.parameter)
        };
        if hourly && long_enough && wanted_station && wanted_parameter {
            out.push(SeriesToTrain {
                station: s.station,
                parameter: s.parameter,
            });
        }
    }
    if out.is_empty() {
        let scope = if request.stations.is_empty() && request.parameters.is_empty() {
            String::new()
        } else {
            " among the stations and parameters asked for".into()
        };
        return Err(TrainError::NothingToTrain(scope));
    }
    Ok(out)
}

/// A trained and registered model.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub record: ModelRecord,
    pub promoted: bool,
    /// One line for logs and progress: the held-out skill at the longest horizon.
    pub summary: String,
}

/// Trains one series on all its data, registers the model with its report, and promotes it
/// when the series has no serving model (or `promote` asks for it).
pub async fn train_series(
    registry: &Registry,
    target: &SeriesToTrain,
    options: &TrainOptions,
    promote: bool,
    job_id: Option<i64>,
    actor: &str,
) -> Result<TrainOutcome, TrainError> {
    let store = registry.store();
    let until = Utc::now().timestamp() + HOUR;
    let series = load_series(store.as_ref(), &target.station, target.parameter, 0, until).await?;
    let weather = load_weather(store.as_ref(), &target.station, 0, until).await?;
    let options = options.clone();
    let station = target.station.to_string();
    let parameter = target.parameter;
    let (artifact, report) = tokio::task::spawn_blocking(move || {
        fit_artifact(&series, &weather, &station, parameter, &options)
    })
    .await
    .map_err(|e| TrainError::Interrupted(e.to_string()))??;

    let record = registry.register(&artifact, &report, job_id).await?;
    let serving = store
        .models(Some(&target.station), Some(target.parameter))
        .await?
        .into_iter()
        .any(|m| m.status == "serving");
    let promoted = promote || !serving;
    let record = if promoted {
        registry.promote(record.id, actor).await?
    } else {
        record
    };
    let summary = match artifact.meta.holdout_scores.last() {
        Some(s) => format!(
            "{target} v{}: {} h ahead MAE {:.1} vs persistence {:.1} ({:+.0} %), interval coverage {:.0} %{}",
            record.version,
            s.horizon,
            s.model.mae,
            s.persistence.mae,
            s.skill_vs_persistence * 100.0,
            s.interval_coverage * 100.0,
            if promoted { ", serving" } else { ", candidate" }
        ),
        None => format!("{target} v{}: no held-out scores", record.version),
    };
    Ok(TrainOutcome {
        record,
        promoted,
        summary,
    })
}

/// Trains a model on a series and its weather and describes it: the artifact to save and its
/// report. Pure computation (the training container and the platform both use it).
pub fn fit_artifact(
    series: &HourlySeries,
    weather: &Weather,
    station: &str,
    parameter: Parameter,
    options: &TrainOptions,
) -> Result<(Artifact, Report), MlError> {
    let trained = train(series, weather, options)?;
    let scores = trained.holdout.scores();
    let meta = ArtifactMeta {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        code_version: CODE_VERSION.into(),
        created_at: Utc::now().timestamp(),
        station: station.to_string(),
        parameter,
        training_from: trained.window.0,
        training_to: trained.window.1,
        holdout_from: trained.holdout_from,
        rows: trained.rows,
        data_fingerprint: series.fingerprint(),
        features: trained.model.feature_names.clone(),
        weather: weather.present().iter().map(|s| s.to_string()).collect(),
        options: options.clone(),
        trees: trained.model.trees(),
        holdout_scores: scores.clone(),
    };
    let unit = parameter.canonical_unit().symbol();
    let weather_used = if meta.weather.is_empty() {
        "none".to_string()
    } else {
        meta.weather.join(", ")
    };
    let report = render(
        &format!("Forecast model for {station} · {parameter}"),
        &[
            (
                "Training data",
                format!(
                    "{} to {}",
                    fmt_ts(meta.training_from),
                    fmt_ts(meta.training_to)
                ),
            ),
            (
                "Scored on (held out, never fitted)",
                format!(
                    "{} to {}",
                    fmt_ts(meta.holdout_from),
                    fmt_ts(meta.training_to)
                ),
            ),
            ("Rows fitted", meta.rows.to_string()),
            ("Trees", meta.trees.to_string()),
            ("Station weather used", weather_used),
            ("Data fingerprint", meta.data_fingerprint.clone()),
            ("Code version", meta.code_version.clone()),
        ],
        &scores,
        &trained.holdout.trace,
        unit,
    )?;
    Ok((
        Artifact {
            meta,
            model: trained.model,
        },
        report,
    ))
}
