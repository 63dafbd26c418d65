//! `GET /api/v1/stations/{id}/readings`: a station's history of one parameter, raw or as
//! hourly/daily aggregates that state their averaging period and coverage; paginated by an
//! opaque cursor in JSON, streamed whole in CSV so that no range is too large.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use ecocityhub_domain::aggregate::{estimate_step, Aggregator, MIN_COVERAGE};
use ecocityhub_domain::reading::parse_time;
use ecocityhub_domain::{AggregateFn, Bucket, Interval, Parameter, QualityFlag, StationId};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::stations::find;
use crate::state::AppState;

/// Default and largest page of raw readings.
pub const RAW_PAGE: u32 = 1000;
pub const RAW_PAGE_MAX: u32 = 10_000;
/// Default and largest page of aggregated buckets.
pub const BUCKET_PAGE: u32 = 1000;
pub const BUCKET_PAGE_MAX: u32 = 5000;
/// The most readings one page of aggregates reads (a page of daily buckets over a dense series
/// stops early rather than loading years of minute data at once).
const MAX_READINGS_PER_PAGE: i64 = 200_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Parameter (OpenAQ name), required.
    pub parameter: Option<String>,
    /// Start (inclusive, ISO-8601). Default: 7 days before `to` (90 days for `interval=1d`).
    pub from: Option<String>,
    /// End (exclusive, ISO-8601). Default: just after the series' newest reading.
    pub to: Option<String>,
    /// `raw` (default), `1h` or `1d` (UTC hours and days).
    pub interval: Option<String>,
    /// `avg` (default), `min` or `max`; only with `1h`/`1d`.
    pub agg: Option<String>,
    /// Readings (raw, default 1000, max 10000) or buckets (default 1000, max 5000) per page.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `json` (default) or `csv` (the whole range, streamed; `limit` and `cursor` do not apply).
    pub format: Option<String>,
}

/// One raw reading.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RawReading {
    pub time: DateTime<Utc>,
    pub value: f64,
    pub flag: QualityFlag,
}

/// A page of history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub station: StationId,
    pub parameter: Parameter,
    pub unit: &'static str,
    pub interval: Interval,
    /// The aggregate function (`null` for raw readings).
    pub aggregate: Option<AggregateFn>,
    /// The averaging period of each value in seconds (`null` for raw readings).
    pub period_seconds: Option<i64>,
    /// The sampling step of the series, from which `expected` is derived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<i64>,
    /// A bucket is `sufficient` when at least this share of its expected readings is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_coverage: Option<f64>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readings: Option<Vec<RawReading>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<Bucket>>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// The URL of the next page.
    pub next: Option<String>,
}

/// A validated history request.
struct Plan {
    station: StationId,
    parameter: Parameter,
    interval: Interval,
    agg: AggregateFn,
    from: i64,
    to: i64,
    start: i64,
    limit: u32,
    csv: bool,
    /// The series' sampling step in seconds, from which each bucket's `expected` count follows
    /// (0 for raw readings). One value for the whole request, so every page agrees.
    step: i64,
}

/// How far before `from` readings are sampled to learn a series' step: a bucket with half its
/// readings missing must not teach the step that makes it look complete.
const STEP_LOOKBACK: i64 = 7 * 86_400;
const STEP_SAMPLE: u32 = 5_000;

/// The sampling step of a series without a recorded period: the median gap of its readings
/// around the start of the range (see [`estimate_step`]).
async fn sampling_step(
    app: &AppState,
    station: &StationId,
    parameter: Parameter,
    from: i64,
    to: i64,
) -> ApiResult<i64> {
    let sample = app
        .store()
        .readings(station, parameter, from - STEP_LOOKBACK, to, STEP_SAMPLE)
        .await?;
    Ok(estimate_step(
        &sample.iter().map(|pt| pt.ts).collect::<Vec<_>>(),
    ))
}

fn encode_cursor(ts: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{ts}"))
}

fn decode_cursor(s: &str) -> ApiResult<i64> {
    let bad = || {
        ApiError::BadRequest(format!(
            "cursor {s:?} is not one this API issued; start again without it"
        ))
    };
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    text.strip_prefix("v1:")
        .and_then(|t| t.parse().ok())
        .ok_or_else(bad)
}

async fn plan(app: &AppState, id: &str, q: &HistoryQuery) -> ApiResult<Plan> {
    let station = find(app, id).await?.id;
    let parameter: Parameter = q
        .parameter
        .as_deref()
        .ok_or_else(|| {
            ApiError::BadRequest(
                "the query parameter `parameter` is required, e.g. ?parameter=pm25".into(),
            )
        })?
        .parse()
        .map_err(|e: ecocityhub_domain::parameter::UnknownParameter| {
            ApiError::BadRequest(e.to_string())
        })?;
    let interval: Interval = q
        .interval
        .as_deref()
        .unwrap_or("raw")
        .parse()
        .map_err(ApiError::BadRequest)?;
    let agg: AggregateFn = q
        .agg
        .as_deref()
        .unwrap_or("avg")
        .parse()
        .map_err(ApiError::BadRequest)?;
    if interval == Interval::Raw && q.agg.is_some() {
        return Err(ApiError::BadRequest(
            "agg applies to interval=1h or 1d, not to raw readings".into(),
        ));
    }
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is not one of json, csv"
            )))
        }
    };
    let time = |name: &str, v: &Option<String>| -> ApiResult<Option<i64>> {
        v.as_deref()
            .map(|s| {
                parse_time(s)
                    .map(|t| t.timestamp())
                    .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
            })
            .transpose()
    };
    let series = app
        .store()
        .series()
        .await?
        .into_iter()
        .find(|s| s.station == station && s.parameter == parameter);
    let to = match time("to", &q.to)? {
        Some(t) => t,
        None => series
            .as_ref()
            .and_then(|s| s.last)
            .map(|t| t.timestamp() + 1)
            .unwrap_or_else(|| Utc::now().timestamp()),
    };
    let default_span = if interval == Interval::Day {
        Duration::days(90)
    } else {
        Duration::days(7)
    };
    let mut from = time("from", &q.from)?.unwrap_or(to - default_span.num_seconds());
    let mut to = to;
    if from >= to {
        return Err(ApiError::BadRequest("from must be before to".into()));
    }
    if let Some(bucket) = interval.seconds() {
        // Whole buckets only: a partial first or last bucket would look like missing data.
        from = from.div_euclid(bucket) * bucket;
        to = (to + bucket - 1).div_euclid(bucket) * bucket;
    }
    let (default_limit, max_limit) = if interval == Interval::Raw {
        (RAW_PAGE, RAW_PAGE_MAX)
    } else {
        (BUCKET_PAGE, BUCKET_PAGE_MAX)
    };
    let limit = q.limit.unwrap_or(default_limit);
    if limit == 0 || limit > max_limit {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {max_limit}"
        )));
    }
    let start = match q.cursor.as_deref() {
        Some(c) if !csv => {
            let s = decode_cursor(c)?;
            if !(from..to).contains(&s) {
                return Err(ApiError::BadRequest(
                    "the cursor lies outside from…to; start again without it".into(),
                ));
            }
            s
        }
        _ => from,
    };
    let step = match interval.seconds() {
        None => 0,
        Some(_) => match series.as_ref().and_then(|s| s.period_seconds) {
            Some(period) => period,
            None => sampling_step(app, &station, parameter, from, to).await?,
        },
    };
    Ok(Plan {
        step,
        station,
        parameter,
        interval,
        agg,
        from,
        to,
        start,
        limit,
        csv,
    })
}

/// How many buckets one page covers: `limit`, or fewer when the series is so dense that the
/// page would read more than [`MAX_READINGS_PER_PAGE`] readings (`next` continues from there).
fn buckets_per_page(bucket_seconds: i64, step_seconds: i64, limit: u32) -> i64 {
    let per_bucket = (bucket_seconds / step_seconds.max(1)).max(1);
    i64::from(limit).min((MAX_READINGS_PER_PAGE / per_bucket).max(1))
}

/// One page: the raw readings or buckets from `start`, and where the next page starts.
enum Page {
    Raw(Vec<RawReading>),
    Buckets(Vec<Bucket>, i64),
}

async fn page(app: &AppState, p: &Plan, start: i64, limit: u32) -> ApiResult<(Page, Option<i64>)> {
    let store = app.store();
    match p.interval.seconds() {
        None => {
            let mut pts = store
                .readings(&p.station, p.parameter, start, p.to, limit + 1)
                .await?;
            let next = (pts.len() > limit as usize).then(|| pts[limit as usize].ts);
            pts.truncate(limit as usize);
            let rows = pts
                .into_iter()
                .map(|pt| RawReading {
                    time: DateTime::from_timestamp(pt.ts, 0).unwrap_or_default(),
                    value: pt.value,
                    flag: pt.flag,
                })
                .collect();
            Ok((Page::Raw(rows), next))
        }
        Some(bucket) => {
            let buckets = buckets_per_page(bucket, p.step, limit);
            let end = p.to.min(start.saturating_add(bucket * buckets));
            let pts = store
                .readings(&p.station, p.parameter, start, end, u32::MAX)
                .await?;
            let mut agg = Aggregator::new(p.interval, p.agg, p.step);
            let mut buckets: Vec<Bucket> = pts
                .iter()
                .filter_map(|pt| agg.push(pt.ts, pt.value, pt.flag))
                .collect();
            buckets.extend(agg.finish());
            Ok((Page::Buckets(buckets, p.step), (end < p.to).then_some(end)))
        }
    }
}

/// History of one parameter at one station.
#[utoipa::path(get, path = "/api/v1/stations/{id}/readings", tag = "readings",
    params(("id" = String, Path, description = "Station id"), HistoryQuery),
    responses((status = 200, body = HistoryPage, description = "A page of JSON, or the whole range as text/csv"),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn history(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Response> {
    let p = plan(&app, &id, &q).await?;
    if p.csv {
        return Ok(csv_stream(app, p));
    }
    let (page, next) = page(&app, &p, p.start, p.limit).await?;
    let next_cursor = next.map(encode_cursor);
    let next_url = next_cursor.as_ref().map(|c| {
        let mut url = format!(
            "/api/v1/stations/{}/readings?parameter={}&interval={}&from={}&to={}&limit={}&cursor={c}",
            p.station,
            p.parameter,
            p.interval,
            DateTime::from_timestamp(p.from, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ"),
            DateTime::from_timestamp(p.to, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ"),
            p.limit
        );
        if p.interval != Interval::Raw {
            url.push_str(&format!("&agg={}", p.agg.as_str()));
        }
        url
    });
    let (readings, buckets, step) = match page {
        Page::Raw(r) => (Some(r), None, None),
        Page::Buckets(b, step) => (None, Some(b), Some(step)),
    };
    let aggregated = p.interval != Interval::Raw;
    Ok(Json(HistoryPage {
        station: p.station,
        parameter: p.parameter,
        unit: p.parameter.canonical_unit().symbol(),
        interval: p.interval,
        aggregate: aggregated.then_some(p.agg),
        period_seconds: p.interval.seconds(),
        step_seconds: step,
        min_coverage: aggregated.then_some(MIN_COVERAGE),
        from: DateTime::from_timestamp(p.from, 0).unwrap_or_default(),
        to: DateTime::from_timestamp(p.to, 0).unwrap_or_default(),
        readings,
        buckets,
        next_cursor,
        next: next_url,
    })
    .into_response())
}

fn csv_line(page: &Page, unit: &str, agg: AggregateFn) -> String {
    let mut out = String::new();
    match page {
        Page::Raw(rows) => {
            for r in rows {
                out.push_str(&format!(
                    "{},{},{},{}\n",
                    r.time.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.value,
                    unit,
                    r.flag.as_str()
                ));
            }
        }
        Page::Buckets(buckets, _) => {
            for b in buckets {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{:.3},{}\n",
                    b.start.format("%Y-%m-%dT%H:%M:%SZ"),
                    b.end.format("%Y-%m-%dT%H:%M:%SZ"),
                    b.value.map(|v| v.to_string()).unwrap_or_default(),
                    unit,
                    agg.as_str(),
                    b.count,
                    b.expected,
                    b.coverage,
                    b.sufficient
                ));
            }
        }
    }
    out
}

/// The whole range as CSV, fetched page by page while it is sent.
fn csv_stream(app: AppState, p: Plan) -> Response {
    let unit = p.parameter.canonical_unit().symbol();
    let header_line = if p.interval == Interval::Raw {
        "time,value,unit,flag\n".to_string()
    } else {
        "start,end,value,unit,aggregate,count,expected,coverage,sufficient\n".to_string()
    };
    let filename = format!("{}_{}_{}.csv", p.station, p.parameter, p.interval);
    let page_size = if p.interval == Interval::Raw {
        RAW_PAGE_MAX
    } else {
        BUCKET_PAGE
    };
    let first = p.from;
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(header_line) }).chain(
        futures::stream::unfold((app, p, Some(first)), move |(app, p, next)| async move {
            let start = next?;
            match page(&app, &p, start, page_size).await {
                Ok((page, next)) => Some((Ok(csv_line(&page, unit, p.agg)), (app, p, next))),
                Err(e) => {
                    tracing::error!(error = %e, "CSV export stopped");
                    Some((Err(std::io::Error::other(e.to_string())), (app, p, None)))
                }
            }
        }),
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_series_get_shorter_pages() {
        assert_eq!(buckets_per_page(86_400, 3600, 1000), 1000);
        // Minute data: 1,440 readings a day, so 138 days fit in 200,000 readings.
        assert_eq!(buckets_per_page(86_400, 60, 1000), 138);
        assert_eq!(buckets_per_page(86_400, 1, 1000), 2);
        // Never less than one bucket, however dense.
        assert_eq!(buckets_per_page(10_000_000, 1, 1000), 1);
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        assert_eq!(
            decode_cursor(&encode_cursor(1_700_000_000)).unwrap(),
            1_700_000_000
        );
        assert!(decode_cursor("not-a-cursor").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v2:5")).is_err());
    }
}

/// An operator's verdict on one reading.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagChange {
    /// Parameter (OpenAQ name).
    pub parameter: String,
    /// The reading's time (ISO-8601).
    pub time: String,
    /// `valid` (confirmed: it counts again), `suspect` or `invalid`.
    pub flag: String,
}

/// What the verdict changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagChanged {
    pub parameter: Parameter,
    pub time: DateTime<Utc>,
    pub previous: QualityFlag,
    pub flag: QualityFlag,
}

/// Confirms a suspect reading valid (it counts towards indices, averages, trends and forecasts
/// again) or marks a reading suspect or invalid. Operators and admins; audited.
#[utoipa::path(post, path = "/api/v1/stations/{id}/readings/flag", tag = "readings",
    security(("bearer_jwt" = [])),
    params(("id" = String, Path, description = "Station id")), request_body = FlagChange,
    responses((status = 200, body = FlagChanged),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn set_flag(
    State(app): State<AppState>,
    me: crate::signed_in::SignedIn,
    ApiPath(id): ApiPath<String>,
    crate::extract::ApiJson(change): crate::extract::ApiJson<FlagChange>,
) -> ApiResult<Json<FlagChanged>> {
    let station = find(&app, &id).await?;
    me.authorize(
        &app,
        ecocityhub_identity::Action::ManageStations,
        &ecocityhub_identity::Resource::Station(station.id.to_string()),
    )?;
    let parameter: Parameter =
        change
            .parameter
            .parse()
            .map_err(|e: ecocityhub_domain::parameter::UnknownParameter| {
                ApiError::BadRequest(e.to_string())
            })?;
    let time = parse_time(&change.time).map_err(ApiError::BadRequest)?;
    let flag: QualityFlag = change.flag.parse().map_err(ApiError::BadRequest)?;
    let previous = app
        .store()
        .set_reading_flag(&station.id, parameter, time.timestamp(), flag)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "station {} has no {parameter} reading at {}",
                station.id,
                time.to_rfc3339()
            ))
        })?;
    app.readings_changed();
    app.invalidate(&[
        "latest".into(),
        "stations".into(),
        format!("station:{}", station.id),
    ]);
    Ok(Json(FlagChanged {
        parameter,
        time,
        previous,
        flag,
    }))
}
