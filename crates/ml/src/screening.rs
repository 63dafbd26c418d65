//! Screening of incoming readings with the anomaly checks: each new reading of a pollutant is
//! judged against its series' previous two days and against stations within 50 km at the same
//! time; suspect readings are recorded with the reason and flagged `suspect` in the store —
//! kept and shown, never dropped.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ecocityhub_domain::{Parameter, Reading, StationId};
use ecocityhub_store::ml::AnomalyRecord;
use ecocityhub_store::{Store, StoreError};

use crate::anomaly::{check_neighbours, check_series, Anomaly, AnomalyConfig};

/// Stations this close count as neighbours.
pub const NEIGHBOUR_RADIUS_KM: f64 = 50.0;
/// History read before the first new reading.
const HISTORY_SECONDS: i64 = 48 * 3600;

fn record(
    station: &StationId,
    parameter: Parameter,
    a: Anomaly,
    now: DateTime<Utc>,
) -> AnomalyRecord {
    AnomalyRecord {
        station: station.clone(),
        parameter,
        time: DateTime::from_timestamp(a.ts, 0).unwrap_or(now),
        kind: a.kind.as_str().to_string(),
        value: a.value,
        score: a.score,
        detail: a.detail,
        detected_at: now,
    }
}

async fn values(
    store: &dyn Store,
    station: &StationId,
    parameter: Parameter,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, f64)>, StoreError> {
    Ok(store
        .readings(station, parameter, from, to, 100_000)
        .await?
        .into_iter()
        .filter(|p| p.flag.counts())
        .map(|p| (p.ts, p.value))
        .collect())
}

/// Screens readings that were just stored; returns what was found suspect (and recorded).
pub async fn screen(
    store: &dyn Store,
    readings: &[Reading],
    config: &AnomalyConfig,
) -> Result<Vec<AnomalyRecord>, StoreError> {
    let mut spans: BTreeMap<(StationId, Parameter), (i64, i64)> = BTreeMap::new();
    for r in readings.iter().filter(|r| r.parameter.is_pollutant()) {
        let ts = r.time.timestamp();
        let span = spans
            .entry((r.station.clone(), r.parameter))
            .or_insert((ts, ts));
        span.0 = span.0.min(ts);
        span.1 = span.1.max(ts);
    }
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    let stations = store.stations().await?;
    let series = store.series().await?;
    let now = Utc::now();
    let mut found = Vec::new();
    for ((station, parameter), (first, last)) in spans {
        let points = values(
            store,
            &station,
            parameter,
            first - HISTORY_SECONDS,
            last + 1,
        )
        .await?;
        let first_new = points.partition_point(|p| p.0 < first);
        let by_history = check_series(&points, first_new, config);
        let flagged: Vec<i64> = by_history.iter().map(|a| a.ts).collect();
        found.extend(
            by_history
                .into_iter()
                .map(|a| record(&station, parameter, a, now)),
        );

        let Some(here) = stations.iter().find(|s| s.id == station) else {
            continue;
        };
        let mut at_time: HashMap<i64, Vec<f64>> = HashMap::new();
        for other in stations.iter().filter(|s| {
            s.id != station
                && s.location.distance_km(&here.location) <= NEIGHBOUR_RADIUS_KM
                && series
                    .iter()
                    .any(|x| x.station == s.id && x.parameter == parameter)
        }) {
            for (ts, v) in values(store, &other.id, parameter, first, last + 1).await? {
                at_time.entry(ts).or_default().push(v);
            }
        }
        if at_time.is_empty() {
            continue;
        }
        for &(ts, value) in &points[first_new..] {
            if flagged.contains(&ts) {
                continue;
            }
            if let Some(a) = at_time
                .get(&ts)
                .and_then(|others| check_neighbours(ts, value, others, config))
            {
                found.push(record(&station, parameter, a, now));
            }
        }
    }
    store.record_anomalies(&found).await?;
    Ok(found)
}
