//! SageMaker's bring-your-own-container contracts, so the same model trains and serves inside
//! SageMaker as in EcoCityHub.
//!
//! - `ml serve-model` (inference): loads `model.json.gz` from the model directory
//!   (`/opt/ml/model`), answers `GET /ping` (200 once the model is loaded) and
//!   `POST /invocations` (JSON: the recent history of the series and optionally the station's
//!   weather → the forecast with intervals and AQI) on port 8080.
//! - `ml train-container` (training): reads `input/config/hyperparameters.json` and the CSV
//!   files of `input/data/<channel>` under the prefix (`/opt/ml`), trains, and writes
//!   `model/model.json.gz` with its report; on any error it writes the reason to
//!   `output/failure` and exits non-zero, as SageMaker expects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use ecocityhub_domain::reading::parse_time;
use ecocityhub_domain::{Parameter, StationId};
use ecocityhub_ml::aqi::{forecast_aqi_after, HourAqi};
use ecocityhub_ml::artifact::{checksum, Artifact};
use ecocityhub_ml::data::{load_series, load_weather, FORECASTABLE};
use ecocityhub_ml::training::fit_artifact;
use ecocityhub_ml::{fmt_ts, HourlySeries, TrainOptions, Weather};
use serde::{Deserialize, Serialize};

#[derive(Args)]
pub struct ServeModelArgs {
    /// Directory holding model.json.gz (SageMaker mounts the model here).
    #[arg(long, env = "SM_MODEL_DIR", default_value = "/opt/ml/model")]
    model_dir: PathBuf,
    /// Address to listen on, HOST:PORT (a host name like localhost:8080 works too); SageMaker
    /// sends requests to port 8080.
    #[arg(long, env = "ECOCITYHUB_MODEL_BIND", default_value = "0.0.0.0:8080", value_name = "HOST:PORT", value_parser = crate::config::parse_bind)]
    bind: crate::config::BindAddress,
}

#[derive(Args)]
pub struct TrainContainerArgs {
    /// SageMaker's directory prefix.
    #[arg(long, env = "ECOCITYHUB_SAGEMAKER_PREFIX", default_value = "/opt/ml")]
    prefix: PathBuf,
}

/// The model file inside the model directory, and its checksum beside it.
const MODEL_FILE: &str = ecocityhub_ml::artifact::FILE_NAME;
const CHECKSUM_FILE: &str = "model.json.gz.sha256";

/// Reads and checks the model of a model directory.
pub fn load_model_dir(dir: &Path) -> Result<Artifact> {
    let path = dir.join(MODEL_FILE);
    let bytes = std::fs::read(&path)
        .with_context(|| format!("cannot read the model {}", path.display()))?;
    if let Ok(expected) = std::fs::read_to_string(dir.join(CHECKSUM_FILE)) {
        if expected.trim() != checksum(&bytes) {
            bail!(
                "{} does not match its checksum in {CHECKSUM_FILE}: the file is damaged",
                path.display()
            );
        }
    }
    Artifact::from_bytes(&bytes).with_context(|| format!("cannot load {}", path.display()))
}

/// One measured value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimedValue {
    time: String,
    value: f64,
}

/// The body of `POST /invocations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvocationRequest {
    /// Hourly values of the forecast parameter, up to the forecast origin (a week is enough).
    history: Vec<TimedValue>,
    /// The station's weather by parameter name (temperature, relativehumidity, dewpoint,
    /// wind_speed, wind_direction, pressure).
    #[serde(default)]
    weather: HashMap<String, Vec<TimedValue>>,
}

#[derive(Debug, Serialize)]
struct InvocationHour {
    time: String,
    horizon_hours: u32,
    value: f64,
    lower: f64,
    upper: f64,
    aqi: Option<HourAqi>,
}

#[derive(Debug, Serialize)]
struct InvocationResponse {
    station: String,
    parameter: Parameter,
    unit: &'static str,
    origin: String,
    interval_level: f64,
    hours: Vec<InvocationHour>,
}

fn series_of(values: &[TimedValue]) -> Result<HourlySeries, String> {
    let points = values
        .iter()
        .map(|v| parse_time(&v.time).map(|t| (t.timestamp(), v.value)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HourlySeries::from_points(points))
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": detail.into(),
        })
        .to_string(),
    )
        .into_response()
}

/// Turns an invocation into a forecast, or says what is wrong with it.
fn invoke(artifact: &Artifact, request: InvocationRequest) -> Result<InvocationResponse, String> {
    let series = series_of(&request.history)?;
    let origin = series
        .last_observed()
        .ok_or("history has no values: send at least the last hours of the series")?;
    let mut weather = Weather::default();
    for (name, values) in &request.weather {
        let parameter: Parameter = name
            .parse()
            .map_err(|_| format!("unknown weather parameter {name:?}"))?;
        *weather
            .slot_mut(parameter)
            .ok_or_else(|| format!("{parameter} is not a weather parameter"))? =
            Some(series_of(values)?);
    }
    let points = artifact.model.forecast_from(&series, &weather, origin);
    let parameter = artifact.meta.parameter;
    let aqi = forecast_aqi_after(parameter, &series, &points);
    Ok(InvocationResponse {
        station: artifact.meta.station.clone(),
        parameter,
        unit: parameter.canonical_unit().symbol(),
        origin: fmt_ts(origin),
        interval_level: artifact.model.interval_level,
        hours: points
            .iter()
            .zip(aqi)
            .map(|(p, aqi)| InvocationHour {
                time: fmt_ts(p.ts),
                horizon_hours: p.horizon,
                value: p.value,
                lower: p.lower,
                upper: p.upper,
                aqi,
            })
            .collect(),
    })
}

async fn invocations(
    State(artifact): State<Arc<Artifact>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?} is not supported: send application/json"),
        );
    }
    let request: InvocationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
        }
    };
    match tokio::task::spawn_blocking(move || invoke(&artifact, request)).await {
        Ok(Ok(response)) => Json(response).into_response(),
        Ok(Err(message)) => problem(StatusCode::BAD_REQUEST, message),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("inference failed: {e}"),
        ),
    }
}

/// The inference server's routes over a loaded model.
pub fn model_router(artifact: Arc<Artifact>) -> Router {
    Router::new()
        .route("/ping", get(|| async { StatusCode::OK }))
        .route("/invocations", post(invocations))
        .with_state(artifact)
}

pub async fn serve_model(args: ServeModelArgs) -> Result<()> {
    let artifact = Arc::new(load_model_dir(&args.model_dir)?);
    tracing::info!(
        station = %artifact.meta.station,
        parameter = %artifact.meta.parameter,
        trained_to = %fmt_ts(artifact.meta.training_to),
        "model loaded"
    );
    let listener = tokio::net::TcpListener::bind(&args.bind.addrs[..])
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, model_router(artifact)).await?;
    Ok(())
}

/// SageMaker passes every hyperparameter as a string; numbers are accepted too.
fn hyperparameter(h: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    match h.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn parse_hyper<T: std::str::FromStr>(
    h: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<T>> {
    hyperparameter(h, name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| anyhow::anyhow!("hyperparameter {name}={v:?} is not valid"))
        })
        .transpose()
}

/// The training container's work; errors are reported by the caller.
async fn train_in_container(prefix: &Path) -> Result<String> {
    let config = prefix.join("input/config/hyperparameters.json");
    let hyper: serde_json::Map<String, serde_json::Value> = match std::fs::read_to_string(&config) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object", config.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", config.display())),
    };
    let known = [
        "parameter",
        "station",
        "channel",
        "horizon",
        "trees",
        "learning_rate",
        "max_depth",
        "max_rows",
        "robust_refits",
    ];
    if let Some(unknown) = hyper.keys().find(|k| !known.contains(&k.as_str())) {
        bail!(
            "unknown hyperparameter {unknown:?}; known: {}",
            known.join(", ")
        );
    }
    let parameter: Parameter = parse_hyper(&hyper, "parameter")?
        .context("the hyperparameter `parameter` is required (pm25, pm10, no2, o3, so2 or co)")?;
    if !FORECASTABLE.contains(&parameter) {
        bail!("{parameter} is not forecast; use pm25, pm10, no2, o3, so2 or co");
    }
    let mut options = TrainOptions::default();
    if let Some(v) = parse_hyper(&hyper, "horizon")? {
        options.horizon = v;
    }
    if let Some(v) = parse_hyper(&hyper, "trees")? {
        options.trees = v;
    }
    if let Some(v) = parse_hyper(&hyper, "learning_rate")? {
        options.learning_rate = v;
    }
    if let Some(v) = parse_hyper(&hyper, "max_depth")? {
        options.max_depth = v;
    }
    if let Some(v) = parse_hyper(&hyper, "max_rows")? {
        options.max_rows = v;
    }
    if let Some(v) = parse_hyper(&hyper, "robust_refits")? {
        options.robust_refits = v;
    }
    let channel = hyperparameter(&hyper, "channel").unwrap_or_else(|| "train".into());
    let data_dir = prefix.join("input/data").join(&channel);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data_dir)
        .with_context(|| {
            format!(
                "cannot read the {channel:?} channel at {}",
                data_dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    // stations.csv (site, lat, lon…) names sites the shipped list does not know.
    let mut known_stations = crate::demo::known_stations();
    if let Some(pos) = files
        .iter()
        .position(|p| p.file_name().is_some_and(|n| n == "stations.csv"))
    {
        let path = files.remove(pos);
        let extra = crate::import::parse_stations(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("in {}", path.display()))?;
        known_stations.retain(|k| !extra.iter().any(|e| e.id == k.id));
        known_stations.extend(extra);
    }
    if files.is_empty() {
        bail!("no CSV files in {}", data_dir.display());
    }
    // The importer is the one parser of readings: load the files into a scratch store.
    let scratch = tempfile::tempdir()?;
    let url = crate::config::database_url(
        Some(scratch.path().to_path_buf()),
        None,
        &crate::config::FileConfig::default(),
    )?;
    let store = ecocityhub_store::connect(&url).await?;
    use ecocityhub_store::Store;
    store.migrate().await?;
    for path in &files {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let report =
            crate::import::import(&store, file, None, &known_stations, &Default::default())
                .await
                .with_context(|| format!("importing {}", path.display()))?;
        if !report.unknown_sites.is_empty() {
            bail!(
                "{}: unknown sites {:?}; add a stations.csv (site, lat, lon) to the channel",
                path.display(),
                report.unknown_sites
            );
        }
    }
    let with_parameter: Vec<StationId> = store
        .series()
        .await?
        .into_iter()
        .filter(|s| s.parameter == parameter)
        .map(|s| s.station)
        .collect();
    let station = match hyperparameter(&hyper, "station") {
        Some(wanted) => with_parameter
            .into_iter()
            .find(|s| s.as_str() == wanted)
            .with_context(|| format!("the data has no {parameter} readings of station {wanted:?}"))?,
        None => match with_parameter.as_slice() {
            [one] => one.clone(),
            [] => bail!("the data has no {parameter} readings"),
            many => bail!(
                "the data has {parameter} readings of {} stations; choose one with the `station` hyperparameter",
                many.len()
            ),
        },
    };
    let series = load_series(&store, &station, parameter, 0, i64::MAX / 2).await?;
    let weather = load_weather(&store, &station, 0, i64::MAX / 2).await?;
    let name = station.to_string();
    let (artifact, report) = tokio::task::spawn_blocking(move || {
        fit_artifact(&series, &weather, &name, parameter, &options)
    })
    .await??;
    let model_dir = prefix.join("model");
    std::fs::create_dir_all(&model_dir)
        .with_context(|| format!("cannot create {}", model_dir.display()))?;
    let bytes = artifact.to_bytes();
    std::fs::write(model_dir.join(MODEL_FILE), &bytes)?;
    std::fs::write(model_dir.join(CHECKSUM_FILE), checksum(&bytes))?;
    std::fs::write(model_dir.join("report.md"), &report.markdown)?;
    for (file, svg) in &report.charts {
        std::fs::write(model_dir.join(file), svg)?;
    }
    let last = artifact.meta.holdout_scores.last();
    Ok(format!(
        "trained {station}/{parameter}: {} rows, {} trees{}; wrote {}",
        artifact.meta.rows,
        artifact.meta.trees,
        last.map(|s| format!(
            ", {} h ahead MAE {:.2} vs persistence {:.2}",
            s.horizon, s.model.mae, s.persistence.mae
        ))
        .unwrap_or_default(),
        model_dir.join(MODEL_FILE).display()
    ))
}

pub async fn train_container(args: TrainContainerArgs) -> Result<()> {
    match train_in_container(&args.prefix).await {
        Ok(summary) => {
            println!("{summary}");
            Ok(())
        }
        Err(e) => {
            let output = args.prefix.join("output");
            let message = format!("{e:#}");
            // SageMaker shows the content of output/failure as the job's failure reason.
            if std::fs::create_dir_all(&output).is_ok() {
                let _ = std::fs::write(output.join("failure"), &message);
            }
            Err(e)
        }
    }
}
