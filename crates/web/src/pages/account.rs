//! Account pages: sign up, confirm the e-mail address, sign in (with a password or an outside
//! OIDC provider), sign out, reset a forgotten password, and the profile (change the password,
//! delete the account). Each form does what the API's `/api/v1/auth/*` does, by calling the
//! same handlers, so the throttle, lock-out, code checks and answers are the same.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use ecocityhub_api::extract::{ApiJson, ClientIp};
use ecocityhub_api::routes::auth::{
    self as api_auth, ChangePasswordRequest, ConfirmRequest, Credentials, EmailOnly, ResetRequest,
};
use ecocityhub_api::routes::oauth::{self, TokenRequest};
use ecocityhub_api::ApiError;
use ecocityhub_identity::tokens::scopes;
use ecocityhub_identity::{secrets, Role};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{WebError, WebResult};
use crate::session::{self, CsrfForm, Visitor};
use crate::view::{self, say, Layout};
use crate::WebState;

/// A form page answered again with an error (and what the visitor typed, but never passwords).
fn again<T: Template>(status: StatusCode, page: T) -> WebResult<Response> {
    Ok((status, Html(page.render()?)).into_response())
}

fn status_of(e: &ApiError) -> StatusCode {
    match e.status() {
        s if s.is_server_error() => StatusCode::INTERNAL_SERVER_ERROR,
        s => s,
    }
}

/// The session cookie of a new sign-in, lasting as long as its refresh token.
fn session_cookie(
    web: &WebState,
    refresh_token: String,
) -> axum_extra::extract::cookie::Cookie<'static> {
    let secure = web.config.secure_cookies();
    let mut c = session::cookie(session::session_cookie(secure), refresh_token, secure);
    let ttl = web.app.identity().config.refresh_ttl.num_seconds();
    c.set_max_age(time::Duration::seconds(ttl));
    c
}

// ---- sign up and confirm -------------------------------------------------------------------

#[derive(Template)]
#[template(path = "account/sign_up.html")]
struct SignUpPage {
    layout: Layout,
    email: String,
}

#[derive(Deserialize)]
pub struct SignUpForm {
    email: String,
    password: String,
}

pub async fn sign_up_form(State(web): State<WebState>, visitor: Visitor) -> WebResult<Response> {
    super::page(SignUpPage {
        layout: Layout::new(&web, &visitor, "Create an account").section("account"),
        email: String::new(),
    })
}

pub async fn sign_up(
    State(web): State<WebState>,
    visitor: Visitor,
    peer: ClientIp,
    CsrfForm(form): CsrfForm<SignUpForm>,
) -> WebResult<Response> {
    let result = api_auth::sign_up(
        State(web.app.clone()),
        peer,
        ApiJson(Credentials {
            email: form.email.clone(),
            password: form.password,
        }),
    )
    .await;
    match result {
        Ok(_) => Ok(Redirect::to(&format!(
            "/account/confirm?email={}&sent=1",
            view::url_encode(form.email.trim())
        ))
        .into_response()),
        Err(e) => again(
            status_of(&e),
            SignUpPage {
                layout: Layout::new(&web, &visitor, "Create an account")
                    .section("account")
                    .error(say(&e)),
                email: form.email,
            },
        ),
    }
}

#[derive(Template)]
#[template(path = "account/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    email: String,
}

#[derive(Deserialize)]
pub struct EmailQuery {
    email: Option<String>,
    sent: Option<String>,
}

pub async fn confirm_form(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<EmailQuery>,
) -> WebResult<Response> {
    let mut layout = Layout::new(&web, &visitor, "Confirm your e-mail address").section("account");
    if q.sent.is_some() {
        layout = layout.flash("If the address can be used, a confirmation code is on its way to it. It is valid for 24 hours.");
    }
    super::page(ConfirmPage {
        layout,
        email: q.email.unwrap_or_default(),
    })
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    email: String,
    code: String,
}

pub async fn confirm(
    State(web): State<WebState>,
    visitor: Visitor,
    peer: ClientIp,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> WebResult<Response> {
    let result = api_auth::confirm(
        State(web.app.clone()),
        peer,
        ApiJson(ConfirmRequest {
            email: form.email.clone(),
            code: form.code,
        }),
    )
    .await;
    match result {
        Ok(_) => Ok(Redirect::to(&format!(
            "/account/sign-in?confirmed=1&email={}",
            view::url_encode(form.email.trim())
        ))
        .into_response()),
        Err(e) => again(
            status_of(&e),
            ConfirmPage {
                layout: Layout::new(&web, &visitor, "Confirm your e-mail address")
                    .section("account")
                    .error(say(&e)),
                email: form.email,
            },
        ),
    }
}

#[derive(Deserialize)]
pub struct EmailForm {
    email: String,
}

pub async fn resend_code(
    State(web): State<WebState>,
    visitor: Visitor,
    peer: ClientIp,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> WebResult<Response> {
    let result = api_auth::resend_code(
        State(web.app.clone()),
        peer,
        ApiJson(EmailOnly {
            email: form.email.clone(),
        }),
    )
    .await;
    let layout = Layout::new(&web, &visitor, "Confirm your e-mail address").section("account");
    let layout = match result {
        Ok(_) => {
            layout.flash("If the address has an unconfirmed account, a new code is on its way.")
        }
        Err(e) => layout.error(say(&e)),
    };
    super::page(ConfirmPage {
        layout,
        email: form.email,
    })
}

// ---- sign in and out -----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "account/sign_in.html")]
struct SignInPage {
    layout: Layout,
    email: String,
    next: String,
    providers: Vec<String>,
    unconfirmed: bool,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    email: Option<String>,
    confirmed: Option<String>,
    reset: Option<String>,
    signed_out: Option<String>,
    failed: Option<String>,
}

fn providers(web: &WebState) -> Vec<String> {
    web.app
        .identity()
        .federation
        .names()
        .map(str::to_string)
        .collect()
}

pub async fn sign_in_form(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<SignInQuery>,
) -> WebResult<Response> {
    let mut layout = Layout::new(&web, &visitor, "Sign in").section("account");
    if q.confirmed.is_some() {
        layout = layout.flash("Your e-mail address is confirmed. Sign in to continue.");
    } else if q.reset.is_some() {
        layout = layout.flash("Your password is changed. Sign in with the new one.");
    } else if q.signed_out.is_some() {
        layout = layout.flash("You are signed out.");
    } else if let Some(why) = q.failed {
        layout = layout.error(format!("Signing in with the provider did not work: {why}"));
    }
    super::page(SignInPage {
        layout,
        email: q.email.unwrap_or_default(),
        next: view::safe_next(q.next.as_deref()),
        providers: providers(&web),
        unconfirmed: false,
    })
}

#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

pub async fn sign_in(
    State(web): State<WebState>,
    visitor: Visitor,
    jar: CookieJar,
    peer: ClientIp,
    CsrfForm(form): CsrfForm<SignInForm>,
) -> WebResult<Response> {
    let next = view::safe_next(form.next.as_deref());
    let result = api_auth::sign_in(
        State(web.app.clone()),
        peer,
        ApiJson(Credentials {
            email: form.email.clone(),
            password: form.password,
        }),
    )
    .await;
    match result {
        Ok(Json(tokens)) => {
            tracing::info!("signed in through the web");
            Ok((
                jar.add(session_cookie(&web, tokens.refresh_token)),
                Redirect::to(&next),
            )
                .into_response())
        }
        Err(e) => {
            let unconfirmed = matches!(e, ApiError::Forbidden(_));
            let message = if unconfirmed {
                "Confirm your e-mail address first: enter the code we sent you.".to_string()
            } else {
                say(&e)
            };
            again(
                status_of(&e),
                SignInPage {
                    layout: Layout::new(&web, &visitor, "Sign in")
                        .section("account")
                        .error(message),
                    email: form.email,
                    next,
                    providers: providers(&web),
                    unconfirmed,
                },
            )
        }
    }
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn sign_out(
    State(web): State<WebState>,
    visitor: Visitor,
    jar: CookieJar,
    CsrfForm(_): CsrfForm<Empty>,
) -> WebResult<Response> {
    if let Some(user) = &visitor.user {
        web.app
            .store()
            .revoke_refresh_family(&user.family, chrono::Utc::now())
            .await?;
    }
    let secure = web.config.secure_cookies();
    Ok((
        jar.add(session::removal(session::session_cookie(secure), secure)),
        Redirect::to("/account/sign-in?signed_out=1"),
    )
        .into_response())
}

// ---- sign in with an outside provider -----------------------------------------------------

fn callback_url(web: &WebState) -> String {
    format!("{}/account/callback", web.config.public_url)
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Starts the authorization-code flow with PKCE against our own user pool's `/oauth2/authorize`
/// naming the provider, as a Cognito app client does.
pub async fn sign_in_with(
    State(web): State<WebState>,
    jar: CookieJar,
    axum::extract::Path(provider): axum::extract::Path<String>,
    Query(q): Query<NextQuery>,
) -> WebResult<Response> {
    if !providers(&web).contains(&provider) {
        return Err(WebError::NotFound(format!(
            "There is no sign-in provider called {provider:?}."
        )));
    }
    let state = secrets::token();
    let verifier = secrets::token();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let next = view::safe_next(q.next.as_deref());
    let secure = web.config.secure_cookies();
    let mut pending = session::cookie(
        session::oauth_cookie(secure),
        format!("{state} {verifier} {next}"),
        secure,
    );
    pending.set_max_age(time::Duration::minutes(10));
    let scope = format!("openid email {} {}", scopes::API, scopes::ADMIN);
    let url = format!(
        "/oauth2/authorize?identity_provider={}&response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&code_challenge={}&code_challenge_method=S256",
        view::url_encode(&provider),
        view::url_encode(&web.app.identity().config.tokens.client_id),
        view::url_encode(&callback_url(&web)),
        view::url_encode(&scope),
        state,
        challenge
    );
    Ok((jar.add(pending), Redirect::to(&url)).into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where our `/oauth2/authorize` sends the browser back: exchanges the code (with the PKCE
/// verifier kept in a cookie) at our `/oauth2/token`, and keeps the refresh token as the
/// session.
pub async fn callback(
    State(web): State<WebState>,
    jar: CookieJar,
    Query(q): Query<CallbackQuery>,
) -> WebResult<Response> {
    let secure = web.config.secure_cookies();
    let pending = jar
        .get(session::oauth_cookie(secure))
        .map(|c| c.value().to_string());
    let jar = jar.add(session::removal(session::oauth_cookie(secure), secure));
    let fail = |jar: CookieJar, why: &str| {
        Ok((
            jar,
            Redirect::to(&format!(
                "/account/sign-in?failed={}",
                view::url_encode(why)
            )),
        )
            .into_response())
    };
    if let Some(error) = q.error {
        let why = q.error_description.unwrap_or(error);
        return fail(jar, &why);
    }
    let Some(pending) = pending else {
        return fail(
            jar,
            "the sign-in took too long or was started in another browser; try again",
        );
    };
    let mut parts = pending.splitn(3, ' ');
    let (Some(state), Some(verifier), Some(next)) = (parts.next(), parts.next(), parts.next())
    else {
        return fail(jar, "the sign-in could not be resumed; try again");
    };
    let state_ok = q.state.as_deref().is_some_and(|s| {
        s.len() == state.len()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                s.as_bytes(),
                state.as_bytes(),
            ))
    });
    let (true, Some(code)) = (state_ok, q.code) else {
        return fail(jar, "the answer did not belong to this sign-in; try again");
    };
    let response = oauth::token(
        State(web.app.clone()),
        Ok(Form(TokenRequest {
            grant_type: "authorization_code".into(),
            code: Some(code),
            redirect_uri: Some(callback_url(&web)),
            client_id: Some(web.app.identity().config.tokens.client_id.clone()),
            code_verifier: Some(verifier.to_string()),
            refresh_token: None,
        })),
    )
    .await;
    let ok = response.status().is_success();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match (ok, json.get("refresh_token").and_then(|v| v.as_str())) {
        (true, Some(refresh)) => Ok((
            jar.add(session_cookie(&web, refresh.to_string())),
            Redirect::to(&view::safe_next(Some(next))),
        )
            .into_response()),
        _ => {
            let why = json
                .get("error_description")
                .and_then(|v| v.as_str())
                .unwrap_or("the code could not be exchanged");
            fail(jar, why)
        }
    }
}

// ---- forgotten password -------------------------------------------------------------------

#[derive(Template)]
#[template(path = "account/forgot.html")]
struct ForgotPage {
    layout: Layout,
}

pub async fn forgot_form(State(web): State<WebState>, visitor: Visitor) -> WebResult<Response> {
    super::page(ForgotPage {
        layout: Layout::new(&web, &visitor, "Forgot your password?").section("account"),
    })
}

pub async fn forgot(
    State(web): State<WebState>,
    visitor: Visitor,
    peer: ClientIp,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> WebResult<Response> {
    match api_auth::forgot_password(
        State(web.app.clone()),
        peer,
        ApiJson(EmailOnly {
            email: form.email.clone(),
        }),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/account/reset-password?email={}&sent=1",
            view::url_encode(form.email.trim())
        ))
        .into_response()),
        Err(e) => again(
            status_of(&e),
            ForgotPage {
                layout: Layout::new(&web, &visitor, "Forgot your password?")
                    .section("account")
                    .error(say(&e)),
            },
        ),
    }
}

#[derive(Template)]
#[template(path = "account/reset.html")]
struct ResetPage {
    layout: Layout,
    email: String,
}

pub async fn reset_form(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<EmailQuery>,
) -> WebResult<Response> {
    let mut layout = Layout::new(&web, &visitor, "Choose a new password").section("account");
    if q.sent.is_some() {
        layout = layout.flash("If the address has an account, a reset code is on its way to it.");
    }
    super::page(ResetPage {
        layout,
        email: q.email.unwrap_or_default(),
    })
}

#[derive(Deserialize)]
pub struct ResetForm {
    email: String,
    code: String,
    new_password: String,
}

pub async fn reset(
    State(web): State<WebState>,
    visitor: Visitor,
    peer: ClientIp,
    CsrfForm(form): CsrfForm<ResetForm>,
) -> WebResult<Response> {
    match api_auth::reset_password(
        State(web.app.clone()),
        peer,
        ApiJson(ResetRequest {
            email: form.email.clone(),
            code: form.code,
            new_password: form.new_password,
        }),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/account/sign-in?reset=1&email={}",
            view::url_encode(form.email.trim())
        ))
        .into_response()),
        Err(e) => again(
            status_of(&e),
            ResetPage {
                layout: Layout::new(&web, &visitor, "Choose a new password")
                    .section("account")
                    .error(say(&e)),
                email: form.email,
            },
        ),
    }
}

// ---- profile ------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "account/profile.html")]
struct ProfilePage {
    layout: Layout,
    email: String,
    roles: String,
    since: String,
    linked: Vec<String>,
}

#[derive(Deserialize)]
pub struct ProfileQuery {
    changed: Option<String>,
}

async fn profile_page(web: &WebState, visitor: &Visitor, layout: Layout) -> WebResult<ProfilePage> {
    let user = visitor.require()?;
    let linked = web
        .app
        .store()
        .federated_identities_of(&user.id)
        .await?
        .into_iter()
        .map(|f| f.provider)
        .collect();
    Ok(ProfilePage {
        layout,
        email: user.email.clone(),
        roles: user
            .roles
            .iter()
            .map(|r| match r {
                Role::Citizen => "citizen",
                Role::Operator => "operator",
                Role::Admin => "administrator",
            })
            .collect::<Vec<_>>()
            .join(", "),
        since: view::fmt_time(user.user.created_at),
        linked,
    })
}

pub async fn profile(
    State(web): State<WebState>,
    visitor: Visitor,
    Query(q): Query<ProfileQuery>,
) -> WebResult<Response> {
    let mut layout = Layout::new(&web, &visitor, "Your account").section("account");
    if q.changed.is_some() {
        layout = layout.flash("Your password is changed; your other sign-ins have ended.");
    }
    super::page(profile_page(&web, &visitor, layout).await?)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    old_password: String,
    new_password: String,
}

/// Changes the password (through the API's handler, which ends every sign-in of the account),
/// then signs this browser in again with the new password.
pub async fn change_password(
    State(web): State<WebState>,
    visitor: Visitor,
    jar: CookieJar,
    peer: ClientIp,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    let result = api_auth::change_password(
        State(web.app.clone()),
        user.signed_in(&web.app),
        ApiJson(ChangePasswordRequest {
            old_password: form.old_password,
            new_password: form.new_password.clone(),
        }),
    )
    .await;
    if let Err(e) = result {
        let layout = Layout::new(&web, &visitor, "Your account")
            .section("account")
            .error(say(&e));
        return again(status_of(&e), profile_page(&web, &visitor, layout).await?);
    }
    let tokens = api_auth::sign_in(
        State(web.app.clone()),
        peer,
        ApiJson(Credentials {
            email: user.email.clone(),
            password: form.new_password,
        }),
    )
    .await
    .map_err(WebError::from)?;
    Ok((
        jar.add(session_cookie(&web, tokens.0.refresh_token)),
        Redirect::to("/account?changed=1"),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm_email: String,
}

pub async fn delete_account(
    State(web): State<WebState>,
    visitor: Visitor,
    jar: CookieJar,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> WebResult<Response> {
    let user = visitor.require()?;
    if !form.confirm_email.trim().eq_ignore_ascii_case(&user.email) {
        let layout = Layout::new(&web, &visitor, "Your account")
            .section("account")
            .error("Type your e-mail address to confirm that the account should be deleted.");
        return again(
            StatusCode::BAD_REQUEST,
            profile_page(&web, &visitor, layout).await?,
        );
    }
    api_auth::delete_me(State(web.app.clone()), user.signed_in(&web.app))
        .await
        .map_err(WebError::from)?;
    let secure = web.config.secure_cookies();
    Ok((
        jar.add(session::removal(session::session_cookie(secure), secure)),
        Redirect::to("/?deleted=1"),
    )
        .into_response())
}
