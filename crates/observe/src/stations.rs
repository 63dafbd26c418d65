//! Station health for metrics and alarms: which active stations have gone silent.

use chrono::{DateTime, Utc};
use ecocityhub_domain::StationId;
use ecocityhub_store::Store;
use std::collections::HashMap;

use crate::Result;

/// Active stations whose newest reading is older than `silent_after` seconds but not older than
/// `forgotten_after` seconds (a station silent for longer is retired, not an incident; the demo
/// city's historical stations are all in that case).
pub async fn silent_stations(
    store: &dyn Store,
    now: DateTime<Utc>,
    silent_after: i64,
    forgotten_after: i64,
) -> Result<Vec<StationId>> {
    let mut newest: HashMap<StationId, DateTime<Utc>> = HashMap::new();
    for s in store.series().await? {
        if let Some(last) = s.last {
            let e = newest.entry(s.station).or_insert(last);
            *e = (*e).max(last);
        }
    }
    let mut silent: Vec<StationId> = store
        .stations()
        .await?
        .into_iter()
        .filter(|s| s.active)
        .filter_map(|s| {
            let age = (now - *newest.get(&s.id)?).num_seconds();
            (age > silent_after && age <= forgotten_after).then_some(s.id)
        })
        .collect();
    silent.sort();
    Ok(silent)
}
