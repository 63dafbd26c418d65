//! SQLite: a consistent snapshot with `VACUUM INTO` (one read transaction, so the server keeps
//! writing in WAL mode meanwhile), compressed with zstd; restores written to a temporary file
//! beside the target and renamed over it, so a reader never sees half a database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sqlx::Connection;

use crate::database::{self, Database};
use crate::manifest::Manifest;
use crate::{io, BackupError, Result};

/// A snapshot taken and compressed.
pub(crate) struct Taken {
    pub data: Vec<u8>,
    pub database_size: u64,
    pub tables: BTreeMap<String, i64>,
    pub schema_version: i64,
    pub tools: BTreeMap<String, String>,
}

/// The directory of `path` (the current one for a bare file name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Snapshots the database at `path` and compresses it at `level`.
pub(crate) async fn snapshot(path: &Path, level: i32) -> Result<Taken> {
    if !path.is_file() {
        return Err(BackupError::Io {
            context: format!("cannot back up {}", path.display()),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such database file"),
        });
    }
    // Beside the database: same file system, and not a small tmpfs.
    let dir = tempfile::Builder::new()
        .prefix(".ecocityhub-backup-")
        .tempdir_in(parent(path))
        .map_err(io("cannot make a temporary directory beside the database"))?;
    let target = dir.path().join("snapshot.db");
    let mut conn = Database::Sqlite { path: path.into() }.connect().await?;
    sqlx::query("PRAGMA busy_timeout = 10000")
        .execute(&mut conn)
        .await?;
    sqlx::query("VACUUM INTO $1")
        .bind(target.display().to_string())
        .execute(&mut conn)
        .await?;
    let sqlite_version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    let (tables, schema_version) = describe(&target).await?;
    let database_size = std::fs::metadata(&target)
        .map_err(io("cannot read the snapshot"))?
        .len();
    let data = compress(target, level).await?;
    let tools = [
        ("sqlite".to_string(), sqlite_version),
        ("zstd".into(), zstd::zstd_safe::version_string().into()),
    ]
    .into();
    Ok(Taken {
        data,
        database_size,
        tables,
        schema_version,
        tools,
    })
}

/// Row counts and schema version of a finished SQLite file.
async fn describe(path: &Path) -> Result<(BTreeMap<String, i64>, i64)> {
    let mut conn = database::open_snapshot(path).await?;
    let tables = database::row_counts(&mut conn, "sqlite").await?;
    let version = database::schema_version(&mut conn, "sqlite").await?;
    conn.close().await?;
    Ok((tables, version))
}

async fn compress(path: PathBuf, level: i32) -> Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(io("cannot read the snapshot"))?;
        zstd::stream::encode_all(std::io::BufReader::new(file), level)
            .map_err(io("cannot compress the snapshot"))
    })
    .await
    .expect("compression does not panic")
}

/// Decompresses `data` into the file `into`, on disk (fsync) when this returns.
async fn unpack(id: String, data: Bytes, into: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let file =
            std::fs::File::create(&into).map_err(io(format!("cannot write {}", into.display())))?;
        let mut writer = std::io::BufWriter::new(file);
        zstd::stream::copy_decode(&data[..], &mut writer).map_err(|e| BackupError::Damaged {
            id,
            reason: format!("the data does not decompress: {e}"),
        })?;
        let file = writer
            .into_inner()
            .map_err(|e| io("cannot write the restored database")(e.into_error()))?;
        file.sync_all()
            .map_err(io("cannot write the restored database"))
    })
    .await
    .expect("decompression does not panic")
}

/// Restores into a temporary file and checks it: `PRAGMA integrity_check` and the row counts.
pub(crate) async fn verify(manifest: &Manifest, data: Bytes) -> Result<()> {
    let dir = tempfile::tempdir().map_err(io("cannot make a temporary directory"))?;
    let path = dir.path().join("verify.db");
    unpack(manifest.id.to_string(), data, path.clone()).await?;
    let mut conn = database::open_snapshot(&path).await?;
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| BackupError::Damaged {
            id: manifest.id.to_string(),
            reason: format!("the data is not an SQLite database: {e}"),
        })?;
    conn.close().await?;
    if problems != ["ok"] {
        return Err(BackupError::Damaged {
            id: manifest.id.to_string(),
            reason: format!("integrity check: {}", problems.join("; ")),
        });
    }
    manifest.check_counts(&describe(&path).await?.0)
}

/// Why `path` may not be restored over without force: it exists and is not empty.
fn occupied(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => Some(format!("the file exists, {} bytes", m.len())),
        _ => None,
    }
}

/// Writes the backup to `path`: refused while a non-empty file is there unless `force`.
pub(crate) async fn restore(
    manifest: &Manifest,
    data: Bytes,
    path: &Path,
    force: bool,
) -> Result<()> {
    let not_empty = |what| BackupError::NotEmpty {
        target: path.display().to_string(),
        what,
    };
    if let (Some(what), false) = (occupied(path), force) {
        return Err(not_empty(what));
    }
    let dir = parent(path);
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let temp = tempfile::Builder::new()
        .prefix(".ecocityhub-restore-")
        .tempfile_in(&dir)
        .map_err(io(format!("cannot write into {}", dir.display())))?;
    unpack(manifest.id.to_string(), data, temp.path().to_path_buf()).await?;
    manifest.check_counts(&describe(temp.path()).await?.0)?;
    if force || path.exists() {
        // Over a database (forced) or an empty file: a write-ahead log or journal left beside
        // it must not be applied to the restored one.
        remove_side_files(path)?;
        temp.persist(path)
            .map_err(|e| io(format!("cannot replace {}", path.display()))(e.error))?;
    } else {
        temp.persist_noclobber(path)
            .map_err(|e| match occupied(path) {
                Some(what) => not_empty(what),
                None => io(format!("cannot write {}", path.display()))(e.error),
            })?;
    }
    sync_dir(&dir)
}

/// Removes the `-wal`, `-shm` and `-journal` files of the database at `path`.
fn remove_side_files(path: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&side) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(format!("cannot remove {}", side.display()))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync {}", dir.display())))?;
    Ok(())
}
