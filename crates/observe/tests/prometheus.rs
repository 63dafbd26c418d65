//! The Prometheus exposition against a real Prometheus (Debian's `prometheus` 2.42): it scrapes
//! the metrics listener, a PromQL query over the HTTP API sees the requests, and an alert rule
//! with `for: 2s` fires. `promtool` checks and unit-tests the shipped rule file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use ecocityhub_observe::prometheus::serve_metrics;
use ecocityhub_observe::{Exposition, HttpMetricsLayer, RequestIdLayer, Telemetry};
use ecocityhub_testkit::{require_that, HelperServer};
use serde_json::Value;
use tower::ServiceExt;

const HOW: &str = "apt-get install -y --no-install-recommends prometheus (scripts/test does)";

fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus")
}

#[test]
fn the_shipped_rules_pass_promtool() {
    if !require_that(
        has("promtool"),
        "promtool (Debian's prometheus package)",
        HOW,
    ) {
        return;
    }
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(rules_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A PromQL query; `None` while Prometheus is not ready.
async fn query(client: &reqwest::Client, base: &str, promql: &str) -> Option<Value> {
    let r = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Polls `check` until it returns `Some`, for at most `limit`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_listener_and_an_alert_fires() {
    if !require_that(has("prometheus"), "prometheus (Debian's package)", HOW) {
        return;
    }
    let telemetry = Telemetry::install(Exposition::Prometheus).unwrap();
    let metrics = serve_metrics("127.0.0.1:0".parse().unwrap(), telemetry.clone())
        .await
        .unwrap();

    let app = Router::new()
        .route("/stations/{id}", get(|| async { "ok" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .layer(HttpMetricsLayer::new())
        .layer(RequestIdLayer);
    for path in ["/stations/a", "/stations/b", "/stations/c", "/boom"] {
        app.clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: test\n    rules:\n      - alert: TestServerErrors\n        \
         expr: sum(ecocityhub_http_requests_total{status_class=\"5xx\"}) > 0\n        for: 2s\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: ecocityhub\n    static_configs:\n      - targets: ['{}']\n",
            dir.path().join("rules.yml").display(),
            metrics.local_addr
        ),
    )
    .unwrap();
    let python = ecocityhub_testkit::test_python().unwrap_or_else(|| "python3".into());
    let mut cmd = Command::new(python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/prometheus_port0.py"))
        .arg(dir.path().join("prometheus.yml"))
        .arg(dir.path().join("data"));
    let server = HelperServer::start(cmd, "listening on", Duration::from_secs(30)).unwrap();
    let base = server.base_url();
    let client = reqwest::Client::new();

    let count = eventually(Duration::from_secs(30), || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let v = query(
                &client,
                &base,
                "sum(ecocityhub_http_requests_total{route=\"/stations/{id}\"})",
            )
            .await?;
            let value = v["data"]["result"][0]["value"][1].as_str()?.to_string();
            Some(value)
        }
    })
    .await
    .expect("Prometheus scraped the listener");
    assert_eq!(
        count, "3",
        "three requests to the route template, none by raw path"
    );
    let up = query(&client, &base, "up{job=\"ecocityhub\"}")
        .await
        .unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1");
    let raw = query(
        &client,
        &base,
        "count(ecocityhub_http_requests_total{route=\"/stations/a\"})",
    )
    .await
    .unwrap();
    assert!(
        raw["data"]["result"].as_array().unwrap().is_empty(),
        "{raw}"
    );

    let firing = eventually(Duration::from_secs(30), || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let v: Value = client
                .get(format!("{base}/api/v1/alerts"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == "TestServerErrors" && a["state"] == "firing")
                .cloned()
        }
    })
    .await;
    assert!(firing.is_some(), "the for: 2s alert fired");
    drop(server);
    metrics.stop().await;
}
