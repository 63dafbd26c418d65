//! Markers that do not hide each other: the stations inside a view are grouped so that no two
//! markers are closer than [`DISTANCE`] SVG units (a marker's width); a group of several is one
//! cluster marker showing their number, coloured by the worst category among them, linking to
//! the same page zoomed in on them. However many stations there are, a view has at most a few
//! hundred markers.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::viewport::MAX_ZOOM;
use super::{color_of, escape, ink_on, MapStation, Projection, Viewport};
use crate::view::category_class;

/// Markers whose centres are closer than this (SVG units) are one cluster.
pub const DISTANCE: f64 = 22.0;

/// The stations drawn as one marker, and where (SVG units: its first, worst station's place).
#[derive(Debug)]
pub struct Group<'a> {
    pub members: Vec<&'a MapStation>,
    pub x: f64,
    pub y: f64,
}

impl Group<'_> {
    /// The member with the highest AQI (the first when none has one).
    pub fn worst(&self) -> &MapStation {
        self.members
            .iter()
            .max_by_key(|s| s.aqi.map(|a| a + 1).unwrap_or(0))
            .copied()
            .unwrap_or(self.members[0])
    }
}

/// The stations inside the view in groups, the worst drawn last (on top). Greedy: a station
/// joins the group whose first station is nearest within [`DISTANCE`], else starts one. The
/// worst stations seed first and a group is drawn where its seed is, so the worst are seen
/// where they are and no two markers are closer than [`DISTANCE`].
pub fn group<'a>(stations: &'a [MapStation], p: &Projection) -> Vec<Group<'a>> {
    let mut order: Vec<(&MapStation, f64, f64)> = stations
        .iter()
        .map(|s| {
            let (x, y) = p.project(s.lat, s.lon);
            (s, x, y)
        })
        .filter(|&(_, x, y)| p.shows(x, y))
        .collect();
    order.sort_by_key(|(s, _, _)| std::cmp::Reverse(s.aqi.map(|a| a + 1).unwrap_or(0)));
    // At the closest zoom a cluster could not split: every station is drawn.
    let distance = if p.zoom() >= MAX_ZOOM - 0.05 {
        0.0
    } else {
        DISTANCE
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut cells: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for (s, x, y) in order {
        let cell = ((x / DISTANCE).floor() as i64, (y / DISTANCE).floor() as i64);
        match nearest(&groups, &cells, cell, (x, y), distance) {
            Some(i) => groups[i].members.push(s),
            None => {
                cells.entry(cell).or_default().push(groups.len());
                groups.push(Group {
                    members: vec![s],
                    x,
                    y,
                });
            }
        }
    }
    groups.reverse();
    groups
}

/// The group seeded nearest (x, y) within `distance` (at most [`DISTANCE`]), looked up in the
/// 3 × 3 cells around.
fn nearest(
    groups: &[Group],
    cells: &HashMap<(i64, i64), Vec<usize>>,
    (cx, cy): (i64, i64),
    (x, y): (f64, f64),
    distance: f64,
) -> Option<usize> {
    let around = (-1..=1).flat_map(|dx| (-1..=1).map(move |dy| (cx + dx, cy + dy)));
    around
        .filter_map(|c| cells.get(&c))
        .flatten()
        .map(|&i| (i, (groups[i].x - x).hypot(groups[i].y - y)))
        .filter(|&(_, d)| d < distance)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Where a cluster links: its page, zoomed in until its stations fit the view.
pub fn zoom_href(g: &Group, p: &Projection, page: &str) -> String {
    let points: Vec<(f64, f64)> = g.members.iter().map(|s| (s.lat, s.lon)).collect();
    let mut v = Viewport::fitting(&points, p.height);
    v.zoom = v.zoom.max((p.zoom() * 10.0).ceil() / 10.0);
    format!("{page}&{}", v.query())
}

/// A cluster marker: a larger disc in the worst member's colour, with the number of stations.
pub fn draw(svg: &mut String, p: &Projection, g: &Group, page: &str) {
    let (x, y) = (g.x, g.y);
    let n = g.members.len();
    let worst = g.worst();
    let what = match (worst.aqi, worst.category) {
        (Some(aqi), Some(c)) => format!("worst AQI {aqi}, {}", c.label()),
        _ => "no current AQI".into(),
    };
    let words = format!("{n} stations here, {what}. Zoom in");
    write!(
        svg,
        r#"<a href="{href}" aria-label="{words}"><g class="station cluster" data-count="{n}" data-worst="{class}"><title>{words}</title><circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{color}"/><text x="{x:.1}" y="{ty:.1}" font-size="11" font-weight="700" text-anchor="middle" fill="{ink}" aria-hidden="true">{label}</text></g></a>"#,
        href = escape(&zoom_href(g, p, page)),
        class = category_class(worst.category),
        r = if n >= 100 { 17 } else { 14 },
        color = color_of(worst.category),
        ink = ink_on(worst.category),
        ty = y + 4.0,
        label = if n > 999 { "999+".to_string() } else { n.to_string() },
    )
    .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecocityhub_domain::aqi::us_epa::Category;

    fn station(id: &str, lat: f64, lon: f64, aqi: Option<u32>) -> MapStation {
        MapStation {
            id: id.into(),
            name: id.into(),
            lat,
            lon,
            aqi,
            category: aqi.map(Category::from_index),
            stale: false,
        }
    }

    fn view() -> Projection {
        Projection::centred(
            &Viewport {
                lat: 52.5,
                lon: 13.4,
                zoom: 8.0,
            },
            500.0,
        )
    }

    #[test]
    fn stations_a_marker_apart_stay_apart_and_closer_ones_are_one_cluster() {
        let p = view();
        let (lat, lon) = p.unproject(400.0, 250.0);
        let (lat_far, lon_far) = p.unproject(410.0 + DISTANCE, 250.0);
        let (lat_near, lon_near) = p.unproject(405.0, 252.0);
        let stations = [
            station("a", lat, lon, Some(40)),
            station("b", lat_far, lon_far, Some(60)),
            station("c", lat_near, lon_near, Some(170)),
            station("d", lat_near, lon_near, None),
        ];
        let groups = group(&stations, &p);
        assert_eq!(groups.len(), 2);
        let crowd = groups.iter().find(|g| g.members.len() == 3).unwrap();
        assert_eq!(crowd.worst().id, "c");
        assert!(
            groups.last().unwrap().members.iter().any(|s| s.id == "c"),
            "the worst on top"
        );
        let mut svg = String::new();
        draw(&mut svg, &p, crowd, "/?region=Europe/Berlin");
        assert!(
            svg.contains(r#"data-count="3" data-worst="unhealthy""#),
            "{svg}"
        );
        assert!(svg.contains(Category::Unhealthy.color()));
        assert!(svg.contains("3 stations here, worst AQI 170, Unhealthy. Zoom in"));
        assert!(svg.contains("href=\"/?region=Europe/Berlin&amp;lat="));
    }

    #[test]
    fn a_clusters_link_shows_all_its_stations_split() {
        let p = view();
        let stations: Vec<MapStation> = (0..20)
            .map(|i| {
                station(
                    &format!("s{i}"),
                    52.5 + f64::from(i) * 0.0004,
                    13.4,
                    Some(10),
                )
            })
            .collect();
        let groups = group(&stations, &p);
        assert_eq!(groups.len(), 1);
        let href = zoom_href(&groups[0], &p, "/?r=x");
        let q: Vec<(String, String)> = serde_urlencoded::from_str(&href[3..]).unwrap();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let v = Viewport::parse(get("lat"), get("lon"), get("zoom")).unwrap();
        let closer = Projection::centred(&v, p.height);
        assert!(v.zoom > p.zoom() + 3.0, "{v:?}");
        let apart = group(&stations, &closer);
        let shown: usize = apart.iter().map(|g| g.members.len()).sum();
        assert_eq!(shown, 20, "the view shows all the cluster's stations");
        assert!(apart.len() >= 10, "and splits it: {} markers", apart.len());
    }

    #[test]
    fn thousands_of_stations_are_a_few_hundred_markers() {
        let p = view();
        let stations: Vec<MapStation> = (0..5_000u32)
            .map(|i| {
                let (x, y) = (f64::from(i % 100) * 8.0, f64::from(i / 100) * 10.0);
                let (lat, lon) = p.unproject(x + 0.5, y + 0.5);
                station(&format!("s{i}"), lat, lon, Some(i % 300))
            })
            .collect();
        let groups = group(&stations, &p);
        let drawn: usize = groups.iter().map(|g| g.members.len()).sum();
        assert_eq!(drawn, 5_000, "each station in one marker");
        assert!(groups.len() < 1_000, "{} markers", groups.len());
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                assert!(
                    (a.x - b.x).hypot(a.y - b.y) >= DISTANCE,
                    "markers hide each other"
                );
            }
        }
        let svg = crate::map::render(
            &stations,
            &p,
            &crate::map::MapOptions {
                tile_url: None,
                label: "Many",
                page: "/?r=x",
            },
        );
        assert!(svg.len() < 300_000, "{} bytes", svg.len());
    }

    #[test]
    fn at_the_closest_zoom_every_station_is_drawn() {
        let p = Projection::centred(
            &Viewport {
                lat: 52.5,
                lon: 13.4,
                zoom: MAX_ZOOM,
            },
            500.0,
        );
        let stations = [
            station("a", 52.5, 13.4, Some(1)),
            station("b", 52.5, 13.4, Some(2)),
        ];
        assert_eq!(group(&stations, &p).len(), 2);
    }
}
