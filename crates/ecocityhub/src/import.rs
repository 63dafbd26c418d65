//! `ecocityhub import`: loads CSV files of readings in bulk.
//!
//! Two layouts are understood, told apart by the header:
//! - **wide** (the layout of `../shared/data`): `time`, `site`, then one column per variable
//!   named `<parameter>_<unit>` (`no2_ppb`, `pm25_ugm3`, `temp_f`, `ws_ms`, …). Columns whose
//!   parameter or unit is unknown are reported and skipped.
//!   The UCI Beijing layout's wind (`cbwd`, a compass quarter or `cv` for calm and variable,
//!   and `iws_cum_ms`, the wind speed cumulated over the hours the quarter held) becomes the
//!   hourly wind direction and speed.
//! - **long**: `station` (or `site`), `parameter`, `time`, `value`, optional `unit`, `flag`.
//!
//! A blocking thread parses and validates while the async side writes batches of tens of
//! thousands of readings per transaction. Readings are upserted, so importing a file twice
//! changes nothing. Sites that are not stations yet are created from the known-stations list
//! (the shipped `demo/stations.csv` plus `--stations FILE`); unknown sites are reported.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use ecocityhub_domain::reading::{parse_time, IncomingReading};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId, Unit};
use ecocityhub_store::Store;
use indicatif::{ProgressBar, ProgressStyle};

/// Readings per transaction.
pub const DEFAULT_BATCH: usize = 50_000;

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub batch: usize,
    /// Seconds added to every timestamp (the demo's replay mode shifts old data to the present).
    pub shift_seconds: i64,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
    /// Extra metadata merged into stations this import creates.
    pub station_metadata: serde_json::Value,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch: DEFAULT_BATCH,
            shift_seconds: 0,
            progress: false,
            station_metadata: serde_json::Value::Object(Default::default()),
        }
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub rows: u64,
    pub stored: u64,
    /// Of the stored readings, those that were in the database already exactly as in the file.
    pub unchanged: u64,
    pub rejected: u64,
    /// A few rejected values with their reasons, for the user to see.
    pub rejected_examples: Vec<String>,
    pub skipped_columns: Vec<String>,
    /// Stations this import made, in the order it met their sites.
    pub stations_created: Vec<String>,
    /// Sites of the file that were stations already (their readings went to them; an import
    /// never changes a station).
    pub stations_known: usize,
    pub unknown_sites: BTreeSet<String>,
    pub elapsed: Duration,
}

impl ImportReport {
    pub fn rate(&self) -> f64 {
        self.stored as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Parses a stations CSV: `site` (or `id`), `lat`, `lon`, optional `name`, `area`, `timezone`.
pub fn parse_stations(text: &str) -> Result<Vec<Station>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers()?.clone();
    let col = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let (Some(id), Some(lat), Some(lon)) = (
        col(&["site", "id", "station"]),
        col(&["lat", "latitude"]),
        col(&["lon", "lng", "longitude"]),
    ) else {
        bail!(
            "a stations file needs the columns site (or id), lat and lon; it has {:?}",
            headers.iter().collect::<Vec<_>>()
        );
    };
    let (name, area, tz) = (
        col(&["name"]),
        col(&["area", "district"]),
        col(&["timezone", "tz"]),
    );
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.with_context(|| format!("stations file, row {}", i + 2))?;
        let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).filter(|s| !s.is_empty());
        let line = i + 2;
        let sid = StationId::parse(get(Some(id)).unwrap_or(""))
            .with_context(|| format!("stations file, line {line}"))?;
        let num = |c: usize, what: &str| -> Result<f64> {
            get(Some(c))
                .unwrap_or("")
                .parse::<f64>()
                .with_context(|| format!("stations file, line {line}: {what} is not a number"))
        };
        let location = GeoPoint::new(num(lat, "lat")?, num(lon, "lon")?)
            .with_context(|| format!("stations file, line {line}"))?;
        let station = Station::new(
            sid.clone(),
            get(name).unwrap_or(sid.as_str()),
            location,
            get(area).map(str::to_string),
            get(tz).unwrap_or("UTC"),
        )
        .with_context(|| format!("stations file, line {line}"))?;
        out.push(station);
    }
    Ok(out)
}

/// How a column of a wide file maps to a parameter.
#[derive(Debug, Clone, Copy)]
struct WideColumn {
    index: usize,
    parameter: Parameter,
    unit: Unit,
}

/// Wind given as a compass quarter and a speed cumulated while the quarter holds (the UCI
/// Beijing PM2.5 data set's `cbwd` and `Iws`): the hour's speed is the increase over the hour
/// before when the quarter is unchanged, else the cumulated value itself (a new run starts).
#[derive(Debug, Clone, Copy)]
struct CumulatedWind {
    quarter: usize,
    cumulated: usize,
}

impl CumulatedWind {
    fn direction(quarter: &str) -> Result<Option<f64>, String> {
        Ok(Some(match quarter.to_ascii_uppercase().as_str() {
            "NE" => 45.0,
            "SE" => 135.0,
            "SW" => 225.0,
            "NW" => 315.0,
            "CV" => return Ok(None),
            other => {
                return Err(format!(
                    "{other:?} is not a wind quarter (NE, SE, SW, NW, cv)"
                ))
            }
        }))
    }

    /// The hour's (direction, speed in m/s) from this row and the station's previous one, which
    /// it updates.
    fn hourly(
        previous: &mut Option<(i64, String, f64)>,
        ts: i64,
        quarter: &str,
        cumulated: f64,
    ) -> Result<(Option<f64>, f64), String> {
        let direction = Self::direction(quarter)?;
        if cumulated.is_nan() || cumulated < 0.0 {
            return Err(format!("cumulated wind speed {cumulated} is not a speed"));
        }
        let speed = match previous {
            Some((t, q, c))
                if *t + 3600 == ts && q.eq_ignore_ascii_case(quarter) && cumulated >= *c =>
            {
                cumulated - *c
            }
            _ => cumulated,
        };
        *previous = Some((ts, quarter.to_string(), cumulated));
        Ok((direction, speed))
    }
}

enum Layout {
    Wide {
        time: usize,
        site: usize,
        columns: Vec<WideColumn>,
        wind: Option<CumulatedWind>,
    },
    Long {
        station: usize,
        parameter: usize,
        time: usize,
        value: usize,
        unit: Option<usize>,
        flag: Option<usize>,
    },
}

fn detect_layout(headers: &csv::StringRecord, skipped: &mut Vec<String>) -> Result<Layout> {
    let col = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    if let (Some(station), Some(parameter), Some(time), Some(value)) = (
        col(&["station", "site"]),
        col(&["parameter"]),
        col(&["time"]),
        col(&["value"]),
    ) {
        return Ok(Layout::Long {
            station,
            parameter,
            time,
            value,
            unit: col(&["unit"]),
            flag: col(&["flag"]),
        });
    }
    let (Some(time), Some(site)) = (col(&["time"]), col(&["site", "station"])) else {
        bail!(
            "unrecognised CSV header {:?}: expected a wide file (time, site, <parameter>_<unit>…) or a long one (station, parameter, time, value[, unit])",
            headers.iter().collect::<Vec<_>>()
        );
    };
    let wind = match (col(&["cbwd"]), col(&["iws_cum_ms"])) {
        (Some(quarter), Some(cumulated)) => Some(CumulatedWind { quarter, cumulated }),
        _ => None,
    };
    let mut columns = Vec::new();
    for (index, name) in headers.iter().enumerate() {
        if index == time
            || index == site
            || wind.is_some_and(|w| index == w.quarter || index == w.cumulated)
        {
            continue;
        }
        let Some((p, u)) = name.rsplit_once('_') else {
            skipped.push(format!("{name}: no _<unit> suffix"));
            continue;
        };
        match (p.parse::<Parameter>(), u.parse::<Unit>()) {
            (Ok(parameter), Ok(unit)) if parameter.accepted_units().contains(&unit) => columns
                .push(WideColumn {
                    index,
                    parameter,
                    unit,
                }),
            (Ok(parameter), Ok(unit)) => {
                skipped.push(format!("{name}: {parameter} cannot be given in {unit}"))
            }
            (Err(_), _) => skipped.push(format!("{name}: {p:?} is not a known parameter")),
            (_, Err(_)) => skipped.push(format!("{name}: {u:?} is not a known unit")),
        }
    }
    if columns.is_empty() && wind.is_none() {
        bail!(
            "no column of this file maps to a known parameter ({})",
            skipped.join("; ")
        );
    }
    Ok(Layout::Wide {
        time,
        site,
        columns,
        wind,
    })
}

/// A batch handed from the parser to the writer.
struct Batch {
    readings: Vec<Reading>,
    bytes_read: u64,
}

/// What the parser learned besides readings.
#[derive(Default)]
struct ParseSummary {
    rows: u64,
    rejected: u64,
    rejected_examples: Vec<String>,
    unknown_sites: BTreeSet<String>,
    /// (site, parameter) → most common gap between readings (seconds).
    periods: HashMap<(StationId, Parameter), i64>,
}

/// Counts gaps between successive times per series to find each series' sampling period.
#[derive(Default)]
struct PeriodTracker {
    last: HashMap<(StationId, Parameter), i64>,
    gaps: HashMap<(StationId, Parameter), BTreeMap<i64, u32>>,
}

impl PeriodTracker {
    fn see(&mut self, station: &StationId, p: Parameter, ts: i64) {
        let key = (station.clone(), p);
        if let Some(prev) = self.last.insert(key.clone(), ts) {
            if ts > prev {
                *self
                    .gaps
                    .entry(key)
                    .or_default()
                    .entry(ts - prev)
                    .or_default() += 1;
            }
        }
    }

    fn periods(self) -> HashMap<(StationId, Parameter), i64> {
        self.gaps
            .into_iter()
            .filter_map(|(k, gaps)| {
                gaps.into_iter()
                    .max_by_key(|(gap, n)| (*n, -gap))
                    .map(|(gap, _)| (k, gap))
            })
            .collect()
    }
}

struct Counter<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

fn parse_file<R: Read>(
    reader: R,
    accept_sites: &HashSet<String>,
    opts: &ImportOptions,
    now: DateTime<Utc>,
    tx: tokio::sync::mpsc::Sender<Batch>,
) -> Result<(ParseSummary, Vec<String>)> {
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .buffer_capacity(1 << 20)
        .from_reader(Counter {
            inner: reader,
            read: read.clone(),
        });
    let mut skipped = Vec::new();
    let layout = detect_layout(csv.headers()?, &mut skipped)?;
    let mut summary = ParseSummary::default();
    let mut periods = PeriodTracker::default();
    let mut batch: Vec<Reading> = Vec::with_capacity(opts.batch);
    let mut record = csv::StringRecord::new();
    let mut site_ids: HashMap<String, Option<StationId>> = HashMap::new();
    let mut last_wind: HashMap<StationId, Option<(i64, String, f64)>> = HashMap::new();

    let reject = |summary: &mut ParseSummary, line: u64, why: String| {
        summary.rejected += 1;
        if summary.rejected_examples.len() < 10 {
            summary
                .rejected_examples
                .push(format!("line {line}: {why}"));
        }
    };

    while csv.read_record(&mut record).context("reading the CSV")? {
        summary.rows += 1;
        let line = summary.rows + 1;
        let site_of = |site: &str,
                       site_ids: &mut HashMap<String, Option<StationId>>,
                       summary: &mut ParseSummary| {
            site_ids
                .entry(site.to_string())
                .or_insert_with(|| {
                    if accept_sites.contains(site) {
                        StationId::parse(site).ok()
                    } else {
                        summary.unknown_sites.insert(site.to_string());
                        None
                    }
                })
                .clone()
        };
        match &layout {
            Layout::Wide {
                time,
                site,
                columns,
                wind,
            } => {
                let Some(station) = site_of(&record[*site], &mut site_ids, &mut summary) else {
                    continue;
                };
                let t = match parse_time(&record[*time]) {
                    Ok(t) => t + chrono::Duration::seconds(opts.shift_seconds),
                    Err(e) => {
                        reject(&mut summary, line, e);
                        continue;
                    }
                };
                let mut values = Vec::with_capacity(columns.len() + 2);
                for c in columns {
                    let raw = &record[c.index];
                    if raw.is_empty() {
                        continue;
                    }
                    match raw.parse::<f64>() {
                        Ok(v) => values.push((c.parameter, c.unit, v)),
                        Err(_) => reject(&mut summary, line, format!("{raw:?} is not a number")),
                    }
                }
                if let Some(w) = wind {
                    let (quarter, cumulated) = (&record[w.quarter], &record[w.cumulated]);
                    let previous = last_wind.entry(station.clone()).or_default();
                    if quarter.is_empty() || cumulated.is_empty() {
                        *previous = None;
                    } else {
                        let hourly = cumulated
                            .parse::<f64>()
                            .map_err(|_| format!("{cumulated:?} is not a number"))
                            .and_then(|c| {
                                CumulatedWind::hourly(previous, t.timestamp(), quarter, c)
                            });
                        match hourly {
                            Ok((direction, speed)) => {
                                values.push((Parameter::WindSpeed, Unit::MetresPerSecond, speed));
                                if let Some(d) = direction {
                                    values.push((Parameter::WindDirection, Unit::Degrees, d));
                                }
                            }
                            Err(e) => {
                                *previous = None;
                                reject(&mut summary, line, format!("wind: {e}"));
                            }
                        }
                    }
                }
                for (parameter, unit, value) in values {
                    let incoming = IncomingReading {
                        station: station.clone(),
                        parameter,
                        time: t,
                        value,
                        unit: Some(unit),
                        flag: QualityFlag::Valid,
                    };
                    match incoming.validate(now) {
                        Ok(r) => {
                            periods.see(&r.station, r.parameter, r.time.timestamp());
                            batch.push(r);
                        }
                        Err(e) => reject(&mut summary, line, format!("{parameter}: {e}")),
                    }
                }
            }
            Layout::Long {
                station,
                parameter,
                time,
                value,
                unit,
                flag,
            } => {
                let Some(sid) = site_of(&record[*station], &mut site_ids, &mut summary) else {
                    continue;
                };
                let parsed = (|| -> Result<IncomingReading, String> {
                    let parameter: Parameter = record[*parameter].parse().map_err(
                        |e: ecocityhub_domain::parameter::UnknownParameter| e.to_string(),
                    )?;
                    let unit = unit
                        .map(|u| &record[u])
                        .filter(|u| !u.is_empty())
                        .map(|u| u.parse::<Unit>().map_err(|e| e.to_string()))
                        .transpose()?;
                    let flag = match flag.map(|f| &record[f]) {
                        None | Some("") => QualityFlag::Valid,
                        Some(f) => f.parse()?,
                    };
                    let raw = &record[*value];
                    Ok(IncomingReading {
                        station: sid.clone(),
                        parameter,
                        time: parse_time(&record[*time])?
                            + chrono::Duration::seconds(opts.shift_seconds),
                        value: raw
                            .parse()
                            .map_err(|_| format!("value {raw:?} is not a number"))?,
                        unit,
                        flag,
                    })
                })();
                match parsed.and_then(|i| i.validate(now).map_err(|e| e.to_string())) {
                    Ok(r) => {
                        periods.see(&r.station, r.parameter, r.time.timestamp());
                        batch.push(r);
                    }
                    Err(e) => reject(&mut summary, line, e),
                }
            }
        }
        if batch.len() >= opts.batch {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(opts.batch));
            let bytes_read = read.load(std::sync::atomic::Ordering::Relaxed);
            if tx
                .blocking_send(Batch {
                    readings: full,
                    bytes_read,
                })
                .is_err()
            {
                bail!("the writer stopped");
            }
        }
    }
    if !batch.is_empty() {
        let bytes_read = read.load(std::sync::atomic::Ordering::Relaxed);
        let _ = tx.blocking_send(Batch {
            readings: batch,
            bytes_read,
        });
    }
    summary.periods = periods.periods();
    Ok((summary, skipped))
}

/// Imports one CSV stream. `known` are the stations that may be created for new sites.
pub async fn import<R: Read + Send + 'static>(
    store: &dyn Store,
    reader: R,
    total_bytes: Option<u64>,
    known: &[Station],
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let started = Instant::now();
    let existing: HashSet<String> = store
        .stations()
        .await?
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    let known: HashMap<String, Station> = known
        .iter()
        .map(|s| (s.id.to_string(), s.clone()))
        .collect();
    let accept: HashSet<String> = existing
        .iter()
        .cloned()
        .chain(known.keys().cloned())
        .collect();
    let mut created_here: HashSet<String> = HashSet::new();
    let mut known_here: HashSet<String> = HashSet::new();
    let mut report = ImportReport::default();

    let bar = if opts.progress {
        let bar = ProgressBar::new(total_bytes.unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let parse_opts = opts.clone();
    let now = Utc::now();
    let parser =
        tokio::task::spawn_blocking(move || parse_file(reader, &accept, &parse_opts, now, tx));

    while let Some(batch) = rx.recv().await {
        let sites: BTreeSet<&StationId> = batch.readings.iter().map(|r| &r.station).collect();
        for site in sites {
            if existing.contains(site.as_str()) {
                known_here.insert(site.to_string());
            } else if !created_here.contains(site.as_str()) {
                if let Some(station) = known.get(site.as_str()) {
                    let mut station = station.clone();
                    merge(&mut station.metadata, &opts.station_metadata);
                    if store.insert_station_if_missing(&station).await? {
                        report.stations_created.push(site.to_string());
                    } else {
                        // Made meanwhile by another process.
                        known_here.insert(site.to_string());
                    }
                }
                created_here.insert(site.to_string());
            }
        }
        let written = store.insert_readings(&batch.readings).await?;
        report.stored += written.rows;
        report.unchanged += written.unchanged();
        bar.set_position(batch.bytes_read);
        bar.set_message(format!("{} readings", report.stored));
    }
    let (summary, skipped) = parser.await.context("the parser thread failed")??;
    for ((station, parameter), period) in &summary.periods {
        store
            .set_series_period(station, *parameter, *period)
            .await?;
    }
    bar.finish_and_clear();
    report.rows = summary.rows;
    report.stations_known = known_here.len();
    report.rejected = summary.rejected;
    report.rejected_examples = summary.rejected_examples;
    report.unknown_sites = summary.unknown_sites;
    report.skipped_columns = skipped;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn merge(target: &mut serde_json::Value, extra: &serde_json::Value) {
    if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_headers_map_columns_and_report_the_rest() {
        let headers = csv::StringRecord::from(vec![
            "time",
            "site",
            "pm25_ugm3",
            "no2_ppb",
            "temp_f",
            "humid_pct",
            "iws_cum_ms",
            "cbwd",
            "demand_gw",
            "ws_mph",
        ]);
        let mut skipped = Vec::new();
        let Layout::Wide { columns, .. } = detect_layout(&headers, &mut skipped).unwrap() else {
            panic!("wide")
        };
        let mapped: Vec<(Parameter, Unit)> =
            columns.iter().map(|c| (c.parameter, c.unit)).collect();
        assert_eq!(
            mapped,
            vec![
                (Parameter::Pm25, Unit::MicrogramsPerCubicMetre),
                (Parameter::No2, Unit::Ppb),
                (Parameter::Temperature, Unit::Fahrenheit),
                (Parameter::Relativehumidity, Unit::Percent),
                (Parameter::WindSpeed, Unit::MilesPerHour),
            ]
        );
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].starts_with("demand_gw"), "{skipped:?}");
    }

    #[test]
    fn cumulated_wind_becomes_hourly_speed_and_direction() {
        let headers = csv::StringRecord::from(vec!["time", "site", "cbwd", "iws_cum_ms"]);
        let Layout::Wide { wind, columns, .. } = detect_layout(&headers, &mut Vec::new()).unwrap()
        else {
            panic!("wide")
        };
        assert!(columns.is_empty());
        assert!(wind.is_some());
        let mut previous = None;
        let h = 3600;
        let mut hour =
            |ts, quarter, cumulated| CumulatedWind::hourly(&mut previous, ts, quarter, cumulated);
        // A run of north-westerly hours: the speed is the increase.
        assert_eq!(hour(0, "NW", 1.79), Ok((Some(315.0), 1.79)));
        let (_, speed) = hour(h, "NW", 4.92).unwrap();
        assert!((speed - 3.13).abs() < 1e-9);
        // The quarter changes: a new run starts from its own first hour.
        assert_eq!(hour(2 * h, "se", 0.89), Ok((Some(135.0), 0.89)));
        // Calm and variable has a speed but no direction.
        assert_eq!(hour(3 * h, "cv", 0.45), Ok((None, 0.45)));
        // A gap of an hour breaks the run too.
        assert_eq!(hour(5 * h, "cv", 1.34), Ok((None, 1.34)));
        assert!(hour(6 * h, "N", 1.0)
            .unwrap_err()
            .contains("not a wind quarter"));
        assert!(hour(7 * h, "NE", -1.0).is_err());
    }

    #[test]
    fn long_headers_are_recognised_and_junk_is_refused() {
        let mut skipped = Vec::new();
        let h = csv::StringRecord::from(vec!["station", "parameter", "time", "value", "unit"]);
        assert!(matches!(
            detect_layout(&h, &mut skipped).unwrap(),
            Layout::Long { unit: Some(4), .. }
        ));
        let h = csv::StringRecord::from(vec!["a", "b"]);
        assert!(detect_layout(&h, &mut skipped).is_err());
    }

    #[test]
    fn the_shipped_stations_file_parses() {
        let stations = parse_stations(include_str!("../demo/stations.csv")).unwrap();
        assert_eq!(stations.len(), 76);
        assert!(stations
            .iter()
            .any(|s| s.id.as_str() == "marylebone_road" && s.timezone == "Europe/London"));
        assert!(parse_stations("site,lat\nx,1\n").is_err());
        assert!(parse_stations("site,lat,lon\nx,91,0\n").is_err());
    }

    #[test]
    fn the_period_is_the_most_common_gap() {
        let mut t = PeriodTracker::default();
        let s = StationId::parse("s").unwrap();
        for ts in [0, 86_400, 172_800, 4 * 86_400, 5 * 86_400] {
            t.see(&s, Parameter::Pm10, ts);
        }
        assert_eq!(t.periods()[&(s, Parameter::Pm10)], 86_400);
    }
}
