//! The API test harness shared by the suites: the real router served on a random port with
//! two stations and a device key each, helpers to talk to it over HTTP, and the macro that runs
//! a test on an SQLite file and on a fresh PostgreSQL database.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use ecocityhub_api::{device_auth, router, ApiConfig, AppState};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::Store;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A fresh PostgreSQL database under the one rule for skipping (ecocityhub-testkit).
pub async fn postgres_store() -> Option<ecocityhub_store::SqlStore> {
    Some(postgres_store_at().await?.0)
}

/// [`postgres_store`] and its URL.
pub async fn postgres_store_at() -> Option<(ecocityhub_store::SqlStore, String)> {
    let url = ecocityhub_store::testing::fresh_postgres_url().await?;
    Some((ecocityhub_store::connect(&url).await.unwrap(), url))
}

/// An SQLite store in a new temporary directory.
pub async fn sqlite_store() -> (ecocityhub_store::SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = ecocityhub_store::connect(&ecocityhub_store::testing::sqlite_url(dir.path()))
        .await
        .unwrap();
    (store, dir)
}

/// Runs each named `async fn(Arc<dyn Store>, Option<TempDir>)` on a fresh SQLite file and on a
/// fresh PostgreSQL database: for tests that start the app with a configuration of their own.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, dir) = $crate::common::sqlite_store().await;
                    super::$name(std::sync::Arc::new(store), Some(dir)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(store) = $crate::common::postgres_store().await else { return };
                    super::$name(std::sync::Arc::new(store), None).await;
                }
            )*
        }
    };
}

/// Runs each named `async fn(TestApp)` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, dir) = $crate::common::sqlite_store().await;
                    let url = ecocityhub_store::testing::sqlite_url(dir.path());
                    let mut app = $crate::common::spawn_app(std::sync::Arc::new(store), Some(dir)).await;
                    app.database_url = Some(url);
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((store, url)) = $crate::common::postgres_store_at().await else { return };
                    let mut app = $crate::common::spawn_app(std::sync::Arc::new(store), None).await;
                    app.database_url = Some(url);
                    super::$name(app).await;
                }
            )*
        }
    };
}

/// A running API with two stations and a device key for each.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// Key of station `s1`.
    pub key: String,
    /// Key of station `s2`.
    pub other_key: String,
    /// Where model artifacts and reports are.
    pub blobs: Arc<dyn ecocityhub_blobs::BlobStore>,
    pub _dir: Option<tempfile::TempDir>,
    /// The database's URL, when the test macro knows it (for statements behind the store's
    /// back: damage, races, upgrades).
    pub database_url: Option<String>,
}

pub fn station(id: &str, lat: f64, lon: f64) -> Station {
    Station::new(
        StationId::parse(id).unwrap(),
        format!("Station {id}"),
        GeoPoint::new(lat, lon).unwrap(),
        Some("Test".into()),
        "UTC",
    )
    .unwrap()
}

pub async fn spawn_app(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) -> TestApp {
    spawn_app_with(store, dir, |_| {}).await
}

/// [`spawn_app`] with a change to the configuration.
pub async fn spawn_app_with(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    tweak: impl FnOnce(&mut ApiConfig),
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_app_on(listener, store, dir, tweak).await
}

/// [`spawn_app_with`] on a listener bound beforehand (when something must know the address
/// before the app starts, like an outside identity provider's redirect URI).
pub async fn spawn_app_on(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    tweak: impl FnOnce(&mut ApiConfig),
) -> TestApp {
    spawn_app_delivering(listener, store, dir, tweak, None).await
}

/// [`spawn_app_on`] with codes delivered by `delivery` (the outbox when `None`).
pub async fn spawn_app_delivering(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    tweak: impl FnOnce(&mut ApiConfig),
    delivery: Option<Arc<dyn ecocityhub_api::identity::CodeDelivery>>,
) -> TestApp {
    let services = ecocityhub_api::Services {
        delivery,
        ..Default::default()
    };
    spawn_app_serving(listener, store, dir, tweak, services).await
}

/// The app with the notification layer as `serve` runs it: the notifier (webhooks to loopback
/// allowed, three quick attempts before a dead letter), its delivery worker running, and the
/// alert rules.
pub async fn spawn_app_notifying(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) -> (
    TestApp,
    Arc<ecocityhub_notify::Notifier>,
    ecocityhub_notify::WorkerHandle,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    store.migrate().await.unwrap();
    let mut config = ecocityhub_notify::NotifyConfig {
        public_url: format!("http://{}", listener.local_addr().unwrap()),
        ..Default::default()
    };
    config.webhooks.allow_loopback = true;
    config.webhooks.timeout_ms = 2_000;
    config.worker.retry.max_attempts = 3;
    config.worker.retry.base = std::time::Duration::from_millis(20);
    config.worker.retry.max = std::time::Duration::from_millis(100);
    let (notifier, worker) = ecocityhub_notify::open(store.clone(), &config)
        .await
        .unwrap();
    let heartbeat = worker.heartbeat();
    let worker = worker.spawn();
    let rules =
        ecocityhub_notify::RuleEngine::load(store.clone(), notifier.clone(), Default::default())
            .await
            .unwrap();
    let services = ecocityhub_api::Services {
        notifier: Some(notifier.clone()),
        rules: Some(Arc::new(rules)),
        audit: Some(ecocityhub_observe::audit::Audit::start(store.clone())),
        readiness: vec![Arc::new(ecocityhub_api::HeartbeatCheck {
            name: "delivery_worker",
            heartbeat,
            max_gap: std::time::Duration::from_secs(120),
        })],
        ..Default::default()
    };
    let app = spawn_app_serving(listener, store, dir, |_| {}, services).await;
    (app, notifier, worker)
}

/// The app on `listener` with the given services.
pub async fn spawn_app_serving(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    tweak: impl FnOnce(&mut ApiConfig),
    services: ecocityhub_api::Services,
) -> TestApp {
    store.migrate().await.unwrap();
    store
        .upsert_station(&station("s1", 51.5, -0.15))
        .await
        .unwrap();
    store
        .upsert_station(&station("s2", 52.5, 13.4))
        .await
        .unwrap();
    let mut keys = Vec::new();
    for s in ["s1", "s2"] {
        let (plain, record) =
            device_auth::generate(&StationId::parse(s).unwrap(), None, Utc::now());
        store.insert_device_key(&record).await.unwrap();
        keys.push(plain);
    }
    let config = ApiConfig {
        latest_ttl: std::time::Duration::from_millis(0),
        identity: ecocityhub_api::identity::IdentityConfig {
            attempts_per_ip_per_minute: 12,
            // Read the keys on every use, so a rotation by another process shows at once.
            key_refresh: std::time::Duration::ZERO,
            ..Default::default()
        },
        ..ApiConfig::default()
    };
    let addr = listener.local_addr().unwrap();
    let mut config = config;
    config.identity.tokens.issuer = format!("http://{addr}");
    tweak(&mut config);
    let blobs: Arc<dyn ecocityhub_blobs::BlobStore> =
        Arc::new(ecocityhub_blobs::ObjectBlobs::in_memory());
    let state = AppState::open_with(store.clone(), blobs.clone(), config, services)
        .await
        .unwrap();
    state.jobs().clone().spawn();
    let app = router(state);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let other_key = keys.pop().unwrap();
    let key = keys.pop().unwrap();
    TestApp {
        addr,
        client: reqwest::Client::new(),
        store,
        key,
        other_key,
        blobs,
        _dir: dir,
        database_url: None,
    }
}

impl TestApp {
    /// Runs one SQL statement on the app's database over a connection of its own.
    pub async fn sql(&self, statement: &str) -> Result<(), sqlx::Error> {
        use sqlx::{Connection, Executor};
        sqlx::any::install_default_drivers();
        let url = self
            .database_url
            .as_deref()
            .expect("the test macro sets the URL");
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        conn.execute(statement).await?;
        conn.close().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// GETs `path` and parses the JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    pub async fn post(
        &self,
        key: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/api/v1/readings"))
            .header("content-type", content_type)
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.unwrap()
    }

    pub async fn post_json(&self, body: Value) -> reqwest::Response {
        self.post(Some(&self.key), "application/json", body.to_string())
            .await
    }

    /// Stores an hourly series directly (bypassing the API), for the read tests.
    pub async fn seed_hourly(
        &self,
        station: &str,
        parameter: Parameter,
        start: DateTime<Utc>,
        values: &[Option<f64>],
    ) {
        let readings: Vec<Reading> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|value| Reading {
                    station: StationId::parse(station).unwrap(),
                    parameter,
                    time: start + Duration::hours(i as i64),
                    value,
                    flag: QualityFlag::Valid,
                })
            })
            .collect();
        self.store.insert_readings(&readings).await.unwrap();
    }
}

/// Asserts an RFC 9457 problem answer with this status and returns its body.
pub async fn problem(resp: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status, "unexpected status");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["detail"].as_str().is_some_and(|d| d.len() > 10),
        "a problem needs a helpful detail: {body}"
    );
    body
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
}

pub fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub const PASSWORD: &str = "Corr3ct-Horse";

impl TestApp {
    pub async fn post_auth(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/v1/auth/{path}")))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The newest code sent to `email`, read from the outbox.
    pub async fn last_code(&self, email: &str) -> String {
        let outbox = self.store.outbox(email).await.unwrap();
        let body = &outbox.last().expect("a message was sent").body;
        body.split_whitespace()
            .find(|w| {
                w.trim_end_matches('.').len() == 6
                    && w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit())
            })
            .expect("a code in the message")
            .trim_end_matches('.')
            .to_string()
    }

    pub async fn sign_up_confirmed(&self, email: &str) {
        assert_eq!(
            self.post_auth("sign-up", json!({"email": email, "password": PASSWORD}))
                .await
                .status(),
            StatusCode::ACCEPTED
        );
        let code = self.last_code(email).await;
        assert_eq!(
            self.post_auth("confirm", json!({"email": email, "code": code}))
                .await
                .status(),
            StatusCode::OK
        );
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_auth("sign-in", json!({"email": email, "password": password}))
            .await
    }

    pub async fn tokens(&self, email: &str) -> Value {
        let resp = self.sign_in(email, PASSWORD).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

pub fn jwt_part(token: &str, i: usize) -> Value {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(i).unwrap())
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

impl TestApp {
    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// An admin of the pool, signed in.
    pub async fn admin_token(&self) -> String {
        use ecocityhub_identity::{password, Role};
        use ecocityhub_store::identity::User;
        let admin = User {
            id: "admin-ml".into(),
            email: "ml-admin@example.org".into(),
            password_hash: password::hash(PASSWORD),
            roles: vec![Role::Admin],
            confirmed: true,
            created_at: Utc::now(),
        };
        assert!(self.store.insert_user(&admin).await.unwrap());
        self.tokens("ml-admin@example.org").await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Three weeks of hourly PM2.5 at s1 ending in the current hour: a daily cycle on a wandering
    /// level.
    pub async fn insert_pm25_history(&self) {
        let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
        let hours = 21 * 24;
        let readings: Vec<Reading> = (0..hours)
            .map(|i| {
                let time = now - Duration::hours(hours - 1 - i);
                let cycle = 1.0 + 0.5 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
                let level = 20.0 + 10.0 * ((i / 37) % 5) as f64;
                Reading {
                    station: StationId::parse("s1").unwrap(),
                    parameter: Parameter::Pm25,
                    time,
                    value: (level * cycle * 10.0).round() / 10.0,
                    flag: QualityFlag::Valid,
                }
            })
            .collect();
        self.store.insert_readings(&readings).await.unwrap();
    }

    /// Queues a training job as `token` and waits for it to finish; returns the job.
    pub async fn train(&self, token: &str, body: Value) -> Value {
        let resp = self.post_as(token, "/api/v1/ml/jobs", body).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        for _ in 0..600 {
            let job: Value = self.get_as(token, &location).await.json().await.unwrap();
            if ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the training job did not finish within a minute");
    }
}

impl TestApp {
    /// Signs `email` in through the OIDC code flow asking for `scope`; returns the token answer.
    pub async fn code_flow(&self, email: &str, scope: &str) -> Value {
        use base64::Engine;
        use sha2::Digest;
        let browser = browser();
        let verifier = "a-verifier-of-enough-entropy-for-pkce-0123456789abcdefghij";
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let callback = "http://127.0.0.1:9999/callback";
        let params = [
            ("response_type", "code"),
            ("client_id", "ecocityhub-web"),
            ("redirect_uri", callback),
            ("scope", scope),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        let csrf = self.authorize_page(&browser, &params).await;
        let mut form = params.to_vec();
        form.extend([("email", email), ("password", PASSWORD), ("csrf", &csrf)]);
        let ok = browser
            .post(self.url("/oauth2/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::SEE_OTHER);
        let location = ok.headers()["location"].to_str().unwrap().to_string();
        let code = location
            .split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        browser
            .post(self.url("/oauth2/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", callback),
                ("client_id", "ecocityhub-web"),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A browser of the code flow: keeps cookies, follows no redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden field `name` in an HTML form.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_string())
}

impl TestApp {
    /// Opens the sign-in form of the code flow in `browser` (which keeps its CSRF cookie) and
    /// returns the form's CSRF token.
    pub async fn authorize_page(
        &self,
        browser: &reqwest::Client,
        params: &[(&str, &str)],
    ) -> String {
        let page = browser
            .get(self.url("/oauth2/authorize"))
            .query(params)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "the sign-in form");
        hidden_field(&page.text().await.unwrap(), "csrf").expect("a CSRF token in the form")
    }
}
