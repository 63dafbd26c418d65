//! The "latest" view: per station, the newest value of each parameter and the current US AQI
//! and European index computed from the last 24 hours by each agency's averaging rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ecocityhub_domain::aqi::{eaqi, us_epa, HourlyWindow};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, StationId};
use ecocityhub_store::{RecentSeries, Store};
use serde::Serialize;

use crate::error::ApiResult;

/// The window of readings the indices need.
pub const WINDOW_SECONDS: i64 = 24 * 3600;

/// The newest value of one parameter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LatestValue {
    pub parameter: Parameter,
    pub value: f64,
    /// The canonical unit of the parameter.
    pub unit: &'static str,
    pub time: DateTime<Utc>,
    pub flag: QualityFlag,
    /// Averaging period of the value in seconds, when known (86400: a daily mean).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
}

/// One station in the latest view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LatestStation {
    pub station: StationId,
    pub name: String,
    pub location: GeoPoint,
    pub area: Option<String>,
    /// Time of the newest reading of any parameter.
    pub time: Option<DateTime<Utc>>,
    /// True when the newest reading is older than the staleness limit (plus the sampling
    /// period, for series of daily means).
    pub stale: bool,
    pub values: Vec<LatestValue>,
    /// US EPA AQI (NowCast for PM); `null` when the station measures no index pollutant
    /// with enough recent data.
    pub aqi: Option<us_epa::AqiReport>,
    /// European Air Quality Index (EEA 2024 bands).
    pub eaqi: Option<eaqi::EaqiReport>,
}

/// Computes the latest view of every active station.
pub async fn compute(
    store: &dyn Store,
    now: DateTime<Utc>,
    stale_after: chrono::Duration,
) -> ApiResult<Vec<LatestStation>> {
    let stations = store.stations().await?;
    let recent = store.recent(WINDOW_SECONDS).await?;
    let mut by_station: BTreeMap<&str, Vec<&RecentSeries>> = BTreeMap::new();
    for series in &recent {
        by_station
            .entry(series.station.as_str())
            .or_default()
            .push(series);
    }
    Ok(stations
        .iter()
        .filter(|s| s.active)
        .map(|s| {
            let series = by_station
                .get(s.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let (values, window) = summarize(series);
            let time = values.iter().map(|v| v.time).max();
            // A series of daily means is not late until a day plus the allowance has passed.
            let longest_period = values
                .iter()
                .filter_map(|v| v.period_seconds)
                .max()
                .unwrap_or(0);
            let allowed = stale_after + chrono::Duration::seconds(longest_period);
            LatestStation {
                station: s.id.clone(),
                name: s.name.clone(),
                location: s.location,
                area: s.area.clone(),
                time,
                stale: time.is_none_or(|t| now - t > allowed),
                values,
                aqi: us_epa::latest(&window),
                eaqi: eaqi::latest(&window),
            }
        })
        .collect())
}

/// The newest values and the hourly window of one station's series.
fn summarize(series: &[&RecentSeries]) -> (Vec<LatestValue>, HourlyWindow) {
    let values: Vec<LatestValue> = series
        .iter()
        .filter_map(|s| {
            let last = s.points.last()?;
            Some(LatestValue {
                parameter: s.parameter,
                value: last.value,
                unit: s.parameter.canonical_unit().symbol(),
                time: DateTime::from_timestamp(last.ts, 0)?,
                flag: last.flag,
                period_seconds: s.period_seconds,
            })
        })
        .collect();
    // The indices look back from the station's newest pollutant reading.
    let end = series
        .iter()
        .filter(|s| s.parameter.is_pollutant())
        .filter_map(|s| s.points.last().map(|p| p.ts))
        .max()
        .unwrap_or(0);
    let hourly = series
        .iter()
        .filter(|s| s.period_seconds.is_none_or(|p| p < 86_400))
        .flat_map(|s| {
            s.points
                .iter()
                .map(move |p| (s.parameter, p.ts, p.value, p.flag))
        });
    let mut window = HourlyWindow::from_readings(end, hourly);
    for s in series
        .iter()
        .filter(|s| s.period_seconds.is_some_and(|p| p >= 86_400))
    {
        if let Some(p) = s
            .points
            .last()
            .filter(|p| p.flag.counts() && end - p.ts < 86_400)
        {
            window.daily_means.insert(s.parameter, p.value);
        }
    }
    (values, window)
}
