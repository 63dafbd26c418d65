//! Rollups: the aggregator's samples, once a minute, become rows of the store at every
//! configured resolution (by default a minute kept two days, ten minutes kept ten days, an hour
//! kept 90 days), so that charts and alarms survive a restart. Each process writes rows of its
//! own (`source`); queries add the sources up.
//!
//! A minute the writer flushed carries a heartbeat row: a period with no heartbeat was not
//! observed (the process was down), which the alarms tell apart from a period without data.
//! A counter without samples in an observed period counts 0.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ecocityhub_store::observe::{ObserveStore, RollupRow};
use serde::{Deserialize, Serialize};

use crate::names::{self, Kind, HEARTBEAT};
use crate::recorder::{Drained, SeriesKey, Telemetry};
use crate::stats::{StatSet, Statistic};
use crate::{ObserveError, Result};

/// One stored resolution and how long its rows are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub seconds: i64,
    pub keep_seconds: i64,
}

/// Which rollups are written and kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollupConfig {
    pub enabled: bool,
    /// Finest first; each a multiple of 60 and of the one before.
    pub resolutions: Vec<Resolution>,
}

impl Default for RollupConfig {
    fn default() -> Self {
        const DAY: i64 = 86_400;
        RollupConfig {
            enabled: true,
            resolutions: vec![
                Resolution {
                    seconds: 60,
                    keep_seconds: 2 * DAY,
                },
                Resolution {
                    seconds: 600,
                    keep_seconds: 10 * DAY,
                },
                Resolution {
                    seconds: 3600,
                    keep_seconds: 90 * DAY,
                },
            ],
        }
    }
}

impl RollupConfig {
    /// Checks the resolutions make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(ObserveError::Config(format!("rollup resolutions: {why}")));
        if self.resolutions.is_empty() {
            return bad("none given".into());
        }
        let mut previous = 60;
        for (i, r) in self.resolutions.iter().enumerate() {
            if r.seconds % previous != 0 || (i == 0 && r.seconds != 60) {
                return bad(format!(
                    "{} s must be a multiple of {previous} s (the finest must be 60 s)",
                    r.seconds
                ));
            }
            if r.keep_seconds < r.seconds {
                return bad(format!(
                    "{} s rows must be kept at least one period",
                    r.seconds
                ));
            }
            previous = r.seconds;
        }
        Ok(())
    }
}

/// Start of the period of length `len` containing `ts`.
pub fn align(ts: i64, len: i64) -> i64 {
    ts - ts.rem_euclid(len)
}

/// Writes the aggregator's samples into the store.
pub struct RollupWriter {
    store: Arc<dyn ObserveStore>,
    telemetry: Telemetry,
    config: RollupConfig,
    source: String,
    /// Per (series, resolution): the period being filled and its samples so far.
    current: HashMap<(SeriesKey, i64), (i64, StatSet)>,
}

impl RollupWriter {
    pub fn new(store: Arc<dyn ObserveStore>, telemetry: Telemetry, config: RollupConfig) -> Self {
        let source = hex::encode(rand::random::<[u8; 8]>());
        RollupWriter {
            store,
            telemetry,
            config,
            source,
            current: HashMap::new(),
        }
    }

    /// This process's name in the rows it writes.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Drains the aggregator into the minute starting at `minute` (epoch seconds) and the
    /// coarser periods that contain it, with this minute's heartbeat. Returns the rows written.
    pub async fn flush(&mut self, minute: i64) -> Result<usize> {
        self.telemetry.sample_process();
        let drained = self.telemetry.aggregator().drain();
        self.write(minute, drained).await
    }

    /// Writes `series` as the samples of the minute starting at `minute`, with its heartbeat.
    pub async fn write(&mut self, minute: i64, mut series: Vec<Drained>) -> Result<usize> {
        let minute = align(minute, 60);
        series.push(Drained {
            key: SeriesKey::new(HEARTBEAT.name, &[]),
            kind: Kind::Counter,
            stats: StatSet::of(1.0),
        });
        let mut rows = Vec::new();
        for r in &self.config.resolutions {
            let period = align(minute, r.seconds);
            for d in &series {
                let slot = self
                    .current
                    .entry((d.key.clone(), r.seconds))
                    .or_insert_with(|| (period, StatSet::default()));
                if slot.0 != period {
                    *slot = (period, StatSet::default());
                }
                slot.1.merge(&d.stats);
                rows.push(row(&self.source, &d.key, r.seconds, period, &slot.1));
            }
        }
        self.store.put_rollups(&rows).await?;
        // Forget periods that are over: their rows are written.
        self.current
            .retain(|(_, res), (start, _)| *start == align(minute, *res));
        Ok(rows.len())
    }
}

fn row(source: &str, key: &SeriesKey, resolution: i64, ts: i64, s: &StatSet) -> RollupRow {
    RollupRow {
        metric: key.name.clone(),
        labels: key.labels.clone(),
        resolution,
        ts,
        source: source.to_string(),
        count: s.count as i64,
        sum: s.sum,
        min: s.min,
        max: s.max,
        sketch: s.encode_sketch(),
    }
}

impl RollupWriter {
    /// Deletes rows older than each resolution keeps them.
    pub async fn expire(&self, now: i64) -> Result<u64> {
        let mut n = 0;
        for r in &self.config.resolutions {
            n += self
                .store
                .expire_rollups(r.seconds, now - r.keep_seconds)
                .await?;
        }
        Ok(n)
    }
}

/// Which series of a metric: its name and the labels they must have (others are added up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricQuery {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
}

impl MetricQuery {
    pub fn new(name: &str) -> MetricQuery {
        MetricQuery {
            name: name.to_string(),
            dimensions: BTreeMap::new(),
        }
    }

    pub fn with(mut self, label: &str, value: &str) -> MetricQuery {
        self.dimensions.insert(label.to_string(), value.to_string());
        self
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.dimensions
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }

    fn is_counter(&self) -> bool {
        names::find(&self.name).is_some_and(|m| m.kind == Kind::Counter)
    }
}

/// One period of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodStats {
    pub start: i64,
    pub stats: StatSet,
    /// Whether any process was recording during the period.
    pub observed: bool,
}

impl PeriodStats {
    /// The statistic's value; a counter's sum and count are 0 in an observed period without
    /// samples.
    pub fn value(&self, statistic: Statistic, counter: bool) -> Option<f64> {
        match self.stats.statistic(statistic) {
            Some(v) => Some(v),
            None if counter && self.observed => match statistic {
                Statistic::Sum | Statistic::SampleCount => Some(0.0),
                _ => None,
            },
            None => None,
        }
    }
}

/// A point of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Datapoint {
    /// Start of the period, epoch seconds.
    pub ts: i64,
    pub value: Option<f64>,
}

/// The dashboard's ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The last hour by minute.
    Hour,
    /// The last day by 10 minutes.
    Day,
    /// The last week by hour.
    Week,
}

impl View {
    /// `(from, to, step)` ending with the period that contains `now`.
    pub fn range(self, now: i64) -> (i64, i64, i64) {
        let (span, step) = match self {
            View::Hour => (3600, 60),
            View::Day => (86_400, 600),
            View::Week => (7 * 86_400, 3600),
        };
        let to = align(now, step) + step;
        (to - span, to, step)
    }
}

/// Reads rollups back as periods and series.
#[derive(Clone)]
pub struct Rollups {
    store: Arc<dyn ObserveStore>,
    config: RollupConfig,
}

impl Rollups {
    pub fn new(store: Arc<dyn ObserveStore>, config: RollupConfig) -> Rollups {
        Rollups { store, config }
    }

    /// The coarsest stored resolution that divides `period` and still holds rows from `from`.
    pub fn resolution_for(&self, period: i64, from: i64, now: i64) -> i64 {
        let fitting = |r: &&Resolution| period % r.seconds == 0;
        self.config
            .resolutions
            .iter()
            .rev()
            .filter(fitting)
            .find(|r| from >= now - r.keep_seconds)
            .or_else(|| self.config.resolutions.iter().rev().find(fitting))
            .map_or(60, |r| r.seconds)
    }

    /// Periods of length `period` from `align(from)` to `to`, the matching series added up.
    pub async fn periods(
        &self,
        query: &MetricQuery,
        from: i64,
        to: i64,
        period: i64,
        now: i64,
    ) -> Result<Vec<PeriodStats>> {
        let mut grouped = self.periods_by(query, None, from, to, period, now).await?;
        Ok(grouped
            .remove("")
            .unwrap_or_else(|| empty_periods(from, to, period)))
    }

    /// Like [`Rollups::periods`], one list per value of the label `group_by` (all together
    /// under `""` when `None`).
    pub async fn periods_by(
        &self,
        query: &MetricQuery,
        group_by: Option<&str>,
        from: i64,
        to: i64,
        period: i64,
        now: i64,
    ) -> Result<BTreeMap<String, Vec<PeriodStats>>> {
        if period <= 0 || period % 60 != 0 {
            return Err(ObserveError::Config(format!(
                "a period is a positive multiple of 60 seconds, not {period}"
            )));
        }
        let from = align(from, period);
        let resolution = self.resolution_for(period, from, now);
        let observed = self.observed(from, to, period, resolution).await?;
        let rows = self
            .store
            .rollups(&query.name, resolution, from, to)
            .await?;
        let mut groups: BTreeMap<String, Vec<PeriodStats>> = BTreeMap::new();
        if group_by.is_none() {
            groups.insert(String::new(), empty_periods(from, to, period));
        }
        for row in rows {
            let labels: BTreeMap<String, String> =
                serde_json::from_str(&row.labels).unwrap_or_default();
            if !query.matches(&labels) {
                continue;
            }
            let group = match group_by {
                Some(label) => labels.get(label).cloned().unwrap_or_default(),
                None => String::new(),
            };
            let stats = StatSet::decode(
                row.count.max(0) as u64,
                row.sum,
                row.min,
                row.max,
                &row.sketch,
            )
            .map_err(|e| ObserveError::Store(ecocityhub_store::StoreError::Corrupt(e)))?;
            let periods = groups
                .entry(group)
                .or_insert_with(|| empty_periods(from, to, period));
            let index = ((align(row.ts, period) - from) / period) as usize;
            if let Some(p) = periods.get_mut(index) {
                p.stats.merge(&stats);
            }
        }
        for periods in groups.values_mut() {
            for (p, seen) in periods.iter_mut().zip(&observed) {
                p.observed = *seen;
            }
        }
        Ok(groups)
    }

    async fn observed(
        &self,
        from: i64,
        to: i64,
        period: i64,
        resolution: i64,
    ) -> Result<Vec<bool>> {
        let mut seen = vec![false; empty_periods(from, to, period).len()];
        for row in self
            .store
            .rollups(HEARTBEAT.name, resolution, from, to)
            .await?
        {
            if let Some(s) = seen.get_mut(((align(row.ts, period) - from) / period) as usize) {
                *s |= row.count > 0;
            }
        }
        Ok(seen)
    }

    /// One statistic per period.
    pub async fn series(
        &self,
        query: &MetricQuery,
        statistic: Statistic,
        from: i64,
        to: i64,
        step: i64,
        now: i64,
    ) -> Result<Vec<Datapoint>> {
        let counter = query.is_counter();
        Ok(self
            .periods(query, from, to, step, now)
            .await?
            .iter()
            .map(|p| Datapoint {
                ts: p.start,
                value: p.value(statistic, counter),
            })
            .collect())
    }

    /// One series per value of `group_by` (per route, per station…).
    #[allow(clippy::too_many_arguments)]
    pub async fn series_by(
        &self,
        query: &MetricQuery,
        group_by: &str,
        statistic: Statistic,
        from: i64,
        to: i64,
        step: i64,
        now: i64,
    ) -> Result<BTreeMap<String, Vec<Datapoint>>> {
        let counter = query.is_counter();
        let groups = self
            .periods_by(query, Some(group_by), from, to, step, now)
            .await?;
        Ok(groups
            .into_iter()
            .map(|(g, periods)| {
                let points = periods
                    .iter()
                    .map(|p| Datapoint {
                        ts: p.start,
                        value: p.value(statistic, counter),
                    })
                    .collect();
                (g, points)
            })
            .collect())
    }

    /// A dashboard view of one statistic.
    pub async fn view(
        &self,
        query: &MetricQuery,
        statistic: Statistic,
        view: View,
        now: i64,
    ) -> Result<Vec<Datapoint>> {
        let (from, to, step) = view.range(now);
        self.series(query, statistic, from, to, step, now).await
    }

    /// The series with minute rows since `from`: metric names and their labels.
    pub async fn series_names(&self, from: i64) -> Result<Vec<(String, BTreeMap<String, String>)>> {
        let finest = self.config.resolutions.first().map_or(60, |r| r.seconds);
        Ok(self
            .store
            .rollup_series(finest, from)
            .await?
            .into_iter()
            .map(|(m, l)| (m, serde_json::from_str(&l).unwrap_or_default()))
            .collect())
    }
}

fn empty_periods(from: i64, to: i64, period: i64) -> Vec<PeriodStats> {
    let from = align(from, period);
    (0..)
        .map(|i| from + i * period)
        .take_while(|start| *start < to)
        .map(|start| PeriodStats {
            start,
            stats: StatSet::default(),
            observed: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_align_to_their_length() {
        assert_eq!(align(3_661, 60), 3_660);
        assert_eq!(align(3_661, 3600), 3_600);
        assert_eq!(align(-1, 60), -60);
        let (from, to, step) = View::Day.range(100_000);
        assert_eq!((to - from, step), (86_400, 600));
        assert!(to > 100_000 && to - 600 <= 100_000);
        assert_eq!(empty_periods(0, 180, 60).len(), 3);
    }

    #[test]
    fn resolutions_are_checked() {
        assert!(RollupConfig::default().validate().is_ok());
        let mut c = RollupConfig::default();
        c.resolutions[1].seconds = 90;
        assert!(c.validate().is_err());
        c = RollupConfig::default();
        c.resolutions[0].seconds = 120;
        assert!(c.validate().is_err());
    }

    #[test]
    fn an_observed_empty_counter_period_is_zero_and_an_unobserved_one_is_missing() {
        let mut p = PeriodStats {
            start: 0,
            stats: StatSet::default(),
            observed: true,
        };
        assert_eq!(p.value(Statistic::Sum, true), Some(0.0));
        assert_eq!(p.value(Statistic::Average, true), None);
        assert_eq!(
            p.value(Statistic::Sum, false),
            None,
            "a gauge without a value is missing"
        );
        p.observed = false;
        assert_eq!(p.value(Statistic::Sum, true), None);
    }
}
