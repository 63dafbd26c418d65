//! What the notification layer stores: topics and their subscriptions, the outbox of messages
//! and one delivery row per destination (the worker's queue, with leases, retries and dead
//! letters), citizens' alert rules with their episodes and digests, and its settings (the VAPID
//! key). [`NotifyStore`] is part of every [`crate::Store`].
//!
//! Causes and their messages commit together: [`NotifyStore::put_code_with_mail`] (an identity
//! code and its e-mail), [`NotifyStore::record_episode`] (an alert episode opening or closing and
//! its deliveries) and [`NotifyStore::send_digest`]. The store knows nothing of filter policies
//! or rule semantics; rule specs, states and attributes are JSON text owned by the notify crate.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::identity::VerificationCode;
use crate::Result;

/// A topic: one purpose messages are published for (a station's alerts, account mail…).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRow {
    pub id: String,
    /// `station_alerts`, `area_alerts`, `account_mail`, `operator_alarms`, `report_updates`.
    pub kind: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A destination subscribed to a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRow {
    pub id: String,
    pub topic_id: String,
    /// The user who made it; `None` for subscriptions made by the operators' configuration.
    pub owner: Option<String>,
    /// `email`, `webhook`, `webpush` or `live`.
    pub protocol: String,
    /// The address, URL, push endpoint or (live) user id.
    pub endpoint: String,
    /// `pending` or `confirmed`.
    pub status: String,
    pub confirm_token_hash: Option<String>,
    pub confirm_expires_at: Option<DateTime<Utc>>,
    /// The filter policy (JSON), `None` for every message.
    pub filter_policy: Option<String>,
    /// Webhook signing secret (`whsec_…`).
    pub secret: Option<String>,
    /// The secret before the last rotation, valid until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Web Push: the browser's keys (JSON `{"p256dh": …, "auth": …}`).
    pub endpoint_keys: Option<String>,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

/// A message of the outbox. Its `id` is stable: retries and re-drives send the same id.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub id: String,
    pub topic_id: String,
    /// `email` for a message to one address (identity mail), `topic` for a published message.
    pub channel: String,
    /// The address of a direct message, the topic of a published one.
    pub recipient: String,
    pub subject: String,
    /// Plain text.
    pub body: String,
    pub html: Option<String>,
    /// Message attributes (a JSON object), what filter policies look at.
    pub attributes: String,
    /// The structured message (JSON) sent to webhooks, push and live pages.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// A delivery to write with its message.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub subscription_id: Option<String>,
    pub protocol: String,
    pub endpoint: String,
    /// Whose page a `live` delivery goes to (and whose replay lists it).
    pub user_id: Option<String>,
    /// A second delivery with the same key is dropped, whatever its message.
    pub idempotency_key: Option<String>,
    /// Not sent before this (milliseconds since the epoch): quiet hours defer deliveries.
    pub not_before_ms: i64,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Due at `next_attempt_ms`, or leased to a worker.
    Pending,
    Delivered,
    /// Every attempt failed: a dead letter, until re-driven.
    Dead,
    /// Its destination is gone (an expired push subscription).
    Discarded,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            "discarded" => DeliveryStatus::Discarded,
            _ => return None,
        })
    }
}

/// A delivery as an admin sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: i64,
    pub message_id: String,
    pub topic_id: String,
    pub subject: String,
    pub subscription_id: Option<String>,
    pub protocol: String,
    pub endpoint: String,
    pub user_id: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A delivery leased to a worker, with all it needs to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub id: i64,
    /// Proof of the lease: only its holder can record the outcome.
    pub lease_token: String,
    /// Attempts including this one.
    pub attempts: i64,
    pub protocol: String,
    pub endpoint: String,
    pub user_id: Option<String>,
    pub message: MessageRow,
    /// `None` for a direct message (identity mail) or when the subscription is gone.
    pub subscription: Option<SubscriptionRow>,
}

/// What came of an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at `at_ms`.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// The last attempt failed: a dead letter.
    Dead {
        error: String,
    },
    /// The destination is gone: the delivery is discarded and its subscription deleted.
    Gone {
        error: String,
    },
}

/// Counts of deliveries by status, for the admin page and health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub discarded: u64,
    /// Pending deliveries that have failed at least once.
    pub retrying: u64,
}

/// A message for a signed-in page, replayed after a `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEventRow {
    /// The delivery id: the event id, increasing per user.
    pub id: i64,
    pub message: MessageRow,
}

/// A citizen's alert rule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRuleRow {
    pub id: String,
    pub user_id: String,
    /// The rule (JSON).
    pub spec: String,
    /// The subscription ids it sends to.
    pub channels: Vec<String>,
    pub paused: bool,
    /// Evaluation state (JSON).
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An episode of a rule or an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRow {
    pub id: String,
    /// The rule id, or an alarm's key such as `silent:STATION`.
    pub key: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// JSON.
    pub detail: String,
}

/// An episode opening or closing.
#[derive(Debug, Clone, PartialEq)]
pub enum EpisodeChange {
    Open(EpisodeRow),
    Close {
        id: String,
        closed_at: DateTime<Utc>,
    },
    /// The rule's state changed without an episode opening or closing.
    None,
}

/// What an episode change sends: a message now, or a line of the rule's next digest.
#[derive(Debug, Clone, PartialEq)]
pub enum EpisodeNotice {
    Message {
        message: Box<MessageRow>,
        deliveries: Vec<NewDelivery>,
    },
    DigestLine {
        rule_id: String,
        line: String,
    },
    Silent,
}

/// An alert waiting for its rule's digest.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestItemRow {
    pub id: i64,
    pub rule_id: String,
    pub line: String,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait NotifyStore: Send + Sync {
    /// Creates the topic unless it exists.
    async fn ensure_topic(&self, topic: &TopicRow) -> Result<()>;
    async fn topic(&self, id: &str) -> Result<Option<TopicRow>>;
    /// Every topic, by id.
    async fn topics(&self) -> Result<Vec<TopicRow>>;

    /// Adds a subscription (its topic must exist).
    async fn insert_subscription(&self, subscription: &SubscriptionRow) -> Result<()>;
    /// Adds many subscriptions in one transaction (imports, benchmarks).
    async fn insert_subscriptions(&self, subscriptions: &[SubscriptionRow]) -> Result<()>;
    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>>;
    /// The confirmed subscriptions of a topic, oldest first.
    async fn confirmed_subscriptions(&self, topic_id: &str) -> Result<Vec<SubscriptionRow>>;
    /// A user's subscriptions, oldest first.
    async fn subscriptions_of(&self, owner: &str) -> Result<Vec<SubscriptionRow>>;
    /// Whether `owner` has confirmed this destination before (on any topic).
    async fn endpoint_confirmed(&self, owner: &str, protocol: &str, endpoint: &str)
        -> Result<bool>;
    /// Confirms the pending subscription whose token hashes to `token_hash` if its token has
    /// not expired at `now`, with every pending subscription of the same owner and destination.
    /// Returns the confirmed subscription.
    async fn confirm_subscription(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriptionRow>>;
    async fn set_filter_policy(&self, id: &str, policy: Option<&str>) -> Result<bool>;
    /// Replaces a webhook's secret; the current one stays valid until `previous_until`.
    async fn rotate_secret(
        &self,
        id: &str,
        secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Deletes the subscription and its unsent deliveries.
    async fn delete_subscription(&self, id: &str) -> Result<bool>;
    /// Forgets pending subscriptions whose token expired before `now`; returns how many.
    async fn purge_unconfirmed(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Writes a message and its deliveries in one transaction. A message whose id exists is
    /// kept as it is; a delivery whose idempotency key exists is dropped. Returns the number
    /// of deliveries written.
    async fn publish(&self, message: &MessageRow, deliveries: &[NewDelivery]) -> Result<u64>;
    /// Stores an identity code and the e-mail that carries it in one transaction.
    async fn put_code_with_mail(
        &self,
        code: &VerificationCode,
        mail: &MessageRow,
        delivery: &NewDelivery,
    ) -> Result<()>;
    async fn message(&self, id: &str) -> Result<Option<MessageRow>>;

    /// Leases up to `limit` due deliveries until `now_ms + lease_ms` (expired leases count as
    /// due) and counts the attempt. PostgreSQL skips rows other workers hold.
    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Records the outcome of an attempt; `false` when the lease was lost (expired and taken).
    async fn complete_delivery(
        &self,
        id: i64,
        lease_token: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Records many outcomes in one transaction (one commit for a worker's whole batch); each
    /// `bool` says whether that lease still held.
    async fn complete_deliveries(
        &self,
        outcomes: &[(i64, String, DeliveryOutcome)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>>;
    /// Deliveries with `status`, newest first, with `id < before` when given.
    async fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>>;
    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>>;
    async fn delivery_counts(&self) -> Result<DeliveryCounts>;
    /// Makes a dead letter due again at `now_ms` with a fresh count of attempts.
    async fn redrive(&self, id: i64, now_ms: i64) -> Result<bool>;
    /// Re-drives every dead letter; returns how many.
    async fn redrive_all(&self, now_ms: i64) -> Result<u64>;
    /// The earliest `next_attempt_ms` of a pending delivery, for the worker's sleep.
    async fn next_due_ms(&self) -> Result<Option<i64>>;
    /// A user's delivered `live` messages with a delivery id above `after`, oldest first.
    async fn live_events_after(
        &self,
        user_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LiveEventRow>>;

    async fn insert_rule(&self, rule: &AlertRuleRow) -> Result<()>;
    /// Writes spec, channels, paused and updated_at (not the state).
    async fn update_rule(&self, rule: &AlertRuleRow) -> Result<bool>;
    async fn delete_rule(&self, id: &str) -> Result<bool>;
    async fn rule(&self, id: &str) -> Result<Option<AlertRuleRow>>;
    async fn rules_of(&self, user_id: &str) -> Result<Vec<AlertRuleRow>>;
    /// Every rule that is not paused.
    async fn active_rules(&self) -> Result<Vec<AlertRuleRow>>;
    /// Stores the rule's state, an episode change and what it sends, in one transaction;
    /// `rule_state` is `(rule id, state JSON)` (alarms have none).
    async fn record_episode(
        &self,
        rule_state: Option<(&str, &str)>,
        change: &EpisodeChange,
        notice: &EpisodeNotice,
    ) -> Result<()>;
    /// Episodes not closed yet.
    async fn open_episodes(&self) -> Result<Vec<EpisodeRow>>;
    async fn episodes_of(&self, key: &str, limit: u32) -> Result<Vec<EpisodeRow>>;
    /// Digest lines not sent yet, by rule and time.
    async fn unsent_digest_items(&self) -> Result<Vec<DigestItemRow>>;
    /// Marks the items sent and writes the digest message, in one transaction.
    async fn send_digest(
        &self,
        item_ids: &[i64],
        message: &MessageRow,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<()>;

    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` unless the key has one; returns the stored value (the first writer wins).
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;
}
