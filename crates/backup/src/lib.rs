//! EcoCityHub's automatic backups — the RDS snapshot layer.
//!
//! The database is treated as an outside service, the way `pg_dump` treats it: [`Backups`]
//! opens its own connection from the database URL and never goes through the store.
//!
//! - **SQLite**: `VACUUM INTO` a temporary file (a consistent snapshot while the server keeps
//!   writing), compressed with zstd ([`Kind::SqliteSnapshot`]).
//! - **PostgreSQL**: `pg_dump -Fc` of the database ([`Kind::PgDump`]), taken in an exported
//!   snapshot so that the row counts of the manifest are those of the dump.
//!
//! Each backup is two blobs of the (envelope-encrypted) blob store: `backups/{id}/data` and
//! `backups/{id}/manifest.json` ([`Manifest`]: time, size, SHA-256, schema version, row counts,
//! tool versions), written in that order, so a backup exists once its manifest does. The id is
//! sortable: UTC time and a short random part ([`BackupId`]).
//!
//! [`Backups::verify`] checks the SHA-256 and restores into a scratch database (a temporary
//! SQLite file, or `ecocityhub_verify_…` on the same PostgreSQL server, dropped after) to compare
//! row counts; [`Backups::restore`] writes into an empty target (or over one when forced);
//! [`Retention`] keeps what RDS would and [`Backups::prune`] deletes the rest. [`BackupConfig`]
//! is the `[backup]` table of the configuration file, with the schedule `serve` follows.
//!
//! Point-in-time recovery on PostgreSQL ([`Kind::PgBase`] and [`WalArchive`]): a base backup
//! of the server (`pg_basebackup`, checked by `pg_verifybackup`), the server's `archive_command`
//! pushing every WAL segment into `backups/wal/`, and [`Backups::recover`] unpacking the newest
//! base backup taken before the chosen time into a new data directory whose `restore_command`
//! fetches the segments back and stops replay just before that time.

mod backups;
mod base;
pub mod config;
pub mod database;
pub mod manifest;
mod postgres;
pub mod retention;
mod sqlite;
pub mod wal;

pub use backups::{Backups, Pruned, Recovered, Verified};
pub use base::RecoveryTarget;
pub use config::{BackupConfig, PgMethod, Schedule};
pub use database::Database;
pub use manifest::{BackupId, Kind, Manifest};
pub use retention::Retention;
pub use wal::{Pushed, WalArchive, WalName};

/// What can go wrong taking, checking or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot back up {0:?}: only sqlite:// files and postgres:// databases are supported")]
    UnsupportedUrl(String),
    #[error("{0:?} is not a backup id (like 20260105T031500Z-3fa9c1)")]
    InvalidId(String),
    #[error("there is no backup {0}")]
    NotFound(String),
    /// The stored data is not what the manifest describes: damaged, truncated or altered.
    #[error("backup {id} is damaged and was refused: {reason}")]
    Damaged { id: String, reason: String },
    /// The data restored but does not hold what the manifest counted.
    #[error("backup {id} does not match its manifest: {reason}")]
    Mismatch { id: String, reason: String },
    #[error("the manifest of backup {id} is not valid: {reason}")]
    BadManifest { id: String, reason: String },
    #[error(
        "refusing to restore into {target}: it is not empty ({what}); use --force to replace it"
    )]
    NotEmpty { target: String, what: String },
    #[error("backup {id} is a {kind} and cannot be restored into {backend}")]
    WrongBackend {
        id: String,
        kind: &'static str,
        backend: &'static str,
    },
    #[error("cannot run {tool}: {reason}")]
    ToolMissing { tool: String, reason: String },
    #[error("{tool} failed: {message}")]
    Tool { tool: String, message: String },
    // The causes below are part of the message and not also `source()`, so that a chain
    // printed whole (anyhow's `{:#}`) does not say them twice.
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("blob store: {0}")]
    Blobs(ecocityhub_blobs::BlobError),
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
    #[error("backup configuration: {0}")]
    Config(String),
    #[error("{0:?} is not the name of a WAL file (like 000000010000000000000002)")]
    InvalidWalName(String),
    /// A WAL file cannot be archived under its name.
    #[error("WAL file {name} was not archived: {reason}")]
    WalConflict { name: String, reason: String },
    #[error("no base backup (backup create --kind base) finished before {until}; point-in-time recovery starts from one")]
    NoBaseBackup { until: String },
    #[error("backup {id} is a base backup: recover from it with `backup recover --pgdata DIR`")]
    NeedsRecovery { id: String },
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> BackupError {
        BackupError::Database(e)
    }
}

impl From<ecocityhub_blobs::BlobError> for BackupError {
    fn from(e: ecocityhub_blobs::BlobError) -> BackupError {
        BackupError::Blobs(e)
    }
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// An I/O error with what was being done.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = context.into();
    move |error| BackupError::Io { context, error }
}
