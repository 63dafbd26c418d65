//! The AWS side (feature `aws`): [`SnsPublisher`] implements [`Publisher`] with Amazon SNS
//! (topics, e-mail and HTTPS subscriptions with filter policies, publish with message
//! attributes), and [`SesMailer`] sends e-mail through SES (v2) with the same parts and
//! one-click unsubscribe headers as the SMTP mailer. Endpoints come from the SDK's usual
//! configuration (`AWS_ENDPOINT_URL` points both at moto in tests).
//!
//! What moto (5.2) does not check, so our own code is tested for it instead: it confirms HTTP(S)
//! subscriptions without a confirmation step (our pending/confirm flow is tested on the embedded
//! notifier); its notifications are signed (SignatureVersion 2) but name a certificate URL on
//! real SNS, so they cannot be verified here (our webhook signing is tested against the
//! `standardwebhooks` package); it filters on message attributes but leaves them out of HTTP
//! notifications; e-mail publishes and SES sends are accepted but never delivered (our mail is
//! tested against aiosmtpd); its filter-policy matching is its own, not SNS's (our
//! [`crate::filter`] has its own tests). Web Push and live pages have no SNS protocol: they stay
//! with the embedded notifier.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, MessageHeader};
use aws_sdk_sns::types::MessageAttributeValue;
use chrono::Utc;
use ecocityhub_store::notify::SubscriptionRow;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::channels::{OutgoingMail, SendError, SendResult};
use crate::filter::FilterPolicy;
use crate::message::{Message, Protocol, Topic};
use crate::notifier::{
    NotifyError, NotifyResult, PublishReceipt, Publisher, SubscribeRequest, Subscribed,
};

fn aws_error(e: impl std::fmt::Display) -> NotifyError {
    NotifyError::Aws(e.to_string())
}

/// An SNS topic name for a topic id: SNS allows letters, digits, `-` and `_`.
pub fn sns_topic_name(topic_id: &str) -> String {
    let name: String = topic_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect();
    format!("ecocityhub-{name}").chars().take(256).collect()
}

/// SNS message attributes from ours: numbers as `Number`, strings as `String`, string arrays
/// as `String.Array`; other values are left out (SNS has no such type).
pub fn sns_attributes(message: &Message) -> HashMap<String, MessageAttributeValue> {
    let mut out = HashMap::new();
    for (k, v) in &message.attributes {
        let (data_type, value) = match v {
            Value::String(s) if !s.is_empty() => ("String", s.clone()),
            Value::Number(n) => ("Number", n.to_string()),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                ("String.Array", v.to_string())
            }
            _ => continue,
        };
        if let Ok(attr) = MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
        {
            out.insert(k.clone(), attr);
        }
    }
    out
}

/// Publishing through Amazon SNS.
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    arns: Mutex<HashMap<String, String>>,
}

impl SnsPublisher {
    pub fn new(client: aws_sdk_sns::Client) -> SnsPublisher {
        SnsPublisher {
            client,
            arns: Mutex::new(HashMap::new()),
        }
    }

    /// A client from the environment (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn from_env() -> SnsPublisher {
        let config = sdk_config().await;
        SnsPublisher::new(aws_sdk_sns::Client::new(&config))
    }

    pub fn client(&self) -> &aws_sdk_sns::Client {
        &self.client
    }

    /// The topic's ARN, creating the topic (idempotent in SNS) the first time.
    pub async fn topic_arn(&self, topic: &Topic) -> NotifyResult<String> {
        if let Some(arn) = self.arns.lock().await.get(&topic.id) {
            return Ok(arn.clone());
        }
        let out = self
            .client
            .create_topic()
            .name(sns_topic_name(&topic.id))
            .send()
            .await
            .map_err(|e| aws_error(aws_sdk_sns::error::DisplayErrorContext(e)))?;
        let arn = out
            .topic_arn()
            .ok_or_else(|| NotifyError::Aws("CreateTopic returned no ARN".into()))?
            .to_string();
        self.arns.lock().await.insert(topic.id.clone(), arn.clone());
        Ok(arn)
    }
}

#[async_trait]
impl Publisher for SnsPublisher {
    async fn create_topic(&self, topic: &Topic) -> NotifyResult<()> {
        self.topic_arn(topic).await.map(|_| ())
    }

    async fn subscribe(&self, r: &SubscribeRequest) -> NotifyResult<Subscribed> {
        let protocol = match r.protocol {
            Protocol::Email => "email",
            Protocol::Webhook if r.endpoint.starts_with("https:") => "https",
            Protocol::Webhook => "http",
            Protocol::WebPush | Protocol::Live => return Err(NotifyError::PushUnavailable),
        };
        // Our checks run before SNS sees anything: SNS does not guard against SSRF.
        if r.protocol == Protocol::Webhook {
            crate::ssrf::check_form(&r.endpoint, r.endpoint.starts_with("http:"))?;
        }
        let policy = r
            .filter_policy
            .as_ref()
            .map(|p| FilterPolicy::from_value(p).map(|_| p.to_string()))
            .transpose()?;
        let arn = self.topic_arn(&r.topic).await?;
        let mut call = self
            .client
            .subscribe()
            .topic_arn(&arn)
            .protocol(protocol)
            .endpoint(&r.endpoint)
            .return_subscription_arn(true);
        if let Some(p) = &policy {
            call = call.attributes("FilterPolicy", p);
        }
        let out = call
            .send()
            .await
            .map_err(|e| aws_error(aws_sdk_sns::error::DisplayErrorContext(e)))?;
        let id = out.subscription_arn().unwrap_or_default().to_string();
        let pending = id.is_empty() || id == "pending confirmation";
        let now = Utc::now();
        Ok(Subscribed {
            subscription: SubscriptionRow {
                id,
                topic_id: r.topic.id.clone(),
                owner: r.owner.clone(),
                protocol: r.protocol.as_str().into(),
                endpoint: r.endpoint.clone(),
                status: if pending { "pending" } else { "confirmed" }.into(),
                confirm_token_hash: None,
                confirm_expires_at: None,
                filter_policy: policy,
                secret: None,
                previous_secret: None,
                previous_secret_until: None,
                endpoint_keys: None,
                created_at: now,
                confirmed_at: (!pending).then_some(now),
            },
            secret: None,
            confirmation_sent: pending,
        })
    }

    async fn publish(&self, topic: &Topic, message: &Message) -> NotifyResult<PublishReceipt> {
        let arn = self.topic_arn(topic).await?;
        let mut call = self
            .client
            .publish()
            .topic_arn(arn)
            .message(message.event().to_string())
            .subject(message.subject.chars().take(99).collect::<String>());
        for (k, v) in sns_attributes(message) {
            call = call.message_attributes(k, v);
        }
        let out = call
            .send()
            .await
            .map_err(|e| aws_error(aws_sdk_sns::error::DisplayErrorContext(e)))?;
        Ok(PublishReceipt {
            message_id: out.message_id().unwrap_or(&message.id).to_string(),
            deliveries: 0,
        })
    }
}

/// E-mail through Amazon SES (v2).
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>) -> SesMailer {
        SesMailer {
            client,
            from: from.into(),
        }
    }

    pub async fn from_env(from: impl Into<String>) -> SesMailer {
        let config = sdk_config().await;
        SesMailer::new(aws_sdk_sesv2::Client::new(&config), from)
    }

    /// Sends one mail (plain and HTML parts, `List-Unsubscribe` headers for subscription mail).
    pub async fn send(&self, mail: &OutgoingMail) -> SendResult {
        let content = |text: &str| Content::builder().data(text).charset("UTF-8").build();
        let mut text = mail.text.clone();
        if let Some(url) = &mail.unsubscribe_url {
            text.push_str(&format!("\n\n--\nUnsubscribe: {url}\n"));
        }
        let subject = content(&mail.subject).map_err(|e| SendError::Permanent(e.to_string()))?;
        let mut body =
            Body::builder().text(content(&text).map_err(|e| SendError::Permanent(e.to_string()))?);
        if let Some(html) = &mail.html {
            body = body.html(content(html).map_err(|e| SendError::Permanent(e.to_string()))?);
        }
        let mut message = aws_sdk_sesv2::types::Message::builder()
            .subject(subject)
            .body(body.build());
        if let Some(url) = &mail.unsubscribe_url {
            for (name, value) in [
                ("List-Unsubscribe", format!("<{url}>")),
                (
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click".to_string(),
                ),
            ] {
                let header = MessageHeader::builder()
                    .name(name)
                    .value(value)
                    .build()
                    .map_err(|e| SendError::Permanent(e.to_string()))?;
                message = message.headers(header);
            }
        }
        let result = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&mail.to).build())
            .content(EmailContent::builder().simple(message.build()).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string();
                let permanent = e
                    .as_service_error()
                    .is_some_and(|s| s.is_message_rejected() || s.is_bad_request_exception());
                Err(if permanent {
                    SendError::Permanent(text)
                } else {
                    SendError::Retry(text)
                })
            }
        }
    }
}

/// The SDK's configuration from the environment (`AWS_REGION`, credentials, and
/// `AWS_ENDPOINT_URL` for moto), over rustls with ring (no aws-lc-rs in the build).
async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The SDK's HTTP client over rustls on ring (the workspace builds the SDK without its
/// default client, which would bring aws-lc-rs).
pub fn https_client() -> aws_sdk_sns::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_attributes_fit_sns() {
        assert_eq!(
            sns_topic_name("station:london.1"),
            "ecocityhub-station_london_1"
        );
        let m = Message::new(&Topic::station("s1"), "alert.opened", "s", "t")
            .attribute("aqi", 160)
            .attribute("station", "s1")
            .attribute("tags", serde_json::json!(["a", "b"]))
            .attribute("nested", serde_json::json!({"x": 1}));
        let a = sns_attributes(&m);
        assert_eq!(a["aqi"].data_type(), "Number");
        assert_eq!(a["station"].string_value(), Some("s1"));
        assert_eq!(a["tags"].data_type(), "String.Array");
        assert!(!a.contains_key("nested"));
        assert_eq!(a["type"].string_value(), Some("alert.opened"));
    }
}
