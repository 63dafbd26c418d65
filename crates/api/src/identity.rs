//! The identity layer's place in the API: the key set (loaded from the store, a first key made
//! when there is none, reloaded when a token names an unknown `kid` — another process may have
//! rotated), the Cedar authorizer, code delivery, and the sign-in throttle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use ecocityhub_identity::tokens::{self, Subject};
use ecocityhub_identity::{
    Authorizer, Claims, KeySet, SigningKey, TokenConfig, TokenError, TokenUse,
};
use ecocityhub_store::identity::{OutboxMessage, User};
use ecocityhub_store::Store;
use tokio::sync::RwLock;

use crate::error::{ApiError, ApiResult};

/// Settings of the built-in user pool.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub tokens: TokenConfig,
    /// Failed sign-ins of one account before it is locked for `lockout`.
    pub max_failed_logins: i64,
    pub lockout: chrono::Duration,
    /// Sign-in attempts one client address may make per minute.
    pub attempts_per_ip_per_minute: u32,
    pub code_ttl: chrono::Duration,
    /// Wrong guesses a code survives.
    pub max_code_attempts: i64,
    pub refresh_ttl: chrono::Duration,
    /// How long the key set is used before it is read again from the store (a rotation by
    /// `ecocityhub keys rotate` in another process takes effect within this time).
    pub key_refresh: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            tokens: TokenConfig::new("http://127.0.0.1:8080", "ecocityhub-web"),
            max_failed_logins: 5,
            lockout: chrono::Duration::minutes(15),
            attempts_per_ip_per_minute: 30,
            code_ttl: chrono::Duration::hours(24),
            max_code_attempts: 5,
            refresh_ttl: chrono::Duration::days(30),
            key_refresh: Duration::from_secs(60),
        }
    }
}

/// How codes reach users. Until the notification layer exists, [`OutboxDelivery`] writes them
/// to the log and to the store's outbox table.
#[async_trait]
pub trait CodeDelivery: Send + Sync {
    async fn deliver(&self, recipient: &str, subject: &str, body: &str) -> ApiResult<()>;
}

/// Writes messages to the outbox table and the log.
pub struct OutboxDelivery {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl CodeDelivery for OutboxDelivery {
    async fn deliver(&self, recipient: &str, subject: &str, body: &str) -> ApiResult<()> {
        tracing::info!(recipient, subject, body, "outbox: message to a user");
        let message = OutboxMessage {
            channel: "email".into(),
            recipient: recipient.into(),
            subject: subject.into(),
            body: body.into(),
            created_at: Utc::now(),
        };
        Ok(self.store.push_outbox(&message).await?)
    }
}

/// Attempts per client address in the current minute.
#[derive(Default)]
struct Throttle {
    windows: HashMap<IpAddr, (Instant, u32)>,
}

/// Everything identity needs at request time.
pub struct Identity {
    pub config: IdentityConfig,
    keys: RwLock<Arc<KeySet>>,
    last_reload: Mutex<Instant>,
    pub authorizer: Authorizer,
    pub delivery: Arc<dyn CodeDelivery>,
    throttle: Mutex<Throttle>,
}

/// Makes sure the store has a signing key and returns the key set.
async fn load_keys(store: &dyn Store) -> ApiResult<KeySet> {
    let mut keys = store.signing_keys().await?;
    if keys.iter().all(|k| k.retired_at.is_some()) {
        let key = SigningKey::generate(Utc::now());
        tracing::info!(kid = %key.kid, "no signing key yet: created one");
        store.insert_signing_key(&key).await?;
        keys.push(key);
    }
    KeySet::new(&keys).map_err(|e| ApiError::Internal(e.to_string()))
}

impl Identity {
    pub async fn open(
        store: &dyn Store,
        config: IdentityConfig,
        delivery: Arc<dyn CodeDelivery>,
    ) -> ApiResult<Identity> {
        Ok(Identity {
            config,
            keys: RwLock::new(Arc::new(load_keys(store).await?)),
            last_reload: Mutex::new(Instant::now()),
            authorizer: Authorizer::builtin(),
            delivery,
            throttle: Mutex::new(Throttle::default()),
        })
    }

    /// The key set in force, read again from the store when older than `key_refresh`.
    pub async fn keys(&self, store: &dyn Store) -> ApiResult<Arc<KeySet>> {
        self.reload_keys_if_older_than(store, self.config.key_refresh)
            .await?;
        Ok(self.keys.read().await.clone())
    }

    async fn reload_keys_if_older_than(&self, store: &dyn Store, age: Duration) -> ApiResult<()> {
        {
            let mut last = self.last_reload.lock().expect("not poisoned");
            if last.elapsed() < age {
                return Ok(());
            }
            *last = Instant::now();
        }
        *self.keys.write().await = Arc::new(load_keys(store).await?);
        Ok(())
    }

    /// Issues an ID and an access token for a user.
    pub async fn issue(&self, store: &dyn Store, user: &User) -> ApiResult<(String, String)> {
        let groups: Vec<String> = user.roles.iter().map(|r| r.as_str().to_string()).collect();
        let subject = Subject {
            id: &user.id,
            email: &user.email,
            email_verified: user.confirmed,
            groups: &groups,
        };
        let keys = self.keys(store).await?;
        tokens::issue(&self.config.tokens, &keys, &subject, Utc::now())
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Verifies an access token; a token naming an unknown key triggers a reload first (at most
    /// one a second, so made-up `kid`s cannot hammer the store).
    pub async fn verify_access(
        &self,
        store: &dyn Store,
        token: &str,
    ) -> Result<Claims, TokenError> {
        let keys = self
            .keys(store)
            .await
            .map_err(|e| TokenError::Key(e.to_string()))?;
        match tokens::verify(&self.config.tokens, &keys, token, TokenUse::Access) {
            Err(TokenError::UnknownKey) => {
                if self
                    .reload_keys_if_older_than(store, Duration::from_secs(1))
                    .await
                    .is_err()
                {
                    return Err(TokenError::UnknownKey);
                }
                let keys = self.keys.read().await.clone();
                tokens::verify(&self.config.tokens, &keys, token, TokenUse::Access)
            }
            other => other,
        }
    }

    /// Counts a sign-in attempt from `ip`; refuses it beyond the per-minute allowance.
    pub fn throttle(&self, ip: Option<IpAddr>) -> ApiResult<()> {
        let Some(ip) = ip else { return Ok(()) };
        let mut t = self.throttle.lock().expect("not poisoned");
        let now = Instant::now();
        if t.windows.len() > 100_000 {
            t.windows
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = t.windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > self.config.attempts_per_ip_per_minute {
            return Err(ApiError::TooManyRequests(
                "too many sign-in attempts from this address; wait a minute and try again".into(),
            ));
        }
        Ok(())
    }
}
