//! `POST /api/v1/readings`: a device sends a batch of readings for its station.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use chrono::Utc;
use ecocityhub_domain::{Reading, StationId};
use ecocityhub_identity::{Action, Principal, Resource};
use serde::Serialize;

use crate::device_auth;
use crate::error::{ApiError, ApiResult, RowProblem};
use crate::extract::ApiBody;
use crate::ingest::{self, Format};
use crate::state::AppState;

/// What happened to a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestSummary {
    /// Rows in the batch.
    pub received: usize,
    /// Rows stored (a row repeating a stored station, parameter and time replaces it).
    pub accepted: usize,
    /// Of the accepted rows, those that were stored already exactly as sent (a re-sent batch is
    /// all unchanged; a corrected value is not).
    pub unchanged: u64,
    /// Rows refused, each with its index and reason; the other rows were stored.
    pub rejected: Vec<RowProblem>,
}

/// Stores a batch of readings for the station of the device key. The body is a JSON array,
/// NDJSON (`application/x-ndjson`) or CSV (`text/csv`, header with `time,parameter,value` and
/// optionally `station,unit,flag`); at most 10,000 rows and 4 MiB. Each row: `parameter`
/// (OpenAQ name), `time` (ISO-8601), `value`, optional `unit` (converted to the canonical
/// unit), `flag` (`valid`, `suspect`, `invalid`) and `station` (must be the key's station).
/// Idempotent: sending the same row again changes nothing.
#[utoipa::path(post, path = "/api/v1/readings", tag = "readings",
    request_body(description = "JSON array, NDJSON or CSV of readings", content(
        (Vec<serde_json::Value> = "application/json", example = json!([{"parameter": "pm25", "time": "2024-05-01T13:00:00Z", "value": 12.5}, {"parameter": "no2", "time": "2024-05-01T13:00:00Z", "value": 21, "unit": "ppb"}])),
        (String = "application/x-ndjson"),
        (String = "text/csv", example = "time,parameter,value,unit\n2024-05-01T13:00:00Z,pm25,12.5,µg/m³\n"),
    )),
    security(("device_key" = []), ("device_key_header" = [])),
    responses(
        (status = 200, body = IngestSummary, description = "Some or all rows stored"),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json", description = "No row could be stored"),
    ))]
pub async fn post_readings(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> ApiResult<Json<IngestSummary>> {
    let now = Utc::now();
    let key = device_auth::authenticate(app.store(), &headers, now).await?;
    let station = key.station.clone();
    let device = Principal::Device {
        key: key.prefix,
        station: station.to_string(),
    };
    let format = Format::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    let rows = ingest::parse(format, &body, &station)?;

    let named: BTreeSet<&StationId> = rows
        .iter()
        .flatten()
        .filter_map(|(named, _)| named.as_ref())
        .collect();
    for other in named.into_iter().chain([&station]) {
        if !app.identity().authorizer.is_allowed(
            &device,
            Action::WriteReadings,
            &Resource::Station(other.to_string()),
        ) {
            return Err(ApiError::Forbidden(format!(
                "this key belongs to station {station} and cannot write readings of station {other}"
            )));
        }
    }
    let mut rejected = ingest::problems(&rows);
    let mut accepted: Vec<Reading> = Vec::with_capacity(rows.len());
    for (index, row) in rows.into_iter().enumerate() {
        if let Ok((_, incoming)) = row {
            match incoming.validate(now) {
                Ok(r) => accepted.push(r),
                Err(e) => rejected.push(RowProblem {
                    index,
                    reason: e.to_string(),
                }),
            }
        }
    }
    rejected.sort_by_key(|p| p.index);
    let received = accepted.len() + rejected.len();
    if accepted.is_empty() && !rejected.is_empty() {
        return Err(ApiError::Unprocessable {
            detail: format!(
                "none of the {received} rows could be stored; `errors` says why for each"
            ),
            errors: rejected,
        });
    }
    let written = app.store().insert_readings(&accepted).await?;
    let stored = accepted.len();
    // Acknowledged first, screened and checked against alert rules after: neither delays
    // nor loses a reading.
    if written.changed > 0 {
        app.readings_stored(accepted);
    }
    Ok(Json(IngestSummary {
        received,
        accepted: stored,
        unchanged: written.unchanged(),
        rejected,
    }))
}
