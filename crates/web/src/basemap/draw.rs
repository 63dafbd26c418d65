//! Drawing the basemap into a map view: land filled, coastlines and country borders stroked,
//! all clipped to the view and simplified to about one SVG unit (Douglas–Peucker on the
//! projected arcs, so neighbours stay joined), and the major places inside the view labelled.
//! Each view's drawing is kept ([`VIEWS_KEPT`] of them), so a page redrawn for new readings
//! does not draw its basemap again.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::topo::{append_arc, arc_index, Atlas, Line};
use super::{atlas, places, Detail};
use crate::map::{escape, Projection, WIDTH};

/// How far (SVG units) a point may move when lines are simplified.
pub const TOLERANCE: f64 = 0.8;

/// Views whose drawing is kept.
const VIEWS_KEPT: usize = 48;

/// Place labels drawn at most in one view.
const MAX_PLACES: usize = 12;

/// Views less than this many degrees of longitude across use the fine data.
const FINE_BELOW_DEGREES: f64 = 60.0;

/// The data set for a view: 1:50m when zoomed in, else 1:110m.
pub fn detail_for(p: &Projection) -> Detail {
    if WIDTH / p.scale * 360.0 < FINE_BELOW_DEGREES {
        Detail::Fine
    } else {
        Detail::Coarse
    }
}

type Key = [u64; 4];

fn key(p: &Projection) -> Key {
    [p.x0, p.y0, p.scale, p.height].map(f64::to_bits)
}

/// The basemap of a view as an SVG group (drawn once per view).
pub fn basemap(p: &Projection) -> Arc<String> {
    static KEPT: Mutex<Vec<(Key, Arc<String>)>> = Mutex::new(Vec::new());
    let k = key(p);
    if let Some((_, svg)) = KEPT
        .lock()
        .expect("not poisoned")
        .iter()
        .find(|(x, _)| *x == k)
    {
        return svg.clone();
    }
    let svg = Arc::new(render(p, detail_for(p)));
    let mut kept = KEPT.lock().expect("not poisoned");
    if kept.len() >= VIEWS_KEPT {
        kept.remove(0);
    }
    kept.push((k, svg.clone()));
    svg
}

/// The basemap of a view from one data set.
pub fn render(p: &Projection, detail: Detail) -> String {
    let a = atlas(detail);
    let view = View::new(p);
    let mut arcs = ProjectedArcs::new(a.arcs.len());
    let land = land_path(a, &view, &mut arcs);
    let coast = lines_path(a, &view, &mut arcs, |l| l.coast);
    let border = lines_path(a, &view, &mut arcs, |l| l.border);
    let mut svg = String::with_capacity(land.len() + coast.len() + border.len() + 2_000);
    let name = match detail {
        Detail::Coarse => "110m",
        Detail::Fine => "50m",
    };
    write!(
        svg,
        r#"<g class="basemap" data-detail="{name}" aria-hidden="true">"#
    )
    .unwrap();
    for (class, d, attrs) in [
        ("land", land, r##"fill="#f6f4ec" stroke="none""##),
        (
            "coast",
            coast,
            r##"fill="none" stroke="#8fa9b0" stroke-width="0.9""##,
        ),
        (
            "border",
            border,
            r##"fill="none" stroke="#a8968a" stroke-width="0.8" stroke-dasharray="4 2""##,
        ),
    ] {
        if !d.is_empty() {
            write!(svg, r#"<path class="{class}" {attrs} d="{d}"/>"#).unwrap();
        }
    }
    draw_places(&mut svg, p);
    svg.push_str("</g>");
    svg
}

/// The view in SVG units and in degrees, both with a margin.
struct View {
    p: Projection,
    /// min x, min y, max x, max y (SVG units).
    rect: [f64; 4],
    /// min lon, min lat, max lon, max lat.
    degrees: [f64; 4],
    /// The longitude of the view's centre.
    centre: f64,
}

/// Lines are clipped this far (SVG units) outside the view, so no stroke ends inside it.
const MARGIN: f64 = 4.0;

impl View {
    fn new(p: &Projection) -> View {
        let rect = [-MARGIN, -MARGIN, WIDTH + MARGIN, p.height + MARGIN];
        let (lat0, lon0) = p.unproject(rect[0] - MARGIN, rect[3] + MARGIN);
        let (lat1, lon1) = p.unproject(rect[2] + MARGIN, rect[1] - MARGIN);
        View {
            p: *p,
            rect,
            degrees: [lon0, lat0, lon1, lat1],
            centre: (lon0 + lon1) / 2.0,
        }
    }

    /// The whole turns (degrees) that bring a box nearest the view's centre.
    fn turns(&self, b: &[f64; 4]) -> f64 {
        ((self.centre - (b[0] + b[2]) / 2.0) / 360.0).round() * 360.0
    }

    /// The box (degrees), moved by `turns`, lies wholly on one side of the view.
    fn outside(&self, b: &[f64; 4]) -> bool {
        let (v, t) = (&self.degrees, self.turns(b));
        b[2] + t < v[0] || b[0] + t > v[2] || b[3] < v[1] || b[1] > v[3]
    }

    fn project(&self, (lon, lat): (f64, f64), turns: f64) -> (f64, f64) {
        self.p.project(lat, lon + turns)
    }
}

/// The arcs of one view, projected and simplified on first use.
struct ProjectedArcs(Vec<Option<Vec<(f64, f64)>>>);

impl ProjectedArcs {
    fn new(n: usize) -> ProjectedArcs {
        ProjectedArcs(vec![None; n])
    }

    /// An arc wholly on one side of the view is its two ends: the chord stays on that side
    /// (a half-plane is convex), so the fill inside the view is unchanged.
    fn get(&mut self, arcs: &[Line], i: usize, view: &View) -> &[(f64, f64)] {
        self.0[i].get_or_insert_with(|| {
            let arc = &arcs[i];
            let turns = view.turns(&arc.bbox);
            if view.outside(&arc.bbox) {
                let ends = [arc.points[0], arc.points[arc.points.len() - 1]];
                ends.iter().map(|&q| view.project(q, turns)).collect()
            } else {
                let projected: Vec<_> =
                    arc.points.iter().map(|&q| view.project(q, turns)).collect();
                simplify(&projected, TOLERANCE)
            }
        })
    }
}

/// The land polygons that reach the view, clipped to it, as one even-odd path.
fn land_path(a: &Atlas, view: &View, arcs: &mut ProjectedArcs) -> String {
    let mut d = String::new();
    for polygon in &a.land {
        let boxes = polygon
            .iter()
            .flatten()
            .map(|r| a.arcs[arc_index(*r).0].bbox);
        let b = boxes.fold([f64::MAX, f64::MAX, f64::MIN, f64::MIN], |m, b| {
            [
                m[0].min(b[0]),
                m[1].min(b[1]),
                m[2].max(b[2]),
                m[3].max(b[3]),
            ]
        });
        if view.outside(&b) {
            continue;
        }
        for ring in polygon {
            let points = ring_of(a, ring, view, arcs);
            let clipped = tidy(&clip_polygon(&points, &view.rect), &view.rect);
            if clipped.len() >= 3 {
                push_path(&mut d, &clipped, true);
            }
        }
    }
    d
}

fn ring_of(a: &Atlas, ring: &[i64], view: &View, arcs: &mut ProjectedArcs) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &r in ring {
        let (i, backwards) = arc_index(r);
        append_arc(
            &mut out,
            arcs.get(&a.arcs, i, view),
            backwards,
            view.p.scale,
        );
    }
    out
}

/// The arcs chosen by `which` that reach the view, clipped to it, as one path.
fn lines_path(
    a: &Atlas,
    view: &View,
    arcs: &mut ProjectedArcs,
    which: impl Fn(&Line) -> bool,
) -> String {
    let mut d = String::new();
    for (i, arc) in a.arcs.iter().enumerate() {
        if !which(arc) || view.outside(&arc.bbox) {
            continue;
        }
        for piece in clip_polyline(arcs.get(&a.arcs, i, view), &view.rect) {
            if piece.len() >= 2 {
                push_path(&mut d, &piece, false);
            }
        }
    }
    d
}

/// The major places inside the view, the most important first, none over another's label.
fn draw_places(svg: &mut String, p: &Projection) {
    let mut taken: Vec<[f64; 4]> = Vec::new();
    svg.push_str(r##"<g class="places" fill="#3c4d53" font-size="11">"##);
    for place in places() {
        let (x, y) = p.project(place.lat, place.lon);
        let w = 6.0 * place.name.chars().count() as f64 + 6.0;
        let b = [x - 3.0, y - 9.0, x + w, y + 4.0];
        if !p.shows(x, y) || x + w > WIDTH || taken.iter().any(|t| overlaps(t, &b)) {
            continue;
        }
        taken.push(b);
        write!(
            svg,
            r#"<circle class="place" cx="{x:.1}" cy="{y:.1}" r="2.5"/><text class="place-label" x="{tx:.1}" y="{ty:.1}">{name}</text>"#,
            tx = x + 5.0,
            ty = y + 3.5,
            name = escape(&place.name),
        )
        .unwrap();
        if taken.len() >= MAX_PLACES {
            break;
        }
    }
    svg.push_str("</g>");
}

fn overlaps(a: &[f64; 4], b: &[f64; 4]) -> bool {
    a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
}

/// Douglas–Peucker: the points that keep the line within `eps` of the original.
pub fn simplify(points: &[(f64, f64)], eps: f64) -> Vec<(f64, f64)> {
    if points.len() < 3 {
        return points.to_vec();
    }
    let mut keep = vec![false; points.len()];
    keep[0] = true;
    keep[points.len() - 1] = true;
    let mut stack = vec![(0, points.len() - 1)];
    while let Some((a, b)) = stack.pop() {
        let (far, dist) = (a + 1..b)
            .map(|i| (i, segment_distance(points[i], points[a], points[b])))
            .fold((a, 0.0), |m, c| if c.1 > m.1 { c } else { m });
        if dist > eps {
            keep[far] = true;
            stack.push((a, far));
            stack.push((far, b));
        }
    }
    points
        .iter()
        .zip(keep)
        .filter_map(|(q, k)| k.then_some(*q))
        .collect()
}

fn segment_distance(q: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((q.0 - a.0) * dx + (q.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    };
    ((q.0 - a.0 - t * dx).powi(2) + (q.1 - a.1 - t * dy).powi(2)).sqrt()
}

/// Sutherland–Hodgman against the rectangle `[x0, y0, x1, y1]`.
pub fn clip_polygon(ring: &[(f64, f64)], r: &[f64; 4]) -> Vec<(f64, f64)> {
    let mut out = ring.to_vec();
    if out.first() == out.last() {
        out.pop();
    }
    for edge in 0..4 {
        if out.is_empty() {
            break;
        }
        out = clip_edge(&out, edge, r);
    }
    out
}

/// Whether a point is inside one edge of the rectangle, and where a segment crosses it.
fn inside(q: (f64, f64), edge: usize, r: &[f64; 4]) -> bool {
    match edge {
        0 => q.0 >= r[0],
        1 => q.0 <= r[2],
        2 => q.1 >= r[1],
        _ => q.1 <= r[3],
    }
}

fn crossing(a: (f64, f64), b: (f64, f64), edge: usize, r: &[f64; 4]) -> (f64, f64) {
    let (along_x, at) = match edge {
        0 => (true, r[0]),
        1 => (true, r[2]),
        2 => (false, r[1]),
        _ => (false, r[3]),
    };
    if along_x {
        let t = (at - a.0) / (b.0 - a.0);
        (at, a.1 + t * (b.1 - a.1))
    } else {
        let t = (at - a.1) / (b.1 - a.1);
        (a.0 + t * (b.0 - a.0), at)
    }
}

fn clip_edge(ring: &[(f64, f64)], edge: usize, r: &[f64; 4]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(ring.len());
    let mut prev = ring[ring.len() - 1];
    for &q in ring {
        match (inside(prev, edge, r), inside(q, edge, r)) {
            (true, true) => out.push(q),
            (true, false) => out.push(crossing(prev, q, edge, r)),
            (false, true) => {
                out.push(crossing(prev, q, edge, r));
                out.push(q);
            }
            (false, false) => {}
        }
        prev = q;
    }
    out
}

/// Drops repeated points and the middle of runs along one side of the rectangle (what
/// clipping leaves where land runs outside the view).
fn tidy(ring: &[(f64, f64)], r: &[f64; 4]) -> Vec<(f64, f64)> {
    let on_side = |a: (f64, f64), b: (f64, f64), c: (f64, f64)| {
        [(a.0, b.0, c.0, r[0]), (a.0, b.0, c.0, r[2])]
            .iter()
            .chain(&[(a.1, b.1, c.1, r[1]), (a.1, b.1, c.1, r[3])])
            .any(|&(p, q, s, at)| p == at && q == at && s == at)
    };
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(ring.len());
    for &q in ring {
        if out.last() == Some(&q) {
            continue;
        }
        if out.len() >= 2 && on_side(out[out.len() - 2], out[out.len() - 1], q) {
            out.pop();
        }
        out.push(q);
    }
    out
}

/// The parts of a polyline inside the rectangle (Liang–Barsky on each segment).
pub fn clip_polyline(line: &[(f64, f64)], r: &[f64; 4]) -> Vec<Vec<(f64, f64)>> {
    let mut pieces: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for w in line.windows(2) {
        match clip_segment(w[0], w[1], r) {
            Some((a, b)) => {
                if current.last() != Some(&a) {
                    if current.len() >= 2 {
                        pieces.push(std::mem::take(&mut current));
                    }
                    current = vec![a];
                }
                current.push(b);
            }
            None => {
                if current.len() >= 2 {
                    pieces.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    if current.len() >= 2 {
        pieces.push(current);
    }
    pieces
}

fn clip_segment(a: (f64, f64), b: (f64, f64), r: &[f64; 4]) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - r[0]),
        (dx, r[2] - a.0),
        (-dy, a.1 - r[1]),
        (dy, r[3] - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    let at = |t: f64| (a.0 + t * dx, a.1 + t * dy);
    (t0 <= t1).then(|| {
        (
            if t0 > 0.0 { at(t0) } else { a },
            if t1 < 1.0 { at(t1) } else { b },
        )
    })
}

/// Appends a subpath in relative coordinates rounded to tenths (`M x y l dx dy … z`).
fn push_path(d: &mut String, points: &[(f64, f64)], closed: bool) {
    let round = |v: f64| (v * 10.0).round() as i64;
    let (mut px, mut py) = (round(points[0].0), round(points[0].1));
    d.push('M');
    push_pair(d, px, py);
    d.push('l');
    let mut first = true;
    for &(x, y) in &points[1..] {
        let (rx, ry) = (round(x), round(y));
        if (rx, ry) == (px, py) {
            continue;
        }
        if !first && rx - px >= 0 {
            d.push(' ');
        }
        push_pair(d, rx - px, ry - py);
        (px, py, first) = (rx, ry, false);
    }
    if first {
        d.push_str("0 0");
    }
    if closed {
        d.push('z');
    }
}

/// `x y` of numbers in tenths, the space left out before a minus sign.
fn push_pair(d: &mut String, x: i64, y: i64) {
    push_tenths(d, x);
    if y >= 0 {
        d.push(' ');
    }
    push_tenths(d, y);
}

fn push_tenths(d: &mut String, v: i64) {
    if v < 0 {
        d.push('-');
    }
    let a = v.unsigned_abs();
    write!(d, "{}", a / 10).unwrap();
    if !a.is_multiple_of(10) {
        write!(d, ".{}", a % 10).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplifying_keeps_the_corners_and_drops_the_wiggles() {
        let line = [(0.0, 0.0), (5.0, 0.3), (10.0, 0.0), (10.0, 10.0)];
        assert_eq!(
            simplify(&line, 1.0),
            vec![(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)]
        );
        assert_eq!(simplify(&line, 0.1), line.to_vec());
    }

    #[test]
    fn polygons_are_clipped_to_the_view() {
        let r = [0.0, 0.0, 10.0, 10.0];
        // A big square around the view is the view.
        let big = [(-50.0, -50.0), (50.0, -50.0), (50.0, 50.0), (-50.0, 50.0)];
        let clipped = clip_polygon(&big, &r);
        assert_eq!(clipped.len(), 4);
        assert!(clipped
            .iter()
            .all(|&(x, y)| (0.0..=10.0).contains(&x) && (0.0..=10.0).contains(&y)));
        // Far outside: nothing.
        let far = [(20.0, 20.0), (30.0, 20.0), (30.0, 30.0)];
        assert!(clip_polygon(&far, &r).is_empty());
    }

    #[test]
    fn lines_are_cut_where_they_leave_the_view() {
        let r = [0.0, 0.0, 10.0, 10.0];
        let line = [
            (-5.0, 5.0),
            (5.0, 5.0),
            (15.0, 5.0),
            (15.0, 8.0),
            (5.0, 8.0),
        ];
        let pieces = clip_polyline(&line, &r);
        assert_eq!(
            pieces,
            vec![
                vec![(0.0, 5.0), (5.0, 5.0), (10.0, 5.0)],
                vec![(10.0, 8.0), (5.0, 8.0)]
            ]
        );
    }

    #[test]
    fn paths_are_relative_and_compact() {
        let mut d = String::new();
        push_path(&mut d, &[(1.0, 2.0), (3.5, 2.0), (3.5, -1.0)], true);
        assert_eq!(d, "M1 2l2.5 0 0-3z");
    }

    fn fitted(points: &[(f64, f64)]) -> Projection {
        Projection::fit(points)
    }

    #[test]
    fn a_view_of_germany_has_its_coasts_borders_and_berlin() {
        let p = fitted(&[(47.5, 6.0), (55.0, 15.0)]);
        assert_eq!(detail_for(&p), Detail::Fine);
        let svg = render(&p, Detail::Fine);
        assert!(svg.contains(r#"<path class="land""#));
        assert!(
            svg.contains(r#"<path class="coast""#),
            "the North Sea and the Baltic"
        );
        assert!(svg.contains(r#"<path class="border""#));
        assert!(svg.contains(">Berlin</text>"));
        assert!(
            !svg.contains(">Madrid</text>"),
            "only places inside the view"
        );
        assert!(svg.len() < 120_000, "{} bytes", svg.len());
    }

    #[test]
    fn the_world_uses_the_coarse_data_and_stays_small() {
        let p = fitted(&[(-60.0, -170.0), (75.0, 170.0)]);
        assert_eq!(detail_for(&p), Detail::Coarse);
        let svg = basemap(&p);
        assert!(svg.len() < 80_000, "{} bytes", svg.len());
        assert!(Arc::ptr_eq(&svg, &basemap(&p)), "drawn once per view");
        assert!(svg.matches("place-label").count() <= MAX_PLACES);
    }

    #[test]
    fn no_line_jumps_across_the_world_at_the_antimeridian() {
        let p = Projection::centred(
            &crate::map::Viewport {
                lat: 30.0,
                lon: 10.0,
                zoom: 1.0,
            },
            500.0,
        );
        for detail in [Detail::Coarse, Detail::Fine] {
            let svg = render(&p, detail);
            for path in svg.split("<path ").skip(1) {
                let d = path.split(" d=\"").nth(1).unwrap();
                let longest = d
                    .split(['M', 'z', '"'])
                    .flat_map(|sub| sub.split_once('l').map(|(_, rest)| rest.to_string()))
                    .flat_map(|rel| dxs(&rel))
                    .fold(0.0f64, |m, dx| m.max(dx.abs()));
                assert!(
                    longest < 200.0,
                    "{detail:?}: a segment {longest} units across"
                );
            }
        }
    }

    /// The x steps of relative path data (`dx dy dx dy …`).
    fn dxs(rel: &str) -> Vec<f64> {
        let spaced = rel.replace('-', " -");
        let nums: Vec<f64> = spaced
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        nums.chunks(2).map(|c| c[0]).collect()
    }

    #[test]
    fn the_open_sea_has_no_land_and_a_city_centre_is_all_land() {
        let sea = fitted(&[(40.0, -40.0), (41.0, -39.0)]);
        assert!(!render(&sea, Detail::Fine).contains("class=\"land\""));
        let london = fitted(&[(51.5, -0.2), (51.55, -0.1)]);
        let svg = render(&london, Detail::Fine);
        assert!(svg.contains("class=\"land\""));
        assert!(
            !svg.contains("class=\"coast\""),
            "no coast in central London"
        );
    }
}
