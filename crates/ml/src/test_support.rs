//! What the platform-side tests (registry, jobs, forecast) share: a fresh SQLite store with
//! blobs in memory, stations and hourly readings written through the store, and training
//! options small enough that a model trains in a fraction of a second in a debug build.

use std::sync::Arc;

use chrono::DateTime;
use ecocityhub_blobs::{BlobStore, ObjectBlobs};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::Store;

use crate::artifact::Artifact;
use crate::features::Weather;
use crate::model::tests::synthetic;
use crate::model::TrainOptions;
use crate::registry::Registry;
use crate::report::Report;
use crate::series::HourlySeries;
use crate::training::fit_artifact;

/// Hours of data a test series has: a little over the two weeks training needs.
pub(crate) const TEST_HOURS: usize = 16 * 24;

/// A model in a few trees over three horizons, one thread.
pub(crate) fn quick_options() -> TrainOptions {
    TrainOptions {
        horizon: 3,
        trees: 4,
        learning_rate: 0.3,
        max_depth: 3,
        max_rows: 400,
        threads: Some(1),
        robust_refits: 0,
        ..TrainOptions::default()
    }
}

/// A migrated SQLite store in a temporary directory (kept alive by the returned guard).
pub(crate) async fn fresh_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = ecocityhub_store::connect(&ecocityhub_store::testing::sqlite_url(dir.path()))
        .await
        .expect("open the SQLite store");
    store.migrate().await.expect("migrate");
    (dir, Arc::new(store))
}

/// A registry over a fresh store and in-memory blobs.
pub(crate) async fn fresh_registry() -> (tempfile::TempDir, Registry) {
    let (dir, store) = fresh_store().await;
    let blobs: Arc<dyn BlobStore> = Arc::new(ObjectBlobs::in_memory());
    (dir, Registry::new(store, blobs))
}

pub(crate) fn station_id(id: &str) -> StationId {
    StationId::parse(id).expect("a valid station id")
}

pub(crate) async fn add_station(store: &dyn Store, id: &str) {
    let station = Station::new(
        station_id(id),
        format!("Station {id}"),
        GeoPoint::new(51.5, -0.1).unwrap(),
        None,
        "UTC",
    )
    .unwrap();
    store.upsert_station(&station).await.unwrap();
}

/// Writes every value of `series` (gaps skipped) as readings of the station.
pub(crate) async fn add_series(
    store: &dyn Store,
    station: &str,
    parameter: Parameter,
    series: &HourlySeries,
) {
    let readings: Vec<Reading> = series
        .values()
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, v)| Reading {
            station: station_id(station),
            parameter,
            time: DateTime::from_timestamp(series.start() + i as i64 * 3600, 0).unwrap(),
            value: *v,
            flag: QualityFlag::Valid,
        })
        .collect();
    store.insert_readings(&readings).await.unwrap();
}

/// A station with a pollutant-like hourly series of [`TEST_HOURS`] (seeded).
pub(crate) async fn station_with_series(
    store: &dyn Store,
    station: &str,
    parameter: Parameter,
    seed: u64,
) -> HourlySeries {
    add_station(store, station).await;
    let series = synthetic(TEST_HOURS, seed);
    add_series(store, station, parameter, &series).await;
    series
}

/// A trained artifact and its report for `station`, from a seeded synthetic series (different
/// seeds give different artifacts, so different checksums).
pub(crate) fn trained_artifact(
    station: &str,
    parameter: Parameter,
    seed: u64,
) -> (Artifact, Report) {
    fit_artifact(
        &synthetic(TEST_HOURS, seed),
        &Weather::default(),
        station,
        parameter,
        &quick_options(),
    )
    .expect("training on synthetic data")
}
