//! `/api/v1/ml/*` and the station forecast: the SageMaker layer over HTTP. Forecasts, model
//! lists and reports are public (anyone may see how good the forecasts are); training jobs,
//! promotions and rollbacks are for admins (the Cedar policies say so).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ecocityhub_domain::{Parameter, StationId};
use ecocityhub_identity::{Action, Resource};
use ecocityhub_ml::data::FORECASTABLE;
use ecocityhub_ml::{fmt_ts, HorizonScores};
use ecocityhub_store::ml::{CancelOutcome, JobRecord, ModelRecord};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::signed_in::SignedIn;
use crate::state::AppState;

fn station_id(id: &str) -> ApiResult<StationId> {
    StationId::parse(id).map_err(|e| ApiError::NotFound(format!("station {id:?}: {e}")))
}

fn forecastable(parameter: Parameter) -> ApiResult<Parameter> {
    if FORECASTABLE.contains(&parameter) {
        Ok(parameter)
    } else {
        Err(ApiError::BadRequest(format!(
            "{parameter} is not forecast; choose one of pm25, pm10, no2, o3, so2, co"
        )))
    }
}

/// `?parameter=`
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ForecastQuery {
    /// pm25, pm10, no2, o3, so2 or co.
    pub parameter: Parameter,
    /// `json` (the default) or `csv`: one row per hour with the interval and the AQI.
    pub format: Option<String>,
}

/// The next 24 hours of a station's pollutant, from the serving model: value, prediction
/// interval and AQI per hour, and the model's held-out scores next to the baselines'.
#[utoipa::path(get, path = "/api/v1/stations/{id}/forecast", tag = "forecasts",
    params(("id" = String, Path), ForecastQuery),
    responses((status = 200, description = "Hourly forecast", content_type = "application/json"),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn station_forecast(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ForecastQuery>,
) -> ApiResult<Response> {
    let station = station_id(&id)?;
    let parameter = forecastable(q.parameter)?;
    if app.store().station(&station).await?.is_none() {
        return Err(ApiError::NotFound(format!("station {id} does not exist")));
    }
    let forecast = app
        .forecaster()
        .forecast(&station, parameter, app.generation())
        .await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(forecast.as_ref().clone()).into_response()),
        "csv" => Ok(forecast_csv(&forecast).into_response()),
        other => Err(ApiError::BadRequest(format!(
            "format {other:?} is not offered; use json or csv"
        ))),
    }
}

/// A forecast as CSV: `time,horizon_hours,value,lower,upper,unit,aqi,category`.
fn forecast_csv(f: &ecocityhub_ml::forecast::StationForecast) -> impl IntoResponse {
    let mut out = String::from("time,horizon_hours,value,lower,upper,unit,aqi,category\n");
    for h in &f.hours {
        let (aqi, category) = h
            .aqi
            .as_ref()
            .map(|a| (a.aqi.to_string(), a.category.label()))
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{},{:.2},{:.2},{:.2},{},{aqi},{category}\n",
            h.time, h.horizon_hours, h.value, h.lower, h.upper, f.unit
        ));
    }
    let name = format!(
        "attachment; filename=\"forecast-{}-{}.csv\"",
        f.station, f.parameter
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        out,
    )
}

/// A registered model.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelOut {
    pub id: i64,
    pub station: String,
    pub parameter: String,
    pub version: i64,
    /// candidate, serving or retired.
    pub status: String,
    pub created_at: String,
    pub training_from: String,
    pub training_to: String,
    pub promoted_at: Option<String>,
    pub size_bytes: i64,
    pub checksum: String,
    pub data_fingerprint: String,
    pub code_version: String,
    pub job_id: Option<i64>,
    /// Held-out scores per horizon (MAE/RMSE of the model and each baseline).
    #[schema(value_type = Object)]
    pub holdout_scores: Vec<HorizonScores>,
    /// The report: Markdown with SVG charts beside it.
    pub report_url: String,
}

impl From<ModelRecord> for ModelOut {
    fn from(m: ModelRecord) -> Self {
        ModelOut {
            report_url: format!("/api/v1/ml/models/{}/report", m.id),
            id: m.id,
            station: m.station.to_string(),
            parameter: m.parameter.to_string(),
            version: m.version,
            status: m.status,
            created_at: fmt_ts(m.created_at.timestamp()),
            training_from: fmt_ts(m.training_from.timestamp()),
            training_to: fmt_ts(m.training_to.timestamp()),
            promoted_at: m.promoted_at.map(|t| fmt_ts(t.timestamp())),
            size_bytes: m.size_bytes,
            checksum: m.checksum,
            data_fingerprint: m.data_fingerprint,
            code_version: m.code_version,
            job_id: m.job_id,
            holdout_scores: serde_json::from_str(&m.metrics).unwrap_or_default(),
        }
    }
}

/// `?station=&parameter=`
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ModelsQuery {
    pub station: Option<String>,
    pub parameter: Option<Parameter>,
}

/// Registered models, by station and parameter, newest version first.
#[utoipa::path(get, path = "/api/v1/ml/models", tag = "ml", params(ModelsQuery),
    responses((status = 200, body = [ModelOut])))]
pub async fn list_models(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ModelsQuery>,
) -> ApiResult<Json<Vec<ModelOut>>> {
    let station = q.station.as_deref().map(station_id).transpose()?;
    let models = app.store().models(station.as_ref(), q.parameter).await?;
    Ok(Json(models.into_iter().map(ModelOut::from).collect()))
}

/// One model.
#[utoipa::path(get, path = "/api/v1/ml/models/{id}", tag = "ml", params(("id" = i64, Path)),
    responses((status = 200, body = ModelOut), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get_model(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ModelOut>> {
    let record = app.forecaster().registry().record(id).await?;
    Ok(Json(record.into()))
}

async fn report_file(app: &AppState, id: i64, file: &str) -> ApiResult<Response> {
    let registry = app.forecaster().registry();
    let record = registry.record(id).await?;
    let bytes = registry.report_file(&record, file).await?;
    let content_type = if file.ends_with(".svg") {
        "image/svg+xml"
    } else {
        "text/markdown; charset=utf-8"
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // A model's report never changes.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400, immutable"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The report of a training run (Markdown; its charts are at `report/<file>.svg`).
#[utoipa::path(get, path = "/api/v1/ml/models/{id}/report", tag = "ml", params(("id" = i64, Path)),
    responses((status = 200, content_type = "text/markdown"), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn model_report(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    report_file(&app, id, ecocityhub_ml::report::MARKDOWN_FILE).await
}

/// A chart of a model's report (`error-by-horizon.svg`, `forecast-vs-actual.svg`).
#[utoipa::path(get, path = "/api/v1/ml/models/{id}/report/{file}", tag = "ml",
    params(("id" = i64, Path), ("file" = String, Path)),
    responses((status = 200, content_type = "image/svg+xml"), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn model_report_file(
    State(app): State<AppState>,
    ApiPath((id, file)): ApiPath<(i64, String)>,
) -> ApiResult<Response> {
    report_file(&app, id, &file).await
}

/// Serves a model version; its artifact is loaded and checked first, and on any error the
/// serving model stays.
#[utoipa::path(post, path = "/api/v1/ml/models/{id}/promote", tag = "ml", security(("bearer_jwt" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ModelOut),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 409, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn promote_model(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ModelOut>> {
    me.authorize(&app, Action::ManageModels, &Resource::System)?;
    let record = app
        .forecaster()
        .registry()
        .promote(id, &format!("user {}", me.user_id()))
        .await?;
    tracing::info!(user = %me.user_id(), model = id, "model promoted");
    app.forecasts_changed(record.station.as_str());
    Ok(Json(record.into()))
}

/// Which series to roll back.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub station: String,
    #[schema(value_type = String)]
    pub parameter: Parameter,
}

/// Serves again the model that served before the latest promotion of a series.
#[utoipa::path(post, path = "/api/v1/ml/models/rollback", tag = "ml", security(("bearer_jwt" = [])),
    request_body = RollbackRequest,
    responses((status = 200, body = ModelOut),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 409, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn rollback_model(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(body): ApiJson<RollbackRequest>,
) -> ApiResult<Json<ModelOut>> {
    me.authorize(&app, Action::ManageModels, &Resource::System)?;
    let station = station_id(&body.station)?;
    let record = app
        .forecaster()
        .registry()
        .rollback(&station, body.parameter, &format!("user {}", me.user_id()))
        .await?;
    tracing::info!(user = %me.user_id(), model = record.id, "model rolled back");
    app.forecasts_changed(record.station.as_str());
    Ok(Json(record.into()))
}

/// A training job.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobOut {
    pub id: i64,
    /// queued, running, succeeded, failed or cancelled.
    pub status: String,
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// 0 to 1.
    pub progress: f64,
    pub message: Option<String>,
    /// One line per step.
    pub log: String,
    pub created_by: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub cancel_requested: bool,
}

impl From<JobRecord> for JobOut {
    fn from(j: JobRecord) -> Self {
        let t = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| fmt_ts(t.timestamp()));
        JobOut {
            id: j.id,
            status: j.status.as_str().to_string(),
            request: serde_json::from_str(&j.request).unwrap_or_default(),
            progress: j.progress,
            message: j.message,
            log: j.log,
            created_by: j.created_by,
            created_at: fmt_ts(j.created_at.timestamp()),
            started_at: t(j.started_at),
            finished_at: t(j.finished_at),
            cancel_requested: j.cancel_requested,
        }
    }
}

/// What to train; empty lists mean all.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    #[serde(default)]
    pub stations: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub parameters: Vec<Parameter>,
    /// Serve the new models at once, also where a model serves already.
    #[serde(default)]
    pub promote: bool,
}

/// Queues a training job (the SageMaker training job). Answers 202 with the job; follow its
/// `Location` to watch status, progress and log.
#[utoipa::path(post, path = "/api/v1/ml/jobs", tag = "ml", security(("bearer_jwt" = [])),
    request_body = JobRequest,
    responses((status = 202, body = JobOut),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create_job(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(body): ApiJson<JobRequest>,
) -> ApiResult<Response> {
    me.authorize(&app, Action::ManageModels, &Resource::System)?;
    let request = ecocityhub_ml::training::TrainRequest {
        stations: body.stations,
        parameters: body.parameters,
        promote: body.promote,
    };
    // Refuse now what the job would fail on later.
    ecocityhub_ml::training::plan(app.forecaster().registry(), &request)
        .await
        .map_err(|e| match e {
            ecocityhub_ml::training::TrainError::Store(e) => e.into(),
            other => ApiError::BadRequest(other.to_string()),
        })?;
    let job = app
        .store()
        .insert_job(
            &serde_json::to_string(&request).expect("a request serializes"),
            Some(me.user_id()),
            chrono::Utc::now(),
        )
        .await?;
    app.jobs().wake();
    tracing::info!(user = %me.user_id(), job = job.id, "training job queued");
    let location = HeaderValue::from_str(&format!("/api/v1/ml/jobs/{}", job.id))
        .expect("a path is a header value");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(JobOut::from(job)),
    )
        .into_response())
}

/// The latest training jobs, newest first.
#[utoipa::path(get, path = "/api/v1/ml/jobs", tag = "ml", security(("bearer_jwt" = [])),
    responses((status = 200, body = [JobOut]), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list_jobs(State(app): State<AppState>, me: SignedIn) -> ApiResult<Json<Vec<JobOut>>> {
    me.authorize(&app, Action::ManageModels, &Resource::System)?;
    let jobs = app.store().jobs(100).await?;
    Ok(Json(jobs.into_iter().map(JobOut::from).collect()))
}

async fn job_or_404(app: &AppState, id: i64) -> ApiResult<JobRecord> {
    app.store()
        .job(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no training job {id}")))
}

/// One training job: status, progress, log.
#[utoipa::path(get, path = "/api/v1/ml/jobs/{id}", tag = "ml", security(("bearer_jwt" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = JobOut), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get_job(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<JobOut>> {
    me.authorize(&app, Action::ManageModels, &Resource::System)?;
    Ok(Json(job_or_404(&app, id).await?.into()))
}

/// Cancels a job: a queued job at once, a running one after the series it is training.
#[utoipa::path(post, path = "/api/v1/ml/jobs/{id}/cancel", tag = "ml", security(("bearer_jwt" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = JobOut),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 409, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn cancel_job(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<JobOut>> {
    me.authorize(&app, Action::ManageModels, &Resource::System)?;
    match app.store().cancel_job(id, chrono::Utc::now()).await? {
        CancelOutcome::NotFound => {
            Err(ApiError::NotFound(format!("there is no training job {id}")))
        }
        CancelOutcome::AlreadyFinished => Err(ApiError::Conflict(format!(
            "training job {id} has already finished"
        ))),
        CancelOutcome::Cancelled | CancelOutcome::Requested => {
            Ok(Json(job_or_404(&app, id).await?.into()))
        }
    }
}

/// `?from=&to=` (RFC 3339; default: everything).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AnomaliesQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A reading the anomaly checks found suspect, and why.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AnomalyOut {
    pub time: String,
    pub parameter: String,
    /// spike, jump, stuck or neighbours.
    pub kind: String,
    pub value: f64,
    /// How far past the threshold (1 = at it).
    pub score: f64,
    pub detail: String,
    pub detected_at: String,
}

/// A station's suspect readings, newest first (at most 1,000). The readings stay in the
/// history, flagged `suspect`.
#[utoipa::path(get, path = "/api/v1/stations/{id}/anomalies", tag = "readings",
    params(("id" = String, Path), AnomaliesQuery),
    responses((status = 200, body = [AnomalyOut]),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn station_anomalies(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AnomaliesQuery>,
) -> ApiResult<Json<Vec<AnomalyOut>>> {
    let station = station_id(&id)?;
    if app.store().station(&station).await?.is_none() {
        return Err(ApiError::NotFound(format!("station {id} does not exist")));
    }
    let time = |s: &Option<String>, default: i64| -> ApiResult<i64> {
        match s {
            None => Ok(default),
            Some(s) => ecocityhub_domain::reading::parse_time(s)
                .map(|t| t.timestamp())
                .map_err(ApiError::BadRequest),
        }
    };
    let from = time(&q.from, 0)?;
    let to = time(&q.to, i64::MAX / 2)?;
    let found = app.store().anomalies(&station, from, to, 1_000).await?;
    Ok(Json(
        found
            .into_iter()
            .map(|a| AnomalyOut {
                time: fmt_ts(a.time.timestamp()),
                parameter: a.parameter.to_string(),
                kind: a.kind,
                value: a.value,
                score: (a.score * 100.0).round() / 100.0,
                detail: a.detail,
                detected_at: fmt_ts(a.detected_at.timestamp()),
            })
            .collect(),
    ))
}
