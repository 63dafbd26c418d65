//! What the public pages say about time, charts and indices, over HTTP on SQLite and
//! PostgreSQL: old readings dated and never called "now", a replay labelled on every page,
//! charts whose text a phone can read (no `viewBox` on the root, text of 12 px and more, two
//! sets of time ticks), category lines labelled once, weather without the AQI caption, wind as
//! a compass, a table of each chart's data, the main pollutant shown first, and the two
//! indices' disagreement explained with the city's headline index.

mod common;

use common::Browser;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use ecocityhub_api::{ApiConfig, AppState};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::{testing, Store};
use ecocityhub_web::{HeadlineIndex, WebConfig};
use reqwest::StatusCode;

const REPLAY_NOTE: &str = "historical data replayed on today's calendar; not live measurements";

struct Site {
    base: String,
    _dir: Option<tempfile::TempDir>,
}

impl Site {
    fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }
}

async fn station(store: &dyn Store, id: &str, tz: &str, metadata: serde_json::Value) {
    let (lat, lon) = match tz {
        "Europe/Berlin" => (52.52, 13.40),
        "America/New_York" => (40.71, -74.0),
        _ => (40.0, 116.0),
    };
    let mut s = Station::new(
        StationId::parse(id).unwrap(),
        format!("Station {id}"),
        GeoPoint::new(lat, lon).unwrap(),
        None,
        tz,
    )
    .unwrap();
    s.metadata = metadata;
    store.upsert_station(&s).await.unwrap();
}

/// Hourly readings of `parameter` at `id`, the last at `end`, the value of hour `i` (0: the
/// oldest) from `value`.
async fn hourly(
    store: &dyn Store,
    id: &str,
    parameter: Parameter,
    end: DateTime<Utc>,
    hours: i64,
    value: impl Fn(i64) -> f64,
) {
    let readings: Vec<Reading> = (0..hours)
        .map(|i| Reading {
            station: StationId::parse(id).unwrap(),
            parameter,
            time: end - Duration::hours(hours - 1 - i),
            value: value(i),
            flag: QualityFlag::Valid,
        })
        .collect();
    store.insert_readings(&readings).await.unwrap();
}

/// Two Berlin stations whose readings ended on 31 Dec 2008 (with weather), a replayed
/// Beijing station up to 700 µg/m³, and a New York station whose NO₂ drives its AQI while
/// the two indices disagree.
async fn fill(store: &dyn Store) {
    let old_end = DateTime::parse_from_rfc3339("2008-12-31T23:00:00Z")
        .unwrap()
        .to_utc();
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    for id in ["berlin_a", "berlin_b"] {
        station(store, id, "Europe/Berlin", serde_json::json!({})).await;
        hourly(store, id, Parameter::Pm25, old_end, 7 * 24, |i| {
            10.0 + (i % 24) as f64
        })
        .await;
    }
    hourly(
        store,
        "berlin_a",
        Parameter::Temperature,
        old_end,
        48,
        |i| -3.0 + (i % 24) as f64 / 4.0,
    )
    .await;
    hourly(
        store,
        "berlin_a",
        Parameter::WindDirection,
        old_end,
        48,
        |_| 340.0,
    )
    .await;
    let replay = serde_json::json!({"replay": {"source": "beijing.csv", "note": REPLAY_NOTE}});
    station(store, "beijing", "Asia/Shanghai", replay).await;
    hourly(store, "beijing", Parameter::Pm25, now, 7 * 24, |i| {
        20.0 + 680.0 * ((i % 60) as f64 / 59.0)
    })
    .await;
    station(store, "nyc", "America/New_York", serde_json::json!({})).await;
    hourly(store, "nyc", Parameter::Pm25, now, 48, |_| 20.0).await;
    hourly(store, "nyc", Parameter::No2, now, 48, |i| {
        if i == 47 {
            300.0
        } else {
            40.0
        }
    })
    .await;
}

async fn spawn_site(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    headline: HeadlineIndex,
) -> Site {
    store.migrate().await.unwrap();
    fill(store.as_ref()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ApiConfig {
        latest_ttl: std::time::Duration::from_millis(0),
        ..ApiConfig::default()
    };
    config.identity.tokens.issuer = base.clone();
    let blobs: Arc<dyn ecocityhub_blobs::BlobStore> =
        Arc::new(ecocityhub_blobs::ObjectBlobs::in_memory());
    let state = AppState::open(store, blobs, config).await.unwrap();
    let mut web = WebConfig::new(&base);
    web.headline_index = headline;
    let app = ecocityhub_web::app(state, web);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Site { base, _dir: dir }
}

/// The first element `<tag … id="id" …>…</tag>` of a page, whole.
fn element<'a>(page: &'a str, tag: &str, id: &str) -> &'a str {
    let at = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = page[..at].rfind(&format!("<{tag}")).unwrap();
    let end = start + page[start..].find(&format!("</{tag}>")).unwrap();
    &page[start..end]
}

/// The history chart's SVG.
fn history_svg(page: &str) -> &str {
    let figure = element(page, "figure", "history-chart");
    &figure[figure.find("<svg").expect("an SVG chart")..]
}

/// Every `font-size="N"` of an SVG.
fn font_sizes(svg: &str) -> Vec<u32> {
    svg.match_indices("font-size=\"")
        .map(|(i, m)| {
            let rest = &svg[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The texts of the category lines' labels.
fn threshold_labels(svg: &str) -> Vec<String> {
    svg.match_indices("class=\"threshold-label\"")
        .map(|(i, _)| {
            let rest = &svg[i..];
            let start = rest.find('>').unwrap() + 1;
            rest[start..start + rest[start..].find('<').unwrap()].to_string()
        })
        .collect()
}

async fn old_readings_are_dated_and_never_called_now(site: Site) {
    let mut b = site.browser();
    // Berlin has the most stations: its page is the home page.
    let (status, home) = b.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        home.contains("latest readings, 31 Dec 2008"),
        "{}",
        &home[home.find("<h1").unwrap()..][..200]
    );
    assert!(!home.contains("Air quality now") && !home.contains("Worst air now"));
    assert!(home.contains("Worst air in the latest readings"));
    assert!(
        !home.contains("id=\"replay-note\""),
        "Berlin is not a replay"
    );
    // A region with recent readings is "now".
    let (_, nyc) = b.get("/?region=America/New_York").await;
    assert!(nyc.contains("Air quality now: New York"));

    let (_, page) = b.get("/stations/berlin_a").await;
    assert!(page.contains("<h2 id=\"now-h\">Latest readings, 31 Dec 2008</h2>"));
    // The chart's time axis names the year.
    let svg = history_svg(&page);
    assert!(svg.contains(">2008<"), "{svg}");
    assert!(element(&page, "figure", "history-chart").contains("up to 2008-12-31 23:00 UTC"));
}

async fn a_replay_is_labelled_on_every_page_including_home(site: Site) {
    let mut b = site.browser();
    // (The page escapes the note's apostrophe.)
    let banner = format!("Replay: {REPLAY_NOTE}.").replace('\'', "&#39;");
    let (_, home) = b.get("/?region=Asia/Shanghai").await;
    assert!(
        element(&home, "p", "replay-note").contains(&banner),
        "the home page of the replayed region says so"
    );
    let (_, page) = b.get("/stations/beijing").await;
    assert!(element(&page, "p", "replay-note").contains(&banner));
    let (_, live) = b.get("/stations/nyc").await;
    assert!(
        !live.contains("id=\"replay-note\""),
        "a live station is not"
    );
    // Other pages say that part of the network is a replay.
    for path in ["/reports", "/account/sign-in"] {
        let (status, page) = b.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            element(&page, "p", "replay-note").contains("Replay at 1 of 4 stations"),
            "{path}"
        );
    }
}

async fn charts_read_on_a_phone_with_each_category_line_labelled_once(site: Site) {
    let mut b = site.browser();
    let (_, page) = b.get("/stations/beijing?parameter=pm25&range=week").await;
    let svg = history_svg(&page);
    let root = &svg[..svg.find('>').unwrap()];
    // As wide as the page with no viewBox: the text is not scaled down on a phone.
    assert!(
        !root.contains("viewBox") && root.contains("width=\"100%\""),
        "{root}"
    );
    let sizes = font_sizes(svg);
    assert!(
        !sizes.is_empty() && sizes.iter().all(|s| *s >= 12),
        "{sizes:?}"
    );
    assert!(svg.contains("class=\"ticks ticks-narrow\""));
    assert!(svg.contains("preserveAspectRatio=\"none\""));
    // "Hazardous" once; no label twice.
    let labels = threshold_labels(svg);
    assert_eq!(
        labels.iter().filter(|l| l.starts_with("Hazardous")).count(),
        1,
        "{labels:?}"
    );
    let mut unique = labels.clone();
    unique.dedup();
    assert_eq!(unique, labels);
    assert!(page.contains("Dashed lines: where the AQI category changes."));
    // The y axis fits the data: up to 700 µg/m³, not to the top of the index.
    let range = element(&page, "figure", "history-chart");
    let at = range.find("data-range=\"").unwrap() + "data-range=\"".len();
    let v1: f64 = range[at..at + range[at..].find('"').unwrap()]
        .split(',')
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!((700.0..=800.0).contains(&v1), "{v1}");

    // The table view: a <details> with a captioned table of every reading.
    let table = element(&page, "table", "table-history");
    assert!(page.contains("<details class=\"chart-table\">"));
    assert!(page.contains("<summary>Table of the chart's data</summary>"));
    assert!(table.contains("<caption id=\"table-history-caption\">"));
    assert_eq!(table.matches("<th scope=\"row\">").count(), 7 * 24);
    assert!(
        page.contains("tabindex=\"0\" role=\"region\" aria-labelledby=\"table-history-caption\"")
    );
}

async fn weather_charts_have_no_aqi_caption_and_wind_reads_as_a_compass(site: Site) {
    let mut b = site.browser();
    let (_, page) = b.get("/stations/berlin_a?parameter=temperature").await;
    let figure = element(&page, "figure", "history-chart");
    assert!(figure.contains("Temperature at Station berlin_a"));
    assert!(!figure.contains("AQI"), "{figure}");
    assert!(!history_svg(&page).contains("threshold"));

    let (_, page) = b.get("/stations/berlin_a?parameter=wind_direction").await;
    assert!(
        page.contains("NNW 340°"),
        "the latest values say a compass point"
    );
    assert!(!page.contains("340 deg") && !page.contains(" deg<"));
    let figure = element(&page, "figure", "history-chart");
    assert!(figure.contains("data-compass") && figure.contains("data-unit=\"°\""));
    assert!(figure.contains("the direction the wind blows from"));
    let table = element(&page, "table", "table-history");
    assert!(table.contains("<td class=\"num\">NNW 340°</td>"));
}

async fn the_main_pollutant_is_shown_first_and_two_indices_explained(site: Site) {
    let mut b = site.browser();
    // NO₂ drives New York's AQI: the page opens on it (not on PM2.5, listed first).
    let (_, page) = b.get("/stations/nyc").await;
    assert!(
        page.contains("<option value=\"no2\" selected>"),
        "NO₂ first"
    );
    assert!(page.contains("— mostly Nitrogen dioxide (NO₂)"));
    let why = element(&page, "p", "two-indices");
    assert!(
        why.contains("built differently") && why.contains("NO₂") && why.contains("bands"),
        "{why}"
    );
    assert!(why.contains("This city has chosen the US AQI as its headline index."));
    assert!(page.contains("aria-label=\"US AQI: "));
    // Indices that agree are not explained.
    let (_, berlin) = b.get("/stations/berlin_b").await;
    assert!(!berlin.contains("id=\"two-indices\""));
}

async fn a_city_may_head_with_the_european_index(site: Site) {
    let mut b = site.browser();
    let (_, page) = b.get("/stations/nyc").await;
    let why = element(&page, "p", "two-indices");
    assert!(why.contains("This city has chosen the European index as its headline index."));
    assert!(page.contains("aria-label=\"European index: Extremely poor\""));
    assert!(page.contains("class=\"aqi aqi-big eaqi-extremely_poor\""));
}

macro_rules! both_backends {
    ($($name:ident: $headline:expr),* $(,)?) => {
        mod sqlite {
            use super::HeadlineIndex;
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = ecocityhub_store::connect(&super::testing::sqlite_url(dir.path())).await.unwrap();
                    super::$name(super::spawn_site(std::sync::Arc::new(store), Some(dir), $headline).await).await;
                }
            )*
        }
        mod postgres {
            use super::HeadlineIndex;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = super::testing::fresh_postgres_url().await else { return };
                    let store = ecocityhub_store::connect(&url).await.unwrap();
                    super::$name(super::spawn_site(std::sync::Arc::new(store), None, $headline).await).await;
                }
            )*
        }
    };
}

both_backends!(
    old_readings_are_dated_and_never_called_now: HeadlineIndex::UsAqi,
    a_replay_is_labelled_on_every_page_including_home: HeadlineIndex::UsAqi,
    charts_read_on_a_phone_with_each_category_line_labelled_once: HeadlineIndex::UsAqi,
    weather_charts_have_no_aqi_caption_and_wind_reads_as_a_compass: HeadlineIndex::UsAqi,
    the_main_pollutant_is_shown_first_and_two_indices_explained: HeadlineIndex::UsAqi,
    a_city_may_head_with_the_european_index: HeadlineIndex::Eaqi,
);
