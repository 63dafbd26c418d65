//! The two indices side by side: the US EPA AQI and the EEA's European Air Quality Index are
//! built from different pollutants, averaged over different periods, on different bands, so
//! one can say "Moderate" while the other says "Very poor". When they disagree notably
//! ([`NOTABLE_STEPS`] categories or more apart) the pages say why in one sentence and which
//! index the city has chosen as its headline ([`crate::HeadlineIndex`]).

use ecocityhub_domain::aqi::eaqi::{EaqiReport, Level};
use ecocityhub_domain::aqi::us_epa::{AqiReport, Category};

use crate::HeadlineIndex;

/// How many of their six categories apart the two indices must be to be explained ("Moderate"
/// against "Very poor" is three).
pub const NOTABLE_STEPS: u8 = 2;

/// A US AQI category's step: 0 (Good) … 5 (Hazardous).
pub fn us_step(c: Category) -> u8 {
    match c {
        Category::Good => 0,
        Category::Moderate => 1,
        Category::UnhealthyForSensitiveGroups => 2,
        Category::Unhealthy => 3,
        Category::VeryUnhealthy => 4,
        Category::Hazardous => 5,
    }
}

/// A European index level's step: 0 (Good) … 5 (Extremely poor).
pub fn eu_step(level: Level) -> u8 {
    level.number().saturating_sub(1)
}

/// An averaging code of the indices in words.
fn averaging(code: &str) -> String {
    match code {
        "nowcast" => "as a weighted average of the last 12 hours (NowCast)".into(),
        "24h_mean" => "as the mean of a day".into(),
        "24h_running_mean" => "as the mean of the last 24 hours".into(),
        "8h_mean" => "as the mean of the last 8 hours".into(),
        "1h" => "over the last hour".into(),
        other => format!("over {}", other.replace('_', " ")),
    }
}

/// What drives the US AQI: its dominant pollutant and how that one is averaged.
fn us_driver(us: &AqiReport) -> (String, String) {
    let averaging_code = us
        .sub_indices
        .iter()
        .filter(|s| s.parameter == us.dominant)
        .max_by_key(|s| s.aqi)
        .map_or("", |s| s.averaging);
    (
        us.dominant.display_name().to_string(),
        averaging(averaging_code),
    )
}

/// What drives the European index: its dominant pollutant and how that one is averaged.
fn eu_driver(eu: &EaqiReport) -> (String, String) {
    let averaging_code = eu
        .sub_levels
        .iter()
        .filter(|s| s.parameter == eu.dominant)
        .max_by_key(|s| s.level.number())
        .map_or("", |s| s.averaging);
    (
        eu.dominant.display_name().to_string(),
        averaging(averaging_code),
    )
}

/// Why the two indices disagree, and the city's headline index — `None` unless they are at
/// least [`NOTABLE_STEPS`] apart.
pub fn explain(us: &AqiReport, eu: &EaqiReport, headline: HeadlineIndex) -> Option<String> {
    if us_step(us.category).abs_diff(eu_step(eu.level)) < NOTABLE_STEPS {
        return None;
    }
    let (us_p, us_avg) = us_driver(us);
    let (eu_p, eu_avg) = eu_driver(eu);
    let how = if (&us_p, &us_avg) == (&eu_p, &eu_avg) {
        format!("here both follow {us_p} {us_avg}, but each on the bands of its own agency")
    } else {
        format!(
            "here the US AQI follows {us_p} {us_avg} and the European index follows {eu_p} \
             {eu_avg}, each on the bands of its own agency"
        )
    };
    Some(format!(
        "The US AQI says “{}” and the European index “{}” because they are built differently: \
         {how}. This city has chosen {} as its headline index.",
        us.category.label(),
        eu.label,
        headline.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecocityhub_domain::aqi::{eaqi, us_epa, HourlyWindow};
    use ecocityhub_domain::{Parameter, QualityFlag};

    /// A day of PM2.5 at 20 µg/m³ and NO₂ at 300 µg/m³ in the last hour.
    fn window() -> HourlyWindow {
        let hours = (0..24).map(|h| (Parameter::Pm25, h * 3_600, 20.0, QualityFlag::Valid));
        let no2 = std::iter::once((Parameter::No2, 23 * 3_600, 300.0, QualityFlag::Valid));
        HourlyWindow::from_readings(23 * 3_600, hours.chain(no2))
    }

    #[test]
    fn a_notable_disagreement_is_explained_with_the_headline() {
        let w = window();
        let us = us_epa::latest(&w).unwrap();
        let eu = eaqi::latest(&w).unwrap();
        let text = explain(&us, &eu, HeadlineIndex::UsAqi).expect("they disagree");
        assert!(
            text.contains(us.category.label()) && text.contains(eu.label),
            "{text}"
        );
        assert!(
            text.contains("built differently") && text.contains("bands"),
            "{text}"
        );
        assert!(
            text.contains("both follow Nitrogen dioxide (NO₂) over the last hour"),
            "{text}"
        );
        assert!(
            text.ends_with("This city has chosen the US AQI as its headline index."),
            "{text}"
        );
        let eu_first = explain(&us, &eu, HeadlineIndex::Eaqi).unwrap();
        assert!(eu_first.ends_with("chosen the European index as its headline index."));
    }

    #[test]
    fn indices_a_category_apart_need_no_explaining() {
        assert_eq!(us_step(Category::Moderate), 1);
        assert_eq!(eu_step(Level::VeryPoor), 4);
        let hours = (0..24).map(|h| (Parameter::Pm25, h * 3_600, 3.0, QualityFlag::Valid));
        let w = HourlyWindow::from_readings(23 * 3_600, hours);
        let (us, eu) = (us_epa::latest(&w).unwrap(), eaqi::latest(&w).unwrap());
        assert_eq!(explain(&us, &eu, HeadlineIndex::UsAqi), None);
    }
}
