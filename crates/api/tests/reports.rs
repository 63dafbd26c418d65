//! Citizens' reports against the real router with the notification layer running, on SQLite
//! and PostgreSQL: a citizen uploads a photo through a signed URL and files a report; the photo
//! served has no EXIF; bad uploads are refused and store nothing; operators find the report in
//! the queue, move it with a public update and keep internal notes to themselves; the reporter
//! hears of the update; moderators hide it; duplicates nearby are offered; rate limits hold.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::{problem, spawn_app_notifying, TestApp, PASSWORD};
use ecocityhub_blobs::photos::testing::jpeg_with_exif_gps;
use ecocityhub_blobs::uploads::UploadRequest;
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

async fn operator(app: &TestApp) -> String {
    use ecocityhub_identity::{password, Role};
    use ecocityhub_store::identity::User;
    let op = User {
        id: "op-1".into(),
        email: "operator@example.org".into(),
        password_hash: password::hash(PASSWORD),
        roles: vec![Role::Operator],
        confirmed: true,
        created_at: chrono::Utc::now(),
    };
    assert!(app.store.insert_user(&op).await.unwrap());
    app.tokens("operator@example.org").await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
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

/// Signs an upload for `bytes` declared as `content_type`; returns (id, url).
async fn sign(app: &TestApp, token: &str, content_type: &str, bytes: &[u8]) -> (String, String) {
    let request = UploadRequest::for_bytes(content_type, bytes);
    let sha = base64::engine::general_purpose::STANDARD.encode(request.sha256);
    let resp = app
        .post_as(
            token,
            "/api/v1/uploads",
            json!({"content_type": content_type, "size": bytes.len(), "sha256": sha}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let signed: Value = resp.json().await.unwrap();
    assert_eq!(signed["method"], "PUT");
    (
        signed["id"].as_str().unwrap().to_string(),
        signed["url"].as_str().unwrap().to_string(),
    )
}

async fn put(app: &TestApp, url: &str, content_type: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.client
        .put(url)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap()
}

/// Uploads a phone-like JPEG (EXIF with GPS) and returns its upload id.
async fn upload_photo(app: &TestApp, token: &str) -> String {
    let jpeg = jpeg_with_exif_gps(640, 480, 6);
    assert!(contains(&jpeg, b"Exif"), "the test photo carries EXIF");
    let (id, url) = sign(app, token, "image/jpeg", &jpeg).await;
    assert_eq!(
        put(app, &url, "image/jpeg", jpeg).await.status(),
        StatusCode::CREATED
    );
    id
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn report(title: &str, photos: &[String]) -> Value {
    json!({"category": "illegal_dumping", "title": title,
           "description": "Fridges and a mattress by the canal", "lat": 51.5205, "lon": -0.1500,
           "photos": photos})
}

async fn file(app: &TestApp, token: &str, body: Value) -> Value {
    let resp = app.post_as(token, "/api/v1/reports", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

async fn a_report_is_filed_with_a_photo_and_triaged_in_the_open(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    let ana = citizen(&app, "ana@example.org").await;
    let op = operator(&app).await;

    let upload = upload_photo(&app, &ana).await;
    let mut body = report("Fridges dumped by the canal", std::slice::from_ref(&upload));
    body["id"] = json!("rep_canal_1");
    let filed = file(&app, &ana, body.clone()).await;
    assert_eq!(filed["state"], "submitted");
    assert_eq!(filed["mine"], true);
    assert_eq!(filed["following"], true);
    assert!(
        filed.get("reporter").is_none(),
        "citizens do not see reporter ids"
    );
    let id = filed["id"].as_str().unwrap();
    // A retry of the same request files nothing new.
    let again = app.post_as(&ana, "/api/v1/reports", body).await;
    assert_eq!(again.status(), StatusCode::OK);

    // The photo as served: a JPEG without the EXIF (and GPS) the phone wrote, and a thumbnail.
    let photo_url = filed["photos"][0]["url"].as_str().unwrap();
    let photo = app.get(photo_url).await;
    assert_eq!(photo.status(), StatusCode::OK);
    assert_eq!(photo.headers()["content-type"], "image/jpeg");
    let bytes = photo.bytes().await.unwrap();
    assert!(bytes.starts_with(&[0xFF, 0xD8]));
    assert!(!contains(&bytes, b"Exif"), "EXIF is gone");
    // Orientation 6 is applied: the 640 × 480 photo stands upright.
    assert_eq!(filed["photos"][0]["width"], 480);
    assert_eq!(filed["photos"][0]["height"], 640);
    let thumb = app
        .get(filed["photos"][0]["thumbnail_url"].as_str().unwrap())
        .await;
    assert_eq!(thumb.status(), StatusCode::OK);

    // Anyone sees it; filing a second one nearby offers the first as a duplicate.
    let public = app.get_json(&format!("/api/v1/reports/{id}")).await;
    assert_eq!(public["title"], "Fridges dumped by the canal");
    let near = app
        .get_json("/api/v1/reports/nearby?lat=51.5207&lon=-0.1501&category=illegal_dumping")
        .await;
    assert_eq!(near.as_array().unwrap().len(), 1, "{near}");
    let far = app
        .get_json("/api/v1/reports/nearby?lat=51.5300&lon=-0.1500&category=illegal_dumping")
        .await;
    assert!(far.as_array().unwrap().is_empty(), "{far}");

    // The operator finds it in the queue and moves it on with a public update.
    let queue = app
        .get_as(&op, "/api/v1/reports?state=submitted&assignee=none")
        .await;
    let queue: Value = queue.json().await.unwrap();
    assert_eq!(queue["total"], 1, "{queue}");
    assert_eq!(
        queue["reports"][0]["reporter"]
            .as_str()
            .map(|s| !s.is_empty()),
        Some(true)
    );
    let moved = patch_as(
        &app,
        &op,
        &format!("/api/v1/reports/{id}"),
        json!({"version": 1, "state": "investigating", "assignee": "op-1",
               "update": "A crew is on its way."}),
    )
    .await;
    assert_eq!(moved.status(), StatusCode::OK);
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["state"], "investigating");
    assert_eq!(moved["version"], 2);
    let note = app
        .post_as(
            &op,
            &format!("/api/v1/reports/{id}/comments"),
            json!({"text": "Same fly-tipper as last month", "internal": true}),
        )
        .await;
    assert_eq!(note.status(), StatusCode::CREATED);

    // The citizen sees the update and the history, but not the note or the assignee.
    let seen: Value = app
        .get_as(&ana, &format!("/api/v1/reports/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["state"], "investigating");
    assert!(seen.get("assignee").is_none());
    let history = seen["history"].as_array().unwrap();
    let kinds: Vec<&str> = history
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["filed", "state"], "{seen}");
    assert_eq!(history[1]["by"], "staff");
    assert_eq!(history[1]["body"], "A crew is on its way.");
    assert_eq!(
        history[1]["changes"]["state"],
        json!(["submitted", "investigating"])
    );
    let staff_view: Value = app
        .get_as(&op, &format!("/api/v1/reports/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(staff_view["history"].as_array().unwrap().len(), 3);
    assert_eq!(staff_view["assignee"], "op-1");

    // The reporter follows it: the update reached their live page (replayed from the outbox).
    let mut events = app
        .client
        .get(app.url("/api/v1/me/events"))
        .bearer_auth(&ana)
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let text = read_until(&mut events, "A crew is on its way").await;
    assert!(text.contains("report.updated"), "{text}");
}

async fn read_until(resp: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {text}"))
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

async fn bad_uploads_and_bad_changes_are_refused_clearly(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    let ana = citizen(&app, "ana@example.org").await;
    let bob = citizen(&app, "bob@example.org").await;
    let op = operator(&app).await;

    // A reused URL, a wrong checksum, a type not signed, a PDF named a photo.
    let jpeg = jpeg_with_exif_gps(64, 48, 1);
    let (_, url) = sign(&app, &ana, "image/jpeg", &jpeg).await;
    assert_eq!(
        put(&app, &url, "image/jpeg", jpeg.clone()).await.status(),
        StatusCode::CREATED
    );
    problem(
        put(&app, &url, "image/jpeg", jpeg.clone()).await,
        StatusCode::CONFLICT,
    )
    .await;
    let (_, url) = sign(&app, &ana, "image/jpeg", &jpeg).await;
    let mut other = jpeg.clone();
    other[40] ^= 1;
    problem(
        put(&app, &url, "image/jpeg", other).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        put(&app, &url, "image/png", jpeg.clone()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    let unsigned = url.split('?').next().unwrap().to_string()
        + "?expires=1&size=1&type=image/jpeg&sha256=00&sig=00";
    problem(
        put(&app, &unsigned, "image/jpeg", jpeg.clone()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    let (pdf_id, url) = sign(&app, &ana, "image/jpeg", &pdf).await;
    assert_eq!(
        put(&app, &url, "image/jpeg", pdf).await.status(),
        StatusCode::CREATED
    );
    let refused = app
        .post_as(
            &ana,
            "/api/v1/reports",
            report("A PDF posing as a photo", &[pdf_id]),
        )
        .await;
    let p = problem(refused, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(p["detail"].as_str().unwrap().contains("photo 1"), "{p}");
    assert_eq!(
        app.get_json("/api/v1/reports").await["total"],
        0,
        "a refused report stores nothing"
    );
    // Someone else's upload cannot be attached; a signed upload nobody sent is not there.
    let mine = upload_photo(&app, &ana).await;
    problem(
        app.post_as(&bob, "/api/v1/reports", report("Not my photo", &[mine]))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.post_as(
            &ana,
            "/api/v1/uploads",
            json!({"content_type": "application/pdf", "size": 10, "sha256": "00".repeat(32)}),
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(
        app.post_as(
            &ana,
            "/api/v1/uploads",
            json!({"content_type": "image/jpeg", "size": 20_000_000, "sha256": "00".repeat(32)}),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // Bad reports.
    for (body, status) in [
        (
            json!({"category": "litter", "title": "Crisp packets", "lat": 51.5, "lon": 0.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"category": "noise", "title": "ab", "lat": 51.5, "lon": 0.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"category": "noise", "title": "Drums at night", "lat": 91.0, "lon": 0.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"category": "noise", "title": "Drums at night"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"category": "noise", "title": "Drums at night", "station": "nowhere"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"category": "noise", "title": "Drums at night", "lat": 51.5, "lon": 0.0, "colour": "red"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        problem(app.post_as(&ana, "/api/v1/reports", body).await, status).await;
    }
    problem(
        app.client
            .post(app.url("/api/v1/reports"))
            .json(&json!({"category": "noise"}))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // A report at a station takes the station's place.
    let at_station = file(
        &app,
        &ana,
        json!({"category": "broken_sensor", "title": "The station's fan is loose", "station": "s1"}),
    )
    .await;
    assert_eq!(at_station["station"], "s1");
    assert_eq!(at_station["lat"], 51.5);
    let id = at_station["id"].as_str().unwrap();
    let path = format!("/api/v1/reports/{id}");

    // Citizens do not triage; stale versions and impossible moves are refused.
    problem(
        patch_as(&app, &ana, &path, json!({"state": "fixed"})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        patch_as(&app, &bob, &path, json!({"title": "Mine now"})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let edited = patch_as(
        &app,
        &ana,
        &path,
        json!({"title": "The station's fan rattles"}),
    )
    .await;
    assert_eq!(edited.status(), StatusCode::OK);
    problem(
        patch_as(&app, &op, &path, json!({"version": 1, "state": "fixed"})).await,
        StatusCode::CONFLICT,
    )
    .await;
    problem(
        patch_as(&app, &op, &path, json!({"state": "submitted"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        patch_as(&app, &op, &path, json!({"state": "duplicate"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        patch_as(
            &app,
            &op,
            &path,
            json!({"state": "duplicate", "duplicate_of": "rep_none"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        patch_as(&app, &op, &path, json!({"assignee": "ana"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        patch_as(&app, &op, &path, json!({})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.post_as(
            &ana,
            &format!("{path}/comments"),
            json!({"text": "psst", "internal": true}),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        app.get("/api/v1/reports?state=open,nonsense").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        app.get("/api/v1/reports?hidden=true").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        app.get("/api/v1/reports/rep_none").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn moderation_bulk_triage_and_rate_limits(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let (app, _notifier, _worker) = spawn_app_notifying(store, dir).await;
    let ana = citizen(&app, "ana@example.org").await;
    let op = operator(&app).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = file(
            &app,
            &ana,
            report(&format!("Smoke from a chimney {i}"), &[]),
        )
        .await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    // Five an hour: the sixth waits.
    let sixth = app
        .post_as(&ana, "/api/v1/reports", report("One too many", &[]))
        .await;
    let p = problem(sixth, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(p["detail"].as_str().unwrap().contains("at most 5"), "{p}");

    // Moderators hide one: gone for the public and the map, still there for its reporter.
    let hidden = &ids[0];
    let resp = patch_as(
        &app,
        &op,
        &format!("/api/v1/reports/{hidden}"),
        json!({"hidden": true}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    problem(
        app.get(&format!("/api/v1/reports/{hidden}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.get_as(&ana, &format!("/api/v1/reports/{hidden}"))
            .await
            .status(),
        StatusCode::OK
    );
    let pins = app.get_json("/api/v1/reports/pins").await;
    assert_eq!(pins["features"].as_array().unwrap().len(), 4);
    assert_eq!(app.get_json("/api/v1/reports").await["total"], 4);
    let staff: Value = app
        .get_as(&op, "/api/v1/reports?hidden=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(staff["total"], 5);

    // Bulk: three close as fixed; one that is already fixed says why and the rest still move.
    let resp = app
        .post_as(
            &op,
            "/api/v1/reports/bulk",
            json!({"ids": [ids[1], ids[2]], "state": "fixed"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .post_as(
            &op,
            "/api/v1/reports/bulk",
            json!({"ids": [ids[2], ids[3], "rep_none"], "state": "fixed", "update": "Cleared."}),
        )
        .await;
    let outcomes: Value = resp.json().await.unwrap();
    let changed: Vec<bool> = outcomes
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["changed"].as_bool().unwrap())
        .collect();
    assert_eq!(changed, [false, true, false], "{outcomes}");
    let open = app.get_json("/api/v1/reports?state=open").await;
    assert_eq!(open["total"], 1, "{open}");
    problem(
        app.post_as(
            &ana,
            "/api/v1/reports/bulk",
            json!({"ids": [ids[4]], "state": "fixed"}),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // An operator watching the area hears of the next report filed in it, and not of others.
    let resp = app
        .client
        .put(app.url("/api/v1/me/report-watch"))
        .bearer_auth(&op)
        .json(&json!({"bbox": "-0.2,51.5,-0.1,51.6"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bea = citizen(&app, "bea@example.org").await;
    let mut far = report("Smoke in Berlin", &[]);
    far["lat"] = json!(52.5);
    far["lon"] = json!(13.4);
    file(&app, &bea, far).await;
    file(&app, &bea, report("Smoke by the canal", &[])).await;
    let mut events = app
        .client
        .get(app.url("/api/v1/me/events"))
        .bearer_auth(&op)
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let text = read_until(&mut events, "Smoke by the canal").await;
    assert!(!text.contains("Berlin"), "{text}");
}

both_stores!(
    a_report_is_filed_with_a_photo_and_triaged_in_the_open,
    bad_uploads_and_bad_changes_are_refused_clearly,
    moderation_bulk_triage_and_rate_limits,
);
