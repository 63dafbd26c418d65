//! The web pages in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/chromium`) driven over WebDriver against the real
//! binary. A visitor sees the map and opens a station; a user signs up, confirms, signs in and
//! out; an admin makes a device key, starts a training job, follows it live and promotes the
//! model. Screenshots of the main pages are saved under `target/tmp/screenshots/` (and into
//! `ECOCITYHUB_SCREENSHOTS_DIR` when set: `docs/screenshots/` holds the README's).
//!
//! Without chromedriver the test is skipped, except under CI, where it fails (the one rule of
//! `ecocityhub-testkit`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, Server};
use ecocityhub_testkit::HelperServer;
use fantoccini::{Client, ClientBuilder, Locator};

const PASSWORD: &str = "Correct-horse-battery-9";
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/demo");

/// chromedriver, on the port it chose itself.
struct Driver {
    _process: HelperServer,
    url: String,
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

async fn start_driver() -> Option<Driver> {
    let program = ecocityhub_testkit::require(
        find_program("chromedriver"),
        "chromedriver and Chromium",
        ".ci/chromium installs Debian's chromium and chromium-driver (scripts/test runs it)",
    )?;
    let mut command = Command::new(program);
    command.arg("--port=0").stderr(Stdio::null());
    let process = HelperServer::start(
        command,
        "ChromeDriver was started successfully on port",
        Duration::from_secs(20),
    )
    .expect("chromedriver starts");
    let driver = Driver {
        url: process.base_url(),
        _process: process,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{}/status", driver.url)).await {
            if r.status().is_success() {
                return Some(driver);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut options = serde_json::json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1280,900",
            format!("--user-data-dir={}", profile.display()),
        ]
    });
    if let Some(chromium) = find_program("chromium") {
        options["binary"] = serde_json::json!(chromium);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Saves a screenshot of the current page under `name`.
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")];
    if let Some(extra) = std::env::var_os("ECOCITYHUB_SCREENSHOTS_DIR") {
        dirs.push(PathBuf::from(extra));
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    }
}

/// Waits for an element (pages load; scripts act).
async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(e) => panic!("no {css} on {:?}: {e}", c.current_url().await.ok()),
    }
}

async fn wait_for_path(c: &Client, starts_with: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.unwrap();
        let path_and_query = &url.as_str()[url.origin().ascii_serialization().len()..];
        if path_and_query.starts_with(starts_with) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still at {url}, not {starts_with}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the element at `css` says `needle`: across a page load that replaces the page at
/// the same address (a form that posts back to it), where an element found early goes stale.
async fn wait_for_text(c: &Client, css: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(element) = c.find(Locator::Css(css)).await {
            if element.text().await.is_ok_and(|t| t.contains(needle)) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{css} never said {needle:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    wait_for(c, css).await.text().await.unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    let field = wait_for(c, css).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// What a person notices on every page: a language, landmarks, a label for every field, no
/// sideways scrolling.
async fn check_page_basics(c: &Client) {
    let report = c
        .execute(
            r#"
            const unlabelled = [...document.querySelectorAll('input:not([type=hidden]):not([hidden]), select, textarea')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map(e => e.name || e.id);
            return {
                lang: document.documentElement.lang,
                main: !!document.querySelector('main'),
                nav: !!document.querySelector('nav'),
                unlabelled,
                overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
            };
            "#,
            vec![],
        )
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(report["lang"], "en", "{url}");
    assert_eq!(report["main"], true, "{url}: a main landmark");
    assert_eq!(report["nav"], true, "{url}: a navigation landmark");
    assert_eq!(
        report["unlabelled"],
        serde_json::json!([]),
        "{url}: fields without labels"
    );
    assert_eq!(
        report["overflow"], false,
        "{url}: the page scrolls sideways"
    );
}

/// Clicks the element `locator` finds.
async fn click(c: &Client, locator: Locator<'_>) {
    c.find(locator).await.unwrap().click().await.unwrap();
}

fn run_ok(env: &Env, args: &[&str], stdin: Option<&str>) {
    let out = env.run_with_stdin(args, stdin.unwrap_or(""));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `serve` on `bind` with extra environment, its log kept beside the screenshots.
fn start_server(env: &Env, bind: &str, vars: &[(&str, String)]) -> Server {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut command = env.cmd(&["serve", "--bind", bind]);
    command
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(log);
    for (k, v) in vars {
        command.env(k, v);
    }
    Server::from_child(command.spawn().unwrap())
}

/// The OpenID-certified `oidc-provider` from npm, run by Node.js (the API's federation tests use
/// it too; `scripts/test` installs it). It listens first and is told our callback once we
/// listen too: each port is bound once, by its own server.
struct OutsideProvider {
    process: HelperServer,
    issuer: String,
}

fn start_outside_provider() -> Option<OutsideProvider> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../api/tests/oidc-provider"
    ));
    if !ecocityhub_testkit::require_that(
        dir.join("node_modules/oidc-provider").exists(),
        "the test OpenID provider (npm's oidc-provider) for \"sign in with\"",
        "scripts/test runs npm ci in crates/api/tests/oidc-provider",
    ) {
        return None;
    }
    let mut command = Command::new("node");
    command
        .arg("provider.mjs")
        .current_dir(&dir)
        .env_remove("REDIRECT_URI")
        .env("CLIENT_ID", "ecocityhub")
        .env("CLIENT_SECRET", "ecocityhub-test-secret")
        .stderr(Stdio::null());
    let process = HelperServer::start(command, "issuer http://127.0.0.1:", Duration::from_secs(30))
        .expect("Node.js runs the test OpenID provider");
    Some(OutsideProvider {
        issuer: process.base_url(),
        process,
    })
}

impl OutsideProvider {
    /// Tells the provider our callback and waits until it serves.
    async fn expect_callback(&mut self, server: &Server) {
        self.process
            .send_line(&server.url("/oauth2/idpresponse"))
            .unwrap();
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer);
        for _ in 0..200 {
            if reqwest::get(&discovery)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the OpenID provider never served");
    }
}

#[tokio::test]
async fn people_use_the_site_in_a_real_browser() {
    let Some(driver) = start_driver().await else {
        return;
    };
    // Real stations (London, and the German network for the map), a model serving PM2.5 at
    // Marylebone Road, and an admin.
    let env = Env::sqlite().await;
    run_ok(
        &env,
        &[
            "import",
            &format!("{DEMO}/london-marylebone-2004q4.csv"),
            &format!("{DEMO}/germany-pm10-2008h2.csv"),
        ],
        None,
    );
    run_ok(
        &env,
        &[
            "ml",
            "train",
            "--station",
            "marylebone_road",
            "--parameter",
            "pm25",
        ],
        None,
    );
    run_ok(
        &env,
        &[
            "user",
            "create",
            "--email",
            "root@example.org",
            "--role",
            "admin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    run_ok(
        &env,
        &[
            "user",
            "create",
            "--email",
            "ops@example.org",
            "--role",
            "operator",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    // An outside OpenID provider to sign in with: we must know its issuer when we start, and
    // it our callback once we listen.
    let mut provider = start_outside_provider();
    let mut vars = Vec::new();
    if let Some(p) = &provider {
        vars = vec![
            ("ECOCITYHUB_OIDC_PROVIDERS", "testidp".to_string()),
            ("ECOCITYHUB_OIDC_TESTIDP_ISSUER", p.issuer.clone()),
            (
                "ECOCITYHUB_OIDC_TESTIDP_CLIENT_ID",
                "ecocityhub".to_string(),
            ),
            (
                "ECOCITYHUB_OIDC_TESTIDP_CLIENT_SECRET",
                "ecocityhub-test-secret".to_string(),
            ),
        ];
    }
    let server = start_server(&env, "127.0.0.1:0", &vars);
    if let Some(p) = provider.as_mut() {
        p.expect_callback(&server).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;

    visitor_sees_the_map_and_opens_a_station(&c, &server).await;
    user_signs_up_confirms_signs_in_and_out(&c, &server, &env).await;
    admin_makes_a_key_trains_and_promotes_a_model(&c, &server).await;
    citizen_reports_a_problem_and_an_operator_triages_it(&c, &server, &env).await;
    operator_creates_a_station(&c, &server).await;
    a_suspect_spike_does_not_move_the_index(&c, &server, &env).await;
    if provider.is_some() {
        someone_signs_in_with_an_outside_provider(&c, &server).await;
    }

    // A phone-sized window: the home page fits without sideways scrolling.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&server.url("/")).await.unwrap();
    wait_for(&c, "svg.map").await;
    check_page_basics(&c).await;
    screenshot(&c, "home-phone").await;
    // And a station's charts keep their text readable at that width.
    c.goto(&server.url("/stations/marylebone_road"))
        .await
        .unwrap();
    wait_for(&c, "svg.chart text").await;
    let smallest = c
        .execute(
            // Drawn height, which a scaled-down SVG would shrink (its computed font size not).
            "return Math.min(...[...document.querySelectorAll('svg.chart text')]\
             .map(t => t.getBoundingClientRect().height).filter(h => h > 0));",
            vec![],
        )
        .await
        .unwrap();
    let smallest = smallest.as_f64().unwrap();
    assert!(
        smallest >= 12.0,
        "chart text at 390 px is {smallest} px high"
    );
    screenshot(&c, "station-phone").await;
    c.close().await.unwrap();
}

async fn visitor_sees_the_map_and_opens_a_station(c: &Client, server: &Server) {
    c.goto(&server.url("/")).await.unwrap();
    wait_for(c, "svg.map").await;
    // The demo's readings are historical: the title dates them instead of saying "now".
    let title = c.title().await.unwrap();
    assert!(
        title.starts_with("Air quality: latest readings, "),
        "{title}"
    );
    // Every station is on the map, alone or counted in a cluster where they crowd.
    let shown = c
        .execute(
            "const alone = document.querySelectorAll(\"svg.map a[href^='/stations/']\").length;
             const grouped = [...document.querySelectorAll('svg.map g.cluster[data-count]')]
               .reduce((n, g) => n + Number(g.dataset.count), 0);
             return [alone, grouped];",
            vec![],
        )
        .await
        .unwrap();
    let (alone, grouped) = (shown[0].as_u64().unwrap(), shown[1].as_u64().unwrap());
    // The German network's file names 43 stations.
    assert_eq!(
        alone + grouped,
        43,
        "{alone} alone and {grouped} in clusters"
    );
    assert!(alone >= 20, "only {alone} stations drawn alone");
    // Under them, a basemap drawn from the shipped Natural Earth data: borders and places.
    assert!(!c
        .find_all(Locator::Css("svg.map g.basemap path.border"))
        .await
        .unwrap()
        .is_empty());
    assert!(text(c, "svg.map g.places").await.contains("Berlin"));
    map_zooms_and_pans_by_keyboard(c).await;
    assert!(text(c, ".legend")
        .await
        .contains("Unhealthy for Sensitive Groups"));
    check_page_basics(c).await;
    screenshot(c, "home").await;

    // The London region, then its station, from the map.
    click(c, Locator::LinkText("London (1)")).await;
    wait_for_path(c, "/?region=Europe").await;
    wait_for(c, "svg.map a[href='/stations/marylebone_road']")
        .await
        .click()
        .await
        .unwrap();
    wait_for_path(c, "/stations/marylebone_road").await;
    assert_eq!(text(c, "h1").await, "London Marylebone Road (kerbside)");
    wait_for(c, "#history-chart svg").await;
    assert!(text(c, "#skill")
        .await
        .contains("forecasts 24 h ahead were off by"));
    check_page_basics(c).await;
    screenshot(c, "station").await;
    // The chart's tooltip (our script, allowed by the Content-Security-Policy).
    wait_for(c, "#history-chart svg")
        .await
        .click()
        .await
        .unwrap();
    let tip = wait_for(c, "#history-chart .tooltip:not([hidden])").await;
    assert!(tip.text().await.unwrap().contains("µg/m³"));
    screenshot(c, "station-history").await;
    c.execute(
        "document.getElementById('forecast-h').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "station-forecast").await;
    // Choosing another range reloads the chart (the select submits its form).
    c.find(Locator::Css("select[name=range]"))
        .await
        .unwrap()
        .select_by_value("month")
        .await
        .unwrap();
    wait_for_path(c, "/stations/marylebone_road?parameter=").await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("range=month"));
    assert!(text(c, "#history-chart figcaption")
        .await
        .contains("last month"));
}

/// The map has focus by Tab or a click; "+" zooms in, an arrow key pans, "0" shows the whole
/// region again, each by following the matching link (so it works without the script too).
async fn map_zooms_and_pans_by_keyboard(c: &Client) {
    let map = wait_for(c, "#map[tabindex='0']").await;
    let label = map.attr("aria-label").await.unwrap().unwrap_or_default();
    assert!(label.contains("press + or -"), "{label}");
    map.send_keys("+").await.unwrap();
    wait_for_path(c, "/?region=").await;
    wait_for(c, "#map-whole").await;
    let zoomed = c.current_url().await.unwrap();
    assert!(zoomed.as_str().contains("zoom="), "{zoomed}");
    let zoom = |url: &reqwest::Url| {
        url.query_pairs()
            .find(|(k, _)| k == "zoom")
            .map(|(_, v)| v.parse::<f64>().unwrap())
    };
    let lon = |url: &reqwest::Url| {
        url.query_pairs()
            .find(|(k, _)| k == "lon")
            .map(|(_, v)| v.parse::<f64>().unwrap())
    };
    wait_for(c, "#map")
        .await
        .send_keys("\u{E014}")
        .await
        .unwrap(); // ArrowRight
    wait_for_text_in_url(c, |u| lon(u) > lon(&zoomed)).await;
    let panned = c.current_url().await.unwrap();
    assert_eq!(zoom(&panned), zoom(&zoomed), "panning keeps the zoom");
    wait_for(c, "#map").await.send_keys("0").await.unwrap();
    wait_for_text_in_url(c, |u| zoom(u).is_none()).await;
    screenshot(c, "home-zoomed").await;
}

/// Waits until the current URL satisfies `ok`.
async fn wait_for_text_in_url(c: &Client, ok: impl Fn(&reqwest::Url) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let url = c.current_url().await.unwrap();
        if ok(&url) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "still at {url}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A device sends a 480 µg/m³ PM2.5 spike after the station's last hour: the anomaly checks
/// flag it suspect, the station page shows it marked so, and its headline index does not move.
async fn a_suspect_spike_does_not_move_the_index(c: &Client, server: &Server, env: &Env) {
    let station = "/stations/marylebone_road";
    c.goto(&server.url(station)).await.unwrap();
    let before = text(c, ".aqi-big").await;
    let key = env.run(&[
        "device",
        "create",
        "--station",
        "marylebone_road",
        "--label",
        "spike",
    ]);
    assert!(key.status.success(), "{}", common::stderr(&key));
    let key = common::stdout(&key).trim().to_string();
    let sent = reqwest::Client::new()
        .post(server.url("/api/v1/readings"))
        .bearer_auth(&key)
        .json(&serde_json::json!([
            {"parameter": "pm25", "time": "2005-01-01T00:00:00Z", "value": 480.0}
        ]))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.text().await.unwrap());
    // The pages' snapshot follows new readings within a few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        c.goto(&server.url(station)).await.unwrap();
        if text(c, "main").await.contains("480") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the spike never showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let page = text(c, "main").await.to_lowercase();
    assert!(page.contains("suspect"), "the spike is not marked: {page}");
    assert_eq!(
        text(c, ".aqi-big").await,
        before,
        "the suspect spike moved the index"
    );
    screenshot(c, "station-suspect").await;
}

/// An operator creates a station from the stations page; a wrong latitude is refused with
/// the reason and keeps what was typed.
async fn operator_creates_a_station(c: &Client, server: &Server) {
    sign_in_as(c, server, "ops@example.org", "/admin/stations").await;
    fill(c, "#new-station input[name=id]", "tower_bridge").await;
    fill(c, "#new-station input[name=name]", "Tower Bridge Road").await;
    fill(c, "#new-station input[name=lat]", "151.5").await;
    fill(c, "#new-station input[name=lon]", "-0.0754").await;
    fill(c, "#new-station input[name=area]", "Southwark, London").await;
    fill(c, "#new-station input[name=timezone]", "Europe/London").await;
    click(c, Locator::Css("#new-station button")).await;
    wait_for_text(c, "main", "latitude").await;
    let kept = wait_for(c, "#new-station input[name=name]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Tower Bridge Road"));
    fill(c, "#new-station input[name=lat]", "51.5005").await;
    click(c, Locator::Css("#new-station button")).await;
    wait_for_path(c, "/admin/stations/tower_bridge").await;
    check_page_basics(c).await;
    screenshot(c, "station-created").await;
    c.goto(&server.url("/admin/stations")).await.unwrap();
    assert!(text(c, "main table").await.contains("Tower Bridge Road"));
}

async fn user_signs_up_confirms_signs_in_and_out(c: &Client, server: &Server, env: &Env) {
    let email = "ada@example.org";
    c.goto(&server.url("/")).await.unwrap();
    click(c, Locator::LinkText("Sign up")).await;
    wait_for_path(c, "/account/sign-up").await;
    fill(c, "#email", email).await;
    fill(c, "#password", PASSWORD).await;
    check_page_basics(c).await;
    screenshot(c, "sign-up").await;
    click(c, Locator::Css("form[action='/account/sign-up'] button")).await;
    wait_for_path(c, "/account/confirm").await;
    assert!(text(c, ".flash")
        .await
        .contains("confirmation code is on its way"));

    // The code from the e-mail (the outbox, until the notification layer sends it).
    let store = env.store().await;
    let outbox = ecocityhub_store::IdentityStore::outbox(&store, email)
        .await
        .unwrap();
    let code: String = outbox
        .last()
        .unwrap()
        .body
        .split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.len() == 6 && w.chars().all(|ch| ch.is_ascii_digit()))
        .unwrap()
        .to_string();
    fill(c, "#code", &code).await;
    click(c, Locator::Css("form[action='/account/confirm'] button")).await;
    wait_for_path(c, "/account/sign-in?confirmed=1").await;
    assert!(text(c, ".flash")
        .await
        .contains("Your e-mail address is confirmed"));
    fill(c, "#password", PASSWORD).await;
    check_page_basics(c).await;
    click(c, Locator::Css("form[action='/account/sign-in'] button")).await;
    wait_for_path(c, "/account").await;
    assert!(text(c, "dl.facts").await.contains(email));
    assert!(text(c, "header.site").await.contains(email));
    check_page_basics(c).await;
    screenshot(c, "account").await;

    click(
        c,
        Locator::Css("header.site form[action='/account/sign-out'] button"),
    )
    .await;
    wait_for_path(c, "/account/sign-in?signed_out=1").await;
    assert!(text(c, ".flash").await.contains("You are signed out."));
    c.goto(&server.url("/account")).await.unwrap();
    wait_for_path(c, "/account/sign-in?next=").await;
}

async fn admin_makes_a_key_trains_and_promotes_a_model(c: &Client, server: &Server) {
    c.goto(&server.url("/account/sign-in?next=/admin"))
        .await
        .unwrap();
    fill(c, "#email", "root@example.org").await;
    fill(c, "#password", PASSWORD).await;
    click(c, Locator::Css("form[action='/account/sign-in'] button")).await;
    wait_for_path(c, "/admin").await;
    assert_eq!(text(c, "h1").await, "Administration");
    check_page_basics(c).await;

    // A device key for the London station, shown once.
    c.goto(&server.url("/admin/stations/marylebone_road"))
        .await
        .unwrap();
    fill(c, "#label", "kerbside analyser").await;
    click(c, Locator::Css("form[action$='/keys'] button")).await;
    let key = text(c, "#new-key").await;
    assert!(key.starts_with("ech_"), "{key}");
    check_page_basics(c).await;
    screenshot(c, "admin-device-key").await;
    let stored = reqwest::Client::new()
        .post(server.url("/api/v1/readings"))
        .bearer_auth(&key)
        .json(
            &serde_json::json!([{"parameter": "no2", "time": "2005-01-01T00:00:00Z", "value": 41}]),
        )
        .send()
        .await
        .unwrap();
    assert!(stored.status().is_success(), "the new key sends readings");

    // A training job for PM2.5 at Marylebone Road, followed live until it succeeds.
    c.goto(&server.url("/admin/jobs")).await.unwrap();
    check_page_basics(c).await;
    c.find(Locator::Css("#station"))
        .await
        .unwrap()
        .select_by_value("marylebone_road")
        .await
        .unwrap();
    c.find(Locator::Css("#parameter"))
        .await
        .unwrap()
        .select_by_value("pm25")
        .await
        .unwrap();
    click(c, Locator::Css("form[action='/admin/jobs'] button")).await;
    wait_for_path(c, "/admin/jobs/").await;
    let finished = c
        .wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::Css("[data-finished]"))
        .await;
    if finished.is_err() {
        screenshot(c, "failed-job").await;
        let probe = c
            .execute_async(
                "const done = arguments[arguments.length - 1]; const url = document.querySelector('[data-job-status-url]').getAttribute('data-job-status-url'); fetch(url, {credentials: 'same-origin'}).then(r => r.text().then(t => done(r.status + ' ' + t))).catch(e => done('error ' + e));",
                vec![],
            )
            .await;
        eprintln!("status probe: {probe:?}");
    }
    let log = text(c, "pre.log").await;
    assert!(
        finished.is_ok(),
        "the job page did not see the job end: {log}"
    );
    assert_eq!(text(c, "[data-job-status]").await, "succeeded", "{log}");
    assert!(text(c, "pre.log").await.contains("marylebone_road"));
    screenshot(c, "admin-job").await;

    // The new version is a candidate: promote it.
    click(c, Locator::LinkText("See the models")).await;
    wait_for_path(c, "/admin/models").await;
    click(c, Locator::Css("form[action$='/promote'] button")).await;
    let flash = text(c, ".flash").await;
    assert!(flash.contains("Version 2 now serves"), "{flash}");
    check_page_basics(c).await;
    screenshot(c, "admin-models").await;
}

/// Signs out whoever is signed in and signs in as `email`, landing on `next`.
async fn sign_in_as(c: &Client, server: &Server, email: &str, next: &str) {
    c.delete_all_cookies().await.unwrap();
    c.goto(&server.url(&format!("/account/sign-in?next={next}")))
        .await
        .unwrap();
    fill(c, "#email", email).await;
    fill(c, "#password", PASSWORD).await;
    click(c, Locator::Css("form[action='/account/sign-in'] button")).await;
    wait_for_path(c, next).await;
}

/// A citizen files a report with a phone's photo (EXIF with GPS) uploaded straight to its
/// signed URL; the photo served has no EXIF; an admin finds it in the triage queue and moves
/// it to "investigating" with a public update; the citizen sees the update, and it reached
/// their live page through the notification layer.
async fn citizen_reports_a_problem_and_an_operator_triages_it(
    c: &Client,
    server: &Server,
    env: &Env,
) {
    let citizen = "ada@example.org";
    sign_in_as(c, server, citizen, "/reports/new").await;
    let photo_dir = tempfile::tempdir().unwrap();
    let photo_path = photo_dir.path().join("canal.jpg");
    let jpeg = ecocityhub_blobs::photos::testing::jpeg_with_exif_gps(1200, 900, 6);
    assert!(jpeg.windows(4).any(|w| w == b"Exif"));
    std::fs::write(&photo_path, &jpeg).unwrap();

    wait_for(c, "#category")
        .await
        .select_by_value("illegal_dumping")
        .await
        .unwrap();
    fill(c, "#title", "Fridges dumped by the canal").await;
    fill(c, "#description", "Three fridges and a mattress").await;
    fill(c, "#lat", "51.5225").await;
    fill(c, "#lon", "-0.1545").await;
    wait_for(c, "#photos")
        .await
        .send_keys(photo_path.to_str().unwrap())
        .await
        .unwrap();
    // The page's script hashes the file, asks for a signed URL and PUTs it there.
    wait_for(c, "input[type=hidden][name=photo]").await;
    check_page_basics(c).await;
    screenshot(c, "report-new").await;
    click(c, Locator::Css("[data-report-submit]")).await;
    wait_for_path(c, "/reports/rep_").await;
    assert_eq!(text(c, "h1").await, "Fridges dumped by the canal");
    wait_for(c, "ul.photos img").await;
    let url = c.current_url().await.unwrap();
    let id = url.path().trim_start_matches("/reports/").to_string();
    let served = reqwest::get(server.url(&format!("/api/v1/reports/{id}/photos/0")))
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let served = served.bytes().await.unwrap();
    assert!(served.starts_with(&[0xFF, 0xD8]), "a JPEG");
    assert!(
        !served.windows(4).any(|w| w == b"Exif"),
        "the served photo has no EXIF"
    );
    check_page_basics(c).await;
    screenshot(c, "report").await;

    // The admin triages it from the queue.
    sign_in_as(c, server, "root@example.org", "/admin/reports").await;
    click(c, Locator::LinkText("Fridges dumped by the canal")).await;
    wait_for_path(c, &format!("/reports/{id}")).await;
    wait_for(c, "#state")
        .await
        .select_by_value("investigating")
        .await
        .unwrap();
    fill(c, "#text", "A crew is on its way.").await;
    click(c, Locator::Css("form[action$='/triage'] button")).await;
    wait_for_path(c, &format!("/reports/{id}")).await;
    wait_for_text(c, "ol.history", "A crew is on its way.").await;
    screenshot(c, "report-triage").await;

    // The citizen sees it, and was told.
    sign_in_as(c, server, citizen, &format!("/reports/{id}")).await;
    let page = text(c, "main").await;
    assert!(page.contains("Investigating"), "{page}");
    assert!(page.contains("A crew is on its way."), "{page}");
    let store = env.store().await;
    let ada = ecocityhub_store::IdentityStore::user_by_email(&store, citizen)
        .await
        .unwrap()
        .unwrap();
    let events = ecocityhub_store::NotifyStore::live_events_after(&store, &ada.id, 0, 100)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.body.contains("A crew is on its way.")),
        "the update reached the citizen's live page: {events:?}"
    );
}

async fn someone_signs_in_with_an_outside_provider(c: &Client, server: &Server) {
    c.goto(&server.url("/account/sign-in")).await.unwrap();
    // Signed in as the admin still: sign out first.
    if let Ok(out) = c
        .find(Locator::Css(
            "header.site form[action='/account/sign-out'] button",
        ))
        .await
    {
        out.click().await.unwrap();
        wait_for_path(c, "/account/sign-in?signed_out=1").await;
    }
    click(c, Locator::LinkText("Sign in with testidp")).await;
    // The provider's own pages: sign in as "grace" (any password), then consent, until the
    // browser is back with us.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_page = String::new();
    loop {
        let url = c.current_url().await.unwrap();
        if url.as_str().starts_with(&server.base) {
            break;
        }
        assert!(Instant::now() < deadline, "stuck at the provider: {url}");
        if url.as_str() != last_page {
            if let Ok(login) = c.find(Locator::Css("input[name=login]")).await {
                login.send_keys("grace").await.unwrap();
                fill(c, "input[name=password]", "anything").await;
            }
            if let Ok(submit) = c.find(Locator::Css("button[type=submit]")).await {
                last_page = url.to_string();
                submit.click().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_path(c, "/account").await;
    let facts = text(c, "dl.facts").await;
    assert!(facts.contains("grace@example.org"), "{facts}");
    assert!(facts.contains("testidp"), "{facts}");
    screenshot(c, "signed-in-with-provider").await;
}
