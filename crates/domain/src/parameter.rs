//! The parameter catalogue: what a station can measure, in which units, and the conversions
//! between them.
//!
//! Names follow OpenAQ's parameter names. Every parameter has one *canonical* unit in which the
//! store keeps its values (µg/m³ for every concentration, so that pollutants compare and average
//! alike); readings arriving in another accepted unit are converted on the way in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Molar volume of an ideal gas at 25 °C and 1 atm, in litres per mole — the reference
/// conditions of the US EPA and of most ppb↔µg/m³ conversion tables.
pub const MOLAR_VOLUME_25C_L: f64 = 24.45;

/// A measured quantity, named as OpenAQ names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Parameter {
    Pm25,
    Pm10,
    No2,
    O3,
    So2,
    Co,
    Nox,
    No,
    Temperature,
    Relativehumidity,
    #[serde(rename = "wind_speed")]
    WindSpeed,
    #[serde(rename = "wind_direction")]
    WindDirection,
    Pressure,
    Dewpoint,
}

/// A unit a value can arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Unit {
    #[serde(rename = "µg/m³")]
    MicrogramsPerCubicMetre,
    #[serde(rename = "mg/m³")]
    MilligramsPerCubicMetre,
    #[serde(rename = "ppb")]
    Ppb,
    #[serde(rename = "ppm")]
    Ppm,
    #[serde(rename = "°C")]
    Celsius,
    #[serde(rename = "°F")]
    Fahrenheit,
    #[serde(rename = "%")]
    Percent,
    #[serde(rename = "m/s")]
    MetresPerSecond,
    #[serde(rename = "km/h")]
    KilometresPerHour,
    #[serde(rename = "mph")]
    MilesPerHour,
    #[serde(rename = "deg")]
    Degrees,
    #[serde(rename = "hPa")]
    Hectopascal,
}

/// A unit that the parameter does not accept, or a name that is no known unit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error("unknown unit {0:?}; known units are µg/m³ (ugm3), mg/m³, ppb, ppm, °C (c), °F (f), % (pct), m/s (ms), km/h, mph, deg, hPa")]
    Unknown(String),
    #[error("{parameter} cannot be given in {unit}; use one of: {accepted}")]
    NotAccepted {
        parameter: Parameter,
        unit: Unit,
        accepted: String,
    },
}

/// A parameter name that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown parameter {0:?}; known parameters are {list}", list = Parameter::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownParameter(pub String);

impl Parameter {
    pub const ALL: [Parameter; 14] = [
        Parameter::Pm25,
        Parameter::Pm10,
        Parameter::No2,
        Parameter::O3,
        Parameter::So2,
        Parameter::Co,
        Parameter::Nox,
        Parameter::No,
        Parameter::Temperature,
        Parameter::Relativehumidity,
        Parameter::WindSpeed,
        Parameter::WindDirection,
        Parameter::Pressure,
        Parameter::Dewpoint,
    ];

    /// The OpenAQ name, as used in URLs, JSON and the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            Parameter::Pm25 => "pm25",
            Parameter::Pm10 => "pm10",
            Parameter::No2 => "no2",
            Parameter::O3 => "o3",
            Parameter::So2 => "so2",
            Parameter::Co => "co",
            Parameter::Nox => "nox",
            Parameter::No => "no",
            Parameter::Temperature => "temperature",
            Parameter::Relativehumidity => "relativehumidity",
            Parameter::WindSpeed => "wind_speed",
            Parameter::WindDirection => "wind_direction",
            Parameter::Pressure => "pressure",
            Parameter::Dewpoint => "dewpoint",
        }
    }

    /// A name for people.
    pub const fn display_name(self) -> &'static str {
        match self {
            Parameter::Pm25 => "PM2.5",
            Parameter::Pm10 => "PM10",
            Parameter::No2 => "Nitrogen dioxide (NO₂)",
            Parameter::O3 => "Ozone (O₃)",
            Parameter::So2 => "Sulphur dioxide (SO₂)",
            Parameter::Co => "Carbon monoxide (CO)",
            Parameter::Nox => "Nitrogen oxides (NOx as NO₂)",
            Parameter::No => "Nitric oxide (NO)",
            Parameter::Temperature => "Temperature",
            Parameter::Relativehumidity => "Relative humidity",
            Parameter::WindSpeed => "Wind speed",
            Parameter::WindDirection => "Wind direction",
            Parameter::Pressure => "Air pressure",
            Parameter::Dewpoint => "Dew point",
        }
    }

    /// The unit the store keeps this parameter in.
    pub const fn canonical_unit(self) -> Unit {
        match self {
            Parameter::Pm25
            | Parameter::Pm10
            | Parameter::No2
            | Parameter::O3
            | Parameter::So2
            | Parameter::Co
            | Parameter::Nox
            | Parameter::No => Unit::MicrogramsPerCubicMetre,
            Parameter::Temperature | Parameter::Dewpoint => Unit::Celsius,
            Parameter::Relativehumidity => Unit::Percent,
            Parameter::WindSpeed => Unit::MetresPerSecond,
            Parameter::WindDirection => Unit::Degrees,
            Parameter::Pressure => Unit::Hectopascal,
        }
    }

    /// Molecular weight in g/mol for gases whose mixing ratio (ppb, ppm) converts to a mass
    /// concentration. NOx is expressed as NO₂, as the EU directive and the UK networks do.
    pub const fn molecular_weight(self) -> Option<f64> {
        match self {
            Parameter::No2 | Parameter::Nox => Some(46.0055),
            Parameter::O3 => Some(47.9982),
            Parameter::So2 => Some(64.066),
            Parameter::Co => Some(28.010),
            Parameter::No => Some(30.006),
            _ => None,
        }
    }

    /// Is this an air pollutant (a concentration), rather than a weather quantity?
    pub const fn is_pollutant(self) -> bool {
        matches!(self.canonical_unit(), Unit::MicrogramsPerCubicMetre)
    }

    /// The physically possible range of a value in the canonical unit. Values outside are
    /// rejected at ingest, never stored.
    pub fn valid_range(self) -> (f64, f64) {
        match self {
            p if p.is_pollutant() => (0.0, 1.0e6),
            Parameter::Temperature | Parameter::Dewpoint => (-90.0, 60.0),
            Parameter::Relativehumidity => (0.0, 100.0),
            Parameter::WindSpeed => (0.0, 120.0),
            Parameter::WindDirection => (0.0, 360.0),
            Parameter::Pressure => (850.0, 1090.0),
            _ => unreachable!("every parameter is a pollutant or listed above"),
        }
    }

    /// The units a value of this parameter may arrive in.
    pub fn accepted_units(self) -> &'static [Unit] {
        use Unit::*;
        match self {
            Parameter::Pm25 | Parameter::Pm10 => {
                &[MicrogramsPerCubicMetre, MilligramsPerCubicMetre]
            }
            p if p.is_pollutant() => &[MicrogramsPerCubicMetre, MilligramsPerCubicMetre, Ppb, Ppm],
            Parameter::Temperature | Parameter::Dewpoint => &[Celsius, Fahrenheit],
            Parameter::Relativehumidity => &[Percent],
            Parameter::WindSpeed => &[MetresPerSecond, KilometresPerHour, MilesPerHour],
            Parameter::WindDirection => &[Degrees],
            Parameter::Pressure => &[Hectopascal],
            _ => unreachable!("every parameter is a pollutant or listed above"),
        }
    }

    /// Converts `value` given in `unit` into this parameter's canonical unit.
    pub fn to_canonical(self, value: f64, unit: Unit) -> Result<f64, UnitError> {
        if !self.accepted_units().contains(&unit) {
            return Err(UnitError::NotAccepted {
                parameter: self,
                unit,
                accepted: self
                    .accepted_units()
                    .iter()
                    .map(|u| u.symbol())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(match unit {
            Unit::MilligramsPerCubicMetre => value * 1000.0,
            Unit::Ppb => ppb_to_ugm3(value, self.molecular_weight().expect("gas")),
            Unit::Ppm => ppb_to_ugm3(value * 1000.0, self.molecular_weight().expect("gas")),
            Unit::Fahrenheit => (value - 32.0) * 5.0 / 9.0,
            Unit::KilometresPerHour => value / 3.6,
            Unit::MilesPerHour => value * 0.44704,
            _ => value,
        })
    }

    /// Converts a canonical value (µg/m³ for gases) into ppb, for indices defined on mixing ratios.
    pub fn canonical_to_ppb(self, ugm3: f64) -> Option<f64> {
        self.molecular_weight().map(|mw| ugm3_to_ppb(ugm3, mw))
    }
}

/// ppb → µg/m³ at 25 °C and 1 atm.
pub fn ppb_to_ugm3(ppb: f64, molecular_weight: f64) -> f64 {
    ppb * molecular_weight / MOLAR_VOLUME_25C_L
}

/// µg/m³ → ppb at 25 °C and 1 atm.
pub fn ugm3_to_ppb(ugm3: f64, molecular_weight: f64) -> f64 {
    ugm3 * MOLAR_VOLUME_25C_L / molecular_weight
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Parameter {
    type Err = UnknownParameter;

    /// Accepts the OpenAQ names and the common spellings of the shared data sets
    /// (`pm2.5`, `temp`, `ws`, `wd`, `humid`, `pres`, `dewp`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "pm25" | "pm2.5" | "pm2_5" => Parameter::Pm25,
            "pm10" => Parameter::Pm10,
            "no2" => Parameter::No2,
            "o3" => Parameter::O3,
            "so2" => Parameter::So2,
            "co" => Parameter::Co,
            "nox" => Parameter::Nox,
            "no" => Parameter::No,
            "temperature" | "temp" => Parameter::Temperature,
            "relativehumidity" | "humidity" | "humid" | "rh" => Parameter::Relativehumidity,
            "wind_speed" | "windspeed" | "ws" => Parameter::WindSpeed,
            "wind_direction" | "winddirection" | "wd" => Parameter::WindDirection,
            "pressure" | "pres" => Parameter::Pressure,
            "dewpoint" | "dewp" => Parameter::Dewpoint,
            _ => return Err(UnknownParameter(s.to_string())),
        })
    }
}

impl Unit {
    /// The symbol people read.
    pub const fn symbol(self) -> &'static str {
        match self {
            Unit::MicrogramsPerCubicMetre => "µg/m³",
            Unit::MilligramsPerCubicMetre => "mg/m³",
            Unit::Ppb => "ppb",
            Unit::Ppm => "ppm",
            Unit::Celsius => "°C",
            Unit::Fahrenheit => "°F",
            Unit::Percent => "%",
            Unit::MetresPerSecond => "m/s",
            Unit::KilometresPerHour => "km/h",
            Unit::MilesPerHour => "mph",
            Unit::Degrees => "deg",
            Unit::Hectopascal => "hPa",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl FromStr for Unit {
    type Err = UnitError;

    /// Accepts symbols (`µg/m³`, `ppb`, `°C`) and the column suffixes of the shared data sets
    /// (`ugm3`, `c`, `f`, `ms`, `mph`, `pct`, `deg`, `hpa`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_lowercase();
        Ok(match lower.as_str() {
            "µg/m³" | "μg/m³" | "ug/m3" | "µg/m3" | "μg/m3" | "ugm3" | "ug/m³" => {
                Unit::MicrogramsPerCubicMetre
            }
            "mg/m³" | "mg/m3" | "mgm3" => Unit::MilligramsPerCubicMetre,
            "ppb" => Unit::Ppb,
            "ppm" => Unit::Ppm,
            "°c" | "c" | "degc" | "celsius" => Unit::Celsius,
            "°f" | "f" | "degf" | "fahrenheit" => Unit::Fahrenheit,
            "%" | "pct" | "percent" => Unit::Percent,
            "m/s" | "ms" | "mps" => Unit::MetresPerSecond,
            "km/h" | "kmh" | "kph" => Unit::KilometresPerHour,
            "mph" => Unit::MilesPerHour,
            "deg" | "°" | "degrees" => Unit::Degrees,
            "hpa" | "mbar" => Unit::Hectopascal,
            _ => return Err(UnitError::Unknown(s.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for p in Parameter::ALL {
            assert_eq!(p.as_str().parse::<Parameter>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
        assert!("pm1".parse::<Parameter>().is_err());
    }

    #[test]
    fn no2_ppb_converts_with_the_epa_factor() {
        // 1 ppb NO2 = 1.88 µg/m³ at 25 °C (the factor in EU and EPA tables).
        let ugm3 = Parameter::No2.to_canonical(1.0, Unit::Ppb).unwrap();
        assert!((ugm3 - 1.8816).abs() < 0.001, "{ugm3}");
        // O3: 1 ppb = 1.96 µg/m³; SO2: 2.62; CO: 1 ppm = 1.145 mg/m³.
        assert!((Parameter::O3.to_canonical(1.0, Unit::Ppb).unwrap() - 1.963).abs() < 0.001);
        assert!((Parameter::So2.to_canonical(1.0, Unit::Ppb).unwrap() - 2.620).abs() < 0.001);
        assert!((Parameter::Co.to_canonical(1.0, Unit::Ppm).unwrap() - 1145.6).abs() < 0.1);
        // And back.
        let back = Parameter::No2.canonical_to_ppb(ugm3).unwrap();
        assert!((back - 1.0).abs() < 1e-12);
    }

    #[test]
    fn weather_units_convert() {
        assert!(
            (Parameter::Temperature
                .to_canonical(212.0, Unit::Fahrenheit)
                .unwrap()
                - 100.0)
                .abs()
                < 1e-9
        );
        assert!(
            (Parameter::WindSpeed
                .to_canonical(36.0, Unit::KilometresPerHour)
                .unwrap()
                - 10.0)
                .abs()
                < 1e-9
        );
        assert!(
            (Parameter::WindSpeed
                .to_canonical(1.0, Unit::MilesPerHour)
                .unwrap()
                - 0.44704)
                .abs()
                < 1e-9
        );
    }

    #[test]
    fn a_unit_the_parameter_does_not_take_is_an_error() {
        let err = Parameter::Pm25.to_canonical(1.0, Unit::Ppb).unwrap_err();
        assert!(
            err.to_string().contains("pm25 cannot be given in ppb"),
            "{err}"
        );
        assert!(Parameter::Relativehumidity
            .to_canonical(1.0, Unit::Celsius)
            .is_err());
    }

    #[test]
    fn unit_suffixes_of_the_shared_data_parse() {
        for (s, u) in [
            ("ugm3", Unit::MicrogramsPerCubicMetre),
            ("ppb", Unit::Ppb),
            ("ppm", Unit::Ppm),
            ("c", Unit::Celsius),
            ("f", Unit::Fahrenheit),
            ("ms", Unit::MetresPerSecond),
            ("mph", Unit::MilesPerHour),
            ("deg", Unit::Degrees),
            ("hpa", Unit::Hectopascal),
            ("pct", Unit::Percent),
            ("µg/m³", Unit::MicrogramsPerCubicMetre),
        ] {
            assert_eq!(s.parse::<Unit>().unwrap(), u, "{s}");
        }
        assert!("gw".parse::<Unit>().is_err());
    }
}
