//! `GET /api/v1/latest`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LatestQuery {
    /// Only this station.
    pub station: Option<String>,
}

/// The newest value of every parameter and the current AQI (US EPA, NowCast for PM) and
/// European index of every active station. Served from a snapshot refreshed when readings
/// arrive (and at least every few seconds).
#[utoipa::path(get, path = "/api/v1/latest", tag = "readings", params(LatestQuery),
    responses((status = 200, body = [crate::latest::LatestStation]),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn latest(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<LatestQuery>,
) -> ApiResult<Response> {
    let snapshot = app.latest().await?;
    let body = match q.station {
        None => snapshot.json.clone(),
        Some(id) => {
            let one = snapshot
                .stations
                .iter()
                .find(|s| s.station.as_str() == id)
                .ok_or_else(|| ApiError::NotFound(format!("no active station {id:?}")))?;
            serde_json::to_vec(&[one])
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .into()
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
