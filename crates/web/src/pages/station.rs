//! A station's page: its latest values with the AQI and the health advice of its category,
//! the history of a chosen parameter over a chosen range, the 24-hour forecast with its
//! interval, and the forecast's held-out skill said in plain words. Every chart has a CSV link
//! to the same data through the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use ecocityhub_domain::aqi::us_epa::{Category, Table};
use ecocityhub_domain::{Parameter, QualityFlag, StationId};
use ecocityhub_ml::data::FORECASTABLE;
use ecocityhub_ml::forecast::{ForecastError, StationForecast};
use serde::Deserialize;

use crate::charts::{self, Chart};
use crate::error::{WebError, WebResult};
use crate::session::Visitor;
use crate::view::{self, category_class, Layout};
use crate::WebState;

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
    pub value: String,
    pub unit: &'static str,
    pub when: String,
    pub note: &'static str,
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

pub struct ForecastView {
    pub model_id: i64,
    pub chart: Chart,
    pub caption: String,
    pub csv: String,
    pub skill: String,
    pub coverage: String,
    pub stale_note: Option<String>,
}

#[derive(Template)]
#[template(path = "station.html")]
struct StationPage {
    layout: Layout,
    id: String,
    name: String,
    area: String,
    coordinates: String,
    replay_note: Option<String>,
    aqi: Option<String>,
    aqi_class: &'static str,
    category: &'static str,
    advice: &'static str,
    dominant: String,
    eaqi: Option<String>,
    updated: String,
    values: Vec<ValueRow>,
    parameters: Vec<Choice>,
    ranges: Vec<Choice>,
    parameter_name: &'static str,
    unit: &'static str,
    range_label: &'static str,
    history: Option<Chart>,
    history_caption: String,
    history_csv: String,
    forecast: Option<ForecastView>,
    forecast_missing: Option<String>,
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
    let not_found =
        || WebError::NotFound(format!("There is no station {id:?}. Pick one on the map."));
    let station_id = StationId::parse(&id).map_err(|_| not_found())?;
    let station = web
        .app
        .store()
        .station(&station_id)
        .await?
        .ok_or_else(not_found)?;
    let snapshot = web.app.latest().await?;
    let latest = snapshot.stations.iter().find(|s| s.station == station_id);
    let now = Utc::now();
    let series: Vec<_> = web
        .app
        .store()
        .series()
        .await?
        .into_iter()
        .filter(|s| s.station == station_id && s.last.is_some())
        .collect();
    let range = Range::parse(q.range.as_deref())?;
    let default_parameter = latest
        .and_then(|l| l.aqi.as_ref().map(|a| a.dominant))
        .filter(|p| series.iter().any(|s| s.parameter == *p))
        .or_else(|| {
            series
                .iter()
                .map(|s| s.parameter)
                .find(|p| FORECASTABLE.contains(p))
        })
        .or_else(|| series.first().map(|s| s.parameter));
    let parameter = match q.parameter.as_deref() {
        Some(p) => {
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
            Some(parsed)
        }
        None => default_parameter,
    };

    let mut page = StationPage {
        layout: Layout::new(&web, &visitor, station.name.clone()).section("map"),
        id: station.id.to_string(),
        name: station.name.clone(),
        area: station.area.clone().unwrap_or_default(),
        coordinates: format!("{:.4}, {:.4}", station.location.lat, station.location.lon),
        replay_note: station
            .metadata
            .pointer("/replay/note")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        aqi: None,
        aqi_class: "none",
        category: "No current AQI",
        advice: "",
        dominant: String::new(),
        eaqi: None,
        updated: "never".into(),
        values: Vec::new(),
        parameters: series
            .iter()
            .map(|s| Choice {
                value: s.parameter.as_str(),
                label: s.parameter.display_name(),
                selected: Some(s.parameter) == parameter,
            })
            .collect(),
        ranges: Range::ALL
            .iter()
            .map(|r| Choice {
                value: r.key(),
                label: r.label(),
                selected: *r == range,
            })
            .collect(),
        parameter_name: parameter.map(|p| p.display_name()).unwrap_or(""),
        unit: parameter.map(|p| p.canonical_unit().symbol()).unwrap_or(""),
        range_label: range.label(),
        history: None,
        history_caption: String::new(),
        history_csv: String::new(),
        forecast: None,
        forecast_missing: None,
    };
    if let Some(l) = latest {
        if let Some(a) = &l.aqi {
            page.aqi = Some(a.aqi.to_string());
            page.aqi_class = category_class(Some(a.category));
            page.category = a.category.label();
            page.advice = a.category.advice();
            page.dominant = a.dominant.display_name().to_string();
        }
        page.eaqi = l.eaqi.as_ref().map(|e| e.label.to_string());
        page.updated = match l.time {
            Some(t) if l.stale => format!(
                "{} — {} (no recent data)",
                view::fmt_time(t),
                view::ago(t, now)
            ),
            Some(t) => format!("{} — {}", view::fmt_time(t), view::ago(t, now)),
            None => "never".into(),
        };
        page.values = l
            .values
            .iter()
            .map(|v| ValueRow {
                parameter: v.parameter.display_name(),
                value: view::fmt_value(v.value),
                unit: v.unit,
                when: view::ago(v.time, now),
                note: match (v.flag, v.period_seconds) {
                    (QualityFlag::Suspect, _) => "suspect",
                    (QualityFlag::Invalid, _) => "invalid",
                    (_, Some(86_400)) => "daily mean",
                    _ => "",
                },
            })
            .collect();
    }

    if let Some(parameter) = parameter {
        let info = series
            .iter()
            .find(|s| s.parameter == parameter)
            .expect("chosen from series");
        let last = info.last.expect("filtered").timestamp();
        let from = last - range.seconds();
        let raw = web
            .app
            .store()
            .readings(&station_id, parameter, from + 1, last + 1, 20_000)
            .await?;
        let points: Vec<(i64, f64)> = raw
            .iter()
            .filter(|p| p.flag != QualityFlag::Invalid)
            .map(|p| (p.ts, p.value))
            .collect();
        let hourly = info.period_seconds.is_none_or(|s| s < 86_400);
        let (points, interval) = if range == Range::Year && hourly {
            (daily_means(&points), "1d")
        } else {
            (points, "raw")
        };
        let thresholds = Table::for_charts(parameter)
            .map(Table::category_upper_bounds)
            .unwrap_or_default();
        let unit = parameter.canonical_unit().symbol();
        page.history_caption = format!(
            "{} at {}, {} up to {}{}. Dashed lines: where the AQI category changes.",
            parameter.display_name(),
            station.name,
            range.label().to_lowercase(),
            view::fmt_time(DateTime::from_timestamp(last, 0).unwrap_or_default()),
            if interval == "1d" {
                " (daily means)"
            } else {
                ""
            }
        );
        page.history_csv = format!(
            "/api/v1/stations/{}/readings?parameter={}&from={}&to={}&interval={interval}&format=csv",
            station.id,
            parameter.as_str(),
            iso(from + 1),
            iso(last + 1)
        );
        if !points.is_empty() {
            let label = format!(
                "Line chart of {} at {}, {}: from {} to {} {unit}",
                parameter.display_name(),
                station.name,
                range.label().to_lowercase(),
                view::fmt_value(points.iter().map(|p| p.1).fold(f64::MAX, f64::min)),
                view::fmt_value(points.iter().map(|p| p.1).fold(f64::MIN, f64::max)),
            );
            page.history = Some(
                charts::history(&points, unit, &label, &thresholds).map_err(WebError::Internal)?,
            );
        }
        if FORECASTABLE.contains(&parameter) {
            match web
                .app
                .forecaster()
                .forecast(&station_id, parameter, web.app.generation())
                .await
            {
                Ok(f) => {
                    page.forecast = Some(forecast_view(&web, &station.name, &f, &thresholds).await?)
                }
                Err(ForecastError::NoModel { .. }) => {
                    page.forecast_missing = Some(format!(
                        "No forecast model serves {} here yet. Models are trained by an administrator (the demo trains its own a minute after the first start).",
                        parameter.display_name()
                    ))
                }
                Err(ForecastError::NoData { .. }) => {
                    page.forecast_missing =
                        Some("There are too few recent readings to forecast from.".into())
                }
                Err(e) => return Err(WebError::Internal(e.to_string())),
            }
        } else {
            page.forecast_missing = Some(format!(
                "{} is not forecast; forecasts cover PM2.5, PM10, NO₂, O₃, SO₂ and CO.",
                parameter.display_name()
            ));
        }
    }
    super::page(page)
}

fn parse_ts(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

async fn forecast_view(
    web: &WebState,
    station_name: &str,
    f: &StationForecast,
    thresholds: &[(Category, f64)],
) -> WebResult<ForecastView> {
    let origin = parse_ts(&f.origin).unwrap_or_default();
    let station = StationId::parse(&f.station).map_err(|e| WebError::Internal(e.to_string()))?;
    let measured: Vec<(i64, f64)> = web
        .app
        .store()
        .readings(&station, f.parameter, origin - 36 * 3_600, origin + 1, 100)
        .await?
        .into_iter()
        .filter(|p| p.flag != QualityFlag::Invalid)
        .map(|p| (p.ts, p.value))
        .collect();
    let hours: Vec<charts::ForecastPoint> = f
        .hours
        .iter()
        .filter_map(|h| Some((parse_ts(&h.time)?, h.value, h.lower, h.upper)))
        .collect();
    let peak = hours.iter().map(|h| h.1).fold(0.0, f64::max);
    let label = format!(
        "Forecast of {} at {station_name} for the 24 hours after {}: up to {} {}",
        f.parameter.display_name(),
        f.origin,
        view::fmt_value(peak),
        f.unit
    );
    let chart = charts::forecast(&measured, &hours, f.unit, &label, thresholds)
        .map_err(WebError::Internal)?;
    let (skill, coverage) = skill_sentence(f);
    Ok(ForecastView {
        model_id: f.model.id,
        chart,
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

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert_eq!(Range::parse(None).unwrap(), Range::Week);
        assert_eq!(Range::parse(Some("year")).unwrap(), Range::Year);
        assert!(Range::parse(Some("decade")).is_err());
    }
}
