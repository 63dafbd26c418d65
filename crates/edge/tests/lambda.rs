//! The same edge under lambda_http: the client is API Gateway's source IP, rate limits count
//! per source IP, the cache and compression answer as on a server.

#![cfg(feature = "lambda")]

mod common;

use std::sync::Arc;

use common::{origin, test_config, Calls};
use ecocityhub_edge::Edge;
use tower::ServiceExt;

/// An API Gateway HTTP API (v2) event as lambda_http hands it to the router.
fn event(path: &str, source_ip: &str, accept_encoding: &str) -> lambda_http::Request {
    let event = serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"host": "abc.execute-api.eu-west-2.amazonaws.com",
                    "accept-encoding": accept_encoding, "x-forwarded-for": "6.6.6.6"},
        "requestContext": {"accountId": "1", "apiId": "abc", "domainName": "abc", "domainPrefix": "abc",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": "t"},
            "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390u64},
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn under_lambda_the_source_ip_is_the_client_and_the_cache_answers() {
    let mut config = test_config();
    config.shield.rate_limits.rules[4].limit = 3; // "reads"
    assert_eq!(config.shield.rate_limits.rules[4].name, "reads");
    let calls = Arc::new(Calls::default());
    let app = Edge::new(config).unwrap().wrap(origin(calls.clone()));

    let r = app
        .clone()
        .oneshot(event("/echo-ip", "198.51.100.23", ""))
        .await
        .unwrap();
    let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
    assert_eq!(
        body, "198.51.100.23 198.51.100.23",
        "X-Forwarded-For is not believed"
    );

    for expected in ["miss", "hit"] {
        let r = app
            .clone()
            .oneshot(event("/api/v1/latest", "198.51.100.23", "gzip"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-edge-cache"], expected);
        assert_eq!(r.headers()["content-encoding"], "gzip");
    }
    assert_eq!(Calls::get(&calls.latest), 1);
    let r = app
        .clone()
        .oneshot(event("/api/v1/latest", "198.51.100.23", "gzip"))
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let other = app
        .oneshot(event("/api/v1/latest", "203.0.113.9", ""))
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}
