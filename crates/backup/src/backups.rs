//! [`Backups`]: create, list, verify, restore and prune backups in a blob store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ecocityhub_blobs::{BlobError, BlobStore};

use crate::base::{self, RecoveryTarget};
use crate::config::{BackupConfig, PgMethod};
use crate::database::Database;
use crate::manifest::{self, BackupId, Kind, Manifest, FORMAT, PREFIX};
use crate::postgres::{self, Tools};
use crate::retention::{Reason, Retention};
use crate::wal::{WalArchive, WalName};
use crate::{sqlite, BackupError, Result};

/// Data of a backup without a manifest (a backup that died half-way) is deleted by `prune`
/// once it is this old: no backup takes this long.
const ORPHAN_AGE: chrono::Duration = chrono::Duration::days(2);

/// The backups of one blob store.
#[derive(Clone)]
pub struct Backups {
    blobs: Arc<dyn BlobStore>,
    config: BackupConfig,
}

/// What a backup took, before it is stored.
struct Taken {
    kind: Kind,
    data: Vec<u8>,
    database_size: u64,
    tables: std::collections::BTreeMap<String, i64>,
    schema_version: i64,
    tools: std::collections::BTreeMap<String, String>,
    wal_start: Option<String>,
}

/// A data directory made ready for point-in-time recovery.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The base backup it starts from.
    pub base: Manifest,
    /// The archived WAL files at the time (the recovery replays those it needs).
    pub wal_files: usize,
}

/// A backup that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub elapsed: Duration,
}

/// What `prune` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Pruned {
    /// Kept, newest first, with why.
    pub kept: Vec<(BackupId, Reason)>,
    /// Deleted, newest first.
    pub deleted: Vec<BackupId>,
    /// Ids whose data had no manifest and was deleted.
    pub orphans: Vec<BackupId>,
    /// Archived WAL files no kept base backup needs, deleted.
    pub wal_deleted: Vec<WalName>,
}

/// A blob store's "damaged" becomes the backup's.
fn damaged(id: &BackupId, what: &str) -> impl FnOnce(BlobError) -> BackupError {
    let id = id.to_string();
    let what = what.to_string();
    move |e| match e {
        BlobError::Tampered { reason, .. } => BackupError::Damaged {
            id,
            reason: format!("the stored {what} does not decrypt: {reason}"),
        },
        other => BackupError::Blobs(other),
    }
}

impl Backups {
    /// Backups in `blobs` (the encrypted store `serve` uses), taken as `config` says.
    pub fn new(blobs: Arc<dyn BlobStore>, config: BackupConfig) -> Backups {
        Backups { blobs, config }
    }

    /// The WAL archive in the same blob store.
    pub fn wal(&self) -> WalArchive {
        WalArchive::new(self.blobs.clone())
    }

    fn tools(&self) -> Tools {
        Tools {
            bin_dir: self.config.pg_bin_dir.clone(),
        }
    }

    /// Takes a backup of `db` now and stores it; its manifest. On PostgreSQL it is a pg_dump,
    /// or a base backup when `[backup] postgres = "base"`.
    pub async fn create(&self, db: &Database) -> Result<Manifest> {
        match (db, self.config.postgres) {
            (Database::Postgres { .. }, PgMethod::Base) => self.create_base(db).await,
            _ => self.create_snapshot(db).await,
        }
    }

    /// Takes a snapshot of the data (SQLite: VACUUM INTO; PostgreSQL: pg_dump) and stores it.
    pub async fn create_snapshot(&self, db: &Database) -> Result<Manifest> {
        let started = Instant::now();
        let created_at = Utc::now();
        let id = BackupId::new(created_at);
        tracing::info!(backup = %id, database = %db.describe(), "taking a backup");
        let taken = match db {
            Database::Sqlite { path } => {
                let t = sqlite::snapshot(path, self.config.zstd_level).await?;
                Taken {
                    kind: Kind::SqliteSnapshot,
                    database_size: t.database_size,
                    data: t.data,
                    tables: t.tables,
                    schema_version: t.schema_version,
                    tools: t.tools,
                    wal_start: None,
                }
            }
            Database::Postgres { url } => {
                let t = postgres::dump(url, &self.tools()).await?;
                Taken {
                    kind: Kind::PgDump,
                    database_size: t.data.len() as u64,
                    data: t.data,
                    tables: t.tables,
                    schema_version: t.schema_version,
                    tools: t.tools,
                    wal_start: None,
                }
            }
        };
        self.store(id, created_at, started, db, taken).await
    }

    /// Takes a base backup of the PostgreSQL server of `db` for point-in-time recovery (its
    /// `archive_command` must push WAL with `backup wal-push` to the same blob store).
    pub async fn create_base(&self, db: &Database) -> Result<Manifest> {
        let Database::Postgres { url } = db else {
            return Err(BackupError::Config(
                "a base backup is of a PostgreSQL server; SQLite backups are snapshots (backup create)".into(),
            ));
        };
        let started = Instant::now();
        let created_at = Utc::now();
        let id = BackupId::new(created_at);
        tracing::info!(backup = %id, database = %db.describe(), "taking a base backup");
        let label = format!("ecocityhub {id}");
        let t = base::take(url, &self.tools(), &label, self.config.zstd_level).await?;
        let taken = Taken {
            kind: Kind::PgBase,
            database_size: t.raw_size,
            data: t.data,
            tables: Default::default(),
            schema_version: t.schema_version,
            tools: t.tools,
            wal_start: Some(t.wal_start.to_string()),
        };
        self.store(id, created_at, started, db, taken).await
    }

    /// Stores what was taken: the data, then the manifest (a backup exists once it has one).
    async fn store(
        &self,
        id: BackupId,
        created_at: DateTime<Utc>,
        started: Instant,
        db: &Database,
        taken: Taken,
    ) -> Result<Manifest> {
        let Taken {
            kind,
            data,
            database_size,
            tables,
            schema_version,
            mut tools,
            wal_start,
        } = taken;
        tools.insert("ecocityhub-backup".into(), env!("CARGO_PKG_VERSION").into());
        let manifest = Manifest {
            format: FORMAT,
            id: id.clone(),
            created_at,
            backend: db.backend().into(),
            kind,
            size: data.len() as u64,
            database_size,
            sha256: manifest::sha256_hex(&data),
            schema_version,
            tables,
            tools,
            duration_ms: 0,
            wal_start,
        };
        self.blobs.put(&id.data_key(), Bytes::from(data)).await?;
        let manifest = Manifest {
            duration_ms: started.elapsed().as_millis() as u64,
            ..manifest
        };
        self.blobs
            .put(&id.manifest_key(), Bytes::from(manifest.to_json()))
            .await?;
        tracing::info!(
            backup = %id,
            kind = kind.name(),
            bytes = manifest.size,
            rows = manifest.total_rows(),
            ms = manifest.duration_ms,
            "backup stored"
        );
        Ok(manifest)
    }

    /// Every backup with a manifest, oldest first.
    pub async fn list(&self) -> Result<Vec<Manifest>> {
        let mut manifests = Vec::new();
        for id in self.ids().await?.0 {
            manifests.push(self.manifest(&id).await?);
        }
        Ok(manifests)
    }

    /// The ids with a manifest, and those with only data, sorted.
    async fn ids(&self) -> Result<(Vec<BackupId>, Vec<BackupId>)> {
        let (mut complete, mut partial) = (Vec::new(), Vec::new());
        for key in self.blobs.list(PREFIX).await? {
            let mut parts = key.split('/').skip(1);
            let (Some(id), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(id) = BackupId::parse(id) else {
                continue;
            };
            match file {
                "manifest.json" => complete.push(id),
                "data" => partial.push(id),
                _ => {}
            }
        }
        complete.sort();
        complete.dedup();
        partial.retain(|id| !complete.contains(id));
        partial.sort();
        Ok((complete, partial))
    }

    /// The manifest of backup `id`.
    pub async fn manifest(&self, id: &BackupId) -> Result<Manifest> {
        let bytes = self
            .blobs
            .get(&id.manifest_key())
            .await
            .map_err(damaged(id, "manifest"))?
            .ok_or_else(|| BackupError::NotFound(id.to_string()))?;
        Manifest::from_json(id, &bytes)
    }

    /// The newest backup's manifest, if there is one.
    pub async fn newest(&self) -> Result<Option<Manifest>> {
        match self.ids().await?.0.last() {
            Some(id) => self.manifest(id).await.map(Some),
            None => Ok(None),
        }
    }

    /// The manifest and the data of backup `id`, the data checked against the manifest.
    async fn fetch(&self, id: &BackupId) -> Result<(Manifest, Bytes)> {
        let manifest = self.manifest(id).await?;
        let data = self
            .blobs
            .get(&id.data_key())
            .await
            .map_err(damaged(id, "data"))?
            .ok_or_else(|| BackupError::Damaged {
                id: id.to_string(),
                reason: "its data is missing".into(),
            })?;
        manifest.check_data(&data)?;
        Ok((manifest, data))
    }

    /// Checks backup `id`: its SHA-256, then a restore into a scratch database (a temporary
    /// SQLite file, or a database made and dropped on the PostgreSQL server of `server`) whose
    /// row counts must be the manifest's.
    pub async fn verify(&self, id: &BackupId, server: &Database) -> Result<Verified> {
        let started = Instant::now();
        let (manifest, data) = self.fetch(id).await?;
        match (manifest.kind, server) {
            (Kind::SqliteSnapshot, _) => sqlite::verify(&manifest, data).await?,
            (Kind::PgDump, Database::Postgres { url }) => {
                postgres::verify(&manifest, data, url, &self.tools()).await?
            }
            (Kind::PgDump, Database::Sqlite { .. }) => {
                return Err(BackupError::Config(format!(
                    "backup {id} is a pg_dump: verifying it needs a PostgreSQL server (--database-url postgres://…) to make a scratch database on"
                )));
            }
            (Kind::PgBase, _) => base::verify(id.as_str(), data, &self.tools()).await?,
        }
        tracing::info!(backup = %id, ms = started.elapsed().as_millis() as u64, "backup verified");
        Ok(Verified {
            manifest,
            elapsed: started.elapsed(),
        })
    }

    /// Restores backup `id` into `target`, which must be empty (no file, no tables) unless
    /// `force`.
    pub async fn restore(&self, id: &BackupId, target: &Database, force: bool) -> Result<Manifest> {
        let (manifest, data) = self.fetch(id).await?;
        match (manifest.kind, target) {
            (Kind::SqliteSnapshot, Database::Sqlite { path }) => {
                sqlite::restore(&manifest, data, path, force).await?
            }
            (Kind::PgDump, Database::Postgres { url }) => {
                postgres::restore(&manifest, data, url, force, &self.tools()).await?
            }
            (Kind::PgBase, _) => return Err(BackupError::NeedsRecovery { id: id.to_string() }),
            (kind, target) => {
                return Err(BackupError::WrongBackend {
                    id: id.to_string(),
                    kind: kind.name(),
                    backend: target.backend(),
                })
            }
        }
        tracing::info!(backup = %id, target = %target.describe(), force, "backup restored");
        Ok(manifest)
    }

    /// Deletes the backups `retention` does not keep at `now`, and data left without a
    /// manifest for long. With `dry_run`, only says what it would delete.
    pub async fn prune(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Pruned> {
        let (complete, partial) = self.ids().await?;
        let mut dated = Vec::with_capacity(complete.len());
        for id in complete {
            let created_at = self.manifest(&id).await.map_or(id.time(), |m| m.created_at);
            dated.push((id, created_at));
        }
        let plan = retention.plan(&dated, now);
        let orphans: Vec<BackupId> = partial
            .into_iter()
            .filter(|id| now - id.time() > ORPHAN_AGE)
            .collect();
        if !dry_run {
            for id in plan.delete.iter().chain(&orphans) {
                // The manifest first: a backup without one no longer exists.
                self.blobs.delete(&id.manifest_key()).await?;
                self.blobs.delete(&id.data_key()).await?;
                tracing::info!(backup = %id, "backup deleted by the retention policy");
            }
        }
        let wal_deleted = self.prune_wal(&plan.keep, dry_run).await?;
        Ok(Pruned {
            kept: plan.keep,
            deleted: plan.delete,
            orphans,
            wal_deleted,
        })
    }

    /// Deletes the archived WAL older than the oldest kept base backup needs; nothing while no
    /// base backup is kept (a recovery could not start anyway, and one may be on its way).
    async fn prune_wal(&self, kept: &[(BackupId, Reason)], dry_run: bool) -> Result<Vec<WalName>> {
        let mut oldest: Option<WalName> = None;
        for (id, _) in kept {
            let manifest = self.manifest(id).await?;
            let Some(start) = manifest.wal_start.as_deref() else {
                continue;
            };
            let start = WalName::parse(start)?;
            if oldest
                .as_ref()
                .is_none_or(|o| start.position() < o.position())
            {
                oldest = Some(start);
            }
        }
        match oldest {
            Some(oldest) => self.wal().prune_before(&oldest, dry_run).await,
            None => Ok(Vec::new()),
        }
    }

    /// Makes `pgdata` a data directory that recovers to `target.until`: the newest base backup
    /// that had finished by then, unpacked and set up to replay the WAL archive and stop just
    /// before the first transaction committed after that time, then open for writes. Start
    /// PostgreSQL on it to recover.
    pub async fn recover(
        &self,
        target: &RecoveryTarget<'_>,
        pgdata: &std::path::Path,
        force: bool,
    ) -> Result<Recovered> {
        let until = target.until.unwrap_or_else(Utc::now);
        let mut base = None;
        for manifest in self.list().await? {
            let finished =
                manifest.created_at + chrono::Duration::milliseconds(manifest.duration_ms as i64);
            if manifest.kind == Kind::PgBase && finished <= until {
                base = Some(manifest);
            }
        }
        let base = base.ok_or_else(|| BackupError::NoBaseBackup {
            until: until.to_rfc3339(),
        })?;
        let (base, data) = self.fetch(&base.id).await?;
        base::unpack_for_recovery(base.id.as_str(), data, pgdata, target, force).await?;
        let wal_files = self.wal().names().await?.len();
        tracing::info!(backup = %base.id, pgdata = %pgdata.display(), wal_files, "data directory ready to recover");
        Ok(Recovered { base, wal_files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecocityhub_blobs::ObjectBlobs;

    fn backups() -> (Backups, Arc<dyn BlobStore>) {
        let blobs: Arc<dyn BlobStore> = Arc::new(ObjectBlobs::in_memory());
        (Backups::new(blobs.clone(), BackupConfig::default()), blobs)
    }

    /// An SQLite database with two tables and some rows, as a file in `dir`.
    async fn sample_database(dir: &std::path::Path) -> Database {
        use sqlx::{Connection, Executor};
        let path = dir.join("live.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        conn.execute(
            "PRAGMA journal_mode = WAL; \
             CREATE TABLE _sqlx_migrations (version INTEGER PRIMARY KEY, success BOOLEAN NOT NULL); \
             INSERT INTO _sqlx_migrations VALUES (1, 1), (2, 1), (3, 0); \
             CREATE TABLE readings (ts INTEGER PRIMARY KEY, value REAL NOT NULL); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO readings SELECT i, i * 0.5 FROM n;",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
        Database::Sqlite { path }
    }

    #[tokio::test]
    async fn an_sqlite_backup_verifies_and_restores_into_an_empty_place_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = sample_database(dir.path()).await;
        let (backups, _) = backups();
        let manifest = backups.create(&db).await.unwrap();
        assert_eq!(manifest.kind, Kind::SqliteSnapshot);
        assert_eq!(
            manifest.schema_version, 2,
            "the newest successful migration"
        );
        assert_eq!(manifest.tables["readings"], 5000);
        assert!(manifest.tools.contains_key("sqlite"));
        assert!(manifest.size < manifest.database_size, "compressed");
        assert_eq!(backups.list().await.unwrap(), vec![manifest.clone()]);
        assert_eq!(backups.newest().await.unwrap(), Some(manifest.clone()));

        backups.verify(&manifest.id, &db).await.unwrap();

        let target = Database::Sqlite {
            path: dir.path().join("restored/new.db"),
        };
        backups.restore(&manifest.id, &target, false).await.unwrap();
        let err = backups
            .restore(&manifest.id, &target, false)
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty { .. }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        backups.restore(&manifest.id, &target, true).await.unwrap();
        let err = backups.restore(&manifest.id, &db, false).await.unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty { .. }), "{err}");

        let pg = Database::from_url("postgres://u@h/db").unwrap();
        let err = backups.restore(&manifest.id, &pg, true).await.unwrap_err();
        assert!(
            err.to_string().contains("cannot be restored into postgres"),
            "{err}"
        );
        let missing = BackupId::new(Utc::now());
        let err = backups.verify(&missing, &db).await.unwrap_err();
        assert!(matches!(err, BackupError::NotFound(_)), "{err}");
    }

    #[tokio::test]
    async fn damaged_and_truncated_data_is_refused_by_verify_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let db = sample_database(dir.path()).await;
        let (backups, blobs) = backups();
        let manifest = backups.create(&db).await.unwrap();
        let key = manifest.id.data_key();
        let good = blobs.get(&key).await.unwrap().unwrap();
        let target = Database::Sqlite {
            path: dir.path().join("never.db"),
        };

        let mut flipped = good.to_vec();
        flipped[good.len() / 2] ^= 0x40;
        blobs.put(&key, flipped.into()).await.unwrap();
        let err = backups.verify(&manifest.id, &db).await.unwrap_err();
        assert!(matches!(err, BackupError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("SHA-256"), "{err}");
        let err = backups
            .restore(&manifest.id, &target, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{err}");

        blobs
            .put(&key, good.slice(..good.len() - 100))
            .await
            .unwrap();
        let err = backups.verify(&manifest.id, &db).await.unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        blobs.delete(&key).await.unwrap();
        let err = backups.verify(&manifest.id, &db).await.unwrap_err();
        assert!(err.to_string().contains("data is missing"), "{err}");
        assert!(!std::path::Path::new(&dir.path().join("never.db")).exists());
    }

    #[tokio::test]
    async fn data_that_matches_a_wrong_manifest_is_caught_by_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let db = sample_database(dir.path()).await;
        let (backups, blobs) = backups();
        let mut manifest = backups.create(&db).await.unwrap();
        manifest.tables.insert("readings".into(), 5001);
        blobs
            .put(&manifest.id.manifest_key(), manifest.to_json().into())
            .await
            .unwrap();
        let err = backups.verify(&manifest.id, &db).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("readings: 5000 rows, expected 5001"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn prune_deletes_what_retention_does_not_keep_and_old_orphans() {
        let (backups, blobs) = backups();
        let now = Utc::now();
        let mut ids = Vec::new();
        for days in [0, 1, 20, 60] {
            let at = now - chrono::Duration::days(days);
            let id = BackupId::new(at);
            let mut manifest = manifest::tests::sample(b"x");
            manifest.id = id.clone();
            manifest.created_at = at;
            blobs
                .put(&id.data_key(), Bytes::from_static(b"x"))
                .await
                .unwrap();
            blobs
                .put(&id.manifest_key(), manifest.to_json().into())
                .await
                .unwrap();
            ids.push(id);
        }
        let orphan = BackupId::new(now - chrono::Duration::days(3));
        blobs
            .put(&orphan.data_key(), Bytes::from_static(b"x"))
            .await
            .unwrap();
        let fresh = BackupId::new(now);
        blobs
            .put(&fresh.data_key(), Bytes::from_static(b"x"))
            .await
            .unwrap();

        let retention = Retention::new(7, 0).unwrap();
        let dry = backups.prune(&retention, now, true).await.unwrap();
        assert_eq!(dry.deleted, vec![ids[2].clone(), ids[3].clone()]);
        assert_eq!(
            backups.list().await.unwrap().len(),
            4,
            "a dry run deletes nothing"
        );

        let pruned = backups.prune(&retention, now, false).await.unwrap();
        assert_eq!(pruned.deleted, dry.deleted);
        assert_eq!(pruned.orphans, vec![orphan.clone()]);
        let left: Vec<BackupId> = backups
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(left, vec![ids[1].clone(), ids[0].clone()]);
        assert!(blobs.get(&orphan.data_key()).await.unwrap().is_none());
        assert!(
            blobs.get(&fresh.data_key()).await.unwrap().is_some(),
            "maybe in progress"
        );
    }
}
