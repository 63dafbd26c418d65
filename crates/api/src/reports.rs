//! Citizens' reports as the API runs them: filing with photos (through the blob layer's
//! [`PhotoUploads`]), who sees what, operators' triage (state, assignee, public updates,
//! internal notes, bulk changes), moderation, following, and the notifications each change
//! sends — written in the same transaction as the change, through the store's outbox.
//!
//! The handlers in `routes::reports` parse and answer; the rules of a report are the domain's
//! (`ecocityhub_domain::report`); the permissions are the Cedar policies'.

use chrono::{DateTime, Duration, Utc};
use ecocityhub_blobs::photo_uploads::{AttachError, PhotoUploads};
use ecocityhub_domain::report::{check_text, check_title, check_transition, DUPLICATE_RADIUS_M};
use ecocityhub_domain::{Categories, ReportDraft, ReportError, ReportState, StationId};
use ecocityhub_identity::{Action, Resource};
use ecocityhub_notify::notifier::deliveries_for;
use ecocityhub_notify::{Message, Protocol, Publisher, SubscribeRequest, Topic};
use ecocityhub_store::reports::{OutboxNotice, ReportEventRow, ReportPhotoRow, ReportRow};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::signed_in::SignedIn;
use crate::state::AppState;

/// Settings of reports (`[reports]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    /// The categories citizens choose from.
    pub categories: Categories,
    /// Reports one account may file in an hour…
    pub per_hour: u32,
    /// …and in a day.
    pub per_day: u32,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            categories: Categories::default(),
            per_hour: 5,
            per_day: 20,
        }
    }
}

/// The cache tag of everything that shows reports (the map layer, lists).
pub const CACHE_TAG: &str = "reports";

/// Who is looking: nobody signed in, a citizen, or staff (operators and admins).
pub enum Viewer<'a> {
    Anonymous,
    User(&'a SignedIn),
}

impl Viewer<'_> {
    pub fn from(me: Option<&SignedIn>) -> Viewer<'_> {
        me.map_or(Viewer::Anonymous, Viewer::User)
    }

    pub fn user_id(&self) -> Option<&str> {
        match self {
            Viewer::Anonymous => None,
            Viewer::User(me) => Some(me.user_id()),
        }
    }

    /// Triages reports: sees hidden ones, internal notes and assignees.
    pub fn is_staff(&self, app: &AppState) -> bool {
        match self {
            Viewer::Anonymous => false,
            Viewer::User(me) => may(app, me, Action::TriageReports, &Resource::System),
        }
    }

    /// May see this report.
    pub fn may_view(&self, app: &AppState, report: &ReportRow) -> bool {
        match self {
            Viewer::Anonymous => !report.hidden,
            Viewer::User(me) => may(app, me, Action::ViewReport, &resource(report)),
        }
    }
}

fn may(app: &AppState, me: &SignedIn, action: Action, on: &Resource) -> bool {
    app.identity()
        .authorizer
        .is_allowed(&me.principal, action, on)
}

/// The report as the policies see it.
pub fn resource(report: &ReportRow) -> Resource {
    Resource::Report {
        id: report.id.clone(),
        reporter: report.reporter.clone(),
        hidden: report.hidden,
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        ApiError::Invalid {
            code: e.code(),
            detail: e.to_string(),
        }
    }
}

/// A refused photo, with which one it was.
fn photo_error(n: usize, e: AttachError) -> ApiError {
    let detail = format!("photo {n}: {e}");
    match e.status() {
        413 => ApiError::PayloadTooLarge(detail),
        415 => ApiError::UnsupportedMediaType(detail),
        403 => ApiError::Forbidden(detail),
        404 => ApiError::NotFound(detail),
        409 => ApiError::Conflict(detail),
        400 => ApiError::BadRequest(detail),
        422 => ApiError::Invalid {
            code: "bad_photo",
            detail,
        },
        _ => ApiError::Internal(detail),
    }
}

/// The report, or a 404 that does not tell a hidden report from a missing one.
pub async fn find(app: &AppState, viewer: &Viewer<'_>, id: &str) -> ApiResult<ReportRow> {
    let missing = || ApiError::NotFound(format!("there is no report {}", short(id)));
    let report = app.store().report(id).await?.ok_or_else(missing)?;
    if viewer.may_view(app, &report) {
        Ok(report)
    } else {
        Err(missing())
    }
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

fn check_report_id(id: &str) -> ApiResult<()> {
    let fine = (4..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fine {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "report id {:?} must be 4-64 characters of A-Z, a-z, 0-9, _ and -",
            short(id)
        )))
    }
}

// ---- filing ----------------------------------------------------------------------------------

/// What a citizen files.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    /// Made by the client so a retried request files once (`rep_…`); made here when absent.
    pub id: Option<String>,
    /// A key of `GET /api/v1/report-categories`.
    pub category: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// The pin on the map; without it, the station's place.
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// The station the report is about or next to.
    pub station: Option<String>,
    /// Upload ids of photos (`POST /api/v1/uploads`), at most 5.
    #[serde(default)]
    pub photos: Vec<String>,
}

/// Files a report: checked, rate-limited, photos attached, the reporter following it, and the
/// operators watching its area told. Returns whether it was new (a retry returns the first).
pub async fn file(app: &AppState, me: &SignedIn, new: NewReport) -> ApiResult<(bool, ReportRow)> {
    me.authorize(app, Action::FileReport, &Resource::System)?;
    if me.claims.email_verified == Some(false) {
        return Err(ApiError::Forbidden(
            "confirm your e-mail address before filing a report".into(),
        ));
    }
    let id = match &new.id {
        Some(id) => {
            check_report_id(id)?;
            id.clone()
        }
        None => ecocityhub_notify::ids::new_id("rep_"),
    };
    if let Some(existing) = app.store().report(&id).await? {
        if existing.reporter != me.user_id() {
            return Err(ApiError::Conflict(format!("report {id} exists already")));
        }
        return Ok((false, existing));
    }
    let (point, station) = place(app, &new).await?;
    let draft = ReportDraft::new(
        &app.config().reports.categories,
        &new.category,
        &new.title,
        &new.description,
        point,
        new.photos.len(),
    )?;
    check_rate(app, me).await?;
    let photos = attach_photos(app, me, &new.photos).await?;
    let now = now_ms();
    let report = ReportRow {
        id,
        reporter: me.user_id().into(),
        category: draft.category,
        title: draft.title,
        description: draft.description,
        lat: draft.location.lat,
        lon: draft.location.lon,
        station_id: station,
        state: ReportState::Submitted.as_str().into(),
        duplicate_of: None,
        assignee: None,
        hidden: false,
        version: 1,
        created_at: now,
        updated_at: now,
        photos,
    };
    let event = new_event(&report, me, "filed", true, "", json!({}), now);
    let notices = new_report_notice(app, &report).await?;
    let created = app.store().create_report(&report, &event, &notices).await?;
    if created {
        follow(app, me, &report, true).await?;
        changed(app);
    }
    let stored = app.store().report(&report.id).await?.unwrap_or(report);
    Ok((created, stored))
}

/// The report's point and station: the pin if given, else the station's place.
async fn place(app: &AppState, new: &NewReport) -> ApiResult<((f64, f64), Option<String>)> {
    let station = match &new.station {
        Some(s) => {
            let id = StationId::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let station = app
                .store()
                .station(&id)
                .await?
                .ok_or_else(|| ApiError::Invalid {
                    code: "unknown_station",
                    detail: format!("there is no station {id}"),
                })?;
            Some(station)
        }
        None => None,
    };
    let point = match (new.lat, new.lon, &station) {
        (Some(lat), Some(lon), _) => (lat, lon),
        (None, None, Some(s)) => (s.location.lat, s.location.lon),
        _ => {
            return Err(ReportError::Location(
                "give the place as lat and lon together, or a station".into(),
            )
            .into())
        }
    };
    Ok((point, station.map(|s| s.id.to_string())))
}

async fn check_rate(app: &AppState, me: &SignedIn) -> ApiResult<()> {
    let config = &app.config().reports;
    let now = Utc::now();
    for (limit, window, name) in [
        (config.per_hour, Duration::hours(1), "an hour"),
        (config.per_day, Duration::days(1), "a day"),
    ] {
        let filed = app
            .store()
            .count_reports_since(me.user_id(), now - window)
            .await?;
        if filed >= u64::from(limit) {
            return Err(ApiError::TooManyRequests(format!(
                "you filed {filed} reports in the last {}; at most {limit} are accepted in {name}",
                name.trim_start_matches("an ").trim_start_matches("a ")
            )));
        }
    }
    Ok(())
}

async fn attach_photos(
    app: &AppState,
    me: &SignedIn,
    uploads: &[String],
) -> ApiResult<Vec<ReportPhotoRow>> {
    let mut photos = Vec::with_capacity(uploads.len());
    for (i, upload) in uploads.iter().enumerate() {
        let stored = photo_uploads(app)?
            .attach(me.user_id(), upload)
            .await
            .map_err(|e| photo_error(i + 1, e))?;
        photos.push(ReportPhotoRow {
            position: i as i64,
            key: stored.key,
            thumbnail_key: stored.thumbnail_key,
            width: i64::from(stored.width),
            height: i64::from(stored.height),
            hidden: false,
        });
    }
    Ok(photos)
}

/// The upload flow, or a 503 when the server runs without one.
pub fn photo_uploads(app: &AppState) -> ApiResult<&PhotoUploads> {
    app.photo_uploads()
        .ok_or_else(|| ApiError::Unavailable("photo uploads are not configured".into()))
}

fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn new_event(
    report: &ReportRow,
    me: &SignedIn,
    kind: &str,
    public: bool,
    body: &str,
    changes: Value,
    at: DateTime<Utc>,
) -> ReportEventRow {
    ReportEventRow {
        id: 0,
        report_id: report.id.clone(),
        author: Some(me.user_id().into()),
        kind: kind.into(),
        public,
        body: body.into(),
        changes: changes.to_string(),
        created_at: at,
    }
}

fn changed(app: &AppState) {
    app.invalidate(&[CACHE_TAG.to_string()]);
    if let Some(n) = app.notifier() {
        n.wake();
    }
}

// ---- notifications ---------------------------------------------------------------------------

fn report_url(app: &AppState, id: &str) -> String {
    let base = app
        .notifier()
        .map_or("", |n| n.public_url.trim_end_matches('/'));
    format!("{base}/reports/{id}")
}

/// The message to the operators watching the area of a new report.
async fn new_report_notice(app: &AppState, report: &ReportRow) -> ApiResult<Vec<OutboxNotice>> {
    let topic = Topic::new_reports();
    let label = app.config().reports.categories.label(&report.category);
    let text = format!(
        "A new report: {} ({label}).\n\n{}\n\n{}",
        report.title,
        report.description,
        report_url(app, &report.id)
    );
    let message = Message::with_id(
        format!("{}:filed", report.id),
        &topic,
        "report.filed",
        &format!("New report: {}", report.title),
        &text,
    )
    .attribute("category", report.category.clone())
    .attribute("lat", report.lat)
    .attribute("lon", report.lon);
    notice(app, &topic, message, report).await
}

/// The message to a report's followers about a public change.
async fn update_notice(
    app: &AppState,
    report: &ReportRow,
    key: &str,
    text: &str,
) -> ApiResult<Vec<OutboxNotice>> {
    let topic = Topic::report(&report.id);
    let state: ReportState = report.state.parse()?;
    let body = format!(
        "{text}\n\nThe report is now: {}.\n{}",
        state.label(),
        report_url(app, &report.id)
    );
    let message = Message::with_id(
        format!("{}:{key}", report.id),
        &topic,
        "report.updated",
        &format!("Update on your report: {}", report.title),
        &body,
    )
    .attribute("state", report.state.clone())
    .attribute("category", report.category.clone());
    notice(app, &topic, message, report).await
}

async fn notice(
    app: &AppState,
    topic: &Topic,
    message: Message,
    report: &ReportRow,
) -> ApiResult<Vec<OutboxNotice>> {
    if app.notifier().is_none() {
        return Ok(Vec::new());
    }
    let message = message.attribute("report", report.id.clone()).data(json!({
        "report": report.id, "title": report.title, "state": report.state,
        "category": report.category, "url": report_url(app, &report.id),
    }));
    let subscriptions = app.store().confirmed_subscriptions(&topic.id).await?;
    let deliveries = deliveries_for(&message, &subscriptions, &message.id, None);
    Ok(vec![OutboxNotice {
        message: message.to_row("topic", &topic.id),
        deliveries,
    }])
}

/// Starts or stops `me` following the report: updates come to their signed-in pages and to
/// their account's e-mail address (with an unsubscribe link).
pub async fn follow(app: &AppState, me: &SignedIn, report: &ReportRow, on: bool) -> ApiResult<()> {
    let store = app.store();
    let topic = Topic::report(&report.id);
    if !on {
        store.unfollow_report(&report.id, me.user_id()).await?;
        for s in store.subscriptions_of(me.user_id()).await? {
            if s.topic_id == topic.id {
                store.delete_subscription(&s.id).await?;
            }
        }
        return Ok(());
    }
    if !store
        .follow_report(&report.id, me.user_id(), Utc::now())
        .await?
    {
        return Ok(());
    }
    let Some(notifier) = app.notifier() else {
        return Ok(());
    };
    let email = me
        .claims
        .email
        .clone()
        .filter(|_| me.claims.email_verified == Some(true));
    let mut channels = vec![(Protocol::Live, String::new())];
    channels.extend(email.map(|e| (Protocol::Email, e)));
    for (protocol, endpoint) in channels {
        notifier
            .subscribe(&SubscribeRequest {
                topic: topic.clone(),
                owner: Some(me.user_id().into()),
                protocol,
                endpoint,
                filter_policy: None,
                push_keys: None,
                endpoint_verified: true,
            })
            .await?;
    }
    Ok(())
}

/// An operator's watch on new reports: their signed-in pages and e-mail hear of every report
/// filed in the box (`[min_lat, min_lon, max_lat, max_lon]`), of the categories given (all when
/// empty). Replaces their previous watch.
pub async fn watch_new_reports(
    app: &AppState,
    me: &SignedIn,
    bbox: Option<[f64; 4]>,
    categories: &[String],
) -> ApiResult<usize> {
    me.authorize(app, Action::TriageReports, &Resource::System)?;
    let notifier = app
        .notifier()
        .ok_or_else(|| ApiError::Unavailable("notifications are not configured".into()))?;
    for c in categories {
        if app.config().reports.categories.get(c).is_none() {
            return Err(ReportError::Category(short(c)).into());
        }
    }
    let topic = Topic::new_reports();
    for s in app.store().subscriptions_of(me.user_id()).await? {
        if s.topic_id == topic.id {
            app.store().delete_subscription(&s.id).await?;
        }
    }
    let mut policy = serde_json::Map::new();
    if let Some([a, b, c, d]) = bbox {
        policy.insert("lat".into(), json!([{"numeric": [">=", a, "<=", c]}]));
        policy.insert("lon".into(), json!([{"numeric": [">=", b, "<=", d]}]));
    }
    if !categories.is_empty() {
        policy.insert("category".into(), json!(categories));
    }
    let policy = (!policy.is_empty()).then_some(Value::Object(policy));
    let email = me
        .claims
        .email
        .clone()
        .filter(|_| me.claims.email_verified == Some(true));
    let mut channels = vec![(Protocol::Live, String::new())];
    channels.extend(email.map(|e| (Protocol::Email, e)));
    let count = channels.len();
    for (protocol, endpoint) in channels {
        notifier
            .subscribe(&SubscribeRequest {
                topic: topic.clone(),
                owner: Some(me.user_id().into()),
                protocol,
                endpoint,
                filter_policy: policy.clone(),
                push_keys: None,
                endpoint_verified: true,
            })
            .await?;
    }
    Ok(count)
}

// ---- changes ---------------------------------------------------------------------------------

/// A change to a report. Every field is optional; `version` (from the report as read) makes the
/// change fail with 409 if someone else changed the report meanwhile.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportChange {
    pub version: Option<i64>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Operators: the new state…
    pub state: Option<ReportState>,
    /// …and, for `duplicate`, the report it duplicates.
    pub duplicate_of: Option<String>,
    /// Operators: who works on it (a user id); an empty string unassigns.
    pub assignee: Option<String>,
    /// Moderators: hide or show the report.
    pub hidden: Option<bool>,
    /// Moderators: hide or show photos, by position (`{"0": true}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub photos_hidden: std::collections::BTreeMap<String, bool>,
    /// A public update sent with the change (to the reporter and followers).
    pub update: Option<String>,
}

impl ReportChange {
    fn touches_text(&self) -> bool {
        self.title.is_some()
            || self.description.is_some()
            || self.category.is_some()
            || self.lat.is_some()
            || self.lon.is_some()
    }

    fn touches_triage(&self) -> bool {
        self.state.is_some() || self.duplicate_of.is_some() || self.assignee.is_some()
    }

    fn touches_moderation(&self) -> bool {
        self.hidden.is_some() || !self.photos_hidden.is_empty()
    }
}

/// Applies a change, checking each part against the policies: text and place (the reporter or
/// staff), state and assignee (triage), hiding (moderation). One history entry lists every field
/// that changed; a public update or a state change tells the followers.
pub async fn change(
    app: &AppState,
    me: &SignedIn,
    id: &str,
    change: ReportChange,
) -> ApiResult<ReportRow> {
    let before = find(app, &Viewer::User(me), id).await?;
    authorize_change(app, me, &before, &change)?;
    if change.version.is_some_and(|v| v != before.version) {
        return Err(stale(id));
    }
    let mut after = before.clone();
    let mut diff = serde_json::Map::new();
    apply_text(app, &mut after, &change, &mut diff)?;
    apply_triage(app, &mut after, &change, &mut diff).await?;
    apply_moderation(&mut after, &change, &mut diff)?;
    let update = change
        .update
        .as_deref()
        .map(|t| check_text("update", t, false))
        .transpose()?;
    if diff.is_empty() && update.is_none() {
        return Err(ApiError::BadRequest(
            "the change changes nothing; send the fields to change".into(),
        ));
    }
    let now = now_ms();
    after.updated_at = now;
    let kind = if diff.contains_key("state") {
        "state"
    } else {
        "edit"
    };
    let public = update.is_some() || diff.contains_key("state") || change.touches_text();
    let body = update.clone().unwrap_or_default();
    let event = new_event(
        &after,
        me,
        kind,
        public,
        &body,
        Value::Object(diff.clone()),
        now,
    );
    let notices = if update.is_some() || diff.contains_key("state") {
        let text = update.unwrap_or_else(|| "The report's state changed.".into());
        let key = format!("v{}", before.version + 1);
        update_notice(app, &after, &key, &text).await?
    } else {
        Vec::new()
    };
    let stored = app
        .store()
        .update_report(&after, before.version, &event, &notices)
        .await?
        .ok_or_else(|| stale(id))?;
    changed(app);
    Ok(stored)
}

fn stale(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "report {} was changed meanwhile; read it again and retry",
        short(id)
    ))
}

fn authorize_change(
    app: &AppState,
    me: &SignedIn,
    report: &ReportRow,
    change: &ReportChange,
) -> ApiResult<()> {
    let on = resource(report);
    if change.touches_text() {
        me.authorize(app, Action::EditReport, &on)?;
    }
    if change.touches_triage() {
        me.authorize(app, Action::TriageReports, &on)?;
    }
    if change.touches_moderation() {
        me.authorize(app, Action::ModerateReports, &on)?;
    }
    if change.update.is_some() && !change.touches_triage() && !change.touches_moderation() {
        me.authorize(app, Action::ViewReport, &on)?;
    }
    Ok(())
}

fn record<T: serde::Serialize + PartialEq>(
    diff: &mut serde_json::Map<String, Value>,
    field: &str,
    old: T,
    new: T,
) {
    if old != new {
        diff.insert(field.into(), json!([old, new]));
    }
}

fn apply_text(
    app: &AppState,
    r: &mut ReportRow,
    c: &ReportChange,
    diff: &mut serde_json::Map<String, Value>,
) -> ApiResult<()> {
    if let Some(title) = &c.title {
        let title = check_title(title)?;
        record(diff, "title", &r.title, &title);
        r.title = title;
    }
    if let Some(description) = &c.description {
        let description = check_text("description", description, true)?;
        record(diff, "description", &r.description, &description);
        r.description = description;
    }
    if let Some(category) = &c.category {
        if app.config().reports.categories.get(category).is_none() {
            return Err(ReportError::Category(short(category)).into());
        }
        record(diff, "category", &r.category, category);
        r.category = category.clone();
    }
    if c.lat.is_some() || c.lon.is_some() {
        let point =
            ecocityhub_domain::GeoPoint::new(c.lat.unwrap_or(r.lat), c.lon.unwrap_or(r.lon))
                .map_err(|e| ReportError::Location(e.to_string()))?;
        record(diff, "location", [r.lat, r.lon], [point.lat, point.lon]);
        (r.lat, r.lon) = (point.lat, point.lon);
    }
    Ok(())
}

async fn apply_triage(
    app: &AppState,
    r: &mut ReportRow,
    c: &ReportChange,
    diff: &mut serde_json::Map<String, Value>,
) -> ApiResult<()> {
    if let Some(to) = c.state {
        let from: ReportState = r.state.parse()?;
        check_transition(&r.id, from, to, c.duplicate_of.as_deref())?;
        if let Some(original) = &c.duplicate_of {
            if app.store().report(original).await?.is_none() {
                return Err(ApiError::Invalid {
                    code: "bad_duplicate_of",
                    detail: format!("there is no report {}", short(original)),
                });
            }
        }
        record(diff, "state", &r.state, &to.as_str().to_string());
        record(diff, "duplicate_of", &r.duplicate_of, &c.duplicate_of);
        r.state = to.as_str().into();
        r.duplicate_of = c.duplicate_of.clone();
    } else if c.duplicate_of.is_some() {
        return Err(ReportError::DuplicateOfUnexpected.into());
    }
    if let Some(assignee) = &c.assignee {
        let assignee = Some(assignee.clone()).filter(|a| !a.is_empty());
        if let Some(a) = &assignee {
            let user = app.store().user(a).await?;
            let staff = user.is_some_and(|u| {
                u.roles.iter().any(|r| {
                    matches!(
                        r,
                        ecocityhub_identity::Role::Operator | ecocityhub_identity::Role::Admin
                    )
                })
            });
            if !staff {
                return Err(ApiError::Invalid {
                    code: "bad_assignee",
                    detail: format!("{} is not an operator or admin", short(a)),
                });
            }
        }
        record(diff, "assignee", &r.assignee, &assignee);
        r.assignee = assignee;
    }
    Ok(())
}

fn apply_moderation(
    r: &mut ReportRow,
    c: &ReportChange,
    diff: &mut serde_json::Map<String, Value>,
) -> ApiResult<()> {
    if let Some(hidden) = c.hidden {
        record(diff, "hidden", r.hidden, hidden);
        r.hidden = hidden;
    }
    for (position, hidden) in &c.photos_hidden {
        let photo = position
            .parse::<i64>()
            .ok()
            .and_then(|p| r.photos.iter_mut().find(|ph| ph.position == p))
            .ok_or_else(|| ApiError::Invalid {
                code: "unknown_photo",
                detail: format!("the report has no photo {}", short(position)),
            })?;
        record(
            diff,
            &format!("photo {position} hidden"),
            photo.hidden,
            *hidden,
        );
        photo.hidden = *hidden;
    }
    Ok(())
}

/// A comment on a report: a public update (anyone who may see it) or an internal note (staff).
pub async fn comment(
    app: &AppState,
    me: &SignedIn,
    id: &str,
    text: &str,
    internal: bool,
) -> ApiResult<ReportEventRow> {
    let report = find(app, &Viewer::User(me), id).await?;
    let action = if internal {
        Action::TriageReports
    } else {
        Action::ViewReport
    };
    me.authorize(app, action, &resource(&report))?;
    let text = check_text(if internal { "note" } else { "update" }, text, false)?;
    let now = now_ms();
    let kind = if internal { "note" } else { "update" };
    let event = new_event(&report, me, kind, !internal, &text, json!({}), now);
    let notices = if internal {
        Vec::new()
    } else {
        let key = format!("c{}", now.timestamp_millis());
        update_notice(app, &report, &key, &text).await?
    };
    let event_id = app
        .store()
        .add_report_event(&event, &notices)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no report {}", short(id))))?;
    changed(app);
    Ok(ReportEventRow {
        id: event_id,
        ..event
    })
}

/// The same state (and public update) for many reports; each is its own change, so one that
/// cannot move is said and the others still move.
pub async fn bulk_state(
    app: &AppState,
    me: &SignedIn,
    ids: &[String],
    state: ReportState,
    update: Option<String>,
) -> ApiResult<Vec<(String, Result<i64, String>)>> {
    me.authorize(app, Action::TriageReports, &Resource::System)?;
    if ids.is_empty() || ids.len() > 200 {
        return Err(ApiError::BadRequest(
            "give 1 to 200 report ids to change".into(),
        ));
    }
    let mut outcomes = Vec::with_capacity(ids.len());
    for id in ids {
        let one = ReportChange {
            state: Some(state),
            update: update.clone(),
            ..ReportChange::default()
        };
        let outcome = change(app, me, id, one)
            .await
            .map(|r| r.version)
            .map_err(|e| e.to_string());
        outcomes.push((id.clone(), outcome));
    }
    Ok(outcomes)
}

/// Open reports of the same category within [`DUPLICATE_RADIUS_M`]: what a citizen is offered
/// before filing another.
pub async fn possible_duplicates(
    app: &AppState,
    lat: f64,
    lon: f64,
    category: Option<&str>,
) -> ApiResult<Vec<ReportRow>> {
    ecocityhub_domain::GeoPoint::new(lat, lon).map_err(|e| ReportError::Location(e.to_string()))?;
    let near = app
        .store()
        .reports_near(lat, lon, DUPLICATE_RADIUS_M, category)
        .await?;
    Ok(near
        .into_iter()
        .filter(|r| r.state.parse::<ReportState>().is_ok_and(|s| s.is_open()))
        .collect())
}
