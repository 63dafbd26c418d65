//! EcoCityHub's store — the RDS layer.
//!
//! One async trait, [`Store`], is all the rest of the platform sees. [`SqlStore`] implements it
//! on two backends chosen by URL: an SQLite file (the embedded default, WAL) and PostgreSQL
//! (`postgres://…`, RDS in AWS). Each backend has its own migrations under `migrations/<backend>`;
//! queries are written once in the SQL both understand.

pub mod identity;
pub mod ml;
pub mod notify;
pub mod observe;
pub mod reports;
pub mod resilience;
mod sql;
mod sql_identity;
mod sql_ml;
mod sql_notify;
mod sql_observe;
mod sql_reports;
pub mod testing;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecocityhub_domain::{Parameter, QualityFlag, Reading, Station, StationId};

pub use identity::IdentityStore;
pub use ml::MlStore;
pub use notify::NotifyStore;
pub use observe::ObserveStore;
pub use reports::ReportStore;
pub use resilience::Resilience;
pub use sql::{Backend, SqlStore};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database cannot take the call now (a failover, a restart, a hung primary, a full
    /// disk, a lock): nothing of it was acknowledged, and trying again shortly may succeed.
    #[error("the database is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("migration failed: {0}")]
    Migration(sqlx::migrate::MigrateError),
    /// The database was migrated by a newer EcoCityHub than this one.
    #[error(
        "the database has schema version {database}, newer than this binary knows (it knows up \
         to {known}): run the EcoCityHub version that migrated it, or restore a backup made \
         for this one"
    )]
    SchemaTooNew { database: i64, known: i64 },
    #[error("station {0} does not exist")]
    UnknownStation(StationId),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Whether the call may succeed if tried again shortly (see [`resilience`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match resilience::classify(&error) {
            Some(reason) => StoreError::Unavailable { reason },
            None => StoreError::Database(error),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError as M;
        match error {
            M::Execute(e) | M::ExecuteMigration(e, _) if resilience::classify(&e).is_some() => {
                e.into()
            }
            other => StoreError::Migration(other),
        }
    }
}

/// One stored value of a series, as the store hands it out: `(epoch seconds, value, flag)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts: i64,
    pub value: f64,
    pub flag: QualityFlag,
}

/// What a write of readings did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Distinct (station, parameter, time) rows in the write (a repeated row counts once; the
    /// last one wins).
    pub rows: u64,
    /// Rows that were new, or replaced a stored reading with another value or flag.
    pub changed: u64,
}

impl Written {
    /// Rows that were stored already exactly as sent.
    pub fn unchanged(&self) -> u64 {
        self.rows - self.changed
    }
}

/// A (station, parameter) series and the span of its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    pub station: StationId,
    pub parameter: Parameter,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// Averaging period of each value in seconds, when known (86400 for daily means).
    pub period_seconds: Option<i64>,
}

/// The recent readings of one series, ending at its latest reading.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentSeries {
    pub station: StationId,
    pub parameter: Parameter,
    /// Averaging period of each value in seconds, when known.
    pub period_seconds: Option<i64>,
    /// Time-ordered, the last one is the latest reading.
    pub points: Vec<Point>,
}

/// A device API key as stored: the prefix is public, the secret only as its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceKey {
    pub prefix: String,
    pub station: StationId,
    pub secret_hash: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Everything the platform stores: stations, readings and device keys here, users and tokens
/// through [`IdentityStore`], models and training jobs through [`MlStore`], notifications
/// through [`NotifyStore`], metrics rollups, alarms and the audit trail through
/// [`ObserveStore`], citizen reports through [`ReportStore`].
#[async_trait]
pub trait Store:
    IdentityStore + MlStore + NotifyStore + ObserveStore + ReportStore + Send + Sync + 'static
{
    /// Which backend this is, for logs and health checks.
    fn backend(&self) -> Backend;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<()>;

    /// Creates the station or replaces its fields.
    async fn upsert_station(&self, station: &Station) -> Result<()>;

    /// Creates the station unless one with its id exists. Returns whether it was created.
    async fn insert_station_if_missing(&self, station: &Station) -> Result<bool>;

    async fn station(&self, id: &StationId) -> Result<Option<Station>>;

    /// All stations, ordered by id.
    async fn stations(&self) -> Result<Vec<Station>>;

    /// Every series with the span of its readings.
    async fn series(&self) -> Result<Vec<SeriesInfo>>;

    /// Stores readings in one transaction; an existing reading with the same station,
    /// parameter and time is replaced when its value or flag differ and left alone when they do
    /// not (idempotent re-sends). Says how many rows were new or changed and how many were
    /// already stored as sent. Fails as a whole, storing nothing, if a station does not exist.
    async fn insert_readings(&self, readings: &[Reading]) -> Result<Written>;

    /// Records the averaging period of a series' values (an import learns it from the file).
    async fn set_series_period(
        &self,
        station: &StationId,
        parameter: Parameter,
        seconds: i64,
    ) -> Result<()>;

    /// Sets the flag of one stored reading (an operator confirming a suspect reading valid, or
    /// marking one invalid); returns the flag it had, `None` if there is no such reading.
    async fn set_reading_flag(
        &self,
        station: &StationId,
        parameter: Parameter,
        ts: i64,
        flag: QualityFlag,
    ) -> Result<Option<QualityFlag>>;

    /// Readings of one series with `from <= ts < to`, in time order, at most `limit`.
    async fn readings(
        &self,
        station: &StationId,
        parameter: Parameter,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<Point>>;

    /// For every series of every active station, the readings within `window_seconds` before
    /// and including its latest reading.
    async fn recent(&self, window_seconds: i64) -> Result<Vec<RecentSeries>>;

    /// Number of readings stored (for status and tests).
    async fn count_readings(&self) -> Result<u64>;

    async fn insert_device_key(&self, key: &DeviceKey) -> Result<()>;

    async fn device_key(&self, prefix: &str) -> Result<Option<DeviceKey>>;

    async fn device_keys(&self, station: &StationId) -> Result<Vec<DeviceKey>>;

    /// Records a successful use of the key.
    async fn touch_device_key(&self, prefix: &str, at: DateTime<Utc>) -> Result<()>;

    /// Revokes the key; returns false if there was no such key.
    async fn revoke_device_key(&self, prefix: &str, at: DateTime<Utc>) -> Result<bool>;
}

/// Opens the store for a database URL: `sqlite://PATH` (created if missing) or `postgres://…`.
pub async fn connect(url: &str) -> Result<SqlStore> {
    SqlStore::connect(url).await
}
