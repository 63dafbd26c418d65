//! The map of stations: a Web Mercator projection of their coordinates fitted to the view (or
//! a [`Viewport`] panned and zoomed from it), drawn as SVG with one link per station, coloured
//! by its AQI category; stations that would hide each other are one cluster marker
//! ([`cluster`]). It needs no network: the offline [`basemap`](crate::basemap) (land, coasts,
//! borders, major places) is drawn underneath, or, with a tile URL configured, the tiles
//! covering the view. Citizens' reports are a second layer ([`report_layer`]), drawn per
//! request into the cached station map at [`REPORTS_SLOT`], over the stations (a report is
//! often filed at a station's place).

pub mod cluster;
pub mod viewport;

pub use viewport::{MapControls, Viewport};

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ecocityhub_domain::aqi::us_epa::Category;
use ecocityhub_domain::ReportState;
use ecocityhub_store::reports::ReportPin;

/// Where [`render`] leaves room for the reports layer (over the stations).
pub const REPORTS_SLOT: &str = "<!--reports-->";

/// The side of a cell of the reports layer, in SVG units: reports sharing a cell are drawn as
/// one marker with their number, so the layer has at most a few hundred markers however many
/// reports there are.
pub const REPORT_CELL: f64 = 32.0;

/// A station as the map draws it.
#[derive(Debug, Clone)]
pub struct MapStation {
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub aqi: Option<u32>,
    pub category: Option<Category>,
    pub stale: bool,
}

/// Width of the map in SVG units; its height follows the stations' extent.
pub const WIDTH: f64 = 800.0;

/// Normalised Web Mercator: x and y in 0..1 (y down).
pub(crate) fn mercator(lat: f64, lon: f64) -> (f64, f64) {
    let lat = lat.clamp(-85.05, 85.05).to_radians();
    let x = (lon + 180.0) / 360.0;
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0;
    (x, y)
}

pub(crate) fn inverse_lat(y: f64) -> f64 {
    let n = std::f64::consts::PI * (1.0 - 2.0 * y);
    n.sinh().atan().to_degrees()
}

/// The view: normalised origin, scale (SVG units per normalised unit) and height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    pub x0: f64,
    pub y0: f64,
    pub scale: f64,
    pub height: f64,
}

impl Projection {
    /// Fits all points with a margin; a single point gets a view about 20 km across at the
    /// equator (12 km in London), enough to show the place it is in.
    pub fn fit(points: &[(f64, f64)]) -> Projection {
        let projected: Vec<(f64, f64)> = points.iter().map(|&(la, lo)| mercator(la, lo)).collect();
        let (mut minx, mut maxx, mut miny, mut maxy) = (1.0f64, 0.0f64, 1.0f64, 0.0f64);
        for &(x, y) in &projected {
            minx = minx.min(x);
            maxx = maxx.max(x);
            miny = miny.min(y);
            maxy = maxy.max(y);
        }
        if projected.is_empty() {
            (minx, maxx, miny, maxy) = (0.0, 1.0, 0.2, 0.8);
        }
        let min_span = 0.0005; // ~ 20 km at the equator
        let (cx, cy) = ((minx + maxx) / 2.0, (miny + maxy) / 2.0);
        let mut dx = (maxx - minx).max(min_span);
        let mut dy = (maxy - miny).max(min_span);
        dx *= 1.16;
        dy *= 1.16;
        // Keep the view between 3:8 and 1:1 (height:width).
        let aspect = (dy / dx).clamp(0.375, 1.0);
        if dy / dx < aspect {
            dy = dx * aspect;
        } else {
            dx = dy / aspect;
        }
        let scale = WIDTH / dx;
        Projection {
            x0: cx - dx / 2.0,
            y0: cy - dy / 2.0,
            scale,
            height: (dy * scale).round(),
        }
    }

    /// SVG coordinates of a point.
    pub fn project(&self, lat: f64, lon: f64) -> (f64, f64) {
        let (x, y) = mercator(lat, lon);
        ((x - self.x0) * self.scale, (y - self.y0) * self.scale)
    }

    /// The point (lat, lon) at SVG coordinates.
    pub fn unproject(&self, x: f64, y: f64) -> (f64, f64) {
        let lon = (x / self.scale + self.x0) * 360.0 - 180.0;
        (inverse_lat(y / self.scale + self.y0), lon)
    }

    /// The point falls inside the view.
    pub fn shows(&self, x: f64, y: f64) -> bool {
        (0.0..WIDTH).contains(&x) && (0.0..self.height).contains(&y)
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" grid step in degrees for a span.
fn grid_step(span: f64) -> f64 {
    [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0,
    ]
    .into_iter()
    .find(|s| span / s <= 8.0)
    .unwrap_or(45.0)
}

/// What the map is drawn with besides its stations.
#[derive(Debug, Clone, Copy)]
pub struct MapOptions<'a> {
    /// A tile URL template: tiles instead of the offline basemap.
    pub tile_url: Option<&'a str>,
    /// The map's accessible name.
    pub label: &'a str,
    /// The page the map is on, with its query (`/?region=…`): a cluster links to it zoomed
    /// in on the cluster's stations.
    pub page: &'a str,
}

/// The map of `stations` in the view `p`, as an SVG element (to be embedded in a page).
pub fn render(stations: &[MapStation], p: &Projection, opts: &MapOptions) -> String {
    let mut svg = String::with_capacity(60_000);
    write!(
        svg,
        r#"<svg class="map" viewBox="0 0 {w} {h}" role="group" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">"#,
        w = WIDTH,
        h = p.height,
        label = escape(opts.label)
    )
    .unwrap();
    match opts.tile_url {
        Some(template) => draw_tiles(&mut svg, p, template),
        None => svg.push_str(&crate::basemap::draw::basemap(p)),
    }
    draw_graticule(&mut svg, p);
    let groups = cluster::group(stations, p);
    let labels = groups.len() <= 8 && groups.iter().all(|g| g.members.len() == 1);
    for g in &groups {
        match g.members.as_slice() {
            [one] => draw_station(&mut svg, p, one, labels),
            _ => cluster::draw(&mut svg, p, g, opts.page),
        }
    }
    svg.push_str(REPORTS_SLOT);
    svg.push_str("</svg>");
    svg
}

/// The colour of a station's category (grey without one).
pub(crate) fn color_of(category: Option<Category>) -> &'static str {
    category.map(|c| c.color()).unwrap_or("#9aa5a8")
}

/// The ink that reads on a category's colour.
pub(crate) fn ink_on(category: Option<Category>) -> &'static str {
    match category {
        Some(Category::Unhealthy | Category::VeryUnhealthy | Category::Hazardous) => "#fff",
        _ => "#000",
    }
}

fn draw_station(svg: &mut String, p: &Projection, s: &MapStation, label: bool) {
    let (x, y) = p.project(s.lat, s.lon);
    let what = match (s.aqi, s.category) {
        (Some(aqi), Some(c)) => format!("AQI {aqi}, {}", c.label()),
        _ => "no current AQI".into(),
    };
    let stale = if s.stale { ", no recent data" } else { "" };
    let name = escape(&s.name);
    write!(
        svg,
        r#"<a href="/stations/{id}" aria-label="{name}: {what}{stale}"><g class="station{class}" data-station="{id}"><title>{name}: {what}{stale}</title><circle cx="{x:.1}" cy="{y:.1}" r="11" fill="{color}"/>"#,
        id = escape(&s.id),
        class = if s.stale { " stale" } else { "" },
        color = color_of(s.category),
    )
    .unwrap();
    if let Some(aqi) = s.aqi.filter(|&a| a < 1000) {
        write!(
            svg,
            r#"<text x="{x:.1}" y="{ty:.1}" font-size="10" text-anchor="middle" fill="{ink}" aria-hidden="true">{aqi}</text>"#,
            ty = y + 3.0,
            ink = ink_on(s.category),
        )
        .unwrap();
    }
    if label {
        write!(
            svg,
            r##"<text x="{lx:.1}" y="{ly:.1}" font-size="13" fill="#1b2a2f" aria-hidden="true">{name}</text>"##,
            lx = x + 13.0,
            ly = y + 4.0
        )
        .unwrap();
    }
    svg.push_str("</g></a>");
}

/// The reports in one cell of the layer.
#[derive(Default)]
struct Cell<'a> {
    pins: Vec<&'a ReportPin>,
    open: usize,
}

fn is_open(pin: &ReportPin) -> bool {
    pin.state.parse::<ReportState>().is_ok_and(|s| s.is_open())
}

/// The reports inside the view as SVG markers (small squares: filled when open, hollow when
/// closed), one per cell of [`REPORT_CELL`] units; a cell of several reports is one bigger
/// square with their number, linking to the list of the reports there. Returns the layer and
/// how many reports it shows.
pub fn report_layer(p: &Projection, pins: &[ReportPin]) -> (String, usize) {
    let mut cells: BTreeMap<(i64, i64), Cell> = BTreeMap::new();
    for pin in pins {
        let (x, y) = p.project(pin.lat, pin.lon);
        if !p.shows(x, y) {
            continue;
        }
        let key = ((x / REPORT_CELL) as i64, (y / REPORT_CELL) as i64);
        let cell = cells.entry(key).or_default();
        cell.open += usize::from(is_open(pin));
        cell.pins.push(pin);
    }
    let shown = cells.values().map(|c| c.pins.len()).sum();
    let mut svg = String::with_capacity(64 + cells.len() * 260);
    svg.push_str(r#"<g class="reports">"#);
    for ((cx, cy), cell) in &cells {
        match cell.pins.as_slice() {
            [one] => draw_report(&mut svg, p, one),
            _ => draw_cluster(&mut svg, p, (*cx, *cy), cell),
        }
    }
    svg.push_str("</g>");
    (svg, shown)
}

fn draw_report(svg: &mut String, p: &Projection, pin: &ReportPin) {
    let (x, y) = p.project(pin.lat, pin.lon);
    let state = pin.state.parse::<ReportState>().ok();
    let words = format!(
        "Report: {} ({})",
        escape(&pin.title),
        state.map_or(pin.state.as_str(), |s| s.label())
    );
    write!(
        svg,
        r#"<a href="/reports/{id}" aria-label="{words}"><g class="report {class}"><title>{words}</title><rect x="{rx:.1}" y="{ry:.1}" width="9" height="9"/></g></a>"#,
        id = escape(&pin.id),
        class = if is_open(pin) { "open" } else { "closed" },
        rx = x - 4.5,
        ry = y - 4.5,
    )
    .unwrap();
}

fn draw_cluster(svg: &mut String, p: &Projection, (cx, cy): (i64, i64), cell: &Cell) {
    let n = cell.pins.len();
    let (x0, y0) = (cx as f64 * REPORT_CELL, cy as f64 * REPORT_CELL);
    let (x1, y1) = (x0 + REPORT_CELL, y0 + REPORT_CELL);
    let (min_lat, min_lon) = p.unproject(x0, y1);
    let (max_lat, max_lon) = p.unproject(x1, y0);
    // The square sits at the reports' mean position.
    let (sx, sy) = cell.pins.iter().fold((0.0, 0.0), |(ax, ay), pin| {
        let (x, y) = p.project(pin.lat, pin.lon);
        (ax + x, ay + y)
    });
    let (x, y) = (sx / n as f64, sy / n as f64);
    let words = format!("{n} reports here ({} open)", cell.open);
    write!(
        svg,
        r#"<a href="/reports?state=all&amp;bbox={min_lon:.5},{min_lat:.5},{max_lon:.5},{max_lat:.5}" aria-label="{words}"><g class="report cluster {class}"><title>{words}</title><rect x="{rx:.1}" y="{ry:.1}" width="16" height="16"/><text x="{x:.1}" y="{ty:.1}" font-size="9" text-anchor="middle" aria-hidden="true">{label}</text></g></a>"#,
        class = if cell.open > 0 { "open" } else { "closed" },
        rx = x - 8.0,
        ry = y - 8.0,
        ty = y + 3.0,
        label = if n > 99 { "99+".to_string() } else { n.to_string() },
    )
    .unwrap();
}

fn draw_graticule(svg: &mut String, p: &Projection) {
    let lon0 = p.x0 * 360.0 - 180.0;
    let lon1 = (p.x0 + WIDTH / p.scale) * 360.0 - 180.0;
    let lat_top = inverse_lat(p.y0);
    let lat_bottom = inverse_lat(p.y0 + p.height / p.scale);
    let step = grid_step((lon1 - lon0).max(lat_top - lat_bottom));
    svg.push_str(r##"<g stroke="#b9c9cc" stroke-width="0.6" fill="#4a5a60" font-size="10" aria-hidden="true">"##);
    // Meridians of the world only (a wide view shows past its edges).
    let mut lon = (lon0.max(-180.0) / step).ceil() * step;
    while lon < lon1.min(180.0) {
        let (x, _) = p.project(0.0, lon);
        write!(
            svg,
            r#"<line x1="{x:.1}" y1="0" x2="{x:.1}" y2="{h}"/><text x="{tx:.1}" y="{ty}" stroke="none">{lon}°{ew}</text>"#,
            h = p.height,
            tx = x + 2.0,
            ty = p.height - 4.0,
            lon = fmt_deg(lon.abs()),
            ew = if lon < 0.0 { "W" } else { "E" }
        )
        .unwrap();
        lon += step;
    }
    let mut lat = (lat_bottom / step).ceil() * step;
    while lat < lat_top {
        let (_, y) = p.project(lat, 0.0);
        write!(
            svg,
            r#"<line x1="0" y1="{y:.1}" x2="{w}" y2="{y:.1}"/><text x="3" y="{ty:.1}" stroke="none">{lat}°{ns}</text>"#,
            w = WIDTH,
            ty = y - 3.0,
            lat = fmt_deg(lat.abs()),
            ns = if lat < 0.0 { "S" } else { "N" }
        )
        .unwrap();
        lat += step;
    }
    svg.push_str("</g>");
}

fn fmt_deg(d: f64) -> String {
    let s = format!("{d:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn draw_tiles(svg: &mut String, p: &Projection, template: &str) {
    // The zoom whose 256-pixel tiles are closest to the view's own scale.
    let z = ((p.scale / 256.0).log2().floor() as i32).clamp(0, 18);
    let n = 2f64.powi(z);
    let tile = p.scale / n;
    let (tx0, ty0) = ((p.x0 * n).floor() as i64, (p.y0 * n).floor() as i64);
    let tx1 = ((p.x0 + WIDTH / p.scale) * n).floor() as i64;
    let ty1 = ((p.y0 + p.height / p.scale) * n).floor() as i64;
    if (tx1 - tx0 + 1) * (ty1 - ty0 + 1) > 64 {
        return;
    }
    svg.push_str(r#"<g class="tiles" aria-hidden="true">"#);
    for ty in ty0.max(0)..=ty1.min(n as i64 - 1) {
        for tx in tx0..=tx1 {
            let wrapped = tx.rem_euclid(n as i64);
            let url = template
                .replace("{z}", &z.to_string())
                .replace("{x}", &wrapped.to_string())
                .replace("{y}", &ty.to_string());
            write!(
                svg,
                r#"<image href="{url}" x="{x:.1}" y="{y:.1}" width="{s:.1}" height="{s:.1}" preserveAspectRatio="none"/>"#,
                url = escape(&url),
                x = (tx as f64 / n - p.x0) * p.scale,
                y = (ty as f64 / n - p.y0) * p.scale,
                s = tile + 0.5,
            )
            .unwrap();
        }
    }
    svg.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map of `stations` fitted to them.
    fn draw(stations: &[MapStation], tile_url: Option<&str>) -> String {
        let points: Vec<(f64, f64)> = stations.iter().map(|s| (s.lat, s.lon)).collect();
        let opts = MapOptions {
            tile_url,
            label: "Stations",
            page: "/?region=Here",
        };
        render(stations, &Projection::fit(&points), &opts)
    }

    fn station(id: &str, lat: f64, lon: f64, aqi: Option<u32>) -> MapStation {
        MapStation {
            id: id.into(),
            name: format!("Station <{id}>"),
            lat,
            lon,
            aqi,
            category: aqi.map(Category::from_index),
            stale: false,
        }
    }

    #[test]
    fn every_station_falls_inside_the_view_and_keeps_its_bearing() {
        let pts = [(52.52, 13.40), (48.14, 11.58), (53.55, 9.99), (50.94, 6.96)];
        let p = Projection::fit(&pts);
        for &(la, lo) in &pts {
            let (x, y) = p.project(la, lo);
            assert!(
                (0.0..=WIDTH).contains(&x) && (0.0..=p.height).contains(&y),
                "{la},{lo}"
            );
        }
        // Berlin is east of Cologne and north of Munich.
        assert!(p.project(52.52, 13.40).0 > p.project(50.94, 6.96).0);
        assert!(p.project(52.52, 13.40).1 < p.project(48.14, 11.58).1);
        // One station alone is centred.
        let one = Projection::fit(&[(51.5, -0.15)]);
        let (x, y) = one.project(51.5, -0.15);
        assert!((x - WIDTH / 2.0).abs() < 1.0 && (y - one.height / 2.0).abs() < 1.0);
    }

    #[test]
    fn the_map_links_and_colours_each_station_and_escapes_names() {
        let svg = draw(
            &[
                station("a", 52.0, 13.0, Some(160)),
                station("b", 52.1, 13.1, None),
            ],
            None,
        );
        assert!(svg.contains(r#"href="/stations/a""#));
        assert!(svg.contains(Category::Unhealthy.color()));
        assert!(svg.contains("Station &lt;a&gt;: AQI 160, Unhealthy"));
        assert!(svg.contains("Station &lt;b&gt;: no current AQI"));
        assert!(!svg.contains("<image"));
    }

    fn pin(id: &str, lat: f64, lon: f64, state: &str) -> ReportPin {
        ReportPin {
            id: id.into(),
            lat,
            lon,
            category: "noise".into(),
            state: state.into(),
            title: format!("Noise <{id}>"),
        }
    }

    #[test]
    fn reports_are_squares_in_the_view_and_crowds_of_them_one_marker_each_cell() {
        let p = Projection::fit(&[(52.0, 13.0), (52.5, 13.5)]);
        let svg = draw(&[station("a", 52.0, 13.0, Some(10))], None);
        assert!(svg.find(REPORTS_SLOT).unwrap() > svg.find("/stations/a").unwrap());
        let mut pins = vec![
            pin("rep_one", 52.25, 13.25, "submitted"),
            pin("rep_far", 10.0, 100.0, "submitted"),
            pin("rep_done", 52.0, 13.45, "fixed"),
        ];
        // 10,000 reports in one corner of the view.
        pins.extend((0..10_000).map(|i| {
            let d = f64::from(i % 100) * 0.0001;
            pin(&format!("rep_{i}"), 52.45 + d, 13.05 + d, "closed")
        }));
        let (layer, shown) = report_layer(&p, &pins);
        assert_eq!(shown, 10_002, "the one far away is outside the view");
        assert!(layer.contains(
            r#"href="/reports/rep_one" aria-label="Report: Noise &lt;rep_one&gt; (Submitted)""#
        ));
        assert!(
            layer.contains(r#"class="report closed""#),
            "a fixed report is closed"
        );
        assert!(!layer.contains("rep_far"));
        assert!(layer.contains("reports here (0 open)"));
        assert!(layer.contains("/reports?state=all&amp;bbox="));
        assert!(layer.len() < 20_000, "{} bytes", layer.len());
    }

    #[test]
    fn tiles_cover_the_view_when_configured() {
        let svg = draw(
            &[
                station("a", 52.0, 13.0, Some(10)),
                station("b", 52.5, 13.5, Some(20)),
            ],
            Some("https://tiles.example.org/{z}/{x}/{y}.png"),
        );
        let tiles = svg.matches("<image ").count();
        assert!((1..=64).contains(&tiles), "{tiles}");
        assert!(svg.contains("https://tiles.example.org/"));
        assert!(!svg.contains("basemap"), "tiles instead of the basemap");
    }
}
