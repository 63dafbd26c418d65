//! The audit trail page (admins): the CloudTrail-shaped records of `ecocityhub-observe`'s
//! trail, newest first, filtered by user, event name, time range and outcome, paged by
//! sequence number ("older"), each record's JSON behind a `<details>`. Reading the trail goes
//! through the same search as `ecocityhub audit search`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use ecocityhub_identity::Action;
use ecocityhub_observe::audit::{search, SearchFilter};
use ecocityhub_store::observe::AuditOutcome;
use serde::Deserialize;
use serde_json::Value;

use crate::error::WebResult;
use crate::session::Visitor;
use crate::view::Layout;
use crate::WebState;

/// Records per page.
const PAGE: u32 = 50;

/// `GET /admin/audit?user=&event=&from=&to=&outcome=&before=`: the form's fields as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    outcome: String,
    before: Option<i64>,
}

/// One record as the page lists it.
struct RecordRow {
    seq: i64,
    time: String,
    source: String,
    name: String,
    who: String,
    credential: String,
    ip: String,
    failed: bool,
    error: String,
    request_id: String,
    read_only: bool,
    json: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    layout: Layout,
    query: AuditQuery,
    records: Vec<RecordRow>,
    /// The link to the next (older) page.
    older: Option<String>,
    /// On a later page, the link to the first (newest) page of the same search.
    newest: Option<String>,
    /// Whether this server appends to the trail (it may not, in tests or a bare `serve`).
    recording: bool,
}

/// A time typed in the form, as UTC: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` (what a
/// `datetime-local` field sends) or `YYYY-MM-DD`; a date alone as `to` means the end of that
/// day.
fn parse_time(text: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(t) {
        return Some(t.to_utc());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(t, format) {
            return Some(t.and_utc());
        }
    }
    let day = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    let start = day.and_hms_opt(0, 0, 0)?.and_utc();
    Some(if end_of_day {
        start + Duration::days(1)
    } else {
        start
    })
}

fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// The search the form asks for, or what is wrong with it (said on the page).
fn filter_of(q: &AuditQuery) -> Result<SearchFilter, String> {
    let time = |what: &str, text: &str, end: bool| {
        match optional(text) {
        None => Ok(None),
        Some(t) => parse_time(&t, end).map(Some).ok_or_else(|| {
            format!("The {what} time {t:?} is not a time; write it as 2026-12-01T14:00 (UTC) or 2026-12-01.")
        }),
    }
    };
    let from = time("from", &q.from, false)?;
    let to = time("to", &q.to, true)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err("The from time must be before the to time.".into());
        }
    }
    let outcome = match q.outcome.trim() {
        "" | "any" => None,
        "success" => Some(AuditOutcome::Success),
        "error" => Some(AuditOutcome::Error),
        other => {
            return Err(format!(
                "There is no outcome {other:?}; choose success or error."
            ))
        }
    };
    Ok(SearchFilter {
        user_id: optional(&q.user),
        event_name: optional(&q.event),
        from,
        to,
        outcome,
        before: q.before,
        limit: Some(PAGE),
        ..SearchFilter::default()
    })
}

/// A field of a record as text (`""` when absent).
fn text(record: &Value, pointer: &str) -> String {
    match record.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn record_row(seq: i64, record: &Value) -> RecordRow {
    let who = [
        text(record, "/userIdentity/type"),
        text(record, "/userIdentity/id"),
    ];
    let credential = [
        text(record, "/userIdentity/credential"),
        text(record, "/userIdentity/credentialId"),
    ];
    let error_code = text(record, "/errorCode");
    RecordRow {
        seq,
        time: text(record, "/eventTime")
            .replace('T', " ")
            .replace('Z', " UTC"),
        source: text(record, "/eventSource"),
        name: text(record, "/eventName"),
        who: who
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
        credential: match credential {
            [c, id] if !id.is_empty() => format!("{c} ({id})"),
            [c, _] => c,
        },
        ip: text(record, "/sourceIPAddress"),
        failed: !error_code.is_empty(),
        error: match text(record, "/errorMessage") {
            m if m.is_empty() => error_code,
            m => format!("{error_code}: {m}"),
        },
        request_id: text(record, "/requestID"),
        read_only: record.pointer("/readOnly") == Some(&Value::Bool(true)),
        json: serde_json::to_string_pretty(record).unwrap_or_default(),
    }
}

/// The search with the same filters, from `before` (from the newest when `None`).
fn link(q: &AuditQuery, before: Option<i64>) -> String {
    let before = before.map(|b| b.to_string()).unwrap_or_default();
    let fields = [
        ("user", q.user.trim()),
        ("event", q.event.trim()),
        ("from", q.from.trim()),
        ("to", q.to.trim()),
        ("outcome", q.outcome.trim()),
        ("before", before.as_str()),
    ];
    let kept: Vec<(&str, &str)> = fields.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    format!(
        "/admin/audit?{}",
        serde_urlencoded::to_string(kept).unwrap_or_default()
    )
}

/// `GET /admin/audit`
pub async fn audit(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<AuditQuery>,
) -> WebResult<Response> {
    // The trail names every user and what they did: the audience of the user list.
    super::admin::allowed(&web, &visitor, Action::ReadAuditTrail)?;
    let layout = Layout::new(&web, &visitor, "Audit trail").section("admin");
    let filter = match filter_of(&q) {
        Ok(f) => f,
        Err(why) => {
            let page = page(&web, layout.error(why), q);
            return answer(StatusCode::BAD_REQUEST, page);
        }
    };
    let found = search(web.app.store(), &filter).await?;
    let mut page = page(&web, layout, q);
    page.records = found
        .records
        .iter()
        .map(|f| record_row(f.seq, &f.record))
        .collect();
    page.older = found.next.map(|n| link(&page.query, Some(n)));
    answer(StatusCode::OK, page)
}

fn page(web: &WebState, layout: Layout, query: AuditQuery) -> AuditPage {
    AuditPage {
        recording: web.app.audit_trail().is_some(),
        layout,
        newest: query.before.map(|_| link(&query, None)),
        query,
        records: Vec::new(),
        older: None,
    }
}

fn answer(status: StatusCode, page: AuditPage) -> WebResult<Response> {
    Ok((status, Html(page.render()?)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc_and_a_date_alone_ends_its_day_as_to() {
        let t = |s: &str, end| parse_time(s, end).map(|t| t.to_rfc3339());
        assert_eq!(
            t("2026-12-01T14:00", false).unwrap(),
            "2026-12-01T14:00:00+00:00"
        );
        assert_eq!(
            t("2026-12-01T15:00:00+01:00", false).unwrap(),
            "2026-12-01T14:00:00+00:00"
        );
        assert_eq!(t("2026-12-01", false).unwrap(), "2026-12-01T00:00:00+00:00");
        assert_eq!(t("2026-12-01", true).unwrap(), "2026-12-02T00:00:00+00:00");
        assert_eq!(t("yesterday", false), None);
    }

    #[test]
    fn the_form_becomes_a_filter_or_a_sentence() {
        let q = AuditQuery {
            user: " u-1 ".into(),
            outcome: "error".into(),
            before: Some(9),
            ..Default::default()
        };
        let f = filter_of(&q).unwrap();
        assert_eq!(f.user_id.as_deref(), Some("u-1"));
        assert_eq!(f.outcome, Some(AuditOutcome::Error));
        assert_eq!((f.before, f.event_name), (Some(9), None));
        let bad = AuditQuery {
            from: "soon".into(),
            ..Default::default()
        };
        assert!(filter_of(&bad).unwrap_err().contains("is not a time"));
        let reversed = AuditQuery {
            from: "2026-12-02".into(),
            to: "2026-12-01".into(),
            ..Default::default()
        };
        assert!(filter_of(&reversed).is_err());
        assert_eq!(
            link(&q, Some(7)),
            "/admin/audit?user=u-1&outcome=error&before=7"
        );
        assert_eq!(link(&q, None), "/admin/audit?user=u-1&outcome=error");
    }

    #[test]
    fn a_record_row_says_who_and_the_outcome() {
        let record = serde_json::json!({
            "eventTime": "2026-12-01T10:00:00.000Z",
            "eventSource": "web",
            "eventName": "UpdateUser",
            "userIdentity": {"type": "User", "id": "u-1", "credential": "session", "credentialId": "ab12"},
            "sourceIPAddress": "127.0.0.1",
            "errorCode": "forbidden",
            "errorMessage": "no",
            "requestID": "r-1",
            "readOnly": false
        });
        let row = record_row(3, &record);
        assert_eq!(row.who, "User u-1");
        assert_eq!(row.credential, "session (ab12)");
        assert_eq!(row.error, "forbidden: no");
        assert!(row.failed && !row.read_only);
        assert_eq!(row.time, "2026-12-01 10:00:00.000 UTC");
        assert!(row.json.contains("\"requestID\": \"r-1\""));
    }
}
