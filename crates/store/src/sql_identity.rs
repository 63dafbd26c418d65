//! [`IdentityStore`] on SQLite and PostgreSQL, in the SQL both understand (see `sql.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecocityhub_identity::policy::roles_text;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::identity::{
    AuthCode, FederatedIdentity, FederatedLogin, IdentityStore, OutboxMessage, RefreshToken,
    SigningKey, User, VerificationCode, FORMER_USER,
};
use crate::sql::{opt_time, time};
use crate::{Result, SqlStore, StoreError};

const USER_COLUMNS: &str = "id, email, password_hash, roles, confirmed, created_at";
const REFRESH_COLUMNS: &str =
    "token_hash, family, user_id, expires_at, used_at, revoked_at, created_at, scope";
const FEDERATED_LOGIN_COLUMNS: &str = "state_hash, provider, nonce, code_verifier, client_id, \
     redirect_uri, client_state, client_nonce, code_challenge, expires_at, client_scope";
const FEDERATED_IDENTITY_COLUMNS: &str = "provider, subject, user_id, email, linked_at";

fn federated_identity_from_row(row: &AnyRow) -> Result<FederatedIdentity> {
    Ok(FederatedIdentity {
        provider: row.try_get("provider")?,
        subject: row.try_get("subject")?,
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        linked_at: time(row.try_get("linked_at")?)?,
    })
}

fn user_from_row(row: &AnyRow) -> Result<User> {
    let roles: String = row.try_get("roles")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|r| r.parse().map_err(StoreError::Corrupt))
            .collect::<Result<_>>()?,
        confirmed: row.try_get::<i64, _>("confirmed")? != 0,
        created_at: time(row.try_get("created_at")?)?,
    })
}

fn refresh_from_row(row: &AnyRow) -> Result<RefreshToken> {
    Ok(RefreshToken {
        token_hash: row.try_get("token_hash")?,
        family: row.try_get("family")?,
        user_id: row.try_get("user_id")?,
        expires_at: time(row.try_get("expires_at")?)?,
        used_at: opt_time(row.try_get("used_at")?)?,
        revoked_at: opt_time(row.try_get("revoked_at")?)?,
        created_at: time(row.try_get("created_at")?)?,
        scope: row.try_get("scope")?,
    })
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn insert_user(&self, u: &User) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "INSERT INTO users (id, email, password_hash, roles, confirmed, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&u.id)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(roles_text(&u.roles))
        .bind(i64::from(u.confirmed))
        .bind(u.created_at.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id <> $1 ORDER BY created_at, id"
        ))
        .bind(FORMER_USER)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(&self, u: &User) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE users SET password_hash = $1, roles = $2, confirmed = $3 WHERE id = $4",
        )
        .bind(&u.password_hash)
        .bind(roles_text(&u.roles))
        .bind(i64::from(u.confirmed))
        .bind(&u.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_user(&self, id: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let filed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE reporter = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if filed > 0 && id != FORMER_USER {
            sqlx::query(
                "INSERT INTO users (id, email, password_hash, roles, confirmed, created_at) \
                 VALUES ($1, $2, '!', 'citizen', 0, 0) ON CONFLICT (id) DO NOTHING",
            )
            .bind(FORMER_USER)
            .bind(format!("{FORMER_USER}@deleted.invalid"))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE reports SET reporter = $1 WHERE reporter = $2")
                .bind(FORMER_USER)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_code(&self, c: &VerificationCode) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO verification_codes (email, purpose, code_hash, expires_at, attempts) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (email, purpose) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = excluded.attempts",
        )
        .bind(&c.email)
        .bind(&c.purpose)
        .bind(&c.code_hash)
        .bind(c.expires_at.timestamp())
        .bind(c.attempts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn code(&self, email: &str, purpose: &str) -> Result<Option<VerificationCode>> {
        let row = sqlx::query("SELECT email, purpose, code_hash, expires_at, attempts FROM verification_codes WHERE email = $1 AND purpose = $2")
            .bind(email)
            .bind(purpose)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(VerificationCode {
                email: r.try_get("email")?,
                purpose: r.try_get("purpose")?,
                code_hash: r.try_get("code_hash")?,
                expires_at: time(r.try_get("expires_at")?)?,
                attempts: r.try_get("attempts")?,
            })
        })
        .transpose()
    }

    async fn bump_code_attempts(&self, email: &str, purpose: &str) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE verification_codes SET attempts = attempts + 1 WHERE email = $1 AND purpose = $2")
            .bind(email)
            .bind(purpose)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_code(&self, email: &str, purpose: &str) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM verification_codes WHERE email = $1 AND purpose = $2")
            .bind(email)
            .bind(purpose)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sign_in_locked_until(
        &self,
        email: &str,
        client: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT locked_until FROM sign_in_failures WHERE email = $1 AND client = $2",
        )
        .bind(email)
        .bind(client)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => opt_time(r.try_get("locked_until")?),
            None => Ok(None),
        }
    }

    async fn record_sign_in_failure(
        &self,
        email: &str,
        client: &str,
        max: i64,
        lock_until: DateTime<Utc>,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let failures: i64 = sqlx::query(
            "INSERT INTO sign_in_failures (email, client, failures) VALUES ($1, $2, 1) \
             ON CONFLICT (email, client) DO UPDATE SET failures = sign_in_failures.failures + 1 \
             RETURNING failures",
        )
        .bind(email)
        .bind(client)
        .fetch_one(&mut *tx)
        .await?
        .try_get("failures")?;
        let locked = failures >= max;
        if locked {
            sqlx::query(
                "UPDATE sign_in_failures SET failures = 0, locked_until = $1 \
                 WHERE email = $2 AND client = $3",
            )
            .bind(lock_until.timestamp())
            .bind(email)
            .bind(client)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(locked)
    }

    async fn clear_sign_in_failures(&self, email: &str, client: Option<&str>) -> Result<()> {
        let _turn = self.write_turn().await;
        match client {
            Some(client) => {
                sqlx::query("DELETE FROM sign_in_failures WHERE email = $1 AND client = $2")
                    .bind(email)
                    .bind(client)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM sign_in_failures WHERE email = $1")
                    .bind(email)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(())
    }

    async fn remember_sign_in_client(
        &self,
        email: &str,
        client: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO known_sign_in_clients (email, client, last_success) VALUES ($1, $2, $3) \
             ON CONFLICT (email, client) DO UPDATE SET last_success = excluded.last_success",
        )
        .bind(email)
        .bind(client)
        .bind(at.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn is_known_sign_in_client(
        &self,
        email: &str,
        client: &str,
        since: DateTime<Utc>,
    ) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT last_success FROM known_sign_in_clients \
             WHERE email = $1 AND client = $2 AND last_success >= $3",
        )
        .bind(email)
        .bind(client)
        .bind(since.timestamp())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn count_attempt(
        &self,
        key: &str,
        window_seconds: i64,
        now: DateTime<Utc>,
    ) -> Result<(i64, DateTime<Utc>)> {
        let _turn = self.write_turn().await;
        let now = now.timestamp();
        // A window that ended is replaced by one starting now, in the same statement.
        let row = sqlx::query(
            "INSERT INTO attempt_counters (key, window_start, count) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN attempt_counters.window_start <= $3 THEN 1 \
                            ELSE attempt_counters.count + 1 END, \
               window_start = CASE WHEN attempt_counters.window_start <= $3 THEN $2 \
                                   ELSE attempt_counters.window_start END \
             RETURNING count, window_start",
        )
        .bind(key)
        .bind(now)
        .bind(now - window_seconds)
        .fetch_one(&self.pool)
        .await?;
        let start: i64 = row.try_get("window_start")?;
        Ok((row.try_get("count")?, time(start + window_seconds)?))
    }

    async fn attempts(
        &self,
        key: &str,
        window_seconds: i64,
        now: DateTime<Utc>,
    ) -> Result<(i64, DateTime<Utc>)> {
        let row = sqlx::query("SELECT count, window_start FROM attempt_counters WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let now = now.timestamp();
        match row {
            Some(r) => {
                let start: i64 = r.try_get("window_start")?;
                if start + window_seconds > now {
                    Ok((r.try_get("count")?, time(start + window_seconds)?))
                } else {
                    Ok((0, time(now)?))
                }
            }
            None => Ok((0, time(now)?)),
        }
    }

    async fn clear_attempts(&self, key: &str) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM attempt_counters WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_attempts(&self, before: DateTime<Utc>) -> Result<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM attempt_counters WHERE window_start < $1")
            .bind(before.timestamp())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(&format!(
            "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&t.token_hash)
        .bind(&t.family)
        .bind(&t.user_id)
        .bind(t.expires_at.timestamp())
        .bind(t.used_at.map(|x| x.timestamp()))
        .bind(t.revoked_at.map(|x| x.timestamp()))
        .bind(t.created_at.timestamp())
        .bind(&t.scope)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshToken>> {
        let row = sqlx::query(
            // A token of a revoked family is revoked, also when it was added to the family
            // after the revocation (a refresh racing with the reuse that revoked its family).
            "SELECT token_hash, family, user_id, expires_at, used_at, \
             COALESCE(revoked_at, (SELECT MAX(f.revoked_at) FROM refresh_tokens f \
                                   WHERE f.family = t.family)) AS revoked_at, \
             created_at, scope FROM refresh_tokens t WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(refresh_from_row).transpose()
    }

    async fn use_refresh_token(&self, token_hash: &str, at: DateTime<Utc>) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(at.timestamp())
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_refresh_family(&self, family: &str, at: DateTime<Utc>) -> Result<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
        )
        .bind(at.timestamp())
        .bind(family)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn revoke_user_refresh_tokens(&self, user_id: &str, at: DateTime<Utc>) -> Result<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(at.timestamp())
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let rows = sqlx::query("SELECT kid, private_pem, created_at, retired_at FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKey {
                    kid: r.try_get("kid")?,
                    private_pem: r.try_get("private_pem")?,
                    created_at: time(r.try_get("created_at")?)?,
                    retired_at: opt_time(r.try_get("retired_at")?)?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, k: &SigningKey) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("INSERT INTO signing_keys (kid, private_pem, created_at, retired_at) VALUES ($1, $2, $3, $4)")
            .bind(&k.kid)
            .bind(&k.private_pem)
            .bind(k.created_at.timestamp())
            .bind(k.retired_at.map(|t| t.timestamp()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn replace_signing_key_secret(&self, kid: &str, private_pem: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE signing_keys SET private_pem = $1 WHERE kid = $2")
            .bind(private_pem)
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retire_signing_key(&self, kid: &str, at: DateTime<Utc>) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
        )
        .bind(at.timestamp())
        .bind(kid)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_auth_code(&self, c: &AuthCode) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, redirect_uri, code_challenge, nonce, user_id, expires_at, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.code_challenge)
        .bind(c.nonce.as_deref())
        .bind(&c.user_id)
        .bind(c.expires_at.timestamp())
        .bind(&c.scope)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_auth_code(&self, code_hash: &str) -> Result<Option<AuthCode>> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(
            "DELETE FROM oauth_codes WHERE code_hash = $1 \
             RETURNING code_hash, client_id, redirect_uri, code_challenge, nonce, user_id, expires_at, scope",
        )
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(AuthCode {
                code_hash: r.try_get("code_hash")?,
                client_id: r.try_get("client_id")?,
                redirect_uri: r.try_get("redirect_uri")?,
                code_challenge: r.try_get("code_challenge")?,
                nonce: r.try_get("nonce")?,
                user_id: r.try_get("user_id")?,
                expires_at: time(r.try_get("expires_at")?)?,
                scope: r.try_get("scope")?,
            })
        })
        .transpose()
    }

    async fn insert_federated_login(&self, l: &FederatedLogin) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(&format!(
            "INSERT INTO federated_logins ({FEDERATED_LOGIN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&l.state_hash)
        .bind(&l.provider)
        .bind(&l.nonce)
        .bind(&l.code_verifier)
        .bind(&l.client_id)
        .bind(&l.redirect_uri)
        .bind(l.client_state.as_deref())
        .bind(l.client_nonce.as_deref())
        .bind(&l.code_challenge)
        .bind(l.expires_at.timestamp())
        .bind(&l.client_scope)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_federated_login(&self, state_hash: &str) -> Result<Option<FederatedLogin>> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(&format!(
            "DELETE FROM federated_logins WHERE state_hash = $1 RETURNING {FEDERATED_LOGIN_COLUMNS}"
        ))
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(FederatedLogin {
                state_hash: r.try_get("state_hash")?,
                provider: r.try_get("provider")?,
                nonce: r.try_get("nonce")?,
                code_verifier: r.try_get("code_verifier")?,
                client_id: r.try_get("client_id")?,
                redirect_uri: r.try_get("redirect_uri")?,
                client_state: r.try_get("client_state")?,
                client_nonce: r.try_get("client_nonce")?,
                code_challenge: r.try_get("code_challenge")?,
                expires_at: time(r.try_get("expires_at")?)?,
                client_scope: r.try_get("client_scope")?,
            })
        })
        .transpose()
    }

    async fn purge_federated_logins(&self, now: DateTime<Utc>) -> Result<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM federated_logins WHERE expires_at < $1")
            .bind(now.timestamp())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_federated_identity(&self, f: &FederatedIdentity) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(&format!(
            "INSERT INTO federated_identities ({FEDERATED_IDENTITY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (provider, subject) DO NOTHING"
        ))
        .bind(&f.provider)
        .bind(&f.subject)
        .bind(&f.user_id)
        .bind(&f.email)
        .bind(f.linked_at.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn federated_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<FederatedIdentity>> {
        let row = sqlx::query(&format!(
            "SELECT {FEDERATED_IDENTITY_COLUMNS} FROM federated_identities \
             WHERE provider = $1 AND subject = $2"
        ))
        .bind(provider)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(federated_identity_from_row).transpose()
    }

    async fn federated_identities_of(&self, user_id: &str) -> Result<Vec<FederatedIdentity>> {
        let rows = sqlx::query(&format!(
            "SELECT {FEDERATED_IDENTITY_COLUMNS} FROM federated_identities \
             WHERE user_id = $1 ORDER BY linked_at, provider, subject"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(federated_identity_from_row).collect()
    }

    async fn push_outbox(&self, m: &OutboxMessage) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("INSERT INTO outbox (channel, recipient, subject, body, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&m.channel)
            .bind(&m.recipient)
            .bind(&m.subject)
            .bind(&m.body)
            .bind(m.created_at.timestamp())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox(&self, recipient: &str) -> Result<Vec<OutboxMessage>> {
        let rows = sqlx::query("SELECT channel, recipient, subject, body, created_at FROM outbox WHERE recipient = $1 ORDER BY id")
            .bind(recipient)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxMessage {
                    channel: r.try_get("channel")?,
                    recipient: r.try_get("recipient")?,
                    subject: r.try_get("subject")?,
                    body: r.try_get("body")?,
                    created_at: time(r.try_get("created_at")?)?,
                })
            })
            .collect()
    }
}
