//! Topics, protocols and messages, shaped like SNS: a topic per purpose, a message with a
//! stable id, a subject, plain and HTML text, attributes that filter policies look at, and the
//! structured event (`type`, `timestamp`, `data`, as Standard Webhooks suggests) that webhooks,
//! Web Push and live pages receive.

use chrono::{DateTime, SecondsFormat, Utc};
use ecocityhub_store::notify::{MessageRow, TopicRow};
use serde_json::{json, Map, Value};

use crate::ids;

/// What a topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    StationAlerts,
    AreaAlerts,
    AccountMail,
    OperatorAlarms,
    ReportUpdates,
    NewReports,
}

impl TopicKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            TopicKind::StationAlerts => "station_alerts",
            TopicKind::AreaAlerts => "area_alerts",
            TopicKind::AccountMail => "account_mail",
            TopicKind::OperatorAlarms => "operator_alarms",
            TopicKind::ReportUpdates => "report_updates",
            TopicKind::NewReports => "new_reports",
        }
    }

    pub fn parse(s: &str) -> Option<TopicKind> {
        [
            TopicKind::StationAlerts,
            TopicKind::AreaAlerts,
            TopicKind::AccountMail,
            TopicKind::OperatorAlarms,
            TopicKind::ReportUpdates,
            TopicKind::NewReports,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A topic: its id names its purpose (`station:ID`, `area:KEY`, `account-mail`,
/// `operator-alarms`, `report:ID`, `reports-new`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    pub id: String,
    pub kind: TopicKind,
    pub name: String,
}

impl Topic {
    pub fn station(station: &str) -> Topic {
        Topic {
            id: format!("station:{station}"),
            kind: TopicKind::StationAlerts,
            name: format!("Alerts of station {station}"),
        }
    }

    /// An area's alerts; `key` names the area (such as `51.5200,-0.1500,5km`).
    pub fn area(key: &str) -> Topic {
        Topic {
            id: format!("area:{key}"),
            kind: TopicKind::AreaAlerts,
            name: format!("Alerts of the area {key}"),
        }
    }

    pub fn account_mail() -> Topic {
        Topic {
            id: "account-mail".into(),
            kind: TopicKind::AccountMail,
            name: "Account mail".into(),
        }
    }

    pub fn operator_alarms() -> Topic {
        Topic {
            id: "operator-alarms".into(),
            kind: TopicKind::OperatorAlarms,
            name: "Operator alarms".into(),
        }
    }

    pub fn report(report: &str) -> Topic {
        Topic {
            id: format!("report:{report}"),
            kind: TopicKind::ReportUpdates,
            name: format!("Updates of report {report}"),
        }
    }

    /// Newly filed reports, for operators; messages carry `category`, `lat` and `lon`
    /// attributes, so a filter policy with numeric ranges picks an operator's area.
    pub fn new_reports() -> Topic {
        Topic {
            id: "reports-new".into(),
            kind: TopicKind::NewReports,
            name: "New reports".into(),
        }
    }

    pub fn to_row(&self, now: DateTime<Utc>) -> TopicRow {
        TopicRow {
            id: self.id.clone(),
            kind: self.kind.as_str().into(),
            name: self.name.clone(),
            created_at: now,
        }
    }

    pub fn from_row(row: &TopicRow) -> Option<Topic> {
        Some(Topic {
            id: row.id.clone(),
            kind: TopicKind::parse(&row.kind)?,
            name: row.name.clone(),
        })
    }
}

/// How a subscription is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Email,
    Webhook,
    #[serde(rename = "webpush")]
    WebPush,
    Live,
}

impl Protocol {
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Email => "email",
            Protocol::Webhook => "webhook",
            Protocol::WebPush => "webpush",
            Protocol::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        [
            Protocol::Email,
            Protocol::Webhook,
            Protocol::WebPush,
            Protocol::Live,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// E-mail and webhooks wait for a confirmation; a browser's push permission and a
    /// signed-in page are their own.
    pub const fn needs_confirmation(self) -> bool {
        matches!(self, Protocol::Email | Protocol::Webhook)
    }
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Stable across retries and re-drives: receivers dedupe by it.
    pub id: String,
    pub topic: String,
    /// The event type, such as `alert.opened`, `alert.cleared`, `alarm.silent`, `account.code`.
    pub kind: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attributes: Map<String, Value>,
    pub data: Value,
    pub created_at: DateTime<Utc>,
}

impl Message {
    /// A message with a fresh id.
    pub fn new(topic: &Topic, kind: &str, subject: &str, text: &str) -> Message {
        Message::with_id(ids::new_id("msg_"), topic, kind, subject, text)
    }

    /// A message whose id the caller derives (from a rule's episode, say), so that writing it
    /// twice writes it once.
    pub fn with_id(id: String, topic: &Topic, kind: &str, subject: &str, text: &str) -> Message {
        let mut attributes = Map::new();
        attributes.insert("type".into(), Value::String(kind.into()));
        Message {
            id,
            topic: topic.id.clone(),
            kind: kind.into(),
            subject: subject.into(),
            text: text.into(),
            html: None,
            attributes,
            data: Value::Object(Map::new()),
            created_at: Utc::now(),
        }
    }

    pub fn attribute(mut self, key: &str, value: impl Into<Value>) -> Message {
        self.attributes.insert(key.into(), value.into());
        self
    }

    pub fn html(mut self, html: impl Into<String>) -> Message {
        self.html = Some(html.into());
        self
    }

    pub fn data(mut self, data: Value) -> Message {
        self.data = data;
        self
    }

    pub fn at(mut self, created_at: DateTime<Utc>) -> Message {
        self.created_at = created_at;
        self
    }

    /// The event as webhooks, Web Push and live pages receive it.
    pub fn event(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "timestamp": self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "topic": self.topic,
            "subject": self.subject,
            "text": self.text,
            "data": self.data,
        })
    }

    /// The outbox row; `recipient` is the address of a direct message, or the topic.
    pub fn to_row(&self, channel: &str, recipient: &str) -> MessageRow {
        MessageRow {
            id: self.id.clone(),
            topic_id: self.topic.clone(),
            channel: channel.into(),
            recipient: recipient.into(),
            subject: self.subject.clone(),
            body: self.text.clone(),
            html: self.html.clone(),
            attributes: Value::Object(self.attributes.clone()).to_string(),
            payload: self.event().to_string(),
            created_at: self.created_at,
        }
    }

    pub fn from_row(row: &MessageRow) -> Message {
        let attributes =
            serde_json::from_str::<Map<String, Value>>(&row.attributes).unwrap_or_default();
        let event: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
        Message {
            id: row.id.clone(),
            topic: row.topic_id.clone(),
            kind: event["type"].as_str().unwrap_or("message").to_string(),
            subject: row.subject.clone(),
            text: row.body.clone(),
            html: row.html.clone(),
            attributes,
            data: event.get("data").cloned().unwrap_or(Value::Null),
            created_at: row.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_through_its_row() {
        let m = Message::new(
            &Topic::station("s1"),
            "alert.opened",
            "Air alert",
            "PM2.5 high",
        )
        .attribute("aqi", 160)
        .html("<p>PM2.5 high</p>")
        .data(json!({"aqi": 160}));
        let row = m.to_row("topic", "station:s1");
        let mut back = Message::from_row(&row);
        back.created_at = m.created_at;
        let trunc = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp(), 0).unwrap();
        assert_eq!(trunc(back.created_at), trunc(m.created_at));
        assert_eq!(back, m);
        assert_eq!(back.attributes["type"], "alert.opened");
        let event: Value = serde_json::from_str(&row.payload).unwrap();
        assert_eq!(event["id"], m.id);
        assert_eq!(event["data"]["aqi"], 160);
    }

    #[test]
    fn topics_and_protocols_name_themselves() {
        assert_eq!(Topic::station("s1").id, "station:s1");
        let t = Topic::operator_alarms();
        assert_eq!(Topic::from_row(&t.to_row(Utc::now())), Some(t));
        assert_eq!(Protocol::parse("webpush"), Some(Protocol::WebPush));
        assert_eq!(Protocol::parse("sms"), None);
        assert!(Protocol::Email.needs_confirmation() && !Protocol::Live.needs_confirmation());
    }
}
