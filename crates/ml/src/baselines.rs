//! The baselines every forecast is judged against: persistence (the last value stays),
//! seasonal naive (the same hour yesterday) and climatology (the usual value for that hour of
//! the week).

use serde::{Deserialize, Serialize};

use crate::series::{HourlySeries, HOUR};

/// Mean value by hour of the week (UTC), with hour-of-day and overall means for hours the
/// training data never saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Climatology {
    hour_of_week: Vec<Option<f64>>,
    hour_of_day: Vec<Option<f64>>,
    overall: Option<f64>,
}

/// 0 = Monday 00:00 UTC … 167 = Sunday 23:00 UTC.
fn hour_of_week(ts: i64) -> usize {
    // 1970-01-01 was a Thursday: shift so that Monday comes first.
    (((ts.div_euclid(HOUR)) + 3 * 24).rem_euclid(168)) as usize
}

impl Climatology {
    /// The climatology of everything in `series` (pass only training data).
    pub fn fit(series: &HourlySeries) -> Climatology {
        let mut week = vec![(0.0, 0u32); 168];
        let mut day = vec![(0.0, 0u32); 24];
        let (mut sum, mut n) = (0.0, 0u32);
        for (i, v) in series.values().iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            let ts = series.start() + i as i64 * HOUR;
            let w = hour_of_week(ts);
            week[w].0 += v;
            week[w].1 += 1;
            day[w % 24].0 += v;
            day[w % 24].1 += 1;
            sum += v;
            n += 1;
        }
        let mean = |(s, n): (f64, u32)| (n > 0).then(|| s / n as f64);
        Climatology {
            hour_of_week: week.into_iter().map(mean).collect(),
            hour_of_day: day.into_iter().map(mean).collect(),
            overall: mean((sum, n)),
        }
    }

    /// The usual value at `ts`; NaN when the training data was empty.
    pub fn predict(&self, ts: i64) -> f64 {
        let w = hour_of_week(ts);
        self.hour_of_week[w]
            .or(self.hour_of_day[w % 24])
            .or(self.overall)
            .unwrap_or(f64::NAN)
    }
}

/// Persistence: the value at the origin, for every horizon.
pub fn persistence(series: &HourlySeries, origin: i64) -> f64 {
    series.at(origin)
}

/// Seasonal naive: the value 24 hours before the target hour (for horizons beyond 24 h, the
/// latest same hour at or before the origin).
pub fn seasonal_naive(series: &HourlySeries, origin: i64, horizon: u32) -> f64 {
    let days_back = (horizon as i64 + 23) / 24;
    series.at(origin + horizon as i64 * HOUR - days_back * 24 * HOUR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monday_midnight_is_hour_zero_of_the_week() {
        // 2024-01-01 00:00 UTC was a Monday.
        assert_eq!(hour_of_week(1_704_067_200), 0);
        assert_eq!(hour_of_week(1_704_067_200 + 167 * HOUR), 167);
        assert_eq!(hour_of_week(1_704_067_200 + 168 * HOUR), 0);
    }

    #[test]
    fn climatology_falls_back_to_hour_of_day_then_overall() {
        let monday = 1_704_067_200;
        // Two weeks of data on Mondays 08:00 only (10 and 20), nothing else.
        let series = HourlySeries::from_points([
            (monday + 8 * HOUR, 10.0),
            (monday + (168 + 8) * HOUR, 20.0),
        ]);
        let c = Climatology::fit(&series);
        assert_eq!(c.predict(monday + 8 * HOUR), 15.0);
        // Tuesday 08:00: no such hour of the week, but hour 8 of the day is known.
        assert_eq!(c.predict(monday + 32 * HOUR), 15.0);
        assert_eq!(c.predict(monday + 9 * HOUR), 15.0);
        assert!(Climatology::fit(&HourlySeries::default())
            .predict(monday)
            .is_nan());
    }

    #[test]
    fn seasonal_naive_reads_the_same_hour_yesterday() {
        let series = HourlySeries::from_grid(0, (0..100).map(|i| i as f64).collect());
        assert_eq!(seasonal_naive(&series, 50 * HOUR, 1), 27.0);
        assert_eq!(seasonal_naive(&series, 50 * HOUR, 24), 50.0);
        assert_eq!(seasonal_naive(&series, 50 * HOUR, 25), 27.0);
        assert_eq!(persistence(&series, 50 * HOUR), 50.0);
    }
}
