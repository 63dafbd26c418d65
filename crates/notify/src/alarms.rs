//! Operator alarms as pure logic: stations that went silent (no reading for N times their
//! sampling period) and bursts of anomaly flags at a station. Each alarm is an episode keyed by
//! its kind and station (`silent:ID`, `anomalies:ID`), open while the condition lasts.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

/// Alarm thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct AlarmConfig {
    /// A station is silent after this many of its sampling periods without a reading.
    pub silent_periods: f64,
    /// The sampling period assumed for series whose period is not known, in seconds.
    pub default_period_s: i64,
    /// A burst: at least this many anomaly flags at one station…
    pub anomaly_burst: usize,
    /// …within this many seconds.
    pub anomaly_window_s: i64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            silent_periods: 3.0,
            default_period_s: 3600,
            anomaly_burst: 5,
            anomaly_window_s: 3600,
        }
    }
}

/// One series as the store knows it: its station, newest reading and sampling period.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSeen {
    pub station: String,
    pub last_ts: Option<i64>,
    pub period_s: Option<i64>,
}

/// A station that is silent.
#[derive(Debug, Clone, PartialEq)]
pub struct Silent {
    pub station: String,
    pub last_ts: i64,
    /// How long it may be silent before it counts (N × its shortest period).
    pub allowed_s: i64,
}

/// Stations whose newest reading (over all their series) is older than the allowance at `now`.
/// Stations that never reported are not silent (they have nothing to miss yet).
pub fn silent_stations(series: &[SeriesSeen], now: i64, config: &AlarmConfig) -> Vec<Silent> {
    let mut stations: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for s in series {
        let Some(last) = s.last_ts else { continue };
        let period = s
            .period_s
            .filter(|p| *p > 0)
            .unwrap_or(config.default_period_s);
        let e = stations.entry(&s.station).or_insert((last, period));
        e.0 = e.0.max(last);
        e.1 = e.1.min(period);
    }
    stations
        .into_iter()
        .filter_map(|(station, (last, period))| {
            let allowed = (period as f64 * config.silent_periods).round() as i64;
            (now - last > allowed).then(|| Silent {
                station: station.to_string(),
                last_ts: last,
                allowed_s: allowed,
            })
        })
        .collect()
}

/// Stations with a burst of anomaly flags: `(station, flag time)` pairs, counted within the
/// window ending at `now`. Returns each bursting station with its count.
pub fn anomaly_bursts(
    flags: &[(String, i64)],
    now: i64,
    config: &AlarmConfig,
) -> Vec<(String, usize)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (station, ts) in flags {
        if *ts <= now && now - *ts < config.anomaly_window_s {
            *counts.entry(station).or_default() += 1;
        }
    }
    let mut out: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(_, n)| *n >= config.anomaly_burst)
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(station: &str, last: Option<i64>, period: Option<i64>) -> SeriesSeen {
        SeriesSeen {
            station: station.into(),
            last_ts: last,
            period_s: period,
        }
    }

    #[test]
    fn a_station_is_silent_after_n_of_its_periods() {
        let c = AlarmConfig::default();
        let series = [
            seen("hourly", Some(0), Some(3600)),
            seen("daily", Some(0), Some(86_400)),
            seen("mixed", Some(0), Some(86_400)),
            seen("mixed", Some(5 * 3600), Some(3600)),
            seen("never", None, None),
        ];
        let at = |now| {
            silent_stations(&series, now, &c)
                .into_iter()
                .map(|s| s.station)
                .collect::<Vec<_>>()
        };
        assert!(
            at(3 * 3600).is_empty(),
            "exactly 3 periods is not yet silent"
        );
        assert_eq!(at(3 * 3600 + 1), ["hourly"]);
        // The mixed station's newest reading (5 h) and its shortest period (1 h) count.
        assert_eq!(at(8 * 3600 + 1), ["hourly", "mixed"]);
        assert_eq!(at(3 * 86_400 + 1), ["daily", "hourly", "mixed"]);
    }

    #[test]
    fn unknown_periods_use_the_default() {
        let c = AlarmConfig {
            default_period_s: 600,
            ..AlarmConfig::default()
        };
        let s = silent_stations(&[seen("x", Some(0), None)], 1801, &c);
        assert_eq!(s[0].allowed_s, 1800);
    }

    #[test]
    fn bursts_count_flags_in_the_window() {
        let c = AlarmConfig {
            anomaly_burst: 3,
            anomaly_window_s: 600,
            ..AlarmConfig::default()
        };
        let flags: Vec<(String, i64)> = [
            ("a", 100),
            ("a", 200),
            ("a", 300),
            ("b", 100),
            ("b", 650),
            ("a", -500),
        ]
        .iter()
        .map(|(s, t)| (s.to_string(), *t))
        .collect();
        assert_eq!(anomaly_bursts(&flags, 650, &c), vec![("a".to_string(), 3)]);
        assert!(
            anomaly_bursts(&flags, 950, &c).is_empty(),
            "the window moved on"
        );
    }
}
