//! Decoding world-atlas' TopoJSON: quantized, delta-encoded arcs shared by the countries'
//! polygons, and the merged `land` object. An arc referenced by `land` is coastline; one shared
//! by two countries is a border.

use serde::Deserialize;
use serde_json::Value;

/// A polyline in degrees (lon, lat), with its bounding box. Longitudes run on across the
/// antimeridian (179, 181, …) so that no segment jumps across the world.
#[derive(Debug)]
pub struct Line {
    pub points: Vec<(f64, f64)>,
    /// min lon, min lat, max lon, max lat.
    pub bbox: [f64; 4],
    pub coast: bool,
    pub border: bool,
}

/// A ring as references to arcs (`!i` for arc `i` reversed).
pub type Ring = Vec<i64>;
/// A polygon: its outer ring, then its holes.
pub type Polygon = Vec<Ring>;

/// A country: its name and its rings as points (for lookups).
#[derive(Debug)]
pub struct Country {
    pub name: String,
    pub rings: Vec<Vec<(f64, f64)>>,
    pub bbox: [f64; 4],
}

/// One decoded world-atlas file.
#[derive(Debug)]
pub struct Atlas {
    pub arcs: Vec<Line>,
    pub countries: Vec<Country>,
    pub land: Vec<Polygon>,
}

#[derive(Deserialize)]
struct Topology {
    transform: Transform,
    arcs: Vec<Vec<[i64; 2]>>,
    objects: Objects,
}

#[derive(Deserialize)]
struct Transform {
    scale: [f64; 2],
    translate: [f64; 2],
}

#[derive(Deserialize)]
struct Objects {
    countries: Collection,
    land: Collection,
}

#[derive(Deserialize)]
struct Collection {
    geometries: Vec<Geometry>,
}

#[derive(Deserialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    arcs: Value,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
struct Properties {
    name: Option<String>,
}

/// The polygons of a `Polygon` or `MultiPolygon` geometry (others have none).
fn polygons(g: &Geometry) -> Result<Vec<Polygon>, serde_json::Error> {
    match g.kind.as_str() {
        "Polygon" => Ok(vec![serde_json::from_value(g.arcs.clone())?]),
        "MultiPolygon" => serde_json::from_value(g.arcs.clone()),
        _ => Ok(Vec::new()),
    }
}

fn bbox_of(points: &[(f64, f64)]) -> [f64; 4] {
    points.iter().fold(
        [f64::MAX, f64::MAX, f64::MIN, f64::MIN],
        |[a, b, c, d], &(x, y)| [a.min(x), b.min(y), c.max(x), d.max(y)],
    )
}

fn decode_arc(arc: &[[i64; 2]], t: &Transform) -> Line {
    let (mut x, mut y) = (0i64, 0i64);
    let mut last: Option<f64> = None;
    let points: Vec<(f64, f64)> = arc
        .iter()
        .map(|[dx, dy]| {
            x += dx;
            y += dy;
            let lon = x as f64 * t.scale[0] + t.translate[0];
            let lon = last.map_or(lon, |l| lon + ((l - lon) / 360.0).round() * 360.0);
            last = Some(lon);
            (lon, y as f64 * t.scale[1] + t.translate[1])
        })
        .collect();
    Line {
        bbox: bbox_of(&points),
        points,
        coast: false,
        border: false,
    }
}

/// The index of a reference and whether it runs backwards.
pub fn arc_index(reference: i64) -> (usize, bool) {
    if reference < 0 {
        ((!reference) as usize, true)
    } else {
        (reference as usize, false)
    }
}

impl Atlas {
    /// Decodes a world-atlas `countries-*.json`.
    pub fn parse(text: &str) -> Result<Atlas, serde_json::Error> {
        let topo: Topology = serde_json::from_str(text)?;
        let mut arcs: Vec<Line> = topo
            .arcs
            .iter()
            .map(|a| decode_arc(a, &topo.transform))
            .collect();
        let mut land = Vec::new();
        for g in &topo.objects.land.geometries {
            land.extend(polygons(g)?);
        }
        for r in land.iter().flatten().flatten() {
            arcs[arc_index(*r).0].coast = true;
        }
        let mut countries = Vec::new();
        let mut users = vec![0u32; arcs.len()];
        for g in &topo.objects.countries.geometries {
            let polygons = polygons(g)?;
            let mut mine: Vec<usize> = polygons
                .iter()
                .flatten()
                .flatten()
                .map(|r| arc_index(*r).0)
                .collect();
            mine.sort_unstable();
            mine.dedup();
            mine.iter().for_each(|&i| users[i] += 1);
            let name = g
                .properties
                .as_ref()
                .and_then(|p| p.name.clone())
                .unwrap_or_default();
            countries.push(Country::new(name, &polygons, &arcs));
        }
        for (arc, n) in arcs.iter_mut().zip(users) {
            arc.border = n >= 2;
        }
        Ok(Atlas {
            arcs,
            countries,
            land,
        })
    }

    /// How many points the arcs have.
    #[cfg(test)]
    pub fn point_count(&self) -> usize {
        self.arcs.iter().map(|a| a.points.len()).sum()
    }

    /// The name of the country containing (lon, lat).
    pub fn country_at(&self, lon: f64, lat: f64) -> Option<&str> {
        self.countries
            .iter()
            .find(|c| c.contains(lon, lat))
            .map(|c| c.name.as_str())
    }
}

fn ring_points(ring: &[i64], arcs: &[Line]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &r in ring {
        let (i, backwards) = arc_index(r);
        append_arc(&mut out, &arcs[i].points, backwards, 360.0);
    }
    out
}

/// Appends an arc (reversed when `backwards`) to a ring, moved by whole turns of the world
/// (`period` along x) so that it starts where the ring ends.
pub fn append_arc(out: &mut Vec<(f64, f64)>, arc: &[(f64, f64)], backwards: bool, period: f64) {
    let Some(&start) = (if backwards { arc.last() } else { arc.first() }) else {
        return;
    };
    let shift = out
        .last()
        .map_or(0.0, |end| ((end.0 - start.0) / period).round() * period);
    let skip = usize::from(!out.is_empty());
    let moved = |&(x, y): &(f64, f64)| (x + shift, y);
    if backwards {
        out.extend(arc.iter().rev().skip(skip).map(moved));
    } else {
        out.extend(arc.iter().skip(skip).map(moved));
    }
}

impl Country {
    fn new(name: String, polygons: &[Polygon], arcs: &[Line]) -> Country {
        let rings: Vec<Vec<(f64, f64)>> = polygons
            .iter()
            .flatten()
            .map(|r| ring_points(r, arcs))
            .collect();
        let all: Vec<(f64, f64)> = rings.iter().flatten().copied().collect();
        Country {
            name,
            bbox: bbox_of(&all),
            rings,
        }
    }

    /// Even-odd test over all rings (holes included).
    fn contains(&self, lon: f64, lat: f64) -> bool {
        let [x0, y0, x1, y1] = self.bbox;
        if !(x0..=x1).contains(&lon) || !(y0..=y1).contains(&lat) {
            return false;
        }
        self.rings
            .iter()
            .filter(|ring| crosses_odd(ring, lon, lat))
            .count()
            % 2
            == 1
    }
}

/// A ray from the point eastwards crosses the ring an odd number of times.
fn crosses_odd(ring: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let ((xa, ya), (xb, yb)) = (w[0], w[1]);
        if (ya > y) != (yb > y) && x < xa + (y - ya) / (yb - ya) * (xb - xa) {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two unit squares side by side sharing one edge (arc 1), the rest coast.
    const TWO_SQUARES: &str = r#"{"type":"Topology","transform":{"scale":[1,1],"translate":[0,0]},
      "arcs":[[[1,0],[-1,0],[0,1],[1,0]],[[1,0],[0,1]],[[1,1],[1,0],[0,-1],[-1,0]]],
      "objects":{"countries":{"type":"GeometryCollection","geometries":[
        {"type":"Polygon","arcs":[[0,-2]],"properties":{"name":"West"}},
        {"type":"Polygon","arcs":[[1,2]],"properties":{"name":"East"}}]},
      "land":{"type":"GeometryCollection","geometries":[{"type":"Polygon","arcs":[[0,2]]}]}}}"#;

    #[test]
    fn arcs_decode_and_are_coast_or_border() {
        let a = Atlas::parse(TWO_SQUARES).unwrap();
        assert_eq!(
            a.arcs[0].points,
            vec![(1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
        );
        assert!(a.arcs[0].coast && !a.arcs[0].border);
        assert!(a.arcs[1].border && !a.arcs[1].coast);
        assert_eq!(a.country_at(0.5, 0.5), Some("West"));
        assert_eq!(a.country_at(1.5, 0.5), Some("East"));
        assert_eq!(a.country_at(2.5, 0.5), None);
        let ring = ring_points(&[0, -2], &a.arcs);
        assert_eq!(ring.first(), ring.last(), "a closed ring");
        assert_eq!(ring.len(), 5);
    }
}
