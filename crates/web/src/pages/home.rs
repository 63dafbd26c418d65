//! The home page: a map of the stations of one region coloured by their latest AQI over the
//! offline basemap, panned and zoomed by links (`lat`, `lon`, `zoom`; see
//! [`map::Viewport`]), the legend, and the region's summary (the worst stations, how each pollutant moved over the
//! last day, every station in a table), with citizens' reports as a second map layer. Only
//! readings of the last hours ([`view::RECENT_SECONDS`]) are called "now": older ones are
//! "the latest readings" of their date, and a replay of historical data says so. The
//! region part is computed once per "latest" snapshot and shared by all visitors until the
//! next, and so is each panned or zoomed map of it ([`MAPS_KEPT`]); the reports layer is drawn into it per request from the map pins (one query, kept for
//! a few seconds and dropped when a page changes a report).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use ecocityhub_api::latest::LatestStation;
use ecocityhub_domain::aqi::us_epa::Category;
use ecocityhub_domain::{Parameter, Station};
use ecocityhub_store::reports::ReportPin;
use serde::Deserialize;

use crate::error::WebResult;
use crate::map::{self, MapControls, MapOptions, MapStation, Projection, Viewport};
use crate::pages::region_names::region_names;
use crate::session::Visitor;
use crate::view::{self, category_class, Layout};
use crate::{replay, WebState};

/// A group of stations shown on one map: those of one time zone (one city or country), named
/// by its place ([`region_names`]).
#[derive(Debug, Clone)]
pub struct Region {
    pub key: String,
    pub label: String,
    pub count: usize,
    pub href: String,
}

/// A station row of the summary.
#[derive(Debug, Clone)]
pub struct StationRow {
    pub id: String,
    pub name: String,
    pub area: String,
    pub aqi: String,
    pub class: &'static str,
    pub category: &'static str,
    pub dominant: String,
    pub updated: String,
}

/// How a pollutant moved over a day, averaged over the region's stations.
#[derive(Debug, Clone)]
pub struct Trend {
    pub parameter: &'static str,
    pub now: String,
    pub unit: &'static str,
    pub change: String,
    pub arrow: &'static str,
    pub stations: usize,
}

/// The region part of the page, shared by all visitors.
pub struct RegionView {
    pub regions: Vec<Region>,
    pub current: String,
    pub current_label: String,
    /// The page of the region (`/?region=…`).
    pub page: String,
    /// The region's stations as the map draws them.
    pub map_stations: Vec<MapStation>,
    /// The map's accessible name.
    pub map_label: String,
    /// The map fitted to the region's stations.
    pub map: Arc<DrawnMap>,
    pub worst: Vec<StationRow>,
    pub all: Vec<StationRow>,
    pub trends: Vec<Trend>,
    pub reporting: usize,
    pub total: usize,
    /// The time of the region's newest reading.
    pub newest: Option<DateTime<Utc>>,
    /// "Replay: …" when the region's stations replay historical data.
    pub replay: Option<String>,
}

/// One view of a region's map, drawn once.
pub struct DrawnMap {
    /// The view (to draw the reports on it).
    pub projection: Projection,
    /// The SVG, with [`map::REPORTS_SLOT`] for the reports.
    pub svg: String,
    /// The links that pan and zoom it.
    pub controls: MapControls,
}

/// What the page calls its readings: "now" only when they are recent.
pub struct Headings {
    pub title: String,
    pub h1: String,
    pub worst: String,
    pub trends: String,
}

/// The headings of a region's page at `now`: "Air quality now" when its newest reading is
/// recent, else "latest readings, 31 Dec 2008".
pub fn headings(view: &RegionView, now: DateTime<Utc>) -> Headings {
    let label = &view.current_label;
    match view.newest {
        Some(t) if !view::is_recent(t, now) => {
            let date = view::fmt_date(t);
            Headings {
                title: format!("Air quality: latest readings, {date} — {label}"),
                h1: format!("{label}: latest readings, {date}"),
                worst: "Worst air in the latest readings".into(),
                trends: format!("Over the last day of readings, to {date}"),
            }
        }
        _ => Headings {
            title: format!("Air quality now — {label}"),
            h1: format!("Air quality now: {label}"),
            worst: "Worst air now".into(),
            trends: "Over the last day".into(),
        },
    }
}

/// Region views of the current snapshot, and the reports' map pins.
#[derive(Default)]
pub struct HomeCache {
    inner: Mutex<Option<Cached>>,
    pins: Mutex<Option<(Instant, Arc<Vec<ReportPin>>)>>,
    /// Report layers drawn for (map, pins): drawing 10,000 pins costs more than the rest of
    /// the page, so each pair is drawn once.
    layers: Mutex<Vec<DrawnLayer>>,
    /// Panned and zoomed maps, the newest last.
    maps: Mutex<Vec<KeptMap>>,
}

struct KeptMap {
    view: Arc<RegionView>,
    at: Viewport,
    map: Arc<DrawnMap>,
}

/// Panned or zoomed maps kept (a visitor moving around, a few regions).
pub const MAPS_KEPT: usize = 32;

struct DrawnLayer {
    map: Arc<DrawnMap>,
    pins: Arc<Vec<ReportPin>>,
    svg: Arc<String>,
    shown: usize,
}

/// Layers kept (a few regions × the pins of the last seconds).
const LAYERS_KEPT: usize = 16;

/// How long the reports' pins are kept (reports changed through the API show after this).
const PINS_TTL: Duration = Duration::from_secs(10);

impl HomeCache {
    /// A report changed: the next map reads the pins again.
    pub fn reports_changed(&self) {
        *self.pins.lock().expect("not poisoned") = None;
    }

    /// The map of `view` at `at` (its fitted map without one), drawn once.
    fn map(
        &self,
        view: &Arc<RegionView>,
        at: Option<Viewport>,
        tiles: Option<&str>,
    ) -> Arc<DrawnMap> {
        let Some(at) = at else {
            return view.map.clone();
        };
        let kept = self.maps.lock().expect("not poisoned");
        if let Some(k) = kept
            .iter()
            .find(|k| Arc::ptr_eq(&k.view, view) && k.at == at)
        {
            return k.map.clone();
        }
        drop(kept);
        let p = Projection::centred(&at, view.map.projection.height);
        let opts = MapOptions {
            tile_url: tiles,
            label: &view.map_label,
            page: &view.page,
        };
        let map = Arc::new(draw_map(&view.map_stations, p, &opts, false));
        let mut maps = self.maps.lock().expect("not poisoned");
        if maps.len() >= MAPS_KEPT {
            maps.remove(0);
        }
        maps.push(KeptMap {
            view: view.clone(),
            at,
            map: map.clone(),
        });
        map
    }

    /// The reports layer of `map` with `pins`, drawn once per pair.
    fn report_layer(
        &self,
        map: &Arc<DrawnMap>,
        pins: &Arc<Vec<ReportPin>>,
    ) -> (Arc<String>, usize) {
        let mut layers = self.layers.lock().expect("not poisoned");
        if let Some(l) = layers
            .iter()
            .find(|l| Arc::ptr_eq(&l.map, map) && Arc::ptr_eq(&l.pins, pins))
        {
            return (l.svg.clone(), l.shown);
        }
        let (svg, shown) = map::report_layer(&map.projection, pins);
        let svg = Arc::new(svg);
        layers.retain(|l| Arc::ptr_eq(&l.pins, pins));
        if layers.len() >= LAYERS_KEPT {
            layers.remove(0);
        }
        layers.push(DrawnLayer {
            map: map.clone(),
            pins: pins.clone(),
            svg: svg.clone(),
            shown,
        });
        (svg, shown)
    }
}

/// Every visible report's pin: one query, shared for [`PINS_TTL`].
async fn report_pins(web: &WebState) -> WebResult<Arc<Vec<ReportPin>>> {
    if let Some((at, pins)) = web.cache.pins.lock().expect("not poisoned").as_ref() {
        if at.elapsed() < PINS_TTL {
            return Ok(pins.clone());
        }
    }
    let pins = Arc::new(web.app.store().report_pins().await?);
    *web.cache.pins.lock().expect("not poisoned") = Some((Instant::now(), pins.clone()));
    Ok(pins)
}

/// The views of one snapshot (known by when it was computed and its generation), by region.
struct Cached {
    at: Instant,
    generation: u64,
    views: HashMap<String, Arc<RegionView>>,
}

#[derive(Deserialize)]
pub struct HomeQuery {
    region: Option<String>,
    /// The map's centre and zoom level (all three, else the map fits the region).
    lat: Option<String>,
    lon: Option<String>,
    zoom: Option<String>,
}

/// The legend's entries: (class, label).
pub fn legend() -> Vec<(&'static str, &'static str)> {
    Category::UPPER_BOUNDS
        .iter()
        .map(|(c, _)| (category_class(Some(*c)), c.label()))
        .chain(std::iter::once(("none", "No current AQI")))
        .collect()
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    headings: Headings,
    view: Arc<RegionView>,
    /// The map shown (its controls).
    map: Arc<DrawnMap>,
    /// The region's map with the reports drawn in.
    map_svg: String,
    /// Reports on the map.
    reports: usize,
    legend: Vec<(&'static str, &'static str)>,
    tile_attribution: Option<String>,
}

/// `GET /`
pub async fn home(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<HomeQuery>,
) -> WebResult<Response> {
    let view = region_view(&web, q.region.as_deref()).await?;
    let at = Viewport::parse(q.lat.as_deref(), q.lon.as_deref(), q.zoom.as_deref());
    let map = web.cache.map(&view, at, web.config.tile_url.as_deref());
    let pins = report_pins(&web).await?;
    let (layer, reports) = web.cache.report_layer(&map, &pins);
    let map_svg = map.svg.replacen(map::REPORTS_SLOT, &layer, 1);
    let headings = headings(&view, Utc::now());
    let layout = Layout::new(&web, &visitor, headings.title.clone())
        .section("map")
        .replay(view.replay.clone());
    super::page(HomePage {
        layout,
        headings,
        view,
        map,
        map_svg,
        reports,
        legend: legend(),
        tile_attribution: web
            .config
            .tile_url
            .as_ref()
            .map(|_| web.config.tile_attribution.clone().unwrap_or_default()),
    })
}

/// The region view for the current snapshot (computed at most once per snapshot and region).
pub async fn region_view(web: &WebState, region: Option<&str>) -> WebResult<Arc<RegionView>> {
    let snapshot = web.app.latest().await?;
    let wanted = region.unwrap_or("").to_string();
    if let Some(c) = web.cache.inner.lock().expect("not poisoned").as_ref() {
        if c.at == snapshot.computed_at && c.generation == snapshot.generation {
            if let Some(v) = c.views.get(&wanted) {
                return Ok(v.clone());
            }
        }
    }
    let stations = web.app.store().stations().await?;
    let view = Arc::new(build_view(web, &snapshot.stations, &stations, &wanted).await?);
    let mut cache = web.cache.inner.lock().expect("not poisoned");
    match cache.as_mut() {
        Some(c) if c.at == snapshot.computed_at && c.generation == snapshot.generation => {
            c.views.insert(wanted, view.clone());
        }
        _ => {
            *cache = Some(Cached {
                at: snapshot.computed_at,
                generation: snapshot.generation,
                views: HashMap::from([(wanted, view.clone())]),
            })
        }
    }
    Ok(view)
}

fn row(s: &LatestStation, now: chrono::DateTime<Utc>) -> StationRow {
    let category = s.aqi.as_ref().map(|a| a.category);
    StationRow {
        id: s.station.to_string(),
        name: s.name.clone(),
        area: s.area.clone().unwrap_or_default(),
        aqi: s
            .aqi
            .as_ref()
            .map(|a| a.aqi.to_string())
            .unwrap_or_else(|| "–".into()),
        class: category_class(category),
        category: category.map(|c| c.label()).unwrap_or("No current AQI"),
        dominant: s
            .aqi
            .as_ref()
            .map(|a| a.dominant.display_name().to_string())
            .unwrap_or_default(),
        updated: match s.time {
            Some(t) if s.stale => format!("{} (no recent data)", view::ago(t, now)),
            Some(t) => view::ago(t, now),
            None => "never".into(),
        },
    }
}

/// The stations of the snapshot by region (time zone).
fn by_region<'a>(
    latest: &'a [LatestStation],
    stations: &[Station],
) -> BTreeMap<String, Vec<&'a LatestStation>> {
    let timezone_of: HashMap<&str, &str> = stations
        .iter()
        .map(|s| (s.id.as_str(), s.timezone.as_str()))
        .collect();
    let mut out: BTreeMap<String, Vec<&LatestStation>> = BTreeMap::new();
    for s in latest {
        let tz = timezone_of
            .get(s.station.as_str())
            .copied()
            .unwrap_or("UTC");
        out.entry(tz.to_string()).or_default().push(s);
    }
    out
}

/// The region asked for, else the one with the most stations.
fn pick_region(by_region: &BTreeMap<String, Vec<&LatestStation>>, wanted: &str) -> String {
    if by_region.contains_key(wanted) {
        return wanted.to_string();
    }
    by_region
        .iter()
        .max_by_key(|(k, v)| (v.len(), std::cmp::Reverse((*k).clone())))
        .map(|(k, _)| k.clone())
        .unwrap_or_default()
}

/// The page of a region.
fn region_page(key: &str) -> String {
    format!("/?region={}", view::url_encode(key))
}

/// The region tabs, the largest first.
fn region_tabs(
    by_region: &BTreeMap<String, Vec<&LatestStation>>,
    names: &HashMap<String, String>,
) -> Vec<Region> {
    let mut regions: Vec<Region> = by_region
        .iter()
        .map(|(k, v)| Region {
            key: k.clone(),
            label: names[k].clone(),
            count: v.len(),
            href: region_page(k),
        })
        .collect();
    regions.sort_by(|a, b| b.count.cmp(&a.count).then(a.label.cmp(&b.label)));
    regions
}

fn map_station(s: &LatestStation) -> MapStation {
    MapStation {
        id: s.station.to_string(),
        name: s.name.clone(),
        lat: s.location.lat,
        lon: s.location.lon,
        aqi: s.aqi.as_ref().map(|a| a.aqi),
        category: s.aqi.as_ref().map(|a| a.category),
        stale: s.stale,
    }
}

async fn build_view(
    web: &WebState,
    latest: &[LatestStation],
    stations: &[Station],
    wanted: &str,
) -> WebResult<RegionView> {
    let now = Utc::now();
    let by_region = by_region(latest, stations);
    let current = pick_region(&by_region, wanted);
    let here: Vec<&LatestStation> = by_region.get(&current).cloned().unwrap_or_default();
    let names = region_names(&by_region);
    let current_label = names
        .get(&current)
        .cloned()
        .unwrap_or_else(|| web.config.site_name.clone());
    let mut ranked: Vec<&&LatestStation> = here.iter().filter(|s| s.aqi.is_some()).collect();
    ranked.sort_by_key(|s| std::cmp::Reverse(s.aqi.as_ref().map(|a| a.aqi)));
    let worst = ranked.iter().take(5).map(|s| row(s, now)).collect();
    let mut all: Vec<StationRow> = here.iter().map(|s| row(s, now)).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let ids: Vec<String> = here.iter().map(|s| s.station.to_string()).collect();
    let here_ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let trends = trends(web, &ids).await?;
    let map_stations: Vec<MapStation> = here.iter().map(|s| map_station(s)).collect();
    let map_label = format!(
        "Map of {} stations in {current_label}, coloured by their latest air quality index",
        here.len()
    );
    let page = region_page(&current);
    let opts = MapOptions {
        tile_url: web.config.tile_url.as_deref(),
        label: &map_label,
        page: &page,
    };
    let map = Arc::new(fitted_map(&map_stations, &opts));
    Ok(RegionView {
        regions: region_tabs(&by_region, &names),
        page,
        map_stations,
        map_label,
        map,
        current_label,
        current,
        worst,
        all,
        trends,
        reporting: here.iter().filter(|s| !s.stale && s.time.is_some()).count(),
        total: here.len(),
        newest: here.iter().filter_map(|s| s.time).max(),
        replay: replay::banner(stations.iter().filter(|s| here_ids.contains(s.id.as_str()))),
    })
}

/// The map of `stations` fitted to them.
fn fitted_map(stations: &[MapStation], opts: &MapOptions) -> DrawnMap {
    let points: Vec<(f64, f64)> = stations.iter().map(|s| (s.lat, s.lon)).collect();
    draw_map(stations, Projection::fit(&points), opts, true)
}

/// A map of `stations` in view `p` (`whole`: the fitted view), with its controls.
fn draw_map(stations: &[MapStation], p: Projection, opts: &MapOptions, whole: bool) -> DrawnMap {
    DrawnMap {
        svg: map::render(stations, &p, opts),
        controls: MapControls::new(opts.page, &p, whole),
        projection: p,
    }
}

/// Each pollutant's mean now against a day before, over the stations that have both.
async fn trends(web: &WebState, stations: &[String]) -> WebResult<Vec<Trend>> {
    const SHOWN: [Parameter; 4] = [
        Parameter::Pm25,
        Parameter::Pm10,
        Parameter::No2,
        Parameter::O3,
    ];
    let recent = web.app.store().recent(86_400 + 3_600).await?;
    let mut sums: HashMap<Parameter, (f64, f64, usize)> = HashMap::new();
    for series in recent {
        if !SHOWN.contains(&series.parameter)
            || !stations.iter().any(|s| s == series.station.as_str())
        {
            continue;
        }
        let valid: Vec<_> = series
            .points
            .iter()
            .filter(|p| p.flag != ecocityhub_domain::QualityFlag::Invalid)
            .collect();
        let Some(last) = valid.last() else { continue };
        let day_before = last.ts - 86_400;
        let Some(before) = valid
            .iter()
            .filter(|p| (p.ts - day_before).abs() <= 3_600)
            .min_by_key(|p| (p.ts - day_before).abs())
        else {
            continue;
        };
        let e = sums.entry(series.parameter).or_default();
        e.0 += last.value;
        e.1 += before.value;
        e.2 += 1;
    }
    Ok(SHOWN
        .iter()
        .filter_map(|p| {
            let &(now, before, n) = sums.get(p)?;
            let (now, before) = (now / n as f64, before / n as f64);
            let change = if before > 0.0 {
                (now - before) / before * 100.0
            } else {
                0.0
            };
            let (arrow, words) = if change.abs() < 5.0 {
                ("→", "about the same as".to_string())
            } else if change > 0.0 {
                ("↑", format!("{change:.0}% higher than"))
            } else {
                ("↓", format!("{:.0}% lower than", -change))
            };
            Some(Trend {
                parameter: p.display_name(),
                now: view::fmt_value(now),
                unit: p.canonical_unit().symbol(),
                change: format!("{words} a day earlier"),
                arrow,
                stations: n,
            })
        })
        .collect())
}
