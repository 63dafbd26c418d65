//! The SQL implementation of [`Store`] for SQLite and PostgreSQL, through sqlx's `Any` driver.
//!
//! Both backends share every query: placeholders are `$n`, integers are 64-bit, times are epoch
//! seconds and JSON is text, so one implementation serves both and the integration suite proves
//! it on each. What differs lives here too: connection set-up (WAL and pragmas for SQLite), the
//! migrations directory, and a writer lock for SQLite, which has a single writer anyway.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use futures::TryFutureExt;

use crate::resilience::{self, Resilience};
use crate::{DeviceKey, Point, RecentSeries, Result, SeriesInfo, Store, StoreError, Written};

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Rows per multi-row INSERT: 4 values a row stays far below both backends' bind limits, and a
/// fixed size lets each connection reuse one prepared statement.
const INSERT_CHUNK: usize = 500;

/// The store on SQLite or PostgreSQL.
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// How calls ride through transient faults (a failover, a restart).
    resilience: Resilience,
    /// (station, parameter) → series id, filled only after the series' creation has committed.
    series_ids: Mutex<HashMap<(StationId, Parameter), i64>>,
    /// SQLite allows one writer; taking turns here avoids busy errors between our own writers.
    sqlite_writer: tokio::sync::Mutex<()>,
}

impl SqlStore {
    /// Connects to `sqlite://PATH` (creating the file) or `postgres://…`, with the default
    /// [`Resilience`]. Does not migrate.
    pub async fn connect(url: &str) -> Result<SqlStore> {
        SqlStore::connect_with(url, Resilience::default()).await
    }

    /// Connects as [`SqlStore::connect`] does, riding through faults as `resilience` says.
    pub async fn connect_with(url: &str, resilience: Resilience) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_release(|conn, _meta| Box::pin(drop_if_still_in_transaction(conn)))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL: readers never block the writer. synchronous=FULL: a commit is on
                            // disk before we answer, so an acknowledged reading survives a crash.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                // A pooled connection is checked before it is handed out (sqlx's default), so
                // after a failover the dead ones are dropped and new ones reach the endpoint.
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(resilience.acquire_timeout)
                    .test_before_acquire(true)
                    .after_release(|conn, _meta| Box::pin(drop_if_still_in_transaction(conn)))
                    .connect(url)
                    .await?
            }
        };
        Ok(SqlStore {
            pool,
            backend,
            resilience,
            series_ids: Mutex::new(HashMap::new()),
            sqlite_writer: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.lock().await),
            Backend::Postgres => None,
        }
    }

    fn cached_series(&self, station: &StationId, parameter: Parameter) -> Option<i64> {
        self.series_ids
            .lock()
            .expect("not poisoned")
            .get(&(station.clone(), parameter))
            .copied()
    }

    async fn series_id(&self, station: &StationId, parameter: Parameter) -> Result<Option<i64>> {
        if let Some(id) = self.cached_series(station, parameter) {
            return Ok(Some(id));
        }
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM series WHERE station_id = $1 AND parameter = $2")
                .bind(station.as_str())
                .bind(parameter.as_str())
                .fetch_optional(&self.pool)
                .await?;
        if let Some(id) = id {
            self.series_ids
                .lock()
                .expect("not poisoned")
                .insert((station.clone(), parameter), id);
        }
        Ok(id)
    }
}

/// Whether a connection coming back to the pool may be used again: not when it is still in a
/// transaction after its failed one was rolled back. SQLite rolls some failed transactions back
/// by itself (a full disk, an I/O error); sqlx's ROLLBACK then fails and its count of open
/// transactions stays at one, so the connection's next transaction would be a SAVEPOINT whose
/// rollback keeps the write lock — every other writer would see "database is locked".
async fn drop_if_still_in_transaction(conn: &mut sqlx::AnyConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if conn.is_in_transaction() {
        // Lets a rollback that a dropped transaction queued run first.
        conn.ping().await?;
    }
    let keep = !conn.is_in_transaction();
    if !keep {
        tracing::warn!("a database connection left in a failed transaction is closed");
    }
    Ok(keep)
}

pub(crate) fn time(ts: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(ts, 0)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ts} out of range")))
}

pub(crate) fn opt_time(ts: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ts.map(time).transpose()
}

fn station_id(s: String) -> Result<StationId> {
    StationId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parameter(s: &str) -> Result<Parameter> {
    s.parse()
        .map_err(|e: ecocityhub_domain::parameter::UnknownParameter| {
            StoreError::Corrupt(e.to_string())
        })
}

fn station_from_row(row: &AnyRow) -> Result<Station> {
    let metadata: String = row.try_get("metadata")?;
    Ok(Station {
        id: station_id(row.try_get("id")?)?,
        name: row.try_get("name")?,
        location: GeoPoint::new(row.try_get("lat")?, row.try_get("lon")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        area: row.try_get("area")?,
        timezone: row.try_get("timezone")?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        active: row.try_get::<i64, _>("active")? != 0,
    })
}

fn device_key_from_row(row: &AnyRow) -> Result<DeviceKey> {
    Ok(DeviceKey {
        prefix: row.try_get("prefix")?,
        station: station_id(row.try_get("station_id")?)?,
        secret_hash: row.try_get("secret_hash")?,
        label: row.try_get("label")?,
        created_at: time(row.try_get("created_at")?)?,
        last_used_at: opt_time(row.try_get("last_used_at")?)?,
        revoked_at: opt_time(row.try_get("revoked_at")?)?,
    })
}

/// Reads `ts,value,flag;ts,value,flag;…` as packed by the SQLite branch of `readings`.
fn unpack_points(packed: &str) -> Result<Vec<Point>> {
    packed
        .split(';')
        .map(|item| {
            let bad = || StoreError::Corrupt(format!("packed reading {item:?}"));
            let mut fields = item.split(',');
            let mut next = || fields.next().ok_or_else(bad);
            let ts = next()?.parse().map_err(|_| bad())?;
            let value = next()?.parse().map_err(|_| bad())?;
            let flag: i16 = next()?.parse().map_err(|_| bad())?;
            Ok(Point {
                ts,
                value,
                flag: QualityFlag::from_i16(flag),
            })
        })
        .collect()
}

const STATION_COLUMNS: &str = "id, name, lat, lon, area, timezone, metadata, active";
const DEVICE_KEY_COLUMNS: &str =
    "prefix, station_id, secret_hash, label, created_at, last_used_at, revoked_at";

/// The multi-row upsert of `rows` readings. SQLite gets anonymous `?` placeholders: binding
/// numbered ones costs sqlx a name lookup per parameter that SQLite answers by a linear scan,
/// which made a 2,000-parameter statement quadratic (80 % of the insert time).
fn insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::from("INSERT INTO readings (series_id, ts, value, flag) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        match backend {
            Backend::Sqlite => sql.push_str("(?,?,?,?)"),
            Backend::Postgres => {
                let b = i * 4;
                sql.push_str(&format!("(${},${},${},${})", b + 1, b + 2, b + 3, b + 4));
            }
        }
    }
    // A row stored exactly as sent is left alone, so the statement's count of affected rows is
    // the rows that were new or changed.
    sql.push_str(
        " ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, flag = excluded.flag \
         WHERE readings.value IS DISTINCT FROM excluded.value \
            OR readings.flag IS DISTINCT FROM excluded.flag",
    );
    sql
}

impl SqlStore {
    /// One attempt of [`Store::insert_readings`], in one transaction.
    async fn insert_readings_once(&self, readings: &[Reading]) -> Result<Written> {
        // Last one wins within a batch, as it would across batches; PostgreSQL refuses to
        // update one row twice in a statement.
        let mut latest: HashMap<(&StationId, Parameter, i64), &Reading> =
            HashMap::with_capacity(readings.len());
        for r in readings {
            latest.insert((&r.station, r.parameter, r.time.timestamp()), r);
        }
        let mut rows: Vec<&Reading> = latest.into_values().collect();
        rows.sort_by(|a, b| {
            (&a.station, a.parameter, a.time).cmp(&(&b.station, b.parameter, b.time))
        });

        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;

        // Resolve series ids, creating missing series inside this transaction.
        let mut ids: HashMap<(StationId, Parameter), i64> = HashMap::new();
        let mut created = Vec::new();
        for r in &rows {
            let key = (r.station.clone(), r.parameter);
            if ids.contains_key(&key) {
                continue;
            }
            let id = match self.cached_series(&r.station, r.parameter) {
                Some(id) => id,
                None => {
                    let exists: Option<i64> =
                        sqlx::query_scalar("SELECT 1 FROM stations WHERE id = $1")
                            .bind(r.station.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                    if exists.is_none() {
                        return Err(StoreError::UnknownStation(r.station.clone()));
                    }
                    sqlx::query(
                        "INSERT INTO series (station_id, parameter) VALUES ($1, $2) \
                         ON CONFLICT (station_id, parameter) DO NOTHING",
                    )
                    .bind(r.station.as_str())
                    .bind(r.parameter.as_str())
                    .execute(&mut *tx)
                    .await?;
                    let id: i64 = sqlx::query_scalar(
                        "SELECT id FROM series WHERE station_id = $1 AND parameter = $2",
                    )
                    .bind(r.station.as_str())
                    .bind(r.parameter.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    created.push((key.clone(), id));
                    id
                }
            };
            ids.insert(key, id);
        }

        let full_sql = insert_sql(self.backend, INSERT_CHUNK);
        let mut span: HashMap<i64, (i64, i64)> = HashMap::new();
        let mut changed = 0;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let tail_sql;
            let sql = if chunk.len() == INSERT_CHUNK {
                full_sql.as_str()
            } else {
                tail_sql = insert_sql(self.backend, chunk.len());
                tail_sql.as_str()
            };
            let mut q = sqlx::query(sql);
            for r in chunk {
                let id = ids[&(r.station.clone(), r.parameter)];
                let ts = r.time.timestamp();
                let e = span.entry(id).or_insert((ts, ts));
                e.0 = e.0.min(ts);
                e.1 = e.1.max(ts);
                q = q
                    .bind(id)
                    .bind(ts)
                    .bind(r.value)
                    .bind(i64::from(r.flag.as_i16()));
            }
            changed += q.execute(&mut *tx).await?.rows_affected();
        }
        for (id, (first, last)) in span {
            sqlx::query(
                "UPDATE series SET \
                 first_ts = CASE WHEN first_ts IS NULL OR first_ts > $1 THEN $1 ELSE first_ts END, \
                 last_ts = CASE WHEN last_ts IS NULL OR last_ts < $2 THEN $2 ELSE last_ts END \
                 WHERE id = $3",
            )
            .bind(first)
            .bind(last)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.series_ids
            .lock()
            .expect("not poisoned")
            .extend(created);
        Ok(Written {
            rows: rows.len() as u64,
            changed,
        })
    }

    /// Whether calls get [`Resilience::attempt_timeout`]: on PostgreSQL only.
    fn timed(&self) -> bool {
        self.backend == Backend::Postgres
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        match migrator.run(&self.pool).await {
            Err(sqlx::migrate::MigrateError::VersionMissing(_)) => {
                let database: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                    .fetch_one(&self.pool)
                    .await?;
                let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
                Err(StoreError::SchemaTooNew { database, known })
            }
            other => Ok(other?),
        }
    }

    async fn ping(&self) -> Result<()> {
        resilience::retry(
            &self.resilience,
            self.timed(),
            "checking the database",
            || async {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            },
        )
        .await
    }

    async fn upsert_station(&self, s: &Station) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO stations (id, name, lat, lon, area, timezone, metadata, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, lat = excluded.lat, lon = excluded.lon, \
             area = excluded.area, timezone = excluded.timezone, metadata = excluded.metadata, active = excluded.active",
        )
        .bind(s.id.as_str())
        .bind(&s.name)
        .bind(s.location.lat)
        .bind(s.location.lon)
        .bind(s.area.as_deref())
        .bind(&s.timezone)
        .bind(s.metadata.to_string())
        .bind(i64::from(s.active))
        .bind(Utc::now().timestamp())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_station_if_missing(&self, s: &Station) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "INSERT INTO stations (id, name, lat, lon, area, timezone, metadata, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(s.id.as_str())
        .bind(&s.name)
        .bind(s.location.lat)
        .bind(s.location.lon)
        .bind(s.area.as_deref())
        .bind(&s.timezone)
        .bind(s.metadata.to_string())
        .bind(i64::from(s.active))
        .bind(Utc::now().timestamp())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn station(&self, id: &StationId) -> Result<Option<Station>> {
        let row = sqlx::query(&format!(
            "SELECT {STATION_COLUMNS} FROM stations WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(station_from_row).transpose()
    }

    async fn stations(&self) -> Result<Vec<Station>> {
        let rows = sqlx::query(&format!(
            "SELECT {STATION_COLUMNS} FROM stations ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(station_from_row).collect()
    }

    async fn series(&self) -> Result<Vec<SeriesInfo>> {
        let rows = sqlx::query("SELECT station_id, parameter, first_ts, last_ts, period_s FROM series ORDER BY station_id, parameter")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SeriesInfo {
                    station: station_id(row.try_get("station_id")?)?,
                    parameter: parameter(&row.try_get::<String, _>("parameter")?)?,
                    first: opt_time(row.try_get("first_ts")?)?,
                    last: opt_time(row.try_get("last_ts")?)?,
                    period_seconds: row.try_get("period_s")?,
                })
            })
            .collect()
    }

    /// Retried through transient faults: the write is an upsert, so an attempt that committed
    /// without being acknowledged is stored once.
    async fn insert_readings(&self, readings: &[Reading]) -> Result<Written> {
        if readings.is_empty() {
            return Ok(Written::default());
        }
        resilience::retry(&self.resilience, self.timed(), "storing readings", || {
            self.insert_readings_once(readings)
        })
        .await
    }

    async fn set_series_period(
        &self,
        station: &StationId,
        parameter: Parameter,
        seconds: i64,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE series SET period_s = $1 WHERE station_id = $2 AND parameter = $3")
            .bind(seconds)
            .bind(station.as_str())
            .bind(parameter.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_reading_flag(
        &self,
        station: &StationId,
        parameter: Parameter,
        ts: i64,
        flag: QualityFlag,
    ) -> Result<Option<QualityFlag>> {
        let Some(series) = self.series_id(station, parameter).await? else {
            return Ok(None);
        };
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let old: Option<i64> =
            sqlx::query_scalar("SELECT flag FROM readings WHERE series_id = $1 AND ts = $2")
                .bind(series)
                .bind(ts)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old) = old else {
            return Ok(None);
        };
        sqlx::query("UPDATE readings SET flag = $1 WHERE series_id = $2 AND ts = $3")
            .bind(i64::from(flag.as_i16()))
            .bind(series)
            .bind(ts)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(QualityFlag::from_i16(old as i16)))
    }

    async fn readings(
        &self,
        station: &StationId,
        parameter: Parameter,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<Point>> {
        let Some(series) = self.series_id(station, parameter).await? else {
            return Ok(Vec::new());
        };
        if self.backend == Backend::Sqlite {
            // sqlx hands SQLite rows over one at a time from a worker thread, and for long
            // ranges the context switches cost more than the query (half the server's time for
            // a year of hourly data). So SQLite packs the range into one text value; `%!.17g`
            // (`!` lifts SQLite's 16-digit cap) round-trips every f64 exactly.
            let packed: Option<String> = sqlx::query_scalar(
                "SELECT group_concat(ts || ',' || printf('%!.17g', value) || ',' || flag, ';' ORDER BY ts) \
                 FROM (SELECT ts, value, flag FROM readings \
                       WHERE series_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4)",
            )
            .bind(series)
            .bind(from)
            .bind(to)
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await?;
            return packed.as_deref().map_or(Ok(Vec::new()), unpack_points);
        }
        let rows = sqlx::query(
            "SELECT ts, value, flag FROM readings WHERE series_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4",
        )
        .bind(series)
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Point {
                    ts: row.try_get("ts")?,
                    value: row.try_get("value")?,
                    flag: QualityFlag::from_i16(row.try_get::<i64, _>("flag")? as i16),
                })
            })
            .collect()
    }

    async fn recent(&self, window_seconds: i64) -> Result<Vec<RecentSeries>> {
        let rows = sqlx::query(
            "SELECT s.station_id, s.parameter, s.period_s, r.ts, r.value, r.flag \
             FROM series s JOIN stations st ON st.id = s.station_id \
             JOIN readings r ON r.series_id = s.id \
             WHERE st.active = 1 AND s.last_ts IS NOT NULL AND r.ts > s.last_ts - $1 \
             ORDER BY s.station_id, s.parameter, r.ts",
        )
        .bind(window_seconds)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<RecentSeries> = Vec::new();
        for row in &rows {
            let station: String = row.try_get("station_id")?;
            let param = parameter(&row.try_get::<String, _>("parameter")?)?;
            let point = Point {
                ts: row.try_get("ts")?,
                value: row.try_get("value")?,
                flag: QualityFlag::from_i16(row.try_get::<i64, _>("flag")? as i16),
            };
            match out.last_mut() {
                Some(last) if last.station.as_str() == station && last.parameter == param => {
                    last.points.push(point)
                }
                _ => out.push(RecentSeries {
                    station: station_id(station)?,
                    parameter: param,
                    period_seconds: row.try_get("period_s")?,
                    points: vec![point],
                }),
            }
        }
        Ok(out)
    }

    async fn count_readings(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn insert_device_key(&self, key: &DeviceKey) -> Result<()> {
        let _turn = self.write_turn().await;
        let result = sqlx::query(
            "INSERT INTO device_keys (prefix, station_id, secret_hash, label, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.prefix)
        .bind(key.station.as_str())
        .bind(&key.secret_hash)
        .bind(key.label.as_deref())
        .bind(key.created_at.timestamp())
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(StoreError::UnknownStation(key.station.clone()))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn device_key(&self, prefix: &str) -> Result<Option<DeviceKey>> {
        let sql = format!("SELECT {DEVICE_KEY_COLUMNS} FROM device_keys WHERE prefix = $1");
        let row = resilience::retry(
            &self.resilience,
            self.timed(),
            "reading a device key",
            || {
                sqlx::query(&sql)
                    .bind(prefix)
                    .fetch_optional(&self.pool)
                    .map_err(StoreError::from)
            },
        )
        .await?;
        row.as_ref().map(device_key_from_row).transpose()
    }

    async fn device_keys(&self, station: &StationId) -> Result<Vec<DeviceKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_KEY_COLUMNS} FROM device_keys WHERE station_id = $1 ORDER BY created_at, prefix"
        ))
        .bind(station.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_key_from_row).collect()
    }

    async fn touch_device_key(&self, prefix: &str, at: DateTime<Utc>) -> Result<()> {
        let _turn = self.write_turn().await;
        resilience::retry(
            &self.resilience,
            self.timed(),
            "recording a key's use",
            || async {
                sqlx::query("UPDATE device_keys SET last_used_at = $1 WHERE prefix = $2")
                    .bind(at.timestamp())
                    .bind(prefix)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            },
        )
        .await
    }

    async fn revoke_device_key(&self, prefix: &str, at: DateTime<Utc>) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE device_keys SET revoked_at = $1 WHERE prefix = $2 AND revoked_at IS NULL",
        )
        .bind(at.timestamp())
        .bind(prefix)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
