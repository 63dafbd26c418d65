//! `ecocityhub ml …`: backtests, training runs, the model registry from the command line.
//! The SageMaker container contracts (`serve-model`, `train-container`) live in `sagemaker`.
//! Promotions and rollbacks are audited (`PromoteModel`, `RollbackModel`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ecocityhub_domain::reading::parse_time;
use ecocityhub_domain::{Parameter, StationId};
use ecocityhub_ml::backtest::{backtest, BacktestOptions};
use ecocityhub_ml::data::{load_series, load_weather};
use ecocityhub_ml::jobs::{JobOutcome, TrainedModel};
use ecocityhub_ml::registry::Registry;
use ecocityhub_ml::report::render;
use ecocityhub_ml::series::HOUR;
use ecocityhub_ml::training::{plan, train_series, TrainRequest};
use ecocityhub_ml::{fmt_ts, HorizonScores, TrainOptions};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::config::FileConfig;
use crate::sagemaker;
use crate::{open_store, StorageArgs};

#[derive(Subcommand)]
pub enum MlCommand {
    /// Rolling-origin backtest over a window of imported data: before each fold a model is
    /// trained on the data before it only; prints MAE/RMSE per horizon for the model and the
    /// baselines (persistence, same hour yesterday, climatology).
    Backtest(BacktestArgs),
    /// Train forecast models (all forecastable series by default) and register them; a series'
    /// first model serves at once.
    Train(TrainArgs),
    /// List registered models.
    Models {
        /// Only this station's models.
        #[arg(long)]
        station: Option<String>,
        /// Only models of this parameter (`no2`, `pm25`…).
        #[arg(long)]
        parameter: Option<Parameter>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Serve a model version (its artifact is checked first).
    Promote {
        /// Model id (see `ml models`).
        id: i64,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Serve again the model that served before the latest promotion.
    Rollback {
        /// The station of the series.
        #[arg(long)]
        station: String,
        /// The parameter of the series (`no2`, `pm25`…).
        #[arg(long)]
        parameter: Parameter,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// SageMaker inference container: GET /ping and POST /invocations, model from /opt/ml/model.
    ServeModel(sagemaker::ServeModelArgs),
    /// SageMaker training container: reads /opt/ml/input, writes /opt/ml/model (or
    /// /opt/ml/output/failure on error).
    TrainContainer(sagemaker::TrainContainerArgs),
}

#[derive(Args)]
pub struct BacktestArgs {
    /// The station whose series to backtest.
    #[arg(long)]
    station: String,
    /// The parameter to forecast (`no2`, `pm25`…).
    #[arg(long)]
    parameter: Parameter,
    /// First forecast origin (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    from: String,
    /// Origins end before this.
    #[arg(long)]
    to: String,
    /// Hours ahead (1–48).
    #[arg(long, default_value_t = 24)]
    horizon: u32,
    /// Retrain every this many days.
    #[arg(long, default_value_t = 30)]
    retrain_days: u32,
    /// Forecast from every N-th hour.
    #[arg(long, default_value_t = 1)]
    stride: u32,
    #[command(flatten)]
    model: ModelArgs,
    /// Write the report (report.md and SVG charts) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    storage: StorageArgs,
}

/// The model's training options, to try others than the defaults in a backtest.
#[derive(Args)]
pub struct ModelArgs {
    /// Trees per horizon.
    #[arg(long)]
    trees: Option<usize>,
    /// Shrinkage of each tree.
    #[arg(long)]
    learning_rate: Option<f32>,
    /// Depth of each tree.
    #[arg(long)]
    max_depth: Option<usize>,
    /// Origins each horizon is fitted on, at most.
    #[arg(long)]
    max_rows: Option<usize>,
    /// Reweighted refits towards the median (0: a plain squared-loss fit).
    #[arg(long)]
    robust_refits: Option<u32>,
}

impl ModelArgs {
    fn options(&self, horizon: u32) -> Result<TrainOptions> {
        let defaults = TrainOptions::default();
        let options = TrainOptions {
            horizon,
            trees: self.trees.unwrap_or(defaults.trees),
            learning_rate: self.learning_rate.unwrap_or(defaults.learning_rate),
            max_depth: self.max_depth.unwrap_or(defaults.max_depth),
            max_rows: self.max_rows.unwrap_or(defaults.max_rows),
            robust_refits: self.robust_refits.unwrap_or(defaults.robust_refits),
            ..defaults
        };
        if options.trees == 0 || options.max_depth == 0 || options.max_rows == 0 {
            bail!("--trees, --max-depth and --max-rows must be at least 1");
        }
        if !(options.learning_rate > 0.0 && options.learning_rate <= 1.0) {
            bail!("--learning-rate must be above 0 and at most 1");
        }
        if options.robust_refits > 5 {
            bail!("--robust-refits must be 0 to 5");
        }
        Ok(options)
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// Only these stations (repeatable).
    #[arg(long)]
    station: Vec<String>,
    /// Only these parameters (repeatable).
    #[arg(long)]
    parameter: Vec<Parameter>,
    /// Serve the new models at once, also where another model serves.
    #[arg(long)]
    promote: bool,
    #[command(flatten)]
    storage: StorageArgs,
}

/// The registry over the configured store and blob directory.
pub async fn open_registry(storage: &StorageArgs, file: &FileConfig) -> Result<Registry> {
    let store = open_store(storage, file).await?;
    let blobs = crate::open_blobs(storage, file).await?;
    Ok(Registry::new(store, blobs.store()))
}

/// The model an audit record names.
fn model_json(m: &ecocityhub_store::ml::ModelRecord) -> serde_json::Value {
    serde_json::json!({
        "modelId": m.id, "station": m.station.as_str(), "parameter": m.parameter,
        "version": m.version,
    })
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

/// The per-horizon table as text.
pub fn scores_text(scores: &[HorizonScores]) -> String {
    let mut out = format!(
        "{:>4} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}\n",
        "h", "n", "MAE", "persist", "yesterday", "climat.", "RMSE", "p.RMSE", "skill", "interval"
    );
    for s in scores {
        out.push_str(&format!(
            "{:>4} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.0}% {:>7.0}%\n",
            s.horizon,
            s.n,
            s.model.mae,
            s.persistence.mae,
            s.seasonal_naive.mae,
            s.climatology.mae,
            s.model.rmse,
            s.persistence.rmse,
            s.skill_vs_persistence * 100.0,
            s.interval_coverage * 100.0
        ));
    }
    out
}

#[derive(Serialize)]
struct BacktestJson<'a> {
    station: &'a str,
    parameter: Parameter,
    unit: &'a str,
    from: String,
    to: String,
    folds: usize,
    origins: u64,
    horizons: &'a [HorizonScores],
}

async fn run_backtest(args: BacktestArgs, file: &FileConfig) -> Result<()> {
    let from = parse_time(&args.from)
        .map_err(anyhow::Error::msg)?
        .timestamp();
    let to = parse_time(&args.to)
        .map_err(anyhow::Error::msg)?
        .timestamp();
    if to <= from {
        bail!("--to must be after --from");
    }
    if !(1..=48).contains(&args.horizon) {
        bail!("--horizon must be 1 to 48 hours");
    }
    let store = open_store(&args.storage, file).await?;
    let station = StationId::parse(&args.station).map_err(|e| anyhow::anyhow!("{e}"))?;
    if store.station(&station).await?.is_none() {
        bail!("station {station} does not exist");
    }
    let until = to + args.horizon as i64 * HOUR + HOUR;
    let series = load_series(store.as_ref(), &station, args.parameter, 0, until).await?;
    if series.observed() == 0 {
        bail!("{station} has no {} readings", args.parameter);
    }
    if series.mean_between(from, to).is_none() {
        bail!(
            "{station} has no {} readings from {} to {}: nothing to backtest (its readings run from {} to {})",
            args.parameter,
            fmt_ts(from),
            fmt_ts(to),
            series.first_observed().map(fmt_ts).unwrap_or_default(),
            series.last_observed().map(fmt_ts).unwrap_or_default(),
        );
    }
    let weather = load_weather(store.as_ref(), &station, 0, until).await?;
    let options = BacktestOptions {
        from,
        to,
        retrain_every_hours: args.retrain_days.max(1) * 24,
        stride: args.stride,
        train: args.model.options(args.horizon)?,
    };
    let folds = ((to - from) as u64).div_ceil(options.retrain_every_hours as u64 * HOUR as u64);
    let progress = bar(folds, "folds");
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let r = backtest(&series, &weather, &options, &mut |done, _| {
            progress.set_position(done as u64)
        });
        progress.finish_and_clear();
        r
    })
    .await??;
    if result.origins == 0 {
        bail!(
            "no forecast origin from {} to {} could be scored: {station} has too few {} readings there with {} hours after them",
            fmt_ts(result.from),
            fmt_ts(result.to),
            args.parameter,
            args.horizon
        );
    }
    let unit = args.parameter.canonical_unit().symbol();
    if let Some(dir) = &args.report {
        let report = render(
            &format!("Backtest of {station} · {}", args.parameter),
            &[
                (
                    "Origins",
                    format!("{} to {}", fmt_ts(result.from), fmt_ts(result.to)),
                ),
                (
                    "Folds (retrained each time on earlier data only)",
                    result.folds.to_string(),
                ),
                ("Origins scored", result.origins.to_string()),
            ],
            &result.horizons,
            &result.evaluation.trace,
            unit,
        )?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("report.md"), &report.markdown)?;
        for (name, svg) in &report.charts {
            std::fs::write(dir.join(name), svg)?;
        }
    }
    if args.json {
        let out = BacktestJson {
            station: station.as_str(),
            parameter: args.parameter,
            unit,
            from: fmt_ts(result.from),
            to: fmt_ts(result.to),
            folds: result.folds,
            origins: result.origins,
            horizons: &result.horizons,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "backtest {station} {} ({unit}), origins {} to {}: {} folds, {} origins, {:.1} s",
            args.parameter,
            fmt_ts(result.from),
            fmt_ts(result.to),
            result.folds,
            result.origins,
            started.elapsed().as_secs_f64()
        );
        print!("{}", scores_text(&result.horizons));
    }
    Ok(())
}

async fn run_train(args: TrainArgs, file: &FileConfig) -> Result<()> {
    let registry = open_registry(&args.storage, file).await?;
    let request = TrainRequest {
        stations: args.station,
        parameters: args.parameter,
        promote: args.promote,
    };
    let series = match plan(&registry, &request).await {
        Ok(series) => series,
        Err(e) => {
            let refused = JobOutcome::failed(e.code(), e.to_string(), Some(request));
            record_training(&registry, &refused).await?;
            return Err(e.into());
        }
    };
    let progress = bar(series.len() as u64, "models");
    let started = std::time::Instant::now();
    let (mut models, mut failures) = (Vec::new(), Vec::new());
    for target in &series {
        progress.set_message(target.to_string());
        match train_series(
            &registry,
            target,
            &TrainOptions::default(),
            request.promote,
            None,
            "cli",
        )
        .await
        {
            Ok(outcome) => {
                progress.println(&outcome.summary);
                models.push(TrainedModel {
                    model: outcome.record,
                    promoted: outcome.promoted,
                });
            }
            Err(e) => {
                progress.println(format!("{target}: failed: {e}"));
                failures.push(format!("{target}: {e}"));
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let outcome = JobOutcome::of_run(request, series.len(), models, failures);
    println!(
        "{} in {:.1} s",
        outcome.message,
        started.elapsed().as_secs_f64()
    );
    record_training(&registry, &outcome).await?;
    if outcome.models.is_empty() {
        bail!("every training run failed");
    }
    Ok(())
}

/// The audit records of a `ml train` run (`TrainModels` and its promotions), as the job
/// worker writes them for jobs; each is tried, the first failure returned.
async fn record_training(registry: &Registry, outcome: &JobOutcome) -> Result<()> {
    let events = ecocityhub_api::job_audit::outcome_events(
        crate::audit::SOURCE,
        "TrainModels",
        ecocityhub_observe::audit::UserIdentity::cli(),
        serde_json::json!({}),
        outcome,
    );
    let mut first_error = None;
    for event in events {
        if let Err(e) = crate::audit::record(registry.store(), event).await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

pub async fn run(command: MlCommand, file: &FileConfig) -> Result<()> {
    match command {
        MlCommand::Backtest(args) => run_backtest(args, file).await,
        MlCommand::Train(args) => run_train(args, file).await,
        MlCommand::Models {
            station,
            parameter,
            json,
            storage,
        } => {
            let registry = open_registry(&storage, file).await?;
            let station = station
                .map(|s| StationId::parse(&s).map_err(|e| anyhow::anyhow!("{e}")))
                .transpose()?;
            let models = registry.store().models(station.as_ref(), parameter).await?;
            if json {
                let rows: Vec<_> = models
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "id": m.id, "station": m.station.as_str(), "parameter": m.parameter,
                            "version": m.version, "status": m.status,
                            "created_at": fmt_ts(m.created_at.timestamp()),
                            "training_to": fmt_ts(m.training_to.timestamp()),
                            "size_bytes": m.size_bytes, "checksum": m.checksum,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if models.is_empty() {
                println!("no models yet: train some with `ecocityhub ml train`");
            } else {
                println!(
                    "{:>5}  {:<24} {:<6} {:>4}  {:<9}  {:<20}  {:>9}",
                    "id", "station", "param", "v", "status", "trained", "size"
                );
                for m in models {
                    println!(
                        "{:>5}  {:<24} {:<6} {:>4}  {:<9}  {:<20}  {:>7} kB",
                        m.id,
                        m.station.as_str(),
                        m.parameter.as_str(),
                        m.version,
                        m.status,
                        fmt_ts(m.created_at.timestamp()),
                        m.size_bytes / 1024
                    );
                }
            }
            Ok(())
        }
        MlCommand::Promote { id, storage } => {
            let registry = open_registry(&storage, file).await?;
            let m = registry.promote(id, "cli").await?;
            let event = crate::audit::event("PromoteModel")
                .parameters(serde_json::json!({"modelId": id}))
                .response(model_json(&m));
            crate::audit::record(registry.store(), event).await?;
            println!(
                "{}/{} v{} (model {}) is serving",
                m.station, m.parameter, m.version, m.id
            );
            Ok(())
        }
        MlCommand::Rollback {
            station,
            parameter,
            storage,
        } => {
            let registry = open_registry(&storage, file).await?;
            let station = StationId::parse(&station).map_err(|e| anyhow::anyhow!("{e}"))?;
            let m = registry.rollback(&station, parameter, "cli").await?;
            let event = crate::audit::event("RollbackModel")
                .parameters(
                    serde_json::json!({"station": station.as_str(), "parameter": parameter}),
                )
                .response(model_json(&m));
            crate::audit::record(registry.store(), event).await?;
            println!(
                "rolled back: {}/{} v{} (model {}) is serving again",
                m.station, m.parameter, m.version, m.id
            );
            Ok(())
        }
        MlCommand::ServeModel(args) => sagemaker::serve_model(args).await,
        MlCommand::TrainContainer(args) => sagemaker::train_container(args).await,
    }
}
