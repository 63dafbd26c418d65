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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        add_series, add_station, fresh_registry, quick_options, station_id, station_with_series,
        trained_artifact,
    };
    use crate::training::{train_series, SeriesToTrain};
    use crate::HourlySeries;

    const TTL: Duration = Duration::from_secs(3600);

    /// Trains the series on what the store holds and returns the new model's id.
    async fn train(registry: &Registry, station: &str, parameter: Parameter, promote: bool) -> i64 {
        let target = SeriesToTrain {
            station: station_id(station),
            parameter,
        };
        train_series(registry, &target, &quick_options(), promote, None, "test")
            .await
            .unwrap()
            .record
            .id
    }

    #[tokio::test]
    async fn without_a_serving_model_or_readings_there_is_no_forecast() {
        let (_dir, registry) = fresh_registry().await;
        station_with_series(registry.store().as_ref(), "s1", Parameter::Pm25, 1).await;
        let forecaster = Forecaster::new(registry.clone(), TTL);
        let s1 = station_id("s1");
        let err = forecaster
            .forecast(&s1, Parameter::Pm25, 0)
            .await
            .unwrap_err();
        assert!(matches!(err, ForecastError::NoModel { .. }), "{err}");
        assert!(err.to_string().contains("s1/pm25"), "{err}");

        // A candidate does not serve.
        let (artifact, report) = trained_artifact("s1", Parameter::Pm25, 1);
        registry.register(&artifact, &report, None).await.unwrap();
        assert!(matches!(
            forecaster.forecast(&s1, Parameter::Pm25, 0).await,
            Err(ForecastError::NoModel { .. })
        ));

        // A model serves a station that has no readings of its parameter.
        add_station(registry.store().as_ref(), "s2").await;
        let (artifact, report) = trained_artifact("s2", Parameter::Pm25, 2);
        let record = registry.register(&artifact, &report, None).await.unwrap();
        registry.promote(record.id, "test").await.unwrap();
        let err = forecaster
            .forecast(&station_id("s2"), Parameter::Pm25, 0)
            .await
            .unwrap_err();
        assert!(matches!(err, ForecastError::NoData { .. }), "{err}");
    }

    #[tokio::test]
    async fn the_forecast_is_the_serving_models_from_the_last_reading() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        let series = station_with_series(store.as_ref(), "s1", Parameter::Pm25, 1).await;
        let id = train(&registry, "s1", Parameter::Pm25, false).await;
        let forecaster = Forecaster::new(registry.clone(), TTL);
        let s1 = station_id("s1");

        let f = forecaster.forecast(&s1, Parameter::Pm25, 0).await.unwrap();
        let record = registry.record(id).await.unwrap();
        let artifact = registry.load(&record).await.unwrap();
        assert_eq!((f.model.id, f.model.version), (id, 1));
        assert_eq!(f.model.holdout_scores, artifact.meta.holdout_scores);
        assert_eq!(f.station, "s1");
        assert_eq!(f.unit, "µg/m³");
        let origin = series.last_observed().unwrap();
        assert_eq!(f.origin, fmt_ts(origin));
        assert!(f.stale, "the readings are from 2023");
        assert_eq!(f.interval_level, 0.8);

        // What the model says from the week before the origin, rounded to 0.01.
        let from = origin - HISTORY_HOURS * HOUR;
        let week = load_series(store.as_ref(), &s1, Parameter::Pm25, from, origin + HOUR)
            .await
            .unwrap();
        assert_eq!(week.observed(), HISTORY_HOURS as usize + 1);
        let weather = load_weather(store.as_ref(), &s1, from, origin + HOUR)
            .await
            .unwrap();
        let expected = artifact.model.forecast_from(&week, &weather, origin);
        assert_eq!(f.hours.len(), 3);
        for (i, (hour, want)) in f.hours.iter().zip(&expected).enumerate() {
            assert_eq!(hour.horizon_hours, i as u32 + 1);
            assert_eq!(hour.time, fmt_ts(origin + (i as i64 + 1) * HOUR));
            assert_eq!(hour.value, round2(want.value), "hour {i}");
            assert_eq!(
                (hour.lower, hour.upper),
                (round2(want.lower), round2(want.upper))
            );
            assert!(
                hour.lower <= hour.value && hour.value <= hour.upper,
                "{hour:?}"
            );
            assert!(hour.aqi.is_some(), "PM2.5 has an AQI");
        }
    }

    #[tokio::test]
    async fn forecasts_are_cached_until_readings_change_the_model_changes_or_the_ttl_passes() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        let series = station_with_series(store.as_ref(), "s1", Parameter::Pm25, 1).await;
        let first = train(&registry, "s1", Parameter::Pm25, false).await;
        let forecaster = Forecaster::new(registry.clone(), TTL);
        let s1 = station_id("s1");

        let a = forecaster.forecast(&s1, Parameter::Pm25, 0).await.unwrap();
        let b = forecaster.forecast(&s1, Parameter::Pm25, 0).await.unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the same generation is served from the cache"
        );

        // A new reading an hour after the last: until the generation says readings changed,
        // the cached forecast stands; then the forecast starts from the new hour.
        let last = series.last_observed().unwrap();
        let newer = HourlySeries::from_grid(last + HOUR, vec![80.0]);
        add_series(store.as_ref(), "s1", Parameter::Pm25, &newer).await;
        let cached = forecaster.forecast(&s1, Parameter::Pm25, 0).await.unwrap();
        assert!(Arc::ptr_eq(&a, &cached));
        let fresh = forecaster.forecast(&s1, Parameter::Pm25, 1).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &fresh));
        assert_eq!(fresh.origin, fmt_ts(last + HOUR));
        assert_eq!(fresh.hours[0].time, fmt_ts(last + 2 * HOUR));

        // Another model serving: served at once, at the same generation.
        let second = train(&registry, "s1", Parameter::Pm25, true).await;
        let f = forecaster.forecast(&s1, Parameter::Pm25, 1).await.unwrap();
        assert_eq!((f.model.id, f.model.version), (second, 2));
        registry
            .rollback(&s1, Parameter::Pm25, "test")
            .await
            .unwrap();
        let f = forecaster.forecast(&s1, Parameter::Pm25, 1).await.unwrap();
        assert_eq!((f.model.id, f.model.version), (first, 1));

        // With no time to live, every request computes anew.
        let uncached = Forecaster::new(registry.clone(), Duration::ZERO);
        let x = uncached.forecast(&s1, Parameter::Pm25, 1).await.unwrap();
        let y = uncached.forecast(&s1, Parameter::Pm25, 1).await.unwrap();
        assert!(!Arc::ptr_eq(&x, &y));
        assert_eq!(x.hours[0].value, y.hours[0].value);
    }

    #[tokio::test]
    async fn refresh_all_recomputes_every_serving_model_and_lists_the_failures() {
        let (_dir, registry) = fresh_registry().await;
        let store = registry.store().clone();
        station_with_series(store.as_ref(), "s1", Parameter::Pm25, 1).await;
        add_series(
            store.as_ref(),
            "s1",
            Parameter::No2,
            &crate::model::tests::synthetic(crate::test_support::TEST_HOURS, 5),
        )
        .await;
        train(&registry, "s1", Parameter::Pm25, false).await;
        train(&registry, "s1", Parameter::No2, false).await;
        // A serving model whose station has no readings.
        let (artifact, report) = trained_artifact("s2", Parameter::Pm25, 2);
        let orphan = registry.register(&artifact, &report, None).await.unwrap();
        registry.promote(orphan.id, "test").await.unwrap();

        let forecaster = Forecaster::new(registry.clone(), TTL);
        let s1 = station_id("s1");
        let before = forecaster.forecast(&s1, Parameter::Pm25, 3).await.unwrap();
        let (done, failures) = forecaster.refresh_all(3).await;
        assert_eq!(done, 2);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with("s2/pm25: ") && failures[0].contains("no pm25 readings"),
            "{failures:?}"
        );
        // The batch recomputed the cached forecast rather than keeping it.
        let after = forecaster.forecast(&s1, Parameter::Pm25, 3).await.unwrap();
        assert!(!Arc::ptr_eq(&before, &after));
        let no2 = forecaster.forecast(&s1, Parameter::No2, 3).await.unwrap();
        assert_eq!(no2.parameter, Parameter::No2);
    }
}
