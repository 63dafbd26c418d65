//! The operators' dashboard (CloudWatch's role): charts of the key metrics over the last hour,
//! day or week, read from the rollups the observe layer writes to the store once a minute; the
//! alarms with their states; and the stations' health (stale and silent stations). A fresh
//! server without rollups says so instead of drawing empty charts.

use std::collections::HashSet;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use ecocityhub_identity::Action;
use ecocityhub_observe::alarms::{AlarmEngine, AlarmState, AlarmStatus, LogSink};
use ecocityhub_observe::names;
use ecocityhub_observe::rollups::{Datapoint, MetricQuery, RollupConfig, Rollups, View};
use ecocityhub_observe::stats::Statistic;
use ecocityhub_observe::{stations, ObserveConfig, ObserveError};
use ecocityhub_store::observe::ObserveStore;
use serde::Deserialize;

use crate::charts::{self, Chart, DataTable, Line};
use crate::error::{WebError, WebResult};
use crate::session::Visitor;
use crate::view::{self, Layout};
use crate::WebState;

/// The range selector's choices: (key, label, view).
const RANGES: [(&str, &str, View); 3] = [
    ("hour", "Last hour", View::Hour),
    ("day", "Last day", View::Day),
    ("week", "Last week", View::Week),
];

#[derive(Deserialize)]
pub struct MonitoringQuery {
    range: Option<String>,
}

pub struct RangeChoice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// One chart of the page; `chart` is `None` when its metrics have no value in the range.
pub struct MetricChart {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub caption: String,
    pub chart: Option<Chart>,
    /// The chart's data as a table.
    pub table: DataTable,
}

pub struct AlarmRow {
    pub name: String,
    pub description: String,
    pub state: &'static str,
    pub class: &'static str,
    pub reason: String,
    pub updated: String,
    pub enabled: bool,
}

pub struct StationRow {
    pub id: String,
    pub name: String,
    pub last: String,
    /// Counted by the `station-silent` alarm (silent, not yet retired).
    pub silent: bool,
}

/// Everything the page shows.
pub struct MonitoringView {
    pub ranges: Vec<RangeChoice>,
    pub range_label: &'static str,
    /// Whether any rollup has a value in the range (a fresh server has none).
    pub has_data: bool,
    pub charts: Vec<MetricChart>,
    pub alarms: Vec<AlarmRow>,
    pub in_alarm: usize,
    pub stale: Vec<StationRow>,
    pub reporting: usize,
    pub total: usize,
}

#[derive(Template)]
#[template(path = "admin/monitoring.html")]
struct MonitoringPage {
    layout: Layout,
    view: MonitoringView,
}

fn parse_range(s: Option<&str>) -> WebResult<(&'static str, &'static str, View)> {
    let key = s.unwrap_or("hour");
    RANGES
        .iter()
        .copied()
        .find(|(k, _, _)| *k == key)
        .ok_or_else(|| {
            WebError::BadRequest(format!(
                "There is no range {key:?}; choose hour, day or week."
            ))
        })
}

/// `GET /admin/monitoring?range=hour|day|week` (operators and admins).
pub async fn monitoring(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<MonitoringQuery>,
) -> WebResult<Response> {
    super::admin::allowed(&web, &visitor, Action::ManageStations)?;
    let range = parse_range(q.range.as_deref())?;
    let view = monitoring_view(&web, range, Utc::now()).await?;
    super::page(MonitoringPage {
        layout: Layout::new(&web, &visitor, "Monitoring").section("admin"),
        view,
    })
}

/// The page's view model for `range` at `now`.
pub async fn monitoring_view(
    web: &WebState,
    range: (&'static str, &'static str, View),
    now: DateTime<Utc>,
) -> WebResult<MonitoringView> {
    let store: Arc<dyn ObserveStore> = web.app.store_arc();
    let rollups = Rollups::new(store.clone(), RollupConfig::default());
    let charts = metric_charts(&rollups, range, now.timestamp()).await?;
    let alarms = alarm_rows(store, rollups).await?;
    let (stale, reporting, total) = station_health(web, now).await?;
    Ok(MonitoringView {
        ranges: RANGES
            .iter()
            .map(|(value, label, _)| RangeChoice {
                value,
                label,
                selected: *value == range.0,
            })
            .collect(),
        range_label: range.1,
        has_data: charts.iter().any(|c| c.chart.is_some()),
        charts,
        in_alarm: alarms.iter().filter(|a| a.state == "ALARM").count(),
        alarms,
        stale,
        reporting,
        total,
    })
}

// ---- charts --------------------------------------------------------------------------------

/// A series as chart points (epoch seconds, value if any).
type Points = Vec<(i64, Option<f64>)>;

/// Reads the metrics of one view and charts them.
struct Reader<'a> {
    rollups: &'a Rollups,
    view: View,
    now: i64,
    /// Turns a sum per period into a rate per minute.
    per_minute: f64,
    frame: Frame,
}

impl Reader<'_> {
    async fn read(
        &self,
        query: MetricQuery,
        statistic: Statistic,
    ) -> Result<Vec<Datapoint>, ObserveError> {
        self.rollups
            .view(&query, statistic, self.view, self.now)
            .await
    }

    /// A statistic scaled by `factor`.
    async fn scaled(
        &self,
        query: MetricQuery,
        statistic: Statistic,
        factor: f64,
    ) -> Result<Points, ObserveError> {
        Ok(self
            .read(query, statistic)
            .await?
            .into_iter()
            .map(|d| (d.ts, d.value.map(|v| v * factor)))
            .collect())
    }

    /// `part / whole` in percent per period; none where `whole` is 0 or missing.
    async fn percent(&self, part: MetricQuery, whole: MetricQuery) -> Result<Points, ObserveError> {
        let part = self.read(part, Statistic::Sum).await?;
        let whole = self.read(whole, Statistic::Sum).await?;
        Ok(part
            .iter()
            .zip(&whole)
            .map(|(p, w)| match (p.value, w.value) {
                (Some(n), Some(d)) if d > 0.0 => (p.ts, Some(n / d * 100.0)),
                _ => (p.ts, None),
            })
            .collect())
    }
}

/// The charts of the page.
async fn metric_charts(
    rollups: &Rollups,
    range: (&'static str, &'static str, View),
    now: i64,
) -> Result<Vec<MetricChart>, ObserveError> {
    let (from, to, step) = range.2.range(now);
    let r = Reader {
        rollups,
        view: range.2,
        now,
        per_minute: 60.0 / step as f64,
        frame: Frame {
            from,
            to,
            range: range.1,
        },
    };
    let mut charts = traffic_charts(&r).await?;
    charts.extend(pipeline_charts(&r).await?);
    Ok(charts)
}

/// Requests per minute, the share answered 5xx and the p99 latency.
async fn traffic_charts(r: &Reader<'_>) -> Result<Vec<MetricChart>, ObserveError> {
    let http = || MetricQuery::new(names::HTTP_REQUESTS.name);
    let requests = r.scaled(http(), Statistic::Sum, r.per_minute).await?;
    let errors = r
        .percent(http().with("status_class", "5xx"), http())
        .await?;
    let latency = MetricQuery::new(names::HTTP_DURATION.name);
    let p99 = r
        .scaled(latency, Statistic::Percentile(99.0), 1000.0)
        .await?;
    let f = &r.frame;
    Ok(vec![
        f.chart(
            "requests",
            "Request rate",
            "requests/min",
            &[("requests", &requests)],
        ),
        f.chart("errors", "5xx rate", "% of requests", &[("5xx", &errors)]),
        f.chart("latency", "p99 latency", "ms", &[("p99", &p99)]),
    ])
}

/// Readings accepted and rejected per minute; the outbox's depth and dead letters.
async fn pipeline_charts(r: &Reader<'_>) -> Result<Vec<MetricChart>, ObserveError> {
    let readings = |o: &str| MetricQuery::new(names::READINGS.name).with("outcome", o);
    let outbox = |m: &str| MetricQuery::new(m).with("queue", "outbox");
    let accepted = r
        .scaled(readings("accepted"), Statistic::Sum, r.per_minute)
        .await?;
    let rejected = r
        .scaled(readings("rejected"), Statistic::Sum, r.per_minute)
        .await?;
    let max = Statistic::Maximum;
    let depth = r.scaled(outbox(names::QUEUE_DEPTH.name), max, 1.0).await?;
    let dead = r
        .scaled(outbox(names::QUEUE_DEAD_LETTERS.name), max, 1.0)
        .await?;
    let f = &r.frame;
    Ok(vec![
        f.chart(
            "readings",
            "Readings accepted and rejected",
            "readings/min",
            &[("accepted", &accepted), ("rejected", &rejected)],
        ),
        f.chart(
            "outbox",
            "Outbox depth and dead letters",
            "messages",
            &[("waiting", &depth), ("dead letters", &dead)],
        ),
    ])
}

/// What the charts of one view share.
struct Frame {
    from: i64,
    to: i64,
    range: &'static str,
}

impl Frame {
    /// A chart of `lines` (legend, points), or none when no line has a value.
    fn chart(
        &self,
        id: &'static str,
        title: &'static str,
        unit: &'static str,
        lines: &[(&str, &Points)],
    ) -> MetricChart {
        let empty = lines.iter().all(|(_, p)| p.iter().all(|x| x.1.is_none()));
        let shown: Vec<Line> = lines
            .iter()
            .map(|(label, points)| Line {
                label,
                points: points.as_slice(),
            })
            .collect();
        let label = format!(
            "Line chart of {title} ({unit}), {}",
            self.range.to_lowercase()
        );
        let chart = (!empty).then(|| charts::metric(&shown, self.from, self.to, unit, &label));
        let caption = format!("{title}, {}, in {unit}.", self.range.to_lowercase());
        MetricChart {
            id,
            title,
            unit,
            table: DataTable::lines(caption.clone(), &shown, crate::view::fmt_value),
            caption,
            chart,
        }
    }
}

// ---- alarms --------------------------------------------------------------------------------

fn state_class(state: AlarmState) -> &'static str {
    match state {
        AlarmState::Ok => "ok",
        AlarmState::Alarm => "alarm",
        AlarmState::InsufficientData => "insufficient",
    }
}

fn alarm_row(a: AlarmStatus) -> AlarmRow {
    AlarmRow {
        name: a.definition.name,
        description: a.definition.description,
        state: a.state.as_str(),
        class: state_class(a.state),
        reason: a.reason,
        updated: a.updated_at.map(view::fmt_time).unwrap_or_default(),
        enabled: a.definition.enabled,
    }
}

/// The stored alarms with their states, those in ALARM first, then by name.
async fn alarm_rows(
    store: Arc<dyn ObserveStore>,
    rollups: Rollups,
) -> Result<Vec<AlarmRow>, ObserveError> {
    // Only read here: the sink is never asked to deliver.
    let engine = AlarmEngine::new(store, rollups, Arc::new(LogSink));
    let mut rows: Vec<AlarmRow> = engine.alarms().await?.into_iter().map(alarm_row).collect();
    rows.sort_by(|a, b| (a.state != "ALARM", &a.name).cmp(&(b.state != "ALARM", &b.name)));
    Ok(rows)
}

// ---- stations --------------------------------------------------------------------------------

/// The stale stations of the API's latest view (what the map shows as "no recent data"),
/// with those the `station-silent` alarm counts marked; and how many of all report.
async fn station_health(
    web: &WebState,
    now: DateTime<Utc>,
) -> WebResult<(Vec<StationRow>, usize, usize)> {
    let snapshot = web.app.latest().await?;
    let defaults = ObserveConfig::default();
    let silent: HashSet<String> = stations::silent_stations(
        web.app.store(),
        now,
        defaults.silent_station_seconds,
        defaults.retired_station_seconds,
    )
    .await?
    .into_iter()
    .map(|s| s.to_string())
    .collect();
    let unwell: Vec<_> = snapshot
        .stations
        .iter()
        .filter(|s| s.stale || s.time.is_none())
        .collect();
    let mut rows: Vec<StationRow> = unwell
        .iter()
        .map(|s| StationRow {
            id: s.station.to_string(),
            name: s.name.clone(),
            last: s
                .time
                .map(|t| view::ago(t, now))
                .unwrap_or_else(|| "never".into()),
            silent: silent.contains(s.station.as_str()),
        })
        .collect();
    rows.sort_by(|a, b| (!a.silent, &a.name).cmp(&(!b.silent, &b.name)));
    let total = snapshot.stations.len();
    Ok((rows, total - unwell.len(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert_eq!(parse_range(None).unwrap().0, "hour");
        assert_eq!(parse_range(Some("week")).unwrap().2, View::Week);
        assert!(parse_range(Some("year")).is_err());
    }

    #[test]
    fn a_chart_without_values_is_not_drawn() {
        let frame = Frame {
            from: 0,
            to: 3_600,
            range: "Last hour",
        };
        let none: Points = (0..60).map(|i| (i * 60, None)).collect();
        assert!(frame.chart("x", "X", "ms", &[("x", &none)]).chart.is_none());
        let some: Points = (0..60).map(|i| (i * 60, Some(i as f64))).collect();
        let drawn = frame.chart("x", "X", "ms", &[("x", &none), ("y", &some)]);
        assert!(drawn.chart.unwrap().svg.contains("<svg"));
        assert_eq!(drawn.caption, "X, last hour, in ms.");
    }
}
