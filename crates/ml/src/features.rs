//! Features of one forecast: what is known at the forecast origin (the last observed hour)
//! about the series, its own weather and the calendar of the hour being forecast.
//!
//! Every value comes from hours at or before the origin, except the calendar of the target
//! hour, which is known in advance. Unknown values are NaN; the booster learns a branch for
//! them. Levels other than the origin's own value are given relative to it, as differences of
//! log(1 + value): the model predicts the change from the origin, and "yesterday at this hour
//! was 30 % higher" says more about that change than two absolute numbers.

use chrono::{DateTime, Datelike, Timelike};
use ecocityhub_domain::Parameter;

use crate::baselines::Climatology;
use crate::series::{HourlySeries, HOUR};

/// The weather measured at the station, when it measures any.
#[derive(Debug, Clone, Default)]
pub struct Weather {
    pub temperature: Option<HourlySeries>,
    pub relative_humidity: Option<HourlySeries>,
    pub dew_point: Option<HourlySeries>,
    pub wind_speed: Option<HourlySeries>,
    pub wind_direction: Option<HourlySeries>,
    pub pressure: Option<HourlySeries>,
}

impl Weather {
    /// Which weather series are present, by name.
    pub fn present(&self) -> Vec<&'static str> {
        [
            ("temperature", &self.temperature),
            ("relativehumidity", &self.relative_humidity),
            ("dewpoint", &self.dew_point),
            ("wind_speed", &self.wind_speed),
            ("wind_direction", &self.wind_direction),
            ("pressure", &self.pressure),
        ]
        .into_iter()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| s.observed() > 0))
        .map(|(name, _)| name)
        .collect()
    }

    /// Where the series of a weather parameter goes; `None` for a parameter that is not weather.
    pub fn slot_mut(&mut self, parameter: Parameter) -> Option<&mut Option<HourlySeries>> {
        Some(match parameter {
            Parameter::Temperature => &mut self.temperature,
            Parameter::Relativehumidity => &mut self.relative_humidity,
            Parameter::Dewpoint => &mut self.dew_point,
            Parameter::WindSpeed => &mut self.wind_speed,
            Parameter::WindDirection => &mut self.wind_direction,
            Parameter::Pressure => &mut self.pressure,
            _ => return None,
        })
    }

    /// The weather known before `ts` only.
    pub fn before(&self, ts: i64) -> Weather {
        let cut = |s: &Option<HourlySeries>| s.as_ref().map(|s| s.before(ts));
        Weather {
            temperature: cut(&self.temperature),
            relative_humidity: cut(&self.relative_humidity),
            dew_point: cut(&self.dew_point),
            wind_speed: cut(&self.wind_speed),
            wind_direction: cut(&self.wind_direction),
            pressure: cut(&self.pressure),
        }
    }
}

fn at(series: &Option<HourlySeries>, ts: i64) -> f64 {
    series.as_ref().map_or(f64::NAN, |s| s.at(ts))
}

/// The names of the features, in the order of a feature row.
pub const FEATURE_NAMES: [&str; 33] = [
    "horizon_h",
    "value_at_origin",
    "lag_1h_vs_origin",
    "lag_2h_vs_origin",
    "lag_3h_vs_origin",
    "lag_6h_vs_origin",
    "lag_12h_vs_origin",
    "lag_23h_vs_origin",
    "mean_6h_vs_origin",
    "mean_24h_vs_origin",
    "mean_168h_vs_origin",
    "relative_std_24h",
    "min_24h_vs_origin",
    "max_24h_vs_origin",
    "same_hour_yesterday_vs_origin",
    "same_hour_2_days_ago_vs_origin",
    "same_hour_last_week_vs_origin",
    "climatology_vs_origin",
    "target_hour_utc",
    "target_weekday",
    "climatology_vs_mean_168h",
    "origin_hour_utc",
    "temperature",
    "relative_humidity",
    "dew_point",
    "wind_speed",
    "wind_from_sin",
    "wind_from_cos",
    "pressure",
    "pressure_change_3h",
    "wind_speed_mean_6h",
    "same_hour_mean_7_days_vs_origin",
    "same_hour_of_week_mean_4_weeks_vs_origin",
];

/// Number of features in a row.
pub const N_FEATURES: usize = FEATURE_NAMES.len();

/// The part of a feature row shared by every horizon of one origin.
#[derive(Debug, Clone)]
pub struct OriginFeatures {
    origin: i64,
    values: [f64; N_FEATURES],
}

struct Window {
    sum: f64,
    sum_sq: f64,
    n: u32,
    min: f64,
    max: f64,
}

fn window(series: &HourlySeries, origin: i64, hours: i64) -> Window {
    let mut w = Window {
        sum: 0.0,
        sum_sq: 0.0,
        n: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };
    for k in 0..hours {
        let v = series.at(origin - k * HOUR);
        if !v.is_nan() {
            w.sum += v;
            w.sum_sq += v * v;
            w.n += 1;
            w.min = w.min.min(v);
            w.max = w.max.max(v);
        }
    }
    w
}

impl Window {
    fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.sum / self.n as f64
        }
    }
    fn std(&self) -> f64 {
        if self.n < 2 {
            return f64::NAN;
        }
        let mean = self.mean();
        (self.sum_sq / self.n as f64 - mean * mean).max(0.0).sqrt()
    }
    fn min(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.min
        }
    }
    fn max(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.max
        }
    }
}

impl OriginFeatures {
    /// Everything known at `origin` (an hour); reads nothing after it.
    pub fn at(series: &HourlySeries, weather: &Weather, origin: i64) -> OriginFeatures {
        let y = |hours_back: i64| series.at(origin - hours_back * HOUR);
        let w6 = window(series, origin, 6);
        let w24 = window(series, origin, 24);
        let w168 = window(series, origin, 168);
        let mut values = [f64::NAN; N_FEATURES];
        let anchor = log1p(y(0));
        let rel = |v: f64| log1p(v) - anchor;
        values[1] = y(0);
        values[2] = rel(y(1));
        values[3] = rel(y(2));
        values[4] = rel(y(3));
        values[5] = rel(y(6));
        values[6] = rel(y(12));
        values[7] = rel(y(23));
        values[8] = rel(w6.mean());
        values[9] = rel(w24.mean());
        values[10] = rel(w168.mean());
        values[11] = w24.std() / (w24.mean() + 1.0);
        values[12] = rel(w24.min());
        values[13] = rel(w24.max());
        values[21] = hour_of(origin) as f64;
        values[22] = at(&weather.temperature, origin);
        values[23] = at(&weather.relative_humidity, origin);
        values[24] = at(&weather.dew_point, origin);
        values[25] = at(&weather.wind_speed, origin);
        let direction = at(&weather.wind_direction, origin).to_radians();
        values[26] = direction.sin();
        values[27] = direction.cos();
        let pressure = at(&weather.pressure, origin);
        values[28] = pressure;
        values[29] = pressure - at(&weather.pressure, origin - 3 * HOUR);
        values[30] = weather
            .wind_speed
            .as_ref()
            .map_or(f64::NAN, |s| window(s, origin, 6).mean());
        OriginFeatures { origin, values }
    }

    pub fn origin(&self) -> i64 {
        self.origin
    }

    /// The value observed at the origin (what persistence forecasts).
    pub fn value_at_origin(&self) -> f64 {
        self.values[1]
    }

    /// The full row for `horizon` hours ahead.
    pub fn row(
        &self,
        series: &HourlySeries,
        climatology: &Climatology,
        horizon: u32,
    ) -> [f64; N_FEATURES] {
        let target = self.origin + horizon as i64 * HOUR;
        let mut row = self.values;
        row[0] = horizon as f64;
        // Same hour on earlier days: always at or before the origin for horizons up to 24 h.
        let back = |hours: i64| {
            let ts = target - hours * HOUR;
            if ts <= self.origin {
                series.at(ts)
            } else {
                f64::NAN
            }
        };
        let anchor = log1p(self.values[1]);
        let rel = |v: f64| log1p(v) - anchor;
        let usual = climatology.predict(target);
        row[14] = rel(back(24));
        row[15] = rel(back(48));
        row[16] = rel(back(168));
        row[17] = rel(usual);
        let time = DateTime::from_timestamp(target, 0).unwrap_or_default();
        row[18] = time.hour() as f64;
        row[19] = time.weekday().num_days_from_monday() as f64;
        // How the usual level of the target hour compares with the past week's level.
        row[20] = log1p(usual) - (self.values[10] + anchor);
        // The recent daily and weekly profile: levels shift over the years, these follow.
        let mean_back = |step: i64, n: i64| {
            let (mut sum, mut count) = (0.0, 0);
            for k in 1..=n {
                let v = back(step * k);
                if !v.is_nan() {
                    sum += v;
                    count += 1;
                }
            }
            if count == 0 {
                f64::NAN
            } else {
                sum / count as f64
            }
        };
        row[31] = rel(mean_back(24, 7));
        row[32] = rel(mean_back(168, 4));
        row
    }
}

/// log(1 + v) for a concentration; a gap (NaN) stays a gap.
pub(crate) fn log1p(v: f64) -> f64 {
    if v.is_nan() {
        f64::NAN
    } else {
        v.max(0.0).ln_1p()
    }
}

fn hour_of(ts: i64) -> u32 {
    (ts.rem_euclid(86_400) / HOUR) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_never_read_after_the_origin() {
        // A series whose future is poisoned: any feature reading it would be 1e9.
        let origin = 1_000 * HOUR;
        let values: Vec<f64> = (0..1_100)
            .map(|i| if i > 1_000 { 1e9 } else { (i % 24) as f64 })
            .collect();
        let series = HourlySeries::from_grid(0, values);
        let climatology = Climatology::fit(&series.before(origin + HOUR));
        let features = OriginFeatures::at(&series, &Weather::default(), origin);
        for horizon in 1..=24 {
            let row = features.row(&series, &climatology, horizon);
            for (name, v) in FEATURE_NAMES.iter().zip(row) {
                assert!(
                    v.is_nan() || v < 1e6,
                    "{name} at horizon {horizon} read the future: {v}"
                );
            }
            let yesterday = ((1_000 + horizon as i64 - 24) % 24) as f64;
            assert_eq!(row[14], log1p(yesterday) - log1p((1_000 % 24) as f64));
        }
    }

    #[test]
    fn rolling_statistics_skip_gaps() {
        let mut values = vec![2.0; 48];
        values[47] = 4.0;
        values[46] = f64::NAN;
        let series = HourlySeries::from_grid(0, values);
        let f = OriginFeatures::at(&series, &Weather::default(), 47 * HOUR);
        assert_eq!(f.values[1], 4.0);
        assert!(f.values[2].is_nan());
        assert_eq!(f.values[12], log1p(2.0) - log1p(4.0));
        assert_eq!(f.values[13], 0.0);
        let mean = (22.0 * 2.0 + 4.0) / 23.0;
        assert!((f.values[9] - (log1p(mean) - log1p(4.0))).abs() < 1e-12);
    }
}
