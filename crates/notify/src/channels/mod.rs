//! The delivery channels: e-mail over SMTP (or the log), signed webhooks, Web Push with VAPID,
//! and live pages. [`Channels::send`] sends one claimed delivery by its protocol and says
//! whether a failure is worth retrying.

pub mod email;
pub mod live;
pub mod webhook;
pub mod webpush;

use chrono::Utc;
use ecocityhub_store::notify::ClaimedDelivery;

use crate::message::{Message, Protocol};

pub use email::{MailConfig, Mailer, OutgoingMail};
pub use live::{LiveEvent, LiveHub};
pub use webhook::{WebhookConfig, WebhookSender};
pub use webpush::{PushConfig, PushSender, VapidKeys};

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another try (a timeout, a 5xx, a 429, a refused connection).
    #[error("{0}")]
    Retry(String),
    /// No retry will help (a 4xx, a bad address): a dead letter at once.
    #[error("{0}")]
    Permanent(String),
    /// The destination is gone for good (a push subscription's 404/410): remove it.
    #[error("{0}")]
    Gone(String),
}

pub type SendResult = Result<(), SendError>;

/// Every channel the worker sends through.
pub struct Channels {
    pub mail: Mailer,
    pub webhooks: WebhookSender,
    /// `None` when no VAPID key is set up: push deliveries then fail permanently.
    pub push: Option<PushSender>,
    pub live: LiveHub,
    /// Where links in e-mail point (`https://host`), for unsubscribe links.
    pub public_url: String,
    /// Signs unsubscribe links.
    pub unsubscribe: crate::tokens::UnsubscribeKey,
}

impl Channels {
    /// Sends one delivery.
    pub async fn send(&self, d: &ClaimedDelivery) -> SendResult {
        let message = Message::from_row(&d.message);
        match Protocol::parse(&d.protocol) {
            Some(Protocol::Email) => self.mail.send(&self.mail_for(d, &message)).await,
            Some(Protocol::Webhook) => {
                let sub = d.subscription.as_ref().ok_or_else(|| {
                    SendError::Permanent("a webhook needs its subscription".into())
                })?;
                let now = Utc::now();
                let mut secrets: Vec<&str> = sub.secret.as_deref().into_iter().collect();
                if sub.previous_secret_until.is_some_and(|until| until > now) {
                    secrets.extend(sub.previous_secret.as_deref());
                }
                self.webhooks
                    .send(
                        &d.endpoint,
                        &secrets,
                        &message.id,
                        d.message.payload.as_bytes(),
                        now,
                    )
                    .await
            }
            Some(Protocol::WebPush) => {
                let push = self
                    .push
                    .as_ref()
                    .ok_or_else(|| SendError::Permanent("Web Push is not set up".into()))?;
                let keys = d
                    .subscription
                    .as_ref()
                    .and_then(|s| s.endpoint_keys.as_deref())
                    .ok_or_else(|| {
                        SendError::Permanent("a push subscription without keys".into())
                    })?;
                push.send(&d.endpoint, keys, d.message.payload.as_bytes())
                    .await
            }
            Some(Protocol::Live) => {
                let user = d
                    .user_id
                    .as_deref()
                    .ok_or_else(|| SendError::Permanent("a live delivery without a user".into()))?;
                self.live.send(user, LiveEvent::of(d.id, &message));
                Ok(())
            }
            None => Err(SendError::Permanent(format!(
                "unknown protocol {:?}",
                d.protocol
            ))),
        }
    }

    fn mail_for(&self, d: &ClaimedDelivery, message: &Message) -> OutgoingMail {
        let unsubscribe_url = d.subscription.as_ref().map(|s| {
            format!(
                "{}/unsubscribe/{}",
                self.public_url.trim_end_matches('/'),
                self.unsubscribe.sign(&s.id)
            )
        });
        OutgoingMail {
            message_id: message.id.clone(),
            to: d.endpoint.clone(),
            subject: message.subject.clone(),
            text: message.text.clone(),
            html: message.html.clone(),
            unsubscribe_url,
        }
    }
}
