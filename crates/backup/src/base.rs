//! Base backups of a PostgreSQL server for point-in-time recovery: `pg_basebackup` of the whole
//! server as one tar stream (with the WAL it needs to be consistent, fetched into it, and its
//! backup manifest), compressed with zstd ([`Kind::PgBase`](crate::Kind::PgBase)); checked by
//! `pg_verifybackup` after unpacking into a scratch directory; unpacked into a new data
//! directory set up to replay the [WAL archive](crate::WalArchive) up to a chosen time.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::database::{self, Database};
use crate::postgres::{Libpq, Tools};
use crate::wal::WalName;
use crate::{io, BackupError, Result};

/// A base backup taken.
pub(crate) struct TakenBase {
    /// The tar stream, compressed.
    pub data: Vec<u8>,
    /// Bytes of the tar stream.
    pub raw_size: u64,
    /// The first WAL segment a recovery from it needs (from its `backup_label`).
    pub wal_start: WalName,
    pub schema_version: i64,
    pub tools: BTreeMap<String, String>,
}

/// Takes a base backup of the server of `url`, labelled `label`.
pub(crate) async fn take(url: &str, tools: &Tools, label: &str, level: i32) -> Result<TakenBase> {
    let libpq = Libpq::new(url)?;
    let mut conn = Database::Postgres { url: url.into() }.connect().await?;
    let schema_version = database::schema_version(&mut conn, "postgres").await?;
    let server: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut conn)
        .await?;
    let args = [
        format!("--dbname={}", libpq.url),
        "--pgdata=-".into(),
        "--format=tar".into(),
        "--wal-method=fetch".into(),
        "--checkpoint=fast".into(),
        format!("--label={label}"),
        "--no-password".into(),
    ];
    let tar = tools
        .run("pg_basebackup", &args, libpq.password.as_deref(), None)
        .await?;
    let wal_start = start_segment(&tar)?;
    let raw_size = tar.len() as u64;
    let data = tokio::task::spawn_blocking(move || zstd::stream::encode_all(&tar[..], level))
        .await
        .expect("compressing does not panic")
        .map_err(io("compressing the base backup"))?;
    let tools = [
        (
            "pg_basebackup".to_string(),
            tools.version("pg_basebackup").await?,
        ),
        ("postgres".into(), server),
        ("zstd".into(), zstd::zstd_safe::version_string().into()),
    ]
    .into();
    Ok(TakenBase {
        data,
        raw_size,
        wal_start,
        schema_version,
        tools,
    })
}

/// The segment named by `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)` in the
/// stream's `backup_label`.
fn start_segment(tar: &[u8]) -> Result<WalName> {
    let missing = |why: &str| BackupError::Tool {
        tool: "pg_basebackup".into(),
        message: format!("its output has no usable backup_label: {why}"),
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(io("reading the base backup"))?;
    for entry in entries {
        let mut entry = entry.map_err(io("reading the base backup"))?;
        if entry.path().map_err(io("reading the base backup"))? != Path::new("backup_label") {
            continue;
        }
        let mut label = String::new();
        entry
            .read_to_string(&mut label)
            .map_err(io("reading backup_label"))?;
        let file = label
            .lines()
            .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
            .and_then(|l| l.split_once("(file ")?.1.strip_suffix(')'))
            .ok_or_else(|| missing("no START WAL LOCATION"))?;
        return WalName::parse(file);
    }
    Err(missing("not in the stream"))
}

/// Unpacks the compressed stream `data` into `dir` (which must exist and be empty).
async fn unpack(data: Bytes, dir: &Path, id: &str) -> Result<()> {
    let dir = dir.to_path_buf();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        let decoder = zstd::stream::Decoder::new(&data[..]).map_err(io("reading the backup"))?;
        tar::Archive::new(decoder)
            .unpack(&dir)
            .map_err(|e| BackupError::Damaged {
                id,
                reason: format!("its tar stream does not unpack: {e}"),
            })
    })
    .await
    .expect("unpacking does not panic")
}

/// Unpacks the backup into a scratch directory and runs `pg_verifybackup` on it: every file
/// against the backup manifest's checksums, and the WAL it includes parsed through.
pub(crate) async fn verify(id: &str, data: Bytes, tools: &Tools) -> Result<()> {
    let scratch = tempfile::tempdir().map_err(io("making a scratch directory"))?;
    unpack(data, scratch.path(), id).await?;
    let args = [scratch.path().display().to_string()];
    tools
        .run("pg_verifybackup", &args, None, None)
        .await
        .map_err(|e| match e {
            BackupError::Tool { message, .. } => BackupError::Damaged {
                id: id.to_string(),
                reason: format!("pg_verifybackup: {message}"),
            },
            other => other,
        })?;
    Ok(())
}

/// How a recovered server replays the archive.
pub struct RecoveryTarget<'a> {
    /// Stop before the first transaction that committed after this time; `None`: replay all
    /// that is archived.
    pub until: Option<DateTime<Utc>>,
    /// PostgreSQL's `restore_command` (`%f` and `%p` substituted by it).
    pub restore_command: &'a str,
}

/// Unpacks the backup into `pgdata` (absent or empty, unless `force`) and sets it up to
/// recover: `recovery.signal`, and the restore command, target and promotion at the end in
/// `postgresql.auto.conf`. Starting PostgreSQL on it does the rest.
pub(crate) async fn unpack_for_recovery(
    id: &str,
    data: Bytes,
    pgdata: &Path,
    target: &RecoveryTarget<'_>,
    force: bool,
) -> Result<()> {
    prepare_empty_dir(pgdata, force).await?;
    unpack(data, pgdata, id).await?;
    let auto_conf = pgdata.join("postgresql.auto.conf");
    let mut conf = tokio::fs::read_to_string(&auto_conf)
        .await
        .unwrap_or_default();
    conf.push_str(&recovery_settings(id, target));
    tokio::fs::write(&auto_conf, conf)
        .await
        .map_err(io(format!("writing {}", auto_conf.display())))?;
    let signal = pgdata.join("recovery.signal");
    tokio::fs::write(&signal, b"")
        .await
        .map_err(io(format!("writing {}", signal.display())))?;
    Ok(())
}

/// The lines appended to `postgresql.auto.conf`.
fn recovery_settings(id: &str, target: &RecoveryTarget<'_>) -> String {
    let mut conf = format!(
        "\n# ecocityhub backup recover: from base backup {id}\nrestore_command = {}\n",
        conf_quote(target.restore_command)
    );
    if let Some(until) = target.until {
        // PostgreSQL refuses RFC 3339's "T…Z" here; this is its own output format.
        let at = until.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
        conf.push_str(&format!(
            "recovery_target_time = {}\nrecovery_target_inclusive = off\n",
            conf_quote(&at)
        ));
    }
    conf.push_str("recovery_target_action = 'promote'\n");
    // The copy must not archive into the archive it recovers from: its new timeline would be
    // followed by later recoveries, and a history file of the same name from the live server
    // would then be refused for good. A copy that becomes the primary gets its own archive.
    conf.push_str(
        "# a recovered copy does not archive; set archive_mode and archive_command for its own archive\n\
         archive_mode = off\n",
    );
    conf
}

/// A value of postgresql.conf: in single quotes, quotes doubled.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Makes `dir` an empty directory of mode 0700 (what PostgreSQL requires of a data directory),
/// refusing one that holds anything unless `force`.
async fn prepare_empty_dir(dir: &Path, force: bool) -> Result<()> {
    let holds_something = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
    };
    if holds_something {
        if !force {
            return Err(BackupError::NotEmpty {
                target: dir.display().to_string(),
                what: "the directory holds files".into(),
            });
        }
        if dir.join("postmaster.pid").exists() {
            return Err(BackupError::NotEmpty {
                target: dir.display().to_string(),
                what: "a server may be running on it (postmaster.pid); stop it first".into(),
            });
        }
        tokio::fs::remove_dir_all(dir)
            .await
            .map_err(io(format!("removing {}", dir.display())))?;
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io(format!("making {}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(io(format!("setting the mode of {}", dir.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn the_first_segment_is_read_from_the_backup_label() {
        let label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nLABEL: x\n";
        let tar = tar_with(&[("PG_VERSION", b"15\n"), ("backup_label", label)]);
        assert_eq!(
            start_segment(&tar).unwrap().as_str(),
            "000000010000000000000002"
        );
        let err = start_segment(&tar_with(&[("PG_VERSION", b"15\n")])).unwrap_err();
        assert!(err.to_string().contains("backup_label"), "{err}");
    }

    #[test]
    fn recovery_settings_quote_the_command_and_stop_before_the_target() {
        let until = "2026-12-03T08:00:00.5Z".parse().unwrap();
        let conf = recovery_settings(
            "20261203T070000Z-abcdef",
            &RecoveryTarget {
                until: Some(until),
                restore_command: "'/opt/eco hub/ecocityhub' backup wal-fetch %f %p",
            },
        );
        assert!(
            conf.contains("restore_command = '''/opt/eco hub/ecocityhub'' backup wal-fetch %f %p'"),
            "{conf}"
        );
        assert!(
            conf.contains("recovery_target_time = '2026-12-03 08:00:00.500000+00'"),
            "{conf}"
        );
        assert!(conf.contains("recovery_target_inclusive = off"), "{conf}");
        assert!(
            conf.contains("recovery_target_action = 'promote'"),
            "{conf}"
        );
        assert!(conf.ends_with("\narchive_mode = off\n"), "{conf}");
    }

    #[tokio::test]
    async fn a_data_directory_that_holds_files_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path().join("pgdata");
        std::fs::create_dir(&pgdata).unwrap();
        std::fs::write(pgdata.join("PG_VERSION"), b"15").unwrap();
        let err = prepare_empty_dir(&pgdata, false).await.unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty { .. }), "{err}");
        assert!(pgdata.join("PG_VERSION").exists());
        prepare_empty_dir(&pgdata, true).await.unwrap();
        assert_eq!(std::fs::read_dir(&pgdata).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_damaged_stream_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_with(&[("PG_VERSION", b"15\n")]);
        let mut data = zstd::stream::encode_all(&tar[..], 3).unwrap();
        data.truncate(data.len() / 2);
        let err = unpack(Bytes::from(data), dir.path(), "b1")
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::Damaged { .. }), "{err}");
    }
}
