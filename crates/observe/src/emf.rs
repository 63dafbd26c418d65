//! CloudWatch Embedded Metric Format: under Lambda, metrics leave the process as JSON lines on
//! stdout that CloudWatch Logs turns into metrics. [`EmfLayer`] drains the aggregator after each
//! response (each invocation) and prints one line per label set:
//!
//! ```json
//! {"_aws":{"Timestamp":1764000000000,"CloudWatchMetrics":[{"Namespace":"EcoCityHub",
//!   "Dimensions":[["Service","method","route","status_class"]],
//!   "Metrics":[{"Name":"ecocityhub_http_requests_total","Unit":"Count","StorageResolution":60}]}]},
//!  "Service":"ecocityhub","method":"GET","route":"/api/v1/latest","status_class":"2xx",
//!  "ecocityhub_http_requests_total":1}
//! ```
//!
//! Counters give their sum, gauges their value, histograms their samples as an array (at most
//! 100 values a line, so a larger distribution spans several lines).

use std::collections::BTreeMap;
use std::io::Write;
use std::task::{Context, Poll};

use axum::http::{Request, Response};
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tower::{Layer, Service};

use crate::names::{self, Kind, Unit};
use crate::recorder::{Drained, Telemetry};

/// The dimension every line carries, so that no metric is without one.
pub const SERVICE_DIMENSION: &str = "Service";
/// At most this many values in one metric's array (EMF's limit).
pub const MAX_VALUES: usize = 100;

fn unit_of(name: &str, kind: Kind) -> &'static str {
    match names::find(name) {
        Some(m) => m.unit.cloudwatch(),
        None if kind == Kind::Counter => Unit::Count.cloudwatch(),
        None => Unit::None.cloudwatch(),
    }
}

/// The values a drained series contributes: one number, or the histogram's samples.
fn values_of(d: &Drained) -> Vec<f64> {
    match d.kind {
        Kind::Counter => vec![d.stats.sum],
        Kind::Gauge => vec![d.stats.max],
        Kind::Histogram => d
            .stats
            .distribution()
            .into_iter()
            .flat_map(|(v, n)| std::iter::repeat_n(v, n as usize))
            .collect(),
    }
}

/// The EMF documents for drained series.
pub fn render(
    namespace: &str,
    service: &str,
    drained: &[Drained],
    timestamp_ms: i64,
) -> Vec<String> {
    let mut by_labels: BTreeMap<&str, Vec<&Drained>> = BTreeMap::new();
    for d in drained {
        by_labels.entry(d.key.labels.as_str()).or_default().push(d);
    }
    let mut lines = Vec::new();
    for series in by_labels.values() {
        let labels = series[0].key.label_map();
        let mut pending: Vec<(&Drained, Vec<f64>)> =
            series.iter().map(|d| (*d, values_of(d))).collect();
        while pending.iter().any(|(_, v)| !v.is_empty()) {
            let mut root = Map::new();
            let mut dims = vec![SERVICE_DIMENSION.to_string()];
            root.insert(SERVICE_DIMENSION.into(), json!(service));
            for (k, v) in &labels {
                dims.push(k.clone());
                // EMF dimension values must have a non-blank character.
                root.insert(k.clone(), json!(if v.trim().is_empty() { "-" } else { v }));
            }
            let mut definitions = Vec::new();
            for (d, values) in pending.iter_mut().filter(|(_, v)| !v.is_empty()) {
                let take: Vec<f64> = values.drain(..values.len().min(MAX_VALUES)).collect();
                let value = if d.kind == Kind::Histogram {
                    json!(take)
                } else {
                    json!(take[0])
                };
                root.insert(d.key.name.clone(), value);
                definitions.push(json!({
                    "Name": d.key.name,
                    "Unit": unit_of(&d.key.name, d.kind),
                    "StorageResolution": 60,
                }));
            }
            root.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": [dims],
                        "Metrics": definitions,
                    }],
                }),
            );
            lines.push(Value::Object(root).to_string());
        }
    }
    lines
}

/// Drains the telemetry and writes its EMF lines to `out`.
pub fn flush(telemetry: &Telemetry, service: &str, out: &mut impl Write) -> std::io::Result<usize> {
    let namespace = telemetry.emf_namespace().unwrap_or("EcoCityHub");
    telemetry.sample_process();
    let lines = render(
        namespace,
        service,
        &telemetry.aggregator().drain(),
        chrono::Utc::now().timestamp_millis(),
    );
    for line in &lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(lines.len())
}

/// Under Lambda: after each response, the metrics go to stdout as EMF.
#[derive(Clone)]
pub struct EmfLayer {
    telemetry: Telemetry,
    service: String,
}

impl EmfLayer {
    pub fn new(telemetry: Telemetry, service: impl Into<String>) -> EmfLayer {
        EmfLayer {
            telemetry,
            service: service.into(),
        }
    }
}

impl<S> Layer<S> for EmfLayer {
    type Service = EmfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EmfService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct EmfService<S> {
    inner: S,
    layer: EmfLayer,
}

impl<S, B, R> Service<Request<B>> for EmfService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let future = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let result = future.await;
            if let Err(e) = flush(
                &layer.telemetry,
                &layer.service,
                &mut std::io::stdout().lock(),
            ) {
                tracing::warn!(error = %e, "could not write EMF metrics");
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Exposition;

    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];

    /// The rules of EMF's specification a document must follow.
    fn check_emf_shape(line: &str) -> Value {
        let doc: Value = serde_json::from_str(line).expect("one JSON object per line");
        let root = doc.as_object().expect("the root is an object");
        let aws = root["_aws"].as_object().expect("_aws metadata");
        assert!(
            aws["Timestamp"].as_i64().unwrap() > 1_600_000_000_000,
            "Timestamp in ms"
        );
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .expect("CloudWatchMetrics array");
        assert!(!directives.is_empty());
        for d in directives {
            let ns = d["Namespace"].as_str().expect("Namespace");
            assert!(!ns.is_empty() && ns.len() <= 255);
            for set in d["Dimensions"].as_array().expect("Dimensions") {
                let keys = set.as_array().expect("a DimensionSet is an array");
                assert!(keys.len() <= 30);
                for k in keys {
                    let v = root[k.as_str().unwrap()]
                        .as_str()
                        .expect("dimension values are strings at the root");
                    assert!(!v.trim().is_empty() && v.len() <= 1024);
                }
            }
            let metrics = d["Metrics"].as_array().expect("Metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for m in metrics {
                let name = m["Name"].as_str().expect("Name");
                assert!(UNITS.contains(&m["Unit"].as_str().unwrap()), "{m}");
                assert!([1, 60].contains(&m["StorageResolution"].as_i64().unwrap()));
                match &root[name] {
                    Value::Number(_) => {}
                    Value::Array(values) => {
                        assert!(!values.is_empty() && values.len() <= MAX_VALUES);
                        assert!(values.iter().all(Value::is_number));
                    }
                    other => panic!("{name} has no numeric value at the root: {other}"),
                }
            }
        }
        doc
    }

    #[test]
    fn drained_metrics_become_documents_of_the_documented_shape() {
        let (telemetry, recorder) = Telemetry::build(Exposition::Emf {
            namespace: "EcoCityHub".into(),
        });
        metrics::with_local_recorder(&recorder, || {
            let labels = [
                ("method", "GET"),
                ("route", "/api/v1/latest"),
                ("status_class", "2xx"),
            ];
            metrics::counter!(names::HTTP_REQUESTS.name, &labels).increment(250);
            for i in 0..250 {
                metrics::histogram!(names::HTTP_DURATION.name, &labels)
                    .record(0.001 * (1 + i % 7) as f64);
            }
            metrics::gauge!(names::QUEUE_DEPTH.name, "queue" => "outbox").set(4.0);
            metrics::counter!(names::READINGS.name, "outcome" => "accepted", "reason" => "")
                .increment(3);
        });
        let mut out = Vec::new();
        let n = flush(&telemetry, "ecocityhub", &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let docs: Vec<Value> = text.lines().map(check_emf_shape).collect();
        assert_eq!(docs.len(), n);
        // 250 durations: three documents for the HTTP label set (100 + 100 + 50 values).
        let http: Vec<&Value> = docs
            .iter()
            .filter(|d| d["route"] == "/api/v1/latest")
            .collect();
        assert_eq!(http.len(), 3);
        let total: usize = http
            .iter()
            .map(|d| d[names::HTTP_DURATION.name].as_array().unwrap().len())
            .sum();
        assert_eq!(total, 250);
        assert_eq!(http[0][names::HTTP_REQUESTS.name], 250.0);
        assert_eq!(
            http[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            serde_json::json!(["Service", "method", "route", "status_class"])
        );
        let queue = docs.iter().find(|d| d["queue"] == "outbox").unwrap();
        assert_eq!(queue[names::QUEUE_DEPTH.name], 4.0);
        assert_eq!(queue["Service"], "ecocityhub");
        let readings = docs.iter().find(|d| d["outcome"] == "accepted").unwrap();
        assert_eq!(
            readings["reason"], "-",
            "a blank dimension value is replaced"
        );
        // Drained: the next flush has only the gauges (process figures and the queue).
        let mut again = Vec::new();
        flush(&telemetry, "ecocityhub", &mut again).unwrap();
        assert!(!String::from_utf8(again).unwrap().contains("http_requests"));
    }
}
