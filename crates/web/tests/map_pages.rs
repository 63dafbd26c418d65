//! The map that orients, over HTTP on SQLite: the demo's stations (London, Beijing, the German
//! network, New York, Melbourne: `crates/ecocityhub/demo/stations.csv`) grouped into regions
//! named by their place, the offline basemap under the stations, links (and keys) that pan and
//! zoom, and crowded stations drawn as clusters whose link zooms in on them.

mod common;

use common::Browser;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{Duration, DurationRound, Utc};
use ecocityhub_api::{ApiConfig, AppState};
use ecocityhub_domain::{GeoPoint, Parameter, QualityFlag, Reading, Station, StationId};
use ecocityhub_store::{testing, Store};
use ecocityhub_web::WebConfig;
use reqwest::StatusCode;

const DEMO_STATIONS: &str = include_str!("../../ecocityhub/demo/stations.csv");

/// The fields of a CSV line (quoted fields may hold commas).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

async fn add_station(store: &dyn Store, id: &str, (lat, lon): (f64, f64), area: &str, tz: &str) {
    let area = (!area.is_empty()).then(|| area.to_string());
    let s = Station::new(
        StationId::parse(id).unwrap(),
        format!("Station {id}"),
        GeoPoint::new(lat, lon).unwrap(),
        area,
        tz,
    )
    .unwrap();
    store.upsert_station(&s).await.unwrap();
}

/// Six hours of PM2.5 at `pm25` µg/m³ up to now.
async fn readings(store: &dyn Store, id: &str, pm25: f64) {
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let readings: Vec<Reading> = (0..6)
        .map(|h| Reading {
            station: StationId::parse(id).unwrap(),
            parameter: Parameter::Pm25,
            time: now - Duration::hours(h),
            value: pm25,
            flag: QualityFlag::Valid,
        })
        .collect();
    store.insert_readings(&readings).await.unwrap();
}

/// The demo's stations with clean air, and a crowd of 30 stations within 200 m in Paris (one
/// of them with very unhealthy air) far from any other.
async fn fill(store: &dyn Store) {
    for line in DEMO_STATIONS.lines().skip(1) {
        let f = fields(line);
        let at = (f[2].parse().unwrap(), f[3].parse().unwrap());
        add_station(store, &f[0], at, &f[4], &f[5]).await;
        readings(store, &f[0], 5.0).await;
    }
    for i in 0..30 {
        let at = (
            48.8566 + f64::from(i / 6) * 0.0004,
            2.3522 + f64::from(i % 6) * 0.0005,
        );
        let id = format!("crowd_{i}");
        add_station(store, &id, at, "", "Europe/Paris").await;
        readings(store, &id, if i == 17 { 200.0 } else { 5.0 }).await;
    }
}

async fn spawn_site(store: Arc<dyn Store>) -> String {
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
    let app = ecocityhub_web::app(state, WebConfig::new(&base));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    base
}

/// The map's SVG of a page.
fn map_svg(page: &str) -> &str {
    let start = page.find("<svg class=\"map\"").expect("a map");
    &page[start..start + page[start..].find("</svg>").unwrap() + 6]
}

/// The value of attribute `attr` of the element with id `id`, unescaped.
fn attr_of(page: &str, id: &str, attr: &str) -> String {
    let at = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let tag = &page[page[..at].rfind('<').unwrap()..];
    let tag = &tag[..tag.find('>').unwrap()];
    let key = format!(" {attr}=\"");
    let v = &tag[tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {attr} on #{id}"))
        + key.len()..];
    v[..v.find('"').unwrap()]
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// The (href, count, worst) of each cluster marker.
fn clusters(svg: &str) -> Vec<(String, usize, String)> {
    svg.match_indices("<a href=\"")
        .filter_map(|(i, m)| {
            let rest = &svg[i + m.len()..];
            let href = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
            let g = &rest[..rest.find("</a>").unwrap()];
            let count = g
                .split("data-count=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()?;
            let worst = g
                .split("data-worst=\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_string();
            Some((href, count, worst))
        })
        .collect()
}

/// The station links of a map.
fn station_links(svg: &str) -> usize {
    svg.matches("<a href=\"/stations/").count()
}

/// The stations a map shows, alone or in clusters.
fn shown(svg: &str) -> usize {
    station_links(svg) + clusters(svg).iter().map(|c| c.1).sum::<usize>()
}

async fn regions_are_named_by_their_place_with_the_basemap_under_them(base: String) {
    let mut b = Browser::new(&base);
    let (status, home) = b.get("/").await;
    assert_eq!(status, StatusCode::OK);
    for tab in [
        "Germany (70)",
        "London (1)",
        "Beijing (1)",
        "New York (3)",
        "Paris (30)",
    ] {
        assert!(home.contains(&format!("{tab}</a>")), "the tab {tab}");
    }
    assert!(
        !home.contains(" region ("),
        "no region named by its time zone"
    );
    assert!(
        home.contains("Air quality now: Germany"),
        "the largest region first"
    );

    let (_, london) = b.get("/?region=Europe/London").await;
    assert!(london.contains("Air quality now: London"));
    let svg = map_svg(&london);
    assert!(
        svg.contains(r#"<g class="basemap" data-detail="50m""#),
        "the basemap under the stations"
    );
    assert!(svg.contains(r#"<path class="land""#));
    assert!(svg.contains(">London</text>"), "the place is labelled");
    assert!(
        svg.find("class=\"basemap\"").unwrap() < svg.find("/stations/marylebone_road").unwrap()
    );
    let (_, beijing) = b.get("/?region=Asia/Shanghai").await;
    assert!(beijing.contains("Air quality now: Beijing"));
    assert!(!beijing.contains("Shanghai region"));
    let (_, nyc) = b.get("/?region=America/New_York").await;
    assert!(nyc.contains("Air quality now: New York"));
    let (_, world) = b.get("/?region=Europe/Berlin&lat=30&lon=10&zoom=2").await;
    println!(
        "SVG bytes: London {}, Beijing {}, Germany {}, New York {}, the world {}",
        svg.len(),
        map_svg(&beijing).len(),
        map_svg(&home).len(),
        map_svg(&nyc).len(),
        map_svg(&world).len()
    );
    let germany = map_svg(&home);
    assert!(
        germany.contains(r#"<path class="border""#) && germany.contains(r#"<path class="coast""#)
    );
    assert!(
        germany.len() < 90_000,
        "the German map weighs {} bytes",
        germany.len()
    );
}

async fn links_and_keys_pan_and_zoom_the_map(base: String) {
    let mut b = Browser::new(&base);
    let (_, home) = b.get("/?region=Europe/Berlin").await;
    assert!(home
        .contains(r#"id="map" tabindex="0" role="region" aria-label="Map: press + or - to zoom"#));
    assert!(home.contains("aria-keyshortcuts=\"+ - 0 ArrowUp ArrowDown ArrowLeft ArrowRight\""));
    for (id, key) in [
        ("map-zoom-in", "+"),
        ("map-zoom-out", "-"),
        ("map-pan-north", "ArrowUp"),
        ("map-pan-east", "ArrowRight"),
    ] {
        assert_eq!(attr_of(&home, id, "data-key"), key);
    }
    let whole = shown(map_svg(&home));
    assert_eq!(whole, 70, "every German station at the whole view");
    // Zoomed in twice on the middle: fewer stations, the same region.
    let zoom_in = attr_of(&home, "map-zoom-in", "href");
    assert!(
        zoom_in.starts_with("/?region=Europe/Berlin&lat="),
        "{zoom_in}"
    );
    let (status, closer) = b.get(&zoom_in).await;
    assert_eq!(status, StatusCode::OK);
    let (_, closest) = b.get(&attr_of(&closer, "map-zoom-in", "href")).await;
    let near = shown(map_svg(&closest));
    assert!(near > 0 && near < whole, "{near} of {whole} stations");
    assert!(
        closest.contains("id=\"map-whole\""),
        "a way back to the whole region"
    );
    assert_eq!(
        attr_of(&closest, "map-whole", "href"),
        "/?region=Europe/Berlin"
    );
    // Zoomed out to the world: the coarse data.
    let (_, world) = b.get("/?region=Europe/Berlin&lat=50&lon=10&zoom=1").await;
    assert!(map_svg(&world).contains(r#"data-detail="110m""#));
    assert!(map_svg(&world).len() < 90_000);
    // Panned east: the view's centre moved east.
    let east = attr_of(&home, "map-pan-east", "href");
    let west = attr_of(&home, "map-pan-west", "href");
    let lon = |href: &str| -> f64 {
        href.split("lon=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(lon(&east) > lon(&west));
    assert_eq!(b.get(&east).await.0, StatusCode::OK);
    // Nonsense parameters show the whole region.
    let (status, odd) = b.get("/?region=Europe/Berlin&lat=x&lon=1&zoom=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown(map_svg(&odd)), whole);
    // The script follows the keys' links.
    let js = b
        .client
        .get(b.url(ecocityhub_web::assets::url("app.js")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("[data-map-keys]") && js.contains("data-key") && js.contains("keydown"));
}

async fn crowded_stations_are_one_cluster_that_zooms_in_on_them(base: String) {
    let mut b = Browser::new(&base);
    let (_, home) = b.get("/").await;
    // Berlin's stations crowd at the scale of Germany; the view shows them all.
    let germany = clusters(map_svg(&home));
    assert!(
        !germany.is_empty() && shown(map_svg(&home)) == 70,
        "{germany:?}"
    );
    // The Paris crowd: one marker at the scale of France.
    let (_, france) = b.get("/?region=Europe/Paris&lat=46.5&lon=2.5&zoom=5").await;
    let found = clusters(map_svg(&france));
    assert_eq!(found.len(), 1, "{found:?}");
    let (href, count, worst) = &found[0];
    assert_eq!(*count, 30);
    assert_eq!(
        worst, "very_unhealthy",
        "the worst of them colours the cluster"
    );
    assert_eq!(station_links(map_svg(&france)), 0);
    // Its link shows each of its stations.
    let (status, zoomed) = b.get(href).await;
    assert_eq!(status, StatusCode::OK);
    let svg = map_svg(&zoomed);
    assert_eq!(shown(svg), 30, "{href}");
    for i in 0..30 {
        let single = svg.contains(&format!("href=\"/stations/crowd_{i}\""));
        assert!(single || !clusters(svg).is_empty(), "crowd_{i}");
    }
}

#[tokio::test]
async fn the_map_orients() {
    let dir = tempfile::tempdir().unwrap();
    let store = ecocityhub_store::connect(&testing::sqlite_url(dir.path()))
        .await
        .unwrap();
    let base = spawn_site(Arc::new(store)).await;
    regions_are_named_by_their_place_with_the_basemap_under_them(base.clone()).await;
    links_and_keys_pan_and_zoom_the_map(base.clone()).await;
    crowded_stations_are_one_cluster_that_zooms_in_on_them(base).await;
}
