//! PostgreSQL: `pg_dump -Fc` inside a snapshot exported by a repeatable-read transaction of our
//! own, in which the rows are also counted, so the manifest describes exactly what the dump
//! holds; `pg_restore` into the target, in one transaction. The client tools come from the
//! configured directory, else the newest `/usr/lib/postgresql/*/bin` (Debian's layout, as
//! `.ci/postgres` finds them), else `PATH`. The password goes to them in `PGPASSWORD`, never on
//! a command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use rand::RngCore;
use sqlx::{AnyConnection, Connection};
use tokio::io::AsyncWriteExt;

use crate::database::{self, Database};
use crate::manifest::Manifest;
use crate::{BackupError, Result};

/// Where the client tools are.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tools {
    pub bin_dir: Option<PathBuf>,
}

/// A dump taken.
pub(crate) struct Taken {
    pub data: Vec<u8>,
    pub tables: BTreeMap<String, i64>,
    pub schema_version: i64,
    pub tools: BTreeMap<String, String>,
}

/// The query parameters libpq understands (sqlx has more of its own; libpq refuses those).
const LIBPQ_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "application_name",
    "options",
    "connect_timeout",
    "host",
    "hostaddr",
    "port",
    "user",
    "target_session_attrs",
];

/// A database URL as libpq takes it, and its password apart.
pub(crate) struct Libpq {
    pub(crate) url: String,
    pub(crate) password: Option<String>,
}

impl Libpq {
    pub(crate) fn new(url: &str) -> Result<Libpq> {
        let mut parsed =
            url::Url::parse(url).map_err(|_| BackupError::UnsupportedUrl(database::redact(url)))?;
        let password = parsed.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let _ = parsed.set_password(None);
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| LIBPQ_PARAMS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
        Ok(Libpq {
            url: parsed.to_string(),
            password,
        })
    }
}

/// The URL of database `name` on the server of `url`.
fn with_database(url: &str, name: &str) -> Result<String> {
    let mut parsed =
        url::Url::parse(url).map_err(|_| BackupError::UnsupportedUrl(database::redact(url)))?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

impl Tools {
    /// The program `name`.
    pub(crate) fn find(&self, name: &str) -> Result<PathBuf> {
        if let Some(dir) = &self.bin_dir {
            let path = dir.join(name);
            return match path.is_file() {
                true => Ok(path),
                false => Err(BackupError::ToolMissing {
                    tool: name.into(),
                    reason: format!("{} does not exist (pg_bin_dir)", path.display()),
                }),
            };
        }
        Ok(newest_debian(name).unwrap_or_else(|| PathBuf::from(name)))
    }

    /// Runs `name` with `args` (and `input` on its standard input); its standard output.
    pub(crate) async fn run(
        &self,
        name: &str,
        args: &[String],
        password: Option<&str>,
        input: Option<Bytes>,
    ) -> Result<Vec<u8>> {
        let program = self.find(name)?;
        let mut command = tokio::process::Command::new(&program);
        command
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        let mut child = command.spawn().map_err(|e| BackupError::ToolMissing {
            tool: name.into(),
            reason: format!(
                "{}: {e} (install PostgreSQL's client tools or set [backup] pg_bin_dir)",
                program.display()
            ),
        })?;
        let feeding = match (input, child.stdin.take()) {
            (Some(data), Some(mut stdin)) => Some(tokio::spawn(async move {
                // An error here shows as the tool's own failure.
                let _ = stdin.write_all(&data).await;
            })),
            _ => None,
        };
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| BackupError::Tool {
                tool: name.into(),
                message: e.to_string(),
            })?;
        if let Some(feeding) = feeding {
            let _ = feeding.await;
        }
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(BackupError::Tool {
                tool: name.into(),
                message: format!("{} ({})", stderr.trim(), output.status),
            });
        }
        Ok(output.stdout)
    }

    /// `pg_dump (PostgreSQL) 15.14`, say.
    pub(crate) async fn version(&self, name: &str) -> Result<String> {
        let out = self.run(name, &["--version".into()], None, None).await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }
}

/// The program in the newest `/usr/lib/postgresql/VERSION/bin`.
fn newest_debian(name: &str) -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let path = e.path().join("bin").join(name);
            path.is_file().then_some((version, path))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// Dumps the database at `url`.
pub(crate) async fn dump(url: &str, tools: &Tools) -> Result<Taken> {
    let libpq = Libpq::new(url)?;
    let mut conn = Database::Postgres { url: url.into() }.connect().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *tx)
        .await?;
    let tables = database::row_counts(&mut tx, "postgres").await?;
    let schema_version = database::schema_version(&mut tx, "postgres").await?;
    let server: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut *tx)
        .await?;
    let args = vec![
        "--format=custom".to_string(),
        format!("--snapshot={snapshot}"),
        format!("--dbname={}", libpq.url),
    ];
    // The exporting transaction stays open until pg_dump is done with its snapshot.
    let data = tools
        .run("pg_dump", &args, libpq.password.as_deref(), None)
        .await;
    tx.rollback().await?;
    conn.close().await?;
    let tools = [
        ("pg_dump".to_string(), tools.version("pg_dump").await?),
        ("postgres".into(), server),
    ]
    .into();
    Ok(Taken {
        data: data?,
        tables,
        schema_version,
        tools,
    })
}

/// The user tables of the database at `url`.
async fn tables_of(url: &str) -> Result<Vec<String>> {
    let mut conn = Database::Postgres { url: url.into() }.connect().await?;
    let tables = database::tables(&mut conn, "postgres").await?;
    conn.close().await?;
    Ok(tables)
}

/// `pg_restore` of `data` into the database at `url`, in one transaction; `clean` drops what
/// the dump re-creates first.
async fn pg_restore(url: &str, data: Bytes, clean: bool, tools: &Tools) -> Result<()> {
    let libpq = Libpq::new(url)?;
    let mut args = vec![
        format!("--dbname={}", libpq.url),
        "--no-owner".to_string(),
        "--no-acl".into(),
        "--exit-on-error".into(),
        "--single-transaction".into(),
    ];
    if clean {
        args.extend(["--clean".to_string(), "--if-exists".into()]);
    }
    tools
        .run("pg_restore", &args, libpq.password.as_deref(), Some(data))
        .await
        .map(drop)
}

/// Restores into the database at `url`: refused while it has tables unless `force`.
pub(crate) async fn restore(
    manifest: &Manifest,
    data: Bytes,
    url: &str,
    force: bool,
    tools: &Tools,
) -> Result<()> {
    let existing = tables_of(url).await?;
    if !existing.is_empty() && !force {
        return Err(BackupError::NotEmpty {
            target: database::redact(url),
            what: format!("{} tables", existing.len()),
        });
    }
    pg_restore(url, data, !existing.is_empty(), tools).await?;
    let mut conn = Database::Postgres { url: url.into() }.connect().await?;
    let counts = database::row_counts(&mut conn, "postgres").await?;
    conn.close().await?;
    // Tables of the target that the dump does not hold stay; only the dump's are compared.
    let restored: BTreeMap<String, i64> = counts
        .into_iter()
        .filter(|(t, _)| manifest.tables.contains_key(t))
        .collect();
    manifest.check_counts(&restored)
}

/// Restores into a scratch database `ecocityhub_verify_…` on the server of `url`, compares the
/// row counts, and drops it.
pub(crate) async fn verify(
    manifest: &Manifest,
    data: Bytes,
    url: &str,
    tools: &Tools,
) -> Result<()> {
    let mut random = [0u8; 4];
    rand::rng().fill_bytes(&mut random);
    let name = format!("ecocityhub_verify_{}", hex::encode(random));
    let mut admin = Database::Postgres { url: url.into() }.connect().await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let scratch = with_database(url, &name)?;
    let outcome = restore_and_count(manifest, data, &scratch, tools).await;
    if let Err(e) = drop_database(&mut admin, &name).await {
        tracing::warn!(database = %name, error = %e, "the scratch database was not dropped");
    }
    admin.close().await.ok();
    outcome
}

async fn restore_and_count(
    manifest: &Manifest,
    data: Bytes,
    url: &str,
    tools: &Tools,
) -> Result<()> {
    pg_restore(url, data, false, tools).await?;
    let mut conn = Database::Postgres { url: url.into() }.connect().await?;
    let counts = database::row_counts(&mut conn, "postgres").await;
    conn.close().await.ok();
    manifest.check_counts(&counts?)
}

async fn drop_database(admin: &mut AnyConnection, name: &str) -> Result<()> {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_gets_the_url_without_password_or_sqlx_parameters() {
        let l = Libpq::new(
            "postgres://app:p%40ss@db.example:5432/city?sslmode=require&statement-cache-capacity=0",
        )
        .unwrap();
        assert_eq!(l.url, "postgres://app@db.example:5432/city?sslmode=require");
        assert_eq!(l.password.as_deref(), Some("p@ss"));
        let plain = Libpq::new("postgres://postgres@127.0.0.1:54329/postgres").unwrap();
        assert_eq!(plain.url, "postgres://postgres@127.0.0.1:54329/postgres");
        assert_eq!(plain.password, None);
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=disable", "scratch").unwrap(),
            "postgres://u@h:1/scratch?sslmode=disable"
        );
    }

    #[test]
    fn a_missing_tool_directory_is_named() {
        let tools = Tools {
            bin_dir: Some("/nonexistent/pg".into()),
        };
        let err = tools.find("pg_dump").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/pg/pg_dump"), "{err}");
    }
}
