//! The demo city: a real-data subset shipped in the binary (see `demo/README.md` for sources
//! and licences) that a first `serve` on an empty store loads, so a newcomer sees real stations
//! with real readings at once.
//!
//! In replay mode each file's time axis is shifted by whole hours (whole days for daily means)
//! so that its last reading falls in the current hour (day); such stations carry `"replay"` in
//! their metadata, and the API shows it.

use anyhow::Result;
use chrono::{DateTime, Utc};
use ecocityhub_domain::reading::parse_time;
use ecocityhub_domain::Station;
use ecocityhub_store::Store;
use serde_json::json;

use crate::import::{self, ImportOptions, ImportReport};

/// The known sites of the shared data sets, with coordinates and names.
pub const STATIONS_CSV: &str = include_str!("../demo/stations.csv");

/// (file name, contents)
pub const FILES: [(&str, &str); 4] = [
    (
        "london-marylebone-2004q4.csv",
        include_str!("../demo/london-marylebone-2004q4.csv"),
    ),
    (
        "beijing-pm25-2013q4.csv",
        include_str!("../demo/beijing-pm25-2013q4.csv"),
    ),
    (
        "germany-pm10-2008h2.csv",
        include_str!("../demo/germany-pm10-2008h2.csv"),
    ),
    (
        "nyc-weather-2013q4.csv",
        include_str!("../demo/nyc-weather-2013q4.csv"),
    ),
];

/// The stations known to the importer.
pub fn known_stations() -> Vec<Station> {
    import::parse_stations(STATIONS_CSV).expect("the shipped stations file is valid")
}

/// The last timestamp of a file in the common layout (sorted by site, then time: scan all),
/// and the whole number of seconds to move by: hours, or days for a file of daily means (every
/// time at midnight), so that the replay keeps the data's own clock.
fn last_time_and_step(csv: &str) -> Option<(DateTime<Utc>, i64)> {
    let times: Vec<DateTime<Utc>> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .filter_map(|t| parse_time(t).ok())
        .collect();
    let daily = times.iter().all(|t| t.timestamp() % 86_400 == 0);
    Some((*times.iter().max()?, if daily { 86_400 } else { 3_600 }))
}

/// Loads the demo data. With `replay`, every file is shifted to end in the current hour (daily
/// means: today).
pub async fn load(store: &dyn Store, replay: bool) -> Result<Vec<(&'static str, ImportReport)>> {
    let known = known_stations();
    let now = Utc::now();
    let mut reports = Vec::new();
    for (name, text) in FILES {
        let mut opts = ImportOptions::default();
        if replay {
            if let Some((last, step)) = last_time_and_step(text) {
                // The newest reading lands in the current hour (day, for daily means).
                let shift = (now - last).num_seconds().div_euclid(step) * step;
                opts.shift_seconds = shift;
                opts.station_metadata = json!({
                    "replay": {"source": name, "shifted_by_hours": shift / 3_600,
                               "note": "historical data replayed on today's calendar; not live measurements"}
                });
            }
        } else {
            opts.station_metadata = json!({"demo": {"source": name}});
        }
        let report = import::import(
            store,
            std::io::Cursor::new(text.as_bytes()),
            None,
            &known,
            &opts,
        )
        .await?;
        tracing::info!(
            file = name,
            stored = report.stored,
            stations = report.stations_created.len(),
            replay,
            "demo data loaded"
        );
        reports.push((name, report));
    }
    Ok(reports)
}
