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
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let server = postgres_server()?;
    sqlx::any::install_default_drivers();
    let name = format!(
        "ech_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_subsec_nanos()
    );
    let mut admin = AnyConnection::connect(&server)
        .await
        .expect("connect to the test PostgreSQL server");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    admin.close().await.ok();
    let base = server
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("URL has a database path");
    Some(format!("{base}/{name}"))
}

/// The URL of an SQLite file in `dir`.
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("ecocityhub.db").display())
}
