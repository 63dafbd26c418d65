//! `ecocityhub bench --only backup`: the time to back up, verify and restore a database of
//! 1,000,000 readings, on SQLite and (with `--postgres URL`) on PostgreSQL, through the same
//! envelope-encrypted blob store `serve` uses.

use std::time::Instant;

use anyhow::{Context, Result};
use ecocityhub_backup::{BackupConfig, Backups, Database};

use crate::bench::{fresh_postgres, open, store_insert};

/// Readings in the measured database.
const READINGS: usize = 1_000_000;

pub async fn backup_bench(postgres: Option<&str>) -> Result<()> {
    backup_bench_on("sqlite", None).await?;
    if let Some(server) = postgres {
        backup_bench_on("postgres", Some(server)).await?;
    }
    Ok(())
}

async fn backup_bench_on(name: &str, server: Option<&str>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (source, target) = match server {
        None => (
            ecocityhub_store::testing::sqlite_url(dir.path()),
            format!("sqlite://{}", dir.path().join("restored.db").display()),
        ),
        Some(s) => (fresh_postgres(s).await?, fresh_postgres(s).await?),
    };
    // The store stays open, as a server's would.
    let store = open(&source).await?;
    store_insert(store.as_ref(), READINGS).await?;
    let blobs_config = ecocityhub_blobs::BlobsConfig {
        dir: Some(dir.path().join("blobs")),
        ..Default::default()
    };
    let blobs = ecocityhub_blobs::open(&blobs_config, dir.path())
        .await
        .context("the blob store")?;
    let backups = Backups::new(blobs.store(), BackupConfig::default());
    let db = Database::from_url(&source)?;

    let t = Instant::now();
    let manifest = backups.create(&db).await?;
    let backup_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    backups.verify(&manifest.id, &db).await?;
    let verify_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    backups
        .restore(&manifest.id, &Database::from_url(&target)?, false)
        .await?;
    let restore_s = t.elapsed().as_secs_f64();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let source_size = match server {
        None => format!(", {:.1} MiB database", mib(manifest.database_size)),
        Some(_) => String::new(),
    };
    println!(
        "backup ({name}, 1,000,000 readings, {}): backup {backup_s:.2} s, verify {verify_s:.2} s, restore {restore_s:.2} s; {:.1} MiB stored{source_size}",
        manifest.kind.name(),
        mib(manifest.size),
    );
    drop(store);
    Ok(())
}
