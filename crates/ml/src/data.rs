//! Reading a station's history out of the store as hourly series: the pollutant to forecast and
//! the station's own weather.

use ecocityhub_domain::{Parameter, StationId};
use ecocityhub_store::{Store, StoreError};

use crate::features::Weather;
use crate::series::HourlySeries;

/// The parameters forecasts are made for.
pub const FORECASTABLE: [Parameter; 6] = [
    Parameter::Pm25,
    Parameter::Pm10,
    Parameter::No2,
    Parameter::O3,
    Parameter::So2,
    Parameter::Co,
];

/// At most this many readings are read per series (ten years of hourly values).
const MAX_READINGS: u32 = 90_000;

/// One series in `[from, to)` as an hourly series; readings flagged invalid are left out.
pub async fn load_series(
    store: &dyn Store,
    station: &StationId,
    parameter: Parameter,
    from: i64,
    to: i64,
) -> Result<HourlySeries, StoreError> {
    let points = store
        .readings(station, parameter, from, to, MAX_READINGS)
        .await?;
    Ok(HourlySeries::from_points(
        points
            .into_iter()
            .filter(|p| p.flag.counts())
            .map(|p| (p.ts, p.value)),
    ))
}

/// The station's weather series in `[from, to)`; those it does not measure stay `None`.
pub async fn load_weather(
    store: &dyn Store,
    station: &StationId,
    from: i64,
    to: i64,
) -> Result<Weather, StoreError> {
    let measured: Vec<Parameter> = store
        .series()
        .await?
        .into_iter()
        .filter(|s| &s.station == station)
        .map(|s| s.parameter)
        .collect();
    let mut weather = Weather::default();
    for parameter in measured {
        if weather.slot_mut(parameter).is_some() {
            let series = load_series(store, station, parameter, from, to).await?;
            *weather.slot_mut(parameter).expect("a weather parameter") = Some(series);
        }
    }
    Ok(weather)
}
