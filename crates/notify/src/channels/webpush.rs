//! Web Push (RFC 8030) with message encryption (RFC 8291, aes128gcm) and VAPID (RFC 8292)
//! through `web-push-native`. The VAPID key pair is made once and kept in the store's
//! settings, so every server of the deployment signs with it; its public half is the
//! `applicationServerKey` a page subscribes with. A push service's 404 or 410 means the
//! subscription expired: the delivery is discarded and the subscription removed.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ecocityhub_store::NotifyStore;
use serde::Deserialize;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};
use web_push_native::p256;
use web_push_native::WebPushBuilder;

use super::{SendError, SendResult};
use crate::ssrf;

/// The settings key of the VAPID private key (base64url of the 32-byte scalar).
pub const VAPID_SETTING: &str = "vapid_private_key";

/// Web Push settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct PushConfig {
    /// The `sub` of the VAPID claims: a `mailto:` or `https:` contact for push services.
    pub contact: String,
    /// Allow plain-http push endpoints on loopback (tests).
    pub allow_loopback: bool,
    /// How long the push service keeps an undelivered message, in seconds.
    pub ttl_seconds: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            contact: "mailto:admin@localhost".into(),
            allow_loopback: false,
            ttl_seconds: 24 * 3600,
        }
    }
}

/// The server's VAPID key pair.
pub struct VapidKeys {
    pair: ES256KeyPair,
}

/// A key or subscription that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PushKeyError {
    #[error("store: {0}")]
    Store(#[from] ecocityhub_store::StoreError),
    #[error("the stored VAPID key is not valid: {0}")]
    BadKey(String),
}

impl VapidKeys {
    pub fn generate() -> VapidKeys {
        VapidKeys {
            pair: ES256KeyPair::generate(),
        }
    }

    pub fn from_private(b64: &str) -> Result<VapidKeys, PushKeyError> {
        let raw = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|e| PushKeyError::BadKey(e.to_string()))?;
        Ok(VapidKeys {
            pair: ES256KeyPair::from_bytes(&raw)
                .map_err(|e| PushKeyError::BadKey(e.to_string()))?,
        })
    }

    pub fn private_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.to_bytes())
    }

    /// The stored key pair, made and stored first if there is none (the first server wins).
    pub async fn load_or_create(store: &dyn NotifyStore) -> Result<VapidKeys, PushKeyError> {
        if let Some(stored) = store.setting(VAPID_SETTING).await? {
            return VapidKeys::from_private(&stored);
        }
        let fresh = VapidKeys::generate();
        let kept = store
            .init_setting(VAPID_SETTING, &fresh.private_b64())
            .await?;
        VapidKeys::from_private(&kept)
    }

    /// The uncompressed public point, base64url: a page's `applicationServerKey`.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.public_key().public_key().to_bytes_uncompressed())
    }
}

/// A browser's subscription keys, as `PushSubscription.toJSON().keys` gives them.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct SubscriptionKeys {
    pub p256dh: String,
    pub auth: String,
}

impl SubscriptionKeys {
    /// Checks that the keys are a P-256 point and a 16-byte secret.
    pub fn decode(&self) -> Result<(p256::PublicKey, [u8; 16]), String> {
        let point = URL_SAFE_NO_PAD
            .decode(self.p256dh.trim_end_matches('='))
            .map_err(|_| "p256dh is not base64url".to_string())?;
        let public = p256::PublicKey::from_sec1_bytes(&point)
            .map_err(|_| "p256dh is not a P-256 public key".to_string())?;
        let auth = URL_SAFE_NO_PAD
            .decode(self.auth.trim_end_matches('='))
            .map_err(|_| "auth is not base64url".to_string())?;
        let auth: [u8; 16] = auth
            .try_into()
            .map_err(|_| "auth must be 16 bytes".to_string())?;
        Ok((public, auth))
    }
}

/// Sends Web Push messages.
pub struct PushSender {
    client: reqwest::Client,
    keys: VapidKeys,
    pub config: PushConfig,
}

impl PushSender {
    pub fn new(keys: VapidKeys, config: PushConfig) -> reqwest::Result<PushSender> {
        Ok(PushSender {
            client: ssrf::guarded_client(config.allow_loopback, Duration::from_secs(10))?,
            keys,
            config,
        })
    }

    pub fn public_key(&self) -> String {
        self.keys.public_key()
    }

    /// Encrypts `payload` for the subscription and POSTs it to its push service.
    pub async fn send(&self, endpoint: &str, keys_json: &str, payload: &[u8]) -> SendResult {
        ssrf::check_form(endpoint, self.config.allow_loopback)
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let keys: SubscriptionKeys = serde_json::from_str(keys_json)
            .map_err(|e| SendError::Permanent(format!("push keys: {e}")))?;
        let (public, auth) = keys.decode().map_err(SendError::Permanent)?;
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|_| SendError::Permanent(format!("{endpoint:?} is not a URI")))?;
        let request = WebPushBuilder::new(uri, public, auth.into())
            .with_valid_duration(Duration::from_secs(self.config.ttl_seconds))
            .with_vapid(&self.keys.pair, &self.config.contact)
            .build(payload.to_vec())
            .map_err(|e| SendError::Permanent(format!("push encryption: {e}")))?;
        let (parts, body) = request.into_parts();
        let mut post = self.client.post(endpoint).body(body);
        for (name, value) in &parts.headers {
            post = post.header(name.as_str(), value.as_bytes());
        }
        let response = post
            .send()
            .await
            .map_err(|e| SendError::Retry(e.to_string()))?;
        classify_status(response.status().as_u16())
    }
}

/// What a push service's status means.
pub fn classify_status(status: u16) -> SendResult {
    match status {
        200..=299 => Ok(()),
        404 | 410 => Err(SendError::Gone(format!(
            "HTTP {status}: the push subscription expired"
        ))),
        408 | 429 | 500..=599 => Err(SendError::Retry(format!("HTTP {status}"))),
        _ => Err(SendError::Permanent(format!("HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_publish_an_uncompressed_point() {
        let k = VapidKeys::generate();
        let again = VapidKeys::from_private(&k.private_b64()).unwrap();
        assert_eq!(k.public_key(), again.public_key());
        let point = URL_SAFE_NO_PAD.decode(k.public_key()).unwrap();
        assert_eq!((point.len(), point[0]), (65, 4));
        assert!(VapidKeys::from_private("!!").is_err());
    }

    #[test]
    fn subscription_keys_are_checked() {
        let bad = SubscriptionKeys {
            p256dh: "AAAA".into(),
            auth: "AAAA".into(),
        };
        assert!(bad.decode().is_err());
        let k = VapidKeys::generate();
        let good = SubscriptionKeys {
            p256dh: k.public_key(),
            auth: URL_SAFE_NO_PAD.encode([7u8; 16]),
        };
        assert!(good.decode().is_ok());
        let short = SubscriptionKeys {
            auth: URL_SAFE_NO_PAD.encode([7u8; 8]),
            ..good
        };
        assert!(short.decode().is_err());
        assert!(matches!(classify_status(410), Err(SendError::Gone(_))));
        assert!(matches!(classify_status(404), Err(SendError::Gone(_))));
        assert_eq!(classify_status(201), Ok(()));
    }
}
