//! The offline basemap: Natural Earth's land, coastlines, country borders and major places,
//! shipped in the binary (`crates/web/basemap/`, see its README for sources and licences) and
//! decoded once on first use. This module owns the data and the questions asked of it (which
//! country a point is in, the major place nearest to a point); [`draw`] owns drawing it into
//! a map view.
//!
//! Two levels of detail are shipped: [`Detail::Coarse`] (1:110m) for wide views and
//! [`Detail::Fine`] (1:50m) when zoomed in.

pub mod draw;
mod topo;

use std::sync::OnceLock;

use topo::Atlas;

/// Which of the shipped data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detail {
    /// Natural Earth 1:110m.
    Coarse,
    /// Natural Earth 1:50m.
    Fine,
}

const COUNTRIES_110M: &str = include_str!("../../basemap/countries-110m.json");
const COUNTRIES_50M: &str = include_str!("../../basemap/countries-50m.json");
const PLACES_CSV: &str = include_str!("../../basemap/places.csv");

/// The data set of a level of detail (decoded on first use).
fn atlas(detail: Detail) -> &'static Atlas {
    static COARSE: OnceLock<Atlas> = OnceLock::new();
    static FINE: OnceLock<Atlas> = OnceLock::new();
    let (cell, text) = match detail {
        Detail::Coarse => (&COARSE, COUNTRIES_110M),
        Detail::Fine => (&FINE, COUNTRIES_50M),
    };
    cell.get_or_init(|| Atlas::parse(text).expect("the shipped basemap is valid TopoJSON"))
}

/// A major populated place (Natural Earth 1:110m populated places).
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// 1 is the most important.
    pub rank: u32,
}

/// The shipped places, the most important first.
pub fn places() -> &'static [Place] {
    static PLACES: OnceLock<Vec<Place>> = OnceLock::new();
    PLACES.get_or_init(|| {
        let mut places: Vec<Place> = PLACES_CSV.lines().skip(1).filter_map(parse_place).collect();
        places.sort_by_key(|p| p.rank);
        places
    })
}

/// A line `name,lat,lon,rank` (the name may be quoted).
fn parse_place(line: &str) -> Option<Place> {
    let mut fields = line.rsplitn(4, ',');
    let rank = fields.next()?.parse().ok()?;
    let lon = fields.next()?.parse().ok()?;
    let lat = fields.next()?.parse().ok()?;
    let name = fields.next()?.trim_matches('"').to_string();
    Some(Place {
        name,
        lat,
        lon,
        rank,
    })
}

/// The name of the country at a point (1:110m borders), if it is on land.
pub fn country_at(lat: f64, lon: f64) -> Option<&'static str> {
    atlas(Detail::Coarse).country_at(lon, lat)
}

/// Great-circle distance in km.
pub fn distance_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

/// The major place nearest to a point, and how far it is (km).
pub fn nearest_place(lat: f64, lon: f64) -> Option<(&'static Place, f64)> {
    places()
        .iter()
        .map(|p| (p, distance_km((lat, lon), (p.lat, p.lon))))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_data_decodes_with_names_and_both_details() {
        for detail in [Detail::Coarse, Detail::Fine] {
            let a = atlas(detail);
            assert!(a.countries.len() > 150, "{detail:?}");
            assert!(a.arcs.iter().any(|arc| arc.border));
            assert!(a.arcs.iter().any(|arc| arc.coast));
        }
        assert!(
            atlas(Detail::Fine).point_count() > 5 * atlas(Detail::Coarse).point_count(),
            "the fine data is finer"
        );
        assert_eq!(places().len(), 243);
        assert_eq!(places()[0].name, "Hong Kong");
        assert!(places().iter().any(|p| p.name == "Washington, D.C."));
        assert!(places().iter().any(|p| p.name == "Ōsaka"));
    }

    #[test]
    fn points_fall_in_their_country_and_near_their_city() {
        assert_eq!(country_at(52.52, 13.40), Some("Germany"));
        assert_eq!(country_at(48.14, 11.58), Some("Germany"));
        assert_eq!(country_at(51.52, -0.15), Some("United Kingdom"));
        assert_eq!(country_at(39.96, 116.47), Some("China"));
        assert_eq!(country_at(40.0, -40.0), None, "the Atlantic");
        let (p, km) = nearest_place(39.96, 116.47).unwrap();
        assert_eq!(p.name, "Beijing");
        assert!(km < 20.0, "{km}");
        assert_eq!(nearest_place(51.52, -0.15).unwrap().0.name, "London");
        assert_eq!(nearest_place(40.69, -74.0).unwrap().0.name, "New York");
    }

    #[test]
    fn distances_are_great_circle_kilometres() {
        let d = distance_km((51.5074, -0.1278), (48.8566, 2.3522));
        assert!((d - 344.0).abs() < 5.0, "London–Paris {d}");
    }
}
