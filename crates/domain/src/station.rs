//! Stations: where readings come from. A station id is a short, URL-safe code (the AirBase
//! code of a German station, `marylebone_road`, …) chosen by whoever registers the station.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A validated station id: 1–64 characters of ASCII letters, digits, `_`, `-` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "marylebone_road"))]
#[serde(try_from = "String", into = "String")]
pub struct StationId(String);

/// Why a station (or its id or location) is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StationError {
    #[error("station id {0:?} is not valid: use 1–64 letters, digits, '_', '-' or '.'")]
    InvalidId(String),
    #[error("latitude {0} is outside −90…90")]
    Latitude(f64),
    #[error("longitude {0} is outside −180…180")]
    Longitude(f64),
    #[error("station name must not be empty")]
    EmptyName,
    #[error("time zone {0:?} is not an IANA name like Europe/London or UTC")]
    Timezone(String),
}

impl StationId {
    pub fn parse(s: &str) -> Result<Self, StationError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(StationId(s.to_string()))
        } else {
            Err(StationError::InvalidId(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StationId {
    type Error = StationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        StationId::parse(&s)
    }
}

impl From<StationId> for String {
    fn from(id: StationId) -> String {
        id.0
    }
}

impl FromStr for StationId {
    type Err = StationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StationId::parse(s)
    }
}

impl fmt::Display for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WGS84 position with validated latitude and longitude.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "RawPoint")]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Deserialize)]
struct RawPoint {
    lat: f64,
    lon: f64,
}

impl TryFrom<RawPoint> for GeoPoint {
    type Error = StationError;
    fn try_from(p: RawPoint) -> Result<Self, Self::Error> {
        GeoPoint::new(p.lat, p.lon)
    }
}

impl GeoPoint {
    pub fn new(lat: f64, lon: f64) -> Result<Self, StationError> {
        if !(-90.0..=90.0).contains(&lat) || lat.is_nan() {
            return Err(StationError::Latitude(lat));
        }
        if !(-180.0..=180.0).contains(&lon) || lon.is_nan() {
            return Err(StationError::Longitude(lon));
        }
        Ok(GeoPoint { lat, lon })
    }

    /// Great-circle distance in kilometres (haversine), for neighbour checks.
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dla = la2 - la1;
        let dlo = (other.lon - self.lon).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * 6371.0088 * a.sqrt().asin()
    }
}

/// A bounding box `min_lon,min_lat,max_lon,max_lat` (the GeoJSON / OGC order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox {
    pub min_lon: f64,
    pub min_lat: f64,
    pub max_lon: f64,
    pub max_lat: f64,
}

impl FromStr for BBox {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                format!("bbox {s:?} must be four numbers: min_lon,min_lat,max_lon,max_lat")
            })?;
        let [min_lon, min_lat, max_lon, max_lat] = parts[..] else {
            return Err(format!(
                "bbox {s:?} must be four numbers: min_lon,min_lat,max_lon,max_lat"
            ));
        };
        GeoPoint::new(min_lat, min_lon).map_err(|e| e.to_string())?;
        GeoPoint::new(max_lat, max_lon).map_err(|e| e.to_string())?;
        if min_lat > max_lat || min_lon > max_lon {
            return Err(format!("bbox {s:?} has its minimum above its maximum"));
        }
        Ok(BBox {
            min_lon,
            min_lat,
            max_lon,
            max_lat,
        })
    }
}

impl BBox {
    pub fn contains(&self, p: &GeoPoint) -> bool {
        (self.min_lat..=self.max_lat).contains(&p.lat)
            && (self.min_lon..=self.max_lon).contains(&p.lon)
    }
}

/// A sensor station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Station {
    pub id: StationId,
    pub name: String,
    pub location: GeoPoint,
    /// District, borough or region the station belongs to.
    pub area: Option<String>,
    /// IANA time zone of the station's city, for local-time charts and calendar features.
    pub timezone: String,
    /// Free metadata (operator, instrument, site type, attribution…).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    pub active: bool,
}

impl Station {
    /// Builds a station, checking every field.
    pub fn new(
        id: StationId,
        name: impl Into<String>,
        location: GeoPoint,
        area: Option<String>,
        timezone: impl Into<String>,
    ) -> Result<Self, StationError> {
        let station = Station {
            id,
            name: name.into(),
            location,
            area,
            timezone: timezone.into(),
            metadata: serde_json::Value::Object(Default::default()),
            active: true,
        };
        station.validate()?;
        Ok(station)
    }

    /// Checks the fields that types alone do not guarantee.
    pub fn validate(&self) -> Result<(), StationError> {
        if self.name.trim().is_empty() {
            return Err(StationError::EmptyName);
        }
        if !is_plausible_timezone(&self.timezone) {
            return Err(StationError::Timezone(self.timezone.clone()));
        }
        GeoPoint::new(self.location.lat, self.location.lon)?;
        Ok(())
    }
}

/// A light check of an IANA zone name (`UTC`, `Area/City`, `Area/Sub/City`, `Etc/GMT+1`).
fn is_plausible_timezone(tz: &str) -> bool {
    if tz == "UTC" {
        return true;
    }
    let parts: Vec<&str> = tz.split('/').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_ids_are_validated() {
        assert!(StationId::parse("DEBB051").is_ok());
        assert!(StationId::parse("marylebone_road").is_ok());
        assert!(StationId::parse("").is_err());
        assert!(StationId::parse("a b").is_err());
        assert!(StationId::parse("../etc").is_err());
        assert!(StationId::parse(&"x".repeat(65)).is_err());
        assert!(serde_json::from_str::<StationId>("\"no/slash\"").is_err());
    }

    #[test]
    fn coordinates_are_validated() {
        assert!(GeoPoint::new(90.0, 180.0).is_ok());
        assert_eq!(GeoPoint::new(90.5, 0.0), Err(StationError::Latitude(90.5)));
        assert_eq!(
            GeoPoint::new(0.0, -180.1),
            Err(StationError::Longitude(-180.1))
        );
        assert!(GeoPoint::new(f64::NAN, 0.0).is_err());
        assert!(serde_json::from_str::<GeoPoint>(r#"{"lat":91,"lon":0}"#).is_err());
    }

    #[test]
    fn distance_between_london_and_berlin_is_about_930_km() {
        let london = GeoPoint::new(51.5074, -0.1278).unwrap();
        let berlin = GeoPoint::new(52.52, 13.405).unwrap();
        let d = london.distance_km(&berlin);
        assert!((925.0..935.0).contains(&d), "{d}");
    }

    #[test]
    fn bbox_parses_and_contains() {
        let b: BBox = "-1,51,0.5,52".parse().unwrap();
        assert!(b.contains(&GeoPoint::new(51.5, -0.15).unwrap()));
        assert!(!b.contains(&GeoPoint::new(52.5, 13.4).unwrap()));
        assert!("1,2,3".parse::<BBox>().is_err());
        assert!("1,2,0,1".parse::<BBox>().is_err());
        assert!("0,95,1,96".parse::<BBox>().is_err());
    }

    #[test]
    fn station_checks_name_and_timezone() {
        let id = StationId::parse("s1").unwrap();
        let p = GeoPoint::new(51.0, 0.0).unwrap();
        assert!(Station::new(id.clone(), "S", p, None, "Europe/London").is_ok());
        assert_eq!(
            Station::new(id.clone(), " ", p, None, "UTC"),
            Err(StationError::EmptyName)
        );
        assert!(Station::new(id, "S", p, None, "London time").is_err());
    }
}
