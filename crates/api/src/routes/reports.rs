//! Citizens' reports: `/api/v1/reports…` (file, read, list, the map layer, possible
//! duplicates, change, comment, follow, bulk triage, photos), `/api/v1/report-categories`,
//! `PUT /api/v1/me/report-watch` (operators hear of new reports in an area), and the upload
//! flow: `POST /api/v1/uploads` signs a URL, `PUT /uploads/{id}` takes the file when the URL is
//! local. The work is in [`crate::reports`]; these parse and answer.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ecocityhub_blobs::uploads::{SignedUpload, UploadRequest};
use ecocityhub_domain::station::BBox;
use ecocityhub_domain::{Category, ReportState};
use ecocityhub_store::reports::{ReportAssignee, ReportEventRow, ReportFilter, ReportRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiBody, ApiJson, ApiPath, ApiQuery};
use crate::reports::{self as service, NewReport, ReportChange, Viewer};
use crate::signed_in::SignedIn;
use crate::state::AppState;

/// A photo of a report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhotoOut {
    pub position: i64,
    pub url: String,
    pub thumbnail_url: String,
    pub width: i64,
    pub height: i64,
    /// Hidden by a moderator (only staff see hidden photos).
    pub hidden: bool,
}

/// One entry of a report's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventOut {
    pub id: i64,
    /// `filed`, `update`, `note`, `state`, `edit`.
    pub kind: String,
    /// False for operators' internal notes.
    pub public: bool,
    /// `reporter`, `staff` or `citizen`.
    pub by: &'static str,
    pub body: String,
    /// What changed: `{"state": ["submitted", "investigating"]}`.
    #[schema(value_type = Object)]
    pub changes: Value,
    pub created_at: DateTime<Utc>,
}

/// A report as the caller may see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportOut {
    pub id: String,
    pub category: String,
    pub category_label: String,
    pub title: String,
    pub description: String,
    pub lat: f64,
    pub lon: f64,
    pub station: Option<String>,
    pub state: ReportState,
    pub state_label: &'static str,
    pub duplicate_of: Option<String>,
    pub hidden: bool,
    /// Send it back in a change to fail if someone changed the report meanwhile.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub photos: Vec<PhotoOut>,
    /// The caller filed it.
    pub mine: bool,
    /// Staff only: who filed it and who works on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// On `GET /api/v1/reports/{id}`: public updates (and, for staff, internal notes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<EventOut>>,
    /// On `GET /api/v1/reports/{id}` for a signed-in caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub following: Option<bool>,
}

/// The view of a report for `viewer` (photos hidden from them left out).
pub fn report_out(app: &AppState, viewer: &Viewer<'_>, r: &ReportRow) -> ReportOut {
    let staff = viewer.is_staff(app);
    let state: ReportState = r.state.parse().unwrap_or(ReportState::Submitted);
    let photos = r
        .photos
        .iter()
        .filter(|p| staff || !p.hidden)
        .map(|p| PhotoOut {
            position: p.position,
            url: format!("/api/v1/reports/{}/photos/{}", r.id, p.position),
            thumbnail_url: format!(
                "/api/v1/reports/{}/photos/{}?size=thumbnail",
                r.id, p.position
            ),
            width: p.width,
            height: p.height,
            hidden: p.hidden,
        })
        .collect();
    ReportOut {
        id: r.id.clone(),
        category: r.category.clone(),
        category_label: app.config().reports.categories.label(&r.category).into(),
        title: r.title.clone(),
        description: r.description.clone(),
        lat: r.lat,
        lon: r.lon,
        station: r.station_id.clone(),
        state,
        state_label: state.label(),
        duplicate_of: r.duplicate_of.clone(),
        hidden: r.hidden,
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
        photos,
        mine: viewer.user_id() == Some(r.reporter.as_str()),
        reporter: staff.then(|| r.reporter.clone()),
        assignee: if staff { r.assignee.clone() } else { None },
        history: None,
        following: None,
    }
}

/// The history as `viewer` sees it.
pub async fn history_out(
    app: &AppState,
    viewer: &Viewer<'_>,
    r: &ReportRow,
) -> ApiResult<Vec<EventOut>> {
    let staff = viewer.is_staff(app);
    let events = app.store().report_events(&r.id, staff).await?;
    let mut roles: HashMap<String, &'static str> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let by = author_kind(app, r, &e, &mut roles).await?;
        out.push(EventOut {
            id: e.id,
            kind: e.kind,
            public: e.public,
            by,
            body: e.body,
            changes: serde_json::from_str(&e.changes).unwrap_or(Value::Null),
            created_at: e.created_at,
        });
    }
    Ok(out)
}

async fn author_kind(
    app: &AppState,
    r: &ReportRow,
    e: &ReportEventRow,
    seen: &mut HashMap<String, &'static str>,
) -> ApiResult<&'static str> {
    let Some(author) = &e.author else {
        return Ok("staff");
    };
    if *author == r.reporter {
        return Ok("reporter");
    }
    if let Some(kind) = seen.get(author) {
        return Ok(kind);
    }
    let staff = app.store().user(author).await?.is_some_and(|u| {
        u.roles.iter().any(|role| {
            matches!(
                role,
                ecocityhub_identity::Role::Operator | ecocityhub_identity::Role::Admin
            )
        })
    });
    let kind = if staff { "staff" } else { "citizen" };
    seen.insert(author.clone(), kind);
    Ok(kind)
}

async fn full_out(app: &AppState, me: Option<&SignedIn>, r: &ReportRow) -> ApiResult<ReportOut> {
    let viewer = Viewer::from(me);
    let mut out = report_out(app, &viewer, r);
    out.history = Some(history_out(app, &viewer, r).await?);
    if let Some(me) = me {
        out.following = Some(app.store().follows(&r.id, me.user_id()).await?);
    }
    Ok(out)
}

// ---- reading ---------------------------------------------------------------------------------

/// The categories and states reports use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CategoriesOut {
    pub categories: Vec<Category>,
    pub states: Vec<StateOut>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StateOut {
    pub state: ReportState,
    pub label: &'static str,
    pub open: bool,
}

#[utoipa::path(get, path = "/api/v1/report-categories", tag = "reports",
    responses((status = 200, body = CategoriesOut)))]
pub async fn categories(State(app): State<AppState>) -> Json<CategoriesOut> {
    Json(CategoriesOut {
        categories: app.config().reports.categories.0.clone(),
        states: ReportState::ALL
            .into_iter()
            .map(|s| StateOut {
                state: s,
                label: s.label(),
                open: s.is_open(),
            })
            .collect(),
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// States, comma-separated, or `open` / `closed`.
    pub state: Option<String>,
    pub category: Option<String>,
    /// `min_lon,min_lat,max_lon,max_lat`
    pub bbox: Option<String>,
    /// Filed before / after this time (RFC 3339).
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    /// Staff: `me`, `none` or a user id.
    pub assignee: Option<String>,
    /// Staff: include hidden reports.
    pub hidden: Option<bool>,
    /// Only the caller's own reports.
    pub mine: Option<bool>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// A page of reports.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportList {
    pub reports: Vec<ReportOut>,
    /// Matches in all, beyond this page.
    pub total: u64,
}

/// The states a `state=` parameter names.
pub fn parse_states(text: &str) -> ApiResult<Vec<String>> {
    let pick = |open: bool| {
        ReportState::ALL
            .into_iter()
            .filter(|s| s.is_open() == open)
            .map(|s| s.as_str().to_string())
            .collect()
    };
    match text {
        "" | "all" => Ok(Vec::new()),
        "open" => Ok(pick(true)),
        "closed" => Ok(pick(false)),
        list => list
            .split(',')
            .map(|s| Ok(s.trim().parse::<ReportState>()?.as_str().to_string()))
            .collect(),
    }
}

/// The store's filter for a query by `viewer` (staff-only parts refused to others).
pub fn filter_of(app: &AppState, viewer: &Viewer<'_>, q: &ListQuery) -> ApiResult<ReportFilter> {
    let staff = viewer.is_staff(app);
    if !staff && (q.assignee.is_some() || q.hidden == Some(true)) {
        return Err(ApiError::Forbidden(
            "only operators filter by assignee or see hidden reports".into(),
        ));
    }
    let bbox = q
        .bbox
        .as_deref()
        .map(str::parse::<BBox>)
        .transpose()
        .map_err(ApiError::BadRequest)?
        .map(|b| [b.min_lat, b.min_lon, b.max_lat, b.max_lon]);
    let assignee = match q.assignee.as_deref() {
        None => ReportAssignee::Anyone,
        Some("none") => ReportAssignee::Unassigned,
        Some("me") => ReportAssignee::User(viewer.user_id().unwrap_or_default().into()),
        Some(id) => ReportAssignee::User(id.into()),
    };
    let reporter = match (q.mine, viewer.user_id()) {
        (Some(true), Some(me)) => Some(me.to_string()),
        (Some(true), None) => return Err(ApiError::unauthorized("sign in to list your reports")),
        _ => None,
    };
    Ok(ReportFilter {
        states: parse_states(q.state.as_deref().unwrap_or(""))?,
        category: q.category.clone(),
        bbox,
        created_after: q.after,
        created_before: q.before,
        assignee,
        reporter,
        include_hidden: staff && q.hidden == Some(true),
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        offset: q.offset.unwrap_or(0),
    })
}

#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ListQuery),
    responses((status = 200, body = ReportList),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(app): State<AppState>,
    me: Option<SignedIn>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ReportList>> {
    let viewer = Viewer::from(me.as_ref());
    let filter = filter_of(&app, &viewer, &q)?;
    let page = app.store().reports(&filter).await?;
    Ok(Json(ReportList {
        reports: page
            .reports
            .iter()
            .filter(|r| viewer.may_view(&app, r))
            .map(|r| report_out(&app, &viewer, r))
            .collect(),
        total: page.total,
    }))
}

/// Every visible report as a GeoJSON point, for the map layer.
#[utoipa::path(get, path = "/api/v1/reports/pins", tag = "reports",
    responses((status = 200, description = "A GeoJSON FeatureCollection", content_type = "application/geo+json")))]
pub async fn pins(State(app): State<AppState>) -> ApiResult<Response> {
    let features: Vec<Value> = app
        .store()
        .report_pins()
        .await?
        .into_iter()
        .map(|p| {
            let open = p.state.parse::<ReportState>().is_ok_and(|s| s.is_open());
            json!({"type": "Feature",
                   "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
                   "properties": {"id": p.id, "title": p.title, "category": p.category,
                                  "state": p.state, "open": open}})
        })
        .collect();
    let body = json!({"type": "FeatureCollection", "features": features});
    Ok((
        [(header::CONTENT_TYPE, "application/geo+json")],
        body.to_string(),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NearbyQuery {
    pub lat: f64,
    pub lon: f64,
    pub category: Option<String>,
}

/// Open reports of the category within 50 m: possible duplicates, offered while filing.
#[utoipa::path(get, path = "/api/v1/reports/nearby", tag = "reports", params(NearbyQuery),
    responses((status = 200, body = [ReportOut]),
              (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn nearby(
    State(app): State<AppState>,
    me: Option<SignedIn>,
    ApiQuery(q): ApiQuery<NearbyQuery>,
) -> ApiResult<Json<Vec<ReportOut>>> {
    let viewer = Viewer::from(me.as_ref());
    let near = service::possible_duplicates(&app, q.lat, q.lon, q.category.as_deref()).await?;
    Ok(Json(
        near.iter()
            .filter(|r| viewer.may_view(&app, r))
            .map(|r| report_out(&app, &viewer, r))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/reports/{id}", tag = "reports",
    params(("id" = String, Path, description = "Report id")),
    responses((status = 200, body = ReportOut),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(app): State<AppState>,
    me: Option<SignedIn>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ReportOut>> {
    let report = service::find(&app, &Viewer::from(me.as_ref()), &id).await?;
    Ok(Json(full_out(&app, me.as_ref(), &report).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PhotoQuery {
    /// `full` (default) or `thumbnail`.
    pub size: Option<String>,
}

/// A photo of a report (JPEG, EXIF removed), if the caller may see it.
#[utoipa::path(get, path = "/api/v1/reports/{id}/photos/{position}", tag = "reports",
    params(("id" = String, Path), ("position" = i64, Path), PhotoQuery),
    responses((status = 200, description = "The photo", content_type = "image/jpeg"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn photo(
    State(app): State<AppState>,
    me: Option<SignedIn>,
    ApiPath((id, position)): ApiPath<(String, i64)>,
    ApiQuery(q): ApiQuery<PhotoQuery>,
) -> ApiResult<Response> {
    let viewer = Viewer::from(me.as_ref());
    let report = service::find(&app, &viewer, &id).await?;
    let missing = || ApiError::NotFound(format!("report {id} has no photo {position}"));
    let photo = report
        .photos
        .iter()
        .find(|p| p.position == position && (!p.hidden || viewer.is_staff(&app)))
        .ok_or_else(missing)?;
    let key = match q.size.as_deref() {
        None | Some("full") => &photo.key,
        Some("thumbnail") => &photo.thumbnail_key,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "size {other:?} is not one of full, thumbnail"
            )))
        }
    };
    let bytes = app
        .blobs()
        .get(key)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let bytes = bytes.ok_or_else(missing)?;
    // Hidden reports and photos must not linger in shared caches.
    let cache = if report.hidden || photo.hidden {
        "private, no-store"
    } else {
        "public, max-age=300"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}

// ---- writing ---------------------------------------------------------------------------------

#[utoipa::path(post, path = "/api/v1/reports", tag = "reports", security(("bearer_jwt" = [])),
    request_body = NewReport,
    responses((status = 201, body = ReportOut, description = "Filed"),
              (status = 200, body = ReportOut, description = "Filed before (a retry with the same id)"),
              (status = 413, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 415, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(new): ApiJson<NewReport>,
) -> ApiResult<(StatusCode, Json<ReportOut>)> {
    let (created, report) = service::file(&app, &me, new).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(full_out(&app, Some(&me), &report).await?)))
}

#[utoipa::path(patch, path = "/api/v1/reports/{id}", tag = "reports", security(("bearer_jwt" = [])),
    params(("id" = String, Path)), request_body = ReportChange,
    responses((status = 200, body = ReportOut),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
    ApiJson(change): ApiJson<ReportChange>,
) -> ApiResult<Json<ReportOut>> {
    let report = service::change(&app, &me, &id, change).await?;
    Ok(Json(full_out(&app, Some(&me), &report).await?))
}

/// A comment: a public update, or (staff) an internal note.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub text: String,
    #[serde(default)]
    pub internal: bool,
}

#[utoipa::path(post, path = "/api/v1/reports/{id}/comments", tag = "reports", security(("bearer_jwt" = [])),
    params(("id" = String, Path)), request_body = NewComment,
    responses((status = 201, body = EventOut),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn comment(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
    ApiJson(c): ApiJson<NewComment>,
) -> ApiResult<(StatusCode, Json<EventOut>)> {
    let event = service::comment(&app, &me, &id, &c.text, c.internal).await?;
    let report = service::find(&app, &Viewer::User(&me), &id).await?;
    let by = if event.author.as_deref() == Some(report.reporter.as_str()) {
        "reporter"
    } else if Viewer::User(&me).is_staff(&app) {
        "staff"
    } else {
        "citizen"
    };
    Ok((
        StatusCode::CREATED,
        Json(EventOut {
            id: event.id,
            kind: event.kind,
            public: event.public,
            by,
            body: event.body,
            changes: json!({}),
            created_at: event.created_at,
        }),
    ))
}

#[utoipa::path(put, path = "/api/v1/reports/{id}/follow", tag = "reports", security(("bearer_jwt" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Following: updates reach your pages and e-mail")))]
pub async fn follow(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let report = service::find(&app, &Viewer::User(&me), &id).await?;
    service::follow(&app, &me, &report, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/reports/{id}/follow", tag = "reports", security(("bearer_jwt" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Not following any more")))]
pub async fn unfollow(
    State(app): State<AppState>,
    me: SignedIn,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let report = service::find(&app, &Viewer::User(&me), &id).await?;
    service::follow(&app, &me, &report, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One state (and public update) for many reports.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkChange {
    pub ids: Vec<String>,
    pub state: ReportState,
    pub update: Option<String>,
}

/// What came of each report of a bulk change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkOutcome {
    pub id: String,
    pub changed: bool,
    /// The new version, or why it did not change.
    pub version: Option<i64>,
    pub error: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/reports/bulk", tag = "reports", security(("bearer_jwt" = [])),
    request_body = BulkChange,
    responses((status = 200, body = [BulkOutcome]),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn bulk(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(b): ApiJson<BulkChange>,
) -> ApiResult<Json<Vec<BulkOutcome>>> {
    let outcomes = service::bulk_state(&app, &me, &b.ids, b.state, b.update).await?;
    Ok(Json(
        outcomes
            .into_iter()
            .map(|(id, o)| BulkOutcome {
                id,
                changed: o.is_ok(),
                version: o.as_ref().ok().copied(),
                error: o.err(),
            })
            .collect(),
    ))
}

/// An operator's watch on new reports.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportWatch {
    /// `min_lon,min_lat,max_lon,max_lat`; everywhere when absent.
    pub bbox: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

#[utoipa::path(put, path = "/api/v1/me/report-watch", tag = "reports", security(("bearer_jwt" = [])),
    request_body = ReportWatch,
    responses((status = 200, description = "Watching: `{\"channels\": N}`"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn watch(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(w): ApiJson<ReportWatch>,
) -> ApiResult<Json<Value>> {
    let bbox = w
        .bbox
        .as_deref()
        .map(str::parse::<BBox>)
        .transpose()
        .map_err(ApiError::BadRequest)?
        .map(|b| [b.min_lat, b.min_lon, b.max_lat, b.max_lon]);
    let channels = service::watch_new_reports(&app, &me, bbox, &w.categories).await?;
    Ok(Json(json!({"channels": channels})))
}

// ---- uploads ---------------------------------------------------------------------------------

/// The file a browser will upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    /// `image/jpeg`, `image/png` or `image/webp`.
    pub content_type: String,
    /// The exact size in bytes (at most 10 MB).
    pub size: u64,
    /// SHA-256 of the file: 64 hex digits or base64.
    pub sha256: String,
}

/// Where and how to PUT the file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadOut {
    pub id: String,
    pub method: &'static str,
    pub url: String,
    /// Headers the PUT must carry.
    #[schema(value_type = Object)]
    pub headers: HashMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

fn upload_error(e: ecocityhub_blobs::uploads::UploadError) -> ApiError {
    let detail = e.to_string();
    match e.status() {
        413 => ApiError::PayloadTooLarge(detail),
        415 => ApiError::UnsupportedMediaType(detail),
        403 => ApiError::Forbidden(detail),
        409 => ApiError::Conflict(detail),
        404 => ApiError::NotFound(detail),
        400 => ApiError::BadRequest(detail),
        _ => ApiError::Internal(detail),
    }
}

#[utoipa::path(post, path = "/api/v1/uploads", tag = "reports", security(("bearer_jwt" = [])),
    request_body = NewUpload,
    responses((status = 201, body = UploadOut),
              (status = 413, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 415, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn sign_upload(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(u): ApiJson<NewUpload>,
) -> ApiResult<(StatusCode, Json<UploadOut>)> {
    me.authorize(
        &app,
        ecocityhub_identity::Action::FileReport,
        &ecocityhub_identity::Resource::System,
    )?;
    let request = UploadRequest::new(&u.content_type, u.size, &u.sha256).map_err(upload_error)?;
    let signed: SignedUpload = service::photo_uploads(&app)?
        .sign(me.user_id(), &request, Utc::now())
        .await
        .map_err(upload_error)?;
    Ok((
        StatusCode::CREATED,
        Json(UploadOut {
            id: signed.id,
            method: signed.method,
            url: signed.url,
            headers: signed.headers.into_iter().collect(),
            expires_at: signed.expires_at,
        }),
    ))
}

/// The target of a local upload URL: the signature in the query is the permission.
#[utoipa::path(put, path = "/uploads/{id}", tag = "reports",
    params(("id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses((status = 201, description = "Stored; refer to the id in a report"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 413, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn put_upload(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let stored = service::photo_uploads(&app)?
        .accept_local(
            &id,
            query.as_deref().unwrap_or(""),
            content_type,
            body,
            Utc::now(),
        )
        .await
        .ok_or_else(|| ApiError::NotFound("uploads go to the storage service's URL".into()))?
        .map_err(upload_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": stored.id, "size": stored.size})),
    ))
}
