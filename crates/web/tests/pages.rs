//! The web pages over HTTP, on SQLite and PostgreSQL: the real site (API, pages, assets) on a
//! random port, driven like a browser without JavaScript would (a cookie jar, forms posted with
//! their CSRF token). The browser itself drives them in `crates/ecocityhub/tests/browser.rs`.

mod common;

use common::Browser;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{Duration, DurationRound, Utc};
use ecocityhub_api::{ApiConfig, AppState};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_identity::{password, Role};
use ecocityhub_store::identity::User;
use ecocityhub_store::{testing, Store};
use ecocityhub_web::WebConfig;
use reqwest::{redirect, StatusCode};

const PASSWORD: &str = "Correct-horse-battery-9";

struct Site {
    base: String,
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn spawn_site(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) -> Site {
    store.migrate().await.unwrap();
    for (id, lat, lon) in [("s1", 52.52, 13.40), ("s2", 48.14, 11.58)] {
        let station = Station::new(
            StationId::parse(id).unwrap(),
            format!("Station {id}"),
            GeoPoint::new(lat, lon).unwrap(),
            Some("Test area".into()),
            "Europe/Berlin",
        )
        .unwrap();
        store.upsert_station(&station).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let mut config = ApiConfig {
        latest_ttl: std::time::Duration::from_millis(0),
        ..ApiConfig::default()
    };
    config.identity.tokens.issuer = base.clone();
    let blobs: Arc<dyn ecocityhub_blobs::BlobStore> =
        Arc::new(ecocityhub_blobs::ObjectBlobs::in_memory());
    let state = AppState::open(store.clone(), blobs, config).await.unwrap();
    state.jobs().clone().spawn();
    let app = ecocityhub_web::app(state, WebConfig::new(&base));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Site {
        base,
        store,
        _dir: dir,
    }
}

impl Site {
    fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// A confirmed user with `roles`, made in the store.
    async fn user(&self, email: &str, roles: &[Role]) -> User {
        let user = User {
            id: format!("u-{}", email.split('@').next().unwrap()),
            email: email.into(),
            password_hash: password::hash(PASSWORD),
            roles: roles.to_vec(),
            confirmed: true,
            created_at: Utc::now(),
        };
        assert!(self.store.insert_user(&user).await.unwrap());
        user
    }

    /// `days` of hourly PM2.5 at s1 ending in the current hour: a daily cycle on a wandering
    /// level.
    async fn pm25_history(&self, days: i64) {
        let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
        let hours = days * 24;
        let readings: Vec<Reading> = (0..hours)
            .map(|i| {
                let cycle = 1.0 + 0.5 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
                let level = 20.0 + 10.0 * ((i / 37) % 5) as f64;
                Reading {
                    station: StationId::parse("s1").unwrap(),
                    parameter: Parameter::Pm25,
                    time: now - Duration::hours(hours - 1 - i),
                    value: (level * cycle * 10.0).round() / 10.0,
                    flag: QualityFlag::Valid,
                }
            })
            .collect();
        self.store.insert_readings(&readings).await.unwrap();
    }

    async fn last_code(&self, email: &str) -> String {
        let outbox = self.store.outbox(email).await.unwrap();
        let body = &outbox.last().expect("a message was sent").body;
        body.split_whitespace()
            .map(|w| w.trim_end_matches('.'))
            .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
            .expect("a code in the message")
            .to_string()
    }
}

impl Browser {
    async fn sign_in(&mut self, email: &str) {
        self.get("/account/sign-in").await;
        let (status, location, _) = self
            .post(
                "/account/sign-in",
                &[
                    ("email", email),
                    ("password", PASSWORD),
                    ("next", "/account"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "sign-in of {email}");
        assert_eq!(location, "/account");
    }
}

async fn public_pages_show_the_map_stations_charts_and_clear_errors(site: Site) {
    site.pm25_history(10).await;
    let mut b = site.browser();
    let resp = b.client.get(b.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("HttpOnly"));
    let home = resp.text().await.unwrap();
    assert!(
        home.contains(r#"href="/stations/s1""#),
        "the map links the station"
    );
    assert!(home.contains("Station s1: AQI"), "the map names its AQI");
    assert!(home.contains("Worst air now") && home.contains("Unhealthy for Sensitive Groups"));
    assert!(
        home.contains("PM2.5</strong>"),
        "the day-on-day trend of PM2.5"
    );
    // No inline code for the policy to block, and every script is a file of ours.
    assert!(!home.contains(" style=\"") && !home.contains("<style"));
    assert!(!home.contains("<script>") && home.contains(r#"<script src="/static/app."#));

    // The whole page without tiles: the HTML and every asset it links.
    let mut weight = home.len();
    for asset in ["app.css", "app.js", "favicon.svg"] {
        let url = ecocityhub_web::assets::url(asset);
        assert!(home.contains(url), "{asset} is linked by its hashed name");
        let resp = b.client.get(b.url(url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        weight += resp.bytes().await.unwrap().len();
    }
    assert!(weight < 200 * 1024, "the home page weighs {weight} bytes");
    let (status, _) = b.get("/static/app.000000000000.css").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A station: latest values with the advice, the history chart with thresholds, CSV.
    let (status, page) = b.get("/stations/s1?parameter=pm25&range=week").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Latest values") && page.contains("PM2.5"));
    assert!(
        page.contains("Members of sensitive groups") || page.contains("Air quality is acceptable")
    );
    assert!(page.contains(r#"<figure class="chart" id="history-chart""#));
    assert!(page.contains(r#"<svg role="img" aria-label="Line chart of PM2.5"#));
    assert!(
        page.contains("Unhealthy for Sensitive Groups above 35.4<"),
        "the category lines are drawn"
    );
    assert!(page.contains("No forecast model serves PM2.5 here yet"));
    let csv_at = page.find("/api/v1/stations/s1/readings?").unwrap();
    let csv_url = page[csv_at..page[csv_at..].find('"').unwrap() + csv_at].replace("&#38;", "&");
    let csv = b.client.get(b.url(&csv_url)).send().await.unwrap();
    assert_eq!(csv.status(), StatusCode::OK, "{csv_url}");
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let rows = csv.text().await.unwrap().lines().count();
    assert!(rows > 7 * 24 - 5, "a week of hourly readings: {rows} rows");
    let (_, year) = b.get("/stations/s1?parameter=pm25&range=year").await;
    assert!(year.contains("(daily means)"));

    // Errors are pages that say what to do, in the site's frame, with the right status.
    let (status, page) = b.get("/stations/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("There is no station") && page.contains("<title>Page not found"));
    let (status, page) = b.get("/stations/s1?range=decade").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("choose day, week, month or year"));
    let (status, page) = b.get("/stations/s1?parameter=no2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("has no Nitrogen dioxide"));
    let (status, page) = b.get("/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("There is no page at /no/such/page"));
    let api = b.client.get(b.url("/api/v1/nothing")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.headers()["content-type"], "application/problem+json");
}

async fn a_citizen_signs_up_confirms_signs_in_changes_the_password_and_signs_out(site: Site) {
    let mut b = site.browser();
    // With stations but no readings yet, the home page says so instead of showing blanks.
    let (status, home) = b.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("No station has a current air quality index yet"));
    assert!(home.contains("Not enough data for a day-on-day comparison yet"));
    let (_, page) = b.get("/stations/s2").await;
    assert!(page.contains("This station has no readings yet."));
    let email = "ada@example.org";
    b.get("/account/sign-up").await;

    // Forms without the token, or from another site, are refused and change nothing.
    let resp = b
        .client
        .post(b.url("/account/sign-up"))
        .form(&[("email", email), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Reload the page and try again"));
    let resp = b
        .client
        .post(b.url("/account/sign-up"))
        .header("origin", "https://evil.example")
        .form(&[
            ("csrf", b.csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(site.store.user_by_email(email).await.unwrap().is_none());

    // A weak password is refused with the reason, and the address is kept in the form.
    let (status, _, page) = b
        .post(
            "/account/sign-up",
            &[("email", email), ("password", "short")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("class=\"flash error\"") && page.contains(&format!("value=\"{email}\"")));

    let (status, location, page) = b
        .post(
            "/account/sign-up",
            &[("email", email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert!(location.starts_with("/account/confirm?email=ada%40example.org"));
    let (_, page) = b.get(&location).await;
    assert!(page.contains("a confirmation code is on its way"));

    // Signing in before confirming says what to do.
    let (status, _, page) = b
        .post(
            "/account/sign-in",
            &[("email", email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Confirm your e-mail address first"));

    let (status, _, page) = b
        .post("/account/confirm", &[("email", email), ("code", "000000")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("The code is not valid or has expired"));
    let code = site.last_code(email).await;
    let (status, location, _) = b
        .post("/account/confirm", &[("email", email), ("code", &code)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.starts_with("/account/sign-in?confirmed=1"));

    let (status, _, page) = b
        .post(
            "/account/sign-in",
            &[("email", email), ("password", "wrong password!")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Incorrect e-mail address or password."));
    // Back where the visitor wanted to go; the session cookie is HttpOnly and Lax.
    let resp = b
        .client
        .post(b.url("/account/sign-in"))
        .form(&[
            ("csrf", b.csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
            ("next", "/stations/s1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/stations/s1");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("ecch-session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
    );
    let session = cookie["ecch-session=".len()..cookie.find(';').unwrap()].to_string();

    let (status, page) = b.get("/account").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(email) && page.contains("citizen"));
    // A citizen has no admin menu and no admin page.
    assert!(!page.contains(r#"href="/admin""#));
    let (status, _) = b.get("/admin/stations").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = b.post("/admin/stations/s1/keys", &[("label", "x")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A new password ends the other sign-ins but keeps this browser signed in.
    let (status, _, page) = b
        .post(
            "/account/password",
            &[
                ("old_password", "not it at all"),
                ("new_password", "Another-good-passw0rd"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("The current password is not correct."));
    let (status, location, _) = b
        .post(
            "/account/password",
            &[
                ("old_password", PASSWORD),
                ("new_password", "Another-good-passw0rd"),
            ],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/account?changed=1")
    );
    let (status, page) = b.get("/account?changed=1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Your password is changed"));
    let stale = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
        .get(b.url("/account"))
        .header("cookie", format!("ecch-session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.status(),
        StatusCode::SEE_OTHER,
        "the old session ended"
    );

    let (status, location, _) = b.post("/account/sign-out", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/account/sign-in?signed_out=1")
    );
    let (status, _) = b.get("/account").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = b.get("/account/sign-in?signed_out=1").await;
    assert!(page.contains("You are signed out."));
}

async fn operators_manage_stations_and_keys_and_admins_users_models_and_jobs(site: Site) {
    site.pm25_history(21).await;
    site.user("olga@example.org", &[Role::Operator]).await;
    let admin = site.user("root@example.org", &[Role::Admin]).await;
    let citizen = site.user("carl@example.org", &[Role::Citizen]).await;

    // An operator edits stations and makes device keys, which are shown once and work.
    let mut op = site.browser();
    op.sign_in("olga@example.org").await;
    let (_, page) = op.get("/account").await;
    assert!(page.contains(r#"href="/admin""#) && page.contains(">Operations<"));
    let (status, page) = op.get("/admin/stations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"href="/admin/stations/s1""#));
    let (status, _, page) = op
        .post(
            "/admin/stations/s1",
            &[
                ("name", "Alexanderplatz"),
                ("area", "Mitte"),
                ("lat", "north"),
                ("lon", "13.4"),
                ("active", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("The latitude must be a number"));
    let (status, _, page) = op
        .post(
            "/admin/stations/s1",
            &[
                ("name", "Alexanderplatz"),
                ("area", "Mitte"),
                ("lat", "52.5219"),
                ("lon", "13.4132"),
                ("active", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("The station is saved."));
    assert_eq!(
        site.store
            .station(&StationId::parse("s1").unwrap())
            .await
            .unwrap()
            .unwrap()
            .name,
        "Alexanderplatz"
    );
    let (status, _, page) = op
        .post("/admin/stations/s1/keys", &[("label", "roof")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let at =
        page.find(r#"id="new-key">"#).expect("the new key is shown") + r#"id="new-key">"#.len();
    let key = page[at..at + page[at..].find('<').unwrap()].to_string();
    let (_, again) = op.get("/admin/stations/s1").await;
    assert!(!again.contains(&key), "the key is shown only once");
    let prefix = site
        .store
        .device_keys(&StationId::parse("s1").unwrap())
        .await
        .unwrap()[0]
        .prefix
        .clone();
    assert!(again.contains(&prefix) && again.contains("roof"));
    let send = |key: String| {
        let url = format!("{}/api/v1/readings", site.base);
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&serde_json::json!([{"parameter": "no2", "time": Utc::now().to_rfc3339(), "value": 40}]))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert!(send(key.clone()).await.is_success());
    let (status, _, page) = op
        .post(&format!("/admin/stations/s1/keys/{prefix}/revoke"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("is revoked"));
    assert_eq!(send(key).await, StatusCode::UNAUTHORIZED);

    // Models, jobs and users are not the operator's: the pages and the actions say no.
    for path in ["/admin/models", "/admin/jobs", "/admin/users"] {
        assert_eq!(op.get(path).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, _, _) = op
        .post(&format!("/admin/users/{}", citizen.id), &[("admin", "on")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        site.store.user(&citizen.id).await.unwrap().unwrap().roles,
        vec![Role::Citizen]
    );

    // An admin changes groups (but cannot demote themselves)…
    let mut root = site.browser();
    root.sign_in("root@example.org").await;
    let (status, page) = root.get("/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("carl@example.org"));
    let (status, _, page) = root
        .post(
            &format!("/admin/users/{}", citizen.id),
            &[("citizen", "on"), ("operator", "on")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("The groups of carl@example.org are saved."));
    assert_eq!(
        site.store.user(&citizen.id).await.unwrap().unwrap().roles,
        vec![Role::Citizen, Role::Operator]
    );
    let (status, _, page) = root
        .post(&format!("/admin/users/{}", admin.id), &[("citizen", "on")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("You cannot take the admin role from yourself"));

    // …trains a model, follows the job, and promotes and rolls back versions.
    let (status, _, page) = root
        .post(
            "/admin/jobs",
            &[("station", "nowhere"), ("parameter", "pm25")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("class=\"flash error\""));
    let mut versions = Vec::new();
    for _ in 0..2 {
        let (status, location, _) = root
            .post("/admin/jobs", &[("station", "s1"), ("parameter", "pm25")])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, page) = root.get(&location).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(&format!(r#"data-job-status-url="{location}/status""#)));
        let mut finished = serde_json::Value::Null;
        for _ in 0..600 {
            let job: serde_json::Value = root
                .client
                .get(root.url(&format!("{location}/status")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !["queued", "running"].contains(&job["status"].as_str().unwrap()) {
                finished = job;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(finished["status"], "succeeded", "{finished}");
        versions.push(location);
    }
    let models = site
        .store
        .models(
            Some(&StationId::parse("s1").unwrap()),
            Some(Parameter::Pm25),
        )
        .await
        .unwrap();
    assert_eq!(models.len(), 2);
    let (newest, first) = (&models[0], &models[1]);
    assert_eq!(
        (first.status.as_str(), newest.status.as_str()),
        ("serving", "candidate")
    );
    let (status, page) = root.get("/admin/models").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!("/admin/models/{}/promote", newest.id)));
    assert!(
        page.contains("error than persistence"),
        "{}",
        &page[page.find("<tbody>").unwrap_or(0)..]
    );
    let (status, _, page) = root
        .post(&format!("/admin/models/{}/promote", newest.id), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Version 2 now serves"));
    let (_, _, page) = root
        .post(
            "/admin/models/rollback",
            &[("station", "s1"), ("parameter", "pm25")],
        )
        .await;
    assert!(page.contains("Rolled back: version 1 serves"), "{page}");

    // The model's report is a page, with its charts from the API.
    let (status, page) = root.get(&format!("/models/{}", newest.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<table>"), "the report's score table");
    assert!(page.contains(&format!(r#"src="/api/v1/ml/models/{}/report/"#, newest.id)));
    assert_eq!(root.get("/models/999999").await.0, StatusCode::NOT_FOUND);

    // The station page now shows the forecast and its skill in words, with a CSV link.
    let (_, page) = root.get("/stations/s1?parameter=pm25").await;
    assert!(page.contains(r#"id="forecast-chart""#));
    assert!(page.contains("forecasts 24 h ahead were off by"));
    assert!(page.contains("/api/v1/stations/s1/forecast?parameter=pm25&#38;format=csv"));
    let csv = root
        .client
        .get(root.url("/api/v1/stations/s1/forecast?parameter=pm25&format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("time,horizon_hours,value,lower,upper,unit,aqi,category\n"));
    assert_eq!(csv.lines().count(), 25);
}

/// `next` after signing in is a clean local path or nothing (a tab or newline could take the
/// browser to another host or break the header), and a form's `Origin` is compared with the
/// configured public origin only, never with the Host header the client chose.
async fn sign_in_goes_only_to_clean_local_paths_and_forms_only_from_this_origin(site: Site) {
    site.user("nia@example.org", &[Role::Citizen]).await;
    for (next, expected) in [
        ("/%09/evil.example", "/account"),
        ("/\t/evil.example", "/account"),
        ("/\n/evil.example", "/account"),
        ("/\r/evil.example", "/account"),
        ("/\x0b/evil.example", "/account"),
        ("/\x0c/evil.example", "/account"),
        ("/\x1f/evil.example", "/account"),
        ("//evil.example", "/account"),
        ("/stations/s1", "/stations/s1"),
    ] {
        let mut browser = site.browser();
        browser.get("/account/sign-in").await;
        // `%09` reaches the server decoded from the form, as a browser sends it.
        let next = next.replace("%09", "\t");
        let (status, location, _) = browser
            .post(
                "/account/sign-in",
                &[
                    ("email", "nia@example.org"),
                    ("password", PASSWORD),
                    ("next", &next),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "next={next:?}");
        assert_eq!(location, expected, "next={next:?}");
    }

    let mut browser = site.browser();
    browser.get("/account/sign-in").await;
    let csrf = browser.csrf.clone();
    let form = [
        ("csrf", csrf.as_str()),
        ("email", "nia@example.org"),
        ("password", PASSWORD),
    ];
    // A rebinding page's request: its own name in both Origin and Host.
    let host = site
        .base
        .trim_start_matches("http://")
        .replace("127.0.0.1", "rebound.example");
    let resp = browser
        .client
        .post(browser.url("/account/sign-in"))
        .header("origin", format!("http://{host}"))
        .header("host", host)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

/// Rows of the flagged-readings table on a station's operations page: (parameter, flag).
fn flagged_rows(page: &str) -> Vec<(String, String)> {
    page.split("<tr data-parameter=\"")
        .skip(1)
        .map(|row| {
            let attr = |name: &str| {
                let at = row.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                row[at..at + row[at..].find('"').unwrap()].to_string()
            };
            (row[..row.find('"').unwrap()].to_string(), attr("data-flag"))
        })
        .collect()
}

async fn operators_confirm_or_reject_what_the_checks_flagged(site: Site) {
    site.pm25_history(2).await;
    site.user("olga@example.org", &[Role::Operator]).await;
    let s1 = StationId::parse("s1").unwrap();
    let spike = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(3);
    site.store
        .insert_readings(&[Reading {
            station: s1.clone(),
            parameter: Parameter::Pm25,
            time: spike,
            value: 480.0,
            flag: QualityFlag::Valid,
        }])
        .await
        .unwrap();
    let finding = |kind: &str| ecocityhub_store::ml::AnomalyRecord {
        station: s1.clone(),
        parameter: Parameter::Pm25,
        time: spike,
        kind: kind.into(),
        value: 480.0,
        score: 24.0,
        detail: format!("{kind} of 480 against a median of 30"),
        detected_at: Utc::now(),
    };
    site.store
        .record_anomalies(&[finding("spike"), finding("jump")])
        .await
        .unwrap();

    let mut op = site.browser();
    op.sign_in("olga@example.org").await;
    let (_, public) = op.get("/stations/s1").await;
    assert!(public.contains(r#"href="/admin/stations/s1#flagged""#));
    let (status, page) = op.get("/admin/stations/s1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flagged_rows(&page), [("pm25".into(), "suspect".into())]);
    assert!(
        page.contains("spike of 480") && page.contains("jump of 480"),
        "both findings, one row"
    );
    assert!(page.contains("Confirm valid") && page.contains("Mark invalid"));

    let time = spike.to_rfc3339();
    let flag_of = || async {
        site.store
            .readings(
                &s1,
                Parameter::Pm25,
                spike.timestamp(),
                spike.timestamp() + 1,
                1,
            )
            .await
            .unwrap()[0]
            .flag
    };
    // Bad verdicts are refused with the reason and change nothing.
    for (form, status, says) in [
        (
            [
                ("parameter", "pm25"),
                ("time", "yesterday"),
                ("flag", "valid"),
            ],
            StatusCode::BAD_REQUEST,
            "yesterday",
        ),
        (
            [
                ("parameter", "pm25"),
                ("time", time.as_str()),
                ("flag", "great"),
            ],
            StatusCode::BAD_REQUEST,
            "great",
        ),
        (
            [
                ("parameter", "pm25"),
                ("time", "2001-01-01T00:00:00Z"),
                ("flag", "valid"),
            ],
            StatusCode::NOT_FOUND,
            "has no pm25 reading",
        ),
    ] {
        let (got, _, page) = op.post("/admin/stations/s1/readings/flag", &form).await;
        assert_eq!(got, status, "{form:?}");
        assert!(page.contains(says), "{form:?}: {page}");
        assert_eq!(flag_of().await, QualityFlag::Suspect);
    }

    // Confirmed valid, it counts again; then marked invalid after all.
    let (status, _, page) = op
        .post(
            "/admin/stations/s1/readings/flag",
            &[("parameter", "pm25"), ("time", &time), ("flag", "valid")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("is now valid (it was suspect)"), "{page}");
    assert_eq!(flag_of().await, QualityFlag::Valid);
    assert_eq!(flagged_rows(&page), [("pm25".into(), "valid".into())]);
    assert!(!page.contains("Confirm valid"));
    let (status, _, page) = op
        .post(
            "/admin/stations/s1/readings/flag",
            &[("parameter", "pm25"), ("time", &time), ("flag", "invalid")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flag_of().await, QualityFlag::Invalid);
    assert_eq!(flagged_rows(&page), [("pm25".into(), "invalid".into())]);

    // A citizen may not.
    site.user("carl@example.org", &[Role::Citizen]).await;
    let mut citizen = site.browser();
    citizen.sign_in("carl@example.org").await;
    let (_, public) = citizen.get("/stations/s1").await;
    assert!(!public.contains("/admin/stations/s1"));
    let (status, _, _) = citizen
        .post(
            "/admin/stations/s1/readings/flag",
            &[("parameter", "pm25"), ("time", &time), ("flag", "valid")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(flag_of().await, QualityFlag::Invalid);
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = ecocityhub_store::connect(&super::testing::sqlite_url(dir.path())).await.unwrap();
                    super::$name(super::spawn_site(std::sync::Arc::new(store), Some(dir)).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = super::testing::fresh_postgres_url().await else { return };

                    let store = ecocityhub_store::connect(&url).await.unwrap();
                    super::$name(super::spawn_site(std::sync::Arc::new(store), None).await).await;
                }
            )*
        }
    };
}

both_backends!(
    public_pages_show_the_map_stations_charts_and_clear_errors,
    a_citizen_signs_up_confirms_signs_in_changes_the_password_and_signs_out,
    operators_manage_stations_and_keys_and_admins_users_models_and_jobs,
    operators_confirm_or_reject_what_the_checks_flagged,
    sign_in_goes_only_to_clean_local_paths_and_forms_only_from_this_origin,
);
