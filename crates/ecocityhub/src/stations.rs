//! `ecocityhub station …`: create, edit and list stations from the command line, so that a
//! new station exists (and `device create` works for it) before any data is imported. Changes
//! are audited as `CreateStation` and `UpdateStation`.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ecocityhub_domain::{GeoPoint, Station, StationId};
use ecocityhub_store::Store;
use serde_json::json;

use crate::audit;

#[derive(Subcommand)]
pub enum StationCommand {
    /// Create a station (refused if the id exists; use `station edit`).
    Create {
        /// The station's id: lower-case letters, digits, `_` and `-`.
        #[arg(long)]
        id: String,
        /// The name people see.
        #[arg(long)]
        name: String,
        /// Latitude in degrees (−90 to 90).
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        /// Longitude in degrees (−180 to 180).
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// District, borough or region.
        #[arg(long)]
        area: Option<String>,
        /// IANA time zone of the station's city (`Europe/London`).
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
    /// Change a station's name, place, area, time zone or whether it is active.
    Edit {
        /// The station's id.
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new latitude in degrees (−90 to 90).
        #[arg(long, allow_hyphen_values = true)]
        lat: Option<f64>,
        /// A new longitude in degrees (−180 to 180).
        #[arg(long, allow_hyphen_values = true)]
        lon: Option<f64>,
        /// A new district, borough or region (empty: none).
        #[arg(long)]
        area: Option<String>,
        /// A new IANA time zone (`Europe/London`).
        #[arg(long)]
        timezone: Option<String>,
        /// `true` or `false`: inactive stations leave the map and the latest view.
        #[arg(long)]
        active: Option<bool>,
    },
    /// List the stations.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: StationCommand, store: &Arc<dyn Store>) -> Result<()> {
    match command {
        StationCommand::Create {
            id,
            name,
            lat,
            lon,
            area,
            timezone,
        } => {
            let id = StationId::parse(&id)?;
            if store.station(&id).await?.is_some() {
                bail!("station {id} exists already; change it with `ecocityhub station edit {id}`");
            }
            let station = Station::new(id, name, GeoPoint::new(lat, lon)?, area, timezone)?;
            store.upsert_station(&station).await?;
            let event = audit::event("CreateStation").parameters(json!(station));
            audit::record(store, event).await?;
            println!("created station {}", station.id);
            Ok(())
        }
        StationCommand::Edit {
            id,
            name,
            lat,
            lon,
            area,
            timezone,
            active,
        } => {
            let id = StationId::parse(&id)?;
            let mut station = store.station(&id).await?.with_context(|| {
                format!("there is no station {id}; see `ecocityhub station list`")
            })?;
            let before = json!(station);
            if let Some(name) = name {
                station.name = name;
            }
            station.location = GeoPoint::new(
                lat.unwrap_or(station.location.lat),
                lon.unwrap_or(station.location.lon),
            )?;
            if let Some(area) = area {
                station.area = Some(area).filter(|a| !a.trim().is_empty());
            }
            if let Some(tz) = timezone {
                station.timezone = tz;
            }
            if let Some(active) = active {
                station.active = active;
            }
            station.validate()?;
            store.upsert_station(&station).await?;
            let event = audit::event("UpdateStation")
                .parameters(json!({"before": before, "after": station}));
            audit::record(store, event).await?;
            println!("updated station {}", station.id);
            Ok(())
        }
        StationCommand::List { json } => list(store, json).await,
    }
}

async fn list(store: &Arc<dyn Store>, as_json: bool) -> Result<()> {
    let stations = store.stations().await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&stations)?);
        return Ok(());
    }
    println!("id\tname\tlat\tlon\tarea\ttimezone\tactive");
    for s in stations {
        println!(
            "{}\t{}\t{:.5}\t{:.5}\t{}\t{}\t{}",
            s.id,
            s.name,
            s.location.lat,
            s.location.lon,
            s.area.as_deref().unwrap_or("-"),
            s.timezone,
            s.active
        );
    }
    Ok(())
}
