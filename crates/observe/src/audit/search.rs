//! Searching the trail (the admin page and `ecocityhub audit search`): by user, event name,
//! source, time range and outcome, newest first, paged by sequence number.

use chrono::{DateTime, Utc};
use ecocityhub_store::observe::{AuditOutcome, AuditQuery, ObserveStore};
use serde::Serialize;
use serde_json::Value;

use crate::Result;

/// The largest page.
pub const MAX_LIMIT: u32 = 1000;

/// A search; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFilter {
    pub user_id: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub outcome: Option<AuditOutcome>,
    /// The `next` of the previous page.
    pub before: Option<i64>,
    /// Default 50, at most [`MAX_LIMIT`].
    pub limit: Option<u32>,
}

/// One record found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    pub seq: i64,
    /// The record as stored (CloudTrail's fields).
    pub record: Value,
}

/// A page of results, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchPage {
    pub records: Vec<Found>,
    /// Pass as `before` for the next page; `None` on the last.
    pub next: Option<i64>,
}

/// Runs a search.
pub async fn search(store: &dyn ObserveStore, filter: &SearchFilter) -> Result<SearchPage> {
    let limit = filter.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let rows = store
        .search_audit(&AuditQuery {
            user_id: filter.user_id.clone(),
            event_name: filter.event_name.clone(),
            event_source: filter.event_source.clone(),
            from: filter.from.map(|t| t.timestamp_millis()),
            to: filter.to.map(|t| t.timestamp_millis()),
            outcome: filter.outcome,
            before_seq: filter.before,
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() > limit as usize;
    let records: Vec<Found> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| Found {
            seq: r.seq,
            record: serde_json::from_str(&r.record).unwrap_or(Value::String(r.record)),
        })
        .collect();
    let next = if more {
        records.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(SearchPage { records, next })
}
