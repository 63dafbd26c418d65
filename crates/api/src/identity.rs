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
use ecocityhub_blobs::Sealer;
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
    /// Failed sign-ins to one address from one client address before that pair is locked for
    /// `lockout` (the real user elsewhere is not locked out).
    pub max_failed_logins: i64,
    pub lockout: chrono::Duration,
    /// Failed sign-ins to one address from all clients in an hour after which only client
    /// addresses that signed in to it before (within `known_client_days`) may still try.
    pub address_failures_per_hour: i64,
    /// How long a client address that signed in successfully stays known to an address.
    pub known_client_days: i64,
    /// Sign-in attempts one client address may make per minute.
    pub attempts_per_ip_per_minute: u32,
    /// Requests about codes (confirm, resend-code, forgot-password, reset-password) one client
    /// address may make per minute.
    pub code_requests_per_ip_per_minute: u32,
    /// Sign-ups one client address may make per hour.
    pub sign_ups_per_ip_per_hour: u32,
    pub code_ttl: chrono::Duration,
    /// Wrong guesses a code survives.
    pub max_code_attempts: i64,
    /// Wrong codes (any code, old or new) one address may be sent in an hour before every code
    /// check for it is refused until the hour is over.
    pub code_guesses_per_hour: i64,
    /// Codes one address may be sent in an hour.
    pub codes_per_hour: i64,
    /// Password hashes computed at once (each takes 19 MiB for ~55 ms); default: one per core.
    pub hashing_concurrency: usize,
    /// Requests that may wait for a hashing slot; beyond, 503 with `Retry-After`.
    pub hashing_queue: usize,
    /// How long a user's roles and existence read from the store are trusted before they are
    /// read again (a demoted or deleted user's earlier tokens lose their power within this).
    pub roles_ttl: Duration,
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
            address_failures_per_hour: 100,
            known_client_days: 30,
            attempts_per_ip_per_minute: 30,
            code_requests_per_ip_per_minute: 10,
            sign_ups_per_ip_per_hour: 20,
            code_ttl: chrono::Duration::hours(24),
            max_code_attempts: 5,
            code_guesses_per_hour: 10,
            codes_per_hour: 5,
            hashing_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            hashing_queue: 32,
            roles_ttl: Duration::from_secs(3),
            refresh_ttl: chrono::Duration::days(30),
            key_refresh: Duration::from_secs(60),
            redirect_uris: Vec::new(),
            policies: None,
            trusted_issuer: None,
            oidc_providers: Vec::new(),
        }
    }
}

/// How codes and account mail reach users: through the notification layer
/// ([`NotifyDelivery`]: the code and its e-mail in one transaction, sent by the outbox worker),
/// or without one ([`OutboxDelivery`]: the outbox table and the log).
#[async_trait]
pub trait CodeDelivery: Send + Sync {
    /// Stores `code` (replacing an earlier one) and sends it to its address.
    async fn deliver_code(
        &self,
        store: &dyn Store,
        code: &ecocityhub_store::identity::VerificationCode,
        subject: &str,
        body: &str,
    ) -> ApiResult<()> {
        store.put_code(code).await?;
        self.deliver(&code.email, subject, body).await
    }

    /// Sends an account message.
    async fn deliver(&self, recipient: &str, subject: &str, body: &str) -> ApiResult<()>;
}

/// Codes and account mail through the notification layer.
pub struct NotifyDelivery {
    pub notifier: Arc<ecocityhub_notify::Notifier>,
}

#[async_trait]
impl CodeDelivery for NotifyDelivery {
    async fn deliver_code(
        &self,
        _store: &dyn Store,
        code: &ecocityhub_store::identity::VerificationCode,
        subject: &str,
        body: &str,
    ) -> ApiResult<()> {
        self.notifier
            .send_code_mail(code, subject, body)
            .await
            .map_err(|e| ApiError::Internal(format!("code mail: {e}")))
    }

    async fn deliver(&self, recipient: &str, subject: &str, body: &str) -> ApiResult<()> {
        self.notifier
            .send_account_mail(recipient, subject, body)
            .await
            .map_err(|e| ApiError::Internal(format!("account mail: {e}")))
    }
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

/// What a client address is throttled for, each with its own allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Throttled {
    SignIn,
    CodeRequest,
    SignUp,
}

/// Attempts per (purpose, client address) in the current window, in this process.
#[derive(Default)]
struct Throttle {
    windows: HashMap<(Throttled, IpAddr), (Instant, u32)>,
}

/// The most (purpose, address) windows kept before expired ones are dropped.
const THROTTLE_ENTRIES: usize = 100_000;

/// Password hashing on a bounded number of blocking threads, each with argon2 memory that is
/// reused, and a bounded queue: a flood of sign-ups waits or is answered 503, and memory stays
/// at `concurrency × 19 MiB`.
pub struct PasswordGate {
    slots: tokio::sync::Semaphore,
    memory: Mutex<Vec<ecocityhub_identity::password::HashMemory>>,
    waiting: std::sync::atomic::AtomicUsize,
    queue: usize,
}

impl PasswordGate {
    pub fn new(concurrency: usize, queue: usize) -> PasswordGate {
        PasswordGate {
            slots: tokio::sync::Semaphore::new(concurrency.max(1)),
            memory: Mutex::new(Vec::new()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            queue,
        }
    }

    /// Runs `work` with hashing memory on a blocking thread once a slot is free; a 503 when
    /// too many requests wait already.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut ecocityhub_identity::password::HashMemory) -> T + Send + 'static,
    ) -> ApiResult<T> {
        use std::sync::atomic::Ordering;
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
        let permit = if waiting >= self.queue + self.slots.available_permits() {
            None
        } else {
            self.slots.acquire().await.ok()
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let Some(_permit) = permit else {
            return Err(ApiError::Busy(
                "the service is busy checking passwords; try again in a moment".into(),
            ));
        };
        let mut memory = self
            .memory
            .lock()
            .expect("not poisoned")
            .pop()
            .unwrap_or_default();
        let (result, memory) = tokio::task::spawn_blocking(move || {
            let result = work(&mut memory);
            (result, memory)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        self.memory.lock().expect("not poisoned").push(memory);
        Ok(result)
    }
}

/// A user's roles as the store had them a moment ago (`None`: no such user).
struct CurrentUser {
    read_at: Instant,
    roles: Option<Vec<ecocityhub_identity::Role>>,
}

/// Everything identity needs at request time.
pub struct Identity {
    pub config: IdentityConfig,
    keys: RwLock<Arc<KeySet>>,
    last_reload: Mutex<Instant>,
    pub authorizer: Authorizer,
    pub delivery: Arc<dyn CodeDelivery>,
    throttle: Mutex<Throttle>,
    /// Where passwords are hashed and checked.
    pub passwords: PasswordGate,
    /// Seals the signing keys' private halves in the store (none: kept as they are).
    sealer: Option<Sealer>,
    /// Users' current roles, read from the store at most every `roles_ttl`.
    current: Mutex<HashMap<String, CurrentUser>>,
    remote: RemoteKeys,
    /// Access tokens of the built-in pool already verified, with their claims: an ES256
    /// check costs ~0.3 ms, a lookup nothing. Emptied whenever the key set is read again, so a
    /// retired key's tokens stop working within `key_refresh`.
    verified: Mutex<HashMap<String, Claims>>,
    http: reqwest::Client,
    /// The outside OIDC providers, with their discovery documents and keys once fetched.
    pub federation: Federation,
}

/// Makes sure the store has a signing key and returns the key set (private halves sealed at
/// rest when a sealer is given; see `keys_at_rest`).
async fn load_keys(store: &dyn Store, sealer: Option<&Sealer>) -> ApiResult<KeySet> {
    let mut keys = crate::keys_at_rest::load(store, sealer).await?;
    if keys.iter().all(|k| k.retired_at.is_some()) {
        let key = SigningKey::generate(Utc::now());
        tracing::info!(kid = %key.kid, "no signing key yet: created one");
        crate::keys_at_rest::insert(store, sealer, &key).await?;
        keys.push(key);
    }
    KeySet::new(&keys).map_err(|e| ApiError::Internal(e.to_string()))
}

impl Identity {
    pub async fn open(
        store: &dyn Store,
        config: IdentityConfig,
        delivery: Arc<dyn CodeDelivery>,
        sealer: Option<Sealer>,
    ) -> ApiResult<Identity> {
        let authorizer = match &config.policies {
            Some(text) => {
                Authorizer::from_cedar(text).map_err(|e| ApiError::Unavailable(e.to_string()))?
            }
            None => Authorizer::builtin(),
        };
        let federation = Federation::new(&config.oidc_providers)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let passwords = PasswordGate::new(config.hashing_concurrency, config.hashing_queue);
        Ok(Identity {
            federation,
            config,
            keys: RwLock::new(Arc::new(load_keys(store, sealer.as_ref()).await?)),
            sealer,
            last_reload: Mutex::new(Instant::now()),
            authorizer,
            delivery,
            throttle: Mutex::new(Throttle::default()),
            passwords,
            current: Mutex::new(HashMap::new()),
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
        *self.keys.write().await = Arc::new(load_keys(store, self.sealer.as_ref()).await?);
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
        self.throttle_for(Throttled::SignIn, ip)
    }

    /// Counts an attempt at `what` from `ip`; refuses it beyond that purpose's allowance.
    pub fn throttle_for(&self, what: Throttled, ip: Option<IpAddr>) -> ApiResult<()> {
        let Some(ip) = ip else { return Ok(()) };
        let (limit, window, message) = match what {
            Throttled::SignIn => (
                self.config.attempts_per_ip_per_minute,
                Duration::from_secs(60),
                "too many sign-in attempts from this address; wait a minute and try again",
            ),
            Throttled::CodeRequest => (
                self.config.code_requests_per_ip_per_minute,
                Duration::from_secs(60),
                "too many requests about codes from this address; wait a minute and try again",
            ),
            Throttled::SignUp => (
                self.config.sign_ups_per_ip_per_hour,
                Duration::from_secs(3600),
                "too many sign-ups from this address; try again in an hour",
            ),
        };
        let mut t = self.throttle.lock().expect("not poisoned");
        let now = Instant::now();
        if t.windows.len() > THROTTLE_ENTRIES {
            t.windows
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(3600));
        }
        let entry = t.windows.entry((what, ip)).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > limit {
            return Err(ApiError::TooManyRequests(message.into()));
        }
        Ok(())
    }

    /// The roles a user of the built-in pool has now (`None`: the account is gone), read from
    /// the store at most every `roles_ttl` — a token's groups are only what they were when it
    /// was issued.
    pub async fn current_roles(
        &self,
        store: &dyn Store,
        user_id: &str,
    ) -> ApiResult<Option<Vec<ecocityhub_identity::Role>>> {
        if let Some(known) = self
            .current
            .lock()
            .expect("not poisoned")
            .get(user_id)
            .filter(|c| c.read_at.elapsed() < self.config.roles_ttl)
        {
            return Ok(known.roles.clone());
        }
        let roles = store.user(user_id).await?.map(|u| u.roles);
        let mut current = self.current.lock().expect("not poisoned");
        if current.len() >= VERIFIED_CACHE {
            let ttl = self.config.roles_ttl;
            current.retain(|_, c| c.read_at.elapsed() < ttl);
        }
        current.insert(
            user_id.to_string(),
            CurrentUser {
                read_at: Instant::now(),
                roles: roles.clone(),
            },
        );
        Ok(roles)
    }

    /// Forgets what is known of a user's roles (after this process changed or deleted them).
    pub fn forget_user(&self, user_id: &str) {
        self.current.lock().expect("not poisoned").remove(user_id);
    }
}
