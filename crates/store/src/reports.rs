//! What the citizen reports layer stores: reports with their photos, each report's history of
//! changes, public updates and internal notes, and who follows a report. [`ReportStore`] is
//! part of every [`crate::Store`].
//!
//! A report change and the notifications it causes commit together: every write takes the
//! outbox notices to send with it. Updates are optimistic: [`ReportStore::update_report`] writes
//! only over the version it was read at. The store does not interpret states, categories or
//! event kinds; those belong to the reports crate. Times are kept to the millisecond.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::notify::{MessageRow, NewDelivery};
use crate::Result;

/// A photo of a report, as stored in the blob store under `key` (and its thumbnail).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPhotoRow {
    /// Its place among the report's photos, from 0.
    pub position: i64,
    pub key: String,
    pub thumbnail_key: String,
    pub width: i64,
    pub height: i64,
    /// Hidden by a moderator.
    pub hidden: bool,
}

/// A citizen's report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// Made by the caller (`rep_…`), so a retried create is idempotent.
    pub id: String,
    /// The user who filed it.
    pub reporter: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub lat: f64,
    pub lon: f64,
    /// The station it concerns, if any.
    pub station_id: Option<String>,
    /// `submitted`, `confirmed`, `investigating`, `action_scheduled`, `fixed`, `closed`,
    /// `not_responsible` or `duplicate` (the store does not interpret it).
    pub state: String,
    pub duplicate_of: Option<String>,
    /// The operator working on it.
    pub assignee: Option<String>,
    /// Hidden by a moderator.
    pub hidden: bool,
    /// 1 when created, one more on every update.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// In position order.
    pub photos: Vec<ReportPhotoRow>,
}

/// One entry of a report's history: a change, a public update or an internal note.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportEventRow {
    /// Assigned by the store (ignored on insert), increasing.
    pub id: i64,
    pub report_id: String,
    /// Who wrote it; `None` for the system.
    pub author: Option<String>,
    /// `filed`, `update`, `note`, `state`, `edit`, `hide`, `assign`… (not interpreted).
    pub kind: String,
    /// Internal notes are not public.
    pub public: bool,
    pub body: String,
    /// What changed, as a JSON object `{"field": [old, new]}`.
    pub changes: String,
    pub created_at: DateTime<Utc>,
}

/// A message for the outbox and its deliveries, written in the same transaction as the report
/// change that causes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxNotice {
    pub message: MessageRow,
    pub deliveries: Vec<NewDelivery>,
}

/// Whose reports a filter wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReportAssignee {
    #[default]
    Anyone,
    /// Reports nobody is assigned to.
    Unassigned,
    User(String),
}

/// What [`ReportStore::reports`] lists.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFilter {
    /// Any of these states; empty for all.
    pub states: Vec<String>,
    pub category: Option<String>,
    /// `[min_lat, min_lon, max_lat, max_lon]`; a `min_lon` above `max_lon` crosses the
    /// antimeridian.
    pub bbox: Option<[f64; 4]>,
    /// Created at or after this.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this.
    pub created_before: Option<DateTime<Utc>>,
    pub assignee: ReportAssignee,
    pub reporter: Option<String>,
    pub include_hidden: bool,
    pub limit: u32,
    pub offset: u32,
}

impl Default for ReportFilter {
    fn default() -> Self {
        ReportFilter {
            states: Vec::new(),
            category: None,
            bbox: None,
            created_after: None,
            created_before: None,
            assignee: ReportAssignee::Anyone,
            reporter: None,
            include_hidden: false,
            limit: 50,
            offset: 0,
        }
    }
}

/// A page of reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPage {
    pub reports: Vec<ReportRow>,
    /// Reports matching the filter, ignoring its limit and offset.
    pub total: u64,
}

/// A report on the map layer: only what a pin shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPin {
    pub id: String,
    pub lat: f64,
    pub lon: f64,
    pub category: String,
    pub state: String,
    pub title: String,
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores the report with its photos, its first event and the notices, in one transaction.
    /// A report with this id exists already: nothing is written and the answer is `false` (a
    /// retried create). The event belongs to `report.id`.
    async fn create_report(
        &self,
        report: &ReportRow,
        event: &ReportEventRow,
        notices: &[OutboxNotice],
    ) -> Result<bool>;

    /// The report with its photos, hidden or not (callers decide who sees it).
    async fn report(&self, id: &str) -> Result<Option<ReportRow>>;

    /// Writes the report's category, title, description, place, station, state, duplicate,
    /// assignee, hidden flag, `updated_at` and each photo's hidden flag (by position) if its
    /// stored version is `expected_version`, with one more version, the event and the notices,
    /// in one transaction. Returns the stored row after the update; `None`, writing nothing,
    /// when the report is missing or its version differs.
    async fn update_report(
        &self,
        report: &ReportRow,
        expected_version: i64,
        event: &ReportEventRow,
        notices: &[OutboxNotice],
    ) -> Result<Option<ReportRow>>;

    /// Adds a public update or an internal note (no field changes) with its notices, and moves
    /// the report's `updated_at` up to the event's time (its version stays). Returns the
    /// event's id; `None`, writing nothing, when the report does not exist.
    async fn add_report_event(
        &self,
        event: &ReportEventRow,
        notices: &[OutboxNotice],
    ) -> Result<Option<i64>>;

    /// The report's history, oldest first; internal notes only with `include_internal`.
    async fn report_events(
        &self,
        report_id: &str,
        include_internal: bool,
    ) -> Result<Vec<ReportEventRow>>;

    /// Reports matching the filter, newest first, with their photos, and how many match.
    async fn reports(&self, filter: &ReportFilter) -> Result<ReportPage>;

    /// Visible reports within `radius_m` metres (great-circle) of the point, of `category` when
    /// given, nearest first, at most 20.
    async fn reports_near(
        &self,
        lat: f64,
        lon: f64,
        radius_m: f64,
        category: Option<&str>,
    ) -> Result<Vec<ReportRow>>;

    /// Every visible report, for the map layer (by id).
    async fn report_pins(&self) -> Result<Vec<ReportPin>>;

    /// Reports `reporter` filed at or after `since` (hidden ones too), for rate limits.
    async fn count_reports_since(&self, reporter: &str, since: DateTime<Utc>) -> Result<u64>;

    /// `user_id` follows the report from `at`; `false` when already following.
    async fn follow_report(
        &self,
        report_id: &str,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// `false` when the user was not following.
    async fn unfollow_report(&self, report_id: &str, user_id: &str) -> Result<bool>;
    /// The report's followers, by user id.
    async fn report_followers(&self, report_id: &str) -> Result<Vec<String>>;
    async fn follows(&self, report_id: &str, user_id: &str) -> Result<bool>;
}
