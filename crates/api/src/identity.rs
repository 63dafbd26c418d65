//! The identity layer's place in the API: the key set (loaded from the store, a first key made
//! when there is none, reloaded when a token names an unknown `kid` — another process may have
//! rotated), the Cedar authorizer, code delivery, the sign-in throttle, and the outside OIDC
//! providers users may sign in with.

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
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;
use tokio::sync::RwLock;

use crate::error::{ApiError, ApiResult};
use crate::federation::{Federation, OidcProviderConfig};

/// A user pool whose tokens are accepted besides the built-in pool's: a Cognito user pool
/// (`https://cognito-idp.REGION.amazonaws.com/POOL_ID`, RS256, its app client id), with its
/// JWKS fetched, cached and fetched again when a token names an unknown key.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub tokens: TokenConfig,
    pub jwks_url: String,
    /// The least time between two fetches of the JWKS (made-up `kid`s must not hammer it).
    pub refetch_after: Duration,
}

impl TrustedIssuer {
    /// A Cognito user pool: RS256, keys at `{issuer}/.well-known/jwks.json`.
    pub fn cognito(issuer: &str, client_id: &str) -> TrustedIssuer {
        let issuer = issuer.trim_end_matches('/');
        let mut tokens = TokenConfig::new(issuer, client_id);
        tokens.algorithm = jsonwebtoken::Algorithm::RS256;
        TrustedIssuer {
            tokens,
            jwks_url: format!("{issuer}/.well-known/jwks.json"),
            refetch_after: Duration::from_secs(5),
        }
    }
}

/// The cached keys of the trusted issuer.
#[derive(Default)]
struct RemoteKeys {
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
}

/// The most verified tokens remembered.
const VERIFIED_CACHE: usize = 10_000;

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
    /// Where the OIDC code flow may send a user back with a code (exact match); loopback
    /// addresses (`http://127.0.0.1:PORT/…`, `http://localhost:PORT/…`) are always allowed,
    /// as RFC 8252 asks for native apps.
    pub redirect_uris: Vec<String>,
    /// Cedar policies replacing the shipped `policies/ecocityhub.cedar`.
    pub policies: Option<String>,
    /// Another pool whose tokens are accepted (Cognito in AWS); `None`: only the built-in one.
    pub trusted_issuer: Option<TrustedIssuer>,
    /// Outside OpenID Connect providers users may sign in with (`identity_provider=NAME` on
    /// `/oauth2/authorize`).
    pub oidc_providers: Vec<OidcProviderConfig>,
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
            redirect_uris: Vec::new(),
            policies: None,
            trusted_issuer: None,
            oidc_providers: Vec::new(),
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
    remote: RemoteKeys,
    /// Access tokens of the built-in pool already verified, with their claims: an ES256
    /// check costs ~0.3 ms, a lookup nothing. Emptied whenever the key set is read again, so a
    /// retired key's tokens stop working within `key_refresh`.
    verified: Mutex<HashMap<String, Claims>>,
    http: reqwest::Client,
    /// The outside OIDC providers, with their discovery documents and keys once fetched.
    pub federation: Federation,
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
        let authorizer = match &config.policies {
            Some(text) => {
                Authorizer::from_cedar(text).map_err(|e| ApiError::Unavailable(e.to_string()))?
            }
            None => Authorizer::builtin(),
        };
        let federation = Federation::new(&config.oidc_providers)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Identity {
            federation,
            config,
            keys: RwLock::new(Arc::new(load_keys(store).await?)),
            last_reload: Mutex::new(Instant::now()),
            authorizer,
            delivery,
            throttle: Mutex::new(Throttle::default()),
            remote: RemoteKeys::default(),
            verified: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| ApiError::Internal(e.to_string()))?,
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
        self.verified.lock().expect("not poisoned").clear();
        Ok(())
    }

    /// Issues an ID and an access token for a user (`nonce`: the OIDC client's, for the ID token;
    /// `scope`: what the client was granted).
    pub async fn issue(
        &self,
        store: &dyn Store,
        user: &User,
        nonce: Option<&str>,
        scope: &str,
    ) -> ApiResult<(String, String)> {
        let groups: Vec<String> = user.roles.iter().map(|r| r.as_str().to_string()).collect();
        let subject = Subject {
            id: &user.id,
            email: &user.email,
            email_verified: user.confirmed,
            groups: &groups,
            nonce,
            scope,
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
        if let Some(trusted) = &self.config.trusted_issuer {
            if tokens::unverified_issuer(token).as_deref() == Some(trusted.tokens.issuer.as_str()) {
                return self.verify_trusted(trusted, token).await;
            }
        }
        let keys = self
            .keys(store)
            .await
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self
            .verified
            .lock()
            .expect("not poisoned")
            .get(token)
            .filter(|c| c.exp > now)
        {
            return Ok(claims.clone());
        }
        let verified = match tokens::verify(&self.config.tokens, &keys, token, TokenUse::Access) {
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
        }?;
        let mut cache = self.verified.lock().expect("not poisoned");
        if cache.len() >= VERIFIED_CACHE {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), verified.clone());
        Ok(verified)
    }

    /// Verifies a token of the trusted issuer with its JWKS, fetched when a `kid` is unknown
    /// (at most once every `refetch_after`).
    async fn verify_trusted(
        &self,
        trusted: &TrustedIssuer,
        token: &str,
    ) -> Result<Claims, TokenError> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Malformed)?
            .kid
            .ok_or(TokenError::UnknownKey)?;
        if !self.remote.keys.read().await.contains_key(&kid) {
            let due = {
                let mut last = self.remote.last_fetch.lock().expect("not poisoned");
                let due = last.is_none_or(|t| t.elapsed() >= trusted.refetch_after);
                if due {
                    *last = Some(Instant::now());
                }
                due
            };
            if due {
                match self.fetch_jwks(&trusted.jwks_url).await {
                    Ok(keys) => *self.remote.keys.write().await = keys,
                    Err(e) => {
                        tracing::warn!(url = %trusted.jwks_url, error = %e, "cannot fetch the trusted issuer's keys")
                    }
                }
            }
        }
        let keys = self.remote.keys.read().await;
        tokens::verify_with(&trusted.tokens, |k| keys.get(k), token, TokenUse::Access)
    }

    async fn fetch_jwks(&self, url: &str) -> Result<HashMap<String, DecodingKey>, String> {
        let set: JwkSet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect())
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
