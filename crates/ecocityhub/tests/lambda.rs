//! The Lambda runtime path: the real binary started as AWS Lambda starts it
//! (`AWS_LAMBDA_RUNTIME_API` set), fed API Gateway HTTP API (payload 2.0) events by a stand-in
//! of the Lambda Runtime API on loopback, answering with the same router as the server.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use common::Env;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The stand-in Runtime API: hands out queued events, collects the answers.
#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    answers: mpsc::UnboundedSender<(String, &'static str, Value)>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    loop {
        let event = api.events.lock().unwrap().pop_front();
        if let Some((id, event)) = event {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
            headers.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:eu-west-1:123456789012:function:ecocityhub-api"
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
                    .parse()
                    .unwrap(),
            );
            return (headers, event.to_string());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: String,
) -> &'static str {
    api.answers
        .send((
            id,
            "response",
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ))
        .unwrap();
    "{}"
}

async fn error(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: String,
) -> &'static str {
    api.answers
        .send((id, "error", Value::String(body)))
        .unwrap();
    "{}"
}

/// An API Gateway HTTP API (payload 2.0) event, with the headers API Gateway always passes on.
fn event(method: &str, path: &str, query: &str, mut headers: Value, body: Option<String>) -> Value {
    let always = [
        ("host", "api-id.execute-api.eu-west-1.amazonaws.com"),
        ("user-agent", "test"),
        ("x-forwarded-for", "192.0.2.1"),
        ("x-forwarded-proto", "https"),
    ];
    for (name, value) in always {
        headers[name] = json!(value);
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "api-id.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "api-id",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
            "requestId": "req",
            "routeKey": "$default",
            "stage": "$default",
            "time": "26/Nov/2026:01:00:00 +0000",
            "timeEpoch": 1795654800000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

#[tokio::test]
async fn api_gateway_events_run_through_the_same_router() {
    let env = Env::sqlite().await;
    let key = env.station_with_key();

    let events = vec![
        ("health", event("GET", "/healthz", "", json!({}), None)),
        (
            "stations",
            event("GET", "/api/v1/stations", "format=geojson", json!({}), None),
        ),
        (
            "ingest",
            event(
                "POST",
                "/api/v1/readings",
                "",
                json!({"content-type": "application/json", "authorization": format!("Bearer {key}")}),
                Some(
                    json!([{"parameter": "pm25", "time": "2024-01-01T01:00:00Z", "value": 7.5}])
                        .to_string(),
                ),
            ),
        ),
        (
            "no_key",
            event(
                "POST",
                "/api/v1/readings",
                "",
                json!({"content-type": "application/json"}),
                Some("[]".into()),
            ),
        ),
        (
            "bad_query",
            event(
                "GET",
                "/api/v1/stations/st1/readings",
                "parameter=radon",
                json!({}),
                None,
            ),
        ),
        (
            "history",
            event(
                "GET",
                "/api/v1/stations/st1/readings",
                "parameter=pm25&from=2024-01-01T00:00:00Z&to=2024-01-02T00:00:00Z",
                json!({}),
                None,
            ),
        ),
        ("missing", event("GET", "/nowhere", "", json!({}), None)),
    ];
    let n = events.len();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::new(Mutex::new(
            events
                .into_iter()
                .map(|(id, e)| (id.to_string(), e))
                .collect(),
        )),
        answers: tx,
    };
    let runtime = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, runtime).await.unwrap() });

    let mut child = env
        .cmd(&["serve"])
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "ecocityhub-api")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "ECOCITYHUB_PUBLIC_URL",
            "https://api-id.execute-api.eu-west-1.amazonaws.com",
        )
        .kill_on_drop_guard();

    let mut answers = std::collections::HashMap::new();
    while answers.len() < n {
        let (id, kind, body) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the function answered in time")
            .unwrap();
        assert_eq!(
            kind, "response",
            "{id}: the function reported an error: {body}"
        );
        answers.insert(id, body);
    }
    let _ = child.0.kill();

    let status = |id: &str| answers[id]["statusCode"].as_u64().unwrap();
    let body = |id: &str| -> Value {
        serde_json::from_str(answers[id]["body"].as_str().unwrap()).unwrap()
    };
    let content_type = |id: &str| {
        answers[id]["headers"]["content-type"]
            .as_str()
            .unwrap()
            .to_string()
    };

    assert_eq!(status("health"), 200, "{:?}", answers["health"]);
    assert_eq!(body("health")["store"], "sqlite");
    assert_eq!(status("stations"), 200);
    assert_eq!(content_type("stations"), "application/geo+json");
    assert_eq!(body("stations")["features"][0]["id"], "st1");
    assert_eq!(status("ingest"), 200);
    assert_eq!(body("ingest")["accepted"], 1);
    assert_eq!(status("no_key"), 401);
    assert_eq!(content_type("no_key"), "application/problem+json");
    assert!(body("no_key")["detail"]
        .as_str()
        .unwrap()
        .contains("API key"));
    assert_eq!(status("bad_query"), 400);
    assert!(body("bad_query")["detail"]
        .as_str()
        .unwrap()
        .contains("radon"));
    assert_eq!(status("history"), 200);
    assert_eq!(
        body("history")["readings"].as_array().unwrap().len(),
        2,
        "the seed reading and the one sent through Lambda"
    );
    assert_eq!(status("missing"), 404);
}

/// Kills the child when the test ends, however it ends.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

trait SpawnGuarded {
    fn kill_on_drop_guard(&mut self) -> Guard;
}

impl SpawnGuarded for std::process::Command {
    fn kill_on_drop_guard(&mut self) -> Guard {
        Guard(self.stdout(std::process::Stdio::null()).spawn().unwrap())
    }
}
