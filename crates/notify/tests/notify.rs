//! The notification layer end to end on an SQLite store, each channel against a real server
//! started here: Standard Webhooks checked by the `standardwebhooks` package, SMTP by aiosmtpd,
//! Web Push by npm's web-push-testing; live pages, the rule engine and alarms in process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_notify::channels::webpush::SubscriptionKeys;
use ecocityhub_notify::rules::{Measure, RuleSpec, Target, Trigger};
use ecocityhub_notify::{
    DeliveryWorker, Message, Notifier, NotifyConfig, NotifyError, Protocol, Publisher, RuleEngine,
    SubscribeRequest, Topic,
};
use ecocityhub_store::identity::{User, VerificationCode};
use ecocityhub_store::notify::{AlertRuleRow, DeliveryStatus};
use ecocityhub_store::Store;
use ecocityhub_testkit::HelperServer;
use futures::StreamExt;
use serde_json::{json, Value};

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = ecocityhub_store::connect(&ecocityhub_store::testing::sqlite_url(dir.path()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (dir, Arc::new(store))
}

fn config() -> NotifyConfig {
    let mut c = NotifyConfig::default();
    c.webhooks.allow_loopback = true;
    c.webhooks.timeout_ms = 3_000;
    c.push.allow_loopback = true;
    c.worker.retry.max_attempts = 3;
    c.worker.retry.base = Duration::from_millis(20);
    c.worker.retry.max = Duration::from_millis(100);
    c
}

async fn open(store: &Arc<dyn Store>, config: &NotifyConfig) -> (Arc<Notifier>, DeliveryWorker) {
    ecocityhub_notify::open(store.clone(), config)
        .await
        .unwrap()
}

async fn user(store: &Arc<dyn Store>, id: &str) {
    store
        .insert_user(&User {
            id: id.into(),
            email: format!("{id}@example.org"),
            password_hash: "-".into(),
            roles: Vec::new(),
            confirmed: true,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
}

/// Runs the worker until nothing is due and nothing is pending, or `timeout`.
async fn drain(worker: &DeliveryWorker, store: &Arc<dyn Store>, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let stats = worker.run_once().await.unwrap();
        if stats.claimed == 0 {
            if store.delivery_counts().await.unwrap().pending == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn python_server(script: &str, args: &[&str], what: &str) -> Option<HelperServer> {
    let python = ecocityhub_testkit::require_test_python(what)?;
    let mut cmd = Command::new(python);
    cmd.arg(tests_dir().join(script)).args(args);
    Some(
        HelperServer::start(cmd, "listening on", Duration::from_secs(30))
            .expect("helper server starts"),
    )
}

struct Receiver {
    server: HelperServer,
    http: reqwest::Client,
}

impl Receiver {
    fn start() -> Option<Receiver> {
        let server = python_server("webhook_receiver.py", &[], "the standardwebhooks receiver")?;
        Some(Receiver {
            server,
            http: reqwest::Client::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    async fn control(&self, what: &str, body: Value) {
        self.http
            .post(self.url(&format!("/control/{what}")))
            .json(&body)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    async fn log(&self) -> Vec<Value> {
        self.http
            .get(self.url("/log"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn webhook_request(topic: &Topic, owner: &str, url: String) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.clone(),
        owner: Some(owner.into()),
        protocol: Protocol::Webhook,
        endpoint: url,
        filter_policy: None,
        push_keys: None,
        endpoint_verified: false,
    }
}

#[tokio::test]
async fn webhooks_confirm_then_arrive_signed_and_rotation_signs_with_both_secrets() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    let (notifier, worker) = open(&store, &config()).await;
    let topic = Topic::station("s1");
    let subscribed = notifier
        .subscribe(&webhook_request(&topic, "u1", receiver.url("/hook")))
        .await
        .unwrap();
    let secret = subscribed.secret.clone().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(subscribed.subscription.status, "pending");
    assert!(subscribed.confirmation_sent);
    receiver.control("secrets", json!([secret])).await;

    // A publish before confirmation reaches nobody; the confirmation message does.
    let early = Message::new(&topic, "alert.opened", "early", "early");
    assert_eq!(
        notifier.publish(&topic, &early).await.unwrap().deliveries,
        0
    );
    drain(&worker, &store, Duration::from_secs(10)).await;
    let log = receiver.log().await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0]["verified"],
        json!([true]),
        "standardwebhooks verifies our signature"
    );
    let confirmation: Value = serde_json::from_str(log[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(confirmation["type"], "subscription.confirmation");
    let token = confirmation["data"]["token"].as_str().unwrap();
    assert!(confirmation["data"]["confirm_url"]
        .as_str()
        .unwrap()
        .contains(token));
    assert!(notifier.confirm("not-the-token").await.unwrap().is_none());
    assert_eq!(
        notifier.confirm(token).await.unwrap().unwrap().status,
        "confirmed"
    );

    // Now a message arrives, signed, with its id in webhook-id, and the attributes filter.
    notifier
        .set_filter_policy(
            &subscribed.subscription.id,
            Some(&json!({"aqi": [{"numeric": [">=", 101]}]})),
        )
        .await
        .unwrap();
    let low = Message::new(&topic, "alert.opened", "low", "low").attribute("aqi", 80);
    assert_eq!(
        notifier.publish(&topic, &low).await.unwrap().deliveries,
        0,
        "filtered out"
    );
    let high = Message::new(&topic, "alert.opened", "high", "high").attribute("aqi", 160);
    assert_eq!(notifier.publish(&topic, &high).await.unwrap().deliveries, 1);
    drain(&worker, &store, Duration::from_secs(10)).await;
    let log = receiver.log().await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["id"], json!(high.id));
    assert_eq!(log[1]["verified"], json!([true]));
    let event: Value = serde_json::from_str(log[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["id"], json!(high.id));

    // Rotation: both signatures go out for a day; a receiver holding either secret verifies.
    let new_secret = notifier
        .rotate_secret(&subscribed.subscription.id)
        .await
        .unwrap();
    assert_ne!(new_secret, secret);
    receiver
        .control("secrets", json!([secret, new_secret]))
        .await;
    let after = Message::new(&topic, "alert.opened", "after", "after").attribute("aqi", 170);
    notifier.publish(&topic, &after).await.unwrap();
    drain(&worker, &store, Duration::from_secs(10)).await;
    let log = receiver.log().await;
    assert_eq!(log[2]["verified"], json!([true, true]));
    assert_eq!(log[2]["signature"].as_str().unwrap().split(' ').count(), 2);
    assert!(matches!(
        notifier.rotate_secret("sub_missing").await,
        Err(NotifyError::UnknownSubscription)
    ));
}

#[tokio::test]
async fn webhook_urls_inside_the_network_are_refused_at_subscribe_time() {
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    let mut strict = config();
    strict.webhooks.allow_loopback = false;
    let (notifier, _worker) = open(&store, &strict).await;
    let topic = Topic::station("s1");
    for (url, code) in [
        ("http://hooks.example.com/x", "webhook_url_not_https"),
        ("https://10.0.0.5/x", "webhook_url_internal"),
        ("https://169.254.169.254/latest", "webhook_url_internal"),
        ("https://localhost/x", "webhook_url_internal"),
        ("http://127.0.0.1:9/x", "webhook_url_not_https"),
        ("nonsense", "webhook_url_invalid"),
    ] {
        let err = notifier
            .subscribe(&webhook_request(&topic, "u1", url.into()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{url}: {err}");
        assert_eq!(err.status(), 422);
    }
    let bad_policy = SubscribeRequest {
        filter_policy: Some(json!({"a": "not an array"})),
        ..webhook_request(&topic, "u1", "https://hooks.example.com/x".into())
    };
    assert_eq!(
        notifier.subscribe(&bad_policy).await.unwrap_err().code(),
        "filter_policy_invalid"
    );
    assert!(
        store.subscriptions_of("u1").await.unwrap().is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn failing_webhooks_retry_with_backoff_become_dead_letters_and_are_redriven() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    let (notifier, worker) = open(&store, &config()).await;
    let topic = Topic::station("s1");
    let mut request = webhook_request(&topic, "u1", receiver.url("/hook"));
    request.endpoint_verified = true; // the owner's own endpoint in this test: no confirmation
    let sub = notifier.subscribe(&request).await.unwrap();
    receiver
        .control("secrets", json!([sub.secret.unwrap()]))
        .await;
    receiver.control("status", json!(503)).await;
    let m = Message::new(&topic, "alert.opened", "x", "x");
    notifier.publish(&topic, &m).await.unwrap();
    drain(&worker, &store, Duration::from_secs(10)).await;
    let dead = notifier.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 503"));
    let tries: Vec<Value> = receiver.log().await;
    assert_eq!(tries.len(), 3);
    assert!(
        tries.iter().all(|t| t["id"] == json!(m.id)),
        "the same message id on every retry"
    );

    receiver.control("status", json!(0)).await;
    assert!(notifier.redrive(dead[0].id).await.unwrap());
    drain(&worker, &store, Duration::from_secs(10)).await;
    let row = store.delivery(dead[0].id).await.unwrap().unwrap();
    assert_eq!(row.status, DeliveryStatus::Delivered);
    assert_eq!(receiver.log().await.last().unwrap()["id"], json!(m.id));

    // A 4xx is final at once.
    receiver.control("status", json!(400)).await;
    notifier
        .publish(&topic, &Message::new(&topic, "alert.opened", "y", "y"))
        .await
        .unwrap();
    drain(&worker, &store, Duration::from_secs(10)).await;
    let dead = notifier.dead_letters(None, 10).await.unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 1));
    receiver.control("status", json!(0)).await;
    assert_eq!(notifier.redrive_all().await.unwrap(), 1);
}

#[tokio::test]
async fn two_workers_never_send_one_delivery_twice() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    let (notifier, worker_a) = open(&store, &config()).await;
    let (_n2, worker_b) = open(&store, &config()).await;
    let topic = Topic::station("s1");
    let mut request = webhook_request(&topic, "u1", receiver.url("/hook"));
    request.endpoint_verified = true;
    let sub = notifier.subscribe(&request).await.unwrap();
    receiver
        .control("secrets", json!([sub.secret.unwrap()]))
        .await;
    for i in 0..200 {
        notifier
            .publish(
                &topic,
                &Message::new(&topic, "alert.opened", &format!("m{i}"), "x"),
            )
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(
        drain(&worker_a, &store, Duration::from_secs(30)),
        drain(&worker_b, &store, Duration::from_secs(30))
    );
    let _ = (a, b);
    let log = receiver.log().await;
    let mut ids: Vec<&str> = log.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 200);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "no message id arrived twice");
}

fn smtp_messages(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    // Undo quoted-printable soft line breaks and `=` escapes, so links can be found.
    files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
        })
        .collect()
}

#[tokio::test]
async fn mail_goes_through_smtp_with_both_parts_and_one_click_unsubscribe() {
    let inbox = tempfile::tempdir().unwrap();
    let Some(smtp) = python_server(
        "smtp_server.py",
        &[inbox.path().to_str().unwrap()],
        "aiosmtpd",
    ) else {
        return;
    };
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    let mut c = config();
    c.mail.smtp_url = Some(format!("smtp://127.0.0.1:{}", smtp.port));
    c.mail.from = Some("EcoCityHub <alerts@city.example>".into());
    c.public_url = "https://city.example".into();
    let (notifier, worker) = open(&store, &c).await;

    // An identity code: the code and its mail commit together, and the outbox row stays.
    let code = VerificationCode {
        email: "new@example.org".into(),
        purpose: "confirm".into(),
        code_hash: "h".into(),
        expires_at: Utc::now() + chrono::Duration::hours(24),
        attempts: 0,
    };
    notifier
        .send_code_mail(
            &code,
            "Your EcoCityHub confirmation code",
            "Your confirmation code is 123456.",
        )
        .await
        .unwrap();
    assert!(store
        .code("new@example.org", "confirm")
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.outbox("new@example.org").await.unwrap().len(), 1);

    // A subscription mail: pending until the link in its confirmation mail is followed.
    let topic = Topic::station("s1");
    let sub = notifier
        .subscribe(&SubscribeRequest {
            topic: topic.clone(),
            owner: Some("u1".into()),
            protocol: Protocol::Email,
            endpoint: "citizen@example.org".into(),
            filter_policy: None,
            push_keys: None,
            endpoint_verified: false,
        })
        .await
        .unwrap();
    assert_eq!(sub.subscription.status, "pending");
    drain(&worker, &store, Duration::from_secs(20)).await;
    let mut mails = smtp_messages(inbox.path());
    assert_eq!(mails.len(), 2, "the code and the confirmation");
    // The worker delivers the two side by side, so they may arrive in either order.
    mails.sort_by_key(|m| !m.contains("123456"));
    assert!(mails[0].contains("123456"));
    assert!(
        !mails[0].contains("List-Unsubscribe"),
        "account mail has no unsubscribe"
    );
    let link_start = mails[1]
        .find("https://city.example/notify/confirm?token=")
        .expect("a confirm link");
    let token: String = mails[1][link_start + "https://city.example/notify/confirm?token=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(notifier.confirm(&token).await.unwrap().is_some());

    let alert = Message::new(
        &topic,
        "alert.opened",
        "Air quality alert: Unhealthy",
        "PM2.5 is unhealthy.",
    )
    .html("<p>PM2.5 is <b>unhealthy</b>.</p>");
    notifier.publish(&topic, &alert).await.unwrap();
    drain(&worker, &store, Duration::from_secs(20)).await;
    let mails = smtp_messages(inbox.path());
    assert_eq!(mails.len(), 3);
    let m = &mails[2];
    assert!(m.contains("Subject: Air quality alert: Unhealthy"), "{m}");
    assert!(
        m.contains("multipart/alternative") && m.contains("text/plain") && m.contains("text/html")
    );
    assert!(m.contains("List-Unsubscribe: <https://city.example/unsubscribe/"));
    assert!(m.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(m.contains(&format!("Message-ID: <{}@city.example>", alert.id)));
    let envelope: Value =
        serde_json::from_str(&std::fs::read_to_string(inbox.path().join("3.json")).unwrap())
            .unwrap();
    assert_eq!(envelope["to"], json!(["citizen@example.org"]));

    // The one-click link removes the subscription, without signing in, once.
    let start = m
        .find("List-Unsubscribe: <https://city.example/unsubscribe/")
        .unwrap()
        + "List-Unsubscribe: <https://city.example/unsubscribe/".len();
    let token: String = m[start..]
        .chars()
        .take_while(|c| *c != '>')
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(notifier.unsubscribe(&token).await.unwrap());
    assert!(!notifier.unsubscribe(&token).await.unwrap());
    assert!(!notifier.unsubscribe("sub_x.forged").await.unwrap());
    assert!(store
        .subscription(&sub.subscription.id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn without_smtp_mail_goes_to_the_log_and_stays_in_the_outbox() {
    let (_dir, store) = store().await;
    let (notifier, worker) = open(&store, &config()).await;
    notifier
        .send_account_mail(
            "a@example.org",
            "EcoCityHub sign-up",
            "Someone tried to sign up.",
        )
        .await
        .unwrap();
    drain(&worker, &store, Duration::from_secs(5)).await;
    assert_eq!(store.delivery_counts().await.unwrap().delivered, 1);
    assert_eq!(
        store.outbox("a@example.org").await.unwrap()[0].subject,
        "EcoCityHub sign-up"
    );
}

fn web_push_server() -> Option<HelperServer> {
    let folder = tests_dir().join("web-push-testing");
    let installed = folder.join("node_modules/web-push-testing").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ecocityhub_testkit::require_that(
        installed,
        "npm's web-push-testing",
        "npm ci in crates/notify/tests/web-push-testing (needs node)",
    ) {
        return None;
    }
    let mut cmd = Command::new("node");
    cmd.arg("server.js").current_dir(&folder);
    Some(
        HelperServer::start(cmd, "listening on", Duration::from_secs(30))
            .expect("web-push-testing starts"),
    )
}

#[tokio::test]
async fn web_push_is_decrypted_by_web_push_testing_and_expired_subscriptions_are_removed() {
    let Some(push) = web_push_server() else {
        return;
    };
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    let (notifier, worker) = open(&store, &config()).await;
    let vapid = notifier.vapid_public_key().unwrap().to_string();
    // The key is made once and kept: a second open uses the same one.
    let (again, _) = open(&store, &config()).await;
    assert_eq!(again.vapid_public_key(), Some(vapid.as_str()));

    let http = reqwest::Client::new();
    let browser: Value = http
        .post(format!("{}/subscribe", push.base_url()))
        .json(&json!({"applicationServerKey": vapid, "userVisibleOnly": "true"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = &browser["data"];
    let topic = Topic::station("s1");
    let sub = notifier
        .subscribe(&SubscribeRequest {
            topic: topic.clone(),
            owner: Some("u1".into()),
            protocol: Protocol::WebPush,
            endpoint: data["endpoint"].as_str().unwrap().into(),
            filter_policy: None,
            push_keys: Some(SubscriptionKeys {
                p256dh: data["keys"]["p256dh"].as_str().unwrap().into(),
                auth: data["keys"]["auth"].as_str().unwrap().into(),
            }),
            endpoint_verified: false,
        })
        .await
        .unwrap();
    assert_eq!(
        sub.subscription.status, "confirmed",
        "a browser's permission is its confirmation"
    );
    let m = Message::new(&topic, "alert.opened", "Air alert", "PM2.5 is unhealthy");
    notifier.publish(&topic, &m).await.unwrap();
    drain(&worker, &store, Duration::from_secs(10)).await;
    assert_eq!(store.delivery_counts().await.unwrap().delivered, 1);
    let got: Value = http
        .post(format!("{}/get-notifications", push.base_url()))
        .json(&json!({"clientHash": data["clientHash"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages = got["data"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    let event: Value = serde_json::from_str(messages[0].as_str().unwrap()).unwrap();
    assert_eq!(event["id"], json!(m.id));
    assert_eq!(event["text"], "PM2.5 is unhealthy");

    // The browser unsubscribed: the push service answers 410 and the subscription goes.
    http.post(format!(
        "{}/expire-subscription/{}",
        push.base_url(),
        data["clientHash"].as_str().unwrap()
    ))
    .send()
    .await
    .unwrap();
    notifier
        .publish(
            &topic,
            &Message::new(&topic, "alert.opened", "again", "again"),
        )
        .await
        .unwrap();
    drain(&worker, &store, Duration::from_secs(10)).await;
    assert!(store
        .subscription(&sub.subscription.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.delivery_counts().await.unwrap().dead, 0);
}

#[tokio::test]
async fn live_pages_get_events_and_replay_after_their_last_event_id() {
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    let (notifier, worker) = open(&store, &config()).await;
    let topic = Topic::station("s1");
    notifier
        .subscribe(&SubscribeRequest {
            topic: topic.clone(),
            owner: Some("u1".into()),
            protocol: Protocol::Live,
            endpoint: String::new(),
            filter_policy: None,
            push_keys: None,
            endpoint_verified: false,
        })
        .await
        .unwrap();
    let mut page = notifier
        .live
        .stream(store.clone(), "u1", None)
        .await
        .unwrap();
    let first = Message::new(&topic, "alert.opened", "one", "one");
    notifier.publish(&topic, &first).await.unwrap();
    drain(&worker, &store, Duration::from_secs(5)).await;
    let event = tokio::time::timeout(Duration::from_secs(5), page.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.kind, "alert.opened");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["id"], json!(first.id));
    drop(page);

    // Two more while the page is closed; reconnecting with Last-Event-ID replays just those.
    for name in ["two", "three"] {
        notifier
            .publish(&topic, &Message::new(&topic, "alert.opened", name, name))
            .await
            .unwrap();
    }
    drain(&worker, &store, Duration::from_secs(5)).await;
    let mut page = notifier
        .live
        .stream(store.clone(), "u1", Some(event.id))
        .await
        .unwrap();
    let a = page.next().await.unwrap();
    let b = page.next().await.unwrap();
    assert!(a.id > event.id && b.id > a.id);
    let subject = |e: &ecocityhub_notify::LiveEvent| {
        serde_json::from_str::<Value>(&e.data).unwrap()["subject"].clone()
    };
    assert_eq!((subject(&a), subject(&b)), (json!("two"), json!("three")));
    // And live ones follow.
    notifier
        .publish(
            &topic,
            &Message::new(&topic, "alert.opened", "four", "four"),
        )
        .await
        .unwrap();
    drain(&worker, &store, Duration::from_secs(5)).await;
    let c = tokio::time::timeout(Duration::from_secs(5), page.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(subject(&c), json!("four"));
}

fn station(id: &str, lat: f64, lon: f64) -> Station {
    Station::new(
        StationId::parse(id).unwrap(),
        id.to_string(),
        GeoPoint::new(lat, lon).unwrap(),
        None,
        "Europe/London",
    )
    .unwrap()
}

fn pm25(station: &str, hour: i64, value: f64) -> Reading {
    Reading {
        station: StationId::parse(station).unwrap(),
        parameter: Parameter::Pm25,
        time: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hour),
        value,
        flag: QualityFlag::Valid,
    }
}

#[tokio::test]
async fn a_rule_opens_one_episode_sends_once_and_clears() {
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    store
        .upsert_station(&station("s1", 51.5, -0.15))
        .await
        .unwrap();
    store
        .upsert_station(&station("s2", 51.51, -0.15))
        .await
        .unwrap();
    let (notifier, worker) = open(&store, &config()).await;
    let live = notifier
        .subscribe(&SubscribeRequest {
            topic: Topic::station("s1"),
            owner: Some("u1".into()),
            protocol: Protocol::Live,
            endpoint: String::new(),
            filter_policy: None,
            push_keys: None,
            endpoint_verified: false,
        })
        .await
        .unwrap();
    let engine = RuleEngine::load(store.clone(), notifier.clone(), Default::default())
        .await
        .unwrap();
    let spec = |target| RuleSpec {
        target,
        measure: Measure::Pollutant(Parameter::Pm25),
        threshold: ecocityhub_domain::aqi::us_epa::Category::UnhealthyForSensitiveGroups,
        trigger: Trigger::Measured {
            hold_minutes: 60,
            clear_minutes: 60,
            notify_clear: true,
            cooldown_minutes: 180,
        },
        timezone: "Europe/London".into(),
        quiet_hours: None,
        digest_at: None,
        label: Some("Home".into()),
    };
    let station_rule = spec(Target::Station("s1".into()));
    let area_rule = spec(Target::Area {
        lat: 51.505,
        lon: -0.15,
        radius_km: 2.0,
    });
    engine
        .check_rule(
            "u1",
            &station_rule,
            std::slice::from_ref(&live.subscription.id),
        )
        .await
        .unwrap();
    assert!(engine
        .check_rule("u1", &spec(Target::Station("nowhere".into())), &[])
        .await
        .is_err());
    assert!(engine
        .check_rule("u1", &station_rule, &["sub_not_mine".into()])
        .await
        .is_err());
    for (id, s) in [("r_station", &station_rule), ("r_area", &area_rule)] {
        store
            .insert_rule(&AlertRuleRow {
                id: id.into(),
                user_id: "u1".into(),
                spec: serde_json::to_string(s).unwrap(),
                channels: vec![live.subscription.id.clone()],
                paused: false,
                state: "{}".into(),
                created_at: Utc::now(),
                updated_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    engine.reload().await.unwrap();
    assert_eq!(engine.rule_count().await, 2);

    // Twelve clean hours, then PM2.5 at 80 µg/m³ (Unhealthy by NowCast within hours).
    let mut readings: Vec<Reading> = (0..12).map(|h| pm25("s1", h, 5.0)).collect();
    store.insert_readings(&readings).await.unwrap();
    engine.on_readings(&readings).await.unwrap();
    let mut events = 0;
    for h in 12..20 {
        readings = vec![pm25("s1", h, 80.0)];
        store.insert_readings(&readings).await.unwrap();
        events += engine.on_readings(&readings).await.unwrap().events;
        // The same batch again (a device's retry) changes nothing.
        engine.on_readings(&readings).await.unwrap();
    }
    assert_eq!(
        events, 2,
        "the station rule and the area rule each open once"
    );
    assert_eq!(store.open_episodes().await.unwrap().len(), 2);
    drain(&worker, &store, Duration::from_secs(5)).await;
    let sent = store.live_events_after("u1", 0, 100).await.unwrap();
    assert_eq!(sent.len(), 2, "one message per rule and episode");
    assert!(sent
        .iter()
        .all(|e| e.message.subject.starts_with("Air quality alert")));

    // Clean air: after the NowCast falls and an hour below, each episode clears with a message.
    for h in 20..40 {
        readings = vec![pm25("s1", h, 2.0)];
        store.insert_readings(&readings).await.unwrap();
        engine.on_readings(&readings).await.unwrap();
    }
    assert!(store.open_episodes().await.unwrap().is_empty());
    drain(&worker, &store, Duration::from_secs(5)).await;
    let sent = store.live_events_after("u1", 0, 100).await.unwrap();
    assert_eq!(sent.len(), 4);
    assert!(sent[2..]
        .iter()
        .all(|e| e.message.subject == "Air quality alert over"));

    // A restart reloads the state: no episode reopens, nothing is sent twice.
    let engine = RuleEngine::load(store.clone(), notifier.clone(), Default::default())
        .await
        .unwrap();
    readings = vec![pm25("s1", 40, 2.0)];
    store.insert_readings(&readings).await.unwrap();
    assert_eq!(engine.on_readings(&readings).await.unwrap().events, 0);

    // "Send a test" reaches the rule's channels at once.
    let rule = store.rule("r_station").await.unwrap().unwrap();
    assert_eq!(engine.send_test(&rule).await.unwrap().deliveries, 1);
}

#[tokio::test]
async fn forecast_rules_send_once_per_day_and_digests_collect_alerts() {
    let (_dir, store) = store().await;
    user(&store, "u1").await;
    store
        .upsert_station(&station("s1", 51.5, -0.15))
        .await
        .unwrap();
    let (notifier, worker) = open(&store, &config()).await;
    let live = notifier
        .subscribe(&SubscribeRequest {
            topic: Topic::station("s1"),
            owner: Some("u1".into()),
            protocol: Protocol::Live,
            endpoint: String::new(),
            filter_policy: None,
            push_keys: None,
            endpoint_verified: false,
        })
        .await
        .unwrap();
    let spec = RuleSpec {
        target: Target::Station("s1".into()),
        measure: Measure::Aqi,
        threshold: ecocityhub_domain::aqi::us_epa::Category::Unhealthy,
        trigger: Trigger::Forecast { days_ahead: 1 },
        timezone: "Europe/London".into(),
        quiet_hours: None,
        digest_at: None,
        label: None,
    };
    let mut digest = spec.clone();
    digest.digest_at = chrono::NaiveTime::from_hms_opt(8, 0, 0);
    for (id, s) in [("r_forecast", &spec), ("r_digest", &digest)] {
        store
            .insert_rule(&AlertRuleRow {
                id: id.into(),
                user_id: "u1".into(),
                spec: serde_json::to_string(s).unwrap(),
                channels: vec![live.subscription.id.clone()],
                paused: false,
                state: "{}".into(),
                created_at: Utc::now(),
                updated_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    let engine = RuleEngine::load(store.clone(), notifier.clone(), Default::default())
        .await
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let hours: Vec<_> = (0..36)
        .map(|h| {
            (
                now + chrono::Duration::hours(h),
                if h == 20 { 170 } else { 60 },
            )
        })
        .collect();
    assert_eq!(engine.on_forecast("s1", &hours, now).await.unwrap(), 2);
    assert_eq!(
        engine.on_forecast("s1", &hours, now).await.unwrap(),
        0,
        "once per forecast day"
    );
    drain(&worker, &store, Duration::from_secs(5)).await;
    assert_eq!(
        store.live_events_after("u1", 0, 10).await.unwrap().len(),
        1,
        "the digest rule waits"
    );
    // The digest goes out at the next 08:00 local after the alert was collected.
    assert_eq!(engine.send_digests(Utc::now()).await.unwrap(), 0);
    assert_eq!(
        engine
            .send_digests(Utc::now() + chrono::Duration::days(1))
            .await
            .unwrap(),
        1
    );
    drain(&worker, &store, Duration::from_secs(5)).await;
    let sent = store.live_events_after("u1", 0, 10).await.unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].message.subject,
        "Your EcoCityHub air quality digest"
    );
}

#[tokio::test]
async fn operators_hear_of_silent_stations_and_anomaly_bursts_once() {
    let (_dir, store) = store().await;
    user(&store, "op").await;
    store
        .upsert_station(&station("s1", 51.5, -0.15))
        .await
        .unwrap();
    let (notifier, worker) = open(&store, &config()).await;
    notifier
        .subscribe(&SubscribeRequest {
            topic: Topic::operator_alarms(),
            owner: Some("op".into()),
            protocol: Protocol::Live,
            endpoint: String::new(),
            filter_policy: Some(json!({"alarm": ["silent", "anomalies"]})),
            push_keys: None,
            endpoint_verified: false,
        })
        .await
        .unwrap();
    let engine = RuleEngine::load(store.clone(), notifier.clone(), Default::default())
        .await
        .unwrap();
    store.insert_readings(&[pm25("s1", 0, 5.0)]).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    assert_eq!(
        engine
            .check_silent_stations(t0 + chrono::Duration::hours(2))
            .await
            .unwrap(),
        (0, 0)
    );
    assert_eq!(
        engine
            .check_silent_stations(t0 + chrono::Duration::hours(4))
            .await
            .unwrap(),
        (1, 0)
    );
    assert_eq!(
        engine
            .check_silent_stations(t0 + chrono::Duration::hours(5))
            .await
            .unwrap(),
        (0, 0),
        "already open"
    );
    store.insert_readings(&[pm25("s1", 5, 5.0)]).await.unwrap();
    assert_eq!(
        engine
            .check_silent_stations(t0 + chrono::Duration::hours(5))
            .await
            .unwrap(),
        (0, 1)
    );
    let flags: Vec<(String, i64)> = (0..6)
        .map(|i| ("s1".to_string(), t0.timestamp() + i * 60))
        .collect();
    let at = t0 + chrono::Duration::minutes(10);
    assert_eq!(
        engine.check_anomaly_bursts(&flags, at).await.unwrap(),
        (1, 0)
    );
    assert_eq!(
        engine.check_anomaly_bursts(&flags, at).await.unwrap(),
        (0, 0)
    );
    drain(&worker, &store, Duration::from_secs(5)).await;
    let sent = store.live_events_after("op", 0, 10).await.unwrap();
    let subjects: Vec<&str> = sent.iter().map(|e| e.message.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "Station s1 is silent",
            "Station s1 is reporting again",
            "Anomalies at station s1"
        ]
    );
}
