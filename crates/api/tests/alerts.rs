//! The alerts API against the real router with the notification layer running, on SQLite and
//! PostgreSQL: a citizen's channels and rules (and the bad input they refuse), the live event
//! stream with its replay, the admins' dead letters and re-drive, `/readyz` watching the
//! delivery worker, and the audit records these requests leave.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{problem, spawn_app_notifying, TestApp};
use ecocityhub_store::Store;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn citizen(app: &TestApp, email: &str) -> String {
    app.sign_up_confirmed(email).await;
    app.tokens(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn delete_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn patch_as(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn channel(app: &TestApp, token: &str, body: Value) -> Value {
    let resp = app.post_as(token, "/api/v1/me/channels", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

fn station_rule(station: &str, channels: &[&str]) -> Value {
    json!({
        "rule": {
            "target": {"station": station},
            "measure": {"pollutant": "pm25"},
            "threshold": "unhealthy_for_sensitive_groups",
            "timezone": "Europe/London",
            "label": "Home"
        },
        "channels": channels,
    })
}

async fn channels_are_checked_and_confirmed_as_they_should(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    let token = citizen(&app, "ana@example.org").await;

    let live = channel(&app, &token, json!({"protocol": "live"})).await;
    assert_eq!(live["channel"]["status"], "confirmed");
    let own = channel(
        &app,
        &token,
        json!({"protocol": "email", "endpoint": "ANA@example.org"}),
    )
    .await;
    assert_eq!(
        own["channel"]["status"], "confirmed",
        "the account's own confirmed address needs no second confirmation"
    );
    let other = channel(
        &app,
        &token,
        json!({"protocol": "email", "endpoint": "neighbour@example.org"}),
    )
    .await;
    assert_eq!(other["channel"]["status"], "pending");
    assert_eq!(other["confirmation_sent"], true);

    for (body, status, code) in [
        (
            json!({"protocol": "sms", "endpoint": "+44"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"protocol": "email", "endpoint": "not an address"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email_invalid",
        ),
        (
            json!({"protocol": "webhook", "endpoint": "https://10.0.0.7/hook"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url_internal",
        ),
        (
            json!({"protocol": "webhook", "endpoint": "https://169.254.169.254/latest/meta-data"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url_internal",
        ),
        (
            json!({"protocol": "webhook", "endpoint": "ftp://203.0.113.9/hook"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url_not_https",
        ),
        (
            json!({"protocol": "email", "endpoint": "a@example.org", "filter_policy": {"aqi": [{"numeric": [">", "x"]}]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "filter_policy_invalid",
        ),
        (
            json!({"protocol": "email", "endpoint": "a@example.org", "colour": "green"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let resp = app
            .post_as(&token, "/api/v1/me/channels", body.clone())
            .await;
        let p = problem(resp, status).await;
        assert_eq!(p["code"], code, "{body}: {p}");
        assert!(!p["detail"].as_str().unwrap().is_empty());
    }

    let list: Value = app
        .get_as(&token, "/api/v1/me/channels")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");

    // Someone else cannot see, test or delete Ana's channels.
    let bob = citizen(&app, "bob@example.org").await;
    let id = live["channel"]["id"].as_str().unwrap();
    let bobs: Value = app
        .get_as(&bob, "/api/v1/me/channels")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs, json!([]));
    let path = format!("/api/v1/me/channels/{id}");
    problem(delete_as(&app, &bob, &path).await, StatusCode::NOT_FOUND).await;
    let test = format!("{path}/test");
    problem(
        app.post_as(&bob, &test, json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // A bad confirmation token is a clear 404, not a confirmation.
    let resp = app
        .client
        .post(app.url("/api/v1/notify/confirm"))
        .json(&json!({"token": "made-up"}))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::NOT_FOUND).await;
    assert!(p["detail"].as_str().unwrap().contains("3 days"), "{p}");

    assert_eq!(
        delete_as(&app, &token, &path).await.status(),
        StatusCode::NO_CONTENT
    );
    problem(delete_as(&app, &token, &path).await, StatusCode::NOT_FOUND).await;
}

async fn rules_are_made_changed_tested_and_deleted(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    let token = citizen(&app, "ana@example.org").await;
    let live = channel(&app, &token, json!({"protocol": "live"})).await;
    let live_id = live["channel"]["id"].as_str().unwrap().to_string();
    let bob = citizen(&app, "bob@example.org").await;
    let bobs = channel(&app, &bob, json!({"protocol": "live"})).await;
    let bobs_id = bobs["channel"]["id"].as_str().unwrap();

    let area = |radius: f64| {
        json!({"rule": {"target": {"area": {"lat": 51.5, "lon": -0.15, "radius_km": radius}},
                        "measure": "aqi", "threshold": "unhealthy"},
               "channels": [live_id]})
    };
    for (body, code) in [
        (station_rule("nowhere", &[&live_id]), "rule_invalid"),
        (area(0.0), "rule_invalid"),
        (area(5000.0), "rule_invalid"),
        (station_rule("s1", &[bobs_id]), "not_found"),
    ] {
        let resp = app
            .post_as(&token, "/api/v1/me/alert-rules", body.clone())
            .await;
        let status = if code == "not_found" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let p = problem(resp, status).await;
        assert_eq!(p["code"], code, "{body}: {p}");
    }
    let mut bad_zone = station_rule("s1", &[&live_id]);
    bad_zone["rule"]["timezone"] = json!("Mars/Olympus");
    let p = problem(
        app.post_as(&token, "/api/v1/me/alert-rules", bad_zone)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("time zone"), "{p}");

    let resp = app
        .post_as(&token, "/api/v1/me/alert-rules", area(2.0))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = app
        .post_as(
            &token,
            "/api/v1/me/alert-rules",
            station_rule("s1", &[&live_id]),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let rule: Value = resp.json().await.unwrap();
    let id = rule["id"].as_str().unwrap();
    assert_eq!(rule["channels"], json!([live_id]));
    assert!(
        rule["description"].as_str().unwrap().contains("s1"),
        "{rule}"
    );

    let path = format!("/api/v1/me/alert-rules/{id}");
    let resp = patch_as(&app, &token, &path, json!({"paused": true})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(changed["paused"], true);
    assert_eq!(changed["rule"]["label"], "Home", "the rest is kept");
    problem(
        patch_as(&app, &bob, &path, json!({"paused": false})).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let resp = app
        .post_as(&token, &format!("{path}/test"), json!({}))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let sent: Value = resp.json().await.unwrap();
    assert_eq!(sent["deliveries"], 1, "{sent}");

    let list: Value = app
        .get_as(&token, "/api/v1/me/alert-rules")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        delete_as(&app, &token, &path).await.status(),
        StatusCode::NO_CONTENT
    );
    let list: Value = app
        .get_as(&token, "/api/v1/me/alert-rules")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// Reads the event stream until `needle` appears (or panics after 10 s).
async fn read_until(resp: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in the stream: {text}"))
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

async fn the_live_stream_delivers_and_replays(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    let token = citizen(&app, "ana@example.org").await;
    let live = channel(&app, &token, json!({"protocol": "live"})).await;
    let id = live["channel"]["id"].as_str().unwrap();

    let mut stream = app.get_as(&token, "/api/v1/me/events").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let resp = app
        .post_as(&token, &format!("/api/v1/me/channels/{id}/test"), json!({}))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let text = read_until(&mut stream, "event: test").await;
    assert!(text.contains("this channel works"), "{text}");
    drop(stream);

    // A page that reconnects from before the event gets it again, from the outbox.
    let mut again = app
        .client
        .get(app.url("/api/v1/me/events"))
        .bearer_auth(&token)
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    read_until(&mut again, "event: test").await;

    let resp = app
        .client
        .get(app.url("/api/v1/me/events"))
        .bearer_auth(&token)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST).await;
    let resp = app.get("/api/v1/me/events").await;
    problem(resp, StatusCode::UNAUTHORIZED).await;
}

async fn admins_see_dead_letters_and_redrive_them(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    let token = citizen(&app, "ana@example.org").await;
    let admin = app.admin_token().await;
    problem(
        app.get_as(&token, "/api/v1/admin/deliveries").await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // A webhook whose receiver is gone: its confirmation fails three times, then is dead.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let made = channel(
        &app,
        &token,
        json!({"protocol": "webhook", "endpoint": url}),
    )
    .await;
    assert!(made["secret"].as_str().unwrap().starts_with("whsec_"));
    let mut dead = json!([]);
    for _ in 0..100 {
        dead = app
            .get_as(&admin, "/api/v1/admin/deliveries")
            .await
            .json()
            .await
            .unwrap();
        if !dead.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let letter = &dead[0];
    assert_eq!(letter["status"], "dead", "{dead}");
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["endpoint"], url);
    assert!(letter["last_error"].as_str().is_some());

    let id = letter["id"].as_i64().unwrap();
    let resp = app
        .post_as(
            &admin,
            &format!("/api/v1/admin/deliveries/{id}/redrive"),
            json!({}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let pending: Value = app
        .get_as(&admin, "/api/v1/admin/deliveries?status=all")
        .await
        .json()
        .await
        .unwrap();
    let same = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap();
    assert_eq!(
        same["message_id"], letter["message_id"],
        "a re-drive keeps the message id"
    );
    problem(
        app.get_as(&admin, "/api/v1/admin/deliveries?status=lost")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.get_as(&admin, "/api/v1/admin/deliveries?limit=0").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.post_as(&admin, "/api/v1/admin/deliveries/999999/redrive", json!({}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    let resp = app
        .post_as(&admin, "/api/v1/admin/deliveries/redrive", json!({}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn audited(app: &TestApp, event: &str) -> Vec<Value> {
    let filter = ecocityhub_observe::audit::SearchFilter {
        event_name: Some(event.into()),
        ..Default::default()
    };
    ecocityhub_observe::audit::search(app.store.as_ref(), &filter)
        .await
        .unwrap()
        .records
        .into_iter()
        .map(|f| f.record)
        .collect()
}

async fn every_write_and_every_denial_is_audited(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    let token = citizen(&app, "ana@example.org").await;
    let me: Value = app.get_as(&token, "/api/v1/me").await.json().await.unwrap();
    channel(&app, &token, json!({"protocol": "live"})).await;
    let created = audited(&app, "CreateChannel").await;
    assert_eq!(created.len(), 1, "{created:?}");
    let record = &created[0];
    assert_eq!(record["eventSource"], "api");
    assert_eq!(record["userIdentity"]["type"], "User");
    assert_eq!(record["userIdentity"]["id"], me["id"]);
    assert_eq!(record["userIdentity"]["credential"], "accessToken");
    assert_eq!(record["requestParameters"]["request"]["protocol"], "live");
    assert_eq!(record["requestParameters"]["path"], "/api/v1/me/channels");
    assert_eq!(record["responseElements"]["status"], 201);
    assert_eq!(record["sourceIPAddress"], "127.0.0.1");
    assert_eq!(record["readOnly"], false);

    // Sign-in attempts, failed ones too, with the password hidden.
    assert_eq!(
        app.sign_in("ana@example.org", "wrong-Passw0rd")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let sign_ins = audited(&app, "SignIn").await;
    assert_eq!(sign_ins.len(), 2, "the one of `citizen` and the failed one");
    let failed = &sign_ins[0];
    assert_eq!(failed["userIdentity"]["type"], "Anonymous");
    assert_eq!(
        failed["requestParameters"]["request"]["email"],
        "ana@example.org"
    );
    assert_eq!(
        failed["requestParameters"]["request"]["password"],
        "HIDDEN_DUE_TO_SECURITY_REASONS"
    );
    assert!(failed["errorCode"].as_str().is_some(), "{failed}");
    assert!(
        !sign_ins[1].to_string().contains("eyJ"),
        "no token reaches the trail: {}",
        sign_ins[1]
    );

    // A denied read is recorded; an allowed one is not.
    problem(
        app.get_as(&token, "/api/v1/admin/deliveries").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let denied = audited(&app, "GetDeliveries").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["errorCode"], "AccessDenied");
    assert_eq!(denied[0]["readOnly"], true);
    assert!(audited(&app, "GetChannels").await.is_empty());

    // An ingest batch is one record, by its device, without the readings themselves.
    let resp = app
        .client
        .post(app.url("/api/v1/readings"))
        .bearer_auth(&app.key)
        .json(
            &json!([{"parameter": "pm25", "time": "2024-01-01T01:00:00Z", "value": 7.5},
                      {"parameter": "pm25", "time": "2024-01-01T02:00:00Z", "value": 8.5}]),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let batches = audited(&app, "PostReadings").await;
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["userIdentity"]["type"], "Device");
    assert_eq!(batches[0]["userIdentity"]["id"], "s1");
    assert!(batches[0]["requestParameters"]["request"]["contentLength"].is_number());
    assert!(!batches[0]["requestParameters"].to_string().contains("7.5"));
}

/// The worker's records of a job it ran: the end (`FinishJob`, by the job, naming who queued
/// it) and the promotion of the series' first model, beside the API's `CreateJob`.
async fn a_training_job_and_its_promotion_are_audited(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    app.insert_pm25_history().await;
    let admin = app.admin_token().await;
    let job = app
        .train(&admin, json!({"stations": ["s1"], "parameters": ["pm25"]}))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // The worker writes its records after it stores the job's end, the run's then the
    // promotion's: wait for both (bounded).
    let (mut finished, mut promotions) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        finished = audited(&app, "FinishJob").await;
        promotions = audited(&app, "PromoteModel").await;
        if !finished.is_empty() && !promotions.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(finished.len(), 1, "{finished:?}");
    let record = &finished[0];
    assert_eq!(record["eventSource"], "jobs");
    assert_eq!(record["userIdentity"]["type"], "System");
    let by_job = format!("training job {}", job["id"]);
    assert_eq!(record["userIdentity"]["id"], by_job.as_str());
    assert_eq!(record["requestParameters"]["jobId"], job["id"]);
    assert_eq!(record["requestParameters"]["createdBy"], job["created_by"]);
    assert_eq!(
        record["requestParameters"]["request"]["stations"],
        json!(["s1"])
    );
    assert_eq!(record["responseElements"]["status"], "succeeded");
    assert_eq!(record["responseElements"]["message"], "1 models trained");
    let model = &record["responseElements"]["models"][0];
    assert_eq!(model["station"], "s1");
    assert_eq!(model["promoted"], true);
    assert!(record.get("errorCode").is_none(), "{record}");

    assert_eq!(promotions.len(), 1, "{promotions:?}");
    assert_eq!(promotions[0]["userIdentity"]["id"], by_job.as_str());
    assert_eq!(
        promotions[0]["responseElements"]["modelId"],
        model["modelId"]
    );
    assert_eq!(audited(&app, "CreateJob").await.len(), 1);
}

/// A part that is never ready.
struct Broken;

impl ecocityhub_api::ReadinessCheck for Broken {
    fn name(&self) -> &'static str {
        "training_worker"
    }

    fn check(&self) -> Result<(), String> {
        Err("stopped".into())
    }
}

async fn readiness_watches_the_worker_and_names_what_fails(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, worker) = spawn_app_notifying(store.clone(), dir).await;
    let mut ready = Value::Null;
    for _ in 0..50 {
        let resp = app.get("/readyz").await;
        if resp.status() == StatusCode::OK {
            ready = resp.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ready,
        json!({"status": "ok", "checks": {"blobs": "ok", "delivery_worker": "ok", "store": "ok"}})
    );
    worker.shutdown().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let services = ecocityhub_api::Services {
        readiness: vec![Arc::new(Broken)],
        ..Default::default()
    };
    let broken = common::spawn_app_serving(listener, store, None, |_| {}, services).await;
    let p = problem(broken.get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        p["detail"],
        "the service is not ready: training_worker: stopped"
    );
    assert_eq!(
        broken.get("/healthz").await.status(),
        StatusCode::OK,
        "liveness is not readiness"
    );
}

both_stores!(
    every_write_and_every_denial_is_audited,
    a_training_job_and_its_promotion_are_audited,
    readiness_watches_the_worker_and_names_what_fails,
    channels_are_checked_and_confirmed_as_they_should,
    rules_are_made_changed_tested_and_deleted,
    the_live_stream_delivers_and_replays,
    admins_see_dead_letters_and_redrive_them,
);
