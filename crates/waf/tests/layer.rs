//! The tower layer in front of an axum router: block answers, bodies passed through
//! whole, exclusions by route, counted rules, and the corpus report's shape.

use axum::body::{to_bytes, Body};
use axum::routing::post;
use axum::Router;
use ecocityhub_waf::corpus::{replay, Split};
use ecocityhub_waf::{Waf, WafConfig, WafLayer};
use http::{Request, StatusCode};
use std::sync::Arc;
use tower::ServiceExt;

fn app(waf: Arc<Waf>) -> Router {
    Router::new()
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
        .route(
            "/api/v1/readings",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route("/search", axum::routing::get(|| async { "ok" }))
        .layer(WafLayer::new(waf))
}

fn default_waf() -> Arc<Waf> {
    Arc::new(Waf::new(WafConfig::default()).unwrap())
}

#[tokio::test]
async fn a_block_is_a_problem_document_naming_the_rule() {
    let waf = default_waf();
    let req = Request::get("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap();
    let res = app(waf.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["title"], "Forbidden");
    assert_eq!(body["status"], 403);
    assert_eq!(body["code"], "waf_blocked");
    let rule = body["rule"].as_str().unwrap();
    assert!(rule.starts_with("xss-"), "{rule}");
    assert!(body["detail"].as_str().unwrap().contains(rule));
    assert_eq!(waf.samples().len(), 1);
    assert_eq!(waf.samples()[0].rule.rule, rule);
}

#[tokio::test]
async fn bodies_reach_the_service_whole_and_unchanged() {
    // 100 KiB in many frames: the first 16 KiB are inspected, all of it is delivered.
    let payload: Vec<u8> = (0..100 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = payload
        .chunks(3000)
        .map(|c| Ok(axum::body::Bytes::copy_from_slice(c)))
        .collect();
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let req = Request::post("/echo")
        .header("host", "localhost")
        .header("content-type", "text/plain")
        .header("content-length", payload.len().to_string())
        .body(body)
        .unwrap();
    let res = app(default_waf()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(to_bytes(res.into_body(), 1 << 20).await.unwrap(), payload);
}

#[tokio::test]
async fn an_attack_inside_the_inspected_part_of_a_streamed_body_is_blocked() {
    let mut payload = b"x=%3Cscript%3Ealert(1)%3C%2Fscript%3E&y=".to_vec();
    payload.extend(std::iter::repeat_n(b'a', 40_000));
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = payload
        .chunks(1000)
        .map(|c| Ok(axum::body::Bytes::copy_from_slice(c)))
        .collect();
    let req = Request::post("/echo")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", payload.len().to_string())
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = app(default_waf()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_csv_ingest_route_is_excluded_by_configuration() {
    let csv =
        "time,parameter,value\n2026-11-26T09:00:00Z,no2,21\n2026-11-26T10:00:00Z,no2,1; sleep 5\n";
    let make = |path: &str| {
        Request::post(path)
            .header("host", "localhost")
            .header("content-type", "text/csv")
            .header("content-length", csv.len().to_string())
            .body(Body::from(csv))
            .unwrap()
    };
    let res = app(default_waf())
        .oneshot(make("/api/v1/readings"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "excluded on the ingest route");
    let res = app(default_waf()).oneshot(make("/echo")).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "inspected elsewhere");
}

#[tokio::test]
async fn a_counted_rule_lets_the_request_through() {
    let waf =
        Arc::new(Waf::new(WafConfig::from_toml("[groups]\nxss = \"count\"\n").unwrap()).unwrap());
    let req = Request::get("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap();
    let res = app(waf.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(waf.samples().is_empty());
}

#[test]
fn the_corpus_report_has_the_agreed_shape() {
    let corpus = concat!(
        r#"{"id":"a1","source":"s","method":"GET","uri":"/?q=%3Cscript%3Ealert(1)%3C/script%3E","headers":{"Host":"x"},"body":"","attack":true,"category":"xss","label_strength":"strong"}"#,
        "\n",
        r#"{"id":"a2","source":"s","method":"GET","uri":"/?q=hello","headers":{"Host":"x"},"body":"","attack":true,"category":"sqli","label_strength":"strong"}"#,
        "\n",
        r#"{"id":"b1","source":"s","method":"GET","uri":"/?q=hello","headers":{"Host":"x"},"body":"","attack":false,"category":"benign","label_strength":"strong"}"#,
        "\n",
        r#"{"id":"b2","source":"t","method":"POST","uri":"/","headers":{"Host":"x"},"body":"a=%3Cscript%3E","attack":false,"category":"benign","label_strength":"weak"}"#,
        "\n",
    );
    let waf = Waf::new(WafConfig::default()).unwrap();
    let (report, outcomes) = replay(&waf, corpus.as_bytes(), Split::All).unwrap();
    assert_eq!(outcomes.len(), 4);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["attacks"],
        serde_json::json!({"total": 2, "blocked": 1})
    );
    assert_eq!(
        json["benign_strong"],
        serde_json::json!({"total": 1, "blocked": 0})
    );
    assert_eq!(
        json["benign_weak"],
        serde_json::json!({"total": 1, "blocked": 1})
    );
    assert_eq!(json["by_category"]["xss"]["attacks"]["blocked"], 1);
    assert_eq!(json["by_category"]["sqli"]["attacks"]["blocked"], 0);
    assert_eq!(json["by_source"]["t"]["benign_weak"]["total"], 1);
    let table = report.table();
    assert!(
        table.contains("attacks blocked") && table.contains("xss") && table.contains("50.0%"),
        "{table}"
    );
    let (dev, _) = replay(&waf, corpus.as_bytes(), Split::Development).unwrap();
    let (held, _) = replay(&waf, corpus.as_bytes(), Split::HeldOut).unwrap();
    assert_eq!(dev.requests + held.requests, 4);
    assert!(replay(&waf, "not json\n".as_bytes(), Split::All).is_err());
}
