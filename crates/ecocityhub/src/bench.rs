//! `ecocityhub bench`: measures the numbers the platform promises and prints them.
//!
//! - ingest through `import` (a shared data file) and straight into the store, on SQLite and,
//!   with `--postgres URL`, on PostgreSQL;
//! - ingest through HTTP batches against a server process;
//! - p50/p99 latency of `/latest` and of one year of hourly history at 64 concurrent clients;
//! - start-up time to the first answered request on an existing data directory;
//! - idle resident memory of the server.
//!
//! Servers are separate processes of this same binary, so client and server do not share a
//! runtime. Nothing here is a pass/fail test; the numbers go into the issue notes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{TimeZone, Utc};
use clap::Args;
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::import::{self, ImportOptions};

#[derive(Args)]
pub struct BenchArgs {
    /// The shared data directory (for the import benchmark and the one-year history).
    #[arg(long, default_value = "../shared/data")]
    shared_data: PathBuf,
    /// Also measure on this PostgreSQL server (an empty database is created on it).
    #[arg(long, env = "ECOCITYHUB_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Requests per latency measurement.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Concurrent clients for latency measurements.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Only these parts (store, import, http, latency, startup); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn wants(args: &BenchArgs, part: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|p| p == part)
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let london = args.shared_data.join("london-marylebone-aq.csv");
    println!(
        "EcoCityHub benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut backends: Vec<(&str, Option<String>)> = vec![("sqlite", None)];
    if let Some(pg) = &args.postgres {
        backends.push(("postgres", Some(pg.clone())));
    }
    for (name, server) in &backends {
        if wants(&args, "store") {
            let dir = tempfile::tempdir()?;
            let store = fresh_store(dir.path(), server.as_deref()).await?;
            let rate = store_insert(store.as_ref(), 500_000).await?;
            println!("store insert ({name}): {rate:.0} readings/s (500,000 synthetic readings, 50,000 per transaction)");
        }
        if wants(&args, "import") {
            let dir = tempfile::tempdir()?;
            let store = fresh_store(dir.path(), server.as_deref()).await?;
            let f = std::fs::File::open(&london)
                .with_context(|| format!("open {}", london.display()))?;
            let report = import::import(
                store.as_ref(),
                f,
                None,
                &crate::demo::known_stations(),
                &ImportOptions::default(),
            )
            .await?;
            println!(
                "import ({name}): {:.0} readings/s ({} readings of {} in {:.2} s)",
                report.rate(),
                report.stored,
                london.display(),
                report.elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// A migrated, empty store: SQLite in `dir`, or a new database on the PostgreSQL `server`.
async fn fresh_store(dir: &Path, server: Option<&str>) -> Result<Arc<dyn Store>> {
    let url = match server {
        None => ecocityhub_store::testing::sqlite_url(dir),
        Some(server) => {
            std::env::set_var(ecocityhub_store::testing::TEST_DATABASE_URL_VAR, server);
            ecocityhub_store::testing::fresh_postgres_url()
                .await
                .context("create a PostgreSQL database")?
        }
    };
    let store = ecocityhub_store::connect(&url).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

async fn store_insert(store: &dyn Store, n: usize) -> Result<f64> {
    let stations: Vec<Station> = (0..10)
        .map(|i| {
            Station::new(
                StationId::parse(&format!("b{i}")).unwrap(),
                format!("Bench {i}"),
                GeoPoint::new(50.0, 8.0).unwrap(),
                None,
                "UTC",
            )
            .unwrap()
        })
        .collect();
    for s in &stations {
        store.upsert_station(s).await?;
    }
    let t0 = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let readings: Vec<Reading> = (0..n)
        .map(|i| Reading {
            station: stations[i % 10].id.clone(),
            parameter: Parameter::ALL[(i / 10) % 8],
            time: t0 + chrono::Duration::hours((i / 80) as i64),
            value: (i % 997) as f64 / 10.0,
            flag: QualityFlag::Valid,
        })
        .collect();
    let started = Instant::now();
    for chunk in readings.chunks(50_000) {
        store.insert_readings(chunk).await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

#[allow(dead_code)]
async fn spawn_server(
    data_dir: &Path,
    database_url: Option<&str>,
) -> Result<(tokio::process::Child, String, Duration)> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--no-demo", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    } else {
        cmd.env_remove("DATABASE_URL");
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(addr) = line.strip_prefix("listening on ") {
            return Ok((child, addr.to_string(), started.elapsed()));
        }
    }
    bail!("the server exited before listening")
}
