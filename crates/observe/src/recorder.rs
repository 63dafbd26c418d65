//! The recorder behind the `metrics` facade: every counter, gauge and histogram goes to an
//! [`Aggregator`] (per-period statistic sets, drained once a minute into the store's rollups or,
//! under Lambda, after each invocation into EMF lines) and, on one machine, also to the
//! Prometheus exporter's recorder (rendered at `GET /metrics`). [`Telemetry::install`] makes it
//! the process's global recorder.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::names::{self, Kind};
use crate::stats::StatSet;
use crate::ObserveError;

/// Bucket bounds (seconds) of the duration histograms in the Prometheus exposition.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A metric series: name and canonical labels (JSON object text with sorted keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub name: String,
    pub labels: String,
}

impl SeriesKey {
    pub fn new(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        let map: BTreeMap<&str, &str> = labels.iter().copied().collect();
        SeriesKey {
            name: name.to_string(),
            labels: serde_json::to_string(&map).expect("strings serialise"),
        }
    }

    fn of(key: &Key) -> SeriesKey {
        let map: BTreeMap<&str, &str> = key.labels().map(|l| (l.key(), l.value())).collect();
        SeriesKey {
            name: key.name().to_string(),
            labels: serde_json::to_string(&map).expect("strings serialise"),
        }
    }

    /// The labels as a map.
    pub fn label_map(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.labels).unwrap_or_default()
    }
}

/// One series' samples since the last drain.
#[derive(Debug, Clone, PartialEq)]
pub struct Drained {
    pub key: SeriesKey,
    pub kind: Kind,
    pub stats: StatSet,
}

#[derive(Default)]
struct CellState {
    period: StatSet,
    gauge: Option<f64>,
    last_absolute: u64,
}

struct Cell {
    kind: Kind,
    state: Mutex<CellState>,
}

impl Cell {
    fn with<R>(&self, f: impl FnOnce(&mut CellState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.with(|s| s.period.record(value as f64, 1));
    }

    fn absolute(&self, value: u64) {
        self.with(|s| {
            if value > s.last_absolute {
                s.period.record((value - s.last_absolute) as f64, 1);
                s.last_absolute = value;
            }
        });
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.with(|s| s.gauge = Some(s.gauge.unwrap_or(0.0) + value));
    }

    fn decrement(&self, value: f64) {
        self.with(|s| s.gauge = Some(s.gauge.unwrap_or(0.0) - value));
    }

    fn set(&self, value: f64) {
        self.with(|s| s.gauge = Some(value));
    }
}

impl HistogramFn for Cell {
    fn record(&self, value: f64) {
        self.with(|s| s.period.record(value, 1));
    }

    fn record_many(&self, value: f64, count: usize) {
        self.with(|s| s.period.record(value, count as u64));
    }
}

/// Per-series statistic sets since the last [`Aggregator::drain`].
#[derive(Default)]
pub struct Aggregator {
    cells: RwLock<HashMap<Key, (SeriesKey, Arc<Cell>)>>,
}

impl Aggregator {
    fn cell(&self, key: &Key, kind: Kind) -> Arc<Cell> {
        if let Some((_, c)) = self
            .cells
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return c.clone();
        }
        let mut cells = self.cells.write().unwrap_or_else(|p| p.into_inner());
        cells
            .entry(key.clone())
            .or_insert_with(|| {
                (
                    SeriesKey::of(key),
                    Arc::new(Cell {
                        kind,
                        state: Mutex::new(CellState::default()),
                    }),
                )
            })
            .1
            .clone()
    }

    /// Takes every series' samples since the last drain, and each gauge's current value as one
    /// sample. Counters and histograms without samples are left out.
    pub fn drain(&self) -> Vec<Drained> {
        let cells = self.cells.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Drained> = cells
            .values()
            .filter_map(|(key, cell)| {
                let stats = cell.with(|s| match cell.kind {
                    Kind::Gauge => s.gauge.map(StatSet::of),
                    _ => Some(std::mem::take(&mut s.period)).filter(|p| !p.is_empty()),
                })?;
                Some(Drained {
                    key: key.clone(),
                    kind: cell.kind,
                    stats,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

impl Recorder for Aggregator {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key, Kind::Counter))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key, Kind::Gauge))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key, Kind::Histogram))
    }
}

struct Both<A, B>(A, B);

impl CounterFn for Both<Counter, Counter> {
    fn increment(&self, value: u64) {
        self.0.increment(value);
        self.1.increment(value);
    }
    fn absolute(&self, value: u64) {
        self.0.absolute(value);
        self.1.absolute(value);
    }
}

impl GaugeFn for Both<Gauge, Gauge> {
    fn increment(&self, value: f64) {
        self.0.increment(value);
        self.1.increment(value);
    }
    fn decrement(&self, value: f64) {
        self.0.decrement(value);
        self.1.decrement(value);
    }
    fn set(&self, value: f64) {
        self.0.set(value);
        self.1.set(value);
    }
}

impl HistogramFn for Both<Histogram, Histogram> {
    fn record(&self, value: f64) {
        self.0.record(value);
        self.1.record(value);
    }
    fn record_many(&self, value: f64, count: usize) {
        self.0.record_many(value, count);
        self.1.record_many(value, count);
    }
}

/// The global recorder: the aggregator, and Prometheus's recorder when exposed.
pub struct ObserveRecorder {
    aggregator: Arc<Aggregator>,
    prometheus: Option<PrometheusRecorder>,
}

impl Recorder for ObserveRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        if let Some(p) = &self.prometheus {
            p.describe_counter(key, unit, help);
        }
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        if let Some(p) = &self.prometheus {
            p.describe_gauge(key, unit, help);
        }
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        if let Some(p) = &self.prometheus {
            p.describe_histogram(key, unit, help);
        }
    }

    fn register_counter(&self, key: &Key, meta: &Metadata<'_>) -> Counter {
        let ours = self.aggregator.register_counter(key, meta);
        match &self.prometheus {
            Some(p) => Counter::from_arc(Arc::new(Both(ours, p.register_counter(key, meta)))),
            None => ours,
        }
    }

    fn register_gauge(&self, key: &Key, meta: &Metadata<'_>) -> Gauge {
        let ours = self.aggregator.register_gauge(key, meta);
        match &self.prometheus {
            Some(p) => Gauge::from_arc(Arc::new(Both(ours, p.register_gauge(key, meta)))),
            None => ours,
        }
    }

    fn register_histogram(&self, key: &Key, meta: &Metadata<'_>) -> Histogram {
        let ours = self.aggregator.register_histogram(key, meta);
        match &self.prometheus {
            Some(p) => Histogram::from_arc(Arc::new(Both(ours, p.register_histogram(key, meta)))),
            None => ours,
        }
    }
}

/// Where metrics are exposed besides the rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposition {
    /// One machine: a Prometheus text exposition (serve it with [`crate::prometheus::serve_metrics`]).
    Prometheus,
    /// AWS Lambda: CloudWatch Embedded Metric Format lines on stdout (see [`crate::emf`]).
    Emf { namespace: String },
    /// Rollups only.
    None,
}

/// The installed metrics: the handle the rest of the crate drains and renders from.
#[derive(Clone)]
pub struct Telemetry {
    aggregator: Arc<Aggregator>,
    prometheus: Option<PrometheusHandle>,
    emf_namespace: Option<String>,
    started: Instant,
}

impl Telemetry {
    /// A recorder and its telemetry, not installed (for tests with a local recorder).
    pub fn build(exposition: Exposition) -> (Telemetry, ObserveRecorder) {
        let aggregator = Arc::new(Aggregator::default());
        let prometheus = matches!(exposition, Exposition::Prometheus).then(prometheus_recorder);
        let telemetry = Telemetry {
            aggregator: aggregator.clone(),
            prometheus: prometheus.as_ref().map(PrometheusRecorder::handle),
            emf_namespace: match exposition {
                Exposition::Emf { namespace } => Some(namespace),
                _ => None,
            },
            started: Instant::now(),
        };
        (
            telemetry,
            ObserveRecorder {
                aggregator,
                prometheus,
            },
        )
    }

    /// Installs the recorder for the whole process and describes every metric. Fails if a
    /// recorder is installed already.
    pub fn install(exposition: Exposition) -> Result<Telemetry, ObserveError> {
        let (telemetry, recorder) = Telemetry::build(exposition);
        metrics::set_global_recorder(recorder)
            .map_err(|_| ObserveError::Config("a metrics recorder is installed already".into()))?;
        names::describe_all();
        Ok(telemetry)
    }

    pub fn aggregator(&self) -> &Arc<Aggregator> {
        &self.aggregator
    }

    /// The Prometheus handle, when exposed that way.
    pub fn prometheus(&self) -> Option<&PrometheusHandle> {
        self.prometheus.as_ref()
    }

    /// The EMF namespace, when exposed that way.
    pub fn emf_namespace(&self) -> Option<&str> {
        self.emf_namespace.as_deref()
    }

    /// Seconds since this telemetry was built.
    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Sets the process gauges (resident memory, uptime) and keeps Prometheus's histograms
    /// compact. Call it before each drain or render.
    pub fn sample_process(&self) {
        crate::process::sample(self.uptime_seconds());
        if let Some(p) = &self.prometheus {
            p.run_upkeep();
        }
    }
}

fn prometheus_recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
        .expect("bucket bounds are not empty")
        .build_recorder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregator_keeps_each_series_until_it_is_drained() {
        let (telemetry, recorder) = Telemetry::build(Exposition::Prometheus);
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("ecocityhub_test_total", "route" => "/a").increment(2);
            metrics::counter!("ecocityhub_test_total", "route" => "/a").increment(3);
            metrics::counter!("ecocityhub_test_total", "route" => "/b").increment(1);
            metrics::gauge!("ecocityhub_test_gauge").set(7.5);
            metrics::histogram!("ecocityhub_test_seconds").record(0.25);
            metrics::histogram!("ecocityhub_test_seconds").record(0.75);
        });
        let drained = telemetry.aggregator().drain();
        let find = |name: &str, labels: &str| {
            drained
                .iter()
                .find(|d| d.key.name == name && d.key.labels == labels)
                .unwrap_or_else(|| panic!("{name} {labels} in {drained:?}"))
        };
        let a = find("ecocityhub_test_total", r#"{"route":"/a"}"#);
        assert_eq!(
            (a.kind, a.stats.count, a.stats.sum),
            (Kind::Counter, 2, 5.0)
        );
        assert_eq!(
            find("ecocityhub_test_total", r#"{"route":"/b"}"#).stats.sum,
            1.0
        );
        assert_eq!(find("ecocityhub_test_gauge", "{}").stats.max, 7.5);
        let h = find("ecocityhub_test_seconds", "{}");
        assert_eq!((h.stats.count, h.stats.sum), (2, 1.0));

        // Drained: counters and histograms are gone, the gauge keeps its value.
        let again = telemetry.aggregator().drain();
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(again[0].key.name, "ecocityhub_test_gauge");

        // The same samples reached Prometheus.
        let text = telemetry.prometheus().unwrap().render();
        assert!(
            text.contains(r#"ecocityhub_test_total{route="/a"} 5"#),
            "{text}"
        );
        assert!(text.contains("ecocityhub_test_seconds_bucket"), "{text}");
    }

    #[test]
    fn absolute_counters_record_their_increase() {
        let (telemetry, recorder) = Telemetry::build(Exposition::None);
        metrics::with_local_recorder(&recorder, || {
            let c = metrics::counter!("ecocityhub_abs_total");
            c.absolute(10);
            c.absolute(4);
            c.absolute(15);
        });
        let d = telemetry.aggregator().drain();
        assert_eq!(d[0].stats.sum, 15.0);
        assert!(telemetry.prometheus().is_none());
    }
}
