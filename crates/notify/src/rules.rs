//! Citizens' alert rules as pure logic, no I/O (anchors: AirNow's EnviroFlash, IQAir,
//! ThingsBoard's alarm rules).
//!
//! A rule watches a station, or an area (a radius around a point), for one pollutant's AQI
//! sub-index or the AQI itself, at a category threshold ("unhealthy for sensitive groups or
//! worse"). On measured values it has hysteresis: an episode opens once the averaged value has
//! met the threshold for `hold_minutes` (default an hour) and clears once it has stayed below
//! for `clear_minutes`; one message when an episode opens, optionally one when it clears, and
//! no second opening message within `cooldown_minutes`. On forecasts it sends one message per
//! forecast day that reaches the threshold. Quiet hours in the subscriber's time zone defer
//! messages to their end; a daily digest collects them instead. Times are data times (epoch
//! seconds of the readings), so replays and imports behave like live data.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use ecocityhub_domain::aqi::us_epa::Category;
use ecocityhub_domain::Parameter;
use serde::{Deserialize, Serialize};

/// The largest area radius a rule may have.
pub const MAX_RADIUS_KM: f64 = 100.0;
/// The longest hold, clear or cooldown time, in minutes (a week).
const MAX_MINUTES: i64 = 7 * 24 * 60;

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Station(String),
    Area { lat: f64, lon: f64, radius_km: f64 },
}

/// Which value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The station's US AQI (the highest sub-index).
    Aqi,
    /// One pollutant's AQI sub-index.
    Pollutant(Parameter),
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Measured {
        #[serde(default = "default_hold")]
        hold_minutes: i64,
        #[serde(default = "default_hold")]
        clear_minutes: i64,
        #[serde(default)]
        notify_clear: bool,
        #[serde(default = "default_cooldown")]
        cooldown_minutes: i64,
    },
    Forecast {
        /// 1: tomorrow (in the station's time zone).
        #[serde(default = "default_days_ahead")]
        days_ahead: i64,
    },
}

fn default_hold() -> i64 {
    60
}
fn default_cooldown() -> i64 {
    180
}
fn default_days_ahead() -> i64 {
    1
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::Measured {
            hold_minutes: default_hold(),
            clear_minutes: default_hold(),
            notify_clear: false,
            cooldown_minutes: default_cooldown(),
        }
    }
}

/// A daily window (local time) in which messages wait; may span midnight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuietHours {
    #[serde(with = "hhmm")]
    pub start: NaiveTime,
    #[serde(with = "hhmm")]
    pub end: NaiveTime,
}

/// A rule as its owner set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub target: Target,
    pub measure: Measure,
    /// Fires at this category or worse.
    pub threshold: Category,
    #[serde(default)]
    pub trigger: Trigger,
    /// The subscriber's IANA time zone (quiet hours, digests).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Local time of a daily digest that replaces the single messages.
    #[serde(default, with = "opt_hhmm")]
    pub digest_at: Option<NaiveTime>,
    /// The owner's name for the rule.
    #[serde(default)]
    pub label: Option<String>,
}

fn default_timezone() -> String {
    "UTC".into()
}

/// A rule that cannot be kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("the radius must be more than 0 and at most {MAX_RADIUS_KM} km, not {0} km")]
    Radius(f64),
    #[error("latitude and longitude must be within ±90 and ±180")]
    Position,
    #[error("{0} has no AQI; choose pm25, pm10, o3, co, so2 or no2")]
    NoAqi(Parameter),
    #[error("{0:?} is not an IANA time zone (such as Europe/London)")]
    Timezone(String),
    #[error("{field} must be between 0 and {MAX_MINUTES} minutes, not {value}")]
    Minutes { field: &'static str, value: i64 },
    #[error("a forecast rule looks 0 to 2 days ahead, not {0}")]
    DaysAhead(i64),
    #[error("quiet hours must not start and end at the same time")]
    EmptyQuietHours,
    #[error("the station id is empty")]
    Station,
}

impl RuleSpec {
    /// Checks what the owner cannot be trusted to get right.
    pub fn validate(&self) -> Result<(), RuleError> {
        match &self.target {
            Target::Station(id) if id.trim().is_empty() => return Err(RuleError::Station),
            Target::Station(_) => {}
            Target::Area {
                lat,
                lon,
                radius_km,
            } => {
                if !(lat.abs() <= 90.0 && lon.abs() <= 180.0) {
                    return Err(RuleError::Position);
                }
                if !(*radius_km > 0.0 && *radius_km <= MAX_RADIUS_KM) {
                    return Err(RuleError::Radius(*radius_km));
                }
            }
        }
        if let Measure::Pollutant(p) = self.measure {
            if ecocityhub_domain::aqi::us_epa::Table::for_charts(p).is_none() {
                return Err(RuleError::NoAqi(p));
            }
        }
        self.tz()?;
        match self.trigger {
            Trigger::Measured {
                hold_minutes,
                clear_minutes,
                cooldown_minutes,
                ..
            } => {
                for (field, value) in [
                    ("hold_minutes", hold_minutes),
                    ("clear_minutes", clear_minutes),
                    ("cooldown_minutes", cooldown_minutes),
                ] {
                    if !(0..=MAX_MINUTES).contains(&value) {
                        return Err(RuleError::Minutes { field, value });
                    }
                }
            }
            Trigger::Forecast { days_ahead } => {
                if !(0..=2).contains(&days_ahead) {
                    return Err(RuleError::DaysAhead(days_ahead));
                }
            }
        }
        if self.quiet_hours.is_some_and(|q| q.start == q.end) {
            return Err(RuleError::EmptyQuietHours);
        }
        Ok(())
    }

    pub fn tz(&self) -> Result<Tz, RuleError> {
        self.timezone
            .parse()
            .map_err(|_| RuleError::Timezone(self.timezone.clone()))
    }

    /// What the rule watches, in words ("PM2.5 at marylebone_road").
    pub fn describe(&self) -> String {
        let what = match self.measure {
            Measure::Aqi => "The AQI".to_string(),
            Measure::Pollutant(p) => format!("The {} AQI", p.as_str().to_uppercase()),
        };
        let place = match &self.target {
            Target::Station(s) => format!("at {s}"),
            Target::Area {
                lat,
                lon,
                radius_km,
            } => {
                format!("within {radius_km} km of {lat:.4}, {lon:.4}")
            }
        };
        format!("{what} {place}")
    }
}

/// One observed value of a rule's measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Data time, epoch seconds.
    pub ts: i64,
    pub aqi: u32,
    pub category: Category,
}

/// An episode that is open.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpenEpisode {
    /// When the condition started to hold: with the rule id, the episode's stable id.
    pub since: i64,
    pub opened_at: i64,
    /// Whether its opening was sent (not within a cooldown).
    pub notified: bool,
    pub peak_aqi: u32,
}

/// What a rule remembers between observations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    #[serde(default)]
    pub above_since: Option<i64>,
    #[serde(default)]
    pub below_since: Option<i64>,
    #[serde(default)]
    pub episode: Option<OpenEpisode>,
    #[serde(default)]
    pub last_notified_open: Option<i64>,
    /// Forecast days already announced (ISO dates, the last few).
    #[serde(default)]
    pub forecast_days: Vec<String>,
    /// The newest observation seen (not stored: older data is ignored within one run).
    #[serde(skip)]
    pub last_ts: Option<i64>,
}

impl RuleState {
    /// Whether the stored part (all but `last_ts`) is the same: nothing to write.
    pub fn same_stored(&self, other: &RuleState) -> bool {
        self.above_since == other.above_since
            && self.below_since == other.below_since
            && self.episode == other.episode
            && self.last_notified_open == other.last_notified_open
            && self.forecast_days == other.forecast_days
    }
}

/// What an observation did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleEvent {
    Opened {
        episode: OpenEpisode,
        observation: Observation,
    },
    Cleared {
        episode: OpenEpisode,
        at: i64,
        /// Whether a message goes out (the rule asks for one and the opening was sent).
        notify: bool,
    },
}

/// Feeds one observation of the measure to a measured rule.
pub fn step(
    spec: &RuleSpec,
    state: &RuleState,
    obs: &Observation,
) -> (RuleState, Option<RuleEvent>) {
    let Trigger::Measured {
        hold_minutes,
        clear_minutes,
        notify_clear,
        cooldown_minutes,
    } = spec.trigger
    else {
        return (state.clone(), None);
    };
    let mut next = state.clone();
    if state.last_ts.is_some_and(|t| obs.ts <= t) {
        return (next, None);
    }
    next.last_ts = Some(obs.ts);
    let meets = obs.category >= spec.threshold;
    match state.episode {
        None if meets => {
            let since = *next.above_since.get_or_insert(obs.ts);
            if obs.ts - since < hold_minutes * 60 {
                return (next, None);
            }
            let notified = state
                .last_notified_open
                .is_none_or(|t| obs.ts - t >= cooldown_minutes * 60);
            let episode = OpenEpisode {
                since,
                opened_at: obs.ts,
                notified,
                peak_aqi: obs.aqi,
            };
            if notified {
                next.last_notified_open = Some(obs.ts);
            }
            next.episode = Some(episode);
            next.below_since = None;
            (
                next,
                Some(RuleEvent::Opened {
                    episode,
                    observation: *obs,
                }),
            )
        }
        None => {
            next.above_since = None;
            (next, None)
        }
        Some(mut episode) if meets => {
            episode.peak_aqi = episode.peak_aqi.max(obs.aqi);
            next.episode = Some(episode);
            next.below_since = None;
            (next, None)
        }
        Some(episode) => {
            let since = *next.below_since.get_or_insert(obs.ts);
            if obs.ts - since < clear_minutes * 60 {
                return (next, None);
            }
            next.episode = None;
            next.below_since = None;
            next.above_since = None;
            (
                next,
                Some(RuleEvent::Cleared {
                    episode,
                    at: obs.ts,
                    notify: notify_clear && episode.notified,
                }),
            )
        }
    }
}

/// The forecast's worst hour of one local day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastDay {
    pub date: NaiveDate,
    pub aqi: u32,
    pub category: Category,
}

/// The worst AQI of each local day of a forecast, from hourly `(time, aqi)` values.
pub fn forecast_days(hours: &[(DateTime<Utc>, u32)], tz: Tz) -> Vec<ForecastDay> {
    let mut days: Vec<ForecastDay> = Vec::new();
    for (t, aqi) in hours {
        let date = t.with_timezone(&tz).date_naive();
        match days.iter_mut().find(|d| d.date == date) {
            Some(d) if *aqi > d.aqi => {
                d.aqi = *aqi;
                d.category = Category::from_index(*aqi);
            }
            Some(_) => {}
            None => days.push(ForecastDay {
                date,
                aqi: *aqi,
                category: Category::from_index(*aqi),
            }),
        }
    }
    days.sort_by_key(|d| d.date);
    days
}

/// Feeds a refreshed forecast to a forecast rule; `today` is the local date at the station.
/// Returns the day to announce, at most one per forecast day ever.
pub fn forecast_step(
    spec: &RuleSpec,
    state: &RuleState,
    today: NaiveDate,
    days: &[ForecastDay],
) -> (RuleState, Option<ForecastDay>) {
    let Trigger::Forecast { days_ahead } = spec.trigger else {
        return (state.clone(), None);
    };
    let wanted = today + Duration::days(days_ahead);
    let Some(day) = days.iter().find(|d| d.date == wanted) else {
        return (state.clone(), None);
    };
    let key = day.date.to_string();
    if day.category < spec.threshold || state.forecast_days.contains(&key) {
        return (state.clone(), None);
    }
    let mut next = state.clone();
    next.forecast_days.push(key);
    let keep = next.forecast_days.len().saturating_sub(14);
    next.forecast_days.drain(..keep);
    (next, Some(*day))
}

/// The local date-time `naive` in `tz` as UTC; in a DST gap, the first instant after it.
fn local_to_utc(tz: Tz, naive: chrono::NaiveDateTime) -> DateTime<Utc> {
    let mut probe = naive;
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&naive)
}

impl QuietHours {
    fn contains(&self, t: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// When a message made at `now` may go out: `None` if now, else the end of the quiet hours.
    pub fn release(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&tz).naive_local();
        if !self.contains(local.time()) {
            return None;
        }
        let mut end = local.date().and_time(self.end);
        if end <= local {
            end += Duration::days(1);
        }
        Some(local_to_utc(tz, end))
    }
}

/// The first local `at` in `tz` strictly after `after`: when a digest of alerts collected since
/// `after` goes out.
pub fn next_digest(at: NaiveTime, tz: Tz, after: DateTime<Utc>) -> DateTime<Utc> {
    let local = after.with_timezone(&tz).naive_local();
    let mut candidate = local.date().and_time(at);
    if candidate <= local {
        candidate += Duration::days(1);
    }
    local_to_utc(tz, candidate)
}

/// `HH:MM` times in rule JSON.
mod hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a time like 07:30")))
    }
}

mod opt_hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<NaiveTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::hhmm::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => NaiveTime::parse_from_str(&text, "%H:%M")
                .map(Some)
                .map_err(|_| {
                    serde::de::Error::custom(format!("{text:?} is not a time like 07:30"))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;

    const H: i64 = 3600;

    fn spec(trigger: Trigger) -> RuleSpec {
        RuleSpec {
            target: Target::Station("s1".into()),
            measure: Measure::Aqi,
            threshold: UnhealthyForSensitiveGroups,
            trigger,
            timezone: "Europe/London".into(),
            quiet_hours: None,
            digest_at: None,
            label: None,
        }
    }

    fn measured(hold: i64, clear: i64, notify_clear: bool, cooldown: i64) -> RuleSpec {
        spec(Trigger::Measured {
            hold_minutes: hold,
            clear_minutes: clear,
            notify_clear,
            cooldown_minutes: cooldown,
        })
    }

    fn obs(ts: i64, aqi: u32) -> Observation {
        Observation {
            ts,
            aqi,
            category: Category::from_index(aqi),
        }
    }

    /// Runs a sequence of (ts, aqi) and returns the events with their times.
    fn run(spec: &RuleSpec, values: &[(i64, u32)]) -> (RuleState, Vec<(i64, RuleEvent)>) {
        let mut state = RuleState::default();
        let mut events = Vec::new();
        for &(ts, aqi) in values {
            let (next, event) = step(spec, &state, &obs(ts, aqi));
            state = next;
            events.extend(event.map(|e| (ts, e)));
        }
        (state, events)
    }

    #[test]
    fn one_high_reading_does_not_open_an_episode() {
        let (_, events) = run(
            &measured(60, 60, true, 0),
            &[(0, 160), (H / 2, 40), (H, 40)],
        );
        assert!(events.is_empty());
    }

    #[test]
    fn an_episode_opens_after_the_hold_and_clears_after_the_clear_time() {
        let rule = measured(60, 60, true, 0);
        let values = [
            (0, 120),
            (H / 2, 130),
            (H, 125),
            (2 * H, 90),
            (2 * H + H / 2, 160),
            (3 * H, 80),
            (4 * H, 70),
        ];
        let (state, events) = run(&rule, &values);
        assert_eq!(events.len(), 2, "{events:?}");
        match events[0] {
            (ts, RuleEvent::Opened { episode, .. }) => {
                assert_eq!(ts, H);
                assert_eq!(episode.since, 0);
                assert!(episode.notified);
            }
            other => panic!("{other:?}"),
        }
        // The dip at 2 h and the spike at 2.5 h: the clearing timer restarts at 3 h.
        match events[1] {
            (
                ts,
                RuleEvent::Cleared {
                    notify, episode, ..
                },
            ) => {
                assert_eq!(ts, 4 * H);
                assert!(notify);
                assert_eq!(episode.peak_aqi, 160);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(state.episode, None);
    }

    #[test]
    fn a_hold_of_zero_fires_at_once_and_clear_messages_are_optional() {
        let (_, events) = run(&measured(0, 0, false, 0), &[(0, 200), (H, 20)]);
        assert!(matches!(events[0].1, RuleEvent::Opened { .. }));
        assert!(matches!(
            events[1].1,
            RuleEvent::Cleared { notify: false, .. }
        ));
    }

    #[test]
    fn the_threshold_is_a_category_or_worse() {
        let rule = measured(0, 0, false, 0);
        assert!(
            run(&rule, &[(0, 100)]).1.is_empty(),
            "moderate is below USG"
        );
        assert_eq!(run(&rule, &[(0, 101)]).1.len(), 1);
        assert_eq!(run(&rule, &[(0, 450)]).1.len(), 1, "hazardous is worse");
    }

    #[test]
    fn a_cooldown_keeps_a_second_opening_quiet() {
        let rule = measured(0, 0, true, 180);
        let (_, events) = run(
            &rule,
            &[(0, 160), (H, 50), (2 * H, 160), (3 * H, 50), (4 * H, 160)],
        );
        let opened: Vec<bool> = events
            .iter()
            .filter_map(|(_, e)| match e {
                RuleEvent::Opened { episode, .. } => Some(episode.notified),
                _ => None,
            })
            .collect();
        assert_eq!(
            opened,
            [true, false, true],
            "2 h after the first is within 3 h; 4 h is not"
        );
        let cleared: Vec<bool> = events
            .iter()
            .filter_map(|(_, e)| match e {
                RuleEvent::Cleared { notify, .. } => Some(*notify),
                _ => None,
            })
            .collect();
        assert_eq!(
            cleared,
            [true, false],
            "a quiet opening has a quiet clearing"
        );
    }

    #[test]
    fn old_observations_are_ignored() {
        let rule = measured(60, 60, false, 0);
        let (state, events) = run(&rule, &[(H, 160), (0, 160), (H / 2, 160)]);
        assert!(events.is_empty());
        assert_eq!(state.above_since, Some(H));
    }

    #[test]
    fn a_stored_state_survives_json() {
        let rule = measured(60, 60, false, 0);
        let (state, _) = run(&rule, &[(0, 160), (H, 160)]);
        let back: RuleState =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back.episode, state.episode);
        assert_eq!(back.last_ts, None, "not stored");
        // The same transition from a reloaded state opens nothing twice.
        let (_, again) = step(&rule, &back, &obs(H + 60, 170));
        assert_eq!(again, None);
    }

    #[test]
    fn forecasts_announce_each_day_once() {
        let rule = spec(Trigger::Forecast { days_ahead: 1 });
        let today = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let tomorrow = today.succ_opt().unwrap();
        let days = [
            ForecastDay {
                date: today,
                aqi: 180,
                category: Unhealthy,
            },
            ForecastDay {
                date: tomorrow,
                aqi: 120,
                category: UnhealthyForSensitiveGroups,
            },
        ];
        let (state, day) = forecast_step(&rule, &RuleState::default(), today, &days);
        assert_eq!(day.unwrap().date, tomorrow);
        let (_, again) = forecast_step(&rule, &state, today, &days);
        assert_eq!(again, None, "one message per forecast day");
        let low = [ForecastDay {
            date: tomorrow,
            aqi: 80,
            category: Moderate,
        }];
        assert_eq!(
            forecast_step(&rule, &RuleState::default(), today, &low).1,
            None
        );
        // A measured rule ignores forecasts and a forecast rule ignores readings.
        assert_eq!(
            forecast_step(
                &measured(0, 0, false, 0),
                &RuleState::default(),
                today,
                &days
            )
            .1,
            None
        );
        assert_eq!(step(&rule, &RuleState::default(), &obs(0, 300)).1, None);
    }

    #[test]
    fn forecast_days_take_each_local_days_worst_hour() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let t = |h| Utc.with_ymd_and_hms(2026, 6, 2, h, 0, 0).unwrap();
        // 02:00 UTC on the 2nd is still the 1st in New York.
        let days = forecast_days(&[(t(2), 150), (t(3), 60), (t(12), 90), (t(13), 110)], tz);
        assert_eq!(days.len(), 2);
        assert_eq!(
            (days[0].date.to_string(), days[0].aqi),
            ("2026-06-01".into(), 150)
        );
        assert_eq!(
            (days[1].date.to_string(), days[1].aqi),
            ("2026-06-02".into(), 110)
        );
        assert_eq!(days[1].category, UnhealthyForSensitiveGroups);
    }

    #[test]
    fn quiet_hours_defer_to_their_end_in_the_local_zone() {
        let q = QuietHours {
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
        };
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 21:30 UTC in January is 22:30 in Berlin: quiet until 07:00 local = 06:00 UTC.
        let late = Utc.with_ymd_and_hms(2026, 1, 10, 21, 30, 0).unwrap();
        assert_eq!(
            q.release(tz, late),
            Some(Utc.with_ymd_and_hms(2026, 1, 11, 6, 0, 0).unwrap())
        );
        // 02:00 local, after midnight: the same morning.
        let night = Utc.with_ymd_and_hms(2026, 1, 11, 1, 0, 0).unwrap();
        assert_eq!(
            q.release(tz, night),
            Some(Utc.with_ymd_and_hms(2026, 1, 11, 6, 0, 0).unwrap())
        );
        let day = Utc.with_ymd_and_hms(2026, 1, 11, 12, 0, 0).unwrap();
        assert_eq!(q.release(tz, day), None);
        // A window within one day.
        let lunch = QuietHours {
            start: NaiveTime::from_hms_opt(12, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(13, 0, 0).unwrap(),
        };
        assert_eq!(
            lunch.release(Tz::UTC, day),
            Some(Utc.with_ymd_and_hms(2026, 1, 11, 13, 0, 0).unwrap())
        );
    }

    #[test]
    fn a_release_in_a_dst_gap_moves_past_it() {
        // Europe/London springs forward at 01:00 on 2026-03-29: 01:30 does not exist.
        let q = QuietHours {
            start: NaiveTime::from_hms_opt(0, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(1, 30, 0).unwrap(),
        };
        let tz: Tz = "Europe/London".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
        let release = q.release(tz, now).unwrap();
        assert_eq!(release, Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap());
    }

    #[test]
    fn digests_go_out_at_the_next_local_time() {
        let tz: Tz = "Asia/Tokyo".parse().unwrap();
        let at = NaiveTime::from_hms_opt(8, 0, 0).unwrap();
        // 2026-05-01 00:00 UTC is 09:00 in Tokyo: the next 08:00 is tomorrow, 23:00 UTC today.
        let after = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
        assert_eq!(
            next_digest(at, tz, after),
            Utc.with_ymd_and_hms(2026, 5, 1, 23, 0, 0).unwrap()
        );
        let early = Utc.with_ymd_and_hms(2026, 4, 30, 20, 0, 0).unwrap(); // 05:00 Tokyo
        assert_eq!(
            next_digest(at, tz, early),
            Utc.with_ymd_and_hms(2026, 4, 30, 23, 0, 0).unwrap()
        );
    }

    #[test]
    fn rules_are_validated() {
        let mut r = measured(60, 60, false, 180);
        assert_eq!(r.validate(), Ok(()));
        r.target = Target::Area {
            lat: 51.5,
            lon: -0.1,
            radius_km: 0.0,
        };
        assert_eq!(r.validate(), Err(RuleError::Radius(0.0)));
        r.target = Target::Area {
            lat: 51.5,
            lon: -0.1,
            radius_km: 5000.0,
        };
        assert_eq!(r.validate(), Err(RuleError::Radius(5000.0)));
        r.target = Target::Area {
            lat: 95.0,
            lon: -0.1,
            radius_km: 5.0,
        };
        assert_eq!(r.validate(), Err(RuleError::Position));
        r.target = Target::Area {
            lat: 51.5,
            lon: -0.1,
            radius_km: 5.0,
        };
        assert_eq!(r.validate(), Ok(()));
        r.measure = Measure::Pollutant(Parameter::Temperature);
        assert!(matches!(r.validate(), Err(RuleError::NoAqi(_))));
        r.measure = Measure::Pollutant(Parameter::Pm25);
        r.timezone = "Mars/Olympus".into();
        assert!(matches!(r.validate(), Err(RuleError::Timezone(_))));
        r.timezone = "UTC".into();
        r.trigger = Trigger::Measured {
            hold_minutes: -1,
            clear_minutes: 0,
            notify_clear: false,
            cooldown_minutes: 0,
        };
        assert!(matches!(
            r.validate(),
            Err(RuleError::Minutes {
                field: "hold_minutes",
                ..
            })
        ));
        r.trigger = Trigger::Forecast { days_ahead: 5 };
        assert_eq!(r.validate(), Err(RuleError::DaysAhead(5)));
    }

    #[test]
    fn rule_json_has_defaults_that_just_work() {
        let r: RuleSpec = serde_json::from_str(
            r#"{"target": {"station": "s1"}, "measure": {"pollutant": "pm25"},
                "threshold": "unhealthy_for_sensitive_groups",
                "quiet_hours": {"start": "22:00", "end": "07:00"}, "digest_at": "08:00"}"#,
        )
        .unwrap();
        assert_eq!(r.trigger, Trigger::default());
        assert_eq!(r.timezone, "UTC");
        assert_eq!(r.digest_at, NaiveTime::from_hms_opt(8, 0, 0));
        assert_eq!(r.validate(), Ok(()));
        let back: RuleSpec = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<RuleSpec>(
            r#"{"target": {"station": "s1"}, "measure": "aqi", "threshold": "unhealthy", "digest_at": "25:00"}"#
        )
        .is_err());
    }
}
