//! The database a backup is taken from or restored into, named by its URL as the store names
//! it (`sqlite://PATH`, `postgres://…`), and what is read from it through sqlx's `Any` driver:
//! its tables, their row counts and the schema version (`_sqlx_migrations`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::{AnyConnection, Connection, Row};

use crate::{BackupError, Result};

/// The table of applied migrations (sqlx's).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Where the data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite { path: PathBuf },
    /// A PostgreSQL database (`postgres://user:pass@host:port/db?…`).
    Postgres { url: String },
}

impl Database {
    /// Reads a database URL; `sqlite::memory:` and other schemes are refused.
    pub fn from_url(url: &str) -> Result<Database> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            url::Url::parse(url).map_err(|_| BackupError::UnsupportedUrl(redact(url)))?;
            return Ok(Database::Postgres { url: url.into() });
        }
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| BackupError::UnsupportedUrl(redact(url)))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path.starts_with(":memory:") {
            return Err(BackupError::UnsupportedUrl(url.into()));
        }
        Ok(Database::Sqlite {
            path: PathBuf::from(path),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite { .. } => "sqlite",
            Database::Postgres { .. } => "postgres",
        }
    }

    /// For messages: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite { path } => path.display().to_string(),
            Database::Postgres { url } => redact(url),
        }
    }

    /// A connection of its own (not the store's pool).
    pub(crate) async fn connect(&self) -> Result<AnyConnection> {
        sqlx::any::install_default_drivers();
        let url = match self {
            Database::Sqlite { path } => sqlite_url(path, "rw"),
            Database::Postgres { url } => url.clone(),
        };
        Ok(AnyConnection::connect(&url).await?)
    }
}

/// The URL of an SQLite file opened in `mode` (`ro`, `rw`; never created here).
pub(crate) fn sqlite_url(path: &Path, mode: &str) -> String {
    format!("sqlite://{}?mode={mode}", path.display())
}

/// Opens a finished SQLite file that nothing else writes (a snapshot, a restored copy)
/// read-only, without locks or a WAL index.
pub(crate) async fn open_snapshot(path: &Path) -> Result<AnyConnection> {
    sqlx::any::install_default_drivers();
    let url = format!("{}&immutable=true", sqlite_url(path, "ro"));
    Ok(AnyConnection::connect(&url).await?)
}

/// A URL without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The user tables (`schema.table` outside `public`), sorted.
pub(crate) async fn tables(conn: &mut AnyConnection, backend: &str) -> Result<Vec<String>> {
    let sql = if backend == "sqlite" {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name"
    } else {
        "SELECT CASE WHEN schemaname = 'public' THEN tablename::text \
                ELSE schemaname::text || '.' || tablename::text END AS name \
         FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY 1"
    };
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(BackupError::from))
        .collect()
}

/// `name` or `schema.name` as a quoted identifier.
fn quoted(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Rows per user table.
pub(crate) async fn row_counts(
    conn: &mut AnyConnection,
    backend: &str,
) -> Result<BTreeMap<String, i64>> {
    let mut counts = BTreeMap::new();
    for table in tables(conn, backend).await? {
        let sql = format!("SELECT COUNT(*) FROM {}", quoted(&table));
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?;
        counts.insert(table, n);
    }
    Ok(counts)
}

/// The newest applied migration, 0 when none is.
pub(crate) async fn schema_version(conn: &mut AnyConnection, backend: &str) -> Result<i64> {
    if !tables(conn, backend)
        .await?
        .iter()
        .any(|t| t == MIGRATIONS_TABLE)
    {
        return Ok(0);
    }
    let sql = format!("SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE} WHERE success");
    Ok(sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_file_or_a_server() {
        assert_eq!(
            Database::from_url("sqlite://data/ecocityhub.db?mode=rwc").unwrap(),
            Database::Sqlite {
                path: "data/ecocityhub.db".into()
            }
        );
        assert_eq!(
            Database::from_url("sqlite:/tmp/x.db").unwrap().backend(),
            "sqlite"
        );
        let pg = Database::from_url("postgres://u:secret@h:5432/db").unwrap();
        assert_eq!(pg.backend(), "postgres");
        assert!(!pg.describe().contains("secret"), "{}", pg.describe());
        for bad in ["sqlite::memory:", "mysql://h/db", "sqlite://", "x"] {
            assert!(
                matches!(Database::from_url(bad), Err(BackupError::UnsupportedUrl(_))),
                "{bad}"
            );
        }
        let err = Database::from_url("mysql://u:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw@"), "{err}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quoted("readings"), "\"readings\"");
        assert_eq!(quoted("audit.log"), "\"audit\".\"log\"");
        assert_eq!(quoted("we\"ird"), "\"we\"\"ird\"");
    }
}
