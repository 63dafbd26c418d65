//! Panning and zooming without JavaScript: a [`Viewport`] (centre and zoom, from the page's
//! `lat`, `lon` and `zoom` query parameters) and the links that move it ([`MapControls`]).
//! Zoom is the Web Mercator zoom level: the world is 256 × 2^zoom SVG units across.

use super::{inverse_lat, mercator, Projection, WIDTH};

/// The widest view (the world a little wider than the map).
pub const MIN_ZOOM: f64 = 2.0;
/// The closest view (a few metres per SVG unit).
pub const MAX_ZOOM: f64 = 18.0;

/// A view's centre (degrees) and zoom level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    pub lat: f64,
    pub lon: f64,
    pub zoom: f64,
}

impl Projection {
    /// The view of `height` SVG units centred on the viewport.
    pub fn centred(v: &Viewport, height: f64) -> Projection {
        let scale = 256.0 * 2f64.powf(v.zoom);
        let (cx, cy) = mercator(v.lat, v.lon);
        Projection {
            x0: cx - WIDTH / 2.0 / scale,
            y0: cy - height / 2.0 / scale,
            scale,
            height,
        }
    }

    /// The zoom level of the view (fractional for a fitted one).
    pub fn zoom(&self) -> f64 {
        (self.scale / 256.0).log2()
    }
}

impl Viewport {
    /// A viewport from query parameters, rounded (5 decimals of a degree, tenths of a zoom
    /// level) and kept within the world; `None` unless all three are numbers.
    pub fn parse(lat: Option<&str>, lon: Option<&str>, zoom: Option<&str>) -> Option<Viewport> {
        let num = |s: Option<&str>| s?.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        let v = Viewport {
            lat: num(lat)?.clamp(-85.0, 85.0),
            lon: (num(lon)? + 180.0).rem_euclid(360.0) - 180.0,
            zoom: num(zoom)?.clamp(MIN_ZOOM, MAX_ZOOM),
        };
        Some(v.rounded())
    }

    fn rounded(self) -> Viewport {
        let r = |v: f64, k: f64| (v * k).round() / k;
        Viewport {
            lat: r(self.lat, 1e5),
            lon: r(self.lon, 1e5),
            zoom: r(self.zoom, 10.0),
        }
    }

    /// The centre and zoom of a projection.
    pub fn of(p: &Projection) -> Viewport {
        let (lat, lon) = p.unproject(WIDTH / 2.0, p.height / 2.0);
        Viewport {
            lat,
            lon,
            zoom: p.zoom(),
        }
    }

    /// The closest view (within [`MAX_ZOOM`]) that shows all `points` (lat, lon) with a
    /// margin, in a view `height` units high.
    pub fn fitting(points: &[(f64, f64)], height: f64) -> Viewport {
        let projected: Vec<(f64, f64)> = points.iter().map(|&(la, lo)| mercator(la, lo)).collect();
        let min = |f: fn(&(f64, f64)) -> f64| projected.iter().map(f).fold(f64::MAX, f64::min);
        let max = |f: fn(&(f64, f64)) -> f64| projected.iter().map(f).fold(f64::MIN, f64::max);
        let (x0, x1, y0, y1) = (min(|p| p.0), max(|p| p.0), min(|p| p.1), max(|p| p.1));
        let scale = (0.8 * WIDTH / (x1 - x0)).min(0.8 * height / (y1 - y0));
        let zoom = ((scale / 256.0).log2() * 10.0).floor() / 10.0;
        let lat = inverse_lat((y0 + y1) / 2.0);
        let lon = (x0 + x1) / 2.0 * 360.0 - 180.0;
        Viewport {
            lat,
            lon,
            zoom: zoom.clamp(MIN_ZOOM, MAX_ZOOM),
        }
        .rounded()
    }

    /// The query parameters of the viewport (`lat=…&lon=…&zoom=…`).
    pub fn query(&self) -> String {
        format!(
            "lat={}&lon={}&zoom={}",
            trim(self.lat, 5),
            trim(self.lon, 5),
            trim(self.zoom, 1)
        )
    }
}

fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The links that move a map: each an href (the page with the moved viewport).
#[derive(Debug, Clone, PartialEq)]
pub struct MapControls {
    pub zoom_in: String,
    pub zoom_out: String,
    pub north: String,
    pub south: String,
    pub east: String,
    pub west: String,
    /// The whole region (the fitted view).
    pub whole: String,
    /// The view is the fitted one.
    pub at_whole: bool,
}

impl MapControls {
    /// The links of view `p` on `page` (a path with its query, e.g. `/?region=…`); `whole`
    /// says whether `p` is the page's default view.
    pub fn new(page: &str, p: &Projection, whole: bool) -> MapControls {
        let here = Viewport::of(p).rounded();
        let link = |v: Viewport| format!("{page}&{}", v.rounded().query());
        let zoomed = |by: f64| Viewport {
            zoom: (here.zoom + by).clamp(MIN_ZOOM, MAX_ZOOM),
            ..here
        };
        let moved = |x: f64, y: f64| {
            let (lat, lon) = p.unproject(x, y);
            Viewport {
                lat: lat.clamp(-85.0, 85.0),
                lon,
                ..here
            }
        };
        let (w, h) = (WIDTH, p.height);
        MapControls {
            zoom_in: link(zoomed(1.0)),
            zoom_out: link(zoomed(-1.0)),
            north: link(moved(w / 2.0, 0.0)),
            south: link(moved(w / 2.0, h)),
            east: link(moved(w, h / 2.0)),
            west: link(moved(0.0, h / 2.0)),
            whole: page.to_string(),
            at_whole: whole,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_round_trip_and_are_bounded() {
        let v = Viewport::parse(Some("52.520008"), Some("13.404954"), Some("9.26")).unwrap();
        assert_eq!(
            v,
            Viewport {
                lat: 52.52001,
                lon: 13.40495,
                zoom: 9.3
            }
        );
        assert_eq!(v.query(), "lat=52.52001&lon=13.40495&zoom=9.3");
        let q: Vec<(String, String)> = serde_urlencoded::from_str(&v.query()).unwrap();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            Viewport::parse(get("lat"), get("lon"), get("zoom")),
            Some(v)
        );
        let wild = Viewport::parse(Some("99"), Some("190"), Some("40")).unwrap();
        assert_eq!(
            wild,
            Viewport {
                lat: 85.0,
                lon: -170.0,
                zoom: MAX_ZOOM
            }
        );
        assert_eq!(Viewport::parse(Some("NaN"), Some("1"), Some("2")), None);
        assert_eq!(Viewport::parse(Some("1"), None, Some("2")), None);
    }

    #[test]
    fn a_centred_view_is_centred_and_zoom_doubles_the_scale() {
        let v = Viewport {
            lat: 51.5,
            lon: -0.12,
            zoom: 10.0,
        };
        let p = Projection::centred(&v, 400.0);
        let (x, y) = p.project(51.5, -0.12);
        assert!((x - WIDTH / 2.0).abs() < 1e-6 && (y - 200.0).abs() < 1e-6);
        let closer = Projection::centred(&Viewport { zoom: 11.0, ..v }, 400.0);
        assert!((closer.scale / p.scale - 2.0).abs() < 1e-9);
        let back = Viewport::of(&p);
        assert!((back.lat - 51.5).abs() < 1e-9 && (back.zoom - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_fitting_view_shows_its_points() {
        let pts = [(52.45, 13.2), (52.6, 13.6), (52.5, 13.4)];
        let v = Viewport::fitting(&pts, 400.0);
        let p = Projection::centred(&v, 400.0);
        assert!(pts.iter().all(|&(la, lo)| {
            let (x, y) = p.project(la, lo);
            p.shows(x, y)
        }));
        assert!(v.zoom > 9.0, "{v:?}");
    }

    #[test]
    fn the_controls_move_half_a_view_and_zoom_by_one() {
        let p = Projection::centred(
            &Viewport {
                lat: 50.0,
                lon: 10.0,
                zoom: 6.0,
            },
            500.0,
        );
        let c = MapControls::new("/?region=Europe/Berlin", &p, false);
        assert!(
            c.zoom_in
                .starts_with("/?region=Europe/Berlin&lat=50&lon=10&zoom=7"),
            "{}",
            c.zoom_in
        );
        assert!(c.zoom_out.ends_with("&zoom=5"));
        let lon_of = |href: &str| -> f64 {
            let q = href.split("lon=").nth(1).unwrap();
            q.split('&').next().unwrap().parse().unwrap()
        };
        assert!(lon_of(&c.east) > 10.0 && lon_of(&c.west) < 10.0);
        assert!(c.north.contains("lon=10&"));
        assert_eq!(c.whole, "/?region=Europe/Berlin");
    }
}
