//! The citizens' report pages over HTTP, on SQLite and PostgreSQL: the real site with the
//! notification layer, driven like a browser (a cookie jar, forms posted with their CSRF
//! token). The photo goes the way the page's script sends it — a signed URL from
//! `POST /reports/uploads`, a PUT of the file there, the upload's id posted with the form.

mod common;

use common::Browser;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use ecocityhub_api::{ApiConfig, AppState, Services};
use ecocityhub_blobs::photos::testing::jpeg_with_exif_gps;
use ecocityhub_domain::{GeoPoint, Station, StationId};
use ecocityhub_identity::{password, Role};
use ecocityhub_store::identity::User;
use ecocityhub_store::{testing, Store};
use ecocityhub_web::WebConfig;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

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
    let base = format!("http://{}", listener.local_addr().unwrap());
    let notify = ecocityhub_notify::NotifyConfig {
        public_url: base.clone(),
        ..Default::default()
    };
    let (notifier, _worker) = ecocityhub_notify::open(store.clone(), &notify)
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
        notifier: Some(notifier),
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
        _dir: dir,
    }
}

impl Site {
    /// A signed-in browser of a new confirmed user with `roles`.
    async fn signed_in(&self, email: &str, roles: &[Role]) -> Browser {
        let user = User {
            id: format!("u-{}", email.split('@').next().unwrap()),
            email: email.into(),
            password_hash: password::hash(PASSWORD),
            roles: roles.to_vec(),
            confirmed: true,
            created_at: Utc::now(),
        };
        assert!(self.store.insert_user(&user).await.unwrap());
        let mut b = Browser::new(&self.base);
        b.get("/account/sign-in").await;
        let (status, _, _) = b
            .post(
                "/account/sign-in",
                &[("email", email), ("password", PASSWORD), ("next", "/")],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "sign-in of {email}");
        b
    }
}

/// The value of the first `name="{name}" value="…"` of a page.
fn field(html: &str, name: &str) -> String {
    let prefix = format!(r#"name="{name}" value=""#);
    let at = html
        .find(&prefix)
        .unwrap_or_else(|| panic!("a {name} field"))
        + prefix.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// Uploads a phone's JPEG as the page's script does; returns the upload id.
async fn upload_photo(b: &mut Browser) -> String {
    let jpeg = jpeg_with_exif_gps(640, 480, 6);
    let sha = hex(&Sha256::digest(&jpeg));
    let size = jpeg.len().to_string();
    let (status, _, body) = b
        .post(
            "/reports/uploads",
            &[
                ("content_type", "image/jpeg"),
                ("size", &size),
                ("sha256", &sha),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let signed: Value = serde_json::from_str(&body).unwrap();
    let mut put = b.client.put(signed["url"].as_str().unwrap());
    for (name, value) in signed["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let resp = put.body(jpeg).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    signed["id"].as_str().unwrap().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Files a report through the form (with the form's own id); returns the report's path.
async fn file(b: &mut Browser, title: &str, photos: &[&str]) -> String {
    let (status, page) = b.get("/reports/new?lat=52.5200&lon=13.4050").await;
    assert_eq!(status, StatusCode::OK);
    let id = field(&page, "id");
    let mut fields = vec![
        ("id", id.as_str()),
        ("category", "illegal_dumping"),
        ("title", title),
        ("description", "Fridges and a mattress\nby the canal"),
        ("lat", "52.5200"),
        ("lon", "13.4050"),
        ("station", "s1"),
    ];
    fields.extend(photos.iter().map(|p| ("photo", *p)));
    let (status, location, body) = b.post("/reports/new", &fields).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, format!("/reports/{id}?said=filed"));
    format!("/reports/{id}")
}

async fn a_citizen_files_a_report_with_a_photo_and_an_operator_triages_it(site: Site) {
    // Filing needs a sign-in, and comes back to the form after it.
    let mut anonymous = Browser::new(&site.base);
    let resp = anonymous
        .client
        .get(anonymous.url("/reports/new?station=s1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()["location"],
        "/account/sign-in?next=/reports/new%3Fstation%3Ds1"
    );

    let mut ana = site.signed_in("ana@example.org", &[Role::Citizen]).await;
    let (status, form) = ana.get("/reports/new?station=s1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        form.contains(r#"<script src="/static/reports."#),
        "its script"
    );
    assert!(form.contains(r#"accept="image/jpeg,image/png,image/webp" multiple"#));
    assert!(form.contains(r#"<option value="illegal_dumping">"#));
    assert!(form.contains(r#"value="52.52""#), "the station's place");
    assert!(!form.contains(" style=\"") && !form.contains("<script>"));

    // The signed upload: a URL for this file only; a GIF is refused, and so is a post
    // without the page's token.
    let upload = upload_photo(&mut ana).await;
    let (status, _, body) = ana
        .post(
            "/reports/uploads",
            &[
                ("content_type", "image/gif"),
                ("size", "100"),
                ("sha256", &"a".repeat(64)),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let resp = ana
        .client
        .post(ana.url("/reports/uploads"))
        .form(&[
            ("content_type", "image/jpeg"),
            ("size", "10"),
            ("sha256", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // A bad form says why and keeps what was typed, the uploaded photo too.
    let id = field(&form, "id");
    let bad = [
        ("id", id.as_str()),
        ("category", "illegal_dumping"),
        ("title", "No"),
        ("description", "Fridges by the canal"),
        ("lat", "52.5200"),
        ("lon", "13.4050"),
        ("photo", upload.as_str()),
    ];
    let (status, _, page) = ana.post("/reports/new", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("The title must be 3 to 120 characters"),
        "{page}"
    );
    assert!(page.contains("Fridges by the canal</textarea>"));
    assert!(page.contains(r#"value="52.5200""#));
    assert!(page.contains(&format!(r#"name="photo" value="{upload}" checked"#)));
    let (status, _, page) = ana
        .post(
            "/reports/new",
            &[("category", "noise"), ("title", "Drums at night")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Say where it is") && page.contains(r#"value="Drums at night""#));

    // Filed: the report's page with the photo's thumbnail, its station, its state.
    let path = file(&mut ana, "Fridges dumped by the canal", &[&upload]).await;
    let (status, page) = ana.get(&format!("{path}?said=filed")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Your report is filed"));
    assert!(page.contains("<h1>Fridges dumped by the canal</h1>"));
    assert!(page.contains(r#"<span class="badge state-open">Submitted</span>"#));
    assert!(page.contains("Illegal dumping or fly-tipping"));
    assert!(page.contains(r#"<a href="/stations/s1">Station s1</a>"#));
    let year = Utc::now().format("%Y").to_string();
    assert!(page.contains(&format!("<dt>Filed</dt><dd>{year}-")));
    let id = path.trim_start_matches("/reports/");
    let thumb = format!("/api/v1/reports/{id}/photos/0?size=thumbnail");
    assert!(page.contains(&format!(r#"<img src="{thumb}" alt="Photo 1 of the report"#)));
    assert!(page.contains(&format!(r#"<a href="/api/v1/reports/{id}/photos/0">"#)));
    assert!(page.contains("Stop following"), "the reporter follows it");
    let resp = ana.client.get(ana.url(&thumb)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");

    // A citizen neither reaches the queue nor triages.
    let (status, page) = ana.get("/admin/reports").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(!page.contains(r#"href="/admin/reports""#), "no Triage link");
    let (status, _, _) = ana
        .post(
            &format!("{path}/triage"),
            &[("version", "1"), ("state", "fixed")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = ana
        .post(&format!("{path}/hide"), &[("hidden", "true")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The operator finds it in the queue and moves it to investigating with an update.
    let mut op = site.signed_in("olga@example.org", &[Role::Operator]).await;
    let (status, queue) = op.get("/admin/reports").await;
    assert_eq!(status, StatusCode::OK);
    assert!(queue.contains(r#"href="/admin/reports" aria-current="page">Triage"#));
    assert!(queue.contains(&format!(
        r#"<a href="{path}">Fridges dumped by the canal</a>"#
    )));
    let (_, queue) = op.get("/admin/reports?state=closed").await;
    assert!(!queue.contains(&path));
    let (status, page) = op.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(field(&page, "version"), "1");
    assert!(page.contains(r#"<option value="investigating">Investigating</option>"#));
    assert!(page.contains("ana@example.org"), "staff see the reporter");
    let (status, location, body) = op
        .post(
            &format!("{path}/triage"),
            &[
                ("version", "1"),
                ("state", "investigating"),
                ("assignee", "me"),
                ("text", "We are looking into it."),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, format!("{path}?said=triaged"));
    let (status, _, _) = op
        .post(
            &format!("{path}/triage"),
            &[
                ("version", "2"),
                ("text", "The caller reported the same spot last year."),
                ("internal", "1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A change over a version since changed is refused, and says so.
    let (status, _, page) = op
        .post(
            &format!("{path}/triage"),
            &[("version", "1"), ("state", "fixed")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("changed this report meanwhile"));
    assert!(
        page.contains(r#"<option value="fixed" selected>"#),
        "the form kept"
    );
    let (_, page) = op.get(&path).await;
    assert!(page.contains("The caller reported the same spot last year."));
    assert!(page.contains("internal, staff only"));
    assert!(page.contains("olga@example.org (u-olga)"), "the assignee");

    // The citizen sees the update and the move, not the note nor the assignee.
    let (_, page) = ana.get(&path).await;
    assert!(page.contains(r#"<span class="badge state-open">Investigating</span>"#));
    assert!(page.contains("We are looking into it."));
    assert!(page.contains("Submitted → Investigating") && page.contains("by staff"));
    assert!(!page.contains("same spot last year") && !page.contains("internal, staff only"));
    assert!(!page.contains("u-olga") && !page.contains(&format!("{path}/triage")));
    // …and adds an update of their own, and stops following.
    let (status, _, _) = ana
        .post(
            &format!("{path}/comments"),
            &[("text", "It is still there today.")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = ana
        .post(&format!("{path}/follow"), &[("on", "false")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = ana.get(&format!("{path}?said=unfollowed")).await;
    assert!(page.contains("You no longer follow this report."));
    assert!(page.contains("It is still there today.") && page.contains("by the reporter"));
    assert!(page.contains("Follow this report</button>"));

    // Everyone sees it on the map and in the list.
    let (status, home) = anonymous.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains(r#"<g class="reports">"#), "the reports layer");
    assert!(home.contains(&format!(
        r#"<a href="{path}" aria-label="Report: Fridges dumped by the canal (Investigating)">"#
    )));
    assert!(home.contains(r#"href="/reports/new">Report a problem</a>"#));
    assert!(home.contains("Open report") && home.contains(r#"<a href="/reports""#));
    let (status, list) = anonymous.get("/reports").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(&format!(
        r#"<a href="{path}">Fridges dumped by the canal</a>"#
    )));
    let (_, list) = anonymous.get("/reports?state=closed").await;
    assert!(!list.contains(&path));
    let (status, list) = anonymous.get("/reports?bbox=nowhere").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(list.contains("must be four numbers"));

    // Bulk: both reports fixed at once; again, and each says why it did not move.
    let other = file(&mut ana, "Smoke from the yard", &[]).await;
    let other_id = other.trim_start_matches("/reports/");
    let (status, _, page) = op
        .post(
            "/admin/reports/bulk?state=open",
            &[
                ("id", id),
                ("id", other_id),
                ("state", "fixed"),
                ("update", "Cleared."),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("2 of 2 reports moved to Fixed."), "{page}");
    let (_, _, page) = op
        .post(
            "/admin/reports/bulk?state=all",
            &[("id", id), ("state", "fixed")],
        )
        .await;
    assert!(page.contains("0 of 1 reports moved to Fixed. Not moved:"));
    let (_, page) = ana.get(&path).await;
    assert!(page.contains("Cleared.") && page.contains("Investigating → Fixed"));

    // Hidden: gone for everyone but staff and its reporter.
    let (status, _, _) = op
        .post(&format!("{other}/hide"), &[("hidden", "true")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = anonymous.get(&other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = ana.get(&other).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("hidden by a moderator"));
    let (_, queue) = op.get("/admin/reports?state=all").await;
    assert!(!queue.contains(&other));
    let (_, queue) = op.get("/admin/reports?state=all&hidden=1").await;
    assert!(queue.contains(&other));
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

both_backends!(a_citizen_files_a_report_with_a_photo_and_an_operator_triages_it);
