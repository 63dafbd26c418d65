//! Fresh, empty stores for tests of this crate and the crates above it: an SQLite file in a
//! temporary directory, and a new database on the PostgreSQL server named by
//! `ECOCITYHUB_TEST_DATABASE_URL` (`.ci/postgres` starts one on loopback).

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AnyConnection, Connection, Executor};

/// The environment variable naming the PostgreSQL server for tests.
pub const TEST_DATABASE_URL_VAR: &str = "ECOCITYHUB_TEST_DATABASE_URL";

/// The admin URL of the test PostgreSQL server. In CI (`CI` set) its absence is a failure, so
/// the PostgreSQL half of a suite can never pass by not running; on a developer's machine
/// without the variable, `None`.
pub fn postgres_server() -> Option<String> {
    match std::env::var(TEST_DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{TEST_DATABASE_URL_VAR} must be set in CI (run .ci/postgres)")
        }
        _ => {
            eprintln!("{TEST_DATABASE_URL_VAR} not set: skipping the PostgreSQL half of this test");
            None
        }
    }
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_url() -> Option<String> {
    let server = postgres_server()?;
    Some(
        create_database(&server)
            .await
            .expect("create a database on the test PostgreSQL server"),
    )
}

/// Creates an empty, uniquely named database on the PostgreSQL server at `server` (an admin
/// URL such as `postgres://postgres@127.0.0.1:54329/postgres`) and returns its URL.
pub async fn create_database(server: &str) -> Result<String, sqlx::Error> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    sqlx::any::install_default_drivers();
    let name = format!(
        "ech_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_subsec_nanos()
    );
    let mut admin = AnyConnection::connect(server).await?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    admin.close().await.ok();
    let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// The URL of an SQLite file in `dir`.
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("ecocityhub.db").display())
}
