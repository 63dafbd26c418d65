//! The attacks of the security review (issue 12), each tried against the real API on SQLite and
//! on PostgreSQL: stolen codes through crafted redirect URIs, guessed reset codes, sign-up
//! floods, tokens that outlive their roles, lock-outs of the real owner, and the bad inputs that
//! used to answer 500 or echo megabytes.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use ecocityhub_store::Store;
use reqwest::StatusCode;
use serde_json::{json, Value};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjtZyBxkM";
const CALLBACK: &str = "http://127.0.0.1:9999/callback";

/// A client whose requests come from `ip` (any 127.x.y.z is this machine).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

fn authorize_params<'a>(redirect_uri: &'a str, response_type: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", response_type),
        ("client_id", "ecocityhub-web"),
        ("redirect_uri", redirect_uri),
        ("scope", "openid ecocityhub/api ecocityhub/admin"),
        ("state", "st"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

/// Waits until `email` has been sent more than `before` messages; returns the newest code.
async fn next_code(app: &TestApp, email: &str, before: usize) -> String {
    for _ in 0..200 {
        if app.store.outbox(email).await.unwrap().len() > before {
            return app.last_code(email).await;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no new message reached {email}");
}

async fn sent_to(app: &TestApp, email: &str) -> usize {
    app.store.outbox(email).await.unwrap().len()
}

// ---- 1. redirect URIs ---------------------------------------------------------------------------

async fn crafted_redirect_uris_are_shown_an_error_never_sent_a_code(app: TestApp) {
    let browser = browser();
    for evil in [
        "http://127.0.0.1:1@evil.example/cb",
        "http://localhost:@evil.example/cb",
        "http://[::1]:@evil.example/cb",
        "http://localhost:9999/cb",
        "http://127.0.0.1:9999/cb\r\nX-Injected: 1",
        "http://127.0.0.1:9999/cb#fragment",
    ] {
        // `x` would be answered by a redirect with an error: a zero-click open redirect.
        for response_type in ["code", "x"] {
            let resp = browser
                .get(app.url("/oauth2/authorize"))
                .query(&authorize_params(evil, response_type))
                .send()
                .await
                .unwrap();
            assert!(
                resp.headers().get("location").is_none(),
                "{evil:?} ({response_type}) was redirected to"
            );
            let body = problem(resp, StatusCode::BAD_REQUEST).await;
            assert!(body["detail"].as_str().unwrap().contains("redirect_uri"));
        }
    }
    // The loopback rule still lets native apps in, on any port, over IPv4 and IPv6.
    for good in [CALLBACK, "http://[::1]:4321/cb"] {
        let resp = browser
            .get(app.url("/oauth2/authorize"))
            .query(&authorize_params(good, "code"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{good}");
    }
}

// ---- 2. codes -------------------------------------------------------------------------------------

async fn reset_codes_cannot_be_guessed_by_asking_for_new_ones(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let app = spawn_app_with(store, dir, |c| {
        c.identity.code_requests_per_ip_per_minute = 1_000;
    })
    .await;
    let email = "gus@example.org";
    app.sign_up_confirmed(email).await;
    let wrong = json!({"email": email, "code": "not-it", "new_password": "N3w-passphrase!"});
    // Each new code used to start the count of wrong guesses again: four wrong guesses per code
    // (below the per-code limit of five), three codes.
    let mut guesses = 0;
    for round in 0..3 {
        let before = sent_to(&app, email).await;
        let resp = app
            .post_auth("forgot-password", json!({"email": email}))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "round {round}");
        next_code(&app, email, before).await;
        for _ in 0..4 {
            if guesses == 10 {
                break;
            }
            let resp = app.post_auth("reset-password", wrong.clone()).await;
            problem(resp, StatusCode::BAD_REQUEST).await;
            guesses += 1;
        }
    }
    assert_eq!(guesses, 10);
    // Ten wrong guesses in the hour: even the right code is not checked now.
    let code = app.last_code(email).await;
    let right = json!({"email": email, "code": code, "new_password": "N3w-passphrase!"});
    let refused = problem(
        app.post_auth("reset-password", right.clone()).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert!(refused["detail"].as_str().unwrap().contains("wrong codes"));
    // The password is unchanged.
    assert_eq!(app.sign_in(email, PASSWORD).await.status(), StatusCode::OK);
    // So is confirmation with a code for the same address.
    let confirm = app
        .post_auth("confirm", json!({"email": email, "code": code}))
        .await;
    problem(confirm, StatusCode::TOO_MANY_REQUESTS).await;
}

async fn codes_sent_to_an_address_and_requests_from_a_client_are_capped(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let app = spawn_app_with(store, dir, |c| {
        c.identity.code_requests_per_ip_per_minute = 1_000;
    })
    .await;
    // Five codes an hour per address, account or not (the answers stay alike).
    for email in ["ida@example.org", "nobody@example.org"] {
        for i in 0..5 {
            let resp = app
                .post_auth("forgot-password", json!({"email": email}))
                .await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED, "{email} #{i}");
        }
        let sixth = app
            .post_auth("forgot-password", json!({"email": email}))
            .await;
        problem(sixth, StatusCode::TOO_MANY_REQUESTS).await;
        let resend = app.post_auth("resend-code", json!({"email": email})).await;
        problem(resend, StatusCode::TOO_MANY_REQUESTS).await;
    }
    // One client address may ask about codes ten times a minute, whatever the addresses.
    let strict = spawn_app(app.store.clone(), None).await;
    let client = client_from([127, 0, 0, 3]);
    let mut statuses = Vec::new();
    for i in 0..11 {
        let resp = client
            .post(strict.url("/api/v1/auth/resend-code"))
            .json(&json!({"email": format!("p{i}@example.org")}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status());
    }
    assert!(statuses[..10].iter().all(|s| *s == StatusCode::ACCEPTED));
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    // Another client is not affected.
    let other = client_from([127, 0, 0, 4])
        .post(strict.url("/api/v1/auth/confirm"))
        .json(&json!({"email": "p0@example.org", "code": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
}

// ---- 3. floods --------------------------------------------------------------------------------------

async fn a_flood_of_sign_ups_waits_in_a_bounded_queue_or_is_told_to_retry(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let app = spawn_app_with(store, dir, |c| {
        c.identity.hashing_concurrency = 1;
        c.identity.hashing_queue = 2;
        c.identity.sign_ups_per_ip_per_hour = 1_000;
    })
    .await;
    let sign_ups = (0..24).map(|i| {
        app.post_auth(
            "sign-up",
            json!({"email": format!("flood{i}@example.org"), "password": PASSWORD}),
        )
    });
    let answers = futures::future::join_all(sign_ups).await;
    let mut accepted = 0;
    let mut busy = 0;
    for resp in answers {
        match resp.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(resp.headers().contains_key("retry-after"));
                let body = problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
                assert_eq!(body["code"], "busy");
                busy += 1;
            }
            other => panic!("a sign-up answered {other}"),
        }
    }
    assert!(accepted >= 3, "one hashing and two waiting: {accepted}");
    assert!(busy > 0, "a full queue must refuse ({accepted} accepted)");
    // Exactly the accepted ones are accounts; the refused stored nothing.
    assert_eq!(app.store.users().await.unwrap().len(), accepted);
    // The queue drains: a sign-up afterwards is accepted.
    let later = app
        .post_auth(
            "sign-up",
            json!({"email": "after@example.org", "password": PASSWORD}),
        )
        .await;
    assert_eq!(later.status(), StatusCode::ACCEPTED);
}

async fn sign_ups_from_one_client_address_are_throttled(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let app = spawn_app_with(store, dir, |c| c.identity.sign_ups_per_ip_per_hour = 3).await;
    let client = client_from([127, 0, 0, 5]);
    let sign_up = |i: usize| {
        client
            .post(app.url("/api/v1/auth/sign-up"))
            .json(&json!({"email": format!("t{i}@example.org"), "password": PASSWORD}))
            .send()
    };
    for i in 0..3 {
        assert_eq!(sign_up(i).await.unwrap().status(), StatusCode::ACCEPTED);
    }
    problem(sign_up(3).await.unwrap(), StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(app.store.users().await.unwrap().len(), 3);
}

// ---- 4. roles -------------------------------------------------------------------------------------

async fn set_roles(app: &TestApp, admin: &str, user_id: &str, roles: &[&str]) -> StatusCode {
    app.client
        .patch(app.url(&format!("/api/v1/admin/users/{user_id}")))
        .bearer_auth(admin)
        .json(&json!({ "roles": roles }))
        .send()
        .await
        .unwrap()
        .status()
}

async fn a_demoted_or_deleted_users_earlier_tokens_lose_their_power(app: TestApp) {
    let admin = app.admin_token().await;
    let email = "bea@example.org";
    app.sign_up_confirmed(email).await;
    let bea = app.store.user_by_email(email).await.unwrap().unwrap();
    assert_eq!(
        set_roles(&app, &admin, &bea.id, &["admin"]).await,
        StatusCode::OK
    );
    let tokens = app.tokens(email).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let users = "/api/v1/admin/users";
    assert_eq!(app.get_as(&access, users).await.status(), StatusCode::OK);

    // Demoted: her earlier token lists no users and cannot promote her back.
    assert_eq!(
        set_roles(&app, &admin, &bea.id, &["citizen"]).await,
        StatusCode::OK
    );
    problem(app.get_as(&access, users).await, StatusCode::FORBIDDEN).await;
    assert_eq!(
        set_roles(&app, &access, &bea.id, &["admin"]).await,
        StatusCode::FORBIDDEN
    );
    // The role change ended her sign-ins: the refresh token does not mint the old roles again.
    let refreshed = app
        .post_auth("refresh", json!({"refresh_token": tokens["refresh_token"]}))
        .await;
    problem(refreshed, StatusCode::UNAUTHORIZED).await;

    // A change made elsewhere (another process, straight in the store) counts within seconds.
    assert_eq!(
        set_roles(&app, &admin, &bea.id, &["admin"]).await,
        StatusCode::OK
    );
    let access = app.tokens(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.get_as(&access, users).await.status(), StatusCode::OK);
    let mut demoted = app.store.user(&bea.id).await.unwrap().unwrap();
    demoted.roles = vec![ecocityhub_identity::Role::Citizen];
    app.store.update_user(&demoted).await.unwrap();
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = app.get_as(&access, users).await.status();
        if status == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::FORBIDDEN, "still an admin 10 s later");

    // A deleted admin's token changes no one.
    let email = "gone@example.org";
    app.sign_up_confirmed(email).await;
    let gone = app.store.user_by_email(email).await.unwrap().unwrap();
    assert_eq!(
        set_roles(&app, &admin, &gone.id, &["admin"]).await,
        StatusCode::OK
    );
    let access = app.tokens(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted = app
        .client
        .delete(app.url("/api/v1/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        set_roles(&app, &access, &bea.id, &["admin"]).await,
        StatusCode::UNAUTHORIZED
    );
    problem(app.get_as(&access, users).await, StatusCode::UNAUTHORIZED).await;
}

// ---- 5. lock-outs ----------------------------------------------------------------------------------

async fn a_guesser_locks_out_only_itself_not_the_owner(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let app = spawn_app_with(store, dir, |c| {
        c.identity.attempts_per_ip_per_minute = 10_000;
        c.identity.address_failures_per_hour = 12;
    })
    .await;
    let email = "owner@example.org";
    app.sign_up_confirmed(email).await;
    let owner = client_from([127, 0, 0, 1]);
    let sign_in = |client: &reqwest::Client, password: &str| {
        client
            .post(app.url("/api/v1/auth/sign-in"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    assert_eq!(
        sign_in(&owner, PASSWORD).await.unwrap().status(),
        StatusCode::OK
    );

    // An attacker at one address: five wrong passwords lock that address out, even with the
    // right password; the owner elsewhere signs in as ever.
    let attacker = client_from([127, 0, 0, 2]);
    for _ in 0..5 {
        let resp = sign_in(&attacker, "Wr0ng-guess!").await.unwrap();
        problem(resp, StatusCode::UNAUTHORIZED).await;
    }
    problem(
        sign_in(&attacker, PASSWORD).await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(
        sign_in(&owner, PASSWORD).await.unwrap().status(),
        StatusCode::OK
    );

    // Attackers at many addresses: past the address's hourly allowance only clients that signed
    // in to it before may still try; the owner's is one of them.
    for n in 10..14 {
        let client = client_from([127, 0, 0, n]);
        for _ in 0..2 {
            sign_in(&client, "Wr0ng-guess!").await.unwrap();
        }
    }
    let newcomer = client_from([127, 0, 0, 77]);
    let refused = problem(
        sign_in(&newcomer, PASSWORD).await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("signed in to from where"));
    assert_eq!(
        sign_in(&owner, PASSWORD).await.unwrap().status(),
        StatusCode::OK
    );

    // A password reset lifts it for every client.
    let before = sent_to(&app, email).await;
    app.post_auth("forgot-password", json!({"email": email}))
        .await;
    let code = next_code(&app, email, before).await;
    let reset = app
        .post_auth(
            "reset-password",
            json!({"email": email, "code": code, "new_password": "N3w-passphrase!"}),
        )
        .await;
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(
        sign_in(&newcomer, "N3w-passphrase!")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

// ---- 7. the sign-in form of the code flow ------------------------------------------------------------

async fn the_code_flows_sign_in_form_has_the_sites_headers_and_a_csrf_token(app: TestApp) {
    app.sign_up_confirmed("hal@example.org").await;
    let browser = browser();
    let params = authorize_params(CALLBACK, "code");
    let page = browser
        .get(app.url("/oauth2/authorize"))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9999"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csrf = hidden_field(&page.text().await.unwrap(), "csrf").unwrap();

    let mut form = params.clone();
    form.extend([("email", "hal@example.org"), ("password", PASSWORD)]);
    // Without the token (a form posted from elsewhere cannot know it).
    let stranger = common::browser();
    let resp = stranger
        .post(app.url("/oauth2/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("location").is_none());
    problem(resp, StatusCode::BAD_REQUEST).await;
    let mut with_token = form.clone();
    with_token.push(("csrf", &csrf));
    // With the token but from another origin (the Host header is not trusted for this).
    let resp = browser
        .post(app.url("/oauth2/authorize"))
        .header("origin", "http://evil.example")
        .header("host", "evil.example")
        .form(&with_token)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("location").is_none());
    problem(resp, StatusCode::FORBIDDEN).await;
    // From the page itself.
    let resp = browser
        .post(app.url("/oauth2/authorize"))
        .header("origin", format!("http://{}", app.addr))
        .form(&with_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{CALLBACK}?code=")),
        "{location}"
    );
}

// ---- 8, 9. bad input --------------------------------------------------------------------------------

async fn bad_input_is_a_4xx_problem_that_echoes_little(app: TestApp) {
    // A model with a report, so the file name alone decides.
    let model = ecocityhub_store::ml::NewModel {
        station: ecocityhub_domain::StationId::parse("s1").unwrap(),
        parameter: ecocityhub_domain::Parameter::Pm25,
        created_at: Utc::now(),
        checksum: "0".repeat(64),
        size_bytes: 1,
        training_from: Utc::now(),
        training_to: Utc::now(),
        data_fingerprint: "f".into(),
        code_version: "test".into(),
        metrics: "{}".into(),
        job_id: None,
    };
    let record = app
        .store
        .insert_model(&model, &|v| format!("models/s1/pm25/v{v}/model.json.gz"))
        .await
        .unwrap();
    let folder = record.artifact_key.rsplit_once('/').unwrap().0;
    app.blobs
        .put(
            &format!("{folder}/forecast.svg"),
            bytes::Bytes::from_static(b"<svg/>"),
        )
        .await
        .unwrap();
    let base = format!("/api/v1/ml/models/{}/report", record.id);
    assert_eq!(
        app.get(&format!("{base}/forecast.svg")).await.status(),
        StatusCode::OK
    );
    for name in [
        "a%01.svg",
        "a%00.svg",
        "a%7F.svg",
        "%0d%0a.svg",
        "..%2Fx.svg",
    ] {
        problem(
            app.get(&format!("{base}/{name}")).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }

    // A 1.9 MB "address" is refused without being sent back.
    let huge = format!("{}@example.org", "a".repeat(1_900_000));
    let resp = app
        .post_auth("sign-up", json!({"email": huge, "password": PASSWORD}))
        .await;
    let body = problem(resp, StatusCode::BAD_REQUEST).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.len() < 600, "{} bytes echoed", detail.len());
    assert!(detail.contains("bytes in all"), "{detail}");
}

// ---- 10. ingest -------------------------------------------------------------------------------------

async fn a_csv_site_column_naming_another_station_is_refused(app: TestApp) {
    for body in [
        "time,site,parameter,value\n2024-03-01T00:00:00Z,s2,pm25,5\n",
        "time,station,site,parameter,value\n2024-03-01T00:00:00Z,s1,s2,pm25,5\n",
    ] {
        let resp = app.post(Some(&app.key), "text/csv", body.to_string()).await;
        if resp.status() == StatusCode::FORBIDDEN {
            problem(resp, StatusCode::FORBIDDEN).await;
        } else {
            let body = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert!(body["errors"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("differ"));
        }
    }
    assert_eq!(app.store.count_readings().await.unwrap(), 0);
    // Its own station under `site` is fine.
    let own = "time,site,parameter,value\n2024-03-01T00:00:00Z,s1,pm25,5\n";
    let resp = app.post(Some(&app.key), "text/csv", own.to_string()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(app.store.count_readings().await.unwrap(), 1);
}

// ---- 11. resend-code answers before it looks --------------------------------------------------------

/// Code delivery that holds every message until the test lets it go.
struct HeldDelivery {
    released: tokio::sync::Semaphore,
    sent: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ecocityhub_api::identity::CodeDelivery for HeldDelivery {
    async fn deliver(
        &self,
        recipient: &str,
        _subject: &str,
        _body: &str,
    ) -> ecocityhub_api::ApiResult<()> {
        let _go = self.released.acquire().await;
        self.sent.lock().unwrap().push(recipient.to_string());
        Ok(())
    }
}

async fn resend_code_answers_before_it_knows_whether_the_account_waits_for_a_code(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let held = Arc::new(HeldDelivery {
        released: tokio::sync::Semaphore::new(0),
        sent: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = spawn_app_delivering(listener, store, dir, |_| {}, Some(held.clone())).await;
    // An unconfirmed account, made in the store so that no code is pending delivery.
    let user = ecocityhub_store::identity::User {
        id: "u-una".into(),
        email: "una@example.org".into(),
        password_hash: ecocityhub_identity::password::hash(PASSWORD),
        roles: vec![ecocityhub_identity::Role::Citizen],
        confirmed: false,
        created_at: Utc::now(),
    };
    assert!(app.store.insert_user(&user).await.unwrap());
    // The answer comes while the code is still held: sending is not on the answer's path, so
    // its time cannot tell this account from an unknown or confirmed one.
    for email in ["una@example.org", "nobody@example.org"] {
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            app.post_auth("resend-code", json!({ "email": email })),
        )
        .await
        .expect("resend-code waited for the delivery");
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    assert!(held.sent.lock().unwrap().is_empty());
    held.released.add_permits(10);
    for _ in 0..200 {
        if !held.sent.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        *held.sent.lock().unwrap(),
        vec!["una@example.org".to_string()]
    );
}

// ---- 12. transport headers --------------------------------------------------------------------------

async fn api_answers_are_never_sniffed_and_https_ones_pin_https(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    let plain = spawn_app(store.clone(), dir).await;
    for path in ["/api/v1/stations", "/api/v1/nope", "/healthz"] {
        let resp = plain.get(path).await;
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert!(resp.headers().get("strict-transport-security").is_none());
    }
    let secure = spawn_app_with(store, None, |c| {
        c.identity.tokens.issuer = "https://air.example.org".into()
    })
    .await;
    let resp = secure.get("/api/v1/stations").await;
    let hsts = resp.headers()["strict-transport-security"]
        .to_str()
        .unwrap();
    assert!(hsts.contains("max-age=31536000"), "{hsts}");
    let json: Value = resp.json().await.unwrap();
    assert!(json.is_array());
}

both_backends!(
    crafted_redirect_uris_are_shown_an_error_never_sent_a_code,
    a_demoted_or_deleted_users_earlier_tokens_lose_their_power,
    the_code_flows_sign_in_form_has_the_sites_headers_and_a_csrf_token,
    bad_input_is_a_4xx_problem_that_echoes_little,
    a_csv_site_column_naming_another_station_is_refused,
);

mod own_config {
    use super::*;

    both_stores!(
        reset_codes_cannot_be_guessed_by_asking_for_new_ones,
        codes_sent_to_an_address_and_requests_from_a_client_are_capped,
        a_flood_of_sign_ups_waits_in_a_bounded_queue_or_is_told_to_retry,
        sign_ups_from_one_client_address_are_throttled,
        a_guesser_locks_out_only_itself_not_the_owner,
        resend_code_answers_before_it_knows_whether_the_account_waits_for_a_code,
        api_answers_are_never_sniffed_and_https_ones_pin_https,
    );
}
