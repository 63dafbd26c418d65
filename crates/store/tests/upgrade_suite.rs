//! Upgrades, on both backends: a database made by an older EcoCityHub (the schema as it was at
//! migration 5, before anomalies, scopes and the per-address sign-in limits) and filled the way
//! that version filled it, then opened and migrated by today's store, keeps every row and works.

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use ecocityhub_domain::{Parameter, QualityFlag, Reading, StationId};
use ecocityhub_store::{testing, IdentityStore, MlStore, Store};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, Connection, Executor};

/// The schema version the old database is made at.
const OLD_VERSION: i64 = 5;

fn migrations(backend: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend)
}

/// The migrations up to `version`, copied into a directory of their own (what the old binary
/// carried).
fn old_migrations(backend: &str, version: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(migrations(backend)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let number: i64 = name[..4].parse().unwrap();
        if number <= version {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
            copied += 1;
        }
    }
    assert_eq!(copied, version, "migrations 1..={version} exist");
    dir
}

/// What the old version wrote: a station with a series of readings, a user with an old-style
/// lock-out column, a refresh token from before scopes, a signing key, a model and a job, an
/// outbox message.
fn old_rows(key_pem: &str) -> Vec<String> {
    let t = Utc
        .with_ymd_and_hms(2024, 3, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let mut rows = vec![
        format!("INSERT INTO stations (id, name, lat, lon, area, timezone, metadata, active, created_at) \
                 VALUES ('old_st', 'Old station', 51.5, -0.1, 'London', 'Europe/London', '{{\"network\":\"aurn\"}}', 1, {t})"),
        format!("INSERT INTO series (id, station_id, parameter, first_ts, last_ts, period_s) \
                 VALUES (1, 'old_st', 'pm25', {t}, {}, 3600)", t + 23 * 3600),
        format!("INSERT INTO users (id, email, password_hash, roles, confirmed, failed_logins, locked_until, created_at) \
                 VALUES ('u-old', 'old@example.org', '!no-password', 'operator,citizen', 1, 3, NULL, {t})"),
        format!("INSERT INTO refresh_tokens (token_hash, family, user_id, expires_at, used_at, revoked_at, created_at) \
                 VALUES ('rt-hash', 'fam-1', 'u-old', {}, NULL, NULL, {t})", t + 10 * 365 * 86400),
        format!("INSERT INTO signing_keys (kid, private_pem, created_at, retired_at) VALUES ('kid-old', '{key_pem}', {t}, NULL)"),
        format!("INSERT INTO ml_models (id, station_id, parameter, version, created_at, artifact_key, checksum, size_bytes, \
                 training_from, training_to, data_fingerprint, code_version, metrics, job_id, status, promoted_at) \
                 VALUES (1, 'old_st', 'pm25', 1, {t}, 'models/old_st/pm25/v1/model.json', 'abc', 10, {t}, {t}, 'fp', 'old', '{{}}', 1, 'serving', {t})"),
        format!("INSERT INTO ml_jobs (id, status, request, progress, message, log, created_by, created_at, started_at, finished_at, cancel_requested) \
                 VALUES (1, 'succeeded', '{{\"stations\":[],\"parameters\":[],\"promote\":true}}', 1, 'done', 'log', 'cli', {t}, {t}, {t}, 0)"),
        format!("INSERT INTO outbox (channel, recipient, subject, body, created_at) \
                 VALUES ('email', 'old@example.org', 'Your code', 'Your confirmation code is 123456.', {t})"),
    ];
    for h in 0..24 {
        rows.push(format!(
            "INSERT INTO readings (series_id, ts, value, flag) VALUES (1, {}, {}, {})",
            t + h * 3600,
            h as f64 + 0.5,
            if h == 7 { 1 } else { 0 }
        ));
    }
    rows
}

async fn upgrade(url: &str, backend: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await.unwrap();
    let old = old_migrations(backend, OLD_VERSION);
    Migrator::new(old.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let key = ecocityhub_identity::SigningKey::generate(Utc::now());
    for row in old_rows(&key.private_pem) {
        conn.execute(row.as_str()).await.unwrap();
    }
    if backend == "postgres" {
        // The rows above name their ids; the old version's own inserts (or a pg_dump restore)
        // leave each sequence past them.
        for table in ["series", "ml_models", "ml_jobs"] {
            conn.execute(
                format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
                .as_str(),
            )
            .await
            .unwrap();
        }
    }
    conn.close().await.unwrap();

    // Today's binary opens it.
    let store = ecocityhub_store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    let station = StationId::parse("old_st").unwrap();

    // Every row is there, as it was.
    let stations = store.stations().await.unwrap();
    assert_eq!(stations.len(), 1);
    assert_eq!(stations[0].name, "Old station");
    assert_eq!(stations[0].metadata["network"], "aurn");
    let t = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
    let points = store
        .readings(
            &station,
            Parameter::Pm25,
            t.timestamp(),
            t.timestamp() + 86400,
            100,
        )
        .await
        .unwrap();
    assert_eq!(points.len(), 24);
    assert_eq!(points[3].value, 3.5);
    assert_eq!(points[7].flag, QualityFlag::Suspect);
    let series = store.series().await.unwrap();
    assert_eq!(series[0].period_seconds, Some(3600));
    let user = store
        .user_by_email("old@example.org")
        .await
        .unwrap()
        .unwrap();
    assert!(user.confirmed);
    assert_eq!(user.roles.len(), 2);
    // A refresh token from before scopes has the full first-party grant.
    let token = store.refresh_token("rt-hash").await.unwrap().unwrap();
    assert!(token.scope.contains("ecocityhub/api"), "{}", token.scope);
    assert!(token.revoked_at.is_none());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].private_pem, key.private_pem);
    let model = store.model(1).await.unwrap().unwrap();
    assert_eq!((model.version, model.status.as_str()), (1, "serving"));
    assert_eq!(store.serving_models().await.unwrap().len(), 1);
    let job = store.job(1).await.unwrap().unwrap();
    assert_eq!(job.message.as_deref(), Some("done"));
    let outbox = store.outbox("old@example.org").await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert!(outbox[0].body.contains("123456"));

    // And it works: new readings next to the old ones, a sign-in failure in the new tables.
    let fresh = Reading {
        station: station.clone(),
        parameter: Parameter::Pm25,
        time: t + chrono::Duration::hours(24),
        value: 9.0,
        flag: QualityFlag::Valid,
    };
    let written = store.insert_readings(&[fresh]).await.unwrap();
    assert_eq!(written.changed, 1);
    assert_eq!(store.count_readings().await.unwrap(), 25);
    assert!(!store
        .record_sign_in_failure("old@example.org", "127.0.0.1", 5, Utc::now())
        .await
        .unwrap());
    let next = store
        .insert_model(
            &ecocityhub_store::ml::NewModel {
                station,
                parameter: Parameter::Pm25,
                created_at: Utc::now(),
                checksum: "def".into(),
                size_bytes: 1,
                training_from: t,
                training_to: t,
                data_fingerprint: "fp2".into(),
                code_version: "new".into(),
                metrics: "{}".into(),
                job_id: None,
            },
            &|v| format!("models/old_st/pm25/v{v}/model.json.gz"),
        )
        .await
        .unwrap();
    assert_eq!(next.version, 2, "versions continue from the old ones");
}

#[tokio::test]
async fn an_old_sqlite_database_upgrades_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?mode=rwc", testing::sqlite_url(dir.path()));
    upgrade(&url, "sqlite").await;
}

#[tokio::test]
async fn an_old_postgres_database_upgrades_with_its_data() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    upgrade(&url, "postgres").await;
}
