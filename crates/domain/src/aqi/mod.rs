//! Air-quality indices: the US EPA AQI (2024 breakpoints) and the European Air Quality Index
//! of the EEA. Both take hourly averages in canonical units (µg/m³) and apply their agency's own
//! averaging rules; the input is [`HourlyWindow`], the last 24 hourly values of each pollutant.

pub mod eaqi;
pub mod us_epa;

use std::collections::HashMap;

use crate::parameter::Parameter;
use crate::reading::QualityFlag;

/// The last 24 hourly averages of each pollutant at one station, most recent hour first
/// (`values[p][0]` is the hour that ends at the window's end). `None` marks a missing hour.
///
/// Series that are reported as daily means (a sampling period of a day, like the German
/// AirBase network) give their latest value in `daily_means` instead; it stands for the 24-hour
/// mean wherever an index asks for one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourlyWindow {
    pub values: HashMap<Parameter, [Option<f64>; 24]>,
    pub daily_means: HashMap<Parameter, f64>,
}

impl HourlyWindow {
    /// Builds the window whose most recent hour is the one holding `end` (epoch seconds) from
    /// raw readings of any spacing: readings are averaged per hour, suspect and invalid ones left out.
    pub fn from_readings(
        end: i64,
        readings: impl IntoIterator<Item = (Parameter, i64, f64, QualityFlag)>,
    ) -> Self {
        let end_hour = end.div_euclid(3600);
        let mut sums: HashMap<(Parameter, usize), (f64, u32)> = HashMap::new();
        for (p, ts, v, flag) in readings {
            let ago = end_hour - ts.div_euclid(3600);
            if !flag.counts() || !(0..24).contains(&ago) {
                continue;
            }
            let e = sums.entry((p, ago as usize)).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
        let mut w = HourlyWindow::default();
        for ((p, ago), (sum, n)) in sums {
            w.set(p, ago, sum / n as f64);
        }
        w
    }

    pub fn set(&mut self, parameter: Parameter, hours_ago: usize, value: f64) {
        if hours_ago < 24 {
            self.values.entry(parameter).or_insert([None; 24])[hours_ago] = Some(value);
        }
    }

    pub fn hours(&self, parameter: Parameter) -> Option<&[Option<f64>; 24]> {
        self.values.get(&parameter)
    }

    /// The mean of the most recent `n` hours if at least 75 % of them are present (for
    /// `n = 24`, a reported daily mean serves).
    pub fn mean_of_last(&self, parameter: Parameter, n: usize) -> Option<f64> {
        if n == 24 {
            if let Some(daily) = self.daily_means.get(&parameter) {
                return Some(*daily);
            }
        }
        let hours = self.hours(parameter)?;
        let present: Vec<f64> = hours[..n].iter().flatten().copied().collect();
        (present.len() * 4 >= n * 3).then(|| present.iter().sum::<f64>() / present.len() as f64)
    }

    /// The most recent hour, if present.
    pub fn last_hour(&self, parameter: Parameter) -> Option<f64> {
        self.hours(parameter)?[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_averaged_per_hour_back_from_the_end_without_doubtful_ones() {
        let end = 10 * 3600 + 1800;
        let w = HourlyWindow::from_readings(
            end,
            [
                (Parameter::Pm25, 10 * 3600, 10.0, QualityFlag::Valid),
                (Parameter::Pm25, 10 * 3600 + 900, 20.0, QualityFlag::Valid),
                (
                    Parameter::Pm25,
                    10 * 3600 + 1200,
                    480.0,
                    QualityFlag::Suspect,
                ),
                (Parameter::Pm25, 9 * 3600, 99.0, QualityFlag::Invalid),
                (Parameter::Pm25, 8 * 3600, 7.0, QualityFlag::Valid),
                (Parameter::Pm25, -20 * 3600, 1.0, QualityFlag::Valid),
            ],
        );
        let h = w.hours(Parameter::Pm25).unwrap();
        assert_eq!(h[0], Some(15.0));
        assert_eq!(h[1], None);
        assert_eq!(h[2], Some(7.0));
        assert_eq!(h.iter().flatten().count(), 2);
    }

    #[test]
    fn a_daily_mean_serves_as_the_24_hour_mean() {
        let mut w = HourlyWindow::default();
        w.daily_means.insert(Parameter::Pm10, 30.0);
        assert_eq!(w.mean_of_last(Parameter::Pm10, 24), Some(30.0));
        assert_eq!(w.mean_of_last(Parameter::Pm10, 8), None);
    }
}
