//! Alarms shaped like CloudWatch's: one metric (optionally divided by another, for rates), a
//! statistic over a period, a threshold and comparison, "M out of N" datapoints and a rule for
//! missing data; state OK, ALARM or INSUFFICIENT_DATA with a reason. A change of state is saved
//! with its history row and handed to an [`AlarmSink`] (retried until the sink takes it).
//!
//! **Restarts.** Nothing lives only in memory: the state is read from the store at every
//! evaluation and the datapoints come from the stored rollups. Periods in which no process was
//! recording (no heartbeat) are not datapoints at all — the evaluation looks past them to the
//! last N observed periods — so a restart neither fakes "missing data" nor a recovery, and an
//! alarm in ALARM before a restart stays there unless new data says otherwise.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use ecocityhub_store::observe::{AlarmDefinitionRow, AlarmHistoryRow, AlarmStateRow, ObserveStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::names;
use crate::rollups::{align, MetricQuery, PeriodStats, Rollups};
use crate::stats::Statistic;
use crate::{ObserveError, Result};

/// How a datapoint is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThanThreshold,
    GreaterThanOrEqualToThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl Comparison {
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanThreshold => value > threshold,
            Comparison::GreaterThanOrEqualToThreshold => value >= threshold,
            Comparison::LessThanThreshold => value < threshold,
            Comparison::LessThanOrEqualToThreshold => value <= threshold,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Comparison::GreaterThanThreshold => "greater than",
            Comparison::GreaterThanOrEqualToThreshold => "greater than or equal to",
            Comparison::LessThanThreshold => "less than",
            Comparison::LessThanOrEqualToThreshold => "less than or equal to",
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparison::GreaterThanThreshold => "GreaterThanThreshold",
            Comparison::GreaterThanOrEqualToThreshold => "GreaterThanOrEqualToThreshold",
            Comparison::LessThanThreshold => "LessThanThreshold",
            Comparison::LessThanOrEqualToThreshold => "LessThanOrEqualToThreshold",
        })
    }
}

impl FromStr for Comparison {
    type Err = String;

    /// CloudWatch's names or `>`, `>=`, `<`, `<=`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            ">" | "GreaterThanThreshold" => Comparison::GreaterThanThreshold,
            ">=" | "GreaterThanOrEqualToThreshold" => Comparison::GreaterThanOrEqualToThreshold,
            "<" | "LessThanThreshold" => Comparison::LessThanThreshold,
            "<=" | "LessThanOrEqualToThreshold" => Comparison::LessThanOrEqualToThreshold,
            _ => {
                return Err(format!(
                    "comparison {s:?} is not one of >, >=, <, <= (or CloudWatch's names)"
                ))
            }
        })
    }
}

/// How periods with no datapoint count (CloudWatch's TreatMissingData).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TreatMissing {
    /// Not counted; all missing → INSUFFICIENT_DATA.
    #[default]
    Missing,
    /// As within the threshold.
    NotBreaching,
    /// As breaching.
    Breaching,
    /// Not counted; all missing → the state stays.
    Ignore,
}

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub const fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(s: &str) -> Option<AlarmState> {
        Some(match s {
            "OK" => AlarmState::Ok,
            "ALARM" => AlarmState::Alarm,
            "INSUFFICIENT_DATA" => AlarmState::InsufficientData,
            _ => return None,
        })
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(Comparison);

fn default_period() -> i64 {
    60
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// One alarm, as written in the TOML file (`[[alarms]]`) or on the admin pages.
///
/// ```toml
/// [[alarms]]
/// name = "http-5xx-rate"
/// metric = { name = "ecocityhub_http_requests_total", dimensions = { status_class = "5xx" } }
/// divide_by = { name = "ecocityhub_http_requests_total" }
/// statistic = "sum"
/// period_seconds = 60
/// evaluation_periods = 5
/// datapoints_to_alarm = 3
/// threshold = 0.05
/// comparison = ">"
/// treat_missing_data = "notBreaching"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmDefinition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub metric: MetricQuery,
    /// When set, each datapoint is `metric / divide_by` (same statistic; none when the divisor
    /// is 0): a rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divide_by: Option<MetricQuery>,
    pub statistic: Statistic,
    #[serde(default = "default_period")]
    pub period_seconds: i64,
    /// N.
    #[serde(default = "one")]
    pub evaluation_periods: u32,
    /// M (default N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapoints_to_alarm: Option<u32>,
    pub threshold: f64,
    pub comparison: Comparison,
    #[serde(default)]
    pub treat_missing_data: TreatMissing,
    /// The notification topic state changes go to (the sink decides what none means).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// The longest span an alarm may look at (N × period).
pub const MAX_EVALUATION_SPAN: i64 = 7 * 86_400;

impl AlarmDefinition {
    /// M.
    pub fn datapoints_to_alarm(&self) -> u32 {
        self.datapoints_to_alarm.unwrap_or(self.evaluation_periods)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(ObserveError::InvalidAlarm {
                name: self.name.clone(),
                reason,
            })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 255
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return bad("a name is 1–255 letters, digits, '-', '_' or '.'".into());
        }
        if self.metric.name.is_empty() || self.divide_by.as_ref().is_some_and(|d| d.name.is_empty())
        {
            return bad("the metric needs a name".into());
        }
        if self.period_seconds < 60 || self.period_seconds % 60 != 0 {
            return bad(format!(
                "period_seconds {} is not a multiple of 60",
                self.period_seconds
            ));
        }
        let (n, m) = (self.evaluation_periods, self.datapoints_to_alarm());
        if n == 0 || m == 0 || m > n {
            return bad(format!(
                "datapoints_to_alarm ({m}) must be between 1 and evaluation_periods ({n})"
            ));
        }
        if i64::from(n) * self.period_seconds > MAX_EVALUATION_SPAN {
            return bad("evaluation_periods × period_seconds is more than 7 days".into());
        }
        if !self.threshold.is_finite() {
            return bad("the threshold must be a number".into());
        }
        Ok(())
    }

    /// Reads `[[alarms]]` tables from TOML text (`alarms = [...]` at the top level).
    pub fn from_toml(text: &str) -> Result<Vec<AlarmDefinition>> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            alarms: Vec<AlarmDefinition>,
        }
        let file: File = toml::from_str(text).map_err(|e| ObserveError::Config(e.to_string()))?;
        for a in &file.alarms {
            a.validate()?;
        }
        Ok(file.alarms)
    }
}

/// The alarms every installation has (a TOML alarm of the same name replaces one, and
/// `enabled = false` turns it off).
pub fn builtin_alarms() -> Vec<AlarmDefinition> {
    let requests = MetricQuery::new(names::HTTP_REQUESTS.name);
    let readings = MetricQuery::new(names::READINGS.name);
    let base = |name: &str, description: &str, metric: MetricQuery, statistic: Statistic| {
        AlarmDefinition {
            name: name.into(),
            description: description.into(),
            metric,
            divide_by: None,
            statistic,
            period_seconds: 60,
            evaluation_periods: 1,
            datapoints_to_alarm: None,
            threshold: 0.0,
            comparison: Comparison::GreaterThanThreshold,
            treat_missing_data: TreatMissing::NotBreaching,
            topic: Some("operators".into()),
            enabled: true,
        }
    };
    vec![
        AlarmDefinition {
            divide_by: Some(requests.clone()),
            evaluation_periods: 5,
            datapoints_to_alarm: Some(3),
            threshold: 0.05,
            ..base(
                "http-5xx-rate",
                "More than 5 % of requests failed with a 5xx in 3 of the last 5 minutes.",
                requests.clone().with("status_class", "5xx"),
                Statistic::Sum,
            )
        },
        AlarmDefinition {
            period_seconds: 300,
            evaluation_periods: 3,
            datapoints_to_alarm: Some(2),
            threshold: 1.0,
            ..base(
                "http-p99-latency",
                "The 99th percentile of response times was over 1 s in 2 of the last three 5-minute periods.",
                MetricQuery::new(names::HTTP_DURATION.name),
                Statistic::Percentile(99.0),
            )
        },
        AlarmDefinition {
            divide_by: Some(readings.clone()),
            period_seconds: 300,
            evaluation_periods: 3,
            datapoints_to_alarm: Some(2),
            threshold: 0.2,
            ..base(
                "ingest-rejection-rate",
                "More than 20 % of the readings sent were rejected in 2 of the last three 5-minute periods.",
                readings.with("outcome", "rejected"),
                Statistic::Sum,
            )
        },
        AlarmDefinition {
            period_seconds: 300,
            evaluation_periods: 3,
            treat_missing_data: TreatMissing::Missing,
            ..base(
                "station-silent",
                "An active station that reported in the last 30 days has sent nothing for over 2 hours.",
                MetricQuery::new(names::STATIONS_SILENT.name),
                Statistic::Maximum,
            )
        },
        base(
            "outbox-dead-letters",
            "Messages in the outbox were given up on.",
            MetricQuery::new(names::QUEUE_DEAD_LETTERS.name).with("queue", "outbox"),
            Statistic::Maximum,
        ),
        AlarmDefinition {
            period_seconds: 300,
            threshold: 26.0 * 3600.0,
            treat_missing_data: TreatMissing::Missing,
            ..base(
                "backup-age",
                "The newest database backup is more than 26 hours old.",
                MetricQuery::new(names::BACKUP_NEWEST_AGE.name),
                Statistic::Maximum,
            )
        },
    ]
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub state: AlarmState,
    pub reason: String,
    pub reason_data: serde_json::Value,
}

fn stamp(ts: i64) -> String {
    Utc.timestamp_opt(ts, 0).single().map_or_else(
        || ts.to_string(),
        |t| t.format("%d/%m/%y %H:%M:%S").to_string(),
    )
}

/// Decides the state from the last (at most N) observed periods, oldest first: `(period start,
/// datapoint)`. With fewer than M observed periods nothing can be decided and the state stays.
pub fn evaluate(
    def: &AlarmDefinition,
    points: &[(i64, Option<f64>)],
    current: AlarmState,
) -> Evaluation {
    let n = def.evaluation_periods as usize;
    let m = def.datapoints_to_alarm() as usize;
    let points = &points[points.len().saturating_sub(n)..];
    let data = json!({
        "version": "1.0",
        "statistic": def.statistic.to_string(),
        "period": def.period_seconds,
        "recentDatapoints": points.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        "startDates": points.iter().map(|(t, _)| stamp(*t)).collect::<Vec<_>>(),
        "threshold": def.threshold,
    });
    let stay = |reason: String| Evaluation {
        state: current,
        reason,
        reason_data: data.clone(),
    };
    if points.len() < m {
        return stay(format!(
            "{} observed period(s), {m} needed to decide: state unchanged",
            points.len()
        ));
    }
    let breaching_missing = def.treat_missing_data == TreatMissing::Breaching;
    let mut breaching = 0;
    let mut present = 0;
    for (_, v) in points {
        match v {
            Some(v) => {
                present += 1;
                breaching += usize::from(def.comparison.breaches(*v, def.threshold));
            }
            None if breaching_missing => breaching += 1,
            None => {}
        }
    }
    let counts_missing = matches!(
        def.treat_missing_data,
        TreatMissing::Breaching | TreatMissing::NotBreaching
    );
    if present == 0 && !counts_missing {
        if def.treat_missing_data == TreatMissing::Ignore {
            return stay("no datapoints (missing data ignored): state unchanged".into());
        }
        return Evaluation {
            state: AlarmState::InsufficientData,
            reason: format!(
                "Insufficient Data: {} datapoints were unknown.",
                points.len()
            ),
            reason_data: data,
        };
    }
    // Missing data not counted: fewer datapoints than M may decide, as in CloudWatch.
    let required = if counts_missing { m } else { m.min(present) };
    let shown: Vec<String> = points
        .iter()
        .rev()
        .map(|(t, v)| match v {
            Some(v) => format!("{v} ({})", stamp(*t)),
            None => format!("missing ({})", stamp(*t)),
        })
        .collect();
    let (state, verb) = if breaching >= required {
        (AlarmState::Alarm, "were")
    } else {
        (AlarmState::Ok, "were not")
    };
    let reason = format!(
        "Threshold Crossed: {breaching} out of the last {} datapoints [{}] {verb} {} the threshold ({}) (minimum {required} datapoints for OK -> ALARM transition).",
        points.len(),
        shown.join(", "),
        def.comparison.words(),
        def.threshold,
    );
    Evaluation {
        state,
        reason,
        reason_data: data,
    }
}

/// A change of state, as CloudWatch's SNS message for an alarm names its fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmEvent {
    pub alarm_name: String,
    pub alarm_description: String,
    pub new_state_value: String,
    pub new_state_reason: String,
    pub old_state_value: String,
    /// RFC 3339.
    pub state_change_time: String,
    /// The notification topic of the alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub trigger: Trigger,
}

/// What the alarm watches, in the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Trigger {
    pub metric_name: String,
    pub dimensions: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divided_by: Option<String>,
    pub statistic: String,
    pub period: i64,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub comparison_operator: String,
    pub threshold: f64,
    pub treat_missing_data: TreatMissing,
}

impl AlarmEvent {
    fn new(def: &AlarmDefinition, change: &AlarmHistoryRow) -> AlarmEvent {
        AlarmEvent {
            alarm_name: def.name.clone(),
            alarm_description: def.description.clone(),
            new_state_value: change.new_state.clone(),
            new_state_reason: change.reason.clone(),
            old_state_value: change.old_state.clone(),
            state_change_time: change.at.to_rfc3339(),
            topic: def.topic.clone(),
            trigger: Trigger {
                metric_name: def.metric.name.clone(),
                dimensions: def.metric.dimensions.clone(),
                divided_by: def.divide_by.as_ref().map(|d| d.name.clone()),
                statistic: def.statistic.to_string(),
                period: def.period_seconds,
                evaluation_periods: def.evaluation_periods,
                datapoints_to_alarm: def.datapoints_to_alarm(),
                comparison_operator: def.comparison.to_string(),
                threshold: def.threshold,
                treat_missing_data: def.treat_missing_data,
            },
        }
    }

    /// The subject line a notification may use.
    pub fn subject(&self) -> String {
        format!(
            "{}: \"{}\" is {} (was {})",
            self.new_state_value, self.alarm_name, self.new_state_value, self.old_state_value
        )
    }
}

/// Where changes of state go: the notification layer (a topic) implements it.
#[async_trait]
pub trait AlarmSink: Send + Sync {
    /// Hands the change on; an error leaves it pending, to be offered again.
    async fn alarm_changed(&self, event: &AlarmEvent) -> std::result::Result<(), String>;
}

/// A sink that writes changes to the log (until a notification topic is connected).
pub struct LogSink;

#[async_trait]
impl AlarmSink for LogSink {
    async fn alarm_changed(&self, event: &AlarmEvent) -> std::result::Result<(), String> {
        tracing::warn!(
            alarm = %event.alarm_name,
            state = %event.new_state_value,
            was = %event.old_state_value,
            reason = %event.new_state_reason,
            "alarm state changed"
        );
        Ok(())
    }
}

/// Where a definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Config,
    Admin,
}

impl Origin {
    pub const fn as_str(self) -> &'static str {
        match self {
            Origin::Builtin => "builtin",
            Origin::Config => "config",
            Origin::Admin => "admin",
        }
    }
}

/// An alarm with its current state, for pages.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmStatus {
    pub definition: AlarmDefinition,
    pub origin: String,
    pub state: AlarmState,
    pub reason: String,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Evaluates the stored alarms against the rollups.
#[derive(Clone)]
pub struct AlarmEngine {
    store: Arc<dyn ObserveStore>,
    rollups: Rollups,
    sink: Arc<dyn AlarmSink>,
}

impl AlarmEngine {
    pub fn new(store: Arc<dyn ObserveStore>, rollups: Rollups, sink: Arc<dyn AlarmSink>) -> Self {
        AlarmEngine {
            store,
            rollups,
            sink,
        }
    }

    /// Stores the built-in alarms with the configured ones over them (by name). A definition an
    /// admin edited is left as it is.
    pub async fn install(&self, configured: &[AlarmDefinition], now: DateTime<Utc>) -> Result<()> {
        let mut wanted: BTreeMap<String, (AlarmDefinition, Origin)> = builtin_alarms()
            .into_iter()
            .map(|a| (a.name.clone(), (a, Origin::Builtin)))
            .collect();
        for a in configured {
            a.validate()?;
            wanted.insert(a.name.clone(), (a.clone(), Origin::Config));
        }
        let stored: BTreeMap<String, AlarmDefinitionRow> = self
            .store
            .alarm_definitions()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        for (name, (def, origin)) in wanted {
            let text = serde_json::to_string(&def).expect("definitions serialise");
            match stored.get(&name) {
                Some(row) if row.origin == Origin::Admin.as_str() => continue,
                Some(row) if row.definition == text && row.origin == origin.as_str() => continue,
                _ => self.write(&def, origin, now).await?,
            }
        }
        Ok(())
    }

    async fn write(&self, def: &AlarmDefinition, origin: Origin, now: DateTime<Utc>) -> Result<()> {
        self.store
            .put_alarm_definition(&AlarmDefinitionRow {
                name: def.name.clone(),
                definition: serde_json::to_string(def).expect("definitions serialise"),
                origin: origin.as_str().into(),
                updated_at: now,
            })
            .await?;
        Ok(())
    }

    /// Creates or replaces an alarm (the admin pages).
    pub async fn put(&self, def: &AlarmDefinition, now: DateTime<Utc>) -> Result<()> {
        def.validate()?;
        self.write(def, Origin::Admin, now).await
    }

    /// Deletes an alarm and its state; its history stays.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        Ok(self.store.delete_alarm_definition(name).await?)
    }

    /// Every stored alarm with its state.
    pub async fn alarms(&self) -> Result<Vec<AlarmStatus>> {
        let states: BTreeMap<String, AlarmStateRow> = self
            .store
            .alarm_states()
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut out = Vec::new();
        for row in self.store.alarm_definitions().await? {
            let definition = parse_definition(&row)?;
            let state = states.get(&row.name);
            out.push(AlarmStatus {
                definition,
                origin: row.origin,
                state: state
                    .and_then(|s| AlarmState::parse(&s.state))
                    .unwrap_or(AlarmState::InsufficientData),
                reason: state.map_or_else(
                    || "Unchecked: Initial alarm creation".into(),
                    |s| s.reason.clone(),
                ),
                updated_at: state.map(|s| s.updated_at),
            });
        }
        Ok(out)
    }

    /// A page of state changes, newest first.
    pub async fn history(
        &self,
        name: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AlarmHistoryRow>> {
        Ok(self.store.alarm_history(name, before_id, limit).await?)
    }

    /// The datapoints of the last N observed periods ending by `end` (epoch seconds, the end of
    /// the last minute whose rollups are written), looking back N periods plus at least an hour.
    pub async fn datapoints(
        &self,
        def: &AlarmDefinition,
        end: i64,
    ) -> Result<Vec<(i64, Option<f64>)>> {
        let period = def.period_seconds;
        let to = align(end, period);
        // Far enough back to find N observed periods after an hour of downtime.
        let window = i64::from(def.evaluation_periods) * period;
        let span = (window + window.max(3600)).min(MAX_EVALUATION_SPAN);
        let from = to - span;
        let now = end;
        let counter =
            |q: &MetricQuery| names::find(&q.name).is_some_and(|m| m.kind == names::Kind::Counter);
        let top = self
            .rollups
            .periods(&def.metric, from, to, period, now)
            .await?;
        let bottom: Option<Vec<PeriodStats>> = match &def.divide_by {
            Some(q) => Some(self.rollups.periods(q, from, to, period, now).await?),
            None => None,
        };
        let mut points = Vec::new();
        for (i, p) in top.iter().enumerate() {
            if !p.observed {
                continue;
            }
            let value = p.value(def.statistic, counter(&def.metric));
            let value = match (&bottom, &def.divide_by) {
                (Some(b), Some(q)) => match (value, b[i].value(def.statistic, counter(q))) {
                    (Some(v), Some(d)) if d != 0.0 => Some(v / d),
                    _ => None,
                },
                _ => value,
            };
            points.push((p.start, value));
        }
        let n = def.evaluation_periods as usize;
        Ok(points.split_off(points.len().saturating_sub(n)))
    }

    /// Evaluates every enabled alarm with the rollups written up to `end` (epoch seconds);
    /// saves new states and history. Returns the changes (their notifications are pending until
    /// [`AlarmEngine::deliver`] hands them to the sink).
    pub async fn evaluate(&self, end: i64, now: DateTime<Utc>) -> Result<Vec<AlarmHistoryRow>> {
        let states: BTreeMap<String, AlarmStateRow> = self
            .store
            .alarm_states()
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut changes = Vec::new();
        for row in self.store.alarm_definitions().await? {
            let def = match parse_definition(&row) {
                Ok(d) if d.enabled => d,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(alarm = %row.name, error = %e, "stored alarm definition cannot be read");
                    continue;
                }
            };
            let through = align(end, def.period_seconds);
            let stored = states.get(&def.name);
            if stored.and_then(|s| s.evaluated_through) == Some(through) {
                continue;
            }
            let current = stored
                .and_then(|s| AlarmState::parse(&s.state))
                .unwrap_or(AlarmState::InsufficientData);
            let points = self.datapoints(&def, end).await?;
            let result = evaluate(&def, &points, current);
            let changed = stored.is_none() && result.state != AlarmState::InsufficientData
                || stored.is_some() && result.state != current;
            let state = AlarmStateRow {
                name: def.name.clone(),
                state: result.state.as_str().into(),
                reason: result.reason.clone(),
                reason_data: result.reason_data.to_string(),
                updated_at: if changed {
                    now
                } else {
                    stored.map_or(now, |s| s.updated_at)
                },
                evaluated_through: Some(through),
            };
            let change = changed.then(|| AlarmHistoryRow {
                id: 0,
                name: def.name.clone(),
                at: now,
                old_state: current.as_str().into(),
                new_state: result.state.as_str().into(),
                reason: result.reason.clone(),
                reason_data: result.reason_data.to_string(),
                notified_at: None,
            });
            let id = self.store.save_alarm_state(&state, change.as_ref()).await?;
            if let (Some(mut c), Some(id)) = (change, id) {
                c.id = id;
                tracing::info!(alarm = %c.name, from = %c.old_state, to = %c.new_state, "alarm state changed");
                changes.push(c);
            }
        }
        Ok(changes)
    }

    /// Offers every pending change to the sink, oldest first; stops at the first refusal.
    /// Returns how many were delivered.
    pub async fn deliver(&self, now: DateTime<Utc>) -> Result<usize> {
        let definitions: BTreeMap<String, AlarmDefinition> = self
            .store
            .alarm_definitions()
            .await?
            .iter()
            .filter_map(|r| parse_definition(r).ok().map(|d| (r.name.clone(), d)))
            .collect();
        let mut delivered = 0;
        for change in self.store.unnotified_alarm_changes(100).await? {
            let event = match definitions.get(&change.name) {
                Some(def) => AlarmEvent::new(def, &change),
                None => {
                    // Deleted since: nothing to say about it.
                    self.store.mark_alarm_notified(change.id, now).await?;
                    continue;
                }
            };
            if let Err(e) = self.sink.alarm_changed(&event).await {
                tracing::warn!(alarm = %change.name, error = %e, "alarm notification not delivered; will retry");
                break;
            }
            self.store.mark_alarm_notified(change.id, now).await?;
            delivered += 1;
        }
        Ok(delivered)
    }
}

fn parse_definition(row: &AlarmDefinitionRow) -> Result<AlarmDefinition> {
    serde_json::from_str(&row.definition).map_err(|e| ObserveError::InvalidAlarm {
        name: row.name.clone(),
        reason: format!("stored definition: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(m: u32, n: u32, missing: TreatMissing) -> AlarmDefinition {
        AlarmDefinition {
            name: "t".into(),
            description: String::new(),
            metric: MetricQuery::new("x"),
            divide_by: None,
            statistic: Statistic::Maximum,
            period_seconds: 60,
            evaluation_periods: n,
            datapoints_to_alarm: Some(m),
            threshold: 0.0,
            comparison: Comparison::GreaterThanThreshold,
            treat_missing_data: missing,
            topic: None,
            enabled: true,
        }
    }

    /// `0` within the threshold, `X` breaching, `-` missing, oldest first.
    fn points(s: &str) -> Vec<(i64, Option<f64>)> {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .enumerate()
            .map(|(i, c)| {
                let v = match c {
                    '0' => Some(0.0),
                    'X' => Some(1.0),
                    _ => None,
                };
                (i as i64 * 60, v)
            })
            .collect()
    }

    use AlarmState::{Alarm, InsufficientData as Insufficient, Ok as Good};
    use TreatMissing::*;

    #[test]
    fn missing_data_is_treated_as_cloudwatch_documents_for_three_of_three() {
        // Rows: datapoints; columns: missing, ignore, breaching, notBreaching, from OK.
        let table = [
            ("0 - X", [Good, Good, Good, Good]),
            ("0 0 -", [Good, Good, Good, Good]),
            ("- - -", [Insufficient, Good, Alarm, Good]),
            ("X X -", [Alarm, Alarm, Alarm, Good]),
            ("- - X", [Alarm, Alarm, Alarm, Good]),
            ("X X X", [Alarm, Alarm, Alarm, Alarm]),
        ];
        for (data, expected) in table {
            for (treat, want) in [Missing, Ignore, Breaching, NotBreaching]
                .into_iter()
                .zip(expected)
            {
                let got = evaluate(&def(3, 3, treat), &points(data), Good).state;
                assert_eq!(got, want, "{data} with {treat:?}");
            }
        }
    }

    #[test]
    fn m_out_of_n() {
        let d = def(3, 5, NotBreaching);
        assert_eq!(evaluate(&d, &points("X 0 X 0 X"), Good).state, Alarm);
        assert_eq!(evaluate(&d, &points("X 0 X 0 0"), Alarm).state, Good);
        // Only the last N count.
        assert_eq!(evaluate(&d, &points("X X X 0 0 0 0 0"), Alarm).state, Good);
        let e = evaluate(&d, &points("X 0 X 0 X"), Good);
        assert!(
            e.reason
                .starts_with("Threshold Crossed: 3 out of the last 5 datapoints"),
            "{}",
            e.reason
        );
        assert_eq!(
            e.reason_data["recentDatapoints"].as_array().unwrap().len(),
            5
        );
    }

    #[test]
    fn too_few_observed_periods_leave_the_state_alone() {
        let d = def(3, 5, NotBreaching);
        assert_eq!(evaluate(&d, &points("X X"), Alarm).state, Alarm);
        assert_eq!(evaluate(&d, &points("0 0"), Alarm).state, Alarm);
        assert_eq!(evaluate(&d, &points(""), Insufficient).state, Insufficient);
    }

    #[test]
    fn definitions_read_from_toml_and_bad_ones_are_refused() {
        let text = r#"
            [[alarms]]
            name = "queue-depth"
            metric = { name = "ecocityhub_queue_depth", dimensions = { queue = "jobs" } }
            statistic = "p99"
            period_seconds = 120
            evaluation_periods = 3
            datapoints_to_alarm = 2
            threshold = 100
            comparison = ">="
            treat_missing_data = "breaching"
        "#;
        let alarms = AlarmDefinition::from_toml(text).unwrap();
        assert_eq!(alarms.len(), 1);
        let a = &alarms[0];
        assert_eq!(a.metric.dimensions["queue"], "jobs");
        assert_eq!(a.statistic, Statistic::Percentile(99.0));
        assert_eq!(a.comparison, Comparison::GreaterThanOrEqualToThreshold);
        assert_eq!(a.treat_missing_data, Breaching);
        assert!(a.enabled);
        let back: AlarmDefinition =
            serde_json::from_str(&serde_json::to_string(a).unwrap()).unwrap();
        assert_eq!(&back, a);

        for (bad, why) in [
            (text.replace("120", "90"), "multiple of 60"),
            (
                text.replace("datapoints_to_alarm = 2", "datapoints_to_alarm = 4"),
                "between 1",
            ),
            (text.replace("\">=\"", "\"=>\""), "comparison"),
            (text.replace("p99", "median"), "statistic"),
            (text.replace("threshold", "treshold"), "unknown field"),
            (text.replace("queue-depth", "queue depth!"), "a name is"),
        ] {
            let err = AlarmDefinition::from_toml(&bad).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn builtin_alarms_are_valid() {
        let all = builtin_alarms();
        assert_eq!(all.len(), 6);
        for a in &all {
            a.validate().unwrap();
        }
    }
}
