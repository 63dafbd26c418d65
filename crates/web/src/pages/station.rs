//! A station's page: its latest values with the city's headline index and the health advice
//! of its category (both indices, and why they differ when they do), the history of a chosen
//! parameter over a chosen range — by default the pollutant driving the station's AQI — the
//! 24-hour forecast with its interval, and the forecast's held-out skill said in plain words.
//! Old readings are dated, never called "now"; a replay says so. Every chart has a table of
//! its data and a CSV link to the same data through the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use ecocityhub_api::latest::LatestStation;
use ecocityhub_domain::aqi::eaqi::{EaqiReport, Level};
use ecocityhub_domain::aqi::us_epa::{AqiReport, Category, Table};
use ecocityhub_domain::{Parameter, QualityFlag, Station, StationId};
use ecocityhub_ml::data::FORECASTABLE;
use ecocityhub_ml::forecast::{ForecastError, StationForecast};
use ecocityhub_store::SeriesInfo;
use serde::Deserialize;

use crate::charts::{self, Chart, DataTable, Spec};
use crate::error::{WebError, WebResult};
use crate::session::Visitor;
use crate::view::{self, category_class, Layout};
use crate::{indices, replay, HeadlineIndex, WebState};

/// How far back the history chart looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Day,
    Week,
    Month,
    Year,
}

impl Range {
    pub const ALL: [Range; 4] = [Range::Day, Range::Week, Range::Month, Range::Year];

    pub fn parse(s: Option<&str>) -> WebResult<Range> {
        match s.unwrap_or("week") {
            "day" => Ok(Range::Day),
            "week" => Ok(Range::Week),
            "month" => Ok(Range::Month),
            "year" => Ok(Range::Year),
            other => Err(WebError::BadRequest(format!(
                "There is no range {other:?}; choose day, week, month or year."
            ))),
        }
    }

    pub const fn key(self) -> &'static str {
        match self {
            Range::Day => "day",
            Range::Week => "week",
            Range::Month => "month",
            Range::Year => "year",
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Range::Day => "Last day",
            Range::Week => "Last week",
            Range::Month => "Last month",
            Range::Year => "Last year",
        }
    }

    pub const fn seconds(self) -> i64 {
        match self {
            Range::Day => 86_400,
            Range::Week => 7 * 86_400,
            Range::Month => 30 * 86_400,
            Range::Year => 365 * 86_400,
        }
    }
}

#[derive(Deserialize)]
pub struct StationQuery {
    parameter: Option<String>,
    range: Option<String>,
}

pub struct ValueRow {
    pub parameter: &'static str,
    /// The value with its unit (a wind direction as a compass point).
    pub value: String,
    pub when: String,
    pub note: &'static str,
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// One index as the "now" card shows it.
pub struct IndexView {
    /// "US AQI", "European index".
    pub name: &'static str,
    /// What the large box says: the AQI's number, the European index's band.
    pub big: String,
    /// The CSS class of its colours.
    pub class: String,
    /// The category in words.
    pub label: &'static str,
    pub dominant: &'static str,
}

/// The card of the latest readings.
pub struct NowView {
    /// "Now" when the newest reading is recent, else "Latest readings, 31 Dec 2008".
    pub heading: String,
    /// The city's headline index, and the other one.
    pub headline: Option<IndexView>,
    pub other: Option<IndexView>,
    /// The EPA's advice for the US AQI's category (when it is the headline).
    pub advice: &'static str,
    /// Why the two indices disagree, when they do notably.
    pub explanation: Option<String>,
    pub updated: String,
}

pub struct HistoryView {
    pub parameter_name: &'static str,
    /// The unit the tooltips write.
    pub unit: &'static str,
    pub range_label: &'static str,
    pub chart: Option<Chart>,
    pub table: Option<DataTable>,
    pub caption: String,
    pub csv: String,
    /// A wind direction (tooltips write compass points).
    pub compass: bool,
}

pub struct ForecastView {
    pub model_id: i64,
    pub chart: Chart,
    pub table: DataTable,
    pub unit: &'static str,
    pub caption: String,
    pub csv: String,
    pub skill: String,
    pub coverage: String,
    pub stale_note: Option<String>,
}

#[derive(Template)]
#[template(path = "station.html")]
pub struct StationPage {
    layout: Layout,
    id: String,
    name: String,
    area: String,
    coordinates: String,
    now: NowView,
    values: Vec<ValueRow>,
    parameters: Vec<Choice>,
    ranges: Vec<Choice>,
    history: Option<HistoryView>,
    forecast: Option<ForecastView>,
    forecast_missing: Option<String>,
    /// The visitor runs stations: links to this station's operations page (its flagged
    /// readings, its keys).
    operator: bool,
}

fn iso(ts: i64) -> String {
    ecocityhub_ml::fmt_ts(ts)
}

/// Daily means of a series (for a year of hourly data).
fn daily_means(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64, usize)> = Vec::new();
    for &(ts, v) in points {
        let day = ts.div_euclid(86_400) * 86_400;
        match out.last_mut() {
            Some((d, sum, n)) if *d == day => {
                *sum += v;
                *n += 1;
            }
            _ => out.push((day, v, 1)),
        }
    }
    out.into_iter()
        .map(|(d, sum, n)| (d + 43_200, sum / n as f64))
        .collect()
}

/// "Over the last 28 days…": the held-out skill at the longest horizon, in words.
pub fn skill_sentence(f: &StationForecast) -> (String, String) {
    let Some(s) = f
        .model
        .holdout_scores
        .iter()
        .filter(|s| s.horizon <= 24)
        .max_by_key(|s| s.horizon)
    else {
        return (
            "This model has no held-out scores to judge it by.".into(),
            String::new(),
        );
    };
    let days = (s.n as f64 / 24.0).round().max(1.0);
    let better = if s.model.mae < s.persistence.mae {
        format!(
            "so the model's error was {:.0}% smaller",
            (1.0 - s.model.mae / s.persistence.mae) * 100.0
        )
    } else {
        "so on those days the model was no better than assuming no change".into()
    };
    (
        format!(
            "Over the last {days:.0} days of data the model was not trained on, forecasts {h} h ahead were off by {m:.1} {u} on average; \
             assuming the value stays as it is (persistence) was off by {p:.1} {u}, {better}.",
            h = s.horizon,
            m = s.model.mae,
            p = s.persistence.mae,
            u = f.unit
        ),
        format!(
            "The shaded band is the {:.0}% prediction interval; on those days it held the measured value {:.0}% of the time.",
            f.interval_level * 100.0,
            s.interval_coverage * 100.0
        ),
    )
}

/// `GET /stations/{id}`
pub async fn station(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(q): Query<StationQuery>,
) -> WebResult<Response> {
    super::page(station_page(&web, &visitor, &id, &q).await?)
}

/// The station page's view model.
pub async fn station_page(
    web: &WebState,
    visitor: &Visitor,
    id: &str,
    q: &StationQuery,
) -> WebResult<StationPage> {
    let station = find_station(web, id).await?;
    let snapshot = web.app.latest().await?;
    let latest = snapshot.stations.iter().find(|s| s.station == station.id);
    let series = station_series(web, &station.id).await?;
    let range = Range::parse(q.range.as_deref())?;
    let parameter = chosen_parameter(&station, &series, latest, q.parameter.as_deref())?;
    let info = parameter.and_then(|p| series.iter().find(|s| s.parameter == p));
    let history = match info {
        Some(info) => Some(history_view(web, &station, info, range).await?),
        None => None,
    };
    let (forecast, forecast_missing) = match parameter {
        Some(p) => forecast_section(web, &station, p).await?,
        None => (None, None),
    };
    let now = Utc::now();
    Ok(StationPage {
        layout: Layout::new(web, visitor, station.name.clone())
            .section("map")
            .replay(replay::banner([&station])),
        id: station.id.to_string(),
        name: station.name.clone(),
        area: station.area.clone().unwrap_or_default(),
        coordinates: format!("{:.4}, {:.4}", station.location.lat, station.location.lon),
        operator: visitor.user.as_ref().is_some_and(|u| u.is_operator()),
        now: now_view(latest, now, web.config.headline_index),
        values: latest.map(|l| value_rows(l, now)).unwrap_or_default(),
        parameters: parameter_choices(&series, parameter),
        ranges: range_choices(range),
        history,
        forecast,
        forecast_missing,
    })
}

async fn find_station(web: &WebState, id: &str) -> WebResult<Station> {
    let not_found =
        || WebError::NotFound(format!("There is no station {id:?}. Pick one on the map."));
    let station_id = StationId::parse(id).map_err(|_| not_found())?;
    web.app
        .store()
        .station(&station_id)
        .await?
        .ok_or_else(not_found)
}

/// The station's series that have readings.
async fn station_series(web: &WebState, station: &StationId) -> WebResult<Vec<SeriesInfo>> {
    Ok(web
        .app
        .store()
        .series()
        .await?
        .into_iter()
        .filter(|s| s.station == *station && s.last.is_some())
        .collect())
}

/// The station's main pollutant: the one driving its AQI (else its European index), else the
/// first it measures of those forecast, else its first series.
pub fn main_pollutant(latest: Option<&LatestStation>, series: &[SeriesInfo]) -> Option<Parameter> {
    let measured = |p: &Parameter| series.iter().any(|s| s.parameter == *p);
    let us = latest.and_then(|l| l.aqi.as_ref()).map(|a| a.dominant);
    let eu = latest.and_then(|l| l.eaqi.as_ref()).map(|e| e.dominant);
    us.filter(measured)
        .or(eu.filter(measured))
        .or_else(|| FORECASTABLE.iter().copied().find(measured))
        .or_else(|| series.first().map(|s| s.parameter))
}

/// The parameter asked for (which the station must measure), else its main pollutant.
fn chosen_parameter(
    station: &Station,
    series: &[SeriesInfo],
    latest: Option<&LatestStation>,
    asked: Option<&str>,
) -> WebResult<Option<Parameter>> {
    let Some(p) = asked else {
        return Ok(main_pollutant(latest, series));
    };
    let parsed: Parameter = p.parse().map_err(|_| {
        WebError::BadRequest(format!("{p:?} is not a parameter this platform knows."))
    })?;
    if !series.iter().any(|s| s.parameter == parsed) {
        return Err(WebError::NotFound(format!(
            "{} has no {} readings.",
            station.name,
            parsed.display_name()
        )));
    }
    Ok(Some(parsed))
}

fn parameter_choices(series: &[SeriesInfo], parameter: Option<Parameter>) -> Vec<Choice> {
    series
        .iter()
        .map(|s| Choice {
            value: s.parameter.as_str(),
            label: s.parameter.display_name(),
            selected: Some(s.parameter) == parameter,
        })
        .collect()
}

fn range_choices(range: Range) -> Vec<Choice> {
    Range::ALL
        .iter()
        .map(|r| Choice {
            value: r.key(),
            label: r.label(),
            selected: *r == range,
        })
        .collect()
}

/// The CSS class of a European index level (`eaqi-very_poor`).
fn eaqi_class(level: Level) -> String {
    format!("eaqi-{}", level.label().to_lowercase().replace(' ', "_"))
}

fn us_index(a: &AqiReport) -> IndexView {
    IndexView {
        name: "US AQI",
        big: a.aqi.to_string(),
        class: format!("aqi-{}", category_class(Some(a.category))),
        label: a.category.label(),
        dominant: a.dominant.display_name(),
    }
}

fn eu_index(e: &EaqiReport) -> IndexView {
    IndexView {
        name: "European index",
        big: e.label.to_string(),
        class: eaqi_class(e.level),
        label: e.label,
        dominant: e.dominant.display_name(),
    }
}

/// "Now", or the date of the newest reading when it is not recent.
fn now_heading(time: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match time {
        Some(t) if view::is_recent(t, now) => "Now".into(),
        Some(t) => format!("Latest readings, {}", view::fmt_date(t)),
        None => "Latest readings".into(),
    }
}

fn updated(l: &LatestStation, now: DateTime<Utc>) -> String {
    match l.time {
        Some(t) if l.stale => format!(
            "{} — {} (no recent data)",
            view::fmt_time(t),
            view::ago(t, now)
        ),
        Some(t) => format!("{} — {}", view::fmt_time(t), view::ago(t, now)),
        None => "never".into(),
    }
}

/// The card of the latest readings, the headline index first.
fn now_view(
    latest: Option<&LatestStation>,
    now: DateTime<Utc>,
    headline: HeadlineIndex,
) -> NowView {
    let us = latest.and_then(|l| l.aqi.as_ref());
    let eu = latest.and_then(|l| l.eaqi.as_ref());
    let (first, second) = match headline {
        HeadlineIndex::UsAqi => (us.map(us_index), eu.map(eu_index)),
        HeadlineIndex::Eaqi => (eu.map(eu_index), us.map(us_index)),
    };
    let advice = match (headline, us) {
        (HeadlineIndex::UsAqi, Some(a)) => a.category.advice(),
        _ => "",
    };
    NowView {
        heading: now_heading(latest.and_then(|l| l.time), now),
        headline: first,
        other: second,
        advice,
        explanation: us
            .zip(eu)
            .and_then(|(a, e)| indices::explain(a, e, headline)),
        updated: latest.map_or_else(|| "never".into(), |l| updated(l, now)),
    }
}

fn value_rows(l: &LatestStation, now: DateTime<Utc>) -> Vec<ValueRow> {
    l.values
        .iter()
        .map(|v| ValueRow {
            parameter: v.parameter.display_name(),
            value: view::fmt_with_unit(v.parameter, v.value),
            when: view::ago(v.time, now),
            note: match (v.flag, v.period_seconds) {
                (QualityFlag::Suspect, _) => "suspect",
                (QualityFlag::Invalid, _) => "invalid",
                (_, Some(86_400)) => "daily mean",
                _ => "",
            },
        })
        .collect()
}

/// The AQI category bounds of a parameter in its unit (none for weather).
fn thresholds_of(parameter: Parameter) -> Vec<(Category, f64)> {
    Table::for_charts(parameter)
        .map(Table::category_upper_bounds)
        .unwrap_or_default()
}

/// The readings a history chart shows: (points, interval of the CSV, from, last).
async fn history_points(
    web: &WebState,
    station: &StationId,
    info: &SeriesInfo,
    range: Range,
) -> WebResult<(Vec<(i64, f64)>, &'static str, i64, i64)> {
    let last = info.last.map_or(0, |t| t.timestamp());
    let from = last - range.seconds();
    let points: Vec<(i64, f64)> = web
        .app
        .store()
        .readings(station, info.parameter, from + 1, last + 1, 20_000)
        .await?
        .iter()
        .filter(|p| p.flag != QualityFlag::Invalid)
        .map(|p| (p.ts, p.value))
        .collect();
    let hourly = info.period_seconds.is_none_or(|s| s < 86_400);
    Ok(if range == Range::Year && hourly {
        (daily_means(&points), "1d", from, last)
    } else {
        (points, "raw", from, last)
    })
}

/// What a figure's caption adds about the lines drawn.
fn legend_sentence(parameter: Parameter, chart: Option<&Chart>) -> &'static str {
    if parameter == Parameter::WindDirection {
        " Each dot is a reading: the direction the wind blows from."
    } else if chart.is_some_and(charts::shows_category_lines) {
        " Dashed lines: where the AQI category changes."
    } else {
        ""
    }
}

/// The history section: chart, table, caption and CSV link of one parameter over a range.
async fn history_view(
    web: &WebState,
    station: &Station,
    info: &SeriesInfo,
    range: Range,
) -> WebResult<HistoryView> {
    let parameter = info.parameter;
    let (points, interval, from, last) = history_points(web, &station.id, info, range).await?;
    let unit = view::unit_of(parameter);
    let compass = parameter == Parameter::WindDirection;
    let what = format!(
        "{} at {}, {}",
        parameter.display_name(),
        station.name,
        range.label().to_lowercase()
    );
    let thresholds = thresholds_of(parameter);
    let (chart, table) = if points.is_empty() {
        (None, None)
    } else {
        let label = format!(
            "{} chart of {what}: from {} to {}",
            if compass { "Dot" } else { "Line" },
            view::fmt_with_unit(
                parameter,
                points.iter().map(|p| p.1).fold(f64::MAX, f64::min)
            ),
            view::fmt_with_unit(
                parameter,
                points.iter().map(|p| p.1).fold(f64::MIN, f64::max)
            ),
        );
        let spec = Spec::new(&label, unit)
            .thresholds(&thresholds)
            .compass(compass);
        let header = format!("{} ({unit})", parameter.display_name());
        let table = DataTable::series(what.clone(), &header, &points, |v| {
            if compass {
                view::compass(v)
            } else {
                view::fmt_value(v)
            }
        });
        (Some(charts::history(&points, &spec)), Some(table))
    };
    let caption = format!(
        "{what} up to {}{}.{}",
        view::fmt_time(DateTime::from_timestamp(last, 0).unwrap_or_default()),
        if interval == "1d" {
            " (daily means)"
        } else {
            ""
        },
        legend_sentence(parameter, chart.as_ref())
    );
    Ok(HistoryView {
        parameter_name: parameter.display_name(),
        unit,
        range_label: range.label(),
        csv: format!(
            "/api/v1/stations/{}/readings?parameter={}&from={}&to={}&interval={interval}&format=csv",
            station.id,
            parameter.as_str(),
            iso(from + 1),
            iso(last + 1)
        ),
        chart,
        table,
        caption,
        compass,
    })
}

/// The forecast section: the forecast, or why there is none.
async fn forecast_section(
    web: &WebState,
    station: &Station,
    parameter: Parameter,
) -> WebResult<(Option<ForecastView>, Option<String>)> {
    if !FORECASTABLE.contains(&parameter) {
        return Ok((
            None,
            Some(format!(
                "{} is not forecast; forecasts cover PM2.5, PM10, NO₂, O₃, SO₂ and CO.",
                parameter.display_name()
            )),
        ));
    }
    let forecast = web
        .app
        .forecaster()
        .forecast(&station.id, parameter, web.app.generation())
        .await;
    match forecast {
        Ok(f) => Ok((Some(forecast_view(web, &station.name, &f).await?), None)),
        Err(ForecastError::NoModel { .. }) => Ok((None, Some(format!(
            "No forecast model serves {} here yet. Models are trained by an administrator (the demo trains its own a minute after the first start).",
            parameter.display_name()
        )))),
        Err(ForecastError::NoData { .. }) => Ok((
            None,
            Some("There are too few recent readings to forecast from.".into()),
        )),
        Err(e) => Err(WebError::Internal(e.to_string())),
    }
}

fn parse_ts(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

/// The measurements of the 36 hours before a forecast's origin.
async fn measured_before(
    web: &WebState,
    f: &StationForecast,
    origin: i64,
) -> WebResult<Vec<(i64, f64)>> {
    let station = StationId::parse(&f.station).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(web
        .app
        .store()
        .readings(&station, f.parameter, origin - 36 * 3_600, origin + 1, 100)
        .await?
        .into_iter()
        .filter(|p| p.flag != QualityFlag::Invalid)
        .map(|p| (p.ts, p.value))
        .collect())
}

async fn forecast_view(
    web: &WebState,
    station_name: &str,
    f: &StationForecast,
) -> WebResult<ForecastView> {
    let origin = parse_ts(&f.origin).unwrap_or_default();
    let measured = measured_before(web, f, origin).await?;
    let hours: Vec<charts::ForecastPoint> = f
        .hours
        .iter()
        .filter_map(|h| Some((parse_ts(&h.time)?, h.value, h.lower, h.upper)))
        .collect();
    let peak = hours.iter().map(|h| h.1).fold(0.0, f64::max);
    let what = format!(
        "Forecast of {} at {station_name} for the 24 hours after {}",
        f.parameter.display_name(),
        f.origin.replace('T', " ").replace('Z', " UTC")
    );
    let label = format!("{what}: up to {} {}", view::fmt_value(peak), f.unit);
    let thresholds = thresholds_of(f.parameter);
    let chart = charts::forecast(
        &measured,
        &hours,
        &Spec::new(&label, f.unit).thresholds(&thresholds),
    );
    let table = DataTable::forecast(
        format!("{what} ({})", f.unit),
        &measured,
        &hours,
        view::fmt_value,
    );
    let (skill, coverage) = skill_sentence(f);
    Ok(ForecastView {
        model_id: f.model.id,
        chart,
        table,
        unit: view::unit_of(f.parameter),
        caption: format!(
            "{} forecast from {} (model version {}, trained on data up to {}). Solid: measured; dashed: forecast.",
            f.parameter.display_name(),
            f.origin.replace('T', " ").replace('Z', " UTC"),
            f.model.version,
            &f.model.training_to.get(..10).unwrap_or(&f.model.training_to)
        ),
        csv: format!(
            "/api/v1/stations/{}/forecast?parameter={}&format=csv",
            f.station,
            f.parameter.as_str()
        ),
        skill,
        coverage,
        stale_note: f.stale.then(|| {
            "The station's last reading is more than three hours old, so the forecast starts from then, not from now.".to_string()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_means_average_each_utc_day() {
        let pts: Vec<(i64, f64)> = (0..48)
            .map(|h| (h * 3_600, if h < 24 { 1.0 } else { 3.0 }))
            .collect();
        assert_eq!(
            daily_means(&pts),
            vec![(43_200, 1.0), (86_400 + 43_200, 3.0)]
        );
    }

    fn series(parameters: &[Parameter]) -> Vec<SeriesInfo> {
        parameters
            .iter()
            .map(|p| SeriesInfo {
                station: StationId::parse("s").unwrap(),
                parameter: *p,
                first: Some(Utc::now()),
                last: Some(Utc::now()),
                period_seconds: None,
            })
            .collect()
    }

    #[test]
    fn without_an_index_the_main_pollutant_is_the_first_forecast_one() {
        let s = series(&[
            Parameter::Co,
            Parameter::No2,
            Parameter::Pm10,
            Parameter::Temperature,
        ]);
        assert_eq!(main_pollutant(None, &s), Some(Parameter::Pm10));
        let weather = series(&[Parameter::Temperature]);
        assert_eq!(main_pollutant(None, &weather), Some(Parameter::Temperature));
        assert_eq!(main_pollutant(None, &[]), None);
    }

    #[test]
    fn old_readings_are_dated_not_now() {
        let now = Utc::now();
        let old = DateTime::parse_from_rfc3339("2008-12-31T23:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(now_heading(Some(old), now), "Latest readings, 31 Dec 2008");
        assert_eq!(
            now_heading(Some(now - chrono::Duration::hours(1)), now),
            "Now"
        );
    }

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert_eq!(Range::parse(None).unwrap(), Range::Week);
        assert_eq!(Range::parse(Some("year")).unwrap(), Range::Year);
        assert!(Range::parse(Some("decade")).is_err());
    }
}
