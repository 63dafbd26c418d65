//! Air-quality indices: the US EPA AQI (2024 breakpoints) and the European Air Quality Index
//! of the EEA. Both take hourly averages in canonical units (µg/m³) and apply their agency's own
//! averaging rules; the input is [`HourlyWindow`], the last 24 hourly values of each pollutant.

pub mod eaqi;
pub mod us_epa;

use std::collections::HashMap;

use crate::parameter::Parameter;

/// The last 24 hourly averages of each pollutant at one station, most recent hour first
/// (`values[p][0]` is the hour that ends at the window's end). `None` marks a missing hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourlyWindow {
    pub values: HashMap<Parameter, [Option<f64>; 24]>,
}

impl HourlyWindow {
    pub fn set(&mut self, parameter: Parameter, hours_ago: usize, value: f64) {
        if hours_ago < 24 {
            self.values.entry(parameter).or_insert([None; 24])[hours_ago] = Some(value);
        }
    }

    pub fn hours(&self, parameter: Parameter) -> Option<&[Option<f64>; 24]> {
        self.values.get(&parameter)
    }

    /// The mean of the most recent `n` hours if at least 75 % of them are present.
    pub fn mean_of_last(&self, parameter: Parameter, n: usize) -> Option<f64> {
        let hours = self.hours(parameter)?;
        let present: Vec<f64> = hours[..n].iter().flatten().copied().collect();
        (present.len() * 4 >= n * 3).then(|| present.iter().sum::<f64>() / present.len() as f64)
    }

    /// The most recent hour, if present.
    pub fn last_hour(&self, parameter: Parameter) -> Option<f64> {
        self.hours(parameter)?[0]
    }
}
