//! The OpenID Connect authorization-code flow with PKCE (S256), for browser apps and standard
//! OIDC clients: `GET /oauth2/authorize` shows a sign-in form, `POST /oauth2/authorize` checks
//! it and sends the browser back with a one-minute, single-use code, `POST /oauth2/token`
//! exchanges the code (with the PKCE verifier) or a refresh token for tokens. The token
//! endpoint answers errors the way RFC 6749 says (`{"error": …}`), which OIDC clients expect.
//! `identity_provider=NAME` on the authorization request signs in through an outside provider
//! instead (`routes::federation`); the client gets a code of ours either way.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use ecocityhub_identity::secrets;
use ecocityhub_identity::tokens::scopes;
use ecocityhub_store::identity::AuthCode;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiQuery, ClientIp};
use crate::routes::auth::{check_credentials, rotate_refresh_token, tokens_for};
use crate::state::AppState;

/// The parameters of an authorization request (query of the GET, hidden fields of the POST).
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeParams {
    /// `code`
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// BASE64URL(SHA-256(code_verifier))
    pub code_challenge: Option<String>,
    /// `S256`
    pub code_challenge_method: Option<String>,
    /// Sign in through this outside OIDC provider (a configured name, see
    /// `GET /api/v1/auth/providers`) instead of the form, as with Cognito's hosted UI.
    pub identity_provider: Option<String>,
}

/// The sign-in form's fields: the request's parameters plus the credentials.
#[derive(Deserialize)]
pub struct AuthorizeForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub email: String,
    pub password: String,
}

/// Is `uri` a redirect URI the client may use?
fn redirect_allowed(app: &AppState, uri: &str) -> bool {
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| uri.starts_with(p));
    loopback || app.identity().config.redirect_uris.iter().any(|u| u == uri)
}

/// Checks what must be right before anything is sent back to `redirect_uri`; errors here are
/// shown, never redirected (the URI is not trusted yet).
pub(crate) fn checked_redirect(app: &AppState, p: &AuthorizeParams) -> ApiResult<String> {
    if p.client_id.as_deref() != Some(app.identity().config.tokens.client_id.as_str()) {
        return Err(ApiError::BadRequest("unknown client_id".into()));
    }
    let uri = p
        .redirect_uri
        .clone()
        .ok_or_else(|| ApiError::BadRequest("redirect_uri is required".into()))?;
    if !redirect_allowed(app, &uri) {
        return Err(ApiError::BadRequest(format!(
            "redirect_uri {uri:?} is not registered for this client"
        )));
    }
    Ok(uri)
}

/// The rest of the request's checks, as an OAuth error code and description.
fn request_error(p: &AuthorizeParams) -> Option<(&'static str, &'static str)> {
    if p.response_type.as_deref() != Some("code") {
        return Some((
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if p.code_challenge.as_deref().is_none_or(|c| c.len() < 43)
        || p.code_challenge_method.as_deref() != Some("S256")
    {
        return Some((
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        ));
    }
    if !p
        .scope
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .any(|s| s == "openid")
    {
        return Some(("invalid_scope", "the scope must include openid"));
    }
    None
}

pub(crate) fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = uri.to_string();
    for (i, (k, v)) in pairs.iter().enumerate() {
        url.push(if i == 0 && !uri.contains('?') {
            '?'
        } else {
            '&'
        });
        url.push_str(k);
        url.push('=');
        url.push_str(&urlencode(v));
    }
    url
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn redirect(to: String) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The request's parameters that are set, as name/value pairs.
fn params_of(p: &AuthorizeParams) -> Vec<(&'static str, &str)> {
    [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("state", &p.state),
        ("nonce", &p.nonce),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_deref().map(|v| (name, v)))
    .collect()
}

/// The sign-in page, carrying the request's parameters in hidden fields, with a link for each
/// outside provider.
fn form_page(p: &AuthorizeParams, error: Option<&str>, providers: &[&str]) -> String {
    let hidden: String = params_of(p)
        .iter()
        .map(|(name, v)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(v)
            )
        })
        .collect();
    let error = error
        .map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let others: String = providers
        .iter()
        .map(|name| {
            let mut pairs: Vec<(&str, &str)> = params_of(p);
            pairs.push(("identity_provider", name));
            format!(
                "<li><a href=\"{}\">Sign in with {}</a></li>",
                escape(&with_query("/oauth2/authorize", &pairs)),
                escape(name)
            )
        })
        .collect();
    let others = if others.is_empty() {
        others
    } else {
        format!("<nav aria-label=\"Other ways to sign in\"><ul>{others}</ul></nav>")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>Sign in · EcoCityHub</title></head><body><main><h1>Sign in to EcoCityHub</h1>{error}\
         <form method=\"post\" action=\"/oauth2/authorize\">{hidden}\
         <label>E-mail <input type=\"email\" name=\"email\" autocomplete=\"username\" required></label>\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>{others}</main></body></html>"
    )
}

/// Starts the code flow: shows the sign-in form, or with `identity_provider` sends the browser
/// to that outside provider (it comes back through `/oauth2/idpresponse`).
#[utoipa::path(get, path = "/oauth2/authorize", tag = "auth", params(AuthorizeParams),
    responses((status = 200, description = "The sign-in form (HTML)"),
              (status = 303, description = "Back to the client with an error, or on to the outside identity provider"),
              (status = 400, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn authorize_form(
    State(app): State<AppState>,
    ApiQuery(p): ApiQuery<AuthorizeParams>,
) -> ApiResult<Response> {
    let uri = checked_redirect(&app, &p)?;
    if let Some((error, description)) = request_error(&p) {
        let mut pairs = vec![("error", error), ("error_description", description)];
        if let Some(state) = p.state.as_deref() {
            pairs.push(("state", state));
        }
        return Ok(redirect(with_query(&uri, &pairs)));
    }
    if let Some(name) = p.identity_provider.as_deref() {
        return crate::routes::federation::start(&app, &p, uri, name).await;
    }
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Html(form_page(&p, None, &provider_names(&app))),
    )
        .into_response())
}

fn provider_names(app: &AppState) -> Vec<&str> {
    app.identity().federation.names().collect()
}

/// The client's request that a code answers, as checked by [`checked_redirect`].
pub(crate) struct ClientRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub state: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub code_challenge: &'a str,
    /// The scopes granted: the supported ones among those asked for.
    pub scope: &'a str,
}

/// Issues a one-minute, single-use code for `user_id` and sends the browser back to the client.
pub(crate) async fn redirect_with_code(
    app: &AppState,
    request: &ClientRequest<'_>,
    user_id: &str,
) -> ApiResult<Response> {
    let code = secrets::token();
    app.store()
        .insert_auth_code(&AuthCode {
            code_hash: secrets::digest(&code),
            client_id: request.client_id.to_string(),
            redirect_uri: request.redirect_uri.to_string(),
            code_challenge: request.code_challenge.to_string(),
            nonce: request.nonce.map(str::to_string),
            user_id: user_id.to_string(),
            expires_at: Utc::now() + chrono::Duration::seconds(60),
            scope: request.scope.to_string(),
        })
        .await?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = request.state {
        pairs.push(("state", state));
    }
    Ok(redirect(with_query(request.redirect_uri, &pairs)))
}

/// Checks the form; sends the browser back to the client with a code.
pub async fn authorize_submit(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    form: Result<Form<AuthorizeForm>, FormRejection>,
) -> ApiResult<Response> {
    let Form(form) = form.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let p = form.params;
    let uri = checked_redirect(&app, &p)?;
    if let Some((error, _)) = request_error(&p) {
        return Err(ApiError::BadRequest(format!(
            "the authorization request is not valid ({error})"
        )));
    }
    let user = match check_credentials(&app, ip, &form.email, form.password).await {
        Ok(user) => user,
        Err(
            e @ (ApiError::Unauthorized { .. }
            | ApiError::Forbidden(_)
            | ApiError::TooManyRequests(_)
            | ApiError::BadRequest(_)),
        ) => {
            let status = e.status();
            return Ok((
                status,
                [(header::CACHE_CONTROL, "no-store")],
                Html(form_page(&p, Some(&e.to_string()), &provider_names(&app))),
            )
                .into_response());
        }
        Err(e) => return Err(e),
    };
    let granted = scopes::grant(p.scope.as_deref().unwrap_or_default());
    let request = ClientRequest {
        client_id: p.client_id.as_deref().unwrap_or_default(),
        redirect_uri: &uri,
        state: p.state.as_deref(),
        nonce: p.nonce.as_deref(),
        code_challenge: p.code_challenge.as_deref().unwrap_or_default(),
        scope: &granted,
    };
    redirect_with_code(&app, &request, &user.id).await
}

/// A token request (form-encoded, RFC 6749).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// `authorization_code` or `refresh_token`
    pub grant_type: String,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Exchanges a code (with its PKCE verifier) or a refresh token for tokens.
#[utoipa::path(post, path = "/oauth2/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = crate::routes::auth::TokenSet), (status = 400, description = "RFC 6749 error")))]
pub async fn token(
    State(app): State<AppState>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let Ok(Form(req)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send grant_type and its fields form-encoded",
        );
    };
    let invalid_grant = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d);
    match req.grant_type.as_str() {
        "authorization_code" => {
            let (Some(code), Some(verifier)) = (req.code.as_deref(), req.code_verifier.as_deref())
            else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code and code_verifier are required",
                );
            };
            let stored = match app.store().take_auth_code(&secrets::digest(code)).await {
                Ok(Some(c)) => c,
                Ok(None) => return invalid_grant("the code is unknown or was used already"),
                Err(e) => return ApiError::from(e).into_response(),
            };
            if stored.expires_at < Utc::now() {
                return invalid_grant("the code has expired");
            }
            if req.client_id.as_deref() != Some(stored.client_id.as_str())
                || req.redirect_uri.as_deref() != Some(stored.redirect_uri.as_str())
            {
                return invalid_grant(
                    "client_id or redirect_uri differ from the authorization request",
                );
            }
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != stored.code_challenge
            {
                return invalid_grant("the code_verifier does not match the code_challenge");
            }
            let user = match app.store().user(&stored.user_id).await {
                Ok(Some(u)) => u,
                Ok(None) => return invalid_grant("the account no longer exists"),
                Err(e) => return ApiError::from(e).into_response(),
            };
            match tokens_for(&app, &user, None, stored.nonce.as_deref(), &stored.scope).await {
                Ok(tokens) => ([(header::CACHE_CONTROL, "no-store")], Json(tokens)).into_response(),
                Err(e) => e.into_response(),
            }
        }
        "refresh_token" => {
            match rotate_refresh_token(&app, req.refresh_token.as_deref().unwrap_or("")).await {
                Ok(tokens) => ([(header::CACHE_CONTROL, "no-store")], Json(tokens)).into_response(),
                Err(ApiError::Unauthorized { detail }) => invalid_grant(&detail),
                Err(e) => e.into_response(),
            }
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_urls_are_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            with_query("https://app/cb", &[("code", "a b&c"), ("state", "s")]),
            "https://app/cb?code=a%20b%26c&state=s"
        );
        assert_eq!(
            with_query("https://app/cb?x=1", &[("code", "c")]),
            "https://app/cb?x=1&code=c"
        );
    }
}
