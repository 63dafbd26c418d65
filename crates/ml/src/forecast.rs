//! The forecast endpoint's engine (SageMaker inference): the serving model of a series, loaded
//! once and kept in memory, applied to the latest week of the station's data; the result is
//! cached until new readings arrive or the serving model changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ecocityhub_domain::{Parameter, StationId};
use ecocityhub_store::StoreError;
use serde::Serialize;
use tokio::sync::RwLock;

use crate::aqi::{forecast_aqi_after, HourAqi};
use crate::artifact::Artifact;
use crate::data::{load_series, load_weather};
use crate::registry::{Registry, RegistryError};
use crate::series::HOUR;
use crate::{fmt_ts, HorizonScores};

/// Hours of history read for a forecast (the longest feature looks back a week).
const HISTORY_HOURS: i64 = 8 * 24;
/// A forecast whose newest reading is older than this is marked `stale`.
const STALE_AFTER_HOURS: i64 = 3;

/// What can go wrong making a forecast.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("no model serves {station}/{parameter} yet: train one (`ecocityhub ml train` or POST /api/v1/ml/jobs)")]
    NoModel { station: String, parameter: String },
    #[error("{station} has no {parameter} readings to forecast from")]
    NoData { station: String, parameter: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One forecast hour as served.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastHour {
    /// Start of the hour, RFC 3339 UTC.
    pub time: String,
    pub horizon_hours: u32,
    pub value: f64,
    /// The prediction interval (see `interval_level`).
    pub lower: f64,
    pub upper: f64,
    pub aqi: Option<HourAqi>,
}

/// The model behind a forecast.
#[derive(Debug, Clone, Serialize)]
pub struct ServingModel {
    pub id: i64,
    pub version: i64,
    pub trained_at: String,
    pub training_to: String,
    /// How the model did at each horizon on data it never saw.
    pub holdout_scores: Vec<HorizonScores>,
}

/// A station's forecast of one parameter.
#[derive(Debug, Clone, Serialize)]
pub struct StationForecast {
    pub station: String,
    pub parameter: Parameter,
    pub unit: &'static str,
    /// The last measured hour the forecast starts from.
    pub origin: String,
    /// The last reading is more than 3 hours old: the forecast starts from then, not now (a
    /// station that stopped reporting, or historical data).
    pub stale: bool,
    pub issued_at: String,
    pub interval_level: f64,
    pub model: ServingModel,
    pub hours: Vec<ForecastHour>,
}

struct Cached {
    model_id: i64,
    generation: u64,
    at: Instant,
    forecast: Arc<StationForecast>,
}

/// Makes and caches forecasts.
pub struct Forecaster {
    registry: Registry,
    /// Artifacts of serving models, by model id.
    loaded: RwLock<HashMap<i64, Arc<Artifact>>>,
    cache: RwLock<HashMap<(StationId, Parameter), Cached>>,
    /// Readings written by other processes show up after this long.
    ttl: Duration,
}

impl Forecaster {
    pub fn new(registry: Registry, ttl: Duration) -> Forecaster {
        Forecaster {
            registry,
            loaded: RwLock::new(HashMap::new()),
            cache: RwLock::new(HashMap::new()),
            ttl,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    async fn artifact(&self, id: i64) -> Result<Arc<Artifact>, RegistryError> {
        if let Some(a) = self.loaded.read().await.get(&id) {
            return Ok(a.clone());
        }
        let record = self.registry.record(id).await?;
        let artifact = Arc::new(self.registry.load(&record).await?);
        self.loaded.write().await.insert(id, artifact.clone());
        Ok(artifact)
    }

    /// The forecast of a series; `generation` changes whenever readings were written.
    pub async fn forecast(
        &self,
        station: &StationId,
        parameter: Parameter,
        generation: u64,
    ) -> Result<Arc<StationForecast>, ForecastError> {
        let serving = self
            .registry
            .store()
            .models(Some(station), Some(parameter))
            .await?
            .into_iter()
            .find(|m| m.status == "serving")
            .ok_or_else(|| ForecastError::NoModel {
                station: station.to_string(),
                parameter: parameter.to_string(),
            })?;
        let key = (station.clone(), parameter);
        if let Some(c) = self.cache.read().await.get(&key) {
            if c.model_id == serving.id && c.generation == generation && c.at.elapsed() < self.ttl {
                return Ok(c.forecast.clone());
            }
        }
        let artifact = self.artifact(serving.id).await?;
        let now = Utc::now().timestamp();
        let store = self.registry.store().as_ref();
        let no_data = || ForecastError::NoData {
            station: station.to_string(),
            parameter: parameter.to_string(),
        };
        // The week before the series' last reading, wherever that is.
        let last = store
            .series()
            .await?
            .into_iter()
            .find(|s| &s.station == station && s.parameter == parameter)
            .and_then(|s| s.last)
            .ok_or_else(no_data)?
            .timestamp()
            .min(now);
        let (from, to) = (last - HISTORY_HOURS * HOUR, last + HOUR);
        let series = load_series(store, station, parameter, from, to).await?;
        let origin = series.last_observed().ok_or_else(no_data)?;
        let weather = load_weather(store, station, from, to).await?;
        let points = artifact.model.forecast_from(&series, &weather, origin);
        let aqi = forecast_aqi_after(parameter, &series, &points);
        let forecast = Arc::new(StationForecast {
            station: station.to_string(),
            parameter,
            unit: parameter.canonical_unit().symbol(),
            origin: fmt_ts(origin),
            stale: now - origin > STALE_AFTER_HOURS * HOUR,
            issued_at: fmt_ts(now),
            interval_level: artifact.model.interval_level,
            model: ServingModel {
                id: serving.id,
                version: serving.version,
                trained_at: fmt_ts(serving.created_at.timestamp()),
                training_to: fmt_ts(serving.training_to.timestamp()),
                holdout_scores: artifact.meta.holdout_scores.clone(),
            },
            hours: points
                .iter()
                .zip(aqi)
                .map(|(p, aqi)| ForecastHour {
                    time: fmt_ts(p.ts),
                    horizon_hours: p.horizon,
                    value: round2(p.value),
                    lower: round2(p.lower),
                    upper: round2(p.upper),
                    aqi,
                })
                .collect(),
        });
        self.cache.write().await.insert(
            key,
            Cached {
                model_id: serving.id,
                generation,
                at: Instant::now(),
                forecast: forecast.clone(),
            },
        );
        Ok(forecast)
    }

    /// Recomputes the forecast of every serving model (the hourly batch). Returns how many
    /// succeeded and the failures.
    pub async fn refresh_all(&self, generation: u64) -> (usize, Vec<String>) {
        let serving = match self.registry.store().serving_models().await {
            Ok(s) => s,
            Err(e) => return (0, vec![e.to_string()]),
        };
        self.cache.write().await.clear();
        let mut done = 0;
        let mut failures = Vec::new();
        for m in serving {
            match self.forecast(&m.station, m.parameter, generation).await {
                Ok(_) => done += 1,
                Err(e) => failures.push(format!("{}/{}: {e}", m.station, m.parameter)),
            }
        }
        (done, failures)
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
