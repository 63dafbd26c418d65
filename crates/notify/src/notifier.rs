//! The publishing side every other part speaks through: [`Publisher`] is the SNS-shaped trait
//! (topics, subscriptions, publish with fan-out by filter policy) and [`Notifier`] its embedded
//! implementation on the store's outbox. Publishing only writes rows (a message and one delivery
//! per matching confirmed subscription) and wakes the worker; the worker sends.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ecocityhub_store::identity::VerificationCode;
use ecocityhub_store::notify::{DeliveryRow, DeliveryStatus, NewDelivery, SubscriptionRow};
use ecocityhub_store::{Store, StoreError};
use serde_json::Value;
use tokio::sync::Notify;

use crate::channels::webpush::SubscriptionKeys;
use crate::channels::{LiveHub, MailConfig};
use crate::filter::{self, FilterPolicy, FilterPolicyError};
use crate::message::{Message, Protocol, Topic};
use crate::ssrf::{self, UrlError};
use crate::tokens::UnsubscribeKey;
use crate::{ids, signing};

/// How long a confirmation link is good for (SNS: 3 days).
pub const CONFIRM_TTL_DAYS: i64 = 3;
/// How long a rotated-out webhook secret keeps signing.
pub const ROTATION_GRACE_HOURS: i64 = 24;

/// What went wrong, worded for a problem+json answer.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the destination URL is refused: {0}")]
    Url(#[from] UrlError),
    #[error("the filter policy is refused: {0}")]
    FilterPolicy(#[from] FilterPolicyError),
    #[error("{0:?} is not an e-mail address")]
    Email(String),
    #[error("the push subscription is not valid: {0}")]
    PushKeys(String),
    #[error("Web Push is not set up on this server")]
    PushUnavailable,
    #[error("no such subscription")]
    UnknownSubscription,
    #[error("the subscription is not a webhook")]
    NotAWebhook,
    #[error("the rule is not valid: {0}")]
    Rule(#[from] crate::rules::RuleError),
    #[error("the AWS service failed: {0}")]
    Aws(String),
}

impl NotifyError {
    /// The HTTP status for an API answer.
    pub fn status(&self) -> u16 {
        match self {
            NotifyError::Store(_) | NotifyError::Aws(_) => 503,
            NotifyError::PushUnavailable => 503,
            NotifyError::UnknownSubscription => 404,
            NotifyError::NotAWebhook => 409,
            _ => 422,
        }
    }

    /// A stable code for problem+json.
    pub fn code(&self) -> &'static str {
        match self {
            NotifyError::Store(_) => "store_unavailable",
            NotifyError::Url(UrlError::Forbidden { .. }) => "webhook_url_internal",
            NotifyError::Url(UrlError::Scheme(_)) => "webhook_url_not_https",
            NotifyError::Url(_) => "webhook_url_invalid",
            NotifyError::FilterPolicy(_) => "filter_policy_invalid",
            NotifyError::Email(_) => "email_invalid",
            NotifyError::PushKeys(_) => "push_subscription_invalid",
            NotifyError::PushUnavailable => "push_unavailable",
            NotifyError::UnknownSubscription => "subscription_not_found",
            NotifyError::NotAWebhook => "not_a_webhook",
            NotifyError::Rule(_) => "rule_invalid",
            NotifyError::Aws(_) => "aws_unavailable",
        }
    }
}

pub type NotifyResult<T> = Result<T, NotifyError>;

/// A subscription to make.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeRequest {
    pub topic: Topic,
    pub owner: Option<String>,
    pub protocol: Protocol,
    /// The address, URL or push endpoint; for `live`, ignored (the owner's id is used).
    pub endpoint: String,
    pub filter_policy: Option<Value>,
    /// `webpush`: the browser's keys.
    pub push_keys: Option<SubscriptionKeys>,
    /// The endpoint is the owner's verified account address: no confirmation needed.
    pub endpoint_verified: bool,
}

/// A subscription made.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribed {
    pub subscription: SubscriptionRow,
    /// A webhook's signing secret: shown to the owner this once.
    pub secret: Option<String>,
    /// A confirmation message is on its way (e-mail and webhooks not confirmed before).
    pub confirmation_sent: bool,
}

/// What a publish wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReceipt {
    pub message_id: String,
    /// Deliveries written (matching confirmed subscriptions, less repeated idempotency keys).
    pub deliveries: u64,
}

/// The SNS-shaped interface: the embedded [`Notifier`] and, with the `aws` feature, SNS.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Makes the topic exist.
    async fn create_topic(&self, topic: &Topic) -> NotifyResult<()>;
    /// Subscribes a destination to a topic (pending until confirmed, for e-mail and webhooks).
    async fn subscribe(&self, request: &SubscribeRequest) -> NotifyResult<Subscribed>;
    /// Publishes to every confirmed subscription of the topic whose filter policy matches the
    /// message's attributes.
    async fn publish(&self, topic: &Topic, message: &Message) -> NotifyResult<PublishReceipt>;
}

/// Settings of the embedded notifier.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// Where links in messages point (confirmations, unsubscribe): the public URL.
    pub public_url: String,
    pub mail: MailConfig,
    pub webhooks: crate::channels::WebhookConfig,
    pub push: crate::channels::PushConfig,
    pub worker: crate::worker::WorkerConfig,
    pub alarms: crate::alarms::AlarmConfig,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            public_url: "http://127.0.0.1:8080".into(),
            mail: MailConfig::default(),
            webhooks: Default::default(),
            push: Default::default(),
            worker: Default::default(),
            alarms: Default::default(),
        }
    }
}

/// The embedded notifier: writes the outbox, wakes the worker.
pub struct Notifier {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    pub live: LiveHub,
    pub public_url: String,
    allow_loopback: bool,
    pub unsubscribe: UnsubscribeKey,
    vapid_public_key: Option<String>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        config: &NotifyConfig,
        unsubscribe: UnsubscribeKey,
        vapid_public_key: Option<String>,
    ) -> Notifier {
        Notifier {
            store,
            wake: Arc::new(Notify::new()),
            live: LiveHub::new(),
            public_url: config.public_url.trim_end_matches('/').to_string(),
            allow_loopback: config.webhooks.allow_loopback,
            unsubscribe,
            vapid_public_key,
        }
    }

    /// What the worker waits on.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The VAPID public key pages subscribe with, when Web Push is set up.
    pub fn vapid_public_key(&self) -> Option<&str> {
        self.vapid_public_key.as_deref()
    }

    /// The link that confirms a subscription.
    pub fn confirm_url(&self, token: &str) -> String {
        format!("{}/notify/confirm?token={token}", self.public_url)
    }

    /// The one-click unsubscribe link of a subscription.
    pub fn unsubscribe_url(&self, subscription_id: &str) -> String {
        format!(
            "{}/unsubscribe/{}",
            self.public_url,
            self.unsubscribe.sign(subscription_id)
        )
    }

    async fn check_endpoint(&self, r: &SubscribeRequest) -> NotifyResult<String> {
        match r.protocol {
            Protocol::Email => {
                let address = r.endpoint.trim().to_string();
                address
                    .parse::<lettre::Address>()
                    .map_err(|_| NotifyError::Email(address.clone()))?;
                Ok(address)
            }
            Protocol::Webhook => Ok(ssrf::check_url(&r.endpoint, self.allow_loopback)
                .await?
                .to_string()),
            Protocol::WebPush => {
                if self.vapid_public_key.is_none() {
                    return Err(NotifyError::PushUnavailable);
                }
                let keys = r
                    .push_keys
                    .as_ref()
                    .ok_or_else(|| NotifyError::PushKeys("keys are missing".into()))?;
                keys.decode().map_err(NotifyError::PushKeys)?;
                Ok(ssrf::check_url(&r.endpoint, self.allow_loopback)
                    .await?
                    .to_string())
            }
            Protocol::Live => r
                .owner
                .clone()
                .ok_or_else(|| NotifyError::Email("a live subscription needs a user".into())),
        }
    }

    /// Publishes to chosen subscriptions (a rule's channels): each confirmed one whose policy
    /// matches gets a delivery keyed `KEY:SUBSCRIPTION`, deferred to `not_before` when given.
    pub async fn publish_to(
        &self,
        message: &Message,
        subscriptions: &[SubscriptionRow],
        key: &str,
        not_before: Option<DateTime<Utc>>,
    ) -> NotifyResult<PublishReceipt> {
        let deliveries = deliveries_for(message, subscriptions, key, not_before);
        let written = self
            .store
            .publish(&message.to_row("topic", &message.topic), &deliveries)
            .await?;
        self.wake();
        Ok(PublishReceipt {
            message_id: message.id.clone(),
            deliveries: written,
        })
    }

    /// Stores an identity code and its e-mail in one transaction (the outbox row stays).
    pub async fn send_code_mail(
        &self,
        code: &VerificationCode,
        subject: &str,
        text: &str,
    ) -> NotifyResult<()> {
        let (message, delivery) = direct_mail(&code.email, subject, text);
        self.store
            .put_code_with_mail(code, &message.to_row("email", &code.email), &delivery)
            .await?;
        self.wake();
        Ok(())
    }

    /// An account e-mail without a code (such as "someone tried to sign up as you").
    pub async fn send_account_mail(&self, to: &str, subject: &str, text: &str) -> NotifyResult<()> {
        let (message, delivery) = direct_mail(to, subject, text);
        self.store
            .publish(&message.to_row("email", to), &[delivery])
            .await?;
        self.wake();
        Ok(())
    }

    /// Confirms a subscription by the token of its link.
    pub async fn confirm(&self, token: &str) -> NotifyResult<Option<SubscriptionRow>> {
        Ok(self
            .store
            .confirm_subscription(&ids::digest(token), Utc::now())
            .await?)
    }

    /// Removes the subscription an unsubscribe link names; `false` for a bad or used link.
    pub async fn unsubscribe(&self, token: &str) -> NotifyResult<bool> {
        match self.unsubscribe.verify(token) {
            Some(id) => Ok(self.store.delete_subscription(&id).await?),
            None => Ok(false),
        }
    }

    /// A new webhook secret, shown once; the old one signs too for a day.
    pub async fn rotate_secret(&self, subscription_id: &str) -> NotifyResult<String> {
        let sub = self
            .store
            .subscription(subscription_id)
            .await?
            .ok_or(NotifyError::UnknownSubscription)?;
        if sub.protocol != Protocol::Webhook.as_str() {
            return Err(NotifyError::NotAWebhook);
        }
        let secret = signing::new_secret();
        self.store
            .rotate_secret(
                subscription_id,
                &secret,
                Utc::now() + Duration::hours(ROTATION_GRACE_HOURS),
            )
            .await?;
        Ok(secret)
    }

    /// Replaces a subscription's filter policy (checked first).
    pub async fn set_filter_policy(
        &self,
        subscription_id: &str,
        policy: Option<&Value>,
    ) -> NotifyResult<()> {
        if let Some(p) = policy {
            FilterPolicy::from_value(p)?;
        }
        let text = policy.map(Value::to_string);
        if !self
            .store
            .set_filter_policy(subscription_id, text.as_deref())
            .await?
        {
            return Err(NotifyError::UnknownSubscription);
        }
        Ok(())
    }

    /// A "send a test" message to one subscription, now (no quiet hours).
    pub async fn send_test(&self, subscription: &SubscriptionRow) -> NotifyResult<PublishReceipt> {
        let topic = Topic {
            id: subscription.topic_id.clone(),
            kind: crate::message::TopicKind::StationAlerts,
            name: String::new(),
        };
        let message = Message::new(
            &topic,
            "test",
            "EcoCityHub test message",
            "This is a test message from EcoCityHub: this channel works.",
        )
        .html("<p>This is a test message from <b>EcoCityHub</b>: this channel works.</p>");
        let mut sub = subscription.clone();
        sub.filter_policy = None;
        self.publish_to(&message, &[sub], &message.id.clone(), None)
            .await
    }

    /// Dead letters, newest first (`before`: a delivery id, for paging).
    pub async fn dead_letters(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> NotifyResult<Vec<DeliveryRow>> {
        Ok(self
            .store
            .deliveries(Some(DeliveryStatus::Dead), before, limit)
            .await?)
    }

    /// Makes a dead letter due now (same message id); `false` if it is not a dead letter.
    pub async fn redrive(&self, delivery_id: i64) -> NotifyResult<bool> {
        let done = self.store.redrive(delivery_id, now_ms()).await?;
        self.wake();
        Ok(done)
    }

    pub async fn redrive_all(&self) -> NotifyResult<u64> {
        let n = self.store.redrive_all(now_ms()).await?;
        self.wake();
        Ok(n)
    }

    /// Sends the confirmation message of a new pending subscription.
    async fn send_confirmation(&self, sub: &SubscriptionRow, token: &str) -> NotifyResult<()> {
        let url = self.confirm_url(token);
        let topic = Topic::account_mail();
        let text = format!(
            "Confirm that you want notifications of \"{}\" here: {url}\nThe link is valid for {CONFIRM_TTL_DAYS} days. If you did not ask for this, ignore this message.",
            sub.topic_id
        );
        let message = Message::new(&topic, "subscription.confirmation", "Confirm your EcoCityHub subscription", &text)
            .html(format!(
                "<p>Confirm that you want notifications of <b>{}</b>: <a href=\"{url}\">confirm</a>.</p><p>The link is valid for {CONFIRM_TTL_DAYS} days.</p>",
                sub.topic_id
            ))
            .data(serde_json::json!({
                "subscription_id": sub.id,
                "topic": sub.topic_id,
                "confirm_url": url,
                "token": token,
            }));
        // A direct delivery to the pending subscription's destination, bypassing fan-out.
        let delivery = NewDelivery {
            subscription_id: Some(sub.id.clone()),
            protocol: sub.protocol.clone(),
            endpoint: sub.endpoint.clone(),
            user_id: sub.owner.clone(),
            idempotency_key: Some(format!("confirm:{}", sub.id)),
            not_before_ms: now_ms(),
        };
        self.store
            .publish(&message.to_row("topic", &sub.topic_id), &[delivery])
            .await?;
        self.wake();
        Ok(())
    }
}

/// A direct e-mail (no subscription) and its delivery.
fn direct_mail(to: &str, subject: &str, text: &str) -> (Message, NewDelivery) {
    let message = Message::new(&Topic::account_mail(), "account.mail", subject, text);
    let delivery = NewDelivery {
        subscription_id: None,
        protocol: Protocol::Email.as_str().into(),
        endpoint: to.into(),
        user_id: None,
        idempotency_key: None,
        not_before_ms: now_ms(),
    };
    (message, delivery)
}

/// The deliveries of a message to these subscriptions: confirmed ones whose filter policy
/// passes, keyed `KEY:SUBSCRIPTION`.
pub fn deliveries_for(
    message: &Message,
    subscriptions: &[SubscriptionRow],
    key: &str,
    not_before: Option<DateTime<Utc>>,
) -> Vec<NewDelivery> {
    let at = not_before.map_or_else(now_ms, |t| t.timestamp_millis());
    subscriptions
        .iter()
        .filter(|s| s.status == "confirmed")
        .filter(|s| filter::passes(s.filter_policy.as_deref(), &message.attributes))
        .map(|s| NewDelivery {
            subscription_id: Some(s.id.clone()),
            protocol: s.protocol.clone(),
            endpoint: s.endpoint.clone(),
            user_id: s.owner.clone(),
            idempotency_key: Some(format!("{key}:{}", s.id)),
            // Live pages are not woken at night: quiet hours defer the others only.
            not_before_ms: if s.protocol == Protocol::Live.as_str() {
                now_ms()
            } else {
                at
            },
        })
        .collect()
}

#[async_trait]
impl Publisher for Notifier {
    async fn create_topic(&self, topic: &Topic) -> NotifyResult<()> {
        Ok(self.store.ensure_topic(&topic.to_row(Utc::now())).await?)
    }

    async fn subscribe(&self, r: &SubscribeRequest) -> NotifyResult<Subscribed> {
        if let Some(p) = &r.filter_policy {
            FilterPolicy::from_value(p)?;
        }
        let endpoint = self.check_endpoint(r).await?;
        self.create_topic(&r.topic).await?;
        let now = Utc::now();
        let already = match &r.owner {
            Some(owner) => {
                self.store
                    .endpoint_confirmed(owner, r.protocol.as_str(), &endpoint)
                    .await?
            }
            None => false,
        };
        let confirmed = !r.protocol.needs_confirmation() || r.endpoint_verified || already;
        let token = (!confirmed).then(ids::token);
        let secret = (r.protocol == Protocol::Webhook).then(signing::new_secret);
        let subscription = SubscriptionRow {
            id: ids::new_id("sub_"),
            topic_id: r.topic.id.clone(),
            owner: r.owner.clone(),
            protocol: r.protocol.as_str().into(),
            endpoint,
            status: if confirmed { "confirmed" } else { "pending" }.into(),
            confirm_token_hash: token.as_deref().map(ids::digest),
            confirm_expires_at: token
                .as_ref()
                .map(|_| now + Duration::days(CONFIRM_TTL_DAYS)),
            filter_policy: r.filter_policy.as_ref().map(Value::to_string),
            secret: secret.clone(),
            previous_secret: None,
            previous_secret_until: None,
            endpoint_keys: r
                .push_keys
                .as_ref()
                .map(|k| serde_json::to_string(k).expect("plain struct")),
            created_at: now,
            confirmed_at: confirmed.then_some(now),
        };
        self.store.insert_subscription(&subscription).await?;
        if let Some(token) = &token {
            self.send_confirmation(&subscription, token).await?;
        }
        Ok(Subscribed {
            subscription,
            secret,
            confirmation_sent: token.is_some(),
        })
    }

    async fn publish(&self, topic: &Topic, message: &Message) -> NotifyResult<PublishReceipt> {
        self.create_topic(topic).await?;
        let subscriptions = self.store.confirmed_subscriptions(&topic.id).await?;
        let mut message = message.clone();
        message.topic = topic.id.clone();
        let key = message.id.clone();
        let receipt = self
            .publish_to(&message, &subscriptions, &key, None)
            .await?;
        metrics::counter!("ecocityhub_notify_published_total").increment(1);
        Ok(receipt)
    }
}
