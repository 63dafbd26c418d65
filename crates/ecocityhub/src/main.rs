//! The `ecocityhub` binary: one command line for every runtime.
//!
//! `serve` runs the API on this machine (or under AWS Lambda when the Lambda runtime starts the
//! process); `migrate`, `import`, `device`, `user`, `keys`, `ml`, `audit`, `waf`, `backup` and
//! `bench` manage, check and measure the platform. Commands that change state write an audit record
//! (see `audit::record`).
//! Configuration: flags, environment variables, an optional TOML file (see `config`).

mod audit;
mod backup;
mod bench;
mod bench_alerts;
mod bench_backup;
mod bench_layers;
mod bench_ml;
mod config;
mod demo;
mod device;
mod import;
mod ml;
mod platform;
mod sagemaker;
mod serve;
mod stations;
mod users;
mod waf;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ecocityhub_store::Store;

use crate::config::FileConfig;

#[derive(Parser)]
#[command(
    name = "ecocityhub",
    version,
    about = "EcoCityHub: a city's environmental platform — stations, readings, air-quality indices."
)]
struct Cli {
    /// TOML configuration file (default: ./ecocityhub.toml if it exists).
    #[arg(long, env = "ECOCITYHUB_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log format: `text` or `json`. The level comes from RUST_LOG (default: info).
    #[arg(long, env = "ECOCITYHUB_LOG_FORMAT", global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives.
#[derive(Args, Clone)]
struct StorageArgs {
    /// Data directory (the SQLite file lives here). Default: ./data
    #[arg(long, env = "ECOCITYHUB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://… for PostgreSQL, sqlite://PATH for another SQLite file.
    /// Default: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Directory of blobs (model artifacts, reports, photos, backups). Default: DATA_DIR/blobs
    #[arg(long, env = "ECOCITYHUB_BLOBS_DIR")]
    blobs_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (or the Lambda handler when AWS_LAMBDA_RUNTIME_API is set).
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Import CSV files of readings (the wide layout of the shared data, or a long layout).
    Import(ImportArgs),
    /// Create, edit and list stations.
    Station {
        #[command(subcommand)]
        command: stations::StationCommand,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Manage device API keys.
    Device {
        #[command(subcommand)]
        command: device::DeviceCommand,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Manage users of the built-in pool (the first admin comes from `user create`).
    User {
        #[command(subcommand)]
        command: users::UserCommand,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Rotate and list the keys that sign tokens.
    Keys {
        #[command(subcommand)]
        command: users::KeysCommand,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Forecasts: backtests, training, the model registry, SageMaker container contracts.
    Ml {
        #[command(subcommand)]
        command: ml::MlCommand,
    },
    /// The audit trail: verify its hash chain and signed digests, search it.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// The web application firewall: replay a labelled corpus through it.
    Waf {
        #[command(subcommand)]
        command: waf::WafCommand,
    },
    /// Backups of the database into the blob store: create, list, verify, restore, prune.
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Measure ingest, query latency, start-up time and memory; prints the numbers.
    Bench(bench::BenchArgs),
    /// The web pages' static assets (CSS, JavaScript, icons).
    Static {
        #[command(subcommand)]
        command: StaticCommand,
    },
}

#[derive(Subcommand)]
enum StaticCommand {
    /// Write every asset under its content-hashed name into DIR, for the S3 bucket behind
    /// CloudFront (upload with `Cache-Control: public, max-age=31536000, immutable`).
    Export { dir: PathBuf },
}

#[derive(Args)]
struct ImportArgs {
    /// CSV files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// CSV of stations (site, lat, lon[, name, area, timezone]) for sites not yet known.
    /// The shared data's sites are known already.
    #[arg(long)]
    stations: Option<PathBuf>,
    /// Readings per transaction.
    #[arg(long, default_value_t = import::DEFAULT_BATCH)]
    batch: usize,
    #[command(flatten)]
    storage: StorageArgs,
}

/// Opens and migrates the store described by the flags, environment and file.
async fn open_store(args: &StorageArgs, file: &FileConfig) -> Result<Arc<dyn Store>> {
    let url = config::database_url(args.data_dir.clone(), args.database_url.clone(), file)?;
    let store = ecocityhub_store::connect(&url)
        .await
        .with_context(|| format!("cannot open the database ({})", redact(&url)))?;
    store.migrate().await.context("database migration failed")?;
    Ok(Arc::new(store))
}

/// Opens the blob layer (encrypted at rest, versioned) the flags, environment and file
/// describe; on one machine its master key file is created in the data directory.
async fn open_blobs(
    args: &StorageArgs,
    file: &FileConfig,
) -> Result<ecocityhub_blobs::OpenedBlobs> {
    let data_dir = config::data_dir(args.data_dir.clone(), file);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let blobs = config::blobs_config(args.data_dir.clone(), args.blobs_dir.clone(), file);
    ecocityhub_blobs::open(&blobs, &data_dir)
        .await
        .context("cannot open the blob store")
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

fn init_logging(format: Option<&str>) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colours only for a person at a terminal, never in files, pipes or CloudWatch.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format.unwrap_or("text") {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("log format {other:?} is not one of text, json"),
    }
    Ok(())
}

async fn import_files(args: ImportArgs, file: &FileConfig) -> Result<()> {
    let store = open_store(&args.storage, file).await?;
    let mut known = demo::known_stations();
    if let Some(path) = &args.stations {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let extra =
            import::parse_stations(&text).with_context(|| format!("in {}", path.display()))?;
        known.retain(|k| !extra.iter().any(|e| e.id == k.id));
        known.extend(extra);
    }
    if args.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    for path in &args.files {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        let opts = import::ImportOptions {
            batch: args.batch,
            progress: true,
            ..Default::default()
        };
        let report = import::import(store.as_ref(), f, size, &known, &opts)
            .await
            .with_context(|| format!("importing {}", path.display()))?;
        println!(
            "{}: {} rows, {} readings stored in {:.2} s ({:.0} readings/s; {} new or changed, {} unchanged), {} rejected",
            path.display(),
            report.rows,
            report.stored,
            report.elapsed.as_secs_f64(),
            report.rate(),
            report.stored - report.unchanged,
            report.unchanged,
            report.rejected
        );
        if !report.stations_created.is_empty() {
            println!("  stations created: {}", report.stations_created.join(", "));
        }
        for c in &report.skipped_columns {
            println!("  skipped column {c}");
        }
        for e in &report.rejected_examples {
            println!("  rejected {e}");
        }
        if !report.unknown_sites.is_empty() {
            println!(
                "  skipped rows of unknown sites (give their coordinates with --stations FILE): {}",
                report
                    .unknown_sites
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let file = FileConfig::load(cli.config.as_deref())?;
    init_logging(cli.log_format.as_deref().or(file.log_format.as_deref()))?;
    match cli.command {
        Command::Serve(args) => serve::run(args, &file).await,
        Command::Migrate { storage } => {
            let store = open_store(&storage, &file).await?;
            println!("migrations applied ({})", store.backend().name());
            Ok(())
        }
        Command::Import(args) => import_files(args, &file).await,
        Command::Station { command, storage } => {
            let store = open_store(&storage, &file).await?;
            stations::run(command, &store).await
        }
        Command::Device { command, storage } => {
            let store = open_store(&storage, &file).await?;
            device::run(command, &store).await
        }
        Command::User { command, storage } => {
            let store = open_store(&storage, &file).await?;
            users::run_user(command, &store).await
        }
        Command::Keys { command, storage } => {
            let store = open_store(&storage, &file).await?;
            let blobs = open_blobs(&storage, &file).await?;
            users::run_keys(command, &store, &blobs).await
        }
        Command::Ml { command } => ml::run(command, &file).await,
        Command::Audit { command } => audit::run(command, &file).await,
        Command::Waf { command } => waf::run(command, &file),
        Command::Backup { command, storage } => backup::run(command, &storage, &file).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Static {
            command: StaticCommand::Export { dir },
        } => {
            let written = ecocityhub_web::assets::export(&dir)
                .with_context(|| format!("cannot write the assets into {}", dir.display()))?;
            for name in &written {
                println!("{}", dir.join(name).display());
            }
            eprintln!("{} assets written", written.len());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
