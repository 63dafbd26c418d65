//! The European Air Quality Index of the European Environment Agency, in its 2024 revision that
//! follows the WHO 2021 guidelines. Six bands from Good to Extremely poor; NO2, O3 and SO2 from
//! hourly concentrations, PM2.5 and PM10 from 24-hour running means; the station's index is its
//! worst pollutant's band.
//!
//! The EEA tables write bands as `0–5, 5–15, …` without saying which side a shared endpoint
//! belongs to; we read them as half-open intervals `[low, high)`, so a value exactly on a
//! threshold falls into the worse band (the precautionary reading, also Open-Meteo's).

use serde::{Deserialize, Serialize};

use super::HourlyWindow;
use crate::parameter::Parameter;

/// The six EAQI bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Good,
    Fair,
    Moderate,
    Poor,
    VeryPoor,
    ExtremelyPoor,
}

impl Level {
    const ALL: [Level; 6] = [
        Level::Good,
        Level::Fair,
        Level::Moderate,
        Level::Poor,
        Level::VeryPoor,
        Level::ExtremelyPoor,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Level::Good => "Good",
            Level::Fair => "Fair",
            Level::Moderate => "Moderate",
            Level::Poor => "Poor",
            Level::VeryPoor => "Very poor",
            Level::ExtremelyPoor => "Extremely poor",
        }
    }

    /// The EEA's colour for the band.
    pub const fn color(self) -> &'static str {
        match self {
            Level::Good => "#50f0e6",
            Level::Fair => "#50ccaa",
            Level::Moderate => "#f0e641",
            Level::Poor => "#ff5050",
            Level::VeryPoor => "#960032",
            Level::ExtremelyPoor => "#7d2181",
        }
    }

    /// 1 (Good) … 6 (Extremely poor).
    pub const fn number(self) -> u8 {
        self as u8 + 1
    }
}

/// Lower thresholds (µg/m³) of Fair, Moderate, Poor, Very poor and Extremely poor.
pub fn thresholds(parameter: Parameter) -> Option<[f64; 5]> {
    Some(match parameter {
        Parameter::Pm25 => [5.0, 15.0, 50.0, 90.0, 140.0],
        Parameter::Pm10 => [15.0, 45.0, 120.0, 195.0, 270.0],
        Parameter::No2 => [10.0, 25.0, 60.0, 100.0, 150.0],
        Parameter::O3 => [60.0, 100.0, 120.0, 160.0, 180.0],
        Parameter::So2 => [20.0, 40.0, 125.0, 190.0, 275.0],
        _ => return None,
    })
}

/// The band of one pollutant's concentration (µg/m³, averaged as the index requires).
pub fn level_for(parameter: Parameter, ugm3: f64) -> Option<Level> {
    if ugm3.is_nan() || ugm3 < 0.0 {
        return None;
    }
    let t = thresholds(parameter)?;
    let band = t.iter().take_while(|&&low| ugm3 >= low).count();
    Some(Level::ALL[band])
}

/// One pollutant's band.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubLevel {
    pub parameter: Parameter,
    /// `1h` or `24h_running_mean`.
    pub averaging: &'static str,
    pub concentration: f64,
    pub level: Level,
}

/// A station's EAQI: the worst band and the pollutant that sets it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EaqiReport {
    pub level: Level,
    pub label: &'static str,
    pub dominant: Parameter,
    pub sub_levels: Vec<SubLevel>,
}

/// The current EAQI of a station from its last 24 hourly values.
pub fn latest(window: &HourlyWindow) -> Option<EaqiReport> {
    let mut subs = Vec::new();
    for p in [Parameter::Pm25, Parameter::Pm10] {
        if let Some(c) = window.mean_of_last(p, 24) {
            subs.extend(level_for(p, c).map(|level| SubLevel {
                parameter: p,
                averaging: "24h_running_mean",
                concentration: c,
                level,
            }));
        }
    }
    for p in [Parameter::No2, Parameter::O3, Parameter::So2] {
        if let Some(c) = window.last_hour(p) {
            subs.extend(level_for(p, c).map(|level| SubLevel {
                parameter: p,
                averaging: "1h",
                concentration: c,
                level,
            }));
        }
    }
    let worst = subs.iter().max_by_key(|s| s.level)?;
    Some(EaqiReport {
        level: worst.level,
        label: worst.level.label(),
        dominant: worst.parameter,
        sub_levels: subs.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_the_2024_table_with_thresholds_in_the_worse_band() {
        let cases = [
            (Parameter::Pm25, 4.9, Level::Good),
            (Parameter::Pm25, 5.0, Level::Fair),
            (Parameter::Pm25, 14.99, Level::Fair),
            (Parameter::Pm25, 15.0, Level::Moderate),
            (Parameter::Pm25, 50.0, Level::Poor),
            (Parameter::Pm25, 90.0, Level::VeryPoor),
            (Parameter::Pm25, 140.0, Level::ExtremelyPoor),
            (Parameter::Pm10, 14.0, Level::Good),
            (Parameter::Pm10, 45.0, Level::Moderate),
            (Parameter::Pm10, 270.0, Level::ExtremelyPoor),
            (Parameter::No2, 9.9, Level::Good),
            (Parameter::No2, 10.0, Level::Fair),
            (Parameter::No2, 100.0, Level::VeryPoor),
            (Parameter::O3, 59.0, Level::Good),
            (Parameter::O3, 120.0, Level::Poor),
            (Parameter::O3, 180.0, Level::ExtremelyPoor),
            (Parameter::So2, 40.0, Level::Moderate),
            (Parameter::So2, 274.9, Level::VeryPoor),
        ];
        for (p, c, expected) in cases {
            assert_eq!(level_for(p, c), Some(expected), "{p} {c}");
        }
        assert_eq!(level_for(Parameter::Co, 1.0), None);
        assert_eq!(level_for(Parameter::Pm25, -1.0), None);
    }

    #[test]
    fn station_level_is_the_worst_pollutant() {
        let mut w = HourlyWindow::default();
        for h in 0..24 {
            w.set(Parameter::Pm25, h, 8.0); // Fair
        }
        w.set(Parameter::No2, 0, 70.0); // Poor
        let r = latest(&w).unwrap();
        assert_eq!(r.level, Level::Poor);
        assert_eq!(r.dominant, Parameter::No2);
        assert_eq!(r.level.number(), 4);
    }

    #[test]
    fn pm_needs_a_24_hour_running_mean() {
        let mut w = HourlyWindow::default();
        for h in 0..17 {
            w.set(Parameter::Pm10, h, 200.0);
        }
        assert!(
            latest(&w).is_none(),
            "17 of 24 hours is not a valid running mean"
        );
        w.set(Parameter::Pm10, 17, 200.0);
        assert_eq!(latest(&w).unwrap().level, Level::VeryPoor);
    }
}
