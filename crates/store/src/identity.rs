//! What the identity layer stores: users of the built-in pool, e-mail codes, refresh-token
//! families, signing keys, authorization codes, federated sign-ins under way and the links of
//! users to outside providers, and the outbox of messages to users. [`IdentityStore`] is part of
//! every [`crate::Store`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecocityhub_identity::Role;
pub use ecocityhub_identity::SigningKey;

use crate::Result;

/// The account deleted users' reports are credited to: it cannot sign in (no password, not
/// confirmed, an `.invalid` address) and is not listed among the users.
pub const FORMER_USER: &str = "former-user";

/// A user of the built-in pool.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    /// Lower-case.
    pub email: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    /// The e-mail address has been verified.
    pub confirmed: bool,
    pub created_at: DateTime<Utc>,
}

/// An outstanding e-mail code.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationCode {
    pub email: String,
    /// `confirm` or `reset`.
    pub purpose: String,
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
    pub attempts: i64,
}

/// A refresh token as stored (its hash), in its family.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshToken {
    pub token_hash: String,
    pub family: String,
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The scopes granted to the client: every token of the family carries exactly these.
    pub scope: String,
}

/// A message waiting in the outbox (e-mail codes until the notification layer sends them).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// An authorization code of the OIDC code flow, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthCode {
    pub code_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)) (PKCE S256).
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
    /// The scopes granted to the client.
    pub scope: String,
}

/// A sign-in sent to an outside OIDC provider and not back yet (single use, minutes long).
#[derive(Debug, Clone, PartialEq)]
pub struct FederatedLogin {
    /// SHA-256 of the `state` sent to the provider.
    pub state_hash: String,
    /// The provider's configured name.
    pub provider: String,
    /// The `nonce` sent to the provider, expected back in its ID token.
    pub nonce: String,
    /// Our PKCE verifier for the provider's token endpoint.
    pub code_verifier: String,
    /// Our client's authorization request, answered when the user comes back.
    pub client_id: String,
    pub redirect_uri: String,
    pub client_state: Option<String>,
    pub client_nonce: Option<String>,
    pub code_challenge: String,
    pub expires_at: DateTime<Utc>,
    /// The scopes granted to the client.
    pub client_scope: String,
}

/// A user's identity at an outside provider, linked to an account of the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct FederatedIdentity {
    pub provider: String,
    /// The provider's `sub` for the user.
    pub subject: String,
    pub user_id: String,
    /// The verified address the provider gave when the link was made.
    pub email: String,
    pub linked_at: DateTime<Utc>,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Adds a user; `false` when the e-mail is taken.
    async fn insert_user(&self, user: &User) -> Result<bool>;
    async fn user(&self, id: &str) -> Result<Option<User>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// All users, oldest first.
    async fn users(&self) -> Result<Vec<User>>;
    /// Writes every field but `id`, `email` and `created_at`.
    async fn update_user(&self, user: &User) -> Result<()>;
    /// Deletes the account and what is only theirs (sign-ins, channels, follows…); the reports
    /// they filed stay, public record as in FixMyStreet, credited to [`FORMER_USER`].
    async fn delete_user(&self, id: &str) -> Result<bool>;

    /// Stores the code, replacing an earlier one of the same e-mail and purpose.
    async fn put_code(&self, code: &VerificationCode) -> Result<()>;
    async fn code(&self, email: &str, purpose: &str) -> Result<Option<VerificationCode>>;
    async fn bump_code_attempts(&self, email: &str, purpose: &str) -> Result<()>;
    async fn delete_code(&self, email: &str, purpose: &str) -> Result<()>;

    /// Until when sign-ins to this address from this client are locked, if they are. `client`
    /// is the client's IP address as text, or `""` when unknown.
    async fn sign_in_locked_until(
        &self,
        email: &str,
        client: &str,
    ) -> Result<Option<DateTime<Utc>>>;
    /// Counts a failed sign-in to an address from a client (whether or not an account has the
    /// address); the `max`-th in a row locks the pair until `lock_until` and starts the count
    /// again. Returns whether this failure locked it.
    async fn record_sign_in_failure(
        &self,
        email: &str,
        client: &str,
        max: i64,
        lock_until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Forgets an address's failures and locks: from one client (its successful sign-in), or
    /// from every client (`None`: a password reset).
    async fn clear_sign_in_failures(&self, email: &str, client: Option<&str>) -> Result<()>;
    /// Remembers that `client` signed in to `email` successfully at `at`.
    async fn remember_sign_in_client(
        &self,
        email: &str,
        client: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Did `client` sign in to `email` successfully at or after `since`?
    async fn is_known_sign_in_client(
        &self,
        email: &str,
        client: &str,
        since: DateTime<Utc>,
    ) -> Result<bool>;

    /// Counts one attempt under `key` in a fixed window of `window_seconds` (a new window
    /// starts at the first attempt after the last one ended) and returns the attempts counted
    /// in the current window, this one included, and when that window ends.
    async fn count_attempt(
        &self,
        key: &str,
        window_seconds: i64,
        now: DateTime<Utc>,
    ) -> Result<(i64, DateTime<Utc>)>;
    /// The attempts counted under `key` in its current window (0 when it has ended), and when
    /// the window ends.
    async fn attempts(
        &self,
        key: &str,
        window_seconds: i64,
        now: DateTime<Utc>,
    ) -> Result<(i64, DateTime<Utc>)>;
    /// Forgets the attempts under `key`.
    async fn clear_attempts(&self, key: &str) -> Result<()>;
    /// Forgets counters whose window started before `before`; returns how many.
    async fn purge_attempts(&self, before: DateTime<Utc>) -> Result<u64>;

    async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<()>;
    /// The token; `revoked_at` is set when it or any token of its family was revoked.
    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshToken>>;
    /// Marks the token used. `false` when it was used before: a replay.
    async fn use_refresh_token(&self, token_hash: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Revokes every token of the family; returns how many were still live.
    async fn revoke_refresh_family(&self, family: &str, at: DateTime<Utc>) -> Result<u64>;
    async fn revoke_user_refresh_tokens(&self, user_id: &str, at: DateTime<Utc>) -> Result<u64>;

    async fn signing_keys(&self) -> Result<Vec<SigningKey>>;
    async fn insert_signing_key(&self, key: &SigningKey) -> Result<()>;
    /// Replaces how a key's private half is kept (sealed, or sealed again under a new master
    /// key); `false` when there is no such key.
    async fn replace_signing_key_secret(&self, kid: &str, private_pem: &str) -> Result<bool>;
    /// Retires a key (it neither signs nor verifies from then on); `false` if it was not active.
    async fn retire_signing_key(&self, kid: &str, at: DateTime<Utc>) -> Result<bool>;

    async fn insert_auth_code(&self, code: &AuthCode) -> Result<()>;
    /// Removes and returns the code: a code is good for one exchange only.
    async fn take_auth_code(&self, code_hash: &str) -> Result<Option<AuthCode>>;

    async fn insert_federated_login(&self, login: &FederatedLogin) -> Result<()>;
    /// Removes and returns the sign-in: a `state` comes back once.
    async fn take_federated_login(&self, state_hash: &str) -> Result<Option<FederatedLogin>>;
    /// Forgets sign-ins that expired before `now`; returns how many.
    async fn purge_federated_logins(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Links an outside identity to a user; `false` when that identity is linked already.
    async fn insert_federated_identity(&self, identity: &FederatedIdentity) -> Result<bool>;
    async fn federated_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<FederatedIdentity>>;
    /// The outside identities linked to a user, oldest first.
    async fn federated_identities_of(&self, user_id: &str) -> Result<Vec<FederatedIdentity>>;

    async fn push_outbox(&self, message: &OutboxMessage) -> Result<()>;
    /// The messages to one recipient, oldest first.
    async fn outbox(&self, recipient: &str) -> Result<Vec<OutboxMessage>>;
}
