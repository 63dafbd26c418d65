//! Backups of real EcoCityHub databases (the store's migrations and readings) on SQLite and on
//! PostgreSQL: create, verify in a scratch database, restore into an empty one only, and the
//! restored store holds every reading.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use ecocityhub_backup::{BackupConfig, BackupError, Backups, Database, Kind};
use ecocityhub_blobs::{BlobStore, ObjectBlobs};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::Store;

/// A migrated store at `url` with one station and `n` hourly readings.
async fn seeded(url: &str, n: i64) {
    let store = ecocityhub_store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    let station = Station::new(
        StationId::parse("st1").unwrap(),
        "One",
        GeoPoint::new(51.5, -0.1).unwrap(),
        None,
        "UTC",
    )
    .unwrap();
    store.upsert_station(&station).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let readings: Vec<Reading> = (0..n)
        .map(|i| Reading {
            station: station.id.clone(),
            parameter: Parameter::Pm25,
            time: t0 + chrono::Duration::hours(i),
            value: i as f64,
            flag: QualityFlag::Valid,
        })
        .collect();
    store.insert_readings(&readings).await.unwrap();
}

async fn count(url: &str) -> u64 {
    let store = ecocityhub_store::connect(url).await.unwrap();
    store.count_readings().await.unwrap()
}

async fn round_trip(source: &str, target: &str, kind: Kind) {
    seeded(source, 2_000).await;
    let blobs: Arc<dyn BlobStore> = Arc::new(ObjectBlobs::in_memory());
    let backups = Backups::new(blobs, BackupConfig::default());
    let db = Database::from_url(source).unwrap();
    let manifest = backups.create(&db).await.unwrap();
    assert_eq!(manifest.kind, kind);
    assert_eq!(manifest.tables["readings"], 2_000);
    assert_eq!(manifest.tables["stations"], 1);
    assert!(manifest.schema_version >= 13, "{}", manifest.schema_version);

    backups.verify(&manifest.id, &db).await.unwrap();

    let err = backups.restore(&manifest.id, &db, false).await.unwrap_err();
    assert!(matches!(err, BackupError::NotEmpty { .. }), "{err}");
    let into = Database::from_url(target).unwrap();
    backups.restore(&manifest.id, &into, false).await.unwrap();
    assert_eq!(count(target).await, 2_000);
    // The restored database is a store the binary can open and migrate.
    let store = ecocityhub_store::connect(target).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.stations().await.unwrap().len(), 1);
    drop(store);
    backups.restore(&manifest.id, &into, true).await.unwrap();
    assert_eq!(count(target).await, 2_000);
}

#[tokio::test]
async fn sqlite_backups_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let source = ecocityhub_store::testing::sqlite_url(dir.path());
    let target = format!("sqlite://{}", dir.path().join("restored.db").display());
    round_trip(&source, &target, Kind::SqliteSnapshot).await;
}

#[tokio::test]
async fn postgres_backups_round_trip() {
    let Some(source) = ecocityhub_store::testing::fresh_postgres_url().await else {
        return;
    };
    let target = ecocityhub_store::testing::fresh_postgres_url()
        .await
        .unwrap();
    round_trip(&source, &target, Kind::PgDump).await;
}

#[tokio::test]
async fn a_pg_dump_needs_a_postgres_server_to_verify_on() {
    let Some(source) = ecocityhub_store::testing::fresh_postgres_url().await else {
        return;
    };
    seeded(&source, 10).await;
    let backups = Backups::new(Arc::new(ObjectBlobs::in_memory()), BackupConfig::default());
    let manifest = backups
        .create(&Database::from_url(&source).unwrap())
        .await
        .unwrap();
    let sqlite = Database::from_url("sqlite:///tmp/none.db").unwrap();
    let err = backups.verify(&manifest.id, &sqlite).await.unwrap_err();
    assert!(
        err.to_string().contains("needs a PostgreSQL server"),
        "{err}"
    );
    let err = backups
        .restore(&manifest.id, &sqlite, false)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::WrongBackend { .. }), "{err}");
}
