//! The notification pages over HTTP (`notify`, `alerts`, the admin's deliveries): the real
//! site with the notification layer (no delivery worker, so what is queued stays in the
//! outbox to be looked at) on SQLite, driven like a browser without JavaScript (a cookie jar,
//! forms posted with their CSRF token). The other pages are tested in `tests/pages.rs`; the operators'
//! monitoring and audit pages in `observe`.

#[path = "../common/mod.rs"]
mod common;
mod observe;

use common::Browser;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use ecocityhub_api::{ApiConfig, AppState, Services};
use ecocityhub_domain::aqi::us_epa::Category;
use ecocityhub_domain::{GeoPoint, Station, StationId};
use ecocityhub_identity::{password, Role};
use ecocityhub_notify::rules::{RuleSpec, Trigger};
use ecocityhub_notify::Notifier;
use ecocityhub_store::identity::User;
use ecocityhub_store::notify::{DeliveryOutcome, DeliveryStatus};
use ecocityhub_store::{testing, Store};
use reqwest::{redirect, StatusCode};

use ecocityhub_web::WebConfig;

const PASSWORD: &str = "Correct-horse-battery-9";

struct Site {
    base: String,
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    _dir: tempfile::TempDir,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        ecocityhub_store::connect(&testing::sqlite_url(dir.path()))
            .await
            .unwrap(),
    );
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
    let base = format!("http://{}", listener.local_addr().unwrap());
    let notify = ecocityhub_notify::NotifyConfig {
        public_url: base.clone(),
        ..Default::default()
    };
    let (notifier, _worker) = ecocityhub_notify::open(store.clone(), &notify)
        .await
        .unwrap();
    let rules =
        ecocityhub_notify::RuleEngine::load(store.clone(), notifier.clone(), Default::default())
            .await
            .unwrap();
    let mut config = ApiConfig {
        latest_ttl: std::time::Duration::from_millis(0),
        ..ApiConfig::default()
    };
    config.identity.tokens.issuer = base.clone();
    let blobs: Arc<dyn ecocityhub_blobs::BlobStore> =
        Arc::new(ecocityhub_blobs::ObjectBlobs::in_memory());
    let services = Services {
        notifier: Some(notifier.clone()),
        rules: Some(Arc::new(rules)),
        ..Default::default()
    };
    let state = AppState::open_with(store.clone(), blobs, config, services)
        .await
        .unwrap();
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
        notifier,
        _dir: dir,
    }
}

impl Site {
    fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

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

    /// A signed-in browser of a new user.
    async fn signed_in(&self, email: &str, roles: &[Role]) -> (Browser, User) {
        let user = self.user(email, roles).await;
        let mut b = self.browser();
        b.get("/account/sign-in").await;
        let (status, location, _) = b
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
        (b, user)
    }

    /// The token of the confirmation link last queued for `endpoint`.
    async fn confirm_token(&self, endpoint: &str) -> String {
        let pending = self
            .store
            .deliveries(Some(DeliveryStatus::Pending), None, 100)
            .await
            .unwrap();
        let d = pending
            .iter()
            .find(|d| d.endpoint == endpoint && d.subject.contains("Confirm"))
            .expect("a confirmation was queued");
        let message = self.store.message(&d.message_id).await.unwrap().unwrap();
        let payload: serde_json::Value = serde_json::from_str(&message.payload).unwrap();
        payload["data"]["token"].as_str().unwrap().to_string()
    }
}

impl Browser {}

/// A station rule's form fields (quiet from 22:00, named "Home office"), with its channels.
fn form<'a>(
    threshold: &'a str,
    station: &'a str,
    quiet_end: &'a str,
    channels: &[&'a str],
) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("target", "station"),
        ("station", station),
        ("measure", "aqi"),
        ("threshold", threshold),
        ("trigger", "measured"),
        ("timezone", "Europe/Berlin"),
        ("quiet_start", "22:00"),
        ("quiet_end", quiet_end),
        ("label", "Home office"),
    ];
    fields.extend(channels.iter().map(|c| ("channel", *c)));
    fields
}

/// The id in the first `action="/account/alerts/{what}/{ID}/…"` of a page.
fn first_id(html: &str, what: &str) -> String {
    let prefix = format!("action=\"/account/alerts/{what}/");
    let at = html.find(&prefix).expect("a form for one") + prefix.len();
    html[at..].split('/').next().unwrap().to_string()
}

#[tokio::test]
async fn a_confirmation_link_asks_the_button_confirms_once_and_a_bad_one_says_why() {
    let site = site().await;
    let (mut b, user) = site.signed_in("ada@example.org", &[Role::Citizen]).await;
    b.get("/account/alerts").await;
    let (status, _, body) = b
        .post(
            "/account/alerts/channels",
            &[("protocol", "email"), ("endpoint", "ada.work@example.org")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("A confirmation link is on its way to ada.work@example.org"));
    assert!(body.contains("waiting for confirmation"));
    let token = site.confirm_token("ada.work@example.org").await;

    // Following the link (a mail scanner, a preview) only asks: the channel stays pending.
    let anonymous = site.browser();
    let link = format!("/notify/confirm?token={token}");
    for _ in 0..2 {
        let resp = anonymous
            .client
            .get(anonymous.url(&link))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body = resp.text().await.unwrap();
        assert!(body.contains("Confirm this channel"), "{body}");
        assert!(body.contains(r#"<form class="inline" method="post" action="/notify/confirm">"#));
        assert!(body.contains(&format!(r#"name="token" value="{token}""#)));
        assert!(body.contains(r#"<button type="submit">Confirm</button>"#));
        assert!(!body.contains("<script>") && !body.contains("onclick"));
        assert!(!body.contains("the channel is confirmed"));
    }
    let subs = site.store.subscriptions_of(&user.id).await.unwrap();
    assert_eq!(subs[0].status, "pending");

    // Pressing the button (anyone with the link: no sign-in, no CSRF token) confirms it.
    let resp = anonymous
        .client
        .post(anonymous.url("/notify/confirm"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body = resp.text().await.unwrap();
    assert!(body.contains("the channel is confirmed"), "{body}");
    assert!(body.contains("ada.work@example.org"));
    let subs = site.store.subscriptions_of(&user.id).await.unwrap();
    assert_eq!(subs[0].status, "confirmed");

    // Used, unknown, or missing: a 404 page that says what to do.
    let mut other = site.browser();
    for path in [
        "/notify/confirm?token=not-a-token",
        "/notify/confirm?token=%3Cscript%3Ealert(1)%3C%2Fscript%3E-padding-padding",
        "/notify/confirm",
    ] {
        let (status, body) = other.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body.contains("unknown, already used or expired (links last 3 days)"));
        assert!(!body.contains("name=\"token\""));
    }
    for token in [
        token.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "",
    ] {
        let resp = other
            .client
            .post(other.url("/notify/confirm"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{token}");
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("unknown, already used or expired"));
    }
}

#[tokio::test]
async fn unsubscribe_asks_on_get_and_removes_on_post_or_one_click() {
    let site = site().await;
    let (mut b, user) = site.signed_in("bo@example.org", &[Role::Citizen]).await;
    b.get("/account/alerts").await;
    for _ in 0..2 {
        let (status, _, body) = b
            .post(
                "/account/alerts/channels",
                &[("protocol", "email"), ("endpoint", "bo@example.org")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The account's own address needs no confirmation.
        assert!(body.contains("E-mail is added as a channel"), "{body}");
    }
    let subs = site.store.subscriptions_of(&user.id).await.unwrap();
    assert_eq!(subs.len(), 2);
    let link = |id: &str| {
        site.notifier
            .unsubscribe_url(id)
            .trim_start_matches(&site.base)
            .to_string()
    };

    // A GET (a link scanner, a preview) only asks.
    let mut anonymous = site.browser();
    let (status, body) = anonymous.get(&link(&subs[0].id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Stop the e-mail notifications"), "{body}");
    assert!(body.contains(&format!("action=\"{}\"", link(&subs[0].id))));
    assert_eq!(
        site.store.subscriptions_of(&user.id).await.unwrap().len(),
        2
    );

    // The page's button: no CSRF token, no session.
    let resp = anonymous
        .client
        .post(anonymous.url(&link(&subs[0].id)))
        .form(&[("unsubscribe", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("no more of these messages"));
    let left = site.store.subscriptions_of(&user.id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, subs[1].id);
    let (status, body) = anonymous.get(&link(&subs[0].id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("already been stopped"));

    // RFC 8058 one-click, as a mail provider posts it: a plain 200, no redirect.
    let resp = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
        .post(anonymous.url(&link(&subs[1].id)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("location").is_none());
    assert!(site
        .store
        .subscriptions_of(&user.id)
        .await
        .unwrap()
        .is_empty());

    // A forged link removes nothing.
    let forged = link(&subs[1].id).replace(&subs[1].id, "sub_other");
    let (status, body) = anonymous.get(&forged).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("not valid"));
    let resp = anonymous
        .client
        .post(anonymous.url(&forged))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn my_alerts_adds_tests_pauses_and_deletes_channels_and_rules() {
    let site = site().await;
    // Signed out: to the sign-in page and back.
    let (status, _) = site.browser().get("/account/alerts").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let (mut b, user) = site.signed_in("cy@example.org", &[Role::Citizen]).await;
    let (_, account) = b.get("/account").await;
    assert!(account.contains("href=\"/account/alerts\""));
    let (status, page) = b.get("/account/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No channels yet") && page.contains("No alerts yet"));
    assert!(page.contains(r#"<option value="s1">Station s1 (s1)</option>"#));
    assert!(page.contains("data-live-events=\"/account/events\""));

    // Channels: a bad one is said on the page; the account's address and the live page work.
    let (status, _, body) = b
        .post(
            "/account/alerts/channels",
            &[
                ("protocol", "webhook"),
                ("endpoint", "http://10.0.0.1/hook"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("class=\"flash error\""), "{body}");
    assert!(body.contains("The destination URL is refused"), "{body}");
    assert!(body.contains("value=\"http://10.0.0.1/hook\""));
    let (status, _, _) = b
        .post(
            "/account/alerts/channels",
            &[("protocol", "email"), ("endpoint", "cy@example.org")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = b
        .post("/account/alerts/channels", &[("protocol", "live")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("This site, while open"));
    let channels = site.store.subscriptions_of(&user.id).await.unwrap();
    assert_eq!(channels.len(), 2);

    // A rule: a mistake keeps what was typed; then one for an area, one for a station.
    let (status, _, body) = b
        .post(
            "/account/alerts/rules",
            &[
                ("target", "area"),
                ("lat", "52.5"),
                ("lon", "13.4"),
                ("radius_km", "500"),
                ("measure", "pm25"),
                ("threshold", "unhealthy"),
                ("timezone", "Europe/Berlin"),
                ("label", "Home"),
                ("channel", &channels[0].id),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("at most 100 km"), "{body}");
    assert!(body.contains("value=\"500\"") && body.contains("value=\"Home\""));
    let (status, _, body) = b
        .post(
            "/account/alerts/rules",
            &[
                ("target", "area"),
                ("lat", "52.5"),
                ("lon", "13.4"),
                ("radius_km", "5"),
                ("measure", "pm25"),
                ("threshold", "unhealthy"),
                ("timezone", "Europe/Berlin"),
                ("quiet_start", "22:00"),
                ("quiet_end", "07:00"),
                ("channel", &channels[0].id),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("The alert is saved: The PM25 AQI within 5 km"));
    let (status, _, body) = b
        .post(
            "/account/alerts/rules",
            &[
                ("target", "station"),
                ("station", "nowhere"),
                ("measure", "aqi"),
                ("threshold", "moderate"),
                ("channel", &channels[1].id),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, body) = b
        .post(
            "/account/alerts/rules",
            &[
                ("target", "station"),
                ("station", "s1"),
                ("measure", "aqi"),
                ("threshold", "moderate"),
                ("timezone", ""),
                ("channel", &channels[0].id),
                ("channel", &channels[1].id),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rules = site.store.rules_of(&user.id).await.unwrap();
    assert_eq!(rules.len(), 2);
    let station_rule = rules
        .iter()
        .find(|r| r.spec.contains("\"station\""))
        .unwrap();
    let spec: ecocityhub_notify::rules::RuleSpec =
        serde_json::from_str(&station_rule.spec).unwrap();
    assert_eq!(spec.timezone, "UTC");
    assert_eq!(station_rule.channels.len(), 2);

    // Pause, resume, test, delete.
    let (_, page) = b.get("/account/alerts").await;
    let rule = first_id(&page, "rules");
    let (status, _, body) = b
        .post(
            &format!("/account/alerts/rules/{rule}/pause"),
            &[("paused", "true")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Paused:") && body.contains(">Resume<"));
    assert!(site.store.rule(&rule).await.unwrap().unwrap().paused);
    let (_, _, body) = b
        .post(
            &format!("/account/alerts/rules/{rule}/pause"),
            &[("paused", "false")],
        )
        .await;
    assert!(body.contains("Resumed:"));
    let (status, _, body) = b
        .post(&format!("/account/alerts/rules/{rule}/test"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("on its way") || body.contains("2 test messages are on their way"),
        "{body}"
    );
    let (status, _, body) = b
        .post(
            &format!("/account/alerts/channels/{}/test", channels[1].id),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("A test message is on its way"), "{body}");
    let (status, _, _) = b
        .post(&format!("/account/alerts/rules/{rule}/delete"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(site.store.rules_of(&user.id).await.unwrap().len(), 1);
    let (status, _, body) = b
        .post(
            &format!("/account/alerts/channels/{}/delete", channels[1].id),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("The channel is deleted"));
    assert_eq!(
        site.store.subscriptions_of(&user.id).await.unwrap().len(),
        1
    );

    // Someone else's rule and channel are not found; forms need their CSRF token.
    let (mut eve, _) = site.signed_in("eve@example.org", &[Role::Citizen]).await;
    let other_rule = site.store.rules_of(&user.id).await.unwrap()[0].id.clone();
    let (status, _, _) = eve
        .post(&format!("/account/alerts/rules/{other_rule}/delete"), &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = b
        .client
        .post(b.url("/account/alerts/channels"))
        .form(&[("protocol", "live")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        site.store.subscriptions_of(&user.id).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_rule_is_changed_on_its_edit_page_and_a_bad_change_keeps_the_form() {
    let site = site().await;
    let (mut b, user) = site.signed_in("eli@example.org", &[Role::Citizen]).await;
    b.get("/account/alerts").await;
    for fields in [
        &[("protocol", "email"), ("endpoint", "eli@example.org")][..],
        &[("protocol", "live")][..],
    ] {
        let (status, _, body) = b.post("/account/alerts/channels", fields).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let channels = site.store.subscriptions_of(&user.id).await.unwrap();
    let (status, _, body) = b
        .post(
            "/account/alerts/rules",
            &[
                ("target", "station"),
                ("station", "s1"),
                ("measure", "aqi"),
                ("threshold", "moderate"),
                ("timezone", "Europe/Berlin"),
                ("quiet_start", "22:00"),
                ("quiet_end", "07:00"),
                ("label", "Home"),
                ("channel", &channels[0].id),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut row = site.store.rules_of(&user.id).await.unwrap().remove(0);
    let id = row.id.clone();
    // Set through the API, not shown by the form: kept by an edit.
    let mut spec: RuleSpec = serde_json::from_str(&row.spec).unwrap();
    spec.trigger = Trigger::Measured {
        hold_minutes: 30,
        clear_minutes: 90,
        notify_clear: true,
        cooldown_minutes: 240,
    };
    spec.digest_at = Some(chrono::NaiveTime::from_hms_opt(8, 0, 0).unwrap());
    row.spec = serde_json::to_string(&spec).unwrap();
    assert!(site.store.update_rule(&row).await.unwrap());

    // The list links each rule's edit page; the page is the rule form, filled in.
    let edit = format!("/account/alerts/rules/{id}/edit");
    let (_, page) = b.get("/account/alerts").await;
    assert!(
        page.contains(&format!(
            r#"<a class="button secondary" href="{edit}" aria-label="Edit The AQI at s1">Edit</a>"#
        )),
        "{page}"
    );
    let (status, page) = b.get(&edit).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(&format!(
        r#"<form class="stack" method="post" action="{edit}">"#
    )));
    assert!(page.contains(r#"<option value="s1" selected>Station s1 (s1)</option>"#));
    assert!(page.contains(r#"<option value="moderate" selected>"#));
    assert!(page.contains(r#"<option value="aqi" selected>"#));
    assert!(page.contains(r#"value="Europe/Berlin""#) && page.contains(r#"value="Home""#));
    assert!(page.contains(r#"value="22:00""#) && page.contains(r#"value="07:00""#));
    assert!(page.contains(&format!(r#"value="{}" checked>"#, channels[0].id)));
    assert!(page.contains(&format!(r#"value="{}">"#, channels[1].id)));
    assert!(page.contains(">Save changes</button>") && page.contains(">Cancel</a>"));
    assert!(!page.contains("<script>") && !page.contains(" onclick="));

    // A mistake of the form, and one the notification layer finds: said on the edit page, with
    // the form as it was filled in; nothing changes.
    let first = channels[0].id.as_str();
    let second = channels[1].id.as_str();
    let (status, _, body) = b.post(&edit, &form("unhealthy", "s1", "", &[first])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("class=\"flash error\""), "{body}");
    assert!(body.contains("Give both the start and the end of the quiet hours"));
    assert!(body.contains(&format!(r#"action="{edit}""#)));
    assert!(body.contains(r#"value="Home office""#));
    assert!(body.contains(r#"<option value="unhealthy" selected>"#));
    let (status, _, body) = b
        .post(&edit, &form("unhealthy", "nowhere", "07:00", &[first]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("class=\"flash error\"") && body.contains(r#"value="Home office""#));
    let (status, _, body) = b.post(&edit, &form("unhealthy", "s1", "07:00", &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("Choose at least one channel"));
    for c in [first, second] {
        assert!(
            !body.contains(&format!(r#"value="{c}" checked"#)),
            "as sent"
        );
    }
    assert_eq!(site.store.rule(&id).await.unwrap().unwrap().spec, row.spec);

    // A good change: back to the list, which says it and shows the new threshold.
    let (status, location, _) = b
        .post(&edit, &form("unhealthy", "s1", "07:00", &[first, second]))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("/account/alerts?changed={id}"));
    let (status, page) = b.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("The alert is changed: The AQI at s1 (unhealthy or worse)."),
        "{page}"
    );
    assert!(
        page.contains("<td>Unhealthy or worse</td>")
            && !page.contains("<td>Moderate or worse</td>")
    );
    let saved = site.store.rule(&id).await.unwrap().unwrap();
    let spec: RuleSpec = serde_json::from_str(&saved.spec).unwrap();
    assert_eq!(spec.threshold, Category::Unhealthy);
    assert_eq!(spec.label.as_deref(), Some("Home office"));
    assert_eq!(saved.channels, [first, second]);
    assert!(matches!(
        spec.trigger,
        Trigger::Measured {
            hold_minutes: 30,
            clear_minutes: 90,
            notify_clear: true,
            cooldown_minutes: 240
        }
    ));
    assert!(spec.digest_at.is_some() && !saved.paused);

    // Only the owner, signed in, with the page's CSRF token.
    let (mut eve, _) = site.signed_in("eve@example.org", &[Role::Citizen]).await;
    let (status, _) = eve.get(&edit).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = eve
        .post(&edit, &form("hazardous", "s1", "07:00", &[]))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, location) = site.browser().get(&edit).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let resp = b
        .client
        .post(b.url(&edit))
        .form(&form("hazardous", "s1", "07:00", &[first]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        site.store.rule(&id).await.unwrap().unwrap().spec,
        saved.spec
    );
}

#[tokio::test]
async fn the_live_stream_needs_a_session_and_replays_missed_alerts() {
    let site = site().await;
    let resp = site
        .browser()
        .client
        .get(format!("{}/account/events", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (mut b, user) = site.signed_in("dee@example.org", &[Role::Citizen]).await;
    b.get("/account/alerts").await;
    b.post("/account/alerts/channels", &[("protocol", "live")])
        .await;
    let sub = site
        .store
        .subscriptions_of(&user.id)
        .await
        .unwrap()
        .remove(0);
    site.notifier.send_test(&sub).await.unwrap();
    // Delivered while no page was open: a page that reconnects gets it from the outbox.
    let claimed = site
        .store
        .claim_deliveries(Utc::now().timestamp_millis() + 1_000, 60_000, 10)
        .await
        .unwrap();
    assert!(site
        .store
        .complete_delivery(
            claimed[0].id,
            &claimed[0].lease_token,
            &DeliveryOutcome::Delivered,
            Utc::now()
        )
        .await
        .unwrap());
    let mut resp = b
        .client
        .get(b.url("/account/events"))
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut seen = String::new();
    while !seen.contains("EcoCityHub test message") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), resp.chunk())
            .await
            .expect("the replayed event arrives")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: test") && seen.contains(&format!("id: {}", claimed[0].id)));
    let sw = b.client.get(b.url("/sw.js")).send().await.unwrap();
    assert_eq!(sw.status(), StatusCode::OK);
    assert_eq!(sw.headers()["service-worker-allowed"], "/");
    assert!(sw.text().await.unwrap().contains("showNotification"));
}

#[tokio::test]
async fn only_admins_see_and_redrive_dead_letters() {
    let site = site().await;
    let (mut citizen, user) = site.signed_in("fay@example.org", &[Role::Citizen]).await;
    citizen.get("/account/alerts").await;
    citizen
        .post("/account/alerts/channels", &[("protocol", "live")])
        .await;
    let sub = site
        .store
        .subscriptions_of(&user.id)
        .await
        .unwrap()
        .remove(0);
    site.notifier.send_test(&sub).await.unwrap();
    // Every attempt failed: a dead letter.
    let claimed = site
        .store
        .claim_deliveries(Utc::now().timestamp_millis() + 1_000, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let dead = DeliveryOutcome::Dead {
        error: "connection refused".into(),
    };
    assert!(site
        .store
        .complete_delivery(claimed[0].id, &claimed[0].lease_token, &dead, Utc::now())
        .await
        .unwrap());

    let (status, _) = citizen.get("/admin/deliveries").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = citizen.post("/admin/deliveries/redrive", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (operator, _) = site.signed_in("gil@example.org", &[Role::Operator]).await;
    let resp = operator
        .client
        .get(operator.url("/admin/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let (mut admin, _) = site.signed_in("hal@example.org", &[Role::Admin]).await;
    let (_, dashboard) = admin.get("/admin").await;
    assert!(dashboard.contains("href=\"/admin/deliveries\""));
    let (status, page) = admin.get("/admin/deliveries").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("connection refused") && page.contains("EcoCityHub test message"));
    let id = claimed[0].id;
    assert!(page.contains(&format!("action=\"/admin/deliveries/{id}/redrive\"")));
    let (status, page) = admin.get("/admin/deliveries?status=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Unknown status"), "{page}");

    let (status, _, page) = admin
        .post(&format!("/admin/deliveries/{id}/redrive"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!("Delivery {id} is due again")));
    let d = site.store.delivery(id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
    let (_, _, page) = admin
        .post(&format!("/admin/deliveries/{id}/redrive"), &[])
        .await;
    assert!(page.contains("not a dead letter"), "{page}");
    let (status, _, page) = admin.post("/admin/deliveries/redrive", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("There were no dead letters"));
    let (_, page) = admin.get("/admin/deliveries?status=pending").await;
    assert!(page.contains("EcoCityHub test message"));
}

#[tokio::test]
async fn browser_notifications_are_offered_and_a_bad_subscription_is_said() {
    let site = site().await;
    let (mut b, user) = site.signed_in("ivy@example.org", &[Role::Citizen]).await;
    let (_, page) = b.get("/account/alerts").await;
    let key = site.notifier.vapid_public_key().unwrap();
    assert!(page.contains(&format!("data-push-key=\"{key}\"")), "{page}");
    assert!(page.contains("Enable browser notifications"));
    let (status, _, body) = b
        .post(
            "/account/alerts/push",
            &[
                ("endpoint", "https://push.example.org/send/abc"),
                ("p256dh", "not-a-key"),
                ("auth", "x"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.contains("The push subscription is not valid"),
        "{body}"
    );
    assert!(site
        .store
        .subscriptions_of(&user.id)
        .await
        .unwrap()
        .is_empty());
}
