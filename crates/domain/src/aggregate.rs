//! Aggregation of raw readings into hourly or daily values that say what they are: each bucket
//! carries its averaging period and its coverage (readings present of readings expected), and a
//! bucket under [`MIN_COVERAGE`] is marked insufficient instead of passing as a full average.
//!
//! Buckets are aligned to UTC (hours, and days from 00:00 UTC). Readings flagged `invalid` count
//! as missing.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::reading::QualityFlag;

/// The share of expected readings a bucket needs to count as a valid average (the EU and US
/// EPA data-completeness rule of 75 %).
pub const MIN_COVERAGE: f64 = 0.75;

/// The averaging period of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Interval {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
}

impl Interval {
    /// Length of a bucket in seconds; `None` for raw readings.
    pub const fn seconds(self) -> Option<i64> {
        match self {
            Interval::Raw => None,
            Interval::Hour => Some(3600),
            Interval::Day => Some(86_400),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::Raw => "raw",
            Interval::Hour => "1h",
            Interval::Day => "1d",
        }
    }
}

impl FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Interval::Raw),
            "1h" | "hour" => Ok(Interval::Hour),
            "1d" | "day" => Ok(Interval::Day),
            _ => Err(format!("interval {s:?} is not one of raw, 1h, 1d")),
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the readings of a bucket are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AggregateFn {
    #[default]
    Avg,
    Min,
    Max,
}

impl AggregateFn {
    pub const fn as_str(self) -> &'static str {
        match self {
            AggregateFn::Avg => "avg",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
        }
    }
}

impl FromStr for AggregateFn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "avg" | "mean" => Ok(AggregateFn::Avg),
            "min" => Ok(AggregateFn::Min),
            "max" => Ok(AggregateFn::Max),
            _ => Err(format!("agg {s:?} is not one of avg, min, max")),
        }
    }
}

/// One aggregated value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bucket {
    /// Start of the averaging period (inclusive).
    pub start: DateTime<Utc>,
    /// End of the averaging period (exclusive).
    pub end: DateTime<Utc>,
    /// The aggregate of the valid readings; `null` when there were none.
    pub value: Option<f64>,
    /// Readings that went into `value`.
    pub count: u32,
    /// Readings the period should hold at the series' sampling step.
    pub expected: u32,
    /// `count / expected`, at most 1.
    pub coverage: f64,
    /// `coverage >= 0.75`: the value is a valid average for its period.
    pub sufficient: bool,
}

/// The aggregate of a whole series: the buckets plus the parameters that produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub interval: Interval,
    pub function: AggregateFn,
    pub step_seconds: i64,
    pub buckets: Vec<Bucket>,
}

/// The typical spacing of a series: the median of the positive gaps between successive
/// timestamps (seconds). Falls back to one hour when there are fewer than two readings.
pub fn estimate_step(timestamps: &[i64]) -> i64 {
    let mut gaps: Vec<i64> = timestamps
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0)
        .collect();
    if gaps.is_empty() {
        return 3600;
    }
    let mid = gaps.len() / 2;
    *gaps.select_nth_unstable(mid).1
}

/// Folds time-ordered readings into buckets, one at a time, so a long series can stream.
#[derive(Debug)]
pub struct Aggregator {
    bucket_seconds: i64,
    function: AggregateFn,
    expected: u32,
    current: Option<(i64, Acc)>,
}

#[derive(Debug, Default)]
struct Acc {
    sum: f64,
    min: f64,
    max: f64,
    count: u32,
}

impl Aggregator {
    /// `step_seconds` is the series' sampling step (see [`estimate_step`]).
    pub fn new(interval: Interval, function: AggregateFn, step_seconds: i64) -> Self {
        let bucket_seconds = interval.seconds().unwrap_or(1);
        let expected = (bucket_seconds / step_seconds.max(1)).max(1) as u32;
        Aggregator {
            bucket_seconds,
            function,
            expected,
            current: None,
        }
    }

    /// Start (epoch seconds) of the bucket holding `ts`.
    pub fn bucket_start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.bucket_seconds) * self.bucket_seconds
    }

    /// Adds a reading (in time order). Returns the previous bucket once a reading falls past it.
    pub fn push(&mut self, ts: i64, value: f64, flag: QualityFlag) -> Option<Bucket> {
        let start = self.bucket_start(ts);
        let mut done = None;
        match &mut self.current {
            Some((s, _)) if *s == start => {}
            _ => {
                done = self.finish();
                self.current = Some((
                    start,
                    Acc {
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        ..Acc::default()
                    },
                ));
            }
        }
        if flag.counts() {
            let (_, acc) = self.current.as_mut().expect("just set");
            acc.sum += value;
            acc.min = acc.min.min(value);
            acc.max = acc.max.max(value);
            acc.count += 1;
        }
        done
    }

    /// Closes the bucket in progress.
    pub fn finish(&mut self) -> Option<Bucket> {
        let (start, acc) = self.current.take()?;
        let value = (acc.count > 0).then(|| match self.function {
            AggregateFn::Avg => acc.sum / acc.count as f64,
            AggregateFn::Min => acc.min,
            AggregateFn::Max => acc.max,
        });
        let coverage = (acc.count as f64 / self.expected as f64).min(1.0);
        Some(Bucket {
            start: DateTime::from_timestamp(start, 0).expect("valid timestamp"),
            end: DateTime::from_timestamp(start + self.bucket_seconds, 0).expect("valid timestamp"),
            value,
            count: acc.count,
            expected: self.expected,
            coverage,
            sufficient: coverage >= MIN_COVERAGE,
        })
    }
}

/// Aggregates a whole time-ordered series at once.
pub fn aggregate(
    readings: &[(i64, f64, QualityFlag)],
    interval: Interval,
    function: AggregateFn,
    step_seconds: i64,
) -> Aggregate {
    let mut agg = Aggregator::new(interval, function, step_seconds);
    let mut buckets: Vec<Bucket> = readings
        .iter()
        .filter_map(|&(t, v, f)| agg.push(t, v, f))
        .collect();
    buckets.extend(agg.finish());
    Aggregate {
        interval,
        function,
        step_seconds,
        buckets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;

    fn hourly(values: &[(i64, f64)]) -> Vec<(i64, f64, QualityFlag)> {
        values
            .iter()
            .map(|&(t, v)| (t, v, QualityFlag::Valid))
            .collect()
    }

    #[test]
    fn step_is_the_median_gap() {
        assert_eq!(estimate_step(&[0, 60, 120, 180, 3600]), 60);
        assert_eq!(estimate_step(&[0]), 3600);
        assert_eq!(estimate_step(&[0, 86_400, 172_800]), 86_400);
    }

    #[test]
    fn daily_average_of_hourly_data_reports_its_coverage() {
        // 18 of 24 hours present: exactly 75 % → sufficient.
        let day: Vec<(i64, f64)> = (0..18).map(|h| (h * H, h as f64)).collect();
        let a = aggregate(&hourly(&day), Interval::Day, AggregateFn::Avg, H);
        assert_eq!(a.buckets.len(), 1);
        let b = &a.buckets[0];
        assert_eq!((b.count, b.expected), (18, 24));
        assert_eq!(b.coverage, 0.75);
        assert!(b.sufficient);
        assert_eq!(b.value, Some(8.5));
        // 17 of 24 → marked, not passed off as a daily mean.
        let a = aggregate(&hourly(&day[..17]), Interval::Day, AggregateFn::Avg, H);
        assert!(!a.buckets[0].sufficient);
    }

    #[test]
    fn buckets_split_on_utc_boundaries_and_min_max_work() {
        let data = hourly(&[(0, 5.0), (1800, 7.0), (H, 1.0), (H + 60, 3.0)]);
        let a = aggregate(&data, Interval::Hour, AggregateFn::Max, 1800);
        assert_eq!(a.buckets.len(), 2);
        assert_eq!(a.buckets[0].value, Some(7.0));
        assert_eq!(a.buckets[0].expected, 2);
        assert_eq!(a.buckets[1].value, Some(3.0));
        let a = aggregate(&data, Interval::Hour, AggregateFn::Min, 1800);
        assert_eq!(a.buckets[1].value, Some(1.0));
    }

    #[test]
    fn suspect_and_invalid_readings_count_as_missing() {
        let data = vec![
            (0, 100.0, QualityFlag::Invalid),
            (900, 480.0, QualityFlag::Suspect),
            (1800, 4.0, QualityFlag::Valid),
        ];
        let a = aggregate(&data, Interval::Hour, AggregateFn::Avg, 1800);
        assert_eq!(a.buckets[0].value, Some(4.0));
        assert_eq!(a.buckets[0].count, 1);
        assert!(!a.buckets[0].sufficient);
        let only_invalid = vec![(0, 100.0, QualityFlag::Invalid)];
        let a = aggregate(&only_invalid, Interval::Hour, AggregateFn::Avg, H);
        assert_eq!(a.buckets[0].value, None);
        assert_eq!(a.buckets[0].coverage, 0.0);
    }

    #[test]
    fn negative_timestamps_align_down() {
        let agg = Aggregator::new(Interval::Day, AggregateFn::Avg, H);
        assert_eq!(agg.bucket_start(-1), -86_400);
    }
}
