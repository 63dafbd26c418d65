//! One report's page (`/reports/{id}`): what was reported, where and when, its photos and its
//! public history; for signed-in visitors a follow button and a public-update form; for
//! operators and admins also the internal notes, the assignee, the triage form (state,
//! duplicate, assignee, an update or an internal note) and hiding the report or a photo. Every
//! form posts to a route under `/reports/{id}/…` that calls the API's service and comes back
//! here with a message; a mistake is said here with the form as it was filled in.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ecocityhub_api::extract::{ApiPath, ApiQuery};
use ecocityhub_api::reports::{self as service, ReportChange, Viewer};
use ecocityhub_api::routes::reports::{self as api_reports, history_out, report_out};
use ecocityhub_api::routes::reports::{EventOut, PhotoOut, PhotoQuery, ReportOut};
use ecocityhub_api::signed_in::SignedIn;
use ecocityhub_api::ApiError;
use ecocityhub_domain::{ReportState, StationId};
use ecocityhub_identity::{Action, Resource};
use ecocityhub_store::reports::ReportRow;
use serde::Deserialize;
use serde_json::Value;

use super::alerts::Choice;
use super::reports::{answer, report_path, state_class, status_of};
use crate::error::WebResult;
use crate::session::{CsrfForm, SessionUser, Visitor};
use crate::view::{self, say, Layout};
use crate::WebState;

/// A report as its page shows it.
pub struct ReportView {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub state: &'static str,
    /// `open` or `closed`.
    pub class: &'static str,
    pub filed: String,
    pub updated: String,
    pub lat: String,
    pub lon: String,
    /// The station's id and name.
    pub station: Option<(String, String)>,
    pub duplicate_of: Option<String>,
    pub hidden: bool,
    pub version: i64,
    pub photos: Vec<PhotoView>,
    /// Staff only: who filed it and who works on it.
    pub reporter: String,
    pub assignee: String,
    pub mine: bool,
}

/// A photo: a thumbnail linking to the full photo.
pub struct PhotoView {
    pub position: i64,
    pub url: String,
    pub thumbnail: String,
    pub alt: String,
    pub hidden: bool,
}

/// One entry of the history.
pub struct EventView {
    pub when: String,
    pub what: &'static str,
    /// "by staff", "by the reporter"…
    pub by: &'static str,
    pub body: String,
    /// What changed, each said in words ("Submitted → Investigating").
    pub changes: Vec<String>,
    /// Staff only (an internal note, or a change only staff see).
    pub internal: bool,
}

/// What the triage form holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriageDraft {
    /// A state, or empty to keep it.
    pub state: String,
    pub duplicate_of: String,
    /// A user id, `me`, or empty for nobody; `None` (not in the form) keeps it.
    pub assignee: Option<String>,
    pub text: String,
    /// The text is an internal note, not a public update.
    pub internal: bool,
}

impl TriageDraft {
    fn of(r: &ReportOut) -> TriageDraft {
        TriageDraft {
            duplicate_of: r.duplicate_of.clone().unwrap_or_default(),
            assignee: Some(r.assignee.clone().unwrap_or_default()),
            ..TriageDraft::default()
        }
    }

    fn from_fields(fields: &[(String, String)]) -> TriageDraft {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        TriageDraft {
            state: get("state"),
            duplicate_of: get("duplicate_of"),
            assignee: fields
                .iter()
                .find(|(k, _)| k == "assignee")
                .map(|(_, v)| v.trim().to_string()),
            text: get("text"),
            internal: !get("internal").is_empty(),
        }
    }
}

/// The triage form: the states the report may move to, and the draft.
pub struct TriageForm {
    pub states: Vec<Choice>,
    pub draft: TriageDraft,
}

#[derive(Template)]
#[template(path = "reports/show.html")]
pub struct ReportPage {
    pub layout: Layout,
    pub report: ReportView,
    pub history: Vec<EventView>,
    pub signed_in: bool,
    pub following: bool,
    pub staff: bool,
    /// The public-update form's text.
    pub comment: String,
    pub triage: Option<TriageForm>,
}

/// What forms answered with a mistake keep.
#[derive(Default)]
pub struct Kept {
    pub comment: String,
    pub triage: Option<TriageDraft>,
}

fn photo_view(r: &ReportOut, p: &PhotoOut) -> PhotoView {
    // Hidden ones only staff (and, of a hidden report, its reporter) see: through the session.
    let (url, thumbnail) = if r.hidden || p.hidden {
        let url = format!("{}/photos/{}", report_path(&r.id), p.position);
        (url.clone(), format!("{url}?size=thumbnail"))
    } else {
        (p.url.clone(), p.thumbnail_url.clone())
    };
    PhotoView {
        position: p.position,
        url,
        thumbnail,
        alt: format!("Photo {} of the report “{}”", p.position + 1, r.title),
        hidden: p.hidden,
    }
}

/// A user's e-mail address and id, for staff.
async fn person(web: &WebState, id: Option<&str>) -> WebResult<String> {
    let Some(id) = id else {
        return Ok(String::new());
    };
    if id == ecocityhub_store::identity::FORMER_USER {
        return Ok("a former user (the account was deleted)".into());
    }
    Ok(match web.app.store().user(id).await? {
        Some(u) => format!("{} ({id})", u.email),
        None => id.to_string(),
    })
}

async fn station_of(web: &WebState, id: Option<&str>) -> WebResult<Option<(String, String)>> {
    let Some(sid) = id.and_then(|s| StationId::parse(s).ok()) else {
        return Ok(None);
    };
    let name = web.app.store().station(&sid).await?.map(|s| s.name);
    Ok(Some((
        sid.to_string(),
        name.unwrap_or_else(|| sid.to_string()),
    )))
}

async fn report_facts(web: &WebState, r: &ReportOut) -> WebResult<ReportView> {
    Ok(ReportView {
        id: r.id.clone(),
        title: r.title.clone(),
        description: r.description.clone(),
        category: r.category_label.clone(),
        state: r.state_label,
        class: state_class(r.state),
        filed: view::fmt_time(r.created_at),
        updated: view::fmt_time(r.updated_at),
        lat: format!("{:.5}", r.lat),
        lon: format!("{:.5}", r.lon),
        station: station_of(web, r.station.as_deref()).await?,
        duplicate_of: r.duplicate_of.clone(),
        hidden: r.hidden,
        version: r.version,
        photos: r.photos.iter().map(|p| photo_view(r, p)).collect(),
        reporter: person(web, r.reporter.as_deref()).await?,
        assignee: person(web, r.assignee.as_deref()).await?,
        mine: r.mine,
    })
}

fn state_label(v: &Value) -> String {
    v.as_str()
        .map(|s| {
            s.parse::<ReportState>()
                .map_or(s, |st| st.label())
                .to_string()
        })
        .unwrap_or_else(|| "none".into())
}

/// One change of a history entry in words.
fn change_words(field: &str, old: &Value, new: &Value) -> String {
    match field {
        "state" => format!("{} → {}", state_label(old), state_label(new)),
        "duplicate_of" => match new.as_str() {
            Some(d) => format!("A duplicate of report {d}"),
            None => "No longer a duplicate".into(),
        },
        "assignee" => match new.as_str() {
            Some(a) => format!("Assigned to {a}"),
            None => "Unassigned".into(),
        },
        "hidden" if new == &Value::Bool(true) => "Hidden by a moderator".into(),
        "hidden" => "Shown again".into(),
        "location" => "The place changed".into(),
        other => match other.strip_suffix(" hidden") {
            Some(photo) => {
                let n = photo
                    .trim_start_matches("photo ")
                    .parse::<i64>()
                    .map_or(0, |n| n + 1);
                let done = if new == &Value::Bool(true) {
                    "hidden"
                } else {
                    "shown again"
                };
                format!("Photo {n} {done}")
            }
            None => format!("The {other} changed"),
        },
    }
}

/// An entry of the history; who is assigned is staff's business only.
fn event_view(e: &EventOut, staff: bool) -> EventView {
    let mut changes: BTreeMap<String, Value> = serde_json::from_value(e.changes.clone())
        .ok()
        .unwrap_or_default();
    if !staff {
        changes.remove("assignee");
    }
    let mut words: Vec<String> = Vec::new();
    // The state first.
    for (field, pair) in changes.iter().filter(|(f, _)| *f == "state") {
        words.push(change_words(field, &pair[0], &pair[1]));
    }
    for (field, pair) in changes.iter().filter(|(f, _)| *f != "state") {
        words.push(change_words(field, &pair[0], &pair[1]));
    }
    EventView {
        when: view::fmt_time(e.created_at),
        what: match e.kind.as_str() {
            "filed" => "Filed",
            "update" => "Update",
            "note" => "Internal note",
            "state" => "State changed",
            _ => "Changed",
        },
        by: match e.by {
            "reporter" => "by the reporter",
            "staff" => "by staff",
            _ => "by a citizen",
        },
        body: e.body.clone(),
        changes: words,
        internal: !e.public,
    }
}

fn triage_form(r: &ReportOut, draft: TriageDraft) -> TriageForm {
    let keep = Choice {
        value: String::new(),
        label: format!("Keep: {}", r.state_label),
        selected: draft.state.is_empty(),
    };
    let next = r.state.next_states().map(|s| Choice {
        value: s.as_str().into(),
        label: s.label().into(),
        selected: draft.state == s.as_str(),
    });
    TriageForm {
        states: std::iter::once(keep).chain(next).collect(),
        draft,
    }
}

/// The view model of a report's page for the visitor, with the forms as `kept`.
pub async fn report_view(
    web: &WebState,
    visitor: &Visitor,
    mut layout: Layout,
    id: &str,
    kept: Kept,
) -> WebResult<ReportPage> {
    let me = visitor.user.as_ref().map(|u| u.signed_in(&web.app));
    let viewer = Viewer::from(me.as_ref());
    let row = service::find(&web.app, &viewer, id).await?;
    let r = report_out(&web.app, &viewer, &row);
    let history = history_out(&web.app, &viewer, &row).await?;
    let following = match &me {
        Some(me) => web.app.store().follows(&row.id, me.user_id()).await?,
        None => false,
    };
    let staff = viewer.is_staff(&web.app);
    layout.title = r.title.clone();
    Ok(ReportPage {
        layout,
        history: history.iter().map(|e| event_view(e, staff)).collect(),
        signed_in: me.is_some(),
        following,
        staff,
        comment: kept.comment,
        triage: staff.then(|| triage_form(&r, kept.triage.unwrap_or_else(|| TriageDraft::of(&r)))),
        report: report_facts(web, &r).await?,
    })
}

fn layout(web: &WebState, visitor: &Visitor) -> Layout {
    Layout::new(web, visitor, "Report").section("reports")
}

/// The message of a `?said=` key (only these: a link cannot make the page say anything else).
fn said(key: &str) -> Option<&'static str> {
    Some(match key {
        "filed" => "Your report is filed, and you follow it: its updates come to you.",
        "followed" => "You follow this report: its updates come to you.",
        "unfollowed" => "You no longer follow this report.",
        "commented" => "Your update is added.",
        "triaged" => "The report is updated.",
        "hidden" => "The report is hidden: only staff and its reporter see it now.",
        "shown" => "The report is shown to everyone again.",
        "photo_hidden" => "The photo is hidden: only staff see it now.",
        "photo_shown" => "The photo is shown to everyone again.",
        _ => return None,
    })
}

#[derive(Deserialize)]
pub struct ShowQuery {
    said: Option<String>,
}

/// `GET /reports/{id}` (`?said=…` after a form of the page).
pub async fn show(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> WebResult<Response> {
    let mut layout = layout(&web, &visitor);
    if let Some(text) = q.said.as_deref().and_then(said) {
        layout = layout.flash(text);
    }
    let page = report_view(&web, &visitor, layout, &id, Kept::default()).await?;
    answer(StatusCode::OK, page)
}

/// After a form: back to the page with its message; a mistake of the visitor's said on the page
/// with the forms kept (a missing report or a refusal is an error page).
async fn after(
    web: &WebState,
    visitor: &Visitor,
    id: &str,
    result: Result<&'static str, ApiError>,
    kept: Kept,
) -> WebResult<Response> {
    let e = match result {
        Ok(key) => {
            web.cache.reports_changed();
            let to = format!("{}?said={key}", report_path(id));
            return Ok(Redirect::to(&to).into_response());
        }
        Err(e) => e,
    };
    if e.status().is_server_error() || matches!(e, ApiError::NotFound(_) | ApiError::Forbidden(_)) {
        return Err(e.into());
    }
    let why = if matches!(e, ApiError::Conflict(_)) {
        "Someone changed this report meanwhile, so your change was not saved. The page shows \
         it as it is now: check it and send your change again."
            .to_string()
    } else {
        say(&e)
    };
    let layout = layout(web, visitor).error(why);
    answer(
        status_of(&e),
        report_view(web, visitor, layout, id, kept).await?,
    )
}

#[derive(Deserialize)]
pub struct FollowForm {
    /// `true` to follow, `false` to stop.
    on: bool,
}

/// `POST /reports/{id}/follow` (`on=true|false`).
pub async fn follow(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<FollowForm>,
) -> WebResult<Response> {
    let me = visitor.require()?.signed_in(&web.app);
    let result = async {
        let report = service::find(&web.app, &Viewer::User(&me), &id).await?;
        service::follow(&web.app, &me, &report, form.on).await
    }
    .await
    .map(|()| if form.on { "followed" } else { "unfollowed" });
    after(&web, &visitor, &id, result, Kept::default()).await
}

#[derive(Deserialize)]
pub struct CommentForm {
    text: String,
}

/// `POST /reports/{id}/comments`: a public update.
pub async fn comment(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<CommentForm>,
) -> WebResult<Response> {
    let me = visitor.require()?.signed_in(&web.app);
    let result = service::comment(&web.app, &me, &id, &form.text, false)
        .await
        .map(|_| "commented");
    let kept = Kept {
        comment: form.text,
        triage: None,
    };
    after(&web, &visitor, &id, result, kept).await
}

/// The signed-in user, if they triage reports; else a 403 page.
pub fn staff<'a>(web: &WebState, visitor: &'a Visitor) -> WebResult<&'a SessionUser> {
    let user = visitor.require()?;
    user.authorize(&web.app, Action::TriageReports, &Resource::System)?;
    Ok(user)
}

/// `POST /reports/{id}/triage` (staff): the state, duplicate and assignee, with the text as a
/// public update or an internal note; `version` is the report's as the form showed it.
pub async fn triage(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(fields): CsrfForm<Vec<(String, String)>>,
) -> WebResult<Response> {
    let me = staff(&web, &visitor)?.signed_in(&web.app);
    let draft = TriageDraft::from_fields(&fields);
    let version = fields
        .iter()
        .find(|(k, _)| k == "version")
        .and_then(|(_, v)| v.trim().parse::<i64>().ok());
    let result = apply_triage(&web, &me, &id, version, &draft)
        .await
        .map(|()| "triaged");
    let kept = Kept {
        comment: String::new(),
        triage: Some(draft),
    };
    after(&web, &visitor, &id, result, kept).await
}

/// The triage form's change: the fields through `change` (with a public update), then an
/// internal note — or the text alone as a comment when no field changes.
async fn apply_triage(
    web: &WebState,
    me: &SignedIn,
    id: &str,
    version: Option<i64>,
    draft: &TriageDraft,
) -> Result<(), ApiError> {
    let report = service::find(&web.app, &Viewer::User(me), id).await?;
    let change = triage_change(&report, me, version, draft)?;
    let text = draft.text.as_str();
    let changes_fields =
        change.state.is_some() || change.duplicate_of.is_some() || change.assignee.is_some();
    if !changes_fields && text.is_empty() {
        return Err(ApiError::BadRequest(
            "choose a new state or assignee, or write an update or a note".into(),
        ));
    }
    if changes_fields {
        service::change(&web.app, me, id, change).await?;
    }
    if !text.is_empty() && (draft.internal || !changes_fields) {
        service::comment(&web.app, me, id, text, draft.internal).await?;
    }
    Ok(())
}

fn triage_change(
    report: &ReportRow,
    me: &SignedIn,
    version: Option<i64>,
    draft: &TriageDraft,
) -> Result<ReportChange, ApiError> {
    let state = match draft.state.as_str() {
        "" => None,
        s => Some(s.parse::<ReportState>()?),
    };
    let assignee = match draft.assignee.as_deref() {
        Some("me") => Some(me.user_id().to_string()),
        other => other.map(str::to_string),
    }
    .filter(|a| *a != report.assignee.clone().unwrap_or_default());
    let duplicate_of = Some(draft.duplicate_of.clone())
        .filter(|d| !d.is_empty() && state == Some(ReportState::Duplicate));
    Ok(ReportChange {
        version,
        state,
        duplicate_of,
        assignee,
        update: Some(draft.text.clone()).filter(|t| !t.is_empty() && !draft.internal),
        ..ReportChange::default()
    })
}

#[derive(Deserialize)]
pub struct HideForm {
    /// `true` to hide, `false` to show.
    hidden: bool,
}

/// `POST /reports/{id}/hide` (moderators; `hidden=true|false`).
pub async fn hide(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<HideForm>,
) -> WebResult<Response> {
    let me = staff(&web, &visitor)?.signed_in(&web.app);
    let change = ReportChange {
        hidden: Some(form.hidden),
        ..ReportChange::default()
    };
    let result = service::change(&web.app, &me, &id, change).await.map(|_| {
        if form.hidden {
            "hidden"
        } else {
            "shown"
        }
    });
    after(&web, &visitor, &id, result, Kept::default()).await
}

/// `POST /reports/{id}/photos/{n}/hide` (moderators; `hidden=true|false`).
pub async fn hide_photo(
    State(web): State<WebState>,
    visitor: Visitor,
    Path((id, position)): Path<(String, i64)>,
    CsrfForm(form): CsrfForm<HideForm>,
) -> WebResult<Response> {
    let me = staff(&web, &visitor)?.signed_in(&web.app);
    let change = ReportChange {
        photos_hidden: [(position.to_string(), form.hidden)].into(),
        ..ReportChange::default()
    };
    let result = service::change(&web.app, &me, &id, change).await.map(|_| {
        if form.hidden {
            "photo_hidden"
        } else {
            "photo_shown"
        }
    });
    after(&web, &visitor, &id, result, Kept::default()).await
}

#[derive(Deserialize)]
pub struct PhotoSize {
    size: Option<String>,
}

/// `GET /reports/{id}/photos/{n}[?size=thumbnail]`: a photo through the visitor's session, for
/// the ones the public URL does not serve (hidden ones, to staff).
pub async fn photo(
    State(web): State<WebState>,
    visitor: Visitor,
    Path((id, position)): Path<(String, i64)>,
    Query(q): Query<PhotoSize>,
) -> Response {
    let me = visitor.user.as_ref().map(|u| u.signed_in(&web.app));
    api_reports::photo(
        State(web.app.clone()),
        me,
        ApiPath((id, position)),
        ApiQuery(PhotoQuery { size: q.size }),
    )
    .await
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_entries_say_what_changed_in_words() {
        let e = EventOut {
            id: 1,
            kind: "state".into(),
            public: true,
            by: "staff",
            body: "We are on it.".into(),
            changes: json!({"assignee": [null, "op-1"], "state": ["submitted", "investigating"]}),
            created_at: chrono::Utc::now(),
        };
        let v = event_view(&e, true);
        assert_eq!(v.changes, ["Submitted → Investigating", "Assigned to op-1"]);
        assert_eq!(event_view(&e, false).changes, ["Submitted → Investigating"]);
        assert_eq!(
            (v.what, v.by, v.internal),
            ("State changed", "by staff", false)
        );
        assert_eq!(
            change_words("photo 0 hidden", &json!(false), &json!(true)),
            "Photo 1 hidden"
        );
        assert_eq!(
            change_words("hidden", &json!(true), &json!(false)),
            "Shown again"
        );
        assert_eq!(said("filed").is_some(), said("<script>").is_none());
    }
}
