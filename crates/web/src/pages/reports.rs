//! Citizens' reports, the filing side and the public list: `/reports/new` (the form; photos go
//! straight to the blob store through signed URLs that `POST /reports/uploads` hands the page's
//! script), `POST /reports/new` (files through the API's service) and `/reports` (the open or
//! closed reports, by category and place, page by page). One report's page is
//! [`super::report`]; the operators' queue is [`super::triage`].

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use ecocityhub_api::extract::ApiJson;
use ecocityhub_api::reports::{self as service, NewReport, Viewer};
use ecocityhub_api::routes::reports::{self as api_reports, filter_of, report_out, ListQuery};
use ecocityhub_api::routes::reports::{NewUpload, ReportOut};
use ecocityhub_api::ApiError;
use ecocityhub_domain::report::MAX_PHOTOS;
use ecocityhub_domain::ReportState;
use serde::Deserialize;

use super::alerts::{choices, Choice};
use crate::error::{WebError, WebResult};
use crate::session::{CsrfForm, SessionUser, Visitor};
use crate::view::{self, say, Layout};
use crate::WebState;

/// A report as the lists show it.
pub struct ReportRowView {
    pub id: String,
    pub title: String,
    pub category: String,
    pub state: &'static str,
    /// `open` or `closed` (the badge's class).
    pub class: &'static str,
    pub filed: String,
    pub updated: String,
    pub photos: usize,
    pub hidden: bool,
    /// Staff only: who works on it.
    pub assignee: String,
}

impl ReportRowView {
    pub fn of(r: &ReportOut) -> ReportRowView {
        ReportRowView {
            id: r.id.clone(),
            title: r.title.clone(),
            category: r.category_label.clone(),
            state: r.state_label,
            class: state_class(r.state),
            filed: view::fmt_time(r.created_at),
            updated: view::fmt_time(r.updated_at),
            photos: r.photos.len(),
            hidden: r.hidden,
            assignee: r.assignee.clone().unwrap_or_default(),
        }
    }
}

/// The badge class of a state: `open` or `closed`.
pub fn state_class(state: ReportState) -> &'static str {
    if state.is_open() {
        "open"
    } else {
        "closed"
    }
}

/// The path of a report's page.
pub fn report_path(id: &str) -> String {
    format!("/reports/{}", view::url_encode(id))
}

/// The categories of the configuration as options.
pub fn category_choices(web: &WebState, selected: &str) -> Vec<Choice> {
    let categories = &web.app.config().reports.categories.0;
    choices(
        categories.iter().map(|c| (c.key.clone(), c.label.clone())),
        selected,
    )
}

/// A page answered with a status.
pub fn answer<T: Template>(status: StatusCode, page: T) -> WebResult<Response> {
    Ok((status, Html(page.render()?)).into_response())
}

/// The status a form's mistake is answered with (a fault of ours is an error page instead).
pub fn status_of(e: &ApiError) -> StatusCode {
    match e.status() {
        s if s.is_server_error() => StatusCode::INTERNAL_SERVER_ERROR,
        s => s,
    }
}

// ---- the form ----------------------------------------------------------------------------------

/// What the new-report form holds (kept when it is answered with a mistake).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportForm {
    /// Made with the form, so that sending it twice files once.
    pub id: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub lat: String,
    pub lon: String,
    pub station: String,
    /// Upload ids of the photos uploaded already.
    pub photos: Vec<String>,
}

impl ReportForm {
    /// The draft of a posted form (`photo` may repeat).
    pub fn from_fields(fields: &[(String, String)]) -> ReportForm {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        ReportForm {
            id: get("id"),
            category: get("category"),
            title: get("title"),
            description: get("description"),
            lat: get("lat"),
            lon: get("lon"),
            station: get("station"),
            photos: fields
                .iter()
                .filter(|(k, v)| k == "photo" && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_string())
                .collect(),
        }
    }

    /// The place as numbers: both or neither (then the station's place is taken).
    pub fn point(&self) -> Result<Option<(f64, f64)>, String> {
        let number = |what: &str, v: &str, example: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("The {what} must be a number, like {example}."))
        };
        match (self.lat.as_str(), self.lon.as_str()) {
            ("", "") => Ok(None),
            ("", _) | (_, "") => {
                Err("Give both the latitude and the longitude, or neither and a station.".into())
            }
            (lat, lon) => Ok(Some((
                number("latitude", lat, "52.52")?,
                number("longitude", lon, "13.40")?,
            ))),
        }
    }

    /// The report to file, or what is wrong (the rest the API checks).
    pub fn to_new(&self) -> Result<NewReport, String> {
        if self.category.is_empty() {
            return Err("Choose what kind of problem it is.".into());
        }
        let point = self.point()?;
        if point.is_none() && self.station.is_empty() {
            return Err(
                "Say where it is: the latitude and longitude, or the station it is next to.".into(),
            );
        }
        Ok(NewReport {
            id: Some(self.id.clone()).filter(|i| !i.is_empty()),
            category: self.category.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            lat: point.map(|p| p.0),
            lon: point.map(|p| p.1),
            station: Some(self.station.clone()).filter(|s| !s.is_empty()),
            photos: self.photos.clone(),
        })
    }
}

/// A station to choose, with its place (the script fills in the coordinates from it).
pub struct StationChoice {
    pub id: String,
    pub label: String,
    pub lat: f64,
    pub lon: f64,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "reports/new.html")]
pub struct NewReportPage {
    pub layout: Layout,
    pub form: ReportForm,
    pub categories: Vec<Choice>,
    pub stations: Vec<StationChoice>,
    /// Open reports of the kind near the place (on a form answered with a mistake).
    pub duplicates: Vec<ReportRowView>,
    pub max_photos: usize,
}

fn new_layout(web: &WebState, visitor: &Visitor) -> Layout {
    Layout::new(web, visitor, "Report a problem")
        .section("reports")
        .script("reports.js")
}

async fn station_choices(web: &WebState, selected: &str) -> WebResult<Vec<StationChoice>> {
    let mut stations: Vec<StationChoice> = web
        .app
        .store()
        .stations()
        .await?
        .into_iter()
        .filter(|s| s.active || s.id.as_str() == selected)
        .map(|s| StationChoice {
            selected: s.id.as_str() == selected,
            id: s.id.to_string(),
            label: format!("{} ({})", s.name, s.id),
            lat: s.location.lat,
            lon: s.location.lon,
        })
        .collect();
    stations.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(stations)
}

/// Open reports of the form's category near its place, for "is it one of these?".
async fn duplicates_of(web: &WebState, user: &SessionUser, form: &ReportForm) -> Vec<ReportOut> {
    let Ok(Some((lat, lon))) = form.point() else {
        return Vec::new();
    };
    let category = Some(form.category.as_str()).filter(|c| !c.is_empty());
    let me = user.signed_in(&web.app);
    let viewer = Viewer::User(&me);
    service::possible_duplicates(&web.app, lat, lon, category)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| viewer.may_view(&web.app, r))
        .map(|r| report_out(&web.app, &viewer, r))
        .collect()
}

/// The view model of the new-report form, filled in from `form`.
pub async fn new_view(
    web: &WebState,
    user: &SessionUser,
    layout: Layout,
    form: ReportForm,
    with_duplicates: bool,
) -> WebResult<NewReportPage> {
    let duplicates = if with_duplicates {
        duplicates_of(web, user, &form).await
    } else {
        Vec::new()
    };
    Ok(NewReportPage {
        layout,
        categories: category_choices(web, &form.category),
        stations: station_choices(web, &form.station).await?,
        duplicates: duplicates.iter().map(ReportRowView::of).collect(),
        max_photos: MAX_PHOTOS,
        form,
    })
}

#[derive(Deserialize)]
pub struct NewQuery {
    lat: Option<String>,
    lon: Option<String>,
    station: Option<String>,
    category: Option<String>,
}

/// `GET /reports/new` (`?lat=&lon=` or `?station=` to start at a place).
pub async fn new_form(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<NewQuery>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let mut form = ReportForm {
        id: ecocityhub_notify::ids::new_id("rep_"),
        category: q.category.unwrap_or_default(),
        lat: q.lat.unwrap_or_default().trim().to_string(),
        lon: q.lon.unwrap_or_default().trim().to_string(),
        station: q.station.unwrap_or_default().trim().to_string(),
        ..ReportForm::default()
    };
    let page = new_view(&web, user, new_layout(&web, &visitor), form.clone(), false).await?;
    if form.lat.is_empty() && form.lon.is_empty() {
        if let Some(s) = page.stations.iter().find(|s| s.selected) {
            (form.lat, form.lon) = (s.lat.to_string(), s.lon.to_string());
            return answer(StatusCode::OK, NewReportPage { form, ..page });
        }
    }
    answer(StatusCode::OK, page)
}

/// `POST /reports/new`: files the report and goes to its page; a mistake is said on the form,
/// with the fields as they were filled in (and the reports it may duplicate).
pub async fn file(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(fields): CsrfForm<Vec<(String, String)>>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let mut form = ReportForm::from_fields(&fields);
    let result = match form.to_new() {
        Err(why) => Err((StatusCode::BAD_REQUEST, why)),
        Ok(new) => service::file(&web.app, &user.signed_in(&web.app), new)
            .await
            .map_err(|e| filing_mistake(e, &mut form)),
    };
    match result {
        Ok((_, report)) => {
            web.cache.reports_changed();
            Ok(Redirect::to(&format!("{}?said=filed", report_path(&report.id))).into_response())
        }
        Err((status, detail)) if status.is_server_error() => Err(WebError::Internal(detail)),
        Err((status, why)) => {
            let layout = new_layout(&web, &visitor).error(why);
            answer(status, new_view(&web, user, layout, form, true).await?)
        }
    }
}

/// A refused filing as the form says it. A refused photo leaves the uploads before it used up
/// (they were attached), so the photos are to be chosen again.
fn filing_mistake(e: ApiError, form: &mut ReportForm) -> (StatusCode, String) {
    if e.status().is_server_error() {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let mut why = say(&e);
    if e.to_string().starts_with("photo ") {
        form.photos.clear();
        why.push_str(" Choose the photos again.");
    }
    (status_of(&e), why)
}

#[derive(Deserialize)]
pub struct UploadForm {
    content_type: String,
    size: u64,
    sha256: String,
}

/// `POST /reports/uploads` (the new-report page's script, with the CSRF token): a signed URL
/// to upload one photo to, through the API's handler (the blob layer signs it), as JSON; a
/// refusal is the API's problem+json.
pub async fn sign_upload(
    State(web): State<WebState>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<UploadForm>,
) -> Response {
    let Some(user) = &visitor.user else {
        return ApiError::unauthorized("sign in to upload photos").into_response();
    };
    let result = api_reports::sign_upload(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiJson(NewUpload {
            content_type: form.content_type,
            size: form.size,
            sha256: form.sha256,
        }),
    )
    .await;
    match result {
        Ok((status, Json(signed))) => (status, Json(signed)).into_response(),
        Err(e) => e.into_response(),
    }
}

// ---- the public list ---------------------------------------------------------------------------

/// Reports a page of the list shows.
pub const PAGE_SIZE: u32 = 20;

#[derive(Debug, Default, Deserialize)]
pub struct ListForm {
    /// `open` (the default), `closed` or `all`.
    state: Option<String>,
    category: Option<String>,
    /// `min_lon,min_lat,max_lon,max_lat` (the map's clusters link here with one).
    bbox: Option<String>,
    /// From 1.
    page: Option<u32>,
}

/// A link to another page of a list.
pub struct PageLink {
    pub href: String,
    pub label: &'static str,
}

#[derive(Template)]
#[template(path = "reports/list.html")]
pub struct ListPage {
    pub layout: Layout,
    pub states: Vec<Choice>,
    pub categories: Vec<Choice>,
    pub bbox: String,
    pub reports: Vec<ReportRowView>,
    pub total: u64,
    pub pages: Vec<PageLink>,
}

/// Links to the previous and next pages of `path?query&page=N`.
pub fn page_links(path: &str, query: &str, page: u32, shown: usize, total: u64) -> Vec<PageLink> {
    let href = |n: u32| {
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{path}?{query}{sep}page={n}")
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(PageLink {
            href: href(page - 1),
            label: "← Newer",
        });
    }
    if u64::from(page - 1) * u64::from(PAGE_SIZE) + (shown as u64) < total {
        links.push(PageLink {
            href: href(page + 1),
            label: "Older →",
        });
    }
    links
}

/// A query string of the non-empty pairs.
pub fn query_of(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", view::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /reports`: the reports anyone may see, newest first.
pub async fn list(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<ListForm>,
) -> WebResult<Response> {
    let state = q.state.clone().unwrap_or_else(|| "open".into());
    let (category, bbox) = (
        q.category.clone().unwrap_or_default(),
        q.bbox.clone().unwrap_or_default(),
    );
    let page = q.page.unwrap_or(1).max(1);
    let me = visitor.user.as_ref().map(|u| u.signed_in(&web.app));
    let viewer = Viewer::from(me.as_ref());
    let query = ListQuery {
        state: Some(state.clone()),
        category: Some(category.clone()).filter(|c| !c.is_empty()),
        bbox: Some(bbox.clone()).filter(|b| !b.is_empty()),
        limit: Some(PAGE_SIZE),
        offset: Some((page - 1) * PAGE_SIZE),
        ..ListQuery::default()
    };
    let mut layout = Layout::new(&web, &visitor, "Reports").section("reports");
    let (reports, total, status) = match list_reports(&web, &viewer, &query).await {
        Ok((reports, total)) => (reports, total, StatusCode::OK),
        Err(e) if e.status().is_server_error() => return Err(e.into()),
        Err(e) => {
            layout = layout.error(say(&e));
            (Vec::new(), 0, status_of(&e))
        }
    };
    let kept = query_of(&[("state", &state), ("category", &category), ("bbox", &bbox)]);
    let states = [("open", "Open"), ("closed", "Closed"), ("all", "All")]
        .map(|(v, l)| (v.to_string(), l.to_string()));
    let page = ListPage {
        layout,
        states: choices(states, &state),
        categories: category_choices(&web, &category),
        bbox,
        pages: page_links("/reports", &kept, page, reports.len(), total),
        reports,
        total,
    };
    answer(status, page)
}

/// A page of reports as `viewer` sees them, and how many match in all.
pub async fn list_reports(
    web: &WebState,
    viewer: &Viewer<'_>,
    query: &ListQuery,
) -> Result<(Vec<ReportRowView>, u64), ApiError> {
    let filter = filter_of(&web.app, viewer, query)?;
    let page = web.app.store().reports(&filter).await?;
    let rows = page
        .reports
        .iter()
        .filter(|r| viewer.may_view(&web.app, r))
        .map(|r| ReportRowView::of(&report_out(&web.app, viewer, r)))
        .collect();
    Ok((rows, page.total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_filled_in_form_is_a_report_and_a_bad_one_a_sentence() {
        let form = ReportForm::from_fields(&fields(&[
            ("id", "rep_1234"),
            ("category", "noise"),
            ("title", " Drums all night "),
            ("lat", "52.5"),
            ("lon", "13.4"),
            ("station", ""),
            ("photo", "up_a"),
            ("photo", " "),
            ("photo", "up_b"),
        ]));
        assert_eq!(form.photos, ["up_a", "up_b"]);
        let new = form.to_new().unwrap();
        assert_eq!((new.lat, new.lon), (Some(52.5), Some(13.4)));
        assert_eq!(new.title, "Drums all night");
        assert_eq!(new.station, None);
        assert_eq!(new.id.as_deref(), Some("rep_1234"));

        let mut bad = form.clone();
        bad.lon.clear();
        assert!(bad.to_new().unwrap_err().contains("both the latitude"));
        bad.lat.clear();
        assert!(bad.to_new().unwrap_err().contains("Say where it is"));
        bad.station = "s1".into();
        assert_eq!(bad.to_new().unwrap().station.as_deref(), Some("s1"));
        let mut bad = form.clone();
        bad.lat = "north".into();
        assert!(bad
            .to_new()
            .unwrap_err()
            .contains("latitude must be a number"));
        let mut bad = form;
        bad.category.clear();
        assert!(bad.to_new().unwrap_err().contains("what kind"));
    }

    #[test]
    fn lists_link_their_neighbouring_pages_with_the_filters() {
        let q = query_of(&[("state", "open"), ("category", ""), ("bbox", "1,2,3,4")]);
        assert_eq!(q, "state=open&bbox=1%2C2%2C3%2C4");
        let links = page_links("/reports", &q, 2, 20, 45);
        assert_eq!(links.len(), 2);
        assert_eq!(
            links[0].href,
            "/reports?state=open&bbox=1%2C2%2C3%2C4&page=1"
        );
        assert_eq!(
            links[1].href,
            "/reports?state=open&bbox=1%2C2%2C3%2C4&page=3"
        );
        assert!(page_links("/reports", "", 1, 5, 5).is_empty());
    }
}
