//! The US AQI of each forecast hour, averaged the way EPA's tables require: PM by NowCast over
//! the measured and forecast hours before it, O3 and CO by their 8-hour mean, NO2 and SO2 hourly.

use ecocityhub_domain::aqi::us_epa::{index_for_canonical, nowcast, Category, Table};
use ecocityhub_domain::Parameter;

/// The AQI and its category of one hour.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HourAqi {
    pub aqi: u32,
    pub category: Category,
}

/// `measured`: the hours up to the origin, oldest first (NaN for gaps); `forecast`: the
/// forecast hours after it. Returns one entry per forecast hour.
pub fn forecast_aqi(
    parameter: Parameter,
    measured: &[f64],
    forecast: &[f64],
) -> Vec<Option<HourAqi>> {
    let all: Vec<f64> = measured.iter().chain(forecast).copied().collect();
    let start = measured.len();
    (0..forecast.len())
        .map(|i| {
            let upto = &all[..=start + i];
            let (table, concentration) = match parameter {
                Parameter::Pm25 | Parameter::Pm10 => {
                    let recent: Vec<Option<f64>> = upto
                        .iter()
                        .rev()
                        .take(12)
                        .map(|v| (!v.is_nan()).then_some(*v))
                        .collect();
                    let table = if parameter == Parameter::Pm25 {
                        Table::Pm25_24h
                    } else {
                        Table::Pm10_24h
                    };
                    (table, nowcast(&recent)?)
                }
                Parameter::O3 => (Table::O3_8h, mean_of_last(upto, 8)?),
                Parameter::Co => (Table::Co_8h, mean_of_last(upto, 8)?),
                Parameter::No2 => (Table::No2_1h, forecast[i]),
                Parameter::So2 => (Table::So2_1h, forecast[i]),
                _ => return None,
            };
            let aqi = index_for_canonical(table, concentration)?;
            Some(HourAqi {
                aqi,
                category: Category::from_index(aqi),
            })
        })
        .collect()
}

/// The AQI of each point of a forecast made from `series` (its last 24 measured hours before the
/// first point feed the averages).
pub fn forecast_aqi_after(
    parameter: Parameter,
    series: &crate::HourlySeries,
    points: &[crate::ForecastPoint],
) -> Vec<Option<HourAqi>> {
    let Some(first) = points.first() else {
        return Vec::new();
    };
    let origin = first.ts - crate::series::HOUR;
    let measured: Vec<f64> = (0..24)
        .rev()
        .map(|k| series.at(origin - k * crate::series::HOUR))
        .collect();
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    forecast_aqi(parameter, &measured, &values)
}

/// Mean of the last `n` hours when at least 75 % of them are present.
fn mean_of_last(values: &[f64], n: usize) -> Option<f64> {
    let tail = &values[values.len().saturating_sub(n)..];
    let present: Vec<f64> = tail.iter().copied().filter(|v| !v.is_nan()).collect();
    (tail.len() == n && present.len() * 4 >= n * 3)
        .then(|| present.iter().sum::<f64>() / present.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pm25_uses_nowcast_over_measured_and_forecast_hours() {
        let measured = vec![10.0; 12];
        let aqi = forecast_aqi(Parameter::Pm25, &measured, &[10.0, 100.0]);
        // Steady 10 µg/m³: AQI 53 (Moderate, 2024 breakpoints).
        assert_eq!(aqi[0].unwrap().aqi, 53);
        assert_eq!(aqi[0].unwrap().category, Category::Moderate);
        // A jump to 100 is smoothed by NowCast, but still raises the index.
        assert!(aqi[1].unwrap().aqi > 53);
    }

    #[test]
    fn no2_is_hourly_and_o3_needs_eight_hours() {
        let no2 = forecast_aqi(Parameter::No2, &[], &[190.0]);
        assert_eq!(no2[0].unwrap().aqi, 100); // 190 µg/m³ ≈ 101 ppb
        assert_eq!(forecast_aqi(Parameter::O3, &[], &[80.0])[0], None);
        let o3 = forecast_aqi(Parameter::O3, &[80.0; 7], &[80.0]);
        assert!(o3[0].is_some());
        assert_eq!(forecast_aqi(Parameter::Temperature, &[], &[20.0])[0], None);
    }
}
