//! The US EPA Air Quality Index with the breakpoints of 40 CFR Part 58 Appendix G as revised on
//! 2024-02-07 (PM2.5 "Good" up to 9.0 µg/m³, one 301–500 row), and EPA's averaging rules:
//! PM 24-hour, O3 8-hour (and 1-hour from 0.125 ppm, the larger index wins), CO 8-hour, NO2 and
//! SO2 1-hour (SO2 above 304 ppb switches to the 24-hour table). For the "latest" view PM uses
//! the NowCast, as AirNow does.

use serde::{Deserialize, Serialize};

use super::HourlyWindow;
use crate::parameter::Parameter;

/// One of the six AQI categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Good,
    Moderate,
    UnhealthyForSensitiveGroups,
    Unhealthy,
    VeryUnhealthy,
    Hazardous,
}

impl Category {
    pub fn from_index(aqi: u32) -> Category {
        match aqi {
            0..=50 => Category::Good,
            51..=100 => Category::Moderate,
            101..=150 => Category::UnhealthyForSensitiveGroups,
            151..=200 => Category::Unhealthy,
            201..=300 => Category::VeryUnhealthy,
            _ => Category::Hazardous,
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Category::Good => "Good",
            Category::Moderate => "Moderate",
            Category::UnhealthyForSensitiveGroups => "Unhealthy for Sensitive Groups",
            Category::Unhealthy => "Unhealthy",
            Category::VeryUnhealthy => "Very Unhealthy",
            Category::Hazardous => "Hazardous",
        }
    }

    /// EPA's colour for the category (RGB hex).
    pub const fn color(self) -> &'static str {
        match self {
            Category::Good => "#00e400",
            Category::Moderate => "#ffff00",
            Category::UnhealthyForSensitiveGroups => "#ff7e00",
            Category::Unhealthy => "#ff0000",
            Category::VeryUnhealthy => "#8f3f97",
            Category::Hazardous => "#7e0023",
        }
    }

    /// EPA's general health message for the category.
    pub const fn advice(self) -> &'static str {
        match self {
            Category::Good => "Air quality is satisfactory, and air pollution poses little or no risk.",
            Category::Moderate => "Air quality is acceptable. However, there may be a risk for some people, particularly those who are unusually sensitive to air pollution.",
            Category::UnhealthyForSensitiveGroups => "Members of sensitive groups may experience health effects. The general public is less likely to be affected.",
            Category::Unhealthy => "Some members of the general public may experience health effects; members of sensitive groups may experience more serious health effects.",
            Category::VeryUnhealthy => "Health alert: the risk of health effects is increased for everyone.",
            Category::Hazardous => "Health warning of emergency conditions: everyone is more likely to be affected.",
        }
    }

    /// The upper AQI value of each category, for threshold lines on charts.
    pub const UPPER_BOUNDS: [(Category, u32); 6] = [
        (Category::Good, 50),
        (Category::Moderate, 100),
        (Category::UnhealthyForSensitiveGroups, 150),
        (Category::Unhealthy, 200),
        (Category::VeryUnhealthy, 300),
        (Category::Hazardous, 500),
    ];
}

/// A pollutant with the averaging time a breakpoint table is defined for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[allow(non_camel_case_types)]
pub enum Table {
    /// PM2.5, 24-hour mean (or NowCast), µg/m³, truncated to 0.1.
    Pm25_24h,
    /// PM10, 24-hour mean (or NowCast), µg/m³, truncated to an integer.
    Pm10_24h,
    /// O3, 8-hour mean, ppm, truncated to 0.001; defined up to 0.200 ppm.
    O3_8h,
    /// O3, 1-hour, ppm, truncated to 0.001; defined from 0.125 ppm.
    O3_1h,
    /// CO, 8-hour mean, ppm, truncated to 0.1.
    Co_8h,
    /// SO2, 1-hour, ppb, truncated to an integer; defined up to 304 ppb.
    So2_1h,
    /// SO2, 24-hour mean, ppb; used from 305 ppb.
    So2_24h,
    /// NO2, 1-hour, ppb, truncated to an integer.
    No2_1h,
}

/// (C_low, C_high, I_low, I_high)
type Row = (f64, f64, u32, u32);

impl Table {
    fn rows(self) -> &'static [Row] {
        match self {
            Table::Pm25_24h => &[
                (0.0, 9.0, 0, 50),
                (9.1, 35.4, 51, 100),
                (35.5, 55.4, 101, 150),
                (55.5, 125.4, 151, 200),
                (125.5, 225.4, 201, 300),
                (225.5, 325.4, 301, 500),
            ],
            Table::Pm10_24h => &[
                (0.0, 54.0, 0, 50),
                (55.0, 154.0, 51, 100),
                (155.0, 254.0, 101, 150),
                (255.0, 354.0, 151, 200),
                (355.0, 424.0, 201, 300),
                (425.0, 604.0, 301, 500),
            ],
            Table::O3_8h => &[
                (0.000, 0.054, 0, 50),
                (0.055, 0.070, 51, 100),
                (0.071, 0.085, 101, 150),
                (0.086, 0.105, 151, 200),
                (0.106, 0.200, 201, 300),
            ],
            Table::O3_1h => &[
                (0.125, 0.164, 101, 150),
                (0.165, 0.204, 151, 200),
                (0.205, 0.404, 201, 300),
                (0.405, 0.604, 301, 500),
            ],
            Table::Co_8h => &[
                (0.0, 4.4, 0, 50),
                (4.5, 9.4, 51, 100),
                (9.5, 12.4, 101, 150),
                (12.5, 15.4, 151, 200),
                (15.5, 30.4, 201, 300),
                (30.5, 50.4, 301, 500),
            ],
            Table::So2_1h => &[
                (0.0, 35.0, 0, 50),
                (36.0, 75.0, 51, 100),
                (76.0, 185.0, 101, 150),
                (186.0, 304.0, 151, 200),
            ],
            Table::So2_24h => &[(305.0, 604.0, 201, 300), (605.0, 1004.0, 301, 500)],
            Table::No2_1h => &[
                (0.0, 53.0, 0, 50),
                (54.0, 100.0, 51, 100),
                (101.0, 360.0, 101, 150),
                (361.0, 649.0, 151, 200),
                (650.0, 1249.0, 201, 300),
                (1250.0, 2049.0, 301, 500),
            ],
        }
    }

    /// Decimal places the concentration is truncated to before the lookup.
    const fn decimals(self) -> i32 {
        match self {
            Table::Pm25_24h | Table::Co_8h => 1,
            Table::O3_8h | Table::O3_1h => 3,
            Table::Pm10_24h | Table::So2_1h | Table::So2_24h | Table::No2_1h => 0,
        }
    }

    /// The concentration unit of the table, and the conversion from canonical µg/m³.
    fn in_table_unit(self, ugm3: f64) -> f64 {
        match self {
            Table::Pm25_24h | Table::Pm10_24h => ugm3,
            Table::O3_8h | Table::O3_1h => {
                Parameter::O3.canonical_to_ppb(ugm3).expect("gas") / 1000.0
            }
            Table::Co_8h => Parameter::Co.canonical_to_ppb(ugm3).expect("gas") / 1000.0,
            Table::So2_1h | Table::So2_24h => Parameter::So2.canonical_to_ppb(ugm3).expect("gas"),
            Table::No2_1h => Parameter::No2.canonical_to_ppb(ugm3).expect("gas"),
        }
    }

    pub const fn parameter(self) -> Parameter {
        match self {
            Table::Pm25_24h => Parameter::Pm25,
            Table::Pm10_24h => Parameter::Pm10,
            Table::O3_8h | Table::O3_1h => Parameter::O3,
            Table::Co_8h => Parameter::Co,
            Table::So2_1h | Table::So2_24h => Parameter::So2,
            Table::No2_1h => Parameter::No2,
        }
    }

    /// The averaging period the value must have, in hours.
    pub const fn averaging_hours(self) -> u32 {
        match self {
            Table::Pm25_24h | Table::Pm10_24h | Table::So2_24h => 24,
            Table::O3_8h | Table::Co_8h => 8,
            Table::O3_1h | Table::So2_1h | Table::No2_1h => 1,
        }
    }
}

/// Truncates (never rounds) to `decimals` places, with a guard against binary noise
/// (35.4 stored as 35.39999… must stay 35.4).
fn truncate(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f + 1e-6).floor() / f
}

/// The AQI for a concentration given in the table's own unit (µg/m³, ppm or ppb).
/// Returns `None` below the table's first row (only the O3 1-hour table has a floor) or for a
/// negative value. Above the last row the last segment is extended: the index goes past 500
/// ("beyond the AQI") and stays Hazardous.
pub fn index_for(table: Table, concentration: f64) -> Option<u32> {
    if concentration.is_nan() || concentration < 0.0 {
        return None;
    }
    let c = truncate(concentration, table.decimals());
    let rows = table.rows();
    if c < rows[0].0 {
        return None;
    }
    let row = rows
        .iter()
        .find(|(_, hi, _, _)| c <= *hi)
        .or(rows.last())
        .expect("tables are not empty");
    let (clo, chi, ilo, ihi) = *row;
    // A truncated value cannot fall between rows (e.g. 9.05 becomes 9.0), except above the top.
    let i = (ihi - ilo) as f64 / (chi - clo) * (c - clo) + ilo as f64;
    Some(i.round() as u32)
}

/// The AQI for a canonical (µg/m³) concentration averaged as the table requires.
pub fn index_for_canonical(table: Table, ugm3: f64) -> Option<u32> {
    index_for(table, table.in_table_unit(ugm3))
}

/// EPA's NowCast for PM: a weighted mean of the last 12 hourly values (most recent first),
/// weighting recent hours more when concentrations change fast. Needs two of the three most
/// recent hours.
pub fn nowcast(hours: &[Option<f64>]) -> Option<f64> {
    let hours = &hours[..hours.len().min(12)];
    if hours.iter().take(3).flatten().count() < 2 {
        return None;
    }
    let present = hours.iter().flatten();
    let (min, max) = present.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    let w = if max > 0.0 { (min / max).max(0.5) } else { 1.0 };
    let (mut num, mut den) = (0.0, 0.0);
    for (i, v) in hours.iter().enumerate() {
        if let Some(v) = v {
            let weight = w.powi(i as i32);
            num += weight * v;
            den += weight;
        }
    }
    Some(num / den)
}

/// One pollutant's share of the index.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubIndex {
    pub parameter: Parameter,
    /// Which table and averaging period was used.
    pub table: Table,
    /// `nowcast`, `8h_mean`, `24h_mean`, `1h`.
    pub averaging: &'static str,
    /// The averaged concentration in µg/m³.
    pub concentration: f64,
    pub aqi: u32,
    pub category: Category,
}

/// A station's AQI: the highest sub-index and the pollutant that sets it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AqiReport {
    pub aqi: u32,
    pub category: Category,
    pub dominant: Parameter,
    pub sub_indices: Vec<SubIndex>,
}

fn sub(table: Table, averaging: &'static str, ugm3: Option<f64>) -> Option<SubIndex> {
    let concentration = ugm3?;
    let aqi = index_for_canonical(table, concentration)?;
    Some(SubIndex {
        parameter: table.parameter(),
        table,
        averaging,
        concentration,
        aqi,
        category: Category::from_index(aqi),
    })
}

fn report(sub_indices: Vec<SubIndex>) -> Option<AqiReport> {
    let top = sub_indices.iter().max_by_key(|s| s.aqi)?;
    Some(AqiReport {
        aqi: top.aqi,
        category: top.category,
        dominant: top.parameter,
        sub_indices: sub_indices.clone(),
    })
}

/// The current ("latest") AQI as AirNow reports it hour by hour: PM by NowCast, O3 by its
/// 8-hour mean (or its 1-hour value when that is higher and at least 0.125 ppm), CO by its 8-hour
/// mean, NO2 and SO2 by the last hour.
pub fn latest(window: &HourlyWindow) -> Option<AqiReport> {
    let mut subs = Vec::new();
    for (p, table) in [
        (Parameter::Pm25, Table::Pm25_24h),
        (Parameter::Pm10, Table::Pm10_24h),
    ] {
        match window.hours(p).and_then(|h| nowcast(&h[..])) {
            Some(nc) => subs.extend(sub(table, "nowcast", Some(nc))),
            // A station that reports daily means has no NowCast; its day is the 24-hour mean.
            None => subs.extend(sub(table, "24h_mean", window.daily_means.get(&p).copied())),
        }
    }
    subs.extend(o3(window));
    subs.extend(sub(
        Table::Co_8h,
        "8h_mean",
        window.mean_of_last(Parameter::Co, 8),
    ));
    subs.extend(sub(Table::No2_1h, "1h", window.last_hour(Parameter::No2)));
    subs.extend(so2(window));
    report(subs)
}

/// The daily AQI of a 24-hour window: PM and SO2 (from 305 ppb) by their 24-hour mean, the
/// others as in [`latest`].
pub fn daily(window: &HourlyWindow) -> Option<AqiReport> {
    let mut subs = Vec::new();
    subs.extend(sub(
        Table::Pm25_24h,
        "24h_mean",
        window.mean_of_last(Parameter::Pm25, 24),
    ));
    subs.extend(sub(
        Table::Pm10_24h,
        "24h_mean",
        window.mean_of_last(Parameter::Pm10, 24),
    ));
    subs.extend(o3(window));
    subs.extend(sub(
        Table::Co_8h,
        "8h_mean",
        window.mean_of_last(Parameter::Co, 8),
    ));
    subs.extend(sub(Table::No2_1h, "1h", window.last_hour(Parameter::No2)));
    subs.extend(so2(window));
    report(subs)
}

fn o3(window: &HourlyWindow) -> Option<SubIndex> {
    let eight = window
        .mean_of_last(Parameter::O3, 8)
        .filter(|c| Table::O3_8h.in_table_unit(*c) <= 0.2004)
        .and_then(|c| sub(Table::O3_8h, "8h_mean", Some(c)));
    let one = sub(Table::O3_1h, "1h", window.last_hour(Parameter::O3));
    match (eight, one) {
        (Some(e), Some(o)) => Some(if o.aqi > e.aqi { o } else { e }),
        (e, o) => e.or(o),
    }
}

fn so2(window: &HourlyWindow) -> Option<SubIndex> {
    let hour = window.last_hour(Parameter::So2)?;
    if truncate(Table::So2_1h.in_table_unit(hour), 0) <= 304.0 {
        return sub(Table::So2_1h, "1h", Some(hour));
    }
    // Above 304 ppb the 1-hour table ends; EPA uses the 24-hour mean. Without a full day, the
    // hour itself stands in for it (it can only understate a day of such values by chance).
    let day = window.mean_of_last(Parameter::So2, 24).unwrap_or(hour);
    sub(
        Table::So2_24h,
        "24h_mean",
        Some(day.max(Table::So2_24h.to_canonical_floor())),
    )
}

impl Table {
    /// The lowest concentration of the SO2 24-hour table in µg/m³: a 24-hour mean below it after
    /// a 1-hour value above 304 ppb still reports the bottom of the 201–300 band.
    fn to_canonical_floor(self) -> f64 {
        crate::parameter::ppb_to_ugm3(
            self.rows()[0].0,
            Parameter::So2.molecular_weight().expect("gas"),
        )
    }
}

impl Table {
    /// The table whose categories a chart of `parameter`'s hourly values is drawn against: the
    /// one the latest view uses for it (PM's NowCast uses the 24-hour table, gases their short
    /// tables). `None` for what has no AQI.
    pub const fn for_charts(parameter: Parameter) -> Option<Table> {
        match parameter {
            Parameter::Pm25 => Some(Table::Pm25_24h),
            Parameter::Pm10 => Some(Table::Pm10_24h),
            Parameter::O3 => Some(Table::O3_8h),
            Parameter::Co => Some(Table::Co_8h),
            Parameter::So2 => Some(Table::So2_1h),
            Parameter::No2 => Some(Table::No2_1h),
            _ => None,
        }
    }

    /// The upper concentration of each category of the table, in canonical µg/m³: where the
    /// threshold lines of a chart go.
    pub fn category_upper_bounds(self) -> Vec<(Category, f64)> {
        let to_ugm3 = |c: f64| match self {
            Table::Pm25_24h | Table::Pm10_24h => c,
            Table::O3_8h | Table::O3_1h | Table::Co_8h => crate::parameter::ppb_to_ugm3(
                c * 1000.0,
                self.parameter().molecular_weight().expect("gas"),
            ),
            Table::So2_1h | Table::So2_24h | Table::No2_1h => {
                crate::parameter::ppb_to_ugm3(c, self.parameter().molecular_weight().expect("gas"))
            }
        };
        self.rows()
            .iter()
            .map(|&(_, hi, _, ihi)| (Category::from_index(ihi), to_ugm3(hi)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threshold lines sit where the index changes category: just above each upper bound
    /// the index is in the next category.
    #[test]
    fn category_bounds_in_ugm3_are_where_the_index_changes_category() {
        for parameter in [
            Parameter::Pm25,
            Parameter::Pm10,
            Parameter::O3,
            Parameter::Co,
            Parameter::So2,
            Parameter::No2,
        ] {
            let table = Table::for_charts(parameter).unwrap();
            let bounds = table.category_upper_bounds();
            assert!(bounds.len() >= 4, "{parameter}");
            for (category, ugm3) in &bounds[..bounds.len() - 1] {
                let at = index_for_canonical(table, *ugm3 * 0.999).unwrap();
                assert_eq!(Category::from_index(at), *category, "{parameter} at {ugm3}");
                // Past truncation to the table's decimals (4.4 ppm CO → 4.5).
                let above = index_for_canonical(table, *ugm3 * 1.03).unwrap();
                assert!(
                    Category::from_index(above) > *category,
                    "{parameter} above {ugm3}"
                );
            }
        }
        assert_eq!(
            Table::Pm25_24h.category_upper_bounds()[0],
            (Category::Good, 9.0)
        );
        assert!(Table::for_charts(Parameter::Temperature).is_none());
    }

    /// Every row of the 2024 table maps its low and high end to its index range, so the
    /// boundary between two categories falls exactly where EPA puts it.
    #[test]
    fn every_breakpoint_maps_to_its_index_bounds() {
        for table in [
            Table::Pm25_24h,
            Table::Pm10_24h,
            Table::O3_8h,
            Table::O3_1h,
            Table::Co_8h,
            Table::So2_1h,
            Table::So2_24h,
            Table::No2_1h,
        ] {
            for &(clo, chi, ilo, ihi) in table.rows() {
                assert_eq!(index_for(table, clo), Some(ilo), "{table:?} {clo}");
                assert_eq!(index_for(table, chi), Some(ihi), "{table:?} {chi}");
            }
        }
    }

    #[test]
    fn pm25_2024_boundaries() {
        assert_eq!(index_for(Table::Pm25_24h, 9.0), Some(50));
        assert_eq!(
            Category::from_index(index_for(Table::Pm25_24h, 9.0).unwrap()),
            Category::Good
        );
        // 9.05 truncates to 9.0: still Good. 9.1 is Moderate.
        assert_eq!(index_for(Table::Pm25_24h, 9.05), Some(50));
        assert_eq!(index_for(Table::Pm25_24h, 9.1), Some(51));
        assert_eq!(index_for(Table::Pm25_24h, 35.49), Some(100));
        assert_eq!(index_for(Table::Pm25_24h, 35.5), Some(101));
        assert_eq!(index_for(Table::Pm25_24h, 125.4), Some(200));
        assert_eq!(index_for(Table::Pm25_24h, 125.5), Some(201));
        assert_eq!(index_for(Table::Pm25_24h, 225.5), Some(301));
        // A worked example: 12.0 µg/m³ → (100−51)/(35.4−9.1)·(12.0−9.1)+51 = 56.4 → 56.
        assert_eq!(index_for(Table::Pm25_24h, 12.0), Some(56));
        // Beyond the index: the last segment extends, the category stays Hazardous.
        let beyond = index_for(Table::Pm25_24h, 500.0).unwrap();
        assert!(beyond > 500);
        assert_eq!(Category::from_index(beyond), Category::Hazardous);
    }

    #[test]
    fn other_pollutant_boundaries() {
        assert_eq!(index_for(Table::Pm10_24h, 54.9), Some(50));
        assert_eq!(index_for(Table::Pm10_24h, 55.0), Some(51));
        assert_eq!(index_for(Table::O3_8h, 0.0549), Some(50));
        assert_eq!(index_for(Table::O3_8h, 0.055), Some(51));
        assert_eq!(index_for(Table::O3_1h, 0.124), None);
        assert_eq!(index_for(Table::No2_1h, 100.0), Some(100));
        assert_eq!(index_for(Table::No2_1h, 101.0), Some(101));
        assert_eq!(index_for(Table::Co_8h, 4.4), Some(50));
        assert_eq!(index_for(Table::Co_8h, 4.5), Some(51));
        assert_eq!(index_for(Table::So2_1h, 75.0), Some(100));
        assert_eq!(index_for(Table::So2_1h, 76.0), Some(101));
        assert_eq!(index_for(Table::Pm25_24h, -1.0), None);
    }

    #[test]
    fn categories_have_epa_labels_and_colours() {
        assert_eq!(Category::from_index(50), Category::Good);
        assert_eq!(Category::from_index(51), Category::Moderate);
        assert_eq!(
            Category::from_index(101).label(),
            "Unhealthy for Sensitive Groups"
        );
        assert_eq!(Category::from_index(301), Category::Hazardous);
        assert_eq!(Category::Unhealthy.color(), "#ff0000");
    }

    #[test]
    fn nowcast_weights_recent_hours_by_min_over_max() {
        // Hours 30, 20, 40 (most recent first): w = 20/40 = 0.5 →
        // (30 + 0.5·20 + 0.25·40) / (1 + 0.5 + 0.25) = 50 / 1.75.
        let nc = nowcast(&[Some(30.0), Some(20.0), Some(40.0)]).unwrap();
        assert!((nc - 50.0 / 1.75).abs() < 1e-9, "{nc}");
        // Steady air: w = 1, a plain mean; a missing hour is skipped, not counted as zero.
        let steady = [Some(12.0), None, Some(12.0), Some(12.0)];
        assert_eq!(nowcast(&steady), Some(12.0));
        // Only the last 12 hours count.
        let mut long = vec![Some(10.0); 12];
        long.push(Some(1000.0));
        assert_eq!(nowcast(&long), Some(10.0));
    }

    #[test]
    fn nowcast_needs_two_of_the_last_three_hours_and_floors_the_weight() {
        let mut hours = vec![None, None, Some(10.0), Some(10.0)];
        assert_eq!(nowcast(&hours), None);
        hours[0] = Some(10.0);
        assert_eq!(nowcast(&hours), Some(10.0));
        // A sharp rise: w = 10/100 is floored to 0.5: (100 + 0.5·10)/(1 + 0.5) = 70.
        let rise = vec![Some(100.0), Some(10.0)];
        assert!((nowcast(&rise).unwrap() - 70.0).abs() < 1e-9);
    }

    fn window(p: Parameter, hourly_ugm3: &[f64]) -> HourlyWindow {
        let mut w = HourlyWindow::default();
        for (i, v) in hourly_ugm3.iter().enumerate() {
            w.set(p, i, *v);
        }
        w
    }

    #[test]
    fn station_aqi_is_the_highest_sub_index() {
        let mut w = window(Parameter::Pm25, &[40.0; 24]);
        // NO2 at 120 ppb (1-hour) → 105; PM2.5 at 40 µg/m³ → 112, so PM2.5 dominates.
        w.set(
            Parameter::No2,
            0,
            crate::parameter::ppb_to_ugm3(120.0, 46.0055),
        );
        let r = latest(&w).unwrap();
        assert_eq!(r.dominant, Parameter::Pm25);
        assert_eq!(r.aqi, 112);
        assert_eq!(r.sub_indices[1].aqi, 105);
        assert_eq!(r.category, Category::UnhealthyForSensitiveGroups);
        assert_eq!(r.sub_indices.len(), 2);
        let daily = daily(&w).unwrap();
        assert_eq!(daily.sub_indices[0].averaging, "24h_mean");
    }

    #[test]
    fn eight_hour_means_need_six_of_eight_hours() {
        let mut w = HourlyWindow::default();
        for h in 0..5 {
            w.set(Parameter::Co, h, 1000.0);
        }
        assert!(latest(&w).is_none());
        w.set(Parameter::Co, 5, 1000.0);
        let r = latest(&w).unwrap();
        assert_eq!(r.dominant, Parameter::Co);
        assert_eq!(r.sub_indices[0].averaging, "8h_mean");
    }

    #[test]
    fn high_one_hour_ozone_overrides_a_lower_eight_hour_index() {
        // 8-hour mean low, last hour at 0.170 ppm → 1-hour table (151–200).
        let ppm = |v: f64| crate::parameter::ppb_to_ugm3(v * 1000.0, 47.9982);
        let mut hours = vec![ppm(0.03); 24];
        hours[0] = ppm(0.170);
        let r = latest(&window(Parameter::O3, &hours)).unwrap();
        assert_eq!(r.sub_indices[0].table, Table::O3_1h);
        assert_eq!(r.category, Category::Unhealthy);
    }

    #[test]
    fn so2_above_304_ppb_uses_the_24_hour_table() {
        let ug = crate::parameter::ppb_to_ugm3(400.0, 64.066);
        let r = latest(&window(Parameter::So2, &[ug; 24])).unwrap();
        assert_eq!(r.sub_indices[0].table, Table::So2_24h);
        assert_eq!(r.category, Category::VeryUnhealthy);
    }

    /// EPA's Table 6 "Breakpoints for the AQI", written out by hand from the Technical
    /// Assistance Document for the Reporting of Daily Air Quality – the Air Quality Index (AQI),
    /// EPA-454/B-24-002, May 2024 (the PM2.5 NAAQS revision effective 2024-05-06, which also
    /// merged the two Hazardous rows into one 301–500 row), not read from `Table::rows`.
    /// Units as in the table: O3 and CO in ppm, SO2 and NO2 in ppb, PM in µg/m³. The O3 8-hour
    /// table ends at 0.200 ppm (higher values use the 1-hour table, note 2); the O3 1-hour
    /// table starts at 101; SO2 1-hour ends at 304 ppb, above which the 24-hour values define
    /// the index (note 4).
    const EPA_2024_TABLE_6: &[(Table, f64, f64, u32, u32)] = &[
        (Table::O3_8h, 0.000, 0.054, 0, 50),
        (Table::O3_8h, 0.055, 0.070, 51, 100),
        (Table::O3_8h, 0.071, 0.085, 101, 150),
        (Table::O3_8h, 0.086, 0.105, 151, 200),
        (Table::O3_8h, 0.106, 0.200, 201, 300),
        (Table::O3_1h, 0.125, 0.164, 101, 150),
        (Table::O3_1h, 0.165, 0.204, 151, 200),
        (Table::O3_1h, 0.205, 0.404, 201, 300),
        (Table::O3_1h, 0.405, 0.604, 301, 500),
        (Table::Pm25_24h, 0.0, 9.0, 0, 50),
        (Table::Pm25_24h, 9.1, 35.4, 51, 100),
        (Table::Pm25_24h, 35.5, 55.4, 101, 150),
        (Table::Pm25_24h, 55.5, 125.4, 151, 200),
        (Table::Pm25_24h, 125.5, 225.4, 201, 300),
        (Table::Pm25_24h, 225.5, 325.4, 301, 500),
        (Table::Pm10_24h, 0.0, 54.0, 0, 50),
        (Table::Pm10_24h, 55.0, 154.0, 51, 100),
        (Table::Pm10_24h, 155.0, 254.0, 101, 150),
        (Table::Pm10_24h, 255.0, 354.0, 151, 200),
        (Table::Pm10_24h, 355.0, 424.0, 201, 300),
        (Table::Pm10_24h, 425.0, 604.0, 301, 500),
        (Table::Co_8h, 0.0, 4.4, 0, 50),
        (Table::Co_8h, 4.5, 9.4, 51, 100),
        (Table::Co_8h, 9.5, 12.4, 101, 150),
        (Table::Co_8h, 12.5, 15.4, 151, 200),
        (Table::Co_8h, 15.5, 30.4, 201, 300),
        (Table::Co_8h, 30.5, 50.4, 301, 500),
        (Table::So2_1h, 0.0, 35.0, 0, 50),
        (Table::So2_1h, 36.0, 75.0, 51, 100),
        (Table::So2_1h, 76.0, 185.0, 101, 150),
        (Table::So2_1h, 186.0, 304.0, 151, 200),
        (Table::So2_24h, 305.0, 604.0, 201, 300),
        (Table::So2_24h, 605.0, 1004.0, 301, 500),
        (Table::No2_1h, 0.0, 53.0, 0, 50),
        (Table::No2_1h, 54.0, 100.0, 51, 100),
        (Table::No2_1h, 101.0, 360.0, 101, 150),
        (Table::No2_1h, 361.0, 649.0, 151, 200),
        (Table::No2_1h, 650.0, 1249.0, 201, 300),
        (Table::No2_1h, 1250.0, 2049.0, 301, 500),
    ];

    const ALL_TABLES: [Table; 8] = [
        Table::Pm25_24h,
        Table::Pm10_24h,
        Table::O3_8h,
        Table::O3_1h,
        Table::Co_8h,
        Table::So2_1h,
        Table::So2_24h,
        Table::No2_1h,
    ];

    /// Every row the code holds is the published row, in order, and no table has a row more
    /// or less than the published one.
    #[test]
    fn every_table_row_is_the_published_one() {
        assert_eq!(EPA_2024_TABLE_6.len(), 39);
        for table in ALL_TABLES {
            let published: Vec<Row> = EPA_2024_TABLE_6
                .iter()
                .filter(|(t, ..)| *t == table)
                .map(|&(_, clo, chi, ilo, ihi)| (clo, chi, ilo, ihi))
                .collect();
            let held = table.rows();
            assert_eq!(held.len(), published.len(), "{table:?}: number of rows");
            for (i, (got, want)) in held.iter().zip(&published).enumerate() {
                assert_eq!(got, want, "{table:?} row {i}");
            }
        }
    }

    /// The index at both edges of every category, as EPA's table gives it, plus one value
    /// between rows (truncated down into the lower row) for each table. Expected indices are
    /// written out, not computed.
    #[test]
    fn the_index_at_every_published_breakpoint_edge() {
        let cases: &[(Table, f64, u32)] = &[
            (Table::Pm25_24h, 0.0, 0),
            (Table::Pm25_24h, 9.0, 50),
            (Table::Pm25_24h, 9.09, 50),
            (Table::Pm25_24h, 9.1, 51),
            (Table::Pm25_24h, 35.4, 100),
            (Table::Pm25_24h, 35.5, 101),
            (Table::Pm25_24h, 55.4, 150),
            (Table::Pm25_24h, 55.5, 151),
            (Table::Pm25_24h, 125.4, 200),
            (Table::Pm25_24h, 125.5, 201),
            (Table::Pm25_24h, 225.4, 300),
            (Table::Pm25_24h, 225.5, 301),
            (Table::Pm25_24h, 325.4, 500),
            (Table::Pm10_24h, 54.0, 50),
            (Table::Pm10_24h, 54.9, 50),
            (Table::Pm10_24h, 55.0, 51),
            (Table::Pm10_24h, 154.0, 100),
            (Table::Pm10_24h, 155.0, 101),
            (Table::Pm10_24h, 254.0, 150),
            (Table::Pm10_24h, 255.0, 151),
            (Table::Pm10_24h, 354.0, 200),
            (Table::Pm10_24h, 355.0, 201),
            (Table::Pm10_24h, 424.0, 300),
            (Table::Pm10_24h, 425.0, 301),
            (Table::Pm10_24h, 604.0, 500),
            (Table::O3_8h, 0.054, 50),
            (Table::O3_8h, 0.0549, 50),
            (Table::O3_8h, 0.055, 51),
            (Table::O3_8h, 0.070, 100),
            (Table::O3_8h, 0.071, 101),
            (Table::O3_8h, 0.085, 150),
            (Table::O3_8h, 0.086, 151),
            (Table::O3_8h, 0.105, 200),
            (Table::O3_8h, 0.106, 201),
            (Table::O3_8h, 0.200, 300),
            (Table::O3_1h, 0.125, 101),
            (Table::O3_1h, 0.164, 150),
            (Table::O3_1h, 0.165, 151),
            (Table::O3_1h, 0.204, 200),
            (Table::O3_1h, 0.205, 201),
            (Table::O3_1h, 0.404, 300),
            (Table::O3_1h, 0.405, 301),
            (Table::O3_1h, 0.604, 500),
            (Table::Co_8h, 4.4, 50),
            (Table::Co_8h, 4.49, 50),
            (Table::Co_8h, 4.5, 51),
            (Table::Co_8h, 9.4, 100),
            (Table::Co_8h, 9.5, 101),
            (Table::Co_8h, 12.4, 150),
            (Table::Co_8h, 12.5, 151),
            (Table::Co_8h, 15.4, 200),
            (Table::Co_8h, 15.5, 201),
            (Table::Co_8h, 30.4, 300),
            (Table::Co_8h, 30.5, 301),
            (Table::Co_8h, 50.4, 500),
            (Table::So2_1h, 35.0, 50),
            (Table::So2_1h, 35.9, 50),
            (Table::So2_1h, 36.0, 51),
            (Table::So2_1h, 75.0, 100),
            (Table::So2_1h, 76.0, 101),
            (Table::So2_1h, 185.0, 150),
            (Table::So2_1h, 186.0, 151),
            (Table::So2_1h, 304.0, 200),
            (Table::So2_24h, 305.0, 201),
            (Table::So2_24h, 604.0, 300),
            (Table::So2_24h, 605.0, 301),
            (Table::So2_24h, 1004.0, 500),
            (Table::No2_1h, 53.0, 50),
            (Table::No2_1h, 53.9, 50),
            (Table::No2_1h, 54.0, 51),
            (Table::No2_1h, 100.0, 100),
            (Table::No2_1h, 101.0, 101),
            (Table::No2_1h, 360.0, 150),
            (Table::No2_1h, 361.0, 151),
            (Table::No2_1h, 649.0, 200),
            (Table::No2_1h, 650.0, 201),
            (Table::No2_1h, 1249.0, 300),
            (Table::No2_1h, 1250.0, 301),
            (Table::No2_1h, 2049.0, 500),
        ];
        for &(table, concentration, aqi) in cases {
            assert_eq!(
                index_for(table, concentration),
                Some(aqi),
                "{table:?} at {concentration}"
            );
        }
        // Inside a row, by hand: PM10 100 µg/m³ → (100−51)/(154−55)·(100−55)+51 = 73.27 → 73;
        // CO 6.0 ppm → (100−51)/(9.4−4.5)·(6.0−4.5)+51 = 66; NO2 200 ppb →
        // (150−101)/(360−101)·(200−101)+101 = 119.73 → 120; PM2.5 275.0 →
        // (500−301)/(325.4−225.5)·(275.0−225.5)+301 = 399.6 → 400.
        assert_eq!(index_for(Table::Pm10_24h, 100.0), Some(73));
        assert_eq!(index_for(Table::Co_8h, 6.0), Some(66));
        assert_eq!(index_for(Table::No2_1h, 200.0), Some(120));
        assert_eq!(index_for(Table::Pm25_24h, 275.0), Some(400));
    }
}
