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

use std::path::{Path, PathBuf};
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

/// Where the data lives: the same flags, environment variables and TOML keys (`data_dir`,
/// `database_url`, `blobs_dir`) for every command that opens the store. They are global to
/// their command, so `device create --data-dir D` and `device --data-dir D create` are alike.
#[derive(Args, Clone)]
pub struct StorageArgs {
    /// Data directory (the SQLite file ecocityhub.db and, by default, the blobs and the
    /// master key live here). Default: the config file's data_dir, else ./data
    #[arg(long, env = "ECOCITYHUB_DATA_DIR", value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://… for PostgreSQL, sqlite://PATH for another SQLite file.
    /// Default: the config file's database_url, else SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", global = true)]
    database_url: Option<String>,
    /// Directory of blobs (model artifacts, reports, photos, backups). Default: the config
    /// file's blobs_dir, else DATA_DIR/blobs
    #[arg(long, env = "ECOCITYHUB_BLOBS_DIR", value_name = "DIR", global = true)]
    blobs_dir: Option<PathBuf>,
    /// Make a new, empty database (and data directory) if there is none where the flags point.
    /// Without it such a command is refused, naming the path; `serve`, `import`, `migrate` and
    /// `backup restore` always make one (and say so).
    #[arg(long, global = true)]
    create: bool,
    /// Whether the command makes a new store anyway (set by the command, not a flag).
    #[arg(skip)]
    policy: Create,
}

/// May a command make a new, empty store where there is none?
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Create {
    /// It makes one (and says so on standard error): `serve`, `import`, `migrate`,
    /// `backup restore`.
    Always,
    /// Only with `--create`; otherwise it is refused, naming the absolute path.
    #[default]
    IfAsked,
}

impl StorageArgs {
    /// The same flags, for a command that makes a new store where there is none.
    fn creating(mut self) -> StorageArgs {
        self.policy = Create::Always;
        self
    }

    fn may_create(&self) -> bool {
        self.policy == Create::Always || self.create
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (or the Lambda handler when AWS_LAMBDA_RUNTIME_API is set); makes a
    /// new database (with the demo city) where there is none, and says so.
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit (makes a new database where there is none, and says
    /// so).
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Import CSV files of readings (the wide layout of the shared data, or a long layout);
    /// makes a new database where there is none, and says so.
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
    Export {
        /// The directory to write the assets into (made if missing).
        dir: PathBuf,
    },
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
    // `import` is how data gets in: it makes a new database where there is none (and says so).
    #[command(flatten)]
    storage: StorageArgs,
}

/// How many new station ids an import summary names before "… and N more".
const STATIONS_NAMED: usize = 5;

/// `a, b, c, d, e … and 66 more`.
fn first_few(ids: &[String], n: usize) -> String {
    let mut text = ids.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if ids.len() > n {
        text.push_str(&format!(" … and {} more", ids.len() - n));
    }
    text
}

/// What an import of one file did, as the lines `import` prints.
fn import_summary(path: &Path, report: &import::ImportReport) -> String {
    let mut out = format!(
        "{}: {} rows in {:.2} s ({:.0} readings/s)\n  readings: {} new or changed, {} unchanged, {} rejected ({} readings stored)\n",
        path.display(),
        report.rows,
        report.elapsed.as_secs_f64(),
        report.rate(),
        report.stored - report.unchanged,
        report.unchanged,
        report.rejected,
        report.stored,
    );
    let new = &report.stations_created;
    out.push_str(&format!("  stations: {} new", new.len()));
    if !new.is_empty() {
        out.push_str(&format!(" ({})", first_few(new, STATIONS_NAMED)));
    }
    out.push_str(&format!(", {} known already\n", report.stations_known));
    for c in &report.skipped_columns {
        out.push_str(&format!("  skipped column {c}\n"));
    }
    for e in &report.rejected_examples {
        out.push_str(&format!("  rejected {e}\n"));
    }
    if !report.unknown_sites.is_empty() {
        let sites: Vec<String> = report.unknown_sites.iter().cloned().collect();
        out.push_str(&format!(
            "  skipped rows of {} unknown sites (give their coordinates with --stations FILE): {}\n",
            sites.len(),
            first_few(&sites, STATIONS_NAMED)
        ));
    }
    out
}

/// The absolute form of a path, for messages.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The SQLite file a database URL names (`None` for PostgreSQL or an in-memory database).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

/// Before a command opens the store: when the SQLite database the flags, environment and file
/// name does not exist, a command that may make one makes its directory and says so on
/// standard error; any other command is refused, naming the absolute path and `--create`.
/// (A PostgreSQL database is never made here: its server has it or refuses.) Returns the
/// database URL.
pub fn prepare_database(args: &StorageArgs, file: &FileConfig) -> Result<String> {
    let url = config::database_url(args.data_dir.clone(), args.database_url.clone(), file)?;
    let Some(path) = sqlite_file(&url) else {
        return Ok(url);
    };
    if path.exists() {
        return Ok(url);
    }
    let shown = absolute(&path);
    if !args.may_create() {
        anyhow::bail!(
            "no such database file {}: this command does not make a new, empty database. \
             Point --data-dir (ECOCITYHUB_DATA_DIR, data_dir in the config file) or --database-url \
             (DATABASE_URL) at the existing one, or pass --create to make one there",
            shown.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", absolute(dir).display()))?;
    }
    eprintln!("note: making a new, empty database {}", shown.display());
    Ok(url)
}

/// Opens and migrates the store described by the flags, environment and file; a missing
/// SQLite database is made only where the command may make one (see [`prepare_database`]).
async fn open_store(args: &StorageArgs, file: &FileConfig) -> Result<Arc<dyn Store>> {
    let url = prepare_database(args, file)?;
    let store = ecocityhub_store::connect(&url)
        .await
        .with_context(|| format!("cannot open the database ({})", redact(&url)))?;
    store.migrate().await.context("database migration failed")?;
    Ok(Arc::new(store))
}

/// Opens the blob layer (encrypted at rest, versioned) the flags, environment and file
/// describe; on one machine its master key file is created in the data directory. A missing
/// data directory is made only where the command may make one: a new one would hold a new
/// master key that cannot open what the old one sealed.
async fn open_blobs(
    args: &StorageArgs,
    file: &FileConfig,
) -> Result<ecocityhub_blobs::OpenedBlobs> {
    let data_dir = config::data_dir(args.data_dir.clone(), file);
    let blobs = config::blobs_config(args.data_dir.clone(), args.blobs_dir.clone(), file);
    let needs_dir = blobs.backend == ecocityhub_blobs::config::Backend::Local
        || blobs.keys.source == ecocityhub_blobs::config::KeySource::Local;
    if needs_dir && !data_dir.exists() {
        let shown = absolute(&data_dir);
        if !args.may_create() {
            anyhow::bail!(
                "no such data directory {}: it holds the blob store's master key, and this command \
                 does not make a new one. Point --data-dir (ECOCITYHUB_DATA_DIR) at the existing \
                 one, or pass --create to make one there",
                shown.display()
            );
        }
        eprintln!("note: making a new data directory {}", shown.display());
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
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
    if args.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    let store = open_store(&args.storage.clone().creating(), file).await?;
    let mut known = demo::known_stations();
    if let Some(path) = &args.stations {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let extra =
            import::parse_stations(&text).with_context(|| format!("in {}", path.display()))?;
        known.retain(|k| !extra.iter().any(|e| e.id == k.id));
        known.extend(extra);
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
        print!("{}", import_summary(path, &report));
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
            let store = open_store(&storage.creating(), &file).await?;
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
        Command::Backup { command, storage } => {
            // A restore makes the database it restores into (and refuses one that is not
            // empty); the WAL commands and recover touch no database (the server they serve
            // runs them); the others need one there.
            let storage = match command {
                backup::BackupCommand::Restore { .. } => storage.creating(),
                backup::BackupCommand::WalPush { .. }
                | backup::BackupCommand::WalFetch { .. }
                | backup::BackupCommand::Recover { .. } => storage,
                _ => {
                    prepare_database(&storage, &file)?;
                    storage
                }
            };
            let config_path = cli.config.clone().or_else(|| {
                let implicit = Path::new("ecocityhub.toml");
                implicit.exists().then(|| implicit.to_path_buf())
            });
            backup::run(command, &storage, &file, config_path.as_deref()).await
        }
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

    /// Every argument of every command, but clap's own help and version, says what it is for.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let mut cli = Cli::command();
        cli.build();
        walk(&cli, "ecocityhub", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    /// The store's flags are the same everywhere, and may follow the subcommand.
    #[test]
    fn storage_flags_parse_after_every_store_subcommand() {
        for args in [
            vec![
                "device",
                "create",
                "--station",
                "s",
                "--data-dir",
                "d",
                "--create",
            ],
            vec![
                "device",
                "--data-dir",
                "d",
                "list",
                "--station",
                "s",
                "--json",
            ],
            vec!["user", "list", "--database-url", "sqlite://x.db", "--json"],
            vec![
                "keys",
                "list",
                "--blobs-dir",
                "b",
                "--data-dir",
                "d",
                "--json",
            ],
            vec!["station", "list", "--data-dir", "d", "--json"],
            vec!["backup", "list", "--data-dir", "d", "--json"],
            vec!["ml", "models", "--data-dir", "d", "--json"],
            vec!["audit", "search", "--data-dir", "d", "--config", "c.toml"],
            vec!["import", "f.csv", "--data-dir", "d"],
            vec!["migrate", "--data-dir", "d"],
            vec!["serve", "--data-dir", "d", "--bind", "localhost:0"],
        ] {
            let mut full = vec!["ecocityhub"];
            full.extend(&args);
            if let Err(e) = Cli::try_parse_from(&full) {
                panic!("{args:?}: {e}");
            }
        }
    }

    #[test]
    fn import_summaries_name_the_first_few_new_stations() {
        let ids: Vec<String> = (1..=71).map(|i| format!("s{i}")).collect();
        assert_eq!(first_few(&ids, 5), "s1, s2, s3, s4, s5 … and 66 more");
        assert_eq!(first_few(&ids[..2], 5), "s1, s2");
    }

    #[test]
    fn sqlite_files_are_found_in_urls() {
        assert_eq!(
            sqlite_file("sqlite://data/x.db"),
            Some(PathBuf::from("data/x.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:x.db?mode=rwc"),
            Some(PathBuf::from("x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
