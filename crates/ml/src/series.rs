//! Hourly series: readings laid on a regular hourly grid, gaps as NaN.

use sha2::{Digest, Sha256};

/// Seconds in an hour.
pub const HOUR: i64 = 3600;

/// A regular hourly series starting at `start` (epoch seconds, a whole hour); missing hours
/// are NaN. Values stamped inside an hour belong to that hour (several are averaged).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HourlySeries {
    start: i64,
    values: Vec<f64>,
}

/// Rounds an epoch time down to its hour.
pub fn floor_hour(ts: i64) -> i64 {
    ts.div_euclid(HOUR) * HOUR
}

impl HourlySeries {
    /// A series from `(epoch seconds, value)` pairs in any order; non-finite values are gaps.
    pub fn from_points(points: impl IntoIterator<Item = (i64, f64)>) -> Self {
        let mut points: Vec<(i64, f64)> = points
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(ts, v)| (floor_hour(ts), v))
            .collect();
        if points.is_empty() {
            return HourlySeries::default();
        }
        points.sort_by_key(|p| p.0);
        let start = points[0].0;
        let end = points[points.len() - 1].0;
        let len = ((end - start) / HOUR + 1) as usize;
        let mut sums = vec![0.0; len];
        let mut counts = vec![0u32; len];
        for (ts, v) in points {
            let i = ((ts - start) / HOUR) as usize;
            sums[i] += v;
            counts[i] += 1;
        }
        let values = sums
            .into_iter()
            .zip(counts)
            .map(|(s, c)| if c == 0 { f64::NAN } else { s / c as f64 })
            .collect();
        HourlySeries { start, values }
    }

    /// A series over a given grid; `values` may contain NaN gaps.
    pub fn from_grid(start: i64, values: Vec<f64>) -> Self {
        HourlySeries {
            start: floor_hour(start),
            values,
        }
    }

    pub fn start(&self) -> i64 {
        self.start
    }

    /// The hour after the last one.
    pub fn end(&self) -> i64 {
        self.start + self.values.len() as i64 * HOUR
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The value of the hour containing `ts`, NaN outside the series or in a gap.
    pub fn at(&self, ts: i64) -> f64 {
        let offset = floor_hour(ts) - self.start;
        if offset < 0 {
            return f64::NAN;
        }
        self.values
            .get((offset / HOUR) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// The number of hours with a value.
    pub fn observed(&self) -> usize {
        self.values.iter().filter(|v| !v.is_nan()).count()
    }

    /// The last hour with a value.
    pub fn last_observed(&self) -> Option<i64> {
        self.values
            .iter()
            .rposition(|v| !v.is_nan())
            .map(|i| self.start + i as i64 * HOUR)
    }

    /// The first hour with a value.
    pub fn first_observed(&self) -> Option<i64> {
        self.values
            .iter()
            .position(|v| !v.is_nan())
            .map(|i| self.start + i as i64 * HOUR)
    }

    /// The part of the series before `ts` (exclusive): what was known at that time.
    pub fn before(&self, ts: i64) -> HourlySeries {
        let keep = ((floor_hour(ts) - self.start).max(0) / HOUR) as usize;
        HourlySeries {
            start: self.start,
            values: self.values[..keep.min(self.values.len())].to_vec(),
        }
    }

    /// Mean and count of the values in `[from, to)` hours.
    pub fn mean_between(&self, from: i64, to: i64) -> Option<f64> {
        let (mut sum, mut n) = (0.0, 0u32);
        let mut ts = floor_hour(from);
        while ts < to {
            let v = self.at(ts);
            if !v.is_nan() {
                sum += v;
                n += 1;
            }
            ts += HOUR;
        }
        (n > 0).then(|| sum / n as f64)
    }

    /// A SHA-256 over the grid and its values: two series with the same fingerprint hold the
    /// same data.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.start.to_le_bytes());
        for v in &self.values {
            hash.update(v.to_bits().to_le_bytes());
        }
        hex::encode(hash.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_land_on_their_hour_and_gaps_stay_nan() {
        let s = HourlySeries::from_points([
            (7200 + 60, 2.0),
            (7200 + 1800, 4.0),
            (3 * 3600 + 5 * 3600, 9.0),
        ]);
        assert_eq!(s.start(), 7200);
        assert_eq!(s.len(), 7);
        assert_eq!(s.at(7200 + 3599), 3.0);
        assert!(s.at(3 * 3600).is_nan());
        assert_eq!(s.at(8 * 3600), 9.0);
        assert!(s.at(0).is_nan());
        assert!(s.at(9 * 3600).is_nan());
        assert_eq!(s.observed(), 2);
        assert_eq!(s.last_observed(), Some(8 * 3600));
    }

    #[test]
    fn before_keeps_only_the_past() {
        let s = HourlySeries::from_grid(0, vec![1.0, 2.0, 3.0, 4.0]);
        let past = s.before(2 * HOUR + 10);
        assert_eq!(past.values(), &[1.0, 2.0]);
        assert!(past.at(2 * HOUR).is_nan());
        assert_eq!(s.before(-HOUR).len(), 0);
        assert_eq!(s.before(100 * HOUR).len(), 4);
    }

    #[test]
    fn fingerprint_changes_with_any_value() {
        let a = HourlySeries::from_grid(0, vec![1.0, f64::NAN, 3.0]);
        let mut b = a.clone();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.values[2] = 3.000001;
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
