//! Replays said as replays on every page. A station whose readings are historical data shifted
//! onto today's calendar (`serve --replay`) carries `{"replay": {"note": …}}` in its metadata,
//! as the station pages have always read it; [`ReplayState`] keeps, for every page's banner,
//! whether any active station does (looked up again every [`REFRESH`]), and the home and
//! station pages say it for their own stations.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ecocityhub_domain::Station;

use crate::WebState;

/// How long the banner's answer is kept before the stations are read again.
pub const REFRESH: Duration = Duration::from_secs(10);

/// The station's replay note, if its readings are a replay.
pub fn station_note(station: &Station) -> Option<&str> {
    station
        .metadata
        .pointer("/replay/note")
        .and_then(|v| v.as_str())
}

/// The banner of a page showing `stations`: `None` unless some are replays.
pub fn banner<'a>(stations: impl IntoIterator<Item = &'a Station>) -> Option<String> {
    let mut total = 0;
    let mut notes = Vec::new();
    for s in stations.into_iter().filter(|s| s.active) {
        total += 1;
        notes.extend(station_note(s));
    }
    let note = notes.first()?;
    Some(if notes.len() == total {
        format!("Replay: {note}.")
    } else {
        format!("Replay at {} of {total} stations: {note}.", notes.len())
    })
}

/// Whether the site shows a replay, for the banner of every page.
#[derive(Default)]
pub struct ReplayState {
    inner: Mutex<Option<(Instant, Option<String>)>>,
}

impl ReplayState {
    /// The banner as last looked up.
    pub fn banner(&self) -> Option<String> {
        self.inner
            .lock()
            .expect("not poisoned")
            .as_ref()
            .and_then(|(_, b)| b.clone())
    }

    fn fresh(&self) -> bool {
        self.inner
            .lock()
            .expect("not poisoned")
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < REFRESH)
    }

    /// Looks the stations up again when the last answer is older than [`REFRESH`]; a store
    /// that does not answer keeps the last one.
    pub async fn refresh(&self, web: &WebState) {
        if self.fresh() {
            return;
        }
        match web.app.store().stations().await {
            Ok(stations) => {
                *self.inner.lock().expect("not poisoned") =
                    Some((Instant::now(), banner(&stations)));
            }
            Err(e) => tracing::debug!(error = %e, "replay banner not refreshed"),
        }
    }
}

/// Middleware of the pages: the replay banner is current before the page is drawn.
pub async fn refresh(State(web): State<WebState>, request: Request, next: Next) -> Response {
    web.replay.refresh(&web).await;
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecocityhub_domain::{GeoPoint, StationId};

    fn station(id: &str, replay: bool) -> Station {
        let mut s = Station::new(
            StationId::parse(id).unwrap(),
            id.to_string(),
            GeoPoint::new(51.5, -0.1).unwrap(),
            None,
            "Europe/London",
        )
        .unwrap();
        if replay {
            s.metadata = serde_json::json!({"replay": {"note": "historical data replayed"}});
        }
        s
    }

    #[test]
    fn the_banner_says_replay_and_how_much_of_the_network_it_is() {
        assert_eq!(banner(&[station("a", false)]), None);
        let all = [station("a", true), station("b", true)];
        assert_eq!(
            banner(&all).as_deref(),
            Some("Replay: historical data replayed.")
        );
        let some = [station("a", true), station("b", false)];
        assert_eq!(
            banner(&some).as_deref(),
            Some("Replay at 1 of 2 stations: historical data replayed.")
        );
    }
}
