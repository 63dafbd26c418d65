//! Webhooks: an HTTPS POST of the event, signed by the Standard Webhooks scheme, through the
//! SSRF-guarded client (its resolver refuses internal addresses at connect time). 2xx is
//! delivered; 408, 429, 5xx and network errors are retried; other 4xx are final; 410 removes
//! the subscription.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{SendError, SendResult};
use crate::{signing, ssrf};

/// Webhook delivery settings.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// Allow `http://` and addresses on loopback (tests, local use). Never in production.
    pub allow_loopback: bool,
    /// How long one POST may take, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_loopback: false,
            timeout_ms: 10_000,
        }
    }
}

/// Sends signed webhooks.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    pub config: WebhookConfig,
}

impl WebhookSender {
    pub fn new(config: WebhookConfig) -> reqwest::Result<WebhookSender> {
        Ok(WebhookSender {
            client: ssrf::guarded_client(
                config.allow_loopback,
                Duration::from_millis(config.timeout_ms),
            )?,
            config,
        })
    }

    /// POSTs `body` to `url`, signed with each of `secrets` (the current one first).
    pub async fn send(
        &self,
        url: &str,
        secrets: &[&str],
        message_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> SendResult {
        ssrf::check_form(url, self.config.allow_loopback)
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        if secrets.is_empty() {
            return Err(SendError::Permanent("the webhook has no secret".into()));
        }
        let timestamp = now.timestamp();
        let signature = signing::signature_header(secrets, message_id, timestamp, body)
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        classify_status(response.status().as_u16())
    }
}

fn classify_transport(e: &reqwest::Error) -> SendError {
    if let Some(refused) = ssrf::refusal(e) {
        SendError::Permanent(format!("refused: {refused}"))
    } else {
        SendError::Retry(e.to_string())
    }
}

/// What an HTTP status means for a webhook delivery.
pub fn classify_status(status: u16) -> SendResult {
    match status {
        200..=299 => Ok(()),
        410 => Err(SendError::Gone(format!("HTTP {status}"))),
        408 | 429 | 500..=599 => Err(SendError::Retry(format!("HTTP {status}"))),
        _ => Err(SendError::Permanent(format!("HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(204), Ok(()));
        assert!(matches!(classify_status(503), Err(SendError::Retry(_))));
        assert!(matches!(classify_status(429), Err(SendError::Retry(_))));
        assert!(matches!(classify_status(400), Err(SendError::Permanent(_))));
        assert!(matches!(classify_status(301), Err(SendError::Permanent(_))));
        assert!(matches!(classify_status(410), Err(SendError::Gone(_))));
    }
}
