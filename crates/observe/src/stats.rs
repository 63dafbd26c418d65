//! Statistic sets: what a period of one metric series is reduced to (count, sum, minimum,
//! maximum and a log-bucket sketch of the distribution), mergeable across periods and
//! processes, and the CloudWatch statistics computed from them.
//!
//! The sketch keeps, for each sample `v > 0`, a count in bucket `ceil(ln v / ln γ)` with
//! γ = 1.04, so a percentile read from it is within 2 % of the true sample value; samples
//! `<= 0` share one bucket. A minute of request durations needs a few dozen buckets.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const GAMMA: f64 = 1.04;
/// The bucket of samples `<= 0`.
const NON_POSITIVE: i32 = i32::MIN;

/// Count, sum, extremes and distribution of a set of samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatSet {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    buckets: BTreeMap<i32, u64>,
}

fn bucket_of(v: f64) -> i32 {
    if v <= 0.0 || v.is_nan() {
        NON_POSITIVE
    } else {
        (v.ln() / GAMMA.ln()).ceil().clamp(-30_000.0, 30_000.0) as i32
    }
}

/// The middle of a bucket (relative error at most (γ-1)/(γ+1) ≈ 2 %).
fn bucket_value(index: i32) -> f64 {
    2.0 * GAMMA.powi(index) / (GAMMA + 1.0)
}

impl StatSet {
    /// One sample.
    pub fn of(v: f64) -> StatSet {
        let mut s = StatSet::default();
        s.record(v, 1);
        s
    }

    /// Adds `n` samples of value `v`.
    pub fn record(&mut self, v: f64, n: u64) {
        if n == 0 || !v.is_finite() {
            return;
        }
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += n;
        self.sum += v * n as f64;
        *self.buckets.entry(bucket_of(v)).or_default() += n;
    }

    /// Adds another set's samples.
    pub fn merge(&mut self, other: &StatSet) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
        for (k, n) in &other.buckets {
            *self.buckets.entry(*k).or_default() += n;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn average(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), within 2 % of a sample's value, clamped to [min, max].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let v = if *index == NON_POSITIVE {
                    self.min.min(0.0)
                } else {
                    bucket_value(*index)
                };
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The statistic's value; `None` when there are no samples.
    pub fn statistic(&self, statistic: Statistic) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        Some(match statistic {
            Statistic::Average => self.sum / self.count as f64,
            Statistic::Sum => self.sum,
            Statistic::Minimum => self.min,
            Statistic::Maximum => self.max,
            Statistic::SampleCount => self.count as f64,
            Statistic::Percentile(p) => self.quantile(p / 100.0)?,
        })
    }

    /// The distribution as `(representative value, count)` pairs, smallest first (for EMF).
    pub fn distribution(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .map(|(k, n)| {
                let v = if *k == NON_POSITIVE {
                    self.min.min(0.0)
                } else {
                    bucket_value(*k).clamp(self.min, self.max)
                };
                (v, *n)
            })
            .collect()
    }

    /// The sketch as stored: `index:count` pairs separated by commas (`z` is the bucket of
    /// samples `<= 0`).
    pub fn encode_sketch(&self) -> String {
        let mut out = String::new();
        for (k, n) in &self.buckets {
            if !out.is_empty() {
                out.push(',');
            }
            if *k == NON_POSITIVE {
                out.push('z');
            } else {
                out.push_str(&k.to_string());
            }
            out.push(':');
            out.push_str(&n.to_string());
        }
        out
    }

    /// Rebuilds a set from its stored parts.
    pub fn decode(
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        sketch: &str,
    ) -> Result<StatSet, String> {
        let mut buckets = BTreeMap::new();
        for item in sketch.split(',').filter(|s| !s.is_empty()) {
            let (k, n) = item
                .split_once(':')
                .ok_or_else(|| format!("sketch item {item:?} is not index:count"))?;
            let k = if k == "z" {
                NON_POSITIVE
            } else {
                k.parse().map_err(|_| format!("sketch index {k:?}"))?
            };
            let n: u64 = n.parse().map_err(|_| format!("sketch count {n:?}"))?;
            *buckets.entry(k).or_default() += n;
        }
        Ok(StatSet {
            count,
            sum,
            min,
            max,
            buckets,
        })
    }
}

/// A CloudWatch statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    Average,
    Sum,
    Minimum,
    Maximum,
    SampleCount,
    /// `p99` is `Percentile(99.0)`.
    Percentile(f64),
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statistic::Average => f.write_str("avg"),
            Statistic::Sum => f.write_str("sum"),
            Statistic::Minimum => f.write_str("min"),
            Statistic::Maximum => f.write_str("max"),
            Statistic::SampleCount => f.write_str("count"),
            Statistic::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

impl FromStr for Statistic {
    type Err = String;

    /// `avg`, `sum`, `min`, `max`, `count`, `pNN` (as CloudWatch: also `Average`, `Sum`,
    /// `Minimum`, `Maximum`, `SampleCount`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "avg" | "average" | "Average" => Statistic::Average,
            "sum" | "Sum" => Statistic::Sum,
            "min" | "minimum" | "Minimum" => Statistic::Minimum,
            "max" | "maximum" | "Maximum" => Statistic::Maximum,
            "count" | "SampleCount" => Statistic::SampleCount,
            p if p.starts_with('p') => {
                let v: f64 = p[1..]
                    .parse()
                    .map_err(|_| format!("statistic {s:?}: a percentile is p0 … p100, e.g. p99"))?;
                if !(0.0..=100.0).contains(&v) {
                    return Err(format!("statistic {s:?}: a percentile is p0 … p100"));
                }
                Statistic::Percentile(v)
            }
            _ => {
                return Err(format!(
                    "statistic {s:?} is not one of avg, sum, min, max, count, pNN"
                ))
            }
        })
    }
}

impl Serialize for Statistic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Statistic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_set() {
        let mut s = StatSet::default();
        for v in 1..=100 {
            s.record(v as f64, 1);
        }
        assert_eq!(s.statistic(Statistic::SampleCount), Some(100.0));
        assert_eq!(s.statistic(Statistic::Sum), Some(5050.0));
        assert_eq!(s.statistic(Statistic::Average), Some(50.5));
        assert_eq!(s.statistic(Statistic::Minimum), Some(1.0));
        assert_eq!(s.statistic(Statistic::Maximum), Some(100.0));
        let p99 = s.statistic(Statistic::Percentile(99.0)).unwrap();
        assert!((p99 - 99.0).abs() / 99.0 < 0.021, "{p99}");
        let p50 = s.quantile(0.5).unwrap();
        assert!((p50 - 50.0).abs() / 50.0 < 0.021, "{p50}");
        assert_eq!(StatSet::default().statistic(Statistic::Sum), None);
    }

    #[test]
    fn percentiles_stay_within_two_percent_over_a_wide_range() {
        let mut s = StatSet::default();
        let values: Vec<f64> = (0..10_000).map(|i| 1e-4 * 1.0013f64.powi(i)).collect();
        for v in &values {
            s.record(*v, 1);
        }
        for q in [0.01, 0.5, 0.9, 0.99, 0.999] {
            let exact = values[((q * values.len() as f64).ceil() as usize).max(1) - 1];
            let got = s.quantile(q).unwrap();
            assert!(
                (got - exact).abs() / exact <= 0.0201,
                "q{q}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn merging_equals_recording_everything_in_one_set() {
        let mut a = StatSet::default();
        let mut b = StatSet::default();
        let mut all = StatSet::default();
        for i in 0..500 {
            let v = (i % 37) as f64 * 0.01;
            if i % 3 == 0 {
                a.record(v, 1)
            } else {
                b.record(v, 1)
            }
            all.record(v, 1);
        }
        a.merge(&b);
        assert_eq!(a.count, all.count);
        assert!((a.sum - all.sum).abs() < 1e-9);
        assert_eq!((a.min, a.max), (all.min, all.max));
        assert_eq!(a.quantile(0.99), all.quantile(0.99));
        assert_eq!(a.quantile(0.0), Some(0.0), "zeros land in their own bucket");
    }

    #[test]
    fn the_sketch_round_trips_and_bad_text_is_an_error() {
        let mut s = StatSet::default();
        for v in [0.0, -3.0, 0.002, 0.5, 0.5, 17.0] {
            s.record(v, 1);
        }
        let text = s.encode_sketch();
        let back = StatSet::decode(s.count, s.sum, s.min, s.max, &text).unwrap();
        assert_eq!(back, s);
        assert!(StatSet::decode(1, 1.0, 1.0, 1.0, "12").is_err());
        assert!(StatSet::decode(1, 1.0, 1.0, 1.0, "a:1").is_err());
    }

    #[test]
    fn statistics_parse_like_cloudwatch() {
        assert_eq!("p99".parse::<Statistic>(), Ok(Statistic::Percentile(99.0)));
        assert_eq!(
            "p99.9".parse::<Statistic>(),
            Ok(Statistic::Percentile(99.9))
        );
        assert_eq!("Average".parse::<Statistic>(), Ok(Statistic::Average));
        assert_eq!("count".parse::<Statistic>(), Ok(Statistic::SampleCount));
        assert!("p101".parse::<Statistic>().is_err());
        assert!("median"
            .parse::<Statistic>()
            .unwrap_err()
            .contains("not one of"));
        assert_eq!(Statistic::Percentile(99.0).to_string(), "p99");
    }
}
