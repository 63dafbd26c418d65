//! Fresh, empty stores for tests of this crate and the crates above it: an SQLite file in a
//! temporary directory, and a new database on the PostgreSQL server named by
//! `ECOCITYHUB_TEST_DATABASE_URL` (`.ci/postgres` starts one on loopback).

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AnyConnection, Connection, Executor};

/// The environment variable naming the PostgreSQL server for tests.
pub const TEST_DATABASE_URL_VAR: &str = "ECOCITYHUB_TEST_DATABASE_URL";

/// The admin URL of the test PostgreSQL server, under the one rule for skipping
/// (`ecocityhub_testkit::require`): under CI its absence fails the test, so the PostgreSQL
/// half of a suite can never pass by not running; elsewhere the half is skipped and counted.
pub fn postgres_server() -> Option<String> {
    let url = std::env::var(TEST_DATABASE_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty());
    ecocityhub_testkit::require(
        url,
        "a PostgreSQL server for the PostgreSQL half",
        "scripts/test starts one (.ci/postgres) and sets ECOCITYHUB_TEST_DATABASE_URL",
    )
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
