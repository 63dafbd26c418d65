//! Regions named by their place, not their time zone: by the area most of their stations
//! share ("Westminster, London" → "London"), else by the country when they spread over one
//! ("Germany" for a national network), else by the major Natural Earth place nearest their
//! middle ("Beijing", not "Shanghai region"). The time zone's city is the last resort.

use std::collections::{BTreeMap, HashMap};

use ecocityhub_api::latest::LatestStation;

use crate::basemap;

/// Stations spreading further than this (km) from their middle may be named by their country.
const COUNTRY_SPREAD_KM: f64 = 150.0;

/// A place further than this (km) from the stations' middle does not name them.
const NEAREST_PLACE_KM: f64 = 150.0;

/// The name of each region (keyed like `by_region`), distinct: a name two regions share gets
/// their time zones' cities added.
pub fn region_names(by_region: &BTreeMap<String, Vec<&LatestStation>>) -> HashMap<String, String> {
    let names: HashMap<String, String> = by_region
        .iter()
        .map(|(k, v)| (k.clone(), region_name(v, k)))
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    names
        .values()
        .for_each(|n| *seen.entry(n.as_str()).or_default() += 1);
    names
        .iter()
        .map(|(k, n)| match seen[n.as_str()] {
            1 => (k.clone(), n.clone()),
            _ => (k.clone(), format!("{n} ({})", timezone_city(k))),
        })
        .collect()
}

/// The name of one region's stations (`timezone` is their time zone).
pub fn region_name(stations: &[&LatestStation], timezone: &str) -> String {
    let points: Vec<(f64, f64)> = stations
        .iter()
        .map(|s| (s.location.lat, s.location.lon))
        .collect();
    shared_area(stations)
        .or_else(|| spanned_country(&points))
        .or_else(|| nearest_place(&points))
        .unwrap_or_else(|| timezone_city(timezone))
}

/// The area more than half the stations share, by its widest part ("Queens, New York" is in
/// "New York").
fn shared_area(stations: &[&LatestStation]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in stations {
        if let Some(area) = s.area.as_deref() {
            let widest = area.rsplit(',').next().unwrap_or(area).trim();
            if !widest.is_empty() {
                *counts.entry(widest).or_default() += 1;
            }
        }
    }
    let (name, n) = counts.into_iter().max_by_key(|&(_, n)| n)?;
    (n * 2 > stations.len()).then(|| name.to_string())
}

fn middle(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    (!points.is_empty()).then(|| {
        let (a, b) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
        (a / n, b / n)
    })
}

/// The country four in five stations are in, when they spread over more than a city.
fn spanned_country(points: &[(f64, f64)]) -> Option<String> {
    let centre = middle(points)?;
    let spread = points
        .iter()
        .map(|&p| basemap::distance_km(p, centre))
        .fold(0.0, f64::max);
    if spread < COUNTRY_SPREAD_KM {
        return None;
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for &(lat, lon) in points {
        if let Some(c) = basemap::country_at(lat, lon) {
            *counts.entry(c).or_default() += 1;
        }
    }
    let (name, n) = counts.into_iter().max_by_key(|&(_, n)| n)?;
    (n * 5 >= points.len() * 4).then(|| name.to_string())
}

/// The major place nearest the stations' middle, if near enough; else the country there.
fn nearest_place(points: &[(f64, f64)]) -> Option<String> {
    let (lat, lon) = middle(points)?;
    match basemap::nearest_place(lat, lon) {
        Some((place, km)) if km <= NEAREST_PLACE_KM => Some(place.name.clone()),
        _ => basemap::country_at(lat, lon).map(str::to_string),
    }
}

/// "Europe/Berlin" → "Berlin".
pub fn timezone_city(timezone: &str) -> String {
    timezone
        .rsplit('/')
        .next()
        .unwrap_or(timezone)
        .replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecocityhub_domain::{GeoPoint, StationId};

    fn station(id: &str, lat: f64, lon: f64, area: Option<&str>) -> LatestStation {
        LatestStation {
            station: StationId::parse(id).unwrap(),
            name: id.into(),
            location: GeoPoint::new(lat, lon).unwrap(),
            area: area.map(str::to_string),
            time: None,
            stale: false,
            values: Vec::new(),
            aqi: None,
            eaqi: None,
        }
    }

    fn name(stations: &[LatestStation], tz: &str) -> String {
        region_name(&stations.iter().collect::<Vec<_>>(), tz)
    }

    #[test]
    fn a_shared_area_names_the_region_by_its_widest_part() {
        let london = [station("a", 51.52, -0.15, Some("Westminster, London"))];
        assert_eq!(name(&london, "Europe/London"), "London");
        let nyc = [
            station("ewr", 40.69, -74.17, Some("Newark, New Jersey")),
            station("jfk", 40.64, -73.78, Some("Queens, New York")),
            station("lga", 40.78, -73.87, Some("Queens, New York")),
        ];
        assert_eq!(name(&nyc, "America/New_York"), "New York");
        let beijing = [station("b", 39.96, 116.47, Some("Chaoyang, Beijing"))];
        assert_eq!(name(&beijing, "Asia/Shanghai"), "Beijing");
    }

    #[test]
    fn a_network_over_a_country_is_named_by_the_country() {
        let german = [
            station("s1", 52.54, 14.06, Some("Brandenburg")),
            station("s2", 48.88, 9.57, Some("Baden-Württemberg")),
            station("s3", 53.87, 10.90, Some("Mecklenburg-Vorpommern")),
            station("s4", 50.65, 6.281, Some("Nordrhein-Westfalen")),
            station("s5", 48.82, 13.22, None),
        ];
        assert_eq!(name(&german, "Europe/Berlin"), "Germany");
    }

    #[test]
    fn without_areas_the_nearest_major_place_names_the_region() {
        let beijing = [
            station("a", 39.95, 116.40, None),
            station("b", 40.0, 116.3, None),
        ];
        assert_eq!(name(&beijing, "Asia/Shanghai"), "Beijing");
        // Far from any major place: the country, then the time zone's city.
        let outback = [station("c", -25.0, 134.0, None)];
        assert_eq!(name(&outback, "Australia/Darwin"), "Australia");
        let sea = [station("d", 0.0, -140.0, None)];
        assert_eq!(name(&sea, "Pacific/Port_Moresby"), "Port Moresby");
    }

    #[test]
    fn names_two_regions_share_are_told_apart() {
        let a = [station("a", 52.52, 13.40, Some("Berlin"))];
        let b = [station("b", 52.50, 13.42, Some("Berlin"))];
        let by_region = BTreeMap::from([
            ("Europe/Berlin".to_string(), a.iter().collect()),
            ("Europe/Busingen".to_string(), b.iter().collect()),
        ]);
        let names = region_names(&by_region);
        assert_eq!(names["Europe/Berlin"], "Berlin (Berlin)");
        assert_eq!(names["Europe/Busingen"], "Berlin (Busingen)");
    }
}
