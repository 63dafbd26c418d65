//! `/api/v1/auth/*` and `/api/v1/me`: the built-in user pool (Cognito's user-facing API).
//!
//! Sign-up, confirmation, sign-in and password reset answer the same way whether or not an
//! account exists, and an unknown e-mail costs the same argon2 time as a wrong password, so
//! the API does not tell who has an account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use ecocityhub_identity::tokens::scopes;
use ecocityhub_identity::{account, password, secrets, Action, Resource, Role};
use ecocityhub_store::identity::{RefreshToken, User, VerificationCode};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ClientIp};
use crate::identity::Throttled;
use crate::signed_in::SignedIn;
use crate::state::AppState;

const CONFIRM: &str = "confirm";
const RESET: &str = "reset";

/// An e-mail address and a password.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailOnly {
    pub email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConfirmRequest {
    pub email: String,
    pub code: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    pub email: String,
    pub code: String,
    pub new_password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePasswordRequest {
    pub old_password: String,
    pub new_password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Tokens after a sign-in or a refresh.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenSet {
    pub id_token: String,
    pub access_token: String,
    /// Opaque; each use returns a new one (the old one stops working).
    pub refresh_token: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: i64,
    pub token_type: &'static str,
}

/// The same answer for every request that may or may not concern an account.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub status: &'static str,
    pub detail: &'static str,
}

/// A user as shown to themselves and to admins.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserOut {
    pub id: String,
    pub email: String,
    /// citizen, operator, admin.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    pub confirmed: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for UserOut {
    fn from(u: &User) -> Self {
        UserOut {
            id: u.id.clone(),
            email: u.email.clone(),
            roles: u.roles.clone(),
            confirmed: u.confirmed,
            created_at: u.created_at,
        }
    }
}

/// The address, trimmed and lower-cased, or a 400.
pub(crate) fn normalize_email(raw: &str) -> ApiResult<String> {
    account::normalize_email(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn policy(password: &str) -> ApiResult<()> {
    password::check_policy(password).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Hashes a password off the async threads (argon2 takes tens of milliseconds on purpose), in
/// the bounded pool of the identity layer.
async fn hash_password(app: &AppState, password: String) -> ApiResult<String> {
    app.identity()
        .passwords
        .run(move |memory| password::hash_in(&password, memory))
        .await
}

async fn verify_password(
    app: &AppState,
    password: String,
    stored: Option<String>,
) -> ApiResult<bool> {
    app.identity()
        .passwords
        .run(move |memory| match stored {
            Some(h) => password::verify_in(&password, &h, memory),
            None => {
                password::verify_dummy_in(&password, memory);
                false
            }
        })
        .await
}

/// One hour, the window of the per-address limits on codes.
const HOUR: i64 = 3600;

fn code_send_key(email: &str) -> String {
    format!("code-send:{email}")
}

fn code_guess_key(email: &str) -> String {
    format!("code-guess:{email}")
}

fn sign_in_address_key(email: &str) -> String {
    format!("sign-in-address:{email}")
}

/// Counts a request for a code to `email` — whether or not an account has the address, so the
/// limit tells no one — and refuses it beyond `codes_per_hour`.
async fn allow_code_request(app: &AppState, email: &str) -> ApiResult<()> {
    let (sent, window_ends) = app
        .store()
        .count_attempt(&code_send_key(email), HOUR, Utc::now())
        .await?;
    if sent > app.identity().config.codes_per_hour {
        return Err(ApiError::TooManyRequests(format!(
            "too many codes were asked for this address; ask again after {}",
            window_ends.format("%H:%M UTC")
        )));
    }
    Ok(())
}

async fn send_code(app: &AppState, email: &str, purpose: &str) -> ApiResult<()> {
    let code = secrets::code();
    let record = VerificationCode {
        email: email.into(),
        purpose: purpose.into(),
        code_hash: secrets::digest(&code),
        expires_at: Utc::now() + app.identity().config.code_ttl,
        attempts: 0,
    };
    let (subject, body) = match purpose {
        CONFIRM => ("Your EcoCityHub confirmation code", format!("Your confirmation code is {code}. It is valid for 24 hours.")),
        _ => ("Your EcoCityHub password reset code", format!("Your password reset code is {code}. If you did not ask for it, ignore this message.")),
    };
    app.identity()
        .delivery
        .deliver_code(app.store(), &record, subject, &body)
        .await
}

/// Checks and consumes a code; every failure reads the same. Wrong codes are counted per
/// address across codes (a new code does not start the count again), and beyond
/// `code_guesses_per_hour` no code is checked for the address until the hour is over.
async fn check_code(app: &AppState, email: &str, purpose: &str, code: &str) -> ApiResult<()> {
    let now = Utc::now();
    let config = &app.identity().config;
    let (guesses, window_ends) = app
        .store()
        .attempts(&code_guess_key(email), HOUR, now)
        .await?;
    if guesses >= config.code_guesses_per_hour {
        return Err(ApiError::TooManyRequests(format!(
            "too many wrong codes for this address; try again after {}",
            window_ends.format("%H:%M UTC")
        )));
    }
    let stored = app.store().code(email, purpose).await?;
    let matches = stored.as_ref().is_some_and(|stored| {
        stored.expires_at >= now
            && stored.attempts < config.max_code_attempts
            && bool::from(
                secrets::digest(code.trim())
                    .as_bytes()
                    .ct_eq(stored.code_hash.as_bytes()),
            )
    });
    if !matches {
        app.store()
            .count_attempt(&code_guess_key(email), HOUR, now)
            .await?;
        if stored.is_some() {
            app.store().bump_code_attempts(email, purpose).await?;
        }
        return Err(ApiError::BadRequest(
            "the code is not valid or has expired; ask for a new one".into(),
        ));
    }
    app.store().delete_code(email, purpose).await?;
    Ok(())
}

/// Tokens and a new refresh token (a new family, or the next of `family`); `nonce` goes into
/// the ID token (OIDC code flow); `scope` is what the client was granted, and the refresh
/// token keeps it, so refreshing never widens it.
pub(crate) async fn tokens_for(
    app: &AppState,
    user: &User,
    family: Option<(String, DateTime<Utc>)>,
    nonce: Option<&str>,
    scope: &str,
) -> ApiResult<TokenSet> {
    let (id_token, access_token) = app
        .identity()
        .issue(app.store(), user, nonce, scope)
        .await?;
    let refresh_token = secrets::token();
    let now = Utc::now();
    let (family, expires_at) =
        family.unwrap_or_else(|| (secrets::token(), now + app.identity().config.refresh_ttl));
    app.store()
        .insert_refresh_token(&RefreshToken {
            token_hash: secrets::digest(&refresh_token),
            family,
            user_id: user.id.clone(),
            expires_at,
            used_at: None,
            revoked_at: None,
            created_at: now,
            scope: scope.to_string(),
        })
        .await?;
    Ok(TokenSet {
        id_token,
        access_token,
        refresh_token,
        expires_in: app.identity().config.tokens.access_ttl.num_seconds(),
        token_type: "Bearer",
    })
}

const CODE_SENT: Accepted = Accepted {
    status: "code_sent",
    detail: "if the address can receive mail, a code is on its way to it",
};

/// Creates an account (role citizen) and sends a confirmation code. The answer is the same
/// whether or not the address already has an account; an existing account is told by e-mail.
#[utoipa::path(post, path = "/api/v1/auth/sign-up", tag = "auth", request_body = Credentials,
    responses((status = 202, body = Accepted), (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 429, body = crate::error::Problem, content_type = "application/problem+json", description = "Too many sign-ups from this client address or codes for this address"),
              (status = 503, body = crate::error::Problem, content_type = "application/problem+json", description = "Too many passwords being hashed at once; retry after `Retry-After`")))]
pub async fn sign_up(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let email = normalize_email(&req.email)?;
    policy(&req.password)?;
    app.identity().throttle_for(Throttled::SignUp, ip)?;
    allow_code_request(&app, &email).await?;
    let user = User {
        id: account::new_user_id(),
        email: email.clone(),
        password_hash: hash_password(&app, req.password).await?,
        roles: vec![Role::Citizen],
        confirmed: false,
        created_at: Utc::now(),
    };
    if app.store().insert_user(&user).await? {
        send_code(&app, &email, CONFIRM).await?;
    } else {
        app.identity()
            .delivery
            .deliver(&email, "EcoCityHub sign-up", "Someone tried to sign up with this address, which already has an account. Sign in, or reset your password.")
            .await?;
    }
    Ok((StatusCode::ACCEPTED, Json(CODE_SENT)))
}

/// Confirms an e-mail address with the code sent to it.
#[utoipa::path(post, path = "/api/v1/auth/confirm", tag = "auth", request_body = ConfirmRequest,
    responses((status = 200, body = Accepted), (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 429, body = crate::error::Problem, content_type = "application/problem+json", description = "Too many wrong codes for the address, or requests from this client address")))]
pub async fn confirm(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> ApiResult<Json<Accepted>> {
    app.identity().throttle_for(Throttled::CodeRequest, ip)?;
    let email = normalize_email(&req.email)?;
    check_code(&app, &email, CONFIRM, &req.code).await?;
    if let Some(mut user) = app.store().user_by_email(&email).await? {
        user.confirmed = true;
        app.store().update_user(&user).await?;
    }
    Ok(Json(Accepted {
        status: "confirmed",
        detail: "the address is confirmed; sign in",
    }))
}

/// Sends a new confirmation code (same answer, in the same time, for any address).
#[utoipa::path(post, path = "/api/v1/auth/resend-code", tag = "auth", request_body = EmailOnly,
    responses((status = 202, body = Accepted),
              (status = 429, body = crate::error::Problem, content_type = "application/problem+json", description = "Too many codes for the address, or requests from this client address")))]
pub async fn resend_code(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<EmailOnly>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    app.identity().throttle_for(Throttled::CodeRequest, ip)?;
    let email = normalize_email(&req.email)?;
    allow_code_request(&app, &email).await?;
    // Answered before the account is looked up, as forgot-password is, so the answer's
    // timing cannot tell an unconfirmed account from anything else.
    tokio::spawn(async move {
        let sent = match app.store().user_by_email(&email).await {
            Ok(Some(user)) if !user.confirmed => send_code(&app, &email, CONFIRM).await,
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = sent {
            tracing::error!(error = %e, "could not send a confirmation code");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(CODE_SENT)))
}

/// Signs in with e-mail and password. After 5 wrong passwords from one client address, that
/// client is locked out of the account for 15 minutes; after 100 failures in an hour from
/// anywhere, only client addresses that signed in to it before may try; one client address may
/// try 30 times a minute.
#[utoipa::path(post, path = "/api/v1/auth/sign-in", tag = "auth", request_body = Credentials,
    responses((status = 200, body = TokenSet),
              (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 403, body = crate::error::Problem, content_type = "application/problem+json", description = "E-mail not confirmed"),
              (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn sign_in(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<Json<TokenSet>> {
    let user = check_credentials(&app, ip, &req.email, req.password).await?;
    Ok(Json(
        tokens_for(&app, &user, None, None, scopes::FIRST_PARTY).await?,
    ))
}

/// The account these credentials open, with the throttle, the lock-out and the same answer
/// for an unknown address as for a wrong password; shared by sign-in and the OIDC form.
pub(crate) async fn check_credentials(
    app: &AppState,
    ip: Option<std::net::IpAddr>,
    email: &str,
    password: String,
) -> ApiResult<User> {
    app.identity().throttle(ip)?;
    let email = normalize_email(email)?;
    let client = ip.map(|ip| ip.to_string()).unwrap_or_default();
    let user = app.store().user_by_email(&email).await?;
    let now = Utc::now();
    // Failures and locks are kept per address, account or not: the same writes, the same
    // lock-out, the same answers either way.
    check_not_locked(app, &email, &client, now).await?;
    let ok = verify_password(
        app,
        password,
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await?;
    let user = match user {
        Some(user) if ok => user,
        _ => {
            record_failure(app, &email, &client, now).await?;
            return Err(ApiError::unauthorized(
                "incorrect e-mail address or password",
            ));
        }
    };
    if !user.confirmed {
        return Err(ApiError::Forbidden("confirm your e-mail address first (POST /api/v1/auth/confirm; /resend-code sends a new code)".into()));
    }
    let store = app.store();
    store.clear_sign_in_failures(&email, Some(&client)).await?;
    store.remember_sign_in_client(&email, &client, now).await?;
    Ok(user)
}

/// A 429 when this client is locked out of the address, or when the address is under a flood
/// of failures and this client never signed in to it.
async fn check_not_locked(
    app: &AppState,
    email: &str,
    client: &str,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let config = &app.identity().config;
    if let Some(until) = app
        .store()
        .sign_in_locked_until(email, client)
        .await?
        .filter(|t| *t > now)
    {
        return Err(ApiError::TooManyRequests(format!(
            "too many failed sign-ins; try again after {} or reset the password",
            until.format("%H:%M UTC")
        )));
    }
    let (failures, window_ends) = app
        .store()
        .attempts(&sign_in_address_key(email), HOUR, now)
        .await?;
    if failures >= config.address_failures_per_hour {
        let since = now - chrono::Duration::days(config.known_client_days);
        if !app
            .store()
            .is_known_sign_in_client(email, client, since)
            .await?
        {
            return Err(ApiError::TooManyRequests(format!(
                "this account is receiving many wrong passwords; until {} it can only be \
                 signed in to from where it was signed in to before, or after a password reset",
                window_ends.format("%H:%M UTC")
            )));
        }
    }
    Ok(())
}

async fn record_failure(
    app: &AppState,
    email: &str,
    client: &str,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let config = &app.identity().config;
    let locked = app
        .store()
        .record_sign_in_failure(
            email,
            client,
            config.max_failed_logins,
            now + config.lockout,
        )
        .await?;
    if locked {
        tracing::warn!("a client was locked out of an address after failed sign-ins");
    }
    app.store()
        .count_attempt(&sign_in_address_key(email), HOUR, now)
        .await?;
    Ok(())
}

/// Exchanges a refresh token for new tokens. Each refresh token works once: a second use means
/// it was stolen, and ends every session of its sign-in.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenSet), (status = 401, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn refresh(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenSet>> {
    Ok(Json(rotate_refresh_token(&app, &req.refresh_token).await?))
}

/// New tokens for a refresh token, which is used up; a second use ends the whole sign-in.
pub(crate) async fn rotate_refresh_token(
    app: &AppState,
    refresh_token: &str,
) -> ApiResult<TokenSet> {
    let invalid = || ApiError::unauthorized("the refresh token is not valid; sign in again");
    let hash = secrets::digest(refresh_token.trim());
    let Some(stored) = app.store().refresh_token(&hash).await? else {
        return Err(invalid());
    };
    let now = Utc::now();
    if stored.revoked_at.is_some() || stored.expires_at < now {
        return Err(invalid());
    }
    if stored.used_at.is_some() || !app.store().use_refresh_token(&hash, now).await? {
        let revoked = app
            .store()
            .revoke_refresh_family(&stored.family, now)
            .await?;
        tracing::warn!(user = %stored.user_id, revoked, "refresh token reused: its family is revoked");
        return Err(ApiError::unauthorized("this refresh token was already used; for safety, this sign-in has been ended everywhere. Sign in again"));
    }
    let Some(user) = app.store().user(&stored.user_id).await? else {
        return Err(invalid());
    };
    tokens_for(
        app,
        &user,
        Some((stored.family, stored.expires_at)),
        None,
        &stored.scope,
    )
    .await
}

/// Ends a sign-in: its refresh token and every rotation of it stop working.
#[utoipa::path(post, path = "/api/v1/auth/sign-out", tag = "auth", request_body = RefreshRequest, responses((status = 204)))]
pub async fn sign_out(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    if let Some(stored) = app
        .store()
        .refresh_token(&secrets::digest(req.refresh_token.trim()))
        .await?
    {
        app.store()
            .revoke_refresh_family(&stored.family, Utc::now())
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a password reset code (same answer for any address).
#[utoipa::path(post, path = "/api/v1/auth/forgot-password", tag = "auth", request_body = EmailOnly,
    responses((status = 202, body = Accepted),
              (status = 429, body = crate::error::Problem, content_type = "application/problem+json", description = "Too many codes for the address, or requests from this client address")))]
pub async fn forgot_password(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<EmailOnly>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    app.identity().throttle_for(Throttled::CodeRequest, ip)?;
    let email = normalize_email(&req.email)?;
    allow_code_request(&app, &email).await?;
    // Answered before the account is even looked up, so the answer's timing cannot tell
    // whether the address has an account; the code goes out in the background.
    tokio::spawn(async move {
        let sent = match app.store().user_by_email(&email).await {
            Ok(Some(_)) => send_code(&app, &email, RESET).await.map(|_| ()),
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = sent {
            tracing::error!(error = %e, "could not send a password-reset code");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(CODE_SENT)))
}

/// Sets a new password with a reset code; ends every sign-in of the account and lifts a lock.
#[utoipa::path(post, path = "/api/v1/auth/reset-password", tag = "auth", request_body = ResetRequest,
    responses((status = 200, body = Accepted), (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 429, body = crate::error::Problem, content_type = "application/problem+json", description = "Too many wrong codes for the address, or requests from this client address")))]
pub async fn reset_password(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ResetRequest>,
) -> ApiResult<Json<Accepted>> {
    app.identity().throttle_for(Throttled::CodeRequest, ip)?;
    let email = normalize_email(&req.email)?;
    policy(&req.new_password)?;
    check_code(&app, &email, RESET, &req.code).await?;
    if let Some(mut user) = app.store().user_by_email(&email).await? {
        user.password_hash = hash_password(&app, req.new_password).await?;
        user.confirmed = true; // the code proves the address
        app.store().update_user(&user).await?;
        app.store().clear_sign_in_failures(&email, None).await?;
        app.store()
            .clear_attempts(&sign_in_address_key(&email))
            .await?;
        app.store()
            .revoke_user_refresh_tokens(&user.id, Utc::now())
            .await?;
    }
    Ok(Json(Accepted {
        status: "password_reset",
        detail: "the password is changed; sign in with it",
    }))
}

/// Changes the signed-in user's password; ends their other sign-ins.
#[utoipa::path(post, path = "/api/v1/auth/change-password", tag = "auth", request_body = ChangePasswordRequest,
    security(("bearer_jwt" = [])),
    responses((status = 200, body = Accepted), (status = 400, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn change_password(
    State(app): State<AppState>,
    me: SignedIn,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> ApiResult<Json<Accepted>> {
    me.authorize(
        &app,
        Action::UpdateAccount,
        &Resource::User(me.user_id().into()),
    )?;
    policy(&req.new_password)?;
    let mut user = app
        .store()
        .user(me.user_id())
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    if !verify_password(&app, req.old_password, Some(user.password_hash.clone())).await? {
        return Err(ApiError::BadRequest(
            "the current password is not correct".into(),
        ));
    }
    user.password_hash = hash_password(&app, req.new_password).await?;
    app.store().update_user(&user).await?;
    app.store()
        .revoke_user_refresh_tokens(&user.id, Utc::now())
        .await?;
    Ok(Json(Accepted {
        status: "password_changed",
        detail: "the password is changed; other sign-ins have ended",
    }))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer_jwt" = [])),
    responses((status = 200, body = UserOut), (status = 401, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn me(State(app): State<AppState>, me: SignedIn) -> ApiResult<Json<UserOut>> {
    me.authorize(
        &app,
        Action::ReadAccount,
        &Resource::User(me.user_id().into()),
    )?;
    let user = app
        .store()
        .user(me.user_id())
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    Ok(Json(UserOut::from(&user)))
}

/// Deletes the signed-in user's account and ends its sign-ins.
#[utoipa::path(delete, path = "/api/v1/me", tag = "auth", security(("bearer_jwt" = [])), responses((status = 204)))]
pub async fn delete_me(State(app): State<AppState>, me: SignedIn) -> ApiResult<StatusCode> {
    me.authorize(
        &app,
        Action::DeleteAccount,
        &Resource::User(me.user_id().into()),
    )?;
    app.store().delete_user(me.user_id()).await?;
    app.identity().forget_user(me.user_id());
    Ok(StatusCode::NO_CONTENT)
}
