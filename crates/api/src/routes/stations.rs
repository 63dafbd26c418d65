//! `GET /api/v1/stations` (JSON or GeoJSON) and `GET /api/v1/stations/{id}`; operators and
//! admins make and change stations with `POST /api/v1/stations` and `PATCH …/{id}`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ecocityhub_domain::station::BBox;
use ecocityhub_domain::{Parameter, Station, StationId};
use ecocityhub_store::SeriesInfo;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StationsQuery {
    /// `min_lon,min_lat,max_lon,max_lat`
    pub bbox: Option<String>,
    /// Only stations that measure this parameter.
    pub parameter: Option<String>,
    /// `json` (default) or `geojson`; `Accept: application/geo+json` also selects GeoJSON.
    pub format: Option<String>,
}

/// What a station measures, and over which span.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SeriesSpan {
    pub parameter: Parameter,
    pub unit: &'static str,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
}

/// A station with the series it has.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StationOut {
    #[serde(flatten)]
    pub station: Station,
    pub parameters: Vec<SeriesSpan>,
}

fn spans(series: &[SeriesInfo]) -> HashMap<&StationId, Vec<SeriesSpan>> {
    let mut by: HashMap<&StationId, Vec<SeriesSpan>> = HashMap::new();
    for s in series {
        by.entry(&s.station).or_default().push(SeriesSpan {
            parameter: s.parameter,
            unit: s.parameter.canonical_unit().symbol(),
            first: s.first,
            last: s.last,
            period_seconds: s.period_seconds,
        });
    }
    by
}

fn wants_geojson(format: Option<&str>, headers: &HeaderMap) -> ApiResult<bool> {
    match format {
        Some("geojson") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "format {other:?} is not one of json, geojson"
        ))),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/geo+json"))),
    }
}

/// All stations, optionally within a bounding box or measuring a parameter; as JSON or as a
/// GeoJSON FeatureCollection whose properties carry the current AQI for maps.
#[utoipa::path(get, path = "/api/v1/stations", tag = "stations", params(StationsQuery),
    responses((status = 200, body = [StationOut], description = "JSON, or a GeoJSON FeatureCollection (application/geo+json)"),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StationsQuery>,
) -> ApiResult<Response> {
    let bbox: Option<BBox> = q
        .bbox
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let parameter: Option<Parameter> = q.parameter.as_deref().map(str::parse).transpose().map_err(
        |e: ecocityhub_domain::parameter::UnknownParameter| ApiError::BadRequest(e.to_string()),
    )?;
    let geojson = wants_geojson(q.format.as_deref(), &headers)?;

    let stations = app.store().stations().await?;
    let series = app.store().series().await?;
    let mut spans = spans(&series);
    let out: Vec<StationOut> = stations
        .into_iter()
        .filter(|s| bbox.is_none_or(|b| b.contains(&s.location)))
        .map(|s| {
            let parameters = spans.remove(&s.id).unwrap_or_default();
            StationOut {
                station: s,
                parameters,
            }
        })
        .filter(|s| parameter.is_none_or(|p| s.parameters.iter().any(|x| x.parameter == p)))
        .collect();

    if !geojson {
        return Ok(Json(out).into_response());
    }
    let latest = app.latest().await?;
    let aqi: HashMap<&str, _> = latest
        .stations
        .iter()
        .map(|l| (l.station.as_str(), l))
        .collect();
    let features: Vec<serde_json::Value> = out
        .iter()
        .map(|s| {
            let l = aqi.get(s.station.id.as_str());
            let a = l.and_then(|l| l.aqi.as_ref());
            json!({
                "type": "Feature",
                "id": s.station.id,
                "geometry": {"type": "Point", "coordinates": [s.station.location.lon, s.station.location.lat]},
                "properties": {
                    "id": s.station.id,
                    "name": s.station.name,
                    "area": s.station.area,
                    "active": s.station.active,
                    "parameters": s.parameters.iter().map(|p| p.parameter).collect::<Vec<_>>(),
                    "latest_time": l.and_then(|l| l.time),
                    "stale": l.map(|l| l.stale),
                    "aqi": a.map(|a| a.aqi),
                    "aqi_category": a.map(|a| a.category.label()),
                    "aqi_color": a.map(|a| a.category.color()),
                    "eaqi": l.and_then(|l| l.eaqi.as_ref()).map(|e| e.label),
                }
            })
        })
        .collect();
    let body = json!({"type": "FeatureCollection", "features": features});
    Ok((
        [(header::CONTENT_TYPE, "application/geo+json")],
        body.to_string(),
    )
        .into_response())
}

/// One station.
#[utoipa::path(get, path = "/api/v1/stations/{id}", tag = "stations",
    params(("id" = String, Path, description = "Station id")),
    responses((status = 200, body = StationOut),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<StationOut>> {
    let station = find(&app, &id).await?;
    let series = app.store().series().await?;
    let parameters = spans(&series).remove(&station.id).unwrap_or_default();
    Ok(Json(StationOut {
        station,
        parameters,
    }))
}

/// The station with this id, or a 404 that says so.
pub async fn find(app: &AppState, id: &str) -> ApiResult<Station> {
    let id = StationId::parse(id).map_err(|e| ApiError::NotFound(e.to_string()))?;
    app.store().station(&id).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "station {id} does not exist; GET /api/v1/stations lists them"
        ))
    })
}

/// A station to make (operators and admins).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStation {
    /// Lower-case letters, digits, `_` and `-`.
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub area: Option<String>,
    /// IANA time zone of the station's city; default `UTC`.
    pub timezone: Option<String>,
    /// Free metadata (operator, instrument, site type, attribution…).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Makes a station, so that device keys can be made for it before its first reading.
#[utoipa::path(post, path = "/api/v1/stations", tag = "stations", security(("bearer_jwt" = [])),
    request_body = NewStation,
    responses((status = 201, body = Station),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 409, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(app): State<AppState>,
    me: crate::signed_in::SignedIn,
    crate::extract::ApiJson(new): crate::extract::ApiJson<NewStation>,
) -> ApiResult<(axum::http::StatusCode, Json<Station>)> {
    let id = StationId::parse(&new.id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    me.authorize(
        &app,
        ecocityhub_identity::Action::ManageStations,
        &ecocityhub_identity::Resource::Station(id.to_string()),
    )?;
    if app.store().station(&id).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "station {id} exists already; PATCH /api/v1/stations/{id} changes it"
        )));
    }
    let location = ecocityhub_domain::GeoPoint::new(new.lat, new.lon)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut station = Station::new(
        id,
        new.name,
        location,
        new.area,
        new.timezone.unwrap_or_else(|| "UTC".into()),
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(metadata) = new.metadata {
        station.metadata = metadata;
    }
    app.store().upsert_station(&station).await?;
    app.invalidate(&["stations".to_string(), "latest".to_string()]);
    Ok((axum::http::StatusCode::CREATED, Json(station)))
}

/// What may change about a station.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StationPatch {
    pub name: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// An empty string clears it.
    pub area: Option<String>,
    pub timezone: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Inactive stations leave the map and the latest view; their data stays.
    pub active: Option<bool>,
}

/// Changes a station (operators and admins).
#[utoipa::path(patch, path = "/api/v1/stations/{id}", tag = "stations", security(("bearer_jwt" = [])),
    params(("id" = String, Path, description = "Station id")), request_body = StationPatch,
    responses((status = 200, body = Station),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(app): State<AppState>,
    me: crate::signed_in::SignedIn,
    ApiPath(id): ApiPath<String>,
    crate::extract::ApiJson(patch): crate::extract::ApiJson<StationPatch>,
) -> ApiResult<Json<Station>> {
    let mut station = find(&app, &id).await?;
    me.authorize(
        &app,
        ecocityhub_identity::Action::ManageStations,
        &ecocityhub_identity::Resource::Station(station.id.to_string()),
    )?;
    if let Some(name) = patch.name {
        station.name = name;
    }
    station.location = ecocityhub_domain::GeoPoint::new(
        patch.lat.unwrap_or(station.location.lat),
        patch.lon.unwrap_or(station.location.lon),
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(area) = patch.area {
        station.area = Some(area).filter(|a| !a.trim().is_empty());
    }
    if let Some(tz) = patch.timezone {
        station.timezone = tz;
    }
    if let Some(metadata) = patch.metadata {
        station.metadata = metadata;
    }
    if let Some(active) = patch.active {
        station.active = active;
    }
    station
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    app.store().upsert_station(&station).await?;
    app.invalidate(&[
        "stations".to_string(),
        "latest".to_string(),
        format!("station:{}", station.id),
    ]);
    Ok(Json(station))
}
