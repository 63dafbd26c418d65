//! EcoCityHub's notification layer — the SNS layer every other part speaks through.
//!
//! - [`message`]: topics per purpose, protocols, messages with stable ids.
//! - [`filter`]: SNS filter policies on message attributes.
//! - [`notifier`]: the [`Publisher`] trait and its embedded implementation, [`Notifier`], which
//!   writes a message and its deliveries to the store's outbox in one transaction.
//! - [`worker`]: the delivery worker (leases, retries with backoff and jitter, dead letters).
//! - [`channels`]: e-mail (SMTP or the log), Standard Webhooks, Web Push with VAPID, live pages.
//! - [`rules`] and [`alarms`]: citizens' alert rules and operators' alarms, pure logic;
//!   [`engine`] runs them on ingest batches, forecasts and a clock.
//! - [`ssrf`]: the guard on outgoing URLs; [`signing`]: webhook signatures; [`tokens`]:
//!   unsubscribe links.
//! - [`bench`]: the benchmark functions; `aws` (feature `aws`): SNS and SES behind [`Publisher`].
//!
//! [`open`] builds the notifier and its worker from a [`NotifyConfig`].

pub mod alarms;
#[cfg(feature = "aws")]
pub mod aws;
pub mod backoff;
pub mod bench;
pub mod channels;
pub mod engine;
pub mod filter;
pub mod ids;
pub mod message;
pub mod notifier;
pub mod rules;
pub mod signing;
pub mod ssrf;
pub mod tokens;
pub mod worker;

use std::sync::Arc;

use ecocityhub_store::{Store, StoreError};

pub use channels::{Channels, LiveEvent, LiveHub, MailConfig};
pub use engine::RuleEngine;
pub use message::{Message, Protocol, Topic, TopicKind};
pub use notifier::{
    Notifier, NotifyConfig, NotifyError, NotifyResult, PublishReceipt, Publisher, SubscribeRequest,
    Subscribed,
};
pub use worker::{DeliveryWorker, Heartbeat, WorkerConfig, WorkerHandle};

/// A setting that keeps the notification layer from starting.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] channels::email::MailConfigError),
    #[error(transparent)]
    Push(#[from] channels::webpush::PushKeyError),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The notifier (for handlers) and its delivery worker (to spawn in `serve`). The VAPID and
/// unsubscribe keys are made on first use and kept in the store.
pub async fn open(
    store: Arc<dyn Store>,
    config: &NotifyConfig,
) -> Result<(Arc<Notifier>, DeliveryWorker), SetupError> {
    let unsubscribe = tokens::UnsubscribeKey::load_or_create(store.as_ref()).await?;
    let vapid = channels::VapidKeys::load_or_create(store.as_ref()).await?;
    let mail = channels::Mailer::from_config(&config.mail)?;
    if !mail.is_smtp() {
        tracing::info!(
            "no SMTP server configured (--smtp-url): e-mail goes to the log and the outbox"
        );
    }
    let notifier = Arc::new(Notifier::new(
        store.clone(),
        config,
        unsubscribe.clone(),
        Some(vapid.public_key()),
    ));
    let channels = Arc::new(Channels {
        mail,
        webhooks: channels::WebhookSender::new(config.webhooks)?,
        push: Some(channels::PushSender::new(vapid, config.push.clone())?),
        live: notifier.live.clone(),
        public_url: notifier.public_url.clone(),
        unsubscribe,
    });
    let worker = DeliveryWorker::new(store, channels, config.worker, notifier.wake_handle());
    Ok((notifier, worker))
}
