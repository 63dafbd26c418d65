//! The glue that runs the pure rules on live data, cheaply: rules are indexed by the stations
//! they watch (an area rule by every station in its radius), and an ingest batch only touches
//! the series of watched stations. Each watched station keeps its last 24 hourly means in
//! memory (primed from the store once), from which the US AQI is computed as the latest view
//! does (NowCast for PM). A rule's state change, its episode and its messages commit together
//! ([`NotifyStore::record_episode`]). Operator alarms (silent stations, anomaly bursts) and
//! daily digests run from periodic calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ecocityhub_domain::aqi::{us_epa, HourlyWindow};
use ecocityhub_domain::{GeoPoint, Parameter, Reading, Station};
use ecocityhub_store::notify::{
    AlertRuleRow, EpisodeChange, EpisodeNotice, EpisodeRow, NewDelivery, SubscriptionRow,
};
use ecocityhub_store::{Store, StoreError};
use serde_json::json;
use tokio::sync::Mutex;

use crate::alarms::{self, AlarmConfig, SeriesSeen};
use crate::message::{Message, Topic};
use crate::notifier::{deliveries_for, Notifier, NotifyError, NotifyResult, PublishReceipt};
use crate::rules::{self, Measure, Observation, RuleEvent, RuleSpec, RuleState, Target, Trigger};

/// The window the indices need, as in the latest view.
const WINDOW_S: i64 = 24 * 3600;

/// What one evaluation did (for tests and the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvalStats {
    /// Readings of watched stations.
    pub watched_readings: usize,
    pub stations_evaluated: usize,
    pub rules_evaluated: usize,
    pub events: usize,
}

struct LoadedRule {
    row: AlertRuleRow,
    spec: RuleSpec,
    state: RuleState,
    /// The stations it watches (an area's, found once at load).
    stations: Vec<String>,
}

/// One station's recent hourly means per pollutant and its newest daily means.
#[derive(Default)]
struct StationWindow {
    hours: HashMap<Parameter, BTreeMap<i64, (f64, u32)>>,
    daily: HashMap<Parameter, (i64, f64)>,
    newest: i64,
}

impl StationWindow {
    fn add(&mut self, p: Parameter, ts: i64, value: f64, daily: bool) {
        if !p.is_pollutant() {
            return;
        }
        if daily {
            let e = self.daily.entry(p).or_insert((ts, value));
            if ts >= e.0 {
                *e = (ts, value);
            }
        } else {
            let e = self
                .hours
                .entry(p)
                .or_default()
                .entry(ts.div_euclid(3600))
                .or_insert((0.0, 0));
            e.0 += value;
            e.1 += 1;
        }
        self.newest = self.newest.max(ts);
    }

    fn trim(&mut self) {
        let oldest_hour = (self.newest - WINDOW_S).div_euclid(3600);
        for buckets in self.hours.values_mut() {
            while buckets
                .first_key_value()
                .is_some_and(|(h, _)| *h <= oldest_hour)
            {
                buckets.pop_first();
            }
        }
    }

    fn window(&self) -> HourlyWindow {
        let end_hour = self.newest.div_euclid(3600);
        let mut w = HourlyWindow::default();
        for (p, buckets) in &self.hours {
            for (hour, (sum, n)) in buckets {
                let ago = end_hour - hour;
                if (0..24).contains(&ago) {
                    w.set(*p, ago as usize, sum / f64::from(*n));
                }
            }
        }
        for (p, (ts, v)) in &self.daily {
            if self.newest - ts < 86_400 {
                w.daily_means.insert(*p, *v);
            }
        }
        w
    }
}

/// The current index of a station: (AQI, sub-index per pollutant) at the data time `ts`.
#[derive(Debug, Clone)]
struct StationIndex {
    ts: i64,
    report: us_epa::AqiReport,
}

impl StationIndex {
    fn observe(&self, measure: Measure) -> Option<Observation> {
        let aqi = match measure {
            Measure::Aqi => self.report.aqi,
            Measure::Pollutant(p) => {
                self.report
                    .sub_indices
                    .iter()
                    .find(|s| s.parameter == p)?
                    .aqi
            }
        };
        Some(Observation {
            ts: self.ts,
            aqi,
            category: us_epa::Category::from_index(aqi),
        })
    }
}

#[derive(Default)]
struct EngineState {
    rules: HashMap<String, LoadedRule>,
    /// Station id → the rules that watch it.
    by_station: HashMap<String, Vec<String>>,
    stations: HashMap<String, Station>,
    /// Station id → its series of daily means.
    daily_series: HashMap<String, BTreeSet<Parameter>>,
    windows: HashMap<String, StationWindow>,
    current: HashMap<String, StationIndex>,
}

/// Runs the rules and alarms.
pub struct RuleEngine {
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    alarms: AlarmConfig,
    state: Mutex<EngineState>,
}

fn stations_of(spec: &RuleSpec, stations: &HashMap<String, Station>) -> Vec<String> {
    match &spec.target {
        Target::Station(id) => vec![id.clone()],
        Target::Area {
            lat,
            lon,
            radius_km,
        } => {
            let Ok(center) = GeoPoint::new(*lat, *lon) else {
                return Vec::new();
            };
            let mut ids: Vec<String> = stations
                .values()
                .filter(|s| s.active && s.location.distance_km(&center) <= *radius_km)
                .map(|s| s.id.as_str().to_string())
                .collect();
            ids.sort();
            ids
        }
    }
}

/// The topic a rule's messages are published on.
pub fn rule_topic(spec: &RuleSpec) -> Topic {
    match &spec.target {
        Target::Station(id) => Topic::station(id),
        Target::Area {
            lat,
            lon,
            radius_km,
        } => Topic::area(&format!("{lat:.4},{lon:.4},{radius_km}km")),
    }
}

impl RuleEngine {
    /// Loads the rules, the stations and the recent data of watched stations.
    pub async fn load(
        store: Arc<dyn Store>,
        notifier: Arc<Notifier>,
        alarms: AlarmConfig,
    ) -> NotifyResult<RuleEngine> {
        let engine = RuleEngine {
            store,
            notifier,
            alarms,
            state: Mutex::new(EngineState::default()),
        };
        engine.reload().await?;
        Ok(engine)
    }

    /// Reads the rules and stations again (after a rule or station changed).
    pub async fn reload(&self) -> NotifyResult<()> {
        let stations: HashMap<String, Station> = self
            .store
            .stations()
            .await?
            .into_iter()
            .map(|s| (s.id.as_str().to_string(), s))
            .collect();
        let mut rules = HashMap::new();
        let mut by_station: HashMap<String, Vec<String>> = HashMap::new();
        for row in self.store.active_rules().await? {
            let Ok(spec) = serde_json::from_str::<RuleSpec>(&row.spec) else {
                tracing::warn!(rule = %row.id, "alert rule does not parse: skipped");
                continue;
            };
            let state: RuleState = serde_json::from_str(&row.state).unwrap_or_default();
            let watched = stations_of(&spec, &stations);
            for station in &watched {
                by_station
                    .entry(station.clone())
                    .or_default()
                    .push(row.id.clone());
            }
            rules.insert(
                row.id.clone(),
                LoadedRule {
                    row,
                    spec,
                    state,
                    stations: watched,
                },
            );
        }
        let mut daily_series: HashMap<String, BTreeSet<Parameter>> = HashMap::new();
        for s in self.store.series().await? {
            if s.period_seconds.is_some_and(|p| p >= 86_400) {
                daily_series
                    .entry(s.station.as_str().to_string())
                    .or_default()
                    .insert(s.parameter);
            }
        }
        let mut state = self.state.lock().await;
        let unprimed: Vec<String> = by_station
            .keys()
            .filter(|s| !state.windows.contains_key(*s))
            .cloned()
            .collect();
        state.rules = rules;
        state.by_station = by_station;
        state.stations = stations;
        state.daily_series = daily_series;
        let EngineState {
            windows,
            by_station,
            ..
        } = &mut *state;
        windows.retain(|k, _| by_station.contains_key(k));
        if !unprimed.is_empty() {
            let recent = self.store.recent(WINDOW_S).await?;
            for series in recent
                .iter()
                .filter(|s| unprimed.iter().any(|u| u == s.station.as_str()))
            {
                let daily = series.period_seconds.is_some_and(|p| p >= 86_400);
                let w = state
                    .windows
                    .entry(series.station.as_str().to_string())
                    .or_default();
                for p in series.points.iter().filter(|p| p.flag.counts()) {
                    w.add(series.parameter, p.ts, p.value, daily);
                }
            }
            for station in &unprimed {
                refresh_index(&mut state, station);
            }
        }
        Ok(())
    }

    /// Number of active rules loaded.
    pub async fn rule_count(&self) -> usize {
        self.state.lock().await.rules.len()
    }

    /// Evaluates the rules watching the stations of a stored batch (call after it committed).
    pub async fn on_readings(&self, readings: &[Reading]) -> NotifyResult<EvalStats> {
        let mut stats = EvalStats::default();
        let mut state = self.state.lock().await;
        if state.by_station.is_empty() {
            return Ok(stats);
        }
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for r in readings {
            let station = r.station.as_str();
            if !r.flag.counts() || !state.by_station.contains_key(station) {
                continue;
            }
            stats.watched_readings += 1;
            let daily = state
                .daily_series
                .get(station)
                .is_some_and(|d| d.contains(&r.parameter));
            let (ts, value) = (r.time.timestamp(), r.value);
            match state.windows.get_mut(station) {
                Some(w) => w.add(r.parameter, ts, value, daily),
                None => state.windows.entry(station.to_string()).or_default().add(
                    r.parameter,
                    ts,
                    value,
                    daily,
                ),
            }
            if !touched.contains(station) {
                touched.insert(station.to_string());
            }
        }
        let mut rule_ids: BTreeSet<String> = BTreeSet::new();
        for station in &touched {
            if let Some(w) = state.windows.get_mut(station) {
                w.trim();
            }
            refresh_index(&mut state, station);
            stats.stations_evaluated += 1;
            rule_ids.extend(state.by_station.get(station).into_iter().flatten().cloned());
        }
        for id in rule_ids {
            stats.rules_evaluated += 1;
            if self.evaluate_measured(&mut state, &id).await? {
                stats.events += 1;
            }
        }
        Ok(stats)
    }

    /// Steps one measured rule; returns whether an episode opened or closed.
    async fn evaluate_measured(&self, state: &mut EngineState, id: &str) -> NotifyResult<bool> {
        let Some(rule) = state.rules.get(id) else {
            return Ok(false);
        };
        if !matches!(rule.spec.trigger, Trigger::Measured { .. }) {
            return Ok(false);
        }
        // An area's value is its worst station's.
        let obs = rule
            .stations
            .iter()
            .filter_map(|s| state.current.get(s)?.observe(rule.spec.measure))
            .max_by_key(|o| (o.aqi, o.ts));
        let Some(obs) = obs else { return Ok(false) };
        let (next, event) = rules::step(&rule.spec, &rule.state, &obs);
        if event.is_none() && next.same_stored(&rule.state) {
            if let Some(rule) = state.rules.get_mut(id) {
                rule.state = next;
            }
            return Ok(false);
        }
        let row = rule.row.clone();
        let spec = rule.spec.clone();
        {
            let state_json = serde_json::to_string(&next).expect("plain struct");
            let (change, notice) = match event {
                Some(e) => self.episode_notice(&row, &spec, &e).await?,
                None => (EpisodeChange::None, EpisodeNotice::Silent),
            };
            self.store
                .record_episode(Some((&row.id, &state_json)), &change, &notice)
                .await?;
            if matches!(notice, EpisodeNotice::Message { .. }) {
                self.notifier.wake();
            }
        }
        if let Some(rule) = state.rules.get_mut(id) {
            rule.state = next;
        }
        Ok(event.is_some())
    }

    async fn channels_of(&self, row: &AlertRuleRow) -> NotifyResult<Vec<SubscriptionRow>> {
        let mut subs = Vec::new();
        for id in &row.channels {
            if let Some(s) = self.store.subscription(id).await? {
                if s.owner.as_deref() == Some(row.user_id.as_str()) {
                    subs.push(s);
                }
            }
        }
        Ok(subs)
    }

    /// The episode change and what it sends for an event of a rule.
    async fn episode_notice(
        &self,
        row: &AlertRuleRow,
        spec: &RuleSpec,
        event: &RuleEvent,
    ) -> NotifyResult<(EpisodeChange, EpisodeNotice)> {
        let (episode, kind, notify) = match event {
            RuleEvent::Opened { episode, .. } => (episode, "opened", episode.notified),
            RuleEvent::Cleared {
                episode, notify, ..
            } => (episode, "cleared", *notify),
        };
        let episode_id = format!("{}:{}", row.id, episode.since);
        let change = match event {
            RuleEvent::Opened { observation, .. } => EpisodeChange::Open(EpisodeRow {
                id: episode_id.clone(),
                key: row.id.clone(),
                opened_at: DateTime::from_timestamp(observation.ts, 0).unwrap_or_else(Utc::now),
                closed_at: None,
                detail: json!({"aqi": observation.aqi, "category": observation.category})
                    .to_string(),
            }),
            RuleEvent::Cleared { at, .. } => EpisodeChange::Close {
                id: episode_id.clone(),
                closed_at: DateTime::from_timestamp(*at, 0).unwrap_or_else(Utc::now),
            },
        };
        if !notify {
            return Ok((change, EpisodeNotice::Silent));
        }
        let message = alert_message(row, spec, event, &episode_id);
        if spec.digest_at.is_some() {
            return Ok((
                change,
                EpisodeNotice::DigestLine {
                    rule_id: row.id.clone(),
                    line: format!(
                        "{} — {}",
                        message.created_at.format("%Y-%m-%d %H:%M UTC"),
                        message.text
                    ),
                },
            ));
        }
        let not_before = spec
            .quiet_hours
            .and_then(|q| q.release(spec.tz().ok()?, Utc::now()));
        let subs = self.channels_of(row).await?;
        let deliveries =
            deliveries_for(&message, &subs, &format!("{episode_id}:{kind}"), not_before);
        Ok((
            change,
            EpisodeNotice::Message {
                message: Box::new(message.to_row("topic", &message.topic)),
                deliveries,
            },
        ))
    }

    /// Feeds a refreshed forecast of one station (`(hour, AQI)` values) to the forecast rules
    /// watching it. Returns the number of messages written.
    pub async fn on_forecast(
        &self,
        station: &str,
        hours: &[(DateTime<Utc>, u32)],
        now: DateTime<Utc>,
    ) -> NotifyResult<usize> {
        let mut state = self.state.lock().await;
        let ids: Vec<String> = state.by_station.get(station).cloned().unwrap_or_default();
        let tz: chrono_tz::Tz = state
            .stations
            .get(station)
            .and_then(|s| s.timezone.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let days = rules::forecast_days(hours, tz);
        let today = now.with_timezone(&tz).date_naive();
        let mut sent = 0;
        for id in ids {
            let Some(rule) = state.rules.get(&id) else {
                continue;
            };
            let (next, day) = rules::forecast_step(&rule.spec, &rule.state, today, &days);
            let Some(day) = day else { continue };
            let (row, spec) = (rule.row.clone(), rule.spec.clone());
            let text = format!(
                "{} is forecast to reach {} (AQI {}) on {}. {}",
                spec.describe(),
                day.category.label(),
                day.aqi,
                day.date,
                day.category.advice()
            );
            let id_text = format!("forecast:{}:{}", row.id, day.date);
            let message = Message::with_id(id_text.clone(), &rule_topic(&spec), "forecast.alert", &format!("Air quality forecast: {}", day.category.label()), &text)
                .attribute("rule_id", row.id.clone())
                .attribute("station", station)
                .attribute("aqi", day.aqi)
                .attribute("category", category_name(day.category))
                .data(json!({"rule_id": row.id, "station": station, "date": day.date.to_string(), "aqi": day.aqi, "category": day.category}));
            let notice = if spec.digest_at.is_some() {
                EpisodeNotice::DigestLine {
                    rule_id: row.id.clone(),
                    line: text,
                }
            } else {
                let not_before = spec
                    .quiet_hours
                    .and_then(|q| q.release(spec.tz().ok()?, Utc::now()));
                let subs = self.channels_of(&row).await?;
                EpisodeNotice::Message {
                    message: Box::new(message.to_row("topic", &message.topic)),
                    deliveries: deliveries_for(&message, &subs, &id_text, not_before),
                }
            };
            let state_json = serde_json::to_string(&next).expect("plain struct");
            self.store
                .record_episode(Some((&row.id, &state_json)), &EpisodeChange::None, &notice)
                .await?;
            if let Some(rule) = state.rules.get_mut(&id) {
                rule.state = next;
            }
            sent += 1;
        }
        if sent > 0 {
            self.notifier.wake();
        }
        Ok(sent)
    }

    /// Sends the digests that are due at `now`. Returns how many went out.
    pub async fn send_digests(&self, now: DateTime<Utc>) -> NotifyResult<usize> {
        let items = self.store.unsent_digest_items().await?;
        let mut by_rule: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for item in items {
            by_rule.entry(item.rule_id.clone()).or_default().push(item);
        }
        let mut sent = 0;
        for (rule_id, items) in by_rule {
            let Some(row) = self.store.rule(&rule_id).await? else {
                continue;
            };
            let Ok(spec) = serde_json::from_str::<RuleSpec>(&row.spec) else {
                continue;
            };
            let (Some(at), Ok(tz)) = (spec.digest_at, spec.tz()) else {
                continue;
            };
            let due = rules::next_digest(at, tz, items[0].created_at);
            if due > now {
                continue;
            }
            let id = format!("digest:{}:{}", row.id, due.format("%Y-%m-%d"));
            let lines: Vec<String> = items.iter().map(|i| format!("• {}", i.line)).collect();
            let message = Message::with_id(id.clone(), &rule_topic(&spec), "alert.digest", "Your EcoCityHub air quality digest", &lines.join("\n"))
                .attribute("rule_id", row.id.clone())
                .data(json!({"rule_id": row.id, "items": items.iter().map(|i| &i.line).collect::<Vec<_>>()}));
            let subs = self.channels_of(&row).await?;
            let deliveries = deliveries_for(&message, &subs, &id, None);
            let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
            self.store
                .send_digest(
                    &ids,
                    &message.to_row("topic", &message.topic),
                    &deliveries,
                    now,
                )
                .await?;
            sent += 1;
        }
        if sent > 0 {
            self.notifier.wake();
        }
        Ok(sent)
    }

    /// Opens an alarm for every station silent at `now` and closes those reporting again.
    /// Returns (opened, closed).
    pub async fn check_silent_stations(&self, now: DateTime<Utc>) -> NotifyResult<(usize, usize)> {
        let series: Vec<SeriesSeen> = self
            .store
            .series()
            .await?
            .into_iter()
            .map(|s| SeriesSeen {
                station: s.station.as_str().to_string(),
                last_ts: s.last.map(|t| t.timestamp()),
                period_s: s.period_seconds,
            })
            .collect();
        let silent = alarms::silent_stations(&series, now.timestamp(), &self.alarms);
        let active: BTreeSet<String> = self
            .store
            .stations()
            .await?
            .into_iter()
            .filter(|s| s.active)
            .map(|s| s.id.as_str().to_string())
            .collect();
        let open = self.open_alarms("silent:").await?;
        let mut opened = 0;
        for s in silent.iter().filter(|s| active.contains(&s.station)) {
            if open.contains_key(&s.station) {
                continue;
            }
            let text = format!(
                "Station {} has sent no reading since {} (more than {} minutes).",
                s.station,
                DateTime::from_timestamp(s.last_ts, 0)
                    .map_or_else(|| s.last_ts.to_string(), |t| t.to_rfc3339()),
                s.allowed_s / 60
            );
            let episode = format!("silent:{}:{}", s.station, s.last_ts);
            self.alarm(
                &episode,
                &format!("silent:{}", s.station),
                true,
                "alarm.silent",
                &format!("Station {} is silent", s.station),
                &text,
                &s.station,
                now,
            )
            .await?;
            opened += 1;
        }
        let still: BTreeSet<&str> = silent.iter().map(|s| s.station.as_str()).collect();
        let mut closed = 0;
        for (station, episode) in open {
            if !still.contains(station.as_str()) {
                let text = format!("Station {station} is reporting again.");
                self.alarm(
                    &episode.id,
                    &episode.key,
                    false,
                    "alarm.silent.cleared",
                    &format!("Station {station} is reporting again"),
                    &text,
                    &station,
                    now,
                )
                .await?;
                closed += 1;
            }
        }
        Ok((opened, closed))
    }

    /// Opens an alarm for stations with a burst of anomaly flags (`(station, flag time)`) and
    /// closes those without one. Returns (opened, closed).
    pub async fn check_anomaly_bursts(
        &self,
        flags: &[(String, i64)],
        now: DateTime<Utc>,
    ) -> NotifyResult<(usize, usize)> {
        let bursts = alarms::anomaly_bursts(flags, now.timestamp(), &self.alarms);
        let open = self.open_alarms("anomalies:").await?;
        let mut opened = 0;
        for (station, count) in &bursts {
            if open.contains_key(station) {
                continue;
            }
            let text = format!(
                "Station {station} has {count} suspect readings within {} minutes.",
                self.alarms.anomaly_window_s / 60
            );
            let episode = format!("anomalies:{station}:{}", now.timestamp());
            self.alarm(
                &episode,
                &format!("anomalies:{station}"),
                true,
                "alarm.anomalies",
                &format!("Anomalies at station {station}"),
                &text,
                station,
                now,
            )
            .await?;
            opened += 1;
        }
        let mut closed = 0;
        for (station, episode) in open {
            if !bursts.iter().any(|(s, _)| *s == station) {
                self.alarm(
                    &episode.id,
                    &episode.key,
                    false,
                    "alarm.anomalies.cleared",
                    &format!("Anomalies at station {station} ended"),
                    &format!("Station {station} has no burst of suspect readings any more."),
                    &station,
                    now,
                )
                .await?;
                closed += 1;
            }
        }
        Ok((opened, closed))
    }

    async fn open_alarms(&self, prefix: &str) -> NotifyResult<HashMap<String, EpisodeRow>> {
        Ok(self
            .store
            .open_episodes()
            .await?
            .into_iter()
            .filter_map(|e| Some((e.key.strip_prefix(prefix)?.to_string(), e)))
            .collect())
    }

    /// Opens or closes an alarm episode with its message to the operators' topic.
    #[allow(clippy::too_many_arguments)]
    async fn alarm(
        &self,
        episode_id: &str,
        key: &str,
        open: bool,
        kind: &str,
        subject: &str,
        text: &str,
        station: &str,
        now: DateTime<Utc>,
    ) -> NotifyResult<()> {
        let topic = Topic::operator_alarms();
        self.store.ensure_topic(&topic.to_row(now)).await?;
        let event = if open { "open" } else { "close" };
        let message =
            Message::with_id(format!("{episode_id}:{event}"), &topic, kind, subject, text)
                .attribute("station", station)
                .attribute("alarm", key.split(':').next().unwrap_or(key))
                .data(json!({"station": station, "episode": episode_id}))
                .at(now);
        let subs = self.store.confirmed_subscriptions(&topic.id).await?;
        let deliveries: Vec<NewDelivery> =
            deliveries_for(&message, &subs, &format!("{episode_id}:{event}"), None);
        let change = if open {
            EpisodeChange::Open(EpisodeRow {
                id: episode_id.to_string(),
                key: key.to_string(),
                opened_at: now,
                closed_at: None,
                detail: json!({"station": station}).to_string(),
            })
        } else {
            EpisodeChange::Close {
                id: episode_id.to_string(),
                closed_at: now,
            }
        };
        self.store
            .record_episode(
                None,
                &change,
                &EpisodeNotice::Message {
                    message: Box::new(message.to_row("topic", &topic.id)),
                    deliveries,
                },
            )
            .await?;
        self.notifier.wake();
        Ok(())
    }

    /// "Send a test": a test message to each of the rule's channels, now.
    pub async fn send_test(&self, row: &AlertRuleRow) -> NotifyResult<PublishReceipt> {
        let spec: RuleSpec = serde_json::from_str(&row.spec)
            .map_err(|e| StoreError::Corrupt(format!("rule {}: {e}", row.id)))?;
        let message = Message::new(
            &rule_topic(&spec),
            "test",
            "EcoCityHub test alert",
            &format!(
                "This is a test of your alert \"{}\": {}.",
                spec.label.as_deref().unwrap_or("unnamed"),
                spec.describe()
            ),
        )
        .attribute("rule_id", row.id.clone());
        let mut subs = self.channels_of(row).await?;
        for s in &mut subs {
            s.filter_policy = None;
        }
        self.notifier
            .publish_to(&message, &subs, &message.id.clone(), None)
            .await
    }

    /// Checks a new or changed rule: a valid spec, known stations, and channels that are the
    /// owner's own subscriptions.
    pub async fn check_rule(
        &self,
        user_id: &str,
        spec: &RuleSpec,
        channels: &[String],
    ) -> NotifyResult<()> {
        spec.validate()?;
        if let Target::Station(id) = &spec.target {
            let id = ecocityhub_domain::StationId::parse(id)
                .map_err(|_| NotifyError::Rule(rules::RuleError::Station))?;
            if self.store.station(&id).await?.is_none() {
                return Err(NotifyError::Rule(rules::RuleError::Station));
            }
        }
        for c in channels {
            match self.store.subscription(c).await? {
                Some(s) if s.owner.as_deref() == Some(user_id) => {}
                _ => return Err(NotifyError::UnknownSubscription),
            }
        }
        Ok(())
    }
}

fn refresh_index(state: &mut EngineState, station: &str) {
    let Some(w) = state.windows.get(station) else {
        return;
    };
    match us_epa::latest(&w.window()) {
        Some(report) => {
            let ts = w.newest;
            state
                .current
                .insert(station.to_string(), StationIndex { ts, report });
        }
        None => {
            state.current.remove(station);
        }
    }
}

fn category_name(c: us_epa::Category) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The message of a rule's event.
fn alert_message(
    row: &AlertRuleRow,
    spec: &RuleSpec,
    event: &RuleEvent,
    episode_id: &str,
) -> Message {
    let topic = rule_topic(spec);
    let name = spec.label.clone().unwrap_or_else(|| spec.describe());
    let (kind, suffix, subject, text, aqi, category) = match event {
        RuleEvent::Opened { observation: o, .. } => (
            "alert.opened",
            "open",
            format!("Air quality alert: {}", o.category.label()),
            format!(
                "{} is {} (AQI {}). {}",
                spec.describe(),
                o.category.label(),
                o.aqi,
                o.category.advice()
            ),
            o.aqi,
            o.category,
        ),
        RuleEvent::Cleared { episode, .. } => (
            "alert.cleared",
            "clear",
            "Air quality alert over".to_string(),
            format!(
                "{} is below {} again (the episode peaked at AQI {}).",
                spec.describe(),
                spec.threshold.label(),
                episode.peak_aqi
            ),
            episode.peak_aqi,
            us_epa::Category::from_index(episode.peak_aqi),
        ),
    };
    let station = match &spec.target {
        Target::Station(s) => s.clone(),
        Target::Area { .. } => String::new(),
    };
    let parameter = match spec.measure {
        Measure::Aqi => "aqi".to_string(),
        Measure::Pollutant(p) => p.as_str().to_string(),
    };
    let html = format!(
        "<p style=\"border-left:6px solid {};padding-left:8px\"><b>{}</b></p><p>{}</p>",
        category.color(),
        escape(&subject),
        escape(&text)
    );
    Message::with_id(format!("alert:{episode_id}:{suffix}"), &topic, kind, &subject, &text)
        .html(html)
        .attribute("rule_id", row.id.clone())
        .attribute("user_id", row.user_id.clone())
        .attribute("station", station)
        .attribute("parameter", parameter)
        .attribute("aqi", aqi)
        .attribute("category", category_name(category))
        .data(json!({"rule_id": row.id, "rule": name, "episode": episode_id, "aqi": aqi, "category": category, "event": suffix}))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
