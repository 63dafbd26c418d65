//! `ecocityhub backup …`: backups of the database into the blob store by hand (`create`,
//! `list`, `verify`, `restore`, `prune`), through `ecocityhub_backup`, with the storage flags of
//! `serve`; point-in-time recovery on PostgreSQL (`wal-push` as the server's archive_command,
//! `wal-fetch` as its restore_command, `recover` to make a data directory that replays to a
//! time); and [`scheduled`], the task `serve` runs to take backups on the `[backup]` schedule.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use ecocityhub_backup::{
    BackupConfig, BackupId, Backups, Database, Manifest, Pushed, RecoveryTarget, Retention,
};

use crate::config::{self, FileConfig};
use crate::{open_blobs, StorageArgs};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take a backup now (SQLite: a snapshot while the server may be writing, compressed;
    /// PostgreSQL: pg_dump -Fc, or with --base a base backup). Prints the new backup's id last.
    Create {
        /// PostgreSQL: a base backup of the whole server (pg_basebackup), the start of a
        /// point-in-time recovery with the WAL archive, instead of a pg_dump of the database.
        #[arg(long)]
        base: bool,
    },
    /// Archive one WAL file into the blob store: PostgreSQL's archive_command, e.g.
    /// `archive_command = 'ecocityhub backup wal-push %p %f --data-dir /srv/ecocityhub'`.
    /// The same file pushed again succeeds (a promoted standby re-archives); a different file
    /// under the same name is refused.
    WalPush {
        /// The file (%p: relative to the server's data directory, where it runs the command).
        path: PathBuf,
        /// Its name (%f), like 000000010000000000000002.
        name: String,
    },
    /// Write one archived WAL file: the restore_command `backup recover` sets. Exits 1 when
    /// the archive does not hold it (how a recovery finds the archive's end).
    WalFetch {
        /// The file's name (%f).
        name: String,
        /// Where to write it (%p).
        path: PathBuf,
    },
    /// Make a PostgreSQL data directory that recovers to a point in time: the newest base
    /// backup finished by then, set to replay the WAL archive, stop just before the first
    /// transaction committed after --until and take writes. Start PostgreSQL on it to recover.
    Recover {
        /// The new data directory (absent or empty unless --force).
        #[arg(long, value_name = "DIR")]
        pgdata: PathBuf,
        /// Recover to this time (RFC 3339, like 2026-12-03T08:15:00Z). Default: replay all
        /// that is archived.
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        until: Option<DateTime<Utc>>,
        /// Replace what the directory holds (no server may be running on it).
        #[arg(long)]
        force: bool,
    },
    /// List the backups, oldest first.
    List {
        /// Print the manifests as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a backup: its SHA-256, then a restore into a scratch database (a temporary file,
    /// or a database made and dropped on the PostgreSQL server) whose row counts must match.
    Verify {
        /// The backup's id (see `backup list`).
        #[arg(value_parser = parse_id)]
        id: BackupId,
    },
    /// Restore a backup into the database the flags name. It must be empty (no SQLite file, no
    /// PostgreSQL tables) unless --force; stop any server using it first.
    Restore {
        /// The backup's id (see `backup list`).
        #[arg(value_parser = parse_id)]
        id: BackupId,
        /// Replace what is there (SQLite: the file; PostgreSQL: pg_restore --clean --if-exists).
        #[arg(long)]
        force: bool,
    },
    /// Delete the backups the retention policy does not keep (every backup younger than the
    /// retention period, plus the newest of each of the last weekly calendar weeks).
    Prune {
        /// Keep every backup younger than this many days (1 to 35). Default: [backup]
        /// retention_days, else 7.
        #[arg(long)]
        retention_days: Option<u32>,
        /// Also keep the newest backup of each of this many calendar weeks before the current
        /// one. Default: [backup] weekly, else 4.
        #[arg(long)]
        weekly: Option<u32>,
        /// Only print what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Print what was kept and deleted as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_id(text: &str) -> Result<BackupId, String> {
    BackupId::parse(text).map_err(|e| e.to_string())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2026-12-03T08:15:00Z: {e}"))
}

/// The database the storage flags, environment and file name.
pub fn database(storage: &StorageArgs, file: &FileConfig) -> Result<Database> {
    let url = config::database_url(storage.data_dir.clone(), storage.database_url.clone(), file)?;
    Database::from_url(&url).map_err(Into::into)
}

pub async fn run(
    command: BackupCommand,
    storage: &StorageArgs,
    file: &FileConfig,
    config_path: Option<&Path>,
) -> Result<()> {
    file.backup.check().context("[backup]")?;
    // Bad flags are refused before anything is opened or created.
    let retention = match &command {
        BackupCommand::Prune {
            retention_days,
            weekly,
            ..
        } => Retention::new(
            retention_days.unwrap_or(file.backup.retention_days),
            weekly.unwrap_or(file.backup.weekly),
        )?,
        _ => file.backup.retention()?,
    };
    let db = database(storage, file)?;
    let blobs = open_blobs(storage, file).await?;
    let backups = Backups::new(blobs.store(), file.backup.clone());
    match command {
        BackupCommand::Create { base } => create(&backups, &db, base).await,
        BackupCommand::WalPush { path, name } => wal_push(&backups, &path, &name).await,
        BackupCommand::WalFetch { name, path } => wal_fetch(&backups, &name, &path).await,
        BackupCommand::Recover {
            pgdata,
            until,
            force,
        } => {
            let restore_command = restore_command(storage, file, config_path)?;
            recover(&backups, &pgdata, until, &restore_command, force).await
        }
        BackupCommand::List { json } => list(&backups, json).await,
        BackupCommand::Verify { id } => verify(&backups, &id, &db).await,
        BackupCommand::Restore { id, force } => restore(&backups, &id, &db, force).await,
        BackupCommand::Prune { dry_run, json, .. } => {
            prune(&backups, &retention, dry_run, json).await
        }
    }
}

async fn wal_push(backups: &Backups, path: &Path, name: &str) -> Result<()> {
    match backups.wal().push(path, name).await? {
        Pushed::Stored { bytes, stored } => {
            eprintln!("archived {name}: {bytes} bytes, {stored} stored")
        }
        Pushed::AlreadyStored => eprintln!("{name} is archived already with the same content"),
    }
    Ok(())
}

/// The exit status of a `wal-fetch` that failed (the blob store unreachable, a damaged
/// copy). PostgreSQL takes exit status 1 for "no such file: the archive ends here" and then
/// promotes, which would silently drop everything archived after this file; a status above
/// 125 makes it stop recovering instead, so the fault can be fixed and recovery run again.
const WAL_FETCH_FAILED: i32 = 126;

async fn wal_fetch(backups: &Backups, name: &str, path: &Path) -> Result<()> {
    match backups.wal().fetch(name, path).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            // PostgreSQL asks for files past the archive's end; saying so is not an error to
            // log loudly, but the exit status must say it.
            eprintln!("{name} is not in the WAL archive");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!(
                "error: fetching {name} from the WAL archive failed: {e:#} \
                 (exit status {WAL_FETCH_FAILED}: recovery stops here rather than end early)"
            );
            std::process::exit(WAL_FETCH_FAILED);
        }
    }
}

/// The restore_command of a recovered server: this binary fetching from the same blob store.
/// PostgreSQL runs it as its own user, in its data directory and without our environment, so
/// every path is absolute and every setting is a flag.
fn restore_command(
    storage: &StorageArgs,
    file: &FileConfig,
    config_path: Option<&Path>,
) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let data_dir = config::data_dir(storage.data_dir.clone(), file);
    let mut words = vec![
        shell_quote(&exe),
        "backup".into(),
        "wal-fetch".into(),
        "%f".into(),
        "%p".into(),
        "--data-dir".into(),
        shell_quote(&crate::absolute(&data_dir)),
    ];
    if let Some(blobs) = &storage.blobs_dir {
        words.extend(["--blobs-dir".into(), shell_quote(&crate::absolute(blobs))]);
    }
    if let Some(config) = config_path {
        words.extend(["--config".into(), shell_quote(&crate::absolute(config))]);
    }
    Ok(words.join(" "))
}

/// A path as one word of a POSIX shell command.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

async fn recover(
    backups: &Backups,
    pgdata: &Path,
    until: Option<DateTime<Utc>>,
    restore_command: &str,
    force: bool,
) -> Result<()> {
    let target = RecoveryTarget {
        until,
        restore_command,
    };
    let recovered = backups
        .recover(&target, pgdata, force)
        .await
        .with_context(|| format!("preparing {} for recovery", pgdata.display()))?;
    let base = &recovered.base;
    let to = until.map_or("the end of the WAL archive".to_string(), |t| t.to_rfc3339());
    println!(
        "{} is ready to recover to {to}: base backup {} of {}, {} WAL files archived.\n\
         Start PostgreSQL on it (as its user: pg_ctl -D {} start); it replays the archive, \
         stops before the first transaction committed after that time and then takes writes.",
        pgdata.display(),
        base.id,
        base.created_at.to_rfc3339(),
        recovered.wal_files,
        pgdata.display(),
    );
    Ok(())
}

async fn verify(backups: &Backups, id: &BackupId, db: &Database) -> Result<()> {
    let verified = backups.verify(id, db).await?;
    let m = &verified.manifest;
    println!(
        "backup {id} verified: SHA-256 of {} bytes matches; restored {} rows in {} tables, as counted ({:.2} s)",
        m.size,
        m.total_rows(),
        m.tables.len(),
        verified.elapsed.as_secs_f64()
    );
    Ok(())
}

async fn restore(backups: &Backups, id: &BackupId, db: &Database, force: bool) -> Result<()> {
    let m = backups
        .restore(id, db, force)
        .await
        .with_context(|| format!("restoring backup {id}"))?;
    println!(
        "backup {id} of {} restored into {}: {} rows in {} tables, schema version {}",
        m.created_at.to_rfc3339(),
        db.describe(),
        m.total_rows(),
        m.tables.len(),
        m.schema_version
    );
    Ok(())
}

async fn create(backups: &Backups, db: &Database, base: bool) -> Result<()> {
    let taken = match base {
        true => backups.create_base(db).await,
        false => backups.create_snapshot(db).await,
    };
    let m = taken.with_context(|| format!("backing up {}", db.describe()))?;
    println!(
        "backup of {} ({}): {} rows in {} tables, {} stored ({} before compression), schema version {}, {:.2} s",
        db.describe(),
        m.kind.name(),
        m.total_rows(),
        m.tables.len(),
        mib(m.size),
        mib(m.database_size),
        m.schema_version,
        m.duration_ms as f64 / 1000.0
    );
    // Scripts take the last line.
    println!("{}", m.id);
    Ok(())
}

fn mib(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

async fn list(backups: &Backups, json: bool) -> Result<()> {
    let manifests = backups.list().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&manifests)?);
        return Ok(());
    }
    if manifests.is_empty() {
        eprintln!("no backups yet");
        return Ok(());
    }
    println!(
        "{:<24} {:<25} {:<16} {:>10} {:>10} schema",
        "id", "created", "kind", "size", "rows"
    );
    for m in &manifests {
        println!("{}", list_line(m));
    }
    Ok(())
}

fn list_line(m: &Manifest) -> String {
    format!(
        "{:<24} {:<25} {:<16} {:>10} {:>10} {}",
        m.id,
        m.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
        m.kind.name(),
        mib(m.size),
        m.total_rows(),
        m.schema_version
    )
}

async fn prune(backups: &Backups, retention: &Retention, dry_run: bool, json: bool) -> Result<()> {
    let pruned = backups.prune(retention, Utc::now(), dry_run).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&pruned)?);
        return Ok(());
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    for (id, reason) in &pruned.kept {
        println!(
            "kept {id} ({})",
            serde_json::to_value(reason)?.as_str().unwrap_or("")
        );
    }
    for id in &pruned.deleted {
        println!("{verb} {id}");
    }
    for id in &pruned.orphans {
        println!("{verb} {id} (data without a manifest)");
    }
    if !pruned.wal_deleted.is_empty() {
        println!(
            "{verb} {} archived WAL files, up to {} (older than the oldest kept base backup)",
            pruned.wal_deleted.len(),
            pruned
                .wal_deleted
                .last()
                .map(|n| n.as_str())
                .unwrap_or_default()
        );
    }
    eprintln!(
        "{} kept, {} {verb} (keeping {} days and {} weekly copies)",
        pruned.kept.len(),
        pruned.deleted.len() + pruned.orphans.len(),
        retention.days(),
        retention.weekly()
    );
    Ok(())
}

/// The task `serve` runs for the `[backup]` schedule (`None` when it is off): a backup when one
/// is due, then pruning.
pub fn scheduled(
    storage: &StorageArgs,
    file: &FileConfig,
    blobs: &ecocityhub_blobs::OpenedBlobs,
) -> Result<Option<impl std::future::Future<Output = ()>>> {
    let config = file.backup.clone();
    config.check().context("[backup]")?;
    if config.every == ecocityhub_backup::Schedule::Off {
        tracing::info!("scheduled backups are off ([backup] every = \"off\")");
        return Ok(None);
    }
    let db = database(storage, file)?;
    let backups = Backups::new(blobs.store(), config.clone());
    Ok(Some(backups_on_schedule(backups, db, config)))
}

/// Takes a backup whenever one is due (`every` after the newest), prunes after each, and on a
/// failure tries again after a while.
async fn backups_on_schedule(backups: Backups, db: Database, config: BackupConfig) {
    let started = Utc::now();
    let retention = config.retention().expect("checked before");
    let ecocityhub_backup::Schedule::Every(every) = config.every else {
        return;
    };
    let retry = every.min(Duration::from_secs(600));
    tracing::info!(every = %humantime::format_duration(every), database = %db.describe(), "scheduled backups on");
    loop {
        let due = match backups.newest().await {
            Ok(newest) => config.every.next_due(newest.map(|m| m.created_at), started),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the backups");
                Some(Utc::now() + chrono::Duration::from_std(retry).expect("small"))
            }
        };
        let Some(due) = due else { return };
        tokio::time::sleep((due - Utc::now()).to_std().unwrap_or_default()).await;
        match backups.create(&db).await {
            Ok(m) => {
                tracing::info!(backup = %m.id, bytes = m.size, rows = m.total_rows(), ms = m.duration_ms, "scheduled backup taken")
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduled backup failed");
                tokio::time::sleep(retry).await;
                continue;
            }
        }
        match backups.prune(&retention, Utc::now(), false).await {
            Ok(p) => tracing::info!(
                kept = p.kept.len(),
                deleted = p.deleted.len() + p.orphans.len(),
                "backups pruned"
            ),
            Err(e) => tracing::warn!(error = %e, "backups not pruned"),
        }
    }
}
