//! Liveness (`/healthz`), readiness (`/readyz`, for health-checked DNS failover) and the
//! parameter catalogue.

use axum::extract::State;
use axum::Json;
use ecocityhub_domain::Parameter;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
}

/// Is the service up and its database reachable?
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, body = Health), (status = 503, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn healthz(State(app): State<AppState>) -> ApiResult<Json<Health>> {
    app.store()
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        store: app.store().backend().name(),
    }))
}

/// Every part `GET /readyz` checked, all `ok`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    /// Each part by name (`store`, `blobs`, `delivery_worker`…): `ok`.
    #[schema(value_type = Object)]
    pub checks: std::collections::BTreeMap<&'static str, &'static str>,
}

/// Can the service do its work — the store, the blob store and the workers? 503 with the
/// failing parts named when not (for health-checked DNS failover); `/healthz` stays the cheap
/// liveness check.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses((status = 200, body = Readiness), (status = 503, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(app): State<AppState>) -> ApiResult<Json<Readiness>> {
    let mut failing = Vec::new();
    let mut checks = std::collections::BTreeMap::new();
    if let Err(e) = app.store().ping().await {
        failing.push(format!("store: {e}"));
    }
    checks.insert("store", "ok");
    if let Err(e) = app.blobs().get("readyz/probe").await {
        failing.push(format!("blobs: {e}"));
    }
    checks.insert("blobs", "ok");
    for part in app.readiness() {
        if let Err(e) = part.check() {
            failing.push(format!("{}: {e}", part.name()));
        }
        checks.insert(part.name(), "ok");
    }
    if !failing.is_empty() {
        return Err(ApiError::Unavailable(failing.join("; ")));
    }
    Ok(Json(Readiness {
        status: "ok",
        checks,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ParameterInfo {
    pub id: Parameter,
    pub name: &'static str,
    /// The unit values are stored and served in.
    pub unit: &'static str,
    /// Units a device may send (converted on arrival; gases at 25 °C and 1 atm).
    pub accepted_units: Vec<&'static str>,
    pub pollutant: bool,
}

/// The parameter catalogue (OpenAQ names).
#[utoipa::path(get, path = "/api/v1/parameters", tag = "stations", responses((status = 200, body = [ParameterInfo])))]
pub async fn parameters() -> Json<Vec<ParameterInfo>> {
    Json(
        Parameter::ALL
            .iter()
            .map(|p| ParameterInfo {
                id: *p,
                name: p.display_name(),
                unit: p.canonical_unit().symbol(),
                accepted_units: p.accepted_units().iter().map(|u| u.symbol()).collect(),
                pollutant: p.is_pollutant(),
            })
            .collect(),
    )
}
