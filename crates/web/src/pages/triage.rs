//! The operators' triage queue (`/admin/reports`, operators and admins): reports by state,
//! category, area, age, assignee, hidden ones too on request; a checkbox per row and one form
//! to move the ticked reports to a state at once (`bulk_state`: each moves on its own, and the
//! message says what came of each).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, Utc};
use ecocityhub_api::reports::{self as service, Viewer};
use ecocityhub_api::routes::reports::ListQuery;
use ecocityhub_api::ApiError;
use ecocityhub_domain::ReportState;
use serde::Deserialize;

use super::alerts::{choices, Choice};
use super::report::staff;
use super::reports::{
    answer, category_choices, list_reports, page_links, query_of, PageLink, ReportRowView,
};
use crate::error::WebResult;
use crate::session::{CsrfForm, SessionUser, Visitor};
use crate::view::{say, Layout};
use crate::WebState;

/// Reports a page of the queue shows.
pub const QUEUE_SIZE: u32 = 50;

/// The queue's filters, as the form sends them (every field text, so an empty one is no filter).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct QueueFilters {
    /// `open` (the default), `closed`, `all` or one state.
    pub state: String,
    pub category: String,
    /// `min_lon,min_lat,max_lon,max_lat`
    pub bbox: String,
    /// Filed more than this many days ago.
    pub older_than: String,
    /// `anyone` (the default), `me` or `none`.
    pub assignee: String,
    /// Non-empty: hidden reports too.
    pub hidden: String,
    pub page: String,
}

impl QueueFilters {
    fn state(&self) -> &str {
        if self.state.is_empty() {
            "open"
        } else {
            &self.state
        }
    }

    fn page(&self) -> u32 {
        self.page.parse::<u32>().unwrap_or(1).max(1)
    }

    /// The API's list query, or what is wrong.
    fn to_query(&self) -> Result<ListQuery, String> {
        let before = match self.older_than.trim() {
            "" => None,
            days => {
                let days = days
                    .parse::<u32>()
                    .map_err(|_| format!("The age must be a number of days, not {days:?}."))?;
                Some(Utc::now() - Duration::days(i64::from(days)))
            }
        };
        let assignee = match self.assignee.as_str() {
            "" | "anyone" => None,
            "me" | "none" => Some(self.assignee.clone()),
            other => return Err(format!("{other:?} is not me, none or anyone.")),
        };
        Ok(ListQuery {
            state: Some(self.state().to_string()),
            category: Some(self.category.clone()).filter(|c| !c.is_empty()),
            bbox: Some(self.bbox.trim().to_string()).filter(|b| !b.is_empty()),
            before,
            assignee,
            hidden: (!self.hidden.is_empty()).then_some(true),
            limit: Some(QUEUE_SIZE),
            offset: Some((self.page() - 1) * QUEUE_SIZE),
            ..ListQuery::default()
        })
    }

    /// The filters as a query string (without the page).
    fn query(&self) -> String {
        query_of(&[
            ("state", self.state()),
            ("category", &self.category),
            ("bbox", &self.bbox),
            ("older_than", &self.older_than),
            ("assignee", &self.assignee),
            ("hidden", &self.hidden),
        ])
    }
}

#[derive(Template)]
#[template(path = "admin/reports.html")]
pub struct QueuePage {
    pub layout: Layout,
    pub filters: QueueFilters,
    pub states: Vec<Choice>,
    pub categories: Vec<Choice>,
    pub assignees: Vec<Choice>,
    /// The states the bulk form moves reports to.
    pub targets: Vec<Choice>,
    pub reports: Vec<ReportRowView>,
    pub total: u64,
    pub pages: Vec<PageLink>,
    /// The filters as a query string, kept by the bulk form.
    pub query: String,
}

fn state_choices(selected: &str) -> Vec<Choice> {
    let groups = [("open", "Open"), ("closed", "Closed"), ("all", "All")]
        .map(|(v, l)| (v.to_string(), l.to_string()));
    let each = ReportState::ALL
        .into_iter()
        .map(|s| (s.as_str().to_string(), s.label().to_string()));
    choices(groups.into_iter().chain(each), selected)
}

fn target_choices() -> Vec<Choice> {
    let states = ReportState::ALL
        .into_iter()
        .filter(|s| !matches!(s, ReportState::Submitted | ReportState::Duplicate))
        .map(|s| (s.as_str().to_string(), s.label().to_string()));
    choices(states, "")
}

/// The view model of the queue for the filters.
async fn queue_view(
    web: &WebState,
    user: &SessionUser,
    mut layout: Layout,
    filters: QueueFilters,
) -> WebResult<(StatusCode, QueuePage)> {
    let me = user.signed_in(&web.app);
    let viewer = Viewer::User(&me);
    let listed = match filters.to_query() {
        Ok(q) => list_reports(web, &viewer, &q).await,
        Err(why) => Err(ApiError::BadRequest(why)),
    };
    let (reports, total, status) = match listed {
        Ok((reports, total)) => (reports, total, StatusCode::OK),
        Err(e) if e.status().is_server_error() => return Err(e.into()),
        Err(e) => {
            layout = layout.error(say(&e));
            (Vec::new(), 0, StatusCode::BAD_REQUEST)
        }
    };
    let query = filters.query();
    let assignees = [("anyone", "Anyone"), ("me", "Me"), ("none", "Nobody")]
        .map(|(v, l)| (v.to_string(), l.to_string()));
    let page = QueuePage {
        layout,
        states: state_choices(filters.state()),
        categories: category_choices(web, &filters.category),
        assignees: choices(assignees, &filters.assignee),
        targets: target_choices(),
        pages: page_links(
            "/admin/reports",
            &query,
            filters.page(),
            reports.len(),
            total,
        ),
        reports,
        total,
        query,
        filters,
    };
    Ok((status, page))
}

fn layout(web: &WebState, visitor: &Visitor) -> Layout {
    Layout::new(web, visitor, "Triage reports").section("triage")
}

/// `GET /admin/reports`
pub async fn queue(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(filters): Query<QueueFilters>,
) -> WebResult<Response> {
    let user = staff(&web, &visitor)?;
    let (status, page) = queue_view(&web, user, layout(&web, &visitor), filters).await?;
    answer(status, page)
}

/// `POST /admin/reports/bulk?{filters}`: the ticked reports (`id`, repeated) to `state`, with
/// an optional public `update`; the queue again, saying what came of each.
pub async fn bulk(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(filters): Query<QueueFilters>,
    CsrfForm(fields): CsrfForm<Vec<(String, String)>>,
) -> WebResult<Response> {
    let user = staff(&web, &visitor)?;
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let ids: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.clone())
        .collect();
    let update = Some(get("update")).filter(|u| !u.is_empty());
    let layout = match run_bulk(&web, user, &ids, &get("state"), update).await {
        Ok(words) => {
            web.cache.reports_changed();
            layout(&web, &visitor).flash(words)
        }
        Err(e) if e.status().is_server_error() => return Err(e.into()),
        Err(e) => layout(&web, &visitor).error(say(&e)),
    };
    let (status, page) = queue_view(&web, user, layout, filters).await?;
    answer(status, page)
}

/// Moves the reports; says in one message how many moved and why the others did not.
async fn run_bulk(
    web: &WebState,
    user: &SessionUser,
    ids: &[String],
    state: &str,
    update: Option<String>,
) -> Result<String, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::BadRequest("tick the reports to change".into()));
    }
    let state: ReportState = state.parse()?;
    let me = user.signed_in(&web.app);
    let outcomes = service::bulk_state(&web.app, &me, ids, state, update).await?;
    Ok(bulk_words(state, &outcomes))
}

fn bulk_words(state: ReportState, outcomes: &[(String, Result<i64, String>)]) -> String {
    let moved = outcomes.iter().filter(|(_, o)| o.is_ok()).count();
    let mut words = format!(
        "{moved} of {} reports moved to {}.",
        outcomes.len(),
        state.label()
    );
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(id, o)| o.as_ref().err().map(|e| format!("{id}: {e}")))
        .collect();
    if !failed.is_empty() {
        words.push_str(&format!(" Not moved: {}.", failed.join("; ")));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_a_list_query_and_say_what_is_wrong() {
        let f = QueueFilters {
            older_than: "7".into(),
            assignee: "me".into(),
            hidden: "1".into(),
            page: "3".into(),
            ..QueueFilters::default()
        };
        let q = f.to_query().unwrap();
        assert_eq!(q.state.as_deref(), Some("open"));
        assert_eq!(q.assignee.as_deref(), Some("me"));
        assert_eq!((q.hidden, q.offset), (Some(true), Some(100)));
        assert!(q.before.unwrap() < Utc::now() - Duration::days(6));
        assert_eq!(f.query(), "state=open&older_than=7&assignee=me&hidden=1");
        let bad = QueueFilters {
            older_than: "a week".into(),
            ..QueueFilters::default()
        };
        assert!(bad.to_query().unwrap_err().contains("number of days"));
        let words = bulk_words(
            ReportState::Fixed,
            &[("a".into(), Ok(2)), ("b".into(), Err("gone".into()))],
        );
        assert_eq!(words, "1 of 2 reports moved to Fixed. Not moved: b: gone.");
    }
}
